/*
 * test_fs.c — the engine through its public API (txdir.h), without a mount:
 * commits, recovery, snapshot readers (dtree.h F1/F3), namespace rules, xattrs,
 * readdir cookies (ns.h N3), sticky failure (STYLE 6), damaged chunks.
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
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "ttsuite.h"

TestSuite(fs, .init = setup, .fini = teardown, .timeout = 60);

static void expect_file(const char *path, const char *want)
{
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, path, &data, &len), 0, "read %s", path);
	cr_expect_eq(len, strlen(want), "%s: size %zu, want %zu", path, len, strlen(want));
	cr_expect_str_eq(data, want);
	free(data);
}

/* F2: what was committed is there after a clean reopen and after a reopen
 * without checkpoint (replay). */
Test(fs, commit_survives_reopen)
{
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_put(fs, "d/a", "hello\n", 6), 0);
	cr_assert_eq(tt_put(fs, "b", "world\n", 6), 0);
	reopen();
	expect_file("d/a", "hello\n");
	expect_file("b", "world\n");
	cr_assert_eq(tt_put(fs, "b", "again\n", 6), 0);
	reopen();
	expect_file("b", "again\n");
}

Test(fs, second_opener_is_refused_with_holder_pid)
{
	struct txd_fs *other = NULL;
	pid_t holder = 0;
	cr_assert_eq(txd_fs_open(store, NULL, &other, &holder), -TXD_ELOCKED);
	cr_expect_eq(holder, getpid());
	cr_expect_null(other);
}

Test(fs, init_refuses_existing_and_foreign_dirs)
{
	cr_expect_eq(txd_store_init(store), -EEXIST);
	char tmpl[] = "/tmp/txdforeign.XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	char path[256];
	snprintf(path, sizeof(path), "%s/somefile", tmpl);
	FILE *f = fopen(path, "w");
	fclose(f);
	cr_expect_eq(txd_store_init(tmpl), -TXD_ENOTSTORE);
	unlink(path);
	rmdir(tmpl);
}

Test(fs, unknown_format_is_refused)
{
	txd_fs_close(fs);
	fs = NULL;
	char path[512];
	snprintf(path, sizeof(path), "%s/FORMAT", store);
	FILE *f = fopen(path, "w");
	fputs("txdir-store 99\n", f);
	fclose(f);
	struct txd_fs *x = NULL;
	cr_expect_eq(txd_fs_open(store, NULL, &x, NULL), -TXD_EFORMAT);
	f = fopen(path, "w");
	fputs("txdir-store 1\n", f);
	fclose(f);
	reopen();
}

/* F1/F3: a reader opened before a writer keeps its version; the writer is
 * sent to a fresh node id (ESTALE) and new opens see the new content. */
Test(fs, snapshot_reader_keeps_its_version)
{
	cr_assert_eq(tt_put(fs, "f", "original", 8), 0);
	uint64_t node, node2;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	struct txd_open_out r, w;
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &w), -ESTALE);
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node2), 0);
	cr_assert_neq(node, node2, "a writer must get a fresh node id");
	cr_assert_eq(txd_open(fs, NULL, node2, O_WRONLY | O_TRUNC, &w), 0);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "changed!!", 9, 0), 9);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	cr_assert_eq(txd_release(fs, w.fh), 0);
	char buf[32] = {0};
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 8);
	cr_expect_str_eq(buf, "original");
	struct txd_attr a;
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.size, 8, "the frozen node keeps its size");
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &w), -ESTALE, "a frozen node is not reopened");
	txd_release(fs, r.fh);
	expect_file("f", "changed!!");
}

/* SPEC §3: handles opened while a writer exists share its working copy. */
Test(fs, handles_share_the_working_copy_while_written)
{
	cr_assert_eq(tt_put(fs, "f", "aaaa", 4), 0);
	uint64_t node;
	struct txd_open_out w, r;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_RDWR, &w), 0);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "bb", 2, 0), 2);
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0);
	char buf[8] = {0};
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 4);
	cr_expect_str_eq(buf, "bbaa");
	txd_release(fs, r.fh);
	txd_release(fs, w.fh);
	expect_file("f", "bbaa");
}

/* SPEC §3: O_TRUNC belongs to the content commit: until the writer's flush,
 * the committed file keeps its content (a crash leaves the old file). */
Test(fs, truncation_belongs_to_the_content_commit)
{
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	uint64_t node;
	struct txd_open_out w;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &w), 0);
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "new", 3, 0), 3);
	cr_expect_eq(txd_current_lsn(fs), before, "nothing committed before the flush");
	/* "crash": reopen from the log without flushing */
	faultos_install();
	faultos_crash();
	txd_release(fs, w.fh); /* after the crash: frees it, reaches no disk */
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	reopen();
	expect_file("f", "old content");
}

/* Content whose close and RELEASE backstop both failed is gone; the kernel
 * would still show it under its node id (page cache and size, which the
 * writeback cache never takes back), so that node id is retired: the name
 * resolves to a fresh one showing the committed version (posix probe D8). */
Test(fs, content_that_never_committed_retires_its_node)
{
	cr_assert_eq(tt_put(fs, "f", "old", 3), 0);
	txd_fs_close(fs);
	fs = NULL;
	faultos_install(); /* before the open: faults name files as opened */
	reopen();
	uint64_t node, again;
	struct txd_open_out w;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "much newer content", 18, 0), 18);
	/* the log idle first: the sync thread's zeroing ahead (wal.h W7)
	 * must not take the fault meant for the commit */
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_fail_next_pwrite_to("seg-", -ENOSPC);
	cr_assert_neq(txd_flush(fs, w.fh, NULL, NULL), 0, "the close fails");
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_fail_next_pwrite_to("seg-", -ENOSPC);
	txd_release(fs, w.fh); /* the backstop fails too: the content is gone */
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &again), 0);
	cr_expect_neq(again, node, "a fresh node id for the name");
	struct txd_open_out r;
	cr_expect_eq(txd_open(fs, NULL, node, O_RDONLY, &r), -ESTALE, "the old one is retired");
	expect_file("f", "old");
}

