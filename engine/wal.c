/*
 * wal.c — the write-ahead log (format and invariants W1–W8 in wal.h).
 *
 * State of a struct wal and the function that moves it:
 *
 *   OPENED  --wal_replay-->  APPENDING  --wal_close-->  closed
 *      |                        |
 *      +--(write/fsync error)---+-->  FAILED (sticky: -EIO for append/sync)
 *
 * In OPENED there is no append segment (fd == -1). wal_replay reads every
 * segment, fdatasyncs the last one (what replay read from the page cache must
 * be on disk before a newer segment's prev_end_lsn vouches for it), then
 * creates a fresh segment (seg_create: tmp file + header + fsync + rename +
 * fsync dir, so a named segment always has a complete header — W4).
 *
 * Group commit (W5). At most one fdatasync is in flight (w->syncing). Its
 * leader snapshots last_lsn, drops the lock, fdatasyncs, and then declares
 * everything up to the snapshot durable: every record appended before the
 * snapshot has already been pwritten to the same descriptor (W6), so one
 * fdatasync covers the whole batch. The leader is the sync thread (interval
 * syncs, async waiters), or a wal_sync caller, or — with opts.will_block —
 * a wal_sync_async caller that found no sync in flight: a lone fsync then
 * costs one fdatasync on its own thread, with no hand-off to the sync
 * thread and back. Whoever arrives while a sync runs waits for it; the
 * leader wakes the sync thread when waiters are left over for the next
 * batch.
 *
 * Rotation (W4) fsyncs nothing: it runs inside wal_append, whose caller may
 * hold fs->lock. The new segment gets a header saying "pending" (renamed
 * into place, no fsync), the old one joins w->retired, and the sync thread
 * is woken. Every sync leader first settles what rotations left: it fsyncs
 * the retired segments in order (closing them after), rewrites each
 * pending header as settled only once the segments before it are durable,
 * fsyncs the directory, then fdatasyncs the current segment — and only
 * then reports its target durable. A failure anywhere fails the log, so no
 * lsn past a segment that is not durable is ever reported durable.
 *
 * Pre-allocation (W7). The sync thread keeps the current segment written
 * (zeros) from the append point to ZERO_AHEAD beyond it, ZERO_LOW before
 * that runs out, under w->lock (the zeros must never land on a record), and
 * fdatasyncs once, so later fdatasyncs change no size or extent. ready_to is
 * how far the file is written. Dropped full-size segments become spares
 * ("spare-%08u", their old number); seg_start takes one before creating a
 * file, rewriting its header with a fresh salt.
 *
 * Lock order: w->lock is a leaf; callbacks (wal_sync_async) run on the sync
 * thread with it released.
 */
#define XXH_STATIC_LINKING_ONLY
#include "wal.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "os.h"
#include "txdir.h"
#include "util.h"

#define SEG_MAGIC 0x47534c4157445854ull /* "TXDWALSG" little-endian */
#define REC_MAGIC 0x52575854u           /* "TXWR" little-endian */
#define SEG_VERSION 1
#define DEFAULT_SEG_SIZE (64ull << 20)
#define REPLAY_BLOCK (4u << 20)
#define WAL_ABUF_KEEP (256u << 10) /* append buffer kept between appends */
#define ZERO_AHEAD (2u << 20) /* W7: written this far past the append point */
#define ZERO_LOW (1u << 20)   /* refill when less than this is left */
#define ZERO_BUF (256u << 10)
#define ALLOC_STEP (1u << 20) /* W8: fallocate this much ahead at a time */

static const uint8_t zeros[ZERO_BUF];

struct seginfo {
	uint32_t seg;
	uint64_t size;
	uint64_t first_lsn; /* from its header (0: not read yet), for wal_segments */
};

struct seg_hdr {
	uint32_t seg;
	uint64_t first_lsn, prev_end_lsn, salt;
	uint64_t boot; /* W9: the boot it was created in (txd_os->boot_id); 0 unknown */
	bool pending; /* W4: the previous segment may not be durable yet */
};

struct seg_open { /* a segment rotated out, not yet fsynced */
	int fd;
	struct seg_hdr h;
	bool pending; /* its header still says pending */
};

struct async_wait {
	uint64_t lsn;
	void (*cb)(void *arg, int err);
	void *arg;
};

struct wal {
	char *dir;
	uint64_t seg_size;
	uint64_t interval_ns;

	pthread_mutex_t lock;
	pthread_cond_t durable_cv; /* durable_lsn advanced, or failed */
	pthread_cond_t work_cv;    /* something for the sync thread */
	pthread_t thread;
	bool stopping, syncing, failed, replayed;
	bool zero_ahead, zero_wanted; /* W7; zero_wanted: the thread was told */
	bool same_boot;               /* W9: opts.same_boot */
	bool space_short; /* W8: the disk refused space; no zero-ahead until
	                     an allocation succeeds again */
	void (*will_block)(void *arg);
	void *will_block_arg;

	/* Append state (lock). fd == -1 until wal_replay made a segment. */
	int fd;
	uint32_t seg;
	uint64_t seg_off;
	uint64_t salt;
	uint64_t last_lsn, durable_lsn, want_lsn;
	uint64_t dirty_since_ns; /* monotonic time of the oldest unsynced record */
	uint64_t ready_to;       /* bytes of the segment file already written */
	uint32_t spares[WAL_SPARES]; /* recycled segment files, by old number */
	uint32_t nspares;

	struct seginfo *segs; /* on disk, oldest first; the last is current */
	uint32_t nsegs, capsegs;
	struct async_wait *waits;
	uint32_t nwaits, capwaits;
	uint8_t *abuf;
	size_t abuf_cap;

	/* W4: rotation without fsync. Segments rotated out and not yet fsynced
	 * (in order), and whether the current one's header still says
	 * pending; the next sync (sync_once) settles both before it reports
	 * any lsn durable. */
	struct seg_open *retired;
	uint32_t nretired, capretired;
	struct seg_hdr cur_hdr;
	bool cur_pending;

	uint64_t st_records, st_bytes, st_syncs, st_synced_records;
};

/* ---- little helpers ---------------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint16_t get_le16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static uint64_t rec_total(uint32_t len)
{
	return ((uint64_t)WAL_REC_HDR_SIZE + len + 7) & ~7ull;
}

/* The condvars run on CLOCK_MONOTONIC; a test's fake clock (txd_os) cannot
 * move them, so timeouts read the real clock on purpose. */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t random_salt(void)
{
	uint64_t s = 0;

	if (getrandom(&s, sizeof(s), 0) != sizeof(s))
		s = txd_os->now_realtime_ns() ^ ((uint64_t)getpid() << 32);
	return s;
}

static void seg_path(const struct wal *w, uint32_t seg, const char *suffix, char *buf,
		     size_t n)
{
	snprintf(buf, n, "%s/seg-%08u%s", w->dir, seg, suffix);
}

static void spare_path(const struct wal *w, uint32_t spare, char *buf, size_t n)
{
	snprintf(buf, n, "%s/spare-%08u", w->dir, spare);
}

