/*
 * lease_proc.c — lease hooks over proc.h (lease_proc.h).
 */
#include "lease_proc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct lease_proc {
	struct proc *p;
	struct proc_watch *w;
	pthread_mutex_t lock;   /* protects svc */
	struct lease_svc *svc;
	void (*death)(void *arg, const struct proc_id *id); /* set once, before attach */
	void *death_arg;
};

void lease_proc_set_death(struct lease_proc *lp,
			  void (*fn)(void *arg, const struct proc_id *id), void *arg)
{
	lp->death_arg = arg;
	lp->death = fn;
}

static void on_death(void *arg, const struct proc_id *id)
{
	struct lease_proc *lp = arg;
	struct lease_svc *s;

	pthread_mutex_lock(&lp->lock);
	s = lp->svc;
	pthread_mutex_unlock(&lp->lock);
	/* Before attach nothing is watched: lease_start watches. A failed
	 * service (-EIO) keeps the grant; a restart releases it (L8). */
	if (s && lp->death)
		lp->death(lp->death_arg, id); /* it calls lease_owner_died */
	else if (s)
		(void)lease_owner_died(s, id);
}

int lease_proc_open(struct proc *p, struct lease_proc **out)
{
	struct lease_proc *lp = calloc(1, sizeof(*lp));
	int err;

	if (!lp)
		return -ENOMEM;
	lp->p = p;
	pthread_mutex_init(&lp->lock, NULL);
	err = proc_watch_open(p, on_death, lp, &lp->w);
	if (err) {
		pthread_mutex_destroy(&lp->lock);
		free(lp);
		return err;
	}
	*out = lp;
	return 0;
}

static bool h_alive(void *arg, const struct proc_id *id)
{
	struct lease_proc *lp = arg;

	return proc_alive(lp->p, id);
}

static bool h_descends(void *arg, const struct proc_id *proc, const struct proc_id *anc)
{
	struct lease_proc *lp = arg;

	/* The ancestor's pid must still be that process (P2). */
	return proc_alive(lp->p, anc) && proc_descends(lp->p, proc->pid, anc->pid);
}

static int h_watch(void *arg, const struct proc_id *id)
{
	struct lease_proc *lp = arg;

	return proc_watch_add(lp->w, id);
}

static void h_unwatch(void *arg, const struct proc_id *id)
{
	struct lease_proc *lp = arg;

	proc_watch_del(lp->w, id);
}

struct lease_hooks lease_proc_hooks(struct lease_proc *lp,
				    void (*event)(void *arg, const struct lease_event *ev),
				    void *event_arg)
{
	return (struct lease_hooks){ .alive = h_alive, .descends = h_descends,
				     .watch = h_watch, .unwatch = h_unwatch, .arg = lp,
				     .event = event, .event_arg = event_arg };
}

void lease_proc_attach(struct lease_proc *lp, struct lease_svc *s)
{
	pthread_mutex_lock(&lp->lock);
	lp->svc = s;
	pthread_mutex_unlock(&lp->lock);
}

void lease_proc_close(struct lease_proc *lp)
{
	proc_watch_close(lp->w);
	pthread_mutex_destroy(&lp->lock);
	free(lp);
}
