/*
 * svc.c — the services host (svc.h).
 */
#include "svc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "journal.h"
#include "lease_proc.h"
#include "lease_wal.h"
#include "os.h"
#include "rec.h"
#include "txdir.h"

struct svc {
	struct proc *proc;
	struct lease_proc *lp;
	struct lease_svc *lease;
	struct lease_backend wal_be; /* the WAL adapter, wrapped for V3 */
	pthread_mutex_t up_lock;     /* upgrade state (leaf) */
	int (*upgrade)(void *arg);
	void *upgrade_arg;
	bool upgraded;
	pthread_mutex_t lock;        /* stop, kicked (leaf) */
	pthread_cond_t cv;
	bool stop, running, kicked;
	uint64_t next;               /* the earliest expiry at start-up */
	pthread_t worker;
	struct evlog *events;
	_Atomic uint64_t wait_ns_sum, wait_count;
	void (*_Atomic listener)(void *arg, const struct lease_event *ev);
	void *_Atomic listener_arg;
	struct journal *journal;     /* V6: journals and dead processes */
	pthread_mutex_t cq_lock;     /* V7: the cleanup queue (a leaf) */
	struct cq_ent *cq;
	struct replayed *rp;         /* V5: grants and releases replayed */
	size_t nrp, caprp;
};

/* ---- V5 across a power cut: events derived from the replayed records ------
 * An event is written once its action is durable, but the event log itself
 * is fsynced only at checkpoints: a power cut can keep the record and lose
 * its event. Replay (the records after the checkpoint) notes every grant
 * and release; before anything new happens, those whose event the log lacks
 * are emitted again, with the record's own time and "derived": true. */
