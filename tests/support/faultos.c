/*
 * faultos.c — fault-injecting, crash-simulating os table (API in faultos.h).
 *
 * Power-cut model. Each file path seen through open() has a struct fstate
 * holding an undo/redo log of the writes and truncations made since its last
 * fsync/fdatasync: each op keeps the bytes it replaced (pre-image) and the
 * file size before it. Undoing the ops newest first gives back exactly the
 * last-synced content; re-applying a random subset (whole, torn or dropped)
 * gives one of the states a disk might hold after losing power.
 */
#include "faultos.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum op_kind { OP_WRITE, OP_TRUNC };

struct op {
	enum op_kind kind;
	uint64_t off;        /* write offset, or new length for OP_TRUNC */
	uint8_t *data;       /* written bytes */
	size_t len;
	uint8_t *old;        /* pre-image of [off, off + old_len) */
	size_t old_len;
	uint64_t old_size;   /* file size before the op */
};

struct fstate {
	char *path;
	bool is_dir;
	bool entry_unsynced;  /* created since its directory's last fsync */
	char *renamed_from;   /* an unsynced rename, undoable */
	struct op *ops;
	size_t nops, capops;
	uint64_t pwrites;     /* pwrite calls to it since the reset */
	struct fstate *next;
};

struct fault {
	bool armed;
	enum faultos_call call;
	uint64_t at;   /* absolute call count that triggers */
	int err;
	bool tear, crash;
	size_t keep;
};

#define MAX_FAULTS 16

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counts[FOS_NCALLS];
static struct fault faults[MAX_FAULTS];
static bool crashed;
static struct fstate *files;
static struct fstate **fdmap;
static size_t fdcap;
static int64_t clock_off; /* read without mu: atomic (engine threads run meanwhile) */

/* ---- bookkeeping (mu held) ---------------------------------------------- */

static void op_free(struct op *o)
{
	free(o->data);
	free(o->old);
}

static void fstate_clear_ops(struct fstate *f, size_t n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n; i++)
		op_free(&f->ops[i]);
	memmove(f->ops, f->ops + n, (f->nops - n) * sizeof(*f->ops));
	f->nops -= n;
}

static struct fstate *fstate_find(const char *path)
{
	struct fstate *f;

	for (f = files; f; f = f->next)
		if (!strcmp(f->path, path))
			return f;
	return NULL;
}

static struct fstate *fstate_get(const char *path)
{
	struct fstate *f = fstate_find(path);

	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	f->path = strdup(path);
	f->next = files;
	files = f;
	return f;
}

static void fstate_drop(struct fstate *victim)
{
	struct fstate **pp;
	size_t i;

	for (i = 0; i < fdcap; i++)
		if (fdmap[i] == victim)
			fdmap[i] = NULL;
	for (pp = &files; *pp; pp = &(*pp)->next) {
		if (*pp == victim) {
			*pp = victim->next;
			break;
		}
	}
	fstate_clear_ops(victim, victim->nops);
	free(victim->ops);
	free(victim->renamed_from);
	free(victim->path);
	free(victim);
}

static void fdmap_set(int fd, struct fstate *f)
{
	if ((size_t)fd >= fdcap) {
		size_t ncap = fdcap ? fdcap : 64;

		while (ncap <= (size_t)fd)
			ncap *= 2;
		fdmap = realloc(fdmap, ncap * sizeof(*fdmap));
		memset(fdmap + fdcap, 0, (ncap - fdcap) * sizeof(*fdmap));
		fdcap = ncap;
	}
	fdmap[fd] = f;
}

static struct fstate *fdmap_get(int fd)
{
	return fd >= 0 && (size_t)fd < fdcap ? fdmap[fd] : NULL;
}

static struct op *op_push(struct fstate *f)
{
	if (f->nops == f->capops) {
		f->capops = f->capops ? f->capops * 2 : 16;
		f->ops = realloc(f->ops, f->capops * sizeof(*f->ops));
	}
	memset(&f->ops[f->nops], 0, sizeof(struct op));
	return &f->ops[f->nops++];
}

static uint64_t real_size(int fd)
{
	uint64_t s = 0;

	txd_os_real.fstat_size(fd, &s);
	return s;
}

