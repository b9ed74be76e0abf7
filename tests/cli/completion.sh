#!/usr/bin/env bash
# tests/cli/completion.sh — mountctl/completion/mountctl.bash (issue 12
# item 6): it parses (bash -n), completes the command list and each
# command's options, yes|no of a vote, txn and state subcommands; with a
# mount: the txdirfs mount point, a held lease's name (lease break, lease
# MNT), a transaction's name (txn abort), and, when the server has
# .txdir/consensus, proposal names and a proposal's participants.
# Completion runs the script's function with COMP_WORDS set, as bash does.
source "$(dirname "$0")/lib.bash"
SCRIPT=$ROOT/mountctl/completion/mountctl.bash

if bash -n "$SCRIPT" 2>"$T/syntax"; then ok "bash -n: the script parses"; else not_ok "bash -n: the script parses" "$(cat "$T/syntax")"; fi
# shellcheck source=/dev/null
if ! source "$SCRIPT" 2>"$T/source" || ! declare -F _mountctl >/dev/null; then
	not_ok "sourcing it defines _mountctl" "$(cat "$T/source")"
	finish
	exit
fi
ok "sourcing it defines _mountctl"
if complete -p mountctl 2>/dev/null | grep -q -- '-F _mountctl'; then ok "complete -F _mountctl mountctl"; else not_ok "complete -F _mountctl mountctl"; fi

# comp WORDS...: completes the last word (may be ""); REPLY: the candidates, one a line.
comp() {
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_mountctl mountctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	REPLY=$(printf '%s\n' "${COMPREPLY[@]}")
}
# has NAME WORD...: the last comp offered every WORD.
has() {
	local name=$1 w
	shift
	for w in "$@"; do
		if ! grep -qxF -- "$w" <<<"$REPLY"; then
			not_ok "$name" "no '$w' in: $(tr '\n' ' ' <<<"$REPLY")"
			return
		fi
	done
	ok "$name"
}
# only NAME WORD...: the last comp offered exactly these WORDs.
only() {
	local name=$1 want
	shift
	want=$(printf '%s\n' "$@" | sort)
	if [ "$(sort <<<"$REPLY")" = "$want" ]; then ok "$name"; else not_ok "$name" "got: $(tr '\n' ' ' <<<"$REPLY")"; fi
}

comp mountctl ""
has "the command list" init mount umount status check sync stats top run lease propose vote decision txn state fsck inspect help
comp mountctl pro
only "a command prefix" propose
comp mountctl st
only "st: state, stats, status" state stats status
comp mountctl --
has "mountctl's own options" --help --version
comp mountctl propose /m P --
has "propose's options" --participants --payload --timeout --help
comp mountctl decision /m P --
has "decision's options" --wait --json
comp mountctl run /m --
has "run's options include --prepare and --as" --read-only --name --retry --prepare --as
comp mountctl lease /m job -
has "lease's options" -n -w -E --ttl
comp mountctl lease list /m --
only "lease list's options" --json --help
comp mountctl state get /m --
only "state get's options" --json --help
comp mountctl state set /m --
only "state set's options" --if-version --help
comp mountctl vote /m P alice ""
only "a vote: yes or no" yes no
comp mountctl txn ""
only "txn: list or abort" list abort
comp mountctl state ""
only "state: get or set" get set
comp mountctl help ""
has "help COMMAND: the commands" propose state
comp mountctl run /m -- ""
if [ -n "$REPLY" ]; then ok "after --: commands"; else not_ok "after --: commands"; fi

if ! can_mount; then
	skip "completion on a mount" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

S=$T/store
M=$T/mnt
mkdir -p "$M"
mc init "$S"
mount_store "$S" "$M"
expect "mount" 0
comp mountctl status ""
has "mount points: the txdirfs mount" "$M"
comp mountctl umount "${M%/*}/m"
has "mount points: by prefix" "$M"

if timeout 10 mkdir "$M/.txdir/leases/active/$$/complease" 2>/dev/null; then
	comp mountctl lease break "$M" ""
	has "lease break MNT: the held lease's name" complease
	comp mountctl lease "$M" comp
	only "lease MNT: lease names by prefix" complease
	timeout 10 rmdir "$M/.txdir/leases/active/$$/complease"
else
	not_ok "grab a lease to complete (mkdir .txdir/leases/active/PID/NAME)"
fi
if timeout 10 mkdir "$M/.txdir/txn/comptxn" 2>/dev/null; then
	comp mountctl txn abort "$M" ""
	has "txn abort MNT: the transaction's name" comptxn
	timeout 10 rmdir "$M/.txdir/txn/comptxn"
else
	not_ok "begin a transaction to complete (mkdir .txdir/txn/NAME)"
fi
if [ -d "$M/.txdir/consensus/proposals" ]; then
	mc propose "$M" compprop --participants alice,bob --timeout 120
	comp mountctl vote "$M" ""
	has "vote MNT: proposal names" compprop
	comp mountctl decision "$M" comp
	has "decision MNT: proposal names by prefix" compprop
	comp mountctl vote "$M" compprop ""
	only "vote MNT P: its participants" alice bob
	comp mountctl run "$M" --prepare ""
	has "run MNT --prepare: proposal names" compprop
else
	skip "completion of proposal names" "this txdirfs has no .txdir/consensus/proposals"
fi

mc umount "$M"
expect "umount" 0
finish
