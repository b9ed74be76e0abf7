/*
 * test_gcopen.c — GC (gc.h) against what the namespace walk does not see:
 * an open file's working copy keeps its own chunk objects of what it
 * committed, so a WAL segment they name must outlive the relocation of the
 * versions' copies (ckpt.c K3 with the usage table, G1); and a victim
 * whose chunk cannot be read forces no checkpoint (G5: only a location
 * that moved does). Found by review; each failed before its fix (ENOENT
 * through the open handle; checkpoints back to back).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../engine/chunk.h"
#include "../../engine/core.h"
#include "../../engine/gc.h"
#include "txdtest.h"

#define BIG (4608u << 10)
static char *store;
static struct txd_fs *fs;
static struct txd_opts opts;

static void do_open(void)
{
	int err = txd_fs_open(store, &opts, &fs, NULL);
	cr_assert_eq(err, 0, "open: %s", txd_strerror(err));
}
static void setup(void)
{
	memset(&opts, 0, sizeof(opts));
	opts.commit_interval_ms = 3600 * 1000;
	store = tt_mkstore();
}
static void teardown(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	tt_rmtree(store);
	free(store);
}
TestSuite(gcopen, .init = setup, .fini = teardown, .timeout = 120);

static void fill(char *buf, size_t n, unsigned seed)
{
	uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
	for (size_t k = 0; k < n; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[k] = (char)x;
	}
}
static void rm(const char *path)
{
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	cr_assert_eq(tt_unlink(fs, path), 0);
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	uint64_t nlookup = n ? n->nlookup : 0;
	pthread_mutex_unlock(&fs->lock);
	if (nlookup)
		txd_forget(fs, node, nlookup);
}
static int run_gc(void)
{
	pthread_mutex_lock(&fs->lock);
	int err = gc_run(fs);
	pthread_mutex_unlock(&fs->lock);
	return err;
}
static struct chunk_loc loc0(const char *path)
{
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	pthread_mutex_lock(&fs->lock);
	struct chunk *c = cmap_get(fs_node(fs, node)->in->head->map, 0);
	cr_assert_not_null(c);
	struct chunk_loc loc;
	chunk_get_loc(c, &loc);
	pthread_mutex_unlock(&fs->lock);
	return loc;
}
static bool seg_exists(uint32_t seg)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/coordination/dtc/wal/seg-%08u", store, seg);
	return access(p, F_OK) == 0;
}

/* A file kept open for writing: its working copy's base map has its own
 * chunk objects for what it committed (wcopy_commit), which the checkpoint
 * walk (K3) does not see. GC relocates the namespace's copy, the next
 * checkpoint drops the segment, the open handle reads a dropped segment. */
