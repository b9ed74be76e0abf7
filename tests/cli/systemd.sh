#!/usr/bin/env bash
# tests/cli/systemd.sh — txdirfs under systemd, as far as this machine allows
# without a running systemd:
#   - txdirfs@.service, installed (make install PREFIX=a temp dir), passes
#     `systemd-analyze verify` with nothing to say (its ExecStart is the
#     installed txdirfs, its Documentation= pages are installed);
#   - readiness (Type=notify): started with -f and NOTIFY_SOCKET naming a
#     unix datagram socket (a python3 listener here, as systemd's), txdirfs
#     sends READY=1 with MAINPID=its pid, and only once the mount answers;
#     SIGTERM (systemd's stop) sends STOPPING=1, unmounts and exits 0; an
#     abstract socket ("@name") works too;
#   - the unit's ExecStartPre detaches the stale mount point a killed server
#     left (what Restart=on-failure then mounts over).
source "$(dirname "$0")/lib.bash"

BUILD_DIR=${TXDIR_BUILD:-$ROOT/build}
case $BUILD_DIR in "$ROOT"/*) BUILD_DIR=${BUILD_DIR#"$ROOT"/} ;; esac
UNIT_SRC=$ROOT/mountctl/systemd/txdirfs@.service

# ---- the unit file ----------------------------------------------------------------
if [ ! -f "$UNIT_SRC" ]; then
	not_ok "mountctl/systemd/txdirfs@.service exists"
elif ! command -v systemd-analyze >/dev/null; then
	skip "systemd-analyze verify txdirfs@.service" "no systemd-analyze here"
else
	R=$T/sys
	OUT=$(timeout -k 5 120 make -C "$ROOT" -s --no-print-directory INSTALL_AS_BUILT=1 BUILD="$BUILD_DIR" PREFIX="$R" install 2>&1)
	RC=$?
	expect "make install PREFIX=$R (for verify)" 0
	OUT=$(MANPATH=$R/share/man timeout -k 5 60 systemd-analyze verify "$R/lib/systemd/system/txdirfs@.service" 2>&1)
	RC=$?
	expect "systemd-analyze verify txdirfs@.service: exit 0" 0
	if [ -z "$OUT" ]; then
		ok "systemd-analyze verify has nothing to say (no unknown key, no missing command or page)"
	else
		not_ok "systemd-analyze verify has nothing to say" "$OUT"
	fi
	for want in '^Type=notify$' '^Restart=on-failure$' '^EnvironmentFile=/etc/txdir/%i.conf$' \
		"^ExecStart=$R/bin/txdirfs \\\$\\{STORE\\} %f -f "; do
		if grep -qE -- "$want" "$R/lib/systemd/system/txdirfs@.service"; then
			ok "the unit has $want"
		else
			not_ok "the unit has $want"
		fi
	done
	bad=$(grep -E '^(PrivateTmp|ProtectSystem|ProtectHome|ProtectProc|PrivateDevices|ReadOnlyPaths|InaccessiblePaths|ProtectKernel[A-Za-z]*|ProtectControlGroups|PrivateMounts|TemporaryFileSystem|BindPaths|MountFlags)=' \
		"$UNIT_SRC")
	if [ -z "$bad" ]; then
		ok "no hardening that gives the service its own mount namespace or hides /proc"
	else
		not_ok "no hardening that gives the service its own mount namespace or hides /proc" "$bad"
	fi
	timeout -k 5 120 make -C "$ROOT" -s --no-print-directory INSTALL_AS_BUILT=1 BUILD="$BUILD_DIR" PREFIX="$R" uninstall >/dev/null 2>&1
fi

if ! can_mount || ! command -v python3 >/dev/null; then
	skip "txdirfs readiness notification (NOTIFY_SOCKET)" "no $TXDIRFS, /dev/fuse, fusermount3 or python3"
	finish
	exit
fi

# ---- readiness -------------------------------------------------------------------------
cat >"$T/listen.py" <<'EOF'
# listen.py SOCKET OUT READY_FILE: systemd's side of sd_notify: receive
# datagrams on SOCKET ("@name": abstract), append each to OUT followed by a
# line "--", for at most 60 s.
import os, socket, sys
path, out, ready = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
open(ready, "w").close()
s.settimeout(60)
try:
    while True:
        d = s.recv(4096)
        with open(out, "a") as f:
            f.write(d.decode() + "\n--\n")
except socket.timeout:
    pass
EOF

# wait_for CMD...: polls CMD (a condition) for up to 20 s.
wait_for() {
	local i
	for ((i = 0; i < 2000; i++)); do
		"$@" && return 0
		sleep 0.01
	done
	return 1
}
has_line() { grep -qx -- "$2" "$1" 2>/dev/null; }
answers() { timeout 5 stat "$1/.txdir" >/dev/null 2>&1; }
mounted() { grep -qs " $1 fuse" /proc/self/mounts; }

# serve_notified SOCKET: starts txdirfs -f on $S $M with NOTIFY_SOCKET; sets
# TPID (timeout's), SPID (txdirfs's), NOTES (the datagrams' file).
serve_notified() {
	local sock=$1 i
	NOTES=$T/notes.$RANDOM
	timeout -k 5 90 python3 "$T/listen.py" "$sock" "$NOTES" "$NOTES.ready" &
	LPID=$!
	wait_for test -e "$NOTES.ready"
	MOUNTS+=("$M")
	NOTIFY_SOCKET=$sock timeout -k 5 90 "$TXDIRFS" "$S" "$M" -f >>"$T/txdirfs.log" 2>&1 &
	TPID=$!
	SPID=""
	for ((i = 0; i < 500; i++)); do
		SPID=$(pgrep -P "$TPID" 2>/dev/null | head -n 1)
		[ -n "$SPID" ] && break
		sleep 0.01
	done
	[ -n "$SPID" ] && SERVERS+=("$SPID")
}

S=$T/store
M=$T/mnt
mkdir -p "$M"
"$MOUNTCTL" init "$S" >/dev/null 2>&1
serve_notified "$T/notify"
if wait_for has_line "$NOTES" READY=1; then
	# checked at once: READY=1 must mean the mount already answers
	if answers "$M"; then
		ok "READY=1 is sent, and the mount answers when it is"
	else
		not_ok "READY=1 is sent, and the mount answers when it is"
	fi
else
	not_ok "READY=1 is sent on NOTIFY_SOCKET" "$(cat "$NOTES" 2>/dev/null)"
fi
if has_line "$NOTES" "MAINPID=$SPID"; then
	ok "MAINPID is txdirfs's pid"
else
	not_ok "MAINPID is txdirfs's pid ($SPID)" "$(cat "$NOTES" 2>/dev/null)"
fi
timeout 10 sh -c "echo kept > '$M/f'"
kill -TERM "$SPID" 2>/dev/null
wait "$TPID"
rc=$?
if [ "$rc" -eq 0 ]; then ok "SIGTERM (systemd's stop): txdirfs exits 0"; else not_ok "SIGTERM: txdirfs exits 0" "exit $rc"; fi
if has_line "$NOTES" STOPPING=1; then ok "STOPPING=1 is sent on the way out"; else not_ok "STOPPING=1 is sent on the way out" "$(cat "$NOTES")"; fi
if ! mounted "$M"; then ok "SIGTERM unmounts"; else not_ok "SIGTERM unmounts"; fi
kill "$LPID" 2>/dev/null
wait "$LPID" 2>/dev/null

serve_notified "@txdir-notify-$$-$RANDOM"
if wait_for has_line "$NOTES" READY=1 && answers "$M" &&
	[ "$(timeout 10 cat "$M/f" 2>/dev/null)" = kept ]; then
	ok "an abstract NOTIFY_SOCKET (@name) gets READY=1; the file written before the stop is there"
else
	not_ok "an abstract NOTIFY_SOCKET (@name) gets READY=1" "$(cat "$NOTES" 2>/dev/null)"
fi

# ---- the unit's ExecStartPre on a stale mount point --------------------------------------
if [ -f "$UNIT_SRC" ]; then
	kill -9 "$SPID" 2>/dev/null
	wait "$TPID" 2>/dev/null
	# the unit's first ExecStartPre, %f and $$ as systemd expands them
	pre=$(sed -n 's/^ExecStartPre=-\/bin\/sh -c //p' "$UNIT_SRC" | head -n 1)
	script=$(sed -e "s/^'//" -e "s/' unstale %f$//" -e 's/\$\$/$/g' <<<"$pre")
	# (a stat of a name the kernel has cached still succeeds: only a
	# request, such as opendir, meets the dead connection)
	if mounted "$M" && ! timeout 5 ls -a "$M" >/dev/null 2>&1; then
		timeout -k 5 20 /bin/sh -c "$script" unstale "$M" >/dev/null 2>&1
		if ! mounted "$M"; then
			ok "ExecStartPre detaches the stale mount a killed txdirfs left"
		else
			not_ok "ExecStartPre detaches the stale mount a killed txdirfs left" "script: $script"
		fi
	else
		not_ok "kill -9 of txdirfs leaves a stale mount (the case ExecStartPre is for)" \
			"spid $SPID; $(grep -s " $M " /proc/self/mounts)"
	fi
fi
kill "$LPID" 2>/dev/null
wait "$LPID" 2>/dev/null

finish
