/*
 * dtree.h — the data tree: node ids, open files and working copies, and the
 * fs_* functions of fs.c (nodes, attributes), fsops.c (namespace) and
 * fsfile.c (open files, content commits). Internal to the engine.
 *
 * Layering: the dispatch (vfs.c) routes every public txd_* call that can
 * reach a control node either here or to the control tree (ctl.h). The data
 * tree never calls the control tree: it only tells control nodes apart
 * (node->ctl != 0) to refuse them. struct txd_fs and the lock order are in
 * core.h.
 *
 * Objects.
 *   node    a FUSE node id. Refers to one inode (data tree) or to a control
 *           tree object (ctl != 0, owned by ctl.c). A data node is either
 *           *live* (follows the inode's latest committed version and its
 *           working copy) or *frozen* (pins the version its readers opened;
 *           never changes). inode->live is the node that lookups return.
 *   wfile   the working copy of a file, shared by every handle opened while
 *           the file has a writer (SPEC §3 "sharing like ext4"). Exists from
 *           the first writable open until the last sharing handle closes.
 *   handle  an open file or directory (the FUSE fh). A read-only open while
 *           the file has no wfile holding content written since the last
 *           commit pins the head version (snapshot reader); any other open
 *           shares the wfile.
 *
 * Invariants.
 *  F1 A node id's content and size change only through writes to that node
 *     (the kernel's page cache belongs to it). A node with snapshot readers
 *     is frozen before any writer may open the file.
 *  F3 A frozen node and a snapshot handle hold a pin on their version; the
 *     version is freed when the last pin goes (ns.h N2).
 * (F2, memory = log, is core.h's.)
 */
#ifndef TXD_DTREE_H
#define TXD_DTREE_H

#include <pthread.h>
#include <stdatomic.h>

#include "chunk.h"
#include "ns.h"
#include "rec.h"
#include "txdir.h"

struct txd_fs;
struct txn;
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
	bool retired;        /* frozen because the kernel's caches of it are wrong
			      * (lost content, times set elsewhere): never reopened */
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
	struct handle *_Atomic trunc_by; /* the handle whose O_TRUNC is pending: its
					  * RELEASE, no other's, commits it alone */
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
	pid_t pid;             /* who opened it: commits at RELEASE (no caller) */
	bool expired;          /* its snapshot passed -o max_snapshot_age: ESTALE */
	_Atomic bool active;   /* writable, written or opened since its last FLUSH
				* (counted in wf->nactive; SPEC §3 "writer") */
	struct handle *snap_next, *snap_prev;
	struct handle *all_next, *all_prev; /* fs->handles: every open handle */
};

/* The name a view's root keeps for the control tree (vfs.c routes it). */
#define CTL_DIRNAME ".txdir"
/* readdir of a data directory: cookies below this are entries; the root's
 * ".txdir" (-o showctl) is listed at it by the dispatch (vfs.c). */
#define CTL_COOKIE (UINT64_MAX - 1)

/* ---- fs.c: nodes and attributes (fs->lock held) ---- */
struct node *fs_node(struct txd_fs *fs, uint64_t id);
/* Every open handle is on fs->handles (core.h), counted in fs->nhandles. */
void fs_handle_opened(struct txd_fs *fs, struct handle *h);
void fs_handle_closed(struct txd_fs *fs, struct handle *h);
/* Nodes belong to a view: t == NULL is the main tree, else a transaction.
 * in == NULL makes a control node (ctl.c fills in its kind). */
struct node *fs_node_new(struct txd_fs *fs, struct txn *t, struct inode *in);
/* Free n once the kernel and every handle are done with it. A control node
 * goes through ctl_node_put (ctl.h), which forgets it first. */
void fs_node_put(struct txd_fs *fs, struct node *n);
struct node *fs_live_node(struct txd_fs *fs, struct txn *t, struct inode *in);
/* The namespace of a view, its inode ino (copied up on first use in a
 * transaction), and committing ops built against it. */
struct ns *fs_ns(struct txd_fs *fs, struct txn *t);
struct inode *fs_view_inode(struct txd_fs *fs, struct txn *t, uint64_t ino);
int fs_view_commit(struct txd_fs *fs, struct txn *t, struct rec_buf *b);
void fs_attr(struct txd_fs *fs, const struct node *n, struct txd_attr *a);
void fs_entry(struct txd_fs *fs, struct node *n, struct txd_entry *e);
void fs_inode_unpin(struct txd_fs *fs, struct txn *t, struct inode *in);

