/*
 * dtc.h — prepared transactions: a transaction that joins a 2PC proposal
 * (SPEC §4 "prepare P as NAME", §5 "Two-phase commit"; issue 11 item 4).
 * Below the data tree like txn.c (core.h), on txn.c's internals (txn_i.h);
 * it reaches the vote service through vote.h (svc_vote) only.
 *
 * States (struct txn, txn.h), the function that makes each transition:
 *
 *   TXN_ACTIVE --dtc_prepare: checks, PREPARE record appended--> TXN_PREPARED
 *   TXN_ACTIVE --dtc_prepare: a lost conflict (votes "no")--> TXN_ABORTED
 *   TXN_PREPARED --the decision "committed" (on_decision, dtc_start):
 *                  commit record appended and applied--> TXN_COMMITTED
 *   TXN_PREPARED --the decision "aborted", or its vote refused after the
 *                  record (dtc_prepare): RESOLVE record--> TXN_ABORTED
 *
 * dtc_prepare runs steps 1-2b of a commit (txn.h; busy cases leave it
 * active with last_error), checks that its vote could be cast
 * (vote_check_unvoted: -ENOENT P unknown or not open or NAME not a
 * participant, -EROFS decided, -EEXIST NAME voted already, yes or no — by
 * a plain vote or another prepared transaction; nothing changes,
 * the transaction stays active), makes the packs durable and
 * appends ONE WAL_REC_PREPARE record — txid, P, NAME, the transaction's
 * name, uid, its write set (entries and inodes), its ops (the commit
 * record's body without the directory merge) and, per directory it
 * touched, the view's attributes with the nlink delta against S. That
 * record is its prepared state AND its vote. In the same hold the state
 * becomes TXN_PREPARED (status "prepared P") and S is released (the view is
 * frozen: its nodes are stale, txn.h T3). With fs->lock dropped it waits
 * for the record's sync, then casts the vote (vote_cast_external yes). A
 * refused cast (P vanished or was decided meanwhile) resolves it as aborted
 * (RESOLVE record) and the prepare fails with that errno.
 * An empty or read-only transaction prepares too (a PREPARE record with
 * no ops, nothing locked): a worker that had nothing to change still
 * votes yes, or every other worker's vote would time out waiting for it,
 * and the decision ends it (committed: an empty commit record).
 * Refused without any change: names not per SPEC §6 (-EINVAL), a writer in the view past the
 * bound or in the main tree on its write set (-EBUSY, last_error), another
 * prepare of a prepared one (-EBUSY; the same P and NAME again: 0), an
 * ended one (as a commit again, txn.h T7; -EINVAL once committed).
 *
 * Record payloads (little-endian):
 *   PREPARE  0 u8 version 1, 1 u8 0, 2 u16 proposal_len, 4 u16
 *            participant_len, 6 u16 name_len, 8 u64 txid, 16 u64 snapshot,
 *            24 u32 uid, 28 u32 gid, 32 u32 nkeys, 36 u32 ninos, 40 u32
 *            ndirs, 44 u32 body_len, 48 u64 began_ns, 56 u32 dirops_len,
 *            60 u32 0; 64 the three names; nkeys x {u64 parent, u16 len,
 *            name}; ninos x u64; ndirs x {u64 ino, i64 nlink delta, u32
 *            flags, u32 0}; body (a commit payload, rec.h); dirops (a commit
 *            payload: one OP_INODE per directory not removed, in order).
 *   RESOLVE  0 u8 version 1, 1 u8 outcome (2 aborted), 2 u16 reason_len,
 *            4 u32 0, 8 u64 txid, 16 reason.
 *   A committed decision needs no record of its own: the commit record
 *   (rec.h, header txn = txid) ends it, also in replay.
 *
 * Invariants.
 *  D1 Nothing but the decision of P ends a prepared transaction: abort,
 *     rmdir (so mountctl txn abort) are -EBUSY, the reaper skips it (it
 *     reaps active ones only), a restart keeps it.
 *  D2 While prepared its write set is locked: opening one of its inodes
 *     for writing in the main tree or another view fails EBUSY at open
 *     (dtc_ino_locked, from fsfile.c) — never at close; any other commit
 *     whose ops touch its entries or inodes fails EBUSY (dtc_locked_check
 *     in fs_commit; a transaction's commit checks first, dtc_overlap, and
 *     stays active with last_error "busy reason=prepared path=P"). The
 *     directories it changes are locked against removal, and those it
 *     removes against new entries. So its resolution validates nothing:
 *     nothing it touches could change.
 *  D3 Its prepared state and its vote are one WAL record, durable before
 *     the vote is cast: a crash at any step leaves it never prepared (and
 *     no vote), prepared in doubt, or resolved as decided — never
 *     half-applied (the commit is one record, as any commit).
 *  D4 Resolution follows the decision: committed → the commit record is
 *     built from the PREPARE record (ops, then each directory's attributes
 *     recomputed as the main head now + the view's delta) and appended and
 *     applied like a commit; aborted → a RESOLVE record, status "aborted
 *     decision proposal=P reason=R" (R last, escaped like a path). Neither
 *     waits for durability: a lost tail replays the PREPARE record and the
 *     decision resolves it again.
 *  D5 Restart: replay of a PREPARE record rebuilds it (in_doubt: status,
 *     write set, ops; no view — .txdir/txn/NAME/root is gone), moves
 *     next_ino past the inodes it creates, and registers its vote
 *     (vote_cast_external replaying); a commit record with its txid or a
 *     RESOLVE record ends it. After svc_start (dtc_start) each one still
 *     prepared asks vote_outcome and resolves if decided; else the
 *     listener does when P is decided.
 *  D6 Checkpoints carry the prepared transactions' records (ckpt.c section
 *     2), taken in the hold that chose the checkpoint's LSN, so a
 *     checkpoint that moves the replay start past a PREPARE record keeps
 *     it; replay skips a PREPARE whose txid is known. Its packs stay
 *     (nothing collects packs).
 *
 *  D9 Directory moves. A commit that moves a directory is checked against
 *     the tree it makes (txn.c: no directory ends up inside itself); a
 *     prepared transaction's moves apply later, at the decision, without
 *     validation (D2). So while a prepared transaction moves a directory
 *     (t->moves_dir; a rebuilt one is assumed to), every other directory
 *     move — a plain rename in the main tree (dtc_locked_check), another
 *     transaction's commit or prepare (dtc_overlap) — is -EBUSY until it
 *     resolves: two moves that each put a directory inside the other could
 *     otherwise cut both off the tree.
 *
 * Deferred prepare (dtc_prepare_async: "prepare P as NAME" written to ctl
 * through FUSE). A prepare waits — for the view's writers (bounded, as a
 * commit's step 1), for the packs' and its record's sync, and for its vote
 * (which may decide P: the DECIDE record's sync) — so it must not hold a
 * FUSE worker meanwhile. It is queued (holding a reference to t) to the
 * file system's prepare thread (struct dtc_worker, started at the first
 * deferred prepare, joined by dtc_stop at unmount), which runs the prepares
 * one at a time in arrival order, exactly as dtc_prepare, and answers each
 * with done(arg, err) once, with no engine lock held. A FUSE_INTERRUPT
 * (txd_write_cancel → txn_cancel_wait → dtc_cancel) withdraws a prepare
 * only while it is still queued — nothing changed, never answered; once it
 * has started it runs to its end and is answered (a PREPARE record cannot
 * be taken back: the transaction is prepared and its vote cast). One
 * thread serialises prepares: each is a few syncs, and they share the
 * WAL's group commit anyway.
 *  D7 Retention (vote.h V10) never drops the decision a prepared
 *     transaction waits on: from the moment it prepares (before its record)
 *     until it resolves, it pins its proposal (vote_pin; memory only). A
 *     restart pins again when replay or the checkpoint rebuilds it
 *     (dtc_replay_prepare), which is before vote_start's first retention
 *     pass — so a server down for longer than the retention, with a
 *     decision logged but not yet resolved, still resolves at dtc_start.
 *     Resolution (also a replayed commit or RESOLVE) unpins; the service's
 *     next tick then drops the proposal if its retention has passed.
 *  D8 Its directory .txdir/txn/NAME while prepared — the same before and
 *     after a restart: ctl, info.json and status, no root (ENOENT: the view
 *     is frozen at prepare, and a rebuilt one has none; nothing of the
 *     transaction is readable until it commits, then in the main tree).
 *     status "prepared P". info.json: state "prepared", proposal,
 *     participant, open_handles 0, in_doubt (true once rebuilt from the
 *     log); once rebuilt, creator_pid 0 (unknown), ops the PREPARE record's
 *     ops (without the directories' attribute ops), files_changed only the
 *     existing files it changes (the files it creates are ops only) — the
 *     commit it makes is the same either way. ctl: "prepare P as NAME"
 *     again 0 (a participant retrying after a crash), another P or NAME
 *     EBUSY, commit and abort EBUSY (D1), readonly EINVAL; none changes it.
 *     rmdir EBUSY (D1). Once resolved it reads as any ended transaction
 *     (status committed/aborted, still no root) until rmdir.
 *
 * Lock order: fs->lock → the vote service's lock (vote_outcome, a read;
 * vote_pin, vote_unpin: brief, they never log); vote_cast_external is
 * called with no fs->lock held; the decision listener runs with no lock
 * held and takes fs->lock. The prepare thread holds fs->lock except where
 * prepare drops it and while it answers. All dtc_* below run with fs->lock
 * held unless noted.
 */
