/*
 * txn.h — transactions for unmodified programs (SPEC §4).
 *
 * A transaction is a *view*: a private namespace (struct ns) that starts
 * empty and is filled lazily by copy-up (ns_import) from the main namespace
 * as of the transaction's snapshot S, the commit id at begin. S is
 * registered in the main namespace (ns_snapshot_take), so every version and
 * directory binding the view may still copy up is kept (ns.h N2, N5). The
 * view's own changes are encoded as commit ops (rec.h) exactly like
 * main-tree changes — the same code in fsops.c/fsfile.c builds them — but
 * are applied to the private namespace and appended to the transaction's
 * log instead of the WAL. Content written in the view goes to pack files
 * (never inline: the log is not in the WAL yet).
 *
 * Commit (txn_commit), under fs->lock:
 *   1. wait (bounded) until no handle in the view is open for writing —
 *      without holding a FUSE worker: txn_commit_async registers the wait
 *      and the last close (or the bound) completes it; on expiry EBUSY,
 *      the transaction stays active and last_error names the open file;
 *   2. validate the write set against the main tree (first committer wins):
 *      a directory entry (parent, name) the view created, removed or renamed
 *      conflicts if the main binding changed after S; an existing inode
 *      whose content, attributes or xattrs the view changed conflicts if its
 *      main head changed after S. A lost conflict aborts the transaction.
 *      Directory mtime/nlink are merged, never a conflict, so creating
 *      different names in one directory commits on both sides;
 *   2b. a path of the write set open for writing in the main tree: EBUSY,
 *      the transaction stays active (last_error) so it can be retried;
 *   3. make the packs durable, then append ONE WAL record holding the whole
 *      log (directory attributes recomputed as main head + the view's
 *      delta) — the commit point: all or nothing, also across a crash.
 *      A log of TXN_PREBUILD_OPS ops or more is copied into the record and
 *      its new inodes are staged (ns.h N8) with fs->lock dropped: the
 *      view's log is frozen meanwhile (t->committing: txn_apply waits, then
 *      fails ESTALE or EBUSY), and steps 1-2b run again under the lock if
 *      the main tree changed (its last lsn moved) — only then are the
 *      record finished, appended and applied, in one hold;
 *   4. publish: main nodes whose inode changed are frozen and their names
 *      invalidated before the record is applied, so the kernel never shows
 *      a mix (dtree.h F1);
 *   5. the caller (FUSE) waits until the record is durable before replying
 *      (txd_commit_needs_wait is true after a transaction commit).
 * A failed commit applies nothing. status is one line (SPEC §4): "active",
 * "prepared P" (dtc.h), "committed ID" or "aborted REASON key=value...
 * path=P" — REASON one word (conflict, request, rmdir, abandoned,
 * snapshot-too-old, restart, decision), the path (or another free
 * text: a decision's reason) last with '\n' and '\\' escaped: "aborted
 * conflict winner=12 path=/a b". last_error (info.json) has the same shape:
 * "busy reason=open-in-view path=/f", "busy reason=main-tree-writer
 * path=/f" or "busy reason=prepared path=/f" (dtc.h D2). Committing again
 * reports the outcome again: 0 once committed, EBUSY once aborted.
 *
 * Fenced commits (SPEC §4): "commit if-lease NAME TOKEN" commits only while
 * lease NAME is held (lease.h: HELD, visible) with fencing token TOKEN. The
 * lease is looked up (lease_get) at the commit point — in the same fs->lock
 * hold that appends the record, after the record is built, the packs synced
 * and every other check passed — so nothing can be refused after it. A
 * release racing the commit does not take fs->lock, so it may land in the
 * log just before the commit record; but every later fenced commit — a
 * successor's, whose token the grant after that release handed out — takes
 * fs->lock after this hold: fenced commits are applied in the order their
 * checks ran, and a commit whose check ran after the holder lost its lease
 * is refused. A refused fenced commit is final, as a PostgreSQL COMMIT that
 * fails rolls the transaction back: -ESTALE, nothing applied, status
 * "aborted conflict lease=NAME token=T held=U|none" (a conflict
 * with the lease's successor, SPEC §4's reason words; event txn_abort with
 * reason "conflict" and "fenced": true); committing again reports EBUSY
 * (T7). A malformed
 * command (name per SPEC §6, token a decimal > 0) is -EINVAL and changes
 * nothing. The fence is also checked first, before the conflict checks, so a
 * holder that lost its lease learns that (ESTALE) rather than a conflict with
 * its successor. Lock order: fs->lock → the lease service's lock (lease_get is a
 * read: it never logs, so it holds that lock only briefly — but it can wait
 * behind a grant that holds it across a RESERVE fsync, once per token
 * block; that is deadlock-free, since nothing holding the lease lock takes
 * fs->lock and the WAL's sync thread wakes synchronous waiters before it
 * runs callbacks that may take fs->lock).
 *
 * Prepared transactions (TXN_PREPARED, "prepare P as NAME"): dtc.h.
 *
 * Invariants.
 *  T1 A view sees exactly the main tree as of S plus its own changes.
 *  T2 Nothing of a transaction reaches the main tree except through one
 *     WAL record at commit.
 *  T3 A transaction's nodes become stale (ESTALE) once it has ended; its
 *     private namespace is freed when the last node or handle lets go.
 *  T4 Snapshot S is released when the transaction ends.
 *  T5 A transaction is abandoned when its creator and the creator's parent
 *     (a shell running `mkdir`) are both gone — processes are identified by
 *     (pid, start time) — and nothing is open in its view; it is aborted once
 *     abandoned for the grace period (-o txn_grace=, default 600 s) and
 *     logged.
 *  T6 A commit that fails only because a file is open for writing (in the
 *     view past the bound, or in the main tree on its write set) leaves the
 *     transaction active, with last_error naming the file, and so does one
 *     that touches a prepared transaction's write set (dtc.h D2); only a
 *     lost conflict or a refused fence (or abort, rmdir, the reaper, a
 *     restart) ends it.
 *  T7 Committing an ended transaction reports its outcome again: 0 once
 *     committed, EBUSY once aborted.
 *  T8 No thread waits for a view's writers on behalf of a deferred commit
 *     (txn_commit_async); it is answered exactly once, or withdrawn.
 *  T9 Every transaction of the retention period has a record in
 *     dtc/transactions, also across restarts; one the server did not finish
 *     is "aborted restart" unless the log holds its commit.
 *
 * Lock order: as core.h (wfile->lock → fs->lock). All txn_* functions below
 * are called with fs->lock held unless noted. A deferred commit's done
 * callback runs with no engine lock held (it may take the FUSE request's
 * lock); txn_cancel_wait runs inside FUSE's interrupt function, under the
 * request's lock, and takes fs->lock: request lock → fs->lock, never the
 * reverse.
 */
