/*
 * test_state.c — the global state document against S1-S6 (state.h), with an
 * in-memory backend (records, a durable prefix, injected failures, a gate
 * that holds a sync), the WAL adapter, and the services host's checkpoint
 * sub-section (svc.h V2).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>

#include "../../engine/core.h"
#include "../../engine/rec.h"
#include "../../engine/state.h"
#include "../../engine/state_wal.h"
#include "../../engine/svc.h"
#include "../../engine/txdir.h"
#include "../../engine/vote.h"
#include "faultos.h"
#include "txdtest.h"

/* ---- the in-memory backend ------------------------------------------------ */
struct slog {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct {
		uint8_t *b;
		size_t len;
	} rec[1024];
	size_t n, durable;
	uint64_t appends, syncs, fail_append, fail_sync; /* the nth call fails */
	bool gate;            /* syncs wait while set */
	int in_sync;
};

static struct slog lg;

static int sl_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct slog *l = arg;
	int err = 0;

	pthread_mutex_lock(&l->lock);
	if (++l->appends == l->fail_append || l->n == 1024) {
		err = -EIO;
	} else {
		l->rec[l->n].b = malloc(len);
		memcpy(l->rec[l->n].b, rec, len);
		l->rec[l->n].len = len;
		*lsn = ++l->n;
	}
	pthread_mutex_unlock(&l->lock);
	return err;
}

static int sl_sync(void *arg, uint64_t lsn)
{
	struct slog *l = arg;
	int err = 0;

	pthread_mutex_lock(&l->lock);
	l->in_sync++;
	pthread_cond_broadcast(&l->cv);
	while (l->gate)
		pthread_cond_wait(&l->cv, &l->lock);
	l->in_sync--;
	if (++l->syncs == l->fail_sync)
		err = -EIO;
	else if (lsn > l->durable)
		l->durable = lsn;
	pthread_mutex_unlock(&l->lock);
	return err;
}

static void slog_reset(void)
{
	for (size_t i = 0; i < lg.n; i++)
		free(lg.rec[i].b);
	memset(&lg, 0, sizeof(lg));
	pthread_mutex_init(&lg.lock, NULL);
	pthread_cond_init(&lg.cv, NULL);
}

/* ---- events ------------------------------------------------------------------ */
static struct {
	int n;
	struct state_event last;
} seen;

static void on_event(void *arg, const struct state_event *ev)
{
	(void)arg;
	__atomic_add_fetch(&seen.n, 1, __ATOMIC_SEQ_CST);
	seen.last = *ev;
}

static struct state_svc *svc;
static const struct state_who ME = { .pid = 42, .uid = 1000 };

static struct state_svc *open_svc(void)
{
	struct state_opts o = { .sync = true, .event = on_event };
	struct state_backend be = { sl_append, sl_sync, &lg };
	struct state_svc *s;

	cr_assert_eq(state_open(&o, &be, &s), 0);
	return s;
}

/* A restart from the first upto records. */
static struct state_svc *restart(struct state_svc *old, size_t upto)
{
	struct state_svc *s;

	state_close(old);
	lg.fail_append = lg.fail_sync = 0;
	s = open_svc();
	for (size_t i = 0; i < upto; i++)
		cr_assert_eq(state_replay(s, lg.rec[i].b, lg.rec[i].len), 0);
	return s;
}

static void setup(void)
{
	slog_reset();
	memset(&seen, 0, sizeof(seen));
	svc = open_svc();
}

static void teardown(void)
{
	state_close(svc);
	svc = NULL;
	slog_reset();
}

TestSuite(state, .init = setup, .fini = teardown);

static void expect(struct state_svc *s, const char *doc, uint64_t version)
{
	char *d;
	size_t len;
	uint64_t v;

	cr_assert_eq(state_get(s, &d, &len, &v), 0);
	cr_assert_str_eq(d, doc);
	cr_assert_eq(len, strlen(doc));
	cr_assert_eq(v, version, "version %lu, want %lu", (unsigned long)v, (unsigned long)version);
	free(d);
}

static int put(struct state_svc *s, const char *doc, uint64_t if_version)
{
	return state_replace(s, doc, strlen(doc), if_version, &ME, NULL);
}

Test(state, fresh_store_is_version_0_with_an_empty_object)
{
	expect(svc, "{}\n", 0);
	cr_assert_eq(state_version(svc), 0);
	cr_assert_eq(lg.n, 0, "nothing logged");
}

Test(state, S2_replace_stores_the_bytes_and_bumps_the_version_by_one)
{
	uint64_t v = 0;

	cr_assert_eq(state_replace(svc, "{\"a\": 1}\n", 9, STATE_ANY, &ME, &v), 0);
	cr_assert_eq(v, 1);
	expect(svc, "{\"a\": 1}\n", 1);
	cr_assert_eq(put(svc, "[1,2]", STATE_ANY), 0);
	cr_assert_eq(put(svc, "  \"s\"  ", STATE_ANY), 0);
	cr_assert_eq(put(svc, "7", STATE_ANY), 0);
	expect(svc, "7", 4);
	cr_assert_eq(state_replaces(svc), 4);
}

Test(state, S12_earlier_versions_stay_readable_by_version)
{
	char *d = NULL, want[32];
	size_t len;

	for (int k = 1; k <= STATE_PAST + 3; k++) {
		snprintf(want, sizeof(want), "[%d]", k);
		cr_assert_eq(put(svc, want, STATE_ANY), 0);
	}
	uint64_t cur = state_version(svc);
	for (uint64_t v = cur - STATE_PAST; v <= cur; v++) {
		cr_assert_eq(state_get_at(svc, v, &d, &len), 0, "version %lu", (unsigned long)v);
		snprintf(want, sizeof(want), "[%lu]", (unsigned long)v);
		cr_assert_str_eq(d, want);
		cr_assert_eq(len, strlen(want));
		free(d);
	}
	cr_assert_eq(state_get_at(svc, cur - STATE_PAST - 1, &d, &len), -ESTALE, "too old");
	cr_assert_eq(state_get_at(svc, cur + 1, &d, &len), -ESTALE, "not yet");
}

Test(state, S4_invalid_json_is_refused_and_the_old_document_stays)
{
	const char *bad[] = { "", "   \n", "{", "{\"a\":}", "{} {}", "{}x", "nul", "[1,]",
			      "{\"a\":1}\n\n]" };

	cr_assert_eq(put(svc, "{\"keep\":true}", STATE_ANY), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(put(svc, bad[i], STATE_ANY), -EINVAL, "accepted \"%s\"", bad[i]);
	cr_assert_eq(state_replace(svc, "{}\0{}", 5, STATE_ANY, &ME, NULL), -EINVAL,
		     "an embedded NUL");
	expect(svc, "{\"keep\":true}", 1);
	cr_assert_eq(lg.n, 1, "nothing logged for a refused document");
}

Test(state, S4_a_document_over_the_limit_is_EFBIG)
{
	size_t n = STATE_DOC_MAX + 1;
	char *big = malloc(n);

	memset(big, ' ', n);
	big[0] = '1';
	cr_assert_eq(state_replace(svc, big, n, STATE_ANY, &ME, NULL), -EFBIG);
	cr_assert_eq(state_replace(svc, big, n - 1, STATE_ANY, &ME, NULL), 0, "the limit itself");
	cr_assert_eq(state_version(svc), 1);
	free(big);
}

Test(state, S3_compare_and_swap_refuses_a_stale_version)
{
	cr_assert_eq(put(svc, "1", 0), 0);
	cr_assert_eq(put(svc, "2", 0), -EBUSY, "version 0 is stale");
	cr_assert_eq(put(svc, "2", 5), -EBUSY, "a version from the future");
	cr_assert_eq(put(svc, "2", 1), 0);
	expect(svc, "2", 2);
	cr_assert_eq(lg.n, 2);
}

/* S3 under contention: 8 threads increment one counter by compare-and-swap. */
struct incr {
	int swaps;
};

static void *incr_main(void *arg)
{
	struct incr *in = arg;

	for (int done = 0; done < 50;) {
		char *d, nd[32];
		size_t len;
		uint64_t v;

		cr_assert_eq(state_get(svc, &d, &len, &v), 0);
		long c = strtol(d, NULL, 10);
		free(d);
		snprintf(nd, sizeof(nd), "%ld", c + 1);
		int err = state_replace(svc, nd, strlen(nd), v, &ME, NULL);
		cr_assert(err == 0 || err == -EBUSY, "err %d", err);
		if (!err) {
			in->swaps++;
			done++;
		}
	}
	return NULL;
}

Test(state, S3_eight_writers_lose_no_increment)
{
	pthread_t t[8];
	struct incr in[8] = { 0 };
	char *d;
	size_t len;
	uint64_t v;
	int total = 0;

	cr_assert_eq(put(svc, "0", STATE_ANY), 0);
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, incr_main, &in[i]);
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		total += in[i].swaps;
	}
	cr_assert_eq(state_get(svc, &d, &len, &v), 0);
	cr_assert_eq(strtol(d, NULL, 10), total);
	cr_assert_eq(v, (uint64_t)total + 1);
	free(d);
}

