/*
 * test_vote.c — the vote service against V1-V11 (vote.h), with the
 * in-memory backend (memlog.h), a test clock, and, for the adapter, a real
 * WAL.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../engine/os.h"
#include "../../engine/rec.h"
#include "../../engine/txdir.h"
#include "../../engine/vote.h"
#include "../../engine/vote_wal.h"
#include "memlog.h"
#include "txdtest.h"

#define S 1000000000ull

/* ---- a clock the test moves ---------------------------------------------------- */

static _Atomic uint64_t clk_rt, clk_mono;
static struct txd_os_ops clk_os;

static uint64_t t_rt(void)
{
	return clk_rt;
}
static uint64_t t_mono(void)
{
	return clk_mono;
}

static void advance(uint64_t ns)
{
	clk_rt += ns;
	clk_mono += ns;
}

/* ---- events recorded --------------------------------------------------------------- */

struct seen {
	pthread_mutex_t lock;
	int opened, votes, decided, removed;
	char last[64][128]; /* "P outcome reason" of each decision */
};

static struct seen seen;

static void on_event(void *arg, const struct vote_event *ev)
{
	struct seen *w = arg;

	pthread_mutex_lock(&w->lock);
	if (ev->kind == VEV_OPENED)
		w->opened++;
	else if (ev->kind == VEV_VOTE)
		w->votes++;
	else if (ev->kind == VEV_REMOVED)
		w->removed++;
	else if (w->decided < 64)
		snprintf(w->last[w->decided++], 128, "%s %s %s", ev->proposal,
			 vote_outcome_name(ev->outcome), ev->reason);
	pthread_mutex_unlock(&w->lock);
}

static struct memlog mlog;
static struct vote_svc *svc;

/* V14: the one lease the tests' fence hook knows, and its token. */
static char held_lease[64];
static uint64_t held_token;
static int fence_calls;

static int on_fence(void *arg, const char *lease, uint64_t token)
{
	(void)arg;
	fence_calls++;
	return strcmp(lease, held_lease) || token != held_token ? -ESTALE : 0;
}

static struct vote_opts opts(void)
{
	return (struct vote_opts){.sync = true, .max_proposals = 4, .retain_ns = 100 * S};
}

static struct vote_svc *open_svc(const struct vote_opts *o)
{
	struct lease_backend lb = memlog_backend(&mlog);
	struct vote_backend be = {.append = lb.append, .sync = lb.sync, .arg = lb.arg};
	struct vote_hooks h = {.event = on_event, .fence = on_fence, .arg = &seen};
	struct vote_svc *v;

	cr_assert_eq(vote_open(o, &be, &h, &v), 0);
	return v;
}

static int replay_range(struct vote_svc *v, size_t from, size_t upto)
{
	for (size_t i = from; i < upto && i < mlog.n; i++) {
		int err = vote_replay(v, mlog.recs[i].b, mlog.recs[i].len);
		if (err)
			return err;
	}
	return 0;
}

/* A "restart": a fresh service from the first upto records of the log. */
static struct vote_svc *restart(struct vote_svc *old, size_t upto, const struct vote_opts *o)
{
	struct vote_svc *v;

	if (old)
		vote_close(old);
	mlog.broken = false;
	mlog.fail_append = mlog.fail_sync = 0;
	v = open_svc(o);
	cr_assert_eq(replay_range(v, 0, upto), 0);
	cr_assert_eq(vote_start(v), 0);
	return v;
}

static void setup(void)
{
	struct vote_opts o = opts();

	memset(&seen, 0, sizeof(seen));
	pthread_mutex_init(&seen.lock, NULL);
	snprintf(held_lease, sizeof(held_lease), "job");
	held_token = 5;
	fence_calls = 0;
	clk_os = txd_os_real;
	clk_os.now_realtime_ns = t_rt;
	clk_os.now_monotonic_ns = t_mono;
	clk_rt = 1700000000ull * S;
	clk_mono = 5000 * S;
	txd_os_set(&clk_os);
	memlog_init(&mlog);
	svc = open_svc(&o);
	cr_assert_eq(vote_start(svc), 0);
}

static void teardown(void)
{
	if (svc)
		vote_close(svc);
	svc = NULL;
	memlog_release(&mlog);
	txd_os_set(NULL);
}

TestSuite(vote, .init = setup, .fini = teardown, .timeout = 60);

static void propose(struct vote_svc *v, const char *p, uint32_t uid, const char *list)
{
	cr_assert_eq(vote_create(v, p, uid), 0, "create %s", p);
	cr_assert_eq(vote_set_participants(v, p, list, strlen(list), NULL), 0, "open %s", p);
}

static enum vote_outcome outcome(struct vote_svc *v, const char *p, char *reason)
{
	enum vote_outcome o;
	char r[VOTE_REASON_MAX + 64];

	cr_assert_eq(vote_outcome(v, p, &o, r, sizeof(r)), 0);
	if (reason)
		strcpy(reason, r);
	return o;
}

/* The whole visible state, as text (for comparisons across restarts). */
struct state_buf {
	char *b;
	size_t n, cap;
	char names[64][VOTE_NAME_MAX + 1];
	int nn;
};

static int collect(void *arg, const struct vote_info *vi)
{
	struct state_buf *sb = arg;

	if (sb->nn < 64)
		strcpy(sb->names[sb->nn++], vi->name);
	return 0;
}

static int add_part(void *arg, const char *name, int vote)
{
	struct state_buf *sb = arg;

	sb->n += (size_t)snprintf(sb->b + sb->n, sb->cap - sb->n, " %s=%d", name, vote);
	return 0;
}

static void state_of(struct vote_svc *v, char *out, size_t cap)
{
	struct state_buf sb = {.b = out, .cap = cap};

	out[0] = 0;
	cr_assert_eq(vote_list(v, collect, &sb), 0);
	for (int i = 0; i < sb.nn; i++) {
		struct vote_info vi;

		cr_assert_eq(vote_get(v, sb.names[i], &vi), 0);
		sb.n += (size_t)snprintf(out + sb.n, cap - sb.n,
					 "%s id%lu st%d uid%u o%d [%s] t%lu pl%zu dl%lu f%s/%lu:",
					 vi.name, (unsigned long)vi.id, vi.state, vi.uid, vi.outcome,
					 vi.reason, (unsigned long)vi.timeout_ns, vi.payload_len,
					 (unsigned long)vi.deadline_ns, vi.fence,
					 (unsigned long)vi.fence_token);
		(void)vote_list_participants(v, sb.names[i], add_part, &sb);
		sb.n += (size_t)snprintf(out + sb.n, cap - sb.n, "\n");
	}
}

/* ---- V2: the rules of deciding --------------------------------------------------- */

Test(vote, V2_all_yes_commits)
{
	propose(svc, "deploy", 1000, "alice,bob carol\n");
	cr_assert_eq(vote_cast(svc, "deploy", "alice", true, NULL), 0);
	cr_assert_eq(vote_cast(svc, "deploy", "carol", true, NULL), 0);
	cr_assert_eq(outcome(svc, "deploy", NULL), VOTE_OPEN);
	cr_assert_eq(vote_cast(svc, "deploy", "bob", true, NULL), 0);
	char r[1100];
	cr_assert_eq(outcome(svc, "deploy", r), VOTE_COMMITTED);
	cr_assert_str_eq(r, "");
	cr_assert_eq(seen.opened, 1);
	cr_assert_eq(seen.votes, 3);
	cr_assert_eq(seen.decided, 1);
	cr_assert_str_eq(seen.last[0], "deploy committed ");
	cr_assert_eq(mlog.durable, mlog.n, "the decision is durable when it is visible");
}

