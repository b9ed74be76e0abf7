#!/usr/bin/env bash
# tests/bench/run.sh [BUILD_DIR] — run every benchmark and print one table.
#
# Benchmarks are the programs built from tests/bench/*.c (BUILD_DIR/tests/
# bench/NAME) and the scripts tests/bench/*.sh other than this one.
#
# Contract for a benchmark:
#   - environment: TXDIR_BUILD (absolute build dir), MOUNTCTL, TXDIRFS
#     (absolute paths), BENCH_DIR (a scratch directory of its own, removed
#     afterwards), BENCH_QUICK=1 when a short run is wanted;
#   - it reports each result as one stdout line
#         BENCH <metric> <value> <unit> [note...]
#     (metric without spaces, e.g. "commit_latency_p99"), and each
#     performance target it measures as one line
#         TARGET | target | txdir | baseline | ratio | goal | PASS/MISS |
#     (a Markdown row; baseline measured in the same run; a MISS is a
#     result, not a failure); everything else it prints goes to the log only;
#   - exit status 0 on success; it is killed after BENCH_TIMEOUT seconds
#     (default 600) and must clean up what it mounted (trap).
#
# Files named _*.sh are helpers sourced by the scripts, not benchmarks.
# QUICK=1 (or BENCH_QUICK=1) asks every benchmark for a short smoke run.
# BENCH_RT=1 (root) runs every benchmark, and so its servers, baselines and
# timed commands, at real-time priority (chrt -f 1): on a machine other
# work loads, a full untar through FUSE swung by +-40% between repetitions
# and by +-5-10% at RT. Kernel threads (writeback, the journal) keep only
# the 5% the kernel's RT throttling leaves them while a benchmark computes,
# so this is for ratios of FUSE-bound rows, not for disk-bound ones.
#
# Output: the targets table and the metrics table (Markdown, paste-able into
# README.md), also written to BUILD_DIR/bench-results.md, then the path of
# the full log. Exit status non-zero if any benchmark failed (never because
# of a MISS).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
export TXDIR_BUILD=$BUILD MOUNTCTL=$BUILD/mountctl TXDIRFS=$BUILD/txdirfs
case "${BENCH_QUICK:-${QUICK:-0}}" in
"" | 0) unset BENCH_QUICK ;;
*) export BENCH_QUICK=1 ;;
esac
RESULTS=$BUILD/bench-results.md
RT=()
if [ "${BENCH_RT:-0}" = 1 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v chrt >/dev/null; then
		RT=(chrt -f 1)
	else
		echo "run.sh: BENCH_RT=1 needs root and chrt: ignored" >&2
	fi
fi

LOG=$(mktemp "${TMPDIR:-/tmp}/txdir-bench.XXXXXX.log") || exit 2
ROWS=()
TROWS=()
failed=0
ran=0

run_one() { # label command...
	local label=$1 out rc line metric value unit note
	shift
	ran=$((ran + 1))
	BENCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/txdir-bench-$label.XXXXXX") || return
	export BENCH_DIR
	echo "=== $label" >>"$LOG"
	out=$(cd "$BENCH_DIR" && timeout -k 10 "$BENCH_TIMEOUT" "${RT[@]}" "$@" 2>>"$LOG" </dev/null)
	rc=$?
	printf '%s\n' "$out" >>"$LOG"
	rm -rf --one-file-system "$BENCH_DIR"
	while IFS= read -r line; do
		if [[ $line =~ ^TARGET\ +(\|.*)$ ]]; then
			TROWS+=("${BASH_REMATCH[1]}")
			continue
		fi
		[[ $line =~ ^BENCH\ +([^ ]+)\ +([^ ]+)\ +([^ ]+)\ *(.*)$ ]] || continue
		metric=${BASH_REMATCH[1]}
		value=${BASH_REMATCH[2]}
		unit=${BASH_REMATCH[3]}
		note=${BASH_REMATCH[4]}
		ROWS+=("| $label | $metric | $value | $unit | $note |")
	done <<<"$out"
	if [ "$rc" -ne 0 ]; then
		failed=$((failed + 1))
		ROWS+=("| $label | FAILED | exit $rc | | see log |")
	fi
}

for bin in "$BUILD"/tests/bench/*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	# helpers built there (floorfs, from tests/bench/floorfs/) are not benchmarks
	[ -f "$ROOT/tests/bench/$(basename "$bin").c" ] || continue
	run_one "$(basename "$bin")" "$bin"
done
for script in "$ROOT"/tests/bench/*.sh; do
	[ -f "$script" ] || continue
	[ "$(basename "$script")" = run.sh ] && continue
	case $(basename "$script") in _*) continue ;; esac
	run_one "$(basename "$script" .sh)" bash "$script"
done

fstype=$(findmnt -n -o FSTYPE -T "${TMPDIR:-/tmp}" 2>/dev/null || stat -f -c %T "${TMPDIR:-/tmp}")
report() {
	echo "## txdir benchmarks"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs," \
		"scratch fs: $fstype (${TMPDIR:-/tmp})${BENCH_QUICK:+, QUICK (smoke) sizes}${RT:+, real-time priority (BENCH_RT)}." \
		"Figures are medians of repetitions; baselines were measured in the same run."
	echo
	echo "| target | txdir | baseline | ratio | goal | result |"
	echo "|---|---|---|---|---|---|"
	for row in "${TROWS[@]}"; do
		echo "$row"
	done
	[ "${#TROWS[@]}" -eq 0 ] && echo "| (no targets reported) | | | | | |"
	echo
	echo "| benchmark | metric | value | unit | note |"
	echo "|---|---|---|---|---|"
	for row in "${ROWS[@]}"; do
		echo "$row"
	done
	[ "$ran" -eq 0 ] && echo "(no benchmarks in tests/bench yet)"
}
report | tee "$RESULTS"
echo
echo "results: $RESULTS"
echo "log: $LOG"
[ "$failed" -eq 0 ]
