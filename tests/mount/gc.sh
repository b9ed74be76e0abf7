#!/usr/bin/env bash
# tests/mount/gc.sh — pack garbage collection through a mount (engine/gc.h;
# issue 12 item 3).
#
#   space back      8 files of 8 MiB written through the mount, 4 removed:
#                   within a bounded time (the server's background GC runs
#                   every 10 s, then a checkpoint, then deletes) the store's
#                   objects/ shrinks by >= 90% of the removed bytes, with
#                   nothing else done on the mount; .txdir/stats counts the
#                   runs and the bytes; the other files read back the same,
#                   also after a remount.
#   killed in GC    the same tree, the server SIGKILLed as soon as GC starts
#                   writing its new pack: after a restart every file reads
#                   back the same, and GC gets the space back afterwards.
#
# Bounded polls synchronise. The last line is "N passed, N failed".
# Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

MIB=$((1 << 20))
NFILES=8
FSIZE=$((8 * MIB))
DEAD=$((NFILES / 2 * FSIZE))

pack_bytes() { # bytes of STORE/objects/pack-*
	local s=0 f sz
	for f in "$TM_STORE"/objects/pack-*; do
		# a pack GC deletes between the glob and the stat counts nothing
		sz=$(stat -c %s "$f" 2>/dev/null) && s=$((s + sz))
	done
	echo "$s"
}

stat_value() { # metric: its value in .txdir/stats (integer part)
	awk -v m="$1" '$1 == m { printf "%d\n", $2 }' "$TM_MNT/.txdir/stats" 2>/dev/null
}

fill_tree() { # writes f0..f7, removes the even ones, keeps checksums of the rest
	local k
	for ((k = 0; k < NFILES; k++)); do
		head -c "$FSIZE" /dev/urandom >"$TM_MNT/f$k" || return 1
	done
	(cd "$TM_MNT" && md5sum f1 f3 f5 f7) >"$TM_DIR/sums" || return 1
	for ((k = 0; k < NFILES; k += 2)); do
		rm "$TM_MNT/f$k" || return 1
	done
}

sums_ok() { (cd "$TM_MNT" && md5sum -c --quiet "$TM_DIR/sums") >/dev/null 2>&1; }

shrunk() { # BEFORE: objects/ is smaller by >= 90% of the dead bytes
	local now
	now=$(pack_bytes)
	[ $(($1 - now)) -ge $((DEAD * 9 / 10)) ]
}

scenario_space_back() {
	fill_tree || { not_ok "space back: writing the tree"; return; }
	local before
	before=$(pack_bytes)
	if wait_for 600 shrunk "$before"; then
		ok "space back: objects/ went from $before to $(pack_bytes) bytes with $DEAD removed"
	else
		not_ok "space back: objects/ still $(pack_bytes) bytes of $before after 60 s ($DEAD removed)"
	fi
	local runs rec
	runs=$(stat_value txdir_gc_runs_total) rec=$(stat_value txdir_gc_bytes_reclaimed_total)
	if [ "${runs:-0}" -ge 1 ] && [ "${rec:-0}" -ge $((DEAD * 9 / 10)) ]; then
		ok "space back: .txdir/stats shows $runs runs and $rec bytes reclaimed"
	else
		not_ok "space back: .txdir/stats: runs=${runs:-none} reclaimed=${rec:-none}"
	fi
	if sums_ok; then ok "space back: the kept files read back the same"; else not_ok "space back: kept files differ"; fi
	tm_stop && start_server "" || { not_ok "space back: remount"; return; }
	if sums_ok; then
		ok "space back: the kept files read back the same after a remount"
	else
		not_ok "space back: kept files differ after a remount"
	fi
}

new_pack() { # a pack numbered above $1 exists (GC is writing)
	local f n
	for f in "$TM_STORE"/objects/pack-*; do
		n=${f##*/pack-}
		[ -e "$f" ] && [ $((10#$n)) -gt "$1" ] && return 0
	done
	return 1
}

scenario_killed() {
	fill_tree || { not_ok "killed: writing the tree"; return; }
	local before top f n
	before=$(pack_bytes)
	top=0
	for f in "$TM_STORE"/objects/pack-*; do
		n=${f##*/pack-}
		[ $((10#$n)) -gt "$top" ] && top=$((10#$n))
	done
	if ! wait_for 600 new_pack "$top"; then
		not_ok "killed: GC never started a new pack in 60 s"
		return
	fi
	kill_server && detach || { not_ok "killed: SIGKILL"; return; }
	start_server "" || { not_ok "killed: restart"; return; }
	if sums_ok; then
		ok "killed: after a SIGKILL during GC every kept file reads back the same"
	else
		not_ok "killed: kept files differ after a SIGKILL during GC"
	fi
	if wait_for 600 shrunk "$before"; then
		ok "killed: GC got the space back after the restart ($before -> $(pack_bytes))"
	else
		not_ok "killed: objects/ still $(pack_bytes) bytes of $before after the restart"
	fi
	if sums_ok; then ok "killed: the kept files read back the same at the end"; else not_ok "killed: kept files differ at the end"; fi
}

for scenario in scenario_space_back scenario_killed; do
	if mount_killable ""; then
		$scenario
		if tm_umount; then ok "${scenario#scenario_}: clean unmount"; else not_ok "${scenario#scenario_}: unmount"; fi
	else
		not_ok "${scenario#scenario_}: mount"
		tm_umount >/dev/null
	fi
done

tm_summary
