/*
 * lease_proc.h — the lease service's hooks over real processes: liveness and
 * ancestry from proc.h, deaths from a pidfd watcher fed to lease_owner_died
 * (SPEC §5: released by the owner's death within 1 s).
 *
 * Order of use (the watcher must know the service before anything is
 * watched):
 *   proc_open -> lease_proc_open -> lease_open(..., &lease_proc_hooks(lp, ...))
 *   -> lease_replay / lease_snapshot_decode -> lease_proc_attach(lp, svc)
 *   -> lease_start -> ... -> lease_proc_close (stops the watcher: no death is
 *   delivered after it) -> lease_close -> proc_close.
 *
 * Lock order: svc->lock -> watcher lock (hooks watch/unwatch run under the
 * service lock); deaths are delivered on the watcher thread with no watcher
 * lock held, so lease_owner_died may take the service lock.
 */
#ifndef TXD_LEASE_PROC_H
#define TXD_LEASE_PROC_H

#include "lease.h"
#include "proc.h"

struct lease_proc;

int lease_proc_open(struct proc *p, struct lease_proc **out);
/* Hooks for lease_open; event/event_arg are passed through (may be NULL). */
struct lease_hooks lease_proc_hooks(struct lease_proc *lp,
				    void (*event)(void *arg, const struct lease_event *ev),
				    void *event_arg);
/* Deaths go to fn instead, which calls lease_owner_died itself (the
 * services host records what the death cleaned: svc.h V6). Set before
 * lease_proc_attach. */
void lease_proc_set_death(struct lease_proc *lp,
			  void (*fn)(void *arg, const struct proc_id *id), void *arg);
/* Deaths from now on go to s. */
void lease_proc_attach(struct lease_proc *lp, struct lease_svc *s);
void lease_proc_close(struct lease_proc *lp);

#endif
