/*
 * clog.c — the commit log (clog.h): one record per commit with every path
 * it changed, appended as the commit applies; an index in memory.
 *
 * Appends are gathered in memory (cl->pend, at most CLOG_PEND_MAX bytes)
 * and written with one pwrite: a pwrite per commit was a second syscall on
 * every commit's path (untar: ~40,000 of them), for a log the WAL can
 * rebuild (C3). Pending records reach the file before anything reads
 * (renders), trims, cuts, syncs or closes it, and at clog_flush — which the checkpoint
 * calls before it writes a checkpoint: replay re-notes only commits after
 * the checkpoint, so those before it must be in the file by then.
 */
#include "clog.h"
#include "json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <xxhash.h>

#include "chunk.h"
#include "events.h"
#include "os.h"

#define CLOG_FILE "log"
#define CLOG_MAGIC 0x32474c43u /* "CLG2" */
#define HDR_LEN 16
#define PATH_CAP 4096
#define CLOG_PEND_MAX (64u << 10) /* bytes gathered before one pwrite */

struct cidx {
	uint64_t id, time_ns, off;
	uint32_t len; /* record length with its header */
};

struct clog {
	pthread_mutex_t lock; /* leaf (clog.h) */
	char *dir, *path;
	int fd;
	uint64_t size; /* of the log, pending bytes included */
	struct cidx *idx;
	size_t n, cap;
	uint8_t *pend; /* the log's bytes [size - pend_len, size), not written yet */
	size_t pend_len, pend_cap;
};

/* Write the pending records (lock held). On failure they stay pending. */
static int flush_locked(struct clog *cl)
{
	if (!cl->pend_len)
		return 0;
	int err = os_pwrite_full(cl->fd, cl->pend, cl->pend_len, (off_t)(cl->size - cl->pend_len));
	if (!err)
		cl->pend_len = 0;
	return err;
}

/* Gather one record (lock held); written at once when the buffer is full. */
static int pend_add(struct clog *cl, const uint8_t *rec, size_t len)
{
	if (cl->pend_len + len > CLOG_PEND_MAX) {
		int err = flush_locked(cl);
		if (err)
			return err;
		if (len > CLOG_PEND_MAX)
			return os_pwrite_full(cl->fd, rec, len, (off_t)cl->size);
	}
	if (!cl->pend) {
		if (!(cl->pend = malloc(CLOG_PEND_MAX)))
			return -ENOMEM;
		cl->pend_cap = CLOG_PEND_MAX;
	}
	memcpy(cl->pend + cl->pend_len, rec, len);
	cl->pend_len += len;
	return 0;
}

int clog_flush(struct clog *cl)
{
	pthread_mutex_lock(&cl->lock);
	int err = flush_locked(cl);
	pthread_mutex_unlock(&cl->lock);
	return err;
}

/* ---- notes ----------------------------------------------------------------------- */
enum { N_SET, N_DEL, N_MOD };

struct nop {
	uint8_t what;    /* N_* */
	bool existed;    /* the inode existed before the commit */
	bool used;
	uint64_t ino, parent;
	char *name;      /* N_SET: the new name */
	char *old;       /* N_DEL: its path before the commit */
};

struct clog_note {
	uint64_t id, time_ns, txn;
	uint32_t pid;
	struct nop *op;
	size_t n, cap;
};

static struct nop *note_add(struct clog_note *nt)
{
	if (nt->n == nt->cap) {
		size_t cap = nt->cap ? 2 * nt->cap : 16;
		struct nop *p = realloc(nt->op, cap * sizeof(*p));
		if (!p)
			return NULL;
		nt->op = p;
		nt->cap = cap;
	}
	struct nop *o = &nt->op[nt->n++];
	memset(o, 0, sizeof(*o));
	return o;
}

void clog_note_drop(struct clog_note *nt)
{
	if (!nt)
		return;
	for (size_t k = 0; k < nt->n; k++) {
		free(nt->op[k].name);
		free(nt->op[k].old);
	}
	free(nt->op);
	free(nt);
}