Test(fs, rename_flags_and_rules)
{
	cr_assert_eq(tt_put(fs, "a", "A", 1), 0);
	cr_assert_eq(tt_put(fs, "b", "B", 1), 0);
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_mkdir(fs, "d/e"), 0);
	cr_expect_eq(tt_rename(fs, "a", "b", RENAME_NOREPLACE), -EEXIST);
	cr_assert_eq(tt_rename(fs, "a", "b", RENAME_EXCHANGE), 0);
	expect_file("a", "B");
	expect_file("b", "A");
	cr_expect_eq(tt_rename(fs, "a", "zz", RENAME_EXCHANGE), -ENOENT);
	cr_expect_eq(tt_rename(fs, "d", "d/e/x", 0), -EINVAL, "a directory into itself");
	cr_expect_eq(tt_rename(fs, "a", "d", 0), -EISDIR);
	cr_expect_eq(tt_rename(fs, "d", "a", 0), -ENOTDIR);
	cr_assert_eq(tt_mkdir(fs, "f"), 0);
	cr_expect_eq(tt_rename(fs, "f", "d", 0), -ENOTEMPTY);
	cr_assert_eq(tt_rename(fs, "d/e", "f", 0), 0, "over an empty directory");
	cr_assert_eq(tt_rename(fs, "a", "b", 0), 0);
	expect_file("b", "B");
	uint64_t n;
	cr_expect_eq(tt_resolve(fs, "a", NULL, NULL, &n), -ENOENT);
	reopen();
	expect_file("b", "B");
	cr_expect_eq(tt_resolve(fs, "f", NULL, NULL, &n), 0);
	cr_expect_eq(tt_resolve(fs, "d/e", NULL, NULL, &n), -ENOENT);
}

/* N4: directory nlink is 2 + subdirectories, through mkdir/rmdir/rename. */
Test(fs, directory_link_counts)
{
	uint64_t node;
	struct txd_attr a;
	cr_assert_eq(tt_mkdir(fs, "p"), 0);
	cr_assert_eq(tt_mkdir(fs, "p/c1"), 0);
	cr_assert_eq(tt_mkdir(fs, "p/c2"), 0);
	cr_assert_eq(tt_mkdir(fs, "q"), 0);
	cr_assert_eq(tt_rename(fs, "p/c2", "q/c2", 0), 0);
	cr_assert_eq(tt_resolve(fs, "p", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.nlink, 3);
	cr_assert_eq(tt_resolve(fs, "q", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.nlink, 3);
	uint64_t parent;
	const char *leaf;
	cr_assert_eq(tt_resolve(fs, "p", &parent, &leaf, NULL), 0);
	cr_expect_eq(txd_rmdir(fs, NULL, parent, leaf), -ENOTEMPTY);
	cr_assert_eq(tt_resolve(fs, "", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.nlink, 4, "root: 2 + p + q");
}

Test(fs, hard_links_and_unlinked_open_file)
{
	cr_assert_eq(tt_put(fs, "a", "data", 4), 0);
	uint64_t node, parent;
	const char *leaf;
	struct txd_entry e;
	cr_assert_eq(tt_resolve(fs, "a", NULL, NULL, &node), 0);
	cr_assert_eq(txd_link(fs, NULL, node, TXD_ROOT_NODE, "b", &e), 0);
	cr_expect_eq(e.attr.nlink, 2);
	cr_expect_eq(e.attr.ino, node == e.node ? e.attr.ino : e.attr.ino);
	txd_forget(fs, e.node, 1);
	struct txd_open_out r;
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0);
	cr_assert_eq(tt_unlink(fs, "a"), 0);
	cr_assert_eq(tt_resolve(fs, "b", &parent, &leaf, NULL), 0);
	cr_assert_eq(txd_unlink(fs, NULL, parent, leaf), 0);
	char buf[8] = {0};
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 4, "open after unlink still reads");
	txd_release(fs, r.fh);
	reopen();
	cr_expect_eq(tt_resolve(fs, "a", NULL, NULL, &node), -ENOENT);
}

Test(fs, names_are_checked)
{
	char longname[300];
	memset(longname, 'x', 256);
	longname[256] = 0;
	struct txd_entry e;
	cr_expect_eq(txd_mkdir(fs, &tt_cred, TXD_ROOT_NODE, longname, 0755, &e), -ENAMETOOLONG);
	cr_expect_eq(txd_mkdir(fs, &tt_cred, TXD_ROOT_NODE, "a/b", 0755, &e), -EINVAL);
	cr_expect_eq(txd_mkdir(fs, &tt_cred, TXD_ROOT_NODE, "..", 0755, &e), -EEXIST);
	cr_assert_eq(tt_mkdir(fs, "x"), 0);
	cr_expect_eq(tt_mkdir(fs, "x"), -EEXIST);
}

/* SPEC §3: user.txdir.* readable by name, never listed, never writable. */
/* One file's user.* attributes stay under XATTR_FILE_MAX (memory and
 * checkpoints hold them): past it ENOSPC, replacing within it still works
 * (posix probe D10: values without limit grew the server to ~0.9 GB). */
Test(fs, xattrs_of_one_file_are_bounded)
{
	cr_assert_eq(tt_put(fs, "f", "x", 1), 0);
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	static char big[65536];
	memset(big, 'v', sizeof(big));
	char name[32];
	int k, err = 0;
	for (k = 0; k < 64 && !err; k++) {
		snprintf(name, sizeof(name), "user.v%d", k);
		err = txd_setxattr(fs, NULL, node, name, big, sizeof(big), 0);
	}
	cr_expect_eq(err, -ENOSPC, "a full file: %d after %d values", err, k);
	cr_expect_eq(k, 4, "three 64 KiB values fit, the fourth does not");
	cr_expect_eq(txd_setxattr(fs, NULL, node, "user.v0", "small", 5, XATTR_REPLACE), 0,
		     "a replace that shrinks fits");
	cr_expect_eq(txd_setxattr(fs, NULL, node, "user.v3", big, 60000, 0), 0, "then room again");
}

/* As ext4 (4 KiB blocks): no file past 16 TiB; a truncate there is EFBIG
 * at once, not a size that a later commit cannot keep (posix probe D7). */
Test(fs, no_file_past_16_TiB)
{
	cr_assert_eq(tt_put(fs, "f", "x", 1), 0);
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = 1ull << 62};
	cr_expect_eq(txd_setattr(fs, NULL, node, &sa, 0, NULL), -EFBIG);
	sa.size = (1ull << 44) + 1;
	cr_expect_eq(txd_setattr(fs, NULL, node, &sa, 0, NULL), -EFBIG);
	sa.size = 1ull << 44;
	cr_expect_eq(txd_setattr(fs, NULL, node, &sa, 0, NULL), 0, "16 TiB itself is fine");
	struct txd_open_out w;
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	cr_expect_eq(txd_write(fs, NULL, w.fh, "y", 1, 1ull << 44), -EFBIG);
	cr_assert_eq(txd_release(fs, w.fh), 0);
}

