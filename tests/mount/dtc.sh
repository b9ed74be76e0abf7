#!/usr/bin/env bash
# tests/mount/dtc.sh — fenced commits and prepared transactions through the
# mount (SPEC §4; issue 11 items 4, 4b), on an allow_other,default_permissions
# mount.
#
#   fenced        "commit if-lease NAME TOKEN" with the held token commits;
#                 a wrong token, a released lease: ESTALE, nothing applied,
#                 status "aborted fenced ..."; malformed: EINVAL.
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
		grep -q "^aborted fenced lease=job token=$((tok + 1)) held=$tok" "$T/wrong/status" &&
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
		[ ! -e "$TM_MNT/old-only" ] && grep -q "^aborted fenced lease=lock token=$tok held=$new" "$T/old/status" &&
		ok "paused: the resumed old holder's fenced commit is refused (ESTALE); the successor's data stays" ||
		not_ok "paused: old holder rc=$rc out=$(cat "$D/old.out" 2>&1) data=$(cat "$TM_MNT/data") status=$(cat "$T/old/status")"
	grep -q '"type":"txn_abort".*"reason":"fenced"' "$TM_MNT/.txdir/events" &&
		ok "paused: the refusal is an event" || not_ok "paused: no txn_abort fenced event"
	rmdir "$L/active/$$/lock" "$T/old" "$T/new"
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_fenced
test_paused
tm_umount >/dev/null || not_ok "unmount"
tm_summary
