#!/usr/bin/env bash
# tests/cli/fsck.sh — `mountctl fsck` on stores damaged on purpose: a byte
# flipped in a WAL record in the middle of the log (not checkpointed: the
# commits after it must not be dropped; checkpointed: the chunk it holds),
# in a pack chunk, in a checkpoint; the tail truncated; the store made
# readable by others. Each is found with its exit code (e2fsck's: 0 clean,
# 1 corrected, 4 left, 8 operational, 16 usage); -n changes nothing;
# --repair of a torn tail or a damaged checkpoint gives a store that fsck
# calls clean, that mounts and reads back the tree; a refused repair leaves
# every byte as it was. Also a mounted store is refused (naming the pid).
#
# Two stores are built through a real mount: K, unmounted cleanly (a
# checkpoint holds everything), and C, whose server is killed -9 after the
# writes (every commit only in the log). Damage goes into copies of them.
source "$(dirname "$0")/lib.bash"

if ! can_mount; then
	skip "cli fsck (every check)" "no $TXDIRFS, /dev/fuse or fusermount3"
	finish
	exit
fi

# flip FILE OFFSET: inverts one byte.
flip() {
	python3 - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xff]))
EOF
}

# records SEGMENT: "lsn offset len type" per record (wal.h), then "end OFF".
records() {
	python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
off = 64
while off + 32 <= len(d):
    m, l, lsn, t = struct.unpack_from('<IIQH', d, off)
    if m != 0x52575854:
        break
    print(lsn, off, l, t)
    off += 32 + ((l + 7) & ~7)
print("end", off)
EOF
}

# sums DIR: checksums of every file under DIR (relative names), sorted.
sums() {
	(cd "$1" && timeout 60 find . -path ./.txdir -prune -o -type f -print0 | sort -z |
		xargs -0 sha1sum)
}

# store_sum S: checksum of every byte of a store (what -n must not change).
store_sum() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum)
}

# fill MNT: the tree both stores hold.
fill() {
	mkdir -p "$1/dir/sub"
	local i
	for i in 1 2 3 4 5 6; do
		echo "small file $i" >"$1/dir/f$i"
	done
	seq 1 20000 >"$1/dir/sub/seq"
	head -c 20000000 /dev/urandom >"$1/big" # large: goes to a pack
	ln -s dir/f1 "$1/link"
}

# mount_and_compare NAME STORE SUMS [EXCEPT]: mounts STORE, compares its tree
# with SUMS (lines naming EXCEPT left out), unmounts.
mount_and_compare() {
	local name=$1 s=$2 want=$3 except=${4:-'^$'} m=$T/cmp.$RANDOM
	mkdir -p "$m"
	mount_store "$s" "$m"
	if [ "$RC" -ne 0 ]; then
		not_ok "$name: mounts" "$OUT"
		return
	fi
	if diff <(grep -v -- "$except" "$want") <(sums "$m" | grep -v -- "$except") >"$T/diff"; then
		ok "$name: mounts and the tree reads back"
	else
		not_ok "$name: mounts and the tree reads back" "$(head -n 20 "$T/diff")"
	fi
	mc umount "$m"
}

# ---- the clean store K -------------------------------------------------------
K=$T/k
mkdir -p "$T/mk"
mc init "$K"
mount_store "$K" "$T/mk"
fill "$T/mk"
mc run "$T/mk" -- sh -c "echo in a transaction >$T/mk/txnfile"
expect "a transaction commits in K" 0
sums "$T/mk" >"$T/k.sums"
mc fsck "$K"
expect "fsck of a mounted store: 8, names the server and the mount" 8 "mounted by txdirfs pid $SERVER_PID at $T/mk: unmount it first"
OUT=$(timeout 60 "$MOUNTCTL" fsck --json "$K" 2>/dev/null)
RC=$?
expect "fsck --json of a mounted store: 8, still one JSON object on stdout" 8
if python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["status"]=="error" and j["exit"]==8 and "unmount it first" in j["error"]' <<<"$OUT"; then
	ok "fsck --json error object: status error, exit 8, the reason"
else
	not_ok "fsck --json error object" "$OUT"
fi
mc inspect "$K"
expect "inspect of a mounted store says so: 1" 1 "is mounted \\(txdirfs pid $SERVER_PID\\) at $T/mk"
mc umount "$T/mk"
expect "umount K" 0

mc fsck "$K"
expect "clean store: 0" 0 "clean: format 3"
mc fsck "$K" -n
expect "options may follow STORE (fsck STORE -n): 0" 0 "clean: format 3"
mc fsck --json "$K"
if [ "$RC" -eq 0 ] && python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
assert j["status"] == "clean" and j["exit"] == 0 and j["problems"] == [], j
s = j["summary"]
assert s["files"] == 9 and s["directories"] == 3, s
assert s["chunks_verified"] >= 611 and s["packs"] >= 1, s' <<<"$OUT"; then
	ok "fsck --json of the clean store"
