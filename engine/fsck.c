/*
 * fsck.c — offline verification of a store (fsck.h). Reads only: files are
 * opened O_RDONLY and mapped; the one writer is --repair, which runs the
 * engine's own recovery (txd_fs_open/txd_fs_close) and unlinks invalid
 * newer checkpoints, then checks the store again.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <cjson/cJSON.h>

#include "chunk.h"
#include "fsck.h"
#include "gc.h"
#include "json.h"
#include "ns.h"
#include "os.h"
#include "rec.h"
#include "store.h"
#include "txdir.h"
#include "wal.h"

/* On-disk constants of wal.c, ckpt.c and clog.c (their headers state the
 * formats; the values are private to those files). */
#define SEG_MAGIC 0x47534c4157445854ull /* "TXDWALSG" */
#define REC_MAGIC 0x52575854u           /* "TXWR" */
#define SEG_FLAG_PENDING 1
#define CKPT_MAGIC 0x3154504b43445854ull /* "TXDCKPT1" */
#define BLK_MAGIC 0x4c424b43u           /* "CKBL" */
#define END_MAGIC 0x4e454b43u           /* "CKEN" */
#define SEC_MAGIC 0x58534b43u           /* "CKSX" */
#define CKPT_HDR 64
#define CLOG_MAGIC 0x32474c43u          /* "CLG2" */
#define WAL_DIR "coordination/dtc/wal"
#define CKPT_DIR "coordination/dtc/checkpoints"
#define CLOG_PATH "coordination/commits/log"
#define TXN_DIR "coordination/dtc/transactions"

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* A whole file read into memory (os.h: through the swappable table, so
 * tests can fail or tear the reads). len 0: nothing held. */
struct map {
	const uint8_t *p;
	uint64_t len;
	bool mapped; /* map_offline: munmap, not free */
};

static int map_file(const char *path, struct map *m)
{
	char *buf = NULL;
	size_t len = 0;
	m->p = NULL;
	m->len = 0;
	m->mapped = false;
	int err = os_read_file(path, &buf, &len);
	if (err)
		return err;
	m->p = (const uint8_t *)buf;
	m->len = len;
	return 0;
}

/* A segment read into buf (grown as needed, reused from segment to
 * segment: a fresh buffer per segment cost a page fault per page, a
 * quarter of fsck's time). m borrows buf. */
static int map_seg(const char *path, struct map *m, uint8_t **buf, uint64_t *cap)
{
	uint64_t size;
	m->p = NULL;
	m->len = 0;
	m->mapped = false;
	int fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	int err = txd_os->fstat_size(fd, &size);
	if (!err && size > *cap) {
		uint8_t *n = realloc(*buf, size);
		if (n) {
			*buf = n;
			*cap = size;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err && size)
		err = os_pread_full(fd, *buf, size, 0);
	txd_os->close(fd);
	if (err)
		return err;
	m->p = *buf;
	m->len = size;
	return 0;
}

static void unmap(struct map *m)
{
	if (m->mapped)
		munmap((void *)m->p, m->len);
	else
		free((void *)m->p);
	m->p = NULL;
	m->len = 0;
	m->mapped = false;
}

/* Ask the kernel to start reading path now (asynchronously), so the next
 * segment comes from the disk while this one is hashed. Real table only. */
static void prefetch(const char *path)
{
	if (txd_os != &txd_os_real)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
		close(fd);
	}
}

/* A file of a store fsck holds locked (LOCK_SH: nothing truncates it
 * meanwhile), mapped read-only when the OS table is the real one: the
 * bytes are hashed where they sit in the page cache, with no copy and no
 * fresh buffer to fault in (together half of fsck's system time on 4 GiB).
 * With a test's table (os.h), read through it as map_file does, so faults
 * can still be injected. Never for a store a server runs (scrub.h): a
 * truncation under a mapping is SIGBUS. */
static int map_offline(const char *path, struct map *m)
{
	if (txd_os != &txd_os_real)
		return map_file(path, m);
	m->p = NULL;
	m->len = 0;
	m->mapped = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int err = fstat(fd, &st) ? -errno : 0;
	if (!err && st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (p == MAP_FAILED) {
			err = -errno;
		} else {
			madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
			m->p = p;
			m->len = (uint64_t)st.st_size;
			m->mapped = true;
		}
	}
	close(fd);
	return err;
}

/* One problem as found by one pass. */
struct found {
	enum fsck_sev sev;
	bool fixable; /* what recovery (--repair) corrects */
	bool note;    /* F4 */
	uint64_t ckpt; /* F6: an invalid checkpoint's lsn (0: another problem) */
	struct fsck_problem p;
};

struct ctx {
	const char *dir;
	const struct fsck_opts *o;
	struct fsck_result *r;
	struct found *f;
	uint32_t nf, capf;
	bool stop_repair; /* a problem recovery would make worse (lost commits) */
	uint64_t (*txc)[2]; /* {txn, lsn} of the transaction commits walked */
	uint32_t ntxc, captxc;
	int stopped;      /* opts.record's non-zero */
	bool note;        /* the next problem is a note (F4) */
	struct segok *ok; /* F5: the byte ranges of records whose checksum held */
	uint32_t nok, capok;
	uint64_t done_bytes, last_report; /* progress */
	uint32_t use_hint; /* r->uses index of the last file looked up */
};

/* F5: per segment walked, the byte ranges of its records whose checksum
 * held (coalesced: one range per run of good records). */
struct segok {
	uint32_t num;
	uint64_t (*r)[2];
	uint32_t n, cap;
};

static void segok_free(struct ctx *c)
{
	for (uint32_t k = 0; k < c->nok; k++)
		free(c->ok[k].r);
	free(c->ok);
	c->ok = NULL;
	c->nok = c->capok = 0;
}

