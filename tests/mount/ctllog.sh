#!/usr/bin/env bash
# tests/mount/ctllog.sh — the control tree's records (SPEC §5 "Records,
# journals and logs"; issue 9 defects 4 and 10):
#
#   json          a transaction named `a"q\b` (names hold no whitespace: EINVAL) and a path holding `"`: every
#                 line of events, info.json and every commits/ID parse as JSON
#   bytes         names holding 0xff (a file, a lease, a transaction, a
#                 proposal and a participant): every JSON file stays valid
#                 UTF-8 JSON and Python reads the names back (json.h)
#   kill -9       the events of a committed transaction survive SIGKILL of
#                 the server (not only a checkpoint or an unmount)
#   tail -1       `tail -1 .txdir/events` prints the newest event, after each
#                 new one (the size the kernel is given is the content's)
#   24,000 paths  commits/ID of a 24,000-file transaction lists every path,
#                 "created", with a checksum
#   kinds         created, modified, renamed (with from), removed
#   no leak       as nobody on an allow_other mount: a name in root's 0700
#                 directory (created, renamed, in a transaction's view, in a
#                 conflict) appears in no events, commits/ID or transaction
#                 record nobody can read (txdir(7) "The control tree")
#   stats         every name SPEC §5 lists is there; txdir_op_duration_seconds
#                 is a histogram per FUSE op; the counters and gauges move
#
# Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD (as tests/mount/run.sh). The last
# line is "N passed, N failed, N skipped"; the exit status is non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"

OPTS=allow_other,default_permissions
T() { timeout -k 5 60 "$@"; }

# Exit 0 when every non-empty line of stdin is a JSON object.
json_lines() {
	python3 -c '
import json, sys
for n, l in enumerate(sys.stdin, 1):
    if l.strip() and not isinstance(json.loads(l), dict):
        sys.exit("line %d is not an object" % n)'
}

# Begin transaction NAME, run "$@" in its view's root, commit; prints the
# commit id.
txn_commit() { # name cmd...
	local name=$1 t
	shift
	t=$TM_MNT/.txdir/txn/$name
	mkdir "$t" || return 1
	(cd "$t/root" && "$@") || return 1
	echo commit >"$t/ctl" || return 1
	sed -n 's/^committed \([0-9]*\).*/\1/p' "$t/status"
}

