/*
 * svc.c — the services host (svc.h).
 */
#include "svc.h"
#include "json.h"

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
#include "state_wal.h"
#include "txdir.h"
#include "vote_wal.h"

struct svc {
	struct proc *proc;
	struct lease_proc *lp;
	struct lease_svc *lease;
	struct lease_backend wal_be; /* the WAL adapter, wrapped for V3 */
	struct vote_svc *vote;
	struct vote_backend vote_be; /* the vote WAL adapter, wrapped for V3 */
	struct state_svc *state;
	struct state_backend state_be; /* the WAL adapter, wrapped for V3 */
	void (*_Atomic state_listener)(void *arg, const struct state_event *ev);
	void *_Atomic state_listener_arg;
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
	pthread_mutex_t cq_lock;     /* V10: the cleanup queue (a leaf) */
	struct cq_ent *cq;
	struct replayed *rp;         /* V5: grants and releases replayed */
	size_t nrp, caprp;
	void (*_Atomic decided)(void *arg, const char *proposal, enum vote_outcome o,
				const char *reason);
	void *_Atomic decided_arg;
	void (*_Atomic vote_listener)(void *arg, const struct vote_event *ev);
	void *_Atomic vote_listener_arg;
	void (*vote_listener_release)(void *arg);
	struct vreplayed *vrp;       /* V7: decisions replayed */
	size_t nvrp, capvrp;
	struct state_event *srp;     /* V9: state replaces replayed */
	size_t nsrp, capsrp;
};

/* ---- V7: vote events --------------------------------------------------------
 * A decision replayed from the WAL (vote.h "Record encoding"; vote_replay
 * has checked its lengths), for the derived events of svc_start. */
struct vreplayed {
	uint64_t id, time_ns;
	uint8_t outcome;
	char name[VOTE_NAME_MAX + 1];
	char reason[VOTE_REASON_MAX + 64];
};

static void note_vote_replayed(struct svc *s, const uint8_t *p, size_t len)
{
	if (len < 32 || p[1] != VREC_DECIDE)
		return;
	size_t nl = (size_t)(p[2] | p[3] << 8), rl = (size_t)(p[18] | p[19] << 8);
	if (len != 32 + nl + rl || nl > VOTE_NAME_MAX)
		return;
	if (s->nvrp == s->capvrp) {
		size_t cap = s->capvrp ? 2 * s->capvrp : 16;
		struct vreplayed *n = realloc(s->vrp, cap * sizeof(*n));
		if (!n)
			return; /* derived events are best effort: the WAL stands */
		s->vrp = n;
		s->capvrp = cap;
	}
	struct vreplayed *r = &s->vrp[s->nvrp++];
	memset(r, 0, sizeof(*r));
	for (int i = 7; i >= 0; i--) {
		r->id = r->id << 8 | p[8 + i];
		r->time_ns = r->time_ns << 8 | p[24 + i];
	}
	r->outcome = p[16];
	memcpy(r->name, p + 32, nl);
	if (rl >= sizeof(r->reason))
		rl = sizeof(r->reason) - 1;
	memcpy(r->reason, p + 32 + nl, rl);
}

