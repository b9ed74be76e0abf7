/*
 * edge.c — POSIX edge cases of the data tree, native ext4 vs txdirfs mount
 * (SPEC §3 "POSIX behaviour as on ext4", §6 errors).
 *
 * Run by run.sh twice like posix.c: against a native ext4 temp directory and
 * against a fresh txdirfs mount. Every expectation holds on ext4 (Linux), so
 * a case that passes natively and fails on the mount is a txdir difference.
 * The few cases whose native answer depends on the ext4 feature set (a 64 KiB
 * xattr value) accept the native refusal and require the mount to work.
 */
#include <dirent.h>
#include <linux/magic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#include "tcase.h"

#define KiB 1024L
#define MiB (1024L * 1024L)
#define GiB (1024L * 1024L * 1024L)

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

static struct stat st_of(const char *path)
{
	struct stat st;

	CHECK_OK(lstat(path, &st));
	return st;
}

/* fn(arg) in a child process as nobody (uid and gid 65534): its return
 * value (99 when the child could not switch), or -1 if it did not exit. */
static int as_nobody(int (*fn)(const void *arg), const void *arg)
{
	pid_t pid = CHECK_OK(fork());
	int status;

	if (pid == 0)
		_exit(setgid(65534) || setuid(65534) ? 99 : fn(arg));
	CHECK(waitpid(pid, &status, 0) == pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	if (a.tv_nsec != b.tv_nsec)
		return a.tv_nsec < b.tv_nsec ? -1 : 1;
	return 0;
}

static bool ts_eq(struct timespec a, long sec, long nsec)
{
	return a.tv_sec == sec && a.tv_nsec == nsec;
}

/* Long enough for the kernel's coarse clock to move on. */
static void tick(void)
{
	struct timespec t = {0, 30 * 1000 * 1000};

	nanosleep(&t, NULL);
}

static struct timespec now_real(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return t;
}

/* t within [lo - 1 s, hi + 1 s] */
static bool ts_near(struct timespec t, struct timespec lo, struct timespec hi)
{
	return t.tv_sec >= lo.tv_sec - 1 && t.tv_sec <= hi.tv_sec + 1;
}

/* ---- timestamps ----------------------------------------------------------- */

static void t_utimens_omit_now_ns(const char *d)
{
	char f[4096], l[4096];
	struct timespec set[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
	struct timespec omit_mt[2] = {{0, UTIME_OMIT}, {2000000000, 1}};
	struct timespec both_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
	struct timespec now_at[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
	struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
	struct timespec lo, hi;
	struct stat st, st2;
	int fd;

	PATHF(f, "%s/f", d);
	PATHF(l, "%s/l", d);
	tc_put(f, "x");
	CHECK_OK(utimensat(AT_FDCWD, f, set, 0));
	st = st_of(f);
	CHECK(ts_eq(st.st_atim, 1000000000, 123456789));
	CHECK(ts_eq(st.st_mtim, 1500000000, 987654321));

	/* UTIME_OMIT for atime, an explicit mtime with 1 ns */
	CHECK_OK(utimensat(AT_FDCWD, f, omit_mt, 0));
	st = st_of(f);
	CHECK(ts_eq(st.st_atim, 1000000000, 123456789));
	CHECK(ts_eq(st.st_mtim, 2000000000, 1));

	/* both UTIME_OMIT: nothing changes, not even ctime */
	tick();
	CHECK_OK(utimensat(AT_FDCWD, f, both_omit, 0));
	st2 = st_of(f);
	CHECK(ts_cmp(st2.st_ctim, st.st_ctim) == 0);
	CHECK(ts_eq(st2.st_mtim, 2000000000, 1));

	/* UTIME_NOW for atime only; ctime moves */
	tick();
	lo = now_real();
	CHECK_OK(utimensat(AT_FDCWD, f, now_at, 0));
	hi = now_real();
	st2 = st_of(f);
	if (!ts_near(st2.st_atim, lo, hi))
		TC_FAIL("UTIME_NOW atime %ld.%09ld not in [%ld, %ld]", (long)st2.st_atim.tv_sec,
			st2.st_atim.tv_nsec, (long)lo.tv_sec, (long)hi.tv_sec);
	CHECK(ts_eq(st2.st_mtim, 2000000000, 1));
	CHECK(ts_cmp(st2.st_ctim, st.st_ctim) > 0);

	/* NULL times: both now */
	CHECK_OK(utimensat(AT_FDCWD, f, NULL, 0));
	st2 = st_of(f);
	CHECK(ts_near(st2.st_mtim, lo, now_real()) && ts_near(st2.st_atim, lo, now_real()));

	/* futimens on a descriptor, nanoseconds kept */
	fd = CHECK_OK(open(f, O_RDWR));
	CHECK_OK(futimens(fd, set));
	CHECK_OK(fstat(fd, &st2));
	CHECK(ts_eq(st2.st_mtim, 1500000000, 987654321));
	CHECK_OK(close(fd));
	st2 = st_of(f);
	CHECK(ts_eq(st2.st_atim, 1000000000, 123456789));
	CHECK(ts_eq(st2.st_mtim, 1500000000, 987654321));

	/* before 1970 and after 2038 */
	{
		struct timespec old[2] = {{-1000, 5}, {(time_t)1 << 33, 999999999}};

		CHECK_OK(utimensat(AT_FDCWD, f, old, 0));
		st2 = st_of(f);
		if (!ts_eq(st2.st_atim, -1000, 5) || !ts_eq(st2.st_mtim, (long)1 << 33, 999999999))
			TC_FAIL("atime %ld.%09ld (want -1000.000000005), mtime %ld.%09ld (want %ld.999999999)",
				(long)st2.st_atim.tv_sec, st2.st_atim.tv_nsec, (long)st2.st_mtim.tv_sec,
				st2.st_mtim.tv_nsec, (long)1 << 33);
	}

	/* AT_SYMLINK_NOFOLLOW sets the link's own times */
	CHECK_OK(symlink("f", l));
	CHECK_OK(utimensat(AT_FDCWD, f, set, 0));
	CHECK_OK(utimensat(AT_FDCWD, l, omit_mt, AT_SYMLINK_NOFOLLOW));
	CHECK(ts_eq(st_of(l).st_mtim, 2000000000, 1));
	CHECK(ts_eq(st_of(f).st_mtim, 1500000000, 987654321));

	CHECK_ERR(utimensat(AT_FDCWD, f, bad, 0), EINVAL);
}

/* ctime (and mtime where it must) moves on each change of the inode. */
enum cop { C_CHMOD, C_CHOWN, C_LINK, C_UNLINK, C_RENAME, C_TRUNC, C_WRITE, C_XATTR };

static void ctime_case(const char *d, enum cop op)
{
	char f[4096], g[4096], h[4096];
	struct stat a, b;
	int fd;

	PATHF(f, "%s/f", d);
	PATHF(g, "%s/g", d);
	PATHF(h, "%s/h", d);
	tc_put(f, "0123456789");
	if (op == C_UNLINK)
		CHECK_OK(link(f, g));
	a = st_of(f);
	tick();
	switch (op) {
	case C_CHMOD: CHECK_OK(chmod(f, 0600)); break;
	case C_CHOWN:
		if (geteuid())
			return;
		CHECK_OK(chown(f, 4321, 4321));
		break;
	case C_LINK: CHECK_OK(link(f, h)); break;
	case C_UNLINK: CHECK_OK(unlink(g)); break;
	case C_RENAME:
		CHECK_OK(rename(f, h));
		memcpy(f, h, sizeof(f));
		break;
	case C_TRUNC: CHECK_OK(truncate(f, 4)); break;
	case C_WRITE:
		fd = CHECK_OK(open(f, O_WRONLY));
		CHECK(pwrite(fd, "ab", 2, 3) == 2);
		CHECK_OK(fstat(fd, &b));
		if (ts_cmp(b.st_ctim, a.st_ctim) <= 0 || ts_cmp(b.st_mtim, a.st_mtim) <= 0)
			TC_FAIL("fstat after write, before close: ctime %ld.%09ld mtime %ld.%09ld, before %ld.%09ld",
				(long)b.st_ctim.tv_sec, b.st_ctim.tv_nsec, (long)b.st_mtim.tv_sec,
				b.st_mtim.tv_nsec, (long)a.st_ctim.tv_sec, a.st_ctim.tv_nsec);
		CHECK_OK(close(fd));
		break;
	case C_XATTR: CHECK_OK(setxattr(f, "user.k", "v", 1, 0)); break;
	}
	b = st_of(f);
	if (ts_cmp(b.st_ctim, a.st_ctim) <= 0)
		TC_FAIL("ctime did not move: before %ld.%09ld after %ld.%09ld", (long)a.st_ctim.tv_sec,
			a.st_ctim.tv_nsec, (long)b.st_ctim.tv_sec, b.st_ctim.tv_nsec);
	if (op == C_TRUNC || op == C_WRITE) {
		if (ts_cmp(b.st_mtim, a.st_mtim) <= 0)
			TC_FAIL("mtime did not move");
	} else if (ts_cmp(b.st_mtim, a.st_mtim) != 0) {
		TC_FAIL("mtime moved: before %ld.%09ld after %ld.%09ld", (long)a.st_mtim.tv_sec,
			a.st_mtim.tv_nsec, (long)b.st_mtim.tv_sec, b.st_mtim.tv_nsec);
	}
}

static void t_ctime_chmod(const char *d) { ctime_case(d, C_CHMOD); }
static void t_ctime_chown(const char *d) { ctime_case(d, C_CHOWN); }
static void t_ctime_link(const char *d) { ctime_case(d, C_LINK); }
static void t_ctime_unlink(const char *d) { ctime_case(d, C_UNLINK); }
static void t_ctime_rename(const char *d) { ctime_case(d, C_RENAME); }
static void t_ctime_truncate(const char *d) { ctime_case(d, C_TRUNC); }
static void t_ctime_write(const char *d) { ctime_case(d, C_WRITE); }
static void t_ctime_setxattr(const char *d) { ctime_case(d, C_XATTR); }

/* chown(f, -1, -1) changes nothing but counts as a change: ctime moves for
 * every type (lchown for a symlink), and set-gid of a group-executable
 * non-directory goes as with any chown — for which a caller other than the
 * owner (or root) gets EPERM. Through FUSE it arrives as a ctime-only
 * SETATTR for regular files and an empty one for the rest. */
static int lchown_noop(const void *path)
{
	return lchown(path, (uid_t)-1, (gid_t)-1) ? errno : 0;
}

static void t_chown_noop_types(const char *d)
{
	static const char *const kinds[] = {"file", "dir", "fifo", "symlink"};
	char p[4096];

	for (size_t k = 0; k < 4; k++) {
		struct stat a, b;
		bool is_link = k == 3;

		PATHF(p, "%s/%s", d, kinds[k]);
		if (k == 0)
			tc_put(p, "x");
		else if (k == 1)
			CHECK_OK(mkdir(p, 0755));
		else if (k == 2)
			CHECK_OK(mkfifo(p, 0644));
		else
			CHECK_OK(symlink("file", p));
		if (!is_link)
			CHECK_OK(chmod(p, 02755));
		CHECK_OK(lstat(p, &a));
		tick();
		CHECK_OK(lchown(p, (uid_t)-1, (gid_t)-1));
		CHECK_OK(lstat(p, &b));
		if (ts_cmp(b.st_ctim, a.st_ctim) <= 0)
			TC_FAIL("%s: ctime did not move", kinds[k]);
		if (ts_cmp(b.st_mtim, a.st_mtim) != 0)
			TC_FAIL("%s: mtime moved", kinds[k]);
		if (!is_link && (b.st_mode & 07777) != (k == 1 ? 02755u : 0755u))
			TC_FAIL("%s: mode %o after chown -1 -1", kinds[k], b.st_mode & 07777);
	}
	if (geteuid())
		return;
	/* by someone else (nobody): EPERM where set-id bits would go (a mode
	 * change only the owner may make), allowed where none would */
	for (size_t k = 0; k < 3; k++) {
		int rc, want = k == 1 ? 0 : EPERM;

		PATHF(p, "%s/%s", d, kinds[k]);
		CHECK_OK(chmod(p, k == 1 ? 02755 : 06755));
		rc = as_nobody(lchown_noop, p);
		if (rc != want)
			TC_FAIL("%s: chown -1 -1 by nobody: status %d, want errno %d", kinds[k], rc,
				want);
		if ((st_of(p).st_mode & 07777) != (k == 1 ? 02755u : 06755u))
			TC_FAIL("%s: mode %o after chown -1 -1 by nobody", kinds[k], st_of(p).st_mode & 07777);
	}
}

/* A directory's mtime and ctime move on create, unlink, rename (both parents),
 * mkdir, rmdir, symlink, link; not on a chmod of an entry. */
static void dir_moved(const char *dir, struct stat *before, const char *what)
{
	struct stat now = st_of(dir);

	if (ts_cmp(now.st_mtim, before->st_mtim) <= 0 || ts_cmp(now.st_ctim, before->st_ctim) <= 0)
		TC_FAIL("%s: directory mtime/ctime did not move (mtime %ld.%09ld -> %ld.%09ld)", what,
			(long)before->st_mtim.tv_sec, before->st_mtim.tv_nsec, (long)now.st_mtim.tv_sec,
			now.st_mtim.tv_nsec);
	*before = now;
}

static void t_dir_mtime(const char *d)
{
	char p[4096], q[4096], a[4096], b[4096], c[4096], s[4096];
	struct stat sp, sq, now;

	PATHF(p, "%s/p", d);
	PATHF(q, "%s/q", d);
	PATHF(a, "%s/p/a", d);
	PATHF(b, "%s/p/b", d);
	PATHF(c, "%s/q/c", d);
	PATHF(s, "%s/p/s", d);
	CHECK_OK(mkdir(p, 0755));
	CHECK_OK(mkdir(q, 0755));
	sp = st_of(p);
	sq = st_of(q);
	tick();
	tc_put(a, "a");
	dir_moved(p, &sp, "create");
	tick();
	CHECK_OK(chmod(a, 0600));
	now = st_of(p);
	CHECK(ts_cmp(now.st_mtim, sp.st_mtim) == 0);
	CHECK_OK(rename(a, b));
	dir_moved(p, &sp, "rename within the directory");
	tick();
	CHECK_OK(rename(b, c));
	dir_moved(p, &sp, "rename out (source parent)");
	dir_moved(q, &sq, "rename in (target parent)");
	tick();
	CHECK_OK(unlink(c));
	dir_moved(q, &sq, "unlink");
	tick();
	CHECK_OK(mkdir(s, 0755));
	dir_moved(p, &sp, "mkdir");
	tick();
	CHECK_OK(rmdir(s));
	dir_moved(p, &sp, "rmdir");
	tick();
	CHECK_OK(symlink("x", s));
	dir_moved(p, &sp, "symlink");
	tick();
	CHECK_OK(link(s, a));
	dir_moved(p, &sp, "link");
}

/* ---- directory link counts and renames ---------------------------------- */

static nlink_t nlink_of(const char *path)
{
	return st_of(path).st_nlink;
}

static void t_dir_nlink(const char *d)
{
	char p[4096], q[4096], pa[4096], pb[4096], qa[4096], qe[4096], dd[4096];

	PATHF(p, "%s/p", d);
	PATHF(q, "%s/q", d);
	PATHF(pa, "%s/p/a", d);
	PATHF(pb, "%s/p/b", d);
	PATHF(qa, "%s/q/a", d);
	PATHF(qe, "%s/q/e", d);
	CHECK_OK(mkdir(p, 0755));
	CHECK_OK(mkdir(q, 0755));
	CHECK(nlink_of(d) == 4 && nlink_of(p) == 2);
	CHECK_OK(mkdir(pa, 0755));
	CHECK_OK(mkdir(pb, 0755));
	CHECK(nlink_of(p) == 4);
	tc_put(qa, "file"); /* files do not count */
	CHECK(nlink_of(q) == 2);
	CHECK_OK(unlink(qa));
	CHECK_OK(rename(pa, qa)); /* across parents */
	if (nlink_of(p) != 3 || nlink_of(q) != 3)
		TC_FAIL("after rename p/a -> q/a: nlink p %lu (want 3), q %lu (want 3)",
			(unsigned long)nlink_of(p), (unsigned long)nlink_of(q));
	PATHF(dd, "%s/q/a/..", d);
	CHECK(st_of(dd).st_ino == st_of(q).st_ino); /* ".." follows the move */
	CHECK_OK(mkdir(qe, 0755));
	CHECK(nlink_of(q) == 4);
	CHECK_OK(rename(pb, qe)); /* over an empty dir in the other parent */
	if (nlink_of(p) != 2 || nlink_of(q) != 4)
		TC_FAIL("after rename p/b over q/e: nlink p %lu (want 2), q %lu (want 4)",
			(unsigned long)nlink_of(p), (unsigned long)nlink_of(q));
	CHECK(nlink_of(qe) == 2);
	CHECK_OK(rmdir(qa));
	CHECK(nlink_of(q) == 3);
	CHECK_OK(rename(qe, pa)); /* and back */
	CHECK(nlink_of(q) == 2 && nlink_of(p) == 3);
	CHECK_OK(rmdir(pa));
	CHECK(nlink_of(p) == 2);
	CHECK(nlink_of(d) == 4);
}

static void t_rename_dir_over_empty(const char *d)
{
	char x[4096], y[4096], xf[4096], yf[4096];
	struct stat sx, sy, st;
	int dfd;

	PATHF(x, "%s/x", d);
	PATHF(y, "%s/y", d);
	PATHF(xf, "%s/x/f", d);
	PATHF(yf, "%s/y/f", d);
	CHECK_OK(mkdir(x, 0755));
	CHECK_OK(mkdir(y, 0700));
	tc_put(xf, "inside");
	sx = st_of(x);
	sy = st_of(y);
	dfd = CHECK_OK(open(y, O_RDONLY | O_DIRECTORY));
	CHECK(nlink_of(d) == 4);
	CHECK_OK(rename(x, y));
	CHECK_ERR(access(x, F_OK), ENOENT);
	st = st_of(y);
	CHECK(st.st_ino == sx.st_ino && st.st_ino != sy.st_ino && (st.st_mode & 0777) == 0755);
	CHECK(tc_has(yf, "inside"));
	CHECK(nlink_of(d) == 3);
	CHECK_OK(fstat(dfd, &st)); /* the replaced directory is gone */
	if (st.st_ino != sy.st_ino || st.st_nlink != 0)
		TC_FAIL("fstat of the replaced dir: ino %lu (was %lu), nlink %lu (want 0)",
			(unsigned long)st.st_ino, (unsigned long)sy.st_ino, (unsigned long)st.st_nlink);
	{
		char buf[4096];
		long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));

		/* Linux refuses to list a dead directory */
		if (!(n == -1 && errno == ENOENT) && n != 0)
			TC_FAIL("getdents64 on the replaced dir returned %ld", n);
	}
	CHECK_OK(close(dfd));
}

static void t_rename_onto_own_hardlink(const char *d)
{
	char a[4096], b[4096], s[4096], c[4096];
	struct stat sa;

	PATHF(a, "%s/a", d);
	PATHF(b, "%s/b", d);
	PATHF(s, "%s/sub", d);
	PATHF(c, "%s/sub/c", d);
	tc_put(a, "same");
	CHECK_OK(link(a, b));
	sa = st_of(a);
	CHECK_OK(rename(a, b)); /* same inode: a no-op, both names stay */
	CHECK_OK(access(a, F_OK));
	CHECK_OK(access(b, F_OK));
	CHECK(st_of(a).st_ino == sa.st_ino && st_of(b).st_ino == sa.st_ino);
	CHECK(st_of(a).st_nlink == 2);
	CHECK_OK(mkdir(s, 0755));
	CHECK_OK(link(a, c));
	CHECK_OK(rename(c, b)); /* across directories too */
	CHECK_OK(access(c, F_OK));
	CHECK(st_of(b).st_nlink == 3);
	CHECK_ERR(syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_NOREPLACE), EEXIST);
}

