#!/usr/bin/env bash
# tests/mount/lease.sh — leases through the mount (SPEC §5 "Leases"; issue 10
# items 1-4, 7-10), on an allow_other,default_permissions mount.
#
#   grab          mkdir active/PID/NAME grabs; a second mkdir is EEXIST;
#                 by-name/NAME links to it; token, owner, acquired, expires,
#                 ttl, info.json read; rmdir releases into completed/.
#   regrab        rmdir (or break) + mkdir by the same pid while the old
#                 grant's directory is pinned: the new token is readable.
#   nobody        as nobody (not a descendant of the holder): rmdir and ttl
#                 of root's lease EPERM, a lease for PID 1 EPERM; nobody's
#                 own lease works and is nobody's.
#   death         a holder killed with -9 is released within 1 s (pidfd).
#   restart       txdirfs SIGKILLed and remounted: a live holder keeps its
#                 lease and token, the next token is larger; a holder that
#                 died while the server was down is released (dead_process).
#   waits         waiting/PID/NAME queues behind the holder and is granted
#                 at its release; granted prints the token, and the waiting
#                 entry then goes away.
#   fifo          `mountctl lease -w` uses the queue: 16 waiters queued one
#                 after another are granted in that order, tokens rising.
#   turns         two processes take turns on one name through the queue
#                 (lease_turns.py, 2 x 250 rounds): the waiting entry and its
#                 granted never vanish (ENOENT) while the process is queued.
#   bad input     names with whitespace (EINVAL), a PID that is not a number
#                 or dead (ENOENT), ttl garbage/0/negative (EINVAL) and huge
#                 (ERANGE), a process name with \n and " escaped in owner.
#   view          a lease taken through a transaction's view is the same lease.
#   events/stats  grant, release and cleanup events; txdir_leases_held.
#   format 1      a store written by the previous format (fixture) mounts,
#                 stays format 1 until its first lease, then says 2.
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
# counters, ok/not_ok/skip, BG (killed at exit), tm_summary: lib.sh

# The errno text mkdir/rmdir/sh print, as one word for comparison.
err_of() { # cmd...
	local out
	out=$("$@" 2>&1) && { echo OK; return; }
	case $out in
	*"File exists"*) echo EEXIST ;;
	*"Operation not permitted"*) echo EPERM ;;
	*"Permission denied"*) echo EACCES ;;
	*"Invalid argument"*) echo EINVAL ;;
	*"No such file"*) echo ENOENT ;;
	*"Numerical result out of range"*) echo ERANGE ;;
	*"Resource temporarily unavailable"*) echo EAGAIN ;;
	*"Resource deadlock avoided"*) echo EDEADLK ;;
	*"No such process"*) echo ESRCH ;;
	*) echo "other: $out" ;;
	esac
}

# As nobody. The leases it tries are held by a background holder, of which
# it is no descendant (lease.h lets a holder's descendants renew and release).
as_nobody() { # shell command
	setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "$1" 2>&1
}

test_grab() {
	local L=$TM_MNT/.txdir/leases A tok t0 el
	A=$L/active/$$
	[ "$(err_of mkdir "$A/backup")" = OK ] || { not_ok "grab: mkdir"; return; }
	[ "$(err_of mkdir "$A/backup")" = EEXIST ] && ok "grab: a held name is EEXIST" ||
		not_ok "grab: second mkdir: $(err_of mkdir "$A/backup")"
	[ "$(readlink "$L/by-name/backup")" = "../active/$$/backup" ] &&
		ok "grab: by-name/backup links to the holder" ||
		not_ok "grab: by-name: $(readlink "$L/by-name/backup")"
	tok=$(cat "$A/backup/token")
	[ "$(cat "$L/by-name/backup/token")" = "$tok" ] && [ "$tok" -gt 0 ] &&
		ok "grab: token $tok, also through by-name" || not_ok "grab: token '$tok'"
	grep -q "^pid=$$ start=[0-9]* uid=0 command=" "$A/backup/owner" &&
		grep -q '^20..-..-..T..:..:..\....Z$' "$A/backup/acquired" &&
		[ "$(cat "$A/backup/expires")" = never ] && [ "$(cat "$A/backup/ttl")" = 0 ] &&
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["token"]==int(sys.argv[2])' \
			"$A/backup/info.json" "$tok" &&
		ok "grab: owner, acquired, expires, ttl, info.json" ||
		not_ok "grab: files: $(cat "$A/backup/owner" "$A/backup/acquired" "$A/backup/expires")"
	echo 30 >"$A/backup/ttl" && [ "$(cat "$A/backup/ttl")" = 30 ] &&
		[ "$(cat "$A/backup/expires")" != never ] && touch "$A/backup" &&
		ok "grab: ttl write and touch renew" || not_ok "grab: renew"
	mkdir "$A/short" && echo 1 >"$A/short/ttl" && t0=$(now_ms) &&
		wait_for 40 test ! -L "$L/by-name/short" && el=$(($(now_ms) - t0)) &&
		grep -q '"type":"lease_release","name":"short".*"how":"expiry"' "$TM_MNT/.txdir/events" &&
		ok "grab: a 1 s TTL expires (released after $el ms)" || not_ok "grab: TTL expiry"
	ls "$L/active" | grep -qx "$$" && ls "$A" | grep -qx backup &&
		ok "grab: active/ lists the holder, active/PID its lease" || not_ok "grab: listing"
	rmdir "$A/backup" && [ ! -e "$A/backup" ] && [ ! -L "$L/by-name/backup" ] &&
		grep -q '"how":	"release"' "$L/completed/$tok" &&
		ok "grab: rmdir releases; completed/$tok says how" || not_ok "grab: release"
	mkdir "$A/backup" && [ "$(cat "$A/backup/token")" -gt "$tok" ] &&
		ok "grab: the next holder gets a larger token" || not_ok "grab: next token"
	rmdir "$A/backup"
}

