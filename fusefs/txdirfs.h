/*
 * txdirfs.h — internals of the FUSE server (fusefs/). Not a public header.
 *
 * Layering: fusefs/ includes only the engine's public header (txdir.h) and
 * libfuse's low-level API. It holds no policy: each handler unpacks the
 * request, makes one engine call and maps the result (SPEC §3, STYLE rule 4).
 *
 * Files:
 *   main.c    option parsing, daemon start-up, engine open, session loop
 *   ops.c     the FUSE handlers and the one ops table
 *   reply.c   result mapping and replies deferred to a durability wait
 *   notify.c  the notifier thread (engine → kernel invalidations)
 *   loop.c    the request loop: one spinning reader, followers on demand
 *   proto.c   kernel protocol libfuse 3.14 lacks (FUSE_HANDLE_KILLPRIV_V2)
 *
 * Threads: workers (loop.c) run the handlers and never wait for durability;
 * the engine's sync thread runs durability callbacks (reply.c), which reply
 * to the kept request; the notifier thread is the only caller of
 * fuse_lowlevel_notify_*, so no handler or engine callback ever re-enters the
 * kernel while the kernel waits on it.
 */
#ifndef TXDIRFS_H
#define TXDIRFS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/uio.h>
#include <stdbool.h>
#include <stdint.h>

#include "txdir.h"

/* Kernel cache timeouts (seconds) for cacheable entries (the data tree). The
 * engine never changes a node id's content behind the kernel, and publishes
 * server-side changes through notify_inval_*, so caching is safe. */
#define TXDIRFS_ENTRY_TIMEOUT 1.0
#define TXDIRFS_ATTR_TIMEOUT  1.0

struct txdirfs {
	struct txd_fs *fs;
	struct fuse_session *se;
};

/* The one server instance (the FUSE userdata points at it too). */
extern struct txdirfs txdirfs;

/* ---- logging (log.c in main.c): stderr in the foreground, syslog after
 * daemon start-up ---- */
void tx_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tx_log_to_syslog(void);

/* ---- reply.c ---- */
/* errno for an engine result < 0: errnos pass through; engine codes map to EIO
 * (logged with txd_strerror). */
int tx_errno(long rc, const char *op);
void tx_attr_to_stat(const struct txd_attr *a, struct stat *st);
void tx_entry_param(const struct txd_entry *e, struct fuse_entry_param *out);
double tx_attr_timeout(const struct txd_attr *a);
/* The request's context for the engine (txdir.h struct txd_cred): the
 * caller, and the kernel's kill-suid/sgid flag when the request carries
 * one (SETATTR: FUSE_SET_ATTR_KILL_SUID, which is the kernel's
 * FATTR_KILL_SUIDGID; WRITE, OPEN, CREATE: TX_O_KILL_SUIDGID in fi->flags). */
struct txd_cred tx_cred(fuse_req_t req, bool kill_suidgid);

/* Replies after a successful commit: immediately, or — when the durability
 * mode asks for it (txd_commit_needs_wait) — from the durability callback
 * once txd_current_lsn() is on stable storage. On a failed wait, an entry
 * reply drops the lookup reference it took and a create releases its handle. */
void tx_reply_err_committed(fuse_req_t req);
void tx_reply_entry_committed(fuse_req_t req, const struct txd_entry *e);
void tx_reply_create_committed(fuse_req_t req, const struct txd_entry *e,
			       struct fuse_file_info *fi);
void tx_reply_attr_committed(fuse_req_t req, const struct txd_attr *a);
void tx_reply_write_committed(fuse_req_t req, size_t count);
/* Replies 0 once lsn is durable, or EINTR if the caller is interrupted first
 * (FSYNC, FSYNCDIR, FLUSH: the request is kept, the worker returns). */
void tx_reply_when_durable(fuse_req_t req, uint64_t lsn);
/* txd_write that may be deferred by the engine (txd_write_async: a commit
 * waiting for its view's writers). -EINPROGRESS: the request is kept and
 * answered later — the count once committed and durable, the engine's
 * error, or EINTR on FUSE_INTERRUPT (the engine withdraws the commit);
 * anything else: the caller replies, as after txd_write. */
