/*
 * txdir.c — what txdir adds to POSIX (SPEC §3, §5), checked on a mount.
 * Tests flagged TC_MOUNT_ONLY are skipped against the native directory; the
 * others state ext4 behaviour that txdir must keep (sharing while writing).
 */
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <time.h>

#include "tcase.h"

#define SNAP_LEN (300 * 1024)

static const char *const meta_xattrs[] = {
	"user.txdir.version",
	"user.txdir.commit",
	"user.txdir.checksum",
};

/* user.txdir.* readable by name, absent from listxattr, read-only: setting
 * or removing one fails with EPERM (the engine's choice, as for an immutable
 * attribute; EACCES would suggest mode bits could grant it). */
static void t_meta_xattrs(const char *d)
{
	char f[4096], buf[512], list[4096];
	ssize_t n;

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, 5000, 1));
	CHECK_OK(setxattr(f, "user.mine", "1", 1, 0));
	for (size_t i = 0; i < 3; i++) {
		const char *name = meta_xattrs[i];

		n = CHECK_OK(getxattr(f, name, buf, sizeof(buf)));
		CHECK(n > 0);
		CHECK(getxattr(f, name, NULL, 0) == n);
		CHECK_ERR(setxattr(f, name, "x", 1, 0), EPERM);
		CHECK_ERR(setxattr(f, name, "x", 1, XATTR_REPLACE), EPERM);
		CHECK_ERR(removexattr(f, name), EPERM);
	}
	n = CHECK_OK(listxattr(f, list, sizeof(list)));
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1)
		CHECK(strncmp(list + i, "user.txdir.", 11) != 0);
	CHECK(n == (ssize_t)sizeof("user.mine"));
}

/* A new content commit changes version and checksum. */
static void t_meta_xattrs_change(const char *d)
{
	char f[4096], v1[256] = "", v2[256] = "", c1[256] = "", c2[256] = "";

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, 5000, 1));
	CHECK_OK(getxattr(f, "user.txdir.version", v1, sizeof(v1) - 1));
	CHECK_OK(getxattr(f, "user.txdir.checksum", c1, sizeof(c1) - 1));
	CHECK_OK(tc_write_pattern(f, 5000, 2));
	CHECK_OK(getxattr(f, "user.txdir.version", v2, sizeof(v2) - 1));
	CHECK_OK(getxattr(f, "user.txdir.checksum", c2, sizeof(c2) - 1));
	CHECK(strcmp(v1, v2) != 0);
	CHECK(strcmp(c1, c2) != 0);
}

/* SPEC §3: a handle opened while nobody wrote the file reads the version it
 * opened — read, mmap and fstat — for its whole life. */
static void t_snapshot_reader(const char *d)
{
	char f[4096], buf[4096];
	struct stat st, st2;
	unsigned char *m;
	int a, w, fresh;

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, SNAP_LEN, 11));
	a = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(a, buf, 100, 0) == 100); /* warm A's page cache a little */

	w = CHECK_OK(open(f, O_WRONLY | O_TRUNC));
	memset(buf, 'N', sizeof(buf));
	for (int i = 0; i < 3; i++)
		CHECK(write(w, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	CHECK_OK(close(w));

	CHECK_OK(fstat(a, &st));
	CHECK(st.st_size == SNAP_LEN);
	CHECK(tc_fd_has_pattern(a, SNAP_LEN, 11));
	m = mmap(NULL, SNAP_LEN, PROT_READ, MAP_SHARED, a, 0);
	CHECK(m != MAP_FAILED);
	{
		static unsigned char want[SNAP_LEN];

		tc_fill(want, SNAP_LEN, 0, 11);
		CHECK(!memcmp(m, want, SNAP_LEN));
	}
	CHECK_OK(munmap(m, SNAP_LEN));

	fresh = CHECK_OK(open(f, O_RDONLY));
	CHECK_OK(fstat(fresh, &st2));
	CHECK(st2.st_size == 3 * 4096);
	CHECK(st2.st_ino == st.st_ino); /* same file, new version */
	CHECK(pread(fresh, buf, sizeof(buf), 4096) == 4096 && buf[0] == 'N' && buf[4095] == 'N');
	CHECK_OK(close(fresh));
	CHECK(tc_fd_has_pattern(a, SNAP_LEN, 11)); /* still, after the fresh open */
	CHECK_OK(close(a));
}

/* truncate(2) by path (no open, one SETATTR) of a file a snapshot reader
 * holds: the reader keeps its size and bytes, the path sees the new size,
 * shrinking and growing. */
static void t_truncate_by_path_keeps_readers(const char *d)
{
	char f[4096], buf[64];
	struct stat st;
	int a, b;

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, 4000, 5));
	a = CHECK_OK(open(f, O_RDONLY));
	CHECK_OK(truncate(f, 2));
	CHECK_OK(fstat(a, &st));
	CHECK(st.st_size == 4000);
	CHECK(tc_fd_has_pattern(a, 4000, 5));
	CHECK_OK(stat(f, &st));
	CHECK(st.st_size == 2);
	b = CHECK_OK(open(f, O_RDONLY));
	CHECK_OK(truncate(f, 9000));
	CHECK_OK(fstat(b, &st));
	CHECK(st.st_size == 2);
	CHECK(pread(b, buf, sizeof(buf), 0) == 2);
	CHECK_OK(stat(f, &st));
	CHECK(st.st_size == 9000);
	CHECK(tc_fd_has_pattern(a, 4000, 5)); /* still */
	CHECK_OK(close(a));
	CHECK_OK(close(b));
}

