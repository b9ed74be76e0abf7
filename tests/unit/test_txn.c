/*
 * test_txn.c — transactions through the engine API and the control files
 * (.txdir/txn/NAME/{root,ctl,status}), invariants of txn.h.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "core.h"
#include "ttsuite.h"
#include "txn.h"
#include <cjson/cJSON.h>

TestSuite(txn, .init = setup, .fini = teardown, .timeout = 120);

static char *status(const char *name)
{
	char path[600], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/txn/%s/status", name);
	cr_assert_eq(tt_get(fs, path, &data, &len), 0);
	return data;
}


static cJSON *info(const char *name)
{
	char path[600], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/txn/%s/info.json", name);
	cr_assert_eq(tt_get(fs, path, &data, &len), 0);
	cJSON *j = cJSON_Parse(data);
	cr_assert_not_null(j, "info.json is not JSON: %s", data);
	free(data);
	return j;
}

static const char *jstr(cJSON *j, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *vpath(const char *txn, const char *path)
{
	static __thread char buf[4][600];
	static __thread int k;
	char *p = buf[k++ % 4];
	snprintf(p, 600, ".txdir/txn/%s/root/%s", txn, path);
	return p;
}

static void expect_file(const char *path, const char *want)
{
	char *data;
	size_t len;
	int err = tt_get(fs, path, &data, &len);
	cr_assert_eq(err, 0, "read %s: %s", path, txd_strerror(err));
	cr_expect_str_eq(data, want, "%s", path);
	free(data);
}

static void expect_absent(const char *path)
{
	uint64_t n;
	cr_expect_eq(tt_resolve(fs, path, NULL, NULL, &n), -ENOENT, "%s should not exist", path);
}

/* T1: the view is the tree as of begin plus its own changes; T2: nothing
 * reaches the main tree before the commit, everything at once after it. */
Test(txn, isolation_then_atomic_publication)
{
	cr_assert_eq(tt_put(fs, "a", "old", 3), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, "late", "main after begin", 16), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "a"), "new", 3), 0);
	cr_assert_eq(tt_mkdir(fs, vpath("t", "d")), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "d/f"), "in dir", 6), 0);
	expect_file(vpath("t", "a"), "new");
	expect_absent(vpath("t", "late"));
	expect_file("a", "old");
	expect_absent("d");
	char *st = status("t");
	cr_expect_str_eq(st, "active\n");
	free(st);
	cr_assert_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	st = status("t");
	cr_expect_eq(strncmp(st, "committed ", 10), 0, "%s", st);
	free(st);
	expect_file("a", "new");
	expect_file("d/f", "in dir");
	expect_file("late", "main after begin");
	/* the derived record (SPEC §5 dtc/transactions) is on disk too */
	char cmdline[600];
	snprintf(cmdline, sizeof(cmdline),
		 "grep -l '\"state\":\"committed\"' %s/coordination/dtc/transactions/*.json "
		 ">/dev/null",
		 store);
	cr_expect_eq(system(cmdline), 0, "a committed record in dtc/transactions");
	char *info;
	size_t ilen;
	cr_assert_eq(tt_get(fs, ".txdir/txn/t/info.json", &info, &ilen), 0);
	cr_expect_not_null(strstr(info, "\"files_changed\":2"), "a changed + d/f created: %s", info);
	free(info);
	reopen();
	expect_file("a", "new");
	expect_file("d/f", "in dir");
}

/* First committer wins, in both orders; the loser applies nothing and says
 * why. */
Test(txn, write_write_conflict_both_orders)
{
	for (int order = 0; order < 2; order++) {
		char name[8];
		snprintf(name, sizeof(name), "f%d", order);
		cr_assert_eq(tt_put(fs, name, "base", 4), 0);
		cr_assert_eq(tt_txn_begin(fs, "x"), 0);
		cr_assert_eq(tt_txn_begin(fs, "y"), 0);
		cr_assert_eq(tt_put(fs, vpath("x", name), "from x", 6), 0);
		cr_assert_eq(tt_put(fs, vpath("y", name), "from y", 6), 0);
		cr_assert_eq(tt_put(fs, vpath("y", "y-only"), "y", 1), 0);
		const char *first = order ? "y" : "x", *second = order ? "x" : "y";
		cr_assert_eq(tt_txn_cmd(fs, first, "commit"), 0);
		cr_expect_eq(tt_txn_cmd(fs, second, "commit"), -EBUSY);
		char *st = status(second);
		char want[64];
		snprintf(want, sizeof(want), " path=/%s\n", name);
		cr_expect_eq(strncmp(st, "aborted conflict winner=", 24), 0, "%s", st);
		cr_expect(strlen(st) > strlen(want) && strcmp(st + strlen(st) - strlen(want), want) == 0,
			  "%s", st);
		free(st);
		expect_file(name, order ? "from y" : "from x");
		if (order == 0)
			expect_absent("y-only");
		cr_assert_eq(tt_txn_end(fs, "x"), 0);
		cr_assert_eq(tt_txn_end(fs, "y"), 0);
	}
}

/* A main-tree commit after begin conflicts like another transaction. */
Test(txn, main_tree_change_conflicts)
{
	cr_assert_eq(tt_put(fs, "a", "base", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "a"), "txn", 3), 0);
	cr_assert_eq(tt_put(fs, "a", "main", 4), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY);
	expect_file("a", "main");
}

/* SPEC §4: directory mtime/nlink merge — different names in one directory
 * never conflict; the same new name does. */
