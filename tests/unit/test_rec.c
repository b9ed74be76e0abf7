/*
 * test_rec.c — commit bodies (rec.h) against their invariants R1 and R2:
 * every op round-trips encode → validate → iterate with every field intact
 * (R2: OP_INODE states the full attributes), inline chunks are rebased into
 * the WAL segment, and a malformed or truncated record is refused whole with
 * -TXD_ECORRUPT before anything is applied (R1).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "../../engine/ns.h"
#include "../../engine/rec.h"
#include "../../engine/txdir.h"

TestSuite(rec, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

/* The record as the WAL would store it: header + ops + inline data, in an
 * exactly sized buffer (so ASan sees any read past its end). */
static uint8_t *flatten(struct rec_buf *b, uint32_t *len)
{
	struct iovec iov[64];
	cr_assert_leq(rec_iov_count(b), 64);
	int n = rec_finish(b, iov);
	cr_assert_gt(n, 0, "rec_finish: %d", n);
	size_t total = 0;
	for (int k = 0; k < n; k++)
		total += iov[k].iov_len;
	uint8_t *p = malloc(total ? total : 1);
	cr_assert_not_null(p);
	size_t at = 0;
	for (int k = 0; k < n; k++) {
		memcpy(p + at, iov[k].iov_base, iov[k].iov_len);
		at += iov[k].iov_len;
	}
	*len = (uint32_t)total;
	return p;
}

static uint8_t *dup_exact(const uint8_t *p, uint32_t len)
{
	uint8_t *q = malloc(len ? len : 1);
	cr_assert_not_null(q);
	memcpy(q, p, len);
	return q;
}

