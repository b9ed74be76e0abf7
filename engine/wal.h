/*
 * wal.h — the write-ahead log: the one commit point of a store.
 *
 * Everything durable in txdir is a WAL record or is named by one. A record is
 * committed when it is completely in the log; nothing else is ever trusted
 * over the log.
 *
 * On-disk format. The log is a sequence of segment files in the WAL
 * directory, named "seg-%08u" (segment numbers increase by one, never reused).
 * All integers little-endian. A segment file may be longer than its records:
 * zeros written ahead of the append point, or the stale records of a recycled
 * file (W7); replay ends at the first record that fails (W2) either way.
 *
 *   segment header (64 bytes, at offset 0)
 *     0  u64 magic        "TXDWALSG"
 *     8  u32 version      1
 *    12  u32 seg          this segment's number
 *    16  u64 first_lsn    LSN of the first record in this segment
 *    24  u64 prev_end_lsn LSN of the last valid record of the previous
 *                         segment, as found when this one was opened
 *    32  u64 salt         random; mixed into every record checksum
 *    40  u8    flags        1 = PENDING (W4), else 0
 *    41  u64   boot         txd_os->boot_id of its creation (W9); 0 unknown
 *    49  u8[7] reserved     zero
 *    56  u64 checksum     xxh64 of bytes 0..55
 *
 *   record (32-byte header + payload, 8-byte aligned: padding is zero)
 *     0  u32 magic        "TXWR"
 *     4  u32 len          payload bytes
 *     8  u64 lsn          strictly consecutive: previous lsn + 1
 *    16  u16 type         WAL_REC_* (owner modules define them)
 *    18  u16 flags        0
 *    20  u32 reserved     0
 *    24  u64 checksum     xxh64(header bytes 0..23 || payload, seed = salt)
 *
 * Invariants.
 *  W1 LSNs are consecutive across the whole log; replay rejects a record whose
 *     lsn is not previous + 1 (stale bytes are never mistaken for records).
 *  W2 A torn or garbage tail ends the log: replay of the last segment stops at
 *     the first record that fails magic, length, lsn or checksum. It is not an
 *     error. The bytes after it are never overwritten: after every open,
 *     appends go to a fresh segment whose prev_end_lsn fixes where the older
 *     segment ended, so replay is the same every time.
 *  W9 Damage is not a tail. W2 holds after a reboot (a power cut may write
 *     the unsynced tail out of order, so a bad record may precede good
 *     ones). But in a last segment created in the current boot (its header's
 *     boot equals txd_os->boot_id) every append reached the page cache in
 *     order (W6), so a bad record followed by a valid one (magic, a later
 *     lsn, its checksum with the segment's salt) is damage: wal_replay
 *     returns -TXD_ECORRUPT and logs where, rather than ending the log
 *     there and dropping acknowledged commits. The store does not mount;
 *     mountctl fsck reports the damage with the records behind it. Likewise
 *     with opts.same_boot (the last server ran in this boot): what W4 reads
 *     as a power cut's lost rotation (an unreadable header, a segment that
 *     ends early before a pending one, a gap) is damage then, and
 *     -TXD_ECORRUPT rather than cutting the log there.
 *  W3 A bad record in a segment that is not the last, before its
 *     prev_end_lsn, is corruption: wal_replay returns -TXD_ECORRUPT and
 *     changes nothing on disk.
 *  W4 Rotation fsyncs nothing under the WAL lock (wal_append's callers hold
 *     fs->lock): the new segment is written as "seg-%08u.tmp" (or a spare)
 *     with a header whose flags byte (offset 40) says PENDING, renamed into
 *     place, and appends continue in it at once. No lsn in it is reported
 *     durable (W5) before the next sync has, in this order: fsynced every
 *     segment rotated out before it, rewritten each pending header as
 *     settled (flags 0) only after the segments before it were durable,
 *     fsynced the directory, and fdatasynced the current segment; a failure
 *     of any step fails the log. So a settled header vouches that every
 *     record up to its prev_end_lsn is durable (W3 holds for it), while
 *     after a power cut a pending header may follow a segment that ends
 *     early, or be zeros or a recycled spare's old header: replay then ends
 *     the log there and deletes the segments from that one on (none was
 *     settled, so none held an lsn ever reported durable; a settled one
 *     after them is corruption). The segment wal_replay starts appends in is
 *     created durably (header fsynced, renamed, directory fsynced), and
 *     wal_replay fdatasyncs the last segment before starting it: the new
 *     prev_end_lsn must not vouch for records that were only in the page
 *     cache. Replay deletes leftover .tmp files.
 *  W5 wal_sync(lsn) returns only after every record <= lsn is on stable
 *     storage. Concurrent callers share one fdatasync (group commit): a
 *     caller that arrives while a sync is running waits for it, then the next
 *     sync covers everything appended meanwhile.
 *  W6 Appends are serialised by the WAL's own mutex and reach the kernel
 *     (pwrite) before wal_append returns, so a process crash never loses an
 *     appended record; only a power cut can lose records after the last sync.
 *  W7 Pre-allocation (opts.zero_ahead, on in every durable mode): the sync
 *     thread keeps the current segment written with zeros ahead of the
 *     append point, so an fdatasync after an append changes no file size and
 *     no extent and ext4 need not commit its journal. A segment a checkpoint
 *     drops is recycled instead of deleted (at most WAL_SPARES of them, only
 *     full-size ones): renamed "spare-%08u", and at a later rotation given a
 *     new header (new random salt, new first_lsn), fsynced, then renamed to
 *     the new segment's name and the directory fsynced (W4 still holds). Its
 *     old records can never replay in the new segment: their lsns are below
 *     first_lsn (W1) and their checksums are seeded with another salt.
 *  W8 A full disk never leaves part of a record (space is reserved before
 *     writing). wal_append writes a record only into bytes of the segment
 *     file that are already allocated — W7's zeros, a spare's old bytes, or
 *     allocated by the append itself (zeros when W7 is on, else fallocate)
 *     — up to the record's end plus WAL_HEADROOM, or up to its end alone
 *     for a record appended with WAL_APPEND_RESERVE. When the file system
 *     cannot give that space (the allocation, or the new segment of a
 *     rotation, fails with ENOSPC or EDQUOT) the append returns that error
 *     with nothing written and the log is NOT failed: the caller's
 *     operation fails, every record before it stays, and a later append
 *     tries again. If the write of the record itself still meets
 *     ENOSPC/EDQUOT, the segment is truncated at the record's start (a
 *     shrinking truncate needs no space), so no byte of it stays, and the
 *     append fails the same non-sticky way; only when that undo fails too
 *     is the log failed. Every other error fails the log (sticky, as
 *     before). A full disk pauses W7's zeros until an allocation succeeds
 *     again. So an ordinary record never takes the last WAL_HEADROOM bytes
 *     of allocated log: they are kept for records that free space (deletes,
 *     truncations, renames, lease records: space.h SP3), which must fit
 *     when nothing else does.
 *
 * Memory. Nothing of a record stays in memory once it is appended: the log
 * keeps one append buffer (a record is built in it for one pwrite; freed
 * after a record larger than 256 KiB), the segment list, and the waiters
 * of wal_sync_async. Replay reads through a 4 MiB window, freed after.
 *
 * Lock order: callers may hold their own locks while calling wal_append (it
 * only takes w->lock briefly). wal_sync blocks: never call it from a FUSE
 * worker; use wal_sync_async, whose callback runs on the WAL's sync thread
 * with no WAL lock held — or, when opts.will_block is set and no sync is in
 * flight, on the caller's thread after the caller itself did the fdatasync
 * (no hand-off to the sync thread on the path of a lone fsync; will_block
 * is called first, with no WAL lock held).
 */