test_json() {
	local bad=0 c
	tm_mount "$OPTS" || { not_ok "json: mount"; return; }
	echo q >"$TM_MNT/quote\"d name" && mkdir "$TM_MNT/.txdir/txn/a\"q\\b" ||
		{ not_ok "json: setup"; tm_umount; return; }
	echo x >"$TM_MNT/.txdir/txn/a\"q\\b/root/in \"view\""
	T cat "$TM_MNT/.txdir/events" | json_lines || { bad=1; echo "# events:"; cat "$TM_MNT/.txdir/events"; }
	T cat "$TM_MNT/.txdir/txn/a\"q\\b/info.json" | json_lines ||
		{ bad=1; echo "# info.json:"; cat "$TM_MNT/.txdir/txn/a\"q\\b/info.json"; }
	for c in "$TM_MNT"/.txdir/commits/*; do
		T cat "$c" | json_lines || { bad=1; echo "# $c:"; cat "$c"; }
	done
	grep -q 'quote\\"d name' "$TM_MNT"/.txdir/commits/* || { bad=1; echo "# no commit names the file"; }
	[ $bad = 0 ] && ok "json: events, info.json and commits/ID parse with \" in names" ||
		not_ok "json: invalid JSON in the control tree"
	tm_umount >/dev/null || not_ok "json: unmount"
}

# Names that are not UTF-8 (a byte 0xff): every JSON file and line stays
# valid UTF-8 JSON, and Python reads the names back as their bytes (json.h:
# \udcXX escapes, PEP 383).
test_bytes() {
	local M out pid n
	tm_mount "$OPTS" || { not_ok "bytes: mount"; return; }
	M=$TM_MNT
	n=$(printf 'n\xff')
	sleep 120 &
	pid=$!
	BG+=("$pid")
	echo x >"$M/f$n" && mkdir "$M/.txdir/leases/active/$pid/l$n" && mkdir "$M/.txdir/txn/t$n" &&
		echo y >"$M/.txdir/txn/t$n/root/v$n" && echo commit >"$M/.txdir/txn/t$n/ctl" &&
		mkdir "$M/.txdir/consensus/proposals/p$n" &&
		echo "a,b$n" >"$M/.txdir/consensus/proposals/p$n/participants" &&
		echo yes >"$M/.txdir/consensus/votes/p$n/a" && echo yes >"$M/.txdir/consensus/votes/p$n/b$n" ||
		{ not_ok "bytes: setup"; kill "$pid"; tm_umount; return; }
	out=$(T python3 - "$M" "$pid" <<'PY' 2>&1
import glob, json, os, sys
M, pid = os.fsencode(sys.argv[1]), sys.argv[2].encode()
def load(p):
    b = open(p, "rb").read()
    b.decode("utf-8")  # strict: raises on a raw byte
    return [json.loads(l) for l in b.splitlines() if l.strip()] if p.endswith(b"events") else [json.loads(b)]
files = [M + b"/.txdir/events", M + b"/.txdir/leases/active/" + pid + b"/ln\xff/info.json",
         M + b"/.txdir/consensus/proposals/pn\xff/info.json", M + b"/.txdir/txn/tn\xff/info.json"]
files += glob.glob(M + b"/.txdir/commits/*") + glob.glob(M + b"/.txdir/dtc/transactions/*")
text = ""
for f in files:
    for j in load(f):
        text += json.dumps(j, ensure_ascii=False)
for want in ["fn\udcff", "ln\udcff", "pn\udcff", "tn\udcff", "vn\udcff", "bn\udcff"]:
    if want not in text:
        sys.exit("no %s in %d files" % (want, len(files)))
print("ok", len(files))
PY
)
	[[ $out == ok* ]] && ok "bytes: a name with 0xff in events, leases, proposals, transactions, commits: valid JSON, read back ($out files)" ||
		not_ok "bytes: $out"
	kill "$pid"
	tm_umount >/dev/null || not_ok "bytes: unmount"
}

test_kill9() {
	local id txid
	mount_killable "$OPTS" || { not_ok "kill -9: mount"; return; }
	id=$(txn_commit k9 sh -c 'echo x >f') || { not_ok "kill -9: transaction"; detach; tm_umount; return; }
	txid=$(sed -n 's/.*"txid":\([0-9]*\).*/\1/p' "$TM_MNT/.txdir/dtc/transactions/"* 2>/dev/null | head -n 1)
	kill_server && detach || { not_ok "kill -9: kill"; tm_umount; return; }
	start_server "$OPTS" || { not_ok "kill -9: restart"; tm_umount; return; }
	if grep -q "\"type\":\"txn_begin\".*\"name\":\"k9\"" "$TM_MNT/.txdir/events" &&
		grep -q "\"type\":\"txn_commit\".*\"commit\":$id\b" "$TM_MNT/.txdir/events" &&
		[ -e "$TM_MNT/.txdir/commits/$id" ]; then
		ok "kill -9: txn_begin and txn_commit (commit $id) and commits/$id survive"
	else
		not_ok "kill -9: events after restart (commit $id, txn $txid):"
		sed 's/^/#   /' "$TM_MNT/.txdir/events"
	fi
	tm_umount >/dev/null || not_ok "kill -9: unmount"
}

test_tail() {
	local k last bad=0
	tm_mount "$OPTS" || { not_ok "tail -1: mount"; return; }
	exec 3<"$TM_MNT/.txdir/events" # an older reader open meanwhile
	for k in 1 2 3 4 5; do
		mkdir "$TM_MNT/.txdir/txn/tail$k"
		last=$(T tail -n 1 "$TM_MNT/.txdir/events")
		[[ $last == *'"name":"tail'$k'"'* ]] || { bad=1; echo "# after tail$k: $last"; }
		last=$(T tail -c 300 "$TM_MNT/.txdir/events" | tail -n 1)
		[[ $last == *'"name":"tail'$k'"'* ]] || { bad=1; echo "# tail -c after tail$k: $last"; }
	done
	exec 3<&-
	[ $bad = 0 ] && ok "tail -1: shows the newest event each time" || not_ok "tail -1: old lines"
	tm_umount >/dev/null || not_ok "tail -1: unmount"
}

