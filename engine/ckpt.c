/*
 * ckpt.c — checkpoints: the whole namespace as of one LSN, so recovery
 * replays only the log after it and old WAL segments can be deleted.
 *
 * File "ckpt-%016llx" (the LSN, so names sort by age) in the checkpoint
 * directory. Little-endian:
 *   header (64 bytes): u64 magic "TXDCKPT1", u32 version (1 or 2), u32 0,
 *                      u64 lsn, u64 next_ino, u8[24] 0, u64 xxh64(bytes 0..55)
 *   sections (version 2 only, right after the header, counted as blocks):
 *                      u32 magic "CKSX", u32 len, u64 xxh64(payload), then
 *                      u32 id, u32 0, the section's bytes (len - 8 of them).
 *                      id 1: the services (svc_ckpt_save; svc.h V2)
 *                      id 2: the prepared transactions (dtc_save,
 *                      taken in the hold that chose the LSN: dtc.h
 *                      D6); only when there are any
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
 *     one: it was written by another format of the store. Version 1 (store
 *     format 1) has no sections; version 2 (store format 2) has the
 *     services' section, taken after the LSN was chosen (svc.h V2), and it
 *     is handed to the services only once the whole file checked out.
 *  K6 No block outgrows 2 x BLOCK_TARGET plus one op of another kind (an
 *     xattr, an inode with its target), however much one inode holds: a
 *     content map goes out as OP_CONTENT pieces of CONTENT_PIECE changes
 *     (the first truncating, the rest adding) and a block is closed between
 *     pieces and between xattrs once it reaches BLOCK_TARGET. (The loader
 *     refuses blocks over 64 MiB: one block per inode made a file of more
 *     than 2M chunks unloadable.)
 *  K7 A checkpoint at LSN L is the namespace as registered snapshot L sees
 *     it (ns.h N6), however long the writing takes: L and the snapshot are
 *     taken in one hold of fs->lock, and commits after L go on meanwhile.
 *     fs->lock is held only to encode bounded batches (BATCH_UNITS inodes,
 *     chunks or entries) into memory; every write, fsync and unlink runs
 *     without it, so no request waits for the checkpoint's I/O or for more
 *     than one batch of its walk. Replay starts after L, so a commit made
 *     during the checkpoint is applied exactly once on reload.
 *  K8 GC (gc.h G4, G5) may ask for a checkpoint when nothing was committed
 *     since the last one: it is rewritten at the same LSN into
 *     "ckpt-LSN.new" (a name the loader passes over), fsynced, renamed over
 *     "ckpt-LSN", and the directory fsynced: a crash leaves the old file or
 *     the new one, both valid checkpoints of LSN; a failed rewrite unlinks
 *     only the .new file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "chunk.h"
#include "ckpt.h"
#include "clog.h"
#include "core.h"
#include "dtc.h"
#include "events.h"
#include "gc.h"
#include "os.h"
#include "rec.h"
#include "svc.h"
#include "txn.h"
#include "wal.h"
#include "util.h"

#define CKPT_MAGIC 0x3154504b43445854ull /* "TXDCKPT1" */
#define BLK_MAGIC 0x4c424b43u           /* "CKBL" */
#define END_MAGIC 0x4e454b43u           /* "CKEN" */
#define SEC_MAGIC 0x58534b43u           /* "CKSX" */
#define SEC_SERVICES 1
#define SEC_PREPARED 2
#define CKPT_VERSION 2 /* the newest this code reads and writes (K5) */
#define CKPT_HDR 64
#define BLOCK_TARGET (1u << 20)
#define CONTENT_PIECE (BLOCK_TARGET / 32) /* chunk changes per OP_CONTENT (rec.h: 32 bytes) */
#define BATCH_UNITS 256 /* items (inodes, chunks, entries) per hold of fs->lock (K7) */

/* One checkpoint at a time, in every store of the process (txd_checkpoint
 * may race the background thread). Lock order: ckpt_serial -> fs->lock. */
static pthread_mutex_t ckpt_serial = PTHREAD_MUTEX_INITIALIZER;

