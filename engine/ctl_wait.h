/*
 * ctl_wait.h — what a control-tree wait file holds for its reader: a
 * deferred read (txd_read_async: answered once the file is ready) and a
 * poll (txd_poll: woken once). The adapters' wait files (ctl_lease.c's
 * released/granted, ctl_vote.c's wait, ctl_state.c's changed) embed one
 * struct ctl_waiter each, under their own wait lock.
 *
 * Every ctl_waiter_* call is made with that wait lock held; callbacks are
 * never called under it: they are collected in a struct ctl_wakes and run
 * by ctl_wakes_run once the lock is released (a callback may take the FUSE
 * request's lock, which is taken before the adapters' locks).
 */
#ifndef TXD_CTL_WAIT_H
#define TXD_CTL_WAIT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/types.h>
#include <syslog.h>

struct ctl_waiter {
	void (*done)(void *arg, int err); /* a deferred read */
	void *done_arg;
	void (*wake)(void *arg);          /* a poll */
	void *wake_arg;
};

/* Callbacks collected under a wait lock and run after it: the first
 * CTL_WAKES_INLINE in place, the rest in a heap array that ctl_wakes_run
 * frees (a release may ready any number of readers of one file). */
#define CTL_WAKES_INLINE 32

struct ctl_wake {
	void (*done)(void *arg, int err);
	void (*wake)(void *arg);
	void *arg;
};

struct ctl_wakes {
	struct ctl_wake v[CTL_WAKES_INLINE];
	unsigned n;
	struct ctl_wake *more; /* entries CTL_WAKES_INLINE.. (malloc'd) */
	unsigned nmore, cap;
	unsigned lost;         /* not queued for want of memory (logged) */
};

static inline void ctl_wakes_add(struct ctl_wakes *wl, void (*done)(void *, int),
				 void (*wake)(void *), void *arg)
{
	struct ctl_wake e = {done, wake, arg};

	if (wl->n < CTL_WAKES_INLINE) {
		wl->v[wl->n++] = e;
		return;
	}
	if (wl->nmore == wl->cap) {
		unsigned cap = wl->cap ? 2 * wl->cap : 64;
		struct ctl_wake *m = realloc(wl->more, cap * sizeof(*m));
		if (!m) {
			wl->lost++;
			return;
		}
		wl->more = m;
		wl->cap = cap;
	}
	wl->more[wl->nmore++] = e;
}

/* The file became ready: its deferred read and its poll go to wl. */
static inline void ctl_waiter_ready(struct ctl_waiter *w, struct ctl_wakes *wl)
{
	if (w->done) {
		ctl_wakes_add(wl, w->done, NULL, w->done_arg);
		w->done = NULL;
	}
	if (w->wake) {
		ctl_wakes_add(wl, NULL, w->wake, w->wake_arg);
		w->wake = NULL;
	}
}

static inline void ctl_wake_run(const struct ctl_wake *e)
{
	if (e->done)
		e->done(e->arg, 0);
	else
		e->wake(e->arg);
}

/* With no lock held: each deferred read answered (0: read again), each poll
 * woken; then wl is empty again. */
static inline void ctl_wakes_run(struct ctl_wakes *wl)
{
	for (unsigned k = 0; k < wl->n; k++)
		ctl_wake_run(&wl->v[k]);
	for (unsigned k = 0; k < wl->nmore; k++)
		ctl_wake_run(&wl->more[k]);
	if (wl->lost)
		syslog(LOG_ERR, "txdir: %u wait-file wake-ups lost (out of memory)", wl->lost);
	free(wl->more);
	wl->more = NULL;
	wl->n = wl->nmore = wl->cap = wl->lost = 0;
}

/* A read of a file not ready: -EAGAIN (O_NONBLOCK, or no way to defer), or
 * -EINPROGRESS with done registered. */
static inline ssize_t ctl_waiter_defer(struct ctl_waiter *w, bool nonblock,
				       void (*done)(void *arg, int err), void *arg)
{
	if (nonblock || !done)
		return -EAGAIN;
	w->done = done;
	w->done_arg = arg;
	return -EINPROGRESS;
}

/* INTERRUPT: withdraws the deferred read if it is arg's. */
static inline bool ctl_waiter_cancel(struct ctl_waiter *w, void *arg)
{
	if (!w->done || w->done_arg != arg)
		return false;
	w->done = NULL;
	return true;
}

/* A poll of a file not ready registers wake; the one it replaces goes to
 * wl (a spurious wake-up: its owner frees it). */
static inline void ctl_waiter_poll(struct ctl_waiter *w, void (*wake)(void *arg), void *arg,
				   struct ctl_wakes *wl)
{
	if (w->wake)
		ctl_wakes_add(wl, NULL, w->wake, w->wake_arg);
	w->wake = wake;
	w->wake_arg = arg;
}

/* The file closes: a poll still registered goes to wl (its owner frees it). */
static inline void ctl_waiter_close(struct ctl_waiter *w, struct ctl_wakes *wl)
{
	if (w->wake)
		ctl_wakes_add(wl, NULL, w->wake, w->wake_arg);
	w->wake = NULL;
}

#endif
