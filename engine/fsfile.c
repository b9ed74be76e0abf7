/*
 * fsfile.c — open files: snapshot readers, the shared working copy, and the
 * content commit at FLUSH / FSYNC (SPEC §3).
 *
 * Who reads what:
 *   - a read-only open while nobody has written the file since its last
 *     commit pins the head version: it reads that version for its whole
 *     life (snapshot reader). A handle with nothing written since its last
 *     FLUSH is not a writer (SPEC §3): a reader opened after a writer's
 *     close(2) returned is a snapshot reader, whether or not the kernel
 *     has sent that writer's RELEASE yet;
 *   - every other open shares the working copy (struct wfile), as on ext4.
 * A writer arriving at a node that has snapshot readers freezes that node on
 * their version and gets -ESTALE, so the kernel looks the name up again and
 * opens a fresh node id (dtree.h F1): the readers' page cache is never touched.
 *
 * When content is committed (SPEC §3 "Commits"):
 *   - FLUSH commits the working copy if content was written to it since
 *     the last commit (wfile->written: write, fallocate, ftruncate through
 *     a handle). A truncation by O_TRUNC with nothing written after it
 *     (the shell's open + dup2 + close before CMD writes) is not committed
 *     alone at FLUSH: it goes with the content that follows;
 *   - such a lone truncation (wfile->trunc_pending) is committed at the
 *     RELEASE of the handle that made it or of the last writer, or before
 *     any other OPEN or an fsync of the file — or of any directory (the
 *     mount-wide `mountctl sync`; syncfs never reaches FUSE) — is
 *     answered, whichever is first;
 *   - fsync and RELEASE of the last writer commit whatever is pending.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include "chunk.h"
#include "core.h"
#include "dtc.h"
#include "dtree.h"
#include "events.h"
#include "rec.h"
#include "wal.h"
#include "os.h"
#include "txn.h"

/* Content beyond this much inline data goes to a pack before the record. */

/* ---- working copies ---------------------------------------------------------- */
struct wfile *fs_wf_get(struct txd_fs *fs, struct inode *in)
{
	struct wfile *wf = in->wf;
	if (wf) {
		wf->nhandles++;
		return wf;
	}
	wf = calloc(1, sizeof(*wf));
	if (!wf)
		return NULL;
	const struct iver *v = in->head;
	if (wcopy_new(fs->cs, cmap_ref(v->map), v->size, v->dsum, &wf->wc)) {
		free(wf);
		return NULL;
	}
	pthread_mutex_init(&wf->lock, NULL);
	atomic_store(&wf->size, v->size);
	wf->nhandles = 1;
	in->wf = wf;
	in->pins++;
	return wf;
}

void fs_wf_put(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf)
{
	if (--wf->nhandles > 0)
		return;
	/* Content that never committed (its close and the RELEASE backstop
	 * failed: a full disk, an I/O error) goes with the copy. The kernel
	 * still has it in the node id's page cache and size, which the
	 * writeback cache never takes back from the server: retire that node
	 * id (F1) so the name shows the committed version again, instead of
	 * the old bytes under the written size. */
	if ((atomic_load(&wf->written) || atomic_load(&wf->trunc_pending)) && in->wf == wf &&
	    in->live && !((struct node *)in->live)->frozen) {
		((struct node *)in->live)->retired = true;
		fs_freeze_node(fs, in->live);
	}
	if (in->wf == wf)
		in->wf = NULL; /* else a transaction commit detached it already */
	wcopy_free(wf->wc);
	pthread_mutex_destroy(&wf->lock);
	free(wf);
	fs_inode_unpin(fs, t, in);
}

/* Large commits: move inline chunks into a pack (step 2 of the commit pipeline, core.h). */
static int spill_inline(struct txd_fs *fs, struct wcopy_prep *p)
{
	for (uint32_t k = 0; k < p->nchg; k++) {
		struct wcopy_change *c = &p->chg[k];
		if (!c->data || !c->len)
			continue;
		int err = chunkstore_append(fs->cs, c->data, c->len, &c->loc);
		if (err)
			return err;
		c->data = NULL;
	}
	p->has_spilled = true;
	p->inline_bytes = 0;
	return 0;
}

