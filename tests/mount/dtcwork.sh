#!/usr/bin/env bash
# tests/mount/dtcwork.sh — a 3-participant deploy across real processes
# (issue 11 "Cross-process suites"; SPEC §1 "All or none across workers",
# §4 "prepare", §5 "Two-phase commit").
#
# Two trees, app1/ and app2/, each with a version file and a log of the
# rounds that reached it. Each round R opens proposal DR among w1, w2 and v:
#   w1  `mountctl run MNT --prepare DR --as w1 --name w1-R -- sh -c ...`:
#       a process writing app1/version and appending R to app1/log in its
#       own transaction (the view bind-mounted over MNT);
#   w2  another process doing the same to app2/ with raw writes: mkdir
#       .txdir/txn/w2-R, its files under root/, then
#       `echo "prepare DR as w2" > ctl`;
#   v   a plain voter: `echo yes|no > votes/DR/v`, or never (the round's
#       timeout is then 4 s).
# v votes only once both transactions are prepared (status "prepared DR").
# Kill rounds: with both prepared (in doubt), the server is SIGKILLed and
# remounted: both must still be prepared, then v votes; or v votes first
# and the server is killed right after the vote returns (the decision is
# durable, the resolutions may not be). Either way both resolve as the
# decision says.
# Checks, each round and after the fact (a final remount): the decision
# follows the plan (committed; "aborted no from v"; "aborted timeout
# missing v"); both transactions end the same way as the decision; app1/log
# and app2/log list exactly the committed rounds, and both versions are the
# last committed round — all or none of the trees change.
#
# Bounded polls synchronise, never sleeps. Last line "N passed, N failed,
# N skipped". Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD; DW_ROUNDS
# (default 12), DW_SEED.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

OPTS=allow_other,default_permissions
ROUNDS=${DW_ROUNDS:-12}
SEED=${DW_SEED:-$RANDOM}
RANDOM=$SEED
echo "# dtcwork: $ROUNDS rounds, seed $SEED"

mount_killable "$OPTS" || { not_ok "dtcwork: mount"; tm_summary; exit 1; }
if [ ! -d "$TM_MNT/.txdir/consensus/proposals" ]; then
	skip "dtcwork" "no .txdir/consensus (the vote service) in this build"
	tm_umount >/dev/null
	tm_summary
	exit 0
fi
C=$TM_MNT/.txdir/consensus
T=$TM_MNT/.txdir/txn
W=$TM_DIR/work
mkdir -p "$W" "$TM_MNT/app1" "$TM_MNT/app2"
echo 0 >"$TM_MNT/app1/version"
echo 0 >"$TM_MNT/app2/version"
: >"$TM_MNT/app1/log"
: >"$TM_MNT/app2/log"

# Does `mountctl run` work here (a private mount namespace needs root or a
# user namespace)? Otherwise w1 writes raw too.
RUN_OK=1
timeout 30 "$MOUNTCTL" run "$TM_MNT" --name probe -- true >/dev/null 2>&1 || RUN_OK=0
[ "$RUN_OK" = 1 ] || echo "# mountctl run unavailable here: w1 uses raw ctl writes"

status_is() { # name want: the status line of .txdir/txn/NAME starts with WANT
	local s
	s=$(cat "$T/$1/status" 2>/dev/null) && [[ $s == "$2"* ]]
}
# By id: dtc/transactions/ID outlives the rmdir (mountctl run's, at its end).
txid() { # name
	grep -o '"txid":[0-9]*' "$T/$1/info.json" 2>/dev/null | cut -d: -f2
}
rec_status() { # id
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' \
		"$TM_MNT/.txdir/dtc/transactions/$1" 2>&1
}
resolved() { # id: committed or aborted
	grep -q '"state":"\(committed\|aborted\)"' "$TM_MNT/.txdir/dtc/transactions/$1" 2>/dev/null
}

# w2's part (also w1's without mountctl run): a process of its own.
raw_participant() { # name app round proposal as
	mkdir "$T/$1" && echo "$3" >"$T/$1/root/$2/version" && echo "$3" >>"$T/$1/root/$2/log" &&
		echo "prepare $4 as $5" >"$T/$1/ctl"
}

