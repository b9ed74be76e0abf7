/*
 * txdir.h — libtxdir, the transactional directory engine. The only header
 * fusefs/ and mountctl/ include.
 *
 * A store (txd_store_init/txd_fs_open) holds a tree of files. Every metadata operation
 * is one commit; file content is committed by txd_flush/txd_fsync (FUSE FLUSH
 * and FSYNC, i.e. every close(2) of a descriptor that wrote, and fsync). After
 * a crash, opening the store gives exactly the state as of some commit, with
 * no later commit present without every earlier one.
 *
 * The API is shaped for libfuse's low-level operations: objects are named by
 * *node ids* (TXD_ROOT_NODE is the root). A node id names one inode *and one
 * version of its content and size as the kernel sees them*: the kernel's page
 * cache and cached size belong to a node id, so the engine never changes a
 * node id's bytes except through that node's own writes. When a file that has
 * open snapshot readers is first opened for writing, txd_open returns
 * -ESTALE and its names move to a fresh node id (the old one stays frozen for
 * its readers); the engine then reports the names to invalidate through the
 * notify callback. The FUSE layer answers ESTALE to OPEN, which makes the VFS
 * look the name up again.
 *
 * Lookup counts: every call that returns a struct txd_entry (lookup, create,
 * mknod, mkdir, symlink, link, readdir with plus=true) adds one lookup
 * reference to entry.node; txd_forget drops them (FUSE FORGET semantics).
 *
 * Return convention: 0 or a non-negative count on success, a negative errno
 * on failure, or a negative TXD_E* code (see txd_strerror). Once a commit has
 * failed to reach the log (I/O error), the store is read-only: every change
 * returns -EIO until it is reopened (recovery), and reads keep working. A
 * full disk is not such a failure: the change that does not fit returns
 * -ENOSPC (or -EDQUOT), everything committed before stays, deletes and
 * truncations still work, and status says disk_full until space is back.
 *
 * Threading: every call is safe from any number of threads. No call blocks on
 * a durability wait except txd_sync_wait and txd_fs_close; FUSE workers use the
 * *_async forms. Callbacks (notify, durability) are invoked with no engine
 * lock held.
 */
#ifndef TXDIR_H
#define TXDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

/* libtxdir.so exports what this header declares and nothing else: the engine
 * is compiled with -fvisibility=hidden and engine/libtxdir.map versions the
 * txd_* names (LIBTXDIR_2). Declare public calls above the pop below. */
#pragma GCC visibility push(default)

#define TXD_ROOT_NODE 1
#define TXD_NAME_MAX 255

/* Engine error codes, returned negated. */
enum {
	TXD_EBASE = 2000,
	TXD_ECORRUPT = TXD_EBASE, /* a checksummed record or chunk is damaged */
	TXD_EFORMAT,              /* FORMAT missing or unknown version */
	TXD_ELOCKED,              /* another server holds the store's LOCK */
	TXD_ENOTSTORE,            /* directory is not a store (init: not empty) */
	TXD_EFAILED,              /* store failed earlier (sticky), reopen it */
	TXD_ELAST
};
/* Static string for any code (engine's or errno). */
const char *txd_strerror(int err);
/* Why store dir's FORMAT is refused (after -TXD_EFORMAT), naming both
 * formats: "store format 9; this build reads formats 1 to 3", or "FORMAT
 * is not \"txdir-store N\"". Into buf (cap bytes); returns buf. */
const char *txd_format_problem(const char *dir, char *buf, size_t cap);

enum txd_durability {
	TXD_DUR_FSYNC = 0, /* fsync/fdatasync, txn commit durable; rest within interval */
	TXD_DUR_FULL,      /* every commit durable before it returns */
	TXD_DUR_NONE,      /* never flush: prefix guarantee only for a server crash */
};

