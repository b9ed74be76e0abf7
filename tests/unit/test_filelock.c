/*
 * test_filelock.c — filelock.h: advisory locks per file (L1-L7).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "filelock.h"

static struct fl_table *fl;
static const struct fl_key F1 = {.view = 0, .ino = 7}, F2 = {.view = 0, .ino = 8},
			   V1 = {.view = 3, .ino = 7};

static void setup(void)
{
	cr_assert_eq(fl_open(&fl), 0);
}

static void teardown(void)
{
	fl_close(fl);
}

TestSuite(filelock, .init = setup, .fini = teardown);

static struct fl_req px(short type, uint64_t start, uint64_t end, uint64_t owner)
{
	return (struct fl_req){.kind = FL_POSIX, .type = type, .start = start, .end = end,
			       .owner = owner, .pid = (uint32_t)(1000 + owner)};
}

static struct fl_req fk(short type, uint64_t owner)
{
	return (struct fl_req){.kind = FL_FLOCK, .type = type, .start = 0, .end = FL_END,
			       .owner = owner, .pid = (uint32_t)(1000 + owner)};
}

static int set(const struct fl_key *k, struct fl_req r)
{
	return fl_set(fl, k, &r, false, NULL, NULL, NULL);
}

/* The conflicting lock fl_test finds for r (its type, or F_UNLCK). */
static short test_type(const struct fl_key *k, struct fl_req r)
{
	fl_test(fl, k, &r);
	return r.type;
}

static uint64_t nlocks(void)
{
	uint64_t l, w;
	fl_counts(fl, &l, &w);
	return l;
}

Test(filelock, L2_readers_share_a_writer_excludes)
{
	cr_assert_eq(set(&F1, px(F_RDLCK, 0, 99, 1)), 0);
	cr_assert_eq(set(&F1, px(F_RDLCK, 50, 150, 2)), 0, "two readers");
	cr_assert_eq(set(&F1, px(F_WRLCK, 90, 95, 3)), -EAGAIN, "a writer over readers");
	cr_assert_eq(set(&F1, px(F_WRLCK, 151, 200, 3)), 0, "a writer past them");
	cr_assert_eq(set(&F1, px(F_RDLCK, 160, 160, 1)), -EAGAIN, "a reader over the writer");
	cr_assert_eq(set(&F2, px(F_WRLCK, 0, FL_END, 9)), 0, "another file is apart");
	cr_assert_eq(set(&V1, px(F_WRLCK, 0, FL_END, 9)), 0, "the same inode in a view is apart");
}

/* L9: an open file description's locks (F_OFD_SETLK, owner = the
 * description) go at its last close, fl_release_fh; others' stay. */
Test(filelock, L9_ofd_locks_go_with_their_description)
{
	struct fl_req a = px(F_WRLCK, 0, 99, 1), b = px(F_WRLCK, 200, 299, 2), c;
	a.fh = 11;
	b.fh = 12;
	cr_assert_eq(set(&F1, a), 0);
	cr_assert_eq(set(&F1, b), 0);
	fl_release_fh(fl, &F1, 11);
	c = px(F_WRLCK, 0, 99, 3);
	cr_expect_eq(set(&F1, c), 0, "the description's lock went with it");
	c = px(F_WRLCK, 200, 299, 3);
	cr_expect_eq(set(&F1, c), -EAGAIN, "another description's stays");
}

Test(filelock, L1_posix_and_flock_never_interact)
{
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, FL_END, 1)), 0);
	cr_assert_eq(set(&F1, fk(F_WRLCK, 2)), 0);
	cr_assert_eq(set(&F1, fk(F_RDLCK, 3)), -EAGAIN);
	cr_assert_eq(set(&F1, px(F_RDLCK, 0, 0, 3)), -EAGAIN);
}

Test(filelock, L2_an_owner_never_conflicts_with_itself)
{
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, 9, 1)), 0);
	cr_assert_eq(set(&F1, px(F_RDLCK, 5, 20, 1)), 0, "the owner changes its own lock");
	cr_assert_eq(test_type(&F1, px(F_WRLCK, 0, 4, 1)), F_UNLCK);
	cr_assert_eq(test_type(&F1, px(F_RDLCK, 0, 4, 2)), F_WRLCK, "0-4 still written");
	cr_assert_eq(test_type(&F1, px(F_RDLCK, 5, 20, 2)), F_UNLCK, "5-20 now read");
}

