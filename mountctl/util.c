/*
 * util.c — what several mountctl commands need: paths, bounded probes of a
 * mount point, /proc/self/mountinfo, running fusermount3, /proc/locks.
 *
 * Why probes run in a child: a FUSE request to a hung server blocks the
 * caller in the kernel; only a fatal signal ends it. A child that we can
 * SIGKILL after a deadline keeps every mountctl command bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "mountctl.h"

static char last_err[1024];
static bool err_said;

bool mc_err_said(void)
{
	return err_said;
}

void mc_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	err_said = true;
	va_start(ap, fmt);
	vsnprintf(last_err, sizeof(last_err), fmt, ap);
	va_end(ap);
	fprintf(stderr, "mountctl: %s: %s\n", cmd, last_err);
}

void mc_err_keep(const char *msg)
{
	err_said = true;
	snprintf(last_err, sizeof(last_err), "%s", msg);
}

void mc_json_error(const char *key, const char *target, int code)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, key, target);
	cJSON_AddStringToObject(j, "status", "error");
	cJSON_AddNumberToObject(j, "exit", code);
	cJSON_AddStringToObject(j, "error", last_err);
	char *t = json_print(j, true);
	if (t)
		printf("%s\n", t);
	free(t);
	cJSON_Delete(j);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		fputs("mountctl: out of memory\n", stderr);
		abort();
	}
	return p;
}

char *mc_strdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

char *mc_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir);
	char *p;

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	p = xmalloc(dl + 1 + strlen(name) + 1);
	memcpy(p, dir, dl);
	if (dl == 1 && dir[0] == '/')
		strcpy(p + 1, name);
	else
		sprintf(p + dl, "/%s", name);
	return p;
}

/* The length of the valid UTF-8 sequence s starts (1..4), 0 if none
 * (overlong, surrogate, past U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
		 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	for (size_t k = 1; k < n; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

/* A C1 control (U+0080..U+009F) at s, a valid 2-byte sequence. */
static bool is_c1(const unsigned char *s)
{
	return s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
}

static char *esc_alloc(size_t n)
{
	char *o = malloc(n);
	if (!o)
		abort();
	return o;
}

char *mc_esc_line(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *o = esc_alloc(4 * strlen(s) + 1), *w = o;
	while (*p) {
		size_t n = utf8_seq(p);
		if (*p == '\n' || *p == '\\') {
			*w++ = '\\';
			*w++ = *p++ == '\n' ? 'n' : '\\';
		} else if (n == 1 && *p >= 0x20 && *p != 0x7f) {
			*w++ = (char)*p++;
		} else if (n > 1 && !is_c1(p)) {
			memcpy(w, p, n);
			w += n;
			p += n;
		} else { /* a control byte, a C1 control's bytes, not UTF-8 */
			for (size_t k = 0; k < (n ? n : 1); k++)
				w += sprintf(w, "\\x%02x", *p++);
		}
	}
	*w = 0;
	return o;
}

char *mc_json_tty(const char *json)
{
	const unsigned char *p = (const unsigned char *)json;
	char *o = esc_alloc(6 * strlen(json) + 1), *w = o;
	while (*p) {
		if (*p == 0x7f) {
			w += sprintf(w, "\\u007f");
			p++;
		} else if (is_c1(p)) {
			w += sprintf(w, "\\u00%02x", p[1]);
			p += 2;
		} else {
			*w++ = (char)*p++;
		}
	}
	*w = 0;
	return o;
}

static char *abspath_once(const char *path)
{
	char *copy = mc_strdup(path), *slash, *base, *parent, *out = NULL;
	size_t n = strlen(copy);

	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	slash = strrchr(copy, '/');
	if (!slash) {
		parent = realpath(".", NULL);
		base = copy;
	} else if (slash == copy) {
		parent = realpath("/", NULL);
		base = copy + 1;
	} else {
		*slash = '\0';
		parent = realpath(copy, NULL);
		base = slash + 1;
	}
	if (!parent)
		goto out_free;
	if (*base == '\0' || strcmp(base, ".") == 0) {
		out = parent;
		parent = NULL;
	} else if (strcmp(base, "..") == 0) {
		char *p2 = mc_join(parent, "..");

		out = realpath(p2, NULL);
		free(p2);
	} else {
		out = mc_join(parent, base);
	}
	free(parent);
out_free:
	free(copy);
	return out;
}

