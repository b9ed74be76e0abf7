#!/usr/bin/env bash
# tests/mount/vote.sh — two-phase commit through the mount (SPEC §5
# "Two-phase commit"; issue 11 items 1, 2, 6, 7), on an
# allow_other,default_permissions mount.
#
#   basic         mkdir proposals/P, timeout, payload, participants; the
#                 votes directory and the inbox; all yes commits;
#                 decisions/P and info.json; events and stats.
#   errnos        a different vote EEXIST, the same vote again OK, unknown
#                 participant ENOENT, malformed EINVAL, after the decision
#                 EROFS; participants write-once (same list OK, another
#                 EEXIST), duplicated or empty EINVAL; payload over 1 MiB
#                 EFBIG at close; timeout/payload after opening EROFS; bad
#                 proposal names EINVAL; rmdir of an open proposal EBUSY.
#   pieces        `{ echo alice; echo bob; echo carol; } > participants`
#                 (a write a line) opens the vote with all three; a
#                 list of 500 names written 4 KiB at a time (dd bs=4096)
#                 is cut inside no name, a bad name after the cut fails.
#   never opened  removed after its timeout with nothing else happening;
#                 a blocked reader of its wait gets ENOENT.
#   first no      the first no decides at once: "aborted no from bob".
#   wait          a reader of wait blocks (O_NONBLOCK: EAGAIN; poll: not
#                 ready) and gets the decision when the last vote comes; a
#                 reader interrupted by a signal leaves; a timeout aborts
#                 "timeout missing ...", and the blocked reader gets it.
#   restart       txdirfs SIGKILLed and remounted: a decision is unchanged;
#                 an open proposal keeps its deadline and is aborted by its
#                 timeout after the restart; after a clean unmount (a
#                 checkpoint) decisions, an open proposal and its votes load
#                 back from the checkpoint.
#   nobody        as nobody: its own proposal works; root's participants
#                 EACCES; rmdir of root's proposal refused; votes allowed.
#
# Bounded polls and file barriers synchronise, never sleeps. The last line
# is "N passed, N failed, N skipped". Environment: TXDIRFS, MOUNTCTL,
# TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

OPTS=allow_other,default_permissions

# The errno of writing TEXT to FILE (open O_WRONLY|O_CREAT|O_TRUNC, one
# write, close), as a name; OK on success.
werr() { # file text
	python3 - "$1" "$2" <<'PY'
import errno, os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, sys.argv[2].encode())
    finally:
        os.close(fd)
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
PY
}

# mkdir / rmdir errno names.
derr() { # mkdir|rmdir path
	python3 - "$1" "$2" <<'PY'
import errno, os, sys
try:
    (os.mkdir if sys.argv[1] == "mkdir" else os.rmdir)(sys.argv[2])
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
PY
}

# A non-blocking read of a wait file, and a poll of it: "EAGAIN notready"
# while undecided.
probe_wait() { # file
	python3 - "$1" <<'PY'
import errno, os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    r = os.read(fd, 4096).decode().strip()
except OSError as e:
    r = errno.errorcode.get(e.errno, str(e.errno))
p = select.poll()
p.register(fd, select.POLLIN)
ready = "ready" if p.poll(0) else "notready"
os.close(fd)
print(r, ready)
PY
}

check() { # what got want
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: got '$2', want '$3'"; fi
}

C= # .txdir/consensus of the current mount
propose() { # name participants [timeout]
	mkdir "$C/proposals/$1" || return 1
	[ -z "${3:-}" ] || echo "$3" >"$C/proposals/$1/timeout" || return 1
	echo "$2" >"$C/proposals/$1/participants"
}

