/*
 * tests/support/tsan/criterion/criterion.h — a stand-in for Criterion in the
 * ThreadSanitizer build (make tsan: BUILD=build-tsan SAN=tsan puts this
 * directory first on the include path and links no libcriterion).
 *
 * Why: Criterion maps its inheritable arena at a fixed address that TSan's
 * shadow memory owns, so every Criterion binary built with -fsanitize=thread
 * aborts at start ("Could not initialize inheritable arena", Criterion issue
 * #274). The engine suites use a small part of Criterion's API; this header
 * provides that part with the same meaning:
 *   TestSuite(s, .init, .fini, .timeout), Test(s, n [, options]),
 *   cr_assert* (ends the test, runs .fini), cr_expect* (marks it failed and
 *   goes on), cr_log_info.
 * Each test runs in its own forked child (as in Criterion: isolation, and a
 * timeout by alarm), the runner process itself starts no thread. The last
 * line has Criterion's form ("[====] Synthesis: Tested: N | Passing: P |
 * Failing: F | Crashing: C"), which tests/check.sh reads. A child that exits
 * with TSan's exit code (66, reports found) is a failed test.
 * Arguments: --filter SUITE/NAME-PREFIX (a * at the end is ignored), and
 * --skip-file FILE: lines "SUITE/NAME reason" name tests not run (counted
 * neither passed nor failed, listed as skipped; tests/tsan.skip holds the
 * timing and memory benchmarks that TSan's slowdown and shadow make
 * meaningless).
 */
#ifndef TXD_CRITERION_SHIM_H
#define TXD_CRITERION_SHIM_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shim_opts {
	void (*init)(void);
	void (*fini)(void);
	double timeout;
	bool disabled;
	const char *description;
};

struct shim_test {
	const char *suite, *name;
	void (*fn)(void);
	const struct shim_opts *suite_opts;
	struct shim_opts opts;
	struct shim_test *next;
};

static struct shim_test *shim_tests, **shim_tail = &shim_tests;
static jmp_buf shim_abort;
static bool shim_failed;

static inline void shim_register(struct shim_test *t)
{
	*shim_tail = t;
	shim_tail = &t->next;
}

