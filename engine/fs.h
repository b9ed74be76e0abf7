/*
 * fs.h — internals of struct txd_fs shared by fs*.c and ctl.c (not public).
 *
 * Objects.
 *   node    a FUSE node id. Refers to one inode (data tree) or to a control
 *           tree object (ctl != 0). A data node is either *live* (follows the
 *           inode's latest committed version and its working copy) or
 *           *frozen* (pins the version its readers opened; never changes).
 *           inode->live is the node that lookups return.
 *   wfile   the working copy of a file, shared by every handle opened while
 *           the file has a writer (SPEC §3 "sharing like ext4"). Exists from
 *           the first writable open until the last sharing handle closes.
 *   handle  an open file or directory (the FUSE fh). A read-only open while
 *           the file has no wfile holding content written since the last
 *           commit pins the head version (snapshot reader); any other open
 *           shares the wfile.
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
 *   A failure in 2 or 3 makes the store failed (sticky -EIO for changes).
 *
 * Invariants.
 *  F1 A node id's content and size change only through writes to that node
 *     (the kernel's page cache belongs to it). A node with snapshot readers
 *     is frozen before any writer may open the file.
 *  F2 Memory equals checkpoint + replayed log after every commit (4).
 *  F3 A frozen node and a snapshot handle hold a pin on their version; the
 *     version is freed when the last pin goes (ns.h N2).
 *
 * Locks (every lock of the engine), outermost first. A thread holding one
 * may take only locks listed below it, never one above:
 *   1. wfile->lock       a working copy's content, its pending times and its
 *                        written/truncation flags (fsfile.c, fsops.c setattr)
 *   2. fs->lock          everything else of struct txd_fs: nodes, namespace,
 *                        handles' links, transactions, control tree, events
 *                        (cond vars txn_cv, ckpt_cv wait on it)
 *   3. chunkstore wlock  pack append state (chunk.c), then its cache_lock
 *                        (rwlock, fd cache); taken under 1 or 2 or alone
 *   4. wal->lock         the log's append and sync state (wal.c); its
 *                        completion callbacks run with no WAL lock held
 *   5. evlog, clog locks the event and commit logs' own mutexes
 *                        (events.h, clog.h): leaves, taken under 2 or alone
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
#ifndef TXD_FS_H
#define TXD_FS_H

#include <pthread.h>
#include <stdatomic.h>

#include "chunk.h"
#include "clog.h"
#include "events.h"
#include "ns.h"
#include "rec.h"
#include "store.h"
#include "txdir.h"
#include "txn.h"
#include "wal.h"

struct ctl_file;

struct node {
	uint64_t id;
	struct node *hnext;
	struct inode *in;    /* data node: pinned inode; NULL for control nodes */
	struct iver *frozen; /* pinned version once frozen */
	uint64_t nlookup;
	uint32_t nopen, nsnap;
	struct txn *txn;     /* data node of a transaction's view (NULL: main) */
	uint32_t ctl;        /* control tree object kind (ctl.c), 0 = data */
	uint64_t ctl_key;    /* e.g. a commit id */
	struct node *ctl_next; /* fs->ctl_nodes chain: one node id per object */
	uint64_t ctl_via;    /* the view (txn id, 0 = main) it was reached from */
};

struct wfile {
	pthread_mutex_t lock;
	struct wcopy *wc;
	uint32_t nhandles, nwriters;
	_Atomic uint64_t size; /* wcopy size, readable without the lock */
	_Atomic uint64_t dirty_bytes; /* bytes written since the last commit (st_blocks) */
	_Atomic bool times_set;     /* mtime_ns goes into the next content commit */
	_Atomic bool written;       /* content written since the last commit (SPEC §3) */
	_Atomic bool trunc_pending; /* an O_TRUNC not committed yet (fsfile.c) */
	_Atomic uint32_t nactive;   /* writable handles with something written (or
				     * opened) since their last FLUSH: writers */
	_Atomic int64_t mtime_ns;
};

#define HANDLE_MAGIC 0x74786668u

