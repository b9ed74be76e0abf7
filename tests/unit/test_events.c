/*
 * test_events.c — the event log module (engine/events.h), invariants E1-E5,
 * on a log of its own in a temp directory (no store, no FUSE).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "txdtest.h"

static char dir[] = "/tmp/txdev.XXXXXX";
static struct evlog *ev;

static void setup(void)
{
	strcpy(dir, "/tmp/txdev.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(ev_open(dir, &ev), 0);
}

static void teardown(void)
{
	ev_close(ev);
	ev = NULL;
	tt_rmtree(dir);
}

TestSuite(events, .init = setup, .fini = teardown, .timeout = 60);

static char *render(uint64_t oldest, ev_path_ok_fn ok, void *arg)
{
	char *out;
	size_t len;
	cr_assert_eq(ev_render(ev, oldest, ok, arg, 0, &out, &len), 0);
	cr_assert_eq(strlen(out), len, "NUL-terminated text");
	return out;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void emit_named(uint64_t ns, const char *type, const char *name, const char *path)
{
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "name", name);
	if (path)
		cJSON_AddStringToObject(f, "path", path);
	ev_add_u64(f, "txn", 1796620195416694ull);
	ev_emit(ev, ns, type, f);
}

/* E1: any name gives one valid JSON object per line, with time and type. */
Test(events, e1_every_line_is_json_with_time_and_type)
{
	emit_named(1000000000ull, "txn_begin", "a b\"q", "/x\"y\n\\z");
	emit_named(2000000000ull, "txn_abort", "tab\there", NULL);
	char *out = render(0, NULL, NULL), *save, *line;
	int n = 0;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		cJSON *o = cJSON_Parse(line);
		cr_assert_not_null(o, "not JSON: %s", line);
		cr_assert(cJSON_IsString(cJSON_GetObjectItem(o, "time")));
		cr_assert(cJSON_IsString(cJSON_GetObjectItem(o, "type")));
		cr_assert_str_eq(cJSON_GetObjectItem(o, "type")->valuestring, n ? "txn_abort" : "txn_begin");
		if (!n)
			cr_assert_str_eq(cJSON_GetObjectItem(o, "name")->valuestring, "a b\"q");
		cJSON_Delete(o);
	}
	cr_assert_eq(n, 2);
	char *all = render(0, NULL, NULL);
	cr_assert(strstr(all, "\"txn\":1796620195416694"), "u64 printed exactly");
	free(all);
	free(out);
}

/* E2: an emitted event is in the file when ev_emit returns (a reopen without
 * sync or close sees it); a replayed commit's event is added once. */
Test(events, e2_emitted_event_survives_without_close)
{
	emit_named(1000000000ull, "txn_begin", "one", NULL);
	struct evlog *again;
	cr_assert_eq(ev_open(dir, &again), 0); /* a second reader of the same file */
	char *out;
	size_t len;
	cr_assert_eq(ev_render(again, 0, NULL, NULL, 0, &out, &len), 0);
	cr_assert_eq(count_lines(out) >= 1 && strstr(out, "\"one\"") != NULL, true);
	free(out);
	ev_close(again);

	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", 7);
	ev_add_u64(f, "commit", 5);
	ev_emit(ev, 2000000000ull, "txn_commit", f);
	cr_assert_eq(ev_last_commit(ev), 5);
	ev_commit_replayed(ev, 2000000000ull, 7, 5); /* has it: nothing */
	ev_commit_replayed(ev, 3000000000ull, 8, 6); /* lacks it: derived */
	ev_commit_replayed(ev, 3000000000ull, 0, 7); /* not a transaction: nothing */
	ev_close(ev);
	cr_assert_eq(ev_open(dir, &ev), 0);
	cr_assert_eq(ev_last_commit(ev), 6);
	out = render(0, NULL, NULL);
	cr_assert_eq(count_lines(out), 3, "%s", out);
	cr_assert(strstr(out, "\"commit\":6,\"from_wal\":true"));
	free(out);
}

/* E3: retention by time, in rendering and in the file. */
Test(events, e3_retention_by_time)
{
	for (uint64_t k = 1; k <= 10; k++)
		emit_named(k * 1000000000ull, "tick", "t", NULL);
	char *out = render(6000000000ull, NULL, NULL);
	cr_assert_eq(count_lines(out), 5);
	free(out);
	cr_assert_eq(ev_trim(ev, 8000000000ull), 0);
	ev_close(ev);
	cr_assert_eq(ev_open(dir, &ev), 0);
	out = render(0, NULL, NULL);
	cr_assert_eq(count_lines(out), 3, "trimmed in the file: %s", out);
	free(out);
	emit_named(11000000000ull, "tick", "after trim", NULL);
	out = render(0, NULL, NULL);
	cr_assert_eq(count_lines(out), 4);
	free(out);
}

