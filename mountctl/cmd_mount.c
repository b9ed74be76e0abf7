/*
 * cmd_mount.c — `mountctl mount STORE MNT [-o OPTS]`: start txdirfs and
 * return once the mount answers.
 *
 * txdirfs runs in the foreground (-f) in its own session, with its output
 * appended to a log file, so its error messages are never lost: when it
 * exits before the mount answers, the last lines it printed become our one
 * error line. "Answers" means MNT is a FUSE mount in /proc/self/mountinfo
 * and stat(MNT/.txdir) succeeds within the probe deadline.
 *
 * Nothing half-done is left behind: on a timeout the server is stopped and
 * a mount it may have made is detached.
 *
 * When txdirfs fails, what FUSE needs and this user lacks is named in the
 * same one line (fuse_refusal): no /dev/fuse, a /dev/fuse that refuses the
 * user, and for a non-root user a missing or non-setuid fusermount3 or
 * allow_other without user_allow_other in /etc/fuse.conf.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mountctl.h"

#define MOUNT_POLL_US 20000

/* $TXDIRFS, else txdirfs next to this binary, else "txdirfs" (PATH). */
static char *find_txdirfs(void)
{
	const char *env = getenv("TXDIRFS");
	char self[PATH_MAX], *cand;
	ssize_t n;

	if (env && *env)
		return mc_strdup(env);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		cand = mc_join(dirname(self), "txdirfs");
		if (access(cand, X_OK) == 0)
			return cand;
		free(cand);
	}
	return mc_strdup("txdirfs");
}

/* Default log: LOG_DIR/<mount point with '/' as '-'>.log, where LOG_DIR is
 * /run/txdir for root, else $XDG_RUNTIME_DIR/txdir, else /tmp/txdir-UID.
 * Never inside the store: its layout belongs to the engine. NULL when the
 * directory is unusable (not ours). */
static char *default_log(const char *mnt)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[PATH_MAX], *name, *path;
	struct stat st;

	if (geteuid() == 0)
		snprintf(dir, sizeof(dir), "/run/txdir");
	else if (xdg && *xdg)
		snprintf(dir, sizeof(dir), "%s/txdir", xdg);
	else
		snprintf(dir, sizeof(dir), "/tmp/txdir-%u", (unsigned int)geteuid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return NULL;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
		return NULL;
	name = malloc(strlen(mnt) + 8);
	if (!name)
		abort();
	strcpy(name, mnt[1] ? mnt + 1 : "root");
	for (char *c = name; *c; c++) {
		if (*c == '/')
			*c = '-';
	}
	strcat(name, ".log");
	path = mc_join(dir, name);
	free(name);
	return path;
}

/* Opens the log for appending; falls back to a temporary file when the
 * chosen one cannot be written. *path gets the path used. */
static int open_log(const char *mnt, const char *want, char **path)
{
	char tmpl[] = "/tmp/txdirfs-XXXXXX.log";
	char *p = want ? mc_strdup(want) : default_log(mnt);
	int fd = p ? open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640) : -1;

	if (fd >= 0) {
		*path = p;
		return fd;
	}
	free(p);
	fd = mkostemps(tmpl, 4, O_APPEND | O_CLOEXEC);
	*path = fd >= 0 ? mc_strdup(tmpl) : NULL;
	return fd;
}

/* The last few non-empty lines the server wrote since offset, joined by
 * "; ". Caller frees. */
static char *server_output(const char *log, off_t offset)
{
	char *text = NULL, *out, *lines[3] = {NULL, NULL, NULL}, *save = NULL, *tok;
	size_t n = 0, len = 0;

	if (mc_read_file(log, MC_PROBE_MS, &text) < 0)
		return mc_strdup("(its log could not be read)");
	if ((size_t)offset > strlen(text))
		offset = 0;
	for (tok = strtok_r(text + offset, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
		if (*tok == '\0')
			continue;
		lines[n % 3] = tok;
		n++;
	}
	if (n == 0) {
		free(text);
		return mc_strdup("(no output)");
	}
	for (size_t i = n > 3 ? n - 3 : 0; i < n; i++)
		len += strlen(lines[i % 3]) + 2;
	out = calloc(1, len + 1);
	if (!out)
		abort();
	for (size_t i = n > 3 ? n - 3 : 0; i < n; i++) {
		if (*out)
			strcat(out, "; ");
		strcat(out, lines[i % 3]);
	}
	free(text);
	return out;
}

static pid_t spawn_server(const char *txdirfs, const char *store, const char *mnt, const char *opts,
			  int logfd)
{
	char *argv[] = {(char *)txdirfs, (char *)store, (char *)mnt, "-f", NULL, NULL, NULL};
	pid_t pid;

	if (opts && *opts) {
		argv[4] = "-o";
		argv[5] = (char *)opts;
	}
	fflush(NULL);
	pid = fork();
	if (pid != 0)
		return pid;
	/* Child: its own session, so it outlives us and our process group. Not
	 * systemd's notification socket of a service that ran us: txdirfs's
	 * READY=1 and MAINPID would be taken as that service's. */
	setsid();
	unsetenv("NOTIFY_SOCKET");
	int devnull = open("/dev/null", O_RDONLY);

	if (devnull >= 0)
		dup2(devnull, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	close_range(3, ~0U, 0);
	execvp(txdirfs, argv);
	dprintf(2, "mountctl: cannot run %s: %s\n", txdirfs, strerror(errno));
	_exit(127);
}

/* ---- what FUSE refuses ------------------------------------------------------- */

/* libfuse runs fusermount3 from its build-time directory, then from PATH. */
static char *find_fusermount(void)
{
	static const char *const fixed[] = {"/usr/bin/fusermount3", "/bin/fusermount3"};
	const char *path = getenv("PATH");
	char *dirs, *save = NULL, *cand;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if (access(fixed[i], X_OK) == 0)
			return mc_strdup(fixed[i]);
	}
	dirs = mc_strdup(path ? path : "");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		cand = mc_join(d, "fusermount3");
		if (access(cand, X_OK) == 0) {
			free(dirs);
			return cand;
		}
		free(cand);
	}
	free(dirs);
	return NULL;
}

