/*
 * cmd_lease.c — `mountctl lease MNT NAME [-n | -w SECS] [-E CODE] [--ttl S]
 * -- CMD ...` (flock(1) for a txdir lease), `mountctl lease list MNT
 * [--json]` and `mountctl lease break MNT NAME` (SPEC §2, §5 "Leases").
 *
 * Everything goes through the file interface of MNT/.txdir/leases:
 *   active/PID/NAME          mkdir grabs NAME for PID (EEXIST while held),
 *                            rmdir releases; files token, ttl, owner, ...
 *   waiting/PID/NAME         mkdir queues PID for NAME (EDEADLK: a cycle);
 *     granted                read blocks until granted, prints the token
 *   by-name/NAME             symlink to the holder's directory;
 *     released               read blocks until that grant ends
 *
 * Why the lease is CMD's and not mountctl's: flock(1)'s lock lives in a
 * descriptor CMD inherits, so killing flock does not free it while CMD
 * runs. Here the holder is a process, so mountctl forks first, the child
 * waits on a pipe (the barrier), mountctl grabs active/CHILD/NAME — or
 * queues waiting/CHILD/NAME and reads granted — and only then sends the
 * token down the pipe; the child exports TXDIR_LEASE_TOKEN and execs CMD.
 * kill -9 of mountctl leaves CMD holding its lease (released at CMD's
 * death by the server); mountctl dying before the barrier closes the pipe,
 * and the child exits without running CMD (its grab or wait is then
 * released or withdrawn at its death).
 *
 * While CMD runs, mountctl renews a --ttl at ttl/3 (writes ttl), checks the
 * grant (its token file) once a second without one, and a thread waits on
 * by-name/NAME/released to hear of a break at once. A lost lease (broken,
 * expired, released by someone else; a TTL that could not be renewed for a
 * whole TTL) gets CMD a SIGTERM, and mountctl exits 122 once CMD is gone.
 * When CMD exits, mountctl releases the lease (rmdir) before reaping CMD,
 * so the pid cannot be reused meanwhile.
 *
 * Deadlock: the server refuses a queue entry that closes a cycle (EDEADLK);
 * since mountctl's waiter is always a fresh child, it also checks the
 * cycles that go through process ancestry (see would_deadlock()).
 *
 * Exit: CMD's code, 128+n if CMD was killed by signal n; busy (-n) or
 * timed out (-w) 1 or -E CODE; lease lost 122; EDEADLK 123; CMD cannot run /
 * not found 126/127 (as env(1)); mountctl's own errors (usage included) 125.
 * Each failure of mountctl's own says why in one line on stderr.
 * SIGINT/SIGTERM/SIGHUP sent to mountctl while CMD runs go to CMD; while it
 * waits for the lease they end mountctl (and so the wait).
 *
 * list: each active/PID/NAME with its token, ttl, expires and owner files;
 * --json prints {"leases":[info.json of each, with "name" and "pid"]}.
 * break: unlink(by-name/NAME) asks the server to break the grant (recorded
 * as a break by the caller); a server that refuses unlink there gets rmdir
 * of the holder's directory instead (recorded as a release by the caller).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

#define LEASE_EXIT_BUSY 1
#define LEASE_EXIT_LOST 122
#define LEASE_EXIT_DEADLK 123
#define LEASE_CHECK_MS 1000    /* grant check without a TTL */
#define LEASE_TTL_MAX 31536000 /* a year, in seconds */
#define LEASE_TOKEN_MAX 32

struct lease_opts {
	char *mnt;          /* absolute mount point */
	const char *name;   /* the lease */
	bool nonblock;      /* -n */
	double wait_s;      /* -w; < 0: wait forever */
	int busy_code;      /* -E */
	long ttl_s;         /* --ttl; 0: none */
	char **argv;        /* CMD */
};

/* ---- paths and small file operations ------------------------------------ */

/* MNT/.txdir/leases/ + printf-formatted rest. Caller frees; never NULL. */
static char *lpath(const char *mnt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *lpath(const char *mnt, const char *fmt, ...)
{
	char *rest, *out;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rest, fmt, ap) < 0)
		rest = NULL;
	va_end(ap);
	if (!rest || asprintf(&out, "%s/.txdir/leases/%s", mnt, rest) < 0) {
		fprintf(stderr, "mountctl: out of memory\n");
		abort();
	}
	free(rest);
	return out;
}

