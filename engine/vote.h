/*
 * vote.h — the two-phase-commit vote service: the decision logic of SPEC §5
 * "Two-phase commit", apart from where its records live (struct
 * vote_backend: append + sync, as lease.h; the local WAL adapter is
 * vote_wal.c, record type WAL_REC_VOTE) and from any file interface (the
 * control tree's .txdir/consensus/ is ctl_vote.c).
 *
 * The server is the coordinator: a proposal's participants vote, the
 * service decides, logs the decision durably, and only then shows it.
 *
 * States of a proposal (one per name at a time):
 *
 *   (none) --vote_create (mkdir)--> CREATED     CREATE record
 *   CREATED --vote_set_payload / vote_set_timeout--> CREATED  PARAM record
 *   CREATED --vote_set_fence--> CREATED                       FENCE record
 *   CREATED --vote_set_participants--> OPEN     OPEN record (the deadline)
 *   OPEN --vote_cast yes/no--> OPEN             VOTE record
 *   OPEN --first "no" | last "yes" (vote_cast, vote_cast_external) |
 *          deadline passed (vote_tick, vote_start)--> DECIDING
 *            DECIDE record appended, not yet visible
 *   DECIDING --backend sync of the DECIDE record--> DECIDED (visible)
 *   CREATED --vote_remove (rmdir: the creator's uid or root)--> (none)
 *            REMOVE record
 *   CREATED --its timeout after creation passed (vote_tick)--> (none)
 *   DECIDED --opts.retain after the decision (vote_tick)--> (none)
 *            (retention removals are not logged: they follow from the
 *            records' realtime stamps, so replay + vote_start repeat them)
 *
 * Invariants.
 *  V1 A decision is durable before it is visible (vote_outcome, vote_get,
 *     events, the decision listener, the voter's return) and never changes:
 *     exactly one DECIDE record per proposal, appended under the lock by
 *     whoever first finds the proposal decided; later votes get -EROFS.
 *  V2 The first "no" decides at once: aborted "no from NAME" (for a vote
 *     cast with a reason by vote_cast_external: "no from NAME: REASON").
 *     The last missing "yes" decides committed. The deadline decides
 *     aborted "timeout missing A,B" (the missing participants, in the order
 *     of the participants list).
 *  V3 Votes: yes or no, one per participant. The same vote again returns 0
 *     (also after the decision: a retry of a vote that counted); a
 *     different vote -EEXIST; a participant not in the list, or a proposal
 *     that does not exist or is not open yet, -ENOENT; a malformed ballot
 *     (vote_parse_ballot) -EINVAL; any new vote after the decision -EROFS.
 *     A vote returns once its VOTE record is durable (the same vote again
 *     waits for that same record).
 *  V4 Participants are write-once: the list opens the vote; the same list
 *     again returns 0, a different one -EEXIST. Names separated by commas,
 *     spaces, tabs or newlines; none, a duplicate, a bad name or more than
 *     VOTE_PARTICIPANTS_MAX -EINVAL. Payload and timeout can be set only
 *     before the vote opens (-EROFS after); payload over VOTE_PAYLOAD_MAX
 *     -EFBIG; timeout in (0, VOTE_TIMEOUT_MAX_NS], default opts.timeout_ns
 *     (30 s).
 *  V5 Names (proposals and participants) per SPEC §6: 1..255 bytes, not "."
 *     or "..", no '/', whitespace or control characters (-EINVAL).
 *  V6 Per-uid limit: a uid holding opts.max_proposals proposals (any state)
 *     gets -EDQUOT from vote_create; root is not limited.
 *  V7 Timeouts across a restart: the OPEN record carries the deadline on
 *     CLOCK_REALTIME (opened + timeout). While the server runs the
 *     deadline is kept on CLOCK_MONOTONIC (txd_os->now_monotonic_ns); at
 *     vote_start the remaining time is deadline - now (realtime): the
 *     downtime counts, so a proposal whose deadline passed while the server
 *     was down is aborted "timeout missing ..." at start-up.
 *  V8 Replay is idempotent over a snapshot. Every proposal has an id,
 *     store-wide increasing (the CREATE record's); a record whose id is
 *     below the current proposal of that name, or whose proposal is not
 *     there (removed, or created before the snapshot's LSN and since
 *     removed), is skipped; a record whose effect is already there (the
 *     same vote, the same decision) is skipped. Replay never decides:
 *     vote_start decides what the log left undecided (complete, or
 *     overdue: V7).
 *  V9 A failed append or sync makes the service failed (sticky): every
 *     later call that would log returns -EIO (memory may be ahead of the
 *     log; a restart reconciles). A decision whose sync failed stays
 *     DECIDING, invisible, until the restart decides again from the log.
 *  V10 Retention: a decided proposal is kept opts.retain_ns (default 1 h)
 *     after its decision, then removed with its votes; a never-opened one
 *     is removed once its timeout after creation has passed (both on
 *     CLOCK_REALTIME, from the records' stamps). A pinned proposal
 *     (vote_pin: a prepared transaction still waits on its decision, dtc.h
 *     D7) is kept past that until the last vote_unpin; pins are in memory
 *     only — their holders pin again in replay, before vote_start, so a
 *     server down for longer than the retention still finds the decision.
 *  V11 rmdir (vote_remove) of a CREATED proposal: its creator's uid or
 *     root (else -EPERM). An OPEN or decided one: -EBUSY (an open vote is
 *     decided by its votes or its timeout, a decision is kept for V10).
 *  V12 Names beginning VOTE_RESERVED_PREFIX ("state-") are the state
 *     service's (state.h S8): vote_create refuses them (-EPERM, also for
 *     root); only vote_create_reserved makes them.
 *  V13 Creating and opening are not synced (the latency of a 2PC round):
 *     vote_create, vote_set_payload, vote_set_timeout and
 *     vote_set_participants return once their record is appended (the
 *     backend's append: in the kernel, so a crash of the server loses
 *     nothing, wal.h W6), without waiting for a sync. Every later sync
 *     covers them: the backend is one ordered log, so the first durable
 *     VOTE (or a prepared transaction's PREPARE, or a timeout's DECIDE) of
 *     the proposal makes its CREATE, PARAM and OPEN durable first. What a
 *     power cut may lose is only a proposal (or its payload, timeout or
 *     participants) that no vote or decision has yet been acknowledged for:
 *     after the restart it is as if never created (or still CREATED, and
 *     then removed after its timeout, V10). Safe, because nothing durable
 *     was built on it: no voter was told its vote counted (V3: a vote
 *     returns once durable, and its record follows the OPEN in the log), no
 *     decision was visible (V1), and a `wait` on it reads ENOENT, not an
 *     outcome. The creator who needs the proposal itself durable fsyncs a
 *     file of it (a control handle's fsync waits for the whole log). The
 *     "opened" event (hooks.event) may then name a proposal that is gone.
 *
 *  V14 Fenced proposals (SPEC §4 "fencing"; the state service's replace
 *     with if_lease, state.h S11): a proposal may carry one fence, a lease
 *     name and token (vote_set_fence, before it opens; a FENCE record).
 *     Whenever it would decide committed (its last "yes", live or at
 *     vote_start), hooks.fence is asked under v->lock whether that lease
 *     is still held with that token; if not (or there is no hooks.fence),
 *     it decides aborted "lease NAME not held with token T" instead
 *     (VOTE_FENCE_REASON). So the commit point of the vote is also the
 *     fence's check point: a holder that paused past its lease and lost
 *     it cannot get a proposal committed after a successor was granted.
 *     The vote service reads no lease itself: the fence is an opaque name
 *     and number to it.
 *  V15 A list written in pieces (a shell's `{ echo alice; echo bob; } >
 *     participants` makes one write(2) a line, and SPEC §3 acts on each):
 *     vote_extend_participants, for the writes after the first through
 *     the same open file, adds the names not yet listed while the vote is
 *     open — an OPEN record with the whole list (the participants first,
 *     in order; opened and deadline unchanged), which replay applies as
 *     the same extension. Only additions: a list that leaves out a
 *     participant is -EEXIST (V4), and after the decision -EROFS. Adding
 *     participants can only make a commit harder, never easier, so a vote
 *     cast between the pieces stands. (A 4 KiB piece that stdio cut inside
 *     a name is held by the control tree until the name is whole:
 *     ctl_vote.h.)
 *
 * External votes (shared.md; the DTC): a prepared transaction's PREPARE
 * record is its vote, so vote_cast_external registers the vote in memory
 * without a VOTE record; when it decides, the DECIDE record is logged and
 * synced as any other. With replaying=true (WAL replay / checkpoint load of
 * the PREPARE record) it only registers (V8: never decides); in a proposal
 * the log shows decided it registers the vote still (so votes read the
 * same after a restart) and returns -EROFS. External votes
 * are in the snapshot like the others (marked external), so a replayed
 * PREPARE over a snapshot is "the same vote again".
 *
 * Lock order: v->lock, then hooks.fence (the lease service's lock: it only
 * reads, lease_get), then the backend's append (the WAL's lock). A
 * backend sync is always made with v->lock released. hooks.event runs with
 * no service lock held, on the thread that acted (a voter's, the tick's).
 * Call nothing here with fs->lock held: votes and decisions block on the
 * WAL's sync. Never call from a wal_sync_async callback.
 *
 * Record encoding (the backend's payload; the WAL checksums it). All
 * integers little-endian. Header:
 *    0 u8 version 1, 1 u8 kind (VREC_*), 2 u16 name_len, 4 u32 zero, 8 u64 id
 *   CREATE  16 u32 uid, 20 u32 zero, 24 u64 created_ns            32 + name
 *   PARAM   16 u64 timeout_ns, 24 u32 payload_len, 28 u32 zero
 *                                                   32 + name + payload
 *   OPEN    16 u64 opened_ns, 24 u64 deadline_ns, 32 u32 list_len,
 *           36 u32 count                  40 + name + list (count names,
 *                                         each followed by one NUL byte)
 *   VOTE    16 u8 yes, 17 u8 external, 18 u16 part_len, 20 u16 reason_len,
 *           22 u16 zero, 24 u64 time_ns     32 + name + participant + reason
 *   DECIDE  16 u8 outcome, 17 u8 zero, 18 u16 reason_len, 20 u32 zero,
 *           24 u64 decided_ns                         32 + name + reason
 *   REMOVE  16 u32 by_uid, 20 u32 zero                        24 + name
 *   FENCE   16 u64 token, 24 u16 lease_len, 26 u16 zero, 28 u32 zero
 *                                                   32 + name + lease
 * All times CLOCK_REALTIME ns. Names are not NUL-terminated (lengths).
 *
 * Snapshot (vote_snapshot_encode): u32 magic "TXVS", u32 version 1,
 * u64 next_id, u32 count, then count x (u32 len, record): for each
 * proposal, its CREATE, PARAM (when payload or timeout was set), FENCE
 * (when set), OPEN, one
 * VOTE per cast vote (external ones too) and DECIDE, in that order.
 * Decoding replays them (V8).
 */
