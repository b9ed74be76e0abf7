#!/usr/bin/env bash
# tests/cli/vote.sh — `mountctl propose`, `vote`, `decision` and `run
# --prepare` (SPEC §2, §4 "prepare", §5 "Two-phase commit"):
#   usage and mountctl's own errors (125) with no mount; on a txdirfs
#   without .txdir/consensus, one line naming what is missing (125);
#   with it: propose (0, 1 when P exists), votes (0, the same again 0,
#   another 1 "already voted differently", unknown participant or
#   proposal 1, after the decision 1 "already decided: ..."), decision
#   (0 committed, 1 aborted with the reason, 2 not decided, --wait=S
#   timing out 2, --wait answering a reader blocked before the last vote,
#   --json), the timeout aborting "timeout missing b", the payload, and
#   run --prepare: 0 committed (the change appears only then), 76 when P
#   aborts (the change never appears), CMD failing votes no, no proposal
#   is refused before CMD runs; and all of it as nobody on an
#   allow_other,default_permissions mount.
#
# Tests that need the server's two-phase commit skip (with a reason) on a
# txdirfs without .txdir/consensus/proposals. Barrier files and polls with
# a bound synchronise, never sleeps; every process runs under timeout.
source "$(dirname "$0")/lib.bash"

# ---- usage and own errors: no mount needed ------------------------------------
mkdir -p "$T/plain"
mc propose "$T/plain" P
expect "propose without --participants: 125" 125 "missing --participants"
mc propose "$T/plain" P --participants a,b,a
expect "propose with a participant twice: 125" 125 "a is listed twice"
mc propose "$T/plain" P --participants a,,b
expect "propose with an empty participant: 125" 125 "an empty name"
mc propose "$T/plain" P --participants 'a,b c'
expect "propose with whitespace in a participant: 125" 125 "'b c' is not a name"
mc propose "$T/plain" 'P x' --participants a
expect "propose with whitespace in P: 125" 125 "P: 1 to 255 bytes"
mc propose "$T/plain" P --participants a --timeout 0
expect "propose --timeout 0: 125" 125 "--timeout: seconds, more than 0"
mc propose "$T/plain" P --participants a --bogus
expect "propose with an unknown option: 125" 125 "unknown option"
head -c $((1024 * 1024 + 1)) /dev/zero >"$T/big"
mc propose "$T/plain" P --participants a --payload "$T/big"
expect "propose with a payload over 1 MiB: 125, nothing sent" 125 "larger than 1 MiB"
mc propose "$T/plain" P --participants a --payload "$T/missing"
expect "propose with a missing payload file: 125" 125 "No such file"
mc propose "$T/plain" P --participants a,b
expect "propose on a plain directory: 125" 125 "^mountctl: propose: $T/plain is not a txdir mount"
mc vote "$T/plain" P a maybe
expect "vote other than yes|no: 125" 125 "the vote is yes or no"
mc vote "$T/plain" P a
expect "vote without the vote: 125" 125 "usage: mountctl vote"
mc vote "$T/plain" P 'a b' yes
expect "vote as a name with whitespace: 125" 125 "P and NAME"
mc vote "$T/plain" P a yes
expect "vote on a plain directory: 125" 125 "is not a txdir mount"
mc decision "$T/plain" P --wait=soon
expect "decision --wait=soon: 125" 125 "--wait=S: a number of seconds"
mc decision "$T/plain"
expect "decision without P: 125" 125 "missing MNT or P"
mc decision "$T/plain" P extra
expect "decision with too many arguments: 125" 125 "too many arguments"
mc decision "$T/plain" P
expect "decision on a plain directory: 125 (not 1 or 2)" 125 "is not a txdir mount"
mc decision --help
expect "decision --help" 0 "usage: mountctl decision MNT P"
mc help propose
expect "help propose" 0 "usage: mountctl propose MNT P --participants"
mc run "$T/plain" --prepare P -- true
expect "run --prepare without --as: 125" 125 "go together"
mc run "$T/plain" --prepare P --as a --read-only -- true
expect "run --prepare --read-only: 125" 125 "exclude each other"
mc run "$T/plain" --prepare P --as a --retry 2 -- true
expect "run --prepare --retry: 125" 125 "no --retry"
mc run "$T/plain" --prepare 'P x' --as a -- true
expect "run --prepare with whitespace in P: 125" 125 "--prepare: 1 to 255 bytes"

if ! can_mount; then
	skip "cli vote (mount checks)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

chmod 755 "$T" # nobody reaches the mount through $T
S=$T/store
M=$T/mnt
B=$T/barriers
C=$M/.txdir/consensus
mkdir -p "$M" "$B"
chmod 777 "$B"
mc init "$S"
mount_store "$S" "$M" -o allow_other,default_permissions
expect "mount with allow_other,default_permissions" 0

