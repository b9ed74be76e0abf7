/*
 * chunk.h — file content: checksummed chunks, copy-on-write chunk maps,
 * pack files, and the per-file working copy that writers share.
 *
 * A file's content is a map from chunk index (offset / TXD_CHUNK_SIZE) to an
 * immutable chunk; a missing index is a hole (reads as zeros, costs nothing).
 * A chunk is stored once, either inline in a WAL record (small commits) or in
 * a pack file (large commits, made durable before the WAL record that names
 * it). Its bytes are checksummed with xxh64; a mismatch on read is -EIO and
 * is counted — never wrong bytes.
 *
 * Location encoding (struct chunk_loc.file):
 *   CHUNK_FILE_WAL | seg   bytes inside WAL segment "seg-%08u"
 *   pack number n          bytes inside objects/"pack-%06u"
 *
 * Pack file format: raw chunk bytes appended back to back; no header needed
 * because every chunk is located and verified by the WAL record naming it.
 * Packs are append-only and rotate at a 32nd of the file system holding
 * the store, between 1 MiB and 1 GiB (so GC can move a victim on a small or
 * full disk); offsets fit in u64.
 *
 * Chunk maps (struct cmap) are persistent radix trees with fanout
 * CMAP_FANOUT and reference-counted nodes. Every committed version of a file
 * holds a reference to its map root; a working copy derived from a version
 * shares all nodes and copies only the path it changes (so a 4 KiB write into
 * a 1 GiB file copies about log64(n) small nodes). A map with only index 0
 * needs no node at all (height 0: the root is the chunk), so a small file
 * costs one chunk object.
 *
 * Invariants.
 *  C1 A chunk's bytes never change after chunk_new; its location may change
 *     (relocation by GC, gc.h G3) but always names identical bytes.
 *  C2 A map reachable from a committed version is never modified in place.
 *     In-place updates happen only on nodes whose refcount is 1 (owned by one
 *     working copy).
 *  C3 Chunk length <= TXD_CHUNK_SIZE; bytes past the length inside the chunk's
 *     span read as zeros (a file's last chunk is stored short).
 *  C4 A chunk of all zero bytes is never stored: it becomes a hole.
 *  C5 A working copy's in-memory chunk holds only the bytes written or
 *     loaded into it, rounded up to 4 KiB (bytes past its buffer read as
 *     zeros), so a 1 KiB save costs a 4 KiB buffer, not a 32 KiB one.
 *
 * Memory. A committed chunk costs its struct chunk (location and checksum:
 * ~48 bytes) whatever its length: the bytes stay in the WAL or a pack and
 * are read on demand. A map costs one node per 64 slots and is shared with
 * every version that did not change it. Content in memory is only that of
 * working copies (C5), bounded per copy by a spill budget (16 MiB) and
 * freed by the commit; wcopy_mem_total() counts it for tests and stats.
 *
 * The file digest (user.txdir.checksum) is
 *   xxh64(le64(sum) || le64(size), seed 0), printed as "xxh64:" and 16 hex
 *   digits, where
 *   sum = Σ over stored chunks (mod 2^64) of xxh64(le64(idx) || le64(csum)).
 * Holes contribute nothing, so it is kept current in O(changed chunks):
 * digest_term() of the old chunk is subtracted and of the new one added.
 *
 * Thread safety: chunks and map nodes use atomic reference counts; a map
 * root may be read by any number of threads while its owner holds a
 * reference. A wcopy is protected by its owner's lock (the file's inode).
 */
#ifndef TXD_CHUNK_H
#define TXD_CHUNK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TXD_CHUNK_SHIFT 15
#define TXD_CHUNK_SIZE (1u << TXD_CHUNK_SHIFT) /* 32 KiB */
#define CMAP_FANOUT_SHIFT 6
#define CMAP_FANOUT (1u << CMAP_FANOUT_SHIFT)
#define CHUNK_FILE_WAL 0x80000000u

struct chunk_loc {
	uint32_t file;  /* CHUNK_FILE_WAL|seg, or pack number */
	uint32_t len;   /* stored bytes, 1..TXD_CHUNK_SIZE */
	uint64_t off;   /* byte offset inside that file */
	uint64_t csum;  /* xxh64(bytes, len, seed 0) */
};

/* ---- chunks ---------------------------------------------------------- */
struct chunk;
struct chunk *chunk_new(const struct chunk_loc *loc); /* refcount 1; NULL on ENOMEM */
struct chunk *chunk_ref(struct chunk *c);
void chunk_unref(struct chunk *c);
void chunk_get_loc(const struct chunk *c, struct chunk_loc *out);
void chunk_set_loc(struct chunk *c, const struct chunk_loc *loc); /* relocation, C1 */
uint64_t chunk_csum(const struct chunk *c);

/* Live bytes per store file (gc.h G1): chunk objects naming file (their
 * bytes and count) and working copies' spilled chunks in it (pins). false
 * when the process's table was lost to an allocation failure (then nothing
 * may be deleted on its word). Counts of every store open in the process
 * add up (never below one store's own). */