/* S1: while the record's sync is held, readers see the old document. */
struct bg {
	int err;
	bool done;
};

static void *replace_main(void *arg)
{
	struct bg *b = arg;
	int err = put(svc, "{\"new\":1}", STATE_ANY);

	pthread_mutex_lock(&lg.lock);
	b->err = err;
	b->done = true;
	pthread_cond_broadcast(&lg.cv);
	pthread_mutex_unlock(&lg.lock);
	return NULL;
}

/* Start replace_main and return once its sync is held (or it ended
 * without one: then the test fails). */
static void start_held(pthread_t *t, struct bg *b)
{
	bool held;

	memset(b, 0, sizeof(*b));
	lg.gate = true;
	pthread_create(t, NULL, replace_main, b);
	pthread_mutex_lock(&lg.lock);
	while (!lg.in_sync && !b->done)
		pthread_cond_wait(&lg.cv, &lg.lock);
	held = lg.in_sync;
	pthread_mutex_unlock(&lg.lock);
	if (!held)
		pthread_join(*t, NULL);
	cr_assert(held, "the replace returned without waiting for its sync");
}

Test(state, S1_durable_before_visible)
{
	pthread_t t;
	struct bg b;

	start_held(&t, &b);
	/* appended, not durable */
	cr_assert_eq(lg.n, 1);
	expect(svc, "{}\n", 0);
	cr_assert_eq(seen.n, 0, "no event before durable");
	cr_assert_eq(put(svc, "2", 0), -EBUSY, "the appended version counts for CAS");
	pthread_mutex_lock(&lg.lock);
	lg.gate = false;
	pthread_cond_broadcast(&lg.cv);
	pthread_mutex_unlock(&lg.lock);
	pthread_join(t, NULL);
	cr_assert_eq(b.err, 0);
	expect(svc, "{\"new\":1}", 1);
	cr_assert_eq(seen.n, 1);
	cr_assert_eq(seen.last.version, 1);
	cr_assert_eq(seen.last.by.pid, 42);
	cr_assert_eq(seen.last.by.uid, 1000);
	cr_assert_eq(seen.last.bytes, 9);
}

Test(state, S1_without_sync_visible_once_appended)
{
	struct state_opts o = { .sync = false };
	struct state_backend be = { sl_append, sl_sync, &lg };
	struct state_svc *s;

	cr_assert_eq(state_open(&o, &be, &s), 0);
	cr_assert_eq(put(s, "1", STATE_ANY), 0);
	expect(s, "1", 1);
	cr_assert_eq(lg.syncs, 0);
	state_close(s);
}

Test(state, S6_a_failed_sync_is_sticky_and_reads_go_on)
{
	cr_assert_eq(put(svc, "1", STATE_ANY), 0);
	lg.fail_sync = lg.syncs + 1;
	cr_assert_eq(put(svc, "2", STATE_ANY), -EIO);
	expect(svc, "1", 1);
	cr_assert_eq(put(svc, "3", STATE_ANY), -EIO, "sticky");
	cr_assert_eq(put(svc, "{", STATE_ANY), -EINVAL, "checked before the failure");
	expect(svc, "1", 1);
}

Test(state, S6_a_failed_append_is_sticky)
{
	lg.fail_append = 1;
	cr_assert_eq(put(svc, "1", STATE_ANY), -EIO);
	cr_assert_eq(put(svc, "1", STATE_ANY), -EIO);
	expect(svc, "{}\n", 0);
}

Test(state, S5_replay_restores_and_is_idempotent)
{
	cr_assert_eq(put(svc, "{\"v\":1}", STATE_ANY), 0);
	cr_assert_eq(put(svc, "{\"v\":2}", STATE_ANY), 0);
	svc = restart(svc, lg.n);
	expect(svc, "{\"v\":2}", 2);
	cr_assert_eq(seen.n, 2, "replay emits nothing");
	/* replayed again over itself: nothing changes */
	for (size_t i = 0; i < lg.n; i++)
		cr_assert_eq(state_replay(svc, lg.rec[i].b, lg.rec[i].len), 0);
	expect(svc, "{\"v\":2}", 2);
	cr_assert_eq(put(svc, "{\"v\":3}", 2), 0, "CAS continues from the replayed version");
	svc = restart(svc, 1);
	expect(svc, "{\"v\":1}", 1);
}

Test(state, S5_snapshot_then_replay_of_every_later_record)
{
	void *snap;
	size_t len;

	cr_assert_eq(put(svc, "1", STATE_ANY), 0);
	size_t lsn = lg.n; /* the checkpoint's LSN */
	cr_assert_eq(put(svc, "2", STATE_ANY), 0);
	cr_assert_eq(state_snapshot_encode(svc, &snap, &len), 0); /* after the LSN */
	cr_assert_eq(put(svc, "3", STATE_ANY), 0);
	state_close(svc);
	svc = open_svc();
	cr_assert_eq(state_snapshot_decode(svc, snap, len), 0);
	expect(svc, "2", 2);
	for (size_t i = lsn; i < lg.n; i++)
		cr_assert_eq(state_replay(svc, lg.rec[i].b, lg.rec[i].len), 0);
	expect(svc, "3", 3);
	free(snap);
}

Test(state, S5_snapshot_holds_an_appended_but_unsynced_document)
{
	pthread_t t;
	struct bg b;
	void *snap;
	size_t len;

	start_held(&t, &b);
	cr_assert_eq(state_snapshot_encode(svc, &snap, &len), 0);
	pthread_mutex_lock(&lg.lock);
	lg.gate = false;
	pthread_cond_broadcast(&lg.cv);
	pthread_mutex_unlock(&lg.lock);
	pthread_join(t, NULL);
	state_close(svc);
	svc = open_svc();
	cr_assert_eq(state_snapshot_decode(svc, snap, len), 0);
	expect(svc, "{\"new\":1}", 1);
	free(snap);
}

Test(state, S5_snapshot_of_a_fresh_store_and_bad_snapshots)
{
	void *snap;
	size_t len;

	cr_assert_eq(state_snapshot_encode(svc, &snap, &len), 0);
	cr_assert_eq(len, 12);
	cr_assert_eq(state_snapshot_decode(svc, snap, len), 0);
	expect(svc, "{}\n", 0);
	((uint8_t *)snap)[4] = 9;
	cr_assert_eq(state_snapshot_decode(svc, snap, len), -TXD_EFORMAT);
	cr_assert_eq(state_snapshot_decode(svc, snap, 11), -TXD_ECORRUPT);
	free(snap);
}