#ifndef TXD_VOTE_H
#define TXD_VOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proc.h"

#define VOTE_NAME_MAX		255
#define VOTE_PAYLOAD_MAX	(1u << 20)
#define VOTE_PARTICIPANTS_MAX	1024
#define VOTE_REASON_MAX		1024 /* an external "no"'s reason */
#define VOTE_TIMEOUT_DEFAULT_NS (30ull * 1000000000ull)
#define VOTE_TIMEOUT_MAX_NS	(365ull * 86400ull * 1000000000ull)
#define VOTE_RETAIN_DEFAULT_NS	(3600ull * 1000000000ull)
#define VOTE_RESERVED_PREFIX	"state-" /* V12: state.h STATE_PROPOSAL_PREFIX */
#define VOTE_FENCE_REASON	"lease " /* V14: how a fence's abort reason begins */

enum { VREC_CREATE = 1, VREC_PARAM, VREC_OPEN, VREC_VOTE, VREC_DECIDE, VREC_REMOVE, VREC_FENCE };

struct vote_svc;
enum vote_outcome { VOTE_OPEN = 0, VOTE_COMMITTED = 1, VOTE_ABORTED = 2 };
enum vote_state { VOTE_CREATED = 1, VOTE_OPENED, VOTE_DECIDING, VOTE_DECIDED };