/* Record [a, b) of segment num checked out (walked in segment order). */
static int segok_add(struct ctx *c, uint32_t num, uint64_t a, uint64_t b)
{
	if (!c->nok || c->ok[c->nok - 1].num != num) {
		if (c->nok == c->capok) {
			uint32_t cap = c->capok ? 2 * c->capok : 16;
			struct segok *n = realloc(c->ok, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			c->ok = n;
			c->capok = cap;
		}
		c->ok[c->nok++] = (struct segok){.num = num};
	}
	struct segok *g = &c->ok[c->nok - 1];
	if (g->n && g->r[g->n - 1][1] == a) {
		g->r[g->n - 1][1] = b;
		return 0;
	}
	if (g->n == g->cap) {
		uint32_t cap = g->cap ? 2 * g->cap : 4;
		void *n = realloc(g->r, cap * sizeof(*g->r));
		if (!n)
			return -ENOMEM;
		g->r = n;
		g->cap = cap;
	}
	g->r[g->n][0] = a;
	g->r[g->n++][1] = b;
	return 0;
}

/* Whether [off, off + len) of segment num lies in a record that checked out. */
static bool segok_has(const struct ctx *c, uint32_t num, uint64_t off, uint32_t len)
{
	for (uint32_t k = 0; k < c->nok; k++) {
		if (c->ok[k].num != num)
			continue;
		for (uint32_t i = 0; i < c->ok[k].n; i++)
			if (c->ok[k].r[i][0] <= off && off + len <= c->ok[k].r[i][1])
				return true;
		return false;
	}
	return false;
}

static void progress(struct ctx *c, bool force)
{
	if (!c->o->progress || (!force && c->done_bytes - c->last_report < (8u << 20)))
		return;
	c->last_report = c->done_bytes;
	struct fsck_progress p = {.records = c->r->records, .bytes = c->done_bytes,
				  .bytes_total = c->r->wal_bytes + c->r->pack_bytes};
	c->o->progress(c->o->arg, &p);
}

/* The entry of file in r->uses, added if new; NULL without memory (the
 * garbage figures are then short, nothing else). */
static struct fsck_use *use_of(struct ctx *c, uint32_t file)
{
	struct fsck_result *r = c->r;
	if (c->use_hint < r->nuses && r->uses[c->use_hint].file == file)
		return &r->uses[c->use_hint];
	for (uint32_t k = 0; k < r->nuses; k++)
		if (r->uses[k].file == file)
			return &r->uses[c->use_hint = k];
	struct fsck_use *n = realloc(r->uses, (r->nuses + 1) * sizeof(*n));
	if (!n)
		return NULL;
	r->uses = n;
	memset(&n[r->nuses], 0, sizeof(*n));
	n[r->nuses].file = file;
	return &r->uses[c->use_hint = r->nuses++];
}

/* What GC would take (gc.h G2), once sizes and live bytes are known. */
static void note_gc(struct ctx *c)
{
	struct fsck_result *r = c->r;
	uint32_t last_seg = 0;
	for (uint32_t k = 0; k < r->nuses; k++)
		if ((r->uses[k].file & CHUNK_FILE_WAL) &&
		    (r->uses[k].file & ~CHUNK_FILE_WAL) > last_seg)
			last_seg = r->uses[k].file & ~CHUNK_FILE_WAL;
	for (uint32_t k = 0; k < r->nuses; k++) {
		struct fsck_use *u = &r->uses[k];
		bool seg = u->file & CHUNK_FILE_WAL;
		u->gc = u->size && u->live * 100 <= (uint64_t)GC_LIVE_PCT * u->size &&
			!(seg && (u->file & ~CHUNK_FILE_WAL) == last_seg);
		if (u->gc)
			r->gc_would_free += u->size > u->live ? u->size - u->live : 0;
	}
}

static void problem(struct ctx *c, bool fixable, const char *kind, const char *where,
		    const char *affects, const char *fmt, ...)
{
	if (c->nf == c->capf) {
		uint32_t cap = c->capf ? 2 * c->capf : 16;
		struct found *n = realloc(c->f, cap * sizeof(*n));
		if (!n)
			return; /* counted below all the same */
		c->f = n;
		c->capf = cap;
	}
	struct found *x = &c->f[c->nf++];
	memset(x, 0, sizeof(*x));
	x->sev = FSCK_ERROR;
	x->fixable = fixable;
	x->note = c->note;
	c->note = false;
	x->p.sev = FSCK_ERROR;
	x->p.kind = kind;
	snprintf(x->p.where, sizeof(x->p.where), "%s", where);
	snprintf(x->p.affects, sizeof(x->p.affects), "%s", affects ? affects : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->p.what, sizeof(x->p.what), fmt, ap);
	va_end(ap);
}

/* ---- listing ------------------------------------------------------------- */
struct nums {
	uint64_t *v;
	uint32_t n, cap;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct listing {
	struct nums *out;
	const char *prefix, *suffix;
	bool hex;
};

static int list_cb(const char *name, void *arg)
{
	struct listing *l = arg;
	size_t pl = strlen(l->prefix);
	if (strncmp(name, l->prefix, pl) != 0 || !name[pl])
		return 0;
	char *end;
	uint64_t v = strtoull(name + pl, &end, l->hex ? 16 : 10);
	if (end == name + pl || strcmp(end, l->suffix))
		return 0; /* .tmp and others */
	struct nums *o = l->out;
	if (o->n == o->cap) {
		uint32_t cap = o->cap ? 2 * o->cap : 16;
		uint64_t *n = realloc(o->v, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		o->v = n;
		o->cap = cap;
	}
	o->v[o->n++] = v;
	return 0;
}

/* Numbers of the names "prefix<number>suffix" in dir (hex when hex), sorted. */
static int list_nums(const char *dir, const char *prefix, const char *suffix, bool hex,
		     struct nums *out)
{
	memset(out, 0, sizeof(*out));
	struct listing l = {.out = out, .prefix = prefix, .suffix = suffix, .hex = hex};
	int err = txd_os->listdir(dir, list_cb, &l);
	if (err == -ENOENT)
		err = 0;
	if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), cmp_u64);
	return err;
}

/* ---- checkpoints (ckpt.c K1, K5) ---------------------------------------- */
/* Verify (and with ns, apply) one checkpoint. 0, or -TXD_ECORRUPT with a
 * reason and offset, -TXD_EFORMAT, -errno. */
static int ckpt_check(const char *path, uint64_t lsn, struct ns *ns, char *why, size_t cap,
		      uint64_t *at)
{
	struct map m;
	int err = map_offline(path, &m);
	*at = 0;
	if (err)
		return err;
	const uint8_t *h = m.p;
	err = -TXD_ECORRUPT;
	if (m.len < CKPT_HDR) {
		snprintf(why, cap, "shorter than its header (%" PRIu64 " bytes)", m.len);
		goto out;
	}
	if (le64(h) != CKPT_MAGIC || le64(h + 56) != XXH64(h, 56, 0) || le64(h + 16) != lsn) {
		snprintf(why, cap, "header: bad magic, checksum or lsn");
		goto out;
	}
	uint32_t ver = le32(h + 8);
	if (ver < 1 || ver > 2) {
		snprintf(why, cap, "version %u, not one this fsck reads", ver);
		err = -TXD_EFORMAT;
		goto out;
	}
	uint64_t off = CKPT_HDR, nblocks = 0;
	bool blocks = false;
	for (;;) {
		*at = off;
		if (off + 16 > m.len) {
			snprintf(why, cap, "ends before its trailer (torn)");
			goto out;
		}
		uint32_t mg = le32(m.p + off), blen = le32(m.p + off + 4);
		uint64_t sum = le64(m.p + off + 8);
		if (mg == END_MAGIC) {
			if (off + 24 > m.len || le64(m.p + off + 8) != nblocks ||
			    le64(m.p + off + 16) != XXH64(m.p + off, 16, 0)) {
				snprintf(why, cap, "trailer: bad block count or checksum");
				goto out;
			}
			err = 0;
			break;
		}
		bool section = mg == SEC_MAGIC && ver >= 2 && !blocks;
		blocks = blocks || !section;
		if ((mg != BLK_MAGIC && !section) || blen > (64u << 20) || (section && blen < 8)) {
			snprintf(why, cap, "block %" PRIu64 ": bad magic or length", nblocks);
			goto out;
		}
		if (off + 16 + blen > m.len) {
			snprintf(why, cap, "block %" PRIu64 " ends past the file (torn)", nblocks);
			goto out;
		}
		if (XXH64(m.p + off + 16, blen, 0) != sum) {
			snprintf(why, cap, "block %" PRIu64 ": checksum mismatch", nblocks);
			goto out;
		}
		if (!section && ns) {
			int e = ns_apply(ns, m.p + off + 16, blen, 0, 0, lsn);
			if (e) {
				snprintf(why, cap, "block %" PRIu64 " does not apply (%s)", nblocks,
					 txd_strerror(e));
				err = e == -ENOMEM ? e : -TXD_ECORRUPT;
				goto out;
			}
		}
		off += 16 + (uint64_t)blen;
		nblocks++;
	}
	if (ns && le64(h + 24) > ns->next_ino)
		ns->next_ino = le64(h + 24);
out:
	unmap(&m);
	return err;
}

/* Every checkpoint, newest first; the first valid one is loaded into ns. */
static int check_ckpts(struct ctx *c, struct ns *ns, struct nums *ck, uint64_t *used)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/" CKPT_DIR, c->dir);
	int err = list_nums(dir, "ckpt-", "", true, ck);
	*used = 0;
	if (err)
		return err;
	c->r->checkpoints = ck->n;
	bool loaded = false;
	for (uint32_t k = ck->n; k-- > 0;) {
		char path[4200], why[200], where[320];
		uint64_t at;
		snprintf(path, sizeof(path), "%s/ckpt-%016" PRIx64, dir, ck->v[k]);
		err = ckpt_check(path, ck->v[k], loaded ? NULL : ns, why, sizeof(why), &at);
		if (err == -ENOMEM)
			return err;
		if (!err && !loaded) {
			loaded = true;
			*used = ck->v[k];
			continue;
		}
		if (!err)
			continue;
		snprintf(where, sizeof(where), CKPT_DIR "/ckpt-%016" PRIx64 " offset %" PRIu64,
			 ck->v[k], at);
		if (err == -TXD_EFORMAT) {
			problem(c, false, "checkpoint", where, "recovery refuses the store (ckpt.c K5)",
				"%s", why);
			c->stop_repair = true;
			continue;
		}
		/* K1: recovery passes over it; whether it can is the log's
		 * business (a hole after the older one is reported there) */
		uint32_t nf = c->nf;
		problem(c, true, "checkpoint", where,
			loaded ? "nothing: recovery uses a newer checkpoint"
			       : "nothing committed if the log covers it: recovery uses an older "
				 "checkpoint and replays more of the log",
			"invalid checkpoint (lsn %" PRIu64 "): %s", ck->v[k], why);
		if (c->nf > nf && strstr(why, "(torn)"))
			c->f[nf].ckpt = ck->v[k]; /* F6: settled after the log */
		if (!loaded) {
			ns_destroy(ns);
			if ((err = ns_init(ns)))
				return err;
		}
	}
	return 0;
}

