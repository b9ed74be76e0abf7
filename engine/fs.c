/*
 * fs.c — opening and recovering a store, the commit pipeline, node ids,
 * notifications, durability and status (design in core.h; nodes: dtree.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "chunk.h"
#include "ckpt.h"
#include "clog.h"
#include "core.h"
#include "dtc.h"
#include "dtree.h"
#include "events.h"
#include "filelock.h"
#include "gc.h"
#include "os.h"
#include "rec.h"
#include "space.h"
#include "svc.h"
#include "txn.h"
#include "wal.h"

/* Log volume between background checkpoints. */
#define CKPT_EVERY_BYTES (fs->opts.checkpoint_bytes ? fs->opts.checkpoint_bytes : 256ull << 20)

uint64_t fs_now_ns(void)
{
	return txd_os->now_realtime_ns();
}

/* ---- node ids ---------------------------------------------------------------- */
static uint64_t node_hash(uint64_t id, uint64_t size)
{
	return (id * 0x9e3779b97f4a7c15ull) >> 20 & (size - 1);
}

struct node *fs_node(struct txd_fs *fs, uint64_t id)
{
	struct node *n = fs->nodes[node_hash(id, fs->nodes_size)];
	while (n && n->id != id)
		n = n->hnext;
	return n;
}

static int nodes_grow(struct txd_fs *fs)
{
	uint64_t nsize = fs->nodes_size * 2;
	struct node **nt = calloc(nsize, sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	for (uint64_t k = 0; k < fs->nodes_size; k++) {
		struct node *n = fs->nodes[k];
		while (n) {
			struct node *next = n->hnext;
			uint64_t h = node_hash(n->id, nsize);
			n->hnext = nt[h];
			nt[h] = n;
			n = next;
		}
	}
	free(fs->nodes);
	fs->nodes = nt;
	fs->nodes_size = nsize;
	return 0;
}

/* A new node (nlookup 0) for inode in of view t (in NULL: a control node). */
struct node *fs_node_new(struct txd_fs *fs, struct txn *t, struct inode *in)
{
	if (fs->nnodes + 1 > fs->nodes_size && nodes_grow(fs))
		return NULL;
	struct node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->id = fs->next_node++;
	n->in = in;
	n->txn = t;
	if (in)
		in->pins++;
	if (t)
		txn_get(t);
	uint64_t h = node_hash(n->id, fs->nodes_size);
	n->hnext = fs->nodes[h];
	fs->nodes[h] = n;
	fs->nnodes++;
	return n;
}

/* The node lookups return for in, created on demand. */
struct node *fs_live_node(struct txd_fs *fs, struct txn *t, struct inode *in)
{
	if (in->live)
		return in->live;
	struct node *n = fs_node_new(fs, t, in);
	if (n)
		in->live = n;
	return n;
}

void fs_inode_unpin(struct txd_fs *fs, struct txn *t, struct inode *in)
{
	if (--in->pins > 0)
		return;
	if (in->freed)
		ns_inode_drop(fs_ns(fs, t), in);
	else /* unlinked: dropped unless a snapshot still sees it (ns.h M1) */
		ns_inode_unlinked(fs_ns(fs, t), in);
}

struct ns *fs_ns(struct txd_fs *fs, struct txn *t)
{
	return t ? &t->ns : &fs->ns;
}

struct inode *fs_view_inode(struct txd_fs *fs, struct txn *t, uint64_t ino)
{
	return t ? txn_inode(fs, t, ino) : ns_inode(&fs->ns, ino);
}

int fs_view_commit(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	return t ? txn_apply(fs, t, b) : fs_commit(fs, b, NULL);
}

void fs_node_put(struct txd_fs *fs, struct node *n)
{
	if (n->nlookup || n->nopen || n->id == TXD_ROOT_NODE)
		return;
	struct node **pp = &fs->nodes[node_hash(n->id, fs->nodes_size)];
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	fs->nnodes--;
	struct inode *in = n->in;
	if (in) {
		if (in->live == n)
			in->live = NULL;
		if (n->frozen)
			ns_iver_unpin(fs_ns(fs, n->txn), in, n->frozen);
		fs_inode_unpin(fs, n->txn, in);
	}
	if (n->txn)
		txn_put(fs, n->txn);
	free(n);
}

struct timespec fs_ns_ts(int64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ll), .tv_nsec = (long)(ns % 1000000000ll)};
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000l;
	}
	return ts;
}

