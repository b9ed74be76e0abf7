#!/usr/bin/env bash
# tests/mount/state.sh — the global state document through the mount (SPEC §5
# "Global state"; issue 11 item 3), on an allow_other,default_permissions
# mount.
#
#   read          a fresh store: "{}" at version 0 (user.txdir.version).
#   replace       printf > global_state.json; a document in many 4 KiB
#                 writes acts once at close; close(2) returns EINVAL for
#                 invalid JSON and the old document stays.
#   update        {"if_version": N, "document": ...}: EBUSY when stale (the
#                 write's error, so `echo > update` reports it), EINVAL for
#                 a missing or non-integer if_version.
#   changed       a blocked `cat changed` (seen waiting in FUSE: the barrier)
#                 answers the new version at the next replace; poll(2) says
#                 readable only then; O_NONBLOCK is EAGAIN.
#   temp          python3 -m json.tool > tmp && mv tmp global_state.json
#                 replaces it (tmp gone); an invalid temp file: rename
#                 fails EINVAL and both stay; rename from outside state/ is
#                 EXDEV, cp from outside replaces; 17 temp files as
#                 nobody: EDQUOT; nobody's mv over the document.
#   nobody        nobody reads, replaces and updates the document.
#   cas8          8 processes increment one counter by compare-and-swap
#                 through update (retrying on EBUSY; half read the version
#                 by path, half by fgetxattr of the file they read): the
#                 final count equals the successful swaps, and the version
#                 moved by as many.
#   cached names  participants' name stays cached; the document's does not
#                 (a node id per version): an open document keeps its bytes
#                 and user.txdir.version across an update.
#   participants  echo alice bob > participants: a replace is a 2PC proposal
#                 state-V; the update's close returns 0 once background
#                 voters (waiting for the proposal to exist: the barrier)
#                 echo yes; a rename over the document returns at once
#                 (version unchanged), a second replace is EBUSY, and the
#                 proposal's wait gives "aborted no from bob" after bob's no
#                 (close of update: ECANCELED); emptied: plain mode again.
#   fenced        update with if_lease: the held token applies; after the
#                 lease moved (released, granted again: a new token) the old
#                 token is ESTALE and nothing applied; with participants,
#                 a lease lost while the vote runs aborts the proposal
#                 (close ESTALE, nothing applied).
#   restart       txdirfs SIGKILLed right after a replace: the remount shows
#                 it, with its version; SIGKILLed with a state proposal
#                 open: pending after the remount, its vote commits it.
#
# Bounded polls synchronise, never sleeps. The last line is
# "N passed, N failed, N skipped". Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

OPTS=allow_other,default_permissions

# A small client: python3 (present wherever the suites run) reports the
# errno of write and close, which the shell drops at close.
WORKD=$(mktemp -d "${TMPDIR:-/tmp}/txdir-state.XXXXXX") || exit 2
TM_DIRS+=("$WORKD") # removed at exit (lib.sh)
chmod 755 "$WORKD"   # nobody runs the client too
PY=$WORKD/client.py
cat >"$PY" <<'EOF'
import errno, json, os, select, sys

