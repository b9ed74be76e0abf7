# tests/mount/lib.sh — mount/unmount harness for syscall tests (sourced).
#
#   tm_mount [OPTS]   fresh temp dir with STORE (mountctl init), MNT and a
#                     native dir; starts `timeout $TM_SERVER_BOUND $TXDIRFS STORE MNT -f
#                     -o OPTS` and returns once the mount answers. Sets TM_DIR,
#                     TM_STORE, TM_MNT, TM_NATIVE, TM_PID, TM_LOG.
#   tm_umount         fusermount3 -u (or -uz), waits for the server, removes
#                     the temp dir; returns the server's exit status (non-zero
#                     also when it had to be killed).
#   tm_stop           the same but keeps TM_DIR (store and all) for a restart.
#   tm_start [OPTS]   a new foreground server on the existing TM_STORE/TM_MNT.
#   tm_is_mounted P   whether P is in /proc/self/mounts (mountpoint(1) stats P,
#                     which fails with ENOTCONN on a dead FUSE mount).
#
#   ok WHAT / not_ok WHAT / skip WHAT REASON   count one check (passed,
#                     failed, skipped: a skip prints "# SKIP WHAT: REASON",
#                     which tests/check.sh collects)
#   tm_summary        the last line, "N passed, N failed, N skipped"; its
#                     status is non-zero if anything failed
#   BG+=(PID)         a background process to SIGKILL at exit
#
# Every temp dir is removed by the EXIT trap even if a test script dies.
# Readiness is polled with a bounded loop; nothing sleeps to synchronise.
# Environment: TXDIRFS, MOUNTCTL (absolute paths), TXDIR_BUILD (for the
# mkstore helper when mountctl is not built).

: "${TXDIRFS:?TXDIRFS must name the txdirfs binary}"
TM_DIRS=()
BG=() # background pids to SIGKILL at exit