# A re-grab by the same pid of the same name is a new grant with its own
# node: the kernel must not reuse the released lease's directory inode,
# which rmdir marked dead (lookups in it are ENOENT), while something still
# pins it (here an open `released`, as a waiter through by-name holds one).
test_regrab() {
	local L=$TM_MNT/.txdir/leases A tok tok2 fd out
	A=$L/active/$$
	mkdir "$A/again" || { not_ok "regrab: grab"; return; }
	tok=$(cat "$A/again/token")
	exec {fd}<"$A/again/released"
	rmdir "$A/again" || not_ok "regrab: rmdir"
	read -r -t 10 out <&"$fd"
	[ "$out" = release ] && ok "regrab: the open released of the old grant says release" ||
		not_ok "regrab: released read '$out'"
	if mkdir "$A/again"; then
		tok2=$(cat "$A/again/token" 2>&1)
		[ "$tok2" -gt "$tok" ] 2>/dev/null && [ "$(cat "$L/by-name/again/token" 2>&1)" = "$tok2" ] &&
			ok "regrab: rmdir + mkdir by the same pid: token $tok2 readable (old $tok still pinned)" ||
			not_ok "regrab: token after re-grab: '$tok2' (old $tok)"
	else
		not_ok "regrab: second mkdir"
	fi
	exec {fd}<&-
	# the same after a break (no rmdir by this pid: the kernel's dentry stays)
	tok=$(cat "$A/again/token" 2>/dev/null)
	exec {fd}<"$A/again/released"
	rm "$L/by-name/again" && mkdir "$A/again" && tok2=$(cat "$A/again/token" 2>&1) &&
		[ "$tok2" -gt "$tok" ] 2>/dev/null && [ "$(cat "$A/again/ttl")" = 0 ] &&
		ok "regrab: break + mkdir by the same pid: token $tok2 readable" ||
		not_ok "regrab: after a break: '$tok2' (old $tok)"
	exec {fd}<&-
	rmdir "$A/again"
}

# cat reads what it was given after fstat(2): an open wait file whose grant
# ended meanwhile still answers GETATTR, as an unlinked file does.
test_fstat_after_end() {
	local L=$TM_MNT/.txdir/leases A fd out
	A=$L/active/$$
	mkdir "$A/gone" || { not_ok "fstat after end: grab"; return; }
	exec {fd}<"$A/gone/released"
	rmdir "$A/gone" || not_ok "fstat after end: rmdir"
	out=$(timeout 10 cat <&"$fd" 2>&1)
	exec {fd}<&-
	[ "$out" = release ] && ok "fstat after end: cat of an open released after the release prints 'release'" ||
		not_ok "fstat after end: cat printed '$out'"
	[ ! -e "$A/gone/released" ] && ok "fstat after end: the path is gone" ||
		not_ok "fstat after end: $A/gone/released still resolves"
}

