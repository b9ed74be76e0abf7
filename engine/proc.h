/*
 * proc.h — process identity and liveness, for every service that keys state
 * by a process (leases, waiters, journals, dead processes).
 *
 * A process is (pid, start time, boot id): start time is field 22 of
 * /proc/PID/stat (clock ticks since boot), boot id is
 * /proc/sys/kernel/random/boot_id. A pid alone is never trusted: pids are
 * reused, and after a reboot every pid means someone else.
 *
 * Layering: knows nothing of FUSE, the control tree or any service. Every
 * /proc read goes through txd_os (os.h) under a configurable root
 * (proc_open(root)), so tests fake /proc with a directory of plain files
 * ("ROOT/PID/stat", "ROOT/PID/status", "ROOT/sys/kernel/random/boot_id").
 * The death watcher uses real pidfds (pidfd_open + poll).
 *
 * Invariants.
 *  P1 proc_identify maps a thread id to its process (Tgid in
 *     /proc/TID/status) before anything else: FUSE reports the calling
 *     thread's id, and every check is about the process. The mapping is
 *     cached per (tid, the thread's start time): a thread never changes
 *     process, so one read of /proc/TID/stat (is this still the same
 *     thread?) answers a repeat caller — or, for a process's main thread on
 *     the real /proc, one poll of a pidfd kept with the entry (not readable:
 *     not exited, so the pid is not reused). Uids and parents are never cached
 *     (credentials change): proc_may_act_for reads the target's status.
 *  P2 proc_alive(id) is true only if a process with id.pid exists now, has
 *     the same start time and the boot id is the current one: a reused pid
 *     (same pid, other start time) is dead; after a reboot every recorded
 *     process is dead.
 *  P3 proc_may_act_for (SPEC §5 "Who may do what"): root may act for any
 *     live process; anyone else for a live process of their own uid (which
 *     covers the caller's own process and its same-uid ancestors). A dead
 *     or unknown target is -ESRCH, a live one of another uid -EPERM. The
 *     target is a process id: a thread id that is not its process's
 *     (/proc/TID exists, but TID names no process) is -ESRCH too, so a
 *     lease taken as active/TID/NAME never lands in another directory.
 *  P4 The watcher reports each watched process's death exactly once, within
 *     1 s of it (a pidfd becomes readable at exit), and never reports a
 *     process that is alive: a watch on an id that is already dead (or whose
 *     pid now belongs to another process) is reported at once.
 *
 * Lock order: a watcher's own lock is taken last (callers may hold their
 * locks while calling proc_watch_add/del); the death callback runs on the
 * watcher's thread with no watcher lock held, so it may call
 * proc_watch_add/del and take the caller's locks.
 */
#ifndef TXD_PROC_H
#define TXD_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROC_BOOT_LEN 16

struct proc_id {
	uint32_t pid;
	uint64_t start;                 /* clock ticks since boot (stat field 22) */
	uint8_t boot[PROC_BOOT_LEN];    /* boot id, binary */
};

struct proc;        /* a view of /proc (the real one or a test's) */
struct proc_watch;  /* the death watcher */

/* Open a view of the proc file system rooted at root ("/proc" if NULL) and
 * read the boot id once. -ENOENT/-EINVAL if the boot id is missing or bad. */
int proc_open(const char *root, struct proc **out);
void proc_close(struct proc *p);

/* The boot id read at proc_open. */
void proc_boot(const struct proc *p, uint8_t boot[PROC_BOOT_LEN]);

/* P1: the process id of thread tid (its Tgid), with start time and boot id.
 * -ESRCH if there is no such thread, -EINVAL if /proc's text is garbled. */
int proc_identify(struct proc *p, uint32_t tid, struct proc_id *out);

/* The identity cache's hits and misses since proc_open (tests, profiling). */
void proc_cache_stats(struct proc *p, uint64_t *hits, uint64_t *misses);

/* P2. */
bool proc_alive(struct proc *p, const struct proc_id *id);

/* Uid (real) and parent pid of a live process; -ESRCH if gone. */
int proc_owner(struct proc *p, uint32_t pid, uint32_t *uid, uint32_t *ppid);

/* True if anc is pid itself or one of its ancestors (walks PPid). */
bool proc_descends(struct proc *p, uint32_t pid, uint32_t anc);

/* P3: may caller_uid act for target? Fills *id with target's identity
 * (pid mapped to its Tgid first). 0, -ESRCH, -EPERM. */
int proc_may_act_for(struct proc *p, uint32_t caller_uid, uint32_t target,
		     struct proc_id *id);

bool proc_same(const struct proc_id *a, const struct proc_id *b);

/* Format "pid:start" (for keys such as journals/PID) into buf. */
int proc_key(const struct proc_id *id, char *buf, size_t cap);

/* ---- the death watcher (P4) --------------------------------------------- */

typedef void (*proc_death_fn)(void *arg, const struct proc_id *id);

/* Start a watcher thread; fn(arg, id) runs on it for each death. The view
 * p is used to check a new watch against pid reuse and must outlive w. */
int proc_watch_open(struct proc *p, proc_death_fn fn, void *arg, struct proc_watch **out);

/* Watch id (counted: n adds need n dels). A dead id is reported at once
 * (from the watcher thread). -ENOMEM, -EMFILE. */
int proc_watch_add(struct proc_watch *w, const struct proc_id *id);

/* Drop one count of a watch; at zero the death is no longer reported. (The
 * pidfd lingers a while, so that watching the same process again is
 * cheap: proc.c WATCH_IDLE_MAX.) */
void proc_watch_del(struct proc_watch *w, const struct proc_id *id);

/* How many pidfds the watcher has opened (tests, profiling). */
uint64_t proc_watch_opened(struct proc_watch *w);

/* Stop the thread (no callback runs after it returns) and free. */
void proc_watch_close(struct proc_watch *w);

#endif
