/*
 * posix.c — POSIX behaviour of the data tree, as on ext4 (SPEC §3).
 *
 * Run by run.sh twice: against a native ext4 temp directory and against a
 * fresh txdirfs mount; every expectation below holds on ext4, so a test that
 * passes natively and fails on the mount is a txdir bug.
 */
#include <dirent.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>

#include "tcase.h"

#define MiB (1024 * 1024)

static int rename2(const char *a, const char *b, unsigned int flags)
{
	return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags);
}

static off_t size_of(const char *path)
{
	struct stat st;

	CHECK_OK(stat(path, &st));
	return st.st_size;
}

/* ---- open flags, offsets ---------------------------------------------------- */

static void t_open_flags(const char *d)
{
	char f[4096], sub[4096];
	struct stat st;
	int fd;

	PATHF(f, "%s/f", d);
	PATHF(sub, "%s/sub", d);
	CHECK_ERR(open(f, O_RDONLY), ENOENT);
	fd = CHECK_OK(open(f, O_WRONLY | O_CREAT | O_EXCL, 0640));
	CHECK_OK(fstat(fd, &st));
	CHECK((st.st_mode & 07777) == 0640 && S_ISREG(st.st_mode) && st.st_size == 0);
	CHECK(write(fd, "hello world", 11) == 11);
	CHECK_OK(close(fd));
	CHECK_ERR(open(f, O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	CHECK(tc_has(f, "hello world"));

	fd = CHECK_OK(open(f, O_WRONLY | O_APPEND));
	CHECK_OK(lseek(fd, 0, SEEK_SET));
	CHECK(write(fd, "!", 1) == 1);
	CHECK_OK(close(fd));
	CHECK(tc_has(f, "hello world!"));

	fd = CHECK_OK(open(f, O_WRONLY | O_TRUNC));
	CHECK(size_of(f) == 0);
	CHECK(write(fd, "new", 3) == 3);
	CHECK_OK(close(fd));
	CHECK(tc_has(f, "new"));

	/* umask applies to O_CREAT */
	umask(077);
	PATHF(f, "%s/g", d);
	CHECK_OK(close(CHECK_OK(open(f, O_CREAT | O_WRONLY, 0666))));
	CHECK_OK(stat(f, &st));
	CHECK((st.st_mode & 0777) == 0600);

	CHECK_OK(mkdir(sub, 0755));
	CHECK_ERR(open(sub, O_WRONLY), EISDIR);
	CHECK_ERR(open(f, O_RDONLY | O_DIRECTORY), ENOTDIR);
	PATHF(f, "%s/g/x", d);
	CHECK_ERR(open(f, O_RDONLY | O_CREAT, 0644), ENOTDIR);
}

static void t_offsets(const char *d)
{
	char f[4096], buf[64];
	int fd;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK(write(fd, "0123456789", 10) == 10);
	CHECK(lseek(fd, 0, SEEK_CUR) == 10);
	CHECK(pwrite(fd, "AB", 2, 100) == 2);
	CHECK(lseek(fd, 0, SEEK_CUR) == 10); /* pwrite leaves the offset */
	CHECK(lseek(fd, 0, SEEK_END) == 102);
	CHECK(pread(fd, buf, sizeof(buf), 3) == (ssize_t)sizeof(buf));
	CHECK(!memcmp(buf, "3456789\0\0\0", 10));
	CHECK(pread(fd, buf, 10, 98) == 4 && !memcmp(buf, "\0\0AB", 4));
	CHECK(pread(fd, buf, 10, 102) == 0);
	CHECK(lseek(fd, 5, SEEK_SET) == 5);
	CHECK(read(fd, buf, 3) == 3 && !memcmp(buf, "567", 3));
	CHECK(write(fd, "xy", 2) == 2);
	CHECK(pread(fd, buf, 10, 0) == 10 && !memcmp(buf, "01234567xy", 10));
	CHECK_ERR(lseek(fd, -1, SEEK_SET), EINVAL);
	CHECK_OK(close(fd));
	CHECK(size_of(f) == 102);
}

/* ---- big, sparse, truncate, fallocate -------------------------------------- */

static void t_large_file(const char *d)
{
	char f[4096];
	struct stat st;
	int fd;

	PATHF(f, "%s/big", d);
	CHECK_OK(tc_write_pattern(f, 64 * MiB, 7));
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK_OK(fstat(fd, &st));
	CHECK(st.st_size == 64 * MiB);
	CHECK(st.st_blocks >= 64 * MiB / 512);
	CHECK(tc_fd_has_pattern(fd, 64 * MiB, 7));
	CHECK_OK(close(fd));
}

static void t_sparse_file(const char *d)
{
	char f[4096], buf[4096], zero[4096] = {0};
	struct stat st;
	off_t big = (off_t)1 << 32;
	int fd;

	PATHF(f, "%s/sparse", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK(pwrite(fd, "x", 1, big) == 1);
	CHECK_OK(close(fd));
	CHECK_OK(stat(f, &st));
	CHECK(st.st_size == big + 1);
	CHECK(st.st_blocks < 1024); /* < 512 KiB allocated for 4 GiB */
	fd = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(fd, buf, sizeof(buf), big / 2) == (ssize_t)sizeof(buf));
	CHECK(!memcmp(buf, zero, sizeof(buf)));
	CHECK(pread(fd, buf, 2, big) == 1 && buf[0] == 'x');
	CHECK_OK(close(fd));
}

static void t_truncate(const char *d)
{
	char f[4096], buf[8192];
	int fd;

	PATHF(f, "%s/f", d);
	tc_put(f, "abcdefghijklmnopqrstuvwxyz");
	CHECK_OK(truncate(f, 10));
	CHECK(size_of(f) == 10 && tc_has(f, "abcdefghij"));
	CHECK_OK(truncate(f, 5000));
	CHECK(size_of(f) == 5000);
	fd = CHECK_OK(open(f, O_RDWR));
	CHECK(pread(fd, buf, sizeof(buf), 0) == 5000);
	CHECK(!memcmp(buf, "abcdefghij", 10));
	for (int i = 10; i < 5000; i++)
		CHECK(buf[i] == 0);
	CHECK_OK(ftruncate(fd, 3));
	CHECK(pread(fd, buf, sizeof(buf), 0) == 3);
	CHECK(write(fd, "Z", 1) == 1); /* offset 0 */
	CHECK_OK(ftruncate(fd, 0));
	CHECK(pwrite(fd, "end", 3, 0) == 3);
	CHECK_OK(close(fd));
	CHECK(tc_has(f, "end"));
	CHECK_ERR(truncate(f, -1), EINVAL);
}

static void t_fallocate(const char *d)
{
	char f[4096], buf[4096], zero[4096] = {0};
	struct stat st;
	int fd;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK_OK(fallocate(fd, 0, 0, MiB));
	CHECK_OK(fstat(fd, &st));
	CHECK(st.st_size == MiB);
	CHECK(pread(fd, buf, sizeof(buf), 4096) == (ssize_t)sizeof(buf));
	CHECK(!memcmp(buf, zero, sizeof(buf)));
	CHECK_OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, MiB, MiB));
	CHECK_OK(fstat(fd, &st));
	CHECK(st.st_size == MiB);
	memset(buf, 'q', sizeof(buf));
	CHECK(pwrite(fd, buf, sizeof(buf), 8192) == (ssize_t)sizeof(buf));
	CHECK_OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 4096));
	CHECK(pread(fd, buf, sizeof(buf), 8192) == (ssize_t)sizeof(buf));
	CHECK(!memcmp(buf, zero, sizeof(buf)));
	CHECK_OK(close(fd));
	CHECK(size_of(f) == MiB);
}

