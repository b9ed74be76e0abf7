/*
 * lease_wal.c — lease records in the WAL (lease_wal.h).
 */
#include "lease_wal.h"

#include <errno.h>
#include <sys/uio.h>

#include "rec.h"

static int lw_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct iovec iov = { .iov_base = (void *)rec, .iov_len = len };
	struct wal_pos pos;
	int err = wal_append(arg, WAL_REC_LEASE, &iov, 1, &pos);

	/* lease records are small and a release frees: the log's headroom
	 * may take them when the disk is full (wal.h W8) */
	if (err == -ENOSPC || err == -EDQUOT)
		err = wal_append_flags(arg, WAL_REC_LEASE, &iov, 1, WAL_APPEND_RESERVE, &pos);

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
