/*
 * lease.c — the lease service (lease.h): decisions under one lock, records
 * through a backend, one apply function shared by live operations, replay
 * and snapshot loading (so replay cannot disagree with what was granted).
 */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "os.h"
#include "txdir.h"

#define NBUCKET 1024
#define REC_MAX (72 + LEASE_NAME_MAX)
#define SNAP_MAGIC 0x534c5854u /* "TXLS" */
#define VISIT_MAX 256

enum gstate { G_FREE, G_GRANTING, G_HELD };

struct waiter {
	struct waiter *next;
	struct proc_id proc;
	uint32_t uid;
	uint64_t ttl_ns;
};

struct lname {
	struct lname *next;         /* hash chain */
	enum gstate state;
	struct lease_info info;     /* valid unless G_FREE; info.name always */
	struct waiter *qhead, *qtail;
};

struct uidcnt {
	uint32_t uid, leases, waiters;
};

/* A decoded record. */
struct lrec {
	uint8_t kind;
	struct lease_info li;       /* name, token; GRANT: all; RENEW: ttl, expiry */
	uint64_t upto;              /* RESERVE */
	uint8_t how;                /* RELEASE */
	struct lease_who by;
	uint64_t ended_ns;
	uint64_t renewed_ns;        /* RENEW (0: a record without it) */
};

struct lease_svc {
	pthread_mutex_t lock;       /* protects everything below */
	struct lease_opts opts;
	struct lease_backend be;
	struct lease_hooks hooks;
	struct lname *bucket[NBUCKET];
	struct uidcnt *uids;
	size_t nuids, capuids;
	uint64_t next_token;        /* next to hand out */
	uint64_t reserved_upto;     /* tokens < this are durably reserved */
	uint64_t max_token;         /* highest token granted (L7) */
	uint64_t last_lsn;          /* highest lsn appended */
	struct lease_completed *ring; /* grows to opts.completed_keep as needed */
	size_t ring_start, ring_n, ring_cap;
	struct lease_stats st;
	bool loading;               /* snapshot decode: no L7 skipping */
	int failed;                 /* L10: sticky */
};

/* Events gathered under the lock, fired after it. */
struct evbuf {
	struct lease_event *ev;
	size_t n, cap;
	bool oom;
};

/* ---- small helpers -------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int lease_name_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > LEASE_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '/' || c <= ' ' || c == 0x7f)
			return -EINVAL;
	}
	return 0;
}

const char *lease_end_name(enum lease_end how)
{
	static const char *const names[LEASE_END_MAX] = {
		[LEASE_END_RELEASE] = "release", [LEASE_END_DEATH] = "death",
		[LEASE_END_EXPIRY] = "expiry",   [LEASE_END_BREAK] = "break",
		[LEASE_END_DEAD] = "dead_process", [LEASE_END_REBOOT] = "reboot",
	};

	return how > 0 && how < LEASE_END_MAX ? names[how] : "unknown";
}

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKET;
}

static struct lname *lname_find(struct lease_svc *s, const char *name)
{
	struct lname *ln;

	for (ln = s->bucket[hash(name)]; ln; ln = ln->next)
		if (!strcmp(ln->info.name, name))
			return ln;
	return NULL;
}

static struct lname *lname_get(struct lease_svc *s, const char *name)
{
	struct lname *ln = lname_find(s, name);
	uint32_t h;

	if (ln)
		return ln;
	ln = calloc(1, sizeof(*ln));
	if (!ln)
		return NULL;
	strcpy(ln->info.name, name);
	h = hash(name);
	ln->next = s->bucket[h];
	s->bucket[h] = ln;
	return ln;
}

/* Frees ln if it holds nothing and nobody waits. */
static void lname_put(struct lease_svc *s, struct lname *ln)
{
	struct lname **pp;

	if (ln->state != G_FREE || ln->qhead)
		return;
	for (pp = &s->bucket[hash(ln->info.name)]; *pp; pp = &(*pp)->next) {
		if (*pp == ln) {
			*pp = ln->next;
			free(ln);
			return;
		}
	}
}

static struct uidcnt *uid_get(struct lease_svc *s, uint32_t uid)
{
	for (size_t i = 0; i < s->nuids; i++)
		if (s->uids[i].uid == uid)
			return &s->uids[i];
	if (s->nuids == s->capuids) {
		size_t nc = s->capuids ? 2 * s->capuids : 16;
		struct uidcnt *nu = realloc(s->uids, nc * sizeof(*nu));

		if (!nu)
			return NULL;
		s->uids = nu;
		s->capuids = nc;
	}
	s->uids[s->nuids] = (struct uidcnt){ .uid = uid };
	return &s->uids[s->nuids++];
}

static void ev_push(struct evbuf *eb, const struct lease_event *ev)
{
	if (eb->n == eb->cap) {
		size_t nc = eb->cap ? 2 * eb->cap : 8;
		struct lease_event *ne = realloc(eb->ev, nc * sizeof(*ne));

		if (!ne) {
			eb->oom = true; /* events are reports; the action stands */
			return;
		}
		eb->ev = ne;
		eb->cap = nc;
	}
	eb->ev[eb->n++] = *ev;
}

/* ---- records ---------------------------------------------------------------- */