static void vote_log_event(struct svc *s, const struct vote_event *ev, bool derived)
{
	cJSON *o = cJSON_CreateObject();
	const char *type = ev->kind == VEV_OPENED ? "proposal_opened"
			   : ev->kind == VEV_VOTE ? "vote" : "decision";

	if (!o)
		return;
	cJSON_AddStringToObject(o, "proposal", ev->proposal);
	ev_add_u64(o, "id", ev->id);
	ev_add_u64(o, "uid", ev->uid);
	switch (ev->kind) {
	case VEV_OPENED: {
		cJSON *a = cJSON_AddArrayToObject(o, "participants");
		char *list = strdup(ev->participants ? ev->participants : "");
		for (char *save = NULL, *t = list ? strtok_r(list, ",", &save) : NULL; a && t;
		     t = strtok_r(NULL, ",", &save))
			cJSON_AddItemToArray(a, cJSON_CreateString(t));
		free(list);
		cJSON_AddNumberToObject(o, "timeout_s", (double)ev->timeout_ns / 1e9);
		break;
	}
	case VEV_VOTE:
		cJSON_AddStringToObject(o, "participant", ev->participant);
		cJSON_AddStringToObject(o, "vote", ev->yes ? "yes" : "no");
		if (ev->external)
			cJSON_AddBoolToObject(o, "prepared", true);
		break;
	default:
		cJSON_AddStringToObject(o, "outcome", vote_outcome_name(ev->outcome));
		if (ev->outcome == VOTE_ABORTED)
			cJSON_AddStringToObject(o, "reason", ev->reason ? ev->reason : "");
		if (!derived)
			cJSON_AddNumberToObject(o, "duration_s", (double)ev->duration_ns / 1e9);
		break;
	}
	if (ev->by.pid) { /* its journal (journal.h) */
		ev_add_u64(o, "by_pid", ev->by.pid);
		ev_add_u64(o, "by_start", ev->by.start);
	}
	if (derived)
		cJSON_AddBoolToObject(o, "derived", true);
	ev_emit(s->events, ev->time_ns, type, o);
}

/* vote.h V14, under the vote lock: lease_get only reads (core.h 2b). */
static int vote_fence(void *arg, const char *lease, uint64_t token)
{
	struct svc *s = arg;
	struct lease_info li;

	return lease_get(s->lease, lease, &li) || li.token != token ? -ESTALE : 0;
}

static void on_vote_event(void *arg, const struct vote_event *ev)
{
	struct svc *s = arg;

	if (s->events && ev->kind != VEV_REMOVED)
		vote_log_event(s, ev, false);
	if (ev->kind == VEV_OPENED)
		svc_kick(s); /* the tick learns the new deadline */
	if (ev->kind == VEV_DECIDED && s->state)
		state_decided(s->state, ev->proposal, ev->outcome); /* state.h S8 */
	void (*d)(void *, const char *, enum vote_outcome, const char *) = s->decided;
	if (ev->kind == VEV_DECIDED && d)
		d(s->decided_arg, ev->proposal, ev->outcome, ev->reason ? ev->reason : "");
	void (*fn)(void *, const struct vote_event *) = s->vote_listener;
	if (fn)
		fn(s->vote_listener_arg, ev);
}

/* V7 across a power cut: replayed decisions whose event the log lacks. */
static void derive_vote_events(struct svc *s)
{
	char *txt = NULL;
	size_t len = 0;

	if (!s->nvrp || !s->events || ev_render(s->events, 0, NULL, NULL, 0, &txt, &len))
		goto out;
	bool *seen = calloc(s->nvrp, sizeof(*seen));
	for (char *line = txt, *nl; seen && line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (!strstr(line, "\"decision\""))
			continue;
		cJSON *o = json_parse_str(line);
		const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "proposal");
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
		for (size_t i = 0; cJSON_IsString(pr) && cJSON_IsNumber(id) && i < s->nvrp; i++)
			if (s->vrp[i].id == (uint64_t)id->valuedouble &&
			    !strcmp(s->vrp[i].name, pr->valuestring))
				seen[i] = true;
		cJSON_Delete(o);
	}
	for (size_t i = 0; seen && i < s->nvrp; i++) {
		if (seen[i])
			continue;
		struct vote_event ev = {.kind = VEV_DECIDED, .proposal = s->vrp[i].name,
					.id = s->vrp[i].id, .outcome = s->vrp[i].outcome,
					.reason = s->vrp[i].reason, .time_ns = s->vrp[i].time_ns};
		vote_log_event(s, &ev, true);
	}
	free(seen);
out:
	free(txt);
	free(s->vrp);
	s->vrp = NULL;
	s->nvrp = s->capvrp = 0;
}

void svc_set_decision_listener(struct svc *s,
	void (*fn)(void *arg, const char *proposal, enum vote_outcome o, const char *reason),
	void *arg)
{
	s->decided_arg = arg;
	s->decided = fn;
}

void svc_set_vote_listener(struct svc *s, void (*fn)(void *arg, const struct vote_event *ev),
			   void *arg, void (*release)(void *arg))
{
	s->vote_listener_release = release;
	s->vote_listener_arg = arg;
	s->vote_listener = fn;
}