struct handle {
	uint32_t magic;
	int flags;
	bool writable, is_dir;
	struct node *node;
	struct inode *in;
	struct iver *snap;     /* snapshot reader */
	struct wfile *_Atomic wf; /* sharing the working copy; set once (open, or
				   * a snapshot reader joining: fsfile.c) */
	struct ctl_file *ctl;  /* control file contents */
	uint64_t opened_ns;    /* snapshot readers: for the oldest-snapshot age */
	bool expired;          /* its snapshot passed -o max_snapshot_age: ESTALE */
	_Atomic bool active;   /* writable, written or opened since its last FLUSH
				* (counted in wf->nactive; SPEC §3 "writer") */
	struct handle *snap_next, *snap_prev;
};

struct notice {
	struct notice *next;
	uint64_t parent, node;
	char name[];
};

struct txd_fs {
	pthread_mutex_t lock;
	struct store store;
	struct txd_opts opts;
	struct ns ns;
	struct wal *wal;
	struct chunkstore *cs;
	struct node **nodes;
	uint64_t nodes_size, nnodes, next_node;
	uint64_t nhandles, commits, conflicts;
	_Atomic bool failed;  /* sticky; read without fs->lock by writers */
	struct txd_notify notify;
	struct notice *notices;
	struct clog *clog;        /* clog.h: .txdir/commits */
	struct handle snapshots; /* list head of snapshot handles */
	struct node *ctl_nodes[256]; /* control nodes by (kind, key, view) (ctl.c) */
	uint64_t ctl_via;            /* view of the ctl call in progress (fs->lock) */
	struct txn *txns;         /* txn.h */
	uint64_t next_txid;
	pthread_cond_t txn_cv;    /* a view's writable handle closed */
	struct txn_restart *txn_restart; /* start-up only: txn.h records across restarts */
	struct evlog *events;     /* events.h: .txdir/events */
	uint64_t commit_ns_sum, commit_count; /* txdir_op_duration_seconds{op="commit"} */
	uint64_t ckpt_lsn, ckpt_count;
	uint64_t ckpt_wal_bytes;  /* WAL bytes appended when the last checkpoint ran */
	pthread_t ckpt_thread;    /* background checkpoints (fs.c) */
	pthread_cond_t ckpt_cv;
	bool ckpt_stop, ckpt_running;
	uint64_t *rec_unsynced;   /* ended transactions' records to fsync (txn.h) */
	uint32_t rec_unsynced_n, rec_unsynced_cap;
	bool sweep_due;           /* a released snapshot left versions to free (ckpt.c) */
	uint64_t start_ns;
};

/* fs.c */
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
struct node *fs_node(struct txd_fs *fs, uint64_t id);
/* Nodes belong to a view: t == NULL is the main tree, else a transaction. */
struct node *fs_node_new(struct txd_fs *fs, struct txn *t, struct inode *in);
void fs_node_put(struct txd_fs *fs, struct node *n);
struct node *fs_live_node(struct txd_fs *fs, struct txn *t, struct inode *in);
/* The namespace of a view, its inode ino (copied up on first use in a
 * transaction), and committing ops built against it. */
struct ns *fs_ns(struct txd_fs *fs, struct txn *t);
struct inode *fs_view_inode(struct txd_fs *fs, struct txn *t, uint64_t ino);
int fs_view_commit(struct txd_fs *fs, struct txn *t, struct rec_buf *b);
/* Freeze n on its current version (fs.h F1) and invalidate its name. */
void fs_freeze_node(struct txd_fs *fs, struct node *n);
/* This thread's last call made a change that must be durable before the
 * caller replies (a transaction commit): see txd_commit_needs_wait. */
void fs_set_must_wait(void);
void fs_attr(struct txd_fs *fs, const struct node *n, struct txd_attr *a);
void fs_entry(struct txd_fs *fs, struct node *n, struct txd_entry *e);
void fs_inode_unpin(struct txd_fs *fs, struct txn *t, struct inode *in);
uint64_t fs_now_ns(void);
/* pid of the request being served on this thread (txd_set_caller), or 0 */
pid_t fs_caller_pid(void);
/* The credentials of the request being served (txd_set_caller); false when
 * none is set (the engine's own calls). */
