/*
 * ctl_lease.h — the control tree's `.txdir/leases/` (SPEC §5 "Leases"): a
 * thin adapter from paths and files to the lease service (lease.h, through
 * the services host svc.h). ctl.c routes every node of a kind at or above
 * CTL_LEASE_FIRST here; this file knows nothing else of ctl.c than the two
 * helpers at the end.
 *
 *   leases/
 *     active/PID/           1777; appears for a live PID (lookup), lists PIDs
 *                           holding a lease (readdir)
 *     active/PID/NAME/      mkdir grabs (EEXIST while held), rmdir releases;
 *                           touch renews. Files: owner ("pid=P start=S uid=U
 *                           command=C", C escaped \\ \n \" \xHH), token,
 *                           acquired, expires (RFC 3339 or "never"), ttl
 *                           (seconds, 0 = none; write renews and sets it),
 *                           info.json (its command raw: JSON escapes it),
 *                           released (a read blocks until the
 *                           grant current at open ends, then prints how:
 *                           release, death, expiry, break...)
 *     by-name/              1777, each link owned by the lease's uid
 *     by-name/NAME          symlink to ../active/PID/NAME; unlink breaks the
 *                           lease (mountctl lease break: the lease's uid or
 *                           root, else EPERM; logged with who broke it)
 *     completed/TOKEN       JSON: who, token, how it ended, when
 *     cleanup_queue/PID     a reclaim in progress (svc.h V10): a dead holder
 *                           from its death's detection until its release
 *                           records are durable; JSON: pid, start,
 *                           detected (RFC 3339), leases (names it held)
 *     waiting/PID/NAME/     mkdir queues PID for NAME (lease_wait; EDEADLK
 *                           when it would close a cycle: the cycle goes to
 *                           events); rmdir withdraws. Its file granted: a
 *                           read blocks until PID holds NAME, then prints
 *                           the token; the entry then goes away
 *
 * Who may do what: the caller is the process of the FUSE thread id (proc.h
 * P1). mkdir active/PID/NAME: PID live and one the caller may act for (P3:
 * -ESRCH dead or not a number -> ENOENT for a PID directory, -EPERM other
 * uid); PID the caller's own process needs no further /proc read (it is
 * live, and one's own process is always allowed). Renew, release: the lease's rules (lease.h: holder, descendants,
 * same uid, root; else -EPERM). Directories are 1777 and files 0666 so the
 * kernel's default_permissions never answers before these rules do.
 *
 * Blocking: a grant, renew or release waits for the WAL's sync (lease.h
 * "Blocking"). Each runs with fs->lock released, after fs_will_block (the
 * FUSE layer hands request reading to another thread), as a large commit's
 * pack fdatasync does. Every lease call is made with fs->lock released
 * (lock order: lease before nothing of fs; svc.h).
 *
 * Transactions: `.txdir` inside a view (.txdir/txn/T/root/.txdir) is this
 * same tree, so a lease taken there is the same lease as outside: it is
 * not part of the transaction (a lease is held by a process, not by a
 * transaction's changes), and commit or abort leaves it as it is.
 *
 * Waiting entries (SPEC §5 "prints the token (the waiting entry then goes
 * away)"): waiting/PID/NAME exists while PID waits for NAME; once granted it
 * stays until its `granted` has been read in full by someone (or the grant
 * ends), then goes away: so a reader that opens `granted` after the grant
 * still learns the token, and after that read the token is always in
 * active/PID/NAME/token. A `granted` already open keeps reading the token.
 * readdir of waiting/PID lists only the names still waited for.
 *
 * cleanup_queue/: an entry per dead process while the death watcher
 * reclaims it (svc.h V10); usually gone within a WAL sync, visible for as
 * long as that sync takes (a slow disk, a stalled fdatasync).
 *
 * TTL writes (`echo 30 > ttl`): 1..LEASE_TTL_MAX_S whole seconds (EINVAL
 * for garbage, 0, negative or fractions; ERANGE past the maximum).
 */