if [ ! -d "$C/proposals" ]; then
	mc propose "$M" P --participants a,b
	expect "propose without server support: 125, says what is missing" 125 \
		"has no .txdir/consensus/proposals \(no two-phase commit support\)"
	mc vote "$M" P a yes
	expect "vote without server support: 125" 125 "no two-phase commit support"
	mc decision "$M" P
	expect "decision without server support: 125" 125 "no two-phase commit support"
	rm -f "$B/ran"
	mc run "$M" --prepare P --as a -- touch "$B/ran"
	expect "run --prepare without server support: 125" 125 "no two-phase commit support"
	if [ -e "$B/ran" ]; then not_ok "run --prepare refused before CMD ran"; else ok "run --prepare refused before CMD ran"; fi
	skip "cli vote (propose, vote, decision, run --prepare on a mount)" \
		"this txdirfs has no .txdir/consensus/proposals"
	mc umount "$M"
	expect "umount" 0
	finish
	exit
fi

# until_true TENTHS CMD...: polls CMD every 10 ms for at most TENTHS/10 s.
until_true() {
	local i n=$(($1 * 10))
	shift
	for ((i = 0; i < n; i++)); do
		"$@" 2>/dev/null && return 0
		sleep 0.01
	done
	return 1
}
status_is() { # NAME WORD: the transaction's status starts with WORD
	local s
	s=$(timeout 5 cat "$M/.txdir/txn/$1/status" 2>/dev/null)
	[[ $s == "$2"* ]]
}

# ---- propose, vote, decision --------------------------------------------------
mc propose "$M" p1 --participants a,b --timeout 120
expect "propose: 0" 0
if [ -d "$C/proposals/p1" ]; then ok "propose made proposals/p1"; else not_ok "propose made proposals/p1"; fi
mc propose "$M" p1 --participants a,b
expect "propose of an existing proposal: 1" 1 "proposal p1 already exists"
mc decision "$M" p1
expect "decision of an open proposal: 2" 2 "^p1: not decided yet$"
mc decision "$M" p1 --wait=0.3
expect "decision --wait=0.3 of an open proposal: 2, timed out" 2 "not decided yet \(wait timed out\)"
mc decision "$M" p1 --json
if [ "$RC" = 2 ] && python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["outcome"]=="open" and d["decided"] is False' <<<"$OUT"; then
	ok "decision --json of an open proposal: outcome open, 2"
else
	not_ok "decision --json of an open proposal: outcome open, 2" "exit $RC: $OUT"
fi
mc vote "$M" p1 a yes
expect "vote yes: 0" 0
mc vote "$M" p1 a yes
expect "the same vote again: 0" 0
mc vote "$M" p1 a no
expect "a different vote: 1, already voted differently" 1 "a already voted differently on p1"
mc vote "$M" p1 zed yes
expect "vote as a non-participant: 1" 1 "zed is not a participant of p1"
mc vote "$M" nope a yes
expect "vote on a missing proposal: 1" 1 "no proposal nope"
mc decision "$M" nope
expect "decision of a missing proposal: 125" 125 "no proposal nope"
# a reader blocked in --wait before the last vote gets the decision
timeout -k 5 60 "$MOUNTCTL" decision "$M" p1 --wait >"$T/wait.out" 2>&1 &
WPID=$!
mc vote "$M" p1 b yes
expect "the last yes: 0" 0
wait "$WPID"
wrc=$?
if [ "$wrc" = 0 ] && [ "$(cat "$T/wait.out")" = committed ]; then
	ok "decision --wait answers committed, 0"
else
	not_ok "decision --wait answers committed, 0" "exit $wrc: $(cat "$T/wait.out")"
fi
mc decision "$M" p1
expect "decision of a committed proposal: 0" 0 "^committed$"

mc propose "$M" p2 --participants a,b
mc vote "$M" p2 a no
expect "vote no: 0" 0
mc decision "$M" p2
expect "the first no aborts at once: 1" 1 "^aborted no from a$"
mc vote "$M" p2 b yes
expect "a vote after the decision: 1, already decided" 1 "p2 is already decided: aborted no from a"
mc decision "$M" p2 --json
if [ "$RC" = 1 ] && python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["outcome"]=="aborted" and d["reason"]=="no from a" and d["proposal"]=="p2"' <<<"$OUT"; then
	ok "decision --json of an aborted proposal: outcome, reason, 1"
else
	not_ok "decision --json of an aborted proposal: outcome, reason, 1" "exit $RC: $OUT"
fi

mc propose "$M" p3 --participants a,b --timeout 0.5
mc vote "$M" p3 a yes
mc decision "$M" p3 --wait=30
expect "the timeout aborts: 1, timeout missing b" 1 "^aborted timeout missing b$"

