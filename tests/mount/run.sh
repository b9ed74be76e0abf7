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
# crash.sh, programs.sh, redirect.sh, txncrash.sh, ctllog.sh and txnwait.sh (each with its own summary),
# then leasework (leases across 50 processes, holders and the server SIGKILLed),
# then vote.sh and votework.sh (two-phase commit; the latter with SIGKILLs),
# then state.sh (the global state document, 8 compare-and-swap writers).
# then dtc.sh (fenced commits and prepared transactions) and dtcwork.sh (a
# 3-participant deploy across processes, the server SIGKILLed in doubt),
# then diskfull.sh (a full loop-mounted ext4 under the store; root only),
# then gc.sh (pack garbage collection: space back, a SIGKILL during GC).
# A case that cannot run here (not root, no setpriv) is skipped, not passed:
# it prints "# SKIP WHAT: REASON" (tests/check.sh collects those lines) and
# counts in N skipped. The last line is "N passed, N failed, N skipped";
# exit non-zero on any failure.
#
# MOUNT_PARTS (default: all of them) runs only the named parts, so that
# tests/check.sh can run one pass's mount suite as two jobs side by side:
#   progs fsx nsdiff scenarios crash programs redirect txncrash ctllog txnwait
#   lease leasework vote votework state dtc dtcwork diskfull gc
# (progs: the tests/mount programs, native and mount).
# MOUNT_NATIVE=0 leaves out the runs against the native directory alone (the
# programs' [native] runs, fsx's native control): they test the tests, which
# the plain pass does; tests/check.sh's ASan pass sets it.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"

MOUNT_OPTS=allow_other,default_permissions
PROG_TIMEOUT=${PROG_TIMEOUT:-240}

MOUNT_PARTS=${MOUNT_PARTS:-progs fsx nsdiff scenarios crash programs redirect txncrash ctllog txnwait lease leasework vote votework state locks dtc dtcwork diskfull gc}
part() { [[ " $MOUNT_PARTS " == *" $1 "* ]]; } # whether PART is to run

# Per-phase time: "# time LABEL: W s wall, C s cpu" where cpu is the user+sys
# time of every process the phase ran and reaped (servers included: each is
# waited for at its unmount). On a loaded machine wall time says little; the
# cpu sums are what tests/check.sh's estimate of make check's time uses.
TICK=$(getconf CLK_TCK)
cpu_now() { # CPU_NOW: user+sys ticks of this shell's reaped children
	local pid=$BASHPID # expanded here, not in the $(...) subshell
	CPU_NOW=$(awk '{ print $16 + $17 }' "/proc/$pid/stat")
}
phase_begin() {
	cpu_now
	phase_t0=$EPOCHREALTIME phase_c0=$CPU_NOW
}
phase_end() { # LABEL
	cpu_now
	awk -v l="$1" -v t0="$phase_t0" -v t1="$EPOCHREALTIME" -v c="$((CPU_NOW - phase_c0))" -v hz="$TICK" \
		'BEGIN { printf "# time %s: %.1f s wall, %.1f s cpu\n", l, t1 - t0, c / hz }'
}

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
	part progs || break
	[ -f "$prog" ] && [ -x "$prog" ] || continue
	name=$(basename "$prog")
	case $name in mkstore | crashwork | txnwork | fsx | leasework) continue ;; esac # helpers; fsx, leasework below
	phase_begin
	if ! tm_mount "$MOUNT_OPTS"; then
		not_ok "$name: mount"
		tm_umount >/dev/null
		continue
	fi
	[ "${MOUNT_NATIVE:-1}" = 0 ] || run_prog "$name [native]" "$prog" "$TM_NATIVE" native
	run_prog "$name [mount]" "$prog" "$TM_MNT" mount
	if tm_umount; then ok "$name: clean unmount and server exit"; else not_ok "$name: unmount/server exit"; fi
	phase_end "$name"
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
phase_begin
if ! part fsx; then
	:
elif [ -x "$FSX" ]; then
	if tm_mount "$MOUNT_OPTS"; then
		[ "${MOUNT_NATIVE:-1}" = 0 ] ||
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
part fsx && phase_end fsx

# nsdiff: random metadata operations in lock-step on the native dir and the
# mount (then in a transaction view, committed), every errno and the trees
# compared (tests/mount/nsdiff.py).
NSDIFF_SEEDS=${NSDIFF_SEEDS:-60}
phase_begin
if ! part nsdiff; then
	:
elif tm_mount "$MOUNT_OPTS"; then
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
part nsdiff && phase_end nsdiff

if part scenarios; then
	phase_begin
	. "$HERE/scenarios.sh"
	phase_end scenarios
fi

# Scripts with their own "N passed, N failed" summary: SIGKILL crash rounds
# and recovery (crash.sh), real programs on the mount (programs.sh).
if part crash; then
	phase_begin
	run_prog "crash.sh" bash "$HERE/crash.sh"
	phase_end crash.sh