Test(vote, V2_first_no_decides_at_once)
{
	char r[1100];

	propose(svc, "p", 1000, "alice,bob,carol");
	cr_assert_eq(vote_cast(svc, "p", "alice", true, NULL), 0);
	cr_assert_eq(vote_cast(svc, "p", "bob", false, NULL), 0);
	cr_assert_eq(outcome(svc, "p", r), VOTE_ABORTED);
	cr_assert_str_eq(r, "no from bob");
	cr_assert_eq(vote_cast(svc, "p", "carol", true, NULL), -EROFS, "a vote after the decision");
	cr_assert_eq(vote_cast(svc, "p", "carol", false, NULL), -EROFS);
	cr_assert_eq(vote_cast(svc, "p", "bob", false, NULL), 0, "the same vote again (a retry)");
	cr_assert_eq(vote_cast(svc, "p", "alice", false, NULL), -EROFS);
	cr_assert_eq(seen.decided, 1, "one decision");
}

Test(vote, V2_timeout_aborts_missing_in_list_order)
{
	char r[1100];
	uint64_t next;

	cr_assert_eq(vote_create(svc, "t", 1000), 0);
	cr_assert_eq(vote_set_timeout(svc, "t", 2 * S), 0);
	cr_assert_eq(vote_set_participants(svc, "t", "carol alice bob", 15, NULL), 0);
	cr_assert_eq(vote_cast(svc, "t", "alice", true, NULL), 0);
	cr_assert_eq(vote_tick(svc, &next), 0);
	cr_assert_eq(next, clk_mono + 2 * S, "next is the deadline");
	advance(2 * S - 1);
	cr_assert_eq(vote_tick(svc, NULL), 0);
	cr_assert_eq(outcome(svc, "t", NULL), VOTE_OPEN);
	advance(1);
	cr_assert_eq(vote_tick(svc, NULL), 1);
	cr_assert_eq(outcome(svc, "t", r), VOTE_ABORTED);
	cr_assert_str_eq(r, "timeout missing carol,bob");
	cr_assert_eq(vote_cast(svc, "t", "bob", true, NULL), -EROFS);
}

Test(vote, V2_a_vote_after_the_deadline_finds_it_decided)
{
	char r[1100];

	cr_assert_eq(vote_create(svc, "t", 1000), 0);
	cr_assert_eq(vote_set_timeout(svc, "t", S), 0);
	cr_assert_eq(vote_set_participants(svc, "t", "a,b", 3, NULL), 0);
	advance(S);
	/* no tick yet: the vote itself finds the deadline passed */
	cr_assert_eq(vote_cast(svc, "t", "a", true, NULL), -EROFS);
	cr_assert_eq(outcome(svc, "t", r), VOTE_ABORTED);
	cr_assert_str_eq(r, "timeout missing a,b");
}

/* ---- V3, V4, V5: errnos ------------------------------------------------------------ */

Test(vote, V3_vote_errnos)
{
	propose(svc, "p", 1000, "alice,bob");
	cr_assert_eq(vote_cast(svc, "p", "alice", true, NULL), 0);
	cr_assert_eq(vote_cast(svc, "p", "alice", true, NULL), 0, "same vote again");
	cr_assert_eq(vote_cast(svc, "p", "alice", false, NULL), -EEXIST, "a different vote");
	cr_assert_eq(vote_cast(svc, "p", "mallory", true, NULL), -ENOENT, "unknown participant");
	cr_assert_eq(vote_cast(svc, "nope", "alice", true, NULL), -ENOENT, "unknown proposal");
	cr_assert_eq(vote_cast(svc, "p", "al ice", true, NULL), -EINVAL);
	cr_assert_eq(vote_cast(svc, "p/x", "alice", true, NULL), -EINVAL);
	cr_assert_eq(vote_create(svc, "q", 1000), 0);
	cr_assert_eq(vote_cast(svc, "q", "alice", true, NULL), -ENOENT, "not open yet");
	bool y;
	cr_assert_eq(vote_parse_ballot("yes\n", 4, &y), 0);
	cr_assert(y);
	cr_assert_eq(vote_parse_ballot("no", 2, &y), 0);
	cr_assert_not(y);
	cr_assert_eq(vote_parse_ballot("yes\n\n", 5, &y), -EINVAL);
	cr_assert_eq(vote_parse_ballot("maybe\n", 6, &y), -EINVAL);
	cr_assert_eq(vote_parse_ballot("", 0, &y), -EINVAL);
	cr_assert_eq(vote_parse_ballot("YES", 3, &y), -EINVAL);
}

Test(vote, V4_participants_write_once)
{
	const char *dup = "a,b,a", *none = " ,\n", *bad = "a,b\x01";

	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_participants(svc, "p", dup, strlen(dup), NULL), -EINVAL);
	cr_assert_eq(vote_set_participants(svc, "p", none, strlen(none), NULL), -EINVAL);
	cr_assert_eq(vote_set_participants(svc, "p", "", 0, NULL), -EINVAL);
	cr_assert_eq(vote_set_participants(svc, "p", bad, strlen(bad), NULL), -EINVAL);
	cr_assert_eq(vote_set_participants(svc, "p", "a\0b", 3, NULL), -EINVAL);
	cr_assert_eq(vote_set_participants(svc, "p", "a, b\n", 5, NULL), 0);
	cr_assert_eq(vote_set_participants(svc, "p", "b a", 3, NULL), 0, "the same list again");
	cr_assert_eq(vote_set_participants(svc, "p", "a,b,c", 5, NULL), -EEXIST);
	cr_assert_eq(vote_set_participants(svc, "p", "a", 1, NULL), -EEXIST);
	cr_assert_eq(vote_set_participants(svc, "x", "a", 1, NULL), -ENOENT);
	cr_assert_eq(vote_set_payload(svc, "p", "x", 1), -EROFS, "payload after opening");
	cr_assert_eq(vote_set_timeout(svc, "p", S), -EROFS, "timeout after opening");
}

Test(vote, V4_too_many_participants)
{
	size_t cap = (VOTE_PARTICIPANTS_MAX + 1) * 8, n = 0;
	char *list = malloc(cap);

	for (int i = 0; i <= VOTE_PARTICIPANTS_MAX; i++)
		n += (size_t)snprintf(list + n, cap - n, "p%d,", i);
	cr_assert_eq(vote_create(svc, "big", 1000), 0);
	cr_assert_eq(vote_set_participants(svc, "big", list, n, NULL), -EINVAL);
	/* exactly the maximum is fine */
	n = 0;
	for (int i = 0; i < VOTE_PARTICIPANTS_MAX; i++)
		n += (size_t)snprintf(list + n, cap - n, "p%d\n", i);
	cr_assert_eq(vote_set_participants(svc, "big", list, n, NULL), 0);
	free(list);
}

