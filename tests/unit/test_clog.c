/*
 * test_clog.c — the commit log (engine/clog.h), invariants C1-C6: through
 * the engine (commits made with the txd_* calls, read as .txdir/commits/ID)
 * and on the module's own file.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clog.h"
#include "ttsuite.h"
#include <cjson/cJSON.h>

TestSuite(clog, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t last_id(void)
{
	struct txd_status st;
	txd_get_status(fs, &st);
	return st.last_commit_id;
}

static cJSON *commit_json(uint64_t id)
{
	char path[64], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/commits/%llu", (unsigned long long)id);
	int err = tt_get(fs, path, &data, &len);
	if (err)
		return NULL;
	cJSON *o = cJSON_Parse(data);
	cr_assert_not_null(o, "commit %llu is not JSON: %s", (unsigned long long)id, data);
	free(data);
	return o;
}

/* The op of path in any commit since `from` ("" if none); from too. */
static bool has_change(uint64_t from, const char *op, const char *path, const char *was)
{
	for (uint64_t id = from; id <= last_id(); id++) {
		cJSON *o = commit_json(id), *c;
		if (!o)
			continue;
		bool found = false;
		cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "changes"))
		{
			cJSON *f = cJSON_GetObjectItem(c, "from");
			if (strcmp(cJSON_GetObjectItem(c, "op")->valuestring, op) == 0 &&
			    strcmp(cJSON_GetObjectItem(c, "path")->valuestring, path) == 0 &&
			    (!was || (f && strcmp(f->valuestring, was) == 0)))
				found = true;
		}
		cJSON_Delete(o);
		if (found)
			return true;
	}
	return false;
}

/* C2: created, modified, renamed (with from), linked, removed — each path
 * once, files with their checksum; never "attributes". */
Test(clog, c2_kinds_and_checksums)
{
	uint64_t from = last_id() + 1;
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_put(fs, "d/a", "one", 3), 0);
	cr_assert_eq(tt_put(fs, "d/a", "two!", 4), 0);
	cr_assert_eq(tt_rename(fs, "d/a", "d/b", 0), 0);
	cr_assert_eq(tt_unlink(fs, "d/b"), 0);
	cr_assert(has_change(from, "created", "/d", NULL));
	cr_assert(has_change(from, "created", "/d/a", NULL));
	cr_assert(has_change(from, "modified", "/d/a", NULL));
	cr_assert(has_change(from, "renamed", "/d/b", "/d/a"));
	cr_assert(has_change(from, "removed", "/d/b", NULL));
	cr_assert_not(has_change(from, "attributes", "/d/a", NULL));
	cJSON *o = commit_json(from + 1), *c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "changes"), 0);
	cr_assert(cJSON_IsString(cJSON_GetObjectItem(c, "checksum")));
	cr_assert_eq(strncmp(cJSON_GetObjectItem(c, "checksum")->valuestring, "xxh64:", 6), 0);
	cJSON_Delete(o);
}

/* A transaction's record is its net change (records probe R12): an rsync
 * style replace (temp name, rename over) is one "modified"; a name created
 * and removed, or renamed away, inside the transaction is not there; a
 * removed file is "removed" once. */
Test(clog, c2_a_transaction_lists_its_net_change)
{
	cr_assert_eq(tt_put(fs, "c1", "v1", 2), 0);
	cr_assert_eq(tt_put(fs, "gone", "g", 1), 0);
	cr_assert_eq(tt_txn_begin(fs, "dep"), 0);
	cr_assert_eq(tt_put(fs, ".txdir/txn/dep/root/.c1.tmp", "v2-longer", 9), 0);
	cr_assert_eq(tt_rename(fs, ".txdir/txn/dep/root/.c1.tmp", ".txdir/txn/dep/root/c1", 0), 0);
	cr_assert_eq(tt_put(fs, ".txdir/txn/dep/root/phantom", "p", 1), 0);
	cr_assert_eq(tt_unlink(fs, ".txdir/txn/dep/root/phantom"), 0);
	cr_assert_eq(tt_put(fs, ".txdir/txn/dep/root/first", "f", 1), 0);
	cr_assert_eq(tt_rename(fs, ".txdir/txn/dep/root/first", ".txdir/txn/dep/root/final", 0), 0);
	cr_assert_eq(tt_unlink(fs, ".txdir/txn/dep/root/gone"), 0);
	cr_assert_eq(tt_txn_cmd(fs, "dep", "commit"), 0);
	cJSON *o = commit_json(last_id()), *c;
	cr_assert_not_null(o);
	char got[512] = "";
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "changes"))
	{
		size_t at = strlen(got);
		snprintf(got + at, sizeof(got) - at, "%s %s;", cJSON_GetObjectItem(c, "op")->valuestring,
			 cJSON_GetObjectItem(c, "path")->valuestring);
	}
	cr_expect_str_eq(got, "modified /c1;created /final;removed /gone;");
	cr_expect_eq(cJSON_GetObjectItem(o, "changes_total")->valueint, 3);
	cJSON_Delete(o);
}

