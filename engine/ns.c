/*
 * ns.c — in-memory namespace and the one function that changes it, ns_apply.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "ns.h"
#include "txdir.h"
#include "util.h"

/* ---- inode table ---------------------------------------------------------- */
#define NS_TAB_MIN 64
/* malloc_trim after a sweep freed at least this many inodes (M3). */
#define NS_TRIM_AFTER 4096
static uint64_t ino_hash(uint64_t ino, uint64_t size)
{
	return (ino * 0x9e3779b97f4a7c15ull) >> 17 & (size - 1);
}

int ns_init(struct ns *ns)
{
	memset(ns, 0, sizeof(*ns));
	/* small to start: a transaction's view holds a handful of inodes, and
	 * the table doubles as the namespace grows */
	ns->tabsize = NS_TAB_MIN;
	ns->tab = calloc(ns->tabsize, sizeof(*ns->tab));
	ns->next_ino = NS_ROOT_INO + 1;
	return ns->tab ? 0 : -ENOMEM;
}

struct inode *ns_inode(struct ns *ns, uint64_t ino)
{
	struct inode *in = ns->tab[ino_hash(ino, ns->tabsize)];
	while (in && in->ino != ino)
		in = in->hnext;
	return in;
}

uint64_t ns_alloc_ino(struct ns *ns)
{
	return ns->next_ino++;
}

static int ns_grow(struct ns *ns)
{
	uint64_t nsize = ns->tabsize * 2;
	struct inode **nt = calloc(nsize, sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	for (uint64_t k = 0; k < ns->tabsize; k++) {
		struct inode *in = ns->tab[k];
		while (in) {
			struct inode *next = in->hnext;
			uint64_t h = ino_hash(in->ino, nsize);
			in->hnext = nt[h];
			nt[h] = in;
			in = next;
		}
	}
	free(ns->tab);
	ns->tab = nt;
	ns->tabsize = nsize;
	return 0;
}

static struct inode *ns_inode_new(struct ns *ns, uint64_t ino)
{
	if (ns->ninodes + 1 > ns->tabsize && ns_grow(ns))
		return NULL;
	struct inode *in = calloc(1, sizeof(*in));
	if (!in)
		return NULL;
	in->ino = ino;
	uint64_t h = ino_hash(ino, ns->tabsize);
	in->hnext = ns->tab[h];
	ns->tab[h] = in;
	ns->ninodes++;
	if (ino >= ns->next_ino)
		ns->next_ino = ino + 1;
	return in;
}

static void ns_unhash(struct ns *ns, struct inode *in)
{
	struct inode **pp = &ns->tab[ino_hash(in->ino, ns->tabsize)];
	while (*pp && *pp != in)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = in->hnext;
		ns->ninodes--;
	}
}

/* ---- versions -------------------------------------------------------------- */
static void iver_free(struct ns *ns, struct iver *v)
{
	cmap_unref(v->map);
	free(v->target);
	free(v->xa);
	free(v);
	ns->nversions--;
}

static struct xattrs *xattrs_dup(const struct xattrs *xa)
{
	if (!xa)
		return NULL;
	struct xattrs *n = malloc(sizeof(*n) + xa->len);
	if (n)
		memcpy(n, xa, sizeof(*n) + xa->len);
	return n;
}

/* Free every older version nobody pins and no snapshot needs (N2). */
static void iver_prune(struct ns *ns, struct inode *in)
{
	uint64_t newer = in->head->commit;
	struct iver **pp = &in->head->older;
	while (*pp) {
		struct iver *v = *pp;
		if (v->refs == 1 && !ns_snapshot_needs(ns, v->commit, newer)) {
			*pp = v->older;
			iver_free(ns, v);
		} else {
			newer = v->commit;
			pp = &v->older;
		}
	}
}

/* The version a commit may write into (N1). */
static struct iver *iver_for_write(struct ns *ns, struct inode *in, uint64_t commit)
{
	struct iver *h = in->head;
	if (h && h->refs == 1 && h->commit > ns->newest_snapshot) {
		if (h->commit != commit) {
			h->commit = commit;
			h->vno++;
		}
		return h;
	}
	struct iver *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	if (h) {
		*v = *h;
		if (h->commit != commit)
			v->vno++;
		v->map = cmap_ref(h->map);
		v->target = h->target ? strdup(h->target) : NULL;
		v->xa = xattrs_dup(h->xa);
		if ((h->target && !v->target) || (h->xa && !v->xa)) {
			free(v->target);
			free(v->xa);
			cmap_unref(v->map);
			free(v);
			return NULL;
		}
	}
	v->refs = 1;
	if (!h)
		v->vno = 1;
	v->commit = commit;
	v->older = h;
	in->head = v;
	ns->nversions++;
	iver_prune(ns, in);
	return v;
}

void ns_iver_pin(struct iver *v)
{
	v->refs++;
}

void ns_iver_unpin(struct ns *ns, struct inode *in, struct iver *v)
{
	if (--v->refs == 0) {
		/* detached version (inode already dropped) */
		iver_free(ns, v);
		return;
	}
	if (in->head && v != in->head && v->refs == 1)
		iver_prune(ns, in);
}