test_nobody() {
	local L=$TM_MNT/.txdir/leases out
	if [ "$(id -u)" != 0 ]; then
		skip "lease nobody" "needs root (runs the other user as nobody)"
		return
	fi
	tm_start_holder
	mkdir "$L/active/$HOLDER/mine" || { not_ok "nobody: setup"; return; }
	out=$(as_nobody "rmdir $L/active/$HOLDER/mine")
	grep -q 'Operation not permitted' <<<"$out" && [ -d "$L/active/$HOLDER/mine" ] &&
		ok "nobody: rmdir of root's lease is EPERM" || not_ok "nobody: rmdir: $out"
	out=$(as_nobody "bash -c 'echo 5 >$L/active/$HOLDER/mine/ttl'")
	grep -q 'Operation not permitted' <<<"$out" && [ "$(cat "$L/active/$HOLDER/mine/ttl")" = 0 ] &&
		ok "nobody: ttl of root's lease is EPERM (from txdirfs, not EACCES)" ||
		not_ok "nobody: ttl: $out"
	# write(2)'s own errno, as dd reports it (a shell's message may hide
	# it: dash's echo says "I/O error" for any), on a lease with a TTL
	echo 30 >"$L/active/$HOLDER/mine/ttl"
	out=$(as_nobody "printf '5\\n' | dd of=$L/active/$HOLDER/mine/ttl status=none")
	grep -q "error writing.*: Operation not permitted" <<<"$out" &&
		[ "$(cat "$L/active/$HOLDER/mine/ttl")" = 30 ] &&
		ok "nobody: write(2) to ttl of root's lease with a TTL fails EPERM" ||
		not_ok "nobody: ttl write(2): $out"
	out=$(as_nobody "touch $L/active/$HOLDER/mine")
	grep -q 'Operation not permitted' <<<"$out" && ok "nobody: touch (renew) of root's lease is EPERM" ||
		not_ok "nobody: touch: $out"
	out=$(as_nobody "mkdir $L/active/1/pinned")
	grep -q 'Operation not permitted' <<<"$out" && [ ! -e "$L/by-name/pinned" ] &&
		ok "nobody: a lease for PID 1 is EPERM" || not_ok "nobody: pid 1: $out"
	out=$(as_nobody 'mkdir '"$L"'/active/$$/own && cat '"$L"'/active/$$/own/owner && stat -c %U '"$L"'/active/$$/own; :')
	grep -q 'uid=65534 ' <<<"$out" && grep -q '^nobody$' <<<"$out" &&
		ok "nobody: its own lease works and is nobody's" || not_ok "nobody: own: $out"
	out=$(as_nobody "rm -f $L/by-name/mine")
	grep -q 'Operation not permitted' <<<"$out" && [ -L "$L/by-name/mine" ] &&
		ok "nobody: breaking root's lease (unlink by-name) is EPERM" || not_ok "nobody: break: $out"
	out=$(as_nobody 'mkdir '"$L"'/active/$$/nb && rm '"$L"'/by-name/nb && ls '"$L"'/by-name; echo "rc=$?"')
	! grep -q '^nb$' <<<"$out" && grep -q 'rc=0' <<<"$out" &&
		ok "nobody: breaks its own lease" || not_ok "nobody: own break: $out"
	rmdir "$L/active/$HOLDER/mine" && ok "nobody: root releases anyone's lease" || not_ok "nobody: root rmdir"
	tm_start_holder
	mkdir "$L/active/$HOLDER/brk" && rm "$L/by-name/brk" && [ ! -e "$L/active/$HOLDER/brk" ] &&
		grep -q '"type":"lease_break","name":"brk".*"how":"break","by_pid":[0-9]*,"by_uid":0' \
			"$TM_MNT/.txdir/events" &&
		ok "break: unlink of by-name/NAME breaks the lease, logged with who broke it" ||
		not_ok "break: $(grep brk "$TM_MNT/.txdir/events")"
	kill -KILL "$HOLDER"
}

test_death() {
	local L=$TM_MNT/.txdir/leases t0 el
	tm_start_holder
	mkdir "$L/active/$HOLDER/reclaim" || { not_ok "death: grab"; return; }
	t0=$(now_ms)
	kill -KILL "$HOLDER"
	wait_for 50 test ! -L "$L/by-name/reclaim"
	el=$(($(now_ms) - t0))
	if [ ! -L "$L/by-name/reclaim" ] && [ "$el" -le 1000 ]; then
		ok "death: kill -9 of the holder released it in $el ms"
	else
		not_ok "death: still held after $el ms"
	fi
	grep -q '"type":"lease_cleanup","name":"reclaim".*"how":"death"' "$TM_MNT/.txdir/events" &&
		ok "death: a lease_cleanup event" || not_ok "death: no cleanup event"
}