struct chunk_usage {
	uint64_t live_bytes, chunks, pins;
};
bool chunk_usage_get(uint32_t file, struct chunk_usage *out);
/* Commits prepared (wcopy_prepare, not yet committed or abandoned) while a
 * pack <= pack took appends: their chunks may be in such a pack without
 * being chunk objects or pins yet (a large commit moves its inline chunks
 * to a pack before its record). Non-zero also when the table was lost. */
uint64_t chunk_usage_preps_upto(uint32_t pack);
uint32_t chunk_len(const struct chunk *c);

uint64_t chunk_checksum(const void *buf, size_t len);
uint64_t digest_term(uint64_t idx, uint64_t csum);
uint64_t digest_final(uint64_t sum, uint64_t size);

/* ---- chunk maps (persistent radix tree) ------------------------------ */
struct cmap; /* NULL is the empty map */
struct cmap *cmap_ref(struct cmap *m);
void cmap_unref(struct cmap *m);
/* Borrowed pointer, valid while the caller holds a reference on m. */
struct chunk *cmap_get(const struct cmap *m, uint64_t idx);
/* Set idx to c (consumes the caller's reference on c, also on error; NULL
 * makes a hole). *m must be a reference the caller owns; it is replaced by
 * the new root (path copied where shared, C2). For digest upkeep, read the
 * replaced chunk with cmap_get before the call. Maps are kept canonical
 * (same content, same shape). -ENOMEM, or -EFBIG for idx >= 2^54. */
int cmap_set(struct cmap **m, uint64_t idx, struct chunk *c);
/* Drop every index >= first_dropped. Calls cb for each dropped chunk
 * (for digest upkeep) if cb is not NULL. */
int cmap_truncate(struct cmap **m, uint64_t first_dropped,
		  void (*cb)(void *arg, uint64_t idx, const struct chunk *c), void *arg);
/* Visit stored chunks with idx >= from in increasing order; non-zero from cb
 * stops and is returned. */
int cmap_walk(const struct cmap *m, uint64_t from,
	      int (*cb)(void *arg, uint64_t idx, struct chunk *c), void *arg);
/* Number of nodes of m not shared with any other map (m's own root counts
 * even if m itself is referenced twice); 0 for an empty or height-0 map.
 * After a commit it is the number of nodes the commit copied (stats/tests). */
size_t cmap_node_count(const struct cmap *m);

/* ---- chunk store: packs + reading chunk bytes -------------------------- */
struct chunkstore;
/* objdir: STORE/objects; waldir: the WAL directory (for CHUNK_FILE_WAL). */
int chunkstore_open(const char *objdir, const char *waldir, struct chunkstore **out);
void chunkstore_close(struct chunkstore *cs);
/* Append bytes to the current pack (pwrite, not synced). Fills loc
 * (including csum). Each open appends to a new pack, created on the first
 * append; its directory entry is fsynced by chunkstore_sync. */
int chunkstore_append(struct chunkstore *cs, const void *buf, uint32_t len,
		      struct chunk_loc *loc);
/* Pack appends grow the store: with sp set, chunkstore_append refuses
 * with -ENOSPC while space.h's reserve is not held and the disk has no
 * room for it (SP4). A full disk during an append (-ENOSPC, -EDQUOT)
 * fails that append only: nothing names its bytes, and the next append
 * writes over them. */
struct space;
void chunkstore_set_space(struct chunkstore *cs, struct space *sp);
/* chunkstore_append for GC's relocation (CHUNK_APPEND_FREES: it copies
 * what lets a victim go, so SP4 does not refuse it; a full disk still
 * fails the append). */
#define CHUNK_APPEND_FREES 1u
/* A working copy's spill: the chunk pins its pack (gc.h G1) from within
 * the append, under the lock that rotates packs, so no GC run sees the
 * pack unpinned and no longer appended to between the write and the pin. */
#define CHUNK_APPEND_PIN 2u
int chunkstore_append_flags(struct chunkstore *cs, const void *buf, uint32_t len,
			    struct chunk_loc *loc, unsigned flags);
/* fdatasync every pack written since the last call. A failure other than
 * a full disk is returned to every later call too (its bytes may be lost:
 * nothing may treat them as durable). */
int chunkstore_sync(struct chunkstore *cs);
bool chunkstore_has_unsynced(struct chunkstore *cs);
/* The pack being appended (UINT32_MAX: none yet); chunkstore_seal ends it,
 * so the next append starts a new pack and GC may take the old one. */
uint32_t chunkstore_current_pack(struct chunkstore *cs);
/* The pack the next append goes to (the current one, or the next number). */
uint32_t chunkstore_append_target(struct chunkstore *cs);
void chunkstore_seal(struct chunkstore *cs);
/* Read exactly loc->len bytes into buf and verify the checksum:
 * -EIO on mismatch (counted in checksum_errors), -EIO also if the file is
 * shorter, -ENOENT if it is gone. Descriptors are cached per file. */
