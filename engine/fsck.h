/*
 * fsck.h — offline verification of a store (`mountctl fsck`, `inspect`).
 * Internal to the engine; mountctl links the static library (the calls
 * hand back a namespace, ns.h, which txdir.h does not know).
 *
 * fsck_run reads a store that no server holds and checks what the other
 * headers promise, reporting each problem with where it is (a file of the
 * store and an offset) and what it affects (files by path and byte range,
 * commits by lsn). Problems are errors, except what --repair corrected.
 *   store.h S4  a part others can read or write (txdirfs refuses to mount
 *               it by default; --repair does not chmod).
 *   wal.h       every segment header (magic, version, number, checksum),
 *               the chain (consecutive numbers from where replay starts,
 *               first_lsn = previous end + 1; W4: an invalid header or a
 *               gap before unsettled segments is where recovery ends the
 *               log), every record after the newest valid checkpoint
 *               (magic, length, lsn = previous + 1, checksum with the
 *               segment's salt: W1), and the checksum of the checkpointed
 *               ones still in the log, older segments included (recovery
 *               walks those by magic, length and lsn only: a bad one is
 *               reported and affects only chunks still read from it).
 *   F1 A record that fails in the last segment with nothing valid after
 *      it is a torn tail (W2: recovery ends the log there; --repair does
 *      it). One followed by valid records (a later lsn with a good
 *      checksum), or one in an older segment before the next one's
 *      settled prev_end_lsn (W3), is damage in the middle: --repair
 *      changes nothing then, since recovery would drop checksummed
 *      records. (A power cut that wrote the unsynced tail out of order
 *      looks the same; fsck cannot tell, so it says so and keeps them.)
 *   ckpt.c K1   every checkpoint file: header, sections, blocks, trailer,
 *               and that its blocks apply. An invalid one is what recovery
 *               passes over: --repair deletes it when the log covers the
 *               store without it (no hole: else the error stays).
 *   rec.h R1    every commit after the checkpoint validates and applies
 *               (ns_apply) on top of it: the namespace recovery builds.
 *   chunk.h     every chunk of every live file's head version is read
 *               from its pack or WAL segment and its xxh64 compared; a
 *               bad or missing chunk names the file and bytes that read
 *               as EIO. Never repaired. Chunks are read in the order of
 *               their bytes on disk (sorted by file and offset).
 *   F5 A chunk inside a WAL record whose checksum held was verified with
 *      it (the record's xxh64 covers its bytes and the chunk's own sum):
 *      it is not read a second time, so fsck reads each byte of the store
 *      once. One in a record that failed is read and named.
 *   clog.h      the commits log (derived): each record's checksum, ids
 *               increasing, none beyond the log's last commit. --repair:
 *               recovery cuts it there and notes again the commits it
 *               replays (older ones stay out of .txdir/commits).
 *   txn.h T9    each dtc/transactions/ID.json is JSON naming its id; one
 *               still "active" is a note (F4); "committed" beyond the log
 *               is what recovery settles (--repair); "committed" as a
 *               commit the log holds for another transaction is an error.
 * F2 --repair runs the engine's own recovery (txd_fs_open, txd_fs_close
 *    with its checkpoint) only when every problem found is one recovery
 *    handles or leaves alone (no damage in the middle, no hole, no commit
 *    that fails to apply), deletes invalid checkpoints first, then checks
 *    again: what is gone is reported FIXED, what is left ERROR.
 * F4 A transaction record left "active" by a crash is not damage (as
 *    e2fsck's journal replay is not): recovery records it "aborted
 *    restart" at the next mount. It is a NOTE, counted in notes and not in
 *    errors (exit 0 without --repair); --repair writes what recovery would
 *    and reports it FIXED.
 * F6 A torn checkpoint (it ends early: a kill during its write) that
 *    recovery passes over with nothing lost is a NOTE like F4: a newer
 *    checkpoint is used, or the log recovery replays (no hole, nothing it
 *    refuses or loses) reaches past the checkpoint's lsn. Otherwise (its
 *    segments gone, say) recovery needed it: an ERROR. A checkpoint of
 *    full length whose checksums fail is damage (a flipped byte): an
 *    ERROR whatever the log holds. --repair drops either and reports it
 *    FIXED.
 * F3 Nothing is written without --repair: files are only read (through
 *    the os.h table), and the store's LOCK is taken shared (LOCK_SH) for
 *    the check, so a server cannot start meanwhile; a held LOCK (a
 *    server) is refused with its pid, nothing read.
 */
#ifndef TXD_FSCK_H
#define TXD_FSCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ns.h"

