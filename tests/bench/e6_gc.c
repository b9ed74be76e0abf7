/*
 * e6_gc — pack garbage collection (engine/gc.h): half of a 1 GiB tree
 * (64 MiB with QUICK) is deleted; how much of the dead pack bytes one GC
 * cycle gives back, and how long it takes.
 *
 * 128 files of 8 MiB (incompressible, over the 4 MiB inline limit, so in
 * packs) are written and committed through txd_create/txd_write/txd_flush
 * and synced; every other one is unlinked (and its node forgotten, as the
 * kernel would). Then one GC cycle the way the checkpoint thread runs it:
 * gc_run (relocates the live half out of the mostly dead pack), one commit
 * (a mkdir: G4 wants a commit after T0), txd_checkpoint, gc_run (deletes
 * the old pack). Figures: pack bytes on disk before and after, the ratio
 * (bytes back) / (dead bytes), the cycle's time and relocation rate. Every
 * remaining file is then read back through the engine (checksums).
 * Target: >= 90% of the dead pack bytes back (issue 12).
 */
#include <dirent.h>
#include <pthread.h>

#include "bench.h"
#include "chunk.h"
#include "core.h"
#include "gc.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t pack_bytes(const char *store)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/objects", store);
	DIR *d = opendir(p);
	if (!d)
		bench_die("opendir %s: %s", p, strerror(errno));
	uint64_t sum = 0;
	for (struct dirent *e; (e = readdir(d));) {
		char f[4500];
		struct stat st;
		if (strncmp(e->d_name, "pack-", 5))
			continue;
		snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
		if (stat(f, &st) == 0)
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

static void gc_once(struct txd_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	int err = gc_run(fs);
	pthread_mutex_unlock(&fs->lock);
	CK(err);
}

int main(void)
{
	bool quick = bench_quick();
	const uint64_t fsize = 8ull << 20;
	const int nfiles = quick ? 8 : 128;
	char *store = bench_path("e6-store");
	struct txd_fs *fs;
	struct txd_opts o = {0};
	struct txd_cred c = bench_cred();
	CK(txd_store_init(store));
	CK(txd_fs_open(store, &o, &fs, NULL));

	size_t bs = 1 << 20;
	uint64_t *buf = malloc(bs);
	uint64_t *nodes = calloc((size_t)nfiles, sizeof(*nodes));
	if (!buf || !nodes)
		bench_die("oom");
	double t0 = now_s();
	for (int f = 0; f < nfiles; f++) {
		char name[32];
		struct txd_entry e;
		struct txd_open_out oo;
		snprintf(name, sizeof(name), "f%03d", f);
		CK(txd_create(fs, &c, TXD_ROOT_NODE, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e,
			      &oo));
		nodes[f] = e.node;
		for (uint64_t off = 0; off < fsize; off += bs) {
			for (size_t k = 0; k < bs / 8; k++)
				buf[k] = next_rand();
			ssize_t w = txd_write(fs, NULL, oo.fh, buf, bs, off);
			CK(w);
			if ((size_t)w != bs)
				bench_die("short txd_write %zd", w);
		}
		CK(txd_flush(fs, oo.fh, &c, NULL));
		CK(txd_release(fs, oo.fh));
	}
	CK(txd_sync_wait(fs));
	double t1 = now_s();
	uint64_t total = (uint64_t)nfiles * fsize;
	fprintf(stderr, "wrote %llu MiB in %.2f s\n", (unsigned long long)(total >> 20), t1 - t0);
	for (int f = 0; f < nfiles; f += 2) {
		char name[32];
		snprintf(name, sizeof(name), "f%03d", f);
		CK(txd_unlink(fs, &c, TXD_ROOT_NODE, name));
		txd_forget(fs, nodes[f], 1); /* the kernel's FORGET of the create's lookup */
	}
	uint64_t dead = (uint64_t)(nfiles / 2) * fsize;
	uint64_t before = pack_bytes(store);
	fprintf(stderr, "pack bytes before GC: %llu (dead %llu)\n", (unsigned long long)before,
		(unsigned long long)dead);

	double g0 = now_s();
	gc_once(fs);
	double g1 = now_s();
	struct txd_entry pe;
	CK(txd_mkdir(fs, &c, TXD_ROOT_NODE, "poke", 0755, &pe));
	CK(txd_checkpoint(fs));
	gc_once(fs);
	double g2 = now_s();
	uint64_t after = pack_bytes(store);
	struct gc_stats st;
	pthread_mutex_lock(&fs->lock);
	gc_get_stats(fs, &st);
	pthread_mutex_unlock(&fs->lock);
	double back = before > after ? (double)(before - after) : 0;
	double ratio = back / (double)dead;
	fprintf(stderr, "pack bytes after GC: %llu; moved %llu, reclaimed %llu; relocation %.2f s, "
			"cycle %.2f s\n",
		(unsigned long long)after, (unsigned long long)st.bytes_moved,
		(unsigned long long)st.bytes_reclaimed, g1 - g0, g2 - g0);

	/* every remaining file reads back (the engine verifies each chunk) */
	for (int f = 1; f < nfiles; f += 2) {
		struct txd_open_out oo;
		CK(txd_open(fs, NULL, nodes[f], O_RDONLY, &oo));
		for (uint64_t off = 0; off < fsize; off += bs) {
			ssize_t r = txd_read(fs, oo.fh, buf, bs, off);
			CK(r);
			if ((size_t)r != bs)
				bench_die("short read of f%03d at %llu: %zd", f, (unsigned long long)off,
					  r);
		}
		CK(txd_release(fs, oo.fh));
	}
	txd_fs_close(fs);

	printf("BENCH e6_gc_reclaimed %.1f %% of %llu MiB dead pack bytes (%llu -> %llu MiB on "
	       "disk)\n",
	       ratio * 100, (unsigned long long)(dead >> 20), (unsigned long long)(before >> 20),
	       (unsigned long long)(after >> 20));
	printf("BENCH e6_gc_cycle_time %.2f s relocate %llu MiB, commit, checkpoint, delete\n",
	       g2 - g0, (unsigned long long)(st.bytes_moved >> 20));
	printf("BENCH e6_gc_relocation_rate %.1f MiB/s live bytes copied (read, verify, append, "
	       "sync)\n",
	       (double)st.bytes_moved / (1 << 20) / (g1 - g0 > 0 ? g1 - g0 : 1e-9));
	char txt[64], basetxt[64];
	snprintf(txt, sizeof(txt), "%.1f%% back in %.1f s", ratio * 100, g2 - g0);
	snprintf(basetxt, sizeof(basetxt), "%llu MiB dead", (unsigned long long)(dead >> 20));
	target_row(quick ? "GC after deleting half of a 64 MiB tree (QUICK)"
			 : "GC after deleting half of a 1 GiB tree",
		   txt, basetxt, ratio, ">= 0.90", verdict(ratio, 0.90, true));
	rm_rf(store);
	free(store);
	free(buf);
	free(nodes);
	return 0;
}