static uint64_t rec_checksum(const uint8_t *hdr, const void *payload, uint32_t len,
			     uint64_t salt)
{
	XXH64_state_t st;

	XXH64_reset(&st, salt);
	XXH64_update(&st, hdr, 24);
	XXH64_update(&st, payload, len);
	return XXH64_digest(&st);
}

/* Lock held. Wakes everyone who must learn about the failure. */
static void set_failed(struct wal *w)
{
	w->failed = true;
	pthread_cond_broadcast(&w->durable_cv);
	pthread_cond_signal(&w->work_cv);
}

/* Lock held. */
static void advance_durable(struct wal *w, uint64_t lsn)
{
	if (lsn <= w->durable_lsn)
		return;
	w->st_synced_records += lsn - w->durable_lsn;
	w->st_syncs++;
	w->durable_lsn = lsn;
	pthread_cond_broadcast(&w->durable_cv);
}

/* ---- segment files ----------------------------------------------------- */

#define SEG_FLAG_PENDING 1 /* header byte 40 (W4) */

static void seg_hdr_encode(const struct seg_hdr *h, uint8_t *b)
{
	memset(b, 0, WAL_SEG_HDR_SIZE);
	put_le64(b + 0, SEG_MAGIC);
	put_le32(b + 8, SEG_VERSION);
	put_le32(b + 12, h->seg);
	put_le64(b + 16, h->first_lsn);
	put_le64(b + 24, h->prev_end_lsn);
	put_le64(b + 32, h->salt);
	b[40] = h->pending ? SEG_FLAG_PENDING : 0;
	put_le64(b + 41, h->boot);
	put_le64(b + 56, XXH64(b, 56, 0));
}

static bool seg_hdr_decode(const uint8_t *b, uint32_t seg, struct seg_hdr *h)
{
	if (get_le64(b) != SEG_MAGIC || get_le32(b + 8) != SEG_VERSION ||
	    get_le64(b + 56) != XXH64(b, 56, 0) || get_le32(b + 12) != seg)
		return false;
	h->seg = seg;
	h->first_lsn = get_le64(b + 16);
	h->prev_end_lsn = get_le64(b + 24);
	h->salt = get_le64(b + 32);
	h->pending = b[40] & SEG_FLAG_PENDING;
	h->boot = get_le64(b + 41);
	return h->first_lsn == h->prev_end_lsn + 1;
}

static int seginfo_add(struct wal *w, uint32_t seg, uint64_t size)
{
	int r = array_grow((void **)&w->segs, &w->capsegs, w->nsegs + 1, sizeof(*w->segs));

	if (r)
		return r;
	w->segs[w->nsegs].seg = seg;
	w->segs[w->nsegs].size = size;
	w->segs[w->nsegs].first_lsn = 0;
	w->nsegs++;
	return 0;
}

/*
 * Create segment seg durably (W4): the header goes to a temporary name,
 * is fsynced, renamed into place and the directory fsynced, so a segment that
 * has a name has a complete header. Returns the open descriptor.
 */
static int seg_create(struct wal *w, const struct seg_hdr *h, bool sync, int *fd_out)
{
	char tmp[4096], dst[4096];
	uint8_t b[WAL_SEG_HDR_SIZE];
	int fd, r;

	seg_path(w, h->seg, ".tmp", tmp, sizeof(tmp));
	seg_path(w, h->seg, "", dst, sizeof(dst));
	seg_hdr_encode(h, b);
	fd = txd_os->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	r = os_pwrite_full(fd, b, sizeof(b), 0);
	if (!r && sync)
		r = txd_os->fsync(fd);
	if (!r)
		r = txd_os->rename(tmp, dst);
	if (r)
		goto out_fail;
	r = sync ? os_fsync_dir(w->dir) : 0;
	if (r)
		goto out_fail;
	*fd_out = fd;
	return 0;

out_fail:
	txd_os->close(fd);
	txd_os->unlink(tmp);
	return r;
}

/*
 * Lock held. Make the last spare segment h->seg (W7): its new header (fresh
 * salt) is written over the old one and fsynced before the rename, and the
 * directory fsynced after it, so W4 holds as for seg_create. 1 when the
 * spare cannot be opened (it is forgotten; the caller creates a file).
 */
static int seg_recycle(struct wal *w, const struct seg_hdr *h, bool sync, int *fd_out,
		       uint64_t *size)
{
	char src[4096], dst[4096];
	uint8_t b[WAL_SEG_HDR_SIZE];
	int fd, r;

	spare_path(w, w->spares[--w->nspares], src, sizeof(src));
	seg_path(w, h->seg, "", dst, sizeof(dst));
	fd = txd_os->open(src, O_RDWR, 0);
	if (fd < 0) {
		txd_os->unlink(src);
		return 1;
	}
	seg_hdr_encode(h, b);
	r = txd_os->fstat_size(fd, size);
	if (!r)
		r = os_pwrite_full(fd, b, sizeof(b), 0);
	if (!r && sync)
		r = txd_os->fsync(fd);
	if (!r)
		r = txd_os->rename(src, dst);
	if (!r && sync)
		r = os_fsync_dir(w->dir);
	if (r) {
		txd_os->close(fd);
		return r;
	}
	*fd_out = fd;
	return 0;
}

/* Lock held. Make a new segment the append target: a spare if there is one
 * (already written to its full size), else a new file. pending (a
 * rotation): nothing is fsynced here, and the header says pending until
 * the next sync settles it (W4); else (opening) the header and the
 * directory entry are durable on return. */
static int seg_start(struct wal *w, uint32_t seg, bool pending)
{
	struct seg_hdr h = {
		.seg = seg,
		.first_lsn = w->last_lsn + 1,
		.prev_end_lsn = w->last_lsn,
		.salt = random_salt(),
		.boot = txd_os->boot_id ? txd_os->boot_id() : 0,
		.pending = pending,
	};
	uint64_t size = WAL_SEG_HDR_SIZE;
	int fd, r = 1;

	r = array_grow((void **)&w->segs, &w->capsegs, w->nsegs + 1, sizeof(*w->segs));
	if (r)
		return r;
	r = 1;
	while (r == 1 && w->nspares)
		r = seg_recycle(w, &h, !pending, &fd, &size);
	if (r == 1)
		r = seg_create(w, &h, !pending, &fd);
	if (r)
		return r;
	w->fd = fd;
	w->seg = seg;
	w->seg_off = WAL_SEG_HDR_SIZE;
	w->ready_to = size;
	w->salt = h.salt;
	w->cur_hdr = h;
	w->cur_pending = pending;
	w->zero_wanted = false;
	pthread_cond_signal(&w->work_cv); /* W7: zeros ahead of the new segment */
	r = seginfo_add(w, seg, WAL_SEG_HDR_SIZE);
	if (!r)
		w->segs[w->nsegs - 1].first_lsn = h.first_lsn;
	return r;
}

