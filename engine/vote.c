/*
 * vote.c — the vote service (vote.h): decisions under one lock, records
 * through a backend, one apply function shared by live operations, replay
 * and snapshot loading (so replay cannot disagree with what was decided).
 */
#include "vote.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os.h"
#include "txdir.h"

#define NBUCKET	   1024
#define SNAP_MAGIC 0x53565854u /* "TXVS" */
#define REASON_CAP (VOTE_REASON_MAX + 64)

struct ballot {
	char *name;
	int8_t vote; /* -1 none, 0 no, 1 yes */
	bool external;
	uint64_t lsn; /* its VOTE record (0: external / replayed) */
	uint64_t time_ns;
	char *reason; /* external "no" only */
};

struct prop {
	struct prop *next; /* hash chain */
	uint64_t id;
	char name[VOTE_NAME_MAX + 1];
	enum vote_state state;
	uint32_t uid;
	uint64_t created_ns, opened_ns, decided_ns, deadline_ns; /* realtime */
	uint64_t deadline_mono;					 /* OPEN, once started (V7) */
	uint64_t timeout_ns;
	bool param_set;
	uint8_t *payload;
	size_t payload_len;
	struct ballot *b;
	unsigned nb;
	enum vote_outcome outcome;
	char *reason;
	char *fence; /* V14: the lease, or NULL */
	uint64_t fence_token;
	uint64_t lsn; /* its last CREATE/PARAM/FENCE/OPEN record */
	uint64_t decide_lsn;
};

struct uidcnt {
	uint32_t uid, n;
};

/* A decoded record, or one to encode. */
struct vrec {
	uint8_t kind;
	uint64_t id;
	char name[VOTE_NAME_MAX + 1];
	char part[VOTE_NAME_MAX + 1]; /* VOTE */
	uint32_t uid;		      /* CREATE, REMOVE */
	uint64_t time_ns;	      /* CREATE created, OPEN opened, VOTE, DECIDE */
	uint64_t deadline_ns;	      /* OPEN */
	uint64_t timeout_ns;	      /* PARAM */
	uint64_t token;		      /* FENCE */
	const uint8_t *data;	      /* PARAM payload, OPEN list, VOTE/DECIDE reason, FENCE lease */
	size_t dlen;
	uint32_t count;	    /* OPEN */
	bool yes, external; /* VOTE */
	uint8_t outcome;    /* DECIDE */
};

/* Events and decisions gathered under the lock, reported after it. */
struct pev {
	struct vote_event ev;
	char proposal[VOTE_NAME_MAX + 1];
	char part[VOTE_NAME_MAX + 1];
	char *text;  /* reason (DECIDED) or participants (OPENED) */
	uint64_t id; /* DECIDED: the proposal to make visible */
};

struct evbuf {
	struct pev *e;
	size_t n, cap;
	uint64_t lsn; /* sync up to this before reporting */
	bool lazy;    /* V13: the record is appended, not synced */
};

struct vote_svc {
	pthread_mutex_t lock; /* protects everything below */
	struct vote_opts opts;
	struct vote_backend be;
	struct vote_hooks hooks;
	struct prop *bucket[NBUCKET];
	struct uidcnt *uids;
	size_t nuids, capuids;
	uint64_t next_id;
	bool loading; /* snapshot decode */
	bool started;
	int failed; /* V9: sticky */
	struct vote_stats st;
	struct vpin *pins; /* V10: names retention keeps (vote_pin) */
};

struct vpin {
	struct vpin *next;
	uint32_t count;
	char name[];
};

