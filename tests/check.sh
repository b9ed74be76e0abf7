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
# At the end: how many were skipped, by reason, and which (when any were);
# then the very last line, "N passed, N failed, N skipped" over everything.
# The exit status is 0 only if nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-600}
CLI_TIMEOUT=${CLI_TIMEOUT:-300}
# CHECK_RUNNERS="LABEL=/abs/script ...": run these instead of the mount and
# CLI runners (for tests of this script).

total_pass=0
total_fail=0
total_skip=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/txdir-check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
: >"$WORK/skips" # "[KIND] LABEL: WHAT: REASON", one per skip line seen

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

run_unit() { # kind build [glob]
	local kind=$1 build=$2 bin out rc synth tested passing p f args=()
	# the TSan build's suites run on the Criterion stand-in, which skips
	# the benchmarks listed in tests/tsan.skip
	[ "$kind" = tsan ] && args=(--skip-file "$ROOT/tests/tsan.skip")
	for bin in "$build"/tests/unit/${3:-test_*}; do
		[ -x "$bin" ] && [ -f "$bin" ] || continue
		out="$WORK/out"
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
	done
}

# Runs a script that ends with "N passed, N failed[, N skipped]".
run_script() { # kind build label timeout script
	local kind=$1 build=$2 label=$3 tmo=$4 script=$5 rc last p=0 f=0 s=0
	echo "[$kind] $label: $script"
	TXDIRFS="$ROOT/$build/txdirfs" MOUNTCTL="$ROOT/$build/mountctl" TXDIR_BUILD="$ROOT/$build" \
		timeout -k 10 "$tmo" bash "$script" </dev/null 2>&1 | tee "$WORK/out"
	rc=${PIPESTATUS[0]}
	last=$(grep -aE '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$WORK/out" | tail -n 1)
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
		p=${BASH_REMATCH[1]}
		f=${BASH_REMATCH[2]}
		s=${BASH_REMATCH[4]:-0}
	fi
	grep -a '^# SKIP ' "$WORK/out" | sed "s|^# SKIP |[$kind] $label: |" >>"$WORK/skips"
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	if [ "$kind" = asan ] && [ "$f" -eq 0 ] && has_san_report "$WORK/out"; then
		echo "[$kind] $label: sanitizer report in the output above"
		f=1
	fi
	printf '[%s] %s: %s passed, %s failed, %s skipped%s\n' "$kind" "$label" "$p" "$f" "$s" \
		"$([ "$rc" -eq 124 ] && echo ' (timed out)' || { [ "$rc" -ne 0 ] && echo " (exit $rc)"; })"
	add "$p" "$f" "$s"
}

# How many were skipped and why, before the final line.
skip_summary() {
	[ "$total_skip" -gt 0 ] || [ -s "$WORK/skips" ] || return 0
	echo "$total_skip skipped (not run here; not counted as passed), by reason:"
	sed 's/.*: //' "$WORK/skips" | sort | uniq -c | sort -rn | sed 's/^ */  /'
	echo "skipped:"
	sed 's/^/  /' "$WORK/skips"
}

for pass in "$@"; do
	kind=${pass%%:*}
	build=${pass#*:}
	if [ "$kind" = asan ]; then
		export ASAN_OPTIONS="detect_leaks=1"
		export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
		if [ -f tests/lsan.supp ]; then
			export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp"
		fi
		# nsdiff's 4 x 60 seeds run in full in the plain pass; under ASan
		# 4 x 20 keep make check in its time (make check-long: all 60)
		export NSDIFF_SEEDS=${NSDIFF_SEEDS_ASAN:-20}
	else
		unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS NSDIFF_SEEDS
	fi
	# TSan: every report printed (not only the first), both stacks of a
	# lock-order inversion; tests/tsan.supp holds only explained false
	# positives
	export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4"
	if [ -f tests/tsan.supp ]; then
		TSAN_OPTIONS="$TSAN_OPTIONS suppressions=$ROOT/tests/tsan.supp"
	fi
	case $kind in
	full | asan) ;;
	tsan) run_unit "$kind" "$build"; continue ;;
	stress) run_unit "$kind" "$build" test_stress; continue ;;
	*) echo "check.sh: unknown pass kind '$kind' (full, asan, tsan or stress)" >&2; exit 2 ;;
	esac
	run_unit "$kind" "$build"
	if [ -n "${CHECK_RUNNERS:-}" ]; then
		# tests of this script (tests/cli/skips.sh): LABEL=SCRIPT ... instead
		for r in $CHECK_RUNNERS; do
			run_script "$kind" "$build" "${r%%=*}" "$CLI_TIMEOUT" "${r#*=}"
		done
		continue
	fi
	if [ -f tests/mount/run.sh ]; then
		run_script "$kind" "$build" mount "$MOUNT_TIMEOUT" tests/mount/run.sh
	fi
	if [ -f tests/fuzz/run.sh ]; then
		# the fuzz corpora replayed by the harnesses without libFuzzer
		run_script "$kind" "$build" fuzz "$UNIT_TIMEOUT" tests/fuzz/run.sh
	fi
	if [ "$kind" = full ]; then
		for t in tests/cli/*.sh; do
			[ -f "$t" ] || continue
			run_script "$kind" "$build" "cli $(basename "$t" .sh)" "$CLI_TIMEOUT" "$t"
		done
	fi
done

skip_summary
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
