/*
 * ns.h — the in-memory namespace: inodes, their committed versions, and
 * directories. It changes only by applying commit records (rec.h), live or
 * replayed, so memory always equals "checkpoint + log".
 *
 * Versions (MVCC). Each inode has a chain of versions, newest first. A
 * version holds everything a reader of that inode can see: attributes, size,
 * chunk map, digest, symlink target, xattrs. Readers pin a version
 * (ns_iver_pin) and keep reading it however the inode changes later.
 *
 * Invariants.
 *  N1 A pinned version is never modified. A commit modifies the head in
 *     place only when nobody but the chain holds it (refs == 1) and no
 *     snapshot newer than its commit exists; otherwise it pushes a copy.
 *  N2 A version other than the head is kept while it is pinned or while a
 *     registered snapshot S needs it (commit <= S < commit of the next newer
 *     version); otherwise it is freed as soon as it becomes unneeded.
 *  N5 Directory entries are versioned the same way: a binding (name -> ino)
 *     replaced or removed while a snapshot can see it is kept in the entry's
 *     chain (a removal leaves a tombstone, ino 0). Head lookups never see
 *     tombstones; ns_dir_ino_at(e, S) gives the binding snapshot S sees.
 *  N6 Snapshots (ns_snapshot_take/release) see exactly the state as of their
 *     commit id, for as long as they are registered.
 *  N3 Directory cookies are assigned in apply order from the directory's
 *     next_cookie (or taken from the record), so replay assigns the same
 *     cookies as the live commit did; an entry keeps its cookie for its life.
 *  N4 A directory's nlink is 2 + its subdirectories, kept by the committer.
 *  N8 A commit may be prepared before its hold of the namespace's lock
 *     (ns_prepare): the inodes it creates are built from its ops in a
 *     private stage, and ns_apply_prepared links them and applies the
 *     remaining ops. The result is exactly that of ns_apply of the same
 *     payload (replay applies it the plain way): a record the stage cannot
 *     build op for op (a staged inode named both in a staged and in a main
 *     directory, a main inode named in a staged directory, inline data,
 *     OP_FREE or OP_VERSION of a staged inode) is not prepared.
 *  N7 A version's stored is the sum of the stored lengths of its map's
 *     chunks, kept by every content change in O(change), so st_blocks needs
 *     no walk of the map.
 *
 * Memory (what the namespace holds follows live data and open work, never
 * history; tests/unit/test_memory.c):
 *  M1 An inode with no name left (nlink 0) and no pin is freed as soon as no
 *     registered snapshot can see it (ns_inode_unlinked): one created and
 *     unlinked while a snapshot S is registered is freed at once, one that
 *     existed at S is parked and freed by the release that ends the last
 *     snapshot seeing it — not when every snapshot has gone. So churn under
 *     a long transaction keeps only the inodes that transaction can see.
 *  M2 Older versions and bindings follow N2/N5 (freed when unneeded); the
 *     inode table starts small (a transaction's view) and doubles, and a
 *     directory's tables double with it: both are sized by the largest
 *     population they had, not by the number of commits.
 *  M3 After a sweep frees many inodes (>= 4096), malloc_trim returns the
 *     freed pages to the system, so an idle server shrinks after the churn.
 *
 * Locking: none inside. The owner (fs.c) serialises every call with its
 * namespace mutex.
 */
#ifndef TXD_NS_H
#define TXD_NS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "chunk.h"
#include "rec.h"

#define NS_ROOT_INO 1

struct xattrs {
	uint32_t len; /* bytes of data: (u16 name_len, u32 value_len, name, value)* */
	uint8_t data[];
};

struct iver {
	struct iver *older;
	uint32_t refs; /* 1 for the chain + pins */
	uint64_t commit, vno;
	uint32_t mode, uid, gid, nlink;
	uint64_t rdev, size, dsum;
	uint64_t stored; /* bytes of map's chunks (N7) */
	struct timespec atime, mtime, ctime;
	struct cmap *map;
	char *target;
	struct xattrs *xa;
};

/* An older binding of a directory entry (N5). */
struct dver {
	struct dver *older;
	uint64_t ino, commit; /* ino 0: the name was absent from commit on */
};

struct dent {
	struct dent *hnext;
	uint64_t ino, cookie; /* ino 0: tombstone (removed, kept for snapshots) */
	uint64_t commit;      /* commit that made the current binding */
	struct dver *older;
	uint16_t len;
	char name[];
};

struct dir {
	struct dent **tab;   /* hash by name */
	uint32_t tabsize, count; /* count: live entries (not tombstones) */
	struct dent **order; /* by cookie; NULL slots are removed entries */
	uint32_t norder, caporder;
	uint64_t next_cookie;
};

struct inode {
	uint64_t ino;
	struct inode *hnext;
	struct iver *head;
	struct dir *dir;      /* directories */
	uint64_t parent;      /* directories: ".." */
	uint64_t name_parent; /* one of its names: (name_parent, name), for */
	struct dent *name;    /* commit paths and kernel invalidations; NULL */
	                      /* when it has none */
	uint32_t pins;        /* nodes and handles referring to it (fs.c) */
	void *live;           /* fs.c: current live node for this inode */
	void *wf;             /* fs.c: shared working copy while open */
	uint64_t writer_due_ns; /* fs.c: a writer's open (or truncate by path)
				 * froze the node at this monotonic time and is
				 * on its way to the fresh node id (F1) */
	uint32_t writer_due_pid; /* the last such writer */
	bool freed;           /* OP_FREE applied while pinned */
};

