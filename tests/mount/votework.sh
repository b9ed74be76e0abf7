#!/usr/bin/env bash
# tests/mount/votework.sh — two-phase commit across real processes, with the
# coordinator (txdirfs) SIGKILLed and remounted (issue 11 "Cross-process
# suites").
#
# A plan (seeded): VW_PROPOSALS proposals (default 200), each listing 2-5
# of 10 participants p0..p9; each participant's part in each proposal is
# yes, no or never (never: a participant that died before voting). A
# proposal with a never-voter gets a 2 s timeout, the others 60 s. The
# coordinator process opens them all; then 10 participant processes vote
# (retrying through the server's absence: ENOTCONN, ENOENT while it is
# down), and 20 wait readers each read proposals/P/wait of every 10th
# proposal (reading again after a restart). Meanwhile the server is
# SIGKILLed VW_KILLS times (default 3), each at a random count of
# decisions, and remounted.
# Checks: every proposal is decided; every decision follows the rules of
# the plan (committed: all planned yes; "no from X": X planned no;
# "timeout missing L": L within the list and holding every never-voter);
# every decision first read by anyone (a participant told EROFS, a wait
# reader) equals the final one; every wait reader got the final one.
#
# Bounded polls synchronise, never sleeps. Last line "N passed, N failed,
# N skipped". Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

OPTS=allow_other,default_permissions
NPROP=${VW_PROPOSALS:-200}
NKILL=${VW_KILLS:-3}
SEED=${VW_SEED:-$RANDOM}
echo "# votework: $NPROP proposals, $NKILL kills, seed $SEED"

mount_killable "$OPTS" || { not_ok "votework: mount"; tm_summary; exit 1; }
W=$TM_DIR/work
mkdir -p "$W"
C=$TM_MNT/.txdir/consensus

cat >"$W/vw.py" <<'PY'
import errno, json, os, random, sys, time

RETRY = (errno.ENOTCONN, errno.ENOENT, errno.EIO, errno.ECONNABORTED, errno.EINTR)
DEADLINE = time.monotonic() + 300

def plan_make(path, n, seed):
    r = random.Random(seed)
    plan = []
    for k in range(n):
        parts = r.sample(["p%d" % i for i in range(10)], r.randint(2, 5))
        roll = r.random()
        votes = {p: "yes" for p in parts}
        if roll < 0.25:
            votes[r.choice(parts)] = "no"
        elif roll < 0.45:
            votes[r.choice(parts)] = "never"
        elif roll < 0.55:
            votes[parts[0]] = "no"
            votes[parts[-1]] = "never"
        plan.append({"name": "v%d" % k, "parts": parts, "votes": votes,
                     "timeout": 2 if "never" in votes.values() else 60})
    json.dump(plan, open(path, "w"))

def retry(fn):
    while time.monotonic() < DEADLINE:
        try:
            return fn()
        except OSError as e:
            if e.errno not in RETRY:
                return e.errno
        # the server is down: poll until the mount answers again
        time.sleep(0.02)
    return errno.ETIMEDOUT

