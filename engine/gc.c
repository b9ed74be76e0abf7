/*
 * gc.c — pack and WAL-segment garbage collection (contract and invariants
 * G1-G7 in gc.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "chunk.h"
#include "core.h"
#include "gc.h"
#include "os.h"
#include "space.h"
#include "txn.h"
#include "util.h"
#include "wal.h"

struct pending {
	uint32_t file;
	uint64_t need_gen; /* the first checkpoint begun after T0 (G4 b) */
	uint64_t size;
};

struct gc {
	bool busy;
	pthread_cond_t idle; /* busy went false (waits on fs->lock) */
	struct pending *pend;
	uint32_t npend, cappend;
	uint64_t moves, moves_ckpt; /* G5 */
	uint64_t ckpt_begun, ckpt_done; /* written checkpoints: begun, durable (G4) */
	uint64_t last_ns;               /* when the last run started (gc_due) */
	struct gc_stats st;
};

struct victim {
	uint32_t file;
	uint64_t size;
};

struct move {
	struct chunk *c;
	struct chunk_loc from, to;
};

struct run {
	struct txd_fs *fs;
	struct gc *g;
	struct victim *vic;
	uint32_t nvic, capvic;
	uint64_t vic_live; /* live bytes of the victims: what this run moves */
	uint64_t budget;   /* at most this many (GC_RUN_BYTES, or the disk's room) */
	struct move *mv;
	uint32_t nmv, capmv;
	uint64_t dead;
	uint32_t hold_left; /* step 3: chunks this hold of fs->lock may still visit */
	uint32_t walk_ord;  /* the version (ordinal, newest first) being walked */
	uint32_t pause_ord; /* where a walk stopped when hold_left ran out: */
	uint64_t pause_idx; /* version ordinal and chunk index */
};

static struct gc *gc_get(struct txd_fs *fs)
{
	if (!fs->gc && (fs->gc = calloc(1, sizeof(*fs->gc))))
		pthread_cond_init(&fs->gc->idle, NULL);
	return fs->gc;
}

static bool is_victim(const struct run *r, uint32_t file)
{
	for (uint32_t k = 0; k < r->nvic; k++)
		if (r->vic[k].file == file)
			return true;
	return false;
}

static bool is_pending(const struct gc *g, uint32_t file)
{
	for (uint32_t k = 0; k < g->npend; k++)
		if (g->pend[k].file == file)
			return true;
	return false;
}

static void file_path(struct txd_fs *fs, uint32_t file, char *buf, size_t n)
{
	if (file & CHUNK_FILE_WAL)
		snprintf(buf, n, "%s/seg-%08u", fs->store.wal_dir, file & ~CHUNK_FILE_WAL);
	else
		snprintf(buf, n, "%s/pack-%06u", fs->store.obj_dir, file);
}

static int file_size(struct txd_fs *fs, uint32_t file, uint64_t *size)
{
	char path[4096];
	file_path(fs, file, path, sizeof(path));
	int fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	int err = txd_os->fstat_size(fd, size);
	txd_os->close(fd);
	return err;
}

/* ---- step 1: deleting pending packs (G4) --------------------------------------- */
static void delete_due(struct txd_fs *fs, struct gc *g, struct pending *due, uint32_t n)
{
	bool any = false;
	for (uint32_t k = 0; k < n; k++) {
		struct chunk_usage u;
		if (!chunk_usage_get(due[k].file, &u) || u.chunks || u.pins)
			continue; /* cannot happen after T0 (G4); keep it if it does */
		char path[4096];
		file_path(fs, due[k].file, path, sizeof(path));
		chunkstore_forget_file(fs->cs, due[k].file);
		int err = txd_os->unlink(path);
		if (err && err != -ENOENT)
			continue; /* found again by a later run */
		any = true;
		pthread_mutex_lock(&fs->lock);
		g->st.bytes_reclaimed += due[k].size;
		g->st.files_deleted++;
		pthread_mutex_unlock(&fs->lock);
	}
	if (any)
		os_fsync_dir(fs->store.obj_dir); /* a pack that comes back is garbage again */
}

