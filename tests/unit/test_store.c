/*
 * test_store.c — the store directory (store.h) against its invariants S1-S3:
 * init creates the layout with every new entry made durable (S1), an
 * interrupted init is completed by a second one and anything else non-empty
 * is refused (S2), and a second opener is refused with -TXD_ELOCKED naming
 * the holder's pid without touching the store (S3), and FORMAT: missing is
 * "not a store", any other content (a newer version) is -TXD_EFORMAT (S5).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../engine/os.h"
#include "../../engine/store.h"
#include "../../engine/txdir.h"
#include "faultos.h"
#include "txdtest.h"

static char *base; /* a fresh empty temp dir */
static char dir[512]; /* base/s: the store, not created yet */

static void setup(void)
{
	base = tt_mkstore();
	cr_assert_not_null(base);
	snprintf(dir, sizeof(dir), "%s/s", base);
}

static void teardown(void)
{
	faultos_uninstall();
	tt_rmtree(base);
	free(base);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

/* The layout store_init makes (store.c), for checking. */
static const char *const layout[] = {
	"objects",
	"coordination",
	"coordination/dtc/wal",
	"coordination/dtc/checkpoints",
	"coordination/dtc/transactions",
	"coordination/commits",
	"coordination/leases/active",
	"coordination/recovery/journals",
	"coordination/temp",
};

static bool is_dir(const char *rel)
{
	char p[1024];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void write_file(const char *rel, const char *text)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "%s", p);
	fputs(text, f);
	fclose(f);
}

