/*
 * loop.c — the request loop: who reads /dev/fuse, and when.
 *
 * Why not fuse_session_loop_mt: with libfuse's loop every idle worker sleeps
 * in read(2) on the device, and the kernel wakes one of them for each request.
 * On a small virtual machine that wake-up (an IPI to a halted vCPU, then a
 * context switch) costs more than the request itself, and programs like tar
 * issue requests one at a time: measured here, `tar x` of /usr/include spent
 * half of the wall time with both CPUs idle. Spinning readers do not fix it
 * while other workers still sleep on the device: each request then wakes a
 * sleeper for nothing (measured: no gain).
 *
 * The scheme (leader/followers):
 *   - At most one thread holds the READER role. It alone waits on the device:
 *     it polls with non-blocking reads for TX_SPIN_NS after its last request,
 *     then sleeps in poll(2). Every other idle worker sleeps on a condition
 *     variable, invisible to the kernel's wake-ups.
 *   - The reader gives the role up when a request arrives and processes the
 *     request itself ("inline") — the common case costs no thread hand-off.
 *     When it comes back it takes the role again and spins for the next one.
 *   - It first wakes a follower to take the role (so requests keep flowing
 *     while it works) when the request may block or take long — READ (disk),
 *     WRITE larger than TX_INLINE_WRITE, anything unusual (see may_block) — or
 *     when requests are queueing up (a read succeeded at the first try). When
 *     the engine is about to wait (an fdatasync before a large commit, a
 *     transaction commit waiting for writers) it says so through
 *     txd_notify.will_block, which calls tx_loop_detach().
 *   - Woken followers read without blocking: on EAGAIN they go back to sleep,
 *     so under load as many threads run as there is work, and when the load
 *     ends they fall silent again. Threads are created on demand, up to
 *     max_threads, and live until the session ends.
 *
 * The device fd is non-blocking for everyone (one open file description);
 * libfuse reads and writes it through our fuse_custom_io, which also shows
 * proto.c every request and reply.
 *
 * Shutdown: the main thread supervises. Termination signals are blocked in
 * every thread (main() blocks them before any thread exists); the supervisor
 * takes them only inside ppoll(2). Either a signal (libfuse's handler marks
 * the session exited) or a worker seeing the session end (unmount: ENODEV)
 * wakes it; it then wakes everyone through an eventfd and the condition
 * variable and joins the workers, each of which finishes its request first.
 *
 * Lock: loop.lock guards everything in struct loop except the constants set
 * before the first worker starts. Handlers never run under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "txdirfs.h"

/* How long the reader polls without sleeping after its last request. A
 * request/reply round trip here takes ~7 us; programs that issue requests
 * in sequence send the next one well within this. Bounded so an idle mount
 * costs nothing: the spin ends 50 us after the last request. While other
 * workers have requests in hand (parallel cold reads), the reader yields the
 * CPU between polls: spinning at full speed there cost a fifth of the cold
 * read throughput on 2 vCPUs. */
#define TX_SPIN_NS 50000L
/* Writes up to this size are copied into memory and done inline. */
#define TX_INLINE_WRITE (128u << 10)

enum role { ROLE_NONE, ROLE_READER, ROLE_HELPER };

static struct loop {
	struct fuse_session *se;
	int wake_fd; /* eventfd: ends the reader's and the supervisor's poll */
	unsigned int max_threads;

	pthread_mutex_t lock;
	pthread_cond_t idle_cv;
	pthread_t *threads;
	unsigned int nthreads;
	unsigned int nidle;
	unsigned int wakes; /* hand-offs posted and not yet taken */
	unsigned int busy;  /* workers processing a request (atomic, no lock) */
	unsigned int blocked; /* of those, detached to wait (atomic, no lock) */
	unsigned int ncpus;
	bool reader;        /* the READER role is held */
	bool exiting;
	int error; /* first negative result that ended the loop */
} loop = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.idle_cv = PTHREAD_COND_INITIALIZER,
	.wake_fd = -1,
};

/* Per worker: the role for the read in progress, whether that read found a
 * request waiting at the first try, and whether the request being processed
 * runs inline with the READER role vacant. */