Test(state, replay_refuses_malformed_records)
{
	uint8_t r[STATE_REC_HDR + 2];

	cr_assert_eq(put(svc, "{}", STATE_ANY), 0);
	memcpy(r, lg.rec[0].b, sizeof(r));
	cr_assert_eq(state_replay(svc, r, 10), -TXD_ECORRUPT, "short");
	cr_assert_eq(state_replay(svc, r, sizeof(r) - 1), -TXD_ECORRUPT, "length");
	r[1] = 7;
	cr_assert_eq(state_replay(svc, r, sizeof(r)), -TXD_EFORMAT, "kind");
	r[1] = SREC_REPLACE;
	r[0] = 2;
	cr_assert_eq(state_replay(svc, r, sizeof(r)), -TXD_EFORMAT, "version");
}

/* ---- fault injection over every append and sync of three replaces ----------------- */
static const char *DOCS[] = { "{\"n\":1,\"pad\":\"aaaa\"}", "{\"n\":2,\"pad\":\"bb\"}",
			      "{\"n\":3}" };

Test(state, fault_injection_every_append_and_sync)
{
	/* a clean run: 3 appends, 3 syncs */
	for (int which = 0; which < 2; which++) {
		for (uint64_t k = 1; k <= 4; k++) {
			for (int cut = 0; cut < 2; cut++) {
				int acked = 0;

				state_close(svc);
				slog_reset();
				svc = open_svc();
				if (which)
					lg.fail_sync = k;
				else
					lg.fail_append = k;
				for (int i = 0; i < 3; i++)
					if (put(svc, DOCS[i], (uint64_t)i) == 0)
						acked = i + 1;
				/* a process crash keeps every appended record; a
				 * power cut only the synced ones */
				svc = restart(svc, cut ? lg.durable : lg.n);
				char *d;
				size_t len;
				uint64_t v;
				cr_assert_eq(state_get(svc, &d, &len, &v), 0);
				/* old or new, whole, with its version */
				if (v == 0)
					cr_assert_str_eq(d, "{}\n");
				else
					cr_assert_str_eq(d, DOCS[v - 1]);
				cr_assert_geq(v, (uint64_t)acked, "an acknowledged replace lost (k %lu)",
					      (unsigned long)k);
				cr_assert_leq(v, (uint64_t)acked + 1, "more than one unacknowledged");
				free(d);
				/* and the store goes on from there */
				cr_assert_eq(put(svc, "{\"after\":1}", v), 0);
			}
		}
	}
}

/* ---- the WAL adapter ------------------------------------------------------------- */
static int wal_fn(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		  uint32_t len)
{
	(void)pos;
	cr_assert_eq(type, WAL_REC_STATE);
	return state_replay(arg, payload, len);
}

Test(state, wal_backend_round_trip)
{
	char dir[] = "/tmp/txd-state-XXXXXX";
	struct state_opts o = { .sync = true };
	struct state_backend be;
	struct state_svc *s;
	struct wal *w;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(wal_open(dir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 0, wal_fn, NULL), 0);
	be = state_wal_backend(w);
	cr_assert_eq(state_open(&o, &be, &s), 0);
	for (int i = 0; i < 5; i++) {
		char d[32];

		snprintf(d, sizeof(d), "{\"i\": %d}", i);
		cr_assert_eq(put(s, d, STATE_ANY), 0);
	}
	cr_assert_eq(wal_durable_lsn(w), wal_last_lsn(w), "durable before visible");
	state_close(s);
	wal_close(w);
	cr_assert_eq(wal_open(dir, NULL, &w), 0);
	cr_assert_eq(state_open(&o, &be, &s), 0);
	cr_assert_eq(wal_replay(w, 0, wal_fn, s), 0);
	expect(s, "{\"i\": 4}", 5);
	state_close(s);
	wal_close(w);
	tt_rmtree(dir);
}

/* ---- the services host: the checkpoint's sub-section (svc.h V2) --------------------- */
Test(state, V2_checkpoint_section_with_and_without_the_state)
{
	char dir[] = "/tmp/txd-state-XXXXXX";
	struct svc_opts so = { .sync_grants = true };
	struct svc *h;
	struct wal *w;
	void *sec, *lease_only;
	size_t len, llen;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(wal_open(dir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 0, wal_fn, NULL), 0);
	cr_assert_eq(svc_open(w, &so, &h), 0);
	cr_assert_eq(state_replace(svc_state(h), "[\"ck\"]", 6, 0, &ME, NULL), 0);
	cr_assert_eq(svc_ckpt_save(h, &sec, &len), 0);
	svc_close(h);
	/* a section written before the state existed: the lease snapshot only */
	cr_assert_eq(svc_open(w, &so, &h), 0);
	cr_assert_eq(lease_snapshot_encode(svc_lease(h), &lease_only, &llen), 0);
	cr_assert_eq(svc_ckpt_load(h, lease_only, llen), 0);
	expect(svc_state(h), "{}\n", 0);
	svc_close(h);
	cr_assert_eq(svc_open(w, &so, &h), 0);
	cr_assert_eq(svc_ckpt_load(h, sec, len), 0);
	expect(svc_state(h), "[\"ck\"]", 1);
	cr_assert_eq(svc_ckpt_load(h, sec, len - 1), -TXD_ECORRUPT, "a torn sub-section");
	svc_close(h);
	free(sec);
	free(lease_only);
	wal_close(w);
	tt_rmtree(dir);
}

/* ---- .txdir/state/ through the public API (ctl_state.h) ------------------------------ */
static const struct txd_opts DUR = { .durability = TXD_DUR_FSYNC };
#define DOC ".txdir/state/global_state.json"
#define UPD ".txdir/state/update"

static void expect_file(struct txd_fs *fs, const char *path, const char *want)
{
	char *d;
	size_t len;

	cr_assert_eq(tt_get(fs, path, &d, &len), 0);
	cr_assert_eq(len, strlen(want), "%s: \"%.*s\"", path, (int)len, d);
	cr_assert_eq(memcmp(d, want, len), 0, "%s: \"%.*s\"", path, (int)len, d);
	free(d);
}

static uint64_t xversion(struct txd_fs *fs)
{
	uint64_t node;
	char v[32] = { 0 };

	cr_assert_eq(tt_resolve(fs, DOC, NULL, NULL, &node), 0);
	cr_assert_gt(txd_getxattr(fs, node, "user.txdir.version", v, sizeof(v) - 1), 0);
	return strtoull(v, NULL, 10);
}