#ifndef TXD_TXN_H
#define TXD_TXN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ns.h"
#include "rec.h"

struct txd_fs;

#define TXN_LINE 8448 /* a status line: a 4 KiB path escaped, and details */

enum txn_state { TXN_ACTIVE, TXN_COMMITTED, TXN_ABORTED, TXN_PREPARED };

struct txn_key { /* a directory entry of the write set */
	uint64_t parent;
	char *name;
};

struct txn_wait; /* a deferred commit (txn_commit_async) */

struct txn_fence { /* "commit if-lease NAME TOKEN"; lease NULL: unfenced */
	const char *lease;
	uint64_t token;
};

struct txn {
	struct txn *next;      /* fs->txns */
	struct txn_wait *waits; /* deferred commits waiting for the view's writers */
	uint64_t id;
	char *name;
	uint64_t snap;         /* S */
	enum txn_state state;
	bool readonly, listed; /* listed: still in .txdir/txn (until rmdir) */
	bool committing;       /* its record is being built without fs->lock: the
				* view's log is frozen (txn_apply waits, txn.c) */
	char status[TXN_LINE];     /* one line, SPEC §4 */
	char last_error[TXN_LINE]; /* a failed commit that left it active ("" none) */
	uint64_t last_error_ns;
	struct ns ns;          /* the view */
	struct rec_buf log;    /* ops applied in the view, in order */
	struct txn_key *keys;  /* write set: entries */
	uint32_t nkeys, capkeys;
	uint64_t *inos;        /* write set: existing inodes changed */
	uint32_t ninos, capinos;
	uint64_t *dirs;        /* directories whose attributes the view changed */
	uint32_t ndirs, capdirs;
	uint64_t *created;     /* files (not directories) the view created */
	uint32_t ncreated, capcreated;
	struct txn_index { uint32_t *slot; uint32_t cap; } keyidx, inoidx, diridx, newidx;
	uint32_t refs;         /* nodes and handles of the view, + 1 while listed */
	uint32_t nwriters;     /* writable handles open in the view */
	pid_t creator;
	uint32_t uid, gid;     /* the creator's: owner of .txdir/txn/NAME */
	pid_t owner[2];        /* creator and its parent (the shell of a `mkdir`) */
	uint64_t owner_start[2]; /* their start times (a reused pid is not them) */
	uint32_t nopen;        /* open handles in the view */
	uint64_t idle_since_ns; /* owners gone and nothing open since then */
	uint64_t began_ns, ended_ns, commit_id;
	/* prepared (TXN_PREPARED, dtc.h) */
	char *proposal, *participant;
	uint8_t *prep;         /* its WAL_REC_PREPARE payload: resolve and checkpoints */
	uint32_t prep_len;
	uint64_t prep_lsn;
	uint64_t *pdirs, *prmdirs; /* directories it changes / removes (sorted) */
	uint32_t npdirs, nprmdirs;
	bool snap_released;    /* S released at prepare (or never taken: replayed) */
	bool in_doubt;         /* rebuilt from the log: no view, no creator */
	bool moves_dir;        /* prepared: it moves a directory (dtc.h D9) */
	bool pinned;           /* its proposal pinned against retention (dtc.h D7) */
};

/* Begin: snapshot, empty view with the root copied up. -EEXIST (name),
 * -EINVAL (bad name). */
