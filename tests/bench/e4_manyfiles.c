/*
 * e4_manyfiles — engine memory with 1,000,000 files in the namespace.
 *
 * A builder child creates 1000 directories x 1000 empty files (10 x 100 with
 * QUICK) through txd_mkdir/txd_create/txd_release, dropping each lookup
 * reference with txd_forget as the kernel eventually would, then closes the
 * store (checkpoint). Measurement children open the store and report VmRSS
 * right after txd_fs_open, and the open time; a second kind of child reopens
 * with the WAL only (builder killed without close) for comparison.
 * Baseline: VmRSS of a child that opened an empty store the same way, so
 * ratio = RSS(1M files) / RSS(empty store). Goal: <= 500 MB.
 */
#include "bench.h"

static void build(const char *store, int ndirs, int nfiles, bool close_it, int wfd)
{
	struct txd_fs *fs;
	struct txd_opts o = {.durability = TXD_DUR_NONE};
	struct txd_cred c = bench_cred();
	CK(txd_store_init(store));
	CK(txd_fs_open(store, &o, &fs, NULL));
	double t0 = now_s();
	for (int d = 0; d < ndirs; d++) {
		char name[32];
		struct txd_entry de;
		snprintf(name, sizeof(name), "d%04d", d);
		CK(txd_mkdir(fs, &c, TXD_ROOT_NODE, name, 0755, &de));
		for (int f = 0; f < nfiles; f++) {
			struct txd_entry e;
			struct txd_open_out oo;
			snprintf(name, sizeof(name), "file-%06d", f);
			CK(txd_create(fs, &c, de.node, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e,
				      &oo));
			CK(txd_flush(fs, oo.fh, &c, NULL));
			CK(txd_release(fs, oo.fh));
			txd_forget(fs, e.node, 1);
		}
		txd_forget(fs, de.node, 1);
	}
	double t1 = now_s();
	CK(txd_sync_wait(fs));
	child_send(wfd, t1 - t0);
	child_send(wfd, (double)proc_status_kb("VmRSS"));
	if (!close_it)
		_exit(0); /* no checkpoint: the next open replays the WAL */
	double t2 = now_s();
	txd_fs_close(fs);
	child_send(wfd, now_s() - t2);
	_exit(0);
}

static void opener(const char *store, int wfd)
{
	struct txd_fs *fs;
	struct txd_opts o = {0};
	double t0 = now_s();
	CK(txd_fs_open(store, &o, &fs, NULL));
	double t1 = now_s();
	struct txd_status st;
	txd_get_status(fs, &st);
	child_send(wfd, (double)proc_status_kb("VmRSS"));
	child_send(wfd, t1 - t0);
	child_send(wfd, (double)st.inodes);
	child_send(wfd, (double)proc_status_kb("VmHWM"));
	_exit(0); /* leave the store as it is */
}

typedef void (*child_fn)(void);
static int run_child(double *v, int max, const char *store, int mode, int ndirs, int nfiles)
{
	int p[2];
	CKS(pipe(p));
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (mode == 0)
			opener(store, p[1]);
		build(store, ndirs, nfiles, mode == 1, p[1]);
	}
	close(p[1]);
	return child_collect(pid, p[0], v, max);
}

int main(void)
{
	bool quick = bench_quick();
	int ndirs = quick ? 10 : 1000, nfiles = quick ? 100 : 1000, reps = 3;
	long total = (long)ndirs * nfiles;
	char *empty = bench_path("e4-empty"), *store = bench_path("e4-store"),
	     *walonly = bench_path("e4-walonly");
	double v[8];

	/* baseline: empty store */
	run_child(v, 8, empty, 1, 0, 0);
	double base[8];
	for (int r = 0; r < reps; r++) {
		run_child(v, 8, empty, 0, 0, 0);
		base[r] = v[0];
	}

	if (run_child(v, 8, store, 1, ndirs, nfiles) != 3)
		bench_die("builder");
	double build_s = v[0], build_rss = v[1], close_s = v[2];
	fprintf(stderr, "built %ld files in %.1f s (%.0f/s), builder RSS %.0f MiB, close %.2f s\n",
		total, build_s, (double)total / build_s, build_rss / 1024, close_s);
	printf("BENCH e4_create_rate %.0f files/s engine txd_create+flush+release, "
	       "durability=none\n",
	       (double)total / build_s);
	printf("BENCH e4_builder_rss %.0f MiB after creating %ld files (all forgotten)\n",
	       build_rss / 1024, total);
	printf("BENCH e4_close_checkpoint %.2f s txd_fs_close writing the checkpoint\n", close_s);

	double rss[8], open_s[8], inodes = 0, hwm[8];
	for (int r = 0; r < reps; r++) {
		run_child(v, 8, store, 0, 0, 0);
		rss[r] = v[0];
		open_s[r] = v[1];
		inodes = v[2];
		hwm[r] = v[3];
		fprintf(stderr, "open rep %d: RSS %.0f kB, HWM %.0f kB, open %.3f s, inodes %.0f\n",
			r, rss[r], hwm[r], open_s[r], inodes);
	}
	double mr = median(rss, reps), mb = median(base, reps);
	printf("BENCH e4_open_time_ckpt %.3f s open of a checkpointed store with %ld files\n",
	       median(open_s, reps), total);
	printf("BENCH e4_open_vmhwm %.0f MiB peak RSS during open (checkpoint load)\n",
	       median(hwm, reps) / 1024);
	printf("BENCH e4_rss_per_file %.0f bytes (RSS - empty-store RSS) / files, %.0f inodes\n",
	       (mr - mb) * 1024 / (double)total, inodes);

	/* WAL-only reopen (builder killed before close). */
	if (run_child(v, 8, walonly, 2, ndirs, nfiles) != 2)
		bench_die("wal-only builder");
	run_child(v, 8, walonly, 0, 0, 0);
	printf("BENCH e4_rss_walonly %.0f MiB after replaying %ld creates from the WAL (open %.2f "
	       "s)\n",
	       v[0] / 1024, total, v[1]);

	char a[64], b[64], t[96];
	snprintf(a, sizeof(a), "%.1f MB", mr * 1024 / 1e6);
	snprintf(b, sizeof(b), "%.1f MB (empty store)", mb * 1024 / 1e6);
	snprintf(t, sizeof(t), "E4 engine RSS with %s files (after open)", quick ? "1k" : "1M");
	target_row(t, a, b, mb > 0 ? mr / mb : 0, "<= 500 MB", verdict(mr * 1024, 500e6, false));
	double mh = median(hwm, reps);
	snprintf(a, sizeof(a), "%.1f MB", mh * 1024 / 1e6);
	snprintf(t, sizeof(t), "E4 engine peak RSS (VmHWM) opening %s files", quick ? "1k" : "1M");
	target_row(t, a, b, mb > 0 ? mh / mb : 0, "<= 500 MB", verdict(mh * 1024, 500e6, false));
	rm_rf(empty);
	rm_rf(store);
	rm_rf(walonly);
	return 0;
}