/* Reads up to len-1 bytes of path into buf (NUL-terminated, trailing
 * newline removed). Blocking (no deadline): bytes read or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	do
		n = read(fd, buf, len - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return n;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return n;
}

/* Writes text to path in one write(2): 0 or -errno. */
static int write_small(const char *path, const char *text)
{
	size_t len = strlen(text);
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

static bool server_gone(int err)
{
	return err == -ENOTCONN || err == -ECONNABORTED;
}

/* The mount must be a txdir mount with leases. 0 or an exit code. */
static int check_mount(const char *cmd, const char *mnt, int own_code)
{
	int st = mc_mnt_state(mnt);
	char *dir;
	struct stat sb;

	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd, mnt, st);
		return own_code;
	}
	dir = lpath(mnt, "active");
	st = stat(dir, &sb);
	free(dir);
	if (st < 0) {
		mc_err(cmd, "%s: this txdirfs has no .txdir/leases/active (no lease support)", mnt);
		return own_code;
	}
	return 0;
}

/* NAME's holder: the PID with an active/PID/NAME, or 0. The by-name/NAME
 * symlink says the same, but a kernel that caches symlink targets may show
 * a past holder's there, so mountctl looks in active/ itself. */
static pid_t find_holder(const char *mnt, const char *name)
{
	char *p = lpath(mnt, "active"), *q;
	DIR *d = opendir(p);
	struct dirent *de;
	struct stat st;
	pid_t found = 0;

	while (d && !found && (de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		q = lpath(mnt, "active/%s/%s", de->d_name, name);
		if (stat(q, &st) == 0)
			found = (pid_t)atoi(de->d_name);
		free(q);
	}
	if (d)
		closedir(d);
	free(p);
	return found;
}

/* "token 7, owner pid=... command=..." of holder's grant of NAME. */
static void describe_holder(const char *mnt, const char *name, pid_t holder, char *buf,
			    size_t len)
{
	char *p = lpath(mnt, "active/%d/%s/token", (int)holder, name);
	char token[LEASE_TOKEN_MAX] = "?", owner[512] = "";

	read_small(p, token, sizeof(token));
	free(p);
	p = lpath(mnt, "active/%d/%s/owner", (int)holder, name);
	read_small(p, owner, sizeof(owner));
	free(p);
	snprintf(buf, len, "token %s%s%s", token, *owner ? ", owner " : "", owner);
}

/* ---- options --------------------------------------------------------------- */

static bool parse_secs(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0 || v > 1e9)
		return false;
	*out = v;
	return true;
}

/* argv[0..dd) are mountctl's, argv(dd..] is CMD. -1 to go on, else the
 * exit code (usage errors are 125: CMD's codes own the rest). */
static int parse_opts(const struct mc_cmd *cmd, int argc, char **argv, struct lease_opts *o)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"nonblock", no_argument, NULL, 'n'},
		{"nb", no_argument, NULL, 'n'},
		{"wait", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 'w'},
		{"conflict-exit-code", required_argument, NULL, 'E'},
		{"ttl", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	int c, dd = 1;
	long v;

	while (dd < argc && strcmp(argv[dd], "--") != 0)
		dd++;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(dd, argv, "hnw:E:", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		case 'n':
			o->nonblock = true;
			break;
		case 'w':
			if (!parse_secs(optarg, &o->wait_s)) {
				mc_usage(cmd, "-w: a number of seconds");
				return MC_EXIT_OWN;
			}
			break;
		case 'E':
			if (!mc_parse_long(optarg, 0, 255, &v)) {
				mc_usage(cmd, "-E: an exit code from 0 to 255");
				return MC_EXIT_OWN;
			}
			o->busy_code = (int)v;
			break;
		case 't':
			if (!mc_parse_long(optarg, 1, LEASE_TTL_MAX, &o->ttl_s)) {
				mc_usage(cmd, "--ttl: whole seconds from 1 to 31536000");
				return MC_EXIT_OWN;
			}
			break;
		default:
			mc_usage(cmd, "unknown option");
			return MC_EXIT_OWN;
		}
	}
	if (o->nonblock && o->wait_s >= 0) {
		mc_usage(cmd, "-n and -w exclude each other");
		return MC_EXIT_OWN;
	}
	if (dd - optind < 2 || dd == argc || dd == argc - 1 || dd - optind > 2) {
		mc_usage(cmd, dd - optind < 2 ? "missing MNT or NAME"
			 : dd == argc ? "missing -- before CMD"
			 : dd - optind > 2 ? "too many arguments before --" : "missing CMD after --");
		return MC_EXIT_OWN;
	}
	o->name = argv[optind + 1];
	if (!mc_coord_name_ok(o->name)) {
		mc_usage(cmd, "NAME: 1 to 255 bytes, no '/', whitespace or control characters, "
			      "not . or ..");
		return MC_EXIT_OWN;
	}
	o->mnt = mc_abspath(argv[optind]);
	if (!o->mnt) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(errno));
		return MC_EXIT_OWN;
	}
	o->argv = argv + dd + 1;
	return -1;
}

/* ---- the child: barrier, then CMD ----------------------------------------- */

static sigset_t saved_mask; /* the caller's mask, restored for CMD */

static void held_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGUSR1);
}

/* Waits for the token on rfd; EOF (mountctl gave up or died) ends the
 * child without running CMD. */