static size_t rec_encode(const struct lrec *r, uint8_t *b)
{
	size_t nl = r->kind == LREC_RESERVE ? 0 : strlen(r->li.name), off;

	memset(b, 0, REC_MAX);
	b[0] = 1;
	b[1] = r->kind;
	put16(b + 2, (uint16_t)nl);
	switch (r->kind) {
	case LREC_RESERVE:
		put64(b + 8, r->upto);
		return 16;
	case LREC_GRANT:
		put64(b + 8, r->li.token);
		put32(b + 16, r->li.uid);
		put32(b + 20, r->li.holder.pid);
		put64(b + 24, r->li.holder.start);
		memcpy(b + 32, r->li.holder.boot, PROC_BOOT_LEN);
		put64(b + 48, r->li.ttl_ns);
		put64(b + 56, r->li.expires_mono_ns);
		put64(b + 64, r->li.acquired_ns);
		off = 72;
		break;
	case LREC_RENEW:
		put64(b + 8, r->li.token);
		put64(b + 16, r->li.ttl_ns);
		put64(b + 24, r->li.expires_mono_ns);
		put64(b + 32, r->renewed_ns);
		off = 40;
		break;
	default: /* LREC_RELEASE */
		put64(b + 8, r->li.token);
		b[16] = r->how;
		put32(b + 20, r->by.uid);
		put32(b + 24, r->by.proc.pid);
		put64(b + 32, r->by.proc.start);
		put64(b + 40, r->ended_ns);
		off = 48;
		break;
	}
	memcpy(b + off, r->li.name, nl);
	return off + nl;
}

static int rec_decode(const void *payload, size_t len, struct lrec *r)
{
	static const size_t fixed[] = { 0, 16, 72, 40, 48 };
	const uint8_t *b = payload;
	size_t nl, fx;

	memset(r, 0, sizeof(*r));
	if (len < 8)
		return -TXD_ECORRUPT;
	if (b[0] != 1 || b[1] < LREC_RESERVE || b[1] > LREC_RELEASE)
		return -TXD_EFORMAT;
	r->kind = b[1];
	nl = get16(b + 2);
	fx = fixed[r->kind];
	if (r->kind == LREC_RENEW && len == 32 + nl)
		fx = 32; /* written before renewed_ns */
	if (len != fx + nl || (r->kind == LREC_RESERVE) != (nl == 0))
		return -TXD_ECORRUPT;
	if (nl) {
		if (nl > LEASE_NAME_MAX)
			return -TXD_ECORRUPT;
		memcpy(r->li.name, b + fx, nl);
		r->li.name[nl] = '\0';
		if (lease_name_check(r->li.name))
			return -TXD_ECORRUPT;
	}
	switch (r->kind) {
	case LREC_RESERVE:
		r->upto = get64(b + 8);
		break;
	case LREC_GRANT:
		r->li.token = get64(b + 8);
		r->li.uid = get32(b + 16);
		r->li.holder.pid = get32(b + 20);
		r->li.holder.start = get64(b + 24);
		memcpy(r->li.holder.boot, b + 32, PROC_BOOT_LEN);
		r->li.ttl_ns = get64(b + 48);
		r->li.expires_mono_ns = get64(b + 56);
		r->li.acquired_ns = get64(b + 64);
		break;
	case LREC_RENEW:
		r->li.token = get64(b + 8);
		r->li.ttl_ns = get64(b + 16);
		r->li.expires_mono_ns = get64(b + 24);
		r->renewed_ns = fx == 40 ? get64(b + 32) : 0;
		break;
	default:
		r->li.token = get64(b + 8);
		r->how = b[16];
		r->by.uid = get32(b + 20);
		r->by.proc.pid = get32(b + 24);
		r->by.proc.start = get64(b + 32);
		r->ended_ns = get64(b + 40);
		if (r->how == 0 || r->how >= LEASE_END_MAX)
			return -TXD_ECORRUPT;
		break;
	}
	return 0;
}

/* Room for one more completed record: the ring doubles (in order, from 0)
 * up to completed_keep. -ENOMEM leaves it as it was. */
static int ring_grow(struct lease_svc *s)
{
	size_t keep = s->opts.completed_keep;
	size_t cap = s->ring_cap ? s->ring_cap * 2 : 64;
	struct lease_completed *r;

	if (cap > keep)
		cap = keep;
	r = malloc(cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < s->ring_n; i++)
		r[i] = s->ring[(s->ring_start + i) % s->ring_cap];
	free(s->ring);
	s->ring = r;
	s->ring_cap = cap;
	s->ring_start = 0;
	return 0;
}

/* Keep c (the oldest goes once completed_keep are kept). Without memory to
 * grow, the oldest goes early: these records are a view of the past (L4),
 * never what a decision depends on. */
static void completed_push(struct lease_svc *s, const struct lease_completed *c)
{
	if (s->ring_n == s->ring_cap && s->ring_cap < s->opts.completed_keep)
		(void)ring_grow(s);
	if (!s->ring_cap)
		return;
	if (s->ring_n < s->ring_cap) {
		s->ring[(s->ring_start + s->ring_n++) % s->ring_cap] = *c;
	} else {
		s->ring[s->ring_start] = *c;
		s->ring_start = (s->ring_start + 1) % s->ring_cap;
	}
}

