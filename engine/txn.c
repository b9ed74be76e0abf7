/*
 * txn.c — transactions: views, write sets, validation and the one-record
 * commit (design in txn.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <xxhash.h>

#include "chunk.h"
#include "ckpt.h"
#include "core.h"
#include "dtc.h"
#include "events.h"
#include "json.h"
#include "lease.h"
#include "os.h"
#include "rec.h"
#include "svc.h"
#include "txn.h"
#include "txn_i.h"
#include "util.h"
#include "wal.h"

#define TXN_BUSY_WAIT_MS 2000 /* how long a commit waits for writers in the view */
#define OP_HDR 8

/* status: one line (SPEC §4) — "aborted REASON key=value... path=P" with the
 * path last and escaped, so the line always parses. */
void txn_set_status(struct txn *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->status, sizeof(t->status), fmt, ap);
	va_end(ap);
}

/* A path for a status line: '\n' and '\\' escaped; NULL path: empty. */
const char *txn_esc_path(const char *path, char *buf, size_t cap)
{
	size_t n = 0;
	for (const char *p = path ? path : ""; *p && n + 3 < cap; p++) {
		if (*p == '\n' || *p == '\\') {
			buf[n++] = '\\';
			buf[n++] = *p == '\n' ? 'n' : '\\';
		} else {
			buf[n++] = *p;
		}
	}
	buf[n] = 0;
	return buf;
}

struct txn_restart {
	uint64_t *ids, *lsns; /* records active at the last stop; lsn once replayed */
	uint32_t n, cap;
};

/* ---- lifetime ------------------------------------------------------------------ */
void txn_get(struct txn *t)
{
	t->refs++;
}

struct txn_wait {
	struct txn_wait *next;
	pid_t pid;
	struct txn_fence fence; /* its lease name owned (strdup) */
	uint64_t deadline_ns;
	int err;
	void (*done)(void *arg, int err);
	void *arg;
};

void txn_free(struct txn *t)
{
	while (t->waits) { /* unmount: nobody is left to answer */
		struct txn_wait *w = t->waits;
		t->waits = w->next;
		free((char *)w->fence.lease);
		free(w);
	}
	ns_destroy(&t->ns);
	rec_release(&t->log);
	for (uint32_t k = 0; k < t->nkeys; k++)
		free(t->keys[k].name);
	free(t->keys);
	free(t->inos);
	free(t->dirs);
	free(t->keyidx.slot);
	free(t->inoidx.slot);
	free(t->diridx.slot);
	free(t->created);
	free(t->newidx.slot);
	free(t->name);
	free(t->proposal);
	free(t->participant);
	free(t->prep);
	free(t->pdirs);
	free(t->prmdirs);
	free(t);
}

static void txn_unlink(struct txd_fs *fs, struct txn *t)
{
	struct txn **pp = &fs->txns;
	while (*pp && *pp != t)
		pp = &(*pp)->next;
	if (*pp)
		*pp = t->next;
}

void txn_put(struct txd_fs *fs, struct txn *t)
{
	if (--t->refs > 0)
		return;
	txn_unlink(fs, t);
	txn_free(t);
}

void txn_free_all(struct txd_fs *fs)
{
	if (fs->txn_restart) { /* an open that failed during replay */
		free(fs->txn_restart->ids);
		free(fs->txn_restart->lsns);
		free(fs->txn_restart);
		fs->txn_restart = NULL;
	}
	while (fs->txns) {
		struct txn *t = fs->txns;
		fs->txns = t->next;
		txn_free(t);
	}
}

