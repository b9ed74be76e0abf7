/*
 * fsops.c — namespace operations of txdir.h: lookup, create, link, unlink,
 * rename, attributes, directories and xattrs. Each change is validated under
 * fs->lock, encoded as one commit and applied by fs_commit (core.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core.h"
#include "dtree.h"
#include "rec.h"
#include "os.h"
#include "txn.h"

#define XATTR_VALUE_MAX 65536
/* All user.* attributes of one file, encoded (6 bytes + name + value
 * each): they live in memory with the file's version and in every
 * checkpoint, so one file may not hold more than this (ENOSPC, as ext4
 * when an inode's attribute space is full). */
#define XATTR_FILE_MAX (256 * 1024)
#define XATTR_PREFIX "user."
#define TXD_XATTR_PREFIX "user.txdir."

/* ---- helpers ------------------------------------------------------------------ */
static int check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0)
		return -ENOENT;
	if (len > TXD_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '/'))
		return -EINVAL;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EEXIST;
	return 0;
}

bool fs_node_stale(const struct node *n)
{
	return n->txn && n->txn->state != TXN_ACTIVE;
}

/* The data directory behind node id (fs->lock held). */
static int dir_node(struct txd_fs *fs, uint64_t id, struct node **out)
{
	struct node *n = fs_node(fs, id);
	if (!n || fs_node_stale(n))
		return -ESTALE;
	if (n->ctl) /* the control tree has its own rules (vfs.c routes there) */
		return fs->upper_dir_err ? fs->upper_dir_err(n->ctl) : -EPERM;
	if (!n->in->dir)
		return -ENOTDIR;
	if (n->in->head->nlink == 0)
		return -ENOENT; /* removed directory */
	*out = n;
	return 0;
}

static struct inode *child(struct txd_fs *fs, struct txn *t, struct inode *dir, const char *name)
{
	struct dent *e = ns_dir_find(dir->dir, name, strlen(name));
	return e ? fs_view_inode(fs, t, e->ino) : NULL;
}

bool fs_view_root(const struct node *n)
{
	return n->id == TXD_ROOT_NODE || (n->txn && n->in && n->in->ino == NS_ROOT_INO);
}

/* Parent directory attributes after an entry change (N4: nlink delta). */
static void touch_dir(struct rec_buf *b, struct inode *dir, int nlink_delta, struct timespec now)
{
	struct rec_inode r;
	ns_inode_rec(dir, &r);
	r.nlink = (uint32_t)((int)r.nlink + nlink_delta);
	r.mtime = r.ctime = now;
	rec_inode(b, &r);
}

static void set_nlink(struct rec_buf *b, struct inode *in, int delta, struct timespec now)
{
	struct rec_inode r;
	ns_inode_rec(in, &r);
	r.nlink = (uint32_t)((int)r.nlink + delta);
	r.ctime = now;
	rec_inode(b, &r);
}

/* The engine itself (a NULL context): root, pid 0, no umask (txdir.h). */
static const struct txd_cred engine_cred;

static const struct txd_cred *ctx_of(const struct txd_cred *c)
{
	return c ? c : &engine_cred;
}

/* A commit made for caller c carries its pid. */
static void rec_begin(struct rec_buf *b, const struct txd_cred *c)
{
	rec_init(b, 0, fs_now_ns(), (uint32_t)ctx_of(c)->pid);
}

/* Commit b in view t and drop the lock. Durability waits are the caller's
 * (txdir.h: txd_commit_needs_wait), so no engine call blocks a FUSE worker. */
static int commit_unlock(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	int err = fs_view_commit(fs, t, b);
	pthread_mutex_unlock(&fs->lock);
	rec_release(b);
	fs_notify_flush(fs);
	return err;
}

/* ---- lookup / forget / getattr ----------------------------------------------- */
int fs_lookup(struct txd_fs *fs, struct node *p, const char *name, struct txd_entry *out)
{
	int err = dir_node(fs, p->id, &p);
	if (err)
		return err;
	if (strlen(name) > TXD_NAME_MAX)
		return -ENAMETOOLONG;
	struct inode *in = child(fs, p->txn, p->in, name);
	if (!in)
		return -ENOENT;
	struct node *n = fs_live_node(fs, p->txn, in);
	if (!n)
		return -ENOMEM;
	fs_entry(fs, n, out);
	return 0;
}

