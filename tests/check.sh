#!/usr/bin/env bash
# tests/check.sh — run the test suites of one or more builds, print one total.
#
#   tests/check.sh PASS...       PASS is KIND:BUILD_DIR
#     full:build        unit tests, tests/mount/run.sh, tests/fuzz/run.sh
#                       (corpus replay), tests/cli/*.sh
#     asan:build-asan   unit tests, tests/mount/run.sh and tests/fuzz/run.sh;
#                       a suite that reports no failure but whose output
#                       holds a sanitizer report (ASan, LSan, UBSan) counts one.
#                       (A server's reports go to its log, which the mount
#                       runner shows when the server fails; UBSan halts.)
#     tsan:build-tsan   unit tests only (engine, no FUSE) built with
#                       -fsanitize=thread; a suite whose output holds a
#                       "WARNING: ThreadSanitizer" report counts one failure.
#     stress:BUILD      tests/unit/test_stress only (make check-long sets
#                       STRESS_ROUNDS high); sanitizer reports fail it.
#
# Counts: a Criterion binary contributes its "Synthesis:" line (Passing are
# passed, Tested - Passing failed); a runner script contributes its own last
# "N passed, N failed[, N skipped]" line. A binary or script that exits
# non-zero without reporting a failure (crash, timeout, no summary) counts
# one failure. A check that cannot run here (not root, no setpriv, no FUSE)
# is skipped, never passed: the runner counts it in N skipped and prints a
# line "# SKIP WHAT: REASON", which this script collects.
#
# Runner contract (tests/mount/run.sh, tests/cli/*.sh): environment TXDIRFS,
# MOUNTCTL (absolute paths of the binaries under test), TXDIR_BUILD (the
# build directory, for build/tests/mount/*); print "N passed, N failed" or
# "N passed, N failed, N skipped" as the last line; exit non-zero on any
# failure.
#
# Jobs: every unit binary of a pass, each half of its mount runner
# (MOUNT_SPLIT, MOUNT_SPLIT_ASAN: tests/mount/run.sh's MOUNT_PARTS), its fuzz
# replay and each CLI script is one job; CHECK_JOBS (default: the number of
# CPUs; one more gained 10 s and made a fault test's background-write race
# show) jobs run at once, the longest first (the order of LONG_FIRST below, taken from measured CPU
# times), each into its own output file, which is printed
# whole when the job ends (so outputs never interleave). The jobs share
# nothing: every mount, store and temp dir is a fresh one of its own.
#
# At the end: the wall and CPU (user+sys of the job and everything it ran and
# reaped, servers included) time of every job, longest first, with the sums;
# how many were skipped, by reason, and which (when any were); then the very
# last line, "N passed, N failed, N skipped" over everything.
# The exit status is 0 only if nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-600}
CLI_TIMEOUT=${CLI_TIMEOUT:-300}
CHECK_JOBS=${CHECK_JOBS:-$(nproc 2>/dev/null || echo 2)}
# The two halves of a pass's mount suite, balanced on the CPU time (user+sys,
# servers included) each part took under make check's settings on
# 2026-12-07: plain progs 17 s, fsx 55, scenarios 2, crash 12, programs 11,
# txncrash ~35 | nsdiff 107, redirect 4, ctllog 17, txnwait 4 (131 | 131);
# ASan progs 28, fsx 81, scenarios 5, crash 20, programs 14, redirect 8 |
# nsdiff 42, txncrash 88, ctllog 21, txnwait 5 (156 | 156). diskfull (a
# loop-mounted ext4: GC end to end) runs in the plain pass; gc.sh (GC
# cycles through a mount, ~33 s) and both under ASan run in make
# check-long (its mount suites run every part).
MOUNT_SPLIT=${MOUNT_SPLIT-progs fsx scenarios crash programs txncrash lease vote locks/nsdiff redirect ctllog txnwait dtc leasework votework state dtcwork diskfull}
MOUNT_SPLIT_ASAN=${MOUNT_SPLIT_ASAN-progs fsx scenarios crash programs redirect lease vote locks txnwait dtc/nsdiff txncrash ctllog leasework votework state dtcwork}
# CHECK_RUNNERS="LABEL=/abs/script ...": run these instead of the mount and
# CLI runners (for tests of this script).