/* ---- special files ----------------------------------------------------------- */

static void t_mknod_fifo_io(const char *d)
{
	char p[4096], buf[16];
	int r, w;

	PATHF(p, "%s/fifo", d);
	CHECK_OK(mknod(p, S_IFIFO | 0640, 0));
	CHECK(S_ISFIFO(st_of(p).st_mode) && (st_of(p).st_mode & 0777) == 0640);
	r = CHECK_OK(open(p, O_RDONLY | O_NONBLOCK));
	w = CHECK_OK(open(p, O_WRONLY));
	CHECK(write(w, "ping", 4) == 4);
	CHECK(read(r, buf, sizeof(buf)) == 4 && !memcmp(buf, "ping", 4));
	CHECK_OK(close(w));
	CHECK_OK(close(r));
	CHECK(st_of(p).st_size == 0);
}

static void t_mknod_devices(const char *d)
{
	char c[4096], b[4096], s[4096];
	struct stat st;

	if (geteuid() != 0)
		TC_SKIP("needs root (mknod of devices)");
	PATHF(c, "%s/null", d);
	PATHF(b, "%s/loop", d);
	PATHF(s, "%s/sock", d);
	CHECK_OK(mknod(c, S_IFCHR | 0666, makedev(1, 3)));
	st = st_of(c);
	CHECK(S_ISCHR(st.st_mode) && (st.st_mode & 0777) == 0644 && st.st_rdev == makedev(1, 3));
	CHECK_OK(mknod(b, S_IFBLK | 0600, makedev(7, 200)));
	st = st_of(b);
	CHECK(S_ISBLK(st.st_mode) && major(st.st_rdev) == 7 && minor(st.st_rdev) == 200);
	CHECK_OK(mknod(s, S_IFSOCK | 0600, 0));
	CHECK(S_ISSOCK(st_of(s).st_mode));
	CHECK_ERR(mknod(c, S_IFCHR | 0666, makedev(1, 3)), EEXIST);
}