struct ckw {
	struct txd_fs *fs;
	int fd;
	bool write;     /* false: only note the segments in use (K3) */
	uint64_t snap;  /* the registered snapshot: the state written (K7) */
	uint64_t off, nblocks;
	struct rec_buf b;
	uint8_t *out;   /* sealed blocks waiting to be written, unlocked */
	size_t nout, capout;
	uint32_t *segs; /* WAL segments referenced by live chunks (K3) */
	uint32_t nsegs, capsegs;
	/* the walk (K7): bucket classes of the inode table as it was at the
	 * start (a class survives the table's doubling), the inodes of the
	 * current class, and where the current inode stands */
	uint64_t nclass, cls;
	uint64_t *inos;
	uint32_t ninos, capinos, at;
	int pass;       /* ckw_step */
	int stage;      /* inside an inode: 0 start, 1 content, 2 rest */
	uint64_t sub;   /* next chunk index / directory cookie */
	uint32_t units; /* work left in this hold of fs->lock */
	int err;
};

/* Seal the open block into w->out (fs->lock may be held: no I/O here). */
static int ckw_seal(struct ckw *w)
{
	if (w->err || w->b.nops == 0)
		return w->err;
	struct iovec iov[1];
	if (w->b.ndata || (w->err = rec_finish(&w->b, iov)) < 0)
		return w->err = w->b.ndata ? -EINVAL : w->err;
	w->err = 0;
	size_t need = w->nout + 16 + w->b.len;
	if (need > w->capout) {
		size_t cap = w->capout ? w->capout : BLOCK_TARGET;
		while (cap < need)
			cap *= 2;
		uint8_t *n = realloc(w->out, cap);
		if (!n)
			return w->err = -ENOMEM;
		w->out = n;
		w->capout = cap;
	}
	uint32_t magic = BLK_MAGIC, len = (uint32_t)w->b.len;
	uint64_t sum = XXH64(w->b.ops, w->b.len, 0);
	memcpy(w->out + w->nout, &magic, 4);
	memcpy(w->out + w->nout + 4, &len, 4);
	memcpy(w->out + w->nout + 8, &sum, 8);
	memcpy(w->out + w->nout + 16, w->b.ops, w->b.len);
	w->nout = need;
	w->nblocks++;
	rec_release(&w->b);
	rec_init(&w->b, 0, 0, 0);
	return 0;
}

/* Write the sealed blocks (fs->lock not held). */
static int ckw_write_out(struct ckw *w)
{
	if (w->err || !w->nout)
		return w->err;
	if ((w->err = os_pwrite_full(w->fd, w->out, w->nout, (off_t)w->off)))
		return w->err;
	w->off += w->nout;
	w->nout = 0;
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
	uint32_t n, cap, max;
	uint64_t next; /* index after the last one taken */
};

static int collect_chunk(void *arg, uint64_t idx, struct chunk *c)
{
	struct chgs *cs = arg;
	if (cs->n == cs->max)
		return 1; /* this piece is full */
	if (array_grow((void **)&cs->v, &cs->cap, cs->n + 1, sizeof(*cs->v)))
		return -ENOMEM;
	struct wcopy_change *ch = &cs->v[cs->n++];
	memset(ch, 0, sizeof(*ch));
	ch->idx = idx;
	chunk_get_loc(c, &ch->loc);
	ch->len = ch->loc.len;
	ch->csum = ch->loc.csum;
	note_seg(cs->w, ch->loc.file);
	cs->next = idx + 1;
	return 0;
}

/* K3 also covers versions that are not the one written: snapshot readers,
 * frozen nodes, registered snapshots and commits after the checkpoint's
 * snapshot read them until they let go. */
static int note_chunk(void *arg, uint64_t idx, struct chunk *c)
{
	(void)idx;
	struct chunk_loc loc;
	chunk_get_loc(c, &loc);
	note_seg(arg, loc.file);
	return 0;
}

static void note_versions(struct ckw *w, struct inode *in, const struct iver *skip)
{
	for (struct iver *v = in->head; v; v = v->older)
		if (v != skip && S_ISREG(v->mode) && (!skip || v->map != skip->map))
			cmap_walk(v->map, 0, note_chunk, w);
}

