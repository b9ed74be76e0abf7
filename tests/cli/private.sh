#!/usr/bin/env bash
# tests/cli/private.sh — the store is private to the server's user (store.h
# S4, txdirfs(8)): init under umask 022 makes directories 0700 and files
# 0600; the content of a 0600 file on the mount cannot be read from the
# store by another user (nobody), who cannot even list it, while mounted and
# after unmount; a store others can read is refused at mount with a message
# saying what to do, unless -o allow_shared_store.
source "$(dirname "$0")/lib.bash"

if ! can_mount; then
	skip "cli private (every check)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

chmod 755 "$T" # nobody must be able to reach the store's directory
S=$T/store
M=$T/mnt
mkdir -p "$M"
umask 022
mc init "$S"
expect "init under umask 022" 0

shared=$(find "$S" -perm /077 -printf '%m %p\n' 2>&1)
if [ -z "$shared" ]; then ok "init: no group or other bit anywhere in the store"; else not_ok "init: no group or other bit anywhere in the store" "$shared"; fi

# umask 000 gives nothing away either.
(umask 000 && timeout 30 "$MOUNTCTL" init "$T/store000" >/dev/null 2>&1)
shared=$(find "$T/store000" -perm /077 -printf '%m %p\n' 2>&1)
if [ -z "$shared" ] && [ -e "$T/store000/FORMAT" ]; then ok "init under umask 000: still private"; else not_ok "init under umask 000: still private" "$shared"; fi

# A store directory the user made first, with the usual 0755.
mkdir -m 755 "$T/premade"
mc init "$T/premade"
expect "init of an existing empty directory" 0
m=$(stat -c %a "$T/premade")
if [ "$m" = 700 ]; then ok "init makes an existing directory 0700"; else not_ok "init makes an existing directory 0700" "mode $m"; fi

mount_store "$S" "$M"
expect "mount the private store" 0
secret="txdir-secret-$$-$RANDOM"
(umask 077 && printf '%s\n' "$secret" >"$M/private") 2>/dev/null
timeout 10 dd if=/dev/zero bs=64k count=4 2>/dev/null | tr '\0' 'x' >"$M/big" # more than inline content
(umask 077 && { printf '%s\n' "$secret"; head -c 300000 "$M/big"; } >"$M/private-big") 2>/dev/null
mc sync "$M"
expect "sync" 0

as_nobody() {
	timeout -k 5 30 setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}
if ! command -v setpriv >/dev/null || [ "$(id -u)" != 0 ]; then
	skip "store privacy as nobody (grep -r, ls of the store)" "needs root and setpriv"
else
	found=$(as_nobody grep -rl "$secret" "$S" 2>/dev/null)
	if [ -z "$found" ]; then ok "mounted: nobody's grep -r finds no secret in the store"; else not_ok "mounted: nobody's grep -r finds no secret in the store" "$found"; fi
	if as_nobody ls "$S" >/dev/null 2>&1; then not_ok "mounted: nobody cannot list the store" "$(ls -ld "$S")"; else ok "mounted: nobody cannot list the store"; fi
	shared=$(find "$S" -perm /077 -printf '%m %p\n' 2>&1)
	if [ -z "$shared" ]; then ok "mounted: every file and directory of the store is private"; else not_ok "mounted: every file and directory of the store is private" "$shared"; fi
fi

mc umount "$M"
expect "umount" 0
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	found=$(as_nobody grep -rl "$secret" "$S" 2>/dev/null)
	if [ -z "$found" ]; then ok "unmounted: nobody's grep -r finds no secret in the store"; else not_ok "unmounted: nobody's grep -r finds no secret in the store" "$found"; fi
	# the control: root finds it, so the grep above could have found it
	if grep -rqa "$secret" "$S"; then ok "control: the secret is in the store for its owner"; else not_ok "control: the secret is in the store for its owner"; fi
else
	skip "unmounted store privacy as nobody" "needs root and setpriv"
fi
shared=$(find "$S" -perm /077 -printf '%m %p\n' 2>&1)
if [ -z "$shared" ]; then ok "unmounted: packs, checkpoints and records are private"; else not_ok "unmounted: packs, checkpoints and records are private" "$shared"; fi

# An old store (made 0755/0644) or a chmod: refused, with what to do.
chmod 755 "$S"
mount_store "$S" "$M"
expect "mount of a store others can read is refused" 1 "other users can read or write the store.*chmod -R go= "
if mountpoint -q "$M"; then not_ok "nothing is mounted after the refusal"; else ok "nothing is mounted after the refusal"; fi
mount_store "$S" "$M" -o allow_shared_store
expect "-o allow_shared_store mounts it anyway" 0
if [ "$(timeout 10 cat "$M/private" 2>/dev/null)" = "$secret" ]; then ok "the data is there"; else not_ok "the data is there"; fi
mc umount "$M"
expect "umount the shared store" 0
chmod -R go= "$S"
mount_store "$S" "$M"
expect "after chmod -R go= the store mounts" 0
mc umount "$M"
expect "umount" 0

finish
