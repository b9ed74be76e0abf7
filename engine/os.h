/*
 * os.h — every system call and clock read the engine makes.
 *
 * Layering rule: no engine module calls open/pread/pwrite/fsync/rename/...
 * or clock_gettime directly; they call txd_os->fn(...). Tests swap the table
 * (txd_os_set) to count calls, fail the Nth write or fsync, tear a write at a
 * byte offset, simulate a power cut (drop writes that were never fsynced), or
 * move the clock. The real table is txd_os_real.
 *
 * Conventions: every function returns 0 (or a byte count / fd) on success and
 * a negative errno on failure; errno itself is never the channel. Short
 * reads/writes are retried by the wrappers below (os_pread_full /
 * os_pwrite_full), not by callers.
 */
#ifndef TXD_OS_H
#define TXD_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

struct txd_os_ops {
	int (*open)(const char *path, int flags, mode_t mode);    /* fd or -errno */
	int (*close)(int fd);
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);  /* bytes or -errno */
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*fsync)(int fd);
	int (*fdatasync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	/* Allocate [off, off+len) (mode 0: the size grows to cover it, new
	 * bytes read as zeros). -ENOSPC/-EDQUOT when the disk cannot hold it:
	 * the engine reserves space this way before writing what must not be
	 * torn by a full disk (wal.h W8). -EOPNOTSUPP where the file system
	 * has no fallocate (callers then write zeros). */
	int (*fallocate)(int fd, off_t off, off_t len);
	int (*fstat_size)(int fd, uint64_t *size);
	int (*rename)(const char *from, const char *to);
	int (*unlink)(const char *path);
	int (*mkdir)(const char *path, mode_t mode);
	int (*flock)(int fd, int op);
	/* Calls cb(name, arg) for every entry of dir except "." and "..";
	 * a non-zero return from cb stops the walk and is returned. */
	int (*listdir)(const char *dir, int (*cb)(const char *name, void *arg), void *arg);
	/* The file system holding path: free space (space.h decides on it). */
	int (*statvfs)(const char *path, struct statvfs *st);
	uint64_t (*now_realtime_ns)(void);   /* CLOCK_REALTIME */
	/* CLOCK_REALTIME_COARSE: the clock file timestamps come from. It is
	 * the kernel's current_time() for FUSE inodes, so a write(2) in the
	 * same tick as the create finds mtime == ctime == now and does not
	 * dirty the inode (no extra SETATTR round trip and commit per file). */
	uint64_t (*now_file_ns)(void);
	uint64_t (*now_monotonic_ns)(void);  /* CLOCK_MONOTONIC */
	/* A number that stays the same until the machine reboots (a hash of
	 * /proc/sys/kernel/random/boot_id); 0 when unknown. Tests model a
	 * power cut as a reboot with it (wal.h W9). */
	uint64_t (*boot_id)(void);
};

extern const struct txd_os_ops txd_os_real;
extern const struct txd_os_ops *txd_os_table;
/* The table in use: an atomic read, since a test may install another
 * (txd_os_set) while the engine's threads run. */
#define txd_os (__atomic_load_n(&txd_os_table, __ATOMIC_ACQUIRE))

/* Install a table (NULL restores txd_os_real). The pointer is stored and
 * read atomically, so a test may swap tables while a store is open (each
 * call sees one table or the other; a test's crash simulation does this). */
void txd_os_set(const struct txd_os_ops *ops);

/* Store privacy: the engine's open (O_CREAT) and mkdir never give a group
 * or other bit, whatever mode the caller passes, so every file of a store is
 * 0600 and every directory 0700 under any usual umask (a store holds every
 * file's content, whatever its mode on the mount). */
#define OS_PRIVATE_MASK 0700
#define OS_FILE_MODE 0600
#define OS_DIR_MODE 0700

/* Outside the table (permissions, not data: no fault test needs them):
 * os_chmod_private clears path's group and other bits; os_find_shared walks
 * dir (not following symlinks) and returns 1 with the first file or
 * directory that has a group or other bit in bad (and its mode), 0 if none
 * has, or -errno (-EACCES: a part could not be read). */
int os_chmod_private(const char *path);
int os_find_shared(const char *dir, char *bad, size_t cap, mode_t *mode);

/* Loop over short transfers; -EIO if the file ends early on read. */
int os_pread_full(int fd, void *buf, size_t n, off_t off);
int os_pwrite_full(int fd, const void *buf, size_t n, off_t off);

/* fsync the directory at path (after creating or renaming entries in it). */
int os_fsync_dir(const char *path);

/* Write a whole small file durably: tmp + fsync + rename + fsync dir. */
int os_write_file_durable(const char *dir, const char *name, const void *buf, size_t n);

/* The same without fsyncs, for derived files (rebuilt or expendable). */
int os_write_file(const char *dir, const char *name, const void *buf, size_t n);

/* Read a whole small file into a malloc'd NUL-terminated buffer. */
int os_read_file(const char *path, char **out, size_t *len);

#endif
