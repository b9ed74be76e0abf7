/*
 * events.h — the event log shown as .txdir/events (SPEC §5 "Records,
 * journals and logs"). Below the control tree: it knows nothing of FUSE,
 * nodes or the control tree; the control tree renders it, the engine emits.
 *
 * An event is one JSON object built with cJSON ("time" RFC 3339 UTC, "type",
 * then the caller's fields), so any name or path gives valid JSON.
 *
 * On disk: STORE/coordination/events.log, append-only, one line per event:
 *     <time_ns> <json>\n
 * appended with one write(2) when the event is emitted. Nothing is kept in
 * memory: .txdir/events is rendered from the file when it is opened.
 *
 * Invariants.
 *  E1 Every line ev_render shows is one valid JSON object with "time" and
 *     "type" (cJSON builds it; no caller formats JSON).
 *  E2 ev_emit has written the event (it reached the kernel) before it
 *     returns: a crash of txdirfs loses none. An event of a committed action
 *     is as durable as the action: ev_sync makes the file durable, and at
 *     start-up the engine derives the events of commits the WAL holds but the
 *     log lacks (ev_commit_replayed), so a power loss loses none either.
 *     (Which those are is told by the highest "commit" of the log's
 *     txn_commit lines; one of 2^53 or more is a damaged line, not a
 *     commit id, and cannot hide later commits' events.)
 *  E3 ev_render shows the events no older than `oldest_ns`, oldest first;
 *     ev_trim drops older ones from the file. Memory does not grow with
 *     history.
 *  E4 A torn or garbage line (a crash mid-write) is skipped, never shown.
 *  E5 A "path" field is shown only if the reader's filter accepts it, else it
 *     reads "(hidden)" (the control tree's visibility rule, txdir(7)); a
 *     "private" field only to root and to the event's "uid" (e.g. a
 *     transaction's status, which names paths of its view).
 *
 * Locking: struct evlog has its own mutex, a leaf: it may be taken under
 * fs->lock and takes no other lock.
 */
#ifndef TXD_EVENTS_H
#define TXD_EVENTS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evlog;

/* Open (create) DIR/events.log. */
int ev_open(const char *dir, struct evlog **out);
void ev_close(struct evlog *ev);

/* Log one event of TYPE at time_ns with FIELDS (a cJSON object, taken over;
 * NULL for none); also to syslog. ev may be NULL (no log: syslog only). */
void ev_emit(struct evlog *ev, uint64_t time_ns, const char *type, cJSON *fields);
/* Where events go to syslog: a datagram socket path (NULL: /dev/log, the
 * default). One connection, kept across events (events.c); for tests. */
void ev_syslog_path(const char *path);
/* An observer of the log (the journal index, journal.h): logged runs after
 * each append from now on, outside the log's lock, with the event's object
 * ("time", "type" and the fields; valid during the call); trimmed (may be
 * NULL) after each ev_trim, with its oldest_ns. Set (copied) once, before
 * the log is used by more than one thread; NULL removes it. */
struct ev_observer {
	void (*logged)(void *arg, uint64_t time_ns, const cJSON *ev);
	void (*trimmed)(void *arg, uint64_t oldest_ns);
	void *arg;
};
void ev_set_observer(struct evlog *ev, const struct ev_observer *obs);
/* fdatasync the log (E2). */
int ev_sync(struct evlog *ev);
/* The highest "commit" of a txn_commit event in the log (0: none). */
uint64_t ev_last_commit(struct evlog *ev);
/* Start-up: commit `commit` of transaction `txn` was replayed from the WAL;
 * log its txn_commit event unless the log has it (E2). */
void ev_commit_replayed(struct evlog *ev, uint64_t time_ns, uint64_t txn, uint64_t commit);
/* Start-up, after replay: the WAL ends at commit `last`; a txn_commit event
 * of a later commit reports one lost with the WAL's unsynced tail (SPEC §7:
 * derived files are never trusted over the WAL). Cuts the log before the
 * first such event and makes it durable; 1 when it cut, 0 when nothing to
 * cut, or negative errno. */
int ev_cut_after(struct evlog *ev, uint64_t last);
/* Drop events older than oldest_ns from the file (E3). */
int ev_trim(struct evlog *ev, uint64_t oldest_ns);

/* Filter for "path" fields (E5): true when the reader may see path. */
typedef bool (*ev_path_ok_fn)(void *arg, const char *path);
/* Render the events no older than oldest_ns for the reader with uid
 * reader_uid into *out (malloc'd, *len bytes and a NUL; the caller frees).
 * ok may be NULL (show every path). */
int ev_render(struct evlog *ev, uint64_t oldest_ns, ev_path_ok_fn ok, void *arg,
	      uint32_t reader_uid, char **out, size_t *len);

/* Add an exact integer field (cJSON numbers are doubles: ids, LSNs and
 * sizes past 2^53 must not print as 1.79e+15). */
cJSON *ev_add_u64(cJSON *o, const char *name, uint64_t v);

/* RFC 3339 UTC with milliseconds, e.g. 2026-12-07T05:04:30.123Z. */
void ev_rfc3339(uint64_t ns, char *buf, size_t cap);

#endif
