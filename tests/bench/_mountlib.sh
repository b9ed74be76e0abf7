# tests/bench/_mountlib.sh — helpers for the mount-level benchmarks (sourced;
# shellcheck shell=bash disable=SC2034
# run.sh skips files whose name starts with "_").
#
#   bm_init           scratch dir ($BENCH_DIR or a fresh one), EXIT trap,
#                     sets BM_DIR, BM_QUICK, BM_FSTYPE; builds the fileops
#                     helper (BM_FILEOPS) with cc
#   bm_include_tar F  tar of /usr/include into F (a 2,000-entry slice with
#                     QUICK); sets BM_TAR_FILES and BM_TAR_MB
#   bm_fresh_fs MB    as root: moves BM_DIR onto a new ext4 (loop device over
#                     a sparse file) for workloads that create many files, so
#                     the native baseline does not depend on what earlier
#                     runs deleted on the scratch fs; store and native dirs
#                     both live there
#   bm_mount [OPTS]   fresh store + mount point under BM_DIR; sets BM_STORE,
#                     BM_MNT, BM_PID; the server is bounded by timeout
#   bm_umount         fusermount3 -u (then -uz), waits for the server (bounded)
#   bm_mount_floor    floorfs (txdirfs's request loop, no engine: the FUSE
#                     floor, tests/bench/floorfs/) on BM_FLOOR; returns 1
#                     when the binary is missing (the row is then skipped);
#                     bm_umount_floor unmounts it
#   bm_time CMD...    runs CMD, prints elapsed seconds (CMD output to stderr)
#   median N...       median of numbers
#   bm_row TARGET TXDIR BASE RATIO GOAL VERDICT   one TARGET table row
#   bm_ratio A B      A/B with 2 decimals;  bm_ge X GOAL -> PASS|MISS
#
# Environment: TXDIRFS (required), MOUNTCTL (optional: store init),
# BENCH_DIR, BENCH_QUICK or QUICK.

: "${TXDIRFS:?TXDIRFS must name the txdirfs binary}"
BM_MNTS=()
BM_PIDS=()
BM_SERVER_LIMIT=${BM_SERVER_LIMIT:-900}

bm_cleanup() {
	local m p i
	for m in "${BM_MNTS[@]}"; do
		if mountpoint -q "$m" 2>/dev/null; then
			timeout 20 fusermount3 -u "$m" 2>/dev/null || timeout 20 fusermount3 -uz "$m" 2>/dev/null
		fi
	done
	for p in "${BM_PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill "$p" 2>/dev/null
	done
	if [ -n "${BM_FRESH_MNT:-}" ]; then
		timeout 60 umount "$BM_FRESH_MNT" || timeout 20 umount -l "$BM_FRESH_MNT"
	fi
	[ -n "${BM_OWN_DIR:-}" ] && rm -rf --one-file-system "$BM_OWN_DIR"
	return 0
}

bm_include_tar() { # TAR
	if [ "$BM_QUICK" = 1 ]; then
		(cd /usr && timeout 60 find include -maxdepth 2 >"$BM_DIR/all.list") || return 1
		head -n 2000 "$BM_DIR/all.list" >"$BM_DIR/tar.list"
		timeout 120 tar -C /usr --no-recursion -cf "$1" -T "$BM_DIR/tar.list" || return 1
	else
		timeout 300 tar -C /usr -cf "$1" include || return 1
	fi
	BM_TAR_FILES=$(tar -tf "$1" | wc -l)
	BM_TAR_MB=$(du -m "$1" | cut -f1)
}

