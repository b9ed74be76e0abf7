/*
 * ops.c — the FUSE low-level handlers. Each one unpacks its arguments, makes
 * one engine call and replies with the mapped result; the semantics (commits,
 * snapshots, the control tree, conflicts) are the engine's (txdir.h).
 *
 * Replies after a commit go through tx_reply_*_committed (reply.c), which
 * waits for durability without blocking the worker when the durability mode
 * asks for it. FLUSH, FSYNC and FSYNCDIR reply from the durability callback.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "txdirfs.h"

#define FS (txdirfs.fs)

static void reply_rc(fuse_req_t req, long rc, const char *op)
{
	fuse_reply_err(req, rc < 0 ? tx_errno(rc, op) : 0);
}

/* A change that is one commit, replied with no data. */
static void reply_commit(fuse_req_t req, int rc, const char *op)
{
	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, op));
	else
		tx_reply_err_committed(req);
}

static void reply_new_entry(fuse_req_t req, int rc, const struct txd_entry *e, const char *op)
{
	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, op));
	else
		tx_reply_entry_committed(req, e);
}

static void set_open_info(struct fuse_file_info *fi, const struct txd_open_out *o)
{
	fi->fh = o->fh;
	fi->direct_io = o->direct_io;
	fi->keep_cache = o->keep_cache;
	fi->nonseekable = o->nonseekable;
}

/* ---- session --------------------------------------------------------------- */

static void want(struct fuse_conn_info *conn, unsigned int cap)
{
	if (conn->capable & cap)
		conn->want |= cap;
}

/* Kernel caches on for the data tree (SPEC §3 implementation rules): one
 * version per node id, so the page cache, cached size and symlink targets of
 * a node id never go stale; server-side changes arrive as new node ids. */
static void tx_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fuse_conn_info_opts *user_opts = userdata;

	want(conn, FUSE_CAP_WRITEBACK_CACHE);
	want(conn, FUSE_CAP_ASYNC_READ);
	want(conn, FUSE_CAP_READDIRPLUS);
	want(conn, FUSE_CAP_PARALLEL_DIROPS);
	want(conn, FUSE_CAP_CACHE_SYMLINKS);
	/* O_TRUNC reaches the engine inside OPEN, so the truncation joins the
	 * handle's content commit (`cmd > file` never commits an empty file). */
	want(conn, FUSE_CAP_ATOMIC_O_TRUNC);
	/* Advisory locks are the server's (filelock.h): one file shows under
	 * several node ids, and the kernel would keep locks per node id. */
	want(conn, FUSE_CAP_POSIX_LOCKS);
	want(conn, FUSE_CAP_FLOCK_LOCKS);
	/* A node id's bytes never change behind the kernel: no mtime-driven
	 * page cache drops. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_write = 1u << 20;
	conn->time_gran = 1;
	if (user_opts)
		fuse_apply_conn_info_opts(user_opts, conn);
}

/* The engine is closed by main() after the loop, once pending durability
 * replies are out; nothing to undo here. */
static void tx_destroy(void *userdata)
{
	(void)userdata;
}

/* ---- namespace ------------------------------------------------------------- */

static void tx_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct txd_entry e;
	struct fuse_entry_param p;
	int rc;

	rc = txd_lookup(FS, parent, name, &e);
	if (rc < 0) {
		fuse_reply_err(req, tx_errno(rc, "lookup"));
		return;
	}
	tx_entry_param(&e, &p);
	if (fuse_reply_entry(req, &p) < 0)
		txd_forget(FS, e.node, 1);
}

static void tx_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	txd_forget(FS, ino, nlookup);
	fuse_reply_none(req);
}

static void tx_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		txd_forget(FS, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void tx_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct txd_attr a;
	struct stat st;
	int rc;

	(void)fi;
	rc = txd_getattr(FS, ino, &a);
	if (rc < 0) {
		fuse_reply_err(req, tx_errno(rc, "getattr"));
		return;
	}
	tx_attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, tx_attr_timeout(&a));
}

