/*
 * lease.h — leases with fencing tokens: the decision logic of SPEC §5
 * "Leases", apart from where its records live and from any file interface.
 *
 * Layering: knows nothing of FUSE, the control tree or fs.c. Records go to a
 * backend (struct lease_backend: append + sync; the local WAL adapter is
 * lease_wal.c, an etcd one could follow); processes are struct proc_id
 * (proc.h), and liveness, ancestry, death watching and events reach the
 * outside through struct lease_hooks. Times: TTLs and expiry on
 * CLOCK_MONOTONIC (txd_os->now_monotonic_ns), acquired/ended stamps on
 * CLOCK_REALTIME (txd_os->now_realtime_ns).
 *
 * Who may do what (SPEC §5): the caller of grant has already been checked
 * against "may act for the holder PID" (proc_may_act_for); a lease belongs
 * to the granting uid. Renew and release: the holder process, a descendant
 * of it (hooks->descends), the lease's uid, or root; else -EPERM. Break: the
 * lease's uid or root; else -EPERM.
 *
 * States of a grant (one per name at a time):
 *
 *   (free) --lease_grant / promotion of the first waiter--> GRANTING
 *            GRANT record appended, name taken, not yet visible
 *   GRANTING --backend sync done (lease_grant returns)--> HELD
 *   GRANTING|HELD --lease_release | lease_break | lease_owner_died |
 *                   lease_tick (expiry) | lease_start (dead/reboot)--> (free)
 *            RELEASE record appended, completed record kept, first waiter
 *            promoted
 *   HELD --lease_renew--> HELD   RENEW record, new expiry
 *
 * A waiter (lease_wait) is queued per name; it is volatile (not logged): a
 * server restart ends the mount its waiting process was blocked on.
 *
 * Invariants.
 *  L1 At most one grant per name: lease_grant is a test-and-set under the
 *     service lock and fails -EEXIST while the name is GRANTING or HELD, or
 *     while anyone waits for it (waiters go first: L5).
 *  L2 Fencing tokens are store-wide and strictly increasing in grant order,
 *     and never reused, also across crashes and with durability none:
 *     tokens are reserved in blocks by a RESERVE record that is synced
 *     (always, whatever opts.sync_grants) before any token of the block is
 *     handed out, and after replay the next token is the end of the last
 *     reserved block.
 *  L3 A grant is visible (lease_get, lease_list, events, the grantee's
 *     return) only once its GRANT record is durable (with sync_grants; with
 *     durability none, once appended — tokens stay unique by L2).
 *  L4 Exactly one release per grant, however many releases, deaths,
 *     expiries and breaks race: each finds the grant by name and token under
 *     the lock, the first removes it and appends one RELEASE record, the
 *     others get -ENOENT. Each release leaves one completed record (who,
 *     token, how it ended), kept for opts.completed_retain_ns (the mount's
 *     retention) but at most the newest opts.completed_keep.
 *  L5 Waiters are granted strictly first come, first served: a release
 *     promotes the head of the name's queue, in the same locked step.
 *  L6 A registration that would close a cycle in the wait-for graph fails
 *     -EDEADLK and reports the cycle. A waiter W for name N waits for N's
 *     holder and for every waiter ahead of W in N's queue. The search
 *     stops at LEASE_CYCLE_MAX processes deep: a longer cycle is not found.
 *  L7 Replay is idempotent over a snapshot: a GRANT whose token is not above
 *     the highest token seen, and a RENEW or RELEASE of a token not held,
 *     are skipped. So a snapshot taken (under the lock) at any time after a
 *     checkpoint chose its LSN may be followed by replay of every record
 *     after that LSN.
 *  L8 Start-up (lease_start, after replay): a grant from another boot is
 *     released (LEASE_END_REBOOT); one whose holder died while the server
 *     was down is released (LEASE_END_DEAD); live holders are watched again;
 *     expired TTLs are released (LEASE_END_EXPIRY).
 *  L9 Per-uid limits: a uid past opts.max_leases leases or opts.max_waiters
 *     waiters gets -EDQUOT (root is not limited).
 *  L10 A failed append or sync makes the service failed (sticky): every
 *     later call that would log returns -EIO, since memory may now be ahead
 *     of the log; only a restart (replay) reconciles them.
 *  L11 A holder's own release (lease_release: rmdir) is not synced when it
 *     grants nothing: it returns once its RELEASE
 *     record is appended (in the kernel: a crash of the server loses none,
 *     wal.h W6). Only a power cut can lose it, and a power cut is another
 *     boot: lease_start then releases every grant of the old boot (L8), so
 *     the lease is free after the restart either way — the completed record
 *     then says "reboot" instead of how it was released. A release that
 *     promotes a waiter syncs with the waiter's GRANT (L3), and any later
 *     sync (the next grant, of any name) covers it, as the log is ordered.
 *     This halves the fsyncs of a grab + release (2 -> 1). Breaks, deaths
 *     and expiries still sync (svc.h V10 shows a death's cleanup until its
 *     releases are durable).
 *
 * Lock order: svc->lock, then whatever the backend and the hooks watch /
 * unwatch / alive / descends take (they are called with svc->lock held and
 * must not call back into the service). hooks->event runs with no service
 * lock held. A backend sync that blocks is made with svc->lock released,
 * except the sync of a RESERVE record (once per opts.token_block grants).
 *
 * Blocking: every call that logs (grant, renew, release, break, wait,
 * owner_died, tick, start) waits for the backend's sync before it returns
 * (with sync_grants, except a holder's release that grants nothing: L11; the
 * RESERVE sync always). Call them from a thread that
 * may block, never from a FUSE worker that must not, and never from a
 * wal_sync_async callback: a RESERVE sync holds svc->lock while it waits for
 * the WAL's sync thread, so that thread must never need svc->lock.
 *
 * Watching: hooks->watch counts: one per grant and one per waiter,
 * balanced by unwatch when the grant ends or the wait ends (promotion moves
 * the count from the wait to the grant). A watch that fails (-EMFILE) is not
 * retried: that holder's death is then noticed only at its TTL or at the
 * next start-up (L8).
 *
 * Record encoding (the backend's payload; the WAL checksums it). All
 * integers little-endian; name bytes last, name_len of them.
 *    0 u8  version    1
 *    1 u8  kind       LREC_RESERVE 1, LREC_GRANT 2, LREC_RENEW 3, LREC_RELEASE 4
 *    2 u16 name_len   0 for RESERVE
 *    4 u32 zero
 *   RESERVE  8 u64 upto (tokens < upto may be handed out)                 16
 *   GRANT    8 u64 token, 16 u32 uid, 20 u32 pid, 24 u64 start,
 *           32 u8[16] boot, 48 u64 ttl_ns, 56 u64 expires_mono_ns (0 never),
 *           64 u64 acquired_ns (realtime)                                72
 *   RENEW    8 u64 token, 16 u64 ttl_ns, 24 u64 expires_mono_ns,
 *           32 u64 renewed_ns (realtime: the renew's event time, svc.h V5)  40
 *           (a RENEW of 32 bytes, written before renewed_ns, reads as 0)
 *   RELEASE  8 u64 token, 16 u8 how, 17 u8[3] zero, 20 u32 by_uid,
 *           24 u32 by_pid, 28 u32 zero, 32 u64 by_start, 40 u64 ended_ns  48
 *
 * Snapshot (lease_snapshot_encode): u32 magic "TXLS", u32 version 1,
 * u32 count, then count x (u32 len, record): a RESERVE, then a GRANT and a
 * RELEASE for each kept completed record (oldest first), then a GRANT for
 * each current grant. Decoding replays them (L7).
 */
