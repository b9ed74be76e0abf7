/*
 * v1_vote — a two-phase-commit round through the mount (issue 11,
 * benchmarks): open a proposal with 10 participants, 10 participant
 * processes each write yes, and the coordinator reads the decision
 * (durable before it is visible: vote.h V1) from proposals/P/wait.
 *
 * Mounts its own store: $MOUNTCTL init BENCH_DIR/store, then $TXDIRFS
 * BENCH_DIR/store BENCH_DIR/mnt -f (default options: durability fsync),
 * unmounted at the end. The baseline runs on BENCH_DIR/native, on the file
 * system of the store, in the same run: the same agreement the seed's way
 * (one file per vote written with temp + fsync + rename + directory fsync;
 * the coordinator polls the directory every 100 us until the 10 votes are
 * there, then writes the decision the same durable way).
 *
 * One round (both ways): the coordinator starts the clock, creates the
 * proposal (mkdir P, write participants / mkdir d/P + fsync), wakes the 10
 * participants (each blocked on its own pipe), and stops the clock once it
 * has read the decision. Goals: P95 <= 5 ms, and >= 2x faster than native
 * (native P95 / txdir P95).
 * QUICK (BENCH_QUICK): 30 rounds instead of 300.
 */
#include <dirent.h>
#include <signal.h>

#include "bench.h"
#include "bench_mount.h"

#define NPART 10

static char NAT[1024], CONS[1200];

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

/* txdir_wal_syncs_total from .txdir/stats (the profile: WAL fsyncs per
 * round); -1 when it cannot be read. */
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

/* ---- one round -------------------------------------------------------------------- */

enum way { W_TXDIR, W_NATIVE };

static void write_all(const char *path, const char *text, bool durable_native, int dirfd)
{
	if (!durable_native) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
		    close(fd) < 0)
			bench_die("write %s: %s", path, strerror(errno));
		return;
	}
	char tmp[1400];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		bench_die("write %s: %s", tmp, strerror(errno));
	CKS(fsync(fd));
	CKS(close(fd));
	CKS(rename(tmp, path));
	CKS(fsync(dirfd));
}

/* Participant i: for each byte on its pipe (the round number follows as an
 * int), vote yes in that round's proposal. */
static void participant(enum way way, int i, int rfd)
{
	int round;
	char path[1400], dir[1300];

	while (read(rfd, &round, sizeof(round)) == (ssize_t)sizeof(round)) {
		if (way == W_TXDIR) {
			snprintf(path, sizeof(path), "%s/votes/r%d/p%d", CONS, round, i);
			write_all(path, "yes\n", false, -1);
		} else {
			snprintf(dir, sizeof(dir), "%s/r%d", NAT, round);
			snprintf(path, sizeof(path), "%s/p%d", dir, i);
			int dfd = open(dir, O_RDONLY | O_DIRECTORY);
			CKS(dfd);
			write_all(path, "yes\n", true, dfd);
			close(dfd);
		}
	}
	_exit(0);
}

static int count_votes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		bench_die("opendir %s: %s", dir, strerror(errno));
	while ((e = readdir(d)))
		n += e->d_name[0] == 'p' && !strchr(e->d_name, '.');
	closedir(d);
	return n;
}

