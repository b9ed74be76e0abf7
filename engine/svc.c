/*
 * svc.c — the services host (svc.h).
 */
#include "svc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

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
	pthread_mutex_t lock;        /* stop (leaf) */
	pthread_cond_t cv;
	bool stop, running;
	pthread_t worker;
	struct evlog *events;
	_Atomic uint64_t wait_ns_sum, wait_count;
	void (*_Atomic listener)(void *arg, const struct lease_event *ev);
	void *_Atomic listener_arg;
};

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

static void on_event(void *arg, const struct lease_event *ev)
{
	struct svc *s = arg;
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
		break;
	case LEV_RELEASE:
		type = ev->how == LEASE_END_BREAK ? "lease_break"
		       : ev->how == LEASE_END_DEATH || ev->how == LEASE_END_DEAD ? "lease_cleanup"
		       : "lease_release";
		add_holder(o, &ev->lease);
		cJSON_AddStringToObject(o, "how", lease_end_name(ev->how));
		ev_add_u64(o, "by_pid", ev->by.proc.pid);
		ev_add_u64(o, "by_uid", ev->by.uid);
		break;
	case LEV_DEADLOCK: {
		ev_add_u64(o, "pid", ev->by.proc.pid);
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
	ev_emit(s->events, txd_os->now_realtime_ns(), type, o);
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
	pthread_cond_init(&s->cv, NULL);
	s->wal_be = lease_wal_backend(w);
	s->upgrade = opts->upgrade;
	s->upgrade_arg = opts->upgrade_arg;
	s->events = opts->events;
	if ((err = proc_open(opts->proc_root, &s->proc)))
		goto out_free;
	if ((err = lease_proc_open(s->proc, &s->lp)))
		goto out_proc;
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
out_proc:
	proc_close(s->proc);
out_free:
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->up_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return err;
}

int svc_replay(struct svc *s, uint16_t type, const void *payload, size_t len)
{
	if (type == WAL_REC_LEASE)
		return lease_replay(s->lease, payload, len);
	return -TXD_EFORMAT;
}

int svc_ckpt_save(struct svc *s, void **buf, size_t *len)
{
	return lease_snapshot_encode(s->lease, buf, len);
}

int svc_ckpt_load(struct svc *s, const void *buf, size_t len)
{
	return lease_snapshot_decode(s->lease, buf, len);
}

/* V4: the tick at least every second, sooner for a TTL. */
static void *worker_main(void *arg)
{
	struct svc *s = arg;
	uint64_t next = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		uint64_t now = txd_os->now_monotonic_ns();
		if (next && next <= now) {
			pthread_mutex_unlock(&s->lock);
			(void)lease_tick(s->lease, &next); /* may block on the WAL's sync */
			pthread_mutex_lock(&s->lock);
			continue;
		}
		uint64_t wait = 1000000000ull;
		if (next && next - now < wait)
			wait = next - now;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(wait / 1000000000ull);
		until.tv_nsec += (long)(wait % 1000000000ull);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&s->cv, &s->lock, &until) == ETIMEDOUT && !next)
			next = txd_os->now_monotonic_ns(); /* the once-a-second tick */
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int svc_start(struct svc *s)
{
	lease_proc_attach(s->lp, s->lease);
	int err = lease_start(s->lease);
	if (err)
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
	lease_close(s->lease);
	proc_close(s->proc);
	pthread_cond_destroy(&s->cv);
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