Test(vote, V4_payload_and_timeout)
{
	size_t big = VOTE_PAYLOAD_MAX + 1, len = 0;
	char *buf = calloc(1, big), out[8];
	uint64_t ns;
	struct vote_info vi;

	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_payload(svc, "p", buf, big), -EFBIG);
	cr_assert_eq(vote_set_payload(svc, "p", buf, big - 1), 0, "1 MiB is allowed");
	cr_assert_eq(vote_set_payload(svc, "p", "hello", 5), 0);
	cr_assert_eq(vote_payload(svc, "p", out, sizeof(out), &len), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(out, "hello", 5), 0);
	cr_assert_eq(vote_get(svc, "p", &vi), 0);
	cr_assert_eq(vi.timeout_ns, VOTE_TIMEOUT_DEFAULT_NS, "default 30 s");
	cr_assert_eq(vote_set_timeout(svc, "p", 0), -EINVAL);
	cr_assert_eq(vote_set_timeout(svc, "p", 5 * S), 0);
	cr_assert_eq(vote_get(svc, "p", &vi), 0);
	cr_assert_eq(vi.timeout_ns, 5 * S);
	cr_assert_eq(vi.payload_len, 5, "a timeout keeps the payload");
	cr_assert_eq(vote_set_payload(svc, "nope", "x", 1), -ENOENT);
	cr_assert_eq(vote_parse_timeout("30\n", 3, &ns), 0);
	cr_assert_eq(ns, 30 * S);
	cr_assert_eq(vote_parse_timeout("0.25", 4, &ns), 0);
	cr_assert_eq(ns, S / 4);
	cr_assert_eq(vote_parse_timeout("0", 1, &ns), -EINVAL);
	cr_assert_eq(vote_parse_timeout("-1", 2, &ns), -EINVAL);
	cr_assert_eq(vote_parse_timeout("1.", 2, &ns), -EINVAL);
	cr_assert_eq(vote_parse_timeout("abc", 3, &ns), -EINVAL);
	cr_assert_eq(vote_parse_timeout("99999999999999", 14, &ns), -EINVAL);
	free(buf);
}

Test(vote, V5_names)
{
	char long_name[VOTE_NAME_MAX + 2];

	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[VOTE_NAME_MAX + 1] = 0;
	cr_assert_eq(vote_create(svc, long_name, 1000), -EINVAL);
	long_name[VOTE_NAME_MAX] = 0;
	cr_assert_eq(vote_create(svc, long_name, 1000), 0, "255 bytes");
	cr_assert_eq(vote_create(svc, "", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, ".", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, "..", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, "a b", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, "a\tb", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, "a\x7f", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, "a/b", 1000), -EINVAL);
	cr_assert_eq(vote_create(svc, "ok", 1000), 0);
	cr_assert_eq(vote_create(svc, "ok", 1000), -EEXIST);
}

Test(vote, V6_EDQUOT_per_uid_root_unlimited)
{
	char n[16];

	for (int i = 0; i < 4; i++) {
		snprintf(n, sizeof(n), "u%d", i);
		cr_assert_eq(vote_create(svc, n, 1000), 0);
	}
	cr_assert_eq(vote_create(svc, "u4", 1000), -EDQUOT);
	cr_assert_eq(vote_create(svc, "other", 1001), 0, "another uid");
	for (int i = 0; i < 10; i++) {
		snprintf(n, sizeof(n), "r%d", i);
		cr_assert_eq(vote_create(svc, n, 0), 0, "root is not limited");
	}
	cr_assert_eq(vote_remove(svc, "u0", 1000), 0);
	cr_assert_eq(vote_create(svc, "u4", 1000), 0, "a removal frees a slot");
}

/* ---- V1: durable before visible ------------------------------------------------- */

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool closed, waiting;
	struct lease_backend inner;
};

static struct gate gate;

static int g_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	(void)arg;
	return gate.inner.append(gate.inner.arg, rec, len, lsn);
}

static int g_sync(void *arg, uint64_t lsn)
{
	(void)arg;
	pthread_mutex_lock(&gate.lock);
	gate.waiting = true;
	pthread_cond_broadcast(&gate.cv);
	while (gate.closed)
		pthread_cond_wait(&gate.cv, &gate.lock);
	gate.waiting = false;
	pthread_mutex_unlock(&gate.lock);
	return gate.inner.sync(gate.inner.arg, lsn);
}

static void *last_yes(void *arg)
{
	return (void *)(intptr_t)vote_cast(arg, "p", "b", true, NULL);
}

Test(vote, V1_decision_durable_before_visible)
{
	struct vote_opts o = opts();
	struct vote_backend be = {.append = g_append, .sync = g_sync};
	struct vote_svc *v;
	pthread_t t;
	void *ret;

	pthread_mutex_init(&gate.lock, NULL);
	pthread_cond_init(&gate.cv, NULL);
	gate.inner = memlog_backend(&mlog);
	cr_assert_eq(vote_open(&o, &be, NULL, &v), 0);
	cr_assert_eq(vote_start(v), 0);
	propose(v, "p", 1000, "a,b");
	cr_assert_eq(vote_cast(v, "p", "a", true, NULL), 0);
	pthread_mutex_lock(&gate.lock);
	gate.closed = true;
	pthread_mutex_unlock(&gate.lock);
	cr_assert_eq(pthread_create(&t, NULL, last_yes, v), 0);
	pthread_mutex_lock(&gate.lock);
	while (!gate.waiting)
		pthread_cond_wait(&gate.cv, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
	/* the DECIDE record is appended, not durable: not visible */
	cr_assert_eq(mlog.n, mlog.durable + 2, "VOTE and DECIDE appended, unsynced");
	cr_assert_eq(outcome(v, "p", NULL), VOTE_OPEN);
	struct vote_info vi;
	cr_assert_eq(vote_get(v, "p", &vi), 0);
	cr_assert_eq(vi.state, VOTE_DECIDING);
	cr_assert_eq(vi.outcome, VOTE_OPEN);
	pthread_mutex_lock(&gate.lock);
	gate.closed = false;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.lock);
	pthread_join(t, &ret);
	cr_assert_eq((intptr_t)ret, 0);
	cr_assert_eq(outcome(v, "p", NULL), VOTE_COMMITTED);
	vote_close(v);
}

/* ---- V10, V11: retention and removal ------------------------------------------- */

Test(vote, V10_retention_removes_decided_and_never_opened)
{
	struct vote_info vi;
	uint64_t next;

	propose(svc, "d", 1000, "a");
	cr_assert_eq(vote_cast(svc, "d", "a", true, NULL), 0);
	cr_assert_eq(vote_create(svc, "never", 1000), 0);
	cr_assert_eq(vote_set_timeout(svc, "never", 10 * S), 0);
	cr_assert_eq(vote_tick(svc, &next), 0);
	cr_assert_eq(next, clk_mono + 10 * S, "the never-opened one goes first");
	advance(10 * S);
	cr_assert_eq(seen.removed, 0);
	cr_assert_eq(vote_tick(svc, &next), 0);
	cr_assert_eq(vote_get(svc, "never", &vi), -ENOENT, "never opened: gone after its timeout");
	cr_assert_eq(seen.removed, 1, "its waiters learn no decision will come");
	cr_assert_eq(vote_get(svc, "d", &vi), 0);
	cr_assert_eq(next, clk_mono + 90 * S);
	advance(90 * S - 1);
	cr_assert_eq(vote_tick(svc, NULL), 0);
	cr_assert_eq(vote_get(svc, "d", &vi), 0, "kept for the retention period");
	advance(1);
	cr_assert_eq(vote_tick(svc, &next), 0);
	cr_assert_eq(vote_get(svc, "d", &vi), -ENOENT, "removed after it");
	cr_assert_eq(seen.removed, 1, "a decided one's removal is no news");
	cr_assert_eq(next, 0);
	/* a restart repeats the removals from the records' stamps */
	svc = restart(svc, mlog.n, &(struct vote_opts){.sync = true, .retain_ns = 100 * S});
	cr_assert_eq(vote_get(svc, "d", &vi), -ENOENT);
	cr_assert_eq(vote_get(svc, "never", &vi), -ENOENT);
	/* and the name can be used again */
	propose(svc, "d", 1000, "x");
	cr_assert_eq(outcome(svc, "d", NULL), VOTE_OPEN);
}