/* ---- rename ------------------------------------------------------------------ */

static void t_rename_file(const char *d)
{
	char a[4096], b[4096], c[4096];
	struct stat sa, sb;
	int fd;

	PATHF(a, "%s/a", d);
	PATHF(b, "%s/b", d);
	PATHF(c, "%s/c", d);
	tc_put(a, "AAA");
	tc_put(b, "BBB");
	CHECK_OK(stat(a, &sa));
	fd = CHECK_OK(open(b, O_RDONLY)); /* the replaced file stays readable */
	CHECK_OK(rename(a, b));
	CHECK_ERR(access(a, F_OK), ENOENT);
	CHECK(tc_has(b, "AAA"));
	CHECK_OK(stat(b, &sb));
	CHECK(sa.st_ino == sb.st_ino);
	{
		char buf[8];

		CHECK(pread(fd, buf, sizeof(buf), 0) == 3 && !memcmp(buf, "BBB", 3));
	}
	CHECK_OK(close(fd));
	CHECK_OK(rename(b, c));
	CHECK_OK(rename(c, c)); /* same name: no-op */
	CHECK(tc_has(c, "AAA"));
	CHECK_ERR(rename(a, c), ENOENT);
}

static void t_rename_dirs(const char *d)
{
	char x[4096], y[4096], f[4096], inner[4096];

	PATHF(x, "%s/x", d);
	PATHF(y, "%s/y", d);
	PATHF(f, "%s/f", d);
	PATHF(inner, "%s/x/inner", d);
	CHECK_OK(mkdir(x, 0755));
	CHECK_OK(mkdir(y, 0755));
	tc_put(f, "file");
	CHECK_OK(rename(x, y)); /* over an empty dir */
	CHECK_ERR(access(x, F_OK), ENOENT);
	CHECK_OK(mkdir(x, 0755));
	CHECK_OK(mkdir(inner, 0755));
	CHECK_ERR(rename(y, x), ENOTEMPTY); /* may also be EEXIST per POSIX; ext4 says ENOTEMPTY */
	CHECK_ERR(rename(f, y), EISDIR);
	CHECK_ERR(rename(y, f), ENOTDIR);
	CHECK_ERR(rename(x, inner), EINVAL); /* into its own subtree */
	PATHF(f, "%s/y/moved", d);
	CHECK_OK(rename(x, f)); /* move a non-empty dir */
	PATHF(inner, "%s/y/moved/inner", d);
	CHECK_OK(access(inner, F_OK));
}

