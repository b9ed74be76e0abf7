/*
 * test_chunk.c — chunks, chunk maps, the chunk store and working copies,
 * against invariants C1–C4 (chunk.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../../engine/chunk.h"
#include "../../engine/os.h"
#include "faultos.h"

static char tmpdir[256], objdir[300], waldir[300];
static struct chunkstore *cs;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/txd-chunk-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(objdir, sizeof(objdir), "%s/objects", tmpdir);
	snprintf(waldir, sizeof(waldir), "%s/wal", tmpdir);
	mkdir(objdir, 0755);
	mkdir(waldir, 0755);
	cr_assert_eq(chunkstore_open(objdir, waldir, &cs), 0);
}

static void teardown(void)
{
	chunkstore_close(cs);
	cs = NULL;
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(chunk, .init = setup, .fini = teardown, .timeout = 300);

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A chunk with a fake location: maps do not read bytes. */
static struct chunk *fake_chunk(uint64_t tagv)
{
	struct chunk_loc l = { .file = 7, .len = 100, .off = tagv, .csum = tagv * 3 + 1 };

	return chunk_new(&l);
}

static uint64_t tag_of(const struct cmap *m, uint64_t idx)
{
	struct chunk *c = cmap_get(m, idx);
	struct chunk_loc l;

	if (!c)
		return UINT64_MAX;
	chunk_get_loc(c, &l);
	return l.off;
}

struct walk_rec {
	uint64_t *idx;
	size_t n;
};

static int walk_collect(void *arg, uint64_t idx, struct chunk *c)
{
	struct walk_rec *w = arg;

	(void)c;
	w->idx[w->n++] = idx;
	return 0;
}

/* ---- chunks ---------------------------------------------------------------- */

Test(chunk, relocation_keeps_bytes_identity_C1)
{
	struct chunk_loc a = { .file = 3, .len = 10, .off = 100, .csum = 55 }, b = a, out;
	struct chunk *c = chunk_new(&a);

	b.file = CHUNK_FILE_WAL | 9;
	b.off = 4096;
	chunk_set_loc(c, &b);
	chunk_get_loc(c, &out);
	cr_assert_eq(out.file, b.file);
	cr_assert_eq(out.off, 4096);
	cr_assert_eq(chunk_len(c), 10);
	cr_assert_eq(chunk_csum(c), 55);
	cr_assert_eq(chunk_ref(c), c);
	chunk_unref(c);
	chunk_unref(c);
}

Test(chunk, digest_matches_documented_formula)
{
	uint64_t v[2] = { 5, 77 }, s[2] = { 123, 4096 };

	cr_assert_eq(chunk_checksum("abc", 3), XXH64("abc", 3, 0));
	cr_assert_eq(digest_term(5, 77), XXH64(v, 16, 0));
	cr_assert_eq(digest_final(123, 4096), XXH64(s, 16, 0));
}

/* ---- maps -------------------------------------------------------------------- */

Test(chunk, height0_map_is_the_chunk)
{
	struct cmap *m = NULL;

	cr_assert_eq(cmap_set(&m, 0, fake_chunk(1)), 0);
	cr_assert_eq(cmap_node_count(m), 0, "a one-chunk file has no node");
	cr_assert_eq(tag_of(m, 0), 1);
	cr_assert_null(cmap_get(m, 1));
	cr_assert_eq(cmap_set(&m, 1, fake_chunk(2)), 0);
	cr_assert_eq(cmap_node_count(m), 1);
	cr_assert_eq(tag_of(m, 1), 2);
	cr_assert_eq(cmap_set(&m, 1, NULL), 0);
	cr_assert_eq(cmap_node_count(m), 0, "canonical: back to height 0");
	cr_assert_eq(tag_of(m, 0), 1);
	cr_assert_eq(cmap_set(&m, 0, NULL), 0);
	cr_assert_null(m);
}

