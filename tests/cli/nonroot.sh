#!/usr/bin/env bash
# tests/cli/nonroot.sh — `mountctl mount` as a non-root user (nobody, through
# setpriv): when FUSE refuses, one line says what is missing; when nothing
# is, the user mounts and unmounts through fusermount3.
#
# Each case runs in a private mount namespace (unshare -m) in which /dev/fuse
# and fusermount3 are replaced by bind mounts, so the machine's own are
# never touched and every other suite runs on meanwhile:
#   - /dev/fuse that refuses the user (mode 0600, root's) -> names the mode,
#     owner and uid;
#   - /dev/fuse open to all (a node of its own, mode 0666), but fusermount3
#     not setuid root, or not there at all -> says so;
#   - -o allow_other while /etc/fuse.conf has no user_allow_other -> says so;
#   - all there -> the mount answers, and umount works, as nobody.
source "$(dirname "$0")/lib.bash"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! command -v unshare >/dev/null ||
	! can_mount; then
	skip "mountctl mount as a non-root user (every case)" "needs root, setpriv, unshare and FUSE"
	finish
	exit
fi
chmod 755 "$T"
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$MOUNTCTL"; then
	# a clone in a 0700 directory (mktemp -d) hides the binaries from
	# nobody: run copies from $T (both are linked statically with libtxdir)
	mkdir -p "$T/bin"
	cp "$MOUNTCTL" "$T/bin/mountctl" && cp "$TXDIRFS" "$T/bin/txdirfs" &&
		chmod 755 "$T/bin" "$T/bin/mountctl" "$T/bin/txdirfs"
	MOUNTCTL=$T/bin/mountctl TXDIRFS=$T/bin/txdirfs
	export TXDIRFS
fi
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$MOUNTCTL"; then
	skip "mountctl mount as a non-root user (every case)" "nobody cannot run $MOUNTCTL here"
	finish
	exit
fi
if ! timeout 10 unshare -m --propagation private true 2>/dev/null; then
	skip "mountctl mount as a non-root user (every case)" "unshare -m is not allowed here"
	finish
	exit
fi
FM=$(command -v fusermount3)
FM_REAL=$(readlink -f "$FM")

# case NAME OPTS SETUP: runs, in a private mount namespace, SETUP (root's
# shell commands) then `mountctl mount [-o OPTS] STORE MNT` as nobody; if
# that mounted, lists the mount and unmounts it as nobody, still inside.
# Output in $OUT, mountctl's status in $RC.
n=0
nscase() {
	local opts=$1 setup=$2 d
	n=$((n + 1))
	d=$T/c$n
	mkdir -p "$d/mnt"
	"$MOUNTCTL" init "$d/store" >/dev/null 2>&1
	chown -R nobody:nogroup "$d"
	cat >"$d/run.sh" <<EOF
set -u
$setup
asuser() { setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/ XDG_RUNTIME_DIR= "\$@"; }
out=\$(asuser timeout -k 5 30 "$MOUNTCTL" mount --log "$d/txdirfs.log" ${opts:+-o "$opts"} "$d/store" "$d/mnt" 2>&1)
rc=\$?
printf '%s\n' "\$out"
pid=\$(sed -n 's/.*txdirfs pid \([0-9]*\).*/\1/p' <<<"\$out")
[ -n "\$pid" ] && echo "\$pid" >"$d/server.pid"
if [ "\$rc" -eq 0 ]; then
	asuser timeout 10 sh -c 'echo mine > "$d/mnt/f" && cat "$d/mnt/f"' && echo "wrote as nobody"
	asuser timeout -k 5 30 "$MOUNTCTL" umount "$d/mnt" && echo "unmounted as nobody"
	timeout 10 umount -l "$d/mnt" 2>/dev/null
fi
exit "\$rc"
EOF
	OUT=$(timeout -k 5 90 unshare -m --propagation private bash "$d/run.sh" 2>&1)
	RC=$?
	[ -f "$d/server.pid" ] && SERVERS+=("$(cat "$d/server.pid")")
}

# a /dev/fuse node of our own that everyone may open: bind it over the
# machine's inside the namespace
OPEN_FUSE='mount -t tmpfs -o mode=755 none '"$T"'/dev && mknod -m 666 '"$T"'/dev/fuse c 10 229 && mount --bind '"$T"'/dev/fuse /dev/fuse'
mkdir -p "$T/dev" "$T/bin"
cp "$FM_REAL" "$T/bin/fusermount3.nosuid" # cp drops the setuid bit
chmod 755 "$T/bin/fusermount3.nosuid"
printf '#!/bin/sh\nexit 1\n' >"$T/bin/noexec"
chmod 644 "$T/bin/noexec"

nscase "" 'mount -t tmpfs -o mode=755 none '"$T"'/dev && touch '"$T"'/dev/fuse && chmod 600 '"$T"'/dev/fuse && mount --bind '"$T"'/dev/fuse /dev/fuse'
expect "/dev/fuse refuses the user: one line names it, its mode and owner, and the uid" 1 \
	"^mountctl: mount: /dev/fuse \(mode 0600, root:root\) refuses uid $(id -u nobody): .*; txdirfs exited with status 1: .*/dev/fuse.*Permission denied$"
if [ "$(wc -l <<<"$OUT")" -eq 1 ]; then ok "... in one line"; else not_ok "... in one line" "$OUT"; fi

nscase "" "$OPEN_FUSE && mount --bind $T/bin/fusermount3.nosuid $FM_REAL"
expect "fusermount3 not setuid root: says so" 1 \
	"^mountctl: mount: $FM_REAL is not setuid root: a non-root user mounts through it"

nscase "" "$OPEN_FUSE && mount --bind $T/bin/noexec $FM_REAL"
expect "fusermount3 missing: says so (package fuse3)" 1 \
	"^mountctl: mount: fusermount3 is missing \(package fuse3\)"

if grep -qE '^[[:space:]]*user_allow_other' /etc/fuse.conf 2>/dev/null; then
	skip "allow_other without user_allow_other" "/etc/fuse.conf has user_allow_other here"
else
	nscase allow_other "$OPEN_FUSE"
	expect "-o allow_other without user_allow_other in /etc/fuse.conf: says so" 1 \
		"^mountctl: mount: -o allow_other needs a line user_allow_other in /etc/fuse.conf"
fi

nscase "" "$OPEN_FUSE"
expect "nothing missing: nobody mounts through fusermount3" 0 "^mounted $T/c$n/store at $T/c$n/mnt"
if grep -q '^wrote as nobody$' <<<"$OUT" && grep -q '^mine$' <<<"$OUT"; then
	ok "nobody writes and reads its mount"
else
	not_ok "nobody writes and reads its mount" "$OUT"
fi
if grep -q '^unmounted as nobody$' <<<"$OUT"; then ok "nobody unmounts it"; else not_ok "nobody unmounts it" "$OUT"; fi

finish
