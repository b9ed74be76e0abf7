#!/usr/bin/env bash
# tests/cli/state.sh — `mountctl state get|set` (SPEC §2, §5 "Global
# state"):
#   usage errors (2) and invalid JSON refused locally with where it is
#   (1, nothing sent) with no mount; on a txdirfs without .txdir/state,
#   one line naming what is missing (1); with it: get (0), get --json
#   ({"version": N, "document": ...}, big numbers kept digit for digit),
#   set FILE and set from standard input (0, "version N", the version
#   bumped, no temp file left in .txdir/state), --if-version current (0)
#   and stale (75, "stale: version is now M", the document unchanged),
#   invalid JSON (1, the document unchanged); get --json under 4
#   concurrent compare-and-swap writers always prints a version with its
#   own document; and as nobody on an
#   allow_other,default_permissions mount.
#
# Tests that need the server's state document skip (with a reason) on a
# txdirfs without .txdir/state/global_state.json. Every process runs under
# timeout.
source "$(dirname "$0")/lib.bash"

# ---- usage and local checks: no mount needed ----------------------------------
mkdir -p "$T/plain"
mc state
expect "state without a subcommand: 2" 2 "missing get or set"
mc state frob "$T/plain"
expect "state with an unknown subcommand: 2" 2 "unknown subcommand \(get or set\)"
mc state get
expect "state get without MNT: 2" 2 "missing MNT"
mc state get "$T/plain" extra
expect "state get with too many arguments: 2" 2 "too many arguments"
mc state get --if-version 3 "$T/plain"
expect "state get --if-version: 2" 2 "--if-version is an option of state set"
mc state set --json "$T/plain"
expect "state set --json: 2" 2 "--json is an option of state get"
mc state set --if-version x "$T/plain" /dev/null
expect "state set --if-version x: 2" 2 "--if-version: a version number"
mc state set --if-version -1 "$T/plain" /dev/null
expect "state set --if-version -1: 2" 2 "--if-version: a version number"
printf '{"a": 1,\n "b": }\n' >"$T/bad.json"
mc state set "$T/plain" "$T/bad.json"
expect "state set of invalid JSON: 1, where, nothing sent" 1 "bad.json: invalid JSON at line 2, column 7; nothing was sent"
printf '{"a": 1} {"b": 2}' >"$T/two.json"
mc state set "$T/plain" "$T/two.json"
expect "state set of two JSON values: 1" 1 "invalid JSON"
: >"$T/empty.json"
mc state set "$T/plain" "$T/empty.json"
expect "state set of an empty file: 1" 1 "empty at line 1"
mc state set "$T/plain" "$T/missing.json"
expect "state set of a missing file: 1" 1 "No such file"
echo '{"a": 1}' >"$T/good.json"
mc state set "$T/plain" "$T/good.json"
expect "state set on a plain directory: 1" 1 "^mountctl: state set: $T/plain is not a txdir mount"
mc state get "$T/plain"
expect "state get of a plain directory: 1" 1 "is not a txdir mount"
mc state --help
expect "state --help" 0 "usage: mountctl state get MNT"

if ! can_mount; then
	skip "cli state (mount checks)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

chmod 755 "$T" # nobody reaches the mount through $T
S=$T/store
M=$T/mnt
D=$M/.txdir/state
mkdir -p "$M"
mc init "$S"
mount_store "$S" "$M" -o allow_other,default_permissions
expect "mount with allow_other,default_permissions" 0

if [ ! -e "$D/global_state.json" ]; then
	mc state get "$M"
	expect "state get without server support: 1, says what is missing" 1 \
		"has no .txdir/state/global_state.json \(no global state support\)"
	mc state set "$M" "$T/good.json"
	expect "state set without server support: 1" 1 "no global state support"
	skip "cli state (get, set, --if-version on a mount)" \
		"this txdirfs has no .txdir/state/global_state.json"
	mc umount "$M"
	expect "umount" 0
	finish
	exit
fi