/* ---- directories ----------------------------------------------------------- */
static uint32_t name_hash(const char *name, size_t len)
{
	return (uint32_t)XXH64(name, len, 0x7478646972ull);
}

static struct dir *dir_new(void)
{
	struct dir *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->tabsize = 8;
	d->tab = calloc(d->tabsize, sizeof(*d->tab));
	d->next_cookie = 3; /* 1 and 2 are "." and ".." */
	if (!d->tab) {
		free(d);
		return NULL;
	}
	return d;
}

static void dver_free_chain(struct dver *v)
{
	while (v) {
		struct dver *older = v->older;
		free(v);
		v = older;
	}
}

static void dent_free(struct dent *e)
{
	dver_free_chain(e->older);
	free(e);
}

static void dir_free(struct dir *d)
{
	if (!d)
		return;
	for (uint32_t k = 0; k < d->norder; k++)
		if (d->order[k])
			dent_free(d->order[k]);
	free(d->order);
	free(d->tab);
	free(d);
}

/* The entry for name, live or tombstone. */
static struct dent *dir_find_any(const struct dir *d, const char *name, size_t len)
{
	struct dent *e = d->tab[name_hash(name, len) & (d->tabsize - 1)];
	while (e && !(e->len == len && memcmp(e->name, name, len) == 0))
		e = e->hnext;
	return e;
}

struct dent *ns_dir_find(const struct dir *d, const char *name, size_t len)
{
	struct dent *e = dir_find_any(d, name, len);
	return e && e->ino ? e : NULL;
}

static int dir_rehash(struct dir *d)
{
	uint32_t nsize = d->tabsize * 2;
	struct dent **nt = calloc(nsize, sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	for (uint32_t k = 0; k < d->tabsize; k++) {
		struct dent *e = d->tab[k];
		while (e) {
			struct dent *next = e->hnext;
			uint32_t h = name_hash(e->name, e->len) & (nsize - 1);
			e->hnext = nt[h];
			nt[h] = e;
			e = next;
		}
	}
	free(d->tab);
	d->tab = nt;
	d->tabsize = nsize;
	return 0;
}

/* Squeeze removed slots out of the cookie order once they are half of it. */
static void dir_compact(struct dir *d)
{
	uint32_t w = 0;
	for (uint32_t r = 0; r < d->norder; r++)
		if (d->order[r])
			d->order[w++] = d->order[r];
	d->norder = w;
}

static int dir_append(struct dir *d, struct dent *e)
{
	if (d->norder == d->caporder) {
		if (d->count < d->norder / 2)
			dir_compact(d);
		/* tombstones kept for snapshots (N5) are not squeezed out: the
		 * order may still be full */
		if (d->norder == d->caporder) {
			uint32_t cap = d->caporder ? d->caporder * 2 : 8;
			struct dent **o = realloc(d->order, cap * sizeof(*o));
			if (!o)
				return -ENOMEM;
			d->order = o;
			d->caporder = cap;
		}
	}
	d->order[d->norder++] = e;
	return 0;
}

/* Binary search of the slot holding cookie c (order is sorted by cookie). */
static int64_t dir_slot(const struct dir *d, uint64_t c, bool exact)
{
	uint32_t lo = 0, hi = d->norder;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		/* NULL slots: scan right for a live neighbour to compare */
		uint32_t m = mid;
		while (m < hi && !d->order[m])
			m++;
		if (m == hi) {
			hi = mid;
			continue;
		}
		if (d->order[m]->cookie == c)
			return exact ? m : m + 1;
		if (d->order[m]->cookie < c)
			lo = m + 1;
		else
			hi = mid;
	}
	return exact ? -1 : (int64_t)lo;
}

struct dent *ns_dir_next(const struct dir *d, uint64_t after)
{
	for (int64_t k = dir_slot(d, after, false); k < d->norder; k++)
		if (d->order[k] && d->order[k]->cookie > after && d->order[k]->ino)
			return d->order[k];
	return NULL;
}

static uint64_t dent_ino_at(const struct dent *e, uint64_t s)
{
	if (e->commit <= s)
		return e->ino;
	for (const struct dver *v = e->older; v; v = v->older)
		if (v->commit <= s)
			return v->ino;
	return 0;
}

uint64_t ns_lookup_at(const struct dir *d, const char *name, size_t len, uint64_t s)
{
	const struct dent *e = dir_find_any(d, name, len);
	return e ? dent_ino_at(e, s) : 0;
}

struct dent *ns_dir_next_at(const struct dir *d, uint64_t after, uint64_t s, uint64_t *ino)
{
	for (int64_t k = dir_slot(d, after, false); k < d->norder; k++) {
		struct dent *e = d->order[k];
		if (e && e->cookie > after && (*ino = dent_ino_at(e, s)))
			return e;
	}
	return NULL;
}