void *svc_vote_listener_arg(struct svc *s)
{
	return s->vote_listener_arg;
}

struct vote_svc *svc_vote(struct svc *s)
{
	return s->vote;
}

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
		cJSON *o = json_parse_str(line);
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
		if (ev->by.proc.pid) { /* who asked: its journal too (journal.h) */
			ev_add_u64(o, "by_pid", ev->by.proc.pid);
			ev_add_u64(o, "by_uid", ev->by.uid);
			ev_add_u64(o, "by_start", ev->by.proc.start);
		}
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
	case LEV_WAIT: /* the waiter's journal has it too (pid, start) */
		type = "lease_wait";
		cJSON_AddStringToObject(o, "name", ev->lease.name);
		ev_add_u64(o, "pid", ev->lease.holder.pid);
		ev_add_u64(o, "start", ev->lease.holder.start);
		ev_add_u64(o, "uid", ev->lease.uid);
		break;
	case LEV_WAIT_END:
		type = "lease_wait_end";
		cJSON_AddStringToObject(o, "name", ev->lease.name);
		ev_add_u64(o, "pid", ev->lease.holder.pid);
		ev_add_u64(o, "start", ev->lease.holder.start);
		ev_add_u64(o, "uid", ev->lease.uid);
		cJSON_AddStringToObject(o, "how", ev->how == LEASE_END_RELEASE ? "withdrawn"
									   : lease_end_name(ev->how));
		break;
	case LEV_DEADLOCK: { /* the refused waiter's journal, and who asked */
		cJSON_AddStringToObject(o, "name", ev->lease.name);
		ev_add_u64(o, "pid", ev->lease.holder.pid);
		ev_add_u64(o, "start", ev->lease.holder.start);
		ev_add_u64(o, "uid", ev->lease.uid);
		ev_add_u64(o, "by_pid", ev->by.proc.pid);
		ev_add_u64(o, "by_uid", ev->by.uid);
		ev_add_u64(o, "by_start", ev->by.proc.start);
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
	put(arg, "# HELP txdir_state_version The global state document's version.\n"
		 "# TYPE txdir_state_version gauge\n");
	snprintf(line, sizeof(line), "txdir_state_version %" PRIu64 "\n", state_version(s->state));
	put(arg, line);
	put(arg, "# HELP txdir_lease_wait_seconds Time spent in released and granted waits.\n"
		 "# TYPE txdir_lease_wait_seconds summary\n");
	snprintf(line, sizeof(line),
		 "txdir_lease_wait_seconds_sum %.9f\ntxdir_lease_wait_seconds_count %" PRIu64 "\n",
		 (double)s->wait_ns_sum / 1e9, (uint64_t)s->wait_count);
	put(arg, line);

	struct vote_stats vs;
	vote_get_stats(s->vote, &vs);
	put(arg, "# HELP txdir_proposals_total Proposals decided since start, by outcome.\n"
		 "# TYPE txdir_proposals_total counter\n");
	snprintf(line, sizeof(line),
		 "txdir_proposals_total{outcome=\"committed\"} %" PRIu64 "\n"
		 "txdir_proposals_total{outcome=\"aborted\"} %" PRIu64 "\n",
		 vs.committed, vs.aborted);
	put(arg, line);
	put(arg, "# HELP txdir_proposals_open Proposals open (votes being cast).\n"
		 "# TYPE txdir_proposals_open gauge\n");
	snprintf(line, sizeof(line), "txdir_proposals_open %" PRIu64 "\n", vs.open);
	put(arg, line);
	put(arg, "# HELP txdir_vote_duration_seconds Time from opening a proposal to its decision.\n"
		 "# TYPE txdir_vote_duration_seconds summary\n");
	snprintf(line, sizeof(line),
		 "txdir_vote_duration_seconds_sum %.9f\ntxdir_vote_duration_seconds_count %" PRIu64 "\n",
		 (double)vs.duration_ns_sum / 1e9, vs.duration_count);
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

/* ---- V10: the cleanup queue ------------------------------------------------- */
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
	e->c.leases_json = json_print(h.names, false);
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
	struct cq_ent *q = cq_enter(s, id); /* V10: from detection ... */

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
static int upgrade_once(struct svc *s)
{
	int err = 0;

	pthread_mutex_lock(&s->up_lock);
	if (s->upgrade && !s->upgraded) {
		err = s->upgrade(s->upgrade_arg);
		s->upgraded = !err;
	}
	pthread_mutex_unlock(&s->up_lock);
	return err;
}

int svc_upgrade(struct svc *s)
{
	return upgrade_once(s);
}

static int be_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct svc *s = arg;
	int err = upgrade_once(s);

	return err ? err : s->wal_be.append(s->wal_be.arg, rec, len, lsn);
}

