/*
 * replay.c — a main() for the fuzz harnesses without libFuzzer: feeds every
 * file named on the command line (a directory: every regular file in it) to
 * LLVMFuzzerTestOneInput, once each, in an exact-size heap buffer (so the
 * ASan build sees any read past the input).
 *
 * Prints one line per harness run, "NAME: N inputs" and exits 0; a broken
 * property or a sanitizer report aborts (tests/fuzz/run.sh counts it).
 */
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	size_t k;
	while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
		n += k;
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				buf = NULL;
			}
			buf = nb;
		}
	}
	fclose(f);
	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", path);
		return -1;
	}
	/* exact size: an overread by one byte lands outside the allocation */
	uint8_t *exact = malloc(n ? n : 1);
	if (!exact) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	unsigned long inputs = 0;
	int bad = 0;
	for (int a = 1; a < argc; a++) {
		struct stat st;
		if (stat(argv[a], &st)) {
			perror(argv[a]);
			bad = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad |= run_file(argv[a]) != 0;
			inputs++;
			continue;
		}
		DIR *d = opendir(argv[a]);
		if (!d) {
			perror(argv[a]);
			bad = 1;
			continue;
		}
		char **names = NULL;
		size_t n = 0, cap = 0;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			if (n == cap) {
				char **nn = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*names));
				if (!nn)
					abort();
				names = nn;
			}
			if (!(names[n++] = strdup(e->d_name)))
				abort();
		}
		closedir(d);
		qsort(names, n, sizeof(*names), cmp_str); /* same order every run */
		for (size_t k = 0; k < n; k++) {
			char p[PATH_MAX];
			if (snprintf(p, sizeof(p), "%s/%s", argv[a], names[k]) >= (int)sizeof(p))
				abort();
			if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
				bad |= run_file(p) != 0;
				inputs++;
			}
			free(names[k]);
		}
		free(names);
	}
	printf("%s: %lu inputs%s\n", argv[0], inputs, bad ? " (some unreadable)" : "");
	return bad;
}