printf 'line one\nline two\n' >"$T/payload"
mc propose "$M" p4 --participants a --payload "$T/payload"
expect "propose with a payload: 0" 0
if cmp -s "$T/payload" "$C/proposals/p4/payload"; then ok "the payload is proposals/p4/payload"; else not_ok "the payload is proposals/p4/payload"; fi
OUT=$(printf 'from stdin\n' | timeout 10 "$MOUNTCTL" propose "$M" p5 --participants a --payload - 2>&1)
RC=$?
expect "propose --payload - reads standard input: 0" 0
if [ "$(cat "$C/proposals/p5/payload" 2>/dev/null)" = "from stdin" ]; then ok "the payload from standard input"; else not_ok "the payload from standard input"; fi

# ---- run --prepare -------------------------------------------------------------
# prepared, then committed by the other participant's yes
rm -f "$B"/*
mc propose "$M" d1 --participants w1,v --timeout 120
timeout -k 5 60 "$MOUNTCTL" run "$M" --name t1 --prepare d1 --as w1 -- sh -c "echo new > '$M/deployed'" \
	>"$T/r1.out" 2>&1 &
RPID=$!
if until_true 300 status_is t1 "prepared d1"; then
	ok "run --prepare: the transaction is prepared d1"
else
	not_ok "run --prepare: the transaction is prepared d1" "$(timeout 5 cat "$M/.txdir/txn/t1/status" 2>&1)"
fi
mc txn list "$M"
expect "txn list shows it prepared" 0 "prepared d1"
mc txn abort "$M" t1
expect "txn abort of a prepared transaction: 1, only the decision ends it" 1 "t1 is prepared d1"
if [ ! -e "$M/deployed" ]; then ok "a prepared change is not visible before the decision"; else not_ok "a prepared change is not visible before the decision"; fi
mc vote "$M" d1 v yes
wait "$RPID"
rrc=$?
if [ "$rrc" = 0 ] && [ "$(cat "$M/deployed" 2>/dev/null)" = new ]; then
	ok "run --prepare: committed by the decision, exit 0, the change is there"
else
	not_ok "run --prepare: committed by the decision, exit 0, the change is there" "exit $rrc: $(cat "$T/r1.out")"
fi

# aborted by the other participant's no: 76, nothing changes
mc propose "$M" d2 --participants w1,v --timeout 120
timeout -k 5 60 "$MOUNTCTL" run "$M" --name t2 --prepare d2 --as w1 -- sh -c "echo newer > '$M/deployed'" \
	>"$T/r2.out" 2>&1 &
RPID=$!
until_true 300 status_is t2 "prepared d2"
mc vote "$M" d2 v no
wait "$RPID"
rrc=$?
OUT=$(cat "$T/r2.out")
RC=$rrc
expect "run --prepare when P aborts: 76, says why" 76 "aborted: d2 was aborted: no from v"
if [ "$(cat "$M/deployed" 2>/dev/null)" = new ]; then ok "the aborted change never appears"; else not_ok "the aborted change never appears" "$(cat "$M/deployed" 2>&1)"; fi

# CMD fails: run votes no as w1, P aborts at once
mc propose "$M" d3 --participants w1,v --timeout 120
mc run "$M" --prepare d3 --as w1 -- sh -c 'exit 3'
expect "run --prepare with CMD failing: CMD's code, voted no" 3 "voted no as w1 on d3"
mc decision "$M" d3
expect "CMD failing aborted P: no from w1" 1 "^aborted no from w1$"

# CMD changed nothing (an rsync with nothing to do): it still votes yes, so
# the other participant's yes commits
mc propose "$M" d4 --participants w1,v --timeout 120
timeout -k 5 60 "$MOUNTCTL" run "$M" --name t4 --prepare d4 --as w1 -- true >"$T/r4.out" 2>&1 &
RPID=$!
if until_true 300 status_is t4 "prepared d4"; then
	ok "run --prepare of a CMD that changed nothing: prepared d4, its yes cast"
else
	not_ok "run --prepare of a CMD that changed nothing: prepared d4" "$(timeout 5 cat "$M/.txdir/txn/t4/status" 2>&1; cat "$T/r4.out")"
fi
mc vote "$M" d4 v yes
wait "$RPID"
RC=$?
OUT=$(cat "$T/r4.out")
expect "run --prepare of a CMD that changed nothing: exit 0 once committed" 0
mc decision "$M" d4
expect "the decision: committed (w1's yes counted)" 0 "^committed$"

mc run "$M" --prepare nope --as w1 -- touch "$B/ran"
expect "run --prepare of a missing proposal: 125" 125 "no proposal nope"
if [ -e "$B/ran" ]; then not_ok "CMD did not run"; else ok "CMD did not run"; fi

# ---- as nobody -------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	asuser() {
		OUT=$(timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups "$@" 2>&1)
		RC=$?
	}
	mkdir -p "$M/pub"
	chmod 1777 "$M/pub"
	asuser "$MOUNTCTL" propose "$M" n1 --participants x,y --timeout 120
	expect "nobody: propose: 0" 0
	asuser "$MOUNTCTL" vote "$M" n1 x yes
	expect "nobody: vote yes: 0" 0
	asuser "$MOUNTCTL" vote "$M" n1 x no
	expect "nobody: a different vote: 1" 1 "already voted differently"
	asuser "$MOUNTCTL" decision "$M" n1
	expect "nobody: decision of an open proposal: 2" 2 "not decided yet"
	mc vote "$M" n1 y yes
	expect "root votes on nobody's proposal: 0" 0
	asuser "$MOUNTCTL" decision "$M" n1 --wait=10
	expect "nobody: decision: committed, 0" 0 "^committed$"
	asuser "$MOUNTCTL" propose "$M" n2 --participants x,y --timeout 120
	# from /: run re-enters its working directory as nobody, and the
	# checkout may sit in a directory only root can enter (mktemp -d)
	(cd / && exec timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$MOUNTCTL" run "$M" --name nt --prepare n2 --as x -- sh -c "echo nobody > '$M/pub/nfile'" \
		>"$T/n.out" 2>&1) &
	NPID=$!
	until_true 300 status_is nt "prepared n2"
	mc vote "$M" n2 y no
	wait "$NPID"
	nrc=$?
	if [ "$nrc" = 76 ] && [ ! -e "$M/pub/nfile" ]; then
		ok "nobody: run --prepare aborted by the decision: 76, nothing applied"
	else
		not_ok "nobody: run --prepare aborted by the decision: 76, nothing applied" "exit $nrc: $(cat "$T/n.out")"
	fi
else
	skip "vote as nobody" "needs root and setpriv"
fi

# run --prepare on a proposal decided before it prepared (probe C3)
mc propose "$M" gone1 --participants w1,w2 --timeout 30
mc vote "$M" gone1 w2 no
mc run "$M" --prepare gone1 --as w1 -- sh -c "echo x > '$M/gone1.f'"
expect "run --prepare after P was aborted: 76, says why" 76 "aborted: gone1 was aborted: no from w2"
[ ! -e "$M/gone1.f" ] && ok "run --prepare after P was aborted: nothing applied" ||
	not_ok "run --prepare after P was aborted: nothing applied"
mc propose "$M" gone2 --participants w1,w2 --timeout 30
mc vote "$M" gone2 w1 yes
mc vote "$M" gone2 w2 yes
mc run "$M" --prepare gone2 --as w1 -- true
expect "run --prepare after P committed without it: 125, names the decision" 125 \
	"already decided \(committed, without this run\)"
mc propose "$M" gone3 --participants w1,w2 --timeout 30
mc vote "$M" gone3 w2 no
mc run "$M" --prepare gone3 --as w1 -- sh -c "exit 3"
expect "a failed CMD on an aborted P: CMD's code, the decision named" 3 \
	"gone3 is already decided: aborted no from w2"
# a prepare refused busy (a main-tree writer holds the path) votes no, so P
# aborts now, not at its timeout (probe C7)
mc propose "$M" busy1 --participants w1,w2 --timeout 120
echo base >"$M/held.f"
exec 7>>"$M/held.f"
mc run "$M" --prepare busy1 --as w1 -- sh -c "echo w1 > '$M/held.f'"
exec 7>&-
expect "run --prepare meeting a busy path: 75, voted no" 75 "busy reason=main-tree-writer .*voted no as w1 on busy1"
[ "$(cat "$M/.txdir/consensus/decisions/busy1" 2>/dev/null)" = "aborted no from w1" ] &&
	ok "its no decided P at once" ||
	not_ok "its no decided P at once" "$(cat "$M/.txdir/consensus/decisions/busy1" 2>&1)"
# one transaction per participant (dtc.h): a second --as w1 is refused
mc propose "$M" twice --participants w1,w2 --timeout 30
mkdir "$M/.txdir/txn/tw1" && echo a >"$M/.txdir/txn/tw1/root/tw1.f" &&
	echo "prepare twice as w1" >"$M/.txdir/txn/tw1/ctl"
mc run "$M" --prepare twice --as w1 -- true
expect "run --prepare as a participant another transaction prepared as: 125" 125 \
	"w1 has voted already on twice"
mc vote "$M" twice w2 no
rmdir "$M/.txdir/txn/tw1" 2>/dev/null

mc umount "$M"
expect "umount" 0
finish