/* Give inline chunks the WAL location the record put them at. */
static void place_inline(struct wcopy_prep *p, const struct wal_pos *pos, uint64_t data_off)
{
	uint64_t at = 0;
	for (uint32_t k = 0; k < p->nchg; k++) {
		struct wcopy_change *c = &p->chg[k];
		if (!c->data || !c->len)
			continue;
		c->loc.file = CHUNK_FILE_WAL | pos->seg;
		c->loc.off = pos->payload_off + data_off + at;
		c->loc.len = c->len;
		c->loc.csum = c->csum;
		at += c->len;
	}
}

static int content_record(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf,
			  struct wcopy_prep *p, pid_t pid, struct wal_pos *pos)
{
	struct rec_buf b;
	struct rec_inode r;
	rec_init(&b, 0, fs_now_ns(), (uint32_t)pid);
	rec_content(&b, in->ino, p->size, p->truncated, p->trunc_chunks, p->chg, p->nchg);
	ns_inode_rec(in, &r);
	r.mtime = atomic_load(&wf->times_set) ? fs_ns_ts(atomic_load(&wf->mtime_ns)) : fs_now_ts();
	r.ctime = fs_now_ts();
	rec_inode(&b, &r);
	int err = t ? txn_apply(fs, t, &b) : fs_commit(fs, &b, pos);
	if (!err && !t)
		place_inline(p, pos, b.len);
	rec_release(&b);
	return err;
}

int fs_commit_content(struct txd_fs *fs, struct txn *t, struct inode *in, struct wfile *wf,
		      pid_t pid, bool at_flush, uint64_t *lsn)
{
	pthread_mutex_lock(&wf->lock);
	int err = 0;
	struct wal_pos pos = {.lsn = wal_last_lsn(fs->wal)};
	if (!wcopy_dirty(wf->wc) && !atomic_load(&wf->times_set))
		goto out_unlock;
	if (at_flush && !atomic_load(&wf->written))
		goto out_unlock; /* a lone truncation waits for its content */
	struct wcopy_prep p;
	if ((err = wcopy_prepare(wf->wc, &p)))
		goto out_unlock;
	/* a transaction's content waits in packs for its commit (txn.h) */
	if (t || p.inline_bytes > fs->inline_max)
		err = spill_inline(fs, &p);
	if (!err && !t && p.has_spilled && fs->opts.durability != TXD_DUR_NONE) {
		fs_will_block(fs);
		err = chunkstore_sync(fs->cs); /* packs before the record naming them */
	}
	if (!err) {
		pthread_mutex_lock(&fs->lock);
		err = content_record(fs, t, in, wf, &p, pid, &pos);
		pthread_mutex_unlock(&fs->lock);
	}
	if (err) {
		/* the copy stays dirty: a later close or fsync tries again
		 * (a full disk is not sticky, space.h) */
		wcopy_abandon(wf->wc, &p);
		fs_note_space(fs, "file commit", err);
		goto out_unlock;
	}
	struct cmap *map;
	uint64_t dsum;
	if (!(err = wcopy_commit(wf->wc, &p, &map, &dsum)))
		cmap_unref(map); /* the namespace built its own from the record */
	else /* the record is in: the copy stays dirty and commits the same
	      * content again later; p must not pin its packs (gc.h) */
		wcopy_abandon(wf->wc, &p);
	atomic_store(&wf->times_set, false);
	atomic_store(&wf->written, false);
	atomic_store(&wf->trunc_pending, false);
	atomic_store(&wf->trunc_by, NULL);
	atomic_store(&wf->dirty_bytes, 0);
out_unlock:
	pthread_mutex_unlock(&wf->lock);
	if (lsn)
		*lsn = pos.lsn;
	return err;
}

/* ---- writers (SPEC §3: a handle with nothing written since its last FLUSH
 * is not a writer) ---- */
static void snap_drop(struct txd_fs *fs, struct handle *h);

