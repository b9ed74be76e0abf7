/*
 * clog.h — the commit log shown as .txdir/commits/ID (SPEC §5 "Records,
 * journals and logs"). Below the control tree: the engine notes each commit
 * as it applies it (and at replay); the control tree renders it.
 *
 * On disk: STORE/coordination/commits/log, append-only records
 *     u32 magic "CLG2", u32 body length, u64 xxh64(body), body:
 *     u64 id, u64 time_ns, u64 txn, u32 pid, u32 n,
 *     n x {u8 kind, u64 checksum (0: none), u16 len, path, u16 len, from}
 *   kind: 'C' created, 'M' modified, 'D' removed, 'R' renamed (from → path),
 *   'L' linked (another name for an existing file). Paths are absolute in
 *   the data tree, as they were when the commit applied.
 * In memory: an index of {id, time, offset} per retained commit — paths are
 * read from the file when a commit is rendered.
 *
 * Invariants.
 *  C1 Ids strictly increase in the file and the index; noting an id already
 *     logged does nothing (replay after the log was written).
 *  C2 A commit's record lists every path it changed, once per path and
 *     kind, with the content checksum ("xxh64:…") of regular files.
 *  C3 A torn or garbage tail ends the log at open (it is cut), not an error:
 *     the log is derived, replay of the WAL re-notes what is missing. So
 *     records may wait in memory (a process crash loses them, replay
 *     re-notes them) but never past a checkpoint that covers their commit.
 *  C4 Paths are those at commit time: a later rename does not rewrite them.
 *  C5 clog_render gives one JSON object (cJSON); a path the reader's filter
 *     refuses reads "(hidden)" and its checksum is left out.
 *  C6 Memory is O(retained commits) and does not hold paths.
 *
 * Locking: struct clog has its own mutex, a leaf (taken under fs->lock).
 * clog_note_begin/end read the namespace: the caller holds what protects it.
 */
#ifndef TXD_CLOG_H
#define TXD_CLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ns.h"
#include "rec.h"

struct clog;
struct clog_note;

/* Open (create) DIR/log and index it. */
int clog_open(const char *dir, struct clog **out);
void clog_close(struct clog *cl);

/* Before ns applies commit `id` (payload as in the WAL): what its removals
 * and replacements name now. *out is NULL when the log has id already (C1)
 * or the payload is not a commit. */
int clog_note_begin(struct clog *cl, struct ns *ns, uint64_t id, const void *payload,
		    uint32_t len, struct clog_note **out);
/* After it applied: append its record (C2). Frees note (NULL is fine). */
int clog_note_end(struct clog *cl, struct clog_note *note, struct ns *ns);
/* The commit did not apply: forget the note. */
void clog_note_drop(struct clog_note *note);

/* Id of the k-th newest commit no older than oldest_ns; false past the end. */
bool clog_nth_newest(struct clog *cl, uint64_t oldest_ns, uint64_t k, uint64_t *id);
bool clog_has(struct clog *cl, uint64_t id, uint64_t oldest_ns);
/* Filter for paths (C5): what the reader may see of a change to path
 * whose content checksum is sum (0: none): 0 nothing (the path shows as
 * "(hidden)"), 1 the path, 2 the path and the checksum. */
typedef int (*clog_path_ok_fn)(void *arg, const char *path, uint64_t sum);
/* Commit id as JSON into *out (malloc'd, *len bytes); -ENOENT if not
 * retained. ok may be NULL (show every path). */
int clog_render(struct clog *cl, uint64_t id, uint64_t oldest_ns, clog_path_ok_fn ok, void *arg,
		char **out, size_t *len);
/* Records are gathered in memory and written in batches (clog.c): after
 * clog_flush every record noted so far is in the file (a crash of the
 * process keeps it). The checkpoint flushes before it writes a checkpoint
 * (C3: replay re-notes only the commits after it). */
int clog_flush(struct clog *cl);
/* Flush, then fdatasync the log (before the WAL segments it derives from go). */
int clog_sync(struct clog *cl);
/* Start-up, after replay: the WAL ends at `last`; commits logged past it
 * were lost with the WAL's unsynced tail and their ids will be reused
 * (SPEC §7: never trusted over the WAL). Cuts them from the file (made
 * durable) and the index; 1 when it cut, 0 when nothing to cut, or negative
 * errno. */
int clog_cut_after(struct clog *cl, uint64_t last);
/* Drop commits older than oldest_ns from the file and the index. */
int clog_trim(struct clog *cl, uint64_t oldest_ns);

#endif