/* The directories above are resolved by realpath(3); the last component is
 * never stat()ed (a dead mount there would hang us), only readlink()ed: a
 * symlink to a mount point (`/srv/app -> /srv/releases/7`) resolves as
 * mountpoint(1) does. At most 40 links, as the kernel. */
char *mc_abspath(const char *path)
{
	char *out = abspath_once(path);

	for (int links = 0; out && links < 40; links++) {
		char target[PATH_MAX + 1];
		ssize_t k = readlink(out, target, PATH_MAX);

		if (k <= 0)
			break;
		target[k] = '\0';
		char *next, *dir = mc_strdup(out), *slash = strrchr(dir, '/');

		if (target[0] == '/' || !slash) {
			next = abspath_once(target);
		} else {
			slash[slash == dir ? 1 : 0] = '\0';
			char *joined = mc_join(dir, target);
			next = abspath_once(joined);
			free(joined);
		}
		free(dir);
		free(out);
		out = next;
	}
	return out;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for child pid until deadline (CLOCK_MONOTONIC ms), then kills it.
 * Returns the raw wait status, or -ETIMEDOUT after killing it. */
static int wait_deadline(pid_t pid, int64_t deadline)
{
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		usleep(2000);
	}
}

/* Reads fd into *buf (grown as needed, kept NUL-terminable) until EOF or
 * the deadline. Returns the number of bytes held. */
static size_t drain_until(int fd, char **buf, size_t *cap, int64_t deadline)
{
	size_t len = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0)
			break;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			break;
		if (!p.revents)
			continue;
		if (*cap - len < 4096) {
			char *nb = realloc(*buf, *cap * 2);

			if (!nb)
				break;
			*buf = nb;
			*cap *= 2;
		}
		n = read(fd, *buf + len, *cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	return len;
}

int mc_probe(const char *path, bool open_dir, int timeout_ms)
{
	struct stat st;
	int status, fd;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (stat(path, &st) < 0)
			_exit(errno & 0xff);
		if (!open_dir)
			_exit(0);
		/* OPENDIR always reaches the server: cached attributes do not. */
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		_exit(fd < 0 ? (errno & 0xff) : 0);
	}
	status = wait_deadline(pid, now_ms() + timeout_ms);
	if (status < 0)
		return status;
	if (!WIFEXITED(status))
		return -EIO;
	return -WEXITSTATUS(status);
}

/* Child side of mc_read_file: copy path to fd, exit with 0 or errno. */
static void __attribute__((noreturn)) read_child(const char *path, int wfd)
{
	char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		_exit(errno & 0xff);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf)), off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			_exit(errno & 0xff);
		if (n == 0)
			_exit(0);
		while (off < n) {
			ssize_t w = write(wfd, buf + off, n - off);

			if (w < 0 && errno != EINTR)
				_exit(EPIPE);
			if (w > 0)
				off += w;
		}
	}
}

ssize_t mc_read_file(const char *path, int timeout_ms, char **out)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	int pfd[2], status;
	ssize_t ret;
	pid_t pid;

	*out = NULL;
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out_free;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(pfd[0]);
		close(pfd[1]);
		goto out_free;
	}
	if (pid == 0) {
		close(pfd[0]);
		read_child(path, pfd[1]);
	}
	close(pfd[1]);
	len = drain_until(pfd[0], &buf, &cap, deadline);
	close(pfd[0]);
	status = wait_deadline(pid, deadline);
	if (status < 0) {
		ret = status;
		goto out_free;
	}
	if (!WIFEXITED(status)) {
		ret = -EIO;
		goto out_free;
	}
	if (WEXITSTATUS(status) != 0) {
		ret = -WEXITSTATUS(status);
		goto out_free;
	}
	buf[len] = '\0';
	*out = buf;
	return (ssize_t)len;
