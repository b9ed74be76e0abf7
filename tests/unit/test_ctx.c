/*
 * test_ctx.c — the request's context (txdir.h struct txd_cred), passed
 * explicitly to every engine call that acts for a caller: the pid each
 * commit record carries, and the set-id rules the engine applies for a
 * write, truncation or fallocate (FUSE_HANDLE_KILLPRIV_V2: the kernel flags
 * requests of callers without CAP_FSETID; FALLOCATE carries no flag).
 */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ttsuite.h"

TestSuite(ctx, .init = setup, .fini = teardown, .timeout = 60);

static const struct txd_cred user = {.uid = 1000, .gid = 1000, .pid = 4242, .umask = 022};
static const struct txd_cred user_killing = {.uid = 1000, .gid = 1000, .pid = 777,
					     .umask = 022, .kill_suidgid = true};
static const struct txd_cred other = {.uid = 2000, .gid = 2000, .pid = 999, .umask = 022};

static uint64_t last_id(void)
{
	struct txd_status st;
	txd_get_status(fs, &st);
	return st.last_commit_id;
}

static uint64_t commits_now(void)
{
	struct txd_status st;
	txd_get_status(fs, &st);
	return st.commits;
}

/* The pid the newest commit record carries (.txdir/commits/ID). */
static long last_commit_pid(void)
{
	char path[64], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/commits/%llu", (unsigned long long)last_id());
	cr_assert_eq(tt_get(fs, path, &data, &len), 0);
	cJSON *o = cJSON_Parse(data);
	cr_assert_not_null(o, "%s", data);
	free(data);
	const cJSON *pid = cJSON_GetObjectItem(o, "pid");
	cr_assert(cJSON_IsNumber(pid));
	long v = (long)pid->valuedouble;
	cJSON_Delete(o);
	return v;
}

static uint64_t node_of(const char *path)
{
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0);
	return node;
}

static void set_mode(const char *path, mode_t mode)
{
	struct txd_setattr sa = {.valid = TXD_SET_MODE, .mode = mode};
	cr_assert_eq(txd_setattr(fs, NULL, node_of(path), &sa, 0, NULL), 0);
}

static mode_t mode_of(const char *path)
{
	struct txd_attr a;
	cr_assert_eq(txd_getattr(fs, node_of(path), &a), 0);
	return a.mode & 07777;
}

/* A file with mode, and a handle on it opened by c with flags. */
static uint64_t file_open(const char *path, mode_t mode, const struct txd_cred *c, int flags)
{
	cr_assert_eq(tt_put(fs, path, "0123456789", 10), 0);
	set_mode(path, mode);
	struct txd_open_out oo;
	cr_assert_eq(txd_open(fs, c, node_of(path), flags, &oo), 0);
	return oo.fh;
}

/* fallocate carries no kill flag: the engine drops the bits for a caller
 * other than root, in one commit carrying that caller's pid, not the pid
 * of whatever request came before it. */
Test(ctx, fallocate_drops_setid_with_its_own_callers_pid)
{
	uint64_t fh = file_open("f", 06755, &user, O_WRONLY);
	cr_assert_eq(txd_mkdir(fs, &other, TXD_ROOT_NODE, "d", 0755, &(struct txd_entry){0}), 0);
	cr_assert_eq(last_commit_pid(), other.pid);
	uint64_t c0 = commits_now();
	cr_assert_eq(txd_fallocate(fs, &user, fh, 0, 0, 8192), 0);
	cr_expect_eq(mode_of("f"), 0755, "mode %o after a non-root fallocate", mode_of("f"));
	cr_expect_eq(commits_now(), c0 + 1);
	cr_expect_eq(last_commit_pid(), user.pid);
	cr_assert_eq(txd_flush(fs, fh, &user, NULL), 0);
	cr_assert_eq(txd_release(fs, fh), 0);
}

/* root (CAP_FSETID) keeps the bits through fallocate; nothing is committed
 * for them. */
Test(ctx, fallocate_by_root_keeps_setid)
{
	struct txd_cred root = {.uid = 0, .gid = 0, .pid = 31};
	uint64_t fh = file_open("f", 06755, &root, O_WRONLY);
	uint64_t c0 = commits_now();
	cr_assert_eq(txd_fallocate(fs, &root, fh, 0, 0, 8192), 0);
	cr_expect_eq(mode_of("f"), 06755);
	cr_expect_eq(commits_now(), c0);
	cr_assert_eq(txd_release(fs, fh), 0);
}