__attribute__((format(printf, 5, 6))) static inline void
shim_fail(bool fatal, const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "[----] %s:%d: Assertion failed: %s", file, line, expr);
	if (fmt[0] && fmt[1]) { /* " " + the caller's message */
		fputc(':', stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	shim_failed = true;
	if (fatal)
		longjmp(shim_abort, 1);
}

#define TestSuite(s, ...) static const struct shim_opts shim_suite_##s = {__VA_ARGS__}

#define Test(s, n, ...)                                                                  \
	static void shim_fn_##s##_##n(void);                                             \
	static struct shim_test shim_t_##s##_##n = {#s, #n, shim_fn_##s##_##n,            \
						    &shim_suite_##s, {__VA_ARGS__}, NULL}; \
	__attribute__((constructor)) static void shim_reg_##s##_##n(void)                \
	{                                                                                \
		shim_register(&shim_t_##s##_##n);                                        \
	}                                                                                \
	static void shim_fn_##s##_##n(void)

#define SHIM_CHECK(fatal, cond, expr, ...)                                            \
	do {                                                                          \
		if (!(cond))                                                          \
			shim_fail(fatal, __FILE__, __LINE__, expr, " " __VA_ARGS__);  \
	} while (0)

#define cr_assert(c, ...) SHIM_CHECK(true, c, #c, __VA_ARGS__)
#define cr_expect(c, ...) SHIM_CHECK(false, c, #c, __VA_ARGS__)
#define cr_expect_not(c, ...) SHIM_CHECK(false, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_not(c, ...) SHIM_CHECK(true, !(c), "!(" #c ")", __VA_ARGS__)
#define SHIM_CMP(fatal, a, op, b, ...) SHIM_CHECK(fatal, (a)op(b), #a " " #op " " #b, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) SHIM_CMP(true, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) SHIM_CMP(true, a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) SHIM_CMP(true, a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) SHIM_CMP(true, a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) SHIM_CMP(true, a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) SHIM_CMP(true, a, >=, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) SHIM_CMP(false, a, ==, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) SHIM_CMP(false, a, !=, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) SHIM_CMP(false, a, <, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) SHIM_CMP(false, a, <=, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) SHIM_CMP(false, a, >, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) SHIM_CMP(false, a, >=, b, __VA_ARGS__)
#define cr_assert_null(p, ...) SHIM_CHECK(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) SHIM_CHECK(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) SHIM_CHECK(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) SHIM_CHECK(false, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define SHIM_STR(fatal, a, op, b, ...)                                                 \
	SHIM_CHECK(fatal, strcmp((a), (b)) op 0, #a " " #op " " #b, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) SHIM_STR(true, a, ==, b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) SHIM_STR(true, a, !=, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) SHIM_STR(false, a, ==, b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) SHIM_STR(false, a, !=, b, __VA_ARGS__)
#define cr_log_info(...) (fprintf(stderr, "[----] " __VA_ARGS__), fputc('\n', stderr))

/* In the forked child: init, the test, fini (also after a failed assert). */
static inline int shim_child(const struct shim_test *t)
{
	void (*init)(void) = t->opts.init ? t->opts.init : t->suite_opts->init;
	void (*fini)(void) = t->opts.fini ? t->opts.fini : t->suite_opts->fini;
	double tmo = t->opts.timeout > 0 ? t->opts.timeout : t->suite_opts->timeout;
	if (tmo > 0)
		alarm((unsigned)tmo + 1);
	if (!setjmp(shim_abort)) {
		if (init)
			init();
		t->fn();
	}
	if (fini && !setjmp(shim_abort))
		fini();
	fflush(NULL);
	return shim_failed ? 1 : 0;
}

static inline bool shim_selected(const struct shim_test *t, const char *filter)
{
	if (!filter)
		return true;
	char name[512];
	snprintf(name, sizeof(name), "%s/%s", t->suite, t->name);
	size_t n = strcspn(filter, "*");
	return !strncmp(name, filter, n);
}

static inline bool shim_skipped(const struct shim_test *t, const char *skip_file)
{
	char name[512], line[1024];
	bool found = false;
	FILE *f = skip_file ? fopen(skip_file, "r") : NULL;
	if (!f)
		return false;
	snprintf(name, sizeof(name), "%s/%s", t->suite, t->name);
	while (!found && fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, " \t\n");
		found = line[0] != '#' && n == strlen(name) && !strncmp(line, name, n);
	}
	fclose(f);
	return found;
}

static inline double shim_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *filter = NULL, *skip_file = NULL;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--filter") && i + 1 < argc)
			filter = argv[++i];
		else if (!strncmp(argv[i], "--filter=", 9))
			filter = argv[i] + 9;
		else if (!strcmp(argv[i], "--skip-file") && i + 1 < argc)
			skip_file = argv[++i];
	int tested = 0, passing = 0, failing = 0, crashing = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (struct shim_test *t = shim_tests; t; t = t->next) {
		if (t->opts.disabled || t->suite_opts->disabled || !shim_selected(t, filter))
			continue;
		if (shim_skipped(t, skip_file)) {
			printf("[SKIP] %s::%s (%s)\n", t->suite, t->name, skip_file);
			continue;
		}
		tested++;
		double t0 = shim_now();
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0)
			_exit(shim_child(t));
		int st = 0;
		while (waitpid(pid, &st, 0) < 0)
			;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			passing++;
			printf("[PASS] %s::%s (%.2fs)\n", t->suite, t->name, shim_now() - t0);
		} else if (WIFSIGNALED(st)) {
			crashing++;
			printf("[FAIL] %s::%s: killed by signal %d%s\n", t->suite, t->name,
			       WTERMSIG(st), WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
		} else {
			failing++;
			printf("[FAIL] %s::%s%s\n", t->suite, t->name,
			       WEXITSTATUS(st) == 66 ? " (ThreadSanitizer reports)" : "");
		}
	}
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n", tested,
	       passing, failing, crashing);
	return failing || crashing ? 1 : 0;
}

#endif
