/*
 * fsx.c — an fsx-style random operation tester (after xfstests' fsx) for one
 * file, checked against an in-memory model of its bytes and size.
 *
 *   fsx [-vA] [-m MODEL_OUT] [-l MAXLEN] [-o MAXOPLEN] [-c CHECK_EVERY] SEED NOPS PATH
 *   fsx -C MODEL PATH
 *
 * The first form creates PATH (truncating it) and runs NOPS operations chosen
 * by a PRNG seeded with SEED: write (random offset and length, also past EOF
 * to make holes; pwrite or lseek+write), read (compared with the model),
 * truncate(2) and ftruncate up/down, fallocate (punch hole with KEEP_SIZE, zero
 * range with and without KEEP_SIZE, plain with and without KEEP_SIZE), mmap
 * read and mmap write (MAP_SHARED, msync MS_SYNC), close+reopen (a commit on
 * txdir; sometimes with O_TRUNC), fsync/fdatasync, a second descriptor that
 * reads, and a second O_WRONLY|O_APPEND descriptor that writes (-A: O_RDWR). Every read is verified,
 * fstat's size after every operation, and every CHECK_EVERY operations the
 * whole file (pread) plus stat(2) size. The model never depends on what the
 * file system answers, so a run is reproducible from SEED and NOPS alone.
 * With -m the final model is written to MODEL_OUT after the last close.
 *
 * The second form only verifies PATH against a saved model (used after an
 * unmount and remount: content committed at close must survive).
 *
 * On a mismatch it prints the seed, the op number, the first differing
 * offset, both byte runs and the last operations. The last line is
 * "N passed, N failed" (one run = one test); exit status 1 on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mix64.h"

#define KiB 1024UL
#define MiB (1024UL * 1024UL)

static uint64_t rng;
static unsigned char *good;  /* model bytes; always zero past msize */
static unsigned char *temp;  /* read buffer */
static unsigned char *wbuf;  /* write buffer */
static size_t msize;         /* model file size */
static size_t maxlen = 4 * MiB;
static size_t maxoplen = 256 * KiB;
static unsigned long check_every = 1000;
static const char *path;
static uint64_t seed;
static unsigned long opnum;
static int fd = -1;
static bool verbose;
static int append2_mode = O_WRONLY; /* -A: O_RDWR */
static long pagesize;
static sigjmp_buf bus_jmp;
static volatile sig_atomic_t in_map;

/* ---- PRNG (splitmix64) ---------------------------------------------------- */

static uint64_t rnd(void)
{
	return mix64(rng += 0x9e3779b97f4a7c15ULL);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* Fill wbuf[0..len) with bytes from a per-op xorshift stream. */
static void fill(size_t len)
{
	uint64_t x = rnd() | 1;

	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(wbuf + i, &x, len - i < 8 ? len - i : 8);
	}
}

/* ---- log of recent operations --------------------------------------------- */

#define LOGN 24
static char oplog[LOGN][160];