/* A write the kernel flagged drops S_ISUID, and S_ISGID only when the file
 * is group-executable (without it, set-gid marks mandatory locking, not a
 * privilege), in one commit carrying the writer's pid; the bytes join the
 * working copy as any write's. */
Test(ctx, write_with_kill_flag_drops_setid_in_one_commit)
{
	static const struct {
		mode_t before, after;
	} cases[] = {{06755, 0755}, {04777, 0777}, {02745, 02745}, {02755, 0755}};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char name[16];
		snprintf(name, sizeof(name), "f%zu", k);
		uint64_t fh = file_open(name, cases[k].before, &user_killing, O_WRONLY);
		uint64_t c0 = commits_now();
		cr_assert_eq(txd_write(fs, &user_killing, fh, "W", 1, 0), 1);
		cr_expect_eq(mode_of(name), cases[k].after, "%o: %o after the write, want %o",
			     cases[k].before, mode_of(name), cases[k].after);
		bool drops = cases[k].before != cases[k].after;
		cr_expect_eq(commits_now(), c0 + (drops ? 1 : 0), "%o", cases[k].before);
		if (drops)
			cr_expect_eq(last_commit_pid(), user_killing.pid);
		cr_assert_eq(txd_flush(fs, fh, &user_killing, NULL), 0);
		cr_assert_eq(txd_release(fs, fh), 0);
		char *data;
		size_t len;
		cr_assert_eq(tt_get(fs, name, &data, &len), 0);
		cr_expect_str_eq(data, "W123456789");
		free(data);
	}
}

/* Without the flag (root, or the kernel's writeback) a write keeps them. */
Test(ctx, write_without_kill_flag_keeps_setid)
{
	uint64_t fh = file_open("f", 06755, &user, O_WRONLY);
	cr_assert_eq(txd_write(fs, &user, fh, "W", 1, 0), 1);
	cr_expect_eq(mode_of("f"), 06755);
	cr_assert_eq(txd_release(fs, fh), 0);
}

/* OPEN with O_TRUNC and the flag: the bits go before the open. */
Test(ctx, truncating_open_with_kill_flag_drops_setid)
{
	cr_assert_eq(tt_put(fs, "f", "0123456789", 10), 0);
	set_mode("f", 06755);
	struct txd_open_out oo;
	cr_assert_eq(txd_open(fs, &user_killing, node_of("f"), O_WRONLY, &oo), 0);
	cr_expect_eq(mode_of("f"), 06755, "no O_TRUNC: nothing to drop");
	cr_assert_eq(txd_release(fs, oo.fh), 0);
	cr_assert_eq(txd_open(fs, &user_killing, node_of("f"), O_WRONLY | O_TRUNC, &oo), 0);
	cr_expect_eq(mode_of("f"), 0755);
	cr_expect_eq(last_commit_pid(), user_killing.pid);
	cr_assert_eq(txd_release(fs, oo.fh), 0);
}

/* A lone truncation committed at RELEASE (which carries no caller) carries
 * the pid that opened the handle. */
Test(ctx, release_commit_carries_the_openers_pid)
{
	cr_assert_eq(tt_put(fs, "f", "0123456789", 10), 0);
	struct txd_open_out oo;
	cr_assert_eq(txd_open(fs, &user, node_of("f"), O_WRONLY | O_TRUNC, &oo), 0);
	cr_assert_eq(txd_flush(fs, oo.fh, &user, NULL), 0);
	uint64_t c0 = commits_now();
	cr_assert_eq(txd_release(fs, oo.fh), 0);
	cr_assert_eq(commits_now(), c0 + 1, "the lone truncation commits at release");
	cr_expect_eq(last_commit_pid(), user.pid);
}

/* The request shapes that carry no flag (txdir.h): an empty SETATTR on a
 * regular file is the kernel's privilege drop; on anything else, and a
 * ctime-only one, chown(f, -1, -1), which needs ownership when bits go. A
 * SETATTR with the flag (a truncate) drops them with the size change. */