out_free:
	free(buf);
	return ret;
}

/* Child side of mc_read_files: for each path, a header (i32 0 or errno,
 * u32 length) then the bytes; exits 0 (or EPIPE if the parent is gone). */
static void __attribute__((noreturn)) read_many_child(char *const *paths, size_t n, int wfd)
{
	size_t cap = 65536;
	char *buf = malloc(cap);

	if (!buf)
		_exit(ENOMEM);
	for (size_t i = 0; i < n; i++) {
		int32_t err = 0;
		size_t len = 0;
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			err = errno;
		while (fd >= 0) {
			if (cap - len < 4096) {
				char *nb = realloc(buf, cap * 2);

				if (!nb) {
					err = ENOMEM;
					break;
				}
				buf = nb;
				cap *= 2;
			}
			ssize_t k = read(fd, buf + len, cap - len);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				err = k < 0 ? errno : 0;
				break;
			}
			len += (size_t)k;
		}
		if (fd >= 0)
			close(fd);
		if (err)
			len = 0;
		uint32_t l32 = (uint32_t)len;
		char hdr[8];

		memcpy(hdr, &err, 4);
		memcpy(hdr + 4, &l32, 4);
		for (size_t off = 0, total = 8 + len; off < total;) {
			const char *from = off < 8 ? hdr + off : buf + (off - 8);
			size_t chunk = off < 8 ? 8 - off : total - off;
			ssize_t w = write(wfd, from, chunk);

			if (w < 0 && errno != EINTR)
				_exit(EPIPE);
			if (w > 0)
				off += (size_t)w;
		}
	}
	_exit(0);
}

void mc_read_files(char *const *paths, size_t n, int timeout_ms, char **out, ssize_t *lens)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t len = 0, cap = 65536, at = 0;
	char *buf = xmalloc(cap);
	int pfd[2];
	pid_t pid = -1;

	for (size_t i = 0; i < n; i++) {
		out[i] = NULL;
		lens[i] = -ETIMEDOUT;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		for (size_t i = 0; i < n; i++)
			lens[i] = -errno;
		free(buf);
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		read_many_child(paths, n, pfd[1]);
	}
	if (pid < 0)
		for (size_t i = 0; i < n; i++)
			lens[i] = -errno;
	close(pfd[1]);
	if (pid > 0) {
		len = drain_until(pfd[0], &buf, &cap, deadline);
		/* EOF came with the child's exit; past the deadline it is killed */
		(void)wait_deadline(pid, deadline);
	}
	close(pfd[0]);
	for (size_t i = 0; i < n && len - at >= 8; i++) {
		int32_t err;
		uint32_t l32;

		memcpy(&err, buf + at, 4);
		memcpy(&l32, buf + at + 4, 4);
		if (len - at - 8 < l32)
			break; /* cut by the deadline */
		at += 8;
		if (err) {
			lens[i] = -err;
		} else {
			out[i] = xmalloc((size_t)l32 + 1);
			memcpy(out[i], buf + at, l32);
			out[i][l32] = '\0';
			lens[i] = (ssize_t)l32;
		}
		at += l32;
	}
	free(buf);
}

/* Undoes mountinfo's octal escapes (\040 for space, ...) in place. */
static void unescape_octal(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* The last mount at abs_mnt: 1 with its type (and, for FUSE, the user_id=
 * of its super options: who mounted it, or -1), 0 if none, or -errno. */
static int mountinfo_entry(const char *abs_mnt, char **fstype, long *owner)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *found = NULL;
	size_t cap = 0;
	int ret = 0;

	if (owner)
		*owner = -1;
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root MOUNTPOINT opts [optional...] - FSTYPE src superopts */
		char *save = NULL, *tok, *mp = NULL, *type = NULL, *super = NULL, *uid;
		int field = 0;

		for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
			if (++field == 5)
				mp = tok;
			if (strcmp(tok, "-") == 0 && field > 6) {
				type = strtok_r(NULL, " \n", &save);
				if (type && strtok_r(NULL, " \n", &save))
					super = strtok_r(NULL, " \n", &save);
				break;
			}
		}
		if (!mp || !type)
			continue;
		unescape_octal(mp);
		if (strcmp(mp, abs_mnt) == 0) {
			free(found);
			found = mc_strdup(type);
			ret = 1;
			if (owner) {
				uid = super ? strstr(super, "user_id=") : NULL;
				*owner = uid && (uid == super || uid[-1] == ',') ? atol(uid + 8) : -1;
			}
		}
	}
	free(line);
	fclose(f);
	if (fstype)
		*fstype = found;
	else
		free(found);
	return ret;
}