static const struct {
	int fuse;
	uint32_t txd;
} setattr_bits[] = {
	{FUSE_SET_ATTR_MODE, TXD_SET_MODE},
	{FUSE_SET_ATTR_UID, TXD_SET_UID},
	{FUSE_SET_ATTR_GID, TXD_SET_GID},
	{FUSE_SET_ATTR_SIZE, TXD_SET_SIZE},
	{FUSE_SET_ATTR_ATIME, TXD_SET_ATIME},
	{FUSE_SET_ATTR_MTIME, TXD_SET_MTIME},
	{FUSE_SET_ATTR_ATIME_NOW, TXD_SET_ATIME_NOW},
	{FUSE_SET_ATTR_MTIME_NOW, TXD_SET_MTIME_NOW},
	{FUSE_SET_ATTR_CTIME, TXD_SET_CTIME},
};

static struct txd_setattr setattr_of(const struct stat *st, int to_set)
{
	struct txd_setattr sa = {
		.mode = st->st_mode,
		.uid = st->st_uid,
		.gid = st->st_gid,
		.size = (uint64_t)st->st_size,
		.atime = st->st_atim,
		.mtime = st->st_mtim,
		.ctime = st->st_ctim,
	};

	for (size_t i = 0; i < sizeof(setattr_bits) / sizeof(setattr_bits[0]); i++)
		if (to_set & setattr_bits[i].fuse)
			sa.valid |= setattr_bits[i].txd;
	return sa;
}

/* fi is set for ftruncate/futimens and O_TRUNC without atomic_o_trunc: the
 * change then joins that handle's working copy (txd_setattr). The kernel's
 * kill flag arrives as FUSE_SET_ATTR_KILL_SUID (libfuse keeps FATTR_KILL_SUIDGID,
 * bit 11, under that name); the request shapes that carry none (chown -1 -1,
 * file_remove_privs) are the engine's to read (txdir.h). */
static void tx_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct txd_cred c = tx_cred(req, to_set & FUSE_SET_ATTR_KILL_SUID);
	struct txd_setattr sa = setattr_of(attr, to_set);
	struct txd_attr a;
	int rc;

	rc = txd_setattr(FS, &c, ino, &sa, fi ? fi->fh : 0, &a);
	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, "setattr"));
	else
		tx_reply_attr_committed(req, &a);
}

static void tx_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n;

	n = txd_readlink(FS, ino, buf, sizeof(buf) - 1);
	if (n < 0) {
		fuse_reply_err(req, tx_errno(n, "readlink"));
		return;
	}
	if ((size_t)n >= sizeof(buf)) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void tx_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct txd_cred c = tx_cred(req, false);
	struct txd_entry e;

	reply_new_entry(req, txd_mknod(FS, &c, parent, name, mode, rdev, &e), &e, "mknod");
}

static void tx_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct txd_cred c = tx_cred(req, false);
	struct txd_entry e;

	reply_new_entry(req, txd_mkdir(FS, &c, parent, name, mode, &e), &e, "mkdir");
}

static void tx_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct txd_cred c = tx_cred(req, false);
	struct txd_entry e;

	reply_new_entry(req, txd_symlink(FS, &c, parent, name, target, &e), &e, "symlink");
}

static void tx_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct txd_cred c = tx_cred(req, false);
	struct txd_entry e;

	reply_new_entry(req, txd_link(FS, &c, ino, newparent, newname, &e), &e, "link");
}

static void tx_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct txd_cred c = tx_cred(req, false);

	reply_commit(req, txd_unlink(FS, &c, parent, name), "unlink");
}

static void tx_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct txd_cred c = tx_cred(req, false);

	reply_commit(req, txd_rmdir(FS, &c, parent, name), "rmdir");
}

static void tx_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct txd_cred c = tx_cred(req, false);

	reply_commit(req, txd_rename(FS, &c, parent, name, newparent, newname, flags), "rename");
}

