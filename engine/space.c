/*
 * space.c — the reserve and the disk-full state (invariants SP1-SP7 in
 * space.h).
 */
#include "space.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os.h"
#include "rec.h"
#include "txdir.h"

struct space {
	pthread_mutex_t lock;
	char *path;        /* objects/reserve */
	char *dir;         /* for statvfs */
	uint64_t reserve;  /* R (SP1) */
	uint64_t held;     /* bytes the file holds now */
	bool full;         /* SP6 */
	char why[128];     /* SP6: the operation that met the full disk */
};

static bool no_space(int err)
{
	return err == -ENOSPC || err == -EDQUOT;
}

static uint64_t reserve_size(uint64_t ckpt_bytes)
{
	return 2 * ckpt_bytes > SPACE_MIN ? 2 * ckpt_bytes : SPACE_MIN;
}

/* Bytes the file system gives an unprivileged writer now. */
static uint64_t fs_free(const char *dir)
{
	struct statvfs st;

	if (txd_os->statvfs(dir, &st))
		return UINT64_MAX; /* cannot tell: do not refuse on a guess */
	return (uint64_t)st.f_bavail * st.f_frsize;
}

static int write_zeros(int fd, uint64_t from, uint64_t to)
{
	static const uint8_t z[64 << 10];
	int r = 0;

	for (uint64_t off = from; !r && off < to; off += sizeof(z)) {
		size_t n = to - off < sizeof(z) ? (size_t)(to - off) : sizeof(z);

		r = os_pwrite_full(fd, z, n, (off_t)off);
	}
	return r;
}

/* Lock held. Make the file hold sp->reserve bytes (SP2): allocate what is
 * missing. No space is not an error: the reserve stays short. */
static int fill(struct space *sp)
{
	uint64_t size = 0;
	int fd, r;

	fd = txd_os->open(sp->path, O_RDWR | O_CREAT, OS_FILE_MODE);
	if (fd < 0)
		return no_space(fd) ? 0 : fd;
	r = txd_os->fstat_size(fd, &size);
	if (!r && size > sp->reserve)
		r = txd_os->ftruncate(fd, (off_t)sp->reserve);
	else if (!r && size < sp->reserve)
		r = txd_os->fallocate(fd, (off_t)size, (off_t)(sp->reserve - size));
	if (r == -EOPNOTSUPP) /* no fallocate here: zeros hold blocks too */
		r = write_zeros(fd, size, sp->reserve);
	if (no_space(r)) {
		/* keep what is held; a partial allocation may have grown it */
		txd_os->fstat_size(fd, &size);
		r = 0;
	} else if (!r) {
		size = sp->reserve;
	}
	txd_os->close(fd);
	if (!r)
		sp->held = size < sp->reserve ? size : sp->reserve;
	return r;
}

int space_open(const char *objdir, uint64_t ckpt_bytes, struct space **out)
{
	struct space *sp = calloc(1, sizeof(*sp));
	int r = -ENOMEM;

	if (!sp)
		return -ENOMEM;
	pthread_mutex_init(&sp->lock, NULL);
	sp->dir = strdup(objdir);
	if (!sp->dir || asprintf(&sp->path, "%s/%s", objdir, SPACE_FILE) < 0) {
		sp->path = NULL;
		goto out_free;
	}
	sp->reserve = reserve_size(ckpt_bytes);
	r = fill(sp);
	if (r)
		goto out_free;
	*out = sp;
	return 0;

out_free:
	space_close(sp);
	return r;
}

void space_close(struct space *sp)
{
	if (!sp)
		return;
	pthread_mutex_destroy(&sp->lock);
	free(sp->path);
	free(sp->dir);
	free(sp);
}

