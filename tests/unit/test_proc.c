/*
 * test_proc.c — process identity and liveness against P1-P4 (proc.h).
 *
 * Identity tests run against a fake /proc (a directory of plain files read
 * through the same txd_os table); the watcher tests fork real children.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/os.h"
#include "../../engine/proc.h"
#include "txdtest.h"

static char root[64];

#define BOOT_A "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n"
#define BOOT_B "11111111-2222-3333-4444-555555555555\n"

static void put(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(path, 0700);
		*s = '/';
	}
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

/* A fake thread tid of process tgid; comm holds ") (" to test the parse. */
static void fake(uint32_t tid, uint32_t tgid, uint32_t ppid, uint32_t uid,
		 uint64_t start, char state)
{
	char rel[64], text[512];

	snprintf(rel, sizeof(rel), "%u/status", tid);
	snprintf(text, sizeof(text),
		 "Name:\tx\nState:\t%c\nTgid:\t%u\nPid:\t%u\nPPid:\t%u\n"
		 "Uid:\t%u\t%u\t%u\t%u\n", state, tgid, tid, ppid, uid, uid, uid, uid);
	put(rel, text);
	snprintf(rel, sizeof(rel), "%u/stat", tid);
	snprintf(text, sizeof(text),
		 "%u (a) (b c) %c %u 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 %" PRIu64
		 " 1000 100 18446744073709551615 1 1 0 0 0\n", tid, state, ppid, start);
	put(rel, text);
}

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/txd-proc-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	put("sys/kernel/random/boot_id", BOOT_A);
}

static void teardown(void)
{
	tt_rmtree(root);
}

TestSuite(proc, .init = setup, .fini = teardown, .timeout = 30);

Test(proc, P1_thread_id_maps_to_its_process)
{
	struct proc *p;
	struct proc_id id;

	fake(100, 100, 1, 1000, 5555, 'S');
	fake(101, 100, 1, 1000, 5556, 'S');   /* a thread of 100 */
	cr_assert_eq(proc_open(root, &p), 0);
	cr_assert_eq(proc_identify(p, 101, &id), 0);
	cr_assert_eq(id.pid, 100);
	cr_assert_eq(id.start, 5555, "start time of the process, not of the thread");
	cr_assert_eq(proc_identify(p, 999, &id), -ESRCH);
	proc_close(p);
}

static void unput(const char *rel)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	cr_assert_eq(unlink(path), 0, "%s", path);
}

/* P1's cache: a repeat caller costs one read of its stat (the status file
 * may be gone: the answer comes from the cache); a reused tid (other start
 * time) is identified afresh; uids are never cached. */
Test(proc, P1_identity_is_cached_per_thread_and_start_time)
{
	struct proc *p;
	struct proc_id id;
	uint64_t hits, misses;

	fake(500, 500, 1, 1000, 100, 'S');
	fake(501, 500, 1, 1000, 101, 'S');   /* a thread of 500 */
	cr_assert_eq(proc_open(root, &p), 0);
	cr_assert_eq(proc_identify(p, 501, &id), 0);
	cr_assert_eq(id.pid, 500);
	unput("501/status");
	unput("500/stat");
	cr_assert_eq(proc_identify(p, 501, &id), 0, "the cache answers: only 501/stat is read");
	cr_assert_eq(id.pid, 500);
	cr_assert_eq(id.start, 100);
	proc_cache_stats(p, &hits, &misses);
	cr_assert_eq(hits, 1);
	cr_assert_eq(misses, 1);
	/* tid 501 reused by a thread of another process */
	fake(600, 600, 1, 2000, 200, 'S');
	fake(501, 600, 1, 2000, 201, 'S');
	cr_assert_eq(proc_identify(p, 501, &id), 0);
	cr_assert_eq(id.pid, 600, "a reused tid is not the cached thread");
	cr_assert_eq(id.start, 200);
	/* may_act_for reads the uid now, cached identity or not */
	fake(700, 700, 1, 1000, 300, 'S');
	cr_assert_eq(proc_may_act_for(p, 1000, 700, &id), 0);
	fake(700, 700, 1, 1001, 300, 'S');   /* setuid: same process, other uid */
	cr_assert_eq(proc_may_act_for(p, 1000, 700, &id), -EPERM);
	fake(700, 700, 1, 1001, 300, 'Z');
	cr_assert_eq(proc_may_act_for(p, 1001, 700, &id), -ESRCH, "a zombie is dead");
	proc_close(p);
}

