/*
 * test_ckpt.c — checkpoints (ckpt.c; declared in fs.h) against the
 * invariants at the top of ckpt.c, K0-K5:
 *   K4 write → load gives an equal namespace (heads, chunk maps, xattrs,
 *      entries with their cookies, next_ino), also over several blocks;
 *   K1 a damaged newest checkpoint (header, block, trailer, torn) is passed
 *      over for the previous one; with none valid the store is refused;
 *   K2 a checkpoint whose write, fsync or open fails (faultos) leaves the
 *      previous checkpoint and every WAL segment in place, and a crash in the
 *      middle of one recovers to the same state;
 *   K0 a power cut right after a checkpoint loses nothing it names;
 *   K3 WAL segments holding chunks of a head or of a version a reader still
 *      holds are kept, the rest dropped;
 *   K5 a checkpoint of another format version is refused, not misread.
 * ckpt_write runs through txd_checkpoint (which takes fs->lock); ckpt_load
 * is called directly on a bare txd_fs holding only the checkpoint
 * directory and an empty namespace.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../../engine/ckpt.h"
#include "../../engine/core.h"
#include "../../engine/wal.h"
#include "faultos.h"
#include "txdtest.h"

/* ckpt.c K6: a block holds at most two block targets (1 MiB) and one op of
 * another kind (an xattr: 64 KiB + name; an inode: its symlink target). */
#define CKPT_BLOCK_BOUND ((2u << 20) + (128u << 10))

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
	store = tt_mkstore();
	cr_assert_not_null(store);
	faultos_install(); /* counts only, until a test arms a fault */
}

static void teardown(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	faultos_uninstall();
	tt_rmtree(store);
	free(store);
}

TestSuite(ckpt, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ------------------------------------------------------------ */

static void fill(char *buf, size_t n, unsigned seed)
{
	for (size_t k = 0; k < n; k++)
		buf[k] = (char)('a' + (k * 7 + seed) % 26);
}

/* A tree with every kind of inode state a checkpoint must carry. */
static void populate_big(bool big)
{
	uint64_t root_parent, node;
	const char *leaf;
	struct txd_entry e;
	cr_assert_eq(tt_mkdir(fs, "a"), 0);
	cr_assert_eq(tt_mkdir(fs, "a/b"), 0);
	cr_assert_eq(tt_put(fs, "a/small", "hello", 5), 0);
	size_t len = big ? (5u << 20) + 123 : 3 * TXD_CHUNK_SIZE + 5; /* big: a pack */
	char *buf = malloc(len);
	fill(buf, len, 1);
	cr_assert_eq(tt_put(fs, "a/b/big", buf, len), 0);
	free(buf);
	cr_assert_eq(tt_resolve(fs, "a/small", &root_parent, &leaf, &node), 0);
	cr_assert_eq(txd_setxattr(fs, NULL, node, "user.k", "value", 5, 0), 0);
	cr_assert_eq(txd_setxattr(fs, NULL, node, "user.empty", "", 0, 0), 0);
	cr_assert_eq(txd_link(fs, NULL, node, TXD_ROOT_NODE, "hardlink", &e), 0);
	txd_forget(fs, e.node, 1);
	cr_assert_eq(txd_symlink(fs, &tt_cred, TXD_ROOT_NODE, "sym", "a/small", &e), 0);
	txd_forget(fs, e.node, 1);
	char name[32];
	for (int k = 0; k < 20; k++) {
		snprintf(name, sizeof(name), "n%02d", k);
		cr_assert_eq(tt_put(fs, name, name, strlen(name)), 0);
	}
	for (int k = 0; k < 20; k += 2) { /* cookie gaps; next_ino past the live ones */
		snprintf(name, sizeof(name), "n%02d", k);
		cr_assert_eq(tt_unlink(fs, name), 0);
	}
	cr_assert_eq(tt_rename(fs, "n01", "a/renamed", 0), 0);
	cr_assert_eq(tt_put(fs, "n19", "", 0), 0); /* truncated to empty */
}

static void populate(void)
{
	populate_big(false);
}

/* Many inodes with long names (a checkpoint of several 1 MiB blocks), made
 * in one commit through fs_commit: the checkpoint is under test, not the
 * request path. */
static void populate_many(int n, int seed)
{
	char dname[32], name[200];
	uint64_t node;
	snprintf(dname, sizeof(dname), "many%d", seed);
	cr_assert_eq(tt_mkdir(fs, dname), 0);
	cr_assert_eq(tt_resolve(fs, dname, NULL, NULL, &node), 0);
	pthread_mutex_lock(&fs->lock);
	uint64_t dir = fs_node(fs, node)->in->ino;
	struct rec_buf b;
	rec_init(&b, 0, fs_now_ns(), 0);
	for (int k = 0; k < n; k++) {
		struct timespec t = {1700000000 + k, (long)k};
		struct rec_inode r = {.ino = ns_alloc_ino(&fs->ns), .mode = S_IFREG | 0644,
				      .uid = (uint32_t)k, .gid = 7, .nlink = 1, .atime = t,
				      .mtime = t, .ctime = t};
		snprintf(name, sizeof(name), "%0150d-%d", k, seed);
		rec_inode(&b, &r);
		rec_dent_set(&b, dir, name, r.ino, 0);
	}
	int err = fs_commit(fs, &b, NULL);
	pthread_mutex_unlock(&fs->lock);
	rec_release(&b);
	cr_assert_eq(err, 0, "%s", txd_strerror(err));
}

static void churn(int n);

static int checkpoint(void)
{
	return txd_checkpoint(fs);
}

/* Load the newest valid checkpoint of the store into *out (K4: the same
 * ckpt_load recovery uses). */
static int load_copy(struct ns *out, uint64_t *lsn)
{
	struct txd_fs *f = calloc(1, sizeof(*f));
	char dirp[600];
	cr_assert_not_null(f);
	snprintf(dirp, sizeof(dirp), "%s/coordination/dtc/checkpoints", store);
	f->store.ckpt_dir = dirp;
	cr_assert_eq(ns_init(&f->ns), 0);
	int err = ckpt_load(f, lsn);
	*out = f->ns;
	free(f);
	return err;
}

struct locs {
	uint64_t *idx;
	struct chunk_loc *loc;
	uint32_t n, cap;
};

static int collect(void *arg, uint64_t idx, struct chunk *c)
{
	struct locs *l = arg;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 1024;
		l->idx = realloc(l->idx, l->cap * sizeof(*l->idx));
		l->loc = realloc(l->loc, l->cap * sizeof(*l->loc));
		cr_assert(l->idx && l->loc);
	}
	l->idx[l->n] = idx;
	chunk_get_loc(c, &l->loc[l->n]);
	l->n++;
	return 0;
}

