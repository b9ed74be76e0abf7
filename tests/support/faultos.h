/*
 * faultos.h — a txd_os_ops table for tests: counts calls, injects faults and
 * simulates crashes. Deterministic for a given seed.
 *
 * Install it with faultos_install() (only while no store/WAL is open: see
 * txd_os_set) and remove it with faultos_uninstall(). Every call is passed
 * to the real table unless a fault says otherwise.
 *
 * Faults (each fires once; n counts calls of that kind from the moment the
 * fault is armed, 1 = the next call):
 *   faultos_fail_nth(call, n, err)      the nth call returns err (-EIO,
 *                                       -ENOSPC...) without doing anything.
 *   faultos_tear_nth_pwrite(n, keep, crash)
 *                                       the nth pwrite writes only its first
 *                                       keep bytes and returns -EIO; with
 *                                       crash, process death follows.
 *   faultos_crash_at(call, n)           process death at the nth call (that
 *                                       call already fails).
 *
 * Crashes.
 *   Process death (faultos_crash): every later call fails with -EIO, except
 *   close, which really closes (so tests do not leak descriptors). Files keep
 *   every byte written before the crash — what the kernel would have.
 *   Power cut (faultos_power_cut(seed)): a reboot (boot_id changes) and
 *   process death, plus loss of what was
 *   not made durable, modelled like SQLite's crash VFS. For every file the
 *   table saw, it remembers the writes and truncations since that file's last
 *   fsync/fdatasync (with their pre-images). The cut restores each file to its
 *   last-synced content, then re-applies each unsynced write fully, as a torn
 *   prefix, or not at all (pseudo-random from seed). A file created since
 *   its directory was last fsynced vanishes with probability 1/2; a rename
 *   not followed by an fsync of the target's directory is undone with
 *   probability 1/2 (only when it did not replace an existing file).
 *   Not modelled: unlinks coming back, directory creation.
 *   Files that existed before faultos_install count as synced.
 *   After a crash, call faultos_revive() before "rebooting" (reopening): it
 *   ends the crash and forgets the tracking, keeping the table installed.
 *
 * Clock: faultos_set_clock_offset(ns) adds ns to both clocks.
 *
 * Thread-safe: a mutex orders the bookkeeping; fsync and fdatasync run
 * outside it (writes that race with an fsync stay "unsynced", which is the
 * conservative choice).
 */
#ifndef TXD_FAULTOS_H
#define TXD_FAULTOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../engine/os.h"

enum faultos_call {
	FOS_OPEN,
	FOS_CLOSE,
	FOS_PREAD,
	FOS_PWRITE,
	FOS_FSYNC,
	FOS_FDATASYNC,
	FOS_FTRUNCATE,
	FOS_FSTAT,
	FOS_RENAME,
	FOS_UNLINK,
	FOS_MKDIR,
	FOS_FLOCK,
	FOS_LISTDIR,
	FOS_FALLOCATE, /* recorded like a write of zeros (power cut) */
	FOS_NCALLS
};

extern const struct txd_os_ops faultos_ops;

void faultos_install(void);   /* faultos_reset() + txd_os_set(&faultos_ops) */
void faultos_uninstall(void); /* txd_os_set(NULL) + faultos_reset() */
void faultos_reset(void);     /* forget faults, counters, crash, tracking, clock */

uint64_t faultos_count(enum faultos_call call); /* calls since reset */
/* The next pwrite to a file whose path (as opened) contains part fails
 * with err, whatever thread makes it and whatever else writes first. */
void faultos_fail_next_pwrite_to(const char *part, int err);
/* pwrite calls to the file at path (as opened) since the reset. */
uint64_t faultos_pwrites_to(const char *path);

void faultos_fail_nth(enum faultos_call call, uint64_t n, int err);
void faultos_tear_nth_pwrite(uint64_t n, size_t keep, bool crash);
void faultos_crash_at(enum faultos_call call, uint64_t n);

void faultos_crash(void);
bool faultos_crashed(void);
void faultos_power_cut(uint64_t seed);
void faultos_revive(void);

void faultos_set_clock_offset(int64_t ns);

#endif