static void __attribute__((noreturn)) child_main(int rfd, char **argv)
{
	char token[LEASE_TOKEN_MAX + 1], *base = strrchr(argv[0], '/');
	size_t got = 0;
	ssize_t n;

	sigprocmask(SIG_SETMASK, &saved_mask, NULL);
	/* owner shows the command the lease is for, not "mountctl" */
	prctl(PR_SET_NAME, base ? base + 1 : argv[0], 0, 0, 0);
	while (got < LEASE_TOKEN_MAX && (n = read(rfd, token + got, LEASE_TOKEN_MAX - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			_exit(MC_EXIT_OWN);
		got += (size_t)n;
		if (token[got - 1] == '\n')
			break;
	}
	if (got == 0 || token[got - 1] != '\n')
		_exit(MC_EXIT_OWN);
	token[got - 1] = '\0';
	close(rfd);
	setenv("TXDIR_LEASE_TOKEN", token, 1);
	execvp(argv[0], argv);
	mc_err("lease", "%s: %s", argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

/* ---- grabbing ------------------------------------------------------------------ */

static volatile sig_atomic_t alarm_fired;

static void on_alarm(int sig)
{
	(void)sig;
	alarm_fired = 1;
}

/* Reads the token of a grant just made. 0 or -errno. */
static int read_token(const struct lease_opts *o, pid_t holder, char *token)
{
	char *p = lpath(o->mnt, "active/%d/%s/token", (int)holder, o->name);
	ssize_t n = read_small(p, token, LEASE_TOKEN_MAX);

	free(p);
	if (n == 0)
		return -EIO;
	return n < 0 ? (int)n : 0;
}

/* -n: one test-and-set. 0 held, else an exit code (said why). */
static int grab_now(const struct lease_opts *o, pid_t holder, char *token)
{
	char *p = lpath(o->mnt, "active/%d/%s", (int)holder, o->name), who[640];
	int r = mkdir(p, 0755) < 0 ? -errno : 0;

	free(p);
	if (r == -EEXIST) {
		describe_holder(o->mnt, o->name, find_holder(o->mnt, o->name), who, sizeof(who));
		mc_err("lease", "%s is busy: held (%s)", o->name, who);
		return o->busy_code;
	}
	if (r == 0)
		r = read_token(o, holder, token);
	if (r == 0)
		return 0;
	if (r == -EDEADLK) {
		mc_err("lease", "%s: waiting would deadlock (EDEADLK)", o->name);
		return LEASE_EXIT_DEADLK;
	}
	mc_err("lease", "cannot grab %s on %s: %s", o->name, o->mnt, strerror(-r));
	return MC_EXIT_OWN;
}

/* Arms SIGALRM after secs, then every 50 ms: a signal that lands just
 * before the blocking read is not lost, the next one interrupts it. */
static void arm_alarm(double secs)
{
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
	struct itimerval it = {{0, 50000}, {0, 0}};

	sigaction(SIGALRM, &sa, NULL);
	alarm_fired = 0;
	if (secs < 0)
		return;
	it.it_value.tv_sec = (time_t)secs;
	it.it_value.tv_usec = (suseconds_t)((secs - (double)(time_t)secs) * 1e6);
	if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
		it.it_value.tv_usec = 1;
	setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm_alarm(void)
{
	struct itimerval it = {{0, 0}, {0, 0}};

	setitimer(ITIMER_REAL, &it, NULL);
	signal(SIGALRM, SIG_IGN);
}

/* Blocks in granted until the token comes or the alarm fires: 0 (token
 * set), -ETIMEDOUT, or -errno. */
static int read_granted(const char *path, char *token)
{
	ssize_t n;
	int fd;

	while (!alarm_fired) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == EAGAIN)
			usleep(20000); /* a server whose granted does not block: poll */
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		n = read(fd, token, LEASE_TOKEN_MAX - 1);
		if (n < 0)
			n = -errno;
		close(fd);
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN) {
			/* a server whose granted does not block: poll, gently */
			usleep(20000);
			continue;
		}
		if (n < 0)
			return (int)n;
		token[n] = '\0';
		while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == ' '))
			token[--n] = '\0';
		return n > 0 ? 0 : -EIO;
	}
	return -ETIMEDOUT;
}

/* ---- deadlock: the server's wait-for graph, seen with process ancestry ----
 *
 * The server refuses (EDEADLK) a wait that closes a cycle among the
 * processes that hold and wait. But mountctl always waits as a fresh child,
 * which holds nothing: crossed nested commands (`lease a -- ... lease b`
 * against `lease b -- ... lease a`), or a nested wait for the lease an
 * outer command holds, never close a cycle there, since the holder of the
 * outer lease is not the process that waits. So after queueing, mountctl
 * walks the tree itself, taking a process to wait for what its descendants
 * wait for (a parent waiting on its child, as a nested command's is): from
 * NAME's holder, through the leases its descendants wait for, up to
 * LEASE_DL_DEPTH leases; reaching a holder that is this command's ancestor
 * is a deadlock (123). Two commands that queue at the same instant may
 * both see it, and both give up: never neither. */