static struct ns *other;

static int compare_inode(void *arg, struct inode *a)
{
	(void)arg;
	struct inode *b = ns_inode(other, a->ino);
	cr_assert_not_null(b, "K4: inode %lu missing after load", (unsigned long)a->ino);
	const struct iver *x = a->head, *y = b->head;
	unsigned long ino = (unsigned long)a->ino;
	cr_assert_eq(x->mode, y->mode, "ino %lu mode", ino);
	cr_assert_eq(x->uid, y->uid, "ino %lu uid", ino);
	cr_assert_eq(x->gid, y->gid, "ino %lu gid", ino);
	cr_assert_eq(x->nlink, y->nlink, "ino %lu nlink", ino);
	cr_assert_eq(x->rdev, y->rdev, "ino %lu rdev", ino);
	cr_assert_eq(x->size, y->size, "ino %lu size", ino);
	cr_assert_eq(x->dsum, y->dsum, "ino %lu digest", ino);
	cr_assert_eq(x->commit, y->commit, "ino %lu commit", ino);
	cr_assert_eq(x->vno, y->vno, "ino %lu vno", ino);
	cr_assert_eq(memcmp(&x->atime, &y->atime, sizeof(x->atime)), 0, "ino %lu atime", ino);
	cr_assert_eq(memcmp(&x->mtime, &y->mtime, sizeof(x->mtime)), 0, "ino %lu mtime", ino);
	cr_assert_eq(memcmp(&x->ctime, &y->ctime, sizeof(x->ctime)), 0, "ino %lu ctime", ino);
	cr_assert_eq(!x->target, !y->target, "ino %lu target", ino);
	if (x->target)
		cr_assert_str_eq(x->target, y->target);
	cr_assert_eq(!x->xa, !y->xa, "ino %lu xattrs", ino);
	if (x->xa) {
		cr_assert_eq(x->xa->len, y->xa->len, "ino %lu xattrs", ino);
		cr_assert_eq(memcmp(x->xa->data, y->xa->data, x->xa->len), 0, "ino %lu xattrs", ino);
	}
	struct locs la = {0}, lb = {0};
	if (S_ISREG(x->mode)) {
		cr_assert_eq(cmap_walk(x->map, 0, collect, &la), 0);
		cr_assert_eq(cmap_walk(y->map, 0, collect, &lb), 0);
	}
	cr_assert_eq(la.n, lb.n, "ino %lu: %u chunks, %u after load", ino, la.n, lb.n);
	for (uint32_t k = 0; k < la.n; k++) {
		cr_assert_eq(la.idx[k], lb.idx[k]);
		cr_assert_eq(memcmp(&la.loc[k], &lb.loc[k], sizeof(la.loc[k])), 0,
			     "ino %lu chunk %lu location", ino, (unsigned long)la.idx[k]);
	}
	free(la.idx);
	free(la.loc);
	free(lb.idx);
	free(lb.loc);
	cr_assert_eq(!a->dir, !b->dir, "ino %lu directory", ino);
	if (a->dir) {
		cr_assert_eq(a->parent, b->parent, "ino %lu ..", ino);
		cr_assert_eq(a->dir->count, b->dir->count, "ino %lu entries", ino);
		struct dent *p = ns_dir_next(a->dir, 0), *q = ns_dir_next(b->dir, 0);
		for (; p && q; p = ns_dir_next(a->dir, p->cookie), q = ns_dir_next(b->dir, q->cookie)) {
			cr_assert_str_eq(p->name, q->name, "ino %lu", ino);
			cr_assert_eq(p->ino, q->ino, "ino %lu: %s", ino, p->name);
			cr_assert_eq(p->cookie, q->cookie, "ino %lu: %s cookie", ino, p->name);
		}
		cr_assert(!p && !q, "ino %lu: entry lists differ", ino);
	}
	return 0;
}

static void assert_ns_equal(struct ns *a, struct ns *b)
{
	other = b;
	cr_assert_eq(a->ninodes, b->ninodes, "K4: %lu inodes, %lu after load",
		     (unsigned long)a->ninodes, (unsigned long)b->ninodes);
	cr_assert_eq(a->next_ino, b->next_ino, "K4: next_ino %lu, %lu after load",
		     (unsigned long)a->next_ino, (unsigned long)b->next_ino);
	ns_walk(a, compare_inode, NULL);
}