Test(chunk, cow_leaves_shared_map_unchanged_C2)
{
	struct cmap *m = NULL, *old;
	uint64_t i;

	for (i = 0; i < 5000; i += 3)
		cr_assert_eq(cmap_set(&m, i, fake_chunk(i)), 0);
	old = cmap_ref(m);
	cr_assert_eq(cmap_set(&m, 300, fake_chunk(999999)), 0);
	cr_assert_eq(cmap_set(&m, 301, fake_chunk(888888)), 0);
	cr_assert_eq(cmap_set(&m, 0, NULL), 0);
	cr_assert_neq(m, old);
	for (i = 0; i < 5000; i++)
		cr_assert_eq(tag_of(old, i), i % 3 ? UINT64_MAX : i, "C2: old map changed at %lu",
			     (unsigned long)i);
	cr_assert_eq(tag_of(m, 300), 999999);
	cr_assert_eq(tag_of(m, 301), 888888);
	cr_assert_eq(tag_of(m, 0), UINT64_MAX);
	cr_assert_eq(tag_of(m, 3), 3);
	/* Only the changed paths were copied: root + one leaf per change. */
	cr_assert_leq(cmap_node_count(m), 1 + 2 + 2);
	cmap_unref(old);
	/* Now m is private: updates happen in place. */
	old = m;
	cr_assert_eq(cmap_set(&m, 302, fake_chunk(5)), 0);
	cr_assert_eq(m, old);
	cmap_unref(m);
}