/* One step of inode in as snapshot w->snap sees it (K7): false when it
 * needs another hold of the lock. The inode block: OP_INODE, the content
 * map as OP_CONTENT pieces (K6: the first replaces, the rest add), xattrs,
 * OP_VERSION. */
static bool put_inode(struct ckw *w, struct inode *in, const struct iver *v)
{
	if (w->stage == 0) {
		note_versions(w, in, w->write ? v : NULL);
		if (!w->write || !v)
			return true;
		struct rec_inode r;
		ns_inode_rec(in, &r);
		r.mode = v->mode;
		r.uid = v->uid;
		r.gid = v->gid;
		r.nlink = v->nlink;
		r.rdev = v->rdev;
		r.atime = v->atime;
		r.mtime = v->mtime;
		r.ctime = v->ctime;
		r.target = v->target;
		r.target_len = v->target ? (uint32_t)strlen(v->target) : 0;
		rec_inode(&w->b, &r);
		w->units--;
		w->stage = S_ISREG(v->mode) ? 1 : 2;
		w->sub = 0;
	}
	while (w->stage == 1) {
		if (w->units == 0)
			return false;
		uint32_t max = w->units < CONTENT_PIECE ? w->units : CONTENT_PIECE;
		struct chgs cs = {.w = w, .max = max, .next = w->sub};
		int err = cmap_walk(v->map, w->sub, collect_chunk, &cs);
		if (err < 0) {
			free(cs.v);
			w->err = err;
			return true;
		}
		rec_content(&w->b, in->ino, v->size, w->sub == 0, 0, cs.v, cs.n);
		free(cs.v);
		w->units -= cs.n ? cs.n : 1;
		if (err == 0)
			w->stage = 2; /* the whole map is out */
		else
			w->sub = cs.next;
		if (w->b.len >= BLOCK_TARGET)
			ckw_seal(w); /* K6 */
	}
	for (uint32_t p = 0; v->xa && p < v->xa->len;) {
		if (w->b.len >= BLOCK_TARGET)
			ckw_seal(w); /* K6 */
		uint16_t nl;
		uint32_t vl;
		char name[256];
		memcpy(&nl, v->xa->data + p, 2);
		memcpy(&vl, v->xa->data + p + 2, 4);
		memcpy(name, v->xa->data + p + 6, nl);
		name[nl] = 0;
		rec_xattr_set(&w->b, in->ino, name, v->xa->data + p + 6 + nl, vl);
		p += 6 + nl + vl;
		w->units -= w->units ? 1 : 0;
	}
	rec_version(&w->b, in->ino, v->commit, v->vno);
	if (w->b.len >= BLOCK_TARGET)
		ckw_seal(w);
	return true;
}

/* The entries directory in had at w->snap, in cookie order, from cookie
 * w->sub on; false when it needs another hold of the lock. */
static bool put_dir(struct ckw *w, struct inode *in, const struct iver *v)
{
	if (!v || !S_ISDIR(v->mode) || !in->dir)
		return true;
	uint64_t ino;
	for (struct dent *e; (e = ns_dir_next_at(in->dir, w->sub, w->snap, &ino));) {
		if (w->units == 0)
			return false;
		rec_dent_set(&w->b, in->ino, e->name, ino, e->cookie);
		w->sub = e->cookie;
		w->units--;
		if (w->b.len >= BLOCK_TARGET)
			ckw_seal(w);
	}
	return true;
}

/* Inodes of bucket class w->cls: buckets k of the current table with
 * k mod w->nclass == cls. The table only grows by doubling and an inode's
 * bucket is its hash's low bits, so each inode stays in its class: an
 * inode present throughout the walk is visited exactly once. */