int mc_mountinfo_find(const char *abs_mnt, char **fstype)
{
	return mountinfo_entry(abs_mnt, fstype, NULL);
}

long mc_mount_owner(const char *abs_mnt)
{
	char *fstype = NULL;
	long owner = -1;
	int r = mountinfo_entry(abs_mnt, &fstype, &owner);

	if (r <= 0 || strncmp(fstype, "fuse", 4) != 0)
		owner = -1;
	free(fstype);
	return owner;
}

void mc_err_not_ours(const char *cmd, const char *mnt, int state)
{
	switch (state) {
	case MC_MNT_NONE:
	case MC_MNT_OTHER:
		mc_err(cmd, "%s is not a txdir mount%s", mnt,
		       state == MC_MNT_NONE ? " (nothing is mounted there)" : "");
		break;
	case MC_MNT_STALE:
		mc_err(cmd, "%s is the stale mount of a dead txdirfs; mount its store again", mnt);
		break;
	case MC_MNT_HUNG:
		mc_err(cmd, "%s does not answer (its txdirfs is stuck)", mnt);
		break;
	default:
		mc_err(cmd, "%s: %s", mnt, mc_mnt_state_name(state));
	}
}

int mc_mnt_state(const char *abs_mnt)
{
	char *fstype = NULL, *ctl;
	int r, found;

	r = mc_probe(abs_mnt, true, MC_PROBE_MS);
	if (r == -ENOTCONN)
		return MC_MNT_STALE;
	if (r == -ETIMEDOUT)
		return MC_MNT_HUNG;
	if (r < 0)
		return r;
	found = mc_mountinfo_find(abs_mnt, &fstype);
	if (found <= 0)
		return MC_MNT_NONE;
	if (strncmp(fstype, "fuse", 4) != 0) {
		free(fstype);
		return MC_MNT_OTHER;
	}
	free(fstype);
	ctl = mc_join(abs_mnt, ".txdir");
	r = mc_probe(ctl, false, MC_PROBE_MS);
	free(ctl);
	if (r == 0)
		return MC_MNT_OURS;
	if (r == -ENOTCONN)
		return MC_MNT_STALE;
	if (r == -ETIMEDOUT)
		return MC_MNT_HUNG;
	return MC_MNT_OTHER;
}

const char *mc_mnt_state_name(int state)
{
	switch (state) {
	case MC_MNT_NONE:
		return "not mounted";
	case MC_MNT_OURS:
		return "mounted";
	case MC_MNT_STALE:
		return "stale (its server is gone)";
	case MC_MNT_HUNG:
		return "not answering";
	case MC_MNT_OTHER:
		return "not a txdir mount";
	default:
		return strerror(-state);
	}
}

int mc_run_capture(char *const argv[], int timeout_ms, char **output)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	int pfd[2], status;
	pid_t pid;

	*output = NULL;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		goto out_errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		goto out_errno;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvp(argv[0], argv);
		dprintf(2, "%s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	len = drain_until(pfd[0], &buf, &cap, deadline);
	close(pfd[0]);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	buf[len] = '\0';
	*output = buf;
	status = wait_deadline(pid, deadline);
	if (status < 0)
		return status;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
out_errno:
	status = -errno;
	free(buf);
	return status;
}

int mc_fusermount_u(const char *abs_mnt, bool lazy, char **output)
{
	char *argv[] = {"fusermount3", lazy ? "-uz" : "-u", "--", (char *)abs_mnt, NULL};

	return mc_run_capture(argv, 30000, output);
}

