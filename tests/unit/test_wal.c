/*
 * test_wal.c — the write-ahead log against its invariants W1–W7 (wal.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/os.h"
#include "../../engine/txdir.h"
#include "../../engine/wal.h"
#include "../support/faultos.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[256];
static char waldir[300];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/txd-wal-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(waldir, sizeof(waldir), "%s/wal", tmpdir);
}

static void teardown(void)
{
	txd_os_set(NULL);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(wal, .init = setup, .fini = teardown, .timeout = 120);

struct rec {
	uint64_t lsn;
	uint16_t type;
	uint32_t seg;
	uint64_t payload_off;
	uint32_t len;
	uint8_t *data;
};

struct recs {
	struct rec *v;
	size_t n, cap;
};

static int collect(void *arg, const struct wal_pos *pos, uint16_t type, const void *p,
		   uint32_t len)
{
	struct recs *rs = arg;
	struct rec *r;

	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 64;
		rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
	}
	r = &rs->v[rs->n++];
	r->lsn = pos->lsn;
	r->type = type;
	r->seg = pos->seg;
	r->payload_off = pos->payload_off;
	r->len = len;
	r->data = malloc(len ? len : 1);
	memcpy(r->data, p, len);
	return 0;
}

static void recs_free(struct recs *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++)
		free(rs->v[i].data);
	free(rs->v);
	memset(rs, 0, sizeof(*rs));
}

/* Deterministic payload for record number i. */
static uint32_t payload_for(uint64_t i, uint8_t *buf, uint32_t max)
{
	uint32_t len = (uint32_t)((i * 7919) % max);
	uint32_t k;

	for (k = 0; k < len; k++)
		buf[k] = (uint8_t)(i * 31 + k);
	return len;
}

static void check_payload(const struct rec *r, uint64_t i, uint32_t max)
{
	uint8_t buf[4096];
	uint32_t len = payload_for(i, buf, max);

	cr_assert_eq(r->len, len, "record %lu: len %u != %u", (unsigned long)i, r->len, len);
	cr_assert_eq(memcmp(r->data, buf, len), 0, "record %lu payload differs",
		     (unsigned long)i);
	cr_assert_eq(r->type, (uint16_t)(i % 5 + 1));
}

static struct wal *open_replay(const struct wal_opts *o, struct recs *rs, int expect)
{
	struct wal *w;

	cr_assert_eq(wal_open(waldir, o, &w), 0);
	cr_assert_eq(wal_replay(w, 0, collect, rs), expect);
	return w;
}

static struct wal_pos last_pos; /* of the last append_n record */

static int append_n(struct wal *w, uint64_t first, uint64_t n, uint32_t max)
{
	uint8_t buf[4096];
	uint64_t i;

	for (i = first; i < first + n; i++) {
		uint32_t len = payload_for(i, buf, max);
		struct iovec iov[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };
		struct wal_pos pos;
		int r = wal_append(w, (uint16_t)(i % 5 + 1), iov, 2, &pos);

		if (r)
			return r;
		cr_assert_eq(pos.lsn, i);
		last_pos = pos;
	}
	return 0;
}

static char *seg_file(uint32_t seg)
{
	static char p[400];

	snprintf(p, sizeof(p), "%s/seg-%08u", waldir, seg);
	return p;
}

static uint64_t file_size(const char *p)
{
	struct stat st;

	cr_assert_eq(stat(p, &st), 0, "stat %s", p);
	return (uint64_t)st.st_size;
}

/* ---- tests ----------------------------------------------------------------- */

Test(wal, roundtrip_W1_consecutive_lsns_and_payload_positions)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	uint64_t i;

	cr_assert_eq(rs.n, 0);
	cr_assert_eq(append_n(w, 1, 500, 3000), 0);
	cr_assert_eq(wal_last_lsn(w), 500);
	cr_assert_eq(wal_sync(w, 500), 0);
	cr_assert_eq(wal_durable_lsn(w), 500);
	wal_close(w);

	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 500);
	for (i = 0; i < rs.n; i++) {
		uint8_t buf[4096];
		int fd = open(seg_file(rs.v[i].seg), O_RDONLY);

		cr_assert_eq(rs.v[i].lsn, i + 1, "W1: lsn %lu at %lu", (unsigned long)rs.v[i].lsn,
			     (unsigned long)i);
		check_payload(&rs.v[i], i + 1, 3000);
		/* payload_off names the bytes in the segment (inline chunks). */
		cr_assert_eq(pread(fd, buf, rs.v[i].len, (off_t)rs.v[i].payload_off),
			     (ssize_t)rs.v[i].len);
		cr_assert_eq(memcmp(buf, rs.v[i].data, rs.v[i].len), 0);
		close(fd);
	}
	/* Appends continue the LSN sequence after a reopen. */
	cr_assert_eq(append_n(w, 501, 10, 3000), 0);
	wal_close(w);
	recs_free(&rs);
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 510);
	wal_close(w);
	recs_free(&rs);
}

Test(wal, replay_after_lsn_skips_but_checks)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);

	cr_assert_eq(append_n(w, 1, 50, 100), 0);
	wal_close(w);
	cr_assert_eq(wal_open(waldir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 40, collect, &rs), 0);
	cr_assert_eq(rs.n, 10);
	cr_assert_eq(rs.v[0].lsn, 41);
	cr_assert_eq(wal_last_lsn(w), 50);
	wal_close(w);
	recs_free(&rs);
	/* A checkpoint ahead of the log means the log lost records. */
	cr_assert_eq(wal_open(waldir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 60, collect, &rs), -TXD_ECORRUPT);
	wal_close(w);
	recs_free(&rs);
}

Test(wal, big_records_and_limits)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	size_t big = 10u << 20;
	uint8_t *buf = malloc(big);
	struct iovec iov = { buf, big };
	size_t k;

	for (k = 0; k < big; k++)
		buf[k] = (uint8_t)(k * 13);
	cr_assert_eq(wal_append(w, 9, &iov, 1, NULL), 0);
	iov.iov_len = WAL_MAX_RECORD + 1ul;
	cr_assert_eq(wal_append(w, 9, &iov, 1, NULL), -EFBIG);
	wal_close(w);
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 1);
	cr_assert_eq(rs.v[0].len, big);
	cr_assert_eq(memcmp(rs.v[0].data, buf, big), 0);
	wal_close(w);
	recs_free(&rs);
	free(buf);
}