/* ---- files ----------------------------------------------------------------- */

/* The context of a request whose file flags may carry the kernel's kill
 * flag (proto.c marks WRITE, OPEN, CREATE); the flag leaves fi->flags. */
static struct txd_cred file_cred(fuse_req_t req, struct fuse_file_info *fi)
{
	bool kill = fi->flags & TX_O_KILL_SUIDGID;

	fi->flags &= ~TX_O_KILL_SUIDGID;
	return tx_cred(req, kill);
}

/* -ESTALE passes through: the node id was replaced (snapshot readers keep the
 * old one), and the VFS looks the name up again. */
static void tx_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct txd_cred c = file_cred(req, fi);
	struct txd_open_out o = {0};
	int rc = txd_open(FS, &c, ino, fi->flags, &o);

	if (rc < 0) {
		fuse_reply_err(req, tx_errno(rc, "open"));
		return;
	}
	set_open_info(fi, &o);
	if (fuse_reply_open(req, fi) < 0)
		txd_release(FS, o.fh);
}

static void tx_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct txd_cred c = file_cred(req, fi);
	struct txd_open_out o = {0};
	struct txd_entry e;
	int rc = txd_create(FS, &c, parent, name, mode, fi->flags, &e, &o);

	if (rc < 0) {
		fuse_reply_err(req, tx_errno(rc, "create"));
		return;
	}
	set_open_info(fi, &o);
	tx_reply_create_committed(req, &e, fi);
}

static void tx_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char *buf;
	ssize_t n;

	if (txd_read_may_wait(FS, fi->fh)) { /* a lease wait: may be answered later */
		tx_read_deferrable(req, fi->fh, size, (uint64_t)off);
		return;
	}
	buf = malloc(size ? size : 1);
	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = txd_read(FS, fi->fh, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, tx_errno(n, "read"));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void tx_fs_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		       struct fuse_pollhandle *ph)
{
	(void)ino;
	tx_poll(req, fi->fh, ph);
}

/* A control-file write may be a commit (a vote, a lease TTL), hence the
 * committed reply; a transaction commit waiting for its view's writers is
 * answered later from reply.c (tx_write_deferrable). Page-cache writeback
 * (fi->writepage) only ever reaches data files (control files are
 * direct_io), whose writes change the working copy and commit nothing, so it
 * is answered at once. */
static void tx_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct txd_cred c = file_cred(req, fi);
	ssize_t n;

	(void)ino;
	if (fi->writepage)
		n = txd_write(FS, &c, fi->fh, buf, size, (uint64_t)off);
	else
		n = tx_write_deferrable(req, &c, fi->fh, buf, size, (uint64_t)off);
	if (n == -EINPROGRESS)
		return; /* reply.c answers */
	if (n < 0)
		fuse_reply_err(req, tx_errno(n, "write"));
	else if (fi->writepage)
		fuse_reply_write(req, (size_t)n);
	else
		tx_reply_write_committed(req, (size_t)n);
}

/* close(2): commit the handle's content; in durability=full reply once it
 * is durable (from the durability callback, not this worker). */
static void tx_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct txd_cred c = tx_cred(req, false);

	uint64_t lsn = 0;
	int rc;

	(void)ino;
	/* close(2) drops the caller's record locks on the file (POSIX) */
	txd_unlock_owner(FS, fi->fh, fi->lock_owner, false);
	if (txd_flush_may_wait(FS, fi->fh)) { /* a control file: may answer later */
		tx_flush_deferrable(req, &c, fi->fh);
		return;
	}
	rc = txd_flush(FS, fi->fh, &c, &lsn);
	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, "flush"));
	else if (txd_commit_needs_wait(FS))
		tx_reply_when_durable(req, lsn);
	else
		fuse_reply_err(req, 0);
}