/* futimens through a descriptor opened before a writer moved the name to a
 * fresh node id: the file gets the times, and the live node id is retired
 * so the kernel, which keeps a node id's mtime as its own, shows them
 * (posix probe D6: the change reported success and never showed). */
Test(fs, times_through_an_older_node_id_reach_the_name)
{
	cr_assert_eq(tt_put(fs, "f", "old", 3), 0);
	uint64_t old_node, live, now_node;
	struct txd_open_out r, w;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &old_node), 0);
	cr_assert_eq(txd_open(fs, NULL, old_node, O_RDONLY, &r), 0);
	cr_assert_eq(txd_open(fs, NULL, old_node, O_WRONLY, &w), -ESTALE, "the reader's node freezes");
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &live), 0);
	cr_assert_neq(live, old_node);
	cr_assert_eq(txd_open(fs, NULL, live, O_WRONLY | O_TRUNC, &w), 0);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "newer", 5, 0), 5);
	cr_assert_eq(txd_flush(fs, w.fh, NULL, NULL), 0);
	cr_assert_eq(txd_release(fs, w.fh), 0);
	struct txd_setattr sa = {.valid = TXD_SET_MTIME | TXD_SET_ATIME,
				 .mtime = {.tv_sec = 2000}, .atime = {.tv_sec = 1000}};
	cr_assert_eq(txd_setattr(fs, NULL, old_node, &sa, r.fh, NULL), 0);
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &now_node), 0);
	cr_expect_neq(now_node, live, "the live node id is retired");
	struct txd_attr a;
	cr_assert_eq(txd_getattr(fs, now_node, &a), 0);
	cr_expect_eq(a.mtime.tv_sec, 2000);
	expect_file("f", "newer");
	cr_assert_eq(txd_release(fs, r.fh), 0);
}

/* truncate(2) marks mtime and ctime even to the same size, as ext4 (posix
 * probe D3: only ftruncate did). */
Test(fs, truncate_to_the_same_size_marks_the_times)
{
	cr_assert_eq(tt_put(fs, "f", "ab", 2), 0);
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	struct txd_setattr t = {.valid = TXD_SET_MTIME | TXD_SET_CTIME, .mtime = {.tv_sec = 1000},
				.ctime = {.tv_sec = 1000}};
	cr_assert_eq(txd_setattr(fs, NULL, node, &t, 0, NULL), 0);
	struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = 2};
	cr_assert_eq(txd_setattr(fs, NULL, node, &sa, 0, NULL), 0);
	struct txd_attr a;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_gt(a.mtime.tv_sec, 1000);
	cr_expect_gt(a.ctime.tv_sec, 1000);
	cr_expect_eq(a.size, 2);
}

Test(fs, metadata_xattrs)
{
	cr_assert_eq(tt_put(fs, "f", "abc", 3), 0);
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_setxattr(fs, NULL, node, "user.color", "red", 3, 0), 0);
	cr_expect_eq(txd_setxattr(fs, NULL, node, "user.color", "blue", 4, XATTR_CREATE), -EEXIST);
	cr_expect_eq(txd_setxattr(fs, NULL, node, "user.shape", "x", 1, XATTR_REPLACE), -ENODATA);
	cr_expect_eq(txd_setxattr(fs, NULL, node, "user.txdir.version", "9", 1, 0), -EPERM);
	cr_expect_eq(txd_setxattr(fs, NULL, node, "trusted.x", "9", 1, 0), -EOPNOTSUPP);
	char list[256];
	ssize_t n = txd_listxattr(fs, node, list, sizeof(list));
	cr_assert_eq(n, (ssize_t)sizeof("user.color"));
	cr_expect_str_eq(list, "user.color");
	char v[64] = {0};
	cr_assert_gt(txd_getxattr(fs, node, "user.txdir.checksum", v, sizeof(v)), 0);
	cr_expect_eq(strncmp(v, "xxh64:", 6), 0);
	char v2[64] = {0};
	cr_assert_eq(tt_put(fs, "g", "abc", 3), 0);
	uint64_t g;
	cr_assert_eq(tt_resolve(fs, "g", NULL, NULL, &g), 0);
	cr_assert_gt(txd_getxattr(fs, g, "user.txdir.checksum", v2, sizeof(v2)), 0);
	cr_expect_str_eq(v, v2, "same bytes, same digest");
	char ver1[32] = {0}, ver2[32] = {0};
	cr_assert_gt(txd_getxattr(fs, node, "user.txdir.version", ver1, sizeof(ver1)), 0);
	cr_assert_eq(tt_put(fs, "f", "abcd", 4), 0);
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_gt(txd_getxattr(fs, node, "user.txdir.version", ver2, sizeof(ver2)), 0);
	cr_expect_gt(atoll(ver2), atoll(ver1), "each commit bumps the version");
	reopen();
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	char ver3[32] = {0};
	cr_assert_gt(txd_getxattr(fs, node, "user.txdir.version", ver3, sizeof(ver3)), 0);
	cr_expect_str_eq(ver2, ver3, "versions survive a checkpoint");
	cr_expect_eq(txd_getxattr(fs, node, "user.color", v, sizeof(v)), 3);
}