# ---- basic --------------------------------------------------------------------
test_basic() {
	propose deploy "alice, bob" 20 || { not_ok "basic: open"; return; }
	check "basic: participants read back" "$(tr '\n' ' ' <"$C/proposals/deploy/participants")" "alice bob "
	check "basic: timeout read back" "$(cat "$C/proposals/deploy/timeout")" "20"
	check "basic: votes/P lists the participants" "$(ls "$C/votes/deploy" | tr '\n' ' ')" "alice bob "
	check "basic: inbox shows it" "$(ls "$TM_MNT/.txdir/dtc/participant_inbox/bob")" "deploy"
	check "basic: no decision yet" "$(ls "$C/decisions")" ""
	check "basic: alice yes" "$(werr "$C/votes/deploy/alice" yes)" OK
	check "basic: alice's vote reads" "$(cat "$C/votes/deploy/alice")" yes
	check "basic: inbox drops a voter" "$(ls "$TM_MNT/.txdir/dtc/participant_inbox/alice")" ""
	check "basic: the inbox lists who has to vote" "$(ls "$TM_MNT/.txdir/dtc/participant_inbox")" "bob"
	check "basic: bob yes" "$(werr "$C/votes/deploy/bob" $'yes\n')" OK
	check "basic: committed" "$(cat "$C/decisions/deploy")" committed
	check "basic: info.json state" \
		"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["state"], d["outcome"], [p["vote"] for p in d["participants"]])' \
			"$C/proposals/deploy/info.json")" "decided committed ['yes', 'yes']"
	grep -q '"type":"decision","proposal":"deploy".*"outcome":"committed"' "$TM_MNT/.txdir/events" &&
		ok "basic: decision event" || not_ok "basic: no decision event"
	grep -q '"type":"proposal_opened","proposal":"deploy"' "$TM_MNT/.txdir/events" &&
		ok "basic: opened event" || not_ok "basic: no opened event"
	grep -q '^txdir_proposals_total{outcome="committed"} 1$' "$TM_MNT/.txdir/stats" &&
		ok "basic: txdir_proposals_total" || not_ok "basic: txdir_proposals_total"
	grep -q '^txdir_vote_duration_seconds_count 1$' "$TM_MNT/.txdir/stats" &&
		ok "basic: txdir_vote_duration_seconds" || not_ok "basic: txdir_vote_duration_seconds"
	# payload: several writes, set at close
	mkdir "$C/proposals/pl"
	head -c 300000 /dev/urandom >"$TM_DIR/pl.bin"
	cp "$TM_DIR/pl.bin" "$C/proposals/pl/payload" && cmp -s "$TM_DIR/pl.bin" "$C/proposals/pl/payload" &&
		ok "basic: a 300 kB payload in several writes" || not_ok "basic: payload differs"
	check "basic: payload acts at fsync and at close" "$(python3 - "$C/proposals/pl/payload" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"abc")
os.fsync(fd)
a = open(sys.argv[1]).read()
os.write(fd, b"def")
os.close(fd)
print(a, open(sys.argv[1]).read())
PY
)" "abc abcdef"
	cp "$TM_DIR/pl.bin" "$C/proposals/pl/payload"
	echo a >"$C/proposals/pl/participants"
	cmp "$TM_DIR/pl.bin" "$TM_MNT/.txdir/dtc/participant_inbox/a/pl" &&
		ok "basic: the inbox entry reads the payload" || not_ok "basic: inbox payload"
}