struct txd_opts {
	enum txd_durability durability;
	uint32_t commit_interval_ms; /* 0 = default 1000 */
	uint32_t retain_s;           /* record retention; 0 = default 3600 */
	uint32_t max_snapshot_age_s; /* 0 = unbounded */
	uint32_t txn_grace_s;        /* abandoned transactions abort after; 0 = 600 */
	uint32_t max_leases;         /* per uid (root unlimited; EDQUOT); 0 = 1024 */
	uint32_t max_waiters;        /* per uid lease waiters; 0 = 1024 */
	uint32_t max_txns;           /* per uid active or prepared transactions; 0 = 1024 */
	uint32_t max_proposals;      /* per uid open or kept proposals; 0 = 1024 */
	uint32_t max_state_temps;    /* per uid temp files in .txdir/state; 0 = 16 */
	uint32_t max_ctl_mib;        /* per uid MiB open control-file renderings hold
				      * (events, commits/ID...); 0 = 256 */
	bool show_ctl;               /* list .txdir in the root's readdir */
	/* tuning (tests use small values): 0 = defaults */
	uint64_t checkpoint_bytes;   /* log volume between background checkpoints (256 MiB) */
	uint64_t wal_segment_bytes;  /* WAL segment size (64 MiB) */
};

struct txd_fs;

/* Create an empty store in dir (created if missing). -TXD_ENOTSTORE if dir
 * exists and is neither empty nor a store; -EEXIST if it already is one.
 * (Store-level calls are txd_store_init / txd_fs_open / txd_fs_close;
 * txd_open is the FUSE OPEN of a file.) */
int txd_store_init(const char *dir);

/* Whether others can read or write a part of the store: 1 with the first
 * such file or directory in bad (and its mode bits), 0 if the store is
 * private to its owner (every directory 0700, every file 0600), or -errno. */
int txd_store_check_private(const char *dir, char *bad, size_t cap, unsigned int *mode);

/* Open (recovering as needed). -TXD_ELOCKED if another process holds it:
 * *holder_pid (optional) gets its pid. */
int txd_fs_open(const char *dir, const struct txd_opts *opts, struct txd_fs **out,
		pid_t *holder_pid);

/* Sync, write a checkpoint, release the lock, free everything. */
void txd_fs_close(struct txd_fs *fs);

/* ---- notifications to the kernel layer ---------------------------------
 * inval_entry(arg, parent_node, name): the dentry (parent_node, name) must be
 * dropped by the kernel (fuse_lowlevel_notify_inval_entry). Called with no
 * engine lock held, possibly from inside another txd_* call: the callee must
 * only queue the work, never call back into the kernel synchronously. */
struct txd_notify {
	void (*inval_entry)(void *arg, uint64_t parent_node, const char *name);
	void (*inval_inode)(void *arg, uint64_t node);
	/* will_block(arg) (optional): the calling thread is about to wait — for
	 * the disk (fdatasync of packs before a large commit) or for other
	 * requests (a transaction commit waiting for its writers to close). It
	 * may be called with engine locks held, and must not call the engine:
	 * the FUSE layer gets another thread reading requests meanwhile. */
	void (*will_block)(void *arg);
	/* stats(arg, buf, cap) (optional): more Prometheus text for
	 * .txdir/stats (the FUSE layer's request counters); returns the length
	 * it would write, as snprintf. Called with engine locks held; must not
	 * call the engine. */
	int (*stats)(void *arg, char *buf, size_t cap);
	void *arg;
};
void txd_set_notify(struct txd_fs *fs, const struct txd_notify *n);

/* ---- attributes --------------------------------------------------------- */
struct txd_attr {
	uint64_t ino; /* stable for the file's life, independent of node id */
	uint32_t mode, nlink, uid, gid;
	uint64_t rdev, size, blocks; /* blocks in 512-byte units */
	struct timespec atime, mtime, ctime;
	/* the kernel may cache these attributes (getattr/setattr replies):
	 * false for the control tree, whose attr timeout is zero */
	bool cacheable;
};

struct txd_entry {
	uint64_t node;
	uint64_t generation;
	struct txd_attr attr;
	bool cacheable; /* false: zero entry/attr timeouts (control tree) */
	bool cache_entry; /* the name may be cached though the attributes may
			   * not (a control file that always exists) */
};

