/*
 * ctl_recovery.h — the control tree's `.txdir/recovery/` (SPEC §5 "Records,
 * journals and logs"): a thin adapter from paths to the journal index
 * (journal.h, through the services host svc.h). ctl.c routes every node of
 * a kind at or above CTL_RECOVERY_FIRST here.
 *
 *   recovery/
 *     journals/             one directory per process with events within
 *                           the retention period
 *     journals/PID/journal  that process's events, one JSON object per
 *                           line, the same objects as `events` (journal.h J1)
 *     dead_processes/PID    JSON: what was cleaned when PID died and when
 *                           (the dead_process event, svc.h V6)
 *
 * PID names (journal.h J3): "PID" is the newest process of that pid; every
 * process is also reachable as "PID.START" (start time in clock ticks, as
 * proc.h), and readdir lists the older processes of a reused pid that way.
 * One more rule here, where /proc is known (SPEC §6): when a live process
 * other than the newest recorded one holds the pid now, "PID" is that live
 * process's (absent until it has records) and every recorded one shows
 * only as PID.START, so a process never reads a dead one's records as its
 * own.
 *
 * Visibility (txdir(7) "The control tree"): a journal and a dead-process
 * record are cut from `events` as the reader sees it — paths the reader
 * could not list through the data tree read "(hidden)", a transaction's
 * private fields show only to its uid and root — so nothing here tells a
 * user more than `events` does. Lease names, tokens and pids are public
 * there as in leases/.
 *
 * Node keys: the journal index's process number (journal_proc.id); it is
 * renumbered at a restart (the inode numbers change with it).
 */
#ifndef TXD_CTL_RECOVERY_H
#define TXD_CTL_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txdir.h"

#define CTL_RECOVERY_FIRST 128 /* control kinds from here on are this file's */

struct txd_fs;
struct node;

bool ctl_recovery_owns(unsigned kind);
bool ctl_recovery_is_dir(unsigned kind);
/* The kind of `.txdir/recovery` (ctl.c lists it in .txdir). */
unsigned ctl_recovery_root_kind(void);
/* Does the file's content come from the event log (ctl_recovery_render)? */
bool ctl_recovery_is_file(unsigned kind);

/* Called by ctl.c with fs->lock held. */
int ctl_recovery_lookup(struct txd_fs *fs, struct node *parent, const char *name,
			struct txd_entry *e);
/* Mode, nlink, size of n (ino and times are ctl.c's); -ENOENT gone. */
int ctl_recovery_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a);
int ctl_recovery_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus,
			 txd_fill_fn fill, void *arg);
/* A file's content from the event log as rendered for the reader
 * (ev_render with the visibility filter): *out malloc'd. */
int ctl_recovery_render(struct txd_fs *fs, const struct node *n, const char *events, size_t len,
			char **out, size_t *outlen);

#endif