# ---- counting ----------------------------------------------------------------
passed=0
failed=0
skipped=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
skip() { skipped=$((skipped + 1)); echo "# SKIP $1: $2"; } # WHAT REASON
tm_summary() {
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# A holder process that lives until killed (BG: SIGKILLed at exit); its pid
# in HOLDER.
tm_start_holder() {
	sleep 600 &
	HOLDER=$!
	disown "$HOLDER" # no job notice when it is killed
	BG+=("$HOLDER")
}

# Every server is bounded, so a wedged one never outlives the suite; one
# mount serves a whole phase (nsdiff: 240 seeds), which on a loaded 2-core
# machine, under ASan, can take several minutes.
TM_SERVER_BOUND=${TM_SERVER_BOUND:-900}

tm_cleanup_all() {
	local d p
	for p in "${BG[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
	[ -n "${TM_MNT:-}" ] && tm_umount >/dev/null 2>&1
	for d in "${TM_DIRS[@]}"; do
		if tm_is_mounted "$d/mnt"; then
			fusermount3 -u "$d/mnt" 2>/dev/null || fusermount3 -uz "$d/mnt" 2>/dev/null
		fi
		rm -rf --one-file-system "$d"
	done
}
trap tm_cleanup_all EXIT

# /proc/self/mounts escapes space, tab, newline and backslash as octal.
tm_is_mounted() { # PATH
	local p=$1
	p=${p//\\/\\134}
	p=${p// /\\040}
	p=${p//$'\t'/\\011}
	p=${p//$'\n'/\\012}
	awk -v m="$p" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts
}

tm_init_store() { # STORE
	if [ -n "${MOUNTCTL:-}" ] && [ -x "$MOUNTCTL" ]; then
		"$MOUNTCTL" init "$1"
	elif [ -x "${TXDIR_BUILD:-}/tests/mount/mkstore" ]; then
		"$TXDIR_BUILD/tests/mount/mkstore" "$1"
	else
		echo "lib.sh: neither \$MOUNTCTL nor \$TXDIR_BUILD/tests/mount/mkstore" >&2
		return 1
	fi
}

# Polls (bounded, 20 s) until MNT is a mount point that answers stat.
tm_wait_mounted() { # MNT PID
	local i
	for ((i = 0; i < 400; i++)); do
		if tm_is_mounted "$1" && timeout 10 stat "$1" >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

tm_mount() { # [OPTS]
	local opts=${1:-}
	TM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/txdir-mt.XXXXXX") || return 1
	TM_DIRS+=("$TM_DIR")
	chmod 755 "$TM_DIR" # non-root tests must reach MNT and the native dir
	TM_STORE=$TM_DIR/store
	TM_MNT=$TM_DIR/mnt
	TM_NATIVE=$TM_DIR/native
	TM_LOG=$TM_DIR/server.log
	mkdir "$TM_MNT" "$TM_NATIVE" || return 1
	tm_init_store "$TM_STORE" >"$TM_DIR/init.log" 2>&1 || {
		cat "$TM_DIR/init.log"
		return 1
	}
	tm_start "$opts"
}

tm_start() { # [OPTS]
	local opts=${1:-}
	timeout "$TM_SERVER_BOUND" "$TXDIRFS" "$TM_STORE" "$TM_MNT" -f ${opts:+-o "$opts"} \
		</dev/null >>"$TM_LOG" 2>&1 &
	TM_PID=$!
	if ! tm_wait_mounted "$TM_MNT" "$TM_PID"; then
		echo "# txdirfs did not mount; its log:"
		sed 's/^/#   /' "$TM_LOG"
		return 1
	fi
}

tm_umount() {
	local rc=0
	[ -n "${TM_MNT:-}" ] || return 0
	tm_stop || rc=$?
	rm -rf --one-file-system "$TM_DIR"
	TM_MNT= TM_PID=
	return "$rc"
}

tm_stop() {
	local rc=0 i
	[ -n "${TM_MNT:-}" ] || return 0
	if tm_is_mounted "$TM_MNT"; then
		fusermount3 -u "$TM_MNT" 2>/dev/null || {
			echo "# mount busy, lazy unmount"
			fusermount3 -uz "$TM_MNT" 2>/dev/null
			rc=1
		}
	fi
	if [ -n "${TM_PID:-}" ]; then
		for ((i = 0; i < 600; i++)); do # 30 s for a clean exit (ASan, loaded)
			kill -0 "$TM_PID" 2>/dev/null || break
			sleep 0.05
		done
		kill -0 "$TM_PID" 2>/dev/null && {
			echo "# txdirfs still running after unmount: killed"
			kill "$TM_PID" 2>/dev/null
			rc=1
		}
		wait "$TM_PID" 2>/dev/null || rc=$?
	fi
	[ "$rc" -eq 124 ] && echo "# txdirfs was killed by its ${TM_SERVER_BOUND}s bound (TM_SERVER_BOUND)"
	if [ "$rc" -ne 0 ] && [ -s "$TM_LOG" ]; then
		echo "# txdirfs exit status $rc; its log:"
		tail -n 50 "$TM_LOG" | sed 's/^/#   /'
	fi
	TM_PID=
	return "$rc"
}

# ---- killing and restarting the server (crash tests) -------------------------
# Polls (bounded: $1 tenths of a second) until the command succeeds.
wait_for() { # tenths cmd...
	local n=$1 i
	shift
	for ((i = 0; i < n * 2; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

all_dead() { # pid...
	local p
	for p; do
		kill -0 "$p" 2>/dev/null && return 1
	done
	return 0
}

# The txdirfs process under TM_PID (subshell -> timeout -> txdirfs).
server_pid() {
	local t
	for t in $(pgrep -P "$TM_PID"); do
		pgrep -P "$t" -x txdirfs
	done | head -n 1
}

# SIGKILL the server and wait (bounded) until it is gone.
kill_server() {
	local spid
	spid=$(server_pid)
	if [ -z "$spid" ]; then
		echo "# no txdirfs process under $TM_PID"
		return 1
	fi
	kill -KILL "$spid"
	wait_for 100 all_dead "$spid" || {
		echo "# txdirfs $spid survived SIGKILL"
		return 1
	}
}

# Starts txdirfs on the existing TM_STORE at TM_MNT; registered like tm_mount.
# The subshell exits normally with timeout's status and its own stderr (where
# it reports the "Killed" timeout) is /dev/null: no job noise on SIGKILL.
start_server() { # [opts]
	(timeout "$TM_SERVER_BOUND" "$TXDIRFS" "$TM_STORE" "$TM_MNT" -f ${1:+-o "$1"} </dev/null >>"$TM_LOG" 2>&1
		exit $?) 2>/dev/null &
	TM_PID=$!
	tm_wait_mounted "$TM_MNT" "$TM_PID"
}

# tm_mount (fresh store), then the same store under start_server.
mount_killable() { # [opts]
	tm_mount "$1" || return 1
	fusermount3 -u "$TM_MNT" && wait "$TM_PID" || {
		echo "# first server did not stop cleanly"
		return 1
	}
	start_server "$1"
}

# Detaches the dead mount of a killed server and reaps its wrapper.
detach() {
	if tm_is_mounted "$TM_MNT"; then
		fusermount3 -u "$TM_MNT" 2>/dev/null || fusermount3 -uz "$TM_MNT" 2>/dev/null
	fi
	wait "$TM_PID" 2>/dev/null
	! tm_is_mounted "$TM_MNT"
}
