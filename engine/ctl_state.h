/*
 * ctl_state.h — the control tree's `.txdir/state/` (SPEC §5 "Global
 * state"): a thin adapter from files to the state service (state.h, through
 * the services host svc.h). ctl.c routes every node of a kind at or above
 * CTL_STATE_FIRST (and below CTL_RECOVERY_FIRST) here.
 *
 *   state/                0777 (not sticky: temp_may decides)
 *     global_state.json   0666. Read: the document visible at open. Write:
 *                         the bytes written through one open file are
 *                         buffered (at their offsets; O_TRUNC and truncate
 *                         start nothing by themselves) and replace the
 *                         document at FLUSH or fsync — close(2) returns the
 *                         outcome: EINVAL not JSON (the old document
 *                         stays), EFBIG over STATE_DOC_MAX, EIO. A FLUSH
 *                         with nothing written since the last one does
 *                         nothing. xattr user.txdir.version: the version
 *                         (decimal); readable by name, not listed (as a
 *                         data file's user.txdir.*).
 *     update              0666, write-only: {"if_version": N, "document": V}
 *                         replaces the document with V (printed by cJSON
 *                         unformatted, with a newline) if the version is N:
 *                         EBUSY stale; EINVAL not JSON, not an object,
 *                         if_version missing or not an integer >= 0, no
 *                         document, any other member. Optional "if_lease":
 *                         {"name": L, "token": T} (SPEC §4, state.h S11):
 *                         ESTALE unless lease L is held with token T
 *                         (exactly those two members, T an integer >= 0,
 *                         else EINVAL). Acts at the write that completes
 *                         the object (its result is the write's: `echo … >
 *                         update` reports it), else at FLUSH/fsync (close).
 *                         Participants mode: that act opens the proposal;
 *                         the FLUSH (close) waits for its outcome: 0
 *                         committed, ECANCELED aborted.
 *     participants        0666: the participants mode (state.h S7): each
 *                         write sets the list (EINVAL bad list, EBUSY while
 *                         a state proposal is open); O_TRUNC without a
 *                         write (`: > participants`) empties it at close.
 *                         Read: "a,b,c\n", or nothing in plain mode.
 *     changed             0444, a wait file: a read blocks until the
 *                         version differs from the one current at open,
 *                         then prints the new version ("N\n"); O_NONBLOCK:
 *                         EAGAIN; poll(2) says readable then.
 *     info.json           {"version", "bytes", "updated" (RFC 3339 or
 *                         null), "pid", "uid"} of the visible document
 *
 *     NAME                a temp file (create, write, read, truncate,
 *                         unlink, rename): any other name. Its owner's
 *                         (mode from create & ~umask | 0600; others EACCES
 *                         at open, EPERM at unlink and rename), at most
 *                         STATE_DOC_MAX bytes (EFBIG), STATE_TEMP_MAX (16;
 *                         -o max_state_temps=) per uid (EDQUOT; root is not
 *                         limited). VOLATILE:
 *                         in memory only, gone at a restart. Renamed over
 *                         global_state.json its bytes replace the document
 *                         (`jq … > tmp && mv tmp global_state.json`):
 *                         EINVAL/EFBIG and both the document and the temp
 *                         file stay; else the temp file is gone. A rename
 *                         into or out of state/ is EXDEV (coreutils mv then
 *                         removes the target first: EPERM; cp works, its
 *                         open + write + close replaces the document);
 *                         renaming the fixed files or over
 *                         update/changed/info.json: EPERM.
 *
 * Participants mode (state.h S7-S11): a replace of global_state.json
 * waits for the outcome at its FLUSH (0, ECANCELED); update opens the
 * proposal at its act and its FLUSH waits; a rename over the document
 * opens the proposal and returns at once (the temp file is gone): never a
 * RENAME reply held for a vote. info.json adds "participants" and
 * "proposal" (the open state proposal's name, or null).
 *
 * Blocking: a replace waits for the WAL's sync (state.h "Blocking"), and
 * in participants mode a FLUSH for the vote: on the caller's thread, with
 * fs->lock released, after fs_will_block (not interruptible: the vote's
 * timeout, 30 s by default, bounds it).
 *
 * Waits: registered at open with the version then current; the state
 * listener (svc_set_state_listener) readies those whose version differs.
 * Lock order: the adapter's wlock is a leaf, taken alone or under fs->lock.
 */