/* ---- step 2: victims (G2) ------------------------------------------------------ */
static int add_victim(struct run *r, uint32_t file, uint64_t size, uint64_t live)
{
	r->vic_live += live;
	if (array_grow((void **)&r->vic, &r->capvic, r->nvic + 1, sizeof(*r->vic)))
		return -ENOMEM;
	r->vic[r->nvic].file = file;
	r->vic[r->nvic++].size = size;
	return 0;
}

/* 1 if file is mostly dead (and this run has room to move its live
 * bytes: GC_RUN_BYTES, at least one victim per run); its dead bytes are
 * added to r->dead either way. */
static int consider(struct run *r, uint32_t file, uint64_t *size, uint64_t *live)
{
	struct chunk_usage u;
	if (!chunk_usage_get(file, &u))
		return -ENOMEM; /* G1: the table was lost */
	if (file_size(r->fs, file, size))
		return 0;
	*live = u.live_bytes;
	r->dead += *size > u.live_bytes ? *size - u.live_bytes : 0;
	return *size && u.live_bytes * 100 <= (uint64_t)GC_LIVE_PCT * *size &&
	       ((!r->nvic && r->budget == GC_RUN_BYTES) || r->vic_live + u.live_bytes <= r->budget);
}

static int scan_pack(const char *name, void *arg)
{
	struct run *r = arg;
	char *end;
	if (strncmp(name, "pack-", 5) || !name[5])
		return 0;
	unsigned long no = strtoul(name + 5, &end, 10);
	if (*end || no >= CHUNK_FILE_WAL || is_pending(r->g, (uint32_t)no))
		return 0;
	uint64_t size = 0, live = 0;
	int v = consider(r, (uint32_t)no, &size, &live);
	if (v <= 0)
		return v;
	if (no == chunkstore_current_pack(r->fs->cs)) {
		chunkstore_seal(r->fs->cs); /* G2 */
		file_size(r->fs, (uint32_t)no, &size); /* appended meanwhile */
	}
	return add_victim(r, (uint32_t)no, size, live);
}

static int pick_victims(struct run *r)
{
	struct txd_fs *fs = r->fs;
	int err = txd_os->listdir(fs->store.obj_dir, scan_pack, r);
	uint32_t *segs = NULL, n = 0, cur = wal_current_seg(fs->wal);
	if (err || (err = wal_list_segments(fs->wal, &segs, &n)))
		return err;
	for (uint32_t k = 0; k < n && !err && segs[k] < cur; k++) {
		struct chunk_usage u;
		uint32_t file = CHUNK_FILE_WAL | segs[k];
		/* a segment without live chunks is the checkpoint's to drop */
		if (!chunk_usage_get(file, &u) || !u.chunks)
			continue;
		uint64_t size = 0, live = 0;
		int v = consider(r, file, &size, &live);
		if (v < 0)
			err = v;
		else if (v > 0)
			err = add_victim(r, file, 0, live);
	}
	free(segs);
	return err;
}

/* ---- step 3: references of the chunks in victims ------------------------------- */
#define PAUSE 1 /* note_move: the hold's chunk budget is spent */

uint32_t gc_test_hold_chunks;

static int note_move(void *arg, uint64_t idx, struct chunk *c)
{
	struct run *r = arg;
	if (!r->hold_left) {
		r->pause_ord = r->walk_ord; /* not visited: the next hold starts here */
		r->pause_idx = idx;
		return PAUSE;
	}
	r->hold_left--;
	struct chunk_loc loc;
	chunk_get_loc(c, &loc);
	if (!is_victim(r, loc.file))
		return 0;
	if (array_grow((void **)&r->mv, &r->capmv, r->nmv + 1, sizeof(*r->mv)))
		return -ENOMEM;
	r->mv[r->nmv].c = chunk_ref(c);
	r->mv[r->nmv++].from = loc;
	return 0;
}

/* The chunks of the retained versions of in (distinct maps, newest
 * first), from version ordinal ord's chunk index from on; PAUSE with
 * r->pause_ord and r->pause_idx set when the hold's budget ran out. */