/* ---- the log (wal.h W1-W4) ----------------------------------------------- */
/* A segment: its header always, its bytes (m) only while it is walked,
 * so memory is one segment whatever the log's size. */
struct seg {
	uint32_t num;
	bool ok, pending;
	uint64_t first_lsn, prev_end, salt, size;
	struct map m;
};

/* Read and check segment s's header (path: its file). 0, or -errno. */
static int seg_hdr(const char *path, struct seg *s)
{
	uint8_t b[WAL_SEG_HDR_SIZE];
	int fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	int err = txd_os->fstat_size(fd, &s->size);
	if (!err && s->size >= WAL_SEG_HDR_SIZE)
		err = os_pread_full(fd, b, sizeof(b), 0);
	txd_os->close(fd);
	if (err)
		return err;
	s->ok = false;
	if (s->size < WAL_SEG_HDR_SIZE || le64(b) != SEG_MAGIC || le32(b + 8) != 1 ||
	    le64(b + 56) != XXH64(b, 56, 0) || le32(b + 12) != s->num)
		return 0;
	s->ok = true;
	s->first_lsn = le64(b + 16);
	s->prev_end = le64(b + 24);
	s->salt = le64(b + 32);
	s->pending = b[40] & SEG_FLAG_PENDING;
	return 0;
}

static uint64_t rec_total(uint32_t len)
{
	return WAL_REC_HDR_SIZE + (((uint64_t)len + 7) & ~7ull);
}

/* 0 valid; else why it is not. */
static const char *rec_bad(const struct seg *s, uint64_t off, uint64_t want_lsn)
{
	const uint8_t *p = s->m.p + off;
	if (off + WAL_REC_HDR_SIZE > s->m.len)
		return "ends in its header";
	uint32_t len = le32(p + 4);
	if (le32(p) != REC_MAGIC)
		return "bad magic";
	if (len > WAL_MAX_RECORD || off + rec_total(len) > s->m.len)
		return "bad length";
	if (le64(p + 8) != want_lsn)
		return "lsn out of sequence";
	XXH64_state_t st;
	XXH64_reset(&st, s->salt);
	XXH64_update(&st, p, 24);
	XXH64_update(&st, p + WAL_REC_HDR_SIZE, len);
	if (XXH64_digest(&st) != le64(p + 24))
		return "checksum mismatch";
	return NULL;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++)
		if (p[k])
			return false;
	return true;
}

/* Valid records after a failure at off (lsn after the last good one):
 * the first such record's lsn in *first, how many in a row. */
static uint64_t valid_after(const struct seg *s, uint64_t off, uint64_t last, uint64_t *first,
			    uint64_t *lastv)
{
	for (uint64_t o = off + 8; o + WAL_REC_HDR_SIZE <= s->m.len; o += 8) {
		const uint8_t *p = s->m.p + o;
		if (le32(p) != REC_MAGIC)
			continue;
		uint64_t lsn = le64(p + 8);
		if (lsn <= last || lsn > last + (1ull << 32) || rec_bad(s, o, lsn))
			continue;
		uint64_t n = 0;
		*first = lsn;
		while (o + WAL_REC_HDR_SIZE <= s->m.len && !rec_bad(s, o, lsn + n)) {
			o += rec_total(le32(s->m.p + o + 4));
			n++;
		}
		*lastv = lsn + n - 1;
		return n;
	}
	return 0;
}

static void describe_rec(const struct seg *s, uint64_t off, char *buf, size_t cap)
{
	const uint8_t *p = s->m.p + off;
	if (off + WAL_REC_HDR_SIZE > s->m.len || le32(p) != REC_MAGIC) {
		snprintf(buf, cap, "an unknown record");
		return;
	}
	uint16_t type;
	memcpy(&type, p + 16, 2);
	uint32_t len = le32(p + 4);
	if (type == WAL_REC_COMMIT && len >= 24 && off + WAL_REC_HDR_SIZE + 24 <= s->m.len) {
		uint32_t pid = le32(p + 32 + 16), nops = le32(p + 32 + 20);
		snprintf(buf, cap, "commit %" PRIu64 " (txn %" PRIu64 ", pid %u, %u ops)",
			 le64(p + 8), le64(p + 32), pid, nops);
	} else {
		snprintf(buf, cap, "record lsn %" PRIu64 " of type %u", le64(p + 8), type);
	}
}

/* A record walked in log order: counted, applied when after the
 * checkpoint (apply), shown to opts.record when its checksum holds. */
