/*
 * scrub.c — online verification (scrub.h): a background thread that reads
 * the log and every live chunk, in bounded holds of fs->lock (S1).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "chunk.h"
#include "core.h"
#include "events.h"
#include "fsck.h"
#include "json.h"
#include "ns.h"
#include "os.h"
#include "scrub.h"
#include "wal.h"

enum scrub_state { SCRUB_IDLE, SCRUB_RUNNING, SCRUB_DONE, SCRUB_CANCELLED, SCRUB_FAILED };

static const char *const state_names[] = {"idle", "running", "done", "cancelled", "failed"};

struct scrub_problem {
	const char *kind;  /* "chunk", "wal" */
	char where[320];   /* a store file (relative) and an offset */
	char what[256];
	char path[1024];   /* the file it affects ("": none; hidden per reader) */
	char affects[256]; /* the rest of what it affects */
};

struct scrub {
	struct txd_fs *fs;
	pthread_mutex_t lock; /* scrub.h: a leaf */
	pthread_cond_t cv;    /* stop, for the throttle's sleep */
	pthread_t thread;
	bool joinable, stop;
	/* the current (or last) run, under lock */
	enum scrub_state state;
	uint64_t id, rate;
	uint32_t uid;
	uint64_t started_ns, ended_ns, t0;
	const char *phase;    /* "plan", "wal", "chunks" */
	uint64_t records_total, records_done, bytes_total, bytes_done;
	uint64_t files_total, files_done, chunks_done;
	uint64_t from_lsn, upto_lsn;
	int err;              /* failed: why */
	struct scrub_problem *probs;
	uint32_t nprobs, capprobs;
	uint64_t errors;      /* this run's (all, not only those kept) */
	uint64_t errors_total, runs_total; /* since the server started */
};

/* ---- progress ------------------------------------------------------------------ */
static void add_progress(struct scrub *sc, uint64_t records, uint64_t bytes, uint64_t chunks,
			 uint64_t files)
{
	pthread_mutex_lock(&sc->lock);
	sc->records_done += records;
	sc->bytes_done += bytes;
	sc->chunks_done += chunks;
	sc->files_done += files;
	pthread_mutex_unlock(&sc->lock);
}

static void set_phase(struct scrub *sc, const char *phase)
{
	pthread_mutex_lock(&sc->lock);
	sc->phase = phase;
	pthread_mutex_unlock(&sc->lock);
}

static bool stopping(struct scrub *sc)
{
	pthread_mutex_lock(&sc->lock);
	bool s = sc->stop;
	pthread_mutex_unlock(&sc->lock);
	return s;
}

/* S4: sleep until bytes_done is not ahead of rate over the run, or a stop. */
static void throttle(struct scrub *sc)
{
	pthread_mutex_lock(&sc->lock);
	while (sc->rate && !sc->stop) {
		uint64_t now = txd_os->now_monotonic_ns();
		uint64_t due = sc->t0 + (uint64_t)((double)sc->bytes_done * 1e9 / (double)sc->rate);
		if (due <= now)
			break;
		uint64_t wait = due - now < 250000000ull ? due - now : 250000000ull;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t at = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + wait;
		ts.tv_sec = (time_t)(at / 1000000000ull);
		ts.tv_nsec = (long)(at % 1000000000ull);
		pthread_cond_timedwait(&sc->cv, &sc->lock, &ts);
	}
	pthread_mutex_unlock(&sc->lock);
}

/* S5: a problem into the report, the events (fs->lock held) and the count. */
static void problem(struct scrub *sc, struct scrub_problem *p)
{
	struct txd_fs *fs = sc->fs;
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "kind", p->kind);
	cJSON_AddStringToObject(f, "where", p->where);
	cJSON_AddStringToObject(f, "what", p->what);
	if (p->path[0])
		cJSON_AddStringToObject(f, "path", p->path);
	ev_emit(fs->events, fs_now_ns(), "scrub_error", f);
	pthread_mutex_lock(&sc->lock);
	sc->errors++;
	sc->errors_total++;
	if (sc->nprobs == sc->capprobs && sc->capprobs < SCRUB_MAX_PROBLEMS) {
		uint32_t cap = sc->capprobs ? 2 * sc->capprobs : 8;
		struct scrub_problem *n = realloc(sc->probs, cap * sizeof(*n));
		if (n) {
			sc->probs = n;
			sc->capprobs = cap;
		}
	}
	if (sc->nprobs < sc->capprobs)
		sc->probs[sc->nprobs++] = *p;
	pthread_mutex_unlock(&sc->lock);
}

