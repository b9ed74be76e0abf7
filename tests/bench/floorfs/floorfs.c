/*
 * floorfs — the FUSE floor of this machine, for the benchmarks.
 *
 * An in-memory file system served by txdirfs's own request loop
 * (fusefs/loop.c, fusefs/proto.c) with txdirfs's kernel settings (writeback
 * cache, FUSE_HANDLE_KILLPRIV_V2, 1 s entry/attr timeouts, 1 MiB writes,
 * coarse-clock timestamps) and no engine: no commit, no log, no versions,
 * no locks beyond one mutex. What a workload costs on floorfs is what the
 * kernel's FUSE protocol costs here; what txdir costs above it is the
 * engine's. tests/bench/m8_untar_make.sh reports it as the "FUSE floor" row.
 *
 *   floorfs MOUNTPOINT      foreground; ends at unmount or SIGTERM
 *
 * At the end it prints the requests it read per operation and their times
 * (proto.c's txdir_fuse_requests_total and txdir_op_duration_seconds, as
 * txdirfs shows them in .txdir/stats) to stderr: the benchmarks keep it in
 * their log, to compare the two servers request by request.
 *
 * Enough of POSIX for `tar x`: lookup, mkdir, mknod, create, open, read,
 * write, setattr, symlink, readlink, link, unlink, rmdir, getxattr (none
 * stored), flush, release, fsync; no readdir or rename. Nothing but file
 * bytes is ever freed (a benchmark process).
 *
 * File bytes live in one sparse memfd, at a fixed slot per inode (SLOT_SHIFT):
 * WRITE and READ are one pwrite/pread, truncation punches a hole. Not in
 * malloc'ed memory: on this VM a first touch of an anonymous page costs
 * 50-80 us (a page fault the hypervisor handles), so an untar of 120 MiB into
 * malloc'ed buffers spent 0.6-0.8 s in faults — more than the FUSE protocol
 * itself. Page-cache pages of a memfd come from the kernel with no fault,
 * as the pages of txdirfs's WAL segments do.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "txdirfs.h"

struct node {
	struct stat st;
	char *target; /* a symlink's */
};

struct dentry {
	struct dentry *next;
	fuse_ino_t parent, ino;
	char name[];
};

enum { HASH_SIZE = 1 << 16 };
/* A file's bytes are at [ino << SLOT_SHIFT, + its size) in data_fd: 4 GiB a
 * file (m5 writes 1 GiB), room for 2^30 inodes in a sparse file. */
#define SLOT_SHIFT 32
#define SLOT_MAX   ((off_t)1 << SLOT_SHIFT)

static int data_fd = -1;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct node *nodes; /* index = inode number; 1 is the root */
static size_t nnodes, nodes_cap;
static struct dentry *hash[HASH_SIZE];

/* ---- what fusefs/loop.c and proto.c expect of their program ---- */
void tx_log(int level, const char *fmt, ...)
{
	va_list ap;

	(void)level;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void tx_mount_ready(void) {}

/* ---- the tree ---- */
static struct timespec now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME_COARSE, &t);
	return t;
}

static unsigned int hash_of(fuse_ino_t parent, const char *name)
{
	uint64_t h = parent * 0x9e3779b97f4a7c15ull;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
	return (unsigned int)(h >> 40) & (HASH_SIZE - 1);
}

static struct dentry *find(fuse_ino_t parent, const char *name)
{
	for (struct dentry *d = hash[hash_of(parent, name)]; d; d = d->next)
		if (d->parent == parent && !strcmp(d->name, name))
			return d;
	return NULL;
}

static fuse_ino_t node_new(uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	struct timespec t = now();

	if (nnodes >= nodes_cap) {
		size_t cap = nodes_cap ? nodes_cap * 2 : 1024;
		struct node *n = realloc(nodes, cap * sizeof(*n));

		if (!n)
			return 0;
		nodes = n;
		nodes_cap = cap;
	}
	memset(&nodes[nnodes], 0, sizeof(nodes[nnodes]));
	nodes[nnodes].st = (struct stat){.st_ino = nnodes, .st_mode = mode, .st_nlink = 1,
					 .st_uid = uid, .st_gid = gid, .st_rdev = rdev,
					 .st_blksize = 4096, .st_atim = t, .st_mtim = t, .st_ctim = t};
	return nnodes++;
}