/* A quiet writer writes again through its node: readers that opened a
 * snapshot on that node meanwhile share its page cache (the kernel's, F1),
 * so they join the working copy, as if opened while it was written. */
static void snapshots_join(struct txd_fs *fs, struct handle *w)
{
	pthread_mutex_lock(&fs->lock);
	if (w->node->nsnap) {
		struct handle *s = fs->snapshots.snap_next, *next;
		for (; s != &fs->snapshots; s = next) {
			next = s->snap_next;
			if (s->node != w->node || s->wf)
				continue;
			w->wf->nhandles++;
			s->wf = w->wf; /* before the snapshot goes: see txd_read */
			snap_drop(fs, s);
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

void fs_handle_wrote(struct txd_fs *fs, struct handle *h)
{
	atomic_store(&h->wf->written, true);
	if (h->writable && !atomic_exchange(&h->active, true)) {
		atomic_fetch_add(&h->wf->nactive, 1);
		snapshots_join(fs, h);
	}
}

static void handle_quiet(struct handle *h)
{
	if (atomic_exchange(&h->active, false))
		atomic_fetch_sub(&h->wf->nactive, 1);
}

/* ---- open / create ---------------------------------------------------------------- */
static bool open_writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Freeze n on its version: its snapshot readers keep it, lookups get a new
 * node id from now on (F1). */
void fs_freeze_node(struct txd_fs *fs, struct node *n)
{
	struct inode *in = n->in;
	n->frozen = in->head;
	ns_iver_pin(n->frozen);
	if (in->live == n)
		in->live = NULL;
	/* cached dentries of the name would still show the frozen node: drop
	 * the one we know; others answer ESTALE on open and are looked up */
	struct inode *parent = in->name ? ns_inode(fs_ns(fs, n->txn), in->name_parent) : NULL;
	if (parent && parent->live)
		fs_queue_inval(fs, ((struct node *)parent->live)->id, in->name->name);
}

static void snap_link(struct txd_fs *fs, struct handle *h)
{
	h->opened_ns = txd_os->now_monotonic_ns();
	h->snap_next = fs->snapshots.snap_next;
	h->snap_prev = &fs->snapshots;
	fs->snapshots.snap_next->snap_prev = h;
	fs->snapshots.snap_next = h;
}

static void snap_unlink(struct handle *h)
{
	h->snap_prev->snap_next = h->snap_next;
	h->snap_next->snap_prev = h->snap_prev;
}

/* Drop h's snapshot (release, or -o max_snapshot_age). fs->lock held. */
static void snap_drop(struct txd_fs *fs, struct handle *h)
{
	ns_iver_unpin(fs_ns(fs, h->node->txn), h->in, h->snap);
	h->node->nsnap--;
	snap_unlink(h);
	h->snap = NULL;
}

void fs_expire_snapshots(struct txd_fs *fs, uint64_t max_age_ns)
{
	uint64_t now = txd_os->now_monotonic_ns();
	/* the list runs newest to oldest: expire from the old end */
	while (fs->snapshots.snap_prev != &fs->snapshots) {
		struct handle *h = fs->snapshots.snap_prev;
		if (now - h->opened_ns <= max_age_ns)
			break;
		snap_drop(fs, h);
		h->expired = true;
		cJSON *f = cJSON_CreateObject();
		ev_add_u64(f, "ino", h->in->ino);
		ev_add_u64(f, "age_s", ((now - h->opened_ns) / 1000000000ull));
		ev_emit(fs->events, fs_now_ns(), "snapshot_expired", f);
	}
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->state == TXN_ACTIVE && fs_now_ns() - t->began_ns > max_age_ns)
			txn_abort(fs, t, "snapshot-too-old");
}

/* F1 and the kernel's single retry. A writer's open (or truncate by path)
 * that froze a node answers ESTALE, and the kernel looks the name up once
 * more and retries on the fresh node id. A reader that opened that fresh
 * node in between as a snapshot would make the retry freeze again, and the
 * second ESTALE would reach the program. So for WRITER_DUE_NS after such a
 * freeze, readers of the inode join its working copy instead, as readers
 * opened while a writer has the file open do (SPEC §3): the writer's open
 * came first. The last such writer's arrival (by pid) ends the window
 * early; other writers of the file leave it to its time. fs->lock held. */
#define WRITER_DUE_NS 1000000000ull

void fs_writer_due(struct inode *in, pid_t pid)
{
	in->writer_due_ns = txd_os->now_monotonic_ns();
	in->writer_due_pid = (uint32_t)pid;
}

void fs_writer_came(struct inode *in, pid_t pid)
{
	if (in->writer_due_ns && in->writer_due_pid == (uint32_t)pid)
		in->writer_due_ns = 0;
}

static bool writer_due(struct inode *in)
{
	if (!in->writer_due_ns)
		return false;
	if (txd_os->now_monotonic_ns() - in->writer_due_ns < WRITER_DUE_NS)
		return true;
	in->writer_due_ns = 0; /* it never came */
	return false;
}

static int attach(struct txd_fs *fs, struct node *n, int flags, struct handle *h)
{
	struct inode *in = n->in;
	h->magic = HANDLE_MAGIC;
	h->flags = flags;
	h->node = n;
	h->in = in;
	h->writable = open_writable(flags);
	if (n->frozen) { /* a reader of a node frozen on the current version */
		h->snap = n->frozen;
		ns_iver_pin(h->snap);
		n->nsnap++;
		snap_link(fs, h);
		goto opened;
	}
	/* a reader shares the working copy only while it holds content
	 * written since the last commit (SPEC §3); quiet writers whose close
	 * returned do not count, RELEASE or not */
	struct wfile *shared = in->wf;
	if (h->writable)
		fs_writer_came(in, h->pid);
	if (h->writable || writer_due(in) ||
	    (shared && (atomic_load(&shared->nactive) || atomic_load(&shared->written)))) {
		h->wf = fs_wf_get(fs, in); /* clang: no ! on an _Atomic assignment */
		if (!h->wf)
			return -ENOMEM;
		if (h->writable) {
			h->wf->nwriters++;
			atomic_store(&h->active, true); /* a writer until its FLUSH */
			atomic_fetch_add(&h->wf->nactive, 1);
		}
		if (h->writable && n->txn)
			n->txn->nwriters++;
	} else {
		h->snap = in->head;
		ns_iver_pin(h->snap);
		n->nsnap++;
		snap_link(fs, h);
	}
opened:
	n->nopen++;
	if (n->txn)
		n->txn->nopen++;
	fs_handle_opened(fs, h);
	return 0;
}

static int open_node(struct txd_fs *fs, struct node *n, int flags, struct handle *h,
		     struct txd_open_out *out)
{
	/* A node frozen on the version that is still the file's current one
	 * (a writer or truncate froze it and has not committed yet) shows a
	 * reader exactly what the live node would: the reader opens it, as a
	 * snapshot, rather than ESTALE and a second race for the fresh node
	 * id with the writer's next freeze. Not while a writer holds unwritten
	 * content: a reader then shares it through the live node (SPEC §3). */
	struct wfile *live_wf = n->in->wf;
	bool frozen_current = n->frozen && !n->retired && !open_writable(flags) &&
			      n->frozen == n->in->head &&
			      !(n->txn && n->txn->state != TXN_ACTIVE) &&
			      !(live_wf && (atomic_load(&live_wf->nactive) || atomic_load(&live_wf->written)));
	if ((n->frozen && !frozen_current) || (n->txn && n->txn->state != TXN_ACTIVE)) {
		/* a newer node id holds this name: look it up again; a writer
		 * is due there (its retry must not meet a new snapshot) */
		if (n->frozen && open_writable(flags))
			fs_writer_due(n->in, h->pid);
		return -ESTALE;
	}
	if (n->txn && n->txn->readonly && open_writable(flags))
		return -EROFS;
	struct inode *in = n->in;
	if (in->dir)
		return open_writable(flags) ? -EISDIR : -EINVAL;
	if (!S_ISREG(in->head->mode))
		return -ENXIO;
	if (open_writable(flags) && dtc_ino_locked(fs, n->txn, in->ino))
		return -EBUSY; /* a prepared transaction's write set (dtc.h D2) */
	/* F1: a writer never opens a node that snapshot readers hold, even
	 * when a working copy exists (its earlier writers were quiet when the
	 * readers opened) */
	if (open_writable(flags) && n->nsnap > 0) {
		fs_freeze_node(fs, n);
		fs_writer_due(in, h->pid);
		return -ESTALE;
	}
	int err = attach(fs, n, flags, h);
	if (err)
		return err;
	out->fh = (uint64_t)(uintptr_t)h;
	out->keep_cache = true; /* a node id's cache is only changed by its own writes */
	return 0;
}

static int trunc_on_open(struct handle *h)
{
	if (!(h->flags & O_TRUNC) || !h->wf)
		return 0;
	pthread_mutex_lock(&h->wf->lock);
	int err = wcopy_truncate(h->wf->wc, 0);
	if (!err) {
		atomic_store(&h->wf->size, 0);
		/* as ext4: O_TRUNC marks mtime/ctime even on an empty file; the
		 * times are committed with the content at close */
		atomic_store(&h->wf->mtime_ns, fs_ts_ns(fs_now_ts()));
		atomic_store(&h->wf->times_set, true);
		atomic_store(&h->wf->trunc_pending, true);
		atomic_store(&h->wf->trunc_by, h);
	}
	pthread_mutex_unlock(&h->wf->lock);
	return err;
}

/* A lone truncation (O_TRUNC, nothing written after it) pending in the
 * working copy of node's file is committed before another OPEN or an fsync
 * is answered (SPEC §3). Called without locks (core.h lock order). */
static int commit_lone_truncation(struct txd_fs *fs, pid_t pid, uint64_t node)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	struct inode *in = n && !n->ctl ? n->in : NULL;
	struct wfile *wf = in ? in->wf : NULL;
	if (!wf || !atomic_load(&wf->trunc_pending) || atomic_load(&wf->written)) {
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	struct txn *t = n->txn;
	wf = fs_wf_get(fs, in); /* a share keeps wf and in alive unlocked */
	pthread_mutex_unlock(&fs->lock);
	if (!wf)
		return -ENOMEM;
	int err = fs_commit_content(fs, t, in, wf, pid, false, NULL);
	pthread_mutex_lock(&fs->lock);
	fs_wf_put(fs, t, in, wf);
	pthread_mutex_unlock(&fs->lock);
	return err;
}

/* Every lone truncation pending in an open handle's working copy,
 * committed as commit_lone_truncation does one. No locks held. */
static int commit_lone_truncations(struct txd_fs *fs, pid_t pid)
{
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int err = 0;

	pthread_mutex_lock(&fs->lock);
	for (struct handle *h = fs->handles.all_next; h != &fs->handles; h = h->all_next) {
		struct wfile *wf = h->writable && !h->is_dir ? h->wf : NULL;
		if (!wf || h->node->ctl || !atomic_load(&wf->trunc_pending) ||
		    atomic_load(&wf->written))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 8;
			uint64_t *nids = realloc(ids, ncap * sizeof(*ids));
			if (!nids) {
				err = -ENOMEM;
				break;
			}
			ids = nids;
			cap = ncap;
		}
		ids[n++] = h->node->id;
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t k = 0; k < n && !err; k++)
		err = commit_lone_truncation(fs, pid, ids[k]);
	free(ids);
	return err;
}

/* The pid of c, the request's caller (0: the engine itself). */
static pid_t pid_of(const struct txd_cred *c)
{
	return c ? c->pid : 0;
}

/* An O_TRUNC open by a caller the kernel flagged (no CAP_FSETID) drops the
 * set-id bits before it opens, as open(2) on ext4 (txdir.h). */
static int kill_on_open(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, int flags)
{
	if (!c || !c->kill_suidgid || !(flags & O_TRUNC))
		return 0;
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	uint32_t before = n && n->in ? n->in->head->mode : 0;
	int err = n ? fs_kill_suidgid(fs, c, n) : -ESTALE;
	/* the kernel drops only size and times after a truncating open: its
	 * cached mode would show the dropped bits until the attribute
	 * timeout (statx asking for the mode alone) */
	bool dropped = !err && n && n->in && n->in->head->mode != before;
	uint64_t id = n ? n->id : 0;
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	if (dropped && fs->notify.inval_inode)
		fs->notify.inval_inode(fs->notify.arg, id);
	return err;
}

int fs_open(struct txd_fs *fs, const struct txd_cred *c, uint64_t node, int flags,
	    struct txd_open_out *out)
{
	memset(out, 0, sizeof(*out));
	int cerr = kill_on_open(fs, c, node, flags);
	if (!cerr)
		cerr = commit_lone_truncation(fs, pid_of(c), node);
	if (cerr)
		return cerr;
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->pid = pid_of(c);
	pthread_mutex_lock(&fs->lock);
	struct node *n = fs_node(fs, node);
	int err = -ESTALE;
	if (n && n->ctl)
		err = -EPERM; /* the control tree opens its own (vfs.c routes) */
	else if (n)
		err = open_node(fs, n, flags, h, out);
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	if (!err)
		err = trunc_on_open(h);
	if (err && !out->fh)
		free(h);
	else if (err)
		fs_release(fs, h);
	return err;
}

int fs_create(struct txd_fs *fs, const struct txd_cred *c, uint64_t parent, const char *name,
	      mode_t mode, int flags, struct txd_entry *entry, struct txd_open_out *out)
{
	int err = fs_create_entry(fs, c, parent, name, mode, entry);
	if (err)
		return err;
	/* a new file: O_TRUNC truncates nothing and drops no set-id bit (ext4) */
	struct txd_cred opener = c ? *c : (struct txd_cred){0};
	opener.kill_suidgid = false;
	err = fs_open(fs, &opener, entry->node, flags & ~O_TRUNC, out);
	if (err) { /* give back the entry's lookup reference */
		pthread_mutex_lock(&fs->lock);
		struct node *n = fs_node(fs, entry->node);
		if (n && n->nlookup) {
			n->nlookup--;
			fs_node_put(fs, n);
		}
		pthread_mutex_unlock(&fs->lock);
	}
	return err;
}

/* ---- read / write ---------------------------------------------------------------- */
struct handle *fs_file_handle(uint64_t fh)
{
	struct handle *h = (struct handle *)(uintptr_t)fh;
	return h && h->magic == HANDLE_MAGIC && !h->is_dir ? h : NULL;
}

/* SPEC §6: a damaged chunk is EIO *and a log line* (events + syslog). */
static void log_damage(struct txd_fs *fs, struct handle *h, uint64_t off, size_t size)
{
	char path[4096];
	pthread_mutex_lock(&fs->lock);
	ns_path(fs_ns(fs, h->node->txn), h->in, path, sizeof(path));
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "ino", h->in->ino);
	if (h->node->txn) { /* a view's path: its owner's and root's only (events.h E5) */
		cJSON_AddStringToObject(f, "private", path);
		cJSON_AddNumberToObject(f, "uid", h->node->txn->uid);
	} else {
		cJSON_AddStringToObject(f, "path", path);
	}
	ev_add_u64(f, "offset", off);
	ev_add_u64(f, "length", size);
	ev_emit(fs->events, fs_now_ns(), "checksum_error", f);
	pthread_mutex_unlock(&fs->lock);
}