/* ---- small helpers -------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

int vote_name_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > VOTE_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '/' || c <= ' ' || c == 0x7f)
			return -EINVAL;
	}
	return 0;
}

int vote_parse_ballot(const char *buf, size_t len, bool *yes)
{
	if (len && buf[len - 1] == '\n')
		len--;
	if (len == 3 && !memcmp(buf, "yes", 3))
		*yes = true;
	else if (len == 2 && !memcmp(buf, "no", 2))
		*yes = false;
	else
		return -EINVAL;
	return 0;
}

int vote_parse_timeout(const char *buf, size_t len, uint64_t *ns)
{
	uint64_t whole = 0, frac = 0, scale = 1000000000ull;
	size_t i = 0;

	if (len && buf[len - 1] == '\n')
		len--;
	if (!len)
		return -EINVAL;
	for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (whole > VOTE_TIMEOUT_MAX_NS / 1000000000ull)
			return -EINVAL;
		whole = whole * 10 + (uint64_t)(buf[i] - '0');
	}
	if (i == 0)
		return -EINVAL;
	if (i < len && buf[i] == '.') {
		size_t start = ++i;
		for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
			if (scale >= 10) {
				scale /= 10;
				frac += (uint64_t)(buf[i] - '0') * scale;
			}
		}
		if (i == start)
			return -EINVAL;
	}
	if (i != len || whole > VOTE_TIMEOUT_MAX_NS / 1000000000ull)
		return -EINVAL;
	*ns = whole * 1000000000ull + frac;
	if (*ns == 0 || *ns > VOTE_TIMEOUT_MAX_NS)
		return -EINVAL;
	return 0;
}

const char *vote_outcome_name(enum vote_outcome o)
{
	return o == VOTE_COMMITTED ? "committed" : o == VOTE_ABORTED ? "aborted" : "open";
}

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKET;
}

static struct prop *prop_find(struct vote_svc *v, const char *name)
{
	for (struct prop *p = v->bucket[hash(name)]; p; p = p->next)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

static struct uidcnt *uid_get(struct vote_svc *v, uint32_t uid)
{
	for (size_t i = 0; i < v->nuids; i++)
		if (v->uids[i].uid == uid)
			return &v->uids[i];
	if (v->nuids == v->capuids) {
		size_t nc = v->capuids ? 2 * v->capuids : 16;
		struct uidcnt *nu = realloc(v->uids, nc * sizeof(*nu));

		if (!nu)
			return NULL;
		v->uids = nu;
		v->capuids = nc;
	}
	v->uids[v->nuids] = (struct uidcnt){.uid = uid};
	return &v->uids[v->nuids++];
}

static void prop_free(struct prop *p)
{
	for (unsigned i = 0; i < p->nb; i++) {
		free(p->b[i].name);
		free(p->b[i].reason);
	}
	free(p->b);
	free(p->payload);
	free(p->reason);
	free(p->fence);
	free(p);
}

/* Unlinks and frees p (V10, V11, a newer CREATE in replay). */
static void prop_drop(struct vote_svc *v, struct prop *p)
{
	struct uidcnt *uc = uid_get(v, p->uid);

	for (struct prop **pp = &v->bucket[hash(p->name)]; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (uc && uc->n)
		uc->n--;
	if (v->st.proposals)
		v->st.proposals--;
	if ((p->state == VOTE_OPENED || p->state == VOTE_DECIDING) && v->st.open)
		v->st.open--;
	prop_free(p);
}

static struct ballot *ballot_find(struct prop *p, const char *name)
{
	for (unsigned i = 0; i < p->nb; i++)
		if (!strcmp(p->b[i].name, name))
			return &p->b[i];
	return NULL;
}

static struct pev *ev_push(struct evbuf *eb, enum vote_event_kind kind, const struct prop *p)
{
	if (eb->n == eb->cap) {
		size_t nc = eb->cap ? 2 * eb->cap : 4;
		struct pev *ne = realloc(eb->e, nc * sizeof(*ne));

		if (!ne)
			return NULL; /* events are reports; the action stands */
		eb->e = ne;
		eb->cap = nc;
	}
	struct pev *e = &eb->e[eb->n++];
	memset(e, 0, sizeof(*e));
	e->ev.kind = kind;
	e->ev.uid = p->uid;
	e->ev.id = p->id;
	e->id = p->id;
	snprintf(e->proposal, sizeof(e->proposal), "%s", p->name);
	return e;
}

/* ---- records ---------------------------------------------------------------- */

static size_t rec_fixed(uint8_t kind)
{
	static const size_t fixed[] = {0, 32, 32, 40, 32, 32, 24, 32};
	return kind >= VREC_CREATE && kind <= VREC_FENCE ? fixed[kind] : 0;
}

/* malloc'd encoding of r. */
static uint8_t *rec_encode(const struct vrec *r, size_t *len)
{
	size_t nl = strlen(r->name), pl = r->kind == VREC_VOTE ? strlen(r->part) : 0;
	size_t fixed = rec_fixed(r->kind), n = fixed + nl + pl + r->dlen;
	uint8_t *b = calloc(1, n);

	if (!b)
		return NULL;
	b[0] = 1;
	b[1] = r->kind;
	put16(b + 2, (uint16_t)nl);
	put64(b + 8, r->id);
	switch (r->kind) {
	case VREC_CREATE:
		put32(b + 16, r->uid);
		put64(b + 24, r->time_ns);
		break;
	case VREC_PARAM:
		put64(b + 16, r->timeout_ns);
		put32(b + 24, (uint32_t)r->dlen);
		break;
	case VREC_OPEN:
		put64(b + 16, r->time_ns);
		put64(b + 24, r->deadline_ns);
		put32(b + 32, (uint32_t)r->dlen);
		put32(b + 36, r->count);
		break;
	case VREC_VOTE:
		b[16] = r->yes;
		b[17] = r->external;
		put16(b + 18, (uint16_t)pl);
		put16(b + 20, (uint16_t)r->dlen);
		put64(b + 24, r->time_ns);
		break;
	case VREC_DECIDE:
		b[16] = r->outcome;
		put16(b + 18, (uint16_t)r->dlen);
		put64(b + 24, r->time_ns);
		break;
	case VREC_FENCE:
		put64(b + 16, r->token);
		put16(b + 24, (uint16_t)r->dlen);
		break;
	default: /* VREC_REMOVE */
		put32(b + 16, r->uid);
		break;
	}
	memcpy(b + fixed, r->name, nl);
	memcpy(b + fixed + nl, r->part, pl);
	if (r->dlen)
		memcpy(b + fixed + nl + pl, r->data, r->dlen);
	*len = n;
	return b;
}

/* r->data points into payload. */
static int rec_decode(const void *payload, size_t len, struct vrec *r)
{
	const uint8_t *b = payload;
	size_t nl, pl = 0, fixed;

	memset(r, 0, sizeof(*r));
	if (len < 16)
		return -TXD_ECORRUPT;
	if (b[0] != 1 || b[1] < VREC_CREATE || b[1] > VREC_FENCE)
		return -TXD_EFORMAT;
	r->kind = b[1];
	fixed = rec_fixed(r->kind);
	nl = get16(b + 2);
	r->id = get64(b + 8);
	/* UINT64_MAX: next_id would wrap to 0 and ids repeat (V8;
	 * tests/fuzz/corpus/fuzz_vote/crash-id-wraps-next-id) */
	if (len < fixed || nl == 0 || nl > VOTE_NAME_MAX || len < fixed + nl || r->id == UINT64_MAX)
		return -TXD_ECORRUPT;
	memcpy(r->name, b + fixed, nl);
	r->name[nl] = '\0';
	if (vote_name_check(r->name))
		return -TXD_ECORRUPT;
	switch (r->kind) {
	case VREC_CREATE:
		r->uid = get32(b + 16);
		r->time_ns = get64(b + 24);
		break;
	case VREC_PARAM:
		r->timeout_ns = get64(b + 16);
		r->dlen = get32(b + 24);
		if (r->dlen > VOTE_PAYLOAD_MAX)
			return -TXD_ECORRUPT;
		break;
	case VREC_OPEN:
		r->time_ns = get64(b + 16);
		r->deadline_ns = get64(b + 24);
		r->dlen = get32(b + 32);
		r->count = get32(b + 36);
		break;
	case VREC_VOTE:
		r->yes = b[16] != 0;
		r->external = b[17] != 0;
		pl = get16(b + 18);
		r->dlen = get16(b + 20);
		r->time_ns = get64(b + 24);
		if (pl == 0 || pl > VOTE_NAME_MAX || len < fixed + nl + pl)
			return -TXD_ECORRUPT;
		memcpy(r->part, b + fixed + nl, pl);
		r->part[pl] = '\0';
		if (vote_name_check(r->part))
			return -TXD_ECORRUPT;
		break;
	case VREC_DECIDE:
		r->outcome = b[16];
		r->dlen = get16(b + 18);
		r->time_ns = get64(b + 24);
		if (r->outcome != VOTE_COMMITTED && r->outcome != VOTE_ABORTED)
			return -TXD_ECORRUPT;
		break;
	case VREC_FENCE:
		r->token = get64(b + 16);
		r->dlen = get16(b + 24);
		if (r->dlen == 0 || r->dlen > VOTE_NAME_MAX ||
		    (len == fixed + nl + r->dlen && memchr(b + fixed + nl, 0, r->dlen)))
			return -TXD_ECORRUPT;
		break;
	default:
		r->uid = get32(b + 16);
		break;
	}
	if (len != fixed + nl + pl + r->dlen)
		return -TXD_ECORRUPT;
	r->data = b + fixed + nl + pl;
	return 0;
}

/* An OPEN record's list: count names, each NUL-terminated, all valid and
 * distinct. Fills p->b. */
static int ballots_from_list(struct prop *p, const uint8_t *list, size_t len, uint32_t count)
{
	if (count == 0 || count > VOTE_PARTICIPANTS_MAX || !len || list[len - 1])
		return -TXD_ECORRUPT;
	struct ballot *b = calloc(count, sizeof(*b));
	unsigned n = 0;
	int err = 0;

	if (!b)
		return -ENOMEM;
	for (size_t off = 0; off < len && !err; n++) {
		const char *name = (const char *)list + off;
		size_t l = strlen(name);

		if (n == count || vote_name_check(name)) {
			err = -TXD_ECORRUPT;
			break;
		}
		for (unsigned k = 0; k < n && !err; k++)
			if (!strcmp(b[k].name, name))
				err = -TXD_ECORRUPT;
		if (!err && !(b[n].name = strdup(name)))
			err = -ENOMEM;
		b[n].vote = -1;
		off += l + 1;
	}
	if (!err && n != count)
		err = -TXD_ECORRUPT;
	if (err) {
		for (unsigned k = 0; k < count; k++)
			free(b[k].name);
		free(b);
		return err;
	}
	p->b = b;
	p->nb = count;
	return 0;
}

/* V15: an OPEN record of an open proposal whose list begins with its
 * participants, in order, and has more: the others join. Anything else
 * (the same list again in replay) is skipped. */
static struct prop *extend(struct prop *p, const struct vrec *r, int *err)
{
	struct prop q = {0};

	if (r->count <= p->nb)
		return NULL;
	if ((*err = ballots_from_list(&q, r->data, r->dlen, r->count)))
		return NULL;
	bool prefix = true;
	for (unsigned i = 0; i < p->nb && prefix; i++)
		prefix = !strcmp(p->b[i].name, q.b[i].name);
	struct ballot *nb = prefix ? realloc(p->b, q.nb * sizeof(*nb)) : NULL;
	if (!nb) {
		if (prefix)
			*err = -ENOMEM;
		for (unsigned i = 0; i < q.nb; i++)
			free(q.b[i].name);
		free(q.b);
		return NULL;
	}
	for (unsigned i = 0; i < p->nb; i++)
		free(q.b[i].name);
	memcpy(nb + p->nb, q.b + p->nb, (q.nb - p->nb) * sizeof(*nb));
	free(q.b);
	p->b = nb;
	p->nb = q.nb;
	return p;
}

/* The one place state changes. live: a record just appended (a DECIDE
 * makes the proposal DECIDING); else replay or snapshot (V8 skips).
 * Returns the proposal touched (NULL if skipped), or sets *err. */
static struct prop *apply(struct vote_svc *v, const struct vrec *r, bool live, int *err)
{
	struct prop *p = prop_find(v, r->name);
	struct ballot *b;

	*err = 0;
	if (r->kind == VREC_CREATE) {
		if (p && p->id >= r->id)
			return NULL;
		if (p)
			prop_drop(v, p); /* removed by retention before this one */
		struct uidcnt *uc = uid_get(v, r->uid);
		p = calloc(1, sizeof(*p));
		if (!p || !uc) {
			free(p);
			*err = -ENOMEM;
			return NULL;
		}
		p->id = r->id;
		strcpy(p->name, r->name);
		p->state = VOTE_CREATED;
		p->uid = r->uid;
		p->created_ns = r->time_ns;
		p->timeout_ns = v->opts.timeout_ns;
		uint32_t h = hash(p->name);
		p->next = v->bucket[h];
		v->bucket[h] = p;
		uc->n++;
		v->st.proposals++;
		if (r->id >= v->next_id)
			v->next_id = r->id + 1;
		return p;
	}
	if (!p || p->id != r->id)
		return NULL;
	switch (r->kind) {
	case VREC_PARAM: {
		uint8_t *copy = NULL;

		if (p->state != VOTE_CREATED)
			return NULL;
		if (r->dlen && !(copy = malloc(r->dlen))) {
			*err = -ENOMEM;
			return NULL;
		}
		if (r->dlen)
			memcpy(copy, r->data, r->dlen);
		free(p->payload);
		p->payload = copy;
		p->payload_len = r->dlen;
		p->timeout_ns = r->timeout_ns;
		p->param_set = true;
		return p;
	}
	case VREC_FENCE: {
		char *lease;

		if (p->state != VOTE_CREATED)
			return NULL;
		if (!(lease = strndup((const char *)r->data, r->dlen))) {
			*err = -ENOMEM;
			return NULL;
		}
		free(p->fence);
		p->fence = lease;
		p->fence_token = r->token;
		return p;
	}
	case VREC_OPEN:
		if (p->state == VOTE_OPENED || p->state == VOTE_DECIDING)
			return extend(p, r, err); /* V15 */
		if (p->state != VOTE_CREATED)
			return NULL;
		if ((*err = ballots_from_list(p, r->data, r->dlen, r->count)))
			return NULL;
		p->opened_ns = r->time_ns;
		p->deadline_ns = r->deadline_ns;
		p->state = VOTE_OPENED;
		v->st.open++;
		return p;
	case VREC_VOTE:
		if (p->state == VOTE_CREATED || !(b = ballot_find(p, r->part)) || b->vote >= 0)
			return NULL;
		if (r->dlen && !(b->reason = strndup((const char *)r->data, r->dlen))) {
			*err = -ENOMEM;
			return NULL;
		}
		b->vote = r->yes;
		b->external = r->external;
		b->time_ns = r->time_ns;
		return p;
	case VREC_DECIDE:
		if (p->state != VOTE_OPENED)
			return NULL;
		if (!(p->reason = strndup((const char *)r->data, r->dlen))) {
			*err = -ENOMEM;
			return NULL;
		}
		p->outcome = (enum vote_outcome)r->outcome;
		p->decided_ns = r->time_ns;
		p->state = live ? VOTE_DECIDING : VOTE_DECIDED;
		if (!live)
			v->st.open--;
		return p;
	default: /* VREC_REMOVE */
		prop_drop(v, p);
		return NULL;
	}
}

/* Append r and apply it (V9 on failure). */
static int log_apply(struct vote_svc *v, const struct vrec *r, struct prop **out, uint64_t *lsn)
{
	size_t len;
	uint8_t *buf;
	struct prop *p;
	int err;

	if (v->failed)
		return -EIO;
	if (!(buf = rec_encode(r, &len)))
		return -ENOMEM; /* nothing reached the log: not sticky */
	err = v->be.append(v->be.arg, buf, len, lsn);
	free(buf);
	if (err == -ENOSPC || err == -EDQUOT)
		return err; /* a full disk: nothing reached the log (wal.h W8) */
	if (err) {
		v->failed = err;
		return err;
	}
	p = apply(v, r, true, &err);
	if (err) {
		/* The log has it, memory does not: only a restart reconciles. */
		v->failed = err;
		return err;
	}
	if (out)
		*out = p;
	return 0;
}

/* ---- deciding (V1, V2) -------------------------------------------------------------- */

/* Does open p decide without its deadline? The first "no" in list order
 * (live, the only one: it decided at once), else all "yes". */
static bool complete(const struct prop *p, enum vote_outcome *o, char *reason, size_t size)
{
	unsigned yes = 0;

	for (unsigned i = 0; i < p->nb; i++) {
		const struct ballot *b = &p->b[i];

		if (b->vote == 0) {
			*o = VOTE_ABORTED;
			if (b->reason && *b->reason)
				snprintf(reason, size, "no from %s: %s", b->name, b->reason);
			else
				snprintf(reason, size, "no from %s", b->name);
			return true;
		}
		yes += b->vote == 1;
	}
	if (yes < p->nb)
		return false;
	*o = VOTE_COMMITTED;
	reason[0] = '\0';
	return true;
}

static void timeout_reason(const struct prop *p, char *reason, size_t size)
{
	size_t n = (size_t)snprintf(reason, size, "timeout missing ");
	const char *sep = "";

	for (unsigned i = 0; i < p->nb && n < size; i++) {
		if (p->b[i].vote >= 0)
			continue;
		if (n + strlen(sep) + strlen(p->b[i].name) + 4 >= size) {
			snprintf(reason + n, size - n, ",...");
			return;
		}
		n += (size_t)snprintf(reason + n, size - n, "%s%s", sep, p->b[i].name);
		sep = ",";
	}
}

/* Log p's decision (DECIDING) and queue its DECIDED report; a commit of a
 * fenced proposal whose lease is gone aborts instead (V14). Lock held. */
static int decide(struct vote_svc *v, struct prop *p, enum vote_outcome o, const char *reason,
		  struct evbuf *eb)
{
	char stale[VOTE_NAME_MAX + 64];

	if (o == VOTE_COMMITTED && p->fence &&
	    (!v->hooks.fence || v->hooks.fence(v->hooks.arg, p->fence, p->fence_token))) {
		o = VOTE_ABORTED;
		snprintf(stale, sizeof(stale), VOTE_FENCE_REASON "%s not held with token %" PRIu64,
			 p->fence, p->fence_token);
		reason = stale;
	}
	struct vrec r = {.kind = VREC_DECIDE,
			 .id = p->id,
			 .outcome = (uint8_t)o,
			 .data = (const uint8_t *)reason,
			 .dlen = strlen(reason),
			 .time_ns = txd_os->now_realtime_ns()};
	uint64_t lsn;
	int err;

	snprintf(r.name, sizeof(r.name), "%s", p->name);
	if ((err = log_apply(v, &r, NULL, &lsn)))
		return err;
	p->decide_lsn = lsn;
	if (lsn > eb->lsn)
		eb->lsn = lsn;
	struct pev *e = ev_push(eb, VEV_DECIDED, p);
	if (e)
		e->ev.outcome = o;
	return 0;
}

/* After the lock: sync eb->lsn (V1), make its decisions visible, report.
 * Frees eb. */
static int finish(struct vote_svc *v, struct evbuf *eb, int err)
{
	if (!err && eb->lsn && v->opts.sync && !eb->lazy) {
		err = v->be.sync(v->be.arg, eb->lsn);
		if (err) {
			pthread_mutex_lock(&v->lock);
			v->failed = err;
			pthread_mutex_unlock(&v->lock);
		}
	}
	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < eb->n; i++) {
		struct pev *e = &eb->e[i];
		struct prop *p = prop_find(v, e->proposal);

		e->ev.proposal = e->proposal;
		e->ev.participant = e->part;
		if (e->ev.kind != VEV_DECIDED)
			continue;
		if (err || !p || p->id != e->id || p->state != VOTE_DECIDING) {
			e->ev.kind = 0; /* not visible: not reported */
			continue;
		}
		p->state = VOTE_DECIDED;
		v->st.open--;
		if (p->outcome == VOTE_COMMITTED)
			v->st.committed++;
		else
			v->st.aborted++;
		e->ev.duration_ns = p->decided_ns > p->opened_ns ? p->decided_ns - p->opened_ns : 0;
		v->st.duration_ns_sum += e->ev.duration_ns;
		v->st.duration_count++;
		e->ev.time_ns = p->decided_ns;
		e->text = strdup(p->reason);
		e->ev.reason = e->text ? e->text : "";
	}
	pthread_mutex_unlock(&v->lock);
	for (size_t i = 0; i < eb->n; i++) {
		struct pev *e = &eb->e[i];

		if (e->ev.kind && !err && v->hooks.event)
			v->hooks.event(v->hooks.arg, &e->ev);
		free(e->text);
	}
	free(eb->e);
	return err;
}

