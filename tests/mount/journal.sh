#!/usr/bin/env bash
# tests/mount/journal.sh — per-process journals and dead processes through the
# mount (SPEC §5 "Records, journals and logs"; issue 10 item 6), on an
# allow_other,default_permissions mount.
#
#   journal       a holder's grant and release are in
#                 .txdir/recovery/journals/PID/journal, and journals/ lists it.
#   death         a holder kill -9'ed: dead_processes/PID appears within 1 s,
#                 naming the lease and its token; the journal has the cleanup.
#   nobody        as nobody: a journal shows no more than `events` shows
#                 nobody (a transaction's private status reads "(hidden)"),
#                 root sees it.
#   reuse         a live process whose pid an earlier, dead process had
#                 (forced through ns_last_pid, pidreuse.py) sees neither the
#                 dead one's journal nor its dead_processes record under the
#                 plain PID: those show only as PID.START (SPEC §6).
#   restart       a holder killed while txdirfs is down (SIGKILL) gets its
#                 dead_processes record at start-up; another restart keeps
#                 every journal and dead-process record.
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
# counters, ok/not_ok/skip, BG (killed at exit), tm_summary: lib.sh

as_nobody() { # shell command
	setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "$1" 2>&1
}

# jq-free JSON checks: python3 CODE FILE, CODE sees the parsed object as d.
json_ok() { # file code
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert '"$2" "$1" 2>/dev/null
}

test_journal() {
	local R=$TM_MNT/.txdir/recovery L=$TM_MNT/.txdir/leases J
	tm_start_holder
	mkdir "$L/active/$HOLDER/jl" && rmdir "$L/active/$HOLDER/jl" ||
		{ not_ok "journal: grab and release"; return; }
	J=$R/journals/$HOLDER/journal
	grep -q '"type":"lease_grant","name":"jl".*"pid":'"$HOLDER"',' "$J" &&
		grep -q '"type":"lease_release","name":"jl".*"how":"release"' "$J" &&
		ok "journal: journals/$HOLDER/journal has the grant and the release" ||
		not_ok "journal: $(cat "$J" 2>&1)"
	ls "$R/journals" | grep -qx "$HOLDER" && ok "journal: journals/ lists $HOLDER" ||
		not_ok "journal: ls journals: $(ls "$R/journals" 2>&1)"
	[ "$(grep -c . "$J")" = 2 ] && ok "journal: only that process's events" ||
		not_ok "journal: $(grep -c . "$J") lines"
	python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$J" &&
		ok "journal: one JSON object per line" || not_ok "journal: not JSON"
	kill -KILL "$HOLDER"
}

test_death() {
	local R=$TM_MNT/.txdir/recovery L=$TM_MNT/.txdir/leases t0 el D tok
	tm_start_holder
	mkdir "$L/active/$HOLDER/reclaim" || { not_ok "death: grab"; return; }
	tok=$(cat "$L/active/$HOLDER/reclaim/token")
	D=$R/dead_processes/$HOLDER
	t0=$(now_ms)
	kill -KILL "$HOLDER"
	wait_for 50 test -e "$D"
	el=$(($(now_ms) - t0))
	if [ -e "$D" ] && [ "$el" -le 1000 ]; then
		ok "death: dead_processes/$HOLDER within $el ms"
	else
		not_ok "death: no dead_processes/$HOLDER after $el ms: $(ls "$R/dead_processes" 2>&1)"
	fi
	json_ok "$D" 'd["leases_released"]==[{"name":"reclaim","token":'"$tok"'}] and d["reason"]=="death" and d["pid"]=='"$HOLDER"' and not d["while_server_down"] and d["detected"].endswith("Z")' &&
		ok "death: the record names lease reclaim, token $tok, when detected" ||
		not_ok "death: record: $(cat "$D" 2>&1)"
	grep -q '"type":"lease_cleanup","name":"reclaim"' "$R/journals/$HOLDER/journal" &&
		grep -q '"type":"dead_process"' "$R/journals/$HOLDER/journal" &&
		ok "death: the journal has the cleanup and the dead_process record" ||
		not_ok "death: journal: $(cat "$R/journals/$HOLDER/journal" 2>&1)"
	ls "$R/dead_processes" | grep -qx "$HOLDER" && ok "death: dead_processes/ lists $HOLDER" ||
		not_ok "death: ls: $(ls "$R/dead_processes" 2>&1)"
}

