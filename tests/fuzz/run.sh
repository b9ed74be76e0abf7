#!/usr/bin/env bash
# tests/fuzz/run.sh — the fuzz harnesses of tests/fuzz/ (fuzz.h).
#
#   run.sh                  check runner (tests/check.sh): replays every
#                           committed corpus tests/fuzz/corpus/NAME with
#                           $TXDIR_BUILD/tests/fuzz/replay-NAME (the harness
#                           linked with replay.c, no clang needed). One check
#                           per harness: it passes when every input ran
#                           without a broken property or a sanitizer report.
#   run.sh --libfuzzer DIR  `make fuzz`: runs each DIR/tests/fuzz/fuzz_NAME
#                           (clang, libFuzzer) for FUZZ_SECONDS (default 60)
#                           from its corpus; new inputs go to DIR/corpus/NAME,
#                           crashes to DIR/crash/NAME-*. FUZZ_ONLY="a b"
#                           limits the run to those harnesses; FUZZ_ARGS
#                           adds libFuzzer options (e.g. -fork=4: the
#                           harnesses that open files mostly wait, so
#                           parallel runs pay off even on few cores).
#                           FUZZ_RUNS=N runs each until N executions
#                           instead (the 10 M campaign: FUZZ_RUNS=10000000
#                           FUZZ_ARGS=-detect_leaks=0, as LSan's check after
#                           each input that keeps memory costs more than
#                           the input; the corpus replay checks leaks).
#                           The harnesses that work on a whole store serve
#                           FUZZ_STORE_REUSE inputs (default 100) from one
#                           (fuzz.h).
# Last line: "N passed, N failed"; exit status non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
pass=0
fail=0
out=$(mktemp "${TMPDIR:-/tmp}/txdfuzz-run.XXXXXX") || exit 2
trap 'rm -f "$out"' EXIT

san_report() {
	grep -aqE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|property failed' "$1"
}

if [ "${1:-}" = --libfuzzer ]; then
	dir=${2:?usage: run.sh --libfuzzer BUILD_DIR}
	secs=${FUZZ_SECONDS:-60}
	export FUZZ_STORE_REUSE=${FUZZ_STORE_REUSE:-100}
	limit=(-max_total_time="$secs")
	if [ -n "${FUZZ_RUNS:-}" ]; then
		limit=(-runs="$FUZZ_RUNS")
		secs=86400
	fi
	for bin in "$dir"/tests/fuzz/fuzz_*; do
		[ -x "$bin" ] || continue
		name=$(basename "$bin")
		if [ -n "${FUZZ_ONLY:-}" ] && [[ " $FUZZ_ONLY " != *" ${name#fuzz_} "* ]] &&
			[[ " $FUZZ_ONLY " != *" $name "* ]]; then
			continue
		fi
		mkdir -p "$dir/corpus/$name" "$dir/crash"
		t0=$SECONDS
		timeout -k 10 $((secs + 300)) "$bin" "${limit[@]}" -timeout=20 \
			-rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} \
			-artifact_prefix="$dir/crash/$name-" \
			"$dir/corpus/$name" "tests/fuzz/corpus/$name" >"$out" 2>&1
		rc=$?
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
		speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n 1)
		if [ -z "$execs" ]; then # -fork: no final stats, the last status line
			execs=$(grep -aoE '^#[0-9]+' "$out" | tail -n 1 | tr -d '#')
			speed=$(grep -aoE 'exec/s:? [0-9]+' "$out" | tail -n 1 | sed 's/.* //')
		fi
		if [ "$rc" -eq 0 ]; then
			pass=$((pass + 1))
			echo "ok $name: ${execs:-?} runs, ${speed:-?}/s in $((SECONDS - t0))s"
		else
			fail=$((fail + 1))
			grep -aE 'ERROR|runtime error|property failed|SUMMARY|Test unit written' "$out" | head -n 20
			echo "FAIL $name (exit $rc): ${execs:-?} runs; crash inputs in $dir/crash/"
		fi
	done
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
fi

build=${TXDIR_BUILD:?TXDIR_BUILD: the build directory}
for corpus in tests/fuzz/corpus/*/; do
	name=$(basename "$corpus")
	bin=$build/tests/fuzz/replay-$name
	if [ ! -x "$bin" ]; then
		fail=$((fail + 1))
		echo "FAIL $name: no $bin"
		continue
	fi
	timeout -k 10 300 "$bin" "$corpus" >"$out" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ] && ! san_report "$out"; then
		pass=$((pass + 1))
		echo "ok $name: $(tail -n 1 "$out" | sed 's/.*: //') replayed"
	else
		fail=$((fail + 1))
		tail -n 60 "$out"
		echo "FAIL $name (exit $rc)"
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