#define LEASE_DL_DEPTH 16

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *s;
	int ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (s = strrchr(buf, ')')))
		sscanf(s + 2, "%*c %d", &ppid);
	fclose(f);
	return ppid;
}

/* pid is anc or a descendant of it. */
static bool descends(pid_t pid, pid_t anc)
{
	for (int i = 0; i < 64 && pid > 1; i++, pid = parent_of(pid)) {
		if (pid == anc)
			return true;
	}
	return false;
}

/* Calls fn(arg, pid, name) for every wait in waiting/PID/NAME. */
static void each_wait(const char *mnt, void (*fn)(void *, pid_t, const char *), void *arg)
{
	char *p = lpath(mnt, "waiting"), *q;
	DIR *d = opendir(p), *e;
	struct dirent *de, *ne;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		q = lpath(mnt, "waiting/%s", de->d_name);
		e = opendir(q);
		while (e && (ne = readdir(e))) {
			if (ne->d_name[0] != '.')
				fn(arg, (pid_t)atoi(de->d_name), ne->d_name);
		}
		if (e)
			closedir(e);
		free(q);
	}
	if (d)
		closedir(d);
	free(p);
}

struct dl_walk {
	char names[LEASE_DL_DEPTH][256];
	int n;
	pid_t holder; /* whose descendants' waits are being collected */
	pid_t self;   /* our waiter, not followed */
};

static void dl_collect(void *arg, pid_t waiter, const char *name)
{
	struct dl_walk *w = arg;

	if (waiter == w->self || w->n >= LEASE_DL_DEPTH || !descends(waiter, w->holder))
		return;
	for (int i = 0; i < w->n; i++) {
		if (strcmp(w->names[i], name) == 0)
			return;
	}
	snprintf(w->names[w->n++], sizeof(w->names[0]), "%s", name);
}

/* Would child's wait for o->name deadlock? The lease and holder that close
 * the cycle in *at / *holder. */
static bool would_deadlock(const struct lease_opts *o, pid_t child, const char **at,
			   pid_t *holder)
{
	static struct dl_walk w;

	memset(&w, 0, sizeof(w));
	w.self = child;
	snprintf(w.names[w.n++], sizeof(w.names[0]), "%s", o->name);
	for (int i = 0; i < w.n; i++) {
		pid_t h = find_holder(o->mnt, w.names[i]);

		if (!h || (i == 0 && h == child))
			continue; /* free, or already granted to us */
		if (descends(child, h)) {
			*at = w.names[i];
			*holder = h;
			return true;
		}
		w.holder = h;
		each_wait(o->mnt, dl_collect, &w);
	}
	return false;
}

/* -w / default: the queue. 0 held, else an exit code (said why). */
static int grab_queued(const struct lease_opts *o, pid_t holder, char *token)
{
	char *wdir = lpath(o->mnt, "waiting/%d/%s", (int)holder, o->name);
	char *granted = lpath(o->mnt, "waiting/%d/%s/granted", (int)holder, o->name);
	char who[640];
	sigset_t set;
	int r;

	r = mkdir(wdir, 0755) < 0 ? -errno : 0;
	if (r == -EDEADLK) {
		mc_err("lease", "%s: waiting would deadlock (EDEADLK; the cycle is in "
		       "%s/.txdir/events)", o->name, o->mnt);
		r = LEASE_EXIT_DEADLK;
		goto out_free;
	}
	if (r < 0) {
		mc_err("lease", "cannot queue for %s on %s: %s", o->name, o->mnt, strerror(-r));
		r = MC_EXIT_OWN;
		goto out_free;
	}
	{
		const char *at;
		pid_t by;

		if (would_deadlock(o, holder, &at, &by)) {
			rmdir(wdir);
			if (strcmp(at, o->name) == 0)
				mc_err("lease", "waiting for %s would deadlock (EDEADLK): it is held by "
				       "pid %d, which runs this command", o->name, (int)by);
			else
				mc_err("lease", "waiting for %s would deadlock (EDEADLK): its holder "
				       "waits, through its descendants, for %s, held by pid %d, which "
				       "runs this command", o->name, at, (int)by);
			r = LEASE_EXIT_DEADLK;
			goto out_free;
		}
	}
	/* The wait may be cut short by the timer, or by SIGINT/SIGTERM/SIGHUP
	 * ending mountctl (the child then exits and the server withdraws it). */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	arm_alarm(o->wait_s);
	r = read_granted(granted, token);
	disarm_alarm();
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (r == -ETIMEDOUT) {
		/* withdraw; ENOENT: granted meanwhile (the entry went), then we hold it */
		if (rmdir(wdir) < 0 && errno == ENOENT && read_token(o, holder, token) == 0) {
			r = 0;
			goto out_free;
		}
		describe_holder(o->mnt, o->name, find_holder(o->mnt, o->name), who, sizeof(who));
		mc_err("lease", "%s: timed out after %gs waiting (held: %s)", o->name, o->wait_s, who);
		r = o->busy_code;
	} else if (r < 0) {
		mc_err("lease", "waiting for %s on %s failed: %s", o->name, o->mnt, strerror(-r));
		rmdir(wdir);
		r = MC_EXIT_OWN;
	}
out_free:
	free(granted);
	free(wdir);
	return r;
}