/* The live namespace against the checkpoint on disk. */
static uint64_t assert_disk_equals_memory(void)
{
	struct ns loaded;
	uint64_t lsn;
	int err = load_copy(&loaded, &lsn);
	cr_assert_eq(err, 0, "load: %s", txd_strerror(err));
	pthread_mutex_lock(&fs->lock);
	assert_ns_equal(&fs->ns, &loaded);
	pthread_mutex_unlock(&fs->lock);
	ns_destroy(&loaded);
	return lsn;
}

static char *ckpt_file(uint64_t lsn)
{
	static char p[700];
	snprintf(p, sizeof(p), "%s/coordination/dtc/checkpoints/ckpt-%016lx", store,
		 (unsigned long)lsn);
	return p;
}

static int count_ckpts(void)
{
	char d[600];
	int n = 0;
	snprintf(d, sizeof(d), "%s/coordination/dtc/checkpoints", store);
	DIR *dp = opendir(d);
	cr_assert_not_null(dp);
	for (struct dirent *e; (e = readdir(dp));)
		n += strncmp(e->d_name, "ckpt-", 5) == 0;
	closedir(dp);
	return n;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc(*len ? *len : 1);
	cr_assert_eq(fread(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

static void spit(const char *path, const void *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(b, 1, len, f), len);
	fclose(f);
}

/* ---- K4: round trips ----------------------------------------------------- */

Test(ckpt, K4_write_then_load_gives_an_equal_namespace)
{
	do_open();
	populate_big(true);
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn = assert_disk_equals_memory();
	cr_assert_eq(lsn, wal_last_lsn(fs->wal), "the checkpoint is at the last LSN");
	cr_assert_eq(lsn, fs->ckpt_lsn);
	cr_assert_eq(count_ckpts(), 1);

	/* and recovery from it alone gives the same tree */
	uint64_t fp, fp2;
	cr_assert_eq(tt_fingerprint(fs, &fp), 0);
	txd_fs_close(fs);
	fs = NULL;
	do_open();
	cr_assert_eq(fs->ckpt_lsn, lsn);
	cr_assert_eq(tt_fingerprint(fs, &fp2), 0);
	cr_assert_eq(fp, fp2);
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, "hardlink", &data, &len), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(data, "hello", 5), 0);
	free(data);
}

Test(ckpt, K4_several_blocks_round_trip)
{
	do_open();
	populate_many(8000, 0);
	cr_assert_eq(checkpoint(), 0);
	size_t len;
	char *b = slurp(ckpt_file(fs->ckpt_lsn), &len);
	uint64_t nblocks;
	memcpy(&nblocks, b + len - 16, 8);
	free(b);
	cr_assert_geq(nblocks, 3, "only %lu blocks: the test wants several", (unsigned long)nblocks);
	assert_disk_equals_memory();
}

/* K6: one inode with a content map and xattrs far larger than a block. The
 * loader refuses blocks over 64 MiB, so a block per inode made every file
 * of more than 2M chunks (64 GiB) unloadable and its store unopenable; the
 * writer must split whatever one inode holds. The map here is 50,000 pack
 * chunks (1.6 MB of changes) and 30 xattrs of 60 KiB (1.8 MB). */
Test(ckpt, K6_no_block_outgrows_its_bound_however_large_an_inode)
{
	/* xattrs up to the per-file bound (fsops.c XATTR_FILE_MAX, 256 KiB) */
	enum { NCHUNKS = 150000, NXATTR = 4, XLEN = 60 << 10 };
	uint64_t node;
	do_open();
	cr_assert_eq(tt_put(fs, "huge", "x", 1), 0);
	cr_assert_eq(tt_resolve(fs, "huge", NULL, NULL, &node), 0);
	char *val = malloc(XLEN);
	fill(val, XLEN, 3);
	for (int k = 0; k < NXATTR; k++) {
		char name[32];
		snprintf(name, sizeof(name), "user.x%d", k);
		val[0] = (char)k;
		cr_assert_eq(txd_setxattr(fs, NULL, node, name, val, XLEN, 0), 0);
	}
	free(val);
	pthread_mutex_lock(&fs->lock);
	uint64_t ino = fs_node(fs, node)->in->ino;
	struct wcopy_change *c = calloc(NCHUNKS, sizeof(*c));
	for (uint32_t k = 0; k < NCHUNKS; k++) {
		c[k].idx = 2 * k; /* sparse: holes between */
		c[k].len = 100 + k % 1000;
		c[k].csum = k;
		c[k].loc = (struct chunk_loc){.file = 1, .len = c[k].len, .off = 4096ull * k,
					      .csum = k};
	}
	struct rec_buf b;
	rec_init(&b, 0, fs_now_ns(), 0);
	rec_content(&b, ino, 2ull * NCHUNKS * TXD_CHUNK_SIZE, true, 0, c, NCHUNKS);
	int err = fs_commit(fs, &b, NULL);
	pthread_mutex_unlock(&fs->lock);
	rec_release(&b);
	free(c);
	cr_assert_eq(err, 0, "%s", txd_strerror(err));
	cr_assert_eq(checkpoint(), 0);

	size_t len;
	char *f = slurp(ckpt_file(fs->ckpt_lsn), &len);
	uint32_t biggest = 0, nblocks = 0;
	for (size_t off = 64; off + 16 <= len; nblocks++) {
		uint32_t m, bl;
		memcpy(&m, f + off, 4);
		memcpy(&bl, f + off + 4, 4);
		if (m == 0x58534b43u && nblocks == 0) { /* the services' section */
			off += 16 + bl;
			nblocks--;
			continue;
		}
		if (m != 0x4c424b43u)
			break;
		biggest = bl > biggest ? bl : biggest;
		off += 16 + bl;
	}
	free(f);
	cr_assert_leq(biggest, CKPT_BLOCK_BOUND, "K6: a block of %u bytes (bound %u)", biggest,
		      (unsigned)CKPT_BLOCK_BOUND);
	cr_assert_geq(nblocks, 4);
	assert_disk_equals_memory();
}