Test(wal, rotation_W4_and_segment_bookkeeping)
{
	struct wal_opts o = { .seg_size = 4096 };
	struct recs rs = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	struct wal_stats st;
	uint32_t *segs, n, i;
	uint64_t disk = 0, i64;

	cr_assert_eq(append_n(w, 1, 1000, 200), 0);
	cr_assert_gt(wal_current_seg(w), 10);
	cr_assert_eq(wal_list_segments(w, &segs, &n), 0);
	cr_assert_eq(segs[n - 1], wal_current_seg(w));
	for (i = 0; i < n; i++) {
		cr_assert_eq(segs[i], segs[0] + i);
		disk += file_size(seg_file(segs[i]));
		cr_assert_leq(file_size(seg_file(segs[i])), 4096 + 256);
	}
	wal_get_stats(w, &st);
	cr_assert_eq(st.records, 1000);
	/* the full segments' sizes, and the current one up to its append
	 * point (not the zeros allocated ahead of it, W8) */
	uint64_t last = file_size(seg_file(segs[n - 1]));
	cr_assert(st.disk_bytes > disk - last && st.disk_bytes <= disk, "%llu of %llu",
		  (unsigned long long)st.disk_bytes, (unsigned long long)disk);
	/* W4: rotations fsync nothing themselves; a sync settles them all. */
	cr_assert_eq(wal_sync(w, 1000), 0);
	cr_assert_eq(wal_durable_lsn(w), 1000);

	cr_assert_eq(wal_drop_segment(w, wal_current_seg(w)), -EINVAL);
	free(segs);
	wal_close(w);

	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 1000);
	for (i64 = 0; i64 < rs.n; i64++)
		check_payload(&rs.v[i64], i64 + 1, 200);
	/* Drop the oldest half; replay from a checkpoint past them. */
	cr_assert_eq(wal_list_segments(w, &segs, &n), 0);
	{
		uint64_t keep_from_lsn = 0;
		uint32_t drop = n / 2;

		for (i64 = 0; i64 < rs.n; i64++)
			if (rs.v[i64].seg < segs[drop]) {
				keep_from_lsn = rs.v[i64].lsn;
			}
		for (i = 0; i < drop; i++)
			cr_assert_eq(wal_drop_segment(w, segs[i]), 0);
		cr_assert_eq(access(seg_file(segs[0]), F_OK), -1);
		wal_close(w);
		recs_free(&rs);
		cr_assert_eq(wal_open(waldir, &o, &w), 0);
		cr_assert_eq(wal_replay(w, keep_from_lsn, collect, &rs), 0);
		cr_assert_eq(rs.n, 1000 - keep_from_lsn);
		wal_close(w);
		recs_free(&rs);
		/* A checkpoint before the first kept record is a hole. */
		cr_assert_eq(wal_open(waldir, &o, &w), 0);
		cr_assert_eq(wal_replay(w, 0, collect, &rs), -TXD_ECORRUPT);
		wal_close(w);
	}
	free(segs);
	recs_free(&rs);
}

/* Copy the WAL directory's segment files to dst. */
static void copy_dir(const char *src, const char *dst)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", dst, src, dst);
	cr_assert_eq(system(cmd), 0);
}

Test(wal, torn_tail_at_every_offset_W2)
{
	struct recs rs = { 0 }, rs2 = { 0 }, rs3 = { 0 };
	char pristine[400];
	struct wal *w = open_replay(NULL, &rs, 0);
	uint64_t start, end, cut, i;
	uint32_t seg;

	/* The state a crash during the 20th append leaves: it is the last
	 * record of the last segment. */
	cr_assert_eq(append_n(w, 1, 20, 300), 0);
	wal_close(w);
	seg = last_pos.seg;
	start = last_pos.payload_off - WAL_REC_HDR_SIZE;
	end = file_size(seg_file(seg));
	cr_assert_gt(end - start, WAL_REC_HDR_SIZE + 100);
	snprintf(pristine, sizeof(pristine), "%s/pristine", tmpdir);
	copy_dir(waldir, pristine);

	for (cut = start; cut < end; cut++) {
		copy_dir(pristine, waldir);
		cr_assert_eq(truncate(seg_file(seg), (off_t)cut), 0);
		w = open_replay(NULL, &rs, 0);
		cr_assert_eq(rs.n, 19, "W2: cut at %lu gave %zu records", (unsigned long)cut,
			     rs.n);
		cr_assert_eq(append_n(w, 20, 1, 300), 0);
		cr_assert_neq(wal_current_seg(w), seg, "appends go to a fresh segment");
		wal_close(w);
		/* Same replay every time, plus the new record. */
		w = open_replay(NULL, &rs2, 0);
		wal_close(w);
		w = open_replay(NULL, &rs3, 0);
		wal_close(w);
		cr_assert_eq(rs2.n, 20);
		cr_assert_eq(rs3.n, 20);
		for (i = 0; i < 20; i++) {
			check_payload(&rs2.v[i], i + 1, 300);
			cr_assert_eq(rs2.v[i].seg, rs3.v[i].seg);
			cr_assert_eq(rs2.v[i].payload_off, rs3.v[i].payload_off);
		}
		recs_free(&rs);
		recs_free(&rs2);
		recs_free(&rs3);
	}
}

Test(wal, garbage_tail_ends_log_W2)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	uint32_t seg;
	uint64_t off;
	uint8_t junk[100];
	int fd;

	cr_assert_eq(append_n(w, 1, 10, 300), 0);
	seg = wal_current_seg(w);
	wal_close(w);
	off = file_size(seg_file(seg));
	memset(junk, 0xA5, sizeof(junk));
	fd = open(seg_file(seg), O_WRONLY);
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), (off_t)off), (ssize_t)sizeof(junk));
	close(fd);
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 10);
	wal_close(w);
	recs_free(&rs);
}

/* W9: a damaged record with valid ones after it, in a segment of this boot,
 * is damage: replay refuses (-TXD_ECORRUPT) instead of dropping them; after
 * a reboot (a power cut may reorder the unsynced tail) the log ends there. */
Test(wal, damage_mid_log_is_not_a_tail_W9)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	uint64_t rec5;
	uint32_t seg;
	int fd;

	cr_assert_eq(append_n(w, 1, 10, 300), 0);
	cr_assert_eq(wal_sync(w, 10), 0);
	seg = last_pos.seg;
	/* ten records of one size, one after the other: the 5th's payload */
	uint64_t size = (last_pos.payload_off - WAL_REC_HDR_SIZE - WAL_SEG_HDR_SIZE) / 9;
	rec5 = WAL_SEG_HDR_SIZE + 4 * size + WAL_REC_HDR_SIZE + 10;
	wal_close(w);
	recs_free(&rs);
	fd = open(seg_file(seg), O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)rec5), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)rec5), 1);
	close(fd);
	w = open_replay(NULL, &rs, -TXD_ECORRUPT);
	wal_close(w);
	recs_free(&rs);
	/* the same bytes after a reboot: a torn tail, the first four stay */
	faultos_install();
	faultos_power_cut(1);
	faultos_revive();
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 4, "after a reboot the log ends at the damage (W2)");
	wal_close(w);
	recs_free(&rs);
	faultos_uninstall();
}

/* W9 with opts.same_boot (no reboot since the last server): a segment
 * header that does not read back is damage, not a lost rotation. */
Test(wal, damaged_header_in_the_same_boot_is_corruption_W9)
{
	struct recs rs = { 0 };
	struct wal_opts same = { .same_boot = true };
	struct wal *w = open_replay(&same, &rs, 0);
	uint32_t seg;
	int fd;

	cr_assert_eq(append_n(w, 1, 30, 300), 0);
	cr_assert_eq(wal_sync(w, 30), 0);
	seg = last_pos.seg;
	wal_close(w);
	recs_free(&rs);
	fd = open(seg_file(seg), O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, 50), 1); /* a reserved byte of the header */
	b ^= 0x01;
	cr_assert_eq(pwrite(fd, &b, 1, 50), 1);
	close(fd);
	uint64_t before = file_size(seg_file(seg));
	w = open_replay(&same, &rs, -TXD_ECORRUPT);
	wal_close(w);
	recs_free(&rs);
	cr_assert_eq(file_size(seg_file(seg)), before, "nothing cut");
}

