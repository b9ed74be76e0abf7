/*
 * state.h — the global state document (SPEC §5 "Global state"): one JSON
 * document with a version, replaced whole, with compare-and-swap; the
 * decision logic apart from where its records live and from any file
 * interface (the control tree's .txdir/state/ is ctl_state.c).
 *
 * Layering: knows nothing of FUSE, the control tree or fs.c. Records go to
 * a backend (struct state_backend: append + sync; the local WAL adapter is
 * state_wal.c, WAL_REC_STATE); replaces are reported through a hook (the
 * services host turns them into events and wakes the `changed` waits).
 *
 * The document. A fresh store holds version 0 with the document "{}\n"
 * (nothing logged). A replace stores the bytes it is given (any JSON value,
 * surrounding whitespace kept, at most STATE_DOC_MAX bytes) and bumps the
 * version by exactly one.
 *
 * States of a replace (state_replace; one caller's view):
 *
 *   checked   the bytes are valid JSON of at most STATE_DOC_MAX bytes
 *             (else -EINVAL / -EFBIG), and if_version (unless STATE_ANY)
 *             equals the newest version appended (else -EBUSY)
 *   appended  REPLACE record appended with version newest+1, under the
 *             lock, so log order is version order; newest = that version;
 *             not visible yet
 *   durable   the backend's sync of its LSN returned (with opts.sync)
 *   visible   state_get returns it (or a later version), the hook runs,
 *             the caller is answered 0
 *
 * Participants mode (SPEC §5; S7-S10). With a participants list set
 * (state_set_participants, a PARTICIPANTS record), a replace does not
 * append a REPLACE record: it opens a proposal of the vote service
 * (opts.vote) named "state-V" (V = newest version + 1; "state-V.K", K =
 * 2, 3, ... when an aborted attempt at V still holds the name until the
 * vote's retention removes it), created by uid 0, whose payload is the new
 * document and whose participants are the list; the vote's default
 * timeout; the prefix is reserved (vote.h V12: nobody else can create
 * such a proposal, so state_resume trusts what it finds). Its states:
 *
 *   checked    as above, plus: no state proposal open (else -EBUSY at
 *              once, S10), if_version is the newest (-EBUSY), the fence
 *              holds (-ESTALE, S11)
 *   proposed   CREATE, PARAM (payload), OPEN records durable (vote.h);
 *              the replace returns here with STATE_NOWAIT (rename)
 *   decided    the DECIDE record durable (vote.h V1); the services host
 *              calls state_decided on the deciding thread
 *   appended   committed: the payload as a REPLACE record at version V
 *   visible    as above; the waiter (state_wait) gets 0 and V
 *   aborted:   nothing appended; the waiter gets -ECANCELED (any reason:
 *              a "no", the timeout)
 *
 * Durability order: OPEN (with the payload before it) < DECIDE < REPLACE.
 * A crash before DECIDE: the proposal is open at restart (its timeout
 * resumes, vote.h V7) and state_resume makes it the pending one; a crash
 * between DECIDE and REPLACE: state_resume (before vote_start) finds the
 * committed proposal at newest + 1 and appends its payload as the REPLACE
 * record. It runs before vote_start's retention pass, so a committed
 * proposal older than the retention is applied before it is removed; the
 * decisions vote_start makes (complete or overdue) reach state_decided.
 *
 * Invariants of the participants mode.
 *  S7 The list: names as vote.h V5, separated by commas or whitespace,
 *     stored normalised "a,b,c"; empty: plain mode. Changing it while a
 *     state proposal is open: -EBUSY.
 *  S8 Only a committed proposal's payload becomes visible, at version V;
 *     the version bumps then, never at the proposal's opening.
 *  S9 A committed proposal is applied once: at version newest + 1 only
 *     (a REPLACE at V already there: nothing), by state_decided or at
 *     start-up by state_resume.
 *  S10 One state proposal at a time: a replace (any mode of writing)
 *     while one is open gets -EBUSY at once.
 *  S11 Fenced replace (the update's if_lease, SPEC §4): fence->check runs
 *     under s->lock right before the REPLACE record is appended (plain
 *     mode) or before the proposal is opened (participants mode); non-zero
 *     (-ESTALE): nothing logged, nothing applied. In participants mode the
 *     proposal also carries the fence (vote_set_fence, vote.h V14), so the
 *     vote's commit point checks it again: a lease lost while the vote ran
 *     aborts the proposal ("lease NAME not held with token T"), nothing is
 *     applied, and the waiter gets -ESTALE rather than -ECANCELED.
 *
 * Invariants.
 *  S1 A replace is durable before it is visible (opts.sync: durability !=
 *     none): state_get and the hook never show a version whose record a
 *     crash could lose. With opts.sync false, visible once appended.
 *  S2 Versions increase by one per replace, in log order; a reader never
 *     sees the version go down, also across a restart.
 *  S3 Compare-and-swap: a replace with if_version N succeeds only if N is
 *     the newest version (appended, which includes the visible one); two
 *     replaces with the same N: one succeeds, the other gets -EBUSY. No
 *     lost update between concurrent writers.
 *  S4 An invalid document (not JSON, empty, over STATE_DOC_MAX) is refused
 *     before anything is logged; the old document stays.
 *  S5 Replay is idempotent over a snapshot: a REPLACE whose version is not
 *     above the current one is skipped, so a snapshot taken (under the
 *     lock) at any time after a checkpoint chose its LSN may be followed by
 *     replay of every record after that LSN. The snapshot holds the newest
 *     appended document (not only the visible one): a record appended
 *     before the checkpoint's LSN but not yet synced is in the snapshot.
 *  S6 A failed append or sync makes the service failed (sticky): every
 *     later replace returns -EIO, reads go on with the visible document;
 *     only a restart (replay) reconciles memory with the log. A replace
 *     told -EIO may or may not survive a restart — whole, never torn.
 *  S12 The last STATE_PAST documents visible before the current one stay
 *     readable by version (state_get_at), so a reader that learnt a
 *     version a moment ago still gets that version's bytes (the control
 *     tree gives each version its own node id: SPEC §3). Older: -ESTALE.
 *
 * Lock order: state->lock, then a fence's check (the lease service's lock:
 * lease_get only reads), then the backend's append (log order = version
 * order); its sync without. The vote service is called with no state lock
 * held (its lock and hooks never take state->lock under it). The hook runs
 * with no lock held, on the replacing (or deciding) thread (or never,
 * during replay).
 *
 * Blocking: state_replace waits for the backend's sync (opts.sync): call it
 * from a thread that may block, with no fs->lock held, never from a
 * wal_sync_async callback.
 *
 * Record encoding (the backend's payload; little-endian):
 *    0 u8  version   1
 *    1 u8  kind      SREC_REPLACE 1
 *    2 u16 zero
 *    4 u32 doc_len
 *    8 u64 version   the document's version (>= 1)
 *   16 u64 time_ns   CLOCK_REALTIME of the replace
 *   24 u32 uid, 28 u32 pid   who replaced it
 *   32 doc_len bytes of the document                            32 + doc_len
 *
 * PARTICIPANTS record (kind 2): the same header, version 0, doc_len bytes
 * of the normalised list (0: plain mode again).
 *
 * Snapshot (state_snapshot_encode): u32 magic "TXST", u32 version 1, u32
 * len, then len bytes: one REPLACE record of the newest document (len 0 at
 * version 0). Version 2 (written only when participants are set) adds u32
 * len and a PARTICIPANTS record. Decoding replays them (S5).
 */
