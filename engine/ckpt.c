/*
 * ckpt.c — checkpoints: the whole namespace as of one LSN, so recovery
 * replays only the log after it and old WAL segments can be deleted.
 *
 * File "ckpt-%016llx" (the LSN, so names sort by age) in the checkpoint
 * directory. Little-endian:
 *   header (64 bytes): u64 magic "TXDCKPT1", u32 version 1, u32 0, u64 lsn,
 *                      u64 next_ino, u8[24] 0, u64 xxh64(bytes 0..55)
 *   blocks:            u32 magic "CKBL", u32 len, u64 xxh64(payload), then a
 *                      commit payload (rec.h) with no inline data
 *   trailer:           u32 magic "CKEN", u32 0, u64 nblocks,
 *                      u64 xxh64(bytes 0..15 of the trailer)
 * Block order: every inode (OP_INODE, OP_CONTENT with explicit chunk
 * locations, OP_XATTR_SET..., OP_VERSION), then every directory's entries in
 * cookie order (OP_DENT_SET with the cookie).
 *
 * Invariants.
 *  K1 A checkpoint is used only if its header, every block and the trailer
 *     check out; otherwise the next older one is tried. Atomicity does not
 *     depend on rename: a torn checkpoint is simply not valid.
 *  K0 The log up to the checkpoint's LSN and every pack are fsynced before
 *     the checkpoint is written (it names chunks that live there).
 *  K2 Older checkpoints and WAL segments are deleted only after the new
 *     checkpoint file and its directory entry are fsynced.
 *  K3 A WAL segment still holding chunks of any retained version (head, or
 *     older versions kept for readers and snapshots) is kept: inline chunk
 *     data lives in the log.
 *  K4 Loading applies the blocks with ns_apply: the same code as replay.
 *     With no valid checkpoint, loading leaves the empty namespace at LSN 0
 *     and recovery replays the whole log, which the WAL refuses (a hole,
 *     -TXD_ECORRUPT) once the log's start was dropped.
 *  K5 A checkpoint whose (checksummed) header names another version is
 *     refused with -TXD_EFORMAT, not read and not passed over for an older
 *     one: it was written by another format of the store.
 *  K6 No block outgrows 2 x BLOCK_TARGET plus one op of another kind (an
 *     xattr, an inode with its target), however much one inode holds: a
 *     content map goes out as OP_CONTENT pieces of CONTENT_PIECE changes
 *     (the first truncating, the rest adding) and a block is closed between
 *     pieces and between xattrs once it reaches BLOCK_TARGET. (The loader
 *     refuses blocks over 64 MiB: one block per inode made a file of more
 *     than 2M chunks unloadable.)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "fs.h"
#include "os.h"
#include "util.h"

#define CKPT_MAGIC 0x3154504b43445854ull /* "TXDCKPT1" */
#define BLK_MAGIC 0x4c424b43u           /* "CKBL" */
#define END_MAGIC 0x4e454b43u           /* "CKEN" */
#define CKPT_VERSION 1
#define CKPT_HDR 64
#define BLOCK_TARGET (1u << 20)
#define CONTENT_PIECE (BLOCK_TARGET / 32) /* chunk changes per OP_CONTENT (rec.h: 32 bytes) */

struct ckw {
	struct txd_fs *fs;
	int fd;
	uint64_t off, nblocks;
	struct rec_buf b;
	uint32_t *segs; /* WAL segments referenced by live chunks (K3) */
	uint32_t nsegs, capsegs;
	int err;
};

static int ckw_flush(struct ckw *w)
{
	if (w->err || w->b.nops == 0)
		return w->err;
	struct iovec iov[1];
	if (w->b.ndata || (w->err = rec_finish(&w->b, iov)) < 0)
		return w->err = w->b.ndata ? -EINVAL : w->err;
	w->err = 0;
	uint8_t hdr[16];
	uint32_t magic = BLK_MAGIC, len = (uint32_t)w->b.len;
	uint64_t sum = XXH64(w->b.ops, w->b.len, 0);
	memcpy(hdr, &magic, 4);
	memcpy(hdr + 4, &len, 4);
	memcpy(hdr + 8, &sum, 8);
	if ((w->err = os_pwrite_full(w->fd, hdr, 16, (off_t)w->off)) ||
	    (w->err = os_pwrite_full(w->fd, w->b.ops, w->b.len, (off_t)(w->off + 16))))
		return w->err;
	w->off += 16 + w->b.len;
	w->nblocks++;
	rec_release(&w->b);
	rec_init(&w->b, 0, 0, 0);
	return 0;
}

