/*
 * core.h — struct txd_fs, the commit pipeline and the lock order of the
 * whole engine (written here once). Internal to the engine.
 *
 * Modules above the storage layers (wal, chunk, ns, rec, store) and what
 * they may call — every arrow points down:
 *   vfs.c          the public txd_* calls that can reach a control node:
 *                  routes a node to the data tree or to the control tree
 *   ctl.c (ctl.h)  the .txdir control tree: an adapter over txn, events,
 *                  clog (and the data tree, for a view's root)
 *   fsops.c, fsfile.c, fs.c (dtree.h)  the data tree; never the control tree
 *   txn.c (txn.h), ckpt.c (ckpt.h), events, clog
 *   fs.c (this header)  opening and recovery, the commit pipeline, notices
 *
 * Commit pipeline (the durability order, STYLE rule 7):
 *   1. validate under fs->lock; encode the commit (rec.h) — a large
 *      transaction's record is built and its new inodes staged without
 *      fs->lock, then checked again under it (txn.h step 3, ns.h N8)
 *   2. chunks too large to inline go to a pack; chunkstore_sync() makes them
 *      durable *before* the WAL record that names them is appended
 *      (skipped in durability=none)
 *   3. wal_append: the commit point; the record reaches the kernel before the
 *      call returns (W6), so a crash of txdirfs never loses it
 *   4. ns_apply of the same bytes: memory = log
 *   5. durability: full → the caller waits for wal_sync(lsn);
 *      fsync/fdatasync/txn commit → the caller waits for wal_sync(lsn), which
 *      also covers every earlier commit; others are synced by the WAL thread
 *      within commit_interval; none → never.
 *   A failure in 2 or 3 makes the store failed (sticky -EIO for changes),
 *   except a full disk (ENOSPC, EDQUOT): it fails that commit only, with
 *   nothing of it in the log (wal.h W8), and makes the store "disk full"
 *   (space.h), not failed; a record that frees space may use the reserve.
 *
 * Invariant.
 *  F2 Memory equals checkpoint + replayed log after every commit (4).
 *
 * Locks (every lock of the engine), outermost first. A thread holding one
 * may take only locks listed below it, never one above:
 *   1. wfile->lock       a working copy's content, its pending times and its
 *                        written/truncation flags (fsfile.c, fsops.c setattr)
 *   2. fs->lock          everything else of struct txd_fs: nodes, namespace,
 *                        handles' links, transactions, control tree, events
 *                        (cond vars txn_cv, ckpt_cv wait on it)
 *   2b. service locks    the coordination services' own locks (svc.h):
 *                        state or vote, then lease (only lease_get, to
 *                        check a fence: state.h S11, vote.h V14; the lease
 *                        service never takes another service's lock), never
 *                        state and vote at once; then svc's leaves (its queue, up_lock, the cleanup
 *                        queue, the listeners' wait lists). Taken under 2
 *                        only to read (lease_get for a fenced commit, txn.h;
 *                        vote_outcome); a call that logs and waits for a
 *                        sync is made without 2, and nothing holding a
 *                        service lock takes 1 or 2 (listeners and events run
 *                        with no service lock held)
 *   3. chunkstore wlock  pack append state (chunk.c), then its cache_lock
 *                        (rwlock, fd cache); taken under 1 or 2 or alone
 *   4. wal->lock         the log's append and sync state (wal.c); its
 *                        completion callbacks run with no WAL lock held
 *   5. evlog, clog locks the event and commit logs' own mutexes
 *                        (events.h, clog.h): leaves, taken under 2 or alone
 *   6. space->lock       the reserve (space.h): a leaf, taken under 1, 2
 *                        or alone (never while holding 3 or 4); its
 *                        file's I/O runs under it: space_tick holds
 *                        nothing else, space_release (only on a full
 *                        disk) runs under 2 like the WAL append it
 *                        makes room for
 *   7. chunk usage lock  the live-byte table (chunk.c, gc.h G1): a leaf,
 *                        taken under any of the above or alone
 *   8. fs->tgid_lock     fs_process_of's thread -> process cache: a leaf,
 *                        taken under 2 or alone, nothing taken under it
 *   9. fl->lock          the advisory file locks (filelock.h): a leaf,
 *                        taken alone (vfs.c finds the file's key under
 *                        fs->lock, drops it, then locks); a granted
 *                        request's callback runs with no lock held
 * So: never take a wfile lock while holding fs->lock. A path that has
 * fs->lock and needs a wfile (setattr, open after a pending truncation)
 * takes a share of it (fs_wf_get: nhandles keeps it alive), drops fs->lock,
 * locks the wfile, and takes fs->lock again afterwards if it must. Fields of
 * a wfile that fs->lock holders read (size, dirty_bytes, times_set,
 * mtime_ns, written, trunc_pending, nactive) are atomics written under
 * wfile->lock (nactive and handle->active: atomic read-modify-writes).
 * nwriters and nhandles belong to fs->lock.
 * Callbacks to the kernel layer (notify) are queued under fs->lock and
 * delivered after it is released. TSan checks the order (make check: the
 * tsan pass runs the engine suites and tests/unit/test_stress.c).
 */