/* C2: a path of any depth is the whole path (70 directories deep: all
 * 72 components); one longer than a record's path (4 KiB) starts with an
 * explicit "/\u2026" mark, then its leaf end — never a shorter path that
 * looks whole. */
Test(clog, c2_deep_paths_whole_or_marked_cut)
{
	char path[8192] = "deep";
	size_t at = 4;

	cr_assert_eq(tt_mkdir(fs, path), 0);
	for (int i = 0; i < 70; i++) {
		at += (size_t)snprintf(path + at, sizeof(path) - at, "/d");
		cr_assert_eq(tt_mkdir(fs, path), 0);
	}
	snprintf(path + at, sizeof(path) - at, "/leaf");
	uint64_t from = last_id() + 1;
	cr_assert_eq(tt_put(fs, path, "x", 1), 0);
	char want[8192];
	snprintf(want, sizeof(want), "/%s", path);
	cr_expect(has_change(from, "created", want, NULL), "whole path %s", want);

	/* 1,500 levels of "/dd" (4.5 KiB): marked, leaf end kept */
	at = (size_t)snprintf(path, sizeof(path), "long");
	cr_assert_eq(tt_mkdir(fs, path), 0);
	for (int i = 0; i < 1500; i++) {
		at += (size_t)snprintf(path + at, sizeof(path) - at, "/dd");
		cr_assert_eq(tt_mkdir(fs, path), 0);
	}
	snprintf(path + at, sizeof(path) - at, "/end");
	from = last_id() + 1;
	cr_assert_eq(tt_put(fs, path, "x", 1), 0);
	cJSON *o = commit_json(from);
	cr_assert_not_null(o);
	const char *got = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "changes"), 0),
					      "path")->valuestring;
	cr_expect(strncmp(got, "/\u2026/", 5) == 0, "marked: %.40s", got);
	cr_expect(strlen(got) > 4000 && strlen(got) < 4096, "%zu bytes", strlen(got));
	cr_expect(strcmp(got + strlen(got) - 7, "/dd/end") == 0, "leaf end: %s",
		  got + strlen(got) - 12);
	cJSON_Delete(o);
}

/* C2 at scale: a 3,000-file transaction lists every path. */
Test(clog, c2_every_path_of_a_big_commit)
{
	cr_assert_eq(tt_mkdir(fs, ".txdir/txn/big"), 0);
	char p[64];
	for (int k = 0; k < 3000; k++) {
		snprintf(p, sizeof(p), ".txdir/txn/big/root/f%04d", k);
		cr_assert_eq(tt_put(fs, p, p, strlen(p)), 0);
	}
	uint64_t node;
	struct txd_open_out oo;
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/big/ctl", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &oo), 0);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, "commit", 6, 0), 6);
	txd_release(fs, oo.fh);
	cJSON *o = commit_json(last_id());
	cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "changes")), 3000);
	cr_assert_eq(cJSON_GetObjectItem(o, "changes_total")->valueint, 3000);
	cJSON_Delete(o);
}

/* C2: a transaction that renames 2,000 files lists 2,000 renames, each
 * with its old name. */
Test(clog, c2_every_rename_of_a_big_commit)
{
	char p[64], q[64];
	cr_assert_eq(tt_mkdir(fs, "r"), 0);
	for (int k = 0; k < 2000; k++) {
		snprintf(p, sizeof(p), "r/a%04d", k);
		cr_assert_eq(tt_put(fs, p, p, strlen(p)), 0);
	}
	cr_assert_eq(tt_mkdir(fs, ".txdir/txn/mv"), 0);
	for (int k = 0; k < 2000; k++) {
		snprintf(p, sizeof(p), ".txdir/txn/mv/root/r/a%04d", k);
		snprintf(q, sizeof(q), ".txdir/txn/mv/root/r/b%04d", k);
		cr_assert_eq(tt_rename(fs, p, q, 0), 0);
	}
	uint64_t node;
	struct txd_open_out oo;
	cr_assert_eq(tt_resolve(fs, ".txdir/txn/mv/ctl", NULL, NULL, &node), 0);
	cr_assert_eq(txd_open(fs, NULL, node, O_WRONLY, &oo), 0);
	cr_assert_eq(txd_write(fs, NULL, oo.fh, "commit", 6, 0), 6);
	txd_release(fs, oo.fh);
	cJSON *o = commit_json(last_id()), *c;
	int renames = 0;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "changes"))
	{
		const char *path = cJSON_GetObjectItem(c, "path")->valuestring;
		cJSON *from = cJSON_GetObjectItem(c, "from");
		renames += strcmp(cJSON_GetObjectItem(c, "op")->valuestring, "renamed") == 0 && from &&
			   strncmp(path, "/r/b", 4) == 0 && strcmp(from->valuestring + 4, path + 4) == 0;
	}
	cr_assert_eq(renames, 2000, "%d renames", renames);
	cJSON_Delete(o);
}