Test(chunk, big_sparse_map_and_walk_order)
{
	uint64_t idx[] = { 0, 1, 63, 64, 4095, 4096, 1000000, 1ull << 30, (1ull << 40) + 5,
			   (1ull << 48) + 1 };
	size_t n = sizeof(idx) / sizeof(idx[0]), i;
	uint64_t got[16];
	struct walk_rec w = { got, 0 };
	struct cmap *m = NULL;

	for (i = n; i-- > 0;)
		cr_assert_eq(cmap_set(&m, idx[i], fake_chunk(idx[i])), 0);
	for (i = 0; i < n; i++)
		cr_assert_eq(tag_of(m, idx[i]), idx[i]);
	cr_assert_null(cmap_get(m, 2));
	cr_assert_null(cmap_get(m, (1ull << 40) + 4));
	cr_assert_eq(cmap_walk(m, 0, walk_collect, &w), 0);
	cr_assert_eq(w.n, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(got[i], idx[i], "walk order");
	w.n = 0;
	cr_assert_eq(cmap_walk(m, 4096, walk_collect, &w), 0);
	cr_assert_eq(w.n, n - 5);
	cr_assert_eq(got[0], 4096);
	for (i = 0; i < n; i++)
		cr_assert_eq(cmap_set(&m, idx[i], NULL), 0);
	cr_assert_null(m, "canonical: an emptied map is NULL");
}

struct drop_rec {
	uint64_t count, sum;
};

static void drop_cb(void *arg, uint64_t idx, const struct chunk *c)
{
	struct drop_rec *d = arg;

	(void)c;
	d->count++;
	d->sum += idx;
}

Test(chunk, truncate_drops_tail_and_keeps_shared_C2)
{
	struct cmap *m = NULL, *old;
	struct drop_rec d = { 0, 0 };
	uint64_t i, expect_count = 0, expect_sum = 0, got[3000];
	struct walk_rec w = { got, 0 };

	for (i = 0; i < 3000; i += 2) {
		cr_assert_eq(cmap_set(&m, i * 7, fake_chunk(i)), 0);
		if (i * 7 >= 5000) {
			expect_count++;
			expect_sum += i * 7;
		}
	}
	old = cmap_ref(m);
	cr_assert_eq(cmap_truncate(&m, 5000, drop_cb, &d), 0);
	cr_assert_eq(d.count, expect_count);
	cr_assert_eq(d.sum, expect_sum);
	cr_assert_eq(cmap_walk(m, 0, walk_collect, &w), 0);
	for (i = 0; i < w.n; i++)
		cr_assert_lt(got[i], 5000);
	cr_assert_eq(w.n, 1500 - expect_count);
	cr_assert_eq(tag_of(old, 2998 * 7), 2998, "C2: shared map untouched");
	cr_assert_eq(cmap_truncate(&m, 1, NULL, NULL), 0);
	cr_assert_eq(cmap_node_count(m), 0, "only index 0 left: height 0");
	cr_assert_eq(tag_of(m, 0), 0);
	cr_assert_eq(cmap_truncate(&m, 0, NULL, NULL), 0);
	cr_assert_null(m);
	cmap_unref(old);
}

/* Reference digest: from scratch over the whole map. */
static int sum_cb(void *arg, uint64_t idx, struct chunk *c)
{
	*(uint64_t *)arg += digest_term(idx, chunk_csum(c));
	return 0;
}

static uint64_t digest_scratch(const struct cmap *m)
{
	uint64_t s = 0;

	cmap_walk(m, 0, sum_cb, &s);
	return s;
}

Test(chunk, apply_changes_digest_incremental_equals_scratch)
{
	struct cmap *m = NULL;
	uint64_t sum = 0;
	int round;

	for (round = 0; round < 300; round++) {
		struct wcopy_change chg[20];
		uint32_t n = (uint32_t)(rnd() % 20), i;
		uint64_t idx = 0;
		bool trunc = rnd() % 10 == 0;

		for (i = 0; i < n; i++) {
			idx += 1 + rnd() % 300;
			memset(&chg[i], 0, sizeof(chg[i]));
			chg[i].idx = idx;
			chg[i].len = rnd() % 4 ? 1 + (uint32_t)(rnd() % TXD_CHUNK_SIZE) : 0;
			chg[i].csum = rnd();
			chg[i].loc.file = 1;
			chg[i].loc.off = rnd();
		}
		cr_assert_eq(cmap_apply_changes(&m, &sum, trunc, rnd() % 3000, chg, n), 0);
		cr_assert_eq(sum, digest_scratch(m), "round %d", round);
	}
	cmap_unref(m);
}

/* ---- chunk store --------------------------------------------------------------- */

Test(chunk, store_roundtrip_and_wal_segment_chunks)
{
	uint8_t a[TXD_CHUNK_SIZE], b[TXD_CHUNK_SIZE];
	struct chunk_loc loc, wl;
	char path[400];
	int fd;

	memset(a, 'q', sizeof(a));
	cr_assert_eq(chunkstore_append(cs, a, 1000, &loc), 0);
	cr_assert(chunkstore_has_unsynced(cs));
	cr_assert_eq(chunkstore_sync(cs), 0);
	cr_assert(!chunkstore_has_unsynced(cs));
	cr_assert_eq(loc.len, 1000);
	cr_assert_eq(loc.csum, chunk_checksum(a, 1000));
	cr_assert_eq(chunkstore_read(cs, &loc, b), 0);
	cr_assert_eq(memcmp(a, b, 1000), 0);
	cr_assert_eq(chunkstore_bytes_written(cs), 1000);

	/* Inline chunks live in WAL segments. */
	snprintf(path, sizeof(path), "%s/seg-%08u", waldir, 5u);
	fd = open(path, O_CREAT | O_RDWR, 0644);
	cr_assert_eq(pwrite(fd, "hello world", 11, 200), 11);
	close(fd);
	wl = (struct chunk_loc){ .file = CHUNK_FILE_WAL | 5, .len = 5, .off = 206,
				 .csum = chunk_checksum("world", 5) };
	cr_assert_eq(chunkstore_read(cs, &wl, b), 0);
	cr_assert_eq(memcmp(b, "world", 5), 0);
	chunkstore_forget_file(cs, CHUNK_FILE_WAL | 5);
	unlink(path);
	cr_assert_eq(chunkstore_read(cs, &wl, b), -ENOENT);
}

Test(chunk, corrupted_chunk_reads_eio_and_counts)
{
	uint8_t a[4096], b[4096];
	struct chunk_loc loc;
	struct cmap *m = NULL;
	char path[400];
	int fd;

	memset(a, 'z', sizeof(a));
	cr_assert_eq(chunkstore_append(cs, a, sizeof(a), &loc), 0);
	snprintf(path, sizeof(path), "%s/pack-%06u", objdir, loc.file);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "Z", 1, (off_t)loc.off + 77), 1);
	close(fd);
	cr_assert_eq(chunkstore_read(cs, &loc, b), -EIO);
	cr_assert_eq(chunkstore_checksum_errors(cs), 1);
	cr_assert_eq(cmap_set(&m, 0, chunk_new(&loc)), 0);
	cr_assert_eq(cmap_read(cs, m, 4096, b, 10, 0), -EIO, "never wrong bytes");
	cr_assert_eq(chunkstore_checksum_errors(cs), 2);
	cmap_unref(m);
}

/* ---- working copy: model-based ------------------------------------------------ */

/* The reference: a plain byte array. */
struct model {
	uint8_t *b;
	uint64_t size, cap;
};

static void model_resize(struct model *m, uint64_t size)
{
	if (size > m->cap) {
		m->b = realloc(m->b, size);
		memset(m->b + m->cap, 0, size - m->cap);
		m->cap = size;
	}
	if (size < m->size)
		memset(m->b + size, 0, m->size - size);
	m->size = size;
}