/* path of (parent, name) in ns now; false if parent is gone */
static bool child_path(struct ns *ns, uint64_t parent, const char *name, char *buf)
{
	struct inode *p = ns_inode(ns, parent);
	if (!p)
		return false;
	ns_path(ns, p, buf, PATH_CAP - strnlen(name, 255) - 1); /* room for the name */
	size_t at = strlen(buf);
	snprintf(buf + at, PATH_CAP - at, "%s%s", at == 1 ? "" : "/", name);
	return true;
}

/* the inode bound to (parent, name) now, 0 if none */
static uint64_t bound(struct ns *ns, uint64_t parent, const char *name, size_t len)
{
	struct inode *p = ns_inode(ns, parent);
	struct dent *d = p && p->dir ? ns_dir_find(p->dir, name, len) : NULL;
	return d ? d->ino : 0;
}

static int note_del(struct clog_note *nt, struct ns *ns, uint64_t ino, uint64_t parent,
		    const char *name)
{
	char path[PATH_CAP];
	struct nop *o = note_add(nt);
	if (!o)
		return -ENOMEM;
	o->what = N_DEL;
	o->ino = ino;
	o->parent = parent;
	o->existed = true;
	if (!child_path(ns, parent, name, path))
		snprintf(path, sizeof(path), "%s", name);
	return (o->old = strdup(path)) ? 0 : -ENOMEM;
}

static int note_op(struct clog_note *nt, struct ns *ns, const struct rec_opv *op)
{
	struct nop *o;
	char name[NAME_MAX + 1];
	uint64_t was;
	switch (op->op) {
	case OP_DENT_DEL:
		snprintf(name, sizeof(name), "%.*s", (int)op->u.dent.name_len, op->u.dent.name);
		was = bound(ns, op->u.dent.parent, op->u.dent.name, op->u.dent.name_len);
		return was ? note_del(nt, ns, was, op->u.dent.parent, name) : 0;
	case OP_DENT_SET:
		snprintf(name, sizeof(name), "%.*s", (int)op->u.dent.name_len, op->u.dent.name);
		was = bound(ns, op->u.dent.parent, op->u.dent.name, op->u.dent.name_len);
		if (was && was != op->u.dent.ino) {
			int err = note_del(nt, ns, was, op->u.dent.parent, name);
			if (err)
				return err; /* replaced: its old file is removed */
		}
		if (!(o = note_add(nt)))
			return -ENOMEM;
		o->what = N_SET;
		o->ino = op->u.dent.ino;
		o->parent = op->u.dent.parent;
		o->existed = ns_inode(ns, o->ino) != NULL;
		return (o->name = strdup(name)) ? 0 : -ENOMEM;
	case OP_CONTENT:
	case OP_INODE:
	case OP_XATTR_SET:
	case OP_XATTR_DEL:
		was = op->op == OP_CONTENT ? op->u.content.ino
		      : op->op == OP_INODE ? op->u.inode.ino : op->u.xattr.ino;
		if (!ns_inode(ns, was))
			return 0; /* created by this commit: its name says so (encode) */
		if (!(o = note_add(nt)))
			return -ENOMEM;
		o->what = N_MOD;
		o->ino = was;
		o->existed = true;
		return 0;
	default:
		return 0;
	}
}

int clog_note_begin(struct clog *cl, struct ns *ns, uint64_t id, const void *payload,
		    uint32_t len, struct clog_note **out)
{
	struct rec_hdr hdr;
	*out = NULL;
	pthread_mutex_lock(&cl->lock);
	bool have = cl->n && cl->idx[cl->n - 1].id >= id;
	pthread_mutex_unlock(&cl->lock);
	if (have || rec_validate(payload, len, &hdr))
		return 0;
	struct clog_note *nt = calloc(1, sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	nt->id = id;
	nt->time_ns = hdr.time_ns;
	nt->txn = hdr.txn;
	nt->pid = hdr.pid;
	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, payload, &hdr);
	while (rec_next(&it, &op)) {
		int err = note_op(nt, ns, &op);
		if (err) {
			clog_note_drop(nt);
			return err;
		}
	}
	*out = nt;
	return 0;
}