/* The deadline of an open p has passed (V7): monotonic once started. */
static bool overdue(const struct prop *p, uint64_t now_mono)
{
	return p->state == VOTE_OPENED && p->deadline_mono && p->deadline_mono <= now_mono;
}

/* ---- life --------------------------------------------------------------------------- */

int vote_open(const struct vote_opts *opts, const struct vote_backend *be,
	      const struct vote_hooks *hooks, struct vote_svc **out)
{
	struct vote_svc *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->lock, NULL);
	v->opts = *opts;
	if (!v->opts.max_proposals)
		v->opts.max_proposals = 1024;
	if (!v->opts.retain_ns)
		v->opts.retain_ns = VOTE_RETAIN_DEFAULT_NS;
	if (!v->opts.timeout_ns)
		v->opts.timeout_ns = VOTE_TIMEOUT_DEFAULT_NS;
	v->be = *be;
	if (hooks)
		v->hooks = *hooks;
	v->next_id = 1;
	*out = v;
	return 0;
}

void vote_close(struct vote_svc *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < NBUCKET; i++) {
		while (v->bucket[i]) {
			struct prop *p = v->bucket[i];

			v->bucket[i] = p->next;
			prop_free(p);
		}
	}
	free(v->uids);
	while (v->pins) {
		struct vpin *q = v->pins;

		v->pins = q->next;
		free(q);
	}
	pthread_mutex_destroy(&v->lock);
	free(v);
}

