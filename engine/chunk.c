/*
 * chunk.c — chunks, copy-on-write chunk maps, pack files and working copies
 * (contract and invariants C1–C4 in chunk.h).
 *
 * Map layout. A struct cmap is a radix node of height h >= 1 covering
 * CMAP_FANOUT^h indices; at height 1 its slots are chunks, above it they are
 * nodes of height h-1. A map holding only index 0 is the chunk itself,
 * tagged with the low pointer bit (height 0), so a small file needs no node.
 * Maps are kept canonical — no empty node, and the root is never a node
 * whose only used slot is slot 0 — so two maps with the same content have
 * the same shape, whatever history produced them.
 *
 * Copy-on-write (C2). Every modification walks down from the root and
 * replaces each node whose refcount is not 1 with a private copy
 * (make_private), so a map shared with a committed version is never
 * written; a node with refcount 1 belongs to the one map being changed and
 * is updated in place. A working copy's commit therefore copies only the
 * paths it touches, once.
 *
 * Working copy. Changed chunks live in a hash table keyed by chunk index
 * (struct dirty): in memory (D_MEM, a full TXD_CHUNK_SIZE buffer), spilled
 * to an unsynced pack (D_SPILLED), or known to be all zero (D_ZERO). A
 * read falls back to the base map for indices below trunc_chunks. Two
 * invariants make truncation and growth cheap: bytes past the current size
 * always read as zero (truncate zeroes the tail of the boundary chunk), and
 * base chunks at or above trunc_chunks are invisible. The commit applies its
 * changes with cmap_apply_changes, the function replay uses, so the map a
 * live commit produces and the map replay produces are the same by
 * construction.
 *
 * Lock order (chunkstore): wlock (append state) before cache_lock (the
 * descriptor cache, read-locked across each pread).
 */
#include "chunk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "os.h"
#include "space.h"

#define PACK_MAX (1ull << 30)
/* Packs rotate at a 32nd of the file system holding the store (at least
 * PACK_MIN, at most PACK_MAX): GC moves a victim's live bytes before it
 * can delete it, so on a small or full disk a victim must be small. */
#define PACK_MIN (1ull << 20)
#define WCOPY_MEM_BUDGET (16u << 20)
/* In-memory chunk buffers grow in steps of this (C5). */
#define WCOPY_BUF_STEP 4096u
#define CMAP_MAX_HEIGHT 9 /* indices < 2^54: any byte offset below 2^69 */

/* ---- chunks ------------------------------------------------------------------ */

/* The location may be relocated while others read it: a seqlock over
 * (file, off) gives readers either the old or the new location, whole. len
 * and csum never change (C1). */
struct chunk {
	atomic_uint refs;
	atomic_uint seq;
	_Atomic uint32_t file;
	_Atomic uint64_t off;
	uint32_t len;
	uint64_t csum;
};

/* ---- live bytes per store file (gc.h G1) ------------------------------------
 * One process-wide table keyed by chunk_loc.file: bytes and count of chunk
 * objects naming the file, and pins (working copies' spilled chunks, which
 * are no chunk objects yet). Chunks of every store open in the process share
 * it, so with two stores open a count is the sum of both: never below the
 * true count of either, which errs on the side of keeping a file. A failed
 * allocation makes the table unusable for good (usage_lost): GC then
 * deletes nothing. usage_lock is a leaf (core.h: taken under any lock). */
struct usage_ent {
	uint32_t file;
	bool used;
	struct chunk_usage u;
	uint64_t preps; /* commits prepared while this pack took appends */
};

static pthread_mutex_t usage_lock = PTHREAD_MUTEX_INITIALIZER;
static struct usage_ent *usage_tab;
static uint32_t usage_cap, usage_n;
static bool usage_lost;