#ifndef TXD_LEASE_H
#define TXD_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proc.h"

#define LEASE_NAME_MAX 255
#define LEASE_CYCLE_MAX 16
#define LEASE_TTL_KEEP UINT64_MAX  /* lease_renew: keep the current TTL */

enum { LREC_RESERVE = 1, LREC_GRANT, LREC_RENEW, LREC_RELEASE };

enum lease_end {
	LEASE_END_RELEASE = 1, /* rmdir by the owner, its uid or root */
	LEASE_END_DEATH,       /* the holder died while the server ran */
	LEASE_END_EXPIRY,      /* TTL ran out */
	LEASE_END_BREAK,       /* mountctl lease break */
	LEASE_END_DEAD,        /* holder died while the server was down */
	LEASE_END_REBOOT,      /* grant from before a reboot */
	LEASE_END_MAX
};

struct lease_svc;

struct lease_who {
	struct proc_id proc;   /* the calling process (Tgid), zero for the server */
	uint32_t uid;
};

struct lease_info {
	char name[LEASE_NAME_MAX + 1];
	uint64_t token;
	struct proc_id holder;
	uint32_t uid;              /* the uid that granted it: the lease's owner */
	uint64_t ttl_ns;           /* 0: no TTL */
	uint64_t expires_mono_ns;  /* 0: never */
	uint64_t acquired_ns;      /* CLOCK_REALTIME */
};