static void t_rename_noreplace_exchange(const char *d)
{
	char a[4096], b[4096], m[4096], s[4096];
	struct stat sa, sb, sa2, sb2;

	PATHF(a, "%s/a", d);
	PATHF(b, "%s/b", d);
	PATHF(m, "%s/missing", d);
	PATHF(s, "%s/sub", d);
	tc_put(a, "AAA");
	tc_put(b, "BBB");
	CHECK_ERR(rename2(a, b, RENAME_NOREPLACE), EEXIST);
	CHECK(tc_has(a, "AAA") && tc_has(b, "BBB"));
	CHECK_OK(stat(a, &sa));
	CHECK_OK(stat(b, &sb));
	CHECK_OK(rename2(a, b, RENAME_EXCHANGE));
	CHECK(tc_has(a, "BBB") && tc_has(b, "AAA"));
	CHECK_OK(stat(a, &sa2));
	CHECK_OK(stat(b, &sb2));
	CHECK(sa2.st_ino == sb.st_ino && sb2.st_ino == sa.st_ino);
	CHECK_ERR(rename2(a, m, RENAME_EXCHANGE), ENOENT);
	CHECK_OK(rename2(a, m, RENAME_NOREPLACE));
	CHECK(tc_has(m, "BBB"));
	CHECK_OK(mkdir(s, 0755));
	CHECK_OK(rename2(s, m, RENAME_EXCHANGE)); /* file <-> dir */
	CHECK_OK(stat(m, &sa));
	CHECK(S_ISDIR(sa.st_mode));
	CHECK(tc_has(s, "BBB"));
	CHECK_ERR(rename2(a, b, RENAME_NOREPLACE | RENAME_EXCHANGE), EINVAL);
}

/* ---- links -------------------------------------------------------------------- */

static void t_hard_links(const char *d)
{
	char a[4096], b[4096], sub[4096];
	struct stat sa, sb, sd;

	PATHF(a, "%s/a", d);
	PATHF(b, "%s/b", d);
	PATHF(sub, "%s/sub", d);
	tc_put(a, "shared");
	CHECK_OK(link(a, b));
	CHECK_OK(stat(a, &sa));
	CHECK_OK(stat(b, &sb));
	CHECK(sa.st_ino == sb.st_ino && sa.st_nlink == 2 && sb.st_nlink == 2);
	tc_put(b, "changed");
	CHECK(tc_has(a, "changed"));
	CHECK_OK(unlink(a));
	CHECK_OK(stat(b, &sb));
	CHECK(sb.st_nlink == 1);
	CHECK_ERR(link(b, b), EEXIST);
	CHECK_OK(mkdir(sub, 0755));
	CHECK_ERR(link(sub, a), EPERM);
	CHECK_OK(stat(sub, &sd));
	CHECK(sd.st_nlink == 2);
	CHECK_OK(stat(d, &sd));
	CHECK(sd.st_nlink == 3); /* ".", its name in the parent, sub/.. */
	CHECK_OK(rmdir(sub));
	CHECK_OK(stat(d, &sd));
	CHECK(sd.st_nlink == 2);
}