WORK=$(mktemp -d "${TMPDIR:-/tmp}/txdir-check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
TICK=$(getconf CLK_TCK)

# ---- inside a job (a background subshell) ------------------------------------
# Each job counts into its own totals and writes them to $JOB.res at its end;
# its skip lines go to $JOB.skips.
total_pass=0
total_fail=0
total_skip=0
add() {
	total_pass=$((total_pass + $1))
	total_fail=$((total_fail + $2))
	total_skip=$((total_skip + ${3:-0}))
}

# Whether the output file holds a sanitizer report. (ASan's log_path is not
# used: with GCC 12's combined ASan+UBSan runtime it loses the reports.)
has_san_report() {
	grep -aqE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$1"
}

# The sanitizer options of a pass kind (exported into the job's processes).
san_env() { # kind
	if [ "$1" = asan ] || { [ "$1" = stress ] && [[ $2 == *asan* ]]; }; then
		export ASAN_OPTIONS="detect_leaks=1"
		export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
		if [ -f tests/lsan.supp ]; then
			export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp"
		fi
		# fsx's 20,000 operations a seed and the unit suites' exhaustive
		# fault loops (test_gc G7, test_space) run in full in the plain
		# pass; under ASan (3-5x the CPU) 4 x 6 nsdiff seeds, 2,000
		# operations, every third fault step and 6 txncrash rounds keep
		# make check in its time (make check-long, tests/loop.sh: all of
		# them, plain and ASan); the runs against the native directory
		# alone (which test the tests) only in the plain pass
		if [ "$1" = asan ]; then
			export NSDIFF_SEEDS=${NSDIFF_SEEDS_ASAN:-6}
			export FSX_OPS=${FSX_OPS_ASAN:-2000}
			export TXDIR_FAULT_STRIDE=${TXDIR_FAULT_STRIDE_ASAN:-3}
			export TXNCRASH_ROUNDS=${TXNCRASH_ROUNDS_ASAN:-6}
			export MOUNT_NATIVE=0
		fi
	else
		unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS NSDIFF_SEEDS FSX_OPS MOUNT_NATIVE \
			TXDIR_FAULT_STRIDE TXNCRASH_ROUNDS
		# nsdiff: 4 x 24 seeds and fsx 12,000 operations a seed in make
		# check (116 s of CPU at 60 seeds pushed make check past 15
		# minutes on CI), its 60 and 20,000 in make check-long
		export NSDIFF_SEEDS=${NSDIFF_SEEDS_CHECK:-14}
		export FSX_OPS=${FSX_OPS_CHECK:-12000}
	fi
	# race.c's deadlock loops: 4 s a test in make check (8 in
	# check-long); a deadlock shows within a second
	export RACE_SECONDS=${RACE_SECONDS_CHECK:-4}
	# txncrash.sh's SIGKILL-around-commit cycles: 8 rounds (each of its 3
	# kill points x 2 durabilities at least once) in make check's plain pass, 6
	# under ASan, its 36 in make check-long
	export TXNCRASH_ROUNDS=${TXNCRASH_ROUNDS:-${TXNCRASH_ROUNDS_CHECK:-8}}
	# TSan: every report printed (not only the first), both stacks of a
	# lock-order inversion; tests/tsan.supp holds only explained false
	# positives
	export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4"
	if [ -f tests/tsan.supp ]; then
		TSAN_OPTIONS="$TSAN_OPTIONS suppressions=$ROOT/tests/tsan.supp"
	fi
}

run_unit() { # kind bin
	local kind=$1 bin=$2 out="$JOB.bin" rc synth tested passing p f args=()
	# the TSan build's suites run on the Criterion stand-in, which skips
	# the benchmarks listed in tests/tsan.skip
	[ "$kind" = tsan ] && args=(--skip-file "$ROOT/tests/tsan.skip")
	timeout -k 10 "$UNIT_TIMEOUT" "$bin" "${args[@]}" >"$out" 2>&1
	rc=$?
	synth=$(grep -a 'Synthesis: Tested:' "$out" | tail -n 1)
	if [[ $synth =~ Tested:\ ([0-9]+)\ \|\ Passing:\ ([0-9]+) ]]; then
		tested=${BASH_REMATCH[1]}
		passing=${BASH_REMATCH[2]}
		p=$passing
		f=$((tested - passing))
	else
		p=0
		f=0
	fi
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	if [ "$kind" != full ] && [ "$f" -eq 0 ] && has_san_report "$out"; then
		f=1
	fi
	[ "$f" -gt 0 ] && tail -n 300 "$out"
	printf '[%s] unit %s: %s%s\n' "$kind" "$(basename "$bin")" \
		"${synth:-no Criterion summary}" \
		"$([ "$rc" -eq 124 ] && echo ' (timed out)' || { [ "$rc" -ne 0 ] && echo " (exit $rc)"; })"
	add "$p" "$f"
}

# Runs a script that ends with "N passed, N failed[, N skipped]"; PARTS, if
# given, is its MOUNT_PARTS (tests/mount/run.sh).
run_script() { # kind build label timeout script [parts]
	local kind=$1 build=$2 label=$3 tmo=$4 script=$5 out="$JOB.script" rc last p=0 f=0 s=0
	echo "[$kind] $label: $script${6:+ (MOUNT_PARTS=$6)}"
	[ -n "${6:-}" ] && export MOUNT_PARTS=$6
	TXDIRFS="$ROOT/$build/txdirfs" MOUNTCTL="$ROOT/$build/mountctl" TXDIR_BUILD="$ROOT/$build" \
		timeout -k 10 "$tmo" bash "$script" </dev/null >"$out" 2>&1
	rc=$?
	cat "$out"
	last=$(grep -aE '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$out" | tail -n 1)
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
		p=${BASH_REMATCH[1]}
		f=${BASH_REMATCH[2]}
		s=${BASH_REMATCH[4]:-0}
	fi
	grep -a '^# SKIP ' "$out" | sed "s|^# SKIP |[$kind] $label: |" >>"$JOB.skips"
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	if [ "$kind" = asan ] && [ "$f" -eq 0 ] && has_san_report "$out"; then
		echo "[$kind] $label: sanitizer report in the output above"
		f=1
	fi
	printf '[%s] %s: %s passed, %s failed, %s skipped%s\n' "$kind" "$label" "$p" "$f" "$s" \
		"$([ "$rc" -eq 124 ] && echo ' (timed out)' || { [ "$rc" -ne 0 ] && echo " (exit $rc)"; })"
	add "$p" "$f" "$s"
}

# CPU_NOW: user+sys ticks of this (sub)shell's reaped children (not through
# $(...), whose subshell has reaped nothing)
cpu_now() {
	local pid=$BASHPID # expanded here, not in the $(...) subshell
	CPU_NOW=$(awk '{ print $16 + $17 }' "/proc/$pid/stat")
}

# A job: "KIND|BUILD|unit|BIN" or "KIND|BUILD|script|LABEL|TIMEOUT|SCRIPT[|PARTS]".
run_job() { # n spec
	local n=$1 kind build type a b c d t0 c0
	IFS='|' read -r kind build type a b c d <<<"$2"
	JOB=$WORK/job.$n
	total_pass=0 total_fail=0 total_skip=0 # this job's own counts
	: >"$JOB.skips"
	t0=$EPOCHREALTIME
	cpu_now
	c0=$CPU_NOW
	san_env "$kind" "$build"
	case $type in
	unit) run_unit "$kind" "$a"; a="unit $(basename "$a")" ;;
	script) run_script "$kind" "$build" "$a" "$b" "$c" "$d" ;;
	esac
	echo "$total_pass $total_fail $total_skip" >"$JOB.res"
	cpu_now
	awk -v l="[$kind] $a" -v t0="$t0" -v t1="$EPOCHREALTIME" -v c="$((CPU_NOW - c0))" \
		-v hz="$TICK" 'BEGIN { printf "%8.1f %8.1f  %s\n", (t1 - t0), c / hz, l }' >"$JOB.time"
}

