#!/usr/bin/env bash
# tests/cli/lease.sh — `mountctl lease` (SPEC §2, §5 "Leases") against a
# real txdirfs, as flock(1) is used:
#   usage and own errors (125), -n busy (1, -E CODE) naming the holder,
#   TXDIR_LEASE_TOKEN strictly increasing, the lease held by CMD's process
#   (active/CMDPID/NAME) so kill -9 of mountctl does not free it while CMD
#   runs and CMD's exit does; -w: queued, granted when the holder ends,
#   timed out (1 / -E); --ttl renewed past the TTL while CMD runs, and
#   expiring after kill -9 of mountctl; a lost lease (lease break while CMD
#   runs: CMD gets SIGTERM, exit 122); CMD's exit codes and signals (3, 137,
#   127, SIGTERM forwarded: 143); EDEADLK (123) when two nested leases cross;
#   lease list [--json]; and as nobody on an allow_other,default_permissions
#   mount: its own leases work, root's are busy to it, and breaking or
#   removing root's lease is EPERM, while root may break nobody's.
#
# Barrier files outside the mount synchronise (wait_file), never sleeps;
# every process runs under timeout.
source "$(dirname "$0")/lib.bash"

# ---- usage: no mount needed ------------------------------------------------
mkdir -p "$T/plain"
mc lease "$T/plain" job
expect "lease without --: 125" 125 "missing -- before CMD"
mc lease "$T/plain" 'a b' -- true
expect "lease name with whitespace: 125" 125 "NAME: 1 to 255 bytes"
mc lease "$T/plain" job -n -w 3 -- true
expect "-n with -w: 125" 125 "exclude each other"
mc lease "$T/plain" job -E 300 -- true
expect "-E out of range: 125" 125 "-E: an exit code"
mc lease "$T/plain" job --ttl 0 -- true
expect "--ttl 0: 125" 125 "--ttl: whole seconds"
mc lease "$T/plain" job -- true
expect "lease on a plain directory: 125" 125 "^mountctl: lease: $T/plain is not a txdir mount"
mc lease list "$T/plain"
expect "lease list of a plain directory: 1" 1 "is not a txdir mount"
mc lease --help
expect "lease --help" 0 "usage: mountctl lease MNT NAME"

if ! can_mount; then
	skip "cli lease (mount checks)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

chmod 755 "$T" # nobody reaches the mount through $T
S=$T/store
M=$T/mnt
B=$T/barriers
L=$M/.txdir/leases
mkdir -p "$M" "$B"
chmod 777 "$B"
mc init "$S"
mount_store "$S" "$M" -o allow_other,default_permissions
expect "mount with allow_other,default_permissions" 0
if ! timeout 10 mkdir "$L/active/$$/probe" 2>"$T/probe.err"; then
	not_ok "this txdirfs grants leases (mkdir .txdir/leases/active/PID/NAME)" "$(cat "$T/probe.err")"
	finish
	exit
fi
timeout 10 rmdir "$L/active/$$/probe"

# mv of a lease (within the control tree, or a directory into it) is
# refused with EPERM, so mv stops: with EXDEV it copied, and the copy's
# mkdir granted a new lease
mkdir "$L/active/$$/mvsrc" && mkdir "$M/mvdata" || not_ok "mv: setup"
timeout 10 mv "$L/active/$$/mvsrc" "$L/active/$$/mvdst" 2>"$T/mv1.err"
rc1=$?
timeout 10 mv "$M/mvdata" "$L/active/$$/mvdst2" 2>"$T/mv2.err"
rc2=$?
if [ "$rc1" != 0 ] && [ "$rc2" != 0 ] && [ -d "$L/active/$$/mvsrc" ] && [ -d "$M/mvdata" ] &&
	[ ! -e "$L/active/$$/mvdst" ] && [ ! -e "$L/active/$$/mvdst2" ] &&
	grep -q "Operation not permitted" "$T/mv1.err" && grep -q "Operation not permitted" "$T/mv2.err"; then
	ok "mv of a lease, or of a directory into leases/: EPERM, nothing granted or moved"