static uint32_t usage_slot(uint32_t file, uint32_t cap)
{
	return (uint32_t)(((uint64_t)file * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* usage_lock held. NULL only when the table could not grow. */
static struct usage_ent *usage_find(uint32_t file, bool add)
{
	uint32_t i;

	for (i = usage_cap ? usage_slot(file, usage_cap) : 0; usage_cap && usage_tab[i].used;
	     i = (i + 1) & (usage_cap - 1))
		if (usage_tab[i].file == file)
			return &usage_tab[i];
	if (!add)
		return NULL;
	if (2 * (usage_n + 1) > usage_cap) {
		uint32_t ncap = usage_cap ? usage_cap * 2 : 64, k;
		struct usage_ent *nt = calloc(ncap, sizeof(*nt));

		if (!nt)
			return NULL;
		for (k = 0; k < usage_cap; k++) {
			if (!usage_tab[k].used)
				continue;
			for (i = usage_slot(usage_tab[k].file, ncap); nt[i].used; i = (i + 1) & (ncap - 1))
				;
			nt[i] = usage_tab[k];
		}
		free(usage_tab);
		usage_tab = nt;
		usage_cap = ncap;
	}
	for (i = usage_slot(file, usage_cap); usage_tab[i].used; i = (i + 1) & (usage_cap - 1))
		;
	usage_tab[i].used = true;
	usage_tab[i].file = file;
	usage_n++;
	return &usage_tab[i];
}

static void usage_prep(uint32_t pack, int64_t n)
{
	pthread_mutex_lock(&usage_lock);
	struct usage_ent *e = usage_lost ? NULL : usage_find(pack, true);
	if (e)
		e->preps += (uint64_t)n;
	else
		usage_lost = true;
	pthread_mutex_unlock(&usage_lock);
}

uint64_t chunk_usage_preps_upto(uint32_t pack)
{
	uint64_t n = 0;
	pthread_mutex_lock(&usage_lock);
	for (uint32_t i = 0; i < usage_cap; i++)
		if (usage_tab[i].used && !(usage_tab[i].file & CHUNK_FILE_WAL) &&
		    usage_tab[i].file <= pack)
			n += usage_tab[i].preps;
	n += usage_lost;
	pthread_mutex_unlock(&usage_lock);
	return n;
}

static void usage_add(uint32_t file, int64_t bytes, int64_t chunks, int64_t pins)
{
	pthread_mutex_lock(&usage_lock);
	struct usage_ent *e = usage_lost ? NULL : usage_find(file, true);
	if (e) {
		e->u.live_bytes += (uint64_t)bytes;
		e->u.chunks += (uint64_t)chunks;
		e->u.pins += (uint64_t)pins;
	} else {
		usage_lost = true;
	}
	pthread_mutex_unlock(&usage_lock);
}

bool chunk_usage_get(uint32_t file, struct chunk_usage *out)
{
	pthread_mutex_lock(&usage_lock);
	struct usage_ent *e = usage_lost ? NULL : usage_find(file, false);
	bool ok = !usage_lost;
	memset(out, 0, sizeof(*out));
	if (e)
		*out = e->u;
	pthread_mutex_unlock(&usage_lock);
	return ok;
}

struct chunk *chunk_new(const struct chunk_loc *loc)
{
	struct chunk *c = malloc(sizeof(*c));

	if (!c)
		return NULL;
	atomic_init(&c->refs, 1);
	atomic_init(&c->seq, 0);
	atomic_init(&c->file, loc->file);
	atomic_init(&c->off, loc->off);
	c->len = loc->len;
	c->csum = loc->csum;
	usage_add(loc->file, loc->len, 1, 0);
	return c;
}

struct chunk *chunk_ref(struct chunk *c)
{
	if (c)
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void chunk_unref(struct chunk *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
		usage_add(atomic_load(&c->file), -(int64_t)c->len, -1, 0);
		free(c);
	}
}

void chunk_get_loc(const struct chunk *c, struct chunk_loc *out)
{
	struct chunk *m = (struct chunk *)c; /* atomics need non-const access */
	unsigned s1, s2;

	do {
		s1 = atomic_load_explicit(&m->seq, memory_order_acquire);
		out->file = atomic_load_explicit(&m->file, memory_order_relaxed);
		out->off = atomic_load_explicit(&m->off, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&m->seq, memory_order_relaxed);
	} while ((s1 & 1) || s1 != s2);
	out->len = c->len;
	out->csum = c->csum;
}

void chunk_set_loc(struct chunk *c, const struct chunk_loc *loc)
{
	unsigned s;

	/* Writers take the odd sequence number by CAS, so two relocations
	 * never interleave. */
	for (;;) {
		s = atomic_load_explicit(&c->seq, memory_order_relaxed);
		if (!(s & 1) && atomic_compare_exchange_weak_explicit(
					&c->seq, &s, s + 1, memory_order_acquire,
					memory_order_relaxed))
			break;
	}
	atomic_thread_fence(memory_order_release);
	uint32_t old = atomic_load_explicit(&c->file, memory_order_relaxed);
	if (old != loc->file) { /* G1: the bytes now count for the new file */
		usage_add(old, -(int64_t)c->len, -1, 0);
		usage_add(loc->file, c->len, 1, 0);
	}
	atomic_store_explicit(&c->file, loc->file, memory_order_relaxed);
	atomic_store_explicit(&c->off, loc->off, memory_order_relaxed);
	atomic_store_explicit(&c->seq, s + 2, memory_order_release);
}

uint64_t chunk_csum(const struct chunk *c)
{
	return c->csum;
}

uint32_t chunk_len(const struct chunk *c)
{
	return c->len;
}

uint64_t chunk_checksum(const void *buf, size_t len)
{
	return XXH64(buf, len, 0);
}

static uint64_t hash_pair(uint64_t a, uint64_t b)
{
	uint64_t v[2] = { htole64(a), htole64(b) };

	return XXH64(v, sizeof(v), 0);
}

uint64_t digest_term(uint64_t idx, uint64_t csum)
{
	return hash_pair(idx, csum);
}

uint64_t digest_final(uint64_t sum, uint64_t size)
{
	return hash_pair(sum, size);
}

/* ---- chunk maps ------------------------------------------------------------------ */

struct cmap {
	atomic_uint refs;
	uint8_t height;
	uint16_t used; /* non-NULL slots */
	void *slot[CMAP_FANOUT];
};

static bool is_tagged(const struct cmap *m)
{
	return (uintptr_t)m & 1;
}

static struct chunk *untag(const struct cmap *m)
{
	return (struct chunk *)((uintptr_t)m & ~(uintptr_t)1);
}

static struct cmap *tag(struct chunk *c)
{
	return c ? (struct cmap *)((uintptr_t)c | 1) : NULL;
}

static unsigned map_height(const struct cmap *m)
{
	return !m || is_tagged(m) ? 0 : m->height;
}

/* Indices covered by a map of height h: [0, capacity). */
static uint64_t capacity(unsigned h)
{
	return h * CMAP_FANOUT_SHIFT >= 64 ? UINT64_MAX : 1ull << (h * CMAP_FANOUT_SHIFT);
}

static unsigned slot_of(uint64_t idx, unsigned h)
{
	return (unsigned)(idx >> ((h - 1) * CMAP_FANOUT_SHIFT)) & (CMAP_FANOUT - 1);
}

/* Indices covered by one slot of a node of height h. */
static uint64_t slot_span(unsigned h)
{
	return 1ull << ((h - 1) * CMAP_FANOUT_SHIFT);
}

static struct cmap *node_new(unsigned height)
{
	struct cmap *n = calloc(1, sizeof(*n));

	if (n) {
		atomic_init(&n->refs, 1);
		n->height = (uint8_t)height;
	}
	return n;
}

struct cmap *cmap_ref(struct cmap *m)
{
	if (is_tagged(m))
		chunk_ref(untag(m));
	else if (m)
		atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

static void slot_unref(void *s, unsigned h)
{
	if (h == 1)
		chunk_unref(s);
	else
		cmap_unref(s);
}

static void slot_ref(void *s, unsigned h)
{
	if (h == 1)
		chunk_ref(s);
	else
		cmap_ref(s);
}

void cmap_unref(struct cmap *m)
{
	unsigned i;

	if (is_tagged(m)) {
		chunk_unref(untag(m));
		return;
	}
	if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < CMAP_FANOUT; i++)
		if (m->slot[i])
			slot_unref(m->slot[i], m->height);
	free(m);
}

struct chunk *cmap_get(const struct cmap *m, uint64_t idx)
{
	unsigned h;

	if (!m)
		return NULL;
	if (is_tagged(m))
		return idx == 0 ? untag(m) : NULL;
	if (idx >= capacity(m->height))
		return NULL;
	for (h = m->height; h > 1; h--) {
		m = m->slot[slot_of(idx, h)];
		if (!m)
			return NULL;
	}
	return m->slot[slot_of(idx, 1)];
}

/* C2: give *np a refcount of 1, copying it if anyone else holds it. */
static int make_private(struct cmap **np)
{
	struct cmap *n = *np, *cp;
	unsigned i;

	if (atomic_load_explicit(&n->refs, memory_order_acquire) == 1)
		return 0;
	cp = node_new(n->height);
	if (!cp)
		return -ENOMEM;
	cp->used = n->used;
	for (i = 0; i < CMAP_FANOUT; i++) {
		cp->slot[i] = n->slot[i];
		if (cp->slot[i])
			slot_ref(cp->slot[i], n->height);
	}
	*np = cp;
	cmap_unref(n);
	return 0;
}

/* Raise the root until it is a node that covers idx (idx > 0). The old root
 * moves into slot 0, with the reference the caller owned. */
static int grow_to(struct cmap **mp, uint64_t idx)
{
	struct cmap *n;
	unsigned h = map_height(*mp);

	if (!*mp) {
		while (capacity(h) <= idx)
			h++;
		n = node_new(h);
		if (!n)
			return -ENOMEM;
		*mp = n;
		return 0;
	}
	while (h == 0 || capacity(h) <= idx) {
		n = node_new(h + 1);
		if (!n)
			return -ENOMEM;
		n->slot[0] = is_tagged(*mp) ? (void *)untag(*mp) : (void *)*mp;
		n->used = 1;
		*mp = n;
		h++;
	}
	return 0;
}

/* Keep the map canonical: drop an empty root, and lower a root whose only
 * content is slot 0. */
static void shrink(struct cmap **mp)
{
	struct cmap *n;
	void *child;

	while (*mp && !is_tagged(*mp)) {
		n = *mp;
		if (n->used == 0) {
			cmap_unref(n);
			*mp = NULL;
			return;
		}
		if (n->used != 1 || !n->slot[0])
			return;
		child = n->slot[0];
		slot_ref(child, n->height);
		*mp = n->height == 1 ? tag(child) : child;
		cmap_unref(n);
	}
}

/* Set idx below the (private) node *np of height h; prunes a child that
 * becomes empty. c is consumed only on success. */
static int set_rec(struct cmap **np, unsigned h, uint64_t idx, struct chunk *c)
{
	struct cmap *n, *child;
	unsigned i = slot_of(idx, h);
	int r;

	r = make_private(np);
	if (r)
		return r;
	n = *np;
	if (h == 1) {
		if (n->slot[i])
			chunk_unref(n->slot[i]);
		n->used += (c != NULL) - (n->slot[i] != NULL);
		n->slot[i] = c;
		return 0;
	}
	if (!n->slot[i]) {
		child = node_new(h - 1);
		if (!child)
			return -ENOMEM;
		n->slot[i] = child;
		n->used++;
	}
	r = set_rec((struct cmap **)&n->slot[i], h - 1, idx, c);
	child = n->slot[i];
	if (child->used == 0) {
		cmap_unref(child);
		n->slot[i] = NULL;
		n->used--;
	}
	return r;
}

int cmap_set(struct cmap **m, uint64_t idx, struct chunk *c)
{
	int r;

	if (!c && !cmap_get(*m, idx))
		return 0;
	if (idx >= capacity(CMAP_MAX_HEIGHT)) {
		chunk_unref(c);
		return -EFBIG;
	}
	if (idx == 0 && (!*m || is_tagged(*m))) {
		cmap_unref(*m);
		*m = tag(c);
		return 0;
	}
	r = grow_to(m, idx);
	if (!r)
		r = set_rec(m, map_height(*m), idx, c);
	shrink(m);
	if (r)
		chunk_unref(c);
	return r;
}

struct walk_ctx {
	int (*cb)(void *arg, uint64_t idx, struct chunk *c);
	void *arg;
};

static int walk_rec(const struct cmap *n, unsigned h, uint64_t base, uint64_t from,
		    const struct walk_ctx *w)
{
	uint64_t span = slot_span(h);
	unsigned i;
	int r;

	for (i = 0; i < CMAP_FANOUT; i++) {
		uint64_t sb = base + i * span;

		if (!n->slot[i] || sb + span <= from)
			continue;
		if (h == 1)
			r = w->cb(w->arg, sb, n->slot[i]);
		else
			r = walk_rec(n->slot[i], h - 1, sb, from, w);
		if (r)
			return r;
	}
	return 0;
}

int cmap_walk(const struct cmap *m, uint64_t from,
	      int (*cb)(void *arg, uint64_t idx, struct chunk *c), void *arg)
{
	struct walk_ctx w = { cb, arg };

	if (!m)
		return 0;
	if (is_tagged(m))
		return from == 0 ? cb(arg, 0, untag(m)) : 0;
	return walk_rec(m, m->height, 0, from, &w);
}

struct drop_ctx {
	void (*cb)(void *arg, uint64_t idx, const struct chunk *c);
	void *arg;
};

static int drop_visit(void *arg, uint64_t idx, struct chunk *c)
{
	struct drop_ctx *d = arg;

	d->cb(d->arg, idx, c);
	return 0;
}

/* Report every chunk of the subtree s (height h, first index base). */
static void report_subtree(void *s, unsigned h, uint64_t base, const struct drop_ctx *d)
{
	struct walk_ctx w = { drop_visit, (void *)d };

	if (!d->cb)
		return;
	if (h == 1)
		d->cb(d->arg, base, s);
	else
		walk_rec(s, h - 1, base, 0, &w);
}

static int trunc_rec(struct cmap **np, unsigned h, uint64_t base, uint64_t first,
		     const struct drop_ctx *d)
{
	uint64_t span = slot_span(h);
	struct cmap *n;
	unsigned i;
	int r;

	r = make_private(np);
	if (r)
		return r;
	n = *np;
	for (i = 0; i < CMAP_FANOUT; i++) {
		uint64_t sb = base + i * span;

		if (!n->slot[i] || sb + span <= first)
			continue;
		if (sb >= first) {
			report_subtree(n->slot[i], h, sb, d);
			slot_unref(n->slot[i], h);
			n->slot[i] = NULL;
			n->used--;
			continue;
		}
		/* The slot straddles first (only possible above height 1). */
		r = trunc_rec((struct cmap **)&n->slot[i], h - 1, sb, first, d);
		if (((struct cmap *)n->slot[i])->used == 0) {
			cmap_unref(n->slot[i]);
			n->slot[i] = NULL;
			n->used--;
		}
		if (r)
			return r;
	}
	return 0;
}

static int find_any(void *arg, uint64_t idx, struct chunk *c)
{
	(void)arg;
	(void)idx;
	(void)c;
	return 1;
}

int cmap_truncate(struct cmap **m, uint64_t first_dropped,
		  void (*cb)(void *arg, uint64_t idx, const struct chunk *c), void *arg)
{
	struct drop_ctx d = { cb, arg };
	int r;

	/* Nothing at or past first_dropped: leave a shared map unshared. */
	if (!cmap_walk(*m, first_dropped, find_any, NULL))
		return 0;
	if (is_tagged(*m)) { /* then first_dropped == 0 */
		if (cb)
			cb(arg, 0, untag(*m));
		cmap_unref(*m);
		*m = NULL;
		return 0;
	}
	r = trunc_rec(m, (*m)->height, 0, first_dropped, &d);
	shrink(m);
	return r;
}

static size_t count_private(const struct cmap *n)
{
	size_t total = 1;
	unsigned i;

	if (n->height == 1)
		return 1;
	for (i = 0; i < CMAP_FANOUT; i++) {
		const struct cmap *c = n->slot[i];

		if (c && atomic_load_explicit(&((struct cmap *)c)->refs,
					      memory_order_relaxed) == 1)
			total += count_private(c);
	}
	return total;
}

size_t cmap_node_count(const struct cmap *m)
{
	return !m || is_tagged(m) ? 0 : count_private(m);
}

static void digest_sub(void *arg, uint64_t idx, const struct chunk *c)
{
	uint64_t *sum = arg;

	*sum -= digest_term(idx, c->csum);
}

int cmap_apply_changes(struct cmap **m, uint64_t *digest_sum, bool truncated,
		       uint64_t trunc_chunks, const struct wcopy_change *chg, uint32_t n)
{
	struct chunk_loc loc;
	struct chunk *old, *c;
	uint64_t old_term;
	uint32_t i;
	int r;

	if (truncated) {
		r = cmap_truncate(m, trunc_chunks, digest_sub, digest_sum);
		if (r)
			return r;
	}
	for (i = 0; i < n; i++) {
		if (chg[i].len > TXD_CHUNK_SIZE)
			return -EINVAL;
		old = cmap_get(*m, chg[i].idx);
		c = NULL;
		if (chg[i].len) {
			loc = chg[i].loc;
			loc.len = chg[i].len;
			loc.csum = chg[i].csum;
			c = chunk_new(&loc);
			if (!c)
				return -ENOMEM;
		}
		old_term = old ? digest_term(chg[i].idx, old->csum) : 0;
		r = cmap_set(m, chg[i].idx, c); /* may free old */
		if (r)
			return r;
		*digest_sum -= old_term;
		if (c)
			*digest_sum += digest_term(chg[i].idx, chg[i].csum);
	}
	return 0;
}

/* ---- chunk store ------------------------------------------------------------------ */

struct fdent {
	uint32_t file;
	int fd;
};

struct chunkstore {
	char *objdir, *waldir;
	struct space *space;   /* space.h SP4 (NULL: none) */
	uint64_t pack_max;     /* where packs rotate (PACK_MIN..PACK_MAX) */

	pthread_mutex_t wlock; /* append state below; taken before cache_lock */
	int pack_fd;           /* -1 until the first append of this open */
	uint32_t pack_no, next_pack;
	/* what chunkstore_append_target and chunkstore_current_pack answer,
	 * kept with the fields above under wlock but read without it (every
	 * commit asks; wlock is held across a pack's fdatasync) */
	_Atomic uint32_t target_no, current_no;
	uint64_t pack_off;
	uint32_t *unsynced; /* packs written since the last chunkstore_sync */
	uint32_t nunsynced, capunsynced;
	bool dir_dirty; /* a pack was created since the last sync */
	int sync_err;   /* a failed fdatasync, for good: Linux reports a lost
			 * write-back once, and the next fdatasync succeeds */

	pthread_rwlock_t cache_lock;
	struct fdent *fds;
	uint32_t nfds, capfds;

	atomic_uint_fast64_t csum_errors, bytes_written;
};

static int parse_pack_name(const char *name, uint32_t *no)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "pack-", 5) || !name[5])
		return -1;
	v = strtoul(name + 5, &end, 10);
	if (*end || v >= UINT32_MAX || (v & CHUNK_FILE_WAL))
		return -1;
	*no = (uint32_t)v;
	return 0;
}