int64_t fs_ts_ns(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

struct timespec fs_now_ts(void)
{
	uint64_t ns = txd_os->now_file_ns();
	return (struct timespec){.tv_sec = (time_t)(ns / 1000000000ull),
				 .tv_nsec = (long)(ns % 1000000000ull)};
}


/* ---- attributes ----------------------------------------------------------------- */
void fs_attr(struct txd_fs *fs, const struct node *n, struct txd_attr *a)
{
	(void)fs;
	struct inode *in = n->in;
	const struct iver *v = n->frozen ? n->frozen : in->head;
	memset(a, 0, sizeof(*a));
	a->ino = in->ino;
	a->mode = v->mode;
	a->nlink = v->nlink;
	a->uid = v->uid;
	a->gid = v->gid;
	a->rdev = v->rdev;
	a->size = v->size;
	a->atime = v->atime;
	a->mtime = v->mtime;
	a->ctime = v->ctime;
	a->cacheable = true;
	if (S_ISREG(v->mode)) {
		a->blocks = (v->stored + 511) / 512; /* kept by ns.c: no walk */
		struct wfile *wf = in->wf;
		if (!n->frozen && wf) {
			/* uncommitted: committed blocks + what was written since,
			 * never the size of a sparse extension */
			a->size = atomic_load(&wf->size);
			a->blocks += (atomic_load(&wf->dirty_bytes) + 511) / 512;
			if (a->blocks * 512 > a->size + 511)
				a->blocks = (a->size + 511) / 512;
			if (atomic_load(&wf->times_set))
				a->mtime = a->ctime = fs_ns_ts(atomic_load(&wf->mtime_ns));
		}
	} else if (S_ISDIR(v->mode)) {
		a->size = 4096;
		a->blocks = 8;
	}
}

void fs_entry(struct txd_fs *fs, struct node *n, struct txd_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->node = n->id;
	e->generation = 1;
	e->cacheable = true;
	fs_attr(fs, n, &e->attr);
	n->nlookup++;
}

/* ---- notifications -------------------------------------------------------------- */
void fs_queue_inval(struct txd_fs *fs, uint64_t parent_node, const char *name)
{
	if (!fs->notify.inval_entry)
		return;
	size_t len = strlen(name);
	struct notice *nt = malloc(sizeof(*nt) + len + 1);
	if (!nt)
		return; /* best effort: the kernel revalidates on its timeout */
	nt->parent = parent_node;
	nt->node = 0;
	memcpy(nt->name, name, len + 1);
	nt->next = fs->notices;
	fs->notices = nt;
}

/* Deliver queued notices; call without fs->lock. */
void fs_notify_flush(struct txd_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	struct notice *nt = fs->notices;
	fs->notices = NULL;
	pthread_mutex_unlock(&fs->lock);
	while (nt) {
		struct notice *next = nt->next;
		fs->notify.inval_entry(fs->notify.arg, nt->parent, nt->name);
		free(nt);
		nt = next;
	}
}

void txd_set_notify(struct txd_fs *fs, const struct txd_notify *n)
{
	pthread_mutex_lock(&fs->lock);
	fs->notify = *n;
	pthread_mutex_unlock(&fs->lock);
}

/* notify is set once, before requests arrive (txd_set_notify) */
void fs_will_block(struct txd_fs *fs)
{
	if (fs->notify.will_block)
		fs->notify.will_block(fs->notify.arg);
}

/* ---- the commit pipeline (core.h steps 3-4) --------------------------------------- */
pid_t fs_process_of(struct txd_fs *fs, pid_t tid)
{
	struct proc_id id;
	if (tid <= 0 || !fs->svc)
		return tid;
	uint64_t now = txd_os->now_monotonic_ns();
	unsigned k = (unsigned)tid % 64;
	pthread_mutex_lock(&fs->tgid_lock);
	pid_t hit = fs->tgid_cache[k].tid == (uint32_t)tid && now < fs->tgid_cache[k].until_ns
			    ? (pid_t)fs->tgid_cache[k].tgid
			    : 0;
	pthread_mutex_unlock(&fs->tgid_lock);
	if (hit)
		return hit;
	if (proc_identify(svc_proc(fs->svc), (uint32_t)tid, &id))
		return tid;
	pthread_mutex_lock(&fs->tgid_lock); /* remembered: no syscall per commit */
	fs->tgid_cache[k].tid = (uint32_t)tid;
	fs->tgid_cache[k].tgid = id.pid;
	fs->tgid_cache[k].until_ns = now + 1000000000ull;
	pthread_mutex_unlock(&fs->tgid_lock);
	return (pid_t)id.pid;
}

int fs_commit(struct txd_fs *fs, struct rec_buf *b, struct wal_pos *posp)
{
	return fs_commit_prep(fs, b, NULL, posp);
}

int fs_note_space(struct txd_fs *fs, const char *op, int err)
{
	if ((err == -ENOSPC || err == -EDQUOT) && fs->space)
		space_note_full(fs->space, op, err);
	return err;
}

static bool no_space(int err)
{
	return err == -ENOSPC || err == -EDQUOT;
}

/*
 * Step 3 on a full disk (space.h SP3, SP4; wal.h W8). A record that grows
 * the store is refused before it is written while the reserve is not
 * held, and fails with ENOSPC/EDQUOT when the log has no room: nothing of
 * it is in the log, so the store goes on (STYLE rule 6). A record that
 * does not grow it may use the log's headroom and then the reserve.
 */
static int commit_append(struct txd_fs *fs, const struct rec_buf *b, const struct iovec *iov,
			 int n, struct wal_pos *pos)
{
	bool frees = false; /* classified only when it matters */
	int err = space_may_grow(fs->space);

	if (err && !(frees = !space_record_grows(b->ops, b->len, b->data_len)))
		return err; /* SP4 */
	err = wal_append_flags(fs->wal, WAL_REC_COMMIT, iov, n, frees ? WAL_APPEND_RESERVE : 0,
			       pos);
	if (!no_space(err))
		return err;
	if (!frees) {
		if (space_record_grows(b->ops, b->len, b->data_len))
			return err;
		/* the log's headroom (W8) */
		err = wal_append_flags(fs->wal, WAL_REC_COMMIT, iov, n, WAL_APPEND_RESERVE, pos);
	}
	if (no_space(err) && !space_release(fs->space)) {
		syslog(LOG_WARNING, "txdir: disk full: reserve released for a commit that frees space");
		err = wal_append_flags(fs->wal, WAL_REC_COMMIT, iov, n, WAL_APPEND_RESERVE, pos);
	}
	return err;
}

int fs_commit_prep(struct txd_fs *fs, struct rec_buf *b, struct ns_prep *prep,
		   struct wal_pos *posp)
{
	if (fs->failed || wal_failed(fs->wal))
		return -EIO;
	uint64_t t0 = txd_os->now_monotonic_ns();
	int n = rec_iov_count(b);
	struct iovec stack[8], *iov = stack;
	if (n > 8 && !(iov = malloc(sizeof(*iov) * n)))
		return -ENOMEM;
	/* the caller's process, not its thread (commits/ID "pid") */
	rec_set_pid(b, (uint32_t)fs_process_of(fs, (pid_t)rec_pid(b)));
	int err = rec_finish(b, iov);
	if (err < 0)
		goto out;
	/* a prepared transaction's write set is locked (dtc.h D2) */
	if ((err = dtc_locked_check(fs, b->ops, b->len)))
		goto out;
	struct wal_pos pos;
	err = commit_append(fs, b, iov, n, &pos);
	if (no_space(err)) {
		fs_note_space(fs, "commit", err); /* not sticky: nothing was written */
		goto out;
	}
	if (err) {
		fs->failed = true;
		cJSON *f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "reason", "commit did not reach the log");
		cJSON_AddStringToObject(f, "error", txd_strerror(err));
		ev_emit(fs->events, fs_now_ns(), "store_failed", f);
		err = -EIO;
		goto out;
	}
	uint32_t len = (uint32_t)(b->len + b->data_len);
	struct clog_note *note = NULL;
	if (clog_note_begin(fs->clog, &fs->ns, pos.lsn, b->ops, len, &note))
		syslog(LOG_WARNING, "txdir: commit %llu is not in the commit log (no memory)",
		       (unsigned long long)pos.lsn);
	err = ns_apply_prepared(&fs->ns, b->ops, len, pos.seg, pos.payload_off, pos.lsn, prep);
	if (err) {
		clog_note_drop(note);
		/* the log has it, memory does not: only a reopen can reconcile */
		fs->failed = true;
		syslog(LOG_ERR, "txdir: applying commit %llu failed: %s",
		       (unsigned long long)pos.lsn, txd_strerror(err));
		err = -EIO;
		goto out;
	}
	fs->commits++;
	fs->commit_count++;
	if (wal_bytes_appended(fs->wal) - fs->ckpt_wal_bytes > CKPT_EVERY_BYTES)
		pthread_cond_signal(&fs->ckpt_cv);
	fs->commit_ns_sum += txd_os->now_monotonic_ns() - t0;
	if (clog_note_end(fs->clog, note, &fs->ns))
		syslog(LOG_WARNING, "txdir: could not log commit %llu in the commit log",
		       (unsigned long long)pos.lsn);
	if (posp)
		*posp = pos;
out:
	if (iov != stack)
		free(iov);
	return err;
}