def write(path, text, create=False):
    def go():
        fd = os.open(path, os.O_WRONLY | (os.O_CREAT if create else 0) | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return 0
    return go

def read(path):
    with open(path) as f:
        return f.read().strip()

def coordinator(c, plan):
    for p in plan:
        d = os.path.join(c, "proposals", p["name"])
        def mk():
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
            return 0
        retry(mk)
        info = retry(lambda: read(os.path.join(d, "info.json")))
        if isinstance(info, str) and json.loads(info)["state"] != "created":
            continue  # opened before a restart: write-once
        retry(write(os.path.join(d, "timeout"), str(p["timeout"])))
        e = retry(write(os.path.join(d, "participants"), ",".join(p["parts"])))
        if e not in (0, errno.EEXIST):
            print("open %s: %s" % (p["name"], errno.errorcode.get(e, e)))

def participant(c, plan, me, out):
    seen = {}
    for p in plan:
        v = p["votes"].get(me)
        if v is None or v == "never":
            continue
        f = os.path.join(c, "votes", p["name"], me)
        # wait for the vote to open (the coordinator runs alongside)
        e = retry(write(f, v + "\n"))
        if e == errno.EROFS:
            seen[p["name"]] = retry(lambda: read(os.path.join(c, "decisions", p["name"])))
        elif e != 0:
            seen[p["name"]] = "vote error %s" % errno.errorcode.get(e, e)
    json.dump(seen, open(out, "w"))

def reader(c, plan, idx, out):
    got = {}
    for k in range(idx, len(plan), 10):
        name = plan[k]["name"]
        got[name] = retry(lambda: read(os.path.join(c, "proposals", name, "wait")))
    json.dump(got, open(out, "w"))

def follows(p, d):
    if d == "committed":
        return all(v == "yes" for v in p["votes"].values())
    if d.startswith("aborted no from "):
        return p["votes"].get(d[len("aborted no from "):]) == "no"
    if d.startswith("aborted timeout missing "):
        miss = d[len("aborted timeout missing "):].split(",")
        never = [q for q, v in p["votes"].items() if v == "never"]
        return set(miss) <= set(p["parts"]) and set(never) <= set(miss) and len(miss) > 0
    return False

def check(c, plan, work):
    final = {}
    bad = 0
    for p in plan:
        try:
            final[p["name"]] = read(os.path.join(c, "decisions", p["name"]))
        except OSError as e:
            print("not ok - votework: %s undecided (%s)" % (p["name"], e))
            bad += 1
            continue
        if not follows(p, final[p["name"]]):
            print("not ok - votework: %s: %r breaks the rules for %r" % (p["name"], final[p["name"]], p["votes"]))
            bad += 1
    changed = 0
    for f in sorted(os.listdir(work)):
        if not (f.startswith("part.") or f.startswith("read.")):
            continue
        for name, d in json.load(open(os.path.join(work, f))).items():
            if final.get(name) != d:
                print("not ok - votework: %s read %r by %s, final %r" % (name, d, f, final.get(name)))
                changed += 1
    kinds = {"committed": 0, "no": 0, "timeout": 0}
    for d in final.values():
        kinds["committed" if d == "committed" else "no" if " no from " in d else "timeout"] += 1
    print("# votework: %d decisions: %d committed, %d no, %d timeout" %
          (len(final), kinds["committed"], kinds["no"], kinds["timeout"]))
    print("%d %d %d" % (bad, changed, min(kinds.values())))

cmd = sys.argv[1]
if cmd == "plan":
    plan_make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    plan = json.load(open(sys.argv[3]))
    if cmd == "coord":
        coordinator(sys.argv[2], plan)
    elif cmd == "part":
        participant(sys.argv[2], plan, sys.argv[4], sys.argv[5])
    elif cmd == "read":
        reader(sys.argv[2], plan, int(sys.argv[4]), sys.argv[5])
    elif cmd == "check":
        check(sys.argv[2], plan, sys.argv[4])
PY

python3 "$W/vw.py" plan "$W/plan.json" "$NPROP" "$SEED"
PIDS=()
timeout 400 python3 "$W/vw.py" coord "$C" "$W/plan.json" >"$W/coord.log" 2>&1 &
PIDS+=($!)
for i in 0 1 2 3 4 5 6 7 8 9; do
	timeout 400 python3 "$W/vw.py" part "$C" "$W/plan.json" "p$i" "$W/part.$i" >"$W/p$i.log" 2>&1 &
	PIDS+=($!)
done
for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19; do
	timeout 400 python3 "$W/vw.py" read "$C" "$W/plan.json" "$((i % 10))" "$W/read.$i" >"$W/r$i.log" 2>&1 &
	PIDS+=($!)
done
BG+=("${PIDS[@]}")

ndecided() { ls "$C/decisions" 2>/dev/null | wc -l; }
at_least() { [ "$(ndecided)" -ge "$1" ]; }

kills=0
for ((k = 1; k <= NKILL; k++)); do
	target=$(((RANDOM % (NPROP / (NKILL + 1))) + (k - 1) * NPROP / (NKILL + 1) + 1))
	wait_for 1200 at_least "$target" || { echo "# only $(ndecided) decided before kill $k"; }
	kill_server && detach || { not_ok "votework: kill $k"; break; }
	start_server "$OPTS" || { not_ok "votework: remount $k"; break; }
	kills=$((kills + 1))
done
[ "$kills" -eq "$NKILL" ] && ok "votework: $kills SIGKILLs and remounts mid-run" || not_ok "votework: kills"

wait_for 1800 at_least "$NPROP" && ok "votework: all $NPROP proposals decided" ||
	not_ok "votework: $(ndecided) of $NPROP decided"
rc=0
for p in "${PIDS[@]}"; do
	wait "$p" || rc=$?
done
[ "$rc" -eq 0 ] && ok "votework: every participant and reader finished" ||
	not_ok "votework: a worker exited $rc"
cat "$W"/coord.log "$W"/p*.log "$W"/r*.log | sed 's/^/# /' | head -n 20
out=$(python3 "$W/vw.py" check "$C" "$W/plan.json" "$W")
printf '%s\n' "$out" | sed '$d'
read -r bad changed fewest <<<"$(printf '%s\n' "$out" | tail -n 1)"
[ "$bad" -eq 0 ] && ok "votework: every decision follows the rules" || not_ok "votework: $bad decisions break the rules"
[ "$changed" -eq 0 ] && ok "votework: no decision changed; every reader got the final one" ||
	not_ok "votework: $changed reads differ from the final decision"
[ "$fewest" -gt 0 ] && ok "votework: commits, no-aborts and timeouts all happened" ||
	not_ok "votework: a kind of outcome never happened"
tm_umount >/dev/null || not_ok "votework: umount"
tm_summary