committed=() # the rounds whose decision is committed
w1pid=
round() { # r plan kill
	local r=$1 plan=$2 kill=$3 P=D$1 want got w2rc
	echo "# round $r: $plan${kill:+, kill $kill} ($(date +%T.%N | cut -c1-12))"
	mkdir "$C/proposals/$P" || { not_ok "round $r: mkdir proposal"; return; }
	[ "$plan" != never ] || echo 4 >"$C/proposals/$P/timeout"
	echo "w1,w2,v" >"$C/proposals/$P/participants" || { not_ok "round $r: participants"; return; }
	if [ "$RUN_OK" = 1 ]; then
		timeout 120 "$MOUNTCTL" run "$TM_MNT" --prepare "$P" --as w1 --name "w1-$r" -- \
			sh -c 'echo "$1" >"$2/app1/version" && echo "$1" >>"$2/app1/log"' sh "$r" "$TM_MNT" \
			>"$W/w1-$r.out" 2>&1 &
	else
		(raw_participant "w1-$r" app1 "$r" "$P" w1) >"$W/w1-$r.out" 2>&1 &
	fi
	w1pid=$!
	(raw_participant "w2-$r" app2 "$r" "$P" w2) >"$W/w2-$r.out" 2>&1
	w2rc=$?
	[ "$w2rc" = 0 ] || { not_ok "round $r: w2's prepare failed: $(cat "$W/w2-$r.out")"; }
	wait_for 300 status_is "w1-$r" "prepared $P" ||
		{ not_ok "round $r: w1 not prepared: $(cat "$T/w1-$r/status" 2>&1) $(cat "$W/w1-$r.out")"; }
	status_is "w2-$r" "prepared $P" || not_ok "round $r: w2 not prepared: $(cat "$T/w2-$r/status" 2>&1)"
	local id1 id2
	id1=$(txid "w1-$r")
	id2=$(txid "w2-$r")
	if [ "$kill" = before ]; then # both in doubt, no decision yet
		kill_server && detach && start_server "$OPTS" || { not_ok "round $r: restart"; return; }
		status_is "w1-$r" "prepared $P" && status_is "w2-$r" "prepared $P" &&
			[ "$(cat "$TM_MNT/app1/version")" = "$(cat "$TM_MNT/app2/version")" ] &&
			ok "round $r: both still prepared (in doubt) after a SIGKILL, nothing applied" ||
			not_ok "round $r: after the restart: $(cat "$T/w1-$r/status" "$T/w2-$r/status" 2>&1)"
	fi
	case $plan in
	yes | no) echo "$plan" >"$C/votes/$P/v" || not_ok "round $r: v's vote" ;;
	esac
	if [ "$kill" = after ]; then # decided (durable); the resolutions may be lost
		kill_server && detach && start_server "$OPTS" || { not_ok "round $r: restart"; return; }
	fi
	case $plan in
	yes) want=committed ;;
	no) want="aborted no from v" ;;
	never) want="aborted timeout missing v" ;;
	esac
	got=$(timeout 30 cat "$C/proposals/$P/wait" 2>&1)
	[ "$got" = "$want" ] && [ "$(cat "$C/decisions/$P")" = "$want" ] ||
		not_ok "round $r: decision \"$got\", want \"$want\""
	wait_for 300 resolved "$id1" && wait_for 300 resolved "$id2" ||
		not_ok "round $r: not resolved: $(rec_status "$id1") $(rec_status "$id2")"
	local s1 s2
	s1=$(rec_status "$id1")
	s2=$(rec_status "$id2")
	if [ "$plan" = yes ]; then
		[[ $s1 == committed* && $s2 == committed* ]] && committed+=("$r") &&
			[ "$(cat "$TM_MNT/app1/version")" = "$r" ] && [ "$(cat "$TM_MNT/app2/version")" = "$r" ] &&
			ok "round $r ($plan${kill:+, kill $kill}): both committed, both trees at $r" ||
			not_ok "round $r: want both committed: \"$s1\" \"$s2\""
	else
		[[ $s1 == "aborted decision proposal=$P reason=${want#aborted }"* &&
			$s2 == "aborted decision proposal=$P reason=${want#aborted }"* ]] &&
			[ "$(cat "$TM_MNT/app1/version")" != "$r" ] && [ "$(cat "$TM_MNT/app2/version")" != "$r" ] &&
			ok "round $r ($plan${kill:+, kill $kill}): both aborted, neither tree changed" ||
			not_ok "round $r: want both aborted: \"$s1\" \"$s2\" versions $(cat "$TM_MNT/app1/version" "$TM_MNT/app2/version" 2>&1)"
	fi
	# w1's mountctl: after a kill it may have lost the server; bounded anyway
	wait_for 600 all_dead "$w1pid" || { kill -KILL "$w1pid" 2>/dev/null; not_ok "round $r: w1 hangs"; }
	wait "$w1pid" 2>/dev/null
	local rc=$?
	if [ "$RUN_OK" = 1 ] && [ -z "$kill" ]; then
		[ "$rc" = "$([ "$plan" = yes ] && echo 0 || echo 76)" ] ||
			not_ok "round $r: mountctl run --prepare exit $rc: $(cat "$W/w1-$r.out")"
	fi
	rmdir "$T/w1-$r" "$T/w2-$r" 2>/dev/null
}

# The after-the-fact invariants: both logs list exactly the committed
# rounds, both versions are the last one.
invariants() { # label
	local want last
	want=$(printf '%s\n' "${committed[@]}")
	last=${committed[${#committed[@]}-1]:-0}
	[ "$(grep -v '^$' "$TM_MNT/app1/log")" = "$want" ] && [ "$(grep -v '^$' "$TM_MNT/app2/log")" = "$want" ] &&
		[ "$(cat "$TM_MNT/app1/version")" = "$last" ] && [ "$(cat "$TM_MNT/app2/version")" = "$last" ] &&
		ok "$1: app1 and app2 hold exactly the ${#committed[@]} committed rounds, both at $last" ||
		not_ok "$1: app1 log $(tr '\n' ' ' <"$TM_MNT/app1/log"), app2 log $(tr '\n' ' ' <"$TM_MNT/app2/log"), committed ${committed[*]}"
}

plans=(yes no never)
for ((r = 1; r <= ROUNDS; r++)); do
	plan=${plans[RANDOM % 3]}
	kill=
	# every fourth round kills the server: in doubt, or just decided
	if ((r % 4 == 0)); then kill=$([ $((r / 4 % 2)) = 1 ] && echo before || echo after); fi
	[ "$kill" = after ] && [ "$plan" = never ] && plan=yes # a vote to kill after
	[ "$kill" = before ] && [ "$plan" = never ] && plan=no # no deadline while down
	[ $r = 1 ] && plan=yes
	[ $r = 2 ] && plan=no
	round "$r" "$plan" "$kill"
done
invariants "after $ROUNDS rounds"
kill_server && detach && start_server "$OPTS" || not_ok "final restart"
invariants "after a final SIGKILL and remount"
n=$(ls "$C/decisions" | wc -l)
[ "$n" = "$ROUNDS" ] && ok "every round's decision is kept ($n)" || not_ok "decisions: $n of $ROUNDS"
tm_umount >/dev/null || not_ok "unmount"
tm_summary