static void t_symlinks(const char *d)
{
	char l[4096], t[4096], buf[4096], dl[4096];
	struct stat st;
	ssize_t n;

	PATHF(l, "%s/l", d);
	PATHF(t, "%s/target", d);
	PATHF(dl, "%s/dangling", d);
	CHECK_OK(symlink("target", l));
	CHECK_OK(lstat(l, &st));
	CHECK(S_ISLNK(st.st_mode) && st.st_size == 6);
	n = CHECK_OK(readlink(l, buf, sizeof(buf)));
	CHECK(n == 6 && !memcmp(buf, "target", 6));
	CHECK_ERR(stat(l, &st), ENOENT);
	tc_put(t, "via link");
	CHECK(tc_has(l, "via link"));
	CHECK_OK(symlink("/nonexistent/../x/y/z", dl));
	n = CHECK_OK(readlink(dl, buf, sizeof(buf)));
	CHECK(n == 21 && !memcmp(buf, "/nonexistent/../x/y/z", 21));
	CHECK_ERR(symlink("x", l), EEXIST);
	CHECK_ERR(readlink(t, buf, sizeof(buf)), EINVAL);
	CHECK_OK(unlink(l));
	CHECK(tc_has(t, "via link"));
}

/* ---- attributes ------------------------------------------------------------------ */

static void t_chmod_chown_utimens(const char *d)
{
	char f[4096];
	struct stat st, st2;
	struct timespec ts[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
	struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};

	PATHF(f, "%s/f", d);
	tc_put(f, "x");
	CHECK_OK(stat(f, &st));
	CHECK_OK(chmod(f, 04751));
	CHECK_OK(stat(f, &st2));
	CHECK((st2.st_mode & 07777) == 04751);
	CHECK(st2.st_ctim.tv_sec >= st.st_ctim.tv_sec);
	if (geteuid() == 0) {
		CHECK_OK(chown(f, 1234, 5678));
		CHECK_OK(stat(f, &st2));
		CHECK(st2.st_uid == 1234 && st2.st_gid == 5678);
		CHECK((st2.st_mode & 07777) == 0751); /* chown clears set-uid */
		CHECK_OK(lchown(f, (uid_t)-1, 42));
		CHECK_OK(stat(f, &st2));
		CHECK(st2.st_uid == 1234 && st2.st_gid == 42);
	}
	CHECK_OK(utimensat(AT_FDCWD, f, ts, 0));
	CHECK_OK(stat(f, &st2));
	CHECK(st2.st_atim.tv_sec == ts[0].tv_sec && st2.st_atim.tv_nsec == ts[0].tv_nsec);
	CHECK(st2.st_mtim.tv_sec == ts[1].tv_sec && st2.st_mtim.tv_nsec == ts[1].tv_nsec);
	CHECK_OK(utimensat(AT_FDCWD, f, now, 0));
	CHECK_OK(stat(f, &st));
	CHECK(st.st_atim.tv_sec > ts[0].tv_sec + 100000000);
	CHECK(st.st_mtim.tv_sec == ts[1].tv_sec && st.st_mtim.tv_nsec == ts[1].tv_nsec);
}

static void t_mtime_on_write(const char *d)
{
	char f[4096];
	struct stat st, st2;
	struct timespec old[2] = {{1000, 0}, {1000, 0}};
	int fd;

	PATHF(f, "%s/f", d);
	tc_put(f, "x");
	CHECK_OK(utimensat(AT_FDCWD, f, old, 0));
	CHECK_OK(stat(f, &st));
	fd = CHECK_OK(open(f, O_WRONLY | O_APPEND));
	CHECK(write(fd, "y", 1) == 1);
	CHECK_OK(close(fd));
	CHECK_OK(stat(f, &st2));
	CHECK(st2.st_mtim.tv_sec > 1000 && st2.st_size == 2);
	CHECK_OK(stat(d, &st));
	PATHF(f, "%s/g", d);
	CHECK_OK(utimensat(AT_FDCWD, d, old, 0));
	tc_put(f, "z");
	CHECK_OK(stat(d, &st2));
	CHECK(st2.st_mtim.tv_sec > 1000); /* directory mtime moves on create */
}

