/*
 * e5_lockp99 — latency of small requests while long work runs (issue 9,
 * defect 2: disk I/O and long walks under the store-wide lock).
 *
 * Engine level (no FUSE), so it measures the engine's locking. A builder
 * child creates NDIRS x NFILES empty files (1000 x 1000 = 1M; QUICK: 20 x
 * 1000) with durability=none and closes the store (checkpoint). The store
 * is then reopened with the default durability (fsync mode) and no
 * background checkpoints, and three threads run for every phase:
 *   2 x stat:   txd_getattr of a random one of 1000 looked-up files, one
 *               every STAT_EVERY_US
 *   1 x create: txd_create + 100-byte write + flush + release of a new
 *               file, one every CREATE_EVERY_US
 * Requests are issued on a fixed schedule (open loop) and a latency counts
 * from the request's scheduled time, so a stall of the lock delays every
 * request scheduled during it, as it would a file system's users (a closed
 * loop would record one slow sample per thread and hide the stall). A phase
 * ends only once every worker has issued what was scheduled before its end:
 * requests a stall held back at the end of a phase count too.
 * Phases:
 *   idle        nothing else runs
 *   checkpoint  txd_checkpoint from the main thread, back to back, at
 *               least once and for at least the phase time
 *   txn         the commit of a transaction holding 10,000 new files (the
 *               files are created in the view beforehand, not measured)
 * Output: p50/p99/max per phase and kind, and a TARGET row for each loaded
 * phase: p99 under load vs p99 idle, goal <= 10x.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/prctl.h>

#include "bench.h"

#define NSTAT_THREADS 2
#define NTARGETS 1000
#define TXN_FILES 10000
#define MAXS (1u << 22)
#define STAT_EVERY_US 200
#define CREATE_EVERY_US 2000

enum { PH_IDLE, PH_CKPT, PH_TXN, NPHASES };
static const char *phase_name[NPHASES] = {"idle", "checkpoint", "txn"};

struct lat {
	float *v; /* microseconds */
	uint32_t n;
};

static struct txd_fs *fs;
static uint64_t targets[NTARGETS], wdir;
static _Atomic int phase = -1; /* -1: paused */
static _Atomic int epoch;      /* bumped at every start: schedules restart */
static _Atomic bool quit;
static _Atomic int busy;       /* workers inside a measured op */
static _Atomic double stop_at; /* the phase ends at this time (0: running) */
static _Atomic int caught_up;  /* workers whose schedule passed stop_at */
#define NWORKERS (NSTAT_THREADS + 1)
static struct lat stat_lat[NSTAT_THREADS][NPHASES], create_lat[NPHASES];

static void lat_add(struct lat *l, double us)
{
	if (!l->v && !(l->v = malloc(MAXS * sizeof(float))))
		bench_die("oom");
	if (l->n < MAXS)
		l->v[l->n++] = (float)us;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* Wait while paused; false once told to quit. */
static bool wait_phase(int *ph)
{
	while (!atomic_load(&quit)) {
		int p = atomic_load(&phase);
		if (p >= 0) {
			*ph = p;
			return true;
		}
		usleep(200);
	}
	return false;
}

/* Whether this worker has issued everything scheduled before the phase's
 * end (counted once per phase in caught_up). */
static bool done_with_phase(double next, int last_epoch, int *counted_epoch)
{
	double end = atomic_load(&stop_at);
	if (end <= 0 || last_epoch != atomic_load(&epoch) || next < end)
		return false;
	if (*counted_epoch != last_epoch) {
		*counted_epoch = last_epoch;
		atomic_fetch_add(&caught_up, 1);
	}
	return true;
}

/* Sleep until the next scheduled start (*next, advanced by every_us);
 * returns the scheduled start. After a pause the schedule restarts. */
static double next_start(double *next, int *last_epoch, double every_us)
{
	double now = now_s();
	int e = atomic_load(&epoch);
	if (e != *last_epoch) {
		*next = now;
		*last_epoch = e;
	}
	double at = *next;
	*next += every_us / 1e6;
	if (at > now) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)((at - now) * 1e9)};
		nanosleep(&ts, NULL);
	}
	return at;
}

