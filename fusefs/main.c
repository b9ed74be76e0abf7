/*
 * main.c — txdirfs(8): parse options, open the engine, mount, serve.
 *
 *   txdirfs STORE MNT [-f] [-d] [-s] [-o opt,...]
 *
 * txdirfs options (everything else goes to libfuse and the kernel:
 * allow_other (which implies default_permissions: the kernel makes the
 * permission checks), default_permissions, ro, max_threads...):
 *   durability=fsync|full|none  (default fsync; SPEC §3)
 *   commit_interval=N[ms|s]     background durability interval; a bare
 *                               number is milliseconds (default 1000ms)
 *   retain=SECONDS              record retention (default 3600)
 *   max_snapshot_age=SECONDS    bound on old versions kept for readers
 *   txn_grace=SECONDS           abandoned transactions abort after (default 600)
 *   max_leases=N, max_waiters=N per-uid lease and waiter limits (default 1024
 *                               each; EDQUOT past them; root is not limited)
 *   max_txns=N                  per-uid open transactions (default 1024;
 *                               EDQUOT past it; root is not limited)
 *   max_proposals=N             per-uid proposals (default 1024), and
 *   max_state_temps=N           temp files in .txdir/state (default 16);
 *                               EDQUOT past them; root is not limited
 *   max_ctl_mib=N               per-uid MiB that open control files
 *                               (events, commits/ID, journals) hold
 *                               (default 256; EDQUOT past it; not root)
 *   showctl                     list .txdir in the root directory
 *   nonempty                    mount over a directory that holds files
 *                               (hiding them); refused without it. libfuse 3
 *                               no longer knows the option: we take it here
 *   allow_shared_store          mount a store that other users can read or
 *                               write (refused without it: the store holds
 *                               every file's content, whatever its mode)
 *
 * Works from /etc/fstab (`STORE MNT fuse.txdirfs defaults 0 0`): mount.fuse3
 * runs `txdirfs STORE MNT -o opts`. Under systemd (txdirfs@.service,
 * Type=notify, with -f) it sends READY=1 to $NOTIFY_SOCKET once the mount
 * answers, and STOPPING=1 when it starts to shut down.
 *
 * Start-up without -f: we fork *before* opening the engine (its threads do not
 * survive a fork) and the parent waits on a pipe for the child's verdict, so
 * errors (a locked store, a failed mount) still reach the terminal and the
 * exit status of mount(8)/mountctl; once mounted, the child detaches, logs
 * to syslog and the parent exits 0. This replaces fuse_daemonize(), which
 * forks too late for the engine and always exits 0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "txdirfs.h"

/* Workers may sit in engine calls that wait (a control-file read such as a
 * lease's `released`), so allow more than libfuse's default of 10. */
#define TXDIRFS_MAX_THREADS  64
/* The kernel gives a FUSE mount 128 KiB of readahead; with 2 MiB, two 1 MiB
 * READs are in flight and a cold sequential read of a 1 GiB file measured
 * 0.74 s instead of 0.82 s. */
#define TXDIRFS_READ_AHEAD_KB 2048

struct txdirfs txdirfs;

/* ---- logging ---------------------------------------------------------------- */

static bool log_syslog;

void tx_log_to_syslog(void)
{
	openlog("txdirfs", LOG_PID, LOG_DAEMON);
	log_syslog = true;
}

