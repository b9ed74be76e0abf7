#!/usr/bin/env bash
# tests/mount/records.sh — the control tree's record directories (SPEC §5
# "Records, journals and logs"; records probe of session 10):
#
#   storeview     dtc/wal/ lists the store's WAL segments and
#                 dtc/checkpoints/ its checkpoints (also after a restart
#                 that wrote one), each file a short JSON (name, bytes, lsn
#                 range), read-only 0444 root's, never the segment's bytes
#   aliases       numeric record names resolve only as readdir lists them
#                 (canonical decimal): commits/0N, +N, " N", dtc/transactions/
#                 +ID, journals/0PID, dead_processes/00PID, PID.0START,
#                 leases/completed/+TOKEN are ENOENT
#   comm          a process named "a<newline>b\\c<0xff>" holds a lease: owner
#                 (a line) escapes it, info.json and `mountctl lease list
#                 --json` carry the raw name (JSON-escaped; 0xff as \udcff)
#   limits        -o max_proposals=2,max_state_temps=1: nobody's third
#                 proposal and second temp file in state/ get EDQUOT; root
#                 is not limited (SPEC §6: configurable per-uid limits);
#                 -o max_ctl_mib=1: nobody's open renderings of events stop
#                 at 1 MiB (EDQUOT), root's do not
#   thread        a transaction begun, a file written and the state
#                 document replaced from a worker thread are recorded under
#                 the process (txn_begin pid, journals/PID, creator_pid,
#                 commits/ID pid, state_replace pid), never the thread id
#                 (records probe R10; records_thread.py)
#
# Bounded polls synchronise, never sleeps. The last line is
# "N passed, N failed, N skipped". Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

OPTS=allow_other,default_permissions

as_nobody() { # shell command
	setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "$1" 2>&1
}

# python3 CODE FILE: CODE sees the parsed object as d.
json_ok() { # file code
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert '"$2" "$1" 2>/dev/null
}