Test(txn, directory_changes_merge)
{
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_txn_begin(fs, "x"), 0);
	cr_assert_eq(tt_txn_begin(fs, "y"), 0);
	cr_assert_eq(tt_put(fs, vpath("x", "d/one"), "1", 1), 0);
	cr_assert_eq(tt_mkdir(fs, vpath("x", "d/sub1")), 0);
	cr_assert_eq(tt_put(fs, vpath("y", "d/two"), "2", 1), 0);
	cr_assert_eq(tt_mkdir(fs, vpath("y", "d/sub2")), 0);
	cr_assert_eq(tt_put(fs, "d/three", "3", 1), 0); /* main, meanwhile */
	cr_assert_eq(tt_txn_cmd(fs, "x", "commit"), 0);
	cr_assert_eq(tt_txn_cmd(fs, "y", "commit"), 0, "different names in one directory");
	expect_file("d/one", "1");
	expect_file("d/two", "2");
	expect_file("d/three", "3");
	uint64_t node;
	struct txd_attr a;
	cr_assert_eq(tt_resolve(fs, "d", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.nlink, 4, "2 + sub1 + sub2, merged");
	reopen();
	cr_assert_eq(tt_resolve(fs, "d", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.nlink, 4);

	cr_assert_eq(tt_txn_begin(fs, "p"), 0);
	cr_assert_eq(tt_txn_begin(fs, "q"), 0);
	cr_assert_eq(tt_put(fs, vpath("p", "d/same"), "p", 1), 0);
	cr_assert_eq(tt_put(fs, vpath("q", "d/same"), "q", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "p", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "q", "commit"), -EBUSY, "create/create of one name");
	expect_file("d/same", "p");
}

Test(txn, rename_rename_and_delete_write_conflict)
{
	cr_assert_eq(tt_put(fs, "src", "s", 1), 0);
	cr_assert_eq(tt_txn_begin(fs, "x"), 0);
	cr_assert_eq(tt_txn_begin(fs, "y"), 0);
	cr_assert_eq(tt_rename(fs, vpath("x", "src"), vpath("x", "dst1"), 0), 0);
	cr_assert_eq(tt_rename(fs, vpath("y", "src"), vpath("y", "dst2"), 0), 0);
	cr_assert_eq(tt_txn_cmd(fs, "x", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "y", "commit"), -EBUSY, "rename/rename");
	expect_file("dst1", "s");
	expect_absent("dst2");

	cr_assert_eq(tt_put(fs, "w", "orig", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "del"), 0);
	cr_assert_eq(tt_txn_begin(fs, "wr"), 0);
	cr_assert_eq(tt_unlink(fs, vpath("del", "w")), 0);
	cr_assert_eq(tt_put(fs, vpath("wr", "w"), "written", 7), 0);
	cr_assert_eq(tt_txn_cmd(fs, "wr", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "del", "commit"), -EBUSY, "delete/write");
	expect_file("w", "written");
}

/* Two transactions that each move a directory into the other touch no
 * common entry; committing both would cut both (and their files) off the
 * tree. The second is a conflict. Also through a directory the view made,
 * and against a main-tree move. */
Test(txn, crossed_directory_moves_conflict_instead_of_a_cycle)
{
	cr_assert_eq(tt_mkdir(fs, "r"), 0);
	cr_assert_eq(tt_mkdir(fs, "r/X"), 0);
	cr_assert_eq(tt_mkdir(fs, "r/Y"), 0);
	cr_assert_eq(tt_put(fs, "r/X/fx", "keep", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "t1"), 0);
	cr_assert_eq(tt_txn_begin(fs, "t2"), 0);
	cr_assert_eq(tt_rename(fs, vpath("t1", "r/X"), vpath("t1", "r/Y/X"), 0), 0);
	cr_assert_eq(tt_rename(fs, vpath("t2", "r/Y"), vpath("t2", "r/X/Y"), 0), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t1", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t2", "commit"), -EBUSY, "a cycle");
	char *st = status("t2");
	cr_expect(!strncmp(st, "aborted conflict winner=", 24), "%s", st);
	free(st);
	expect_file("r/Y/X/fx", "keep");

	/* through a directory the view created: Y into X/new, X is in Y now */
	cr_assert_eq(tt_txn_begin(fs, "t3"), 0);
	cr_assert_eq(tt_mkdir(fs, vpath("t3", "r/Y/X/new")), 0);
	cr_assert_eq(tt_rename(fs, vpath("t3", "r/Y"), vpath("t3", "r/Y/X/new/Y"), 0), -EINVAL,
		     "the view refuses a move into its own subtree, as ext4");
	cr_assert_eq(tt_txn_cmd(fs, "t3", "abort"), 0);
	cr_assert_eq(tt_mkdir(fs, "r/Z"), 0);
	cr_assert_eq(tt_txn_begin(fs, "t4"), 0);
	cr_assert_eq(tt_mkdir(fs, vpath("t4", "r/Z/new")), 0);
	cr_assert_eq(tt_rename(fs, vpath("t4", "r/Y"), vpath("t4", "r/Z/new/Y"), 0), 0);
	cr_assert_eq(tt_rename(fs, "r/Z", "r/Y/X/Z", 0), 0); /* the main tree: Z into Y */
	cr_expect_eq(tt_txn_cmd(fs, "t4", "commit"), -EBUSY, "Y into Z/new, Z in Y");
	expect_file("r/Y/X/fx", "keep");

	/* a move that makes no cycle still commits */
	cr_assert_eq(tt_txn_begin(fs, "t5"), 0);
	cr_assert_eq(tt_rename(fs, vpath("t5", "r/Y/X"), vpath("t5", "r/X2"), 0), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t5", "commit"), 0);
	expect_file("r/X2/fx", "keep");
}

/* Snapshot isolation allows write skew (documented, not a bug). */
Test(txn, write_skew_is_allowed)
{
	cr_assert_eq(tt_put(fs, "a", "1", 1), 0);
	cr_assert_eq(tt_put(fs, "b", "1", 1), 0);
	cr_assert_eq(tt_txn_begin(fs, "x"), 0);
	cr_assert_eq(tt_txn_begin(fs, "y"), 0);
	expect_file(vpath("x", "a"), "1"); /* x reads a, writes b */
	cr_assert_eq(tt_put(fs, vpath("x", "b"), "0", 1), 0);
	expect_file(vpath("y", "b"), "1"); /* y reads b, writes a */
	cr_assert_eq(tt_put(fs, vpath("y", "a"), "0", 1), 0);
	cr_expect_eq(tt_txn_cmd(fs, "x", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "y", "commit"), 0);
	expect_file("a", "0");
	expect_file("b", "0");
}

Test(txn, abort_and_rmdir_apply_nothing)
{
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "x"), "x", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t", "abort"), 0);
	char *st = status("t");
	cr_expect_str_eq(st, "aborted request\n");
	free(st);
	expect_absent("x");
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY, "an aborted transaction does not commit");
	cr_assert_eq(tt_txn_end(fs, "t"), 0);
	cr_assert_eq(tt_txn_begin(fs, "u"), 0);
	cr_assert_eq(tt_put(fs, vpath("u", "y"), "y", 1), 0);
	cr_assert_eq(tt_txn_end(fs, "u"), 0);
	expect_absent("y");
	expect_absent(".txdir/txn/u");
	cr_expect_eq(tt_txn_cmd(fs, "nope", "commit"), -ENOENT);
}

Test(txn, bad_commands_and_names)
{
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_expect_eq(tt_txn_begin(fs, "t"), -EEXIST);
	cr_expect_eq(tt_txn_cmd(fs, "t", "comit"), -EINVAL);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit\n"), 0, "a trailing newline is fine (echo)");
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = 0;
	cr_expect_eq(tt_txn_begin(fs, longname), -ENAMETOOLONG);
	/* SPEC §6: no whitespace or control characters */
	cr_expect_eq(tt_txn_begin(fs, "bad name"), -EINVAL);
	cr_expect_eq(tt_txn_begin(fs, "tab\tx"), -EINVAL);
	cr_expect_eq(tt_txn_begin(fs, "nl\nx"), -EINVAL);
	cr_expect_eq(tt_txn_begin(fs, "del\x7f"), -EINVAL);
}