Test(vote, V11_remove_rules)
{
	propose(svc, "open", 1000, "a");
	cr_assert_eq(vote_create(svc, "c", 1000), 0);
	cr_assert_eq(vote_remove(svc, "c", 1001), -EPERM);
	cr_assert_eq(vote_remove(svc, "open", 1000), -EBUSY);
	cr_assert_eq(vote_remove(svc, "nope", 1000), -ENOENT);
	cr_assert_eq(vote_remove(svc, "c", 0), 0, "root may");
	cr_assert_eq(seen.removed, 1);
	cr_assert_eq(vote_create(svc, "c", 1000), 0);
	cr_assert_eq(vote_remove(svc, "c", 1000), 0, "its creator may");
	cr_assert_eq(vote_cast(svc, "open", "a", false, NULL), 0);
	cr_assert_eq(vote_remove(svc, "open", 0), -EBUSY, "a decision is kept");
	svc = restart(svc, mlog.n, &(struct vote_opts){.sync = true});
	struct vote_info vi;
	cr_assert_eq(vote_get(svc, "c", &vi), -ENOENT, "the removal replays");
}

/* ---- V7: restart with an open proposal ----------------------------------------- */

/* V13: creating and opening append without a sync; the first vote's sync
 * makes them durable with it; a power cut before any vote loses the
 * proposal whole (never a half: votes without their OPEN). */
Test(vote, V13_create_and_open_unsynced_the_first_vote_carries_them)
{
	struct vote_opts o = opts();
	uint64_t syncs = mlog.syncs;

	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_timeout(svc, "p", 10 * S), 0);
	cr_assert_eq(vote_set_participants(svc, "p", "a,b", 3, NULL), 0);
	cr_assert_eq(vote_set_participants(svc, "p", "a,b", 3, NULL), 0, "the same list again");
	cr_assert_eq(mlog.syncs, syncs, "no sync before the first vote");
	cr_assert_eq(mlog.durable, 0u);
	cr_assert_eq(mlog.n, 3u, "CREATE, PARAM, OPEN appended");
	cr_assert_eq(vote_create(svc, "q", 1000), 0);
	cr_assert_eq(vote_set_participants(svc, "q", "a", 1, NULL), 0);

	/* a power cut now: both proposals are gone, whole */
	svc = restart(svc, mlog.durable, &o);
	cr_assert_eq(vote_get(svc, "p", &(struct vote_info){0}), -ENOENT);
	cr_assert_eq(vote_get(svc, "q", &(struct vote_info){0}), -ENOENT);

	/* again, and a vote: its sync carries the proposal's records */
	memlog_release(&mlog);
	memlog_init(&mlog);
	svc = restart(svc, 0, &o);
	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_participants(svc, "p", "a,b", 3, NULL), 0);
	cr_assert_eq(vote_cast(svc, "p", "a", true, NULL), 0);
	cr_assert_eq(mlog.durable, mlog.n, "the vote's sync covers CREATE and OPEN");
	svc = restart(svc, mlog.durable, &o);
	struct vote_info vi;
	cr_assert_eq(vote_get(svc, "p", &vi), 0);
	cr_assert_eq(vi.state, VOTE_OPENED);
	cr_assert_eq(vi.yes, 1u);
}

Test(vote, V7_open_proposal_resumes_its_timeout_downtime_counts)
{
	struct vote_opts o = opts();
	char r[1100];
	uint64_t next;

	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_timeout(svc, "p", 10 * S), 0);
	cr_assert_eq(vote_set_participants(svc, "p", "a,b", 3, NULL), 0);
	cr_assert_eq(vote_cast(svc, "p", "a", true, NULL), 0);
	advance(3 * S);
	/* the server dies; 4 s later it is back (monotonic restarts at 0) */
	clk_rt += 4 * S;
	clk_mono = 100;
	svc = restart(svc, mlog.n, &o);
	cr_assert_eq(outcome(svc, "p", NULL), VOTE_OPEN);
	cr_assert_eq(vote_tick(svc, &next), 0);
	cr_assert_eq(next, 100 + 3 * S, "10 s - 3 s up - 4 s down = 3 s left");
	advance(3 * S);
	cr_assert_eq(vote_tick(svc, NULL), 1);
	cr_assert_eq(outcome(svc, "p", r), VOTE_ABORTED);
	cr_assert_str_eq(r, "timeout missing b");
}

Test(vote, V7_deadline_passed_while_down_is_decided_at_start)
{
	struct vote_opts o = opts();
	char r[1100];

	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_timeout(svc, "p", 10 * S), 0);
	cr_assert_eq(vote_set_participants(svc, "p", "a,b", 3, NULL), 0);
	clk_rt += 11 * S;
	svc = restart(svc, mlog.n, &o);
	cr_assert_eq(outcome(svc, "p", r), VOTE_ABORTED);
	cr_assert_str_eq(r, "timeout missing a,b");
	/* ... and that decision is in the log: a second restart shows it */
	size_t n = mlog.n;
	svc = restart(svc, mlog.n, &o);
	cr_assert_eq(mlog.n, n, "nothing decided twice");
	cr_assert_eq(outcome(svc, "p", r), VOTE_ABORTED);
}

Test(vote, V1_decision_survives_restart_unchanged)
{
	struct vote_opts o = opts();
	char before[4096], after[4096];

	propose(svc, "c", 1000, "a,b");
	propose(svc, "n", 1000, "a,b");
	cr_assert_eq(vote_cast(svc, "c", "a", true, NULL), 0);
	cr_assert_eq(vote_cast(svc, "c", "b", true, NULL), 0);
	cr_assert_eq(vote_cast(svc, "n", "b", false, NULL), 0);
	state_of(svc, before, sizeof(before));
	svc = restart(svc, mlog.durable, &o);
	state_of(svc, after, sizeof(after));
	cr_assert_str_eq(after, before);
	cr_assert_eq(vote_cast(svc, "n", "a", true, NULL), -EROFS);
}

/* ---- V8: replay and snapshots ---------------------------------------------------- */

/* What the DTC's replay of the PREPARE record of busy_history does. */
static void replay_prepare(struct vote_svc *v)
{
	int err = vote_cast_external(v, "b", "x", false, "disk full", true);
	cr_assert(err == 0 || err == -EROFS || err == -ENOENT, "%d", err);
}

static void busy_history(struct vote_svc *v)
{
	propose(v, "a", 1000, "x,y");
	cr_assert_eq(vote_cast(v, "a", "x", true, NULL), 0);
	cr_assert_eq(vote_create(v, "b", 1000), 0);
	cr_assert_eq(vote_set_payload(v, "b", "pay", 3), 0);
	cr_assert_eq(vote_set_timeout(v, "b", 7 * S), 0);
	cr_assert_eq(vote_set_fence(v, "b", "job", 9), 0);
	cr_assert_eq(vote_set_participants(v, "b", "x", 1, NULL), 0);
	cr_assert_eq(vote_cast(v, "a", "y", true, NULL), 0);
	cr_assert_eq(vote_create(v, "gone", 1000), 0);
	cr_assert_eq(vote_remove(v, "gone", 1000), 0);
	cr_assert_eq(vote_create(v, "gone", 1000), 0);
	cr_assert_eq(vote_cast_external(v, "b", "x", false, "disk full", false), 0);
	cr_assert_eq(vote_create(v, "c", 0), 0);
}