/* Commit: inline chunks are stored in a pack here (any location will do),
 * then the same change list is replayed onto a second map. */
struct committed {
	struct cmap *map;
	uint64_t sum, size;
	struct cmap *replay;
	uint64_t replay_sum;
};

static void commit(struct wcopy *w, struct committed *c)
{
	struct wcopy_prep p;
	struct wcopy_change *copy;
	struct cmap *m;
	uint64_t sum;
	uint32_t i;

	cr_assert_eq(wcopy_prepare(w, &p), 0);
	for (i = 0; i < p.nchg; i++) {
		cr_assert_leq(p.chg[i].len, TXD_CHUNK_SIZE);
		if (i)
			cr_assert_gt(p.chg[i].idx, p.chg[i - 1].idx, "sorted");
		if (p.chg[i].data)
			cr_assert_eq(chunkstore_append(cs, p.chg[i].data, p.chg[i].len,
						       &p.chg[i].loc), 0);
		if (p.chg[i].len)
			cr_assert_eq(p.chg[i].csum, p.chg[i].loc.csum);
	}
	if (p.has_spilled)
		cr_assert_eq(chunkstore_sync(cs), 0);
	copy = malloc(sizeof(*copy) * (p.nchg + 1));
	if (p.nchg)
		memcpy(copy, p.chg, sizeof(*copy) * p.nchg);
	{
		struct wcopy_prep q = p;

		cr_assert_eq(wcopy_commit(w, &p, &m, &sum), 0);
		cr_assert(!wcopy_dirty(w));
		cmap_unref(c->map);
		c->map = m;
		c->sum = sum;
		c->size = q.size;
		cr_assert_eq(cmap_apply_changes(&c->replay, &c->replay_sum, q.truncated,
						q.trunc_chunks, copy, q.nchg), 0);
	}
	free(copy);
}

struct pair {
	struct chunk_loc l;
	uint64_t idx;
};

static int pair_cb(void *arg, uint64_t idx, struct chunk *c)
{
	struct pair **pp = arg;

	(*pp)->idx = idx;
	chunk_get_loc(c, &(*pp)->l);
	(*pp)++;
	return 0;
}

/* The live map and the replayed map are the same (indices and locations),
 * and both digests equal the digest from scratch. */
static void check_replay_same(const struct committed *c)
{
	size_t n = 40000;
	struct pair *a = calloc(n, sizeof(*a)), *b = calloc(n, sizeof(*b));
	struct pair *pa = a, *pb = b;

	cmap_walk(c->map, 0, pair_cb, &pa);
	cmap_walk(c->replay, 0, pair_cb, &pb);
	cr_assert_eq(pa - a, pb - b, "replay has the same number of chunks");
	cr_assert_eq(memcmp(a, b, (size_t)(pa - a) * sizeof(*a)), 0, "replay map differs");
	cr_assert_eq(c->sum, c->replay_sum);
	cr_assert_eq(c->sum, digest_scratch(c->map));
	free(a);
	free(b);
}

static int no_zero_chunks(void *arg, uint64_t idx, struct chunk *c)
{
	uint8_t buf[TXD_CHUNK_SIZE];
	struct chunk_loc l;
	uint32_t i;

	(void)arg;
	(void)idx;
	chunk_get_loc(c, &l);
	cr_assert_eq(chunkstore_read(cs, &l, buf), 0);
	for (i = 0; i < l.len && !buf[i]; i++)
		;
	cr_assert_lt(i, l.len, "C4: an all-zero chunk was stored");
	cr_assert_neq(buf[l.len - 1], 0, "trailing zeros are trimmed");
	return 0;
}

static void compare_all(struct wcopy *w, const struct model *m, const struct committed *c,
			bool committed)
{
	uint8_t *buf = malloc(m->size + 1);

	cr_assert_eq(wcopy_size(w), m->size);
	cr_assert_eq(wcopy_read(w, buf, m->size + 100, 0), (ssize_t)m->size);
	cr_assert_eq(memcmp(buf, m->b, m->size), 0, "wcopy differs from model");
	if (committed) {
		cr_assert_eq(cmap_read(cs, c->map, c->size, buf, m->size + 100, 0),
			     (ssize_t)m->size);
		cr_assert_eq(memcmp(buf, m->b, m->size), 0, "committed map differs");
		memset(buf, 0xEE, m->size);
		cr_assert_eq(cmap_read(cs, c->replay, c->size, buf, m->size, 0),
			     (ssize_t)m->size);
		cr_assert_eq(memcmp(buf, m->b, m->size), 0, "replayed map differs");
		check_replay_same(c);
		cmap_walk(c->map, 0, no_zero_chunks, NULL);
	}
	free(buf);
}