#ifndef TXD_CORE_H
#define TXD_CORE_H

#include <pthread.h>
#include <stdatomic.h>

#include "dtree.h"
#include "ns.h"
#include "store.h"
#include "txdir.h"

struct chunkstore;
struct clog;
struct ctl_leases;
struct ctl_states;
struct ctl_held;
struct dtc_worker;
struct evlog;
struct gc;
struct inode;
struct ns_prep;
struct rec_buf;
struct scrub;
struct space;
struct fl_table;
struct svc;
struct txn;
struct txn_restart;
struct wal;
struct wal_pos;

struct notice {
	struct notice *next;
	uint64_t parent, node;
	char name[];
};

#define FS_INLINE_MAX (4u << 20) /* a commit's inline bytes at most */

struct txd_fs {
	pthread_mutex_t lock;
	struct store store;
	struct txd_opts opts;
	struct ns ns;
	struct wal *wal;
	struct chunkstore *cs;
	uint64_t inline_max;      /* a commit's inline bytes at most (else packs): fsfile.c;
				   * FS_INLINE_MAX, or an eighth of a WAL segment */
	struct space *space;      /* space.h: the reserve, "disk full" */
	struct fl_table *locks;   /* filelock.h: advisory locks, per file */
	/* fs_process_of: caller id -> process, trusted for a second (a leaf
	 * lock): a commit asks for every caller, and a thread has no pidfd to
	 * vouch for it, so without this each commit would poll a pidfd or,
	 * from a thread, read /proc twice, under fs->lock */
	pthread_mutex_t tgid_lock;
	struct {
		uint32_t tid, tgid;
		uint64_t until_ns;
	} tgid_cache[64];
	uint64_t ckpt_bytes;      /* size of the newest checkpoint file (SP1) */
	struct node **nodes;
	uint64_t nodes_size, nnodes, next_node;
	uint64_t nhandles, commits, conflicts;
	_Atomic bool failed;  /* sticky; read without fs->lock by writers */
	struct txd_notify notify;
	struct notice *notices;
	struct clog *clog;        /* clog.h: .txdir/commits */
	struct handle snapshots; /* list head of snapshot handles */
	struct handle handles;   /* list head of every open handle (nhandles of
				  * them): those the kernel never released are
				  * released at txd_fs_close */
	struct node *ctl_nodes[256]; /* control nodes by (kind, key, view) (ctl.c) */
	uint64_t ctl_via;            /* view of the ctl call in progress (fs->lock) */
	struct txn *txns;         /* txn.h */
	struct dtc_worker *dtc;   /* dtc.h: deferred prepares' thread (NULL: none yet) */
	uint64_t next_txid;
	pthread_cond_t txn_cv;    /* a view's writable handle closed */
	struct txn_restart *txn_restart; /* start-up only: txn.h records across restarts */
	struct evlog *events;     /* events.h: .txdir/events */
	struct svc *svc;          /* svc.h: leases and the other services */
	struct ctl_leases *ctl_leases; /* ctl_lease.c's names (the control tree's) */
	struct ctl_states *ctl_states; /* ctl_state.c's waits (the control tree's) */
	struct ctl_held *ctl_held;     /* ctl.c: bytes open renderings hold, per uid */
	struct scrub *scrub;      /* scrub.h: the online verification (NULL: none yet) */
	/* the control tree's teardown, registered by it when it first keeps
	 * state (fs_free calls it: the data tree does not know the control tree) */
	void (*upper_free)(struct txd_fs *fs);
	/* The errno of a create (and any data-tree operation) in a control
	 * directory of this kind (ctl.c; registered at its first lookup):
	 * EPERM, or ENOENT for consensus/votes/P/NAME (an unknown participant) */
	int (*upper_dir_err)(uint32_t kind);
	/* What a transaction commit (txn.c, below the data tree) needs of the
	 * data tree's state, registered by it at open (fs.c): in's content or
	 * attributes were replaced (freeze its node, forget its working copy:
	 * dtree.h F1); the name in parent changed (invalidate the kernel's
	 * entry); in is open for writing in the main tree. fs->lock held. */
	struct {
		void (*replaced)(struct txd_fs *fs, struct inode *in);
		void (*renamed)(struct txd_fs *fs, struct inode *parent, const char *name);
		bool (*has_writer)(const struct inode *in);
	} dt;
	uint64_t commit_ns_sum, commit_count; /* txdir_op_duration_seconds{op="commit"} */
	uint64_t ckpt_lsn, ckpt_count;
	uint64_t ckpt_wal_bytes;  /* WAL bytes appended when the last checkpoint ran */
	pthread_t ckpt_thread;    /* background checkpoints (fs.c) */
	pthread_cond_t ckpt_cv;
	bool ckpt_stop, ckpt_running;
	uint64_t *rec_unsynced;   /* ended transactions' records to fsync (txn.h) */
	uint32_t rec_unsynced_n, rec_unsynced_cap;
	bool sweep_due;           /* a released snapshot left versions to free (ckpt.c) */
	struct gc *gc;            /* gc.h: pending deletions, stats (NULL: no run yet) */
	uint64_t start_ns;
};

