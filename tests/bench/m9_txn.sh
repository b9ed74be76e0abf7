#!/usr/bin/env bash
# m9_txn — explicit transactions (issue 4).
#   txn100:  one transaction through .txdir/txn: mkdir MNT/.txdir/txn/NAME,
#            create+write+close 100 x 4 KiB files in its root/, write
#            "commit" to its ctl (returns once durable). Timed as a whole and
#            the commit write alone, against sqlite3 (C API) on the same disk:
#            PRAGMA journal_mode=WAL; synchronous=FULL; BEGIN; 100 INSERTs of
#            4 KiB blobs; COMMIT (whole, and COMMIT alone).
#            goals: whole <= 3x sqlite, commit write <= 2x sqlite COMMIT
#            (ratio = txdir/sqlite, lower is better); the parts of the
#            whole (mkdir, files, commit) are reported beside it
#   run-untar: mountctl run MNT -- tar -xf (a tar of /usr/include, a
#            2,000-entry slice with QUICK, as m8) vs native tar -xf; wall
#            time including the commit, no sync for native (as m8).
#            goal throughput >= 0.4x native
#            and vs plain tar -xf on floorfs (the FUSE floor, m8): goal
#            <= 1.3x floorfs's untar time
# Median of 7 repetitions (untar: 5), interleaved, after one warm-up of each
# side; QUICK: 2 repetitions. The untar trees are kept until the end: after
# a mass delete ext4's inode allocator scans recently deleted inodes
# (recently_deleted() under __ext4_new_inode), which makes native tar x
# several times slower for minutes. As root the untar runs on a new ext4
# (bm_fresh_fs), store and native dir alike, so no earlier delete counts.
set -uo pipefail
. "$(dirname "$0")/_mountlib.sh"
bm_init

NFILES=100
FSIZE=4096
REPS=7
UREPS=5
if [ "$BM_QUICK" = 1 ]; then
	REPS=2
	UREPS=2
fi

# ---- helper: txn and sqlite timings -----------------------------------------
# m9 txn MNT NAME NFILES SIZE    -> "whole commit mkdir files rmdir" ms
# m9 files DIR NAME NFILES SIZE  -> ms of the same files written into DIR
# m9 sqlite DB NFILES SIZE TAG   -> "whole commit" ms
M9=$BM_DIR/m9
cat >"$BM_DIR/m9.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SQLITE
#include <sqlite3.h>
#endif
static void die(const char *what, const char *p) { fprintf(stderr, "m9: %s %s: %s\n", what, p ? p : "", strerror(errno)); exit(1); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void fill(char *buf, long size, long seed) { /* distinct content per file */
	unsigned long x = 0x9e3779b97f4a7c15ul ^ (unsigned long)seed * 0x100000001b3ul;
	for (long i = 0; i < size; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; buf[i] = (char)x; }
}
int main(int argc, char **argv) {
	if (argc < 5) { fprintf(stderr, "usage: m9 txn MNT NAME N SIZE | m9 files DIR NAME N SIZE | m9 sqlite DB N SIZE TAG\n"); return 2; }
	if (!strcmp(argv[1], "files") && argc >= 6) { /* the txn's file phase, anywhere */
		const char *dir = argv[2], *name = argv[3];
		long n = atol(argv[4]), size = atol(argv[5]);
		char *buf = malloc(size), path[4096];
		double t0 = now();
		for (long i = 0; i < n; i++) {
			fill(buf, size, (long)(t0 * 1e6) + i);
			snprintf(path, sizeof path, "%s/%s-f%04ld", dir, name, i);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0) die("open", path);
			if (write(fd, buf, size) != size) die("write", path);
			if (close(fd)) die("close", path);
		}
		printf("%.4f\n", (now() - t0) * 1e3);
		return 0;
	}
	if (!strcmp(argv[1], "txn")) {
		const char *mnt = argv[2], *name = argv[3];
		long n = atol(argv[4]), size = atol(argv[5]);
		char *buf = malloc(size), txn[4096], path[4096], st[128];
		snprintf(txn, sizeof txn, "%s/.txdir/txn/%s", mnt, name);
		double t0 = now();
		if (mkdir(txn, 0755)) die("mkdir", txn);
		double t1 = now();
		for (long i = 0; i < n; i++) {
			fill(buf, size, (long)(t0 * 1e6) + i);
			snprintf(path, sizeof path, "%s/root/%s-f%04ld", txn, name, i);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0) die("open", path);
			if (write(fd, buf, size) != size) die("write", path);
			if (close(fd)) die("close", path);
		}
		snprintf(path, sizeof path, "%s/ctl", txn);
		int cfd = open(path, O_WRONLY);
		if (cfd < 0) die("open", path);
		double t2 = now();
		if (write(cfd, "commit\n", 7) != 7) die("commit", path);
		double t3 = now();
		close(cfd);
		snprintf(path, sizeof path, "%s/status", txn);
		int sfd = open(path, O_RDONLY);
		ssize_t k = sfd >= 0 ? read(sfd, st, sizeof st - 1) : -1;
		if (sfd >= 0) close(sfd);
		if (k < 9 || strncmp(st, "committed", 9)) { st[k > 0 ? k : 0] = 0; fprintf(stderr, "m9: status: %s\n", st); return 1; }
		double t4 = now();
		if (rmdir(txn)) die("rmdir", txn);
		double t5 = now();
		printf("%.4f %.4f %.4f %.4f %.4f\n", (t3 - t0) * 1e3, (t3 - t2) * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t5 - t4) * 1e3);
		return 0;
	}