/* wlock held (or the store not shared yet). */
static void publish_target(struct chunkstore *cs)
{
	atomic_store(&cs->target_no, cs->pack_fd >= 0 ? cs->pack_no : cs->next_pack);
	atomic_store(&cs->current_no, cs->pack_fd >= 0 ? cs->pack_no : UINT32_MAX);
}

static int scan_pack_cb(const char *name, void *arg)
{
	struct chunkstore *cs = arg;
	uint32_t no;

	if (!parse_pack_name(name, &no) && no >= cs->next_pack)
		cs->next_pack = no + 1;
	return 0;
}

int chunkstore_open(const char *objdir, const char *waldir, struct chunkstore **out)
{
	struct chunkstore *cs;
	int r;

	cs = calloc(1, sizeof(*cs));
	if (!cs)
		return -ENOMEM;
	cs->pack_fd = -1;
	cs->next_pack = 1;
	cs->objdir = strdup(objdir);
	cs->waldir = strdup(waldir);
	if (!cs->objdir || !cs->waldir) {
		r = -ENOMEM;
		goto out_free;
	}
	/* A new pack per open: bytes past the last sync of an older pack
	 * may be torn, and nothing is ever appended after them. */
	r = txd_os->listdir(objdir, scan_pack_cb, cs);
	if (r)
		goto out_free;
	publish_target(cs);
	struct statvfs fsst;
	uint64_t total = txd_os->statvfs(objdir, &fsst) ? 0 : (uint64_t)fsst.f_blocks * fsst.f_frsize;
	cs->pack_max = total / 32 < PACK_MIN ? PACK_MIN : total / 32 > PACK_MAX ? PACK_MAX : total / 32;
	pthread_mutex_init(&cs->wlock, NULL);
	pthread_rwlock_init(&cs->cache_lock, NULL);
	*out = cs;
	return 0;

out_free:
	free(cs->objdir);
	free(cs->waldir);
	free(cs);
	return r;
}

