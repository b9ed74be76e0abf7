/*
 * filelock.h — advisory file locks kept by the server: fcntl(2) record
 * locks (POSIX) and flock(2) locks, per file.
 *
 * Why the server keeps them. The kernel keeps the locks of a FUSE file
 * system itself, per kernel inode, unless the server takes them
 * (FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS). txdir shows one file under several
 * node ids — a writer's open moves the names to a fresh node id while
 * earlier readers keep theirs (SPEC §3) — so kernel-kept locks taken
 * through an old node id would not exclude the openers of the new one, and
 * `flock(1)` around a job that writes the locked file would admit two
 * holders. Here a lock belongs to the file (fl_key), whatever node id it
 * was taken through.
 *
 * Semantics (as Linux's locks on ext4):
 *  L1 Two kinds that never interact: FL_POSIX (ranges, per owner: the
 *     kernel's lock_owner, one per process' file table) and FL_FLOCK
 *     (whole file, per owner: one per open file description).
 *  L2 Conflict: same kind and file, other owner, overlapping ranges, and
 *     one of the two is F_WRLCK. An owner's own locks never conflict.
 *  L3 A set replaces the owner's locks of that kind over its range
 *     (splitting what extends past it); F_UNLCK removes them. Adjacent or
 *     overlapping ranges of one owner and type are merged.
 *  L4 flock conversion (SH <-> EX) drops the old lock first, then asks for
 *     the new one (flock(2): a conversion is not atomic); asking for the
 *     type held is a no-op.
 *  L5 A request that conflicts: -EAGAIN, or with wait it is queued and
 *     granted (its done(arg, 0)) once nothing conflicts, in arrival order
 *     among the waiters of that file. A queued request is withdrawn with
 *     fl_cancel (the caller was interrupted).
 *  L6 Deadlock (POSIX only, as Linux's posix_locks_deadlock): a waiting
 *     request whose blocking owner waits, through at most FL_DEADLK_DEPTH
 *     owners, for the asking owner gets -EDEADLK at once.
 *  L7 Limits: at most FL_MAX_LOCKS locks and waiters in all (-ENOLCK past
 *     them), so no caller can exhaust the server.
 *  L8 Locks live in memory only: a server restart drops them (as a
 *     reboot does on ext4); the kernel's files of the old mount are gone
 *     with it.
 *  L9 Open file description locks (F_OFD_SETLK, owner = the description)
 *     go at its last close: fl_release_fh.
 *
 * Lock order: fl->lock is a leaf. done callbacks run after it is dropped,
 * on the thread whose unlock, release or cancel granted them (or in
 * fl_close, with -EIO).
 */
#ifndef TXD_FILELOCK_H
#define TXD_FILELOCK_H

#include <stdbool.h>
#include <stdint.h>

#define FL_MAX_LOCKS (1u << 20)
#define FL_DEADLK_DEPTH 10
#define FL_END UINT64_MAX /* a range to the end of the file */

enum fl_kind { FL_POSIX = 1, FL_FLOCK = 2 };

/* A file: 0 for data files (the main tree and every transaction view
 * share a file's locks: its copies keep its inode number) or FL_VIEW_CTL
 * for control files, and its inode number (a control file's node id). */
#define FL_VIEW_CTL UINT64_MAX
struct fl_key {
	uint64_t view, ino;
};

/* A request, or (fl_test) the conflicting lock found. type: F_RDLCK,
 * F_WRLCK or F_UNLCK; [start, end] inclusive, end FL_END: to the end. */
struct fl_req {
	enum fl_kind kind;
	short type;
	uint64_t start, end;
	uint64_t owner;
	uint32_t pid;
	uint64_t fh; /* the open file description it came through (L9) */
};

struct fl_table;

int fl_open(struct fl_table **out);
/* Queued requests get done(arg, -EIO). */
void fl_close(struct fl_table *fl);

/* L2-L7. 0: set (or removed); -EAGAIN; -EDEADLK; -ENOLCK; -EINVAL (a bad
 * type or range); -EINPROGRESS: queued (wait), done(arg, err) comes later
 * exactly once (0, or -EIO from fl_close), unless fl_cancel withdraws it.
 * intr (may be NULL): once *intr is true the request is not queued
 * (-EINTR). A caller's interrupt sets it before calling fl_cancel, so an
 * interrupt that comes before the request is queued is not lost. */
int fl_set(struct fl_table *fl, const struct fl_key *k, const struct fl_req *r, bool wait,
	   const _Atomic bool *intr, void (*done)(void *arg, int err), void *arg);
/* 0 withdrawn (done will not be called); -ENOENT: done is due or done. */
int fl_cancel(struct fl_table *fl, void *arg);
/* F_GETLK: *r becomes the first lock that would conflict with it (type,
 * range, pid), or r->type = F_UNLCK if none would. */
void fl_test(struct fl_table *fl, const struct fl_key *k, struct fl_req *r);
/* Every lock of owner and kind on the file goes (close(2) of POSIX locks,
 * the last close of an open file description for flock); waiters that no
 * longer conflict are granted. */
void fl_release_owner(struct fl_table *fl, const struct fl_key *k, enum fl_kind kind,
		      uint64_t owner);
/* L9: the POSIX locks taken through open file description fh go with its
 * last close (RELEASE). Those are the OFD locks (F_OFD_SETLK: their owner
 * is the description, and the kernel sends no unlock for them to a server
 * that keeps the locks): a process's own record locks went at its close(2)
 * of that descriptor already (fl_release_owner at FLUSH), before any
 * RELEASE of it. */
void fl_release_fh(struct fl_table *fl, const struct fl_key *k, uint64_t fh);
/* Whether any lock is held at all: a cheap look (no lock taken) for
 * close(2), which has nothing to release on a file system nobody locks. */
bool fl_any(struct fl_table *fl);
/* Locks held and requests waiting, in all (stats, tests). */
void fl_counts(struct fl_table *fl, uint64_t *locks, uint64_t *waiting);

#endif
