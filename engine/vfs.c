/*
 * vfs.c — the dispatch: the public txd_* calls that can reach a control
 * node. Each finds its node (or handle) and routes it to the data tree
 * (dtree.h: fsops.c, fsfile.c) or to the control tree (ctl.h), so the data
 * tree never calls the control tree (core.h: every arrow points down).
 *
 * Routing:
 *   lookup      a control node, or a view's root asked for ".txdir" → ctl
 *   getattr, setattr, readdir, open, read, write, release → by node kind
 *   mkdir, rmdir  a control parent → ctl (begin / remove a transaction)
 *   flush, fsync  a control handle → ctl (a state document acts)
 *   create      a control parent → ctl (a temp file of .txdir/state)
 *   rename      either parent a control node → ctl (temp files of
 *               .txdir/state; EXDEV between state/ and elsewhere,
 *               EPERM for every other control object: ctl_rename_err)
 *   getxattr, listxattr  a control node → ctl (user.txdir.version of
 *               the state document)
 *   opendir, releasedir, forget: handle and node bookkeeping for both
 *               kinds; a control node is put through ctl_node_put
 * Calls that only refuse control nodes (mknod, symlink, link, readlink,
 * setxattr, fallocate) stay in the data tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#include "ctl.h"
#include "dtree.h"
#include "filelock.h"
#include "txn.h"
#include "wal.h"

/* Drop a node reference the kernel or a handle held (fs->lock held). */
static void node_put(struct txd_fs *fs, struct node *n)
{
	if (n->ctl)
		ctl_node_put(fs, n);
	else
		fs_node_put(fs, n);
}

/* ---- namespace ------------------------------------------------------------ */
int txd_lookup(struct txd_fs *fs, uint64_t parent, const char *name, struct txd_entry *out)
{
	pthread_mutex_lock(&fs->lock);
	struct node *p = fs_node(fs, parent);
	int err = -ESTALE;
	if (p && (p->ctl || (fs_view_root(p) && strcmp(name, CTL_DIRNAME) == 0)))
		err = ctl_lookup(fs, p, name, out);
	else if (p)
		err = fs_lookup(fs, p, name, out);
	pthread_mutex_unlock(&fs->lock);
	return err;
}

void txd_forget(struct txd_fs *fs, uint64_t node, uint64_t nlookup)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	if (n) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		node_put(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

int txd_getattr(struct txd_fs *fs, uint64_t node, struct txd_attr *out)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	int err = -ESTALE;
	if (n && n->ctl)
		err = ctl_getattr(fs, n, out);
	else if (n)
		err = fs_getattr(fs, n, out);
	pthread_mutex_unlock(&fs->lock);
	return err;
}

/* The kind of node id (0: gone, 1: data, 2: control). A node id never
 * changes kind and is never reused, so the data tree, which looks it up
 * again, finds it gone (ESTALE) or the same. */
enum kind { GONE, DATA, CONTROL };

static enum kind kind_of(struct txd_fs *fs, uint64_t node)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	enum kind k = !n ? GONE : n->ctl ? CONTROL : DATA;
	pthread_mutex_unlock(&fs->lock);
	return k;
}

int txd_setattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
		const struct txd_setattr *sa, uint64_t fh, struct txd_attr *out)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	if (n && n->ctl) {
		int err = ctl_setattr(fs, c, n, sa, out);
		pthread_mutex_unlock(&fs->lock);
		return err;
	}
	pthread_mutex_unlock(&fs->lock);
	return fs_setattr(fs, c, node, sa, fh, out); /* gone meanwhile: ESTALE there */
}

int txd_mkdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      mode_t mode, struct txd_entry *out)
{
	pthread_mutex_lock(&fs->lock);
	struct node *p = fs_node(fs, parent);
	if (p && p->ctl) {
		int err = ctl_mkdir(fs, c, p, name, out);
		pthread_mutex_unlock(&fs->lock);
		fs_notify_flush(fs);
		return err;
	}
	pthread_mutex_unlock(&fs->lock);
	return fs_mkdir(fs, c, parent, name, mode, out);
}