else
	not_ok "fsck --json of the clean store" "$OUT"
fi
mount_and_compare "clean store" "$K" "$T/k.sums"

# ---- a store of a newer format: refused, naming both formats (SPEC §7) ------
N=$T/newer
mc init "$N"
echo "txdir-store 999" >"$N/FORMAT"
mc fsck "$N"
expect "fsck of a newer format: 8, names both formats" 8 "store format 999; this build reads formats 1 to [0-9]+"
mkdir -p "$T/mn"
mount_store "$N" "$T/mn"
expect "mount of a newer format: refused, names both formats" 1 "store format 999; this build reads formats 1 to [0-9]+"

# ---- the crashed store C (everything only in the log) ------------------------
C=$T/c
mkdir -p "$T/mc"
mc init "$C"
mount_store "$C" "$T/mc"
fill "$T/mc"
sums "$T/mc" >"$T/c.sums"
echo "the last commit" >"$T/mc/last"
kill -9 "$SERVER_PID"
timeout 10 fusermount3 -u "$T/mc" 2>/dev/null || timeout 10 fusermount3 -uz "$T/mc"
for ((i = 0; i < 500; i++)); do # the dead server's flock goes with its fd
	kill -0 "$SERVER_PID" 2>/dev/null || break
	sleep 0.01
done
mc fsck "$C"
expect "crashed store, tail intact: 0" 0 "clean"
SEG=$C/coordination/dtc/wal/seg-00000001
records "$SEG" >"$T/c.recs"
NREC=$(grep -vc end "$T/c.recs")

# mid-log damage: a flipped byte in the payload of a middle record
X=$T/x
cp -a "$C" "$X"
read -r lsn off len _ < <(sed -n "$((NREC / 2))p" "$T/c.recs")
flip "$X/coordination/dtc/wal/seg-00000001" $((off + 40))
before=$(store_sum "$X")
mc fsck -n "$X"
expect "byte flipped mid-log: 4, damage in the middle, later commits named" 4 \
	"ERROR wal .*seg-00000001 offset $off: damage in the middle of the log: commit $lsn .*valid records after it"
[ "$(store_sum "$X")" = "$before" ] && ok "-n changed nothing" || not_ok "-n changed nothing"
mc fsck --repair "$X"
expect "--repair refuses to drop the commits after it: still 4" 4 "--repair leaves it"
[ "$(store_sum "$X")" = "$before" ] && ok "the refused repair changed nothing" ||
	not_ok "the refused repair changed nothing"
# and mounting it (this boot wrote the segment: damage, not a torn tail,
# wal.h W9) refuses rather than dropping the commits after it
mkdir -p "$T/mx"
wal_before=$(store_sum "$X/coordination/dtc/wal")
mount_store "$X" "$T/mx"
expect "mount of a store damaged mid-log: refused, names fsck" 1 "store damaged: .*mountctl fsck $X says where"
[ "$(store_sum "$X/coordination/dtc/wal")" = "$wal_before" ] &&
	ok "the refused mount left the log as it was" || not_ok "the refused mount left the log as it was"

# a flipped byte in the segment's header, after a crash in this boot:
# damage, not a power cut's lost rotation; the mount is refused and the log
# is not cut (it was: every file gone)
X=$T/hdr
cp -a "$C" "$X"
flip "$X/coordination/dtc/wal/seg-00000001" 50
wal_before=$(store_sum "$X/coordination/dtc/wal")
mount_store "$X" "$T/mx"
expect "mount with a damaged segment header: refused, names fsck" 1 "store damaged: .*mountctl fsck $X says where"
[ "$(store_sum "$X/coordination/dtc/wal")" = "$wal_before" ] &&
	ok "the refused mount did not cut the log" || not_ok "the refused mount did not cut the log"

# torn tail: the last record cut in the middle
X=$T/torn
cp -a "$C" "$X"
read -r lsn off len _ < <(sed -n "${NREC}p" "$T/c.recs")
truncate -s $((off + 32 + len / 2)) "$X/coordination/dtc/wal/seg-00000001"
before=$(store_sum "$X")
mc fsck "$X"
expect "torn tail: 4" 4 "ERROR torn-tail .*offset $off: torn tail: commit $lsn"
[ "$(store_sum "$X")" = "$before" ] && ok "fsck without --repair changed nothing" ||
	not_ok "fsck without --repair changed nothing"
mc fsck --repair "$X"
expect "--repair of a torn tail: 1" 1 "FIXED torn-tail .*torn tail: commit $lsn"
mc fsck "$X"
expect "after the repair: clean" 0 "clean"
mount_and_compare "repaired torn tail" "$X" "$T/c.sums" "./last"

