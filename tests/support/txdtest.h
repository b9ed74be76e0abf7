/*
 * txdtest.h — helpers for engine tests: temp stores, path-based file access
 * through the public API, and a whole-tree fingerprint for comparing states.
 *
 * Paths are relative to the root ("a/b"); helpers return 0 or -errno like
 * the engine.
 */
#ifndef TXD_TXDTEST_H
#define TXD_TXDTEST_H

#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>

#include "../../engine/txdir.h"

/* A fresh empty store directory under /tmp (malloc'd path); removed by
 * tt_rmtree. */
char *tt_mkstore(void);
void tt_rmtree(const char *dir);

extern const struct txd_cred tt_cred;

/* Resolve a path to a node id (takes a lookup reference the helper drops). */
int tt_resolve(struct txd_fs *fs, const char *path, uint64_t *parent, const char **leaf,
	       uint64_t *node);
/* Write a whole file (create or truncate), flush, release. */
int tt_put(struct txd_fs *fs, const char *path, const void *data, size_t len);
/* Read a whole file into a malloc'd buffer. */
int tt_get(struct txd_fs *fs, const char *path, char **data, size_t *len);
/* tt_get opened for caller c (NULL: the engine itself), e.g. a control
 * file rendered for c. */
int tt_get_as(struct txd_fs *fs, const struct txd_cred *c, const char *path, char **data,
	      size_t *len);
int tt_mkdir(struct txd_fs *fs, const char *path);
int tt_unlink(struct txd_fs *fs, const char *path);
int tt_rename(struct txd_fs *fs, const char *from, const char *to, unsigned flags);
/* Write one command to .txdir/txn/NAME/ctl; the write's result is the
 * command's (0 or a negative errno). */
int tt_txn_cmd(struct txd_fs *fs, const char *name, const char *what);
/* mkdir / rmdir .txdir/txn/NAME: begin, and end (abort if active, remove). */
int tt_txn_begin(struct txd_fs *fs, const char *name);
int tt_txn_end(struct txd_fs *fs, const char *name);

/* Fingerprint of the whole tree: every path with its type, size and a hash
 * of its bytes, sorted; xxh64 of that listing. -EIO if any read fails
 * (a checksum mismatch). */
int tt_fingerprint(struct txd_fs *fs, uint64_t *out);
/* The listing itself (malloc'd text), for failure messages. */
int tt_listing(struct txd_fs *fs, char **out);

/* Exhaustive fault loops visit every TXDIR_FAULT_STRIDE-th step (default 1,
 * every step; make check's ASan pass sets 3: the plain pass runs them all,
 * tests/check.sh). */
static inline uint64_t tt_fault_stride(void)
{
	const char *s = getenv("TXDIR_FAULT_STRIDE");
	long v = s ? strtol(s, NULL, 10) : 1;
	return v > 1 ? (uint64_t)v : 1;
}

#endif
