/*
 * e2_overwrite — bytes the engine writes per 4 KiB overwrite commit in a
 * large file.
 *
 * A 1 GiB file (16 MiB with QUICK) is written once through txd_write with
 * incompressible data and committed; then 100 commits each overwrite 4 KiB
 * at a random 4 KiB-aligned offset (txd_write + txd_flush on one handle), and
 * a final txd_sync_wait. The OS table (engine/os.h) is swapped for one that
 * counts pwrite bytes and fsync/fdatasync calls; the figure is pwrite bytes
 * per commit (median of several rounds of 100). Baseline: the 4 KiB payload
 * itself (what native pwrite issues), so ratio = write amplification.
 * Goal: <= 64 KiB per commit. A second row does the same at unaligned offsets.
 */
#include <stdatomic.h>

#include "bench.h"
#include "os.h"

static atomic_ullong g_wbytes, g_wcalls, g_syncs;

static ssize_t count_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t r = txd_os_real.pwrite(fd, buf, n, off);
	if (r > 0) {
		atomic_fetch_add(&g_wbytes, (unsigned long long)r);
		atomic_fetch_add(&g_wcalls, 1);
	}
	return r;
}

static int count_fsync(int fd)
{
	atomic_fetch_add(&g_syncs, 1);
	return txd_os_real.fsync(fd);
}

static int count_fdatasync(int fd)
{
	atomic_fetch_add(&g_syncs, 1);
	return txd_os_real.fdatasync(fd);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(void)
{
	bool quick = bench_quick();
	uint64_t fsize = quick ? (16ull << 20) : (1ull << 30);
	int rounds = quick ? 3 : 5, per_round = 100;
	static struct txd_os_ops ops;
	ops = txd_os_real;
	ops.pwrite = count_pwrite;
	ops.fsync = count_fsync;
	ops.fdatasync = count_fdatasync;
	txd_os_set(&ops);

	char *store = bench_path("e2-store");
	struct txd_fs *fs;
	struct txd_opts o = {0};
	struct txd_cred c = bench_cred();
	struct txd_entry e;
	struct txd_open_out oo;
	CK(txd_store_init(store));
	CK(txd_fs_open(store, &o, &fs, NULL));
	CK(txd_create(fs, &c, TXD_ROOT_NODE, "big", S_IFREG | 0644, O_RDWR | O_CREAT, &e, &oo));

	size_t bs = 1 << 20;
	uint64_t *buf = malloc(bs);
	double t0 = now_s();
	for (uint64_t off = 0; off < fsize; off += bs) {
		for (size_t k = 0; k < bs / 8; k++)
			buf[k] = next_rand();
		ssize_t w = txd_write(fs, NULL, oo.fh, buf, bs, off);
		CK(w);
		if ((size_t)w != bs)
			bench_die("short txd_write %zd", w);
	}
	CK(txd_flush(fs, oo.fh, &c, NULL));
	CK(txd_sync_wait(fs));
	double t1 = now_s();
	fprintf(stderr, "initial %llu MiB write+commit+sync: %.2f s, %llu bytes issued\n",
		(unsigned long long)(fsize >> 20), t1 - t0, (unsigned long long)g_wbytes);
	printf("BENCH e2_initial_write %.1f MiB/s txd_write of %llu MiB, commit, sync\n",
	       (double)fsize / (1 << 20) / (t1 - t0), (unsigned long long)(fsize >> 20));

	double per[2][16], calls[2][16], syncs[2][16], lat[2][16];
	for (int mode = 0; mode < 2; mode++) {
		for (int r = 0; r < rounds; r++) {
			atomic_store(&g_wbytes, 0);
			atomic_store(&g_wcalls, 0);
			atomic_store(&g_syncs, 0);
			double s0 = now_s();
			for (int i = 0; i < per_round; i++) {
				uint64_t off = next_rand() % (fsize - 4096);
				if (mode == 0)
					off &= ~4095ull;
				for (int k = 0; k < 512; k++)
					buf[k] = next_rand();
				ssize_t w = txd_write(fs, NULL, oo.fh, buf, 4096, off);
				CK(w);
				CK(txd_flush(fs, oo.fh, &c, NULL));
			}
			CK(txd_sync_wait(fs));
			double s1 = now_s();
			per[mode][r] = (double)atomic_load(&g_wbytes) / per_round;
			calls[mode][r] = (double)atomic_load(&g_wcalls) / per_round;
			syncs[mode][r] = (double)atomic_load(&g_syncs);
			lat[mode][r] = (s1 - s0) / per_round * 1e6;
			fprintf(stderr,
				"%s round %d: %.0f B/commit, %.1f pwrites/commit, %.0f syncs, %.0f "
				"us/commit\n",
				mode ? "unaligned" : "aligned", r, per[mode][r], calls[mode][r],
				syncs[mode][r], lat[mode][r]);
		}
	}
	CK(txd_release(fs, oo.fh));
	txd_fs_close(fs);
	txd_os_set(NULL);
	rm_rf(store);

	for (int mode = 0; mode < 2; mode++) {
		double m = median(per[mode], rounds);
		const char *tag = mode ? "unaligned" : "aligned";
		printf("BENCH e2_bytes_per_commit_%s %.0f bytes %.1f pwrite calls/commit, %.0f "
		       "us/commit\n",
		       tag, m, median(calls[mode], rounds), median(lat[mode], rounds));
		char a[64], t[128];
		snprintf(a, sizeof(a), "%.1f KiB/commit", m / 1024);
		snprintf(t, sizeof(t), "E2 4 KiB overwrite in %s file (%s), bytes written",
			 quick ? "16 MiB" : "1 GiB", tag);
		target_row(t, a, "4.0 KiB payload", m / 4096, "<= 64 KiB",
			   verdict(m, 64 * 1024, false));
	}
	free(buf);
	return 0;
}