/* Lock held. W4: no fsync here (the caller may hold its own locks, up to
 * fs->lock): the old segment joins w->retired, the new one starts with a
 * pending header, and the sync thread is told to settle them. */
static int rotate(struct wal *w)
{
	struct seg_open old = { .fd = w->fd, .h = w->cur_hdr, .pending = w->cur_pending };
	int r;

	r = array_grow((void **)&w->retired, &w->capretired, w->nretired + 1,
		       sizeof(*w->retired));
	if (r)
		return r;
	r = seg_start(w, w->seg + 1, true);
	if (r)
		return r;
	w->retired[w->nretired++] = old;
	pthread_cond_signal(&w->work_cv);
	return 0;
}

/* Rewrite a pending segment header as settled (W4). */
static int settle_header(int fd, const struct seg_hdr *h)
{
	struct seg_hdr s = *h;
	uint8_t b[WAL_SEG_HDR_SIZE];

	s.pending = false;
	seg_hdr_encode(&s, b);
	return os_pwrite_full(fd, b, sizeof(b), 0);
}

/* ---- the sync thread ------------------------------------------------------ */

/* Lock held; released while callbacks run. */
static void deliver_waits(struct wal *w)
{
	struct async_wait *ready;
	uint32_t i, n = 0, keep = 0;
	int err = w->failed ? -EIO : 0;

	if (!w->nwaits)
		return;
	ready = malloc(sizeof(*ready) * w->nwaits);
	if (!ready)
		return; /* retried on the next wake-up */
	for (i = 0; i < w->nwaits; i++) {
		if (w->failed || w->waits[i].lsn <= w->durable_lsn)
			ready[n++] = w->waits[i];
		else
			w->waits[keep++] = w->waits[i];
	}
	w->nwaits = keep;
	if (n) {
		pthread_mutex_unlock(&w->lock);
		for (i = 0; i < n; i++)
			ready[i].cb(ready[i].arg, err);
		pthread_mutex_lock(&w->lock);
	}
	free(ready);
}

static bool sync_needed(const struct wal *w, uint64_t now)
{
	if (w->failed || w->syncing || w->fd < 0)
		return false;
	/* W4: rotated segments are settled by the next sync; without interval
	 * syncs (durability none) the thread does it, so descriptors of
	 * rotated segments do not pile up */
	if (w->nretired && !w->interval_ns)
		return true;
	if (w->last_lsn <= w->durable_lsn)
		return false;
	if (w->want_lsn > w->durable_lsn || w->nwaits)
		return true;
	return w->interval_ns && now >= w->dirty_since_ns + w->interval_ns;
}

/* Lock held, no sync in flight: this thread leads the next one. The lock is
 * released during the fdatasync so appends continue (they form the next
 * batch); hook: call opts.will_block first (a caller's thread, not the sync
 * thread). */
static void sync_once(struct wal *w, bool hook)
{
	uint64_t target = w->last_lsn;
	int fd = w->fd, r = 0;
	uint32_t i, nret = w->nretired;
	struct seg_open *ret = w->retired;
	struct seg_hdr cur = w->cur_hdr;
	bool settle_cur = w->cur_pending;

	/* W4: the segments rotated out are fsynced in order, each pending
	 * header settled only after everything before it is durable, then
	 * the directory (their names) — all before this sync reports any lsn
	 * durable. They are this leader's alone from here. */
	w->retired = NULL;
	w->nretired = w->capretired = 0;
	w->cur_pending = false;
	w->syncing = true;
	pthread_mutex_unlock(&w->lock);
	if (hook && w->will_block)
		w->will_block(w->will_block_arg);
	for (i = 0; i < nret && !r; i++) {
		if (ret[i].pending)
			r = settle_header(ret[i].fd, &ret[i].h);
		if (!r)
			r = txd_os->fsync(ret[i].fd);
	}
	if (!r && settle_cur)
		r = settle_header(fd, &cur);
	if (!r && (nret || settle_cur))
		r = os_fsync_dir(w->dir);
	if (!r)
		r = txd_os->fdatasync(fd);
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < nret; i++)
		txd_os->close(ret[i].fd);
	free(ret);
	w->syncing = false;
	if (r) {
		set_failed(w);
		return;
	}
	advance_durable(w, target);
	if (w->last_lsn > w->durable_lsn)
		w->dirty_since_ns = mono_ns();
	/* waiters that came during this sync: the sync thread serves them */
	if (w->nwaits || w->want_lsn > w->durable_lsn)
		pthread_cond_signal(&w->work_cv);
}

/* W7: the append point is within ZERO_LOW of where the file is written. */
static bool zero_needed(const struct wal *w)
{
	return w->zero_ahead && !w->failed && !w->space_short && w->fd >= 0 &&
	       w->ready_to < w->seg_size &&
	       w->ready_to < w->seg_off + ZERO_LOW;
}

/* Lock held (appends wait: zeros must never land on a record). Write zeros
 * from the append point (or where the file is written, if beyond) to
 * ZERO_AHEAD past it. A failure only ends pre-allocation (a full disk
 * pauses it until an allocation succeeds again): appends still allocate
 * what they need themselves (W8). */
static void zero_fill(struct wal *w)
{
	uint64_t off = w->ready_to > w->seg_off ? w->ready_to : w->seg_off;
	uint64_t end = w->seg_off + ZERO_AHEAD;

	w->zero_wanted = false;
	if (end > w->seg_size)
		end = w->seg_size;
	while (off < end) {
		size_t n = end - off < ZERO_BUF ? (size_t)(end - off) : ZERO_BUF;

		int r = os_pwrite_full(w->fd, zeros, n, (off_t)off);

		if (r) {
			/* a full disk only pauses pre-allocation (W8) */
			if (r == -ENOSPC || r == -EDQUOT)
				w->space_short = true;
			else
				w->zero_ahead = false;
			return;
		}
		off += n;
		w->ready_to = off;
		w->segs[w->nsegs - 1].size = off;
	}
}

static void wait_for_work(struct wal *w)
{
	struct timespec ts;
	uint64_t due;

	if (!w->interval_ns || w->failed) {
		pthread_cond_wait(&w->work_cv, &w->lock);
		return;
	}
	/* Clean: look again one interval from now. A record appended
	 * meanwhile is still synced one interval after its append: the tick
	 * comes no later than that, and from it the wait is until
	 * dirty_since + interval. */
	due = (w->last_lsn > w->durable_lsn ? w->dirty_since_ns : mono_ns()) + w->interval_ns;
	ts.tv_sec = (time_t)(due / 1000000000u);
	ts.tv_nsec = (long)(due % 1000000000u);
	pthread_cond_timedwait(&w->work_cv, &w->lock, &ts);
}