#ifdef HAVE_SQLITE
	if (!strcmp(argv[1], "sqlite") && argc >= 6) {
		const char *dbp = argv[2];
		long n = atol(argv[3]), size = atol(argv[4]);
		const char *tag = argv[5];
		char *buf = malloc(size), key[256], *err = NULL;
		sqlite3 *db;
		sqlite3_stmt *ins;
		if (sqlite3_open(dbp, &db) != SQLITE_OK) { fprintf(stderr, "m9: %s\n", sqlite3_errmsg(db)); return 1; }
#define EXEC(sql) do { if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) { fprintf(stderr, "m9: %s: %s\n", sql, err); return 1; } } while (0)
		EXEC("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
		EXEC("CREATE TABLE IF NOT EXISTS blobs(name TEXT PRIMARY KEY, data BLOB)");
		if (sqlite3_prepare_v2(db, "INSERT INTO blobs(name, data) VALUES(?, ?)", -1, &ins, NULL) != SQLITE_OK) { fprintf(stderr, "m9: %s\n", sqlite3_errmsg(db)); return 1; }
		double t0 = now();
		EXEC("BEGIN");
		for (long i = 0; i < n; i++) {
			fill(buf, size, (long)(t0 * 1e6) + i);
			snprintf(key, sizeof key, "%s-f%04ld", tag, i);
			sqlite3_bind_text(ins, 1, key, -1, SQLITE_TRANSIENT);
			sqlite3_bind_blob(ins, 2, buf, (int)size, SQLITE_TRANSIENT);
			if (sqlite3_step(ins) != SQLITE_DONE) { fprintf(stderr, "m9: insert: %s\n", sqlite3_errmsg(db)); return 1; }
			sqlite3_reset(ins);
		}
		double t1 = now();
		EXEC("COMMIT");
		double t2 = now();
		sqlite3_finalize(ins);
		sqlite3_close(db);
		printf("%.4f %.4f\n", (t2 - t0) * 1e3, (t2 - t1) * 1e3);
		return 0;
	}
#endif
	fprintf(stderr, "m9: unknown mode %s\n", argv[1]);
	return 2;
}
EOF
have_sqlite=0
if cc -O2 -DHAVE_SQLITE -o "$M9" "$BM_DIR/m9.c" -lsqlite3 2>>"$BM_DIR/cc.log"; then
	have_sqlite=1
elif ! dpkg-query -W -f='${Status}' libsqlite3-dev 2>/dev/null | grep -q 'ok installed'; then
	# like `make deps`: install only when missing
	sudo=()
	[ "$BM_ROOT" -eq 0 ] || sudo=(sudo -n)
	echo "m9: installing libsqlite3-dev" >&2
	timeout 300 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y libsqlite3-dev >&2 &&
		cc -O2 -DHAVE_SQLITE -o "$M9" "$BM_DIR/m9.c" -lsqlite3 2>>"$BM_DIR/cc.log" && have_sqlite=1
fi
if [ "$have_sqlite" = 0 ]; then
	cat "$BM_DIR/cc.log" >&2
	cc -O2 -o "$M9" "$BM_DIR/m9.c" || exit 2
fi