test_storeview() {
	local D=$TM_MNT/.txdir/dtc S=$TM_STORE/coordination/dtc f segs ck
	[ "$(ls "$D" | tr '\n' ' ')" = "checkpoints participant_inbox transactions wal " ] &&
		ok "storeview: dtc/ lists checkpoints participant_inbox transactions wal" ||
		not_ok "storeview: ls dtc: $(ls "$D" 2>&1 | tr '\n' ' ')"
	echo a >"$TM_MNT/f1" && echo b >"$TM_MNT/f2" || { not_ok "storeview: write"; return; }
	segs=$(ls "$S/wal" | grep -E '^seg-[0-9]+$' | tr '\n' ' ')
	[ -n "$segs" ] && [ "$(ls "$D/wal" | tr '\n' ' ')" = "$segs" ] &&
		ok "storeview: dtc/wal/ lists the store's segments ($segs)" ||
		not_ok "storeview: dtc/wal: '$(ls "$D/wal" 2>&1 | tr '\n' ' ')', store: '$segs'"
	f=$D/wal/${segs%% *}
	json_ok "$f" 'd["name"]=="'"${segs%% *}"'" and d["bytes"]>=64 and d["first_lsn"]==1 and d["last_lsn"]>=2 and d["records"]==d["last_lsn"] and d["current"]' &&
		ok "storeview: $(cat "$f")" || not_ok "storeview: segment file: $(cat "$f" 2>&1)"
	[ "$(stat -c '%a %u %F' "$f" "$D/wal" | sed 's/ empty//')" = "444 0 regular file
555 0 directory" ] && ok "storeview: segment files 0444 root's, dtc/wal 0555" ||
		not_ok "storeview: stat: $(stat -c '%a %u %F' "$f" "$D/wal")"
	echo x 2>/dev/null >"$f" && not_ok "storeview: a segment file is writable" ||
		ok "storeview: a segment file refuses a write"
	[ "$(wc -c <"$f")" -lt 400 ] && ! grep -q TXDWALSG "$f" &&
		ok "storeview: never the segment's bytes" || not_ok "storeview: $(head -c 200 "$f" | od -c | head -3)"
	for f in seg-1 seg-000000001 "seg-+0000001" seg-99999999; do
		[ -e "$D/wal/$f" ] && not_ok "storeview: dtc/wal/$f resolves"
	done
	ok "storeview: dtc/wal/ resolves only listed canonical names"
	tm_stop >/dev/null || { not_ok "storeview: unmount"; return; }
	tm_start "$OPTS" || { not_ok "storeview: remount"; return; }
	ck=$(ls "$S/checkpoints" | grep -E '^ckpt-[0-9a-f]{16}$' | tr '\n' ' ')
	[ -n "$ck" ] && [ "$(ls "$D/checkpoints" | tr '\n' ' ')" = "$ck" ] &&
		ok "storeview: dtc/checkpoints/ lists the store's checkpoints ($ck)" ||
		not_ok "storeview: dtc/checkpoints: '$(ls "$D/checkpoints" 2>&1 | tr '\n' ' ')', store: '$ck'"
	f=$D/checkpoints/${ck%% *}
	json_ok "$f" 'd["name"]=="'"${ck%% *}"'" and d["lsn"]==int("'"${ck%% *}"'"[5:],16) and d["bytes"]=='"$(stat -c %s "$S/checkpoints/${ck%% *}" 2>/dev/null || echo -1)" &&
		ok "storeview: $(cat "$f")" || not_ok "storeview: checkpoint file: $(cat "$f" 2>&1)"
	[ "$(ls "$D/wal" | tr '\n' ' ')" = "$(ls "$S/wal" | grep -E '^seg-[0-9]+$' | tr '\n' ' ')" ] &&
		ok "storeview: after the restart dtc/wal/ still matches the store" ||
		not_ok "storeview: after restart: $(ls "$D/wal" | tr '\n' ' ') vs $(ls "$S/wal" | tr '\n' ' ')"
	if [ "$(id -u)" != 0 ]; then
		skip "storeview: as nobody" "needs root"
	else
		as_nobody "cat '$f'" | grep -q '"lsn"' && ok "storeview: anyone reads them (informational)" ||
			not_ok "storeview: nobody: $(as_nobody "cat '$f'")"
	fi
}

# absent NAME PATH...: none of the paths resolves.
absent() {
	local name=$1 p bad=
	shift
	for p; do
		[ -e "$p" ] && bad+=" '${p##*/.txdir/}'"
	done
	[ -z "$bad" ] && ok "aliases: $name" || not_ok "aliases: $name: resolve:$bad"
}

test_aliases() {
	local X=$TM_MNT/.txdir id txid pid start tok
	echo a >"$TM_MNT/al" || { not_ok "aliases: write"; return; }
	id=$(ls "$X/commits" | head -n 1)
	[ -e "$X/commits/$id" ] || { not_ok "aliases: commits/$id"; return; }
	absent "commits/0$id, +$id, ' $id', '$id '" "$X/commits/0$id" "$X/commits/+$id" \
		"$X/commits/ $id" "$X/commits/$id " "$X/commits/00$id"
	mkdir "$X/txn/al" && rmdir "$X/txn/al" || { not_ok "aliases: txn"; return; }
	txid=$(ls "$X/dtc/transactions" | head -n 1)
	[ -e "$X/dtc/transactions/$txid" ] || { not_ok "aliases: transactions/$txid"; return; }
	absent "dtc/transactions/+ID, 0ID, ' ID'" "$X/dtc/transactions/+$txid" \
		"$X/dtc/transactions/0$txid" "$X/dtc/transactions/ $txid"
	tm_start_holder
	pid=$HOLDER
	start=$(cut -d' ' -f22 "/proc/$pid/stat")
	mkdir "$X/leases/active/$pid/al" || { not_ok "aliases: lease"; return; }
	tok=$(cat "$X/leases/active/$pid/al/token")
	kill -KILL "$pid"
	wait_for 50 test -e "$X/recovery/dead_processes/$pid"
	[ -e "$X/recovery/journals/$pid.$start" ] && [ -e "$X/recovery/dead_processes/$pid" ] ||
		{ not_ok "aliases: journals/$pid.$start, dead_processes/$pid"; return; }
	absent "journals/0PID, +PID, PID.0START, PID.+START" "$X/recovery/journals/0$pid" \
		"$X/recovery/journals/+$pid" "$X/recovery/journals/ $pid" \
		"$X/recovery/journals/$pid.0$start" "$X/recovery/journals/$pid.+$start" \
		"$X/recovery/journals/0$pid.$start"
	absent "dead_processes/00PID, +PID" "$X/recovery/dead_processes/00$pid" \
		"$X/recovery/dead_processes/+$pid" "$X/recovery/dead_processes/$pid.0$start"
	[ -e "$X/leases/completed/$tok" ] || { not_ok "aliases: completed/$tok"; return; }
	absent "leases/completed/+TOKEN, ' TOKEN'" "$X/leases/completed/+$tok" \
		"$X/leases/completed/ $tok" "$X/leases/completed/0$tok"
}

test_comm() {
	local out
	out=$(timeout 60 python3 "$HERE/records_comm.py" "$TM_MNT" "$MOUNTCTL" 2>&1) ||
		{ not_ok "comm: records_comm.py: $out"; return; }
	python3 -c 'import json,sys; d=json.loads(sys.argv[1])
raw = "a\nb\\c\xff"
assert " command=a\\nb\\\\c" in d["owner"] and d["owner"].count("\n") == 1, "owner"
assert d["info"] == raw, "info.json"
assert d["list"] == [raw], "lease list --json"' "$out" &&
		ok "comm: owner escapes the name; info.json and lease list --json carry it raw" ||
		not_ok "comm: $out"
}

test_limits() {
	local C S out
	if [ "$(id -u)" != 0 ]; then
		skip "limits" "needs root (runs the limited user as nobody)"
		return
	fi
	tm_mount "$OPTS,max_proposals=2,max_state_temps=1" || { not_ok "limits: mount"; return; }
	C=$TM_MNT/.txdir/consensus/proposals
	S=$TM_MNT/.txdir/state
	out=$(as_nobody "mkdir $C/q1 && mkdir $C/q2 && mkdir $C/q3; ls $C | tr '\n' ' '")
	grep -q 'Disk quota exceeded' <<<"$out" && grep -q 'q1 q2 $' <<<"$out" &&
		ok "limits: past max_proposals=2 nobody gets EDQUOT" || not_ok "limits: proposals: $out"
	out=$(as_nobody "echo a >$S/t1 && echo b >$S/t2; ls $S | grep -c '^t[12]\$'")
	grep -q 'Disk quota exceeded' <<<"$out" && grep -q '^1$' <<<"$out" &&
		ok "limits: past max_state_temps=1 nobody gets EDQUOT" || not_ok "limits: temps: $out"
	mkdir "$C/r1" "$C/r2" "$C/r3" && echo a >"$S/u1" && echo b >"$S/u2" &&
		ok "limits: root is not limited" || not_ok "limits: root limited"
	tm_umount >/dev/null || not_ok "limits: unmount"
	# open renderings: with max_ctl_mib=1, nobody holding `events` open
	# again and again gets EDQUOT once 1 MiB is held, and opens again
	# once it closed them; root is not limited
	tm_mount "$OPTS,max_ctl_mib=1" || { not_ok "limits: mount (ctl)"; return; }
	local i
	for ((i = 0; i < 150; i++)); do
		mkdir "$TM_MNT/.txdir/txn/pad$i" && rmdir "$TM_MNT/.txdir/txn/pad$i" || break
	done
	out=$(as_nobody "timeout 60 python3 -c '
import errno, os, sys
ev = sys.argv[1] + \"/.txdir/events\"
size = len(open(ev, \"rb\").read())
fds = []
try:
    while len(fds) < 5000:
        fds.append(os.open(ev, os.O_RDONLY))
    print(\"no limit\", len(fds), size)
except OSError as e:
    held = len(fds) * size
    for f in fds:
        os.close(f)
    again = os.open(ev, os.O_RDONLY)
    print(errno.errorcode[e.errno], \"held\", held <= (1 << 20), \"again ok\", size > 1000)
' $TM_MNT")
	[ "$out" = "EDQUOT held True again ok True" ] &&
		ok "limits: past max_ctl_mib=1 nobody's opens of events get EDQUOT, and open again after closing" ||
		not_ok "limits: ctl renderings: $out"
	out=$(timeout 60 python3 -c '
import os, sys
ev = sys.argv[1] + "/.txdir/events"
fds = [os.open(ev, os.O_RDONLY) for i in range(100)]
print(len(fds))' "$TM_MNT" 2>&1)
	[ "$out" = 100 ] && ok "limits: root holds 100 renderings of events" ||
		not_ok "limits: root's renderings: $out"
	tm_umount >/dev/null || not_ok "limits: unmount (ctl)"
}

test_thread() {
	local out
	out=$(timeout -k 5 60 python3 "$HERE/records_thread.py" "$TM_MNT" 2>&1) &&
		ok "thread: records name the process, not the calling thread" ||
		not_ok "thread: $(echo "$out" | grep -v '^ok' | tr '\n' ' ')"
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_storeview
test_aliases
test_comm
test_thread
tm_umount >/dev/null || not_ok "unmount"
test_limits

tm_summary
