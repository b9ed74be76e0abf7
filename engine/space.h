/*
 * space.h — a full disk: the reserve, and who may still write.
 *
 * When the file system holding the store runs out of space, txdir fails the
 * operation that does not fit with ENOSPC (or EDQUOT) and keeps everything
 * committed before it; the store is "disk full" (degraded), never "failed"
 * by it. Like ext4's reserved blocks, part of the disk is kept back so that
 * what frees space — deleting, truncating, aborting, releasing, a
 * checkpoint, GC's relocation — still fits when nothing else does.
 *
 * On disk: STORE/objects/reserve, a file of R allocated bytes (fallocate,
 * or zeros written where there is none; it names nothing and is never
 * read). It is
 * derived: a store without it is whole, and any mount re-creates it.
 *
 * Invariants.
 *  SP1 Size: R = max(SPACE_MIN (8 MiB), 2 x the size of the newest
 *      checkpoint file) — what a checkpoint and GC's relocation (live chunks
 *      copied before their old pack goes) must be able to write on a full
 *      disk. Recomputed at every open and every restore (space_tick).
 *  SP2 Held: after open the reserve file holds R bytes, unless the disk had
 *      not that much free (the reserve is then short; SP5 completes it).
 *  SP3 Who may use it: recovery at open (space_open_room), a commit whose
 *      record does not grow the store
 *      (space_record_grows false: deletes, renames, truncations, attribute
 *      changes, transaction aborts) and a checkpoint. Such a commit is
 *      appended with WAL_APPEND_RESERVE (first the log's own pre-allocated
 *      headroom, wal.h W8); when even that fails with ENOSPC/EDQUOT the
 *      reserve is released (the file truncated to 0) and the append retried
 *      once. Pack appends and commits that grow never release it.
 *  SP4 While the reserve is not held (released or short), an operation that
 *      grows the store is refused with -ENOSPC before anything is written,
 *      unless the file system has the missing part of R (R minus what the
 *      file holds) plus SPACE_SLACK free (space_may_grow): the reserve's
 *      bytes stay for SP3 even once given back to the disk.
 *  SP5 Restore: space_tick (once a second, from the checkpoint thread, with
 *      no store lock held) re-creates the reserve when the file system has
 *      R + SPACE_SLACK free; the store leaves "disk full" when the reserve
 *      is held again and no ENOSPC was returned since (SP6).
 *  SP6 Disk full: from the first ENOSPC/EDQUOT returned to a caller
 *      (space_note_full) until SP5's restore, and whenever the reserve is
 *      not wholly held (SP4 refuses growth then), space_full is true and
 *      status shows "disk full" with the reason; nothing is sticky.
 *  SP7 statfs (df on the mount): free and available space minus the part of
 *      R the reserve file does not hold now (what it holds is already used
 *      on the file system), so df shows what growing operations can use.
 *
 * Lock: sp->lock is a leaf (taken under fs->lock or alone); the reserve
 * file's I/O in space_tick runs with no other lock held.
 */
#ifndef TXD_SPACE_H
#define TXD_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>

#define SPACE_MIN (8ull << 20)
#define SPACE_SLACK (1ull << 20)
#define SPACE_FILE "reserve"

/* Every call but space_open takes sp == NULL (a store opened without a
 * reserve): nothing is refused, nothing is reported. */

struct space;

/* Open the reserve in objdir (creating or completing it, SP2). ckpt_bytes:
 * the newest checkpoint's size (SP1). Only -ENOMEM or a real I/O error
 * fail it: no space is a short reserve. */
int space_open(const char *objdir, uint64_t ckpt_bytes, struct space **out);
void space_close(struct space *sp);

/* SP3: a commit record (ops, len: the encoded header and ops; data_len:
 * its inline chunk bytes) that grows the store: inline data, a content
 * change that stores chunks (other than a truncation's last chunk), an
 * extended attribute set, or a name made without one removed. */
bool space_record_grows(const void *ops, size_t len, uint64_t data_len);

/* SP3: give the reserve's bytes back to the file system. 0 when some were
 * released now, -ENOSPC when it held none. */
int space_release(struct space *sp);

/* SP3 at open: recovery must fit (it starts a new log segment, may write a
 * checkpoint): on a disk with less than SPACE_SLACK free, the reserve is
 * released before it (SP5 takes it back later). */
void space_open_room(struct space *sp);

/* SP4: 0, or -ENOSPC when a growing operation must not start now. */
int space_may_grow(struct space *sp);

/* SP6: an operation returned err (-ENOSPC/-EDQUOT) to its caller. */
void space_note_full(struct space *sp, const char *op, int err);

/* SP5: re-create a released or short reserve if the disk allows. */
void space_tick(struct space *sp, uint64_t ckpt_bytes);

/* SP6, for status: whether the store is "disk full", and why. */
bool space_full(struct space *sp, char *why, size_t cap);

/* SP7. */
void space_statfs(struct space *sp, struct statvfs *st);

/* R (SP1) and the bytes the reserve file holds now. */
void space_get(struct space *sp, uint64_t *reserve, uint64_t *held);

#endif