ssize_t fs_read(struct txd_fs *fs, struct handle *h, void *buf, size_t size, uint64_t off)
{
	/* no O_WRONLY check: with the writeback cache the kernel fills partial
	 * pages through whatever handle writes (the syscall layer already
	 * refused read(2) on a write-only descriptor) */
	struct wfile *wf = h->wf;
	if (!wf) {
		/* a snapshot reader: pin the version for the read; -o
		 * max_snapshot_age may release the handle's snapshot meanwhile
		 * (fs_expire_snapshots), or the reader may have joined a writer
		 * of its node (snapshots_join) */
		pthread_mutex_lock(&fs->lock);
		struct iver *v = h->snap;
		if (v)
			ns_iver_pin(v);
		wf = h->wf;
		pthread_mutex_unlock(&fs->lock);
		if (!v && wf)
			goto shared;
		if (!v)
			return -ESTALE; /* snapshot too old */
		ssize_t n = cmap_read(fs->cs, v->map, v->size, buf, size, off);
		pthread_mutex_lock(&fs->lock);
		ns_iver_unpin(fs_ns(fs, h->node->txn), h->in, v);
		pthread_mutex_unlock(&fs->lock);
		if (n == -EIO)
			log_damage(fs, h, off, size);
		return n;
	}
shared:
	pthread_mutex_lock(&wf->lock);
	ssize_t n = wcopy_read(wf->wc, buf, size, off);
	pthread_mutex_unlock(&wf->lock);
	if (n == -EIO)
		log_damage(fs, h, off, size);
	return n;
}