static void random_fill(uint8_t *p, size_t n)
{
	size_t i;
	uint8_t v = (uint8_t)rnd();

	/* Mostly runs, some zero runs, so trimming and C4 are exercised. */
	for (i = 0; i < n; i++) {
		if (i % 512 == 0)
			v = rnd() % 3 ? (uint8_t)rnd() : 0;
		p[i] = v;
	}
}

static void run_model(uint64_t max_size, int ops)
{
	struct committed c = { 0 };
	struct model m = { 0 };
	uint8_t *buf = malloc(300000);
	struct wcopy *w;
	int op;

	m.b = calloc(1, 1); /* never NULL, even for an empty file */
	cr_assert_eq(wcopy_new(cs, NULL, 0, 0, &w), 0);
	for (op = 0; op < ops; op++) {
		uint64_t kind = rnd() % 100;
		uint64_t off = rnd() % max_size, n = rnd() % 3 ? rnd() % 9000 : rnd() % 150000;

		if (kind < 45) {
			random_fill(buf, n);
			cr_assert_eq(wcopy_write(w, buf, n, off), (ssize_t)n);
			if (off + n > m.size)
				model_resize(&m, off + n);
			memcpy(m.b + off, buf, n);
		} else if (kind < 60) {
			uint64_t sz = rnd() % 2 ? off : m.size + rnd() % 70000;

			cr_assert_eq(wcopy_truncate(w, sz), 0);
			model_resize(&m, sz);
		} else if (kind < 67) {
			cr_assert_eq(wcopy_zero(w, off, n), 0);
			if (off < m.size)
				memset(m.b + off, 0, off + n > m.size ? m.size - off : n);
		} else if (kind < 85) {
			ssize_t want = off >= m.size ? 0 :
				       (ssize_t)(off + n > m.size ? m.size - off : n);

			cr_assert_eq(wcopy_read(w, buf, n, off), want);
			if (want > 0)
				cr_assert_eq(memcmp(buf, m.b + off, (size_t)want), 0, "read at op %d",
					     op);
		} else if (kind < 97) {
			commit(w, &c);
			compare_all(w, &m, &c, true);
		} else {
			compare_all(w, &m, &c, false);
		}
	}
	commit(w, &c);
	compare_all(w, &m, &c, true);
	/* A fresh working copy from the committed version reads the same. */
	wcopy_free(w);
	cr_assert_eq(wcopy_new(cs, cmap_ref(c.map), c.size, c.sum, &w), 0);
	compare_all(w, &m, &c, true);
	wcopy_free(w);
	cmap_unref(c.map);
	cmap_unref(c.replay);
	free(m.b);
	free(buf);
}

Test(chunk, wcopy_model_small_file_C3_C4)
{
	rng_state = 12345;
	run_model(100000, 4000);
}

Test(chunk, wcopy_model_multi_chunk_file)
{
	rng_state = 999;
	run_model(2000000, 3000);
}

Test(chunk, wcopy_abandon_keeps_dirty_state)
{
	struct wcopy_prep p;
	struct wcopy *w;
	uint8_t b[10];

	cr_assert_eq(wcopy_new(cs, NULL, 0, 0, &w), 0);
	cr_assert_eq(wcopy_write(w, "abcdefghij", 10, 5), 10);
	cr_assert_eq(wcopy_prepare(w, &p), 0);
	cr_assert_eq(p.nchg, 1);
	cr_assert_eq(p.inline_bytes, 15);
	wcopy_abandon(w, &p);
	cr_assert(wcopy_dirty(w));
	cr_assert_eq(wcopy_read(w, b, 10, 5), 10);
	cr_assert_eq(memcmp(b, "abcdefghij", 10), 0);
	wcopy_free(w);
}