fi
if part programs; then
	phase_begin
	run_prog "programs.sh" bash "$HERE/programs.sh"
	phase_end programs.sh
fi
# `cmd > file` and its kin under SIGKILL before CMD writes (redirect.sh).
if part redirect; then
	phase_begin
	run_prog "redirect.sh" bash "$HERE/redirect.sh"
	phase_end redirect.sh
fi
# Transactions: atomic deploy under snapshot readers, SIGKILL of the CMD of a
# run and of txdirfs around commits and under concurrent transactions.
if part txncrash; then
	phase_begin
	run_prog "txncrash.sh" bash "$HERE/txncrash.sh"
	phase_end txncrash.sh
fi
# The control tree's records: JSON, events across SIGKILL, tail -1, a
# 24,000-path commit, no leak to nobody, stats (ctllog.sh).
if part ctllog; then
	phase_begin
	run_prog "ctllog.sh" bash "$HERE/ctllog.sh"
	# dtc/wal/, dtc/checkpoints/, canonical names only (records.sh).
	run_prog "records.sh" bash "$HERE/records.sh"
	phase_end ctllog.sh
fi
# A commit waiting for its view's writers (deferred, interruptible), and
# transaction records across a server SIGKILL.
if part txnwait; then
	phase_begin
	run_prog "txnwait.sh" bash "$HERE/txnwait.sh"
	phase_end txnwait.sh
fi

# Fenced commits and prepared transactions (issue 11 items 4, 4b).
if part dtc; then
	phase_begin
	run_prog "dtc.sh" bash "$HERE/dtc.sh"
	phase_end dtc.sh
fi

# A 3-participant deploy: two prepared transactions of real processes and a
# plain voter, over rounds with yes/no/timeout, the server SIGKILLed while
# they are in doubt: all or none of the trees change (dtcwork.sh).
if part dtcwork; then
	phase_begin
	run_prog "dtcwork.sh" bash "$HERE/dtcwork.sh"
	phase_end dtcwork.sh
fi

# A full disk under the store (issue 12 item 3): a 64 MiB loop-mounted
# ext4 filled through the mount gives ENOSPC, never EIO; what was closed
# stays; rm works; status says disk full; kill -9 and remount while full;
# space back, and GC's "delete half, write as much again" (diskfull.sh;
# root only, else skipped).
if part diskfull; then
	phase_begin
	run_prog "diskfull.sh" bash "$HERE/diskfull.sh"
	phase_end diskfull.sh
fi

if part lease; then
	phase_begin
	run_prog "lease.sh" bash "$HERE/lease.sh" # leases through the mount (issue 10)
	# Per-process journals and dead processes (recovery/), across a SIGKILL.
	run_prog "journal.sh" bash "$HERE/journal.sh"
	phase_end lease.sh
fi

# Two-phase commit through the mount (issue 11): proposals, votes,
# decisions, errnos, wait, timeouts, a SIGKILL + remount, as nobody.
if part vote; then
	phase_begin
	run_prog "vote.sh" bash "$HERE/vote.sh"
	phase_end vote.sh
fi

# 2PC across real processes: participant processes vote over many
# proposals (some no, some never), the server SIGKILLed and remounted at
# random: every decision follows the rules and never changes (votework.sh).
if part votework; then
	phase_begin
	run_prog "votework.sh" bash "$HERE/votework.sh"
	phase_end votework.sh
fi

# Leases across real processes: 50 workers grab / critical section /
# release one lease through the mount while holders are SIGKILLed, then the
# same with txdirfs SIGKILLed and remounted mid-run (leasework.c mounts its
# own store; if it is killed by the bound, its server and mount go here).
if part leasework; then
	phase_begin
	LW=$TXDIR_BUILD/tests/mount/leasework
	if [ -x "$LW" ]; then
		lw_dir=$(mktemp -d "${TMPDIR:-/tmp}/txdir-lw.XXXXXX")
		PROG_TIMEOUT=${LEASEWORK_TIMEOUT:-400} run_prog "leasework" "$LW" "$lw_dir"
		if tm_is_mounted "$lw_dir/mnt"; then
			fusermount3 -u "$lw_dir/mnt" 2>/dev/null || fusermount3 -uz "$lw_dir/mnt" 2>/dev/null
		fi
		[ -s "$lw_dir/server.pid" ] && kill -KILL "$(cat "$lw_dir/server.pid")" 2>/dev/null
		rm -rf --one-file-system "$lw_dir"
	else
		not_ok "leasework: $LW not built"
	fi
	phase_end leasework
fi

# Pack garbage collection through the mount (issue 12 item 3).
if part gc; then
	phase_begin
	run_prog "gc.sh" bash "$HERE/gc.sh"
	phase_end gc.sh
fi

# The global state document through the mount (issue 11 item 3).
if part state; then
	phase_begin
	run_prog "state.sh" bash "$HERE/state.sh"
	phase_end state.sh
fi
if part locks; then
	phase_begin
	run_prog "locks.sh" bash "$HERE/locks.sh"
	phase_end locks.sh
fi

tm_summary
