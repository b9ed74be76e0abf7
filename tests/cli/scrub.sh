#!/usr/bin/env bash
# tests/cli/scrub.sh — `mountctl scrub MNT` and `.txdir/scrub` (engine/scrub.h)
# against a real allow_other,default_permissions mount: a clean mount scrubs
# clean (0) and its --json parses; the progress file parses while a slow
# scrub runs; a second scrub meanwhile is EBUSY (8); nobody may not start one
# (EPERM, 8) but may read the progress; a cancel ends it; a byte flipped in
# a pack chunk and one in a WAL record of a live file while mounted are
# found (4), naming the file, and reach events and stats; SIGINT cancels;
# the progress bar is drawn on a tty (script -qc) and not into a pipe; usage
# errors are 16.
source "$(dirname "$0")/lib.bash"

if ! can_mount; then
	skip "cli scrub (every check)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

# flip FILE OFFSET: inverts one byte (through the page cache, which the
# server reads from).
flip() {
	python3 - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xff]))
EOF
}

# offset_of FILE STRING: byte offset of STRING's first occurrence in FILE.
offset_of() {
	python3 -c 'import sys; print(open(sys.argv[1], "rb").read().find(sys.argv[2].encode()))' "$1" "$2"
}

# json_check NAME PYTHON-ASSERTIONS: on $OUT parsed as j.
json_check() {
	if python3 -c "
import json, sys
j = json.loads(sys.stdin.read())
$2" <<<"$OUT" 2>"$T/py.err"; then
		ok "$1"
	else
		not_ok "$1" "$(cat "$T/py.err") -- $OUT"
	fi
}

# scrub_state: the state word of .txdir/scrub.
scrub_state() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$M/.txdir/scrub" 2>/dev/null
}

# wait_state WANT: a bounded poll of the progress file (not a sleep: it
# returns as soon as the state is reached).
wait_state() {
	local i
	for ((i = 0; i < 3000; i++)); do
		[ "$(scrub_state)" = "$1" ] && return 0
		sleep 0.01
	done
	return 1
}

chmod 755 "$T" # nobody reaches the mount through $T
S=$T/store
M=$T/mnt
mkdir -p "$M"
mc init "$S"
mount_store "$S" "$M" -o allow_other,default_permissions
expect "mount with allow_other,default_permissions" 0
mkdir -p "$M/dir/sub"
for i in 1 2 3 4 5; do echo "small file $i" >"$M/dir/f$i"; done
mkdir -m 700 "$M/priv" # only root can list it
echo "scrub-wal-marker-0123456789" >"$M/priv/marker"
seq 1 20000 >"$M/dir/sub/seq"
head -c 20000000 /dev/urandom >"$M/big" # large: goes to a pack
sync "$M/big"

# ---- usage -------------------------------------------------------------------------
mc scrub
expect "scrub without MNT: usage, 16" 16 "missing MNT"
mc scrub "$M" --rate fast
expect "scrub --rate fast: usage, 16" 16 "rate"
mc scrub "$T"
expect "scrub of a directory that is no mount: 8" 8 "not a txdir mount"

# ---- clean --------------------------------------------------------------------------
mc scrub "$M"
expect "scrub of a clean mount: 0" 0 "$M: clean: .* 0 errors"
mc scrub "$M" -n --rate 0 --json
json_check "scrub --json of the clean mount" '
assert j["state"] == "done" and j["status"] == "clean" and j["exit"] == 0, j
assert j["errors"] == 0 and j["problems"] == [], j
assert j["files_checked"] == 8 and j["files_total"] == 8, j
assert j["bytes_checked"] >= 20000000 and j["chunks_checked"] >= 611, j
assert j["records_checked"] >= 1 and j["records_checked"] == j["records_total"], j'

# ---- one at a time, who may, progress, cancel ----------------------------------------
echo "start rate=1048576" >"$M/.txdir/scrub" # 1 MiB/s: 20 s, cancelled below
OUT=$(cat "$M/.txdir/scrub")
json_check "the progress file parses while a scrub runs" '
assert j["state"] == "running" and j["rate_limit_bytes"] == 1048576, j
for k in ("records_total", "records_checked", "bytes_total", "bytes_checked", "errors",
          "elapsed_s", "rate_bytes", "phase", "started", "id"):
    assert k in j, k
