#!/usr/bin/env bash
# tests/mount/diskfull.sh — a full disk under the store (issue 12 item 3;
# engine/space.h SP1-SP7, engine/wal.h W8).
#
# The store lives on a 64 MiB ext4 image, loop-mounted (root only: skipped
# with a reason when not root, without mkfs.ext4, or when no loop device can
# be had). A ballast file next to the store stands for "someone else's
# data", so the test can give space back from outside.
#
#   fill          files of 1 MiB, then 64 KiB, then 4 KiB are written
#                 through the mount (python: write, fsync, close) until one
#                 fails: the failure is ENOSPC, never EIO.
#   kept          every file whose close succeeded reads back with its
#                 checksum.
#   degraded      `mountctl status` says "disk full", not "failed".
#   rm            rm of a file works on the full disk (SP3: the reserve).
#   kill -9       the server is SIGKILLed while the disk is full; a new one
#                 mounts the full disk (SP3: recovery may use the reserve)
#                 and the tree is intact; df on the mount does not count
#                 the released reserve as free (SP7).
#   space back    the ballast is deleted: status is no longer "disk full"
#                 (SP5) within a bounded time, and a new file is written.
#   GC            after deleting half of what was written, 90% as much again
#                 fits within GC_BOUND seconds, with the ballast still there
#                 (gc.h G8; TXDIR_EXPECT_GC=0 leaves it out).
#
# Bounded polls synchronise; the loop mount and the FUSE mount are always
# undone by the EXIT trap. Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

GC_BOUND=${GC_BOUND:-60}
D=
LOOPFS=

df_cleanup() {
	if [ -n "${TM_MNT:-}" ] && tm_is_mounted "$TM_MNT"; then
		fusermount3 -u "$TM_MNT" 2>/dev/null || fusermount3 -uz "$TM_MNT" 2>/dev/null
	fi
	[ -n "${TM_PID:-}" ] && { kill "$TM_PID" 2>/dev/null; wait "$TM_PID" 2>/dev/null; }
	TM_MNT= TM_PID=
	if [ -n "$LOOPFS" ] && tm_is_mounted "$LOOPFS"; then
		umount "$LOOPFS" 2>/dev/null || umount -l "$LOOPFS" 2>/dev/null
	fi
	[ -n "$D" ] && rm -rf --one-file-system "$D"
	tm_cleanup_all
}
trap df_cleanup EXIT

# Writes files NAME_K (K from FIRST on) of SIZE bytes (content from K) until
# one fails or N are written; prints "ok NAME sha256 SIZE" per closed file, then
# "fail NAME ERRNO-NAME STEP" for the one that failed.
fill_py='
import errno, hashlib, os, random, sys
d, prefix, size, first, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
for k in range(first, first + n):
    name = "%s_%d" % (prefix, k)
    data = random.Random(k * 7919 + size).randbytes(size)
    step = "open"
    try:
        fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            step = "write"
            off = 0
            while off < size:
                off += os.write(fd, data[off:off + 65536])
            step = "fsync"
            os.fsync(fd)
        finally:
            step = "close" if step == "fsync" else step
            os.close(fd)
    except OSError as e:
        print("fail %s %s %s" % (name, errno.errorcode.get(e.errno, e.errno), step), flush=True)
        sys.exit(0)
    print("ok %s %s %d" % (name, hashlib.sha256(data).hexdigest(), size), flush=True)
'

# Every "ok NAME SUM" line of file LIST reads back from the mount with SUM.
check_sums() { # list
	python3 -c '
import hashlib, os, sys
bad = 0
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] != "ok":
        continue
    p = os.path.join(sys.argv[2], f[1])
    try:
        s = hashlib.sha256(open(p, "rb").read()).hexdigest()
    except OSError as e:
        s = "error %s" % e
    if s != f[2]:
        print("# %s: %s, not %s" % (f[1], s, f[2]))
        bad += 1
sys.exit(1 if bad else 0)' "$1" "$TM_MNT"
}

status_says() { # pattern
	timeout 10 "$MOUNTCTL" status "$TM_MNT" 2>&1 | grep -q -- "$1"
}

