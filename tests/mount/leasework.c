/*
 * leasework.c — cross-process lease suite (issue 10, tests): real processes
 * grab, hold and release one lease through the mount's file interface
 * (SPEC §5 "Leases") while holders are SIGKILLed at random — and, in the
 * second phase, while txdirfs itself is SIGKILLed and remounted mid-run.
 * Everything is checked after the fact, from the workers' logs, a shared
 * counter and .txdir/leases/completed/.
 *
 *   leasework DIR         the suite: makes DIR/store (mountctl init),
 *                         starts $TXDIRFS DIR/store DIR/mnt -f, runs the
 *                         phases, unmounts. Prints "ok - ..." lines and
 *                         "N passed, N failed" last; exit 1 on a failure.
 *   leasework --worker MNT DIR ID ROUNDS
 *                         one worker (the suite fork/execs NWORKERS of
 *                         them): ROUNDS times grab lease "crit", run the
 *                         critical section, release. Even IDs grab through
 *                         the queue (mkdir waiting/PID/crit, read granted),
 *                         odd IDs by mkdir active/PID/crit, waiting on
 *                         by-name/crit/released after EEXIST.
 *
 * The critical section reads DIR/counter (a plain file outside the mount),
 * writes value+1, then appends "cs VALUE TOKEN" to its log; right after the
 * grant it appends "tok TOKEN". A worker killed between the counter write and
 * the log line leaves a gap, never a repeat, so:
 *   C1 never two holders: every VALUE logged is distinct (two holders would
 *      read the same value), and the counter's final value is between the
 *      number of logged sections and that plus the kills;
 *   C2 tokens are strictly increasing in grant order (by VALUE), across the
 *      server's restart too;
 *   C3 every grant is released exactly once: each logged token is in
 *      completed/ exactly once, and completed/ holds no token twice;
 *   C4 reclaim after a holder's SIGKILL (kill(2) until by-name/crit names
 *      another process or none) is <= 1 s at p99.
 * A request that fails because the server is gone (ENOTCONN, ECONNABORTED,
 * or ENOENT under an unmounted MNT) waits for the remount; a grab whose
 * answer was lost is looked up (active/PID/crit) before it is retried, and
 * a holder's release is retried after the remount (a live holder keeps its
 * lease across the restart: lease.h L8).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* Every path is the suite's short temp dir plus a few components. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define LEASE "crit"
#define NWORKERS 50
#define MAXTOK 100000
#define WORKER_DEADLINE_S 120

static int passed, failed;

static void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf(cond ? "ok - " : "not ok - ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (cond)
		passed++;
	else
		failed++;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "leasework: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

/* ---- the worker ------------------------------------------------------------ */

static const char *W_MNT, *W_DIR;
static int W_ID, W_LOG = -1;
static int64_t W_DEADLINE;

static void wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wlog(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(W_LOG, buf, (size_t)n) != n)
		die("worker %d: log: %s", W_ID, strerror(errno));
}

static bool gone(int err)
{
	return err == ENOTCONN || err == ECONNABORTED || err == ENOENT || err == EINTR;
}

/* Whether MNT is a live FUSE mount. statfs always reaches the server
 * (stat does not: the kernel answers it from cached attributes, even
 * on a mount whose server is dead), and a detached MNT is not FUSE. */
