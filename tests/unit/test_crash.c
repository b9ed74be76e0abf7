/*
 * test_crash.c — crash at every I/O step of a workload, as a process death
 * and as a power cut, then recover and check SPEC §3 / issue 2:
 *   - the state equals the state after some prefix of the commit history
 *     (nothing partial, no holes): fingerprints of a fault-free reference run
 *     after every commit are the only acceptable states;
 *   - process death: every commit that returned is present (W6);
 *     power cut: every commit made durable (a returned sync) is present (W5);
 *   - every chunk verifies (the fingerprint reads every byte);
 *   - the store reopens a second time to the same state (checkpoint path).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "faultos.h"
#include "txdtest.h"

/* Durability fsync, and no background sync (I/O steps stay deterministic). */
static const struct txd_opts opts = {.durability = TXD_DUR_FSYNC,
				     .commit_interval_ms = 3600 * 1000};

/* ---- the workload: one commit per step ------------------------------------------- */
enum kind { CREATE, WRITE, MKDIR, RENAME, UNLINK, TRUNC, SYNC };

struct step {
	enum kind kind;
	const char *a, *b;
	size_t len; /* WRITE: bytes; TRUNC: new size */
	char fill;
};

static const struct step work[] = {
	{.kind = MKDIR, .a = "d"},
	{.kind = CREATE, .a = "d/a"},
	{.kind = WRITE, .a = "d/a", .len = 5000, .fill = 'a'},
	{.kind = CREATE, .a = "b"},
	{.kind = SYNC},
	{.kind = WRITE, .a = "b", .len = 70000, .fill = 'b'}, /* three chunks */
	{.kind = RENAME, .a = "d/a", .b = "c"},
	{.kind = WRITE, .a = "c", .len = 100, .fill = 'c'},
	{.kind = SYNC},
	{.kind = TRUNC, .a = "b", .len = 40000},
	{.kind = MKDIR, .a = "d/e"},
	{.kind = CREATE, .a = "d/e/f"},
	{.kind = WRITE, .a = "d/e/f", .len = 33000, .fill = 'f'},
	{.kind = RENAME, .a = "b", .b = "d/e/f"},
	{.kind = SYNC},
	{.kind = UNLINK, .a = "c"},
	{.kind = WRITE, .a = "d/e/f", .len = 10, .fill = 'g'},
	{.kind = CREATE, .a = "h"},
};
#define NWORK (sizeof(work) / sizeof(work[0]))

static int run_step(struct txd_fs *fs, const struct step *s)
{
	uint64_t parent, node;
	const char *leaf;
	struct txd_entry e;
	struct txd_open_out oo;
	int err;
	switch (s->kind) {
	case SYNC:
		return txd_sync_wait(fs);
	case MKDIR:
		return tt_mkdir(fs, s->a);
	case RENAME:
		return tt_rename(fs, s->a, s->b, 0);
	case UNLINK:
		return tt_unlink(fs, s->a);
	case CREATE:
		if ((err = tt_resolve(fs, s->a, &parent, &leaf, NULL)) ||
		    (err = txd_create(fs, &tt_cred, parent, leaf, 0644, O_WRONLY, &e, &oo)))
			return err;
		return txd_release(fs, oo.fh);
	case TRUNC: {
		struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = s->len};
		if ((err = tt_resolve(fs, s->a, NULL, NULL, &node)))
			return err;
		return txd_setattr(fs, NULL, node, &sa, 0, NULL);
	}
	case WRITE: {
		char *buf = malloc(s->len);
		memset(buf, s->fill, s->len);
		for (size_t k = 0; k < s->len; k += 4096)
			buf[k] = (char)('0' + (k / 4096) % 10); /* not all one byte */
		err = tt_put(fs, s->a, buf, s->len);
		free(buf);
		return err;
	}
	}
	return -EINVAL;
}

/* Fingerprints of the reference run: ref[k] = state after k commit steps. */
static uint64_t ref[NWORK + 1];
static size_t nref;
static uint64_t io_count[FOS_NCALLS];

static void reference_run(void)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	faultos_install();
	cr_assert_eq(txd_fs_open(store, &opts, &fs, NULL), 0);
	nref = 0;
	cr_assert_eq(tt_fingerprint(fs, &ref[nref++]), 0);
	for (size_t k = 0; k < NWORK; k++) {
		cr_assert_eq(run_step(fs, &work[k]), 0, "reference step %zu", k);
		if (work[k].kind != SYNC)
			cr_assert_eq(tt_fingerprint(fs, &ref[nref++]), 0);
	}
	txd_fs_close(fs);
	for (int c = 0; c < FOS_NCALLS; c++)
		io_count[c] = faultos_count(c);
	faultos_uninstall();
	tt_rmtree(store);
	free(store);
}

