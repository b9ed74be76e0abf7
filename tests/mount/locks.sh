#!/usr/bin/env bash
# tests/mount/locks.sh — advisory locks through the mount (filelock.h; SPEC
# §3 "POSIX behaviour as on ext4"), on an allow_other,default_permissions
# mount. The server keeps them per file, so they hold across the node ids
# a writer's open creates.
#
#   flock1     flock(1) around a job that appends to the locked file: a
#              second `flock -n` is refused while the job runs (before: the
#              job's `>>` moved the name to a new node id and the second
#              flock locked that one).
#   views      a lock holds across transaction views: the main tree and a
#              `mountctl run`, and two runs, exclude each other.
#   ofd        F_OFD_SETLK locks go at the description's last close and
#              at the holder's death.
#   split      flock and fcntl locks taken through a read-only descriptor
#              still exclude a process that opens the file for writing
#              after that; F_GETLK names the holder's pid.
#   wait       F_SETLKW waits (seen in txdir_file_lock_waiters: the
#              barrier) and is granted when the holder's close(2) drops the
#              lock; closing ANY descriptor of the file drops the
#              process's record locks (POSIX).
#   death      the holder killed with SIGKILL: a waiting flock -w gets it.
#   interrupt  flock -w 1 against a held lock times out (the SIGALRM
#              interrupts the wait: EINTR) and leaves no waiter behind.
#   many       16 blocked flock(1) waiters (more than the server's worker
#              threads) do not stop the mount answering; all get the lock.
#   deadlock   two processes each waiting for the other's byte: EDEADLK.
#   nobody     flock(1) as nobody on a file it may read.
#
# Bounded polls synchronise, never sleeps. The last line is
# "N passed, N failed, N skipped". Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

OPTS=allow_other,default_permissions
WORKD=$(mktemp -d "${TMPDIR:-/tmp}/txdir-locks.XXXXXX") || exit 2
TM_DIRS+=("$WORKD")
PY=$WORKD/locks.py
cat >"$PY" <<'EOF'
import errno, fcntl, os, sys

def split(d):
    """flock and a read lock through a read-only descriptor; another
    process opens the file for writing (a new node id) and tries."""
    p = d + "/split"
    with open(p, "w") as f:
        f.write("data")
    out = []
    a = os.open(p, os.O_RDONLY)
    fcntl.flock(a, fcntl.LOCK_EX)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        b = os.open(p, os.O_RDWR)
        os.write(b, b"more")  # the first writer: the names move on
        c = os.open(p, os.O_RDWR)
        try:
            fcntl.flock(c, fcntl.LOCK_EX | fcntl.LOCK_NB)
            res = "granted"
        except OSError as e:
            res = errno.errorcode[e.errno]
        os.write(w, res.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    out.append("flock:" + os.read(r, 100).decode())
    fcntl.flock(a, fcntl.LOCK_UN)
    os.close(a)
    a = os.open(p, os.O_RDONLY)
    fcntl.lockf(a, fcntl.LOCK_SH, 10, 0)  # bytes 0-9, read
    pid = os.fork()
    if pid == 0:
        b = os.open(p, os.O_RDWR)
        os.write(b, b"again")
        res = []
        try:
            fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 5)
            res.append("granted")
        except OSError as e:
            res.append(errno.errorcode[e.errno])
        import struct
        q = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)
        t, wh, st, ln, hp = struct.unpack("hhqqi", fcntl.fcntl(b, fcntl.F_GETLK, q))
        res.append("getlk=%s,%d,%d,%s" % ({fcntl.F_RDLCK: "rd", fcntl.F_WRLCK: "wr",
                                           fcntl.F_UNLCK: "un"}[t], st, ln,
                                          "holder" if hp == os.getppid() else str(hp)))
        fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 20)  # past the read lock: free
        res.append("past:granted")
        os.write(w, " ".join(res).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    out.append("fcntl:" + os.read(r, 200).decode())
    print(" ".join(out))

def hold(path, ready, go, kind):
    """Lock path, create ready, wait for a line on fifo go, then exit
    (the exit drops the lock)."""
    fd = os.open(path, os.O_RDWR)
    if kind == "posix":
        fcntl.lockf(fd, fcntl.LOCK_EX)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX)
    with open(ready + ".tmp", "w") as r:
        r.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)  # whole: the holder's own pid
    with open(go) as g:
        g.readline()
    os.close(fd)

