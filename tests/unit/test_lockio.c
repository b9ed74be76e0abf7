/*
 * test_lockio.c — what runs under fs->lock stays short (issue 9, defect 2):
 * st_blocks comes from a per-version count (ns.h N7), not from a
 * walk of the content map on every getattr; the count must follow every
 * kind of content change, live, replayed and loaded from a checkpoint.
 * (The checkpoint's own rule, ckpt.c K7, is tested in test_ckpt.c.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/ckpt.h"
#include "../../engine/core.h"
#include "ttsuite.h"

TestSuite(lockio, .init = setup, .fini = teardown, .timeout = 60);

static int add_len(void *arg, uint64_t idx, struct chunk *c)
{
	(void)idx;
	*(uint64_t *)arg += chunk_len(c);
	return 0;
}

/* st_blocks of path, checked against a walk of its head version's map. */
static uint64_t check_blocks(const char *path)
{
	uint64_t node;
	struct txd_attr a;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	uint64_t walked = 0;
	pthread_mutex_lock(&fs->lock);
	struct inode *in = ns_inode(&fs->ns, a.ino);
	cr_assert_not_null(in);
	cmap_walk(in->head->map, 0, add_len, &walked);
	cr_expect_eq(in->head->stored, walked, "%s: kept %llu, map holds %llu", path,
		     (unsigned long long)in->head->stored, (unsigned long long)walked);
	pthread_mutex_unlock(&fs->lock);
	cr_expect_eq(a.blocks, (walked + 511) / 512, "%s: st_blocks", path);
	return walked;
}

static void pwrite_at(const char *path, const void *buf, size_t n, uint64_t off)
{
	uint64_t node;
	struct txd_open_out oo;
	struct txd_cred c = {.uid = getuid(), .gid = getgid(), .pid = getpid(), .umask = 022};
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &oo), 0);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, buf, n, off), (ssize_t)n);
	cr_assert_eq(txd_flush(fs, oo.fh, &c, NULL), 0);
	cr_assert_eq(txd_release(fs, oo.fh), 0);
}

Test(lockio, N7_stored_bytes_follow_every_content_change)
{
	static char buf[300 << 10];
	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(tt_put(fs, "f", buf, 100 << 10), 0);
	cr_expect_eq(check_blocks("f"), 100 << 10);
	static char zero[32 << 10];
	pwrite_at("f", zero, sizeof(zero), 0); /* a zero chunk becomes a hole (C4) */
	cr_expect_eq(check_blocks("f"), 68 << 10);
	pwrite_at("f", buf, 10, 0); /* a hole filled, short */
	check_blocks("f");
	pwrite_at("f", buf, sizeof(buf), 1 << 20); /* sparse extension, big: a pack */
	check_blocks("f");
	struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = 40000};
	uint64_t node;
	struct txd_attr a;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_setattr(fs, NULL, node, &sa, 0, &a), 0);
	uint64_t before = check_blocks("f");
	cr_assert_eq(tt_put(fs, "g", "", 0), 0);
	cr_expect_eq(check_blocks("g"), 0);
	reopen(); /* checkpoint load */
	cr_expect_eq(check_blocks("f"), before);
	pwrite_at("f", buf, 5, 70000);
	sa.size = 0;
	cr_assert_eq(tt_resolve(fs, "g", NULL, NULL, &node), 0);
	cr_assert_eq(tt_put(fs, "g", buf, 33 << 10), 0);
	cr_assert_eq(txd_setattr(fs, NULL, node, &sa, 0, &a), 0);
	check_blocks("f");
	cr_expect_eq(check_blocks("g"), 0);
}

/* A transaction's end forgets its snapshot at once (unlinked inodes go as
 * before) and leaves the versions only it kept to ckpt_sweep, which frees
 * them in bounded holds of fs->lock instead of one walk of every inode. */
Test(lockio, N2_versions_a_released_snapshot_kept_are_swept)
{
	char name[32];
	for (int k = 0; k < 50; k++) {
		snprintf(name, sizeof(name), "f%d", k);
		cr_assert_eq(tt_put(fs, name, "one", 3), 0);
	}
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	for (int k = 0; k < 50; k++) {
		snprintf(name, sizeof(name), "f%d", k);
		cr_assert_eq(tt_put(fs, name, "two", 3), 0); /* the snapshot keeps "one" */
	}
	struct txd_status st;
	txd_get_status(fs, &st);
	uint64_t kept = st.versions_retained;
	cr_assert_geq(kept, st.inodes + 50);
	cr_assert_eq(tt_txn_end(fs, "t"), 0);
	pthread_mutex_lock(&fs->lock);
	cr_expect_eq(fs->ns.nsnaps, 0, "the snapshot is forgotten at once");
	ckpt_sweep(fs);
	pthread_mutex_unlock(&fs->lock);
	txd_get_status(fs, &st);
	cr_expect_eq(st.versions_retained, st.inodes, "kept %llu, then %llu for %llu inodes",
		     (unsigned long long)kept, (unsigned long long)st.versions_retained,
		     (unsigned long long)st.inodes);
	cr_expect_eq(tt_put(fs, "f0", "three", 5), 0);
}

