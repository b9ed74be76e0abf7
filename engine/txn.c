/*
 * txn.c — transactions: views, write sets, validation and the one-record
 * commit (design in txn.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "fs.h"
#include "os.h"
#include "util.h"

#define TXN_BUSY_WAIT_MS 2000 /* how long a commit waits for writers in the view */
#define OP_HDR 8

/* ---- lifetime ------------------------------------------------------------------ */
void txn_get(struct txn *t)
{
	t->refs++;
}

static void txn_free(struct txn *t)
{
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
 * the outcome, never trusted over the log; expendable. */
static void write_record(struct txd_fs *fs, const struct txn *t)
{
	char *dir, name[32], *json = txn_info_json(fs, t);
	snprintf(name, sizeof(name), "%" PRIu64 ".json", t->id);
	if (json && asprintf(&dir, "%s/dtc/transactions", fs->store.coord_dir) >= 0) {
		os_write_file(dir, name, json, strlen(json));
		free(dir);
	}
	free(json);
}

/* The transaction's end: release the snapshot (T4), stale the nodes (T3). */
static void txn_end(struct txd_fs *fs, struct txn *t, enum txn_state st)
{
	t->state = st;
	t->ended_ns = fs_now_ns();
	ns_snapshot_release(&fs->ns, t->snap);
	pthread_cond_broadcast(&fs->txn_cv);
	write_record(fs, t);
}

struct expire {
	char *dir;
	uint64_t before_us;
};

static int expire_one(const char *name, void *arg)
{
	struct expire *x = arg;
	uint64_t id;
	char path[4200];
	/* ids are at least the begin time in µs (txn_begin) */
	if (sscanf(name, "%" SCNu64 ".json", &id) == 1 && id < x->before_us) {
		snprintf(path, sizeof(path), "%s/%s", x->dir, name);
		txd_os->unlink(path);
	}
	return 0;
}

void txn_expire_records(struct txd_fs *fs, uint32_t retain_s)
{
	struct expire x = {.before_us = fs_now_ns() / 1000 - (uint64_t)retain_s * 1000000};
	if (asprintf(&x.dir, "%s/dtc/transactions", fs->store.coord_dir) < 0)
		return;
	txd_os->listdir(x.dir, expire_one, &x);
	free(x.dir);
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
		snprintf(why, sizeof(why), "abandoned (creator %d gone, nothing open for %u s)",
			 (int)t->creator, grace_s);
		txn_abort(fs, t, why);
	}
}

int txn_begin(struct txd_fs *fs, const char *name, const struct txd_cred *c, struct txn **out)
{
	pid_t creator = c->pid;
	if (txn_find(fs, name))
		return -EEXIST;
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
	snprintf(t->status, sizeof(t->status), "active");
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
	fs_event(fs, "txn_begin", "\"txn\":%" PRIu64 ",\"name\":\"%s\",\"pid\":%d,\"snapshot\":%" PRIu64,
		 t->id, t->name, (int)creator, t->snap);
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

static int add_key(struct txn *t, uint64_t parent, const char *name, size_t len)
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

static int add_ino(struct txn *t, uint64_t ino)
{
	return set_add(&t->inos, &t->ninos, &t->capinos, &t->inoidx, ino);
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
			err = add_key(t, op.u.dent.parent, op.u.dent.name, op.u.dent.name_len);
			break;
		case OP_INODE:
			if (S_ISDIR(op.u.inode.mode))
				err = set_add(&t->dirs, &t->ndirs, &t->capdirs, &t->diridx, op.u.inode.ino);
			else if (existed(fs, t, op.u.inode.ino))
				err = add_ino(t, op.u.inode.ino);
			else
				err = set_add(&t->created, &t->ncreated, &t->capcreated, &t->newidx,
					      op.u.inode.ino);
			break;
		case OP_CONTENT:
			if (existed(fs, t, op.u.content.ino))
				err = add_ino(t, op.u.content.ino);
			break;
		case OP_XATTR_SET:
		case OP_XATTR_DEL:
			if (existed(fs, t, op.u.xattr.ino))
				err = add_ino(t, op.u.xattr.ino);
			break;
		default:
			break;
		}
	}
	return err;
}

