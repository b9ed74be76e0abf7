#!/usr/bin/env bash
# tests/mount/dtc.sh — fenced commits and prepared transactions through the
# mount (SPEC §4; issue 11 items 4, 4b), on an allow_other,default_permissions
# mount.
#
#   fenced        "commit if-lease NAME TOKEN" with the held token commits;
#                 a wrong token, a released lease: ESTALE, nothing applied,
#                 status "aborted conflict lease=..."; malformed: EINVAL.
#   prepare bad   "prepare P as NAME" of an unknown proposal: ENOENT, still
#                 active; malformed or of an empty transaction: EINVAL.
#   prepare       (with the vote service's .txdir/consensus, else skipped)
#                 prepared: status, dtc/transactions; its files' writers
#                 EBUSY at open, readers fine; rmdir and abort EBUSY; bob's
#                 yes commits it, bob's no aborts it ("aborted decision");
#                 txdirfs SIGKILLed while it is in doubt: after the restart
#                 it is still prepared and locked, and the decision resolves
#                 it.
#   paused        a holder with a 1 s TTL pauses itself (SIGSTOP) with its
#                 transaction ready; its lease expires, a successor grabs
#                 it and commits fenced; the old holder resumes (SIGCONT)
#                 and its fenced commit is refused (ESTALE): the successor's
#                 file stays.
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

# The errno text of a failed `echo CMD > FILE`, as one word.
write_err() { # file text
	local out
	out=$( { printf '%s\n' "$2" >"$1"; } 2>&1) && { echo OK; return; }
	case $out in
	*"Stale file handle"*) echo ESTALE ;;
	*"Invalid argument"*) echo EINVAL ;;
	*"Device or resource busy"*) echo EBUSY ;;
	*"No such file"*) echo ENOENT ;;
	*) echo "other: $out" ;;
	esac
}

# Is PID (or its child) blocked in a FUSE request (its wchan names the wait)?
in_fuse_wait() { # pid
	local p w
	for p in "$1" $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
		w=$(cat "/proc/$p/wchan" 2>/dev/null) || continue
		case $w in *request_wait_answer* | *fuse*) return 0 ;; esac
	done
	return 1
}

# Is process PID stopped (state T in /proc/PID/stat)?
stopped() { # pid
	[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = T ]
}

test_fenced() {
	local L=$TM_MNT/.txdir/leases T=$TM_MNT/.txdir/txn A tok
	A=$L/active/$$
	mkdir "$A/job" && tok=$(cat "$A/job/token") || { not_ok "fenced: grab"; return; }
	mkdir "$T/good" && echo good >"$T/good/root/g" || { not_ok "fenced: txn"; return; }
	[ "$(write_err "$T/good/ctl" "commit if-lease job $tok")" = OK ] && [ "$(cat "$TM_MNT/g")" = good ] &&
		grep -q '^committed ' "$T/good/status" &&
		ok "fenced: the held token commits" || not_ok "fenced: held token: $(cat "$T/good/status")"
	mkdir "$T/wrong" && echo wrong >"$T/wrong/root/w"
	[ "$(write_err "$T/wrong/ctl" "commit if-lease job $((tok + 1))")" = ESTALE ] && [ ! -e "$TM_MNT/w" ] &&
		grep -q "^aborted conflict lease=job token=$((tok + 1)) held=$tok" "$T/wrong/status" &&
		ok "fenced: a wrong token is ESTALE, nothing applied, status says why" ||
		not_ok "fenced: wrong token: $(cat "$T/wrong/status")"
	mkdir "$T/bad" && echo bad >"$T/bad/root/b"
	[ "$(write_err "$T/bad/ctl" "commit if-lease job")" = EINVAL ] &&
		[ "$(write_err "$T/bad/ctl" "commit if-lease job x1")" = EINVAL ] &&
		[ "$(write_err "$T/bad/ctl" $'commit if-lease jo\tb 1')" = EINVAL ] &&
		grep -q '^active' "$T/bad/status" && ok "fenced: malformed is EINVAL, still active" ||
		not_ok "fenced: malformed: $(cat "$T/bad/status")"
	rmdir "$A/job"
	[ "$(write_err "$T/bad/ctl" "commit if-lease job $tok")" = ESTALE ] && [ ! -e "$TM_MNT/b" ] &&
		grep -q 'held=none' "$T/bad/status" &&
		ok "fenced: a released lease is ESTALE" || not_ok "fenced: released: $(cat "$T/bad/status")"
	rmdir "$T/good" "$T/wrong" "$T/bad"
}

