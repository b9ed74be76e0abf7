#!/usr/bin/env bash
# tests/fuzz/mkseeds.sh MKSEEDS — (re)make the seed corpora in
# tests/fuzz/corpus/ from the store MKSEEDS builds (tests/fuzz/mkseeds.c).
# Seeds are cut from real files: WAL segments, their record payloads,
# checkpoint files and their blocks, the event log and the commit log. The
# control-byte prefixes are those the harnesses document. Regression inputs
# (crash-*) already in the corpus are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
store=$(timeout 60 "$1")
trap 'rm -rf "$(dirname "$store")"' EXIT
python3 - "$store" tests/fuzz/corpus <<'PY'
import glob, hashlib, os, struct, sys
store, out = sys.argv[1], sys.argv[2]
def put(name, data):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)
for name in ("fuzz_rec", "fuzz_wal", "fuzz_ckpt", "fuzz_events", "fuzz_clog",
             "fuzz_ctlwrite", "fuzz_chunkmap"):
    for f in glob.glob(os.path.join(out, name, "seed-*")):
        os.unlink(f)
coord = os.path.join(store, "coordination")
# WAL: each segment (cut at a record boundary past 40 KiB), consecutive
# pairs as two-segment inputs, and every commit payload up to 8 KiB
segs = []
for seg in sorted(glob.glob(os.path.join(store, "../wal-open/seg-*"))):
    b = open(seg, "rb").read()
    off, ends = 64, []
    while off + 32 <= len(b):
        magic, ln = struct.unpack_from("<II", b, off)
        if magic != 0x52575854: break
        payload = b[off + 32: off + 32 + ln]
        if ln <= 8192 and struct.unpack_from("<H", b, off + 16)[0] == 1:
            put("fuzz_rec", payload)
        off += 32 + ((ln + 7) & ~7)
        ends.append(off)
    keep = [e for e in ends if e <= 40960]
    segs.append(b[:keep[-1] if keep else 64])
for k, b in enumerate(segs[:4]):
    put("fuzz_wal", b"\0\0\0" + b)
for a, b in zip(segs[:3], segs[1:4]):
    if len(a) + len(b) <= 24576:
        s = (len(a) - 64) // 8
        put("fuzz_wal", bytes([4, s & 255, s >> 8]) + a + b)
if segs:
    put("fuzz_wal", b"\x03\0\0" + segs[0][:64 + 32 + 24])  # torn first record
# checkpoints: the file, and each block's payload
for ck in sorted(glob.glob(os.path.join(coord, "dtc/checkpoints/ckpt-*"))):
    b = open(ck, "rb").read()
    put("fuzz_ckpt", b"\0" + b)
    put("fuzz_ckpt", b"\x07" + b[:len(b) // 2])  # torn
    off = 64
    while off + 16 <= len(b):
        magic, ln = struct.unpack_from("<II", b, off)
        if magic != 0x4c424b43: break
        if ln <= 8192: put("fuzz_rec", b[off + 16: off + 16 + ln])
        off += 16 + ln
ev = os.path.join(coord, "events.log")
if os.path.exists(ev):
    b = open(ev, "rb").read()
    put("fuzz_events", b"\x03" + b)  # uid 1000, paths refused
    put("fuzz_events", b"\x00" + b[: len(b) * 2 // 3])  # torn line
# control-file scripts (fuzz_ctlwrite): name, then steps split by blank lines
for steps in (["t1", "fhello", "wcommit", "wabort", "r\x00"],
              ["t2", "fa", "ma", "w commit\n", "r\x01", "r\x04"],
              ["t3", "wreadonly", "fb", "wcommit"],
              ["bad/name", "wabort", "wcommit", "r\x02", "r\x03"],
              ["t4", "w" + "x" * 70, "wcommit\t"]):
    put("fuzz_ctlwrite", "\n\n".join(steps).encode())
# chunk map operation sequences (fuzz_chunkmap: 4-byte steps)
import random
random.seed(7)
for n in range(6):
    b = bytearray()
    for k in range(40 + n * 30):
        u = random.randrange(1 << 16) if n % 2 else random.randrange(1024)
        b += bytes([random.choice([0, 0, 0, 1, 2, 3]), u & 255, u >> 8, random.randrange(256)])
    put("fuzz_chunkmap", bytes(b))
cl = os.path.join(coord, "commits/log")
if os.path.exists(cl):
    b = open(cl, "rb").read()
    put("fuzz_clog", b"\x00" + b)
    put("fuzz_clog", b"\x01" + b[: len(b) * 2 // 3])
PY
# the services' harnesses: from the documented encodings (no store needed)
python3 tests/fuzz/mkseeds_svc.py tests/fuzz/corpus
du -sh tests/fuzz/corpus
