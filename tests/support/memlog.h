/*
 * memlog.h — an in-memory lease_backend for tests: a record list with a
 * durable prefix (what sync covered), call counters, and injected failures
 * (the nth append or sync fails; after a failure the log is sticky-failed,
 * like the WAL). A "crash" is modelled by replaying a prefix of the records
 * into a fresh service: memlog_replay(m, m->durable, s) is a power cut,
 * memlog_replay(m, m->n, s) a process crash.
 */
#ifndef TXD_MEMLOG_H
#define TXD_MEMLOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../engine/lease.h"

struct memlog {
	pthread_mutex_t lock;
	struct memrec {
		uint8_t *b;
		size_t len;
	} *recs;
	size_t n, cap;
	size_t durable;                  /* records [0, durable) are synced */
	uint64_t appends, syncs;         /* calls so far */
	uint64_t fail_append, fail_sync; /* the nth call fails (0: never) */
	bool broken;
};

void memlog_init(struct memlog *m);
void memlog_release(struct memlog *m);
struct lease_backend memlog_backend(struct memlog *m);
/* Drops records [upto, n) (what a power cut lost). */
void memlog_truncate(struct memlog *m, size_t upto);
/* Replay records [0, upto) into s; 0 or the first error. */
int memlog_replay(struct memlog *m, size_t upto, struct lease_svc *s);

#endif
