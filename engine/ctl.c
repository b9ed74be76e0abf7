/*
 * ctl.c — the control tree `.txdir/` (SPEC §5) and the logs it shows.
 *
 *   .txdir/               reachable by name, not listed in the root (unless
 *                         -o showctl), like ZFS's .zfs
 *     commits/ID          one commit: time, pid, transaction, changes with
 *                         checksums (JSON); the directory lists newest first
 *     dtc/transactions/ID a transaction's record (txn.h)
 *     dtc/wal/seg-N       one WAL segment: a short JSON (name, bytes, lsn
 *                         range: wal_segments), never its bytes (SPEC §6:
 *                         the store is private)
 *     dtc/checkpoints/ckpt-LSN  one checkpoint: name, lsn, bytes (JSON)
 *     consensus/          ctl_vote.c (kinds from CTL_VOTE_FIRST on), and
 *                         dtc/participant_inbox/ too
 *     events              one JSON object per line
 *     leases/             ctl_lease.c (kinds from CTL_LEASE_FIRST on)
 *     manifests/ temp/    multi-step operations in flight (none yet)
 *     recovery/           ctl_recovery.c (kinds from CTL_RECOVERY_FIRST on)
 *     scrub               online verification (scrub.h): write "start
 *                         [rate=BYTES_PER_S]" or "cancel", read the
 *                         progress and problems as JSON
 *     state/              ctl_state.c (kinds from CTL_STATE_FIRST on)
 *     stats               Prometheus text
 *     status.json         struct txd_status as JSON (mountctl status)
 *
 * Every control file is direct_io with a zero attr timeout (and a zero entry
 * timeout unless it always exists: ctl_node), and its content is rendered
 * at open (a consistent snapshot for the reader). st_size
 * is 0, as in procfs (getattr_of says why): readers read to EOF.
 *
 * The event log and the commit log are modules of their own (events.h,
 * clog.h); this file renders them for the caller.
 *
 * What a caller may see (txdir(7) "The control tree"): a path in an event or
 * a commit is shown only if the caller could list its directory through the
 * data tree now — search permission on every directory above it and read
 * permission on its own directory, for the caller's uid, gid and
 * supplementary groups (read from /proc/PID/status: FUSE passes none) —
 * else it reads "(hidden)" and its checksum is left out. A transaction's
 * records (status, info.json, dtc/transactions/ID) are readable by its owner
 * and root only: they name paths of its private view.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "chunk.h"
#include "ckpt.h"
#include "clog.h"
#include "core.h"
#include "ctl.h"
#include "ctl_lease.h"
#include "ctl_recovery.h"
#include "ctl_vote.h"
#include "ctl_state.h"
#include "dtc.h"
#include "dtree.h"
#include "events.h"
#include "filelock.h"
#include "gc.h"
#include "json.h"
#include "svc.h"
#include "os.h"
#include "scrub.h"
#include "txn.h"
#include "util.h"
#include "wal.h"

enum ctl_kind {
	CTL_NONE,
	CTL_ROOT,
	CTL_COMMITS,
	CTL_COMMIT,
	CTL_EVENTS,
	CTL_MANIFESTS,
	CTL_STATS,
	CTL_STATUS,
	CTL_TEMP,
	CTL_TXNS,       /* .txdir/txn */
	CTL_TXN,        /* .txdir/txn/NAME (key: txn id) */
	CTL_TXN_CTL,
	CTL_TXN_STATUS,
	CTL_TXN_INFO,
	CTL_DTC,        /* .txdir/dtc */
	CTL_DTC_TXNS,   /* .txdir/dtc/transactions */
	CTL_DTC_TXN,    /* .txdir/dtc/transactions/ID */
	CTL_DTC_WAL,    /* .txdir/dtc/wal */
	CTL_DTC_SEG,    /* .txdir/dtc/wal/seg-N (key: N) */
	CTL_DTC_CKPTS,  /* .txdir/dtc/checkpoints */
	CTL_DTC_CKPT,   /* .txdir/dtc/checkpoints/ckpt-LSN (key: LSN) */
	CTL_SCRUB,      /* .txdir/scrub (scrub.h) */
};

struct ctl_entry {
	const char *name;
	enum ctl_kind kind;
	bool dir;
};

/* .txdir's children, in readdir order. */
static const struct ctl_entry ctl_root[] = {
	{"commits", CTL_COMMITS, true},
	{"consensus", (enum ctl_kind)CTL_VOTE_FIRST, true}, /* ctl_vote.c */
	{"dtc", CTL_DTC, true},
	{"events", CTL_EVENTS, false},
	{"leases", (enum ctl_kind)CTL_LEASE_FIRST, true}, /* ctl_lease.c */
	{"manifests", CTL_MANIFESTS, true},
	{"recovery", (enum ctl_kind)CTL_RECOVERY_FIRST, true}, /* ctl_recovery.c */
	{"scrub", CTL_SCRUB, false},
	{"state", (enum ctl_kind)CTL_STATE_FIRST, true}, /* ctl_state.c */
	{"stats", CTL_STATS, false},        {"status.json", CTL_STATUS, false},
	{"temp", CTL_TEMP, true},           {"txn", CTL_TXNS, true},
};
/* A write to .txdir/txn/NAME/ctl: "prepare P as NAME" with two 255-byte
 * names fits (SPEC §6 names). */
#define CTL_TXN_CMD_MAX 600

#define NROOT (sizeof(ctl_root) / sizeof(ctl_root[0]))

/* .txdir/txn/NAME's control files ("root" is the view itself). */
static const struct ctl_entry ctl_txn[] = {
	{"ctl", CTL_TXN_CTL, false},
	{"info.json", CTL_TXN_INFO, false},
	{"status", CTL_TXN_STATUS, false},
};
#define NTXN (sizeof(ctl_txn) / sizeof(ctl_txn[0]))

struct ctl_file {
	char *buf;
	size_t len;
	uint32_t uid;      /* whose max_ctl_mib the rendering counts against */
	struct lwait *wait; /* a lease wait file (ctl_lease.h) */
	struct vwait *vwait; /* a vote wait file (ctl_vote.h) */
	struct ctl_vote_acc acc; /* a document being written (ctl_vote.h) */
	struct sfile *state; /* a file of state/ (ctl_state.h) */
};

/* ---- text buffers --------------------------------------------------------------- */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (s->p && s->len + (size_t)n < s->cap) {
			s->len += (size_t)n;
			return;
		}
		size_t cap = s->cap ? s->cap * 2 : 4096;
		while (cap < s->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(s->p, cap);
		if (!p)
			return;
		s->p = p;
		s->cap = cap;
	}
}

/* ---- renderers ---------------------------------------------------------------------- */
static void render_status(struct txd_fs *fs, struct sbuf *s)
{
	struct txd_status st;
	fs_status_locked(fs, &st);
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return;
	cJSON_AddStringToObject(o, "store", st.store);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	cJSON_AddStringToObject(o, "durability", txd_durability_name(st.durability));
	cJSON_AddNumberToObject(o, "commits", (double)st.commits);
	cJSON_AddNumberToObject(o, "last_commit_id", (double)st.last_commit_id);
	cJSON_AddNumberToObject(o, "lsn", (double)st.lsn);
	cJSON_AddNumberToObject(o, "durable_lsn", (double)st.durable_lsn);
	cJSON_AddNumberToObject(o, "wal_bytes", (double)st.wal_bytes);
	cJSON_AddNumberToObject(o, "wal_syncs", (double)st.wal_syncs);
	cJSON_AddNumberToObject(o, "wal_synced_records", (double)st.wal_synced_records);
	cJSON_AddNumberToObject(o, "versions_retained", (double)st.versions_retained);
	cJSON_AddNumberToObject(o, "open_handles", (double)st.open_handles);
	cJSON_AddNumberToObject(o, "inodes", (double)st.inodes);
	cJSON_AddNumberToObject(o, "nodes", (double)st.nodes);
	cJSON_AddNumberToObject(o, "oldest_snapshot_age_s", st.oldest_snapshot_age_s);
	cJSON_AddNumberToObject(o, "checksum_errors", (double)st.checksum_errors);
	cJSON_AddNumberToObject(o, "conflicts", (double)st.conflicts);
	cJSON_AddNumberToObject(o, "checkpoints", (double)st.checkpoints);
	cJSON_AddNumberToObject(o, "checkpoint_lsn", (double)st.checkpoint_lsn);
	cJSON_AddBoolToObject(o, "failed", st.failed);
	cJSON_AddBoolToObject(o, "disk_full", st.disk_full);
	cJSON_AddStringToObject(o, "disk_full_reason", st.disk_full_why);
	cJSON_AddNumberToObject(o, "reserve_bytes", (double)st.reserve_bytes);
	cJSON_AddNumberToObject(o, "reserve_held", (double)st.reserve_held);
	char *txt = json_print(o, true);
	if (txt)
		sb_printf(s, "%s\n", txt);
	free(txt);
	cJSON_Delete(o);
}

