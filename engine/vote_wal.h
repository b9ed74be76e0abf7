/*
 * vote_wal.h — the vote service's records in the local WAL: a vote_backend
 * whose append is wal_append(WAL_REC_VOTE) and whose sync is wal_sync
 * (group commit, W5). Replay: the store's WAL replay passes each
 * WAL_REC_VOTE payload to vote_replay (svc_replay dispatches by type).
 */
#ifndef TXD_VOTE_WAL_H
#define TXD_VOTE_WAL_H

#include "vote.h"
#include "wal.h"

struct vote_backend vote_wal_backend(struct wal *w);

#endif
