/*
 * test_journal.c — per-process journals and dead processes:
 *   journal suite (engine/journal.h, over an event log of its own, fed by
 *   ev_set_observer as the services host feeds it):
 *     J1  a process's journal is exactly its events: its grants, a release
 *         it made (by_pid/by_start), its transactions' events, its
 *         dead_process record; nothing of another process, nothing keyed by
 *         a pid without a start time;
 *     J2  the index rebuilt from the log equals the one built event by event;
 *     J3  a reused pid (same pid, other start) never shares a journal:
 *         "PID" is the newest, "PID.START" names each;
 *     J4  retention: older processes leave the listing and the index.
 *   svc_dead suite (svc.h V6, in a store, with real child processes):
 *     a holder killed while the store is open gets dead_processes/PID
 *     within 1 s naming the lease and its token; a holder killed while the
 *     store is closed gets its record at the next open, once, and both
 *     survive a reopen; a dead waiter's record lists its withdrawn wait;
 *     a power cut that loses the dead_process event with the event log's
 *     unsynced tail: the next open derives it from the WAL, once.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "faultos.h"
#include "journal.h"
#include "txdtest.h"

static char dir[] = "/tmp/txdjr.XXXXXX";
static struct evlog *ev;
static struct journal *jr;

static void on_logged(void *arg, uint64_t time_ns, const cJSON *o)
{
	journal_note(arg, time_ns, o);
}

static void on_trimmed(void *arg, uint64_t oldest_ns)
{
	journal_prune(arg, oldest_ns);
}

static void setup(void)
{
	strcpy(dir, "/tmp/txdjr.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(ev_open(dir, &ev), 0);
	cr_assert_eq(journal_open(&jr), 0);
	struct ev_observer obs = {.logged = on_logged, .trimmed = on_trimmed, .arg = jr};
	ev_set_observer(ev, &obs);
}

static void teardown(void)
{
	ev_close(ev);
	journal_close(jr);
	tt_rmtree(dir);
}

TestSuite(journal, .init = setup, .fini = teardown, .timeout = 60);

#define T0 1796620195000000000ull /* 2026-12-07 */
#define SEC 1000000000ull

static void lease_ev(uint64_t ns, const char *type, const char *name, uint32_t pid,
		     uint64_t start, uint32_t by_pid, uint64_t by_start)
{
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "name", name);
	ev_add_u64(f, "token", 7);
	ev_add_u64(f, "pid", pid);
	ev_add_u64(f, "start", start);
	if (by_pid) {
		ev_add_u64(f, "by_pid", by_pid);
		ev_add_u64(f, "by_start", by_start);
	}
	ev_emit(ev, ns, type, f);
}

static void txn_ev(uint64_t ns, const char *type, uint64_t txn, uint32_t pid, uint64_t start)
{
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", txn);
	if (pid) {
		ev_add_u64(f, "pid", pid);
		ev_add_u64(f, "start", start);
	}
	ev_emit(ev, ns, type, f);
}

static char *events_text(void)
{
	char *txt;
	size_t len;
	cr_assert_eq(ev_render(ev, 0, NULL, NULL, 0, &txt, &len), 0);
	return txt;
}

static char *journal_of(struct journal *j, const char *name)
{
	struct journal_proc p;
	char *txt = events_text(), *out;
	size_t len;
	cr_assert_eq(journal_find(j, name, 0, false, &p), 0, "journal %s", name);
	cr_assert_eq(journal_render(j, &p, txt, strlen(txt), &out, &len), 0);
	cr_assert_eq(strlen(out), len);
	free(txt);
	return out;
}

static int lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A workload of two processes, 100 (start 5) and 200 (start 6). */
static void workload(void)
{
	lease_ev(T0 + 1 * SEC, "lease_grant", "a", 100, 5, 0, 0);
	lease_ev(T0 + 2 * SEC, "lease_release", "a", 100, 5, 200, 6); /* 200 released it */
	txn_ev(T0 + 3 * SEC, "txn_begin", 41, 100, 5);
	txn_ev(T0 + 4 * SEC, "txn_commit", 41, 0, 0);
	txn_ev(T0 + 5 * SEC, "txn_begin", 42, 200, 6);
	txn_ev(T0 + 6 * SEC, "txn_abort", 42, 0, 0);
	cJSON *f = cJSON_CreateObject(); /* a pid without a start: nobody's */
	cJSON_AddNumberToObject(f, "pid", 100);
	ev_emit(ev, T0 + 7 * SEC, "txn_begin", f);
	f = cJSON_CreateObject();
	ev_add_u64(f, "pid", 100);
	ev_add_u64(f, "start", 5);
	cJSON *l = cJSON_AddArrayToObject(f, "leases_released");
	cJSON_AddItemToArray(l, cJSON_CreateString("b"));
	ev_emit(ev, T0 + 8 * SEC, "dead_process", f);
}