int fs_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *out)
{
	if (fs_node_stale(n))
		return -ESTALE;
	fs_attr(fs, n, out);
	return 0;
}

/* ---- creating ------------------------------------------------------------------- */
struct mk {
	mode_t mode;
	dev_t rdev;
	const char *target;
};

static int make_entry(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent,
		      const char *name, const struct mk *mk, struct txd_entry *out)
{
	c = ctx_of(c);
	int err = check_name(name);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	struct node *p;
	if ((err = dir_node(fs, parent, &p)))
		goto out_unlock;
	struct txn *t = p->txn;
	if (child(fs, t, p->in, name)) {
		err = -EEXIST;
		goto out_unlock;
	}
	struct timespec now = fs_now_ts();
	const struct iver *pv = p->in->head;
	bool isdir = S_ISDIR(mk->mode);
	struct rec_inode r = {
		.ino = ns_alloc_ino(&fs->ns),
		.mode = mk->mode,
		.uid = c->uid,
		.gid = (pv->mode & S_ISGID) ? pv->gid : c->gid,
		.nlink = isdir ? 2 : 1,
		.rdev = mk->rdev,
		.atime = now, .mtime = now, .ctime = now,
		.parent = isdir ? p->in->ino : 0,
		.target = mk->target,
		.target_len = mk->target ? (uint32_t)strlen(mk->target) : 0,
	};
	if (isdir && (pv->mode & S_ISGID))
		r.mode |= S_ISGID;
	struct rec_buf b;
	rec_begin(&b, c);
	rec_inode(&b, &r);
	rec_dent_set(&b, p->in->ino, name, r.ino, 0);
	touch_dir(&b, p->in, isdir ? 1 : 0, now);
	if ((err = fs_view_commit(fs, t, &b))) {
		rec_release(&b);
		goto out_unlock;
	}
	rec_release(&b);
	struct node *n = fs_live_node(fs, t, fs_view_inode(fs, t, r.ino));
	if (!n) {
		err = -ENOMEM;
		goto out_unlock;
	}
	fs_entry(fs, n, out);
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static mode_t apply_umask(const struct txd_cred *c, mode_t mode)
{
	return mode & ~(ctx_of(c)->umask & 0777);
}

int txd_mknod(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      mode_t mode, dev_t rdev, struct txd_entry *out)
{
	if (!S_ISREG(mode) && !S_ISCHR(mode) && !S_ISBLK(mode) && !S_ISFIFO(mode) &&
	    !S_ISSOCK(mode))
		return -EINVAL;
	struct mk mk = {.mode = (mode & S_IFMT) | apply_umask(c, mode & 07777), .rdev = rdev};
	return make_entry(fs, c, parent, name, &mk, out);
}

int fs_mkdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	     mode_t mode, struct txd_entry *out)
{
	struct mk mk = {.mode = S_IFDIR | apply_umask(c, mode & 07777)};
	return make_entry(fs, c, parent, name, &mk, out);
}

int txd_symlink(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
		const char *target, struct txd_entry *out)
{
	size_t len = strlen(target);
	if (len == 0)
		return -ENOENT;
	if (len >= 4096)
		return -ENAMETOOLONG;
	struct mk mk = {.mode = S_IFLNK | 0777, .target = target};
	return make_entry(fs, c, parent, name, &mk, out);
}

int fs_create_entry(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent,
		    const char *name, mode_t mode, struct txd_entry *out)
{
	struct mk mk = {.mode = S_IFREG | apply_umask(c, mode & 07777)};
	return make_entry(fs, c, parent, name, &mk, out);
}

