/*
 * state_wal.h — the state service's records in the local WAL: a
 * state_backend whose append is wal_append(WAL_REC_STATE) and whose sync is
 * wal_sync (group commit, W5). Replay: the services host passes each
 * WAL_REC_STATE payload to state_replay (svc.c).
 */
#ifndef TXD_STATE_WAL_H
#define TXD_STATE_WAL_H

#include "state.h"
#include "wal.h"

struct state_backend state_wal_backend(struct wal *w);

#endif