static void vlog(int level, const char *fmt, va_list ap)
{
	if (log_syslog) {
		vsyslog(level, fmt, ap);
		return;
	}
	fputs("txdirfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void tx_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

/* libfuse's messages end in '\n' already. */
static void fuse_log_to_ours(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (log_syslog)
		vsyslog((int)level, fmt, ap);
	else
		vfprintf(stderr, fmt, ap);
}

/* ---- options ---------------------------------------------------------------- */

struct cli {
	char *store;
	char *durability;
	char *commit_interval;
	/* numbers as written: parsed strictly (fuse_opt's %u took "-1" as
	 * 4294967295) */
	char *retain_s;
	char *max_snapshot_age_s;
	char *txn_grace_s;
	char *max_leases, *max_waiters, *max_txns, *max_proposals, *max_state_temps, *max_ctl_mib;
	char *read_ahead_kb;
	int show_ctl;
	int nonempty;
	int allow_shared_store;
	bool has_fsname;
	bool allow_other, default_permissions;
};

enum { KEY_FSNAME = 1, KEY_ALLOW_OTHER, KEY_DEFAULT_PERMISSIONS };

/* clang-format off */
#define CLI_OPT(t, f) { t, offsetof(struct cli, f), 1 }
static const struct fuse_opt cli_spec[] = {
	CLI_OPT("durability=%s", durability),
	CLI_OPT("commit_interval=%s", commit_interval),
	CLI_OPT("retain=%s", retain_s),
	CLI_OPT("max_snapshot_age=%s", max_snapshot_age_s),
	CLI_OPT("txn_grace=%s", txn_grace_s),
	CLI_OPT("max_leases=%s", max_leases),
	CLI_OPT("max_waiters=%s", max_waiters),
	CLI_OPT("max_txns=%s", max_txns),
	CLI_OPT("max_proposals=%s", max_proposals),
	CLI_OPT("max_state_temps=%s", max_state_temps),
	CLI_OPT("max_ctl_mib=%s", max_ctl_mib),
	CLI_OPT("read_ahead_kb=%s", read_ahead_kb),
	CLI_OPT("showctl", show_ctl),
	CLI_OPT("nonempty", nonempty),
	CLI_OPT("allow_shared_store", allow_shared_store),
	FUSE_OPT_KEY("fsname=", KEY_FSNAME),
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_KEY("default_permissions", KEY_DEFAULT_PERMISSIONS),
	/* fstab words that mean nothing to the server */
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END
};
/* clang-format on */

/* The first non-option is STORE; the second (MNT) stays for libfuse. */
static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cli *c = data;

	(void)outargs;
	if (key == KEY_FSNAME)
		c->has_fsname = true;
	if (key == KEY_ALLOW_OTHER)
		c->allow_other = true;
	if (key == KEY_DEFAULT_PERMISSIONS)
		c->default_permissions = true;
	/* fstab's x-* words (x-systemd.automount, x-systemd.requires=...) are
	 * for mount(8) and systemd; mount.fuse3 run by hand passes them on */
	if (key == FUSE_OPT_KEY_OPT && !strncmp(arg, "x-", 2))
		return 0;
	if (key == FUSE_OPT_KEY_NONOPT && !c->store) {
		c->store = strdup(arg);
		return c->store ? 0 : -1;
	}
	return 1;
}

/* /proc/mounts shows the store as the source ("fsname=STORE", with ',' and
 * '\\' escaped for the option parser) unless the user chose a name. */
static int add_fsname(struct fuse_args *args, const char *store)
{
	char *opt = malloc(strlen("-ofsname=") + 2 * strlen(store) + 1), *p;
	int rc;

	if (!opt)
		return -1;
	p = stpcpy(opt, "-ofsname=");
	for (; *store; store++) {
		if (*store == ',' || *store == '\\')
			*p++ = '\\';
		*p++ = *store;
	}
	*p = '\0';
	rc = fuse_opt_add_arg(args, opt);
	free(opt);
	return rc;
}

static void usage(const char *prog)
{
	printf("usage: %s STORE MOUNTPOINT [options]\n\n"
	       "txdirfs options:\n"
	       "    -o durability=fsync|full|none  when commits reach stable storage\n"
	       "    -o commit_interval=N[ms|s]     background flush interval (bare N: ms)\n"
	       "    -o retain=SECONDS              keep decided records this long\n"
	       "    -o max_snapshot_age=SECONDS    bound old versions kept for readers\n"
	       "    -o txn_grace=SECONDS           abort abandoned transactions after (600)\n"
	       "    -o max_leases=N, max_waiters=N per-uid lease limits (1024 each)\n"
	       "    -o max_txns=N                  per-uid open transactions (1024)\n"
	       "    -o max_proposals=N             per-uid proposals (1024)\n"
	       "    -o max_state_temps=N           per-uid temp files in .txdir/state (16)\n"
	       "    -o max_ctl_mib=N               per-uid MiB open control files hold (256)\n"
	       "    -o showctl                     list .txdir in the root directory\n"
	       "    -o nonempty                    mount over a directory that holds files\n"
	       "    -o allow_shared_store          mount a store other users can read\n"
	       "    -o read_ahead_kb=N             kernel readahead for the mount (default\n"
	       "                                   %u as root; 0 keeps the kernel's)\n"
	       "    (txdirfs runs at least %d worker threads whatever max_threads says)\n\n",
	       prog, TXDIRFS_READ_AHEAD_KB, TXDIRFS_MAX_THREADS);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

static int parse_durability(const char *s, enum txd_durability *out)
{
	static const struct {
		const char *name;
		enum txd_durability d;
	} modes[] = {{"fsync", TXD_DUR_FSYNC}, {"full", TXD_DUR_FULL}, {"none", TXD_DUR_NONE}};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (!strcmp(s, modes[i].name)) {
			*out = modes[i].d;
			return 0;
		}
	}
	return -EINVAL;
}

/* "250", "250ms", "2s", "1.5s" → milliseconds (1 .. UINT32_MAX). */
static int parse_interval_ms(const char *s, uint32_t *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v <= 0)
		return -EINVAL;
	if (!strcmp(end, "s"))
		v *= 1000;
	else if (*end && strcmp(end, "ms"))
		return -EINVAL;
	if (v < 1 || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* -o NAME=VALUE, a whole decimal number 0..UINT32_MAX (no sign, no
 * spaces); NULL: not given (*out unchanged). 0, or -1 said why. */
static int parse_u32(const char *name, const char *v, uint32_t *out)
{
	char *end;
	unsigned long long n;

	if (!v)
		return 0;
	errno = 0;
	n = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
	if (*v < '0' || *v > '9' || errno || *end || n > UINT32_MAX) {
		tx_log(LOG_ERR, "bad %s=%s (a whole number from 0 to %u)", name, v, UINT32_MAX);
		return -1;
	}
	*out = (uint32_t)n;
	return 0;
}

static int engine_opts(const struct cli *c, struct txd_opts *o)
{
	*o = (struct txd_opts){.show_ctl = c->show_ctl};
	if (parse_u32("retain", c->retain_s, &o->retain_s) ||
	    parse_u32("max_snapshot_age", c->max_snapshot_age_s, &o->max_snapshot_age_s) ||
	    parse_u32("txn_grace", c->txn_grace_s, &o->txn_grace_s) ||
	    parse_u32("max_leases", c->max_leases, &o->max_leases) ||
	    parse_u32("max_waiters", c->max_waiters, &o->max_waiters) ||
	    parse_u32("max_txns", c->max_txns, &o->max_txns) ||
	    parse_u32("max_proposals", c->max_proposals, &o->max_proposals) ||
	    parse_u32("max_state_temps", c->max_state_temps, &o->max_state_temps) ||
	    parse_u32("max_ctl_mib", c->max_ctl_mib, &o->max_ctl_mib))
		return -1;
	if (c->durability && parse_durability(c->durability, &o->durability)) {
		tx_log(LOG_ERR, "bad durability=%s (fsync, full or none)", c->durability);
		return -1;
	}
	if (c->commit_interval && parse_interval_ms(c->commit_interval, &o->commit_interval_ms)) {
		tx_log(LOG_ERR, "bad commit_interval=%s (e.g. 500ms, 2s)", c->commit_interval);
		return -1;
	}
	return 0;
}

/* ---- daemon start-up -------------------------------------------------------- */

static int ready_fd = -1;

/* Fork; the parent exits with the status the child reports via
 * daemon_ready() (1 if the child dies first). */
static int daemon_start(void)
{
	int fds[2];
	char status = 1;
	pid_t pid;

	if (pipe(fds)) {
		tx_log(LOG_ERR, "pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		tx_log(LOG_ERR, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(fds[0]);
	ready_fd = fds[1];
	if (setsid() < 0)
		tx_log(LOG_WARNING, "setsid: %s", strerror(errno));
	return 0;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* status 0: mounted, detach and let the parent exit 0. */
static void daemon_ready(int status)
{
	char st = (char)status;

	if (ready_fd < 0)
		return;
	if (status == 0) {
		if (chdir("/"))
			tx_log(LOG_WARNING, "chdir /: %s", strerror(errno));
		tx_log_to_syslog();
		detach_stdio();
	}
	if (write(ready_fd, &st, 1) != 1)
		tx_log(LOG_WARNING, "start-up pipe: %s", strerror(errno));
	close(ready_fd);
	ready_fd = -1;
}

/* ---- systemd readiness -------------------------------------------------------- */

/* What sd_notify(3) does, without linking libsystemd: one datagram to the
 * unix socket $NOTIFY_SOCKET names ("@name": an abstract one). Without the
 * variable (not started by systemd as Type=notify) it does nothing; a
 * failure to send only costs systemd's view of us, so it is logged only. */
static void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = path ? strlen(path) : 0;
	int fd;

	if (len < 2 || len >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
		return;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		tx_log(LOG_WARNING, "NOTIFY_SOCKET %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- engine and session ----------------------------------------------------- */

/* Whether dir has an entry other than . and .. (false if it cannot be read:
 * the mount itself then says what is wrong). */
static bool dir_has_entries(const char *dir)
{
	struct dirent *de;
	bool found = false;
	DIR *d = opendir(dir);

	if (!d)
		return false;
	while (!found && (de = readdir(d)))
		found = strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return found;
}

/* The store holds the content of every file, whatever its mode on the
 * mount: refuse one that other users can read or write (store.h S4). */
static int check_store_private(const char *store, bool allow_shared)
{
	char bad[PATH_MAX];
	unsigned int mode = 0;
	int dfd, r;

	if (allow_shared)
		return 0;
	/* not a store (yet): opening it says so */
	dfd = open(store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = dfd < 0 ? -1 : faccessat(dfd, "FORMAT", F_OK, 0);
	if (dfd >= 0)
		close(dfd);
	if (r != 0)
		return 0;
	r = txd_store_check_private(store, bad, sizeof(bad), &mode);
	if (r == 0)
		return 0;
	if (r < 0) {
		tx_log(LOG_ERR, "%s: cannot check that the store is private: %s", store,
		       strerror(-r));
		return -1;
	}
	tx_log(LOG_ERR,
	       "%s: other users can read or write the store (%s has mode %04o), and it holds "
	       "the content of every file; run chmod -R go= %s (or mount with -o "
	       "allow_shared_store)",
	       store, bad, mode, store);
	return -1;
}

static int open_engine(const char *store, const struct txd_opts *o)
{
	pid_t holder = 0;
	int rc = txd_fs_open(store, o, &txdirfs.fs, &holder);

	if (rc == -TXD_ELOCKED && holder > 0)
		tx_log(LOG_ERR, "%s: store is in use by another txdirfs (pid %d)", store,
		       (int)holder);
	else if (rc == -TXD_ENOTSTORE && !dir_has_entries(store))
		tx_log(LOG_ERR, "%s is not a txdir store: run mountctl init %s", store, store);
	else if (rc == -TXD_ENOTSTORE)
		tx_log(LOG_ERR, "%s is not a txdir store (it has files but no FORMAT)", store);
	else if (rc == -TXD_EFORMAT) {
		char why[160];
		tx_log(LOG_ERR, "%s: %s", store, txd_format_problem(store, why, sizeof(why)));
	} else if (rc == -TXD_ECORRUPT)
		tx_log(LOG_ERR, "%s: %s (mountctl fsck %s says where and what it affects)", store,
		       txd_strerror(rc), store);
	else if (rc < 0)
		tx_log(LOG_ERR, "%s: %s", store, txd_strerror(rc));
	return rc;
}

static int serve(struct fuse_session *se, const struct fuse_cmdline_opts *fo,
		 const sigset_t *sigs)
{
	unsigned int max = fo->max_threads > TXDIRFS_MAX_THREADS ? fo->max_threads
								 : TXDIRFS_MAX_THREADS;

	return tx_loop_run(se, fo->singlethread ? 1 : max, sigs);
}

static uint32_t read_ahead_kb; /* -o read_ahead_kb */
static const char *mount_point;
static bool initialized; /* INIT answered */

/* The mount's device number, from /proc/self/mountinfo: stat(2) of the
 * mount point would ask this very server (mnt is absolute and resolved:
 * fuse_parse_cmdline ran realpath on it). */
static bool mount_dev(const char *mnt, char *dev, size_t size)
{
	char point[PATH_MAX], d[64], *line = NULL;
	size_t cap = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "r");

	if (!f)
		return false;
	while (getline(&line, &cap, f) > 0) {
		/* "ID PARENT MAJ:MIN ROOT POINT ..." (POINT octal-escaped) */
		if (sscanf(line, "%*u %*u %63s %*s %4095s", d, point) != 2)
			continue;
		for (char *r = point, *w = point;; r++, w++) {
			if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
				*w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
				r += 3;
			} else if (!(*w = *r)) {
				break;
			}
		}
		if (!strcmp(point, mnt) && strlen(d) < size) {
			strcpy(dev, d); /* the last one: mounts stack */
			found = true;
		}
	}
	free(line);
	fclose(f);
	return found;
}

/* Readahead is a property of the mount's backing device; only root may set
 * it, and a failure only costs speed. */
static void set_read_ahead(const char *mnt, unsigned int kb)
{
	char dev[64], path[128];
	FILE *f;

	if (!kb || !mount_dev(mnt, dev, sizeof(dev)))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%u\n", kb) < 0 || fclose(f))
		tx_log(LOG_DEBUG, "%s: %s (readahead left as is)", path, strerror(errno));
}

/* After INIT: the kernel caps readahead at what INIT said (its own default),
 * so only now can it be raised. */
void tx_mount_ready(void)
{
	char state[64];

	if (mount_point)
		set_read_ahead(mount_point, read_ahead_kb);
	initialized = true;
	/* MAINPID: without -f this is the forked child, not the pid systemd
	 * started */
	snprintf(state, sizeof(state), "READY=1\nMAINPID=%d", (int)getpid());
	notify_systemd(state);
	/* only now is the mount usable: a failed INIT (libfuse refuses a
	 * capability the kernel lacks) must not report success */
	daemon_ready(0);
}

/* Mount and serve until unmounted or signalled. Returns the exit status. */
static int run(struct fuse_args *args, const struct fuse_cmdline_opts *fo,
	       struct fuse_conn_info_opts *conn_opts, const sigset_t *sigs)
{
	struct fuse_session *se;
	int status = 1;

	se = fuse_session_new(args, &txdirfs_ops, sizeof(txdirfs_ops), conn_opts);
	if (!se)
		return 1;
	txdirfs.se = se;
	if (fuse_set_signal_handlers(se))
		goto out_destroy;
	if (tx_notifier_start(txdirfs.fs))
		goto out_signals;
	if (fuse_session_mount(se, fo->mountpoint))
		goto out_notifier;
	mount_point = fo->mountpoint;
	tx_notifier_attach(se);
	/* > 0: ended by that signal (SIGTERM from systemd is a clean stop) */
	status = serve(se, fo, sigs) < 0 || !initialized ? 1 : 0;
	notify_systemd("STOPPING=1");
	/* Let pending durability callbacks send their replies first. */
	txd_sync_wait(txdirfs.fs);
	fuse_session_unmount(se);
	/* Close the engine while the session still exists: its threads (the
	 * prepare thread, durability callbacks, wait files) answer requests
	 * they deferred, even now; after the unmount those replies go
	 * nowhere, but they must not go to a freed session. */
	txd_fs_close(txdirfs.fs);
	txdirfs.fs = NULL;
out_notifier:
	tx_notifier_stop();
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	txdirfs.se = NULL;
	return status;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts fo = {0};
	struct fuse_conn_info_opts *conn_opts = NULL;
	struct cli cli = {0};
	struct txd_opts o;
	sigset_t sigs;
	char store[PATH_MAX];
	int status = 1;

	fuse_set_log_func(fuse_log_to_ours);
	if (fuse_opt_parse(&args, &cli, cli_spec, cli_proc))
		goto out;
	conn_opts = fuse_parse_conn_info_opts(&args);
	if (!conn_opts || fuse_parse_cmdline(&args, &fo))
		goto out;
	if (fo.show_help || fo.show_version) {
		if (fo.show_help)
			usage(argv[0]);
		else
			printf("txdirfs, FUSE library %s\n", fuse_pkgversion());
		status = 0;
		goto out;
	}
	if (!cli.store || !fo.mountpoint) {
		fprintf(stderr, "usage: %s STORE MOUNTPOINT [-f] [-d] [-o opt,...] (--help)\n",
			argv[0]);
		goto out;
	}
	if (!realpath(cli.store, store)) {
		tx_log(LOG_ERR, "%s: %s", cli.store, strerror(errno));
		goto out;
	}
	if (engine_opts(&cli, &o))
		goto out;
	/* Mounting over files hides them; the kernel would allow it silently. */
	if (!cli.nonempty && dir_has_entries(fo.mountpoint)) {
		tx_log(LOG_ERR,
		       "%s is not empty: mounting over it would hide its files (mount with -o "
		       "nonempty to do it anyway)",
		       fo.mountpoint);
		goto out;
	}
	if (check_store_private(store, cli.allow_shared_store))
		goto out;
	read_ahead_kb = TXDIRFS_READ_AHEAD_KB;
	if (parse_u32("read_ahead_kb", cli.read_ahead_kb, &read_ahead_kb))
		goto out;
	if (!cli.has_fsname && add_fsname(&args, store))
		goto out;
	/* The engine checks no permissions: the kernel does, with
	 * default_permissions. Shared with other users, the mount needs it. */
	if (cli.allow_other && !cli.default_permissions) {
		if (fuse_opt_add_arg(&args, "-odefault_permissions"))
			goto out;
		tx_log(LOG_INFO, "allow_other implies default_permissions (permission checks)");
	}
	if (!fo.foreground && daemon_start())
		goto out;
	/* Only the loop's supervisor takes termination signals (loop.c). */
	tx_loop_block_signals(&sigs);
	if (open_engine(store, &o) == 0) {
		status = run(&args, &fo, conn_opts, &sigs);
		if (txdirfs.fs) /* run closes it once mounted */
			txd_fs_close(txdirfs.fs);
	}
	daemon_ready(status ? status : 1); /* no-op once reported */
out:
	free(fo.mountpoint);
	free(conn_opts);
	free(cli.store);
	free(cli.durability);
	free(cli.commit_interval);
	free(cli.retain_s);
	free(cli.max_snapshot_age_s);
	free(cli.txn_grace_s);
	free(cli.max_leases);
	free(cli.max_waiters);
	free(cli.max_txns);
	free(cli.max_proposals);
	free(cli.max_state_temps);
	free(cli.max_ctl_mib);
	free(cli.read_ahead_kb);
	fuse_opt_free_args(&args);
	return status;
}