static int validate_copy(const uint8_t *p, uint32_t len)
{
	struct rec_hdr h;
	uint8_t *q = dup_exact(p, len);
	int r = rec_validate(q, len, &h);
	free(q);
	return r;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static const struct rec_inode sample_inode = {
	.ino = 77,
	.mode = S_IFLNK | 0777,
	.uid = 1001,
	.gid = 1002,
	.nlink = 1,
	.rdev = 0x1234,
	.atime = {1700000001, 11},
	.mtime = {1700000002, 22},
	.ctime = {1700000003, 999999999},
	.parent = 0,
	.target = "some/target",
	.target_len = 11,
};

static const char inline_a[] = "hello inline chunk";
static const char inline_b[] = "second";

/* A record with one op of every kind, content carrying two inline chunks, a
 * pack chunk and a hole. */
static void build_all(struct rec_buf *b)
{
	struct wcopy_change chg[4] = {
		{.idx = 0, .data = inline_a, .len = sizeof(inline_a), .csum = 0xaaaa},
		{.idx = 1, .data = NULL, .len = 0},
		{.idx = 2, .data = NULL, .len = 4096, .csum = 0xcccc,
		 .loc = {.file = 3, .len = 4096, .off = 8192, .csum = 0xcccc}},
		{.idx = 5, .data = inline_b, .len = sizeof(inline_b), .csum = 0xbbbb},
	};
	rec_init(b, 42, 123456789, 4321);
	rec_inode(b, &sample_inode);
	rec_dent_set(b, 1, "name", 77, 9);
	rec_dent_del(b, 1, "gone");
	rec_content(b, 78, 5 * TXD_CHUNK_SIZE + sizeof(inline_b), true, 3, chg, 4);
	rec_xattr_set(b, 77, "user.k", "value", 5);
	rec_xattr_del(b, 77, "user.old");
	rec_free(b, 79);
	rec_version(b, 77, 555, 6);
}

/* ---- round trips (R2) --------------------------------------------------- */

Test(rec, roundtrip_R2_every_op_every_field)
{
	struct rec_buf b;
	uint32_t len;
	build_all(&b);
	uint8_t *p = flatten(&b, &len);

	struct rec_hdr h;
	cr_assert_eq(rec_validate(p, len, &h), 0);
	cr_assert_eq(h.txn, 42);
	cr_assert_eq(h.time_ns, 123456789);
	cr_assert_eq(h.pid, 4321);
	cr_assert_eq(h.nops, 8);
	cr_assert_eq(h.data_off, b.len, "inline data starts right after the last op");
	cr_assert_eq(len, b.len + sizeof(inline_a) + sizeof(inline_b));

	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, p, &h);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_INODE);
	const struct rec_inode *in = &op.u.inode;
	cr_assert_eq(in->ino, 77);
	cr_assert_eq(in->mode, S_IFLNK | 0777);
	cr_assert_eq(in->uid, 1001);
	cr_assert_eq(in->gid, 1002);
	cr_assert_eq(in->nlink, 1);
	cr_assert_eq(in->rdev, 0x1234);
	cr_assert_eq(in->atime.tv_sec, 1700000001);
	cr_assert_eq(in->atime.tv_nsec, 11);
	cr_assert_eq(in->mtime.tv_sec, 1700000002);
	cr_assert_eq(in->mtime.tv_nsec, 22);
	cr_assert_eq(in->ctime.tv_sec, 1700000003);
	cr_assert_eq(in->ctime.tv_nsec, 999999999);
	cr_assert_eq(in->parent, 0);
	cr_assert_eq(in->target_len, 11);
	cr_assert_eq(memcmp(in->target, "some/target", 11), 0);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_DENT_SET);
	cr_assert_eq(op.u.dent.parent, 1);
	cr_assert_eq(op.u.dent.ino, 77);
	cr_assert_eq(op.u.dent.cookie, 9);
	cr_assert_eq(op.u.dent.name_len, 4);
	cr_assert_eq(memcmp(op.u.dent.name, "name", 4), 0);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_DENT_DEL);
	cr_assert_eq(op.u.dent.parent, 1);
	cr_assert_eq(op.u.dent.ino, 0);
	cr_assert_eq(op.u.dent.name_len, 4);
	cr_assert_eq(memcmp(op.u.dent.name, "gone", 4), 0);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_CONTENT);
	cr_assert_eq(op.u.content.ino, 78);
	cr_assert_eq(op.u.content.size, 5 * TXD_CHUNK_SIZE + sizeof(inline_b));
	cr_assert(op.u.content.truncated);
	cr_assert_eq(op.u.content.trunc_chunks, 3);
	cr_assert_eq(op.u.content.nchg, 4);
	/* inline chunks: rebased to the segment at payload offset + data_off */
	const uint32_t seg = 7;
	const uint64_t payload_off = 1000;
	const uint64_t base = payload_off + h.data_off;
	struct wcopy_change c;
	rec_content_chg(&op.u.content, 0, seg, base, &c);
	cr_assert_eq(c.idx, 0);
	cr_assert_eq(c.len, sizeof(inline_a));
	cr_assert_eq(c.csum, 0xaaaa);
	cr_assert_eq(c.loc.file, CHUNK_FILE_WAL | seg);
	cr_assert_eq(c.loc.len, sizeof(inline_a));
	cr_assert_eq(memcmp(p + (c.loc.off - payload_off), inline_a, sizeof(inline_a)), 0,
		     "the inline chunk's location names its bytes in the record");
	rec_content_chg(&op.u.content, 1, seg, base, &c);
	cr_assert_eq(c.idx, 1);
	cr_assert_eq(c.len, 0, "a hole");
	cr_assert_eq(c.loc.file, 0);
	cr_assert_eq(c.loc.off, 0);
	rec_content_chg(&op.u.content, 2, seg, base, &c);
	cr_assert_eq(c.idx, 2);
	cr_assert_eq(c.len, 4096);
	cr_assert_eq(c.loc.file, 3, "a pack chunk keeps its location");
	cr_assert_eq(c.loc.off, 8192);
	cr_assert_eq(c.csum, 0xcccc);
	rec_content_chg(&op.u.content, 3, seg, base, &c);
	cr_assert_eq(c.idx, 5);
	cr_assert_eq(c.loc.file, CHUNK_FILE_WAL | seg);
	cr_assert_eq(memcmp(p + (c.loc.off - payload_off), inline_b, sizeof(inline_b)), 0);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_XATTR_SET);
	cr_assert_eq(op.u.xattr.ino, 77);
	cr_assert_eq(op.u.xattr.name_len, 6);
	cr_assert_eq(memcmp(op.u.xattr.name, "user.k", 6), 0);
	cr_assert_eq(op.u.xattr.value_len, 5);
	cr_assert_eq(memcmp(op.u.xattr.value, "value", 5), 0);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_XATTR_DEL);
	cr_assert_eq(op.u.xattr.ino, 77);
	cr_assert_eq(op.u.xattr.name_len, 8);
	cr_assert_eq(memcmp(op.u.xattr.name, "user.old", 8), 0);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_FREE);
	cr_assert_eq(op.u.ino, 79);

	cr_assert_eq(rec_next(&it, &op), 1);
	cr_assert_eq(op.op, OP_VERSION);
	cr_assert_eq(op.u.version.ino, 77);
	cr_assert_eq(op.u.version.commit, 555);
	cr_assert_eq(op.u.version.vno, 6);

	cr_assert_eq(rec_next(&it, &op), 0, "no op after the last");
	free(p);
	rec_release(&b);
}