static int apply_rec(struct ctx *c, struct ns *ns, const struct seg *s, uint64_t off, bool apply,
		     bool sum_ok)
{
	const uint8_t *p = s->m.p + off;
	uint32_t len = le32(p + 4);
	uint16_t type;
	memcpy(&type, p + 16, 2);
	struct fsck_rec fr = {.lsn = le64(p + 8), .seg = s->num, .off = off, .type = type,
			      .payload = p + WAL_REC_HDR_SIZE, .len = len};
	c->r->records++;
	c->r->by_type[type < 8 ? type : 0]++;
	if (sum_ok && segok_add(c, s->num, off, off + rec_total(len)))
		return -ENOMEM;
	if (type == WAL_REC_COMMIT)
		c->r->commits++;
	struct rec_hdr hdr;
	if (type == WAL_REC_COMMIT && sum_ok && !rec_validate(fr.payload, len, &hdr) && hdr.txn) {
		if (c->ntxc == c->captxc) {
			uint32_t cap = c->captxc ? 2 * c->captxc : 16;
			void *n = realloc(c->txc, cap * sizeof(*c->txc));
			if (!n)
				return -ENOMEM;
			c->txc = n;
			c->captxc = cap;
		}
		c->txc[c->ntxc][0] = hdr.txn;
		c->txc[c->ntxc++][1] = fr.lsn;
	}
	if (type == WAL_REC_COMMIT && apply) {
		int err = ns_apply(ns, fr.payload, len, s->num, off + WAL_REC_HDR_SIZE, fr.lsn);
		if (err == -ENOMEM)
			return err;
		if (err) {
			char where[320];
			snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64, s->num, off);
			problem(c, false, "commit", where, "recovery refuses the store",
				"commit %" PRIu64 " checks out but does not apply (%s)", fr.lsn,
				txd_strerror(err));
			c->stop_repair = true;
		}
	} else if (apply && (type < WAL_REC_COMMIT || type > WAL_REC_RESOLVE)) {
		char where[320];
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64, s->num, off);
		problem(c, false, "wal", where, "recovery refuses the store (rec.h: unknown type)",
			"record %" PRIu64 " has unknown type %u", fr.lsn, type);
		c->stop_repair = true;
	}
	if (c->o->record && !c->stopped && sum_ok)
		c->stopped = c->o->record(c->o->arg, &fr);
	return 0;
}

/* A record at off of segment s fails: torn tail, or damage in the middle. */
static void rec_failed(struct ctx *c, const struct seg *s, uint64_t off, uint64_t last,
		       const char *why, bool is_last, const struct seg *next)
{
	char where[320], aff[512], desc[160];
	snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64, s->num, off);
	describe_rec(s, off, desc, sizeof(desc));
	uint64_t first = 0, lastv = 0, n = valid_after(s, off, last, &first, &lastv);
	if (!is_last && !next->pending) {
		/* W3: the next segment's settled header vouches for records up
		 * to its prev_end_lsn */
		snprintf(aff, sizeof(aff),
			 "records %" PRIu64 "..%" PRIu64 " (durable, vouched for by seg-%08u) "
			 "and every later record: recovery refuses the store",
			 last + 1, next->prev_end, next->num);
		problem(c, false, "wal", where, aff, "%s: %s (lsn %" PRIu64 " expected)", desc, why,
			last + 1);
		c->stop_repair = true;
		return;
	}
	if (n) {
		/* Also what a power cut leaves when the page cache wrote the
		 * unsynced tail out of order (faultos.h): nothing tells the two
		 * apart, so nothing checksummed is dropped here. */
		snprintf(aff, sizeof(aff),
			 "%" PRIu64 " valid records after it (lsn %" PRIu64 "..%" PRIu64
			 ") that recovery would drop with it: --repair leaves it (after a "
			 "power cut these may be writes that never all reached the disk, and "
			 "mounting after the reboot drops them; in the boot that wrote them "
			 "it is damage, and mounting refuses the store)",
			 n, first, lastv);
		problem(c, false, "wal", where, aff, "damage in the middle of the log: %s: %s", desc,
			why);
		c->stop_repair = true;
		return;
	}
	if (is_last && all_zero(s->m.p + off, s->m.len - off))
		return; /* the clean end: zeros ahead (W7) */
	if (is_last)
		snprintf(aff, sizeof(aff), "nothing committed: recovery ends the log at lsn %" PRIu64,
			 last);
	else
		snprintf(aff, sizeof(aff),
			 "nothing reported durable: recovery ends the log at lsn %" PRIu64
			 " and deletes seg-%08u and later (unsettled, W4)", last, next->num);
	problem(c, true, "torn-tail", where, aff, "torn tail: %s: %s", desc, why);
}

int fsck_segment_check(const char *path, uint32_t num, uint64_t after, uint64_t upto,
		       struct fsck_seg_check *out)
{
	struct seg s = {.num = num};
	memset(out, 0, sizeof(*out));
	int err = seg_hdr(path, &s);
	if (err)
		return err;
	if (!s.ok) {
		out->header_bad = true;
		return 0;
	}
	out->first_lsn = s.first_lsn;
	out->last_lsn = s.first_lsn - 1;
	if (s.first_lsn > upto)
		return 0;
	if ((err = map_file(path, &s.m)))
		return err;
	uint64_t off = WAL_SEG_HDR_SIZE;
	while (out->last_lsn < upto) {
		const char *why = rec_bad(&s, off, out->last_lsn + 1);
		if (why) {
			/* the caller's upto is what this segment must hold (the
			 * next one's first_lsn - 1, or the server's last lsn) */
			out->bad = true;
			out->bad_off = off;
			snprintf(out->why, sizeof(out->why), "%s", why);
			describe_rec(&s, off, out->desc, sizeof(out->desc));
			break;
		}
		uint64_t total = rec_total(le32(s.m.p + off + 4));
		if (++out->last_lsn > after)
			out->records++;
		out->bytes += total;
		off += total;
	}
	unmap(&s.m);
	return 0;
}

/* A segment before the one recovery starts in: every record up to limit
 * checked and counted; damage is reported, recovery does not read it. */
static int old_segment(struct ctx *c, const struct seg *s, uint64_t limit, uint64_t *lastp,
		       uint64_t after, struct ns *ns)
{
	uint64_t last = *lastp, off = WAL_SEG_HDR_SIZE;
	char where[320], desc[160];
	snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64, s->num, off);
	const char *why = s->first_lsn != last + 1 ? "first_lsn out of sequence" : NULL;
	while (!why && last < limit) {
		why = rec_bad(s, off, last + 1);
		if (why) {
			snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64, s->num, off);
			break;
		}
		last++;
		int err = apply_rec(c, ns, s, off, false, true);
		if (err)
			return err;
		off += rec_total(le32(s->m.p + off + 4));
	}
	if (why) {
		char aff[320];
		describe_rec(s, off, desc, sizeof(desc));
		snprintf(aff, sizeof(aff), "nothing recovery reads (checkpoint %" PRIu64 " holds its "
			 "effect); chunks in it still in use are reported below", after);
		problem(c, false, "wal", where, aff, "%s: %s", desc, why);
	}
	*lastp = last;
	return 0;
}

/* W4: the log ends at the first segment without a valid header; the
 * index of that segment (n when all are valid). */
static uint32_t seg_headers(struct ctx *c, const struct seg *s, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (s[i].ok)
			continue;
		char where[320];
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset 0", s[i].num);
		bool settled_after = false;
		for (uint32_t j = i + 1; j < n; j++)
			settled_after |= s[j].ok && !s[j].pending;
		if (settled_after) {
			problem(c, false, "wal", where,
				"every record of this segment and after: recovery refuses the store",
				"segment header invalid before a settled segment (W4)");
			c->stop_repair = true;
		} else {
			problem(c, true, "torn-tail", where,
				"nothing durable: recovery deletes it and the segments after it",
				"segment header invalid (an unsettled rotation, W4)");
		}
		return i;
	}
	return n;
}