/* SPEC §6: a per-uid limit on open transactions (EDQUOT), root unlimited;
 * ended ones do not count. */
Test(txn, per_uid_limit_EDQUOT)
{
	struct txd_cred u = tt_cred;
	struct txd_entry e;
	uint64_t txns;
	const char *leaf;

	u.uid = 1000;
	u.pid = getpid();
	fs->opts.max_txns = 2;
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/x", &txns, &leaf, NULL), 0);
	cr_assert_eq(txd_mkdir(fs, &u, txns, "u1", 0755, &e), 0);
	cr_assert_eq(txd_mkdir(fs, &u, txns, "u2", 0755, &e), 0);
	cr_expect_eq(txd_mkdir(fs, &u, txns, "u3", 0755, &e), -EDQUOT);
	cr_assert_eq(tt_txn_begin(fs, "r1"), 0, "root is not limited");
	cr_assert_eq(tt_txn_begin(fs, "r2"), 0);
	cr_assert_eq(tt_txn_begin(fs, "r3"), 0);
	cr_assert_eq(tt_txn_cmd(fs, "u1", "abort"), 0);
	cr_expect_eq(txd_mkdir(fs, &u, txns, "u3", 0755, &e), 0, "an ended one does not count");
}

/* A read-only transaction is one consistent snapshot and refuses changes. */
Test(txn, read_only_snapshot)
{
	cr_assert_eq(tt_put(fs, "a", "v1", 2), 0);
	cr_assert_eq(tt_txn_begin(fs, "r"), 0);
	cr_assert_eq(tt_txn_cmd(fs, "r", "readonly"), 0);
	cr_assert_eq(tt_put(fs, "a", "v2", 2), 0);
	expect_file(vpath("r", "a"), "v1");
	cr_expect_eq(tt_put(fs, vpath("r", "new"), "x", 1), -EROFS);
	cr_expect_eq(tt_mkdir(fs, vpath("r", "dir")), -EROFS);
	cr_assert_eq(tt_txn_cmd(fs, "r", "abort"), 0);
}

/* T6 (SPEC §4): a commit waits (bounded) for the view's writable handles, then
 * fails EBUSY and stays active; after the close it commits. */
Test(txn, commit_waits_for_writers)
{
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "f"), "x", 1), 0);
	uint64_t node;
	struct txd_open_out w;
	cr_assert_eq(tt_resolve(fs, vpath("t", "f"), NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY);
	char *st = status("t");
	cr_expect_str_eq(st, "active\n");
	free(st);
	cJSON *j = info("t");
	const char *le = jstr(j, "last_error");
	cr_expect(le && strcmp(le, "busy reason=open-in-view path=/f") == 0, "%s", le);
	cJSON_Delete(j);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "y", 1, 0), 1);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	txd_release(fs, w.fh);
	cr_assert_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	expect_file("f", "y");
}

/* txd_notify.will_block: the engine announces a wait before it starts, so
 * the FUSE layer can keep serving the requests that end it. Here the
 * announcement releases the writer (from another thread, as a close would
 * arrive): the commit then succeeds instead of waiting out its bound. */
static sem_t announced;
static int nannounced;

static void on_will_block(void *arg)
{
	(void)arg;
	__atomic_fetch_add(&nannounced, 1, __ATOMIC_RELAXED);
	sem_post(&announced);
}

static void *close_writer(void *arg)
{
	uint64_t fh = *(uint64_t *)arg;

	sem_wait(&announced);
	txd_write(fs, NULL, fh, "z", 1, 0);
	txd_flush(fs, fh, &tt_cred, NULL);
	txd_release(fs, fh);
	return NULL;
}