#ifndef TXD_CTL_LEASE_H
#define TXD_CTL_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "txdir.h"

#define CTL_LEASE_FIRST 64 /* control kinds from here on are this file's */
#define LEASE_TTL_MAX_S (366u * 86400u)

struct txd_fs;
struct node;
struct handle;

bool ctl_lease_owns(unsigned kind);
bool ctl_lease_is_dir(unsigned kind);
/* May the kernel cache the entry of a node of this kind (ctl.c)? Only
 * the fixed directories (leases/ and active/, by-name/, cleanup_queue/,
 * completed/, waiting/ in it): a path walk to active/PID/NAME then costs
 * no lookup round trip for them. Everything else comes and goes. */
bool ctl_lease_cacheable(unsigned kind);
/* The kind of `.txdir/leases` (ctl.c lists it in .txdir). */
unsigned ctl_lease_root_kind(void);

/* Called by ctl.c with fs->lock held; they may release it meanwhile. */
int ctl_lease_lookup(struct txd_fs *fs, struct node *parent, const char *name,
		     struct txd_entry *e);
/* Mode, uid, nlink, size of n (ino and times are ctl.c's); -ENOENT gone. */
int ctl_lease_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a);
int ctl_lease_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus,
		      txd_fill_fn fill, void *arg);
int ctl_lease_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		    const char *name, struct txd_entry *e);
/* c: the request's context (txdir.h; NULL: the engine itself, as root). */
int ctl_lease_rmdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		    const char *name);
int ctl_lease_unlink(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name);
ssize_t ctl_lease_readlink(struct txd_fs *fs, struct node *n, char *buf, size_t size);
/* touch of a lease directory: renew. */
int ctl_lease_touch(struct txd_fs *fs, const struct txd_cred *c, struct node *n);
/* Content of a file at open (malloc'd); *writable: may it be opened for
 * writing (ttl). */
int ctl_lease_render(struct txd_fs *fs, struct node *n, char **buf, size_t *len);
bool ctl_lease_writable(unsigned kind);
/* A write to a writable file (fs->lock NOT held). */
ssize_t ctl_lease_write(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
			const void *buf, size_t size);
/* ---- wait files: released, granted -------------------------------------
 * Opened with the grant current at open (released) or the waiter (granted)
 * registered; ready at that grant's release / at the waiter's grant (lease
 * events, svc_set_listener). A read before that: -EAGAIN with nonblock or
 * without done, else -EINPROGRESS and done(arg, 0) once it is ready, called
 * with no engine lock held (then read again). ctl_lease_wait_cancel
 * withdraws a deferred read (0) unless done is already due (-ENOENT). A
 * poll returns 1 when ready, else 0 and calls wake(arg) once when ready, at
 * close, or when replaced by another poll. */
struct lwait;
bool ctl_lease_is_wait(unsigned kind);
int ctl_lease_wait_open(struct txd_fs *fs, struct node *n, struct lwait **out);
void ctl_lease_wait_close(struct txd_fs *fs, struct lwait *w);
ssize_t ctl_lease_wait_read(struct txd_fs *fs, struct lwait *w, void *buf, size_t size,
			    uint64_t off, bool nonblock, void (*done)(void *arg, int err),
			    void *arg);
int ctl_lease_wait_cancel(struct txd_fs *fs, void *arg);
int ctl_lease_wait_poll(struct txd_fs *fs, struct lwait *w, void (*wake)(void *arg), void *arg);

/* Free the adapter's state (fs_free). */
void ctl_lease_free(struct txd_fs *fs);

/* Provided by ctl.c: a control node of (kind, key) with a lookup reference
 * (ctl_entry), and a readdir entry of one (ctl_fill: non-zero when full). */
int ctl_entry(struct txd_fs *fs, unsigned kind, uint64_t key, struct txd_entry *e);
int ctl_fill(struct txd_fs *fs, const char *name, unsigned kind, uint64_t key, bool plus,
	     uint64_t next, txd_fill_fn fill, void *arg);

#endif