else
	not_ok "mv of a lease: refused, nothing granted" "rc $rc1 $rc2: $(cat "$T/mv1.err" "$T/mv2.err"; ls "$L/active/$$")"
fi
rmdir "$L/active/$$/mvsrc" "$M/mvdata" 2>/dev/null
# from a transaction's view too (mountctl run), and a data directory can
# never be renamed over the root's .txdir
sleep 60 &
H=$!
timeout 60 "$MOUNTCTL" run "$M" -- sh -c "mkdir '$M/nd' && mv '$M/nd' '$L/active/$H/viaview'" >/dev/null 2>&1
mkdir "$M/dd" 2>/dev/null
timeout 10 mv -T "$M/dd" "$M/.txdir" 2>/dev/null
rc3=$?
if [ ! -e "$L/active/$H/viaview" ] && [ "$rc3" != 0 ] && [ -e "$M/.txdir/status.json" ]; then
	ok "mv from a view into leases/: refused, no lease; mv -T dir .txdir: refused"
else
	not_ok "mv from a view / over .txdir" "rc $rc3; $(ls "$L/active/$H" 2>&1); $(ls "$M/.txdir" 2>&1 | head -3)"
fi
kill "$H" 2>/dev/null
rmdir "$M/dd" 2>/dev/null

# lease list MNT NAME: that lease alone, exit 1 when nobody holds it
mkdir "$L/active/$$/listed" || not_ok "list NAME: setup"
mc lease list "$M" listed
expect "lease list MNT NAME: the one lease" 0 "^listed +[0-9]+ +$$ "
if [ "$(grep -c . <<<"$OUT")" = 2 ]; then ok "lease list MNT NAME: header and one row"; else not_ok "lease list MNT NAME: one row" "$OUT"; fi
mc lease list "$M" nobody-holds-this
expect "lease list MNT NAME of a free name: 1" 1
mc lease list "$M" listed --json
expect "lease list MNT NAME --json" 0 '"name":[[:space:]]+"listed"'
rmdir "$L/active/$$/listed"

# a name over 255 bytes: ENAMETOOLONG (as ext4); a thread's id names no
# process: ENOENT, the lease never lands in the process's directory
long=$(printf 'x%.0s' $(seq 256))
if ! mkdir "$L/active/$$/$long" 2>"$T/long.err" && grep -q "File name too long" "$T/long.err"; then
	ok "a 256-byte lease name: ENAMETOOLONG"
else
	not_ok "a 256-byte lease name: ENAMETOOLONG" "$(cat "$T/long.err")"
fi
out=$(timeout 20 python3 - "$L" <<'PY'
import os, sys, threading
ev = threading.Event()
t = threading.Thread(target=ev.wait, args=(15,))
t.start()
tid = [x for x in os.listdir("/proc/%d/task" % os.getpid()) if int(x) != os.getpid()][0]
try:
    os.mkdir("%s/active/%s/thr" % (sys.argv[1], tid))
    print("granted", os.path.isdir("%s/active/%s/thr" % (sys.argv[1], tid)))
except OSError as e:
    print(os.strerror(e.errno))
ev.set()
PY
)
if [ "$out" = "No such file or directory" ] && [ ! -e "$L/by-name/thr" ]; then
	ok "mkdir active/TID/NAME for a thread id: ENOENT, nothing granted"
else
	not_ok "mkdir active/TID/NAME for a thread id: ENOENT" "$out; $(ls -l "$L/by-name" 2>&1)"
fi