/* Ext4 sharing: a handle opened while a writer has the file open shares the
 * working copy and sees uncommitted writes. */
static void t_shared_while_writing(const char *d)
{
	char f[4096], buf[16];
	int w, r;

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, 100, 3));
	w = CHECK_OK(open(f, O_RDWR));
	CHECK(pwrite(w, "hello", 5, 0) == 5);
	r = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(r, buf, 5, 0) == 5 && !memcmp(buf, "hello", 5));
	CHECK(pwrite(w, "HELLO", 5, 0) == 5);
	CHECK(pread(r, buf, 5, 0) == 5 && !memcmp(buf, "HELLO", 5));
	CHECK_OK(close(w));
	CHECK_OK(close(r));
}

/* `cmd > file`: after close the new content is committed, and a reader that
 * opened before the write still sees the old one (rename-over pattern too). */
static void t_rename_over_with_reader(const char *d)
{
	char f[4096], tmp[4096];
	int a;

	PATHF(f, "%s/f", d);
	PATHF(tmp, "%s/f.tmp", d);
	CHECK_OK(tc_write_pattern(f, 10000, 4));
	a = CHECK_OK(open(f, O_RDONLY));
	CHECK_OK(tc_write_pattern(tmp, 20000, 5));
	CHECK_OK(rename(tmp, f));
	CHECK(tc_fd_has_pattern(a, 10000, 4));
	CHECK_OK(close(a));
	a = CHECK_OK(open(f, O_RDONLY));
	CHECK(tc_fd_has_pattern(a, 20000, 5));
	CHECK_OK(close(a));
}

/* Like ZFS's .zfs: reachable by name, not listed in the root. */
static void t_ctl_hidden(const char *d)
{
	char p[4096];
	struct dirent *de;
	struct stat st;
	DIR *dir;
	bool saw_test_dir = false;

	(void)d;
	dir = opendir(tc_root);
	CHECK(dir);
	while ((de = readdir(dir))) {
		CHECK(strcmp(de->d_name, ".txdir") != 0);
		saw_test_dir |= !strcmp(de->d_name, "ctl_hidden");
	}
	closedir(dir);
	CHECK(saw_test_dir);
	PATHF(p, "%s/.txdir", tc_root);
	CHECK_OK(stat(p, &st));
	CHECK(S_ISDIR(st.st_mode));
}

/* SPEC §3 (server-side changes publish a new node id): after a transaction
 * commit replaces a file the kernel has cached, stat and read show the new
 * size and every new byte — never new bytes cut to the old size — while a
 * descriptor opened before keeps its version. */