void chunkstore_close(struct chunkstore *cs)
{
	uint32_t i;

	if (!cs)
		return;
	for (i = 0; i < cs->nfds; i++)
		txd_os->close(cs->fds[i].fd);
	pthread_rwlock_destroy(&cs->cache_lock);
	pthread_mutex_destroy(&cs->wlock);
	free(cs->fds);
	free(cs->unsynced);
	free(cs->objdir);
	free(cs->waldir);
	free(cs);
}

/* cache_lock held (any mode). */
static int cache_find(const struct chunkstore *cs, uint32_t file)
{
	uint32_t i;

	for (i = 0; i < cs->nfds; i++)
		if (cs->fds[i].file == file)
			return cs->fds[i].fd;
	return -1;
}

/* cache_lock held for writing. */
static int cache_add(struct chunkstore *cs, uint32_t file, int fd)
{
	struct fdent *p;

	if (cs->nfds == cs->capfds) {
		uint32_t ncap = cs->capfds ? cs->capfds * 2 : 16;

		p = realloc(cs->fds, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		cs->fds = p;
		cs->capfds = ncap;
	}
	cs->fds[cs->nfds].file = file;
	cs->fds[cs->nfds].fd = fd;
	cs->nfds++;
	return 0;
}

static void file_path(const struct chunkstore *cs, uint32_t file, char *buf, size_t n)
{
	if (file & CHUNK_FILE_WAL)
		snprintf(buf, n, "%s/seg-%08u", cs->waldir, file & ~CHUNK_FILE_WAL);
	else
		snprintf(buf, n, "%s/pack-%06u", cs->objdir, file);
}

/* wlock held. Start pack next_pack; the directory entry is fsynced by the
 * next chunkstore_sync, before any WAL record can name the pack. */
static int pack_start(struct chunkstore *cs)
{
	char path[4096];
	int fd, r;

	file_path(cs, cs->next_pack, path, sizeof(path));
	fd = txd_os->open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return fd;
	pthread_rwlock_wrlock(&cs->cache_lock);
	r = cache_add(cs, cs->next_pack, fd);
	pthread_rwlock_unlock(&cs->cache_lock);
	if (r) {
		txd_os->close(fd);
		txd_os->unlink(path);
		return r;
	}
	cs->pack_fd = fd;
	cs->pack_no = cs->next_pack++;
	cs->pack_off = 0;
	cs->dir_dirty = true;
	publish_target(cs);
	return 0;
}

/* wlock held. */
static int mark_unsynced(struct chunkstore *cs, uint32_t pack)
{
	uint32_t i;
	uint32_t *p;

	for (i = 0; i < cs->nunsynced; i++)
		if (cs->unsynced[i] == pack)
			return 0;
	if (cs->nunsynced == cs->capunsynced) {
		uint32_t ncap = cs->capunsynced ? cs->capunsynced * 2 : 4;

		p = realloc(cs->unsynced, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		cs->unsynced = p;
		cs->capunsynced = ncap;
	}
	cs->unsynced[cs->nunsynced++] = pack;
	return 0;
}

void chunkstore_set_space(struct chunkstore *cs, struct space *sp)
{
	cs->space = sp;
}

int chunkstore_append(struct chunkstore *cs, const void *buf, uint32_t len,
		      struct chunk_loc *loc)
{
	return chunkstore_append_flags(cs, buf, len, loc, 0);
}

int chunkstore_append_flags(struct chunkstore *cs, const void *buf, uint32_t len,
			    struct chunk_loc *loc, unsigned flags)
{
	int r = 0;

	if (len == 0 || len > TXD_CHUNK_SIZE)
		return -EINVAL;
	if (!(flags & CHUNK_APPEND_FREES) && (r = space_may_grow(cs->space)))
		return r; /* space.h SP4: nothing written */
	pthread_mutex_lock(&cs->wlock);
	if (cs->pack_fd < 0 || cs->pack_off + len > cs->pack_max)
		r = pack_start(cs);
	if (!r)
		r = mark_unsynced(cs, cs->pack_no);
	if (!r)
		r = os_pwrite_full(cs->pack_fd, buf, len, (off_t)cs->pack_off);
	if (r)
		goto out_unlock;
	loc->file = cs->pack_no;
	loc->off = cs->pack_off;
	loc->len = len;
	loc->csum = chunk_checksum(buf, len);
	cs->pack_off += len;
	atomic_fetch_add(&cs->bytes_written, len);
	if (flags & CHUNK_APPEND_PIN)
		usage_add(loc->file, 0, 0, 1); /* before a rotation can seal it */
out_unlock:
	pthread_mutex_unlock(&cs->wlock);
	return r;
}

int chunkstore_sync(struct chunkstore *cs)
{
	uint32_t i;
	int r = 0, fd;

	pthread_mutex_lock(&cs->wlock);
	r = cs->sync_err;
	for (i = 0; i < cs->nunsynced && !r; i++) {
		pthread_rwlock_rdlock(&cs->cache_lock);
		fd = cache_find(cs, cs->unsynced[i]);
		r = fd < 0 ? -EBADF : txd_os->fdatasync(fd);
		pthread_rwlock_unlock(&cs->cache_lock);
		if (r && r != -ENOSPC && r != -EDQUOT)
			cs->sync_err = r; /* every later caller learns it too */
	}
	if (!r && cs->dir_dirty)
		r = os_fsync_dir(cs->objdir);
	if (!r) {
		cs->nunsynced = 0;
		cs->dir_dirty = false;
	}
	pthread_mutex_unlock(&cs->wlock);
	return r;
}

uint32_t chunkstore_append_target(struct chunkstore *cs)
{
	return atomic_load(&cs->target_no); /* no wlock: see struct chunkstore */
}

uint32_t chunkstore_current_pack(struct chunkstore *cs)
{
	return atomic_load(&cs->current_no);
}

void chunkstore_seal(struct chunkstore *cs)
{
	/* its descriptor stays in the cache for reads and the next sync */
	pthread_mutex_lock(&cs->wlock);
	cs->pack_fd = -1;
	publish_target(cs);
	pthread_mutex_unlock(&cs->wlock);
}

bool chunkstore_has_unsynced(struct chunkstore *cs)
{
	bool v;

	pthread_mutex_lock(&cs->wlock);
	v = cs->nunsynced || cs->dir_dirty;
	pthread_mutex_unlock(&cs->wlock);
	return v;
}

/* Returns with cache_lock read-held and *fd valid, or an error unlocked. */
static int cache_get(struct chunkstore *cs, uint32_t file, int *fd)
{
	char path[4096];
	int nfd, r;

	for (;;) {
		pthread_rwlock_rdlock(&cs->cache_lock);
		*fd = cache_find(cs, file);
		if (*fd >= 0)
			return 0;
		pthread_rwlock_unlock(&cs->cache_lock);

		file_path(cs, file, path, sizeof(path));
		nfd = txd_os->open(path, O_RDONLY, 0);
		if (nfd < 0)
			return nfd;
		pthread_rwlock_wrlock(&cs->cache_lock);
		r = cache_find(cs, file) >= 0 ? 1 : cache_add(cs, file, nfd);
		pthread_rwlock_unlock(&cs->cache_lock);
		if (r) /* raced with another opener, or no memory */
			txd_os->close(nfd);
		if (r < 0)
			return r;
	}
}

int chunkstore_read(struct chunkstore *cs, const struct chunk_loc *loc, void *buf)
{
	int fd, r;

	if (loc->len == 0 || loc->len > TXD_CHUNK_SIZE)
		return -EINVAL;
	r = cache_get(cs, loc->file, &fd);
	if (r)
		return r;
	r = os_pread_full(fd, buf, loc->len, (off_t)loc->off);
	pthread_rwlock_unlock(&cs->cache_lock);
	if (r)
		return r;
	if (chunk_checksum(buf, loc->len) != loc->csum) {
		atomic_fetch_add(&cs->csum_errors, 1);
		return -EIO; /* never wrong bytes (SPEC §6) */
	}
	return 0;
}

void chunkstore_forget_file(struct chunkstore *cs, uint32_t file)
{
	uint32_t i;

	pthread_mutex_lock(&cs->wlock);
	for (i = 0; i < cs->nunsynced; i++) /* a deleted pack needs no sync */
		if (cs->unsynced[i] == file && (cs->pack_fd < 0 || file != cs->pack_no))
			cs->unsynced[i--] = cs->unsynced[--cs->nunsynced];
	pthread_rwlock_wrlock(&cs->cache_lock);
	for (i = 0; i < cs->nfds; i++) {
		if (cs->fds[i].file != file)
			continue;
		if (cs->pack_fd == cs->fds[i].fd)
			break; /* the pack being appended stays open */
		txd_os->close(cs->fds[i].fd);
		cs->fds[i] = cs->fds[--cs->nfds];
		break;
	}
	pthread_rwlock_unlock(&cs->cache_lock);
	pthread_mutex_unlock(&cs->wlock);
}

uint64_t chunkstore_checksum_errors(struct chunkstore *cs)
{
	return atomic_load(&cs->csum_errors);
}

uint64_t chunkstore_bytes_written(struct chunkstore *cs)
{
	return atomic_load(&cs->bytes_written);
}

/* Fill dst (TXD_CHUNK_SIZE bytes) with the chunk's bytes, zero past its
 * length (C3). */
static int read_chunk(struct chunkstore *cs, const struct chunk *c, uint8_t *dst)
{
	struct chunk_loc loc;
	int r;

	chunk_get_loc(c, &loc);
	r = chunkstore_read(cs, &loc, dst);
	if (r == -ENOENT) { /* relocated and its old file deleted meanwhile (gc.h G6) */
		uint32_t gone = loc.file;
		uint64_t gone_off = loc.off;
		chunk_get_loc(c, &loc);
		if (loc.file != gone || loc.off != gone_off)
			r = chunkstore_read(cs, &loc, dst);
	}
	if (!r && loc.len < TXD_CHUNK_SIZE)
		memset(dst + loc.len, 0, TXD_CHUNK_SIZE - loc.len);
	return r;
}

/* How many chunks from idx on are full, chunk-aligned in the request and
 * stored back to back in one file (so one pread serves them all). */
static uint32_t full_run(const struct cmap *m, uint64_t idx, size_t left, struct chunk_loc *first)
{
	struct chunk *c = cmap_get(m, idx);
	uint32_t n = 0;
	struct chunk_loc prev;

	if (!c || left < TXD_CHUNK_SIZE)
		return 0;
	chunk_get_loc(c, first);
	prev = *first;
	while (prev.len == TXD_CHUNK_SIZE && left >= TXD_CHUNK_SIZE && n < 64) {
		n++;
		left -= TXD_CHUNK_SIZE;
		c = cmap_get(m, idx + n);
		if (!c || left < TXD_CHUNK_SIZE)
			break;
		struct chunk_loc next;
		chunk_get_loc(c, &next);
		if (next.file != prev.file || next.off != prev.off + TXD_CHUNK_SIZE)
			break;
		prev = next;
	}
	return n;
}

/* Read n full chunks starting at idx straight into out, verifying each. */
static int read_run(struct chunkstore *cs, const struct cmap *m, uint64_t idx, uint32_t n,
		    const struct chunk_loc *first, uint8_t *out)
{
	int fd, r = cache_get(cs, first->file, &fd);
	if (r)
		return r;
	r = os_pread_full(fd, out, (size_t)n * TXD_CHUNK_SIZE, (off_t)first->off);
	pthread_rwlock_unlock(&cs->cache_lock);
	for (uint32_t k = 0; !r && k < n; k++) {
		if (chunk_checksum(out + (size_t)k * TXD_CHUNK_SIZE, TXD_CHUNK_SIZE) !=
		    chunk_csum(cmap_get(m, idx + k))) {
			atomic_fetch_add(&cs->csum_errors, 1);
			r = -EIO; /* never wrong bytes (SPEC §6) */
		}
	}
	return r;
}

ssize_t cmap_read(struct chunkstore *cs, const struct cmap *m, uint64_t size, void *buf,
		  size_t n, uint64_t off)
{
	uint8_t *tmp = NULL, *out = buf;
	size_t done = 0;
	bool by_chunk = false;
	int r = 0;

	if (off >= size)
		return 0;
	if (n > size - off)
		n = (size_t)(size - off);
	while (done < n) {
		uint64_t idx = (off + done) >> TXD_CHUNK_SHIFT;
		size_t coff = (size_t)((off + done) & (TXD_CHUNK_SIZE - 1));
		size_t piece = TXD_CHUNK_SIZE - coff;
		struct chunk *c = cmap_get(m, idx);
		struct chunk_loc first;
		uint32_t run;

		if (piece > n - done)
			piece = n - done;
		if (!c) {
			memset(out + done, 0, piece);
		} else if (!by_chunk && coff == 0 &&
			   (run = full_run(m, idx, n - done, &first)) > 0) {
			r = read_run(cs, m, idx, run, &first, out + done);
			if (r == -ENOENT) { /* relocated meanwhile: chunk by chunk (G6) */
				by_chunk = true;
				r = 0;
				continue;
			}
			if (r)
				break;
			piece = (size_t)run * TXD_CHUNK_SIZE;
		} else {
			if (!tmp && !(tmp = malloc(TXD_CHUNK_SIZE))) {
				r = -ENOMEM;
				break;
			}
			r = read_chunk(cs, c, tmp);
			if (r)
				break;
			memcpy(out + done, tmp + coff, piece);
		}
		done += piece;
	}
	free(tmp);
	return r ? r : (ssize_t)n;
}

/* ---- working copy ----------------------------------------------------------------- */

enum dstate { D_MEM, D_SPILLED, D_ZERO };

struct dirty {
	uint64_t idx;
	enum dstate state;
	uint32_t cap;          /* D_MEM: bytes of buf; the chunk reads as zeros past it */
	uint8_t *buf;          /* D_MEM: cap bytes (C5) */
	struct chunk_loc loc;  /* D_SPILLED */
};

/* Bytes held by in-memory chunk buffers of every working copy (C5). */
static _Atomic uint64_t wcopy_mem_all;

struct wcopy {
	struct chunkstore *cs;
	struct cmap *base;     /* the last committed map */
	uint64_t base_sum;
	uint64_t base_size;
	uint64_t size;
	bool truncated;
	uint64_t trunc_chunks; /* base chunks >= this are gone; UINT64_MAX: none */

	struct dirty **tab;    /* open addressing, linear probing */
	uint32_t cap, n;       /* cap is a power of two (or 0) */
	uint32_t nmem;         /* D_MEM entries */
	uint64_t mem_bytes;    /* their buffers' bytes (the spill budget) */
	uint64_t last_idx;     /* most recently written: not worth spilling */
};

static uint32_t hslot(uint64_t idx, uint32_t cap)
{
	return (uint32_t)((idx * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static struct dirty *dirty_find(const struct wcopy *w, uint64_t idx)
{
	uint32_t i;

	if (!w->cap)
		return NULL;
	for (i = hslot(idx, w->cap); w->tab[i]; i = (i + 1) & (w->cap - 1))
		if (w->tab[i]->idx == idx)
			return w->tab[i];
	return NULL;
}

static void tab_put(struct dirty **tab, uint32_t cap, struct dirty *d)
{
	uint32_t i;

	for (i = hslot(d->idx, cap); tab[i]; i = (i + 1) & (cap - 1))
		;
	tab[i] = d;
}

static int tab_resize(struct wcopy *w, uint32_t ncap)
{
	struct dirty **nt = calloc(ncap, sizeof(*nt));
	uint32_t i;

	if (!nt)
		return -ENOMEM;
	for (i = 0; i < w->cap; i++)
		if (w->tab[i])
			tab_put(nt, ncap, w->tab[i]);
	free(w->tab);
	w->tab = nt;
	w->cap = ncap;
	return 0;
}

static void mem_account(struct wcopy *w, int64_t delta)
{
	w->mem_bytes += (uint64_t)delta;
	atomic_fetch_add(&wcopy_mem_all, (uint64_t)delta);
}

/* Free d's buffer (D_MEM) and leave it in state st. Entering D_SPILLED,
 * the pin was taken by the append (CHUNK_APPEND_PIN); leaving it, it goes
 * here. */
static void buf_release(struct wcopy *w, struct dirty *d, enum dstate st)
{
	if (d->state == D_SPILLED && st != D_SPILLED) /* pins (gc.h G1) */
		usage_add(d->loc.file, 0, 0, -1);
	if (d->state == D_MEM) {
		w->nmem--;
		mem_account(w, -(int64_t)d->cap);
	}
	free(d->buf);
	d->buf = NULL;
	d->cap = 0;
	d->state = st;
}

static void dirty_free(struct wcopy *w, struct dirty *d)
{
	buf_release(w, d, D_ZERO);
	free(d);
}

static uint32_t buf_round(uint32_t n)
{
	return (n + WCOPY_BUF_STEP - 1) / WCOPY_BUF_STEP * WCOPY_BUF_STEP;
}

/* Make d's buffer (D_MEM) cover [0, end): grown to the next step, at least
 * doubled so appends cost few copies, zeros in the new part (C5). */
static int buf_reserve(struct wcopy *w, struct dirty *d, uint32_t end)
{
	uint32_t ncap = buf_round(end);
	uint8_t *nb;

	if (end <= d->cap)
		return 0;
	if (ncap < 2 * d->cap)
		ncap = 2 * d->cap;
	if (ncap > TXD_CHUNK_SIZE)
		ncap = TXD_CHUNK_SIZE;
	nb = realloc(d->buf, ncap);
	if (!nb)
		return -ENOMEM;
	memset(nb + d->cap, 0, ncap - d->cap);
	mem_account(w, (int64_t)(ncap - d->cap));
	d->buf = nb;
	d->cap = ncap;
	return 0;
}

/* A new entry in state D_ZERO (the caller fills it). */
static int dirty_add(struct wcopy *w, uint64_t idx, struct dirty **out)
{
	struct dirty *d;
	int r;

	if ((w->n + 1) * 2 > w->cap) {
		r = tab_resize(w, w->cap ? w->cap * 2 : 8);
		if (r)
			return r;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->idx = idx;
	d->state = D_ZERO;
	tab_put(w->tab, w->cap, d);
	w->n++;
	*out = d;
	return 0;
}

/* Every entry, sorted by index if sort; caller frees the array. */
static int cmp_dirty(const void *a, const void *b)
{
	const struct dirty *x = *(struct dirty *const *)a, *y = *(struct dirty *const *)b;

	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int dirty_list(const struct wcopy *w, bool sort, struct dirty ***out)
{
	struct dirty **v = malloc(sizeof(*v) * (w->n ? w->n : 1));
	uint32_t i, k = 0;

	if (!v)
		return -ENOMEM;
	for (i = 0; i < w->cap; i++)
		if (w->tab[i])
			v[k++] = w->tab[i];
	if (sort)
		qsort(v, k, sizeof(*v), cmp_dirty);
	*out = v;
	return 0;
}

static void dirty_clear(struct wcopy *w)
{
	uint32_t i;

	for (i = 0; i < w->cap; i++)
		if (w->tab[i])
			dirty_free(w, w->tab[i]);
	free(w->tab);
	w->tab = NULL;
	w->cap = w->n = 0;
}

static uint32_t trimmed_len(const uint8_t *buf, uint32_t n)
{
	while (n >= 8) {
		uint64_t v;

		memcpy(&v, buf + n - 8, 8);
		if (v)
			break;
		n -= 8;
	}
	while (n > 0 && !buf[n - 1])
		n--;
	return n;
}

static const struct chunk *base_chunk(const struct wcopy *w, uint64_t idx)
{
	return idx < w->trunc_chunks ? cmap_get(w->base, idx) : NULL;
}

/* The current bytes of chunk idx (dirty or base; zeros past size). */
static int load_chunk(struct wcopy *w, uint64_t idx, uint8_t *dst)
{
	struct dirty *d = dirty_find(w, idx);
	const struct chunk *c;
	int r;

	if (d && d->state == D_MEM) {
		memcpy(dst, d->buf, d->cap);
		memset(dst + d->cap, 0, TXD_CHUNK_SIZE - d->cap);
		return 0;
	}
	if (d && d->state == D_SPILLED) {
		r = chunkstore_read(w->cs, &d->loc, dst);
		if (!r)
			memset(dst + d->loc.len, 0, TXD_CHUNK_SIZE - d->loc.len);
		return r;
	}
	c = d ? NULL : base_chunk(w, idx);
	if (!c) {
		memset(dst, 0, TXD_CHUNK_SIZE);
		return 0;
	}
	return read_chunk(w->cs, c, dst);
}

/* Where chunk idx's current bytes are stored (spilled or base), if anywhere. */
static bool stored_loc(const struct wcopy *w, const struct dirty *d, uint64_t idx,
		       struct chunk_loc *loc)
{
	const struct chunk *c;

	if (d && d->state == D_SPILLED) {
		*loc = d->loc;
		return true;
	}
	c = d ? NULL : base_chunk(w, idx);
	if (c)
		chunk_get_loc(c, loc);
	return c != NULL;
}

/* Chunk idx as a D_MEM entry whose buffer covers [0, end); its current
 * bytes are loaded unless the caller will overwrite the whole chunk
 * (fill == false). The buffer holds the stored length or end, whichever is
 * more, rounded to WCOPY_BUF_STEP (C5). */
static int mem_chunk(struct wcopy *w, uint64_t idx, bool fill, uint32_t end, struct dirty **out)
{
	struct dirty *d = dirty_find(w, idx);
	struct chunk_loc loc;
	bool stored;
	uint32_t cap;
	uint8_t *buf;
	int r = 0;

	if (d && d->state == D_MEM) {
		r = buf_reserve(w, d, end);
		if (!r)
			*out = d;
		return r;
	}
	stored = fill && stored_loc(w, d, idx, &loc);
	cap = buf_round(stored && loc.len > end ? loc.len : end);
	if (!cap)
		cap = WCOPY_BUF_STEP;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	if (stored)
		r = chunkstore_read(w->cs, &loc, buf);
	if (r == -ENOENT && stored_loc(w, d, idx, &loc)) /* relocated meanwhile (gc.h G6) */
		r = loc.len <= cap ? chunkstore_read(w->cs, &loc, buf) : -EIO;
	if (!r && !d)
		r = dirty_add(w, idx, &d);
	if (r) {
		free(buf);
		return r;
	}
	memset(buf + (stored ? loc.len : 0), 0, cap - (stored ? loc.len : 0));
	if (d->state == D_SPILLED) /* no longer pins its pack (gc.h G1) */
		usage_add(d->loc.file, 0, 0, -1);
	d->state = D_MEM;
	d->buf = buf;
	d->cap = cap;
	w->nmem++;
	mem_account(w, cap);
	*out = d;
	return 0;
}

/* Whether chunk idx currently holds any stored bytes. */
static bool has_content(const struct wcopy *w, uint64_t idx)
{
	const struct dirty *d = dirty_find(w, idx);

	return d ? d->state != D_ZERO : base_chunk(w, idx) != NULL;
}

static int set_zero(struct wcopy *w, uint64_t idx)
{
	struct dirty *d = dirty_find(w, idx);

	if (!d) {
		if (!base_chunk(w, idx))
			return 0;
		return dirty_add(w, idx, &d);
	}
	buf_release(w, d, D_ZERO);
	return 0;
}

/* Move in-memory chunks (except the one being written) to an unsynced pack,
 * in index order so sequential files stay sequential on disk. */
static int spill(struct wcopy *w)
{
	struct dirty **v;
	uint32_t i, len;
	int r;

	r = dirty_list(w, true, &v);
	if (r)
		return r;
	for (i = 0; i < w->n && !r; i++) {
		struct dirty *d = v[i];

		if (d->state != D_MEM || d->idx == w->last_idx)
			continue;
		len = trimmed_len(d->buf, d->cap);
		if (len)
			r = chunkstore_append_flags(w->cs, d->buf, len, &d->loc,
						    CHUNK_APPEND_PIN);
		if (r)
			break;
		buf_release(w, d, len ? D_SPILLED : D_ZERO);
	}
	free(v);
	return r;
}

int wcopy_new(struct chunkstore *cs, struct cmap *base, uint64_t size, uint64_t digest_sum,
	      struct wcopy **out)
{
	struct wcopy *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->cs = cs;
	w->base = base;
	w->base_sum = digest_sum;
	w->base_size = w->size = size;
	w->trunc_chunks = UINT64_MAX;
	w->last_idx = UINT64_MAX;
	*out = w;
	return 0;
}

void wcopy_free(struct wcopy *w)
{
	if (!w)
		return;
	dirty_clear(w);
	cmap_unref(w->base);
	free(w);
}

uint64_t wcopy_size(const struct wcopy *w)
{
	return w->size;
}

bool wcopy_dirty(const struct wcopy *w)
{
	return w->n || w->truncated || w->size != w->base_size;
}

ssize_t wcopy_read(struct wcopy *w, void *buf, size_t n, uint64_t off)
{
	uint8_t *tmp = NULL, *out = buf;
	size_t done = 0;
	int r = 0;

	if (off >= w->size)
		return 0;
	if (n > w->size - off)
		n = (size_t)(w->size - off);
	while (done < n) {
		uint64_t idx = (off + done) >> TXD_CHUNK_SHIFT;
		size_t coff = (size_t)((off + done) & (TXD_CHUNK_SIZE - 1));
		size_t piece = TXD_CHUNK_SIZE - coff;
		struct dirty *d = dirty_find(w, idx);

		if (piece > n - done)
			piece = n - done;
		if (d && d->state == D_MEM) {
			size_t have = coff < d->cap ? d->cap - coff : 0;

			if (have > piece)
				have = piece;
			memcpy(out + done, d->buf + coff, have);
			memset(out + done + have, 0, piece - have);
		} else if (!has_content(w, idx)) {
			memset(out + done, 0, piece);
		} else {
			if (!tmp && !(tmp = malloc(TXD_CHUNK_SIZE))) {
				r = -ENOMEM;
				break;
			}
			r = load_chunk(w, idx, tmp);
			if (r)
				break;
			memcpy(out + done, tmp + coff, piece);
		}
		done += piece;
	}
	free(tmp);
	return r ? r : (ssize_t)n;
}

ssize_t wcopy_write(struct wcopy *w, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *in = buf;
	size_t done = 0;
	int r;

	if (n == 0)
		return 0;
	if (off > INT64_MAX || n > INT64_MAX - off)
		return -EFBIG;
	/* Spill before changing anything, so a failure leaves the copy as
	 * it was. */
	if (w->mem_bytes > WCOPY_MEM_BUDGET) {
		r = spill(w);
		if (r)
			return r;
	}
	while (done < n) {
		uint64_t idx = (off + done) >> TXD_CHUNK_SHIFT;
		size_t coff = (size_t)((off + done) & (TXD_CHUNK_SIZE - 1));
		size_t piece = TXD_CHUNK_SIZE - coff;
		struct dirty *d;

		if (piece > n - done)
			piece = n - done;
		r = mem_chunk(w, idx, piece != TXD_CHUNK_SIZE, (uint32_t)(coff + piece), &d);
		if (r)
			break;
		memcpy(d->buf + coff, in + done, piece);
		w->last_idx = idx;
		done += piece;
	}
	if (done && off + done > w->size)
		w->size = off + done;
	return done ? (ssize_t)done : r;
}

/* Zero [from, TXD_CHUNK_SIZE) of chunk idx, if it holds anything. */
static int zero_tail(struct wcopy *w, uint64_t idx, size_t from)
{
	struct dirty *d;
	int r;

	if (!has_content(w, idx))
		return 0;
	r = mem_chunk(w, idx, true, 0, &d);
	if (!r && from < d->cap)
		memset(d->buf + from, 0, d->cap - from);
	return r;
}

/* Drop dirty entries at or past first. */
static int drop_dirty_from(struct wcopy *w, uint64_t first)
{
	struct dirty **v;
	uint32_t i, n = w->n;
	int r;

	if (!n)
		return 0;
	r = dirty_list(w, false, &v);
	if (r)
		return r;
	memset(w->tab, 0, sizeof(*w->tab) * w->cap);
	w->n = 0;
	for (i = 0; i < n; i++) {
		if (v[i]->idx >= first) {
			dirty_free(w, v[i]);
		} else {
			tab_put(w->tab, w->cap, v[i]);
			w->n++;
		}
	}
	free(v);
	return 0;
}

int wcopy_truncate(struct wcopy *w, uint64_t size)
{
	uint64_t keep = (size + TXD_CHUNK_SIZE - 1) >> TXD_CHUNK_SHIFT;
	uint64_t base_chunks = (w->base_size + TXD_CHUNK_SIZE - 1) >> TXD_CHUNK_SHIFT;
	int r;

	if (size > INT64_MAX)
		return -EFBIG;
	if (size >= w->size) {
		w->size = size; /* bytes past the old size already read as zero */
		return 0;
	}
	if (size & (TXD_CHUNK_SIZE - 1)) {
		r = zero_tail(w, size >> TXD_CHUNK_SHIFT, size & (TXD_CHUNK_SIZE - 1));
		if (r)
			return r;
	}
	r = drop_dirty_from(w, keep);
	if (r)
		return r;
	if (keep < base_chunks && keep < w->trunc_chunks) {
		w->truncated = true;
		w->trunc_chunks = keep;
	}
	w->size = size;
	return 0;
}

int wcopy_zero(struct wcopy *w, uint64_t off, uint64_t len)
{
	uint64_t end;
	int r = 0;

	if (off >= w->size || len == 0)
		return 0;
	end = len > w->size - off ? w->size : off + len;
	while (off < end && !r) {
		uint64_t idx = off >> TXD_CHUNK_SHIFT;
		size_t coff = (size_t)(off & (TXD_CHUNK_SIZE - 1));
		size_t piece = TXD_CHUNK_SIZE - coff;
		struct dirty *d;

		if (piece > end - off)
			piece = (size_t)(end - off);
		if (piece == TXD_CHUNK_SIZE) {
			r = set_zero(w, idx);
		} else if (has_content(w, idx)) {
			r = mem_chunk(w, idx, true, 0, &d);
			if (!r && coff < d->cap)
				memset(d->buf + coff, 0,
				       coff + piece <= d->cap ? piece : d->cap - coff);
		}
		off += piece;
	}
	return r;
}

/* A hole change where nothing is stored would only lengthen the record. */
static bool is_noop_hole(const struct wcopy *w, const struct wcopy_change *c)
{
	return !c->len && !c->data && !base_chunk(w, c->idx);
}

static void fill_change(const struct dirty *d, struct wcopy_change *c, struct wcopy_prep *p)
{
	memset(c, 0, sizeof(*c));
	c->idx = d->idx;
	if (d->state == D_MEM) {
		c->len = trimmed_len(d->buf, d->cap);
		if (c->len) {
			c->data = d->buf;
			c->csum = chunk_checksum(d->buf, c->len);
			p->inline_bytes += c->len;
		}
	} else if (d->state == D_SPILLED) {
		c->len = d->loc.len;
		c->csum = d->loc.csum;
		c->loc = d->loc;
		p->has_spilled = true;
	}
}

int wcopy_prepare(struct wcopy *w, struct wcopy_prep *p)
{
	struct dirty **v;
	uint32_t i;
	int r;

	memset(p, 0, sizeof(*p));
	r = dirty_list(w, true, &v);
	if (r)
		return r;
	p->chg = calloc(w->n ? w->n : 1, sizeof(*p->chg));
	if (!p->chg) {
		free(v);
		return -ENOMEM;
	}
	p->size = w->size;
	p->truncated = w->truncated;
	p->trunc_chunks = w->truncated ? w->trunc_chunks : 0;
	for (i = 0; i < w->n; i++) {
		fill_change(v[i], &p->chg[p->nchg], p);
		if (!is_noop_hole(w, &p->chg[p->nchg]))
			p->nchg++;
	}
	free(v);
	/* gc.h G1: the caller may append these chunks to a pack (a large
	 * commit) before its record makes them chunk objects */
	p->pin_pack = chunkstore_append_target(w->cs);
	usage_prep(p->pin_pack, 1);
	return 0;
}

static void prep_release(struct wcopy_prep *p)
{
	if (p->chg)
		usage_prep(p->pin_pack, -1);
	free(p->chg);
	p->chg = NULL;
	p->nchg = 0;
}

int wcopy_commit(struct wcopy *w, struct wcopy_prep *p, struct cmap **map_out,
		 uint64_t *digest_sum_out)
{
	struct cmap *m = cmap_ref(w->base);
	uint64_t sum = w->base_sum;
	int r;

	/* On a shared base every change path-copies (C2); on failure the
	 * copy is left exactly as it was. */
	r = cmap_apply_changes(&m, &sum, p->truncated, p->trunc_chunks, p->chg, p->nchg);
	if (r) {
		cmap_unref(m);
		return r;
	}
	cmap_unref(w->base);
	w->base = m;
	w->base_sum = sum;
	w->base_size = p->size;
	w->truncated = false;
	w->trunc_chunks = UINT64_MAX;
	dirty_clear(w);
	prep_release(p);
	*map_out = cmap_ref(m);
	*digest_sum_out = sum;
	return 0;
}

void wcopy_abandon(struct wcopy *w, struct wcopy_prep *p)
{
	(void)w;
	prep_release(p);
}

uint64_t wcopy_mem_bytes(const struct wcopy *w)
{
	return w->mem_bytes;
}

uint64_t wcopy_mem_total(void)
{
	return atomic_load(&wcopy_mem_all);
}