struct seen {
	char names[64][16];
	int n;
	uint64_t last;
};

static int fill_some(void *arg, const char *name, const struct txd_entry *e, uint64_t next)
{
	(void)e;
	struct seen *s = arg;
	if (s->n >= 3)
		return 1; /* "buffer full" after three */
	snprintf(s->names[s->n++], 16, "%s", name);
	s->last = next;
	return 0;
}

/* N3: readdir offsets are stable cookies: creating and removing entries
 * between calls never repeats or skips a surviving entry. */
Test(fs, readdir_offsets_survive_changes)
{
	char name[16];
	for (int k = 0; k < 20; k++) {
		snprintf(name, sizeof(name), "f%02d", k);
		cr_assert_eq(tt_put(fs, name, "x", 1), 0);
	}
	uint64_t dh, off = 0;
	cr_assert_eq(txd_opendir(fs, TXD_ROOT_NODE, &dh), 0);
	int count[20] = {0}, round = 0;
	for (;;) {
		struct seen s = {0};
		cr_assert_eq(txd_readdir(fs, dh, off, false, fill_some, &s), 0);
		if (s.n == 0)
			break;
		for (int k = 0; k < s.n; k++)
			if (s.names[k][0] == 'f')
				count[atoi(s.names[k] + 1)]++;
		off = s.last;
		/* churn between calls: new entries appear (at the end) */
		if (round < 5) {
			snprintf(name, sizeof(name), "new%d", round++);
			cr_assert_eq(tt_put(fs, name, "y", 1), 0);
		}
	}
	txd_releasedir(fs, dh);
	for (int k = 0; k < 20; k++)
		cr_expect_eq(count[k], 1, "f%02d seen %d times", k, count[k]);
}

/* .txdir is reachable but not listed in the root. */
Test(fs, control_dir_hidden_but_reachable)
{
	struct txd_entry e;
	cr_assert_eq(txd_lookup(fs, TXD_ROOT_NODE, ".txdir", &e), 0);
	cr_expect(S_ISDIR(e.attr.mode));
	cr_expect(e.cacheable, "a stable control directory may be cached");
	struct txd_entry st;
	cr_assert_eq(txd_lookup(fs, e.node, "stats", &st), 0);
	cr_expect_not(st.cacheable, "control files are rendered at every open");
	txd_forget(fs, st.node, 1);
	txd_forget(fs, e.node, 1);
	struct seen s = {0};
	uint64_t dh;
	cr_assert_eq(txd_opendir(fs, TXD_ROOT_NODE, &dh), 0);
	cr_assert_eq(txd_readdir(fs, dh, 0, false, fill_some, &s), 0);
	txd_releasedir(fs, dh);
	for (int k = 0; k < s.n; k++)
		cr_expect_str_neq(s.names[k], ".txdir");
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, ".txdir/stats", &data, &len), 0);
	cr_expect_not_null(strstr(data, "txdir_commits_total"));
	free(data);
	cr_assert_eq(tt_get(fs, ".txdir/status.json", &data, &len), 0);
	cr_expect_not_null(strstr(data, "\"durability\""));
	free(data);
}

/* STYLE 6: a commit that cannot reach the log fails the store (EIO for
 * every later change), reads keep working, and a reopen recovers the last
 * good state. */
Test(fs, failed_log_write_is_sticky)
{
	cr_assert_eq(tt_put(fs, "f", "good", 4), 0);
	txd_fs_close(fs);
	fs = NULL;
	faultos_install();
	reopen();
	/* the log's next write: a background thread's write (a commit-log
	 * flush, say) may come first on a loaded machine */
	faultos_fail_next_pwrite_to("/dtc/wal/seg-", -EIO);
	cr_expect_eq(tt_put(fs, "g", "x", 1), -EIO);
	cr_expect_eq(tt_mkdir(fs, "h"), -EIO);
	expect_file("f", "good");
	struct txd_status st;
	txd_get_status(fs, &st);
	cr_expect(st.failed);
	reopen();
	expect_file("f", "good");
	uint64_t n;
	cr_expect_eq(tt_resolve(fs, "g", NULL, NULL, &n), -ENOENT);
	cr_expect_eq(tt_mkdir(fs, "h"), 0, "the reopened store accepts changes");
}

/* C: a damaged chunk reads as EIO and is counted — never wrong bytes. */
Test(fs, damaged_chunk_is_eio)
{
	char data[3000];
	memset(data, 'q', sizeof(data));
	cr_assert_eq(tt_put(fs, "f", data, sizeof(data)), 0);
	txd_fs_close(fs);
	fs = NULL;
	/* flip one byte of the inline chunk inside the WAL */
	char path[512];
	snprintf(path, sizeof(path), "%s/coordination/dtc/wal/seg-00000001", store);
	FILE *f = fopen(path, "r+b");
	cr_assert_not_null(f);
	char *buf = malloc(1 << 20);
	size_t n = fread(buf, 1, 1 << 20, f);
	char *at = memmem(buf, n, data, 64);
	cr_assert_not_null(at, "chunk bytes are inline in the log");
	fseek(f, (long)(at - buf) + 100, SEEK_SET);
	fputc('Z', f);
	fclose(f);
	free(buf);
	reopen();
	char *got;
	size_t len;
	cr_expect_eq(tt_get(fs, "f", &got, &len), -EIO);
	struct txd_status st;
	txd_get_status(fs, &st);
	cr_expect_geq(st.checksum_errors, 1);
	cr_assert_eq(tt_get(fs, ".txdir/events", &got, &len), 0);
	cr_expect_not_null(strstr(got, "\"checksum_error\""), "a log line names the damage");
	cr_expect_not_null(strstr(got, "\"path\":\"/f\""), "%s", got);
	free(got);
}

