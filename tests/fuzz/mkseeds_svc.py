#!/usr/bin/env python3
# tests/fuzz/mkseeds_svc.py [CORPUS_DIR] — the seed corpora of the services'
# harnesses (fuzz_vote, fuzz_state, fuzz_svcckpt, fuzz_ctlsvc), written from
# the encodings their headers document (vote.h, state.h, svc.h V8, lease.h
# snapshot) and the control words of SPEC §5; no store needed, so it runs
# anywhere. Replaces the seed-* files of those harnesses; regression inputs
# (crash-*) are kept. Called by tests/fuzz/mkseeds.sh.
import glob, hashlib, os, struct, sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
NAMES = ("fuzz_vote", "fuzz_state", "fuzz_svcckpt", "fuzz_ctlsvc")
for name in NAMES:
    for f in glob.glob(os.path.join(out, name, "seed-*")):
        os.unlink(f)


def put(name, data):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


S = 1000000000
T0 = 1796000000 * S  # a realtime stamp (2026)

# ---- vote.h records ---------------------------------------------------------
def vhdr(kind, name, id_):
    return struct.pack("<BBHIQ", 1, kind, len(name), 0, id_)

def v_create(name, id_, uid=0, t=T0):
    return vhdr(1, name, id_) + struct.pack("<IIQ", uid, 0, t) + name

def v_param(name, id_, timeout=30 * S, payload=b""):
    return vhdr(2, name, id_) + struct.pack("<QII", timeout, len(payload), 0) + name + payload

def v_open(name, id_, parts, t=T0 + S, deadline=T0 + 31 * S):
    lst = b"".join(p + b"\0" for p in parts)
    return vhdr(3, name, id_) + struct.pack("<QQII", t, deadline, len(lst), len(parts)) + name + lst

def v_vote(name, id_, part, yes, external=0, reason=b"", t=T0 + 2 * S):
    return (vhdr(4, name, id_) + struct.pack("<BBHHHQ", yes, external, len(part), len(reason), 0, t)
            + name + part + reason)

def v_decide(name, id_, outcome, reason=b"", t=T0 + 3 * S):
    return vhdr(5, name, id_) + struct.pack("<BBHIQ", outcome, 0, len(reason), 0, t) + name + reason

def v_remove(name, id_, uid=0):
    return vhdr(6, name, id_) + struct.pack("<II", uid, 0) + name

def records(recs):
    return b"".join(struct.pack("<H", len(r)) + r for r in recs)

def vote_snapshot(next_id, recs):
    return struct.pack("<IIQI", 0x53565854, 1, next_id, len(recs)) + b"".join(
        struct.pack("<I", len(r)) + r for r in recs)

aborted = [v_create(b"deploy", 1, 1000), v_param(b"deploy", 1, 60 * S, b"v2.1"),
           v_open(b"deploy", 1, [b"db", b"web"]), v_vote(b"deploy", 1, b"db", 1),
           v_vote(b"deploy", 1, b"web", 0), v_decide(b"deploy", 1, 2, b"no from web")]
committed = [v_create(b"p2", 2), v_open(b"p2", 2, [b"a", b"b", b"c"]),
             v_vote(b"p2", 2, b"a", 1), v_vote(b"p2", 2, b"b", 1, 1),
             v_vote(b"p2", 2, b"c", 1), v_decide(b"p2", 2, 1)]
open_ = [v_create(b"open", 3), v_param(b"open", 3, 5 * S), v_open(b"open", 3, [b"x", b"y"]),
         v_vote(b"open", 3, b"x", 1), v_vote(b"open", 3, b"y", 0, 1, b"conflict on /a")]