/* V10 pins. v->lock held. */
static struct vpin **pin_find(struct vote_svc *v, const char *name)
{
	struct vpin **pp = &v->pins;

	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->next;
	return pp;
}

int vote_pin(struct vote_svc *v, const char *proposal)
{
	int err = 0;

	pthread_mutex_lock(&v->lock);
	struct vpin **pp = pin_find(v, proposal);
	if (*pp) {
		(*pp)->count++;
	} else {
		size_t n = strlen(proposal) + 1;
		struct vpin *q = malloc(sizeof(*q) + n);

		if (q) {
			q->next = NULL;
			q->count = 1;
			memcpy(q->name, proposal, n);
			*pp = q;
		} else {
			err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}

void vote_unpin(struct vote_svc *v, const char *proposal)
{
	pthread_mutex_lock(&v->lock);
	struct vpin **pp = pin_find(v, proposal), *q = *pp;
	if (q && !--q->count) {
		*pp = q->next;
		free(q);
	}
	pthread_mutex_unlock(&v->lock);
}

int vote_replay(struct vote_svc *v, const void *payload, size_t len)
{
	struct vrec r;
	int err = rec_decode(payload, len, &r);

	if (err)
		return err;
	pthread_mutex_lock(&v->lock);
	apply(v, &r, false, &err);
	pthread_mutex_unlock(&v->lock);
	return err;
}

struct snapbuf {
	uint8_t *b;
	size_t n, cap;
	uint32_t count;
};

static int snap_add(struct snapbuf *sb, const struct vrec *r)
{
	size_t len;
	uint8_t *rec = rec_encode(r, &len);

	if (!rec)
		return -ENOMEM;
	if (sb->n + 4 + len > sb->cap) {
		size_t nc = 2 * sb->cap + 4 + len;
		uint8_t *nb = realloc(sb->b, nc);

		if (!nb) {
			free(rec);
			return -ENOMEM;
		}
		sb->b = nb;
		sb->cap = nc;
	}
	put32(sb->b + sb->n, (uint32_t)len);
	memcpy(sb->b + sb->n + 4, rec, len);
	sb->n += 4 + len;
	sb->count++;
	free(rec);
	return 0;
}

/* The OPEN list of p: names, each NUL-terminated. malloc'd. */
static uint8_t *list_of(const struct prop *p, size_t *len)
{
	size_t n = 0;

	for (unsigned i = 0; i < p->nb; i++)
		n += strlen(p->b[i].name) + 1;
	uint8_t *l = malloc(n ? n : 1), *w = l;
	for (unsigned i = 0; l && i < p->nb; i++) {
		size_t k = strlen(p->b[i].name) + 1;
		memcpy(w, p->b[i].name, k);
		w += k;
	}
	*len = n;
	return l;
}

static int snap_prop(struct snapbuf *sb, const struct prop *p)
{
	struct vrec r = {.kind = VREC_CREATE, .id = p->id, .uid = p->uid, .time_ns = p->created_ns};
	int err;

	strcpy(r.name, p->name);
	if ((err = snap_add(sb, &r)))
		return err;
	if (p->param_set) {
		r = (struct vrec){.kind = VREC_PARAM,
				  .id = p->id,
				  .timeout_ns = p->timeout_ns,
				  .data = p->payload,
				  .dlen = p->payload_len};
		strcpy(r.name, p->name);
		if ((err = snap_add(sb, &r)))
			return err;
	}
	if (p->fence) {
		r = (struct vrec){.kind = VREC_FENCE,
				  .id = p->id,
				  .token = p->fence_token,
				  .data = (const uint8_t *)p->fence,
				  .dlen = strlen(p->fence)};
		strcpy(r.name, p->name);
		if ((err = snap_add(sb, &r)))
			return err;
	}
	if (p->state == VOTE_CREATED)
		return 0;
	size_t ll;
	uint8_t *list = list_of(p, &ll);
	if (!list)
		return -ENOMEM;
	r = (struct vrec){.kind = VREC_OPEN,
			  .id = p->id,
			  .time_ns = p->opened_ns,
			  .deadline_ns = p->deadline_ns,
			  .data = list,
			  .dlen = ll,
			  .count = p->nb};
	strcpy(r.name, p->name);
	err = snap_add(sb, &r);
	free(list);
	for (unsigned i = 0; !err && i < p->nb; i++) {
		const struct ballot *b = &p->b[i];

		if (b->vote < 0)
			continue;
		r = (struct vrec){.kind = VREC_VOTE,
				  .id = p->id,
				  .yes = b->vote == 1,
				  .external = b->external,
				  .time_ns = b->time_ns,
				  .data = (const uint8_t *)b->reason,
				  .dlen = b->reason ? strlen(b->reason) : 0};
		strcpy(r.name, p->name);
		strcpy(r.part, b->name);
		err = snap_add(sb, &r);
	}
	if (!err && (p->state == VOTE_DECIDED || p->state == VOTE_DECIDING)) {
		r = (struct vrec){.kind = VREC_DECIDE,
				  .id = p->id,
				  .outcome = (uint8_t)p->outcome,
				  .time_ns = p->decided_ns,
				  .data = (const uint8_t *)p->reason,
				  .dlen = strlen(p->reason)};
		strcpy(r.name, p->name);
		err = snap_add(sb, &r);
	}
	return err;
}

int vote_snapshot_encode(struct vote_svc *v, void **buf, size_t *len)
{
	struct snapbuf sb = {.cap = 4096};
	int err = 0;

	if (!(sb.b = malloc(sb.cap)))
		return -ENOMEM;
	sb.n = 20; /* header, filled in at the end */
	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; !err && i < NBUCKET; i++)
		for (struct prop *p = v->bucket[i]; !err && p; p = p->next)
			err = snap_prop(&sb, p);
	uint64_t next_id = v->next_id;
	pthread_mutex_unlock(&v->lock);
	if (err) {
		free(sb.b);
		return err;
	}
	put32(sb.b, SNAP_MAGIC);
	put32(sb.b + 4, 1);
	put64(sb.b + 8, next_id);
	put32(sb.b + 16, sb.count);
	*buf = sb.b;
	*len = sb.n;
	return 0;
}

int vote_snapshot_decode(struct vote_svc *v, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	size_t off = 20;
	int err = 0;

	if (len < 20 || get32(b) != SNAP_MAGIC)
		return -TXD_ECORRUPT;
	if (get32(b + 4) != 1)
		return -TXD_EFORMAT;
	uint32_t count = get32(b + 16);
	for (uint32_t i = 0; !err && i < count; i++) {
		if (off + 4 > len || get32(b + off) > len - off - 4)
			return -TXD_ECORRUPT;
		uint32_t rl = get32(b + off);
		err = vote_replay(v, b + off + 4, rl);
		off += 4 + rl;
	}
	if (!err && off != len)
		err = -TXD_ECORRUPT;
	pthread_mutex_lock(&v->lock);
	if (get64(b + 8) > v->next_id)
		v->next_id = get64(b + 8);
	pthread_mutex_unlock(&v->lock);
	return err;
}

int vote_start(struct vote_svc *v)
{
	struct evbuf eb = {0};
	char reason[REASON_CAP];
	int err = 0;

	pthread_mutex_lock(&v->lock);
	uint64_t now_rt = txd_os->now_realtime_ns(), now_mono = txd_os->now_monotonic_ns();
	for (size_t i = 0; i < NBUCKET; i++) {
		for (struct prop *p = v->bucket[i]; p; p = p->next) {
			enum vote_outcome o;

			if (p->state != VOTE_OPENED)
				continue;
			/* V7: the downtime counts */
			p->deadline_mono =
				now_mono + (p->deadline_ns > now_rt ? p->deadline_ns - now_rt : 0);
			if (!p->deadline_mono)
				p->deadline_mono = 1;
			if (!err && complete(p, &o, reason, sizeof(reason)))
				err = decide(v, p, o, reason, &eb);
		}
	}
	v->started = true;
	pthread_mutex_unlock(&v->lock);
	err = finish(v, &eb, err);
	if (err)
		return err;
	int n = vote_tick(v, NULL);
	return n < 0 ? n : 0;
}

/* ---- operations --------------------------------------------------------------------- */

static int create(struct vote_svc *v, const char *proposal, uint32_t uid, bool reserved)
{
	struct vrec r = {.kind = VREC_CREATE, .uid = uid};
	struct evbuf eb = {.lazy = true}; /* V13 */
	struct uidcnt *uc;
	int err;

	if (vote_name_check(proposal))
		return -EINVAL;
	if (!reserved && !strncmp(proposal, VOTE_RESERVED_PREFIX, strlen(VOTE_RESERVED_PREFIX)))
		return -EPERM; /* V12 */
	pthread_mutex_lock(&v->lock);
	if (prop_find(v, proposal)) {
		err = -EEXIST;
	} else if (uid && (uc = uid_get(v, uid)) && uc->n >= v->opts.max_proposals) {
		err = -EDQUOT;
	} else {
		r.id = v->next_id;
		r.time_ns = txd_os->now_realtime_ns();
		snprintf(r.name, sizeof(r.name), "%s", proposal);
		err = log_apply(v, &r, NULL, &eb.lsn);
	}
	pthread_mutex_unlock(&v->lock);
	return finish(v, &eb, err);
}

int vote_create(struct vote_svc *v, const char *proposal, uint32_t uid)
{
	return create(v, proposal, uid, false);
}

int vote_create_reserved(struct vote_svc *v, const char *proposal)
{
	return create(v, proposal, 0, true);
}

/* Payload and timeout (V4): one PARAM record with both. */
static int set_param(struct vote_svc *v, const char *proposal, const void *buf, size_t len,
		     bool payload, uint64_t timeout_ns)
{
	struct evbuf eb = {.lazy = true}; /* V13 */
	struct prop *p;
	int err;

	if (vote_name_check(proposal))
		return -EINVAL;
	if (payload && len > VOTE_PAYLOAD_MAX)
		return -EFBIG;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal))) {
		err = -ENOENT;
	} else if (p->state != VOTE_CREATED) {
		err = -EROFS;
	} else {
		struct vrec r = {.kind = VREC_PARAM,
				 .id = p->id,
				 .timeout_ns = payload ? p->timeout_ns : timeout_ns,
				 .data = payload ? buf : p->payload,
				 .dlen = payload ? len : p->payload_len};
		strcpy(r.name, p->name);
		err = log_apply(v, &r, NULL, &eb.lsn);
		if (!err)
			p->lsn = eb.lsn;
	}
	pthread_mutex_unlock(&v->lock);
	return finish(v, &eb, err);
}

