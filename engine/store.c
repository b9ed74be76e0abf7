/*
 * store.c — creating, locking and checking a store directory (store.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <syslog.h>
#include <unistd.h>

#include "os.h"
#include "store.h"
#include "txdir.h"

/* Every directory of the seed layout, parents before children. */
static const char *const layout[] = {
	"objects",
	"coordination",
	"coordination/state",
	"coordination/consensus",
	"coordination/consensus/proposals",
	"coordination/consensus/votes",
	"coordination/consensus/decisions",
	"coordination/dtc",
	"coordination/dtc/transactions",
	"coordination/dtc/wal",
	"coordination/dtc/checkpoints",
	"coordination/dtc/participant_inbox",
	"coordination/leases",
	"coordination/leases/active",
	"coordination/leases/cleanup_queue",
	"coordination/leases/completed",
	"coordination/recovery",
	"coordination/recovery/journals",
	"coordination/recovery/checkpoints",
	"coordination/recovery/dead_processes",
	"coordination/manifests",
	"coordination/temp",
	"coordination/commits",
};

static char *path_join(const char *a, const char *b)
{
	char *p;
	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

/* Names an interrupted init may have left (S2). */
static int only_layout(const char *name, void *arg)
{
	(void)arg;
	static const char *const ok[] = {"objects", "coordination", "LOCK", "FORMAT.tmp"};
	for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++)
		if (strcmp(name, ok[k]) == 0)
			return 0;
	/* FORMAT's temporary file (os_write_file_durable: ".tmp.NAME.TID") */
	return strncmp(name, ".tmp.FORMAT.", 12) != 0;
}

static int exists(const char *path)
{
	int fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	txd_os->close(fd);
	return 1;
}

static int mkdir_synced(const char *base, const char *rel)
{
	char *p = path_join(base, rel);
	if (!p)
		return -ENOMEM;
	int err = txd_os->mkdir(p, OS_DIR_MODE);
	if (err == -EEXIST)
		err = 0;
	char *parent = strrchr(p, '/');
	if (!err && parent) {
		*parent = 0;
		err = os_fsync_dir(p); /* S1: the new entry is durable */
	}
	free(p);
	return err;
}

int store_init(const char *dir)
{
	int err = txd_os->mkdir(dir, OS_DIR_MODE);
	if (err && err != -EEXIST)
		return err;
	bool existed = err == -EEXIST;
	char *fmt = path_join(dir, "FORMAT");
	if (!fmt)
		return -ENOMEM;
	err = exists(fmt);
	free(fmt);
	if (err)
		return err < 0 ? err : -EEXIST;
	err = txd_os->listdir(dir, only_layout, NULL);
	if (err)
		return err < 0 ? err : -TXD_ENOTSTORE;
	/* S4: a directory the user made (or an old init left) becomes private
	 * before anything is put in it. */
	if (existed && (err = os_chmod_private(dir)))
		return err;
	for (size_t k = 0; k < sizeof(layout) / sizeof(layout[0]); k++)
		if ((err = mkdir_synced(dir, layout[k])))
			return err;
	return os_write_file_durable(dir, "FORMAT", STORE_FORMAT, strlen(STORE_FORMAT));
}

static int check_format(const char *dir, unsigned *format);

const char *txd_format_problem(const char *dir, char *buf, size_t cap)
{
	unsigned v = 0;
	int err = check_format(dir, &v);
	if (err == -TXD_EFORMAT && v > STORE_FORMAT_VERSION)
		snprintf(buf, cap, "store format %u; this build reads formats 1 to %u", v,
			 STORE_FORMAT_VERSION);
	else if (err == -TXD_EFORMAT)
		snprintf(buf, cap, "FORMAT is not \"txdir-store N\" (this build reads formats 1 to %u)",
			 STORE_FORMAT_VERSION);
	else
		snprintf(buf, cap, "%s", err ? txd_strerror(err) : "the format is readable");
	return buf;
}

/* S5: "txdir-store N\n" with N in 1..STORE_FORMAT_VERSION (a NUL or
 * anything else inside must not pass). */
