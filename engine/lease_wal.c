/*
 * lease_wal.c — lease records in the WAL (lease_wal.h).
 */
#include "lease_wal.h"

#include <sys/uio.h>

#include "rec.h"

static int lw_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct iovec iov = { .iov_base = (void *)rec, .iov_len = len };
	struct wal_pos pos;
	int err = wal_append(arg, WAL_REC_LEASE, &iov, 1, &pos);

	if (!err)
		*lsn = pos.lsn;
	return err;
}

static int lw_sync(void *arg, uint64_t lsn)
{
	return wal_sync(arg, lsn);
}

struct lease_backend lease_wal_backend(struct wal *w)
{
	return (struct lease_backend){ .append = lw_append, .sync = lw_sync, .arg = w };
}
