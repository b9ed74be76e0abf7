/*
 * tcase.h — a tiny test runner for the syscall tests in tests/mount/.
 *
 *   PROG DIR native|mount [NAME-SUBSTRING]
 *
 * Every test runs in its own forked child (a crash or hang fails that test
 * only; each has a 120 s alarm) with its own fresh subdirectory DIR/NAME, so
 * the same expectations run against a native ext4 directory and against a
 * txdirfs mount. Output is TAP-like; the last line is exactly
 * "N passed, N failed, N skipped" and the exit status is non-zero on any
 * failure.
 *
 * In a test: CHECK(cond), CHECK_OK(syscall) (expects >= 0), CHECK_ERR(syscall,
 * E) (expects -1 with errno E). A failed check prints the expression, file,
 * line and errno, and ends the test. TC_SKIP("needs root") ends a test that
 * cannot run here: it counts as skipped, not passed, and prints the line
 * "# SKIP NAME [native|mount]: REASON" that tests/check.sh collects. (A
 * TC_MOUNT_ONLY test against the native directory is not applicable there
 * and counts as nothing.)
 */
#ifndef TCASE_H
#define TCASE_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TC_MOUNT_ONLY = 1 };
enum { TC_EXIT_SKIP = 77 }; /* a test's child exit status: skipped */

struct tcase {
	const char *name;
	void (*fn)(const char *dir);
	unsigned int flags;
};

/* The DIR given on the command line (the mount root for "mount"). */
static const char *tc_root;
static bool tc_on_mount;
static const char *tc_name; /* the running test's name */

#define TC_SKIP(reason)                                                         \
	do {                                                                    \
		printf("# SKIP %s [%s]: %s\n", tc_name, tc_on_mount ? "mount" : "native", \
		       reason);                                                 \
		fflush(stdout);                                                 \
		_exit(TC_EXIT_SKIP);                                            \
	} while (0)

#define TC_FAIL(...)                                          \
	do {                                                  \
		int e_ = errno;                               \
		printf("#   %s:%d: ", __FILE__, __LINE__);    \
		printf(__VA_ARGS__);                          \
		printf(" (errno %d %s)\n", e_, strerror(e_)); \
		fflush(stdout);                               \
		_exit(1);                                     \
	} while (0)

#define CHECK(c)                                  \
	do {                                      \
		if (!(c))                         \
			TC_FAIL("CHECK(%s)", #c); \
	} while (0)

#define CHECK_OK(x)                                  \
	({                                           \
		errno = 0;                           \
		long r_ = (long)(x);                 \
		if (r_ < 0)                          \
			TC_FAIL("%s = %ld", #x, r_); \
		r_;                                  \
	})

#define CHECK_ERR(x, e)                                                     \
	do {                                                                \
		errno = 0;                                                  \
		long r_ = (long)(x);                                        \
		if (r_ != -1 || errno != (e))                               \
			TC_FAIL("%s = %ld, wanted -1 with %s", #x, r_, #e); \
	} while (0)

/* Format a path into the array buf; a truncated path fails the test. */
#define PATHF(buf, ...)                                                             \
	do {                                                                        \
		if ((size_t)snprintf(buf, sizeof(buf), __VA_ARGS__) >= sizeof(buf)) \
			TC_FAIL("path too long");                                   \
	} while (0)

static inline bool tc_selected(const struct tcase *t, const char *filter)
{
	return !filter || strstr(t->name, filter);
}

/* 0 passed, 1 failed, 2 skipped. */
static inline int tc_run_one(const struct tcase *t, bool per_test_dir, char *dir, size_t dirsz)
{
	int status;
	pid_t pid;

	if (per_test_dir) {
		snprintf(dir, dirsz, "%s/%s", tc_root, t->name);
		if (mkdir(dir, 0755) && errno != EEXIST) {
			printf("#   mkdir %s: %s\n", dir, strerror(errno));
			return 1;
		}
	} else {
		snprintf(dir, dirsz, "%s", tc_root);
	}
	fflush(stdout);
	tc_name = t->name;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		alarm(120);
		umask(022);
		t->fn(dir);
		fflush(stdout);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return 1;
	if (WIFSIGNALED(status)) {
		printf("#   killed by signal %d%s\n", WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
		return 1;
	}
	if (WEXITSTATUS(status) == TC_EXIT_SKIP)
		return 2;
	return WEXITSTATUS(status) != 0;
}

static inline int tc_main(int argc, char **argv, const struct tcase *cases, size_t n,
			  bool per_test_dir)
{
	int passed = 0, failed = 0, skipped = 0, num = 0, r;
	const char *filter = argc > 3 ? argv[3] : NULL;
	char dir[4096];

	if (argc < 3 || (strcmp(argv[2], "native") && strcmp(argv[2], "mount"))) {
		fprintf(stderr, "usage: %s DIR native|mount [NAME]\n", argv[0]);
		return 2;
	}
	tc_root = argv[1];
	tc_on_mount = !strcmp(argv[2], "mount");
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < n; i++) {
		const struct tcase *t = &cases[i];

		if (!tc_selected(t, filter))
			continue;
		num++;
		if ((t->flags & TC_MOUNT_ONLY) && !tc_on_mount) {
			printf("ok %d - %s # SKIP txdir-specific\n", num, t->name);
			continue;
		}
		r = tc_run_one(t, per_test_dir, dir, sizeof(dir));
		if (r == 2) {
			printf("ok %d - %s [%s] # SKIP\n", num, t->name, argv[2]);
			skipped++;
		} else if (r) {
			printf("not ok %d - %s [%s]\n", num, t->name, argv[2]);
			failed++;
		} else {
			printf("ok %d - %s [%s]\n", num, t->name, argv[2]);
			passed++;
		}
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}

/* ---- helpers shared by the test programs ---- */
/* Write s as the whole content of path. */
static inline void tc_put(const char *path, const char *s)
{
	int fd = CHECK_OK(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));

	CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s));
	CHECK_OK(close(fd));
}

/* Whether path holds exactly s. */
static inline bool tc_has(const char *path, const char *s)
{
	char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n == (ssize_t)strlen(s) && !memcmp(buf, s, (size_t)n);
}


static inline void tc_fill(unsigned char *buf, size_t len, uint64_t off, unsigned int seed)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = (off + i) * 2654435761u + seed;

		buf[i] = (unsigned char)(x >> 13);
	}
}

/* Write len bytes of pattern seed to path (created/truncated); returns 0. */
static inline int tc_write_pattern(const char *path, size_t len, unsigned int seed)
{
	unsigned char buf[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len;) {
		size_t k = len - off < sizeof(buf) ? len - off : sizeof(buf);

		tc_fill(buf, k, off, seed);
		if (write(fd, buf, k) != (ssize_t)k) {
			close(fd);
			return -1;
		}
		off += k;
	}
	return close(fd);
}

/* Whether fd from offset 0 holds exactly len bytes of pattern seed. */
static inline bool tc_fd_has_pattern(int fd, size_t len, unsigned int seed)
{
	unsigned char buf[65536], want[65536];
	size_t off = 0;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), (off_t)off)) > 0) {
		tc_fill(want, (size_t)n, off, seed);
		if (memcmp(buf, want, (size_t)n))
			return false;
		off += (size_t)n;
	}
	return n == 0 && off == len;
}

#endif