static void note_seg(struct ckw *w, uint32_t file)
{
	if (!(file & CHUNK_FILE_WAL))
		return;
	uint32_t seg = file & ~CHUNK_FILE_WAL;
	for (uint32_t k = 0; k < w->nsegs; k++)
		if (w->segs[k] == seg)
			return;
	if (array_grow((void **)&w->segs, &w->capsegs, w->nsegs + 1, sizeof(*w->segs))) {
		w->err = -ENOMEM;
		return;
	}
	w->segs[w->nsegs++] = seg;
}

struct chgs {
	struct ckw *w;
	struct wcopy_change *v;
	uint32_t n, cap;
};

static int collect_chunk(void *arg, uint64_t idx, struct chunk *c)
{
	struct chgs *cs = arg;
	if (array_grow((void **)&cs->v, &cs->cap, cs->n + 1, sizeof(*cs->v)))
		return -ENOMEM;
	struct wcopy_change *ch = &cs->v[cs->n++];
	memset(ch, 0, sizeof(*ch));
	ch->idx = idx;
	chunk_get_loc(c, &ch->loc);
	ch->len = ch->loc.len;
	ch->csum = ch->loc.csum;
	note_seg(cs->w, ch->loc.file);
	return 0;
}

static int put_inode(void *arg, struct inode *in)
{
	struct ckw *w = arg;
	const struct iver *v = in->head;
	struct rec_inode r;
	fs_inode_rec(in, &r);
	r.target = v->target;
	r.target_len = v->target ? (uint32_t)strlen(v->target) : 0;
	rec_inode(&w->b, &r);
	if (S_ISREG(v->mode)) {
		struct chgs cs = {.w = w};
		int err = cmap_walk(v->map, 0, collect_chunk, &cs);
		/* K6: the map in pieces; the first replaces, the rest add */
		for (uint32_t at = 0; !err && (at == 0 || at < cs.n); at += CONTENT_PIECE) {
			uint32_t n = cs.n - at < CONTENT_PIECE ? cs.n - at : CONTENT_PIECE;
			/* an empty map has no array (NULL + 0 is undefined) */
			rec_content(&w->b, in->ino, v->size, at == 0, 0, cs.v ? cs.v + at : NULL, n);
			if (w->b.len >= BLOCK_TARGET)
				err = ckw_flush(w);
		}
		free(cs.v);
		if (err)
			return w->err = err;
	}
	for (uint32_t p = 0; v->xa && p < v->xa->len;) {
		if (w->b.len >= BLOCK_TARGET && ckw_flush(w))
			return w->err; /* K6 */
		uint16_t nl;
		uint32_t vl;
		char name[256];
		memcpy(&nl, v->xa->data + p, 2);
		memcpy(&vl, v->xa->data + p + 2, 4);
		memcpy(name, v->xa->data + p + 6, nl);
		name[nl] = 0;
		rec_xattr_set(&w->b, in->ino, name, v->xa->data + p + 6 + nl, vl);
		p += 6 + nl + vl;
	}
	rec_version(&w->b, in->ino, v->commit, v->vno);
	return w->b.len >= BLOCK_TARGET ? ckw_flush(w) : w->err;
}

static int put_dir(void *arg, struct inode *in)
{
	struct ckw *w = arg;
	if (!in->dir)
		return 0;
	for (struct dent *e = ns_dir_next(in->dir, 0); e; e = ns_dir_next(in->dir, e->cookie)) {
		rec_dent_set(&w->b, in->ino, e->name, e->ino, e->cookie);
		if (w->b.len >= BLOCK_TARGET && ckw_flush(w))
			return w->err;
	}
	return w->err;
}

static int write_header(struct ckw *w, uint64_t lsn)
{
	uint8_t h[CKPT_HDR] = {0};
	uint64_t magic = CKPT_MAGIC, next = w->fs->ns.next_ino;
	uint32_t ver = CKPT_VERSION;
	memcpy(h, &magic, 8);
	memcpy(h + 8, &ver, 4);
	memcpy(h + 16, &lsn, 8);
	memcpy(h + 24, &next, 8);
	uint64_t sum = XXH64(h, 56, 0);
	memcpy(h + 56, &sum, 8);
	w->off = CKPT_HDR;
	return os_pwrite_full(w->fd, h, CKPT_HDR, 0);
}

static int write_trailer(struct ckw *w)
{
	uint8_t t[24] = {0};
	uint32_t magic = END_MAGIC;
	memcpy(t, &magic, 4);
	memcpy(t + 8, &w->nblocks, 8);
	uint64_t sum = XXH64(t, 16, 0);
	memcpy(t + 16, &sum, 8);
	return os_pwrite_full(w->fd, t, sizeof(t), (off_t)w->off);
}