Test(wal, stale_record_with_wrong_lsn_is_not_replayed_W1)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	uint8_t rec[2048];
	uint64_t first_off, n, end;
	uint32_t seg;
	int fd;

	cr_assert_eq(append_n(w, 1, 3, 300), 0);
	seg = wal_current_seg(w);
	wal_close(w);
	w = open_replay(NULL, &rs, 0);
	wal_close(w);
	/* Copy record 1 (valid checksum, lsn 1) after the end: lsn must be 4. */
	first_off = rs.v[0].payload_off - WAL_REC_HDR_SIZE;
	n = rs.v[1].payload_off - WAL_REC_HDR_SIZE - first_off;
	end = file_size(seg_file(seg));
	fd = open(seg_file(seg), O_RDWR);
	cr_assert_eq(pread(fd, rec, n, (off_t)first_off), (ssize_t)n);
	cr_assert_eq(pwrite(fd, rec, n, (off_t)end), (ssize_t)n);
	close(fd);
	recs_free(&rs);
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 3);
	wal_close(w);
	recs_free(&rs);
}

static void list_dir_state(char *out, size_t n)
{
	char cmd[600];
	FILE *p;
	size_t got;

	snprintf(cmd, sizeof(cmd), "cd '%s' && ls -l --time-style=+%%s . | sort", waldir);
	p = popen(cmd, "r");
	got = fread(out, 1, n - 1, p);
	out[got] = 0;
	pclose(p);
}

Test(wal, bad_record_in_middle_segment_is_corruption_W3)
{
	struct wal_opts o = { .seg_size = 4096 };
	struct recs rs = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	char before[8192], after[8192];
	uint32_t mid;
	uint64_t off = 0;
	size_t i;
	int fd;

	cr_assert_eq(append_n(w, 1, 200, 200), 0);
	wal_close(w);
	w = open_replay(&o, &rs, 0);
	wal_close(w);
	mid = rs.v[rs.n / 2].seg;
	for (i = 0; i < rs.n; i++)
		if (rs.v[i].seg == mid && rs.v[i].len > 0)
			off = rs.v[i].payload_off;
	cr_assert_gt(off, 0);
	fd = open(seg_file(mid), O_RDWR);
	cr_assert_eq(pwrite(fd, "X", 1, (off_t)off), 1);
	close(fd);
	recs_free(&rs);

	list_dir_state(before, sizeof(before));
	cr_assert_eq(wal_open(waldir, &o, &w), 0);
	cr_assert_eq(wal_replay(w, 0, collect, &rs), -TXD_ECORRUPT);
	cr_assert_eq(wal_append(w, 1, NULL, 0, NULL), -EINVAL);
	wal_close(w);
	list_dir_state(after, sizeof(after));
	cr_assert_str_eq(before, after, "W3: replay changed nothing on disk");
	recs_free(&rs);
}

static int stop_at_3(void *arg, const struct wal_pos *pos, uint16_t type, const void *p,
		     uint32_t len)
{
	(void)arg;
	(void)type;
	(void)p;
	(void)len;
	return pos->lsn == 3 ? 42 : 0;
}

Test(wal, replay_callback_stops_replay)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);

	cr_assert_eq(append_n(w, 1, 5, 30), 0);
	wal_close(w);
	cr_assert_eq(wal_open(waldir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 0, stop_at_3, NULL), 42);
	wal_close(w);
}

/* ---- group commit --------------------------------------------------------- */

/* The real table with a slow fdatasync, so concurrent callers pile up. */
static struct txd_os_ops slow_ops;

static int slow_fdatasync(int fd)
{
	usleep(2000);
	return txd_os_real.fdatasync(fd);
}

struct gc_arg {
	struct wal *w;
	int id;
	int errors;
};

static void *gc_worker(void *p)
{
	struct gc_arg *a = p;
	uint8_t buf[64];
	int i;

	memset(buf, a->id, sizeof(buf));
	for (i = 0; i < 100; i++) {
		struct iovec iov = { buf, sizeof(buf) };
		struct wal_pos pos;

		if (wal_append(a->w, 1, &iov, 1, &pos) || wal_sync(a->w, pos.lsn) ||
		    wal_durable_lsn(a->w) < pos.lsn)
			a->errors++;
	}
	return NULL;
}

Test(wal, group_commit_shares_fdatasync_W5)
{
	struct recs rs = { 0 };
	struct gc_arg args[8];
	pthread_t th[8];
	struct wal_stats st;
	struct wal *w;
	int i;

	slow_ops = txd_os_real;
	slow_ops.fdatasync = slow_fdatasync;
	txd_os_set(&slow_ops);
	w = open_replay(NULL, &rs, 0);
	for (i = 0; i < 8; i++) {
		args[i] = (struct gc_arg){ .w = w, .id = i };
		pthread_create(&th[i], NULL, gc_worker, &args[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].errors, 0);
	}
	wal_get_stats(w, &st);
	cr_assert_eq(st.records, 800);
	cr_assert_eq(st.synced_records, 800);
	cr_assert_lt(st.syncs, 800 / 2, "W5: %lu syncs for 800 records",
		     (unsigned long)st.syncs);
	wal_close(w);
	recs_free(&rs);
}

struct async_res {
	pthread_mutex_t mu;
	int calls, err;
	pthread_t thread;
};

static void async_cb(void *arg, int err)
{
	struct async_res *r = arg;

	pthread_mutex_lock(&r->mu);
	r->calls++;
	r->err = err;
	r->thread = pthread_self();
	pthread_mutex_unlock(&r->mu);
}

static int async_calls(struct async_res *r)
{
	int n;

	pthread_mutex_lock(&r->mu);
	n = r->calls;
	pthread_mutex_unlock(&r->mu);
	return n;
}

Test(wal, sync_async_runs_after_durable_W5)
{
	struct async_res r = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	int i;

	cr_assert_eq(append_n(w, 1, 3, 30), 0);
	cr_assert_eq(wal_sync_async(w, 3, async_cb, &r), 0);
	for (i = 0; i < 2000 && !async_calls(&r); i++)
		usleep(1000);
	cr_assert_eq(async_calls(&r), 1);
	cr_assert_eq(r.err, 0);
	cr_assert_geq(wal_durable_lsn(w), 3);
	cr_assert(!pthread_equal(r.thread, pthread_self()), "runs on the sync thread");
	/* Already durable: called at once on this thread. */
	cr_assert_eq(wal_sync_async(w, 2, async_cb, &r), 0);
	cr_assert_eq(async_calls(&r), 2);
	cr_assert(pthread_equal(r.thread, pthread_self()));
	wal_close(w);
	recs_free(&rs);
}