Test(state, ctl_document_replace_at_flush_survives_a_reopen_and_a_checkpoint)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	uint64_t node;
	char names[64];

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_file(fs, DOC, "{}\n");
	cr_assert_eq(xversion(fs), 0);
	cr_assert_eq(tt_put(fs, DOC, "{\"a\": [1, 2]}\n", 14), 0);
	expect_file(fs, DOC, "{\"a\": [1, 2]}\n");
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(tt_put(fs, DOC, "{\"a\": ", 6), -EINVAL, "close returns EINVAL");
	expect_file(fs, DOC, "{\"a\": [1, 2]}\n");
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(tt_resolve(fs, DOC, NULL, NULL, &node), 0);
	cr_assert_eq(txd_listxattr(fs, node, names, sizeof(names)), 0, "not listed");
	txd_fs_close(fs); /* a checkpoint: the sub-section */
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_file(fs, DOC, "{\"a\": [1, 2]}\n");
	cr_assert_eq(xversion(fs), 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, ctl_document_in_several_writes_acts_once_at_flush)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_open_out oo;
	uint64_t node;

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_resolve(fs, DOC, NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, &tt_cred, node, O_WRONLY | O_TRUNC, &oo), 0);
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0, "an O_TRUNC open publishes nothing");
	cr_assert_eq(txd_write(fs, &tt_cred, oo.fh, "[1,", 3, 0), 3);
	cr_assert_eq(txd_write(fs, &tt_cred, oo.fh, "2]", 2, 3), 2);
	cr_assert_eq(xversion(fs), 0, "nothing before the flush");
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0);
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0, "nothing written since");
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(txd_release(fs, oo.fh), 0);
	expect_file(fs, DOC, "[1,2]");
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, ctl_update_compare_and_swap)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	const char *u0 = "{\"if_version\": 0, \"document\": {\"n\": 1}}\n";

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, UPD, u0, strlen(u0)), 0);
	expect_file(fs, DOC, "{\"n\": 1}\n");
	cr_assert_eq(tt_put(fs, UPD, u0, strlen(u0)), -EBUSY, "stale");
	const char *bad[] = { "{\"document\": 1}", "{\"if_version\": \"1\", \"document\": 1}",
			      "{\"if_version\": 1.5, \"document\": 1}",
			      "{\"if_version\": -1, \"document\": 1}", "{\"if_version\": 1}",
			      "{\"if_version\": 1, \"document\": 1, \"if_lease\": \"x\"}", "[1]",
			      "{\"if_version\": 1, " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(tt_put(fs, UPD, bad[i], strlen(bad[i])), -EINVAL, "accepted %s", bad[i]);
	cr_assert_eq(xversion(fs), 1);
	const char *u1 = "{\"if_version\": 1, \"document\": [true]}";
	cr_assert_eq(tt_put(fs, UPD, u1, strlen(u1)), 0);
	cr_assert_eq(xversion(fs), 2);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* update keeps the document's own bytes (big numbers, spacing, order), and
 * its limit is the document's, not the envelope's */
Test(state, ctl_update_keeps_the_documents_bytes_up_to_the_limit)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	const char *u0 = "{\"document\" :{\"id\": 12345678901234567890123, \"f\": 1.10,"
			 " \"s\": \"}]\\\"{\"} , \"if_version\": 0}";
	cr_assert_eq(tt_put(fs, UPD, u0, strlen(u0)), 0);
	expect_file(fs, DOC, "{\"id\": 12345678901234567890123, \"f\": 1.10, \"s\": \"}]\\\"{\"}\n");
	const char *u1 = "{\"if_version\": 1, \"\\u0064ocument\": [1, 2]}";
	cr_assert_eq(tt_put(fs, UPD, u1, strlen(u1)), 0, "an escaped key: parsed");
	expect_file(fs, DOC, "[1,2]\n");
	/* a document of STATE_DOC_MAX bytes (with its newline) in an envelope */
	size_t dl = STATE_DOC_MAX - 1;
	char *big = malloc(dl + 64);
	int h = sprintf(big, "{\"if_version\": 2, \"document\": \"");
	memset(big + h, 'x', dl - 2);
	sprintf(big + h + dl - 2, "\"}");
	cr_assert_eq(tt_put(fs, UPD, big, strlen(big)), 0, "1 MiB document: %zu bytes", strlen(big));
	cr_assert_eq(xversion(fs), 3);
	h = sprintf(big, "{\"if_version\": 3, \"document\": \"");
	memset(big + h, 'y', dl - 1);
	sprintf(big + h + dl - 1, "\"}");
	cr_assert_eq(tt_put(fs, UPD, big, strlen(big)), -EFBIG, "one byte more");
	/* RFC 8259: a raw byte that is not UTF-8 is not JSON (EINVAL), through
	 * update and through the document itself; an escape is fine */
	const char *raw = "{\"if_version\": 3, \"document\": {\"s\": \"\xff\"}}";
	cr_assert_eq(tt_put(fs, UPD, raw, strlen(raw)), -EINVAL);
	cr_assert_eq(xversion(fs), 3, "after update: %lu", (unsigned long)xversion(fs));
	cr_assert_eq(tt_put(fs, DOC, "[\"\xff\"]", 5), -EINVAL);
	cr_assert_eq(xversion(fs), 3, "after doc: %lu", (unsigned long)xversion(fs));
	const char *esc = "{\"if_version\": 3, \"document\": [\"\\u00ff caf\xc3\xa9\"]}";
	cr_assert_eq(tt_put(fs, UPD, esc, strlen(esc)), 0);
	cr_assert_eq(xversion(fs), 4);
	free(big);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

struct woke {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int n, err;
};

static void woke_done(void *arg, int err)
{
	struct woke *w = arg;

	pthread_mutex_lock(&w->lock);
	w->n++;
	w->err = err;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

static void woke_wake(void *arg)
{
	woke_done(arg, 0);
}

Test(state, ctl_changed_waits_for_the_next_version)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_open_out oo, nb;
	struct woke w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	struct woke p = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	uint64_t node;
	char buf[32];

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, DOC, "1", 1), 0);
	cr_assert_eq(tt_resolve(fs, ".txdir/state/changed", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, &tt_cred, node, O_RDONLY, &oo), 0);
	cr_assert_eq(txd_open(fs, &tt_cred, node, O_RDONLY | O_NONBLOCK, &nb), 0);
	cr_assert(txd_read_may_wait(fs, oo.fh));
	cr_assert_eq(txd_read_async(fs, nb.fh, buf, sizeof(buf), 0, woke_done, &w), -EAGAIN);
	cr_assert_eq(txd_poll(fs, nb.fh, woke_wake, &p), 0);
	cr_assert_eq(txd_read_async(fs, oo.fh, buf, sizeof(buf), 0, woke_done, &w), -EINPROGRESS);
	cr_assert_eq(w.n, 0);
	cr_assert_eq(tt_put(fs, DOC, "2", 1), 0);
	cr_assert_eq(w.n, 1, "the deferred read answered by the replace");
	cr_assert_eq(p.n, 1, "the poll woken");
	cr_assert_eq(txd_read_async(fs, oo.fh, buf, sizeof(buf), 0, woke_done, &w), 2);
	cr_assert_eq(memcmp(buf, "2\n", 2), 0, "prints the new version");
	cr_assert_eq(txd_poll(fs, nb.fh, NULL, NULL), 1);
	txd_release(fs, oo.fh);
	txd_release(fs, nb.fh);
	/* opened after the replace: waits for the next one */
	cr_assert_eq(txd_open(fs, &tt_cred, node, O_RDONLY | O_NONBLOCK, &nb), 0);
	cr_assert_eq(txd_read_async(fs, nb.fh, buf, sizeof(buf), 0, woke_done, &w), -EAGAIN);
	txd_release(fs, nb.fh);
	char *info;
	size_t ilen;
	cr_assert_eq(tt_get(fs, ".txdir/state/info.json", &info, &ilen), 0);
	cr_assert_not_null(strstr(info, "\"version\":\t2,"), "%s", info);
	cr_assert_not_null(strstr(info, "\"bytes\":\t1,"), "%s", info);
	free(info);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* ---- temp files and rename over the document ------------------------------------ */
#define TMP ".txdir/state/doc.tmp"

static int create_as(struct txd_fs *fs, uint32_t uid, const char *name)
{
	struct txd_cred c = { .uid = uid, .gid = uid, .pid = getpid(), .umask = 022 };
	struct txd_open_out oo;
	struct txd_entry e;
	uint64_t dir;
	int err = tt_resolve(fs, ".txdir/state", NULL, NULL, &dir);

	if (!err)
		err = txd_create(fs, &c, dir, name, 0644, O_WRONLY, &e, &oo);
	if (!err) {
		txd_release(fs, oo.fh);
		txd_forget(fs, e.node, 1);
	}
	return err;
}