Test(vote, V8_snapshot_then_overlapping_replay_is_the_same_state)
{
	struct vote_opts o = opts();
	char want[8192], got[8192];

	busy_history(svc);
	state_of(svc, want, sizeof(want));
	size_t n = mlog.n;
	/* A checkpoint chose LSN j, took its snapshot at k >= j; replay from j. */
	for (size_t k = 0; k <= n; k++) {
		struct vote_svc *a = open_svc(&o);
		void *snap;
		size_t len;

		cr_assert_eq(replay_range(a, 0, k), 0);
		cr_assert_eq(vote_snapshot_encode(a, &snap, &len), 0);
		for (size_t j = 0; j <= k; j++) {
			struct vote_svc *b = open_svc(&o);

			cr_assert_eq(vote_snapshot_decode(b, snap, len), 0);
			cr_assert_eq(replay_range(b, j, n), 0,
				     "replay from %zu over snapshot at %zu", j, k);
			replay_prepare(b);
			cr_assert_eq(vote_start(b), 0);
			state_of(b, got, sizeof(got));
			cr_assert_str_eq(got, want, "snapshot at %zu, replay from %zu", k, j);
			vote_close(b);
		}
		free(snap);
		vote_close(a);
	}
	cr_assert(strstr(want, "[no from x: disk full]"), "%s", want);
	cr_assert(strstr(want, "fjob/9:"), "%s", want);
}

Test(vote, V8_replay_twice_is_the_same_state)
{
	struct vote_opts o = opts();
	char want[8192], got[8192];

	busy_history(svc);
	state_of(svc, want, sizeof(want));
	struct vote_svc *b = open_svc(&o);
	cr_assert_eq(replay_range(b, 0, mlog.n), 0);
	replay_prepare(b);
	cr_assert_eq(replay_range(b, 0, mlog.n), 0);
	replay_prepare(b);
	cr_assert_eq(vote_start(b), 0);
	state_of(b, got, sizeof(got));
	cr_assert_str_eq(got, want);
	vote_close(b);
}

/* ---- V14: fenced proposals --------------------------------------------------------- */

static void propose_fenced(struct vote_svc *v, const char *p, const char *lease, uint64_t tok,
			   const char *list)
{
	cr_assert_eq(vote_create(v, p, 1000), 0, "create %s", p);
	cr_assert_eq(vote_set_fence(v, p, lease, tok), 0, "fence %s", p);
	cr_assert_eq(vote_set_participants(v, p, list, strlen(list), NULL), 0, "open %s", p);
}

Test(vote, V14_a_fenced_proposal_commits_only_while_its_lease_is_held)
{
	char reason[VOTE_REASON_MAX + 64];
	struct vote_info vi;

	/* held all along: committed */
	propose_fenced(svc, "held", "job", 5, "a,b");
	cr_assert_eq(vote_cast(svc, "held", "a", true, NULL), 0);
	cr_assert_eq(vote_cast(svc, "held", "b", true, NULL), 0);
	cr_assert_eq(outcome(svc, "held", reason), VOTE_COMMITTED);
	cr_assert_gt(fence_calls, 0, "the commit point asked the fence");
	cr_assert_eq(vote_get(svc, "held", &vi), 0);
	cr_assert_str_eq(vi.fence, "job");
	cr_assert_eq(vi.fence_token, 5);

	/* the lease went to a successor (token 6) between the votes */
	propose_fenced(svc, "lost", "job", 5, "a,b");
	cr_assert_eq(vote_cast(svc, "lost", "a", true, NULL), 0);
	held_token = 6;
	cr_assert_eq(vote_cast(svc, "lost", "b", true, NULL), 0, "the vote itself counted");
	cr_assert_eq(outcome(svc, "lost", reason), VOTE_ABORTED);
	cr_assert_str_eq(reason, "lease job not held with token 5");
	cr_assert(!strncmp(reason, VOTE_FENCE_REASON, strlen(VOTE_FENCE_REASON)));
	cr_assert_eq(vote_cast(svc, "lost", "b", true, NULL), 0, "a retry still succeeds");

	/* a "no" still decides as a "no"; the fence is asked only to commit */
	fence_calls = 0;
	propose_fenced(svc, "no", "job", 5, "a,b");
	cr_assert_eq(vote_cast(svc, "no", "a", false, NULL), 0);
	cr_assert_eq(outcome(svc, "no", reason), VOTE_ABORTED);
	cr_assert_str_eq(reason, "no from a");
	cr_assert_eq(fence_calls, 0);

	/* unfenced proposals never ask */
	propose(svc, "plain", 1000, "a");
	cr_assert_eq(vote_cast(svc, "plain", "a", true, NULL), 0);
	cr_assert_eq(outcome(svc, "plain", NULL), VOTE_COMMITTED);
	cr_assert_eq(fence_calls, 0);
}

Test(vote, V14_set_fence_errnos)
{
	cr_assert_eq(vote_create(svc, "p", 1000), 0);
	cr_assert_eq(vote_set_fence(svc, "nope", "job", 1), -ENOENT);
	cr_assert_eq(vote_set_fence(svc, "p", "", 1), -EINVAL);
	cr_assert_eq(vote_set_fence(svc, "p", NULL, 1), -EINVAL);
	cr_assert_eq(vote_set_fence(svc, "bad name", "job", 1), -EINVAL);
	cr_assert_eq(vote_set_fence(svc, "p", "job", 1), 0);
	cr_assert_eq(vote_set_fence(svc, "p", "job", 1), 0, "the same fence again");
	cr_assert_eq(vote_set_fence(svc, "p", "job", 2), -EEXIST);
	cr_assert_eq(vote_set_fence(svc, "p", "other", 1), -EEXIST);
	cr_assert_eq(vote_set_participants(svc, "p", "a", 1, NULL), 0);
	cr_assert_eq(vote_set_fence(svc, "p", "job", 1), 0, "the same fence, opened");
	cr_assert_eq(vote_create(svc, "q", 1000), 0);
	cr_assert_eq(vote_set_participants(svc, "q", "a", 1, NULL), 0);
	cr_assert_eq(vote_set_fence(svc, "q", "job", 1), -EROFS, "only before it opens");
}

/* The fence survives a restart (its FENCE record), and vote_start, deciding
 * a proposal whose last "yes" the log has but not its DECIDE, asks it too. */
Test(vote, V14_the_fence_survives_a_restart_and_is_asked_at_start)
{
	struct vote_opts o = opts();
	char reason[VOTE_REASON_MAX + 64];

	propose_fenced(svc, "r", "job", 5, "a,b");
	cr_assert_eq(vote_cast(svc, "r", "a", true, NULL), 0);
	held_token = 7;
	svc = restart(svc, mlog.n, &o);
	cr_assert_eq(vote_cast(svc, "r", "b", true, NULL), 0);
	cr_assert_eq(outcome(svc, "r", reason), VOTE_ABORTED);
	cr_assert_str_eq(reason, "lease job not held with token 5");

	held_token = 5;
	propose_fenced(svc, "s", "job", 5, "a");
	size_t before = mlog.n;
	cr_assert_eq(vote_cast(svc, "s", "a", true, NULL), 0);
	cr_assert_eq(outcome(svc, "s", NULL), VOTE_COMMITTED);
	cr_assert_eq(mlog.n, before + 2, "VOTE and DECIDE");
	held_token = 8; /* lost while the server was down */
	svc = restart(svc, mlog.n - 1, &o); /* the DECIDE record lost */
	cr_assert_eq(outcome(svc, "s", reason), VOTE_ABORTED);
	cr_assert_str_eq(reason, "lease job not held with token 5");
}