/* Links a new node under parent; replies the entry or an error. */
static void add_entry(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      dev_t rdev, const char *target, struct fuse_file_info *fi)
{
	struct fuse_entry_param e = {.attr_timeout = 1.0, .entry_timeout = 1.0};
	size_t len = strlen(name);
	struct dentry *d;
	fuse_ino_t ino;

	pthread_mutex_lock(&mu);
	if (find(parent, name)) {
		pthread_mutex_unlock(&mu);
		fuse_reply_err(req, EEXIST);
		return;
	}
	ino = node_new(fuse_req_ctx(req)->uid, fuse_req_ctx(req)->gid, mode, rdev);
	d = ino ? malloc(sizeof(*d) + len + 1) : NULL;
	if (!d || (target && !(nodes[ino].target = strdup(target)))) {
		pthread_mutex_unlock(&mu);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (target)
		nodes[ino].st.st_size = (off_t)strlen(target);
	if (S_ISDIR(mode)) {
		nodes[ino].st.st_nlink = 2;
		nodes[parent].st.st_nlink++;
	}
	d->parent = parent;
	d->ino = ino;
	memcpy(d->name, name, len + 1);
	d->next = hash[hash_of(parent, name)];
	hash[hash_of(parent, name)] = d;
	nodes[parent].st.st_mtim = nodes[parent].st.st_ctim = now();
	e.ino = ino;
	e.attr = nodes[ino].st;
	pthread_mutex_unlock(&mu);
	if (fi)
		fuse_reply_create(req, &e, fi);
	else
		fuse_reply_entry(req, &e);
}

/* ---- requests ---- */
static void fl_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want |= conn->capable & (FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_ASYNC_READ |
				       FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_CACHE_SYMLINKS |
				       FUSE_CAP_ATOMIC_O_TRUNC);
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_write = 1u << 20;
	conn->time_gran = 1;
}

static void fl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = {.attr_timeout = 1.0, .entry_timeout = 1.0};
	struct dentry *d;

	pthread_mutex_lock(&mu);
	d = find(parent, name);
	if (d) {
		e.ino = d->ino;
		e.attr = nodes[d->ino].st;
	}
	pthread_mutex_unlock(&mu);
	/* a negative entry (ino 0) is cached for entry_timeout, as txdirfs's */
	fuse_reply_entry(req, &e);
}

static void fl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	pthread_mutex_lock(&mu);
	st = nodes[ino].st;
	pthread_mutex_unlock(&mu);
	fuse_reply_attr(req, &st, 1.0);
}

static off_t slot(fuse_ino_t ino)
{
	return (off_t)ino << SLOT_SHIFT;
}

/* truncate(2), O_TRUNC: the bytes past size go (a later extension reads
 * zeros: the hole). */
static int set_size(fuse_ino_t ino, off_t size)
{
	struct node *n = &nodes[ino];

	if (size > SLOT_MAX)
		return EFBIG;
	if (size < n->st.st_size &&
	    fallocate(data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, slot(ino) + size,
		      n->st.st_size - size))
		return errno;
	n->st.st_size = size;
	return 0;
}

static void fl_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct node *n;
	struct stat st;
	int err = 0;

	(void)fi;
	pthread_mutex_lock(&mu);
	n = &nodes[ino];
	if (to_set & FUSE_SET_ATTR_SIZE)
		err = set_size(ino, attr->st_size);
	if (to_set & FUSE_SET_ATTR_MODE)
		n->st.st_mode = (n->st.st_mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		n->st.st_uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		n->st.st_gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_ATIME)
		n->st.st_atim = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		n->st.st_atim = now();
	if (to_set & FUSE_SET_ATTR_MTIME)
		n->st.st_mtim = attr->st_mtim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		n->st.st_mtim = now();
	n->st.st_ctim = (to_set & FUSE_SET_ATTR_CTIME) ? attr->st_ctim : now();
	st = n->st;
	pthread_mutex_unlock(&mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, 1.0);
}

static void fl_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	add_entry(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, NULL);
}

static void fl_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	add_entry(req, parent, name, mode, rdev, NULL, NULL);
}

static void fl_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	add_entry(req, parent, name, S_IFLNK | 0777, 0, target, NULL);
}

static void fl_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char target[4096];

	pthread_mutex_lock(&mu);
	snprintf(target, sizeof(target), "%s", nodes[ino].target ? nodes[ino].target : "");
	pthread_mutex_unlock(&mu);
	fuse_reply_readlink(req, target);
}

static void fl_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	add_entry(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, fi);
}

static void fl_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = {.attr_timeout = 1.0, .entry_timeout = 1.0, .ino = ino};
	size_t len = strlen(name);
	struct dentry *d = malloc(sizeof(*d) + len + 1);

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&mu);
	d->parent = parent;
	d->ino = ino;
	memcpy(d->name, name, len + 1);
	d->next = hash[hash_of(parent, name)];
	hash[hash_of(parent, name)] = d;
	nodes[ino].st.st_nlink++;
	nodes[ino].st.st_ctim = now();
	e.attr = nodes[ino].st;
	pthread_mutex_unlock(&mu);
	fuse_reply_entry(req, &e);
}