# Two transactions on one file: the second commit conflicts. Its creator
# (the mkdir, exec'ed by a shell that told its pid) has txn_begin and
# txn_conflict in its journal; the conflict's private status names a path of
# the view: root sees it, nobody reads "(hidden)" as in events.
test_nobody() {
	local T=$TM_MNT/.txdir/txn R=$TM_MNT/.txdir/recovery pid out
	mkdir "$T/ja" || { not_ok "nobody: begin ja"; return; }
	pid=$(bash -c 'echo $$; exec mkdir "$1"' _ "$T/jb") || { not_ok "nobody: begin jb"; return; }
	echo a >"$T/ja/root/secretfile" && echo b >"$T/jb/root/secretfile" &&
		echo commit >"$T/ja/ctl" || { not_ok "nobody: write and commit ja"; return; }
	echo commit >"$T/jb/ctl" 2>/dev/null && { not_ok "nobody: jb committed"; return; }
	grep -q '"type":"txn_begin"' "$R/journals/$pid/journal" &&
		grep -q '"type":"txn_conflict".*secretfile' "$R/journals/$pid/journal" &&
		ok "nobody: the creator's journal has its transaction's begin and conflict (root)" ||
		not_ok "nobody: root's view: $(cat "$R/journals/$pid/journal" 2>&1)"
	out=$(as_nobody "cat $R/journals/$pid/journal")
	grep -q '"type":"txn_conflict".*"private":"(hidden)"' <<<"$out" &&
		! grep -q secretfile <<<"$out" &&
		ok "nobody: the private status reads (hidden) in the journal, as in events" ||
		not_ok "nobody: $out"
	rmdir "$T/ja" "$T/jb"
}

test_reuse() {
	local out rc
	out=$(timeout 60 python3 "$HERE/pidreuse.py" "$TM_MNT")
	rc=$?
	[ "$rc" = 2 ] && { skip "reuse" "the pid was not reused in 200 forks"; return; }
	[ "$rc" = 3 ] && { skip "reuse" "cannot steer pids ($out)"; return; }
	[ "$rc" = 0 ] || { not_ok "reuse: pidreuse.py rc=$rc: $out"; return; }
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); p=str(d["pid"]); o=p+"."+str(d["a_start"])
assert d["a_start"]!=d["b_start"]
assert d["journals"]==[o] and d["deads"]==[o], "listing"
assert d["journal"]=="ENOENT" and d["dead"]=="ENOENT", "plain name"
assert d["old_dead"]=="content" and d["old_journal"]=="content", "PID.START"' "$out" &&
		ok "reuse: a live reused pid is not shown the dead process's records; they read as PID.START" ||
		not_ok "reuse: $out"
}

test_restart() {
	local R L D tok live
	mount_killable "$OPTS" || { not_ok "restart: mount"; return; }
	R=$TM_MNT/.txdir/recovery
	L=$TM_MNT/.txdir/leases
	tm_start_holder
	live=$HOLDER
	mkdir "$L/active/$live/kept" && rmdir "$L/active/$live/kept" ||
		{ not_ok "restart: grab 1"; return; }
	tm_start_holder
	mkdir "$L/active/$HOLDER/down" || { not_ok "restart: grab 2"; return; }
	tok=$(cat "$L/active/$HOLDER/down/token")
	kill_server && detach || { not_ok "restart: kill server"; return; }
	kill -KILL "$HOLDER"
	wait_for 50 all_dead "$HOLDER"
	start_server "$OPTS" || { not_ok "restart: remount"; return; }
	D=$R/dead_processes/$HOLDER
	json_ok "$D" 'd["leases_released"]==[{"name":"down","token":'"$tok"'}] and d["reason"]=="dead_process" and d["while_server_down"]' &&
		ok "restart: a holder killed while the server was down has its record at start-up" ||
		not_ok "restart: record: $(cat "$D" 2>&1); $(ls "$R/dead_processes" 2>&1)"
	kill_server && detach || { not_ok "restart: kill server 2"; return; }
	start_server "$OPTS" || { not_ok "restart: remount 2"; return; }
	json_ok "$D" 'd["leases_released"][0]["name"]=="down"' &&
		grep -q '"type":"lease_grant","name":"kept"' "$R/journals/$live/journal" &&
		grep -q '"type":"lease_release","name":"kept"' "$R/journals/$live/journal" &&
		ok "restart: journals and dead-process records survive a restart" ||
		not_ok "restart: after: $(ls "$R/journals" "$R/dead_processes" 2>&1)"
	[ "$(grep -c '"type":"dead_process"' "$TM_MNT/.txdir/events")" = 1 ] &&
		ok "restart: the second start-up records nothing again" ||
		not_ok "restart: $(grep -c '"type":"dead_process"' "$TM_MNT/.txdir/events") dead_process events"
	kill -KILL "$live"
	tm_umount >/dev/null || not_ok "restart: unmount"
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_journal
test_death
test_nobody
test_reuse
tm_umount >/dev/null || not_ok "unmount"
test_restart

tm_summary