int vote_set_payload(struct vote_svc *v, const char *proposal, const void *buf, size_t len)
{
	return set_param(v, proposal, buf, len, true, 0);
}

int vote_set_fence(struct vote_svc *v, const char *proposal, const char *lease, uint64_t token)
{
	struct evbuf eb = {.lazy = true}; /* V13 */
	size_t ll = lease ? strlen(lease) : 0;
	struct prop *p;
	int err;

	if (vote_name_check(proposal) || ll == 0 || ll > VOTE_NAME_MAX)
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal))) {
		err = -ENOENT;
	} else if (p->fence) {
		err = strcmp(p->fence, lease) || p->fence_token != token ? -EEXIST : 0;
	} else if (p->state != VOTE_CREATED) {
		err = -EROFS;
	} else {
		struct vrec r = {.kind = VREC_FENCE,
				 .id = p->id,
				 .token = token,
				 .data = (const uint8_t *)lease,
				 .dlen = ll};
		strcpy(r.name, p->name);
		err = log_apply(v, &r, NULL, &eb.lsn);
		if (!err)
			p->lsn = eb.lsn;
	}
	pthread_mutex_unlock(&v->lock);
	return finish(v, &eb, err);
}

int vote_set_timeout(struct vote_svc *v, const char *proposal, uint64_t timeout_ns)
{
	if (timeout_ns == 0 || timeout_ns > VOTE_TIMEOUT_MAX_NS)
		return -EINVAL;
	return set_param(v, proposal, NULL, 0, false, timeout_ns);
}