# ---- errnos -------------------------------------------------------------------
test_errnos() {
	propose e "alice bob carol" || { not_ok "errnos: open"; return; }
	check "errnos: yes" "$(werr "$C/votes/e/alice" yes)" OK
	check "errnos: same vote again" "$(werr "$C/votes/e/alice" yes)" OK
	check "errnos: a different vote EEXIST" "$(werr "$C/votes/e/alice" no)" EEXIST
	check "errnos: unknown participant ENOENT" "$(werr "$C/votes/e/mallory" yes)" ENOENT
	check "errnos: malformed EINVAL" "$(werr "$C/votes/e/bob" maybe)" EINVAL
	check "errnos: unknown proposal ENOENT" "$(werr "$C/votes/nope/alice" yes)" ENOENT
	check "errnos: participants again (same) OK" "$(werr "$C/proposals/e/participants" "carol,bob,alice")" OK
	check "errnos: participants changed EEXIST" "$(werr "$C/proposals/e/participants" "alice")" EEXIST
	check "errnos: timeout after opening EROFS" "$(werr "$C/proposals/e/timeout" 5)" EROFS
	check "errnos: payload after opening EROFS" "$(werr "$C/proposals/e/payload" x)" EROFS
	check "errnos: rmdir of an open proposal EBUSY" "$(derr rmdir "$C/proposals/e")" EBUSY
	check "errnos: carol no" "$(werr "$C/votes/e/carol" no)" OK
	check "errnos: after the decision EROFS" "$(werr "$C/votes/e/bob" yes)" EROFS
	check "errnos: the deciding vote again OK" "$(werr "$C/votes/e/carol" no)" OK
	mkdir "$C/proposals/bad"
	check "errnos: duplicate participants EINVAL" "$(werr "$C/proposals/bad/participants" "a,b,a")" EINVAL
	check "errnos: empty participants EINVAL" "$(werr "$C/proposals/bad/participants" " , ")" EINVAL
	check "errnos: timeout 0 EINVAL" "$(werr "$C/proposals/bad/timeout" 0)" EINVAL
	check "errnos: timeout garbage EINVAL" "$(werr "$C/proposals/bad/timeout" soon)" EINVAL
	head -c $((1024 * 1024 + 1)) /dev/zero >"$TM_DIR/big"
	check "errnos: payload over 1 MiB EFBIG" \
		"$(python3 -c 'import os,sys,errno
try:
    fd=os.open(sys.argv[1],os.O_WRONLY|os.O_TRUNC); os.write(fd,open(sys.argv[2],"rb").read()); os.close(fd); print("OK")
except OSError as e: print(errno.errorcode[e.errno])' "$C/proposals/bad/payload" "$TM_DIR/big")" EFBIG
	check "errnos: a name with a space EINVAL" "$(derr mkdir "$C/proposals/a b")" EINVAL
	check "errnos: mkdir twice EEXIST" "$(derr mkdir "$C/proposals/bad")" EEXIST
	check "errnos: rmdir of a never-opened one" "$(derr rmdir "$C/proposals/bad")" OK
	check "errnos: mkdir in decisions EPERM" "$(derr mkdir "$C/decisions/x")" EPERM
}

# A list written in pieces (one write(2) a line) makes one list (vote.h V15).
test_pieces() {
	mkdir "$C/proposals/pc" || { not_ok "pieces: mkdir"; return; }
	{ echo alice; echo bob; echo carol; } >"$C/proposals/pc/participants"
	local rc=$?
	check "pieces: { echo alice; echo bob; echo carol; } > participants: one list" \
		"$rc $(tr '\n' ' ' <"$C/proposals/pc/participants")" "0 alice bob carol "
	echo yes >"$C/votes/pc/alice"
	check "pieces: alice's yes alone does not decide" "$(ls "$C/decisions" | grep -c '^pc$')" 0
	check "pieces: a later open file may not add (write-once)" \
		"$(werr "$C/proposals/pc/participants" "alice,bob,carol,dave")" EEXIST
	echo yes >"$C/votes/pc/bob" && echo yes >"$C/votes/pc/carol"
	check "pieces: all three yes commit" "$(cat "$C/decisions/pc")" committed
}

# A long list written 4 KiB at a time (stdio, dd) cut inside a name: the
# piece waits for the rest of the name (ctl_vote.h), so no name is cut.
test_pieces_4k() {
	local i list="$TM_DIR/list4k" got
	mkdir "$C/proposals/pk" || { not_ok "pieces 4k: mkdir"; return; }
	for ((i = 0; i < 500; i++)); do printf 'partic%05d\n' "$i"; done >"$list"
	timeout 10 dd if="$list" of="$C/proposals/pk/participants" bs=4096 status=none
	local rc=$?
	got=$(tr ',' '\n' <"$C/proposals/pk/participants")
	check "pieces 4k: dd bs=4096 of 500 names (6,000 bytes, cut at byte 4,096): all, none cut" \
		"$rc $(grep -cx 'partic[0-9]\{5\}' <<<"$got") $(wc -l <<<"$got")" "0 500 500"
	mkdir "$C/proposals/pk2" || { not_ok "pieces 4k: mkdir pk2"; return; }
	# the held piece acts at close: a bad name there is close's error
	{ head -c 4090 "$list"; printf 'x/y\n'; } >"$list.bad"
	check "pieces 4k: a bad name after the cut fails the write that completes it" \
		"$(timeout 10 dd if="$list.bad" of="$C/proposals/pk2/participants" bs=4096 2>&1 |
			grep -o 'Invalid argument' | head -n 1)" "Invalid argument"
}

