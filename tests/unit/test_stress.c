/*
 * test_stress.c — many threads on a few shared files through the engine API:
 * write/flush, fsync (prepare), setattr (size, mtime alone, through a handle
 * and by path), rename over, readdir, lookup/getattr, snapshot readers,
 * checkpoints and transactions (begin, write, commit, end), in random order.
 *
 * It checks what the engine promises whatever the interleaving:
 *   - no call fails with anything but the errors a race explains (ESTALE:
 *     a node was frozen or replaced, ENOENT/EEXIST: a name came or went,
 *     EBUSY: a transaction's conflict);
 *   - no deadlock (the suite's timeout), core.h lock order;
 *   - afterwards no handle is open, the store is not failed, every file
 *     reads back (no torn chunk, no EIO), and memory equals the log (core.h F2: the tree is the same
 *     after a reopen that replays it).
 * Under ThreadSanitizer (make tsan; tests/check.sh tsan pass) this is the
 * mechanical check of the lock order and of the atomics in core.h and dtree.h.
 *
 * STRESS_ROUNDS (default 120 per thread) sets the length; make check-long
 * runs it longer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ttsuite.h"

TestSuite(stress, .init = setup, .fini = teardown, .timeout = 600);

#define NFILES 3
#define NTHREADS 6

struct worker {
	int id;
	int rounds;
	uint64_t rng;
	int err;        /* first unexpected error */
	char what[128]; /* the call that returned it */
	int txns, committed;
	bool no_txn;
};

static uint64_t next_rand(struct worker *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

static bool explained(int err)
{
	return err == 0 || err == -ESTALE || err == -ENOENT || err == -EEXIST || err == -EBUSY;
}

/* Record the first unexpected result; returns err for chaining. */
static int note(struct worker *w, int err, const char *what)
{
	if (!explained(err) && !w->err) {
		w->err = err;
		snprintf(w->what, sizeof(w->what), "%s", what);
	}
	return err;
}

static void shared_name(struct worker *w, char *buf, size_t size)
{
	snprintf(buf, size, "s%d", (int)(next_rand(w) % NFILES));
}

/* Open a shared file by name; a frozen node (ESTALE) is looked up again. */
static int open_name(const char *name, int flags, struct txd_open_out *oo, uint64_t *node)
{
	int err = -ESTALE;
	for (int tries = 0; tries < 4 && err == -ESTALE; tries++) {
		err = tt_resolve(fs, name, NULL, NULL, node);
		if (!err)
			err = txd_open(fs, NULL, *node, flags, oo);
	}
	return err;
}

static void op_write_close(struct worker *w, bool use_fsync)
{
	char name[16], buf[20000];
	struct txd_open_out oo;
	uint64_t node, lsn;
	shared_name(w, name, sizeof(name));
	int flags = (next_rand(w) & 1) ? O_WRONLY | O_TRUNC : O_RDWR;
	if (note(w, open_name(name, flags, &oo, &node), "open for writing"))
		return;
	size_t len = 1 + next_rand(w) % sizeof(buf);
	uint64_t off = next_rand(w) % 30000;
	memset(buf, 'a' + w->id, len);
	ssize_t n = txd_write(fs, NULL, oo.fh, buf, len, off);
	note(w, n < 0 ? (int)n : n == (ssize_t)len ? 0 : -EIO, "write");
	if (use_fsync)
		note(w, txd_fsync_prepare(fs, oo.fh, &tt_cred, &lsn), "fsync prepare");
	note(w, txd_flush(fs, oo.fh, &tt_cred, NULL), "flush");
	note(w, txd_release(fs, oo.fh), "release");
}

/* pwrite 1 byte; ftruncate; futimens(mtime only) through the handle — the
 * pattern of the defect 1 hang — then close. */
static void op_setattr_handle(struct worker *w)
{
	char name[16];
	struct txd_open_out oo;
	uint64_t node;
	shared_name(w, name, sizeof(name));
	if (note(w, open_name(name, O_RDWR, &oo, &node), "open O_RDWR"))
		return;
	for (int k = 0; k < 3; k++) {
		ssize_t n = txd_write(fs, NULL, oo.fh, "t", 1, next_rand(w) % 9000);
		note(w, n < 0 ? (int)n : 0, "write 1");
		struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = next_rand(w) % 5000};
		note(w, txd_setattr(fs, NULL, node, &sa, oo.fh, NULL), "ftruncate");
		struct txd_setattr tm = {.valid = TXD_SET_MTIME | TXD_SET_CTIME,
					 .mtime = {.tv_sec = 1000 + k}, .ctime = {.tv_sec = 1000 + k}};
		struct txd_attr a;
		note(w, txd_setattr(fs, NULL, node, &tm, oo.fh, &a), "futimens");
	}
	note(w, txd_flush(fs, oo.fh, &tt_cred, NULL), "flush");
	note(w, txd_release(fs, oo.fh), "release");
}