/* Where replay starts (wal.c find_start) and, from there, where the chain
 * of consecutive segments ends (*end lowered). false on a hole between
 * the checkpoint and the log: nothing can be replayed. */
static bool seg_chain(struct ctx *c, const struct seg *s, uint64_t after, uint32_t *start,
		      uint32_t *end)
{
	*start = 0;
	if (*end && s[0].first_lsn > after + 1) {
		char where[320], aff[200];
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u", s[0].num);
		snprintf(aff, sizeof(aff), "commits %" PRIu64 "..%" PRIu64 ": recovery refuses the store",
			 after + 1, s[0].first_lsn - 1);
		problem(c, false, "wal", where, aff,
			"hole: the log starts at lsn %" PRIu64 ", the checkpoint ends at %" PRIu64,
			s[0].first_lsn, after);
		c->stop_repair = true;
		return false;
	}
	for (uint32_t i = 0; i < *end; i++)
		if (s[i].first_lsn <= after + 1)
			*start = i;
	for (uint32_t i = *start + 1; i < *end; i++) {
		if (s[i].num == s[i - 1].num + 1)
			continue;
		char where[320];
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u", s[i].num);
		if (s[i].pending) {
			problem(c, true, "torn-tail", where, "nothing durable (W4)",
				"gap before this unsettled segment (seg-%08u missing)", s[i - 1].num + 1);
		} else {
			problem(c, false, "wal", where, "its records and all after: recovery refuses "
				"the store", "segment seg-%08u is missing", s[i - 1].num + 1);
			c->stop_repair = true;
		}
		*end = i;
		break;
	}
	return true;
}

/* The records of segment s up to limit (next, when not NULL, is the
 * segment after it), as replay reads them from *last on. 1 when the log
 * ends in it (a failure reported), 0 to go on, or -errno. */
static int walk_segment(struct ctx *c, struct ns *ns, const struct seg *s, const struct seg *next,
			uint64_t after, uint64_t *last)
{
	uint64_t limit = next ? next->prev_end : UINT64_MAX;
	char where[320];
	if (s->first_lsn != *last + 1) {
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset 0", s->num);
		problem(c, false, "wal", where, "recovery refuses the store",
			"first_lsn %" PRIu64 " does not follow lsn %" PRIu64, s->first_lsn, *last);
		c->stop_repair = true;
		return 1;
	}
	for (uint64_t off = WAL_SEG_HDR_SIZE; *last < limit;) {
		const char *why = rec_bad(s, off, *last + 1);
		bool sum_ok = !why;
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64, s->num, off);
		if (why && *last + 1 <= after && !strcmp(why, "checksum mismatch")) {
			/* checkpointed: recovery walks it by magic, len, lsn */
			char desc[160], aff[320];
			describe_rec(s, off, desc, sizeof(desc));
			snprintf(aff, sizeof(aff),
				 "nothing recovery reads (checkpoint %" PRIu64 " holds its "
				 "effect); chunks in it still in use are reported below", after);
			problem(c, false, "wal", where, aff, "%s: checksum mismatch", desc);
			why = NULL;
		}
		if (why && *last < after) {
			problem(c, false, "wal", where, "recovery refuses the store",
				"the log ends at lsn %" PRIu64 " (%s), before checkpoint %" PRIu64,
				*last, why, after);
			c->stop_repair = true;
			return 1;
		}
		if (why) {
			rec_failed(c, s, off, *last, why, !next, next);
			return 1;
		}
		++*last;
		int err = apply_rec(c, ns, s, off, *last > after, sum_ok);
		if (err)
			return err;
		off += rec_total(le32(s->m.p + off + 4));
	}
	return 0;
}

static int check_wal(struct ctx *c, struct ns *ns, uint64_t after)
{
	char dir[4096];
	struct nums sn;
	snprintf(dir, sizeof(dir), "%s/" WAL_DIR, c->dir);
	int err = list_nums(dir, "seg-", "", false, &sn);
	if (err)
		return err;
	uint32_t n = sn.n;
	uint8_t *segbuf = NULL;
	uint64_t segcap = 0;
	struct seg *s = calloc(n + 1, sizeof(*s));
	if (!s) {
		free(sn.v);
		return -ENOMEM;
	}
	c->r->segments = n;
	for (uint32_t i = 0; i < n; i++) {
		char path[4200];
		s[i].num = (uint32_t)sn.v[i];
		snprintf(path, sizeof(path), "%s/seg-%08u", dir, s[i].num);
		if ((err = seg_hdr(path, &s[i])))
			goto out;
		c->r->wal_bytes += s[i].size;
		struct fsck_use *u = use_of(c, CHUNK_FILE_WAL | s[i].num);
		if (u)
			u->size = s[i].size;
	}
	uint32_t start, end = seg_headers(c, s, n);
	if (!seg_chain(c, s, after, &start, &end))
		goto out;
	/* Older segments recovery does not read (all checkpointed), as far
	 * back as they are consecutive: their records are checked and
	 * counted too, and damage there is reported without stopping. */
	uint32_t start0 = start;
	while (start0 > 0 && start0 < end && s[start0 - 1].num + 1 == s[start0].num &&
	       s[start0 - 1].first_lsn <= s[start0].first_lsn)
		start0--;
	uint64_t last = end ? s[start0].prev_end : after;
	c->r->first_lsn = end ? s[start0].first_lsn : after + 1;
	for (uint32_t i = start0; i < end; i++) {
		const struct seg *next = i + 1 < end ? &s[i + 1] : NULL;
		char path[4200];
		snprintf(path, sizeof(path), "%s/seg-%08u", dir, s[i].num);
		if (next) {
			char np[4200];
			snprintf(np, sizeof(np), "%s/seg-%08u", dir, next->num);
			prefetch(np);
		}
		if ((err = txd_os == &txd_os_real ? map_offline(path, &s[i].m)
						  : map_seg(path, &s[i].m, &segbuf, &segcap)))
			goto out;
		int r;
		if (i < start) {
			r = old_segment(c, &s[i], next->prev_end, &last, after, ns);
			last = next->prev_end;
		} else {
			r = walk_segment(c, ns, &s[i], next, after, &last);
		}
		if (s[i].m.mapped)
			unmap(&s[i].m);
		s[i].m = (struct map){0}; /* or borrowed segbuf */
		c->done_bytes += s[i].size;
		progress(c, true);
		if (r) {
			err = r < 0 ? r : 0;
			break;
		}
	}
	c->r->last_lsn = last;
out:
	free(segbuf);
	free(s);
	free(sn.v);
	return err;
}

/* ---- chunks (chunk.h) ------------------------------------------------------ */
/* Chunks are read through a window of their file, so the sequential
 * chunks of a large file cost one read per WINDOW bytes, not one per
 * chunk (fsck reads the whole store: its speed is the read floor's). */
#define WINDOW (4u << 20)

struct window {
	bool open;
	uint32_t file;   /* chunk_loc.file */
	int fd;          /* -1: the file is missing */
	uint64_t size, off, len;
	uint8_t *buf;
};