static int st_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct svc *s = arg;
	int err = upgrade_once(s);

	return err ? err : s->state_be.append(s->state_be.arg, rec, len, lsn);
}

static int st_sync(void *arg, uint64_t lsn)
{
	struct svc *s = arg;

	return s->state_be.sync(s->state_be.arg, lsn);
}

static void log_state_event(struct svc *s, const struct state_event *ev, bool derived)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return;
	ev_add_u64(o, "version", ev->version);
	ev_add_u64(o, "pid", ev->by.pid);
	ev_add_u64(o, "uid", ev->by.uid);
	ev_add_u64(o, "bytes", ev->bytes);
	if (derived)
		cJSON_AddBoolToObject(o, "derived", true);
	ev_emit(s->events, ev->time_ns, "state_replace", o);
}

/* V9: a replace became visible: its event, then the control tree's waits. */
static void on_state_event(void *arg, const struct state_event *ev)
{
	struct svc *s = arg;

	log_state_event(s, ev, false);
	void (*fn)(void *, const struct state_event *) = s->state_listener;
	if (fn)
		fn(s->state_listener_arg, ev);
}

void svc_set_state_listener(struct svc *s, void (*fn)(void *arg, const struct state_event *ev),
			    void *arg)
{
	s->state_listener_arg = arg;
	s->state_listener = fn;
}

struct state_svc *svc_state(struct svc *s)
{
	return s->state;
}

static int be_sync(void *arg, uint64_t lsn)
{
	struct svc *s = arg;

	return s->wal_be.sync(s->wal_be.arg, lsn);
}

static int be_vote_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct svc *s = arg;
	int err = upgrade_once(s);

	return err ? err : s->vote_be.append(s->vote_be.arg, rec, len, lsn);
}

static int be_vote_sync(void *arg, uint64_t lsn)
{
	struct svc *s = arg;

	return s->vote_be.sync(s->vote_be.arg, lsn);
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
	s->vote_be = vote_wal_backend(w);
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
				.completed_retain_ns = opts->vote_retain_ns,
				.max_leases = opts->max_leases,
				.max_waiters = opts->max_waiters};
	proc_boot(s->proc, lo.boot);
	struct lease_backend be = {.append = be_append, .sync = be_sync, .arg = s};
	struct lease_hooks hooks = lease_proc_hooks(s->lp, on_event, s);
	if ((err = lease_open(&lo, &be, &hooks, &s->lease)))
		goto out_lp;
	struct vote_opts vo = {.sync = opts->sync_grants, .max_proposals = opts->max_proposals,
			       .retain_ns = opts->vote_retain_ns};
	struct vote_backend vbe = {.append = be_vote_append, .sync = be_vote_sync, .arg = s};
	struct vote_hooks vh = {.event = on_vote_event, .fence = vote_fence, .arg = s};
	if ((err = vote_open(&vo, &vbe, &vh, &s->vote)))
		goto out_lease;
	s->state_be = state_wal_backend(w);
	struct state_opts so = {.sync = opts->sync_grants, .event = on_state_event,
				.event_arg = s, .vote = s->vote};
	struct state_backend sbe = {.append = st_append, .sync = st_sync, .arg = s};
	if ((err = state_open(&so, &sbe, &s->state)))
		goto out_vote;
	*out = s;
	return 0;
