#!/usr/bin/env bash
# tests/cli/inspect.sh — `mountctl inspect STORE [WHAT] [--json]` on a
# known store built through a real mount (files, a rename, a removal, a
# transaction through `run`, a lease, a proposal and its votes), unmounted:
# summary (with the garbage a removed large file leaves in its pack, per
# pack and segment, and what GC would free),
# commits (--since, --path), txn, leases, proposals, events,
# file PATH [--history], human and --json (parsed with python3); it reads
# only (every byte of the store unchanged); a mounted store is refused.
source "$(dirname "$0")/lib.bash"

if ! can_mount; then
	skip "cli inspect (every check)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

store_sum() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum)
}

# pyjson NAME PYTHON: runs PYTHON with j = the last output parsed.
pyjson() {
	local name=$1 code=$2
	if [ "$RC" -eq 0 ] && python3 -c "
import json, sys
j = json.loads(sys.stdin.read())
$code" <<<"$OUT" 2>"$T/py.err"; then
		ok "$name"
	else
		not_ok "$name" "exit $RC: $(cat "$T/py.err") $OUT"
	fi
}

S=$T/s
M=$T/m
mkdir -p "$M"
mc init "$S"
mount_store "$S" "$M"
mkdir "$M/docs"
printf 'hello\n' >"$M/docs/a.txt"
printf 'version 2 of b\n' >"$M/docs/b.txt"
mv "$M/docs/b.txt" "$M/docs/c.txt"
printf 'gone\n' >"$M/tmp.txt"
rm "$M/tmp.txt"
head -c 100000 /dev/urandom >"$M/data.bin"
head -c 20000000 /dev/urandom >"$M/gone.bin" # a pack whose bytes are all garbage after
rm "$M/gone.bin"
mc run "$M" -- sh -c "echo in a transaction >$M/docs/txn.txt"
expect "run commits a transaction" 0
mc lease "$M" lock1 -n -- true
expect "a lease taken and released" 0
mc propose "$M" p1 --participants a,b --timeout 30
expect "a proposal" 0
mc vote "$M" p1 a yes
mc vote "$M" p1 b yes
last_id=$(ls "$M/.txdir/commits" | sort -n | tail -n 1)
cat "$M/.txdir/commits/$last_id" >"$T/commit_live.json"
mc inspect "$S"
expect "inspect of the mounted store: refused, exit 1" 1 "is mounted \\(txdirfs pid $SERVER_PID\\) at $M"
mc umount "$M"
expect "umount" 0

before=$(store_sum "$S")
mc inspect "$S"
expect "summary" 0 "^live +4 files, 2 directories"
mc inspect "$S" summary --json
pyjson "summary --json" '
assert j["format"] == 3 and j["files"] == 4 and j["directories"] == 2, j
assert j["live_bytes"] == 6 + 15 + 100000 + 17, j
assert j["commits"] >= 8 and j["last_lsn"] >= j["commits"] and j["checkpoints"] >= 1, j
assert j["problems"] == 0 and j["store_bytes"] > 100000, j
assert j["packs"] >= 1, j
if j["pack_bytes"] > 10000000:  # gone.bin, unless the server'"'"'s GC (gc.h) took it already
    assert j["pack_bytes"] - 100 <= j["pack_garbage_bytes"] < j["pack_bytes"], j  # txn.txt live
    assert j["gc_would_free_bytes"] >= j["pack_garbage_bytes"], j
    assert any(g["gc"] and g["file"].startswith("pack-") and g["dead"] >= 10000000
               for g in j["garbage"]), j
else:
    assert j["pack_garbage_bytes"] < 100000, j'
mc inspect "$S"
expect "summary: what GC would free" 0 "^garbage +[0-9]+ bytes GC would free"

mc inspect "$S" commits
expect "commits (table)" 0 "renamed /docs/b.txt -> /docs/c.txt"
mc inspect "$S" commits --json
pyjson "commits --json: every change, ids increasing" '
c = j["commits"]
ids = [x["id"] for x in c]
assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
ch = [(p["op"], p["path"]) for x in c for p in x["changes"]]
for want in [("created", "/docs/a.txt"), ("renamed", "/docs/c.txt"), ("removed", "/tmp.txt"),
             ("created", "/data.bin"), ("created", "/docs/txn.txt")]:
    assert want in ch, (want, ch)