/* A committed map of nchunks identical data chunks (one pack copy). */
static void dense_base(uint64_t nchunks, struct cmap **m, uint64_t *sum, uint8_t *data)
{
	struct chunk_loc loc;
	uint64_t i;

	memset(data, 'd', TXD_CHUNK_SIZE);
	cr_assert_eq(chunkstore_append(cs, data, TXD_CHUNK_SIZE, &loc), 0);
	*m = NULL;
	*sum = 0;
	for (i = 0; i < nchunks; i++) {
		cr_assert_eq(cmap_set(m, i, chunk_new(&loc)), 0);
		*sum += digest_term(i, loc.csum);
	}
}

Test(chunk, small_write_in_1gib_file_is_small_change)
{
	uint64_t nchunks = (1ull << 30) / TXD_CHUNK_SIZE, sum, sum2;
	uint8_t data[TXD_CHUNK_SIZE], buf[8192];
	struct cmap *base, *m;
	struct wcopy_prep p;
	struct wcopy *w;
	uint64_t off = (512ull << 20) + 100;

	dense_base(nchunks, &base, &sum, data);
	cr_assert_eq(wcopy_new(cs, cmap_ref(base), 1ull << 30, sum, &w), 0);
	memset(buf, 'x', 4096);
	cr_assert_eq(wcopy_write(w, buf, 4096, off), 4096);
	cr_assert_eq(wcopy_prepare(w, &p), 0);
	cr_assert_eq(p.nchg, 1);
	cr_assert(!p.truncated);
	cr_assert_leq(p.inline_bytes, TXD_CHUNK_SIZE);
	cr_assert_geq(p.inline_bytes, 4096);
	cr_assert_eq(chunkstore_append(cs, p.chg[0].data, p.chg[0].len, &p.chg[0].loc), 0);
	cr_assert_eq(wcopy_commit(w, &p, &m, &sum2), 0);
	/* Path copy: about log64(32768) = 3 nodes, never the whole map. */
	cr_assert_leq(cmap_node_count(m), 3);
	cr_assert_eq(sum2, digest_scratch(m));
	cr_assert_eq(cmap_read(cs, m, 1ull << 30, buf, 8192, off - 100), 8192);
	cr_assert_eq(memcmp(buf, data, 100), 0);
	cr_assert_eq(buf[100], 'x');
	cr_assert_eq(buf[4196], 'd');
	cr_assert_eq(cmap_read(cs, base, 1ull << 30, buf, 200, off), 200);
	cr_assert_eq(buf[0], 'd', "C2: the base version is unchanged");
	wcopy_free(w);
	cmap_unref(m);
	cmap_unref(base);
}

Test(chunk, small_write_in_sparse_file_is_small_change)
{
	struct cmap *m = NULL;
	struct wcopy_prep p;
	struct wcopy *w;
	uint8_t buf[4096];
	uint64_t sum;

	cr_assert_eq(wcopy_new(cs, NULL, 1ull << 40, 0, &w), 0);
	memset(buf, 7, sizeof(buf));
	cr_assert_eq(wcopy_write(w, buf, 4096, (1ull << 39) + 5), 4096);
	cr_assert_eq(wcopy_prepare(w, &p), 0);
	cr_assert_eq(p.nchg, 1);
	cr_assert_leq(p.inline_bytes, 4096 + 5);
	cr_assert_eq(chunkstore_append(cs, p.chg[0].data, p.chg[0].len, &p.chg[0].loc), 0);
	cr_assert_eq(wcopy_commit(w, &p, &m, &sum), 0);
	cr_assert_eq(wcopy_size(w), 1ull << 40);
	cr_assert_eq(cmap_read(cs, m, 1ull << 40, buf, 10, (1ull << 39) + 4), 10);
	cr_assert_eq(buf[0], 0);
	cr_assert_eq(buf[1], 7);
	wcopy_free(w);
	cmap_unref(m);
}