static void *sync_main(void *arg)
{
	struct wal *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		deliver_waits(w);
		if (sync_needed(w, mono_ns())) {
			/* zeros due too: into this sync, not a second one */
			if (zero_needed(w) && !w->stopping)
				zero_fill(w);
			sync_once(w, false);
			continue;
		}
		if (zero_needed(w) && !w->stopping) {
			zero_fill(w);
			/* one journal commit for the new extents, now */
			if (!w->syncing)
				sync_once(w, false);
			continue;
		}
		if (w->stopping)
			break;
		wait_for_work(w);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* ---- open / close ------------------------------------------------------------ */

static int parse_seg_name(const char *name, uint32_t *seg)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "seg-", 4) || strlen(name) != 12)
		return -1;
	v = strtoul(name + 4, &end, 10);
	if (*end || v > UINT32_MAX)
		return -1;
	*seg = (uint32_t)v;
	return 0;
}

static int parse_spare_name(const char *name, uint32_t *spare)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "spare-", 6) || strlen(name) != 14)
		return -1;
	v = strtoul(name + 6, &end, 10);
	if (*end || v > UINT32_MAX)
		return -1;
	*spare = (uint32_t)v;
	return 0;
}

static int list_cb(const char *name, void *arg)
{
	struct wal *w = arg;
	uint32_t seg;

	if (!parse_spare_name(name, &seg)) {
		if (w->nspares < WAL_SPARES)
			w->spares[w->nspares++] = seg;
		return 0;
	}
	if (parse_seg_name(name, &seg))
		return 0;
	return seginfo_add(w, seg, 0);
}

static int cmp_seginfo(const void *a, const void *b)
{
	const struct seginfo *x = a, *y = b;

	return x->seg < y->seg ? -1 : x->seg > y->seg;
}

static int scan_segments(struct wal *w)
{
	int r;

	w->nsegs = 0;
	w->nspares = 0;
	r = txd_os->listdir(w->dir, list_cb, w);
	if (r)
		return r;
	if (w->nsegs)
		qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seginfo);
	return 0;
}

static int init_sync(struct wal *w)
{
	pthread_condattr_t ca;
	int r;

	r = pthread_mutex_init(&w->lock, NULL);
	if (r)
		return -r;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->durable_cv, NULL);
	pthread_cond_init(&w->work_cv, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&w->thread, NULL, sync_main, w);
	if (r) {
		pthread_cond_destroy(&w->durable_cv);
		pthread_cond_destroy(&w->work_cv);
		pthread_mutex_destroy(&w->lock);
		return -r;
	}
	return 0;
}

int wal_open(const char *dir, const struct wal_opts *opts, struct wal **out)
{
	struct wal *w;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->dir = strdup(dir);
	if (!w->dir) {
		r = -ENOMEM;
		goto out_free;
	}
	w->seg_size = opts && opts->seg_size ? opts->seg_size : DEFAULT_SEG_SIZE;
	w->interval_ns = opts ? (uint64_t)opts->sync_interval_ms * 1000000u : 0;
	w->zero_ahead = opts && (opts->zero_ahead || opts->sync_interval_ms);
	w->same_boot = opts && opts->same_boot;
	w->will_block = opts ? opts->will_block : NULL;
	w->will_block_arg = opts ? opts->will_block_arg : NULL;
	r = txd_os->mkdir(dir, 0755);
	if (r && r != -EEXIST)
		goto out_free;
	r = scan_segments(w);
	if (r)
		goto out_free;
	r = init_sync(w);
	if (r)
		goto out_free;
	*out = w;
	return 0;

out_free:
	free(w->segs);
	free(w->dir);
	free(w);
	return r;
}

void wal_close(struct wal *w)
{
	uint32_t i;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	if (w->interval_ns)
		w->want_lsn = w->last_lsn; /* the final sync */
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);

	/* Waiters left now can never be satisfied (durability none, or the
	 * sync failed): tell them. */
	pthread_mutex_lock(&w->lock);
	w->failed = w->failed || w->nwaits;
	deliver_waits(w);
	pthread_mutex_unlock(&w->lock);
	/* W7: a clean close leaves no zeros behind the last record (they are
	 * not records; a crash leaves them, and replay ends at them). */
	if (w->fd >= 0 && !w->failed && w->ready_to > w->seg_off)
		txd_os->ftruncate(w->fd, (off_t)w->seg_off);
	if (w->fd >= 0)
		txd_os->close(w->fd);
	for (i = 0; i < w->nretired; i++)
		txd_os->close(w->retired[i].fd);
	free(w->retired);
	pthread_cond_destroy(&w->durable_cv);
	pthread_cond_destroy(&w->work_cv);
	pthread_mutex_destroy(&w->lock);
	free(w->waits);
	free(w->segs);
	free(w->abuf);
	free(w->dir);
	free(w);
}

/* ---- replay ---------------------------------------------------------------------- */

/* Sequential reader over one segment: large reads into a sliding window, so
 * replay costs one syscall per REPLAY_BLOCK, not one per record. */
struct seg_reader {
	int fd;
	uint64_t fsize;
	uint8_t *buf;
	size_t cap;
	uint64_t buf_off; /* file offset of buf[0] */
	size_t len;       /* valid bytes in buf */
};

/* Point *p at n bytes at file offset off. 1 if they are not all in the
 * file (a torn tail), negative errno on I/O error. */
static int reader_get(struct seg_reader *r, uint64_t off, size_t n, const uint8_t **p)
{
	size_t keep = 0, want;
	int rc;

	if (off + n > r->fsize)
		return 1;
	if (off >= r->buf_off && off + n <= r->buf_off + r->len) {
		*p = r->buf + (off - r->buf_off);
		return 0;
	}
	if (off >= r->buf_off && off < r->buf_off + r->len) {
		keep = r->buf_off + r->len - off;
		memmove(r->buf, r->buf + (off - r->buf_off), keep);
	}
	want = n > REPLAY_BLOCK ? n : REPLAY_BLOCK;
	if (want > r->fsize - off)
		want = r->fsize - off;
	if (want > r->cap) {
		uint8_t *nb = realloc(r->buf, want);

		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap = want;
	}
	r->buf_off = off;
	r->len = keep;
	rc = os_pread_full(r->fd, r->buf + keep, want - keep, (off_t)(off + keep));
	if (rc)
		return rc;
	r->len = want;
	*p = r->buf;
	return 0;
}

struct replay_ctx {
	struct wal *w;
	uint64_t after_lsn;
	wal_replay_fn fn;
	void *arg;
	uint64_t last;    /* last valid lsn seen */
	struct seg_hdr *hdrs;
	int fn_ret;       /* fn's non-zero return, which stops the replay */
};

/* 0 = a valid record was delivered, 1 = the record at off is not valid
 * (the segment's log ends here), 2 = fn asked to stop (c->fn_ret),
 * < 0 = I/O error. */