def waitlock(path):
    """A blocking record lock: prints ok once granted."""
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("ok")

def closeany(d):
    """Lock through fd1, close fd2 of the same file: the lock goes
    (POSIX); another process may then lock."""
    p = d + "/closeany"
    open(p, "w").write("x")
    fd1 = os.open(p, os.O_RDWR)
    fcntl.lockf(fd1, fcntl.LOCK_EX)
    def other():
        pid = os.fork()
        if pid == 0:
            b = os.open(p, os.O_RDWR)
            try:
                fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(0)
            except OSError:
                os._exit(1)
        return "free" if os.waitpid(pid, 0)[1] == 0 else "held"
    before = other()
    fd2 = os.open(p, os.O_RDONLY)
    os.close(fd2)
    print(before, other())

def deadlock(d):
    p = d + "/dl"
    open(p, "w").write("xy")
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    a = os.open(p, os.O_RDWR)
    fcntl.lockf(a, fcntl.LOCK_EX, 1, 0)
    pid = os.fork()
    if pid == 0:
        b = os.open(p, os.O_RDWR)
        fcntl.lockf(b, fcntl.LOCK_EX, 1, 1)
        os.write(w1, b"1")
        os.read(r2, 1)  # the parent waits for byte 1 now (or is about to)
        try:
            fcntl.lockf(b, fcntl.LOCK_EX, 1, 0)
            os._exit(0)
        except OSError as e:
            os._exit(3 if e.errno == errno.EDEADLK else 4)
    os.read(r1, 1)
    os.write(w2, b"1")
    res = "parent:"
    try:
        fcntl.lockf(a, fcntl.LOCK_EX, 1, 1)  # waits for the child, or EDEADLK
        res += "granted"
    except OSError as e:
        res += "EDEADLK" if e.errno == errno.EDEADLK else errno.errorcode[e.errno]
    os.close(a)  # whoever got EDEADLK, the other can finish now
    st = os.waitpid(pid, 0)[1]
    print(res, "child:" + {0: "granted", 3: "EDEADLK"}.get(os.WEXITSTATUS(st), "other"))

cmd = sys.argv[1]
if cmd == "split":
    split(sys.argv[2])