Test(ckpt, K4_nothing_new_writes_no_new_checkpoint)
{
	do_open();
	cr_assert_eq(tt_put(fs, "f", "x", 1), 0);
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn = fs->ckpt_lsn, count = fs->ckpt_count;
	uint64_t opens = faultos_count(FOS_OPEN);
	cr_assert_eq(checkpoint(), 0);
	cr_assert_eq(fs->ckpt_lsn, lsn);
	cr_assert_eq(fs->ckpt_count, count);
	cr_assert_eq(faultos_count(FOS_OPEN), opens, "a checkpoint file was opened");
	cr_assert_eq(count_ckpts(), 1);
}

Test(ckpt, empty_directory_loads_nothing)
{
	struct ns loaded;
	uint64_t lsn = 99;
	do_open(); /* creates the store's layout; no checkpoint yet */
	cr_assert_eq(count_ckpts(), 0);
	cr_assert_eq(load_copy(&loaded, &lsn), 0);
	cr_assert_eq(lsn, 0);
	cr_assert_eq(loaded.ninodes, 0);
	ns_destroy(&loaded);
}

/* ---- K1: damaged checkpoints ------------------------------------------------ */

enum damage {
	D_HDR_MAGIC,
	D_HDR_SUM,
	D_HDR_LSN,
	D_BLOCK_MAGIC,
	D_BLOCK_LEN,
	D_FIRST_PAYLOAD,
	D_LAST_PAYLOAD,
	D_TRAILER_COUNT,
	D_TRAILER_SUM,
	D_CUT_TRAILER,
	D_CUT_MID_BLOCK,
	D_CUT_HEADER,
	D_EMPTY,
	D_NDAMAGE
};

static const char *const damage_name[] = {
	"header magic", "header checksum", "header LSN", "block magic", "block length",
	"first block's payload", "last block's payload", "trailer block count",
	"trailer checksum", "no trailer", "cut in a block", "cut in the header", "empty file",
};

/* Offset of the last block's payload. */
static size_t last_block(const char *b, size_t len)
{
	size_t off = 64, last = 0;
	while (off + 16 <= len) {
		uint32_t m, bl;
		memcpy(&m, b + off, 4);
		memcpy(&bl, b + off + 4, 4);
		if (m == 0x58534b43u && off == 64) { /* the services' section */
			off += 16 + bl;
			continue;
		}
		if (m != 0x4c424b43u)
			break;
		last = off + 16;
		off += 16 + bl;
	}
	return last;
}

static size_t apply_damage(char *b, size_t len, enum damage d)
{
	switch (d) {
	case D_HDR_MAGIC: b[0] ^= 1; break;
	case D_HDR_SUM: b[60] ^= 1; break;
	case D_HDR_LSN: b[16] ^= 1; break;
	case D_BLOCK_MAGIC: b[64] ^= 1; break;
	case D_BLOCK_LEN: b[68] ^= 4; break;
	case D_FIRST_PAYLOAD: b[64 + 16 + 30] ^= 0x10; break;
	case D_LAST_PAYLOAD: b[last_block(b, len) + 40] ^= 0x10; break;
	case D_TRAILER_COUNT: b[len - 16] ^= 1; break;
	case D_TRAILER_SUM: b[len - 1] ^= 1; break;
	case D_CUT_TRAILER: return len - 24;
	case D_CUT_MID_BLOCK: return last_block(b, len) + 100;
	case D_CUT_HEADER: return 40;
	case D_EMPTY: return 0;
	default: break;
	}
	return len;
}

Test(ckpt, K1_damaged_newest_falls_back_to_the_previous)
{
	do_open();
	populate();
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn_a = fs->ckpt_lsn;
	struct ns ns_a;
	uint64_t l;
	cr_assert_eq(load_copy(&ns_a, &l), 0);
	size_t len_a;
	char *file_a = slurp(ckpt_file(lsn_a), &len_a);

	/* B: several blocks, so a damaged last block follows applied ones */
	populate_many(5000, 1);
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn_b = fs->ckpt_lsn;
	cr_assert_gt(lsn_b, lsn_a);
	cr_assert_eq(count_ckpts(), 1, "K2: A was not deleted after B");
	size_t len_b;
	char *file_b = slurp(ckpt_file(lsn_b), &len_b);
	uint64_t nblocks_b;
	memcpy(&nblocks_b, file_b + len_b - 16, 8);
	cr_assert_geq(nblocks_b, 2, "B's later block must follow an applied one");
	spit(ckpt_file(lsn_a), file_a, len_a); /* as if B's cleanup had not run */

	struct ns loaded;
	cr_assert_eq(load_copy(&loaded, &l), 0);
	cr_assert_eq(l, lsn_b, "the newest valid one is used");
	ns_destroy(&loaded);

	char *copy = malloc(len_b);
	for (int d = 0; d < D_NDAMAGE; d++) {
		memcpy(copy, file_b, len_b);
		size_t n = apply_damage(copy, len_b, d);
		spit(ckpt_file(lsn_b), copy, n);
		int err = load_copy(&loaded, &l);
		cr_assert_eq(err, 0, "B with a damaged %s: %s", damage_name[d], txd_strerror(err));
		cr_assert_eq(l, lsn_a, "K1: B with a damaged %s was used", damage_name[d]);
		assert_ns_equal(&ns_a, &loaded); /* nothing of B's partial apply is left */
		ns_destroy(&loaded);
	}
	free(copy);
	free(file_a);
	free(file_b);
	ns_destroy(&ns_a);
}