/* Where records live: as struct lease_backend (lease.h). */
struct vote_backend {
	int (*append)(void *arg, const void *rec, size_t len, uint64_t *lsn);
	int (*sync)(void *arg, uint64_t lsn);
	void *arg;
};

/* VEV_REMOVED: a proposal that was never decided is gone (rmdir, or its
 * timeout while never opened: V10, V11), so no decision will come. */
enum vote_event_kind { VEV_OPENED = 1, VEV_VOTE, VEV_DECIDED, VEV_REMOVED };

/* Valid during the call only. */
struct vote_event {
	enum vote_event_kind kind;
	const char *proposal;
	uint32_t uid;		   /* the proposal's creator */
	const char *participants;  /* OPENED: comma-separated */
	uint64_t timeout_ns;	   /* OPENED */
	const char *participant;   /* VOTE */
	bool yes, external;	   /* VOTE */
	enum vote_outcome outcome; /* DECIDED */
	const char *reason;	   /* DECIDED: "" when committed */
	uint64_t duration_ns;	   /* DECIDED: opened -> decided (realtime) */
	uint64_t time_ns;	   /* CLOCK_REALTIME of the record */
	uint64_t id;		   /* the proposal's id (V8) */
	struct proc_id by;	   /* OPENED, VOTE: the caller (zero: unknown) */
};

