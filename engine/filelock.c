/*
 * filelock.c — advisory file locks per file (filelock.h L1-L8).
 *
 * A hash of files, each with its locks (an owner's locks of one kind never
 * overlap or touch when of one type: L3 keeps them merged) and its queue of
 * waiting requests. Every unlock, release or conversion retries the file's
 * queue in arrival order and collects the requests it grants; their done
 * callbacks run after fl->lock is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "filelock.h"

#define NBUCKETS 1024

struct lk {
	struct lk *next;
	enum fl_kind kind;
	short type;
	uint64_t start, end, owner;
	uint32_t pid;
	uint64_t fh; /* L9 */
};

struct ffile;

struct waiter {
	struct waiter *next; /* the file's queue (arrival order), or a granted list */
	struct ffile *file;
	struct fl_req r;
	int err; /* granted: what applying it gave */
	void (*done)(void *arg, int err);
	void *arg;
};

struct ffile {
	struct ffile *hnext;
	struct fl_key key;
	struct lk *locks;
	struct waiter *waits;
};

struct fl_table {
	pthread_mutex_t lock; /* leaf */
	struct ffile *b[NBUCKETS];
	_Atomic uint64_t nlocks; /* changed under lock; fl_any reads it without */
	uint64_t nwaits;
};

int fl_open(struct fl_table **out)
{
	struct fl_table *fl = calloc(1, sizeof(*fl));
	if (!fl)
		return -ENOMEM;
	pthread_mutex_init(&fl->lock, NULL);
	*out = fl;
	return 0;
}

static void finish(struct waiter *w)
{
	while (w) {
		struct waiter *next = w->next;
		w->done(w->arg, w->err);
		free(w);
		w = next;
	}
}

void fl_close(struct fl_table *fl)
{
	struct waiter *out = NULL;
	if (!fl)
		return;
	pthread_mutex_lock(&fl->lock);
	for (unsigned k = 0; k < NBUCKETS; k++) {
		for (struct ffile *f = fl->b[k], *fn; f; f = fn) {
			fn = f->hnext;
			for (struct lk *l = f->locks, *ln; l; l = ln) {
				ln = l->next;
				free(l);
			}
			for (struct waiter *w = f->waits, *wn; w; w = wn) {
				wn = w->next;
				w->err = -EIO;
				w->next = out;
				out = w;
			}
			free(f);
		}
		fl->b[k] = NULL;
	}
	pthread_mutex_unlock(&fl->lock);
	finish(out);
	pthread_mutex_destroy(&fl->lock);
	free(fl);
}

static unsigned bucket(const struct fl_key *k)
{
	return (unsigned)(((k->ino * 0x9e3779b97f4a7c15ull) ^ (k->view * 0xff51afd7ed558ccdull)) >>
			  54) % NBUCKETS;
}

static struct ffile *find(struct fl_table *fl, const struct fl_key *k, bool create)
{
	unsigned b = bucket(k);
	for (struct ffile *f = fl->b[b]; f; f = f->hnext)
		if (f->key.view == k->view && f->key.ino == k->ino)
			return f;
	if (!create)
		return NULL;
	struct ffile *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->key = *k;
	f->hnext = fl->b[b];
	fl->b[b] = f;
	return f;
}

/* A file with no locks and no waiters is forgotten. */
static void maybe_free(struct fl_table *fl, struct ffile *f)
{
	if (!f || f->locks || f->waits)
		return;
	struct ffile **pp = &fl->b[bucket(&f->key)];
	while (*pp != f)
		pp = &(*pp)->hnext;
	*pp = f->hnext;
	free(f);
}

static bool overlap(uint64_t as, uint64_t ae, uint64_t bs, uint64_t be)
{
	return as <= be && bs <= ae;
}

/* Overlapping or adjacent (L3 merges such ranges of one owner and type). */
static bool touch(uint64_t as, uint64_t ae, uint64_t bs, uint64_t be)
{
	return overlap(as, ae, bs, be) || (ae != FL_END && ae + 1 == bs) ||
	       (be != FL_END && be + 1 == as);
}

/* L2: the first lock of another owner that r cannot coexist with. */
static struct lk *conflict(const struct ffile *f, const struct fl_req *r)
{
	for (struct lk *l = f->locks; l; l = l->next)
		if (l->kind == r->kind && l->owner != r->owner &&
		    overlap(l->start, l->end, r->start, r->end) &&
		    (l->type == F_WRLCK || r->type == F_WRLCK))
			return l;
	return NULL;
}

/* L3: r replaces the owner's locks of its kind over its range. At most one
 * existing lock is split (an owner's locks never overlap), so one spare
 * and one new lock, allocated first, make it all-or-nothing. */