Test(ctx, setattr_shapes_are_the_engines_to_read)
{
	cr_assert_eq(tt_put(fs, "f", "0123456789", 10), 0);
	set_mode("f", 06755);
	struct txd_setattr empty = {.valid = 0};
	cr_assert_eq(txd_setattr(fs, &user, node_of("f"), &empty, 0, NULL), 0);
	cr_expect_eq(mode_of("f"), 0755);
	cr_expect_eq(last_commit_pid(), user.pid);

	struct txd_entry fifo;
	cr_assert_eq(txd_mknod(fs, &user, TXD_ROOT_NODE, "p", S_IFIFO | 0755, 0, &fifo), 0);
	set_mode("p", 02755);
	cr_assert_eq(txd_setattr(fs, &other, fifo.node, &empty, 0, NULL), -EPERM,
		     "chown -1 -1 of another's set-gid file");
	cr_assert_eq(txd_setattr(fs, &user, fifo.node, &empty, 0, NULL), 0);
	cr_expect_eq(mode_of("p"), 0755);

	set_mode("f", 06755);
	struct txd_setattr ctime_only = {.valid = TXD_SET_CTIME, .ctime = {.tv_sec = 5}};
	struct txd_cred root = {.uid = 0, .gid = 0, .pid = 31};
	cr_assert_eq(txd_setattr(fs, &user, node_of("f"), &ctime_only, 0, NULL), -EPERM,
		     "f is root's");
	cr_assert_eq(txd_setattr(fs, &root, node_of("f"), &ctime_only, 0, NULL), 0);
	cr_expect_eq(mode_of("f"), 0755);

	set_mode("f", 06755);
	struct txd_setattr trunc = {.valid = TXD_SET_SIZE, .size = 3};
	struct txd_attr a;
	cr_assert_eq(txd_setattr(fs, &user_killing, node_of("f"), &trunc, 0, &a), 0);
	cr_expect_eq(a.mode & 07777, 0755);
	cr_expect_eq(a.size, 3);
	set_mode("f", 06755);
	cr_assert_eq(txd_setattr(fs, &user, node_of("f"), &trunc, 0, &a), 0);
	cr_expect_eq(a.mode & 07777, 06755, "no flag: the caller may keep them");
}

/* Namespace changes carry their caller's pid. */
Test(ctx, namespace_commits_carry_their_callers_pid)
{
	cr_assert_eq(tt_put(fs, "a", "x", 1), 0);
	cr_assert_eq(txd_rename(fs, &user, TXD_ROOT_NODE, "a", TXD_ROOT_NODE, "b", 0), 0);
	cr_expect_eq(last_commit_pid(), user.pid);
	cr_assert_eq(txd_link(fs, &other, node_of("b"), TXD_ROOT_NODE, "c", &(struct txd_entry){0}),
		     0);
	cr_expect_eq(last_commit_pid(), other.pid);
	cr_assert_eq(txd_setxattr(fs, &user, node_of("b"), "user.k", "v", 1, 0), 0);
	cr_expect_eq(last_commit_pid(), user.pid);
	cr_assert_eq(txd_removexattr(fs, &other, node_of("b"), "user.k"), 0);
	cr_expect_eq(last_commit_pid(), other.pid);
	cr_assert_eq(txd_unlink(fs, &user, TXD_ROOT_NODE, "c"), 0);
	cr_expect_eq(last_commit_pid(), user.pid);
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(txd_rmdir(fs, &other, TXD_ROOT_NODE, "d"), 0);
	cr_expect_eq(last_commit_pid(), other.pid);
}

/* One engine call per GETATTR or SETATTR: the attributes say whether the
 * kernel may cache them (data tree) or not (control tree: rendered at every
 * open, zero attr timeout). */
Test(ctx, attributes_say_whether_they_may_be_cached)
{
	cr_assert_eq(tt_put(fs, "f", "x", 1), 0);
	struct txd_attr a;
	cr_assert_eq(txd_getattr(fs, node_of("f"), &a), 0);
	cr_expect(a.cacheable);
	uint64_t stats = node_of(".txdir/stats");
	cr_assert_eq(txd_getattr(fs, stats, &a), 0);
	cr_expect(!a.cacheable);
	struct txd_setattr trunc = {.valid = TXD_SET_SIZE, .size = 0};
	cr_assert_eq(txd_setattr(fs, &user, stats, &trunc, 0, &a), 0);
	cr_expect(!a.cacheable);
	cr_assert_eq(txd_setattr(fs, &user, node_of("f"), &trunc, 0, &a), 0);
	cr_expect(a.cacheable);
}