/* Opening a device node works only on a mount without nodev (libfuse mounts
 * nodev,nosuid unless given -o dev,suid; the kernel then says EACCES). */
static void t_chrdev_open(const char *d)
{
	struct statvfs sv;
	char c[4096];
	int fd;

	if (geteuid() != 0)
		TC_SKIP("needs root (mknod of a device)");
	PATHF(c, "%s/null", d);
	CHECK_OK(mknod(c, S_IFCHR | 0666, makedev(1, 3)));
	CHECK_OK(statvfs(d, &sv));
	if (sv.f_flag & ST_NODEV) {
		printf("#   mounted nodev: open of a device node must fail EACCES\n");
		CHECK_ERR(open(c, O_WRONLY), EACCES);
		return;
	}
	fd = open(c, O_WRONLY);
	if (fd < 0)
		TC_FAIL("open of a /dev/null node");
	CHECK(write(fd, "gone", 4) == 4);
	CHECK_OK(close(fd));
}

/* ---- errnos ------------------------------------------------------------------ */

static void t_excl_on_symlink(const char *d)
{
	char l[4096], t[4096], l2[4096], t2[4096];

	PATHF(l, "%s/l", d);
	PATHF(t, "%s/target", d);
	PATHF(l2, "%s/l2", d);
	PATHF(t2, "%s/t2", d);
	CHECK_OK(symlink("target", l)); /* dangling */
	CHECK_ERR(open(l, O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	CHECK_ERR(access(t, F_OK), ENOENT); /* nothing created behind it */
	CHECK_ERR(open(l, O_RDONLY | O_NOFOLLOW), ELOOP);
	CHECK_OK(close(CHECK_OK(open(l, O_CREAT | O_WRONLY, 0644)))); /* follows and creates */
	CHECK_OK(access(t, F_OK));
	tc_put(t2, "x");
	CHECK_OK(symlink("t2", l2));
	CHECK_ERR(open(l2, O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	CHECK(tc_has(t2, "x"));
}

static void t_open_directory_on_file(const char *d)
{
	char f[4096], fs[4096];

	PATHF(f, "%s/f", d);
	PATHF(fs, "%s/f/", d);
	tc_put(f, "x");
	CHECK_ERR(open(f, O_RDONLY | O_DIRECTORY), ENOTDIR);
	CHECK_ERR(open(fs, O_RDONLY), ENOTDIR);
	CHECK_ERR(open(d, O_RDWR), EISDIR);
}

static void t_unlink_dir(const char *d)
{
	char s[4096];

	PATHF(s, "%s/sub", d);
	CHECK_OK(mkdir(s, 0755));
	CHECK_ERR(unlink(s), EISDIR);
	CHECK_OK(access(s, F_OK));
}

static void t_rmdir_file(const char *d)
{
	char f[4096];

	PATHF(f, "%s/f", d);
	tc_put(f, "x");
	CHECK_ERR(rmdir(f), ENOTDIR);
	CHECK(tc_has(f, "x"));
}

static void t_rmdir_dot(const char *d)
{
	char s[4096], dot[4096], dotdot[4096];

	PATHF(s, "%s/sub", d);
	PATHF(dot, "%s/sub/.", d);
	PATHF(dotdot, "%s/sub/..", d);
	CHECK_OK(mkdir(s, 0755));
	CHECK_ERR(rmdir(dot), EINVAL);
	CHECK_ERR(rmdir(dotdot), ENOTEMPTY);
	CHECK_OK(chdir(s));
	CHECK_ERR(rmdir("."), EINVAL);
	CHECK_OK(chdir("/"));
	CHECK_OK(access(s, F_OK));
	CHECK_OK(rmdir(s));
}

static void t_readlink_non_symlink(const char *d)
{
	char f[4096], buf[64];

	PATHF(f, "%s/f", d);
	tc_put(f, "x");
	CHECK_ERR(readlink(f, buf, sizeof(buf)), EINVAL);
	CHECK_ERR(readlink(d, buf, sizeof(buf)), EINVAL);
}

static void t_link_to_dir(const char *d)
{
	char s[4096], l[4096];

	PATHF(s, "%s/sub", d);
	PATHF(l, "%s/hard", d);
	CHECK_OK(mkdir(s, 0755));
	CHECK_ERR(link(s, l), EPERM);
	CHECK_ERR(access(l, F_OK), ENOENT);
	CHECK(nlink_of(s) == 2);
}

/* ---- files > 4 GiB ------------------------------------------------------------- */

static void t_file_over_4g(const char *d)
{
	char f[4096], buf[4096], zero[4096] = {0};
	const off_t at = 5 * GiB;
	struct stat st;
	int fd;

	PATHF(f, "%s/big", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK(pwrite(fd, "past 4 GiB", 10, at) == 10);
	CHECK_OK(fstat(fd, &st));
	CHECK(st.st_size == at + 10);
	CHECK(pread(fd, buf, sizeof(buf), at) == 10 && !memcmp(buf, "past 4 GiB", 10));
	CHECK(pread(fd, buf, sizeof(buf), 4 * GiB + 12345) == (ssize_t)sizeof(buf));
	CHECK(!memcmp(buf, zero, sizeof(buf)));
	CHECK(lseek(fd, 0, SEEK_END) == at + 10);
	CHECK(lseek(fd, (off_t)-10, SEEK_END) == at);
	CHECK(read(fd, buf, 100) == 10 && !memcmp(buf, "past 4 GiB", 10));
	CHECK_OK(close(fd));
	st = st_of(f);
	CHECK(st.st_size == at + 10);
	if (st.st_blocks >= 1024)
		TC_FAIL("st_blocks %ld for a 5 GiB sparse file with 10 bytes", (long)st.st_blocks);
	fd = CHECK_OK(open(f, O_RDWR));
	CHECK(pread(fd, buf, 10, at) == 10 && !memcmp(buf, "past 4 GiB", 10));
	CHECK_OK(ftruncate(fd, 6 * GiB)); /* extend past it */
	CHECK(pread(fd, buf, sizeof(buf), at + 4096) == (ssize_t)sizeof(buf));
	CHECK(!memcmp(buf, zero, sizeof(buf)));
	CHECK(pwrite(fd, "E", 1, 6 * GiB - 1) == 1);
	CHECK_OK(ftruncate(fd, at + 5)); /* cut through the data */
	CHECK_OK(close(fd));
	st = st_of(f);
	CHECK(st.st_size == at + 5 && st.st_blocks < 1024);
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(fd, buf, sizeof(buf), at) == 5 && !memcmp(buf, "past ", 5));
	CHECK_OK(close(fd));
}

/* An ftruncate that extends a file allocates nothing: st_blocks stays small,
 * through fstat on the open descriptor and stat after close. */
static void t_sparse_ftruncate_blocks(const char *d)
{
	char f[4096];
	struct stat st;
	int fd;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK_OK(ftruncate(fd, 2 * GiB));
	CHECK_OK(fstat(fd, &st));
	if (st.st_size != 2 * GiB || st.st_blocks >= 1024)
		TC_FAIL("fstat after ftruncate to 2 GiB: size %ld st_blocks %ld", (long)st.st_size,
			(long)st.st_blocks);
	CHECK_OK(close(fd));
	st = st_of(f);
	if (st.st_size != 2 * GiB || st.st_blocks >= 1024)
		TC_FAIL("stat after close: size %ld st_blocks %ld", (long)st.st_size, (long)st.st_blocks);
}

/* ---- descriptors ---------------------------------------------------------------- */

static void t_append_two_fds(const char *d)
{
	char f[4096], want[8192], buf[8192];
	size_t len = 0;
	int a, b, c;

	PATHF(f, "%s/log", d);
	tc_put(f, "head\n");
	len = 5;
	memcpy(want, "head\n", 5);
	a = CHECK_OK(open(f, O_WRONLY | O_APPEND));
	b = CHECK_OK(open(f, O_RDWR | O_APPEND));
	for (int i = 0; i < 20; i++) {
		char line[64];
		int n = snprintf(line, sizeof(line), "%c line %d\n", i % 2 ? 'b' : 'a', i);
		int fd = i % 2 ? b : a;

		CHECK(write(fd, line, (size_t)n) == n);
		memcpy(want + len, line, (size_t)n);
		len += (size_t)n;
		if (lseek(fd, 0, SEEK_CUR) != (off_t)len)
			TC_FAIL("offset after O_APPEND write %d: %ld, file length %zu", i,
				(long)lseek(fd, 0, SEEK_CUR), len);
	}
	/* Linux: pwrite on an O_APPEND descriptor appends, whatever the offset */
	CHECK(pwrite(b, "P", 1, 0) == 1);
	want[len++] = 'P';
	c = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(c, buf, sizeof(buf), 0) == (ssize_t)len);
	if (memcmp(buf, want, len))
		TC_FAIL("interleaved O_APPEND content differs");
	CHECK_OK(close(c));
	CHECK_OK(close(a));
	CHECK_OK(close(b));
	CHECK(st_of(f).st_size == (off_t)len);
}

/* A write through an O_WRONLY descriptor that covers part of a page the page
 * cache does not hold. With the FUSE writeback cache the kernel READs that
 * page on the write-only file handle first; the server must serve it. */
static void t_wronly_partial_page(const char *d)
{
	char f[4096], buf[16];
	int fd;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_WRONLY | O_CREAT | O_TRUNC, 0644));
	memset(buf, 'a', sizeof(buf));
	for (int i = 0; i < 1000; i++)
		CHECK(write(fd, buf, 10) == 10);
	CHECK_OK(close(fd));
	fd = CHECK_OK(open(f, O_RDONLY)); /* drop the clean pages */
	CHECK_OK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
	CHECK_OK(close(fd));
	fd = CHECK_OK(open(f, O_WRONLY));
	if (pwrite(fd, "Z", 1, 5) != 1)
		TC_FAIL("pwrite of 1 byte at 5 on an O_WRONLY descriptor");
	CHECK_OK(close(fd));
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(fd, buf, 8, 0) == 8 && !memcmp(buf, "aaaaaZaa", 8));
	CHECK_OK(close(fd));
	CHECK(st_of(f).st_size == 10000);
}