struct worker {
	int id, rounds;
	int err;
};

static void *commit_loop(void *arg)
{
	struct worker *w = arg;
	char name[32], body[64];
	for (int r = 0; r < w->rounds && !w->err; r++) {
		snprintf(name, sizeof(name), "w%d", w->id);
		int n = snprintf(body, sizeof(body), "%d:%d", w->id, r);
		w->err = tt_put(fs, name, body, (size_t)n);
		if (!w->err && r % 10 == 0)
			w->err = txd_sync_wait(fs);
	}
	return NULL;
}

/* Concurrency: 8 threads commit their own files; afterwards (and after a
 * reopen) each file holds its thread's last round; group commit batched. */
Test(fs, concurrent_committers)
{
	pthread_t t[8];
	struct worker w[8];
	for (int k = 0; k < 8; k++) {
		w[k] = (struct worker){.id = k, .rounds = 200};
		pthread_create(&t[k], NULL, commit_loop, &w[k]);
	}
	for (int k = 0; k < 8; k++) {
		pthread_join(t[k], NULL);
		cr_expect_eq(w[k].err, 0, "worker %d: %s", k, txd_strerror(w[k].err));
	}
	reopen();
	for (int k = 0; k < 8; k++) {
		char name[16], want[32];
		snprintf(name, sizeof(name), "w%d", k);
		snprintf(want, sizeof(want), "%d:199", k);
		expect_file(name, want);
	}
}

/* ns.h N2: versions nobody pins are not retained. */
Test(fs, unpinned_versions_are_freed)
{
	for (int k = 0; k < 50; k++)
		cr_assert_eq(tt_put(fs, "f", "x", 1), 0);
	struct txd_status st;
	txd_get_status(fs, &st);
	cr_expect_leq(st.versions_retained, st.inodes + 1);
}

/* K2/K3: checkpoints drop segments without live chunks and keep the ones
 * with live inline data, even when that leaves gaps in segment numbers; the
 * store reopens and every byte is still there. */
Test(fs, checkpoint_drops_dead_segments_and_reopens)
{
	cr_assert_eq(tt_put(fs, "keep", "kept in segment one", 19), 0);
	reopen(); /* checkpoint; segment 1 holds live data */
	cr_assert_eq(tt_put(fs, "tmp", "short lived", 11), 0);
	reopen(); /* segment 2 holds live data ("tmp") */
	cr_assert_eq(tt_unlink(fs, "tmp"), 0);
	cr_assert_eq(tt_put(fs, "x", "in segment three", 16), 0);
	reopen(); /* segment 2 is dead now and dropped: segments 1, 3, 4 */
	reopen();
	expect_file("keep", "kept in segment one");
	expect_file("x", "in segment three");
	char path[512];
	snprintf(path, sizeof(path), "%s/coordination/dtc/wal/seg-00000002", store);
	cr_expect_neq(access(path, F_OK), 0, "dead segment 2 was deleted");
}

/* Snapshot readers racing committers (F1/F3, C1): writers publish each
 * version by writing a temp file and renaming it over (SPEC §3's pattern for
 * content no reader may see half-written); every read, however it
 * interleaves with commits, is one complete committed version (content
 * carries its own length and checksum), and the versions a reader sees of
 * one file never go backwards. */
#define SR_FILES 4
#define SR_ROUNDS 150

static int sr_stop;

static size_t sr_body(char *buf, int file, int round)
{
	/* "file round len csum" header then round-dependent filler */
	size_t len = 1000 + (size_t)(round * 997 % 40000);
	char *p = buf + 64;
	memset(buf, 0, 64);
	for (size_t k = 0; k < len; k++)
		p[k] = (char)('a' + (file * 7 + round + (int)k) % 26);
	snprintf(buf, 64, "%d %d %zu %llu", file, round, len,
		 (unsigned long long)XXH64(p, len, 0));
	return 64 + len;
}

static int sr_errors[SR_FILES];

static void *sr_writer(void *arg)
{
	int file = (int)(intptr_t)arg;
	int err = 0;
	char *buf = malloc(64 + 41000), name[16], tmp[16];
	snprintf(name, sizeof(name), "s%d", file);
	snprintf(tmp, sizeof(tmp), "s%d.tmp", file);
	for (int r = 1; r <= SR_ROUNDS; r++) {
		size_t n = sr_body(buf, file, r);
		if ((err = tt_put(fs, tmp, buf, n)) || (err = tt_rename(fs, tmp, name, 0)))
			break;
	}
	sr_errors[file] = err;
	free(buf);
	return NULL;
}

static void *sr_reader(void *arg)
{
	int *bad = arg, last[SR_FILES] = {0};
	while (!__atomic_load_n(&sr_stop, __ATOMIC_ACQUIRE)) {
		for (int f = 0; f < SR_FILES; f++) {
			char name[16], *data;
			size_t len;
			snprintf(name, sizeof(name), "s%d", f);
			if (tt_get(fs, name, &data, &len)) {
				(*bad)++;
				continue;
			}
			int file, round;
			size_t blen;
			unsigned long long sum;
			if (len < 64 || sscanf(data, "%d %d %zu %llu", &file, &round, &blen, &sum) != 4 ||
			    blen != len - 64 || XXH64(data + 64, blen, 0) != sum || round < last[f])
				(*bad)++;
			else
				last[f] = round;
			free(data);
		}
	}
	return NULL;
}

