#!/usr/bin/env bash
# m10_fsync — the cost of one durable save of a new small file (issue 9).
#   row 1: p50 of fsync() of a new 4 KiB file on the mount (open O_CREAT,
#          write, fsync, close) vs p50 of a bare fdatasync of 4 KiB appended
#          to a file on the store's disk, interleaved in the same run
#          (tests/bench/fsynclat/fsynclat.c lat). Goal <= 1.3x.
#   row 2: 8 processes each saving new 4 KiB files durably: txdir
#          open(O_CREAT|O_EXCL)/write/fsync/close vs native tmp + write +
#          fsync + close + rename + fsync(dir), new names every time (m7's
#          in-place saves hide the cost of creating). Goal >= 1.5x.
# Medians of REPS runs (400 rounds each; QUICK: 100).
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init
SRC=$(cd "$(dirname "$0")" && pwd)/fsynclat/fsynclat.c
LAT=$BM_DIR/fsynclat
cc -O2 -o "$LAT" "$SRC" || {
	echo "bench: cannot build fsynclat" >&2
	exit 2
}
bm_mount "${M10_OPTS:-}" || exit 1
DISK=$BM_DIR/disk
NAT=$BM_DIR/native
mkdir -p "$DISK" "$NAT" || exit 1
N=400 K=100 REPS=5
[ "$BM_QUICK" = 1 ] && N=100 K=20 REPS=3

fs=() ap=() zr=() cl=()
for ((r = 0; r < REPS; r++)); do
	mkdir "$BM_MNT/l$r" || exit 1
	line=$(timeout 600 "$LAT" lat "$BM_MNT/l$r" "$DISK" "$N") || exit 1
	echo "rep $r: $line" >&2
	for kv in $line; do
		case $kv in
		fsync=*) fs+=("${kv#*=}") ;;
		close=*) cl+=("${kv#*=}") ;;
		fdatasync_append=*) ap+=("${kv#*=}") ;;
		fdatasync_zeroed=*) zr+=("${kv#*=}") ;;
		esac
	done
done
f=$(median "${fs[@]}") a=$(median "${ap[@]}") z=$(median "${zr[@]}") c=$(median "${cl[@]}")
ratio=$(bm_ratio "$f" "$a")
echo "BENCH m10_fsync_p50 $f us fsync of a new 4 KiB file on the mount"
echo "BENCH m10_close_p50 $c us close after that fsync"
echo "BENCH m10_fdatasync_append_p50 $a us bare fdatasync, 4 KiB appended ($BM_FSTYPE)"
echo "BENCH m10_fdatasync_zeroed_p50 $z us bare fdatasync, 4 KiB over pre-zeroed ($BM_FSTYPE)"
# lower is better here: the row's ratio is txdir / baseline
bm_row "fsync p50 small file vs bare fdatasync" "$f us" "$a us (append, $BM_FSTYPE)" \
	"$ratio" "<= 1.3x" "$(awk -v a="$ratio" 'BEGIN { print (a <= 1.3) ? "PASS" : "MISS" }')"

tx=() nat=()
for ((r = 0; r < REPS; r++)); do
	mkdir "$BM_MNT/s$r" "$NAT/s$r" || exit 1
	t=$(timeout 600 "$LAT" saves "$BM_MNT/s$r" "$K" 8 new) || exit 1
	tx+=("$t")
	t2=$(timeout 600 "$LAT" saves "$NAT/s$r" "$K" 8 rename) || exit 1
	nat+=("$t2")
	echo "rep $r: txdir $t s, native $t2 s" >&2
done
total=$((K * 8))
st=$(awk -v n=$total -v t="$(median "${tx[@]}")" 'BEGIN { printf "%.0f", n / t }')
sn=$(awk -v n=$total -v t="$(median "${nat[@]}")" 'BEGIN { printf "%.0f", n / t }')
ratio=$(bm_ratio "$st" "$sn")
echo "BENCH m10_newsave_txdir $st saves/s 8 procs, new file each: open/write/fsync/close"
echo "BENCH m10_newsave_native $sn saves/s 8 procs, new name each: tmp+fsync+rename+dir fsync ($BM_FSTYPE)"
bm_row "8-process new-file durable saves" "$st saves/s" "$sn saves/s (tmp+rename, $BM_FSTYPE)" \
	"$ratio" ">= 1.5x" "$(bm_ge "$ratio" 1.5)"
bm_umount
