#!/usr/bin/env bash
# tests/mount/run.sh — syscall tests on a real mount, next to a native dir.
#
# Environment (tests/check.sh runner contract): TXDIRFS, MOUNTCTL, TXDIR_BUILD.
# Builds nothing. Every test program in $TXDIR_BUILD/tests/mount/ (each one
# tests/mount/X.c; mkstore is a helper) runs twice — against a native ext4
# temp dir and against a fresh txdirfs mount (allow_other,default_permissions,
# so perm runs its cases as nobody on both) — then fsx (random operations on
# one file against a model: a native control, seeds on the mount, and a run
# verified again after unmount + remount), then a few server-level scenarios,
# then nsdiff.py (random metadata operations against the native dir), then
# crash.sh, programs.sh, redirect.sh, txncrash.sh, ctllog.sh and txnwait.sh (each with its own summary).
# A case that cannot run here (not root, no setpriv) is skipped, not passed:
# it prints "# SKIP WHAT: REASON" (tests/check.sh collects those lines) and
# counts in N skipped. The last line is "N passed, N failed, N skipped";
# exit non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"

MOUNT_OPTS=allow_other,default_permissions
PROG_TIMEOUT=${PROG_TIMEOUT:-240}
passed=0
failed=0
skipped=0

ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
skip() { skipped=$((skipped + 1)); echo "# SKIP $1: $2"; } # WHAT REASON

# Runs PROG DIR TARGET [FILTER]; adds its "N passed, N failed[, N skipped]"
# to the totals.
run_prog() { # label prog dir target [filter]
	local label=$1 out rc last p=0 f=0 s=0
	shift
	out=$(timeout -k 5 "$PROG_TIMEOUT" "$@" 2>&1)
	rc=$?
	last=$(printf '%s\n' "$out" | tail -n 1)
	printf '%s\n' "$out" | sed '$d'
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
		p=${BASH_REMATCH[1]}
		f=${BASH_REMATCH[2]}
		s=${BASH_REMATCH[4]:-0}
	else
		printf '%s\n' "$last"
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $label: exit $rc without a failed test$([ "$rc" -eq 124 ] && echo ' (timeout)')"
	fi
	echo "# $label: $p passed, $f failed, $s skipped"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
}