static void t_ftruncate_rdonly(const char *d)
{
	char f[4096];
	int fd;

	PATHF(f, "%s/f", d);
	tc_put(f, "0123456789");
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK_ERR(ftruncate(fd, 2), EINVAL);
	CHECK_OK(close(fd));
	fd = CHECK_OK(open(f, O_PATH));
	CHECK_ERR(ftruncate(fd, 2), EBADF);
	CHECK_OK(close(fd));
	fd = CHECK_OK(open(d, O_RDONLY | O_DIRECTORY));
	CHECK_ERR(ftruncate(fd, 0), EINVAL);
	CHECK_OK(close(fd));
	CHECK_ERR(truncate(d, 0), EISDIR);
	fd = CHECK_OK(open(f, O_WRONLY));
	CHECK_ERR(ftruncate(fd, -1), EINVAL);
	CHECK_OK(ftruncate(fd, 4));
	CHECK_OK(close(fd));
	CHECK(tc_has(f, "0123"));
}

static void t_lseek_end(const char *d)
{
	char f[4096], buf[256];
	int fd, fd2;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	memset(buf, 'x', sizeof(buf));
	CHECK(write(fd, buf, 200) == 200);
	CHECK(lseek(fd, 0, SEEK_END) == 200);
	CHECK(lseek(fd, -10, SEEK_END) == 190);
	CHECK(lseek(fd, 100, SEEK_END) == 300);
	CHECK(write(fd, "y", 1) == 1);
	CHECK(lseek(fd, 0, SEEK_END) == 301);
	CHECK(pread(fd, buf, 101, 200) == 101 && buf[0] == 0 && buf[99] == 0 && buf[100] == 'y');
	CHECK_ERR(lseek(fd, -302, SEEK_END), EINVAL);
	CHECK(lseek(fd, 0, SEEK_CUR) == 301); /* a failed lseek leaves it */
	fd2 = CHECK_OK(open(f, O_WRONLY | O_APPEND)); /* another writer grows it */
	CHECK(write(fd2, "zz", 2) == 2);
	CHECK(lseek(fd, 0, SEEK_END) == 303);
	CHECK_OK(close(fd2));
	CHECK(lseek(fd, 0, SEEK_END) == 303);
	CHECK_OK(truncate(f, 50)); /* a path truncate shrinks it */
	CHECK(lseek(fd, 0, SEEK_END) == 50);
	CHECK_OK(close(fd));
}

