/*
 * e1_commit8 — durable 4 KiB commits from 8 concurrent committer threads.
 *
 * txdir: one store (durability=fsync, the default); each thread owns one
 * file and loops { txd_open O_WRONLY, txd_write 4 KiB at 0, txd_fsync_prepare,
 * wait for txd_durable_async, txd_release } — what FUSE does for
 * open/write/fsync/close.
 * native: each thread loops { open tmp O_CREAT|O_TRUNC, write 4 KiB, fsync,
 * close, rename over its file, fsync the directory } in a directory on the
 * same file system.
 * Each side runs for a fixed time; repetitions alternate txdir/native; the
 * figure is the median throughput. Goal: txdir >= 2x native.
 * Also reported: group-commit batch size = wal_synced_records / wal_syncs
 * over the timed phase.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "bench.h"

#define NTHREADS 8
#define PAYLOAD	 4096

static double g_dur;
static atomic_bool g_stop;
static pthread_barrier_t g_bar;

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

static void durable_cb(void *arg, int err)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

struct worker {
	int id;
	struct txd_fs *fs;
	uint64_t node;
	char *dir;
	uint64_t ops;
	double lat_sum;
};

static void *txd_worker(void *arg)
{
	struct worker *wk = arg;
	struct txd_cred c = bench_cred();
	char buf[PAYLOAD];
	struct waiter w;
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	memset(buf, 'a' + wk->id, sizeof(buf));
	pthread_barrier_wait(&g_bar);
	while (!atomic_load(&g_stop)) {
		struct txd_open_out oo;
		uint64_t lsn = 0;
		buf[0] = (char)wk->ops;
		CK(txd_open(wk->fs, NULL, wk->node, O_WRONLY, &oo));
		CK(txd_write(wk->fs, NULL, oo.fh, buf, sizeof(buf), 0));
		CK(txd_fsync_prepare(wk->fs, oo.fh, &c, &lsn));
		w.done = false;
		CK(txd_durable_async(wk->fs, lsn, durable_cb, &w));
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		CK(w.err);
		CK(txd_release(wk->fs, oo.fh));
		wk->ops++;
	}
	return NULL;
}

static void *native_worker(void *arg)
{
	struct worker *wk = arg;
	char buf[PAYLOAD], tmp[4200], dst[4200];
	memset(buf, 'a' + wk->id, sizeof(buf));
	snprintf(tmp, sizeof(tmp), "%s/.f%d.tmp", wk->dir, wk->id);
	snprintf(dst, sizeof(dst), "%s/f%d", wk->dir, wk->id);
	int dfd = open(wk->dir, O_RDONLY | O_DIRECTORY);
	CKS(dfd);
	pthread_barrier_wait(&g_bar);
	while (!atomic_load(&g_stop)) {
		buf[0] = (char)wk->ops;
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CKS(fd);
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			bench_die("native write");
		CKS(fsync(fd));
		CKS(close(fd));
		CKS(rename(tmp, dst));
		CKS(fsync(dfd));
		wk->ops++;
	}
	close(dfd);
	return NULL;
}

/* Run NTHREADS workers for g_dur seconds; returns ops/s. */
static double run_threads(void *(*fn)(void *), struct worker *wk)
{
	pthread_t th[NTHREADS];
	atomic_store(&g_stop, false);
	pthread_barrier_init(&g_bar, NULL, NTHREADS + 1);
	for (int i = 0; i < NTHREADS; i++) {
		wk[i].ops = 0;
		pthread_create(&th[i], NULL, fn, &wk[i]);
	}
	pthread_barrier_wait(&g_bar);
	double t0 = now_s();
	struct timespec ts = {(time_t)g_dur, (long)((g_dur - (double)(time_t)g_dur) * 1e9)};
	nanosleep(&ts, NULL);
	atomic_store(&g_stop, true);
	uint64_t total = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		total += wk[i].ops;
	}
	double t1 = now_s();
	pthread_barrier_destroy(&g_bar);
	return (double)total / (t1 - t0);
}

static double run_txdir(int rep, double *batch)
{
	char *store = bench_path("e1-store-%d", rep);
	struct txd_fs *fs;
	struct txd_opts o = {0};
	struct txd_cred c = bench_cred();
	struct worker wk[NTHREADS];
	CK(txd_store_init(store));
	CK(txd_fs_open(store, &o, &fs, NULL));
	for (int i = 0; i < NTHREADS; i++) {
		char name[32], buf[PAYLOAD] = {0};
		struct txd_entry e;
		struct txd_open_out oo;
		snprintf(name, sizeof(name), "f%d", i);
		CK(txd_create(fs, &c, TXD_ROOT_NODE, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e,
			      &oo));
		CK(txd_write(fs, NULL, oo.fh, buf, sizeof(buf), 0));
		CK(txd_flush(fs, oo.fh, &c, NULL));
		CK(txd_release(fs, oo.fh));
		wk[i] = (struct worker){.id = i, .fs = fs, .node = e.node};
	}
	CK(txd_sync_wait(fs));
	struct txd_status s0, s1;
	txd_get_status(fs, &s0);
	double tput = run_threads(txd_worker, wk);
	txd_get_status(fs, &s1);
	uint64_t syncs = s1.wal_syncs - s0.wal_syncs;
	*batch =
		syncs ? (double)(s1.wal_synced_records - s0.wal_synced_records) / (double)syncs : 0;
	fprintf(stderr, "txdir rep %d: %.0f commits/s, %llu syncs, batch %.2f\n", rep, tput,
		(unsigned long long)syncs, *batch);
	txd_fs_close(fs);
	rm_rf(store);
	free(store);
	return tput;
}

static double run_native(int rep)
{
	char *dir = bench_path("e1-native-%d", rep);
	struct worker wk[NTHREADS];
	CKS(mkdir(dir, 0755));
	for (int i = 0; i < NTHREADS; i++)
		wk[i] = (struct worker){.id = i, .dir = dir};
	double tput = run_threads(native_worker, wk);
	fprintf(stderr, "native rep %d: %.0f saves/s\n", rep, tput);
	rm_rf(dir);
	free(dir);
	return tput;
}

int main(void)
{
	bool quick = bench_quick();
	int reps = quick ? 3 : 5;
	g_dur = quick ? 0.3 : 3.0;
	double tx[16], nat[16], batch[16];
	for (int r = 0; r < reps; r++) {
		tx[r] = run_txdir(r, &batch[r]);
		nat[r] = run_native(r);
	}
	double mt = median(tx, reps), mn = median(nat, reps), mb = median(batch, reps);
	double ratio = mn > 0 ? mt / mn : 0;
	printf("BENCH e1_txdir_durable_commits %.0f commits/s 8 threads, 4 KiB\n", mt);
	printf("BENCH e1_native_durable_saves %.0f saves/s tmp+fsync+rename+dir fsync\n", mn);
	printf("BENCH e1_group_commit_batch %.2f records/sync wal_synced_records/wal_syncs\n", mb);
	char a[64], b[64];
	snprintf(a, sizeof(a), "%.0f commits/s (batch %.1f)", mt, mb);
	snprintf(b, sizeof(b), "%.0f saves/s", mn);
	target_row("E1 durable 4 KiB commits, 8 threads", a, b, ratio, ">= 2x",
		   verdict(ratio, 2.0, true));
	return 0;
}