struct replayed {
	uint8_t kind;               /* LREC_GRANT, LREC_RENEW, LREC_RELEASE */
	bool grant;
	uint8_t how;
	uint32_t pid, uid, by_pid, by_uid;
	uint64_t token, start, time_ns, ttl_ns, by_start;
	char name[LEASE_NAME_MAX + 1];
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A replayed GRANT, RENEW or RELEASE (lease.h "Record encoding";
 * lease_replay has checked its lengths). A RENEW is noted only with its
 * renewed_ns (its event's time and identity) and while its grant is held
 * (L7 applied it: the holder comes from there). */
static void note_replayed(struct svc *s, const uint8_t *p, size_t len)
{
	if (len < 8 || (p[1] != LREC_GRANT && p[1] != LREC_RELEASE && p[1] != LREC_RENEW))
		return;
	size_t fixed = p[1] == LREC_GRANT ? 72 : p[1] == LREC_RENEW ? 40 : 48;
	size_t nlen = (size_t)(p[2] | p[3] << 8);
	if (len != fixed + nlen || nlen > LEASE_NAME_MAX)
		return;
	struct lease_info li = {0};
	if (p[1] == LREC_RENEW) {
		char name[LEASE_NAME_MAX + 1];
		memcpy(name, p + fixed, nlen);
		name[nlen] = 0;
		if (!le64(p + 32) || lease_get(s->lease, name, &li) || li.token != le64(p + 8))
			return;
	}
	if (s->nrp == s->caprp) {
		size_t cap = s->caprp ? 2 * s->caprp : 64;
		struct replayed *n = realloc(s->rp, cap * sizeof(*n));
		if (!n)
			return; /* derived events are best effort: the WAL stands */
		s->rp = n;
		s->caprp = cap;
	}
	struct replayed *r = &s->rp[s->nrp++];
	memset(r, 0, sizeof(*r));
	r->kind = p[1];
	r->grant = p[1] == LREC_GRANT;
	r->token = le64(p + 8);
	memcpy(r->name, p + fixed, nlen);
	if (r->kind == LREC_RENEW) {
		r->uid = li.uid;
		r->pid = li.holder.pid;
		r->start = li.holder.start;
		r->ttl_ns = le64(p + 16);
		r->time_ns = le64(p + 32);
	} else if (r->grant) {
		r->uid = le32(p + 16);
		r->pid = le32(p + 20);
		r->start = le64(p + 24);
		r->ttl_ns = le64(p + 48);
		r->time_ns = le64(p + 64);
	} else {
		r->how = p[16];
		r->by_uid = le32(p + 20);
		r->by_pid = le32(p + 24);
		r->by_start = le64(p + 32);
		r->time_ns = le64(p + 40);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool has(const uint64_t *v, size_t n, uint64_t t)
{
	return n && bsearch(&t, v, n, sizeof(*v), cmp_u64);
}

/* The tokens of the grant and of the release events in the log, and the
 * renewed_ns of its renew events (a renew's identity: the token has many). */
struct logged {
	uint64_t *g, *r, *rn;
	size_t ng, nr, nrn;
};

static int logged_tokens(struct svc *s, struct logged *lg)
{
	char *txt = NULL;
	size_t len = 0;
	int err = ev_render(s->events, 0, NULL, NULL, 0, &txt, &len);
	uint64_t **g = &lg->g, **r = &lg->r;
	size_t *ng = &lg->ng, *nr = &lg->nr;
	*g = calloc(s->nrp + 1, sizeof(**g));
	*r = calloc(s->nrp + 1, sizeof(**r));
	lg->rn = calloc(s->nrp + 1, sizeof(*lg->rn));
	*ng = *nr = lg->nrn = 0;
	if (err || !*g || !*r || !lg->rn) {
		free(txt);
		return err ? err : -ENOMEM; /* the caller frees *g and *r */
	}
	for (char *line = txt, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (!strstr(line, "\"lease_"))
			continue;
		cJSON *o = cJSON_Parse(line);
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "token");
		const cJSON *rn = cJSON_GetObjectItemCaseSensitive(o, "renewed_ns");
		if (cJSON_IsString(t) && cJSON_IsNumber(k) && cJSON_IsNumber(rn) &&
		    strcmp(t->valuestring, "lease_renew") == 0) {
			/* doubles: the same u64 rounds the same way; renews of one
			 * token are a sync apart, never 256 ns */
			for (size_t i = 0; i < s->nrp && lg->nrn < s->nrp; i++)
				if (s->rp[i].kind == LREC_RENEW &&
				    (double)s->rp[i].token == k->valuedouble &&
				    (double)s->rp[i].time_ns == rn->valuedouble) {
					lg->rn[lg->nrn++] = s->rp[i].time_ns;
					break;
				}
		} else if (cJSON_IsString(t) && cJSON_IsNumber(k)) {
			bool grant = strcmp(t->valuestring, "lease_grant") == 0;
			bool rel = !grant && cJSON_GetObjectItemCaseSensitive(o, "how");
			uint64_t tok = (uint64_t)k->valuedouble;
			/* only tokens replay can ask about: the arrays stay small */
			for (size_t i = 0; i < s->nrp; i++)
				if (s->rp[i].kind != LREC_RENEW && s->rp[i].token == tok &&
				    s->rp[i].grant == grant && (grant || rel)) {
					if (grant)
						(*g)[(*ng)++] = tok;
					else
						(*r)[(*nr)++] = tok;
					break;
				}
		}
		cJSON_Delete(o);
		if (*ng >= s->nrp || *nr >= s->nrp)
			break;
	}
	free(txt);
	qsort(*g, *ng, sizeof(**g), cmp_u64);
	qsort(*r, *nr, sizeof(**r), cmp_u64);
	qsort(lg->rn, lg->nrn, sizeof(*lg->rn), cmp_u64);
	return 0;
}

static void log_event(struct svc *s, const struct lease_event *ev, uint64_t time_ns,
		      bool derived);

static void emit_replayed(struct svc *s, const struct replayed *p)
{
	struct lease_event ev = {.kind = p->kind == LREC_RENEW ? LEV_RENEW
					 : p->grant ? LEV_GRANT : LEV_RELEASE,
				 .how = (enum lease_end)p->how,
				 .time_ns = p->kind == LREC_RENEW ? p->time_ns : 0};
	snprintf(ev.lease.name, sizeof(ev.lease.name), "%s", p->name);
	ev.lease.token = p->token;
	ev.lease.holder.pid = p->pid;
	ev.lease.holder.start = p->start;
	ev.lease.uid = p->uid;
	ev.lease.ttl_ns = p->ttl_ns;
	ev.by.proc.pid = p->by_pid;
	ev.by.proc.start = p->by_start;
	ev.by.uid = p->by_uid;
	log_event(s, &ev, p->time_ns, true);
}

static void derive_dead(struct svc *s);

static void derive_events(struct svc *s)
{
	struct logged lg = {0};
	if (s->nrp && s->events && !logged_tokens(s, &lg)) {
		for (size_t i = 0; i < s->nrp; i++) {
			const struct replayed *p = &s->rp[i];
			bool logged = p->kind == LREC_RENEW ? has(lg.rn, lg.nrn, p->time_ns)
				      : p->grant ? has(lg.g, lg.ng, p->token)
				      : has(lg.r, lg.nr, p->token);
			if (!logged)
				emit_replayed(s, p);
		}
	}
	free(lg.g);
	free(lg.r);
	free(lg.rn);
	if (s->nrp && s->events)
		derive_dead(s);
	free(s->rp);
	s->rp = NULL;
	s->nrp = s->caprp = 0;
}

void svc_set_listener(struct svc *s, void (*fn)(void *arg, const struct lease_event *ev),
		      void *arg)
{
	s->listener_arg = arg;
	s->listener = fn;
}

/* ---- events (V5) ------------------------------------------------------------ */
static void add_holder(cJSON *o, const struct lease_info *li)
{
	cJSON_AddStringToObject(o, "name", li->name);
	ev_add_u64(o, "token", li->token);
	ev_add_u64(o, "pid", li->holder.pid);
	ev_add_u64(o, "start", li->holder.start);
	ev_add_u64(o, "uid", li->uid);
	if (li->ttl_ns)
		cJSON_AddNumberToObject(o, "ttl_s", (double)li->ttl_ns / 1e9);
}

static void log_event(struct svc *s, const struct lease_event *ev, uint64_t time_ns,
		      bool derived)
{
	cJSON *o = cJSON_CreateObject();
	const char *type = "lease_deadlock";

	if (!o)
		return;
	switch (ev->kind) {
	case LEV_GRANT:
		type = "lease_grant";
		add_holder(o, &ev->lease);
		break;
	case LEV_RENEW:
		type = "lease_renew";
		add_holder(o, &ev->lease);
		if (ev->time_ns)
			ev_add_u64(o, "renewed_ns", ev->time_ns); /* V5: its identity */
		break;
	case LEV_RELEASE:
		type = ev->how == LEASE_END_BREAK ? "lease_break"
		       : ev->how == LEASE_END_DEATH || ev->how == LEASE_END_DEAD ? "lease_cleanup"
		       : "lease_release";
		add_holder(o, &ev->lease);
		cJSON_AddStringToObject(o, "how", lease_end_name(ev->how));
		ev_add_u64(o, "by_pid", ev->by.proc.pid);
		ev_add_u64(o, "by_uid", ev->by.uid);
		ev_add_u64(o, "by_start", ev->by.proc.start); /* its journal (journal.h) */
		break;
	case LEV_DEADLOCK: {
		ev_add_u64(o, "pid", ev->by.proc.pid);
		ev_add_u64(o, "start", ev->by.proc.start);
		ev_add_u64(o, "uid", ev->by.uid);
		cJSON *cyc = cJSON_AddArrayToObject(o, "cycle");
		for (unsigned k = 0; ev->cycle && cyc && k < ev->cycle->n; k++) {
			cJSON *st = cJSON_CreateObject();
			if (!st)
				break;
			ev_add_u64(st, "pid", ev->cycle->step[k].proc.pid);
			cJSON_AddStringToObject(st, "waits_for", ev->cycle->step[k].name);
			cJSON_AddItemToArray(cyc, st);
		}
		break;
	}
	}
	if (derived)
		cJSON_AddBoolToObject(o, "derived", true);
	ev_emit(s->events, time_ns, type, o);
}

static void dead_note_release(const struct lease_event *ev);

static void on_event(void *arg, const struct lease_event *ev)
{
	struct svc *s = arg;
	uint64_t when = ev->kind == LEV_RENEW && ev->time_ns ? ev->time_ns
			: txd_os->now_realtime_ns();
	log_event(s, ev, when, false);
	if (ev->kind == LEV_RELEASE)
		dead_note_release(ev);
	void (*fn)(void *, const struct lease_event *) = s->listener;
	if (fn)
		fn(s->listener_arg, ev);
}

void svc_wait_observe(struct svc *s, uint64_t ns)
{
	s->wait_ns_sum += ns;
	s->wait_count++;
}

void svc_stats(struct svc *s, void (*put)(void *arg, const char *text), void *arg)
{
	struct lease_stats st;
	char line[256];

	lease_get_stats(s->lease, &st);
	put(arg, "# HELP txdir_leases_held Leases currently held.\n"
		 "# TYPE txdir_leases_held gauge\n");
	snprintf(line, sizeof(line), "txdir_leases_held %" PRIu64 "\n", st.held);
	put(arg, line);
	put(arg, "# HELP txdir_lease_waiters Processes queued for a lease.\n"
		 "# TYPE txdir_lease_waiters gauge\n");
	snprintf(line, sizeof(line), "txdir_lease_waiters %" PRIu64 "\n", st.waiters);
	put(arg, line);
	put(arg, "# HELP txdir_lease_grants_total Leases granted since start.\n"
		 "# TYPE txdir_lease_grants_total counter\n");
	snprintf(line, sizeof(line), "txdir_lease_grants_total %" PRIu64 "\n", st.grants);
	put(arg, line);
	put(arg, "# HELP txdir_lease_releases_total Lease releases by reason.\n"
		 "# TYPE txdir_lease_releases_total counter\n");
	for (int how = LEASE_END_RELEASE; how < LEASE_END_MAX; how++) {
		snprintf(line, sizeof(line), "txdir_lease_releases_total{reason=\"%s\"} %" PRIu64 "\n",
			 lease_end_name((enum lease_end)how), st.releases[how]);
		put(arg, line);
	}
	put(arg, "# HELP txdir_lease_wait_seconds Time spent in released and granted waits.\n"
		 "# TYPE txdir_lease_wait_seconds summary\n");
	snprintf(line, sizeof(line),
		 "txdir_lease_wait_seconds_sum %.9f\ntxdir_lease_wait_seconds_count %" PRIu64 "\n",
		 (double)s->wait_ns_sum / 1e9, (uint64_t)s->wait_count);
	put(arg, line);
}

/* ---- V6: dead processes ----------------------------------------------------
 * What a death cleaned is gathered on the thread that cleans it: the
 * watcher's (svc_death) or svc_start's (lease L8). The lease service reports
 * each release through on_event on that same thread, so a thread-local
 * collector sees exactly the releases of this cleanup; waits withdrawn are
 * listed before the cleanup (they end without an event). Then one
 * "dead_process" event per process is written: the record that
 * recovery/dead_processes/PID shows (journal.h). */
struct dead_group {
	struct proc_id id;
	uint32_t uid;
	bool have_uid;
	enum lease_end how;
	uint64_t when_ns;           /* derived (V6): the release's time; 0: now */
	cJSON *leases, *waits;
};

struct dead_collect {
	struct dead_group *g;
	size_t n, cap;
};

static _Thread_local struct dead_collect *tl_dead;

static struct dead_group *dead_group_of(struct dead_collect *c, const struct proc_id *id)
{
	for (size_t k = 0; k < c->n; k++)
		if (proc_same(&c->g[k].id, id))
			return &c->g[k];
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		struct dead_group *g = realloc(c->g, cap * sizeof(*g));
		if (!g)
			return NULL;
		c->g = g;
		c->cap = cap;
	}
	struct dead_group *g = &c->g[c->n];
	memset(g, 0, sizeof(*g));
	g->id = *id;
	g->how = LEASE_END_DEATH;
	if (!(g->leases = cJSON_CreateArray()) || !(g->waits = cJSON_CreateArray())) {
		cJSON_Delete(g->leases);
		return NULL;
	}
	c->n++;
	return g;
}

static void dead_note_release(const struct lease_event *ev)
{
	struct dead_collect *c = tl_dead;
	if (!c || (ev->how != LEASE_END_DEATH && ev->how != LEASE_END_DEAD &&
		   ev->how != LEASE_END_REBOOT))
		return;
	struct dead_group *g = dead_group_of(c, &ev->lease.holder);
	cJSON *l = g ? cJSON_CreateObject() : NULL;
	if (!l)
		return;
	g->how = ev->how;
	g->uid = ev->lease.uid;
	g->have_uid = true;
	cJSON_AddStringToObject(l, "name", ev->lease.name);
	ev_add_u64(l, "token", ev->lease.token);
	cJSON_AddItemToArray(g->leases, l);
}

/* Write the dead_process events of c and free it. */
static void dead_emit(struct svc *s, struct dead_collect *c, bool while_down)
{
	for (size_t k = 0; k < c->n; k++) {
		struct dead_group *g = &c->g[k];
		cJSON *o = cJSON_CreateObject();
		uint64_t now = g->when_ns ? g->when_ns : txd_os->now_realtime_ns();
		if (o && (cJSON_GetArraySize(g->leases) || cJSON_GetArraySize(g->waits))) {
			char when[40];
			ev_rfc3339(now, when, sizeof(when));
			ev_add_u64(o, "pid", g->id.pid);
			ev_add_u64(o, "start", g->id.start);
			if (g->have_uid)
				ev_add_u64(o, "uid", g->uid);
			cJSON_AddStringToObject(o, "reason", lease_end_name(g->how));
			cJSON_AddStringToObject(o, "detected", when);
			cJSON_AddBoolToObject(o, "while_server_down",
					      while_down || g->how != LEASE_END_DEATH);
			cJSON_AddItemToObject(o, "leases_released", g->leases);
			cJSON_AddItemToObject(o, "waits_withdrawn", g->waits);
			/* transactions are not held by a process: the reaper (txn.h
			 * T5) aborts abandoned ones on its own, with its event */
			cJSON_AddArrayToObject(o, "transactions_aborted");
			if (g->when_ns)
				cJSON_AddBoolToObject(o, "derived", true);
			g->leases = g->waits = NULL;
			ev_emit(s->events, now, "dead_process", o);
		} else {
			cJSON_Delete(o);
		}
		cJSON_Delete(g->leases);
		cJSON_Delete(g->waits);
	}
	free(c->g);
	c->g = NULL;
	c->n = c->cap = 0;
}

/* V6 across a power cut: a death's release record replayed from the WAL
 * whose holder has no dead_process event in the log (lost with the event
 * log's unsynced tail) gets one again, "derived": true, with the release's
 * time and the leases the records name (waits are not logged: none). The
 * holder is the completed record's (the GRANT may be in the checkpoint). */
struct derive_scan {
	struct svc *s;
	struct dead_collect *c;
};

static bool ends_by_death(enum lease_end how)
{
	return how == LEASE_END_DEATH || how == LEASE_END_DEAD || how == LEASE_END_REBOOT;
}

static int derive_one(void *arg, const struct lease_completed *cp)
{
	struct derive_scan *d = arg;
	struct journal_proc p;
	char name[48];

	if (!ends_by_death(cp->how))
		return 0;
	for (size_t i = 0; i < d->s->nrp; i++) {
		const struct replayed *r = &d->s->rp[i];
		if (r->grant || r->token != cp->lease.token)
			continue;
		snprintf(name, sizeof(name), "%" PRIu32 ".%" PRIu64, cp->lease.holder.pid,
			 cp->lease.holder.start);
		if (journal_find(d->s->journal, name, 0, true, &p) == 0)
			return 0; /* its record is in the log */
		struct dead_group *g = dead_group_of(d->c, &cp->lease.holder);
		cJSON *l = g ? cJSON_CreateObject() : NULL;
		if (!l)
			return 0;
		g->how = cp->how;
		g->uid = cp->lease.uid;
		g->have_uid = true;
		if (r->time_ns > g->when_ns)
			g->when_ns = r->time_ns;
		cJSON_AddStringToObject(l, "name", cp->lease.name);
		ev_add_u64(l, "token", cp->lease.token);
		cJSON_AddItemToArray(g->leases, l);
		return 0;
	}
	return 0;
}

static void derive_dead(struct svc *s)
{
	struct dead_collect c = {0};
	struct derive_scan d = {s, &c};
	(void)lease_list_completed(s->lease, derive_one, &d);
	dead_emit(s, &c, false);
}

struct held_names {
	char (*name)[LEASE_NAME_MAX + 1];
	size_t n, cap;
};

static int add_name(void *arg, const struct lease_info *li)
{
	struct held_names *h = arg;
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 16;
		char (*v)[LEASE_NAME_MAX + 1] = realloc(h->name, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->name = v;
		h->cap = cap;
	}
	memcpy(h->name[h->n++], li->name, sizeof(li->name));
	return 0;
}

struct wait_scan {
	struct dead_group *g;
	const char *name;
};

static int note_wait(void *arg, const struct proc_id *waiter)
{
	struct wait_scan *w = arg;
	if (proc_same(waiter, &w->g->id))
		cJSON_AddItemToArray(w->g->waits, cJSON_CreateString(w->name));
	return 0;
}

/* ---- V7: the cleanup queue ------------------------------------------------- */
struct cq_ent {
	struct cq_ent *next;
	struct svc_cleanup c;
};

struct held_by_ctx {
	const struct proc_id *id;
	cJSON *names;
};

static int add_held_by(void *arg, const struct lease_info *li)
{
	struct held_by_ctx *h = arg;
	if (proc_same(&li->holder, h->id))
		cJSON_AddItemToArray(h->names, cJSON_CreateString(li->name));
	return 0;
}

/* Enter id (detected now) with the leases it holds; NULL out of memory
 * (the cleanup goes on unseen). */
static struct cq_ent *cq_enter(struct svc *s, const struct proc_id *id)
{
	struct cq_ent *e = calloc(1, sizeof(*e));
	struct held_by_ctx h = {id, cJSON_CreateArray()};
	if (!e || !h.names) {
		free(e);
		cJSON_Delete(h.names);
		return NULL;
	}
	(void)lease_list(s->lease, add_held_by, &h);
	e->c.id = *id;
	e->c.detected_ns = txd_os->now_realtime_ns();
	e->c.leases_json = cJSON_PrintUnformatted(h.names);
	cJSON_Delete(h.names);
	if (!e->c.leases_json) {
		free(e);
		return NULL;
	}
	pthread_mutex_lock(&s->cq_lock);
	e->next = s->cq;
	s->cq = e;
	pthread_mutex_unlock(&s->cq_lock);
	return e;
}

static void cq_leave(struct svc *s, struct cq_ent *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&s->cq_lock);
	for (struct cq_ent **p = &s->cq; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			break;
		}
	pthread_mutex_unlock(&s->cq_lock);
	free(e->c.leases_json);
	free(e);
}

int svc_cleanup_list(struct svc *s, int (*fn)(void *arg, const struct svc_cleanup *c), void *arg)
{
	int err = 0;
	pthread_mutex_lock(&s->cq_lock);
	for (struct cq_ent *e = s->cq; e && !err; e = e->next)
		err = fn(arg, &e->c);
	pthread_mutex_unlock(&s->cq_lock);
	return err;
}

/* The death watcher's report (lease_proc_set_death): clean, and record. */
static void svc_death(void *arg, const struct proc_id *id)
{
	struct svc *s = arg;
	struct dead_collect c = {0};
	struct dead_group *g = dead_group_of(&c, id);
	struct held_names h = {0};
	struct cq_ent *q = cq_enter(s, id); /* V7: from detection ... */

	/* A waiter waits for a held name (a free one is granted at once). */
	(void)lease_list(s->lease, add_name, &h);
	for (size_t k = 0; g && k < h.n; k++) {
		struct wait_scan w = {g, h.name[k]};
		(void)lease_list_waiters(s->lease, h.name[k], note_wait, &w);
	}
	free(h.name);
	tl_dead = &c;
	int n = lease_owner_died(s->lease, id);
	tl_dead = NULL;
	cq_leave(s, q); /* ... until its releases are durable (or failed: L10) */
	if (n < 0 && g) {
		/* failed service (L10): nothing was cleaned, the restart does it */
		cJSON_Delete(g->waits);
		g->waits = cJSON_CreateArray();
	}
	dead_emit(s, &c, false);
}

static void on_logged(void *arg, uint64_t time_ns, const cJSON *ev)
{
	struct svc *s = arg;
	journal_note(s->journal, time_ns, ev);
}

/* journal.h J4: the index forgets with the log. */
static void on_trimmed(void *arg, uint64_t oldest_ns)
{
	struct svc *s = arg;
	journal_prune(s->journal, oldest_ns);
}

/* V6 after a restart: the index from the event log as it is now. */
static void journal_load(struct svc *s)
{
	char *txt = NULL;
	size_t len = 0;
	if (!s->events)
		return;
	if (!ev_render(s->events, 0, NULL, NULL, 0, &txt, &len))
		journal_note_text(s->journal, txt, len);
	free(txt);
	struct ev_observer obs = {.logged = on_logged, .trimmed = on_trimmed, .arg = s};
	ev_set_observer(s->events, &obs);
}

struct journal *svc_journal(struct svc *s)
{
	return s->journal;
}

/* V3: the format says "services" before any service record is appended. */
static int be_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct svc *s = arg;
	int err = 0;

