/*
 * svc.h — the services host: the coordination services of one open store
 * (today proc + lease; votes, state and journals join here), on the store's
 * WAL. fs.c calls it at a handful of points and knows nothing else of the
 * services; the control tree reaches them through svc_lease / svc_proc.
 *
 * Life of a host, in the order fs.c calls it:
 *   svc_open      proc view, death watcher, lease service on the WAL backend
 *   svc_ckpt_load the services' section of the checkpoint being loaded
 *   svc_replay    every WAL record that is not a commit, by type
 *   svc_start     after replay (lease L8: dead holders released, live ones
 *                 watched again), then the worker thread starts (the tick)
 *   svc_ckpt_save (any time after the checkpoint chose its LSN: lease L7)
 *   svc_close     worker stopped, watcher stopped (no death after it),
 *                 lease service, proc view freed
 *
 * Invariants.
 *  V1 Replay refuses nothing silently: a record type no service owns is
 *     -TXD_EFORMAT (rec.h).
 *  V2 The checkpoint section holds each service's snapshot taken after the
 *     checkpoint's LSN was chosen (V8), so replay from that LSN is
 *     idempotent over it (lease L7, vote, state S5); a section written
 *     without a service's sub-section leaves that service empty. A
 *     checkpoint without the section (store format 1) leaves the services
 *     empty: format 1 had no service records.
 *  V3 Store format: the first service record in a store of an older
 *     format (1 or 2) is preceded by opts.upgrade (FORMAT rewritten
 *     durably to 3; a prepared transaction's record likewise, dtc.c), so a
 *     store that holds records an older binary cannot read always says so
 *     and that binary refuses it with a message; an older store that never
 *     got such a record stays readable by the older binary: until the
 *     upgrade, svc_ckpt_save writes the services' section as format 2 did
 *     (the bare lease snapshot; votes and state are empty then).
 *  V5 Every lease grant, renew, release (with how: release, death, expiry,
 *     break, dead, reboot) and refused deadlock is one event in the event
 *     log, emitted once the action is in the log (after its sync with
 *     durability != none: lease L3), before the caller is answered. The
 *     event log is fsynced at checkpoints only, so a power cut can keep a
 *     record and lose its event: svc_start emits again, once, with the
 *     record's time and "derived": true, the grant, renew and release
 *     events the log lacks for the records replayed after the checkpoint.
 *     A renew event carries its record's renewed_ns (lease.h), which is
 *     also its time: a token has many renews, (token, renewed_ns) names
 *     one. A renew of a grant that replay then saw end is derived too
 *     (before its release, in log order); a RENEW written before
 *     renewed_ns existed is not.
 *  V6 Every cleanup of a dead process (the death watcher's, within 1 s of
 *     the death; start-up's for holders that died while the server was
 *     down or before a reboot, lease L8) that released a lease or withdrew
 *     a wait writes one "dead_process" event after the release events:
 *     pid, start, uid, reason (death, dead, reboot), detected (RFC 3339),
 *     while_server_down, leases_released [{name, token}], waits_withdrawn
 *     [names], transactions_aborted (always empty: transactions are not
 *     held by a process, txn.h T5). The journal index (journal.h) is
 *     loaded from the event log at svc_start, before anything new is
 *     logged, and fed every event after (ev_set_observer), so
 *     recovery/journals and recovery/dead_processes are as durable as the
 *     event log and survive a restart. As V5: a power cut that loses a
 *     dead_process event with the event log's unsynced tail gets it
 *     derived again at svc_start ("derived": true, the release's time,
 *     the leases of the replayed death releases whose holder has no
 *     dead_process event; waits are not logged, so none).
 *  V9 Every state replace that becomes visible (state.h S1) is one
 *     "state_replace" event (version, pid, uid, bytes), emitted after its
 *     record is durable, before the writer is answered, with the replace's
 *     time; then the state listener runs. As V5: a replace replayed after
 *     the checkpoint whose event the log lacks (lost with its unsynced
 *     tail) is logged again at svc_start, with the record's time and
 *     "derived": true.
 *  V10 The cleanup queue (SPEC §5 "reclaim in progress shows in
 *     cleanup_queue/"): the death watcher enters a dead process (with the
 *     leases it held, and when it was detected) before it releases
 *     anything, and takes it out once lease_owner_died has returned, i.e.
 *     once every release record of that death is durable (or the service
 *     failed, L10: the restart cleans it). So between a holder's death and
 *     its releases being on disk, svc_cleanup_list shows it. Start-up's
 *     cleanups (L8) run before anything is served: never shown.
 *  V4 The worker thread runs the lease tick at the earliest expiry, waking
 *     at least once a second while a TTL is pending (a lease expires at
 *     most 1 s late); svc_kick after a TTL is set (and start-up) makes it
 *     learn the new earliest expiry. With no TTL pending it sleeps. The tick may block on the
 *     WAL's sync; nothing here runs in a wal_sync_async callback (lease.h
 *     "Blocking"). The other blocking calls (grant, renew, release, wait)
 *     run on the caller's thread with fs->lock released, after
 *     fs_will_block (ctl_lease.h "Blocking"); waits that last (released,
 *     granted) hold no thread at all: they are deferred replies completed
 *     by the lease events.
 *
 *  V7 Votes (vote.h): the vote service lives here too, on its own record
 *     type (WAL_REC_VOTE). Every proposal opened, vote and decision is one
 *     event ("proposal_opened", "vote", "decision"), written after its
 *     record is durable (vote V1); a decision event lost with the event
 *     log's unsynced tail is derived again at svc_start like V5's (its
 *     record's time, "derived": true; opened and vote events are not
 *     derived). svc_start runs vote_start after lease_start (overdue
 *     proposals decided: vote V7); the worker ticks the vote service with
 *     the lease service, at the earliest deadline or retention removal of
 *     either (at least once a second while one is pending: a timeout
 *     fires at most 1 s late); an opened proposal kicks it. Each decision
 *     is reported to the decision listener (transactions) and then to the
 *     vote listener (the control tree's waits), with no lock held, on the
 *     thread that decided, once it is durable: also the decisions
 *     svc_start makes; never the ones replayed from the log.
 *  V8 The checkpoint section is a container of sub-sections (below), one
 *     per service, each its service's snapshot taken after the
 *     checkpoint's LSN was chosen; a section that is a bare lease snapshot
 *     (written before votes) loads as the lease sub-section alone.
 *     Container: u32 magic "TXSV", u32 version 1, u32 count, then count x
 *     (u32 tag, u32 zero, u64 len, len bytes); tags "LEAS" (lease.h
 *     snapshot), "VOTE" (vote.h snapshot), "STAT" (state.h snapshot); an
 *     unknown tag is -TXD_EFORMAT.
 *
 * Lock order: core.h, level 2b: a service's lock, then (only to read a
 * fence: state.h S11, vote.h V14) the lease service's, then svc's own
 * leaves. A service call that logs (grant, renew, release, vote, replace...)
 * waits for a WAL sync and is made without fs->lock (a RESERVE sync holds
 * the lease lock across an fsync); reads (lease_get, vote_outcome) may be
 * made under fs->lock.
 */
