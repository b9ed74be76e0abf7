/*
 * rec.h — the body of a commit: a list of namespace operations, encoded once
 * and applied by the same code whether it is a live commit, a WAL replay or a
 * checkpoint load (so replay can never disagree with what was committed).
 *
 * WAL record types (the WAL's u16 type field). New capabilities add types
 * here (leases, votes, decisions, state, journals); replay dispatches on the
 * type and ignores nothing silently: an unknown type is -TXD_EFORMAT.
 *
 *   WAL_REC_COMMIT  1   payload = commit header + ops (below)
 *   WAL_REC_LEASE   2   payload = one lease record (lease.h)
 *   WAL_REC_VOTE    3   payload = one vote-service record (vote.h)
 *   WAL_REC_STATE   4   payload = one state record (state.h)
 *   WAL_REC_PREPARE 5   payload = a prepared transaction (dtc.h): its
 *                       write set, ops and vote
 *   WAL_REC_RESOLVE 6   payload = a prepared transaction aborted (dtc.h)
 *
 * Commit payload (little-endian, packed, no padding):
 *    0 u64 txn        transaction id (0 = a plain main-tree commit)
 *    8 u64 time_ns    CLOCK_REALTIME at commit
 *   16 u32 pid        caller's pid (0 = the server itself)
 *   20 u32 nops
 *   24 ops...         each: u16 op, u16 reserved, u32 len, then len bytes
 *
 * Ops (body layouts):
 *   OP_INODE     full attributes of an inode (creates it if absent):
 *                u64 ino, u32 mode, u32 uid, u32 gid, u32 nlink, u64 rdev,
 *                i64 atime_s, u32 atime_ns, i64 mtime_s, u32 mtime_ns,
 *                i64 ctime_s, u32 ctime_ns, u64 parent (directories: "..";
 *                0 otherwise), u32 target_len, target bytes (symlinks).
 *                Does not touch size or content.
 *   OP_DENT_SET  u64 parent, u64 ino, u64 cookie (0 = assign the directory's
 *                next), u16 name_len, name. Replaces an existing entry.
 *   OP_DENT_DEL  u64 parent, u16 name_len, name.
 *   OP_CONTENT   u64 ino, u64 size, u8 truncated, u64 trunc_chunks,
 *                u32 nchg, nchg x {u64 idx, u32 file, u32 len, u64 off,
 *                u64 csum}. file == REC_INLINE means "off bytes into the
 *                inline data area, which starts right after the last op";
 *                apply turns it into CHUNK_FILE_WAL|seg at the payload's file
 *                offset + data_off + off. len == 0 is a hole.
 *   OP_XATTR_SET u64 ino, u16 name_len, u32 value_len, name, value.
 *   OP_XATTR_DEL u64 ino, u16 name_len, name.
 *   OP_FREE      u64 ino: the inode is gone (nlink 0 and closed).
 *   OP_VERSION   u64 ino, u64 commit, u64 vno: restores a head version's
 *                identity (checkpoints only, after the inode's other ops).
 *
 * Invariants.
 *  R1 A commit applies completely or not at all: ops are validated by the
 *     caller before encoding, and decoding checks every length before any op
 *     is applied (rec_validate), so a malformed record is refused whole.
 *     Checked: each op's length against its fields and the record, entry
 *     and xattr names of 1..255 bytes, chunks of at most TXD_CHUNK_SIZE at
 *     indexes below 2^54 (the chunk map's limit), and inline chunks inside
 *     the data area (no offset + length wrap).
 *  R2 Every op states the result, not the delta (OP_INODE carries the full
 *     attributes), except content, whose changes are per chunk.
 *
 * Memory. A rec_buf lives for one commit (a transaction's log for the
 * transaction's life): inline chunk bytes are referenced by iovecs into the
 * working copy's buffers, not copied, and nothing of a record is kept once
 * it is applied — the namespace keeps locations, the bytes stay in the log.
 */
#ifndef TXD_REC_H
#define TXD_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "chunk.h"

enum { WAL_REC_COMMIT = 1, WAL_REC_LEASE = 2 };
enum { WAL_REC_VOTE = 3 };
enum { WAL_REC_STATE = 4 };
enum { WAL_REC_PREPARE = 5, WAL_REC_RESOLVE = 6 };