struct txn *txn_find(struct txd_fs *fs, const char *name)
{
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->listed && strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

struct txn *txn_by_id(struct txd_fs *fs, uint64_t id)
{
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

/* The derived record dtc/transactions/ID.json (SPEC §5, §7): written after
 * the outcome, never trusted over the log. The end record is durable: a
 * checkpoint drops the WAL segments that could re-derive it, and a lost
 * rewrite would leave "active", settled as "aborted restart" at the next
 * start although the transaction committed. */
static void txn_note_unsynced(struct txd_fs *fs, uint64_t id);

void txn_write_record(struct txd_fs *fs, const struct txn *t)
{
	char *dir, name[32], *json = txn_info_json(fs, t);
	snprintf(name, sizeof(name), "%" PRIu64 ".json", t->id);
	if (json && asprintf(&dir, "%s/dtc/transactions", fs->store.coord_dir) >= 0) {
		os_write_file(dir, name, json, strlen(json));
		if (t->state != TXN_ACTIVE) /* durable before the segments go */
			txn_note_unsynced(fs, t->id);
		free(dir);
	}
	free(json);
}

/* The transaction's end: release the snapshot (T4), stale the nodes (T3). */
void txn_end(struct txd_fs *fs, struct txn *t, enum txn_state st)
{
	t->state = st;
	t->ended_ns = fs_now_ns();
	if (!t->snap_released)
		ckpt_snapshot_release(fs, t->snap); /* the sweep runs in pieces, later */
	t->snap_released = true;
	pthread_cond_broadcast(&fs->txn_cv);
	if (t->waits)
		pthread_cond_signal(&fs->ckpt_cv); /* txn_run_waits: answer them */
	txn_write_record(fs, t);
}

/* RFC 3339 with milliseconds; null for 0. */
static cJSON *rfc3339(uint64_t ns)
{
	if (!ns)
		return cJSON_CreateNull();
	char buf[48];
	ev_rfc3339(ns, buf, sizeof(buf));
	return cJSON_CreateString(buf);
}

struct expire {
	struct txd_fs *fs;
	char *dir;
	uint64_t before_us;
};

static int expire_one(const char *name, void *arg)
{
	struct expire *x = arg;
	uint64_t id;
	char path[4200];
	/* ids are at least the begin time in µs (txn_begin); an active
	 * transaction keeps its record however old */
	if (sscanf(name, "%" SCNu64 ".json", &id) == 1 && id < x->before_us) {
		const struct txn *t = txn_by_id(x->fs, id);
		if (t && t->state == TXN_ACTIVE)
			return 0;
		snprintf(path, sizeof(path), "%s/%s", x->dir, name);
		txd_os->unlink(path);
	}
	return 0;
}

void txn_expire_records(struct txd_fs *fs, uint32_t retain_s)
{
	struct expire x = {.fs = fs,
			   .before_us = fs_now_ns() / 1000 - (uint64_t)retain_s * 1000000};
	if (asprintf(&x.dir, "%s/dtc/transactions", fs->store.coord_dir) < 0)
		return;
	txd_os->listdir(x.dir, expire_one, &x);
	free(x.dir);
}

/* ---- records across restarts (SPEC §5 dtc/transactions) -------------------------
 * A record is written at begin (state active) and at the end. At start-up,
 * records still saying active belong to transactions the server did not
 * finish: the WAL decides — a commit record carrying the transaction's id
 * (replayed after the last checkpoint: the record is rewritten under
 * fs->lock right after the append, before any checkpoint could run) makes it
 * committed, anything else "aborted restart". A record saying committed
 * beyond the recovered log (its commit was lost with an unsynced tail) is
 * "aborted restart" too. */
static char *records_dir(struct txd_fs *fs)
{
	char *dir;
	return asprintf(&dir, "%s/dtc/transactions", fs->store.coord_dir) < 0 ? NULL : dir;
}

static void txn_note_unsynced(struct txd_fs *fs, uint64_t id)
{
	if (!array_grow((void **)&fs->rec_unsynced, &fs->rec_unsynced_cap, fs->rec_unsynced_n + 1,
			sizeof(*fs->rec_unsynced)))
		fs->rec_unsynced[fs->rec_unsynced_n++] = id;
}

int txn_records_sync(struct txd_fs *fs, const uint64_t *ids, uint32_t n)
{
	char *dir = records_dir(fs), path[64];
	int err = dir ? 0 : -ENOMEM;
	for (uint32_t k = 0; k < n && !err; k++) {
		snprintf(path, sizeof(path), "%" PRIu64 ".json", ids[k]);
		char *full = NULL;
		if (asprintf(&full, "%s/%s", dir, path) < 0)
			err = -ENOMEM;
		int fd = full ? txd_os->open(full, O_RDONLY | O_CLOEXEC, 0) : -1;
		free(full);
		if (fd >= 0) {
			err = txd_os->fsync(fd);
			txd_os->close(fd);
		} else if (fd != -ENOENT && !err) {
			err = fd; /* ENOENT: expired or rewritten meanwhile */
		}
	}
	if (!err && n)
		err = os_fsync_dir(dir);
	free(dir);
	return err;
}


static cJSON *read_record(struct txd_fs *fs, uint64_t id)
{
	char *dir = records_dir(fs), *path = NULL, *text = NULL;
	size_t len;
	cJSON *j = NULL;
	if (dir && asprintf(&path, "%s/%" PRIu64 ".json", dir, id) >= 0 &&
	    os_read_file(path, &text, &len) == 0)
		j = json_parse_str(text);
	free(text);
	free(path);
	free(dir);
	return j;
}

static void write_json_record(struct txd_fs *fs, uint64_t id, cJSON *j)
{
	char *dir = records_dir(fs), name[32], *text = json_print(j, false), *line = NULL;
	snprintf(name, sizeof(name), "%" PRIu64 ".json", id);
	if (dir && text && asprintf(&line, "%s\n", text) >= 0)
		os_write_file_durable(dir, name, line, strlen(line)); /* as write_record's end */
	free(line);
	free(text);
	free(dir);
}

static const char *jstring(cJSON *j, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static int note_active(const char *name, void *arg)
{
	struct txd_fs *fs = arg;
	struct txn_restart *r = fs->txn_restart;
	uint64_t id;
	char tail[8];
	if (sscanf(name, "%" SCNu64 "%7s", &id, tail) != 2 || strcmp(tail, ".json"))
		return 0;
	if (id >= fs->next_txid)
		fs->next_txid = id + 1; /* ids are never reused */
	cJSON *j = read_record(fs, id);
	const char *state = j ? jstring(j, "state") : "";
	bool open = !strcmp(state, "active") || !strcmp(state, "committed");
	cJSON_Delete(j);
	if (!open || array_grow((void **)&r->ids, &r->cap, r->n + 1, sizeof(*r->ids)))
		return 0;
	r->ids[r->n++] = id;
	return 0;
}

int txn_records_load(struct txd_fs *fs)
{
	struct txn_restart *r = calloc(1, sizeof(*r));
	char *dir = records_dir(fs);
	if (!r || !dir) {
		free(r);
		free(dir);
		return -ENOMEM;
	}
	fs->txn_restart = r;
	txd_os->listdir(dir, note_active, fs); /* a missing directory: no records */
	free(dir);
	if (r->n && !(r->lsns = calloc(r->n, sizeof(*r->lsns))))
		return -ENOMEM;
	return 0;
}

void txn_replayed(struct txd_fs *fs, uint64_t txn, uint64_t lsn)
{
	dtc_replayed_commit(fs, txn, lsn); /* a prepared one ends */
	struct txn_restart *r = fs->txn_restart;
	for (uint32_t k = 0; r && txn && k < r->n; k++)
		if (r->ids[k] == txn)
			r->lsns[k] = lsn;
}

void txn_records_settle(struct txd_fs *fs)
{
	struct txn_restart *r = fs->txn_restart;
	if (!r)
		return;
	uint64_t last = wal_last_lsn(fs->wal);
	cJSON *now = rfc3339(fs_now_ns());
	for (uint32_t k = 0; k < r->n; k++) {
		struct txn *t = txn_by_id(fs, r->ids[k]);
		if (t && t->state == TXN_PREPARED) { /* in doubt (dtc.h D5): its record says so */
			txn_write_record(fs, t);
			continue;
		}
		cJSON *j = read_record(fs, r->ids[k]);
		if (!j)
			continue;
		if (!strcmp(jstring(j, "state"), "aborted")) {
			cJSON_Delete(j); /* a prepared one the replay ended (dtc.h D5) */
			continue;
		}
		cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "commit");
		bool was_committed = !strcmp(jstring(j, "state"), "committed");
		uint64_t commit = r->lsns[k];
		if (was_committed && cJSON_IsNumber(c) && (uint64_t)c->valuedouble <= last) {
			cJSON_Delete(j); /* true: its commit is in the recovered log */
			continue;
		}
		char status[48];
		if (commit)
			snprintf(status, sizeof(status), "committed %" PRIu64, commit);
		else
			snprintf(status, sizeof(status), "aborted restart");
		cJSON_ReplaceItemInObjectCaseSensitive(j, "state",
						       cJSON_CreateString(commit ? "committed" : "aborted"));
		cJSON_ReplaceItemInObjectCaseSensitive(j, "status", cJSON_CreateString(status));
		char digits[24];
		cJSON_DeleteItemFromObjectCaseSensitive(j, "commit");
		ev_add_u64(j, "commit", commit);
		snprintf(digits, sizeof(digits), "%" PRIu64, r->ids[k]);
		cJSON_ReplaceItemInObjectCaseSensitive(j, "txid", cJSON_CreateRaw(digits));
		cJSON_ReplaceItemInObjectCaseSensitive(j, "ended", cJSON_Duplicate(now, true));
		cJSON_ReplaceItemInObjectCaseSensitive(j, "open_handles", cJSON_CreateNumber(0));
		if (!commit) /* the record dates from its begin: its write set is unknown */
			for (const char *const *w = (const char *const[]){"ops", "entries_changed",
									     "files_changed", NULL};
			     *w; w++)
				if (cJSON_GetObjectItemCaseSensitive(j, *w))
					cJSON_ReplaceItemInObjectCaseSensitive(j, *w, cJSON_CreateNull());
		write_json_record(fs, r->ids[k], j);
		if (commit) {
			/* replay derived its event already: once per commit (E2) */
			ev_commit_replayed(fs->events, fs_now_ns(), r->ids[k], commit);
		} else {
			cJSON *f = cJSON_CreateObject();
			ev_add_u64(f, "txn", r->ids[k]);
			cJSON_AddStringToObject(f, "reason", "restart");
			ev_emit(fs->events, fs_now_ns(), "txn_abort", f);
		}
		cJSON_Delete(j);
	}
	cJSON_Delete(now);
	free(r->ids);
	free(r->lsns);
	free(r);
	fs->txn_restart = NULL;
}

struct idlist {
	uint64_t *ids;
	uint32_t n, cap;
	uint64_t since_us;
};

static int add_id(struct idlist *l, uint64_t id)
{
	if (array_grow((void **)&l->ids, &l->cap, l->n + 1, sizeof(*l->ids)))
		return -ENOMEM;
	l->ids[l->n++] = id;
	return 0;
}

static int list_one(const char *name, void *arg)
{
	struct idlist *l = arg;
	uint64_t id;
	char tail[8];
	if (sscanf(name, "%" SCNu64 "%7s", &id, tail) == 2 && !strcmp(tail, ".json") &&
	    id >= l->since_us)
		return add_id(l, id) ? 1 : 0;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int txn_record_ids(struct txd_fs *fs, uint64_t **ids, uint32_t *n)
{
	uint32_t retain = fs->opts.retain_s ? fs->opts.retain_s : 3600;
	uint64_t now_us = fs_now_ns() / 1000;
	struct idlist l = {.since_us = now_us > retain * 1000000ull ? now_us - retain * 1000000ull : 0};
	char *dir = records_dir(fs);
	for (struct txn *t = fs->txns; t; t = t->next)
		if (add_id(&l, t->id)) {
			free(dir);
			free(l.ids);
			return -ENOMEM;
		}
	if (dir)
		txd_os->listdir(dir, list_one, &l);
	free(dir);
	if (l.n)
		qsort(l.ids, l.n, sizeof(*l.ids), cmp_u64);
	uint32_t k = 0;
	for (uint32_t i = 0; i < l.n; i++)
		if (!k || l.ids[k - 1] != l.ids[i])
			l.ids[k++] = l.ids[i];
	*ids = l.ids;
	*n = k;
	return 0;
}

char *txn_record_json(struct txd_fs *fs, uint64_t id)
{
	struct txn *t = txn_by_id(fs, id);
	if (t)
		return txn_info_json(fs, t);
	char *dir = records_dir(fs), *path = NULL, *text = NULL;
	size_t len;
	if (dir && asprintf(&path, "%s/%" PRIu64 ".json", dir, id) >= 0 &&
	    os_read_file(path, &text, &len) != 0)
		text = NULL; /* expired meanwhile */
	free(path);
	free(dir);
	return text; /* as written (write_record, txn_records_settle): one line */
}

bool txn_record_exists(struct txd_fs *fs, uint64_t id)
{
	if (txn_by_id(fs, id))
		return true;
	uint32_t retain = fs->opts.retain_s ? fs->opts.retain_s : 3600;
	if (id + retain * 1000000ull < fs_now_ns() / 1000)
		return false; /* past the retention: expired (or about to be) */
	char *text = txn_record_json(fs, id);
	bool found = text != NULL;
	free(text);
	return found;
}

/* Start time (clock ticks since boot) and parent of pid; 0 if gone. */
static uint64_t proc_start(pid_t pid, pid_t *ppid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = pid > 0 ? fopen(path, "re") : NULL;
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long long start = 0;
	int parent = 0;
	if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
				"%*d %*d %llu", &parent, &start) != 2)
		return 0;
	if (ppid)
		*ppid = parent;
	return start;
}

static bool owners_gone(const struct txn *t)
{
	for (int k = 0; k < 2; k++)
		if (t->owner[k] > 1 && t->owner_start[k] &&
		    proc_start(t->owner[k], NULL) == t->owner_start[k])
			return false;
	return true;
}

void txn_reap_abandoned(struct txd_fs *fs, uint32_t grace_s)
{
	uint64_t now = fs_now_ns();
	for (struct txn *t = fs->txns; t; t = t->next) {
		if (t->state != TXN_ACTIVE || t->nopen || !owners_gone(t)) {
			t->idle_since_ns = 0;
			continue;
		}
		if (!t->idle_since_ns)
			t->idle_since_ns = now;
		if (now - t->idle_since_ns < (uint64_t)grace_s * 1000000000ull)
			continue;
		char why[128];
		snprintf(why, sizeof(why), "abandoned creator=%d idle=%us", (int)t->creator, grace_s);
		txn_abort(fs, t, why);
	}
}

int txn_begin(struct txd_fs *fs, const char *name, const struct txd_cred *c, struct txn **out)
{
	/* its process, not the calling thread: the reaper watches it (SPEC §4) */
	pid_t creator = fs_process_of(fs, c->pid);
	if (txn_find(fs, name))
		return -EEXIST;
	/* SPEC §6: a per-uid limit (each one holds a snapshot); root unlimited */
	uint32_t limit = fs->opts.max_txns ? fs->opts.max_txns : 1024, mine = 0;
	for (struct txn *o = fs->txns; c->uid && o; o = o->next)
		mine += o->uid == c->uid && (o->state == TXN_ACTIVE || o->state == TXN_PREPARED);
	if (c->uid && mine >= limit)
		return -EDQUOT;
	struct txn *t = calloc(1, sizeof(*t));
	if (!t || !(t->name = strdup(name)) || ns_init(&t->ns)) {
		if (t)
			free(t->name);
		free(t);
		return -ENOMEM;
	}
	struct inode *root;
	/* ids never repeat, also across restarts: at least the time in µs */
	uint64_t now_us = fs_now_ns() / 1000;
	t->id = fs->next_txid > now_us ? fs->next_txid : now_us;
	fs->next_txid = t->id + 1;
	t->snap = wal_last_lsn(fs->wal);
	t->creator = creator;
	t->owner[0] = creator;
	t->owner_start[0] = proc_start(creator, &t->owner[1]);
	t->owner_start[1] = proc_start(t->owner[1], NULL);
	t->uid = c->uid;
	t->gid = c->gid;
	t->began_ns = fs_now_ns();
	t->listed = true;
	t->refs = 1; /* the listing */
	rec_init(&t->log, t->id, 0, (uint32_t)creator);
	txn_set_status(t, "active");
	int err = ns_snapshot_take(&fs->ns, t->snap);
	if (err) {
		txn_free(t);
		return err;
	}
	if (!(root = txn_inode(fs, t, NS_ROOT_INO))) {
		ns_snapshot_release(&fs->ns, t->snap);
		txn_free(t);
		return -ENOMEM;
	}
	t->next = fs->txns;
	fs->txns = t;
	txn_write_record(fs, t); /* active: a restart finds it and records the outcome */
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", t->id);
	cJSON_AddStringToObject(f, "name", t->name);
	cJSON_AddNumberToObject(f, "pid", (double)creator);
	ev_add_u64(f, "start", t->owner_start[0]); /* its journal's key (journal.h) */
	ev_add_u64(f, "snapshot", t->snap);
	ev_emit(fs->events, fs_now_ns(), "txn_begin", f);
	*out = t;
	return 0;
}

/* ---- the view ------------------------------------------------------------------- */
struct inode *txn_inode(struct txd_fs *fs, struct txn *t, uint64_t ino)
{
	struct inode *in = ns_inode(&t->ns, ino);
	if (in || t->state != TXN_ACTIVE)
		return in;
	struct inode *src = ns_inode(&fs->ns, ino);
	if (!src || ns_import(&t->ns, src, t->snap, &in))
		return NULL; /* created after S, or gone: not in the view (T1) */
	return in;
}

/* ---- write sets: arrays with an open-addressing index (slot = position + 1),
 * so a transaction of 100,000 files stays linear. ---------------------------- */
static uint64_t key_hash(uint64_t parent, const char *name, size_t len)
{
	return XXH64(name, len, parent * 0x9e3779b97f4a7c15ull);
}

static int index_grow(struct txn_index *x, uint32_t n, uint64_t (*hash)(const void *, uint32_t),
		      const void *arr)
{
	if ((uint64_t)(n + 1) * 2 <= x->cap)
		return 0;
	uint32_t cap = x->cap ? x->cap * 2 : 64;
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (uint32_t)hash(arr, k) & (cap - 1);
		while (slot[i])
			i = (i + 1) & (cap - 1);
		slot[i] = k + 1;
	}
	free(x->slot);
	x->slot = slot;
	x->cap = cap;
	return 0;
}