/* ---- plan: the totals, for progress and ETA ------------------------------------- */
static int plan(struct scrub *sc, uint64_t *max_ino)
{
	struct txd_fs *fs = sc->fs;
	pthread_mutex_lock(&fs->lock);
	uint64_t upto = wal_last_lsn(fs->wal), from = fs->ckpt_lsn + 1;
	*max_ino = fs->ns.next_ino;
	pthread_mutex_unlock(&fs->lock);
	uint64_t files = 0, bytes = 0;
	for (uint64_t ino = NS_ROOT_INO; ino < *max_ino && !stopping(sc);) {
		pthread_mutex_lock(&fs->lock);
		for (uint64_t end = ino + SCRUB_INODES; ino < end && ino < *max_ino; ino++) {
			struct inode *in = ns_inode(&fs->ns, ino);
			const struct iver *v = in ? in->head : NULL;
			if (!v || !v->nlink || !S_ISREG(v->mode))
				continue;
			files++;
			bytes += v->stored;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	pthread_mutex_lock(&sc->lock);
	sc->from_lsn = from;
	sc->upto_lsn = upto;
	sc->records_total = upto >= from ? upto - from + 1 : 0;
	sc->files_total = files;
	sc->bytes_total += bytes;
	pthread_mutex_unlock(&sc->lock);
	return 0;
}

/* ---- the log ----------------------------------------------------------------------- */
struct segs {
	uint32_t *v;
	uint32_t n, cap;
};

static int seg_cb(const char *name, void *arg)
{
	struct segs *s = arg;
	char *end;
	if (strncmp(name, "seg-", 4) != 0)
		return 0;
	unsigned long v = strtoul(name + 4, &end, 10);
	if (end == name + 4 || *end)
		return 0; /* .tmp and others */
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? 2 * s->cap : 16;
		uint32_t *n = realloc(s->v, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->v = n;
		s->cap = cap;
	}
	s->v[s->n++] = (uint32_t)v;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Each segment must hold the records up to the next one's first_lsn - 1
 * (the last one: up to the lsn the scrub began at). */
static int check_wal(struct scrub *sc)
{
	struct txd_fs *fs = sc->fs;
	struct segs s = {0};
	const char *dir = fs->store.wal_dir;
	int err = txd_os->listdir(dir, seg_cb, &s);
	if (err)
		goto out;
	qsort(s.v, s.n, sizeof(*s.v), cmp_u32);
	uint64_t *first = calloc(s.n + 1, sizeof(*first));
	if (!first) {
		err = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < s.n; i++) {
		char path[4200];
		struct fsck_seg_check c;
		snprintf(path, sizeof(path), "%s/seg-%08u", dir, s.v[i]);
		int e = fsck_segment_check(path, s.v[i], 0, 0, &c);
		first[i] = e || c.header_bad ? 0 : c.first_lsn;
	}
	uint64_t prev_last = 0; /* the last lsn the segments so far held */
	for (uint32_t i = 0; i < s.n && !stopping(sc); i++) {
		char path[4200];
		struct fsck_seg_check c;
		uint64_t upto = sc->upto_lsn;
		if (i + 1 < s.n && first[i + 1] && first[i + 1] - 1 < upto)
			upto = first[i + 1] - 1;
		snprintf(path, sizeof(path), "%s/seg-%08u", dir, s.v[i]);
		int e = fsck_segment_check(path, s.v[i], sc->from_lsn - 1, upto, &c);
		if (e == -ENOENT)
			continue; /* S2: dropped by a checkpoint meanwhile */
		if (e) {
			err = e;
			break;
		}
		pthread_mutex_lock(&sc->lock);
		sc->bytes_total += c.bytes; /* the log's records count as they are read */
		pthread_mutex_unlock(&sc->lock);
		add_progress(sc, c.records, c.bytes, 0, 0);
		if (c.header_bad && i > 0 && prev_last >= sc->upto_lsn)
			continue; /* begun after the scrub did (its header may be
				   * half-written yet): it holds nothing scrubbed */
		if (!c.header_bad)
			prev_last = c.last_lsn;
		if (c.header_bad || c.bad) {
			/* S2: still there? a checkpoint may have dropped it */
			struct fsck_seg_check again;
			if (fsck_segment_check(path, s.v[i], 0, 0, &again) == -ENOENT)
				continue;
			struct scrub_problem p = {.kind = "wal"};
			snprintf(p.where, sizeof(p.where), "coordination/dtc/wal/seg-%08u offset %" PRIu64,
				 s.v[i], c.header_bad ? 0 : c.bad_off);
			if (c.header_bad)
				snprintf(p.what, sizeof(p.what), "segment header invalid");
			else
				snprintf(p.what, sizeof(p.what), "%s: %s", c.desc, c.why);
			snprintf(p.affects, sizeof(p.affects),
				 c.last_lsn + 1 >= sc->from_lsn
					 ? "lsn %" PRIu64 " and later: the next mount's recovery ends the "
					   "log there (run mountctl fsck after unmounting)"
					 : "nothing recovery reads while checkpoint covers lsn %" PRIu64,
				 c.last_lsn + 1 >= sc->from_lsn ? c.last_lsn + 1 : sc->from_lsn - 1);
			pthread_mutex_lock(&fs->lock);
			problem(sc, &p);
			pthread_mutex_unlock(&fs->lock);
		}
		throttle(sc);
	}
	free(first);
out:
	free(s.v);
	return err;
}

/* ---- chunks --------------------------------------------------------------------------- */
struct item {
	uint64_t ino, idx;
	struct chunk_loc loc;
};

struct batch {
	struct item v[SCRUB_BATCH];
	uint32_t n;
	uint64_t ino, next_idx; /* where a full batch stopped */
};

static int collect(void *arg, uint64_t idx, struct chunk *ch)
{
	struct batch *b = arg;
	if (b->n == SCRUB_BATCH) {
		b->next_idx = idx;
		return 1;
	}
	b->v[b->n].ino = b->ino;
	b->v[b->n].idx = idx;
	chunk_get_loc(ch, &b->v[b->n].loc);
	b->n++;
	return 0;
}

/* S2: the damage holds under fs->lock now: report it with the file's path. */
static void chunk_failed(struct scrub *sc, const struct item *it, int err)
{
	struct txd_fs *fs = sc->fs;
	pthread_mutex_lock(&fs->lock);
	struct inode *in = ns_inode(&fs->ns, it->ino);
	const struct iver *v = in ? in->head : NULL;
	struct chunk *ch = v && v->nlink && S_ISREG(v->mode) ? cmap_get(v->map, it->idx) : NULL;
	struct chunk_loc now;
	if (ch)
		chunk_get_loc(ch, &now);
	if (ch && now.file == it->loc.file && now.off == it->loc.off && now.len == it->loc.len &&
	    now.csum == it->loc.csum) {
		struct scrub_problem p = {.kind = "chunk"};
		const struct chunk_loc *l = &it->loc;
		if (l->file & CHUNK_FILE_WAL)
			snprintf(p.where, sizeof(p.where),
				 "coordination/dtc/wal/seg-%08u offset %" PRIu64 " length %u",
				 l->file & ~CHUNK_FILE_WAL, l->off, l->len);
		else
			snprintf(p.where, sizeof(p.where), "objects/pack-%06u offset %" PRIu64 " length %u",
				 l->file, l->off, l->len);
		snprintf(p.what, sizeof(p.what), "chunk %s",
			 err == -ENOENT ? "missing (its file is gone)" : "checksum mismatch or short file");
		ns_path(&fs->ns, in, p.path, sizeof(p.path));
		snprintf(p.affects, sizeof(p.affects),
			 "inode %" PRIu64 ", bytes %" PRIu64 "..%" PRIu64 " read as EIO", it->ino,
			 it->idx << TXD_CHUNK_SHIFT, (it->idx << TXD_CHUNK_SHIFT) + l->len - 1);
		problem(sc, &p);
	}
	pthread_mutex_unlock(&fs->lock);
}

static int check_chunks(struct scrub *sc, uint64_t max_ino)
{
	struct txd_fs *fs = sc->fs;
	struct batch *b = malloc(sizeof(*b));
	uint8_t *buf = malloc(TXD_CHUNK_SIZE);
	int err = b && buf ? 0 : -ENOMEM;
	uint64_t ino = NS_ROOT_INO, idx = 0;
	while (!err && ino < max_ino && !stopping(sc)) {
		uint64_t files = 0;
		b->n = 0;
		/* S1: collect under the lock, read without it */
		pthread_mutex_lock(&fs->lock);
		for (uint32_t seen = 0; seen < SCRUB_INODES && b->n < SCRUB_BATCH && ino < max_ino;
		     seen++) {
			struct inode *in = ns_inode(&fs->ns, ino);
			const struct iver *v = in ? in->head : NULL;
			if (v && v->nlink && S_ISREG(v->mode)) {
				b->ino = ino;
				if (cmap_walk(v->map, idx, collect, b) == 1) {
					idx = b->next_idx;
					break; /* the batch is full: go on from idx */
				}
				files++;
			}
			ino++;
			idx = 0;
		}
		pthread_mutex_unlock(&fs->lock);
		uint64_t bytes = 0;
		for (uint32_t k = 0; k < b->n; k++) {
			int e = chunkstore_read(fs->cs, &b->v[k].loc, buf);
			bytes += b->v[k].loc.len;
			if (e == -EIO || e == -ENOENT)
				chunk_failed(sc, &b->v[k], e);
			else if (e)
				err = e;
		}
		add_progress(sc, 0, bytes, b->n, files);
		throttle(sc);
	}
	free(buf);
	free(b);
	return err;
}

/* ---- the thread ------------------------------------------------------------------------ */
static void emit_end(struct scrub *sc, enum scrub_state st)
{
	struct txd_fs *fs = sc->fs;
	cJSON *f = cJSON_CreateObject();
	pthread_mutex_lock(&sc->lock);
	ev_add_u64(f, "scrub", sc->id);
	ev_add_u64(f, "errors", sc->errors);
	ev_add_u64(f, "bytes", sc->bytes_done);
	ev_add_u64(f, "records", sc->records_done);
	pthread_mutex_unlock(&sc->lock);
	cJSON_AddStringToObject(f, "state", state_names[st]);
	pthread_mutex_lock(&fs->lock);
	ev_emit(fs->events, fs_now_ns(), "scrub_end", f);
	pthread_mutex_unlock(&fs->lock);
}

static void *scrub_main(void *arg)
{
	struct scrub *sc = arg;
	uint64_t max_ino = 0;
	set_phase(sc, "plan");
	int err = plan(sc, &max_ino);
	if (!err && !stopping(sc)) {
		set_phase(sc, "wal");
		err = check_wal(sc);
	}
	if (!err && !stopping(sc)) {
		set_phase(sc, "chunks");
		err = check_chunks(sc, max_ino);
	}
	enum scrub_state end = err ? SCRUB_FAILED : stopping(sc) ? SCRUB_CANCELLED : SCRUB_DONE;
	emit_end(sc, end); /* the last use of fs->lock: once the state is set,
			    * scrub_start may join this thread under it */
	pthread_mutex_lock(&sc->lock);
	sc->err = err;
	sc->state = end;
	sc->ended_ns = txd_os->now_realtime_ns();
	pthread_mutex_unlock(&sc->lock);
	return NULL;
}

static struct scrub *scrub_get(struct txd_fs *fs)
{
	if (fs->scrub)
		return fs->scrub;
	struct scrub *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return NULL;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sc->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&sc->lock, NULL);
	sc->fs = fs;
	sc->phase = "";
	fs->scrub = sc;
	return sc;
}

static bool may_run(uint32_t uid)
{
	return uid == 0 || uid == (uint32_t)geteuid(); /* S3: root or the server's user */
}

int scrub_start(struct txd_fs *fs, uint32_t uid, uint64_t rate)
{
	if (!may_run(uid))
		return -EPERM;
	struct scrub *sc = scrub_get(fs);
	if (!sc)
		return -ENOMEM;
	pthread_mutex_lock(&sc->lock);
	bool running = sc->state == SCRUB_RUNNING;
	pthread_mutex_unlock(&sc->lock);
	if (running)
		return -EBUSY;
	if (sc->joinable) /* ended: its thread no longer takes fs->lock */
		pthread_join(sc->thread, NULL);
	sc->joinable = false;
	pthread_mutex_lock(&sc->lock);
	sc->state = SCRUB_RUNNING;
	sc->stop = false;
	sc->id++;
	sc->runs_total++;
	sc->rate = rate;
	sc->uid = uid;
	sc->started_ns = txd_os->now_realtime_ns();
	sc->ended_ns = 0;
	sc->t0 = txd_os->now_monotonic_ns();
	sc->records_total = sc->records_done = sc->bytes_total = sc->bytes_done = 0;
	sc->files_total = sc->files_done = sc->chunks_done = 0;
	sc->from_lsn = sc->upto_lsn = 0;
	sc->err = 0;
	sc->errors = 0;
	sc->nprobs = 0;
	sc->phase = "plan";
	pthread_mutex_unlock(&sc->lock);
	int err = -pthread_create(&sc->thread, NULL, scrub_main, sc);
	if (!err) /* named, for ps and top -H (and the tests: no thread outlives close) */
		pthread_setname_np(sc->thread, "txd-scrub");
	pthread_mutex_lock(&sc->lock);
	if (err)
		sc->state = SCRUB_FAILED;
	sc->err = err;
	pthread_mutex_unlock(&sc->lock);
	sc->joinable = !err;
	if (!err) {
		cJSON *f = cJSON_CreateObject();
		ev_add_u64(f, "scrub", sc->id);
		ev_add_u64(f, "uid", uid);
		ev_add_u64(f, "rate", rate);
		ev_emit(fs->events, fs_now_ns(), "scrub_start", f);
	}
	return err;
}

int scrub_cancel(struct txd_fs *fs, uint32_t uid)
{
	if (!may_run(uid))
		return -EPERM;
	struct scrub *sc = fs->scrub;
	if (!sc)
		return -ENOENT;
	pthread_mutex_lock(&sc->lock);
	int err = sc->state == SCRUB_RUNNING ? 0 : -ENOENT;
	if (!err) {
		sc->stop = true;
		pthread_cond_broadcast(&sc->cv);
	}
	pthread_mutex_unlock(&sc->lock);
	return err;
}

char *scrub_render(struct txd_fs *fs, bool (*visible)(void *arg, const char *path), void *arg)
{
	struct scrub *sc = fs->scrub;
	cJSON *o = cJSON_CreateObject(), *probs = cJSON_CreateArray();
	if (!sc) {
		cJSON_AddStringToObject(o, "state", "idle");
		cJSON_AddNumberToObject(o, "id", 0);
		cJSON_AddItemToObject(o, "problems", probs);
		goto out;
	}
	pthread_mutex_lock(&sc->lock);
	uint64_t now = sc->state == SCRUB_RUNNING ? txd_os->now_realtime_ns() : sc->ended_ns;
	double elapsed = now > sc->started_ns ? (double)(now - sc->started_ns) / 1e9 : 0;
	char t[40];
	cJSON_AddNumberToObject(o, "id", (double)sc->id);
	cJSON_AddStringToObject(o, "state", state_names[sc->state]);
	cJSON_AddStringToObject(o, "phase", sc->phase);
	if (sc->started_ns) {
		ev_rfc3339(sc->started_ns, t, sizeof(t));
		cJSON_AddStringToObject(o, "started", t);
	}
	if (sc->ended_ns) {
		ev_rfc3339(sc->ended_ns, t, sizeof(t));
		cJSON_AddStringToObject(o, "ended", t);
	}
	cJSON_AddNumberToObject(o, "uid", sc->uid);
	cJSON_AddNumberToObject(o, "rate_limit_bytes", (double)sc->rate);
	cJSON_AddNumberToObject(o, "elapsed_s", elapsed);
	cJSON_AddNumberToObject(o, "rate_bytes", elapsed > 0 ? (double)sc->bytes_done / elapsed : 0);
	cJSON_AddNumberToObject(o, "from_lsn", (double)sc->from_lsn);
	cJSON_AddNumberToObject(o, "upto_lsn", (double)sc->upto_lsn);
	cJSON_AddNumberToObject(o, "records_total", (double)sc->records_total);
	cJSON_AddNumberToObject(o, "records_checked", (double)sc->records_done);
	cJSON_AddNumberToObject(o, "bytes_total", (double)sc->bytes_total);
	cJSON_AddNumberToObject(o, "bytes_checked", (double)sc->bytes_done);
	cJSON_AddNumberToObject(o, "files_total", (double)sc->files_total);
	cJSON_AddNumberToObject(o, "files_checked", (double)sc->files_done);
	cJSON_AddNumberToObject(o, "chunks_checked", (double)sc->chunks_done);
	cJSON_AddNumberToObject(o, "errors", (double)sc->errors);
	if (sc->state == SCRUB_FAILED)
		cJSON_AddStringToObject(o, "error", txd_strerror(sc->err));
	for (uint32_t k = 0; k < sc->nprobs; k++) {
		const struct scrub_problem *p = &sc->probs[k];
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "kind", p->kind);
		cJSON_AddStringToObject(j, "where", p->where);
		cJSON_AddStringToObject(j, "what", p->what);
		if (p->path[0])
			cJSON_AddStringToObject(j, "path",
						!visible || visible(arg, p->path) ? p->path : "(hidden)");
		cJSON_AddStringToObject(j, "affects", p->affects);
		cJSON_AddItemToArray(probs, j);
	}
	pthread_mutex_unlock(&sc->lock);
	cJSON_AddItemToObject(o, "problems", probs);
out:;
	char *txt = json_print(o, false);
	cJSON_Delete(o);
	char *line = txt ? malloc(strlen(txt) + 2) : NULL;
	if (line)
		sprintf(line, "%s\n", txt);
	free(txt);
	return line;
}

void scrub_stats(struct txd_fs *fs, void (*put)(void *arg, const char *text), void *arg)
{
	struct scrub *sc = fs->scrub;
	uint64_t errors = 0, runs = 0, running = 0;
	if (sc) {
		pthread_mutex_lock(&sc->lock);
		errors = sc->errors_total;
		runs = sc->runs_total;
		running = sc->state == SCRUB_RUNNING;
		pthread_mutex_unlock(&sc->lock);
	}
	char text[640];
	snprintf(text, sizeof(text),
		 "# HELP txdir_scrub_errors_total Problems found by online scrubs since start.\n"
		 "# TYPE txdir_scrub_errors_total counter\ntxdir_scrub_errors_total %" PRIu64 "\n"
		 "# HELP txdir_scrubs_total Online scrubs begun since start.\n"
		 "# TYPE txdir_scrubs_total counter\ntxdir_scrubs_total %" PRIu64 "\n"
		 "# HELP txdir_scrub_running 1 while an online scrub runs.\n"
		 "# TYPE txdir_scrub_running gauge\ntxdir_scrub_running %" PRIu64 "\n",
		 errors, runs, running);
	put(arg, text);
}

void scrub_free(struct txd_fs *fs)
{
	struct scrub *sc = fs->scrub;
	if (!sc)
		return;
	pthread_mutex_lock(&sc->lock);
	sc->stop = true;
	pthread_cond_broadcast(&sc->cv);
	pthread_mutex_unlock(&sc->lock);
	if (sc->joinable)
		pthread_join(sc->thread, NULL);
	pthread_cond_destroy(&sc->cv);
	pthread_mutex_destroy(&sc->lock);
	free(sc->probs);
	free(sc);
	fs->scrub = NULL;
}