Test(journal, J1_a_journal_is_exactly_its_process_events)
{
	workload();
	char *j = journal_of(jr, "100");
	cr_assert_eq(lines(j), 5, "grant, release, its txn's begin and commit, dead: %s", j);
	cr_assert(strstr(j, "\"type\":\"lease_grant\""));
	cr_assert(strstr(j, "\"type\":\"txn_commit\",\"txn\":41"));
	cr_assert(strstr(j, "\"type\":\"dead_process\""));
	cr_assert_null(strstr(j, "\"txn\":42"), "another process's transaction");
	free(j);
	j = journal_of(jr, "200");
	cr_assert_eq(lines(j), 3, "the release it made and its txn: %s", j);
	cr_assert(strstr(j, "\"type\":\"lease_release\",\"name\":\"a\""));
	cr_assert(strstr(j, "\"type\":\"txn_abort\",\"txn\":42"));
	free(j);
}

struct listing {
	char text[4096];
	size_t len;
};

static int list_fn(void *arg, const struct journal_proc *p, const char *name)
{
	struct listing *l = arg;
	l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len,
				   "%s=%" PRIu32 ":%" PRIu64 ":%" PRIu64 ":%" PRIu64 ":%d ", name,
				   p->pid, p->start, p->last_ns, p->dead_ns, p->newest);
	return 0;
}

static void listing(struct journal *j, uint64_t oldest, bool dead, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	cr_assert_eq(journal_list(j, oldest, dead, list_fn, l), 0);
}

Test(journal, J2_rebuilt_index_equals_the_one_built_event_by_event)
{
	workload();
	struct journal *again;
	struct listing a, b, da, db;
	char *txt = events_text();
	cr_assert_eq(journal_open(&again), 0);
	journal_note_text(again, txt, strlen(txt));
	listing(jr, 0, false, &a);
	listing(again, 0, false, &b);
	cr_assert_str_eq(a.text, b.text);
	listing(jr, 0, true, &da);
	listing(again, 0, true, &db);
	cr_assert_str_eq(da.text, db.text);
	cr_assert(strstr(da.text, "100=100:5:") && !strstr(da.text, "200="), "%s", da.text);
	char *j1 = journal_of(jr, "200"), *j2 = journal_of(again, "200");
	cr_assert_str_eq(j1, j2, "the same journal after a rebuild");
	free(j1);
	free(j2);
	free(txt);
	journal_close(again);
}

Test(journal, J3_a_reused_pid_never_shares_a_journal)
{
	lease_ev(T0 + 1 * SEC, "lease_grant", "old", 42, 100, 0, 0);
	lease_ev(T0 + 2 * SEC, "lease_grant", "new", 42, 200, 0, 0);
	struct listing l;
	listing(jr, 0, false, &l);
	cr_assert(strstr(l.text, "42.100=42:100:") && strstr(l.text, "42=42:200:"), "%s", l.text);
	char *j = journal_of(jr, "42");
	cr_assert(strstr(j, "\"new\"") && !strstr(j, "\"old\""), "PID is the newest: %s", j);
	free(j);
	j = journal_of(jr, "42.100");
	cr_assert(strstr(j, "\"old\"") && !strstr(j, "\"new\""), "%s", j);
	free(j);
	j = journal_of(jr, "42.200");
	cr_assert(strstr(j, "\"new\"") && !strstr(j, "\"old\""), "%s", j);
	free(j);
	struct journal_proc p;
	cr_assert_eq(journal_find(jr, "42.300", 0, false, &p), -ENOENT);
	cr_assert_eq(journal_find(jr, "42x", 0, false, &p), -ENOENT);
	cr_assert_eq(journal_find(jr, "-1", 0, false, &p), -ENOENT);
	cr_assert_eq(journal_find(jr, "42", 0, true, &p), -ENOENT, "not dead");
	/* only the canonical names journal_list gives (records probe R7) */
	static const char *const aliases[] = {"042", "+42", " 42", "42 ", "42.0100", "42.+100",
					      "042.100", "42.", ".100", "42.100.1",
					      "99999999999999999999999"};
	for (size_t k = 0; k < sizeof(aliases) / sizeof(aliases[0]); k++)
		cr_assert_eq(journal_find(jr, aliases[k], 0, false, &p), -ENOENT, "'%s'",
			     aliases[k]);
}