/* ---- a large transaction commit builds its record without fs->lock ---------------- */
extern void (*txn_prebuild_hook)(struct txd_fs *fs, struct txn *t) __attribute__((weak));

#define PROBE_FILES 1000

static struct probe {
	uint64_t node;        /* a main-tree file */
	const char *conflict; /* a path the probe creates in the main tree */
	int getattr, lookup, put;
	bool ran, done;
} probe;

static void *probe_main(void *arg)
{
	(void)arg;
	struct txd_attr a;
	uint64_t n;
	probe.getattr = txd_getattr(fs, probe.node, &a);
	probe.lookup = tt_resolve(fs, "d/t-0", NULL, NULL, &n); /* not yet: -ENOENT */
	probe.put = tt_put(fs, probe.conflict, "main", 4);    /* a commit meanwhile */
	return NULL;
}

static pthread_t probe_thread;

/* On the committing thread, between the record's build and its apply: the
 * other thread's requests must complete (bounded wait: on code that builds
 * under fs->lock they complete only after the commit, and done stays false). */
static void probe_hook(struct txd_fs *f, struct txn *t)
{
	(void)f;
	(void)t;
	probe.ran = true;
	cr_assert_eq(pthread_create(&probe_thread, NULL, probe_main, NULL), 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	probe.done = pthread_timedjoin_np(probe_thread, NULL, &until) == 0;
}

/* A transaction of PROBE_FILES new files in d; the probe runs during its
 * commit and creates `conflict` in the main tree. Returns the commit's result. */
static int commit_with_probe(const char *conflict)
{
	char path[600];
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_put(fs, "probe", "p", 1), 0);
	cr_assert_eq(tt_resolve(fs, "probe", NULL, NULL, &probe.node), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	for (int k = 0; k < PROBE_FILES; k++) {
		snprintf(path, sizeof(path), ".txdir/txn/t/root/d/t-%d", k);
		cr_assert_eq(tt_put(fs, path, "x", 1), 0);
	}
	probe.conflict = conflict;
	cr_assert_not_null(&txn_prebuild_hook, "no txn_prebuild_hook: the commit is built under fs->lock");
	txn_prebuild_hook = probe_hook;
	int err = tt_txn_cmd(fs, "t", "commit");
	txn_prebuild_hook = NULL;
	cr_assert(probe.ran, "the commit of %d files was not built outside fs->lock", PROBE_FILES);
	if (!probe.done)
		pthread_join(probe_thread, NULL); /* it got through after the commit */
	cr_assert(probe.done, "a getattr waited for the whole commit of %d files", PROBE_FILES);
	cr_expect_eq(probe.getattr, 0);
	cr_expect_eq(probe.lookup, -ENOENT, "the transaction's files show before its apply");
	cr_expect_eq(probe.put, 0);
	return err;
}

Test(lockio, txn_commit_is_built_while_other_requests_run)
{
	cr_assert_eq(commit_with_probe("d/main-file"), 0);
	uint64_t n;
	cr_expect_eq(tt_resolve(fs, "d/t-0", NULL, NULL, &n), 0);
	cr_expect_eq(tt_resolve(fs, "d/t-999", NULL, NULL, &n), 0);
	cr_expect_eq(tt_resolve(fs, "d/main-file", NULL, NULL, &n), 0);
	uint64_t before;
	cr_assert_eq(tt_fingerprint(fs, &before), 0);
	reopen(); /* memory = log (core.h F2): the prepared apply equals replay */
	uint64_t after;
	cr_assert_eq(tt_fingerprint(fs, &after), 0);
	cr_expect_eq(after, before);
}

/* The main tree changed while the record was built: the commit checks
 * again, and a conflict made meanwhile wins (first committer wins). */
Test(lockio, txn_commit_checks_again_what_changed_meanwhile)
{
	cr_assert_eq(commit_with_probe("d/t-500"), -EBUSY);
	char *st;
	size_t len;
	cr_assert_eq(tt_get(fs, ".txdir/txn/t/status", &st, &len), 0);
	cr_expect_eq(strncmp(st, "aborted conflict", 16), 0, "%s", st);
	free(st);
	uint64_t n;
	cr_expect_eq(tt_resolve(fs, "d/t-0", NULL, NULL, &n), -ENOENT, "nothing applied");
	char *data;
	cr_assert_eq(tt_get(fs, "d/t-500", &data, &len), 0);
	cr_expect_eq(len, 4);
	free(data);
}