/* The request's context: who is asking, passed explicitly to every call
 * that acts for a caller (no thread-local state). uid/gid own new objects
 * and decide what the control tree shows and allows; pid goes into commit
 * records (and leases); umask applies to new objects. kill_suidgid is the
 * kernel's "drop set-uid/set-gid" flag on this request (FUSE_HANDLE_KILLPRIV_V2:
 * FUSE_WRITE_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID, FATTR_KILL_SUIDGID), which
 * it sets for a caller without CAP_FSETID; the engine decides what it drops
 * (txd_setattr, txd_write, txd_open; txd_fallocate, which carries no flag,
 * drops them for any caller but root). A NULL context is the engine itself
 * (tests, replay): root, pid 0, no umask, no flag. */
struct txd_cred {
	uint32_t uid, gid;
	pid_t pid;
	mode_t umask;
	bool kill_suidgid;
};

enum {
	TXD_SET_MODE = 1 << 0,
	TXD_SET_UID = 1 << 1,
	TXD_SET_GID = 1 << 2,
	TXD_SET_SIZE = 1 << 3,
	TXD_SET_ATIME = 1 << 4,
	TXD_SET_MTIME = 1 << 5,
	TXD_SET_ATIME_NOW = 1 << 6,
	TXD_SET_MTIME_NOW = 1 << 7,
	TXD_SET_CTIME = 1 << 8,
	/* Drop set-user-ID, and set-group-ID if group-executable, as a write,
	 * truncate or chown by a caller without CAP_FSETID does. Nothing is
	 * committed for it when neither bit is set; control files ignore it.
	 * The context's kill_suidgid flag sets it too. */
	TXD_SET_KILL_SUIDGID = 1 << 9,
	/* chown(f, -1, -1): a change on ext4 even though nothing changes —
	 * ctime = now (committed alone if need be) and the set-id bits go as
	 * with any chown. When bits would go, the caller (the context) must
	 * own the file or be root, else -EPERM: ext4 makes that a mode change. */
	TXD_SET_CHOWN_NOOP = 1 << 10,
};
/* Two request shapes the kernel sends carry no flag (txd_setattr reads them
 * so, the FUSE layer passes them through):
 *  - valid == TXD_SET_CTIME alone, or valid == 0 on anything but a regular
 *    file: chown(f, -1, -1) (the kernel keeps a regular file's times
 *    itself): TXD_SET_CHOWN_NOOP;
 *  - valid == 0 on a regular file: the kernel's privilege drop before a
 *    write, fallocate or copy_file_range by a caller without CAP_FSETID
 *    (file_remove_privs): TXD_SET_KILL_SUIDGID. */
struct txd_setattr {
	uint32_t valid; /* TXD_SET_* */
	uint32_t mode, uid, gid;
	uint64_t size;
	struct timespec atime, mtime, ctime;
};

/* ---- namespace ----------------------------------------------------------- */
int txd_lookup(struct txd_fs *fs, uint64_t parent, const char *name, struct txd_entry *out);
void txd_forget(struct txd_fs *fs, uint64_t node, uint64_t nlookup);
int txd_getattr(struct txd_fs *fs, uint64_t node, struct txd_attr *out);
/* fh: the handle the change comes through (0 if none). A size change
 * through a writable handle joins that handle's working copy and is committed
 * with its content (SPEC §3: `cmd > file` never commits an empty file);
 * otherwise it is its own commit. */
int txd_setattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
		const struct txd_setattr *sa, uint64_t fh, struct txd_attr *out);
int txd_mknod(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      mode_t mode, dev_t rdev, struct txd_entry *out);
int txd_mkdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      mode_t mode, struct txd_entry *out);
int txd_symlink(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
		const char *target, struct txd_entry *out);
int txd_link(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, uint64_t newparent,
	     const char *newname, struct txd_entry *out);