Test(txn, commit_announces_its_wait)
{
	static const struct txd_notify cb = {.will_block = on_will_block};
	struct txd_open_out w;
	uint64_t node;
	pthread_t t;

	cr_assert_eq(sem_init(&announced, 0, 0), 0);
	txd_set_notify(fs, &cb);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "f"), "x", 1), 0);
	cr_assert_eq(tt_resolve(fs, vpath("t", "f"), NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	cr_assert_eq(pthread_create(&t, NULL, close_writer, &w.fh), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	if (!__atomic_load_n(&nannounced, __ATOMIC_RELAXED))
		sem_post(&announced); /* not announced: let the writer go anyway */
	pthread_join(t, NULL);
	cr_expect_geq(nannounced, 1);
	expect_file("f", "z");
}

/* Views never share entries with the main tree or each other. */
Test(txn, cross_view_rename_is_exdev)
{
	cr_assert_eq(tt_put(fs, "a", "a", 1), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_expect_eq(tt_rename(fs, vpath("t", "a"), "b", 0), -EXDEV);
	cr_expect_eq(tt_rename(fs, "a", vpath("t", "b"), 0), -EXDEV);
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, vpath("t", ".txdir/txn"), NULL, NULL, &node), 0,
		     ".txdir is reachable inside a view");
}

/* T2 across crashes: a commit is one log record — after a crash it is there
 * whole (if its write returned) or not at all. */
Test(txn, crash_keeps_commits_whole)
{
	for (int k = 0; k < 20; k++) {
		char f[16];
		snprintf(f, sizeof(f), "f%02d", k);
		cr_assert_eq(tt_put(fs, f, "old", 3), 0);
	}
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	for (int k = 0; k < 20; k++) {
		char f[16];
		snprintf(f, sizeof(f), "f%02d", k);
		cr_assert_eq(tt_put(fs, vpath("t", f), "new", 3), 0);
	}
	cr_assert_eq(tt_txn_begin(fs, "u"), 0);
	cr_assert_eq(tt_put(fs, vpath("u", "uncommitted"), "u", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_install();
	faultos_power_cut(42);
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	reopen();
	for (int k = 0; k < 20; k++) {
		char f[16];
		snprintf(f, sizeof(f), "f%02d", k);
		expect_file(f, "new");
	}
	expect_absent("uncommitted");
	expect_absent(".txdir/txn/u");
}

/* Invariant across 10 files (sum constant) under 4 concurrent movers, each
 * moving value between two files in its own transaction, audited by
 * read-only transactions: never broken (issue 4). */
#define NF 10
#define MOVES 40

static int read_int(const char *path)
{
	char *data;
	size_t len;
	if (tt_get(fs, path, &data, &len))
		return -1000000;
	int v = atoi(data);
	free(data);
	return v;
}

static int put_int(const char *path, int v)
{
	char b[16];
	int n = snprintf(b, sizeof(b), "%d", v);
	return tt_put(fs, path, b, (size_t)n);
}

static void *mover(void *arg)
{
	int id = (int)(intptr_t)arg, done = 0;
	unsigned seed = (unsigned)id * 7919u;
	for (int k = 0; done < MOVES && k < MOVES * 20; k++) {
		char name[32], pa[64], pb[64];
		snprintf(name, sizeof(name), "m%d-%d", id, k);
		int a = (int)(rand_r(&seed) % NF), b = (a + 1 + (int)(rand_r(&seed) % (NF - 1))) % NF;
		if (tt_txn_begin(fs, name))
			continue;
		snprintf(pa, sizeof(pa), "n%d", a);
		snprintf(pb, sizeof(pb), "n%d", b);
		int va = read_int(vpath(name, pa)), vb = read_int(vpath(name, pb));
		if (put_int(vpath(name, pa), va - 1) == 0 && put_int(vpath(name, pb), vb + 1) == 0 &&
		    tt_txn_cmd(fs, name, "commit") == 0)
			done++;
		char path[600];
		snprintf(path, sizeof(path), ".txdir/txn/%s", name);
		uint64_t parent;
		const char *leaf;
		if (!tt_resolve(fs, path, &parent, &leaf, NULL))
			txd_rmdir(fs, NULL, parent, leaf);
	}
	return (void *)(intptr_t)done;
}

static int audit_stop;

static void *auditor(void *arg)
{
	int *broken = arg;
	for (int k = 0; !__atomic_load_n(&audit_stop, __ATOMIC_ACQUIRE); k++) {
		char name[32];
		snprintf(name, sizeof(name), "audit-%d", k);
		if (tt_txn_begin(fs, name))
			continue;
		tt_txn_cmd(fs, name, "readonly");
		int sum = 0;
		for (int f = 0; f < NF; f++) {
			char p[16];
			snprintf(p, sizeof(p), "n%d", f);
			sum += read_int(vpath(name, p));
		}
		if (sum != NF * 100)
			(*broken)++;
		char path[600];
		snprintf(path, sizeof(path), ".txdir/txn/%s", name);
		uint64_t parent;
		const char *leaf;
		if (!tt_resolve(fs, path, &parent, &leaf, NULL))
			txd_rmdir(fs, NULL, parent, leaf);
	}
	return NULL;
}

Test(txn, invariant_under_concurrent_movers)
{
	for (int f = 0; f < NF; f++) {
		char p[16];
		snprintf(p, sizeof(p), "n%d", f);
		cr_assert_eq(put_int(p, 100), 0);
	}
	pthread_t m[4], a;
	int broken = 0;
	audit_stop = 0;
	pthread_create(&a, NULL, auditor, &broken);
	for (int k = 0; k < 4; k++)
		pthread_create(&m[k], NULL, mover, (void *)(intptr_t)k);
	int total = 0;
	for (int k = 0; k < 4; k++) {
		void *r;
		pthread_join(m[k], &r);
		total += (int)(intptr_t)r;
	}
	__atomic_store_n(&audit_stop, 1, __ATOMIC_RELEASE);
	pthread_join(a, NULL);
	cr_expect_eq(broken, 0, "%d audits saw a broken sum", broken);
	cr_expect_gt(total, 0);
	int sum = 0;
	for (int f = 0; f < NF; f++) {
		char p[16];
		snprintf(p, sizeof(p), "n%d", f);
		sum += read_int(p);
	}
	cr_expect_eq(sum, NF * 100, "final sum after %d committed moves", total);
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

/* Issue 4: 100,000 files in one transaction commit whole, with memory
 * bounded by what the transaction holds (~1.3 KiB per file), and the write
 * set stays linear. */
Test(txn, hundred_thousand_files_commit, .timeout = 300)
{
	long before = rss_kb();
	cr_assert_eq(tt_txn_begin(fs, "big"), 0);
	cr_assert_eq(tt_mkdir(fs, vpath("big", "d")), 0);
	char body[1024];
	memset(body, 'b', sizeof(body));
	for (int k = 0; k < 100000; k++) {
		char p[64];
		int n = snprintf(p, sizeof(p), "d/f%06d", k);
		memcpy(body, p, (size_t)n);
		cr_assert_eq(tt_put(fs, vpath("big", p), body, sizeof(body)), 0, "file %d", k);
	}
	cr_assert_eq(tt_txn_cmd(fs, "big", "commit"), 0);
	long grown = rss_kb() - before;
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) /* sanitizer shadow inflates RSS */
	cr_expect_lt(grown, 512 * 1024, "memory grew %ld KiB for 100,000 files", grown);
#else
	(void)grown;
#endif
	cr_assert_eq(tt_txn_end(fs, "big"), 0);
	reopen();
	for (int k = 0; k < 100000; k += 9999) {
		char p[64], *data;
		size_t len;
		int n = snprintf(p, sizeof(p), "d/f%06d", k);
		cr_assert_eq(tt_get(fs, p, &data, &len), 0);
		cr_expect_eq(len, sizeof(body));
		cr_expect_eq(memcmp(data, p, (size_t)n), 0);
		free(data);
	}
}

/* rmdir in a view of a directory the main tree filled meanwhile: conflict,
 * never an orphaned entry. */
Test(txn, rmdir_of_directory_filled_meanwhile_conflicts)
{
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	uint64_t parent;
	const char *leaf;
	cr_assert_eq(tt_resolve(fs, vpath("t", "d"), &parent, &leaf, NULL), 0);
	cr_assert_eq(txd_rmdir(fs, NULL, parent, leaf), 0);
	cr_assert_eq(tt_put(fs, "d/new", "n", 1), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY);
	expect_file("d/new", "n");
}

/* T5: a transaction whose creator (and the creator's parent) are gone and
 * that has nothing open is aborted after the grace period; one with a live
 * creator is not. */
Test(txn, abandoned_transactions_are_aborted)
{
	txd_fs_close(fs);
	struct txd_opts o = {.txn_grace_s = 1};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	cr_assert_gt(dead, 0);
	waitpid(dead, NULL, 0);
	struct txd_cred gone = tt_cred, alive = tt_cred;
	gone.pid = dead;
	alive.pid = getpid();
	uint64_t txns;
	const char *leaf;
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/x", &txns, &leaf, NULL), 0);
	struct txd_entry e;
	cr_assert_eq(txd_mkdir(fs, &gone, txns, "orphan", 0755, &e), 0);
	cr_assert_eq(txd_mkdir(fs, &alive, txns, "kept", 0755, &e), 0);
	cr_assert_eq(tt_put(fs, vpath("orphan", "f"), "x", 1), 0);
	char *st = NULL;
	/* bounded wait for the background thread (checks every second) */
	for (int k = 0; k < 100; k++) {
		free(st);
		st = status("orphan");
		if (strncmp(st, "aborted", 7) == 0)
			break;
		struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	cr_expect_eq(strncmp(st, "aborted abandoned", 17), 0, "%s", st);
	free(st);
	st = status("kept");
	cr_expect_str_eq(st, "active\n");
	free(st);
	expect_absent("f");
}

/* Removing a directory together with its contents in one transaction
 * commits (rm -rf, rsync --delete); only entries bound after the begin make
 * it a conflict. */
Test(txn, remove_directory_with_contents)
{
	cr_assert_eq(tt_mkdir(fs, "q"), 0);
	cr_assert_eq(tt_put(fs, "q/a", "a", 1), 0);
	cr_assert_eq(tt_put(fs, "q/b", "b", 1), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_unlink(fs, vpath("t", "q/a")), 0);
	cr_assert_eq(tt_unlink(fs, vpath("t", "q/b")), 0);
	uint64_t parent;
	const char *leaf;
	cr_assert_eq(tt_resolve(fs, vpath("t", "q"), &parent, &leaf, NULL), 0);
	cr_assert_eq(txd_rmdir(fs, NULL, parent, leaf), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	expect_absent("q");
	reopen();
	expect_absent("q");
	uint64_t root;
	struct txd_attr a;
	cr_assert_eq(tt_resolve(fs, "", NULL, NULL, &root), 0);
	cr_assert_eq(txd_getattr(fs, root, &a), 0);
	cr_expect_eq(a.nlink, 2);
}

/* Control objects keep one node id (concurrent path walks agree). */
Test(txn, control_nodes_are_stable)
{
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	uint64_t a, b;
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/t", NULL, NULL, &a), 0);
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/t", NULL, NULL, &b), 0);
	cr_expect_eq(a, b);
}

/* T6 (SPEC §4): a commit that meets a main-tree writer of its write set fails
 * EBUSY, applies nothing, stays active, and last_error names the path; after
 * the writer closes it commits. */
Test(txn, commit_meeting_main_writer_stays_active)
{
	cr_assert_eq(tt_put(fs, "a b", "base", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "a b"), "txn", 3), 0);
	uint64_t node;
	struct txd_open_out w;
	cr_assert_eq(tt_resolve(fs, "a b", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY);
	char *st = status("t");
	cr_expect_str_eq(st, "active\n");
	free(st);
	cJSON *j = info("t");
	const char *le = jstr(j, "last_error");
	cr_expect(le && strstr(le, "busy") && strstr(le, "path=/a b"), "last_error: %s", le);
	cr_expect_str_eq(jstr(j, "state"), "active");
	cJSON_Delete(j);
	expect_file("a b", "base");
	txd_release(fs, w.fh);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	expect_file("a b", "txn");
	j = info("t");
	cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "last_error")) ||
		  !cJSON_GetObjectItemCaseSensitive(j, "last_error"), "cleared by the commit");
	cJSON_Delete(j);
}

/* SPEC §4: one line, reason one word, key=value details, the path last and
 * escaped (\n, \\). */
Test(txn, status_line_parses_whatever_the_path)
{
	const char *name = "a b\nc\\d";
	cr_assert_eq(tt_put(fs, name, "base", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "x"), 0);
	cr_assert_eq(tt_txn_begin(fs, "y"), 0);
	cr_assert_eq(tt_put(fs, vpath("x", name), "x", 1), 0);
	cr_assert_eq(tt_put(fs, vpath("y", name), "y", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "x", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "y", "commit"), -EBUSY);
	char *st = status("y"), *nl = strchr(st, '\n');
	cr_expect(nl && nl[1] == 0, "one line: [%s]", st);
	unsigned long long winner;
	int pos = 0;
	cr_expect_eq(sscanf(st, "aborted conflict winner=%llu path=%n", &winner, &pos), 1, "%s", st);
	cr_expect_str_eq(st + pos, "/a b\\nc\\\\d\n");
	free(st);
	cr_assert_eq(tt_txn_cmd(fs, "x", "abort"), -EINVAL, "committed: too late to abort");
	cr_assert_eq(tt_txn_begin(fs, "r"), 0);
	cr_assert_eq(tt_txn_cmd(fs, "r", "abort"), 0);
	st = status("r");
	cr_expect_str_eq(st, "aborted request\n");
	free(st);
	cr_assert_eq(tt_txn_begin(fs, "m"), 0);
	cr_assert_eq(tt_txn_end(fs, "m"), 0);
}

/* A conflict with a winner that removed the file, or its directory, names
 * the path the loser changed (as it was at its snapshot), never "/?". */
Test(txn, conflict_on_what_the_winner_removed_names_the_path)
{
	uint64_t root;

	cr_assert_eq(tt_resolve(fs, "", NULL, NULL, &root), 0);
	for (int rmdir_too = 0; rmdir_too < 2; rmdir_too++) {
		cr_assert_eq(tt_mkdir(fs, "gone"), 0);
		cr_assert_eq(tt_put(fs, "gone/f", "base", 4), 0);
		cr_assert_eq(tt_txn_begin(fs, "x"), 0);
		cr_assert_eq(tt_put(fs, vpath("x", "gone/f"), "from x", 6), 0);
		cr_assert_eq(tt_unlink(fs, "gone/f"), 0);
		if (rmdir_too)
			cr_assert_eq(txd_rmdir(fs, NULL, root, "gone"), 0);
		cr_expect_eq(tt_txn_cmd(fs, "x", "commit"), -EBUSY);
		char *st = status("x");
		cr_expect_eq(strncmp(st, "aborted conflict winner=", 24), 0, "%s", st);
		cr_expect(strstr(st, " path=/gone/f\n") != NULL, "rmdir %d: %s", rmdir_too, st);
		free(st);
		cr_assert_eq(tt_txn_end(fs, "x"), 0);
		if (!rmdir_too)
			cr_assert_eq(txd_rmdir(fs, NULL, root, "gone"), 0);
	}
}

/* SPEC §6: a user's transaction begun before the owner took rights away
 * from a directory (chmod 700, chown, a move) can no longer create, remove
 * or change anything in it: its commit conflicts; root's is not checked. */
Test(txn, rights_taken_from_a_directory_after_begin_conflict)
{
	struct txd_cred u = tt_cred;
	struct txd_entry e;
	uint64_t txns, d;
	const char *leaf;

	u.uid = 1000;
	u.pid = getpid();
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/x", &txns, &leaf, NULL), 0);
	for (int how = 0; how < 4; how++) {
		char name[16];
		snprintf(name, sizeof(name), "lock%d", how);
		cr_assert_eq(tt_mkdir(fs, name), 0);
		cr_assert_eq(tt_resolve(fs, name, NULL, NULL, &d), 0);
		struct txd_setattr sa = {.valid = TXD_SET_MODE, .mode = 0777};
		cr_assert_eq(txd_setattr(fs, NULL, d, &sa, 0, NULL), 0);
		char f[32];
		snprintf(f, sizeof(f), "%s/important", name);
		cr_assert_eq(tt_put(fs, f, "keep", 4), 0);
		cr_assert_eq(txd_mkdir(fs, &u, txns, "u", 0755, &e), 0);
		txd_forget(fs, e.node, 1);
		if (how < 3)
			snprintf(f, sizeof(f), "%s/planted", name);
		cr_assert_eq(tt_put(fs, vpath("u", f), "evil", 4), 0); /* 3: overwrite */
		if (how == 0 || how == 3) {
			sa.mode = 0700; /* chmod 700 */
			cr_assert_eq(txd_setattr(fs, NULL, d, &sa, 0, NULL), 0);
		} else if (how == 1) {
			sa = (struct txd_setattr){.valid = TXD_SET_UID, .uid = 4242}; /* chown */
			cr_assert_eq(txd_setattr(fs, NULL, d, &sa, 0, NULL), 0);
		} else {
			cr_assert_eq(tt_mkdir(fs, "private"), 0); /* mv into a 0700 tree */
			char to[32];
			snprintf(to, sizeof(to), "private/%s", name);
			cr_assert_eq(tt_rename(fs, name, to, 0), 0);
		}
		cr_expect_eq(tt_txn_cmd(fs, "u", "commit"), -EBUSY, "how %d", how);
		char *st = status("u");
		cr_expect_eq(strncmp(st, "aborted conflict", 16), 0, "how %d: %s", how, st);
		free(st);
		cr_assert_eq(tt_txn_end(fs, "u"), 0);
		if (how == 2)
			snprintf(f, sizeof(f), "private/%s/planted", name);
		char *data;
		size_t len;
		if (how < 3) {
			cr_expect_neq(tt_get(fs, f, &data, &len), 0, "nothing planted (how %d)", how);
		} else {
			cr_assert_eq(tt_get(fs, f, &data, &len), 0);
			cr_expect(len == 4 && !memcmp(data, "keep", 4), "not overwritten");
			free(data);
		}
	}
	/* root's transaction is not checked */
	cr_assert_eq(tt_mkdir(fs, "rootdir"), 0);
	cr_assert_eq(tt_txn_begin(fs, "r"), 0);
	cr_assert_eq(tt_put(fs, vpath("r", "rootdir/new"), "r", 1), 0);
	cr_assert_eq(tt_resolve(fs, "rootdir", NULL, NULL, &d), 0);
	struct txd_setattr sa = {.valid = TXD_SET_MODE, .mode = 0700};
	cr_assert_eq(txd_setattr(fs, NULL, d, &sa, 0, NULL), 0);
	cr_expect_eq(tt_txn_cmd(fs, "r", "commit"), 0);
	cr_assert_eq(tt_txn_end(fs, "r"), 0);
}

/* info.json is valid JSON whatever the name holds, with every field. */
Test(txn, info_json_is_json)
{
	cr_assert_eq(tt_txn_begin(fs, "a\"q\\b"), 0);
	cJSON *j = info("a\"q\\b");
	cr_expect_str_eq(jstr(j, "name"), "a\"q\\b");
	cr_expect_str_eq(jstr(j, "status"), "active");
	cr_expect_str_eq(jstr(j, "state"), "active");
	cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(j, "last_error"));
	cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(j, "txid"));
	cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(j, "began"));
	cJSON_Delete(j);
}

