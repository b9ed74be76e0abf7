/*
 * test_memory.c — what the engine keeps in memory follows live data and
 * open work, not history (issue 9, defect 12): ns.h M1, chunk.h C5.
 * Asserts the engine's own accounting (txd_status inodes and versions,
 * wcopy_mem_total), never RSS.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../engine/chunk.h"
#include "../../engine/wal.h"
#include "ttsuite.h"

TestSuite(memory, .init = setup, .fini = teardown, .timeout = 300);

#define LIVE 20

/* Write a 1 KiB file in the root and close it, dropping every lookup
 * reference as the kernel would (tt_put keeps them, which pins inodes). */
static void put(const char *name, const char *data)
{
	struct txd_entry e;
	struct txd_open_out oo;
	int err = txd_create(fs, &tt_cred, TXD_ROOT_NODE, name, S_IFREG | 0644,
			     O_WRONLY | O_CREAT | O_TRUNC, &e, &oo);
	if (err == -EEXIST) {
		cr_assert_eq(txd_lookup(fs, TXD_ROOT_NODE, name, &e), 0);
		cr_assert_eq(txd_open(fs, NULL, e.node, O_WRONLY | O_TRUNC, &oo), 0);
	} else {
		cr_assert_eq(err, 0, "create %s: %s", name, txd_strerror(err));
	}
	txd_forget(fs, e.node, 1);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, data, 1024, 0), 1024);
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0);
	cr_assert_eq(txd_release(fs, oo.fh), 0);
}

/* Save i into name: in place, or as tmp + rename. */
static void save(const char *name, unsigned i, bool via_rename)
{
	char data[1024], tmp[64];
	memset(data, 'x', sizeof(data));
	snprintf(data, sizeof(data), "save %u", i);
	if (!via_rename) {
		put(name, data);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	put(tmp, data);
	cr_assert_eq(txd_rename(fs, NULL, TXD_ROOT_NODE, tmp, TXD_ROOT_NODE, name, 0), 0);
}

static struct txd_status status(void)
{
	struct txd_status st;
	txd_get_status(fs, &st);
	return st;
}

static void begin(const char *name)
{
	cr_assert_eq(tt_txn_begin(fs, name), 0);
}

static void end(const char *name)
{
	cr_assert_eq(tt_txn_end(fs, name), 0);
}

static void expect_content(const char *path, const char *prefix)
{
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, path, &data, &len), 0, "%s", path);
	cr_assert_eq(len, 1024);
	cr_expect_eq(strncmp(data, prefix, strlen(prefix)), 0, "%s: %.20s", path, data);
	free(data);
}

/* 20,000 small commits over 20 live files (tmp + rename saves and in-place
 * saves) while one transaction stays open: the files its snapshot sees are
 * kept, every one created and replaced after it is freed at once (M1). */
Test(memory, churn_under_open_transaction_keeps_live_data_M1)
{
	char path[32];
	for (unsigned k = 0; k < LIVE; k++) {
		snprintf(path, sizeof(path), "f%02u", k);
		save(path, 0, false);
	}
	begin("held");
	for (unsigned i = 1; i <= 10000; i++) {
		snprintf(path, sizeof(path), "f%02u", i % LIVE);
		save(path, i, i % 2 == 0);
	}
	struct txd_status st = status();
	/* root + 20 live + the 20 originals the snapshot sees */
	cr_expect_leq(st.inodes, 1 + 2 * LIVE, "inodes %llu", (unsigned long long)st.inodes);
	cr_expect_leq(st.versions_retained, 1 + 3 * LIVE, "versions %llu",
		      (unsigned long long)st.versions_retained);
	for (unsigned k = 0; k < LIVE; k++) {
		char vp[64];
		snprintf(vp, sizeof(vp), ".txdir/txn/held/root/f%02u", k);
		expect_content(vp, "save 0"); /* T1: the view still sees them */
	}
	end("held");
	cr_assert_eq(txd_checkpoint(fs), 0); /* the release's sweep runs in the background (ckpt.c K7) */
	st = status();
	cr_expect_eq(st.inodes, 1 + LIVE, "inodes %llu after the release",
		     (unsigned long long)st.inodes);
	cr_expect_leq(st.versions_retained, 1 + LIVE);
}

/* An unlinked file seen only by the older of two snapshots goes with that
 * snapshot's release, not with the last one (M1). */
Test(memory, release_frees_what_only_it_saw_M1)
{
	save("f", 0, false);
	begin("t1");
	save("f", 1, true); /* the original: unlinked, t1 still sees it */
	begin("t2");
	cr_assert_eq(status().inodes, 3, "root, f, and the original t1 sees");
	expect_content(".txdir/txn/t1/root/f", "save 0");
	end("t1");
	cr_assert_eq(txd_checkpoint(fs), 0); /* the sweep, now */
	cr_expect_eq(status().inodes, 2, "t2 cannot see the original: freed with t1");
	expect_content(".txdir/txn/t2/root/f", "save 1");
	expect_content("f", "save 1");
	end("t2");
	cr_expect_eq(status().inodes, 2);
}