/* The one place state changes. live: a record just appended (a grant starts
 * GRANTING); else replay (L7 skips unless loading a snapshot). Returns the
 * name touched (NULL if skipped), or sets *err. */
static struct lname *apply(struct lease_svc *s, const struct lrec *r, bool live, int *err)
{
	struct lname *ln = NULL;
	struct uidcnt *uc;

	*err = 0;
	switch (r->kind) {
	case LREC_RESERVE:
		if (r->upto > s->reserved_upto)
			s->reserved_upto = r->upto;
		return NULL;
	case LREC_GRANT:
		if (!live && !s->loading && r->li.token <= s->max_token)
			return NULL;
		ln = lname_get(s, r->li.name);
		uc = uid_get(s, r->li.uid);
		if (!ln || !uc) {
			*err = -ENOMEM;
			return NULL;
		}
		if (ln->state != G_FREE) {
			*err = -TXD_ECORRUPT; /* a grant over a grant: the log lies */
			return NULL;
		}
		ln->info = r->li;
		ln->state = live ? G_GRANTING : G_HELD;
		uc->leases++;
		s->st.held++;
		s->st.grants++;
		if (r->li.token > s->max_token)
			s->max_token = r->li.token;
		return ln;
	case LREC_RENEW:
		ln = lname_find(s, r->li.name);
		if (!ln || ln->state == G_FREE || ln->info.token != r->li.token)
			return NULL;
		ln->info.ttl_ns = r->li.ttl_ns;
		ln->info.expires_mono_ns = r->li.expires_mono_ns;
		return ln;
	default: {
		struct lease_completed c;

		ln = lname_find(s, r->li.name);
		if (!ln || ln->state == G_FREE || ln->info.token != r->li.token)
			return NULL;
		c = (struct lease_completed){ .lease = ln->info, .how = r->how, .by = r->by,
					      .ended_ns = r->ended_ns };
		memcpy(c.by.proc.boot, ln->info.holder.boot, PROC_BOOT_LEN);
		completed_push(s, &c);
		uc = uid_get(s, ln->info.uid);
		if (uc && uc->leases)
			uc->leases--;
		s->st.held--;
		s->st.releases[r->how]++;
		ln->state = G_FREE;
		return ln;
	}
	}
}

/* Append r and apply it (L10 on failure). */
static int log_apply(struct lease_svc *s, const struct lrec *r, struct lname **out)
{
	uint8_t buf[REC_MAX];
	size_t len = rec_encode(r, buf);
	struct lname *ln;
	uint64_t lsn;
	int err;

	if (s->failed)
		return -EIO;
	err = s->be.append(s->be.arg, buf, len, &lsn);
	if (err == -ENOSPC || err == -EDQUOT)
		return err; /* a full disk: nothing reached the log (wal.h W8) */
	if (err) {
		s->failed = err;
		return err;
	}
	s->last_lsn = lsn;
	ln = apply(s, r, true, &err);
	if (err) {
		/* The log has it, memory does not: only a restart reconciles. */
		s->failed = err;
		return err;
	}
	if (out)
		*out = ln;
	return 0;
}

/* L2: a durable reservation covers next_token. Blocks on the backend's sync
 * with the lock held, once per token_block grants. */
static int reserve(struct lease_svc *s)
{
	struct lrec r = { .kind = LREC_RESERVE };
	int err;

	if (s->next_token < s->reserved_upto)
		return 0;
	r.upto = s->next_token + s->opts.token_block;
	err = log_apply(s, &r, NULL);
	if (err)
		return err;
	err = s->be.sync(s->be.arg, s->last_lsn);
	if (err) {
		s->failed = err;
		/* Not ours until durable: a grant must not use it. */
		s->reserved_upto = s->next_token;
	}
	return err;
}

/* Grant ln to holder (lock held; ln is G_FREE). by: who asked, in the
 * event (NULL: from the queue, at a release). */
static int grant_locked(struct lease_svc *s, struct lname *ln, uint32_t uid,
			const struct proc_id *holder, uint64_t ttl_ns, const struct lease_who *by,
			struct evbuf *eb, uint64_t *token)
{
	struct lrec r = { .kind = LREC_GRANT };
	uint64_t now = txd_os->now_monotonic_ns();
	int err = reserve(s);

	if (err)
		return err;
	strcpy(r.li.name, ln->info.name);
	r.li.token = s->next_token;
	r.li.uid = uid;
	r.li.holder = *holder;
	r.li.ttl_ns = ttl_ns;
	r.li.expires_mono_ns = ttl_ns ? now + ttl_ns : 0;
	r.li.acquired_ns = txd_os->now_realtime_ns();
	err = log_apply(s, &r, NULL);
	if (err)
		return err;
	s->next_token++;
	if (s->hooks.watch)
		s->hooks.watch(s->hooks.arg, holder); /* a dead holder is reported at once */
	struct lease_event ev = { .kind = LEV_GRANT, .lease = ln->info };
	if (by)
		ev.by = *by;
	ev_push(eb, &ev);
	if (token)
		*token = r.li.token;
	return 0;
}

/* Release ln's current grant (lock held; ln not G_FREE), then promote the
 * head of its queue (L5). */