static void damage_first_block(uint64_t lsn)
{
	size_t len;
	char *b = slurp(ckpt_file(lsn), &len);
	b[64 + 16 + 30] ^= 0x10;
	spit(ckpt_file(lsn), b, len);
	free(b);
}

/* With no valid checkpoint, loading gives the empty namespace at LSN 0 and
 * recovery replays the whole log, which is right while the log is whole... */
Test(ckpt, K1_only_checkpoint_damaged_replays_the_whole_log)
{
	do_open();
	populate();
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn = fs->ckpt_lsn, fp, fp2;
	cr_assert_eq(tt_fingerprint(fs, &fp), 0);
	txd_fs_close(fs); /* nothing new since: no new checkpoint */
	fs = NULL;
	cr_assert_eq(count_ckpts(), 1);
	damage_first_block(lsn);
	struct ns loaded;
	uint64_t l = 99;
	int err = load_copy(&loaded, &l);
	cr_assert_eq(err, 0, "%s", txd_strerror(err));
	cr_assert_eq(l, 0);
	cr_assert_eq(loaded.ninodes, 0, "K1: the damaged checkpoint's partial apply is left");
	ns_destroy(&loaded);
	do_open();
	cr_assert_eq(fs->ckpt_lsn, 0);
	cr_assert_eq(tt_fingerprint(fs, &fp2), 0);
	cr_assert_eq(fp, fp2);
}

/* ... and refused once segments before the checkpoint are gone (the WAL
 * sees the hole): never an empty or partial tree. */
Test(ckpt, K1_only_checkpoint_damaged_and_log_start_dropped_refuses_the_store)
{
	opts.wal_segment_bytes = 64 << 10;
	do_open();
	populate();
	churn(100);
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn = fs->ckpt_lsn;
	txd_fs_close(fs);
	fs = NULL;
	damage_first_block(lsn);
	int err = txd_fs_open(store, &opts, &fs, NULL);
	cr_assert_eq(err, -TXD_ECORRUPT, "open: %s", txd_strerror(err));
	cr_assert_null(fs);
}

Test(ckpt, K1_file_named_for_another_lsn_is_not_used)
{
	do_open();
	populate();
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn = fs->ckpt_lsn;
	size_t len;
	char *b = slurp(ckpt_file(lsn), &len);
	spit(ckpt_file(lsn + 1000), b, len); /* a copy under a newer name */
	free(b);
	struct ns loaded;
	uint64_t l;
	cr_assert_eq(load_copy(&loaded, &l), 0);
	cr_assert_eq(l, lsn, "a checkpoint's header LSN must match its name");
	ns_destroy(&loaded);
}

/* K5: the header's version is checked, with a valid checksum. */
Test(ckpt, K5_other_format_version_is_refused)
{
	do_open();
	populate();
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn = fs->ckpt_lsn;
	txd_fs_close(fs);
	fs = NULL;
	size_t len;
	char *b = slurp(ckpt_file(lsn), &len);
	uint32_t ver = 3;
	memcpy(b + 8, &ver, 4);
	uint64_t sum = XXH64(b, 56, 0);
	memcpy(b + 56, &sum, 8);
	spit(ckpt_file(lsn), b, len);
	free(b);
	struct ns loaded;
	uint64_t l;
	cr_assert_eq(load_copy(&loaded, &l), -TXD_EFORMAT, "K5: a version 3 checkpoint was read");
	ns_destroy(&loaded);
	cr_assert_eq(txd_fs_open(store, &opts, &fs, NULL), -TXD_EFORMAT);
	cr_assert_null(fs);
}

/* ---- K2: failures while writing ----------------------------------------------- */

/* Step `iter` on the one store of a test: changes, checkpoint A (its LSN
 * returned, its namespace in *ns_a), more changes (the tree's fingerprint
 * in *fp), and a quiet log (no sync left for the WAL thread). */
static uint64_t prepare_a_then_more(int iter, struct ns *ns_a, uint64_t *fp)
{
	char name[32];
	uint64_t l;
	if (!fs)
		do_open();
	if (iter == 0)
		populate();
	snprintf(name, sizeof(name), "it%d", iter);
	cr_assert_eq(tt_put(fs, name, name, strlen(name)), 0);
	cr_assert_eq(checkpoint(), 0);
	uint64_t lsn_a = fs->ckpt_lsn;
	cr_assert_eq(load_copy(ns_a, &l), 0);
	snprintf(name, sizeof(name), "after%d", iter);
	cr_assert_eq(tt_put(fs, name, "later", 5), 0);
	if (iter > 0) {
		snprintf(name, sizeof(name), "it%d", iter - 1);
		cr_assert_eq(tt_unlink(fs, name), 0);
	}
	cr_assert_eq(tt_fingerprint(fs, fp), 0);
	txd_sync_wait(fs);
	return lsn_a;
}

static void reopen(void)
{
	txd_fs_close(fs);
	fs = NULL;
	do_open();
}