def put(path, data, chunk=4096):
    """Write data in chunks, close: OK or the errno name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as e:
        return errno.errorcode[e.errno]
    err = None
    try:
        for i in range(0, len(data), chunk):
            os.write(fd, data[i:i + chunk])
    except OSError as e:
        err = errno.errorcode[e.errno]
    try:
        os.close(fd)
    except OSError as e:
        err = err or errno.errorcode[e.errno]
    return err or "OK"

def version(d):
    return int(os.getxattr(d + "/global_state.json", "user.txdir.version"))

def read_by_path(d):
    # the version first: the document opened after it may be newer, and
    # then the swap is refused (EBUSY), never applied over it
    v = version(d)
    with open(d + "/global_state.json", "rb") as f:
        return v, f.read()

def read_one_fd(d):
    """The version (fgetxattr) and the document through one open file: a
    pair that must belong together (SPEC §3)."""
    fd = os.open(d + "/global_state.json", os.O_RDONLY)
    try:
        return int(os.getxattr(fd, "user.txdir.version")), os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)

def cas_worker(d, n, read):
    """n successful compare-and-swap increments of doc["count"], reading
    the version and document with read; prints the number of EBUSY
    retries."""
    busy = 0
    done = 0
    while done < n:
        v, raw = read(d)
        doc = json.loads(raw)
        doc["count"] = doc.get("count", 0) + 1
        r = put(d + "/update", json.dumps({"if_version": v, "document": doc}).encode())
        if r == "OK":
            done += 1
        elif r == "EBUSY":
            busy += 1
        else:
            print("error", r)
            sys.exit(1)
    print(busy)

def fdpair(d):
    """An open document keeps its version and bytes across an update; the
    path shows the new ones: prints the four."""
    g = d + "/global_state.json"
    fd = os.open(g, os.O_RDONLY)
    v = int(os.getxattr(fd, "user.txdir.version"))
    r = put(d + "/update", json.dumps({"if_version": v, "document": {"mark": v + 1}}).encode())
    print(r, os.getxattr(fd, "user.txdir.version").decode(), os.pread(fd, 100, 0).decode().strip(),
          os.getxattr(g, "user.txdir.version").decode(), open(g).read().strip())
    os.close(fd)

cmd = sys.argv[1]
if cmd == "fdpair":
    fdpair(sys.argv[2])
elif cmd == "casfd":
    cas_worker(sys.argv[2], int(sys.argv[3]), read_one_fd)
elif cmd == "put":
    print(put(sys.argv[2], sys.argv[3].encode()))
elif cmd == "putbig":
    doc = json.dumps({"items": [{"k": i, "v": "x" * 50} for i in range(int(sys.argv[3]))]})
    print(put(sys.argv[2], doc.encode()), len(doc))
elif cmd == "version":
    print(version(sys.argv[2]))
elif cmd == "poll":
    fd = os.open(sys.argv[2], os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.read(fd, 64)
        print("readable")
    except OSError as e:
        print(errno.errorcode[e.errno])
    p = select.poll()
    p.register(fd, select.POLLIN)
    print("ready" if p.poll(0) else "notready")
    sys.stdout.flush()
    sys.stdin.readline()            # the caller replaces, then says go
    ev = p.poll(10000)
    print("ready" if ev else "timeout", os.read(fd, 64).decode().strip())
elif cmd == "putwait":
    # put, but say "opened" once the write returned (the proposal is open)
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, sys.argv[3].encode())
        print("opened")
    except OSError as e:
        print(errno.errorcode[e.errno])
    sys.stdout.flush()
    try:
        os.close(fd)
        print("OK")
    except OSError as e:
        print(errno.errorcode[e.errno])
elif cmd == "putintr":
    # put, then close with a signal due in 1 s: "opened", then the close's
    # result and whether it came within 5 s
    import signal, time
    signal.signal(signal.SIGALRM, lambda s, f: None)
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_TRUNC)
    os.write(fd, sys.argv[3].encode())
    print("opened")
    sys.stdout.flush()
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    t0 = time.monotonic()
    try:
        os.close(fd)
        r = "OK"
    except OSError as e:
        r = errno.errorcode[e.errno]
    print(r, "fast" if time.monotonic() - t0 < 5 else "slow")
elif cmd == "cas":
    cas_worker(sys.argv[2], int(sys.argv[3]), read_by_path)
EOF
chmod 644 "$PY"

py() { timeout 60 python3 "$PY" "$@"; }

as_nobody() { # shell command
	setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "$1" 2>&1
}

# A process, or a child of it (timeout's), blocked in a FUSE request (its
# wchan names the wait).
in_fuse_wait() { # pid
	local w p
	for p in "$1" $(pgrep -P "$1"); do
		w=$(cat "/proc/$p/wchan" 2>/dev/null) || continue
		case $w in *request_wait_answer* | *fuse*) return 0 ;; esac
	done
	return 1
}

test_read() {
	local S=$TM_MNT/.txdir/state
	[ "$(cat "$S/global_state.json")" = "{}" ] && [ "$(py version "$S")" = 0 ] &&
		ok "read: a fresh store holds {} at version 0" ||
		not_ok "read: '$(cat "$S/global_state.json")' version $(py version "$S")"
	[ "$(ls "$S" | tr '\n' ' ')" = "changed global_state.json info.json participants update " ] &&
		ok "read: state/ lists its files" || not_ok "read: ls: $(ls "$S")"
}

# The fixed files of state/ keep their names cached (no LOOKUP at each
# open), their content never; the document is a node id per version (an
# open file keeps its version's bytes and user.txdir.version), so its name
# is looked up at each use and each read is the current document, also
# right after a temp file is renamed over it.
lookups() {
	awk -F' ' '/^txdir_fuse_requests_total\{op="lookup"\}/ { print $2 }' "$TM_MNT/.txdir/stats"
}
test_cached_names() {
	local S=$TM_MNT/.txdir/state a b i
	cat "$S/participants" >/dev/null
	a=$(lookups)
	for ((i = 0; i < 20; i++)); do cat "$S/participants" >/dev/null; done
	b=$(lookups)
	[ -n "$a" ] && [ $((b - a)) -lt 10 ] &&
		ok "cached names: 20 reads of participants cost $((b - a)) lookups" ||
		not_ok "cached names: 20 reads cost $((b - a)) lookups ($a -> $b)"
	local out v
	printf '{"pre": 1}\n' >"$S/global_state.json"
	v=$(py version "$S")
	out=$(py fdpair "$S")
	[ "$out" = "OK $v {\"pre\": 1} $((v + 1)) {\"mark\": $((v + 1))}" ] &&
		ok "versions: an open document keeps its bytes and version across an update; the path shows the new ($out)" ||
		not_ok "versions: fd and path after an update: '$out' (version was $v)"
	printf '{"n": 1}\n' >"$S/global_state.json" && [ "$(cat "$S/global_state.json")" = '{"n": 1}' ] &&
		printf '{"n": 2}\n' >"$S/cn.tmp" && mv "$S/cn.tmp" "$S/global_state.json" &&
		[ "$(cat "$S/global_state.json")" = '{"n": 2}' ] &&
		printf '{"n": 3}\n' >"$S/global_state.json" && [ "$(cat "$S/global_state.json")" = '{"n": 3}' ] &&
		ok "cached names: each read is the current document (write, rename over, write)" ||
		not_ok "cached names: read '$(cat "$S/global_state.json")'"
}

test_replace() {
	local S=$TM_MNT/.txdir/state v out
	printf '{"service": "db", "replicas": 3}\n' >"$S/global_state.json" &&
		[ "$(cat "$S/global_state.json")" = '{"service": "db", "replicas": 3}' ] &&
		[ "$(py version "$S")" = 1 ] &&
		ok "replace: printf > global_state.json, version 1" ||
		not_ok "replace: '$(cat "$S/global_state.json")' version $(py version "$S")"
	out=$(py putbig "$S/global_state.json" 2000)
	v=$(py version "$S")
	[ "${out%% *}" = OK ] && [ "$v" = 2 ] &&
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["items"])==2000' \
			"$S/global_state.json" &&
		ok "replace: a ${out#* }-byte document in 4 KiB writes acts once at close (version $v)" ||
		not_ok "replace: big document: $out, version $v"
	# one write(2) of an update over the limit: the kernel splits it and the
	# writer sees a short count; close must still say EFBIG
	out=$(timeout 60 python3 -c '
import errno, os, sys
doc = ("{\"if_version\": 2, \"document\": \"" + "x" * ((1 << 20) + 10) + "\"}").encode()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
try:
    os.write(fd, doc)
except OSError:
    pass
try:
    os.close(fd); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$S/update")
	[ "$out" = EFBIG ] && [ "$(py version "$S")" = 2 ] &&
		ok "update: one write of a document over 1 MiB: close returns EFBIG, nothing applied" ||
		not_ok "update: over the limit in one write: close $out, version $(py version "$S")"
	out=$(py put "$S/global_state.json" '{"service": ')
	[ "$out" = EINVAL ] && [ "$(py version "$S")" = 2 ] &&
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["items"])==2000' \
			"$S/global_state.json" &&
		ok "replace: invalid JSON: close returns EINVAL, the old document stays" ||
		not_ok "replace: invalid JSON: $out, version $(py version "$S")"
	out=$(py put "$S/global_state.json" '{"a": 1} trailing')
	[ "$out" = EINVAL ] && ok "replace: trailing garbage is EINVAL" || not_ok "replace: trailing: $out"
	grep -q '"type":"state_replace","version":2,' "$TM_MNT/.txdir/events" &&
		grep -q '^txdir_state_version 2$' "$TM_MNT/.txdir/stats" &&
		ok "replace: a state_replace event per replace; txdir_state_version" ||
		not_ok "replace: events/stats: $(grep state_replace "$TM_MNT/.txdir/events" | tail -1)"
}

test_update() {
	local S=$TM_MNT/.txdir/state v out
	v=$(py version "$S")
	out=$(py put "$S/update" "{\"if_version\": $v, \"document\": {\"x\": 1}}")
	[ "$out" = OK ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))=={"x":1}' "$S/global_state.json" &&
		ok "update: if_version $v replaces" || not_ok "update: $out"
	out=$(py put "$S/update" "{\"if_version\": $v, \"document\": {\"x\": 2}}")
	[ "$out" = EBUSY ] && ok "update: a stale if_version is EBUSY" || not_ok "update: stale: $out"
	out=$(echo "{\"if_version\": $v, \"document\": 3}" 2>&1 >"$S/update")
	[[ $out == *"Device or resource busy"* ]] &&
		ok "update: echo > update reports EBUSY at its write" || not_ok "update: echo: '$out'"
	for bad in '{"document": 1}' '{"if_version": "1", "document": 1}' '{"if_version": 1.5, "document": 1}' \
		'{"if_version": 1}'; do
		out=$(py put "$S/update" "$bad")
		[ "$out" = EINVAL ] || { not_ok "update: '$bad': $out"; return; }
	done
	ok "update: missing or non-integer if_version, missing document: EINVAL"
}

test_changed() {
	local S=$TM_MNT/.txdir/state out pid v fifo wfd
	out=$WORKD/changed.out
	timeout 60 cat "$S/changed" >"$out" &
	pid=$!
	BG+=("$pid")
	wait_for 100 in_fuse_wait "$pid" || { not_ok "changed: the reader never blocked"; return; }
	[ ! -s "$out" ] && kill -0 "$pid" && ok "changed: a read blocks while the version stays" ||
		not_ok "changed: answered early: $(cat "$out")"
	printf '[1]' >"$S/global_state.json"
	v=$(py version "$S")
	wait_for 100 all_dead "$pid" && [ "$(cat "$out")" = "$v" ] &&
		ok "changed: the replace answers it with version $v" ||
		not_ok "changed: '$(cat "$out")', want $v"
	fifo=$WORKD/poll.fifo
	mkfifo "$fifo"
	exec {wfd}<>"$fifo"
	out=$WORKD/poll.out
	py poll "$S/changed" <&"$wfd" >"$out" &
	pid=$!
	BG+=("$pid")
	wait_for 100 grep -q ready "$out"
	printf '[2]' >"$S/global_state.json"
	echo go >&"$wfd"
	wait_for 100 all_dead "$pid"
	[ "$(tr '\n' ' ' <"$out")" = "EAGAIN notready ready $((v + 1)) " ] &&
		ok "changed: O_NONBLOCK EAGAIN; poll readable only after the replace" ||
		not_ok "changed: poll: $(tr '\n' ' ' <"$out")"
	exec {wfd}>&-
}

test_temp() {
	local S=$TM_MNT/.txdir/state v out
	printf '{"a": 1}' >"$S/global_state.json"
	v=$(py version "$S")
	python3 -m json.tool "$S/global_state.json" >"$S/tmp.json" &&
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["via"]="mv"; json.dump(d, open(sys.argv[1],"w"))' \
			"$S/tmp.json" && mv "$S/tmp.json" "$S/global_state.json" &&
		[ ! -e "$S/tmp.json" ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["via"]=="mv"' "$S/global_state.json" &&
		ok "temp: json.tool > tmp && mv tmp global_state.json replaces it (version $((v + 1)))" ||
		not_ok "temp: mv over: $(ls "$S" | tr '\n' ' '), version $(py version "$S")"
	printf '{"broken": ' >"$S/bad.tmp"
	out=$(python3 -c 'import os,sys,errno
try:
    os.rename(sys.argv[1], sys.argv[2]); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$S/bad.tmp" "$S/global_state.json")
	[ "$out" = EINVAL ] && [ -e "$S/bad.tmp" ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		ok "temp: rename of an invalid temp file fails EINVAL; the document and the temp file stay" ||
		not_ok "temp: invalid rename: '$out', version $(py version "$S")"
	rm -f "$S/bad.tmp" && [ ! -e "$S/bad.tmp" ] && ok "temp: rm of a temp file" || not_ok "temp: rm"
	printf '{"from": "outside"}' >"$TM_MNT/outside.json"
	out=$(python3 -c 'import os,sys,errno
try:
    os.rename(sys.argv[1], sys.argv[2]); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$TM_MNT/outside.json" "$S/global_state.json")
	[ "$out" = EXDEV ] && ok "temp: rename(2) into state/ from outside is EXDEV" || not_ok "temp: rename: $out"
	cp "$TM_MNT/outside.json" "$S/global_state.json" &&
		[ "$(cat "$S/global_state.json")" = '{"from": "outside"}' ] &&
		ok "temp: cp from outside replaces the document" ||
		not_ok "temp: cp from outside: $(cat "$S/global_state.json")"
	if command -v setpriv >/dev/null; then
		out=$(as_nobody "for i in \$(seq 1 17); do : > $S/n\$i.tmp || exit; done")
		[[ $out == *"quota exceeded"* ]] && [ -e "$S/n16.tmp" ] && [ ! -e "$S/n17.tmp" ] &&
			ok "temp: the 17th temp file of a uid is EDQUOT" || not_ok "temp: quota: '$out'"
		out=$(as_nobody "printf '[65534]' > $S/n1.tmp && mv $S/n1.tmp $S/global_state.json && cat $S/global_state.json")
		[ "$out" = '[65534]' ] && ok "temp: nobody's mv over the document" || not_ok "temp: nobody mv: $out"
		rm -f "$S"/n*.tmp
	fi
}

test_nobody() {
	local S=$TM_MNT/.txdir/state out v
	out=$(as_nobody "printf '{\"by\": \"nobody\"}' > $S/global_state.json && cat $S/global_state.json")
	[ "$out" = '{"by": "nobody"}' ] && ok "nobody: replaces and reads the document" ||
		not_ok "nobody: $out"
	v=$(py version "$S")
	out=$(as_nobody "python3 $PY put $S/update '{\"if_version\": $v, \"document\": 7}'")
	[ "$out" = OK ] && [ "$(cat "$S/global_state.json")" = 7 ] && ok "nobody: update" ||
		not_ok "nobody: update: $out"
	grep -q "\"type\":\"state_replace\",\"version\":$((v + 1)),\"pid\":[0-9]*,\"uid\":65534" \
		"$TM_MNT/.txdir/events" && ok "nobody: the event names uid 65534" ||
		not_ok "nobody: event: $(grep state_replace "$TM_MNT/.txdir/events" | tail -1)"
}

test_cas8() {
	local S=$TM_MNT/.txdir/state v0 v1 pids=() busy=0 n=25 p out count rc=0
	printf '{"count": 0}' >"$S/global_state.json"
	v0=$(py version "$S")
	out=$WORKD/cas
	mkdir -p "$out"
	for p in 1 2 3 4 5 6 7 8; do # half read the version by path, half through the open file
		timeout 120 python3 "$PY" "$( ((p % 2)) && echo cas || echo casfd)" "$S" "$n" >"$out/$p" 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	for p in 1 2 3 4 5 6 7 8; do busy=$((busy + $(cat "$out/$p" 2>/dev/null || echo 0))); done
	count=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["count"])' "$S/global_state.json")
	v1=$(py version "$S")
	[ "$rc" = 0 ] && [ "$count" = $((8 * n)) ] && [ "$v1" = $((v0 + 8 * n)) ] &&
		ok "cas8: 8 processes x $n swaps: count $count, version +$((v1 - v0)), $busy EBUSY retries" ||
		not_ok "cas8: rc $rc count $count (want $((8 * n))), version $v0 -> $v1: $(cat "$out"/*)"
}

# A voter: waits (bounded) for the proposal's vote file, then votes.
voter() { # proposal name ballot
	local f=$TM_MNT/.txdir/consensus/votes/$1/$2
	wait_for 300 test -e "$f" && echo "$3" >"$f"
}

test_participants() {
	local S=$TM_MNT/.txdir/state C=$TM_MNT/.txdir/consensus v out pid P w1 w2 wout
	{ echo alice; echo bob; } >"$S/participants" && [ "$(cat "$S/participants")" = alice,bob ] &&
		ok "participants: { echo alice; echo bob; } > participants: both, read back normalised" ||
		{ not_ok "participants: pieces: '$(cat "$S/participants")'"; return; }
	echo alice bob >"$S/participants" && [ "$(cat "$S/participants")" = alice,bob ] &&
		ok "participants: written, read back normalised" ||
		{ not_ok "participants: '$(cat "$S/participants")'"; return; }
	v=$(py version "$S")
	P=state-$((v + 1))
	out=$WORKD/pw.out
	voter "$P" alice yes & w1=$!
	voter "$P" bob yes & w2=$!
	BG+=("$w1" "$w2")
	py putwait "$S/update" "{\"if_version\": $v, \"document\": {\"agreed\": true}}" >"$out" &
	pid=$!
	BG+=("$pid")
	wait "$w1" && wait "$w2" && wait "$pid"
	[ "$(tr '\n' ' ' <"$out")" = "opened OK " ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))=={"agreed":True}' "$S/global_state.json" &&
		[ "$(cat "$C/decisions/$P")" = committed ] &&
		ok "participants: update's close returns 0 after two background yes votes ($P)" ||
		{ not_ok "participants: update: $(tr '\n' ' ' <"$out") version $(py version "$S")"; return; }
	# a rename opens the proposal and returns at once
	v=$((v + 1))
	P=state-$((v + 1))
	printf '{"renamed": 1}' >"$S/r.tmp" && timeout 10 mv "$S/r.tmp" "$S/global_state.json" &&
		[ ! -e "$S/r.tmp" ] && [ "$(py version "$S")" = "$v" ] && [ -d "$C/proposals/$P" ] &&
		ok "participants: mv over the document returns at once, nothing visible yet" ||
		{ not_ok "participants: rename: version $(py version "$S")"; return; }
	wout=$WORKD/wait.out
	timeout 60 cat "$C/proposals/$P/wait" >"$wout" &
	pid=$!
	BG+=("$pid")
	out=$(py put "$S/global_state.json" '[2]')
	[ "$out" = EBUSY ] && [ "$(py put "$S/update" "{\"if_version\": $v, \"document\": 3}")" = EBUSY ] &&
		ok "participants: a second replace meanwhile is EBUSY at once" ||
		not_ok "participants: second replace: $out"
	echo yes >"$C/votes/$P/alice" && echo no >"$C/votes/$P/bob" && wait "$pid"
	[ "$(cat "$wout")" = "aborted no from bob" ] && [ "$(py version "$S")" = "$v" ] &&
		python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))=={"agreed":True}' "$S/global_state.json" &&
		ok "participants: wait gives the outcome (aborted no from bob); the document stays" ||
		not_ok "participants: wait: '$(cat "$wout")' version $(py version "$S")"
	# an aborted update: close is ECANCELED (the retry's name: state-V.2)
	out=$WORKD/pw2.out
	voter "$P.2" bob no & w1=$!
	BG+=("$w1")
	py putwait "$S/update" "{\"if_version\": $v, \"document\": 4}" >"$out" &
	pid=$!
	BG+=("$pid")
	wait "$w1" && wait "$pid"
	[ "$(tr '\n' ' ' <"$out")" = "opened ECANCELED " ] && [ "$(py version "$S")" = "$v" ] &&
		ok "participants: update's close returns ECANCELED when a participant votes no" ||
		not_ok "participants: aborted update: $(tr '\n' ' ' <"$out")"
	# the close waits without a FUSE worker, and a signal interrupts it
	# (EINTR); the proposal goes on and its votes still decide it
	out=$(py putintr "$S/update" "{\"if_version\": $v, \"document\": 5}" | tr '\n' ' ')
	P=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["proposal"] or "")' "$S/info.json")
	[ "$out" = "opened EINTR fast " ] && [ -n "$P" ] &&
		ok "participants: a signal interrupts update's close at once (EINTR), $P still open" ||
		not_ok "participants: interrupted close: '$out', proposal '$P'"
	if [ -n "$P" ]; then
		echo yes >"$C/votes/$P/alice" && echo yes >"$C/votes/$P/bob"
		wait_for 50 test "$(py version "$S")" = $((v + 1)) &&
			[ "$(cat "$S/global_state.json")" = 5 ] &&
			ok "participants: the interrupted update still commits by its votes" ||
			not_ok "participants: after the interrupt: version $(py version "$S")"
		v=$((v + 1))
	fi
	: >"$S/participants" && [ -z "$(cat "$S/participants")" ] &&
		[ "$(py put "$S/global_state.json" '{"plain": 1}')" = OK ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		ok "participants: emptied, a replace acts at once again" ||
		not_ok "participants: plain mode: version $(py version "$S")"
}

test_fenced() {
	local S=$TM_MNT/.txdir/state A=$TM_MNT/.txdir/leases/active/$$ v tok cur out
	mkdir "$A/job" && tok=$(cat "$A/job/token") || { not_ok "fenced: grab"; return; }
	v=$(py version "$S")
	out=$(py put "$S/update" "{\"if_version\": $v, \"if_lease\": {\"name\": \"job\", \"token\": $tok}, \"document\": [\"held\"]}")
	[ "$out" = OK ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		ok "fenced: an update with the held lease's token applies" ||
		not_ok "fenced: held: $out"
	v=$((v + 1))
	# a malformed lease name is EINVAL (SPEC §6), never ESTALE ("lost it")
	local bad got=""
	for bad in 'a b' 'a/b' '..' 'a\tb'; do
		got+="$(py put "$S/update" "{\"if_version\": $v, \"if_lease\": {\"name\": \"$bad\", \"token\": 5}, \"document\": 1}") "
	done
	[ "$got" = "EINVAL EINVAL EINVAL EINVAL " ] && [ "$(py version "$S")" = "$v" ] &&
		ok "fenced: a malformed if_lease name (space, /, .., tab) is EINVAL, nothing applied" ||
		not_ok "fenced: malformed names: $got"
	rmdir "$A/job" && mkdir "$A/job" && cur=$(cat "$A/job/token") || { not_ok "fenced: regrab"; return; }
	out=$(py put "$S/update" "{\"if_version\": $v, \"if_lease\": {\"name\": \"job\", \"token\": $tok}, \"document\": [\"old\"]}")
	[ "$out" = ESTALE ] && [ "$(py version "$S")" = "$v" ] && [ "$cur" -gt "$tok" ] &&
		ok "fenced: after the lease moved (token $tok -> $cur) the old token is ESTALE, nothing applied" ||
		not_ok "fenced: moved: $out version $(py version "$S")"
	# participants mode: the lease moves while the vote runs; the commit
	# point checks the fence again (vote.h V14)
	local C=$TM_MNT/.txdir/consensus P=state-$((v + 1)) pid new
	echo alice bob >"$S/participants" || { not_ok "fenced 2pc: participants"; rmdir "$A/job"; return; }
	out=$WORKD/fence2pc.out
	py putwait "$S/update" "{\"if_version\": $v, \"if_lease\": {\"name\": \"job\", \"token\": $cur}, \"document\": [\"late\"]}" >"$out" &
	pid=$!
	BG+=("$pid")
	voter "$P" alice yes && rmdir "$A/job" && mkdir "$A/job" && new=$(cat "$A/job/token") &&
		echo yes >"$C/votes/$P/bob" && wait "$pid"
	[ "$(tr '\n' ' ' <"$out")" = "opened ESTALE " ] && [ "$(py version "$S")" = "$v" ] &&
		[ "$(cat "$C/decisions/$P")" = "aborted lease job not held with token $cur" ] &&
		python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["fence"]; assert f=={"lease":"job","token":int(sys.argv[2])}, f' \
			"$C/proposals/$P/info.json" "$cur" &&
		ok "fenced 2pc: the lease moved during the vote ($cur -> $new): both yes, yet aborted, close ESTALE, nothing applied" ||
		not_ok "fenced 2pc: '$(tr '\n' ' ' <"$out")' decision '$(cat "$C/decisions/$P")' version $(py version "$S")"
	: >"$S/participants"
	rmdir "$A/job"
}

test_restart() {
	local S v
	mount_killable "$OPTS" || { not_ok "restart: mount"; return; }
	S=$TM_MNT/.txdir/state
	printf '{"gen": 1}' >"$S/global_state.json" && printf '{"gen": 2}\n' >"$S/global_state.json" ||
		{ not_ok "restart: replace"; return; }
	v=$(py version "$S")
	printf '{}' >"$S/left.tmp"
	kill_server && detach || { not_ok "restart: kill server"; return; }
	start_server "$OPTS" || { not_ok "restart: remount"; return; }
	[ "$(cat "$S/global_state.json")" = '{"gen": 2}' ] && [ "$(py version "$S")" = "$v" ] &&
		[ ! -e "$S/left.tmp" ] &&
		ok "restart: SIGKILL after a replace keeps it (version $v); temp files are gone" ||
		not_ok "restart: '$(cat "$S/global_state.json")' version $(py version "$S"), want $v"
	# a state proposal open when the server dies: still open after the
	# remount (its payload is the pending document), the vote commits it
	local P=state-$((v + 1)) C=$TM_MNT/.txdir/consensus
	echo alice >"$S/participants" && printf '{"gen": "2pc"}' >"$S/p.tmp" && mv "$S/p.tmp" "$S/global_state.json" &&
		[ -d "$C/proposals/$P" ] || { not_ok "restart: open $P"; tm_umount >/dev/null; return; }
	kill_server && detach || { not_ok "restart: kill server (2pc)"; return; }
	start_server "$OPTS" || { not_ok "restart: remount (2pc)"; return; }
	grep -q "\"proposal\":.*\"$P\"" "$S/info.json" && [ "$(py version "$S")" = "$v" ] &&
		[ "$(py put "$S/global_state.json" '[]')" = EBUSY ] &&
		ok "restart: a state proposal open at SIGKILL is pending after the remount ($P)" ||
		not_ok "restart: pending after remount: $(tr -d '\n' <"$S/info.json")"
	echo yes >"$C/votes/$P/alice" &&
		[ "$(cat "$S/global_state.json")" = '{"gen": "2pc"}' ] && [ "$(py version "$S")" = $((v + 1)) ] &&
		ok "restart: its vote after the remount commits the pending document" ||
		not_ok "restart: after the vote: '$(cat "$S/global_state.json")' version $(py version "$S")"
	tm_umount >/dev/null || not_ok "restart: unmount"
}

tm_mount "$OPTS" || { echo "not ok - mount"; echo "0 passed, 1 failed"; exit 1; }
test_read
test_replace
test_update
test_changed
test_temp
if command -v setpriv >/dev/null; then
	test_nobody
else
	skip "state nobody" "no setpriv"
fi
test_cas8
test_participants
test_fenced
test_cached_names
tm_umount >/dev/null || not_ok "unmount"
test_restart
tm_summary
