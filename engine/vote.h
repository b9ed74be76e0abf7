/*
 * vote.h — TEMPORARY (dtc branch): only the declarations of the vote API that
 * transactions call (/work/wt/briefs/s6/shared.md), so txn.c builds before
 * the vote service exists. engine/vote_stub.c is a fake of it that the
 * tests drive. At the merge the vote helper's vote.h replaces this file,
 * svc.h gains svc_vote and svc_set_decision_listener (declared here until
 * then), and vote_stub.c is deleted.
 */
#ifndef TXD_VOTE_H
#define TXD_VOTE_H

#include <stdbool.h>
#include <stddef.h>

struct svc;
struct vote_svc;

enum vote_outcome { VOTE_OPEN = 0, VOTE_COMMITTED = 1, VOTE_ABORTED = 2 };

/* A vote whose durable record someone else already wrote (a prepared
 * transaction's WAL_REC_PREPARE record is its vote). Registers the vote in
 * memory without logging it; when it completes the vote (all yes) or is a
 * "no", the decision is logged (durably) and announced as any other
 * decision. replaying=true: memory only, never logs, never decides.
 * Returns 0 (also: the same vote again), -ENOENT (no such open proposal or
 * participant), -EEXIST (a different vote was already cast), -EROFS
 * (already decided), -EINVAL (bad names). Call with NO fs->lock held. */
int vote_cast_external(struct vote_svc *v, const char *proposal, const char *participant, bool yes,
		       const char *reason, bool replaying);
/* The outcome of a proposal: VOTE_OPEN while undecided; reason like
 * "no from bob" / "timeout missing carol" when aborted. -ENOENT unknown. */
int vote_outcome(struct vote_svc *v, const char *proposal, enum vote_outcome *out, char *reason,
		 size_t reason_size);

/* svc.h's, from the vote helper: */
struct vote_svc *svc_vote(struct svc *s);
/* Called once per decision, after it is durable, with no service lock held
 * (and no fs->lock), on whatever thread decided. Set once. */
void svc_set_decision_listener(struct svc *s,
			       void (*fn)(void *arg, const char *proposal, enum vote_outcome o,
					  const char *reason),
			       void *arg);

/* ---- the stub's own controls (tests only; gone with vote_stub.c) ---- */
/* Open proposal P among the participants (a NULL-terminated list). */
int vote_stub_open(const char *proposal, const char *const *participants);
/* Decide P now (as a timeout or an outside vote would) and announce it. */
int vote_stub_decide(const char *proposal, enum vote_outcome o, const char *reason);
/* Forget every proposal and the listener. */
void vote_stub_reset(void);

#endif