/* The set-id bits of h's file go before a write or fallocate by c when kill
 * says so (core.h lock order: called with no lock held). */
static int handle_kill_suidgid(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
			       bool kill)
{
	if (!kill)
		return 0;
	pthread_mutex_lock(&fs->lock);
	int err = fs_kill_suidgid(fs, c, h->node);
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	return err;
}

ssize_t fs_write(struct txd_fs *fs, const struct txd_cred *c, struct handle *h, const void *buf,
		 size_t size, uint64_t off)
{
	if (!h->wf)
		return -EBADF;
	if (fs->failed)
		return -EIO;
	if (off + size < off || off + size > FS_FILE_MAX)
		return -EFBIG;
	int kerr = handle_kill_suidgid(fs, c, h, c && c->kill_suidgid);
	if (kerr)
		return kerr;
	pthread_mutex_lock(&h->wf->lock);
	ssize_t n = wcopy_write(h->wf->wc, buf, size, off);
	atomic_store(&h->wf->size, wcopy_size(h->wf->wc));
	if (n > 0) {
		fs_handle_wrote(fs, h);
		atomic_fetch_add(&h->wf->dirty_bytes, (uint64_t)n); /* for st_blocks */
		/* a write moves mtime/ctime (without the writeback cache nobody
		 * else does; with it the kernel's own setattr follows) */
		atomic_store(&h->wf->mtime_ns, fs_ts_ns(fs_now_ts()));
		atomic_store(&h->wf->times_set, true);
	}
	pthread_mutex_unlock(&h->wf->lock);
	return n < 0 ? fs_note_space(fs, "write", (int)n) : n; /* a spill met a full disk */
}