enum rec_op {
	OP_INODE = 1,
	OP_DENT_SET,
	OP_DENT_DEL,
	OP_CONTENT,
	OP_XATTR_SET,
	OP_XATTR_DEL,
	OP_FREE,
	OP_VERSION,
};

#define REC_INLINE 0xffffffffu
#define REC_HDR_SIZE 24

struct rec_inode {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink;
	uint64_t rdev;
	struct timespec atime, mtime, ctime;
	uint64_t parent;
	const char *target; /* symlinks; not NUL-terminated when decoded */
	uint32_t target_len;
};

struct rec_content {
	uint64_t ino, size;
	bool truncated;
	uint64_t trunc_chunks;
	uint32_t nchg;
	const uint8_t *chg; /* encoded changes; decode with rec_content_chg */
};

struct rec_dent {
	uint64_t parent, ino, cookie;
	const char *name;
	uint16_t name_len;
};

struct rec_xattr {
	uint64_t ino;
	const char *name;
	uint16_t name_len;
	const void *value;
	uint32_t value_len;
};

/* A decoded op. Pointers point into the record buffer. */
struct rec_opv {
	enum rec_op op;
	union {
		struct rec_inode inode;
		struct rec_dent dent;
		struct rec_content content;
		struct rec_xattr xattr;
		uint64_t ino; /* OP_FREE */
		struct {
			uint64_t ino, commit, vno;
		} version;
	} u;
};

/* ---- building ------------------------------------------------------------ */
struct rec_buf {
	uint8_t *ops;      /* header + ops */
	size_t len, cap;
	uint32_t nops;
	/* inline chunk bytes, appended after the ops */
	struct iovec *data;
	uint32_t ndata, capdata;
	uint64_t data_len;
	int err;           /* sticky ENOMEM */
};

void rec_init(struct rec_buf *b, uint64_t txn, uint64_t time_ns, uint32_t pid);
/* The header's pid, and a new one (after rec_init; 0 when it failed). */
uint32_t rec_pid(const struct rec_buf *b);
void rec_set_pid(struct rec_buf *b, uint32_t pid);
/* n more bytes at the end of the ops (NULL and b->err set on ENOMEM). */
uint8_t *rec_reserve(struct rec_buf *b, size_t n);
void rec_release(struct rec_buf *b);
void rec_inode(struct rec_buf *b, const struct rec_inode *in);
void rec_dent_set(struct rec_buf *b, uint64_t parent, const char *name, uint64_t ino,
		  uint64_t cookie);
void rec_dent_del(struct rec_buf *b, uint64_t parent, const char *name);
void rec_xattr_set(struct rec_buf *b, uint64_t ino, const char *name, const void *value,
		   uint32_t len);
void rec_xattr_del(struct rec_buf *b, uint64_t ino, const char *name);
void rec_free(struct rec_buf *b, uint64_t ino);
void rec_version(struct rec_buf *b, uint64_t ino, uint64_t commit, uint64_t vno);
/* Content: inline changes (c->data != NULL) are carried in the record. */
void rec_content(struct rec_buf *b, uint64_t ino, uint64_t size, bool truncated,
		 uint64_t trunc_chunks, const struct wcopy_change *chg, uint32_t n);
/* Finish: patches nops; fills iov (at most 1 + ndata entries, caller passes
 * room for rec_iov_count). Returns the iov count or -ENOMEM. */
int rec_iov_count(const struct rec_buf *b);
int rec_finish(struct rec_buf *b, struct iovec *iov);

/* ---- reading ------------------------------------------------------------- */
struct rec_hdr {
	uint64_t txn, time_ns;
	uint32_t pid, nops;
	uint32_t data_off; /* payload offset of the inline data area */
};
/* Check every length (R1). 0 or -TXD_ECORRUPT. */
int rec_validate(const void *payload, uint32_t len, struct rec_hdr *hdr);
/* Iterate over the ops of a validated payload: returns 1 with op filled,
 * 0 after the last op. */
struct rec_iter {
	const uint8_t *p;
	uint32_t pos, left;
};
void rec_iter_init(struct rec_iter *it, const void *payload, const struct rec_hdr *hdr);
int rec_next(struct rec_iter *it, struct rec_opv *op);
/* Change k of a content op, with REC_INLINE locations rebased to seg/base. */
void rec_content_chg(const struct rec_content *c, uint32_t k, uint32_t seg, uint64_t base,
		     struct wcopy_change *out);

#endif