Test(fs, snapshot_readers_race_committers)
{
	char buf[64 + 41000];
	for (int f = 0; f < SR_FILES; f++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", f);
		cr_assert_eq(tt_put(fs, name, buf, sr_body(buf, f, 0)), 0);
	}
	pthread_t w[SR_FILES], r[2];
	int bad[2] = {0};
	sr_stop = 0;
	for (int k = 0; k < 2; k++)
		pthread_create(&r[k], NULL, sr_reader, &bad[k]);
	for (int f = 0; f < SR_FILES; f++)
		pthread_create(&w[f], NULL, sr_writer, (void *)(intptr_t)f);
	for (int f = 0; f < SR_FILES; f++) {
		pthread_join(w[f], NULL);
		cr_expect_eq(sr_errors[f], 0, "writer %d: %s", f, txd_strerror(sr_errors[f]));
	}
	__atomic_store_n(&sr_stop, 1, __ATOMIC_RELEASE);
	for (int k = 0; k < 2; k++)
		pthread_join(r[k], NULL);
	cr_expect_eq(bad[0] + bad[1], 0, "%d torn, stale or failed reads", bad[0] + bad[1]);
	reopen();
	for (int f = 0; f < SR_FILES; f++) {
		char name[16], *data;
		size_t len;
		snprintf(name, sizeof(name), "s%d", f);
		cr_assert_eq(tt_get(fs, name, &data, &len), 0);
		cr_expect_eq(len, sr_body(buf, f, SR_ROUNDS));
		cr_expect_eq(memcmp(data, buf, len), 0, "s%d holds its last round", f);
		free(data);
	}
}

/* Derived logs (SPEC §5, §7): commits/ID and events survive a clean restart
 * (saved after the checkpoint) and a crash (rebuilt by replay). */
Test(fs, commit_log_survives_restart_and_crash)
{
	cr_assert_eq(tt_put(fs, "a", "1", 1), 0);
	uint64_t first = txd_current_lsn(fs);
	reopen();
	char path[64], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/commits/%llu", (unsigned long long)first);
	cr_assert_eq(tt_get(fs, path, &data, &len), 0, "commit %llu after a clean restart",
		     (unsigned long long)first);
	cr_expect_not_null(strstr(data, "\"path\":\"/a\""), "%s", data);
	free(data);
	cr_assert_eq(tt_put(fs, "b", "2", 1), 0);
	uint64_t second = txd_current_lsn(fs);
	/* the WAL's thread has nothing left to sync (or zero) when the os table
	 * changes under it (TSan) */
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_install();
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	reopen();
	snprintf(path, sizeof(path), ".txdir/commits/%llu", (unsigned long long)second);
	cr_assert_eq(tt_get(fs, path, &data, &len), 0, "commit after a crash (replayed)");
	free(data);
	snprintf(path, sizeof(path), ".txdir/commits/%llu", (unsigned long long)first);
	cr_assert_eq(tt_get(fs, path, &data, &len), 0, "older commit still there");
	free(data);
	cr_assert_eq(tt_get(fs, ".txdir/events", &data, &len), 0);
	int recovered = 0;
	for (char *p = data; (p = strstr(p, "\"recovered\"")); p++)
		recovered++;
	cr_expect_geq(recovered, 2, "events of earlier runs are kept: %s", data);
	free(data);
}

/* K3 with background checkpoints: while a snapshot reader holds an old
 * version, the segment holding its bytes survives checkpoints; once the
 * reader is gone, later checkpoints drop dead segments. */
Test(fs, checkpoints_keep_what_readers_need)
{
	txd_fs_close(fs);
	struct txd_opts o = {.wal_segment_bytes = 128 << 10};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	char v1[40000], vn[40000];
	memset(v1, '1', sizeof(v1));
	cr_assert_eq(tt_put(fs, "a", v1, sizeof(v1)), 0);
	uint64_t node;
	struct txd_open_out r;
	cr_assert_eq(tt_resolve(fs, "a", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0);
	for (int k = 0; k < 10; k++) {
		memset(vn, 'a' + k, sizeof(vn));
		cr_assert_eq(tt_put(fs, "b", vn, sizeof(vn)), 0); /* rotates segments */
	}
	cr_assert_eq(tt_put(fs, "a", "v2", 2), 0, "the head moves on; the reader keeps v1");
	cr_assert_eq(txd_checkpoint(fs), 0);
	char *got = malloc(sizeof(v1));
	cr_assert_eq(txd_read(fs, r.fh, got, sizeof(v1), 0), (ssize_t)sizeof(v1));
	cr_expect_eq(memcmp(got, v1, sizeof(v1)), 0, "the reader's version is intact");
	free(got);
	txd_release(fs, r.fh);
	txd_forget(fs, node, UINT64_MAX); /* the kernel forgets the frozen node */
	struct txd_status before, after;
	txd_get_status(fs, &before);
	cr_assert_eq(txd_checkpoint(fs), 0);
	txd_get_status(fs, &after);
	cr_expect_lt(after.wal_bytes, before.wal_bytes, "without the reader its segment goes");
	reopen();
	expect_file("a", "v2");
}

/* The background thread checkpoints every checkpoint_bytes of log. */
Test(fs, background_checkpoints_run)
{
	txd_fs_close(fs);
	struct txd_opts o = {.checkpoint_bytes = 64 << 10, .wal_segment_bytes = 128 << 10};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	char vn[40000];
	struct txd_status st = {0};
	/* bounded: each round adds 40 KB of log; the thread must have run */
	for (int k = 0; k < 2000 && st.checkpoints == 0; k++) {
		memset(vn, 'a' + k % 26, sizeof(vn));
		cr_assert_eq(tt_put(fs, "b", vn, sizeof(vn)), 0);
		txd_get_status(fs, &st);
	}
	/* a loaded machine may not have scheduled the thread yet: give it
	 * up to 20 s to take its turn (the wait ends as soon as it ran) */
	for (int k = 0; k < 2000 && st.checkpoints == 0; k++) {
		usleep(10000);
		txd_get_status(fs, &st);
	}
	cr_expect_gt(st.checkpoints, 0, "no background checkpoint after 80 MB of log");
	reopen();
	char *got;
	size_t len;
	cr_assert_eq(tt_get(fs, "b", &got, &len), 0);
	cr_expect_eq(len, sizeof(vn));
	free(got);
}

/* As ext4: open(O_TRUNC) marks mtime/ctime even when the file was already
 * empty (the times are committed at close). The clock is moved, not slept. */
Test(fs, o_trunc_of_an_empty_file_updates_times)
{
	txd_fs_close(fs);
	fs = NULL;
	faultos_install();
	reopen();
	cr_assert_eq(tt_put(fs, "e", "", 0), 0);
	uint64_t node;
	struct txd_attr before, after;
	cr_assert_eq(tt_resolve(fs, "e", NULL, NULL, &node), 0);
	cr_assert_eq(txd_getattr(fs, node, &before), 0);
	faultos_set_clock_offset(5 * 1000000000ll);
	struct txd_open_out oo;
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &oo), 0);
	cr_assert_eq(txd_flush(fs, oo.fh, &tt_cred, NULL), 0);
	txd_release(fs, oo.fh);
	cr_assert_eq(txd_getattr(fs, node, &after), 0);
	cr_expect_geq(after.mtime.tv_sec, before.mtime.tv_sec + 5);
	cr_expect_geq(after.ctime.tv_sec, before.ctime.tv_sec + 5);
}