/* T7 (SPEC §4): committing again reports the same outcome: EBUSY for aborted,
 * success for committed — never ESTALE. */
Test(txn, repeated_commits_report_the_outcome)
{
	cr_assert_eq(tt_txn_begin(fs, "c"), 0);
	cr_assert_eq(tt_put(fs, vpath("c", "f"), "c", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "c", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "c", "commit"), 0);
	cr_assert_eq(tt_txn_begin(fs, "a"), 0);
	cr_assert_eq(tt_txn_cmd(fs, "a", "abort"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "a", "commit"), -EBUSY);
	cr_expect_eq(tt_txn_cmd(fs, "a", "commit"), -EBUSY);
	cr_assert_eq(tt_put(fs, "g", "base", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "x"), 0);
	cr_assert_eq(tt_txn_begin(fs, "y"), 0);
	cr_assert_eq(tt_put(fs, vpath("x", "g"), "x", 1), 0);
	cr_assert_eq(tt_put(fs, vpath("y", "g"), "y", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "x", "commit"), 0);
	cr_expect_eq(tt_txn_cmd(fs, "y", "commit"), -EBUSY);
	cr_expect_eq(tt_txn_cmd(fs, "y", "commit"), -EBUSY, "a lost conflict stays lost");
}

/* ---- deferred commits (txd_write_async): the wait holds no thread ----------------- */
struct answer {
	sem_t sem;
	int err;
};

