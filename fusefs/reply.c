/*
 * reply.c — mapping engine results to FUSE replies, and replies that wait
 * for durability without blocking a worker.
 *
 * A deferred reply (struct pending) is owned by the engine's durability
 * callback, which frees it. When the request may be interrupted (fsync,
 * fsyncdir, flush), exactly one side replies: whoever flips `replied` first.
 *  - The interrupt function runs under the request's lock inside libfuse and
 *    must not reply there (replying may free the request under that lock),
 *    so when it wins it hands the EINTR reply to the notifier thread. It
 *    touches the pending struct only up to its atomic exchange.
 *  - The callback, when it wins, clears the interrupt function with
 *    fuse_req_interrupt_func(req, NULL, NULL): that takes the request's lock
 *    and so waits out an interrupt function still running. Win or lose, it
 *    then frees the pending struct.
 *
 * A write the engine defers (tx_write_deferrable: a transaction commit
 * waiting for its view's writers) is kept the same way, but the engine, not
 * this file, decides who answers: the interrupt function asks the engine to
 * withdraw the commit (txd_write_cancel) and answers EINTR only if it did;
 * otherwise the engine's completion answers. The completion first clears
 * the interrupt function (waiting out a running one), then either replies
 * the error or waits for durability like any commit; the success reply goes
 * through the notifier's queue, behind the invalidations the commit queued
 * (the engine flushes them before calling back), so a stat(2) after the
 * write returned never sees the old size through a stale dentry.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "txdirfs.h"


int tx_errno(long rc, const char *op)
{
	int err = (int)-rc;

	if (err > 0 && err < TXD_EBASE)
		return err;
	tx_log(LOG_ERR, "%s: %s", op, txd_strerror(err));
	return EIO;
}

void tx_attr_to_stat(const struct txd_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = 4096;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

void tx_entry_param(const struct txd_entry *e, struct fuse_entry_param *out)
{
	memset(out, 0, sizeof(*out));
	out->ino = e->node;
	out->generation = e->generation;
	tx_attr_to_stat(&e->attr, &out->attr);
	out->entry_timeout = e->cacheable || e->cache_entry ? TXDIRFS_ENTRY_TIMEOUT : 0;
	out->attr_timeout = e->cacheable ? TXDIRFS_ATTR_TIMEOUT : 0;
}

/* getattr/setattr replies: the attributes say whether they may be cached
 * (zero for the control tree). */
double tx_attr_timeout(const struct txd_attr *a)
{
	return a->cacheable ? TXDIRFS_ATTR_TIMEOUT : 0;
}

struct txd_cred tx_cred(fuse_req_t req, bool kill_suidgid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	return (struct txd_cred){
		.uid = ctx->uid,
		.gid = ctx->gid,
		.pid = ctx->pid,
		.umask = ctx->umask,
		.kill_suidgid = kill_suidgid,
	};
}

/* ---- deferred replies ---------------------------------------------------- */

enum reply_kind { R_ERR, R_ENTRY, R_CREATE, R_ATTR, R_WRITE };

struct pending {
	fuse_req_t req;
	atomic_bool replied;
	bool interruptible;
	bool ordered; /* R_WRITE through the notifier, after the invalidations */
	enum reply_kind kind;
	struct fuse_entry_param e;
	struct fuse_file_info fi;
	double attr_timeout;
	size_t count;
};

/* A reply the kernel refused (the request was aborted) returns what it
 * carried: the entry's lookup reference and a created file's handle. */
static void undo_handover(struct pending *p)
{
	if (p->kind == R_CREATE)
		txd_release(txdirfs.fs, p->fi.fh);
	if (p->kind == R_ENTRY || p->kind == R_CREATE)
		txd_forget(txdirfs.fs, p->e.ino, 1);
}

static void send_ok(struct pending *p)
{
	int rc = 0;

	switch (p->kind) {
	case R_ERR:
		fuse_reply_err(p->req, 0);
		break;
	case R_ENTRY:
		rc = fuse_reply_entry(p->req, &p->e);
		break;
	case R_CREATE:
		rc = fuse_reply_create(p->req, &p->e, &p->fi);
		break;
	case R_ATTR:
		fuse_reply_attr(p->req, &p->e.attr, p->attr_timeout);
		break;
	case R_WRITE:
		if (p->ordered) {
			struct tx_note *n = tx_note_write(p->req, p->count);

			if (n) {
				tx_note_post(n);
				break;
			}
		}
		fuse_reply_write(p->req, p->count);
		break;
	}
	if (rc < 0)
		undo_handover(p);
}

