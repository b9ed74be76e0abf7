/*
 * fuzz_chunkmap.c — chunk maps (chunk.h) driven by hostile operation
 * sequences, against a plain model.
 *
 * chunk.h has no byte decoder of its own (maps live in memory; pack files
 * have no header; a chunk's location comes from a commit record, which
 * fuzz_rec covers), so this harness fuzzes the map operations that replay
 * and checkpoint loading drive with record contents: cmap_apply_changes
 * (sets, holes, truncation) at indexes spread over every tree height, with
 * snapshots taken between steps.
 *
 * Input: 4-byte steps {op, lo, hi, v}. The index is (lo | hi << 8) mapped
 * to below 2^54: u = lo | hi << 8; u < 2^14: u & 1023; else
 * (u & 63) << 6 x ((u >> 6) % 9).
 *   op % 4 == 0  set the index to a chunk of v + 1 bytes (csum from v)
 *   op % 4 == 1  make it a hole
 *   op % 4 == 2  truncate: drop every index >= it
 *   op % 4 == 3  snapshot: keep a reference to the map and the model
 * Properties (checked at every snapshot and at the end, for the map and
 * every snapshot): cmap_get and cmap_walk give exactly the model's chunks,
 * in increasing order; the digest sum kept by cmap_apply_changes is the
 * sum of digest_term over the model (so replay's digest is right); a
 * snapshot never changes after later steps (C2); no leak.
 */
#include "chunk.h"
#include "fuzz.h"

#define MAXE 512
#define MAXSNAP 4

struct model {
	uint64_t idx[MAXE], csum[MAXE];
	unsigned n;
};

struct snap {
	struct cmap *m;
	struct model md;
	uint64_t sum;
};

static uint64_t map_idx(unsigned u)
{
	if (u < (1u << 14))
		return u & 1023;
	return (uint64_t)(u & 63) << (6 * ((u >> 6) % 9));
}

static int find(const struct model *md, uint64_t idx)
{
	for (unsigned k = 0; k < md->n; k++)
		if (md->idx[k] == idx)
			return (int)k;
	return -1;
}

struct walk {
	const struct model *md;
	unsigned seen;
	uint64_t last;
};

static int walk_cb(void *arg, uint64_t idx, struct chunk *c)
{
	struct walk *w = arg;
	FUZZ_CHECK(w->seen == 0 || idx > w->last);
	w->last = idx;
	w->seen++;
	int k = find(w->md, idx);
	FUZZ_CHECK(k >= 0 && chunk_csum(c) == w->md->csum[k]);
	return 0;
}

static void verify(const struct cmap *m, const struct model *md, uint64_t sum)
{
	uint64_t want = 0;
	for (unsigned k = 0; k < md->n; k++) {
		struct chunk *c = cmap_get(m, md->idx[k]);
		FUZZ_CHECK(c && chunk_csum(c) == md->csum[k]);
		want += digest_term(md->idx[k], md->csum[k]);
	}
	struct walk w = {.md = md};
	FUZZ_CHECK(cmap_walk(m, 0, walk_cb, &w) == 0);
	FUZZ_CHECK(w.seen == md->n);
	FUZZ_CHECK(sum == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model md;
	static struct snap snaps[MAXSNAP];
	struct cmap *m = NULL;
	uint64_t sum = 0;
	unsigned nsnap = 0;
	md.n = 0;
	for (size_t at = 0; at + 4 <= size && at < 4 * 2048; at += 4) {
		uint8_t op = data[at] % 4, v = data[at + 3];
		uint64_t idx = map_idx(data[at + 1] | (unsigned)data[at + 2] << 8);
		int k = find(&md, idx);
		if (op == 0 || op == 1) {
			struct wcopy_change c = {.idx = idx};
			if (op == 0) {
				if (k < 0 && md.n == MAXE)
					continue;
				c.len = v + 1u;
				c.csum = 0x9e3779b97f4a7c15ull * (v + 1u) ^ idx;
				c.loc.file = 1;
				c.loc.off = idx;
			}
			FUZZ_CHECK(cmap_apply_changes(&m, &sum, false, 0, &c, 1) == 0);
			if (op == 0 && k < 0) {
				md.idx[md.n] = idx;
				md.csum[md.n++] = c.csum;
			} else if (op == 0) {
				md.csum[k] = c.csum;
			} else if (k >= 0) {
				md.idx[k] = md.idx[--md.n];
				md.csum[k] = md.csum[md.n];
			}
		} else if (op == 2) {
			FUZZ_CHECK(cmap_apply_changes(&m, &sum, true, idx, NULL, 0) == 0);
			for (unsigned j = 0; j < md.n;)
				if (md.idx[j] >= idx) {
					md.idx[j] = md.idx[--md.n];
					md.csum[j] = md.csum[md.n];
				} else {
					j++;
				}
		} else {
			if (nsnap == MAXSNAP) {
				verify(snaps[0].m, &snaps[0].md, snaps[0].sum);
				cmap_unref(snaps[0].m);
				memmove(snaps, snaps + 1, sizeof(snaps[0]) * (MAXSNAP - 1));
				nsnap--;
			}
			snaps[nsnap].m = cmap_ref(m);
			snaps[nsnap].md = md;
			snaps[nsnap++].sum = sum;
			verify(m, &md, sum);
		}
	}
	verify(m, &md, sum);
	for (unsigned s = 0; s < nsnap; s++) {
		verify(snaps[s].m, &snaps[s].md, snaps[s].sum);
		cmap_unref(snaps[s].m);
	}
	cmap_unref(m);
	return 0;
}