static void on_answer(void *arg, int err)
{
	struct answer *a = arg;
	a->err = err;
	sem_post(&a->sem);
}

static int wait_answer(struct answer *a, int seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	return sem_timedwait(&a->sem, &until);
}

/* Start `commit` on NAME without blocking; returns the write's result. */
static ssize_t commit_async(const char *name, struct answer *a, uint64_t *fh)
{
	char path[600];
	uint64_t node;
	struct txd_open_out oo;
	snprintf(path, sizeof(path), ".txdir/txn/%s/ctl", name);
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &oo), 0);
	*fh = oo.fh;
	return txd_write_async(fs, NULL, oo.fh, "commit\n", 7, 0, on_answer, a);
}

static uint64_t open_view_writer(const char *txn, const char *path)
{
	uint64_t node;
	struct txd_open_out w;
	cr_assert_eq(tt_resolve(fs, vpath(txn, path), NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	return w.fh;
}

/* T8 (SPEC §4): the commit waits for the view's writer without a thread, and
 * completes when it closes. */
Test(txn, deferred_commit_completes_at_the_close)
{
	struct answer a = {.err = 1};
	uint64_t ctl;
	cr_assert_eq(sem_init(&a.sem, 0, 0), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "f"), "x", 1), 0);
	uint64_t w = open_view_writer("t", "f");
	cr_assert_eq(commit_async("t", &a, &ctl), -EINPROGRESS);
	cr_assert_eq(txd_write(fs, NULL, w, "y", 1, 0), 1);
	cr_assert_eq(txd_flush(fs, w, &tt_cred, NULL), 0);
	cr_assert_eq(txd_release(fs, w), 0);
	cr_assert_eq(wait_answer(&a, 1), 0, "answered at the close, well inside the 2 s bound");
	cr_expect_eq(a.err, 0);
	expect_file("f", "y");
	txd_release(fs, ctl);
	/* nothing to wait for: completes at once */
	cr_assert_eq(tt_txn_begin(fs, "u"), 0);
	cr_assert_eq(commit_async("u", &a, &ctl), 7);
	txd_release(fs, ctl);
}