Test(wal, interval_sync_makes_records_durable)
{
	struct wal_opts o = { .sync_interval_ms = 20 };
	struct recs rs = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	int i;

	cr_assert_eq(append_n(w, 1, 5, 30), 0);
	for (i = 0; i < 500 && wal_durable_lsn(w) < 5; i++)
		usleep(2000);
	cr_assert_eq(wal_durable_lsn(w), 5);
	wal_close(w);
	recs_free(&rs);
}

Test(wal, no_interval_means_no_background_sync)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	struct wal_stats st;

	cr_assert_eq(append_n(w, 1, 5, 30), 0);
	usleep(50000);
	cr_assert_eq(wal_durable_lsn(w), 0);
	wal_get_stats(w, &st);
	cr_assert_eq(st.syncs, 0);
	wal_close(w);
	recs_free(&rs);
}

/* ---- failures ------------------------------------------------------------------ */

Test(wal, fdatasync_error_is_sticky)
{
	struct async_res r = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct recs rs = { 0 };
	struct wal *w;

	faultos_install();
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(append_n(w, 1, 3, 30), 0);
	faultos_fail_nth(FOS_FDATASYNC, 1, -EIO);
	cr_assert_eq(wal_sync(w, 3), -EIO);
	cr_assert(wal_failed(w));
	cr_assert_eq(append_n(w, 4, 1, 30), -EIO);
	cr_assert_eq(wal_sync(w, 3), -EIO);
	cr_assert_eq(wal_sync_async(w, 3, async_cb, &r), -EIO);
	wal_close(w);
	faultos_uninstall();
	recs_free(&rs);
}

Test(wal, pwrite_error_is_sticky)
{
	struct recs rs = { 0 };
	struct wal *w;

	faultos_install();
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(append_n(w, 1, 3, 30), 0);
	faultos_fail_nth(FOS_PWRITE, 1, -EIO); /* a full disk is not (W8) */
	cr_assert_eq(append_n(w, 4, 1, 30), -EIO);
	cr_assert(wal_failed(w));
	cr_assert_eq(append_n(w, 4, 1, 30), -EIO);
	wal_close(w);
	faultos_uninstall();
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 3);
	wal_close(w);
	recs_free(&rs);
}

Test(wal, rotation_fsync_error_is_sticky_W4)
{
	struct wal_opts o = { .seg_size = 1024 };
	struct recs rs = { 0 };
	struct wal *w;
	int r = 0;
	uint64_t i;

	faultos_install();
	w = open_replay(&o, &rs, 0);
	faultos_fail_nth(FOS_FSYNC, 1, -EIO);
	for (i = 1; i <= 100 && !r; i++)
		r = append_n(w, i, 1, 100);
	/* the sync thread settles rotations in the background: the failure
	 * reaches appends once it ran, and any sync at once */
	cr_assert(r == 0 || r == -EIO);
	cr_assert_eq(wal_sync(w, i - 1), -EIO);
	cr_assert(wal_failed(w));
	cr_assert_eq(append_n(w, i, 1, 100), -EIO);
	wal_close(w);
	faultos_uninstall();
	recs_free(&rs);
}

Test(wal, torn_append_then_crash_W6)
{
	struct recs rs = { 0 };
	struct wal *w;

	faultos_install();
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(append_n(w, 1, 10, 300), 0);
	faultos_tear_nth_pwrite(1, 50, true);
	cr_assert_eq(append_n(w, 11, 1, 300), -EIO);
	cr_assert(faultos_crashed());
	wal_close(w);
	faultos_uninstall();
	/* Process death: every appended record survives (W6), the torn one
	 * ends the log (W2). */
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(rs.n, 10);
	wal_close(w);
	recs_free(&rs);
}

/* ---- power cut ----------------------------------------------------------------- */

/* Boot: replay, check every acknowledged record is there and the set is a
 * prefix (consecutive from 1), then run a workload until the crash point. */
static uint64_t boot_and_work(const struct wal_opts *o, uint64_t acked, uint64_t *seed,
			      uint64_t ops)
{
	struct recs rs = { 0 };
	struct wal *w;
	uint64_t i, next, k;
	int r = 0;

	cr_assert_eq(wal_open(waldir, o, &w), 0);
	cr_assert_eq(wal_replay(w, 0, collect, &rs), 0, "power cut must never corrupt");
	cr_assert_geq(rs.n, acked, "lost acknowledged records: %zu < %lu", rs.n,
		      (unsigned long)acked);
	for (i = 0; i < rs.n; i++) {
		cr_assert_eq(rs.v[i].lsn, i + 1);
		check_payload(&rs.v[i], i + 1, 700);
	}
	next = rs.n + 1;
	recs_free(&rs);
	acked = next - 1; /* what replay returned is on disk now (fdatasync) */
	for (k = 0; k < ops && !r; k++) {
		*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
		r = append_n(w, next, 1, 700);
		if (r)
			break;
		if ((*seed >> 33) % 3 == 0) {
			r = wal_sync(w, next);
			if (!r)
				acked = next;
		}
		next++;
	}
	faultos_power_cut(*seed);
	wal_close(w);
	faultos_revive();
	return acked;
}

static void power_cut_cycles(const struct wal_opts *o);

Test(wal, power_cut_keeps_synced_prefix_W5)
{
	struct wal_opts o = { .seg_size = 8192 };

	power_cut_cycles(&o);
}

/* The same with zeros written ahead and durability waits led by callers. */
static void nop_block(void *arg)
{
	(void)arg;
}

Test(wal, power_cut_keeps_synced_prefix_zero_ahead_W7)
{
	struct wal_opts o = { .seg_size = 8192, .zero_ahead = true, .will_block = nop_block };

	power_cut_cycles(&o);
}