/* C4 and C1: paths are those at commit time, and survive a reopen
 * (replay of the same commits adds nothing twice). */
Test(clog, c4_paths_at_commit_time_across_reopen)
{
	cr_assert_eq(tt_put(fs, "old", "x", 1), 0);
	uint64_t id = last_id();
	cr_assert_eq(tt_rename(fs, "old", "new", 0), 0);
	cJSON *o = commit_json(id);
	cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "changes"), 0),
					     "path")->valuestring, "/old");
	cJSON_Delete(o);
	uint64_t n = last_id();
	reopen();
	for (uint64_t k = 1; k <= n; k++) {
		cJSON *a = commit_json(k);
		if (a)
			cJSON_Delete(a);
	}
	o = commit_json(id);
	cr_assert_not_null(o);
	cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "changes"), 0),
					     "path")->valuestring, "/old");
	cJSON_Delete(o);
}

/* C5: for a caller who cannot list its directory, a path reads (hidden)
 * and has no checksum. */
Test(clog, c5_hidden_from_who_cannot_list)
{
	cr_assert_eq(tt_mkdir(fs, "priv"), 0);
	uint64_t node;
	cr_assert_eq(tt_resolve(fs, "priv", NULL, NULL, &node), 0);
	struct txd_setattr sa = {.valid = TXD_SET_MODE, .mode = 0700};
	struct txd_attr a;
	cr_assert_eq(txd_setattr(fs, NULL, node, &sa, 0, &a), 0);
	cr_assert_eq(tt_put(fs, "priv/SECRET", "s", 1), 0);
	uint64_t id = last_id();
	struct txd_cred nobody = {.uid = 65534, .gid = 65534, .pid = 0};
	char path[64], *data;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/commits/%llu", (unsigned long long)id);
	cr_assert_eq(tt_get_as(fs, &nobody, path, &data, &len), 0);
	cr_assert_null(strstr(data, "SECRET"), "%s", data);
	cr_assert_null(strstr(data, "checksum"), "%s", data);
	cr_assert(strstr(data, "(hidden)"));
	free(data);
	struct txd_cred root = {.uid = 0, .gid = 0, .pid = 0};
	cr_assert_eq(tt_get_as(fs, &root, path, &data, &len), 0);
	cr_assert(strstr(data, "/priv/SECRET"));
	free(data);
}

/* C3: a torn tail of the file is cut at open; what is whole stays. */
Test(clog, c3_torn_tail_is_cut)
{
	cr_assert_eq(tt_put(fs, "f", "x", 1), 0);
	uint64_t id = last_id();
	txd_fs_close(fs);
	fs = NULL;
	char path[512];
	snprintf(path, sizeof(path), "%s/coordination/commits", store);
	struct clog *cl;
	cr_assert_eq(clog_open(path, &cl), 0);
	cr_assert(clog_has(cl, id, 0));
	clog_close(cl);
	strcat(path, "/log");
	int fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "CLG2garbage-torn", 16), 16);
	off_t whole = lseek(fd, 0, SEEK_END) - 16;
	close(fd);
	path[strlen(path) - 4] = 0;
	cr_assert_eq(clog_open(path, &cl), 0);
	cr_assert(clog_has(cl, id, 0));
	uint64_t newest;
	cr_assert(clog_nth_newest(cl, 0, 0, &newest));
	cr_assert_eq(newest, id);
	clog_close(cl);
	strcat(path, "/log");
	fd = open(path, O_RDONLY);
	cr_assert_eq(lseek(fd, 0, SEEK_END), whole, "the torn tail was cut");
	close(fd);
}

/* C6 / retention: trimmed commits are gone from the index and the file. */
Test(clog, c6_trim_by_time)
{
	for (int k = 0; k < 5; k++)
		cr_assert_eq(tt_put(fs, "t", "x", 1), 0);
	uint64_t id = last_id();
	txd_fs_close(fs);
	fs = NULL;
	char path[512];
	snprintf(path, sizeof(path), "%s/coordination/commits", store);
	struct clog *cl;
	cr_assert_eq(clog_open(path, &cl), 0);
	cr_assert(clog_has(cl, id, 0));
	cr_assert_eq(clog_trim(cl, UINT64_MAX), 0);
	cr_assert_not(clog_has(cl, id, 0));
	clog_close(cl);
	cr_assert_eq(clog_open(path, &cl), 0);
	uint64_t any;
	cr_assert_not(clog_nth_newest(cl, 0, 0, &any));
	clog_close(cl);
}