static void metric(struct sbuf *s, const char *name, const char *type, const char *help,
		   double v)
{
	sb_printf(s, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void put_text(void *arg, const char *text)
{
	sb_printf(arg, "%s", text);
}

static void render_stats(struct txd_fs *fs, struct sbuf *s)
{
	struct txd_status st;
	fs_status_locked(fs, &st);
	metric(s, "txdir_commits_total", "counter", "Commits applied since start (incl. replay).",
	       (double)st.commits);
	metric(s, "txdir_commit_conflicts_total", "counter", "Transaction commits refused.",
	       (double)st.conflicts);
	sb_printf(s, "# HELP txdir_group_commit_batch_size Records made durable per WAL fsync.\n"
		     "# TYPE txdir_group_commit_batch_size summary\n"
		     "txdir_group_commit_batch_size_sum %" PRIu64 "\n"
		     "txdir_group_commit_batch_size_count %" PRIu64 "\n",
		  st.wal_synced_records, st.wal_syncs);
	sb_printf(s, "# HELP txdir_commit_apply_seconds Time to log and apply a commit.\n"
		     "# TYPE txdir_commit_apply_seconds summary\n"
		     "txdir_commit_apply_seconds_sum %.9f\n"
		     "txdir_commit_apply_seconds_count %" PRIu64 "\n",
		  (double)fs->commit_ns_sum / 1e9, fs->commit_count);
	metric(s, "txdir_wal_bytes", "gauge", "Bytes in WAL segments on disk.", (double)st.wal_bytes);
	metric(s, "txdir_wal_syncs_total", "counter", "WAL fsyncs.", (double)st.wal_syncs);
	metric(s, "txdir_wal_appended_bytes_total", "counter",
	       "Bytes appended to the WAL since start (records and their headers).",
	       (double)wal_bytes_appended(fs->wal));
	uint64_t open_txns = 0, prepared_txns = 0;
	for (struct txn *t = fs->txns; t; t = t->next) {
		open_txns += t->state == TXN_ACTIVE;
		prepared_txns += t->state == TXN_PREPARED;
	}
	metric(s, "txdir_transactions_open", "gauge", "Transactions begun and not ended.",
	       (double)open_txns);
	metric(s, "txdir_transactions_prepared", "gauge",
	       "Transactions prepared, waiting for their proposal's decision.", (double)prepared_txns);
	metric(s, "txdir_oldest_snapshot_age_seconds", "gauge",
	       "Age of the oldest open snapshot reader.", st.oldest_snapshot_age_s);
	metric(s, "txdir_versions_retained", "gauge", "File versions kept in memory.",
	       (double)st.versions_retained);
	metric(s, "txdir_open_handles", "gauge", "Open file and directory handles.",
	       (double)st.open_handles);
	metric(s, "txdir_inodes", "gauge", "Inodes in the namespace.", (double)st.inodes);
	uint64_t locks = 0, lock_waits = 0;
	fl_counts(fs->locks, &locks, &lock_waits);
	metric(s, "txdir_file_locks", "gauge", "Advisory locks held (fcntl record locks, flock).",
	       (double)locks);
	metric(s, "txdir_file_lock_waiters", "gauge", "Lock requests waiting (F_SETLKW, flock).",
	       (double)lock_waits);
	svc_stats(fs->svc, put_text, s);
	scrub_stats(fs, put_text, s);
	metric(s, "txdir_checksum_errors_total", "counter", "Chunks that failed verification.",
	       (double)st.checksum_errors);
	metric(s, "txdir_checkpoints_total", "counter", "Checkpoints written since start.",
	       (double)st.checkpoints);
	struct gc_stats gs;
	gc_get_stats(fs, &gs);
	metric(s, "txdir_gc_runs_total", "counter", "Garbage collection runs since start.",
	       (double)gs.runs);
	metric(s, "txdir_gc_bytes_reclaimed_total", "counter",
	       "Bytes of pack files deleted by garbage collection since start.",
	       (double)gs.bytes_reclaimed);
	metric(s, "txdir_store_dead_bytes", "gauge",
	       "Bytes of packs and old WAL segments no chunk uses (at the last GC run).",
	       (double)gs.dead_bytes);
	metric(s, "txdir_failed", "gauge", "1 when the store refuses changes after an I/O error.",
	       st.failed);
	metric(s, "txdir_disk_full", "gauge",
	       "1 while a full disk refuses changes that grow the store (not failed).", st.disk_full);
	if (fs->notify.stats) {
		/* the FUSE layer's counters and txdir_op_duration_seconds */
		int n = fs->notify.stats(fs->notify.arg, NULL, 0);
		size_t cap = n > 0 ? (size_t)n + 4096 : 0; /* room for requests meanwhile */
		char *more = cap ? malloc(cap) : NULL;
		if (more && fs->notify.stats(fs->notify.arg, more, cap) > 0)
			sb_printf(s, "%s", more);
		free(more);
	}
}

/* ---- who is reading ---------------------------------------------------------------- */
#define VIEWER_GROUPS 64

struct viewer {
	struct txd_fs *fs;
	uint32_t uid, gid;
	uint32_t groups[VIEWER_GROUPS];
	int ngroups;
};

/* The caller of the request being served; its supplementary groups from
 * /proc/PID/status (FUSE passes none; libfuse's fuse_req_getgroups does the
 * same). Unknown groups only hide more. */
static void viewer_init(struct txd_fs *fs, const struct txd_cred *c, struct viewer *v)
{
	memset(v, 0, sizeof(*v));
	v->fs = fs;
	if (!c)
		return; /* the engine itself (tests): uid 0 */
	v->uid = c->uid;
	v->gid = c->gid;
	/* /proc files report size 0: read what comes (os_read_file trusts
	 * the size) */
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
	int fd = c->pid > 0 ? txd_os->open(path, O_RDONLY, 0) : -1;
	if (fd < 0)
		return;
	size_t len = 0;
	for (ssize_t n; len + 1 < sizeof(buf) &&
			(n = txd_os->pread(fd, buf + len, sizeof(buf) - 1 - len, (off_t)len)) > 0;)
		len += (size_t)n;
	txd_os->close(fd);
	buf[len] = 0;
	char *g = strstr(buf, "\nGroups:");
	for (char *p = g ? g + 8 : NULL, *end; p && v->ngroups < VIEWER_GROUPS; p = end) {
		unsigned long id = strtoul(p, &end, 10);
		if (end == p)
			break;
		v->groups[v->ngroups++] = (uint32_t)id;
	}
}

/* May v do `want` (R_OK | X_OK bits as in mode's "other" triple) on in? */
static bool viewer_may(const struct viewer *v, const struct inode *in, unsigned want)
{
	const struct iver *h = in->head;
	unsigned bits = h->mode & 7;
	if (v->uid == h->uid)
		bits = (h->mode >> 6) & 7;
	else {
		bool member = v->gid == h->gid;
		for (int k = 0; k < v->ngroups && !member; k++)
			member = v->groups[k] == h->gid;
		if (member)
			bits = (h->mode >> 3) & 7;
	}
	return (bits & want) == want;
}

/* The rule of the header comment, against the current main tree: the
 * inode path names now if v may see that name (search every directory on
 * the way, list the last one), else NULL. A name that does not resolve now
 * is not shown: its directory may have been renamed away and another made
 * in its place (mkdir -m700 hr; ...; mv hr hr.old; mkdir hr), and the
 * log does not say which directory held it. */
static struct inode *visible_inode(const struct viewer *v, const char *path)
{
	struct ns *ns = &v->fs->ns;
	struct inode *dir = ns_inode(ns, NS_ROOT_INO);
	const char *p = path;
	while (*p == '/')
		p++;
	if (!*p)
		return dir;
	for (;;) {
		const char *slash = strchr(p, '/');
		bool last = !slash;
		size_t len = last ? strlen(p) : (size_t)(slash - p);
		if (!dir || !S_ISDIR(dir->head->mode) || !dir->dir ||
		    !viewer_may(v, dir, last ? 5 : 1))
			return NULL;
		struct dent *d = ns_dir_find(dir->dir, p, len);
		struct inode *in = d && d->ino ? ns_inode(ns, d->ino) : NULL;
		if (last || !in)
			return in;
		dir = in;
		p = slash + 1;
	}
}

static bool path_visible(void *arg, const char *path)
{
	const struct viewer *v = arg;
	return v->uid == 0 || visible_inode(v, path) != NULL;
}

/* commits/ID (clog.h C5): the path as above; its checksum only if v may
 * read the file now and it still has that content — so the log tells
 * nothing of content v could not read (a checksum of a small secret can
 * be guessed). */
static int commit_path_level(void *arg, const char *path, uint64_t sum)
{
	const struct viewer *v = arg;
	if (v->uid == 0)
		return 2;
	struct inode *in = visible_inode(v, path);
	if (!in)
		return 0;
	bool same = sum && S_ISREG(in->head->mode) &&
		    digest_final(in->head->dsum, in->head->size) == sum;
	return same && viewer_may(v, in, 4) ? 2 : 1;
}

/* s takes over a rendering of events or a commit (err: none). */
static int take(struct sbuf *s, char *txt, size_t len, int err)
{
	if (!err) {
		free(s->p);
		s->p = txt;
		s->len = s->cap = len;
	}
	return err;
}

/* The uid a transaction record (info.json) names; UINT32_MAX (nobody's) when
 * it names none, so only root reads it. */
static uint32_t record_uid(const char *json)
{
	cJSON *o = json_parse_str(json);
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "uid");
	uint32_t uid = cJSON_IsNumber(u) ? (uint32_t)u->valuedouble : UINT32_MAX;
	cJSON_Delete(o);
	return uid;
}

/* ---- dtc/wal/ and dtc/checkpoints/ (informational) ---------------------------------- */
#define SEG_NAME "seg-%08" PRIu32
#define CKPT_NAME "ckpt-%016" PRIx64

/* Segment seg of the WAL now; -ENOENT when it is gone (dropped). */
static int seg_info(struct txd_fs *fs, uint64_t seg, struct wal_seg_info *out)
{
	struct wal_seg_info *v;
	uint32_t n;
	int err = wal_segments(fs->wal, &v, &n);
	if (err)
		return err;
	err = -ENOENT;
	for (uint32_t k = 0; k < n && err; k++)
		if (v[k].seg == seg) {
			*out = v[k];
			err = 0;
		}
	free(v);
	return err;
}

static int render_seg(struct txd_fs *fs, uint64_t seg, struct sbuf *s)
{
	struct wal_seg_info i;
	int err = seg_info(fs, seg, &i);
	if (err)
		return err;
	sb_printf(s, "{\"name\":\"" SEG_NAME "\",\"seg\":%" PRIu32 ",\"bytes\":%" PRIu64, i.seg,
		  i.seg, i.bytes);
	if (i.first_lsn)
		sb_printf(s, ",\"first_lsn\":%" PRIu64, i.first_lsn);
	if (i.first_lsn && i.last_known)
		sb_printf(s, ",\"last_lsn\":%" PRIu64 ",\"records\":%" PRIu64, i.last_lsn,
			  i.last_lsn + 1 - i.first_lsn);
	sb_printf(s, ",\"current\":%s}\n", seg == wal_current_seg(fs->wal) ? "true" : "false");
	return 0;
}

static int render_ckpt(struct txd_fs *fs, uint64_t lsn, struct sbuf *s)
{
	uint64_t bytes;
	int err = ckpt_file_size(fs, lsn, &bytes);
	if (err)
		return err;
	sb_printf(s, "{\"name\":\"" CKPT_NAME "\",\"lsn\":%" PRIu64 ",\"bytes\":%" PRIu64 "}\n",
		  lsn, lsn, bytes);
	return 0;
}

/* Does kind/key (a segment or a checkpoint) exist now? */
static bool store_file_exists(struct txd_fs *fs, enum ctl_kind kind, uint64_t key)
{
	struct wal_seg_info i;
	uint64_t bytes;
	return kind == CTL_DTC_SEG ? seg_info(fs, key, &i) == 0 : ckpt_file_size(fs, key, &bytes) == 0;
}

/* The key of a name of dtc/wal/ or dtc/checkpoints/: only the canonical
 * name (as readdir lists it) matches. */
static int store_file_key(enum ctl_kind dir, const char *name, uint64_t *key)
{
	const char *prefix = dir == CTL_DTC_WAL ? "seg-" : "ckpt-";
	size_t pl = strlen(prefix);
	char *end, canon[32];
	if (strncmp(name, prefix, pl) || !isxdigit((unsigned char)name[pl]))
		return -ENOENT;
	errno = 0;
	uint64_t k = strtoull(name + pl, &end, dir == CTL_DTC_WAL ? 10 : 16);
	if (*end || errno || (dir == CTL_DTC_WAL && k > UINT32_MAX))
		return -ENOENT;
	if (dir == CTL_DTC_WAL)
		snprintf(canon, sizeof(canon), SEG_NAME, (uint32_t)k);
	else
		snprintf(canon, sizeof(canon), CKPT_NAME, k);
	if (strcmp(canon, name))
		return -ENOENT;
	*key = k;
	return 0;
}

static int render(struct txd_fs *fs, const struct txd_cred *c, const struct node *n,
		  struct sbuf *s)
{
	struct viewer v;
	char *txt = NULL;
	size_t len = 0;
	int err;
	if (ctl_recovery_is_file(n->ctl)) {
		/* cut from `events` as this reader sees it (ctl_recovery.h) */
		viewer_init(fs, c, &v);
		err = ev_render(fs->events, fs_retain_oldest_ns(fs), path_visible, &v, v.uid, &txt,
				&len);
		char *cut = NULL;
		size_t cutlen = 0;
		if (!err)
			err = ctl_recovery_render(fs, n, txt, len, &cut, &cutlen);
		free(txt);
		return take(s, cut, cutlen, err);
	}
	switch (n->ctl) {
	case CTL_STATS:
		render_stats(fs, s);
		return 0;
	case CTL_STATUS:
		render_status(fs, s);
		return 0;
	case CTL_SCRUB:
		viewer_init(fs, c, &v);
		txt = scrub_render(fs, path_visible, &v);
		return take(s, txt, txt ? strlen(txt) : 0, txt ? 0 : -ENOMEM);
	case CTL_EVENTS:
		viewer_init(fs, c, &v);
		err = ev_render(fs->events, fs_retain_oldest_ns(fs), path_visible, &v, v.uid, &txt,
				&len);
		return take(s, txt, len, err);
	case CTL_COMMIT:
		viewer_init(fs, c, &v);
		err = clog_render(fs->clog, n->ctl_key, fs_retain_oldest_ns(fs), commit_path_level, &v,
				  &txt, &len);
		return take(s, txt, len, err);
	case CTL_TXN_CTL:
		return 0; /* write-only: commands */
	case CTL_DTC_SEG:
		return render_seg(fs, n->ctl_key, s);
	case CTL_DTC_CKPT:
		return render_ckpt(fs, n->ctl_key, s);
	case CTL_TXN_STATUS:
	case CTL_TXN_INFO:
	case CTL_DTC_TXN: {
		struct txn *t = txn_by_id(fs, n->ctl_key);
		viewer_init(fs, c, &v);
		if (n->ctl == CTL_TXN_STATUS && t) {
			if (v.uid != 0 && v.uid != t->uid)
				return -EACCES; /* its owner's private view (header comment) */
			sb_printf(s, "%s\n", t->status);
			return 0;
		}
		/* dtc/transactions/ID: also the records kept on disk (txn.h) */
		char *j = t || n->ctl == CTL_DTC_TXN ? txn_record_json(fs, n->ctl_key) : NULL;
		if (!j)
			return -ENOENT;
		if (v.uid != 0 && v.uid != (t ? t->uid : record_uid(j))) {
			free(j);
			return -EACCES; /* its owner's private view (header comment) */
		}
		sb_printf(s, "%s", j);
		free(j);
		return 0;
	}
	default:
		return -EISDIR;
	}
}

/* ---- nodes -------------------------------------------------------------------------- */
static bool kind_is_dir(enum ctl_kind k)
{
	if (ctl_lease_owns(k))
		return ctl_lease_is_dir(k);
	if (ctl_recovery_owns(k))
		return ctl_recovery_is_dir(k);
	if (ctl_vote_owns(k))
		return ctl_vote_is_dir(k);
	if (ctl_state_owns(k))
		return ctl_state_is_dir(k);
	return k == CTL_ROOT || k == CTL_COMMITS || k == CTL_MANIFESTS || k == CTL_TEMP ||
	       k == CTL_TXNS || k == CTL_TXN || k == CTL_DTC || k == CTL_DTC_TXNS ||
	       k == CTL_DTC_WAL || k == CTL_DTC_CKPTS;
}

/* A transaction's record files (header comment: its owner's). */
static bool kind_is_txn_record(enum ctl_kind k)
{
	return k == CTL_TXN_STATUS || k == CTL_TXN_INFO || k == CTL_DTC_TXN;
}

int ctl_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a)
{
	memset(a, 0, sizeof(*a)); /* cacheable false: rendered at every open */
	a->ino = (1ull << 62) | ((uint64_t)n->ctl << 52) | (n->ctl_key & ((1ull << 52) - 1));
	a->atime = a->mtime = a->ctime = fs_now_ts();
	if (ctl_lease_owns(n->ctl))
		return ctl_lease_getattr(fs, n, a);
	if (ctl_recovery_owns(n->ctl))
		return ctl_recovery_getattr(fs, n, a);
	if (ctl_vote_owns(n->ctl))
		return ctl_vote_getattr(fs, n, a);
	if (ctl_state_owns(n->ctl))
		return ctl_state_getattr(fs, n, a);
	bool of_txn = n->ctl == CTL_TXN || n->ctl == CTL_TXN_CTL || kind_is_txn_record(n->ctl);
	struct txn *t = of_txn ? txn_by_id(fs, n->ctl_key) : NULL;
	if ((n->ctl == CTL_TXN || n->ctl == CTL_TXN_CTL) && !t)
		return -ENOENT;
	if (t) {
		a->uid = t->uid; /* the creator (or root) commits and aborts */
		a->gid = t->gid;
	}
	if (kind_is_dir(n->ctl)) {
		/* .txdir/txn is like /tmp: anyone may begin one; a transaction's
		 * own directory (its ctl, records and the view root/) is its
		 * creator's alone: the view holds work nobody else may see
		 * before it commits (the status and info.json are 0400 too) */
		a->mode = n->ctl == CTL_TXNS ? S_IFDIR | 01777 : t ? S_IFDIR | 0700 : S_IFDIR | 0555;
		a->nlink = 2;
		a->size = 4096;
		return 0;
	}
	/* scrub: anyone may open it to write; the engine says who may start
	 * one (EPERM, scrub.h S3) */
	a->mode = n->ctl == CTL_SCRUB ? S_IFREG | 0666
		  : n->ctl == CTL_TXN_CTL ? S_IFREG | 0644
		  : t && kind_is_txn_record(n->ctl) ? S_IFREG | 0400 : S_IFREG | 0444;
	a->nlink = 1;
	/* Size 0, as procfs does: with the writeback cache the kernel keeps a
	 * regular file's size from when it first met the inode and ignores later
	 * ones, so any real length goes stale (tail -1 then printed an old
	 * line). Reads are direct_io and go to EOF whatever the size; tail and
	 * wc read to EOF when the size is 0. Rendering here still answers
	 * ENOENT for a commit gone meanwhile. */
	if (n->ctl == CTL_COMMIT && !clog_has(fs->clog, n->ctl_key, fs_retain_oldest_ns(fs)))
		return -ENOENT; /* gone meanwhile (retention) */
	if ((n->ctl == CTL_DTC_SEG || n->ctl == CTL_DTC_CKPT) &&
	    !store_file_exists(fs, n->ctl, n->ctl_key))
		return -ENOENT; /* dropped by a checkpoint meanwhile */
	if (kind_is_txn_record(n->ctl) && !t) {
		/* dtc/transactions/ID of a transaction gone from memory (before a
		 * restart, or removed): the record on disk, still its owner's */
		char *j = n->ctl == CTL_DTC_TXN ? txn_record_json(fs, n->ctl_key) : NULL;
		if (!j)
			return -ENOENT;
		a->uid = record_uid(j);
		a->mode = S_IFREG | 0400;
		free(j);
	}
	return 0;
}