/* ---- V15: a list written in pieces ----------------------------------------------------- */

Test(vote, V15_extend_adds_names_while_open_and_replays)
{
	struct vote_opts o = opts();
	char reason[VOTE_REASON_MAX + 64], want[4096], got[4096];

	propose(svc, "x", 1000, "alice\n");
	cr_assert_eq(vote_extend_participants(svc, "x", "alice\nbob\n", 10), 0);
	cr_assert_eq(vote_cast(svc, "x", "alice", true, NULL), 0, "a vote between the pieces");
	cr_assert_eq(outcome(svc, "x", NULL), VOTE_OPEN, "alice's yes did not decide yet");
	cr_assert_eq(vote_extend_participants(svc, "x", "alice\nbob\ncarol\n", 16), 0);
	cr_assert_eq(vote_extend_participants(svc, "x", "carol,alice,bob", 15), 0, "the same set");
	cr_assert_eq(vote_extend_participants(svc, "x", "alice,carol,dave", 16), -EEXIST,
		     "bob left out");
	cr_assert_eq(vote_extend_participants(svc, "x", "alice,,", 7), -EEXIST, "a subset");
	cr_assert_eq(vote_extend_participants(svc, "x", "alice alice", 11), -EINVAL);
	cr_assert_eq(vote_extend_participants(svc, "nope", "a", 1), -ENOENT);
	cr_assert_eq(vote_create(svc, "created", 1000), 0);
	cr_assert_eq(vote_extend_participants(svc, "created", "a", 1), -ENOENT, "not open");
	struct vote_info vi;
	cr_assert_eq(vote_get(svc, "x", &vi), 0);
	cr_assert_eq(vi.participants, 3);
	cr_assert_eq(vi.yes, 1);
	cr_assert_eq(vote_cast(svc, "x", "bob", true, NULL), 0);
	state_of(svc, want, sizeof(want));
	/* replay and a snapshot give the same three participants */
	struct vote_svc *b = open_svc(&o);
	cr_assert_eq(replay_range(b, 0, mlog.n), 0);
	cr_assert_eq(replay_range(b, 0, mlog.n), 0);
	cr_assert_eq(vote_start(b), 0);
	state_of(b, got, sizeof(got));
	cr_assert_str_eq(got, want);
	void *snap;
	size_t len;
	cr_assert_eq(vote_snapshot_encode(b, &snap, &len), 0);
	vote_close(b);
	b = open_svc(&o);
	cr_assert_eq(vote_snapshot_decode(b, snap, len), 0);
	cr_assert_eq(replay_range(b, 0, mlog.n), 0);
	cr_assert_eq(vote_start(b), 0);
	state_of(b, got, sizeof(got));
	cr_assert_str_eq(got, want);
	free(snap);
	vote_close(b);
	cr_assert_eq(vote_cast(svc, "x", "carol", true, NULL), 0);
	cr_assert_eq(outcome(svc, "x", reason), VOTE_COMMITTED);
	cr_assert_eq(vote_extend_participants(svc, "x", "alice,bob,carol,dave", 20), -EROFS);
}

Test(vote, replay_refuses_garbage)
{
	uint8_t b[64] = {1, VREC_CREATE, 2, 0};

	cr_assert_eq(vote_replay(svc, b, 4), -TXD_ECORRUPT);
	cr_assert_eq(vote_replay(svc, b, 30), -TXD_ECORRUPT);
	b[0] = 2;
	cr_assert_eq(vote_replay(svc, b, 34), -TXD_EFORMAT);
	b[0] = 1;
	b[1] = 9;
	cr_assert_eq(vote_replay(svc, b, 34), -TXD_EFORMAT);
	b[1] = VREC_CREATE;
	memcpy(b + 32, "a ", 2);
	cr_assert_eq(vote_replay(svc, b, 34), -TXD_ECORRUPT, "a bad name");
	memcpy(b + 32, "ab", 2);
	cr_assert_eq(vote_replay(svc, b, 34), 0);
	cr_assert_eq(vote_snapshot_decode(svc, b, 10), -TXD_ECORRUPT);
}

/* ---- external votes (shared.md: the DTC) --------------------------------------- */

Test(vote, external_vote_is_not_logged_its_decision_is)
{
	propose(svc, "p", 1000, "txn,bob");
	size_t n = mlog.n;
	cr_assert_eq(vote_cast_external(svc, "p", "txn", true, NULL, false), 0);
	cr_assert_eq(mlog.n, n, "no VOTE record: the PREPARE record is the vote");
	cr_assert_eq(vote_cast_external(svc, "p", "txn", true, NULL, false), 0, "same again");
	cr_assert_eq(vote_cast_external(svc, "p", "txn", false, "x", false), -EEXIST);
	cr_assert_eq(vote_cast_external(svc, "p", "zed", true, NULL, false), -ENOENT);
	cr_assert_eq(vote_cast_external(svc, "q", "txn", true, NULL, false), -ENOENT);
	cr_assert_eq(vote_cast_external(svc, "p", "t x", true, NULL, false), -EINVAL);
	cr_assert_eq(vote_cast(svc, "p", "bob", true, NULL), 0);
	cr_assert_eq(outcome(svc, "p", NULL), VOTE_COMMITTED);
	cr_assert_eq(mlog.n, n + 2, "bob's VOTE and the DECIDE");
	cr_assert_eq(mlog.durable, mlog.n);
	cr_assert_eq(vote_cast_external(svc, "p", "txn", true, NULL, true), 0, "replayed: same");
	propose(svc, "r", 1000, "txn");
	cr_assert_eq(vote_cast_external(svc, "r", "txn", false, "conflict on /a", false), 0);
	char why[1100];
	cr_assert_eq(outcome(svc, "r", why), VOTE_ABORTED);
	cr_assert_str_eq(why, "no from txn: conflict on /a");
	cr_assert_eq(vote_cast_external(svc, "r", "txn", true, NULL, false), -EROFS);
}

Test(vote, external_vote_replaying_never_decides_start_does)
{
	struct vote_opts o = opts();

	propose(svc, "p", 1000, "txn,bob");
	cr_assert_eq(vote_cast(svc, "p", "bob", true, NULL), 0);
	/* the crash: the txn's PREPARE record was logged, no decision */
	vote_close(svc);
	svc = open_svc(&o);
	cr_assert_eq(replay_range(svc, 0, mlog.n), 0);
	cr_assert_eq(vote_cast_external(svc, "p", "txn", true, NULL, true), 0);
	cr_assert_eq(outcome(svc, "p", NULL), VOTE_OPEN, "replay never decides");
	size_t n = mlog.n;
	cr_assert_eq(vote_start(svc), 0);
	cr_assert_eq(outcome(svc, "p", NULL), VOTE_COMMITTED, "start decides what is complete");
	cr_assert_eq(mlog.n, n + 1);
	cr_assert_eq(mlog.durable, mlog.n);
}

