/*
 * test_flush.c — when content is committed (SPEC §3 "Commits", fsfile.c):
 * a FLUSH with nothing written since the last commit does not commit a
 * truncation alone (`cmd > file`: the shell's open + dup2 + close); the
 * truncation goes with the content written after it, or, when nothing is
 * ever written (`: > file`), at RELEASE or before another OPEN or fsync is
 * answered. And a handle with nothing written since its last FLUSH is not a
 * writer: a reader opened then is a snapshot reader (dtree.h F1).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "ttsuite.h"

TestSuite(flush, .init = setup, .fini = teardown, .timeout = 60);

static void expect_file(const char *path, const char *want)
{
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, path, &data, &len), 0, "read %s", path);
	cr_expect_eq(len, strlen(want), "%s: size %zu, want %zu", path, len, strlen(want));
	cr_expect(len == strlen(want) && !memcmp(data, want, len), "%s: content", path);
	free(data);
}

/* faultos must be installed while no store is open (the crash below). */
static void reopen_with_faultos(void)
{
	txd_fs_close(fs);
	fs = NULL;
	faultos_install();
	reopen();
}

/* Process death of the server, then recovery from the log. */
static void crash_and_recover(void)
{
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	reopen();
}

static uint64_t node_of(const char *path)
{
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &node), 0, "resolve %s", path);
	return node;
}

/* `cmd > f`: open(O_TRUNC), dup2, close (FLUSH with nothing written): no
 * commit; a crash while CMD runs leaves the old file, not an empty one. */
Test(flush, flush_of_an_unwritten_truncation_commits_nothing)
{
	reopen_with_faultos();
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	struct txd_open_out w;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w), 0);
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	cr_expect_eq(txd_current_lsn(fs), before, "the lone truncation was committed at FLUSH");
	faultos_crash();
	txd_release(fs, w.fh); /* after the crash: frees it, reaches no disk */
	crash_and_recover();
	expect_file("f", "old content");
}

/* The truncation and the content that follows through the same open file
 * are one commit: before it, the old file; after it, the new one. */
Test(flush, truncation_commits_with_the_content_that_follows)
{
	reopen_with_faultos();
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	struct txd_open_out w;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w), 0);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0); /* the shell's close */
	cr_assert_eq(txd_write(fs, NULL, w.fh, "new", 3, 0), 3);     /* CMD writes */
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0); /* CMD's exit */
	cr_expect_eq(txd_current_lsn(fs), before + 1, "one commit: truncation and content");
	cr_assert_eq(txd_release(fs, w.fh), 0);
	crash_and_recover();
	expect_file("f", "new");
}

/* A loop of `open(O_TRUNC); write; close`: the previous round's RELEASE is
 * asynchronous and may arrive after the next round's OPEN truncated, before
 * that round's writes reach the server (writeback cache). That RELEASE must
 * not commit the next round's truncation alone (it is not the handle that
 * made it): a crash then leaves the last closed version, never an empty
 * file (the crash.sh rounds found it). */
Test(flush, an_older_handles_release_leaves_a_newer_truncation_pending)
{
	reopen_with_faultos();
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	struct txd_open_out a, b;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &a), 0);
	cr_assert_eq(txd_write(fs, NULL, a.fh, "round 1", 7, 0), 7);
	cr_assert_eq(txd_flush(fs, a.fh, &tt_cred, NULL), 0); /* round 1's close */
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &b), 0);
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_release(fs, a.fh), 0); /* round 1's late RELEASE */
	cr_expect_eq(txd_current_lsn(fs), before, "an older handle's RELEASE committed the truncation");
	faultos_crash();
	txd_release(fs, b.fh);
	crash_and_recover();
	expect_file("f", "round 1");
}

/* `: > f`: nothing is ever written; RELEASE commits the empty file. */
Test(flush, release_commits_the_lone_truncation)
{
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	struct txd_open_out w;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w), 0);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_release(fs, w.fh), 0);
	cr_expect_gt(txd_current_lsn(fs), before, "RELEASE committed nothing");
	reopen();
	expect_file("f", "");
}

/* ... and so does another OPEN of the file, before it is answered (the
 * truncating handle still open, its RELEASE not arrived). */
Test(flush, another_open_commits_the_lone_truncation_first)
{
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	struct txd_open_out w, r;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w), 0);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_RDONLY, &r), 0);
	cr_expect_gt(txd_current_lsn(fs), before, "the OPEN was answered first");
	char buf[16];
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 0, "the reader sees the empty file");
	struct txd_attr a;
	cr_assert_eq(txd_getattr(fs, node_of("f"), &a), 0);
	cr_expect_eq(a.size, 0);
	txd_release(fs, r.fh);
	txd_release(fs, w.fh);
	reopen();
	expect_file("f", "");
}

/* ... and so does an fsync through another descriptor. */
Test(flush, fsync_elsewhere_commits_the_lone_truncation)
{
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	struct txd_open_out r, w;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_RDONLY, &r), 0); /* opened before */
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w), -ESTALE);
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w), 0);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	uint64_t before = txd_current_lsn(fs), lsn = 0;
	cr_assert_eq(txd_fsync_prepare(fs, r.fh, &tt_cred, &lsn), 0);
	cr_expect_gt(lsn, before, "fsync answered with the truncation uncommitted");
	txd_release(fs, r.fh);
	txd_release(fs, w.fh);
	expect_file("f", "");
}