/* ---- xattrs ------------------------------------------------------------------------- */

static bool list_has(const char *list, ssize_t len, const char *name)
{
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(list + i) + 1)
		if (!strcmp(list + i, name))
			return true;
	return false;
}

static void t_user_xattrs(const char *d)
{
	char f[4096], buf[256], list[4096];
	ssize_t n;

	PATHF(f, "%s/f", d);
	tc_put(f, "x");
	CHECK_OK(setxattr(f, "user.a", "value-a", 7, 0));
	CHECK_OK(setxattr(f, "user.empty", "", 0, 0));
	CHECK(getxattr(f, "user.a", NULL, 0) == 7);
	n = CHECK_OK(getxattr(f, "user.a", buf, sizeof(buf)));
	CHECK(n == 7 && !memcmp(buf, "value-a", 7));
	CHECK(getxattr(f, "user.empty", buf, sizeof(buf)) == 0);
	CHECK_ERR(getxattr(f, "user.a", buf, 3), ERANGE);
	CHECK_ERR(getxattr(f, "user.none", buf, sizeof(buf)), ENODATA);
	CHECK_ERR(setxattr(f, "user.a", "v", 1, XATTR_CREATE), EEXIST);
	CHECK_ERR(setxattr(f, "user.none", "v", 1, XATTR_REPLACE), ENODATA);
	CHECK_OK(setxattr(f, "user.a", "v2", 2, XATTR_REPLACE));
	CHECK(getxattr(f, "user.a", buf, sizeof(buf)) == 2 && !memcmp(buf, "v2", 2));
	n = CHECK_OK(listxattr(f, NULL, 0));
	CHECK(n >= (ssize_t)(sizeof("user.a") + sizeof("user.empty")));
	n = CHECK_OK(listxattr(f, list, sizeof(list)));
	CHECK(list_has(list, n, "user.a") && list_has(list, n, "user.empty"));
	CHECK_OK(removexattr(f, "user.a"));
	CHECK_ERR(getxattr(f, "user.a", buf, sizeof(buf)), ENODATA);
	CHECK_ERR(removexattr(f, "user.a"), ENODATA);
	n = CHECK_OK(listxattr(f, list, sizeof(list)));
	CHECK(!list_has(list, n, "user.a") && list_has(list, n, "user.empty"));
	CHECK_OK(setxattr(d, "user.dir", "d", 1, 0)); /* directories too */
	CHECK(getxattr(d, "user.dir", buf, sizeof(buf)) == 1);
}

/* ---- readdir ------------------------------------------------------------------------- */

#define NFILES 10000

static void create_many(const char *d, const char *fmt, int from, int to)
{
	char f[4096];

	for (int i = from; i < to; i++) {
		snprintf(f, sizeof(f), fmt, d, i);
		CHECK_OK(close(CHECK_OK(open(f, O_CREAT | O_WRONLY, 0644))));
	}
}

/* Every entry that exists for the whole listing is seen exactly once, while
 * another process keeps creating files in the directory. */
static void t_readdir_concurrent(const char *d)
{
	static unsigned char seen[NFILES];
	struct dirent *de;
	DIR *dir;
	pid_t pid;
	int dots = 0, status;

	create_many(d, "%s/f%05d", 0, NFILES);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		char f[4096];

		for (int i = 0; i < 1000000; i++) {
			snprintf(f, sizeof(f), "%s/new%07d", d, i);
			int fd = open(f, O_CREAT | O_WRONLY, 0644);

			if (fd < 0)
				_exit(1);
			close(fd);
		}
		_exit(0);
	}
	dir = opendir(d);
	CHECK(dir);
	while ((errno = 0, de = readdir(dir))) {
		int i;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) {
			dots++;
			continue;
		}
		if (sscanf(de->d_name, "f%05d", &i) == 1 && i >= 0 && i < NFILES) {
			if (seen[i]++)
				TC_FAIL("entry %s seen twice", de->d_name);
		}
	}
	CHECK(errno == 0);
	closedir(dir);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	CHECK(dots == 2);
	for (int i = 0; i < NFILES; i++)
		if (!seen[i])
			TC_FAIL("entry f%05d not seen", i);
}