static char *read_text(const char *rel)
{
	static char buf[256];
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	FILE *f = fopen(p, "r");
	cr_assert_not_null(f, "%s", p);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* ---- init and open round trip ------------------------------------------- */

Test(store, roundtrip_init_open_close_reopen)
{
	struct store st;
	cr_assert_eq(store_init(dir), 0);
	for (size_t k = 0; k < sizeof(layout) / sizeof(layout[0]); k++)
		cr_assert(is_dir(layout[k]), "layout directory %s missing", layout[k]);
	cr_assert_str_eq(read_text("FORMAT"), STORE_FORMAT);

	pid_t holder = -1;
	cr_assert_eq(store_open(dir, &st, &holder), 0);
	cr_assert_eq(holder, -1, "holder is only set when refused");
	cr_assert_str_eq(st.dir, dir);
	cr_assert_not_null(strstr(st.wal_dir, "coordination/dtc/wal"));
	cr_assert_not_null(strstr(st.ckpt_dir, "coordination/dtc/checkpoints"));
	cr_assert_not_null(strstr(st.obj_dir, "objects"));
	cr_assert_geq(st.lock_fd, 0);
	char pid[64];
	snprintf(pid, sizeof(pid), "%ld %016" PRIx64 "\n", (long)getpid(), txd_os->boot_id());
	cr_assert_str_eq(read_text("LOCK"), pid, "S3: LOCK holds the opener's pid and boot");
	cr_assert_not(st.same_boot, "a fresh store: no server ran before");
	store_close(&st);
	cr_assert_eq(store_open(dir, &st, NULL), 0);
	cr_assert(st.same_boot, "W9: the last opener ran in this boot");
	store_close(&st);
	cr_assert_eq(st.lock_fd, -1);
	store_close(&st); /* closing twice is harmless */

	cr_assert_eq(store_open(dir, &st, NULL), 0, "the lock went with the close");
	store_close(&st);
}

Test(store, S1_every_new_directory_entry_is_fsynced)
{
	faultos_install();
	cr_assert_eq(store_init(dir), 0);
	uint64_t mkdirs = faultos_count(FOS_MKDIR);
	uint64_t syncs = faultos_count(FOS_FSYNC) + faultos_count(FOS_FDATASYNC);
	/* the store itself and 23 layout directories, each followed by an fsync
	 * of its parent; FORMAT adds its own fsync and its directory's */
	cr_assert_eq(mkdirs, 24);
	cr_assert_geq(syncs, mkdirs - 1 + 2, "S1: %lu syncs for %lu new directories",
		      (unsigned long)syncs, (unsigned long)mkdirs);
}

Test(store, S1_a_failed_directory_sync_fails_init)
{
	faultos_install();
	faultos_fail_nth(FOS_FSYNC, 3, -EIO);
	cr_assert_eq(store_init(dir), -EIO, "S1: init went on after an fsync failed");
	faultos_uninstall();
	struct store st;
	cr_assert_eq(store_open(dir, &st, NULL), -TXD_ENOTSTORE,
		     "a failed init left a FORMAT behind");
	cr_assert_eq(store_init(dir), 0, "S2: init after the failure completes");
	cr_assert_eq(store_open(dir, &st, NULL), 0);
	store_close(&st);
}

/* ---- S2: interrupted and refused inits ---------------------------------- */

Test(store, S2_init_interrupted_anywhere_is_completed_by_the_next)
{
	/* how many calls a full init makes, then crash at each in turn */
	faultos_install();
	cr_assert_eq(store_init(dir), 0);
	const enum faultos_call kinds[] = {FOS_MKDIR, FOS_PWRITE, FOS_FSYNC, FOS_RENAME};
	enum { NKINDS = sizeof(kinds) / sizeof(kinds[0]) };
	uint64_t counts[NKINDS];
	for (int k = 0; k < NKINDS; k++)
		counts[k] = faultos_count(kinds[k]);
	faultos_uninstall();
	tt_rmtree(dir);

	for (int k = 0; k < NKINDS; k++)
		for (uint64_t n = 1; n <= counts[k]; n++) {
			struct store st;
			faultos_install();
			faultos_crash_at(kinds[k], n);
			cr_assert_neq(store_init(dir), 0, "call %d #%lu", kinds[k], (unsigned long)n);
			faultos_revive();
			faultos_uninstall();
			/* a crash after FORMAT's rename (its directory's fsync)
			 * leaves a whole store: that one is not initialised twice */
			if (store_open(dir, &st, NULL) == 0) {
				store_close(&st);
				cr_assert_eq(store_init(dir), -EEXIST);
			} else {
				cr_assert_eq(store_init(dir), 0,
					     "S2: init after a crash at call %d #%lu: refused",
					     kinds[k], (unsigned long)n);
			}
			cr_assert_eq(store_open(dir, &st, NULL), 0);
			store_close(&st);
			tt_rmtree(dir);
		}
}

Test(store, S2_lock_and_format_tmp_leftovers_are_accepted)
{
	cr_assert_eq(mkdir(dir, 0700), 0);
	write_file("LOCK", "123\n");
	write_file("FORMAT.tmp", "txdir-st");
	write_file(".tmp.FORMAT.12345", "txdir-st"); /* os_write_file_durable's name */
	cr_assert_eq(store_init(dir), 0, "S2: an init that died writing FORMAT is refused");
	cr_assert_str_eq(read_text("FORMAT"), STORE_FORMAT);
}

Test(store, S2_a_foreign_file_is_refused_as_not_a_store)
{
	cr_assert_eq(mkdir(dir, 0700), 0);
	write_file("notes.txt", "mine\n");
	cr_assert_eq(store_init(dir), -TXD_ENOTSTORE);
	cr_assert(!is_dir("objects"), "S2: init wrote into a directory it refused");
}

Test(store, S2_an_existing_store_is_not_initialised_again)
{
	cr_assert_eq(store_init(dir), 0);
	cr_assert_eq(store_init(dir), -EEXIST);
}

Test(store, init_under_a_missing_parent_is_enoent)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/no/such", base);
	cr_assert_eq(store_init(p), -ENOENT);
}

/* ---- FORMAT ---------------------------------------------------------------- */

Test(store, S5_format_missing_is_not_a_store)
{
	struct store st;
	cr_assert_eq(store_open(dir, &st, NULL), -TXD_ENOTSTORE, "no directory at all");
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(store_open(dir, &st, NULL), -TXD_ENOTSTORE, "an empty directory");
	char lock[600];
	snprintf(lock, sizeof(lock), "%s/LOCK", dir);
	cr_assert_eq(access(lock, F_OK), -1, "S5: a refused open created LOCK");
}