static void ctl_enter(struct txd_fs *fs, const struct node *parent);

int ctl_setattr(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
		const struct txd_setattr *sa, struct txd_attr *out)
{
	/* `echo x > ctl`: a truncation of a control file is a no-op */
	if (sa->valid & ~(TXD_SET_SIZE | TXD_SET_ATIME | TXD_SET_MTIME | TXD_SET_CTIME |
			  TXD_SET_ATIME_NOW | TXD_SET_MTIME_NOW | TXD_SET_KILL_SUIDGID |
			  TXD_SET_CHOWN_NOOP))
		return -EPERM;
	ctl_enter(fs, n);
	int err = 0;
	if (ctl_lease_owns(n->ctl) && (sa->valid & (TXD_SET_MTIME | TXD_SET_MTIME_NOW)))
		err = ctl_lease_touch(fs, c, n); /* touch renews (SPEC §5) */
	if (ctl_state_owns(n->ctl) && (sa->valid & TXD_SET_SIZE))
		err = ctl_state_truncate(fs, n, sa->size); /* a temp file's */
	return err ? err : ctl_getattr(fs, n, out ? out : &(struct txd_attr){0});
}

/* One node id per control object and view, so concurrent path walks
 * through .txdir/txn/NAME agree with each other and with the kernel's cache.
 * The view is part of the key: .txdir is reachable from the main root and
 * from every view's root, and a directory inode can have only one dentry. */