/* SPEC §3 -o max_snapshot_age: a snapshot older than the bound is released
 * (its reader gets ESTALE, "snapshot too old") and its version freed; a
 * transaction that old is aborted. The clock is moved, not slept. */
Test(fs, max_snapshot_age_releases_old_snapshots)
{
	txd_fs_close(fs);
	fs = NULL;
	faultos_install();
	struct txd_opts o = {.max_snapshot_age_s = 5};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, "f", "v1", 2), 0);
	uint64_t node;
	struct txd_open_out r;
	cr_assert_eq(tt_resolve(fs, "f", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0);
	cr_assert_eq(tt_mkdir(fs, ".txdir/txn/old"), 0);
	char buf[8];
	cr_assert_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 2);
	faultos_set_clock_offset(10 * 1000000000ll);
	/* bounded wait for the background thread's next tick (every second) */
	ssize_t n = 0;
	for (int k = 0; k < 100 && n >= 0; k++) {
		n = txd_read(fs, r.fh, buf, sizeof(buf), 0);
		struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};
		if (n >= 0)
			nanosleep(&ts, NULL);
	}
	cr_expect_eq(n, -ESTALE, "an expired snapshot reads ESTALE");
	char *st;
	size_t len;
	cr_assert_eq(tt_get(fs, ".txdir/txn/old/status", &st, &len), 0);
	cr_expect_eq(strncmp(st, "aborted snapshot-too-old", 24), 0, "%s", st);
	free(st);
	txd_release(fs, r.fh);
	expect_file("f", "v1");
}

/* txd_notify.will_block: a commit that must fdatasync its packs first (content
 * beyond the inline limit) announces the wait; a small one does not. */
static int nblocks;

static void count_block(void *arg)
{
	(void)arg;
	__atomic_fetch_add(&nblocks, 1, __ATOMIC_RELAXED);
}

Test(fs, large_commit_announces_its_sync)
{
	static const struct txd_notify cb = {.will_block = count_block};
	size_t big = 6u << 20;
	char *buf = calloc(1, big);

	cr_assert_not_null(buf);
	memset(buf, 'b', big);
	txd_set_notify(fs, &cb);
	cr_assert_eq(tt_put(fs, "small", "s", 1), 0);
	cr_expect_eq(nblocks, 0, "a small commit needs no sync");
	cr_assert_eq(tt_put(fs, "big", buf, big), 0);
	cr_expect_geq(nblocks, 1, "the pack fdatasync was not announced");
	free(buf);
}

/* chown(f, -1, -1) (TXD_SET_CHOWN_NOOP, as txdirfs maps the kernel's
 * ctime-only or empty SETATTR): one commit that moves ctime even when nothing
 * else changes, drops set-gid from a group-executable fifo, and is EPERM for
 * a caller who neither owns the file nor is root when bits would go (ext4
 * makes that a mode change); a bare kill with nothing to kill commits
 * nothing. The clock is moved, not slept. */
static uint64_t commits_now(void)
{
	struct txd_status st;
	txd_get_status(fs, &st);
	return st.commits;
}

Test(fs, noop_chown_moves_ctime_and_needs_ownership)
{
	txd_fs_close(fs);
	fs = NULL;
	faultos_install();
	reopen();
	struct txd_entry plain, setgid;
	struct txd_attr before, after;
	cr_assert_eq(txd_mknod(fs, &tt_cred, TXD_ROOT_NODE, "p", S_IFIFO | 0755, 0, &plain), 0);
	cr_assert_eq(txd_mknod(fs, &tt_cred, TXD_ROOT_NODE, "q", S_IFIFO | 02755, 0, &setgid), 0);
	cr_assert_eq(txd_getattr(fs, plain.node, &before), 0);

	uint64_t c0 = commits_now();
	struct txd_setattr kill = {.valid = TXD_SET_KILL_SUIDGID};
	cr_assert_eq(txd_setattr(fs, NULL, plain.node, &kill, 0, NULL), 0);
	cr_assert_eq(commits_now(), c0, "a kill with nothing to kill committed");

	faultos_set_clock_offset(5 * 1000000000ll);
	struct txd_setattr noop = {.valid = TXD_SET_CHOWN_NOOP};
	cr_assert_eq(txd_setattr(fs, NULL, plain.node, &noop, 0, &after), 0);
	cr_assert_eq(commits_now(), c0 + 1);
	cr_expect_geq(after.ctime.tv_sec, before.ctime.tv_sec + 5);
	cr_expect_eq(after.mtime.tv_sec, before.mtime.tv_sec);
	cr_expect_eq(after.mode & 07777, 0755);

	/* not the owner (tt_cred's uid), not root: EPERM when a bit would go */
	struct txd_cred other = {.uid = tt_cred.uid + 1000, .gid = tt_cred.gid + 1000, .pid = 1};
	cr_assert_eq(txd_setattr(fs, &other, setgid.node, &noop, 0, NULL), -EPERM);
	cr_assert_eq(txd_getattr(fs, setgid.node, &after), 0);
	cr_expect_eq(after.mode & 07777, 02755);
	cr_assert_eq(txd_setattr(fs, &other, plain.node, &noop, 0, NULL), 0);
	cr_assert_eq(txd_setattr(fs, &tt_cred, setgid.node, &noop, 0, &after), 0);
	cr_expect_eq(after.mode & 07777, 0755);
}