/* The commit happened but is not known durable: undo what the reply would
 * have handed to the kernel, then report the error. */
static void send_failed(struct pending *p, int err)
{
	undo_handover(p);
	fuse_reply_err(p->req, tx_errno(err, "durability wait"));
}

static void on_interrupt(fuse_req_t req, void *arg)
{
	struct pending *p = arg;
	struct tx_note *n = tx_note_eintr(req);

	if (!n)
		return; /* interrupts are advisory: the callback will reply */
	if (atomic_exchange(&p->replied, true)) {
		free(n);
		return;
	}
	/* p may be freed by the callback from here on. */
	tx_note_post(n);
}

static void on_durable(void *arg, int err)
{
	struct pending *p = arg;

	if (!atomic_exchange(&p->replied, true)) {
		if (p->interruptible)
			fuse_req_interrupt_func(p->req, NULL, NULL);
		if (err)
			send_failed(p, err < 0 ? err : -err);
		else
			send_ok(p);
	}
	free(p);
}

static void wait_then_reply(struct pending *p, uint64_t lsn)
{
	int rc;

	if (p->interruptible)
		fuse_req_interrupt_func(p->req, on_interrupt, p);
	rc = txd_durable_async(txdirfs.fs, lsn, on_durable, p);
	if (rc < 0)
		on_durable(p, rc); /* the engine did not take the callback */
}

static void reply_committed(fuse_req_t req, struct pending *tmpl)
{
	struct pending *p;

	tmpl->req = req;
	if (!txd_commit_needs_wait(txdirfs.fs)) {
		tmpl->ordered = false; /* nothing waited for: answer now */
		send_ok(tmpl);
		return;
	}
	p = malloc(sizeof(*p));
	if (!p) {
		/* Cannot wait without memory: the commit is in the log, so
		 * report it as done rather than undo it. */
		tx_log(LOG_ERR, "durability wait: out of memory");
		send_ok(tmpl);
		return;
	}
	*p = *tmpl;
	atomic_init(&p->replied, false);
	wait_then_reply(p, txd_current_lsn(txdirfs.fs));
}

void tx_reply_err_committed(fuse_req_t req)
{
	struct pending t = {.kind = R_ERR};

	reply_committed(req, &t);
}

void tx_reply_entry_committed(fuse_req_t req, const struct txd_entry *e)
{
	struct pending t = {.kind = R_ENTRY};

	tx_entry_param(e, &t.e);
	reply_committed(req, &t);
}

void tx_reply_create_committed(fuse_req_t req, const struct txd_entry *e, struct fuse_file_info *fi)
{
	struct pending t = {.kind = R_CREATE, .fi = *fi};

	tx_entry_param(e, &t.e);
	reply_committed(req, &t);
}

void tx_reply_attr_committed(fuse_req_t req, const struct txd_attr *a)
{
	struct pending t = {.kind = R_ATTR, .attr_timeout = tx_attr_timeout(a)};

	tx_attr_to_stat(a, &t.e.attr);
	reply_committed(req, &t);
}

void tx_reply_write_committed(fuse_req_t req, size_t count)
{
	/* a write that committed (a transaction's commit to its ctl) answers
	 * behind the invalidations it queued, as a deferred one does */
	struct pending t = {.kind = R_WRITE, .count = count, .ordered = true};

	reply_committed(req, &t);
}

void tx_reply_when_durable(fuse_req_t req, uint64_t lsn)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->kind = R_ERR;
	p->interruptible = true;
	atomic_init(&p->replied, false);
	wait_then_reply(p, lsn);
}

/* ---- deferred writes (a commit waiting for its view's writers) ------------ */

static void on_write_interrupt(fuse_req_t req, void *arg)
{
	struct tx_note *n = tx_note_eintr(req);

	if (!n)
		return; /* interrupts are advisory: the engine will answer */
	if (txd_write_cancel(txdirfs.fs, arg) != 0) {
		free(n); /* already completing: its callback answers */
		return;
	}
	free(arg); /* withdrawn: the engine never calls back */
	tx_note_post(n);
}