static uint64_t hash_key_at(const void *arr, uint32_t k)
{
	const struct txn_key *key = &((const struct txn_key *)arr)[k];
	return key_hash(key->parent, key->name, strlen(key->name));
}

static uint64_t hash_u64_at(const void *arr, uint32_t k)
{
	return ((const uint64_t *)arr)[k] * 0x9e3779b97f4a7c15ull >> 7;
}

int txn_add_key(struct txn *t, uint64_t parent, const char *name, size_t len)
{
	int err = index_grow(&t->keyidx, t->nkeys, hash_key_at, t->keys);
	if (err)
		return err;
	uint32_t i = (uint32_t)key_hash(parent, name, len) & (t->keyidx.cap - 1);
	for (; t->keyidx.slot[i]; i = (i + 1) & (t->keyidx.cap - 1)) {
		const struct txn_key *k = &t->keys[t->keyidx.slot[i] - 1];
		if (k->parent == parent && strncmp(k->name, name, len) == 0 && !k->name[len])
			return 0;
	}
	if (array_grow((void **)&t->keys, &t->capkeys, t->nkeys + 1, sizeof(*t->keys)))
		return -ENOMEM;
	if (!(t->keys[t->nkeys].name = strndup(name, len)))
		return -ENOMEM;
	t->keys[t->nkeys++].parent = parent;
	t->keyidx.slot[i] = t->nkeys;
	return 0;
}