int txd_rmdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name)
{
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return fs_rmdir(fs, c, parent, name); /* EINVAL, ENOTEMPTY: as any directory */
	pthread_mutex_lock(&fs->lock);
	struct node *p = fs_node(fs, parent);
	if (p && p->ctl) {
		int err = ctl_rmdir(fs, c, p, name);
		pthread_mutex_unlock(&fs->lock);
		fs_notify_flush(fs);
		return err;
	}
	pthread_mutex_unlock(&fs->lock);
	return fs_rmdir(fs, c, parent, name);
}

int txd_unlink(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	struct node *p = fs_node(fs, parent);
	if (p && p->ctl) {
		int err = ctl_unlink(fs, c, p, name);
		pthread_mutex_unlock(&fs->lock);
		fs_notify_flush(fs);
		return err;
	}
	pthread_mutex_unlock(&fs->lock);
	return fs_unlink(fs, c, parent, name);
}

ssize_t txd_readlink(struct txd_fs *fs, uint64_t node, char *buf, size_t size)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	if (n && n->ctl) {
		ssize_t ret = ctl_readlink(fs, n, buf, size);
		pthread_mutex_unlock(&fs->lock);
		return ret;
	}
	pthread_mutex_unlock(&fs->lock);
	return fs_readlink(fs, node, buf, size);
}

/* ---- directories ------------------------------------------------------------ */
int txd_opendir(struct txd_fs *fs, uint64_t node, uint64_t *dh)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	int err = -ESTALE;
	if (!n || fs_node_stale(n))
		goto out;
	err = -ENOTDIR;
	if (!n->ctl && !n->in->dir)
		goto out;
	struct handle *h = calloc(1, sizeof(*h));
	err = -ENOMEM;
	if (!h)
		goto out;
	h->magic = HANDLE_MAGIC;
	h->is_dir = true;
	h->node = n;
	h->in = n->in;
	n->nopen++;
	if (n->txn)
		n->txn->nopen++;
	fs_handle_opened(fs, h);
	*dh = (uint64_t)(uintptr_t)h;
	err = 0;
out:
	pthread_mutex_unlock(&fs->lock);
	return err;
}

/* The root's ".txdir" entry after its data entries (-o showctl). */
static void readdir_ctl_entry(struct txd_fs *fs, struct node *n, bool plus, txd_fill_fn fill,
			      void *arg)
{
	struct txd_entry e;
	if (ctl_lookup(fs, n, CTL_DIRNAME, &e) != 0)
		return;
	struct node *cn = fs_node(fs, e.node);
	if (fill(arg, CTL_DIRNAME, &e, CTL_COOKIE) != 0 || !plus) {
		cn->nlookup--;
		ctl_node_put(fs, cn);
	}
}

int txd_readdir(struct txd_fs *fs, uint64_t dh, uint64_t off, bool plus, txd_fill_fn fill,
		void *arg)
{
	struct handle *h = (struct handle *)(uintptr_t)dh;
	if (!h || h->magic != HANDLE_MAGIC || !h->is_dir)
		return -EBADF;
	pthread_mutex_lock(&fs->lock);
	struct node *n = h->node;
	int err = 0;
	if (fs_node_stale(n))
		err = -ESTALE;
	else if (n->ctl)
		err = ctl_readdir(fs, n, off, plus, fill, arg);
	else if (fs_readdir(fs, n, off, plus, fill, arg) == 0 && n->id == TXD_ROOT_NODE &&
		 fs->opts.show_ctl && off < CTL_COOKIE)
		readdir_ctl_entry(fs, n, plus, fill, arg);
	pthread_mutex_unlock(&fs->lock);
	return err;
}