test_24000() {
	local id out
	tm_mount "$OPTS" || { not_ok "24000: mount"; return; }
	id=$(txn_commit big python3 -c '
for k in range(24000):
    with open("f%05d" % k, "w") as f:
        f.write(str(k))') || { not_ok "24000: transaction"; tm_umount; return; }
	out=$(T cat "$TM_MNT/.txdir/commits/$id" | python3 -c '
import json, sys
c = json.load(sys.stdin)
paths = {x["path"] for x in c["changes"] if x["op"] == "created" and x.get("checksum", "").startswith("xxh64:")}
want = {"/f%05d" % k for k in range(24000)}
print(len(want - paths), c["changes_total"])' 2>&1)
	if [ "$out" = "0 24000" ]; then
		ok "24000: commits/$id lists all 24000 paths, created, with checksums"
	else
		not_ok "24000: commits/$id: missing, total = $out"
	fi
	tm_umount >/dev/null || not_ok "24000: unmount"
}

# The changes of every commit, one "op path [from]" line each.
all_changes() {
	cat "$TM_MNT"/.txdir/commits/* | python3 -c '
import json, sys
for l in sys.stdin:
    for x in json.loads(l)["changes"]:
        print(x["op"], x["path"], x.get("from", ""))'
}

test_kinds() {
	local ch bad=0
	tm_mount "$OPTS" || { not_ok "kinds: mount"; return; }
	echo a >"$TM_MNT/k1" && echo b >>"$TM_MNT/k1" && mv "$TM_MNT/k1" "$TM_MNT/k2" &&
		rm "$TM_MNT/k2" || { not_ok "kinds: setup"; tm_umount; return; }
	ch=$(all_changes)
	for want in "created /k1 " "modified /k1 " "renamed /k2 /k1" "removed /k2 "; do
		grep -qxF -- "$want" <<<"$ch" || { bad=1; echo "# no \"$want\""; }
	done
	grep -q '^attributes' <<<"$ch" && { bad=1; echo "# an \"attributes\" change"; }
	[ $bad = 0 ] && ok "kinds: created, modified, renamed, removed" ||
		{ not_ok "kinds:"; sed 's/^/#   /' <<<"$ch"; }
	tm_umount >/dev/null || not_ok "kinds: unmount"
}

as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }

test_leak() {
	local seen root
	if [ "$(id -u)" != 0 ]; then
		skip "ctllog no leak" "needs root (runs the reader as nobody)"
		return
	fi
	tm_mount "$OPTS" || { not_ok "no leak: mount"; return; }
	mkdir -m 700 "$TM_MNT/private" && echo s >"$TM_MNT/private/SECRET_name_42" &&
		mv "$TM_MNT/private/SECRET_name_42" "$TM_MNT/private/SECRET_name_43" ||
		{ not_ok "no leak: setup"; tm_umount; return; }
	txn_commit leak sh -c 'mkdir -m 700 private2 && echo t >private2/SECRET_view_44' >/dev/null
	# a conflict on a private file: the event names the path in its status
	mkdir "$TM_MNT/.txdir/txn/x1" "$TM_MNT/.txdir/txn/x2"
	echo 1 >"$TM_MNT/.txdir/txn/x1/root/private/SECRET_conf_46"
	echo 2 >"$TM_MNT/.txdir/txn/x2/root/private/SECRET_conf_46"
	echo commit >"$TM_MNT/.txdir/txn/x1/ctl"
	echo commit >"$TM_MNT/.txdir/txn/x2/ctl" 2>/dev/null
	mkdir "$TM_MNT/.txdir/txn/open"
	mkdir -m 700 "$TM_MNT/.txdir/txn/open/root/private3" &&
		echo u >"$TM_MNT/.txdir/txn/open/root/private3/SECRET_open_45"
	# a 0700 directory renamed away and a public one made in its place: the
	# old names must not show through the new directory
	mkdir -m 700 "$TM_MNT/hr" && echo l >"$TM_MNT/hr/SECRET_moved_48" &&
		mv "$TM_MNT/hr" "$TM_MNT/hr.old" && mkdir -m 755 "$TM_MNT/hr" ||
		not_ok "no leak: renamed directory setup"
	root=$(cd "$TM_MNT/.txdir" && cat events commits/* txn/*/info.json txn/*/status \
		dtc/transactions/* 2>/dev/null | grep -c SECRET_)
	seen=$(cd "$TM_MNT/.txdir" && as_nobody sh -c 'cat events commits/* txn/*/info.json \
		txn/*/status dtc/transactions/* 2>/dev/null' | grep -o 'SECRET_[a-z]*_[0-9]*' | sort -u)
	if [ -z "$seen" ] && [ "$root" -gt 0 ]; then
		ok "no leak: nobody reads no name under root's 0700 directories ($root lines for root)"
	else
		not_ok "no leak: nobody read: $(echo $seen) (root: $root lines)"
	fi
	# a file nobody may read, in a directory nobody may list: its commit
	# shows the path but not the checksum (a small secret's checksum can be
	# guessed); a file nobody may read shows its checksum to root only
	(umask 077 && echo 583921 >"$TM_MNT/vaultpin") && echo pub >"$TM_MNT/public_file" ||
		not_ok "no leak: checksum setup"
	local sums
	sums=$(cd "$TM_MNT/.txdir" && as_nobody sh -c 'cat commits/*' | python3 -c '
import json, sys
text, out = sys.stdin.read(), []
dec, i = json.JSONDecoder(), 0
while i < len(text):
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    o, i = dec.raw_decode(text, i)
    for c in o["changes"]:
        if c["path"] in ("/vaultpin", "/public_file") and "checksum" in c:
            out.append(c["path"])
print(" ".join(sorted(set(out))))')
	[ "$sums" = "/public_file" ] &&
		ok "no leak: a checksum only for content the reader may read (vaultpin 0600: none)" ||
		not_ok "no leak: checksums nobody saw: '$sums'"
	# a transaction's view is its creator's (the directory is 0700)
	mkdir "$TM_MNT/.txdir/txn/vw" && echo d >"$TM_MNT/.txdir/txn/vw/root/view_draft" ||
		not_ok "no leak: view setup"
	if as_nobody ls "$TM_MNT/.txdir/txn/vw/root" >/dev/null 2>&1 ||
		as_nobody cat "$TM_MNT/.txdir/txn/vw/root/view_draft" >/dev/null 2>&1; then
		not_ok "no leak: nobody read root's transaction view"
	else
		ok "no leak: another user's transaction view is closed (EACCES)"
	fi
	rmdir "$TM_MNT/.txdir/txn/vw" 2>/dev/null
	# what the data tree shows, .txdir shows: a 0750 directory of group 4
	# is listable by a member through a supplementary group only
	mkdir -m 750 "$TM_MNT/grp" && chgrp 4 "$TM_MNT/grp" && echo g >"$TM_MNT/grp/GROUP_name_47"
	local member other
	member=$(cd "$TM_MNT" && setpriv --reuid=nobody --regid=nogroup --groups=4 \
		sh -c 'ls grp >/dev/null && cat .txdir/commits/*' | grep -c GROUP_name_47)
	other=$(cd "$TM_MNT" && as_nobody cat .txdir/commits/* | grep -c GROUP_name_47)
	if [ "$member" -gt 0 ] && [ "$other" -eq 0 ]; then
		ok "no leak: a supplementary group's member reads its directory's names, others not"
	else
		not_ok "no leak: group member saw $member lines, non-member $other"
	fi
	tm_umount >/dev/null || not_ok "no leak: unmount"
}

stat_of() { # name (with labels)
	awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print "absent" }' "$TM_MNT/.txdir/stats"
}

test_stats() {
	local bad=0 n before after
	tm_mount "$OPTS" || { not_ok "stats: mount"; return; }
	for n in txdir_commits_total txdir_commit_conflicts_total txdir_group_commit_batch_size \
		txdir_op_duration_seconds txdir_wal_bytes txdir_oldest_snapshot_age_seconds \
		txdir_leases_held txdir_lease_releases_total txdir_proposals_total \
		txdir_checksum_errors_total; do
		grep -q "^# TYPE $n " "$TM_MNT/.txdir/stats" || { bad=1; echo "# no $n"; }
	done
	grep -q '^# TYPE txdir_op_duration_seconds histogram$' "$TM_MNT/.txdir/stats" ||
		{ bad=1; echo "# txdir_op_duration_seconds is not a histogram"; }
	declare -A b
	for n in txdir_commits_total txdir_commit_conflicts_total txdir_wal_bytes \
		txdir_group_commit_batch_size_count 'txdir_op_duration_seconds_count{op="lookup"}' \
		'txdir_op_duration_seconds_count{op="mkdir"}' \
		'txdir_op_duration_seconds_count{op="create"}' \
		'txdir_op_duration_seconds_bucket{op="lookup",le="+Inf"}' \
		txdir_oldest_snapshot_age_seconds; do
		b[$n]=$(stat_of "$n")
	done
	# work that moves each: creates, lookups, mkdir, an fsync, a conflict,
	# a snapshot reader held open
	mkdir "$TM_MNT/d" && for k in 1 2 3; do echo $k >"$TM_MNT/d/f$k"; done
	stat "$TM_MNT/d/nothere" >/dev/null 2>&1
	python3 -c 'import os; f = os.open(os.sys.argv[1], os.O_WRONLY); os.fsync(f)' "$TM_MNT/d/f1"
	mkdir "$TM_MNT/.txdir/txn/c1" "$TM_MNT/.txdir/txn/c2"
	echo 1 >"$TM_MNT/.txdir/txn/c1/root/d/f2"
	echo 2 >"$TM_MNT/.txdir/txn/c2/root/d/f2"
	echo commit >"$TM_MNT/.txdir/txn/c1/ctl"
	echo commit >"$TM_MNT/.txdir/txn/c2/ctl" 2>/dev/null
	exec 3<"$TM_MNT/d/f3"
	for n in "${!b[@]}"; do
		after=$(stat_of "$n")
		if [ "$after" = absent ] || [ "$after" = "${b[$n]}" ]; then
			bad=1
			echo "# $n did not move: ${b[$n]} -> $after"
		fi
	done
	exec 3<&-
	[ $bad = 0 ] && ok "stats: every SPEC §5 name; op histograms; counters and gauges move" ||
		not_ok "stats"
	tm_umount >/dev/null || not_ok "stats: unmount"
}

test_json
test_bytes
test_kill9
test_tail
test_kinds
test_leak
test_stats
test_24000
tm_summary