Test(rec, roundtrip_empty_commit_and_header_only)
{
	struct rec_buf b;
	uint32_t len;
	rec_init(&b, 0, 0, 0);
	uint8_t *p = flatten(&b, &len);
	struct rec_hdr h;
	cr_assert_eq(len, REC_HDR_SIZE);
	cr_assert_eq(rec_validate(p, len, &h), 0);
	cr_assert_eq(h.nops, 0);
	cr_assert_eq(h.data_off, REC_HDR_SIZE);
	free(p);
	rec_release(&b);
}

Test(rec, roundtrip_many_ops_grow_the_buffer)
{
	struct rec_buf b;
	uint32_t len;
	char name[32];
	rec_init(&b, 1, 2, 3);
	for (int k = 0; k < 5000; k++) {
		snprintf(name, sizeof(name), "entry-%d", k);
		rec_dent_set(&b, 1, name, 100 + k, 3 + k);
	}
	uint8_t *p = flatten(&b, &len);
	struct rec_hdr h;
	cr_assert_eq(rec_validate(p, len, &h), 0);
	cr_assert_eq(h.nops, 5000);
	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, p, &h);
	for (int k = 0; k < 5000; k++) {
		cr_assert_eq(rec_next(&it, &op), 1);
		snprintf(name, sizeof(name), "entry-%d", k);
		cr_assert_eq(op.u.dent.ino, 100 + (uint64_t)k);
		cr_assert_eq(op.u.dent.cookie, 3 + (uint64_t)k);
		cr_assert_eq(op.u.dent.name_len, strlen(name));
		cr_assert_eq(memcmp(op.u.dent.name, name, strlen(name)), 0);
	}
	cr_assert_eq(rec_next(&it, &op), 0);
	free(p);
	rec_release(&b);
}

/* ---- malformed records (R1) ----------------------------------------------- */

Test(rec, R1_every_truncation_is_refused)
{
	struct rec_buf b;
	uint32_t len;
	build_all(&b);
	uint8_t *p = flatten(&b, &len);
	for (uint32_t cut = 0; cut < len; cut++)
		cr_assert_eq(validate_copy(p, cut), -TXD_ECORRUPT,
			     "a record cut to %u of %u bytes was accepted", cut, len);
	cr_assert_eq(validate_copy(p, len), 0);
	free(p);
	rec_release(&b);
}

/* One op of the given kind, its body then damaged by fix(). */
static void expect_refused(void (*build)(struct rec_buf *), void (*fix)(uint8_t *body),
			   const char *what)
{
	struct rec_buf b;
	uint32_t len;
	rec_init(&b, 0, 0, 0);
	build(&b);
	uint8_t *p = flatten(&b, &len);
	cr_assert_eq(validate_copy(p, len), 0, "%s: the undamaged record", what);
	fix(p + REC_HDR_SIZE);
	cr_assert_eq(validate_copy(p, len), -TXD_ECORRUPT, "%s was accepted", what);
	free(p);
	rec_release(&b);
}

static void b_inode(struct rec_buf *b) { rec_inode(b, &sample_inode); }
static void b_dent(struct rec_buf *b) { rec_dent_set(b, 1, "abc", 5, 0); }
static void b_ddel(struct rec_buf *b) { rec_dent_del(b, 1, "abc"); }
static void b_free(struct rec_buf *b) { rec_free(b, 5); }
static void b_version(struct rec_buf *b) { rec_version(b, 5, 6, 7); }
static void b_xset(struct rec_buf *b) { rec_xattr_set(b, 5, "user.a", "v", 1); }
static void b_xdel(struct rec_buf *b) { rec_xattr_del(b, 5, "user.a"); }
static void b_content(struct rec_buf *b)
{
	static const char d[] = "0123456789";
	struct wcopy_change c = {.idx = 0, .data = d, .len = 10, .csum = 1};
	rec_content(b, 5, 10, false, 0, &c, 1);
}
static void b_content_pack(struct rec_buf *b)
{
	struct wcopy_change c = {.idx = 0, .len = 10, .csum = 1,
				 .loc = {.file = 1, .len = 10, .off = 0, .csum = 1}};
	rec_content(b, 5, 10, false, 0, &c, 1);
}

