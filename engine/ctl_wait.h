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
#include <sys/types.h>

struct ctl_waiter {
	void (*done)(void *arg, int err); /* a deferred read */
	void *done_arg;
	void (*wake)(void *arg);          /* a poll */
	void *wake_arg;
};

#define CTL_WAKES_MAX 64
struct ctl_wakes {
	struct {
		void (*done)(void *arg, int err);
		void (*wake)(void *arg);
		void *arg;
	} v[CTL_WAKES_MAX];
	unsigned n;
};

static inline void ctl_wakes_add(struct ctl_wakes *wl, void (*done)(void *, int),
				 void (*wake)(void *), void *arg)
{
	if (wl->n < CTL_WAKES_MAX) {
		wl->v[wl->n].done = done;
		wl->v[wl->n].wake = wake;
		wl->v[wl->n++].arg = arg;
	}
}

/* The file became ready: its deferred read and its poll go to wl. */
static inline void ctl_waiter_ready(struct ctl_waiter *w, struct ctl_wakes *wl)
{
	if (w->done && wl->n < CTL_WAKES_MAX) {
		ctl_wakes_add(wl, w->done, NULL, w->done_arg);
		w->done = NULL;
	}
	if (w->wake && wl->n < CTL_WAKES_MAX) {
		ctl_wakes_add(wl, NULL, w->wake, w->wake_arg);
		w->wake = NULL;
	}
}

/* With no lock held: each deferred read answered (0: read again), each poll
 * woken. */
static inline void ctl_wakes_run(const struct ctl_wakes *wl)
{
	for (unsigned k = 0; k < wl->n; k++) {
		if (wl->v[k].done)
			wl->v[k].done(wl->v[k].arg, 0);
		else
			wl->v[k].wake(wl->v[k].arg);
	}
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
