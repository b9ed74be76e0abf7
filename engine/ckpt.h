/*
 * ckpt.h — checkpoints of the whole namespace (ckpt.c; its top comment is the
 * design: format, invariants K1-K7). Internal to the engine.
 */
#ifndef TXD_CKPT_H
#define TXD_CKPT_H

#include <stdint.h>

struct txd_fs;

/* Write a checkpoint of the whole namespace at the current LSN and drop
 * what it makes unnecessary (older checkpoints, WAL segments with no live
 * chunks). Caller holds fs->lock; it is released meanwhile (K7) and held
 * again on return. */
int ckpt_write(struct txd_fs *fs);
/* Load the newest valid checkpoint into fs->ns; *lsn = its LSN (0: none). */
int ckpt_load(struct txd_fs *fs, uint64_t *lsn);
/* ns_snapshot_release without its walk of every inode under fs->lock: the
 * snapshot is forgotten now, what only it kept is freed by ckpt_sweep on
 * the background thread, in bounded holds of fs->lock (K7). */
void ckpt_snapshot_release(struct txd_fs *fs, uint64_t s);
/* fs->lock held; released between batches. */
void ckpt_sweep(struct txd_fs *fs);

/* The checkpoint files on disk, their LSNs ascending (the control tree's
 * dtc/checkpoints/, informational); *lsns malloc'd (NULL when none). */
int ckpt_list(struct txd_fs *fs, uint64_t **lsns, uint32_t *n);
/* The size of checkpoint lsn's file; -ENOENT when it is gone. */
int ckpt_file_size(struct txd_fs *fs, uint64_t lsn, uint64_t *bytes);

#endif