/* ---- flush / fsync / release ------------------------------------------------------- */
int fs_flush(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c, uint64_t *lsn_out)
{
	struct handle *h = fs_file_handle(fh);
	if (!h)
		return -EBADF;
	if (h->ctl || h->node->ctl || !h->writable) {
		if (lsn_out)
			*lsn_out = wal_last_lsn(fs->wal);
		return 0;
	}
	int err = fs_commit_content(fs, h->node->txn, h->in, h->wf, c ? c->pid : 0, true, lsn_out);
	if (!err)
		handle_quiet(h);
	return err;
}

int fs_fsync_prepare(struct txd_fs *fs, uint64_t fh, const struct txd_cred *c,
		     uint64_t *lsn_out)
{
	struct handle *h = (struct handle *)(uintptr_t)fh;
	if (h && h->magic == HANDLE_MAGIC && !h->is_dir && h->writable && h->wf)
		return fs_commit_content(fs, h->node->txn, h->in, h->wf, c ? c->pid : 0, false,
					 lsn_out);
	/* another handle's lone truncation of this file is committed first */
	int err = 0;
	if (h && h->magic == HANDLE_MAGIC && !h->is_dir && !h->node->ctl)
		err = commit_lone_truncation(fs, pid_of(c), h->node->id);
	/* fsync of a directory (`mountctl sync`: every commit so far durable)
	 * commits every lone truncation still pending, as a sync of each file
	 * would (SPEC §3): `exec 3> f; mountctl sync` leaves f empty on disk */
	if (h && h->magic == HANDLE_MAGIC && h->is_dir)
		err = commit_lone_truncations(fs, pid_of(c));
	/* a directory, or nothing pending: make every earlier commit durable */
	*lsn_out = wal_last_lsn(fs->wal);
	return err;
}