static void op_truncate_path(struct worker *w)
{
	char name[16];
	uint64_t node;
	shared_name(w, name, sizeof(name));
	if (note(w, tt_resolve(fs, name, NULL, NULL, &node), "resolve"))
		return;
	struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = next_rand(w) % 10000};
	note(w, txd_setattr(fs, NULL, node, &sa, 0, NULL), "truncate");
	struct txd_setattr tm = {.valid = TXD_SET_MTIME | TXD_SET_ATIME,
				 .mtime = {.tv_sec = 2000}, .atime = {.tv_sec = 2000}};
	note(w, txd_setattr(fs, NULL, node, &tm, 0, NULL), "utimes");
}

/* tt_put, but the lookup reference txd_create returns is given back (as
 * the kernel's FORGET would), so renamed-over inodes can be freed */
static int put_tmp(const char *path, const void *data, size_t len)
{
	uint64_t node;
	struct txd_entry e;
	struct txd_open_out oo;
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	if (!err)
		return tt_put(fs, path, data, len);
	if (err != -ENOENT)
		return err;
	if ((err = txd_create(fs, &tt_cred, TXD_ROOT_NODE, path, 0644, O_WRONLY, &e, &oo)))
		return err;
	ssize_t n = txd_write(fs, NULL, oo.fh, data, len, 0);
	err = n < 0 ? (int)n : 0;
	int ferr = txd_flush(fs, oo.fh, &tt_cred, NULL);
	txd_release(fs, oo.fh);
	txd_forget(fs, e.node, 1);
	return err ? err : ferr;
}

/* tmp + rename over a shared name (the editor's save) */
static void op_rename_over(struct worker *w)
{
	char name[16], tmp[32], body[64];
	shared_name(w, name, sizeof(name));
	snprintf(tmp, sizeof(tmp), "tmp%d", w->id);
	int n = snprintf(body, sizeof(body), "saved by %d", w->id);
	if (note(w, put_tmp(tmp, body, (size_t)n), "put tmp"))
		return;
	note(w, tt_rename(fs, tmp, name, 0), "rename over");
}

static int count_entry(void *arg, const char *name, const struct txd_entry *e, uint64_t next)
{
	(void)name, (void)e, (void)next;
	(*(int *)arg)++;
	return 0;
}

static void op_readdir_lookup(struct worker *w)
{
	uint64_t dh;
	int seen = 0;
	if (!note(w, txd_opendir(fs, TXD_ROOT_NODE, &dh), "opendir")) {
		note(w, txd_readdir(fs, dh, 0, false, count_entry, &seen), "readdir");
		note(w, txd_releasedir(fs, dh), "releasedir");
	}
	for (int k = 0; k < NFILES; k++) {
		char name[16];
		struct txd_entry e;
		struct txd_attr a;
		snprintf(name, sizeof(name), "s%d", k);
		if (!note(w, txd_lookup(fs, TXD_ROOT_NODE, name, &e), "lookup")) {
			note(w, txd_getattr(fs, e.node, &a), "getattr");
			txd_forget(fs, e.node, 1);
		}
	}
}

static void op_read(struct worker *w)
{
	char name[16], buf[8192];
	struct txd_open_out oo;
	uint64_t node;
	struct txd_attr a;
	shared_name(w, name, sizeof(name));
	if (note(w, open_name(name, O_RDONLY, &oo, &node), "open O_RDONLY"))
		return;
	for (uint64_t off = 0; off < 40000; off += sizeof(buf)) {
		ssize_t n = txd_read(fs, oo.fh, buf, sizeof(buf), off);
		if (note(w, n < 0 ? (int)n : 0, "read") || n == 0)
			break;
	}
	note(w, txd_getattr(fs, node, &a), "getattr");
	note(w, txd_release(fs, oo.fh), "release reader");
}