static int load_class(struct ckw *w)
{
	struct ns *ns = &w->fs->ns;
	w->ninos = w->at = 0;
	for (uint64_t k = w->cls; k < ns->tabsize; k += w->nclass)
		for (struct inode *in = ns->tab[k]; in; in = in->hnext) {
			if (array_grow((void **)&w->inos, &w->capinos, w->ninos + 1,
				       sizeof(*w->inos)))
				return w->err = -ENOMEM;
			w->inos[w->ninos++] = in->ino;
		}
	w->cls++;
	return 0;
}

/* One hold of fs->lock: up to BATCH_UNITS items of the walk. Passes: 0
 * inodes, 1 directories, 2 (after the snapshot is forgotten) sweeping what
 * only the snapshot kept (ns.h N2, as ns_snapshot_release would, in
 * pieces), 3 done. */
static void ckw_step(struct ckw *w)
{
	struct ns *ns = &w->fs->ns;
	w->units = BATCH_UNITS;
	while (w->units && w->pass != 1 + 2 && !w->err) {
		if (w->at == w->ninos) {
			if (w->cls == w->nclass) {
				w->cls = 0;
				w->ninos = w->at = 0;
				if (w->pass == 0 && w->write) {
					w->pass = 1;
					if (!ckw_seal(w))
						continue;
				}
				w->pass = 3;
				break;
			}
			if (load_class(w))
				break;
			w->units = w->units > 4 ? w->units - 4 : 1; /* the buckets looked at */
			continue;
		}
		/* inodes that came after the snapshot, or went, are not in it:
		 * those the snapshot sees stay in the table (fs.c keeps unlinked
		 * inodes while snapshots exist) */
		struct inode *in = ns_inode(ns, w->inos[w->at]);
		const struct iver *v = in && w->pass < 2 ? ns_iver_at(in, w->snap) : NULL;
		bool done = true;
		if (in && w->pass == 0)
			done = put_inode(w, in, v);
		else if (in && w->pass == 1)
			done = put_dir(w, in, v);
		else if (in)
			ns_sweep_inode(ns, in);
		if (done) {
			w->at++;
			w->stage = 0;
			w->sub = 0;
			w->units -= w->units ? 1 : 0;
		}
	}
}

/* A walk (passes from..3), fs->lock held on entry and on return, released
 * between steps while the sealed blocks are written. */
static int ckw_walk(struct ckw *w, int from)
{
	struct txd_fs *fs = w->fs;
	w->pass = from;
	w->cls = w->ninos = w->at = 0;
	w->nclass = fs->ns.tabsize;
	while (w->pass != 3 && !w->err) {
		ckw_step(w);
		pthread_mutex_unlock(&fs->lock);
		if (w->write)
			ckw_write_out(w);
		sched_yield();
		pthread_mutex_lock(&fs->lock);
	}
	return w->err;
}

static int write_header(struct ckw *w, uint32_t ver, uint64_t lsn, uint64_t next)
{
	uint8_t h[CKPT_HDR] = {0};
	uint64_t magic = CKPT_MAGIC;
	memcpy(h, &magic, 8);
	memcpy(h + 8, &ver, 4);
	memcpy(h + 16, &lsn, 8);
	memcpy(h + 24, &next, 8);
	uint64_t sum = XXH64(h, 56, 0);
	memcpy(h + 56, &sum, 8);
	w->off = CKPT_HDR;
	return os_pwrite_full(w->fd, h, CKPT_HDR, 0);
}

/* One section (id, blen bytes). */
static int write_section(struct ckw *w, uint32_t id, const void *blob, size_t blen)
{
	uint8_t *sec = malloc(24 + blen);
	if (!sec || blen > (64u << 20) - 8) {
		free(sec);
		return sec ? -EFBIG : -ENOMEM;
	}
	uint32_t magic = SEC_MAGIC, len = (uint32_t)(8 + blen), zero = 0;
	memcpy(sec + 16, &id, 4);
	memcpy(sec + 20, &zero, 4);
	memcpy(sec + 24, blob, blen);
	uint64_t sum = XXH64(sec + 16, len, 0);
	memcpy(sec, &magic, 4);
	memcpy(sec + 4, &len, 4);
	memcpy(sec + 8, &sum, 8);
	int err = os_pwrite_full(w->fd, sec, 16 + len, (off_t)w->off);
	if (!err) {
		w->off += 16 + len;
		w->nblocks++;
	}
	free(sec);
	return err;
}

