#!/usr/bin/env python3
# tests/mount/lease_turns.py MNT ROUNDS — two processes take turns on one
# lease through the queue, as txdir(7) documents: mkdir waiting/PID/NAME,
# read its `granted`, rmdir active/PID/NAME; ROUNDS times each. Between a
# successful mkdir and the grant the waiting entry must stay (races probe
# D2: a grant between two looks, or one still being made durable, made it
# vanish: ENOENT while still queued). Prints "ok N" or the failures; exit 1
# on any ENOENT.
import os, sys

M, ROUNDS = sys.argv[1], int(sys.argv[2])
L = M + '/.txdir/leases'


def worker():
    pid = os.getpid()
    w, a = '%s/waiting/%d/turns' % (L, pid), '%s/active/%d/turns' % (L, pid)
    bad = 0
    for _ in range(ROUNDS):
        try:
            os.mkdir(w)
            with open(w + '/granted') as f:
                if not f.read().strip().isdigit():
                    bad += 1
        except FileNotFoundError:
            bad += 1
            # still queued: the grant comes anyway (bounded by the caller's timeout)
            while not os.path.isdir(a):
                os.sched_yield()
            try:
                os.rmdir(w)
            except OSError:
                pass
        os.rmdir(a)
    return bad


kids = []
for _ in range(2):
    p = os.fork()
    if p == 0:
        os._exit(min(worker(), 255))
    kids.append(p)
fails = sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids)
print('ok %d' % (2 * ROUNDS) if not fails else 'ENOENT or bad token %d of %d' % (fails, 2 * ROUNDS))
sys.exit(1 if fails else 0)
