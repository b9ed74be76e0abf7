#!/usr/bin/env bash
# m5_seqio — sequential 1 GiB I/O through the mount vs a native directory on
# the same file system (16 MiB with QUICK).
#   write+fsync: fio rw=write bs=1M end_fsync=1 (random buffers), wall time
#                including the final fsync and close     goal >= 0.6x native
#   read warm:   dd bs=1M after one untimed read          goal >= 0.9x native
#   read cold:   dd bs=1M after drop_caches (root only)   goal >= 0.7x native
#   read warm on floorfs (txdirfs's loop and kernel settings, no engine), in
#   the same repetitions: these reads never reach a server, so this is the
#   kernel's FUSE page cache against itself    goal txdir >= 0.95x floorfs
# Median of 5 repetitions, txdir, native and floorfs interleaved.
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init
bm_mount || exit 1
NAT=$BM_DIR/native
mkdir -p "$NAT"
MB=1024
[ "$BM_QUICK" = 1 ] && MB=16
REPS=5
[ "$BM_QUICK" = 1 ] && REPS=3
echo "fs type of scratch dir: $BM_FSTYPE" >&2

fio_write() { # FILE
	timeout 600 fio --name=w --filename="$1" --rw=write --bs=1M --size=${MB}M --ioengine=psync \
		--end_fsync=1 --fallocate=none --output=/dev/null
}
dd_read() { timeout 600 dd if="$1" of=/dev/null bs=1M status=none; }

# The warm read on floorfs: the file in its memory (a memfd), read back
# through the kernel's FUSE page cache as txdir's is.
sides="txdir native"
bm_mount_floor && sides="txdir native floor"
declare -A T
for ((r = 0; r < REPS; r++)); do
	for side in $sides; do
		case " $sides " in *" $side "*) ;; *) continue ;; esac
		if [ $side = floor ]; then
			f=$BM_FLOOR/seq$r
			# a reference side: a failure drops it, not the run
			if ! fio_write "$f" || ! dd_read "$f" || ! t=$(bm_time dd_read "$f"); then
				sides="txdir native"
				unset 'T[rw_floor]'
				continue
			fi
			T[rw_floor]+="$t "
			rm -f "$f"
			echo "rep $r floor: warm $t" >&2
			continue
		fi
		case $side in txdir) f=$BM_MNT/seq$r ;; native) f=$NAT/seq$r ;; esac
		t=$(bm_time fio_write "$f") || exit 1
		T[w_$side]+="$t "
		dd_read "$f"
		t=$(bm_time dd_read "$f") || exit 1
		T[rw_$side]+="$t "
		if [ "$BM_ROOT" -eq 0 ]; then
			bm_drop_caches
			t=$(bm_time dd_read "$f") || exit 1
			T[rc_$side]+="$t "
		fi
		rm -f "$f"
		sync
		echo "rep $r $side: write ${T[w_$side]} warm ${T[rw_$side]} cold ${T[rc_$side]:-}" >&2
	done
done

case " $sides " in *" floor "*) bm_umount_floor ;; esac

mbs() { # SECONDS... -> MiB/s of their median
	awk -v m=$MB -v t="$(median "$@")" 'BEGIN { printf "%.0f", m / t }'
}

report() { # KEY LABEL GOAL
	local mbs_t mbs_n ratio
	# shellcheck disable=SC2086
	mbs_t=$(mbs ${T[${1}_txdir]})
	# shellcheck disable=SC2086
	mbs_n=$(mbs ${T[${1}_native]})
	ratio=$(bm_ratio "$mbs_t" "$mbs_n")
	echo "BENCH m5_${1}_txdir $mbs_t MiB/s $2"
	echo "BENCH m5_${1}_native $mbs_n MiB/s $2 ($BM_FSTYPE)"
	bm_row "M5 $2" "$mbs_t MiB/s" "$mbs_n MiB/s ($BM_FSTYPE)" "$ratio" ">= ${3}x" "$(bm_ge "$ratio" "$3")"
}
report w "seq write+fsync ${MB} MiB" 0.6
report rw "seq read ${MB} MiB, warm cache" 0.9
if [ -n "${T[rw_floor]:-}" ]; then
	# shellcheck disable=SC2086
	mbs_f=$(mbs ${T[rw_floor]})
	# shellcheck disable=SC2086
	mbs_t=$(mbs ${T[rw_txdir]})
	ratio=$(bm_ratio "$mbs_t" "$mbs_f")
	echo "BENCH m5_rw_floor $mbs_f MiB/s floorfs (no engine)"
	bm_row "M5 seq read ${MB} MiB, warm cache, vs the FUSE floor (floorfs)" "$mbs_t MiB/s" \
		"$mbs_f MiB/s (floorfs)" "$ratio" ">= 0.95x floorfs" "$(bm_ge "$ratio" 0.95)"
fi
if [ "$BM_ROOT" -eq 0 ]; then
	report rc "seq read ${MB} MiB, cold cache" 0.7
else
	echo "BENCH m5_rc skipped - not root, cannot drop caches"
fi
bm_umount