/* E4: a torn last line is cut at open and never shown. */
Test(events, e4_torn_tail_is_cut)
{
	emit_named(1000000000ull, "whole", "w", NULL);
	ev_close(ev);
	char path[64];
	snprintf(path, sizeof(path), "%s/events.log", dir);
	int fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "2000000000 {\"time\":\"x\",\"ty", 27), 27);
	close(fd);
	cr_assert_eq(ev_open(dir, &ev), 0);
	emit_named(3000000000ull, "next", "n", NULL);
	char *out = render(0, NULL, NULL);
	cr_assert_eq(count_lines(out), 2, "%s", out);
	cr_assert_null(strstr(out, "\"ty\n"));
	free(out);
}

static bool only_public(void *arg, const char *path)
{
	(void)arg;
	return strncmp(path, "/public/", 8) == 0;
}

/* E5: a path the reader's filter refuses reads "(hidden)". */
Test(events, e5_path_filter_hides)
{
	emit_named(1000000000ull, "checksum_error", "a", "/secret/NAME");
	emit_named(2000000000ull, "checksum_error", "b", "/public/ok");
	char *out = render(0, only_public, NULL);
	cr_assert_null(strstr(out, "NAME"), "%s", out);
	cr_assert(strstr(out, "\"path\":\"(hidden)\""));
	cr_assert(strstr(out, "\"path\":\"/public/ok\""));
	free(out);
}

/* E5: a "private" field is shown only to root and to the event's uid. */
Test(events, e5_private_only_to_its_uid)
{
	cJSON *f = cJSON_CreateObject();
	cJSON_AddNumberToObject(f, "uid", 1000);
	cJSON_AddStringToObject(f, "private", "aborted conflict path=/a/SECRET winner=3");
	ev_emit(ev, 1000000000ull, "txn_conflict", f);
	char *out;
	size_t len;
	uint32_t readers[] = {0, 1000, 1001};
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(ev_render(ev, 0, only_public, NULL, readers[k], &out, &len), 0);
		cr_assert_eq(strstr(out, "SECRET") != NULL, k < 2, "uid %u: %s", readers[k], out);
		cJSON *o = cJSON_Parse(out);
		cr_assert_not_null(o);
		cJSON_Delete(o);
		free(out);
	}
}

static void emit_commit(uint64_t ns, uint64_t commit)
{
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", 7);
	ev_add_u64(f, "commit", commit);
	ev_emit(ev, ns, "txn_commit", f);
}

/* SPEC §7: a txn_commit event of a commit past the WAL's end (lost with its
 * unsynced tail) is cut with what follows it; replay's derivation of the
 * reused ids is not skipped (ev_last_commit). */
Test(events, cut_after_the_wal_end)
{
	emit_commit(1000000000ull, 3);
	emit_named(1500000000ull, "lease_grant", "a", NULL);
	emit_commit(2000000000ull, 4);
	emit_commit(3000000000ull, 5);
	cr_expect_eq(ev_last_commit(ev), 5);
	cr_expect_eq(ev_cut_after(ev, 5), 0, "nothing past the end: nothing cut");
	cr_expect_eq(ev_cut_after(ev, 3), 1);
	cr_expect_eq(ev_last_commit(ev), 3);
	char *out = render(0, NULL, NULL);
	cr_expect_eq(count_lines(out), 2, "%s", out);
	cr_expect_null(strstr(out, "\"commit\":4"), "%s", out);
	free(out);
	ev_close(ev);
	cr_assert_eq(ev_open(dir, &ev), 0);
	cr_expect_eq(ev_last_commit(ev), 3, "the cut is in the file");
}

/* syslog: one connection kept across events. After the first event the
 * socket's path is unlinked: a sender that connects per event (syslog(3)
 * without a daemon) could not reach it; the kept connection still does.
 * A new daemon at the path (the old one gone) gets the next line. */
static int syslog_daemon(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void syslog_got(int fd, const char *type)
{
	char buf[4096];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 5000), 1, "a syslog line for %s", type);
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 0);
	buf[n] = 0;
	cr_assert(strncmp(buf, "<30>", 4) == 0, "daemon.info: %s", buf);
	cr_assert_not_null(strstr(buf, "]: txdir: {"), "%s", buf);
	cr_assert_not_null(strstr(buf, type), "%s", buf);
}

Test(events, syslog_connection_is_kept_and_renewed)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/log", dir);
	int d1 = syslog_daemon(path);
	ev_syslog_path(path);
	emit_named(1, "one", "a", NULL);
	syslog_got(d1, "\"one\"");
	cr_assert_eq(unlink(path), 0);
	emit_named(2, "two", "a", NULL);
	syslog_got(d1, "\"two\"");
	close(d1);
	int d2 = syslog_daemon(path);
	emit_named(3, "three", "a", NULL);
	syslog_got(d2, "\"three\"");
	close(d2);
	ev_syslog_path(NULL);
}