/* ---- a full disk (space.h) ----------------------------------------------------------- */
/* The size of the newest checkpoint file (space.h SP1); 0 if none. */
struct newest_ckpt {
	const char *dir;
	char name[64];
};

static int newest_ckpt_cb(const char *name, void *arg)
{
	struct newest_ckpt *nc = arg;
	if (!strncmp(name, "ckpt-", 5) && strlen(name) < sizeof(nc->name) &&
	    strcmp(name, nc->name) > 0)
		snprintf(nc->name, sizeof(nc->name), "%s", name);
	return 0;
}

static uint64_t newest_ckpt_bytes(struct txd_fs *fs)
{
	struct newest_ckpt nc = {.dir = fs->store.ckpt_dir};
	uint64_t size = 0;
	char path[4096];
	if (txd_os->listdir(nc.dir, newest_ckpt_cb, &nc) || !nc.name[0])
		return 0;
	snprintf(path, sizeof(path), "%s/%s", nc.dir, nc.name);
	int fd = txd_os->open(path, O_RDONLY, 0);
	if (fd < 0)
		return 0;
	if (txd_os->fstat_size(fd, &size))
		size = 0;
	txd_os->close(fd);
	return size;
}

/* fs->lock held. A checkpoint is allowed the reserve (space.h SP3): when
 * the disk is full it releases it and tries once more. */
