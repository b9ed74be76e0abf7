/*
 * rec.c — encoding and decoding of commit bodies (format in rec.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "rec.h"
#include "txdir.h"
#include "util.h"

#define OP_HDR 8
#define CHG_SIZE 32
#define TXD_XATTR_NAME_MAX 255 /* what the live path accepts (fsops.c) */

/* ---- little-endian helpers ---------------------------------------------- */
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---- building ------------------------------------------------------------ */
uint8_t *rec_reserve(struct rec_buf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->ops, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->ops = p;
		b->cap = cap;
	}
	uint8_t *p = b->ops + b->len;
	b->len += n;
	return p;
}

/* Start an op of body size n; returns the body pointer. */
static uint8_t *op_begin(struct rec_buf *b, enum rec_op op, size_t n)
{
	uint8_t *p = rec_reserve(b, OP_HDR + n);
	if (!p)
		return NULL;
	put16(p, op);
	put16(p + 2, 0);
	put32(p + 4, (uint32_t)n);
	b->nops++;
	return p + OP_HDR;
}

uint32_t rec_pid(const struct rec_buf *b)
{
	return b->len >= REC_HDR_SIZE ? get32(b->ops + 16) : 0;
}

void rec_set_pid(struct rec_buf *b, uint32_t pid)
{
	if (b->len >= REC_HDR_SIZE)
		put32(b->ops + 16, pid);
}

void rec_init(struct rec_buf *b, uint64_t txn, uint64_t time_ns, uint32_t pid)
{
	memset(b, 0, sizeof(*b));
	uint8_t *p = rec_reserve(b, REC_HDR_SIZE);
	if (!p)
		return;
	put64(p, txn);
	put64(p + 8, time_ns);
	put32(p + 16, pid);
	put32(p + 20, 0);
}

