#!/usr/bin/env bash
# tests/cli/mount.sh — mountctl against a real txdirfs: mount, status,
# check, sync, stats, umount (refused while busy, --lazy), remount keeps the
# data, and the stale mount left by kill -9 of txdirfs is cleaned by the
# next mount with a message.
source "$(dirname "$0")/lib.bash"

if ! can_mount; then
	skip "cli mount (every check)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

S=$T/store
M=$T/mnt
mkdir -p "$M"
mc init "$S"
expect "init" 0

mount_store "$S" "$M"
expect "mount returns once the mount answers" 0 "^mounted .* \(txdirfs pid [0-9]+"
check "MNT/.txdir answers right after mount returns" stat "$M/.txdir"
if [ "$(id -u)" = 0 ]; then
	ra=$(cat "/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb" 2>&1)
	if [ "$ra" = 2048 ]; then ok "readahead of the mount raised to 2048 KiB"; else not_ok "readahead of the mount raised to 2048 KiB" "$ra"; fi
else
	skip "readahead of the mount raised to 2048 KiB" "needs root"
fi
mount_store "$S" "$M"
expect "mounting a mounted mount point is refused" 1 "already mounted"

mc status "$M"
expect "status prints a table" 0 "^durability +(fsync|full|none)"
mc status --json "$M"
expect "status --json has the txd_status fields" 0 '"commits"'
for field in store durability commits wal_bytes versions_retained open_handles \
	oldest_snapshot_age_s checksum_errors failed; do
	if grep -q "\"$field\"" <<<"$OUT"; then ok "status.json has $field"; else not_ok "status.json has $field" "$OUT"; fi
done
mc check "$M"
expect "check of a healthy mount: 0" 0 "^ok: "
# a symlink to the mount point (a deploy layout) is the mount, as for
# mountpoint(1): absolute and relative links
ln -s "$M" "$T/link-abs" && mkdir -p "$T/ld" && ln -s "../$(basename "$M")" "$T/ld/rel"
mc check "$T/link-abs"
expect "check through an absolute symlink to the mount: 0" 0 "^ok: $M$"
mc check "$T/ld/rel/"
expect "check through a relative symlink (and a trailing /): 0" 0 "^ok: $M$"
mc run "$T/link-abs" -- true
expect "run through a symlink to the mount: 0" 0

echo "hello" >"$M/greeting" 2>/dev/null
mc sync "$M"
expect "sync" 0
mc stats "$M"
expect "stats prints Prometheus text" 0 "^txdir_commits_total [0-9]"
mc stats --json "$M"
expect "stats --json" 0 '"name":[[:space:]]*"txdir_commits_total"'

# Holds FILE open in the background (pid in $holder) and returns once it is
# open: the holder touches a barrier file after opening it.
hold_open() {
	local i
	rm -f "$T/held"
	timeout 30 bash -c 'exec 3<"$1" && touch "$2" && sleep 20' _ "$1" "$T/held" &
	holder=$!
	for ((i = 0; i < 1000; i++)); do [ -e "$T/held" ] && return; sleep 0.01; done
}

# A reader holds a file open: a plain umount must refuse, and leave the
# mount working.
hold_open "$M/greeting"
mc umount "$M"
expect "umount refused while a file is open" 1 "busy"
mc check "$M"
expect "the refused umount left the mount working" 0
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
mc umount "$M"
expect "umount once nothing is open" 0
mc check "$M"
expect "check after umount: down" 2 "not mounted"

mount_store "$S" "$M"
expect "mount again" 0
if [ "$(timeout 10 cat "$M/greeting" 2>/dev/null)" = hello ]; then
	ok "data survives umount and mount"
else
	not_ok "data survives umount and mount"
fi

# kill -9 of the server leaves a stale mount point ("Transport endpoint is
# not connected"); check says down, the next mount cleans it and says so.
if [ -n "$SERVER_PID" ]; then
	echo "bye" >"$M/after-crash" 2>/dev/null
	kill -9 "$SERVER_PID"
	for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	mc check "$M"
	expect "check of a dead server's mount: down" 2 "^down: "
	mc status "$M"
	expect "status of a dead server's mount fails" 1 "stale"
	mount_store "$S" "$M"
	expect "mount cleans the stale mount point and says so" 0 "stale mount of a dead server"
	if [ "$(timeout 10 cat "$M/greeting" 2>/dev/null)" = hello ] &&
		[ "$(timeout 10 cat "$M/after-crash" 2>/dev/null)" = bye ]; then
		ok "closed files survive kill -9 of txdirfs"
	else
		not_ok "closed files survive kill -9 of txdirfs"
	fi
else
	not_ok "mount printed the server pid" "$OUT"
fi

