/*
 * fsynclat.c — helper of m10_fsync.sh (built by the script with cc, like
 * _mountlib.sh's fileops; it is not a benchmark of its own, so it lives in a
 * subdirectory the Makefile does not build).
 *
 *   fsynclat lat MNTDIR DISKDIR N
 *       N rounds; each round, in this order:
 *         mount: open(MNTDIR/f-i, O_CREAT|O_EXCL) + write 4 KiB + fsync + close
 *         disk:  append 4 KiB to DISKDIR/append.dat + fdatasync
 *         disk:  overwrite 4 KiB of the pre-zeroed DISKDIR/zeroed.dat + fdatasync
 *       (interleaved, so machine noise hits all three alike). Prints one line
 *       of medians in microseconds:
 *         fsync=P50 close=P50 open_write=P50 fdatasync_append=P50
 *         fdatasync_zeroed=P50 fsync_p90=P90 append_p90=P90
 *   fsynclat saves DIR NSAVES NPROC MODE
 *       NPROC processes, each saves NSAVES new 4 KiB files:
 *         MODE new:    open(O_CREAT|O_EXCL) + write + fsync + close
 *         MODE rename: tmp + write + fsync + close + rename to a new name +
 *                      fsync(dir)  (what ext4 needs for the same promise)
 *       Prints elapsed seconds (fork to last exit).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SZ 4096

static void die(const char *what)
{
	perror(what);
	_exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, long n, double p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return (double)v[(long)((double)(n - 1) * p + 0.5)] / 1000.0;
}

static int lat(const char *mnt, const char *disk, long n)
{
	uint64_t *fs = calloc(n, 8), *cl = calloc(n, 8), *ow = calloc(n, 8), *ap = calloc(n, 8),
		 *zr = calloc(n, 8);
	char buf[SZ], path[4096];
	int afd, zfd;
	long i;

	if (!fs || !cl || !ow || !ap || !zr)
		die("calloc");
	memset(buf, 'x', sizeof(buf));
	snprintf(path, sizeof(path), "%s/append.dat", disk);
	afd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (afd < 0)
		die(path);
	snprintf(path, sizeof(path), "%s/zeroed.dat", disk);
	zfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (zfd < 0)
		die(path);
	{
		char z[SZ] = {0};

		for (i = 0; i < n; i++)
			if (write(zfd, z, SZ) != SZ)
				die("write zeroed");
		if (fsync(zfd))
			die("fsync zeroed");
	}
	for (i = 0; i < n; i++) {
		uint64_t t0, t1, t2, t3;
		int fd;

		buf[0] = (char)i;
		snprintf(path, sizeof(path), "%s/f-%06ld", mnt, i);
		t0 = now_ns();
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			die(path);
		if (write(fd, buf, SZ) != SZ)
			die("write");
		t1 = now_ns();
		if (fsync(fd))
			die("fsync");
		t2 = now_ns();
		if (close(fd))
			die("close");
		t3 = now_ns();
		ow[i] = t1 - t0;
		fs[i] = t2 - t1;
		cl[i] = t3 - t2;

		if (write(afd, buf, SZ) != SZ)
			die("append");
		t0 = now_ns();
		if (fdatasync(afd))
			die("fdatasync");
		ap[i] = now_ns() - t0;

		if (pwrite(zfd, buf, SZ, (off_t)i * SZ) != SZ)
			die("pwrite zeroed");
		t0 = now_ns();
		if (fdatasync(zfd))
			die("fdatasync");
		zr[i] = now_ns() - t0;
	}
	printf("fsync=%.0f close=%.0f open_write=%.0f fdatasync_append=%.0f "
	       "fdatasync_zeroed=%.0f ",
	       pct(fs, n, 0.5), pct(cl, n, 0.5), pct(ow, n, 0.5), pct(ap, n, 0.5),
	       pct(zr, n, 0.5));
	printf("fsync_p90=%.0f append_p90=%.0f\n", pct(fs, n, 0.9), pct(ap, n, 0.9));
	close(afd);
	close(zfd);
	return 0;
}

static void saver(const char *dir, long p, long n, int rn, const char *buf)
{
	char path[4096], tmp[4096];
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	long i;

	if (dfd < 0)
		die(dir);
	for (i = 0; i < n; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/p%ld-n%06ld", dir, p, i);
		snprintf(tmp, sizeof(tmp), "%s/.p%ld-n%06ld.tmp", dir, p, i);
		fd = open(rn ? tmp : path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			die(rn ? tmp : path);
		if (write(fd, buf, SZ) != SZ)
			die("write");
		if (fsync(fd))
			die("fsync");
		if (close(fd))
			die("close");
		if (rn && (rename(tmp, path) || fsync(dfd)))
			die("rename/fsync dir");
	}
	_exit(0);
}

static int saves(const char *dir, long n, long np, const char *mode)
{
	char buf[SZ];
	uint64_t t0 = now_ns();
	int st, bad = 0;
	long p;

	memset(buf, 'y', sizeof(buf));
	for (p = 0; p < np; p++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (!pid)
			saver(dir, p, n, !strcmp(mode, "rename"), buf);
	}
	while (wait(&st) > 0)
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	if (bad)
		return 1;
	printf("%.4f\n", (double)(now_ns() - t0) / 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "lat"))
		return lat(argv[2], argv[3], atol(argv[4]));
	if (argc == 6 && !strcmp(argv[1], "saves"))
		return saves(argv[2], atol(argv[3]), atol(argv[4]), argv[5]);
	fprintf(stderr, "usage: fsynclat lat MNTDIR DISKDIR N | saves DIR NSAVES NPROC new|rename\n");
	return 2;
}
