/*
 * fuzz.h — shared by the libFuzzer harnesses in tests/fuzz/ (one
 * LLVMFuzzerTestOneInput per .c file).
 *
 * Each harness is built twice: with clang -fsanitize=fuzzer,address,undefined
 * (`make fuzz`, the fuzzing run), and with the project's compiler plus the
 * driver tests/fuzz/replay.c (`make check`: every corpus file replayed in
 * the normal and the ASan build). A harness says what it checks in its top
 * comment; a broken property is abort(), which both builds report.
 *
 * Scratch files live in one private temp directory per process (tmpfs when
 * /dev/shm exists: the harnesses write a file per input), removed at exit.
 */
#ifndef TXD_FUZZ_H
#define TXD_FUZZ_H

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken property: say which, then abort (libFuzzer saves the input). */
#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,     \
				__LINE__, #cond);                                     \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* snprintf into an array that must not truncate. */
#define FUZZ_FMT(buf, ...) FUZZ_CHECK(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

/* Remove every entry of dir (one level of subdirectories deep is enough for
 * the harnesses' layouts; deeper ones recurse). */
static inline void fuzz_clear(const char *dir, int rmself)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		char p[PATH_MAX];
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= (int)sizeof(p))
				continue;
			struct stat st;
			if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
				fuzz_clear(p, 1);
			else
				unlink(p);
		}
		closedir(d);
	}
	if (rmself)
		rmdir(dir);
}

static char fuzz_tmp_path[PATH_MAX];

static inline void fuzz_tmp_cleanup(void)
{
	if (fuzz_tmp_path[0])
		fuzz_clear(fuzz_tmp_path, 1);
}

/* The process's scratch directory (created on first use). */
static inline const char *fuzz_tmpdir(void)
{
	if (!fuzz_tmp_path[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(fuzz_tmp_path, sizeof(fuzz_tmp_path), "%s/txdfuzz.XXXXXX", base);
		if (!mkdtemp(fuzz_tmp_path)) {
			perror("mkdtemp");
			abort();
		}
		atexit(fuzz_tmp_cleanup);
	}
	return fuzz_tmp_path;
}

/* Write n bytes as file path (create or truncate). */
static inline void fuzz_write_file(const char *path, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0);
	const uint8_t *p = buf;
	while (n) {
		ssize_t k = write(fd, p, n);
		FUZZ_CHECK(k > 0);
		p += k;
		n -= (size_t)k;
	}
	close(fd);
}

/* Whether a harness that works on a whole store should make a fresh one
 * now. FUZZ_STORE_REUSE=N: one store serves N inputs (default 1: a fresh
 * store per input, so every input reproduces alone, as the corpus replay
 * in `make check` runs them). Making a store costs ~8 ms under ASan (its
 * threads, reserve and final checkpoint), so `make fuzz` runs these
 * harnesses with N = 1000: inputs then also meet what earlier ones left
 * (leftover proposals, prepared transactions, a long event log), and a
 * crash the saved input does not reproduce alone is replayed with the
 * inputs before it (libFuzzer's -runs over the corpus, in order). Call it
 * only while a store is open: it counts the inputs served. */
static inline bool fuzz_store_due(void)
{
	static long reuse = -1, used;
	if (reuse < 0) {
		const char *e = getenv("FUZZ_STORE_REUSE");
		reuse = e ? atol(e) : 1;
		if (reuse < 1)
			reuse = 1;
	}
	if (++used < reuse)
		return false;
	used = 0;
	return true;
}

static inline uint32_t fuzz_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t fuzz_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline void fuzz_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

#endif