static __thread struct {
	enum role role;
	bool backlog;
	bool inline_vacant;
	bool detached;
} self;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void wake_supervisor(void)
{
	uint64_t one = 1;

	if (write(loop.wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		tx_log(LOG_WARNING, "loop: eventfd: %s", strerror(errno));
}

/* ---- the device reads (libfuse calls these through fuse_custom_io) ------- */

static ssize_t dev_read(int fd, void *buf, size_t len)
{
	ssize_t n = read(fd, buf, len);

	if (n > 0)
		tx_proto_request(buf, (size_t)n);
	return n;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = loop.wake_fd, .events = POLLIN}};
	uint64_t until;
	ssize_t n;

	(void)userdata;
	n = dev_read(fd, buf, len);
	self.backlog = n >= 0;
	if (n >= 0 || errno != EAGAIN || self.role != ROLE_READER)
		return n;
	until = now_ns() + TX_SPIN_NS;
	do {
		/* leave the CPU to workers with requests in hand */
		if (__atomic_load_n(&loop.busy, __ATOMIC_RELAXED))
			sched_yield();
		n = dev_read(fd, buf, len);
		if (n >= 0 || errno != EAGAIN)
			return n;
	} while (now_ns() < until);
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return -1;
		if (__atomic_load_n(&loop.exiting, __ATOMIC_ACQUIRE)) {
			errno = ENODEV; /* libfuse: the session is over */
			return -1;
		}
		n = dev_read(fd, buf, len);
		if (n >= 0 || errno != EAGAIN)
			return n;
	}
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	bool init;
	ssize_t n;

	(void)userdata;
	init = tx_proto_reply(iov, count);
	n = writev(fd, iov, count);
	if (init && n >= 0)
		tx_mount_ready();
	return n;
}

static const struct fuse_custom_io tx_io = {.read = io_read, .writev = io_writev};

/* ---- roles ---------------------------------------------------------------------- */

/* Does this request (its raw header) deserve a reader while it runs? */
static bool may_block(const struct fuse_buf *fb)
{
	const struct fuse_in_header *h = fb->mem;

	if (fb->size < sizeof(*h))
		return true;
	switch (h->opcode) {
	case FUSE_WRITE:
		return h->len > TX_INLINE_WRITE;
	case FUSE_LOOKUP:
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_GETATTR:
	case FUSE_SETATTR:
	case FUSE_READLINK:
	case FUSE_SYMLINK:
	case FUSE_MKNOD:
	case FUSE_MKDIR:
	case FUSE_UNLINK:
	case FUSE_RMDIR:
	case FUSE_RENAME:
	case FUSE_RENAME2:
	case FUSE_LINK:
	case FUSE_OPEN:
	case FUSE_CREATE:
	case FUSE_FLUSH:
	case FUSE_RELEASE:
	case FUSE_FSYNC:
	case FUSE_OPENDIR:
	case FUSE_READDIR:
	case FUSE_READDIRPLUS:
	case FUSE_RELEASEDIR:
	case FUSE_FSYNCDIR:
	case FUSE_STATFS:
	case FUSE_ACCESS:
	case FUSE_SETXATTR:
	case FUSE_GETXATTR:
	case FUSE_LISTXATTR:
	case FUSE_REMOVEXATTR:
	case FUSE_INTERRUPT:
		return false;
	default:
		return true;
	}
}

static void *worker(void *arg);

/* A queue of requests is worth another thread only while a CPU is left
 * for it: workers running a request (not detached to wait for the disk)
 * already fill the CPUs, and one more would only add wake-ups and lock
 * hand-offs (measured: 8 processes saving small files, 17 context switches
 * per save). Requests that may block still get a reader (may_block). */
static bool cpus_idle(void)
{
	unsigned int busy = __atomic_load_n(&loop.busy, __ATOMIC_RELAXED);
	unsigned int blocked = __atomic_load_n(&loop.blocked, __ATOMIC_RELAXED);

	return busy - (blocked < busy ? blocked : busy) + 1 < loop.ncpus;
}

/* Get another thread reading: an idle one, else a new one. Under loop.lock.
 * True when an idle one must be woken: the caller signals idle_cv after it
 * drops loop.lock, so the woken thread does not at once block on the lock
 * (two wake-ups for one hand-off, on the path of every detached fsync). */
static bool hand_off_locked(void)
{
	pthread_t t;

	if (loop.nidle > loop.wakes) {
		loop.wakes++;
		return true;
	}
	if (loop.nthreads >= loop.max_threads || loop.exiting)
		return false;
	int rc = pthread_create(&t, NULL, worker, NULL);

	if (rc) {
		tx_log(LOG_WARNING, "loop: cannot start a worker: %s", strerror(rc));
		return false;
	}
	loop.threads[loop.nthreads++] = t;
	loop.wakes++;
	return false;
}

void tx_loop_detach(void)
{
	if (!self.inline_vacant)
		return;
	self.inline_vacant = false;
	self.detached = true;
	__atomic_fetch_add(&loop.blocked, 1, __ATOMIC_RELAXED);
	bool wake = false;

	pthread_mutex_lock(&loop.lock);
	if (!loop.reader)
		wake = hand_off_locked();
	pthread_mutex_unlock(&loop.lock);
	if (wake)
		pthread_cond_signal(&loop.idle_cv);
}