Test(ckpt, K2_failed_write_fsync_or_open_keeps_the_previous_checkpoint)
{
	/* how many of each call one checkpoint makes */
	const enum faultos_call kinds[] = {FOS_OPEN, FOS_PWRITE, FOS_FSYNC, FOS_FDATASYNC};
	enum { NK = sizeof(kinds) / sizeof(kinds[0]) };
	uint64_t per_ckpt[NK], fp;
	struct ns ns_a;
	int iter = 0;
	prepare_a_then_more(iter++, &ns_a, &fp);
	ns_destroy(&ns_a);
	uint64_t before[NK];
	for (int k = 0; k < NK; k++)
		before[k] = faultos_count(kinds[k]);
	cr_assert_eq(checkpoint(), 0);
	for (int k = 0; k < NK; k++)
		per_ckpt[k] = faultos_count(kinds[k]) - before[k];
	cr_assert_geq(per_ckpt[1], 4, "header, a block (2 writes), trailer");

	int tried = 0;
	for (int k = 0; k < NK; k++)
		for (uint64_t n = 1; n <= per_ckpt[k]; n++) {
			uint64_t lsn_a = prepare_a_then_more(iter++, &ns_a, &fp);
			faultos_fail_nth(kinds[k], n, -EIO);
			int err = checkpoint();
			if (err == 0) { /* that call was not the checkpoint's (a WAL thread) */
				faultos_reset();
				ns_destroy(&ns_a);
				continue;
			}
			tried++;
			cr_assert_eq(fs->ckpt_lsn, lsn_a, "a failed checkpoint became current");
			cr_assert_eq(count_ckpts(), 1, "K2: call %d #%lu: %d checkpoint files",
				     kinds[k], (unsigned long)n, count_ckpts());
			struct ns loaded;
			uint64_t l;
			cr_assert_eq(load_copy(&loaded, &l), 0);
			cr_assert_eq(l, lsn_a, "K2: call %d #%lu failed: the previous is gone",
				     kinds[k], (unsigned long)n);
			assert_ns_equal(&ns_a, &loaded);
			ns_destroy(&loaded);
			ns_destroy(&ns_a);
			/* and the store reopens to the state before the failure */
			reopen();
			uint64_t fp2;
			cr_assert_eq(tt_fingerprint(fs, &fp2), 0);
			cr_assert_eq(fp2, fp, "call %d #%lu: reopened to another state", kinds[k],
				     (unsigned long)n);
		}
	cr_assert_geq(tried, 6);
}

Test(ckpt, K2_crash_in_the_middle_of_a_checkpoint_recovers_everything)
{
	uint64_t per_ckpt, fp;
	struct ns ns_a;
	int iter = 0;
	prepare_a_then_more(iter++, &ns_a, &fp);
	ns_destroy(&ns_a);
	uint64_t w0 = faultos_count(FOS_PWRITE);
	cr_assert_eq(checkpoint(), 0);
	per_ckpt = faultos_count(FOS_PWRITE) - w0;
	/* the file's writes are the first ones (K7 batches blocks into writes:
	 * at least a header, one write of blocks and a trailer); after the
	 * last of them the checkpoint is whole, before it it is not */
	uint64_t whole_after = 0;
	for (uint64_t n = 1; n <= per_ckpt; n++) {
		uint64_t lsn_a = prepare_a_then_more(iter++, &ns_a, &fp);
		ns_destroy(&ns_a);
		uint64_t lsn_b = wal_last_lsn(fs->wal);
		faultos_tear_nth_pwrite(n, 7, true); /* a torn write, then death */
		/* 0: the death came after the checkpoint was whole (the control
		 * logs it saves next) */
		bool done = checkpoint() == 0;
		txd_fs_close(fs); /* a dead process: nothing more lands */
		fs = NULL;
		faultos_revive();
		do_open();
		cr_assert_eq(fs->ckpt_lsn, done ? lsn_b : lsn_a,
			     "K1: write #%lu: recovered from checkpoint %lu", (unsigned long)n,
			     (unsigned long)fs->ckpt_lsn);
		if (done && !whole_after)
			whole_after = n - 1;
		cr_assert(done == (whole_after != 0), "write #%lu: checkpoint %s after it was whole",
			  (unsigned long)n, done ? "done" : "failed");
		uint64_t fp2;
		cr_assert_eq(tt_fingerprint(fs, &fp2), 0);
		cr_assert_eq(fp2, fp, "write #%lu: recovered to another state", (unsigned long)n);
		/* the next checkpoint replaces both */
		cr_assert_eq(tt_put(fs, "again", "x", 1), 0);
		cr_assert_eq(checkpoint(), 0);
		cr_assert_eq(count_ckpts(), 1, "K2: leftovers after the next checkpoint");
	}
	/* never whole: every write of the checkpoint's was the file's */
	cr_assert_geq(whole_after ? whole_after : per_ckpt, 3,
		      "header, blocks and trailer are written (%lu of %lu)",
		      (unsigned long)whole_after, (unsigned long)per_ckpt);
}

/* ---- K0: durable before named -------------------------------------------------- */

Test(ckpt, K0_power_cut_after_a_checkpoint_loses_nothing)
{
	opts.commit_interval_ms = 600000; /* the WAL thread does not sync meanwhile */
	do_open();
	cr_assert_eq(tt_put(fs, "base", "base", 4), 0);
	txd_sync_wait(fs);
	for (uint64_t seed = 1; seed <= 6; seed++) {
		char name[32], body[64];
		snprintf(name, sizeof(name), "d%lu", (unsigned long)seed);
		cr_assert_eq(tt_mkdir(fs, name), 0);
		for (int k = 0; k < 30; k++) {
			snprintf(name, sizeof(name), "d%lu/f%d", (unsigned long)seed, k);
			snprintf(body, sizeof(body), "content of %d, seed %lu", k,
				 (unsigned long)seed);
			cr_assert_eq(tt_put(fs, name, body, strlen(body)), 0);
		}
		uint64_t fp, fp2;
		cr_assert_eq(tt_fingerprint(fs, &fp), 0);
		cr_assert_eq(checkpoint(), 0);
		faultos_power_cut(seed);
		txd_fs_close(fs);
		fs = NULL;
		faultos_revive();
		do_open();
		int err = tt_fingerprint(fs, &fp2);
		cr_assert_eq(err, 0, "K0: seed %lu: a chunk the checkpoint names was lost (%s)",
			     (unsigned long)seed, txd_strerror(err));
		cr_assert_eq(fp2, fp, "K0: seed %lu: state lost behind the checkpoint",
			     (unsigned long)seed);
	}
}

