#!/usr/bin/env bash
# tests/cli/usage.sh — mountctl behaviour that needs no mount: help, usage
# errors and their exit codes, init, fsck and inspect usage (the rest:
# fsck.sh, inspect.sh; propose, vote, decision: vote.sh; state: state.sh), and the
# read commands (and run, txn) on a directory that is not mounted.
source "$(dirname "$0")/lib.bash"

mc --help
expect "--help exits 0 and lists the commands" 0 "umount MNT"
mc help mount
expect "help CMD prints that command's help" 0 "usage: mountctl mount STORE MNT"
mc status --help
expect "CMD --help prints that command's help" 0 "usage: mountctl status MNT"
mc
expect "no command: usage, exit 2" 2 "usage: mountctl"
mc frobnicate
expect "unknown command: exit 2" 2 "unknown command 'frobnicate'"
mc status --bogus-option "$T"
expect "unknown option: exit 2" 2 "usage: mountctl status"
mc mount "$T"
expect "mount without MNT: exit 2" 2 "missing STORE or MNT"
mc --version
expect "--version" 0 "^mountctl "

mc init "$T/store"
expect "init creates a store" 0 "initialized empty txdir store"
if [ -n "$(ls -A "$T/store" 2>/dev/null)" ]; then ok "init leaves a non-empty store"; else not_ok "init leaves a non-empty store"; fi
mc init "$T/store"
expect "init twice is refused" 1 "already a txdir store"
mkdir -p "$T/other"
echo keep >"$T/other/file"
mc init "$T/other"
expect "init of a non-empty directory is refused" 1 "not empty"
if [ "$(ls -A "$T/other")" = file ] && [ "$(cat "$T/other/file")" = keep ]; then
	ok "refused init leaves the directory untouched"
else
	not_ok "refused init leaves the directory untouched" "$(ls -A "$T/other")"
fi
mkdir -p "$T/empty"
mc init "$T/empty"
expect "init of an existing empty directory" 0
mc init
expect "init without STORE: exit 2" 2 "missing STORE"

mc fsck "$T" x
expect "fsck with two arguments: usage, exit 16 (e2fsck's)" 16 "too many arguments"
mc inspect "$T" x
expect "inspect with an unknown WHAT: exit 2" 2 "unknown WHAT"

mkdir -p "$T/plain"
mc run "$T/plain" -- true
expect "run on a plain directory: 125 (mountctl's own error)" 125 "^mountctl: run: $T/plain is not a txdir mount"
mc run /tmp -- true
expect "run on /tmp says it is not a txdir mount" 125 "^mountctl: run: /tmp is not a txdir mount"
mc run "$T/plain" true
expect "run without --: 125" 125 "missing -- before CMD"
mc run --help
expect "run --help" 0 "usage: mountctl run MNT"
mc txn list "$T/plain"
expect "txn list of a plain directory: exit 1" 1 "not mounted"
mc txn
expect "txn without a subcommand: exit 2" 2 "missing list or abort"
mc txn abort "$T/plain"
expect "txn abort without NAME: exit 2" 2 "missing NAME"
mc status "$T/plain"
expect "status of a plain directory: exit 1" 1 "not mounted"
mc check "$T/plain"
expect "check of a plain directory: down, exit 2" 2 "^down: "
mc check --json "$T/plain"
expect "check --json reports health" 2 '"health":"down"'
mc sync "$T/plain"
expect "sync of a plain directory is refused" 1 "is not a txdir mount"
mc stats "$T/plain"
expect "stats of a plain directory: exit 1" 1 "is not a txdir mount"
mc umount "$T/plain"
expect "umount of a plain directory: exit 1" 1 "not mounted"
mc status "$T/does-not-exist"
expect "status of a missing path: exit 1" 1 "No such file or directory"

# --json: stdout is one JSON object even when the command fails early
json_error() { # WHAT EXIT ARGS...: stdout parses, says "error" and EXIT
	local what=$1 want=$2 out rc
	shift 2
	out=$(timeout 20 "$MOUNTCTL" "$@" 2>/dev/null)
	rc=$?
	if [ "$rc" -eq "$want" ] && python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
assert d["status"] == "error" and d["exit"] == int(sys.argv[1]) and d["error"], d' "$want" <<<"$out" 2>/dev/null; then
		ok "$what"
	else
		not_ok "$what" "exit $rc, stdout: $out"
	fi
}
json_error "status --json of a plain directory: a JSON error on stdout" 1 status --json "$T/plain"
json_error "scrub --json of a plain directory: a JSON error on stdout" 8 scrub --json "$T/plain"
json_error "fsck --json of a missing store: a JSON error on stdout" 8 fsck --json "$T/does-not-exist"
# every read command: a JSON error object when it fails before its document
for c in "stats 1" "txn_list 1" "lease_list 1" "state_get 1" "top_--once 1" "decision 125"; do
	set -- ${c%% *}
	want=${c##* }
	args=(${1//_/ })
	[ "${args[0]}" = decision ] && extra=(P) || extra=()
	json_error "${args[*]} --json of a plain directory: a JSON error on stdout" "$want" \
		"${args[@]}" "$T/plain" "${extra[@]}" --json
done
mc lease list "$T/plain" bad/name
expect "lease list with a bad NAME: mountctl's own error, 125 (as lease MNT NAME)" 125 "NAME: 1 to 255"
mc lease break "$T/plain" "bad name"
expect "lease break with a bad NAME: 125" 125 "NAME: 1 to 255"
mc fsck "$T/does-not-exist"
expect "fsck of a missing path names it missing" 8 "does-not-exist: No such file or directory"
mc inspect "$T/plain"
expect "inspect of a directory without FORMAT says what is missing" 1 "not a txdir store \(no FORMAT"

finish
