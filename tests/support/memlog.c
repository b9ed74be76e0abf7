/*
 * memlog.c — the in-memory lease backend (memlog.h).
 */
#include "memlog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void memlog_init(struct memlog *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
}

void memlog_release(struct memlog *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->recs[i].b);
	free(m->recs);
	pthread_mutex_destroy(&m->lock);
}

void memlog_truncate(struct memlog *m, size_t upto)
{
	pthread_mutex_lock(&m->lock);
	while (m->n > upto)
		free(m->recs[--m->n].b);
	if (m->durable > m->n)
		m->durable = m->n;
	pthread_mutex_unlock(&m->lock);
}

static int ml_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct memlog *m = arg;
	int err = 0;

	pthread_mutex_lock(&m->lock);
	m->appends++;
	if (m->broken || m->appends == m->fail_append) {
		m->broken = true;
		err = -EIO;
		goto out_unlock;
	}
	if (m->n == m->cap) {
		size_t nc = m->cap ? 2 * m->cap : 64;
		struct memrec *nr = realloc(m->recs, nc * sizeof(*nr));

		if (!nr) {
			err = -ENOMEM;
			goto out_unlock;
		}
		m->recs = nr;
		m->cap = nc;
	}
	m->recs[m->n].b = malloc(len);
	if (!m->recs[m->n].b) {
		err = -ENOMEM;
		goto out_unlock;
	}
	memcpy(m->recs[m->n].b, rec, len);
	m->recs[m->n].len = len;
	*lsn = ++m->n;
out_unlock:
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int ml_sync(void *arg, uint64_t lsn)
{
	struct memlog *m = arg;
	int err = 0;

	pthread_mutex_lock(&m->lock);
	m->syncs++;
	if (m->broken || m->syncs == m->fail_sync) {
		m->broken = true;
		err = -EIO;
	} else if (lsn > m->durable) {
		m->durable = lsn;
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

struct lease_backend memlog_backend(struct memlog *m)
{
	return (struct lease_backend){ .append = ml_append, .sync = ml_sync, .arg = m };
}

int memlog_replay(struct memlog *m, size_t upto, struct lease_svc *s)
{
	for (size_t i = 0; i < upto && i < m->n; i++) {
		int err = lease_replay(s, m->recs[i].b, m->recs[i].len);

		if (err)
			return err;
	}
	return 0;
}