setup_loop() {
	if [ "$(id -u)" != 0 ]; then
		skip "diskfull" "needs root (loop-mounted ext4)"
		return 1
	fi
	if ! command -v mkfs.ext4 >/dev/null || ! command -v python3 >/dev/null; then
		skip "diskfull" "needs mkfs.ext4 and python3"
		return 1
	fi
	D=$(mktemp -d "${TMPDIR:-/tmp}/txdir-full.XXXXXX") || return 1
	truncate -s 64M "$D/img" && mkfs.ext4 -q -F "$D/img" >/dev/null 2>&1 || {
		skip "diskfull" "mkfs.ext4 failed"
		return 1
	}
	LOOPFS=$D/fs
	mkdir "$LOOPFS" "$D/mnt"
	if ! mount -o loop "$D/img" "$LOOPFS" 2>"$D/loop.err"; then
		skip "diskfull" "no loop device: $(head -c 200 "$D/loop.err")"
		LOOPFS=
		return 1
	fi
	TM_DIR=$D TM_STORE=$LOOPFS/store TM_MNT=$D/mnt TM_LOG=$D/server.log
	tm_init_store "$TM_STORE" >"$D/init.log" 2>&1 || {
		not_ok "diskfull: init: $(cat "$D/init.log")"
		return 1
	}
	# someone else's 12 MiB on the same disk (more than the reserve: SP5)
	head -c $((12 << 20)) /dev/urandom >"$LOOPFS/ballast" && sync
}

# Fills the mount: 1 MiB files, then 64 KiB, then 4 KiB, each size until
# one fails. Appends to $D/written; sets FAILS to the failure lines.
fill() { # prefix
	local size first=0 out
	FAILS=
	for size in $((1 << 20)) $((64 << 10)) 4096; do
		out=$(timeout 300 python3 -c "$fill_py" "$TM_MNT" "$1$size" "$size" 0 100000)
		grep '^ok ' <<<"$out" >>"$D/written"
		FAILS+=$(grep '^fail ' <<<"$out")$'\n'
	done
}