assert j["bytes_checked"] <= 20000000, j'
mc scrub "$M"
expect "a second scrub while one runs: EBUSY, 8" 8 "already running \\(Device or resource busy\\)"
OUT=$(timeout 10 bash -c "echo start > '$M/.txdir/scrub'" 2>&1)
RC=$?
expect "echo start while one runs: EBUSY" 1 "Device or resource busy"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	asuser() { timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
	OUT=$(asuser "$MOUNTCTL" scrub "$M" 2>&1)
	RC=$?
	expect "nobody: scrub is EPERM, 8" 8 "only root or the mount's owner may start a scrub \\(Operation not permitted\\)"
	OUT=$(asuser bash -c "echo cancel > '$M/.txdir/scrub'" 2>&1)
	RC=$?
	expect "nobody: cancel of root's scrub is EPERM" 1 "Operation not permitted"
	OUT=$(asuser cat "$M/.txdir/scrub" 2>&1)
	RC=$?
	json_check "nobody may read the progress" 'assert j["state"] == "running", j'
else
	skip "scrub as nobody" "needs root and setpriv"
fi
echo cancel >"$M/.txdir/scrub"
if wait_state cancelled; then ok "cancel ends the running scrub"; else not_ok "cancel ends the running scrub" "$(cat "$M/.txdir/scrub")"; fi

# Ctrl-C on mountctl scrub cancels the scrub it started (and says so: 8)
timeout -k 5 60 "$MOUNTCTL" scrub "$M" --rate 1 >"$T/int.out" 2>&1 &
SPID=$!
wait_state running
kill -INT "$SPID"
wait "$SPID"
RC=$?
OUT=$(cat "$T/int.out")
expect "SIGINT cancels the scrub: 8, cancelled" 8 "$M: cancelled: "
if [ "$(scrub_state)" = cancelled ]; then ok "... and the server's scrub is cancelled"; else not_ok "... and the server's scrub is cancelled" "$(cat "$M/.txdir/scrub")"; fi

# ---- the progress bar: on a tty only -----------------------------------------------
mc scrub "$M" --rate 10
if grep -q 'scrub \[' <<<"$OUT"; then not_ok "no progress bar into a pipe" "$OUT"; else ok "no progress bar into a pipe"; fi
if command -v script >/dev/null && script --version 2>&1 | grep -q util-linux; then
	OUT=$(timeout -k 5 60 script -qec "'$MOUNTCTL' scrub '$M' --rate 10" /dev/null 2>&1)
	RC=$?
	expect "scrub on a tty: 0 and a progress bar with records, bytes and rate" 0 \
		$'\rscrub \\[[#.]{20}\\] +[0-9]+%  [0-9]+/[0-9]+ records  [0-9.]+ [KMG]?i?B/[0-9.]+ [KMG]?i?B  '
else
	skip "scrub's progress bar on a tty" "no util-linux script"
fi

# ---- damage while mounted -------------------------------------------------------------
PACK=$(ls "$S"/objects/pack-* | head -n 1)
flip "$PACK" 1000000
mc scrub "$M" --rate 0
expect "a flipped byte in a pack chunk: 4, naming the file" 4 \
	"^ERROR chunk objects/pack-[0-9]+ offset [0-9]+ length 32768: chunk checksum mismatch.*affects: file /big, inode [0-9]+, bytes 983040\\.\\.1015807"
flip "$PACK" 1000000 # mended
AT=-1
for SEG in "$S"/coordination/dtc/wal/seg-*; do # the segment holding the marker's record
	AT=$(offset_of "$SEG" scrub-wal-marker)
	[ "$AT" -gt 0 ] && break
done
if [ "$AT" -gt 0 ]; then
	flip "$SEG" "$((AT + 3))"
	mc scrub "$M" --rate 0
	expect "a flipped byte in a WAL record of a live file: 4, naming the file" 4 \
		"^ERROR chunk coordination/dtc/wal/seg-[0-9]+ offset [0-9]+ length 28: .*affects: file /priv/marker"
	expect "... and the record's checksum" 4 "^ERROR wal coordination/dtc/wal/seg-[0-9]+ offset [0-9]+: commit [0-9]+ .*: checksum mismatch"
	if declare -F asuser >/dev/null; then
		OUT=$(asuser cat "$M/.txdir/scrub" 2>&1)
		RC=$?
		json_check "nobody reads the problems, the path it cannot list hidden" '
paths = [p.get("path") for p in j["problems"]]
assert "(hidden)" in paths and not any("priv" in json.dumps(p) for p in j["problems"]), paths'
	fi
	flip "$SEG" "$((AT + 3))" # mended
else
	not_ok "the marker file's bytes are in the WAL" "offset $AT in $SEG"
fi
if grep -q '"type":"scrub_error".*"path":"/big"' "$M/.txdir/events"; then ok "scrub_error event names the file"; else not_ok "scrub_error event names the file" "$(grep scrub "$M/.txdir/events")"; fi
OUT=$(grep '^txdir_scrub_errors_total' "$M/.txdir/stats")
if [[ "$OUT" =~ ^txdir_scrub_errors_total\ ([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 3 ]; then
	ok "txdir_scrub_errors_total counts them"
else
	not_ok "txdir_scrub_errors_total counts them" "$OUT"
fi
mc scrub "$M" --rate 0
expect "mended: clean again" 0 "clean"
mc umount "$M"
expect "umount" 0
finish