int chunkstore_read(struct chunkstore *cs, const struct chunk_loc *loc, void *buf);
/* Forget cached descriptors of a deleted WAL segment / pack. */
void chunkstore_forget_file(struct chunkstore *cs, uint32_t file);
uint64_t chunkstore_checksum_errors(struct chunkstore *cs);
uint64_t chunkstore_bytes_written(struct chunkstore *cs);

/* ---- working copy ------------------------------------------------------
 * The content being written through open handles of one file. Starts from a
 * committed map and size; keeps changed chunks in memory (spilling to an
 * unsynced pack past a budget, so a 1 GiB write does not need 1 GiB of RAM).
 */
struct wcopy;
/* base: a reference the wcopy takes over (cmap_ref it first if you keep it). */
int wcopy_new(struct chunkstore *cs, struct cmap *base, uint64_t size, uint64_t digest_sum,
	      struct wcopy **out);
void wcopy_free(struct wcopy *w);
uint64_t wcopy_size(const struct wcopy *w);
bool wcopy_dirty(const struct wcopy *w);
ssize_t wcopy_read(struct wcopy *w, void *buf, size_t n, uint64_t off);
ssize_t wcopy_write(struct wcopy *w, const void *buf, size_t n, uint64_t off);
int wcopy_truncate(struct wcopy *w, uint64_t size);
/* Zero a range (fallocate PUNCH_HOLE / ZERO_RANGE); keeps size. */
int wcopy_zero(struct wcopy *w, uint64_t off, uint64_t len);
/* Bytes of in-memory chunk buffers held by w, and by every working copy of
 * the process (C5). */
uint64_t wcopy_mem_bytes(const struct wcopy *w);
uint64_t wcopy_mem_total(void);

/* Committing a working copy, in two steps around the WAL append:
 *   wcopy_prepare() lists what changed: chunks still in memory (data to be
 *   written inline, checksummed, all-zero ones turned into holes) and chunks
 *   already spilled to packs. The caller appends a WAL record carrying the
 *   inline bytes (after chunkstore_sync if spilled chunks exist), then calls
 *   wcopy_commit() with the location of each inline chunk. wcopy_commit
 *   returns the new map (a new reference) and digest sum, and marks the copy
 *   clean; the copy keeps working from the new map. wcopy_abandon() instead
 *   leaves the copy dirty and unchanged (the append failed). */
/* The copy must not change between prepare and commit/abandon (the owner
 * holds its lock). Changes: data != NULL && len > 0 = inline; data == NULL
 * && len > 0 = in a pack at loc; len == 0 = hole (holes where nothing is
 * stored are omitted). A 4 KiB write gives one change of <= TXD_CHUNK_SIZE.
 * On failure wcopy_commit leaves the copy unchanged and p valid (call
 * wcopy_abandon); on success it frees p->chg. Only loc.file and loc.off are
 * read from the caller's loc: len and csum come from the change. */
struct wcopy_change {
	uint64_t idx;
	const void *data;      /* inline bytes (valid until commit/abandon), or NULL */
	uint32_t len;          /* bytes to store (trailing zeros trimmed); 0 = hole */
	uint64_t csum;
	struct chunk_loc loc;  /* for spilled chunks: where they are; for inline:
	                          filled in by the caller before wcopy_commit */
};
struct wcopy_prep {
	uint64_t size;             /* new file size */
	bool truncated;            /* size shrank below the base at some point */
	uint64_t trunc_chunks;     /* chunks >= this index were dropped */
	struct wcopy_change *chg;  /* sorted by idx */
	uint32_t nchg;
	uint64_t inline_bytes;     /* sum of len over inline changes */
	bool has_spilled;
	uint32_t pin_pack;         /* append target at prepare (gc.h G1) */
};
int wcopy_prepare(struct wcopy *w, struct wcopy_prep *p);
int wcopy_commit(struct wcopy *w, struct wcopy_prep *p, struct cmap **map_out,
		 uint64_t *digest_sum_out);
void wcopy_abandon(struct wcopy *w, struct wcopy_prep *p);

/* Apply a content change during WAL replay (no working copy involved):
 * truncate *m to trunc_chunks if truncated, then set each change (len 0 =
 * hole), keeping *digest_sum current. wcopy_commit builds its map with this
 * same function, so replay reproduces the live map exactly. */
int cmap_apply_changes(struct cmap **m, uint64_t *digest_sum, bool truncated,
		       uint64_t trunc_chunks, const struct wcopy_change *chg, uint32_t n);

/* Read from a committed map (used by snapshot readers): holes and bytes past
 * a chunk's length read as zeros, bytes past size are not returned. */
ssize_t cmap_read(struct chunkstore *cs, const struct cmap *m, uint64_t size, void *buf,
		  size_t n, uint64_t off);

#endif