int fs_release(struct txd_fs *fs, struct handle *h)
{
	int err = 0;
	bool last_writer = false;
	if (h->writable && h->wf) {
		pthread_mutex_lock(&fs->lock); /* nwriters belongs to fs->lock */
		last_writer = h->wf->nwriters == 1;
		pthread_mutex_unlock(&fs->lock);
	}
	/* the truncation this handle's O_TRUNC made, if nothing was written
	 * after it (`: > file`), is committed at its RELEASE. Only its own: an
	 * earlier handle's RELEASE arrives asynchronously, possibly after the
	 * next `open(O_TRUNC)` of a loop and before that one's writes reach
	 * us (they sit in the writeback cache until its FLUSH) */
	bool lone_trunc = h->writable && h->wf && atomic_load(&h->wf->trunc_by) == h &&
			  atomic_load(&h->wf->trunc_pending) && !atomic_load(&h->wf->written);
	if (last_writer || lone_trunc) {
		/* backstop: RELEASE is asynchronous and its errors are lost */
		err = fs_commit_content(fs, h->node->txn, h->in, h->wf, h->pid, false, NULL);
		if (err)
			syslog(LOG_ERR, "txdir: commit at release of inode %llu failed: %s",
			       (unsigned long long)h->in->ino, txd_strerror(err));
	}
	if (h->wf) {
		/* h is freed below: its address must not name a truncation */
		struct handle *mine = h;
		atomic_compare_exchange_strong(&h->wf->trunc_by, &mine, NULL);
		handle_quiet(h);
	}
	pthread_mutex_lock(&fs->lock);
	struct node *n = h->node;
	if (h->snap)
		snap_drop(fs, h);
	if (h->wf) {
		if (h->writable)
			h->wf->nwriters--;
		if (h->writable && n->txn)
			txn_writer_closed(fs, n->txn);
		fs_wf_put(fs, n->txn, h->in, h->wf);
	}
	n->nopen--;
	if (n->txn)
		n->txn->nopen--;
	fs_handle_closed(fs, h);
	fs_node_put(fs, n);
	bool notices = fs->notices != NULL; /* a retired node id (fs_wf_put) */
	pthread_mutex_unlock(&fs->lock);
	if (notices)
		fs_notify_flush(fs);
	h->magic = 0;
	free(h);
	return err;
}