/* V4: the written list as NUL-terminated names (malloc'd), counted. */
static int parse_list(const char *list, size_t len, uint8_t **out, size_t *outlen, uint32_t *count)
{
	uint8_t *l = malloc(len + 1);
	size_t n = 0;
	uint32_t c = 0;

	if (!l)
		return -ENOMEM;
	for (size_t i = 0; i < len;) {
		while (i < len && strchr(", \t\r\n", list[i]) && list[i])
			i++;
		size_t s = i;
		while (i < len && !(strchr(", \t\r\n", list[i]) && list[i]))
			i++;
		if (i == s)
			continue;
		if (i - s > VOTE_NAME_MAX || memchr(list + s, 0, i - s) ||
		    ++c > VOTE_PARTICIPANTS_MAX)
			goto bad;
		memcpy(l + n, list + s, i - s);
		l[n + i - s] = 0;
		if (vote_name_check((char *)l + n))
			goto bad;
		for (size_t o = 0; o < n; o += strlen((char *)l + o) + 1)
			if (!strcmp((char *)l + o, (char *)l + n))
				goto bad;
		n += i - s + 1;
	}
	if (!c)
		goto bad;
	*out = l;
	*outlen = n;
	*count = c;
	return 0;
bad:
	free(l);
	return -EINVAL;
}

static bool same_list(const struct prop *p, const uint8_t *l, size_t len, uint32_t count)
{
	if (count != p->nb)
		return false;
	for (size_t o = 0; o < len; o += strlen((const char *)l + o) + 1)
		if (!ballot_find((struct prop *)p, (const char *)l + o))
			return false;
	return true;
}

int vote_sync(struct vote_svc *v, const char *proposal)
{
	pthread_mutex_lock(&v->lock);
	struct prop *p = prop_find(v, proposal);
	uint64_t lsn = p ? p->lsn : 0;
	int err = !p ? -ENOENT : v->failed ? -EIO : 0;
	pthread_mutex_unlock(&v->lock);
	if (err || !lsn || !v->opts.sync)
		return err;
	if ((err = v->be.sync(v->be.arg, lsn))) {
		pthread_mutex_lock(&v->lock);
		v->failed = err;
		pthread_mutex_unlock(&v->lock);
	}
	return err;
}

int vote_set_participants(struct vote_svc *v, const char *proposal, const char *list, size_t len,
			  const struct proc_id *by)
{
	struct evbuf eb = {.lazy = true}; /* V13 */
	uint8_t *l;
	size_t ll;
	uint32_t count;
	struct prop *p;
	int err;

	if (vote_name_check(proposal))
		return -EINVAL;
	if ((err = parse_list(list, len, &l, &ll, &count)))
		return err;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal))) {
		err = -ENOENT;
	} else if (p->state != VOTE_CREATED) {
		err = same_list(p, l, ll, count) ? 0 : -EEXIST;
		eb.lsn = err ? 0 : p->lsn; /* the same list again (lazy, V13) */
	} else {
		uint64_t now_mono = txd_os->now_monotonic_ns();
		struct vrec r = {.kind = VREC_OPEN,
				 .id = p->id,
				 .data = l,
				 .dlen = ll,
				 .count = count,
				 .time_ns = txd_os->now_realtime_ns()};
		r.deadline_ns = r.time_ns + p->timeout_ns;
		strcpy(r.name, p->name);
		err = log_apply(v, &r, NULL, &eb.lsn);
		if (!err) {
			p->lsn = eb.lsn;
			p->deadline_mono = now_mono + p->timeout_ns;
			struct pev *e = ev_push(&eb, VEV_OPENED, p);
			if (e) {
				e->ev.timeout_ns = p->timeout_ns;
				if (by)
					e->ev.by = *by;
				e->ev.time_ns = r.time_ns;
				e->text = malloc(ll);
				if (e->text) {
					memcpy(e->text, l, ll);
					for (size_t i = 0; i + 1 < ll; i++)
						if (!e->text[i])
							e->text[i] = ',';
				}
				e->ev.participants = e->text;
			}
		}
	}
	pthread_mutex_unlock(&v->lock);
	free(l);
	return finish(v, &eb, err);
}