int txn_begin(struct txd_fs *fs, const char *name, const struct txd_cred *c, struct txn **out);
struct txn *txn_find(struct txd_fs *fs, const char *name);
struct txn *txn_by_id(struct txd_fs *fs, uint64_t id);

/* The view's inode ino, copied up on first use; NULL if it does not exist
 * in the view. */
struct inode *txn_inode(struct txd_fs *fs, struct txn *t, uint64_t ino);

/* Apply ops built against the view (no inline data): to the private
 * namespace and the log. -EROFS once ended or read-only. */
int txn_apply(struct txd_fs *fs, struct txn *t, struct rec_buf *b);

/* Commit, waiting on this thread (bounded) for the view's writers. */
int txn_commit(struct txd_fs *fs, struct txn *t, pid_t pid);
/* Commit without blocking this thread: while the view has writable handles
 * open, registers done and returns -EINPROGRESS (holding a reference to t);
 * txn_run_waits completes it once they have closed, the transaction has
 * ended, or the bound (TXN_BUSY_WAIT_MS) has passed, calling done(arg, err)
 * without fs->lock: 0 = committed (in the log; the caller waits for
 * durability), else as txn_commit. Otherwise commits at once, as txn_commit
 * (done is not called). */
int txn_commit_async(struct txd_fs *fs, struct txn *t, pid_t pid,
		     void (*done)(void *arg, int err), void *arg);
/* txn_commit_async (done NULL: txn_commit) with a fence (may be NULL):
 * -ESTALE when the lease is not held with the token at the commit point
 * ("Fenced commits" above). */
/* Does t's view move a directory that existed at its snapshot? */
bool txn_moves_dir(struct txd_fs *fs, struct txn *t);
/* Tests only: commit without the directory-cycle check (fsck's tree check
 * needs a store that holds a cycle, as one written before it could). */
extern bool txn_test_skip_cycle_check;
int txn_commit_fenced(struct txd_fs *fs, struct txn *t, pid_t pid,
		      const struct txn_fence *fence, void (*done)(void *arg, int err), void *arg);
/* Withdraw the deferred commit (or prepare: dtc_cancel) registered with arg
 * (FUSE_INTERRUPT): 0 and done is never called, nothing applied; -ENOENT
 * when it is already completing (done will be called). Takes fs->lock. */
int txn_cancel_wait(struct txd_fs *fs, void *arg);
/* Housekeeping thread, fs->lock held (released while done callbacks run):
 * complete the deferred commits that are due. */
void txn_run_waits(struct txd_fs *fs);
/* A writable handle of t's view closed (fs->lock held): wakes commits
 * waiting for it. */
void txn_writer_closed(struct txd_fs *fs, struct txn *t);
void txn_abort(struct txd_fs *fs, struct txn *t, const char *reason);
/* rmdir: abort if active, unlist; freed when unreferenced. -EBUSY (and
 * nothing done) while prepared. */
int txn_remove(struct txd_fs *fs, struct txn *t);

void txn_get(struct txn *t);
void txn_put(struct txd_fs *fs, struct txn *t);
void txn_free_all(struct txd_fs *fs);
/* Housekeeping (background thread): abort transactions whose owners are
 * gone and that have nothing open, once idle for grace_s (SPEC §4). */
void txn_reap_abandoned(struct txd_fs *fs, uint32_t grace_s);
/* Delete derived records older than the retention (-o retain=). */
void txn_expire_records(struct txd_fs *fs, uint32_t retain_s);

/* Tests only: when set, called by a commit on its thread while the record
 * is built without fs->lock (txn.c prebuild), with no engine lock held. */
extern void (*txn_prebuild_hook)(struct txd_fs *fs, struct txn *t);

/* JSON for info.json and dtc/transactions/ID (malloc'd). */
char *txn_info_json(struct txd_fs *fs, const struct txn *t);

/* Records across restarts (SPEC §5): the derived records under
 * STORE/coordination/dtc/transactions/ID.json are written at begin (active)
 * and at the end. Start-up: txn_records_load before replay notes the
 * records not known finished, txn_replayed (for every replayed commit)
 * finds the ones whose commit is in the log, txn_records_settle after
 * replay rewrites the rest as "aborted restart". */
int txn_records_load(struct txd_fs *fs);
void txn_replayed(struct txd_fs *fs, uint64_t txn, uint64_t lsn);
void txn_records_settle(struct txd_fs *fs);
/* dtc/transactions/: the ids of in-memory transactions and of the records
 * kept for the retention (-o retain=), ascending (malloc'd); the JSON of
 * one (malloc'd, NULL if none). fs->lock held. */
int txn_record_ids(struct txd_fs *fs, uint64_t **ids, uint32_t *n);
char *txn_record_json(struct txd_fs *fs, uint64_t id);
/* Records of ended transactions are written without fsync (under fs->lock);
 * their ids collect in fs->rec_unsynced, and the checkpoint makes them
 * durable (txn_records_sync, no engine lock held) before it drops the WAL
 * segments a restart could settle them from (T9). */
int txn_records_sync(struct txd_fs *fs, const uint64_t *ids, uint32_t n);
bool txn_record_exists(struct txd_fs *fs, uint64_t id);

#endif