/* telldir/seekdir and raw getdents64 d_off: seeking back to a saved position
 * yields the same next entry. */
#define NDIR 300
struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static void t_telldir_seekdir(const char *d)
{
	static char names[NDIR + 2][256];
	static long pos[NDIR + 3];
	char p[4096];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	for (int i = 0; i < NDIR; i++) {
		PATHF(p, "%s/entry-%04d-%s", d, i, i % 3 ? "x" : "a-longer-name-for-variety");
		CHECK_OK(close(CHECK_OK(open(p, O_CREAT | O_WRONLY, 0644))));
	}
	dir = opendir(d);
	CHECK(dir);
	pos[0] = telldir(dir);
	while ((de = readdir(dir))) {
		CHECK(n < NDIR + 2);
		snprintf(names[n], sizeof(names[0]), "%s", de->d_name);
		pos[++n] = telldir(dir);
	}
	CHECK(n == NDIR + 2);
	for (int k = 0; k < n; k += 37) {
		seekdir(dir, pos[k]);
		de = readdir(dir);
		if (!de || strcmp(de->d_name, names[k]))
			TC_FAIL("seekdir to the position of entry %d (%s) gave %s", k, names[k],
				de ? de->d_name : "(end)");
		CHECK(telldir(dir) == pos[k + 1]);
	}
	seekdir(dir, pos[n]);
	CHECK(readdir(dir) == NULL);
	rewinddir(dir);
	de = readdir(dir);
	CHECK(de && !strcmp(de->d_name, names[0]));
	closedir(dir);

	/* raw getdents64 d_off + lseek */
	{
		char buf[2048];
		int fd = CHECK_OK(open(d, O_RDONLY | O_DIRECTORY));
		long r = CHECK_OK(syscall(SYS_getdents64, fd, buf, sizeof(buf)));
		struct linux_dirent64 *e = (struct linux_dirent64 *)buf, *e2;
		int64_t off2;
		char name2[256], *second;

		CHECK(r > 0);
		/* seek to the d_off of the first entry: the next read starts at the second */
		CHECK(e->d_reclen < r);
		e2 = (struct linux_dirent64 *)(buf + e->d_reclen);
		snprintf(name2, sizeof(name2), "%s", e2->d_name);
		off2 = e2->d_off;
		CHECK(lseek(fd, e->d_off, SEEK_SET) == e->d_off);
		r = CHECK_OK(syscall(SYS_getdents64, fd, buf, sizeof(buf)));
		CHECK(r > 0);
		second = ((struct linux_dirent64 *)buf)->d_name;
		if (strcmp(second, name2))
			TC_FAIL("after lseek to d_off of the first entry: %s, want %s", second, name2);
		CHECK(((struct linux_dirent64 *)buf)->d_off == off2);
		CHECK_OK(close(fd));
	}
}