/* Drop older bindings of e that no snapshot needs (N5). */
static void dent_prune(struct ns *ns, struct dent *e)
{
	uint64_t newer = e->commit;
	struct dver **pp = &e->older;
	while (*pp) {
		struct dver *v = *pp;
		if (!ns_snapshot_needs(ns, v->commit, newer)) {
			*pp = v->older;
			free(v);
			ns->mvcc_items--;
		} else {
			newer = v->commit;
			pp = &v->older;
		}
	}
}

/* Keep e's current binding for the snapshots that see it (N5). */
static int dent_keep(struct ns *ns, struct dent *e, uint64_t commit)
{
	if (!ns_snapshot_needs(ns, e->commit, commit))
		return 0;
	struct dver *v = malloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->ino = e->ino;
	v->commit = e->commit;
	v->older = e->older;
	e->older = v;
	ns->mvcc_items++;
	return 0;
}

static int dir_set(struct ns *ns, struct dir *d, const char *name, size_t len, uint64_t ino,
		   uint64_t cookie, uint64_t commit)
{
	struct dent *e = dir_find_any(d, name, len);
	if (e) {
		if (dent_keep(ns, e, commit))
			return -ENOMEM;
		if (!e->ino) {
			d->count++; /* a tombstone comes back to life */
			ns->mvcc_items--;
		}
		e->ino = ino;
		e->commit = commit;
		dent_prune(ns, e);
		return 0;
	}
	if (d->count + 1 > d->tabsize && dir_rehash(d))
		return -ENOMEM;
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->ino = ino;
	e->commit = commit;
	e->older = NULL;
	e->len = (uint16_t)len;
	memcpy(e->name, name, len);
	e->name[len] = 0;
	if (cookie) {
		e->cookie = cookie;
		if (cookie >= d->next_cookie)
			d->next_cookie = cookie + 1;
	} else {
		e->cookie = d->next_cookie++;
	}
	if (d->norder && d->order[d->norder - 1] && d->order[d->norder - 1]->cookie > e->cookie) {
		free(e); /* cookies must arrive in order (N3) */
		return -TXD_ECORRUPT;
	}
	if (dir_append(d, e)) {
		free(e);
		return -ENOMEM;
	}
	uint32_t h = name_hash(name, len) & (d->tabsize - 1);
	e->hnext = d->tab[h];
	d->tab[h] = e;
	d->count++;
	return 0;
}

