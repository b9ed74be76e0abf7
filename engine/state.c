/*
 * state.c — the global state document (state.h).
 *
 * Documents are immutable, reference-counted buffers: the visible one, the
 * newest appended one (S5's snapshot) and each replacing caller's may be
 * the same buffer. A caller publishes its own document only if no later
 * version became visible first (its sync covered every earlier record,
 * and a later one's covered it: S2).
 */
#include "state.h"
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "os.h"
#include "txdir.h"
#include "vote.h"

struct sdoc {
	unsigned ref;               /* under state->lock */
	uint64_t version, time_ns;
	struct state_who by;
	size_t len;
	char b[];                   /* len bytes and a NUL */
};

struct state_svc {
	pthread_mutex_t lock;       /* leaf: everything below */
	struct state_opts opts;
	struct state_backend be;
	struct sdoc *vis, *newest;
	struct sdoc *past[STATE_PAST]; /* the versions visible before vis (S12) */
	unsigned past_next;         /* the slot the next one goes to */
	bool failed;                /* S6 */
	uint64_t replaces;
	/* participants mode (S7-S10) */
	char *parts;                /* normalised "a,b,c"; NULL: plain mode */
	bool pbusy;                 /* a state proposal is being opened or is open */
	char pname[VOTE_NAME_MAX + 1];
	uint64_t pversion;          /* the version its commit makes */
	uint64_t pseq;              /* tickets: the pending proposal's */
	struct state_who pby;       /* its writer */
	struct {
		uint64_t seq;
		int result;
		uint64_t version;
	} done[8];                  /* the last outcomes, by seq % 8 */
	pthread_cond_t cv;          /* a state proposal finished */
	struct swaiter *waiters;    /* state_wait_async's, not yet answered */
};

/* A caller waiting for a proposal's outcome without a thread. */
struct swaiter {
	struct swaiter *next;
	uint64_t ticket;
	void (*done)(void *arg, int err);
	void *arg;
};

/* The outcome of ticket once it is no longer pending (s->lock held). */
static int outcome_of(const struct state_svc *s, uint64_t ticket, uint64_t *version)
{
	if (s->done[ticket % 8].seq != ticket)
		return -EIO; /* eight later proposals ended before this waiter looked */
	if (!s->done[ticket % 8].result && version)
		*version = s->done[ticket % 8].version;
	return s->done[ticket % 8].result;
}

/* Take out the async waiters of ticket (s->lock held), to be answered once
 * it is released. */
static struct swaiter *take_waiters(struct state_svc *s, uint64_t ticket)
{
	struct swaiter *out = NULL, **pp = &s->waiters;
	while (*pp) {
		struct swaiter *w = *pp;
		if (w->ticket == ticket) {
			*pp = w->next;
			w->next = out;
			out = w;
		} else {
			pp = &w->next;
		}
	}
	return out;
}