/* Add v to a set (array + index). */
static int set_add(uint64_t **arr, uint32_t *n, uint32_t *cap, struct txn_index *x, uint64_t v)
{
	int err = index_grow(x, *n, hash_u64_at, *arr);
	if (err)
		return err;
	uint32_t i = (uint32_t)hash_u64_at(&v, 0) & (x->cap - 1);
	for (; x->slot[i]; i = (i + 1) & (x->cap - 1))
		if ((*arr)[x->slot[i] - 1] == v)
			return 0;
	if (array_grow((void **)arr, cap, *n + 1, sizeof(**arr)))
		return -ENOMEM;
	(*arr)[(*n)++] = v;
	x->slot[i] = *n;
	return 0;
}

int txn_add_ino(struct txn *t, uint64_t ino)
{
	return set_add(&t->inos, &t->ninos, &t->capinos, &t->inoidx, ino);
}

bool txn_has_key(const struct txn *t, uint64_t parent, const char *name, size_t len)
{
	if (!t->keyidx.cap)
		return false;
	uint32_t i = (uint32_t)key_hash(parent, name, len) & (t->keyidx.cap - 1);
	for (; t->keyidx.slot[i]; i = (i + 1) & (t->keyidx.cap - 1)) {
		const struct txn_key *k = &t->keys[t->keyidx.slot[i] - 1];
		if (k->parent == parent && strncmp(k->name, name, len) == 0 && !k->name[len])
			return true;
	}
	return false;
}

bool txn_has_ino(const struct txn *t, uint64_t ino)
{
	if (!t->inoidx.cap)
		return false;
	uint32_t i = (uint32_t)hash_u64_at(&ino, 0) & (t->inoidx.cap - 1);
	for (; t->inoidx.slot[i]; i = (i + 1) & (t->inoidx.cap - 1))
		if (t->inos[t->inoidx.slot[i] - 1] == ino)
			return true;
	return false;
}

/* Whether ino existed in the main tree at S (else the view created it). */
static bool existed(struct txd_fs *fs, struct txn *t, uint64_t ino)
{
	struct inode *m = ns_inode(&fs->ns, ino);
	return m && ns_iver_at(m, t->snap);
}

/* Grow the write set from ops just applied in the view. Directory
 * attribute upkeep (nlink, mtime) is merged at commit, not a conflict. */
static int note_write_set(struct txd_fs *fs, struct txn *t, const void *ops, uint32_t len)
{
	struct rec_hdr hdr;
	struct rec_iter it;
	struct rec_opv op;
	int err = rec_validate(ops, len, &hdr);
	rec_iter_init(&it, ops, &hdr);
	while (!err && rec_next(&it, &op)) {
		switch (op.op) {
		case OP_DENT_SET:
		case OP_DENT_DEL:
			err = txn_add_key(t, op.u.dent.parent, op.u.dent.name, op.u.dent.name_len);
			break;
		case OP_INODE:
			if (S_ISDIR(op.u.inode.mode))
				err = set_add(&t->dirs, &t->ndirs, &t->capdirs, &t->diridx, op.u.inode.ino);
			else if (existed(fs, t, op.u.inode.ino))
				err = txn_add_ino(t, op.u.inode.ino);
			else
				err = set_add(&t->created, &t->ncreated, &t->capcreated, &t->newidx,
					      op.u.inode.ino);
			break;
		case OP_CONTENT:
			if (existed(fs, t, op.u.content.ino))
				err = txn_add_ino(t, op.u.content.ino);
			break;
		case OP_XATTR_SET:
		case OP_XATTR_DEL:
			if (existed(fs, t, op.u.xattr.ino))
				err = txn_add_ino(t, op.u.xattr.ino);
			break;
		default:
			break;
		}
	}
	return err;
}

int txn_apply(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	bool waited = false;
	while (t->committing) { /* the log is frozen while the commit builds it */
		pthread_cond_wait(&fs->txn_cv, &fs->lock);
		waited = true;
	}
	if (t->state != TXN_ACTIVE)
		return -ESTALE;
	if (waited)
		return -EBUSY; /* b was built before a commit that failed: stale */
	if (t->readonly)
		return -EROFS;
	if (b->err)
		return b->err;
	if (b->ndata)
		return -EINVAL; /* the view's content lives in packs */
	struct iovec iov[1];
	int err = rec_finish(b, iov);
	if (err < 0)
		return err;
	if ((err = ns_apply(&t->ns, b->ops, (uint32_t)b->len, 0, 0, t->snap)) ||
	    (err = note_write_set(fs, t, b->ops, (uint32_t)b->len)))
		return err;
	/* append the ops (not the header) to the log */
	size_t n = b->len - REC_HDR_SIZE;
	uint8_t *p = rec_reserve(&t->log, n);
	if (!p)
		return -ENOMEM;
	memcpy(p, b->ops + REC_HDR_SIZE, n);
	t->log.nops += b->nops;
	return 0;
}

/* ---- commit ------------------------------------------------------------------------ */
/* A commit failed and left the transaction active: last_error in info.json
 * says why, in the status line's shape ("busy reason=... path=P"). */
static void set_last_error(struct txn *t, const char *reason, const char *path)
{
	char e[TXN_LINE];
	snprintf(t->last_error, sizeof(t->last_error), "busy reason=%s path=%s", reason,
		 txn_esc_path(path, e, sizeof(e)));
	t->last_error_ns = fs_now_ns();
}

/* As txn_key_path; a directory removed since snap (non-zero) is named as
 * it was at snap. */
static void txn_key_path_at(struct txd_fs *fs, const struct txn_key *k, uint64_t snap, char *buf,
			    size_t cap)
{
	struct inode *p = ns_inode(&fs->ns, k->parent);
	char dir[4096];
	if (p)
		ns_path_at(&fs->ns, p, snap, dir, sizeof(dir));
	else
		snprintf(dir, sizeof(dir), "?");
	snprintf(buf, cap, "%.3500s%s%.255s", dir, strcmp(dir, "/") ? "/" : "", k->name);
}

void txn_key_path(struct txd_fs *fs, const struct txn_key *k, char *buf, size_t cap)
{
	txn_key_path_at(fs, k, 0, buf, cap);
}

/* Step 2 of txn.h: first committer wins. A lost conflict is final: the
 * status names the winner and the path. */
bool txn_test_skip_cycle_check; /* tests: make the cycle fsck must find */

/* A directory the view moved (to a new parent) that existed at S. */
struct moved {
	uint64_t dir, parent; /* the view's new parent */
};

/* Would committing t cut directories off the tree? Each directory the view
 * moved goes under its view parent; walking up from there through the tree
 * the commit would make (moved directories: their view parent; others: the
 * main tree's, or the view's for those the view created) must reach the
 * root without meeting the directory itself. Two transactions that each
 * move a directory into the other (t1: X into Y, t2: Y into X) touch no
 * common entry, so only this catches the cycle. 0, or the directory. */
/* The directories t's view moved that existed at S (malloc'd in *out,
 * NULL when none or no memory). */