scenario() {
	start_server || { not_ok "diskfull: mount"; return; }
	: >"$D/written"
	fill f
	local nfail neio nok
	nfail=$(grep -c '^fail ' <<<"$FAILS")
	neio=$(grep -c ' EIO ' <<<"$FAILS")
	nok=$(grep -c '' "$D/written")
	if [ "$nfail" -eq 3 ] && [ "$neio" -eq 0 ] && ! grep -v '^$' <<<"$FAILS" | grep -qv ' ENOSPC '; then
		ok "fill: $nok files, then ENOSPC at every size ($(grep -v '^$' <<<"$FAILS" | awk '{print $4}' | paste -sd,)), no EIO"
	else
		not_ok "fill: the failures were not all ENOSPC: $(tr '\n' ';' <<<"$FAILS")"
	fi
	[ "$nok" -gt 20 ] && ok "fill: $nok files before the disk was full" ||
		not_ok "fill: only $nok files fit"
	check_sums "$D/written" && ok "kept: every closed file reads back (sha256)" ||
		not_ok "kept: files closed before the full disk changed"
	status_says "disk full" && ok "degraded: status says disk full" ||
		not_ok "degraded: status: $(timeout 10 "$MOUNTCTL" status "$TM_MNT" 2>&1 | grep health)"
	status_says "failed" && not_ok "degraded: status says failed" ||
		ok "degraded: not failed"
	grep -q '^txdir_disk_full 1$' "$TM_MNT/.txdir/stats" && ok "degraded: txdir_disk_full 1 in stats" ||
		not_ok "degraded: stats: $(grep '^txdir_disk_full' "$TM_MNT/.txdir/stats")"
	local victim
	victim=$(awk 'NR == 1 { print $2 }' "$D/written")
	if rm "$TM_MNT/$victim" 2>"$D/rm.err"; then
		ok "rm on the full disk"
		sed -i "/^ok $victim /d" "$D/written"
	else
		not_ok "rm on the full disk: $(cat "$D/rm.err")"
	fi
	mkdir "$TM_MNT/gone" 2>/dev/null # may or may not fit: never EIO
	[ -d "$TM_MNT" ] && ls "$TM_MNT" >/dev/null && ok "the mount still answers" ||
		not_ok "the mount stopped answering"

	# kill -9 while full; a new server mounts the full disk
	kill_server && detach || not_ok "kill -9: the server did not die"
	if start_server; then
		ok "kill -9 while full: a new server mounts the full disk"
		# SP7: recovery on the full disk took the reserve back from the
		# disk; df on the mount does not offer those bytes
		local fsfree mntfree
		fsfree=$(($(stat -f -c '%a * %S' "$LOOPFS")))
		mntfree=$(($(stat -f -c '%a * %S' "$TM_MNT")))
		if [ "$fsfree" -ge $((1 << 20)) ] && [ "$mntfree" -lt $((fsfree - (1 << 20))) ]; then
			ok "df: the mount shows $((mntfree >> 10)) KiB free, the disk $((fsfree >> 10)) KiB (the reserve is not free)"
		else
			not_ok "df: the mount shows $((mntfree >> 10)) KiB free, the disk $((fsfree >> 10)) KiB"
		fi
		check_sums "$D/written" && ok "kill -9 while full: the tree is intact" ||
			not_ok "kill -9 while full: the tree changed"
		[ ! -e "$TM_MNT/$victim" ] && ok "kill -9 while full: the rm stayed" ||
			not_ok "kill -9 while full: $victim came back"
	else
		not_ok "kill -9 while full: no mount on the full disk: $(tail -n 5 "$TM_LOG")"
		return
	fi

	if [ "${TXDIR_EXPECT_GC:-1}" = 1 ]; then
		# delete half of what was written (in bytes); as much again fits
		# within GC_BOUND seconds (90%: the log and maps take some)
		local half freed got=0 t0 i=0
		half=$(awk 'NR % 2 == 0 { print $2 }' "$D/written")
		freed=$(awk 'NR % 2 == 0 { s += $4 } END { print s + 0 }' "$D/written")
		(cd "$TM_MNT" && xargs rm -f <<<"$half")
		awk 'NR % 2 == 1' "$D/written" >"$D/kept" && mv "$D/kept" "$D/written"
		t0=$(now_ms)
		while [ $(($(now_ms) - t0)) -lt $((GC_BOUND * 1000)) ]; do
			fill "g$((i++))_"
			got=$(awk '$2 ~ /^g/ { s += $4 } END { print s + 0 }' "$D/written")
			[ "$got" -ge $((freed * 9 / 10)) ] && break
			sleep 1 # GC runs in the background: poll, bounded
		done
		[ "$got" -ge $((freed * 9 / 10)) ] &&
			ok "GC: deleted $((freed >> 10)) KiB, wrote $((got >> 10)) KiB again within ${GC_BOUND}s" ||
			not_ok "GC: deleted $((freed >> 10)) KiB, only $((got >> 10)) KiB fit again in ${GC_BOUND}s"
		check_sums "$D/written" && ok "GC: the tree is intact" || not_ok "GC: the tree changed"
	else
		skip "diskfull GC" "TXDIR_EXPECT_GC=0"
	fi

	# space comes back from outside: "disk full" ends (SP5), writes work
	rm -f "$LOOPFS/ballast"
	sync
	wait_for 100 bash -c "! timeout 10 '$MOUNTCTL' status '$TM_MNT' 2>&1 | grep -q 'disk full'" &&
		ok "space back: status no longer says disk full" ||
		not_ok "space back: still disk full: $(timeout 10 "$MOUNTCTL" status "$TM_MNT" 2>&1 | grep health)"
	out=$(timeout 60 python3 -c "$fill_py" "$TM_MNT" after 4096 0 1)
	grep -q '^ok ' <<<"$out" && ok "space back: a new file is written" ||
		not_ok "space back: $out"
	grep '^ok ' <<<"$out" >>"$D/written"
	check_sums "$D/written" && ok "space back: the tree is intact" ||
		not_ok "space back: the tree changed"
	tm_stop || not_ok "clean unmount"
}

if setup_loop; then
	scenario
fi
tm_summary