static void power_cut_cycles(const struct wal_opts *o)
{
	uint64_t s;

	for (s = 1; s <= 40; s++) {
		uint64_t seed = s, acked = 0;
		int boot;

		nftw(waldir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		faultos_install();
		/* Sometimes die inside a rotation or sync as well. */
		if (s % 3 == 0)
			faultos_crash_at(FOS_FSYNC, 3 + s % 7);
		if (s % 3 == 1)
			faultos_crash_at(FOS_FDATASYNC, 2 + s % 11);
		for (boot = 0; boot < 3; boot++)
			acked = boot_and_work(o, acked, &seed, 20 + (seed >> 40) % 60);
		faultos_uninstall();
		acked = boot_and_work(o, acked, &seed, 0);
	}
}

/* ---- W4: the order of durability steps around a rotation ------------------- */

enum ev_kind { EV_OPEN, EV_PWRITE, EV_FSYNC, EV_RENAME };

struct ev {
	enum ev_kind kind;
	int fd;
	uint64_t off;
	char path[400];
};

static struct ev evs[20000];
static int nev;
static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static struct txd_os_ops log_ops;

static void log_ev(enum ev_kind k, int fd, uint64_t off, const char *path)
{
	pthread_mutex_lock(&ev_mu);
	if (nev < 20000) {
		evs[nev] = (struct ev){ .kind = k, .fd = fd, .off = off };
		if (path)
			snprintf(evs[nev].path, sizeof(evs[nev].path), "%s", path);
		nev++;
	}
	pthread_mutex_unlock(&ev_mu);
}

static int log_open(const char *path, int flags, mode_t mode)
{
	int fd = txd_os_real.open(path, flags, mode);

	log_ev(EV_OPEN, fd, 0, path);
	return fd;
}

static ssize_t log_pwrite(int fd, const void *b, size_t n, off_t off)
{
	log_ev(EV_PWRITE, fd, (uint64_t)off, NULL);
	return txd_os_real.pwrite(fd, b, n, off);
}

static int log_fsync(int fd)
{
	log_ev(EV_FSYNC, fd, 0, NULL);
	return txd_os_real.fsync(fd);
}

static int log_rename(const char *a, const char *b)
{
	log_ev(EV_RENAME, -1, 0, b);
	return txd_os_real.rename(a, b);
}

/* Index of the last open of path before event `before`, or -1. */
static int open_of(const char *path, int before)
{
	int i;

	for (i = before - 1; i >= 0; i--)
		if (evs[i].kind == EV_OPEN && !strcmp(evs[i].path, path))
			return i;
	return -1;
}

/* Whether fd (opened at event from) was fsynced between from and to. */
static bool fsynced_between(int fd, int from, int to)
{
	int j;

	for (j = from + 1; j < to; j++)
		if (evs[j].kind == EV_FSYNC && evs[j].fd == fd)
			return true;
	return false;
}

static int log_fdatasync(int fd)
{
	log_ev(EV_FSYNC, fd, 0, NULL);
	return txd_os_real.fdatasync(fd);
}

/* W4: for every segment N a rotation named, its settled header (a pwrite at
 * offset 0 after the rename) comes after segment N-1 was fsynced, and the
 * directory and N itself are synced after that — the order a sync follows
 * before it reports any lsn of N durable. */
Test(wal, rotation_order_W4)
{
	struct wal_opts o = { .seg_size = 2048 };
	struct recs rs = { 0 };
	struct wal *w;
	int i, j, checked = 0;

	log_ops = txd_os_real;
	log_ops.open = log_open;
	log_ops.pwrite = log_pwrite;
	log_ops.fsync = log_fsync;
	log_ops.fdatasync = log_fdatasync;
	log_ops.rename = log_rename;
	txd_os_set(&log_ops);
	w = open_replay(&o, &rs, 0);
	for (i = 1; i <= 100; i++) {
		cr_assert_eq(append_n(w, (uint64_t)i, 1, 200), 0);
		if (i % 7 == 0)
			cr_assert_eq(wal_sync(w, (uint64_t)i), 0);
	}
	cr_assert_eq(wal_sync(w, 100), 0);
	wal_close(w);
	txd_os_set(NULL);

	for (i = 0; i < nev; i++) {
		char tmp[420], prev[400];
		int fd, at, settle = -1, dirfd = -1, prev_at, k;
		bool dir_synced = false, synced = false;
		unsigned seg;

		if (evs[i].kind != EV_RENAME || !strstr(evs[i].path, "/seg-"))
			continue;
		snprintf(tmp, sizeof(tmp), "%s.tmp", evs[i].path);
		sscanf(strrchr(evs[i].path, '/'), "/seg-%u", &seg);
		at = open_of(tmp, i);
		if (at < 0 || seg == 1)
			continue; /* a recycled spare; the replay's own segment */
		fd = evs[at].fd;
		cr_assert(!fsynced_between(fd, at, i), "W4: no fsync inside the rotation of %u", seg);
		for (j = i + 1; j < nev && settle < 0; j++)
			if (evs[j].kind == EV_PWRITE && evs[j].fd == fd && evs[j].off == 0)
				settle = j;
		if (settle < 0)
			continue; /* the replay's own segment, or never settled */
		snprintf(prev, sizeof(prev), "%s/seg-%08u.tmp", waldir, seg - 1);
		prev_at = open_of(prev, i);
		if (prev_at < 0)
			continue;
		cr_assert(fsynced_between(evs[prev_at].fd, i, settle),
			  "W4: segment %u durable before %u's header is settled", seg - 1, seg);
		for (k = settle + 1; k < nev && !synced; k++) {
			if (evs[k].kind == EV_OPEN && !strcmp(evs[k].path, waldir))
				dirfd = evs[k].fd;
			if (evs[k].kind == EV_FSYNC && evs[k].fd == dirfd)
				dir_synced = true;
			if (evs[k].kind == EV_FSYNC && evs[k].fd == fd && dir_synced)
				synced = true;
		}
		cr_assert(synced, "W4: directory, then segment %u synced after its header", seg);
		checked++;
	}
	cr_assert_gt(checked, 5);
	recs_free(&rs);
}

/* W4: no fsync or fdatasync while the WAL lock is held: another thread's
 * wal_last_lsn completes during every one (bounded wait). */
static struct wal *_Atomic probe_w; /* the sync thread's fsyncs probe too */
static const char *_Atomic probe_blocked;

static void *lsn_probe(void *arg)
{
	wal_last_lsn(arg);
	return NULL;
}

static void probe(const char *what)
{
	pthread_t th;
	struct timespec until;

	struct wal *w = probe_w;

	if (!w)
		return;
	cr_assert_eq(pthread_create(&th, NULL, lsn_probe, w), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	if (pthread_timedjoin_np(th, NULL, &until)) {
		probe_blocked = what;
		probe_w = NULL; /* once is enough */
		pthread_detach(th); /* it gets the lock once this call returns */
	}
}

static int probe_fsync(int fd)
{
	probe("fsync");
	return txd_os_real.fsync(fd);
}

static int probe_fdatasync(int fd)
{
	probe("fdatasync");
	return txd_os_real.fdatasync(fd);
}

Test(wal, rotation_syncs_nothing_under_the_lock_W4)
{
	struct wal_opts o = { .seg_size = 4096, .zero_ahead = true };
	struct recs rs = { 0 };
	struct wal *w;
	uint64_t i;

	log_ops = txd_os_real;
	log_ops.fsync = probe_fsync;
	log_ops.fdatasync = probe_fdatasync;
	txd_os_set(&log_ops);
	w = open_replay(&o, &rs, 0);
	probe_w = w;
	for (i = 1; i <= 200; i++)
		cr_assert_eq(append_n(w, i, 1, 300), 0);
	cr_assert_gt(wal_current_seg(w), 5);
	cr_assert_eq(wal_sync(w, 200), 0);
	probe_w = NULL;
	wal_close(w);
	txd_os_set(NULL);
	cr_expect_null(probe_blocked, "an %s ran under the WAL lock", probe_blocked);
	w = open_replay(&o, &rs, 0);
	cr_expect_eq(rs.n, 200);
	wal_close(w);
	recs_free(&rs);
}

/* W4/W5: a fault on the fsync of the segment a rotation left behind fails
 * the log: no lsn of the new segment (nor any later) is reported durable. */
static int fault_async_err = 1;

static void fault_async_cb(void *arg, int err)
{
	(void)arg;
	fault_async_err = err;
}

Test(wal, rotation_old_segment_fsync_fault_W4)
{
	struct wal_opts o = { .seg_size = 2048 };
	struct recs rs = { 0 };
	struct wal *w;
	uint64_t i, first_new = 0;
	uint32_t seg;
	int r = 0;

	faultos_install();
	w = open_replay(&o, &rs, 0);
	seg = wal_current_seg(w);
	faultos_fail_nth(FOS_FSYNC, 1, -EIO); /* the first fsync: the old segment's */
	for (i = 1; i <= 40 && !r; i++) {
		r = append_n(w, i, 1, 200);
		if (!r && !first_new && wal_current_seg(w) != seg)
			first_new = i;
	}
	cr_assert_neq(first_new, 0, "a rotation happened");
	cr_expect_eq(wal_sync(w, first_new), -EIO);
	cr_expect_lt(wal_durable_lsn(w), first_new, "durable %lu, new segment from %lu",
		     (unsigned long)wal_durable_lsn(w), (unsigned long)first_new);
	cr_expect_eq(wal_sync_async(w, i - 1, fault_async_cb, NULL), -EIO);
	cr_expect(wal_failed(w));
	cr_expect_eq(faultos_count(FOS_FSYNC) >= 1, true);
	wal_close(w);
	faultos_uninstall();
	/* every record reached the kernel (W6): a process restart has them */
	w = open_replay(&o, &rs, 0);
	cr_expect_geq(rs.n, first_new);
	wal_close(w);
	recs_free(&rs);
}

Test(wal, replay_of_a_million_records_is_fast, .timeout = 60)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	uint8_t buf[16] = { 1, 2, 3 };
	struct iovec iov = { buf, sizeof(buf) };
	struct timespec t0, t1;
	double secs;
	int i;

	for (i = 0; i < 1000000; i++)
		cr_assert_eq(wal_append(w, 1, &iov, 1, NULL), 0);
	wal_close(w);
	cr_assert_eq(wal_open(waldir, NULL, &w), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(wal_replay(w, 999990, collect, &rs), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_eq(rs.n, 10);
	cr_assert_eq(wal_last_lsn(w), 1000000);
	cr_assert_lt(secs, 2.0, "replay took %.3f s", secs);
	wal_close(w);
	recs_free(&rs);
}

Test(wal, checkpointed_segments_may_have_gaps)
{
	struct wal_opts o = { .seg_size = 4096 };
	struct recs rs = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	uint64_t ckpt = 0, i;
	uint32_t *segs, n;

	cr_assert_eq(append_n(w, 1, 300, 200), 0);
	wal_close(w);
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(wal_list_segments(w, &segs, &n), 0);
	cr_assert_gt(n, 4);
	/* A checkpoint covers segments 0..2; segment 0 is kept (it still
	 * holds live chunk bytes), segment 1 is dropped. */
	for (i = 0; i < rs.n; i++)
		if (rs.v[i].seg <= segs[2])
			ckpt = rs.v[i].lsn;
	cr_assert_eq(wal_drop_segment(w, segs[1]), 0);
	wal_close(w);
	recs_free(&rs);
	cr_assert_eq(wal_open(waldir, &o, &w), 0);
	cr_assert_eq(wal_replay(w, ckpt, collect, &rs), 0);
	cr_assert_eq(rs.n, 300 - ckpt);
	cr_assert_eq(rs.v[0].lsn, ckpt + 1);
	wal_close(w);
	recs_free(&rs);
	/* From before the gap, the missing records are corruption. */
	cr_assert_eq(wal_open(waldir, &o, &w), 0);
	cr_assert_eq(wal_replay(w, 0, collect, &rs), -TXD_ECORRUPT);
	wal_close(w);
	recs_free(&rs);
	free(segs);
}

Test(wal, checkpointed_records_are_walked_not_checksummed)
{
	struct recs rs = { 0 };
	struct wal *w = open_replay(NULL, &rs, 0);
	uint64_t off;
	uint32_t seg;
	int fd;

	cr_assert_eq(append_n(w, 1, 10, 300), 0);
	wal_close(w);
	w = open_replay(NULL, &rs, 0);
	cr_assert_eq(append_n(w, 11, 10, 300), 0);
	wal_close(w);
	/* Damage the payload of record 5 (checkpointed below). */
	seg = rs.v[4].seg;
	off = rs.v[4].payload_off;
	cr_assert_gt(rs.v[4].len, 0);
	fd = open(seg_file(seg), O_RDWR);
	cr_assert_eq(pwrite(fd, "#", 1, (off_t)off), 1);
	close(fd);
	recs_free(&rs);
	cr_assert_eq(wal_open(waldir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 10, collect, &rs), 0);
	cr_assert_eq(rs.n, 10);
	cr_assert_eq(rs.v[0].lsn, 11);
	wal_close(w);
	recs_free(&rs);
	/* Replayed from the start it is corruption (W3: not the last segment). */
	cr_assert_eq(wal_open(waldir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 0, collect, &rs), -TXD_ECORRUPT);
	wal_close(w);
	recs_free(&rs);
}

/* ---- W7: pre-allocation and recycling ------------------------------------- */

/* Wait (bounded) until the sync thread has written seg's file to size. */
static void wait_written(uint32_t seg, uint64_t size)
{
	int i;

	for (i = 0; i < 5000 && file_size(seg_file(seg)) < size; i++)
		usleep(1000);
	cr_assert_geq(file_size(seg_file(seg)), size, "W7: segment %u not written ahead",
		      seg);
}

Test(wal, zero_ahead_writes_past_the_append_point_W7)
{
	struct wal_opts o = { .seg_size = 256 << 10, .zero_ahead = true };
	struct recs rs = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	uint32_t seg = wal_current_seg(w);

	wait_written(seg, 256 << 10);
	cr_assert_eq(append_n(w, 1, 30, 300), 0);
	cr_assert_eq(wal_sync(w, 30), 0);
	cr_assert_eq(file_size(seg_file(seg)), 256 << 10, "appends land inside the zeros");
	wal_close(w);
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 30);
	wal_close(w);
	recs_free(&rs);
}

/* A torn last record over pre-zeroed bytes: whatever part of it reached the
 * disk, followed by the zeros that were there. */
Test(wal, torn_tail_over_zeros_replays_the_valid_prefix_W7)
{
	struct wal_opts o = { .seg_size = 64 << 10, .zero_ahead = true };
	struct recs rs = { 0 }, rs2 = { 0 };
	char pristine[400];
	uint8_t z[4096] = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	uint64_t start, end, cut, i;
	uint32_t seg = wal_current_seg(w);
	int fd;

	wait_written(seg, 64 << 10);
	cr_assert_eq(append_n(w, 1, 20, 300), 0);
	wal_close(w);
	start = last_pos.payload_off - WAL_REC_HDR_SIZE;
	end = last_pos.payload_off + payload_for(20, z, 300);
	memset(z, 0, sizeof(z));
	snprintf(pristine, sizeof(pristine), "%s/pristine", tmpdir);
	copy_dir(waldir, pristine);
	for (cut = start; cut < end; cut += 7) {
		copy_dir(pristine, waldir);
		fd = open(seg_file(seg), O_RDWR);
		cr_assert_eq(pwrite(fd, z, end - cut, (off_t)cut), (ssize_t)(end - cut));
		close(fd);
		w = open_replay(&o, &rs, 0);
		cr_assert_eq(rs.n, 19, "W2/W7: cut at %lu gave %zu records", (unsigned long)cut,
			     rs.n);
		cr_assert_eq(append_n(w, 20, 1, 300), 0);
		wal_close(w);
		w = open_replay(&o, &rs2, 0);
		wal_close(w);
		cr_assert_eq(rs2.n, 20);
		for (i = 0; i < 20; i++)
			check_payload(&rs2.v[i], i + 1, 300);
		recs_free(&rs);
		recs_free(&rs2);
	}
}

/* The file of a previous use, records 1..10, becomes this log's first
 * segment: the new records 1..3 lie exactly over the old 1..3, and the old
 * 4..10 follow with the lsns replay wants next. Only the new salt keeps them
 * out. */
Test(wal, recycled_file_stale_records_never_replay_W7)
{
	struct wal_opts o = { .seg_size = 64 << 10, .zero_ahead = true };
	struct recs rs = { 0 };
	char old[400], cmd[2400];
	struct wal *w = open_replay(&o, &rs, 0);
	uint32_t seg = wal_current_seg(w);

	cr_assert_eq(append_n(w, 1, 10, 300), 0);
	wal_close(w);
	snprintf(old, sizeof(old), "%s/old-seg", tmpdir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && rm -rf '%s' && mkdir '%s' && cp '%s' '%s/spare-00000007'",
		 seg_file(seg), old, waldir, waldir, old, waldir);
	cr_assert_eq(system(cmd), 0);
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 0);
	seg = wal_current_seg(w);
	snprintf(old, sizeof(old), "%s/spare-00000007", waldir);
	cr_assert_neq(access(old, F_OK), 0, "the spare became segment %u", seg);
	snprintf(cmd, sizeof(cmd), "%s/old-seg", tmpdir);
	cr_assert_geq(file_size(seg_file(seg)), file_size(cmd), "the old file, new header");
	cr_assert_eq(append_n(w, 1, 3, 300), 0);
	wal_close(w);
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 3, "W7: %zu records replayed from a recycled file", rs.n);
	wal_close(w);
	recs_free(&rs);
}