bool space_record_grows(const void *ops, size_t len, uint64_t data_len)
{
	struct rec_hdr hdr;
	struct rec_iter it;
	struct rec_opv op;
	bool named = false, unnamed = false;

	if (data_len || len > UINT32_MAX || rec_validate(ops, (uint32_t)len, &hdr))
		return true;
	rec_iter_init(&it, ops, &hdr);
	while (rec_next(&it, &op) == 1) {
		switch (op.op) {
		case OP_XATTR_SET:
			return true;
		case OP_CONTENT: /* a truncation may rewrite its last chunk */
			if (op.u.content.nchg > (op.u.content.truncated ? 1u : 0u))
				return true;
			break;
		case OP_DENT_SET:
			named = true;
			break;
		case OP_DENT_DEL:
			unnamed = true;
			break;
		default:
			break;
		}
	}
	return named && !unnamed; /* a rename (over) frees or is even */
}

int space_release(struct space *sp)
{
	int fd, r = -ENOSPC;

	if (!sp)
		return r;
	pthread_mutex_lock(&sp->lock);
	if (!sp->held)
		goto out_unlock;
	fd = txd_os->open(sp->path, O_RDWR, 0);
	if (fd < 0) {
		r = fd;
		goto out_unlock;
	}
	r = txd_os->ftruncate(fd, 0);
	txd_os->close(fd);
	if (!r)
		sp->held = 0;
out_unlock:
	pthread_mutex_unlock(&sp->lock);
	return r;
}

void space_open_room(struct space *sp)
{
	if (sp && fs_free(sp->dir) < SPACE_SLACK)
		space_release(sp);
}

int space_may_grow(struct space *sp)
{
	uint64_t missing;

	if (!sp)
		return 0;
	pthread_mutex_lock(&sp->lock);
	missing = sp->reserve - sp->held;
	pthread_mutex_unlock(&sp->lock);
	if (!missing || fs_free(sp->dir) >= missing + SPACE_SLACK)
		return 0;
	return -ENOSPC;
}

void space_note_full(struct space *sp, const char *op, int err)
{
	if (!sp)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->full = true;
	snprintf(sp->why, sizeof(sp->why), "%s: %s", op, strerror(-err));
	pthread_mutex_unlock(&sp->lock);
}

void space_tick(struct space *sp, uint64_t ckpt_bytes)
{
	uint64_t want = reserve_size(ckpt_bytes);

	if (!sp)
		return;
	pthread_mutex_lock(&sp->lock);
	if (sp->held != want || sp->reserve != want) {
		uint64_t missing = want > sp->held ? want - sp->held : 0;

		if (missing && fs_free(sp->dir) < missing + SPACE_SLACK)
			goto out_unlock; /* SP5: not yet */
		sp->reserve = want;
		if (fill(sp))
			goto out_unlock;
	}
	if (sp->full && sp->held >= sp->reserve && fs_free(sp->dir) >= SPACE_SLACK)
		sp->full = false;
out_unlock:
	pthread_mutex_unlock(&sp->lock);
}

bool space_full(struct space *sp, char *why, size_t cap)
{
	bool full = false;

	if (why && cap)
		why[0] = 0;
	if (!sp)
		return full;
	pthread_mutex_lock(&sp->lock);
	full = sp->full || sp->held < sp->reserve;
	if (why && cap && sp->full)
		snprintf(why, cap, "%s", sp->why);
	else if (why && cap && full)
		snprintf(why, cap, "reserve short: %llu of %llu KiB held",
			 (unsigned long long)(sp->held >> 10), (unsigned long long)(sp->reserve >> 10));
	pthread_mutex_unlock(&sp->lock);
	return full;
}

void space_statfs(struct space *sp, struct statvfs *st)
{
	uint64_t missing, blocks;

	if (!sp)
		return;
	pthread_mutex_lock(&sp->lock);
	missing = sp->reserve - sp->held;
	pthread_mutex_unlock(&sp->lock);
	if (!st->f_frsize)
		return;
	blocks = (missing + st->f_frsize - 1) / st->f_frsize;
	st->f_bavail = st->f_bavail > blocks ? st->f_bavail - blocks : 0;
	st->f_bfree = st->f_bfree > blocks ? st->f_bfree - blocks : 0;
}

void space_get(struct space *sp, uint64_t *reserve, uint64_t *held)
{
	*reserve = *held = 0;
	if (!sp)
		return;
	pthread_mutex_lock(&sp->lock);
	*reserve = sp->reserve;
	*held = sp->held;
	pthread_mutex_unlock(&sp->lock);
}