struct vote_hooks {
	void (*event)(void *arg, const struct vote_event *ev); /* may be NULL */
	/* V14: 0 while lease (a name, 1..255 bytes) is held with token, else
	 * non-zero. Under v->lock: it must only read, and never call this
	 * service. NULL: every fence is stale. */
	int (*fence)(void *arg, const char *lease, uint64_t token);
	void *arg;
};

struct vote_opts {
	bool sync;		/* durability != none: sync before answering */
	uint32_t max_proposals; /* per uid; 0 = 1024 */
	uint64_t retain_ns;	/* 0 = VOTE_RETAIN_DEFAULT_NS */
	uint64_t timeout_ns;	/* the default timeout; 0 = 30 s */
};

struct vote_info {
	char name[VOTE_NAME_MAX + 1];
	enum vote_state state;
	uint64_t id;
	uint32_t uid;
	uint64_t created_ns, opened_ns, decided_ns, deadline_ns; /* realtime; 0 unset */
	uint64_t timeout_ns;
	size_t payload_len;
	char fence[VOTE_NAME_MAX + 1]; /* V14: the fence's lease, "" none */
	uint64_t fence_token;
	unsigned participants, yes, no;
	enum vote_outcome outcome; /* VOTE_OPEN unless DECIDED */
	char reason[VOTE_REASON_MAX + 64];
};

struct vote_stats {
	uint64_t proposals;	     /* present now, any state */
	uint64_t open;		     /* OPEN or DECIDING */
	uint64_t committed, aborted; /* decided since start */
	uint64_t duration_ns_sum, duration_count;
};

int vote_open(const struct vote_opts *opts, const struct vote_backend *be,
	      const struct vote_hooks *hooks, struct vote_svc **out);
void vote_close(struct vote_svc *v);

/* V5: 0 or -EINVAL. */
int vote_name_check(const char *name);
/* "yes" or "no", optionally followed by one newline: 0 and *yes, else
 * -EINVAL. */
int vote_parse_ballot(const char *buf, size_t len, bool *yes);
/* Seconds, decimal fraction allowed ("30", "0.5"), optional newline:
 * 0 and *ns, else -EINVAL (also 0 s or over VOTE_TIMEOUT_MAX_NS). */
int vote_parse_timeout(const char *buf, size_t len, uint64_t *ns);

/* ---- recovery: before vote_start, single-threaded ----------------------- */

/* One record (V8). -TXD_EFORMAT unknown version or kind; -TXD_ECORRUPT
 * lengths that do not add up, bad names. */
int vote_replay(struct vote_svc *v, const void *payload, size_t len);
int vote_snapshot_encode(struct vote_svc *v, void **buf, size_t *len);
int vote_snapshot_decode(struct vote_svc *v, const void *buf, size_t len);
/* V7, V8, V10: deadlines from the realtime stamps; decides what is
 * complete or overdue (logging, syncing, events); removes what retention
 * removes. */
int vote_start(struct vote_svc *v);

/* ---- operations (votes, decisions and removals block on the backend's sync:
 * V1, V3; creating and opening do not: V13) ---------------------------- */

/* -EINVAL name, -EEXIST exists, -EDQUOT (V6), -EPERM (V12), -EIO (V9). */
int vote_create(struct vote_svc *v, const char *proposal, uint32_t uid);
/* V12: a proposal of the server's own (the state service's), by uid 0. */
int vote_create_reserved(struct vote_svc *v, const char *proposal);
/* V4. -ENOENT no such proposal, -EROFS opened, -EFBIG, -EINVAL, -EIO. */
int vote_set_payload(struct vote_svc *v, const char *proposal, const void *buf, size_t len);
int vote_set_timeout(struct vote_svc *v, const char *proposal, uint64_t timeout_ns);
/* V14: the proposal commits only while lease (1..255 bytes, no NUL) is
 * held with token. Appended, not synced (V13). -ENOENT, -EROFS opened,
 * -EEXIST a different fence already set (the same again: 0), -EINVAL,
 * -EIO. */
int vote_set_fence(struct vote_svc *v, const char *proposal, const char *lease, uint64_t token);
/* V4: the list as written (separators per V4); by as vote_cast's. 0 (opened, or the same
 * list again), -EEXIST a different list, -EINVAL, -ENOENT, -EIO. */