# A never-opened proposal goes after its timeout, and a reader of its wait
# learns it (ENOENT) rather than waiting for ever (V10).
test_never_opened() {
	mkdir "$C/proposals/stale" && echo 1 >"$C/proposals/stale/timeout" ||
		{ not_ok "never opened: mkdir"; return; }
	local out=$TM_DIR/stale.out pid
	(timeout 30 cat "$C/proposals/stale/wait" >/dev/null 2>&1; echo "rc=$?" >"$out") &
	pid=$!
	BG+=("$pid")
	wait_for 100 test ! -e "$C/proposals/stale" &&
		check "never opened: gone after its 1 s timeout, without other traffic" ok ok ||
		not_ok "never opened: still there: $(ls "$C/proposals")"
	wait "$pid"
	check "never opened: its wait reader ends (ENOENT), not at its own timeout" "$(cat "$out")" rc=1
}

test_first_no() {
	propose n "alice,bob,carol" || { not_ok "first no: open"; return; }
	echo yes >"$C/votes/n/alice"
	echo no >"$C/votes/n/bob"
	check "first no: aborted at once" "$(cat "$C/decisions/n")" "aborted no from bob"
	check "first no: wait prints it" "$(cat "$C/proposals/n/wait")" "aborted no from bob"
}

# ---- wait ----------------------------------------------------------------------------
test_wait() {
	propose w "a,b" 60 || { not_ok "wait: open"; return; }
	check "wait: O_NONBLOCK EAGAIN, poll not ready" "$(probe_wait "$C/proposals/w/wait")" "EAGAIN notready"
	(
		echo >"$TM_DIR/w.started"
		cat "$C/proposals/w/wait" >"$TM_DIR/w.out"
		echo $? >"$TM_DIR/w.rc"
	) &
	local rd=$!
	BG+=("$rd")
	wait_for 100 test -e "$TM_DIR/w.started" || not_ok "wait: reader did not start"
	echo yes >"$C/votes/w/a"
	check "wait: still waiting after one of two votes" "$(cat "$TM_DIR/w.out" 2>/dev/null)" ""
	echo yes >"$C/votes/w/b"
	wait_for 100 test -e "$TM_DIR/w.rc" || not_ok "wait: reader did not finish"
	check "wait: the blocked reader gets the decision" "$(cat "$TM_DIR/w.out")" committed
	check "wait: poll ready after" "$(probe_wait "$C/proposals/w/wait")" "committed ready"

	# interrupted: a reader killed by a signal goes, the mount answers
	propose wi "a" 60
	(exec cat "$C/proposals/wi/wait" >/dev/null) &
	local ci=$!
	BG+=("$ci")
	wait_for 100 grep -q . "/proc/$ci/cmdline" 2>/dev/null
	kill -INT "$ci"
	wait_for 100 all_dead "$ci" && ok "wait: an interrupted reader leaves" ||
		not_ok "wait: reader stuck after SIGINT"
	check "wait: the proposal is still open" "$(ls "$C/decisions" | grep -c '^wi$')" 0

	# timeout: decided by the tick, the blocked reader gets it
	propose t "a,b,c" 1 || { not_ok "timeout: open"; return; }
	echo yes >"$C/votes/t/b"
	check "timeout: wait answers" "$(timeout 30 cat "$C/proposals/t/wait")" "aborted timeout missing a,c"
	check "timeout: decisions/P" "$(cat "$C/decisions/t")" "aborted timeout missing a,c"
	check "timeout: a late vote EROFS" "$(werr "$C/votes/t/a" yes)" EROFS
}