int txd_releasedir(struct txd_fs *fs, uint64_t dh)
{
	struct handle *h = (struct handle *)(uintptr_t)dh;
	if (!h || h->magic != HANDLE_MAGIC || !h->is_dir)
		return -EBADF;
	pthread_mutex_lock(&fs->lock);
	h->node->nopen--;
	if (h->node->txn)
		h->node->txn->nopen--;
	fs_handle_closed(fs, h);
	node_put(fs, h->node);
	pthread_mutex_unlock(&fs->lock);
	h->magic = 0;
	free(h);
	return 0;
}

/* ---- files ---------------------------------------------------------------- */
/* A control file's handle: its content rendered for c at open (ctl.h). */
static int ctl_file_open(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, int flags,
			 struct txd_open_out *out)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->magic = HANDLE_MAGIC;
	h->flags = flags;
	h->pid = c ? c->pid : 0;
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	h->node = n;
	int err = n ? ctl_open(fs, c, n, flags, h, out) : -ESTALE;
	if (!err) {
		n->nopen++;
		fs_handle_opened(fs, h);
		out->fh = (uint64_t)(uintptr_t)h;
	}
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	if (err)
		free(h);
	return err;
}

int txd_create(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	       mode_t mode, int flags, struct txd_entry *entry, struct txd_open_out *out)
{
	if (kind_of(fs, parent) != CONTROL)
		return fs_create(fs, c, parent, name, mode, flags, entry, out);
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&fs->lock);
	struct node *p = fs_node(fs, parent);
	int err = p ? ctl_create(fs, c, p, name, mode, entry) : -ESTALE;
	pthread_mutex_unlock(&fs->lock);
	if (err)
		return err;
	err = ctl_file_open(fs, c, entry->node, flags & ~O_TRUNC, out);
	if (err) { /* give back the entry's lookup reference */
		pthread_mutex_lock(&fs->lock);
		struct node *n = fs_node(fs, entry->node);
		if (n && n->nlookup) {
			n->nlookup--;
			node_put(fs, n);
		}
		pthread_mutex_unlock(&fs->lock);
	}
	return err;
}

int txd_rename(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned int flags)
{
	if (kind_of(fs, parent) != CONTROL && kind_of(fs, newparent) != CONTROL) {
		/* the root's (or a view root's) ".txdir" is the control tree: a
		 * data directory renamed over it would hide it for good */
		pthread_mutex_lock(&fs->lock);
		struct node *np = fs_node(fs, newparent);
		bool ctl_name = np && (newparent == TXD_ROOT_NODE || fs_view_root(np)) &&
				strcmp(newname, CTL_DIRNAME) == 0;
		pthread_mutex_unlock(&fs->lock);
		if (ctl_name)
			return -EPERM;
		return fs_rename(fs, c, parent, name, newparent, newname, flags);
	}
	pthread_mutex_lock(&fs->lock);
	struct node *p = fs_node(fs, parent), *np = fs_node(fs, newparent);
	/* between the data tree (a view too) and the control tree: EXDEV only
	 * for .txdir/state (a document mv may copy); everything else EPERM,
	 * so mv never copies a lease, a proposal or a wait file (a copy's
	 * mkdir would grant a lease; reading a wait file blocks) */
	int err = !p || !np ? -ESTALE
		  : p->ctl && np->ctl ? ctl_rename(fs, c, p, name, np, newname, flags)
		  : ctl_rename_err(p->ctl ? p : np);
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	return err;
}

int txd_open(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, int flags,
	     struct txd_open_out *out)
{
	memset(out, 0, sizeof(*out));
	switch (kind_of(fs, node)) {
	case CONTROL:
		return ctl_file_open(fs, c, node, flags, out);
	case DATA:
		return fs_open(fs, c, node, flags, out);
	default:
		return -ESTALE;
	}
}

static bool is_ctl(const struct handle *h)
{
	return h->ctl || h->node->ctl;
}