# a pack chunk
X=$T/pack
cp -a "$C" "$X"
flip "$X/objects/pack-000001" 5000000
mc fsck "$X"
# which bytes of /big sit at that offset depends on when the server's
# working copy spilled what (the kernel's write-back order and sizes), so
# the line is checked against itself: the chunk it names holds the flipped
# offset, and the bytes of /big it names are that chunk's length, from a
# chunk boundary
expect "byte flipped in a pack: 4, names the file and its bytes" 4 \
	"ERROR chunk objects/pack-000001 offset [0-9]+ length [0-9]+: .*file /big \\(inode [0-9]+\\), bytes [0-9]+\\.\\.[0-9]+"
read -r coff clen fa fb < <(sed -nE 's/.*ERROR chunk objects\/pack-000001 offset ([0-9]+) length ([0-9]+): .*file \/big \(inode [0-9]+\), bytes ([0-9]+)\.\.([0-9]+).*/\1 \2 \3 \4/p' <<<"$OUT" | head -n 1)
if [ -n "${coff:-}" ] && [ "$coff" -le 5000000 ] && [ 5000000 -lt $((coff + clen)) ] &&
	[ $((fa % 32768)) -eq 0 ] && [ $((fb - fa + 1)) -eq "$clen" ]; then
	ok "the named chunk holds the flipped byte and the named bytes are its own"
else
	not_ok "the named chunk holds the flipped byte and the named bytes are its own" \
		"offset ${coff:-?} length ${clen:-?}, bytes ${fa:-?}..${fb:-?}: $OUT"
fi
mc fsck --repair "$X"
expect "--repair cannot mend a chunk: still 4" 4 "ERROR chunk"

# ---- damage in K (a checkpoint holds everything) ------------------------------
# a checkpoint torn by a SIGKILL during its write (it ends early) that the
# log still covers: recovery passes over it and replays the log, nothing
# committed is lost: a NOTE (fsck.h F6), exit 0. The same with the log it
# replaces gone: recovery needs it, an ERROR. A flipped byte in a whole
# checkpoint is damage, an ERROR whatever the log holds; --repair drops it.
X=$T/ck
cp -a "$K" "$X"
CK=$(ls "$X"/coordination/dtc/checkpoints/ckpt-*)
cp -a "$X" "$T/ck-torn"
TCK=$(ls "$T"/ck-torn/coordination/dtc/checkpoints/ckpt-*)
truncate -s $(($(stat -c %s "$TCK") / 2)) "$TCK"
cp -a "$T/ck-torn" "$T/ck-nolog"
mc fsck "$T/ck-torn" -n
expect "a torn checkpoint the log covers: a NOTE, exit 0" 0 \
	"^NOTE checkpoint .*ckpt-[0-9a-f]+ offset [0-9]+: invalid checkpoint.*torn"
expect "... no error" 0 " 0 errors, 0 corrected, 1 notes"
rm -f "$T"/ck-nolog/coordination/dtc/wal/seg-*
mc fsck "$T/ck-nolog" -n
expect "a torn checkpoint whose log is gone: an ERROR, exit 4" 4 \
	"^ERROR checkpoint .*ckpt-[0-9a-f]+ offset [0-9]+: invalid checkpoint"
flip "$CK" $(($(stat -c %s "$CK") / 2))
mc fsck "$X" -n
expect "byte flipped in a checkpoint: an ERROR, exit 4" 4 \
	"^ERROR checkpoint .*ckpt-[0-9a-f]+ offset [0-9]+: invalid checkpoint"
mc fsck --repair "$X"
expect "--repair drops it (recovery replays the log): 1" 1 "FIXED checkpoint"
mc fsck "$X"
expect "after the repair: clean" 0 "clean"
mount_and_compare "repaired checkpoint" "$X" "$T/k.sums"

# a checkpointed WAL record holding a live file's bytes
X=$T/wck
cp -a "$K" "$X"
records "$X/coordination/dtc/wal/seg-00000001" >"$T/k.recs"
# the commit carrying /dir/f3's bytes: the record whose payload holds them
off=$(python3 - "$X/coordination/dtc/wal/seg-00000001" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()
print(d.index(b"small file 3\n"))
EOF
)
flip "$X/coordination/dtc/wal/seg-00000001" "$off"
mc fsck "$X"
expect "byte flipped in a checkpointed record: 4, names the file" 4 \
	"ERROR chunk .*file /dir/f3"
grep -q "ERROR wal .*checksum mismatch; affects: nothing recovery reads" <<<"$OUT" &&
	ok "the record's own checksum is reported too" ||
	not_ok "the record's own checksum is reported too" "$OUT"