static int apply(struct fl_table *fl, struct ffile *f, const struct fl_req *r)
{
	struct lk *spare = malloc(sizeof(*spare)), *nl = NULL;
	if (!spare)
		return -ENOLCK;
	if (r->type != F_UNLCK) {
		if (fl->nlocks + fl->nwaits + 2 > FL_MAX_LOCKS || !(nl = malloc(sizeof(*nl)))) {
			free(spare);
			return -ENOLCK;
		}
		*nl = (struct lk){.kind = r->kind, .type = r->type, .start = r->start, .end = r->end,
				  .owner = r->owner, .pid = r->pid, .fh = r->fh};
	}
	for (struct lk **pp = &f->locks; *pp;) {
		struct lk *l = *pp;
		if (l->kind != r->kind || l->owner != r->owner) {
			pp = &l->next;
			continue;
		}
		if (nl && l->type == nl->type && touch(l->start, l->end, nl->start, nl->end)) {
			nl->start = l->start < nl->start ? l->start : nl->start; /* merged */
			nl->end = l->end > nl->end ? l->end : nl->end;
		} else if (!overlap(l->start, l->end, r->start, r->end)) {
			pp = &l->next;
			continue;
		} else if (l->start < r->start && r->end != FL_END && l->end > r->end) {
			*spare = *l; /* split: the part past r */
			spare->start = r->end + 1;
			l->end = r->start - 1;
			spare->next = l->next;
			l->next = spare;
			spare = NULL;
			fl->nlocks++;
			break; /* nothing else of the owner's overlaps r */
		} else if (l->start < r->start) {
			l->end = r->start - 1;
			pp = &l->next;
			continue;
		} else if (r->end != FL_END && l->end > r->end) {
			l->start = r->end + 1;
			pp = &l->next;
			continue;
		}
		*pp = l->next; /* covered, or merged into nl */
		free(l);
		fl->nlocks--;
	}
	if (nl) {
		nl->next = f->locks;
		f->locks = nl;
		fl->nlocks++;
	}
	free(spare);
	return 0;
}

/* L5: grant what no longer conflicts, in arrival order; the granted ones
 * are returned for finish() once fl->lock is dropped. */