static int replay_record(struct replay_ctx *c, struct seg_reader *rd, const struct seg_hdr *h,
			 uint64_t off, uint64_t *next)
{
	const uint8_t *p;
	struct wal_pos pos;
	uint32_t len;
	int r;

	r = reader_get(rd, off, WAL_REC_HDR_SIZE, &p);
	if (r)
		return r;
	len = get_le32(p + 4);
	if (get_le32(p) != REC_MAGIC || len > WAL_MAX_RECORD || get_le64(p + 8) != c->last + 1)
		return 1;
	r = reader_get(rd, off, (size_t)rec_total(len), &p);
	if (r)
		return r;
	/* A checkpointed record is only walked over: the checkpoint holds its
	 * effect, and any chunk bytes in it are verified when they are read. */
	if (c->last >= c->after_lsn &&
	    rec_checksum(p, p + WAL_REC_HDR_SIZE, len, h->salt) != get_le64(p + 24))
		return 1;
	c->last++;
	*next = off + rec_total(len);
	if (c->last <= c->after_lsn)
		return 0;
	pos.lsn = c->last;
	pos.seg = h->seg;
	pos.payload_off = off + WAL_REC_HDR_SIZE;
	c->fn_ret = c->fn(c->arg, &pos, get_le16(p + 16), p + WAL_REC_HDR_SIZE, len);
	return c->fn_ret ? 2 : 0;
}

/* W9: does a valid record (magic, a later lsn, its checksum with h's salt)
 * follow the bad one at off, in a segment created in this boot? Without a
 * reboot every append reached the page cache in order, so that is damage,
 * not a torn tail: replay must not end the log there and drop them. */
static bool damaged_mid_log(struct replay_ctx *c, struct seg_reader *rd, const struct seg_hdr *h,
			    uint64_t off)
{
	uint64_t now = txd_os->boot_id ? txd_os->boot_id() : 0;
	const uint8_t *p;

	if (!h->boot || h->boot != now)
		return false; /* a reboot since: a power cut may reorder the tail */
	for (uint64_t o = off + 8; reader_get(rd, o, WAL_REC_HDR_SIZE, &p) == 0; o += 8) {
		uint32_t len = get_le32(p + 4);
		uint64_t lsn = get_le64(p + 8);
		if (get_le32(p) != REC_MAGIC || len > WAL_MAX_RECORD || lsn <= c->last ||
		    reader_get(rd, o, (size_t)rec_total(len), &p))
			continue;
		if (rec_checksum(p, p + WAL_REC_HDR_SIZE, len, h->salt) != get_le64(p + 24))
			continue;
		syslog(LOG_ERR,
		       "txdir: %s/seg-%08u: the record at offset %" PRIu64 " (lsn %" PRIu64
		       ") is damaged and a valid record (lsn %" PRIu64 ") follows it at offset %" PRIu64
		       ": the log is damaged, not torn; refusing to drop the rest (mountctl fsck)",
		       c->w->dir, h->seg, off, c->last + 1, lsn, o);
		return true;
	}
	return false;
}

/*
 * Replay the records of segment i. limit is the prev_end_lsn of the next
 * segment (W3: records up to it must all be valid; 1 when one is not), or
 * UINT64_MAX for the last segment (W2: the first invalid record ends the
 * log).
 */
static int replay_segment(struct replay_ctx *c, uint32_t i, uint64_t limit, int fd,
			  uint64_t fsize)
{
	struct seg_reader rd = { .fd = fd, .fsize = fsize };
	const struct seg_hdr *h = &c->hdrs[i];
	uint64_t off = WAL_SEG_HDR_SIZE;
	int r = 0;

	while (c->last < limit) {
		r = replay_record(c, &rd, h, off, &off);
		if (r)
			break;
	}
	if (r == 1 && limit == UINT64_MAX && damaged_mid_log(c, &rd, h, off))
		r = -TXD_ECORRUPT; /* W9 */
	if (r == 1)
		r = limit == UINT64_MAX ? 0 : 1; /* the caller decides (W3, W4) */
	else if (r == 2)
		r = c->fn_ret;
	free(rd.buf);
	return r;
}

static int open_seg_read(struct wal *w, uint32_t seg, int *fd, uint64_t *size)
{
	char path[4096];
	int r;

	seg_path(w, seg, "", path, sizeof(path));
	*fd = txd_os->open(path, O_RDONLY, 0);
	if (*fd < 0)
		return *fd;
	r = txd_os->fstat_size(*fd, size);
	if (r)
		txd_os->close(*fd);
	return r;
}

/* 0, or 1 when the segment has no valid header (W4: too short, zeros, a
 * torn write, a recycled spare's old header — the caller decides whether
 * that can be a rotation's unsettled segment, or is corruption). */
static int read_header(struct wal *w, uint32_t i, struct seg_hdr *h)
{
	uint8_t b[WAL_SEG_HDR_SIZE];
	uint64_t size;
	int fd, r;

	r = open_seg_read(w, w->segs[i].seg, &fd, &size);
	if (r)
		return r;
	w->segs[i].size = size;
	r = size < WAL_SEG_HDR_SIZE ? 1 : os_pread_full(fd, b, sizeof(b), 0);
	if (!r && !seg_hdr_decode(b, w->segs[i].seg, h))
		r = 1;
	if (!r)
		w->segs[i].first_lsn = h->first_lsn;
	txd_os->close(fd);
	return r;
}

/*
 * The first segment replay must read: the last one whose first_lsn is at or
 * before after_lsn + 1. Older segments hold only checkpointed records; they
 * may be kept for the chunk bytes they hold while others around them were
 * dropped, so they are neither read nor required to be contiguous.
 * -TXD_ECORRUPT if even the oldest segment starts after after_lsn + 1 (a
 * hole between the checkpoint and the log).
 */
static int find_start(const struct replay_ctx *c, uint32_t n, uint32_t *start)
{
	uint32_t i;

	*start = 0;
	if (n && c->hdrs[0].first_lsn > c->after_lsn + 1)
		return -TXD_ECORRUPT;
	for (i = 0; i < n; i++)
		if (c->hdrs[i].first_lsn <= c->after_lsn + 1)
			*start = i;
	return 0;
}

/* From start on, segment numbers are consecutive (first_lsn continuity is
 * checked as each segment is read): the first one after a gap, or n. */
static uint32_t check_chain(const struct replay_ctx *c, uint32_t start, uint32_t n)
{
	uint32_t i;

	for (i = start + 1; i < n; i++)
		if (c->hdrs[i].seg != c->hdrs[i - 1].seg + 1)
			return i;
	return n;
}

/* W4: the log ends before segment i, whose header or predecessor never
 * reached the disk: it and every later segment go (none was settled, so no
 * lsn in them was ever reported durable). -TXD_ECORRUPT (nothing changed)
 * if a later one is settled. */
static int cut_tail(struct replay_ctx *c, uint32_t i, uint32_t n)
{
	struct wal *w = c->w;
	struct seg_hdr h;
	char path[4096];
	uint32_t j;
	int r;

	if (w->same_boot) { /* W9: no power cut since: damage, not a lost rotation */
		syslog(LOG_ERR,
		       "txdir: %s/seg-%08u: the log ends here (a header that does not read "
		       "back, or records missing before a later segment) though no reboot "
		       "happened since the last server ran: the log is damaged; refusing to cut "
		       "it (mountctl fsck)",
		       w->dir, w->segs[i].seg);
		return -TXD_ECORRUPT;
	}
	for (j = i + 1; j < n; j++) {
		r = read_header(w, j, &h);
		if (r < 0 || (!r && !h.pending))
			return -TXD_ECORRUPT;
	}
	for (j = i; j < n; j++) {
		seg_path(w, w->segs[j].seg, "", path, sizeof(path));
		r = txd_os->unlink(path);
		if (r && r != -ENOENT)
			return r;
	}
	w->nsegs = i;
	return 0;
}