static unsigned ctl_slot(enum ctl_kind kind, uint64_t key, uint64_t via)
{
	return (unsigned)(((key ^ via * 0xff51afd7ed558ccdull) * 0x9e3779b97f4a7c15ull + kind) >> 56);
}

static void ctl_node_forget(struct txd_fs *fs, struct node *n)
{
	struct node **pp = &fs->ctl_nodes[ctl_slot(n->ctl, n->ctl_key, n->ctl_via)];
	while (*pp && *pp != n)
		pp = &(*pp)->ctl_next;
	if (*pp)
		*pp = n->ctl_next;
}

void ctl_node_put(struct txd_fs *fs, struct node *n)
{
	if (!n->nlookup && !n->nopen)
		ctl_node_forget(fs, n); /* fs_node_put frees it */
	fs_node_put(fs, n);
}

static struct node *ctl_node_get(struct txd_fs *fs, enum ctl_kind kind, uint64_t key)
{
	uint64_t via = fs->ctl_via;
	unsigned slot = ctl_slot(kind, key, via);
	for (struct node *n = fs->ctl_nodes[slot]; n; n = n->ctl_next)
		if (n->ctl == kind && n->ctl_key == key && n->ctl_via == via)
			return n;
	struct node *n = fs_node_new(fs, NULL, NULL);
	if (!n)
		return NULL;
	n->ctl = kind;
	n->ctl_key = key;
	n->ctl_via = via;
	n->ctl_next = fs->ctl_nodes[slot];
	fs->ctl_nodes[slot] = n;
	return n;
}