static int walk_inode(struct run *r, const struct inode *in, uint32_t ord, uint64_t from)
{
	const struct cmap *prev = NULL;
	uint32_t o = 0;
	int err = 0;
	for (const struct iver *v = in->head; v && !err; v = v->older) {
		if (!S_ISREG(v->mode) || !v->map || v->map == prev)
			continue;
		prev = v->map;
		if (o >= ord) {
			r->walk_ord = o;
			err = cmap_walk(v->map, o == ord ? from : 0, note_move, r);
		}
		o++;
	}
	return err;
}

/* Bucket k of the inode table, NULL past its end. */
static const struct inode *bucket(const struct txd_fs *fs, uint64_t k)
{
	return k < fs->ns.tabsize ? fs->ns.tab[k] : NULL;
}

/* Buckets of the inode table in holds of at most GC_BATCH inodes and
 * GC_HOLD_CHUNKS chunks (a file of millions of chunks is walked over
 * several holds). A doubling between holds moves an inode of bucket j to
 * j or j + old size, never below the cursor if it was not visited yet:
 * none is missed (one visited twice is noted twice: harmless). A walk
 * paused inside a file resumes, after the hold, at the version (its
 * ordinal, newest first) and chunk index where it stopped (a version made
 * meanwhile shifts the ordinals: some chunks are then walked twice, or not
 * at all), and goes on with the rest of its bucket if the file and the
 * table are still as they were, else with the next bucket. Every pause of
 * a file is further on in (ordinal, index) order, so the walk ends. A
 * chunk missed keeps its file named (G1), so it is only not reclaimed.
 * fs->lock held. */
static int collect(struct run *r)
{
	struct txd_fs *fs = r->fs;
	uint64_t k = 0, resume_ino = 0, resume_idx = 0, resume_tab = 0;
	uint32_t resume_ord = 0;
	int err = 0;
	while (k < fs->ns.tabsize && !err) {
		uint32_t units = GC_BATCH;
		const struct inode *next = bucket(fs, k);
		r->hold_left = gc_test_hold_chunks ? gc_test_hold_chunks : GC_HOLD_CHUNKS;
		if (resume_ino) {
			const struct inode *in = ns_inode(&fs->ns, resume_ino);
			bool same = in && fs->ns.tabsize == resume_tab;
			if (in && (err = walk_inode(r, in, resume_ord, resume_idx)) == PAUSE) {
				/* a whole hold's budget from where it resumed
				 * always gets further; never resume at or
				 * before it again, so the walk ends */
				if (r->pause_ord < resume_ord ||
				    (r->pause_ord == resume_ord && r->pause_idx <= resume_idx)) {
					r->pause_ord = resume_ord;
					r->pause_idx = resume_idx + 1;
				}
				goto pause;
			}
			resume_ino = 0;
			next = same ? in->hnext /* the rest of its bucket */ : bucket(fs, ++k);
		}
		for (; k < fs->ns.tabsize && units && !err; next = bucket(fs, ++k))
			for (const struct inode *in = next; in && !err; in = in->hnext) {
				if ((err = walk_inode(r, in, 0, 0)) == PAUSE) {
					resume_ino = in->ino;
					goto pause;
				}
				units -= units ? 1 : 0;
			}
		goto unlock;
	pause:
		err = 0;
		r->g->st.collect_pauses++;
		resume_ord = r->pause_ord;
		resume_idx = r->pause_idx;
		resume_tab = fs->ns.tabsize;
	unlock:
		pthread_mutex_unlock(&fs->lock);
		sched_yield();
		pthread_mutex_lock(&fs->lock);
	}
	return err;
}

/* ---- step 4: relocation (G3) ---------------------------------------------------- */
static int cmp_move(const void *a, const void *b)
{
	const struct move *x = a, *y = b;
	if (x->from.file != y->from.file)
		return x->from.file < y->from.file ? -1 : 1;
	return x->from.off < y->from.off ? -1 : x->from.off > y->from.off;
}

