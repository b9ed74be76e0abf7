/*
 * proto.c — the part of the kernel protocol libfuse 3.14 does not speak:
 * FUSE_HANDLE_KILLPRIV_V2 (protocol 7.33, Linux 5.11).
 *
 * Why: without it, the kernel asks for security.capability (GETXATTR) before
 * every write(2) and refreshes the attributes (GETATTR) before every chown,
 * to decide itself whether set-uid/set-gid bits must go: on `tar x` that was
 * 2.4 of 14 requests per file. With it, the kernel marks the superblock
 * SB_NOSEC — after one probe per attribute refresh it trusts the inode to
 * have no privileges to drop — and leaves dropping the bits to the server,
 * flagging the requests that must do it:
 *   SETATTR  FATTR_KILL_SUIDGID       chown of a non-directory (always);
 *                                     truncate by a caller without CAP_FSETID
 *   WRITE    FUSE_WRITE_KILL_SUIDGID  write by a caller without CAP_FSETID
 *                                     (the kernel writes such files through)
 *   OPEN, CREATE  FUSE_OPEN_KILL_SUIDGID  O_TRUNC by such a caller
 * The handlers pass the flag to the engine in the request's context
 * (txd_cred.kill_suidgid), which decides what goes. A security.capability
 * xattr is still removed by the kernel itself (REMOVEXATTR).
 *
 * How: the loop (loop.c) shows us each request read from /dev/fuse before
 * libfuse parses it, and each reply before it is written. The flag travels
 * with the request itself, never in per-thread state: libfuse keeps SETATTR's
 * FATTR_KILL_SUIDGID (as FUSE_SET_ATTR_KILL_SUID), and for WRITE, OPEN and
 * CREATE we set TX_O_KILL_SUIDGID in the request's file flags, which libfuse
 * hands the handler as fi->flags (txdirfs.h). The INIT reply gets
 * FUSE_HANDLE_KILLPRIV_V2 when the kernel offered it, and the loop learns
 * when INIT was answered (the kernel applies the reply's settings then:
 * readahead is tuned after it).
 */
#include <inttypes.h>
#include <linux/fuse.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>
#include <stdio.h>
#include <string.h>

#include "txdirfs.h"

static uint64_t init_unique; /* the INIT request's, while it is answered */
static uint32_t init_flags;  /* what the kernel offered in it */
static bool init_seen;

/* Requests read, by opcode; named for the protocol up to 7.38, the rest
 * (and opcodes past the table, e.g. CUSE_INIT) counted as "other". */
enum { OPS_MAX = 64 };
static uint64_t requests[OPS_MAX];
static const char *const op_names[OPS_MAX] = {
	[FUSE_LOOKUP] = "lookup", [FUSE_FORGET] = "forget", [FUSE_GETATTR] = "getattr",
	[FUSE_SETATTR] = "setattr", [FUSE_READLINK] = "readlink", [FUSE_SYMLINK] = "symlink",
	[FUSE_MKNOD] = "mknod", [FUSE_MKDIR] = "mkdir", [FUSE_UNLINK] = "unlink",
	[FUSE_RMDIR] = "rmdir", [FUSE_RENAME] = "rename", [FUSE_LINK] = "link",
	[FUSE_OPEN] = "open", [FUSE_READ] = "read", [FUSE_WRITE] = "write",
	[FUSE_STATFS] = "statfs", [FUSE_RELEASE] = "release", [FUSE_FSYNC] = "fsync",
	[FUSE_SETXATTR] = "setxattr", [FUSE_GETXATTR] = "getxattr",
	[FUSE_LISTXATTR] = "listxattr", [FUSE_REMOVEXATTR] = "removexattr",
	[FUSE_FLUSH] = "flush", [FUSE_INIT] = "init", [FUSE_OPENDIR] = "opendir",
	[FUSE_READDIR] = "readdir", [FUSE_RELEASEDIR] = "releasedir",
	[FUSE_FSYNCDIR] = "fsyncdir", [FUSE_GETLK] = "getlk", [FUSE_SETLK] = "setlk",
	[FUSE_SETLKW] = "setlkw", [FUSE_ACCESS] = "access", [FUSE_CREATE] = "create",
	[FUSE_INTERRUPT] = "interrupt", [FUSE_BMAP] = "bmap", [FUSE_DESTROY] = "destroy",
	[FUSE_IOCTL] = "ioctl", [FUSE_POLL] = "poll", [FUSE_NOTIFY_REPLY] = "notify_reply",
	[FUSE_BATCH_FORGET] = "batch_forget", [FUSE_FALLOCATE] = "fallocate",
	[FUSE_READDIRPLUS] = "readdirplus", [FUSE_RENAME2] = "rename2", [FUSE_LSEEK] = "lseek",
	[FUSE_COPY_FILE_RANGE] = "copy_file_range", [FUSE_SETUPMAPPING] = "setupmapping",
	[FUSE_REMOVEMAPPING] = "removemapping", [FUSE_SYNCFS] = "syncfs",
	[FUSE_TMPFILE] = "tmpfile",
};