int txd_unlink(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name);
int txd_rmdir(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE (from <linux/fs.h>). */
int txd_rename(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned int flags);
/* Returns the target length (no NUL), copying at most size bytes. */
ssize_t txd_readlink(struct txd_fs *fs, uint64_t node, char *buf, size_t size);

/* ---- directories --------------------------------------------------------
 * Offsets are stable cookies: an entry keeps its offset for its life, so a
 * readdir interleaved with creates and unlinks never repeats or skips a
 * surviving entry. "." and ".." are returned first (offsets 1 and 2). */
int txd_opendir(struct txd_fs *fs, uint64_t node, uint64_t *dh);
/* fill returns non-zero when the reply buffer is full: the entry was NOT
 * taken, and readdir stops. With plus=true, entry is a full txd_entry with a
 * lookup reference taken for it (except "." and ".."); on a refused fill the
 * engine drops that reference itself. */
typedef int (*txd_fill_fn)(void *arg, const char *name, const struct txd_entry *entry,
			   uint64_t next_off);
int txd_readdir(struct txd_fs *fs, uint64_t dh, uint64_t off, bool plus, txd_fill_fn fill,
		void *arg);
int txd_releasedir(struct txd_fs *fs, uint64_t dh);

/* ---- files -------------------------------------------------------------- */
struct txd_open_out {
	uint64_t fh;
	bool direct_io;  /* control files: bypass the page cache */
	bool keep_cache; /* page cache of this node id is still valid */
	bool nonseekable;
};
/* flags: open(2) flags as given by FUSE (O_ACCMODE, O_TRUNC, O_APPEND...).
 * With O_TRUNC and c->kill_suidgid the set-id bits go first (own commit).
 * -ESTALE: node was replaced, look the name up again (see top comment). */
int txd_open(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, int flags,
	     struct txd_open_out *out);
/* The file is new: O_TRUNC truncates nothing and no set-id bit is dropped
 * (as ext4), whatever c->kill_suidgid says. */
int txd_create(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	       mode_t mode, int flags, struct txd_entry *entry, struct txd_open_out *out);
ssize_t txd_read(struct txd_fs *fs, uint64_t fh, void *buf, size_t size, uint64_t off);
/* With c->kill_suidgid the file's set-id bits go first, in a commit of
 * their own carrying c->pid; the bytes join the working copy. */
ssize_t txd_write(struct txd_fs *fs, const struct txd_cred *c, uint64_t fh, const void *buf,
		  size_t size, uint64_t off);
/* txd_write for a caller that must not block: a `commit` written to
 * .txdir/txn/NAME/ctl while files of the view are open for writing waits
 * (bounded, SPEC §4) without this thread — it returns -EINPROGRESS and
 * later calls done(arg, err) exactly once, from an engine thread holding no
 * engine lock: err 0 = committed (then wait for txd_durable_async(fs,
 * txd_current_lsn(fs)) before replying size), else the write's error. Every
 * other write completes at once, as txd_write (done is not called). */
ssize_t txd_write_async(struct txd_fs *fs, const struct txd_cred *c, uint64_t fh,
			const void *buf, size_t size, uint64_t off,
			void (*done)(void *arg, int err), void *arg);
/* txd_read for a caller that must not block: a read of a wait file
 * (.txdir/leases/active/PID/NAME/released: until the grant current at open
 * ends; .txdir/leases/waiting/PID/NAME/granted: until PID is granted NAME)
 * that is not ready returns -EINPROGRESS and later calls done(arg, 0)
 * exactly once, from an engine thread holding no engine lock; the caller
 * then reads again (txd_read answers at once). A handle opened O_NONBLOCK
 * gets -EAGAIN instead, and so does txd_read. Every other read is txd_read.
 * txd_read_cancel: the caller gave up (FUSE_INTERRUPT): 0 = withdrawn, done
 * will not be called; -ENOENT = done is already due. */
ssize_t txd_read_async(struct txd_fs *fs, uint64_t fh, void *buf, size_t size, uint64_t off,
		       void (*done)(void *arg, int err), void *arg);
int txd_read_cancel(struct txd_fs *fs, void *arg);
/* Whether a read of fh may wait (a wait file): cheap, for the FUSE layer to
 * choose txd_read_async. */
bool txd_read_may_wait(struct txd_fs *fs, uint64_t fh);
/* poll(2): 1 if a read would not wait, else 0, and wake(arg) is called once
 * (no engine lock held) when it would not — or when the handle is released,
 * or when a later txd_poll of the same handle replaces the registration:
 * wake owns arg from then on. wake may be NULL (just ask). */
int txd_poll(struct txd_fs *fs, uint64_t fh, void (*wake)(void *arg), void *arg);
/* The caller of a write that returned -EINPROGRESS gave up (FUSE_INTERRUPT):
 * 0 = withdrawn, nothing applied, done will not be called; -ENOENT = it is
 * already completing and done will be called. */
int txd_write_cancel(struct txd_fs *fs, void *arg);
/* Commit the handle's file if it has uncommitted changes (FLUSH). The commit
 * is in the log when this returns; *lsn_out (optional) is its LSN, or the
 * current LSN when nothing was pending. In durability=full the caller must
 * then wait for txd_durable_async(lsn) before replying. */
int txd_flush(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c, uint64_t *lsn_out);
/* txd_flush for a caller that must not block: a FLUSH that waits for a
 * two-phase decision (a participants-mode replace of the global state —
 * close of .txdir/state/update, or of global_state.json written in place)
 * returns -EINPROGRESS and later calls done(arg, err) exactly once, from
 * an engine thread holding no engine lock, with the outcome (0 committed
 * and durable, -ECANCELED aborted, -EIO outcome unknown: unmounting).
 * Every other flush completes at once, as txd_flush (done is not called).
 * txd_flush_cancel: the caller gave up (FUSE_INTERRUPT): 0 = taken back,
 * done will not be called (the proposal itself goes on); -ENOENT = done is
 * due. */
int txd_flush_async(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c, uint64_t *lsn_out,
		    void (*done)(void *arg, int err), void *arg);
int txd_flush_cancel(struct txd_fs *fs, void *arg);
/* Whether a FLUSH of fh may be answered later (a control file's): the
 * caller then uses txd_flush_async, else txd_flush. */
bool txd_flush_may_wait(struct txd_fs *fs, uint64_t fh);
/* FSYNC of a file or directory handle: commit (as flush) and return the LSN
 * that must be durable; the caller then waits with txd_durable_async. */
int txd_fsync_prepare(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c,
		      uint64_t *lsn_out);
/* RELEASE carries no caller (the kernel sends none): a commit it makes
 * carries the pid that opened the handle. */
int txd_release(struct txd_fs *fs, uint64_t fh);
/* ---- advisory locks: fcntl(2) record locks and flock(2) (filelock.h) ----
 * Kept per file, not per node id, so a lock taken through a node id that a
 * writer's open has since replaced still excludes the openers of the new
 * one (SPEC §3). owner: the kernel's lock owner (POSIX: one per process'
 * file table; flock: one per open file description). A range is [start,
 * end], end TXD_LOCK_END for "to the end of the file". */
#define TXD_LOCK_END UINT64_MAX
struct txd_lock {
	short type; /* F_RDLCK, F_WRLCK, F_UNLCK */
	uint64_t start, end;
	uint32_t pid;
};
/* F_GETLK: *l becomes the first conflicting lock (with its pid), or its
 * type F_UNLCK. -EBADF for an unknown handle. */
int txd_getlk(struct txd_fs *fs, uint64_t fh, uint64_t owner, struct txd_lock *l);
/* F_SETLK(W) (flock: false) or flock(2) (flock: true; the whole file).
 * 0, -EAGAIN, -EDEADLK, -ENOLCK, -EINVAL; with wait, -EINPROGRESS: done(arg,
 * err) later, exactly once, from the thread that granted it (no engine
 * lock held), unless txd_lock_cancel(fs, arg) returns 0. intr (may be
 * NULL): the caller's interrupt sets *intr, then calls txd_lock_cancel; a
 * request not yet queued then is not (-EINTR). */
int txd_setlk(struct txd_fs *fs, uint64_t fh, uint64_t owner, bool flock,
	      const struct txd_lock *l, bool wait, const _Atomic bool *intr,
	      void (*done)(void *arg, int err), void *arg);
int txd_lock_cancel(struct txd_fs *fs, void *arg);
/* close(2) (FLUSH: the POSIX locks of owner on the file) and the last close
 * of an open file description (RELEASE: its flock lock). */
void txd_unlock_owner(struct txd_fs *fs, uint64_t fh, uint64_t owner, bool flock);
/* The last close of an open file description (RELEASE): the record locks
 * taken through it that are still there, its F_OFD_SETLK locks (filelock.h
 * L9). */
void txd_unlock_fh(struct txd_fs *fs, uint64_t fh);
/* FALLOCATE carries no kill flag: a caller other than root (taken as the
 * one holding CAP_FSETID: FUSE passes no capabilities) drops the set-id
 * bits, as fallocate(2) does on ext4, in a commit carrying c->pid. */
int txd_fallocate(struct txd_fs *fs, const struct txd_cred *c, uint64_t fh, int mode,
		  uint64_t off, uint64_t len);
/* Whether the durability mode (full) requires the caller to wait, after
 * every successful change (metadata operations, flush, setattr...), for
 * txd_durable_async(fs, txd_current_lsn(fs), ...) before reporting success.
 * The engine never waits itself, so no call blocks a FUSE worker. */
bool txd_commit_needs_wait(struct txd_fs *fs);

/* ---- durability --------------------------------------------------------- */
uint64_t txd_current_lsn(struct txd_fs *fs);
/* cb(arg, err) once every commit up to lsn is on stable storage (runs on the
 * engine's sync thread, or at once on this thread if already durable, or on
 * this thread after it led the fdatasync itself when none was in flight:
 * txd_notify.will_block is called first, wal.h W5). In durability=none it
 * completes at once. */
int txd_durable_async(struct txd_fs *fs, uint64_t lsn, void (*cb)(void *arg, int err),
		      void *arg);
int txd_sync_wait(struct txd_fs *fs); /* blocking: everything so far durable */
/* Blocking: write a checkpoint now and free what released snapshots kept
 * (the background thread does both every
 * checkpoint_bytes of log) and drop segments nothing needs any more. */
int txd_checkpoint(struct txd_fs *fs);

/* ---- extended attributes (user.* and the read-only user.txdir.*) --------- */
int txd_setxattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, const char *name,
		 const void *value, size_t size, int flags);