/* ---- V9: fault injection over every append and sync -------------------------- */

struct outcome_rec {
	int ret[8];
	enum vote_outcome seen_o[3]; /* what a reader saw before the crash */
	char seen_r[3][64];
};

static const char *PN[3] = {"p0", "p1", "p2"};

static void scenario(struct vote_svc *v, struct outcome_rec *out)
{
	memset(out, 0, sizeof(*out));
	out->ret[0] = vote_create(v, "p0", 1000);
	out->ret[1] = vote_set_participants(v, "p0", "a,b", 3, NULL);
	out->ret[2] = vote_cast(v, "p0", "a", true, NULL);
	out->ret[3] = vote_cast(v, "p0", "b", true, NULL); /* commits */
	out->ret[4] = vote_create(v, "p1", 1000);
	out->ret[5] = vote_set_participants(v, "p1", "a,b", 3, NULL);
	out->ret[6] = vote_cast(v, "p1", "b", false, NULL); /* aborts */
	out->ret[7] = vote_create(v, "p2", 1000);
	(void)vote_set_participants(v, "p2", "a", 1, NULL);
	for (int i = 0; i < 3; i++) {
		out->seen_o[i] = VOTE_OPEN;
		(void)vote_outcome(v, PN[i], &out->seen_o[i], out->seen_r[i], 64);
	}
}

static void check_recovered(struct vote_svc *v, const struct outcome_rec *o)
{
	const enum vote_outcome want[3] = {VOTE_COMMITTED, VOTE_ABORTED, VOTE_OPEN};

	for (int i = 0; i < 3; i++) {
		struct vote_info vi;
		int err = vote_get(v, PN[i], &vi);

		/* A decision once visible never changes, and is there. */
		if (o->seen_o[i] != VOTE_OPEN) {
			cr_assert_eq(err, 0, "%s decided before the crash, gone after", PN[i]);
			cr_assert_eq(vi.outcome, o->seen_o[i], "%s changed", PN[i]);
			cr_assert_str_eq(vi.reason, o->seen_r[i]);
		}
		if (err)
			continue;
		/* Whatever is there is whole, and follows the rules. */
		cr_assert(vi.state == VOTE_CREATED || vi.state == VOTE_OPENED ||
				  vi.state == VOTE_DECIDED,
			  "%s state %d", PN[i], vi.state);
		if (vi.state != VOTE_CREATED)
			cr_assert_eq(vi.participants, i == 2 ? 1u : 2u);
		if (vi.state == VOTE_DECIDED)
			cr_assert_eq(vi.outcome, want[i], "%s decided against the rules", PN[i]);
		if (vi.state == VOTE_DECIDED && want[i] == VOTE_COMMITTED)
			cr_assert_eq(vi.yes, 2u);
	}
	/* acknowledged steps survive (V13: a proposal once a vote on it was) */
	if (o->ret[2] == 0)
		cr_assert_eq(vote_get(v, "p0", &(struct vote_info){0}), 0);
	if (o->ret[3] == 0) {
		cr_assert_eq(o->seen_o[0], VOTE_COMMITTED);
	}
	if (o->ret[6] == 0)
		cr_assert_eq(o->seen_o[1], VOTE_ABORTED);
	/* the service works after recovery */
	cr_assert_eq(vote_create(v, "fresh", 1000), 0);
}

Test(vote, V9_fault_injection_every_append_and_sync)
{
	struct vote_opts o = opts();
	struct outcome_rec clean;

	svc = restart(svc, 0, &o);
	scenario(svc, &clean);
	uint64_t nappend = mlog.appends, nsync = mlog.syncs;
	cr_assert_eq(clean.seen_o[0], VOTE_COMMITTED);
	cr_assert_eq(clean.seen_o[1], VOTE_ABORTED);

	for (int which = 0; which < 2; which++) {
		for (uint64_t k = 1; k <= (which ? nsync : nappend) + 1; k++) {
			for (int cut = 0; cut < 2; cut++) {
				struct outcome_rec out;

				memlog_release(&mlog);
				memlog_init(&mlog);
				svc = restart(svc, 0, &o);
				if (which)
					mlog.fail_sync = mlog.syncs + k;
				else
					mlog.fail_append = mlog.appends + k;
				scenario(svc, &out);
				/* V9: after the failure, nothing more is logged */
				if (mlog.broken) {
					size_t n = mlog.n;
					cr_assert_eq(vote_create(svc, "late", 1000), -EIO);
					cr_assert_eq(mlog.n, n);
				}
				svc = restart(svc, cut ? mlog.durable : mlog.n, &o);
				check_recovered(svc, &out);
			}
		}
	}
}

/* ---- the WAL adapter ------------------------------------------------------------- */

static int wal_fn(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		  uint32_t len)
{
	(void)pos;
	cr_assert_eq(type, WAL_REC_VOTE);
	return arg ? vote_replay(arg, payload, len) : 0;
}

Test(vote, wal_backend_round_trip)
{
	char dir[] = "/tmp/txd-vote-XXXXXX", want[8192], got[8192];
	struct vote_opts o = opts();
	struct vote_backend be;
	struct vote_svc *v;
	struct wal *w;

	txd_os_set(NULL); /* the WAL on the real clock */
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(wal_open(dir, NULL, &w), 0);
	cr_assert_eq(wal_replay(w, 0, wal_fn, NULL), 0);
	be = vote_wal_backend(w);
	cr_assert_eq(vote_open(&o, &be, NULL, &v), 0);
	cr_assert_eq(vote_start(v), 0);
	busy_history(v);
	cr_assert_lt(wal_durable_lsn(w), wal_last_lsn(w), "V13: the last CREATE is not synced");
	cr_assert_eq(wal_sync(w, wal_last_lsn(w)), 0);
	state_of(v, want, sizeof(want));
	vote_close(v);
	wal_close(w);

	cr_assert_eq(wal_open(dir, NULL, &w), 0);
	be = vote_wal_backend(w);
	cr_assert_eq(vote_open(&o, &be, NULL, &v), 0);
	cr_assert_eq(wal_replay(w, 0, wal_fn, v), 0);
	replay_prepare(v);
	cr_assert_eq(vote_start(v), 0);
	state_of(v, got, sizeof(got));
	cr_assert_str_eq(got, want);
	vote_close(v);
	wal_close(w);
	tt_rmtree(dir);
}

/* ---- the services host: svc.h V7, V8 ------------------------------------------ */

#include <sys/stat.h>

#include "../../engine/events.h"
#include "../../engine/svc.h"

static int svc_wal_fn(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		      uint32_t len)
{
	(void)pos;
	return arg ? svc_replay(arg, type, payload, len) : 0;
}

struct heard {
	int n;
	char last[128];
};

static void on_decision(void *arg, const char *proposal, enum vote_outcome o, const char *reason)
{
	struct heard *h = arg;

	h->n++;
	snprintf(h->last, sizeof(h->last), "%s %s %s", proposal, vote_outcome_name(o), reason);
}

static struct evlog *host_events; /* svc_host's event log, if set */

static struct svc *svc_host(struct wal **w, const char *dir, bool replay)
{
	struct svc_opts so = {.sync_grants = true, .events = host_events};
	struct svc *s;

	cr_assert_eq(wal_open(dir, NULL, w), 0);
	cr_assert_eq(svc_open(*w, &so, &s), 0);
	cr_assert_eq(wal_replay(*w, 0, svc_wal_fn, replay ? s : NULL), 0);
	return s;
}