static bool up(void)
{
	struct statfs sf;

	return statfs(W_MNT, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC;
}

/* Until the server is back. */
static void wait_up(void)
{
	while (!up()) {
		if (now_us() > W_DEADLINE)
			die("worker %d: the mount did not come back", W_ID);
		usleep(10000);
	}
}

static void check_deadline(const char *what)
{
	if (now_us() > W_DEADLINE)
		die("worker %d: %s for over %d s", W_ID, what, WORKER_DEADLINE_S);
}

/* Reads a small file: length, or -errno. */
static ssize_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

/* The token of active/PID/crit, 0 if we do not hold it, -errno. Asked of
 * a live server: a dead or detached mount answers nothing about the
 * lease (ENOTCONN, or ENOENT from the directory under it). */
static long long held_token(void)
{
	char p[PATH_MAX], buf[64];
	ssize_t n;

	snprintf(p, sizeof(p), "%s/.txdir/leases/active/%d/%s/token", W_MNT, (int)getpid(), LEASE);
	for (;;) {
		check_deadline("reading our token");
		wait_up();
		n = read_file(p, buf, sizeof(buf));
		if (n > 0)
			return atoll(buf);
		if (n == -ENOENT && up()) /* the server says: not ours */
			return 0;
		if (n < 0 && gone((int)-n))
			continue; /* it went away meanwhile: ask the next one */
		return n < 0 ? n : -EIO;
	}
}

static long long grab_mkdir(void)
{
	char p[PATH_MAX], rel[PATH_MAX], buf[256];
	long long tok;
	int fd;

	snprintf(p, sizeof(p), "%s/.txdir/leases/active/%d/%s", W_MNT, (int)getpid(), LEASE);
	snprintf(rel, sizeof(rel), "%s/.txdir/leases/by-name/%s/released", W_MNT, LEASE);
	for (;;) {
		check_deadline("grabbing");
		if (mkdir(p, 0755) == 0) {
			tok = held_token();
			if (tok > 0)
				return tok;
			die("worker %d (pid %d): mkdir %s succeeded but its token file is "
			    "unreadable: %s", W_ID, (int)getpid(), p,
			    tok == 0 ? "No such file or directory" : strerror((int)-tok));
		}
		if (errno != EEXIST) {
			if (!gone(errno))
				die("worker %d: mkdir %s: %s", W_ID, p, strerror(errno));
			wait_up();
			if ((tok = held_token()) > 0)
				return tok; /* the answer was lost, the grant was not */
			continue;
		}
		fd = open(rel, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			/* released between mkdir and open (or no released file:
			 * then this is a polling loop, kept gentle) */
			usleep((useconds_t)(500 + rand() % 1500));
			continue;
		}
		if (read(fd, buf, sizeof(buf)) < 0 && gone(errno))
			wait_up();
		close(fd);
	}
}

static long long grab_queue(void)
{
	char p[PATH_MAX], g[PATH_MAX], buf[64];
	long long tok;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/.txdir/leases/waiting/%d/%s", W_MNT, (int)getpid(), LEASE);
	snprintf(g, sizeof(g), "%s/granted", p);
	for (;;) {
		check_deadline("waiting in the queue");
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			if (!gone(errno))
				die("worker %d: mkdir %s: %s", W_ID, p, strerror(errno));
			wait_up();
			if ((tok = held_token()) > 0)
				return tok;
			continue;
		}
		n = read_file(g, buf, sizeof(buf));
		if (n > 0 && atoll(buf) > 0)
			return atoll(buf);
		if (n == -EAGAIN) { /* granted does not block here: poll */
			usleep((useconds_t)(1000 + rand() % 2000));
			continue;
		}
		/* the server went away (a restart forgets waiters) or the
		 * entry was granted and went: look before queueing again */
		if (n < 0 && gone((int)-n))
			wait_up();
		if ((tok = held_token()) > 0)
			return tok;
		if (n >= 0 || !gone((int)-n))
			die("worker %d: read %s: %s", W_ID, g, n < 0 ? strerror((int)-n) : "empty");
	}
}

/* completed/TOKEN records a release by this process. */
static bool released_by_us(long long tok)
{
	char p[PATH_MAX], buf[4096];
	cJSON *doc, *how, *by;
	bool ours;

	snprintf(p, sizeof(p), "%s/.txdir/leases/completed/%lld", W_MNT, tok);
	if (read_file(p, buf, sizeof(buf)) <= 0)
		return false;
	doc = cJSON_Parse(buf);
	how = cJSON_GetObjectItemCaseSensitive(doc, "how");
	by = cJSON_GetObjectItemCaseSensitive(doc, "by_pid");
	ours = cJSON_IsString(how) && strcmp(how->valuestring, "release") == 0 &&
	       cJSON_IsNumber(by) && (pid_t)by->valuedouble == getpid();
	cJSON_Delete(doc);
	return ours;
}