static int ctl_node(struct txd_fs *fs, enum ctl_kind kind, uint64_t key, struct txd_entry *e)
{
	struct node *n = ctl_node_get(fs, kind, key);
	if (!n)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	/* held across getattr: a lease node's releases fs->lock meanwhile,
	 * when another lookup of the same node or a forget may put it */
	n->nlookup++;
	int err = ctl_getattr(fs, n, &e->attr);
	if (err) {
		n->nlookup--;
		ctl_node_put(fs, n);
		return err;
	}
	e->node = n->id;
	e->generation = 1;
	/* Directories whose identity never changes may be cached by the kernel
	 * (paths through .txdir/txn/NAME/root stay cheap); files are rendered
	 * at every open and never cached. A transaction's directory only goes
	 * away by rmdir, which drops the kernel's entry itself. */
	e->cacheable = kind_is_dir(kind) && kind != CTL_COMMITS && kind != CTL_DTC_TXNS &&
		       kind != CTL_DTC_WAL && kind != CTL_DTC_CKPTS && /* their entries change */
		       (!ctl_lease_owns(kind) || ctl_lease_cacheable(kind)) && /* leases come and go */
		       !ctl_recovery_owns(kind) && /* so do journals */
		       (!ctl_vote_owns(kind) || ctl_vote_cacheable(kind)) && /* and proposals */
		       (!ctl_state_owns(kind) || kind == ctl_state_root_kind());
	/* Files that always exist keep their name cached (no LOOKUP at each
	 * open: status, stats, the state's update and participants), never
	 * their attributes (mtime changes server-side). Not the state
	 * document: each version is a node id of its own. */
	e->cache_entry = !kind_is_dir(kind) &&
			 (kind == CTL_EVENTS || kind == CTL_STATS || kind == CTL_STATUS ||
			  (ctl_state_owns(kind) && ctl_state_fixed_file(kind) &&
			   !ctl_state_versioned(kind)));
	return 0;
}

/* .txdir/txn/NAME/{root,ctl,status,info.json}: root is the view's root
 * directory, a data node of the transaction (txn.h). */
static int txn_child(struct txd_fs *fs, uint64_t id, const char *name, struct txd_entry *e)
{
	struct txn *t = txn_by_id(fs, id);
	if (!t)
		return -ENOENT;
	if (strcmp(name, "root") == 0) {
		struct inode *root = t->state == TXN_ACTIVE ? txn_inode(fs, t, NS_ROOT_INO) : NULL;
		struct node *n = root ? fs_live_node(fs, t, root) : NULL;
		if (!n)
			return t->state == TXN_ACTIVE ? -ENOMEM : -ENOENT;
		fs_entry(fs, n, e);
		return 0;
	}
	for (size_t k = 0; k < NTXN; k++)
		if (strcmp(name, ctl_txn[k].name) == 0)
			return ctl_node(fs, ctl_txn[k].kind, id, e);
	return -ENOENT;
}

/* The view a control call comes through (the key of ctl_node_get). */
static void ctl_enter(struct txd_fs *fs, const struct node *parent)
{
	fs->ctl_via = parent->ctl ? parent->ctl_via : parent->txn ? parent->txn->id : 0;
}

static int ctl_dir_err(uint32_t kind)
{
	return ctl_vote_owns(kind) ? ctl_vote_create_err(kind) : -EPERM;
}

int ctl_lookup(struct txd_fs *fs, struct node *parent, const char *name, struct txd_entry *e)
{
	ctl_enter(fs, parent);
	fs->upper_dir_err = ctl_dir_err; /* before any create below .txdir */
	if (!parent->ctl)
		return strcmp(name, CTL_DIRNAME) == 0 ? ctl_node(fs, CTL_ROOT, 0, e) : -ENOENT;
	if (parent->ctl == CTL_ROOT) {
		for (size_t k = 0; k < NROOT; k++)
			if (strcmp(name, ctl_root[k].name) == 0)
				return ctl_node(fs, ctl_root[k].kind, 0, e);
		return -ENOENT;
	}
	if (parent->ctl == CTL_COMMITS) {
		uint64_t id; /* only the name readdir lists (util.h) */
		if (!dec_parse(name, strlen(name), &id) ||
		    !clog_has(fs->clog, id, fs_retain_oldest_ns(fs)))
			return -ENOENT;
		return ctl_node(fs, CTL_COMMIT, id, e);
	}
	if (parent->ctl == CTL_TXNS) {
		struct txn *t = txn_find(fs, name);
		return t ? ctl_node(fs, CTL_TXN, t->id, e) : -ENOENT;
	}
	if (parent->ctl == CTL_TXN)
		return txn_child(fs, parent->ctl_key, name, e);
	if (ctl_lease_owns(parent->ctl))
		return ctl_lease_lookup(fs, parent, name, e);
	if (ctl_recovery_owns(parent->ctl))
		return ctl_recovery_lookup(fs, parent, name, e);
	if (ctl_vote_owns(parent->ctl))
		return ctl_vote_lookup(fs, parent, name, e);
	if (parent->ctl == CTL_DTC && strcmp(name, "participant_inbox") == 0)
		return ctl_node(fs, (enum ctl_kind)ctl_vote_inbox_kind(), 0, e);
	if (ctl_state_owns(parent->ctl))
		return ctl_state_lookup(fs, parent, name, e);
	if (parent->ctl == CTL_DTC) {
		static const struct ctl_entry dtc[] = {{"checkpoints", CTL_DTC_CKPTS, true},
						       {"transactions", CTL_DTC_TXNS, true},
						       {"wal", CTL_DTC_WAL, true}};
		for (size_t k = 0; k < sizeof(dtc) / sizeof(dtc[0]); k++)
			if (strcmp(name, dtc[k].name) == 0)
				return ctl_node(fs, dtc[k].kind, 0, e);
		return -ENOENT;
	}
	if (parent->ctl == CTL_DTC_WAL || parent->ctl == CTL_DTC_CKPTS) {
		uint64_t key;
		if (store_file_key(parent->ctl, name, &key))
			return -ENOENT;
		return ctl_node(fs, parent->ctl == CTL_DTC_WAL ? CTL_DTC_SEG : CTL_DTC_CKPT, key, e);
	}
	if (parent->ctl == CTL_DTC_TXNS) {
		uint64_t id;
		return !dec_parse(name, strlen(name), &id) || !txn_record_exists(fs, id)
			       ? -ENOENT
			       : ctl_node(fs, CTL_DTC_TXN, id, e);
	}
	return kind_is_dir(parent->ctl) ? -ENOENT : -ENOTDIR;
}

/* Emit a child; readdirplus entries carry a lookup reference. */
static int ctl_emit(struct txd_fs *fs, const char *name, enum ctl_kind kind, uint64_t key,
		    bool plus, uint64_t next, txd_fill_fn fill, void *arg)
{
	struct txd_entry e;
	if (ctl_node(fs, kind, key, &e))
		return 0; /* vanished meanwhile (retention): skip it */
	struct node *n = fs_node(fs, e.node);
	int full = fill(arg, name, &e, next);
	if (full || !plus) {
		n->nlookup--;
		ctl_node_put(fs, n);
	}
	return full;
}

static int readdir_commits(struct txd_fs *fs, uint64_t off, bool plus, txd_fill_fn fill,
			   void *arg)
{
	/* newest first: offset 3 + k is the k-th newest */
	uint64_t id;
	for (uint64_t k = off < 3 ? 0 : off - 2;
	     clog_nth_newest(fs->clog, fs_retain_oldest_ns(fs), k, &id); k++) {
		char name[24];
		snprintf(name, sizeof(name), "%" PRIu64, id);
		if (ctl_emit(fs, name, CTL_COMMIT, id, plus, k + 3, fill, arg))
			break;
	}
	return 0;
}