/* Whether opts (-o words, comma-separated) hold word. */
static bool has_opt(const char *opts, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = opts; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (!strncmp(p, word, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
	}
	return false;
}

/* Whether /etc/fuse.conf has an uncommented user_allow_other line. */
static bool fuse_conf_allows_other(void)
{
	char *line = NULL, *w;
	size_t cap = 0;
	bool found = false;
	FILE *f = fopen("/etc/fuse.conf", "r");

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		w = line + strspn(line, " \t");
		found = !strncmp(w, "user_allow_other", 16) && strchr(" \t\r\n", w[16]);
	}
	free(line);
	fclose(f);
	return found;
}

static char *mc_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *mc_sprintf(const char *fmt, ...)
{
	char *out;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0)
		abort();
	va_end(ap);
	return out;
}

/* What FUSE needs that this user lacks, in words (caller frees), or NULL
 * when nothing is found missing: then txdirfs's own words stand alone.
 * Asked only once txdirfs has failed, so a check that cannot see the whole
 * story (a security module, a container's device rules) never blocks a
 * mount that would have worked. */
static char *fuse_refusal(const char *opts)
{
	uid_t uid = geteuid();
	struct passwd *pw;
	struct group *gr;
	struct stat st;
	char *fm, *why = NULL;
	int fd;

	if (stat("/dev/fuse", &st) < 0)
		return mc_strdup("there is no /dev/fuse: load the fuse module (modprobe fuse), or "
				 "give the container the device (--device /dev/fuse)");
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EPERM)) {
		pw = getpwuid(st.st_uid);
		gr = getgrgid(st.st_gid);
		return mc_sprintf("/dev/fuse (mode %04o, %s:%s) refuses uid %u: a user needs read "
				  "and write access to it (mode 0666 is the usual one, or a group "
				  "that has it), or mount as root",
				  (unsigned int)(st.st_mode & 07777), pw ? pw->pw_name : "?",
				  gr ? gr->gr_name : "?", (unsigned int)uid);
	}
	if (fd >= 0)
		close(fd);
	if (uid == 0)
		return NULL;
	fm = find_fusermount();
	if (!fm)
		return mc_strdup("fusermount3 is missing (package fuse3): a non-root user mounts "
				 "through it");
	if (stat(fm, &st) == 0 && (st.st_uid != 0 || !(st.st_mode & S_ISUID)))
		why = mc_sprintf("%s is not setuid root: a non-root user mounts through it "
				 "(chmod u+s %s as root)",
				 fm, fm);
	else if (has_opt(opts, "allow_other") && !fuse_conf_allows_other())
		why = mc_strdup("-o allow_other needs a line user_allow_other in /etc/fuse.conf "
				"for a non-root user (or mount as root)");
	free(fm);
	return why;
}

/* Answers: a FUSE mount at mnt whose .txdir can be stat'ed. */
static bool mount_answers(const char *mnt)
{
	char *fstype = NULL, *ctl;
	bool ok;

	if (mc_mountinfo_find(mnt, &fstype) <= 0)
		return false;
	ok = strncmp(fstype, "fuse", 4) == 0;
	free(fstype);
	if (!ok)
		return false;
	ctl = mc_join(mnt, ".txdir");
	ok = mc_probe(ctl, false, MC_PROBE_MS) == 0;
	free(ctl);
	return ok;
}