static void t_readdir_types(const char *d)
{
	char p[4096];
	struct dirent *de;
	DIR *dir;
	int found = 0;

	PATHF(p, "%s/file", d);
	tc_put(p, "x");
	PATHF(p, "%s/dir", d);
	CHECK_OK(mkdir(p, 0755));
	PATHF(p, "%s/link", d);
	CHECK_OK(symlink("file", p));
	dir = opendir(d);
	CHECK(dir);
	while ((de = readdir(dir))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		PATHF(p, "%s/%s", d, de->d_name);
		CHECK_OK(lstat(p, &st));
		CHECK(de->d_ino == st.st_ino);
		if (!strcmp(de->d_name, "file"))
			found += de->d_type == DT_REG;
		else if (!strcmp(de->d_name, "dir"))
			found += de->d_type == DT_DIR;
		else if (!strcmp(de->d_name, "link"))
			found += de->d_type == DT_LNK;
	}
	closedir(dir);
	CHECK(found == 3);
}

/* ---- mmap ----------------------------------------------------------------------------- */

static void t_mmap_shared(const char *d)
{
	char f[4096], buf[8192];
	int fd, fd2;
	char *m;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK_OK(ftruncate(fd, 8192));
	m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	memcpy(m + 4000, "through mmap", 12);
	CHECK_OK(msync(m, 8192, MS_SYNC));
	fd2 = CHECK_OK(open(f, O_RDONLY));
	CHECK(pread(fd2, buf, sizeof(buf), 0) == 8192);
	CHECK(!memcmp(buf + 4000, "through mmap", 12));
	CHECK(pwrite(fd, "by write", 8, 100) == 8);
	CHECK(!memcmp(m + 100, "by write", 8)); /* and the other way */
	CHECK_OK(munmap(m, 8192));
	CHECK_OK(close(fd));
	CHECK(pread(fd2, buf, 12, 4000) == 12 && !memcmp(buf, "through mmap", 12));
	CHECK_OK(close(fd2));
}

static void t_mmap_private(const char *d)
{
	char f[4096], buf[16];
	int fd;
	char *m;

	PATHF(f, "%s/f", d);
	tc_put(f, "original content");
	fd = CHECK_OK(open(f, O_RDWR));
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED);
	CHECK(!memcmp(m, "original content", 16));
	memcpy(m, "PRIVATE", 7);
	CHECK(pread(fd, buf, 16, 0) == 16 && !memcmp(buf, "original content", 16));
	CHECK_OK(munmap(m, 4096));
	CHECK_OK(close(fd));
	CHECK(tc_has(f, "original content"));
}

/* ---- misc ------------------------------------------------------------------------------ */

static void t_statfs(const char *d)
{
	struct statfs sf;
	struct statvfs sv;

	CHECK_OK(statfs(d, &sf));
	CHECK(sf.f_bsize > 0 && sf.f_blocks > 0 && sf.f_bfree <= sf.f_blocks);
	CHECK(sf.f_namelen == 255);
	CHECK_OK(statvfs(d, &sv));
	CHECK(sv.f_bavail <= sv.f_bfree);
}

static void t_unlink_open_file(const char *d)
{
	char f[4096], buf[16];
	struct stat st;
	int fd;

	PATHF(f, "%s/f", d);
	tc_put(f, "still here");
	fd = CHECK_OK(open(f, O_RDWR));
	CHECK_OK(unlink(f));
	CHECK_ERR(access(f, F_OK), ENOENT);
	CHECK(pread(fd, buf, sizeof(buf), 0) == 10 && !memcmp(buf, "still here", 10));
	CHECK_OK(fstat(fd, &st));
	CHECK(st.st_nlink == 0);
	CHECK(pwrite(fd, "!", 1, 10) == 1);
	CHECK(pread(fd, buf, sizeof(buf), 0) == 11);
	CHECK_OK(close(fd));
	tc_put(f, "new file"); /* the name is free again */
	CHECK(tc_has(f, "new file"));
}