# ---- the job list ---------------------------------------------------------------
jobs_list=()
for pass in "$@"; do
	kind=${pass%%:*}
	build=${pass#*:}
	case $kind in
	full | asan | tsan | stress) ;;
	*) echo "check.sh: unknown pass kind '$kind' (full, asan, tsan or stress)" >&2; exit 2 ;;
	esac
	glob=test_*
	[ "$kind" = stress ] && glob=test_stress
	for bin in "$build"/tests/unit/$glob; do
		[ -x "$bin" ] && [ -f "$bin" ] || continue
		jobs_list+=("$kind|$build|unit|$bin")
	done
	case $kind in tsan | stress) continue ;; esac
	if [ -n "${CHECK_RUNNERS:-}" ]; then
		# tests of this script (tests/cli/skips.sh): LABEL=SCRIPT ... instead
		for r in $CHECK_RUNNERS; do
			jobs_list+=("$kind|$build|script|${r%%=*}|$CLI_TIMEOUT|${r#*=}")
		done
		continue
	fi
	# the mount suite as two jobs (MOUNT_SPLIT: the parts of each, split
	# by "/", balanced on measured CPU times; "" runs it as one job)
	if [ -f tests/mount/run.sh ]; then
		split=$MOUNT_SPLIT
		[ "$kind" = asan ] && split=$MOUNT_SPLIT_ASAN
		if [ -n "$split" ]; then
			IFS=/ read -r -a halves <<<"$split"
			for h in "${!halves[@]}"; do
				jobs_list+=("$kind|$build|script|mount $((h + 1))/${#halves[@]}|$MOUNT_TIMEOUT|tests/mount/run.sh|${halves[$h]}")
			done
		else
			jobs_list+=("$kind|$build|script|mount|$MOUNT_TIMEOUT|tests/mount/run.sh")
		fi
	fi
	# the fuzz corpora replayed by the harnesses without libFuzzer
	[ -f tests/fuzz/run.sh ] &&
		jobs_list+=("$kind|$build|script|fuzz|$UNIT_TIMEOUT|tests/fuzz/run.sh")
	if [ "$kind" = full ]; then
		for t in tests/cli/*.sh; do
			[ -f "$t" ] || continue
			jobs_list+=("$kind|$build|script|cli $(basename "$t" .sh)|$CLI_TIMEOUT|$t")
		done
	fi
done

# Longest first (measured CPU, see the timing table): jobs whose spec matches
# an earlier pattern start earlier; the rest keep their order.
LONG_FIRST=(
	'asan|*|script|mount*'
	'full|*|script|mount*'
	'tsan|*|unit|*/test_stress'
	'asan|*|unit|*/test_stress'
	'tsan|*|unit|*/test_txn'
	'asan|*|unit|*/test_txn'
	'tsan|*|unit|*/test_chunk'
	'asan|*|unit|*/test_chunk'
	'full|*|unit|*/test_wal'
)
ordered=()
declare -A taken=()
for pat in "${LONG_FIRST[@]}"; do
	for i in "${!jobs_list[@]}"; do
		[ -z "${taken[$i]:-}" ] || continue
		# shellcheck disable=SC2053 # a glob match on purpose
		if [[ ${jobs_list[$i]} == $pat ]]; then
			ordered+=("${jobs_list[$i]}")
			taken[$i]=1
		fi
	done
