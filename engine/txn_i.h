/*
 * txn_i.h — txn.c's internals that dtc.c (prepared transactions) builds on.
 * Internal to those two files; everything else uses txn.h. fs->lock held
 * for all of them, as txn.h's calls.
 */
#ifndef TXD_TXN_I_H
#define TXD_TXN_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txn.h"

/* The status line (txn.h: one line, a path last and escaped). */
void txn_set_status(struct txn *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *txn_esc_path(const char *path, char *buf, size_t cap);
/* The end of t (T3, T4) and its derived record (T9). */
void txn_end(struct txd_fs *fs, struct txn *t, enum txn_state st);
void txn_write_record(struct txd_fs *fs, const struct txn *t);
void txn_free(struct txn *t);
/* Write sets. */
int txn_add_key(struct txn *t, uint64_t parent, const char *name, size_t len);
int txn_add_ino(struct txn *t, uint64_t ino);
bool txn_has_key(const struct txn *t, uint64_t parent, const char *name, size_t len);
bool txn_has_ino(const struct txn *t, uint64_t ino);
void txn_key_path(struct txd_fs *fs, const struct txn_key *k, char *buf, size_t cap);
/* Commit steps (txn.h): 1 (the bounded wait; packs synced with fs->lock
 * dropped), 1-2b (the checks), 3 (the log without the directory merge:
 * txn_old_dirs are the directories that existed at S), 4 (publish). */
void txn_wait_writers(struct txd_fs *fs, struct txn *t);
void txn_sync_packs(struct txd_fs *fs);
int txn_commit_checks(struct txd_fs *fs, struct txn *t);
int txn_old_dirs(struct txd_fs *fs, struct txn *t, uint64_t **out, uint32_t *n);
int txn_log_ops(const struct txn *t, const uint64_t *olddirs, uint32_t nold, struct rec_buf *b);
void txn_publish(struct txd_fs *fs, struct txn *t);
void txn_drop_dead(struct txd_fs *fs, struct txn *t);

#endif