/* V15: list (as vote_set_participants) holds every participant of the
 * open proposal and more: those join. 0 (also: the same list), -EEXIST a
 * participant left out, -EROFS decided, -ENOENT not open, -EINVAL, -EIO. */
int vote_extend_participants(struct vote_svc *v, const char *proposal, const char *list,
			     size_t len);
/* V13: the proposal's records so far (create, payload, timeout, opening)
 * made durable now, for a caller that must not lose it (the state
 * service's replace, whose rename returns once the proposal is open).
 * -ENOENT unknown, -EIO failed (V9). */
int vote_sync(struct vote_svc *v, const char *proposal);
int vote_set_participants(struct vote_svc *v, const char *proposal, const char *list, size_t len,
			  const struct proc_id *by);
/* V2, V3. by (may be NULL): the voting process, for its journal (events
 * only). -EINVAL bad names, -ENOENT, -EEXIST, -EROFS, -EIO. */
int vote_cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
	      const struct proc_id *by);
/* See "External votes". Returns 0 (also: the same vote again), -ENOENT (no
 * such open proposal or participant), -EEXIST (a different vote was
 * already cast), -EROFS (already decided), -EINVAL (bad names), -EIO. */
int vote_cast_external(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		       const char *reason, bool replaying);
/* What a cast of this vote would meet, without casting (a read: takes
 * v->lock only): 0 (it would count, or the same vote is there), -ENOENT (no
 * such open proposal, or participant), -EEXIST (a different vote is
 * there), -EROFS (decided, or past its deadline), -EINVAL. For a caller
 * that must not act before a vote it cannot cast (a prepare, dtc.h). */
int vote_check_cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes);
/* The same for a prepared transaction's vote (dtc.h): any vote there
 * already, yes or no, is -EEXIST — a participant's vote stands for one
 * transaction, so a second transaction prepared as the same participant,
 * or one prepared after a plain vote, is refused (as PostgreSQL refuses a
 * second PREPARE TRANSACTION with a gid in use). */
int vote_check_unvoted(struct vote_svc *v, const char *proposal, const char *participant);
/* V11. -ENOENT, -EPERM, -EBUSY, -EIO. */
int vote_remove(struct vote_svc *v, const char *proposal, uint32_t uid);
/* Decide the overdue (V2), remove what retention removes (V10). *next (may
 * be NULL): the earliest pending deadline or removal on CLOCK_MONOTONIC,
 * 0 if none. Returns how many it decided, or -EIO. */
int vote_tick(struct vote_svc *v, uint64_t *next);
/* V10: keep proposal (by name: it may not exist yet, as in replay) past its
 * retention until as many vote_unpin. 0 or -ENOMEM. Any thread; takes
 * v->lock only. */
int vote_pin(struct vote_svc *v, const char *proposal);
void vote_unpin(struct vote_svc *v, const char *proposal);

/* ---- reading ------------------------------------------------------------ */

/* VOTE_OPEN while undecided (also while DECIDING: V1); reason "" when
 * committed, "no from bob" / "timeout missing carol" when aborted (reason
 * may be NULL). -ENOENT unknown. */
int vote_outcome(struct vote_svc *v, const char *proposal, enum vote_outcome *out, char *reason,
		 size_t reason_size);
/* -ENOENT. */
int vote_get(struct vote_svc *v, const char *proposal, struct vote_info *out);
/* The proposal whose id is id (V8: ids are never reused while the store
 * lives). -ENOENT. A scan: O(proposals). */
int vote_get_by_id(struct vote_svc *v, uint64_t id, struct vote_info *out);
/* Copies up to size bytes of the payload; *len its full length. -ENOENT. */
int vote_payload(struct vote_svc *v, const char *proposal, void *buf, size_t size, size_t *len);
/* fn for each proposal (any state), under the lock: fn must not call the
 * service. A non-zero return stops the walk and is returned. */
int vote_list(struct vote_svc *v, int (*fn)(void *arg, const struct vote_info *vi), void *arg);
/* fn for each participant of an opened proposal in list order, with its
 * vote: -1 none yet, 0 no, 1 yes. -ENOENT (none, or not opened). */
int vote_list_participants(struct vote_svc *v, const char *proposal,
			   int (*fn)(void *arg, const char *participant, int vote), void *arg);
void vote_get_stats(struct vote_svc *v, struct vote_stats *st);
/* "open", "committed", "aborted". */
const char *vote_outcome_name(enum vote_outcome o);

#endif