test_restart() {
	local L tok tok2 dead
	mount_killable "$OPTS" || { not_ok "restart: mount"; return; }
	L=$TM_MNT/.txdir/leases
	tm_start_holder
	mkdir "$L/active/$HOLDER/keep" || { not_ok "restart: grab"; return; }
	tok=$(cat "$L/active/$HOLDER/keep/token")
	tm_start_holder
	dead=$HOLDER
	mkdir "$L/active/$dead/gone" || { not_ok "restart: grab 2"; return; }
	HOLDER=${BG[-2]}
	kill_server && detach || { not_ok "restart: kill server"; return; }
	kill -KILL "$dead"
	wait_for 50 all_dead "$dead"
	start_server "$OPTS" || { not_ok "restart: remount"; return; }
	[ "$(cat "$L/by-name/keep/token" 2>/dev/null)" = "$tok" ] &&
		ok "restart: a live holder keeps its lease and token $tok" ||
		not_ok "restart: keep: $(cat "$L/by-name/keep/token" 2>&1)"
	[ ! -L "$L/by-name/gone" ] && grep -lq '"how":	"dead_process"' "$L"/completed/* &&
		ok "restart: a holder that died while the server was down is released" ||
		not_ok "restart: gone: $(ls "$L/by-name")"
	mkdir "$L/active/$$/after" && tok2=$(cat "$L/active/$$/after/token") &&
		[ "$tok2" -gt "$tok" ] && ok "restart: the next token ($tok2) is larger" ||
		not_ok "restart: next token '$tok2' after $tok"
	kill -KILL "$HOLDER"
	wait_for 50 test ! -L "$L/by-name/keep" && ok "restart: the re-watched holder's death releases" ||
		not_ok "restart: keep not released after its holder died"
	tm_umount >/dev/null || not_ok "restart: unmount"
}

# A process blocked in a FUSE request (its wchan names the wait).
in_fuse_wait() { # pid
	local w
	w=$(cat "/proc/$1/wchan" 2>/dev/null) || return 1
	case $w in *request_wait_answer* | *fuse*) return 0 ;; esac
	return 1
}

test_waits() {
	local L=$TM_MNT/.txdir/leases w tok r t0 el out
	tm_start_holder
	w=$HOLDER
	mkdir "$L/active/$$/q" || { not_ok "waits: grab"; return; }
	[ "$(err_of mkdir "$L/waiting/$w/q")" = OK ] && [ -d "$L/waiting/$w/q" ] &&
		ok "waits: waiting/PID/NAME queues behind the holder" || { not_ok "waits: queue"; return; }
	[ "$(err_of mkdir "$L/active/$w/q")" = EEXIST ] && ok "waits: a grab meanwhile is EEXIST" ||
		not_ok "waits: grab while queued"
	# released: blocks (in the kernel, not holding a server worker) until
	# the grant current at open ends; granted: until the grant
	cat "$L/by-name/q/released" >"$TM_DIR/rel.out" 2>&1 &
	r=$!
	BG+=("$r")
	cat "$L/waiting/$w/q/granted" >"$TM_DIR/gr.out" 2>&1 &
	BG+=("$!")
	wait_for 100 in_fuse_wait "$r" && ok "waits: released blocks while the grant lasts" ||
		not_ok "waits: released reader not waiting"
	out=$(python3 -c 'import os, sys, errno, select
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 64); print("read")
except OSError as e:
    print(errno.errorcode[e.errno])
p = select.poll(); p.register(fd, select.POLLIN); print(p.poll(0))' "$L/by-name/q/released" 2>&1)
	[ "$out" = $'EAGAIN\n[]' ] && ok "waits: O_NONBLOCK reads EAGAIN, poll says not ready" ||
		not_ok "waits: nonblock: $out"
	python3 -c 'import os, sys, select
fd = os.open(sys.argv[1], os.O_RDONLY)
p = select.poll(); p.register(fd, select.POLLIN)
open(sys.argv[2], "w").close()
r = p.poll(20000)
sys.stdout.write("%s %s" % (r != [], os.read(fd, 64).decode()))' "$L/by-name/q/released" "$TM_DIR/poll.ready" \
		>"$TM_DIR/poll.out" 2>&1 &
	BG+=("$!")
	wait_for 100 test -e "$TM_DIR/poll.ready"
	rmdir "$L/active/$$/q"
	wait_for 100 grep -q release "$TM_DIR/rel.out" && ok "waits: the release ends the released read" ||
		not_ok "waits: released: $(cat "$TM_DIR/rel.out")"
	wait_for 100 grep -q 'True release' "$TM_DIR/poll.out" && ok "waits: poll(2) wakes at the release" ||
		not_ok "waits: poll: $(cat "$TM_DIR/poll.out")"
	wait_for 100 test -s "$TM_DIR/gr.out"
	tok=$(cat "$TM_DIR/gr.out")
	[ -d "$L/active/$w/q" ] && [ "$(cat "$L/active/$w/q/token")" = "$tok" ] &&
		ok "waits: the release grants the waiter; granted prints token $tok" ||
		not_ok "waits: granted '$tok'"
	[ ! -e "$L/waiting/$w/q" ] && [ -d "$L/active/$w/q" ] &&
		ok "waits: the waiting entry goes once granted was read" ||
		not_ok "waits: waiting/$w/q still there after granted was read"
	# a waiting reader killed with -9 goes at once (INTERRUPT answered)
	# (through by-name: its link now names the new holder, see ctl_lease.c)
	(exec cat "$L/by-name/q/released") >"$TM_DIR/kr.out" 2>&1 &
	r=$!
	disown "$r"
	wait_for 100 in_fuse_wait "$r" || not_ok "waits: reader: $(cat "$TM_DIR/kr.out")"
	t0=$(now_ms)
	kill -KILL "$r"
	wait_for 20 all_dead "$r"
	el=$(($(now_ms) - t0))
	all_dead "$r" && [ -d "$L/active/$w/q" ] && ok "waits: a killed reader is gone in $el ms" ||
		not_ok "waits: killed reader still there after $el ms"
	kill -KILL "$w"
	wait_for 50 test ! -L "$L/by-name/q"
	# EDEADLK: A holds d1 and waits for d2; B holds d2 and would wait for d1
	local a b
	tm_start_holder
	a=$HOLDER
	tm_start_holder
	b=$HOLDER
	mkdir "$L/active/$a/d1" "$L/active/$b/d2" "$L/waiting/$a/d2" || { not_ok "deadlock: setup"; return; }
	[ "$(err_of mkdir "$L/waiting/$b/d1")" = EDEADLK ] && [ ! -e "$L/waiting/$b/d1" ] &&
		ok "waits: a wait that closes a cycle is EDEADLK" || not_ok "waits: deadlock not refused"
	grep '"type":"lease_deadlock"' "$TM_MNT/.txdir/events" | grep -q "\"pid\":$a" &&
		ok "waits: the cycle is in events" || not_ok "waits: no deadlock event"
	# filed under the refused waiter B (its journal), with who asked (by_pid)
	grep '"type":"lease_deadlock"' "$TM_MNT/.txdir/recovery/journals/$b/journal" 2>/dev/null |
		grep -q "\"pid\":$b,.*\"by_pid\":[1-9]" &&
		ok "waits: the refusal is in the refused waiter's journal" ||
		not_ok "waits: deadlock not in journals/$b: $(grep lease_deadlock "$TM_MNT/.txdir/events")"
	# a grant on behalf of another process names who asked (records probe R15)
	grep '"type":"lease_grant","name":"d1"' "$TM_MNT/.txdir/events" |
		grep -q "\"pid\":$a,.*\"by_pid\":[1-9]" &&
		ok "waits: a grant made for another process records who asked" ||
		not_ok "waits: lease_grant d1 without by_pid: $(grep '"name":"d1"' "$TM_MNT/.txdir/events")"
	kill -KILL "$a" "$b"
}

# How many processes wait for NAME (waiting/*/NAME).
queued_n() { # name n
	local e c=0
	for e in "$TM_MNT"/.txdir/leases/waiting/*/"$1"; do
		[ -e "$e" ] && c=$((c + 1))
	done
	[ "$c" -ge "$2" ]
}

# More readers of one `released` than one batch of wake-ups (ctl_wait.h):
# every one of 100 blocked readers is answered when the lease ends.
test_many_waiters() {
	local L=$TM_MNT/.txdir/leases A=$TM_MNT/.txdir/leases/active/$$ pids=() p crowd=100 blocked
	mkdir "$A/crowd" || { not_ok "crowd: grab"; return; }
	for ((p = 0; p < crowd; p++)); do
		timeout 60 cat "$A/crowd/released" >"$TM_DIR/crowd.$p" 2>&1 &
		pids+=($!)
	done
	all_blocked() { # bash builtins only: 100 processes a pass
		local q k w c=0
		for q in "${pids[@]}"; do
			k= w=
			read -r k _ <"/proc/$q/task/$q/children" 2>/dev/null
			[ -n "$k" ] && { read -r w <"/proc/$k/wchan"; } 2>/dev/null
			# in READ, not still in OPEN: the file is open (fd 3)
			[[ $w == *request_wait_answer* ]] && [ -e "/proc/$k/fd/3" ] && c=$((c + 1))
		done
		blocked=$c
		[ "$c" -eq "$crowd" ]  # not $n: wait_for has a local n
	}
	wait_for 200 all_blocked || echo "# crowd: $blocked of $crowd readers blocked before the release"
	rmdir "$A/crowd" || not_ok "crowd: rmdir"
	local answered=0 q
	for q in "${pids[@]}"; do
		wait "$q" # each bounded by its timeout
	done
	for ((p = 0; p < crowd; p++)); do
		[ "$(cat "$TM_DIR/crowd.$p")" = release ] && answered=$((answered + 1))
	done
	[ "$answered" -eq "$crowd" ] && ok "crowd: all $crowd blocked readers of released are answered" ||
		not_ok "crowd: $answered of $crowd readers answered 'release'"
}

test_fifo() {
	local L=$TM_MNT/.txdir/leases i p h rc=0 want="" got pids=()
	[ -x "${MOUNTCTL:-}" ] || { skip "fifo" "no MOUNTCTL"; return; }
	# held by a process that is no ancestor of the waiters (mountctl
	# refuses to wait for its own ancestor: EDEADLK)
	tm_start_holder
	h=$HOLDER
	mkdir "$L/active/$h/fifo" || { not_ok "fifo: grab"; return; }
	: >"$TM_DIR/fifo.order"
	for i in $(seq 1 16); do
		timeout -k 5 120 "$MOUNTCTL" lease "$TM_MNT" fifo -w 110 -- \
			sh -c "echo $i \$TXDIR_LEASE_TOKEN >> '$TM_DIR/fifo.order'" \
			>"$TM_DIR/fifo.$i.out" 2>&1 &
		pids+=("$!")
		BG+=("$!")
		want+="$i "
		# queued before the next one starts: the queue's order is known
		wait_for 100 queued_n fifo "$i" || {
			not_ok "fifo: waiter $i not queued: $(cat "$TM_DIR/fifo.$i.out")"
			kill -KILL "$h"
			return
		}
	done
	rmdir "$L/active/$h/fifo"
	for p in "${pids[@]}"; do
		wait "$p" || rc=$?
	done
	got=$(cut -d' ' -f1 "$TM_DIR/fifo.order" | tr '\n' ' ')
	[ "$rc" = 0 ] && [ "$got" = "$want" ] &&
		ok "fifo: 16 lease -w waiters granted first come, first served" ||
		not_ok "fifo: order '$got' (rc $rc)"
	[ "$(wc -l <"$TM_DIR/fifo.order")" = 16 ] &&
		cut -d' ' -f2 "$TM_DIR/fifo.order" | sort -n -c -u 2>/dev/null &&
		ok "fifo: tokens rise in grant order" ||
		not_ok "fifo: tokens $(cut -d' ' -f2 "$TM_DIR/fifo.order" | tr '\n' ' ')"
	kill -KILL "$h"
}

test_turns() {
	local out
	out=$(timeout -k 5 120 python3 "$HERE/lease_turns.py" "$TM_MNT" 250 2>&1) &&
		ok "turns: 500 queued grabs, waiting entry and granted never ENOENT" ||
		not_ok "turns: $out"
}

test_bad() {
	local L=$TM_MNT/.txdir/leases A e
	A=$L/active/$$
	local tab=$'\t' nl=$'\n'
	e="$(err_of mkdir "$A/a b") $(err_of mkdir "$A/a${tab}b") $(err_of mkdir "$A/a${nl}b")"
	[ "$e" = "EINVAL EINVAL EINVAL" ] && ok "bad: names with whitespace are EINVAL" ||
		not_ok "bad: names: $e"
	e="$(err_of mkdir "$L/active/abc/x") $(err_of mkdir "$L/active/0$$/x")"
	[ "$e" = "ENOENT ENOENT" ] && ok "bad: a PID that is not a number is ENOENT" ||
		not_ok "bad: pid text: $e"
	tm_start_holder
	[ -d "$L/active/$HOLDER" ] || not_ok "bad: a live PID's directory" # the kernel caches it
	kill -KILL "$HOLDER"
	wait_for 50 all_dead "$HOLDER"
	e=$(err_of mkdir "$L/active/$HOLDER/x")
	[ "$e" = ENOENT ] && ok "bad: a dead PID is ENOENT (its directory cached while alive)" ||
		not_ok "bad: dead pid: $e"
	mkdir "$A/t" || { not_ok "bad: grab"; return; }
	e=""
	for v in abc 0 -5 1.5 ""; do
		e="$e $(err_of bash -c "printf '%s\n' '$v' >$A/t/ttl")"
	done
	e="$e $(err_of bash -c "echo 99999999999999999999 >$A/t/ttl")"
	[ "$e" = " EINVAL EINVAL EINVAL EINVAL EINVAL ERANGE" ] && [ "$(cat "$A/t/ttl")" = 0 ] &&
		ok "bad: ttl garbage, 0, negative, fraction, empty EINVAL; huge ERANGE; nothing changed" ||
		not_ok "bad: ttl:$e"
	rmdir "$A/t"
	# one write(2) to comm (bash's printf writes line by line)
	python3 -c 'import os, sys
with open("/proc/self/comm", "w") as f:
    f.write("x\ny\"z")
d = "%s/active/%d/nm" % (sys.argv[1], os.getpid())
os.mkdir(d)
sys.stdout.write(open(d + "/owner").read())' "$L" >"$TM_DIR/owner.out" 2>&1
	grep -qF 'command=x\ny\"z' "$TM_DIR/owner.out" && [ "$(wc -l <"$TM_DIR/owner.out")" = 1 ] &&
		ok "bad: a process name with \\n and \" is escaped in owner" ||
		not_ok "bad: owner: $(cat "$TM_DIR/owner.out")"
}

test_view() {
	local L=$TM_MNT/.txdir/leases T=$TM_MNT/.txdir/txn
	mkdir "$T/v" && mkdir "$T/v/root/.txdir/leases/active/$$/inview" ||
		{ not_ok "view: grab through the view"; return; }
	[ -L "$L/by-name/inview" ] &&
		[ "$(err_of mkdir "$L/active/$$/inview")" = EEXIST ] &&
		[ "$(cat "$T/v/root/.txdir/leases/by-name/inview/token")" = "$(cat "$L/by-name/inview/token")" ] &&
		ok "view: a lease taken in a transaction's view is the same lease" ||
		not_ok "view: not the same lease"
	echo abort >"$T/v/ctl"
	[ -L "$L/by-name/inview" ] && ok "view: the lease is not part of the transaction (abort keeps it)" ||
		not_ok "view: abort released the lease"
	rmdir "$L/active/$$/inview"
	if [ -x "${MOUNTCTL:-}" ]; then
		local out
		out=$(timeout 60 "$MOUNTCTL" run "$TM_MNT" -- sh -c "mkdir $L/active/\$\$/inrun &&
			cat $L/by-name/inrun/token && rmdir $L/active/\$\$/inrun" 2>&1)
		[ $? = 0 ] && [ "$out" -gt 0 ] 2>/dev/null && [ ! -L "$L/by-name/inrun" ] &&
			ok "view: grab and release inside mountctl run" || not_ok "view: in a run: $out"
	else
		skip "lease in mountctl run" "no \$MOUNTCTL"
	fi
}

test_events() {
	local E=$TM_MNT/.txdir/events S
	grep -q '"type":"lease_grant"' "$E" && grep -q '"type":"lease_release".*"how":"release"' "$E" &&
		ok "events: grant and release" || not_ok "events"
	mkdir "$TM_MNT/.txdir/leases/active/$$/held"
	S=$(cat "$TM_MNT/.txdir/stats")
	grep -q '^txdir_leases_held 1$' <<<"$S" && grep -q '^txdir_lease_releases_total{reason="release"} [1-9]' <<<"$S" &&
		grep -q '^txdir_lease_releases_total{reason="death"} [1-9]' <<<"$S" &&
		grep -q '^txdir_lease_wait_seconds_count' <<<"$S" &&
		ok "stats: txdir_leases_held, txdir_lease_releases_total{reason}, txdir_lease_wait_seconds" ||
		not_ok "stats: $(grep lease <<<"$S")"
	rmdir "$TM_MNT/.txdir/leases/active/$$/held"
}

test_quota() {
	local L out
	if [ "$(id -u)" != 0 ]; then
		skip "lease quota" "needs root (runs the limited user as nobody)"
		return
	fi
	tm_mount "$OPTS,max_leases=2,max_waiters=1" || { not_ok "quota: mount"; return; }
	L=$TM_MNT/.txdir/leases
	out=$(as_nobody 'A='"$L"'/active/$$; mkdir $A/q1 && mkdir $A/q2 && mkdir $A/q3; echo "rc=$?"; ls $A | tr "\n" " "')
	grep -q 'Disk quota exceeded' <<<"$out" && grep -q 'q1 q2 $' <<<"$out" &&
		ok "quota: past max_leases a uid gets EDQUOT, nothing half-done" || not_ok "quota: $out"
	mkdir "$L/active/$$/r1" "$L/active/$$/r2" "$L/active/$$/r3" &&
		ok "quota: root is not limited" || not_ok "quota: root limited"
	out=$(as_nobody 'W='"$L"'/waiting/$$; mkdir $W/r1 && mkdir $W/r2; echo "rc=$?"; ls $W | tr "\n" " "')
	grep -q 'Disk quota exceeded' <<<"$out" && grep -q '^r1 $' <<<"$out" &&
		ok "quota: past max_waiters a uid gets EDQUOT" || not_ok "quota: waiters: $out"
	tm_umount >/dev/null || not_ok "quota: unmount"
}

test_format1() {
	local fx=$HERE/../fixtures/store-format1.tar.gz tok=""
	[ -f "$fx" ] || { not_ok "format 1: fixture missing"; return; }
	tm_mount "$OPTS" && tm_stop || { not_ok "format 1: mount"; return; }
	rm -rf "$TM_STORE" && tar -xzf "$fx" -C "$TM_DIR" || { not_ok "format 1: unpack"; return; }
	tm_start "$OPTS" || { not_ok "format 1: the new binary mounts a format-1 store"; return; }
	[ "$(cat "$TM_MNT/dir/a")" = hello ] && [ "$(cat "$TM_MNT/b")" = "format one" ] &&
		[ "$(cat "$TM_STORE/FORMAT")" = "txdir-store 1" ] &&
		ok "format 1: its files read back; FORMAT stays 1 without a lease" ||
		not_ok "format 1: content or FORMAT: $(cat "$TM_STORE/FORMAT")"
	mkdir "$TM_MNT/.txdir/leases/active/$$/up" && tok=$(cat "$TM_MNT/.txdir/leases/active/$$/up/token") &&
		[ "$(cat "$TM_STORE/FORMAT")" = "txdir-store 3" ] &&
		ok "format 1: the first lease makes it format 3" || not_ok "format 1: upgrade"
	tm_stop && tm_start "$OPTS" && [ "$(cat "$TM_MNT/.txdir/leases/by-name/up/token")" = "$tok" ] &&
		ok "format 1: the lease survives a remount" || not_ok "format 1: after remount"
	tm_umount >/dev/null || not_ok "format 1: unmount"
}

# A store written by the format-2 binary (tests/fixtures/store-format2.tar.gz:
# files, lease "two" granted (token 1) and released, lease "kept" (token 2)
# held by a process long gone, the server SIGKILLed after them).
test_format2() {
	local fx=$HERE/../fixtures/store-format2.tar.gz tok=""
	[ -f "$fx" ] || { not_ok "format 2: fixture missing"; return; }
	tm_mount "$OPTS" && tm_stop || { not_ok "format 2: mount"; return; }
	rm -rf "$TM_STORE" && tar -xzf "$fx" -C "$TM_DIR" || { not_ok "format 2: unpack"; return; }
	tm_start "$OPTS" || { not_ok "format 2: the new binary mounts a format-2 store"; return; }
	[ "$(cat "$TM_MNT/dir/a")" = hello ] && [ "$(cat "$TM_MNT/b")" = "format two" ] &&
		[ ! -e "$TM_MNT/.txdir/leases/by-name/kept" ] &&
		ok "format 2: its files read back; the dead holder's lease is released" ||
		not_ok "format 2: content or lease: $(ls "$TM_MNT/.txdir/leases/by-name")"
	# dead_process here; reboot on another machine (the fixture's boot id)
	grep -Eq '"how":[[:space:]]*"(dead_process|reboot)"' "$TM_MNT/.txdir/leases/completed/2" 2>/dev/null &&
		[ "$(cat "$TM_STORE/FORMAT")" = "txdir-store 3" ] &&
		ok "format 2: the start-up release is recorded (completed/2) and makes it format 3" ||
		not_ok "format 2: completed/2: $(cat "$TM_MNT/.txdir/leases/completed/2" 2>&1), FORMAT $(cat "$TM_STORE/FORMAT")"
	tm_stop && tm_start "$OPTS" || { not_ok "format 2: remount after its checkpoint"; return; }
	mkdir "$TM_MNT/.txdir/leases/active/$$/three" &&
		tok=$(cat "$TM_MNT/.txdir/leases/active/$$/three/token") && [ "$tok" -gt 2 ] &&
		ok "format 2: a new lease gets a larger token ($tok)" ||
		not_ok "format 2: token '$tok', FORMAT $(cat "$TM_STORE/FORMAT")"
	tm_stop && tm_start "$OPTS" &&
		[ "$(cat "$TM_MNT/.txdir/leases/by-name/three/token")" = "$tok" ] &&
		ok "format 2: the lease survives a remount" || not_ok "format 2: after remount"
	tm_umount >/dev/null || not_ok "format 2: unmount"
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_grab
test_regrab
test_fstat_after_end
test_nobody
test_death
test_waits
test_many_waiters
test_fifo
test_turns
test_bad
test_view
test_events
tm_umount >/dev/null || not_ok "unmount"
test_restart
test_quota
test_format1
test_format2
tm_summary