assert any(x["txn"] != 0 for x in c), "the transaction commit has its txn id"
m = [p for x in c for p in x["changes"] if p["path"] == "/docs/a.txt" and p["op"] == "modified"]
assert m and m[-1]["checksum"].startswith("xxh64:"), m'
pyjson "commits --json: a commit reads as .txdir/commits/ID does (same fields)" '
live = json.load(open("'"$T"'/commit_live.json"))
off = [x for x in j["commits"] if x["id"] == live["id"]]
assert len(off) == 1, (live["id"], [x["id"] for x in j["commits"]])
off = off[0]
for k in ("id", "time", "pid", "txn", "changes", "changes_total"):
    assert off[k] == live[k], (k, off[k], live[k])'
mc inspect "$S" commits --path /docs --json
pyjson "commits --path /docs: only commits naming it" '
assert j["commits"], j
for x in j["commits"]:
    assert any(p["path"].startswith("/docs") or p.get("from", "").startswith("/docs")
               for p in x["changes"]), x'
last=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["commits"][-1]["id"])' <<<"$OUT")
mc inspect "$S" commits --since "$last" --json
pyjson "commits --since ID: that one and later" "
assert [x['id'] for x in j['commits']] == [$last], j"

mc inspect "$S" txn --json
pyjson "txn: the transaction's events" '
t = [e["type"] for e in j["txn"]]
assert "txn_commit" in t, t'
mc inspect "$S" leases --json
pyjson "leases: lock1 granted and let go" '
e = [x for x in j["leases"] if x.get("name") == "lock1"]
t = [x["type"] for x in e]
assert "lease_grant" in t and ("lease_release" in t or "lease_cleanup" in t), j'
mc inspect "$S" proposals --json
pyjson "proposals: p1 opened, voted, decided" '
t = [e["type"] for e in j["proposals"]]
assert "proposal_opened" in t and t.count("vote") == 2 and "decision" in t, t'
mc inspect "$S" proposals
expect "proposals (table)" 0 "decision"
mc inspect "$S" events --json
pyjson "events: every type" '
t = {e["type"] for e in j["events"]}
assert {"txn_commit", "lease_grant", "decision"} <= t, t'

mc inspect "$S" file /docs/a.txt --history --json
pyjson "file --history" '
assert j["type"] == "file" and j["size"] == 6 and j["chunks"] == 1, j
assert j["checksum"].startswith("xxh64:") and j["mode"] == 0o644, j
assert [p["path"] for x in j["history"] for p in x["changes"]].count("/docs/a.txt") >= 2, j'
mc inspect "$S" file /docs/c.txt --history --json
pyjson "file --history follows a rename: versions with sizes and checksums" '
v = j["versions"]
assert v and v[-1]["size"] == 15 and v[-1]["checksum"] == j["checksum"], j
k = [(p["op"], p["path"]) for x in j["history"] for p in x["changes"]]
assert ("created", "/docs/b.txt") in k and ("renamed", "/docs/c.txt") in k, k
assert ("created", "/docs/a.txt") not in k, k'
mc inspect "$S" file /docs/c.txt
expect "file (human)" 0 "^size +15"
mc inspect "$S" file /nope
expect "file that is not there: 1" 1 "no such file"

[ "$(store_sum "$S")" = "$before" ] && ok "inspect changed nothing in the store" ||
	not_ok "inspect changed nothing in the store"

# Hostile names (records probe R4): a newline, a backslash, a byte that is not
# UTF-8, ESC, DEL and a C1 control in file names; every line-oriented output
# escapes them as the status line does (\n, \\, other control bytes and
# non-UTF-8 as \xNN): no forged row, nothing raw reaches the terminal.
S2=$T/s2
M2=$T/m2
mkdir -p "$M2"
mc init "$S2"
mount_store "$S2" "$M2"
python3 -c '
import os, sys
m = os.fsencode(sys.argv[1])
for n in [b"ev\nFAKE 999 2026 fake-line", b"bs\\x", b"bad\xff", b"esc\x1b[31mred", b"del\x7f", b"c1\xc2\x9b"]:
    open(m + b"/" + n, "w").write("z")
os.mkdir(m + b"/.txdir/txn/ha"); os.mkdir(m + b"/.txdir/txn/hb")
for t in (b"ha", b"hb"):
    open(m + b"/.txdir/txn/" + t + b"/root/tx\x1b[31m\x7f\xc2\x9bred", "w").write(t.decode())
open(m + b"/.txdir/txn/ha/ctl", "w").write("commit")
try:
    open(m + b"/.txdir/txn/hb/ctl", "w").write("commit")
except OSError:
    pass
