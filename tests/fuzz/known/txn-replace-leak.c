/*
 * txn-replace-leak.c — reproducer found by fuzz_ctlwrite (see README).
 * Build and run against the ASan build:
 *   cc -fsanitize=address -Iengine -Itests/support tests/fuzz/known/txn-replace-leak.c \
 *      build-asan/obj/tests/support/txdtest.o build-asan/libtxdir.a \
 *      -lxxhash -lcjson -lpthread -fsanitize=undefined -o /tmp/txn-replace-leak
 *   ASAN_OPTIONS=detect_leaks=1 /tmp/txn-replace-leak
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txdir.h"
#include "txdtest.h"

int main(void)
{
	char *store = tt_mkstore();
	struct txd_opts o = {.durability = TXD_DUR_NONE, .show_ctl = true};
	struct txd_fs *fs;
	if (!store || txd_fs_open(store, &o, &fs, NULL))
		return 1;
	uint64_t txns, node;
	struct txd_entry e;
	struct txd_open_out oo;
	int err = tt_put(fs, "a", "", 0); /* an empty file in the main tree */
	err = err ?: tt_resolve(fs, ".txdir/txn", NULL, NULL, &txns);
	err = err ?: txd_mkdir(fs, &tt_cred, txns, "t1", 0755, &e);
	err = err ?: tt_put(fs, ".txdir/txn/t1/root/a", "hello", 5);
	err = err ?: tt_resolve(fs, ".txdir/txn/t1/ctl", NULL, NULL, &node);
	err = err ?: txd_open(fs, NULL, node, O_WRONLY, &oo);
	if (!err) {
		ssize_t n = txd_write(fs, NULL, oo.fh, "commit", 6, 0);
		fprintf(stderr, "commit: %zd\n", n);
		txd_release(fs, oo.fh);
	}
	txd_forget(fs, e.node, 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
	fprintf(stderr, "steps: %d\n", err);
	return 0;
}