/* dtc/wal/ and dtc/checkpoints/: offset 3 + k is the k-th, oldest first. */
static int readdir_store_files(struct txd_fs *fs, enum ctl_kind dir, uint64_t off, bool plus,
			       txd_fill_fn fill, void *arg)
{
	struct wal_seg_info *segs = NULL;
	uint64_t *lsns = NULL;
	uint32_t n = 0;
	int err = dir == CTL_DTC_WAL ? wal_segments(fs->wal, &segs, &n) : ckpt_list(fs, &lsns, &n);
	for (uint64_t k = off < 3 ? 0 : off - 2; !err && k < n; k++) {
		char name[32];
		if (segs)
			snprintf(name, sizeof(name), SEG_NAME, segs[k].seg);
		else
			snprintf(name, sizeof(name), CKPT_NAME, lsns[k]);
		if (ctl_emit(fs, name, segs ? CTL_DTC_SEG : CTL_DTC_CKPT, segs ? segs[k].seg : lsns[k],
			     plus, k + 3, fill, arg))
			break;
	}
	free(segs);
	free(lsns);
	return err;
}

int ctl_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
		void *arg)
{
	ctl_enter(fs, n);
	if (off < 1 && ctl_emit(fs, ".", n->ctl, n->ctl_key, false, 1, fill, arg))
		return 0;
	if (off < 2 && ctl_emit(fs, "..", CTL_ROOT, 0, false, 2, fill, arg))
		return 0;
	if (n->ctl == CTL_ROOT) {
		for (uint64_t k = off < 3 ? 0 : off - 2; k < NROOT; k++)
			if (ctl_emit(fs, ctl_root[k].name, ctl_root[k].kind, 0, plus, k + 3, fill, arg))
				break;
		return 0;
	}
	if (n->ctl == CTL_COMMITS)
		return readdir_commits(fs, off, plus, fill, arg);
	if (ctl_lease_owns(n->ctl))
		return ctl_lease_readdir(fs, n, off, plus, fill, arg);
	if (ctl_recovery_owns(n->ctl))
		return ctl_recovery_readdir(fs, n, off, plus, fill, arg);
	if (ctl_vote_owns(n->ctl))
		return ctl_vote_readdir(fs, n, off, plus, fill, arg);
	if (ctl_state_owns(n->ctl))
		return ctl_state_readdir(fs, n, off, plus, fill, arg);
	if (n->ctl == CTL_DTC_TXNS) {
		/* offset 3 + k: the k-th record, ascending id (in memory and on disk) */
		uint64_t *ids;
		uint32_t nids;
		if (txn_record_ids(fs, &ids, &nids))
			return -ENOMEM;
		for (uint64_t k = off < 3 ? 0 : off - 2; k < nids; k++) {
			char id[24];
			snprintf(id, sizeof(id), "%" PRIu64, ids[k]);
			if (ctl_emit(fs, id, CTL_DTC_TXN, ids[k], plus, k + 3, fill, arg))
				break;
		}
		free(ids);
		return 0;
	}
	if (n->ctl == CTL_TXNS) {
		/* offset 3 + k: the k-th transaction in fs->txns */
		uint64_t k = 0;
		for (struct txn *t = fs->txns; t; t = t->next) {
			if (!t->listed)
				continue;
			if (k++ + 3 <= off)
				continue;
			if (ctl_emit(fs, t->name, CTL_TXN, t->id, plus, k + 2, fill, arg))
				break;
		}
		return 0;
	}
	if (n->ctl == CTL_DTC) {
		static const struct ctl_entry dtc[] = {
			{"checkpoints", CTL_DTC_CKPTS, true},
			{"participant_inbox", CTL_NONE, true}, /* ctl_vote.c's */
			{"transactions", CTL_DTC_TXNS, true},
			{"wal", CTL_DTC_WAL, true}};
		for (uint64_t k = off < 3 ? 0 : off - 2; k < sizeof(dtc) / sizeof(dtc[0]); k++) {
			enum ctl_kind kind = dtc[k].kind ? dtc[k].kind
							 : (enum ctl_kind)ctl_vote_inbox_kind();
			if (ctl_emit(fs, dtc[k].name, kind, 0, plus, k + 3, fill, arg))
				break;
		}
		return 0;
	}
	if (n->ctl == CTL_DTC_WAL || n->ctl == CTL_DTC_CKPTS)
		return readdir_store_files(fs, n->ctl, off, plus, fill, arg);
	if (n->ctl == CTL_TXN) {
		for (uint64_t k = off < 3 ? 0 : off - 2; k < NTXN; k++)
			if (ctl_emit(fs, ctl_txn[k].name, ctl_txn[k].kind, n->ctl_key, plus, k + 3, fill,
				     arg))
				return 0;
		struct txd_entry e;
		if (off < NTXN + 3 && txn_child(fs, n->ctl_key, "root", &e) == 0) {
			struct node *rn = fs_node(fs, e.node);
			if (fill(arg, "root", &e, NTXN + 3) != 0 || !plus) {
				rn->nlookup--;
				fs_node_put(fs, rn);
			}
		}
		return 0;
	}
	return 0; /* manifests/, temp/: nothing in flight yet */
}

/* mkdir .txdir/txn/NAME begins a transaction (SPEC §4). */
int ctl_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent, const char *name,
	      struct txd_entry *e)
{
	ctl_enter(fs, parent);
	if (ctl_lease_owns(parent->ctl))
		return ctl_lease_mkdir(fs, c, parent, name, e);
	if (ctl_vote_owns(parent->ctl))
		return ctl_vote_mkdir(fs, c, parent, name, e);
	if (parent->ctl != CTL_TXNS)
		return -EPERM;
	size_t len = strlen(name);
	if (len == 0 || len > TXD_NAME_MAX)
		return len ? -ENAMETOOLONG : -EINVAL;
	/* SPEC §6: no '/', whitespace or control characters, not . or .. */
	if (lease_name_check(name))
		return -EINVAL;
	struct txn *t;
	int err = txn_begin(fs, name, c, &t);
	return err ? err : ctl_node(fs, CTL_TXN, t->id, e);
}

/* rmdir .txdir/txn/NAME aborts it if active and removes it. */
int ctl_rmdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	      const char *name)
{
	ctl_enter(fs, parent);
	if (ctl_lease_owns(parent->ctl))
		return ctl_lease_rmdir(fs, c, parent, name);
	if (ctl_vote_owns(parent->ctl))
		return ctl_vote_rmdir(fs, c, parent, name);
	/* .txdir/txn/NAME: anyone who may write .txdir/txn (the kernel checked it) */
	if (parent->ctl != CTL_TXNS)
		return -EPERM;
	struct txn *t = txn_find(fs, name);
	if (!t)
		return -ENOENT;
	return txn_remove(fs, t);
}

int ctl_unlink(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	       const char *name)
{
	ctl_enter(fs, parent);
	if (ctl_lease_owns(parent->ctl))
		return ctl_lease_unlink(fs, c, parent, name);
	if (ctl_state_owns(parent->ctl))
		return ctl_state_unlink(fs, c, parent, name);
	return kind_is_dir(parent->ctl) ? -EPERM : -ENOTDIR;
}

int ctl_create(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	       const char *name, mode_t mode, struct txd_entry *e)
{
	ctl_enter(fs, parent);
	if (ctl_state_owns(parent->ctl))
		return ctl_state_create(fs, c, parent, name, mode, e);
	return kind_is_dir(parent->ctl) ? ctl_dir_err(parent->ctl) : -ENOTDIR;
}

int ctl_rename(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	       const char *name, struct node *newparent, const char *newname, unsigned flags)
{
	ctl_enter(fs, parent);
	if (ctl_state_owns(parent->ctl) && ctl_state_owns(newparent->ctl))
		return ctl_state_rename(fs, c, parent, name, newparent, newname, flags);
	return ctl_rename_err(parent) == -EXDEV ? -EXDEV : ctl_rename_err(newparent);
}

int ctl_rename_err(const struct node *n)
{
	/* The state directory's files are documents: EXDEV, so mv falls back
	 * to a copy (SPEC §6). Everything else does not move, and EPERM stops
	 * mv before it copies: a copy's mkdir would grant a lease or create a
	 * proposal, its writes would vote. */
	return ctl_state_owns(n->ctl) ? -EXDEV : -EPERM;
}

