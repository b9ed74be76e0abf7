/*
 * bench_mount.h — one txdir store mounted for a benchmark (l1_lease,
 * v1_vote, s1_state): STORE and MNT (the bench sets them), the server's
 * pid, mount_store (mountctl init, then txdirfs -f until .txdir answers),
 * umount_store, and a janitor process that unmounts if the bench dies
 * without its atexit handlers (bench_die, run.sh's bound).
 * Include after bench.h, in one translation unit.
 */
#ifndef TXD_BENCH_MOUNT_H
#define TXD_BENCH_MOUNT_H

#include <signal.h>

static char STORE[1024], MNT[1024];
static pid_t server = -1;

static bool is_mounted(void)
{
	char p[1100];
	struct stat a, b;

	snprintf(p, sizeof(p), "%s/.txdir", MNT);
	return stat(bench_dir(), &a) == 0 && stat(MNT, &b) == 0 && a.st_dev != b.st_dev &&
	       stat(p, &b) == 0;
}

static int run_quiet(char *const argv[])
{
	int status;
	pid_t p = fork();

	if (p == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (p < 0 || waitpid(p, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void mount_store(void)
{
	const char *mc = getenv("MOUNTCTL"), *fs = getenv("TXDIRFS");
	char *log = bench_path("server.log");

	if (!mc || !fs)
		bench_die("MOUNTCTL and TXDIRFS must name the binaries");
	{
		char *init[] = {(char *)mc, "init", STORE, NULL};

		if (run_quiet(init) != 0)
			bench_die("mountctl init %s failed", STORE);
	}
	server = fork();
	if (server == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(fs, fs, STORE, MNT, "-f", (char *)NULL);
		_exit(127);
	}
	free(log);
	for (int i = 0; i < 400 && !is_mounted(); i++) {
		if (waitpid(server, NULL, WNOHANG) == server)
			bench_die("txdirfs exited before mounting (see its log)");
		usleep(50000);
	}
	if (!is_mounted())
		bench_die("txdirfs did not mount %s", MNT);
}

static void umount_store(void)
{
	char *u[] = {"fusermount3", "-u", MNT, NULL}, *uz[] = {"fusermount3", "-uz", MNT, NULL};

	if (server < 0)
		return;
	if (run_quiet(u) != 0)
		run_quiet(uz);
	for (int i = 0; i < 200 && waitpid(server, NULL, WNOHANG) != server; i++)
		usleep(50000);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	server = -1;
}

static void on_exit_cleanup(void)
{
	if (server > 0)
		umount_store();
}

/* bench_die() _exits without atexit handlers, and run.sh's bound kills:
 * a janitor process waits for this one to go (EOF on a pipe) and then
 * unmounts and kills the server if the mount is still there. */
static void start_janitor(void)
{
	int p[2];
	char c;

	CKS(pipe(p));
	if (fork() == 0) {
		char *u[] = {"fusermount3", "-u", MNT, NULL},
		     *uz[] = {"fusermount3", "-uz", MNT, NULL};

		close(p[1]);
		setsid();
		while (read(p[0], &c, 1) != 0)
			;
		if (is_mounted()) {
			if (run_quiet(u) != 0)
				run_quiet(uz);
			kill(server, SIGKILL);
		}
		_exit(0);
	}
	close(p[0]); /* p[1] stays open (inherited by forks, closed at their exit too) */
	fcntl(p[1], F_SETFD, FD_CLOEXEC);
}

#endif