/* Through the API: a dropped full-size segment becomes a spare, a later
 * rotation takes it, and replay (from the checkpoint) sees exactly the
 * records appended since. */
Test(wal, dropped_segment_is_recycled_W7)
{
	struct wal_opts o = { .seg_size = 16 << 10, .zero_ahead = true };
	struct recs rs = { 0 };
	struct wal *w = open_replay(&o, &rs, 0);
	char spare[400];
	uint64_t next = 1, ck;
	uint32_t first = wal_current_seg(w);

	wait_written(first, 16 << 10);
	while (wal_current_seg(w) == first)
		cr_assert_eq(append_n(w, next++, 1, 300), 0);
	ck = next - 2; /* the last record of the first segment */
	cr_assert_eq(wal_drop_segment(w, first), 0);
	snprintf(spare, sizeof(spare), "%s/spare-%08u", waldir, first);
	cr_assert_eq(access(spare, F_OK), 0, "W7: the dropped segment is kept as a spare");
	cr_assert_neq(access(seg_file(first), F_OK), 0);
	/* the next rotation takes the spare: full size at once */
	wait_written(first + 1, 16 << 10);
	while (wal_current_seg(w) == first + 1)
		cr_assert_eq(append_n(w, next++, 1, 300), 0);
	cr_assert_neq(access(spare, F_OK), 0, "W7: the spare was taken");
	cr_assert_eq(file_size(seg_file(first + 2)), 16 << 10);
	cr_assert_eq(append_n(w, next++, 3, 300), 0);
	next += 2;
	wal_close(w);
	cr_assert_eq(wal_open(waldir, &o, &w), 0);
	cr_assert_eq(wal_replay(w, ck, collect, &rs), 0);
	cr_assert_eq(rs.n, next - 1 - ck, "%zu records after the checkpoint, want %lu", rs.n,
		     (unsigned long)(next - 1 - ck));
	for (size_t i = 0; i < rs.n; i++) {
		cr_assert_eq(rs.v[i].lsn, ck + 1 + i);
		check_payload(&rs.v[i], ck + 1 + i, 300);
	}
	wal_close(w);
	recs_free(&rs);
}