static void release(long long tok)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/.txdir/leases/active/%d/%s", W_MNT, (int)getpid(), LEASE);
	while (rmdir(p) < 0) {
		int rm_err = errno;
		long long now;

		check_deadline("releasing");
		if (!gone(rm_err))
			die("worker %d: rmdir %s: %s", W_ID, p, strerror(rm_err));
		wait_up();
		if ((now = held_token()) != tok) {
			/* our rmdir may have been carried out with its answer
			 * lost: then completed/TOKEN says we released it */
			if (!released_by_us(tok)) /* released while we held it */
				wlog("lost %lld (rmdir: %s; then active/%d/%s/token: %lld)\n", tok,
				     strerror(rm_err), (int)getpid(), LEASE, now);
			return;
		}
	}
}

static int worker(int argc, char **argv)
{
	char path[PATH_MAX], buf[64];
	int rounds, fd;
	ssize_t n;

	if (argc != 6)
		die("usage: leasework --worker MNT DIR ID ROUNDS");
	W_MNT = argv[2];
	W_DIR = argv[3];
	W_ID = atoi(argv[4]);
	rounds = atoi(argv[5]);
	W_DEADLINE = now_us() + (int64_t)WORKER_DEADLINE_S * 1000000;
	srand((unsigned)(getpid() ^ now_us()));
	snprintf(path, sizeof(path), "%s/log.%d", W_DIR, W_ID);
	W_LOG = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (W_LOG < 0)
		die("worker %d: %s: %s", W_ID, path, strerror(errno));
	snprintf(path, sizeof(path), "%s/counter", W_DIR);
	for (int r = 0; r < rounds; r++) {
		long long tok = W_ID % 2 ? grab_mkdir() : grab_queue(), c;

		wlog("tok %lld\n", tok);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 || (n = pread(fd, buf, sizeof(buf) - 1, 0)) < 0)
			die("worker %d: counter: %s", W_ID, strerror(errno));
		buf[n] = '\0';
		c = atoll(buf);
		usleep((useconds_t)(rand() % 300)); /* widen any overlap */
		n = snprintf(buf, sizeof(buf), "%lld\n", c + 1);
		if (pwrite(fd, buf, (size_t)n, 0) != n || ftruncate(fd, n) < 0)
			die("worker %d: counter write: %s", W_ID, strerror(errno));
		close(fd);
		wlog("cs %lld %lld\n", c, tok);
		release(tok);
	}
	return 0;
}

/* ---- the suite: server ----------------------------------------------------------- */

static char DIR_[PATH_MAX], STORE[PATH_MAX], MNT[PATH_MAX];
static pid_t server = -1;

static bool mounted(void)
{
	char p[PATH_MAX];
	struct stat a, b;

	snprintf(p, sizeof(p), "%s/.txdir", MNT);
	return stat(DIR_, &a) == 0 && stat(MNT, &b) == 0 && a.st_dev != b.st_dev &&
	       stat(p, &b) == 0;
}

