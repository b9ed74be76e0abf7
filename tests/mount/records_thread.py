#!/usr/bin/env python3
# tests/mount/records_thread.py MNT — records name the calling PROCESS, not
# the thread (records probe R10; SPEC §5: FUSE reports the calling thread's
# id, map it to its process). From a worker thread that then ends: begin a
# transaction (txn_begin event pid, its journals/PID, dtc/transactions
# creator_pid), write a plain file (commits/ID pid), replace the state
# document (state_replace event pid); then commit the transaction from the
# main thread (txn_commit). Prints one "ok WHAT" or "FAIL WHAT: got" line
# per check; exit 1 on any failure.
import json, os, sys, threading

M = sys.argv[1]
C = M + '/.txdir'
pid = os.getpid()
name = 'thr%d' % pid
tids = []


def in_thread(fn):
    def run():
        tids.append(threading.get_native_id())
        fn()
    t = threading.Thread(target=run)
    t.start()
    t.join()


def events(kind):
    with open(C + '/events') as f:
        return [e for e in map(json.loads, filter(None, f.read().split('\n')))
                if e.get('type') == kind]


fails = 0


def check(what, ok, got):
    global fails
    print(('ok %s' if ok else 'FAIL %s: ' + str(got)) % what)
    fails += not ok


in_thread(lambda: os.mkdir(C + '/txn/' + name))
tid = tids[-1]
begins = [e for e in events('txn_begin') if e.get('name') == name]
check('txn_begin pid is the process', begins and begins[-1].get('pid') == pid,
      '%s (pid %d, thread %d)' % (begins, pid, tid))
js = os.listdir(C + '/recovery/journals')
check('journals/PID of the process', str(pid) in js and str(tid) not in js,
      '%s (pid %d, thread %d)' % (js, pid, tid))
if begins:
    with open('%s/dtc/transactions/%d' % (C, begins[-1]['txn'])) as f:
        rec = json.load(f)
    check('creator_pid is the process', rec.get('creator_pid') == pid, rec)


def write_file():
    with open(M + '/' + name, 'w') as f:
        f.write('from a thread')


in_thread(write_file)
got = None
for i in sorted(map(int, os.listdir(C + '/commits')), reverse=True):
    with open('%s/commits/%d' % (C, i)) as f:
        c = json.load(f)
    if any(ch.get('path') == '/' + name for ch in c.get('changes', [])):
        got = c
        break
check('commits/ID pid is the process', got and got.get('pid') == pid, got)


def replace_state():
    with open(C + '/state/global_state.json', 'w') as f:
        f.write(json.dumps({'by': name}))


in_thread(replace_state)
reps = events('state_replace')
check('state_replace pid is the process', reps and reps[-1].get('pid') == pid,
      reps[-1:] if reps else reps)

with open(C + '/txn/' + name + '/root/x', 'w') as f:
    f.write('x')
with open(C + '/txn/' + name + '/ctl', 'w') as f:
    f.write('commit')
with open(C + '/txn/' + name + '/status') as f:
    st = f.read().strip()
check('the transaction commits', st.startswith('committed'), st)
sys.exit(1 if fails else 0)