static void *stat_main(void *arg)
{
	int id = (int)(intptr_t)arg, ph, last_ep = -1, counted = -1;
	unsigned seed = (unsigned)id * 7919 + 1;
	double next = 0;
	prctl(PR_SET_TIMERSLACK, 1UL);
	while (wait_phase(&ph)) {
		atomic_fetch_add(&busy, 1);
		if (atomic_load(&phase) != ph || done_with_phase(next, last_ep, &counted)) {
			atomic_fetch_sub(&busy, 1);
			usleep(100);
			continue;
		}
		struct txd_attr a;
		uint64_t node = targets[rand_r(&seed) % NTARGETS];
		double t0 = next_start(&next, &last_ep, STAT_EVERY_US);
		CK(txd_getattr(fs, node, &a));
		lat_add(&stat_lat[id][ph], (now_s() - t0) * 1e6);
		atomic_fetch_sub(&busy, 1);
	}
	return NULL;
}

static void *create_main(void *arg)
{
	(void)arg;
	struct txd_cred c = bench_cred();
	char buf[100], name[48];
	memset(buf, 'x', sizeof(buf));
	int ph, last_ep = -1, counted = -1;
	double next = 0;
	prctl(PR_SET_TIMERSLACK, 1UL);
	for (uint64_t k = 0; wait_phase(&ph); k++) {
		atomic_fetch_add(&busy, 1);
		if (atomic_load(&phase) != ph || done_with_phase(next, last_ep, &counted)) {
			atomic_fetch_sub(&busy, 1);
			usleep(100);
			continue;
		}
		struct txd_entry e;
		struct txd_open_out oo;
		snprintf(name, sizeof(name), "new-%08llu", (unsigned long long)k);
		double t0 = next_start(&next, &last_ep, CREATE_EVERY_US);
		CK(txd_create(fs, &c, wdir, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e, &oo));
		CK(txd_write(fs, NULL, oo.fh, buf, sizeof(buf), 0));
		CK(txd_flush(fs, oo.fh, &c, NULL));
		CK(txd_release(fs, oo.fh));
		lat_add(&create_lat[ph], (now_s() - t0) * 1e6);
		txd_forget(fs, e.node, 1);
		atomic_fetch_sub(&busy, 1);
	}
	return NULL;
}

static void run_phase(int ph)
{
	atomic_fetch_add(&epoch, 1);
	atomic_store(&phase, ph);
}

/* End the phase once every worker has caught up with its schedule. */
static void pause_workers(void)
{
	atomic_store(&caught_up, 0);
	atomic_store(&stop_at, now_s());
	while (atomic_load(&caught_up) < NWORKERS)
		usleep(100);
	atomic_store(&phase, -1);
	while (atomic_load(&busy))
		usleep(100);
	atomic_store(&stop_at, 0);
}

/* ---- building the store (child) -------------------------------------------------- */
static void build(const char *store, int ndirs, int nfiles)
{
	struct txd_fs *b;
	struct txd_opts o = {.durability = TXD_DUR_NONE};
	struct txd_cred c = bench_cred();
	CK(txd_store_init(store));
	CK(txd_fs_open(store, &o, &b, NULL));
	for (int d = 0; d < ndirs; d++) {
		char name[32];
		struct txd_entry de;
		snprintf(name, sizeof(name), "d%04d", d);
		CK(txd_mkdir(b, &c, TXD_ROOT_NODE, name, 0755, &de));
		for (int f = 0; f < nfiles; f++) {
			struct txd_entry e;
			struct txd_open_out oo;
			snprintf(name, sizeof(name), "file-%06d", f);
			CK(txd_create(b, &c, de.node, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e,
				      &oo));
			CK(txd_flush(b, oo.fh, &c, NULL));
			CK(txd_release(b, oo.fh));
			txd_forget(b, e.node, 1);
		}
		txd_forget(b, de.node, 1);
	}
	txd_fs_close(b);
	_exit(0);
}

/* ---- the transaction (through the control tree, as mountctl does) ------------------ */
static uint64_t lookup(uint64_t parent, const char *name)
{
	struct txd_entry e;
	CK(txd_lookup(fs, parent, name, &e));
	return e.node;
}