/* txdir_op_duration_seconds{op}: from reading a request to writing its reply,
 * as a Prometheus histogram per opcode. A request's start is kept in a slot
 * picked by its unique id; a later request in the same slot before the reply
 * (a long wait) just loses that one sample. Requests without a reply
 * (FORGET) are not timed. */
static const double bucket_le[] = {1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
				   1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 10};
enum { NBUCKETS = sizeof(bucket_le) / sizeof(bucket_le[0]), NSLOTS = 4096 };
static struct {
	uint64_t bucket[NBUCKETS + 1]; /* the last one: +Inf only */
	uint64_t count, sum_ns;
} durations[OPS_MAX];
static struct {
	uint64_t unique, start_ns;
	uint32_t op;
} inflight[NSLOTS];

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void op_started(const struct fuse_in_header *h)
{
	unsigned slot = (unsigned)(h->unique % NSLOTS);
	__atomic_store_n(&inflight[slot].unique, 0, __ATOMIC_RELAXED);
	inflight[slot].op = h->opcode < OPS_MAX ? h->opcode : 0;
	inflight[slot].start_ns = mono_ns();
	__atomic_store_n(&inflight[slot].unique, h->unique, __ATOMIC_RELEASE);
}

static void op_answered(uint64_t unique)
{
	unsigned slot = (unsigned)(unique % NSLOTS);
	if (!unique || __atomic_load_n(&inflight[slot].unique, __ATOMIC_ACQUIRE) != unique)
		return;
	uint32_t op = inflight[slot].op;
	uint64_t ns = mono_ns() - inflight[slot].start_ns;
	if (!__atomic_compare_exchange_n(&inflight[slot].unique, &unique, 0, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return;
	int b = 0;
	while (b < NBUCKETS && (double)ns / 1e9 > bucket_le[b])
		b++;
	__atomic_fetch_add(&durations[op].bucket[b], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&durations[op].count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&durations[op].sum_ns, ns, __ATOMIC_RELAXED);
}

static const void *arg_of(const void *buf, size_t len, size_t need)
{
	return len >= sizeof(struct fuse_in_header) + need
		       ? (const char *)buf + sizeof(struct fuse_in_header)
		       : NULL;
}

static void *arg_rw(void *buf, size_t len, size_t need)
{
	return (void *)arg_of(buf, len, need);
}

/* The kernel's kill flag goes into the request's own file flags, which
 * libfuse hands the handler as fi->flags (txdirfs.h TX_O_KILL_SUIDGID). */
static void mark_killed(uint32_t *flags, bool kill)
{
	if (kill)
		*flags |= TX_O_KILL_SUIDGID;
}

void tx_proto_request(void *buf, size_t len)
{
	const struct fuse_in_header *h = buf;
	struct fuse_write_in *w;
	struct fuse_open_in *o;
	struct fuse_create_in *c;
	const struct fuse_init_in *in;

	if (len < sizeof(*h))
		return;
	/* slot 0 (no opcode) takes the ones beyond the table */
	__atomic_fetch_add(&requests[h->opcode < OPS_MAX ? h->opcode : 0], 1, __ATOMIC_RELAXED);
	if (h->opcode != FUSE_FORGET && h->opcode != FUSE_BATCH_FORGET)
		op_started(h);
	switch (h->opcode) {
	case FUSE_WRITE:
		if ((w = arg_rw(buf, len, sizeof(*w))))
			mark_killed(&w->flags, w->write_flags & FUSE_WRITE_KILL_SUIDGID);
		break;
	case FUSE_OPEN:
		if ((o = arg_rw(buf, len, sizeof(*o))))
			mark_killed(&o->flags, o->open_flags & FUSE_OPEN_KILL_SUIDGID);
		break;
	case FUSE_CREATE:
		if ((c = arg_rw(buf, len, sizeof(*c))))
			mark_killed(&c->flags, c->open_flags & FUSE_OPEN_KILL_SUIDGID);
		break;
	case FUSE_INIT:
		in = arg_of(buf, len, offsetof(struct fuse_init_in, flags) + sizeof(in->flags));
		init_flags = in ? in->flags : 0;
		init_unique = h->unique;
		__atomic_store_n(&init_seen, true, __ATOMIC_RELEASE);
		break;
	default:
		break;
	}
}

bool tx_proto_reply(struct iovec *iov, int count)
{
	const struct fuse_out_header *h;
	struct fuse_init_out *out;

	if (iov[0].iov_len < sizeof(*h))
		return false;
	h = iov[0].iov_base;
	op_answered(h->unique);
	if (!__atomic_load_n(&init_seen, __ATOMIC_ACQUIRE))
		return false;
	if (h->unique != init_unique)
		return false;
	__atomic_store_n(&init_seen, false, __ATOMIC_RELEASE);
	/* an error reply (a refused INIT) is not a mount that works */
	if (h->error || count < 2)
		return false;
	if (!(init_flags & FUSE_HANDLE_KILLPRIV_V2) ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags) + sizeof(out->flags))
		return true;
	out = iov[1].iov_base;
	out->flags |= FUSE_HANDLE_KILLPRIV_V2;
	return true;
}

/* snprintf at buf + len, counting past cap as snprintf does */
static int appendf(char *buf, size_t cap, int len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int appendf(char *buf, size_t cap, int len, const char *fmt, ...)
{
	size_t at = (size_t)len < cap ? (size_t)len : cap;
	va_list ap;

	va_start(ap, fmt);
	len += vsnprintf(at < cap ? buf + at : NULL, cap - at, fmt, ap);
	va_end(ap);
	return len;
}

static int append(char *buf, size_t cap, int len, const char *op, uint64_t n)
{
	return appendf(buf, cap, len, "txdir_fuse_requests_total{op=\"%s\"} %" PRIu64 "\n", op, n);
}

static int append_durations(char *buf, size_t cap, int len)
{
	len = appendf(buf, cap, len,
		      "# HELP txdir_op_duration_seconds Time from reading a FUSE request to "
		      "its reply, per operation.\n"
		      "# TYPE txdir_op_duration_seconds histogram\n");
	for (int op = 0; op < OPS_MAX; op++) {
		uint64_t count = __atomic_load_n(&durations[op].count, __ATOMIC_RELAXED), cum = 0;
		const char *name = op_names[op] ? op_names[op] : "other";

		if (!count)
			continue;
		for (int b = 0; b < NBUCKETS; b++) {
			cum += __atomic_load_n(&durations[op].bucket[b], __ATOMIC_RELAXED);
			len = appendf(buf, cap, len,
				      "txdir_op_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %" PRIu64
				      "\n", name, bucket_le[b], cum);
		}
		len = appendf(buf, cap, len,
			      "txdir_op_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
			      "txdir_op_duration_seconds_sum{op=\"%s\"} %.9f\n"
			      "txdir_op_duration_seconds_count{op=\"%s\"} %" PRIu64 "\n",
			      name, count, name,
			      (double)__atomic_load_n(&durations[op].sum_ns, __ATOMIC_RELAXED) / 1e9,
			      name, count);
	}
	return len;
}

int tx_proto_stats(void *arg, char *buf, size_t cap)
{
	uint64_t other = 0;
	int len;

	(void)arg;
	len = snprintf(buf, cap,
		       "# HELP txdir_fuse_requests_total Kernel requests read from /dev/fuse.\n"
		       "# TYPE txdir_fuse_requests_total counter\n");
	for (int op = 0; op < OPS_MAX; op++) {
		uint64_t n = __atomic_load_n(&requests[op], __ATOMIC_RELAXED);

		if (n && op_names[op])
			len = append(buf, cap, len, op_names[op], n);
		else
			other += n;
	}
	if (other)
		len = append(buf, cap, len, "other", other);
	return append_durations(buf, cap, len);
}
