/*
 * vote_stub.c — TEMPORARY fake of the vote service (vote.h), for the dtc
 * branch until the merge: a process-wide table of proposals the tests open
 * and decide (vote_stub_*), so it survives a reopen of the store in one
 * test process as the real service's log would. Decisions are announced to
 * the listener on the deciding thread with no lock held. Not durable
 * across processes: txdirfs built with it knows no proposals.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vote.h"

#define STUB_MAX   64
#define STUB_PARTS 16

struct stub_prop {
	char name[256];
	char part[STUB_PARTS][256];
	signed char vote[STUB_PARTS]; /* -1 none, 0 no, 1 yes */
	unsigned nparts;
	enum vote_outcome outcome;
	char reason[256];
};

static pthread_mutex_t stub_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stub_prop props[STUB_MAX];
static unsigned nprops;
static void (*listener)(void *arg, const char *proposal, enum vote_outcome o, const char *reason);
static void *listener_arg;
static struct vote_svc *const the_stub = (struct vote_svc *)&props;

struct vote_svc *svc_vote(struct svc *s)
{
	(void)s;
	return the_stub;
}

void svc_set_decision_listener(struct svc *s,
			       void (*fn)(void *arg, const char *proposal, enum vote_outcome o,
					  const char *reason),
			       void *arg)
{
	(void)s;
	pthread_mutex_lock(&stub_lock);
	listener = fn;
	listener_arg = arg;
	pthread_mutex_unlock(&stub_lock);
}

static struct stub_prop *find(const char *p)
{
	for (unsigned k = 0; k < nprops; k++)
		if (!strcmp(props[k].name, p))
			return &props[k];
	return NULL;
}

int vote_stub_open(const char *proposal, const char *const *participants)
{
	pthread_mutex_lock(&stub_lock);
	int err = 0;
	if (find(proposal) || nprops == STUB_MAX) {
		err = -EEXIST;
	} else {
		struct stub_prop *p = &props[nprops++];
		memset(p, 0, sizeof(*p));
		snprintf(p->name, sizeof(p->name), "%s", proposal);
		for (; participants[p->nparts] && p->nparts < STUB_PARTS; p->nparts++) {
			snprintf(p->part[p->nparts], sizeof(p->part[0]), "%s",
				 participants[p->nparts]);
			p->vote[p->nparts] = -1;
		}
	}
	pthread_mutex_unlock(&stub_lock);
	return err;
}

static void announce(const char *proposal, enum vote_outcome o, const char *reason)
{
	pthread_mutex_lock(&stub_lock);
	void (*fn)(void *, const char *, enum vote_outcome, const char *) = listener;
	void *arg = listener_arg;
	pthread_mutex_unlock(&stub_lock);
	if (fn)
		fn(arg, proposal, o, reason);
}

int vote_stub_decide(const char *proposal, enum vote_outcome o, const char *reason)
{
	pthread_mutex_lock(&stub_lock);
	struct stub_prop *p = find(proposal);
	int err = !p ? -ENOENT : p->outcome != VOTE_OPEN ? -EROFS : 0;
	char name[256], why[256];
	if (!err) {
		p->outcome = o;
		snprintf(p->reason, sizeof(p->reason), "%s", reason ? reason : "");
		snprintf(name, sizeof(name), "%s", p->name);
		snprintf(why, sizeof(why), "%s", p->reason);
	}
	pthread_mutex_unlock(&stub_lock);
	if (!err)
		announce(name, o, why);
	return err;
}

void vote_stub_reset(void)
{
	pthread_mutex_lock(&stub_lock);
	nprops = 0;
	listener = NULL;
	listener_arg = NULL;
	pthread_mutex_unlock(&stub_lock);
}

int vote_cast_external(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		       const char *reason, bool replaying)
{
	(void)v;
	(void)reason;
	pthread_mutex_lock(&stub_lock);
	struct stub_prop *p = find(proposal);
	int err = p ? 0 : -ENOENT;
	unsigned k = 0;
	if (!err) {
		while (k < p->nparts && strcmp(p->part[k], participant))
			k++;
		if (k == p->nparts)
			err = -ENOENT;
	}
	if (!err && p->vote[k] >= 0)
		err = p->vote[k] == (yes ? 1 : 0) ? 1 : -EEXIST; /* 1: the same again */
	if (!err && p->outcome != VOTE_OPEN && !replaying)
		err = -EROFS;
	if (err) {
		pthread_mutex_unlock(&stub_lock);
		return err > 0 ? 0 : err;
	}
	p->vote[k] = yes ? 1 : 0;
	enum vote_outcome o = VOTE_OPEN;
	char name[256], why[300] = "";
	if (!replaying && p->outcome == VOTE_OPEN) {
		if (!yes) {
			o = VOTE_ABORTED;
			snprintf(why, sizeof(why), "no from %s", participant);
		} else {
			unsigned y = 0;
			for (unsigned i = 0; i < p->nparts; i++)
				y += p->vote[i] == 1;
			if (y == p->nparts)
				o = VOTE_COMMITTED;
		}
		if (o != VOTE_OPEN) {
			p->outcome = o;
			snprintf(p->reason, sizeof(p->reason), "%s", why);
		}
	}
	snprintf(name, sizeof(name), "%s", p->name);
	pthread_mutex_unlock(&stub_lock);
	if (o != VOTE_OPEN)
		announce(name, o, why);
	return 0;
}

int vote_outcome(struct vote_svc *v, const char *proposal, enum vote_outcome *out, char *reason,
		 size_t reason_size)
{
	(void)v;
	pthread_mutex_lock(&stub_lock);
	struct stub_prop *p = find(proposal);
	if (p) {
		*out = p->outcome;
		if (reason && reason_size)
			snprintf(reason, reason_size, "%s", p->reason);
	}
	pthread_mutex_unlock(&stub_lock);
	return p ? 0 : -ENOENT;
}