version() { python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.txdir.version").decode())' "$D/global_state.json" 2>/dev/null; }
json_get() { # EXPR: a python expression on d, the last output parsed
	python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" <<<"$OUT" 2>/dev/null
}

mc state get "$M"
expect "state get: 0" 0
mc state get --json "$M"
v0=$(json_get 'd["version"]')
if [ "$RC" = 0 ] && [[ $v0 =~ ^[0-9]+$ ]]; then ok "state get --json: a version ($v0) and the document"; else not_ok "state get --json: a version and the document" "exit $RC: $OUT"; fi

printf '{"count": 1, "big": 12345678901234567890}\n' >"$T/doc1.json"
mc state set "$M" "$T/doc1.json"
expect "state set FILE: 0, prints the version" 0 "^version [0-9]+$"
v1=${OUT#version }
if [ -n "$v0" ] && [ "$v1" -gt "$v0" ] 2>/dev/null; then ok "the version moved on ($v0 -> $v1)"; else not_ok "the version moved on" "$v0 -> $v1"; fi
if [ "$(version)" = "$v1" ]; then ok "user.txdir.version is the printed version"; else not_ok "user.txdir.version is the printed version" "$(version) vs $v1"; fi
mc state get --json "$M"
if [ "$(json_get 'd["document"]["count"]')" = 1 ] && grep -q '12345678901234567890' <<<"$OUT" && [ "$(json_get 'd["version"]')" = "$v1" ]; then
	ok "state get --json: the new document, its big number digit for digit, its version"
else
	not_ok "state get --json: the new document, its big number digit for digit, its version" "$OUT"
fi
left=$(ls -A "$D" 2>/dev/null | grep '^mountctl-')
if [ -z "$left" ]; then ok "no temp file left in .txdir/state"; else not_ok "no temp file left in .txdir/state" "$left"; fi

OUT=$(printf '{"count": 2}' | timeout 10 "$MOUNTCTL" state set "$M" 2>&1)
RC=$?
expect "state set from standard input: 0" 0 "^version "
v2=${OUT#version }
mc state get "$M"
if python3 -c 'import json,sys; assert json.load(sys.stdin)["count"] == 2' <<<"$OUT" 2>/dev/null; then ok "state get shows it"; else not_ok "state get shows it" "$OUT"; fi

echo '{"count": 3}' >"$T/doc3.json"
mc state set --if-version "$v2" "$M" "$T/doc3.json"
expect "state set --if-version CURRENT: 0" 0 "^version "
v3=${OUT#version }
echo '{"count": 99}' >"$T/doc99.json"
mc state set --if-version "$v2" "$M" "$T/doc99.json"
expect "state set --if-version STALE: 75, names the version now" 75 "stale: version is now $v3 \(not $v2\)"
mc state get "$M"
if python3 -c 'import json,sys; assert json.load(sys.stdin)["count"] == 3' <<<"$OUT" 2>/dev/null; then ok "a stale set changes nothing"; else not_ok "a stale set changes nothing" "$OUT"; fi

# invalid JSON that only the server sees: not possible through mountctl
# (checked locally); a raw write must keep the old document
timeout 10 bash -c "printf '{broken' > '$D/global_state.json'" 2>/dev/null
mc state get "$M"
if python3 -c 'import json,sys; assert json.load(sys.stdin)["count"] == 3' <<<"$OUT" 2>/dev/null; then ok "an invalid raw write keeps the old document"; else not_ok "an invalid raw write keeps the old document" "$OUT"; fi

# ---- get --json under concurrent writers: always a real pair ---------------------
# 4 writers swap {"v": V+1} in as version V+1 (each document names its own
# version) until the stop file appears; meanwhile every state get --json
# must print a version with that version's document (races probe D5).
cat >"$T/sgw.py" <<'PY'
import errno, os, sys, json
d, stop, ready = sys.argv[1], sys.argv[2], sys.argv[3]
swapped = False
while not os.path.exists(stop):
    try:
        v = int(os.getxattr(d + "/global_state.json", "user.txdir.version"))
        fd = os.open(d + "/update", os.O_WRONLY)
        try:
            os.write(fd, json.dumps({"if_version": v, "document": {"v": v + 1}}).encode())
        finally:
            os.close(fd)
    except OSError as e:  # EBUSY: lost the swap; try again
        if e.errno != errno.EBUSY:
            print("writer:", e, file=sys.stderr)
        continue
    if not swapped:
        swapped = True
        open(ready, "w").close()
PY
rm -f "$T/sg.stop" "$T"/sg.ready.*
wpids=()
for w in 1 2 3; do
	timeout -k 5 600 python3 "$T/sgw.py" "$D" "$T/sg.stop" "$T/sg.ready.$w" &
	wpids+=($!)
done
for ((i = 0; i < 2000; i++)); do
	[ "$(ls "$T" | grep -c '^sg\.ready\.')" = 3 ] && break
	sleep 0.01
done
bad=0 gets=0 firstbad=""
for ((i = 0; i < 20; i++)); do
	mc state get --json "$M"
	[ "$RC" = 0 ] || { bad=$((bad + 1)); firstbad=${firstbad:-"exit $RC: $OUT"}; continue; }
	gets=$((gets + 1))
	if [ "$(json_get 'd["document"].get("v") == d["version"]')" != True ]; then
		bad=$((bad + 1))
		firstbad=${firstbad:-$OUT}
	fi
done
touch "$T/sg.stop"
wfail=0
for p in "${wpids[@]}"; do wait "$p" || wfail=$?; done
if [ "$bad" = 0 ] && [ "$wfail" = 0 ] && [ "$gets" = 20 ]; then
	ok "state get --json with 3 concurrent writers: 20 of 20 a version with its own document"
else
	not_ok "state get --json with 3 concurrent writers: a version with its own document" \
		"$bad of 20 wrong (first: $firstbad), writers' exit: $wfail"
fi

# ---- participants mode: every replace a 2PC proposal (state.h) -------------------
C=$M/.txdir/consensus
voter() { # proposal name ballot: waits (bounded) for the vote file, votes
	local f=$C/votes/$1/$2 i
	for ((i = 0; i < 600; i++)); do [ -e "$f" ] && break; sleep 0.05; done
	echo "$3" >"$f"
}
if echo alice >"$D/participants" 2>/dev/null; then
	cur=$(version)
	voter "state-$((cur + 1))" alice yes &
	vpid=$!
	echo '{"count": 4}' >"$T/doc4.json"
	mc state set --if-version "$cur" "$M" "$T/doc4.json"
	wait "$vpid"
	expect "participants: set --if-version waits for the vote (yes), 0" 0 "^version $((cur + 1))$"
	cur=$((cur + 1))
	voter "state-$((cur + 1))" alice no &
	vpid=$!
	mc state set --if-version "$cur" "$M" "$T/doc99.json"
	wait "$vpid"
	expect "participants: a no: 1, aborted" 1 "aborted: the participants"
	if [ "$(version)" = "$cur" ]; then ok "participants: the aborted document is not visible"; else not_ok "participants: the aborted document is not visible" "version $(version)"; fi
	mc state set "$M" "$T/doc1.json"
	expect "participants: set (rename) returns at once naming the proposal" 0 "^proposal state-$((cur + 1))\.2 opened: .*mountctl decision .* --wait"
	echo yes >"$C/votes/state-$((cur + 1)).2/alice"
	mc decision "$M" "state-$((cur + 1)).2" --wait=30
	expect "participants: its decision" 0 "committed"
	if [ "$(version)" = "$((cur + 1))" ]; then ok "participants: committed, visible"; else not_ok "participants: committed, visible" "version $(version)"; fi
	: >"$D/participants"
else
	skip "participants mode" "no .txdir/state/participants"
fi

# ---- as nobody -------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	asuser() {
		OUT=$(timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups "$@" 2>&1)
		RC=$?
	}
	asuser "$MOUNTCTL" state get --json "$M"
	expect "nobody: state get --json: 0" 0 '"version"'
	cur=$(json_get 'd["version"]')
	asuser "$MOUNTCTL" state set --if-version "$cur" "$M" "$T/doc1.json"
	if [ "$RC" = 0 ] && grep -qE '^version [0-9]+$' <<<"$OUT"; then
		ok "nobody: state set --if-version: 0"
	elif [ "$RC" = 1 ] && [ "$(grep -c . <<<"$OUT")" = 1 ] && grep -qE 'Permission denied|Operation not permitted' <<<"$OUT"; then
		ok "nobody: state set --if-version refused in one line, 1"
	else
		not_ok "nobody: state set --if-version: 0, or refused in one line" "exit $RC: $OUT"
	fi
	asuser "$MOUNTCTL" state set --if-version 0 "$M" "$T/doc1.json"
	if [ "$RC" = 75 ] || [ "$RC" = 1 ]; then ok "nobody: a stale set fails ($RC)"; else not_ok "nobody: a stale set fails" "exit $RC: $OUT"; fi
else
	skip "state as nobody" "needs root and setpriv"
fi

mc umount "$M"
expect "umount" 0
finish
