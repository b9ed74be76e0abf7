#!/usr/bin/env bash
# tests/cli/top.sh — `mountctl top` and `mountctl status --watch` against a
# real txdirfs: usage errors (2), not a txdir mount (1), `top --once` (and
# --json: one object per frame) while a writer loop runs shows commits/s
# > 0 and WAL bytes/s > 0, the leases held after a grab (mkdir
# .txdir/leases/active/PID/NAME) and the open transactions after a mkdir
# .txdir/txn/NAME, FUSE requests/s by op, and no
# escape codes when piped; `status --watch` piped prints plain frames until
# SIGINT ends it with 0; top on an unmounted directory exits 1.
#
# The writer is a loop bounded by timeout and a stop file; the only waits
# are for files to appear (wait_file), never sleeps as synchronisation.
source "$(dirname "$0")/lib.bash"

ESC=$'\033'

# ---- usage: no mount needed ------------------------------------------------
mkdir -p "$T/plain"
mc top
expect "top without MNT: 2" 2 "missing MNT"
mc top "$T/plain" --interval 0
expect "top --interval 0: 2" 2 "--interval: seconds"
mc top "$T/plain" --bogus
expect "top with an unknown option: 2" 2 "unknown option"
mc top "$T/plain" "$T/plain"
expect "top with two MNTs: 2" 2 "too many arguments"
mc top --help
expect "top --help" 0 "usage: mountctl top MNT"
mc top "$T/plain" --once
expect "top on a plain directory: 1" 1 "is not a txdir mount"
mc status "$T/plain" --interval 1
expect "status --interval without --watch: 2" 2 "needs --watch"

if ! can_mount; then
	skip "cli top (mount checks)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

S=$T/store
M=$T/mnt
B=$T/barriers
mkdir -p "$M" "$B"
mc init "$S"
mount_store "$S" "$M"
expect "mount" 0