# sqlite3 CLI fallback (no libsqlite3-dev): .timer gives each statement's time
sqlite_cli() { # DB N SIZE TAG -> "whole commit" ms
	command -v sqlite3 >/dev/null || return 1
	{
		echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		echo "CREATE TABLE IF NOT EXISTS blobs(name TEXT PRIMARY KEY, data BLOB);"
		echo ".timer on"
		echo "BEGIN;"
		for ((i = 0; i < $2; i++)); do printf "INSERT INTO blobs VALUES('%s-f%04d', randomblob(%d));\n" "$4" "$i" "$3"; done
		echo "COMMIT;"
	} | timeout 120 sqlite3 "$1" | awk '/^Run Time: real/ { s += $4; last = $4 } END { if (NR) printf "%.4f %.4f\n", s * 1e3, last * 1e3 }'
}

bm_mount || exit 1
# the files of the transaction written on floorfs too: the FUSE floor of
# its ~6 requests a file (LOOKUP, CREATE, GETXATTR, WRITE, FLUSH, RELEASE)
have_floor=0
bm_mount_floor && have_floor=1
SQDIR=$BM_DIR/sqlite
mkdir -p "$SQDIR"
DB=$SQDIR/bench.db

# ---- txn100 ------------------------------------------------------------------
tw=() tc=() tm=() tf=() trm=() sw=() sc=() ff=()
for ((r = -1; r < REPS; r++)); do # r = -1: warm-up, not counted
	tag=r$((r + 1))
	read -r w c mk fs rmd < <(timeout 120 "$M9" txn "$BM_MNT" "$tag" "$NFILES" "$FSIZE") || {
		echo "m9: txn rep $r failed" >&2
		exit 1
	}
	[ -n "${rmd:-}" ] || {
		echo "m9: txn rep $r: no timing" >&2
		exit 1
	}
	if [ "$have_sqlite" = 1 ]; then
		read -r qw qc < <(timeout 120 "$M9" sqlite "$DB" "$NFILES" "$FSIZE" "$tag")
	else
		read -r qw qc < <(sqlite_cli "$DB" "$NFILES" "$FSIZE" "$tag")
	fi
	[ -n "${qc:-}" ] || {
		echo "m9: sqlite rep $r failed" >&2
		exit 1
	}
	fl=
	if [ "$have_floor" = 1 ] && ! fl=$(timeout 120 "$M9" files "$BM_FLOOR" "$tag" "$NFILES" "$FSIZE"); then
		have_floor=0 ff=() fl= # a reference: drop it, keep the run
	fi
	echo "txn100 rep $r: txdir whole $w commit $c (mkdir $mk files $fs rmdir $rmd) | sqlite whole $qw commit $qc | floorfs files ${fl:--}" >&2
	[ "$r" -lt 0 ] && continue
	tw+=("$w") tc+=("$c") tm+=("$mk") tf+=("$fs") trm+=("$rmd") sw+=("$qw") sc+=("$qc")
	[ -n "$fl" ] && ff+=("$fl")