static uint64_t txn_dir(void)
{
	return lookup(lookup(TXD_ROOT_NODE, ".txdir"), "txn");
}

static void txn_prepare(const char *name, int nfiles)
{
	struct txd_cred c = bench_cred();
	struct txd_entry e;
	CK(txd_mkdir(fs, &c, txn_dir(), name, 0755, &e));
	uint64_t root = lookup(e.node, "root");
	char buf[100], fname[48];
	memset(buf, 'y', sizeof(buf));
	for (int k = 0; k < nfiles; k++) {
		struct txd_entry fe;
		struct txd_open_out oo;
		snprintf(fname, sizeof(fname), "%s-%05d", name, k);
		CK(txd_create(fs, &c, root, fname, S_IFREG | 0644, O_WRONLY | O_CREAT, &fe, &oo));
		CK(txd_write(fs, NULL, oo.fh, buf, sizeof(buf), 0));
		CK(txd_flush(fs, oo.fh, &c, NULL));
		CK(txd_release(fs, oo.fh));
		txd_forget(fs, fe.node, 1);
	}
}

static void txn_cmd(const char *name, const char *what)
{
	struct txd_open_out oo;
	uint64_t ctl = lookup(lookup(txn_dir(), name), "ctl");
	CK(txd_open(fs, NULL, ctl, O_WRONLY | O_TRUNC, &oo));
	CK(txd_write(fs, NULL, oo.fh, what, strlen(what), 0));
	CK(txd_release(fs, oo.fh));
}

/* ---- reporting --------------------------------------------------------------------- */
struct pct {
	double p50, p99, max;
	uint32_t n;
};

static struct pct pcts(struct lat *ls, int nl)
{
	uint32_t n = 0;
	for (int k = 0; k < nl; k++)
		n += ls[k].n;
	struct pct p = {0};
	if (!n)
		return p;
	float *all = malloc(n * sizeof(float));
	if (!all)
		bench_die("oom");
	for (int k = 0, at = 0; k < nl; k++) {
		memcpy(all + at, ls[k].v, ls[k].n * sizeof(float));
		at += (int)ls[k].n;
	}
	qsort(all, n, sizeof(float), cmp_float);
	p.p50 = all[n / 2];
	p.p99 = all[(uint32_t)((double)n * 0.99)];
	p.max = all[n - 1];
	p.n = n;
	free(all);
	return p;
}