# The Jepsen/Kleppmann scenario: a paused holder must not overwrite its
# successor's work.
test_paused() {
	local L=$TM_MNT/.txdir/leases T=$TM_MNT/.txdir/txn D=$TM_DIR hp tok new rc
	(
		A=$L/active/$BASHPID
		mkdir "$A/lock" && echo 1 >"$A/lock/ttl" && tok=$(cat "$A/lock/token") &&
			mkdir "$T/old" && echo old >"$T/old/root/data" && echo old >"$T/old/root/old-only" ||
			exit 1
		echo "$tok" >"$D/tok"
		kill -STOP "$BASHPID"
		write_err "$T/old/ctl" "commit if-lease lock $tok" >"$D/old.out"
	) &
	hp=$!
	if ! wait_for 100 stopped "$hp"; then
		not_ok "paused: the holder did not reach its pause"
		kill -KILL "$hp" 2>/dev/null
		return
	fi
	tok=$(cat "$D/tok")
	wait_for 100 test ! -L "$L/by-name/lock" ||
		{ not_ok "paused: the lease of the stopped holder did not expire"; kill -KILL "$hp"; return; }
	mkdir "$L/active/$$/lock" && new=$(cat "$L/active/$$/lock/token") &&
		mkdir "$T/new" && echo new >"$T/new/root/data" &&
		[ "$(write_err "$T/new/ctl" "commit if-lease lock $new")" = OK ] &&
		ok "paused: the successor (token $new > $tok) commits fenced" ||
		not_ok "paused: successor: $(cat "$T/new/status" 2>&1)"
	kill -CONT "$hp"
	wait "$hp"
	rc=$?
	[ "$rc" = 0 ] && [ "$(cat "$D/old.out")" = ESTALE ] && [ "$(cat "$TM_MNT/data")" = new ] &&
		[ ! -e "$TM_MNT/old-only" ] && grep -q "^aborted conflict lease=lock token=$tok held=$new" "$T/old/status" &&
		ok "paused: the resumed old holder's fenced commit is refused (ESTALE); the successor's data stays" ||
		not_ok "paused: old holder rc=$rc out=$(cat "$D/old.out" 2>&1) data=$(cat "$TM_MNT/data") status=$(cat "$T/old/status")"
	grep -q '"type":"txn_abort".*"reason":"conflict","fenced":true' "$TM_MNT/.txdir/events" &&
		ok "paused: the refusal is an event" || not_ok "paused: no txn_abort fenced event"
	rmdir "$L/active/$$/lock" "$T/old" "$T/new"
}

test_prepare_bad() {
	local T=$TM_MNT/.txdir/txn
	mkdir "$T/pb" && echo x >"$T/pb/root/pbfile" || { not_ok "prepare bad: txn"; return; }
	[ "$(write_err "$T/pb/ctl" "prepare nosuch as alice")" = ENOENT ] && grep -q '^active' "$T/pb/status" &&
		ok "prepare bad: an unknown proposal is ENOENT, still active" ||
		not_ok "prepare bad: unknown: $(cat "$T/pb/status")"
	[ "$(write_err "$T/pb/ctl" "prepare P")" = EINVAL ] &&
		[ "$(write_err "$T/pb/ctl" "prepare P as a b")" = EINVAL ] &&
		[ "$(write_err "$T/pb/ctl" "prepare P as")" = EINVAL ] &&
		ok "prepare bad: malformed is EINVAL" || not_ok "prepare bad: malformed"
	mkdir "$T/pe" && [ "$(write_err "$T/pe/ctl" "prepare nosuch as alice")" = ENOENT ] &&
		grep -q '^active' "$T/pe/status" &&
		ok "prepare bad: an empty transaction's prepare meets what its vote would (ENOENT), still active" ||
		not_ok "prepare bad: empty: $(cat "$T/pe/status")"
	rmdir "$T/pb" "$T/pe"
}

# A proposal P among alice and bob (SPEC §5 "Two-phase commit").
propose() { # P
	local C=$TM_MNT/.txdir/consensus
	mkdir "$C/proposals/$1" && echo "alice,bob" >"$C/proposals/$1/participants"
}

# Transaction NAME that creates FILE and rewrites the existing LOCKED, then
# "prepare P as alice".
prepared() { # name P file locked
	local T=$TM_MNT/.txdir/txn
	echo old >"$TM_MNT/$4" && propose "$2" && mkdir "$T/$1" && echo "$1" >"$T/$1/root/$3" &&
		echo new >"$T/$1/root/$4" && [ "$(write_err "$T/$1/ctl" "prepare $2 as alice")" = OK ]
}