static char *ckpt_path(struct txd_fs *fs, uint64_t lsn)
{
	char *p;
	if (asprintf(&p, "%s/ckpt-%016" PRIx64, fs->store.ckpt_dir, lsn) < 0)
		return NULL;
	return p;
}

/* ---- deleting what the checkpoint made unnecessary (K2, K3) --------------------- */
struct oldck {
	struct txd_fs *fs;
	uint64_t keep;
};

static int drop_old_ckpt(const char *name, void *arg)
{
	struct oldck *o = arg;
	uint64_t lsn;
	if (sscanf(name, "ckpt-%" SCNx64, &lsn) != 1 || lsn == o->keep)
		return 0;
	char *p;
	if (asprintf(&p, "%s/%s", o->fs->store.ckpt_dir, name) < 0)
		return 0;
	txd_os->unlink(p);
	free(p);
	return 0;
}

/* K3 also covers versions that are not the head: snapshot readers, frozen
 * nodes and registered snapshots read them until they let go. */
static int note_chunk(void *arg, uint64_t idx, struct chunk *c)
{
	(void)idx;
	struct chunk_loc loc;
	chunk_get_loc(c, &loc);
	note_seg(arg, loc.file);
	return 0;
}

static int note_versions(void *arg, struct inode *in)
{
	for (struct iver *v = in->head; v; v = v->older)
		if (S_ISREG(v->mode))
			cmap_walk(v->map, 0, note_chunk, arg);
	return ((struct ckw *)arg)->err;
}

static void drop_segments(struct ckw *w)
{
	if (ns_walk(&w->fs->ns, note_versions, w))
		return; /* keep everything rather than guess */
	uint32_t *segs, n;
	struct txd_fs *fs = w->fs;
	if (wal_list_segments(fs->wal, &segs, &n))
		return;
	uint32_t cur = wal_current_seg(fs->wal);
	for (uint32_t k = 0; k < n; k++) {
		bool live = false;
		for (uint32_t j = 0; j < w->nsegs && !live; j++)
			live = w->segs[j] == segs[k];
		if (segs[k] < cur && !live && wal_drop_segment(fs->wal, segs[k]) == 0)
			chunkstore_forget_file(fs->cs, CHUNK_FILE_WAL | segs[k]);
	}
	free(segs);
}

int ckpt_write(struct txd_fs *fs)
{
	uint64_t lsn = wal_last_lsn(fs->wal);
	if (lsn == fs->ckpt_lsn) {
		/* nothing new to save; readers may have let go of segments */
		struct ckw w = {.fs = fs};
		drop_segments(&w);
		free(w.segs);
		return w.err;
	}
	char *path = ckpt_path(fs, lsn);
	if (!path)
		return -ENOMEM;
	struct ckw w = {.fs = fs};
	rec_init(&w.b, 0, 0, 0);
	w.fd = txd_os->open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = w.fd;
	if (w.fd < 0)
		goto out;
	/* chunks in packs and in the log must be durable before a checkpoint
	 * names them: a power cut may not leave a checkpoint ahead of the log */
	if ((err = chunkstore_sync(fs->cs)) || (err = wal_sync(fs->wal, lsn)) ||
	    (err = write_header(&w, lsn)) ||
	    (err = ns_walk(&fs->ns, put_inode, &w)) || (err = ckw_flush(&w)) ||
	    (err = ns_walk(&fs->ns, put_dir, &w)) || (err = ckw_flush(&w)) ||
	    (err = write_trailer(&w)) || (err = txd_os->fsync(w.fd)) ||
	    (err = os_fsync_dir(fs->store.ckpt_dir)))
		goto out_close;
	struct oldck o = {.fs = fs, .keep = lsn};
	txd_os->listdir(fs->store.ckpt_dir, drop_old_ckpt, &o);
	/* the logs' entries of commits before lsn can no longer be derived
	 * from the segments about to go (events.h E2, clog.h C3) */
	if (ev_sync(fs->events) || clog_sync(fs->clog))
		syslog(LOG_WARNING, "txdir: could not sync the event or commit log");
	drop_segments(&w);
	fs->ckpt_lsn = lsn;
	fs->ckpt_count++;
	if (ev_trim(fs->events, fs_retain_oldest_ns(fs)) ||
	    clog_trim(fs->clog, fs_retain_oldest_ns(fs)))
		syslog(LOG_WARNING, "txdir: could not drop old entries of the event or commit log");
out_close:
	txd_os->close(w.fd);
	if (err)
		txd_os->unlink(path);
out:
	rec_release(&w.b);
	free(w.segs);
	free(path);
	return err;
}

