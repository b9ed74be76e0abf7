/*
 * mkseeds.c — makes a small store with real commits for the fuzz seeds:
 * files inline and spilled, a directory, a symlink, xattrs, a rename, a
 * removal, a committed and an aborted transaction, then closes it (which
 * writes a checkpoint; a copy of the log before that is left in
 * STORE/../wal-open). Prints the store's path; tests/fuzz/mkseeds.sh
 * cuts the corpora out of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txdir.h"
#include "txdtest.h"

static int ctl(struct txd_fs *fs, const char *txn, const char *word)
{
	char path[128];
	uint64_t node;
	struct txd_open_out oo;
	snprintf(path, sizeof(path), ".txdir/txn/%s/ctl", txn);
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	if (err || (err = txd_open(fs, NULL, node, O_WRONLY, &oo)))
		return err;
	ssize_t n = txd_write(fs, NULL, oo.fh, word, strlen(word), 0);
	txd_release(fs, oo.fh);
	return n < 0 ? (int)n : 0;
}

#define TRY(x)                                                                 \
	do {                                                                   \
		int e_ = (x);                                                  \
		if (e_) {                                                      \
			fprintf(stderr, "mkseeds: %s: %d\n", #x, e_);          \
			return 1;                                              \
		}                                                              \
	} while (0)

int main(void)
{
	char *store = tt_mkstore();
	if (!store)
		return 1;
	struct txd_opts o = {.durability = TXD_DUR_FULL, .show_ctl = true, .wal_segment_bytes = 4096};
	struct txd_fs *fs;
	TRY(txd_fs_open(store, &o, &fs, NULL));
	static char big[12000];
	for (size_t k = 0; k < sizeof(big); k++)
		big[k] = (char)(k * 7 + k / 300);
	TRY(tt_mkdir(fs, "d"));
	TRY(tt_put(fs, "d/a", "hello\n", 6));
	TRY(tt_put(fs, "d/b", big, 1000));
	TRY(tt_put(fs, "big", big, sizeof(big)));
	TRY(tt_rename(fs, "d/b", "c", 0));
	TRY(tt_unlink(fs, "d/a"));
	uint64_t node, parent;
	const char *leaf;
	struct txd_entry e;
	TRY(tt_resolve(fs, "c", NULL, NULL, &node));
	TRY(txd_setxattr(fs, NULL, node, "user.k", "v1", 2, 0));
	TRY(tt_resolve(fs, "d/l", &parent, &leaf, NULL));
	TRY(txd_symlink(fs, &tt_cred, parent, leaf, "../c", &e));
	txd_forget(fs, e.node, 1);
	TRY(tt_mkdir(fs, ".txdir/txn/t1"));
	TRY(tt_put(fs, ".txdir/txn/t1/root/x", "in t1\n", 6));
	TRY(ctl(fs, "t1", "commit\n"));
	TRY(tt_mkdir(fs, ".txdir/txn/t2"));
	TRY(tt_put(fs, ".txdir/txn/t2/root/y", "in t2\n", 6));
	TRY(ctl(fs, "t2", "abort"));
	TRY(tt_put(fs, "c", "short", 5));
	/* the log as it is before close: the checkpoint close writes drops
	 * the older segments */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp -r %s/coordination/dtc/wal %s/../wal-open", store, store);
	TRY(system(cmd));
	txd_fs_close(fs);
	printf("%s\n", store);
	free(store);
	return 0;
}
