#!/usr/bin/env bash
# m6_create — create+write+close of 10,000 x 4 KiB files (1,000 with QUICK)
# in one directory, by 1 process and by 8 processes, through the mount vs a
# native directory on the same file system. No fsync (close commits on
# txdir; durability=fsync, the default). Median of 5 repetitions, each into
# a fresh directory; the figure is files/s. Goal >= 0.4x native.
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init
bm_mount || exit 1
NAT=$BM_DIR/native
mkdir -p "$NAT"
N=10000
[ "$BM_QUICK" = 1 ] && N=1000
REPS=5
[ "$BM_QUICK" = 1 ] && REPS=3

for np in 1 8; do
	tx=() nat=()
	for ((r = 0; r < REPS; r++)); do
		for side in txdir native; do
			if [ $side = txdir ]; then d=$BM_MNT/c$np-$r; else d=$NAT/c$np-$r; fi
			mkdir "$d" || exit 1
			t=$(timeout 600 "$BM_FILEOPS" create "$d" "$N" 4096 "$np") || exit 1
			if [ $side = txdir ]; then tx+=("$t"); else nat+=("$t"); fi
			echo "np=$np rep $r $side: $t s" >&2
			timeout 600 rm -rf "$d"
			sync # settle the journal (and discards) outside the timed part
		done
	done
	ft=$(awk -v n=$N -v t="$(median "${tx[@]}")" 'BEGIN { printf "%.0f", n / t }')
	fn=$(awk -v n=$N -v t="$(median "${nat[@]}")" 'BEGIN { printf "%.0f", n / t }')
	ratio=$(bm_ratio "$ft" "$fn")
	echo "BENCH m6_create_${np}p_txdir $ft files/s $N x 4 KiB create+write+close"
	echo "BENCH m6_create_${np}p_native $fn files/s $BM_FSTYPE"
	bm_row "M6 create+write+close $N x 4 KiB, $np proc" "$ft files/s" "$fn files/s ($BM_FSTYPE)" \
		"$ratio" ">= 0.4x" "$(bm_ge "$ratio" 0.4)"
done
bm_umount