/* ---- set-gid ---------------------------------------------------------------------- */

static void t_setgid_root(const char *d)
{
	char f[4096], p[4096], pf[4096], ps[4096], pl[4096], g[4096];
	struct stat st;

	if (geteuid() != 0)
		TC_SKIP("needs root");
	PATHF(f, "%s/f", d);
	PATHF(p, "%s/p", d);
	PATHF(pf, "%s/p/f", d);
	PATHF(ps, "%s/p/s", d);
	PATHF(pl, "%s/p/l", d);
	PATHF(g, "%s/g", d);
	tc_put(f, "x");
	/* root keeps g+s on a file of a group it is not in */
	CHECK_OK(chown(f, 0, 1234));
	CHECK_OK(chmod(f, 02755));
	CHECK((st_of(f).st_mode & 07777) == 02755);
	/* chown by root clears set-gid (group-executable file) */
	CHECK_OK(chown(f, 0, 4321));
	if ((st_of(f).st_mode & 07777) != 0755)
		TC_FAIL("mode after chown of a 02755 file: %o, want 755", st_of(f).st_mode & 07777);
	/* a set-gid directory hands its group down, and g+s to subdirectories */
	CHECK_OK(mkdir(p, 0755));
	CHECK_OK(chown(p, 0, 1234));
	CHECK_OK(chmod(p, 02775));
	tc_put(pf, "x");
	CHECK(st_of(pf).st_gid == 1234 && !(st_of(pf).st_mode & S_ISGID));
	CHECK_OK(mkdir(ps, 0755));
	st = st_of(ps);
	if (st.st_gid != 1234 || !(st.st_mode & S_ISGID))
		TC_FAIL("subdir of a g+s dir: gid %u mode %o", st.st_gid, st.st_mode & 07777);
	CHECK_OK(symlink("f", pl));
	CHECK(st_of(pl).st_gid == 1234);
	/* mkdir drops S_ISGID from the mode it is given (no g+s parent) */
	CHECK_OK(mkdir(g, 02755));
	CHECK((st_of(g).st_mode & 07777) == 0755);
}

/* A write by a non-root user clears set-uid and set-gid. */
static int write_w_at_0(const void *f)
{
	int fd = open(f, O_RDWR);

	if (fd < 0)
		return 3;
	if (pwrite(fd, "W", 1, 0) != 1)
		return 4;
	return close(fd) ? 5 : 0;
}

static void t_write_clears_suid(const char *d)
{
	char f[4096];
	int status;

	if (geteuid() != 0)
		TC_SKIP("needs root");
	PATHF(f, "%s/f", d);
	tc_put(f, "0123456789");
	CHECK_OK(chmod(f, 06777));
	CHECK((st_of(f).st_mode & 07777) == 06777);
	status = as_nobody(write_w_at_0, f);
	if (status)
		TC_FAIL("child as nobody: status %d", status);
	if ((st_of(f).st_mode & 07777) != 0777)
		TC_FAIL("mode after a write by nobody: %o, want 777", st_of(f).st_mode & 07777);
	CHECK(tc_has(f, "W123456789"));
}

/* The rest of the set-uid rules (the kernel leaves them to the server with
 * FUSE_HANDLE_KILLPRIV_V2): as nobody on its own file, a truncate, an
 * O_TRUNC open and a second write after the bits came back each drop them;
 * set-gid without group execute stays (a mandatory-locking mark, not a
 * privilege); so does fallocate (FALLOCATE has no kill flag: the server
 * decides); root's writes keep them (CAP_FSETID); any chown drops them. */
static int mode_is(const char *f, mode_t want)
{
	struct stat st;

	return stat(f, &st) == 0 && (st.st_mode & 07777) == want;
}

static int suid_as_nobody(const void *f)
{
	int fd;

	if (chmod(f, 06777) || truncate(f, 3) || !mode_is(f, 0777))
		return 3;
	if (chmod(f, 06777) || (fd = open(f, O_WRONLY | O_TRUNC)) < 0 || close(fd) ||
	    !mode_is(f, 0777))
		return 4;
	if ((fd = open(f, O_WRONLY)) < 0)
		return 5;
	if (fchmod(fd, 06777) || fallocate(fd, 0, 0, 4096) || !mode_is(f, 0777) ||
	    ftruncate(fd, 0))
		return 10;
	for (int round = 0; round < 2; round++) {
		if (fchmod(fd, 06777) || pwrite(fd, "ab", 2, round) != 2 || !mode_is(f, 0777))
			return 6 + round;
	}
	if (fchmod(fd, 02767) || pwrite(fd, "c", 1, 0) != 1 || !mode_is(f, 02767))
		return 8;
	return close(fd) ? 9 : 0;
}

static void t_suid_rules(const char *d)
{
	char f[4096];
	int status, fd;

	if (geteuid() != 0)
		TC_SKIP("needs root");
	PATHF(f, "%s/f", d);
	tc_put(f, "0123456789");
	CHECK_OK(chown(f, 65534, 65534));
	status = as_nobody(suid_as_nobody, f);
	if (status)
		TC_FAIL("as nobody: step %d failed", status);
	CHECK(tc_has(f, "cab"));
	/* root */
	CHECK_OK(chmod(f, 06755));
	fd = CHECK_OK(open(f, O_WRONLY | O_APPEND));
	CHECK(write(fd, "R", 1) == 1);
	CHECK_OK(close(fd));
	CHECK(mode_is(f, 06755));
	CHECK_OK(truncate(f, 2));
	CHECK(mode_is(f, 06755));
	CHECK_OK(chown(f, 0, 0));
	if (!mode_is(f, 0755))
		TC_FAIL("after chown: %o, want 755", st_of(f).st_mode & 07777);
	CHECK_OK(chmod(f, 06755));
	CHECK_OK(chown(f, (uid_t)-1, (gid_t)-1)); /* changes nothing but the bits */
	if (!mode_is(f, 0755))
		TC_FAIL("after chown -1 -1: %o, want 755", st_of(f).st_mode & 07777);
	CHECK_OK(chmod(f, 02745));
	CHECK_OK(chown(f, 1, 1));
	CHECK(mode_is(f, 02745));
}