for prog in "$TXDIR_BUILD"/tests/mount/*; do
	[ -f "$prog" ] && [ -x "$prog" ] || continue
	name=$(basename "$prog")
	case $name in mkstore | crashwork | txnwork | fsx) continue ;; esac # helpers; fsx below
	if ! tm_mount "$MOUNT_OPTS"; then
		not_ok "$name: mount"
		tm_umount >/dev/null
		continue
	fi
	run_prog "$name [native]" "$prog" "$TM_NATIVE" native
	run_prog "$name [mount]" "$prog" "$TM_MNT" mount
	if tm_umount; then ok "$name: clean unmount and server exit"; else not_ok "$name: unmount/server exit"; fi
done

# fsx: random operations on one file checked against a model (tests/mount/fsx.c).
# A native control run, then seeds on the mount: 1-3 with the second appender
# opened O_WRONLY, 4-6 with it opened O_RDWR (-A), so the rest of the mix keeps
# its coverage whatever happens to write-only handles. Then a run whose model is
# checked again after a clean unmount and a remount (content committed at close
# must be durable).
FSX=$TXDIR_BUILD/tests/mount/fsx
FSX_OPS=${FSX_OPS:-20000}
FSX_TIMEOUT=${FSX_TIMEOUT:-60}
if [ -x "$FSX" ]; then
	if tm_mount "$MOUNT_OPTS"; then
		PROG_TIMEOUT=$FSX_TIMEOUT run_prog "fsx seed 1 [native]" "$FSX" 1 "$FSX_OPS" "$TM_NATIVE/fsx.1"
		for seed in 1 2 3; do
			PROG_TIMEOUT=$FSX_TIMEOUT run_prog "fsx seed $seed [mount]" \
				"$FSX" "$seed" "$FSX_OPS" "$TM_MNT/fsx.$seed"
		done
		for seed in 4 5 6; do
			PROG_TIMEOUT=$FSX_TIMEOUT run_prog "fsx -A seed $seed [mount]" \
				"$FSX" -A "$seed" "$FSX_OPS" "$TM_MNT/fsx.$seed"
		done
		if tm_umount; then ok "fsx: clean unmount and server exit"; else not_ok "fsx: unmount/server exit"; fi
	else
		not_ok "fsx: mount"
		tm_umount >/dev/null
	fi
	if tm_mount "$MOUNT_OPTS"; then
		PROG_TIMEOUT=$FSX_TIMEOUT run_prog "fsx -A seed 7 [mount, before remount]" \
			"$FSX" -A -m "$TM_DIR/fsx.model" 7 "$FSX_OPS" "$TM_MNT/fsx.7"
		if tm_stop; then
			ok "fsx remount: clean unmount and server exit"
			if tm_start "$MOUNT_OPTS"; then
				PROG_TIMEOUT=$FSX_TIMEOUT run_prog "fsx seed 7 [after remount]" \
					"$FSX" -C "$TM_DIR/fsx.model" "$TM_MNT/fsx.7"
			else
				not_ok "fsx remount: remount"
			fi
		else
			not_ok "fsx remount: unmount/server exit"
		fi
		tm_umount >/dev/null || not_ok "fsx remount: final unmount/server exit"
	else
		not_ok "fsx remount: mount"
		tm_umount >/dev/null
	fi
else
	not_ok "fsx: $FSX not built"
fi

# nsdiff: random metadata operations in lock-step on the native dir and the
# mount (then in a transaction view, committed), every errno and the trees
# compared (tests/mount/nsdiff.py).
NSDIFF_SEEDS=${NSDIFF_SEEDS:-60}
if tm_mount "$MOUNT_OPTS"; then
	run_prog "nsdiff [main tree]" python3 "$HERE/nsdiff.py" "$TM_NATIVE/nsdiff" "$TM_MNT/nsdiff" \
		1 "$NSDIFF_SEEDS" 1500
	run_prog "nsdiff [txn view]" python3 "$HERE/nsdiff.py" "$TM_NATIVE/nsdiff-txn" \
		"$TM_MNT/nsdiff-txn" 1001 "$NSDIFF_SEEDS" 1500 --txn
	# as nobody: the kernel's permission checks (default_permissions) and the
	# engine's set-id and ownership rules for an unprivileged caller
	if [ "$(id -u)" = 0 ]; then
		py=$(command -v /usr/bin/python3 python3 | head -n 1)
		# nobody may not reach the checkout (a clone under a 0700 dir):
		# run a copy from the test's own 0755 directory
		cp "$HERE/nsdiff.py" "$TM_DIR/nsdiff.py" && chmod 644 "$TM_DIR/nsdiff.py"
		for side in "$TM_NATIVE" "$TM_MNT"; do
			mkdir -p -m 1777 "$side/nsdiff-nobody" "$side/nsdiff-nobody-txn"
		done
		run_prog "nsdiff as nobody [main tree]" setpriv --reuid=nobody --regid=nogroup \
			--clear-groups "$py" "$TM_DIR/nsdiff.py" "$TM_NATIVE/nsdiff-nobody" \
			"$TM_MNT/nsdiff-nobody" 2001 "$NSDIFF_SEEDS" 1500
		run_prog "nsdiff as nobody [txn view]" setpriv --reuid=nobody --regid=nogroup \
			--clear-groups "$py" "$TM_DIR/nsdiff.py" "$TM_NATIVE/nsdiff-nobody-txn" \
			"$TM_MNT/nsdiff-nobody-txn" 3001 "$NSDIFF_SEEDS" 1500 --txn
	else
		skip "nsdiff as nobody [main tree]" "needs root (setpriv to nobody)"
		skip "nsdiff as nobody [txn view]" "needs root (setpriv to nobody)"
	fi
	if tm_umount; then ok "nsdiff: clean unmount and server exit"; else not_ok "nsdiff: unmount/server exit"; fi
else
	not_ok "nsdiff: mount"
	tm_umount >/dev/null
fi

. "$HERE/scenarios.sh"

# Scripts with their own "N passed, N failed" summary: SIGKILL crash rounds
# and recovery (crash.sh), real programs on the mount (programs.sh).
run_prog "crash.sh" bash "$HERE/crash.sh"
run_prog "programs.sh" bash "$HERE/programs.sh"
# `cmd > file` and its kin under SIGKILL before CMD writes (redirect.sh).
run_prog "redirect.sh" bash "$HERE/redirect.sh"
# Transactions: atomic deploy under snapshot readers, SIGKILL of the CMD of a
# run and of txdirfs around commits and under concurrent transactions.
run_prog "txncrash.sh" bash "$HERE/txncrash.sh"
# The control tree's records: JSON, events across SIGKILL, tail -1, a
# 24,000-path commit, no leak to nobody, stats (ctllog.sh).
run_prog "ctllog.sh" bash "$HERE/ctllog.sh"
# A commit waiting for its view's writers (deferred, interruptible), and
# transaction records across a server SIGKILL.
run_prog "txnwait.sh" bash "$HERE/txnwait.sh"
run_prog "lease.sh" bash "$HERE/lease.sh" # leases through the mount (issue 10)
# Per-process journals and dead processes (recovery/), across a SIGKILL.
run_prog "journal.sh" bash "$HERE/journal.sh"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
