/*
 * scrub.h — online verification of a mounted store (`mountctl scrub MNT`,
 * `.txdir/scrub`): what fsck.h verifies of the bytes still in use, done by
 * the running server on a background thread, without stopping the mount.
 * Internal to the engine; the control tree (ctl.c) is its one caller.
 *
 * What one scrub reads:
 *   wal.h    every WAL record still in the log, from the oldest segment up
 *            to the last lsn when the scrub began (magic, length, lsn
 *            sequence, checksum with the segment's salt: W1), through
 *            fsck_segment_check; records after the checkpoint are the ones
 *            counted (the ones recovery replays).
 *   chunk.h  every chunk of every live regular file's head version in the
 *            main tree, read from its pack or segment by chunkstore_read,
 *            which compares its xxh64 (a mismatch is also counted in
 *            txdir_checksum_errors_total).
 *
 * Invariants.
 *  S1 fs->lock is never held across I/O: the thread takes it in bounded
 *     holds (at most SCRUB_BATCH chunks or SCRUB_INODES inodes visited) to
 *     collect locations, drops it, then reads them.
 *  S2 A failed chunk is reported only if it is still true under fs->lock
 *     after the read: the inode's head version still maps that index to the
 *     same location. A file deleted or rewritten meanwhile, a chunk moved
 *     by garbage collection, a segment dropped by a checkpoint are not
 *     damage.
 *  S3 One scrub at a time per mount (-EBUSY); only root or the server's
 *     own user may start or cancel one (-EPERM). Anyone may read the
 *     progress; the control tree hides paths its reader could not list.
 *  S4 Throttled to `rate` bytes per second over the run (0: no limit): the
 *     thread sleeps on scrub's condition variable, so a cancel or an
 *     unmount ends it within one batch.
 *  S5 Each problem also goes to the event log (`scrub_error`) and counts in
 *     txdir_scrub_errors_total; a run's start and end are events too.
 *
 * States: idle → running (scrub_start) → done (every read made), cancelled
 * (scrub_cancel, unmount) or failed (an operational error: out of memory,
 * a store file unreadable for another reason than damage).
 *
 * Locks: scrub's own mutex is a leaf below fs->lock (core.h: like the
 * level-5 log locks): taken under fs->lock (start, render) or alone; the
 * thread never takes fs->lock while holding it.
 */
#ifndef TXD_SCRUB_H
#define TXD_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

struct txd_fs;

#define SCRUB_DEFAULT_RATE (64ull << 20) /* bytes/s (mountctl scrub --rate 64) */
#define SCRUB_BATCH 256                  /* chunks collected per hold of fs->lock */
#define SCRUB_INODES 4096                /* inodes visited per hold */
#define SCRUB_MAX_PROBLEMS 1000          /* kept for the report (all are counted) */

/* Begin a scrub at rate bytes/s (0: unlimited) for uid. fs->lock held.
 * 0, -EPERM (S3), -EBUSY (one runs), -ENOMEM, -errno (the thread). */
int scrub_start(struct txd_fs *fs, uint32_t uid, uint64_t rate);
/* Ask the running scrub to stop (S4). fs->lock held. 0, -EPERM, -ENOENT
 * (none runs). */
int scrub_cancel(struct txd_fs *fs, uint32_t uid);
/* The progress and the problems found as one JSON object and a newline
 * (malloc'd; NULL: out of memory). visible(arg, path) false hides a path
 * as "(hidden)". fs->lock held. */
char *scrub_render(struct txd_fs *fs, bool (*visible)(void *arg, const char *path), void *arg);
/* Prometheus lines (txdir_scrub_*) through put. fs->lock held. */
void scrub_stats(struct txd_fs *fs, void (*put)(void *arg, const char *text), void *arg);
/* Stop and join the thread, free everything (fs_free, no lock held). */
void scrub_free(struct txd_fs *fs);

#endif