/* The set-uid matrix: 12 operations x 5 modes, as root and as nobody, on
 * files owned by nobody; the expected mode is Linux's (measured on ext4):
 * writes, truncations (truncate, ftruncate, O_TRUNC), fallocate and appends
 * drop S_ISUID and group-executable S_ISGID unless the caller has CAP_FSETID
 * (root); chown drops them for everyone, chown(-1, -1) included; chmod sets
 * them; utimensat, setxattr and a shared-mmap store leave them. */
enum { SM_WRITE, SM_TRUNCATE, SM_FTRUNCATE, SM_OTRUNC, SM_FALLOCATE, SM_CHOWN_NONE,
       SM_CHOWN_SELF, SM_CHMOD, SM_UTIMES, SM_SETXATTR, SM_MMAP, SM_APPEND, SM_PWRITE_FAR,
       SM_NOPS };
static const mode_t sm_modes[] = {06755, 02755, 02745, 04777, 06777};

static int sm_op(int k, const char *f)
{
	int fd = -1, r = 0;
	char *p;

	switch (k) {
	case SM_WRITE:
	case SM_PWRITE_FAR:
		fd = open(f, O_WRONLY);
		r = pwrite(fd, "ab", 2, k == SM_PWRITE_FAR ? 100000 : 0) != 2;
		break;
	case SM_APPEND:
		fd = open(f, O_WRONLY | O_APPEND);
		r = write(fd, "ab", 2) != 2;
		break;
	case SM_TRUNCATE: r = truncate(f, 1); break;
	case SM_FTRUNCATE:
		fd = open(f, O_WRONLY);
		r = ftruncate(fd, 2);
		break;
	case SM_OTRUNC:
		fd = open(f, O_WRONLY | O_TRUNC);
		r = fd < 0;
		break;
	case SM_FALLOCATE:
		fd = open(f, O_WRONLY);
		r = fallocate(fd, 0, 0, 8192);
		break;
	case SM_CHOWN_NONE: r = chown(f, (uid_t)-1, (gid_t)-1); break;
	case SM_CHOWN_SELF: r = chown(f, geteuid(), (gid_t)-1); break;
	case SM_CHMOD: r = chmod(f, 06644); break;
	case SM_UTIMES: r = utimensat(AT_FDCWD, f, NULL, 0); break;
	case SM_SETXATTR: r = setxattr(f, "user.k", "v", 1, 0); break;
	case SM_MMAP:
		fd = open(f, O_RDWR);
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return -1;
		p[0] = 'm';
		r = msync(p, 4096, MS_SYNC) || munmap(p, 4096);
		break;
	default: r = -1;
	}
	if (fd >= 0)
		close(fd);
	return r;
}

static mode_t sm_want(int k, mode_t m, bool root)
{
	mode_t killed = m & ~(mode_t)(S_ISUID | ((m & S_IXGRP) ? S_ISGID : 0));

	switch (k) {
	case SM_CHOWN_NONE:
	case SM_CHOWN_SELF: return killed;
	case SM_CHMOD: return 06644;
	case SM_UTIMES:
	case SM_SETXATTR:
	case SM_MMAP: return m;
	default: return root ? m : killed;
	}
}

/* Runs the matrix in PREFIX-K-M files; 0, or 100 + the first failing cell. */
static int sm_run(const char *prefix, bool root)
{
	char f[4096];
	struct stat st;

	for (int k = 0; k < SM_NOPS; k++)
		for (int m = 0; m < 5; m++) {
			snprintf(f, sizeof(f), "%s-%d-%d", prefix, k, m);
			if (chmod(f, sm_modes[m]) || sm_op(k, f) || stat(f, &st) ||
			    (st.st_mode & 07777) != sm_want(k, sm_modes[m], root)) {
				fprintf(stderr, "#   %s op %d mode %o -> %o\n", root ? "root" : "nobody", k,
					sm_modes[m], st.st_mode & 07777);
				return 100 + k * 5 + m;
			}
		}
	return 0;
}

static int sm_run_nobody(const void *prefix)
{
	return sm_run(prefix, false);
}

static void t_suid_matrix(const char *d)
{
	char prefix[4096], f[4096];
	int status;

	if (geteuid() != 0)
		TC_SKIP("needs root");
	CHECK_OK(chmod(d, 0777));
	for (int who = 0; who < 2; who++) {
		PATHF(prefix, "%s/sm%d", d, who);
		for (int k = 0; k < SM_NOPS; k++)
			for (int m = 0; m < 5; m++) {
				PATHF(f, "%s-%d-%d", prefix, k, m);
				tc_put(f, "hello world\n");
				CHECK_OK(chown(f, 65534, 65534));
			}
	}
	PATHF(prefix, "%s/sm0", d);
	if (sm_run(prefix, true))
		TC_FAIL("as root: the matrix differs from Linux's (see above)");
	PATHF(prefix, "%s/sm1", d);
	status = as_nobody(sm_run_nobody, prefix);
	if (status)
		TC_FAIL("as nobody: the matrix differs from Linux's (status %d)", status);
}

/* ---- names ---------------------------------------------------------------------- */

