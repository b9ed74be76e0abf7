/*
 * journal.h — per-process journals and dead-process records (SPEC §5
 * "Records, journals and logs"): `.txdir/recovery/journals/PID/journal`
 * (that process's coordination events) and `.txdir/recovery/dead_processes/PID`
 * (what was cleaned when it died, and when).
 *
 * Design: no second write. The event log (events.h) is the only record; a
 * journal is the subset of its lines that belong to one process, and a
 * dead-process record is the "dead_process" event the services host writes
 * with the cleanup (svc.h V6). This module keeps only an index: which
 * processes have events within the retention period, which of them are
 * dead, and which transaction belongs to which process. The index is
 * rebuilt from the event log at start-up (journal_rebuild) and then fed
 * every new event (journal_note, called by the event log's observer,
 * events.h ev_set_observer). So journals and dead-process records are
 * exactly as durable as events (E2) and survive a restart with them.
 *
 * Layering: knows the event log's JSON objects and nothing of FUSE, the
 * control tree or the services.
 *
 * Which lines belong to process P = (pid, start) (the journal of P):
 *  - an event with "pid" = P.pid and "start" = P.start (lease grant, renew,
 *    release of P's lease, a deadlock P was refused, P's dead_process
 *    record, a transaction P began);
 *  - an event with "by_pid" = P.pid and "by_start" = P.start (a lease P
 *    released or broke, a grant P asked for another process, a wait P
 *    asked for another process and was refused: a deadlock);
 *  - an event with "txn" = T where T's txn_begin event belongs to P (the
 *    transaction's commit, conflict and abort).
 * An event that names a pid without a start time (an older binary's) is
 * keyed to no process: a pid alone is never trusted (proc.h).
 *
 * Names: the directory of P is "PID" when P is the only process of that pid
 * in the index; when a pid was reused (two processes, same pid, different
 * start times) the newest of them (latest event) is "PID" and every one of
 * them is also reachable as "PID.START" (START: proc.h's start time in
 * clock ticks); readdir lists "PID" for the newest and "PID.START" for the
 * others. So records of a reused pid never mix, and `journals/$pid` of a
 * live process is its own journal. The same rule names dead_processes/.
 *
 * Invariants.
 *  J1 Every event that belongs to P (rule above) and is no older than the
 *     retention period is in P's journal, oldest first, as the same JSON
 *     object as in `events` (the same visibility filter applied: E5).
 *  J2 The index after journal_rebuild over the event log equals the index
 *     built by journal_note over the same events one by one: a restart
 *     shows the same journals and dead processes.
 *  J3 Two processes with one pid and different start times never share a
 *     journal or a dead-process record (naming above).
 *  J4 A process is listed in journals/ while it has an event no older than
 *     the retention period, and in dead_processes/ while its dead_process
 *     event is; older entries are dropped from the index when the event
 *     log is trimmed (ev_trim at checkpoints calls journal_prune through the
 *     observer) and at a listing, so memory does not grow with history.
 *
 * Locking: struct journal has its own mutex, a leaf (it may be taken under
 * fs->lock and under the event log's observer call; it takes no other lock).
 */
#ifndef TXD_JOURNAL_H
#define TXD_JOURNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;

/* One process of the index. id: the index's own number for it, stable while
 * it stays in the index (the control tree's inode key), never 0. */
struct journal_proc {
	uint64_t id;
	uint32_t pid;
	uint64_t start;
	uint64_t first_ns, last_ns; /* its oldest and newest event */
	uint64_t dead_ns;           /* its dead_process event, 0: none */
	bool newest;                /* the newest process of its pid: named "PID" */
};

int journal_open(struct journal **out);
void journal_close(struct journal *j);

/* Fold one event (the object as written, with "type") at time_ns in (J2). */
void journal_note(struct journal *j, uint64_t time_ns, const cJSON *ev);
/* Fold every line of an event log rendering ("<json>\n" lines, as
 * ev_render makes them) in; time from each line's "time". */
void journal_note_text(struct journal *j, const char *txt, size_t len);

/* Drop what is older than oldest_ns (J4). */
void journal_prune(struct journal *j, uint64_t oldest_ns);

/* Calls fn for each process with events (dead: only those with a
 * dead_process record) no older than oldest_ns, ascending pid, with its
 * directory name. fn runs under the journal's lock: it must not call back.
 * Stops at fn's first non-zero return (returned). */
int journal_list(struct journal *j, uint64_t oldest_ns, bool dead,
		 int (*fn)(void *arg, const struct journal_proc *p, const char *name), void *arg);
/* The process named name ("PID" or "PID.START"). -ENOENT. */
int journal_find(struct journal *j, const char *name, uint64_t oldest_ns, bool dead,
		 struct journal_proc *out);
/* The process of index number id. -ENOENT. */
int journal_get(struct journal *j, uint64_t id, struct journal_proc *out);

/* From an event log rendering (ev_render's text), the lines of p's journal
 * (J1) into *out (malloc'd, NUL-terminated, *outlen bytes). */
int journal_render(struct journal *j, const struct journal_proc *p, const char *txt,
		   size_t len, char **out, size_t *outlen);
/* From an event log rendering, p's newest dead_process event, pretty
 * printed. -ENOENT when there is none. */
int journal_render_dead(const struct journal_proc *p, const char *txt, size_t len,
			char **out, size_t *outlen);

#endif