static void tx_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (fi->flock_release) /* the open file description's flock(2) lock */
		txd_unlock_owner(FS, fi->fh, fi->lock_owner, true);
	txd_unlock_fh(FS, fi->fh); /* and its F_OFD_SETLK locks */
	reply_rc(req, txd_release(FS, fi->fh), "release");
}

/* ---- advisory locks (the engine's: filelock.h) ----------------------------- */

/* libfuse hands record locks over as struct flock with l_whence SEEK_SET
 * and l_len 0 for "to the end". */
static struct txd_lock lock_of(const struct flock *f)
{
	return (struct txd_lock){.type = f->l_type, .start = (uint64_t)f->l_start,
				 .end = f->l_len > 0 ? (uint64_t)(f->l_start + f->l_len - 1)
						     : TXD_LOCK_END,
				 .pid = (uint32_t)f->l_pid};
}

static void tx_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		     struct flock *lock)
{
	struct txd_lock l = lock_of(lock);
	int rc;

	(void)ino;
	rc = txd_getlk(FS, fi->fh, fi->lock_owner, &l);
	if (rc < 0) {
		fuse_reply_err(req, tx_errno(rc, "getlk"));
		return;
	}
	lock->l_type = l.type;
	lock->l_whence = SEEK_SET;
	lock->l_start = (off_t)l.start;
	lock->l_len = l.end >= (uint64_t)INT64_MAX ? 0 : (off_t)(l.end - l.start + 1);
	lock->l_pid = (pid_t)l.pid;
	fuse_reply_lock(req, lock);
}

static void tx_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		     struct flock *lock, int sleep)
{
	struct txd_lock l = lock_of(lock);

	(void)ino;
	tx_lock_deferrable(req, fi->fh, fi->lock_owner, false, &l, sleep != 0);
}

static void tx_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	struct txd_lock l = {.type = (op & LOCK_UN)   ? F_UNLCK
				    : (op & LOCK_EX) ? F_WRLCK
						     : F_RDLCK,
			     .end = TXD_LOCK_END, .pid = (uint32_t)fuse_req_ctx(req)->pid};

	(void)ino;
	tx_lock_deferrable(req, fi->fh, fi->lock_owner, true, &l, !(op & LOCK_NB));
}

static void fsync_handle(fuse_req_t req, uint64_t fh, const char *op)
{
	struct txd_cred c = tx_cred(req, false);
	uint64_t lsn = 0;
	int rc = txd_fsync_prepare(FS, fh, &c, &lsn);

	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, op));
	else
		tx_reply_when_durable(req, lsn);
}

static void tx_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync; /* a commit carries data and metadata together */
	fsync_handle(req, fi->fh, "fsync");
}

static void tx_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct txd_cred c = tx_cred(req, false);

	(void)ino;
	reply_rc(req, txd_fallocate(FS, &c, fi->fh, mode, (uint64_t)off, (uint64_t)len),
		 "fallocate");
}

/* ---- directories ----------------------------------------------------------- */

static void tx_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t dh;
	int rc;

	rc = txd_opendir(FS, ino, &dh);
	if (rc < 0) {
		fuse_reply_err(req, tx_errno(rc, "opendir"));
		return;
	}
	fi->fh = dh;
	if (fuse_reply_open(req, fi) < 0)
		txd_releasedir(FS, dh);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, pos;
	bool plus;
};

static bool is_dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static size_t add_plus(struct dirbuf *b, const char *name, const struct txd_entry *e,
		       uint64_t next_off)
{
	struct fuse_entry_param p;

	tx_entry_param(e, &p);
	if (is_dot_or_dotdot(name))
		p.ino = 0; /* no lookup reference was taken; the kernel links nothing */
	return fuse_add_direntry_plus(b->req, b->buf + b->pos, b->size - b->pos, name, &p,
				      (off_t)next_off);
}

static size_t add_plain(struct dirbuf *b, const char *name, const struct txd_entry *e,
			uint64_t next_off)
{
	struct stat st = {.st_ino = e->attr.ino, .st_mode = e->attr.mode};

	return fuse_add_direntry(b->req, b->buf + b->pos, b->size - b->pos, name, &st,
				 (off_t)next_off);
}