static size_t moved_dirs(struct txd_fs *fs, struct txn *t, struct moved **out)
{
	struct moved *mv = NULL;
	size_t n = 0, cap = 0;

	for (uint32_t k = 0; k < t->nkeys; k++) {
		const struct txn_key *key = &t->keys[k];
		struct inode *vp = ns_inode(&t->ns, key->parent);
		uint64_t d = vp && vp->dir ? ns_lookup_at(vp->dir, key->name, strlen(key->name),
							   UINT64_MAX)
					   : 0;
		struct inode *vd = d ? ns_inode(&t->ns, d) : NULL;
		struct inode *md = d && existed(fs, t, d) ? ns_inode(&fs->ns, d) : NULL;
		if (!vd || !md || !vd->dir || vd->parent == md->parent)
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 8;
			struct moved *nm = realloc(mv, nc * sizeof(*nm));
			if (!nm)
				break; /* no memory: the walk cannot run; commit as before */
			mv = nm;
			cap = nc;
		}
		mv[n++] = (struct moved){.dir = d, .parent = vd->parent};
	}
	*out = mv;
	return n;
}

bool txn_moves_dir(struct txd_fs *fs, struct txn *t)
{
	struct moved *mv;
	size_t n = moved_dirs(fs, t, &mv);
	free(mv);
	return n > 0;
}

static uint64_t cycle_check(struct txd_fs *fs, struct txn *t)
{
	struct moved *mv;
	size_t n = moved_dirs(fs, t, &mv);
	uint64_t found = 0;

	for (size_t i = 0; i < n && !found; i++) {
		uint64_t a = mv[i].parent;
		for (unsigned steps = 0; a && a != NS_ROOT_INO && steps < 1u << 20; steps++) {
			if (a == mv[i].dir) {
				found = a;
				break;
			}
			size_t j = 0;
			while (j < n && mv[j].dir != a)
				j++;
			struct inode *m = existed(fs, t, a) ? ns_inode(&fs->ns, a) : NULL;
			struct inode *x = j < n ? NULL : m ? m : ns_inode(&t->ns, a);
			if (j < n)
				a = mv[j].parent;
			else if (x)
				a = x->parent;
			else
				break;
		}
	}
	free(mv);
	return found;
}

/* A directory whose rights were taken since t's snapshot: p or a directory
 * above it whose mode, owner or group changed, or that was moved, after
 * t->snap. The kernel checked the view's entry changes against the view's
 * copy of those directories; on ext4 a create or unlink checks the
 * directory as it is now, so such a change conflicts (SPEC §6: a right the
 * owner took away is not exercised later). Root's transactions are not
 * checked (root is not refused anyway). Returns it, or NULL. */
static struct inode *rights_changed(struct txd_fs *fs, struct txn *t, struct inode *p)
{
	for (int depth = 0; p && t->uid != 0 && depth < 4096; depth++) {
		const struct iver *then = ns_iver_at(p, t->snap), *now = p->head;
		if (!then || then->mode != now->mode || then->uid != now->uid ||
		    then->gid != now->gid || (p->name && p->name->commit > t->snap))
			return p;
		if (p->ino == NS_ROOT_INO || !p->name)
			break;
		p = ns_inode(&fs->ns, p->name_parent);
	}
	return NULL;
}

static int validate(struct txd_fs *fs, struct txn *t)
{
	char path[4096], e[TXN_LINE];
	for (uint32_t k = 0; k < t->nkeys; k++) {
		const struct txn_key *key = &t->keys[k];
		if (!existed(fs, t, key->parent))
			continue; /* a directory the view created */
		struct inode *p = ns_inode(&fs->ns, key->parent);
		uint64_t winner = 0;
		if (!p || !p->dir || p->head->nlink == 0) {
			winner = p ? p->head->commit : 0;
		} else {
			uint64_t ino_now = ns_lookup_at(p->dir, key->name, strlen(key->name), UINT64_MAX);
			uint64_t ino_then = ns_lookup_at(p->dir, key->name, strlen(key->name), t->snap);
			struct dent *d = ns_dir_find(p->dir, key->name, strlen(key->name));
			if (ino_now != ino_then || (d && d->commit > t->snap))
				winner = d ? d->commit : wal_last_lsn(fs->wal);
			struct inode *r = winner ? NULL : rights_changed(fs, t, p);
			if (r) {
				ns_path(&fs->ns, r, path, sizeof(path));
				txn_set_status(t, "aborted conflict winner=%" PRIu64 " path=%s",
					       r->head->commit, txn_esc_path(path, e, sizeof(e)));
				return -EBUSY;
			}
		}
		if (winner) {
			txn_key_path_at(fs, key, t->snap, path, sizeof(path));
			txn_set_status(t, "aborted conflict winner=%" PRIu64 " path=%s", winner,
				       txn_esc_path(path, e, sizeof(e)));
			return -EBUSY;
		}
	}
	uint64_t cyc = txn_test_skip_cycle_check ? 0 : cycle_check(fs, t);
	if (cyc) {
		struct inode *m = ns_inode(&fs->ns, cyc);
		path[0] = 0;
		if (m)
			ns_path(&fs->ns, m, path, sizeof(path));
		txn_set_status(t, "aborted conflict winner=%" PRIu64 " path=%s",
			       m ? m->head->commit : wal_last_lsn(fs->wal),
			       txn_esc_path(path, e, sizeof(e)));
		return -EBUSY;
	}
	for (uint32_t k = 0; k < t->ndirs; k++) {
		/* a directory the view removed must end up empty: every entry the
		 * main tree has must be one the view saw (and removed) — one
		 * bound after S is a conflict */
		struct inode *v = ns_inode(&t->ns, t->dirs[k]); /* NULL: removed, dropped */
		struct inode *m = ns_inode(&fs->ns, t->dirs[k]);
		if ((v && v->head->nlink) || !m || !m->dir || !m->dir->count)
			continue;
		for (struct dent *d = ns_dir_next(m->dir, 0); d; d = ns_dir_next(m->dir, d->cookie)) {
			if (d->commit <= t->snap)
				continue;
			char dir[3600];
			ns_path(&fs->ns, m, dir, sizeof(dir));
			snprintf(path, sizeof(path), "%s/%s", dir, d->name);
			txn_set_status(t, "aborted conflict winner=%" PRIu64 " path=%s", d->commit,
				       txn_esc_path(path, e, sizeof(e)));
			return -EBUSY;
		}
	}
	for (uint32_t k = 0; k < t->ninos; k++) {
		struct inode *m = ns_inode(&fs->ns, t->inos[k]);
		struct inode *r = m && m->name ? rights_changed(fs, t, ns_inode(&fs->ns, m->name_parent))
					     : NULL;
		if (r) { /* a file changed in a directory whose rights were taken */
			ns_path(&fs->ns, r, path, sizeof(path));
			txn_set_status(t, "aborted conflict winner=%" PRIu64 " path=%s",
				       r->head->commit, txn_esc_path(path, e, sizeof(e)));
			return -EBUSY;
		}
		if (m && m->head->commit <= t->snap)
			continue;
		struct inode *v = ns_inode(&t->ns, t->inos[k]);
		path[0] = 0;
		if (m) /* removed in the main tree since t->snap: its name then */
			ns_path_at(&fs->ns, m, t->snap, path, sizeof(path));
		else if (v)
			ns_path(&t->ns, v, path, sizeof(path));
		txn_set_status(t, "aborted conflict winner=%" PRIu64 " path=%s",
			       m ? m->head->commit : wal_last_lsn(fs->wal),
			       txn_esc_path(path, e, sizeof(e)));
		return -EBUSY;
	}
	return 0;
}


/* A path of the write set open for writing in the main tree (its path in
 * path): the commit would race that writer's close, so it fails and the
 * transaction stays active for a retry (SPEC §4). */