/* SPEC §7: the commit log is derived, never trusted over the WAL. Its append
 * reached the disk, the WAL's did not (never synced): after the restart the
 * WAL reuses the lost commit's id, and commits/ID must name the new commit. */
Test(fs, clog_cut_after_lost_wal_tail)
{
	char cmdline[3000], *d = NULL;
	size_t len;
	cr_assert_eq(tt_put(fs, "a", "a", 1), 0);
	cr_assert_eq(txd_sync_wait(fs), 0);
	snprintf(cmdline, sizeof(cmdline),
		 "rm -rf %s.walcopy && cp -a %s/coordination/dtc/wal %s.walcopy", store, store,
		 store);
	cr_assert_eq(system(cmdline), 0);
	cr_assert_eq(tt_put(fs, "c-lost", "x", 1), 0);
	/* reading the record writes the commit log's gathered records out */
	struct txd_status st;
	txd_get_status(fs, &st);
	snprintf(cmdline, sizeof(cmdline), ".txdir/commits/%llu",
		 (unsigned long long)st.last_commit_id);
	cr_assert_eq(tt_get(fs, cmdline, &d, &len), 0);
	free(d);
	faultos_install();
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	/* the WAL tail never fdatasync'ed is gone; the commit log's page is not */
	snprintf(cmdline, sizeof(cmdline),
		 "rm -rf %s/coordination/dtc/wal && mv %s.walcopy %s/coordination/dtc/wal", store,
		 store, store);
	cr_assert_eq(system(cmdline), 0);
	reopen();
	cr_expect_neq(tt_get(fs, "c-lost", &d, &len), 0, "c-lost is gone from the data");
	cr_assert_eq(tt_put(fs, "new", "n", 1), 0);
	int named_new = 0;
	for (int id = 1; id < 16; id++) {
		char p[64];
		snprintf(p, sizeof(p), ".txdir/commits/%d", id);
		if (tt_get(fs, p, &d, &len))
			continue;
		cr_expect_null(strstr(d, "c-lost"), "commit %d names the lost commit: %s", id, d);
		named_new += strstr(d, "/new") != NULL;
		free(d);
	}
	cr_expect_geq(named_new, 1, "a commit names /new");
	cr_assert_eq(tt_get(fs, ".txdir/events", &d, &len), 0);
	cr_expect_not_null(strstr(d, "lost_commits"), "the cut is reported: %s", d);
	free(d);
}

/* A derived log never stops recovery: a failed commit-log append during
 * replay is a warning, and the store opens. */
Test(fs, clog_write_failure_does_not_fail_replay)
{
	cr_assert_eq(tt_put(fs, "a", "a", 1), 0);
	cr_assert_eq(tt_put(fs, "b", "b", 1), 0);
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_install();
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	faultos_uninstall();
	char path[700];
	snprintf(path, sizeof(path), "%s/coordination/commits/log", store);
	/* the first two pwrites are the WAL's; the third writes the records
	 * replay noted (gathered in memory, clog.c) */
	for (int k = 3; k <= 6; k++) {
		cr_assert_eq(truncate(path, 0), 0); /* derived: replay re-notes (C3) */
		faultos_install();
		faultos_fail_nth(FOS_PWRITE, (uint64_t)k, -ENOSPC);
		int err = txd_fs_open(store, NULL, &fs, NULL);
		cr_expect_eq(err, 0, "pwrite #%d fails: open gives %d", k, err);
		if (!err)
			txd_fs_close(fs);
		fs = NULL;
		faultos_uninstall();
	}
	reopen();
	expect_file("a", "a");
	expect_file("b", "b");
}

/* events.h E5: a damaged chunk read through a transaction's view logs the
 * view's path as "private" (with the owner's uid), never as "path". */
Test(fs, damaged_chunk_in_a_view_logs_a_private_path)
{
	char data[3000];
	memset(data, 'q', sizeof(data));
	cr_assert_eq(tt_put(fs, "f", data, sizeof(data)), 0);
	txd_fs_close(fs);
	fs = NULL;
	char path[512];
	snprintf(path, sizeof(path), "%s/coordination/dtc/wal/seg-00000001", store);
	FILE *f = fopen(path, "r+b");
	cr_assert_not_null(f);
	char *buf = malloc(1 << 20);
	size_t n = fread(buf, 1, 1 << 20, f);
	char *at = memmem(buf, n, data, 64);
	cr_assert_not_null(at, "chunk bytes are inline in the log");
	fseek(f, (long)(at - buf) + 100, SEEK_SET);
	fputc('Z', f);
	fclose(f);
	free(buf);
	reopen();
	cr_assert_eq(tt_mkdir(fs, ".txdir/txn/t"), 0);
	char *got;
	size_t len;
	cr_expect_eq(tt_get(fs, ".txdir/txn/t/root/f", &got, &len), -EIO);
	cr_assert_eq(tt_get(fs, ".txdir/events", &got, &len), 0);
	char *line = strstr(got, "\"checksum_error\"");
	cr_assert_not_null(line, "a log line names the damage: %s", got);
	char *end = strchr(line, '\n');
	if (end)
		*end = 0;
	cr_expect_null(strstr(line, "\"path\""), "a view's path is private: %s", line);
	cr_expect_not_null(strstr(line, "\"private\":"), "%s", line);
	cr_expect_not_null(strstr(line, "\"uid\""), "%s", line);
	free(got);
}