void rec_release(struct rec_buf *b)
{
	free(b->ops);
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static uint8_t *put_ts(uint8_t *p, const struct timespec *ts)
{
	put64(p, (uint64_t)ts->tv_sec);
	put32(p + 8, (uint32_t)ts->tv_nsec);
	return p + 12;
}

#define INODE_FIXED (8 + 4 * 4 + 8 + 3 * 12 + 8 + 4)

void rec_inode(struct rec_buf *b, const struct rec_inode *in)
{
	uint8_t *p = op_begin(b, OP_INODE, INODE_FIXED + in->target_len);
	if (!p)
		return;
	put64(p, in->ino);
	put32(p + 8, in->mode);
	put32(p + 12, in->uid);
	put32(p + 16, in->gid);
	put32(p + 20, in->nlink);
	put64(p + 24, in->rdev);
	p = put_ts(p + 32, &in->atime);
	p = put_ts(p, &in->mtime);
	p = put_ts(p, &in->ctime);
	put64(p, in->parent);
	put32(p + 8, in->target_len);
	if (in->target_len)
		memcpy(p + 12, in->target, in->target_len);
}

void rec_dent_set(struct rec_buf *b, uint64_t parent, const char *name, uint64_t ino,
		  uint64_t cookie)
{
	size_t nl = strlen(name);
	uint8_t *p = op_begin(b, OP_DENT_SET, 26 + nl);
	if (!p)
		return;
	put64(p, parent);
	put64(p + 8, ino);
	put64(p + 16, cookie);
	put16(p + 24, (uint16_t)nl);
	memcpy(p + 26, name, nl);
}

void rec_dent_del(struct rec_buf *b, uint64_t parent, const char *name)
{
	size_t nl = strlen(name);
	uint8_t *p = op_begin(b, OP_DENT_DEL, 10 + nl);
	if (!p)
		return;
	put64(p, parent);
	put16(p + 8, (uint16_t)nl);
	memcpy(p + 10, name, nl);
}

void rec_xattr_set(struct rec_buf *b, uint64_t ino, const char *name, const void *value,
		   uint32_t len)
{
	size_t nl = strlen(name);
	uint8_t *p = op_begin(b, OP_XATTR_SET, 14 + nl + len);
	if (!p)
		return;
	put64(p, ino);
	put16(p + 8, (uint16_t)nl);
	put32(p + 10, len);
	memcpy(p + 14, name, nl);
	if (len)
		memcpy(p + 14 + nl, value, len);
}

void rec_xattr_del(struct rec_buf *b, uint64_t ino, const char *name)
{
	size_t nl = strlen(name);
	uint8_t *p = op_begin(b, OP_XATTR_DEL, 10 + nl);
	if (!p)
		return;
	put64(p, ino);
	put16(p + 8, (uint16_t)nl);
	memcpy(p + 10, name, nl);
}

void rec_free(struct rec_buf *b, uint64_t ino)
{
	uint8_t *p = op_begin(b, OP_FREE, 8);
	if (p)
		put64(p, ino);
}

void rec_version(struct rec_buf *b, uint64_t ino, uint64_t commit, uint64_t vno)
{
	uint8_t *p = op_begin(b, OP_VERSION, 24);
	if (!p)
		return;
	put64(p, ino);
	put64(p + 8, commit);
	put64(p + 16, vno);
}

static int data_push(struct rec_buf *b, const void *data, uint32_t len)
{
	if (array_grow((void **)&b->data, &b->capdata, b->ndata + 1, sizeof(*b->data)))
		return -ENOMEM;
	b->data[b->ndata].iov_base = (void *)data;
	b->data[b->ndata].iov_len = len;
	b->ndata++;
	b->data_len += len;
	return 0;
}

void rec_content(struct rec_buf *b, uint64_t ino, uint64_t size, bool truncated,
		 uint64_t trunc_chunks, const struct wcopy_change *chg, uint32_t n)
{
	uint8_t *p = op_begin(b, OP_CONTENT, 29 + (size_t)n * CHG_SIZE);
	if (!p)
		return;
	put64(p, ino);
	put64(p + 8, size);
	p[16] = truncated;
	put64(p + 17, trunc_chunks);
	put32(p + 25, n);
	p += 29;
	for (uint32_t k = 0; k < n; k++, p += CHG_SIZE) {
		const struct wcopy_change *c = &chg[k];
		uint32_t file = c->loc.file;
		uint64_t off = c->loc.off;
		if (c->len && c->data) {
			file = REC_INLINE;
			off = b->data_len;
			if (data_push(b, c->data, c->len)) {
				b->err = -ENOMEM;
				return;
			}
		}
		put64(p, c->idx);
		put32(p + 8, c->len ? file : 0);
		put32(p + 12, c->len);
		put64(p + 16, c->len ? off : 0);
		put64(p + 24, c->len ? c->csum : 0);
	}
}

int rec_iov_count(const struct rec_buf *b)
{
	return 1 + (int)b->ndata;
}

int rec_finish(struct rec_buf *b, struct iovec *iov)
{
	if (b->err)
		return b->err;
	put32(b->ops + 20, b->nops);
	iov[0].iov_base = b->ops;
	iov[0].iov_len = b->len;
	for (uint32_t k = 0; k < b->ndata; k++)
		iov[1 + k] = b->data[k];
	return 1 + (int)b->ndata;
}

/* ---- reading ------------------------------------------------------------- */

/* Minimum body size of each op, and whether its variable part fits. */
static int op_check(uint16_t op, const uint8_t *p, uint32_t len)
{
	switch (op) {
	case OP_INODE:
		return len >= INODE_FIXED && len == INODE_FIXED + get32(p + INODE_FIXED - 4);
	case OP_DENT_SET:
		return len >= 26 && len == 26u + get16(p + 24) && get16(p + 24) > 0 &&
		       get16(p + 24) <= TXD_NAME_MAX;
	case OP_DENT_DEL:
		return len >= 10 && len == 10u + get16(p + 8) && get16(p + 8) > 0 &&
		       get16(p + 8) <= TXD_NAME_MAX;
	case OP_CONTENT:
		return len >= 29 && (uint64_t)len == 29 + (uint64_t)get32(p + 25) * CHG_SIZE;
	case OP_XATTR_SET:
		return len >= 14 && (uint64_t)len == 14ull + get16(p + 8) + get32(p + 10) &&
		       get16(p + 8) > 0 && get16(p + 8) <= TXD_XATTR_NAME_MAX;
	case OP_XATTR_DEL:
		return len >= 10 && len == 10u + get16(p + 8) && get16(p + 8) > 0 &&
		       get16(p + 8) <= TXD_XATTR_NAME_MAX;
	case OP_FREE:
		return len == 8;
	case OP_VERSION:
		return len == 24;
	default:
		return 0;
	}
}

/* Inline chunks must lie inside the data area. */
/* cmap_set's limit (chunk.h): a larger index cannot be applied */
#define REC_MAX_CHUNK_IDX (1ull << 54)

static int content_check(const uint8_t *p, uint64_t data_len)
{
	uint32_t n = get32(p + 25);
	const uint8_t *c = p + 29;
	for (uint32_t k = 0; k < n; k++, c += CHG_SIZE) {
		uint32_t len = get32(c + 12);
		uint64_t off = get64(c + 16);
		if (len > TXD_CHUNK_SIZE || get64(c) >= REC_MAX_CHUNK_IDX)
			return 0;
		/* off + len could wrap: compare without adding to off */
		if (len && get32(c + 8) == REC_INLINE && (off > data_len || len > data_len - off))
			return 0;
	}
	return 1;
}

int rec_validate(const void *payload, uint32_t len, struct rec_hdr *hdr)
{
	const uint8_t *p = payload;
	if (len < REC_HDR_SIZE)
		return -TXD_ECORRUPT;
	hdr->txn = get64(p);
	hdr->time_ns = get64(p + 8);
	hdr->pid = get32(p + 16);
	hdr->nops = get32(p + 20);
	uint32_t pos = REC_HDR_SIZE;
	for (uint32_t k = 0; k < hdr->nops; k++) {
		if (len - pos < OP_HDR)
			return -TXD_ECORRUPT;
		uint16_t op = get16(p + pos);
		uint32_t olen = get32(p + pos + 4);
		if (olen > len - pos - OP_HDR || !op_check(op, p + pos + OP_HDR, olen))
			return -TXD_ECORRUPT;
		pos += OP_HDR + olen;
	}
	hdr->data_off = pos;
	/* second pass: inline ranges against the now known data area */
	uint32_t q = REC_HDR_SIZE;
	for (uint32_t k = 0; k < hdr->nops; k++) {
		uint16_t op = get16(p + q);
		uint32_t olen = get32(p + q + 4);
		if (op == OP_CONTENT && !content_check(p + q + OP_HDR, len - pos))
			return -TXD_ECORRUPT;
		q += OP_HDR + olen;
	}
	return 0;
}

static void get_ts(const uint8_t *p, struct timespec *ts)
{
	ts->tv_sec = (time_t)get64(p);
	ts->tv_nsec = get32(p + 8);
}

void rec_iter_init(struct rec_iter *it, const void *payload, const struct rec_hdr *hdr)
{
	it->p = payload;
	it->pos = REC_HDR_SIZE;
	it->left = hdr->nops;
}

int rec_next(struct rec_iter *it, struct rec_opv *op)
{
	if (!it->left)
		return 0;
	const uint8_t *p = it->p + it->pos;
	op->op = get16(p);
	uint32_t olen = get32(p + 4);
	p += OP_HDR;
	it->pos += OP_HDR + olen;
	it->left--;
	switch (op->op) {
	case OP_INODE: {
		struct rec_inode *in = &op->u.inode;
		in->ino = get64(p);
		in->mode = get32(p + 8);
		in->uid = get32(p + 12);
		in->gid = get32(p + 16);
		in->nlink = get32(p + 20);
		in->rdev = get64(p + 24);
		get_ts(p + 32, &in->atime);
		get_ts(p + 44, &in->mtime);
		get_ts(p + 56, &in->ctime);
		in->parent = get64(p + 68);
		in->target_len = get32(p + 76);
		in->target = (const char *)p + 80;
		break;
	}
	case OP_DENT_SET:
		op->u.dent.parent = get64(p);
		op->u.dent.ino = get64(p + 8);
		op->u.dent.cookie = get64(p + 16);
		op->u.dent.name_len = get16(p + 24);
		op->u.dent.name = (const char *)p + 26;
		break;
	case OP_DENT_DEL:
		op->u.dent.parent = get64(p);
		op->u.dent.ino = 0;
		op->u.dent.cookie = 0;
		op->u.dent.name_len = get16(p + 8);
		op->u.dent.name = (const char *)p + 10;
		break;
	case OP_CONTENT:
		op->u.content.ino = get64(p);
		op->u.content.size = get64(p + 8);
		op->u.content.truncated = p[16];
		op->u.content.trunc_chunks = get64(p + 17);
		op->u.content.nchg = get32(p + 25);
		op->u.content.chg = p + 29;
		break;
	case OP_XATTR_SET:
		op->u.xattr.ino = get64(p);
		op->u.xattr.name_len = get16(p + 8);
		op->u.xattr.value_len = get32(p + 10);
		op->u.xattr.name = (const char *)p + 14;
		op->u.xattr.value = p + 14 + op->u.xattr.name_len;
		break;
	case OP_XATTR_DEL:
		op->u.xattr.ino = get64(p);
		op->u.xattr.name_len = get16(p + 8);
		op->u.xattr.name = (const char *)p + 10;
		op->u.xattr.value = NULL;
		op->u.xattr.value_len = 0;
		break;
	case OP_FREE:
		op->u.ino = get64(p);
		break;
	case OP_VERSION:
		op->u.version.ino = get64(p);
		op->u.version.commit = get64(p + 8);
		op->u.version.vno = get64(p + 16);
		break;
	}
	return 1;
}

void rec_content_chg(const struct rec_content *c, uint32_t k, uint32_t seg, uint64_t base,
		     struct wcopy_change *out)
{
	const uint8_t *p = c->chg + (size_t)k * CHG_SIZE;
	memset(out, 0, sizeof(*out));
	out->idx = get64(p);
	out->len = get32(p + 12);
	out->csum = get64(p + 24);
	out->loc.file = get32(p + 8);
	out->loc.off = get64(p + 16);
	out->loc.len = out->len;
	out->loc.csum = out->csum;
	if (out->len && out->loc.file == REC_INLINE) {
		out->loc.file = CHUNK_FILE_WAL | seg;
		out->loc.off += base;
	}
}