/* Non-zero: the buffer is full and this entry was not taken. */
static int dir_fill(void *arg, const char *name, const struct txd_entry *e, uint64_t next_off)
{
	struct dirbuf *b = arg;
	size_t n = b->plus ? add_plus(b, name, e, next_off) : add_plain(b, name, e, next_off);

	if (n > b->size - b->pos)
		return 1;
	b->pos += n;
	return 0;
}

static void readdir_common(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
			   bool plus)
{
	struct dirbuf b = {.req = req, .size = size, .plus = plus};
	int rc;

	b.buf = malloc(size ? size : 1);
	if (!b.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = txd_readdir(FS, fi->fh, (uint64_t)off, plus, dir_fill, &b);
	/* Entries already added carry lookup references: send them even if
	 * the engine failed part-way; the error will recur on the next call. */
	if (rc < 0 && b.pos == 0)
		fuse_reply_err(req, tx_errno(rc, "readdir"));
	else
		fuse_reply_buf(req, b.buf, b.pos);
	free(b.buf);
}

static void tx_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	readdir_common(req, size, off, fi, false);
}

static void tx_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)ino;
	readdir_common(req, size, off, fi, true);
}

static void tx_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	reply_rc(req, txd_releasedir(FS, fi->fh), "releasedir");
}

static void tx_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	fsync_handle(req, fi->fh, "fsyncdir");
}

static void tx_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc;

	(void)ino;
	rc = txd_statfs(FS, &sv);
	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, "statfs"));
	else
		fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes ------------------------------------------------- */

static void tx_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct txd_cred c = tx_cred(req, false);

	reply_commit(req, txd_setxattr(FS, &c, ino, name, value, size, flags), "setxattr");
}

/* size 0 asks for the length; otherwise the value (ERANGE if it is larger). */
static void reply_xattr_value(fuse_req_t req, size_t size, ssize_t n, const char *buf,
			      const char *op)
{
	if (n < 0)
		fuse_reply_err(req, tx_errno(n, op));
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void tx_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr_value(req, size, txd_getxattr(FS, ino, name, buf, size), buf, "getxattr");
	free(buf);
}

static void tx_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr_value(req, size, txd_listxattr(FS, ino, buf, size), buf, "listxattr");
	free(buf);
}

static void tx_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct txd_cred c = tx_cred(req, false);

	reply_commit(req, txd_removexattr(FS, &c, ino, name), "removexattr");
}

const struct fuse_lowlevel_ops txdirfs_ops = {
	.init = tx_init,
	.destroy = tx_destroy,
	.lookup = tx_lookup,
	.forget = tx_forget,
	.forget_multi = tx_forget_multi,
	.getattr = tx_getattr,
	.setattr = tx_setattr,
	.readlink = tx_readlink,
	.mknod = tx_mknod,
	.mkdir = tx_mkdir,
	.unlink = tx_unlink,
	.rmdir = tx_rmdir,
	.symlink = tx_symlink,
	.rename = tx_rename,
	.link = tx_link,
	.open = tx_open,
	.create = tx_create,
	.read = tx_read,
	.poll = tx_fs_poll,
	.write = tx_write,
	.flush = tx_flush,
	.release = tx_release,
	.fsync = tx_fsync,
	.fallocate = tx_fallocate,
	.getlk = tx_getlk,
	.setlk = tx_setlk,
	.flock = tx_flock,
	.opendir = tx_opendir,
	.readdir = tx_readdir,
	.readdirplus = tx_readdirplus,
	.releasedir = tx_releasedir,
	.fsyncdir = tx_fsyncdir,
	.statfs = tx_statfs,
	.setxattr = tx_setxattr,
	.getxattr = tx_getxattr,
	.listxattr = tx_listxattr,
	.removexattr = tx_removexattr,
};