/* Remember what [off, off+len) held, before it is overwritten or cut. */
static void take_preimage(struct op *o, int fd, uint64_t off, uint64_t end)
{
	o->old_size = real_size(fd);
	if (end > o->old_size)
		end = o->old_size;
	if (off >= end)
		return;
	o->old_len = (size_t)(end - off);
	o->old = malloc(o->old_len);
	if (txd_os_real.pread(fd, o->old, o->old_len, (off_t)off) != (ssize_t)o->old_len)
		o->old_len = 0;
}

static void record_write(struct fstate *f, int fd, const void *buf, size_t n, off_t off)
{
	struct op *o = op_push(f);

	o->kind = OP_WRITE;
	o->off = (uint64_t)off;
	o->len = n;
	o->data = malloc(n ? n : 1);
	memcpy(o->data, buf, n);
	take_preimage(o, fd, (uint64_t)off, (uint64_t)off + n);
}

static void record_trunc(struct fstate *f, int fd, uint64_t len)
{
	struct op *o = op_push(f);

	o->kind = OP_TRUNC;
	o->off = len;
	take_preimage(o, fd, len, UINT64_MAX);
}

static bool dir_of(const char *path, const char *dir)
{
	const char *slash = strrchr(path, '/');
	size_t dl = strlen(dir);

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	return slash && (size_t)(slash - path) == dl && !strncmp(path, dir, dl);
}

/* An fsync of directory dir makes its entries durable. */
static void dir_synced(const char *dir)
{
	struct fstate *f;

	for (f = files; f; f = f->next) {
		if (!dir_of(f->path, dir))
			continue;
		f->entry_unsynced = false;
		free(f->renamed_from);
		f->renamed_from = NULL;
	}
}

/* Returns the fault that fires for this call, if any; counts the call. */
static struct fault *check_fault(enum faultos_call call)
{
	int i;

	counts[call]++;
	for (i = 0; i < MAX_FAULTS; i++) {
		if (faults[i].armed && faults[i].call == call && faults[i].at == counts[call]) {
			faults[i].armed = false;
			return &faults[i];
		}
	}
	return NULL;
}

/* mu held. -EIO if dead, the injected error if a fault fires, else 0. */
static int enter(enum faultos_call call, struct fault **fp)
{
	struct fault *f = check_fault(call);

	if (fp)
		*fp = NULL;
	if (crashed)
		return -EIO;
	if (!f)
		return 0;
	if (f->tear && fp) {
		*fp = f;
		return 0;
	}
	if (f->crash)
		crashed = true;
	return f->err ? f->err : -EIO;
}

/* ---- the table -------------------------------------------------------------- */

static int fos_open(const char *path, int flags, mode_t mode)
{
	struct fstate *f;
	struct stat st;
	bool existed;
	int fd, r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_OPEN, NULL);
	if (r)
		goto out_unlock;
	existed = stat(path, &st) == 0;
	f = existed && !S_ISDIR(st.st_mode) ? fstate_get(path) : NULL;
	if (f && (flags & O_TRUNC)) {
		int tfd = txd_os_real.open(path, O_RDONLY, 0);

		if (tfd >= 0) {
			record_trunc(f, tfd, 0);
			txd_os_real.close(tfd);
		}
	}
	fd = txd_os_real.open(path, flags, mode);
	if (fd < 0) {
		r = fd;
		goto out_unlock;
	}
	f = fstate_get(path);
	if (!existed)
		f->entry_unsynced = true;
	f->is_dir = (flags & O_DIRECTORY) || (existed && S_ISDIR(st.st_mode));
	fdmap_set(fd, f);
	r = fd;
out_unlock:
	pthread_mutex_unlock(&mu);
	return r;
}

static int fos_close(int fd)
{
	pthread_mutex_lock(&mu);
	counts[FOS_CLOSE]++;
	if (fdmap_get(fd))
		fdmap[fd] = NULL;
	pthread_mutex_unlock(&mu);
	return txd_os_real.close(fd); /* even when dead: do not leak */
}

static ssize_t fos_pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_PREAD, NULL);
	pthread_mutex_unlock(&mu);
	return r ? r : txd_os_real.pread(fd, buf, n, off);
}

