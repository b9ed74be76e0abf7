#!/usr/bin/env bash
# tests/mount/crash.sh — SIGKILL of txdirfs under load, then recovery (SPEC §3).
#
#   crash atomicity   4 worker processes (build/tests/mount/crashwork) rewrite
#                     their own files in place (O_TRUNC) and create new ones,
#                     some with fsync, logging each attempt and each
#                     acknowledgement to a log outside the mount. At a random
#                     point (a random number of logged lines after every
#                     worker has announced itself) txdirfs gets SIGKILL; the
#                     workers are stopped, the dead mount is detached, the
#                     same store is mounted again and `crashwork check`
#                     verifies: every file one complete version, nothing
#                     acknowledged lost, nothing invented, no holes. Five
#                     rounds on one store, each continuing the workload, with
#                     durability fsync, none and full.
#   recovery shows    a file overwritten with a longer version and closed,
#   new size/bytes    then SIGKILL and remount: stat and cat show the new size
#                     and bytes in full; a longer `>` rewrite still open at
#                     the kill leaves the old version in full (never empty).
#
# Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD (as tests/mount/run.sh). The last
# line is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"

CW=$TXDIR_BUILD/tests/mount/crashwork
WORKERS=4
NFILES=6

# Whether MNT is in the mount table (mountpoint(1) fails on a dead FUSE mount:
# its stat gets ENOTCONN).

all_ready() { # dir
	local w
	for ((w = 0; w < WORKERS; w++)); do
		[ -e "$1/ready.$w" ] || return 1
	done
}

log_has() { [ "$(wc -l <"$1")" -ge "$2" ]; }