ssize_t txd_getxattr(struct txd_fs *fs, uint64_t node, const char *name, void *buf, size_t size);
ssize_t txd_listxattr(struct txd_fs *fs, uint64_t node, char *buf, size_t size);
int txd_removexattr(struct txd_fs *fs, const struct txd_cred *c, uint64_t node,
		    const char *name);

int txd_statfs(struct txd_fs *fs, struct statvfs *out);

/* ---- status -------------------------------------------------------------- */
struct txd_status {
	const char *store;
	enum txd_durability durability;
	uint64_t commits, last_commit_id, lsn, durable_lsn;
	uint64_t wal_bytes, wal_syncs, wal_synced_records;
	uint64_t versions_retained, open_handles, inodes, nodes;
	double oldest_snapshot_age_s;
	uint64_t checksum_errors, conflicts;
	uint64_t checkpoints, checkpoint_lsn; /* written since open; the newest */
	bool failed;
	/* a full disk refused an operation (degraded, not failed: the store
	 * stays writable for what fits), and which; the reserve (space.h) */
	bool disk_full;
	char disk_full_why[128];
	uint64_t reserve_bytes, reserve_held;
};
void txd_get_status(struct txd_fs *fs, struct txd_status *st);
const char *txd_durability_name(enum txd_durability d);

#pragma GCC visibility pop

#endif