/* ---- holding ------------------------------------------------------------------- */

struct hold {
	const struct lease_opts *o;
	pid_t child;
	char token[LEASE_TOKEN_MAX];
	char *dir;          /* active/CHILD/NAME */
	int released_fd;    /* by-name/NAME/released, read by the watcher; -1 none */
	char released[256]; /* what the watcher read */
	int64_t last_ok_ms; /* last successful renew or check */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The watcher: blocks until the grant ends, then tells mountctl (SIGUSR1,
 * blocked in every thread, taken by sigtimedwait). */
static void *watch_released(void *arg)
{
	struct hold *h = arg;
	ssize_t n;

	do
		n = read(h->released_fd, h->released, sizeof(h->released) - 1);
	while (n < 0 && errno == EINTR);
	if (n >= 0) {
		h->released[n] = '\0';
		while (n > 0 && h->released[n - 1] == '\n')
			h->released[--n] = '\0';
		kill(getpid(), SIGUSR1);
	}
	return NULL;
}

static void start_watcher(struct hold *h)
{
	char *p = mc_join(h->dir, "released");
	pthread_t t;

	h->released_fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (h->released_fd < 0) {
		p = lpath(h->o->mnt, "by-name/%s/released", h->o->name);
		h->released_fd = open(p, O_RDONLY | O_CLOEXEC);
		free(p);
	}
	if (h->released_fd < 0)
		return; /* no released file: the periodic check alone */
	if (pthread_create(&t, NULL, watch_released, h) != 0) {
		close(h->released_fd);
		h->released_fd = -1;
		return;
	}
	pthread_detach(t);
}

/* One renew (--ttl) or check. 0 still held, 1 lost (why in why), or a
 * transient failure (server gone or not answering) as -errno. */
static int check_grant(struct hold *h, char *why, size_t len)
{
	char ttl[32], token[LEASE_TOKEN_MAX], *p;
	int r;

	if (h->o->ttl_s) {
		snprintf(ttl, sizeof(ttl), "%ld\n", h->o->ttl_s);
		p = mc_join(h->dir, "ttl");
		r = write_small(p, ttl);
		free(p);
		if (r == -ENOENT || r == -EPERM) {
			snprintf(why, len, "its renewal failed: %s", strerror(-r));
			return 1;
		}
	} else {
		p = mc_join(h->dir, "token");
		r = (int)read_small(p, token, sizeof(token));
		free(p);
		if (r >= 0 && strcmp(token, h->token) != 0) {
			snprintf(why, len, "%s now has token %s", h->o->name, token);
			return 1;
		}
		if (r == -ENOENT) {
			snprintf(why, len, "its grant is gone");
			return 1;
		}
	}
	if (r < 0)
		return r;
	h->last_ok_ms = now_ms();
	return 0;
}

/* Whether CMD has exited (left a zombie: its pid stays ours). */
static bool child_exited(pid_t child)
{
	siginfo_t si = {0};

	return waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid == child;
}

static int reap(pid_t child)
{
	int status;

	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			return MC_EXIT_OWN;
	}
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Releases the lease of the exited CMD (before it is reaped). */
static void release(struct hold *h)
{
	int r = rmdir(h->dir) < 0 ? -errno : 0;

	/* ENOENT: the server saw CMD's death first; gone: nothing to release */
	if (r < 0 && r != -ENOENT && !server_gone(r))
		mc_err("lease", "cannot release %s (token %s): %s", h->o->name, h->token,
		       strerror(-r));
}

/* The lease was lost: SIGTERM to CMD, wait for it, exit 122. Unless CMD
 * has exited meanwhile: its death is what released the lease (the server
 * releases a dead holder's leases), so CMD's own code. */
static int lost(struct hold *h, const char *why)
{
	if (child_exited(h->child)) {
		release(h);
		return reap(h->child);
	}
	mc_err("lease", "lost lease %s (token %s) while %s ran: %s; sent SIGTERM to %s",
	       h->o->name, h->token, h->o->argv[0], why, h->o->argv[0]);
	kill(h->child, SIGTERM);
	reap(h->child);
	return LEASE_EXIT_LOST;
}

/* Runs until CMD exits or the lease is lost; returns the exit code. */
static int hold_lease(struct hold *h)
{
	int64_t every = h->o->ttl_s ? h->o->ttl_s * 1000 / 3 : LEASE_CHECK_MS, next;
	const char *env = getenv("TXDIR_LEASE_CHECK_MS"); /* tests: check this often */

	if (env && *env && !h->o->ttl_s)
		every = strtoll(env, NULL, 10);
	char why[512];
	struct timespec ts;
	siginfo_t si;
	sigset_t set;
	int sig, r;

	held_signals(&set);
	h->last_ok_ms = now_ms();
	next = h->last_ok_ms + every;
	for (;;) {
		int64_t wait = next - now_ms();

		if (child_exited(h->child)) {
			release(h);
			return reap(h->child);
		}
		if (wait <= 0) {
			r = check_grant(h, why, sizeof(why));
			if (r == 1)
				return lost(h, why);
			if (r < 0 && h->o->ttl_s && now_ms() - h->last_ok_ms >= h->o->ttl_s * 1000) {
				snprintf(why, sizeof(why), "no renewal for a whole TTL (%s)",
					 strerror(-r));
				return lost(h, why);
			}
			next = now_ms() + every;
			continue;
		}
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (wait % 1000) * 1000000;
		sig = sigtimedwait(&set, &si, &ts);
		if (sig == SIGUSR1 && !child_exited(h->child)) {
			snprintf(why, sizeof(why), "it was released%s%s",
				 *h->released ? ": " : "", h->released);
			return lost(h, why);
		}
		if ((sig == SIGINT || sig == SIGTERM || sig == SIGHUP) && si.si_code <= 0)
			kill(h->child, sig); /* sent with kill(2), not by the terminal */
	}
}

/* ---- the command ----------------------------------------------------------------- */

static int lease_cmd(const struct lease_opts *o)
{
	struct hold h = {.o = o, .released_fd = -1};
	char line[LEASE_TOKEN_MAX + 1];
	sigset_t set;
	int pfd[2], r;
	pid_t child;

	/* Inherited SIG_IGN would reap CMD behind our back and lose its status. */
	signal(SIGCHLD, SIG_DFL);
	held_signals(&set);
	sigprocmask(SIG_BLOCK, &set, &saved_mask);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		mc_err("lease", "pipe: %s", strerror(errno));
		return MC_EXIT_OWN;
	}
	fflush(NULL);
	child = fork();
	if (child < 0) {
		mc_err("lease", "fork: %s", strerror(errno));
		return MC_EXIT_OWN;
	}
	if (child == 0) {
		close(pfd[1]);
		child_main(pfd[0], o->argv);
	}
	close(pfd[0]);
	h.child = child;
	r = o->nonblock ? grab_now(o, child, h.token) : grab_queued(o, child, h.token);
	if (r != 0) {
		close(pfd[1]); /* the child exits without running CMD */
		reap(child);
		return r;
	}
	h.dir = lpath(o->mnt, "active/%d/%s", (int)child, o->name);
	if (o->ttl_s) {
		char ttl[32], *p = mc_join(h.dir, "ttl");

		snprintf(ttl, sizeof(ttl), "%ld\n", o->ttl_s);
		r = write_small(p, ttl);
		free(p);
		if (r < 0) {
			mc_err("lease", "cannot set the TTL of %s: %s", o->name, strerror(-r));
			close(pfd[1]);
			reap(child);
			rmdir(h.dir);
			free(h.dir);
			return MC_EXIT_OWN;
		}
	}
	start_watcher(&h);
	snprintf(line, sizeof(line), "%s\n", h.token);
	if (write(pfd[1], line, strlen(line)) != (ssize_t)strlen(line))
		mc_err("lease", "cannot start %s: %s", o->argv[0], strerror(errno));
	close(pfd[1]);
	r = hold_lease(&h);
	free(h.dir);
	return r;
}

