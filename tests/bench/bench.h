/*
 * bench.h — helpers shared by the engine benchmarks (tests/bench/X.c).
 *
 * Output contract (see run.sh):
 *   BENCH <metric> <value> <unit> [note]      one measured figure
 *   TARGET | target | txdir | baseline | ratio | goal | PASS/MISS |
 *                                             one row of the targets table
 * Benchmarks never fail on a miss; they exit non-zero only when they could
 * not measure (setup or engine error).
 */
#ifndef TXDIR_BENCH_H
#define TXDIR_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "txdir.h"

static inline bool bench_quick(void)
{
	const char *q = getenv("BENCH_QUICK");
	if (!q || !*q)
		q = getenv("QUICK");
	return q && *q && strcmp(q, "0") != 0;
}

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void bench_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	fflush(NULL);
	_exit(3);
}

/* Engine call that must succeed (negative return = -errno or -TXD_E*). */
#define CK(expr)                                                               \
	do {                                                                   \
		long long ck_r_ = (long long)(expr);                           \
		if (ck_r_ < 0)                                                 \
			bench_die("%s:%d: %s = %s", __FILE__, __LINE__, #expr, \
				  txd_strerror((int)ck_r_));                   \
	} while (0)
/* libc call that must not return -1. */
#define CKS(expr)                                                                               \
	do {                                                                                    \
		if ((expr) == -1)                                                               \
			bench_die("%s:%d: %s: %s", __FILE__, __LINE__, #expr, strerror(errno)); \
	} while (0)

static int bench_cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static inline double median(double *v, int n)
{
	double tmp[64];
	if (n <= 0)
		return 0;
	if (n > 64)
		n = 64;
	memcpy(tmp, v, (size_t)n * sizeof(*v));
	qsort(tmp, (size_t)n, sizeof(*tmp), bench_cmp_dbl);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* Scratch directory: $BENCH_DIR (run.sh), else a fresh one in $TMPDIR. */
static inline const char *bench_dir(void)
{
	static char buf[4096];
	const char *d = getenv("BENCH_DIR");
	if (d && *d)
		return d;
	if (buf[0])
		return buf;
	const char *t = getenv("TMPDIR");
	snprintf(buf, sizeof(buf), "%s/txdir-bench.XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(buf))
		bench_die("mkdtemp: %s", strerror(errno));
	return buf;
}

static inline char *bench_path(const char *fmt, ...)
{
	char *p = NULL, *rel = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		bench_die("oom");
	va_end(ap);
	if (asprintf(&p, "%s/%s", bench_dir(), rel) < 0)
		bench_die("oom");
	free(rel);
	return p;
}

static inline void rm_rf(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--one-file-system", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* "PASS" when value meets goal; higher_better picks the direction. */
static inline const char *verdict(double value, double goal, bool higher_better)
{
	return (higher_better ? value >= goal : value <= goal) ? "PASS" : "MISS";
}

static inline void target_row(const char *target, const char *txdir, const char *base, double ratio,
			      const char *goal, const char *pass)
{
	printf("TARGET | %s | %s | %s | %.2f | %s | %s |\n", target, txdir, base, ratio, goal,
	       pass);
	fflush(stdout);
}

static inline long proc_status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(field);
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Drop the page cache (root only); returns false if not possible. */
static inline bool drop_caches(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		return false;
	bool ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

static inline struct txd_cred bench_cred(void)
{
	struct txd_cred c = {.uid = (uint32_t)geteuid(),
			     .gid = (uint32_t)getegid(),
			     .pid = getpid(),
			     .umask = 022};
	return c;
}

/* Parent side of a measurement child: read doubles the child wrote to the
 * pipe, wait for it, die if it failed. Returns the number of doubles read. */
static inline int child_collect(pid_t pid, int rfd, double *out, int max)
{
	int n = 0;
	ssize_t r;
	while (n < max && (r = read(rfd, &out[n], sizeof(double))) == (ssize_t)sizeof(double))
		n++;
	close(rfd);
	int status = 0;
	if (waitpid(pid, &status, 0) < 0)
		bench_die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bench_die("measurement child failed (status 0x%x)", status);
	return n;
}

static inline void child_send(int wfd, double v)
{
	if (write(wfd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		_exit(4);
}

#endif