out_vote:
	vote_close(s->vote);
out_lease:
	lease_close(s->lease);
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

/* V9: a replayed REPLACE record (state.h "Record encoding"; state_replay
 * has checked it), for derive_state_events. Best effort: the WAL stands. */
static void note_state(struct svc *s, const uint8_t *p, size_t len)
{
	if (p[1] != SREC_REPLACE)
		return; /* a PARTICIPANTS record */
	if (s->nsrp == s->capsrp) {
		size_t cap = s->capsrp ? 2 * s->capsrp : 16;
		struct state_event *n = realloc(s->srp, cap * sizeof(*n));
		if (!n)
			return;
		s->srp = n;
		s->capsrp = cap;
	}
	s->srp[s->nsrp++] = (struct state_event){ .version = le64(p + 8), .time_ns = le64(p + 16),
						  .by = { .uid = le32(p + 24), .pid = le32(p + 28) },
						  .bytes = len - STATE_REC_HDR };
}

/* V9 across a power cut: a replace replayed after the checkpoint whose
 * event the log lacks is logged again, with its own time, "derived". */
static void derive_state_events(struct svc *s)
{
	char *txt = NULL;
	size_t len = 0;

	if (s->nsrp && s->events && !ev_render(s->events, 0, NULL, NULL, 0, &txt, &len)) {
		for (size_t i = 0; i < s->nsrp; i++) {
			char key[64];
			snprintf(key, sizeof(key), "\"type\":\"state_replace\",\"version\":%" PRIu64 ",",
				 s->srp[i].version);
			if (!strstr(txt, key))
				log_state_event(s, &s->srp[i], true);
		}
	}
	free(txt);
	free(s->srp);
	s->srp = NULL;
	s->nsrp = s->capsrp = 0;
}

int svc_replay(struct svc *s, uint16_t type, const void *payload, size_t len)
{
	int err;

	switch (type) {
	case WAL_REC_LEASE:
		if (!(err = lease_replay(s->lease, payload, len)))
			note_replayed(s, payload, len);
		return err;
	case WAL_REC_VOTE:
		if (!(err = vote_replay(s->vote, payload, len)))
			note_vote_replayed(s, payload, len);
		return err;
	case WAL_REC_STATE:
		if (!(err = state_replay(s->state, payload, len)))
			note_state(s, payload, len);
		return err;
	default:
		return -TXD_EFORMAT;
	}
}

/* ---- V8: the checkpoint section --------------------------------------------------- */
#define CKPT_MAGIC 0x56535854u /* "TXSV" */
#define LEASE_SNAP_MAGIC 0x534c5854u /* "TXLS": a section written before votes */

static uint32_t tag(const char t[4])
{
	return (uint32_t)(uint8_t)t[0] | (uint32_t)(uint8_t)t[1] << 8 |
	       (uint32_t)(uint8_t)t[2] << 16 | (uint32_t)(uint8_t)t[3] << 24;
}

struct subsection {
	const char *tag;
	int (*encode)(struct svc *s, void **buf, size_t *len);
	int (*decode)(struct svc *s, const void *buf, size_t len);
};

static int lease_enc(struct svc *s, void **b, size_t *l) { return lease_snapshot_encode(s->lease, b, l); }
static int lease_dec(struct svc *s, const void *b, size_t l) { return lease_snapshot_decode(s->lease, b, l); }
static int vote_enc(struct svc *s, void **b, size_t *l) { return vote_snapshot_encode(s->vote, b, l); }
static int vote_dec(struct svc *s, const void *b, size_t l) { return vote_snapshot_decode(s->vote, b, l); }

static int state_enc(struct svc *s, void **b, size_t *l) { return state_snapshot_encode(s->state, b, l); }
static int state_dec(struct svc *s, const void *b, size_t l) { return state_snapshot_decode(s->state, b, l); }