/* ---- what open renderings hold (SPEC §6: no user can exhaust the server) ----
 * Each open of a rendered file (events, commits/ID, journals...) keeps its
 * snapshot for its life. The bytes a uid's open files hold are counted
 * (fs->ctl_held, under fs->lock); an open by a uid other than root that
 * would take them past -o max_ctl_mib (256 MiB) is refused with EDQUOT. */
static uint64_t held_max(const struct txd_fs *fs)
{
	return (fs->opts.max_ctl_mib ? fs->opts.max_ctl_mib : 256) * (1ull << 20);
}

struct ctl_held {
	struct ctl_held *next;
	uint32_t uid;
	uint64_t bytes;
};

static struct ctl_held *held_of(struct txd_fs *fs, uint32_t uid, bool create)
{
	for (struct ctl_held *e = fs->ctl_held; e; e = e->next)
		if (e->uid == uid)
			return e;
	struct ctl_held *e = create ? calloc(1, sizeof(*e)) : NULL;
	if (e) {
		e->uid = uid;
		e->next = fs->ctl_held;
		fs->ctl_held = e;
	}
	return e;
}

/* fs->lock held. 0, or -EDQUOT (nothing counted). */
static int held_add(struct txd_fs *fs, uint32_t uid, uint64_t bytes)
{
	if (!bytes)
		return 0;
	struct ctl_held *e = held_of(fs, uid, true);
	if (!e)
		return -ENOMEM;
	if (uid != 0 && e->bytes + bytes > held_max(fs))
		return -EDQUOT;
	e->bytes += bytes;
	return 0;
}

/* fs->lock held. */
static void held_sub(struct txd_fs *fs, uint32_t uid, uint64_t bytes)
{
	struct ctl_held *e = bytes ? held_of(fs, uid, false) : NULL;
	if (!e)
		return;
	e->bytes -= bytes < e->bytes ? bytes : e->bytes;
	if (e->bytes)
		return;
	struct ctl_held **pp = &fs->ctl_held;
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	free(e);
}

int ctl_open(struct txd_fs *fs, const struct txd_cred *c, struct node *n, int flags,
	     struct handle *h, struct txd_open_out *out)
{
	if (kind_is_dir(n->ctl))
		return -EISDIR;
	bool writable = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	if (writable && n->ctl != CTL_TXN_CTL && n->ctl != CTL_SCRUB && !ctl_lease_writable(n->ctl) &&
	    !ctl_vote_writable(n->ctl) && !ctl_state_writable(n->ctl))
		return -EACCES;
	struct ctl_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	struct sbuf s = {0};
	int err;
	if (ctl_lease_owns(n->ctl) && ctl_lease_is_wait(n->ctl)) {
		ctl_enter(fs, n);
		err = ctl_lease_wait_open(fs, n, &f->wait);
	} else if (ctl_lease_owns(n->ctl)) {
		ctl_enter(fs, n);
		err = writable ? 0 : ctl_lease_render(fs, n, &s.p, &s.len);
	} else if (ctl_vote_owns(n->ctl) && ctl_vote_is_wait(n->ctl)) {
		err = ctl_vote_wait_open(fs, n, &f->vwait);
	} else if (ctl_vote_owns(n->ctl)) {
		ctl_enter(fs, n);
		err = writable ? 0 : ctl_vote_render(fs, n, &s.p, &s.len);
	} else if (ctl_state_owns(n->ctl)) {
		err = ctl_state_open(fs, c, n, flags, &f->state, &s.p, &s.len);
	} else {
		err = render(fs, c, n, &s);
	}
	f->uid = c ? c->uid : 0;
	if (!err)
		err = held_add(fs, f->uid, s.len);
	if (err) {
		free(s.p);
		free(f);
		return err;
	}
	f->buf = s.p;
	f->len = s.len;
	h->ctl = f;
	out->direct_io = true;
	return 0;
}

ssize_t ctl_read(struct txd_fs *fs, struct handle *h, void *buf, size_t size, uint64_t off)
{
	return ctl_read_async(fs, h, buf, size, off, NULL, NULL);
}

ssize_t ctl_read_async(struct txd_fs *fs, struct handle *h, void *buf, size_t size,
		       uint64_t off, void (*done)(void *arg, int err), void *arg)
{
	struct ctl_file *f = h->ctl;
	if (f && f->wait)
		return ctl_lease_wait_read(fs, f->wait, buf, size, off, h->flags & O_NONBLOCK,
					   done, arg);
	if (f && f->vwait)
		return ctl_vote_wait_read(fs, f->vwait, buf, size, off, h->flags & O_NONBLOCK,
					  done, arg);
	if (f && ctl_state_is_wait(f->state))
		return ctl_state_wait_read(fs, f->state, buf, size, off, h->flags & O_NONBLOCK,
					   done, arg);
	if (!f || off >= f->len)
		return 0;
	size_t n = f->len - off < size ? f->len - off : size;
	memcpy(buf, f->buf + off, n);
	return (ssize_t)n;
}

/* "NAME TOKEN" of "commit if-lease NAME TOKEN": name per SPEC §6, token a
 * decimal > 0, one space between. -EINVAL otherwise. */