static void t_server_side_change(const char *d)
{
	char f[4096], view[4096], ctl[4096], txn[4096], buf[64];
	struct stat st;
	static unsigned char want[30000], got[30000];
	int a, fd;

	PATHF(f, "%s/f", d);
	PATHF(txn, "%s/.txdir/txn/ssc%d", tc_root, (int)getpid());
	PATHF(view, "%s/root%s/f", txn, d + strlen(tc_root));
	PATHF(ctl, "%s/ctl", txn);
	fd = CHECK_OK(open(f, O_WRONLY | O_CREAT | O_TRUNC, 0644));
	CHECK(write(fd, "short", 5) == 5);
	CHECK_OK(close(fd));
	a = CHECK_OK(open(f, O_RDONLY));
	CHECK(read(a, buf, sizeof(buf)) == 5); /* cached: size 5, its pages */
	CHECK_OK(stat(f, &st));
	CHECK(st.st_size == 5);

	CHECK_OK(mkdir(txn, 0755));
	CHECK_OK(tc_write_pattern(view, sizeof(want), 7));
	fd = CHECK_OK(open(ctl, O_WRONLY));
	CHECK(write(fd, "commit\n", 7) == 7);
	CHECK_OK(close(fd));

	CHECK_OK(stat(f, &st));
	CHECK(st.st_size == (off_t)sizeof(want));
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK(read(fd, got, sizeof(got)) == (ssize_t)sizeof(got));
	CHECK_OK(close(fd));
	tc_fill(want, sizeof(want), 0, 7);
	CHECK(!memcmp(got, want, sizeof(want)));
	CHECK_OK(fstat(a, &st));
	CHECK(st.st_size == 5);
	CHECK(pread(a, buf, sizeof(buf), 0) == 5 && !memcmp(buf, "short", 5));
	CHECK_OK(close(a));
	CHECK_OK(rmdir(txn));
}

/* Whether pid sits in write(2) (its /proc syscall line starts with "1 "). */
static bool in_write(pid_t pid)
{
	char path[64], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return !strncmp(buf, "1 ", 2);
}

/* A commit waits for the transaction's writers to close (SPEC §4), and while
 * it waits the server keeps answering: the writer's close arrives, and the
 * commit succeeds with its bytes. A server whose only reader of /dev/fuse
 * sat in the waiting commit would let the wait run out (EBUSY). */
static void t_commit_waits_for_close(const char *d)
{
	char txn[4096], ctl[4096], f[4096], main_f[4096], st[256] = "";
	pid_t pid;
	int fd, status, tries;

	(void)d;
	PATHF(txn, "%s/.txdir/txn/cw%d", tc_root, (int)getpid());
	PATHF(ctl, "%s/ctl", txn);
	PATHF(f, "%s/root/cw%d", txn, (int)getpid());
	PATHF(main_f, "%s/cw%d", tc_root, (int)getpid());
	CHECK_OK(mkdir(txn, 0755));
	fd = CHECK_OK(open(f, O_WRONLY | O_CREAT, 0644));
	CHECK(write(fd, "late", 4) == 4);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int c = close(fd) ? -1 : open(ctl, O_WRONLY);

		_exit(c >= 0 && write(c, "commit", 6) == 6 && !close(c) ? 0 : 1);
	}
	/* the committer is blocked in its write once /proc says so */
	for (tries = 0; tries < 200000 && !in_write(pid); tries++)
		sched_yield();
	CHECK(in_write(pid));
	CHECK_OK(close(fd));
	CHECK(waitpid(pid, &status, 0) == pid);
	PATHF(f, "%s/status", txn);
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK(read(fd, st, sizeof(st) - 1) > 0);
	close(fd);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		TC_FAIL("commit failed: status %s", st);
	CHECK(!strncmp(st, "committed", 9));
	CHECK(tc_has(main_f, "late"));
	CHECK_OK(unlink(main_f));
}

/* A sample of .txdir/stats, e.g. "txdir_commits_total" or
 * "txdir_fuse_requests_total{op=\"setattr\"}" (0 when absent: counters
 * with no events yet are not listed). */
static double stat_value(const char *sample)
{
	char p[4096], line[512];
	size_t len = strlen(sample);
	double v = 0;
	FILE *f;

	PATHF(p, "%s/.txdir/stats", tc_root);
	f = fopen(p, "r");
	CHECK(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, sample, len) && line[len] == ' ') {
			CHECK(sscanf(line + len, "%lf", &v) == 1);
			break;
		}
	fclose(f);
	return v;
}