int txn_apply(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	if (t->state != TXN_ACTIVE)
		return -ESTALE;
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
static void set_status(struct txn *t, const char *fmt, const char *path, uint64_t winner)
{
	snprintf(t->status, sizeof(t->status), fmt, path, winner);
}

static void key_path(struct txd_fs *fs, const struct txn_key *k, char *buf, size_t cap)
{
	struct inode *p = ns_inode(&fs->ns, k->parent);
	char dir[4096];
	if (p)
		ns_path(&fs->ns, p, dir, sizeof(dir));
	else
		snprintf(dir, sizeof(dir), "?");
	snprintf(buf, cap, "%.3500s%s%.255s", dir, strcmp(dir, "/") ? "/" : "", k->name);
}

/* Step 2 of txn.h: first committer wins. */
static int validate(struct txd_fs *fs, struct txn *t)
{
	char path[4096];
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
			struct dent *e = ns_dir_find(p->dir, key->name, strlen(key->name));
			if (ino_now != ino_then || (e && e->commit > t->snap))
				winner = e ? e->commit : wal_last_lsn(fs->wal);
		}
		if (winner) {
			key_path(fs, key, path, sizeof(path));
			set_status(t, "aborted conflict path=%.3800s winner=%" PRIu64, path, winner);
			return -EBUSY;
		}
	}
	for (uint32_t k = 0; k < t->ndirs; k++) {
		/* a directory the view removed must end up empty: every entry the
		 * main tree has must be one the view saw (and removed) — one
		 * bound after S is a conflict */
		struct inode *v = ns_inode(&t->ns, t->dirs[k]); /* NULL: removed, dropped */
		struct inode *m = ns_inode(&fs->ns, t->dirs[k]);
		if ((v && v->head->nlink) || !m || !m->dir || !m->dir->count)
			continue;
		for (struct dent *e = ns_dir_next(m->dir, 0); e; e = ns_dir_next(m->dir, e->cookie)) {
			if (e->commit <= t->snap)
				continue;
			char dir[3600];
			ns_path(&fs->ns, m, dir, sizeof(dir));
			snprintf(path, sizeof(path), "%s/%s", dir, e->name);
			set_status(t, "aborted conflict path=%.3800s winner=%" PRIu64, path, e->commit);
			return -EBUSY;
		}
	}
	for (uint32_t k = 0; k < t->ninos; k++) {
		struct inode *m = ns_inode(&fs->ns, t->inos[k]);
		if (m)
			ns_path(&fs->ns, m, path, sizeof(path));
		if (!m || m->head->commit > t->snap) {
			set_status(t, "aborted conflict path=%.3800s winner=%" PRIu64, m ? path : "(removed)",
				   m ? m->head->commit : wal_last_lsn(fs->wal));
			return -EBUSY;
		}
		struct wfile *wf = m->wf;
		if (wf && wf->nwriters) {
			set_status(t, "aborted busy path=%.3800s reason=main-tree writer%.0" PRIu64, path, 0);
			return -EBUSY;
		}
	}
	return 0;
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
			fs_inode_rec(m, &r);
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
			fs_inode_rec(in, &r);
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

/* Copy the log, without the view's own directory attribute ops for
 * directories that existed at S (merged_dirs states them). */
static int log_ops(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	const uint8_t *p = t->log.ops + REC_HDR_SIZE, *end = t->log.ops + t->log.len;
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
			skip = S_ISDIR(mode) && existed(fs, t, ino);
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
static void publish(struct txd_fs *fs, struct txn *t)
{
	for (uint32_t k = 0; k < t->ninos; k++) {
		struct inode *m = ns_inode(&fs->ns, t->inos[k]);
		if (!m)
			continue;
		if (m->live)
			fs_freeze_node(fs, m->live);
		if (m->wf)
			m->wf = NULL; /* its readers keep their copy; new opens start afresh */
	}
	for (uint32_t k = 0; k < t->nkeys; k++) {
		struct inode *p = ns_inode(&fs->ns, t->keys[k].parent);
		if (p && p->live)
			fs_queue_inval(fs, ((struct node *)p->live)->id, t->keys[k].name);
	}
}

/* Unlinked inodes the commit left behind (names removed in the view). */
static void drop_dead(struct txd_fs *fs, struct txn *t)
{
	for (uint64_t k = 0; k < t->ns.tabsize; k++)
		for (struct inode *in = t->ns.tab[k]; in; in = in->hnext) {
			struct inode *m = ns_inode(&fs->ns, in->ino);
			if (m && m->head->nlink == 0 && m->pins == 0)
				ns_inode_unlinked(&fs->ns, m); /* ns.h M1 */
		}
}

static int wait_writers(struct txd_fs *fs, struct txn *t)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += TXN_BUSY_WAIT_MS / 1000;
	if (t->nwriters)
		fs_will_block(fs); /* their close must get through meanwhile */
	while (t->nwriters && t->state == TXN_ACTIVE)
		if (pthread_cond_timedwait(&fs->txn_cv, &fs->lock, &until))
			break;
	if (t->state != TXN_ACTIVE)
		return -ESTALE;
	if (!t->nwriters)
		return 0;
	set_status(t, "aborted busy path=%.3800s reason=open for writing in the view%.0" PRIu64,
		   "(a file in root/)", 0);
	return -EBUSY;
}