int txd_link(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, uint64_t newparent,
	     const char *newname, struct txd_entry *out)
{
	int err = check_name(newname);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node), *p;
	if (!n) {
		err = -ESTALE;
		goto out_unlock;
	}
	if (n->ctl) {
		err = -EXDEV;
		goto out_unlock;
	}
	if ((err = dir_node(fs, newparent, &p))) {
		struct node *np = fs_node(fs, newparent);
		if (np && np->ctl && n->txn)
			err = -EXDEV; /* SPEC §4: a link between a view and anything else */
		goto out_unlock;
	}
	if (p->txn != n->txn || fs_node_stale(n)) {
		err = fs_node_stale(n) ? -ESTALE : -EXDEV; /* views never share entries */
		goto out_unlock;
	}
	struct inode *in = n->in;
	if (in->dir) {
		err = -EPERM;
		goto out_unlock;
	}
	if (in->head->nlink == 0) {
		err = -ENOENT;
		goto out_unlock;
	}
	if (in->head->nlink >= 65000) {
		err = -EMLINK;
		goto out_unlock;
	}
	if (child(fs, p->txn, p->in, newname)) {
		err = -EEXIST;
		goto out_unlock;
	}
	struct timespec now = fs_now_ts();
	struct rec_buf b;
	rec_begin(&b, c);
	set_nlink(&b, in, 1, now);
	rec_dent_set(&b, p->in->ino, newname, in->ino, 0);
	touch_dir(&b, p->in, 0, now);
	if (!(err = fs_view_commit(fs, p->txn, &b)))
		fs_entry(fs, fs_live_node(fs, p->txn, in) ? fs_live_node(fs, p->txn, in) : n, out);
	rec_release(&b);
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	return err;
}

/* ---- removing --------------------------------------------------------------- */
static int remove_entry(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent,
			const char *name, bool want_dir)
{
	if (strcmp(name, ".") == 0)
		return -EINVAL;
	if (strcmp(name, "..") == 0)
		return -ENOTEMPTY;
	pthread_mutex_lock(&fs->lock);
	struct node *p;
	int err;
	if ((err = dir_node(fs, parent, &p)))
		goto out_unlock;
	struct txn *t = p->txn;
	struct inode *in = child(fs, t, p->in, name);
	if (!in) {
		err = parent == TXD_ROOT_NODE && strcmp(name, CTL_DIRNAME) == 0 ? -EPERM : -ENOENT;
		goto out_unlock;
	}
	if (want_dir && !in->dir) {
		err = -ENOTDIR;
		goto out_unlock;
	}
	if (!want_dir && in->dir) {
		err = -EISDIR;
		goto out_unlock;
	}
	if (want_dir && in->dir->count) {
		err = -ENOTEMPTY;
		goto out_unlock;
	}
	struct timespec now = fs_now_ts();
	struct rec_buf b;
	rec_begin(&b, c);
	rec_dent_del(&b, p->in->ino, name);
	set_nlink(&b, in, want_dir ? -(int)in->head->nlink : -1, now);
	touch_dir(&b, p->in, want_dir ? -1 : 0, now);
	if (t)
		txn_get(t); /* keeps the view's namespace across the unlock */
	err = commit_unlock(fs, t, &b);
	pthread_mutex_lock(&fs->lock);
	if (!err && in->pins == 0 && in->head->nlink == 0)
		ns_inode_unlinked(fs_ns(fs, t), in); /* ns.h M1 */
	if (t)
		txn_put(fs, t);
	pthread_mutex_unlock(&fs->lock);
	return err;
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	return err;
}

int fs_unlink(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name)
{
	return remove_entry(fs, c, parent, name, false);
}

int fs_rmdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name)
{
	return remove_entry(fs, c, parent, name, true);
}

/* ---- rename ------------------------------------------------------------------ */
/* Is dir `a` equal to or below directory `b` in view t? (loop check) */
static bool is_below(struct txd_fs *fs, struct txn *t, struct inode *a, struct inode *b)
{
	for (int depth = 0; a && depth < 100000; depth++) {
		if (a == b)
			return true;
		if (a->ino == NS_ROOT_INO)
			return false;
		a = fs_view_inode(fs, t, a->parent);
	}
	return false;
}

struct rn {
	struct txn *t;
	struct inode *sp, *dp, *src, *dst;
	const char *sname, *dname;
	unsigned int flags;
};