#ifndef TXD_STATE_H
#define TXD_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_DOC_MAX (1u << 20)   /* bytes of a document: -EFBIG above */
#define STATE_ANY UINT64_MAX       /* state_replace: no compare-and-swap */
#define STATE_PAST 8               /* S12: earlier versions kept readable */
#define STATE_REC_HDR 32

enum { SREC_REPLACE = 1, SREC_PARTICIPANTS = 2 };

#define STATE_PROPOSAL_PREFIX "state-" /* reserved proposal names (S8) */
#define STATE_NOWAIT 1u                /* state_submit: return once proposed */

enum vote_outcome;
struct vote_svc;

struct state_svc;

/* Where records live; the same contract as lease_backend (lease.h). */
struct state_backend {
	int (*append)(void *arg, const void *rec, size_t len, uint64_t *lsn);
	int (*sync)(void *arg, uint64_t lsn);
	void *arg;
};

struct state_who {
	uint32_t pid, uid;
};

/* A replace that became visible (S1). */
struct state_event {
	uint64_t version, time_ns;
	struct state_who by;
	size_t bytes;
};

struct state_opts {
	bool sync;                 /* durability != none: sync before visible */
	void (*event)(void *arg, const struct state_event *ev); /* may be NULL */
	void *event_arg;
	struct vote_svc *vote;     /* participants mode; NULL: plain mode only */
};

/* S11: check: 0 while the fence holds, else -ESTALE; under s->lock. lease
 * and token: the same fence for the vote's commit point (participants
 * mode; vote.h V14, checked there by the vote service's hooks.fence). */
struct state_fence {
	int (*check)(void *arg);
	void *arg;
	const char *lease;
	uint64_t token;
};

struct state_result {
	uint64_t version;          /* the new version (0 while only proposed) */
	uint64_t ticket;           /* participants mode: for state_wait */
	char proposal[256];        /* participants mode: its name */
};

