/*
 * e7_fsck — `mountctl fsck` of a 1,000,000-file, 4 GiB store, beside `cat`
 * of the same store files (the read floor). Issue 12: throughput >= 0.5x
 * the floor.
 *
 * A builder child makes the store through the engine (no FUSE: building
 * through a mount would take most of the run): 1000 directories x 1000
 * files of 4 KiB each (QUICK: 100 x 100), each through
 * txd_create/txd_write/txd_release with durability none, then closes the
 * store (its checkpoint). Each file's bytes differ (its number is in
 * them). Before building, it checks that the disk has room for twice the
 * store (skips with a message if not).
 *
 * Then, reps times, cold cache each time when root (drop_caches; else warm,
 * and the note says so): `find STORE -type f -print0 | xargs -0 cat`
 * into /dev/null, and `mountctl fsck STORE` (stdout to /dev/null; exit 0
 * required). Throughput = bytes of every store file / time; ratio =
 * fsck / cat, higher is better, goal 0.5.
 */
#include <sys/statvfs.h>

#include "bench.h"

#define FILE_BYTES 4096

static void build(const char *store, int ndirs, int nfiles, int wfd)
{
	struct txd_fs *fs;
	struct txd_opts o = {.durability = TXD_DUR_NONE};
	struct txd_cred c = bench_cred();
	char buf[FILE_BYTES];
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
			for (size_t k = 0; k < sizeof(buf); k += 64)
				snprintf(buf + k, 64, "%04d/%06d@%05zu ..........................................",
					 d, f, k);
			CK(txd_create(fs, &c, de.node, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e,
				      &oo));
			if (txd_write(fs, &c, oo.fh, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
				bench_die("write %s", name);
			CK(txd_flush(fs, oo.fh, &c, NULL));
			CK(txd_release(fs, oo.fh));
			txd_forget(fs, e.node, 1);
		}
		txd_forget(fs, de.node, 1);
	}
	double t1 = now_s();
	txd_fs_close(fs);
	child_send(wfd, t1 - t0);
	child_send(wfd, now_s() - t1);
	_exit(0);
}

/* Seconds a shell command took; dies unless it exits 0. */
static double timed(const char *cmd)
{
	double t0 = now_s();
	int rc = system(cmd);
	double t = now_s() - t0;
	if (rc != 0)
		bench_die("%s: status %d", cmd, rc);
	return t;
}

static uint64_t du_bytes(const char *store)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "find '%s' -type f -printf '%%s\\n' | awk '{s+=$1} END {printf \"%%.0f\\n\", s}'",
		 store);
	FILE *p = popen(cmd, "r");
	unsigned long long v = 0;
	if (!p || fscanf(p, "%llu", &v) != 1)
		bench_die("du of %s", store);
	pclose(p);
	return v;
}

int main(void)
{
	bool quick = bench_quick();
	int ndirs = quick ? 100 : 1000, nfiles = quick ? 100 : 1000, reps = quick ? 1 : 3;
	long files = (long)ndirs * nfiles;
	const char *mc = getenv("MOUNTCTL");
	char *store = bench_path("store");
	struct statvfs vfs;
	uint64_t need = 2ull * (uint64_t)files * FILE_BYTES + (256ull << 20);
	if (statvfs(bench_dir(), &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < need) {
		printf("BENCH e7_skipped 1 - disk too small: %.1f GiB free, %.1f GiB needed\n",
		       (double)vfs.f_bavail * vfs.f_frsize / (1 << 30), (double)need / (1 << 30));
		return 0;
	}
	char mcbuf[4200];
	if (!mc) { /* run.sh always sets it */
		const char *b = getenv("TXDIR_BUILD");
		snprintf(mcbuf, sizeof(mcbuf), "%s/mountctl", b ? b : "build");
		mc = mcbuf;
	}
	int pfd[2];
	if (pipe(pfd))
		bench_die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		build(store, ndirs, nfiles, pfd[1]);
	}
	close(pfd[1]);
	double got[2];
	if (child_collect(pid, pfd[0], got, 2) != 2)
		bench_die("builder");
	uint64_t bytes = du_bytes(store);
	fprintf(stderr, "built %ld files in %.1f s, close %.1f s, store %.2f GiB\n", files, got[0],
		got[1], (double)bytes / (1 << 30));

	char cat[4400], fsck[4400];
	snprintf(cat, sizeof(cat), "find '%s' -type f -print0 | xargs -0 cat >/dev/null", store);
	snprintf(fsck, sizeof(fsck), "'%s' fsck '%s' >/dev/null", mc, store);
	double tc[3], tf[3];
	bool cold = true;
	for (int r = 0; r < reps; r++) {
		cold &= drop_caches();
		tc[r] = timed(cat);
		cold &= drop_caches();
		tf[r] = timed(fsck);
		fprintf(stderr, "rep %d: cat %.2f s, fsck %.2f s\n", r, tc[r], tf[r]);
	}
	double c = median(tc, reps), f = median(tf, reps);
	double mib = (double)bytes / (1 << 20), fr = mib / f, cr = mib / c;
	const char *cache = cold ? "cold cache" : "warm cache (not root: no drop_caches)";
	printf("BENCH e7_fsck_throughput %.0f MiB/s mountctl fsck of %ld files, %.2f GiB (%s; "
	       "%.1f s)\n", fr, files, (double)bytes / (1 << 30), cache, f);
	printf("BENCH e7_cat_throughput %.0f MiB/s cat of every store file (%s; %.1f s)\n", cr,
	       cache, c);
	printf("BENCH e7_build_rate %.0f files/s engine create+write 4 KiB+release\n",
	       (double)files / got[0]);
	char t1[64], t2[64];
	snprintf(t1, sizeof(t1), "%.0f MiB/s", fr);
	snprintf(t2, sizeof(t2), "%.0f MiB/s cat", cr);
	char what[160];
	snprintf(what, sizeof(what), "fsck throughput, %ld files / %.2f GiB (vs cat)", files,
		 (double)bytes / (1 << 30));
	target_row(what, t1, t2, fr / cr, ">= 0.5", verdict(fr / cr, 0.5, true));
	if (!getenv("E7_KEEP")) /* E7_KEEP=1: leave the store (profiling) */
		rm_rf(store);
	return 0;
}