static void op_transaction(struct worker *w)
{
	char txn[32], path[64], vp[160], name[16], body[48];
	snprintf(txn, sizeof(txn), "w%dt%d", w->id, w->txns++);
	snprintf(path, sizeof(path), ".txdir/txn/%s", txn);
	if (note(w, tt_mkdir(fs, path), "txn begin"))
		return;
	shared_name(w, name, sizeof(name));
	snprintf(vp, sizeof(vp), "%s/root/%s", path, name);
	int n = snprintf(body, sizeof(body), "txn %s", txn);
	int err = note(w, tt_put(fs, vp, body, (size_t)n), "txn write");
	if (!err && !note(w, tt_txn_cmd(fs, txn, "commit"), "txn commit"))
		w->committed++;
	uint64_t parent;
	const char *leaf;
	if (!note(w, tt_resolve(fs, path, &parent, &leaf, NULL), "txn resolve"))
		note(w, txd_rmdir(fs, NULL, parent, leaf), "txn end");
}

static void *stress_loop(void *arg)
{
	struct worker *w = arg;
	for (int r = 0; r < w->rounds && !w->err; r++) {
		switch (next_rand(w) % 10) {
		case 0:
		case 1: op_write_close(w, false); break;
		case 2: op_write_close(w, true); break;
		case 3: op_setattr_handle(w); break;
		case 4: op_truncate_path(w); break;
		case 5: op_rename_over(w); break;
		case 6: op_readdir_lookup(w); break;
		case 7: op_read(w); break;
		case 8:
			if (!w->no_txn)
				op_transaction(w);
			break;
		case 9:
			if (next_rand(w) % 8 == 0)
				note(w, txd_checkpoint(fs), "checkpoint");
			else
				note(w, txd_sync_wait(fs), "sync");
			break;
		}
	}
	return NULL;
}

static int stress_rounds(void)
{
	const char *s = getenv("STRESS_ROUNDS");
	return s && atoi(s) > 0 ? atoi(s) : 120;
}

static void stress(bool with_txns)
{
	txd_fs_close(fs); /* faultos only while no store is open: for the crash below */
	fs = NULL;
	faultos_install();
	reopen();
	for (int k = 0; k < NFILES; k++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", k);
		cr_assert_eq(tt_put(fs, name, "start", 5), 0);
	}
	pthread_t t[NTHREADS];
	struct worker w[NTHREADS];
	for (int k = 0; k < NTHREADS; k++) {
		w[k] = (struct worker){.id = k, .rounds = stress_rounds(), .rng = 0x9e3779b97f4a7c15ull * (k + 1),
				       .no_txn = !with_txns};
		cr_assert_eq(pthread_create(&t[k], NULL, stress_loop, &w[k]), 0);
	}
	int txns = 0, committed = 0;
	for (int k = 0; k < NTHREADS; k++) {
		pthread_join(t[k], NULL);
		cr_expect_eq(w[k].err, 0, "worker %d: %s: %s", k, w[k].what, txd_strerror(w[k].err));
		txns += w[k].txns;
		committed += w[k].committed;
	}
	cr_log_info("%d transactions, %d committed", txns, committed);

	struct txd_status st;
	txd_get_status(fs, &st);
	cr_expect(!st.failed, "the store failed");
	cr_expect_eq(st.open_handles, 0, "%llu handles left open",
		     (unsigned long long)st.open_handles);
	/* (N2 is not counted here: the test helpers keep the lookup references
	 * the kernel would keep, so frozen nodes legitimately pin versions) */
	cr_log_info("%llu versions retained for %llu inodes",
		    (unsigned long long)st.versions_retained, (unsigned long long)st.inodes);
	uint64_t before, after;
	char *listing = NULL;
	cr_assert_eq(tt_fingerprint(fs, &before), 0, "every file reads back");
	tt_listing(fs, &listing);
	/* F2: a reopen that replays the log gives the same tree */
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	reopen();
	cr_assert_eq(tt_fingerprint(fs, &after), 0);
	if (before != after) {
		char *now = NULL;
		tt_listing(fs, &now);
		cr_expect_eq(before, after, "tree differs after replay:\n%s\n--- after:\n%s",
			     listing ? listing : "", now ? now : "");
		free(now);
	}
	free(listing);
}

Test(stress, shared_files_keep_the_invariants)
{
	stress(true);
}

/* The same without transactions (their commits serialise much of the rest). */
Test(stress, without_transactions)
{
	stress(false);
}
