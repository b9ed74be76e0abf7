#!/usr/bin/env bash
# tests/loop.sh — run the mount suites N times in a row, to hunt flakes.
#
#   tests/loop.sh N BUILD [BUILD...]    (make check-loop N=20)
#
# For each BUILD in turn (plain build, then an ASan build: a BUILD whose name
# holds "asan" runs with the sanitizer options of tests/check.sh and fails on
# a sanitizer report), tests/mount/run.sh runs N times. The loop stops at the
# first failing run and keeps its output in $LOOP_KEEP (default
# /tmp/txdir-loop-fail.log). The last line is "N passed, N failed" counting
# runs; the exit status is 0 only if every run passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
N=${1:?usage: tests/loop.sh N BUILD [BUILD...]}
shift
[ $# -gt 0 ] || { echo "usage: tests/loop.sh N BUILD [BUILD...]" >&2; exit 2; }
KEEP=${LOOP_KEEP:-/tmp/txdir-loop-fail.log}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-900}
OUT=$(mktemp "${TMPDIR:-/tmp}/txdir-loop.XXXXXX") || exit 2
trap 'rm -f "$OUT"' EXIT
passed=0
failed=0

for build in "$@"; do
	if [[ $build == *asan* ]]; then
		export ASAN_OPTIONS="detect_leaks=1"
		export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
		[ -f tests/lsan.supp ] && export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp"
	else
		unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
	fi
	for ((i = 1; i <= N; i++)); do
		start=$SECONDS
		TXDIRFS="$ROOT/$build/txdirfs" MOUNTCTL="$ROOT/$build/mountctl" TXDIR_BUILD="$ROOT/$build" \
			timeout -k 10 "$MOUNT_TIMEOUT" bash tests/mount/run.sh </dev/null >"$OUT" 2>&1
		rc=$?
		last=$(grep -aE '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$OUT" | tail -n 1)
		if [ "$rc" -eq 0 ] && [[ $build == *asan* ]] &&
			grep -aqE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$OUT"; then
			rc=1
			last="$last (sanitizer report)"
		fi
		if [ "$rc" -ne 0 ]; then
			failed=$((failed + 1))
			cp "$OUT" "$KEEP"
			echo "loop: $build run $i/$N FAILED (exit $rc) in $((SECONDS - start)) s: ${last:-no summary}"
			grep -aE '^not ok|^#   ' "$OUT" | head -n 40
			echo "loop: full output kept in $KEEP"
			echo "$passed passed, $failed failed"
			exit 1
		fi
		passed=$((passed + 1))
		echo "loop: $build run $i/$N ok in $((SECONDS - start)) s: $last"
	done
done
echo "$passed passed, $failed failed"