struct lease_completed {
	struct lease_info lease;
	enum lease_end how;
	struct lease_who by;       /* who ended it (the holder for death/expiry) */
	uint64_t ended_ns;         /* CLOCK_REALTIME */
};

/* A cycle: step[i].proc waits for step[i].name, which step[i+1].proc holds
 * or waits for ahead of it; the last step's name leads back to step[0]. */
struct lease_cycle {
	unsigned n;
	struct {
		struct proc_id proc;
		char name[LEASE_NAME_MAX + 1];
	} step[LEASE_CYCLE_MAX];
};

/* LEV_WAIT: a process joined a name's queue; LEV_WAIT_END: it left the
 * queue without a grant (withdrawn: how RELEASE; its death: how DEATH).
 * For both, lease.name, lease.holder (the waiter) and lease.uid; waits are
 * in memory only (no record), so these are reports, never synced. */
enum lease_event_kind { LEV_GRANT = 1, LEV_RENEW, LEV_RELEASE, LEV_DEADLOCK, LEV_WAIT, LEV_WAIT_END };

struct lease_event {
	enum lease_event_kind kind;
	struct lease_info lease;       /* GRANT, RENEW, RELEASE; WAIT, WAIT_END (above) */
	enum lease_end how;            /* RELEASE, WAIT_END */
	/* RELEASE: who; GRANT: who asked (zero: from the queue); DEADLOCK:
	 * who asked (lease.name, lease.holder: the refused waiter, lease.uid) */
	struct lease_who by;
	const struct lease_cycle *cycle; /* DEADLOCK (valid during the call) */
	uint64_t time_ns;              /* RENEW: its record's renewed_ns (realtime) */
};

/* Where records live. append copies rec before returning and sets *lsn
 * (increasing); sync(lsn) returns once every record <= lsn is durable. Both
 * return 0 or -errno. */
struct lease_backend {
	int (*append)(void *arg, const void *rec, size_t len, uint64_t *lsn);
	int (*sync)(void *arg, uint64_t lsn);
	void *arg;
};

/* The outside world; every member may be NULL (then: alive = true,
 * descends = false, no watching, no events). */
struct lease_hooks {
	bool (*alive)(void *arg, const struct proc_id *id);
	/* Is proc the process anc or a descendant of it? */
	bool (*descends)(void *arg, const struct proc_id *proc, const struct proc_id *anc);
	int (*watch)(void *arg, const struct proc_id *id);     /* counted */
	void (*unwatch)(void *arg, const struct proc_id *id);
	void *arg;                     /* for the five above */
	void (*event)(void *arg, const struct lease_event *ev);
	void *event_arg;
};

struct lease_opts {
	uint8_t boot[PROC_BOOT_LEN]; /* the current boot id (L8) */
	uint32_t token_block;        /* tokens per RESERVE; 0 = 1024 */
	bool sync_grants;            /* durability != none: sync before returning */
	uint32_t max_leases;         /* per uid; 0 = 1024 */
	uint32_t max_waiters;        /* per uid; 0 = 1024 */
	uint32_t completed_keep;     /* completed records kept at most; 0 = 16384 */
	uint64_t completed_retain_ns; /* and only this long after their end
				       * (CLOCK_REALTIME); 0 = 1 h */
};

struct lease_stats {
	uint64_t held, waiters, grants;
	uint64_t releases[LEASE_END_MAX];
	uint64_t next_token, reserved_upto;
};

int lease_open(const struct lease_opts *opts, const struct lease_backend *be,
	       const struct lease_hooks *hooks, struct lease_svc **out);
/* Frees everything; unwatches nothing (the watcher goes with it). */
void lease_close(struct lease_svc *s);

/* -EINVAL unless name is 1..255 bytes, not "." or "..", without '/', NUL,
 * whitespace or control characters (SPEC §6). */
int lease_name_check(const char *name);

/* ---- recovery: before lease_start, single-threaded -------------------- */