ssize_t txd_read(struct txd_fs *fs, uint64_t fh, void *buf, size_t size, uint64_t off)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	return is_ctl(h) ? ctl_read(fs, h, buf, size, off) : fs_read(fs, h, buf, size, off);
}

ssize_t txd_read_async(struct txd_fs *fs, uint64_t fh, void *buf, size_t size, uint64_t off,
		       void (*done)(void *arg, int err), void *arg)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	return is_ctl(h) ? ctl_read_async(fs, h, buf, size, off, done, arg)
			 : fs_read(fs, h, buf, size, off);
}

bool txd_read_may_wait(struct txd_fs *fs, uint64_t fh)
{
	struct handle *h = fs_file_handle(fh);
	(void)fs;
	return h && h->ctl && ctl_may_wait(h);
}

int txd_read_cancel(struct txd_fs *fs, void *arg)
{
	return ctl_read_cancel(fs, arg);
}

int txd_poll(struct txd_fs *fs, uint64_t fh, void (*wake)(void *arg), void *arg)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	return is_ctl(h) ? ctl_poll(fs, h, wake, arg) : 1;
}

ssize_t txd_write(struct txd_fs *fs, const struct txd_cred *c, uint64_t fh, const void *buf,
		  size_t size, uint64_t off)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	return is_ctl(h) ? ctl_write(fs, c, h, buf, size, off) : fs_write(fs, c, h, buf, size, off);
}

ssize_t txd_write_async(struct txd_fs *fs, const struct txd_cred *c, uint64_t fh,
			const void *buf, size_t size, uint64_t off,
			void (*done)(void *arg, int err), void *arg)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	if (is_ctl(h))
		return ctl_write_async(fs, c, h, buf, size, off, done, arg);
	return fs_write(fs, c, h, buf, size, off);
}

int txd_write_cancel(struct txd_fs *fs, void *arg)
{
	return txn_cancel_wait(fs, arg);
}

/* A control handle's FLUSH / fsync: ctl_flush, then every earlier commit's
 * LSN (the caller waits for it as for a data file's). */
static int ctl_handle_flush(struct txd_fs *fs, struct handle *h, const struct txd_cred *c,
			    uint64_t *lsn_out)
{
	int err = ctl_flush(fs, c, h);
	if (lsn_out)
		*lsn_out = wal_last_lsn(fs->wal);
	return err;
}

int txd_flush_async(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c, uint64_t *lsn_out,
		    void (*done)(void *arg, int err), void *arg)
{
	struct handle *h = fs_file_handle(fh);
	if (!h || !is_ctl(h))
		return fs_flush(fs, fh, c, lsn_out);
	int err = ctl_flush_async(fs, c, h, done, arg);
	if (lsn_out)
		*lsn_out = wal_last_lsn(fs->wal);
	return err;
}

bool txd_flush_may_wait(struct txd_fs *fs, uint64_t fh)
{
	(void)fs;
	struct handle *h = fs_file_handle(fh);
	return h && is_ctl(h);
}

int txd_flush_cancel(struct txd_fs *fs, void *arg)
{
	return ctl_flush_cancel(fs, arg);
}

int txd_flush(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c, uint64_t *lsn_out)
{
	struct handle *h = fs_file_handle(fh);
	if (h && is_ctl(h))
		return ctl_handle_flush(fs, h, c, lsn_out);
	return fs_flush(fs, fh, c, lsn_out);
}

int txd_fsync_prepare(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c,
		      uint64_t *lsn_out)
{
	struct handle *h = fs_file_handle(fh);
	if (h && is_ctl(h))
		return ctl_handle_flush(fs, h, c, lsn_out);
	return fs_fsync_prepare(fs, fh, c, lsn_out);
}