static void t_rmdir_errors(const char *d)
{
	char s[4096], f[4096];

	PATHF(s, "%s/sub", d);
	PATHF(f, "%s/sub/f", d);
	CHECK_OK(mkdir(s, 0755));
	CHECK_ERR(mkdir(s, 0755), EEXIST);
	tc_put(f, "x");
	CHECK_ERR(rmdir(s), ENOTEMPTY);
	CHECK_ERR(rmdir(f), ENOTDIR);
	CHECK_ERR(unlink(s), EISDIR);
	CHECK_OK(unlink(f));
	CHECK_OK(rmdir(s));
	CHECK_ERR(rmdir(s), ENOENT);
}

static void t_name_too_long(const char *d)
{
	char name[300], p[4096];

	memset(name, 'n', 256);
	name[256] = '\0';
	PATHF(p, "%s/%s", d, name);
	CHECK_ERR(open(p, O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
	CHECK_ERR(mkdir(p, 0755), ENAMETOOLONG);
	CHECK_ERR(stat(p, &(struct stat){0}), ENAMETOOLONG);
	name[255] = '\0';
	PATHF(p, "%s/%s", d, name);
	CHECK_OK(close(CHECK_OK(open(p, O_CREAT | O_WRONLY, 0644))));
	CHECK_OK(access(p, F_OK));
}

static void t_mknod_fifo(const char *d)
{
	char p[4096];
	struct stat st;

	PATHF(p, "%s/fifo", d);
	CHECK_OK(mkfifo(p, 0600));
	CHECK_OK(lstat(p, &st));
	CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 0777) == 0600);
	CHECK_OK(unlink(p));
}

static void t_fsync(const char *d)
{
	char f[4096];
	int fd, dfd;

	PATHF(f, "%s/f", d);
	fd = CHECK_OK(open(f, O_RDWR | O_CREAT, 0644));
	CHECK(write(fd, "durable", 7) == 7);
	CHECK_OK(fsync(fd));
	CHECK(pwrite(fd, "D", 1, 0) == 1);
	CHECK_OK(fdatasync(fd));
	CHECK_OK(close(fd));
	dfd = CHECK_OK(open(d, O_RDONLY | O_DIRECTORY));
	CHECK_OK(fsync(dfd));
	CHECK_OK(close(dfd));
	CHECK(tc_has(f, "Durable"));
}

static void t_stable_ino(const char *d)
{
	char f[4096];
	struct stat a, b;

	PATHF(f, "%s/f", d);
	tc_put(f, "one");
	CHECK_OK(stat(f, &a));
	tc_put(f, "two, longer");
	CHECK_OK(stat(f, &b));
	CHECK(a.st_ino == b.st_ino && b.st_size == 11);
}

static const struct tcase cases[] = {
	{"open_flags", t_open_flags, 0},
	{"offsets", t_offsets, 0},
	{"large_file", t_large_file, 0},
	{"sparse_file", t_sparse_file, 0},
	{"truncate", t_truncate, 0},
	{"fallocate", t_fallocate, 0},
	{"rename_file", t_rename_file, 0},
	{"rename_dirs", t_rename_dirs, 0},
	{"rename_noreplace_exchange", t_rename_noreplace_exchange, 0},
	{"hard_links", t_hard_links, 0},
	{"symlinks", t_symlinks, 0},
	{"chmod_chown_utimens", t_chmod_chown_utimens, 0},
	{"mtime_on_write", t_mtime_on_write, 0},
	{"user_xattrs", t_user_xattrs, 0},
	{"readdir_concurrent", t_readdir_concurrent, 0},
	{"readdir_types", t_readdir_types, 0},
	{"mmap_shared", t_mmap_shared, 0},
	{"mmap_private", t_mmap_private, 0},
	{"statfs", t_statfs, 0},
	{"unlink_open_file", t_unlink_open_file, 0},
	{"rmdir_errors", t_rmdir_errors, 0},
	{"name_too_long", t_name_too_long, 0},
	{"mknod_fifo", t_mknod_fifo, 0},
	{"fsync", t_fsync, 0},
	{"stable_ino", t_stable_ino, 0},
};

int main(int argc, char **argv)
{
	return tc_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), true);
}