static void t_name_255_256(const char *d)
{
	char n255[256], n256[257], p255[4096], p256[4096], q255[4096], sub[4096];
	struct dirent *de;
	DIR *dir;
	bool seen = false;

	memset(n255, 'a', 255);
	n255[255] = 0;
	memset(n256, 'b', 256);
	n256[256] = 0;
	PATHF(p255, "%s/%s", d, n255);
	PATHF(p256, "%s/%s", d, n256);
	PATHF(sub, "%s/sub", d);
	CHECK_OK(mkdir(sub, 0755));
	tc_put(p255, "long");
	CHECK(tc_has(p255, "long"));
	dir = opendir(d);
	CHECK(dir);
	while ((de = readdir(dir)))
		if (!strcmp(de->d_name, n255))
			seen = true;
	closedir(dir);
	CHECK(seen);
	CHECK_ERR(open(p256, O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
	CHECK_ERR(rename(p255, p256), ENAMETOOLONG);
	CHECK_ERR(link(p255, p256), ENAMETOOLONG);
	CHECK_ERR(symlink("x", p256), ENAMETOOLONG);
	CHECK_ERR(mknod(p256, S_IFIFO | 0644, 0), ENAMETOOLONG);
	CHECK_ERR(mkdir(p256, 0755), ENAMETOOLONG);
	PATHF(q255, "%s/sub/%s", d, n255);
	CHECK_OK(rename(p255, q255));
	CHECK_OK(link(q255, p255));
	CHECK_OK(unlink(q255));
	{
		char target[300];

		PATHF(target, "../%s", n255);
		CHECK_OK(symlink(target, q255));
		CHECK(tc_has(q255, "long"));
	}
	/* 255 bytes of UTF-8 (85 three-byte characters) */
	{
		char u[256], pu[4096];

		for (int i = 0; i < 85; i++)
			memcpy(u + 3 * i, "\xe2\x82\xac", 3);
		u[255] = 0;
		PATHF(pu, "%s/sub/%s", d, u);
		CHECK_OK(mkdir(pu, 0755));
		CHECK(S_ISDIR(st_of(pu).st_mode));
	}
	/* xattr names: 255 bytes in all is the limit */
	{
		char xn[300];

		memcpy(xn, "user.", 5);
		memset(xn + 5, 'x', 250);
		xn[255] = 0;
		CHECK_OK(setxattr(p255, xn, "v", 1, 0));
		CHECK(getxattr(p255, xn, NULL, 0) == 1);
		xn[255] = 'x';
		xn[256] = 0;
		CHECK_ERR(setxattr(p255, xn, "v", 1, 0), ERANGE);
	}
}

/* ---- xattrs, statfs ---------------------------------------------------------------- */

static void t_xattr_64k(const char *d)
{
	static char v[65537], back[65537];
	char f[4096];
	ssize_t n;
	int r;

	PATHF(f, "%s/f", d);
	tc_put(f, "x");
	for (size_t i = 0; i < sizeof(v); i++)
		v[i] = (char)(i * 7 + (i >> 9));
	r = setxattr(f, "user.big", v, 65536, 0);
	if (r && !tc_on_mount && (errno == ENOSPC || errno == E2BIG)) {
		printf("#   native ext4 refuses a 64 KiB value (%s; no ea_inode): checked on the mount only\n",
		       strerror(errno));
		return;
	}
	if (r)
		TC_FAIL("setxattr of a 65536-byte value");
	n = getxattr(f, "user.big", NULL, 0);
	CHECK(n == 65536);
	n = CHECK_OK(getxattr(f, "user.big", back, sizeof(back)));
	CHECK(n == 65536 && !memcmp(back, v, 65536));
	CHECK_ERR(getxattr(f, "user.big", back, 65535), ERANGE);
	CHECK_ERR(setxattr(f, "user.bigger", v, 65537, 0), E2BIG);
	CHECK_OK(setxattr(f, "user.big", "small", 5, XATTR_REPLACE));
	CHECK(getxattr(f, "user.big", back, sizeof(back)) == 5);
}

static void t_statfs_fields(const char *d)
{
	struct statfs sf, sf2;
	struct statvfs sv;
	char f[4096];
	int fd;

	CHECK_OK(statfs(d, &sf));
	CHECK_OK(statvfs(d, &sv));
	printf("#   f_type %lx f_bsize %ld f_frsize %ld f_blocks %lu f_bfree %lu f_bavail %lu f_files %lu "
	       "f_ffree %lu f_namelen %ld\n",
	       (unsigned long)sf.f_type, (long)sf.f_bsize, (long)sf.f_frsize, (unsigned long)sf.f_blocks,
	       (unsigned long)sf.f_bfree, (unsigned long)sf.f_bavail, (unsigned long)sf.f_files,
	       (unsigned long)sf.f_ffree, (long)sf.f_namelen);
	CHECK(sf.f_bsize >= 512 && (sf.f_bsize & (sf.f_bsize - 1)) == 0);
	CHECK(sf.f_frsize > 0);
	CHECK(sf.f_namelen == 255 && sv.f_namemax == 255);
	CHECK(sf.f_blocks > 0 && sf.f_bfree <= sf.f_blocks && sf.f_bavail <= sf.f_bfree);
	CHECK(sf.f_ffree <= sf.f_files);
	if (tc_on_mount)
		CHECK(sf.f_type == FUSE_SUPER_MAGIC);
	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK_OK(fstatfs(fd, &sf2));
	CHECK(sf2.f_bsize == sf.f_bsize && sf2.f_blocks == sf.f_blocks && sf2.f_namelen == 255);
	CHECK_OK(close(fd));
	/* 64 MiB written and synced show up as used blocks */
	CHECK_OK(tc_write_pattern(f, 64 * MiB, 3));
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK_OK(fsync(fd));
	CHECK_OK(close(fd));
	CHECK_OK(statfs(d, &sf2));
	if ((sf.f_bfree - sf2.f_bfree) * (unsigned long)sf.f_frsize < 32 * MiB)
		TC_FAIL("f_bfree fell by %ld blocks of %ld after 64 MiB written and fsynced",
			(long)(sf.f_bfree - sf2.f_bfree), (long)sf.f_frsize);
}

static const struct tcase cases[] = {
	{"utimens_omit_now_ns", t_utimens_omit_now_ns, 0},
	{"ctime_chmod", t_ctime_chmod, 0},
	{"ctime_chown", t_ctime_chown, 0},
	{"ctime_link", t_ctime_link, 0},
	{"ctime_unlink", t_ctime_unlink, 0},
	{"ctime_rename", t_ctime_rename, 0},
	{"ctime_truncate", t_ctime_truncate, 0},
	{"ctime_write", t_ctime_write, 0},
	{"ctime_setxattr", t_ctime_setxattr, 0},
	{"chown_noop_types", t_chown_noop_types, 0},
	{"dir_mtime", t_dir_mtime, 0},
	{"dir_nlink", t_dir_nlink, 0},
	{"rename_dir_over_empty", t_rename_dir_over_empty, 0},
	{"rename_onto_own_hardlink", t_rename_onto_own_hardlink, 0},
	{"mknod_fifo_io", t_mknod_fifo_io, 0},
	{"mknod_devices", t_mknod_devices, 0},
	{"chrdev_open", t_chrdev_open, 0},
	{"excl_on_symlink", t_excl_on_symlink, 0},
	{"open_directory_on_file", t_open_directory_on_file, 0},
	{"unlink_dir", t_unlink_dir, 0},
	{"rmdir_file", t_rmdir_file, 0},
	{"rmdir_dot", t_rmdir_dot, 0},
	{"readlink_non_symlink", t_readlink_non_symlink, 0},
	{"link_to_dir", t_link_to_dir, 0},
	{"file_over_4g", t_file_over_4g, 0},
	{"sparse_ftruncate_blocks", t_sparse_ftruncate_blocks, 0},
	{"append_two_fds", t_append_two_fds, 0},
	{"wronly_partial_page", t_wronly_partial_page, 0},
	{"ftruncate_rdonly", t_ftruncate_rdonly, 0},
	{"lseek_end", t_lseek_end, 0},
	{"telldir_seekdir", t_telldir_seekdir, 0},
	{"setgid_root", t_setgid_root, 0},
	{"write_clears_suid", t_write_clears_suid, 0},
	{"suid_rules", t_suid_rules, 0},
	{"suid_matrix", t_suid_matrix, 0},
	{"name_255_256", t_name_255_256, 0},
	{"xattr_64k", t_xattr_64k, 0},
	{"statfs_fields", t_statfs_fields, 0},
};

int main(int argc, char **argv)
{
	return tc_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), true);
}