elif cmd == "hold":
    hold(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
elif cmd == "waitlock":
    waitlock(sys.argv[2])
elif cmd == "closeany":
    closeany(sys.argv[2])
elif cmd == "deadlock":
    deadlock(sys.argv[2])
EOF

py() { timeout 60 python3 "$PY" "$@"; }

stat_of() { # metric
	awk -v m="$1" '$1 == m { print $2 }' "$TM_MNT/.txdir/stats"
}
waiters_at_least() { [ "$(stat_of txdir_file_lock_waiters)" -ge "$1" ] 2>/dev/null; }
no_waiters() { [ "$(stat_of txdir_file_lock_waiters)" = 0 ]; }

# hold_start FILE KIND: a holder in the background, its lock taken (the
# ready file, holding its pid: the barrier); HOLD_PID (timeout's), HOLDER
# (the python process itself), HOLD_GO (echo > to release).
hold_start() {
	local ready=$WORKD/ready.$RANDOM
	HOLD_GO=$WORKD/go.$RANDOM
	mkfifo "$HOLD_GO"
	timeout 120 python3 "$PY" hold "$1" "$ready" "$HOLD_GO" "$2" &
	HOLD_PID=$!
	BG+=("$HOLD_PID")
	wait_for 300 test -e "$ready" && HOLDER=$(cat "$ready") && BG+=("$HOLDER")
}
hold_end() { echo go >"$HOLD_GO"; wait "$HOLD_PID"; }

test_flock1() {
	local f=$TM_MNT/job.log started=$WORKD/started go=$WORKD/jobgo pid rc
	echo init >"$f"
	mkfifo "$go"
	timeout 60 flock -x "$f" -c "echo start >> '$f'; : > '$started'; read x < '$go'; echo end >> '$f'" &
	pid=$!
	BG+=("$pid")
	wait_for 300 test -e "$started" || { not_ok "flock1: the job did not start"; return; }
	timeout 10 flock -n -x "$f" -c "echo second >> '$f'"
	rc=$?
	echo go >"$go"
	wait "$pid"
	[ "$rc" = 1 ] && [ "$(tr '\n' ' ' <"$f")" = "init start end " ] &&
		ok "flock1: a second flock -n is refused while the job that writes the file holds it" ||
		not_ok "flock1: second flock exit $rc, file: $(tr '\n' ' ' <"$f")"
}

# A lock is per file, also across transaction views: a job under `mountctl
# run` and one in the main tree, or two runs, exclude each other (SPEC §1's
# cron guard `flock /path/lock job`).
test_views() {
	local f=$TM_MNT/guard.lock started=$WORKD/vstarted go=$WORKD/vgo pid rc1 rc2 rc3
	: >"$f"
	mkfifo "$go"
	timeout 60 flock -x "$f" -c ": > '$started'; read x < '$go'" &
	pid=$!
	BG+=("$pid")
	wait_for 300 test -e "$started" || { not_ok "views: the holder did not start"; return; }
	timeout 30 "$MOUNTCTL" run "$TM_MNT" -- flock -n -x "$f" true
	rc1=$?
	echo go >"$go"
	wait "$pid"
	rm -f "$started" "$go"
	mkfifo "$go"
	timeout 60 "$MOUNTCTL" run "$TM_MNT" -- flock -x "$f" -c ": > '$started'; read x < '$go'" &
	pid=$!
	BG+=("$pid")
	wait_for 300 test -e "$started" || { not_ok "views: the run holder did not start"; return; }
	timeout 30 "$MOUNTCTL" run "$TM_MNT" -- flock -n -x "$f" true
	rc2=$?
	timeout 10 flock -n -x "$f" true
	rc3=$?
	echo go >"$go"
	wait "$pid"
	check_eq() { [ "$2" = "$3" ] && ok "$1" || not_ok "$1: got $2, want $3"; }
	check_eq "views: main tree holds flock: flock -n inside mountctl run is refused (1)" "$rc1" 1
	check_eq "views: a run holds it: flock -n in another run is refused (1)" "$rc2" 1
	check_eq "views: a run holds it: flock -n in the main tree is refused (1)" "$rc3" 1
}

# F_OFD_SETLK locks belong to the open file description: they go at its
# last close and when the process dies (the kernel sends no unlock for them
# to a server that keeps the locks: filelock.h L9).
test_ofd() {
	local f=$TM_MNT/ofd.lock out
	: >"$f"
	out=$(timeout 30 python3 - "$f" <<'PYOFD'
import fcntl, os, struct, sys
f = sys.argv[1]
req = lambda t: struct.pack("@hhqqi4x", t, 0, 0, 0, 0)
def try_lock():
    fd = os.open(f, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, req(fcntl.F_WRLCK))
        return fd, "got"
    except OSError as e:
        os.close(fd)
        return None, "busy"
def other_process_can_lock():
    # a traditional POSIX lock from another process (its own owner: a
    # freed description's address, reused by a later open, cannot alias)
    pid = os.fork()
    if pid == 0:
        fd = os.open(f, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os._exit(0)
        except OSError:
            os._exit(1)
    return "got" if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 else "busy"
a, r1 = try_lock()
b, r2 = try_lock()          # another description: refused while a holds it
os.close(a)                 # a's last close drops its lock
r3 = other_process_can_lock()
pid = os.fork()
if pid == 0:
    try_lock()              # taken by a child that then dies with it open
    os._exit(0)
os.waitpid(pid, 0)
r4 = other_process_can_lock()
print(r1, r2, r3, r4)
PYOFD
)
	[ "$out" = "got busy got got" ] && ok "ofd: F_OFD_SETLK is exclusive, released at the last close and at the holder's death" ||
		not_ok "ofd: got '$out', want 'got busy got got'"
	[ "$(stat_of txdir_file_locks)" -le 1 ] && ok "ofd: no lock left behind" ||
		not_ok "ofd: txdir_file_locks $(stat_of txdir_file_locks)"
}

test_split() {
	local out
	out=$(py split "$TM_MNT")
	[ "$out" = "flock:EAGAIN fcntl:EAGAIN getlk=rd,0,10,holder past:granted" ] &&
		ok "split: flock and fcntl locks hold across a writer's open; F_GETLK names the holder ($out)" ||
		not_ok "split: $out"
}

test_wait() {
	local f=$TM_MNT/waited out pid
	echo x >"$f"
	hold_start "$f" posix || { not_ok "wait: holder"; return; }
	timeout 60 python3 "$PY" waitlock "$f" >"$WORKD/wait.out" &
	pid=$!
	BG+=("$pid")
	wait_for 300 waiters_at_least 1 || not_ok "wait: the F_SETLKW does not wait"
	[ ! -s "$WORKD/wait.out" ] || not_ok "wait: granted while held"
	hold_end
	wait "$pid"
	[ "$(cat "$WORKD/wait.out")" = ok ] && no_waiters &&
		ok "wait: F_SETLKW waits without a worker and is granted at the holder's close" ||
		not_ok "wait: '$(cat "$WORKD/wait.out")', waiters $(stat_of txdir_file_lock_waiters)"
	out=$(py closeany "$TM_MNT")
	[ "$out" = "held free" ] &&
		ok "wait: closing any descriptor of the file drops the process's record locks" ||
		not_ok "wait: close of another descriptor: $out"
}

test_death() {
	local f=$TM_MNT/dies rc
	echo x >"$f"
	hold_start "$f" flock || { not_ok "death: holder"; return; }
	timeout 10 flock -n "$f" true && { not_ok "death: not held"; hold_end; return; }
	kill -9 "$HOLDER"
	wait "$HOLD_PID" 2>/dev/null
	timeout 30 flock -w 20 "$f" true
	rc=$?
	[ "$rc" = 0 ] && ok "death: the holder's SIGKILL releases its flock" ||
		not_ok "death: flock -w after the kill: exit $rc"
}

test_interrupt() {
	local f=$TM_MNT/intr rc t0 t1
	echo x >"$f"
	hold_start "$f" flock || { not_ok "interrupt: holder"; return; }
	t0=$(now_ms)
	timeout 20 flock -w 1 "$f" true
	rc=$?
	t1=$(now_ms)
	wait_for 100 no_waiters
	[ "$rc" = 1 ] && [ $((t1 - t0)) -lt 15000 ] && no_waiters &&
		ok "interrupt: flock -w 1 gives up after $((t1 - t0)) ms, no waiter left" ||
		not_ok "interrupt: exit $rc after $((t1 - t0)) ms, waiters $(stat_of txdir_file_lock_waiters)"
	hold_end
}

test_many() {
	local f=$TM_MNT/many pids=() p rc=0 k
	echo x >"$f"
	hold_start "$f" flock || { not_ok "many: holder"; return; }
	for ((k = 0; k < 16; k++)); do
		timeout 120 flock -x "$f" true &
		pids+=($!)
	done
	BG+=("${pids[@]}")
	wait_for 600 waiters_at_least 16 || not_ok "many: $(stat_of txdir_file_lock_waiters) waiting"
	timeout 10 stat "$TM_MNT/many" >/dev/null && timeout 10 ls "$TM_MNT" >/dev/null &&
		ok "many: the mount answers while 16 lock requests wait" ||
		not_ok "many: the mount does not answer with 16 waiters"
	hold_end
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ "$rc" = 0 ] && no_waiters && [ "$(stat_of txdir_file_locks)" = 0 ] &&
		ok "many: all 16 got the lock in turn" ||
		not_ok "many: rc $rc, waiters $(stat_of txdir_file_lock_waiters), locks $(stat_of txdir_file_locks)"
}

test_deadlock() {
	local out
	out=$(py deadlock "$TM_MNT")
	case $out in
	"parent:granted child:EDEADLK" | "parent:EDEADLK child:granted")
		ok "deadlock: two processes waiting for each other's byte: one gets EDEADLK ($out)" ;;
	*) not_ok "deadlock: $out" ;;
	esac
}

test_nobody() {
	local f=$TM_MNT/public
	echo x >"$f"
	chmod 644 "$f"
	timeout 10 setpriv --reuid=nobody --regid=nogroup --clear-groups flock -n -s "$f" true &&
		ok "nobody: flock -s on a file nobody may read" || not_ok "nobody: flock -s refused"
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_flock1
test_views
test_ofd
test_split
test_wait
test_death
test_interrupt
test_many
test_deadlock
if command -v setpriv >/dev/null; then
	test_nobody
else
	skip "locks nobody" "no setpriv"
fi
tm_umount >/dev/null || not_ok "unmount"
tm_summary
