/*
 * fuzz_rec.c — commit payloads (rec.h) from damaged or hostile bytes.
 *
 * Input: one commit payload, as a WAL record or a checkpoint block carries
 * it. Properties:
 *  - rec_validate never reads outside the payload (ASan: the input is an
 *    exact-size heap buffer) and, when it accepts, rec_next and
 *    rec_content_chg stay inside it too (every decoded pointer and length is
 *    checked against the buffer here);
 *  - R1: a payload rec_validate refuses is refused by ns_apply as well, and
 *    leaves the namespace as it was (no inode appears);
 *  - a payload it accepts is applied to a fresh namespace without a crash,
 *    a leak or undefined behaviour (refusing it as not fitting is fine).
 */
#include <errno.h>

#include "fuzz.h"
#include "ns.h"
#include "rec.h"
#include "txdir.h"

static int count_inode(void *arg, struct inode *in)
{
	(void)in;
	(*(unsigned *)arg)++;
	return 0;
}

static unsigned inode_count(struct ns *ns)
{
	unsigned n = 0;
	ns_walk(ns, count_inode, &n);
	return n;
}

#define INSIDE(ptr, n) \
	((const uint8_t *)(ptr) >= data && (const uint8_t *)(ptr) + (n) <= data + size)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	uint32_t len = (uint32_t)size;
	struct rec_hdr hdr;
	int valid = rec_validate(data, len, &hdr);
	FUZZ_CHECK(valid == 0 || valid == -TXD_ECORRUPT);
	if (valid == 0) {
		FUZZ_CHECK(hdr.data_off >= REC_HDR_SIZE && hdr.data_off <= len);
		struct rec_iter it;
		struct rec_opv op;
		rec_iter_init(&it, data, &hdr);
		uint32_t seen = 0;
		while (rec_next(&it, &op) == 1) {
			seen++;
			switch (op.op) {
			case OP_INODE:
				FUZZ_CHECK(INSIDE(op.u.inode.target, op.u.inode.target_len));
				break;
			case OP_DENT_SET:
			case OP_DENT_DEL:
				FUZZ_CHECK(op.u.dent.name_len >= 1 && op.u.dent.name_len <= 255);
				FUZZ_CHECK(INSIDE(op.u.dent.name, op.u.dent.name_len));
				break;
			case OP_XATTR_SET:
			case OP_XATTR_DEL:
				FUZZ_CHECK(op.u.xattr.name_len >= 1 && op.u.xattr.name_len <= 255);
				FUZZ_CHECK(INSIDE(op.u.xattr.name, op.u.xattr.name_len));
				if (op.op == OP_XATTR_SET)
					FUZZ_CHECK(INSIDE(op.u.xattr.value, op.u.xattr.value_len));
				break;
			case OP_CONTENT:
				for (uint32_t k = 0; k < op.u.content.nchg; k++) {
					struct wcopy_change c;
					uint64_t base = 4096 + hdr.data_off;
					/* each change is 32 bytes: idx, file, len, off, csum */
					const uint8_t *raw = op.u.content.chg + (size_t)k * 32;
					FUZZ_CHECK(INSIDE(raw, 32));
					bool is_inline = fuzz_get32(raw + 8) == REC_INLINE;
					rec_content_chg(&op.u.content, k, 7, base, &c);
					FUZZ_CHECK(c.len <= TXD_CHUNK_SIZE);
					if (is_inline && c.len) {
						/* an inline chunk lies inside the data area */
						FUZZ_CHECK(c.loc.off >= base);
						FUZZ_CHECK(c.loc.off - base + c.len <= len - hdr.data_off);
					}
				}
				break;
			case OP_FREE:
			case OP_VERSION:
				break;
			default:
				FUZZ_CHECK(!"rec_validate accepted an unknown op");
			}
		}
		FUZZ_CHECK(seen == hdr.nops);
	}

	struct ns ns;
	if (ns_init(&ns))
		return 0;
	unsigned before = inode_count(&ns);
	int err = ns_apply(&ns, data, len, 7, 4096, 1);
	if (valid) {
		/* R1: refused whole */
		FUZZ_CHECK(err == -TXD_ECORRUPT);
		FUZZ_CHECK(inode_count(&ns) == before);
	} else {
		if (!(err == 0 || err == -TXD_ECORRUPT || err == -ENOMEM))
			fprintf(stderr, "ns_apply: %d (%s)\n", err, txd_strerror(err));
		FUZZ_CHECK(err == 0 || err == -TXD_ECORRUPT || err == -ENOMEM);
		/* a second commit over the result must work as well */
		ns_apply(&ns, data, len, 7, 8192, 2);
	}
	ns_drop_unlinked(&ns);
	ns_destroy(&ns);
	return 0;
}