/* Moves [from, to) are copied: make them durable, then name them. */
static int publish(struct run *r, uint32_t from, uint32_t to)
{
	struct txd_fs *fs = r->fs;
	int err = chunkstore_sync(fs->cs);
	if (err)
		return err;
	uint64_t bytes = 0;
	pthread_mutex_lock(&fs->lock);
	for (uint32_t k = from; k < to; k++) {
		struct chunk_loc now;
		if (!r->mv[k].to.len)
			continue; /* not copied */
		chunk_get_loc(r->mv[k].c, &now);
		if (now.file != r->mv[k].from.file || now.off != r->mv[k].from.off)
			continue; /* moved by someone else meanwhile */
		chunk_set_loc(r->mv[k].c, &r->mv[k].to);
		bytes += now.len;
	}
	if (bytes)
		r->g->moves++; /* G5: a checkpoint is due only if a location moved */
	r->g->st.bytes_moved += bytes;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* fs->lock not held. */
static int relocate(struct run *r)
{
	struct txd_fs *fs = r->fs;
	uint8_t *buf = malloc(TXD_CHUNK_SIZE);
	if (!buf)
		return -ENOMEM;
	qsort(r->mv, r->nmv, sizeof(*r->mv), cmp_move);
	uint32_t start = 0;
	uint64_t batch = 0;
	int err = 0;
	for (uint32_t k = 0; k < r->nmv && !err; k++) {
		struct move *m = &r->mv[k];
		memset(&m->to, 0, sizeof(m->to));
		if (k && m->c == r->mv[k - 1].c)
			continue; /* noted twice */
		if (chunkstore_read(fs->cs, &m->from, buf))
			continue; /* G3: a chunk that fails stays (and keeps its file) */
		err = chunkstore_append_flags(fs->cs, buf, m->from.len, &m->to, CHUNK_APPEND_FREES);
		if ((err == -ENOSPC || err == -EDQUOT) && !space_release(fs->space))
			err = chunkstore_append_flags(fs->cs, buf, m->from.len, &m->to,
						      CHUNK_APPEND_FREES); /* G8: the reserve */
		if (err)
			break;
		if (m->to.csum != m->from.csum) {
			memset(&m->to, 0, sizeof(m->to));
			continue;
		}
		batch += m->from.len;
		if (batch >= GC_MOVE_BYTES) {
			err = publish(r, start, k + 1);
			start = k + 1;
			batch = 0;
			sched_yield(); /* throttle: let commits and readers in */
		}
	}
	if (!err && start < r->nmv)
		err = publish(r, start, r->nmv);
	free(buf);
	return err;
}

/* ---- step 5: T0 ---------------------------------------------------------------- */
static bool txns_hold_locations(struct txd_fs *fs)
{
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->state == TXN_ACTIVE || t->state == TXN_PREPARED)
			return true;
	return false;
}

/* fs->lock held. */
static void mark_pending(struct run *r)
{
	struct txd_fs *fs = r->fs;
	struct gc *g = r->g;
	if (txns_hold_locations(fs))
		return; /* G4 (a): a later run tries again */
	uint32_t cur = chunkstore_current_pack(fs->cs);
	for (uint32_t k = 0; k < r->nvic; k++) {
		struct chunk_usage u;
		uint32_t f = r->vic[k].file;
		if ((f & CHUNK_FILE_WAL) || f == cur || !chunk_usage_get(f, &u) || u.chunks ||
		    u.pins || chunk_usage_preps_upto(f))
			continue;
		if (array_grow((void **)&g->pend, &g->cappend, g->npend + 1, sizeof(*g->pend)))
			return;
		g->pend[g->npend++] = (struct pending){.file = f, .need_gen = g->ckpt_begun + 1,
						       .size = r->vic[k].size};
	}
}