int txd_fallocate(struct txd_fs *fs, const struct txd_cred *c, uint64_t fh, int mode,
		  uint64_t off, uint64_t len)
{
	struct handle *h = fs_file_handle(fh);
	if (!h || !h->wf || !h->writable)
		return -EBADF;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EINVAL;
	if (off + len < off || off + len > FS_FILE_MAX)
		return -EFBIG;
	/* no kill flag on FALLOCATE: root keeps the bits (CAP_FSETID), any
	 * other caller drops them (txdir.h) */
	int err = handle_kill_suidgid(fs, c, h, c && (c->kill_suidgid || c->uid != 0));
	if (err)
		return err;
	pthread_mutex_lock(&h->wf->lock);
	uint64_t size = wcopy_size(h->wf->wc);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		uint64_t end = off + len;
		if (end > size)
			end = size;
		if (end > off)
			err = wcopy_zero(h->wf->wc, off, end - off);
	}
	/* Space is not reserved (content is copy-on-write): growing the size
	 * is what fallocate without KEEP_SIZE visibly does. */
	if (!err && !(mode & FALLOC_FL_KEEP_SIZE) && off + len > size)
		err = wcopy_truncate(h->wf->wc, off + len);
	atomic_store(&h->wf->size, wcopy_size(h->wf->wc));
	if (!err)
		fs_handle_wrote(fs, h); /* fallocate counts as writing */
	pthread_mutex_unlock(&h->wf->lock);
	return err;
}