# ---- restart ------------------------------------------------------------------------
test_restart() {
	mount_killable "$OPTS" || { not_ok "restart: mount"; return; }
	C=$TM_MNT/.txdir/consensus
	propose kept "a,b" && echo yes >"$C/votes/kept/a" && echo no >"$C/votes/kept/b"
	propose open "a,b" 3 && echo yes >"$C/votes/open/a"
	local dl
	dl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["deadline"])' "$C/proposals/open/info.json")
	kill_server && detach || { not_ok "restart: kill"; return; }
	start_server "$OPTS" || { not_ok "restart: remount"; return; }
	check "restart: a decision is unchanged" "$(cat "$C/decisions/kept")" "aborted no from b"
	check "restart: the open proposal keeps its deadline" \
		"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["deadline"])' "$C/proposals/open/info.json")" "$dl"
	check "restart: its vote is kept" "$(cat "$C/votes/open/a")" yes
	check "restart: its timeout resumes and aborts" "$(timeout 30 cat "$C/proposals/open/wait")" \
		"aborted timeout missing b"
	kill_server && detach || not_ok "restart: second kill"
	start_server "$OPTS" || { not_ok "restart: second remount"; return; }
	check "restart: the timeout decision survives" "$(cat "$C/decisions/open")" "aborted timeout missing b"
	# a clean unmount writes a checkpoint (its services section holds the
	# votes: svc.h V8) and drops the WAL it covers: all of it loads back
	propose long "a,b" 600 && echo yes >"$C/votes/long/a"
	dl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["deadline"])' "$C/proposals/long/info.json")
	tm_stop >/dev/null || not_ok "restart: clean unmount"
	tm_start "$OPTS" || { not_ok "restart: mount after the checkpoint"; return; }
	check "checkpoint: decisions kept" "$(cat "$C/decisions/kept" "$C/decisions/open" | tr '\n' '|')" \
		"aborted no from b|aborted timeout missing b|"
	check "checkpoint: an open proposal, its deadline and vote kept" \
		"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["state"], d["deadline"], [p["vote"] for p in d["participants"]])' "$C/proposals/long/info.json")" \
		"open $dl ['yes', None]"
	check "checkpoint: it still decides" "$(werr "$C/votes/long/b" yes; cat "$C/decisions/long")" $'OK\ncommitted'
	tm_umount >/dev/null || not_ok "restart: umount"
}

# ---- nobody --------------------------------------------------------------------------
as_nobody() { # shell command
	setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "$1" 2>&1
}

test_nobody() {
	if [ "$(id -u)" -ne 0 ]; then
		skip "vote nobody" "not root"
		return
	fi
	propose rootp "a" 60
	mkdir "$C/proposals/rootc"
	check "nobody: own proposal" "$(as_nobody "mkdir $C/proposals/np && echo x,y > $C/proposals/np/participants && echo yes > $C/votes/np/x && echo no > $C/votes/np/y && cat $C/decisions/np")" \
		"aborted no from y"
	check "nobody: its proposal is nobody's" "$(stat -c %U "$C/proposals/np")" nobody
	check "nobody: root's participants refused" \
		"$(as_nobody "echo a > $C/proposals/rootc/participants || echo refused" | tail -n 1)" refused
	check "nobody: rmdir of root's proposal refused" \
		"$(as_nobody "rmdir $C/proposals/rootc 2>/dev/null || echo refused")" refused
	check "nobody: may vote (one trust domain)" "$(as_nobody "echo yes > $C/votes/rootp/a && cat $C/decisions/rootp")" committed
}

tm_mount "$OPTS" || { not_ok "mount"; tm_summary; exit 1; }
C=$TM_MNT/.txdir/consensus
test_basic
test_errnos
test_pieces
test_pieces_4k
test_never_opened
test_first_no
test_wait
test_nobody
tm_umount >/dev/null || not_ok "umount"
test_restart
tm_summary
