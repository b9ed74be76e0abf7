#!/usr/bin/env bash
# m8_untar_make — developer workloads through the mount vs a native directory.
#   untar: tar -xf of a tar of /usr/include (a 2,000-file slice with QUICK)
#          into a fresh directory; wall time, no sync.   goal >= 0.4x native
#          Also on floorfs (the same request loop and kernel settings, no
#          engine: what the kernel's FUSE protocol alone costs here), in the
#          same repetitions:                 goal txdir <= 1.10x floorfs's time
#          and the FUSE requests per entry each server read (they should be
#          the same: the kernel sends them, whatever the server does).
#   make:  make -j2 of a generated C project (40 .c files + Makefile, 8 with
#          QUICK) from a clean tree.                     goal >= 0.7x native
# Figures are throughputs (1/time); median of 5 repetitions, interleaved
# (the order of the sides rotates each repetition, and each timed run starts
# after a sync, so no side pays for the writeback another left behind).
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init
bm_fresh_fs 8192 # store and native dir on one new ext4 (see _mountlib.sh)
bm_mount || exit 1
NAT=$BM_DIR/native
mkdir -p "$NAT"
REPS=5
[ "$BM_QUICK" = 1 ] && REPS=3
NSRC=40
TAR=$BM_DIR/include.tar
[ "$BM_QUICK" = 1 ] && NSRC=8
bm_include_tar "$TAR" || exit 1
nfiles=$BM_TAR_FILES tarmb=$BM_TAR_MB

# ---- untar ----
sides="txdir native"
bm_mount_floor && sides="txdir native floor"
tx=() nat=() floor=()
for ((r = 0; r < REPS; r++)); do
	order=$sides
	[ $((r % 2)) = 1 ] && order=$(printf '%s\n' $sides | tac | xargs)
	for side in $order; do
		case " $sides " in *" $side "*) ;; *) continue ;; esac
		sync
		case $side in
		txdir) d=$BM_MNT/u$r ;;
		native) d=$NAT/u$r ;;
		floor) d=$BM_FLOOR/u$r ;;
		esac
		if ! mkdir "$d" || ! t=$(bm_time timeout 600 tar -xf "$TAR" -C "$d"); then
			[ $side = floor ] || exit 1
			sides="txdir native" floor=() # a reference row: drop it, keep the run
			continue
		fi
		case $side in
		txdir) tx+=("$t") ;;
		native) nat+=("$t") ;;
		floor) floor+=("$t") ;;
		esac
		echo "untar rep $r $side: $t s" >&2
		# trees stay until every rep ran: a mass delete slows ext4's inode
		# allocation for minutes and would inflate the next native rep
	done