static int replay_all(struct replay_ctx *c)
{
	struct wal *w = c->w;
	uint32_t i, start, n = w->nsegs;
	uint64_t size;
	int fd, r;

	for (i = 0; i < n; i++) {
		r = read_header(w, i, &c->hdrs[i]);
		if (r == 1 && !(r = cut_tail(c, i, n)))
			n = i;
		if (r)
			return r;
	}
	r = find_start(c, n, &start);
	if (!r && (i = check_chain(c, start, n)) < n) {
		/* W4: a rotation's new name that did not reach the disk leaves a
		 * gap before pending segments: the log ends at the gap */
		r = c->hdrs[i].pending ? cut_tail(c, i, n) : -TXD_ECORRUPT;
		n = i;
	}
	if (r)
		return r;
	if (n)
		c->last = c->hdrs[start].prev_end_lsn;
	for (i = start; i < n; i++) {
		uint64_t limit = i + 1 < n ? c->hdrs[i + 1].prev_end_lsn : UINT64_MAX;

		if (c->hdrs[i].first_lsn != c->last + 1)
			return -TXD_ECORRUPT;
		r = open_seg_read(w, w->segs[i].seg, &fd, &size);
		if (r)
			return r;
		r = replay_segment(c, i, limit, fd, size);
		/* W4: ended before the next segment's prev_end_lsn, which was
		 * written pending (a rotation's old segment not yet fsynced):
		 * the log ends here. Settled: corruption (W3). */
		if (r == 1)
			r = c->hdrs[i + 1].pending ? cut_tail(c, i + 1, n) : -TXD_ECORRUPT;
		if (!r && w->nsegs < n)
			n = w->nsegs;
		/* W2: what replay read of the last segment must be on disk
		 * before a newer segment's prev_end_lsn vouches for it. */
		if (!r && i + 1 == n)
			r = txd_os->fdatasync(fd);
		txd_os->close(fd);
		if (r)
			return r;
	}
	return 0;
}

static int unlink_tmp_cb(const char *name, void *arg)
{
	struct wal *w = arg;
	char path[4096];
	size_t l = strlen(name);

	if (!strncmp(name, "seg-", 4) && l > 4 && !strcmp(name + l - 4, ".tmp")) {
		snprintf(path, sizeof(path), "%s/%s", w->dir, name);
		txd_os->unlink(path);
	}
	return 0;
}

int wal_replay(struct wal *w, uint64_t after_lsn, wal_replay_fn fn, void *arg)
{
	struct replay_ctx c = { .w = w, .after_lsn = after_lsn, .fn = fn, .arg = arg,
				.last = after_lsn };
	uint32_t next_seg;
	int r;

	if (w->replayed)
		return -EINVAL;
	c.hdrs = calloc(w->nsegs + 1, sizeof(*c.hdrs));
	if (!c.hdrs)
		return -ENOMEM;
	r = replay_all(&c);
	if (r)
		goto out_free;
	if (c.last < after_lsn) {
		r = -TXD_ECORRUPT; /* the checkpoint is ahead of the log */
		goto out_free;
	}
	txd_os->listdir(w->dir, unlink_tmp_cb, w);
	next_seg = w->nsegs ? w->segs[w->nsegs - 1].seg + 1 : 1;
	pthread_mutex_lock(&w->lock);
	w->last_lsn = w->durable_lsn = w->want_lsn = c.last;
	r = seg_start(w, next_seg, false);
	if (r)
		set_failed(w);
	else
		w->replayed = true;
	pthread_mutex_unlock(&w->lock);
out_free:
	free(c.hdrs);
	return r;
}

