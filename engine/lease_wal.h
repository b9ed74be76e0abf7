/*
 * lease_wal.h — the lease service's records in the local WAL: a
 * lease_backend whose append is wal_append(WAL_REC_LEASE) and whose sync is
 * wal_sync (group commit, W5). Replay: the store's WAL replay passes each
 * WAL_REC_LEASE payload to lease_replay.
 */
#ifndef TXD_LEASE_WAL_H
#define TXD_LEASE_WAL_H

#include "lease.h"
#include "wal.h"

struct lease_backend lease_wal_backend(struct wal *w);

#endif