static bool main_writer(struct txd_fs *fs, struct txn *t, char *path, size_t cap)
{
	for (uint32_t k = 0; k < t->ninos; k++) {
		struct inode *m = ns_inode(&fs->ns, t->inos[k]);
		if (fs->dt.has_writer(m)) {
			ns_path(&fs->ns, m, path, cap);
			return true;
		}
	}
	for (uint32_t k = 0; k < t->nkeys; k++) {
		const struct txn_key *key = &t->keys[k];
		struct inode *p = existed(fs, t, key->parent) ? ns_inode(&fs->ns, key->parent) : NULL;
		if (!p || !p->dir)
			continue;
		uint64_t ino = ns_lookup_at(p->dir, key->name, strlen(key->name), UINT64_MAX);
		if (ino && fs->dt.has_writer(ns_inode(&fs->ns, ino))) {
			txn_key_path(fs, key, path, cap);
			return true;
		}
	}
	return false;
}

/* A file of the view open for writing (its path in the view), if any. */
static bool view_writer(struct txd_fs *fs, struct txn *t, char *path, size_t cap)
{
	if (!t->nwriters)
		return false;
	for (uint64_t k = 0; k < t->ns.tabsize; k++)
		for (struct inode *in = t->ns.tab[k]; in; in = in->hnext)
			if (fs->dt.has_writer(in)) {
				ns_path(&t->ns, in, path, cap);
				return true;
			}
	snprintf(path, cap, "?");
	return true;
}

/* Directories the view touched get their attributes recomputed against the
 * main head: nlink = head + the view's delta, times from the view (step 3). */
static int merged_dirs(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	for (uint32_t k = 0; k < t->ndirs; k++) {
		struct inode *in = ns_inode(&t->ns, t->dirs[k]);
		struct inode *m = ns_inode(&fs->ns, t->dirs[k]);
		if (!in && m && m->dir) {
			/* removed in the view (and dropped there): removed here */
			struct rec_inode r;
			ns_inode_rec(m, &r);
			r.nlink = 0;
			r.ctime = fs_now_ts();
			rec_inode(b, &r);
			continue;
		}
		if (!in || !in->dir)
			continue;
		{
			const struct iver *then = m ? ns_iver_at(m, t->snap) : NULL;
			struct rec_inode r;
			ns_inode_rec(in, &r);
			if (then && m->head->nlink) {
				r.nlink = (uint32_t)((int64_t)m->head->nlink +
						     (int64_t)in->head->nlink - (int64_t)then->nlink);
				if (in->head->nlink == 0)
					r.nlink = 0;
				if (then->mode == in->head->mode && then->uid == in->head->uid &&
				    then->gid == in->head->gid) {
					r.mode = m->head->mode; /* unchanged by the view */
					r.uid = m->head->uid;
					r.gid = m->head->gid;
				}
				r.parent = in->head->nlink ? in->parent : m->parent;
			}
			rec_inode(b, &r);
		}
	}
	return b->err;
}