#ifndef TXD_WAL_H
#define TXD_WAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct wal;

#define WAL_SEG_HDR_SIZE 64
#define WAL_REC_HDR_SIZE 32
#define WAL_MAX_RECORD (256u << 20) /* payload limit per record */
#define WAL_SPARES 2               /* recycled segment files kept (W7) */

struct wal_opts {
	uint64_t seg_size;          /* rotate after this many bytes; 0 = 64 MiB */
	uint32_t sync_interval_ms;  /* background sync of appended records every
	                               so often; 0 = never (durability=none) */
	bool zero_ahead;            /* W7; also on whenever sync_interval_ms is */
	/* Optional: lets wal_sync_async sync on the caller's thread; called
	 * just before that thread blocks in fdatasync (no WAL lock held). */
	void (*will_block)(void *arg);
	void *will_block_arg;
	/* W9: the last server of this store ran in the current boot (the
	 * store's LOCK says so): no power cut since, so a segment header that
	 * does not read back, a segment ending before the next one's
	 * prev_end_lsn, or a gap in the chain is damage, not a lost tail */
	bool same_boot;
};

/* Where a record's payload landed, so callers can name byte ranges inside
 * it (inline chunk data) as (seg, payload_off + k). */
struct wal_pos {
	uint64_t lsn;
	uint32_t seg;
	uint64_t payload_off;  /* file offset of the payload in segment seg */
};