/* op header: u16 op, u16 reserved, u32 len; body from +8 */
static void f_unknown_op(uint8_t *o) { put16(o, 99); }
static void f_op_zero(uint8_t *o) { put16(o, 0); }
static void f_len_plus1(uint8_t *o) { uint32_t l; memcpy(&l, o + 4, 4); put32(o + 4, l + 1); }
static void f_len_minus1(uint8_t *o) { uint32_t l; memcpy(&l, o + 4, 4); put32(o + 4, l - 1); }
static void f_len_huge(uint8_t *o) { put32(o + 4, 0xffffffffu); }
static void f_target_len(uint8_t *o) { put32(o + 8 + 76, 12); }
static void f_target_wrap(uint8_t *o) { put32(o + 8 + 76, 0xffffffffu - 70); }
static void f_dent_name0(uint8_t *o) { put16(o + 8 + 24, 0); }
static void f_dent_name_long(uint8_t *o) { put16(o + 8 + 24, 4); }
static void f_ddel_name0(uint8_t *o) { put16(o + 8 + 8, 0); }
static void f_nchg(uint8_t *o) { put32(o + 8 + 25, 2); }
static void f_chunk_len_big(uint8_t *o) { put32(o + 8 + 29 + 12, TXD_CHUNK_SIZE + 1); }
static void f_inline_past_end(uint8_t *o) { put64(o + 8 + 29 + 16, 1); }
static void f_inline_off_wraps(uint8_t *o) { put64(o + 8 + 29 + 16, UINT64_MAX); }
static void f_xattr_vlen(uint8_t *o) { put32(o + 8 + 10, 2); }

Test(rec, R1_damaged_lengths_and_types_are_refused)
{
	expect_refused(b_inode, f_unknown_op, "an unknown op type");
	expect_refused(b_inode, f_op_zero, "op type 0");
	expect_refused(b_inode, f_len_plus1, "OP_INODE longer than the record");
	expect_refused(b_inode, f_len_minus1, "OP_INODE shorter than its target");
	expect_refused(b_inode, f_len_huge, "an op length of 4 GiB");
	expect_refused(b_inode, f_target_len, "a target_len that disagrees with the op length");
	expect_refused(b_inode, f_target_wrap, "a target_len that wraps the length sum");
	expect_refused(b_dent, f_dent_name0, "an empty entry name");
	expect_refused(b_dent, f_dent_name_long, "an entry name longer than its op");
	expect_refused(b_ddel, f_ddel_name0, "an empty removed name");
	expect_refused(b_free, f_len_minus1, "OP_FREE of 7 bytes");
	expect_refused(b_version, f_len_minus1, "OP_VERSION of 23 bytes");
	expect_refused(b_content, f_nchg, "nchg larger than the op");
	expect_refused(b_content_pack, f_chunk_len_big, "a chunk longer than TXD_CHUNK_SIZE");
	expect_refused(b_content, f_inline_past_end, "an inline chunk past the data area");
	expect_refused(b_xset, f_xattr_vlen, "an xattr value longer than its op");
	expect_refused(b_xdel, f_len_plus1, "OP_XATTR_DEL longer than the record");
}

/* get64(off) + len wrapped to a small number: a chunk "inside" the data area
 * that starts 2^64 - 1 bytes into it. */
Test(rec, R1_inline_offset_that_wraps_is_refused)
{
	expect_refused(b_content, f_inline_off_wraps, "an inline offset of 2^64-1");
}

/* A name the live path can never write (xattr names are 1..255 bytes,
 * fsops.c): a record holding one is malformed, and the checkpoint writer
 * copies names into a 256-byte buffer. */
static void b_xset_long(struct rec_buf *b)
{
	char name[300];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	rec_xattr_set(b, 5, name, "v", 1);
}
static void b_xset_empty(struct rec_buf *b) { rec_xattr_set(b, 5, "", "v", 1); }
static void b_xdel_long(struct rec_buf *b)
{
	char name[300];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	rec_xattr_del(b, 5, name);
}