static int cmp_ino(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool in_sorted(const uint64_t *v, uint32_t n, uint64_t x)
{
	return n && bsearch(&x, v, n, sizeof(*v), cmp_ino);
}

/* The directories of the write set that existed at S (sorted; malloc'd),
 * for log_ops: fs->lock held, O(ndirs). */
int txn_old_dirs(struct txd_fs *fs, struct txn *t, uint64_t **out, uint32_t *n)
{
	*n = 0;
	*out = malloc((t->ndirs + 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (uint32_t k = 0; k < t->ndirs; k++)
		if (existed(fs, t, t->dirs[k]))
			(*out)[(*n)++] = t->dirs[k];
	qsort(*out, *n, sizeof(**out), cmp_ino);
	return 0;
}

/* Copy the log, without the view's own directory attribute ops for
 * directories that existed at S (olddirs; merged_dirs states them). Reads
 * only t->log: runs without fs->lock while the log is frozen. */
int txn_log_ops(const struct txn *t, const uint64_t *olddirs, uint32_t nold, struct rec_buf *b)
{
	const uint8_t *p = t->log.ops + REC_HDR_SIZE, *end = t->log.ops + t->log.len;
	if (!rec_reserve(b, t->log.len))
		return -ENOMEM; /* one allocation for the whole copy */
	b->len -= t->log.len;
	while (p < end) {
		uint16_t op;
		uint32_t len, mode;
		uint64_t ino;
		memcpy(&op, p, 2);
		memcpy(&len, p + 4, 4);
		bool skip = false;
		if (op == OP_INODE) {
			memcpy(&ino, p + OP_HDR, 8);
			memcpy(&mode, p + OP_HDR + 8, 4);
			skip = S_ISDIR(mode) && in_sorted(olddirs, nold, ino);
		}
		if (!skip) {
			uint8_t *q = rec_reserve(b, OP_HDR + len);
			if (!q)
				return -ENOMEM;
			memcpy(q, p, OP_HDR + len);
			b->nops++;
		}
		p += OP_HDR + len;
	}
	return 0;
}

/* Step 4: nothing of the old state stays visible through a node id that
 * will now show the new one. */
void txn_publish(struct txd_fs *fs, struct txn *t)
{
	for (uint32_t k = 0; k < t->ninos; k++) {
		struct inode *m = ns_inode(&fs->ns, t->inos[k]);
		if (!m)
			continue;
		fs->dt.replaced(fs, m);
	}
	for (uint32_t k = 0; k < t->nkeys; k++) {
		struct inode *p = ns_inode(&fs->ns, t->keys[k].parent);
		if (p)
			fs->dt.renamed(fs, p, t->keys[k].name);
	}
}

/* Unlinked inodes the commit left behind (names removed in the view). */
void txn_drop_dead(struct txd_fs *fs, struct txn *t)
{
	for (uint64_t k = 0; k < t->ns.tabsize; k++)
		for (struct inode *in = t->ns.tab[k]; in; in = in->hnext) {
			struct inode *m = ns_inode(&fs->ns, in->ino);
			if (m && m->head->nlink == 0 && m->pins == 0)
				ns_inode_unlinked(&fs->ns, m); /* ns.h M1 */
		}
}

/* Block this thread (bounded) until no handle of the view is open for
 * writing: the synchronous form (txd_write); FUSE defers instead
 * (txn_commit_async). */
void txn_wait_writers(struct txd_fs *fs, struct txn *t)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += TXN_BUSY_WAIT_MS / 1000;
	if (t->nwriters)
		fs_will_block(fs); /* their close must get through meanwhile */
	while (t->nwriters && t->state == TXN_ACTIVE)
		if (pthread_cond_timedwait(&fs->txn_cv, &fs->lock, &until))
			break;
}

/* Steps 1-2b of txn.h: 0 when the commit may go ahead. A lost conflict
 * aborts (final); busy cases leave the transaction active with last_error. */
int txn_commit_checks(struct txd_fs *fs, struct txn *t)
{
	char path[4096];
	if (view_writer(fs, t, path, sizeof(path))) {
		set_last_error(t, "open-in-view", path);
		return -EBUSY;
	}
	int err = validate(fs, t);
	if (err) {
		fs->conflicts++;
		cJSON *f = cJSON_CreateObject();
		ev_add_u64(f, "txn", t->id);
		cJSON_AddNumberToObject(f, "uid", t->uid);
		/* names a path of its view: its owner's (events.h E5) */
		cJSON_AddStringToObject(f, "private", t->status);
		ev_emit(fs->events, fs_now_ns(), "txn_conflict", f);
		txn_end(fs, t, TXN_ABORTED);
		return err;
	}
	if (main_writer(fs, t, path, sizeof(path))) {
		set_last_error(t, "main-tree-writer", path);
		return -EBUSY;
	}
	if (dtc_overlap(fs, t, path, sizeof(path))) {
		set_last_error(t, "prepared", path);
		return -EBUSY;
	}
	return 0;
}

/* A commit's record, built (and its new inodes staged, ns.h N8) without
 * fs->lock. */
struct prebuilt {
	struct rec_buf b;
	struct ns_prep *prep;
	uint64_t lsn; /* wal_last_lsn when the checks last passed */
	bool built;
};

void (*txn_prebuild_hook)(struct txd_fs *fs, struct txn *t);

/* Commits of this many ops or more are built without fs->lock. */
#define TXN_PREBUILD_OPS 256

struct fresh_set {
	uint64_t *v;
	uint32_t n;
};

static bool fresh_ino(void *arg, uint64_t ino)
{
	const struct fresh_set *f = arg;
	return in_sorted(f->v, f->n, ino);
}

/* Build the record of t (the log's ops, step 3 without the directory
 * merge) and stage the inodes it creates, with fs->lock dropped
 * meanwhile: t->committing freezes the view's log (txn_apply waits), and
 * nothing read here belongs to the main tree. The main tree may change
 * meanwhile: the caller checks again (pre->lsn). fs->lock held on entry and
 * on return. */
static int prebuild(struct txd_fs *fs, struct txn *t, pid_t pid, struct prebuilt *pre)
{
	uint64_t *olddirs;
	uint32_t nold;
	struct fresh_set fresh = {0};
	int err = txn_old_dirs(fs, t, &olddirs, &nold);
	if (err)
		return err;
	/* t->created and t->dirs grow only in txn_apply: frozen too */
	fresh.v = malloc((t->ncreated + t->ndirs + 1) * sizeof(*fresh.v));
	if (!fresh.v) {
		free(olddirs);
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < t->ndirs; k++)
		if (!in_sorted(olddirs, nold, t->dirs[k]))
			fresh.v[fresh.n++] = t->dirs[k];
	pre->lsn = wal_last_lsn(fs->wal);
	t->committing = true;
	pthread_mutex_unlock(&fs->lock);

	if (t->ncreated) /* t->created may be NULL */
		memcpy(fresh.v + fresh.n, t->created, t->ncreated * sizeof(*fresh.v));
	fresh.n += t->ncreated;
	qsort(fresh.v, fresh.n, sizeof(*fresh.v), cmp_ino);
	rec_init(&pre->b, t->id, fs_now_ns(), (uint32_t)pid);
	struct iovec iov;
	err = txn_log_ops(t, olddirs, nold, &pre->b);
	if (!err && (err = rec_finish(&pre->b, &iov)) > 0)
		err = ns_prepare(pre->b.ops, (uint32_t)pre->b.len, fresh_ino, &fresh, &pre->prep);
	free(olddirs);
	free(fresh.v);
	if (txn_prebuild_hook)
		txn_prebuild_hook(fs, t);

	pthread_mutex_lock(&fs->lock);
	t->committing = false;
	pthread_cond_broadcast(&fs->txn_cv); /* txn_apply, a second commit */
	if (t->waits)
		pthread_cond_signal(&fs->ckpt_cv); /* due_waits skipped t meanwhile */
	if (err) {
		rec_release(&pre->b);
		ns_prep_free(pre->prep);
		pre->prep = NULL;
	}
	pre->built = !err;
	return err;
}

/* The fence of a commit (txn.h "Fenced commits"), checked at the commit
 * point: in the fs->lock hold that appends the record. The lease service's
 * lock is taken under fs->lock (lease_get only reads). -ESTALE aborts t
 * ("aborted conflict lease=..."), as a PostgreSQL COMMIT that fails rolls
 * back. */
static int fence_check(struct txd_fs *fs, struct txn *t, const struct txn_fence *fence)
{
	if (!fence || !fence->lease)
		return 0;
	struct lease_info li;
	struct lease_svc *ls = fs->svc ? svc_lease(fs->svc) : NULL;
	int err = ls ? lease_get(ls, fence->lease, &li) : -ENOENT;
	if (!err && li.token == fence->token)
		return 0;
	char held[32] = "none";
	if (!err)
		snprintf(held, sizeof(held), "%" PRIu64, li.token);
	txn_set_status(t, "aborted conflict lease=%s token=%" PRIu64 " held=%s", fence->lease,
		       fence->token, held);
	txn_end(fs, t, TXN_ABORTED);
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", t->id);
	cJSON_AddStringToObject(f, "reason", "conflict");
	cJSON_AddBoolToObject(f, "fenced", true);
	cJSON_AddStringToObject(f, "lease", fence->lease);
	ev_add_u64(f, "token", fence->token);
	ev_emit(fs->events, fs_now_ns(), "txn_abort", f);
	return -ESTALE;
}

/* Steps 2-5 of txn.h once the view's writers are closed (or the wait gave
 * up). Busy cases leave the transaction active with last_error; a lost
 * conflict aborts it; repeated commits report the first outcome. A large
 * log is built without fs->lock (may_unlock; prebuild), and checked
 * again if the main tree changed meanwhile. */
static int commit_now(struct txd_fs *fs, struct txn *t, pid_t pid, bool may_unlock,
		      const struct txn_fence *fence)
{
	struct prebuilt pre = {0};
	while (t->committing) /* another commit of t is building: its outcome */
		pthread_cond_wait(&fs->txn_cv, &fs->lock);
	if (t->state != TXN_ACTIVE)
		return t->state == TXN_COMMITTED ? 0 : -EBUSY;
	/* a lost lease is the reason, before any conflict; checked again at
	 * the commit point */
	int err = fence_check(fs, t, fence);
	if (!err)
		err = txn_commit_checks(fs, t);
	if (err)
		return err;
	if (may_unlock && t->log.nops >= TXN_PREBUILD_OPS) {
		err = prebuild(fs, t, pid, &pre);
		if (t->state != TXN_ACTIVE) /* aborted meanwhile (rmdir, reaper) */
			err = -EBUSY;
		else if (!err && t->nwriters) /* opened for writing meanwhile */
			err = txn_commit_checks(fs, t);
		else if (!err && wal_last_lsn(fs->wal) != pre.lsn)
			err = txn_commit_checks(fs, t); /* the main tree moved on */
		if (err)
			goto out;
	}
	uint64_t lsn = wal_last_lsn(fs->wal);
	if (t->log.nops) {
		struct rec_buf b;
		if (!pre.built) {
			rec_init(&b, t->id, fs_now_ns(), (uint32_t)pid);
			uint64_t *olddirs;
			uint32_t nold;
			if (!(err = txn_old_dirs(fs, t, &olddirs, &nold))) {
				err = txn_log_ops(t, olddirs, nold, &b);
				free(olddirs);
			}
		} else {
			b = pre.b; /* merged_dirs appends after the prepared prefix */
			pre.built = false;
		}
		bool sync = fs->opts.durability != TXD_DUR_NONE;
		if (sync)
			fs_will_block(fs);
		if (err || (err = merged_dirs(fs, t, &b)) ||
		    (sync && (err = chunkstore_sync(fs->cs)))) {
			rec_release(&b);
			goto out;
		}
		if ((err = fence_check(fs, t, fence))) {
			rec_release(&b);
			goto out;
		}
		txn_publish(fs, t);
		struct wal_pos pos;
		err = fs_commit_prep(fs, &b, pre.prep, &pos);
		rec_release(&b);
		if (err)
			goto out;
		lsn = pos.lsn;
	} else if ((err = fence_check(fs, t, fence))) {
		goto out;
	}
	t->commit_id = lsn;
	t->last_error[0] = 0;
	txn_set_status(t, "committed %" PRIu64, lsn);
	txn_end(fs, t, TXN_COMMITTED);
	txn_drop_dead(fs, t);
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", t->id);
	ev_add_u64(f, "commit", lsn);
	cJSON_AddNumberToObject(f, "ops", t->log.nops);
	ev_emit(fs->events, fs_now_ns(), "txn_commit", f);
out:
	if (pre.built)
		rec_release(&pre.b);
	ns_prep_free(pre.prep);
	return err;
}

/* The view's content waits in packs (txn.h): sync them before the commit's
 * hold of fs->lock, which then syncs only what came meanwhile (usually
 * nothing), so other requests do not wait for the disk. fs->lock held;
 * dropped meanwhile. */
void txn_sync_packs(struct txd_fs *fs)
{
	if (fs->opts.durability == TXD_DUR_NONE || !chunkstore_has_unsynced(fs->cs))
		return;
	fs_will_block(fs);
	pthread_mutex_unlock(&fs->lock);
	chunkstore_sync(fs->cs); /* an error is met again under the lock */
	pthread_mutex_lock(&fs->lock);
}

static int commit_sync(struct txd_fs *fs, struct txn *t, pid_t pid,
		       const struct txn_fence *fence)
{
	if (t->state == TXN_ACTIVE)
		txn_wait_writers(fs, t);
	if (t->state == TXN_ACTIVE && t->log.nops)
		txn_sync_packs(fs);
	txn_get(t); /* across commit_now's unlocked build (the caller may hold none) */
	int err = commit_now(fs, t, pid, true, fence);
	txn_put(fs, t);
	if (!err)
		fs_set_must_wait(); /* a transaction commit is durable before it returns */
	return err;
}

int txn_commit(struct txd_fs *fs, struct txn *t, pid_t pid)
{
	return commit_sync(fs, t, pid, NULL);
}

int txn_commit_async(struct txd_fs *fs, struct txn *t, pid_t pid,
		     void (*done)(void *arg, int err), void *arg)
{
	return txn_commit_fenced(fs, t, pid, NULL, done, arg);
}

int txn_commit_fenced(struct txd_fs *fs, struct txn *t, pid_t pid,
		      const struct txn_fence *fence, void (*done)(void *arg, int err), void *arg)
{
	if (!done || t->state != TXN_ACTIVE || !t->nwriters)
		return commit_sync(fs, t, pid, fence);
	struct txn_wait *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if (fence && fence->lease) {
		w->fence = *fence;
		if (!(w->fence.lease = strdup(fence->lease))) {
			free(w);
			return -ENOMEM;
		}
	}
	w->pid = pid;
	w->deadline_ns = fs_now_ns() + TXN_BUSY_WAIT_MS * 1000000ull;
	w->done = done;
	w->arg = arg;
	struct txn_wait **pp = &t->waits;
	while (*pp)
		pp = &(*pp)->next; /* in arrival order */
	*pp = w;
	txn_get(t);
	return -EINPROGRESS;
}

int txn_cancel_wait(struct txd_fs *fs, void *arg)
{
	struct txn_wait *found = NULL;
	struct txn *owner = NULL;
	pthread_mutex_lock(&fs->lock);
	for (struct txn *t = fs->txns; t && !found; t = t->next)
		for (struct txn_wait **pp = &t->waits; *pp; pp = &(*pp)->next)
			if ((*pp)->arg == arg) {
				found = *pp;
				*pp = found->next;
				owner = t;
				break;
			}
	/* after both loops: the wait's reference may be the last (t freed) */
	if (owner)
		txn_put(fs, owner);
	pthread_mutex_unlock(&fs->lock);
	if (found)
		free((char *)found->fence.lease);
	free(found);
	return found ? 0 : dtc_cancel(fs, arg); /* or a deferred prepare (dtc.h) */
}

void txn_writer_closed(struct txd_fs *fs, struct txn *t)
{
	if (--t->nwriters)
		return;
	pthread_cond_broadcast(&fs->txn_cv); /* txn_commit's wait */
	if (t->waits)
		pthread_cond_signal(&fs->ckpt_cv); /* txn_run_waits */
}

/* The deferred commits that are due, committed (or failed) now, in a list. */
static struct txn_wait *due_waits(struct txd_fs *fs)
{
	struct txn_wait *ready = NULL, **tail = &ready;
	uint64_t now = fs_now_ns();
	for (struct txn *t = fs->txns, *next; t; t = next) {
		next = t->next;
		if (t->committing)
			continue; /* commit_now would wait, dropping fs->lock: later */
		uint32_t finished = 0;
		for (struct txn_wait **pp = &t->waits; *pp;) {
			struct txn_wait *w = *pp;
			if (t->state == TXN_ACTIVE && t->nwriters && now < w->deadline_ns) {
				pp = &w->next;
				continue;
			}
			*pp = w->next;
			w->err = commit_now(fs, t, w->pid, false, &w->fence); /* the list must hold */
			w->next = NULL;
			*tail = w;
			tail = &w->next;
			finished++;
		}
		while (finished--)
			txn_put(fs, t); /* may free t: next was read before */
	}
	return ready;
}

void txn_run_waits(struct txd_fs *fs)
{
	/* again after the callbacks: a close while fs->lock was free may have
	 * signalled nobody */
	for (struct txn_wait *ready; (txn_sync_packs(fs), ready = due_waits(fs));) {
		pthread_mutex_unlock(&fs->lock);
		fs_notify_flush(fs); /* the kernel drops what the commits replaced */
		while (ready) {
			struct txn_wait *w = ready;
			ready = w->next;
			w->done(w->arg, w->err);
			free((char *)w->fence.lease);
			free(w);
		}
		pthread_mutex_lock(&fs->lock);
	}
}

void txn_abort(struct txd_fs *fs, struct txn *t, const char *reason)
{
	if (t->state != TXN_ACTIVE)
		return;
	txn_set_status(t, "aborted %s", reason);
	txn_end(fs, t, TXN_ABORTED);
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", t->id);
	cJSON_AddStringToObject(f, "reason", reason);
	ev_emit(fs->events, fs_now_ns(), "txn_abort", f);
}

int txn_remove(struct txd_fs *fs, struct txn *t)
{
	if (t->state == TXN_PREPARED)
		return -EBUSY; /* only the decision ends it */
	txn_abort(fs, t, "rmdir");
	if (t->listed) {
		t->listed = false;
		txn_put(fs, t);
	}
	return 0;
}

char *txn_info_json(struct txd_fs *fs, const struct txn *t)
{
	(void)fs;
	static const char *const names[] = {"active", "committed", "aborted", "prepared"};
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "name", t->name);
	ev_add_u64(o, "txid", t->id);
	cJSON_AddStringToObject(o, "state", names[t->state]);
	cJSON_AddStringToObject(o, "status", t->status);
	cJSON_AddItemToObject(o, "last_error",
			      t->last_error[0] ? cJSON_CreateString(t->last_error) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "last_error_time", t->last_error[0] ? rfc3339(t->last_error_ns)
								      : cJSON_CreateNull());
	ev_add_u64(o, "snapshot", t->snap);
	ev_add_u64(o, "commit", t->commit_id);
	cJSON_AddNumberToObject(o, "creator_pid", t->creator);
	cJSON_AddNumberToObject(o, "uid", t->uid);
	cJSON_AddItemToObject(o, "began", rfc3339(t->began_ns));
	cJSON_AddItemToObject(o, "ended", rfc3339(t->ended_ns));
	cJSON_AddBoolToObject(o, "readonly", t->readonly);
	cJSON_AddNumberToObject(o, "open_handles", t->nopen);
	cJSON_AddNumberToObject(o, "ops", t->log.nops);
	cJSON_AddNumberToObject(o, "entries_changed", t->nkeys);
	cJSON_AddNumberToObject(o, "files_changed", t->ninos + t->ncreated);
	cJSON_AddItemToObject(o, "proposal",
			      t->proposal ? cJSON_CreateString(t->proposal) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "participant",
			      t->participant ? cJSON_CreateString(t->participant) : cJSON_CreateNull());
	cJSON_AddBoolToObject(o, "in_doubt", t->in_doubt);
	char *text = json_print(o, false), *out = NULL;
	cJSON_Delete(o);
	if (text && asprintf(&out, "%s\n", text) < 0)
		out = NULL;
	free(text);
	return out;
}