Test(journal, J4_retention_drops_old_processes)
{
	workload();
	lease_ev(T0 + 100 * SEC, "lease_grant", "late", 300, 9, 0, 0);
	struct listing l;
	listing(jr, T0 + 50 * SEC, false, &l);
	cr_assert(strstr(l.text, "300=") && !strstr(l.text, "100=") && !strstr(l.text, "200="),
		  "%s", l.text);
	listing(jr, T0 + 50 * SEC, true, &l);
	cr_assert_eq(l.len, 0, "the dead record is past retention: %s", l.text);
	journal_prune(jr, T0 + 50 * SEC);
	struct journal_proc p;
	cr_assert_eq(journal_find(jr, "100", 0, false, &p), -ENOENT, "gone from the index");
	cr_assert_eq(journal_find(jr, "300", 0, false, &p), 0);
}

Test(journal, J4_the_index_forgets_with_the_event_log_trim)
{
	workload();
	lease_ev(T0 + 100 * SEC, "lease_grant", "late", 300, 9, 0, 0);
	struct journal_proc p;
	cr_assert_eq(journal_find(jr, "100", 0, false, &p), 0);
	cr_assert_eq(ev_trim(ev, T0 + 50 * SEC), 0);
	cr_assert_eq(journal_find(jr, "100", 0, false, &p), -ENOENT, "pruned with the log");
	cr_assert_eq(journal_find(jr, "200", 0, false, &p), -ENOENT);
	cr_assert_eq(journal_find(jr, "300", 0, false, &p), 0);
}

Test(journal, dead_record_is_the_dead_process_event)
{
	workload();
	struct journal_proc p;
	char *txt = events_text(), *out;
	size_t len;
	cr_assert_eq(journal_find(jr, "100", 0, true, &p), 0);
	cr_assert_eq(p.dead_ns, T0 + 8 * SEC);
	cr_assert_eq(journal_render_dead(&p, txt, strlen(txt), &out, &len), 0);
	cJSON *o = cJSON_Parse(out);
	cr_assert_not_null(o, "valid JSON: %s", out);
	cr_assert_str_eq(cJSON_GetObjectItem(o, "type")->valuestring, "dead_process");
	cJSON_Delete(o);
	free(out);
	cr_assert_eq(journal_find(jr, "200", 0, true, &p), -ENOENT);
	cr_assert_eq(journal_find(jr, "200", 0, false, &p), 0);
	cr_assert_eq(journal_render_dead(&p, txt, strlen(txt), &out, &len), -ENOENT);
	free(txt);
}

/* ---- svc.h V6 in a store ------------------------------------------------- */
static struct txd_cred me;

static void init_me(void)
{
	me = (struct txd_cred){.uid = 0, .gid = 0, .pid = getpid(), .umask = 022};
}

TestSuite(svc_dead, .init = init_me, .timeout = 120);

static pid_t child(void)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* a failed assertion ends the test without kill_child: go with it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

static void kill_child(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void wait_for_lease(struct txd_fs *fs, pid_t pid, const char *name)
{
	char path[128];
	uint64_t dir;
	struct txd_entry e;
	snprintf(path, sizeof(path), ".txdir/leases/waiting/%d", (int)pid);
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &dir), 0);
	cr_assert_eq(txd_mkdir(fs, &me, dir, name, 0755, &e), 0);
	txd_forget(fs, e.node, 1);
}

static uint64_t grab_for(struct txd_fs *fs, pid_t pid, const char *name)
{
	char path[128], *buf;
	uint64_t dir;
	size_t len;
	struct txd_entry e;
	snprintf(path, sizeof(path), ".txdir/leases/active/%d", (int)pid);
	cr_assert_eq(tt_resolve(fs, path, NULL, NULL, &dir), 0);
	cr_assert_eq(txd_mkdir(fs, &me, dir, name, 0755, &e), 0);
	txd_forget(fs, e.node, 1);
	snprintf(path, sizeof(path), ".txdir/leases/active/%d/%s/token", (int)pid, name);
	cr_assert_eq(tt_get(fs, path, &buf, &len), 0);
	uint64_t tok = strtoull(buf, NULL, 10);
	free(buf);
	return tok;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* dead_processes/PID as parsed JSON, polled for up to ms; NULL if absent. */
static cJSON *dead_record(struct txd_fs *fs, pid_t pid, uint64_t ms)
{
	char path[96], *buf;
	size_t len;
	snprintf(path, sizeof(path), ".txdir/recovery/dead_processes/%d", (int)pid);
	for (uint64_t until = now_ms() + ms;;) {
		if (tt_get(fs, path, &buf, &len) == 0) {
			cJSON *o = cJSON_ParseWithLength(buf, len);
			free(buf);
			return o;
		}
		if (now_ms() >= until)
			return NULL;
		usleep(10000);
	}
}

static void assert_record(cJSON *o, const char *name, uint64_t token, const char *reason,
			  bool down)
{
	cr_assert_not_null(o, "a dead_processes record");
	cJSON *l = cJSON_GetObjectItem(o, "leases_released");
	cr_assert_eq(cJSON_GetArraySize(l), 1);
	cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(l, 0), "name")->valuestring, name);
	cr_assert_eq((uint64_t)cJSON_GetObjectItem(cJSON_GetArrayItem(l, 0), "token")->valuedouble,
		     token);
	cr_assert_str_eq(cJSON_GetObjectItem(o, "reason")->valuestring, reason);
	cr_assert_eq(cJSON_IsTrue(cJSON_GetObjectItem(o, "while_server_down")), down);
	cr_assert(cJSON_IsString(cJSON_GetObjectItem(o, "detected")));
}