bm_fresh_fs() { # SIZE_MB
	local img=$BM_DIR/fresh.img mnt=$BM_DIR/fresh
	if [ "$BM_ROOT" -ne 0 ] || ! command -v mkfs.ext4 >/dev/null; then
		echo "bench: not root or no mkfs.ext4: baseline on $BM_DIR ($BM_FSTYPE)" >&2
		return 0
	fi
	if ! truncate -s "${1}M" "$img" || ! timeout 120 mkfs.ext4 -q -F "$img" ||
		! mkdir -p "$mnt" || ! timeout 60 mount -o loop "$img" "$mnt"; then
		echo "bench: no fresh ext4: baseline on $BM_DIR ($BM_FSTYPE)" >&2
		return 0
	fi
	BM_FRESH_MNT=$mnt
	BM_DIR=$mnt
	BM_FSTYPE="fresh ext4"
}

bm_init() {
	trap bm_cleanup EXIT
	trap 'exit 130' INT TERM
	if [ -n "${BENCH_DIR:-}" ]; then
		BM_DIR=$BENCH_DIR
	else
		BM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/txdir-mbench.XXXXXX") || exit 2
		BM_OWN_DIR=$BM_DIR
	fi
	BM_QUICK=0
	case "${BENCH_QUICK:-${QUICK:-0}}" in "" | 0) ;; *) BM_QUICK=1 ;; esac
	BM_FSTYPE=$(findmnt -n -o FSTYPE -T "$BM_DIR" 2>/dev/null || stat -f -c %T "$BM_DIR")
	BM_ROOT=$(id -u)
	bm_build_fileops
}

bm_init_store() { # STORE
	if [ -n "${MOUNTCTL:-}" ] && [ -x "$MOUNTCTL" ]; then
		timeout 60 "$MOUNTCTL" init "$1" >/dev/null
	elif [ -x "${TXDIR_BUILD:-}/tests/mount/mkstore" ]; then
		timeout 60 "$TXDIR_BUILD/tests/mount/mkstore" "$1" >/dev/null
	else
		echo "bench: no \$MOUNTCTL to init a store" >&2
		return 1
	fi
}

BM_N=0
bm_mount() { # [OPTS]
	local opts=${1:-} i
	BM_N=$((BM_N + 1))
	BM_STORE=$BM_DIR/store$BM_N
	BM_MNT=$BM_DIR/mnt$BM_N
	mkdir -p "$BM_MNT" || return 1
	bm_init_store "$BM_STORE" || return 1
	BM_MNTS+=("$BM_MNT")
	timeout -k 5 "$BM_SERVER_LIMIT" "$TXDIRFS" "$BM_STORE" "$BM_MNT" -f ${opts:+-o "$opts"} \
		</dev/null >"$BM_DIR/server$BM_N.log" 2>&1 &
	BM_PID=$!
	BM_PIDS+=("$BM_PID")
	for ((i = 0; i < 400; i++)); do
		if mountpoint -q "$BM_MNT" && timeout 10 stat "$BM_MNT" >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$BM_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "bench: txdirfs did not mount; log:" >&2
	cat "$BM_DIR/server$BM_N.log" >&2
	return 1
}

bm_mount_floor() {
	local bin=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}/tests/bench/floorfs i
	[ -x "$bin" ] || return 1
	BM_FLOOR=$BM_DIR/floor
	mkdir -p "$BM_FLOOR" || return 1
	BM_MNTS+=("$BM_FLOOR")
	timeout -k 5 "$BM_SERVER_LIMIT" "$bin" "$BM_FLOOR" </dev/null >"$BM_DIR/floor.log" 2>&1 &
	BM_PIDS+=("$!")
	for ((i = 0; i < 400; i++)); do
		mountpoint -q "$BM_FLOOR" && return 0
		kill -0 "$!" 2>/dev/null || break
		sleep 0.05
	done
	echo "bench: floorfs did not mount" >&2
	return 1
}

bm_umount_floor() {
	timeout 20 fusermount3 -u "$BM_FLOOR" || timeout 20 fusermount3 -uz "$BM_FLOOR"
}

bm_umount() {
	local i
	if mountpoint -q "$BM_MNT" 2>/dev/null; then
		timeout 60 fusermount3 -u "$BM_MNT" 2>/dev/null || timeout 20 fusermount3 -uz "$BM_MNT"
	fi
	for ((i = 0; i < 300; i++)); do
		kill -0 "$BM_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill "$BM_PID" 2>/dev/null && echo "bench: txdirfs still running after umount, killed" >&2
	wait "$BM_PID" 2>/dev/null
	rm -rf --one-file-system "$BM_STORE" "$BM_MNT"
}