# --lazy detaches a busy mount at once.
hold_open "$M/greeting"
mc umount --lazy "$M"
expect "umount --lazy while busy" 0
mc check "$M"
expect "check after lazy umount: down" 2
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# SIGTERM (what systemd sends) is a clean stop: the server unmounts, exits,
# and what was committed is there after the next mount.
mount_store "$S" "$M"
expect "mount for SIGTERM" 0
spid=$(sed -n 's/.*txdirfs pid \([0-9]*\).*/\1/p' <<<"$OUT")
echo "before TERM" >"$M/term" 2>/dev/null
if [ -n "$spid" ] && kill -TERM "$spid"; then
	for ((i = 0; i < 200; i++)); do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$spid" 2>/dev/null; then not_ok "SIGTERM stops txdirfs" "pid $spid still running"; else ok "SIGTERM stops txdirfs"; fi
else
	not_ok "SIGTERM stops txdirfs" "no pid in: $OUT"
fi
if mountpoint -q "$M"; then not_ok "SIGTERM unmounts" "$M still mounted"; else ok "SIGTERM unmounts"; fi
mount_store "$S" "$M"
expect "mount after SIGTERM" 0
if [ "$(cat "$M/term" 2>&1)" = "before TERM" ]; then ok "data written before SIGTERM is there"; else not_ok "data written before SIGTERM is there" "$(cat "$M/term" 2>&1)"; fi
mc umount "$M"
expect "umount after SIGTERM test" 0

# A mount whose INIT fails (libfuse refuses a capability it cannot offer):
# the daemon says so in its exit status, leaving nothing mounted.
timeout 20 "$TXDIRFS" "$S" "$M" -o splice_write >"$T/init.log" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && ! mountpoint -q "$M"; then
	ok "failed INIT: txdirfs exits 1, nothing mounted"
else
	not_ok "failed INIT: txdirfs exits 1 (not 124: hung), nothing mounted" "exit $rc; $(cat "$T/init.log")"
	timeout 10 fusermount3 -uz "$M" 2>/dev/null
fi

# A server that cannot start: one line with its own error output.
mkdir -p "$T/notastore"
echo x >"$T/notastore/junk"
mount_store "$T/notastore" "$M"
expect "mount of a non-store fails" 1 "^mountctl: mount: txdirfs exited"
lines=$(grep -c '' <<<"$OUT")
if [ "$lines" -eq 1 ]; then ok "the failure is one line"; else not_ok "the failure is one line" "$OUT"; fi
if [ "$(ls -A "$T/notastore")" = junk ]; then
	ok "a failed mount leaves the directory untouched"
else
	not_ok "a failed mount leaves the directory untouched" "$(ls -A "$T/notastore")"
fi
mc check "$M"
expect "nothing is mounted after a failed mount" 2

# Number options are whole decimal numbers: "-1" is refused, not read as
# 4294967295 (fuse_opt's %u did that)
for bad in retain=-1 txn_grace=-3 read_ahead_kb=-1 max_txns=x max_leases=4294967296 max_proposals=-2 max_state_temps=1x; do
	mount_store "$S" "$M" -o "$bad"
	expect "mount -o $bad is refused, saying why" 1 "bad ${bad%%=*}=${bad#*=} \(a whole number"
	if mountpoint -q "$M"; then not_ok "-o $bad: nothing mounted"; timeout 10 fusermount3 -uz "$M"; fi
done

# An empty directory is not a store yet: say what to run.
mkdir -p "$T/empty"
mount_store "$T/empty" "$M"
expect "mount of an empty directory says to run mountctl init" 1 \
	"$T/empty is not a txdir store: run mountctl init $T/empty\$"

# A mount point that holds files: refused (the mount would hide them),
# unless -o nonempty, which txdirfs takes itself (libfuse 3 rejects it).
mkdir -p "$T/full"
echo mine >"$T/full/underneath"
mount_store "$S" "$T/full"
expect "mount over a non-empty directory is refused, saying why" 1 \
	"$T/full is not empty: mounting over it would hide its files \(mount with -o nonempty"
if mountpoint -q "$T/full"; then not_ok "nothing is mounted over the non-empty directory"; else ok "nothing is mounted over the non-empty directory"; fi
mount_store "$S" "$T/full" -o nonempty
expect "-o nonempty mounts over it" 0
if [ ! -e "$T/full/underneath" ] && [ "$(timeout 10 cat "$T/full/greeting" 2>/dev/null)" = hello ]; then
	ok "-o nonempty: the store's files are shown"
else
	not_ok "-o nonempty: the store's files are shown" "$(ls -A "$T/full" 2>&1)"
fi
# Another user cannot unmount it: say whose mount it is.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$T"
	OUT=$(timeout -k 5 30 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$MOUNTCTL" umount "$T/full" 2>&1)
	RC=$?
	expect "umount by another user says whose mount it is" 1 \
		"^mountctl: umount: $T/full is mounted by root \\(uid 0\\): only root can unmount it$"
	if mountpoint -q "$T/full"; then ok "the other user's umount left it mounted"; else not_ok "the other user's umount left it mounted"; fi
	chmod 700 "$T"
else
	skip "umount by another user says whose mount it is" "needs root and setpriv"
fi
mc umount "$T/full"
expect "umount the nonempty mount" 0
if [ "$(cat "$T/full/underneath" 2>/dev/null)" = mine ]; then ok "the hidden files are back after umount"; else not_ok "the hidden files are back after umount"; fi

finish