/* Apply one record (L7). -TXD_EFORMAT: unknown version or kind;
 * -TXD_ECORRUPT: lengths that do not add up, a bad name. */
int lease_replay(struct lease_svc *s, const void *payload, size_t len);
/* malloc'd snapshot of the current state (see the format above). */
int lease_snapshot_encode(struct lease_svc *s, void **buf, size_t *len);
int lease_snapshot_decode(struct lease_svc *s, const void *buf, size_t len);
/* L8: release what start-up must release (logging each), watch the rest. */
int lease_start(struct lease_svc *s);

/* ---- operations --------------------------------------------------------- */

/* Grant name to holder for by->uid (L1, L2, L3). ttl_ns 0: no TTL.
 * *token is set only on success. -EINVAL name, -EEXIST held or waited
 * for, -EDQUOT (L9), -EIO (L10; the grant may still be in the log, and a
 * restart may find it: a holder that is told -EIO must not assume it holds
 * the lease, and it is released at its death or TTL like any other). */
int lease_grant(struct lease_svc *s, const char *name, const struct lease_who *by,
		const struct proc_id *holder, uint64_t ttl_ns, uint64_t *token);

/* Renew (and with ttl_ns != LEASE_TTL_KEEP set the TTL; 0 = none) the
 * grant with this token (0 = whatever grant is current), so a renew that
 * races a release never renews the next grant of the name. -ENOENT (not
 * held, or that token already ended), -EPERM. */
int lease_renew(struct lease_svc *s, const char *name, uint64_t token, const struct lease_who *by,
		uint64_t ttl_ns);

/* Release (rmdir) / break: token 0 = whatever grant is current. -ENOENT
 * (not held, or that token already ended: L4), -EPERM. */
int lease_release(struct lease_svc *s, const char *name, uint64_t token,
		  const struct lease_who *by);
int lease_break(struct lease_svc *s, const char *name, uint64_t token,
		const struct lease_who *by);

/* id died: release its grants (LEASE_END_DEATH), withdraw its waits.
 * Returns how many grants it released (>= 0) or -EIO. */
int lease_owner_died(struct lease_svc *s, const struct proc_id *id);

/* Release expired grants; *next (may be NULL) gets the earliest remaining
 * expiry on the monotonic clock, 0 if none. Returns how many expired. */
int lease_tick(struct lease_svc *s, uint64_t *next);

/* Queue waiter for name (L5, L6, L9) for by->uid. If the name is free and
 * nobody waits, it is granted at once and *token set; else *token = 0 and
 * the grant comes later (a LEV_GRANT event with holder = waiter).
 * -EEXIST waiter already holds or waits for name, -EDEADLK (cycle filled
 * when not NULL), -EDQUOT, -EINVAL. */
int lease_wait(struct lease_svc *s, const char *name, const struct lease_who *by,
	       const struct proc_id *waiter, uint64_t ttl_ns, struct lease_cycle *cycle,
	       uint64_t *token);
/* Withdraw a wait: the waiter, its uid or root. -ENOENT, -EPERM. */
int lease_wait_cancel(struct lease_svc *s, const char *name, const struct lease_who *by,
		      const struct proc_id *waiter);

/* ---- reading ----------------------------------------------------------- */

/* The HELD grant of name. -ENOENT. */
int lease_get(struct lease_svc *s, const char *name, struct lease_info *out);
/* Calls fn for each HELD grant / completed record (oldest first) / waiter of
 * name in queue order, under the lock: fn must not call the service. */
int lease_list(struct lease_svc *s, int (*fn)(void *arg, const struct lease_info *li),
	       void *arg);
int lease_list_completed(struct lease_svc *s,
			 int (*fn)(void *arg, const struct lease_completed *c), void *arg);
int lease_list_waiters(struct lease_svc *s, const char *name,
		       int (*fn)(void *arg, const struct proc_id *waiter), void *arg);
void lease_get_stats(struct lease_svc *s, struct lease_stats *st);
/* Where process pid stands on name, in one look under the lock: 0 with the
 * grant in *out when pid holds name (HELD); 1 when pid waits for name or its
 * grant is being made durable (L3: taken from the queue, not yet visible);
 * -ENOENT when neither. */
int lease_standing(struct lease_svc *s, const char *name, uint32_t pid, struct lease_info *out);

const char *lease_end_name(enum lease_end how); /* "release", "death", ... */

#endif