static double round_once(enum way way, int round, const int *wfd)
{
	char p[1400], text[256];
	double t0 = now_s();

	if (way == W_TXDIR) {
		snprintf(p, sizeof(p), "%s/proposals/r%d", CONS, round);
		CKS(mkdir(p, 0755));
		snprintf(p, sizeof(p), "%s/proposals/r%d/participants", CONS, round);
		write_all(p, "p0,p1,p2,p3,p4,p5,p6,p7,p8,p9\n", false, -1);
		snprintf(p, sizeof(p), "%s/proposals/r%d/wait", CONS, round);
		int fd = open(p, O_RDONLY);
		CKS(fd);
		for (int i = 0; i < NPART; i++)
			CKS(write(wfd[i], &round, sizeof(round)));
		ssize_t n = read(fd, text, sizeof(text) - 1); /* blocks until decided */
		close(fd);
		if (n <= 0 || strncmp(text, "committed", 9) != 0)
			bench_die("round %d: decision %.*s", round, (int)(n > 0 ? n : 0), text);
	} else {
		snprintf(p, sizeof(p), "%s/r%d", NAT, round);
		CKS(mkdir(p, 0755));
		int nat = open(NAT, O_RDONLY | O_DIRECTORY), dfd = open(p, O_RDONLY | O_DIRECTORY);
		CKS(nat);
		CKS(dfd);
		CKS(fsync(nat));
		for (int i = 0; i < NPART; i++)
			CKS(write(wfd[i], &round, sizeof(round)));
		while (count_votes(p) < NPART) /* the coordinator polls */
			usleep(100);
		snprintf(p, sizeof(p), "%s/r%d/decision", NAT, round);
		write_all(p, "committed\n", true, dfd);
		close(dfd);
		close(nat);
	}
	return now_s() - t0;
}

static struct dist measure(enum way way, int rounds)
{
	int wfd[NPART];
	pid_t pids[NPART];
	double *v = calloc((size_t)rounds, sizeof(*v));

	if (!v)
		bench_die("oom");
	for (int i = 0; i < NPART; i++) {
		int p[2];
		CKS(pipe(p));
		pids[i] = fork();
		if (pids[i] == 0) {
			close(p[1]);
			for (int j = 0; j < i; j++)
				close(wfd[j]); /* else participant j never sees EOF */
			participant(way, i, p[0]);
		}
		close(p[0]);
		wfd[i] = p[1];
	}
	for (int r = 0; r < rounds; r++)
		v[r] = round_once(way, r, wfd);
	for (int i = 0; i < NPART; i++) {
		close(wfd[i]);
		waitpid(pids[i], NULL, 0);
	}
	struct dist d = dist_of(v, rounds);
	free(v);
	return d;
}

int main(void)
{
	bool quick = bench_quick();
	int rounds = quick ? 30 : 300;
	char probe[1300], a[64], b[64];

	snprintf(STORE, sizeof(STORE), "%s/store", bench_dir());
	snprintf(MNT, sizeof(MNT), "%s/mnt", bench_dir());
	snprintf(NAT, sizeof(NAT), "%s/native", bench_dir());
	snprintf(CONS, sizeof(CONS), "%s/.txdir/consensus", MNT);
	CKS(mkdir(MNT, 0755));
	CKS(mkdir(NAT, 0755));
	atexit(on_exit_cleanup);
	mount_store();
	start_janitor();
	snprintf(probe, sizeof(probe), "%s/proposals/probe", CONS);
	if (mkdir(probe, 0755) < 0) {
		fprintf(stderr, "v1_vote: this txdirfs has no votes (mkdir %s: %s)\n", probe,
			strerror(errno));
		exit(1);
	}
	CKS(rmdir(probe));
	double s0 = wal_syncs();
	struct dist t = measure(W_TXDIR, rounds);
	double s1 = wal_syncs();
	struct dist n = measure(W_NATIVE, rounds);
	report("vote_round_10", "txdir: open, 10 votes, durable decision read by wait", t);
	report("vote_round_10_native", "ext4: file per vote, temp+fsync+rename+dir fsync, polling",
	       n);
	if (s0 >= 0 && s1 >= s0)
		printf("BENCH vote_round_10_wal_syncs %.2f syncs/round txdir: WAL fsyncs per round\n",
		       (s1 - s0) / rounds);
	snprintf(a, sizeof(a), "P95 %.2f ms", t.p95 * 1e3);
	snprintf(b, sizeof(b), "-");
	target_row("2PC round, 10 participants, P95", a, b, 0, "<= 5 ms",
		   verdict(t.p95 * 1e3, 5.0, false));
	snprintf(b, sizeof(b), "P95 %.2f ms", n.p95 * 1e3);
	target_row("2PC round vs native file-per-vote", a, b, t.p95 > 0 ? n.p95 / t.p95 : 0,
		   ">= 2x", verdict(t.p95 > 0 ? n.p95 / t.p95 : 0, 2.0, true));
	umount_store();
	return 0;
}