#ifndef TXD_DTC_H
#define TXD_DTC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct txd_fs;
struct txn;

/* "prepare P as NAME"; fs->lock dropped meanwhile (the record's sync and
 * the vote). 0: prepared and voted yes (or already resolved by the
 * decision its vote completed). */
int dtc_prepare(struct txd_fs *fs, struct txn *t, pid_t pid, const char *proposal,
		const char *participant);
/* As dtc_prepare without holding the caller's thread (a FUSE worker) — see
 * "Deferred prepare" above: -EINPROGRESS and done(arg, err) answers exactly
 * once, with no engine lock held, unless withdrawn by dtc_cancel; a
 * transaction not active (or done NULL) is answered at once, as
 * dtc_prepare (done is not called). */
int dtc_prepare_async(struct txd_fs *fs, struct txn *t, pid_t pid, const char *proposal,
		      const char *participant, void (*done)(void *arg, int err), void *arg);
/* Withdraw the deferred prepare registered with arg (FUSE_INTERRUPT): 0 while
 * it is still queued (done is never called, nothing changed); -ENOENT once it
 * has started (done will be called). Takes fs->lock. */
int dtc_cancel(struct txd_fs *fs, void *arg);
/* Unmount (no lock held, after the FUSE session, before svc_close): joins the
 * prepare thread; a prepare under way finishes, queued ones are dropped
 * unanswered (nobody is left to answer, as txn_free's deferred commits). */