static int release_locked(struct lease_svc *s, struct lname *ln, enum lease_end how,
			  const struct lease_who *by, struct evbuf *eb)
{
	/* Start-up releases grants that were never watched in this run. */
	bool watched = how != LEASE_END_DEAD && how != LEASE_END_REBOOT;
	struct lrec r = { .kind = LREC_RELEASE, .how = (uint8_t)how, .by = *by };
	struct lease_info old = ln->info;
	struct waiter *w;
	struct uidcnt *uc;
	int err;

	strcpy(r.li.name, ln->info.name);
	r.li.token = ln->info.token;
	r.ended_ns = txd_os->now_realtime_ns();
	err = log_apply(s, &r, NULL);
	if (err)
		return err;
	if (watched && s->hooks.unwatch)
		s->hooks.unwatch(s->hooks.arg, &old.holder);
	ev_push(eb, &(struct lease_event){ .kind = LEV_RELEASE, .lease = old, .how = how,
					   .by = *by });
	w = ln->qhead;
	if (!w)
		return 0;
	ln->qhead = w->next;
	if (!ln->qhead)
		ln->qtail = NULL;
	s->st.waiters--;
	uc = uid_get(s, w->uid);
	if (uc && uc->waiters)
		uc->waiters--;
	err = grant_locked(s, ln, w->uid, &w->proc, w->ttl_ns, NULL, eb, NULL);
	/* The grant watches the holder now; the wait's own watch ends. */
	if (s->hooks.unwatch)
		s->hooks.unwatch(s->hooks.arg, &w->proc);
	free(w);
	return err;
}

/* After the locked step: sync what was logged (L3), mark grants HELD, fire
 * events. Called without the lock. */
static int finish(struct lease_svc *s, struct evbuf *eb, int err)
{
	uint64_t lsn;
	bool need = false; /* L11: the holder's own releases alone are not synced */

	for (size_t i = 0; i < eb->n; i++)
		need |= eb->ev[i].kind == LEV_RELEASE ? eb->ev[i].how != LEASE_END_RELEASE
						     : eb->ev[i].kind == LEV_GRANT ||
							       eb->ev[i].kind == LEV_RENEW;
	pthread_mutex_lock(&s->lock);
	lsn = s->last_lsn;
	pthread_mutex_unlock(&s->lock);
	if (need && s->opts.sync_grants) {
		int r = s->be.sync(s->be.arg, lsn);

		if (r) {
			pthread_mutex_lock(&s->lock);
			s->failed = r;
			pthread_mutex_unlock(&s->lock);
			if (!err)
				err = r;
		}
	}
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < eb->n; i++) {
		struct lname *ln;

		if (eb->ev[i].kind != LEV_GRANT)
			continue;
		ln = lname_find(s, eb->ev[i].lease.name);
		if (ln && ln->state == G_GRANTING && ln->info.token == eb->ev[i].lease.token)
			ln->state = G_HELD;
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < eb->n && s->hooks.event; i++)
		s->hooks.event(s->hooks.event_arg, &eb->ev[i]);
	free(eb->ev);
	return err;
}

/* ---- open / close ------------------------------------------------------------ */