/* ---- append / sync -------------------------------------------------------------------- */

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	int i;

	for (i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Lock held. */
static int abuf_reserve(struct wal *w, size_t n)
{
	uint8_t *p;

	if (n <= w->abuf_cap)
		return 0;
	p = realloc(w->abuf, n);
	if (!p)
		return -ENOMEM;
	w->abuf = p;
	w->abuf_cap = n;
	return 0;
}

/* Lock held. The append buffer is as large as the largest record since
 * the last trim; a rare large record (a big transaction, 4 MiB of inline
 * content) must not keep its buffer for the life of the server (memory
 * follows open work, not history). */
static void abuf_trim(struct wal *w)
{
	if (w->abuf_cap <= WAL_ABUF_KEEP)
		return;
	free(w->abuf);
	w->abuf = NULL;
	w->abuf_cap = 0;
}

/* Lock held. Header + payload + zero padding, checksummed with the
 * segment's salt, into w->abuf. */
static void build_record(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
			 uint32_t len, uint64_t lsn)
{
	uint8_t *b = w->abuf, *p = b + WAL_REC_HDR_SIZE;
	uint64_t total = rec_total(len);
	int i;

	memset(b, 0, WAL_REC_HDR_SIZE);
	put_le32(b, REC_MAGIC);
	put_le32(b + 4, len);
	put_le64(b + 8, lsn);
	put_le16(b + 16, type);
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	memset(p, 0, (size_t)(total - WAL_REC_HDR_SIZE - len));
	put_le64(b + 24, rec_checksum(b, b + WAL_REC_HDR_SIZE, len, w->salt));
}

/* Lock held. A large record is written from the caller's iovecs in place
 * (header, payload pieces, padding: no copy into the append buffer, whose
 * growth to the record's size would cost more than the write); it counts
 * as appended only once every piece is written (W6), and a crash in between
 * leaves a record whose checksum fails, which replay ends at (W2). */
static int write_direct(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
			uint32_t len, uint64_t lsn)
{
	uint8_t hdr[WAL_REC_HDR_SIZE], pad[8] = {0};
	uint64_t off = w->seg_off + WAL_REC_HDR_SIZE, total = rec_total(len);
	XXH64_state_t st;
	int i, r;

	memset(hdr, 0, sizeof(hdr));
	put_le32(hdr, REC_MAGIC);
	put_le32(hdr + 4, len);
	put_le64(hdr + 8, lsn);
	put_le16(hdr + 16, type);
	XXH64_reset(&st, w->salt);
	XXH64_update(&st, hdr, 24);
	for (i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		XXH64_update(&st, iov[i].iov_base, iov[i].iov_len);
		r = os_pwrite_full(w->fd, iov[i].iov_base, iov[i].iov_len, (off_t)off);
		if (r)
			return r;
		off += iov[i].iov_len;
	}
	if (total - WAL_REC_HDR_SIZE - len) {
		r = os_pwrite_full(w->fd, pad, (size_t)(total - WAL_REC_HDR_SIZE - len), (off_t)off);
		if (r)
			return r;
	}
	put_le64(hdr + 24, XXH64_digest(&st));
	return os_pwrite_full(w->fd, hdr, sizeof(hdr), (off_t)w->seg_off);
}

static bool no_space(int r)
{
	return r == -ENOSPC || r == -EDQUOT;
}

/* Lock held. Write zeros over [ready_to, end). */
static int write_zeros(struct wal *w, uint64_t end)
{
	int r = 0;

	for (uint64_t off = w->ready_to; !r && off < end;) {
		size_t n = end - off < ZERO_BUF ? (size_t)(end - off) : ZERO_BUF;

		r = os_pwrite_full(w->fd, zeros, n, (off_t)off);
		off += n;
	}
	return r;
}

/* Lock held. Allocate the segment file from ready_to to at least end (W8).
 * With pre-allocation on, by writing zeros (only what is needed: the sync
 * thread's zero_fill does the rest), so a later fdatasync still changes no
 * extent (W7); without, by fallocate, ALLOC_STEP at a time when the disk
 * allows (zeros where the file system has no fallocate). On failure, what
 * a partial allocation added past ready_to is cut off again. */
static int alloc_to(struct wal *w, uint64_t end)
{
	uint64_t want = end;
	int r = -EOPNOTSUPP;

	if (end <= w->ready_to)
		return 0;
	if (!w->zero_ahead) {
		want = w->ready_to + ALLOC_STEP;
		if (want > w->seg_size)
			want = w->seg_size;
		if (want < end)
			want = end;
		r = txd_os->fallocate(w->fd, (off_t)w->ready_to, (off_t)(want - w->ready_to));
		if (no_space(r) && want > end) {
			want = end;
			r = txd_os->fallocate(w->fd, (off_t)w->ready_to,
					      (off_t)(want - w->ready_to));
		}
	}
	if (r == -EOPNOTSUPP)
		r = write_zeros(w, want);
	if (r) {
		if (no_space(r))
			w->space_short = true;
		txd_os->ftruncate(w->fd, (off_t)w->ready_to);
		return r;
	}
	w->ready_to = want;
	w->segs[w->nsegs - 1].size = want;
	w->space_short = false;
	return 0;
}

/* Lock held. W8: where the record at seg_off of total bytes must find the
 * file allocated: its end, plus WAL_HEADROOM for an ordinary record (not
 * past the segment's size, unless the record alone goes past it). */
static uint64_t alloc_need(const struct wal *w, uint64_t total, unsigned flags)
{
	uint64_t end = w->seg_off + total, need = end;

	if (!(flags & WAL_APPEND_RESERVE))
		need += WAL_HEADROOM;
	if (need > w->seg_size)
		need = end > w->seg_size ? end : w->seg_size;
	return need;
}

/* Lock held. A record write met a full disk (W8): cut the segment at the
 * record's start, so no byte of it stays (a shrinking truncate needs no
 * space); the next append allocates again. If this fails the log must. */
static int undo_record(struct wal *w)
{
	int r = txd_os->ftruncate(w->fd, (off_t)w->seg_off);

	if (!r) {
		w->ready_to = w->seg_off;
		w->segs[w->nsegs - 1].size = w->seg_off;
	}
	return r;
}

/* Lock held. */
static int append_locked(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
			 uint32_t len, unsigned flags, struct wal_pos *pos)
{
	uint64_t total = rec_total(len);
	int r;

	if (w->seg_off > WAL_SEG_HDR_SIZE && w->seg_off + total > w->seg_size) {
		r = rotate(w);
		if (no_space(r)) {
			w->space_short = true;
			return r; /* W8: nothing changed, nothing written */
		}
		if (r)
			goto out_fail;
	}
	r = alloc_to(w, alloc_need(w, total, flags));
	if (no_space(r))
		return r; /* W8: nothing written */
	if (r)
		goto out_fail;
	if (total > WAL_ABUF_KEEP) {
		r = write_direct(w, type, iov, iovcnt, len, w->last_lsn + 1);
	} else {
		r = abuf_reserve(w, (size_t)total);
		if (r)
			return r; /* nothing written: not a log failure */
		build_record(w, type, iov, iovcnt, len, w->last_lsn + 1);
		r = os_pwrite_full(w->fd, w->abuf, (size_t)total, (off_t)w->seg_off);
	}
	if (no_space(r) && !undo_record(w)) {
		w->space_short = true;
		return r; /* W8: the half record is no record */
	}
	if (r)
		goto out_fail;
	/* No wake-up for the interval timer: the sync thread ticks every
	 * interval while the log is clean (wait_for_work), so a save that is
	 * made durable by its own fsync costs no hand-off at all. */
	if (w->last_lsn == w->durable_lsn)
		w->dirty_since_ns = mono_ns();
	w->last_lsn++;
	if (pos) {
		pos->lsn = w->last_lsn;
		pos->seg = w->seg;
		pos->payload_off = w->seg_off + WAL_REC_HDR_SIZE;
	}
	w->seg_off += total;
	if (w->ready_to < w->seg_off)
		w->ready_to = w->seg_off;
	if (!w->zero_wanted && zero_needed(w)) {
		w->zero_wanted = true;
		pthread_cond_signal(&w->work_cv);
	}
	w->segs[w->nsegs - 1].size = w->ready_to; /* the file's size */
	w->st_records++;
	w->st_bytes += total;
	return 0;

out_fail:
	set_failed(w);
	return -EIO;
}

int wal_append(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
	       struct wal_pos *pos)
{
	return wal_append_flags(w, type, iov, iovcnt, 0, pos);
}

bool wal_space_short(struct wal *w)
{
	bool v;

	pthread_mutex_lock(&w->lock);
	v = w->space_short;
	pthread_mutex_unlock(&w->lock);
	return v;
}

int wal_append_flags(struct wal *w, uint16_t type, const struct iovec *iov, int iovcnt,
		     unsigned flags, struct wal_pos *pos)
{
	size_t len = iov_total(iov, iovcnt);
	int r;

	if (len > WAL_MAX_RECORD)
		return -EFBIG;
	pthread_mutex_lock(&w->lock);
	if (w->failed)
		r = -EIO;
	else if (!w->replayed)
		r = -EINVAL;
	else
		r = append_locked(w, type, iov, iovcnt, (uint32_t)len, flags, pos);
	abuf_trim(w); /* on failure paths too */
	pthread_mutex_unlock(&w->lock);
	return r;
}

uint64_t wal_last_lsn(struct wal *w)
{
	uint64_t v;

	pthread_mutex_lock(&w->lock);
	v = w->last_lsn;
	pthread_mutex_unlock(&w->lock);
	return v;
}

uint64_t wal_durable_lsn(struct wal *w)
{
	uint64_t v;

	pthread_mutex_lock(&w->lock);
	v = w->durable_lsn;
	pthread_mutex_unlock(&w->lock);
	return v;
}

int wal_sync(struct wal *w, uint64_t lsn)
{
	int r;

	pthread_mutex_lock(&w->lock);
	if (lsn > w->last_lsn)
		lsn = w->last_lsn;
	while (!w->failed && w->durable_lsn < lsn) {
		if (!w->syncing && w->fd >= 0) {
			/* a blocking caller (checkpoint, txd_sync_wait) takes the
			 * zeros a rotation made due (W7) into its own sync, so the
			 * log is quiet afterwards */
			if (zero_needed(w))
				zero_fill(w);
			sync_once(w, false); /* lead: no hand-off to the sync thread */
			continue;
		}
		if (w->want_lsn < lsn) {
			w->want_lsn = lsn;
			pthread_cond_signal(&w->work_cv);
		}
		pthread_cond_wait(&w->durable_cv, &w->lock);
	}
	r = w->failed ? -EIO : 0;
	pthread_mutex_unlock(&w->lock);
	return r;
}

int wal_sync_async(struct wal *w, uint64_t lsn, void (*cb)(void *arg, int err), void *arg)
{
	int r = 0;

	pthread_mutex_lock(&w->lock);
	if (lsn > w->last_lsn)
		lsn = w->last_lsn;
	if (w->failed) {
		r = -EIO;
		goto out_unlock;
	}
	if (lsn <= w->durable_lsn) {
		pthread_mutex_unlock(&w->lock);
		cb(arg, 0);
		return 0;
	}
	if (w->will_block && !w->syncing && w->fd >= 0) {
		sync_once(w, true); /* lead: covers lsn, everything is appended */
		r = w->failed ? -EIO : 0;
		pthread_mutex_unlock(&w->lock);
		cb(arg, r);
		return 0;
	}
	r = array_grow((void **)&w->waits, &w->capwaits, w->nwaits + 1, sizeof(*w->waits));
	if (r)
		goto out_unlock;
	w->waits[w->nwaits++] = (struct async_wait){ .lsn = lsn, .cb = cb, .arg = arg };
	pthread_cond_signal(&w->work_cv);
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return r;
}

bool wal_failed(struct wal *w)
{
	bool f;

	pthread_mutex_lock(&w->lock);
	f = w->failed;
	pthread_mutex_unlock(&w->lock);
	return f;
}

/* ---- segment bookkeeping ------------------------------------------------------------ */

uint32_t wal_current_seg(struct wal *w)
{
	uint32_t s;

	pthread_mutex_lock(&w->lock);
	s = w->seg;
	pthread_mutex_unlock(&w->lock);
	return s;
}

/* W7: keep the dropped segment at path as a spare when it is full-size and
 * spares are wanted. 0 when it became one; the caller fsyncs the directory. */
static int recycle(struct wal *w, uint32_t seg, const char *path)
{
	char spare[4096];
	uint64_t size = 0;
	bool room;
	int fd, r;

	pthread_mutex_lock(&w->lock);
	room = w->zero_ahead && w->nspares < WAL_SPARES;
	pthread_mutex_unlock(&w->lock);
	if (!room)
		return 1;
	fd = txd_os->open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	r = txd_os->fstat_size(fd, &size);
	txd_os->close(fd);
	if (r || size < w->seg_size)
		return r ? r : 1;
	spare_path(w, seg, spare, sizeof(spare));
	r = txd_os->rename(path, spare);
	if (r)
		return r;
	pthread_mutex_lock(&w->lock);
	room = w->nspares < WAL_SPARES;
	if (room)
		w->spares[w->nspares++] = seg;
	pthread_mutex_unlock(&w->lock);
	return room ? 0 : txd_os->unlink(spare);
}

int wal_drop_segment(struct wal *w, uint32_t seg)
{
	char path[4096];
	uint32_t i;
	int r = -ENOENT;

	pthread_mutex_lock(&w->lock);
	if (!w->replayed || seg >= w->seg) {
		r = -EINVAL;
		goto out_unlock;
	}
	for (i = 0; i < w->nsegs; i++) {
		if (w->segs[i].seg != seg)
			continue;
		memmove(&w->segs[i], &w->segs[i + 1], (w->nsegs - i - 1) * sizeof(*w->segs));
		w->nsegs--;
		r = 0;
		break;
	}
out_unlock:
	pthread_mutex_unlock(&w->lock);
	if (r)
		return r;
	/* Outside the lock: a directory fsync must not stall appends. */
	seg_path(w, seg, "", path, sizeof(path));
	if (recycle(w, seg, path) != 0)
		r = txd_os->unlink(path);
	if (!r)
		r = os_fsync_dir(w->dir);
	return r;
}

int wal_list_segments(struct wal *w, uint32_t **segs, uint32_t *n)
{
	uint32_t i;
	int r = 0;

	pthread_mutex_lock(&w->lock);
	*n = w->nsegs;
	*segs = malloc(sizeof(**segs) * (w->nsegs ? w->nsegs : 1));
	if (!*segs) {
		r = -ENOMEM;
		goto out_unlock;
	}
	for (i = 0; i < w->nsegs; i++)
		(*segs)[i] = w->segs[i].seg;
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return r;
}

int wal_segments(struct wal *w, struct wal_seg_info **out, uint32_t *n)
{
	pthread_mutex_lock(&w->lock);
	struct wal_seg_info *v = calloc(w->nsegs ? w->nsegs : 1, sizeof(*v));
	for (uint32_t i = 0; v && i < w->nsegs; i++) {
		const struct seginfo *si = &w->segs[i];
		bool current = i + 1 == w->nsegs && w->fd >= 0;
		v[i].seg = si->seg;
		v[i].bytes = current ? w->seg_off : si->size; /* as wal_get_stats */
		v[i].first_lsn = si->first_lsn;
		if (!si->first_lsn)
			continue;
		if (current) {
			v[i].last_lsn = w->last_lsn;
			v[i].last_known = true;
		} else if (i + 1 < w->nsegs && w->segs[i + 1].seg == si->seg + 1 &&
			   w->segs[i + 1].first_lsn) {
			v[i].last_lsn = w->segs[i + 1].first_lsn - 1; /* its prev_end_lsn */
			v[i].last_known = true;
		}
	}
	*n = v ? w->nsegs : 0;
	pthread_mutex_unlock(&w->lock);
	*out = v;
	return v ? 0 : -ENOMEM;
}

uint64_t wal_bytes_appended(struct wal *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t n = w->st_bytes;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void wal_get_stats(struct wal *w, struct wal_stats *st)
{
	uint32_t i;

	pthread_mutex_lock(&w->lock);
	st->records = w->st_records;
	st->bytes = w->st_bytes;
	st->syncs = w->st_syncs;
	st->synced_records = w->st_synced_records;
	st->mem_bytes = w->abuf_cap;
	st->disk_bytes = 0;
	for (i = 0; i < w->nsegs; i++) /* the current one: up to its append point */
		st->disk_bytes += i + 1 == w->nsegs && w->fd >= 0 ? w->seg_off : w->segs[i].size;
	pthread_mutex_unlock(&w->lock);
}