/* ---- K3: which WAL segments stay -------------------------------------------------- */

static bool seg_exists(uint32_t seg)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/coordination/dtc/wal/seg-%08u", store, seg);
	return access(p, F_OK) == 0;
}

static uint32_t seg_of(const char *path)
{
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	struct chunk *c = cmap_get(n->in->head->map, 0);
	cr_assert_not_null(c, "%s has no chunk 0", path);
	struct chunk_loc loc;
	chunk_get_loc(c, &loc);
	pthread_mutex_unlock(&fs->lock);
	cr_assert(loc.file & CHUNK_FILE_WAL, "%s: not inline", path);
	return loc.file & ~CHUNK_FILE_WAL;
}

static void churn(int n)
{
	char body[4096];
	for (int k = 0; k < n; k++) {
		fill(body, sizeof(body), (unsigned)k);
		cr_assert_eq(tt_put(fs, "churn", body, sizeof(body)), 0);
	}
}

Test(ckpt, K3_segments_with_live_chunks_stay_the_rest_go)
{
	opts.wal_segment_bytes = 64 << 10;
	do_open();
	cr_assert_eq(tt_put(fs, "keep", "kept bytes", 10), 0);
	uint32_t keep_seg = seg_of("keep");
	churn(100); /* ~400 KiB of log: several segments of dead chunks */
	uint32_t churn_seg = seg_of("churn");
	cr_assert_gt(churn_seg, keep_seg + 2, "the test wants several segments");
	cr_assert_eq(checkpoint(), 0);
	cr_assert(seg_exists(keep_seg), "K3: the segment holding keep's chunk was dropped");
	cr_assert(seg_exists(churn_seg));
	int dropped = 0;
	for (uint32_t s = keep_seg + 1; s < churn_seg; s++)
		dropped += !seg_exists(s);
	cr_assert_gt(dropped, 0, "no dead segment was dropped");
	txd_fs_close(fs);
	fs = NULL;
	do_open();
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, "keep", &data, &len), 0);
	cr_assert_eq(len, 10);
	cr_assert_eq(memcmp(data, "kept bytes", 10), 0);
	free(data);
}

Test(ckpt, K3_segment_of_a_version_a_reader_holds_stays_until_it_lets_go)
{
	opts.wal_segment_bytes = 64 << 10;
	do_open();
	cr_assert_eq(tt_put(fs, "old", "old bytes", 9), 0);
	uint32_t old_seg = seg_of("old");
	uint64_t node;
	struct txd_open_out oo;
	cr_assert_eq(tt_resolve(fs, "old", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &oo), 0); /* a snapshot reader */
	churn(100);
	cr_assert_eq(tt_put(fs, "old", "new bytes", 9), 0);
	cr_assert_neq(seg_of("old"), old_seg);
	cr_assert_eq(checkpoint(), 0);
	cr_assert(seg_exists(old_seg), "K3: the segment the reader's version lives in was dropped");
	char buf[16];
	cr_assert_eq(txd_read(fs, oo.fh, buf, sizeof(buf), 0), 9);
	cr_assert_eq(memcmp(buf, "old bytes", 9), 0);
	cr_assert_eq(txd_release(fs, oo.fh), 0);
	/* the frozen node pins the version too (fs.h F3) until forgotten */
	pthread_mutex_lock(&fs->lock);
	uint64_t nlookup = fs_node(fs, node)->nlookup;
	pthread_mutex_unlock(&fs->lock);
	txd_forget(fs, node, nlookup);
	cr_assert_eq(tt_put(fs, "poke", "x", 1), 0);
	cr_assert_eq(checkpoint(), 0);
	cr_assert(!seg_exists(old_seg), "the segment stayed after the reader let go");
}

/* ---- K7: commits go on while a checkpoint writes ---------------------------------
 * Every write to the checkpoint file asks a second thread for a commit and
 * waits (bounded) for it: the commit must get through while the checkpoint
 * writes (on code that holds fs->lock across the checkpoint's I/O it cannot,
 * and the wait runs out). After a crash, the checkpoint holds none of those
 * commits and replay applies each exactly once. */
static const struct txd_os_ops *inner_os;
static struct txd_os_ops hooked_os;
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hook_cv = PTHREAD_COND_INITIALIZER;
static bool hook_armed, hook_stop;
static int hook_asked, hook_done, hook_missed;

static bool is_ckpt_fd(int fd)
{
	char link[64], path[700];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return false;
	path[n] = 0;
	return strstr(path, "/ckpt-") != NULL;
}

static ssize_t hook_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	pthread_mutex_lock(&hook_mu);
	if (hook_armed && is_ckpt_fd(fd)) {
		int want = ++hook_asked;
		pthread_cond_broadcast(&hook_cv);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 3;
		while (hook_done < want)
			if (pthread_cond_timedwait(&hook_cv, &hook_mu, &until)) {
				hook_missed++;
				hook_armed = false; /* the commit waits for the lock */
				break;
			}
	}
	pthread_mutex_unlock(&hook_mu);
	return inner_os->pwrite(fd, buf, n, off);
}

/* One commit of each kind per request: a new file, an overwrite, an unlink
 * and a rename. */
