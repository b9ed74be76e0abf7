/*
 * vote_wal.c — vote records in the WAL (vote_wal.h).
 */
#include "vote_wal.h"

#include <sys/uio.h>

#include "rec.h"

static int vw_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	struct iovec iov = {.iov_base = (void *)rec, .iov_len = len};
	struct wal_pos pos;
	int err = wal_append(arg, WAL_REC_VOTE, &iov, 1, &pos);

	if (!err)
		*lsn = pos.lsn;
	return err;
}

static int vw_sync(void *arg, uint64_t lsn)
{
	return wal_sync(arg, lsn);
}

struct vote_backend vote_wal_backend(struct wal *w)
{
	return (struct vote_backend){.append = vw_append, .sync = vw_sync, .arg = w};
}
