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
ch = [(p["kind"], p["path"]) for x in c for p in x["paths"]]
for want in [("created", "/docs/a.txt"), ("renamed", "/docs/c.txt"), ("removed", "/tmp.txt"),
             ("created", "/data.bin"), ("created", "/docs/txn.txt")]:
    assert want in ch, (want, ch)
assert any(x["txn"] != 0 for x in c), "the transaction commit has its txn id"
m = [p for x in c for p in x["paths"] if p["path"] == "/docs/a.txt" and p["kind"] == "modified"]
assert m and m[-1]["checksum"].startswith("xxh64:"), m'
mc inspect "$S" commits --path /docs --json
pyjson "commits --path /docs: only commits naming it" '
assert j["commits"], j
for x in j["commits"]:
    assert any(p["path"].startswith("/docs") or p.get("from", "").startswith("/docs")
               for p in x["paths"]), x'
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
assert [p["path"] for x in j["history"] for p in x["paths"]].count("/docs/a.txt") >= 2, j'
mc inspect "$S" file /docs/c.txt --history --json
pyjson "file --history follows a rename: versions with sizes and checksums" '
v = j["versions"]
assert v and v[-1]["size"] == 15 and v[-1]["checksum"] == j["checksum"], j
k = [(p["kind"], p["path"]) for x in j["history"] for p in x["paths"]]
assert ("created", "/docs/b.txt") in k and ("renamed", "/docs/c.txt") in k, k
assert ("created", "/docs/a.txt") not in k, k'
mc inspect "$S" file /docs/c.txt
expect "file (human)" 0 "^size +15"
mc inspect "$S" file /nope
expect "file that is not there: 1" 1 "no such file"

[ "$(store_sum "$S")" = "$before" ] && ok "inspect changed nothing in the store" ||
	not_ok "inspect changed nothing in the store"

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
