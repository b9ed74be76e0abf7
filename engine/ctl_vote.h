/*
 * ctl_vote.h — the control tree's `.txdir/consensus/` and
 * `.txdir/dtc/participant_inbox/` (SPEC §5 "Two-phase commit"): a thin
 * adapter from paths and files to the vote service (vote.h, through the
 * services host svc.h). ctl.c routes every node of a kind at or above
 * CTL_VOTE_FIRST here; this file knows nothing else of ctl.c than the two
 * helpers of ctl_lease.h (ctl_entry, ctl_fill).
 *
 *   consensus/
 *     proposals/            1777: mkdir P creates proposal P (vote_create);
 *                           rmdir P removes it while it was never opened
 *                           (vote.h V11: its creator or root, as the
 *                           sticky bit says; an open or decided one EBUSY)
 *     proposals/P/          0755, owned by its creator. Files:
 *       participants        0644: a write opens the vote (names separated by
 *                           commas, spaces or newlines; write-once: the same
 *                           list again succeeds, another EEXIST); reads one
 *                           name a line (empty before the vote opens)
 *       payload             0644: ≤ 1 MiB (EFBIG), buffered per open file
 *                           and set at FLUSH or fsync (close returns the outcome;
 *                           an O_TRUNC open with no write sets nothing);
 *                           EROFS once the vote is open
 *       timeout             0644: seconds ("30", "0.5"), default 30; EROFS
 *                           once the vote is open
 *       info.json           state (created, open, decided), creator uid,
 *                           times (RFC 3339), timeout, deadline, payload
 *                           size, participants with their votes, outcome
 *       wait                0444: a read blocks until P is decided and
 *                           prints the decision (as decisions/P); no FUSE
 *                           worker is held (a deferred reply); O_NONBLOCK
 *                           EAGAIN; poll(2); interruptible. P removed
 *                           undecided (never opened): ENOENT
 *     votes/P/              0777, once P is open: one file per participant
 *                           (creating another: ENOENT, an unknown one)
 *     votes/P/NAME          0666: write yes|no (vote.h V3 errnos reach
 *                           write(2)); reads "yes", "no" or nothing
 *     decisions/P           0444, appears once P's decision is durable:
 *                           "committed" or "aborted REASON"
 *   dtc/participant_inbox/  lists the participants some open proposal
 *                           still waits for
 *   dtc/participant_inbox/NAME/
 *                           0555; any valid NAME can be looked up (empty
 *                           when nothing waits for it)
 *   dtc/participant_inbox/NAME/P
 *                           0444: an open proposal that lists NAME and has
 *                           no vote from NAME yet; reads its payload
 *
 * One host, one trust domain: whoever may write a file may act through
 * it. Votes are 0666 — any local user who can reach the mount (with
 * allow_other) may vote as any participant; a participant is a name, not
 * an account. The proposal's own files (participants, payload, timeout)
 * are its creator's (0644): the kernel's default_permissions decides.
 *
 * One-word files (participants, timeout, votes) act on each write(2), so
 * their errors reach the writer (SPEC §3); payload is a document and acts
 * at FLUSH (ctl_vote_flush).
 *
 * Node keys: a proposal's id (vote.h V8; never reused) for P and its files,
 * votes/P and decisions/P; id << 10 | index for votes/P/NAME (index in the
 * participants list, < VOTE_PARTICIPANTS_MAX); an interned name id for
 * participant_inbox/NAME, name_id << 32 | id for its entries.
 *
 * Blocking: every call that logs (mkdir, rmdir, the writes, payload's
 * flush) waits for the WAL's sync: each runs with fs->lock released,
 * after fs_will_block. Reads of the service (vote_get*, vote_list*) are
 * also made under fs->lock (lookup, getattr): lock order fs->lock, then
 * the vote service's lock, then the WAL's (wal.h: wal_append takes it
 * briefly); the vote service holds its lock across no sync and never
 * takes fs->lock (vote.h "Lock order"). Waits hold no thread: wait is completed by the
 * vote listener (svc_set_vote_listener) on the deciding thread.
 */
#ifndef TXD_CTL_VOTE_H
#define TXD_CTL_VOTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "txdir.h"

#define CTL_VOTE_FIRST 192 /* control kinds from here on are this file's */

struct txd_fs;
struct node;

/* A writable handle's buffered document (payload), kept by ctl.c per open
 * file and freed by it at release. */
struct ctl_vote_acc {
	char *buf;	     /* the bytes written, by offset */
	size_t len, cap;
	bool dirty;
	int err;	     /* a write that failed: FLUSH returns it */
	uint64_t pbase, pend; /* participants: the list written in pieces (vote.h V15) */
	bool parts_held;      /* the bytes so far end inside a name: act at the next write or FLUSH */
	bool parts_acted;     /* a write of this list (from pbase) acted already */
};

bool ctl_vote_owns(unsigned kind);
bool ctl_vote_is_dir(unsigned kind);
/* The fixed directories (consensus/, proposals/, votes/, decisions/,
 * dtc/participant_inbox/): never go away, so the kernel may cache their
 * entries (a voter's path walk costs no lookup round trip for them). */
bool ctl_vote_cacheable(unsigned kind);
/* `.txdir/consensus` and `.txdir/dtc/participant_inbox` (ctl.c lists them). */
unsigned ctl_vote_root_kind(void);
unsigned ctl_vote_inbox_kind(void);

/* Called by ctl.c with fs->lock held; they may release it meanwhile. */
int ctl_vote_lookup(struct txd_fs *fs, struct node *parent, const char *name, struct txd_entry *e);
int ctl_vote_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a);
int ctl_vote_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
		     void *arg);
int ctl_vote_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		   const char *name, struct txd_entry *e);
int ctl_vote_rmdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		   const char *name);
/* Content of a file at open (malloc'd). */
int ctl_vote_render(struct txd_fs *fs, struct node *n, char **buf, size_t *len);
bool ctl_vote_writable(unsigned kind);
/* A create in a directory of this kind: -ENOENT in votes/P (a participant
 * not in the list: SPEC §5), else -EPERM. */
int ctl_vote_create_err(unsigned kind);
/* A write (fs->lock NOT held): acts at once, or buffers into acc (payload;
 * participants whose bytes end inside a name, until the name ends or FLUSH). */
ssize_t ctl_vote_write(struct txd_fs *fs, const struct txd_cred *c, struct node *n, const void *buf,
		       size_t size, uint64_t off, struct ctl_vote_acc *acc);
/* FLUSH of a writable handle (fs->lock NOT held): sets a buffered payload,
 * or acts on participants held by the write that ended inside a name. */
int ctl_vote_flush(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
		   struct ctl_vote_acc *acc);

/* ---- the wait file: as ctl_lease.h's wait files ------------------------------ */
struct vwait;
bool ctl_vote_is_wait(unsigned kind);
int ctl_vote_wait_open(struct txd_fs *fs, struct node *n, struct vwait **out);
void ctl_vote_wait_close(struct txd_fs *fs, struct vwait *w);
ssize_t ctl_vote_wait_read(struct txd_fs *fs, struct vwait *w, void *buf, size_t size, uint64_t off,
			   bool nonblock, void (*done)(void *arg, int err), void *arg);
int ctl_vote_wait_cancel(struct txd_fs *fs, void *arg);
int ctl_vote_wait_poll(struct txd_fs *fs, struct vwait *w, void (*wake)(void *arg), void *arg);

#endif