/* Which reference state is this? -1 if none. */
static int which_state(struct txd_fs *fs)
{
	uint64_t fp;
	if (tt_fingerprint(fs, &fp))
		return -2; /* a chunk failed its checksum */
	for (size_t k = 0; k < nref; k++)
		if (ref[k] == fp)
			return (int)k;
	return -1;
}

struct outcome {
	size_t acked;   /* commit steps that returned success */
	size_t durable; /* commit steps covered by a returned sync */
};

static void crash_once(enum faultos_call call, uint64_t n, bool power, uint64_t seed)
{
	char *store = tt_mkstore();
	struct txd_fs *fs = NULL;
	struct outcome o = {0};
	faultos_install();
	faultos_crash_at(call, n);
	if (txd_fs_open(store, &opts, &fs, NULL) == 0) {
		for (size_t k = 0; k < NWORK; k++) {
			if (run_step(fs, &work[k]))
				break;
			if (work[k].kind == SYNC)
				o.durable = o.acked;
			else
				o.acked++;
		}
		txd_fs_close(fs); /* a crashed process: its I/O fails, nothing lands */
	}
	if (power)
		faultos_power_cut(seed);
	faultos_revive();
	faultos_uninstall();

	int oerr = txd_fs_open(store, &opts, &fs, NULL);
	cr_assert_eq(oerr, 0, "reopen after crash at call %d #%llu (power=%d): %s", call,
		     (unsigned long long)n, power, txd_strerror(oerr));
	int j = which_state(fs);
	char *listing = NULL;
	if (j < 0)
		tt_listing(fs, &listing);
	cr_assert_geq(j, 0, "crash at call %d #%llu power=%d: state is no commit prefix (%d)\n%s",
		      call, (unsigned long long)n, power, j, listing ? listing : "");
	size_t must = power ? o.durable : o.acked;
	cr_assert_geq((size_t)j, must,
		      "crash at call %d #%llu power=%d: lost commits: state %d, %zu acknowledged, "
		      "%zu durable",
		      call, (unsigned long long)n, power, j, o.acked, o.durable);
	cr_assert_leq((size_t)j, o.acked + 1, "more commits than were attempted");
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &opts, &fs, NULL), 0, "second reopen");
	cr_assert_eq(which_state(fs), j, "second reopen changed the state");
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

static const enum faultos_call io_calls[] = {FOS_PWRITE, FOS_FSYNC, FOS_FDATASYNC,
					     FOS_FTRUNCATE, FOS_RENAME, FOS_UNLINK};

static void matrix(bool power)
{
	reference_run();
	size_t points = 0;
	for (size_t c = 0; c < sizeof(io_calls) / sizeof(io_calls[0]); c++)
		for (uint64_t n = 1; n <= io_count[io_calls[c]]; n++, points++)
			crash_once(io_calls[c], n, power, n * 7919 + c);
	cr_assert_gt(points, 20, "the workload must do I/O worth crashing in");
	cr_log_info("crashed at %zu I/O steps (power cut: %d)", points, power);
}

TestSuite(crash, .timeout = 300);

/* W6 + prefix: process death at every I/O step. */
Test(crash, process_death_at_every_io_step)
{
	matrix(false);
}

/* W5 + prefix: power cut (unsynced writes dropped, torn or kept) at every
 * I/O step. */
Test(crash, power_cut_at_every_io_step)
{
	matrix(true);
}

/* Torn log write at every byte offset of one record ends the log (W2):
 * the store opens to the state before that commit. */
Test(crash, torn_record_at_every_offset)
{
	reference_run();
	for (size_t keep = 0; keep < 200; keep += 7) {
		char *store = tt_mkstore();
		struct txd_fs *fs;
		faultos_install();
		cr_assert_eq(txd_fs_open(store, &opts, &fs, NULL), 0);
		cr_assert_eq(run_step(fs, &work[0]), 0);
		faultos_tear_nth_pwrite(1, keep, true);
		cr_expect_neq(run_step(fs, &work[1]), 0);
		txd_fs_close(fs);
		faultos_revive();
		faultos_uninstall();
		cr_assert_eq(txd_fs_open(store, &opts, &fs, NULL), 0);
		cr_expect_eq(which_state(fs), 1, "torn at %zu", keep);
		txd_fs_close(fs);
		tt_rmtree(store);
		free(store);
	}
}