Test(chunk, truncate_shrink_is_replayed_exactly)
{
	uint64_t nchunks = 100, sum, sum2, rsum;
	uint8_t data[TXD_CHUNK_SIZE], buf[TXD_CHUNK_SIZE];
	struct cmap *base, *m, *replay;
	struct wcopy_prep p;
	struct wcopy_change *copy;
	struct wcopy *w;
	uint32_t i;

	dense_base(nchunks, &base, &sum, data);
	replay = cmap_ref(base);
	rsum = sum;
	cr_assert_eq(wcopy_new(cs, cmap_ref(base), nchunks * TXD_CHUNK_SIZE, sum, &w), 0);
	/* cmd > file: truncate to 0, then write a little. */
	cr_assert_eq(wcopy_truncate(w, 0), 0);
	cr_assert_eq(wcopy_write(w, "new", 3, 0), 3);
	cr_assert_eq(wcopy_prepare(w, &p), 0);
	cr_assert(p.truncated);
	cr_assert_eq(p.trunc_chunks, 0);
	cr_assert_eq(p.nchg, 1);
	cr_assert_eq(p.size, 3);
	for (i = 0; i < p.nchg; i++)
		cr_assert_eq(chunkstore_append(cs, p.chg[i].data, p.chg[i].len, &p.chg[i].loc), 0);
	copy = malloc(sizeof(*copy) * p.nchg);
	if (p.nchg)
		memcpy(copy, p.chg, sizeof(*copy) * p.nchg);
	cr_assert_eq(cmap_apply_changes(&replay, &rsum, p.truncated, p.trunc_chunks, copy,
					p.nchg), 0);
	cr_assert_eq(wcopy_commit(w, &p, &m, &sum2), 0);
	cr_assert_eq(sum2, rsum);
	cr_assert_eq(cmap_node_count(m), 0, "a 3-byte file is one chunk, no node");
	cr_assert_eq(cmap_read(cs, replay, 3, buf, 3, 0), 3);
	cr_assert_eq(memcmp(buf, "new", 3), 0);
	cr_assert_eq(chunk_len(cmap_get(m, 0)), 3, "C3: stored short");
	free(copy);
	wcopy_free(w);
	cmap_unref(m);
	cmap_unref(replay);
	cmap_unref(base);
}

Test(chunk, spill_path_sequential_write)
{
	size_t total = 48u << 20, blk = 128u << 10, off;
	uint8_t *buf = malloc(blk), *rb = malloc(blk);
	struct committed c = { 0 };
	struct wcopy_prep p;
	struct wcopy *w;
	uint32_t i;
	clock_t t0 = clock();

	cr_assert_eq(wcopy_new(cs, NULL, 0, 0, &w), 0);
	for (off = 0; off < total; off += blk) {
		for (i = 0; i < blk; i += 8)
			memcpy(buf + i, &off, 8), buf[i + 7] = (uint8_t)(i >> 3);
		cr_assert_eq(wcopy_write(w, buf, blk, off), (ssize_t)blk);
	}
	cr_assert_gt(chunkstore_bytes_written(cs), 24u << 20, "dirty chunks were spilled");
	cr_assert_eq(wcopy_prepare(w, &p), 0);
	cr_assert(p.has_spilled);
	cr_assert_leq(p.inline_bytes, 17u << 20, "memory stays within the budget");
	cr_assert_eq(p.nchg, total / TXD_CHUNK_SIZE);
	wcopy_abandon(w, &p);
	commit(w, &c);
	for (off = 0; off < total; off += blk) {
		for (i = 0; i < blk; i += 8)
			memcpy(buf + i, &off, 8), buf[i + 7] = (uint8_t)(i >> 3);
		cr_assert_eq(cmap_read(cs, c.map, c.size, rb, blk, off), (ssize_t)blk);
		cr_assert_eq(memcmp(rb, buf, blk), 0, "at %zu", off);
	}
	check_replay_same(&c);
	cr_assert_lt((double)(clock() - t0) / CLOCKS_PER_SEC, 10.0);
	wcopy_free(w);
	cmap_unref(c.map);
	cmap_unref(c.replay);
	free(buf);
	free(rb);
}

/* A pack fdatasync that failed is reported to every later sync too: Linux
 * reports a lost write-back once, and a retried fdatasync "succeeds" with
 * the bytes gone (GC and a commit may both sync the same pack). */
Test(chunk, failed_pack_sync_is_sticky)
{
	char buf[4096];
	struct chunk_loc loc;
	memset(buf, 7, sizeof(buf));
	chunkstore_close(cs);
	faultos_install();
	cr_assert_eq(chunkstore_open(objdir, waldir, &cs), 0);
	cr_assert_eq(chunkstore_append(cs, buf, sizeof(buf), &loc), 0);
	faultos_fail_nth(FOS_FDATASYNC, 1, -EIO);
	cr_assert_eq(chunkstore_sync(cs), -EIO);
	cr_assert_eq(chunkstore_sync(cs), -EIO, "the second sync must not pass");
	chunkstore_close(cs);
	faultos_uninstall();
	cr_assert_eq(chunkstore_open(objdir, waldir, &cs), 0);
}
