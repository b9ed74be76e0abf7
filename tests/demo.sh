#!/usr/bin/env bash
# tests/demo.sh — a short guided session with txdir (`make demo`).
#
# Shows, as a shell session: a store and a mount, writes and an atomic save
# (write a temp file, rename it over), the read-only metadata xattrs, the
# hidden control tree .txdir, stats and status, then kill -9 of the server
# and a fresh mount that shows the data survived. Uses build/mountctl and
# build/txdirfs (`make all` first). Everything is cleaned up on exit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TXDIR_BUILD:-$ROOT/build}
export PATH="$BUILD:$PATH"
unset TXDIRFS # mountctl then takes the txdirfs next to it

for bin in mountctl txdirfs; do
	if [ ! -x "$BUILD/$bin" ]; then
		echo "demo: $BUILD/$bin is missing; run 'make' first" >&2
		exit 1
	fi
done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/txdir-demo.XXXXXX") || exit 1
SERVER=""
cleanup() {
	cd / || true
	if grep -qs " $DIR/mnt fuse" /proc/self/mounts; then
		timeout 10 fusermount3 -u "$DIR/mnt" 2>/dev/null ||
			timeout 10 fusermount3 -uz "$DIR/mnt" 2>/dev/null
	fi
	[ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR" || exit 1
mkdir mnt

say() { printf '\n# %s\n' "$*"; }
# run CMD: show it like a shell session, run it (bounded); stop on failure.
run() {
	printf '$ %s\n' "$1"
	timeout -k 5 30 bash -c "$1"
	local rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "demo: '$1' failed (exit $rc)" >&2
		exit 1
	fi
}
# run_status CMD: show and run a command whose non-zero exit is the point.
run_status() {
	printf '$ %s\n' "$1"
	timeout -k 5 30 bash -c "$1"
	printf '(exit status %d)\n' "$?"
}

echo "# txdir demo in $DIR"
say "Create a store and mount it."
run "mountctl init store"
out=$(timeout 30 mountctl mount --log "$DIR/txdirfs.log" store mnt 2>&1)
rc=$?
printf '$ mountctl mount store mnt\n%s\n' "$out"
[ "$rc" -eq 0 ] || { echo "demo: mount failed" >&2; exit 1; }
SERVER=$(sed -n 's/.*txdirfs pid \([0-9]*\).*/\1/p' <<<"$out")

say "Ordinary programs read and write; every close(2) is a commit."
run "echo 'hello, txdir' > mnt/greeting"
run "cat mnt/greeting"
run "mkdir -p mnt/app && printf 'port = 8080\n' > mnt/app/config"

say "An atomic save: write a temp file, rename it over. Readers see old or new."
run "printf 'port = 9090\n' > mnt/app/config.tmp && mv mnt/app/config.tmp mnt/app/config"
run "cat mnt/app/config"

say "Read-only metadata, by name only (listxattr does not show them)."
run "getfattr -n user.txdir.version mnt/app/config"
run "getfattr -n user.txdir.checksum mnt/app/config"

say "The control tree .txdir is reachable by name but not listed."
run "ls -a mnt"
run "ls mnt/.txdir"
run "head -n 12 mnt/.txdir/stats"
run "mountctl status mnt"

say "A transaction: many files change atomically and in isolation."
run "mkdir mnt/.txdir/txn/deploy"
run "printf 'port = 7070\\n' > mnt/.txdir/txn/deploy/root/app/config"
run "echo 'new feature' > mnt/.txdir/txn/deploy/root/app/feature"
run "cat mnt/app/config; ls mnt/app        # outside: nothing yet"
run "echo commit > mnt/.txdir/txn/deploy/ctl"
run "cat mnt/.txdir/txn/deploy/status"
run "cat mnt/app/config mnt/app/feature   # both at once"
run "rmdir mnt/.txdir/txn/deploy"

say "Unmodified programs in a transaction: mountctl run (exit 0 commits)."
run "mountctl run mnt -- sh -c 'cd mnt/app && sed -i s/7070/6060/ config && touch done'"
run "cat mnt/app/config; ls mnt/app"
run_status "mountctl run mnt -- sh -c 'rm -f mnt/app/config; exit 3'   # fails: aborted"
run "cat mnt/app/config   # still there"

say "A lease: mkdir grabs it for a process (EEXIST while held); its fencing token only grows."
run "mountctl lease mnt backup -n -- sh -c 'echo \"backup holds the lease, token \$TXDIR_LEASE_TOKEN\"; mountctl lease mnt backup -n -- true || echo \"a second grab fails at once (exit \$?)\"'"
run "sleep 300 & echo \$! > holder; mkdir mnt/.txdir/leases/active/\$(cat holder)/nightly && cat mnt/.txdir/leases/by-name/nightly/token"
run "mkdir mnt/.txdir/leases/active/\$\$/nightly 2>&1 | sed 's/^/  /'; ls mnt/.txdir/leases/active/*"
run "exec 3< mnt/.txdir/leases/by-name/nightly/released; kill -9 \$(cat holder); cat <&3; tail -n 1 mnt/.txdir/events   # released when the holder dies"
run "ls mnt/.txdir/leases/completed"

say "A vote: two-phase commit by writing files. All yes commits; one no would abort."
run "mountctl propose mnt schema-42 --participants w1,w2 --timeout 60"
run "exec 3< mnt/.txdir/consensus/proposals/schema-42/wait; echo yes > mnt/.txdir/consensus/votes/schema-42/w1; echo yes > mnt/.txdir/consensus/votes/schema-42/w2; cat <&3   # wait blocks until decided"
run "cat mnt/.txdir/consensus/decisions/schema-42"
run_status "mountctl vote mnt schema-42 w1 no   # after the decision: refused"

say "A transaction joins a vote: prepared, it commits (or aborts) with the decision."
run "mountctl propose mnt deploy-2 --participants app,ops"
run "mkdir mnt/.txdir/txn/t2 && printf 'port = 5050\\n' > mnt/.txdir/txn/t2/root/app/config && echo 'prepare deploy-2 as app' > mnt/.txdir/txn/t2/ctl && cat mnt/.txdir/txn/t2/status"
run_status "echo oops > mnt/app/config   # its files are locked while in doubt (EBUSY at open)"
run "mountctl vote mnt deploy-2 ops yes && mountctl decision mnt deploy-2 --wait=5 && cat mnt/.txdir/txn/t2/status mnt/app/config"

say "A shared JSON document: atomic replace, a version, compare-and-swap."
run "echo '{\"replicas\": 3}' > mnt/.txdir/state/global_state.json; getfattr -n user.txdir.version mnt/.txdir/state/global_state.json"
run "echo '{\"replicas\": 5}' | mountctl state set mnt --if-version 1 - && mountctl state get mnt --json"
run_status "echo '{\"replicas\": 7}' | mountctl state set mnt --if-version 1 -   # stale: refused"

say "Crash the server: kill -9 txdirfs."
run "kill -9 $SERVER"
run "sleep 0.5"
run_status "mountctl check mnt"

say "Mount again: the stale mount point is cleaned, nothing committed is lost."
out=$(timeout 30 mountctl mount --log "$DIR/txdirfs.log" store mnt 2>&1)
rc=$?
printf '$ mountctl mount store mnt\n%s\n' "$out"
[ "$rc" -eq 0 ] || { echo "demo: mount failed" >&2; exit 1; }
SERVER=$(sed -n 's/.*txdirfs pid \([0-9]*\).*/\1/p' <<<"$out")
run "cat mnt/greeting mnt/app/config mnt/.txdir/consensus/decisions/schema-42; mountctl state get mnt"
run "mountctl check mnt"
run "mountctl umount mnt"
SERVER=""
echo
echo "# demo finished"
