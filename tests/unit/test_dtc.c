/*
 * test_dtc.c — fenced commits ("commit if-lease NAME TOKEN", txn.h "Fenced
 * commits") and prepared transactions (txn.h "Prepared transactions"),
 * through the engine API and the control files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "ttsuite.h"
#include "txn.h"

TestSuite(dtc, .init = setup, .fini = teardown, .timeout = 120);

static struct txd_cred me;
static char active[64]; /* ".txdir/leases/active/PID" */

static void init_me(void)
{
	me = (struct txd_cred){.uid = 0, .gid = 0, .pid = getpid(), .umask = 022};
	snprintf(active, sizeof(active), ".txdir/leases/active/%d", (int)getpid());
}

static int grab(const char *name)
{
	uint64_t dir;
	struct txd_entry e;
	init_me();
	int err = tt_resolve(fs, active, NULL, NULL, &dir);
	if (!err)
		err = txd_mkdir(fs, &me, dir, name, 0755, &e);
	if (!err)
		txd_forget(fs, e.node, 1);
	return err;
}

static int drop(const char *name)
{
	uint64_t dir;
	init_me();
	int err = tt_resolve(fs, active, NULL, NULL, &dir);
	return err ? err : txd_rmdir(fs, &me, dir, name);
}

/* The token of name held by this process; 0 if not held. */
static uint64_t token_of(const char *name)
{
	char path[128], *buf = NULL;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s/token", active, name);
	if (tt_get(fs, path, &buf, &len))
		return 0;
	uint64_t t = strtoull(buf, NULL, 10);
	free(buf);
	return t;
}

static char *status(const char *name)
{
	char path[600], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/txn/%s/status", name);
	cr_assert_eq(tt_get(fs, path, &data, &len), 0);
	return data;
}

static void expect_status_prefix(const char *name, const char *want)
{
	char *s = status(name);
	cr_expect(strncmp(s, want, strlen(want)) == 0, "status of %s: \"%s\", want \"%s...\"", name,
		  s, want);
	free(s);
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

/* A transaction NAME that wrote file PATH = DATA in its view. */
static void txn_with_file(const char *name, const char *path, const char *data)
{
	char vp[600];
	cr_assert_eq(tt_txn_begin(fs, name), 0);
	snprintf(vp, sizeof(vp), ".txdir/txn/%s/root/%s", name, path);
	cr_assert_eq(tt_put(fs, vp, data, strlen(data)), 0);
}

static int fenced(const char *txn, const char *lease, uint64_t token)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "commit if-lease %s %" PRIu64 "\n", lease, token);
	return tt_txn_cmd(fs, txn, cmd);
}

/* ---- fenced commits ------------------------------------------------------------ */

Test(dtc, fenced_commit_with_the_held_token_commits)
{
	cr_assert_eq(grab("job"), 0);
	uint64_t tok = token_of("job");
	cr_assert_gt(tok, 0);
	txn_with_file("t", "f", "fenced");
	cr_assert_eq(fenced("t", "job", tok), 0);
	expect_file("f", "fenced");
	expect_status_prefix("t", "committed ");
}

Test(dtc, fenced_commit_with_a_wrong_token_is_estale_and_applies_nothing)
{
	cr_assert_eq(grab("job"), 0);
	uint64_t tok = token_of("job");
	txn_with_file("t", "f", "stale");
	cr_assert_eq(fenced("t", "job", tok + 1), -ESTALE);
	expect_absent("f");
	expect_status_prefix("t", "aborted fenced lease=job");
	/* T7: the outcome again */
	cr_expect_eq(tt_txn_cmd(fs, "t", "commit"), -EBUSY);
	expect_absent("f");
}

Test(dtc, fenced_commit_after_release_is_estale)
{
	cr_assert_eq(grab("job"), 0);
	uint64_t tok = token_of("job");
	cr_assert_eq(drop("job"), 0);
	txn_with_file("t", "f", "late");
	cr_assert_eq(fenced("t", "job", tok), -ESTALE);
	expect_absent("f");
	char *s = status("t");
	cr_expect(strstr(s, "held=none"), "%s", s);
	free(s);
}

Test(dtc, fenced_commit_of_a_successor_grant_refuses_the_old_token)
{
	cr_assert_eq(grab("job"), 0);
	uint64_t old = token_of("job");
	cr_assert_eq(drop("job"), 0);
	cr_assert_eq(grab("job"), 0);
	uint64_t cur = token_of("job");
	cr_assert_gt(cur, old);
	txn_with_file("old", "a", "old");
	txn_with_file("new", "b", "new");
	cr_assert_eq(fenced("new", "job", cur), 0);
	cr_assert_eq(fenced("old", "job", old), -ESTALE);
	expect_file("b", "new");
	expect_absent("a");
}

Test(dtc, fenced_commit_of_an_empty_transaction_checks_too)
{
	cr_assert_eq(tt_txn_begin(fs, "t"), 0);
	cr_assert_eq(fenced("t", "nolease", 5), -ESTALE);
}

Test(dtc, malformed_fenced_commit_is_einval_and_changes_nothing)
{
	cr_assert_eq(grab("job"), 0);
	uint64_t tok = token_of("job");
	txn_with_file("t", "f", "x");
	static const char *const bad[] = {
		"commit if-lease",         "commit if-lease job",     "commit if-lease job ",
		"commit if-lease  job 1",  "commit if-lease job 0",   "commit if-lease job -1",
		"commit if-lease job 1x",  "commit if-lease job 1 2", "commit if-lease . 1",
		"commit if-lease job 99999999999999999999999",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		cr_expect_eq(tt_txn_cmd(fs, "t", bad[k]), -EINVAL, "\"%s\"", bad[k]);
	expect_status_prefix("t", "active");
	cr_assert_eq(fenced("t", "job", tok), 0);
	expect_file("f", "x");
}

Test(dtc, a_lost_lease_is_reported_before_a_conflict)
{
	cr_assert_eq(grab("job"), 0);
	uint64_t old = token_of("job");
	txn_with_file("old", "f", "old");
	cr_assert_eq(drop("job"), 0);
	cr_assert_eq(grab("job"), 0);
	txn_with_file("new", "f", "new");
	cr_assert_eq(fenced("new", "job", token_of("job")), 0);
	cr_assert_eq(fenced("old", "job", old), -ESTALE);
	expect_status_prefix("old", "aborted fenced lease=job");
	expect_file("f", "new");
}