ssize_t txd_getxattr(struct txd_fs *fs, uint64_t node, const char *name, void *buf, size_t size)
{
	if (kind_of(fs, node) != CONTROL)
		return fs_getxattr(fs, node, name, buf, size);
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	ssize_t ret = n ? ctl_getxattr(fs, n, name, buf, size) : -ESTALE;
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

ssize_t txd_listxattr(struct txd_fs *fs, uint64_t node, char *buf, size_t size)
{
	if (kind_of(fs, node) != CONTROL)
		return fs_listxattr(fs, node, buf, size);
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	ssize_t ret = n ? ctl_listxattr(fs, n, buf, size) : -ESTALE;
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

int txd_release(struct txd_fs *fs, uint64_t fh)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	if (!is_ctl(h))
		return fs_release(fs, h);
	ctl_release(fs, h);
	pthread_mutex_lock(&fs->lock);
	struct node *n = h->node;
	n->nopen--;
	fs_handle_closed(fs, h);
	ctl_node_put(fs, n);
	pthread_mutex_unlock(&fs->lock);
	h->magic = 0;
	free(h);
	return 0;
}

/* ---- advisory locks (filelock.h) -------------------------------------------
 * A lock belongs to the file, whatever node id it comes through: a data
 * file is its inode number (hard links share it, as on ext4; so do a
 * file's copies in transaction views, which keep its number: `flock
 * /path/lock job` excludes a job run under `mountctl run` too, and views'
 * new files get numbers of their own), a control file its node id. The key
 * is found under fs->lock; filelock's own lock is taken after (core.h 9). */
static int lock_key(struct txd_fs *fs, uint64_t fh, struct fl_key *k)
{
	pthread_mutex_lock(&fs->lock);
	struct handle *h = fs_file_handle(fh);
	int err = h ? 0 : -EBADF;
	if (h && is_ctl(h))
		*k = (struct fl_key){.view = FL_VIEW_CTL, .ino = h->node->id};
	else if (h)
		*k = (struct fl_key){.view = 0, .ino = h->in->ino};
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static struct fl_req lock_req(bool flock, uint64_t owner, const struct txd_lock *l, uint64_t fh)
{
	return (struct fl_req){.kind = flock ? FL_FLOCK : FL_POSIX, .type = l->type,
			       .start = flock ? 0 : l->start, .end = flock ? FL_END : l->end,
			       .owner = owner, .pid = l->pid, .fh = fh};
}

int txd_getlk(struct txd_fs *fs, uint64_t fh, uint64_t owner, struct txd_lock *l)
{
	struct fl_key k;
	int err = lock_key(fs, fh, &k);
	if (err)
		return err;
	struct fl_req r = lock_req(false, owner, l, fh);
	fl_test(fs->locks, &k, &r);
	*l = (struct txd_lock){.type = r.type, .start = r.start, .end = r.end, .pid = r.pid};
	return 0;
}

int txd_setlk(struct txd_fs *fs, uint64_t fh, uint64_t owner, bool flock,
	      const struct txd_lock *l, bool wait, const _Atomic bool *intr,
	      void (*done)(void *arg, int err), void *arg)
{
	struct fl_key k;
	int err = lock_key(fs, fh, &k);
	if (err)
		return err;
	struct fl_req r = lock_req(flock, owner, l, fh);
	return fl_set(fs->locks, &k, &r, wait, intr, done, arg);
}

int txd_lock_cancel(struct txd_fs *fs, void *arg)
{
	return fl_cancel(fs->locks, arg);
}

void txd_unlock_owner(struct txd_fs *fs, uint64_t fh, uint64_t owner, bool flock)
{
	struct fl_key k;
	if (fl_any(fs->locks) && !lock_key(fs, fh, &k))
		fl_release_owner(fs->locks, &k, flock ? FL_FLOCK : FL_POSIX, owner);
}

void txd_unlock_fh(struct txd_fs *fs, uint64_t fh)
{
	struct fl_key k;
	if (fl_any(fs->locks) && !lock_key(fs, fh, &k))
		fl_release_fh(fs->locks, &k, fh);
}