/* SPEC §7: commits logged past the WAL's end (a lost, unsynced WAL tail)
 * are cut from the index and the file, and the ids can be logged again. */
Test(clog, cut_after_the_wal_end)
{
	for (int k = 0; k < 3; k++)
		cr_assert_eq(tt_put(fs, "t", "x", 1), 0);
	uint64_t id = last_id();
	txd_fs_close(fs);
	fs = NULL;
	char path[512];
	snprintf(path, sizeof(path), "%s/coordination/commits", store);
	struct clog *cl;
	cr_assert_eq(clog_open(path, &cl), 0);
	cr_assert(clog_has(cl, id, 0) && clog_has(cl, id - 1, 0));
	cr_expect_eq(clog_cut_after(cl, id), 0, "nothing past the end: nothing cut");
	cr_expect_eq(clog_cut_after(cl, id - 2), 1);
	cr_expect_not(clog_has(cl, id, 0));
	cr_expect_not(clog_has(cl, id - 1, 0));
	cr_expect(clog_has(cl, id - 2, 0));
	clog_close(cl);
	cr_assert_eq(clog_open(path, &cl), 0);
	uint64_t newest;
	cr_assert(clog_nth_newest(cl, 0, 0, &newest));
	cr_expect_eq(newest, id - 2, "the cut is in the file");
	clog_close(cl);
}

/* Close fs and open it again with faultos installed (it may only be
 * installed while no store is open). */
static void reopen_counted(void)
{
	txd_fs_close(fs);
	fs = NULL;
	faultos_install();
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
}

/* Records are gathered and written in batches (clog.c): a commit costs the
 * WAL's pwrite, not a second one for the commit log (untar: ~40,000
 * pwrites). Before the batching every commit made two. */
Test(clog, records_are_written_in_batches)
{
	reopen_counted();
	char log[600];
	snprintf(log, sizeof(log), "%s/coordination/commits/log", store);
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	uint64_t from = last_id(), w0 = faultos_pwrites_to(log);
	char name[32];
	for (int k = 0; k < 200; k++) {
		snprintf(name, sizeof(name), "d/e%03d", k);
		cr_assert_eq(tt_mkdir(fs, name), 0);
	}
	/* the commit log's own pwrites: what else writes (the WAL, a
	 * background checkpoint when the machine is slow) is not its cost */
	uint64_t commits = last_id() - from, writes = faultos_pwrites_to(log) - w0;
	cr_assert_geq(commits, 200);
	cr_expect_leq(writes, commits / 10, "%llu commit-log pwrites for %llu commits",
		      (unsigned long long)writes, (unsigned long long)commits);
	/* a record still in memory reads as one in the file */
	cJSON *o = commit_json(last_id());
	cr_assert_not_null(o);
	cr_expect_gt(faultos_pwrites_to(log), w0 + writes,
		     "the render wrote the pending records (else the count sees nothing)");
	cr_expect(has_change(last_id(), "created", "/d/e199", NULL));
	cJSON_Delete(o);
}

/* C3 with records in memory: a process crash loses them, replay notes them
 * again; and a checkpoint never passes them (replay starts after it), so
 * the commits before a checkpoint stay in the log even when the process
 * dies right after the checkpoint is durable, before the logs are synced
 * (at the event log's fdatasync: the first after the checkpoint's fsyncs). */
Test(clog, c3_records_pending_at_a_crash_are_noted_again)
{
	reopen_counted();
	uint64_t first = last_id() + 1;
	cr_assert_eq(tt_mkdir(fs, "before"), 0);
	cr_assert_eq(tt_put(fs, "before/f", "one", 3), 0);
	uint64_t before = last_id();
	cr_assert_eq(txd_sync_wait(fs), 0);
	faultos_crash_at(FOS_FDATASYNC, 1);
	txd_checkpoint(fs);
	cr_assert(faultos_crashed());
	uint64_t after = before;
	txd_fs_close(fs); /* a crashed process: nothing more lands */
	fs = NULL;
	faultos_revive();
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	for (uint64_t id = first; id <= after; id++) {
		cJSON *o = commit_json(id);
		cr_expect_not_null(o, "commit %llu (%s the checkpoint) is not in the log",
				   (unsigned long long)id, id <= before ? "before" : "after");
		cJSON_Delete(o);
	}
	cr_expect(has_change(first, "created", "/before/f", NULL));
	/* and pending records after the checkpoint: lost, then noted again */
	cr_assert_eq(tt_mkdir(fs, "after"), 0);
	after = last_id();
	faultos_crash();
	txd_fs_close(fs);
	fs = NULL;
	faultos_revive();
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	cr_expect(has_change(after, "created", "/after", NULL));
	cr_expect(has_change(first, "created", "/before/f", NULL));
}
