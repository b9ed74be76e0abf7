#!/usr/bin/env bash
# tests/mount/redirect.sh — `cmd > file` under SIGKILL of txdirfs (SPEC §3
# "Commits", issue 9 defect 3).
#
# A shell opens the target with O_TRUNC, dup2s it onto stdout and closes the
# original descriptor before CMD writes: that FLUSH, with nothing written,
# must not commit the truncation alone. For each idiom — `>`, `>>`, `dd of=`,
# `exec 3>f`, Python open('w') + dup + close — over a 1 MiB file: the writer
# is held after its open (+dup+close) and before its first write (a fifo it
# reads from; it announces itself in a file outside the mount), txdirfs gets
# SIGKILL, the store is mounted again, and the file must be the old 1 MiB in
# full (not empty). Then `: > f` (nothing ever written) followed by another
# open: the empty file is committed by then and survives the kill.
#
# Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD (as tests/mount/run.sh). The last
# line is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"

OPTS=allow_other,default_permissions

# One idiom: $1 label, $2 the writer's shell command (run by sh with F the
# target, BIG the new content, READY and GO the barrier). The writer must
# `: > "$READY"` once its descriptors are set up, then `read x < "$GO"`
# before writing.
one_idiom() { # label command
	local label=$1 cmd=$2 wpid
	if ! mount_killable "$OPTS"; then
		not_ok "$label: mount"
		tm_umount >/dev/null
		return
	fi
	local old=$TM_DIR/old big=$TM_DIR/big
	head -c $((1024 * 1024)) /dev/urandom >"$old"
	head -c $((1024 * 1024)) /dev/urandom >"$big"
	cp "$old" "$TM_MNT/f" && cmp -s "$old" "$TM_MNT/f" || {
		not_ok "$label: setup"
		tm_umount >/dev/null
		return
	}
	mkfifo "$TM_DIR/go"
	F=$TM_MNT/f BIG=$big READY=$TM_DIR/ready GO=$TM_DIR/go \
		timeout 60 sh -c "$cmd" </dev/null >/dev/null 2>&1 &
	wpid=$!
	if ! wait_for 200 test -e "$TM_DIR/ready"; then
		not_ok "$label: the writer did not get ready"
		kill -KILL "$wpid" 2>/dev/null
		tm_umount >/dev/null
		return
	fi
	# the writer is between its open (+ dup2 + close) and its first write
	kill_server || not_ok "$label: kill server"
	pkill -KILL -P "$wpid" 2>/dev/null
	kill -KILL "$wpid" 2>/dev/null
	wait "$wpid" 2>/dev/null
	detach || echo "# $label: the dead mount did not detach"
	if ! start_server "$OPTS"; then
		not_ok "$label: remount"
		tm_umount >/dev/null
		return
	fi
	local size
	size=$(stat -c %s "$TM_MNT/f" 2>/dev/null)
	if cmp -s "$old" "$TM_MNT/f"; then
		ok "$label: SIGKILL before CMD wrote leaves the old file in full"
	else
		not_ok "$label: after SIGKILL the file has size ${size:-?}, not the old 1 MiB"
	fi
	tm_umount >/dev/null || not_ok "$label: unmount"
}

one_idiom 'cmd > f' '{ : > "$READY"; read x < "$GO"; cat "$BIG"; } > "$F"'
one_idiom 'cmd >> f' '{ : > "$READY"; read x < "$GO"; cat "$BIG"; } >> "$F"'
one_idiom 'exec 3> f' 'exec 3> "$F"; : > "$READY"; read x < "$GO"; cat "$BIG" >&3'
one_idiom 'dd of=f' '{ : > "$READY"; read x < "$GO"; cat "$BIG"; } | dd of="$F" bs=64k 2>/dev/null'
one_idiom "python open('w') + dup + close" 'python3 -c "
import os, sys
f = open(os.environ[\"F\"], \"w\")
fd = os.dup(f.fileno())
f.close()
open(os.environ[\"READY\"], \"w\").close()
open(os.environ[\"GO\"]).read()
os.write(fd, open(os.environ[\"BIG\"], \"rb\").read())
"'

# `: > f` writes nothing: the empty file is committed at RELEASE or before
# the next OPEN is answered; after that open, it survives a SIGKILL.
if mount_killable "$OPTS"; then
	head -c 4096 /dev/urandom >"$TM_MNT/e"
	: >"$TM_MNT/e"
	cat "$TM_MNT/e" >/dev/null
	kill_server || not_ok ": > f: kill server"
	detach
	if start_server "$OPTS"; then
		size=$(stat -c %s "$TM_MNT/e" 2>/dev/null)
		if [ "$size" = 0 ]; then
			ok ": > f, then an open: the empty file survives SIGKILL"
		else
			not_ok ": > f, then an open: size ${size:-?} after SIGKILL, want 0"
		fi
	else
		not_ok ": > f: remount"
	fi
	tm_umount >/dev/null || not_ok ": > f: unmount"
else
	not_ok ": > f: mount"
	tm_umount >/dev/null
fi

# `exec 3> f` with nothing written, then `mountctl sync MNT` (an fsync of
# the mount's root): the sync commits the pending truncation, so after a
# SIGKILL the file is empty, as on ext4 after sync.
if mount_killable "$OPTS"; then
	head -c 65536 /dev/urandom >"$TM_MNT/s"
	mkfifo "$TM_DIR/sgo"
	F=$TM_MNT/s READY=$TM_DIR/sready GO=$TM_DIR/sgo \
		timeout 60 sh -c 'exec 3> "$F"; : > "$READY"; read x < "$GO"' </dev/null >/dev/null 2>&1 &
	wpid=$!
	if wait_for 200 test -e "$TM_DIR/sready" && "$MOUNTCTL" sync "$TM_MNT"; then
		kill_server || not_ok "sync: kill server"
		kill -KILL "$wpid" 2>/dev/null
		wait "$wpid" 2>/dev/null
		detach
		if start_server "$OPTS"; then
			size=$(stat -c %s "$TM_MNT/s" 2>/dev/null)
			[ "$size" = 0 ] && ok "exec 3> f, then mountctl sync: the truncation survives SIGKILL" ||
				not_ok "exec 3> f, then mountctl sync: size ${size:-?} after SIGKILL, want 0"
		else
			not_ok "sync: remount"
		fi
	else
		not_ok "sync: the writer did not get ready, or mountctl sync failed"
		kill -KILL "$wpid" 2>/dev/null
	fi
	tm_umount >/dev/null || not_ok "sync: unmount"
else
	not_ok "sync: mount"
	tm_umount >/dev/null
fi

tm_summary