static int rename_check(struct txd_fs *fs, const struct rn *r)
{
	if (r->flags & RENAME_EXCHANGE) {
		if (!r->dst)
			return -ENOENT;
		if (r->src->dir && is_below(fs, r->t, r->dp, r->src))
			return -EINVAL;
		if (r->dst->dir && is_below(fs, r->t, r->sp, r->dst))
			return -EINVAL;
		return 0;
	}
	if (r->dst && (r->flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (r->src->dir && is_below(fs, r->t, r->dp, r->src))
		return -EINVAL;
	if (!r->dst)
		return 0;
	if (r->src->dir && !r->dst->dir)
		return -ENOTDIR;
	if (!r->src->dir && r->dst->dir)
		return -EISDIR;
	if (r->dst->dir && r->dst->dir->count)
		return -ENOTEMPTY;
	return 0;
}

/* Encode a rename (plain or exchange) as one commit. */
static void rename_encode(struct rec_buf *b, const struct rn *r, struct timespec now)
{
	bool cross = r->sp != r->dp;
	int sp_delta = 0, dp_delta = 0;
	struct rec_inode ri;
	if (r->flags & RENAME_EXCHANGE) {
		rec_dent_set(b, r->sp->ino, r->sname, r->dst->ino, 0);
		rec_dent_set(b, r->dp->ino, r->dname, r->src->ino, 0);
		if (cross && r->src->dir) {
			sp_delta--;
			dp_delta++;
		}
		if (cross && r->dst->dir) {
			dp_delta--;
			sp_delta++;
		}
		ns_inode_rec(r->dst, &ri);
		ri.ctime = now;
		if (r->dst->dir)
			ri.parent = r->sp->ino;
		rec_inode(b, &ri);
	} else {
		rec_dent_del(b, r->sp->ino, r->sname);
		rec_dent_set(b, r->dp->ino, r->dname, r->src->ino, 0);
		if (r->src->dir && cross) {
			sp_delta--;
			dp_delta++;
		}
		if (r->dst) {
			set_nlink(b, r->dst, r->dst->dir ? -(int)r->dst->head->nlink : -1, now);
			if (r->dst->dir)
				dp_delta--;
		}
	}
	ns_inode_rec(r->src, &ri);
	ri.ctime = now;
	if (r->src->dir)
		ri.parent = r->dp->ino;
	rec_inode(b, &ri);
	touch_dir(b, r->sp, sp_delta + (cross ? 0 : dp_delta), now);
	if (cross)
		touch_dir(b, r->dp, dp_delta, now);
}

int fs_rename(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      uint64_t newparent, const char *newname, unsigned int flags)
{
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
		return -EINVAL;
	int err = check_name(newname);
	if (err)
		return err == -EEXIST ? -EBUSY : err;
	pthread_mutex_lock(&fs->lock);
	struct node *p, *np;
	if ((err = dir_node(fs, parent, &p)) || (err = dir_node(fs, newparent, &np))) {
		if (err == -EPERM)
			err = -EXDEV;
		goto out_unlock;
	}
	if (p->txn != np->txn) {
		err = -EXDEV; /* views never share entries */
		goto out_unlock;
	}
	struct rn r = {.t = p->txn, .sp = p->in, .dp = np->in, .sname = name, .dname = newname,
		       .flags = flags};
	r.src = child(fs, r.t, p->in, name);
	r.dst = child(fs, r.t, np->in, newname);
	if (!r.src) {
		err = -ENOENT;
		goto out_unlock;
	}
	if ((err = rename_check(fs, &r)))
		goto out_unlock;
	if (r.src == r.dst) {
		err = 0; /* POSIX: same file, nothing to do */
		goto out_unlock;
	}
	struct rec_buf b;
	rec_begin(&b, c);
	rename_encode(&b, &r, fs_now_ts());
	struct inode *gone = r.dst && !(flags & RENAME_EXCHANGE) ? r.dst : NULL;
	if (r.t)
		txn_get(r.t);
	/* pinned across the unlocked stretch: a transaction's end may drop
	 * unlinked inodes meanwhile (ns_drop_unlinked) */
	if (gone)
		gone->pins++;
	err = commit_unlock(fs, r.t, &b);
	pthread_mutex_lock(&fs->lock);
	if (gone)
		fs_inode_unpin(fs, r.t, gone); /* drops it if replaced and unused */
	if (r.t)
		txn_put(fs, r.t);
	pthread_mutex_unlock(&fs->lock);
	return err;
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	return err;
}

ssize_t fs_readlink(struct txd_fs *fs, uint64_t node, char *buf, size_t size)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	ssize_t ret = -ESTALE;
	if (n && !n->ctl) {
		const struct iver *v = n->frozen ? n->frozen : n->in->head;
		if (!S_ISLNK(v->mode) || !v->target) {
			ret = -EINVAL;
		} else {
			size_t len = strlen(v->target);
			memcpy(buf, v->target, len < size ? len : size);
			ret = (ssize_t)len;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/* ---- setattr -------------------------------------------------------------------- */
static mode_t killed_suidgid(mode_t mode)
{
	if (S_ISDIR(mode))
		return mode;
	return mode & ~(S_ISUID | ((mode & S_IXGRP) ? S_ISGID : 0));
}

static int setattr_meta(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
			const struct txd_setattr *sa)
{
	struct inode *in = n->in;
	struct rec_inode r;
	struct timespec now = fs_now_ts();
	ns_inode_rec(in, &r);
	if (sa->valid & TXD_SET_MODE)
		r.mode = (r.mode & S_IFMT) | (sa->mode & 07777);
	if (sa->valid & TXD_SET_UID)
		r.uid = sa->uid;
	if (sa->valid & TXD_SET_GID)
		r.gid = sa->gid;
	if ((sa->valid & (TXD_SET_UID | TXD_SET_GID | TXD_SET_KILL_SUIDGID)) &&
	    !(sa->valid & TXD_SET_MODE))
		r.mode = killed_suidgid(r.mode); /* as chown(2), write(2) */
	if (sa->valid & TXD_SET_ATIME)
		r.atime = sa->atime;
	if (sa->valid & TXD_SET_ATIME_NOW)
		r.atime = now;
	if (sa->valid & TXD_SET_MTIME)
		r.mtime = sa->mtime;
	if (sa->valid & TXD_SET_MTIME_NOW)
		r.mtime = now;
	r.ctime = (sa->valid & TXD_SET_CTIME) ? sa->ctime : now;
	struct rec_buf b;
	rec_begin(&b, c);
	rec_inode(&b, &r);
	int err = fs_view_commit(fs, n->txn, &b);
	rec_release(&b);
	return err;
}

/* With the writeback cache the kernel sends mtime (and ctime) alone, right
 * before or after the data: such a request joins the pending content commit
 * instead of committing by itself. */
static bool times_only(const struct txd_setattr *sa)
{
	return (sa->valid & TXD_SET_MTIME) &&
	       !(sa->valid & ~(TXD_SET_MTIME | TXD_SET_CTIME | TXD_SET_ATIME));
}

/* The working-copy part of a setattr, called without fs->lock (core.h lock
 * order: wfile->lock before fs->lock). A size change joins the working copy
 * (committed at its handle's flush) or, when the caller has no writable
 * handle (own), is a content commit of its own; *pending says the times
 * went into the working copy. */
static int setattr_wfile(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
			 struct wfile *wf, struct handle *h, const struct txd_setattr *sa,
			 const struct txd_setattr *rest, bool *pending)
{
	bool own = !(h && h->wf);
	int err = 0;
	pthread_mutex_lock(&wf->lock);
	if (sa->valid & TXD_SET_SIZE) {
		err = wcopy_truncate(wf->wc, sa->size);
		if (!err) {
			atomic_store(&wf->size, wcopy_size(wf->wc));
			if (own) {
				/* truncate(2) marks mtime and ctime, even to the
				 * same size (as ext4: the VFS asks for both) */
				atomic_store(&wf->written, true);
				atomic_store(&wf->mtime_ns, fs_ts_ns(fs_now_ts()));
				atomic_store(&wf->times_set, true);
			} else {
				fs_handle_wrote(fs, h); /* ftruncate counts as writing */
			}
		}
	}
	if (!err && times_only(rest) && wcopy_dirty(wf->wc)) {
		atomic_store(&wf->mtime_ns, fs_ts_ns(rest->mtime));
		atomic_store(&wf->times_set, true);
		*pending = true;
	}
	pthread_mutex_unlock(&wf->lock);
	if (!err && own && (sa->valid & TXD_SET_SIZE))
		err = fs_commit_content(fs, n->txn, n->in, wf, ctx_of(c)->pid, false, NULL);
	return err;
}

/* The set-id decision (txdir.h TXD_SET_KILL_SUIDGID, the request shapes
 * below it): the valid bits this request really asks for. */
static uint32_t setattr_valid(const struct txd_cred *c, const struct inode *in,
			      const struct txd_setattr *sa)
{
	uint32_t valid = sa->valid;
	if (c && c->kill_suidgid)
		return valid | TXD_SET_KILL_SUIDGID; /* the kernel's flag */
	if (valid == TXD_SET_CTIME || (valid == 0 && !S_ISREG(in->head->mode)))
		return TXD_SET_CHOWN_NOOP; /* chown(f, -1, -1) */
	if (valid == 0)
		return TXD_SET_KILL_SUIDGID; /* file_remove_privs */
	return valid;
}

/* A write, truncation or fallocate by caller c drops n's set-id bits
 * (kill: the kernel's flag, or the engine's rule for fallocate): one commit
 * of its own carrying c's pid, nothing when there is nothing to drop.
 * fs->lock held. */
int fs_kill_suidgid(struct txd_fs *fs, const struct txd_cred *c, struct node *n)
{
	if (n->ctl || !n->in || n->frozen)
		return 0;
	if (fs_node_stale(n))
		return -ESTALE;
	mode_t mode = n->in->head->mode;
	if (killed_suidgid(mode) == mode)
		return 0;
	static const struct txd_setattr kill = {.valid = TXD_SET_KILL_SUIDGID};
	return setattr_meta(fs, c, n, &kill);
}

int fs_setattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
	       const struct txd_setattr *req, uint64_t fh, struct txd_attr *out)
{
	struct handle *h = (struct handle *)(uintptr_t)fh;
	if (h && h->magic != HANDLE_MAGIC)
		h = NULL;
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	int err = -ESTALE;
	if (!n || fs_node_stale(n))
		goto out_unlock;
	err = -EPERM;
	if (n->ctl)
		goto out_unlock; /* the control tree has its own (vfs.c routes it there) */
	struct inode *in = n->in;
	struct txd_setattr shaped = *req, *sa = &shaped;
	shaped.valid = setattr_valid(c, in, req);
	struct txd_setattr rest = *sa;
	bool kills = killed_suidgid(in->head->mode) != in->head->mode;
	bool owns = !c || c->uid == 0 || c->uid == in->head->uid;
	err = -EPERM;
	if ((sa->valid & TXD_SET_CHOWN_NOOP) && kills && !owns)
		goto out_unlock;
	err = 0;
	if (sa->valid & TXD_SET_CHOWN_NOOP)
		rest.valid |= TXD_SET_KILL_SUIDGID;
	if (!kills)
		rest.valid &= ~TXD_SET_KILL_SUIDGID;
	rest.valid &= ~TXD_SET_SIZE;
	if (sa->valid & TXD_SET_SIZE) {
		err = in->dir		       ? -EISDIR
		      : !S_ISREG(in->head->mode) ? -EINVAL
		      : sa->size > FS_FILE_MAX   ? -EFBIG
						 : 0;
		if (err)
			goto out_unlock;
	}
	/* the working copy: the handle's, or a share of the file's (own) */
	bool own = !(h && h->wf);
	if ((sa->valid & TXD_SET_SIZE) && own && n->nsnap > 0) {
		/* truncate(2) by path of a file snapshot readers hold: as a
		 * writer's open (F1), freeze their node and answer ESTALE; the
		 * kernel looks the name up again (retry_estale) and truncates
		 * a fresh node id, so the readers keep their size and bytes */
		fs_freeze_node(fs, n);
		fs_writer_due(in, c ? c->pid : 0);
		err = -ESTALE;
		goto out_unlock;
	}
	if (sa->valid & TXD_SET_SIZE)
		fs_writer_came(in, c ? c->pid : 0); /* a truncate that froze the node (F1) */
	struct wfile *wf = own ? NULL : h->wf;
	if (own && ((sa->valid & TXD_SET_SIZE) || (in->wf && times_only(&rest)))) {
		if (!(wf = fs_wf_get(fs, in))) {
			err = -ENOMEM;
			goto out_unlock;
		}
	}
	bool pending = false;
	if (wf && ((sa->valid & TXD_SET_SIZE) || times_only(&rest))) {
		pthread_mutex_unlock(&fs->lock); /* n and in: the kernel holds a reference */
		err = setattr_wfile(fs, c, n, wf, own ? NULL : h, sa, &rest, &pending);
		pthread_mutex_lock(&fs->lock);
	}
	if (wf && own)
		fs_wf_put(fs, n->txn, in, wf);
	if (!err && rest.valid && !pending)
		err = fs_node_stale(n) ? -ESTALE : setattr_meta(fs, c, n, &rest);
	/* Times changed through an older node id (futimens on a descriptor
	 * opened before a writer moved the name on): the kernel keeps the
	 * live node id's mtime and size as its own (writeback cache) and
	 * would never show them, so that node id is retired as for any
	 * server-side change (F1), unless a writer has it open. */
	struct node *live = in->live;
	if (!err && n->frozen && live && live != n && !live->frozen &&
	    (rest.valid & (TXD_SET_MTIME | TXD_SET_MTIME_NOW | TXD_SET_ATIME | TXD_SET_ATIME_NOW)) &&
	    !(in->wf && ((struct wfile *)in->wf)->nwriters)) {
		live->retired = true;
		fs_freeze_node(fs, live);
	}
	if (!err && out)
		fs_attr(fs, n, out);
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	return err;
}

/* ---- directories ------------------------------------------------------------- */
/* Emit one entry; for readdirplus take a lookup reference and give it back
 * when the reply buffer is full. Returns non-zero to stop. */
static int emit(struct txd_fs *fs, struct node *n, const char *name, bool plus, bool counted,
		uint64_t next, txd_fill_fn fill, void *arg)
{
	struct txd_entry e;
	if (counted) {
		fs_entry(fs, n, &e);
	} else {
		memset(&e, 0, sizeof(e));
		e.node = n->id;
		e.cacheable = true;
		fs_attr(fs, n, &e.attr);
	}
	(void)plus;
	if (fill(arg, name, &e, next) == 0)
		return 0;
	if (counted) {
		n->nlookup--;
		fs_node_put(fs, n);
	}
	return 1;
}

int fs_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
	       void *arg)
{
	struct inode *dir = n->in;
	struct node *pn;
	if (off < 1 && emit(fs, n, ".", plus, false, 1, fill, arg))
		return 1;
	if (off < 2) {
		struct inode *pi = fs_view_inode(fs, n->txn, dir->parent);
		pn = pi ? fs_live_node(fs, n->txn, pi) : n;
		if (emit(fs, pn ? pn : n, "..", plus, false, 2, fill, arg))
			return 1;
	}
	for (struct dent *e = ns_dir_next(dir->dir, off < 2 ? 2 : off); e;
	     e = ns_dir_next(dir->dir, e->cookie)) {
		if (e->cookie >= CTL_COOKIE)
			break;
		struct inode *in = fs_view_inode(fs, n->txn, e->ino);
		struct node *cn = in ? fs_live_node(fs, n->txn, in) : NULL;
		if (!cn)
			continue;
		if (emit(fs, cn, e->name, plus, plus, e->cookie, fill, arg))
			return 1;
	}
	return 0;
}

/* ---- extended attributes -------------------------------------------------------- */
/* Read-only metadata xattrs (SPEC §3): formatted into buf; -ENODATA if name
 * is not one of them. */
static int meta_xattr(struct txd_fs *fs, struct node *n, const char *name, char *buf,
		      size_t cap)
{
	(void)fs;
	const struct iver *v = n->frozen ? n->frozen : n->in->head;
	if (strcmp(name, TXD_XATTR_PREFIX "version") == 0)
		return snprintf(buf, cap, "%" PRIu64, v->vno);
	if (strcmp(name, TXD_XATTR_PREFIX "commit") == 0)
		return snprintf(buf, cap, "%" PRIu64, v->commit);
	if (strcmp(name, TXD_XATTR_PREFIX "checksum") == 0) {
		if (!S_ISREG(v->mode))
			return -ENODATA;
		return snprintf(buf, cap, "xxh64:%016" PRIx64, digest_final(v->dsum, v->size));
	}
	return -ENODATA;
}

static ssize_t copy_out(void *buf, size_t size, const void *val, size_t len)
{
	if (size == 0)
		return (ssize_t)len;
	if (size < len)
		return -ERANGE;
	memcpy(buf, val, len);
	return (ssize_t)len;
}

ssize_t fs_getxattr(struct txd_fs *fs, uint64_t node, const char *name, void *buf, size_t size)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	ssize_t ret = -ESTALE;
	if (!n)
		goto out;
	ret = -ENODATA;
	if (n->ctl)
		goto out;
	char meta[64];
	int len = meta_xattr(fs, n, name, meta, sizeof(meta));
	if (len >= 0) {
		ret = copy_out(buf, size, meta, (size_t)len);
		goto out;
	}
	const struct iver *v = n->frozen ? n->frozen : n->in->head;
	uint32_t vlen;
	const uint8_t *val = xattrs_get(v->xa, name, &vlen);
	if (val)
		ret = copy_out(buf, size, val, vlen);
out:
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

ssize_t fs_listxattr(struct txd_fs *fs, uint64_t node, char *buf, size_t size)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	ssize_t ret = -ESTALE;
	if (!n)
		goto out;
	ret = 0;
	if (n->ctl)
		goto out;
	/* user.txdir.* are readable by name but never listed, so cp -a,
	 * rsync -X and tar --xattrs do not try to copy them. */
	const struct iver *v = n->frozen ? n->frozen : n->in->head;
	const struct xattrs *xa = v->xa;
	size_t need = 0;
	for (uint32_t p = 0; xa && p < xa->len;) {
		uint16_t nl;
		uint32_t vl;
		memcpy(&nl, xa->data + p, 2);
		memcpy(&vl, xa->data + p + 2, 4);
		if (size && need + nl + 1 > size) {
			ret = -ERANGE;
			goto out;
		}
		if (size) {
			memcpy(buf + need, xa->data + p + 6, nl);
			buf[need + nl] = 0;
		}
		need += nl + 1u;
		p += 6 + nl + vl;
	}
	ret = (ssize_t)need;
out:
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

static int xattr_check(struct node *n, const char *name)
{
	if (n->ctl)
		return -EPERM;
	if (fs_node_stale(n))
		return -ESTALE;
	if (strncmp(name, TXD_XATTR_PREFIX, strlen(TXD_XATTR_PREFIX)) == 0)
		return -EPERM;
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
		return -EOPNOTSUPP;
	if (strlen(name) > 255 || strlen(name) == strlen(XATTR_PREFIX))
		return strlen(name) > 255 ? -ERANGE : -EINVAL;
	const struct iver *v = n->in->head;
	if (!S_ISREG(v->mode) && !S_ISDIR(v->mode))
		return -EPERM; /* as ext4: user.* only on files and directories */
	return 0;
}

static int xattr_change(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
			const char *name, const void *value, size_t size, int flags, bool del)
{
	if (!del && size > XATTR_VALUE_MAX)
		return -E2BIG;
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	int err = -ESTALE;
	if (!n || (err = xattr_check(n, name)))
		goto out_unlock;
	uint32_t vlen;
	bool exists = xattrs_get(n->in->head->xa, name, &vlen) != NULL;
	if ((del || (flags & XATTR_REPLACE)) && !exists) {
		err = -ENODATA;
		goto out_unlock;
	}
	if ((flags & XATTR_CREATE) && exists) {
		err = -EEXIST;
		goto out_unlock;
	}
	const struct xattrs *xa = n->in->head->xa;
	uint64_t total = (xa ? xa->len : 0) - (exists ? 6 + strlen(name) + vlen : 0);
	if (!del && total + 6 + strlen(name) + size > XATTR_FILE_MAX) {
		err = -ENOSPC;
		goto out_unlock;
	}
	struct rec_buf b;
	struct rec_inode r;
	rec_begin(&b, c);
	if (del)
		rec_xattr_del(&b, n->in->ino, name);
	else
		rec_xattr_set(&b, n->in->ino, name, value, (uint32_t)size);
	ns_inode_rec(n->in, &r);
	r.ctime = fs_now_ts();
	rec_inode(&b, &r);
	return commit_unlock(fs, n->txn, &b);
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	return err;
}

int txd_setxattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, const char *name,
		 const void *value, size_t size, int flags)
{
	return xattr_change(fs, c, node, name, value, size, flags, false);
}

int txd_removexattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
		    const char *name)
{
	return xattr_change(fs, c, node, name, NULL, 0, 0, true);
}