# the derived transaction records (txn.h T9)
X=$T/txr
cp -a "$K" "$X"
TR=$(ls "$X"/coordination/dtc/transactions/*.json | head -n 1)
python3 - "$TR" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
j["commit"] = 999999
open(sys.argv[1], "w").write(json.dumps(j) + "\n")
EOF
mc fsck "$X"
expect "a transaction record committed beyond the log: 4" 4 \
	"ERROR txn-record .*says committed as commit 999999, beyond the log"
mc fsck --repair "$X"
expect "--repair: recovery settles it: 1" 1 "FIXED txn-record"
mc fsck "$X"
expect "after the repair: clean" 0 "clean"
echo "garbage" >"$TR"
mc fsck "$X"
expect "a transaction record that is not JSON: 4" 4 "ERROR txn-record .*not a transaction record"

# the commits log (clog.h): a flipped byte in its first record
X=$T/clog
cp -a "$K" "$X"
flip "$X/coordination/commits/log" 20
mc fsck "$X"
expect "commits log damaged: 4" 4 "ERROR commits-log coordination/commits/log offset 0: checksum mismatch"

# permissions (store.h S4)
X=$T/perm
cp -a "$K" "$X"
chmod o+r "$X/coordination/events.log"
mc fsck "$X"
expect "a file others can read: 4" 4 "ERROR permissions coordination/events.log: others can read it"
chmod o-r "$X/coordination/events.log"
mc fsck "$X"
expect "private again: 0" 0 "clean"

# ---- a transaction left active by a crash (fsck.h F4): a note, not damage ------
A=$T/a
mkdir -p "$T/ma"
mc init "$A"
mount_store "$A" "$T/ma"
echo "before the crash" >"$T/ma/kept"
mkdir "$T/ma/.txdir/txn/open"
echo "never committed" >"$T/ma/.txdir/txn/open/root/lost"
kill -9 "$SERVER_PID"
timeout 10 fusermount3 -u "$T/ma" 2>/dev/null || timeout 10 fusermount3 -uz "$T/ma"
for ((i = 0; i < 500; i++)); do # the dead server's flock goes with its fd
	kill -0 "$SERVER_PID" 2>/dev/null || break
	sleep 0.01
done
X=$T/a2
cp -a "$A" "$X"
mc fsck "$A" -n
expect "an active transaction record after a crash: a NOTE, exit 0" 0 \
	"^NOTE txn-record coordination/dtc/transactions/[0-9]+\.json: left active by a stop or crash: recovery settles it"
expect "... and the summary says the next mount settles it" 0 "1 notes: not damage; the next mount settles them"
mc fsck "$A" --json
if [ "$RC" -eq 0 ] && python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
assert j["status"] == "clean" and j["errors"] == 0 and j["notes"] == 1, j
assert [p["severity"] for p in j["problems"]] == ["NOTE"], j' <<<"$OUT"; then
	ok "fsck --json: the note has severity NOTE, errors 0"
else
	not_ok "fsck --json: the note has severity NOTE, errors 0" "$OUT"
fi
mc fsck "$X" --repair
expect "--repair writes what recovery would: FIXED, 1" 1 "^FIXED txn-record"
mc fsck "$X"
expect "after --repair: clean, no note" 0 "0 errors, 0 corrected, 0 notes"
if grep -q '"state":"aborted"' "$X"/coordination/dtc/transactions/*.json; then
	ok "the record now says aborted (restart)"
else
	not_ok "the record now says aborted (restart)" "$(cat "$X"/coordination/dtc/transactions/*.json)"
fi

# ---- the progress bar: on a tty only ------------------------------------------
mc fsck "$K"
if grep -q 'fsck \[' <<<"$OUT"; then not_ok "fsck: no progress bar into a pipe" "$OUT"; else ok "fsck: no progress bar into a pipe"; fi
if command -v script >/dev/null && script --version 2>&1 | grep -q util-linux; then
	OUT=$(timeout -k 5 60 script -qec "'$MOUNTCTL' fsck '$K'" /dev/null 2>&1)
	RC=$?
	expect "fsck on a tty: a progress bar (records, bytes), erased before the summary" 0 \
		$'\rfsck \\[[#.]{20}\\] +[0-9]+%  [0-9]+ records  [0-9.]+ [KMG]?i?B/[0-9.]+ [KMG]?i?B  .*\r\033\\[K.*clean: format'
else
	skip "fsck's progress bar on a tty" "no util-linux script"
fi

# ---- usage and operational errors ---------------------------------------------
mc fsck
expect "fsck without STORE: 16" 16 "missing STORE"
mc fsck -n --repair "$K"
expect "fsck -n --repair: 16" 16 "exclude each other"
mc fsck --bogus "$K"
expect "fsck with an unknown option: 16" 16
mkdir -p "$T/plain"
mc fsck "$T/plain"
expect "fsck of a directory that is not a store: 8" 8 "not a txdir store|not a store"
mc fsck --help
expect "fsck --help" 0 "usage: mountctl fsck STORE"

finish