int vote_extend_participants(struct vote_svc *v, const char *proposal, const char *list,
			     size_t len)
{
	struct evbuf eb = {.lazy = true}; /* V13 */
	uint8_t *l, *full = NULL;
	size_t ll, fl = 0;
	uint32_t count;
	struct prop *p;
	int err;

	if (vote_name_check(proposal))
		return -EINVAL;
	if ((err = parse_list(list, len, &l, &ll, &count)))
		return err;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal)) || p->state == VOTE_CREATED) {
		err = -ENOENT;
	} else if (same_list(p, l, ll, count)) {
		err = 0;
		eb.lsn = p->lsn;
	} else if (p->state != VOTE_OPENED) {
		err = -EROFS;
	} else {
		/* the record's list: the participants in their order, then the
		 * new names in the written order (extend() wants that prefix);
		 * names are distinct (parse_list), so all are kept when as many
		 * of the written ones are participants */
		unsigned kept = 0;
		for (size_t o = 0; o < ll; o += strlen((char *)l + o) + 1)
			kept += ballot_find(p, (char *)l + o) != NULL;
		uint8_t *grown = NULL;
		if (kept < p->nb) {
			err = -EEXIST; /* a participant left out: not an extension */
			goto out;
		}
		if (!(full = list_of(p, &fl)) || !(grown = realloc(full, fl + ll))) {
			err = -ENOMEM;
			goto out;
		}
		full = grown;
		for (size_t o = 0; o < ll; o += strlen((char *)l + o) + 1)
			if (!ballot_find(p, (char *)l + o)) {
				size_t k = strlen((char *)l + o) + 1;
				memcpy(full + fl, l + o, k);
				fl += k;
			}
		struct vrec r = {.kind = VREC_OPEN,
				 .id = p->id,
				 .data = full,
				 .dlen = fl,
				 .count = count,
				 .time_ns = p->opened_ns,
				 .deadline_ns = p->deadline_ns};
		strcpy(r.name, p->name);
		err = log_apply(v, &r, NULL, &eb.lsn);
		if (!err)
			p->lsn = eb.lsn;
	}
out:
	pthread_mutex_unlock(&v->lock);
	free(l);
	free(full);
	return finish(v, &eb, err);
}

/* vote_cast and vote_cast_external. log: write a VOTE record (else the
 * caller's record is the vote). */
static int check_cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		      bool unvoted);

int vote_check_cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes)
{
	return check_cast(v, proposal, participant, yes, false);
}

int vote_check_unvoted(struct vote_svc *v, const char *proposal, const char *participant)
{
	return check_cast(v, proposal, participant, true, true);
}

static int check_cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		      bool unvoted)
{
	struct ballot *b;
	struct prop *p;
	int err = 0;

	if (vote_name_check(proposal) || vote_name_check(participant))
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal)) || p->state == VOTE_CREATED ||
	    !(b = ballot_find(p, participant)))
		err = -ENOENT;
	else if (p->state != VOTE_OPENED || overdue(p, txd_os->now_monotonic_ns()))
		err = -EROFS;
	else if (b->vote >= 0 && (unvoted || b->vote != (int8_t)yes))
		err = -EEXIST;
	pthread_mutex_unlock(&v->lock);
	return err;
}

static int cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		const char *reason, bool log, const struct proc_id *by)
{
	struct evbuf eb = {0};
	char why[REASON_CAP];
	enum vote_outcome o;
	struct ballot *b;
	struct prop *p;
	int err = 0;

	if (vote_name_check(proposal) || vote_name_check(participant))
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal)) || p->state == VOTE_CREATED ||
	    !(b = ballot_find(p, participant))) {
		err = -ENOENT;
		goto out_unlock;
	}
	if (b->vote == (int8_t)yes) {
		eb.lsn = b->lsn; /* the same vote again (V3): once it is durable */
		goto out_unlock;
	}
	if (overdue(p, txd_os->now_monotonic_ns())) {
		/* the deadline passed before this vote: it decides first */
		timeout_reason(p, why, sizeof(why));
		if (!(err = decide(v, p, VOTE_ABORTED, why, &eb)))
			err = -EROFS;
		goto out_unlock;
	}
	if (p->state != VOTE_OPENED) {
		eb.lsn = p->decide_lsn; /* answer once the decision is durable */
		err = -EROFS;
		goto out_unlock;
	}
	if (b->vote >= 0) {
		err = -EEXIST;
		goto out_unlock;
	}
	struct vrec r = {.kind = VREC_VOTE,
			 .id = p->id,
			 .yes = yes,
			 .external = !log,
			 .time_ns = txd_os->now_realtime_ns()};
	strcpy(r.name, p->name);
	strcpy(r.part, b->name);
	if (log) {
		if ((err = log_apply(v, &r, NULL, &eb.lsn)))
			goto out_unlock;
		b->lsn = eb.lsn;
	} else {
		if (reason && !yes && !(b->reason = strndup(reason, VOTE_REASON_MAX))) {
			err = -ENOMEM;
			goto out_unlock;
		}
		b->vote = yes;
		b->external = true;
		b->time_ns = r.time_ns;
	}
	struct pev *e = ev_push(&eb, VEV_VOTE, p);
	if (e) {
		snprintf(e->part, sizeof(e->part), "%s", b->name);
		e->ev.yes = yes;
		e->ev.external = !log;
		if (by)
			e->ev.by = *by;
		e->ev.time_ns = r.time_ns;
	}
	if (complete(p, &o, why, sizeof(why)))
		err = decide(v, p, o, why, &eb);
out_unlock:
	pthread_mutex_unlock(&v->lock);
	int ferr = finish(v, &eb, err == -EROFS ? 0 : err);
	return ferr ? ferr : err;
}

int vote_cast(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
	      const struct proc_id *by)
{
	return cast(v, proposal, participant, yes, NULL, true, by);
}

int vote_cast_external(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		       const char *reason, bool replaying)
{
	struct ballot *b;
	struct prop *p;
	int err = 0;

	if (!replaying)
		return cast(v, proposal, participant, yes, reason, false, NULL);
	if (vote_name_check(proposal) || vote_name_check(participant))
		return -EINVAL;
	/* V8: memory only, never decides */
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal)) || p->state == VOTE_CREATED ||
	    !(b = ballot_find(p, participant)))
		err = -ENOENT;
	else if (b->vote == (int8_t)yes)
		err = 0;
	else if (b->vote >= 0)
		err = p->state != VOTE_OPENED ? -EROFS : -EEXIST;
	else if (reason && !yes && !(b->reason = strndup(reason, VOTE_REASON_MAX)))
		err = -ENOMEM;
	else {
		/* also in a decided proposal (its votes show it), then -EROFS */
		b->vote = yes;
		b->external = true;
		b->time_ns = txd_os->now_realtime_ns();
		if (p->state != VOTE_OPENED)
			err = -EROFS;
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}