/* unlink and rmdir: the name goes (tar replaces links and files by name) */
static void fl_remove(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dentry **p = &hash[hash_of(parent, name)];
	int err = ENOENT;

	pthread_mutex_lock(&mu);
	for (; *p; p = &(*p)->next)
		if ((*p)->parent == parent && !strcmp((*p)->name, name)) {
			struct node *n = &nodes[(*p)->ino];

			n->st.st_nlink = S_ISDIR(n->st.st_mode) ? 0 : n->st.st_nlink - 1;
			/* benchmarks remove files only once they closed them */
			if (!n->st.st_nlink && S_ISREG(n->st.st_mode))
				set_size((fuse_ino_t)(n - nodes), 0);
			n->st.st_ctim = nodes[parent].st.st_mtim = nodes[parent].st.st_ctim = now();
			*p = (*p)->next; /* the dentry leaks: a benchmark process */
			err = 0;
			break;
		}
	pthread_mutex_unlock(&mu);
	fuse_reply_err(req, err);
}

static void fl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int err = 0;

	if (fi->flags & O_TRUNC) {
		pthread_mutex_lock(&mu);
		err = set_size(ino, 0);
		pthread_mutex_unlock(&mu);
	}
	fi->keep_cache = 1;
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_open(req, fi);
}

static void fl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	off_t end;

	(void)fi;
	pthread_mutex_lock(&mu);
	end = nodes[ino].st.st_size;
	pthread_mutex_unlock(&mu);
	if (off < end)
		bv.buf[0].size = (size_t)(end - off) < size ? (size_t)(end - off) : size;
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = data_fd;
	bv.buf[0].pos = slot(ino) + off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

static void fl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct node *n;
	int err = 0;

	(void)fi;
	if (off + (off_t)size > SLOT_MAX) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	/* under mu: a concurrent truncation must not punch after we wrote */
	pthread_mutex_lock(&mu);
	n = &nodes[ino];
	if (pwrite(data_fd, buf, size, slot(ino) + off) != (ssize_t)size)
		err = errno ? errno : EIO;
	if (!err) {
		if (off + (off_t)size > n->st.st_size)
			n->st.st_size = off + (off_t)size;
		n->st.st_mtim = n->st.st_ctim = now();
	}
	pthread_mutex_unlock(&mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

static void fl_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void fl_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	fl_ok(req, ino, fi);
}

static void fl_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino;
	(void)name;
	(void)size;
	fuse_reply_err(req, ENODATA);
}

static const struct fuse_lowlevel_ops ops = {
	.init = fl_init,
	.lookup = fl_lookup,
	.getattr = fl_getattr,
	.setattr = fl_setattr,
	.readlink = fl_readlink,
	.mknod = fl_mknod,
	.mkdir = fl_mkdir,
	.symlink = fl_symlink,
	.link = fl_link,
	.unlink = fl_remove,
	.rmdir = fl_remove,
	.open = fl_open,
	.read = fl_read,
	.write = fl_write,
	.flush = fl_ok,
	.release = fl_ok,
	.fsync = fl_fsync,
	.getxattr = fl_getxattr,
	.create = fl_create,
};

static void print_stats(void)
{
	int len = tx_proto_stats(NULL, NULL, 0);
	char *buf = len > 0 ? malloc((size_t)len + 1) : NULL;

	if (!buf)
		return;
	tx_proto_stats(NULL, buf, (size_t)len + 1);
	fputs(buf, stderr);
	free(buf);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se;
	sigset_t sigs;
	int status = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]);
		return 2;
	}
	if (fuse_opt_add_arg(&args, argv[0]) || fuse_opt_add_arg(&args, "-ofsname=floorfs"))
		return 1;
	/* sized once, sparse: a read of a hole past the last write sees zeros */
	data_fd = memfd_create("floorfs-data", MFD_CLOEXEC);
	if (data_fd < 0 || ftruncate(data_fd, (off_t)1 << 62)) {
		perror("floorfs: data memfd");
		return 1;
	}
	nnodes = 1; /* inode 0 is "no entry"; 1 is the root */
	if (node_new(getuid(), getgid(), S_IFDIR | 0755, 0) != FUSE_ROOT_ID)
		return 1;
	nodes[FUSE_ROOT_ID].st.st_nlink = 2;
	tx_loop_block_signals(&sigs);
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (se && fuse_session_mount(se, argv[1]) == 0) {
		status = tx_loop_run(se, 64, &sigs) < 0;
		fuse_session_unmount(se);
		print_stats();
	}
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return status;
}