Test(state, ctl_temp_file_renamed_over_the_document)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	uint64_t node;

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, TMP, "{\"t\": 1}\n", 9), 0, "create + write a temp file");
	expect_file(fs, TMP, "{\"t\": 1}\n");
	cr_assert_eq(xversion(fs), 0, "a temp file is not the document");
	cr_assert_eq(tt_rename(fs, TMP, DOC, 0), 0);
	expect_file(fs, DOC, "{\"t\": 1}\n");
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(tt_resolve(fs, TMP, NULL, NULL, &node), -ENOENT, "the temp file is gone");
	/* invalid JSON: EINVAL, both stay */
	cr_assert_eq(tt_put(fs, TMP, "{\"t\": ", 6), 0);
	cr_assert_eq(tt_rename(fs, TMP, DOC, 0), -EINVAL);
	expect_file(fs, DOC, "{\"t\": 1}\n");
	expect_file(fs, TMP, "{\"t\": ");
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(tt_rename(fs, TMP, DOC, RENAME_NOREPLACE), -EEXIST);
	/* temp to temp, unlink */
	cr_assert_eq(tt_rename(fs, TMP, ".txdir/state/other", 0), 0);
	cr_assert_eq(tt_resolve(fs, TMP, NULL, NULL, &node), -ENOENT);
	expect_file(fs, ".txdir/state/other", "{\"t\": ");
	cr_assert_eq(tt_unlink(fs, ".txdir/state/other"), 0);
	cr_assert_eq(tt_unlink(fs, DOC), -EPERM, "the document stays");
	cr_assert_eq(tt_rename(fs, DOC, ".txdir/state/x", 0), -EPERM);
	cr_assert_eq(tt_put(fs, TMP, "[]", 2), 0);
	cr_assert_eq(tt_rename(fs, TMP, UPD, 0), -EPERM);
	/* across the trees: EXDEV */
	cr_assert_eq(tt_put(fs, "outside.json", "[]", 2), 0);
	cr_assert_eq(tt_rename(fs, "outside.json", DOC, 0), -EXDEV);
	cr_assert_eq(tt_rename(fs, TMP, "inside.json", 0), -EXDEV);
	expect_file(fs, DOC, "{\"t\": 1}\n");
	/* volatile: gone at a restart */
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_resolve(fs, TMP, NULL, NULL, &node), -ENOENT);
	expect_file(fs, DOC, "{\"t\": 1}\n");
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, ctl_temp_files_per_uid_limit_and_owner)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	char name[32];

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		cr_assert_eq(create_as(fs, 1000, name), 0, "temp %d", i);
	}
	cr_assert_eq(create_as(fs, 1000, "t16"), -EDQUOT);
	cr_assert_eq(create_as(fs, 1001, "u0"), 0, "another uid has its own quota");
	cr_assert_eq(create_as(fs, 0, "r0"), 0, "root is not limited");
	cr_assert_eq(create_as(fs, 1001, "t0"), -EEXIST);
	cr_assert_eq(create_as(fs, 1001, "update"), -EEXIST);
	cr_assert_eq(tt_unlink(fs, ".txdir/state/t0"), 0, "root removes anyone's");
	cr_assert_eq(create_as(fs, 1000, "t16"), 0, "room again");
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* ---- svc.h V9: an event lost with the event log's tail is derived once -------------- */
static int count_in(const char *store, const char *needle)
{
	char path[512], line[4096];
	int n = 0;
	snprintf(path, sizeof(path), "%s/coordination/events.log", store);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

Test(state, V9_a_replace_event_lost_with_the_event_log_is_derived_once)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	char path[512];

	faultos_install(); /* only while no store is open (os.h) */
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, DOC, "[1]", 3), 0);
	cr_assert_eq(tt_put(fs, DOC, "[2]", 3), 0);
	cr_assert_eq(count_in(store, "\"type\":\"state_replace\",\"version\":2,"), 1);
	faultos_crash(); /* no checkpoint at close: replay has the records */
	txd_fs_close(fs);
	faultos_revive();
	faultos_uninstall();
	snprintf(path, sizeof(path), "%s/coordination/events.log", store);
	cr_assert_eq(truncate(path, 0), 0); /* what a power cut may do to it */
	for (int round = 0; round < 2; round++) {
		faultos_install();
		cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
		expect_file(fs, DOC, "[2]");
		cr_assert_eq(count_in(store, "\"type\":\"state_replace\",\"version\":1,"), 1,
			     "round %d: version 1's event, once", round);
		cr_assert_eq(count_in(store, "\"type\":\"state_replace\",\"version\":2,"), 1,
			     "round %d: version 2's event, once", round);
		cr_assert_eq(count_in(store, "\"derived\":true"), 2);
		faultos_crash();
		txd_fs_close(fs);
		faultos_revive();
		faultos_uninstall();
	}
	tt_rmtree(store);
	free(store);
}

/* ---- a crash at every I/O step of three replaces, through the store ------------------ *
 * write + close of global_state.json, update with if_version, a temp file
 * renamed over the document. After a process death or a power cut at any
 * I/O call: the document is the old or a new one, whole, with its own
 * version, and every acknowledged replace survived (S1, S6). */
static const char *const GEN[] = { "{}\n", "{\"gen\": 1}", "[\"gen\", 2]\n", "{\"gen\": 3}" };

static int workload3(struct txd_fs *fs)
{
	const char *u = "{\"if_version\": 1, \"document\": [\"gen\", 2]}";
	int acked = 0;

	if (tt_put(fs, DOC, GEN[1], strlen(GEN[1])))
		return acked;
	acked++;
	if (tt_put(fs, UPD, u, strlen(u)))
		return acked;
	acked++;
	if (tt_put(fs, TMP, GEN[3], strlen(GEN[3])) || tt_rename(fs, TMP, DOC, 0))
		return acked;
	return acked + 1;
}

static uint64_t io_ref[FOS_NCALLS];

static void reference3(void)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	uint64_t base[FOS_NCALLS];

	faultos_install();
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	for (int c = 0; c < FOS_NCALLS; c++)
		base[c] = faultos_count(c);
	cr_assert_eq(workload3(fs), 3);
	expect_file(fs, DOC, GEN[3]);
	for (int c = 0; c < FOS_NCALLS; c++)
		io_ref[c] = faultos_count(c) - base[c];
	txd_fs_close(fs);
	faultos_uninstall();
	tt_rmtree(store);
	free(store);
}

static void crash3(enum faultos_call call, uint64_t n, bool power)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	const char *at = power ? "power cut" : "process death";

	faultos_install();
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	faultos_crash_at(call, n);
	int acked = workload3(fs);
	txd_fs_close(fs);
	if (power)
		faultos_power_cut(n * 31 + (uint64_t)call);
	faultos_revive();
	faultos_uninstall();
	int err = txd_fs_open(store, &DUR, &fs, NULL);
	cr_assert_eq(err, 0, "reopen after a %s at call %d #%lu: %s", at, call, (unsigned long)n,
		     txd_strerror(err));
	char *d;
	size_t len;
	cr_assert_eq(tt_get(fs, DOC, &d, &len), 0);
	uint64_t v = xversion(fs);
	cr_assert_leq(v, 3);
	cr_assert(len == strlen(GEN[v]) && memcmp(d, GEN[v], len) == 0,
		  "%s at call %d #%lu: version %lu holds \"%.*s\"", at, call, (unsigned long)n,
		  (unsigned long)v, (int)len, d);
	cr_assert_geq(v, (uint64_t)acked, "%s at call %d #%lu: an acknowledged replace lost", at,
		      call, (unsigned long)n);
	cr_assert_leq(v, (uint64_t)acked + 1, "%s at call %d #%lu", at, call, (unsigned long)n);
	free(d);
	cr_assert_eq(tt_put(fs, DOC, "[]", 2), 0, "the store goes on");
	cr_assert_eq(xversion(fs), v + 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

static void every_io_step3(bool power)
{
	static const enum faultos_call calls[] = { FOS_PWRITE, FOS_FSYNC, FOS_FDATASYNC,
						   FOS_FTRUNCATE, FOS_RENAME, FOS_OPEN };
	size_t points = 0;

	reference3();
	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
		for (uint64_t n = 1; n <= io_ref[calls[c]]; n++, points++)
			crash3(calls[c], n, power);
	cr_assert_geq(points, 3, "three replaces must do I/O worth crashing in");
	cr_log_info("crashed at %zu I/O steps (power cut: %d)", points, power);
}

Test(state, S1_S6_process_death_at_every_io_step_of_three_replaces, .timeout = 600)
{
	every_io_step3(false);
}

Test(state, S1_S6_power_cut_at_every_io_step_of_three_replaces, .timeout = 600)
{
	every_io_step3(true);
}

/* ---- participants mode (state.h S7-S10) and fenced updates (S11) ------------------ */
#define PARTS ".txdir/state/participants"
#define TMP2 ".txdir/state/tmp2"

static struct state_svc *ss(struct txd_fs *fs)
{
	return svc_state(fs->svc);
}

static int cast(struct txd_fs *fs, const char *p, const char *who, bool yes)
{
	return vote_cast(svc_vote(fs->svc), p, who, yes, NULL);
}

/* update opened and written (the proposal opens at the write); *fh for
 * closing it (update_close: the outcome). */
static int update_write(struct txd_fs *fs, const char *env, uint64_t *fh)
{
	struct txd_open_out oo;
	uint64_t node;
	int err = tt_resolve(fs, UPD, NULL, NULL, &node);

	if (!err)
		err = txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &oo);
	if (err)
		return err;
	*fh = oo.fh;
	ssize_t n = txd_write(fs, NULL, oo.fh, env, strlen(env), 0);
	return n < 0 ? (int)n : 0;
}