/* Recycling is W4's create: the new header is fsynced before the spare gets
 * the segment's name. A failed fsync leaves the spare a spare and fails the
 * log; the next open uses it. */
Test(wal, recycle_fsync_error_leaves_the_spare_W7)
{
	struct wal_opts o = { .seg_size = 64 << 10, .zero_ahead = true };
	struct recs rs = { 0 };
	char spare[400], cmd[900];
	struct wal *w;

	snprintf(spare, sizeof(spare), "%s/spare-00000003", waldir);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && head -c 65536 /dev/zero > '%s'", waldir, spare);
	cr_assert_eq(system(cmd), 0);
	faultos_install();
	faultos_fail_nth(FOS_FSYNC, 1, -EIO);
	cr_assert_eq(wal_open(waldir, &o, &w), 0);
	cr_assert_eq(wal_replay(w, 0, collect, &rs), -EIO);
	cr_assert(wal_failed(w));
	wal_close(w);
	faultos_uninstall();
	cr_assert_eq(access(spare, F_OK), 0);
	cr_assert_neq(access(seg_file(1), F_OK), 0, "no segment named before its header is durable");
	w = open_replay(&o, &rs, 0);
	cr_assert_neq(access(spare, F_OK), 0);
	cr_assert_eq(file_size(seg_file(1)), 64 << 10);
	cr_assert_eq(append_n(w, 1, 5, 300), 0);
	wal_close(w);
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 5);
	wal_close(w);
	recs_free(&rs);
}

/* A failed write of zeros ends pre-allocation only: the log goes on. */
Test(wal, zero_fill_error_only_ends_preallocation_W7)
{
	struct wal_opts o = { .seg_size = 256 << 10, .zero_ahead = true };
	struct recs rs = { 0 };
	struct wal *w;
	int i;

	faultos_install();
	/* pwrite 1 is the header, 2 the first zeros (nothing is appended yet) */
	faultos_fail_nth(FOS_PWRITE, 2, -ENOSPC);
	w = open_replay(&o, &rs, 0);
	for (i = 0; i < 5000 && faultos_count(FOS_PWRITE) < 2; i++)
		usleep(1000);
	cr_assert_geq(faultos_count(FOS_PWRITE), 2);
	cr_assert_eq(append_n(w, 1, 5, 300), 0);
	cr_assert_eq(wal_sync(w, 5), 0);
	cr_assert(!wal_failed(w));
	cr_assert(!wal_space_short(w), "the appends allocated their space themselves (W8)");
	wal_close(w);
	faultos_uninstall();
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 5);
	wal_close(w);
	recs_free(&rs);
}

/* W5 with opts.will_block: a lone caller leads the fdatasync on its own
 * thread (no hand-off to the sync thread), after will_block. */
struct block_count {
	int calls;
	pthread_t thread;
};

static void count_block(void *arg)
{
	struct block_count *b = arg;

	b->calls++;
	b->thread = pthread_self();
}

