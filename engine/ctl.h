/*
 * ctl.h — the .txdir control tree (ctl.c; its top comment lists the tree and
 * who may see what). Internal to the engine.
 *
 * An adapter: paths of .txdir map to calls of the services below it
 * (transactions, the event log, the commit log, status), values to files.
 * Only the dispatch (vfs.c) calls it; the data tree never does. Every call
 * here runs under fs->lock (core.h) with a control node (node->ctl != 0),
 * except ctl_read, ctl_write*, ctl_release, which take a handle opened by
 * ctl_open. c is the request's context (txdir.h; NULL: the engine itself).
 */
#ifndef TXD_CTL_H
#define TXD_CTL_H

#include <sys/types.h>

#include "txdir.h"

struct txd_fs;
struct node;
struct handle;

/* parent: a control node, or a view's root (name == CTL_DIRNAME, dtree.h). */
int ctl_lookup(struct txd_fs *fs, struct node *parent, const char *name, struct txd_entry *e);
int ctl_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a);
/* A setattr of a control node: truncation (ignored, as `echo x > ctl`
 * needs) and times (a lease directory's mtime renews it: touch); anything
 * else -EPERM. */
int ctl_setattr(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
		const struct txd_setattr *sa, struct txd_attr *out);
int ctl_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
		void *arg);
int ctl_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent, const char *name,
	      struct txd_entry *e);
int ctl_rmdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	      const char *name);
/* Renders the file for c into h (a consistent snapshot for the reader). */
int ctl_open(struct txd_fs *fs, const struct txd_cred *c, struct node *n, int flags,
	     struct handle *h, struct txd_open_out *out);
ssize_t ctl_read(struct txd_fs *fs, struct handle *h, void *buf, size_t size, uint64_t off);
ssize_t ctl_write(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
		  const void *buf, size_t size, uint64_t off);
/* As ctl_write; a commit that must wait for the view's writers returns
 * -EINPROGRESS and answers through done (txn_commit_async). */
ssize_t ctl_write_async(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
			const void *buf, size_t size, uint64_t off,
			void (*done)(void *arg, int err), void *arg);
/* As ctl_read; a wait file not ready yet returns -EINPROGRESS and answers
 * through done (txd_read_async). */
ssize_t ctl_read_async(struct txd_fs *fs, struct handle *h, void *buf, size_t size,
		       uint64_t off, void (*done)(void *arg, int err), void *arg);
int ctl_read_cancel(struct txd_fs *fs, void *arg);
bool ctl_may_wait(const struct handle *h); /* a wait file's handle */
int ctl_poll(struct txd_fs *fs, struct handle *h, void (*wake)(void *arg), void *arg);
/* FLUSH of a control file: a document buffered per open file acts here
 * (SPEC §3; consensus payload: ctl_vote.h; state documents: ctl_state.h).
 * vfs.c routes a control handle's FLUSH and fsync here. */
int ctl_flush(struct txd_fs *fs, const struct txd_cred *c, struct handle *h);
/* ctl_flush that may answer later (txd_flush_async); cancel as there. */
int ctl_flush_async(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
		    void (*done)(void *arg, int err), void *arg);
int ctl_flush_cancel(struct txd_fs *fs, void *arg);
void ctl_release(struct txd_fs *fs, struct handle *h);
/* unlink in the control tree: by-name/NAME breaks the lease (ctl_lease.h). */
int ctl_unlink(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	       const char *name);
ssize_t ctl_readlink(struct txd_fs *fs, struct node *n, char *buf, size_t size);
/* create and rename in the control tree: temp files of state/
 * (ctl_state.h); rename may release fs->lock meanwhile. Else -EPERM /
 * -EXDEV. */
int ctl_create(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	       const char *name, mode_t mode, struct txd_entry *e);
int ctl_rename(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
	       const char *name, struct node *newparent, const char *newname, unsigned flags);
/* The errno of a rename between directory n of the control tree and
 * anywhere it cannot go (another control directory, the data tree):
 * -EXDEV for .txdir/state/ (mv then copies a document), else -EPERM. */
int ctl_rename_err(const struct node *n);
/* The control tree's teardown (fs->upper_free, set by the adapter that
 * first keeps state): every adapter's free. */
void ctl_upper_free(struct txd_fs *fs);
/* xattrs of a control node (user.txdir.version of the state document). */
ssize_t ctl_getxattr(struct txd_fs *fs, struct node *n, const char *name, void *buf,
		     size_t size);
ssize_t ctl_listxattr(struct txd_fs *fs, struct node *n, char *buf, size_t size);
/* fs_node_put for a control node: forgets it (one node id per object)
 * before it is freed. */
void ctl_node_put(struct txd_fs *fs, struct node *n);

#endif
