/*
 * test_os.c — the os table's helpers, and faultos itself (the tests of the
 * other modules trust it to model crashes faithfully).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/os.h"
#include "../support/faultos.h"

static char tmpdir[256];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/txd-os-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	faultos_uninstall();
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(os, .init = setup, .fini = teardown, .timeout = 60);

static char *path(const char *name)
{
	static char p[2][400];
	static int k;

	k ^= 1;
	snprintf(p[k], sizeof(p[k]), "%s/%s", tmpdir, name);
	return p[k];
}

static size_t read_all(const char *p, char *buf, size_t n)
{
	int fd = open(p, O_RDONLY);
	ssize_t r;

	if (fd < 0)
		return (size_t)-1;
	r = read(fd, buf, n);
	close(fd);
	return (size_t)r;
}

/* A table that transfers at most 3 bytes per call. */
static struct txd_os_ops short_ops;

static ssize_t short_pwrite(int fd, const void *b, size_t n, off_t off)
{
	return txd_os_real.pwrite(fd, b, n > 3 ? 3 : n, off);
}

static ssize_t short_pread(int fd, void *b, size_t n, off_t off)
{
	return txd_os_real.pread(fd, b, n > 3 ? 3 : n, off);
}

Test(os, full_transfers_retry_short_ones)
{
	char buf[64];
	int fd;

	short_ops = txd_os_real;
	short_ops.pwrite = short_pwrite;
	short_ops.pread = short_pread;
	txd_os_set(&short_ops);
	fd = txd_os->open(path("f"), O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(os_pwrite_full(fd, "0123456789abcdefghij", 20, 5), 0);
	cr_assert_eq(os_pread_full(fd, buf, 20, 5), 0);
	cr_assert_eq(memcmp(buf, "0123456789abcdefghij", 20), 0);
	cr_assert_eq(os_pread_full(fd, buf, 30, 5), -EIO, "file ends early");
	txd_os->close(fd);
	txd_os_set(NULL);
	cr_assert_eq(txd_os, &txd_os_real);
}

Test(os, errors_are_negative_errno)
{
	uint64_t sz;

	cr_assert_eq(txd_os->open(path("missing/x"), O_RDONLY, 0), -ENOENT);
	cr_assert_eq(txd_os->unlink(path("nope")), -ENOENT);
	cr_assert_eq(txd_os->mkdir(tmpdir, 0755), -EEXIST);
	cr_assert_eq(txd_os->fstat_size(-1, &sz), -EBADF);
	cr_assert_lt(txd_os->pwrite(-1, "x", 1, 0), 0);
	cr_assert_gt(txd_os->now_realtime_ns(), 1600000000ull * 1000000000ull);
	cr_assert_gt(txd_os->now_monotonic_ns(), 0);
}

/* The file clock is the kernel's coarse clock: never ahead of the real one,
 * at most a few ticks behind it. */
Test(os, file_clock_is_coarse_realtime)
{
	uint64_t file = txd_os->now_file_ns(), real = txd_os->now_realtime_ns();
	struct timespec res;

	cr_assert_leq(file, real);
	cr_assert_lt(real - file, 100 * 1000 * 1000ull);
	cr_assert_eq(clock_getres(CLOCK_REALTIME_COARSE, &res), 0);
	cr_assert_gt(res.tv_nsec, 1000, "coarse clock resolution %ld ns", res.tv_nsec);
}

static int count_cb(const char *name, void *arg)
{
	cr_assert(strcmp(name, ".") && strcmp(name, ".."));
	(*(int *)arg)++;
	return 0;
}

static int stop_cb(const char *name, void *arg)
{
	(void)name;
	(void)arg;
	return 7;
}

Test(os, listdir_skips_dots_and_stops)
{
	int n = 0;

	close(open(path("a"), O_CREAT | O_WRONLY, 0644));
	close(open(path("b"), O_CREAT | O_WRONLY, 0644));
	cr_assert_eq(txd_os->listdir(tmpdir, count_cb, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(txd_os->listdir(tmpdir, stop_cb, NULL), 7);
	cr_assert_eq(txd_os->listdir(path("none"), count_cb, &n), -ENOENT);
}

Test(os, write_file_durable_fsyncs_file_and_dir)
{
	char *s;
	size_t n;

	faultos_install();
	cr_assert_eq(os_write_file_durable(tmpdir, "doc", "hello", 5), 0);
	cr_assert_eq(faultos_count(FOS_FSYNC), 2, "file and directory");
	cr_assert_eq(faultos_count(FOS_RENAME), 1);
	cr_assert_eq(os_read_file(path("doc"), &s, &n), 0);
	cr_assert_eq(n, 5);
	cr_assert_str_eq(s, "hello");
	free(s);
}

Test(os, write_file_durable_failure_keeps_old_content)
{
	char buf[16];
	int n = 0;

	cr_assert_eq(os_write_file_durable(tmpdir, "doc", "old", 3), 0);
	faultos_install();
	faultos_fail_nth(FOS_RENAME, 1, -ENOSPC);
	cr_assert_eq(os_write_file_durable(tmpdir, "doc", "new!", 4), -ENOSPC);
	faultos_fail_nth(FOS_FSYNC, 1, -EIO);
	cr_assert_eq(os_write_file_durable(tmpdir, "doc", "new!", 4), -EIO);
	cr_assert_eq(read_all(path("doc"), buf, sizeof(buf)), 3);
	cr_assert_eq(memcmp(buf, "old", 3), 0);
	cr_assert_eq(txd_os->listdir(tmpdir, count_cb, &n), 0);
	cr_assert_eq(n, 1, "no temporary file left behind");
}

Test(os, faultos_fail_nth_counts_from_arming)
{
	int fd;

	faultos_install();
	fd = txd_os->open(path("f"), O_RDWR | O_CREAT, 0644);
	cr_assert_eq(txd_os->pwrite(fd, "a", 1, 0), 1);
	faultos_fail_nth(FOS_PWRITE, 2, -ENOSPC);
	cr_assert_eq(txd_os->pwrite(fd, "b", 1, 1), 1);
	cr_assert_eq(txd_os->pwrite(fd, "c", 1, 2), -ENOSPC);
	cr_assert_eq(txd_os->pwrite(fd, "d", 1, 2), 1);
	cr_assert_eq(faultos_count(FOS_PWRITE), 4);
	txd_os->close(fd);
}

Test(os, faultos_tear_and_process_death)
{
	char buf[32];
	int fd;

	faultos_install();
	fd = txd_os->open(path("f"), O_RDWR | O_CREAT, 0644);
	faultos_tear_nth_pwrite(1, 4, true);
	cr_assert_eq(txd_os->pwrite(fd, "abcdefgh", 8, 0), -EIO);
	cr_assert(faultos_crashed());
	cr_assert_eq(txd_os->pwrite(fd, "x", 1, 0), -EIO, "dead: no more I/O");
	cr_assert_eq(txd_os->fsync(fd), -EIO);
	cr_assert_eq(txd_os->close(fd), 0);
	cr_assert_eq(read_all(path("f"), buf, sizeof(buf)), 4, "the kernel kept the prefix");
	cr_assert_eq(memcmp(buf, "abcd", 4), 0);
}

Test(os, faultos_power_cut_restores_synced_content)
{
	char buf[64];
	int fd, seed, same = 0;

	for (seed = 0; seed < 200; seed++) {
		faultos_install();
		fd = txd_os->open(path("f"), O_RDWR | O_CREAT | O_TRUNC, 0644);
		cr_assert_eq(txd_os->pwrite(fd, "synced-data", 11, 0), 11);
		cr_assert_eq(txd_os->fsync(fd), 0);
		cr_assert_eq(os_fsync_dir(tmpdir), 0);
		cr_assert_eq(txd_os->pwrite(fd, "XXXXXX", 6, 0), 6);
		cr_assert_eq(txd_os->pwrite(fd, "-tail-unsynced", 14, 11), 14);
		cr_assert_eq(txd_os->ftruncate(fd, 3), 0);
		faultos_power_cut((uint64_t)seed);
		txd_os->close(fd);
		faultos_uninstall();
		/* Any outcome is a mix of the synced bytes and some unsynced
		 * writes; the synced content is the outcome when all are lost. */
		memset(buf, 0, sizeof(buf));
		read_all(path("f"), buf, sizeof(buf));
		same += !strcmp(buf, "synced-data");
		for (int i = 0; i < 3; i++)
			cr_assert(buf[i] == "syn"[i] || buf[i] == 'X', "%s", buf);
	}
	cr_assert_gt(same, 0, "some seed loses every unsynced write");
	cr_assert_lt(same, 200, "some seed keeps some");
}

Test(os, faultos_power_cut_unsynced_create_may_vanish)
{
	int seed, vanished = 0, fd;

	for (seed = 0; seed < 20; seed++) {
		faultos_install();
		unlink(path("new"));
		fd = txd_os->open(path("new"), O_RDWR | O_CREAT, 0644);
		cr_assert_eq(txd_os->fsync(fd), 0);
		faultos_power_cut((uint64_t)seed);
		txd_os->close(fd);
		vanished += access(path("new"), F_OK) != 0;
		faultos_revive();
		/* Once the directory is fsynced the entry is durable. */
		fd = txd_os->open(path("kept"), O_RDWR | O_CREAT, 0644);
		cr_assert_eq(os_fsync_dir(tmpdir), 0);
		faultos_power_cut((uint64_t)seed);
		txd_os->close(fd);
		cr_assert_eq(access(path("kept"), F_OK), 0);
		unlink(path("kept"));
		faultos_uninstall();
	}
	cr_assert_gt(vanished, 0);
	cr_assert_lt(vanished, 20);
}

Test(os, faultos_clock_offset)
{
	uint64_t a, b;

	faultos_install();
	a = txd_os->now_monotonic_ns();
	faultos_set_clock_offset(3600ll * 1000000000ll);
	b = txd_os->now_monotonic_ns();
	cr_assert_geq(b - a, 3600ull * 1000000000ull);
}