/* T6, T8: the bound: EBUSY, still active, last_error names the open file. */
Test(txn, deferred_commit_gives_up_at_the_bound)
{
	struct answer a = {.err = 1};
	uint64_t ctl;
	cr_assert_eq(sem_init(&a.sem, 0, 0), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "open file"), "x", 1), 0);
	uint64_t w = open_view_writer("t", "open file");
	cr_assert_eq(commit_async("t", &a, &ctl), -EINPROGRESS);
	cr_assert_eq(wait_answer(&a, 10), 0);
	cr_expect_eq(a.err, -EBUSY);
	char *st = status("t");
	cr_expect_str_eq(st, "active\n");
	free(st);
	cJSON *j = info("t");
	cr_expect_str_eq(jstr(j, "last_error"), "busy reason=open-in-view path=/open file");
	cJSON_Delete(j);
	txd_release(fs, w);
	txd_release(fs, ctl);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), 0);
}

/* FUSE_INTERRUPT: a withdrawn commit is never answered and applies nothing;
 * the transaction stays active. An abort meanwhile answers EBUSY. */
Test(txn, deferred_commit_cancel_and_abort)
{
	struct answer a = {.err = 1};
	uint64_t ctl;
	cr_assert_eq(sem_init(&a.sem, 0, 0), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_put(fs, vpath("t", "f"), "x", 1), 0);
	uint64_t w = open_view_writer("t", "f");
	cr_assert_eq(commit_async("t", &a, &ctl), -EINPROGRESS);
	cr_expect_eq(txd_write_cancel(fs, &a), 0);
	cr_expect_eq(txd_write_cancel(fs, &a), -ENOENT);
	txd_release(fs, w);
	cr_expect_neq(wait_answer(&a, 3), 0, "a withdrawn commit is not answered");
	expect_absent("f");
	char *st = status("t");
	cr_expect_str_eq(st, "active\n");
	free(st);
	txd_release(fs, ctl);
	w = open_view_writer("t", "f");
	cr_assert_eq(commit_async("t", &a, &ctl), -EINPROGRESS);
	cr_assert_eq(tt_txn_end(fs, "t"), 0);
	cr_assert_eq(wait_answer(&a, 2), 0, "the end answers at once");
	cr_expect_eq(a.err, -EBUSY);
	txd_release(fs, w);
	txd_release(fs, ctl);
	expect_absent("f");
}

static int collect_name(void *arg, const char *name, const struct txd_entry *e, uint64_t next)
{
	(void)e;
	(void)next;
	char **all = arg;
	char *more = NULL;
	cr_assert_geq(asprintf(&more, "%s%s\n", *all ? *all : "", name), 0);
	free(*all);
	*all = more;
	return 0;
}

/* The names in directory path, one per line (malloc'd). */
static char *list_dir(const char *path)
{
	uint64_t node, dh;
	char *all = NULL;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	cr_assert_eq(txd_opendir(fs, node, &dh), 0);
	cr_assert_eq(txd_readdir(fs, dh, 0, false, collect_name, &all), 0);
	txd_releasedir(fs, dh);
	return all;
}

/* T9 (SPEC §5 dtc/transactions): records survive a restart; one active when the
 * server stopped is "aborted restart" — unless the log has its commit (a
 * crash between the commit record and the rewrite of the record). */
static char *record(uint64_t id)
{
	char path[64], *data = NULL;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/dtc/transactions/%llu", (unsigned long long)id);
	return tt_get(fs, path, &data, &len) ? NULL : data;
}

static uint64_t txid_of(const char *name)
{
	cJSON *j = info(name);
	uint64_t id = (uint64_t)cJSON_GetObjectItemCaseSensitive(j, "txid")->valuedouble;
	cJSON_Delete(j);
	return id;
}

Test(txn, records_across_restarts)
{
	cr_assert_eq(tt_txn_begin(fs, "c"), 0);
	cr_assert_eq(tt_put(fs, vpath("c", "f"), "c", 1), 0);
	cr_assert_eq(tt_txn_cmd(fs, "c", "commit"), 0);
	cr_assert_eq(tt_txn_begin(fs, "lost"), 0); /* committed, but its record still says active */
	cr_assert_eq(tt_put(fs, vpath("lost", "g"), "g", 1), 0);
	uint64_t c = txid_of("c"), lost = txid_of("lost");
	char path[700], *active = record(lost);
	cr_assert_not_null(active);
	cr_assert_eq(tt_txn_cmd(fs, "lost", "commit"), 0);
	cr_assert_eq(tt_txn_begin(fs, "r"), 0);
	uint64_t r = txid_of("r");
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_install(); /* a crash: no checkpoint, the records as they were */
	faultos_power_cut(7);
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	snprintf(path, sizeof(path), "%s/coordination/dtc/transactions/%llu.json", store,
		 (unsigned long long)lost);
	FILE *f = fopen(path, "w"); /* as if the crash came before its rewrite */
	cr_assert_not_null(f);
	fputs(active, f);
	fclose(f);
	free(active);
	reopen();
	char *rc = record(c), *rl = record(lost), *rr = record(r);
	cr_assert(rc && rl && rr, "all three listed after the restart (%d %d %d)", !!rc, !!rl, !!rr);
	cr_expect_not_null(strstr(rc, "\"status\":\"committed "), "%s", rc);
	cr_expect_not_null(strstr(rl, "\"state\":\"committed\""), "the log decides: %s", rl);
	cr_expect_not_null(strstr(rr, "\"state\":\"aborted\""), "%s", rr);
	cr_expect_not_null(strstr(rr, "\"status\":\"aborted restart\""), "%s", rr);
	cr_expect_not_null(strstr(rr, "\"files_changed\":null"),
			   "its write set is unknown, not empty (records probe R9): %s", rr);
	char want[48];
	snprintf(want, sizeof(want), "\"txid\":%llu,", (unsigned long long)r);
	cr_expect_not_null(strstr(rr, want), "exact ids: %s", rr);
	free(rc);
	free(rl);
	free(rr);
	/* the directory lists them */
	char *listing = list_dir(".txdir/dtc/transactions");
	snprintf(want, sizeof(want), "%llu", (unsigned long long)r);
	cr_expect_not_null(strstr(listing, want), "%s", listing);
	free(listing);
}