/* Stops a server that did not come up, and detaches what it mounted. */
static void stop_server(pid_t pid, const char *mnt)
{
	char *out = NULL;

	kill(pid, SIGTERM);
	for (int i = 0; i < 150 && waitpid(pid, NULL, WNOHANG) == 0; i++)
		usleep(MOUNT_POLL_US);
	if (waitpid(pid, NULL, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (mc_mountinfo_find(mnt, NULL) > 0) {
		mc_fusermount_u(mnt, true, &out);
		free(out);
	}
}

static int prepare_mountpoint(const struct mc_cmd *cmd, const char *mnt)
{
	char *out = NULL;
	int st = mc_mnt_state(mnt), r;

	switch (st) {
	case MC_MNT_NONE:
		return 0;
	case MC_MNT_STALE:
		r = mc_fusermount_u(mnt, true, &out);
		if (r != 0) {
			mc_err(cmd->name,
			       "%s is a stale mount of a dead server and cleaning it failed: %s",
			       mnt, out ? out : strerror(-r));
			free(out);
			return -1;
		}
		free(out);
		fprintf(stderr,
			"mountctl: %s: %s was a stale mount of a dead server; cleaned it "
			"(fusermount3 -uz)\n",
			cmd->name, mnt);
		return 0;
	case MC_MNT_OURS:
		mc_err(cmd->name, "%s is already mounted (txdir)", mnt);
		return -1;
	case MC_MNT_HUNG:
		mc_err(cmd->name,
		       "%s is a mount that does not answer; try 'mountctl umount --lazy %s'", mnt,
		       mnt);
		return -1;
	case MC_MNT_OTHER:
		mc_err(cmd->name, "%s is already a mount point", mnt);
		return -1;
	default:
		mc_err(cmd->name, "%s: %s", mnt, strerror(-st));
		return -1;
	}
}

/* Appends ",o" to *opts. */
static void add_opts(char **opts, const char *o)
{
	size_t old = *opts ? strlen(*opts) : 0;
	char *n = malloc(old + 1 + strlen(o) + 1);

	if (!n)
		abort();
	if (*opts)
		sprintf(n, "%s,%s", *opts, o);
	else
		strcpy(n, o);
	free(*opts);
	*opts = n;
}

int cmd_mount(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"timeout", required_argument, NULL, 't'},
		{"log", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	char *opts = NULL, *store = NULL, *mnt = NULL, *txdirfs = NULL, *log = NULL, *end;
	const char *log_want = NULL;
	double timeout_s = 10;
	int c, logfd = -1, ret = MC_EXIT_FAIL, status;
	struct timespec t0, t;
	char when[32];
	time_t now;
	struct stat st;
	off_t offset;
	pid_t pid;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "ho:", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			ret = MC_EXIT_OK;
			goto out_free;
		case 'o':
			add_opts(&opts, optarg);
			break;
		case 't':
			timeout_s = strtod(optarg, &end);
			if (*end || timeout_s <= 0) {
				ret = mc_usage(cmd, "--timeout takes a positive number of seconds");
				goto out_free;
			}
			break;
		case 'l':
			log_want = optarg;
			break;
		default:
			ret = mc_usage(cmd, "unknown option or missing option argument");
			goto out_free;
		}
	}
	if (argc - optind != 2) {
		ret = mc_usage(cmd,
			       argc - optind < 2 ? "missing STORE or MNT" : "too many arguments");
		goto out_free;
	}
	store = realpath(argv[optind], NULL);
	if (!store || stat(store, &st) < 0) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(errno));
		goto out_free;
	}
	if (!S_ISDIR(st.st_mode)) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(ENOTDIR));
		goto out_free;
	}
	mnt = mc_abspath(argv[optind + 1]);
	if (!mnt) {
		mc_err(cmd->name, "%s: %s", argv[optind + 1], strerror(errno));
		goto out_free;
	}
	if (prepare_mountpoint(cmd, mnt) < 0)
		goto out_free;

	txdirfs = find_txdirfs();
	logfd = open_log(mnt, log_want, &log);
	if (logfd < 0) {
		mc_err(cmd->name, "cannot open a log file for txdirfs: %s", strerror(errno));
		goto out_free;
	}
	now = time(NULL);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	dprintf(logfd, "--- %s mountctl: starting %s %s %s ---\n", when, txdirfs, store, mnt);
	offset = lseek(logfd, 0, SEEK_END);
	pid = spawn_server(txdirfs, store, mnt, opts, logfd);
	if (pid < 0) {
		mc_err(cmd->name, "fork: %s", strerror(errno));
		goto out_free;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			char *why = server_output(log, offset), *refusal = fuse_refusal(opts);

			if (refusal && WIFEXITED(status))
				mc_err(cmd->name, "%s; txdirfs exited with status %d: %s", refusal,
				       WEXITSTATUS(status), why);
			else if (WIFSIGNALED(status))
				mc_err(cmd->name, "txdirfs was killed by signal %d: %s",
				       WTERMSIG(status), why);
			else
				mc_err(cmd->name, "txdirfs exited with status %d: %s",
				       WEXITSTATUS(status), why);
			free(refusal);
			free(why);
			goto out_free;
		}
		if (mount_answers(mnt))
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > timeout_s) {
			char *why;

			stop_server(pid, mnt);
			why = server_output(log, offset);
			mc_err(cmd->name, "%s did not answer within %g s; stopped txdirfs: %s", mnt,
			       timeout_s, why);
			free(why);
			goto out_free;
		}
		usleep(MOUNT_POLL_US);
	}
	printf("mounted %s at %s (txdirfs pid %d, log %s)\n", store, mnt, (int)pid, log);
	ret = MC_EXIT_OK;
out_free:
	if (logfd >= 0)
		close(logfd);
	free(log);
	free(txdirfs);
	free(mnt);
	free(store);
	free(opts);
	return ret;
}