int state_open(const struct state_opts *opts, const struct state_backend *be,
	       struct state_svc **out);
void state_close(struct state_svc *s);

/* ---- recovery: before any replace, single-threaded --------------------- */
/* One record (S5). -TXD_EFORMAT unknown version or kind; -TXD_ECORRUPT bad
 * lengths; -ENOMEM. */
int state_replay(struct state_svc *s, const void *payload, size_t len);
/* malloc'd snapshot (format above), and its loading (S5). */
int state_snapshot_encode(struct state_svc *s, void **buf, size_t *len);
int state_snapshot_decode(struct state_svc *s, const void *buf, size_t len);

/* ---- operations --------------------------------------------------------- */
/* 0 if doc (len bytes, need not be NUL-terminated) is one JSON value with
 * only whitespace around it, of at most STATE_DOC_MAX bytes; -EFBIG, -EINVAL. */
int state_check(const char *doc, size_t len);
/* The same without the size limit (an update's envelope holds a document
 * of up to STATE_DOC_MAX bytes and more): 0 or -EINVAL. */
int state_check_json(const char *doc, size_t len);

/* Replace the document (S1-S4, S6). if_version: STATE_ANY or the version
 * the caller read. *version (may be NULL) gets the new version.
 * -EINVAL, -EFBIG (S4), -EBUSY (S3), -EIO (S6), -ENOMEM. */
int state_replace(struct state_svc *s, const char *doc, size_t len, uint64_t if_version,
		  const struct state_who *by, uint64_t *version);

/* Every replace (plain or participants mode). fence may be NULL. flags:
 * STATE_NOWAIT returns 0 once proposed (participants mode; res->ticket
 * and res->proposal set) — else a participants-mode replace waits for the
 * outcome on this thread: 0 committed and visible, -ECANCELED aborted.
 * Also -EBUSY (S3, S10), -ESTALE (S11), the vote service's errors. */
int state_submit(struct state_svc *s, const char *doc, size_t len, uint64_t if_version,
		 const struct state_who *by, const struct state_fence *fence, unsigned flags,
		 struct state_result *res);
/* The outcome of the proposal of ticket: waits (no timeout of its own: the
 * vote's timeout decides). 0 and *version, -ECANCELED, -ESTALE (S11: the
 * fence failed at the vote's commit point), -EIO. */
int state_wait(struct state_svc *s, uint64_t ticket, uint64_t *version);
/* state_wait without a thread: the outcome now (as state_wait) if the
 * proposal has ended, else -EINPROGRESS and later done(arg, outcome)
 * exactly once, from the thread that applies the decision (or state_close:
 * -EIO), with no service lock held. state_wait_cancel(s, arg): 0 = taken
 * back, done will not be called (the proposal goes on); -ENOENT = done is
 * due or done. -ENOMEM. */
int state_wait_async(struct state_svc *s, uint64_t ticket, void (*done)(void *arg, int err),
		     void *arg);
int state_wait_cancel(struct state_svc *s, void *arg);
/* S7. -EINVAL, -EBUSY, -EIO. */
int state_set_participants(struct state_svc *s, const char *list, size_t len,
			   const struct state_who *by);
/* malloc'd "a,b,c" ("" in plain mode), NULL: -ENOMEM. */
char *state_participants(struct state_svc *s);
/* A state proposal is open (its name in proposal). */
bool state_pending(struct state_svc *s, char *proposal, size_t size);
/* The decision of a proposal (the services host, on the deciding thread,
 * no lock held): ignores any but the pending state proposal. */
void state_decided(struct state_svc *s, const char *proposal, enum vote_outcome o);
/* Start-up, after replay and before vote_start (S9). */
int state_resume(struct state_svc *s);
/* Tests only: a committed proposal's REPLACE is not appended (-EIO to
 * its waiter), as if the server died between DECIDE and REPLACE. */
extern bool state_test_fail_apply;
/* The newest appended version. */
uint64_t state_newest(struct state_svc *s);

/* ---- reading ------------------------------------------------------------ */
/* A malloc'd copy of the visible document (NUL-terminated, *len without
 * the NUL) and its version. -ENOMEM. */
int state_get(struct state_svc *s, char **doc, size_t *len, uint64_t *version);
/* The document of version (S12): the visible one or one of the STATE_PAST
 * before it, as state_get; -ESTALE when it is older, -ENOMEM. */
int state_get_at(struct state_svc *s, uint64_t version, char **doc, size_t *len);
uint64_t state_version(struct state_svc *s);
/* The visible document's version, time, writer and size (time 0 and the
 * server at version 0). */
void state_info(struct state_svc *s, struct state_event *out);
/* Replaces made visible since state_open (not replayed ones). */
uint64_t state_replaces(struct state_svc *s);

#endif
