/*
 * e3_replay — reopen (WAL replay) with 1,000,000 small commits in the log.
 *
 * A writer child opens a fresh store, creates 16 files and makes N commits
 * (N = 1,000,000; 10,000 with QUICK), alternating chmod (setattr) commits and
 * content commits of 64-byte files (write + flush), then txd_sync_wait and _exit(0)
 * WITHOUT txd_fs_close, so no checkpoint covers them. Each measurement child
 * times txd_fs_open and also _exits without closing (so the next open
 * replays the same log again). Reported warm (log in page cache) and, as
 * root, cold (drop_caches before each open). Baseline: sequential read of
 * the WAL files in the same cache state (the floor for any replay).
 * Goal: open <= 2 s.
 */
#include <dirent.h>

#include "bench.h"

#define NFILES 16

static void writer(const char *store, long n)
{
	struct txd_fs *fs;
	struct txd_opts o = {0};
	struct txd_cred c = bench_cred();
	uint64_t node[NFILES], fh[NFILES];
	CK(txd_store_init(store));
	CK(txd_fs_open(store, &o, &fs, NULL));
	for (int i = 0; i < NFILES; i++) {
		char name[32];
		struct txd_entry e;
		struct txd_open_out oo;
		snprintf(name, sizeof(name), "f%02d", i);
		CK(txd_create(fs, &c, TXD_ROOT_NODE, name, S_IFREG | 0644, O_RDWR | O_CREAT, &e,
			      &oo));
		node[i] = e.node;
		fh[i] = oo.fh;
	}
	char data[64];
	memset(data, 'x', sizeof(data));
	double t0 = now_s();
	for (long k = 0; k < n; k++) {
		int i = (int)(k % NFILES);
		if (k & 1) {
			struct txd_setattr sa = {.valid = TXD_SET_MODE,
						 .mode = (k & 2) ? 0600 : 0644};
			CK(txd_setattr(fs, NULL, node[i], &sa, 0, NULL));
		} else {
			data[0] = (char)k;
			CK(txd_write(fs, NULL, fh[i], data, sizeof(data), 0));
			CK(txd_flush(fs, fh[i], &c, NULL));
		}
	}
	CK(txd_sync_wait(fs));
	double t1 = now_s();
	struct txd_status st;
	txd_get_status(fs, &st);
	fprintf(stderr, "writer: %ld commits in %.2f s (%.0f/s), lsn %llu, wal %llu bytes\n", n,
		t1 - t0, (double)n / (t1 - t0), (unsigned long long)st.lsn,
		(unsigned long long)st.wal_bytes);
	printf("BENCH e3_small_commit_rate %.0f commits/s single thread, chmod + 64 B writes, "
	       "durability=fsync\n",
	       (double)n / (t1 - t0));
	fflush(stdout);
	_exit(0); /* no txd_fs_close: no checkpoint */
}

/* In a child: time txd_fs_open, send seconds and commits replayed, _exit. */
static void opener(const char *store, int wfd)
{
	struct txd_fs *fs;
	struct txd_opts o = {0};
	double t0 = now_s();
	CK(txd_fs_open(store, &o, &fs, NULL));
	double t1 = now_s();
	struct txd_status st;
	txd_get_status(fs, &st);
	child_send(wfd, t1 - t0);
	child_send(wfd, (double)st.lsn);
	child_send(wfd, (double)proc_status_kb("VmHWM"));
	_exit(0); /* no checkpoint */
}

/* Read every file in dir sequentially; returns seconds, *bytes total. */
static double read_dir_files(const char *dir, uint64_t *bytes)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	static char buf[1 << 20];
	*bytes = 0;
	double t0 = now_s();
	if (!d)
		bench_die("opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		int fd = openat(dirfd(d), de->d_name, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t r;
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			*bytes += (uint64_t)r;
		close(fd);
	}
	closedir(d);
	return now_s() - t0;
}

int main(void)
{
	bool quick = bench_quick();
	long n = quick ? 10000 : 1000000;
	int reps = quick ? 3 : 5;
	char *store = bench_path("e3-store");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		writer(store, n);
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		bench_die("writer failed (0x%x)", status);

	/* The WAL directory (engine/store.c layout). */
	char waldir[8192];
	snprintf(waldir, sizeof(waldir), "%s/coordination/dtc/wal", store);

	bool can_drop = geteuid() == 0 && drop_caches();
	for (int cold = 0; cold <= (can_drop ? 1 : 0); cold++) {
		double t[16], base[16], lsn = 0, hwm = 0;
		uint64_t walbytes = 0;
		for (int r = 0; r < reps; r++) {
			if (cold)
				drop_caches();
			base[r] = read_dir_files(waldir, &walbytes);
			if (cold)
				drop_caches();
			int p[2];
			CKS(pipe(p));
			fflush(stdout);
			pid_t c = fork();
			if (c == 0) {
				close(p[0]);
				opener(store, p[1]);
			}
			close(p[1]);
			double v[3] = {0};
			if (child_collect(c, p[0], v, 3) != 3)
				bench_die("opener sent nothing");
			t[r] = v[0];
			lsn = v[1];
			hwm = v[2];
			fprintf(stderr,
				"%s rep %d: open %.3f s (lsn %.0f, VmHWM %.0f kB); read WAL %.3f s "
				"(%llu bytes)\n",
				cold ? "cold" : "warm", r, t[r], lsn, hwm, base[r],
				(unsigned long long)walbytes);
		}
		double mt = median(t, reps), mb = median(base, reps);
		const char *tag = cold ? "cold" : "warm";
		printf("BENCH e3_replay_open_%s %.3f s %ld commits, WAL %.0f MiB, lsn %.0f, open "
		       "VmHWM %.0f MiB\n",
		       tag, mt, n, (double)walbytes / (1 << 20), lsn, hwm / 1024);
		printf("BENCH e3_wal_read_%s %.3f s sequential read of the WAL files\n", tag, mb);
		char a[64], b[64], tg[128];
		snprintf(a, sizeof(a), "%.3f s", mt);
		snprintf(b, sizeof(b), "%.3f s (read %.0f MiB WAL)", mb,
			 (double)walbytes / (1 << 20));
		snprintf(tg, sizeof(tg), "E3 reopen with %s commits in WAL (%s cache)",
			 quick ? "10k" : "1M", tag);
		target_row(tg, a, b, mb > 0 ? mt / mb : 0, "<= 2 s", verdict(mt, 2.0, false));
	}
	if (!can_drop)
		printf("BENCH e3_replay_open_cold skipped - not root, cannot drop caches\n");
	rm_rf(store);
	return 0;
}