static int check_format(const char *dir, unsigned *format)
{
	char *path = path_join(dir, "FORMAT"), *buf = NULL;
	size_t len;
	if (!path)
		return -ENOMEM;
	int err = os_read_file(path, &buf, &len);
	free(path);
	if (err == -ENOENT)
		return -TXD_ENOTSTORE;
	if (err)
		return err;
	static const char pre[] = "txdir-store ";
	unsigned v = 0;
	size_t k = sizeof(pre) - 1;
	if (len > k + 1 && memcmp(buf, pre, k) == 0 && buf[len - 1] == '\n') {
		for (; k < len - 1 && buf[k] >= '0' && buf[k] <= '9' && v < 100000; k++)
			v = v * 10 + (unsigned)(buf[k] - '0');
		if (k < len - 1 && buf[k] >= '0' && buf[k] <= '9')
			v = 0; /* more digits than any format: not a number we name */
	}
	if (k != len - 1 || v < 1 || buf[sizeof(pre) - 1] == '0') {
		err = -TXD_EFORMAT;
	} else if (v > STORE_FORMAT_VERSION) {
		syslog(LOG_ERR, "txdir: %s: store format %u, this binary reads formats 1 to %u",
		       dir, v, STORE_FORMAT_VERSION);
		err = -TXD_EFORMAT;
	}
	*format = v;
	free(buf);
	return err;
}

int store_upgrade(struct store *st)
{
	int err = os_write_file_durable(st->dir, "FORMAT", STORE_FORMAT, strlen(STORE_FORMAT));
	if (!err) {
		syslog(LOG_NOTICE, "txdir: %s: store format %u upgraded to %u", st->dir,
		       (unsigned)st->format, STORE_FORMAT_VERSION);
		st->format = STORE_FORMAT_VERSION;
	}
	return err;
}

/* Take LOCK; on contention read the holder's pid from it (S3). */
static int take_lock(struct store *st, pid_t *holder)
{
	char *path = path_join(st->dir, "LOCK");
	if (!path)
		return -ENOMEM;
	int fd = txd_os->open(path, O_RDWR | O_CREAT | O_CLOEXEC, OS_FILE_MODE);
	free(path);
	if (fd < 0)
		return fd;
	int err = txd_os->flock(fd, LOCK_EX | LOCK_NB);
	if (err) {
		char buf[32] = {0};
		if (holder && txd_os->pread(fd, buf, sizeof(buf) - 1, 0) > 0)
			*holder = (pid_t)atol(buf);
		txd_os->close(fd);
		return err == -EWOULDBLOCK ? -TXD_ELOCKED : err;
	}
	/* LOCK holds "PID BOOT\n": the last server's boot (txd_os->boot_id), so
	 * recovery knows whether a power cut can have happened since (W9) */
	char old[64] = {0}, buf[64];
	uint64_t boot = txd_os->boot_id ? txd_os->boot_id() : 0, was = 0;
	if (txd_os->pread(fd, old, sizeof(old) - 1, 0) > 0) {
		char *sp = strchr(old, ' ');
		was = sp ? strtoull(sp + 1, NULL, 16) : 0;
	}
	st->same_boot = boot && was == boot;
	int n = snprintf(buf, sizeof(buf), "%ld %016" PRIx64 "\n", (long)getpid(), boot);
	if ((err = txd_os->ftruncate(fd, 0)) || (err = os_pwrite_full(fd, buf, n, 0))) {
		txd_os->close(fd);
		return err;
	}
	st->lock_fd = fd;
	return 0;
}

int store_check_private(const char *dir, char *bad, size_t cap, mode_t *mode)
{
	return os_find_shared(dir, bad, cap, mode);
}

int txd_store_check_private(const char *dir, char *bad, size_t cap, unsigned int *mode)
{
	mode_t m = 0;
	int r = store_check_private(dir, bad, cap, &m);

	if (mode)
		*mode = (unsigned int)m;
	return r;
}

int store_open(const char *dir, struct store *st, pid_t *holder)
{
	memset(st, 0, sizeof(*st));
	st->lock_fd = -1;
	unsigned format = 0;
	int err = check_format(dir, &format);
	if (err)
		return err;
	st->format = format;
	st->dir = strdup(dir);
	st->wal_dir = path_join(dir, "coordination/dtc/wal");
	st->obj_dir = path_join(dir, "objects");
	st->ckpt_dir = path_join(dir, "coordination/dtc/checkpoints");
	st->coord_dir = path_join(dir, "coordination");
	if (!st->dir || !st->wal_dir || !st->obj_dir || !st->ckpt_dir || !st->coord_dir) {
		err = -ENOMEM;
		goto out_free;
	}
	if ((err = take_lock(st, holder)))
		goto out_free;
	return 0;
out_free:
	store_close(st);
	return err;
}

void store_close(struct store *st)
{
	if (st->lock_fd >= 0)
		txd_os->close(st->lock_fd); /* releases the flock */
	free(st->dir);
	free(st->wal_dir);
	free(st->obj_dir);
	free(st->ckpt_dir);
	free(st->coord_dir);
	memset(st, 0, sizeof(*st));
	st->lock_fd = -1;
}
