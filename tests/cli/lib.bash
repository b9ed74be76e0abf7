# tests/cli/lib.bash — sourced by tests/cli/*.sh (not a test itself).
#
# Environment: MOUNTCTL, TXDIRFS (default: build/mountctl, build/txdirfs).
# mountctl honours $TXDIRFS, so the server under test is the one started.
# Every test process runs under timeout; teardown unmounts (fusermount3 -u,
# then -uz), kills servers we started and removes the scratch directory.
# A check that cannot run here (not root, no FUSE) is skipped, not passed:
# skip WHAT REASON prints "# SKIP WHAT: REASON" (tests/check.sh collects
# those lines). The last line a script prints is "N passed, N failed,
# N skipped".

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOUNTCTL=${MOUNTCTL:-$ROOT/build/mountctl}
TXDIRFS=${TXDIRFS:-$ROOT/build/txdirfs}
export TXDIRFS

T=$(mktemp -d "${TMPDIR:-/tmp}/txdir-cli.XXXXXX") || exit 1
PASS=0
FAIL=0
SKIPPED=0
MOUNTS=()
SERVERS=()
OUT=""
RC=0

teardown() {
	local m p
	for m in "${MOUNTS[@]}"; do
		if grep -qs " $m fuse" /proc/self/mounts; then
			timeout 10 fusermount3 -u "$m" 2>/dev/null ||
				timeout 10 fusermount3 -uz "$m" 2>/dev/null
		fi
	done
	for p in "${SERVERS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$T"
}
trap teardown EXIT

ok() {
	PASS=$((PASS + 1))
	echo "ok - $1"
}

not_ok() {
	FAIL=$((FAIL + 1))
	echo "not ok - $1"
	[ -n "${2:-}" ] && printf '#   %s\n' "$2"
	return 0
}

# skip WHAT REASON: one check (or group of checks) not run here.
skip() {
	SKIPPED=$((SKIPPED + 1))
	echo "# SKIP $1: $2"
}

# mc ARGS...: runs mountctl under a timeout; output in $OUT, status in $RC.
mc() {
	OUT=$(timeout -k 5 "${MC_TIMEOUT:-40}" "$MOUNTCTL" "$@" 2>&1)
	RC=$?
	return 0
}

# expect NAME WANT_RC [GREP_PATTERN]: checks the last mc call.
expect() {
	local name=$1 want=$2 pat=${3:-}
	if [ "$RC" -ne "$want" ]; then
		not_ok "$name" "exit $RC, want $want; output: $OUT"
	elif [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$OUT"; then
		not_ok "$name" "output does not match /$pat/: $OUT"
	else
		ok "$name"
	fi
}

# check NAME COMMAND...: passes when COMMAND succeeds (under a timeout).
check() {
	local name=$1
	shift
	if timeout -k 5 30 "$@" >/dev/null 2>&1; then
		ok "$name"
	else
		not_ok "$name" "failed: $*"
	fi
}

# mount_store STORE MNT [ARGS...]: mountctl mount, remembering what to tear
# down; the server's log goes to $T/txdirfs.log.
mount_store() {
	local mnt
	mnt=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
	MOUNTS+=("$mnt")
	mc mount --log "$T/txdirfs.log" "$@"
	local pid
	pid=$(sed -n 's/.*txdirfs pid \([0-9]*\).*/\1/p' <<<"$OUT" | tail -n 1)
	[ -n "$pid" ] && SERVERS+=("$pid")
	SERVER_PID=$pid
	return 0
}

# can_mount: whether mount tests can run here at all.
can_mount() {
	[ -x "$TXDIRFS" ] && [ -e /dev/fuse ] && command -v fusermount3 >/dev/null
}

finish() {
	echo "$PASS passed, $FAIL failed, $SKIPPED skipped"
	[ "$FAIL" -eq 0 ]
}