static int update_close(struct txd_fs *fs, uint64_t fh)
{
	int err = txd_flush(fs, fh, &tt_cred, NULL);
	txd_release(fs, fh);
	return err;
}

static void expect_pending(struct txd_fs *fs, const char *want)
{
	char name[256];
	bool busy = state_pending(ss(fs), name, sizeof(name));

	if (want) {
		cr_assert(busy, "no state proposal pending, want %s", want);
		cr_assert_str_eq(name, want);
	} else {
		cr_assert(!busy, "%s still pending", name);
	}
}

static void expect_ok(int err)
{
	cr_assert_eq(err, 0, "%s", txd_strerror(err));
}

static struct txd_fs *open_with_parts(char **store, const char *parts)
{
	struct txd_fs *fs;

	*store = tt_mkstore();
	cr_assert_eq(txd_fs_open(*store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, PARTS, parts, strlen(parts)), 0);
	return fs;
}

Test(state, S7_participants_file_normalises_and_refuses_bad_lists)
{
	char *store;
	struct txd_fs *fs = open_with_parts(&store, "alice  bob\ncarol\n");

	expect_file(fs, PARTS, "alice,bob,carol\n");
	cr_assert_eq(tt_put(fs, PARTS, "a,a", 3), -EINVAL, "a duplicate");
	cr_assert_eq(tt_put(fs, PARTS, "a/b", 3), -EINVAL, "a bad name");
	expect_file(fs, PARTS, "alice,bob,carol\n");
	/* survives a restart and a checkpoint */
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_file(fs, PARTS, "alice,bob,carol\n");
	cr_assert_eq(txd_checkpoint(fs), 0);
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_file(fs, PARTS, "alice,bob,carol\n");
	/* emptied: plain mode, a replace acts at once */
	cr_assert_eq(tt_put(fs, PARTS, "", 0), 0);
	expect_file(fs, PARTS, "");
	cr_assert_eq(tt_put(fs, DOC, "[1]", 3), 0);
	cr_assert_eq(xversion(fs), 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, S8_update_close_returns_committed_after_the_votes)
{
	char *store;
	struct txd_fs *fs = open_with_parts(&store, "alice,bob");
	uint64_t fh;

	cr_assert_eq(update_write(fs, "{\"if_version\": 0, \"document\": {\"n\": 1}}", &fh), 0);
	expect_pending(fs, "state-1");
	expect_file(fs, DOC, "{}\n"); /* not visible before the commit */
	cr_assert_eq(xversion(fs), 0);
	cr_assert_eq(cast(fs, "state-1", "alice", true), 0);
	cr_assert_eq(xversion(fs), 0);
	cr_assert_eq(cast(fs, "state-1", "bob", true), 0);
	cr_assert_eq(update_close(fs, fh), 0);
	expect_file(fs, DOC, "{\"n\": 1}\n");
	cr_assert_eq(xversion(fs), 1);
	expect_pending(fs, NULL);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, S8_a_no_aborts_the_replace_ECANCELED_and_the_next_attempt_gets_a_new_name)
{
	char *store;
	struct txd_fs *fs = open_with_parts(&store, "alice,bob");
	uint64_t fh;

	cr_assert_eq(update_write(fs, "{\"if_version\": 0, \"document\": 7}", &fh), 0);
	cr_assert_eq(cast(fs, "state-1", "bob", false), 0);
	cr_assert_eq(update_close(fs, fh), -ECANCELED);
	expect_file(fs, DOC, "{}\n");
	cr_assert_eq(xversion(fs), 0);
	/* the aborted state-1 stays for the retention: the retry is state-1.2 */
	cr_assert_eq(update_write(fs, "{\"if_version\": 0, \"document\": 8}", &fh), 0);
	expect_pending(fs, "state-1.2");
	cr_assert_eq(cast(fs, "state-1.2", "alice", true), 0);
	cr_assert_eq(cast(fs, "state-1.2", "bob", true), 0);
	cr_assert_eq(update_close(fs, fh), 0);
	expect_file(fs, DOC, "8\n");
	cr_assert_eq(xversion(fs), 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, S10_rename_returns_at_once_and_a_second_replace_is_EBUSY)
{
	char *store;
	struct txd_fs *fs = open_with_parts(&store, "alice");
	uint64_t fh;

	cr_assert_eq(tt_put(fs, TMP2, "[\"renamed\"]", strlen("[\"renamed\"]")), 0);
	expect_ok(tt_rename(fs, TMP2, DOC, 0));
	expect_pending(fs, "state-1");
	uint64_t n;
	cr_assert_eq(tt_resolve(fs, TMP2, NULL, NULL, &n), -ENOENT, "the temp file is gone");
	cr_assert_eq(xversion(fs), 0);
	/* one at a time, every way of replacing */
	cr_assert_eq(tt_put(fs, DOC, "[2]", 3), -EBUSY);
	cr_assert_eq(update_write(fs, "{\"if_version\": 0, \"document\": 3}", &fh), -EBUSY);
	txd_release(fs, fh);
	cr_assert_eq(tt_put(fs, TMP2, "[4]", strlen("[4]")), 0);
	cr_assert_eq(tt_rename(fs, TMP2, DOC, 0), -EBUSY);
	cr_assert_eq(tt_put(fs, PARTS, "bob", 3), -EBUSY, "the list is fixed while one is open");
	cr_assert_eq(vote_remove(svc_vote(fs->svc), "state-1", 0), -EBUSY);
	cr_assert_eq(cast(fs, "state-1", "alice", true), 0);
	expect_pending(fs, NULL);
	expect_file(fs, DOC, "[\"renamed\"]");
	cr_assert_eq(xversion(fs), 1);
	/* and the compare-and-swap holds across the modes */
	cr_assert_eq(update_write(fs, "{\"if_version\": 0, \"document\": 5}", &fh), -EBUSY);
	txd_release(fs, fh);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, S9_a_pending_proposal_survives_a_restart_and_commits_after_it)
{
	char *store;
	struct txd_fs *fs = open_with_parts(&store, "alice,bob");

	cr_assert_eq(tt_put(fs, TMP2, "{\"after\": \"restart\"}", strlen("{\"after\": \"restart\"}")), 0);
	expect_ok(tt_rename(fs, TMP2, DOC, 0));
	cr_assert_eq(cast(fs, "state-1", "alice", true), 0);
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_pending(fs, "state-1");
	cr_assert_eq(xversion(fs), 0);
	cr_assert_eq(tt_put(fs, DOC, "[]", 2), -EBUSY, "still one at a time after the restart");
	cr_assert_eq(cast(fs, "state-1", "bob", true), 0);
	expect_pending(fs, NULL);
	expect_file(fs, DOC, "{\"after\": \"restart\"}");
	cr_assert_eq(xversion(fs), 1);
	txd_fs_close(fs);
	/* and the committed document is the document after the next restart */
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_file(fs, DOC, "{\"after\": \"restart\"}");
	cr_assert_eq(xversion(fs), 1);
	expect_pending(fs, NULL);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* The server dies after the DECIDE record and before the REPLACE record:
 * the restart applies the committed payload (state.h "Durability order").
 * The death: state_test_fail_apply skips that append (state.h). */
Test(state, S9_a_decision_durable_before_the_crash_is_applied_at_start_up)
{
	char *store;
	struct txd_fs *fs;

	fs = open_with_parts(&store, "alice");
	cr_assert_eq(tt_put(fs, TMP2, "[\"decided\"]", strlen("[\"decided\"]")), 0);
	expect_ok(tt_rename(fs, TMP2, DOC, 0));
	state_test_fail_apply = true;
	cr_assert_eq(cast(fs, "state-1", "alice", true), 0);
	state_test_fail_apply = false;
	enum vote_outcome o;
	cr_assert_eq(vote_outcome(svc_vote(fs->svc), "state-1", &o, NULL, 0), 0);
	cr_assert_eq(o, VOTE_COMMITTED);
	cr_assert_eq(xversion(fs), 0, "the REPLACE never made it");
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	expect_file(fs, DOC, "[\"decided\"]");
	cr_assert_eq(xversion(fs), 1);
	expect_pending(fs, NULL);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* ---- if_lease (S11) ----------------------------------------------------------------- */
static char active_dir[64];

static int lease_grab(struct txd_fs *fs, const char *name)
{
	struct txd_cred me = { .uid = 0, .gid = 0, .pid = getpid(), .umask = 022 };
	struct txd_entry e;
	uint64_t dir;
	int err;

	snprintf(active_dir, sizeof(active_dir), ".txdir/leases/active/%d", (int)getpid());
	if (!(err = tt_resolve(fs, active_dir, NULL, NULL, &dir)))
		err = txd_mkdir(fs, &me, dir, name, 0755, &e);
	if (!err)
		txd_forget(fs, e.node, 1);
	return err;
}

static int lease_drop(struct txd_fs *fs, const char *name)
{
	struct txd_cred me = { .uid = 0, .gid = 0, .pid = getpid(), .umask = 022 };
	uint64_t dir;
	int err = tt_resolve(fs, active_dir, NULL, NULL, &dir);

	return err ? err : txd_rmdir(fs, &me, dir, name);
}

static uint64_t lease_token(struct txd_fs *fs, const char *name)
{
	char path[128], *b;
	size_t len;
	uint64_t t;

	snprintf(path, sizeof(path), "%s/%s/token", active_dir, name);
	if (tt_get(fs, path, &b, &len))
		return 0;
	t = strtoull(b, NULL, 10);
	free(b);
	return t;
}

static int fenced_update(struct txd_fs *fs, uint64_t if_version, const char *lease,
			 uint64_t token, const char *doc)
{
	char env[512];

	snprintf(env, sizeof(env),
		 "{\"if_version\": %" PRIu64 ", \"if_lease\": {\"name\": \"%s\", "
		 "\"token\": %" PRIu64 "}, \"document\": %s}",
		 if_version, lease, token, doc);
	return tt_put(fs, UPD, env, strlen(env));
}

Test(state, S11_if_lease_held_wrong_token_released)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(lease_grab(fs, "job"), 0);
	uint64_t tok = lease_token(fs, "job");
	cr_assert_gt(tok, 0);
	cr_assert_eq(fenced_update(fs, 0, "job", tok, "[\"held\"]"), 0);
	cr_assert_eq(xversion(fs), 1);
	cr_assert_eq(fenced_update(fs, 1, "job", tok + 1, "[\"wrong\"]"), -ESTALE);
	cr_assert_eq(fenced_update(fs, 1, "nolease", 1, "[\"none\"]"), -ESTALE);
	cr_assert_eq(lease_drop(fs, "job"), 0);
	cr_assert_eq(fenced_update(fs, 1, "job", tok, "[\"released\"]"), -ESTALE);
	/* a successor's grant: the old token is refused, the new one applies */
	cr_assert_eq(lease_grab(fs, "job"), 0);
	uint64_t cur = lease_token(fs, "job");
	cr_assert_gt(cur, tok);
	cr_assert_eq(fenced_update(fs, 1, "job", tok, "[\"old\"]"), -ESTALE);
	cr_assert_eq(fenced_update(fs, 1, "job", cur, "[\"new\"]"), 0);
	expect_file(fs, DOC, "[\"new\"]\n");
	cr_assert_eq(xversion(fs), 2);
	/* malformed if_lease: EINVAL, never ignored */
	const char *bad[] = { "{\"if_version\": 2, \"if_lease\": {\"name\": \"job\"}, \"document\": 1}",
			      "{\"if_version\": 2, \"if_lease\": {\"name\": 1, \"token\": 1}, \"document\": 1}",
			      "{\"if_version\": 2, \"if_lease\": {\"name\": \"job\", \"token\": -1}, \"document\": 1}",
			      "{\"if_version\": 2, \"if_lease\": {\"name\": \"job\", \"token\": 1, \"x\": 1}, \"document\": 1}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(tt_put(fs, UPD, bad[i], strlen(bad[i])), -EINVAL, "accepted %s", bad[i]);
	cr_assert_eq(xversion(fs), 2);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* Participants mode: the fence is checked when the proposal opens, and
 * again where the vote commits (vote.h V14). */
Test(state, S11_if_lease_in_participants_mode_is_checked_at_opening_and_commit)
{
	char *store, why[128] = "";
	struct txd_fs *fs = open_with_parts(&store, "alice,bob");
	enum vote_outcome o;
	uint64_t fh;

	cr_assert_eq(lease_grab(fs, "job"), 0);
	uint64_t tok = lease_token(fs, "job");
	cr_assert_eq(fenced_update(fs, 0, "job", tok + 1, "1"), -ESTALE);
	expect_pending(fs, NULL);

	/* held at the opening and at the commit: applied */
	char env[256];
	snprintf(env, sizeof(env),
		 "{\"if_version\": 0, \"if_lease\": {\"name\": \"job\", \"token\": %" PRIu64
		 "}, \"document\": [1]}", tok);
	expect_ok(update_write(fs, env, &fh));
	expect_pending(fs, "state-1");
	expect_ok(cast(fs, "state-1", "alice", true));
	expect_ok(cast(fs, "state-1", "bob", true));
	expect_ok(update_close(fs, fh));
	expect_file(fs, DOC, "[1]\n");
	cr_assert_eq(xversion(fs), 1);

	/* lost (released, then granted again) while the vote ran: refused */
	snprintf(env, sizeof(env),
		 "{\"if_version\": 1, \"if_lease\": {\"name\": \"job\", \"token\": %" PRIu64
		 "}, \"document\": [2]}", tok);
	expect_ok(update_write(fs, env, &fh));
	expect_pending(fs, "state-2");
	expect_ok(cast(fs, "state-2", "alice", true));
	cr_assert_eq(lease_drop(fs, "job"), 0);
	cr_assert_eq(lease_grab(fs, "job"), 0);
	cr_assert_gt(lease_token(fs, "job"), tok);
	expect_ok(cast(fs, "state-2", "bob", true));
	cr_assert_eq(update_close(fs, fh), -ESTALE);
	cr_assert_eq(vote_outcome(svc_vote(fs->svc), "state-2", &o, why, sizeof(why)), 0);
	cr_assert_eq(o, VOTE_ABORTED);
	char want[128];
	snprintf(want, sizeof(want), "lease job not held with token %" PRIu64, tok);
	cr_assert_str_eq(why, want);
	expect_file(fs, DOC, "[1]\n");
	cr_assert_eq(xversion(fs), 1);
	expect_pending(fs, NULL);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(state, S8_the_vote_timeout_aborts_the_replace_ECANCELED)
{
	char *store;
	struct txd_fs *fs;
	uint64_t fh;

	faultos_install();
	fs = open_with_parts(&store, "alice,bob");
	cr_assert_eq(update_write(fs, "{\"if_version\": 0, \"document\": 9}", &fh), 0);
	cr_assert_eq(cast(fs, "state-1", "alice", true), 0);
	faultos_set_clock_offset(31ll * 1000000000ll); /* past the default 30 s */
	cr_assert_geq(vote_tick(svc_vote(fs->svc), NULL), 0);
	cr_assert_eq(update_close(fs, fh), -ECANCELED);
	char why[128] = "";
	enum vote_outcome o;
	cr_assert_eq(vote_outcome(svc_vote(fs->svc), "state-1", &o, why, sizeof(why)), 0);
	cr_assert_str_eq(why, "timeout missing bob");
	expect_file(fs, DOC, "{}\n");
	cr_assert_eq(xversion(fs), 0);
	expect_pending(fs, NULL);
	txd_fs_close(fs);
	faultos_uninstall();
	tt_rmtree(store);
	free(store);
}

Test(state, S8_the_state_prefix_is_reserved_for_the_state_service)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;

	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_mkdir(fs, ".txdir/consensus/proposals/state-1"), -EPERM);
	cr_assert_eq(vote_create(svc_vote(fs->svc), "state-7.2", 0), -EPERM, "root too");
	cr_assert_eq(tt_mkdir(fs, ".txdir/consensus/proposals/stately"), 0);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* ---- participants mode under crashes (S8, S9) -------------------------------------- */
static int workload_p(struct txd_fs *fs)
{
	int acked = 0;

	if (tt_put(fs, PARTS, "alice", 5))
		return acked;
	acked++;
	if (tt_put(fs, TMP2, "[\"p\"]", 5) || tt_rename(fs, TMP2, DOC, 0))
		return acked;
	acked++;
	if (cast(fs, "state-1", "alice", true))
		return acked;
	return acked + 1;
}

static uint64_t io_ref_p[FOS_NCALLS];

static void crash_p(enum faultos_call call, uint64_t n, bool power, bool reference)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	uint64_t base[FOS_NCALLS];

	faultos_install();
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	for (int c = 0; c < FOS_NCALLS; c++)
		base[c] = faultos_count(c);
	if (!reference)
		faultos_crash_at(call, n);
	int acked = workload_p(fs);
	if (reference) {
		cr_assert_eq(acked, 3);
		for (int c = 0; c < FOS_NCALLS; c++)
			io_ref_p[c] = faultos_count(c) - base[c];
	}
	txd_fs_close(fs);
	if (power && !reference)
		faultos_power_cut(n * 37 + (uint64_t)call);
	faultos_revive();
	faultos_uninstall();
	int err = txd_fs_open(store, &DUR, &fs, NULL);
	cr_assert_eq(err, 0, "reopen after call %d #%lu: %s", call, (unsigned long)n,
		     txd_strerror(err));
	enum vote_outcome o = VOTE_OPEN;
	int known = vote_outcome(svc_vote(fs->svc), "state-1", &o, NULL, 0);
	uint64_t v = xversion(fs);
	if (known == 0 && o == VOTE_COMMITTED) {
		/* S9: a committed proposal is the document, also when the crash
		 * came between DECIDE and REPLACE */
		cr_assert_eq(v, 1, "call %d #%lu: committed but version %lu", call, (unsigned long)n,
			     (unsigned long)v);
		expect_file(fs, DOC, "[\"p\"]");
	} else {
		cr_assert_eq(v, 0, "call %d #%lu: not committed but version %lu", call,
			     (unsigned long)n, (unsigned long)v);
		expect_file(fs, DOC, "{}\n");
		cr_assert_lt(acked, 3, "call %d #%lu: an acknowledged vote lost", call,
			     (unsigned long)n);
	}
	if (acked >= 2)
		cr_assert_eq(known, 0, "call %d #%lu: an opened proposal lost", call,
			     (unsigned long)n);
	struct vote_info vi = { 0 };
	if (known == 0)
		cr_assert_eq(vote_get(svc_vote(fs->svc), "state-1", &vi), 0);
	if (known == 0 && (vi.state == VOTE_OPENED || vi.state == VOTE_DECIDING)) {
		/* pending across the restart: the vote finishes it (a proposal
		 * only CREATED when the server died is not: its timeout
		 * removes it, vote.h V10) */
		expect_pending(fs, "state-1");
		cr_assert_eq(cast(fs, "state-1", "alice", true), 0);
		cr_assert_eq(xversion(fs), 1);
		expect_file(fs, DOC, "[\"p\"]");
	} else {
		expect_pending(fs, NULL);
	}
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

static void every_io_step_p(bool power)
{
	static const enum faultos_call calls[] = { FOS_PWRITE, FOS_FSYNC, FOS_FDATASYNC,
						   FOS_FTRUNCATE, FOS_RENAME, FOS_OPEN };
	size_t points = 0;

	crash_p(0, 0, false, true);
	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
		for (uint64_t n = 1; n <= io_ref_p[calls[c]]; n++, points++)
			crash_p(calls[c], n, power, false);
	cr_assert_geq(points, 3);
	cr_log_info("crashed at %zu I/O steps (power cut: %d)", points, power);
}

Test(state, S8_S9_process_death_at_every_io_step_of_a_2pc_replace, .timeout = 600)
{
	every_io_step_p(false);
}

Test(state, S8_S9_power_cut_at_every_io_step_of_a_2pc_replace, .timeout = 600)
{
	every_io_step_p(true);
}

struct closer {
	struct txd_fs *fs;
	uint64_t fh;
	int err;
};

static void *closer_main(void *arg)
{
	struct closer *c = arg;

	c->err = update_close(c->fs, c->fh);
	return NULL;
}

/* The close waits on its own thread while the votes come from another
 * (either order gives the outcome: no barrier needed). */
Test(state, S8_a_close_waiting_on_its_thread_gets_the_votes_of_another)
{
	char *store;
	struct txd_fs *fs = open_with_parts(&store, "alice,bob");
	struct closer c = { .fs = fs };
	pthread_t t;

	for (int round = 0; round < 4; round++) {
		char env[128];
		uint64_t v = xversion(fs);
		snprintf(env, sizeof(env), "{\"if_version\": %" PRIu64 ", \"document\": %d}", v, round);
		cr_assert_eq(update_write(fs, env, &c.fh), 0);
		char name[256];
		cr_assert(state_pending(ss(fs), name, sizeof(name)));
		cr_assert_eq(pthread_create(&t, NULL, closer_main, &c), 0);
		cr_assert_eq(cast(fs, name, "alice", true), 0);
		cr_assert_eq(cast(fs, name, "bob", round % 2 == 0), 0);
		pthread_join(t, NULL);
		cr_assert_eq(c.err, round % 2 == 0 ? 0 : -ECANCELED, "round %d: %d", round, c.err);
		cr_assert_eq(xversion(fs), v + (round % 2 == 0));
	}
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* .txdir/state itself never goes away: the kernel may cache its entry (a
 * compare-and-swap's path walks to the document and to update cost one
 * LOOKUP less each); its files are rendered at every open, never cached. */
Test(state, ctl_state_directory_cacheable_its_files_not)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_entry e;
	uint64_t node;

	txd_os_set(NULL);
	cr_assert_eq(txd_fs_open(store, &DUR, &fs, NULL), 0);
	cr_assert_eq(tt_resolve(fs, ".txdir", NULL, NULL, &node), 0);
	cr_assert_eq(txd_lookup(fs, node, "state", &e), 0);
	cr_assert(e.cacheable, "state/");
	uint64_t st = e.node;
	cr_assert_eq(txd_lookup(fs, st, "global_state.json", &e), 0);
	cr_assert_not(e.cacheable, "the document");
	txd_forget(fs, e.node, 1);
	txd_forget(fs, st, 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}