/* ---- records --------------------------------------------------------------------- */
struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void put(struct wbuf *w, const void *src, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *p = realloc(w->p, cap);
		if (!p) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void put_str(struct wbuf *w, const char *s)
{
	uint16_t n = (uint16_t)strnlen(s, PATH_CAP - 1);
	put(w, &n, 2);
	put(w, s, n);
}

static void put_chg(struct wbuf *w, uint32_t *n, char kind, uint64_t sum, const char *path,
		    const char *from)
{
	put(w, &kind, 1);
	put(w, &sum, 8);
	put_str(w, path);
	put_str(w, from ? from : "");
	(*n)++;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool in_set(const uint64_t *v, size_t n, uint64_t x)
{
	return n && bsearch(&x, v, n, sizeof(*v), cmp_u64);
}

static uint64_t checksum(struct ns *ns, uint64_t ino)
{
	struct inode *in = ns_inode(ns, ino);
	return in && S_ISREG(in->head->mode) ? digest_final(in->head->dsum, in->head->size) : 0;
}

/* N_DEL ops by inode: (ino, index in nt->op), sorted */
struct delk {
	uint64_t ino;
	size_t k;
};

static int cmp_delk(const void *a, const void *b)
{
	const struct delk *x = a, *y = b;
	return x->ino != y->ino ? (x->ino < y->ino ? -1 : 1) : (x->k > y->k) - (x->k < y->k);
}

/* the first N_DEL of ino not yet used (a rename's old name) */
static struct nop *del_of(struct clog_note *nt, const struct delk *dk, size_t ndk, uint64_t ino)
{
	size_t lo = 0, hi = ndk;
	while (lo < hi) { /* lower bound */
		size_t mid = lo + (hi - lo) / 2;
		if (dk[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < ndk && dk[lo].ino == ino; lo++)
		if (!nt->op[dk[lo].k].used)
			return &nt->op[dk[lo].k];
	return NULL;
}

/* The body of nt's record, after the commit applied (C2). */
static int encode(struct clog_note *nt, struct ns *ns, struct wbuf *w)
{
	uint64_t *dels = malloc((nt->n + 1) * sizeof(uint64_t));
	uint64_t *named = malloc((nt->n + 1) * sizeof(uint64_t));
	uint64_t *dirs = malloc((2 * nt->n + 1) * sizeof(uint64_t));
	uint64_t *done = malloc((nt->n + 1) * sizeof(uint64_t));
	struct delk *dk = malloc((nt->n + 1) * sizeof(*dk));
	size_t ndels = 0, nnamed = 0, ndirs = 0, ndone = 0;
	int err = -ENOMEM;
	if (!dels || !named || !dirs || !done || !dk)
		goto out;
	for (size_t k = 0; k < nt->n; k++) {
		if (nt->op[k].what == N_DEL) {
			dk[ndels] = (struct delk){nt->op[k].ino, k};
			dels[ndels++] = nt->op[k].ino;
			dirs[ndirs++] = nt->op[k].parent;
		}
		if (nt->op[k].what == N_SET) {
			named[nnamed++] = nt->op[k].ino;
			dirs[ndirs++] = nt->op[k].parent;
		}
	}
	qsort(dels, ndels, sizeof(*dels), cmp_u64);
	qsort(dk, ndels, sizeof(*dk), cmp_delk);
	qsort(named, nnamed, sizeof(*named), cmp_u64);
	uint32_t n = 0;
	size_t at_n = 0;
	put(w, &nt->id, 8);
	put(w, &nt->time_ns, 8);
	put(w, &nt->txn, 8);
	put(w, &nt->pid, 4);
	at_n = w->len;
	put(w, &n, 4);
	char path[PATH_CAP];
	/* The net change (a transaction's record holds every step of its
	 * view): a name only if it holds its file once the commit applied (a
	 * temp name created and renamed away or removed in the same commit
	 * never existed for anyone), and a file that replaced the one at its
	 * path says so once: "modified" for a new file there, "renamed" with
	 * the name it came from; the replaced file is not also "removed". */
	for (size_t k = 0; k < nt->n; k++) {
		struct nop *o = &nt->op[k];
		if (o->what != N_SET || bound(ns, o->parent, o->name, strlen(o->name)) != o->ino ||
		    !child_path(ns, o->parent, o->name, path))
			continue;
		bool dup = false; /* one entry per name (set twice in one commit) */
		for (size_t j = 0; j < k && !dup; j++)
			dup = nt->op[j].what == N_SET && nt->op[j].ino == o->ino &&
			      nt->op[j].parent == o->parent && !strcmp(nt->op[j].name, o->name);
		if (dup)
			continue;
		struct nop *d = del_of(nt, dk, ndels, o->ino);
		if (d)
			d->used = true;
		struct nop *gone = NULL; /* the file this one replaced at path */
		for (size_t j = 0; j < nt->n && !gone; j++)
			if (nt->op[j].what == N_DEL && !nt->op[j].used && nt->op[j].ino != o->ino &&
			    !strcmp(nt->op[j].old, path))
				gone = &nt->op[j];
		if (gone)
			gone->used = true;
		put_chg(w, &n, d ? 'R' : gone ? 'M' : o->existed ? 'L' : 'C', checksum(ns, o->ino),
			path, d ? d->old : NULL);
	}
	for (size_t k = 0; k < nt->n; k++)
		if (nt->op[k].what == N_DEL && !nt->op[k].used)
			put_chg(w, &n, 'D', 0, nt->op[k].old, NULL);
	/* the rest: changes to files that kept their names, once per file; a
	 * directory's own upkeep (mtime, nlink) when entries in it change is
	 * not one */
	qsort(dirs, ndirs, sizeof(*dirs), cmp_u64);
	for (size_t k = 0; k < nt->n; k++) {
		struct nop *o = &nt->op[k];
		if (o->what == N_MOD && o->existed && !in_set(named, nnamed, o->ino) &&
		    !in_set(dels, ndels, o->ino))
			done[ndone++] = o->ino;
	}
	qsort(done, ndone, sizeof(*done), cmp_u64);
	for (size_t k = 0; k < ndone; k++) {
		if (k && done[k] == done[k - 1])
			continue;
		struct inode *in = ns_inode(ns, done[k]);
		if (!in || (in->ino != NS_ROOT_INO && !in->name) ||
		    (S_ISDIR(in->head->mode) && in_set(dirs, ndirs, done[k])))
			continue; /* unlinked (still open), or a directory's upkeep */
		ns_path(ns, in, path, sizeof(path));
		put_chg(w, &n, 'M', checksum(ns, done[k]), path, NULL);
	}
	if (!w->oom)
		memcpy(w->p + at_n, &n, 4);
	err = w->oom ? -ENOMEM : 0;
out:
	free(dels);
	free(named);
	free(dirs);
	free(done);
	free(dk);
	return err;
}

static int idx_push(struct clog *cl, const struct cidx *e)
{
	if (cl->n == cl->cap) {
		size_t cap = cl->cap ? 2 * cl->cap : 1024;
		struct cidx *p = realloc(cl->idx, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		cl->idx = p;
		cl->cap = cap;
	}
	cl->idx[cl->n++] = *e;
	return 0;
}

int clog_note_end(struct clog *cl, struct clog_note *nt, struct ns *ns)
{
	if (!nt)
		return 0;
	struct wbuf w = {0};
	uint8_t hdr[HDR_LEN] = {0};
	put(&w, hdr, HDR_LEN);
	int err = encode(nt, ns, &w);
	if (!err && w.len - HDR_LEN > UINT32_MAX)
		err = -EFBIG;
	if (!err) {
		uint32_t magic = CLOG_MAGIC, blen = (uint32_t)(w.len - HDR_LEN);
		uint64_t sum = XXH64(w.p + HDR_LEN, blen, 0);
		memcpy(w.p, &magic, 4);
		memcpy(w.p + 4, &blen, 4);
		memcpy(w.p + 8, &sum, 8);
		pthread_mutex_lock(&cl->lock);
		struct cidx e = {nt->id, nt->time_ns, cl->size, (uint32_t)w.len};
		if (cl->n && cl->idx[cl->n - 1].id >= nt->id)
			err = 0; /* C1 */
		else if (!(err = idx_push(cl, &e)) && (err = pend_add(cl, w.p, w.len)))
			cl->n--; /* not logged: replay notes it again (C3) */
		else if (!err)
			cl->size += w.len;
		pthread_mutex_unlock(&cl->lock);
	}
	free(w.p);
	clog_note_drop(nt);
	return err;
}

/* ---- open, index, trim ------------------------------------------------------------ */
/* Index buf[0, len) into cl; returns the length of the valid prefix (C3). */
static uint64_t index_all(struct clog *cl, const uint8_t *buf, uint64_t len)
{
	uint64_t at = 0;
	while (at + HDR_LEN + 28 <= len) {
		uint32_t magic, blen;
		uint64_t sum, id, time_ns;
		memcpy(&magic, buf + at, 4);
		memcpy(&blen, buf + at + 4, 4);
		memcpy(&sum, buf + at + 8, 8);
		if (magic != CLOG_MAGIC || blen < 32 || at + HDR_LEN + blen > len ||
		    XXH64(buf + at + HDR_LEN, blen, 0) != sum)
			break;
		memcpy(&id, buf + at + HDR_LEN, 8);
		memcpy(&time_ns, buf + at + HDR_LEN + 8, 8);
		if (cl->n && cl->idx[cl->n - 1].id >= id)
			break; /* C1 */
		struct cidx e = {id, time_ns, at, HDR_LEN + blen};
		if (idx_push(cl, &e))
			break;
		at += HDR_LEN + blen;
	}
	return at;
}

int clog_open(const char *dir, struct clog **out)
{
	struct clog *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	pthread_mutex_init(&cl->lock, NULL);
	cl->fd = -1;
	int err = -ENOMEM;
	char *buf = NULL;
	if (!(cl->dir = strdup(dir)) || asprintf(&cl->path, "%s/" CLOG_FILE, dir) < 0) {
		cl->path = NULL;
		goto fail;
	}
	if ((err = cl->fd = txd_os->open(cl->path, O_RDWR | O_CREAT, 0600)) < 0)
		goto fail;
	if ((err = txd_os->fstat_size(cl->fd, &cl->size)))
		goto fail;
	err = -ENOMEM;
	if (!(buf = malloc(cl->size + 1)))
		goto fail;
	if (cl->size && (err = os_pread_full(cl->fd, buf, cl->size, 0)))
		goto fail;
	uint64_t valid = index_all(cl, (uint8_t *)buf, cl->size);
	if (valid != cl->size && (err = txd_os->ftruncate(cl->fd, (off_t)valid)))
		goto fail;
	cl->size = valid;
	free(buf);
	*out = cl;
	return 0;
fail:
	free(buf);
	clog_close(cl);
	return err;
}

void clog_close(struct clog *cl)
{
	if (!cl)
		return;
	if (cl->fd >= 0 && flush_locked(cl))
		syslog(LOG_WARNING, "txdir: commit log: last records not written (replay "
				    "notes them again)");
	if (cl->fd >= 0)
		txd_os->close(cl->fd);
	free(cl->pend);
	pthread_mutex_destroy(&cl->lock);
	free(cl->idx);
	free(cl->dir);
	free(cl->path);
	free(cl);
}

int clog_sync(struct clog *cl)
{
	pthread_mutex_lock(&cl->lock);
	int err = flush_locked(cl);
	if (!err)
		err = txd_os->fdatasync(cl->fd);
	pthread_mutex_unlock(&cl->lock);
	return err;
}

int clog_cut_after(struct clog *cl, uint64_t last)
{
	pthread_mutex_lock(&cl->lock);
	size_t k = cl->n;
	while (k && cl->idx[k - 1].id > last)
		k--;
	int err = flush_locked(cl), cut = k < cl->n;
	if (!err && cut && !(err = txd_os->ftruncate(cl->fd, (off_t)cl->idx[k].off)) &&
	    !(err = txd_os->fdatasync(cl->fd))) {
		cl->size = cl->idx[k].off;
		cl->n = k;
	}
	pthread_mutex_unlock(&cl->lock);
	return err ? err : cut;
}

/* first index entry no older than oldest_ns (lock held) */
static size_t first_kept(struct clog *cl, uint64_t oldest_ns)
{
	size_t k = 0;
	while (k < cl->n && cl->idx[k].time_ns < oldest_ns)
		k++;
	return k;
}

/* Copy [from, to) of fd to out at from - base. */
static int copy_range(int fd, int out, uint64_t from, uint64_t to, uint64_t base)
{
	enum { PIECE = 1 << 20 };
	char *buf = to > from ? malloc(to - from < PIECE ? to - from : PIECE) : NULL;
	int err = to > from && !buf ? -ENOMEM : 0;
	for (uint64_t at = from; !err && at < to;) {
		size_t n = to - at < PIECE ? (size_t)(to - at) : PIECE;
		if (!(err = os_pread_full(fd, buf, n, (off_t)at)))
			err = os_pwrite_full(out, buf, n, (off_t)(at - base));
		at += n;
	}
	free(buf);
	return err;
}

/* The kept tail is copied to log.tmp without the lock (commits only append
 * past what is copied); the lock is taken again to copy what was appended
 * meanwhile and to switch files. One trim at a time (the checkpoint's). */
int clog_trim(struct clog *cl, uint64_t oldest_ns)
{
	pthread_mutex_lock(&cl->lock);
	size_t k = first_kept(cl, oldest_ns);
	uint64_t from = k < cl->n ? cl->idx[k].off : cl->size, upto = cl->size;
	int err = k ? flush_locked(cl) : 0;
	pthread_mutex_unlock(&cl->lock);
	if (k == 0 || err)
		return err;
	char *tmp;
	if (asprintf(&tmp, "%s.tmp", cl->path) < 0)
		return -ENOMEM;
	int fd = txd_os->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
	err = fd < 0 ? fd : 0;
	/* durable before it replaces the log: the WAL behind a checkpoint can
	 * no longer rebuild it; what is appended meanwhile is after the
	 * checkpoint, and replay re-notes it if lost (C1, C3) */
	if (!err && !(err = copy_range(cl->fd, fd, from, upto, from)))
		err = txd_os->fdatasync(fd);
	if (err)
		goto out;
	pthread_mutex_lock(&cl->lock);
	if (!(err = flush_locked(cl)) && !(err = copy_range(cl->fd, fd, upto, cl->size, from)) &&
	    !(err = txd_os->rename(tmp, cl->path))) {
		txd_os->close(cl->fd);
		cl->fd = fd;
		fd = -1;
		memmove(cl->idx, cl->idx + k, (cl->n - k) * sizeof(*cl->idx));
		cl->n -= k;
		for (size_t j = 0; j < cl->n; j++)
			cl->idx[j].off -= from;
		cl->size -= from;
	}
	pthread_mutex_unlock(&cl->lock);
	if (!err)
		err = os_fsync_dir(cl->dir);
out:
	if (fd >= 0) {
		txd_os->close(fd);
		txd_os->unlink(tmp);
	}
	free(tmp);
	return err;
}

/* ---- reading ---------------------------------------------------------------------- */
static struct cidx *find(struct clog *cl, uint64_t id)
{
	size_t lo = 0, hi = cl->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cl->idx[mid].id == id)
			return &cl->idx[mid];
		if (cl->idx[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool clog_has(struct clog *cl, uint64_t id, uint64_t oldest_ns)
{
	pthread_mutex_lock(&cl->lock);
	struct cidx *e = find(cl, id);
	bool ok = e && e->time_ns >= oldest_ns;
	pthread_mutex_unlock(&cl->lock);
	return ok;
}

bool clog_nth_newest(struct clog *cl, uint64_t oldest_ns, uint64_t k, uint64_t *id)
{
	pthread_mutex_lock(&cl->lock);
	bool ok = k < cl->n && cl->idx[cl->n - 1 - k].time_ns >= oldest_ns;
	if (ok)
		*id = cl->idx[cl->n - 1 - k].id;
	pthread_mutex_unlock(&cl->lock);
	return ok;
}

static const char *kind_name(uint8_t k)
{
	switch (k) {
	case 'C': return "created";
	case 'M': return "modified";
	case 'D': return "removed";
	case 'R': return "renamed";
	case 'L': return "linked";
	default: return "changed";
	}
}

static bool get_str(const uint8_t *p, size_t len, size_t *at, char *out)
{
	uint16_t n;
	if (*at + 2 > len)
		return false;
	memcpy(&n, p + *at, 2);
	if (*at + 2 + n > len || n >= PATH_CAP)
		return false;
	memcpy(out, p + *at + 2, n);
	out[n] = 0;
	*at += 2 + (size_t)n;
	return true;
}

static cJSON *render_body(const uint8_t *b, size_t len, clog_path_ok_fn ok, void *arg)
{
	uint64_t id, time_ns, txn;
	uint32_t pid, n;
	memcpy(&id, b, 8);
	memcpy(&time_ns, b + 8, 8);
	memcpy(&txn, b + 16, 8);
	memcpy(&pid, b + 24, 4);
	memcpy(&n, b + 28, 4);
	char when[40], path[PATH_CAP], from[PATH_CAP], sum[40];
	ev_rfc3339(time_ns, when, sizeof(when));
	cJSON *o = cJSON_CreateObject();
	ev_add_u64(o, "id", id);
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddNumberToObject(o, "pid", pid);
	ev_add_u64(o, "txn", txn);
	cJSON *chg = cJSON_AddArrayToObject(o, "changes");
	size_t at = 32;
	for (uint32_t k = 0; k < n && chg; k++) {
		uint8_t kind;
		uint64_t s;
		if (at + 9 > len)
			break;
		kind = b[at];
		memcpy(&s, b + at + 1, 8);
		at += 9;
		if (!get_str(b, len, &at, path) || !get_str(b, len, &at, from))
			break;
		int level = !ok ? 2 : ok(arg, path, s);
		if (level && from[0] && ok && !ok(arg, from, 0))
			level = 0;
		bool show = level > 0;
		cJSON *c = cJSON_CreateObject();
		cJSON_AddStringToObject(c, "op", kind_name(kind));
		cJSON_AddStringToObject(c, "path", show ? path : "(hidden)");
		if (from[0])
			cJSON_AddStringToObject(c, "from", show ? from : "(hidden)");
		if (s && level == 2) {
			snprintf(sum, sizeof(sum), "xxh64:%016" PRIx64, s);
			cJSON_AddStringToObject(c, "checksum", sum);
		}
		cJSON_AddItemToArray(chg, c);
	}
	cJSON_AddNumberToObject(o, "changes_total", n);
	return o;
}

int clog_render(struct clog *cl, uint64_t id, uint64_t oldest_ns, clog_path_ok_fn ok, void *arg,
		char **out, size_t *len)
{
	pthread_mutex_lock(&cl->lock);
	struct cidx *e = find(cl, id);
	int err = -ENOENT;
	uint8_t *rec = NULL;
	uint32_t rlen = e ? e->len : 0;
	if (!e || e->time_ns < oldest_ns)
		goto unlock;
	err = -ENOMEM;
	if (!(rec = malloc(rlen)))
		goto unlock;
	if (!(err = flush_locked(cl))) /* the file holds what was noted */
		err = os_pread_full(cl->fd, rec, rlen, (off_t)e->off);
unlock:
	pthread_mutex_unlock(&cl->lock);
	if (err) {
		free(rec);
		return err;
	}
	cJSON *o = render_body(rec + HDR_LEN, rlen - HDR_LEN, ok, arg);
	free(rec);
	char *txt = o ? json_print(o, false) : NULL;
	cJSON_Delete(o);
	if (!txt)
		return -ENOMEM;
	size_t n = strlen(txt);
	char *grown = realloc(txt, n + 2);
	if (!grown) {
		free(txt);
		return -ENOMEM;
	}
	grown[n] = '\n';
	grown[n + 1] = 0;
	*out = grown;
	*len = n + 1;
	return 0;
}