static void logop(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logop(const char *fmt, ...)
{
	va_list ap;
	char *s = oplog[opnum % LOGN];
	int n = snprintf(s, sizeof(oplog[0]), "%lu: ", opnum);

	va_start(ap, fmt);
	vsnprintf(s + n, sizeof(oplog[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	if (verbose)
		printf("# %s\n", s);
}

static void dump_log(void)
{
	printf("# last operations (oldest first):\n");
	for (unsigned long i = opnum >= LOGN ? opnum - LOGN + 1 : 0; i <= opnum; i++)
		if (oplog[i % LOGN][0])
			printf("#   %s\n", oplog[i % LOGN]);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	printf("# FAIL seed %" PRIu64 " op %lu: ", seed, opnum);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d %s)\n", e, strerror(e));
	printf("# model size %zu; reproduce: fsx -v %" PRIu64 " %lu PATH\n", msize, seed, opnum + 1);
	dump_log();
	printf("not ok - fsx %s seed %" PRIu64 "\n", path, seed);
	printf("0 passed, 1 failed\n");
	fflush(stdout);
	exit(1);
}

/* Compare got[0..len) with the model at off; fail with details. */
static void compare(const unsigned char *got, size_t off, size_t len, const char *what)
{
	size_t i, j;

	if (!memcmp(got, good + off, len))
		return;
	for (i = 0; i < len && got[i] == good[off + i]; i++)
		;
	for (j = len; j > i && got[j - 1] == good[off + j - 1]; j--)
		;
	printf("# %s: %zu bytes at %zu differ from the model; first bad offset %zu (0x%zx),"
	       " last bad %zu, bad run %zu bytes\n",
	       what, len, off, off + i, off + i, off + j - 1, j - i);
	printf("#   expected:");
	for (size_t k = i; k < i + 16 && k < len; k++)
		printf(" %02x", good[off + k]);
	printf("\n#   got:     ");
	for (size_t k = i; k < i + 16 && k < len; k++)
		printf(" %02x", got[k]);
	printf("\n");
	errno = 0;
	fail("%s mismatch", what);
}

/* ---- helpers ---------------------------------------------------------------- */

static void full_pread(int f, unsigned char *buf, size_t len, size_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(f, buf + done, len - done, (off_t)(off + done));

		if (n < 0)
			fail("%s: pread(%zu, %zu)", what, off + done, len - done);
		if (n == 0)
			fail("%s: short read: %zu of %zu bytes at %zu", what, done, len, off);
		done += (size_t)n;
	}
}

static void full_write(int f, const unsigned char *buf, size_t len, size_t off, bool positional,
		       const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = positional ? pwrite(f, buf + done, len - done, (off_t)(off + done))
				       : write(f, buf + done, len - done);

		if (n <= 0)
			fail("%s: write of %zu bytes at %zu returned %zd", what, len - done, off + done,
			     n);
		done += (size_t)n;
	}
}

static void check_size(int f, const char *what)
{
	struct stat st;

	if (fstat(f, &st))
		fail("%s: fstat", what);
	if ((size_t)st.st_size != msize) {
		errno = 0;
		fail("%s: fstat size %jd, model %zu", what, (intmax_t)st.st_size, msize);
	}
}

static void check_all(const char *what)
{
	struct stat st;
	char b;
	ssize_t n;

	check_size(fd, what);
	if (stat(path, &st))
		fail("%s: stat", what);
	if ((size_t)st.st_size != msize) {
		errno = 0;
		fail("%s: stat size %jd, model %zu", what, (intmax_t)st.st_size, msize);
	}
	for (size_t off = 0; off < msize; off += 1 * MiB) {
		size_t k = msize - off < 1 * MiB ? msize - off : 1 * MiB;

		full_pread(fd, temp, k, off, what);
		compare(temp, off, k, what);
	}
	n = pread(fd, &b, 1, (off_t)msize);
	if (n != 0)
		fail("%s: read at EOF %zu returned %zd", what, msize, n);
}

static void set_size(size_t n)
{
	if (n < msize)
		memset(good + n, 0, msize - n);
	msize = n;
}

static void bus_handler(int sig)
{
	(void)sig;
	if (in_map)
		siglongjmp(bus_jmp, 1);
	_exit(3);
}

static void do_open(int extra)
{
	fd = open(path, O_RDWR | extra);
	if (fd < 0)
		fail("open(%s, O_RDWR%s)", path, extra & O_TRUNC ? "|O_TRUNC" : "");
}

/* A random (off, len) with off < lim and off + len <= lim; len >= 1 if lim > 0.
 * Biased towards small and page-aligned values. */
static void pick_range(size_t lim, size_t *off, size_t *len)
{
	size_t maxl = maxoplen;

	if (lim == 0) {
		*off = *len = 0;
		return;
	}
	switch (below(4)) {
	case 0: maxl = 512; break;
	case 1: maxl = 16 * KiB; break;
	default: break;
	}
	*off = below(lim);
	if (below(4) == 0)
		*off &= ~(size_t)(pagesize - 1);
	*len = below(maxl) + 1;
	if (below(4) == 0 && *len > (size_t)pagesize)
		*len &= ~(size_t)(pagesize - 1);
	if (*off + *len > lim)
		*len = lim - *off;
}

/* ---- operations ------------------------------------------------------------- */

enum op {
	OP_WRITE, OP_READ, OP_MAPREAD, OP_MAPWRITE, OP_TRUNCATE, OP_FTRUNCATE,
	OP_PUNCH, OP_ZERO, OP_FALLOC, OP_REOPEN, OP_FSYNC, OP_READ2, OP_APPEND2, OP_N
};
static const unsigned weights[OP_N] = {
	[OP_WRITE] = 24, [OP_READ] = 20, [OP_MAPREAD] = 8, [OP_MAPWRITE] = 8,
	[OP_TRUNCATE] = 3, [OP_FTRUNCATE] = 3, [OP_PUNCH] = 4, [OP_ZERO] = 4,
	[OP_FALLOC] = 4, [OP_REOPEN] = 3, [OP_FSYNC] = 2, [OP_READ2] = 4, [OP_APPEND2] = 2,
};
static unsigned long counts[OP_N];
static const char *const names[OP_N] = {
	"write", "read", "mapread", "mapwrite", "truncate", "ftruncate", "punch", "zero",
	"falloc", "reopen", "fsync", "read2", "append2",
};

static void op_write(void)
{
	size_t off, len;
	bool positional = below(2);

	/* Anywhere up to maxlen: past EOF leaves a hole. */
	pick_range(below(8) == 0 && msize ? msize : maxlen, &off, &len);
	if (below(8) == 0 && msize < maxlen) { /* right at or just past EOF */
		off = msize + below(3) * below(3 * (size_t)pagesize);
		if (off >= maxlen)
			off = msize;
		len = below(64 * KiB) + 1;
		if (off + len > maxlen)
			len = maxlen - off;
	}
	fill(len);
	logop("write %s %zu+%zu (size %zu)", positional ? "pwrite" : "lseek+write", off, len, msize);
	if (!positional && lseek(fd, (off_t)off, SEEK_SET) != (off_t)off)
		fail("lseek(%zu)", off);
	full_write(fd, wbuf, len, off, positional, "write");
	memcpy(good + off, wbuf, len);
	if (off + len > msize)
		msize = off + len;
}

static void op_read(void)
{
	size_t off, len, want;
	ssize_t n;

	if (below(10) == 0) { /* a read that starts at or past EOF */
		off = msize + below(2 * (size_t)pagesize);
		len = below(4 * KiB) + 1;
		logop("read past EOF %zu+%zu (size %zu)", off, len, msize);
		n = pread(fd, temp, len, (off_t)off);
		if (n != 0)
			fail("read past EOF %zu+%zu returned %zd", off, len, n);
		return;
	}
	if (!msize) {
		logop("read (empty file) skipped");
		return;
	}
	pick_range(msize, &off, &len);
	if (below(4) == 0) /* read that runs over EOF */
		len += below(8 * KiB);
	want = off + len > msize ? msize - off : len;
	logop("read %zu+%zu (size %zu)", off, len, msize);
	if (below(2)) {
		if (lseek(fd, (off_t)off, SEEK_SET) != (off_t)off)
			fail("lseek(%zu)", off);
		n = 0;
		while ((size_t)n < len) {
			ssize_t r = read(fd, temp + n, len - (size_t)n);

			if (r < 0)
				fail("read %zu+%zu", off, len);
			if (r == 0)
				break;
			n += r;
		}
	} else {
		n = 0;
		while ((size_t)n < len) {
			ssize_t r = pread(fd, temp + n, len - (size_t)n, (off_t)off + n);

			if (r < 0)
				fail("pread %zu+%zu", off, len);
			if (r == 0)
				break;
			n += r;
		}
	}
	if ((size_t)n != want) {
		errno = 0;
		fail("read %zu+%zu returned %zd bytes, model says %zu", off, len, n, want);
	}
	compare(temp, off, want, "read");
}

static void op_map(bool writing)
{
	size_t off, len, pgoff, maplen;
	unsigned char *m;

	if (!msize) {
		logop("map%s (empty file) skipped", writing ? "write" : "read");
		return;
	}
	pick_range(msize, &off, &len);
	pgoff = off & ~(size_t)(pagesize - 1);
	maplen = off + len - pgoff;
	if (writing)
		fill(len);
	logop("map%s %zu+%zu (size %zu)", writing ? "write" : "read", off, len, msize);
	m = mmap(NULL, maplen, writing ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd,
		 (off_t)pgoff);
	if (m == MAP_FAILED)
		fail("mmap(%zu, %zu)", pgoff, maplen);
	if (sigsetjmp(bus_jmp, 1)) {
		in_map = 0;
		errno = 0;
		fail("SIGBUS touching the mapping %zu+%zu", off, len);
	}
	in_map = 1;
	if (writing) {
		memcpy(m + (off - pgoff), wbuf, len);
		in_map = 0;
		if (msync(m, maplen, MS_SYNC))
			fail("msync");
		memcpy(good + off, wbuf, len);
	} else {
		memcpy(temp, m + (off - pgoff), len);
		in_map = 0;
	}
	if (munmap(m, maplen))
		fail("munmap");
	if (!writing)
		compare(temp, off, len, "mapread");
}

static void op_truncate(bool by_fd)
{
	size_t n = below(3) == 0 && msize ? below(msize + 1) : below(maxlen + 1);

	logop("%s %zu -> %zu", by_fd ? "ftruncate" : "truncate", msize, n);
	if (by_fd ? ftruncate(fd, (off_t)n) : truncate(path, (off_t)n))
		fail("%s(%zu)", by_fd ? "ftruncate" : "truncate", n);
	set_size(n);
}

static void op_fallocate(enum op which)
{
	size_t off, len, end;
	int mode = 0;
	const char *mname;

	pick_range(below(2) && msize ? msize : maxlen, &off, &len);
	end = off + len;
	switch (which) {
	case OP_PUNCH:
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		mname = "punch_hole|keep_size";
		break;
	case OP_ZERO:
		mode = FALLOC_FL_ZERO_RANGE | (below(2) ? FALLOC_FL_KEEP_SIZE : 0);
		mname = mode & FALLOC_FL_KEEP_SIZE ? "zero_range|keep_size" : "zero_range";
		break;
	default:
		mode = below(3) == 0 ? FALLOC_FL_KEEP_SIZE : 0;
		mname = mode ? "keep_size" : "0";
		break;
	}
	logop("fallocate(%s) %zu+%zu (size %zu)", mname, off, len, msize);
	if (fallocate(fd, mode, (off_t)off, (off_t)len))
		fail("fallocate(%s, %zu, %zu)", mname, off, len);
	if (which != OP_FALLOC) { /* punch and zero: zero what is inside the file */
		size_t zend = end;

		if ((mode & FALLOC_FL_KEEP_SIZE) && zend > msize)
			zend = msize;
		if (off < zend)
			memset(good + off, 0, zend - off);
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > msize)
		msize = end;
}

static void op_reopen(void)
{
	bool trunc = below(10) == 0;

	logop("close+reopen%s (size %zu)", trunc ? " O_TRUNC" : "", msize);
	if (close(fd))
		fail("close");
	fd = -1;
	do_open(trunc ? O_TRUNC : 0);
	if (trunc)
		set_size(0);
}

static void op_fsync(void)
{
	bool data = below(2);

	logop("%s", data ? "fdatasync" : "fsync");
	if (data ? fdatasync(fd) : fsync(fd))
		fail("%s", data ? "fdatasync" : "fsync");
}

static void op_read2(void)
{
	size_t off, len;
	int f2;

	pick_range(msize, &off, &len);
	logop("second fd read %zu+%zu (size %zu)", off, len, msize);
	f2 = open(path, O_RDONLY);
	if (f2 < 0)
		fail("open(%s, O_RDONLY)", path);
	check_size(f2, "second fd fstat");
	if (len) {
		full_pread(f2, temp, len, off, "second fd read");
		compare(temp, off, len, "second fd read");
	}
	if (close(f2))
		fail("close of the second fd");
}

static void op_append2(void)
{
	size_t len = below(16 * KiB) + 1;
	int f2;

	if (msize + len > maxlen) {
		logop("second fd append (file full) skipped");
		return;
	}
	fill(len);
	logop("second fd (%s|O_APPEND) write %zu at %zu", append2_mode == O_RDWR ? "O_RDWR" : "O_WRONLY",
	      len, msize);
	f2 = open(path, append2_mode | O_APPEND);
	if (f2 < 0)
		fail("open(%s, %s|O_APPEND)", path, append2_mode == O_RDWR ? "O_RDWR" : "O_WRONLY");
	full_write(f2, wbuf, len, msize, false, "second fd append");
	if (close(f2))
		fail("close of the second fd");
	memcpy(good + msize, wbuf, len);
	msize += len;
}

static enum op choose(void)
{
	unsigned total = 0, r;

	for (int i = 0; i < OP_N; i++)
		total += weights[i];
	r = (unsigned)below(total);
	for (int i = 0; i < OP_N; i++) {
		if (r < weights[i])
			return (enum op)i;
		r -= weights[i];
	}
	return OP_READ;
}

/* ---- verify-only mode ----------------------------------------------------- */

static int verify_model(const char *model)
{
	struct stat st;
	int mf = open(model, O_RDONLY);

	path = "(verify)";
	if (mf < 0 || fstat(mf, &st)) {
		perror(model);
		return 2;
	}
	msize = (size_t)st.st_size;
	good = malloc(msize + 1);
	temp = malloc(1 * MiB);
	if (!good || !temp)
		return 2;
	for (size_t done = 0; done < msize;) {
		ssize_t n = read(mf, good + done, msize - done);

		if (n <= 0) {
			perror(model);
			return 2;
		}
		done += (size_t)n;
	}
	close(mf);
	return 0;
}

int main(int argc, char **argv)
{
	const char *model_out = NULL, *model_in = NULL;
	struct timespec t0, t1;
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	pagesize = sysconf(_SC_PAGESIZE);
	while ((c = getopt(argc, argv, "vAm:l:o:c:C:")) != -1) {
		switch (c) {
		case 'v': verbose = true; break;
		case 'A': append2_mode = O_RDWR; break;
		case 'm': model_out = optarg; break;
		case 'C': model_in = optarg; break;
		case 'l': maxlen = strtoul(optarg, NULL, 0); break;
		case 'o': maxoplen = strtoul(optarg, NULL, 0); break;
		case 'c': check_every = strtoul(optarg, NULL, 0); break;
		default: goto usage;
		}
	}
	if (model_in) {
		if (argc - optind != 1)
			goto usage;
		if (verify_model(model_in))
			return 2;
		path = argv[optind];
		fd = open(path, O_RDONLY);
		if (fd < 0)
			fail("open(%s, O_RDONLY)", path);
		logop("verify %s against model %s (%zu bytes)", path, model_in, msize);
		check_all("verify after remount");
		if (close(fd))
			fail("close");
		printf("ok - fsx %s matches the saved model (%zu bytes)\n", path, msize);
		printf("1 passed, 0 failed\n");
		return 0;
	}
	if (maxoplen > maxlen)
		maxoplen = maxlen;
	if (argc - optind != 3 || !maxlen || !maxoplen || !check_every)
		goto usage;
	seed = strtoull(argv[optind], NULL, 0);
	unsigned long nops = strtoul(argv[optind + 1], NULL, 0);
	path = argv[optind + 2];
	rng = seed;
	good = calloc(1, maxlen + 8);
	temp = malloc(maxlen + 64 * KiB + 8);
	wbuf = malloc(maxlen + 64 * KiB + 8);
	if (!good || !temp || !wbuf) {
		perror("malloc");
		return 2;
	}
	signal(SIGBUS, bus_handler);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("create %s", path);
	for (opnum = 1; opnum <= nops; opnum++) {
		enum op o = choose();

		counts[o]++;
		switch (o) {
		case OP_WRITE: op_write(); break;
		case OP_READ: op_read(); break;
		case OP_MAPREAD: op_map(false); break;
		case OP_MAPWRITE: op_map(true); break;
		case OP_TRUNCATE: op_truncate(false); break;
		case OP_FTRUNCATE: op_truncate(true); break;
		case OP_PUNCH:
		case OP_ZERO:
		case OP_FALLOC: op_fallocate(o); break;
		case OP_REOPEN: op_reopen(); break;
		case OP_FSYNC: op_fsync(); break;
		case OP_READ2: op_read2(); break;
		case OP_APPEND2: op_append2(); break;
		default: break;
		}
		check_size(fd, "fstat after the op");
		if (opnum % check_every == 0)
			check_all("periodic whole-file check");
	}
	opnum = nops;
	check_all("final whole-file check");
	if (close(fd))
		fail("final close");
	fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("reopen after the final close");
	check_all("whole-file check after the final close");
	close(fd);
	if (model_out) {
		int mf = open(model_out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (mf < 0 || write(mf, good, msize) != (ssize_t)msize || close(mf)) {
			perror(model_out);
			return 2;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# ops:");
	for (int i = 0; i < OP_N; i++)
		printf(" %s=%lu", names[i], counts[i]);
	printf("\nok - fsx %s seed %" PRIu64 ": %lu ops, final size %zu, %.1f s\n", path, seed,
	       nops, msize, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	printf("1 passed, 0 failed\n");
	return 0;
usage:
	fprintf(stderr,
		"usage: %s [-vA] [-m MODEL_OUT] [-l MAXLEN] [-o MAXOPLEN] [-c CHECK_EVERY] SEED NOPS PATH\n"
		"       %s -C MODEL PATH\n",
		argv[0], argv[0]);
	return 2;
}