/* ---- loading --------------------------------------------------------------------- */
struct cklist {
	uint64_t *lsn;
	uint32_t n, cap;
};

static int list_ckpt(const char *name, void *arg)
{
	struct cklist *l = arg;
	uint64_t lsn;
	char tail;
	if (sscanf(name, "ckpt-%" SCNx64 "%c", &lsn, &tail) != 1)
		return 0;
	if (array_grow((void **)&l->lsn, &l->cap, l->n + 1, sizeof(*l->lsn)))
		return -ENOMEM;
	l->lsn[l->n++] = lsn;
	return 0;
}

/* Read, verify and apply one checkpoint file, streaming block by block so
 * memory stays at one block (K1, K4). Any mismatch is -TXD_ECORRUPT; the
 * caller then resets the namespace and tries an older checkpoint. */
static int ckpt_stream(struct txd_fs *fs, int fd, uint64_t lsn)
{
	uint8_t h[CKPT_HDR];
	uint64_t magic, hl, sum, next, nblocks = 0, off = CKPT_HDR;
	int err = os_pread_full(fd, h, CKPT_HDR, 0);
	if (err)
		return err == -EIO ? -TXD_ECORRUPT : err;
	memcpy(&magic, h, 8);
	memcpy(&hl, h + 16, 8);
	memcpy(&next, h + 24, 8);
	memcpy(&sum, h + 56, 8);
	if (magic != CKPT_MAGIC || hl != lsn || sum != XXH64(h, 56, 0))
		return -TXD_ECORRUPT;
	uint32_t ver;
	memcpy(&ver, h + 8, 4);
	if (ver != CKPT_VERSION)
		return -TXD_EFORMAT; /* K5: not ours to read, nor to pass over */
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (;;) {
		uint8_t bh[24];
		uint32_t m, blen;
		if ((err = os_pread_full(fd, bh, 16, (off_t)off)))
			break;
		memcpy(&m, bh, 4);
		memcpy(&blen, bh + 4, 4);
		memcpy(&sum, bh + 8, 8);
		if (m == END_MAGIC) {
			uint64_t nb, s2;
			if ((err = os_pread_full(fd, bh + 16, 8, (off_t)(off + 16))))
				break;
			memcpy(&nb, bh + 8, 8);
			memcpy(&s2, bh + 16, 8);
			err = nb == nblocks && s2 == XXH64(bh, 16, 0) ? 0 : -TXD_ECORRUPT;
			break;
		}
		err = -TXD_ECORRUPT;
		if (m != BLK_MAGIC || blen > (64u << 20))
			break;
		if (blen > cap) {
			uint8_t *nbuf = realloc(buf, blen);
			if (!nbuf) {
				err = -ENOMEM;
				break;
			}
			buf = nbuf;
			cap = blen;
		}
		if ((err = os_pread_full(fd, buf, blen, (off_t)(off + 16))))
			break;
		if (sum != XXH64(buf, blen, 0)) {
			err = -TXD_ECORRUPT;
			break;
		}
		if ((err = ns_apply(&fs->ns, buf, blen, 0, 0, lsn)))
			break;
		off += 16 + (uint64_t)blen;
		nblocks++;
	}
	free(buf);
	if (err == -EIO)
		err = -TXD_ECORRUPT; /* os_pread_full: the file ends early (torn) */
	if (!err && next > fs->ns.next_ino)
		fs->ns.next_ino = next;
	return err;
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

int ckpt_load(struct txd_fs *fs, uint64_t *lsn)
{
	struct cklist l = {0};
	*lsn = 0;
	int err = txd_os->listdir(fs->store.ckpt_dir, list_ckpt, &l);
	if (err)
		goto out;
	if (l.n)
		qsort(l.lsn, l.n, sizeof(*l.lsn), cmp_desc);
	for (uint32_t k = 0; k < l.n; k++) {
		char *path = ckpt_path(fs, l.lsn[k]);
		int fd = path ? txd_os->open(path, O_RDONLY | O_CLOEXEC, 0) : -ENOMEM;
		free(path);
		err = fd < 0 ? fd : ckpt_stream(fs, fd, l.lsn[k]);
		if (fd >= 0)
			txd_os->close(fd);
		if (!err) {
			*lsn = l.lsn[k];
			break;
		}
		if (err != -TXD_ECORRUPT)
			break;
		/* K1: a torn newest checkpoint falls back to the previous one;
		 * reset whatever a partial apply left */
		ns_destroy(&fs->ns);
		if ((err = ns_init(&fs->ns)))
			break;
	}
out:
	free(l.lsn);
	return err;
}