/* Unlink e from the hash and the cookie order and free it. */
static void dent_remove(struct dir *d, struct dent *e)
{
	struct dent **pp = &d->tab[name_hash(e->name, e->len) & (d->tabsize - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	int64_t slot = dir_slot(d, e->cookie, true);
	if (slot >= 0)
		d->order[slot] = NULL;
	dent_free(e);
}

static int dir_del(struct ns *ns, struct dir *d, const char *name, size_t len, uint64_t commit)
{
	struct dent *e = dir_find_any(d, name, len);
	if (!e || !e->ino)
		return -TXD_ECORRUPT;
	d->count--;
	if (ns_snapshot_needs(ns, e->commit, commit) || e->older) {
		/* tombstone: snapshots still see the old binding (N5) */
		if (dent_keep(ns, e, commit))
			return -ENOMEM;
		e->ino = 0;
		e->commit = commit;
		dent_prune(ns, e);
		if (e->older) {
			ns->mvcc_items++; /* the tombstone itself */
			return 0;
		}
	}
	dent_remove(d, e);
	return 0;
}

/* ---- xattr blobs ------------------------------------------------------------- */
static uint16_t g16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t g32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Offset of the entry for name, or -1. */
static int64_t xattrs_find(const struct xattrs *xa, const char *name, size_t nl)
{
	if (!xa)
		return -1;
	for (uint32_t p = 0; p < xa->len;) {
		uint16_t l = g16(xa->data + p);
		uint32_t vl = g32(xa->data + p + 2);
		if (l == nl && memcmp(xa->data + p + 6, name, nl) == 0)
			return p;
		p += 6 + l + vl;
	}
	return -1;
}

const uint8_t *xattrs_get(const struct xattrs *xa, const char *name, uint32_t *len)
{
	int64_t p = xattrs_find(xa, name, strlen(name));
	if (p < 0)
		return NULL;
	uint16_t l = g16(xa->data + p);
	*len = g32(xa->data + p + 2);
	return xa->data + p + 6 + l;
}

static int xattrs_update(struct xattrs **xap, const char *name, size_t nl, const void *val,
			 uint32_t vl, bool del)
{
	struct xattrs *xa = *xap;
	uint32_t old_len = xa ? xa->len : 0;
	int64_t at = xattrs_find(xa, name, nl);
	uint32_t cut = 0;
	if (at >= 0)
		cut = 6 + g16(xa->data + at) + g32(xa->data + at + 2);
	uint32_t add = del ? 0 : 6 + (uint32_t)nl + vl;
	struct xattrs *n = malloc(sizeof(*n) + old_len - cut + add);
	if (!n)
		return -ENOMEM;
	n->len = 0;
	if (xa) {
		uint32_t a = at >= 0 ? (uint32_t)at : old_len;
		memcpy(n->data, xa->data, a);
		memcpy(n->data + a, xa->data + a + cut, old_len - a - cut);
		n->len = old_len - cut;
	}
	if (!del) {
		uint8_t *p = n->data + n->len;
		uint16_t l16 = (uint16_t)nl;
		memcpy(p, &l16, 2);
		memcpy(p + 2, &vl, 4);
		memcpy(p + 6, name, nl);
		if (vl)
			memcpy(p + 6 + nl, val, vl);
		n->len += add;
	}
	free(xa);
	*xap = n->len ? n : (free(n), NULL);
	return 0;
}

/* ---- apply ------------------------------------------------------------------ */
static int apply_inode(struct ns *ns, const struct rec_inode *r, uint64_t commit)
{
	struct inode *in = ns_inode(ns, r->ino);
	bool fresh = !in;
	if (fresh && !(in = ns_inode_new(ns, r->ino)))
		return -ENOMEM;
	struct iver *v = iver_for_write(ns, in, commit);
	if (!v)
		return -ENOMEM;
	if (fresh && S_ISDIR(r->mode) && !(in->dir = dir_new()))
		return -ENOMEM;
	if (fresh && r->target_len) {
		v->target = strndup(r->target, r->target_len);
		if (!v->target)
			return -ENOMEM;
		v->size = r->target_len;
	}
	if (!fresh && (S_IFMT & (v->mode ^ r->mode)))
		return -TXD_ECORRUPT; /* a file never changes type */
	v->mode = r->mode;
	v->uid = r->uid;
	v->gid = r->gid;
	v->nlink = r->nlink;
	v->rdev = r->rdev;
	v->atime = r->atime;
	v->mtime = r->mtime;
	v->ctime = r->ctime;
	in->parent = r->parent;
	return 0;
}

static int apply_dent(struct ns *ns, const struct rec_opv *op, uint64_t commit)
{
	const struct rec_dent *r = &op->u.dent;
	struct inode *p = ns_inode(ns, r->parent);
	if (!p || !p->dir)
		return -TXD_ECORRUPT;
	struct dent *old = ns_dir_find(p->dir, r->name, r->name_len);
	if (old) {
		struct inode *was = ns_inode(ns, old->ino);
		if (was && was->name == old)
			was->name = NULL;
	}
	if (op->op == OP_DENT_DEL)
		return dir_del(ns, p->dir, r->name, r->name_len, commit);
	struct inode *in = ns_inode(ns, r->ino);
	if (!in)
		return -TXD_ECORRUPT;
	int err = dir_set(ns, p->dir, r->name, r->name_len, r->ino, r->cookie, commit);
	if (!err) {
		in->name = ns_dir_find(p->dir, r->name, r->name_len);
		in->name_parent = r->parent;
	}
	return err;
}

/* The name in's parent (in->name_parent) bound to it at snapshot snap, for
 * an inode whose name is gone now (removed after snap); NULL if none. */
static const char *name_at(struct ns *ns, const struct inode *in, uint64_t snap)
{
	const struct inode *p = ns_inode(ns, in->name_parent);
	uint64_t ino;

	if (!p || !p->dir)
		return NULL;
	for (const struct dent *e = ns_dir_next_at(p->dir, 0, snap, &ino); e;
	     e = ns_dir_next_at(p->dir, e->cookie, snap, &ino))
		if (ino == in->ino)
			return e->name;
	return NULL;
}

static void path_of(struct ns *ns, const struct inode *in, uint64_t snap, char *buf, size_t cap)
{
	/* collect names leaf-first (any depth), then write them root-first */
	const char *stack[64], **parts = stack;
	size_t n = 0, max = 64, total = 0;
	while (in && in->ino != NS_ROOT_INO && n < (1u << 20)) {
		const char *name = in->name ? in->name->name : NULL;
		if (!name && snap)
			name = name_at(ns, in, snap);
		if (n == max) {
			const char **more = malloc(2 * max * sizeof(*more));
			if (!more)
				break;
			memcpy(more, parts, n * sizeof(*parts));
			if (parts != stack)
				free(parts);
			parts = more;
			max *= 2;
		}
		parts[n++] = name ? name : "?";
		total += 1 + strlen(parts[n - 1]);
		in = in->name || (name && snap) ? ns_inode(ns, in->name_parent) : NULL;
	}
	size_t at = 0, first = n;
	buf[0] = 0;
	if (n == 0 && cap > 1) {
		buf[0] = '/';
		buf[1] = 0;
	}
	/* longer than cap: the leaf end, after an explicit mark that the
	 * start was cut (never a shorter path that looks whole) */
	if (total >= cap && cap > 8) {
		size_t keep = 0;
		first = 0;
		while (first < n && keep + 1 + strlen(parts[first]) + 4 < cap)
			keep += 1 + strlen(parts[first++]);
		at = (size_t)snprintf(buf, cap, "/\u2026");
	}
	while (first-- > 0 && at + 1 < cap) {
		int w = snprintf(buf + at, cap - at, "/%s", parts[first]);
		if (w < 0)
			break;
		at += (size_t)w;
	}
	if (parts != stack)
		free(parts);
}

void ns_path(struct ns *ns, const struct inode *in, char *buf, size_t cap)
{
	path_of(ns, in, 0, buf, cap);
}

void ns_path_at(struct ns *ns, const struct inode *in, uint64_t snap, char *buf, size_t cap)
{
	path_of(ns, in, snap, buf, cap);
}

static int add_len(void *arg, uint64_t idx, struct chunk *c)
{
	(void)idx;
	*(uint64_t *)arg += chunk_len(c);
	return 0;
}

/* Stored bytes of the chunks a content change touches (its truncated tail
 * and its indices), so iver.stored follows in O(change). */
static uint64_t touched_bytes(const struct cmap *m, const struct rec_content *r,
			      const struct wcopy_change *chg)
{
	uint64_t sum = 0;
	if (r->truncated)
		cmap_walk(m, r->trunc_chunks, add_len, &sum);
	for (uint32_t k = 0; k < r->nchg; k++) {
		if ((r->truncated && chg[k].idx >= r->trunc_chunks) ||
		    (k > 0 && chg[k].idx == chg[k - 1].idx))
			continue;
		struct chunk *c = cmap_get(m, chg[k].idx);
		sum += c ? chunk_len(c) : 0;
	}
	return sum;
}

static int apply_content(struct ns *ns, const struct rec_content *r, uint32_t seg,
			 uint64_t data_base, uint64_t commit)
{
	struct inode *in = ns_inode(ns, r->ino);
	if (!in || !S_ISREG(in->head->mode))
		return -TXD_ECORRUPT;
	struct wcopy_change stack[16], *chg = stack;
	if (r->nchg > 16 && !(chg = malloc(sizeof(*chg) * r->nchg)))
		return -ENOMEM;
	for (uint32_t k = 0; k < r->nchg; k++)
		rec_content_chg(r, k, seg, data_base, &chg[k]);
	int err = -ENOMEM;
	struct iver *v = iver_for_write(ns, in, commit);
	if (v) {
		uint64_t before = touched_bytes(v->map, r, chg);
		err = cmap_apply_changes(&v->map, &v->dsum, r->truncated, r->trunc_chunks, chg,
					 r->nchg);
		v->stored = v->stored - before + touched_bytes(v->map, r, chg);
		v->size = r->size;
	}
	if (chg != stack)
		free(chg);
	return err;
}

static int apply_xattr(struct ns *ns, const struct rec_opv *op, uint64_t commit)
{
	const struct rec_xattr *r = &op->u.xattr;
	struct inode *in = ns_inode(ns, r->ino);
	if (!in)
		return -TXD_ECORRUPT;
	struct iver *v = iver_for_write(ns, in, commit);
	if (!v)
		return -ENOMEM;
	return xattrs_update(&v->xa, r->name, r->name_len, r->value, r->value_len,
			     op->op == OP_XATTR_DEL);
}

static void inode_free(struct ns *ns, struct inode *in)
{
	struct iver *v = in->head;
	while (v) {
		struct iver *older = v->older;
		if (--v->refs == 0)
			iver_free(ns, v);
		/* a pinned version survives, detached; its last unpin frees it */
		v = older;
	}
	dir_free(in->dir);
	free(in);
}

void ns_inode_drop(struct ns *ns, struct inode *in)
{
	ns_unhash(ns, in);
	inode_free(ns, in);
}

static int apply_free(struct ns *ns, uint64_t ino)
{
	struct inode *in = ns_inode(ns, ino);
	if (!in)
		return -TXD_ECORRUPT;
	if (in->pins) {
		/* still referenced by a node or handle: fs.c drops it later */
		ns_unhash(ns, in);
		in->freed = true;
		return 0;
	}
	ns_inode_drop(ns, in);
	return 0;
}

/* One op of a validated record. */
static int apply_op(struct ns *ns, const struct rec_opv *op, uint32_t seg, uint64_t data_base,
		    uint64_t commit)
{
	switch (op->op) {
	case OP_INODE:
		return apply_inode(ns, &op->u.inode, commit);
	case OP_DENT_SET:
	case OP_DENT_DEL:
		return apply_dent(ns, op, commit);
	case OP_CONTENT:
		return apply_content(ns, &op->u.content, seg, data_base, commit);
	case OP_XATTR_SET:
	case OP_XATTR_DEL:
		return apply_xattr(ns, op, commit);
	case OP_FREE:
		return apply_free(ns, op->u.ino);
	case OP_VERSION: {
		struct inode *in = ns_inode(ns, op->u.version.ino);
		if (!in)
			return -TXD_ECORRUPT;
		in->head->commit = op->u.version.commit;
		in->head->vno = op->u.version.vno;
		return 0;
	}
	default:
		return -TXD_ECORRUPT;
	}
}

int ns_apply(struct ns *ns, const void *payload, uint32_t len, uint32_t seg,
	     uint64_t payload_off, uint64_t commit)
{
	return ns_apply_prepared(ns, payload, len, seg, payload_off, commit, NULL);
}

/* ---- commits built before the lock (N8) -----------------------------------------------
 * The stage is a private namespace holding the inodes a record creates, built
 * from the record's ops with commit PREP_COMMIT (its only version: no
 * snapshot is registered there, so every later op of the record writes it in
 * place). Linking them gives them the real commit id. A record the stage
 * cannot represent exactly (an op that would reach from a staged inode to a
 * main one, inline data, OP_FREE or OP_VERSION of a staged inode) is not
 * prepared at all: the caller applies it the plain way. */
#define PREP_COMMIT 1
#define PREP_STAGED_NAME 1u   /* pins bits, stage only: a dent op was staged */
#define PREP_DEFERRED_NAME 2u /* a dent op naming it is left to the apply */

struct ns_prep {
	struct ns stage;
	uint8_t *done; /* per op of the prepared prefix: applied in the stage */
	uint32_t nops, len;
};

void ns_prep_free(struct ns_prep *p)
{
	if (!p)
		return;
	ns_destroy(&p->stage);
	free(p->done);
	free(p);
}

uint64_t ns_prep_count(const struct ns_prep *p)
{
	return p ? p->stage.ninodes : 0;
}

/* Mark a name op on staged inode in; false when the record mixes staged and
 * deferred names of one inode (the order of in->name would change). */
static bool prep_name(struct inode *in, uint32_t bit)
{
	in->pins |= bit;
	return in->pins != (PREP_STAGED_NAME | PREP_DEFERRED_NAME);
}

/* 1: op k applied in the stage; 0: left for the apply; -1: give up. */
static int prep_op(struct ns_prep *p, const struct rec_opv *op, bool (*fresh)(void *, uint64_t),
		   void *arg)
{
	struct ns *st = &p->stage;
	struct inode *in, *parent;
	switch (op->op) {
	case OP_INODE:
		if (!ns_inode(st, op->u.inode.ino) && !fresh(arg, op->u.inode.ino))
			return 0;
		return apply_inode(st, &op->u.inode, PREP_COMMIT) ? -1 : 1;
	case OP_CONTENT:
		if (!ns_inode(st, op->u.content.ino))
			return 0;
		return apply_content(st, &op->u.content, 0, 0, PREP_COMMIT) ? -1 : 1;
	case OP_XATTR_SET:
	case OP_XATTR_DEL:
		if (!ns_inode(st, op->u.xattr.ino))
			return 0;
		return apply_xattr(st, op, PREP_COMMIT) ? -1 : 1;
	case OP_DENT_SET:
	case OP_DENT_DEL:
		parent = ns_inode(st, op->u.dent.parent);
		in = op->op == OP_DENT_SET ? ns_inode(st, op->u.dent.ino) : NULL;
		if (!parent) {
			/* a main directory: applied under the lock, after the link */
			return in && !prep_name(in, PREP_DEFERRED_NAME) ? -1 : 0;
		}
		if (op->op == OP_DENT_SET && !in)
			return -1; /* a main inode named in a staged directory */
		if (op->op == OP_DENT_DEL) {
			struct dent *e = ns_dir_find(parent->dir, op->u.dent.name, op->u.dent.name_len);
			in = e ? ns_inode(st, e->ino) : NULL;
			if (e && !in)
				return -1;
		}
		if (in && !prep_name(in, PREP_STAGED_NAME))
			return -1;
		return apply_dent(st, op, PREP_COMMIT) ? -1 : 1;
	case OP_FREE:
		return ns_inode(st, op->u.ino) ? -1 : 0;
	case OP_VERSION:
		return ns_inode(st, op->u.version.ino) ? -1 : 0;
	default:
		return -1;
	}
}

int ns_prepare(const void *payload, uint32_t len, bool (*fresh)(void *arg, uint64_t ino),
	       void *arg, struct ns_prep **out)
{
	struct rec_hdr hdr;
	*out = NULL;
	int err = rec_validate(payload, len, &hdr);
	if (err)
		return err;
	if (hdr.data_off != len || !hdr.nops)
		return 0; /* inline data lands at a WAL offset known only later */
	struct ns_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (ns_init(&p->stage) || !(p->done = calloc(hdr.nops, 1))) {
		ns_prep_free(p);
		return -ENOMEM;
	}
	p->nops = hdr.nops;
	p->len = len;
	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, payload, &hdr);
	for (uint32_t k = 0; rec_next(&it, &op); k++) {
		int r = prep_op(p, &op, fresh, arg);
		if (r < 0) {
			ns_prep_free(p);
			return 0;
		}
		p->done[k] = (uint8_t)r;
	}
	if (!p->stage.ninodes) {
		ns_prep_free(p);
		return 0;
	}
	*out = p;
	return 0;
}

/* Move the staged inodes into ns with commit id `commit`. -TXD_ECORRUPT
 * (nothing moved) when one exists there already. */
static int prep_link(struct ns *ns, struct ns_prep *p, uint64_t commit)
{
	struct ns *st = &p->stage;
	for (uint64_t k = 0; k < st->tabsize; k++)
		for (struct inode *in = st->tab[k]; in; in = in->hnext)
			if (ns_inode(ns, in->ino) || in->head->older)
				return -TXD_ECORRUPT;
	while (ns->ninodes + st->ninodes > ns->tabsize)
		if (ns_grow(ns))
			return -ENOMEM;
	for (uint64_t k = 0; k < st->tabsize; k++) {
		while (st->tab[k]) {
			struct inode *in = st->tab[k];
			st->tab[k] = in->hnext;
			in->pins = 0;
			in->head->commit = commit;
			for (uint32_t j = 0; in->dir && j < in->dir->norder; j++)
				if (in->dir->order[j])
					in->dir->order[j]->commit = commit;
			uint64_t h = ino_hash(in->ino, ns->tabsize);
			in->hnext = ns->tab[h];
			ns->tab[h] = in;
			ns->ninodes++;
			ns->nversions++;
			st->ninodes--;
			st->nversions--;
			if (in->ino >= ns->next_ino)
				ns->next_ino = in->ino + 1;
		}
	}
	return 0;
}

int ns_apply_prepared(struct ns *ns, const void *payload, uint32_t len, uint32_t seg,
		      uint64_t payload_off, uint64_t commit, struct ns_prep *p)
{
	struct rec_hdr hdr;
	int err = rec_validate(payload, len, &hdr);
	if (err)
		return err;
	if (p && (p->nops > hdr.nops || p->len > len))
		return -EINVAL;
	if (p && (err = prep_link(ns, p, commit)))
		return err;
	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, payload, &hdr);
	for (uint32_t k = 0; !err && rec_next(&it, &op); k++)
		if (!p || k >= p->nops || !p->done[k])
			err = apply_op(ns, &op, seg, payload_off + hdr.data_off, commit);
	return err;
}