/* ---- concurrent committers --------------------------------------------------------- */
#define THREADS 4
#define ROUNDS 12

struct cw {
	struct txd_fs *fs;
	int id;
	int acked, durable;     /* rounds */
	uint64_t lsn[ROUNDS];   /* LSN of each acknowledged round */
};

static void *cw_run(void *arg)
{
	struct cw *w = arg;
	char name[16], body[64];
	snprintf(name, sizeof(name), "t%d", w->id);
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t node;
		struct txd_open_out oo;
		int n = snprintf(body, sizeof(body), "%d:%d:%s", w->id, r, "payload-payload");
		if (tt_resolve(w->fs, name, NULL, NULL, &node) ||
		    txd_open(w->fs, NULL, node, O_WRONLY | O_TRUNC, &oo))
			return NULL;
		int err = txd_write(w->fs, NULL, oo.fh, body, (size_t)n, 0) < 0;
		err = err || txd_flush(w->fs, oo.fh, &tt_cred, &w->lsn[r]);
		txd_release(w->fs, oo.fh);
		if (err)
			return NULL;
		w->acked = r + 1;
		if (r % 3 == 2) {
			if (txd_sync_wait(w->fs))
				return NULL;
			w->durable = r + 1;
		}
	}
	return NULL;
}

/* Concurrent commits, crashed at spread-out I/O steps: per file the content is
 * one acknowledged-or-in-flight round no older than the durable/acked one, and
 * no commit survives while an earlier-LSN acknowledged commit is missing. */
static void concurrent_crash(uint64_t n, bool power)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct cw w[THREADS];
	pthread_t t[THREADS];
	cr_assert_eq(txd_fs_open(store, &opts, &fs, NULL), 0);
	for (int k = 0; k < THREADS; k++) {
		char name[16];
		snprintf(name, sizeof(name), "t%d", k);
		cr_assert_eq(tt_put(fs, name, "", 0), 0);
	}
	cr_assert_eq(txd_sync_wait(fs), 0);
	txd_fs_close(fs);
	faultos_install();
	faultos_crash_at(FOS_PWRITE, n);
	bool opened = txd_fs_open(store, &opts, &fs, NULL) == 0; /* may crash in open */
	for (int k = 0; k < THREADS; k++) {
		w[k] = (struct cw){.fs = fs, .id = k};
		if (opened)
			pthread_create(&t[k], NULL, cw_run, &w[k]);
	}
	for (int k = 0; k < THREADS && opened; k++)
		pthread_join(t[k], NULL);
	if (opened)
		txd_fs_close(fs);
	if (power)
		faultos_power_cut(n);
	faultos_revive();
	faultos_uninstall();
	int oerr = txd_fs_open(store, &opts, &fs, NULL);
	cr_assert_eq(oerr, 0, "reopen after crash at pwrite #%llu: %s", (unsigned long long)n,
		     txd_strerror(oerr));
	int got[THREADS];
	for (int k = 0; k < THREADS; k++) {
		char name[16], *data;
		size_t len;
		int id, round = -1;
		snprintf(name, sizeof(name), "t%d", k);
		cr_assert_eq(tt_get(fs, name, &data, &len), 0, "chunks verify");
		if (len)
			cr_assert_eq(sscanf(data, "%d:%d:", &id, &round), 2, "torn content: %s", data);
		free(data);
		got[k] = round + 1; /* rounds present */
		int must = power ? w[k].durable : w[k].acked;
		cr_expect_geq(got[k], must, "t%d: %d rounds, %d must be there", k, got[k], must);
		cr_expect_leq(got[k], w[k].acked + 1, "t%d: a round that never ran", k);
	}
	/* no holes: a present round's LSN bounds what must be present elsewhere */
	for (int a = 0; a < THREADS; a++) {
		if (got[a] == 0 || got[a] > w[a].acked)
			continue;
		uint64_t lsn = w[a].lsn[got[a] - 1];
		for (int b = 0; b < THREADS; b++)
			for (int r = got[b]; r < w[b].acked; r++)
				cr_expect_gt(w[b].lsn[r], lsn,
					     "hole: t%d round %d (lsn %llu) missing, t%d lsn %llu present",
					     b, r, (unsigned long long)w[b].lsn[r], a,
					     (unsigned long long)lsn);
	}
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

Test(crash, concurrent_committers_process_death)
{
	for (uint64_t n = 1; n <= 48; n += 3)
		concurrent_crash(n, false);
}

Test(crash, concurrent_committers_power_cut)
{
	for (uint64_t n = 1; n <= 48; n += 3)
		concurrent_crash(n, true);
}