int gc_run(struct txd_fs *fs)
{
	struct gc *g = gc_get(fs);
	if (!g)
		return -ENOMEM;
	while (g->busy) /* the background run (or a caller's): after it */
		pthread_cond_wait(&g->idle, &fs->lock);
	if (fs->failed)
		return -EIO;
	g->busy = true;
	g->st.runs++;
	g->last_ns = txd_os->now_monotonic_ns();
	/* step 1: the packs whose checkpoint came (G4 b) */
	struct pending *due = NULL;
	uint32_t ndue = 0, capdue = 0;
	for (uint32_t k = 0; k < g->npend;) {
		if (g->pend[k].need_gen <= g->ckpt_done &&
		    !array_grow((void **)&due, &capdue, ndue + 1, sizeof(*due))) {
			due[ndue++] = g->pend[k];
			g->pend[k] = g->pend[--g->npend];
		} else {
			k++;
		}
	}
	struct run r = {.fs = fs, .g = g, .budget = GC_RUN_BYTES};
	pthread_mutex_unlock(&fs->lock);
	delete_due(fs, g, due, ndue);
	free(due);
	/* G8: a run moves no more than the disk has room for (with the
	 * reserve, space.h, which relocation may use): victims are deleted
	 * only after a checkpoint, so their space comes back a run later */
	struct statvfs sv;
	uint64_t held = 0, reserve = 0;
	space_get(fs->space, &reserve, &held);
	if (!txd_os->statvfs(fs->store.obj_dir, &sv)) {
		uint64_t room = (uint64_t)sv.f_bavail * sv.f_frsize + held;
		room = room > GC_ROOM_SLACK ? room - GC_ROOM_SLACK : 0;
		if (room < r.budget)
			r.budget = room;
	}
	/* step 2 */
	int err = pick_victims(&r);
	pthread_mutex_lock(&fs->lock);
	g->st.dead_bytes = r.dead;
	if (err || !r.nvic)
		goto out;
	/* step 3 */
	if ((err = collect(&r)))
		goto out;
	/* step 4 */
	pthread_mutex_unlock(&fs->lock);
	/* a sealed pack's bytes are durable before it can be deleted */
	err = r.nmv ? relocate(&r) : chunkstore_sync(fs->cs);
	pthread_mutex_lock(&fs->lock);
	/* step 5 */
	if (!err)
		mark_pending(&r);
out:
	g->st.pending = g->npend;
	g->busy = false;
	pthread_cond_broadcast(&g->idle);
	pthread_mutex_unlock(&fs->lock);
	for (uint32_t k = 0; k < r.nmv; k++)
		chunk_unref(r.mv[k].c);
	pthread_mutex_lock(&fs->lock);
	free(r.mv);
	free(r.vic);
	return err;
}

void gc_get_stats(struct txd_fs *fs, struct gc_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (fs->gc)
		*out = fs->gc->st;
}

bool gc_due(struct txd_fs *fs)
{
	uint64_t now = txd_os->now_monotonic_ns();
	if (!fs->gc && gc_get(fs))
		fs->gc->last_ns = now; /* the first run GC_EVERY_S after the open */
	return fs->gc && now - fs->gc->last_ns >= GC_EVERY_S * 1000000000ull;
}

bool gc_ckpt_forced(struct txd_fs *fs)
{
	struct gc *g = fs->gc;
	if (g && g->moves != g->moves_ckpt)
		return true; /* G5: relocated WAL chunks free their segments */
	for (uint32_t k = 0; g && k < g->npend; k++)
		if (g->pend[k].need_gen > g->ckpt_done)
			return true;
	return false;
}

uint64_t gc_ckpt_begin(struct txd_fs *fs)
{
	return fs->gc ? ++fs->gc->ckpt_begun : 0;
}

uint64_t gc_moves(struct txd_fs *fs)
{
	return fs->gc ? fs->gc->moves : 0;
}

void gc_ckpt_written(struct txd_fs *fs, uint64_t moves, uint64_t gen)
{
	if (!fs->gc)
		return;
	if (moves > fs->gc->moves_ckpt)
		fs->gc->moves_ckpt = moves;
	if (gen > fs->gc->ckpt_done)
		fs->gc->ckpt_done = gen;
}

bool gc_segments_settled(struct txd_fs *fs)
{
	return !fs->gc || fs->gc->moves == fs->gc->moves_ckpt;
}

void gc_free(struct txd_fs *fs)
{
	if (!fs->gc)
		return;
	free(fs->gc->pend);
	pthread_cond_destroy(&fs->gc->idle);
	free(fs->gc);
	fs->gc = NULL;
}