static void *committer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&hook_mu);
	for (int k = 0;; k++) {
		while (!hook_stop && hook_asked <= k)
			pthread_cond_wait(&hook_cv, &hook_mu);
		if (hook_stop && hook_asked <= k)
			break;
		pthread_mutex_unlock(&hook_mu);
		char name[32], to[32];
		snprintf(name, sizeof(name), "k7-during-%d", k);
		int err = tt_put(fs, name, name, strlen(name));
		if (!err)
			err = tt_put(fs, "k7-f", name, strlen(name));
		snprintf(name, sizeof(name), "k7-gone-%d", k);
		if (!err)
			err = tt_unlink(fs, name);
		snprintf(name, sizeof(name), "k7-mv-%d", k);
		snprintf(to, sizeof(to), "k7-mv-%d", k + 1);
		if (!err)
			err = tt_rename(fs, name, to, 0);
		pthread_mutex_lock(&hook_mu);
		if (err)
			hook_missed += 1000;
		hook_done = k + 1;
		pthread_cond_broadcast(&hook_cv);
	}
	pthread_mutex_unlock(&hook_mu);
	return NULL;
}

Test(ckpt, K7_commits_during_a_checkpoint_are_kept_once)
{
	inner_os = txd_os;
	hooked_os = *txd_os;
	hooked_os.pwrite = hook_pwrite;
	txd_os_set(&hooked_os);
	do_open();
	populate();
	char name[32];
	cr_assert_eq(tt_put(fs, "k7-f", "before", 6), 0);
	cr_assert_eq(tt_put(fs, "k7-mv-0", "moved", 5), 0);
	for (int k = 0; k < 32; k++) {
		snprintf(name, sizeof(name), "k7-gone-%d", k);
		cr_assert_eq(tt_put(fs, name, name, strlen(name)), 0);
	}
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, committer, NULL), 0);
	pthread_mutex_lock(&hook_mu);
	hook_armed = true;
	pthread_mutex_unlock(&hook_mu);
	uint64_t before = wal_last_lsn(fs->wal);
	int err = checkpoint();
	pthread_mutex_lock(&hook_mu);
	hook_armed = false;
	hook_stop = true;
	pthread_cond_broadcast(&hook_cv);
	pthread_mutex_unlock(&hook_mu);
	pthread_join(th, NULL);
	cr_assert_eq(err, 0, "checkpoint: %s", txd_strerror(err));
	cr_assert_eq(hook_missed, 0, "%d of %d commits could not run while the checkpoint wrote",
		     hook_missed % 1000, hook_asked);
	cr_assert_geq(hook_asked, 3, "header, blocks, trailer");
	uint64_t lsn = fs->ckpt_lsn;
	cr_assert_eq(lsn, before, "the checkpoint is of the state when it began");
	cr_assert_gt(wal_last_lsn(fs->wal), lsn);

	/* the file holds the state at its LSN: none of the commits made meanwhile */
	struct ns loaded;
	uint64_t l;
	cr_assert_eq(load_copy(&loaded, &l), 0);
	cr_assert_eq(l, lsn);
	struct inode *root = ns_inode(&loaded, NS_ROOT_INO);
	cr_assert_not_null(root);
	cr_expect_null(ns_dir_find(root->dir, "k7-during-0", 11));
	cr_expect_not_null(ns_dir_find(root->dir, "k7-gone-0", 9));
	cr_expect_not_null(ns_dir_find(root->dir, "k7-mv-0", 7));
	ns_destroy(&loaded);

	/* a crash: recovery = that checkpoint + replay of what came after */
	uint64_t fp, fp2;
	cr_assert_eq(tt_fingerprint(fs, &fp), 0);
	txd_sync_wait(fs);
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	do_open();
	cr_assert_eq(fs->ckpt_lsn, lsn);
	cr_assert_eq(tt_fingerprint(fs, &fp2), 0);
	cr_expect_eq(fp2, fp, "recovered to another state");
	char *data;
	size_t len;
	snprintf(name, sizeof(name), "k7-mv-%d", hook_asked);
	cr_assert_eq(tt_get(fs, name, &data, &len), 0);
	cr_expect_eq(len, 5);
	free(data);
	snprintf(name, sizeof(name), "k7-during-%d", hook_asked - 1);
	cr_assert_eq(tt_get(fs, "k7-f", &data, &len), 0);
	cr_expect_str_eq(data, name);
	free(data);
}

/* The event and commit logs derive their entries before the checkpoint
 * from the segments it drops: when their sync fails, the segments stay
 * (the checkpoint itself stands). The logs' syncs are the checkpoint's
 * only fdatasyncs once the WAL and packs are durable (txd_sync_wait). */
Test(ckpt, K3_failed_log_sync_keeps_the_segments)
{
	opts.wal_segment_bytes = 64 << 10;
	do_open();
	cr_assert_eq(tt_put(fs, "keep", "kept bytes", 10), 0);
	uint32_t keep_seg = seg_of("keep");
	churn(100);
	uint32_t churn_seg = seg_of("churn");
	cr_assert_gt(churn_seg, keep_seg + 2, "the test wants several segments");
	cr_assert_eq(txd_sync_wait(fs), 0);
	/* the event log's sync fails, then (nothing new: the same drop) the
	 * commit log's */
	for (int nth = 1; nth <= 2; nth++) {
		faultos_fail_nth(FOS_FDATASYNC, (uint64_t)nth, -EIO);
		cr_expect_eq(checkpoint(), 0, "the checkpoint itself stands");
		faultos_reset();
		for (uint32_t s = keep_seg + 1; s < churn_seg; s++)
			cr_expect(seg_exists(s), "segment %u dropped though a log is not durable", s);
	}
	cr_assert_eq(checkpoint(), 0);
	int dropped = 0;
	for (uint32_t s = keep_seg + 1; s < churn_seg; s++)
		dropped += !seg_exists(s);
	cr_expect_gt(dropped, 0, "the logs durable: the next checkpoint drops them");
}