ssize_t tx_write_deferrable(fuse_req_t req, const struct txd_cred *c, uint64_t fh,
			    const char *buf, size_t size, uint64_t off);

/* FLUSH that may wait (txd_flush_async: a participants-mode state replace
 * waits for its decision): answered now, or later with the outcome, or
 * EINTR on FUSE_INTERRUPT (the wait is taken back, the proposal goes on). */
void tx_flush_deferrable(fuse_req_t req, const struct txd_cred *c, uint64_t fh);
/* A read that may wait (txd_read_async: a lease wait file): answered now,
 * or later by the engine's callback, or EINTR on FUSE_INTERRUPT. */
void tx_read_deferrable(fuse_req_t req, uint64_t fh, size_t size, uint64_t off);
/* A record lock or flock(2) request (txd_setlk): answered now, or, when it
 * waits, once granted; an interrupt withdraws it and answers EINTR. */
void tx_lock_deferrable(fuse_req_t req, uint64_t fh, uint64_t owner, bool flock,
			const struct txd_lock *l, bool wait);
/* FUSE POLL (txd_poll): ph is kept by the engine until the file is ready. */
void tx_poll(fuse_req_t req, uint64_t fh, struct fuse_pollhandle *ph);

/* ---- notify.c ---- */
int tx_notifier_start(struct txd_fs *fs);
/* Let the thread deliver queued notifications to se (after mount). */
void tx_notifier_attach(struct fuse_session *se);
void tx_notifier_stop(void);
/* A queued EINTR reply to req, sent by the notifier thread: interrupt
 * functions run under the request's lock and must not reply themselves.
 * tx_note_eintr allocates (NULL when out of memory; free() discards it),
 * tx_note_post hands it to the thread. */
struct tx_note;
struct tx_note *tx_note_eintr(fuse_req_t req);
/* A queued write reply (count), delivered after every note queued before it. */
struct tx_note *tx_note_write(fuse_req_t req, size_t count);
void tx_note_post(struct tx_note *n);

/* ---- main.c ---- */
/* INIT has been answered: the kernel has set the connection up. */
void tx_mount_ready(void);

/* ---- loop.c ---- */
/* Block the termination signals in the calling thread (and every thread it
 * creates after); the previous mask goes to *old. Call before any thread. */
void tx_loop_block_signals(sigset_t *old);
/* Serve se with up to max_threads workers until the session ends (unmount,
 * or a signal of sigs' complement arriving: sigs is the mask the supervisor
 * waits with). Returns 0 or the negative errno that ended it. */
int tx_loop_run(struct fuse_session *se, unsigned int max_threads, const sigset_t *sigs);
/* The engine is about to wait on this thread (txd_notify.will_block): gets
 * another thread reading the device if this one was processing its request
 * with nobody reading. */
void tx_loop_detach(void);

/* ---- proto.c ---- */
/* The kernel's "drop set-uid/set-gid" flag of WRITE (FUSE_WRITE_KILL_SUIDGID),
 * OPEN and CREATE (FUSE_OPEN_KILL_SUIDGID), which libfuse 3.14 does not pass
 * on: tx_proto_request sets this bit in the request's file flags, which
 * libfuse hands the handler as fi->flags (no open(2) flag uses it). The
 * handler passes it to the engine in its txd_cred and strips it from the
 * flags. */
#define TX_O_KILL_SUIDGID 0x40000000
/* Every request read from the device, before libfuse parses it (it may mark
 * the request's flags: TX_O_KILL_SUIDGID); every reply before it is written
 * (loop.c). */
void tx_proto_request(void *buf, size_t len);
bool tx_proto_reply(struct iovec *iov, int count); /* true: INIT's success */
/* txdir_fuse_requests_total{op="..."}: requests read per opcode, and
 * txdir_op_duration_seconds{op="..."}: a histogram of their times, as
 * Prometheus text for .txdir/stats (txd_notify.stats; returns the length it
 * needs, as snprintf). */
int tx_proto_stats(void *arg, char *buf, size_t cap);

/* ---- ops.c ---- */
extern const struct fuse_lowlevel_ops txdirfs_ops;

#endif