/* ---- copy-up into a private namespace ------------------------------------------------ */
static struct iver *iver_clone(const struct iver *v)
{
	struct iver *n = malloc(sizeof(*n));
	if (!n)
		return NULL;
	*n = *v;
	n->older = NULL;
	n->refs = 1;
	n->map = cmap_ref(v->map);
	n->target = v->target ? strdup(v->target) : NULL;
	n->xa = xattrs_dup(v->xa);
	if ((v->target && !n->target) || (v->xa && !n->xa)) {
		cmap_unref(n->map);
		free(n->target);
		free(n->xa);
		free(n);
		return NULL;
	}
	return n;
}

int ns_import(struct ns *ns, const struct inode *src, uint64_t s, struct inode **out)
{
	const struct iver *v = ns_iver_at(src, s);
	if (!v)
		return -ENOENT;
	struct inode *in = ns_inode_new(ns, src->ino);
	struct iver *c = in ? iver_clone(v) : NULL;
	if (!c)
		goto out_nomem;
	in->head = c;
	ns->nversions++;
	in->parent = src->parent;
	if (src->dir) {
		if (!(in->dir = dir_new()))
			goto out_nomem;
		uint64_t ino, after = 0;
		for (struct dent *e; (e = ns_dir_next_at(src->dir, after, s, &ino)); after = e->cookie)
			if (dir_set(ns, in->dir, e->name, e->len, ino, e->cookie, c->commit))
				goto out_nomem;
	}
	*out = in;
	return 0;
out_nomem:
	if (in)
		ns_inode_drop(ns, in);
	return -ENOMEM;
}