Test(store, S5_format_newer_or_damaged_is_refused)
{
	const char *bad[] = {"txdir-store 4\n", "txdir-store 1", "txdir-store 1\nmore\n",
			     "txdir-store 02\n", "txdir-store 0\n", "txdir-store \n",
			     "", "something else\n"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct store st;
		cr_assert_eq(store_init(dir), 0);
		write_file("FORMAT", bad[k]);
		cr_assert_eq(store_open(dir, &st, NULL), -TXD_EFORMAT, "FORMAT \"%s\" was accepted",
			     bad[k]);
		cr_assert_eq(st.lock_fd, -1);
		char lock[600];
		snprintf(lock, sizeof(lock), "%s/LOCK", dir);
		cr_assert_eq(access(lock, F_OK), -1, "S5: a refused open created LOCK");
		tt_rmtree(dir);
	}
}

/* ---- S3: one server per store ---------------------------------------------- */

Test(store, S5_format_with_a_nul_and_more_is_refused)
{
	static const char bad[] = "txdir-store 1\n\0version 9 follows";
	char p[600];
	struct store st;
	cr_assert_eq(store_init(dir), 0);
	snprintf(p, sizeof(p), "%s/FORMAT", dir);
	FILE *f = fopen(p, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(bad, 1, sizeof(bad) - 1, f), sizeof(bad) - 1);
	fclose(f);
	cr_assert_eq(store_open(dir, &st, NULL), -TXD_EFORMAT,
		     "S5: a FORMAT that only starts with STORE_FORMAT was accepted");
}

Test(store, S3_second_opener_in_process_is_refused_naming_the_holder)
{
	struct store a, b;
	cr_assert_eq(store_init(dir), 0);
	cr_assert_eq(store_open(dir, &a, NULL), 0);
	pid_t holder = 0;
	cr_assert_eq(store_open(dir, &b, &holder), -TXD_ELOCKED);
	cr_assert_eq(holder, getpid());
	cr_assert_eq(b.lock_fd, -1);
	cr_assert_eq(store_open(dir, &b, NULL), -TXD_ELOCKED, "holder may be NULL");
	store_close(&a);
	cr_assert_eq(store_open(dir, &b, NULL), 0);
	store_close(&b);
}

Test(store, S3_second_opener_learns_the_other_process_pid_and_touches_nothing)
{
	int up[2], down[2];
	cr_assert_eq(store_init(dir), 0);
	cr_assert_eq(pipe(up), 0);
	cr_assert_eq(pipe(down), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		struct store st;
		char c = store_open(dir, &st, NULL) == 0 ? 'k' : 'e';
		close(up[0]);
		close(down[1]);
		if (write(up[1], &c, 1) != 1)
			_exit(2);
		(void)!read(down[0], &c, 1); /* until the parent closes its end */
		store_close(&st);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	char c = 0;
	cr_assert_eq(read(up[0], &c, 1), 1);
	cr_assert_eq(c, 'k', "the child could not open the store");

	char before[256];
	strcpy(before, read_text("LOCK"));
	faultos_install();
	struct store st;
	pid_t holder = 0;
	int r = store_open(dir, &st, &holder);
	uint64_t writes = faultos_count(FOS_PWRITE) + faultos_count(FOS_FTRUNCATE) +
			  faultos_count(FOS_MKDIR) + faultos_count(FOS_UNLINK) +
			  faultos_count(FOS_RENAME);
	faultos_uninstall();
	cr_assert_eq(r, -TXD_ELOCKED);
	cr_assert_eq(holder, child, "S3: holder %ld, the child is %ld", (long)holder, (long)child);
	cr_assert_eq(writes, 0, "S3: a refused opener changed the store (%lu calls)",
		     (unsigned long)writes);
	cr_assert_str_eq(read_text("LOCK"), before);

	close(down[1]); /* let the child close and exit */
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(up[0]);

	cr_assert_eq(store_open(dir, &st, &holder), 0, "the lock died with its holder");
	store_close(&st);
}

Test(store, S3_txd_fs_open_reports_the_holder)
{
	struct store st;
	struct txd_fs *fs = NULL;
	cr_assert_eq(txd_store_init(dir), 0);
	cr_assert_eq(store_open(dir, &st, NULL), 0);
	pid_t holder = 0;
	cr_assert_eq(txd_fs_open(dir, NULL, &fs, &holder), -TXD_ELOCKED);
	cr_assert_null(fs);
	cr_assert_eq(holder, getpid());
	store_close(&st);
	cr_assert_eq(txd_fs_open(dir, NULL, &fs, NULL), 0);
	txd_fs_close(fs);
}