Test(gcopen, open_writer_reads_its_committed_inline_chunk_after_segment_gc)
{
	opts.wal_segment_bytes = 256 << 10;
	do_open();
	char buf[20000], got[20000];
	uint64_t parent;
	const char *leaf;
	struct txd_entry e;
	struct txd_open_out oo;
	cr_assert_eq(tt_resolve(fs, "w", &parent, &leaf, NULL), 0);
	cr_assert_eq(txd_create(fs, &tt_cred, parent, leaf, 0644, O_RDWR, &e, &oo), 0);
	fill(buf, sizeof(buf), 5);
	cr_assert_eq(txd_write(fs, &tt_cred, oo.fh, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0); /* committed, inline */
	struct chunk_loc l = loc0("w");
	cr_assert(l.file & CHUNK_FILE_WAL);
	char junk[20000];
	for (unsigned k = 0; k < 60; k++) {
		fill(junk, sizeof(junk), 1000 + k);
		cr_assert_eq(tt_put(fs, "churn", junk, sizeof(junk)), 0);
	}
	rm("churn");
	cr_assert_eq(txd_checkpoint(fs), 0);
	uint32_t seg = l.file & ~CHUNK_FILE_WAL;
	cr_assert(seg_exists(seg));
	cr_assert_eq(txd_read(fs, oo.fh, got, sizeof(got), 0), (ssize_t)sizeof(got));
	cr_assert_eq(run_gc(), 0);
	cr_assert_eq(tt_put(fs, "poke", "x", 1), 0);
	cr_assert_eq(txd_checkpoint(fs), 0);
	cr_assert_eq(run_gc(), 0);
	ssize_t n = txd_read(fs, oo.fh, got, sizeof(got), 0);
	cr_assert_eq(n, (ssize_t)sizeof(got), "read through the open writer: %zd (%s)", n,
		     n < 0 ? strerror((int)-n) : "");
	cr_assert_eq(memcmp(got, buf, sizeof(got)), 0);
	txd_release(fs, oo.fh);
}

Test(gcopen, open_writer_partial_write_after_segment_gc)
{
	opts.wal_segment_bytes = 256 << 10;
	do_open();
	char buf[20000], got[20000];
	uint64_t parent;
	const char *leaf;
	struct txd_entry e;
	struct txd_open_out oo;
	cr_assert_eq(tt_resolve(fs, "w", &parent, &leaf, NULL), 0);
	cr_assert_eq(txd_create(fs, &tt_cred, parent, leaf, 0644, O_RDWR, &e, &oo), 0);
	fill(buf, sizeof(buf), 5);
	cr_assert_eq(txd_write(fs, &tt_cred, oo.fh, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0); /* committed, inline */
	struct chunk_loc l = loc0("w");
	cr_assert(l.file & CHUNK_FILE_WAL);
	char junk[20000];
	for (unsigned k = 0; k < 60; k++) {
		fill(junk, sizeof(junk), 1000 + k);
		cr_assert_eq(tt_put(fs, "churn", junk, sizeof(junk)), 0);
	}
	rm("churn");
	cr_assert_eq(txd_checkpoint(fs), 0);
	uint32_t seg = l.file & ~CHUNK_FILE_WAL;
	cr_assert(seg_exists(seg));
	cr_assert_eq(txd_read(fs, oo.fh, got, sizeof(got), 0), (ssize_t)sizeof(got));
	cr_assert_eq(run_gc(), 0);
	cr_assert_eq(tt_put(fs, "poke", "x", 1), 0);
	cr_assert_eq(txd_checkpoint(fs), 0);
	cr_assert_eq(run_gc(), 0);
	ssize_t n = txd_write(fs, &tt_cred, oo.fh, "Z", 1, 100);
	cr_assert_eq(n, 1, "1-byte write through the open writer: %zd (%s)", n,
		     n < 0 ? strerror((int)-n) : "");
	buf[100] = 'Z';
	n = txd_read(fs, oo.fh, got, sizeof(got), 0);
	cr_assert_eq(memcmp(got, buf, sizeof(got)), 0);
	txd_release(fs, oo.fh);
}

/* A live chunk that fails its checksum in a mostly dead pack: a run that
 * could not move it forces no checkpoint (else the checkpoint thread, which
 * runs GC after each checkpoint, wrote them back to back). */
Test(gcopen, unreadable_chunk_in_a_victim_makes_checkpoints_back_to_back)
{
	do_open();
	char *buf = malloc(BIG);
	for (int k = 0; k < 3; k++) {
		char p[2] = {(char)('a' + k), 0};
		fill(buf, BIG, (unsigned)k);
		cr_assert_eq(tt_put(fs, p, buf, BIG), 0);
	}
	free(buf);
	rm("a");
	rm("c");
	struct chunk_loc l = loc0("b");
	cr_assert_eq(l.file & CHUNK_FILE_WAL, 0);
	char p[700];
	snprintf(p, sizeof(p), "%s/objects/pack-%06u", store, l.file);
	int fd = open(p, O_RDWR);
	cr_assert(fd >= 0);
	char byte;
	cr_assert_eq(pread(fd, &byte, 1, (off_t)l.off), 1);
	byte ^= 1;
	cr_assert_eq(pwrite(fd, &byte, 1, (off_t)l.off), 1);
	close(fd);
	cr_assert_eq(txd_checkpoint(fs), 0);
	/* what the checkpoint thread does: GC, and a checkpoint when forced;
	 * it must settle, not force one after every run */
	bool forced = true;
	for (int round = 0; round < 4; round++) {
		cr_assert_eq(run_gc(), 0);
		pthread_mutex_lock(&fs->lock);
		forced = gc_ckpt_forced(fs);
		pthread_mutex_unlock(&fs->lock);
		if (forced)
			cr_assert_eq(txd_checkpoint(fs), 0);
	}
	cr_assert_not(forced, "every GC run forces a checkpoint (nothing could be moved)");
}