/* faultos_fail_next_pwrite_to: the next pwrite to a path holding it fails. */
static char path_fault[256];
static int path_fault_err;

static ssize_t fos_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct fault *tear;
	struct fstate *f;
	ssize_t r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_PWRITE, &tear);
	if (r)
		goto out_unlock;
	f = fdmap_get(fd);
	if (path_fault[0] && f && strstr(f->path, path_fault)) {
		path_fault[0] = '\0';
		r = path_fault_err;
		goto out_unlock;
	}
	if (tear && tear->keep < n)
		n = tear->keep;
	if (f)
		f->pwrites++;
	if (f && n)
		record_write(f, fd, buf, n, off);
	r = n ? txd_os_real.pwrite(fd, buf, n, off) : 0;
	if (tear) {
		crashed = crashed || tear->crash;
		r = -EIO;
	}
out_unlock:
	pthread_mutex_unlock(&mu);
	return r;
}

void faultos_fail_next_pwrite_to(const char *part, int err)
{
	pthread_mutex_lock(&mu);
	snprintf(path_fault, sizeof(path_fault), "%s", part);
	path_fault_err = err;
	pthread_mutex_unlock(&mu);
}

uint64_t faultos_pwrites_to(const char *path)
{
	pthread_mutex_lock(&mu);
	struct fstate *f = fstate_find(path);
	uint64_t n = f ? f->pwrites : 0;
	pthread_mutex_unlock(&mu);
	return n;
}

static int do_sync(enum faultos_call call, int fd)
{
	struct fstate *f;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&mu);
	r = enter(call, NULL);
	f = fdmap_get(fd);
	if (f)
		n = f->nops;
	pthread_mutex_unlock(&mu);
	if (r)
		return r;
	r = call == FOS_FSYNC ? txd_os_real.fsync(fd) : txd_os_real.fdatasync(fd);
	pthread_mutex_lock(&mu);
	if (crashed)
		r = -EIO;
	f = fdmap_get(fd); /* the state may have been dropped meanwhile */
	if (!r && f && f->is_dir)
		dir_synced(f->path);
	else if (!r && f)
		fstate_clear_ops(f, n < f->nops ? n : f->nops);
	pthread_mutex_unlock(&mu);
	return r;
}

static int fos_fsync(int fd)
{
	return do_sync(FOS_FSYNC, fd);
}

static int fos_fdatasync(int fd)
{
	return do_sync(FOS_FDATASYNC, fd);
}

static int fos_ftruncate(int fd, off_t len)
{
	struct fstate *f;
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_FTRUNCATE, NULL);
	if (!r) {
		f = fdmap_get(fd);
		if (f)
			record_trunc(f, fd, (uint64_t)len);
		r = txd_os_real.ftruncate(fd, len);
	}
	pthread_mutex_unlock(&mu);
	return r;
}

static int fos_fallocate(int fd, off_t off, off_t len)
{
	struct fstate *f;
	void *z;
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_FALLOCATE, NULL);
	if (!r) {
		f = fdmap_get(fd);
		z = f && len > 0 ? calloc(1, (size_t)len) : NULL;
		if (z)
			record_write(f, fd, z, (size_t)len, off);
		free(z);
		r = txd_os_real.fallocate(fd, off, len);
	}
	pthread_mutex_unlock(&mu);
	return r;
}

static int fos_statvfs(const char *path, struct statvfs *st)
{
	return txd_os_real.statvfs(path, st); /* not data: no faults */
}

static int fos_fstat_size(int fd, uint64_t *size)
{
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_FSTAT, NULL);
	pthread_mutex_unlock(&mu);
	return r ? r : txd_os_real.fstat_size(fd, size);
}

static int fos_rename(const char *from, const char *to)
{
	struct fstate *f, *old;
	struct stat st;
	bool replaced;
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_RENAME, NULL);
	if (r)
		goto out_unlock;
	replaced = stat(to, &st) == 0;
	r = txd_os_real.rename(from, to);
	if (r)
		goto out_unlock;
	old = fstate_find(to);
	if (old)
		fstate_drop(old);
	f = fstate_get(from);
	free(f->path);
	f->path = strdup(to);
	free(f->renamed_from);
	f->renamed_from = replaced ? NULL : strdup(from);
