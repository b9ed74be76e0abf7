/*
 * state_wal.c — state records in the WAL (state_wal.h).
 */
#include "state_wal.h"

#include <sys/uio.h>

#include "rec.h"

static int sw_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct iovec iov = { .iov_base = (void *)rec, .iov_len = len };
	struct wal_pos pos;
	int err = wal_append(arg, WAL_REC_STATE, &iov, 1, &pos);

	if (!err)
		*lsn = pos.lsn;
	return err;
}

static int sw_sync(void *arg, uint64_t lsn)
{
	return wal_sync(arg, lsn);
}

struct state_backend state_wal_backend(struct wal *w)
{
	return (struct state_backend){ .append = sw_append, .sync = sw_sync, .arg = w };
}