/* ---- snapshots -------------------------------------------------------------- */
bool ns_snapshot_needs(const struct ns *ns, uint64_t from, uint64_t to)
{
	/* the first registered snapshot >= from must be < to */
	uint32_t lo = 0, hi = ns->nsnaps;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ns->snaps[mid] < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ns->nsnaps && ns->snaps[lo] < to;
}

int ns_snapshot_take(struct ns *ns, uint64_t s)
{
	if (array_grow((void **)&ns->snaps, &ns->capsnaps, ns->nsnaps + 1, sizeof(*ns->snaps)))
		return -ENOMEM;
	uint32_t k = ns->nsnaps++;
	while (k > 0 && ns->snaps[k - 1] > s) {
		ns->snaps[k] = ns->snaps[k - 1];
		k--;
	}
	ns->snaps[k] = s;
	ns->newest_snapshot = ns->snaps[ns->nsnaps - 1];
	return 0;
}

/* Free what the released snapshot alone needed (N2, N5). */
static int sweep_inode(void *arg, struct inode *in)
{
	struct ns *ns = arg;
	if (in->head->older)
		iver_prune(ns, in);
	for (uint32_t k = 0; in->dir && ns->mvcc_items && k < in->dir->norder; k++) {
		struct dent *e = in->dir->order[k];
		if (!e || (!e->older && e->ino))
			continue;
		dent_prune(ns, e);
		if (!e->ino && !e->older) {
			ns->mvcc_items--;
			dent_remove(in->dir, e);
		}
	}
	return 0;
}