void dtc_stop(struct txd_fs *fs);
/* D2: ino may not be opened for writing (from the view of self; NULL: the
 * main tree). */
bool dtc_ino_locked(struct txd_fs *fs, const struct txn *self, uint64_t ino);
/* D2: -EBUSY when the finished record ops[0..len) touches the write set of
 * a prepared transaction other than its own (header txn). */
int dtc_locked_check(struct txd_fs *fs, const uint8_t *ops, size_t len);
/* D2: a path of t's write set that a prepared transaction locked. */
bool dtc_overlap(struct txd_fs *fs, struct txn *t, char *path, size_t cap);
/* D5, replay (single-threaded start-up). */
int dtc_replay_prepare(struct txd_fs *fs, const void *payload, size_t len, uint64_t lsn);
int dtc_replay_resolve(struct txd_fs *fs, const void *payload, size_t len);
void dtc_replayed_commit(struct txd_fs *fs, uint64_t txn, uint64_t lsn);
/* D5, after svc_start, no lock held: the decision listener, then every
 * still-prepared transaction whose proposal is decided resolves. */
void dtc_start(struct txd_fs *fs);
/* D6: the prepared transactions' records (malloc'd; NULL, 0: none), and
 * loading them (before replay). */
int dtc_save(struct txd_fs *fs, void **buf, size_t *len);
int dtc_load(struct txd_fs *fs, const void *buf, size_t len);

#endif