static void answer_waiters(struct swaiter *w, int result)
{
	while (w) {
		struct swaiter *next = w->next;
		w->done(w->arg, result);
		free(w);
		w = next;
	}
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

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static struct sdoc *sdoc_new(const char *b, size_t len, uint64_t version, uint64_t time_ns,
			     const struct state_who *by)
{
	struct sdoc *d = malloc(sizeof(*d) + len + 1);

	if (!d)
		return NULL;
	d->ref = 1;
	d->version = version;
	d->time_ns = time_ns;
	d->by = *by;
	d->len = len;
	memcpy(d->b, b, len);
	d->b[len] = 0;
	return d;
}

/* Under s->lock (or single-threaded). */
static void sdoc_put(struct sdoc *d)
{
	if (d && --d->ref == 0)
		free(d);
}

static struct sdoc *sdoc_get(struct sdoc *d)
{
	d->ref++;
	return d;
}

/* d (a reference the caller gives) becomes the visible document; the old
 * one joins the past ones (S12). s->lock held. */
static void set_visible(struct state_svc *s, struct sdoc *d)
{
	unsigned k = s->past_next++ % STATE_PAST;
	sdoc_put(s->past[k]);
	s->past[k] = s->vis;
	s->vis = d;
}

int state_open(const struct state_opts *opts, const struct state_backend *be,
	       struct state_svc **out)
{
	struct state_svc *s = calloc(1, sizeof(*s));
	const struct state_who server = { 0, 0 };

	if (!s)
		return -ENOMEM;
	s->opts = *opts;
	s->be = *be;
	s->vis = sdoc_new("{}\n", 3, 0, 0, &server);
	if (!s->vis) {
		free(s);
		return -ENOMEM;
	}
	s->newest = sdoc_get(s->vis);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	*out = s;
	return 0;
}

void state_close(struct state_svc *s)
{
	if (!s)
		return;
	/* unmount: their outcome comes after the restart (or never) */
	for (struct swaiter *w = s->waiters, *next; w; w = next) {
		next = w->next;
		w->done(w->arg, -EIO);
		free(w);
	}
	s->waiters = NULL;
	sdoc_put(s->vis);
	sdoc_put(s->newest);
	for (unsigned k = 0; k < STATE_PAST; k++)
		sdoc_put(s->past[k]);
	free(s->parts);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int state_check(const char *doc, size_t len)
{
	return len > STATE_DOC_MAX ? -EFBIG : state_check_json(doc, len);
}

int state_check_json(const char *doc, size_t len)
{
	const char *end = NULL;
	cJSON *j;

	if (len == 0)
		return -EINVAL;
	/* RFC 8259: a JSON text is UTF-8; a raw 0xff would make every reader
	 * of the document (and mountctl state get --json) fail */
	if (!json_utf8_valid(doc, len))
		return -EINVAL;
	/* cJSON skips every byte <= 32 as whitespace: a NUL or another control
	 * byte between tokens is not JSON (RFC 8259), and a NUL would cut the
	 * document short for its readers (tests/fuzz/corpus/fuzz_state) */
	for (size_t k = 0; k < len; k++)
		if ((unsigned char)doc[k] < 0x20 && (!doc[k] || !strchr("\t\r\n", doc[k])))
			return -EINVAL;
	j = cJSON_ParseWithLengthOpts(doc, len, &end, false);
	if (!j)
		return -EINVAL;
	cJSON_Delete(j);
	for (size_t k = (size_t)(end - doc); k < len; k++)
		if (!strchr(" \t\r\n", doc[k]) || !doc[k])
			return -EINVAL;
	return 0;
}

/* ---- participants (S7) -------------------------------------------------------- */
/* The list normalised to "a,b,c" (*out malloc'd; NULL for none). Names as
 * vote.h V5, separated by commas or whitespace; a duplicate, a bad name or
 * more than VOTE_PARTICIPANTS_MAX: -EINVAL. */
static int norm_parts(const char *list, size_t len, char **out)
{
	char *b = malloc(len + 1), *o = malloc(len + 1), *save = NULL;
	size_t ol = 0;
	unsigned n = 0;
	int err = 0;

	*out = NULL;
	if (!b || !o) {
		free(b);
		free(o);
		return -ENOMEM;
	}
	memcpy(b, list, len);
	b[len] = 0;
	o[0] = 0;
	if (strlen(b) != len)
		err = -EINVAL; /* a NUL inside */
	for (char *t = strtok_r(b, ", \t\r\n", &save); !err && t;
	     t = strtok_r(NULL, ", \t\r\n", &save)) {
		size_t tl = strlen(t);
		if (vote_name_check(t) || ++n > VOTE_PARTICIPANTS_MAX) {
			err = -EINVAL;
			break;
		}
		/* a duplicate: the same name between commas in what we have */
		for (const char *q = o; q < o + ol; q += strcspn(q, ",") + 1)
			if (strcspn(q, ",") == tl && !memcmp(q, t, tl))
				err = -EINVAL;
		if (ol)
			o[ol++] = ',';
		memcpy(o + ol, t, tl);
		ol += tl;
		o[ol] = 0;
	}
	o[ol] = 0;
	free(b);
	if (err || ol == 0) {
		free(o);
		return err;
	}
	*out = o;
	return 0;
}

static int set_parts(struct state_svc *s, const char *list, size_t len)
{
	char *np;
	int err = norm_parts(list, len, &np);

	if (err)
		return err == -ENOMEM ? err : -TXD_ECORRUPT;
	pthread_mutex_lock(&s->lock);
	free(s->parts);
	s->parts = np;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- records ------------------------------------------------------------------- */
static uint8_t *encode_kind(const struct sdoc *d, unsigned kind, size_t *len)
{
	uint8_t *b = malloc(STATE_REC_HDR + d->len);

	if (!b)
		return NULL;
	memset(b, 0, STATE_REC_HDR);
	b[0] = 1;
	b[1] = (uint8_t)kind;
	put32(b + 4, (uint32_t)d->len);
	put64(b + 8, d->version);
	put64(b + 16, d->time_ns);
	put32(b + 24, d->by.uid);
	put32(b + 28, d->by.pid);
	memcpy(b + STATE_REC_HDR, d->b, d->len);
	*len = STATE_REC_HDR + d->len;
	return b;
}

static uint8_t *encode(const struct sdoc *d, size_t *len)
{
	return encode_kind(d, SREC_REPLACE, len);
}

int state_replay(struct state_svc *s, const void *payload, size_t len)
{
	const uint8_t *b = payload;
	struct state_who by;
	struct sdoc *d;
	uint64_t version;

	if (len < STATE_REC_HDR)
		return -TXD_ECORRUPT;
	if (b[0] != 1 || (b[1] != SREC_REPLACE && b[1] != SREC_PARTICIPANTS))
		return -TXD_EFORMAT;
	if (get32(b + 4) != len - STATE_REC_HDR || len - STATE_REC_HDR > STATE_DOC_MAX)
		return -TXD_ECORRUPT;
	if (b[1] == SREC_PARTICIPANTS)
		return set_parts(s, (const char *)b + STATE_REC_HDR, len - STATE_REC_HDR);
	version = get64(b + 8);
	if (version == 0)
		return -TXD_ECORRUPT;
	pthread_mutex_lock(&s->lock);
	if (version <= s->newest->version) { /* S5: already in the snapshot */
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	by.uid = get32(b + 24);
	by.pid = get32(b + 28);
	d = sdoc_new((const char *)b + STATE_REC_HDR, len - STATE_REC_HDR, version, get64(b + 16),
		     &by);
	if (!d) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	sdoc_put(s->newest);
	set_visible(s, d);
	s->newest = sdoc_get(d);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int state_snapshot_encode(struct state_svc *s, void **buf, size_t *len)
{
	uint8_t *rec = NULL, *prec = NULL, *b;
	size_t rl = 0, pl = 0;
	const struct state_who server = { 0, 0 };

	pthread_mutex_lock(&s->lock);
	if (s->newest->version && !(rec = encode(s->newest, &rl)))
		goto nomem;
	if (s->parts) {
		struct sdoc *pd = sdoc_new(s->parts, strlen(s->parts), 0, 0, &server);
		prec = pd ? encode_kind(pd, SREC_PARTICIPANTS, &pl) : NULL;
		free(pd);
		if (!prec)
			goto nomem;
	}
	pthread_mutex_unlock(&s->lock);
	b = malloc(16 + rl + pl);
	if (!b) {
		free(rec);
		free(prec);
		return -ENOMEM;
	}
	memcpy(b, "TXST", 4);
	put32(b + 4, prec ? 2 : 1); /* version 1 unless the participants are set */
	put32(b + 8, (uint32_t)rl);
	if (rl)
		memcpy(b + 12, rec, rl);
	*len = 12 + rl;
	if (prec) {
		put32(b + 12 + rl, (uint32_t)pl);
		memcpy(b + 16 + rl, prec, pl);
		*len += 4 + pl;
	}
	free(rec);
	free(prec);
	*buf = b;
	return 0;
nomem:
	pthread_mutex_unlock(&s->lock);
	free(rec);
	return -ENOMEM;
}

int state_snapshot_decode(struct state_svc *s, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	uint32_t ver, rl;
	int err;

	if (len < 12 || memcmp(b, "TXST", 4))
		return -TXD_ECORRUPT;
	ver = get32(b + 4);
	if (ver != 1 && ver != 2)
		return -TXD_EFORMAT;
	rl = get32(b + 8);
	if (ver == 1 ? rl != len - 12 : rl > len - 12 || len - 12 - rl < 4 ||
			   get32(b + 12 + rl) != len - 16 - rl)
		return -TXD_ECORRUPT;
	if (rl && (err = state_replay(s, b + 12, rl)))
		return err;
	if (ver == 2 && (len - 16 - rl < STATE_REC_HDR || b[16 + rl + 1] != SREC_PARTICIPANTS))
		return -TXD_ECORRUPT;
	return ver == 2 ? state_replay(s, b + 16 + rl, len - 16 - rl) : 0;
}

/* ---- replace ------------------------------------------------------------------- */

/* checked -> appended, under the lock. d->version: 0 for the next one, or
 * the version a committed proposal makes (already there: 1, nothing done). */
static int append_locked(struct state_svc *s, struct sdoc *d, uint64_t if_version,
			 const struct state_fence *fence, uint64_t *lsn)
{
	uint8_t *rec;
	size_t rl;
	int err;

	if (s->failed)
		return -EIO;
	if (if_version != STATE_ANY && if_version != s->newest->version)
		return -EBUSY;
	if (d->version && d->version != s->newest->version + 1)
		return 1; /* S9: replayed or applied already */
	if (fence && (err = fence->check(fence->arg)))
		return err; /* S11: nothing logged */
	d->version = s->newest->version + 1;
	if (!(rec = encode(d, &rl)))
		return -ENOMEM;
	err = s->be.append(s->be.arg, rec, rl, lsn);
	free(rec);
	if (err == -ENOSPC || err == -EDQUOT)
		return err; /* a full disk: nothing reached the log (wal.h W8) */
	if (err) {
		s->failed = true; /* S6: the log may hold part of it */
		return -EIO;
	}
	sdoc_put(s->newest);
	s->newest = sdoc_get(d);
	return 0;
}

/* appended -> durable -> visible (S1, S2), then the hook; drops d. */
static int publish(struct state_svc *s, struct sdoc *d, uint64_t lsn)
{
	struct state_event ev;
	int err = 0;

	/* without the lock: later writers may append behind us meanwhile,
	 * and one sync covers them all */
	if (s->opts.sync && s->be.sync(s->be.arg, lsn)) {
		pthread_mutex_lock(&s->lock);
		s->failed = true; /* S6 */
		pthread_mutex_unlock(&s->lock);
		err = -EIO;
		goto out_put;
	}
	/* durable -> visible, unless a later version already is (S2) */
	pthread_mutex_lock(&s->lock);
	if (d->version > s->vis->version)
		set_visible(s, sdoc_get(d));
	s->replaces++;
	pthread_mutex_unlock(&s->lock);
	ev = (struct state_event){ .version = d->version, .time_ns = d->time_ns, .by = d->by,
				   .bytes = d->len };
	if (s->opts.event)
		s->opts.event(s->opts.event_arg, &ev);
out_put:
	pthread_mutex_lock(&s->lock);
	sdoc_put(d);
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* A state proposal's name (S8): "state-V" or "state-V.K"; 0 and *v, else -1. */
static int parse_pname(const char *name, uint64_t *v)
{
	char *end;

	if (strncmp(name, STATE_PROPOSAL_PREFIX, sizeof(STATE_PROPOSAL_PREFIX) - 1))
		return -1;
	name += sizeof(STATE_PROPOSAL_PREFIX) - 1;
	if (*name < '1' || *name > '9')
		return -1;
	*v = strtoull(name, &end, 10);
	if (*end == '.' && end[1] >= '1' && end[1] <= '9')
		strtoull(end + 1, &end, 10);
	return *end ? -1 : 0;
}

/* S8: open the proposal for d (version newest + 1). 1: plain mode. */
static int propose(struct state_svc *s, struct sdoc *d, uint64_t if_version,
		   const struct state_fence *fence, uint64_t *ticket, char *proposal)
{
	char name[VOTE_NAME_MAX + 1], *parts = NULL;
	uint64_t v, seq;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->parts || !s->opts.vote)
		err = 1;
	else if (s->failed)
		err = -EIO;
	else if (s->pbusy)
		err = -EBUSY; /* S10 */
	else if (if_version != STATE_ANY && if_version != s->newest->version)
		err = -EBUSY;
	else if (fence)
		err = fence->check(fence->arg); /* S11: at the proposal's opening */
	if (!err && !(parts = strdup(s->parts)))
		err = -ENOMEM;
	if (err) {
		pthread_mutex_unlock(&s->lock);
		return err;
	}
	s->pbusy = true;
	v = s->pversion = s->newest->version + 1;
	s->pby = d->by;
	seq = ++s->pseq;
	pthread_mutex_unlock(&s->lock);
	for (unsigned k = 1; k <= 1000; k++) {
		/* an aborted attempt keeps its name for the vote's retention */
		if (k == 1)
			snprintf(name, sizeof(name), STATE_PROPOSAL_PREFIX "%" PRIu64, v);
		else
			snprintf(name, sizeof(name), STATE_PROPOSAL_PREFIX "%" PRIu64 ".%u", v, k);
		pthread_mutex_lock(&s->lock);
		memcpy(s->pname, name, sizeof(name)); /* a decision may come at once */
		pthread_mutex_unlock(&s->lock);
		if ((err = vote_create_reserved(s->opts.vote, name)) != -EEXIST)
			break;
	}
	if (!err && fence) /* S11: checked again where the vote commits */
		err = vote_set_fence(s->opts.vote, name, fence->lease, fence->token);
	if (!err && !(err = vote_set_payload(s->opts.vote, name, d->b, d->len)) &&
	    !(err = vote_set_participants(s->opts.vote, name, parts, strlen(parts), NULL)) &&
	    !(err = vote_sync(s->opts.vote, name))) { /* vote.h V13: durable before it returns */
		free(parts);
		*ticket = seq;
		if (proposal)
			memcpy(proposal, name, sizeof(name));
		return 0;
	}
	if (err != -EEXIST)
		vote_remove(s->opts.vote, name, 0); /* best effort: else its timeout */
	free(parts);
	pthread_mutex_lock(&s->lock);
	s->pbusy = false;
	s->pname[0] = 0;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return err == -EEXIST ? -EBUSY : err;
}

int state_wait(struct state_svc *s, uint64_t ticket, uint64_t *version)
{
	int err;

	pthread_mutex_lock(&s->lock);
	while (s->pbusy && s->pseq == ticket)
		pthread_cond_wait(&s->cv, &s->lock);
	err = outcome_of(s, ticket, version);
	pthread_mutex_unlock(&s->lock);
	return err;
}

int state_wait_async(struct state_svc *s, uint64_t ticket, void (*done)(void *arg, int err),
		     void *arg)
{
	struct swaiter *w = malloc(sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	if (s->pbusy && s->pseq == ticket) {
		*w = (struct swaiter){.next = s->waiters, .ticket = ticket, .done = done, .arg = arg};
		s->waiters = w;
		w = NULL;
		err = -EINPROGRESS;
	} else {
		err = outcome_of(s, ticket, NULL);
	}
	pthread_mutex_unlock(&s->lock);
	free(w);
	return err;
}

int state_wait_cancel(struct state_svc *s, void *arg)
{
	struct swaiter *found = NULL;

	pthread_mutex_lock(&s->lock);
	for (struct swaiter **pp = &s->waiters; *pp; pp = &(*pp)->next)
		if ((*pp)->arg == arg) {
			found = *pp;
			*pp = found->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	free(found);
	return found ? 0 : -ENOENT;
}

int state_submit(struct state_svc *s, const char *doc, size_t len, uint64_t if_version,
		 const struct state_who *by, const struct state_fence *fence, unsigned flags,
		 struct state_result *res)
{
	struct sdoc *d;
	uint64_t lsn = 0, ticket = 0;
	int err = state_check(doc, len);

	if (res)
		memset(res, 0, sizeof(*res));
	if (err)
		return err; /* S4 */
	if (!(d = sdoc_new(doc, len, 0, txd_os->now_realtime_ns(), by)))
		return -ENOMEM;
	err = propose(s, d, if_version, fence, &ticket, res ? res->proposal : NULL);
	if (err <= 0) {
		pthread_mutex_lock(&s->lock);
		sdoc_put(d);
		pthread_mutex_unlock(&s->lock);
		if (res)
			res->ticket = ticket;
		if (err || (flags & STATE_NOWAIT))
			return err;
		return state_wait(s, ticket, res ? &res->version : NULL);
	}
	pthread_mutex_lock(&s->lock);
	err = append_locked(s, d, if_version, fence, &lsn);
	pthread_mutex_unlock(&s->lock);
	if (err) {
		pthread_mutex_lock(&s->lock);
		sdoc_put(d);
		pthread_mutex_unlock(&s->lock);
		return err;
	}
	if (res)
		res->version = d->version;
	return publish(s, d, lsn);
}

int state_replace(struct state_svc *s, const char *doc, size_t len, uint64_t if_version,
		  const struct state_who *by, uint64_t *version)
{
	struct state_result r;
	int err = state_submit(s, doc, len, if_version, by, NULL, 0, &r);

	if (!err && version)
		*version = r.version;
	return err;
}

bool state_test_fail_apply;

/* A committed proposal's payload becomes version v (S9). 0 also when it is
 * there already. */
static int apply_committed(struct state_svc *s, const char *name, uint64_t v,
			   const struct state_who *by)
{
	if (state_test_fail_apply)
		return -EIO; /* a death between DECIDE and REPLACE (tests) */
	size_t len = 0;
	char *b;
	struct sdoc *d;
	uint64_t lsn = 0;
	int err = vote_payload(s->opts.vote, name, NULL, 0, &len);

	if (err)
		return err;
	if (!(b = malloc(len ? len : 1)))
		return -ENOMEM;
	err = vote_payload(s->opts.vote, name, b, len, &len);
	d = err ? NULL : sdoc_new(b, len, v, txd_os->now_realtime_ns(), by);
	free(b);
	if (err || !d)
		return err ? err : -ENOMEM;
	pthread_mutex_lock(&s->lock);
	err = append_locked(s, d, STATE_ANY, NULL, &lsn);
	pthread_mutex_unlock(&s->lock);
	if (err) {
		pthread_mutex_lock(&s->lock);
		sdoc_put(d);
		pthread_mutex_unlock(&s->lock);
		return err == 1 ? 0 : err;
	}
	return publish(s, d, lsn);
}

/* An aborted state proposal's error: -ESTALE when its fence failed at the
 * vote's commit point (S11, vote.h V14), else -ECANCELED. */
static int aborted_err(struct state_svc *s, const char *proposal)
{
	char reason[VOTE_REASON_MAX + 64];
	enum vote_outcome o;

	if (!vote_outcome(s->opts.vote, proposal, &o, reason, sizeof(reason)) &&
	    !strncmp(reason, VOTE_FENCE_REASON, strlen(VOTE_FENCE_REASON)))
		return -ESTALE;
	return -ECANCELED;
}

void state_decided(struct state_svc *s, const char *proposal, enum vote_outcome o)
{
	struct state_who by;
	uint64_t v, seq;
	int r;

	if (strncmp(proposal, STATE_PROPOSAL_PREFIX, sizeof(STATE_PROPOSAL_PREFIX) - 1))
		return;
	pthread_mutex_lock(&s->lock);
	if (!s->pbusy || strcmp(s->pname, proposal) != 0) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	v = s->pversion;
	seq = s->pseq;
	by = s->pby;
	pthread_mutex_unlock(&s->lock);
	r = o == VOTE_COMMITTED ? apply_committed(s, proposal, v, &by) : aborted_err(s, proposal);
	pthread_mutex_lock(&s->lock);
	s->done[seq % 8].seq = seq;
	s->done[seq % 8].result = r;
	s->done[seq % 8].version = v;
	s->pbusy = false;
	s->pname[0] = 0;
	pthread_cond_broadcast(&s->cv);
	struct swaiter *ws = take_waiters(s, seq);
	pthread_mutex_unlock(&s->lock);
	answer_waiters(ws, r);
}

struct found {
	struct {
		char name[VOTE_NAME_MAX + 1];
		uint64_t v;
		enum vote_state st;
		enum vote_outcome o;
	} *a;
	size_t n, cap;
};

static int collect(void *arg, const struct vote_info *vi)
{
	struct found *f = arg;
	uint64_t v;

	if (parse_pname(vi->name, &v))
		return 0;
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 8;
		void *na = realloc(f->a, cap * sizeof(*f->a));
		if (!na)
			return -ENOMEM;
		f->a = na;
		f->cap = cap;
	}
	snprintf(f->a[f->n].name, sizeof(f->a->name), "%s", vi->name);
	f->a[f->n].v = v;
	f->a[f->n].st = vi->state;
	f->a[f->n++].o = vi->outcome;
	return 0;
}

int state_resume(struct state_svc *s)
{
	const struct state_who server = { 0, 0 };
	struct found f = { 0 };
	int err;

	if (!s->opts.vote)
		return 0;
	if ((err = vote_list(s->opts.vote, collect, &f)))
		goto out;
	/* in version order: a committed one at newest + 1 applies, then the
	 * next may; an open one at newest + 1 is the pending proposal */
	for (bool more = true; more && !err;) {
		more = false;
		uint64_t next = state_newest(s) + 1;
		for (size_t i = 0; i < f.n && !err; i++) {
			if (f.a[i].v != next)
				continue;
			if (f.a[i].st == VOTE_DECIDED && f.a[i].o == VOTE_COMMITTED) {
				err = apply_committed(s, f.a[i].name, next, &server);
				more = true;
				break;
			}
			if (f.a[i].st == VOTE_OPENED || f.a[i].st == VOTE_DECIDING) {
				pthread_mutex_lock(&s->lock);
				s->pbusy = true;
				s->pversion = next;
				s->pby = server;
				s->pseq++;
				snprintf(s->pname, sizeof(s->pname), "%s", f.a[i].name);
				pthread_mutex_unlock(&s->lock);
			}
		}
	}
out:
	free(f.a);
	return err;
}

int state_set_participants(struct state_svc *s, const char *list, size_t len,
			   const struct state_who *by)
{
	char *np;
	struct sdoc *d;
	uint8_t *rec;
	size_t rl;
	uint64_t lsn = 0;
	int err = norm_parts(list, len, &np);

	if (err)
		return err;
	d = sdoc_new(np ? np : "", np ? strlen(np) : 0, 0, txd_os->now_realtime_ns(), by);
	rec = d ? encode_kind(d, SREC_PARTICIPANTS, &rl) : NULL;
	free(d);
	if (!rec) {
		free(np);
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	if (s->failed)
		err = -EIO;
	else if (s->pbusy)
		err = -EBUSY; /* S10: not while a state proposal is open */
	else if (!np == !s->parts && (!np || !strcmp(np, s->parts)))
		err = 1; /* the same list: nothing to log */
	else if ((err = s->be.append(s->be.arg, rec, rl, &lsn))) {
		/* a full disk: nothing reached the log (wal.h W8) */
		s->failed = err != -ENOSPC && err != -EDQUOT;
		err = s->failed ? -EIO : err;
	} else {
		free(s->parts);
		s->parts = np;
		np = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	free(rec);
	free(np);
	if (err)
		return err == 1 ? 0 : err;
	if (s->opts.sync && s->be.sync(s->be.arg, lsn)) {
		pthread_mutex_lock(&s->lock);
		s->failed = true;
		pthread_mutex_unlock(&s->lock);
		return -EIO;
	}
	return 0;
}

char *state_participants(struct state_svc *s)
{
	char *p;

	pthread_mutex_lock(&s->lock);
	p = strdup(s->parts ? s->parts : "");
	pthread_mutex_unlock(&s->lock);
	return p;
}

bool state_pending(struct state_svc *s, char *proposal, size_t size)
{
	bool busy;

	pthread_mutex_lock(&s->lock);
	busy = s->pbusy;
	if (proposal && size)
		snprintf(proposal, size, "%s", busy ? s->pname : "");
	pthread_mutex_unlock(&s->lock);
	return busy;
}

uint64_t state_newest(struct state_svc *s)
{
	uint64_t v;

	pthread_mutex_lock(&s->lock);
	v = s->newest->version;
	pthread_mutex_unlock(&s->lock);
	return v;
}

/* ---- reading ------------------------------------------------------------------- */
int state_get(struct state_svc *s, char **doc, size_t *len, uint64_t *version)
{
	struct sdoc *d;
	char *b;

	pthread_mutex_lock(&s->lock);
	d = sdoc_get(s->vis);
	pthread_mutex_unlock(&s->lock);
	b = malloc(d->len + 1);
	if (b) {
		memcpy(b, d->b, d->len + 1);
		*doc = b;
		*len = d->len;
		*version = d->version;
	}
	pthread_mutex_lock(&s->lock);
	sdoc_put(d);
	pthread_mutex_unlock(&s->lock);
	return b ? 0 : -ENOMEM;
}

int state_get_at(struct state_svc *s, uint64_t version, char **doc, size_t *len)
{
	struct sdoc *d = NULL;
	char *b = NULL;

	pthread_mutex_lock(&s->lock);
	if (s->vis->version == version)
		d = s->vis;
	for (unsigned k = 0; !d && k < STATE_PAST; k++)
		if (s->past[k] && s->past[k]->version == version)
			d = s->past[k];
	if (d)
		sdoc_get(d);
	pthread_mutex_unlock(&s->lock);
	if (!d)
		return -ESTALE;
	if ((b = malloc(d->len + 1))) {
		memcpy(b, d->b, d->len + 1);
		*doc = b;
		*len = d->len;
	}
	pthread_mutex_lock(&s->lock);
	sdoc_put(d);
	pthread_mutex_unlock(&s->lock);
	return b ? 0 : -ENOMEM;
}

uint64_t state_version(struct state_svc *s)
{
	uint64_t v;

	pthread_mutex_lock(&s->lock);
	v = s->vis->version;
	pthread_mutex_unlock(&s->lock);
	return v;
}

void state_info(struct state_svc *s, struct state_event *out)
{
	pthread_mutex_lock(&s->lock);
	*out = (struct state_event){ .version = s->vis->version, .time_ns = s->vis->time_ns,
				     .by = s->vis->by, .bytes = s->vis->len };
	pthread_mutex_unlock(&s->lock);
}

uint64_t state_replaces(struct state_svc *s)
{
	uint64_t n;

	pthread_mutex_lock(&s->lock);
	n = s->replaces;
	pthread_mutex_unlock(&s->lock);
	return n;
}