/* ftruncate through the handle is writing: its FLUSH commits. */
Test(flush, ftruncate_through_the_handle_commits_at_flush)
{
	cr_assert_eq(tt_put(fs, "f", "old content", 11), 0);
	uint64_t node = node_of("f");
	struct txd_open_out w;
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &w), 0);
	struct txd_setattr sa = {.valid = TXD_SET_SIZE, .size = 3};
	cr_assert_eq(txd_setattr(fs, NULL, node, &sa, w.fh, NULL), 0);
	uint64_t before = txd_current_lsn(fs);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0);
	cr_expect_gt(txd_current_lsn(fs), before);
	txd_release(fs, w.fh);
	expect_file("f", "old");
}

/* Defect 11: a writer wrote and flushed (close(2) returned) but its RELEASE
 * has not arrived; a reader opened now is a snapshot reader: the next
 * writer is sent to a fresh node id and the reader keeps its version. */
Test(flush, reader_after_a_flushed_writer_is_a_snapshot)
{
	cr_assert_eq(tt_put(fs, "f", "first", 5), 0);
	struct txd_open_out w1, r, w2;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_WRONLY | O_TRUNC, &w1), 0);
	cr_assert_eq(txd_write(fs, NULL, w1.fh, "second", 6, 0), 6);
	cr_assert_eq(txd_flush(fs, w1.fh, &tt_cred, NULL), 0); /* close returned */
	uint64_t node = node_of("f");
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0); /* RELEASE of w1 pending */
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &w2), -ESTALE,
		     "the reader shares the quiet writer's working copy");
	uint64_t node2 = node_of("f");
	cr_assert_neq(node, node2);
	cr_assert_eq(txd_open(fs, NULL, node2, O_WRONLY | O_TRUNC, &w2), 0);
	cr_assert_eq(txd_write(fs, NULL, w2.fh, "3", 1, 0), 1);
	char buf[16] = {0};
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 6);
	cr_expect_str_eq(buf, "second");
	struct txd_attr a;
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.size, 6, "fstat of the reader: its version's size");
	cr_assert_eq(txd_flush(fs, w2.fh, &tt_cred, NULL), 0);
	cr_assert_eq(txd_getattr(fs, node, &a), 0);
	cr_expect_eq(a.size, 6);
	txd_release(fs, w2.fh);
	txd_release(fs, w1.fh);
	memset(buf, 0, sizeof(buf));
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 6);
	cr_expect_str_eq(buf, "second");
	txd_release(fs, r.fh);
	expect_file("f", "3");
}

/* A reader opened while a writer holds unflushed writes shares them (ext4). */
Test(flush, reader_during_unflushed_writes_shares)
{
	cr_assert_eq(tt_put(fs, "f", "aaaa", 4), 0);
	struct txd_open_out w, r;
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_RDWR, &w), 0);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "bb", 2, 0), 2);
	cr_assert_eq(txd_open(fs, NULL, node_of("f"), O_RDONLY, &r), 0);
	char buf[8] = {0};
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 4);
	cr_expect_str_eq(buf, "bbaa");
	txd_release(fs, r.fh);
	txd_release(fs, w.fh);
}

/* A quiet writer (flushed, still open: `cmd >&3` closed its dup) writes
 * again through the node a snapshot reader opened meanwhile: the kernel's
 * page cache of that node takes the writes, so the reader joins the working
 * copy (what the server answers must agree with that cache, dtree.h F1). */
Test(flush, snapshot_reader_joins_a_quiet_writer_that_writes_again)
{
	cr_assert_eq(tt_put(fs, "f", "aaaa", 4), 0);
	uint64_t node = node_of("f");
	struct txd_open_out w, r, w2;
	cr_assert_eq(txd_open(fs, NULL, node, O_RDWR, &w), 0);
	cr_assert_eq(txd_write(fs, NULL, w.fh, "bb", 2, 0), 2);
	cr_assert_eq(txd_flush(fs, w.fh, &tt_cred, NULL), 0); /* quiet now */
	cr_assert_eq(txd_open(fs, NULL, node, O_RDONLY, &r), 0);     /* a snapshot */
	char buf[8] = {0};
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 4);
	cr_expect_str_eq(buf, "bbaa");
	cr_assert_eq(txd_write(fs, NULL, w.fh, "cc", 2, 2), 2); /* writes again */
	memset(buf, 0, sizeof(buf));
	cr_expect_eq(txd_read(fs, r.fh, buf, sizeof(buf), 0), 4);
	cr_expect_str_eq(buf, "bbcc", "the reader did not join the working copy");
	/* no snapshot left on the node: another writer opens it directly */
	cr_expect_eq(txd_open(fs, NULL, node, O_WRONLY, &w2), 0);
	txd_release(fs, w2.fh);
	txd_release(fs, r.fh);
	txd_release(fs, w.fh);
	expect_file("f", "bbcc");
}