# joining and leaving a wait queue are events, in the waiter's journal too
mkdir "$L/active/$$/qd" || not_ok "wait events: setup"
sleep 60 &
W=$!
mkdir "$L/waiting/$W/qd" && rmdir "$L/waiting/$W/qd"
j=$M/.txdir/recovery/journals/$W/journal
if grep -q "\"type\":\"lease_wait\",\"name\":\"qd\",\"pid\":$W," "$M/.txdir/events" &&
	grep -q "\"type\":\"lease_wait_end\",\"name\":\"qd\",\"pid\":$W,.*\"how\":\"withdrawn\"" "$M/.txdir/events" &&
	grep -q '"type":"lease_wait"' "$j" && grep -q '"type":"lease_wait_end"' "$j"; then
	ok "joining and leaving a wait queue: lease_wait, lease_wait_end (withdrawn), in the waiter's journal"
else
	not_ok "wait events" "$(grep -a lease_wait "$M/.txdir/events"; ls "$M/.txdir/recovery/journals" 2>&1)"
fi
mkdir "$L/waiting/$W/qd" && kill "$W" && wait "$W" 2>/dev/null
found=0
for ((i = 0; i < 400 && !found; i++)); do # the death is seen within 1 s (proc.h P4)
	grep -q "\"type\":\"lease_wait_end\",\"name\":\"qd\",\"pid\":$W,.*\"how\":\"death\"" "$M/.txdir/events" &&
		found=1 || sleep 0.01
done
[ "$found" = 1 ] && ok "a waiter's death: lease_wait_end (death)" ||
	not_ok "a waiter's death: lease_wait_end" "$(grep -a lease_wait "$M/.txdir/events")"
rmdir "$L/active/$$/qd"

# CMD exits while mountctl checks its grant: the server releases a dead
# holder's lease at once, and that is not a lost lease (CMD's code, never
# 122). Checking without pause (TXDIR_LEASE_CHECK_MS=0) makes the race
# likely: before the fix 6 runs in 20 exited 122.
codes=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	TXDIR_LEASE_CHECK_MS=0 timeout -k 5 30 "$MOUNTCTL" lease "$M" race -- sh -c 'sleep 0.05; exit 7' 2>>"$T/race.err"
	codes="$codes$? "
done
if [ "$codes" = "7 7 7 7 7 7 7 7 7 7 " ]; then
	ok "CMD exiting during a grant check: its own code, 10 of 10"
else
	not_ok "CMD exiting during a grant check: its own code" "exits: $codes$(tail -n 3 "$T/race.err")"
fi