done
for i in "${!jobs_list[@]}"; do
	[ -n "${taken[$i]:-}" ] || ordered+=("${jobs_list[$i]}")
done

# ---- running them ---------------------------------------------------------------
total_pass=0
total_fail=0
total_skip=0
declare -A running=() # pid -> job number
finish_one() {
	local pid n p f s
	wait -n -p pid "${!running[@]}"
	n=${running[$pid]}
	unset "running[$pid]"
	cat "$WORK/job.$n.out"
	if read -r p f s <"$WORK/job.$n.res" 2>/dev/null; then
		add "$p" "$f" "$s"
	else
		echo "check.sh: job ${ordered[$n]} ended without a result"
		add 0 1
	fi
	cat "$WORK/job.$n.skips" >>"$WORK/skips" 2>/dev/null
	cat "$WORK/job.$n.time" >>"$WORK/times" 2>/dev/null
}
: >"$WORK/skips" # "[KIND] LABEL: WHAT: REASON", one per skip line seen
: >"$WORK/times"
t_start=$EPOCHREALTIME
for n in "${!ordered[@]}"; do
	while [ "${#running[@]}" -ge "$CHECK_JOBS" ]; do
		finish_one
	done
	(run_job "$n" "${ordered[$n]}") >"$WORK/job.$n.out" 2>&1 &
	running[$!]=$n
done
while [ "${#running[@]}" -gt 0 ]; do
	finish_one
done

# The time of every job, longest (CPU) first, and the sums.
time_summary() {
	[ -s "$WORK/times" ] || return 0
	echo "time per job (s; cpu = user+sys of the job and all it ran, servers included):"
	echo "    wall      cpu  job"
	sort -k2,2 -rn "$WORK/times"
	awk -v t0="$t_start" -v t1="$EPOCHREALTIME" -v j="$CHECK_JOBS" \
		'{ w += $1; c += $2 } END { printf "%8.1f %8.1f  sum over jobs (%.1f s wall for all, %d at a time)\n", w, c, t1 - t0, j }' \
		"$WORK/times"
}

# How many were skipped and why, before the final line.
skip_summary() {
	[ "$total_skip" -gt 0 ] || [ -s "$WORK/skips" ] || return 0
	echo "$total_skip skipped (not run here; not counted as passed), by reason:"
	sed 's/.*: //' "$WORK/skips" | sort | uniq -c | sort -rn | sed 's/^ */  /'
	echo "skipped:"
	sed 's/^/  /' "$WORK/skips"
}

time_summary
skip_summary
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