struct ns {
	struct inode **tab;
	uint64_t tabsize, ninodes, nversions;
	uint64_t next_ino;
	uint64_t newest_snapshot; /* N1: 0 when none */
	uint64_t *snaps;          /* registered snapshots, ascending */
	uint32_t nsnaps, capsnaps;
	uint64_t mvcc_items;      /* kept versions/bindings a release may free */
	uint64_t *parked;         /* M1: unlinked inodes a snapshot still sees */
	uint32_t nparked, capparked;
};

int ns_init(struct ns *ns);
void ns_destroy(struct ns *ns);

struct inode *ns_inode(struct ns *ns, uint64_t ino);
/* Attributes of in's head as an OP_INODE body, for a commit to modify. */
void ns_inode_rec(const struct inode *in, struct rec_inode *r);
uint64_t ns_alloc_ino(struct ns *ns);

/* Apply a validated-or-not commit payload (see rec.h). The record's inline
 * chunks live in WAL segment seg at file offset payload_off. ops_len is the
 * size of the readable prefix; len the full payload length. -TXD_ECORRUPT if
 * the record is malformed or does not fit the namespace (nothing applied
 * when malformed; R1). */
int ns_apply(struct ns *ns, const void *payload, uint32_t len, uint32_t seg,
	     uint64_t payload_off, uint64_t commit);

/* N8: build the inodes a commit creates (fresh(arg, ino): ino does not
 * exist in the target namespace and only this commit creates it), without
 * the target namespace. payload is a prefix of the commit's payload (ops
 * may follow it). *out NULL when nothing is prepared; free with
 * ns_prep_free whether applied or not. */
struct ns_prep;
int ns_prepare(const void *payload, uint32_t len, bool (*fresh)(void *arg, uint64_t ino),
	       void *arg, struct ns_prep **out);
/* ns_apply with p (may be NULL) prepared from a prefix of payload. */
int ns_apply_prepared(struct ns *ns, const void *payload, uint32_t len, uint32_t seg,
		      uint64_t payload_off, uint64_t commit, struct ns_prep *p);
void ns_prep_free(struct ns_prep *p);
uint64_t ns_prep_count(const struct ns_prep *p); /* inodes staged */

/* Directory lookups of the head state (tombstones skipped). */
struct dent *ns_dir_find(const struct dir *d, const char *name, size_t len);
/* First live entry with cookie > after, or NULL. */
struct dent *ns_dir_next(const struct dir *d, uint64_t after);

/* ---- snapshots (N6) ---------------------------------------------------------
 * A snapshot is a commit id S. While registered, every version and binding
 * that S sees is kept. */
int ns_snapshot_take(struct ns *ns, uint64_t s);
void ns_snapshot_release(struct ns *ns, uint64_t s);
/* ns_snapshot_release in pieces, for a caller that cannot hold the lock
 * across a walk of every inode (ckpt.c K7): forget s (false if it was not
 * registered), then ns_sweep_inode every inode, in any number of holds. */
bool ns_snapshot_forget(struct ns *ns, uint64_t s);
void ns_sweep_inode(struct ns *ns, struct inode *in);
/* The version of in that snapshot s sees (NULL: in did not exist at s). */
struct iver *ns_iver_at(const struct inode *in, uint64_t s);
/* The ino name is bound to at s (0: absent), and the next entry with
 * cookie > after that exists at s. */
uint64_t ns_lookup_at(const struct dir *d, const char *name, size_t len, uint64_t s);
struct dent *ns_dir_next_at(const struct dir *d, uint64_t after, uint64_t s, uint64_t *ino);
/* Copy inode src as snapshot s sees it into ns (a transaction's private
 * namespace; ns.h invariants hold there as for the main one): attributes,
 * content map (shared, copy-on-write), xattrs, and for a directory its
 * entries at s with their cookies. *out is the new inode; -ENOENT if src did
 * not exist at s. */
int ns_import(struct ns *ns, const struct inode *src, uint64_t s, struct inode **out);

/* Whether some registered snapshot S has from <= S < to. */
bool ns_snapshot_needs(const struct ns *ns, uint64_t from, uint64_t to);

void ns_iver_pin(struct iver *v);
void ns_iver_unpin(struct ns *ns, struct inode *in, struct iver *v);

/* Drop an inode whose nlink is 0 and that nobody pins (after recovery or the
 * last close). */
void ns_inode_drop(struct ns *ns, struct inode *in);
/* in has just lost its last name or its last pin: if its nlink is 0 and
 * nobody pins it, drop it now unless a registered snapshot can still see it,
 * in which case it is parked and dropped by the snapshot release after which
 * none can (M1). in may be freed on return. */
void ns_inode_unlinked(struct ns *ns, struct inode *in);
/* Whether a registered snapshot can see in (it existed at that snapshot). */
bool ns_inode_visible(const struct ns *ns, const struct inode *in);
/* Drop every such inode (recovery; the last snapshot's release). */
void ns_drop_unlinked(struct ns *ns);

/* Xattr blob lookup: returns value pointer and length, or NULL. */
const uint8_t *xattrs_get(const struct xattrs *xa, const char *name, uint32_t *len);

/* A path of in for humans ("/a/b"), into buf; "?" parts where unknown. */
void ns_path(struct ns *ns, const struct inode *in, char *buf, size_t cap);
/* The same, where a name removed since snapshot snap is its name at snap
 * (a transaction's conflict with a winner that removed what it changed). */
void ns_path_at(struct ns *ns, const struct inode *in, uint64_t snap, char *buf, size_t cap);

/* Visit every inode (checkpoints, stats); stop on non-zero. */
int ns_walk(struct ns *ns, int (*cb)(void *arg, struct inode *in), void *arg);

#endif