static int checkpoint_now(struct txd_fs *fs)
{
	uint64_t count = fs->ckpt_count;
	int err = ckpt_write(fs);
	if (no_space(err) && !space_release(fs->space)) {
		syslog(LOG_WARNING, "txdir: disk full: reserve released for a checkpoint");
		err = ckpt_write(fs);
	}
	if (!err && fs->ckpt_count != count) /* a new one was written */
		fs->ckpt_bytes = newest_ckpt_bytes(fs);
	return fs_note_space(fs, "checkpoint", err);
}

/* ---- background work ---------------------------------------------------------------
 * Once CKPT_EVERY_BYTES of log have been appended since the last checkpoint,
 * a thread writes a new one (from a registered snapshot: fs->lock is held
 * only for bounded batches, never across I/O, ckpt.c K7), which bounds
 * replay time and lets old segments go; it also frees, in the same bounded
 * holds, what released transaction snapshots kept (ckpt_sweep). Every
 * second it also aborts abandoned transactions (txn.h T5) and, with
 * -o max_snapshot_age, releases older snapshots (their readers get ESTALE,
 * their transactions abort); and it takes the reserve back once the disk
 * has room (space.h SP5). */
static void *ckpt_main(void *arg)
{
	struct txd_fs *fs = arg;
	pthread_mutex_lock(&fs->lock);
	for (uint64_t tick = 0; !fs->ckpt_stop; tick++) {
		txn_reap_abandoned(fs, fs->opts.txn_grace_s ? fs->opts.txn_grace_s : 600);
		txn_run_waits(fs); /* deferred commits (txn.h): may drop fs->lock */
		if (fs->sweep_due)
			ckpt_sweep(fs); /* drops fs->lock between batches */
		if (fs->opts.max_snapshot_age_s)
			fs_expire_snapshots(fs, fs->opts.max_snapshot_age_s * 1000000000ull);
		if (tick % 60 == 0)
			txn_expire_records(fs, fs->opts.retain_s ? fs->opts.retain_s : 3600);
		/* SP5: the reserve back once the disk has room (I/O: no lock) */
		uint64_t ckpt_bytes = fs->ckpt_bytes;
		pthread_mutex_unlock(&fs->lock);
		space_tick(fs->space, ckpt_bytes);
		pthread_mutex_lock(&fs->lock);
		/* gc.h: every GC_EVERY_S, or after a checkpoint (below) */
		if (gc_due(fs) && !fs->failed)
			gc_run(fs); /* drops fs->lock for its I/O */
		if ((wal_bytes_appended(fs->wal) - fs->ckpt_wal_bytes <= CKPT_EVERY_BYTES &&
		     !gc_ckpt_forced(fs)) ||
		    fs->failed) {
			/* the steps above drop fs->lock: a stop asked meanwhile
			 * signalled nobody, so look before sleeping */
			if (fs->ckpt_stop)
				break;
			/* wake at least every second for housekeeping */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 1;
			pthread_cond_timedwait(&fs->ckpt_cv, &fs->lock, &until);
			continue;
		}
		fs->ckpt_wal_bytes = wal_bytes_appended(fs->wal);
		int err = checkpoint_now(fs);
		if (err) {
			cJSON *f = cJSON_CreateObject();
			cJSON_AddStringToObject(f, "reason", txd_strerror(err));
			ev_emit(fs->events, fs_now_ns(), "checkpoint_failed", f);
		} else {
			gc_run(fs); /* delete what this checkpoint made free (G4) */
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

int txd_checkpoint(struct txd_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	int err = fs->failed ? -EIO : checkpoint_now(fs);
	fs->ckpt_wal_bytes = wal_bytes_appended(fs->wal);
	if (fs->sweep_due)
		ckpt_sweep(fs); /* what released snapshots kept: now, not later */
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static int ckpt_start(struct txd_fs *fs)
{
	pthread_cond_init(&fs->ckpt_cv, NULL);
	fs->ckpt_wal_bytes = wal_bytes_appended(fs->wal);
	int err = -pthread_create(&fs->ckpt_thread, NULL, ckpt_main, fs);
	fs->ckpt_running = !err;
	return err;
}

static void ckpt_stop(struct txd_fs *fs)
{
	if (!fs->ckpt_running)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->ckpt_stop = true;
	pthread_cond_signal(&fs->ckpt_cv);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->ckpt_thread, NULL);
	fs->ckpt_running = false;
}

/* ---- durability -------------------------------------------------------------------- */
uint64_t txd_current_lsn(struct txd_fs *fs)
{
	return wal_last_lsn(fs->wal);
}

static __thread bool must_wait;

void fs_set_must_wait(void)
{
	must_wait = true;
}

bool txd_commit_needs_wait(struct txd_fs *fs)
{
	bool w = must_wait;
	must_wait = false;
	return w || fs->opts.durability == TXD_DUR_FULL;
}

int txd_durable_async(struct txd_fs *fs, uint64_t lsn, void (*cb)(void *arg, int err),
		      void *arg)
{
	if (fs->opts.durability == TXD_DUR_NONE) {
		cb(arg, 0);
		return 0;
	}
	return wal_sync_async(fs->wal, lsn, cb, arg);
}

int txd_sync_wait(struct txd_fs *fs)
{
	if (fs->opts.durability == TXD_DUR_NONE)
		return 0;
	return wal_sync(fs->wal, wal_last_lsn(fs->wal));
}

/* ---- open and recovery ------------------------------------------------------------- */
static int replay_one(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		      uint32_t len)
{
	struct txd_fs *fs = arg;
	if (type == WAL_REC_PREPARE) /* prepared transactions (dtc.h) */
		return dtc_replay_prepare(fs, payload, len, pos->lsn);
	if (type == WAL_REC_RESOLVE)
		return dtc_replay_resolve(fs, payload, len);
	if (type != WAL_REC_COMMIT)
		return svc_replay(fs->svc, type, payload, len); /* svc.h V1 */
	struct rec_hdr hdr;
	struct clog_note *note = NULL;
	int err = clog_note_begin(fs->clog, &fs->ns, pos->lsn, payload, len, &note);
	if (err) { /* the log is derived: it never stops recovery */
		syslog(LOG_WARNING, "txdir: commit log: cannot note commit %" PRIu64 " (%d)",
		       pos->lsn, err);
		note = NULL;
	}
	if ((err = ns_apply(&fs->ns, payload, len, pos->seg, pos->payload_off, pos->lsn))) {
		clog_note_drop(note);
		return err;
	}
	if (!rec_validate(payload, len, &hdr) && hdr.txn >= fs->next_txid)
		fs->next_txid = hdr.txn + 1; /* transaction ids are never reused */
	if (!rec_validate(payload, len, &hdr))
		txn_replayed(fs, hdr.txn, pos->lsn); /* records across restarts (txn.h) */
	fs->commits++;
	if (!rec_validate(payload, len, &hdr))
		ev_commit_replayed(fs->events, hdr.time_ns, hdr.txn, pos->lsn);
	if ((err = clog_note_end(fs->clog, note, &fs->ns)))
		syslog(LOG_WARNING, "txdir: commit log: cannot log commit %" PRIu64 " (%d)",
		       pos->lsn, err);
	return 0;
}

static int make_root(struct txd_fs *fs)
{
	struct timespec now = fs_now_ts();
	struct rec_inode r = {.ino = NS_ROOT_INO, .mode = S_IFDIR | 0755, .uid = geteuid(),
			      .gid = getegid(), .nlink = 2, .atime = now, .mtime = now,
			      .ctime = now, .parent = NS_ROOT_INO};
	struct rec_buf b;
	rec_init(&b, 0, fs_now_ns(), (uint32_t)getpid());
	rec_inode(&b, &r);
	int err = fs_commit(fs, &b, NULL);
	rec_release(&b);
	return err ? err : txd_sync_wait(fs);
}

static int fs_recover(struct txd_fs *fs)
{
	int err = ckpt_load(fs, &fs->ckpt_lsn);
	if (err || (err = txn_records_load(fs)))
		return err;
	if ((err = wal_replay(fs->wal, fs->ckpt_lsn, replay_one, fs)))
		return err;
	/* derived logs that got ahead of the WAL's lost tail (SPEC §7) */
	uint64_t last = wal_last_lsn(fs->wal);
	int cl = clog_cut_after(fs->clog, last), ec = ev_cut_after(fs->events, last);
	if (cl < 0 || ec < 0)
		syslog(LOG_WARNING, "txdir: cannot cut the logs after commit %" PRIu64 " (%d, %d)",
		       last, cl, ec);
	if (cl > 0 || ec > 0) {
		cJSON *lost = cJSON_CreateObject();
		ev_add_u64(lost, "last_lsn", last);
		ev_emit(fs->events, fs_now_ns(), "lost_commits", lost);
	}
	txn_records_settle(fs);
	ns_drop_unlinked(&fs->ns); /* open-unlinked at the crash: nobody holds them now */
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "checkpoint_lsn", fs->ckpt_lsn);
	ev_add_u64(f, "last_lsn", wal_last_lsn(fs->wal));
	ev_add_u64(f, "commits_replayed", fs->commits);
	ev_emit(fs->events, fs_now_ns(), "recovered", f);
	if (!ns_inode(&fs->ns, NS_ROOT_INO))
		return make_root(fs);
	return 0;
}

int txd_store_init(const char *dir)
{
	return store_init(dir);
}

uint64_t fs_retain_oldest_ns(struct txd_fs *fs)
{
	uint64_t retain = (fs->opts.retain_s ? fs->opts.retain_s : 3600) * 1000000000ull, now = fs_now_ns();
	return now > retain ? now - retain : 0;
}

/* The event and commit logs (events.h, clog.h), before replay completes them. */
static int fs_logs_open(struct txd_fs *fs)
{
	char *dir;
	if (asprintf(&dir, "%s/commits", fs->store.coord_dir) < 0)
		return -ENOMEM;
	int err = ev_open(fs->store.coord_dir, &fs->events);
	if (!err)
		err = clog_open(dir, &fs->clog);
	free(dir);
	return err;
}

/* svc.h V3: a format-1 store says format 2 before its first lease record. */
static int fs_upgrade(void *arg)
{
	struct txd_fs *fs = arg;
	return store_upgrade(&fs->store);
}

static int fs_svc_open(struct txd_fs *fs)
{
	struct svc_opts so = {.sync_grants = fs->opts.durability != TXD_DUR_NONE,
			      .events = fs->events, .max_leases = fs->opts.max_leases,
			      .max_waiters = fs->opts.max_waiters,
			      .max_proposals = fs->opts.max_proposals,
			      /* -o retain= (SPEC §5): decided proposals too */
			      .vote_retain_ns = (uint64_t)fs->opts.retain_s * 1000000000ull};
	if (fs->store.format < STORE_FORMAT_VERSION) {
		so.upgrade = fs_upgrade;
		so.upgrade_arg = fs;
	}
	return svc_open(fs->wal, &so, &fs->svc);
}

/* A lone fsync's fdatasync runs on the FUSE worker itself (wal.h W5). */
static void wal_will_block(void *arg)
{
	fs_will_block(arg);
}

/* The WAL segment size when -o wal_segment_bytes is not given: 64 MiB, or
 * a 32nd of a smaller file system (at least 4 MiB: a record that does not
 * fit leaves the rest of a segment unused). Only whole segments
 * before the current one go back to the disk (a checkpoint drops them,
 * GC empties them: gc.h G8), so on a 64 MiB disk one 64 MiB segment would
 * keep every deleted file's bytes. */
static uint64_t default_seg_size(struct txd_fs *fs)
{
	struct statvfs sv;
	uint64_t total = txd_os->statvfs(fs->store.wal_dir, &sv)
				 ? 0
				 : (uint64_t)sv.f_blocks * sv.f_frsize;
	if (!total || total / 32 >= (64ull << 20))
		return 0; /* the WAL's default */
	return total / 32 < (4ull << 20) ? 4ull << 20 : total / 32;
}

static int fs_start(struct txd_fs *fs)
{
	struct wal_opts wo = {
		.will_block = wal_will_block,
		.will_block_arg = fs,
		.same_boot = fs->store.same_boot, /* wal.h W9 */
		.seg_size = fs->opts.wal_segment_bytes ? fs->opts.wal_segment_bytes
						       : default_seg_size(fs),
		.sync_interval_ms = fs->opts.durability == TXD_DUR_NONE
					    ? 0
					    : (fs->opts.commit_interval_ms ? fs->opts.commit_interval_ms
									    : 1000),
	};
	/* with the small segments of a small disk, content past an eighth of
	 * one goes to packs: a big inline record that does not fit leaves the
	 * rest of a segment unused (a segment size given as an option keeps
	 * FS_INLINE_MAX) */
	uint64_t seg = wo.seg_size && !fs->opts.wal_segment_bytes ? wo.seg_size : 64ull << 20;
	fs->inline_max = seg / 8 < FS_INLINE_MAX ? seg / 8 : FS_INLINE_MAX;
	int err = chunkstore_open(fs->store.obj_dir, fs->store.wal_dir, &fs->cs);
	fs->ckpt_bytes = newest_ckpt_bytes(fs);
	if (!err)
		err = space_open(fs->store.obj_dir, fs->ckpt_bytes, &fs->space);
	if (!err) {
		chunkstore_set_space(fs->cs, fs->space);
		space_open_room(fs->space); /* a full disk: recovery first (SP3) */
	}
	if (!err)
		err = wal_open(fs->store.wal_dir, &wo, &fs->wal);
	if (!err)
		err = fs_logs_open(fs);
	if (!err)
		err = fs_svc_open(fs);
	if (!err)
		err = fl_open(&fs->locks);
	if (!err)
		err = fs_recover(fs);
	if (!err)
		err = svc_start(fs->svc); /* after replay: lease L8 */
	if (err)
		return err;
	struct node *root = fs_node_new(fs, NULL, ns_inode(&fs->ns, NS_ROOT_INO));
	if (!root)
		return -ENOMEM;
	root->in->live = root;
	dtc_start(fs); /* decisions for prepared transactions (dtc.h D5) */
	return ckpt_start(fs);
}

static void fs_free(struct txd_fs *fs)
{
	fl_close(fs->locks); /* waiting lock requests are answered EIO */
	fs->locks = NULL;
	ckpt_stop(fs);
	dtc_stop(fs); /* deferred prepares call into the vote service */
	svc_close(fs->svc); /* before the WAL and the event log it writes to */
	fs->svc = NULL;
	if (fs->upper_free) /* the control tree's state (core.h: registered by it) */
		fs->upper_free(fs);
	/* frozen nodes the kernel never forgot pin versions that may be
	 * detached from their inode's chain, in the main tree or in a view:
	 * give them back (F3) before the views go */
	for (uint64_t k = 0; fs->nodes && k < fs->nodes_size; k++)
		for (struct node *n = fs->nodes[k]; n; n = n->hnext)
			if (n->frozen) {
				ns_iver_unpin(fs_ns(fs, n->txn), n->in, n->frozen);
				n->frozen = NULL;
			}
	txn_free_all(fs);
	for (uint64_t k = 0; fs->nodes && k < fs->nodes_size; k++) {
		struct node *n = fs->nodes[k];
		while (n) {
			struct node *next = n->hnext;
			free(n);
			n = next;
		}
	}
	free(fs->nodes);
	free(fs->rec_unsynced);
	gc_free(fs);
	clog_close(fs->clog);
	ev_close(fs->events);
	fs->clog = NULL;
	fs->events = NULL;
	if (fs->wal)
		wal_close(fs->wal);
	ns_destroy(&fs->ns);
	if (fs->cs)
		chunkstore_close(fs->cs);
	space_close(fs->space);
	store_close(&fs->store);
	pthread_mutex_destroy(&fs->tgid_lock);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

/* ---- what a transaction commit needs of the data tree (core.h fs->dt) ---- */
static void dt_replaced(struct txd_fs *fs, struct inode *in)
{
	if (in->live)
		fs_freeze_node(fs, in->live);
	in->wf = NULL; /* its readers keep their copy; new opens start afresh */
}

static void dt_renamed(struct txd_fs *fs, struct inode *parent, const char *name)
{
	if (parent->live)
		fs_queue_inval(fs, ((struct node *)parent->live)->id, name);
}

static bool dt_has_writer(const struct inode *in)
{
	const struct wfile *wf = in ? in->wf : NULL;
	return wf && wf->nwriters;
}

int txd_fs_open(const char *dir, const struct txd_opts *opts, struct txd_fs **out,
		pid_t *holder_pid)
{
	struct txd_fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->dt.replaced = dt_replaced;
	fs->dt.renamed = dt_renamed;
	fs->dt.has_writer = dt_has_writer;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->tgid_lock, NULL);
	if (opts)
		fs->opts = *opts;
	fs->next_node = TXD_ROOT_NODE;
	fs->snapshots.snap_next = fs->snapshots.snap_prev = &fs->snapshots;
	fs->handles.all_next = fs->handles.all_prev = &fs->handles;
	pthread_cond_init(&fs->txn_cv, NULL);
	fs->nodes_size = 1024;
	fs->start_ns = txd_os->now_monotonic_ns();
	int err = -ENOMEM;
	fs->nodes = calloc(fs->nodes_size, sizeof(*fs->nodes));
	if (!fs->nodes || ns_init(&fs->ns))
		goto out_free;
	if ((err = store_open(dir, &fs->store, holder_pid)))
		goto out_free;
	if ((err = fs_start(fs)))
		goto out_free;
	*out = fs;
	return 0;
out_free:
	fs_free(fs);
	return err;
}

void fs_handle_opened(struct txd_fs *fs, struct handle *h)
{
	h->all_next = &fs->handles;
	h->all_prev = fs->handles.all_prev;
	h->all_prev->all_next = h;
	fs->handles.all_prev = h;
	fs->nhandles++;
}

void fs_handle_closed(struct txd_fs *fs, struct handle *h)
{
	h->all_prev->all_next = h->all_next;
	h->all_next->all_prev = h->all_prev;
	h->all_next = h->all_prev = NULL;
	fs->nhandles--;
}

/* Handles the kernel never released — the session ended with files open
 * (a signal, an aborted connection) — are released now, as their RELEASE
 * would have: content a writer flushed is committed, its view's writer
 * count drops (a commit or prepare waiting on it goes on). */
static void release_leftovers(struct txd_fs *fs)
{
	for (;;) {
		pthread_mutex_lock(&fs->lock);
		struct handle *h = fs->handles.all_next;
		pthread_mutex_unlock(&fs->lock);
		if (h == &fs->handles)
			return;
		uint64_t fh = (uint64_t)(uintptr_t)h;
		if ((h->is_dir ? txd_releasedir(fs, fh) : txd_release(fs, fh)) == -EBADF)
			return; /* not ours (cannot happen): never loop on it */
	}
}

void txd_fs_close(struct txd_fs *fs)
{
	release_leftovers(fs);
	ckpt_stop(fs);
	pthread_mutex_lock(&fs->lock);
	if (!fs->failed && !wal_failed(fs->wal)) {
		int err = checkpoint_now(fs);
		if (err)
			syslog(LOG_WARNING, "txdir: checkpoint at close failed: %s",
			       txd_strerror(err));
	}
	pthread_mutex_unlock(&fs->lock);
	if (fs->opts.durability != TXD_DUR_NONE)
		wal_sync(fs->wal, wal_last_lsn(fs->wal));
	fs_free(fs);
}

/* ---- status ------------------------------------------------------------------------- */
static int count_versions(void *arg, struct inode *in)
{
	for (struct iver *v = in->head; v; v = v->older)
		++*(uint64_t *)arg;
	return 0;
}

void fs_status_locked(struct txd_fs *fs, struct txd_status *st)
{
	struct wal_stats ws;
	memset(st, 0, sizeof(*st));
	wal_get_stats(fs->wal, &ws);
	st->store = fs->store.dir;
	st->durability = fs->opts.durability;
	st->commits = fs->commits;
	st->last_commit_id = wal_last_lsn(fs->wal);
	st->lsn = st->last_commit_id;
	st->durable_lsn = wal_durable_lsn(fs->wal);
	st->wal_bytes = ws.disk_bytes;
	st->wal_syncs = ws.syncs;
	st->wal_synced_records = ws.synced_records;
	ns_walk(&fs->ns, count_versions, &st->versions_retained);
	st->open_handles = fs->nhandles;
	if (fs->snapshots.snap_prev != &fs->snapshots)
		st->oldest_snapshot_age_s =
			(double)(txd_os->now_monotonic_ns() - fs->snapshots.snap_prev->opened_ns) / 1e9;
	st->inodes = fs->ns.ninodes;
	st->nodes = fs->nnodes;
	st->checksum_errors = chunkstore_checksum_errors(fs->cs);
	st->conflicts = fs->conflicts;
	st->failed = fs->failed || wal_failed(fs->wal);
	st->disk_full = space_full(fs->space, st->disk_full_why, sizeof(st->disk_full_why));
	space_get(fs->space, &st->reserve_bytes, &st->reserve_held);
	st->checkpoints = fs->ckpt_count;
	st->checkpoint_lsn = fs->ckpt_lsn;
}

void txd_get_status(struct txd_fs *fs, struct txd_status *st)
{
	pthread_mutex_lock(&fs->lock);
	fs_status_locked(fs, st);
	pthread_mutex_unlock(&fs->lock);
}

int txd_statfs(struct txd_fs *fs, struct statvfs *out)
{
	int err = txd_os->statvfs(fs->store.dir, out);
	if (err)
		return err;
	out->f_namemax = TXD_NAME_MAX;
	space_statfs(fs->space, out); /* SP7 */
	pthread_mutex_lock(&fs->lock);
	out->f_files = out->f_ffree + fs->ns.ninodes;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}
