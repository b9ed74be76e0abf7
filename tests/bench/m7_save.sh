#!/usr/bin/env bash
# m7_save — durable save of a 4 KiB file by 8 processes, each saving its own
# file repeatedly (250 saves each; 20 with QUICK).
#   txdir:  open(O_TRUNC)/write 4 KiB/fsync/close in place (atomic on txdir)
#   native: tmp + write + fsync + close + rename + fsync(dir) — what an
#           application must do on ext4 for the same guarantee
# Median of 5 repetitions; figure is saves/s. Goal >= 1.2x native.
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init
bm_mount || exit 1
NAT=$BM_DIR/native
mkdir -p "$NAT"
K=250
[ "$BM_QUICK" = 1 ] && K=20
REPS=5
[ "$BM_QUICK" = 1 ] && REPS=3
tx=() nat=()
for ((r = 0; r < REPS; r++)); do
	mkdir "$BM_MNT/s$r" "$NAT/s$r" || exit 1
	t=$(timeout 600 "$BM_FILEOPS" save "$BM_MNT/s$r" "$K" 4096 8 fsync) || exit 1
	tx+=("$t")
	t2=$(timeout 600 "$BM_FILEOPS" save "$NAT/s$r" "$K" 4096 8 rename) || exit 1
	nat+=("$t2")
	echo "rep $r: txdir $t s, native $t2 s" >&2
done
# Same native loop without the rename (in-place fsync, not crash-atomic):
t3=$(timeout 600 "$BM_FILEOPS" save "$NAT/s0" "$K" 4096 8 fsync) || exit 1
total=$((K * 8))
st=$(awk -v n=$total -v t="$(median "${tx[@]}")" 'BEGIN { printf "%.0f", n / t }')
sn=$(awk -v n=$total -v t="$(median "${nat[@]}")" 'BEGIN { printf "%.0f", n / t }')
si=$(awk -v n=$total -v t="$t3" 'BEGIN { printf "%.0f", n / t }')
ratio=$(bm_ratio "$st" "$sn")
echo "BENCH m7_save_txdir $st saves/s 8 procs open/write/fsync/close"
echo "BENCH m7_save_native_rename $sn saves/s 8 procs tmp+fsync+rename+dir fsync ($BM_FSTYPE)"
echo "BENCH m7_save_native_inplace $si saves/s 8 procs open/write/fsync/close, not atomic (1 run)"
bm_row "M7 durable 4 KiB save, 8 procs" "$st saves/s" "$sn saves/s (tmp+rename, $BM_FSTYPE)" \
	"$ratio" ">= 1.2x" "$(bm_ge "$ratio" 1.2)"
bm_umount