/* A chunk to read. They are read sorted by where their bytes are (one
 * sequential pass over each pack and segment, as e2fsck reads blocks in
 * order), not in the namespace's hash order, which made every chunk a
 * window read of its own (30x the read floor on 10,000 small files). */
struct todo {
	struct chunk_loc loc;
	uint64_t ino, idx;
};

struct chk {
	struct ctx *c;
	struct ns *ns;
	struct inode *in;
	struct window w;
	struct todo *t;
	uint64_t n, cap;
};

static void window_close(struct window *w)
{
	if (w->open && w->fd >= 0)
		txd_os->close(w->fd);
	w->open = false;
	w->len = 0;
}

/* The bytes of loc, checked against its checksum (chunk.h): 0 with *out
 * pointing into the window, -ENOENT (the file is gone), -EIO (short, or
 * the checksum fails), or -errno. */
static int window_read(struct chk *k, const struct chunk_loc *loc, const uint8_t **out)
{
	struct window *w = &k->w;
	if (!w->open || w->file != loc->file) {
		char path[4400];
		window_close(w);
		if (loc->file & CHUNK_FILE_WAL)
			snprintf(path, sizeof(path), "%s/" WAL_DIR "/seg-%08u", k->c->dir,
				 loc->file & ~CHUNK_FILE_WAL);
		else
			snprintf(path, sizeof(path), "%s/objects/pack-%06u", k->c->dir, loc->file);
		w->open = true;
		w->file = loc->file;
		w->size = 0;
		w->fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
		if (w->fd >= 0 && txd_os->fstat_size(w->fd, &w->size))
			w->size = 0;
		if (w->fd < 0 && w->fd != -ENOENT)
			return w->fd;
	}
	if (w->fd < 0)
		return -ENOENT;
	if (loc->off < w->off || loc->off + loc->len > w->off + w->len) {
		if (loc->off + loc->len > w->size)
			return -EIO;
		uint64_t n = w->size - loc->off < WINDOW ? w->size - loc->off : WINDOW;
		w->len = 0;
		int err = os_pread_full(w->fd, w->buf, n, (off_t)loc->off);
		if (err)
			return err;
		w->off = loc->off;
		w->len = n;
	}
	*out = w->buf + (loc->off - w->off);
	return chunk_checksum(*out, loc->len) == loc->csum ? 0 : -EIO;
}

/* A chunk's bytes in a pack count as live (what GC could not free). */
static void note_live(struct ctx *c, const struct chunk_loc *loc)
{
	struct fsck_use *u = use_of(c, loc->file);
	if (u)
		u->live += loc->len;
	if (!(loc->file & CHUNK_FILE_WAL))
		c->r->pack_live_bytes += loc->len;
}

