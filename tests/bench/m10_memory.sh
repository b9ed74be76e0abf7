#!/usr/bin/env bash
# m10_memory — server memory after many small commits over few live files
# (issue 9, defect 12: memory must follow live data and open work, not
# history).
#   100,000 small saves (10,000 with QUICK) over 100 live names of 1 KiB,
#   in a repeating pattern of 10: 5 in place (open O_TRUNC, write, close),
#   4 tmp + rename, 1 one-file transaction (mkdir .txdir/txn/X, write a
#   file in its root, "commit" to ctl, rmdir). The second half runs while
#   one more transaction stays open (a long `mountctl run`): its snapshot
#   must keep only what it can see, not every file deleted meanwhile.
# Figures: the server's VmRSS and RssAnon (/proc/PID/status) after the
# mount, after each half, and once the held transaction is gone. Baseline:
# VmRSS of the idle server right after the mount. Goal: VmRSS after all
# saves <= 64 MiB.
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init
N=100000
[ "$BM_QUICK" = 1 ] && N=10000
LIVE=100

bm_mount || exit 1
srv=$(pgrep -P "$BM_PID" -x txdirfs | head -1)
[ -n "$srv" ] || srv=$BM_PID
kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$srv/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

cat >"$BM_DIR/m10.py" <<'EOF'
import os, sys
mnt, first, n, live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(first, first + n):
    data = (b"save %d " % i).ljust(1024, b"x")
    path = "%s/f%03d" % (mnt, i % live)
    kind = i % 10
    if kind < 5:
        with open(path, "wb") as f:
            f.write(data)
    elif kind < 9:
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    else:
        t = "%s/.txdir/txn/m10-%d" % (mnt, i)
        os.mkdir(t)
        with open("%s/root/f%03d" % (t, i % live), "wb") as f:
            f.write(data)
        with open(t + "/ctl", "w") as f:
            f.write("commit\n")
        os.rmdir(t)
EOF

rss0=$(kb VmRSS)
anon0=$(kb RssAnon)
echo "idle after mount: VmRSS $rss0 kB, RssAnon $anon0 kB" >&2
half=$((N / 2))
t=$(bm_time timeout 900 python3 "$BM_DIR/m10.py" "$BM_MNT" 0 "$half" "$LIVE") || exit 1
rss1=$(kb VmRSS)
anon1=$(kb RssAnon)
echo "after $half saves ($t s): VmRSS $rss1 kB, RssAnon $anon1 kB" >&2
mkdir "$BM_MNT/.txdir/txn/m10-held" || exit 1
t=$(bm_time timeout 900 python3 "$BM_DIR/m10.py" "$BM_MNT" "$half" "$half" "$LIVE") || exit 1
rss2=$(kb VmRSS)
anon2=$(kb RssAnon)
echo "after $N saves, the second half with a transaction open ($t s): VmRSS $rss2 kB," \
	"RssAnon $anon2 kB" >&2
rmdir "$BM_MNT/.txdir/txn/m10-held" || exit 1
rss3=$(kb VmRSS)
anon3=$(kb RssAnon)
echo "held transaction removed: VmRSS $rss3 kB, RssAnon $anon3 kB" >&2
live=$(find "$BM_MNT" -maxdepth 1 -type f | wc -l)

echo "BENCH m10_rss_idle $(mib "$rss0") MiB server VmRSS after mount (RssAnon $(mib "$anon0"))"
echo "BENCH m10_rss_half $(mib "$rss1") MiB after $half saves over $LIVE names" \
	"(RssAnon $(mib "$anon1"))"
echo "BENCH m10_rss_all $(mib "$rss2") MiB after $N saves, the last $half with a" \
	"transaction open (RssAnon $(mib "$anon2"))"
echo "BENCH m10_rss_released $(mib "$rss3") MiB once that transaction is gone" \
	"(RssAnon $(mib "$anon3")), $live files live"
bm_row "M10 server RSS after $N small commits over $LIVE live files" "$(mib "$rss2") MiB" \
	"$(mib "$rss0") MiB (idle server)" "$(bm_ratio "$rss2" "$rss0")" "<= 64 MiB" \
	"$(awk -v a="$rss2" 'BEGIN { print (a <= 64 * 1024) ? "PASS" : "MISS" }')"
bm_umount