out_unlock:
	pthread_mutex_unlock(&mu);
	return r;
}

static int fos_unlink(const char *path)
{
	struct fstate *f;
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_UNLINK, NULL);
	if (!r)
		r = txd_os_real.unlink(path);
	f = r ? NULL : fstate_find(path);
	if (f)
		fstate_drop(f);
	pthread_mutex_unlock(&mu);
	return r;
}

static int fos_mkdir(const char *path, mode_t mode)
{
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_MKDIR, NULL);
	pthread_mutex_unlock(&mu);
	return r ? r : txd_os_real.mkdir(path, mode);
}

static int fos_flock(int fd, int op)
{
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_FLOCK, NULL);
	pthread_mutex_unlock(&mu);
	return r ? r : txd_os_real.flock(fd, op);
}

static int fos_listdir(const char *dir, int (*cb)(const char *name, void *arg), void *arg)
{
	int r;

	pthread_mutex_lock(&mu);
	r = enter(FOS_LISTDIR, NULL);
	pthread_mutex_unlock(&mu);
	return r ? r : txd_os_real.listdir(dir, cb, arg);
}

static uint64_t fos_realtime(void)
{
	return txd_os_real.now_realtime_ns() + (uint64_t)__atomic_load_n(&clock_off, __ATOMIC_RELAXED);
}

static uint64_t fos_file_time(void)
{
	return txd_os_real.now_file_ns() + (uint64_t)__atomic_load_n(&clock_off, __ATOMIC_RELAXED);
}

static uint64_t fos_monotonic(void)
{
	return txd_os_real.now_monotonic_ns() + (uint64_t)__atomic_load_n(&clock_off, __ATOMIC_RELAXED);
}

static uint64_t boots; /* power cuts so far: each is a reboot (os.h boot_id) */

static uint64_t fos_boot_id(void)
{
	uint64_t real = txd_os_real.boot_id();
	return real ^ (__atomic_load_n(&boots, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ull);
}

const struct txd_os_ops faultos_ops = {
	.open = fos_open,
	.close = fos_close,
	.pread = fos_pread,
	.pwrite = fos_pwrite,
	.fsync = fos_fsync,
	.fdatasync = fos_fdatasync,
	.ftruncate = fos_ftruncate,
	.fallocate = fos_fallocate,
	.fstat_size = fos_fstat_size,
	.rename = fos_rename,
	.unlink = fos_unlink,
	.mkdir = fos_mkdir,
	.flock = fos_flock,
	.listdir = fos_listdir,
	.statvfs = fos_statvfs,
	.now_realtime_ns = fos_realtime,
	.now_file_ns = fos_file_time,
	.now_monotonic_ns = fos_monotonic,
	.boot_id = fos_boot_id,
};

/* ---- control ------------------------------------------------------------------ */

static void forget_files(void)
{
	while (files)
		fstate_drop(files);
	free(fdmap);
	fdmap = NULL;
	fdcap = 0;
}

void faultos_reset(void)
{
	pthread_mutex_lock(&mu);
	memset(counts, 0, sizeof(counts));
	memset(faults, 0, sizeof(faults));
	path_fault[0] = '\0';
	crashed = false;
	__atomic_store_n(&clock_off, 0, __ATOMIC_RELAXED);
	forget_files();
	pthread_mutex_unlock(&mu);
}

void faultos_install(void)
{
	faultos_reset();
	txd_os_set(&faultos_ops);
}

void faultos_uninstall(void)
{
	txd_os_set(NULL);
	faultos_reset();
}

uint64_t faultos_count(enum faultos_call call)
{
	uint64_t v;

	pthread_mutex_lock(&mu);
	v = counts[call];
	pthread_mutex_unlock(&mu);
	return v;
}

static void arm(struct fault f)
{
	int i;

	pthread_mutex_lock(&mu);
	f.at += counts[f.call];
	f.armed = true;
	for (i = 0; i < MAX_FAULTS; i++) {
		if (!faults[i].armed) {
			faults[i] = f;
			break;
		}
	}
	pthread_mutex_unlock(&mu);
}

void faultos_fail_nth(enum faultos_call call, uint64_t n, int err)
{
	arm((struct fault){ .call = call, .at = n, .err = err });
}

void faultos_tear_nth_pwrite(uint64_t n, size_t keep, bool crash)
{
	arm((struct fault){ .call = FOS_PWRITE, .at = n, .err = -EIO, .tear = true,
			    .crash = crash, .keep = keep });
}

void faultos_crash_at(enum faultos_call call, uint64_t n)
{
	arm((struct fault){ .call = call, .at = n, .err = -EIO, .crash = true });
}

void faultos_crash(void)
{
	pthread_mutex_lock(&mu);
	crashed = true;
	pthread_mutex_unlock(&mu);
}

bool faultos_crashed(void)
{
	bool v;

	pthread_mutex_lock(&mu);
	v = crashed;
	pthread_mutex_unlock(&mu);
	return v;
}

/* xorshift64*: small, seeded, reproducible. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static void undo_op(int fd, const struct op *o)
{
	if (o->kind == OP_TRUNC)
		txd_os_real.ftruncate(fd, (off_t)o->old_size);
	if (o->old_len)
		txd_os_real.pwrite(fd, o->old, o->old_len, (off_t)o->off);
	if (o->kind == OP_WRITE)
		txd_os_real.ftruncate(fd, (off_t)o->old_size);
}

static void redo_op(int fd, const struct op *o, uint64_t *seed)
{
	uint64_t roll = rnd(seed) % 4;
	size_t n = o->len;

	if (roll == 0)
		return; /* lost */
	if (o->kind == OP_TRUNC) {
		txd_os_real.ftruncate(fd, (off_t)o->off);
		return;
	}
	if (roll == 1 && n > 1)
		n = (size_t)(rnd(seed) % n); /* torn */
	if (n)
		txd_os_real.pwrite(fd, o->data, n, (off_t)o->off);
}