/* ---- list ------------------------------------------------------------------------ */

struct lease_row {
	char *name, *pid;
	cJSON *doc; /* info.json, or built from the files */
	char token[LEASE_TOKEN_MAX], ttl[32], expires[64], owner[512];
};

static int cmp_row(const void *a, const void *b)
{
	const struct lease_row *x = a, *y = b;
	return strcmp(x->name, y->name);
}

/* Directory entries other than . and .., sorted by nothing. */
static int list_dir(const char *path, char ***names, size_t *n)
{
	char *text = NULL, *cmdv[] = {"ls", "-1A", (char *)path, NULL};
	int r = mc_run_capture(cmdv, MC_PROBE_MS, &text);

	*names = NULL;
	*n = 0;
	if (r != 0) {
		free(text);
		return -EIO;
	}
	for (char *save = NULL, *s = strtok_r(text, "\n", &save); s; s = strtok_r(NULL, "\n", &save)) {
		*names = realloc(*names, (*n + 1) * sizeof(char *));
		if (!*names)
			abort();
		(*names)[(*n)++] = mc_strdup(s);
	}
	free(text);
	return 0;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void read_leaf(const char *dir, const char *leaf, char *buf, size_t len)
{
	char *p = mc_join(dir, leaf), *text = NULL;
	ssize_t n = mc_read_file(p, MC_PROBE_MS, &text);

	snprintf(buf, len, "-");
	if (n > 0) {
		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
			text[--n] = '\0';
		snprintf(buf, len, "%s", text);
	}
	free(text);
	free(p);
}

static void fill_row(const char *mnt, struct lease_row *row)
{
	char *dir = lpath(mnt, "active/%s/%s", row->pid, row->name), *p, *text = NULL;

	read_leaf(dir, "token", row->token, sizeof(row->token));
	read_leaf(dir, "ttl", row->ttl, sizeof(row->ttl));
	read_leaf(dir, "expires", row->expires, sizeof(row->expires));
	read_leaf(dir, "owner", row->owner, sizeof(row->owner));
	p = mc_join(dir, "info.json");
	if (mc_read_file(p, MC_PROBE_MS, &text) >= 0)
		row->doc = json_parse_str(text);
	if (!cJSON_IsObject(row->doc)) {
		cJSON_Delete(row->doc);
		row->doc = cJSON_CreateObject();
		cJSON_AddStringToObject(row->doc, "token", row->token);
		cJSON_AddStringToObject(row->doc, "ttl", row->ttl);
		cJSON_AddStringToObject(row->doc, "expires", row->expires);
		cJSON_AddStringToObject(row->doc, "owner", row->owner);
	}
	if (!cJSON_GetObjectItemCaseSensitive(row->doc, "name"))
		cJSON_AddStringToObject(row->doc, "name", row->name);
	if (!cJSON_GetObjectItemCaseSensitive(row->doc, "pid"))
		cJSON_AddNumberToObject(row->doc, "pid", atof(row->pid));
	free(text);
	free(p);
	free(dir);
}

/* The held leases, sorted by name. */
static int collect(const char *mnt, struct lease_row **rows, size_t *nrows)
{
	char **pids, **names, *p = lpath(mnt, "active");
	size_t npids, nnames;
	int r = list_dir(p, &pids, &npids);

	free(p);
	*rows = NULL;
	*nrows = 0;
	if (r < 0)
		return r;
	for (size_t i = 0; i < npids; i++) {
		p = lpath(mnt, "active/%s", pids[i]);
		if (list_dir(p, &names, &nnames) == 0) {
			for (size_t j = 0; j < nnames; j++) {
				struct lease_row *row;

				*rows = realloc(*rows, (*nrows + 1) * sizeof(**rows));
				if (!*rows)
					abort();
				row = &(*rows)[(*nrows)++];
				memset(row, 0, sizeof(*row));
				row->name = names[j];
				row->pid = mc_strdup(pids[i]);
				fill_row(mnt, row);
			}
			free(names);
		}
		free(p);
	}
	free_names(pids, npids);
	qsort(*rows, *nrows, sizeof(**rows), cmp_row);
	return 0;
}

static int print_rows(struct lease_row *rows, size_t n, bool json, char *mnt, int code);

/* lease list MNT [NAME]: every held lease, or NAME's (exit 1 when NAME is
 * not held). */
static int lease_list_cmd(const struct mc_cmd *cmd, int argc, char **argv)
{
	struct lease_row *rows;
	size_t n;
	char *mnt;
	const char *only = NULL; /* NAME: that lease alone */
	bool json;
	int first, r = mc_parse_read_opts(cmd, argc, argv, &json, &first);

	if (r >= 0)
		return r;
	if (argc - first == 2) {
		only = argv[first + 1];
		if (!mc_coord_name_ok(only)) {
			/* bad input, as for `lease MNT NAME`: mountctl's own error */
			mc_usage(cmd, "NAME: 1 to 255 bytes, no '/', whitespace or control characters");
			return MC_EXIT_OWN;
		}
		argc--;
	}
	if ((r = mc_mnt_arg(cmd, argc, argv, first, &mnt)) >= 0)
		return r;
	r = check_mount("lease list", mnt, MC_EXIT_FAIL);
	if (r == 0 && only) {
		r = collect(mnt, &rows, &n) < 0 ? MC_EXIT_FAIL : 0;
		size_t k = 0;
		for (size_t i = 0; !r && i < n; i++) {
			if (strcmp(rows[i].name, only) == 0) {
				rows[k++] = rows[i];
				continue;
			}
			free(rows[i].name);
			free(rows[i].pid);
			cJSON_Delete(rows[i].doc);
		}
		if (r)
			mc_err("lease list", "cannot list %s/.txdir/leases/active", mnt);
		else
			return print_rows(rows, k, json, mnt, k ? MC_EXIT_OK : MC_EXIT_FAIL);
		free(mnt);
		return r;
	}
	if (r == 0 && collect(mnt, &rows, &n) < 0) {
		mc_err("lease list", "cannot list %s/.txdir/leases/active", mnt);
		r = MC_EXIT_FAIL;
	}
	if (r) {
		free(mnt);
		return r;
	}
	return print_rows(rows, n, json, mnt, MC_EXIT_OK);
}

/* Prints and frees rows (and mnt); returns code. */
static int print_rows(struct lease_row *rows, size_t n, bool json, char *mnt, int code)
{
	if (json) {
		cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "leases");
		char *text;

		for (size_t i = 0; i < n; i++) {
			cJSON_AddItemToArray(arr, rows[i].doc);
			rows[i].doc = NULL;
		}
		text = json_print(doc, true);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(doc);
	} else {
		printf("%-20s %8s %8s %6s %-25s %s\n", "NAME", "TOKEN", "PID", "TTL", "EXPIRES",
		       "OWNER");
		for (size_t i = 0; i < n; i++)
			printf("%-20s %8s %8s %6s %-25s %s\n", rows[i].name, rows[i].token,
			       rows[i].pid, rows[i].ttl, rows[i].expires, rows[i].owner);
	}
	for (size_t i = 0; i < n; i++) {
		free(rows[i].name);
		free(rows[i].pid);
		cJSON_Delete(rows[i].doc);
	}
	free(rows);
	free(mnt);
	return code;
}