removed = [v_create(b"gone", 4, 7), v_remove(b"gone", 4, 7), v_create(b"gone", 5, 7)]
put("fuzz_vote", b"\x00" + records(aborted))
put("fuzz_vote", b"\x02" + records(committed + open_))       # then vote_start
put("fuzz_vote", b"\x00" + records(removed + aborted[:3]))
put("fuzz_vote", b"\x02" + records(open_[:3]))               # overdue at start
put("fuzz_vote", b"\x01" + vote_snapshot(6, aborted + committed))
put("fuzz_vote", b"\x03" + vote_snapshot(9, open_ + removed[2:]))
put("fuzz_vote", b"\x01" + vote_snapshot(1, []))
for ballot in (b"yes", b"no\n", b"30", b"0.5\n", b"maybe"):  # the parsers
    put("fuzz_vote", b"\x01" + ballot)

# ---- state.h records -----------------------------------------------------------
def s_replace(version, doc, t=T0, uid=0, pid=1):
    return struct.pack("<BBHIQQII", 1, 1, 0, len(doc), version, t, uid, pid) + doc

def state_snapshot(rec):
    return b"TXST" + struct.pack("<II", 1, len(rec)) + rec

docs = [b'{"leader":"a","epoch":1}', b'[1,2,3]\n', b'"text"', b' {"nested":{"k":[true,null,1e9]}} ']
put("fuzz_state", b"\x00" + records([s_replace(1, docs[0]), s_replace(2, docs[1])]))
put("fuzz_state", b"\x00" + records([s_replace(3, docs[2]), s_replace(2, docs[3])]))
put("fuzz_state", b"\x01" + state_snapshot(s_replace(7, docs[3])))
put("fuzz_state", b"\x01" + state_snapshot(b""))
for d in docs + [b"{", b'{"a":1} x', b"", b"\xff"]:          # replaced after replay
    put("fuzz_state", b"\x03" + d)

# ---- svc.h V8: the checkpoint container ------------------------------------------
def lease_snapshot(recs=()):
    return struct.pack("<III", 0x534c5854, 1, len(recs)) + b"".join(
        struct.pack("<I", len(r)) + r for r in recs)

def container(parts):
    b = struct.pack("<III", 0x56535854, 1, len(parts))
    for tag, body in parts:
        b += tag + struct.pack("<IQ", 0, len(body)) + body
    return b

put("fuzz_svcckpt", container([(b"LEAS", lease_snapshot()),
                               (b"VOTE", vote_snapshot(6, aborted + committed)),
                               (b"STAT", state_snapshot(s_replace(4, docs[0])))]))
put("fuzz_svcckpt", container([(b"VOTE", vote_snapshot(4, open_)),
                               (b"STAT", state_snapshot(b""))]))
put("fuzz_svcckpt", lease_snapshot())                       # format 2's section
put("fuzz_svcckpt", container([]))

# ---- fuzz_ctlsvc: control-file scripts (see its top comment) ----------------------
scripts = [
    ["Pdeploy", "Tdeploy\n30", "Ldeploy\nhello", "Adeploy\ndb,web", "Vdeploy\ndb\nyes",
     "Vdeploy\nweb\nno\n", "Vdeploy\nweb\nyes", "Rdeploy"],
    ["Pp", "Tp\n0.5", "Tp\n-1", "Ap\na b\tc", "Ap\na b\tc", "Ap\na,a", "Vp\na\nyes\n",
     "Vp\nb\nmaybe", "Vp\nzz\nyes", "Rp", "Dp"],
    ["Pq", "Aq\n", "Tq\n1e9", "Lq\n", "Dq", "Dq"],
    ['U{"a":1}', "U[1,2", 'U  "s"  ', "U", "Unull\n", "R"],
    ["Pt", "Ct\nprepare t as a", "Ct\ncommit if-lease 1 7", "Ct\ncommit if-lease x",
     "Ct\nprepare t", "Ct\ncommit", "Ct\nabort"],
    ["Pt", "At\nme", "Ct\nprepare t as me", "Vt\nme\nyes", "Rt"],
]
for s in scripts:
    put("fuzz_ctlsvc", "\n\n".join(s).encode())