Test(rec, R1_xattr_names_outside_1_to_255_bytes_are_refused)
{
	const struct {
		void (*build)(struct rec_buf *);
		const char *what;
	} cases[] = {
		{b_xset_long, "OP_XATTR_SET with a 299-byte name"},
		{b_xset_empty, "OP_XATTR_SET with an empty name"},
		{b_xdel_long, "OP_XATTR_DEL with a 299-byte name"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct rec_buf b;
		uint32_t len;
		rec_init(&b, 0, 0, 0);
		cases[k].build(&b);
		uint8_t *p = flatten(&b, &len);
		cr_expect_eq(validate_copy(p, len), -TXD_ECORRUPT, "%s was accepted", cases[k].what);
		free(p);
		rec_release(&b);
	}
}

Test(rec, R1_nops_beyond_the_record_and_short_header_are_refused)
{
	struct rec_buf b;
	uint32_t len;
	build_all(&b);
	uint8_t *p = flatten(&b, &len);
	uint32_t nops;
	memcpy(&nops, p + 20, 4);
	put32(p + 20, nops + 1);
	cr_assert_eq(validate_copy(p, len), -TXD_ECORRUPT, "one op more than the record holds");
	put32(p + 20, 0xffffffffu);
	cr_assert_eq(validate_copy(p, len), -TXD_ECORRUPT);
	for (uint32_t n = 0; n < REC_HDR_SIZE; n++)
		cr_assert_eq(validate_copy(p, n), -TXD_ECORRUPT);
	free(p);
	rec_release(&b);
}

/* Random damage: whatever rec_validate accepts must iterate inside the
 * buffer (ASan checks the exact-size copy) and account for every op byte. */
Test(rec, R1_random_damage_never_reads_outside_the_record)
{
	struct rec_buf b;
	uint32_t len;
	build_all(&b);
	uint8_t *p = flatten(&b, &len);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int accepted = 0;
	for (int round = 0; round < 20000; round++) {
		uint8_t *q = dup_exact(p, len);
		int flips = 1 + round % 3;
		for (int f = 0; f < flips; f++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			q[x % len] ^= (uint8_t)(1u << (x >> 32) % 8);
		}
		struct rec_hdr h;
		if (rec_validate(q, len, &h) == 0) {
			accepted++;
			struct rec_iter it;
			struct rec_opv op;
			uint32_t n = 0;
			rec_iter_init(&it, q, &h);
			while (rec_next(&it, &op)) {
				n++;
				if (op.op == OP_CONTENT)
					for (uint32_t k = 0; k < op.u.content.nchg; k++) {
						struct wcopy_change c;
						rec_content_chg(&op.u.content, k, 0, 0, &c);
						cr_assert_leq(c.len, TXD_CHUNK_SIZE);
					}
			}
			cr_assert_eq(n, h.nops);
			cr_assert_eq(it.pos, h.data_off);
		}
		free(q);
	}
	cr_log_info("%d of 20000 damaged records were still well-formed", accepted);
	free(p);
	rec_release(&b);
}

/* R1 as ns_apply sees it: a record whose last op is malformed applies none
 * of its valid ops. */
Test(rec, R1_malformed_record_applies_nothing)
{
	struct ns ns;
	cr_assert_eq(ns_init(&ns), 0);
	struct rec_buf b;
	uint32_t len;
	struct rec_inode root = {.ino = NS_ROOT_INO, .mode = S_IFDIR | 0755, .nlink = 2,
				 .parent = NS_ROOT_INO};
	struct rec_inode f = {.ino = 2, .mode = S_IFREG | 0644, .nlink = 1};
	rec_init(&b, 0, 0, 0);
	rec_inode(&b, &root);
	rec_inode(&b, &f);
	rec_dent_set(&b, NS_ROOT_INO, "f", 2, 0);
	rec_free(&b, 2);
	uint8_t *p = flatten(&b, &len);
	put32(p + len - 8 - 4, 9); /* OP_FREE's length: 8 → 9 */
	cr_assert_eq(ns_apply(&ns, p, len, 0, 0, 1), -TXD_ECORRUPT);
	cr_assert_null(ns_inode(&ns, NS_ROOT_INO), "R1: the valid ops before it were applied");
	cr_assert_null(ns_inode(&ns, 2));
	cr_assert_eq(ns.ninodes, 0);
	free(p);
	rec_release(&b);
	ns_destroy(&ns);
}

Test(rec, finish_reports_sticky_enomem)
{
	struct rec_buf b;
	struct iovec iov[4];
	rec_init(&b, 0, 0, 0);
	b.err = -ENOMEM; /* as a failed realloc leaves it */
	cr_assert_null(rec_reserve(&b, 8));
	rec_free(&b, 5);
	cr_assert_eq(b.nops, 0, "no op is added once the buffer has failed");
	cr_assert_eq(rec_finish(&b, iov), -ENOMEM);
	rec_release(&b);
}