static int count_chunk(void *arg, uint64_t idx, struct chunk *ch)
{
	struct chk *k = arg;
	struct chunk_loc loc;
	chunk_get_loc(ch, &loc);
	note_live(k->c, &loc);
	if (k->c->o->skip_chunks)
		return 0;
	if (k->n == k->cap) {
		uint64_t cap = k->cap ? 2 * k->cap : 1024;
		struct todo *n = realloc(k->t, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		k->t = n;
		k->cap = cap;
	}
	k->t[k->n++] = (struct todo){.loc = loc, .ino = k->in->ino, .idx = idx};
	return 0;
}

static int cmp_todo(const void *a, const void *b)
{
	const struct chunk_loc *x = &((const struct todo *)a)->loc, *y = &((const struct todo *)b)->loc;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int check_chunk(struct chk *k, const struct todo *t)
{
	const struct chunk_loc *loc = &t->loc;
	const uint8_t *bytes;
	k->c->r->chunks++;
	k->c->r->chunk_bytes += loc->len;
	if ((loc->file & CHUNK_FILE_WAL) &&
	    segok_has(k->c, loc->file & ~CHUNK_FILE_WAL, loc->off, loc->len))
		return 0; /* F5: verified with its record */
	int err = window_read(k, loc, &bytes);
	k->c->done_bytes += loc->len;
	progress(k->c, false);
	if (!err)
		return 0;
	if (err != -ENOENT && err != -EIO)
		return err; /* operational */
	char where[320], aff[512], path[400];
	if (loc->file & CHUNK_FILE_WAL)
		snprintf(where, sizeof(where), WAL_DIR "/seg-%08u offset %" PRIu64 " length %u",
			 loc->file & ~CHUNK_FILE_WAL, loc->off, loc->len);
	else
		snprintf(where, sizeof(where), "objects/pack-%06u offset %" PRIu64 " length %u",
			 loc->file, loc->off, loc->len);
	ns_path(k->ns, ns_inode(k->ns, t->ino), path, sizeof(path));
	snprintf(aff, sizeof(aff), "file %s (inode %" PRIu64 "), bytes %" PRIu64 "..%" PRIu64
		 " read as EIO", path, t->ino, t->idx << TXD_CHUNK_SHIFT,
		 (t->idx << TXD_CHUNK_SHIFT) + loc->len - 1);
	problem(k->c, false, "chunk", where, aff, "chunk %s",
		err == -ENOENT ? "missing (its file is gone)" : "checksum mismatch or short file");
	return 0;
}

static int check_inode(void *arg, struct inode *in)
{
	struct chk *k = arg;
	struct iver *v = in->head;
	if (!v || v->nlink == 0)
		return 0;
	if (S_ISDIR(v->mode)) {
		k->c->r->dirs++;
		return 0;
	}
	if (!S_ISREG(v->mode)) {
		k->c->r->others++;
		return 0;
	}
	k->c->r->files++;
	k->c->r->live_bytes += v->size;
	k->in = in;
	return cmap_walk(v->map, 0, count_chunk, k);
}

static int check_chunks(struct ctx *c, struct ns *ns)
{
	struct chk k = {.c = c, .ns = ns};
	if (!c->o->skip_chunks && !(k.w.buf = malloc(WINDOW)))
		return -ENOMEM;
	int err = ns_walk(ns, check_inode, &k);
	if (!err && k.n)
		qsort(k.t, k.n, sizeof(*k.t), cmp_todo);
	for (uint64_t i = 0; !err && i < k.n; i++)
		err = check_chunk(&k, &k.t[i]);
	progress(c, true);
	window_close(&k.w);
	free(k.w.buf);
	free(k.t);
	return err;
}

/* ---- the commits log (clog.h C1, C3) --------------------------------------- */
static int check_clog(struct ctx *c)
{
	char path[4096];
	struct map m;
	snprintf(path, sizeof(path), "%s/" CLOG_PATH, c->dir);
	int err = map_file(path, &m);
	if (err)
		return err == -ENOENT ? 0 : err;
	uint64_t at = 0, prev = 0;
	while (at < m.len) {
		char where[320];
		snprintf(where, sizeof(where), CLOG_PATH " offset %" PRIu64, at);
		const char *why = NULL;
		uint32_t blen = 0;
		uint64_t id = 0;
		if (at + 16 + 32 > m.len)
			why = "torn record";
		else {
			blen = le32(m.p + at + 4);
			if (le32(m.p + at) != CLOG_MAGIC || blen < 32 || at + 16 + blen > m.len)
				why = "bad magic or length";
			else if (XXH64(m.p + at + 16, blen, 0) != le64(m.p + at + 8))
				why = "checksum mismatch";
			else if ((id = le64(m.p + at + 16)) <= prev)
				why = "commit id out of order (C1)";
		}
		if (!why && id > c->r->last_lsn)
			why = "names a commit the log does not hold";
		if (why) {
			problem(c, true, "commits-log", where,
				".txdir/commits: recovery cuts the log here and notes again the "
				"commits it replays (after the checkpoint); older ones stay out",
				"%s (after commit %" PRIu64 ")", why, prev);
			break;
		}
		prev = id;
		c->r->clog_records++;
		at += 16 + blen;
	}
	unmap(&m);
	return 0;
}

/* ---- transaction records (txn.h T9) ---------------------------------------- */
static const char *jstr(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
	return cJSON_IsString(v) ? v->valuestring : "";
}

/* Each dtc/transactions/ID.json: JSON naming its id; "committed" with a
 * commit the log holds (carrying its txn id, when still in the log);
 * "active" ones and commits beyond the log are what recovery settles. */
static int check_txn_records(struct ctx *c)
{
	char dir[4096];
	struct nums ids;
	snprintf(dir, sizeof(dir), "%s/" TXN_DIR, c->dir);
	int err = list_nums(dir, "", ".json", false, &ids);
	for (uint32_t k = 0; !err && k < ids.n; k++) {
		uint64_t id = ids.v[k];
		char path[4400], where[320], *text = NULL;
		snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", dir, id);
		snprintf(where, sizeof(where), TXN_DIR "/%" PRIu64 ".json", id);
		struct map m;
		if ((err = map_file(path, &m)))
			break;
		if (m.len && (text = strndup((const char *)m.p, m.len)) == NULL)
			err = -ENOMEM;
		unmap(&m);
		cJSON *j = text ? json_parse_str(text) : NULL;
		free(text);
		const cJSON *txid = j ? cJSON_GetObjectItemCaseSensitive(j, "txid") : NULL;
		const cJSON *commit = j ? cJSON_GetObjectItemCaseSensitive(j, "commit") : NULL;
		const char *state = j ? jstr(j, "state") : "";
		char aff[200];
		snprintf(aff, sizeof(aff), "transaction %" PRIu64 "'s record (.txdir/txn, "
			 "dtc/transactions)", id);
		if (!cJSON_IsObject(j) || !cJSON_IsNumber(txid) || (uint64_t)txid->valuedouble != id) {
			problem(c, false, "txn-record", where, aff,
				"not a transaction record (JSON with \"txid\": %" PRIu64 ")", id);
		} else if (!strcmp(state, "active")) {
			c->note = true; /* F4: not damage */
			problem(c, true, "txn-record", where, aff,
				"left active by a stop or crash: recovery settles it at the next "
				"mount (committed if the log holds its commit, else aborted restart), "
				"as --repair does now");
		} else if (!strcmp(state, "committed") && cJSON_IsNumber(commit)) {
			uint64_t lsn = (uint64_t)commit->valuedouble;
			bool held = false, other = false;
			for (uint32_t k = 0; k < c->ntxc; k++) {
				held |= c->txc[k][1] == lsn && c->txc[k][0] == id;
				other |= c->txc[k][1] == lsn && c->txc[k][0] != id;
			}
			if (lsn > c->r->last_lsn)
				problem(c, true, "txn-record", where, aff,
					"says committed as commit %" PRIu64 ", beyond the log (lsn %" PRIu64
					"): recovery marks it aborted restart", lsn, c->r->last_lsn);
			else if (other || (!held && lsn >= c->r->first_lsn))
				problem(c, false, "txn-record", where, aff,
					"says committed as commit %" PRIu64 ", which the log holds for "
					"another transaction", lsn);
		}
		cJSON_Delete(j);
	}
	free(ids.v);
	return err;
}

/* ---- the store ------------------------------------------------------------- */
/* The store's size on disk (stat only, as os_find_shared: outside the
 * table). nftw has no argument: the sum of one walk (fsck is one thread's). */
static uint64_t fsck_sum_bytes;

static int sum_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	if (S_ISREG(st->st_mode))
		fsck_sum_bytes += (uint64_t)st->st_size;
	return 0;
}

static int read_format(const char *dir, unsigned *fmt)
{
	char path[4096], *buf = NULL;
	snprintf(path, sizeof(path), "%s/FORMAT", dir);
	int err = os_read_file(path, &buf, NULL);
	struct stat st;
	if (err == -ENOENT && stat(dir, &st)) /* no directory at all: say that */
		return -errno;
	if (err)
		return err == -ENOENT ? -TXD_ENOTSTORE : err;
	unsigned v;
	char nl;
	int n = sscanf(buf, "txdir-store %u%c", &v, &nl);
	free(buf);
	if (n != 2 || nl != '\n' || v < 1 || v > STORE_FORMAT_VERSION)
		return -TXD_EFORMAT;
	*fmt = v;
	return 0;
}

/* LOCK_SH (LOCK_EX for repair): a server holds LOCK_EX while it runs. */
static int lock_store(const char *dir, int how, pid_t *holder, int *fd_out)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	*fd_out = -1;
	int fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd; /* never opened: nobody holds it */
	int err = txd_os->flock(fd, how | LOCK_NB);
	if (err) {
		char buf[32] = {0};
		if (txd_os->pread(fd, buf, sizeof(buf) - 1, 0) > 0)
			*holder = (pid_t)atol(buf);
		txd_os->close(fd);
		return err == -EWOULDBLOCK ? -TXD_ELOCKED : err;
	}
	*fd_out = fd;
	return 0;
}

/* Add ino to the open-addressing set (cap a power of two, 0 = empty);
 * true if it was there already. */
static bool seen_add(uint64_t *set, uint64_t cap, uint64_t ino)
{
	uint64_t h = (ino * 0x9e3779b97f4a7c15ull) & (cap - 1);
	while (set[h] && set[h] != ino)
		h = (h + 1) & (cap - 1);
	bool was = set[h] == ino;
	set[h] = ino;
	return was;
}

/* Every directory that is linked (nlink > 0) must be reachable from the
 * root: two moves that each put a directory inside the other would leave
 * both (and their files) cut off the tree, a cycle no lookup reaches
 * (txn.c's commit refuses that since; a store written before may hold one). */
static void check_tree(struct ctx *c, struct ns *ns)
{
	uint64_t cap = 1024, n = 0, head = 0, *queue = malloc(cap * sizeof(*queue));
	uint64_t setcap = 1;
	while (setcap < 4 * ns->ninodes + 64)
		setcap <<= 1;
	uint64_t *set = calloc(setcap, sizeof(*set)); /* reached directory inos (0: empty) */
	if (!queue || !set)
		goto out;
	seen_add(set, setcap, NS_ROOT_INO);
	queue[n++] = NS_ROOT_INO;
	while (head < n) {
		struct inode *d = ns_inode(ns, queue[head++]);
		if (!d || !d->dir)
			continue;
		for (struct dent *e = ns_dir_next(d->dir, 0); e; e = ns_dir_next(d->dir, e->cookie)) {
			struct inode *ch = e->ino ? ns_inode(ns, e->ino) : NULL;
			if (!ch || !ch->dir || seen_add(set, setcap, e->ino))
				continue;
			if (n == cap) {
				uint64_t *nq = realloc(queue, 2 * cap * sizeof(*nq));
				if (!nq)
					goto out;
				queue = nq;
				cap *= 2;
			}
			queue[n++] = e->ino;
		}
	}
	for (uint64_t b = 0; b < ns->tabsize; b++)
		for (struct inode *in = ns->tab[b]; in; in = in->hnext) {
			if (!in->dir || !in->head || in->head->nlink == 0 || seen_add(set, setcap, in->ino))
				continue;
			char where[64];
			snprintf(where, sizeof(where), "directory inode %" PRIu64, in->ino);
			problem(c, false, "tree", where,
				"it and everything below it are unreachable from / (in a cycle of "
				"directories or under one); --repair leaves it",
				"directory not reachable from the root");
		}
out:
	free(queue);
	free(set);
}