static void cut_file(struct fstate *f, uint64_t *seed)
{
	size_t i;
	int fd;

	if (f->is_dir)
		return;
	fd = txd_os_real.open(f->path, O_RDWR, 0);
	if (fd >= 0) {
		for (i = f->nops; i-- > 0;)
			undo_op(fd, &f->ops[i]);
		for (i = 0; i < f->nops; i++)
			redo_op(fd, &f->ops[i], seed);
		txd_os_real.close(fd);
	}
	if (f->renamed_from && rnd(seed) % 2)
		txd_os_real.rename(f->path, f->renamed_from);
	else if (f->entry_unsynced && rnd(seed) % 2)
		txd_os_real.unlink(f->path);
}

void faultos_power_cut(uint64_t seed)
{
	struct fstate *f;
	uint64_t s = seed * 2 + 1; /* xorshift needs a non-zero state */

	pthread_mutex_lock(&mu);
	crashed = true;
	__atomic_add_fetch(&boots, 1, __ATOMIC_RELAXED);
	for (f = files; f; f = f->next)
		cut_file(f, &s);
	forget_files();
	pthread_mutex_unlock(&mu);
}

void faultos_revive(void)
{
	pthread_mutex_lock(&mu);
	crashed = false;
	memset(faults, 0, sizeof(faults));
	forget_files();
	pthread_mutex_unlock(&mu);
}

void faultos_set_clock_offset(int64_t ns)
{
	pthread_mutex_lock(&mu);
	__atomic_store_n(&clock_off, ns, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&mu);
}

/* LeakSanitizer hook for every unit test binary (this file is linked into
 * all of them): libcriterion's runner leaks one 48-byte block when tests
 * run in parallel (-jN), which would fail `make asan` for no fault of the
 * code under test. Only the runner process is exempt: a test runs in a
 * worker process (BoxFort's sandbox, which has BXFI_MAP in its
 * environment), where every test's allocation has libcriterion.so frames
 * below it, so the same suppression there would hide every leak of the
 * code under test (it did until test_txn's
 * close_frees_versions_pinned_by_unforgotten_nodes). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return getenv("BXFI_MAP") ? "" : "leak:libcriterion.so\n";
}