	pthread_mutex_lock(&s->up_lock);
	if (s->upgrade && !s->upgraded) {
		err = s->upgrade(s->upgrade_arg);
		s->upgraded = !err;
	}
	pthread_mutex_unlock(&s->up_lock);
	return err ? err : s->wal_be.append(s->wal_be.arg, rec, len, lsn);
}

static int be_sync(void *arg, uint64_t lsn)
{
	struct svc *s = arg;

	return s->wal_be.sync(s->wal_be.arg, lsn);
}

int svc_open(struct wal *w, const struct svc_opts *opts, struct svc **out)
{
	struct svc *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->up_lock, NULL);
	pthread_mutex_init(&s->cq_lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->wal_be = lease_wal_backend(w);
	s->upgrade = opts->upgrade;
	s->upgrade_arg = opts->upgrade_arg;
	s->events = opts->events;
	if ((err = proc_open(opts->proc_root, &s->proc)))
		goto out_free;
	if ((err = journal_open(&s->journal)))
		goto out_proc;
	if ((err = lease_proc_open(s->proc, &s->lp)))
		goto out_journal;
	lease_proc_set_death(s->lp, svc_death, s);
	struct lease_opts lo = {.sync_grants = opts->sync_grants,
				.max_leases = opts->max_leases,
				.max_waiters = opts->max_waiters};
	proc_boot(s->proc, lo.boot);
	struct lease_backend be = {.append = be_append, .sync = be_sync, .arg = s};
	struct lease_hooks hooks = lease_proc_hooks(s->lp, on_event, s);
	if ((err = lease_open(&lo, &be, &hooks, &s->lease)))
		goto out_lp;
	*out = s;
	return 0;
out_lp:
	lease_proc_close(s->lp);
out_journal:
	journal_close(s->journal);
out_proc:
	proc_close(s->proc);
out_free:
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->cq_lock);
	pthread_mutex_destroy(&s->up_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return err;
}