Test(vote, svc_V8_checkpoint_container_and_old_lease_section)
{
	char dir[] = "/tmp/txd-vsvc-XXXXXX", want[8192], got[8192];
	struct heard h = {0};
	struct wal *w;
	void *sec, *old;
	size_t len, oldlen;

	txd_os_set(NULL);
	cr_assert_not_null(mkdtemp(dir));
	struct svc *s = svc_host(&w, dir, false);
	svc_set_decision_listener(s, on_decision, &h);
	cr_assert_eq(svc_start(s), 0);
	struct vote_svc *v = svc_vote(s);
	propose(v, "a", 1000, "x,y");
	cr_assert_eq(vote_cast(v, "a", "x", true, NULL), 0);
	cr_assert_eq(h.n, 0);
	cr_assert_eq(vote_cast(v, "a", "y", false, NULL), 0);
	cr_assert_eq(h.n, 1, "the decision listener hears a decision once");
	cr_assert_str_eq(h.last, "a aborted no from y");
	propose(v, "b", 1000, "x");
	state_of(v, want, sizeof(want));
	cr_assert_eq(svc_ckpt_save(s, &sec, &len), 0);
	cr_assert_eq(lease_snapshot_encode(svc_lease(s), &old, &oldlen), 0);
	svc_close(s);
	wal_close(w);

	/* the container loads into fresh services: the same votes */
	s = svc_host(&w, dir, false);
	cr_assert_eq(svc_ckpt_load(s, sec, len), 0);
	cr_assert_eq(svc_start(s), 0);
	state_of(svc_vote(s), got, sizeof(got));
	cr_assert_str_eq(got, want);
	svc_close(s);
	wal_close(w);

	/* a section written before votes (a bare lease snapshot) still loads */
	s = svc_host(&w, dir, false);
	cr_assert_eq(svc_ckpt_load(s, old, oldlen), 0);
	svc_close(s);
	wal_close(w);

	/* an unknown sub-section is refused, not skipped */
	uint8_t *bad = malloc(len);
	memcpy(bad, sec, len);
	bad[12] = 'X';
	s = svc_host(&w, dir, false);
	cr_assert_eq(svc_ckpt_load(s, bad, len), -TXD_EFORMAT);
	svc_close(s);
	wal_close(w);

	/* and the WAL alone replays to the same state (V1: WAL_REC_VOTE is known) */
	s = svc_host(&w, dir, true);
	cr_assert_eq(svc_start(s), 0);
	state_of(svc_vote(s), got, sizeof(got));
	cr_assert_str_eq(got, want);
	svc_close(s);
	wal_close(w);
	free(bad);
	free(sec);
	free(old);
	tt_rmtree(dir);
}

static char *events_text(struct evlog *ev)
{
	char *txt = NULL;
	size_t len = 0;

	cr_assert_eq(ev_render(ev, 0, NULL, NULL, 0, &txt, &len), 0);
	return txt;
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

Test(vote, svc_V7_events_and_a_lost_decision_event_derived_at_start)
{
	char dir[] = "/tmp/txd-vev-XXXXXX", evdir[64];
	struct wal *w;

	txd_os_set(NULL);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(evdir, sizeof(evdir), "%s/ev", dir);
	cr_assert_eq(mkdir(evdir, 0700), 0);
	cr_assert_eq(ev_open(evdir, &host_events), 0);
	struct svc *s = svc_host(&w, dir, false);
	cr_assert_eq(svc_start(s), 0);
	propose(svc_vote(s), "d", 1000, "x");
	cr_assert_eq(
		vote_cast(svc_vote(s), "d", "x", true, &(struct proc_id){.pid = 42, .start = 7}),
		0);
	char *txt = events_text(host_events);
	cr_assert_eq(count_of(txt, "\"type\":\"proposal_opened\",\"proposal\":\"d\""), 1, "%s",
		     txt);
	cr_assert_eq(count_of(txt, "\"type\":\"vote\",\"proposal\":\"d\""), 1, "%s", txt);
	cr_assert_eq(count_of(txt, "\"by_pid\":42,\"by_start\":7"), 1, "the voter's journal: %s",
		     txt);
	cr_assert_eq(count_of(txt, "\"type\":\"decision\",\"proposal\":\"d\""), 1, "%s", txt);
	free(txt);
	svc_close(s);
	wal_close(w);
	ev_close(host_events);

	/* a power cut lost the event log's tail: the log restarts empty */
	char path[96];
	snprintf(path, sizeof(path), "%s/events.log", evdir);
	cr_assert_eq(truncate(path, 0), 0);
	cr_assert_eq(ev_open(evdir, &host_events), 0);
	s = svc_host(&w, dir, true);
	cr_assert_eq(svc_start(s), 0);
	txt = events_text(host_events);
	cr_assert_eq(count_of(txt, "\"type\":\"decision\",\"proposal\":\"d\""), 1, "derived: %s",
		     txt);
	cr_assert_eq(count_of(txt, "\"derived\":true"), 1, "%s", txt);
	free(txt);
	svc_close(s);
	wal_close(w);

	/* the next start finds it: nothing derived twice */
	s = svc_host(&w, dir, true);
	cr_assert_eq(svc_start(s), 0);
	txt = events_text(host_events);
	cr_assert_eq(count_of(txt, "\"type\":\"decision\",\"proposal\":\"d\""), 1, "%s", txt);
	free(txt);
	svc_close(s);
	wal_close(w);
	ev_close(host_events);
	host_events = NULL;
	tt_rmtree(dir);
}

/* The fixed directories of .txdir/consensus may be cached by the kernel (a
 * voter's walk to votes/P/NAME costs no lookup for consensus/ and votes/);
 * a proposal's directory and every file may not. */
Test(vote, fixed_consensus_directories_are_cacheable_the_rest_not)
{
	static const struct txd_opts dur = {.durability = TXD_DUR_FSYNC};
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_entry e;
	uint64_t node, cons, props;

	txd_os_set(NULL);
	cr_assert_eq(txd_fs_open(store, &dur, &fs, NULL), 0);
	cr_assert_eq(tt_resolve(fs, ".txdir", NULL, NULL, &node), 0);
	cr_assert_eq(txd_lookup(fs, node, "consensus", &e), 0);
	cr_assert(e.cacheable, "consensus/");
	cons = e.node;
	const char *fixed[] = {"proposals", "votes", "decisions"};
	for (size_t k = 0; k < 3; k++) {
		cr_assert_eq(txd_lookup(fs, cons, fixed[k], &e), 0);
		cr_assert(e.cacheable, "%s/", fixed[k]);
		txd_forget(fs, e.node, 1);
	}
	cr_assert_eq(txd_lookup(fs, cons, "proposals", &e), 0);
	props = e.node;
	cr_assert_eq(tt_mkdir(fs, ".txdir/consensus/proposals/p"), 0);
	cr_assert_eq(txd_lookup(fs, props, "p", &e), 0);
	cr_assert_not(e.cacheable, "proposals/P comes and goes");
	uint64_t p = e.node;
	cr_assert_eq(txd_lookup(fs, p, "participants", &e), 0);
	cr_assert_not(e.cacheable, "files are rendered at every open");
	txd_forget(fs, e.node, 1);
	txd_forget(fs, p, 1);
	txd_forget(fs, props, 1);
	txd_forget(fs, cons, 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}
