/*
 * gc.h — garbage collection of packs and WAL segments: the space of chunks
 * no version names any more comes back, online, in the background, without
 * holding fs->lock across I/O (issue 12 item 3; SPEC §7).
 *
 * Packs are append-only and a WAL segment holding one live inline chunk is
 * kept by checkpoints (ckpt.c K3), so deleting half a tree frees nothing by
 * itself. GC copies the live chunks of mostly-dead files into the pack
 * being appended (relocation, chunk.h C1) so the old files end up named by
 * nothing, then deletes them once that is durable.
 *
 * A run (gc_run; on the checkpoint thread after each checkpoint and every
 * GC_EVERY_S seconds, the first GC_EVERY_S after the open):
 *   1. deletes the files an earlier run left pending whose condition (G4)
 *      now holds: chunkstore_forget_file, unlink, fsync of the directory;
 *   2. picks victims (G2) from the live-byte table (G1) and file sizes;
 *   3. collects references to the chunks of every retained version of the
 *      main tree (heads and the older versions kept for snapshot readers,
 *      frozen nodes and registered snapshots) that lie in a victim,
 *      GC_BATCH inodes and GC_HOLD_CHUNKS chunks per hold of fs->lock (a
 *      large file over several holds; a chunk it does not reach, in
 *      a transaction's view say, stays where it is and keeps its file: G1);
 *   4. without fs->lock: reads each chunk (chunkstore_read verifies its
 *      checksum; a chunk that fails stays where it is), appends it to the
 *      current pack, and every GC_MOVE_BYTES chunkstore_sync, then in one
 *      hold chunk_set_loc for those whose location is still the old one;
 *   5. in one hold (T0): each pack victim that no chunk object names and no
 *      working copy pins, while no transaction is active or prepared,
 *      becomes pending until a checkpoint begun after T0 is durable (G4);
 *      the checkpoint thread writes one at its next tick (gc_ckpt_forced).
 *   WAL-segment victims need no step 5: the next written checkpoint no
 *   longer notes them and drops them (ckpt.c K2/K3), under G5.
 *
 * Invariants.
 *  G1 chunk.c counts, per store file (pack n or CHUNK_FILE_WAL|seg), the
 *     bytes and number of chunk objects naming it (chunk_new, the last
 *     chunk_unref, chunk_set_loc) and the spilled chunks of working copies
 *     in it (pins: they are no chunk objects until their commit; a spill
 *     pins from within its append, under the lock that rotates packs:
 *     CHUNK_APPEND_PIN), and the
 *     commits prepared while it took appends (preps: a large commit moves
 *     its inline chunks to a pack, syncs it, then appends the record; in
 *     between they are neither). Exact whatever the thread, under its own
 *     leaf lock (core.h 6). A lost table (ENOMEM) makes GC delete nothing.
 *  G2 A victim is a pack other than the one being appended, or a WAL
 *     segment before the current one, whose live bytes are at most
 *     GC_LIVE_PCT % of its size on disk (all-dead files included; a tree
 *     half deleted qualifies). Copying up to 60% to free 40% is the price
 *     of reclaiming a half-deleted tree at all. The
 *     pack being appended is sealed first (chunkstore_seal) when it
 *     qualifies, so a tree written and half deleted in one mount is
 *     reclaimed too.
 *  G3 Relocation never changes what a file reads (C1): the copy is
 *     verified by checksum when read, made durable (chunkstore_sync) before
 *     any chunk_set_loc names it, and a location changed meanwhile by
 *     someone else is left alone. New commits go on meanwhile: they only
 *     name new chunks or chunk objects' current locations, read under
 *     fs->lock, which is also held for chunk_set_loc.
 *  G4 A pack is unlinked only if (a) at T0 no chunk object names it, no
 *     working copy pins it, no commit prepared while it or an older pack
 *     took appends is in flight, no transaction is active or prepared (their
 *     logs and PREPARE records hold encoded locations that are no chunk
 *     objects) and it is not being appended, and (b) a checkpoint whose
 *     snapshot hold came after T0 (gc_ckpt_begin counts them) is durable:
 *     it names only current locations, and every record replayed after
 *     it was appended after T0 and cannot name the pack. Nothing can name
 *     it again after T0, so (a) still holds at (b). In an idle store that
 *     checkpoint has the LSN of the last one: ckpt.c then rewrites it
 *     (gc_ckpt_forced) as "ckpt-LSN.new", fsynced, renamed over the old
 *     one, directory fsynced: either file is a valid checkpoint of LSN,
 *     and the pack goes only after the rename is durable.
 *  G5 A checkpoint that writes nothing (its LSN is the last one's) drops
 *     WAL segments only if GC relocated nothing since the snapshot of the
 *     last written checkpoint (gc_moves): that checkpoint may still name
 *     the old segment. After a relocation gc_ckpt_forced asks for one at
 *     the same LSN (as G4), so an idle store gets its segments back too.
 *  G6 A reader that took a chunk's location before its relocation and
 *     reads after its old file went gets -ENOENT, takes the location again
 *     and reads the new copy (chunk.c read_chunk, cmap_read).
 *  G7 Crash at any step: the store recovers to the same tree. Before
 *     chunk_set_loc nothing on disk changed but unreferenced bytes at the
 *     end of a pack; after it, the checkpoint and the log still name the
 *     old file, which is not deleted before G4 holds; a pending list lost
 *     in a crash is found again (the files are still named by nothing).
 *  G8 A full disk (space.h): relocation appends bypass SP4's refusal
 *     (they are what gives space back), release the reserve when the disk
 *     is full, and a run moves at most what the disk has room for (free
 *     space plus the reserve, less GC_ROOM_SLACK; not even one victim
 *     past it: copies that fill the disk leave no room for the checkpoint
 *     that would let the victims go): they go a checkpoint later, and the
 *     next run has their room. A victim whose live bytes exceed the room
 *     waits (a 1 MiB file per WAL segment of a nearly full small disk).
 *     Packs rotate at a 32nd of the file system (chunk.h), so a victim's
 *     live bytes fit even on a small disk.
 *
 * Lock order: gc_run is called with fs->lock held and returns with it held,
 * dropping it for every I/O; one run per store at a time (a busy flag
 * under fs->lock: a second caller waits for the first to end, then runs).
 * chunk.c's usage lock is a leaf.
 */
