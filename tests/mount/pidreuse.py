#!/usr/bin/env python3
"""tests/mount/pidreuse.py MNT — journal.sh's pid-reuse case (SPEC §6:
records keyed by (pid, start time)). Process A takes a lease and exits; once
its dead_processes record is there, a fork is steered onto A's pid through
/proc/sys/kernel/ns_last_pid (root; retried, other processes fork too). The
new process B, before any coordination of its own, reports as one JSON line
what the control tree shows it under its pid:
  {"pid", "a_start", "b_start", "journals": [names of A's pid],
   "deads": [...], "journal": errno name or "content", "dead": ...,
   "old_dead": ... (dead_processes/PID.A_START)}
Exit 2 (and no line) when the pid could not be reused in 200 forks, 3 when
ns_last_pid cannot be written."""
import errno, json, os, sys, time

M = sys.argv[1]
R = M + "/.txdir/recovery"


def start_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def probe(path):
    try:
        with open(path) as f:
            return "content" if f.read() else "empty"
    except OSError as e:
        return errno.errorcode[e.errno]


r, w = os.pipe()
a = os.fork()
if a == 0:
    os.mkdir(f"{M}/.txdir/leases/active/{os.getpid()}/reuse")
    os.write(w, str(start_of(os.getpid())).encode())
    os._exit(0)
os.close(w)
a_start = int(os.read(r, 64))
os.waitpid(a, 0)
for _ in range(50):  # the death watcher records it within 1 s
    if os.path.exists(f"{R}/dead_processes/{a}"):
        break
    time.sleep(0.1)
for _ in range(200):
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(a - 1))
    except OSError as e:  # not root, or no CAP_SYS_ADMIN over the pid namespace
        print(f"ns_last_pid: {e}")
        sys.exit(3)
    b = os.fork()
    if b == 0:
        me = os.getpid()
        if me != a:
            os._exit(0)
        pre = (str(me), str(me) + ".")
        out = {
            "pid": me, "a_start": a_start, "b_start": start_of(me),
            "journals": sorted(x for x in os.listdir(R + "/journals") if x.startswith(pre)),
            "deads": sorted(x for x in os.listdir(R + "/dead_processes") if x.startswith(pre)),
            "journal": probe(f"{R}/journals/{me}/journal"),
            "dead": probe(f"{R}/dead_processes/{me}"),
            "old_dead": probe(f"{R}/dead_processes/{me}.{a_start}"),
            "old_journal": probe(f"{R}/journals/{me}.{a_start}/journal"),
        }
        print(json.dumps(out), flush=True)
        os._exit(0)
    os.waitpid(b, 0)
    if b == a:
        sys.exit(0)
sys.exit(2)