/* SPEC §3 (one commit per metadata operation, content at close): creating,
 * writing and closing a small file is two commits, and SETATTRs only by the
 * kernel's own rule. With the writeback cache the kernel keeps a regular
 * file's mtime and ctime itself: write(2) sets them to current_time() — the
 * coarse clock (CLOCK_REALTIME_COARSE, one tick: 4 ms at HZ=250) — when they
 * differ from it, marks the inode dirty, and close(2) flushes them with one
 * SETATTR (mtime, ctime, fh) before the FLUSH. The engine stamps a created
 * file from the same coarse clock, so a write within the create's tick
 * finds the times current and sends nothing (with a fine clock: one SETATTR
 * per file, a round trip per file of `tar x`). A write in a later tick — a
 * tick boundary, or on a loaded machine any preemption between the
 * server's stamp and the write: then nearly every file — moves the times,
 * which fstat shows (the kernel's cached mtime and ctime; a GETATTR reply
 * does not replace them under the writeback cache), and sends exactly one
 * SETATTR, whose times the engine folds into the close's content commit.
 * So, exactly: SETATTRs == files whose times the write moved, commits ==
 * 2 per file; and a created file's times are a reading of the coarse clock
 * (equal to it when the create fell within one tick). */
static void t_small_file_requests(const char *d)
{
	enum { N = 100 };
	const char *setattrs = "txdir_fuse_requests_total{op=\"setattr\"}";
	double commits, sets;
	int moved = 0, fine = 0;
	char f[4096];

	commits = stat_value("txdir_commits_total");
	sets = stat_value(setattrs);
	for (int i = 0; i < N; i++) {
		struct timespec t0, t1;
		struct stat a, b;
		int fd;

		PATHF(f, "%s/f%d", d, i);
		clock_gettime(CLOCK_REALTIME_COARSE, &t0);
		fd = CHECK_OK(open(f, O_WRONLY | O_CREAT | O_EXCL, 0644));
		clock_gettime(CLOCK_REALTIME_COARSE, &t1);
		CHECK_OK(fstat(fd, &a));
		fine += t0.tv_sec == t1.tv_sec && t0.tv_nsec == t1.tv_nsec &&
			(a.st_mtim.tv_sec != t0.tv_sec || a.st_mtim.tv_nsec != t0.tv_nsec);
		CHECK(write(fd, "some bytes\n", 11) == 11);
		CHECK_OK(fstat(fd, &b));
		moved += a.st_mtim.tv_sec != b.st_mtim.tv_sec ||
			 a.st_mtim.tv_nsec != b.st_mtim.tv_nsec ||
			 a.st_ctim.tv_sec != b.st_ctim.tv_sec || a.st_ctim.tv_nsec != b.st_ctim.tv_nsec;
		CHECK_OK(close(fd));
	}
	commits = stat_value("txdir_commits_total") - commits;
	sets = stat_value(setattrs) - sets;
	if (commits != 2 * N || sets != moved || fine)
		TC_FAIL("%d create+write+close: %.0f commits (want %d), %.0f SETATTRs (want %d: "
			"the writes that moved the file's times), %d created with times not "
			"from the coarse clock (want 0)",
			N, commits, 2 * N, sets, moved, fine);
}

static const struct tcase cases[] = {
	{"server_side_change", t_server_side_change, TC_MOUNT_ONLY},
	{"meta_xattrs", t_meta_xattrs, TC_MOUNT_ONLY},
	{"meta_xattrs_change", t_meta_xattrs_change, TC_MOUNT_ONLY},
	{"snapshot_reader", t_snapshot_reader, TC_MOUNT_ONLY},
	{"truncate_by_path_keeps_readers", t_truncate_by_path_keeps_readers, TC_MOUNT_ONLY},
	{"shared_while_writing", t_shared_while_writing, 0},
	{"rename_over_with_reader", t_rename_over_with_reader, 0},
	{"ctl_hidden", t_ctl_hidden, TC_MOUNT_ONLY},
	{"commit_waits_for_close", t_commit_waits_for_close, TC_MOUNT_ONLY},
	{"small_file_requests", t_small_file_requests, TC_MOUNT_ONLY},
};

int main(int argc, char **argv)
{
	return tc_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), true);
}