int txn_commit(struct txd_fs *fs, struct txn *t, pid_t pid)
{
	if (t->state != TXN_ACTIVE)
		return t->state == TXN_COMMITTED ? 0 : -ESTALE;
	int err = wait_writers(fs, t);
	if (err == -EBUSY) {
		/* a file still open for writing: fail, but stay active so the
		 * caller can close it and commit again (SPEC §4) */
		char why[4096];
		snprintf(why, sizeof(why), "%s", t->status);
		snprintf(t->status, sizeof(t->status), "active (last commit failed: %.3900s)", why + 8);
		return err;
	}
	if (err)
		return err;
	if ((err = validate(fs, t))) {
		fs->conflicts++;
		fs_event(fs, "txn_conflict", "\"txn\":%" PRIu64 ",\"status\":\"%s\"", t->id, t->status);
		txn_end(fs, t, TXN_ABORTED);
		return err;
	}
	uint64_t lsn = wal_last_lsn(fs->wal);
	if (t->log.nops) {
		struct rec_buf b;
		rec_init(&b, t->id, fs_now_ns(), (uint32_t)pid);
		bool sync = fs->opts.durability != TXD_DUR_NONE;
		if (sync)
			fs_will_block(fs);
		if ((err = log_ops(fs, t, &b)) || (err = merged_dirs(fs, t, &b)) ||
		    (sync && (err = chunkstore_sync(fs->cs)))) {
			rec_release(&b);
			return err;
		}
		publish(fs, t);
		struct wal_pos pos;
		err = fs_commit(fs, &b, &pos);
		rec_release(&b);
		if (err)
			return err;
		lsn = pos.lsn;
	}
	t->commit_id = lsn;
	snprintf(t->status, sizeof(t->status), "committed %" PRIu64, lsn);
	txn_end(fs, t, TXN_COMMITTED);
	drop_dead(fs, t);
	fs_set_must_wait(); /* a transaction commit is durable before it returns */
	fs_event(fs, "txn_commit", "\"txn\":%" PRIu64 ",\"commit\":%" PRIu64 ",\"ops\":%u", t->id,
		 lsn, t->log.nops);
	return 0;
}

void txn_abort(struct txd_fs *fs, struct txn *t, const char *reason)
{
	if (t->state != TXN_ACTIVE)
		return;
	snprintf(t->status, sizeof(t->status), "aborted %.3900s", reason);
	txn_end(fs, t, TXN_ABORTED);
	fs_event(fs, "txn_abort", "\"txn\":%" PRIu64 ",\"reason\":\"%s\"", t->id, reason);
}

void txn_remove(struct txd_fs *fs, struct txn *t)
{
	txn_abort(fs, t, "by rmdir");
	if (t->listed) {
		t->listed = false;
		txn_put(fs, t);
	}
}

static void rfc3339(uint64_t ns, char *buf, size_t cap)
{
	if (!ns) {
		snprintf(buf, cap, "null");
		return;
	}
	time_t sec = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&sec, &tm);
	size_t n = strftime(buf, cap, "\"%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03uZ\"", (unsigned)(ns / 1000000 % 1000));
}

char *txn_info_json(struct txd_fs *fs, const struct txn *t)
{
	(void)fs;
	static const char *const names[] = {"active", "committed", "aborted"};
	char began[48], ended[48], *out;
	rfc3339(t->began_ns, began, sizeof(began));
	rfc3339(t->ended_ns, ended, sizeof(ended));
	if (asprintf(&out,
		     "{\"name\":\"%s\",\"txid\":%" PRIu64 ",\"state\":\"%s\",\"status\":\"%s\","
		     "\"snapshot\":%" PRIu64 ",\"commit\":%" PRIu64 ",\"creator_pid\":%d,"
		     "\"uid\":%u,\"began\":%s,\"ended\":%s,\"readonly\":%s,\"open_handles\":%u,"
		     "\"ops\":%u,\"entries_changed\":%u,\"files_changed\":%u}\n",
		     t->name, t->id, names[t->state], t->status, t->snap, t->commit_id,
		     (int)t->creator, t->uid, began, ended, t->readonly ? "true" : "false", t->nopen,
		     t->log.nops, t->nkeys, t->ninos + t->ncreated) < 0)
		return NULL;
	return out;
}