#ifndef TXD_GC_H
#define TXD_GC_H

#include <stdbool.h>
#include <stdint.h>

struct txd_fs;

#define GC_LIVE_PCT 60          /* G2: a tree half deleted qualifies even when
                                   its live chunks' zero tails were not trimmed
                                   as much as the dead ones' */
#define GC_BATCH 256            /* inodes per hold of fs->lock (step 3) */
#define GC_HOLD_CHUNKS 16384u   /* chunks visited per hold (step 3) */
#define GC_MOVE_BYTES (8u << 20) /* bytes relocated per sync and hold (step 4) */
#define GC_EVERY_S 10           /* background runs at least this often */
#define GC_RUN_BYTES (256ull << 20) /* live bytes one run moves at most (but
                                       always one victim's) */
#define GC_ROOM_SLACK (1ull << 20) /* G8: left free for the log and a checkpoint */

struct gc_stats {
	uint64_t runs;
	uint64_t bytes_reclaimed;   /* sizes of the files deleted */
	uint64_t files_deleted;
	uint64_t bytes_moved;       /* relocated chunk bytes */
	uint64_t dead_bytes;        /* as of the last run: size - live over packs
	                               and WAL segments before the current one */
	uint64_t pending;           /* packs waiting for a checkpoint (G4) */
	uint64_t collect_pauses;    /* step 3 walks paused inside a file */
};

/* Tests: chunks per hold of step 3 instead of GC_HOLD_CHUNKS (0: that). */
extern uint32_t gc_test_hold_chunks;

/* One run (steps 1-5), after the one in progress if any; fs->lock held on
 * entry and on return. -EIO if the store failed, -ENOMEM, or the error of
 * a pack append or sync (nothing was named by then); a failed read of one
 * chunk only leaves that chunk (and its file) in place. */
int gc_run(struct txd_fs *fs);
/* fs->lock held. */
void gc_get_stats(struct txd_fs *fs, struct gc_stats *out);
/* GC_EVERY_S passed since the last run began (or none ran); fs->lock held. */
bool gc_due(struct txd_fs *fs);
/* A pending pack waits for a checkpoint begun after T0 (G4 b): the
 * checkpoint thread writes one, at the same LSN if nothing was committed.
 * fs->lock held. */
bool gc_ckpt_forced(struct txd_fs *fs);
/* In the hold that takes a written checkpoint's snapshot: its number. */
uint64_t gc_ckpt_begin(struct txd_fs *fs);
/* Relocations so far (G5); fs->lock held. */
uint64_t gc_moves(struct txd_fs *fs);
/* Checkpoint gen, whose snapshot saw moves relocations, is durable (G4,
 * G5); fs->lock held. */
void gc_ckpt_written(struct txd_fs *fs, uint64_t moves, uint64_t gen);
/* G5: may a checkpoint that wrote nothing drop WAL segments? */
bool gc_segments_settled(struct txd_fs *fs);
void gc_free(struct txd_fs *fs);

#endif