Test(proc, P2_reused_pid_is_dead)
{
	struct proc *p;
	struct proc_id id;

	fake(200, 200, 1, 1000, 7000, 'S');
	cr_assert_eq(proc_open(root, &p), 0);
	cr_assert_eq(proc_identify(p, 200, &id), 0);
	cr_assert(proc_alive(p, &id));
	fake(200, 200, 1, 1000, 7001, 'S');   /* died; pid 200 reused */
	cr_assert_not(proc_alive(p, &id), "same pid, other start time: dead");
	fake(200, 200, 1, 1000, 7000, 'Z');
	cr_assert_not(proc_alive(p, &id), "a zombie has exited");
	proc_close(p);
}

Test(proc, P2_reboot_kills_every_recorded_process)
{
	struct proc *p;
	struct proc_id id;

	fake(300, 300, 1, 1000, 9000, 'S');
	cr_assert_eq(proc_open(root, &p), 0);
	cr_assert_eq(proc_identify(p, 300, &id), 0);
	proc_close(p);
	put("sys/kernel/random/boot_id", BOOT_B);
	cr_assert_eq(proc_open(root, &p), 0);
	cr_assert_not(proc_alive(p, &id), "the same pid and start after a reboot is dead");
	proc_close(p);
}

Test(proc, bad_boot_id_refused)
{
	struct proc *p;

	put("sys/kernel/random/boot_id", "not-a-uuid\n");
	cr_assert_eq(proc_open(root, &p), -EINVAL);
}

Test(proc, P3_may_act_for)
{
	struct proc *p;
	struct proc_id id;

	fake(400, 400, 1, 1000, 1, 'S');
	fake(401, 401, 400, 1000, 2, 'S');
	fake(1, 1, 0, 0, 1, 'S');
	fake(402, 402, 1, 1000, 3, 'Z');
	fake(403, 401, 400, 1000, 4, 'S'); /* a thread of 401 */
	cr_assert_eq(proc_open(root, &p), 0);
	cr_assert_eq(proc_may_act_for(p, 1000, 401, &id), 0);
	cr_assert_eq(proc_may_act_for(p, 0, 403, &id), -ESRCH, "a thread's id names no process");
	cr_assert_eq(proc_may_act_for(p, 1000, 400, &id), 0, "same-uid ancestor");
	cr_assert_eq(proc_may_act_for(p, 1000, 1, &id), -EPERM, "PID 1 is not yours");
	cr_assert_eq(proc_may_act_for(p, 0, 1, &id), 0, "root: any");
	cr_assert_eq(proc_may_act_for(p, 1000, 402, &id), -ESRCH, "dead");
	cr_assert_eq(proc_may_act_for(p, 1000, 77777, &id), -ESRCH, "no such pid");
	cr_assert(proc_descends(p, 401, 400));
	cr_assert_not(proc_descends(p, 400, 401));
	proc_close(p);
}

/* ---- the watcher, with real processes -------------------------------------- */

struct deaths {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct proc_id ids[16];
	int n;
};

