/*
 * l1_lease — leases through the mount (issue 10, benchmarks): the cost of a
 * durable grab + release, the reclaim after a holder's SIGKILL, and the
 * server's CPU while 100 holders renew every second.
 *
 * Mounts its own store: $MOUNTCTL init BENCH_DIR/store, then $TXDIRFS
 * BENCH_DIR/store BENCH_DIR/mnt -f (default options: durability fsync, so
 * a grant's token is on disk before mkdir returns), unmounted at the end.
 * The baselines run on BENCH_DIR/native, on the same file system as the
 * store, in the same run.
 *
 *   grab+release, 1 process   N times mkdir .txdir/leases/active/PID/b then
 *                             rmdir it; vs native mkdir d/b + fsync(d) +
 *                             rmdir d/b + fsync(d) (the seed's own mechanism
 *                             made durable); and flock(2) LOCK_EX + LOCK_UN
 *                             (flock(1)'s mechanism; not durable) for
 *                             reference. Goal: P95 <= 1 ms and <= 1.0x native.
 *   grab+release, 16 procs    16 processes at once, each on its own lease
 *                             name (so they contend for the server and its
 *                             log, not for one name), vs 16 processes doing
 *                             the native sequence on their own names in one
 *                             directory. Same goals.
 *   reclaim after kill -9     a child grabs active/CHILD/r and is SIGKILLed;
 *                             time from kill(2) until the lease directory is
 *                             gone. Goal P99 <= 1 s.
 *   100 holders renewing      100 processes, each holding its own lease with
 *                             a TTL of 5 s and writing its ttl file every
 *                             second; the server's utime+stime over the
 *                             window. Goal < 5% of one core.
 * QUICK (BENCH_QUICK): fewer samples and a shorter CPU window.
 * L1_ONLY=grab: only the two grab+release rows (for profiling a change).
 */
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>

#include "bench.h"
#include "bench_mount.h"

#define NPROC 16
#define NHOLDERS 100

static char NAT[1024], LEASES[1200];

/* ---- samples ------------------------------------------------------------------ */

struct dist {
	double p50, p95, p99, max;
};

static struct dist dist_of(double *v, int n)
{
	struct dist d = {0};

	if (n <= 0)
		return d;
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_dbl);
	d.p50 = v[n / 2];
	d.p95 = v[(n * 95 + 99) / 100 - 1];
	d.p99 = v[(n * 99 + 99) / 100 - 1];
	d.max = v[n - 1];
	return d;
}

static void report(const char *metric, const char *what, struct dist d)
{
	printf("BENCH %s_p50 %.1f us %s\n", metric, d.p50 * 1e6, what);
	printf("BENCH %s_p95 %.1f us %s\n", metric, d.p95 * 1e6, what);
	printf("BENCH %s_p99 %.1f us %s\n", metric, d.p99 * 1e6, what);
	fflush(stdout);
}

/* ---- one grab+release, each way --------------------------------------------------- */

enum way { W_TXDIR, W_NATIVE, W_FLOCK };

struct ctx {
	enum way way;
	char path[1300];
	int dirfd, lockfd;
};

static void ctx_open(struct ctx *c, enum way way, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->way = way;
	c->dirfd = c->lockfd = -1;
	if (way == W_TXDIR) {
		snprintf(c->path, sizeof(c->path), "%s/active/%d/%s", LEASES, (int)getpid(), name);
	} else if (way == W_NATIVE) {
		snprintf(c->path, sizeof(c->path), "%s/%s", NAT, name);
		CKS(c->dirfd = open(NAT, O_RDONLY | O_DIRECTORY));
	} else {
		snprintf(c->path, sizeof(c->path), "%s/flock.%s", NAT, name);
		CKS(c->lockfd = open(c->path, O_RDWR | O_CREAT, 0644));
	}
}

static void ctx_close(struct ctx *c)
{
	if (c->dirfd >= 0)
		close(c->dirfd);
	if (c->lockfd >= 0)
		close(c->lockfd);
}

/* One grab + release; returns its duration in seconds. */
static double once(struct ctx *c)
{
	double t0 = now_s();

	switch (c->way) {
	case W_TXDIR:
		CKS(mkdir(c->path, 0755));
		CKS(rmdir(c->path));
		break;
	case W_NATIVE:
		CKS(mkdir(c->path, 0755));
		CKS(fsync(c->dirfd));
		CKS(rmdir(c->path));
		CKS(fsync(c->dirfd));
		break;
	case W_FLOCK:
		CKS(flock(c->lockfd, LOCK_EX));
		CKS(flock(c->lockfd, LOCK_UN));
		break;
	}
	return now_s() - t0;
}

/* txdir_wal_syncs_total from .txdir/stats (the profile: WAL fsyncs per
 * grab+release); -1 when it cannot be read. */