/* Take a role (false: the loop is ending). Under loop.lock. */
static bool take_role_locked(void)
{
	for (;;) {
		if (loop.exiting)
			return false;
		if (!loop.reader) {
			loop.reader = true;
			self.role = ROLE_READER;
			if (loop.wakes)
				loop.wakes--;
			return true;
		}
		if (loop.wakes) {
			loop.wakes--;
			self.role = ROLE_HELPER;
			return true;
		}
		loop.nidle++;
		pthread_cond_wait(&loop.idle_cv, &loop.lock);
		loop.nidle--;
	}
}

static void end_loop_locked(int rc)
{
	if (rc < 0 && !loop.error)
		loop.error = rc;
	if (!loop.exiting) {
		__atomic_store_n(&loop.exiting, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&loop.idle_cv);
		wake_supervisor();
	}
}

static void *worker(void *arg)
{
	struct fuse_buf fb = {0};
	bool wake = false;
	int rc;

	(void)arg;
	pthread_mutex_lock(&loop.lock);
	while (take_role_locked()) {
		pthread_mutex_unlock(&loop.lock);
		rc = fuse_session_receive_buf(loop.se, &fb);
		pthread_mutex_lock(&loop.lock);
		if (self.role == ROLE_READER)
			loop.reader = false;
		if (rc == -EAGAIN || rc == -EINTR)
			continue;
		if (rc <= 0 || fuse_session_exited(loop.se)) {
			end_loop_locked(rc);
			break;
		}
		/* A reader that found a request at its first try sees a queue. */
		self.inline_vacant = !loop.reader;
		if (self.inline_vacant &&
		    ((self.role == ROLE_READER && self.backlog && cpus_idle()) || may_block(&fb))) {
			wake = hand_off_locked();
			self.inline_vacant = false;
		}
		pthread_mutex_unlock(&loop.lock);
		if (wake)
			pthread_cond_signal(&loop.idle_cv);
		wake = false;
		__atomic_fetch_add(&loop.busy, 1, __ATOMIC_RELAXED);
		fuse_session_process_buf(loop.se, &fb);
		__atomic_fetch_sub(&loop.busy, 1, __ATOMIC_RELAXED);
		if (self.detached)
			__atomic_fetch_sub(&loop.blocked, 1, __ATOMIC_RELAXED);
		self.detached = false;
		self.inline_vacant = false;
		pthread_mutex_lock(&loop.lock);
		/* libfuse ends the session itself on a failed INIT */
		if (fuse_session_exited(loop.se)) {
			end_loop_locked(0);
			break;
		}
	}
	pthread_mutex_unlock(&loop.lock);
	free(fb.mem);
	return NULL;
}

/* ---- supervisor ----------------------------------------------------------------- */

void tx_loop_block_signals(sigset_t *old)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGHUP);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

int tx_loop_run(struct fuse_session *se, unsigned int max_threads, const sigset_t *sigs)
{
	struct pollfd p;
	int fd = fuse_session_fd(se), rc, fl;

	loop.se = se;
	loop.max_threads = max_threads ? max_threads : 1;
	loop.ncpus = (unsigned int)sysconf(_SC_NPROCESSORS_ONLN);
	if (loop.ncpus < 2)
		loop.ncpus = 2;
	loop.threads = calloc(loop.max_threads, sizeof(*loop.threads));
	loop.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = -ENOMEM;
	if (!loop.threads || loop.wake_fd < 0)
		goto out;
	fl = fcntl(fd, F_GETFL);
	rc = -errno;
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto out;
	rc = fuse_session_custom_io(se, &tx_io, fd);
	if (rc < 0)
		goto out;

	pthread_mutex_lock(&loop.lock);
	if (hand_off_locked())
		pthread_cond_signal(&loop.idle_cv);
	rc = loop.nthreads ? 0 : -EAGAIN;
	pthread_mutex_unlock(&loop.lock);
	if (rc)
		goto out;

	p = (struct pollfd){.fd = loop.wake_fd, .events = POLLIN};
	while (!__atomic_load_n(&loop.exiting, __ATOMIC_ACQUIRE) && !fuse_session_exited(se)) {
		if (ppoll(&p, 1, NULL, sigs) < 0 && errno != EINTR)
			break;
	}
	pthread_mutex_lock(&loop.lock);
	end_loop_locked(0);
	pthread_mutex_unlock(&loop.lock);
	/* nthreads only grows, and only while !exiting: stable now */
	for (unsigned int i = 0; i < loop.nthreads; i++)
		pthread_join(loop.threads[i], NULL);
	rc = loop.error;
out:
	free(loop.threads);
	if (loop.wake_fd >= 0)
		close(loop.wake_fd);
	return rc;
}