done
ms() { awk -v a="$1" 'BEGIN { printf "%.2f", a }'; }
le() { awk -v a="$1" -v g="$2" 'BEGIN { print (a <= g) ? "PASS" : "MISS" }'; }
mw=$(median "${tw[@]}") mc=$(median "${tc[@]}") mmk=$(median "${tm[@]}")
mf=$(median "${tf[@]}") mrm=$(median "${trm[@]}")
qw=$(median "${sw[@]}") qc=$(median "${sc[@]}")
sqlabel="sqlite3 WAL+FULL ($BM_FSTYPE$([ "$have_sqlite" = 1 ] || echo ', CLI .timer'))"
echo "BENCH m9_txn100_whole $(ms "$mw") ms mkdir + $NFILES x $((FSIZE / 1024)) KiB files + commit"
echo "BENCH m9_txn100_commit $(ms "$mc") ms write of commit to ctl (durable)"
echo "BENCH m9_txn100_mkdir $(ms "$mmk") ms mkdir .txdir/txn/NAME"
echo "BENCH m9_txn100_files $(ms "$mf") ms create+write+close $NFILES files in root/"
echo "BENCH m9_txn100_rmdir $(ms "$mrm") ms rmdir of the committed txn (not in whole)"
[ ${#ff[@]} -gt 0 ] &&
	echo "BENCH m9_txn100_files_floor $(ms "$(median "${ff[@]}")") ms the same $NFILES files written on floorfs (the FUSE floor of the files part)"
echo "BENCH m9_sqlite100_whole $(ms "$qw") ms BEGIN + $NFILES INSERTs + COMMIT"
echo "BENCH m9_sqlite100_commit $(ms "$qc") ms COMMIT"
r1=$(bm_ratio "$mw" "$qw")
r2=$(bm_ratio "$mc" "$qc")
bm_row "M9 txn: $NFILES x $((FSIZE / 1024)) KiB files, begin+write+commit (whole)" "$(ms "$mw") ms" \
	"$(ms "$qw") ms ($sqlabel)" "${r1}x" "<= 3x sqlite (txdir/sqlite, lower is better)" "$(le "$r1" 3)"
bm_row "M9 txn: commit write alone ($NFILES files)" "$(ms "$mc") ms" \
	"$(ms "$qc") ms (sqlite COMMIT)" "${r2}x" "<= 2x sqlite (txdir/sqlite, lower is better)" "$(le "$r2" 2)"

# ---- mountctl run -- tar x ------------------------------------------------------
# on a new ext4, store and native dir alike (bm_fresh_fs)
[ "$have_floor" = 1 ] && bm_umount_floor
bm_umount
bm_fresh_fs 8192
bm_mount || exit 1
NAT=$BM_DIR/native
mkdir -p "$NAT"
TAR=$BM_DIR/include.tar
bm_include_tar "$TAR" || exit 1
nfiles=$BM_TAR_FILES tarmb=$BM_TAR_MB
cat "$TAR" >/dev/null # page cache
sides="txdir native"
bm_mount_floor && sides="txdir native floor"
tx=() nat=() floor=()
for ((r = -1; r < UREPS; r++)); do
	order=$sides
	[ $((r % 2)) = 1 ] && order=$(printf '%s\n' $sides | tac | xargs)
	for side in $order; do
		case " $sides " in *" $side "*) ;; *) continue ;; esac
		sync # no side pays for the writeback of another
		if [ $side = floor ]; then
			d=$BM_FLOOR/u$((r + 1))
			if ! mkdir "$d" || ! t=$(bm_time timeout 600 tar -xf "$TAR" -C "$d"); then
				sides="txdir native" floor=() # a reference side: drop it, keep the run
				continue
			fi
		elif [ $side = txdir ]; then
			d=$BM_MNT/u$((r + 1))
			t=$(bm_time timeout 600 "$MOUNTCTL" run "$BM_MNT" -- mkdir "$d") || exit 1 # outside the timing
			t=$(bm_time timeout 600 "$MOUNTCTL" run "$BM_MNT" -- tar -xf "$TAR" -C "$d") || exit 1
			[ -e "$d/include" ] || {
				echo "m9: run-untar: nothing committed in $d" >&2
				exit 1
			}
		else
			d=$NAT/u$((r + 1))
			mkdir "$d" || exit 1
			t=$(bm_time timeout 600 tar -xf "$TAR" -C "$d") || exit 1
		fi
		echo "run-untar rep $r $side: $t s" >&2
		# no rm -rf between repetitions: ext4 then scans past recently
		# deleted inodes (recently_deleted() in __ext4_new_inode) for a
		# minute or more, which slows the native side several-fold
		[ "$r" -lt 0 ] && continue
		case $side in
		txdir) tx+=("$t") ;;
		native) nat+=("$t") ;;
		floor) floor+=("$t") ;;
		esac
	done
done
[ ${#floor[@]} -gt 0 ] && bm_umount_floor
mt=$(median "${tx[@]}")
mn=$(median "${nat[@]}")
ratio=$(bm_ratio "$mn" "$mt")
echo "BENCH m9_run_untar_txdir $mt s mountctl run -- tar x, $nfiles entries, $tarmb MiB, incl. commit"
nmin=$(printf '%s\n' "${nat[@]}" | sort -g | head -n 1)
echo "BENCH m9_run_untar_native $mn s $BM_FSTYPE"
echo "BENCH m9_run_untar_native_min $nmin s fastest native rep (ext4 inode allocation slows after recent mass deletes on the fs)"
bm_row "M9 mountctl run -- tar x /usr/include ($nfiles entries, $tarmb MiB)" "$mt s" "$mn s ($BM_FSTYPE)" \
	"${ratio}x" ">= 0.4x native throughput" "$(bm_ge "$ratio" 0.4)"
if [ ${#floor[@]} -gt 0 ]; then
	mf=$(median "${floor[@]}")
	fr=$(bm_ratio "$mt" "$mf")
	echo "BENCH m9_run_untar_floor $mf s plain tar x on floorfs (no engine)"
	bm_row "M9 mountctl run -- tar x vs plain tar x on the FUSE floor (floorfs)" "$mt s" \
		"$mf s (floorfs)" "${fr}x" "<= 1.3x floorfs's untar time (lower is better)" \
		"$(le "$fr" 1.3)"
fi
bm_umount
