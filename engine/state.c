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

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "os.h"
#include "txdir.h"

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
	bool failed;                /* S6 */
	uint64_t replaces;
};

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
	*out = s;
	return 0;
}

void state_close(struct state_svc *s)
{
	if (!s)
		return;
	sdoc_put(s->vis);
	sdoc_put(s->newest);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int state_check(const char *doc, size_t len)
{
	const char *end = NULL;
	cJSON *j;

	if (len > STATE_DOC_MAX)
		return -EFBIG;
	if (len == 0)
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

/* ---- records ------------------------------------------------------------------- */
static uint8_t *encode(const struct sdoc *d, size_t *len)
{
	uint8_t *b = malloc(STATE_REC_HDR + d->len);

	if (!b)
		return NULL;
	memset(b, 0, STATE_REC_HDR);
	b[0] = 1;
	b[1] = SREC_REPLACE;
	put32(b + 4, (uint32_t)d->len);
	put64(b + 8, d->version);
	put64(b + 16, d->time_ns);
	put32(b + 24, d->by.uid);
	put32(b + 28, d->by.pid);
	memcpy(b + STATE_REC_HDR, d->b, d->len);
	*len = STATE_REC_HDR + d->len;
	return b;
}

int state_replay(struct state_svc *s, const void *payload, size_t len)
{
	const uint8_t *b = payload;
	struct state_who by;
	struct sdoc *d;
	uint64_t version;

	if (len < STATE_REC_HDR)
		return -TXD_ECORRUPT;
	if (b[0] != 1 || b[1] != SREC_REPLACE)
		return -TXD_EFORMAT;
	if (get32(b + 4) != len - STATE_REC_HDR || len - STATE_REC_HDR > STATE_DOC_MAX)
		return -TXD_ECORRUPT;
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
	sdoc_put(s->vis);
	sdoc_put(s->newest);
	s->vis = d;
	s->newest = sdoc_get(d);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int state_snapshot_encode(struct state_svc *s, void **buf, size_t *len)
{
	uint8_t *rec = NULL, *b;
	size_t rl = 0;

	pthread_mutex_lock(&s->lock);
	if (s->newest->version && !(rec = encode(s->newest, &rl))) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	pthread_mutex_unlock(&s->lock);
	b = malloc(12 + rl);
	if (!b) {
		free(rec);
		return -ENOMEM;
	}
	memcpy(b, "TXST", 4);
	put32(b + 4, 1);
	put32(b + 8, (uint32_t)rl);
	if (rl)
		memcpy(b + 12, rec, rl);
	free(rec);
	*buf = b;
	*len = 12 + rl;
	return 0;
}

int state_snapshot_decode(struct state_svc *s, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	if (len < 12 || memcmp(b, "TXST", 4))
		return -TXD_ECORRUPT;
	if (get32(b + 4) != 1)
		return -TXD_EFORMAT;
	if (get32(b + 8) != len - 12)
		return -TXD_ECORRUPT;
	return len == 12 ? 0 : state_replay(s, b + 12, len - 12);
}

/* ---- replace ------------------------------------------------------------------- */

/* checked -> appended, under the lock. */
static int append_locked(struct state_svc *s, struct sdoc *d, uint64_t if_version,
			 uint64_t *lsn)
{
	uint8_t *rec;
	size_t rl;
	int err;

	if (s->failed)
		return -EIO;
	if (if_version != STATE_ANY && if_version != s->newest->version)
		return -EBUSY;
	d->version = s->newest->version + 1;
	if (!(rec = encode(d, &rl)))
		return -ENOMEM;
	err = s->be.append(s->be.arg, rec, rl, lsn);
	free(rec);
	if (err) {
		s->failed = true; /* S6: the log may hold part of it */
		return -EIO;
	}
	sdoc_put(s->newest);
	s->newest = sdoc_get(d);
	return 0;
}

int state_replace(struct state_svc *s, const char *doc, size_t len, uint64_t if_version,
		  const struct state_who *by, uint64_t *version)
{
	struct state_event ev;
	struct sdoc *d;
	uint64_t lsn = 0;
	int err = state_check(doc, len);

	if (err)
		return err; /* S4 */
	if (!(d = sdoc_new(doc, len, 0, txd_os->now_realtime_ns(), by)))
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	err = append_locked(s, d, if_version, &lsn);
	pthread_mutex_unlock(&s->lock);
	if (err)
		goto out_put;
	/* appended -> durable (S1), without the lock: later writers may append
	 * behind us meanwhile, and one sync covers them all */
	if (s->opts.sync && s->be.sync(s->be.arg, lsn)) {
		pthread_mutex_lock(&s->lock);
		s->failed = true; /* S6 */
		pthread_mutex_unlock(&s->lock);
		err = -EIO;
		goto out_put;
	}
	/* durable -> visible, unless a later version already is (S2) */
	pthread_mutex_lock(&s->lock);
	if (d->version > s->vis->version) {
		sdoc_put(s->vis);
		s->vis = sdoc_get(d);
	}
	s->replaces++;
	pthread_mutex_unlock(&s->lock);
	if (version)
		*version = d->version;
	ev = (struct state_event){ .version = d->version, .time_ns = d->time_ns, .by = *by,
				   .bytes = len };
	if (s->opts.event)
		s->opts.event(s->opts.event_arg, &ev);
out_put:
	pthread_mutex_lock(&s->lock);
	sdoc_put(d);
	pthread_mutex_unlock(&s->lock);
	return err;
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