os.rmdir(m + b"/.txdir/txn/hb")
' "$M2" || not_ok "hostile names created"
mc umount "$M2"
expect "umount (hostile names)" 0
# lines_clean NAME FILE [WANT...]: no byte below 0x20 but the line ends, no
# DEL, no C1 control, valid UTF-8, no forged row; each WANT is in FILE.
lines_clean() {
	local name=$1 f=$2
	shift 2
	if python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
b.decode("utf-8")
s = b.decode("utf-8")
bad = [c for c in s if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) < 0xa0]
assert not bad, bad
assert not any(l.startswith("FAKE") for l in s.split("\n")), "forged row"
for w in sys.argv[2:]:
    assert w in s, w
' "$f" "$@" 2>"$T/py.err"; then
		ok "$name"
	else
		not_ok "$name" "$(cat "$T/py.err"): $(cat -A "$f")"
	fi
}
timeout 40 "$MOUNTCTL" inspect "$S2" commits >"$T/hc.out" 2>&1
lines_clean "commits escapes hostile paths" "$T/hc.out" '/ev\nFAKE 999 2026 fake-line' \
	'/bs\\x' '/bad\xff' '/esc\x1b[31mred' '/del\x7f' '/c1\xc2\x9b'
timeout 40 "$MOUNTCTL" inspect "$S2" file "$(printf '/ev\nFAKE 999 2026 fake-line')" --history \
	>"$T/hf.out" 2>&1
lines_clean "file --history escapes the path and the history rows" "$T/hf.out" \
	'path     /ev\nFAKE 999 2026 fake-line' 'created /ev\nFAKE'
for w in txn events leases proposals; do
	timeout 40 "$MOUNTCTL" inspect "$S2" "$w" >"$T/h$w.out" 2>&1
	lines_clean "$w: no raw control byte" "$T/h$w.out"
done
grep -q 'txn_conflict.*tx\\u001b\[31m\\u007f\\u009bred' "$T/htxn.out" && ok "txn: the conflict's path as JSON" ||
	not_ok "txn: the conflict's path as JSON" "$(cat -A "$T/htxn.out")"
timeout 40 "$MOUNTCTL" inspect "$S2" commits --json >"$T/hj.out" 2>&1
python3 -c '
import json, os, sys
j = json.load(open(sys.argv[1]))
ps = [os.fsencode(p["path"]) for c in j["commits"] for p in c["changes"]]
assert b"/bad\xff" in ps and b"/ev\nFAKE 999 2026 fake-line" in ps, ps
' "$T/hj.out" && ok "commits --json keeps the raw names" || not_ok "commits --json" "$(cat "$T/hj.out")"

# Many events: the text output is one row per event, each with its own
# details (a big number in one of them, digit for digit); it was
# quadratic (records R11: 20,000 events took 85 s, --json 0.9 s).
S3=$T/many
mc init "$S3"
python3 -c '
import json, sys
with open(sys.argv[1], "a") as f:
    for i in range(20000):
        e = {"time": "2026-12-08T00:00:00.000Z", "type": "lease_grant" if i % 2 else "txn_begin",
             "lease": "l%d" % i, "token": 1234567890123456 if i == 7 else i}
        f.write("%d %s\n" % (1700000000000000000 + i, json.dumps(e)))
' "$S3/coordination/events.log"
timeout 120 "$MOUNTCTL" inspect "$S3" events >"$T/many.out" 2>&1
python3 -c '
import sys
rows = open(sys.argv[1]).read().splitlines()
assert len(rows) == 20001 and rows[0].split() == ["TIME", "TYPE", "DETAILS"], len(rows)
for i in (0, 1, 7, 19999):
    want = "{\"lease\":\"l%d\",\"token\":%s}" % (i, "1234567890123456" if i == 7 else i)
    assert rows[i + 1].endswith(" " + want), (rows[i + 1], want)
' "$T/many.out" && ok "events: 20,000 events, one row each with its own details" ||
	not_ok "events: 20,000 events, one row each" "$(head -c 300 "$T/many.out")"
timeout 120 "$MOUNTCTL" inspect "$S3" leases >"$T/manyl.out" 2>&1
[ "$(grep -c ' lease_grant ' "$T/manyl.out")" = 10000 ] && [ "$(wc -l <"$T/manyl.out")" = 10001 ] &&
	ok "leases: the 10,000 lease events of 20,000" ||
	not_ok "leases: the 10,000 lease events" "$(wc -l <"$T/manyl.out") lines"

mc inspect "$S" bogus
expect "unknown WHAT: 2" 2 "unknown WHAT"
mc inspect "$S" summary --since 3
expect "--since without commits: 2" 2
mc inspect "$S" file
expect "file without PATH: 2" 2 "wants a PATH"
mc inspect
expect "no STORE: 2" 2 "missing STORE"
mkdir -p "$T/plain"
mc inspect "$T/plain"
expect "not a store: 1" 1 "not a txdir store"

finish
