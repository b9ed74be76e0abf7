/*
 * perm.c — permission checks for a non-root caller (SPEC §6: root bypasses
 * permission checks, so root-only tests prove nothing about them).
 *
 * Run as root: prepares DIR/perm (root-owned files and directories, made the
 * same way natively and on the mount, which run.sh mounts with
 * allow_other,default_permissions), then re-executes itself under
 *   setpriv --reuid=nobody --regid=nogroup --clear-groups
 * which runs the tests against DIR/perm; its summary line is ours.
 */
#include <stdio.h>
#include <sys/xattr.h>

#include "tcase.h"

static void put(const char *path, const char *s, mode_t mode)
{
	int fd = CHECK_OK(open(path, O_WRONLY | O_CREAT | O_TRUNC, mode));

	CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s));
	CHECK_OK(close(fd));
	CHECK_OK(chmod(path, mode));
}

#define P(buf, name) PATHF(buf, "%s/%s", d, name)

/* As root: ro/ 0755 with pub 0644, secret 0600, sub/; rw/ 0777; sticky/
 * 01777 with a root file 0666. */
static int prepare(const char *d)
{
	char b[4096];

	if (mkdir(d, 0755) || chmod(d, 0755))
		return -1;
	P(b, "ro");
	if (mkdir(b, 0755))
		return -1;
	P(b, "ro/pub");
	put(b, "public", 0644);
	P(b, "ro/secret");
	put(b, "secret", 0600);
	P(b, "ro/sub");
	if (mkdir(b, 0755))
		return -1;
	P(b, "rw");
	if (mkdir(b, 0777) || chmod(b, 0777))
		return -1;
	P(b, "sticky");
	if (mkdir(b, 01777) || chmod(b, 01777))
		return -1;
	P(b, "sticky/rootfile");
	put(b, "root's", 0666);
	return 0;
}

static void t_create_in_root_dir(const char *d)
{
	char b[4096];

	P(b, "ro/new");
	CHECK_ERR(open(b, O_CREAT | O_WRONLY, 0644), EACCES);
	CHECK_ERR(mkdir(b, 0755), EACCES);
	CHECK_ERR(symlink("pub", b), EACCES);
	CHECK_ERR(mkfifo(b, 0644), EACCES);
	P(b, "rw/own");
	CHECK_OK(close(CHECK_OK(open(b, O_CREAT | O_WRONLY, 0644))));
	char c[4096];

	P(c, "ro/link");
	CHECK_ERR(link(b, c), EACCES);
	CHECK_OK(unlink(b));
}

static void t_remove_in_root_dir(const char *d)
{
	char a[4096], b[4096];

	P(a, "ro/pub");
	P(b, "ro/renamed");
	CHECK_ERR(unlink(a), EACCES);
	CHECK_ERR(rename(a, b), EACCES);
	P(a, "ro/sub");
	CHECK_ERR(rmdir(a), EACCES);
	P(b, "rw/stolen");
	P(a, "ro/pub");
	CHECK_ERR(rename(a, b), EACCES);
}

static void t_open_modes(const char *d)
{
	char b[4096];

	P(b, "ro/secret");
	CHECK_ERR(open(b, O_RDONLY), EACCES);
	P(b, "ro/pub");
	CHECK_OK(close(CHECK_OK(open(b, O_RDONLY))));
	CHECK_ERR(open(b, O_WRONLY), EACCES);
	CHECK_ERR(open(b, O_RDWR | O_TRUNC), EACCES);
	CHECK_ERR(truncate(b, 0), EACCES);
}

static void t_attrs_not_owner(const char *d)
{
	char b[4096];
	struct timespec ts[2] = {{1000, 0}, {1000, 0}};

	P(b, "ro/pub");
	CHECK_ERR(chmod(b, 0666), EPERM);
	CHECK_ERR(chown(b, 65534, 65534), EPERM);
	CHECK_ERR(utimensat(AT_FDCWD, b, ts, 0), EPERM);
	CHECK_ERR(utimensat(AT_FDCWD, b, NULL, 0), EACCES);
	CHECK_ERR(setxattr(b, "user.x", "1", 1, 0), EACCES);
}

static void t_own_file(const char *d)
{
	char b[4096];
	struct stat st;

	P(b, "rw/mine");
	CHECK_OK(close(CHECK_OK(open(b, O_CREAT | O_WRONLY, 0644))));
	CHECK_OK(stat(b, &st));
	CHECK(st.st_uid == getuid() && st.st_gid == getgid());
	CHECK_OK(chmod(b, 0600));
	CHECK_OK(utimensat(AT_FDCWD, b, NULL, 0));
	CHECK_OK(setxattr(b, "user.x", "1", 1, 0));
	CHECK_ERR(chown(b, 0, 0), EPERM);
	CHECK_OK(unlink(b));
	P(b, "rw/mydir");
	CHECK_OK(mkdir(b, 0700));
	CHECK_OK(rmdir(b));
}

static void t_sticky_dir(const char *d)
{
	char a[4096], b[4096];

	P(a, "sticky/rootfile");
	P(b, "sticky/moved");
	CHECK_ERR(unlink(a), EPERM);
	CHECK_ERR(rename(a, b), EPERM);
	CHECK_OK(close(CHECK_OK(open(a, O_WRONLY)))); /* 0666: writable, not removable */
}

static const struct tcase cases[] = {
	{"create_in_root_dir", t_create_in_root_dir, 0},
	{"remove_in_root_dir", t_remove_in_root_dir, 0},
	{"open_modes", t_open_modes, 0},
	{"attrs_not_owner", t_attrs_not_owner, 0},
	{"own_file", t_own_file, 0},
	{"sticky_dir", t_sticky_dir, 0},
};

/* Prepare as root, then run the cases as nobody (exec setpriv). */
static int as_root(int argc, char **argv)
{
	char dir[4096], self[4096];
	ssize_t n;

	PATHF(dir, "%s/perm", argv[1]);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0 || prepare(dir)) {
		printf("not ok 1 - prepare %s: %s\n0 passed, 1 failed\n", dir, strerror(errno));
		return 1;
	}
	self[n] = '\0';
	/* nobody cannot write a root-only sanitizer log_path: report to stderr,
	 * where a finding still fails the run through the exit status */
	unsetenv("ASAN_OPTIONS");
	unsetenv("UBSAN_OPTIONS");
	fflush(stdout);
	execlp("setpriv", "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", self,
	       dir, argv[2], argc > 3 ? argv[3] : NULL, (char *)NULL);
	printf("not ok 1 - exec setpriv: %s\n0 passed, 1 failed\n", strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && geteuid() == 0)
		return as_root(argc, argv);
	return tc_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), false);
}