int vote_remove(struct vote_svc *v, const char *proposal, uint32_t uid)
{
	struct evbuf eb = {0};
	struct prop *p;
	int err;

	if (vote_name_check(proposal))
		return -ENOENT;
	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal))) {
		err = -ENOENT;
	} else if (p->state != VOTE_CREATED) {
		err = -EBUSY;
	} else if (uid && uid != p->uid) {
		err = -EPERM;
	} else {
		struct vrec r = {.kind = VREC_REMOVE, .id = p->id, .uid = uid};
		strcpy(r.name, p->name);
		ev_push(&eb, VEV_REMOVED, p); /* before log_apply frees p */
		err = log_apply(v, &r, NULL, &eb.lsn);
	}
	pthread_mutex_unlock(&v->lock);
	return finish(v, &eb, err);
}

static uint64_t min_next(uint64_t next, uint64_t at)
{
	return !next || at < next ? at : next;
}

int vote_tick(struct vote_svc *v, uint64_t *next)
{
	struct evbuf eb = {0};
	char why[REASON_CAP];
	uint64_t nx = 0;
	int err = 0, n = 0;

	pthread_mutex_lock(&v->lock);
	uint64_t now_rt = txd_os->now_realtime_ns(), now_mono = txd_os->now_monotonic_ns();
	for (size_t i = 0; i < NBUCKET; i++) {
		for (struct prop *p = v->bucket[i], *nextp; p; p = nextp) {
			nextp = p->next;
			uint64_t gone = 0;

			if (p->state == VOTE_OPENED && overdue(p, now_mono) && !err) {
				timeout_reason(p, why, sizeof(why));
				if (!(err = decide(v, p, VOTE_ABORTED, why, &eb)))
					n++;
				continue;
			}
			if (p->state == VOTE_OPENED && p->deadline_mono) {
				nx = min_next(nx, p->deadline_mono);
				continue;
			}
			if (p->state == VOTE_CREATED)
				gone = p->created_ns + p->timeout_ns;
			else if (p->state == VOTE_DECIDED)
				gone = p->decided_ns + v->opts.retain_ns;
			if (!gone)
				continue;
			if (gone <= now_rt && !*pin_find(v, p->name)) {
				if (p->state == VOTE_CREATED) /* no decision will come */
					ev_push(&eb, VEV_REMOVED, p);
				prop_drop(v, p); /* V10: not logged, replay repeats it */
			}
			else if (gone <= now_rt) /* pinned: again once unpinned */
				nx = min_next(nx, now_mono + 1000000000ull);
			else
				nx = min_next(nx, now_mono + (gone - now_rt));
		}
	}
	pthread_mutex_unlock(&v->lock);
	err = finish(v, &eb, err);
	if (next)
		*next = nx;
	return err ? err : n;
}

/* ---- reading ------------------------------------------------------------ */

static void info_of(const struct prop *p, struct vote_info *vi)
{
	memset(vi, 0, sizeof(*vi));
	strcpy(vi->name, p->name);
	vi->state = p->state;
	vi->id = p->id;
	vi->uid = p->uid;
	vi->created_ns = p->created_ns;
	vi->opened_ns = p->opened_ns;
	vi->deadline_ns = p->deadline_ns;
	vi->timeout_ns = p->timeout_ns;
	vi->payload_len = p->payload_len;
	if (p->fence) {
		snprintf(vi->fence, sizeof(vi->fence), "%s", p->fence);
		vi->fence_token = p->fence_token;
	}
	vi->participants = p->nb;
	for (unsigned i = 0; i < p->nb; i++) {
		vi->yes += p->b[i].vote == 1;
		vi->no += p->b[i].vote == 0;
	}
	if (p->state == VOTE_DECIDED) { /* V1: DECIDING is not visible */
		vi->decided_ns = p->decided_ns;
		vi->outcome = p->outcome;
		snprintf(vi->reason, sizeof(vi->reason), "%s", p->reason);
	}
}

int vote_outcome(struct vote_svc *v, const char *proposal, enum vote_outcome *out, char *reason,
		 size_t reason_size)
{
	struct vote_info vi;
	int err = vote_get(v, proposal, &vi);

	if (err)
		return err;
	*out = vi.outcome;
	if (reason && reason_size)
		snprintf(reason, reason_size, "%s", vi.reason);
	return 0;
}

int vote_get(struct vote_svc *v, const char *proposal, struct vote_info *out)
{
	struct prop *p;
	int err = 0;

	pthread_mutex_lock(&v->lock);
	if ((p = prop_find(v, proposal)))
		info_of(p, out);
	else
		err = -ENOENT;
	pthread_mutex_unlock(&v->lock);
	return err;
}

int vote_get_by_id(struct vote_svc *v, uint64_t id, struct vote_info *out)
{
	int err = -ENOENT;

	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; err && i < NBUCKET; i++)
		for (struct prop *p = v->bucket[i]; err && p; p = p->next)
			if (p->id == id) {
				info_of(p, out);
				err = 0;
			}
	pthread_mutex_unlock(&v->lock);
	return err;
}

int vote_payload(struct vote_svc *v, const char *proposal, void *buf, size_t size, size_t *len)
{
	struct prop *p;
	int err = 0;

	pthread_mutex_lock(&v->lock);
	if ((p = prop_find(v, proposal))) {
		*len = p->payload_len;
		if (size && p->payload_len)
			memcpy(buf, p->payload, size < p->payload_len ? size : p->payload_len);
	} else {
		err = -ENOENT;
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}

int vote_list(struct vote_svc *v, int (*fn)(void *arg, const struct vote_info *vi), void *arg)
{
	struct vote_info vi;
	int err = 0;

	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; !err && i < NBUCKET; i++)
		for (struct prop *p = v->bucket[i]; !err && p; p = p->next) {
			info_of(p, &vi);
			err = fn(arg, &vi);
		}
	pthread_mutex_unlock(&v->lock);
	return err;
}

int vote_list_participants(struct vote_svc *v, const char *proposal,
			   int (*fn)(void *arg, const char *participant, int vote), void *arg)
{
	struct prop *p;
	int err = 0;

	pthread_mutex_lock(&v->lock);
	if (!(p = prop_find(v, proposal)) || p->state == VOTE_CREATED)
		err = -ENOENT;
	for (unsigned i = 0; !err && p && i < p->nb; i++)
		err = fn(arg, p->b[i].name, p->b[i].vote);
	pthread_mutex_unlock(&v->lock);
	return err;
}

void vote_get_stats(struct vote_svc *v, struct vote_stats *st)
{
	pthread_mutex_lock(&v->lock);
	*st = v->st;
	pthread_mutex_unlock(&v->lock);
}