bool ns_inode_visible(const struct ns *ns, const struct inode *in)
{
	const struct iver *oldest = in->head;
	while (oldest->older)
		oldest = oldest->older;
	/* it exists from its oldest kept version on (N2 keeps every version a
	 * snapshot sees) and is gone from its head's commit on */
	return ns_snapshot_needs(ns, oldest->commit, in->head->commit);
}

void ns_inode_unlinked(struct ns *ns, struct inode *in)
{
	if (in->head->nlink || in->pins || in->ino == NS_ROOT_INO)
		return;
	if (!ns_inode_visible(ns, in)) {
		ns_inode_drop(ns, in);
		return;
	}
	/* M1: a snapshot still sees it; the release that ends that drops it */
	if (array_grow((void **)&ns->parked, &ns->capparked, ns->nparked + 1,
		       sizeof(*ns->parked)) == 0)
		ns->parked[ns->nparked++] = in->ino;
	/* on ENOMEM it stays until the last snapshot goes (ns_drop_unlinked) */
}

/* Drop parked inodes no remaining snapshot sees (M1). Returns how many. */
static uint32_t reap_parked(struct ns *ns)
{
	uint32_t w = 0, dropped = 0;
	for (uint32_t r = 0; r < ns->nparked; r++) {
		struct inode *in = ns_inode(ns, ns->parked[r]);
		if (!in || in->head->nlink || in->pins)
			continue; /* gone, or whoever holds it passes it back later */
		if (ns_inode_visible(ns, in)) {
			ns->parked[w++] = ns->parked[r];
			continue;
		}
		ns_inode_drop(ns, in);
		dropped++;
	}
	ns->nparked = w;
	if (!w) {
		free(ns->parked);
		ns->parked = NULL;
		ns->capparked = 0;
	}
	return dropped;
}