static int parse_fence(const char *s, size_t len, char name[LEASE_NAME_MAX + 1],
		       struct txn_fence *out)
{
	const char *sp = memchr(s, ' ', len);
	if (!sp || sp == s || (size_t)(sp - s) > LEASE_NAME_MAX)
		return -EINVAL;
	memcpy(name, s, (size_t)(sp - s));
	name[sp - s] = 0;
	if (lease_name_check(name))
		return -EINVAL;
	const char *d = sp + 1, *end = s + len;
	uint64_t token = 0;
	if (d == end || end - d > 20)
		return -EINVAL;
	for (; d < end; d++) {
		if (*d < '0' || *d > '9' || token > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		token = token * 10 + (uint64_t)(*d - '0');
	}
	if (!token)
		return -EINVAL;
	*out = (struct txn_fence){.lease = name, .token = token};
	return 0;
}

/* "P as NAME" of "prepare P as NAME": names per SPEC §6. -EINVAL otherwise. */
static int parse_prepare(const char *s, size_t len, char p[LEASE_NAME_MAX + 1],
			 char name[LEASE_NAME_MAX + 1])
{
	const char *sp = memchr(s, ' ', len);
	if (!sp || sp == s || (size_t)(sp - s) > LEASE_NAME_MAX)
		return -EINVAL;
	size_t pl = (size_t)(sp - s), rest = len - pl;
	if (rest < 5 || memcmp(sp, " as ", 4) != 0 || rest - 4 > LEASE_NAME_MAX)
		return -EINVAL;
	memcpy(p, s, pl);
	p[pl] = 0;
	memcpy(name, sp + 4, rest - 4);
	name[rest - 4] = 0;
	return lease_name_check(p) || lease_name_check(name) ? -EINVAL : 0;
}

/* One command per write(2) to .txdir/txn/NAME/ctl; the write returns the
 * outcome (SPEC §4). Surrounding white space is ignored. */
static int txn_command(struct txd_fs *fs, const struct txd_cred *c, struct txn *t,
		       const char *cmd, size_t len, void (*done)(void *arg, int err), void *arg)
{
	while (len && (cmd[len - 1] == '\n' || cmd[len - 1] == ' ' || cmd[len - 1] == '\t'))
		len--;
	while (len && (*cmd == ' ' || *cmd == '\t')) {
		cmd++;
		len--;
	}
	if (len == 6 && memcmp(cmd, "commit", 6) == 0)
		return done ? txn_commit_async(fs, t, c ? c->pid : 0, done, arg)
			    : txn_commit(fs, t, c ? c->pid : 0);
	if (len > 16 && memcmp(cmd, "commit if-lease ", 16) == 0) {
		struct txn_fence fence;
		char name[LEASE_NAME_MAX + 1];
		int err = parse_fence(cmd + 16, len - 16, name, &fence);
		return err ? err : txn_commit_fenced(fs, t, c ? c->pid : 0, &fence, done, arg);
	}
	if (len > 8 && memcmp(cmd, "prepare ", 8) == 0) {
		char p[LEASE_NAME_MAX + 1], name[LEASE_NAME_MAX + 1];
		int err = parse_prepare(cmd + 8, len - 8, p, name);
		if (err)
			return err;
		return done ? dtc_prepare_async(fs, t, c ? c->pid : 0, p, name, done, arg)
			    : dtc_prepare(fs, t, c ? c->pid : 0, p, name);
	}
	/* "abort", or "abort busy": mountctl run giving up on a busy path
	 * (SPEC §2: it ends "aborted busy") */
	if ((len == 5 && memcmp(cmd, "abort", 5) == 0) ||
	    (len == 10 && memcmp(cmd, "abort busy", 10) == 0)) {
		if (t->state == TXN_COMMITTED)
			return -EINVAL; /* too late */
		if (t->state == TXN_PREPARED)
			return -EBUSY; /* only the decision ends it (txn.h) */
		txn_abort(fs, t, len == 10 ? "busy" : "request");
		return 0;
	}
	if (len == 8 && memcmp(cmd, "readonly", 8) == 0) {
		if (t->state != TXN_ACTIVE || t->log.nops)
			return -EINVAL; /* only before any change */
		t->readonly = true;
		return 0;
	}
	return -EINVAL;
}

/* One word per write(2) to .txdir/scrub: "start", "start rate=N" (bytes
 * per second, 0 no limit), "cancel"; the write returns the outcome. */
static ssize_t scrub_command(struct txd_fs *fs, const struct txd_cred *c, const char *cmd,
			     size_t len)
{
	char word[64];
	size_t size = len;
	if (len >= sizeof(word))
		return -EINVAL;
	memcpy(word, cmd, len);
	word[len] = 0;
	while (len && (word[len - 1] == '\n' || word[len - 1] == ' '))
		word[--len] = 0;
	uint64_t rate = SCRUB_DEFAULT_RATE;
	char *end = NULL;
	bool start = !strcmp(word, "start");
	if (!strncmp(word, "start rate=", 11) && word[11] >= '0' && word[11] <= '9') {
		rate = strtoull(word + 11, &end, 10);
		start = !*end;
	}
	if (!start && strcmp(word, "cancel"))
		return -EINVAL;
	uint32_t uid = c ? c->uid : 0;
	pthread_mutex_lock(&fs->lock);
	int err = start ? scrub_start(fs, uid, rate) : scrub_cancel(fs, uid);
	if (!err)
		fs->upper_free = ctl_upper_free; /* stops the thread at unmount */
	pthread_mutex_unlock(&fs->lock);
	return err ? err : (ssize_t)size;
}

ssize_t ctl_write(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
		  const void *buf, size_t size, uint64_t off)
{
	return ctl_write_async(fs, c, h, buf, size, off, NULL, NULL);
}

ssize_t ctl_write_async(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
			const void *buf, size_t size, uint64_t off,
			void (*done)(void *arg, int err), void *arg)
{
	if (ctl_lease_owns(h->node->ctl))
		return ctl_lease_write(fs, c, h, buf, size);
	if (ctl_vote_owns(h->node->ctl) && h->ctl)
		return ctl_vote_write(fs, c, h->node, buf, size, off, &h->ctl->acc);
	if (h->ctl && h->ctl->state)
		return ctl_state_write(fs, c, h->ctl->state, buf, size, off);
	if (h->node->ctl == CTL_SCRUB)
		return scrub_command(fs, c, buf, size);
	if (h->node->ctl != CTL_TXN_CTL)
		return -EACCES;
	if (size > CTL_TXN_CMD_MAX)
		return -EINVAL; /* documented limit: one short command per write */
	pthread_mutex_lock(&fs->lock);
	struct txn *t = txn_by_id(fs, h->node->ctl_key);
	int err = t ? txn_command(fs, c, t, buf, size, done, arg) : -ENOENT;
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
	return err ? err : (ssize_t)size; /* -EINPROGRESS: done answers (txn.h) */
}

int ctl_poll(struct txd_fs *fs, struct handle *h, void (*wake)(void *arg), void *arg)
{
	struct ctl_file *f = h->ctl;
	if (f && f->wait)
		return ctl_lease_wait_poll(fs, f->wait, wake, arg);
	if (f && f->vwait)
		return ctl_vote_wait_poll(fs, f->vwait, wake, arg);
	if (f && ctl_state_is_wait(f->state))
		return ctl_state_wait_poll(fs, f->state, wake, arg);
	return 1; /* rendered at open: always readable */
}

bool ctl_may_wait(const struct handle *h)
{
	return h->ctl && (h->ctl->wait || h->ctl->vwait || ctl_state_is_wait(h->ctl->state));
}

int ctl_read_cancel(struct txd_fs *fs, void *arg)
{
	int err = ctl_lease_wait_cancel(fs, arg);
	if (err == -ENOENT)
		err = ctl_vote_wait_cancel(fs, arg);
	if (err == -ENOENT)
		err = ctl_state_wait_cancel(fs, arg);
	return err;
}

int ctl_flush_async(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
		    void (*done)(void *arg, int err), void *arg)
{
	if (h->ctl && ctl_vote_owns(h->node->ctl))
		return ctl_vote_flush(fs, c, h->node, &h->ctl->acc);
	return h->ctl && h->ctl->state ? ctl_state_flush_async(fs, c, h->ctl->state, done, arg)
				       : 0;
}

int ctl_flush(struct txd_fs *fs, const struct txd_cred *c, struct handle *h)
{
	return ctl_flush_async(fs, c, h, NULL, NULL);
}

int ctl_flush_cancel(struct txd_fs *fs, void *arg)
{
	return ctl_state_flush_cancel(fs, arg);
}

ssize_t ctl_getxattr(struct txd_fs *fs, struct node *n, const char *name, void *buf,
		     size_t size)
{
	return ctl_state_owns(n->ctl) ? ctl_state_getxattr(fs, n, name, buf, size) : -ENODATA;
}

ssize_t ctl_listxattr(struct txd_fs *fs, struct node *n, char *buf, size_t size)
{
	return ctl_state_owns(n->ctl) ? ctl_state_listxattr(fs, n, buf, size) : 0;
}

void ctl_upper_free(struct txd_fs *fs)
{
	scrub_free(fs); /* its thread reads the namespace and the stores */
	ctl_lease_free(fs);
	ctl_state_free(fs);
	while (fs->ctl_held) {
		struct ctl_held *next = fs->ctl_held->next;
		free(fs->ctl_held);
		fs->ctl_held = next;
	}
}

void ctl_release(struct txd_fs *fs, struct handle *h)
{
	if (h->ctl && h->ctl->wait)
		ctl_lease_wait_close(fs, h->ctl->wait);
	if (h->ctl && h->ctl->vwait)
		ctl_vote_wait_close(fs, h->ctl->vwait);
	if (h->ctl && h->ctl->state)
		ctl_state_release(fs, h->ctl->state);
	if (h->ctl) {
		pthread_mutex_lock(&fs->lock);
		held_sub(fs, h->ctl->uid, h->ctl->len);
		pthread_mutex_unlock(&fs->lock);
		free(h->ctl->buf);
		free(h->ctl->acc.buf);
		/* a big rendering gone: give the heap's free pages back (glibc
		 * keeps them otherwise; mapping every big buffer on its own
		 * instead made each chunk buffer a fresh, slow page fault) */
		if (h->ctl->len >= (1u << 20))
			malloc_trim(0);
	}
	free(h->ctl);
	h->ctl = NULL;
}

ssize_t ctl_readlink(struct txd_fs *fs, struct node *n, char *buf, size_t size)
{
	ctl_enter(fs, n);
	return ctl_lease_owns(n->ctl) ? ctl_lease_readlink(fs, n, buf, size) : -EINVAL;
}

int ctl_entry(struct txd_fs *fs, unsigned kind, uint64_t key, struct txd_entry *e)
{
	return ctl_node(fs, (enum ctl_kind)kind, key, e);
}

int ctl_fill(struct txd_fs *fs, const char *name, unsigned kind, uint64_t key, bool plus,
	     uint64_t next, txd_fill_fn fill, void *arg)
{
	return ctl_emit(fs, name, (enum ctl_kind)kind, key, plus, next, fill, arg);
}