done
# requests read per entry untarred, per operation (the stats count from the
# mount on: a few requests of the benchmark itself are in them)
per_entry() { # "op=N ..." from Prometheus lines on stdin
	awk -v n=$((nfiles * ${#tx[@]})) '/^txdir_fuse_requests_total/ {
		match($1, /op="[a-z_]+"/); op = substr($1, RSTART + 4, RLENGTH - 5)
		if ($2 >= n / 20) printf "%s=%.2f ", op, $2 / n; tot += $2 }
		END { printf "total=%.2f\n", tot / n }'
}
txreq=$(per_entry <"$BM_MNT/.txdir/stats")
echo "BENCH m8_untar_requests_txdir ${txreq##*total=} per_entry $txreq"
if [ ${#floor[@]} -gt 0 ]; then
	bm_umount_floor
	# floorfs prints its counters at exit (floorfs.c)
	for ((i = 0; i < 100; i++)); do grep -q 'requests_total{op="init"}' "$BM_DIR/floor.log" && break; sleep 0.1; done
	flreq=$(grep -a '^txdir_' "$BM_DIR/floor.log" | per_entry)
	echo "BENCH m8_untar_requests_floor ${flreq##*total=} per_entry $flreq"
	grep -a '_sum{' "$BM_DIR/floor.log" | sed 's/^/floorfs: /' >&2
fi
grep -a '^txdir_op_duration_seconds_sum' "$BM_MNT/.txdir/stats" | sed 's/^/txdirfs: /' >&2
for ((r = 0; r < REPS; r++)); do timeout 600 rm -rf "$BM_MNT/u$r" "$NAT/u$r"; done
mt=$(median "${tx[@]}")
mn=$(median "${nat[@]}")
ratio=$(bm_ratio "$mn" "$mt")
echo "BENCH m8_untar_txdir $mt s $nfiles entries, $tarmb MiB"
echo "BENCH m8_untar_native $mn s $BM_FSTYPE"
bm_row "M8 untar /usr/include ($nfiles entries, $tarmb MiB)" "$mt s" "$mn s ($BM_FSTYPE)" \
	"$ratio" ">= 0.4x" "$(bm_ge "$ratio" 0.4)"
if [ ${#floor[@]} -gt 0 ]; then
	mf=$(median "${floor[@]}")
	echo "BENCH m8_untar_floor $mf s floorfs (no engine)"
	fr=$(bm_ratio "$mt" "$mf")
	bm_row "M8 untar vs the FUSE floor (floorfs: same loop and kernel settings, no engine)" \
		"$mt s" "$mf s (floorfs)" "${fr}x" "<= 1.10x floorfs's time (lower is better)" \
		"$(awk -v a="$fr" 'BEGIN { print (a <= 1.10) ? "PASS" : "MISS" }')"
fi

# ---- make -j2 ----
SRC=$BM_DIR/proj
mkdir -p "$SRC"
for ((i = 0; i < NSRC; i++)); do
	{
		echo "#include <stdio.h>"
		echo "#include <string.h>"
		echo "#include <stdlib.h>"
		for ((k = 0; k < 12; k++)); do
			echo "static int helper_${k}(const char *s, int n) {"
			echo "	int acc = $k; for (int j = 0; j < n; j++) acc = acc * 31 + (unsigned char)s[j % (strlen(s) + 1)];"
			echo "	return acc ^ (int)strtol(\"${k}${i}\", NULL, 10);"
			echo "}"
		done
		echo "int unit_${i}(const char *s) { int a = 0;"
		for ((k = 0; k < 12; k++)); do echo "	a += helper_${k}(s, $((k + i)));"; done
		echo "	return a; }"
	} >"$SRC/u$i.c"
done
{
	echo "#include <stdio.h>"
	for ((i = 0; i < NSRC; i++)); do echo "int unit_${i}(const char *s);"; done
	echo "int main(int argc, char **argv) { int a = 0; (void)argc;"
	for ((i = 0; i < NSRC; i++)); do echo "	a += unit_${i}(argv[0]);"; done
	echo "	printf(\"%d\\n\", a); return 0; }"
} >"$SRC/main.c"
cat >"$SRC/Makefile" <<'MK'
SRCS := $(wildcard *.c)
OBJS := $(SRCS:.c=.o)
CFLAGS := -O2 -g -Wall
prog: $(OBJS)
	$(CC) -o $@ $(OBJS)
%.o: %.c
	$(CC) $(CFLAGS) -c $< -o $@
MK
tx=() nat=()
for ((r = 0; r < REPS; r++)); do
	for side in txdir native; do
		if [ $side = txdir ]; then d=$BM_MNT/m$r; else d=$NAT/m$r; fi
		cp -r "$SRC" "$d" || exit 1
		t=$(bm_time timeout 600 make -s -C "$d" -j2) || exit 1
		"$d/prog" >/dev/null || exit 1
		if [ $side = txdir ]; then tx+=("$t"); else nat+=("$t"); fi
		echo "make rep $r $side: $t s" >&2
		timeout 600 rm -rf "$d"
	done
done
mt=$(median "${tx[@]}")
mn=$(median "${nat[@]}")
ratio=$(bm_ratio "$mn" "$mt")
echo "BENCH m8_make_txdir $mt s make -j2, $((NSRC + 1)) C files"
echo "BENCH m8_make_native $mn s $BM_FSTYPE"
bm_row "M8 make -j2, $((NSRC + 1)) C files" "$mt s" "$mn s ($BM_FSTYPE)" \
	"$ratio" ">= 0.7x" "$(bm_ge "$ratio" 0.7)"
bm_umount
