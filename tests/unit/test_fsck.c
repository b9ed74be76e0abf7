/*
 * test_fsck.c — engine/fsck.c on logs the shell tests cannot shape: many
 * small segments (wal.h W3: damage before a settled successor's
 * prev_end_lsn is corruption, never a tail), damage in the middle of the
 * last segment told from a torn tail, a garbage tail, a held LOCK, and
 * the record callback inspect uses.
 *
 * A store is written by a child that opens it, commits, and exits without
 * closing (a crash: no final checkpoint, every commit only in the log).
 * Whether its syncs settled a rotated segment's header (W4) is timing, so
 * the W3 case settles the one it needs itself.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "../../engine/fsck.h"
#include "../../engine/rec.h"
#include "../../engine/store.h"
#include "../../engine/wal.h"
#include "../../engine/txdir.h"
#include "../../engine/txn.h"
#include "../support/faultos.h"
#include "../support/txdtest.h"

static char *store;

static void setup(void)
{
	store = tt_mkstore();
	cr_assert_not_null(store);
}

static void teardown(void)
{
	tt_rmtree(store);
	free(store);
}

TestSuite(fsck, .init = setup, .fini = teardown, .timeout = 120);

/* nfiles commits of small files by a child that then dies (no close). */
static void crash_store(int nfiles, uint64_t seg_bytes)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct txd_opts o = {.durability = TXD_DUR_FULL, .wal_segment_bytes = seg_bytes};
		struct txd_fs *fs;
		if (txd_fs_open(store, &o, &fs, NULL))
			_exit(2);
		for (int i = 0; i < nfiles; i++) {
			char name[32], body[64];
			snprintf(name, sizeof(name), "f%03d", i);
			snprintf(body, sizeof(body), "contents of file %d\n", i);
			if (tt_put(fs, name, body, strlen(body)))
				_exit(3);
		}
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer exit %d", WEXITSTATUS(st));
}

struct got {
	struct fsck_problem p[32];
	int n;
};

static void collect(void *arg, const struct fsck_problem *p)
{
	struct got *g = arg;
	if (g->n < 32)
		g->p[g->n++] = *p;
}

static int run(struct got *g, bool repair, struct fsck_result *r)
{
	memset(g, 0, sizeof(*g));
	struct fsck_opts o = {.repair = repair, .report = collect, .arg = g};
	return fsck_run(store, &o, r);
}

static char *seg_path(uint32_t seg)
{
	char *p;
	cr_assert(asprintf(&p, "%s/coordination/dtc/wal/seg-%08u", store, seg) > 0);
	return p;
}

/* Offset of the k-th record (0-based) of a segment, and its lsn. */
static uint64_t record_at(uint32_t seg, int k, uint64_t *lsn)
{
	char *p = seg_path(seg);
	FILE *f = fopen(p, "rb");
	free(p);
	cr_assert_not_null(f);
	uint64_t off = WAL_SEG_HDR_SIZE;
	for (int i = 0;; i++) {
		uint8_t h[32];
		cr_assert_eq(fseek(f, (long)off, SEEK_SET), 0);
		cr_assert_eq(fread(h, 1, 32, f), 32u);
		uint32_t magic, len;
		memcpy(&magic, h, 4);
		memcpy(&len, h + 4, 4);
		cr_assert_eq(magic, 0x52575854u, "record %d of seg %u", i, seg);
		if (i == k) {
			memcpy(lsn, h + 8, 8);
			fclose(f);
			return off;
		}
		off += 32 + (((uint64_t)len + 7) & ~7ull);
	}
}