#ifndef TXD_CTL_STATE_H
#define TXD_CTL_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "txdir.h"

#define CTL_STATE_FIRST 96 /* control kinds from here to CTL_RECOVERY_FIRST */

struct txd_fs;
struct node;
struct sfile;

bool ctl_state_owns(unsigned kind);
bool ctl_state_is_dir(unsigned kind);
/* The kind of `.txdir/state` (ctl.c lists it in .txdir). */
unsigned ctl_state_root_kind(void);
/* A file of .txdir/state/ that always exists (not a temp file). */
bool ctl_state_fixed_file(unsigned kind);
/* Its node id changes with every version (the document's): the kernel
 * must look the name up at each use, not keep it. */
bool ctl_state_versioned(unsigned kind);

/* Called by ctl.c with fs->lock held. */
int ctl_state_lookup(struct txd_fs *fs, struct node *parent, const char *name,
		     struct txd_entry *e);
int ctl_state_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a);
int ctl_state_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus,
		      txd_fill_fn fill, void *arg);
bool ctl_state_writable(unsigned kind);
/* The handle's state (*out) and, for a readable file, its content at open
 * (*buf malloc'd, *len). */
int ctl_state_open(struct txd_fs *fs, const struct txd_cred *c, struct node *n, int flags,
		   struct sfile **out, char **buf, size_t *len);
/* Temp files (see above); rename may release fs->lock meanwhile. */
int ctl_state_create(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name, mode_t mode, struct txd_entry *e);
int ctl_state_unlink(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name);
int ctl_state_rename(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name, struct node *newparent, const char *newname,
		     unsigned flags);
/* A size change: a temp file's; the document's is ignored (ctl.h). */
int ctl_state_truncate(struct txd_fs *fs, struct node *n, uint64_t size);
ssize_t ctl_state_getxattr(struct txd_fs *fs, struct node *n, const char *name, void *buf,
			   size_t size);
ssize_t ctl_state_listxattr(struct txd_fs *fs, struct node *n, char *buf, size_t size);

/* fs->lock NOT held. */
ssize_t ctl_state_write(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f,
			const void *buf, size_t size, uint64_t off);
/* FLUSH or fsync: act on what was written since the last one. */
int ctl_state_flush(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f);
/* The same for a caller that must not block: a participants-mode replace
 * (update, or the document written in place) returns -EINPROGRESS and
 * later calls done(arg, outcome) once (state_wait_async); cancel: 0 taken
 * back, -ENOENT due. */
int ctl_state_flush_async(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f,
			  void (*done)(void *arg, int err), void *arg);
int ctl_state_flush_cancel(struct txd_fs *fs, void *arg);
/* `changed` (ctl_lease.h "wait files" has the same contract). */
bool ctl_state_is_wait(const struct sfile *f);
ssize_t ctl_state_wait_read(struct txd_fs *fs, struct sfile *f, void *buf, size_t size,
			    uint64_t off, bool nonblock, void (*done)(void *arg, int err),
			    void *arg);
int ctl_state_wait_cancel(struct txd_fs *fs, void *arg);
int ctl_state_wait_poll(struct txd_fs *fs, struct sfile *f, void (*wake)(void *arg), void *arg);
void ctl_state_release(struct txd_fs *fs, struct sfile *f);

/* Free the adapter's state (fs_free, through ctl.c's teardown). */
void ctl_state_free(struct txd_fs *fs);

#endif