int lease_open(const struct lease_opts *opts, const struct lease_backend *be,
	       const struct lease_hooks *hooks, struct lease_svc **out)
{
	struct lease_svc *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->opts = *opts;
	if (!s->opts.token_block)
		s->opts.token_block = 1024;
	if (!s->opts.max_leases)
		s->opts.max_leases = 1024;
	if (!s->opts.max_waiters)
		s->opts.max_waiters = 1024;
	if (!s->opts.completed_keep)
		s->opts.completed_keep = 16384;
	if (!s->opts.completed_retain_ns)
		s->opts.completed_retain_ns = 3600ull * 1000000000ull;
	s->be = *be;
	if (hooks)
		s->hooks = *hooks;
	s->next_token = 1;
	s->reserved_upto = 1;
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

void lease_close(struct lease_svc *s)
{
	for (size_t b = 0; b < NBUCKET; b++) {
		struct lname *ln = s->bucket[b];

		while (ln) {
			struct lname *next = ln->next;

			while (ln->qhead) {
				struct waiter *w = ln->qhead;

				ln->qhead = w->next;
				free(w);
			}
			free(ln);
			ln = next;
		}
	}
	pthread_mutex_destroy(&s->lock);
	free(s->uids);
	free(s->ring);
	free(s);
}

/* ---- recovery ----------------------------------------------------------------- */

int lease_replay(struct lease_svc *s, const void *payload, size_t len)
{
	struct lrec r;
	int err = rec_decode(payload, len, &r);

	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	apply(s, &r, false, &err);
	pthread_mutex_unlock(&s->lock);
	return err;
}

struct snapbuf {
	uint8_t *b;
	size_t n, cap;
	uint32_t count;
};

static int snap_add(struct snapbuf *sb, const struct lrec *r)
{
	uint8_t rec[REC_MAX];
	size_t len = rec_encode(r, rec);

	if (sb->n + 4 + len > sb->cap) {
		size_t nc = (sb->cap + 4 + len) * 2;
		uint8_t *nb = realloc(sb->b, nc);

		if (!nb)
			return -ENOMEM;
		sb->b = nb;
		sb->cap = nc;
	}
	put32(sb->b + sb->n, (uint32_t)len);
	memcpy(sb->b + sb->n + 4, rec, len);
	sb->n += 4 + len;
	sb->count++;
	return 0;
}

int lease_snapshot_encode(struct lease_svc *s, void **buf, size_t *len)
{
	struct snapbuf sb = { 0 };
	struct lrec r = { .kind = LREC_RESERVE };
	uint8_t hdr[12] = { 0 };
	int err;

	sb.cap = 4096;
	sb.b = malloc(sb.cap);
	if (!sb.b)
		return -ENOMEM;
	sb.n = sizeof(hdr); /* filled in at the end */
	pthread_mutex_lock(&s->lock);
	r.upto = s->reserved_upto > s->next_token ? s->reserved_upto : s->next_token;
	err = snap_add(&sb, &r);
	for (size_t i = 0; !err && i < s->ring_n; i++) {
		const struct lease_completed *c =
			&s->ring[(s->ring_start + i) % s->ring_cap];

		r = (struct lrec){ .kind = LREC_GRANT, .li = c->lease };
		err = snap_add(&sb, &r);
		r = (struct lrec){ .kind = LREC_RELEASE, .li = c->lease, .how = (uint8_t)c->how,
				   .by = c->by, .ended_ns = c->ended_ns };
		if (!err)
			err = snap_add(&sb, &r);
	}
	for (size_t b = 0; !err && b < NBUCKET; b++)
		for (struct lname *ln = s->bucket[b]; !err && ln; ln = ln->next)
			if (ln->state != G_FREE)
				err = snap_add(&sb, &(struct lrec){ .kind = LREC_GRANT,
								     .li = ln->info });
	pthread_mutex_unlock(&s->lock);
	if (err) {
		free(sb.b);
		return err;
	}
	put32(hdr, SNAP_MAGIC);
	put32(hdr + 4, 1);
	put32(hdr + 8, sb.count);
	memcpy(sb.b, hdr, 12);
	*buf = sb.b;
	*len = sb.n;
	return 0;
}

int lease_snapshot_decode(struct lease_svc *s, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	size_t off = 12;
	uint32_t count;
	int err = 0;

	if (len < 12 || get32(b) != SNAP_MAGIC)
		return -TXD_ECORRUPT;
	if (get32(b + 4) != 1)
		return -TXD_EFORMAT;
	count = get32(b + 8);
	s->loading = true;
	for (uint32_t i = 0; !err && i < count; i++) {
		uint32_t rl;

		if (len - off < 4) {
			err = -TXD_ECORRUPT;
			break;
		}
		rl = get32(b + off);
		if (len - off - 4 < rl) {
			err = -TXD_ECORRUPT;
			break;
		}
		err = lease_replay(s, b + off + 4, rl);
		off += 4 + rl;
	}
	s->loading = false;
	if (!err && off != len)
		err = -TXD_ECORRUPT;
	return err;
}

int lease_start(struct lease_svc *s)
{
	const struct lease_who server = { .uid = 0 };
	struct evbuf eb = { 0 };
	int err = 0;

	pthread_mutex_lock(&s->lock);
	/* L2: whatever the lost tail of the last block handed out stays used. */
	s->next_token = s->max_token + 1 > s->reserved_upto ? s->max_token + 1 : s->reserved_upto;
	for (size_t b = 0; !err && b < NBUCKET; b++) {
		struct lname *ln = s->bucket[b];

		while (!err && ln) {
			struct lname *next = ln->next;

			if (ln->state == G_FREE) {
				ln = next;
				continue;
			}
			if (memcmp(ln->info.holder.boot, s->opts.boot, PROC_BOOT_LEN))
				err = release_locked(s, ln, LEASE_END_REBOOT, &server, &eb);
			else if (s->hooks.alive && !s->hooks.alive(s->hooks.arg, &ln->info.holder))
				err = release_locked(s, ln, LEASE_END_DEAD, &server, &eb);
			else if (s->hooks.watch)
				s->hooks.watch(s->hooks.arg, &ln->info.holder);
			if (!err)
				lname_put(s, ln);
			ln = next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	err = finish(s, &eb, err);
	if (!err) {
		int n = lease_tick(s, NULL);

		err = n < 0 ? n : 0;
	}
	return err;
}

/* ---- operations ----------------------------------------------------------------- */

static bool may_release(struct lease_svc *s, const struct lease_info *li,
			const struct lease_who *by)
{
	return by->uid == 0 || by->uid == li->uid || proc_same(&by->proc, &li->holder) ||
	       (s->hooks.descends && s->hooks.descends(s->hooks.arg, &by->proc, &li->holder));
}

int lease_grant(struct lease_svc *s, const char *name, const struct lease_who *by,
		const struct proc_id *holder, uint64_t ttl_ns, uint64_t *token)
{
	struct evbuf eb = { 0 };
	struct lname *ln;
	struct uidcnt *uc;
	uint64_t tok = 0;
	int err = lease_name_check(name);

	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	if (s->failed) {
		err = -EIO;
		goto out_unlock;
	}
	ln = lname_find(s, name);
	if (ln && (ln->state != G_FREE || ln->qhead)) {
		err = -EEXIST;
		goto out_unlock;
	}
	uc = uid_get(s, by->uid);
	if (!uc) {
		err = -ENOMEM;
		goto out_unlock;
	}
	if (by->uid != 0 && uc->leases >= s->opts.max_leases) {
		err = -EDQUOT;
		goto out_unlock;
	}
	ln = lname_get(s, name);
	if (!ln) {
		err = -ENOMEM;
		goto out_unlock;
	}
	err = grant_locked(s, ln, by->uid, holder, ttl_ns, by, &eb, &tok);
	if (err)
		lname_put(s, ln);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	err = finish(s, &eb, err);
	if (!err)
		*token = tok;
	return err;
}

int lease_renew(struct lease_svc *s, const char *name, uint64_t token, const struct lease_who *by,
		uint64_t ttl_ns)
{
	struct evbuf eb = { 0 };
	struct lrec r = { .kind = LREC_RENEW };
	struct lname *ln;
	int err = lease_name_check(name);

	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	ln = lname_find(s, name);
	if (!ln || ln->state != G_HELD || (token && ln->info.token != token)) {
		err = -ENOENT;
		goto out_unlock;
	}
	if (!may_release(s, &ln->info, by)) {
		err = -EPERM;
		goto out_unlock;
	}
	r.li = ln->info;
	if (ttl_ns != LEASE_TTL_KEEP)
		r.li.ttl_ns = ttl_ns;
	r.li.expires_mono_ns = r.li.ttl_ns ? txd_os->now_monotonic_ns() + r.li.ttl_ns : 0;
	r.renewed_ns = txd_os->now_realtime_ns();
	err = log_apply(s, &r, NULL);
	if (!err)
		ev_push(&eb, &(struct lease_event){ .kind = LEV_RENEW, .lease = ln->info, .by = *by,
						    .time_ns = r.renewed_ns });
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return finish(s, &eb, err);
}

static int end_grant(struct lease_svc *s, const char *name, uint64_t token,
		     const struct lease_who *by, enum lease_end how)
{
	struct evbuf eb = { 0 };
	struct lname *ln;
	int err = lease_name_check(name);

	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	ln = lname_find(s, name);
	if (!ln || ln->state == G_FREE || (token && ln->info.token != token)) {
		err = -ENOENT;
		goto out_unlock;
	}
	if (how == LEASE_END_BREAK ? by->uid != 0 && by->uid != ln->info.uid
				   : !may_release(s, &ln->info, by)) {
		err = -EPERM;
		goto out_unlock;
	}
	err = release_locked(s, ln, how, by, &eb);
	lname_put(s, ln);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return finish(s, &eb, err);
}

int lease_release(struct lease_svc *s, const char *name, uint64_t token,
		  const struct lease_who *by)
{
	return end_grant(s, name, token, by, LEASE_END_RELEASE);
}

int lease_break(struct lease_svc *s, const char *name, uint64_t token,
		const struct lease_who *by)
{
	return end_grant(s, name, token, by, LEASE_END_BREAK);
}

/* A waiter as the lease it waits for (LEV_WAIT, LEV_WAIT_END). */
static struct lease_info wait_info(const struct lname *ln, const struct waiter *w)
{
	struct lease_info li = { .holder = w->proc, .uid = w->uid, .ttl_ns = w->ttl_ns };

	memcpy(li.name, ln->info.name, sizeof(li.name)); /* info.name always (struct lname) */
	return li;
}

/* Remove waiter id from ln's queue; true if it was there. With eb, a
 * LEV_WAIT_END report of how it left. */
static bool unqueue(struct lease_svc *s, struct lname *ln, const struct proc_id *id,
		    struct evbuf *eb, enum lease_end how)
{
	for (struct waiter **pp = &ln->qhead; *pp; pp = &(*pp)->next) {
		struct waiter *w = *pp;
		struct uidcnt *uc;

		if (!proc_same(&w->proc, id))
			continue;
		*pp = w->next;
		if (ln->qtail == w) {
			ln->qtail = NULL;
			for (struct waiter *t = ln->qhead; t; t = t->next)
				ln->qtail = t;
		}
		uc = uid_get(s, w->uid);
		if (uc && uc->waiters)
			uc->waiters--;
		if (eb)
			ev_push(eb, &(struct lease_event){ .kind = LEV_WAIT_END, .how = how,
							   .lease = wait_info(ln, w) });
		s->st.waiters--;
		if (s->hooks.unwatch)
			s->hooks.unwatch(s->hooks.arg, id);
		free(w);
		return true;
	}
	return false;
}

int lease_owner_died(struct lease_svc *s, const struct proc_id *id)
{
	struct lease_who who = { .proc = *id };
	struct evbuf eb = { 0 };
	int err = 0, n = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t b = 0; !err && b < NBUCKET; b++) {
		struct lname *ln = s->bucket[b];

		while (!err && ln) {
			struct lname *next = ln->next;

			unqueue(s, ln, id, &eb, LEASE_END_DEATH);
			if (ln->state != G_FREE && proc_same(&ln->info.holder, id)) {
				who.uid = ln->info.uid;
				err = release_locked(s, ln, LEASE_END_DEATH, &who, &eb);
				n += !err;
			}
			if (!err)
				lname_put(s, ln);
			ln = next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	err = finish(s, &eb, err);
	return err ? err : n;
}

int lease_tick(struct lease_svc *s, uint64_t *next)
{
	struct evbuf eb = { 0 };
	uint64_t now = txd_os->now_monotonic_ns(), earliest = 0;
	int err = 0, n = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t b = 0; !err && b < NBUCKET; b++) {
		struct lname *ln = s->bucket[b];

		while (!err && ln) {
			struct lname *next_ln = ln->next;
			uint64_t exp = ln->info.expires_mono_ns;

			if (ln->state != G_FREE && exp && exp <= now) {
				struct lease_who who = { .proc = ln->info.holder,
							 .uid = ln->info.uid };

				err = release_locked(s, ln, LEASE_END_EXPIRY, &who, &eb);
				n += !err;
				if (!err)
					lname_put(s, ln);
			}
			ln = next_ln;
		}
	}
	/* Grants promoted above may carry TTLs of their own. */
	for (size_t b = 0; !err && b < NBUCKET; b++)
		for (struct lname *ln = s->bucket[b]; ln; ln = ln->next)
			if (ln->state != G_FREE && ln->info.expires_mono_ns &&
			    (!earliest || ln->info.expires_mono_ns < earliest))
				earliest = ln->info.expires_mono_ns;
	pthread_mutex_unlock(&s->lock);
	if (next)
		*next = earliest;
	err = finish(s, &eb, err);
	return err ? err : n;
}

/* ---- waiting and deadlock detection (L5, L6) --------------------------------- */

struct dfs {
	const struct proc_id *target;
	struct lease_cycle *cyc;
	struct proc_id seen[VISIT_MAX];
	unsigned nseen;
};

static bool seen(struct dfs *d, const struct proc_id *p)
{
	for (unsigned i = 0; i < d->nseen; i++)
		if (proc_same(&d->seen[i], p))
			return true;
	if (d->nseen < VISIT_MAX)
		d->seen[d->nseen++] = *p;
	return false;
}

static bool reaches(struct lease_svc *s, struct dfs *d, const struct proc_id *from,
		    unsigned depth);

/* Does one of the processes ln's waiter at `upto` waits for (ln's holder,
 * the waiters ahead of it; upto NULL = all waiters) lead to d->target? */
static bool through(struct lease_svc *s, struct dfs *d, struct lname *ln,
		    const struct waiter *upto, unsigned depth)
{
	if (depth >= LEASE_CYCLE_MAX)
		return false;
	strcpy(d->cyc->step[depth].name, ln->info.name);
	if (ln->state != G_FREE) {
		if (proc_same(&ln->info.holder, d->target)) {
			d->cyc->n = depth + 1;
			return true;
		}
		if (!seen(d, &ln->info.holder) && reaches(s, d, &ln->info.holder, depth + 1))
			return true;
	}
	for (const struct waiter *w = ln->qhead; w && w != upto; w = w->next) {
		/* A deeper search may have reused this step's name. */
		strcpy(d->cyc->step[depth].name, ln->info.name);
		if (proc_same(&w->proc, d->target)) {
			d->cyc->n = depth + 1;
			return true;
		}
		if (!seen(d, &w->proc) && reaches(s, d, &w->proc, depth + 1))
			return true;
	}
	return false;
}

static bool reaches(struct lease_svc *s, struct dfs *d, const struct proc_id *from,
		    unsigned depth)
{
	if (depth >= LEASE_CYCLE_MAX)
		return false;
	for (size_t b = 0; b < NBUCKET; b++) {
		for (struct lname *ln = s->bucket[b]; ln; ln = ln->next) {
			for (const struct waiter *w = ln->qhead; w; w = w->next) {
				if (!proc_same(&w->proc, from))
					continue;
				d->cyc->step[depth].proc = *from;
				if (through(s, d, ln, w, depth))
					return true;
			}
		}
	}
	return false;
}

int lease_wait(struct lease_svc *s, const char *name, const struct lease_who *by,
	       const struct proc_id *waiter, uint64_t ttl_ns, struct lease_cycle *cycle,
	       uint64_t *token)
{
	struct lease_cycle local;
	struct evbuf eb = { 0 };
	struct dfs *d = NULL;
	struct lname *ln;
	struct uidcnt *uc;
	struct waiter *w;
	int err = lease_name_check(name);

	*token = 0;
	if (err)
		return err;
	if (!cycle)
		cycle = &local;
	pthread_mutex_lock(&s->lock);
	if (s->failed) {
		err = -EIO;
		goto out_unlock;
	}
	ln = lname_get(s, name);
	uc = uid_get(s, by->uid);
	if (!ln || !uc) {
		err = -ENOMEM;
		goto out_put;
	}
	if (ln->state == G_FREE && !ln->qhead) {
		if (by->uid != 0 && uc->leases >= s->opts.max_leases)
			err = -EDQUOT;
		else
			err = grant_locked(s, ln, by->uid, waiter, ttl_ns, by, &eb, token);
		goto out_put;
	}
	if (ln->state != G_FREE && proc_same(&ln->info.holder, waiter)) {
		err = -EEXIST;
		goto out_put;
	}
	for (w = ln->qhead; w; w = w->next) {
		if (proc_same(&w->proc, waiter)) {
			err = -EEXIST;
			goto out_put;
		}
	}
	if (by->uid != 0 && uc->waiters >= s->opts.max_waiters) {
		err = -EDQUOT;
		goto out_put;
	}
	d = calloc(1, sizeof(*d));
	w = calloc(1, sizeof(*w));
	if (!d || !w) {
		free(w);
		err = -ENOMEM;
		goto out_put;
	}
	d->target = waiter;
	d->cyc = cycle;
	memset(cycle, 0, sizeof(*cycle));
	cycle->step[0].proc = *waiter;
	seen(d, waiter);
	if (through(s, d, ln, NULL, 0)) {
		free(w);
		err = -EDEADLK;
		/* filed under the refused waiter, with who asked (by) */
		struct lease_event dl = { .kind = LEV_DEADLOCK, .by = *by, .cycle = cycle };
		strcpy(dl.lease.name, ln->info.name);
		dl.lease.holder = *waiter;
		dl.lease.uid = by->uid;
		ev_push(&eb, &dl);
		goto out_put;
	}
	memset(cycle, 0, sizeof(*cycle));
	w->proc = *waiter;
	w->uid = by->uid;
	w->ttl_ns = ttl_ns;
	if (ln->qtail)
		ln->qtail->next = w;
	else
		ln->qhead = w;
	ln->qtail = w;
	uc->waiters++;
	s->st.waiters++;
	if (s->hooks.watch)
		s->hooks.watch(s->hooks.arg, waiter);
	ev_push(&eb, &(struct lease_event){ .kind = LEV_WAIT, .lease = wait_info(ln, w), .by = *by });
out_put:
	free(d);
	if (ln)
		lname_put(s, ln);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	err = finish(s, &eb, err);
	if (err)
		*token = 0;
	return err;
}

int lease_wait_cancel(struct lease_svc *s, const char *name, const struct lease_who *by,
		      const struct proc_id *waiter)
{
	struct evbuf eb = { 0 };
	struct lname *ln;
	struct waiter *w;
	int err = lease_name_check(name);

	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	ln = lname_find(s, name);
	for (w = ln ? ln->qhead : NULL; w; w = w->next)
		if (proc_same(&w->proc, waiter))
			break;
	if (!w)
		err = -ENOENT;
	else if (by->uid != 0 && by->uid != w->uid && !proc_same(&by->proc, waiter))
		err = -EPERM;
	else {
		unqueue(s, ln, waiter, &eb, LEASE_END_RELEASE);
		lname_put(s, ln);
	}
	pthread_mutex_unlock(&s->lock);
	return finish(s, &eb, err);
}

/* ---- reading ------------------------------------------------------------------- */

int lease_get(struct lease_svc *s, const char *name, struct lease_info *out)
{
	struct lname *ln;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	ln = lname_find(s, name);
	if (!ln || ln->state != G_HELD)
		err = -ENOENT;
	else
		*out = ln->info;
	pthread_mutex_unlock(&s->lock);
	return err;
}

int lease_list(struct lease_svc *s, int (*fn)(void *arg, const struct lease_info *li),
	       void *arg)
{
	int err = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t b = 0; !err && b < NBUCKET; b++)
		for (struct lname *ln = s->bucket[b]; !err && ln; ln = ln->next)
			if (ln->state == G_HELD)
				err = fn(arg, &ln->info);
	pthread_mutex_unlock(&s->lock);
	return err;
}

int lease_list_completed(struct lease_svc *s,
			 int (*fn)(void *arg, const struct lease_completed *c), void *arg)
{
	int err = 0;

	uint64_t now = txd_os->now_realtime_ns();

	pthread_mutex_lock(&s->lock);
	/* L4: past the retention they go, oldest first (ended in ring order) */
	while (s->ring_n && s->ring[s->ring_start].ended_ns + s->opts.completed_retain_ns < now) {
		s->ring_start = (s->ring_start + 1) % s->ring_cap;
		s->ring_n--;
	}
	for (size_t i = 0; !err && i < s->ring_n; i++)
		err = fn(arg, &s->ring[(s->ring_start + i) % s->ring_cap]);
	pthread_mutex_unlock(&s->lock);
	return err;
}

int lease_list_waiters(struct lease_svc *s, const char *name,
		       int (*fn)(void *arg, const struct proc_id *waiter), void *arg)
{
	struct lname *ln;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	ln = lname_find(s, name);
	for (struct waiter *w = ln ? ln->qhead : NULL; !err && w; w = w->next)
		err = fn(arg, &w->proc);
	pthread_mutex_unlock(&s->lock);
	return err;
}

int lease_standing(struct lease_svc *s, const char *name, uint32_t pid, struct lease_info *out)
{
	struct lname *ln;
	int err = -ENOENT;

	pthread_mutex_lock(&s->lock);
	ln = lname_find(s, name);
	if (ln && ln->state != G_FREE && ln->info.holder.pid == pid) {
		err = ln->state == G_HELD ? 0 : 1;
		if (!err)
			*out = ln->info;
	}
	for (struct waiter *w = ln && err < 0 ? ln->qhead : NULL; w; w = w->next)
		if (w->proc.pid == pid)
			err = 1;
	pthread_mutex_unlock(&s->lock);
	return err;
}

void lease_get_stats(struct lease_svc *s, struct lease_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	st->next_token = s->next_token;
	st->reserved_upto = s->reserved_upto;
	pthread_mutex_unlock(&s->lock);
}