/* Open work costs what was written: 64 files with 1 KiB written and still
 * open hold 4 KiB buffers each, not 32 KiB chunks (C5); the commit frees
 * them. */
Test(memory, small_writes_hold_small_buffers_C5)
{
	enum { N = 64 };
	uint64_t fh[N];
	char data[1024], name[32];
	memset(data, 'y', sizeof(data));
	for (int k = 0; k < N; k++) {
		struct txd_entry e;
		struct txd_open_out oo;
		snprintf(name, sizeof(name), "open%02d", k);
		cr_assert_eq(txd_create(fs, &tt_cred, TXD_ROOT_NODE, name, S_IFREG | 0644,
					O_WRONLY | O_CREAT, &e, &oo), 0);
		fh[k] = oo.fh;
		cr_assert_eq(txd_write(fs, NULL, fh[k], data, sizeof(data), (uint64_t)k * 40), 1024);
	}
	uint64_t held = wcopy_mem_total();
	cr_expect_leq(held, (uint64_t)N * 4096, "%llu bytes held for %d x 1 KiB",
		      (unsigned long long)held, N);
	cr_expect_geq(held, (uint64_t)N * 1024);
	for (int k = 0; k < N; k++) {
		cr_assert_eq(txd_flush(fs, fh[k], &tt_cred, NULL), 0);
		cr_assert_eq(txd_release(fs, fh[k]), 0);
	}
	cr_expect_eq(wcopy_mem_total(), 0);
	char *back;
	size_t len;
	cr_assert_eq(tt_get(fs, "open07", &back, &len), 0);
	cr_assert_eq(len, 280 + 1024);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(back[i], i < 280 ? 0 : 'y', "byte %zu", i);
	free(back);
}

/* A buffer grows with the writes into its chunk and stops at the chunk. */
Test(memory, buffer_grows_with_writes_C5)
{
	struct txd_entry e;
	struct txd_open_out oo;
	char buf[TXD_CHUNK_SIZE];
	memset(buf, 'z', sizeof(buf));
	cr_assert_eq(txd_create(fs, &tt_cred, TXD_ROOT_NODE, "g", S_IFREG | 0644,
				O_RDWR | O_CREAT, &e, &oo), 0);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, buf, 100, 0), 100);
	cr_expect_eq(wcopy_mem_total(), 4096);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, buf, 100, 5000), 100);
	cr_expect_eq(wcopy_mem_total(), 8192);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_expect_eq(wcopy_mem_total(), TXD_CHUNK_SIZE);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, buf, 10, TXD_CHUNK_SIZE + 10), 10);
	cr_expect_eq(wcopy_mem_total(), TXD_CHUNK_SIZE + 4096);
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0);
	cr_expect_eq(wcopy_mem_total(), 0);
	/* an in-place change of a committed short chunk loads only its bytes */
	cr_assert_eq(txd_write(fs, NULL, oo.fh, "q", 1, TXD_CHUNK_SIZE + 3), 1);
	cr_expect_eq(wcopy_mem_total(), 4096);
	char back[30];
	cr_assert_eq(txd_read(fs, oo.fh, back, sizeof(back), TXD_CHUNK_SIZE), 20);
	cr_expect_eq(memcmp(back, "\0\0\0q\0\0\0\0\0\0zzzzzzzzzz", 20), 0);
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0);
	cr_assert_eq(txd_release(fs, oo.fh), 0);
}

static int no_record(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		     uint32_t len)
{
	(void)arg, (void)pos, (void)type, (void)payload, (void)len;
	return -EINVAL; /* a fresh log has none */
}

/* A large record does not keep its append buffer (wal.h, Memory). */
Test(memory, wal_append_buffer_not_kept_after_large_record)
{
	char dir[] = "/tmp/txdtest-wal.XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	struct wal *w;
	struct wal_stats st;
	cr_assert_eq(wal_open(dir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 0, no_record, NULL), 0);
	size_t big = 4u << 20;
	char *buf = calloc(1, big);
	struct iovec iov = {.iov_base = buf, .iov_len = big};
	cr_assert_eq(wal_append(w, 1, &iov, 1, NULL), 0);
	wal_get_stats(w, &st);
	cr_expect_leq(st.mem_bytes, 256u << 10, "%llu bytes kept",
		      (unsigned long long)st.mem_bytes);
	iov.iov_len = 1000;
	cr_assert_eq(wal_append(w, 1, &iov, 1, NULL), 0);
	wal_get_stats(w, &st);
	cr_expect_leq(st.mem_bytes, 256u << 10);
	cr_expect_eq(st.records, 2);
	wal_close(w);
	free(buf);
	tt_rmtree(dir);
}
