/*
 * store.h — the store directory: layout, FORMAT, and the LOCK that makes one
 * server its only writer.
 *
 * Layout (SPEC §7), created by store_init:
 *   FORMAT                 "txdir-store N\n" — written last, durably: a
 *                          directory without it is not (yet) a store.
 *                          N = 1: commits only; N = 2: the WAL may hold
 *                          lease records (WAL_REC_LEASE) and checkpoints
 *                          carry the lease snapshot (svc.h); N = 3
 *                          (STORE_FORMAT): also vote, state and prepared-
 *                          transaction records (WAL_REC_VOTE, _STATE,
 *                          _PREPARE, _RESOLVE), renews with their time, and
 *                          the services' section as a container (svc.h V8)
 *   LOCK                   flock(LOCK_EX) by the open server; holds "PID BOOT"
 *                          (its pid; the boot it runs in, hex: wal.h W9)
 *   objects/               pack files (chunk.h)
 *   coordination/...       the seed layout; dtc/wal holds the WAL segments,
 *                          dtc/checkpoints the checkpoints
 *
 * Invariants.
 *  S1 Every directory is fsynced after entries are created in it.
 *  S2 An interrupted init leaves a directory that a second init completes
 *     (only layout names, LOCK and FORMAT's temporary file; no FORMAT);
 *     anything else non-empty is refused.
 *  S3 A second opener fails with -TXD_ELOCKED and learns the holder's pid;
 *     nothing of the store is touched before the lock is held.
 *  S4 A store is private to the server's user: every directory the engine
 *     creates is 0700 and every file 0600 whatever the umask (os.h), and
 *     init makes an existing empty directory 0700 before filling it.
 *     store_check_private finds a part that others could read or write
 *     (an old store, a chmod): txdirfs refuses to mount it unless told
 *     to (-o allow_shared_store, txdirfs(8)).
 *  S5 A FORMAT other than version 1..STORE_FORMAT_VERSION (a newer version,
 *     or damaged) is refused with -TXD_EFORMAT (and a log line naming both
 *     versions); a directory without one is -TXD_ENOTSTORE. Neither creates
 *     LOCK. A format-1 store is opened as it is (st->format = 1) and stays
 *     format 1 until store_upgrade, which the services call before their
 *     first record (svc.h V3): an older binary keeps reading a store that
 *     holds nothing it cannot read.
 */
#ifndef TXD_STORE_H
#define TXD_STORE_H

#include <stddef.h>
#include <sys/types.h>

#define STORE_FORMAT_VERSION 3
#define STORE_FORMAT "txdir-store 3\n"

struct store {
	char *dir;
	char *wal_dir, *obj_dir, *ckpt_dir, *coord_dir;
	int lock_fd;
	bool same_boot; /* LOCK: the last server ran in this boot (wal.h W9) */
	_Atomic unsigned format; /* 1..STORE_FORMAT_VERSION, as FORMAT says */
};

int store_init(const char *dir);
int store_open(const char *dir, struct store *st, pid_t *holder);
/* 1 with the first shared part's path in bad and its mode, 0, or -errno. */
int store_check_private(const char *dir, char *bad, size_t cap, mode_t *mode);
void store_close(struct store *st);
/* Rewrite FORMAT as STORE_FORMAT, durably (S5). 0 or -errno. */
int store_upgrade(struct store *st);

#endif
