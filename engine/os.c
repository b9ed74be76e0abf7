/*
 * os.c — the real system-call table and the helpers built on it.
 *
 * Every wrapper turns errno into a negative return (os.h conventions) and
 * retries EINTR where the call is restartable; nothing else. Helpers below
 * the table call only txd_os->..., so a test table sees every call the
 * engine makes, including the ones inside os_write_file_durable.
 */
#include "os.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* Everything the engine creates is private to the server's user: the
 * store holds every file's content, whatever its mode on the mount, so no
 * group or other bit is ever given (os.h). */
static int real_open(const char *path, int flags, mode_t mode)
{
	int fd;

	mode &= OS_PRIVATE_MASK;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int real_close(int fd)
{
	/* Linux always releases the descriptor, even on EINTR: never retry. */
	return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t real_pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r;

	do
		r = pread(fd, buf, n, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static ssize_t real_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t r;

	do
		r = pwrite(fd, buf, n, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* fsync errors are not retried on EINTR-free kernels; a failed fsync may
 * have dropped dirty pages, so the caller must treat it as fatal. */
static int real_fsync(int fd)
{
	return fsync(fd) < 0 ? -errno : 0;
}

static int real_fdatasync(int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int real_ftruncate(int fd, off_t len)
{
	int r;

	do
		r = ftruncate(fd, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int real_fallocate(int fd, off_t off, off_t len)
{
	int r;

	do
		r = fallocate(fd, 0, off, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int real_statvfs(const char *path, struct statvfs *st)
{
	return statvfs(path, st) < 0 ? -errno : 0;
}

static int real_fstat_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int real_rename(const char *from, const char *to)
{
	return rename(from, to) < 0 ? -errno : 0;
}

static int real_unlink(const char *path)
{
	return unlink(path) < 0 ? -errno : 0;
}

static int real_mkdir(const char *path, mode_t mode)
{
	return mkdir(path, mode & OS_PRIVATE_MASK) < 0 ? -errno : 0;
}

static int real_flock(int fd, int op)
{
	int r;

	do
		r = flock(fd, op);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int real_listdir(const char *dir, int (*cb)(const char *name, void *arg), void *arg)
{
	struct dirent *de;
	DIR *d;
	int r = 0;

	d = opendir(dir);
	if (!d)
		return -errno;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			r = errno ? -errno : 0;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		r = cb(de->d_name, arg);
		if (r)
			break;
	}
	closedir(d);
	return r;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_now_realtime_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

static uint64_t real_now_file_ns(void)
{
	return clock_ns(CLOCK_REALTIME_COARSE);
}

static uint64_t real_now_monotonic_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static uint64_t real_boot_id(void)
{
	static uint64_t id; /* read once: it changes only with a reboot */
	uint64_t v = __atomic_load_n(&id, __ATOMIC_RELAXED);
	if (v)
		return v;
	char buf[64];
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	v = XXH64(buf, (size_t)n, 0x7478646972626f6full);
	if (!v)
		v = 1;
	__atomic_store_n(&id, v, __ATOMIC_RELAXED);
	return v;
}

const struct txd_os_ops txd_os_real = {
	.open = real_open,
	.close = real_close,
	.pread = real_pread,
	.pwrite = real_pwrite,
	.fsync = real_fsync,
	.fdatasync = real_fdatasync,
	.ftruncate = real_ftruncate,
	.fallocate = real_fallocate,
	.fstat_size = real_fstat_size,
	.rename = real_rename,
	.unlink = real_unlink,
	.mkdir = real_mkdir,
	.flock = real_flock,
	.listdir = real_listdir,
	.statvfs = real_statvfs,
	.now_realtime_ns = real_now_realtime_ns,
	.now_file_ns = real_now_file_ns,
	.now_monotonic_ns = real_now_monotonic_ns,
	.boot_id = real_boot_id,
};

const struct txd_os_ops *txd_os_table = &txd_os_real;

void txd_os_set(const struct txd_os_ops *ops)
{
	__atomic_store_n(&txd_os_table, ops ? ops : &txd_os_real, __ATOMIC_RELEASE);
}

int os_pread_full(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = txd_os->pread(fd, p, n, off);

		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO; /* the file ends before the bytes we were promised */
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int os_pwrite_full(int fd, const void *buf, size_t n, off_t off)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t r = txd_os->pwrite(fd, p, n, off);

		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int os_fsync_dir(const char *path)
{
	int fd, r, rc;

	fd = txd_os->open(path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	r = txd_os->fsync(fd);
	rc = txd_os->close(fd);
	return r ? r : rc;
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* The temporary name is unique per writer thread so two concurrent writers
 * of different files never collide; the final rename is the commit point. */
/* tmp + write (+ fsync) + rename (+ fsync dir). */
static int write_file(const char *dir, const char *name, const void *buf, size_t n, bool durable)
{
	char tmpname[300];
	char *tmp = NULL, *dst = NULL;
	int fd, r;

	snprintf(tmpname, sizeof(tmpname), ".tmp.%s.%ld", name, (long)gettid());
	tmp = path_join(dir, tmpname);
	dst = path_join(dir, name);
	if (!tmp || !dst) {
		r = -ENOMEM;
		goto out_free;
	}
	fd = txd_os->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, OS_FILE_MODE);
	if (fd < 0) {
		r = fd;
		goto out_free;
	}
	r = os_pwrite_full(fd, buf, n, 0);
	if (!r && durable)
		r = txd_os->fsync(fd);
	txd_os->close(fd);
	if (r)
		goto out_unlink;
	r = txd_os->rename(tmp, dst);
	if (r)
		goto out_unlink;
	r = durable ? os_fsync_dir(dir) : 0;
	goto out_free;

out_unlink:
	txd_os->unlink(tmp);
out_free:
	free(tmp);
	free(dst);
	return r;
}

int os_write_file_durable(const char *dir, const char *name, const void *buf, size_t n)
{
	return write_file(dir, name, buf, n, true);
}

int os_write_file(const char *dir, const char *name, const void *buf, size_t n)
{
	return write_file(dir, name, buf, n, false);
}

int os_read_file(const char *path, char **out, size_t *len)
{
	uint64_t size;
	char *buf = NULL;
	int fd, r;

	fd = txd_os->open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	r = txd_os->fstat_size(fd, &size);
	if (r)
		goto out_close;
	if (size > ((uint64_t)1 << 31)) {
		r = -EFBIG; /* "small file": refuse rather than exhaust memory */
		goto out_close;
	}
	buf = malloc(size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out_close;
	}
	r = os_pread_full(fd, buf, size, 0);
	if (r) {
		free(buf);
		goto out_close;
	}
	buf[size] = '\0';
	*out = buf;
	if (len)
		*len = size;
out_close:
	txd_os->close(fd);
	return r;
}

int os_chmod_private(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -errno;
	if (!(st.st_mode & 077))
		return 0;
	return chmod(path, st.st_mode & 07700) < 0 ? -errno : 0;
}

/* nftw has no argument for its callback: one walk at a time is enough
 * (it runs once, before a store is opened). */
static __thread struct {
	char *bad;
	size_t cap;
	mode_t mode;
} shared_walk;

static int find_shared_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_SL || type == FTW_SLN)
		return 0; /* a link's own bits mean nothing */
	if (type == FTW_DNR || type == FTW_NS)
		return -EACCES;
	if (!(st->st_mode & 077))
		return 0; /* set-id and sticky bits give nobody access */
	snprintf(shared_walk.bad, shared_walk.cap, "%s", path);
	shared_walk.mode = st->st_mode & 07777;
	return 1;
}

int os_find_shared(const char *dir, char *bad, size_t cap, mode_t *mode)
{
	int r;

	shared_walk.bad = bad;
	shared_walk.cap = cap;
	shared_walk.mode = 0;
	r = nftw(dir, find_shared_one, 16, FTW_PHYS);
	if (r == -1)
		return -errno; /* nftw's own failure */
	if (r < 0)
		return r; /* find_shared_one's */
	if (r == 1 && mode)
		*mode = shared_walk.mode;
	return r;
}
