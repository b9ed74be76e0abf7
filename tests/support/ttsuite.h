/*
 * ttsuite.h — the per-test store of the engine's Criterion suites: a fresh
 * empty store opened before each test (setup), closed and removed after it
 * (teardown, which also uninstalls faultos). Include once per suite file;
 * tests use `store`, `fs` and reopen().
 */
#ifndef TXD_TTSUITE_H
#define TXD_TTSUITE_H

#include <criterion/criterion.h>
#include <stdlib.h>

#include "faultos.h"
#include "txdtest.h"

static char *store;
static struct txd_fs *fs;

/* Close (writing a checkpoint) and open the store again. */
static void reopen(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
}

static void setup(void)
{
	store = tt_mkstore();
	cr_assert_not_null(store);
	reopen();
}

static void teardown(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	faultos_uninstall();
	tt_rmtree(store);
	free(store);
}

#endif