/* T6: the write set's entries count too — the view removes a name whose
 * main-tree file is open for writing: EBUSY, active, nothing applied. */
Test(txn, commit_removing_a_file_with_a_main_writer_stays_active)
{
	cr_assert_eq(tt_put(fs, "w", "main", 4), 0);
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(tt_unlink(fs, vpath("t", "w")), 0);
	uint64_t node;
	struct txd_open_out w;
	cr_assert_eq(tt_resolve(fs, "w", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY);
	cJSON *j = info("t");
	cr_expect_str_eq(jstr(j, "last_error"), "busy reason=main-tree-writer path=/w");
	cr_expect_str_eq(jstr(j, "state"), "active");
	cJSON_Delete(j);
	expect_file("w", "main");
	txd_release(fs, w.fh);
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), 0);
	expect_absent("w");
}

static char *record_of(uint64_t id)
{
	char path[64], *data = NULL;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/dtc/transactions/%llu", (unsigned long long)id);
	return tt_get(fs, path, &data, &len) ? NULL : data;
}

/* The end record is durable before a checkpoint drops the WAL that could
 * re-derive it: a power cut after commit + checkpoint does not leave the
 * "active" record, settled as "aborted restart" against the data. */
Test(txn, end_record_survives_power_cut_after_checkpoint)
{
	cr_assert_eq(tt_txn_begin(fs, "lost"), 0);
	cr_assert_eq(tt_put(fs, vpath("lost", "g"), "g", 1), 0);
	uint64_t id = txid_of("lost");
	faultos_install();
	cr_assert_eq(tt_txn_cmd(fs, "lost", "commit"), 0);
	cr_assert_eq(txd_checkpoint(fs), 0);
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_power_cut(11);
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	reopen();
	expect_file("g", "g");
	char *r = record_of(id);
	cr_assert_not_null(r);
	cr_expect_null(strstr(r, "aborted"), "record contradicts the data: %s", r);
	free(r);
}

/* After a crash, a replayed commit whose record still said active gets one
 * txn_commit event (replay derived it), not two. */
Test(txn, one_commit_event_after_crash)
{
	cr_assert_eq(tt_txn_begin(fs, "lost"), 0);
	cr_assert_eq(tt_put(fs, vpath("lost", "g"), "g", 1), 0);
	uint64_t id = txid_of("lost");
	char path[700], *active = record_of(id);
	cr_assert_not_null(active);
	cr_assert_eq(tt_txn_cmd(fs, "lost", "commit"), 0);
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_install();
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	snprintf(path, sizeof(path), "%s/coordination/dtc/transactions/%llu.json", store,
		 (unsigned long long)id);
	FILE *f = fopen(path, "w"); /* the end record's rewrite did not happen */
	cr_assert_not_null(f);
	fputs(active, f);
	fclose(f);
	free(active);
	reopen();
	char *ev = NULL, want[64];
	size_t len;
	cr_assert_eq(tt_get(fs, ".txdir/events", &ev, &len), 0);
	snprintf(want, sizeof(want), "\"txn\":%llu", (unsigned long long)id);
	int n = 0;
	for (char *line = strtok(ev, "\n"); line; line = strtok(NULL, "\n"))
		n += strstr(line, want) && strstr(line, "\"txn_commit\"");
	cr_expect_eq(n, 1, "txn_commit events of one commit: %d", n);
	free(ev);
}

static void cancel_done(void *arg, int err)
{
	(void)arg;
	(void)err;
}

/* txn_cancel_wait drops the wait's reference, which may be the last: it
 * must not walk on through the freed transaction (ASan shows the read). */
Test(txn, cancel_wait_last_reference)
{
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	int arg;
	/* housekeeping stopped: it cannot answer the wait first */
	pthread_mutex_lock(&fs->lock);
	fs->ckpt_stop = true;
	pthread_cond_signal(&fs->ckpt_cv);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->ckpt_thread, NULL);
	fs->ckpt_running = false;
	pthread_mutex_lock(&fs->lock);
	struct txn *t = txn_find(fs, "t");
	cr_assert_not_null(t);
	t->nwriters = 1; /* a view file open for writing: the commit waits */
	cr_assert_eq(txn_commit_async(fs, t, 0, cancel_done, &arg), -EINPROGRESS);
	t->nwriters = 0;
	txn_remove(fs, t); /* rmdir: the wait holds the last reference */
	pthread_mutex_unlock(&fs->lock);
	cr_expect_eq(txn_cancel_wait(fs, &arg), 0);
}

/* Writes "one", opens a reader, writes "two!" (the writer's open freezes the
 * reader's node on "one": fs.h F3) and closes the reader: the node stays
 * looked up, as when the kernel has not forgotten it yet. */
static void freeze(const char *path)
{
	uint64_t node;
	struct txd_open_out ro;
	cr_assert_eq(tt_put(fs, path, "one", 3), 0);
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &ro), 0);
	cr_assert_eq(tt_put(fs, path, "two!", 4), 0);
	txd_release(fs, ro.fh);
}

/* Nodes the kernel never forgot (tt_put leaves its lookups) may pin
 * versions that later writes detached from their inode: txd_fs_close gives
 * them back, in the main tree — a commit replacing a main-tree file, found
 * by fuzz_ctlwrite (once tests/fuzz/known/txn-replace-leak.c) — and in the
 * view of a transaction still open at close. A leak is a LeakSanitizer
 * report when the suite's process ends, which the ASan pass of
 * tests/check.sh counts as a failure. */
Test(txn, close_frees_versions_pinned_by_unforgotten_nodes)
{
	cr_assert_eq(tt_put(fs, "a", "old", 3), 0);
	cr_assert_eq(tt_txn_begin(fs, "t1"), 0);
	cr_assert_eq(tt_put(fs, vpath("t1", "a"), "hello", 5), 0);
	cr_assert_eq(tt_txn_cmd(fs, "t1", "commit"), 0);
	expect_file("a", "hello");
	freeze("b");
	cr_assert_eq(tt_txn_begin(fs, "t2"), 0);
	freeze(vpath("t2", "c"));
	expect_file(vpath("t2", "c"), "two!");
	txd_fs_close(fs);
	fs = NULL;
#ifdef __SANITIZE_ADDRESS__
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "a leak: see LeakSanitizer's report");
#endif
}