bool fs_caller_cred(struct txd_cred *out);
/* The caller (txd_set_caller) is root or has uid; true when none is set. */
bool fs_caller_owns(uint32_t uid);
void fs_status_locked(struct txd_fs *fs, struct txd_status *st);
/* A file timestamp: txd_os->now_file_ns (the kernel's coarse clock), so
 * times the kernel stamps and times the engine stamps agree. */
struct timespec fs_now_ts(void);
/* A timespec as signed nanoseconds and back (wfile->mtime_ns). */
struct timespec fs_ns_ts(int64_t ns);
int64_t fs_ts_ns(struct timespec ts);
/* Attributes of in's head as an OP_INODE body, for a commit to modify. */
void fs_inode_rec(const struct inode *in, struct rec_inode *r);

/* fsfile.c */
/* Release snapshots older than max_snapshot_age (handles then read ESTALE).
 * fs->lock held. */
void fs_expire_snapshots(struct txd_fs *fs, uint64_t max_age_ns);
/* Commit wf's pending content (fsfile.c, SPEC §3 "Commits"). at_flush: a
 * FLUSH, which leaves a lone truncation (nothing written since the last
 * commit) pending. Takes wf->lock, then fs->lock: call with neither held. */
int fs_commit_content(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf,
		      pid_t pid, bool at_flush, uint64_t *lsn);
/* h wrote (write, fallocate, ftruncate): it counts as a writer again. Takes
 * fs->lock when h was quiet (call with wf->lock or nothing held). */
void fs_handle_wrote(struct txd_fs *fs, struct handle *h);
/* Take / drop a share of in's working copy (created on first use). fs->lock. */
struct wfile *fs_wf_get(struct txd_fs *fs, struct inode *in);
void fs_wf_put(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf);

/* ckpt.c: write a checkpoint of the whole namespace at the current LSN and
 * drop what it makes unnecessary (older checkpoints, WAL segments with no
 * live chunks). Caller holds fs->lock; it is released meanwhile (ckpt.c K7)
 * and held again on return. */
int ckpt_write(struct txd_fs *fs);
/* Load the newest valid checkpoint into fs->ns; *lsn = its LSN (0: none). */
int ckpt_load(struct txd_fs *fs, uint64_t *lsn);
/* ns_snapshot_release without its walk of every inode under fs->lock: the
 * snapshot is forgotten now, what only it kept is freed by ckpt_sweep on
 * the background thread, in bounded holds of fs->lock (ckpt.c K7). */
void ckpt_snapshot_release(struct txd_fs *fs, uint64_t s);
/* fs->lock held; released between batches. */
void ckpt_sweep(struct txd_fs *fs);

/* ctl.c: the .txdir control tree. */
int ctl_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent, const char *name,
	      struct txd_entry *e);
int ctl_rmdir(struct txd_fs *fs, struct node *parent, const char *name);
#define CTL_DIRNAME ".txdir"
int ctl_lookup(struct txd_fs *fs, struct node *parent, const char *name, struct txd_entry *e);
int ctl_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a);
int ctl_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
		void *arg);
int ctl_open(struct txd_fs *fs, struct node *n, int flags, struct handle *h,
	     struct txd_open_out *out);
ssize_t ctl_read(struct txd_fs *fs, struct handle *h, void *buf, size_t size, uint64_t off);
ssize_t ctl_write(struct txd_fs *fs, struct handle *h, const void *buf, size_t size,
		  uint64_t off);
/* As ctl_write; a commit that must wait for the view's writers returns
 * -EINPROGRESS and answers through done (txn_commit_async). */
ssize_t ctl_write_async(struct txd_fs *fs, struct handle *h, const void *buf, size_t size,
			uint64_t off, void (*done)(void *arg, int err), void *arg);
void ctl_release(struct txd_fs *fs, struct handle *h);
void ctl_node_forget(struct txd_fs *fs, struct node *n); /* before freeing n */
/* Retention of the logs (-o retain=, default 1 h): the oldest time shown. */
uint64_t fs_retain_oldest_ns(struct txd_fs *fs);

#endif