/* One pass over the whole store; problems into c->f. */
static int check_pass(struct ctx *c)
{
	struct fsck_result *r = c->r;
	c->done_bytes = c->last_report = 0;
	segok_free(c);
	int err = read_format(c->dir, &r->format);
	if (err)
		return err;
	fsck_sum_bytes = 0;
	nftw(c->dir, sum_size, 16, FTW_PHYS);
	r->store_bytes = fsck_sum_bytes;

	char bad[4096];
	mode_t mode = 0;
	if (store_check_private(c->dir, bad, sizeof(bad), &mode) == 1) {
		const char *rel = strncmp(bad, c->dir, strlen(c->dir)) == 0 ? bad + strlen(c->dir) : bad;
		while (*rel == '/')
			rel++;
		problem(c, false, "permissions", *rel ? rel : ".",
			"txdirfs refuses to mount it (store.h S4): chmod go-rwx it, or mount with "
			"-o allow_shared_store",
			"others can %s it (mode %04o)", (mode & 0066) & 0022 ? "write" : "read",
			(unsigned)(mode & 07777));
	}

	char obj[4096];
	struct nums pk;
	snprintf(obj, sizeof(obj), "%s/objects", c->dir);
	if ((err = list_nums(obj, "pack-", "", false, &pk)))
		return err;
	r->packs = pk.n;
	for (uint32_t k = 0; k < pk.n; k++) {
		char path[4200];
		struct stat st;
		snprintf(path, sizeof(path), "%s/pack-%06u", obj, (unsigned)pk.v[k]);
		if (stat(path, &st))
			continue;
		r->pack_bytes += (uint64_t)st.st_size;
		struct fsck_use *u = use_of(c, (uint32_t)pk.v[k]);
		if (u)
			u->size = (uint64_t)st.st_size;
	}
	free(pk.v);

	struct ns *ns = &r->ns;
	if ((err = ns_init(ns)))
		return err;
	r->have_ns = true;
	struct nums ck;
	err = check_ckpts(c, ns, &ck, &r->ckpt_lsn);
	free(ck.v);
	bool refused = c->stop_repair;
	c->stop_repair = false;
	if (!err)
		err = check_wal(c, ns, r->ckpt_lsn);
	/* F6: an invalid checkpoint is a note when recovery needs nothing of
	 * it: a newer one is used, or the log it replays (no hole, nothing it
	 * refuses or loses) reaches past the checkpoint's lsn */
	for (uint32_t k = 0; !err && k < c->nf; k++) {
		uint64_t l = c->f[k].ckpt;
		if (l && (l <= r->ckpt_lsn || (!c->stop_repair && r->last_lsn >= l)))
			c->f[k].note = true;
	}
	c->stop_repair |= refused;
	if (!err) {
		ns_drop_unlinked(ns);
		check_tree(c, ns);
		err = check_chunks(c, ns);
	}
	if (!err)
		note_gc(c);
	if (!err)
		err = check_clog(c);
	if (!err)
		err = check_txn_records(c);
	return err ? err : c->stopped;
}

static void free_pass(struct ctx *c)
{
	if (c->r->have_ns && !c->o->keep_ns) {
		ns_destroy(&c->r->ns);
		c->r->have_ns = false;
	}
}

static bool same(const struct found *a, const struct found *b)
{
	return !strcmp(a->p.kind, b->p.kind) && !strcmp(a->p.where, b->p.where);
}

/* --repair: what recovery does anyway, then drop invalid newer checkpoints. */
static int repair(struct ctx *c)
{
	struct txd_opts o = {.durability = TXD_DUR_FSYNC};
	struct txd_fs *fs = NULL;
	pid_t holder = 0;
	for (uint32_t k = 0; k < c->nf; k++) {
		if (strcmp(c->f[k].p.kind, "checkpoint") || !c->f[k].fixable)
			continue;
		char path[4400];
		snprintf(path, sizeof(path), "%s/%s", c->dir, c->f[k].p.where);
		char *sp = strstr(path, " offset");
		if (sp)
			*sp = 0;
		int err = txd_os->unlink(path);
		if (err && err != -ENOENT)
			return err;
	}
	int err = txd_fs_open(c->dir, &o, &fs, &holder);
	if (err == -TXD_ELOCKED)
		c->r->holder = holder;
	if (err)
		return err;
	txd_fs_close(fs);
	return 0;
}

int fsck_run(const char *dir, const struct fsck_opts *o, struct fsck_result *r)
{
	memset(r, 0, sizeof(*r));
	struct ctx c = {.dir = dir, .o = o, .r = r};
	unsigned fmt;
	int err = read_format(dir, &fmt);
	if (err)
		return err;
	int lfd;
	if ((err = lock_store(dir, LOCK_SH, &r->holder, &lfd)))
		return err;
	err = check_pass(&c);
	if (lfd >= 0)
		txd_os->close(lfd);
	bool fixable = false;
	for (uint32_t k = 0; k < c.nf; k++)
		fixable |= c.f[k].fixable;
	if (!err && o->repair && fixable && !c.stop_repair) {
		struct found *before = c.f;
		uint32_t nbefore = c.nf;
		free_pass(&c);
		if (r->have_ns)
			ns_destroy(&r->ns);
		free(r->uses);
		memset(r, 0, sizeof(*r));
		c.use_hint = 0;
		c.f = NULL;
		c.nf = c.capf = 0;
		c.ntxc = 0;
		if (!(err = repair(&c)) && !(err = lock_store(dir, LOCK_SH, &r->holder, &lfd))) {
			err = check_pass(&c);
			if (lfd >= 0)
				txd_os->close(lfd);
		}
		for (uint32_t k = 0; !err && k < nbefore; k++) {
			bool still = false;
			for (uint32_t j = 0; j < c.nf; j++)
				still |= same(&before[k], &c.f[j]);
			if (!still && before[k].fixable && o->report) {
				before[k].p.sev = FSCK_FIXED;
				o->report(o->arg, &before[k].p);
				r->fixed++;
			}
		}
		free(before);
	}
	for (uint32_t k = 0; !err && k < c.nf; k++) {
		c.f[k].p.sev = c.f[k].note ? FSCK_NOTE : FSCK_ERROR;
		if (c.f[k].note)
			r->notes++;
		else
			r->errors++;
		if (o->report)
			o->report(o->arg, &c.f[k].p);
	}
	free(c.f);
	free(c.txc);
	segok_free(&c);
	free_pass(&c);
	return err;
}

void fsck_result_free(struct fsck_result *r)
{
	if (r->have_ns)
		ns_destroy(&r->ns);
	r->have_ns = false;
	free(r->uses);
	r->uses = NULL;
	r->nuses = 0;
}