typedef int (*wal_replay_fn)(void *arg, const struct wal_pos *pos, uint16_t type,
			     const void *payload, uint32_t len);

/* Open (creating if empty) the log in dir. Does not replay. */
int wal_open(const char *dir, const struct wal_opts *opts, struct wal **out);

/* Replay every valid record with lsn > after_lsn, in order, then start a
 * fresh segment for appends (W2). Reading starts at the last segment whose
 * first_lsn <= after_lsn + 1: older segments (kept only for the chunk bytes
 * they hold) are not read and may have gaps between them; from there on,
 * segments must be consecutive. Records <= after_lsn are walked
 * (magic, len, lsn) but not checksummed: the checkpoint holds their effect,
 * and chunk bytes inside them are verified when read (chunkstore_read). Must be called exactly once, before any
 * append. after_lsn = 0 replays everything. A non-zero return of fn stops the
 * replay and is returned. -TXD_ECORRUPT per W3. If the log's first record is
 * after after_lsn + 1 (a hole), -TXD_ECORRUPT. */
int wal_replay(struct wal *w, uint64_t after_lsn, wal_replay_fn fn, void *arg);

/* Append one record (payload = the iovecs concatenated). Fills pos (may be
 * NULL). -EFBIG over WAL_MAX_RECORD, -EINVAL before wal_replay, -EIO once
 * failed; -ENOSPC or -EDQUOT when the disk has no room for it (W8: nothing
 * written, the log stays usable). */
int wal_append(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
	       struct wal_pos *pos);

/* W8: pre-allocated log kept for records that free space. */
#define WAL_HEADROOM (256u << 10)
#define WAL_APPEND_RESERVE 1u /* the record may use WAL_HEADROOM (W8) */

/* wal_append with flags (WAL_APPEND_*). */
int wal_append_flags(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
		     unsigned flags, struct wal_pos *pos);

/* Whether the last append or pre-allocation met a full disk (W8) and no
 * allocation has succeeded since. */
bool wal_space_short(struct wal *w);

/* Highest LSN appended / known durable. */
uint64_t wal_last_lsn(struct wal *w);
uint64_t wal_durable_lsn(struct wal *w);

/* Group commit (W5). Blocking. */
int wal_sync(struct wal *w, uint64_t lsn);

/* cb(arg, err) runs on the sync thread once lsn is durable (or immediately,
 * on the caller's thread, if it already is). With opts.will_block set and no
 * sync in flight, the caller leads the sync itself: will_block, fdatasync,
 * then cb on the caller's thread (group commit as in W5: one fdatasync for
 * everything appended so far). Otherwise non-blocking. */
int wal_sync_async(struct wal *w, uint64_t lsn, void (*cb)(void *arg, int err), void *arg);

/* Segment bookkeeping for checkpoints. */
uint32_t wal_current_seg(struct wal *w);
/* Delete segment seg (must be older than the current one), or recycle it as
 * a spare (W7). Never deletes the current segment; fsyncs the directory. */
int wal_drop_segment(struct wal *w, uint32_t seg);
/* Segments present on disk, oldest first; *n set. Caller frees *segs. */
int wal_list_segments(struct wal *w, uint32_t **segs, uint32_t *n);

/* One segment as the control tree's dtc/wal/ shows it (informational). */
struct wal_seg_info {
	uint32_t seg;
	uint64_t bytes;     /* its size (the current one: its append point) */
	uint64_t first_lsn; /* the lsn its first record has or would have (0: its
			     * header was not read: not known) */
	uint64_t last_lsn;  /* its last record's (first_lsn - 1: none) */
	bool last_known;    /* last_lsn is known: the current segment, or the
			     * next one is on disk (its header's prev_end_lsn) */
};
/* Segments present on disk, oldest first, with what is known of them
 * without any I/O. Caller frees *out. */
int wal_segments(struct wal *w, struct wal_seg_info **out, uint32_t *n);

struct wal_stats {
	uint64_t records, bytes, syncs, synced_records; /* records/sync = batch */
	uint64_t disk_bytes;                            /* log bytes in the segments: their
							 * sizes, the current one's append
							 * point (not its zeros ahead, W7/W8) */
	uint64_t mem_bytes;                             /* append buffer held */
};
void wal_get_stats(struct wal *w, struct wal_stats *st);
/* Bytes appended since open (cheap; for checkpoint scheduling). */
uint64_t wal_bytes_appended(struct wal *w);

/* Stop the sync thread (after a final sync unless durability none), close. */
void wal_close(struct wal *w);

/* After a failed write or fsync the log is unusable: every later append and
 * sync returns -EIO (sticky; STYLE rule 6). */
bool wal_failed(struct wal *w);

#endif