/* Engine thread, no engine lock held. */
static void on_write_done(void *arg, int err)
{
	struct pending *p = arg;

	fuse_req_interrupt_func(p->req, NULL, NULL);
	if (err) {
		fuse_reply_err(p->req, tx_errno(err, "commit"));
		free(p);
		return;
	}
	p->interruptible = false; /* committed: only durability is left */
	p->ordered = true; /* the kernel drops what the commit replaced first */
	atomic_store(&p->replied, false);
	wait_then_reply(p, txd_current_lsn(txdirfs.fs));
}

ssize_t tx_write_deferrable(fuse_req_t req, const struct txd_cred *c, uint64_t fh,
			    const char *buf, size_t size, uint64_t off)
{
	struct pending *p = calloc(1, sizeof(*p));
	ssize_t n;

	if (!p)
		return txd_write(txdirfs.fs, c, fh, buf, size, off);
	p->req = req;
	p->kind = R_WRITE;
	p->count = size;
	atomic_init(&p->replied, false);
	/* registered first: an interrupt that arrives before the engine has
	 * the commit finds nothing to withdraw and is ignored */
	fuse_req_interrupt_func(req, on_write_interrupt, p);
	n = txd_write_async(txdirfs.fs, c, fh, buf, size, off, on_write_done, p);
	if (n == -EINPROGRESS)
		return n; /* p belongs to the callbacks now */
	fuse_req_interrupt_func(req, NULL, NULL);
	free(p);
	return n;
}

/* ---- deferred flushes (a participants-mode state replace) ------------------
 * As deferred writes: the engine answers with the proposal's outcome; an
 * interrupt takes the wait back (the proposal goes on) and answers EINTR. */
static void on_flush_interrupt(fuse_req_t req, void *arg)
{
	struct tx_note *n = tx_note_eintr(req);

	if (!n)
		return;
	if (txd_flush_cancel(txdirfs.fs, arg) != 0) {
		free(n); /* already answering */
		return;
	}
	free(arg);
	tx_note_post(n);
}

/* Engine thread, no engine lock held. */
static void on_flush_done(void *arg, int err)
{
	struct pending *p = arg;

	fuse_req_interrupt_func(p->req, NULL, NULL);
	if (err) {
		fuse_reply_err(p->req, tx_errno(err, "flush"));
		free(p);
		return;
	}
	atomic_store(&p->replied, false);
	wait_then_reply(p, txd_current_lsn(txdirfs.fs));
}

void tx_flush_deferrable(fuse_req_t req, const struct txd_cred *c, uint64_t fh)
{
	struct pending *p = calloc(1, sizeof(*p));
	uint64_t lsn = 0;
	int rc;

	if (!p) {
		rc = txd_flush(txdirfs.fs, fh, c, &lsn);
	} else {
		p->req = req;
		p->kind = R_ERR;
		p->interruptible = true;
		atomic_init(&p->replied, false);
		fuse_req_interrupt_func(req, on_flush_interrupt, p);
		rc = txd_flush_async(txdirfs.fs, fh, c, &lsn, on_flush_done, p);
		if (rc == -EINPROGRESS)
			return; /* p belongs to the callbacks now */
		fuse_req_interrupt_func(req, NULL, NULL);
		free(p);
	}
	if (rc < 0)
		fuse_reply_err(req, tx_errno(rc, "flush"));
	else if (txd_commit_needs_wait(txdirfs.fs))
		tx_reply_when_durable(req, lsn);
	else
		fuse_reply_err(req, 0);
}

/* ---- deferred reads (a lease wait file: released, granted) ----------------
 * As deferred writes: the interrupt function asks the engine to withdraw the
 * wait (txd_read_cancel) and answers EINTR only if it did; otherwise the
 * engine's callback answers, by reading again (the wait is over). */
struct pending_read {
	fuse_req_t req;
	uint64_t fh, off;
	size_t size;
};

static void on_read_interrupt(fuse_req_t req, void *arg)
{
	struct tx_note *n = tx_note_eintr(req);

	if (!n)
		return; /* interrupts are advisory: the engine will answer */
	if (txd_read_cancel(txdirfs.fs, arg) != 0) {
		free(n); /* already completing: its callback answers */
		return;
	}
	free(arg); /* withdrawn: the engine never calls back */
	tx_note_post(n);
}

static void reply_read(fuse_req_t req, uint64_t fh, size_t size, uint64_t off)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n = buf ? txd_read(txdirfs.fs, fh, buf, size, off) : -ENOMEM;

	if (n < 0)
		fuse_reply_err(req, tx_errno(n, "read"));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* Engine thread, no engine lock held. */