wait_file() { # PATH: the barrier; fails after 20 s
	local i
	for ((i = 0; i < 2000; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.01
	done
	echo "# timed out waiting for $1"
	return 1
}
wait_gone() { # PATH [TENTHS]: until PATH is gone; fails after TENTHS/10 s (20 s)
	local i n=$((${2:-200} * 10))
	for ((i = 0; i < n; i++)); do
		[ -e "$1" ] || [ -L "$1" ] || return 0
		sleep 0.01
	done
	return 1
}
# run_bg ARGS...: mountctl ARGS in the background; TPID, MCPID; collect with run_wait.
run_bg() {
	timeout -k 5 60 "$MOUNTCTL" "$@" >"$T/bg.out" 2>&1 &
	TPID=$!
	MCPID=""
	local i
	for ((i = 0; i < 500; i++)); do
		MCPID=$(pgrep -P "$TPID" 2>/dev/null | head -n 1)
		[ -n "$MCPID" ] && break
		sleep 0.01
	done
}
run_wait() {
	wait "$TPID"
	RC=$?
	OUT=$(cat "$T/bg.out")
}
# hold NAME [ARGS...]: a background lease whose CMD writes its pid and
# token to $B/NAME.pid / .tok, then waits for $B/NAME.go.
hold() {
	local name=$1
	shift
	rm -f "$B/$name".*
	run_bg lease "$M" "$name" "$@" -- sh -c "echo \$TXDIR_LEASE_TOKEN > '$B/$name.tok';
		echo \$\$ > '$B/$name.pid'; trap 'echo term > \"$B/$name.term\"; exit 15' TERM;
		until [ -e '$B/$name.go' ]; do sleep 0.01; done"
	wait_file "$B/$name.pid"
	HOLDPID=$(cat "$B/$name.pid")
	HOLDTOK=$(cat "$B/$name.tok")
}
is_number() { [[ $1 =~ ^[0-9]+$ ]]; }

# ---- -n, tokens, exit codes ---------------------------------------------------
mc lease "$M" job -n -- sh -c 'echo "token=$TXDIR_LEASE_TOKEN"'
expect "-n on a free lease: CMD runs, exit 0" 0 "^token=[0-9]+$"
t1=${OUT#token=}
mc lease "$M" job -n -- sh -c 'echo "token=$TXDIR_LEASE_TOKEN"'
t2=${OUT#token=}
if is_number "$t1" && is_number "$t2" && [ "$t2" -gt "$t1" ]; then
	ok "the next holder gets a larger token ($t1 < $t2)"
else
	not_ok "the next holder gets a larger token" "$t1 then $t2"
fi
if wait_gone "$L/by-name/job" 20; then ok "the lease is released when CMD exits"; else not_ok "the lease is released when CMD exits"; fi
mc lease "$M" job -n -- sh -c 'exit 3'
expect "CMD's exit code is passed through" 3
mc lease "$M" job -n -- sh -c 'kill -9 $$'
expect "CMD killed by SIGKILL: 137" 137
mc lease "$M" job -n -- no-such-command-txdir
expect "CMD not found: 127, one line" 127 "^mountctl: lease: no-such-command-txdir: No such file"
if wait_gone "$L/by-name/job" 20; then ok "no lease left after CMD failed to run"; else not_ok "no lease left after CMD failed to run"; fi

# ---- held by CMD's process -------------------------------------------------------
hold job
if [ -d "$L/active/$HOLDPID/job" ]; then
	ok "the lease is CMD's: active/CMDPID/job"
else
	not_ok "the lease is CMD's: active/CMDPID/job" "$(ls -R "$L/active" 2>&1 | head -n 20)"
fi
if [ "$(cat "$L/active/$HOLDPID/job/token" 2>/dev/null)" = "$HOLDTOK" ]; then
	ok "TXDIR_LEASE_TOKEN is the lease's token"
else
	not_ok "TXDIR_LEASE_TOKEN is the lease's token" "$HOLDTOK vs $(cat "$L/active/$HOLDPID/job/token" 2>&1)"
fi
mc lease "$M" job -n -- true
expect "-n while held: busy, exit 1, names the holder's token" 1 "job is busy: held \(token $HOLDTOK"
mc lease "$M" job -n -E 9 -- true
expect "-n -E 9 while held: 9" 9 "busy"
mc lease "$M" job -w 0.3 -- true
expect "-w 0.3 while held: timed out, 1" 1 "timed out"
mc lease "$M" job -w 0.3 -E 8 -- true
expect "-w 0.3 -E 8 while held: 8" 8 "timed out"
if [ -z "$(ls -A "$L/waiting/"*/ 2>/dev/null)" ]; then
	ok "a timed-out wait withdraws its queue entry"
else
	not_ok "a timed-out wait withdraws its queue entry" "$(ls -R "$L/waiting" 2>&1)"
fi
mc lease list "$M"
expect "lease list shows it" 0 "^job +$HOLDTOK +$HOLDPID "
mc lease list --json "$M"
if [ "$RC" = 0 ] && python3 -c 'import json,sys; d=json.load(sys.stdin); assert any(l["name"]=="job" for l in d["leases"])' <<<"$OUT"; then
	ok "lease list --json: valid JSON naming job"
else
	not_ok "lease list --json: valid JSON naming job" "$OUT"
fi

# kill -9 of mountctl does not free CMD's lease; CMD's exit does
kill -9 "$MCPID"
wait "$TPID" 2>/dev/null
mc lease "$M" job -n -- true
expect "after kill -9 of mountctl, CMD still holds the lease" 1 "busy"
touch "$B/job.go"
if wait_gone "$L/active/$HOLDPID/job" 20; then
	ok "CMD's exit releases it (within 2 s)"
else
	not_ok "CMD's exit releases it (within 2 s)"
fi

# ---- -w: the queue ---------------------------------------------------------------
hold job
rm -f "$B/w.tok"
timeout -k 5 60 "$MOUNTCTL" lease "$M" job -w 30 -- sh -c "echo \$TXDIR_LEASE_TOKEN > '$B/w.tok'" \
	>"$T/w.out" 2>&1 &
WPID=$!
queued=false
for ((i = 0; i < 2000; i++)); do
	if ls "$L/waiting/"*/job >/dev/null 2>&1; then
		queued=true
		break
	fi
	sleep 0.01
done
if $queued; then ok "-w registers in the queue (waiting/PID/job)"; else not_ok "-w registers in the queue (waiting/PID/job)"; fi
touch "$B/job.go"
run_wait
wait "$WPID"
wrc=$?
wtok=$(cat "$B/w.tok" 2>/dev/null)
if [ "$wrc" = 0 ] && is_number "$wtok" && [ "$wtok" -gt "$HOLDTOK" ]; then
	ok "-w is granted when the holder ends, with a larger token"
else
	not_ok "-w is granted when the holder ends, with a larger token" "exit $wrc, token '$wtok' after $HOLDTOK: $(cat "$T/w.out")"
fi

# ---- --ttl ---------------------------------------------------------------------------
mc lease "$M" ttljob -n --ttl 2 -- sh -c "cat '$L/active/'\$\$'/ttljob/ttl'; sleep 4.5; cat '$L/active/'\$\$'/ttljob/token'"
expect "--ttl 2 with CMD running 4.5 s: renewed, not lost, exit 0" 0 "^2"
hold ttljob --ttl 1
kill -9 "$MCPID"
wait "$TPID" 2>/dev/null
if wait_gone "$L/active/$HOLDPID/ttljob" 40; then
	ok "--ttl: after kill -9 of mountctl the lease expires while CMD runs"
else
	not_ok "--ttl: after kill -9 of mountctl the lease expires while CMD runs"
fi
touch "$B/ttljob.go"

# ---- lost lease -----------------------------------------------------------------------
hold job
mc lease break "$M" job
expect "lease break: 0, says what it broke and who" 0 "^broke job \(token $HOLDTOK.* as uid 0"
run_wait
expect "the holder lost its lease: exit 122, one line" 122 "^mountctl: lease: lost lease job \(token $HOLDTOK\)"
if [ "$(cat "$B/job.term" 2>/dev/null)" = term ]; then ok "CMD got SIGTERM"; else not_ok "CMD got SIGTERM"; fi
mc lease break "$M" job
expect "lease break of a free lease: 1" 1 "not held"
hold job --ttl 2
timeout 10 rmdir "$L/active/$HOLDPID/job"
run_wait
expect "--ttl holder whose lease was removed: 122" 122 "lost lease job"

# ---- signals --------------------------------------------------------------------------
hold sig
kill -TERM "$MCPID"
run_wait
expect "SIGTERM to mountctl is forwarded to CMD" 15
if [ "$(cat "$B/sig.term" 2>/dev/null)" = term ]; then ok "CMD got the forwarded SIGTERM"; else not_ok "CMD got the forwarded SIGTERM"; fi
rm -f "$B/sig".*
run_bg lease "$M" sig -- sh -c "echo \$\$ > '$B/sig.pid'; exec sleep 30"
wait_file "$B/sig.pid"
kill -TERM "$MCPID"
run_wait
expect "CMD killed by the forwarded SIGTERM: 143" 143

# ---- EDEADLK ---------------------------------------------------------------------------
mc lease "$M" self -- "$MOUNTCTL" lease "$M" self -w 20 -- true
expect "a nested wait for the lease the outer command holds: EDEADLK, 123" 123 \
	"waiting for self would deadlock \(EDEADLK\)"
# A holds d1 and waits for d2; B holds d2 and waits for d1.
rm -f "$B"/dl*
timeout -k 5 60 "$MOUNTCTL" lease "$M" d1 -- sh -c "touch '$B/dl.a'; until [ -e '$B/dl.b' ]; do sleep 0.01; done;
	'$MOUNTCTL' lease '$M' d2 -w 20 -- true; echo \$? > '$B/dl.arc'" >"$T/dla.out" 2>&1 &
DA=$!
timeout -k 5 60 "$MOUNTCTL" lease "$M" d2 -- sh -c "touch '$B/dl.b'; until [ -e '$B/dl.a' ]; do sleep 0.01; done;
	until ls '$L/waiting/'*/d2 >/dev/null 2>&1; do sleep 0.01; done;
	'$MOUNTCTL' lease '$M' d1 -w 20 -- true; echo \$? > '$B/dl.brc'" >"$T/dlb.out" 2>&1 &
DB=$!
wait "$DA" "$DB"
if [ "$(cat "$B/dl.brc" 2>/dev/null)" = 123 ] && grep -q "deadlock" "$T/dlb.out"; then
	ok "crossed nested leases: the second wait fails EDEADLK, exit 123"
else
	not_ok "crossed nested leases: the second wait fails EDEADLK, exit 123" \
		"A: $(cat "$B/dl.arc" 2>&1) $(cat "$T/dla.out"); B: $(cat "$B/dl.brc" 2>&1) $(cat "$T/dlb.out")"
fi

# ---- as nobody ---------------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	asuser() { timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
	OUT=$(asuser "$MOUNTCTL" lease "$M" njob -n -- sh -c 'echo "token=$TXDIR_LEASE_TOKEN"' 2>&1)
	RC=$?
	expect "nobody: lease -n of a free name" 0 "^token=[0-9]+$"
	hold job
	OUT=$(asuser "$MOUNTCTL" lease "$M" job -n -- true 2>&1)
	RC=$?
	expect "nobody: root's lease is busy to it" 1 "busy"
	OUT=$(asuser "$MOUNTCTL" lease break "$M" job 2>&1)
	RC=$?
	expect "nobody: lease break of root's lease: EPERM, 1" 1 "Operation not permitted"
	OUT=$(asuser rmdir "$L/active/$HOLDPID/job" 2>&1)
	RC=$?
	expect "nobody: rmdir of root's lease: EPERM (not EACCES)" 1 "Operation not permitted"
	# bash, not sh: dash's echo says "I/O error" whatever write(2)'s errno
	OUT=$(asuser bash -c "echo 5 > '$L/active/$HOLDPID/job/ttl'" 2>&1)
	RC=$?
	expect "nobody: renewing root's lease: EPERM" 1 "Operation not permitted"
	if [ -d "$L/active/$HOLDPID/job" ]; then ok "root's lease survived nobody's attempts"; else not_ok "root's lease survived nobody's attempts"; fi
	touch "$B/job.go"
	run_wait
	expect "root's holder ends normally" 0
	rm -f "$B/n".*
	asuser "$MOUNTCTL" lease "$M" njob -- sh -c "echo \$\$ > '$B/n.pid'; trap 'exit 15' TERM;
		until [ -e '$B/n.go' ]; do sleep 0.01; done" >"$T/n.out" 2>&1 &
	NPID=$!
	wait_file "$B/n.pid"
	mc lease break "$M" njob
	expect "root may break nobody's lease" 0 "^broke njob"
	wait "$NPID"
	nrc=$?
	if [ "$nrc" = 122 ]; then ok "nobody's holder lost its lease: 122"; else not_ok "nobody's holder lost its lease: 122" "exit $nrc: $(cat "$T/n.out")"; fi
	touch "$B/n.go"
else
	skip "lease as nobody" "needs root and setpriv"
fi

mc umount "$M"
expect "umount" 0
finish