/* ---- fs.c ---- */
/* Append and apply one commit (steps 3-4); pos (optional) gets where it went. */
int fs_commit(struct txd_fs *fs, struct rec_buf *b, struct wal_pos *pos);
/* fs_commit with the inodes it creates built beforehand (ns.h N8; prep may
 * be NULL; the caller frees it). */
int fs_commit_prep(struct txd_fs *fs, struct rec_buf *b, struct ns_prep *prep,
		   struct wal_pos *pos);
void fs_notify_flush(struct txd_fs *fs);
/* txd_notify.will_block, if set (before a wait for the disk or for other
 * requests). */
void fs_will_block(struct txd_fs *fs);
void fs_queue_inval(struct txd_fs *fs, uint64_t parent_node, const char *name);
/* This thread's last call made a change that must be durable before the
 * caller replies (a transaction commit): see txd_commit_needs_wait. */
void fs_set_must_wait(void);
uint64_t fs_now_ns(void);
/* SPEC §5: FUSE reports the calling thread's id; records name, and
 * liveness watches, its process (Tgid: proc.h P1). tid itself when it is
 * 0, unknown (gone) or there is no service. */
pid_t fs_process_of(struct txd_fs *fs, pid_t tid);
/* An operation is about to return err to its caller: a full disk
 * (-ENOSPC, -EDQUOT) makes the store "disk full" (space.h SP6); err is
 * returned. */
int fs_note_space(struct txd_fs *fs, const char *op, int err);
void fs_status_locked(struct txd_fs *fs, struct txd_status *st);
/* A file timestamp: txd_os->now_file_ns (the kernel's coarse clock), so
 * times the kernel stamps and times the engine stamps agree. */
struct timespec fs_now_ts(void);
/* A timespec as signed nanoseconds and back (wfile->mtime_ns). */
struct timespec fs_ns_ts(int64_t ns);
int64_t fs_ts_ns(struct timespec ts);
/* Retention of the logs (-o retain=, default 1 h): the oldest time shown. */
uint64_t fs_retain_oldest_ns(struct txd_fs *fs);

#endif