enum fsck_sev {
	FSCK_ERROR,   /* left uncorrected */
	FSCK_FIXED,   /* corrected by --repair */
	FSCK_NOTE,    /* not damage: what recovery settles at mount (F4, F6) */
};

struct fsck_problem {
	enum fsck_sev sev;
	const char *kind;  /* "wal", "torn-tail", "checkpoint", "chunk", ... */
	char where[320];   /* file (relative to the store) and offset */
	char what[256];
	char affects[512];
};

/* A valid WAL record, in log order (inspect). */
struct fsck_rec {
	uint64_t lsn;
	uint32_t seg;
	uint64_t off;       /* of the record header in its segment */
	uint16_t type;      /* WAL_REC_* (rec.h) */
	const void *payload;
	uint32_t len;
};

/* Progress for a bar (fsck.h's caller draws it): bytes read of the log and
 * of chunks so far, of what the store's log and packs hold. */
struct fsck_progress {
	uint64_t records;
	uint64_t bytes, bytes_total;
};

struct fsck_opts {
	bool repair;
	bool keep_ns;       /* keep the built namespace in the result */
	bool skip_chunks;   /* count files, do not read their chunks (inspect) */
	void (*report)(void *arg, const struct fsck_problem *p);
	/* every valid record after the checkpoint recovery uses; non-zero
	 * stops the run and is returned */
	int (*record)(void *arg, const struct fsck_rec *r);
	/* called after each segment and every few MiB of chunks (optional) */
	void (*progress)(void *arg, const struct fsck_progress *p);
	void *arg;
};

/* One store file (a pack, or CHUNK_FILE_WAL | segment): its size on disk
 * and the bytes of it live files use; gc says GC would take it (gc.h G2:
 * live <= GC_LIVE_PCT % of size; never the last segment). */
struct fsck_use {
	uint32_t file;
	uint64_t size, live;
	bool gc;
};

struct fsck_result {
	unsigned format;
	uint64_t store_bytes;            /* every file of the store */
	uint32_t segments;
	uint64_t wal_bytes;
	uint64_t first_lsn, last_lsn;    /* the log recovery would replay */
	uint64_t records, commits;       /* checked (after the checkpoint) */
	uint64_t by_type[8];             /* records by WAL_REC_* (0: other) */
	uint32_t checkpoints;            /* files */
	uint64_t ckpt_lsn;               /* the one recovery uses (0: none) */
	uint32_t packs;
	uint64_t pack_bytes;
	uint64_t pack_live_bytes;        /* of chunks live files use */
	struct fsck_use *uses;           /* per pack and segment, packs first */
	uint32_t nuses;
	uint64_t gc_would_free;          /* size - live over the files GC takes */
	uint64_t chunks, chunk_bytes;    /* verified */
	uint64_t files, dirs, others, live_bytes;
	uint64_t clog_records;
	unsigned errors, fixed, notes;
	pid_t holder;                    /* -TXD_ELOCKED: the server's pid */
	bool have_ns;
	struct ns ns;                    /* opts.keep_ns: the namespace */
};

/* One WAL segment checked as scrub.h reads it while a server appends:
 * every record from the segment's first up to lsn upto (W6: those reached
 * the kernel whole), magic, length, lsn sequence and checksum (W1). */
struct fsck_seg_check {
	uint64_t first_lsn;        /* the header's (upto 0: only the header is read) */
	uint64_t records;          /* checked, after `after` up to upto */
	uint64_t bytes;            /* of every record walked */
	uint64_t last_lsn;         /* the last valid one (first_lsn - 1: none) */
	bool header_bad;           /* an invalid header: nothing walked */
	bool bad;                  /* a record up to upto fails: */
	uint64_t bad_off;          /*   where (its header's offset) */
	char why[64];              /*   why ("checksum mismatch", ...) */
	char desc[160];            /*   which ("commit 12 (txn 0, pid 4, 3 ops)") */
};

/* Segment file path (number num): 0 with out filled, -ENOENT (gone
 * meanwhile: a checkpoint dropped it), or -errno. after: records with an
 * lsn <= after are walked but not counted. */
int fsck_segment_check(const char *path, uint32_t num, uint64_t after, uint64_t upto,
		       struct fsck_seg_check *out);

/* 0 once the store was checked (problems are in the counts), or: -TXD_ELOCKED
 * (r->holder set), -TXD_ENOTSTORE, -TXD_EFORMAT, -errno (operational). */
int fsck_run(const char *dir, const struct fsck_opts *o, struct fsck_result *r);
void fsck_result_free(struct fsck_result *r);

#endif