#ifndef TXD_SVC_H
#define TXD_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events.h"
#include "journal.h"
#include "lease.h"
#include "proc.h"
#include "vote.h"
#include "state.h"
#include "wal.h"

struct svc;

struct svc_opts {
	bool sync_grants;             /* durability != none */
	const char *proc_root;        /* NULL: /proc */
	/* V3: called once, before the first service record, when set */
	int (*upgrade)(void *arg);
	void *upgrade_arg;
	struct evlog *events;         /* lease events go there (events.h); may be NULL */
	uint32_t max_leases, max_waiters; /* per uid; 0: lease.h defaults */
	uint32_t max_proposals;       /* per uid; 0: vote.h default */
	uint64_t vote_retain_ns;      /* decided proposals kept; 0: 1 h */
};

int svc_open(struct wal *w, const struct svc_opts *opts, struct svc **out);
void svc_close(struct svc *s);

/* V3: the store's FORMAT says 3 (durably) once this returns 0; for a
 * record appended outside the services (a prepared transaction's). */
int svc_upgrade(struct svc *s);
/* V1: one non-commit WAL record. */
int svc_replay(struct svc *s, uint16_t type, const void *payload, size_t len);
/* V2: malloc'd section for the checkpoint; and its loading. */
int svc_ckpt_save(struct svc *s, void **buf, size_t *len);
int svc_ckpt_load(struct svc *s, const void *buf, size_t len);
/* After replay: lease_start, then the worker (V4). */
int svc_start(struct svc *s);

/* A TTL was set or changed: the tick learns the new earliest expiry (V4). */
void svc_kick(struct svc *s);
/* A lease wait (released, granted) ended after ns: txdir_lease_wait_seconds. */
void svc_wait_observe(struct svc *s, uint64_t ns);
/* Prometheus text of the services' metrics, appended with put(arg, text). */
void svc_stats(struct svc *s, void (*put)(void *arg, const char *text), void *arg);

/* A second receiver of lease events (the control tree's waits), called
 * after the event log's, with no service lock held. Set once. */
void svc_set_listener(struct svc *s, void (*fn)(void *arg, const struct lease_event *ev),
		      void *arg);

/* V7: a reclaim in progress. */
struct svc_cleanup {
	struct proc_id id;         /* the dead process */
	uint64_t detected_ns;      /* CLOCK_REALTIME */
	char *leases_json;         /* JSON array of the names it held */
};
/* Calls fn for each, under the queue's lock (a leaf): fn must not call the
 * services; c is valid during the call. Stops at fn's first non-zero. */
int svc_cleanup_list(struct svc *s, int (*fn)(void *arg, const struct svc_cleanup *c), void *arg);

struct lease_svc *svc_lease(struct svc *s);
struct vote_svc *svc_vote(struct svc *s);
/* Called once per decision, after it is durable, with no service lock held
 * (and no fs->lock), on whatever thread decided (a voter's, the tick's).
 * Set once (by fs.c for transactions). Also called for the decisions that
 * svc_start makes (overdue or complete after replay); not for decisions
 * replayed from the log: prepared transactions ask vote_outcome at
 * start-up themselves. */
void svc_set_decision_listener(struct svc *s,
	void (*fn)(void *arg, const char *proposal, enum vote_outcome o, const char *reason),
	void *arg);
/* A receiver of every vote event (the control tree's waits: decided
 * proposals), after the decision listener, with no service lock held. Set
 * once; release (may be NULL) frees arg at svc_close. svc_vote_listener_arg:
 * that arg, NULL before. */
void svc_set_vote_listener(struct svc *s, void (*fn)(void *arg, const struct vote_event *ev),
			   void *arg, void (*release)(void *arg));
void *svc_vote_listener_arg(struct svc *s);
/* The global state document (state.h), valid until svc_close. */
struct state_svc *svc_state(struct svc *s);
/* V7: a receiver of state replaces (the control tree's `changed` waits),
 * called after the event is logged, with no service lock held. Set once. */
void svc_set_state_listener(struct svc *s, void (*fn)(void *arg, const struct state_event *ev),
			    void *arg);
/* V6: the journal index (journal.h), valid until svc_close. */
struct journal *svc_journal(struct svc *s);
struct proc *svc_proc(struct svc *s);

#endif