/* ---- fsops.c: the namespace (public txd_* calls that never reach a
 * control node are there too) ---- */
/* Whether n is a node of a transaction that has ended (txn.h T3). */
bool fs_node_stale(const struct node *n);
/* The root of a view, where .txdir is reachable by name. */
bool fs_view_root(const struct node *n);
/* The data-tree halves of lookup, getattr and readdir: fs->lock held, p/n
 * a data node. fs_readdir returns 1 when fill refused an entry (the reply
 * is full), 0 at the end of the directory. */
int fs_lookup(struct txd_fs *fs, struct node *p, const char *name, struct txd_entry *out);
int fs_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *out);
int fs_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
	       void *arg);
/* The data-tree halves of mkdir, setattr and rmdir (they take fs->lock
 * themselves and look the node up again). */
int fs_mkdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	     mode_t mode, struct txd_entry *out);
int fs_setattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
	       const struct txd_setattr *sa, uint64_t fh, struct txd_attr *out);
int fs_rmdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name);
int fs_unlink(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name);
ssize_t fs_readlink(struct txd_fs *fs, uint64_t node, char *buf, size_t size);
/* txd_flush, txd_fsync_prepare, txd_getxattr, txd_listxattr, txd_create,
 * txd_rename of the data tree (vfs.c routes control handles and nodes to
 * ctl.h). */
int fs_create(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      mode_t mode, int flags, struct txd_entry *entry, struct txd_open_out *out);
int fs_rename(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      uint64_t newparent, const char *newname, unsigned int flags);
int fs_flush(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c, uint64_t *lsn_out);
int fs_fsync_prepare(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c,
		     uint64_t *lsn_out);
ssize_t fs_getxattr(struct txd_fs *fs, uint64_t node, const char *name, void *buf, size_t size);
ssize_t fs_listxattr(struct txd_fs *fs, uint64_t node, char *buf, size_t size);
/* Make a regular file (txd_create). */
int fs_create_entry(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent,
		    const char *name, mode_t mode, struct txd_entry *out);
/* A write, truncation or fallocate by c drops n's set-id bits (one commit
 * carrying c's pid; nothing when none is set). fs->lock held. */
int fs_kill_suidgid(struct txd_fs *fs, const struct txd_cred *c, struct node *n);

/* ---- fsfile.c: open files ---- */
/* The data-tree halves of open, read, write and release (no lock held). */
int fs_open(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, int flags,
	    struct txd_open_out *out);
ssize_t fs_read(struct txd_fs *fs, struct handle *h, void *buf, size_t size, uint64_t off);
ssize_t fs_write(struct txd_fs *fs, const struct txd_cred *c, struct handle *h, const void *buf,
		 size_t size, uint64_t off);
int fs_release(struct txd_fs *fs, struct handle *h);
/* The handle behind a FUSE fh of a file (NULL: not one). */
struct handle *fs_file_handle(uint64_t fh);
/* The largest file: 16 TiB (a write, truncate or fallocate past it is
 * EFBIG, as ext4's limit with 4 KiB blocks). */
#define FS_FILE_MAX (1ull << 44)
/* Freeze n on its current version (F1) and invalidate its name. */
void fs_freeze_node(struct txd_fs *fs, struct node *n);
/* A writer froze in's node for its open or truncate (F1) and will retry on
 * the fresh node id: readers join the working copy until it comes (at most
 * a second), so the retry does not freeze again. fs->lock held. */
void fs_writer_due(struct inode *in, pid_t pid);
/* pid's writable open or truncate arrived: its window ends. */
void fs_writer_came(struct inode *in, pid_t pid);
/* Release snapshots older than max_snapshot_age (handles then read ESTALE).
 * fs->lock held. */
void fs_expire_snapshots(struct txd_fs *fs, uint64_t max_age_ns);
/* Commit wf's pending content (SPEC §3 "Commits"). at_flush: a FLUSH,
 * which leaves a lone truncation (nothing written since the last commit)
 * pending. Takes wf->lock, then fs->lock: call with neither held. */
int fs_commit_content(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf,
		      pid_t pid, bool at_flush, uint64_t *lsn);
/* h wrote (write, fallocate, ftruncate): it counts as a writer again. Takes
 * fs->lock when h was quiet (call with wf->lock or nothing held). */
void fs_handle_wrote(struct txd_fs *fs, struct handle *h);
/* Take / drop a share of in's working copy (created on first use). fs->lock. */
struct wfile *fs_wf_get(struct txd_fs *fs, struct inode *in);
void fs_wf_put(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf);

#endif