static int count_dead_events(const char *store)
{
	char path[512], line[4096];
	int n = 0;
	snprintf(path, sizeof(path), "%s/coordination/events.log", store);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, "\"type\":\"dead_process\"") != NULL;
	if (f)
		fclose(f);
	return n;
}

Test(svc_dead, V6_death_while_open_and_while_closed_recorded_and_kept)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_opts o = {.durability = TXD_DUR_FSYNC};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	pid_t a = child(), b = child();
	uint64_t ta = grab_for(fs, a, "alive-then-killed");
	uint64_t tb = grab_for(fs, b, "killed-while-closed");
	uint64_t t0 = now_ms();
	kill_child(a);
	cJSON *r = dead_record(fs, a, 5000);
	uint64_t el = now_ms() - t0;
	assert_record(r, "alive-then-killed", ta, "death", false);
	cr_assert_leq(el, 1000, "detected within 1 s (took %" PRIu64 " ms)", el);
	cJSON_Delete(r);
	cr_assert_null(dead_record(fs, b, 0), "b is alive");
	txd_fs_close(fs);
	kill_child(b);
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
		r = dead_record(fs, b, 0);
		assert_record(r, "killed-while-closed", tb, "dead_process", true);
		cJSON_Delete(r);
		r = dead_record(fs, a, 0);
		assert_record(r, "alive-then-killed", ta, "death", false);
		cJSON_Delete(r);
		char path[96], *buf;
		size_t len;
		snprintf(path, sizeof(path), ".txdir/recovery/journals/%d/journal", (int)a);
		cr_assert_eq(tt_get(fs, path, &buf, &len), 0, "round %d: a's journal", round);
		cr_assert(strstr(buf, "\"type\":\"lease_grant\",\"name\":\"alive-then-killed\"") &&
			  strstr(buf, "\"type\":\"lease_cleanup\",\"name\":\"alive-then-killed\""),
			  "%s", buf);
		free(buf);
		txd_fs_close(fs);
		cr_assert_eq(count_dead_events(store), 2, "round %d: one record per death", round);
	}
	tt_rmtree(store);
	free(store);
}

Test(svc_dead, V6_a_dead_waiter_records_its_withdrawn_wait)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_opts o = {.durability = TXD_DUR_FSYNC};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	pid_t h = child(), w = child();
	grab_for(fs, h, "queue");
	wait_for_lease(fs, w, "queue");
	kill_child(w);
	cJSON *r = dead_record(fs, w, 5000);
	cr_assert_not_null(r, "the waiter's death is recorded");
	cJSON *waits = cJSON_GetObjectItem(r, "waits_withdrawn");
	cr_assert_eq(cJSON_GetArraySize(waits), 1);
	cr_assert_str_eq(cJSON_GetArrayItem(waits, 0)->valuestring, "queue");
	cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "leases_released")), 0);
	cJSON_Delete(r);
	kill_child(h);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

static void crash_close(struct txd_fs *fs)
{
	faultos_install();
	faultos_crash(); /* no checkpoint at close: replay has the records */
	txd_fs_close(fs);
	faultos_revive();
	faultos_uninstall();
}

Test(svc_dead, V6_a_record_lost_with_the_event_log_is_derived_once)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_opts o = {.durability = TXD_DUR_FSYNC};
	char path[512];
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
	pid_t a = child();
	uint64_t ta = grab_for(fs, a, "powercut");
	kill_child(a);
	cJSON *r = dead_record(fs, a, 5000);
	cr_assert_not_null(r);
	cJSON_Delete(r);
	crash_close(fs);
	snprintf(path, sizeof(path), "%s/coordination/events.log", store);
	cr_assert_eq(truncate(path, 0), 0); /* what a power cut may do to it */
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
		r = dead_record(fs, a, 0);
		assert_record(r, "powercut", ta, "death", false);
		cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(r, "derived")), "round %d", round);
		cJSON_Delete(r);
		crash_close(fs);
		cr_assert_eq(count_dead_events(store), 1, "round %d: derived once", round);
	}
	tt_rmtree(store);
	free(store);
}
