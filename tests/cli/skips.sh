#!/usr/bin/env bash
# tests/cli/skips.sh — a check that cannot run here is counted as skipped,
# never as passed, and `make check` says how many were skipped and why:
#  - a root-only case of a tests/mount program (tcase.h TC_SKIP), run as
#    nobody, ends "0 passed, 0 failed, 1 skipped" with a "# SKIP" line;
#  - tests/check.sh adds the runners' skipped counts (old-style summaries
#    without one count none), lists the reasons, and its last line is
#    "N passed, N failed, N skipped".
source "$(dirname "$0")/lib.bash"
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}

# ---- a root-only case run as nobody ------------------------------------------
EDGE=$TXDIR_BUILD/tests/mount/edge
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
	skip "edge's root-only case as nobody" "needs root and setpriv"
elif [ ! -x "$EDGE" ]; then
	not_ok "$EDGE is built"
else
	mkdir -p -m 1777 "$T/native"
	chmod 755 "$T"
	OUT=$(timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$EDGE" "$T/native" native setgid_root 2>&1)
	RC=$?
	expect "a root-only case run as nobody: skipped, not passed" 0 \
		'^0 passed, 0 failed, 1 skipped$'
	if grep -qE '^# SKIP [a-z_]*setgid_root[a-z_]* \[native\]: needs root$' <<<"$OUT"; then
		ok "it says which case and why"
	else
		not_ok "it says which case and why" "$OUT"
	fi
	chmod 700 "$T"
fi

# ---- check.sh aggregates skips -------------------------------------------------
mkdir -p "$T/build/tests/unit"
cat >"$T/r1.sh" <<'R1'
echo "ok - one"
echo "# SKIP as nobody: needs root"
echo "# SKIP readahead: needs root"
echo "1 passed, 0 failed, 2 skipped"
R1
cat >"$T/r2.sh" <<'R2'
echo "ok - a"
echo "ok - b"
echo "2 passed, 0 failed"
R2
cat >"$T/r3.sh" <<'R3'
echo "# SKIP the x86_64 part: x86_64 only"
echo "0 passed, 0 failed, 1 skipped"
R3
OUT=$(CHECK_RUNNERS="one=$T/r1.sh two=$T/r2.sh three=$T/r3.sh" timeout -k 5 60 \
	bash "$ROOT/tests/check.sh" "full:$T/build" 2>&1)
RC=$?
last=$(tail -n 1 <<<"$OUT")
if [ "$last" = "3 passed, 0 failed, 3 skipped" ]; then
	ok "check.sh's last line: N passed, N failed, N skipped"
else
	not_ok "check.sh's last line: N passed, N failed, N skipped" "$OUT"
fi
if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
	ok "the last line parses as CI reads it"
else
	not_ok "the last line parses as CI reads it" "$last"
fi
if grep -qE '^3 skipped .*by reason:$' <<<"$OUT" && grep -qE '^ +2 needs root$' <<<"$OUT" &&
	grep -qE '^ +1 x86_64 only$' <<<"$OUT" &&
	grep -qF '[full] one: as nobody: needs root' <<<"$OUT"; then
	ok "check.sh says how many were skipped and why"
else
	not_ok "check.sh says how many were skipped and why" "$OUT"
fi
if [ "$RC" -eq 0 ]; then ok "skips are not failures"; else not_ok "skips are not failures" "exit $RC"; fi

finish