static const struct subsection subsections[] = {
	{"LEAS", lease_enc, lease_dec},
	{"VOTE", vote_enc, vote_dec},
	{"STAT", state_enc, state_dec},
};
#define NSUB (sizeof(subsections) / sizeof(subsections[0]))

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int svc_ckpt_save(struct svc *s, void **buf, size_t *len)
{
	pthread_mutex_lock(&s->up_lock);
	bool old_format = s->upgrade && !s->upgraded;
	pthread_mutex_unlock(&s->up_lock);
	if (old_format) /* V3: as format 2 wrote it, for an older binary */
		return lease_snapshot_encode(s->lease, buf, len);
	void *part[NSUB] = {0};
	size_t plen[NSUB] = {0}, total = 12;
	int err = 0;

	for (size_t i = 0; !err && i < NSUB; i++)
		if (!(err = subsections[i].encode(s, &part[i], &plen[i])))
			total += 16 + plen[i];
	uint8_t *b = err ? NULL : malloc(total);
	if (!err && !b)
		err = -ENOMEM;
	if (!err) {
		size_t off = 12;
		put_le(b, CKPT_MAGIC, 4);
		put_le(b + 4, 1, 4);
		put_le(b + 8, NSUB, 4);
		for (size_t i = 0; i < NSUB; i++) {
			put_le(b + off, tag(subsections[i].tag), 4);
			put_le(b + off + 4, 0, 4);
			put_le(b + off + 8, plen[i], 8);
			memcpy(b + off + 16, part[i], plen[i]);
			off += 16 + plen[i];
		}
		*buf = b;
		*len = total;
	}
	for (size_t i = 0; i < NSUB; i++)
		free(part[i]);
	return err;
}

int svc_ckpt_load(struct svc *s, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	if (len >= 4 && le32(b) == LEASE_SNAP_MAGIC)
		return lease_snapshot_decode(s->lease, buf, len);
	if (len < 12 || le32(b) != CKPT_MAGIC)
		return -TXD_ECORRUPT;
	if (le32(b + 4) != 1)
		return -TXD_EFORMAT;
	uint32_t count = le32(b + 8);
	size_t off = 12;
	int err = 0;
	for (uint32_t k = 0; !err && k < count; k++) {
		if (len - off < 16 || le64(b + off + 8) > len - off - 16)
			return -TXD_ECORRUPT;
		uint32_t t = le32(b + off);
		size_t n = (size_t)le64(b + off + 8);
		size_t i = 0;
		while (i < NSUB && tag(subsections[i].tag) != t)
			i++;
		if (i == NSUB)
			return -TXD_EFORMAT; /* V1: refuse nothing silently */
		err = subsections[i].decode(s, b + off + 16, n);
		off += 16 + n;
	}
	return err ? err : off == len ? 0 : -TXD_ECORRUPT;
}

/* The lease and vote ticks; the earliest next deadline of both, 0: none. */
static uint64_t tick_all(struct svc *s)
{
	uint64_t ln = 0, vn = 0;

	(void)lease_tick(s->lease, &ln);
	(void)vote_tick(s->vote, &vn);
	return !ln ? vn : !vn ? ln : ln < vn ? ln : vn;
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
			next = tick_all(s); /* may block on the WAL's sync */
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
	derive_state_events(s); /* V9: likewise */
	struct dead_collect c = {0};
	tl_dead = &c;
	int err = lease_start(s->lease);
	tl_dead = NULL;
	dead_emit(s, &c, true); /* V6: what start-up cleaned (L8) */
	if (err)
		return err;
	derive_vote_events(s); /* V7: before anything new is logged */
	if ((err = state_resume(s->state))) /* state.h S9: before retention */
		return err;
	if ((err = vote_start(s->vote)))
		return err;
	/* the first tick here, on the opening thread: the worker reads no
	 * clock unless a TTL is pending */
	uint64_t ln = 0, vn = 0;
	if ((err = lease_tick(s->lease, &ln)) < 0 || (err = vote_tick(s->vote, &vn)) < 0)
		return err;
	s->next = !ln ? vn : !vn ? ln : ln < vn ? ln : vn;
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
	vote_close(s->vote);
	if (s->vote_listener_release)
		s->vote_listener_release(s->vote_listener_arg);
	lease_close(s->lease);
	free(s->vrp);
	state_close(s->state);
	free(s->srp); /* opened and closed without svc_start */
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