# Elapsed seconds of CMD (its stdout goes to stderr: the log).
bm_time() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >&2 || {
		echo "bench: command failed: $*" >&2
		return 1
	}
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", (b - a) / 1e9 }'
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print 0; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bm_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "0" }'; }
bm_ge() { awk -v a="$1" -v g="$2" 'BEGIN { print (a >= g) ? "PASS" : "MISS" }'; }
bm_fmt() { awk -v a="$1" -v f="$2" 'BEGIN { printf f, a }'; } # VALUE PRINTF-FORMAT

bm_row() { # TARGET TXDIR BASE RATIO GOAL VERDICT
	echo "TARGET | $1 | $2 | $3 | $4 | $5 | $6 |"
}

bm_drop_caches() {
	sync
	[ "$BM_ROOT" -eq 0 ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
}

# A small C helper for the file-heavy workloads, so that per-file cost is
# syscalls and not fork/exec of coreutils.
#   fileops create DIR NFILES SIZE NPROC      create+write+close NFILES files
#   fileops save DIR NSAVES SIZE NPROC MODE   each process saves its own file
#           NSAVES times; MODE fsync: open/write/fsync/close in place;
#           MODE rename: tmp + write + fsync + close + rename + fsync(dir)
# Prints elapsed seconds (all processes, fork to last exit).
bm_build_fileops() {
	BM_FILEOPS=$BM_DIR/fileops
	cat >"$BM_DIR/fileops.c" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static void die(const char *what, const char *p) { perror(p ? p : what); _exit(1); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
	if (argc < 6) { fprintf(stderr, "usage\n"); return 2; }
	const char *op = argv[1], *dir = argv[2];
	long n = atol(argv[3]), size = atol(argv[4]), np = atol(argv[5]);
	const char *mode = argc > 6 ? argv[6] : "fsync";
	char *buf = malloc(size);
	for (long i = 0; i < size; i++) buf[i] = (char)(i * 131 + 7);
	double t0 = now();
	for (long p = 0; p < np; p++) {
		pid_t pid = fork();
		if (pid < 0) die("fork", NULL);
		if (pid) continue;
		char path[4096], tmp[4096];
		if (!strcmp(op, "create")) {
			for (long i = p; i < n; i += np) {
				snprintf(path, sizeof path, "%s/p%ld-f%06ld", dir, p, i);
				int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
				if (fd < 0) die(NULL, path);
				if (write(fd, buf, size) != size) die("write", path);
				if (close(fd)) die("close", path);
			}
		} else {
			int dfd = open(dir, O_RDONLY | O_DIRECTORY);
			if (dfd < 0) die(NULL, dir);
			snprintf(path, sizeof path, "%s/save-%ld", dir, p);
			snprintf(tmp, sizeof tmp, "%s/.save-%ld.tmp", dir, p);
			for (long i = 0; i < n; i++) {
				buf[0] = (char)i;
				int rn = !strcmp(mode, "rename");
				int fd = open(rn ? tmp : path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
				if (fd < 0) die(NULL, path);
				if (write(fd, buf, size) != size) die("write", path);
				if (fsync(fd)) die("fsync", path);
				if (close(fd)) die("close", path);
				if (rn) {
					if (rename(tmp, path)) die("rename", tmp);
					if (fsync(dfd)) die("fsync dir", dir);
				}
			}
		}
		_exit(0);
	}
	int st, bad = 0;
	while (wait(&st) > 0) if (!WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
	printf("%.4f\n", now() - t0);
	return bad;
}
EOF
	cc -O2 -o "$BM_FILEOPS" "$BM_DIR/fileops.c" || {
		echo "bench: cannot build fileops" >&2
		exit 2
	}
}