/* The services' section (K5): a snapshot taken now, after the LSN. */
static int write_services(struct ckw *w)
{
	void *blob = NULL;
	size_t blen = 0;
	int err = svc_ckpt_save(w->fs->svc, &blob, &blen);
	if (!err)
		err = write_section(w, SEC_SERVICES, blob, blen);
	free(blob);
	return err;
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

/* Segments before cur (the current one when the walk's snapshot was taken:
 * they hold only commits up to the checkpoint's LSN) that no version the
 * walk saw uses. A version made after the walk passed its inode holds
 * chunks of versions the walk noted or chunks written since, in segments
 * >= cur. fs->lock not held. */
static void drop_segments(struct ckw *w, uint32_t cur)
{
	uint32_t *segs, n;
	struct txd_fs *fs = w->fs;
	if (w->err || wal_list_segments(fs->wal, &segs, &n))
		return; /* keep everything rather than guess */
	for (uint32_t k = 0; k < n; k++) {
		bool live = false;
		for (uint32_t j = 0; j < w->nsegs && !live; j++)
			live = w->segs[j] == segs[k];
		/* K3 also for chunk objects no version holds: an open file's
		 * working copy keeps its own objects of what it committed (a
		 * relocation moved only the versions' copies), so a segment
		 * any object still names stays (gc.h G1; table lost: all stay) */
		struct chunk_usage u;
		if (!live && (!chunk_usage_get(CHUNK_FILE_WAL | segs[k], &u) || u.chunks || u.pins))
			live = true;
		if (segs[k] < cur && !live && wal_drop_segment(fs->wal, segs[k]) == 0)
			chunkstore_forget_file(fs->cs, CHUNK_FILE_WAL | segs[k]);
	}
	free(segs);
}

/* The checkpoint proper (K7), ckpt_serial and fs->lock held on entry and
 * on return. */
static int ckpt_write_locked(struct txd_fs *fs)
{
	uint64_t lsn = wal_last_lsn(fs->wal), next_ino = fs->ns.next_ino;
	/* read after the LSN: a service record at or below it upgraded the
	 * store before it was appended (svc.h V3) */
	uint32_t ver = fs->store.format >= 2 && fs->svc ? 2 : 1;
	uint32_t cur = wal_current_seg(fs->wal);
	uint64_t moves = gc_moves(fs); /* gc.h G5: relocations this walk sees */
	/* gc.h G4: GC waits for a checkpoint taken after it relocated; with
	 * no commit since the last one it is rewritten at the same LSN, into
	 * "ckpt-LSN.new" renamed over the old one once durable (either file
	 * is a valid checkpoint of LSN: a crash leaves one or the other) */
	bool rewrite = lsn == fs->ckpt_lsn && gc_ckpt_forced(fs);
	struct ckw w = {.fs = fs, .fd = -1, .snap = lsn,
			.write = lsn != fs->ckpt_lsn || rewrite, .nclass = fs->ns.tabsize};
	/* with nothing new to save, only drop segments readers let go of */
	char *path = w.write ? ckpt_path(fs, lsn) : NULL, *tmp = NULL;
	if (w.write && (!path || (rewrite && asprintf(&tmp, "%s.new", path) < 0))) {
		free(path);
		return -ENOMEM;
	}
	char *wpath = rewrite ? tmp : path; /* the file written */
	uint64_t gen = w.write ? gc_ckpt_begin(fs) : 0;
	/* noting segments alone needs no snapshot (drop_segments) */
	int err = w.write ? ns_snapshot_take(&fs->ns, lsn) : 0;
	if (err) {
		free(path);
		free(tmp);
		return err;
	}
	/* prepared transactions as of lsn: replay after it finds the rest */
	void *prepared = NULL;
	size_t nprepared = 0;
	if (w.write && ver >= 2 && (err = dtc_save(fs, &prepared, &nprepared))) {
		ns_snapshot_release(&fs->ns, lsn);
		free(path);
		free(tmp);
		return err;
	}
	rec_init(&w.b, 0, 0, 0);
	/* records of transactions that ended by lsn: durable before the
	 * segments that could settle them go (txn.h) */
	uint64_t *recs = fs->rec_unsynced;
	uint32_t nrecs = fs->rec_unsynced_n;
	fs->rec_unsynced = NULL;
	fs->rec_unsynced_n = fs->rec_unsynced_cap = 0;
	pthread_mutex_unlock(&fs->lock);
	if (w.write) {
		w.fd = txd_os->open(wpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		/* K0: chunks in packs and in the log must be durable before a
		 * checkpoint names them: a power cut may not leave a checkpoint
		 * ahead of the log */
		if ((err = w.fd < 0 ? w.fd : 0) || (err = chunkstore_sync(fs->cs)) ||
		    (err = wal_sync(fs->wal, lsn)) || (err = clog_flush(fs->clog)) ||
		    (err = write_header(&w, ver, lsn, next_ino)) ||
		    (ver >= 2 && (err = write_services(&w))) ||
		    (nprepared && (err = write_section(&w, SEC_PREPARED, prepared, nprepared))))
			w.err = err;
	}
	free(prepared);
	pthread_mutex_lock(&fs->lock);
	err = ckw_walk(&w, 0);
	/* N2: free what only the snapshot kept, in pieces too */
	if (w.write && ns_snapshot_forget(&fs->ns, lsn) && !err)
		err = ckw_walk(&w, 2);
	uint64_t oldest = fs_retain_oldest_ns(fs);
	pthread_mutex_unlock(&fs->lock);
	if (!err && w.write &&
	    ((err = ckw_seal(&w)) || (err = ckw_write_out(&w)) || (err = write_trailer(&w)) ||
	     (err = txd_os->fsync(w.fd)) || (rewrite && (err = txd_os->rename(tmp, path))) ||
	     (err = os_fsync_dir(fs->store.ckpt_dir))))
		w.err = err;
	bool logs_durable = false;
	if (!err) {
		if (w.write) {
			struct oldck o = {.fs = fs, .keep = lsn};
			txd_os->listdir(fs->store.ckpt_dir, drop_old_ckpt, &o);
		}
		/* the logs' entries of commits before lsn can no longer be
		 * derived from the segments about to go (events.h E2, clog.h
		 * C3): a failed sync keeps the segments (K3), the checkpoint
		 * itself stands */
		logs_durable = !ev_sync(fs->events) && !clog_sync(fs->clog) &&
			       !txn_records_sync(fs, recs, nrecs);
		if (!logs_durable)
			syslog(LOG_WARNING, "txdir: could not sync the event log, commit log or "
					    "transaction records: WAL segments kept");
	}
	/* gc.h G5: with nothing written, the last checkpoint names the
	 * segments as they were before any relocation since its snapshot */
	pthread_mutex_lock(&fs->lock);
	bool settled = w.write || gc_segments_settled(fs);
	pthread_mutex_unlock(&fs->lock);
	if (logs_durable && settled)
		drop_segments(&w, cur); /* K2: after the checkpoint is durable */
	if (logs_durable && w.write &&
	    (ev_trim(fs->events, oldest) || clog_trim(fs->clog, oldest)))
		syslog(LOG_WARNING, "txdir: could not drop old entries of the event or commit log");
	if (w.fd >= 0)
		txd_os->close(w.fd);
	if (err && w.write)
		txd_os->unlink(wpath); /* a rewrite keeps the old file (or the new one) */
	pthread_mutex_lock(&fs->lock);
	if (!logs_durable) /* the next checkpoint tries them again */
		for (uint32_t k = 0; k < nrecs; k++)
			if (!array_grow((void **)&fs->rec_unsynced, &fs->rec_unsynced_cap,
					fs->rec_unsynced_n + 1, sizeof(*recs)))
				fs->rec_unsynced[fs->rec_unsynced_n++] = recs[k];
	free(recs);
	if (!err && w.write) {
		gc_ckpt_written(fs, moves, gen);
		if (lsn > fs->ckpt_lsn)
			fs->ckpt_lsn = lsn;
		fs->ckpt_count++;
	}
	rec_release(&w.b);
	free(w.out);
	free(w.segs);
	free(w.inos);
	free(path);
	free(tmp);
	return err;
}

void ckpt_snapshot_release(struct txd_fs *fs, uint64_t s)
{
	if (!fs->ckpt_running) {
		ns_snapshot_release(&fs->ns, s); /* start-up, close: nobody waits */
		return;
	}
	if (ns_snapshot_forget(&fs->ns, s)) {
		fs->sweep_due = true;
		pthread_cond_signal(&fs->ckpt_cv);
	}
}

void ckpt_sweep(struct txd_fs *fs)
{
	struct ckw w = {.fs = fs, .fd = -1};
	fs->sweep_due = false;
	ckw_walk(&w, 2);
	free(w.inos);
}

int ckpt_write(struct txd_fs *fs)
{
	if (pthread_mutex_trylock(&ckpt_serial)) {
		pthread_mutex_unlock(&fs->lock);
		pthread_mutex_lock(&ckpt_serial);
		pthread_mutex_lock(&fs->lock);
	}
	int err = ckpt_write_locked(fs);
	pthread_mutex_unlock(&ckpt_serial);
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
	if (ver < 1 || ver > CKPT_VERSION)
		return -TXD_EFORMAT; /* K5: not ours to read, nor to pass over */
	uint8_t *buf = NULL, *services = NULL, *prepared = NULL;
	size_t cap = 0, nservices = 0, nprepared = 0;
	bool blocks = false; /* sections come before the first block */
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
		bool section = m == SEC_MAGIC && ver >= 2 && !blocks;
		blocks = blocks || !section;
		if ((m != BLK_MAGIC && !section) || blen > (64u << 20) || (section && blen < 8))
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
		if (section) {
			uint32_t id;
			memcpy(&id, buf, 4);
			uint8_t **dst = id == SEC_SERVICES ? &services
					: id == SEC_PREPARED ? &prepared : NULL;
			if (!dst || *dst)
				break; /* -TXD_ECORRUPT: each known section once */
			if (!(*dst = malloc(blen - 8 + 1))) {
				err = -ENOMEM;
				break;
			}
			memcpy(*dst, buf + 8, blen - 8);
			*(id == SEC_SERVICES ? &nservices : &nprepared) = blen - 8;
		} else if ((err = ns_apply(&fs->ns, buf, blen, 0, 0, lsn))) {
			break;
		}
		off += 16 + (uint64_t)blen;
		nblocks++;
	}
	free(buf);
	if (err == -EIO)
		err = -TXD_ECORRUPT; /* os_pread_full: the file ends early (torn) */
	/* K5: the services get the section once the whole file checked out */
	if (!err && services && fs->svc)
		err = svc_ckpt_load(fs->svc, services, nservices);
	free(services);
	/* after the services: their replaying votes need the proposals */
	if (!err && prepared)
		err = dtc_load(fs, prepared, nprepared);
	free(prepared);
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

static int cmp_asc(const void *a, const void *b)
{
	return -cmp_desc(a, b);
}

int ckpt_list(struct txd_fs *fs, uint64_t **lsns, uint32_t *n)
{
	struct cklist l = {0};
	int err = txd_os->listdir(fs->store.ckpt_dir, list_ckpt, &l);
	if (err) {
		free(l.lsn);
		return err;
	}
	if (l.n)
		qsort(l.lsn, l.n, sizeof(*l.lsn), cmp_asc);
	*lsns = l.lsn;
	*n = l.n;
	return 0;
}

int ckpt_file_size(struct txd_fs *fs, uint64_t lsn, uint64_t *bytes)
{
	char *path = ckpt_path(fs, lsn);
	int fd = path ? txd_os->open(path, O_RDONLY | O_CLOEXEC, 0) : -ENOMEM;
	free(path);
	if (fd < 0)
		return fd;
	int err = txd_os->fstat_size(fd, bytes);
	txd_os->close(fd);
	return err;
}