static int run(char *const argv[])
{
	int status;
	pid_t p = fork();

	if (p == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (p < 0 || waitpid(p, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool start_server(void)
{
	const char *bin = getenv("TXDIRFS");
	char log[PATH_MAX];

	snprintf(log, sizeof(log), "%s/server.log", DIR_);
	server = fork();
	if (server == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(bin, bin, STORE, MNT, "-f", (char *)NULL);
		_exit(127);
	}
	if (server > 0) { /* for run.sh's cleanup if the suite itself is killed */
		char pidf[PATH_MAX];
		FILE *f;

		snprintf(pidf, sizeof(pidf), "%s/server.pid", DIR_);
		f = fopen(pidf, "w");
		if (f) {
			fprintf(f, "%d\n", (int)server);
			fclose(f);
		}
	}
	for (int i = 0; i < 400; i++) {
		if (mounted())
			return true;
		if (waitpid(server, NULL, WNOHANG) == server) {
			server = -1;
			return false;
		}
		usleep(50000);
	}
	return false;
}

static void unmount(void)
{
	char *u[] = {"fusermount3", "-u", MNT, NULL}, *uz[] = {"fusermount3", "-uz", MNT, NULL};

	if (run(u) != 0)
		run(uz);
}

static void kill_server(void)
{
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	server = -1;
	unmount();
}

static void stop_server(void)
{
	if (server < 0)
		return;
	unmount();
	for (int i = 0; i < 200 && waitpid(server, NULL, WNOHANG) != server; i++)
		usleep(50000);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	server = -1;
}

/* ---- the suite: a phase ------------------------------------------------------------ */

struct phase {
	const char *name;
	int rounds, kills;
	bool kill_server;
	/* results */
	pid_t pid[NWORKERS];
	bool killed[NWORKERS];
	int nkilled;
	int64_t reclaim_us[NWORKERS];
	int nreclaim;
};

/* The holder of crit: the PID with active/PID/crit (not by-name/crit's
 * target, which a kernel caching symlinks may show stale), or 0. */
static int holder_pid(void)
{
	char p[PATH_MAX], q[PATH_MAX];
	struct dirent *de;
	struct stat st;
	int found = 0;
	DIR *d;

	snprintf(p, sizeof(p), "%s/.txdir/leases/active", MNT);
	d = opendir(p);
	while (d && !found && (de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(q, sizeof(q), "%s/%s/%s", p, de->d_name, LEASE);
		if (stat(q, &st) == 0)
			found = atoi(de->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

static int find_worker(struct phase *ph, pid_t pid)
{
	for (int i = 0; i < NWORKERS; i++) {
		if (ph->pid[i] == pid && !ph->killed[i])
			return i;
	}
	return -1;
}

static long long read_counter(void)
{
	char p[PATH_MAX], buf[64];
	FILE *f;
	long long c = -1;

	snprintf(p, sizeof(p), "%s/counter", DIR_);
	f = fopen(p, "r");
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			c = atoll(buf);
		fclose(f);
	}
	return c;
}

/* SIGKILL the current holder (one of ours) and time the reclaim. */
static void kill_holder(struct phase *ph)
{
	int pid = holder_pid(), i = pid ? find_worker(ph, pid) : -1;
	int64_t t0, lat = -1;
	char dir[PATH_MAX];
	struct stat st;

	if (i < 0)
		return;
	/* reclaimed: by-name/crit is gone or another process holds it
	 * (active/PID/ itself goes with the process, before the reclaim) */
	snprintf(dir, sizeof(dir), "%s/.txdir/leases/by-name/%s", MNT, LEASE);
	kill(pid, SIGKILL);
	t0 = now_us();
	ph->killed[i] = true;
	ph->nkilled++;
	while (now_us() - t0 < 5000000) {
		if (lstat(dir, &st) < 0 || holder_pid() != pid) {
			lat = now_us() - t0;
			break;
		}
		usleep(500);
	}
	ph->reclaim_us[ph->nreclaim++] = lat < 0 ? 5000000 : lat;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

struct cs {
	long long value, token;
};

static int cmp_cs(const void *a, const void *b)
{
	const struct cs *x = a, *y = b;
	return x->value < y->value ? -1 : x->value > y->value;
}

/* A completed record's token (info.json, token, or a JSON file), or -1. */
static long long completed_token(const char *dir, const char *ent, char *name, size_t nlen)
{
	char p[PATH_MAX], buf[8192];
	long long tok = -1;
	cJSON *doc, *t, *n;
	ssize_t r;
	int fd;

	*name = '\0';
	snprintf(p, sizeof(p), "%s/%s/info.json", dir, ent);
	fd = open(p, O_RDONLY);
	if (fd < 0) {
		snprintf(p, sizeof(p), "%s/%s", dir, ent);
		fd = open(p, O_RDONLY);
	}
	if (fd < 0)
		return -1;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	doc = cJSON_Parse(buf);
	t = cJSON_GetObjectItemCaseSensitive(doc, "token");
	n = cJSON_GetObjectItemCaseSensitive(doc, "name");
	if (cJSON_IsNumber(t))
		tok = (long long)t->valuedouble;
	else if (cJSON_IsString(t))
		tok = atoll(t->valuestring);
	if (cJSON_IsString(n))
		snprintf(name, nlen, "%s", n->valuestring);
	cJSON_Delete(doc);
	return tok;
}

static void check_phase(struct phase *ph)
{
	static struct cs cs[NWORKERS * 64];
	static unsigned char seen[MAXTOK], done[MAXTOK];
	char p[PATH_MAX], line[128], name[300];
	int ncs = 0, ntok = 0, dup_values = 0, order_bad = 0, missing = 0, twice = 0, lost = 0;
	int ncompleted = 0;
	long long counter = read_counter(), tmax = 0;
	struct dirent *de;
	DIR *d;

	memset(seen, 0, sizeof(seen));
	memset(done, 0, sizeof(done));
	for (int i = 0; i < NWORKERS; i++) {
		FILE *f;

		snprintf(p, sizeof(p), "%s/log.%d", DIR_, i);
		f = fopen(p, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			long long a, b;

			if (sscanf(line, "cs %lld %lld", &a, &b) == 2 && ncs < (int)(sizeof(cs) / sizeof(cs[0]))) {
				cs[ncs].value = a;
				cs[ncs++].token = b;
			} else if (sscanf(line, "tok %lld", &a) == 1 && a > 0 && a < MAXTOK) {
				seen[a] = 1;
				ntok++;
				tmax = a > tmax ? a : tmax;
			} else if (strncmp(line, "lost", 4) == 0) {
				lost++;
			}
		}
		fclose(f);
	}
	qsort(cs, (size_t)ncs, sizeof(cs[0]), cmp_cs);
	for (int i = 1; i < ncs; i++) {
		if (cs[i].value == cs[i - 1].value)
			dup_values++;
		if (cs[i].token <= cs[i - 1].token)
			order_bad++;
	}
	check(dup_values == 0 && counter >= ncs && counter <= ncs + ph->nkilled,
	      "%s: C1 never two holders: %d critical sections, counter %lld (kills %d), %d "
	      "values read twice", ph->name, ncs, counter, ph->nkilled, dup_values);
	check(order_bad == 0 && ncs > 0,
	      "%s: C2 tokens strictly increasing in grant order (%d out of order)", ph->name,
	      order_bad);
	check(lost == 0, "%s: no holder lost its lease (%d lost)", ph->name, lost);

	snprintf(p, sizeof(p), "%s/.txdir/leases/completed", MNT);
	d = opendir(p);
	while (d && (de = readdir(d))) {
		long long t;

		if (de->d_name[0] == '.')
			continue;
		t = completed_token(p, de->d_name, name, sizeof(name));
		if (t <= 0 || t >= MAXTOK || (*name && strcmp(name, LEASE) != 0))
			continue;
		ncompleted++;
		if (done[t])
			twice++;
		done[t] = 1;
	}
	if (d)
		closedir(d);
	for (long long t = 1; t <= tmax; t++) {
		if (seen[t] && !done[t])
			missing++;
	}
	check(d && twice == 0 && missing == 0 && ntok > 0,
	      "%s: C3 every grant released exactly once: %d grants logged, %d completed "
	      "records, %d missing, %d twice", ph->name, ntok, ncompleted, missing, twice);
	if (ph->nreclaim > 0) {
		int64_t *v = ph->reclaim_us;
		int n = ph->nreclaim, i99 = (n * 99 + 99) / 100 - 1;

		qsort(v, (size_t)n, sizeof(v[0]), cmp_i64);
		check(v[i99] <= 1000000,
		      "%s: C4 reclaim after SIGKILL of a holder: p50 %.1f ms, p99 %.1f ms, max "
		      "%.1f ms over %d kills (goal p99 <= 1 s)", ph->name, v[n / 2] / 1e3,
		      v[i99] / 1e3, v[n - 1] / 1e3, n);
	} else {
		check(false, "%s: C4 no holder was killed (the run was too short?)", ph->name);
	}
}

static void run_phase(struct phase *ph, const char *self)
{
	char rounds[16], id[16], p[PATH_MAX];
	int alive = NWORKERS, total = NWORKERS * ph->rounds;
	bool server_killed = false;
	int64_t deadline = now_us() + 150 * 1000000LL;

	for (int i = 0; i < NWORKERS; i++) {
		snprintf(p, sizeof(p), "%s/log.%d", DIR_, i);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/counter", DIR_);
	FILE *f = fopen(p, "w");
	if (!f)
		die("%s: %s", p, strerror(errno));
	fputs("0\n", f);
	fclose(f);
	snprintf(rounds, sizeof(rounds), "%d", ph->rounds);
	for (int i = 0; i < NWORKERS; i++) {
		snprintf(id, sizeof(id), "%d", i);
		ph->pid[i] = fork();
		if (ph->pid[i] == 0) {
			execl(self, self, "--worker", MNT, DIR_, id, rounds, (char *)NULL);
			_exit(127);
		}
	}
	while (alive > 0 && now_us() < deadline) {
		int status;
		pid_t p2;

		while ((p2 = waitpid(-1, &status, WNOHANG)) > 0) {
			for (int i = 0; i < NWORKERS; i++) {
				if (ph->pid[i] != p2)
					continue;
				alive--;
				if (!ph->killed[i] && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
					check(false, "%s: worker %d exited with status %d", ph->name, i,
					      status);
			}
		}
		if (ph->kill_server && !server_killed && read_counter() >= total / 3) {
			kill_server();
			server_killed = true;
			check(start_server(), "%s: txdirfs SIGKILLed with %lld sections done and "
			      "mounted again", ph->name, read_counter());
		}
		if (ph->nkilled < ph->kills && rand() % 4 == 0)
			kill_holder(ph);
		usleep((useconds_t)(2000 + rand() % 20000));
	}
	if (alive > 0) {
		check(false, "%s: %d workers still running after 150 s: killed", ph->name, alive);
		for (int i = 0; i < NWORKERS; i++)
			kill(ph->pid[i], SIGKILL);
		while (wait(NULL) > 0)
			;
	}
	/* the last killed holder's lease may still be in reclaim */
	for (int i = 0; i < 200 && holder_pid() != 0; i++)
		usleep(10000);
	check_phase(ph);
}

int main(int argc, char **argv)
{
	static struct phase plain = {.name = "holders killed", .rounds = 8, .kills = 15};
	static struct phase crash = {.name = "holders and server killed", .rounds = 6,
				     .kills = 10, .kill_server = true};
	char self[PATH_MAX], leases[PATH_MAX];
	const char *mc = getenv("MOUNTCTL");
	ssize_t n;

	if (argc > 1 && strcmp(argv[1], "--worker") == 0)
		return worker(argc, argv);
	if (argc != 2 || !getenv("TXDIRFS") || !mc)
		die("usage: TXDIRFS=... MOUNTCTL=... leasework DIR");
	setvbuf(stdout, NULL, _IOLBF, 0);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		die("/proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	snprintf(DIR_, sizeof(DIR_), "%s", argv[1]);
	snprintf(STORE, sizeof(STORE), "%s/store", DIR_);
	snprintf(MNT, sizeof(MNT), "%s/mnt", DIR_);
	mkdir(MNT, 0755);
	srand((unsigned)now_us());
	{
		char *init[] = {(char *)mc, "init", STORE, NULL};

		if (run(init) != 0)
			die("mountctl init %s failed", STORE);
	}
	if (!start_server())
		die("txdirfs did not mount %s (see %s/server.log)", MNT, DIR_);
	snprintf(leases, sizeof(leases), "%s/.txdir/leases/active/%d/probe", MNT, (int)getpid());
	if (mkdir(leases, 0755) < 0) {
		check(false, "this txdirfs grants leases (mkdir %s: %s)", leases, strerror(errno));
	} else {
		rmdir(leases);
		run_phase(&plain, self);
		run_phase(&crash, self);
	}
	stop_server();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