bool mc_pid_alive(pid_t pid)
{
	char path[64], buf[512], *close_paren;
	ssize_t n;
	int fd;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	/* "pid (comm) S ...": a zombie has finished, whoever reaps it. */
	close_paren = strrchr(buf, ')');
	return !(close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z');
}

pid_t mc_store_lock_holder(const char *store)
{
	char *lock = mc_join(store, "LOCK"), *line = NULL;
	struct stat st;
	size_t cap = 0;
	pid_t holder = 0;
	FILE *f;

	if (stat(lock, &st) < 0)
		goto out_free;
	f = fopen("/proc/locks", "re");
	if (!f)
		goto out_free;
	while (getline(&line, &cap, f) > 0) {
		/* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" */
		unsigned int maj, min;
		unsigned long long ino;
		char type[16];
		int pid;

		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%llu", type, &pid, &maj, &min, &ino) !=
		    5)
			continue;
		if (strcmp(type, "FLOCK") != 0 || ino != (unsigned long long)st.st_ino ||
		    maj != major(st.st_dev) || min != minor(st.st_dev))
			continue;
		holder = pid;
		break;
	}
	free(line);
	fclose(f);
out_free:
	free(lock);
	return holder;
}

int mc_mnt_arg(const struct mc_cmd *cmd, int argc, char **argv, int first, char **mnt)
{
	if (argc - first != 1)
		return mc_usage(cmd, argc - first < 1 ? "missing MNT" : "too many arguments");
	*mnt = mc_abspath(argv[first]);
	if (!*mnt) {
		mc_err(cmd->name, "%s: %s", argv[first], strerror(errno));
		return MC_EXIT_FAIL;
	}
	return -1;
}

int mc_read_mnt_args(const struct mc_cmd *cmd, int argc, char **argv, bool *json, char **mnt)
{
	int first, r = mc_parse_read_opts(cmd, argc, argv, json, &first);

	return r >= 0 ? r : mc_mnt_arg(cmd, argc, argv, first, mnt);
}

bool mc_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool mc_coord_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 255 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p == '/' || *p <= ' ' || *p == 0x7f)
			return false;
	}
	return true;
}

int mc_write_whole(const char *path, int flags, const void *data, size_t len)
{
	const char *p = data;
	size_t off = 0;
	int fd = open(path, O_WRONLY | O_CLOEXEC | flags, 0644), r = 0;

	if (fd < 0)
		return -errno;
	while (off < len) {
		/* 64 KiB at a time, as cp and editors write: the server buffers */
		size_t chunk = len - off > 65536 ? 65536 : len - off;
		ssize_t n = write(fd, p + off, chunk);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

ssize_t mc_read_small(const char *path, char *buf, size_t len)
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

int mc_read_input(const char *file, size_t max, char **out, size_t *len)
{
	bool std_in = !file || strcmp(file, "-") == 0;
	int fd = std_in ? 0 : open(file, O_RDONLY | O_CLOEXEC), r = 0;
	size_t cap = 65536, n = 0;
	char *buf;

	*out = NULL;
	*len = 0;
	if (fd < 0)
		return -errno;
	buf = xmalloc(cap + 1);
	for (;;) {
		ssize_t got;

		if (n == cap) {
			char *nb;

			if (cap > max) {
				r = -EFBIG;
				break;
			}
			nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				abort();
			buf = nb;
			cap *= 2;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			break;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (!std_in)
		close(fd);
	if (r == 0 && n > max)
		r = -EFBIG;
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

int mc_check_tree(const char *cmd, const char *mnt, const char *rel, const char *what,
		  int code)
{
	int st = mc_mnt_state(mnt);
	char *path;
	struct stat sb;

	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd, mnt, st);
		return code;
	}
	path = mc_join(mnt, rel);
	st = stat(path, &sb);
	free(path);
	if (st < 0) {
		mc_err(cmd, "%s: this txdirfs has no %s (no %s support)", mnt, rel, what);
		return code;
	}
	return 0;
}
