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
 * The participants mode of SPEC §5 (every replace a 2PC proposal) would sit
 * between "checked" and "appended": the version is reserved, the proposal
 * decided, then the record appended. It is not built: no participants file
 * exists, every replace acts at once.
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
 *
 * Lock order: state->lock is a leaf; the backend's append is called with it
 * held (log order = version order), its sync without. The hook runs with no
 * lock held, on the replacing thread (or never, during replay).
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
 * Snapshot (state_snapshot_encode): u32 magic "TXST", u32 version 1, u32
 * len, then len bytes: one REPLACE record of the newest document (len 0 at
 * version 0). Decoding replays it (S5).
 */
#ifndef TXD_STATE_H
#define TXD_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_DOC_MAX (1u << 20)   /* bytes of a document: -EFBIG above */
#define STATE_ANY UINT64_MAX       /* state_replace: no compare-and-swap */
#define STATE_REC_HDR 32

enum { SREC_REPLACE = 1 };

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

/* Replace the document (S1-S4, S6). if_version: STATE_ANY or the version
 * the caller read. *version (may be NULL) gets the new version.
 * -EINVAL, -EFBIG (S4), -EBUSY (S3), -EIO (S6), -ENOMEM. */
int state_replace(struct state_svc *s, const char *doc, size_t len, uint64_t if_version,
		  const struct state_who *by, uint64_t *version);

/* ---- reading ------------------------------------------------------------ */
/* A malloc'd copy of the visible document (NUL-terminated, *len without
 * the NUL) and its version. -ENOMEM. */
int state_get(struct state_svc *s, char **doc, size_t *len, uint64_t *version);
uint64_t state_version(struct state_svc *s);
/* The visible document's version, time, writer and size (time 0 and the
 * server at version 0). */
void state_info(struct state_svc *s, struct state_event *out);
/* Replaces made visible since state_open (not replayed ones). */
uint64_t state_replaces(struct state_svc *s);

#endif