Test(filelock, L3_unlock_in_the_middle_splits_and_neighbours_merge)
{
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, 99, 1)), 0);
	cr_assert_eq(set(&F1, px(F_UNLCK, 40, 59, 1)), 0);
	cr_assert_eq(nlocks(), 2, "split in two");
	cr_assert_eq(test_type(&F1, px(F_WRLCK, 40, 59, 2)), F_UNLCK, "the hole is free");
	cr_assert_eq(test_type(&F1, px(F_WRLCK, 39, 39, 2)), F_WRLCK);
	cr_assert_eq(test_type(&F1, px(F_WRLCK, 60, 60, 2)), F_WRLCK);
	cr_assert_eq(set(&F1, px(F_WRLCK, 40, 59, 1)), 0);
	cr_assert_eq(nlocks(), 1, "filled again: one lock");
	for (uint64_t b = 100; b < 1100; b++)
		cr_assert_eq(set(&F1, px(F_WRLCK, b, b, 1)), 0);
	cr_assert_eq(nlocks(), 1, "byte by byte stays one lock");
	struct fl_req r = px(F_RDLCK, 500, 500, 2);
	fl_test(fl, &F1, &r);
	cr_assert_eq(r.start, 0);
	cr_assert_eq(r.end, 1099);
	cr_assert_eq(r.pid, 1001, "the holder's pid");
	cr_assert_eq(set(&F1, px(F_UNLCK, 0, FL_END, 1)), 0);
	cr_assert_eq(nlocks(), 0);
}

Test(filelock, release_owner_drops_only_that_owner_and_kind)
{
	cr_assert_eq(set(&F1, px(F_RDLCK, 0, 9, 1)), 0);
	cr_assert_eq(set(&F1, px(F_RDLCK, 0, 9, 2)), 0);
	cr_assert_eq(set(&F1, fk(F_RDLCK, 1)), 0);
	fl_release_owner(fl, &F1, FL_POSIX, 1);
	cr_assert_eq(nlocks(), 2);
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, 9, 3)), -EAGAIN, "owner 2 still reads");
	fl_release_owner(fl, &F1, FL_POSIX, 2);
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, 9, 3)), 0);
	cr_assert_eq(set(&F1, fk(F_WRLCK, 3)), -EAGAIN, "owner 1's flock stays");
}

Test(filelock, L4_flock_conversion_drops_the_old_lock_first)
{
	cr_assert_eq(set(&F1, fk(F_RDLCK, 1)), 0);
	cr_assert_eq(set(&F1, fk(F_RDLCK, 2)), 0);
	cr_assert_eq(set(&F1, fk(F_WRLCK, 1)), -EAGAIN, "2 still shares");
	cr_assert_eq(set(&F1, fk(F_WRLCK, 2)), 0, "1's shared lock went with its attempt");
	cr_assert_eq(set(&F1, fk(F_WRLCK, 2)), 0, "the type held: nothing to do");
	cr_assert_eq(nlocks(), 1);
}

struct got {
	atomic_int n;
	int err[8];
	int order[8];
};

/* A waiter's arg: a slot holding the tally, its index telling who. */
static struct got *slots[8];

static void done(void *arg, int err)
{
	struct got *g = *(struct got **)arg;
	int k = atomic_fetch_add(&g->n, 1);
	g->err[k] = err;
	g->order[k] = (int)((struct got **)arg - slots);
}

Test(filelock, L5_waiters_are_granted_in_order_once_nothing_conflicts)
{
	static struct got g;
	for (int k = 0; k < 8; k++)
		slots[k] = &g;
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, FL_END, 1)), 0);
	struct fl_req a = px(F_WRLCK, 0, 9, 2), b = px(F_RDLCK, 0, 9, 3), c = px(F_RDLCK, 5, 5, 4);
	cr_assert_eq(fl_set(fl, &F1, &a, true, NULL, done, &slots[1]), -EINPROGRESS);
	cr_assert_eq(fl_set(fl, &F1, &b, true, NULL, done, &slots[2]), -EINPROGRESS);
	cr_assert_eq(fl_set(fl, &F1, &c, true, NULL, done, &slots[3]), -EINPROGRESS);
	cr_assert_eq(set(&F1, px(F_UNLCK, 20, 30, 1)), 0);
	cr_assert_eq(atomic_load(&g.n), 0, "still covered");
	cr_assert_eq(set(&F1, px(F_UNLCK, 0, FL_END, 1)), 0);
	cr_assert_eq(atomic_load(&g.n), 1, "the writer first; the readers still wait for it");
	cr_assert_eq(g.err[0], 0);
	cr_assert_eq(g.order[0], 1);
	fl_release_owner(fl, &F1, FL_POSIX, 2);
	cr_assert_eq(atomic_load(&g.n), 3, "then both readers");
	cr_assert_eq(g.err[1] | g.err[2], 0);
	cr_assert_eq(set(&F1, px(F_WRLCK, 10, 10, 9)), 0, "the readers hold 0-9 only");
	cr_assert_eq(set(&F1, px(F_WRLCK, 5, 5, 9)), -EAGAIN);
}