static double wal_syncs(void)
{
	char p[1100], line[512];
	double v = -1;
	FILE *f;

	snprintf(p, sizeof(p), "%s/.txdir/stats", MNT);
	if (!(f = fopen(p, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "txdir_wal_syncs_total %lf", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* nproc processes, n grab+release each, started together; all samples in v. */
static int measure(enum way way, int nproc, int n, double *v)
{
	int go[2], total = 0;
	double *shared = mmap(NULL, (size_t)nproc * (size_t)n * sizeof(double),
			      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[NPROC];
	char c;

	if (shared == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	CKS(pipe(go));
	for (int p = 0; p < nproc; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			struct ctx cx;
			char name[32];

			close(go[1]);
			snprintf(name, sizeof(name), "b%d", p);
			ctx_open(&cx, way, name);
			once(&cx); /* warm the path */
			if (read(go[0], &c, 1) < 0)
				_exit(5);
			for (int i = 0; i < n; i++)
				shared[p * n + i] = once(&cx);
			ctx_close(&cx);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]); /* go */
	for (int p = 0; p < nproc; p++) {
		int status;

		if (waitpid(pids[p], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			bench_die("a measuring process failed (status 0x%x)", status);
	}
	for (int i = 0; i < nproc * n; i++)
		v[total++] = shared[i];
	munmap(shared, (size_t)nproc * (size_t)n * sizeof(double));
	return total;
}

static void grab_release(int nproc, int n)
{
	double *v = malloc((size_t)nproc * (size_t)n * sizeof(double));
	char what[128], target[128], tx[64], base[96];
	struct dist t, nat, fl = {0};
	int got;

	if (!v)
		bench_die("oom");
	snprintf(what, sizeof(what), "%d proc%s, %d each", nproc, nproc > 1 ? "s" : "", n);
	double s0 = wal_syncs();
	got = measure(W_TXDIR, nproc, n, v);
	double s1 = wal_syncs();
	t = dist_of(v, got);
	got = measure(W_NATIVE, nproc, n, v);
	nat = dist_of(v, got);
	if (nproc == 1) {
		got = measure(W_FLOCK, nproc, n, v);
		fl = dist_of(v, got);
	}
	char metric[64];
	snprintf(metric, sizeof(metric), "l1_grab_release_%dp_txdir", nproc);
	report(metric, what, t);
	snprintf(metric, sizeof(metric), "l1_grab_release_%dp_native", nproc);
	report(metric, "mkdir+fsync(dir)+rmdir+fsync(dir)", nat);
	if (nproc == 1)
		report("l1_lock_unlock_flock", "flock(2) LOCK_EX+LOCK_UN, not durable", fl);
	if (s0 >= 0 && s1 >= s0) /* the warm-up grab of each process included */
		printf("BENCH l1_grab_release_%dp_wal_syncs %.2f syncs/op txdir: WAL fsyncs per "
		       "grab+release\n",
		       nproc, (s1 - s0) / (nproc * (n + 1)));

	snprintf(target, sizeof(target), "L1 lease grab+release P95, %d proc%s", nproc,
		 nproc > 1 ? "s" : "");
	snprintf(tx, sizeof(tx), "%.0f us", t.p95 * 1e6);
	snprintf(base, sizeof(base), "1000 us (goal)");
	target_row(target, tx, base, t.p95 / 1e-3, "<= 1.0x (1 ms)", verdict(t.p95, 1e-3, false));
	snprintf(target, sizeof(target), "L1 lease grab+release P95 vs native mkdir+fsync, %d proc%s",
		 nproc, nproc > 1 ? "s" : "");
	if (nproc == 1)
		snprintf(base, sizeof(base), "%.0f us (flock(2): %.1f us)", nat.p95 * 1e6,
			 fl.p95 * 1e6);
	else
		snprintf(base, sizeof(base), "%.0f us", nat.p95 * 1e6);
	target_row(target, tx, base, nat.p95 > 0 ? t.p95 / nat.p95 : 0, "<= 1.0x",
		   verdict(nat.p95 > 0 ? t.p95 / nat.p95 : 99, 1.0, false));
	free(v);
}

/* ---- reclaim ---------------------------------------------------------------------- */

static void reclaim(int rounds)
{
	double *v = calloc((size_t)rounds, sizeof(double));
	char path[1300], tx[64];
	struct dist d;
	struct stat st;

	if (!v)
		bench_die("oom");
	for (int r = 0; r < rounds; r++) {
		int ready[2];
		pid_t child;
		double t0;
		char c = 0;

		CKS(pipe(ready));
		child = fork();
		if (child == 0) {
			close(ready[0]);
			snprintf(path, sizeof(path), "%s/active/%d/r", LEASES, (int)getpid());
			if (mkdir(path, 0755) < 0) {
				fprintf(stderr, "l1_lease: mkdir %s: %s\n", path, strerror(errno));
				_exit(1);
			}
			if (write(ready[1], "x", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		close(ready[1]);
		if (read(ready[0], &c, 1) != 1)
			bench_die("the holder could not grab its lease");
		close(ready[0]);
		/* free again: by-name/r is gone (active/CHILD/ goes with the
		 * process, before the lease is reclaimed) */
		snprintf(path, sizeof(path), "%s/by-name/r", LEASES);
		kill(child, SIGKILL);
		t0 = now_s();
		waitpid(child, NULL, 0); /* a zombie is dead too; reap to free the pid */
		while (lstat(path, &st) == 0 && now_s() - t0 < 10)
			usleep(200);
		v[r] = now_s() - t0;
	}
	d = dist_of(v, rounds);
	printf("BENCH l1_reclaim_p50 %.1f ms after SIGKILL of the holder, %d rounds\n", d.p50 * 1e3,
	       rounds);
	printf("BENCH l1_reclaim_p99 %.1f ms\n", d.p99 * 1e3);
	snprintf(tx, sizeof(tx), "%.0f ms", d.p99 * 1e3);
	target_row("L1 reclaim after kill -9 of a holder, P99", tx, "1000 ms (goal)", d.p99 / 1.0,
		   "<= 1 s", verdict(d.p99, 1.0, false));
	free(v);
}

/* ---- 100 holders renewing ----------------------------------------------------------- */

static double server_cpu_s(void)
{
	char p[64], buf[1024], *s;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/stat", (int)server);
	f = fopen(p, "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		bench_die("%s unreadable", p);
	fclose(f);
	s = strrchr(buf, ')');
	/* fields after ")": state is 3, utime 14, stime 15 */
	if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		bench_die("cannot parse %s", p);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void renewers(double window)
{
	pid_t pids[NHOLDERS];
	int ready[2];
	double c0, c1, t0, t1, pct;
	char tx[64], c;

	CKS(pipe(ready));
	for (int i = 0; i < NHOLDERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			char dir[1300], ttl[1400];
			int fd;

			close(ready[0]);
			snprintf(dir, sizeof(dir), "%s/active/%d/h%d", LEASES, (int)getpid(), i);
			snprintf(ttl, sizeof(ttl), "%s/ttl", dir);
			if (mkdir(dir, 0755) < 0)
				_exit(1);
			if (write(ready[1], "x", 1) != 1)
				_exit(1);
			close(ready[1]);
			for (;;) {
				fd = open(ttl, O_WRONLY);
				if (fd < 0 || write(fd, "5\n", 2) != 2)
					_exit(2);
				close(fd);
				sleep(1);
			}
		}
	}
	close(ready[1]);
	for (int i = 0; i < NHOLDERS; i++) {
		if (read(ready[0], &c, 1) != 1)
			bench_die("a renewing holder could not grab its lease");
	}
	close(ready[0]);
	sleep(2); /* every holder in its renewing loop */
	c0 = server_cpu_s();
	t0 = now_s();
	sleep((unsigned)window);
	c1 = server_cpu_s();
	t1 = now_s();
	for (int i = 0; i < NHOLDERS; i++) {
		int status = 0;

		if (waitpid(pids[i], &status, WNOHANG) == pids[i])
			bench_die("renewing holder %d stopped (status 0x%x): a renew failed", i, status);
	}
	for (int i = 0; i < NHOLDERS; i++)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < NHOLDERS; i++)
		waitpid(pids[i], NULL, 0);
	pct = (c1 - c0) / (t1 - t0) * 100;
	printf("BENCH l1_renew_100_server_cpu %.2f %% of one core, %d holders renewing every 1 s, "
	       "%.0f s window\n", pct, NHOLDERS, t1 - t0);
	snprintf(tx, sizeof(tx), "%.2f%%", pct);
	target_row("L1 server CPU, 100 holders renewing every second", tx, "5% (goal)", pct / 5,
		   "< 5% of a core", verdict(pct, 5, false));
}

int main(void)
{
	bool quick = bench_quick();
	char probe[1300];

	snprintf(STORE, sizeof(STORE), "%s/store", bench_dir());
	snprintf(MNT, sizeof(MNT), "%s/mnt", bench_dir());
	snprintf(NAT, sizeof(NAT), "%s/native", bench_dir());
	snprintf(LEASES, sizeof(LEASES), "%s/.txdir/leases", MNT);
	CKS(mkdir(MNT, 0755));
	CKS(mkdir(NAT, 0755));
	atexit(on_exit_cleanup);
	mount_store();
	start_janitor();
	snprintf(probe, sizeof(probe), "%s/active/%d/probe", LEASES, (int)getpid());
	if (mkdir(probe, 0755) < 0) {
		fprintf(stderr, "l1_lease: this txdirfs grants no leases (mkdir %s: %s)\n", probe,
			strerror(errno));
		exit(1);
	}
	CKS(rmdir(probe));
	grab_release(1, quick ? 200 : 2000);
	grab_release(NPROC, quick ? 50 : 300);
	const char *only = getenv("L1_ONLY");
	if (!only || strcmp(only, "grab")) {
		reclaim(quick ? 5 : 30);
		renewers(quick ? 4 : 10);
	}
	umount_store();
	return 0;
}
