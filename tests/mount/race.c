/*
 * race.c — concurrent requests on one file that once deadlocked the engine
 * (issue 9 defect 1: commit of content took the file lock then the store
 * lock, setattr with times pending the store lock then the file lock).
 *
 * Each test runs its threads for a bounded time in a child with its own
 * alarm: a hang is a timeout (the test fails), never a stuck suite.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "tcase.h"

/* Each thread loops RACE_SECONDS (default 8); a run longer than that plus
 * 30 s is a hang. */
static uint64_t run_s = 8;
#define RUN_NS (run_s * 1000000000ull)
#define HANG_S ((unsigned)run_s + 30)

struct loop {
	const char *path;
	int fd;
	int err; /* errno of the first failed call, 0 */
	long rounds;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* open; pwrite 4 KiB; close — each close is a FLUSH that commits content */
static void *open_write_close(void *arg)
{
	struct loop *l = arg;
	char buf[4096];
	uint64_t end = mono_ns() + RUN_NS;

	memset(buf, 'w', sizeof(buf));
	while (!l->err && mono_ns() < end) {
		int fd = open(l->path, O_WRONLY);

		if (fd < 0 || pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			l->err = errno ? errno : EIO;
		if (fd >= 0 && close(fd))
			l->err = errno;
		l->rounds++;
	}
	return NULL;
}

/* pwrite 1 byte; ftruncate; futimens — setattr with times pending */
static void *write_truncate_touch(void *arg)
{
	struct loop *l = arg;
	uint64_t end = mono_ns() + RUN_NS;
	/* mtime only: with the writeback cache the kernel sends it as a time
	 * (not "now"), the request that joins a pending content commit */
	const struct timespec mtime_only[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_NOW}};

	while (!l->err && mono_ns() < end) {
		if (pwrite(l->fd, "t", 1, (off_t)(l->rounds % 8192)) != 1 ||
		    ftruncate(l->fd, (off_t)(l->rounds % 5000)) ||
		    futimens(l->fd, (l->rounds & 1) ? NULL : mtime_only))
			l->err = errno ? errno : EIO;
		l->rounds++;
	}
	return NULL;
}

/* Defect 1: both loops on one file, the second on its own descriptor. On the
 * old engine the mount hung within a second or two. */
static void t_flush_vs_setattr_times(const char *d)
{
	char f[4096];
	enum { N = 6 }; /* three of each: the old engine hung in 3 of 12 runs (the TSan
			* pass, tests/unit/test_stress.c, reports its inversion every time) */
	pthread_t t[N];
	struct loop l[N] = {{0}};

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, 8192, 1));
	alarm(HANG_S);
	for (int k = 0; k < N; k++) {
		l[k].path = f;
		if (k & 1)
			l[k].fd = CHECK_OK(open(f, O_RDWR));
		CHECK(!pthread_create(&t[k], NULL, (k & 1) ? write_truncate_touch : open_write_close,
				      &l[k]));
	}
	for (int k = 0; k < N; k++)
		pthread_join(t[k], NULL);
	alarm(0);
	for (int k = 0; k < N; k++) {
		errno = l[k].err;
		CHECK(l[k].err == 0);
		CHECK(l[k].rounds > 10);
		if (k & 1)
			CHECK_OK(close(l[k].fd));
	}
	printf("#   %ld open/write/close, %ld write/truncate/touch rounds\n", l[0].rounds,
	       l[1].rounds);
}

/* The same with stat and a reader open on the side (getattr and attach read
 * the working copy's state under the store lock). */
static void *stat_read(void *arg)
{
	struct loop *l = arg;
	uint64_t end = mono_ns() + RUN_NS;
	char buf[512];
	struct stat st;

	while (!l->err && mono_ns() < end) {
		int fd = open(l->path, O_RDONLY);

		if (fd < 0 || fstat(fd, &st) || pread(fd, buf, sizeof(buf), 0) < 0)
			l->err = errno ? errno : EIO;
		if (fd >= 0)
			close(fd);
		l->rounds++;
	}
	return NULL;
}

static void t_flush_setattr_stat(const char *d)
{
	char f[4096];
	pthread_t a, b, c;
	struct loop la = {0}, lb = {0}, lc = {0};

	PATHF(f, "%s/f", d);
	CHECK_OK(tc_write_pattern(f, 8192, 2));
	la.path = lc.path = f;
	lb.fd = CHECK_OK(open(f, O_RDWR));
	alarm(HANG_S);
	CHECK(!pthread_create(&a, NULL, open_write_close, &la));
	CHECK(!pthread_create(&b, NULL, write_truncate_touch, &lb));
	CHECK(!pthread_create(&c, NULL, stat_read, &lc));
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	pthread_join(c, NULL);
	alarm(0);
	errno = la.err;
	CHECK(la.err == 0);
	errno = lb.err;
	CHECK(lb.err == 0);
	errno = lc.err;
	CHECK(lc.err == 0);
	CHECK_OK(close(lb.fd));
}

static const struct tcase cases[] = {
	{"flush_vs_setattr_times", t_flush_vs_setattr_times, 0},
	{"flush_setattr_stat", t_flush_setattr_stat, 0},
};

int main(int argc, char **argv)
{
	const char *s = getenv("RACE_SECONDS");

	if (s && atoi(s) > 0)
		run_s = (uint64_t)atoi(s);
	return tc_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), true);
}