static void flip(uint32_t seg, uint64_t off)
{
	char *p = seg_path(seg);
	int fd = open(p, O_RDWR);
	free(p);
	cr_assert_geq(fd, 0);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0xff;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

/* W4: the header of seg as a sync settles it (flags 0, checksum redone);
 * whether the writer's syncs got to it before the crash is timing. */
static void settle(uint32_t seg)
{
	char *p = seg_path(seg);
	int fd = open(p, O_RDWR);
	free(p);
	cr_assert_geq(fd, 0);
	uint8_t h[WAL_SEG_HDR_SIZE];
	cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	h[40] = 0;
	uint64_t sum = XXH64(h, 56, 0);
	memcpy(h + 56, &sum, 8);
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
}

static uint32_t count_segments(void)
{
	char *p;
	cr_assert(asprintf(&p, "%s/coordination/dtc/wal", store) > 0);
	DIR *d = opendir(p);
	free(p);
	uint32_t n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += !strncmp(e->d_name, "seg-", 4);
	closedir(d);
	return n;
}

static bool has(const struct got *g, const char *kind, const char *what)
{
	for (int k = 0; k < g->n; k++)
		if (!strcmp(g->p[k].kind, kind) && strstr(g->p[k].what, what))
			return true;
	return false;
}

Test(fsck, many_segments_clean)
{
	crash_store(60, 4096);
	cr_assert_gt(count_segments(), 3);
	struct got g;
	struct fsck_result r;
	cr_assert_eq(run(&g, false, &r), 0);
	cr_assert_eq(r.errors, 0, "%s: %s", g.p[0].where, g.p[0].what);
	cr_assert_eq(r.files, 60);
	cr_assert_geq(r.commits, 120); /* create + content per file */
	cr_assert_eq(r.segments, count_segments());
	fsck_result_free(&r);
}

/* Two directories moved into each other (a store written before txn.c
 * refused it): fsck names both as unreachable from the root. */
Test(fsck, directories_cut_off_the_tree_are_found)
{
	struct txd_fs *fs;
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	cr_assert_eq(tt_mkdir(fs, "X"), 0);
	cr_assert_eq(tt_mkdir(fs, "Y"), 0);
	cr_assert_eq(tt_put(fs, "X/f", "lost", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "t1"), 0);
	cr_assert_eq(tt_txn_begin(fs, "t2"), 0);
	cr_assert_eq(tt_rename(fs, ".txdir/txn/t1/root/X", ".txdir/txn/t1/root/Y/X", 0), 0);
	cr_assert_eq(tt_rename(fs, ".txdir/txn/t2/root/Y", ".txdir/txn/t2/root/X/Y", 0), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t1", "commit"), 0);
	txn_test_skip_cycle_check = true;
	int err = tt_txn_cmd(fs, "t2", "commit");
	txn_test_skip_cycle_check = false;
	cr_assert_eq(err, 0, "the cycle was made");
	txd_fs_close(fs);
	struct got g;
	struct fsck_result r;
	cr_assert_eq(run(&g, false, &r), 0);
	cr_expect_eq(r.errors, 2, "X and Y");
	cr_expect(has(&g, "tree", "directory not reachable from the root"));
	fsck_result_free(&r);
}

/* W3: a bad record in an older segment, before the next one's settled
 * prev_end_lsn: corruption, not a tail, and --repair leaves it alone. */
Test(fsck, damage_in_older_segment_is_corruption)
{
	crash_store(60, 4096);
	settle(2); /* a sync after the rotation would have (W4) */
	uint64_t lsn, off = record_at(1, 2, &lsn);
	flip(1, off + 40);
	struct got g;
	struct fsck_result r;
	cr_assert_eq(run(&g, true, &r), 0);
	cr_assert_geq(r.errors, 1);
	cr_assert_eq(r.fixed, 0);
	cr_assert(has(&g, "wal", "checksum mismatch"), "%s", g.n ? g.p[0].what : "none");
	cr_assert(strstr(g.p[0].affects, "vouched for by seg-00000002"), "%s", g.p[0].affects);
	fsck_result_free(&r);
}

/* W1/W2: in the last segment, a bad record followed by valid ones is
 * damage in the middle (the later commits are named), not a torn tail. */
Test(fsck, damage_in_last_segment_is_not_a_tail)
{
	crash_store(8, 0);
	uint64_t lsn, off = record_at(1, 5, &lsn);
	flip(1, off + 40);
	struct got g;
	struct fsck_result r;
	cr_assert_eq(run(&g, true, &r), 0);
	cr_assert_eq(r.errors, 1);
	cr_assert_eq(r.fixed, 0);
	cr_assert(has(&g, "wal", "damage in the middle"));
	cr_assert(strstr(g.p[0].affects, "valid records after it"), "%s", g.p[0].affects);
	cr_assert_eq(r.last_lsn, lsn - 1);
	fsck_result_free(&r);
	/* nothing was dropped: a second look sees the same */
	cr_assert_eq(run(&g, false, &r), 0);
	cr_assert(has(&g, "wal", "damage in the middle"));
	fsck_result_free(&r);
}

/* W2: garbage after the last record is a torn tail; --repair (recovery)
 * ends the log there and the store is clean after. */
Test(fsck, garbage_tail_repaired)
{
	crash_store(8, 0);
	uint64_t lsn, off = record_at(1, 15, &lsn);
	char *p = seg_path(1);
	int fd = open(p, O_RDWR);
	free(p);
	cr_assert_geq(fd, 0);
	uint64_t end;
	uint32_t len;
	cr_assert_eq(pread(fd, &len, 4, (off_t)off + 4), 4);
	end = off + 32 + ((len + 7) & ~7u);
	cr_assert_eq(pwrite(fd, "TXWRgarbage!", 12, (off_t)end), 12);
	close(fd);
	struct got g;
	struct fsck_result r;
	cr_assert_eq(run(&g, false, &r), 0);
	cr_assert_eq(r.errors, 1);
	cr_assert(has(&g, "torn-tail", "torn tail"));
	cr_assert_eq(r.last_lsn, lsn);
	fsck_result_free(&r);
	cr_assert_eq(run(&g, true, &r), 0);
	cr_assert_eq(r.errors, 0, "%s", g.p[0].what);
	cr_assert_eq(r.fixed, 1);
	cr_assert_eq(r.files, 8);
	fsck_result_free(&r);
	cr_assert_eq(run(&g, false, &r), 0);
	cr_assert_eq(r.errors + r.fixed, 0);
	fsck_result_free(&r);
}

/* S3: a held LOCK is refused with the holder's pid, nothing read. */
Test(fsck, held_store_refused)
{
	struct txd_opts o = {.durability = TXD_DUR_NONE};
	struct txd_fs *fs;
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	struct got g;
	struct fsck_result r;
	cr_assert_eq(run(&g, false, &r), -TXD_ELOCKED);
	cr_assert_eq(r.holder, getpid());
	fsck_result_free(&r);
	txd_fs_close(fs);
	cr_assert_eq(run(&g, false, &r), 0);
	cr_assert_eq(r.errors, 0);
	fsck_result_free(&r);
}

static int count_rec(void *arg, const struct fsck_rec *rec)
{
	uint64_t *n = arg;
	if (rec->type == WAL_REC_COMMIT && rec->lsn == n[1] + 1)
		n[0]++;
	n[1] = rec->lsn;
	return 0;
}

Test(fsck, record_callback_in_log_order)
{
	crash_store(10, 8192);
	uint64_t n[2] = {0, 0};
	struct fsck_opts o = {.record = count_rec, .arg = n, .keep_ns = true};
	struct fsck_result r;
	cr_assert_eq(fsck_run(store, &o, &r), 0);
	cr_assert_eq(n[0], r.commits);
	cr_assert_eq(n[1], r.last_lsn);
	cr_assert(r.have_ns);
	fsck_result_free(&r);
	cr_assert_not(r.have_ns);
}

/* What the fault table's crashes and power cuts leave (faultos.h) is only
 * what recovery handles: fsck finds nothing else (no bad chunk, no damage
 * in the middle but the one a power cut makes of unsynced writes landed
 * out of order, which it reports and keeps, and mounting drops), --repair
 * leaves a clean store, and it opens with every chunk verifying. */
static bool recoverable_kind(const char *kind)
{
	return !strcmp(kind, "torn-tail") || !strcmp(kind, "checkpoint") ||
	       !strcmp(kind, "commits-log") || !strcmp(kind, "txn-record");
}

Test(fsck, fault_table_crashes_are_recoverable, .timeout = 240)
{
	char big[70000];
	memset(big, 'x', sizeof(big));
	for (uint64_t n = 2; n <= 50; n += 3) {
		for (int power = 0; power <= 2; power++) { /* 2: a torn write, then death */
			tt_rmtree(store);
			free(store);
			store = tt_mkstore();
			faultos_install();
			if (power == 2)
				faultos_tear_nth_pwrite(n, 20 + n, true);
			else
				faultos_crash_at(FOS_PWRITE, n);
			struct txd_opts o = {.durability = TXD_DUR_FSYNC};
			struct txd_fs *fs;
			if (txd_fs_open(store, &o, &fs, NULL) == 0) {
				for (int i = 0; i < 12; i++) {
					char name[16];
					snprintf(name, sizeof(name), "g%02d", i);
					big[i] = (char)('a' + i);
					if (tt_put(fs, name, big, i % 3 ? 100 : sizeof(big)))
						break;
				}
				txd_fs_close(fs);
			}
			if (power == 1)
				faultos_power_cut(n);
			faultos_revive();
			faultos_uninstall();
			struct got g;
			struct fsck_result r;
			cr_assert_eq(run(&g, false, &r), 0);
			fsck_result_free(&r);
			for (int k = 0; k < g.n; k++)
				cr_log_info("pwrite #%llu power %d: %s %s", (unsigned long long)n, power,
					    g.p[k].kind, g.p[k].what);
			if (power == 1 && g.n == 1 && strstr(g.p[0].what, "damage in the middle")) {
				/* unsynced writes landed out of order: told, kept,
				 * and what the server's recovery drops (W2) */
				cr_assert(strstr(g.p[0].affects, "power cut"));
				cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
				txd_fs_close(fs);
				cr_assert_eq(run(&g, false, &r), 0);
				fsck_result_free(&r);
			}
			for (int k = 0; k < g.n; k++)
				cr_assert(recoverable_kind(g.p[k].kind),
					  "pwrite #%llu power %d: %s %s: %s; %s", (unsigned long long)n,
					  power, g.p[k].kind, g.p[k].where, g.p[k].what, g.p[k].affects);
			cr_assert_eq(run(&g, true, &r), 0);
			cr_assert_eq(r.errors, 0, "pwrite #%llu power %d: %s: %s",
				     (unsigned long long)n, power, g.n ? g.p[0].where : "",
				     g.n ? g.p[0].what : "");
			fsck_result_free(&r);
			uint64_t fp;
			cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
			cr_assert_eq(tt_fingerprint(fs, &fp), 0, "every chunk verifies");
			txd_fs_close(fs);
		}
	}
}