test_prepare() {
	local T=$TM_MNT/.txdir/txn C=$TM_MNT/.txdir/consensus id
	prepared t1 P1 f1 g1 || { not_ok "prepare: t1 on P1: $(cat "$T/t1/status" 2>&1)"; return; }
	[ "$(cat "$T/t1/status")" = "prepared P1" ] && [ ! -e "$TM_MNT/f1" ] &&
		ok "prepare: status prepared P1, nothing applied" || not_ok "prepare: $(cat "$T/t1/status")"
	id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["txid"])' "$T/t1/info.json")
	grep -q '"state":"prepared"' "$TM_MNT/.txdir/dtc/transactions/$id" &&
		grep -q '"proposal":"P1"' "$TM_MNT/.txdir/dtc/transactions/$id" &&
		ok "prepare: dtc/transactions/$id says prepared, P1" || not_ok "prepare: dtc record"
	[ "$(write_err "$TM_MNT/g1" main)" = EBUSY ] && [ "$(cat "$TM_MNT/g1")" = old ] &&
		ok "prepare: a writer of its file fails EBUSY at open; readers read" ||
		not_ok "prepare: main writer: $(write_err "$TM_MNT/g1" main)"
	mkdir "$T/other" && [ "$(write_err "$T/other/root/g1" other)" = EBUSY ] &&
		ok "prepare: a writer in another view fails EBUSY" || not_ok "prepare: other view"
	rmdir "$T/other"
	! rmdir "$T/t1" 2>/dev/null && [ "$(write_err "$T/t1/ctl" abort)" = EBUSY ] &&
		[ "$(cat "$T/t1/status")" = "prepared P1" ] &&
		ok "prepare: rmdir and abort are EBUSY, still prepared" || not_ok "prepare: rmdir/abort"
	echo yes >"$C/votes/P1/bob"
	wait_for 50 test -e "$TM_MNT/f1" && [ "$(cat "$TM_MNT/g1")" = new ] &&
		grep -q '^committed ' "$T/t1/status" &&
		ok "prepare: bob's yes commits it" || not_ok "prepare: commit: $(cat "$T/t1/status")"
	prepared t2 P2 f2 g2 || { not_ok "prepare: t2"; return; }
	echo no >"$C/votes/P2/bob"
	wait_for 50 grep -q '^aborted decision proposal=P2 reason=no from bob' "$T/t2/status" &&
		[ ! -e "$TM_MNT/f2" ] && [ "$(cat "$TM_MNT/g2")" = old ] &&
		ok "prepare: bob's no aborts it" || not_ok "prepare: abort: $(cat "$T/t2/status")"
	prepared t3 P3 f3 g3 || { not_ok "prepare: t3"; return; }
	kill_server && detach && start_server "$OPTS" || { not_ok "prepare: restart"; return; }
	[ "$(cat "$T/t3/status" 2>&1)" = "prepared P3" ] && [ ! -e "$TM_MNT/f3" ] &&
		[ "$(write_err "$TM_MNT/g3" main)" = EBUSY ] &&
		ok "prepare: in doubt across a SIGKILL: still prepared and locked" ||
		not_ok "prepare: after restart: $(cat "$T/t3/status" 2>&1)"
	echo yes >"$C/votes/P3/bob"
	wait_for 50 test -e "$TM_MNT/f3" && [ "$(cat "$TM_MNT/g3")" = new ] &&
		ok "prepare: the decision after the restart commits it" || not_ok "prepare: resolve after restart"
}

# A prepare whose view is still open for writing is EBUSY at once, not
# after a wait on the prepare thread (prepares run one at a time: one
# user's open files would hold everyone's back). Then SIGTERM with that
# transaction active and its file open: the server exits cleanly, no reply
# on a freed session (the ASan pass runs this against an ASan txdirfs).
test_prepare_at_stop() {
	local T=$TM_MNT/.txdir/txn fd log=$TM_LOG rc=0 out
	propose PS && mkdir "$T/ts" && echo x >"$T/ts/root/sfile" || { not_ok "stop: setup"; return; }
	exec {fd}>"$T/ts/root/held"
	out=$(timeout 30 python3 -c 'import os,sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b"prepare PS as alice\n"); os.close(fd); print("OK")
except OSError as e:
    print(os.strerror(e.errno))' "$T/ts/ctl")
	[ "$out" = "Device or resource busy" ] && grep -q 'busy reason=open-in-view path=/held' "$T/ts/info.json" &&
		[ "$(cat "$T/ts/status")" = active ] &&
		ok "stop: a prepare with a file of its view open for writing: EBUSY at once, still active" ||
		not_ok "stop: prepare with an open writer: $out / $(cat "$T/ts/status")"
	kill -TERM "$TM_PID"
	wait "$TM_PID" || rc=$?
	exec {fd}>&-
	if [ "$rc" -eq 0 ] && ! grep -q 'Sanitizer\|runtime error' "$log"; then
		ok "stop: SIGTERM with the transaction's file open: clean exit"
	else
		not_ok "stop: SIGTERM with the transaction's file open: exit $rc"
		grep -A14 'Direct leak\|ERROR' "$log" | head -60 | sed 's/^/#   /'
	fi
	TM_PID=
	fusermount3 -uz "$TM_MNT" 2>/dev/null
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_fenced
test_paused
test_prepare_bad
tm_umount >/dev/null || not_ok "unmount"
tm_mount "$OPTS" && { test_prepare_at_stop; true; } || not_ok "mount (stop)"
tm_umount >/dev/null
if mount_killable "$OPTS"; then
	if [ -d "$TM_MNT/.txdir/consensus/proposals" ]; then
		test_prepare
	else
		skip "prepare" "no .txdir/consensus (the vote service) in this build"
	fi
	tm_umount >/dev/null || not_ok "unmount"
else
	not_ok "mount (killable)"
fi
tm_summary