static struct waiter *wake(struct fl_table *fl, struct ffile *f)
{
	struct waiter *out = NULL, **tail = &out;
	for (struct waiter **pp = &f->waits; *pp;) {
		struct waiter *w = *pp;
		if (conflict(f, &w->r)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		fl->nwaits--;
		w->err = apply(fl, f, &w->r);
		w->next = NULL;
		*tail = w;
		tail = &w->next;
	}
	return out;
}

/* The request owner is waiting for (POSIX), if any. */
static struct waiter *waiting_of(struct fl_table *fl, uint64_t owner)
{
	for (unsigned k = 0; k < NBUCKETS; k++)
		for (struct ffile *f = fl->b[k]; f; f = f->hnext)
			for (struct waiter *w = f->waits; w; w = w->next)
				if (w->r.kind == FL_POSIX && w->r.owner == owner)
					return w;
	return NULL;
}

/* L6: follow the owners r would wait for; back at r's owner is a deadlock. */
static bool deadlock(struct fl_table *fl, const struct ffile *f, const struct fl_req *r)
{
	const struct lk *b = conflict(f, r);
	for (int depth = 0; b && depth < FL_DEADLK_DEPTH; depth++) {
		if (b->owner == r->owner)
			return true;
		const struct waiter *w = waiting_of(fl, b->owner);
		if (!w)
			return false;
		b = conflict(w->file, &w->r);
	}
	return false;
}

static bool valid(const struct fl_req *r)
{
	return (r->kind == FL_POSIX || r->kind == FL_FLOCK) &&
	       (r->type == F_RDLCK || r->type == F_WRLCK || r->type == F_UNLCK) &&
	       r->start <= r->end;
}

int fl_set(struct fl_table *fl, const struct fl_key *k, const struct fl_req *r, bool wait,
	   const _Atomic bool *intr, void (*done)(void *arg, int err), void *arg)
{
	if (!valid(r))
		return -EINVAL;
	pthread_mutex_lock(&fl->lock);
	struct ffile *f = find(fl, k, r->type != F_UNLCK);
	struct waiter *granted = NULL;
	int err = 0;
	if (!f) {
		err = r->type == F_UNLCK ? 0 : -ENOLCK;
		goto out;
	}
	if (r->type == F_UNLCK) {
		err = apply(fl, f, r);
		granted = wake(fl, f);
		goto out;
	}
	if (r->kind == FL_FLOCK) { /* L4: a conversion drops the old lock first */
		struct lk *own = NULL;
		for (struct lk *l = f->locks; l && !own; l = l->next)
			if (l->kind == FL_FLOCK && l->owner == r->owner)
				own = l;
		if (own && own->type == r->type)
			goto out;
		if (own) {
			struct fl_req un = *r;
			un.type = F_UNLCK;
			apply(fl, f, &un); /* an unlock allocates nothing it cannot do without */
			granted = wake(fl, f);
		}
	}
	if (!conflict(f, r))
		err = apply(fl, f, r);
	else if (!wait)
		err = -EAGAIN;
	else if (r->kind == FL_POSIX && deadlock(fl, f, r))
		err = -EDEADLK;
	else if (intr && *intr)
		err = -EINTR; /* interrupted before it could wait: filelock.h */
	else if (fl->nlocks + fl->nwaits + 1 > FL_MAX_LOCKS)
		err = -ENOLCK;
	else {
		struct waiter *w = calloc(1, sizeof(*w));
		if (!w) {
			err = -ENOLCK;
			goto out;
		}
		*w = (struct waiter){.file = f, .r = *r, .done = done, .arg = arg};
		struct waiter **pp = &f->waits;
		while (*pp)
			pp = &(*pp)->next;
		*pp = w;
		fl->nwaits++;
		err = -EINPROGRESS;
	}
out:
	maybe_free(fl, f);
	pthread_mutex_unlock(&fl->lock);
	finish(granted);
	return err;
}

int fl_cancel(struct fl_table *fl, void *arg)
{
	pthread_mutex_lock(&fl->lock);
	for (unsigned k = 0; k < NBUCKETS; k++)
		for (struct ffile *f = fl->b[k]; f; f = f->hnext)
			for (struct waiter **pp = &f->waits; *pp; pp = &(*pp)->next)
				if ((*pp)->arg == arg) {
					struct waiter *w = *pp;
					*pp = w->next;
					fl->nwaits--;
					free(w);
					maybe_free(fl, f);
					pthread_mutex_unlock(&fl->lock);
					return 0;
				}
	pthread_mutex_unlock(&fl->lock);
	return -ENOENT;
}

void fl_test(struct fl_table *fl, const struct fl_key *k, struct fl_req *r)
{
	pthread_mutex_lock(&fl->lock);
	struct ffile *f = valid(r) && r->type != F_UNLCK ? find(fl, k, false) : NULL;
	const struct lk *l = f ? conflict(f, r) : NULL;
	if (l) {
		r->type = l->type;
		r->start = l->start;
		r->end = l->end;
		r->pid = l->pid;
		r->owner = l->owner;
	} else {
		r->type = F_UNLCK;
	}
	pthread_mutex_unlock(&fl->lock);
}

/* Every lock of the file that match() picks goes; waiters that no longer
 * conflict are granted. */
static void release_where(struct fl_table *fl, const struct fl_key *k,
			  bool (*match)(const struct lk *l, const void *arg), const void *arg)
{
	pthread_mutex_lock(&fl->lock);
	struct ffile *f = find(fl, k, false);
	struct waiter *granted = NULL;
	bool gone = false;
	for (struct lk **pp = f ? &f->locks : NULL; pp && *pp;) {
		struct lk *l = *pp;
		if (match(l, arg)) {
			*pp = l->next;
			free(l);
			fl->nlocks--;
			gone = true;
		} else {
			pp = &l->next;
		}
	}
	if (gone)
		granted = wake(fl, f);
	maybe_free(fl, f);
	pthread_mutex_unlock(&fl->lock);
	finish(granted);
}

struct owner_of {
	enum fl_kind kind;
	uint64_t owner;
};

static bool is_owners(const struct lk *l, const void *arg)
{
	const struct owner_of *o = arg;
	return l->kind == o->kind && l->owner == o->owner;
}

static bool via_fh(const struct lk *l, const void *arg)
{
	return l->kind == FL_POSIX && l->fh == *(const uint64_t *)arg;
}

void fl_release_owner(struct fl_table *fl, const struct fl_key *k, enum fl_kind kind,
		      uint64_t owner)
{
	struct owner_of o = {kind, owner};
	release_where(fl, k, is_owners, &o);
}

void fl_release_fh(struct fl_table *fl, const struct fl_key *k, uint64_t fh)
{
	release_where(fl, k, via_fh, &fh);
}

bool fl_any(struct fl_table *fl)
{
	return fl && atomic_load_explicit(&fl->nlocks, memory_order_relaxed) != 0;
}

void fl_counts(struct fl_table *fl, uint64_t *locks, uint64_t *waiting)
{
	pthread_mutex_lock(&fl->lock);
	*locks = fl->nlocks;
	*waiting = fl->nwaits;
	pthread_mutex_unlock(&fl->lock);
}