void ns_drop_unlinked(struct ns *ns)
{
	struct inode **v = NULL;
	uint32_t n = 0, cap = 0;
	for (uint64_t k = 0; k < ns->tabsize; k++)
		for (struct inode *in = ns->tab[k]; in; in = in->hnext) {
			if (in->head->nlink || in->pins || in->ino == NS_ROOT_INO)
				continue;
			if (array_grow((void **)&v, &cap, n + 1, sizeof(*v)))
				goto out;
			v[n++] = in;
		}
	for (uint32_t k = 0; k < n; k++)
		ns_inode_drop(ns, v[k]);
	reap_parked(ns); /* every parked one is gone now: empties the list */
	if (n >= NS_TRIM_AFTER)
		malloc_trim(0);
out:
	free(v);
}

bool ns_snapshot_forget(struct ns *ns, uint64_t s)
{
	uint32_t k = 0;
	while (k < ns->nsnaps && ns->snaps[k] != s)
		k++;
	if (k == ns->nsnaps)
		return false;
	memmove(&ns->snaps[k], &ns->snaps[k + 1], (ns->nsnaps - k - 1) * sizeof(*ns->snaps));
	ns->nsnaps--;
	ns->newest_snapshot = ns->nsnaps ? ns->snaps[ns->nsnaps - 1] : 0;
	/* parked inodes only this snapshot saw go now (M1): the list is short,
	 * unlike the full sweep, which the caller may defer */
	if (ns->nparked && reap_parked(ns) >= NS_TRIM_AFTER)
		malloc_trim(0); /* M3 */
	return true;
}

void ns_sweep_inode(struct ns *ns, struct inode *in)
{
	if (ns->mvcc_items || ns->nversions > ns->ninodes)
		sweep_inode(ns, in);
	if (!ns->nsnaps && !in->head->nlink && !in->pins && in->ino != NS_ROOT_INO)
		ns_inode_drop(ns, in);
}

void ns_snapshot_release(struct ns *ns, uint64_t s)
{
	if (!ns_snapshot_forget(ns, s))
		return;
	if (ns->mvcc_items || ns->nversions > ns->ninodes)
		ns_walk(ns, sweep_inode, ns);
	if (!ns->nsnaps)
		ns_drop_unlinked(ns);
}

struct iver *ns_iver_at(const struct inode *in, uint64_t s)
{
	struct iver *v = in->head;
	while (v && v->commit > s)
		v = v->older;
	return v;
}

int ns_walk(struct ns *ns, int (*cb)(void *arg, struct inode *in), void *arg)
{
	for (uint64_t k = 0; k < ns->tabsize; k++)
		for (struct inode *in = ns->tab[k]; in; in = in->hnext) {
			int err = cb(arg, in);
			if (err)
				return err;
		}
	return 0;
}

void ns_destroy(struct ns *ns)
{
	for (uint64_t k = 0; k < ns->tabsize; k++) {
		struct inode *in = ns->tab[k];
		while (in) {
			struct inode *next = in->hnext;
			inode_free(ns, in);
			in = next;
		}
	}
	free(ns->tab);
	free(ns->snaps);
	free(ns->parked);
	memset(ns, 0, sizeof(*ns));
}

void ns_inode_rec(const struct inode *in, struct rec_inode *r)
{
	const struct iver *v = in->head;
	memset(r, 0, sizeof(*r));
	r->ino = in->ino;
	r->mode = v->mode;
	r->uid = v->uid;
	r->gid = v->gid;
	r->nlink = v->nlink;
	r->rdev = v->rdev;
	r->atime = v->atime;
	r->mtime = v->mtime;
	r->ctime = v->ctime;
	r->parent = in->dir ? in->parent : 0;
}