static void on_death(void *arg, const struct proc_id *id)
{
	struct deaths *d = arg;

	pthread_mutex_lock(&d->lock);
	if (d->n < 16)
		d->ids[d->n] = *id;
	d->n++;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Waits until n deaths are reported or ms pass; returns the count. */
static int wait_deaths(struct deaths *d, int n, int ms)
{
	struct timespec ts;
	int got;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	while (d->n < n && pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0)
		;
	got = d->n;
	pthread_mutex_unlock(&d->lock);
	return got;
}

static pid_t child_pipe(int *wfd)
{
	int fds[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
		close(fds[1]);
		(void)!read(fds[0], &c, 1);   /* lives until the pipe closes */
		_exit(0);
	}
	close(fds[0]);
	*wfd = fds[1];
	return pid;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

TestSuite(watch, .timeout = 30);

static _Atomic int opens;

static int counting_open(const char *path, int flags, mode_t mode)
{
	opens++;
	return txd_os_real.open(path, flags, mode);
}

/* P1 on the real /proc: a repeat caller that is its process's main thread
 * is answered from the pidfd kept with the cache entry, with no /proc read
 * at all; once it has exited (pid free for reuse) it is not. */
Test(watch, P1_main_thread_answered_by_its_pidfd)
{
	struct txd_os_ops ops = txd_os_real;
	struct proc *p;
	struct proc_id a, again;
	int wa;
	pid_t pa = child_pipe(&wa);

	ops.open = counting_open;
	cr_assert_eq(proc_open(NULL, &p), 0);
	txd_os_set(&ops);
	cr_assert_eq(proc_identify(p, (uint32_t)pa, &a), 0);
	cr_assert_gt(opens, 0, "a first caller is read from /proc");
	opens = 0;
	cr_assert_eq(proc_identify(p, (uint32_t)pa, &again), 0);
	cr_assert_eq(opens, 0, "a repeat caller costs no /proc read (%d opens)", (int)opens);
	cr_assert(proc_same(&a, &again));
	close(wa);
	waitpid(pa, NULL, 0);
	cr_assert_eq(proc_identify(p, (uint32_t)pa, &again), -ESRCH, "an exited caller is not cached");
	cr_assert_gt(opens, 0);
	txd_os_set(NULL);
	proc_close(p);
}

Test(watch, P4_death_reported_once_within_1s)
{
	struct deaths d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0 };
	struct proc *p;
	struct proc_watch *w;
	struct proc_id a, b;
	int wa, wb;
	pid_t pa = child_pipe(&wa), pb = child_pipe(&wb);
	uint64_t t0;

	cr_assert_eq(proc_open(NULL, &p), 0);
	cr_assert_eq(proc_identify(p, (uint32_t)pa, &a), 0);
	cr_assert_eq(proc_identify(p, (uint32_t)pb, &b), 0);
	cr_assert(proc_alive(p, &a));
	cr_assert_eq(proc_watch_open(p, on_death, &d, &w), 0);
	cr_assert_eq(proc_watch_add(w, &a), 0);
	cr_assert_eq(proc_watch_add(w, &a), 0);   /* counted */
	cr_assert_eq(proc_watch_add(w, &b), 0);
	proc_watch_del(w, &b);                    /* b no longer watched */
	cr_assert_eq(wait_deaths(&d, 1, 100), 0, "nobody died yet");

	t0 = now_ms();
	kill(pa, SIGKILL);
	cr_assert_eq(wait_deaths(&d, 1, 1000), 1);
	cr_assert_leq(now_ms() - t0, 1000);
	cr_assert(proc_same(&d.ids[0], &a));
	close(wb);
	waitpid(pb, NULL, 0);
	cr_assert_eq(wait_deaths(&d, 2, 300), 1, "exactly once, and b was unwatched");
	waitpid(pa, NULL, 0);
	proc_watch_close(w);
	proc_close(p);
	close(wa);
}

Test(watch, P4_dead_or_reused_id_reported_at_once)
{
	struct deaths d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0 };
	struct proc *p;
	struct proc_watch *w;
	struct proc_id me, reused;

	cr_assert_eq(proc_open(NULL, &p), 0);
	cr_assert_eq(proc_identify(p, (uint32_t)getpid(), &me), 0);
	reused = me;
	reused.start++;                           /* our pid, someone else's start */
	cr_assert_eq(proc_watch_open(p, on_death, &d, &w), 0);
	cr_assert_eq(proc_watch_add(w, &me), 0);
	cr_assert_eq(proc_watch_add(w, &reused), 0);
	cr_assert_eq(wait_deaths(&d, 1, 1000), 1);
	cr_assert(proc_same(&d.ids[0], &reused));
	cr_assert_eq(wait_deaths(&d, 2, 200), 1, "the live process is not reported");
	proc_watch_close(w);
	proc_close(p);
}

/* A process watched again after its count fell to zero takes its lingering
 * pidfd back (no new pidfd_open); an idle entry's death is not reported,
 * a re-watched one's is, once. */
Test(watch, P4_a_rewatched_process_reuses_its_pidfd)
{
	struct deaths d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0 };
	struct proc *p;
	struct proc_watch *w;
	struct proc_id a, b;
	int wa, wb;
	pid_t pa = child_pipe(&wa), pb = child_pipe(&wb);

	cr_assert_eq(proc_open(NULL, &p), 0);
	cr_assert_eq(proc_identify(p, (uint32_t)pa, &a), 0);
	cr_assert_eq(proc_identify(p, (uint32_t)pb, &b), 0);
	cr_assert_eq(proc_watch_open(p, on_death, &d, &w), 0);
	for (int round = 0; round < 5; round++) {
		cr_assert_eq(proc_watch_add(w, &a), 0);
		proc_watch_del(w, &a);
	}
	cr_assert_eq(proc_watch_opened(w), 1, "one pidfd for five grab/release rounds");
	cr_assert_eq(proc_watch_add(w, &b), 0);
	proc_watch_del(w, &b);                    /* b idle */
	cr_assert_eq(proc_watch_add(w, &a), 0);   /* a watched again */
	close(wb);
	waitpid(pb, NULL, 0);                     /* the idle one dies first */
	kill(pa, SIGKILL);
	waitpid(pa, NULL, 0);
	cr_assert_eq(wait_deaths(&d, 1, 1000), 1);
	cr_assert(proc_same(&d.ids[0], &a), "only the watched one is reported");
	cr_assert_eq(wait_deaths(&d, 2, 200), 1, "once");
	proc_watch_close(w);
	proc_close(p);
	close(wa);
}