wait_file() { # PATH: the barrier; fails after 20 s
	local i
	for ((i = 0; i < 2000; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.01
	done
	echo "# timed out waiting for $1"
	return 1
}

# figure NAME: the value of "NAME   VALUE" (first column pair) in $OUT
figure() {
	sed -n "s|^$1  *\([-0-9.]*\).*|\1|p" <<<"$OUT" | head -n 1
}

# the writer: one small commit per write until the stop file appears
timeout -k 5 60 bash -c '
	i=0
	while [ ! -e "$1/stop" ]; do
		echo "$i" >"$2/f$((i % 10))" || exit 1
		i=$((i + 1))
		[ "$i" -eq 20 ] && : >"$1/writing"
	done' writer "$B" "$M" &
WPID=$!
wait_file "$B/writing"

# a lease held by this shell, and an open transaction
if timeout 10 mkdir "$M/.txdir/leases/active/$$/top-job" 2>/dev/null; then
	HELD=1
else
	HELD=0
	skip "leases held after a grab" "this txdirfs grants no leases"
fi
timeout 10 mkdir "$M/.txdir/txn/top-txn"

OUT=$(timeout -k 5 30 "$MOUNTCTL" top "$M" --once --interval 0.5 2>&1 | cat)
RC=${PIPESTATUS[0]}
expect "top --once while writing: 0" 0 "^commits/s"
c=$(figure 'commits/s')
if awk -v c="${c:--}" 'BEGIN { exit !(c + 0 > 0) }'; then
	ok "commits/s > 0 while the writer runs ($c)"
else
	not_ok "commits/s > 0 while the writer runs" "$OUT"
fi
if grep -qE '^WAL bytes/s|   WAL bytes/s +[0-9.]+ (B|KiB|MiB)/s' <<<"$OUT" &&
	! grep -qE 'WAL bytes/s +-$' <<<"$OUT"; then
	ok "WAL bytes/s shown"
else
	not_ok "WAL bytes/s shown" "$OUT"
fi
if [ "$HELD" = 1 ]; then
	[ "$(figure 'leases held')" = 1 ] && ok "leases held: 1 after a grab" ||
		not_ok "leases held: 1 after a grab" "$OUT"
fi
[ "$(figure 'open transactions')" = 1 ] && ok "open transactions: 1" ||
	not_ok "open transactions: 1" "$OUT"
if grep -qE '^FUSE requests/s +[0-9]' <<<"$OUT" && grep -qE '^  write +[0-9.]+$' <<<"$OUT"; then
	ok "FUSE requests/s by op (write among them)"
else
	not_ok "FUSE requests/s by op (write among them)" "$OUT"
fi
if grep -q "$ESC" <<<"$OUT"; then
	not_ok "no escape codes when piped" "$(cat -v <<<"$OUT")"
else
	ok "no escape codes when piped"
fi
frames=$(grep -c '^txdir top' <<<"$OUT")
[ "$frames" = 1 ] && ok "--once: one frame" || not_ok "--once: one frame" "$frames frames"

# --json (SPEC §2: every read command takes it): one object per frame, on
# one line, the same figures
OUT=$(timeout -k 5 30 "$MOUNTCTL" top "$M" --once --interval 0.5 --json 2>&1 | cat)
RC=${PIPESTATUS[0]}
expect "top --once --json while writing: 0" 0 "^\{"
if [ "$(grep -c . <<<"$OUT")" = 1 ] && python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["commits_per_s"] > 0 and j["transactions_open"] == 1, j
assert j["wal_bytes_per_s"] > 0 and j["fuse_requests_per_s_by_op"].get("write", 0) > 0, j
assert j["mount_point"] == sys.argv[2] and isinstance(j["interval_s"], (int, float)), j
' "$OUT" "$M"; then
	ok "top --json: one object on one line, commits/s, open transactions, writes by op"
else
	not_ok "top --json: one object on one line with the figures" "$OUT"
fi

: >"$B/stop"
wait "$WPID"
timeout 10 rmdir "$M/.txdir/txn/top-txn"
[ "$HELD" = 1 ] && timeout 10 rmdir "$M/.txdir/leases/active/$$/top-job"

# after the writer stopped and the grab ended: idle figures
OUT=$(timeout -k 5 30 "$MOUNTCTL" top "$M" --once --interval 0.2 2>&1 | cat)
RC=${PIPESTATUS[0]}
expect "top --once idle: 0" 0
[ "$(figure 'commits/s')" = 0.0 ] && ok "idle: commits/s 0.0" || not_ok "idle: commits/s 0.0" "$OUT"
[ "$HELD" = 1 ] && { [ "$(figure 'leases held')" = 0 ] && ok "idle: leases held 0" ||
	not_ok "idle: leases held 0" "$OUT"; }

# status --watch piped: plain frames, SIGINT ends it with 0
timeout -k 5 30 "$MOUNTCTL" status "$M" --watch --interval 0.1 >"$T/watch.out" 2>&1 &
SPID=$!
for ((i = 0; i < 2000; i++)); do
	[ "$(grep -c '^mount point' "$T/watch.out")" -ge 3 ] && break
	sleep 0.01
done
kill -INT "$SPID"
wait "$SPID"
RC=$?
OUT=$(cat "$T/watch.out")
expect "status --watch ended by SIGINT: 0" 0 "^mount point"
frames=$(grep -c '^mount point' <<<"$OUT")
[ "$frames" -ge 3 ] && ok "status --watch: one frame per interval ($frames)" ||
	not_ok "status --watch: one frame per interval" "$frames frames"
grep -q "$ESC" <<<"$OUT" && not_ok "status --watch: no escape codes when piped" ||
	ok "status --watch: no escape codes when piped"

# on a terminal (script(1) gives one): the screen is cleared per frame
if command -v script >/dev/null; then
	OUT=$(timeout -k 5 30 script -qec "$MOUNTCTL top $M --once --interval 0.1" /dev/null 2>&1)
	grep -q "$ESC\[H$ESC\[2J" <<<"$OUT" && ok "top on a tty clears the screen" ||
		not_ok "top on a tty clears the screen" "$(cat -v <<<"$OUT")"
else
	skip "top on a tty" "no script(1)"
fi

mc umount "$M"
expect "umount" 0
mc top "$M" --once
expect "top on an unmounted directory: 1" 1 "not a txdir mount"
finish