scenario_crash_rounds() {
	local -a opts=("" "" "durability=none" "durability=full,commit_interval=200ms" "")
	local r w log base target pids=() at_kill t0 out
	t0=$SECONDS
	mount_killable "${opts[0]}" || { not_ok "crash: first mount"; tm_umount >/dev/null; return; }
	log=$TM_DIR/ops.log
	: >"$log"
	for ((r = 0; r < ${#opts[@]}; r++)); do
		rm -f "$TM_DIR"/ready.*
		pids=()
		for ((w = 0; w < WORKERS; w++)); do
			timeout -k 2 60 "$CW" work "$TM_MNT" "$log" "$w" $(((r + 1) * 1000000)) \
				"$NFILES" "$TM_DIR/ready.$w" 2>>"$TM_DIR/workers.err" &
			pids+=($!)
		done
		if ! wait_for 200 all_ready "$TM_DIR"; then
			not_ok "crash round $r: workers did not start"
			sed 's/^/#   /' "$TM_DIR/workers.err" | tail -n 10
			kill "${pids[@]}" 2>/dev/null
			wait "${pids[@]}" 2>/dev/null
			tm_umount >/dev/null
			return
		fi
		base=$(wc -l <"$log")
		target=$((base + 50 + RANDOM % 6000))
		wait_for 150 log_has "$log" "$target" # a random moment, bounded
		at_kill=$(wc -l <"$log")
		if ! kill_server; then
			not_ok "crash round $r: SIGKILL of txdirfs"
			kill "${pids[@]}" 2>/dev/null
			wait "${pids[@]}" 2>/dev/null
			tm_umount >/dev/null
			return
		fi
		# Workers fail with ENOTCONN now; SIGTERM (relayed by timeout) any
		# that is still running, then reap them all.
		kill -TERM "${pids[@]}" 2>/dev/null
		wait_for 100 all_dead "${pids[@]}"
		wait "${pids[@]}" 2>/dev/null
		echo "# round $r: workers stopped by: $(sed -n 's/^crashwork [0-9]*: \([a-z]*\) .*: /\1: /p' \
			"$TM_DIR/workers.err" | sort | uniq -c | tr -s ' \n' ' ')"
		: >"$TM_DIR/workers.err"
		if ! detach; then
			not_ok "crash round $r: dead mount could not be detached"
			return
		fi
		if ! start_server "${opts[r]}"; then
			not_ok "crash round $r: remount after SIGKILL (recovery) failed"
			tail -n 20 "$TM_LOG" | sed 's/^/#   /'
			tm_umount >/dev/null
			return
		fi
		out=$(timeout 120 "$CW" check "$TM_MNT" "$log" 2>&1)
		if [ $? -eq 0 ]; then
			ok "crash round $r (-o ${opts[r]:-defaults}): killed after $((at_kill - base)) log lines;" \
				"recovered tree is a committed prefix ($(sed -n 's/^# checked //p' <<<"$out"))"
		else
			not_ok "crash round $r (-o ${opts[r]:-defaults}): killed after $((at_kill - base)) log lines"
			printf '%s\n' "$out"
			cp "$log" "${TMPDIR:-/tmp}/txdir-crash-failed-ops.log" 2>/dev/null &&
				echo "#   operation log kept as ${TMPDIR:-/tmp}/txdir-crash-failed-ops.log"
		fi
	done
	if tm_umount; then ok "crash: clean unmount after $r rounds ($((SECONDS - t0)) s)"; else not_ok "crash: last unmount"; fi
}

# A committed longer overwrite survives SIGKILL in full; an open longer
# `>` rewrite does not replace the old version, nor empty it.
scenario_recovery_sizes() {
	local f g new old st holder
	mount_killable "" || { not_ok "recovery sizes: mount"; tm_umount >/dev/null; return; }
	f=$TM_MNT/grow
	g=$TM_MNT/open-at-kill
	old=$TM_DIR/old
	new=$TM_DIR/new
	printf 'short old version\n' >"$old"
	head -c 200000 /dev/urandom >"$new"
	cp "$old" "$f" && cp "$old" "$g"
	cat "$f" "$g" >/dev/null # the kernel caches the old size and pages
	cp "$new" "$f"           # longer version, committed at close
	stat -c %s "$f" >/dev/null
	# A holder rewrites g with O_TRUNC and keeps it open over the kill (no
	# shell redirection: closing any dup of the descriptor would commit).
	timeout 60 "$CW" hold "$g" "$new" "$TM_DIR/holder.ready" &
	holder=$!
	wait_for 200 test -e "$TM_DIR/holder.ready" || echo "# holder did not get ready"
	if ! kill_server; then
		not_ok "recovery sizes: SIGKILL of txdirfs"
		kill "$holder" 2>/dev/null
		tm_umount >/dev/null
		return
	fi
	kill "$holder" 2>/dev/null
	wait "$holder" 2>/dev/null
	detach || { not_ok "recovery sizes: detach"; return; }
	start_server "" || { not_ok "recovery sizes: remount after SIGKILL"; tm_umount >/dev/null; return; }
	st=$(stat -c %s "$f")
	if [ "$st" = 200000 ] && cmp -s "$new" "$f" && [ "$(wc -c <"$f")" = 200000 ]; then
		ok "recovery: committed longer overwrite shows new size and bytes in full after SIGKILL"
	else
		not_ok "recovery: after overwrite (200000 bytes, closed) + SIGKILL + remount: stat size $st," \
			"read $(wc -c <"$f") bytes, $(cmp "$new" "$f" 2>&1 | head -n 1)"
	fi
	st=$(stat -c %s "$g")
	if cmp -s "$old" "$g" && [ "$st" = "$(stat -c %s "$old")" ]; then
		ok "recovery: an open '>' rewrite at SIGKILL leaves the old version in full"
	elif cmp -s "$new" "$g" && [ "$st" = 200000 ]; then
		ok "recovery: an open '>' rewrite at SIGKILL shows the new version in full (committed early)"
	else
		not_ok "recovery: open '>' rewrite at SIGKILL: stat size $st, read $(wc -c <"$g") bytes," \
			"neither the old ($(stat -c %s "$old") bytes) nor the new version (200000)"
	fi
	if tm_umount; then ok "recovery sizes: clean unmount"; else not_ok "recovery sizes: unmount"; fi
}

if [ -x "$CW" ]; then
	scenario_crash_rounds
	scenario_recovery_sizes
else
	not_ok "crash: $CW not built"
fi

tm_summary