int main(void)
{
	bool quick = bench_quick();
	int ndirs = quick ? 20 : 1000, nfiles = 1000;
	double phase_s = quick ? 1.0 : 3.0;
	long total = (long)ndirs * nfiles;
	char *store = bench_path("e5-store");

	/* build in a child: its memory is not ours */
	fflush(stdout);
	double tb = now_s();
	pid_t pid = fork();
	if (pid == 0)
		build(store, ndirs, nfiles);
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		bench_die("builder failed");
	fprintf(stderr, "built %ld files in %.1f s\n", total, now_s() - tb);

	struct txd_opts o = {.durability = TXD_DUR_FSYNC, .checkpoint_bytes = 1ull << 50};
	CK(txd_fs_open(store, &o, &fs, NULL));
	struct txd_cred c = bench_cred();
	for (int k = 0; k < NTARGETS; k++) {
		char name[32];
		snprintf(name, sizeof(name), "d%04d", k % ndirs);
		uint64_t d = lookup(TXD_ROOT_NODE, name);
		snprintf(name, sizeof(name), "file-%06d", (k * 37) % nfiles);
		targets[k] = lookup(d, name);
	}
	struct txd_entry we;
	CK(txd_mkdir(fs, &c, TXD_ROOT_NODE, "w", 0755, &we));
	wdir = we.node;

	pthread_t th[NSTAT_THREADS + 1];
	for (int k = 0; k < NSTAT_THREADS; k++)
		pthread_create(&th[k], NULL, stat_main, (void *)(intptr_t)k);
	pthread_create(&th[NSTAT_THREADS], NULL, create_main, NULL);

	/* idle */
	run_phase(PH_IDLE);
	usleep((useconds_t)(phase_s * 1e6));
	pause_workers();

	/* checkpoints, back to back */
	int nck = 0;
	double ck_total = 0, t0 = now_s();
	run_phase(PH_CKPT);
	while (nck == 0 || now_s() - t0 < phase_s) {
		/* a change since the last one, so each writes the whole store */
		struct txd_entry e;
		struct txd_open_out oo;
		char name[32];
		snprintf(name, sizeof(name), "ck-%d", nck);
		CK(txd_create(fs, &c, TXD_ROOT_NODE, name, S_IFREG | 0644, O_WRONLY | O_CREAT, &e,
			      &oo));
		CK(txd_release(fs, oo.fh));
		txd_forget(fs, e.node, 1);
		double t = now_s();
		CK(txd_checkpoint(fs));
		ck_total += now_s() - t;
		nck++;
	}
	pause_workers();

	/* transaction commits of TXN_FILES new files */
	int ntx = 0;
	double tx_total = 0;
	t0 = now_s();
	while (ntx == 0 || (ntx < 3 && tx_total < phase_s)) {
		char name[32];
		snprintf(name, sizeof(name), "big%d", ntx);
		txn_prepare(name, TXN_FILES);
		run_phase(PH_TXN);
		double t = now_s();
		txn_cmd(name, "commit");
		tx_total += now_s() - t;
		pause_workers();
		struct txd_entry e;
		CK(txd_rmdir(fs, NULL, txn_dir(), name));
		(void)e;
		ntx++;
	}
	atomic_store(&quit, true);
	for (int k = 0; k <= NSTAT_THREADS; k++)
		pthread_join(th[k], NULL);

	printf("BENCH e5_checkpoint_time %.3f s one txd_checkpoint of %ld files (%d runs)\n",
	       ck_total / nck, total, nck);
	printf("BENCH e5_txn_commit_time %.3f s commit of a %d-file transaction (%d runs)\n",
	       tx_total / ntx, TXN_FILES, ntx);
	struct pct st[NPHASES], cr[NPHASES];
	for (int ph = 0; ph < NPHASES; ph++) {
		struct lat sl[NSTAT_THREADS];
		for (int k = 0; k < NSTAT_THREADS; k++)
			sl[k] = stat_lat[k][ph];
		st[ph] = pcts(sl, NSTAT_THREADS);
		cr[ph] = pcts(&create_lat[ph], 1);
		printf("BENCH e5_stat_p99_%s %.1f us p50 %.1f, max %.0f, n=%u\n", phase_name[ph],
		       st[ph].p99, st[ph].p50, st[ph].max, st[ph].n);
		printf("BENCH e5_create_p99_%s %.1f us create+write+flush+release; p50 %.1f, "
		       "max %.0f, n=%u\n",
		       phase_name[ph], cr[ph].p99, cr[ph].p50, cr[ph].max, cr[ph].n);
	}
	const char *what[NPHASES] = {NULL, quick ? "checkpoint of 20k files" : "checkpoint of 1M files",
				     "10,000-file txn commit"};
	for (int ph = PH_CKPT; ph < NPHASES; ph++) {
		char t[128], a[48], b[48];
		double r;
		snprintf(t, sizeof(t), "E5 stat p99 during %s", what[ph]);
		snprintf(a, sizeof(a), "%.1f us", st[ph].p99);
		snprintf(b, sizeof(b), "%.1f us (idle)", st[PH_IDLE].p99);
		r = st[PH_IDLE].p99 > 0 ? st[ph].p99 / st[PH_IDLE].p99 : 0;
		target_row(t, a, b, r, "<= 10x", verdict(r, 10, false));
		snprintf(t, sizeof(t), "E5 small-create p99 during %s", what[ph]);
		snprintf(a, sizeof(a), "%.1f us", cr[ph].p99);
		snprintf(b, sizeof(b), "%.1f us (idle)", cr[PH_IDLE].p99);
		r = cr[PH_IDLE].p99 > 0 ? cr[ph].p99 / cr[PH_IDLE].p99 : 0;
		target_row(t, a, b, r, "<= 10x", verdict(r, 10, false));
	}
	txd_fs_close(fs);
	rm_rf(store);
	const char *d = getenv("BENCH_DIR");
	if (!d || !*d)
		rmdir(bench_dir()); /* the scratch directory it made itself */
	return 0;
}