Test(wal, sync_async_lone_caller_leads_on_its_thread_W5)
{
	struct block_count b = { 0 };
	struct wal_opts o = { .will_block = count_block, .will_block_arg = &b };
	struct async_res r = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct recs rs = { 0 };
	struct wal_stats st;
	struct wal *w = open_replay(&o, &rs, 0);

	cr_assert_eq(append_n(w, 1, 3, 30), 0);
	cr_assert_eq(wal_sync_async(w, 3, async_cb, &r), 0);
	cr_assert_eq(async_calls(&r), 1, "done when wal_sync_async returns");
	cr_assert_eq(r.err, 0);
	cr_assert(pthread_equal(r.thread, pthread_self()), "runs on the caller's thread");
	cr_assert_eq(b.calls, 1, "will_block before the fdatasync");
	cr_assert(pthread_equal(b.thread, pthread_self()));
	cr_assert_geq(wal_durable_lsn(w), 3);
	wal_get_stats(w, &st);
	cr_assert_eq(st.syncs, 1);
	wal_close(w);
	recs_free(&rs);
}

/* ---- W8: a full disk --------------------------------------------------------- */

/* Append records first.. until one fails; every failure must be a full disk
 * (-ENOSPC), never a failed log. Returns the next lsn to append. */
static uint64_t append_until_full(struct wal *w, uint64_t first, uint64_t max_n, int *err)
{
	uint64_t i = first;

	*err = 0;
	while (i < first + max_n && !(*err = append_n(w, i, 1, 3000)))
		i++;
	return i;
}

/* A table that fails the nth call of one kind made by the test's own
 * thread (the appender) with a full disk; the sync thread's calls pass (a
 * failed sync is sticky by W4/W5, and a full disk cannot fail an
 * overwrite of allocated bytes or the open of a directory). */
static struct txd_os_ops full_ops;
static pthread_t full_thread;           /* set before the table is installed */
static _Atomic enum faultos_call full_call;
static _Atomic int full_err;
static _Atomic uint64_t full_left; /* calls of full_call to let pass, then fail one */

static bool full_now(enum faultos_call c)
{
	if (!pthread_equal(pthread_self(), full_thread) || c != full_call || !full_left)
		return false;
	return --full_left == 0;
}

static int full_open(const char *p, int f, mode_t m)
{
	return full_now(FOS_OPEN) ? full_err : faultos_ops.open(p, f, m);
}

static ssize_t full_pwrite(int fd, const void *b, size_t n, off_t off)
{
	return full_now(FOS_PWRITE) ? full_err : faultos_ops.pwrite(fd, b, n, off);
}

static int full_fallocate(int fd, off_t off, off_t len)
{
	return full_now(FOS_FALLOCATE) ? full_err : faultos_ops.fallocate(fd, off, len);
}

static int full_rename(const char *a, const char *b)
{
	return full_now(FOS_RENAME) ? full_err : faultos_ops.rename(a, b);
}

/* W8: ENOSPC (or EDQUOT) at every write, allocation and segment-creation
 * step of an append (record, rotation, pre-allocation) fails that append
 * only: nothing of it is in the log, the log is not failed, the next
 * append succeeds with the next lsn, and replay gives exactly the records
 * whose append succeeded. With pre-allocation (zeros ahead) and without. */
Test(wal, enospc_at_every_step_fails_only_that_append_W8)
{
	static const enum faultos_call calls[] = { FOS_PWRITE, FOS_FALLOCATE, FOS_OPEN,
						   FOS_RENAME };
	static const int errs[] = { -ENOSPC, -EDQUOT };
	unsigned seen_fail = 0, c, n, z;

	full_ops = faultos_ops;
	full_ops.open = full_open;
	full_ops.pwrite = full_pwrite;
	full_ops.fallocate = full_fallocate;
	full_ops.rename = full_rename;
	full_thread = pthread_self();
	for (z = 0; z < 2; z++)
	for (c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
	for (n = 1; n <= 12; n++) {
		struct wal_opts o = { .seg_size = 8192, .zero_ahead = z };
		struct recs rs = { 0 };
		struct wal *w;
		uint64_t next;
		int err, e = errs[n % 2];

		nftw(waldir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		faultos_install();
		txd_os_set(&full_ops);
		w = open_replay(&o, &rs, 0);
		full_call = calls[c];
		full_err = e;
		full_left = n;
		next = append_until_full(w, 1, 40, &err);
		if (err) {
			seen_fail++;
			cr_assert_eq(err, e, "call %u n %u: %d, not a full disk", c, n, err);
			cr_assert(!wal_failed(w), "call %u n %u: a full disk failed the log", c, n);
			/* space came back: the same lsn goes on */
			next = append_until_full(w, next, 10, &err);
			cr_assert_eq(err, 0, "call %u n %u: append after the full disk: %d", c, n, err);
		}
		full_left = 0; /* wal_sync leads on this thread: its own failures are W5's */
		cr_assert_eq(wal_sync(w, next - 1), 0, "call %u n %u", c, n);
		wal_close(w);
		faultos_uninstall();
		w = open_replay(&o, &rs, 0);
		cr_assert_eq(rs.n, next - 1, "call %u n %u: %zu records, %lu appended", c, n, rs.n,
			     (unsigned long)(next - 1));
		for (size_t k = 0; k < rs.n; k++) {
			cr_assert_eq(rs.v[k].lsn, k + 1);
			check_payload(&rs.v[k], k + 1, 3000);
		}
		wal_close(w);
		recs_free(&rs);
	}
	cr_assert_gt(seen_fail, 40, "the faults reached appends (%u)", seen_fail);
}

/* W8: an ordinary record leaves WAL_HEADROOM of allocated log; a
 * WAL_APPEND_RESERVE record may use it when the disk gives no more. */
Test(wal, headroom_is_kept_for_reserve_records_W8)
{
	struct wal_opts o = { .seg_size = 4u << 20 };
	struct recs rs = { 0 };
	uint8_t buf[1000] = { 7 };
	struct iovec iov = { buf, sizeof(buf) };
	struct wal *w;
	int r = 0, i, ordinary = 0;

	faultos_install();
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(wal_append(w, 1, &iov, 1, NULL), 0); /* allocates ALLOC_STEP */
	/* from now on the disk is full */
	for (i = 1; i <= 8; i++)
		faultos_fail_nth(FOS_FALLOCATE, (uint64_t)i, -ENOSPC);
	while (!r && ordinary < 10000)
		if (!(r = wal_append(w, 1, &iov, 1, NULL)))
			ordinary++;
	cr_assert_eq(r, -ENOSPC);
	cr_assert(wal_space_short(w));
	/* what is left is the headroom: reserve records fit in it */
	for (i = 0; i < (int)(WAL_HEADROOM / 2048); i++)
		cr_assert_eq(wal_append_flags(w, 2, &iov, 1, WAL_APPEND_RESERVE, NULL), 0);
	cr_assert(!wal_failed(w));
	wal_close(w);
	faultos_uninstall();
	w = open_replay(&o, &rs, 0);
	cr_assert_eq(rs.n, 1 + (size_t)ordinary + WAL_HEADROOM / 2048);
	wal_close(w);
	recs_free(&rs);
}