Test(filelock, L5_a_withdrawn_waiter_is_never_granted)
{
	static struct got g;
	slots[0] = &g;
	cr_assert_eq(set(&F1, fk(F_WRLCK, 1)), 0);
	struct fl_req r = fk(F_WRLCK, 2);
	cr_assert_eq(fl_set(fl, &F1, &r, true, NULL, done, &slots[0]), -EINPROGRESS);
	cr_assert_eq(fl_cancel(fl, &slots[0]), 0);
	cr_assert_eq(fl_cancel(fl, &slots[0]), -ENOENT, "once");
	fl_release_owner(fl, &F1, FL_FLOCK, 1);
	cr_assert_eq(atomic_load(&g.n), 0);
	cr_assert_eq(nlocks(), 0);
}

Test(filelock, an_interrupt_before_queueing_is_not_lost)
{
	_Atomic bool intr = true;
	cr_assert_eq(set(&F1, fk(F_WRLCK, 1)), 0);
	struct fl_req r = fk(F_WRLCK, 2);
	cr_assert_eq(fl_set(fl, &F1, &r, true, &intr, done, &slots[0]), -EINTR);
	struct fl_req free_one = fk(F_WRLCK, 3);
	cr_assert_eq(fl_set(fl, &F2, &free_one, true, &intr, done, &slots[0]), 0,
		     "nothing to wait for: granted whatever the flag");
}

Test(filelock, L6_a_cycle_of_waits_is_EDEADLK)
{
	static struct got g;
	slots[0] = &g;
	cr_assert_eq(set(&F1, px(F_WRLCK, 0, 0, 1)), 0);
	cr_assert_eq(set(&F2, px(F_WRLCK, 0, 0, 2)), 0);
	struct fl_req a = px(F_WRLCK, 0, 0, 1);
	cr_assert_eq(fl_set(fl, &F2, &a, true, NULL, done, &slots[0]), -EINPROGRESS,
		     "1 waits for 2");
	struct fl_req b = px(F_WRLCK, 0, 0, 2);
	cr_assert_eq(fl_set(fl, &F1, &b, true, NULL, done, &slots[1]), -EDEADLK,
		     "2 waiting for 1 closes the cycle");
	struct fl_req c = px(F_WRLCK, 0, 0, 3);
	cr_assert_eq(fl_set(fl, &F1, &c, true, NULL, done, &slots[2]), -EINPROGRESS,
		     "3 may wait");
	cr_assert_eq(fl_cancel(fl, &slots[2]), 0);
	cr_assert_eq(fl_cancel(fl, &slots[0]), 0);
}

Test(filelock, bad_requests_are_EINVAL)
{
	struct fl_req r = px(F_WRLCK, 10, 5, 1);
	cr_assert_eq(set(&F1, r), -EINVAL, "end before start");
	r = px(99, 0, 1, 1);
	cr_assert_eq(set(&F1, r), -EINVAL, "unknown type");
	cr_assert_eq(nlocks(), 0);
}

static void *locker(void *arg)
{
	long id = (long)arg;
	for (int k = 0; k < 2000; k++) {
		struct fl_req r = px(k % 3 ? F_RDLCK : F_WRLCK, (uint64_t)(k % 7), (uint64_t)(k % 7 + 3),
				     (uint64_t)id);
		fl_set(fl, &F1, &r, false, NULL, NULL, NULL);
		if (k % 5 == 0)
			fl_release_owner(fl, &F1, FL_POSIX, (uint64_t)id);
	}
	fl_release_owner(fl, &F1, FL_POSIX, (uint64_t)id);
	return NULL;
}

Test(filelock, threads_leave_nothing_behind)
{
	pthread_t t[4];
	for (long k = 0; k < 4; k++)
		pthread_create(&t[k], NULL, locker, (void *)(k + 1));
	for (int k = 0; k < 4; k++)
		pthread_join(t[k], NULL);
	cr_assert_eq(nlocks(), 0);
}