static void on_read_done(void *arg, int err)
{
	struct pending_read *p = arg;

	fuse_req_interrupt_func(p->req, NULL, NULL);
	if (err)
		fuse_reply_err(p->req, tx_errno(err, "read"));
	else
		reply_read(p->req, p->fh, p->size, p->off);
	free(p);
}

void tx_read_deferrable(fuse_req_t req, uint64_t fh, size_t size, uint64_t off)
{
	struct pending_read *p = calloc(1, sizeof(*p));
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!p || !buf) {
		free(p);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*p = (struct pending_read){.req = req, .fh = fh, .off = off, .size = size};
	/* registered first: an interrupt before the engine has the wait finds
	 * nothing to withdraw and is ignored */
	fuse_req_interrupt_func(req, on_read_interrupt, p);
	n = txd_read_async(txdirfs.fs, fh, buf, size, off, on_read_done, p);
	if (n == -EINPROGRESS) {
		free(buf);
		return; /* p belongs to the callbacks now */
	}
	fuse_req_interrupt_func(req, NULL, NULL);
	free(p);
	if (n < 0)
		fuse_reply_err(req, tx_errno(n, "read"));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* ---- deferred lock requests (F_SETLKW, flock(2) without LOCK_NB) ----------
 * The interrupt function sets intr first, then asks the engine to withdraw
 * the request: an interrupt that arrives before the engine has queued it
 * (libfuse runs the function at registration if the interrupt came first)
 * makes txd_setlk answer -EINTR instead of queueing, so it is never lost.
 * The request keeps p until it is answered: withdrawn (the interrupt
 * function frees it and answers EINTR through the notifier), granted (the
 * callback), or answered at once (the worker). */
struct pending_lock {
	fuse_req_t req;
	_Atomic bool intr;
};

static void on_lock_interrupt(fuse_req_t req, void *arg)
{
	struct pending_lock *p = arg;
	struct tx_note *n;

	atomic_store(&p->intr, true);
	if (!(n = tx_note_eintr(req)))
		return;
	if (txd_lock_cancel(txdirfs.fs, p) != 0) {
		free(n); /* not queued yet (the worker answers EINTR) or granted */
		return;
	}
	free(p);
	tx_note_post(n);
}

/* Engine thread, no engine lock held: granted (0), or unmounting (-EIO). */
static void on_lock_done(void *arg, int err)
{
	struct pending_lock *p = arg;

	fuse_req_interrupt_func(p->req, NULL, NULL);
	fuse_reply_err(p->req, err < 0 ? tx_errno(err, "setlk") : 0);
	free(p);
}

void tx_lock_deferrable(fuse_req_t req, uint64_t fh, uint64_t owner, bool flock,
			const struct txd_lock *l, bool wait)
{
	struct pending_lock *p = wait ? calloc(1, sizeof(*p)) : NULL;
	int rc;

	if (!p) {
		rc = wait ? -ENOLCK : txd_setlk(txdirfs.fs, fh, owner, flock, l, false, NULL, NULL, NULL);
		fuse_reply_err(req, rc < 0 ? tx_errno(rc, "setlk") : 0);
		return;
	}
	p->req = req;
	atomic_init(&p->intr, false);
	fuse_req_interrupt_func(req, on_lock_interrupt, p);
	rc = txd_setlk(txdirfs.fs, fh, owner, flock, l, true, &p->intr, on_lock_done, p);
	if (rc == -EINPROGRESS)
		return; /* p belongs to the callbacks now */
	fuse_req_interrupt_func(req, NULL, NULL);
	free(p);
	fuse_reply_err(req, rc < 0 ? tx_errno(rc, "setlk") : 0);
}

/* poll(2) of a wait file: the engine keeps ph until the wait is over. */
static void on_poll_wake(void *arg)
{
	struct fuse_pollhandle *ph = arg;

	fuse_lowlevel_notify_poll(ph);
	fuse_pollhandle_destroy(ph);
}

void tx_poll(fuse_req_t req, uint64_t fh, struct fuse_pollhandle *ph)
{
	int r = txd_poll(txdirfs.fs, fh, ph ? on_poll_wake : NULL, ph);

	if (r < 0) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_err(req, tx_errno(r, "poll"));
		return;
	}
	if (r > 0 && ph)
		fuse_pollhandle_destroy(ph); /* ready: not kept */
	fuse_reply_poll(req, r > 0 ? POLLIN | POLLRDNORM : 0);
}