/* ---- break ----------------------------------------------------------------------- */

static int lease_break_cmd(const struct mc_cmd *cmd, int argc, char **argv)
{
	char *mnt, *link = NULL, *dir = NULL, who[640];
	pid_t holder;
	int r;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		mc_help(cmd);
		return MC_EXIT_OK;
	}
	if (argc != 3)
		return mc_usage(cmd, "lease break MNT NAME");
	if (!mc_coord_name_ok(argv[2])) {
		mc_usage(cmd, "NAME: 1 to 255 bytes, no '/', whitespace or control characters");
		return MC_EXIT_OWN;
	}
	mnt = mc_abspath(argv[1]);
	if (!mnt) {
		mc_err("lease break", "%s: %s", argv[1], strerror(errno));
		return MC_EXIT_FAIL;
	}
	r = check_mount("lease break", mnt, MC_EXIT_FAIL);
	if (r)
		goto out_free;
	holder = find_holder(mnt, argv[2]);
	if (!holder) {
		mc_err("lease break", "%s is not held on %s", argv[2], mnt);
		r = MC_EXIT_FAIL;
		goto out_free;
	}
	describe_holder(mnt, argv[2], holder, who, sizeof(who));
	link = lpath(mnt, "by-name/%s", argv[2]);
	dir = lpath(mnt, "active/%d/%s", (int)holder, argv[2]);
	/* unlink(by-name/NAME) is the break proper, where the server has it;
	 * else rmdir of the holder's directory, which the server allows the
	 * lease's uid and root (recorded as a release by this process) */
	r = unlink(link) < 0 ? -errno : 0;
	if (r < 0)
		r = rmdir(dir) < 0 ? -errno : 0;
	if (r == -ENOENT) {
		mc_err("lease break", "%s was released before it could be broken", argv[2]);
		r = MC_EXIT_FAIL;
	} else if (r < 0) {
		mc_err("lease break", "cannot break %s (%s): %s%s", argv[2], who, strerror(-r),
		       r == -EPERM ? " (only the lease's uid or root may)" : "");
		r = MC_EXIT_FAIL;
	} else {
		printf("broke %s (%s) as uid %u (pid %d)\n", argv[2], who, (unsigned)getuid(),
		       (int)getpid());
	}
out_free:
	free(dir);
	free(link);
	free(mnt);
	return r;
}

/* ---- dispatch --------------------------------------------------------------------- */

static bool has_dashdash(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return true;
	}
	return false;
}

int cmd_lease(const struct mc_cmd *cmd, int argc, char **argv)
{
	struct lease_opts o = {.wait_s = -1, .busy_code = LEASE_EXIT_BUSY};
	int r;

	if (argc >= 2 && !has_dashdash(argc, argv)) {
		if (strcmp(argv[1], "list") == 0)
			return lease_list_cmd(cmd, argc - 1, argv + 1);
		if (strcmp(argv[1], "break") == 0)
			return lease_break_cmd(cmd, argc - 1, argv + 1);
	}
	r = parse_opts(cmd, argc, argv, &o);
	if (r >= 0)
		return r;
	r = check_mount("lease", o.mnt, MC_EXIT_OWN);
	if (r == 0)
		r = lease_cmd(&o);
	free(o.mnt);
	return r;
}