int svc_replay(struct svc *s, uint16_t type, const void *payload, size_t len)
{
	if (type != WAL_REC_LEASE)
		return -TXD_EFORMAT;
	int err = lease_replay(s->lease, payload, len);
	if (!err)
		note_replayed(s, payload, len);
	return err;
}

int svc_ckpt_save(struct svc *s, void **buf, size_t *len)
{
	return lease_snapshot_encode(s->lease, buf, len);
}

int svc_ckpt_load(struct svc *s, const void *buf, size_t len)
{
	return lease_snapshot_decode(s->lease, buf, len);
}

/* V4: a tick when kicked (start-up, a TTL set), then at the earliest
 * expiry, waking at least every second while one is pending. With no TTL
 * pending the thread sleeps and reads no clock (tests move txd_os's clock
 * while a store is open). */
static void *worker_main(void *arg)
{
	struct svc *s = arg;

	pthread_mutex_lock(&s->lock);
	uint64_t next = s->next; /* svc_start's tick */
	while (!s->stop) {
		uint64_t now = s->kicked || next ? txd_os->now_monotonic_ns() : 0;
		if (s->kicked || (next && next <= now)) {
			s->kicked = false;
			pthread_mutex_unlock(&s->lock);
			(void)lease_tick(s->lease, &next); /* may block on the WAL's sync */
			pthread_mutex_lock(&s->lock);
			continue;
		}
		if (!next) {
			pthread_cond_wait(&s->cv, &s->lock);
			continue;
		}
		uint64_t wait = next - now < 1000000000ull ? next - now : 1000000000ull;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(wait / 1000000000ull);
		until.tv_nsec += (long)(wait % 1000000000ull);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->lock, &until);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

void svc_kick(struct svc *s)
{
	pthread_mutex_lock(&s->lock);
	s->kicked = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

int svc_start(struct svc *s)
{
	lease_proc_attach(s->lp, s->lease);
	journal_load(s); /* V6: before anything new is logged */
	derive_events(s); /* V5: before anything new is logged */
	struct dead_collect c = {0};
	tl_dead = &c;
	int err = lease_start(s->lease);
	tl_dead = NULL;
	dead_emit(s, &c, true); /* V6: what start-up cleaned (L8) */
	if (err)
		return err;
	/* the first tick here, on the opening thread: the worker reads no
	 * clock unless a TTL is pending */
	if ((err = lease_tick(s->lease, &s->next)) < 0)
		return err;
	err = -pthread_create(&s->worker, NULL, worker_main, s);
	s->running = !err;
	return err;
}

void svc_close(struct svc *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->lock);
	if (s->running)
		pthread_join(s->worker, NULL);
	lease_proc_close(s->lp); /* no death delivered after this */
	if (s->events)
		ev_set_observer(s->events, NULL);
	journal_close(s->journal);
	lease_close(s->lease);
	proc_close(s->proc);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->cq_lock);
	pthread_mutex_destroy(&s->up_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct lease_svc *svc_lease(struct svc *s)
{
	return s->lease;
}

struct proc *svc_proc(struct svc *s)
{
	return s->proc;
}
