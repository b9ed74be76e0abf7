/*
 * proc.c — process identity, liveness and the pidfd death watcher (proc.h).
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* The identity cache (P1 at one /proc read): thread (tid, its start time)
 * -> its process (tgid, the tgid's start time). A thread never changes
 * process (an exec by a non-leader thread takes the leader's pid and keeps
 * the leader's start time), so an entry is valid while a thread tid with
 * the same start time exists: proc_identify reads /proc/TID/stat (the
 * check) and, on a hit, nothing else. Only identity is cached, never uids
 * or parents (credentials change: setuid, reparenting). Direct-mapped by
 * tid; a miss overwrites.
 *
 * On the real /proc, an entry for a process's main thread (tid == tgid)
 * also keeps a pidfd, opened before the /proc read it vouches for: while
 * the pidfd is not readable the process has not exited, so its pid cannot
 * have been reused and the entry holds without any /proc read (a repeat
 * caller costs one poll, not an open + read + close). */
#define PROC_CACHE 64

struct proc_cached {
	uint32_t tid, tgid;
	uint64_t tid_start, tgid_start;
	int pidfd; /* -1: none; else a pidfd of tid, valid while not readable */
};

struct proc {
	char root[256];
	bool real;                   /* root is the real /proc: pidfds work */
	uint8_t boot[PROC_BOOT_LEN];
	pthread_mutex_t cache_lock;  /* a leaf */
	struct proc_cached cache[PROC_CACHE];
	_Atomic uint64_t hits, misses;
};

/* /proc files report size 0: read until EOF through the os table. */
static int read_text(struct proc *p, const char *rel, char *buf, size_t cap)
{
	char path[512];
	size_t got = 0;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", p->root, rel) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = txd_os->open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd == -ENOENT ? -ESRCH : fd;
	while (got + 1 < cap) {
		ssize_t n = txd_os->pread(fd, buf + got, cap - 1 - got, (off_t)got);
		if (n < 0) {
			txd_os->close(fd);
			return n == -ESRCH ? -ESRCH : (int)n;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	txd_os->close(fd);
	buf[got] = '\0';
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_boot(const char *s, uint8_t boot[PROC_BOOT_LEN])
{
	int n = 0;

	for (; *s && *s != '\n' && n < 2 * PROC_BOOT_LEN; s++) {
		int v;

		if (*s == '-')
			continue;
		v = hexval(*s);
		if (v < 0)
			return -EINVAL;
		if (n % 2 == 0)
			boot[n / 2] = (uint8_t)(v << 4);
		else
			boot[n / 2] |= (uint8_t)v;
		n++;
	}
	return n == 2 * PROC_BOOT_LEN ? 0 : -EINVAL;
}

int proc_open(const char *root, struct proc **out)
{
	struct proc *p = calloc(1, sizeof(*p));
	char buf[128];
	int r;

	if (!p)
		return -ENOMEM;
	snprintf(p->root, sizeof(p->root), "%s", root ? root : "/proc");
	p->real = strcmp(p->root, "/proc") == 0;
	for (size_t k = 0; k < PROC_CACHE; k++)
		p->cache[k].pidfd = -1;
	pthread_mutex_init(&p->cache_lock, NULL);
	r = read_text(p, "sys/kernel/random/boot_id", buf, sizeof(buf));
	if (r == -ESRCH)
		r = -ENOENT;
	if (!r)
		r = parse_boot(buf, p->boot);
	if (r) {
		pthread_mutex_destroy(&p->cache_lock);
		free(p);
		return r;
	}
	*out = p;
	return 0;
}

void proc_close(struct proc *p)
{
	if (!p)
		return;
	for (size_t k = 0; k < PROC_CACHE; k++)
		if (p->cache[k].pidfd >= 0)
			close(p->cache[k].pidfd);
	pthread_mutex_destroy(&p->cache_lock);
	free(p);
}

void proc_cache_stats(struct proc *p, uint64_t *hits, uint64_t *misses)
{
	*hits = p->hits;
	*misses = p->misses;
}

void proc_boot(const struct proc *p, uint8_t boot[PROC_BOOT_LEN])
{
	memcpy(boot, p->boot, PROC_BOOT_LEN);
}

/* The unsigned value after "key:" in a status text. */
static int status_field(const char *text, const char *key, uint32_t *val)
{
	size_t kl = strlen(key);
	const char *l = text;

	while (l && *l) {
		if (!strncmp(l, key, kl) && l[kl] == ':') {
			char *end;
			unsigned long v = strtoul(l + kl + 1, &end, 10);

			if (end == l + kl + 1 || v > UINT32_MAX)
				return -EINVAL;
			*val = (uint32_t)v;
			return 0;
		}
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return -EINVAL;
}

static int read_status(struct proc *p, uint32_t pid, char *buf, size_t cap)
{
	char rel[32];

	snprintf(rel, sizeof(rel), "%" PRIu32 "/status", pid);
	return read_text(p, rel, buf, cap);
}

/* Start time (field 22) and state (field 3) of pid. comm (field 2) may hold
 * spaces and ')': fields are counted from the last ')'. */
static int read_stat(struct proc *p, uint32_t pid, uint64_t *start, char *state)
{
	char rel[32], buf[1024], *s, *end;
	int field;

	snprintf(rel, sizeof(rel), "%" PRIu32 "/stat", pid);
	int r = read_text(p, rel, buf, sizeof(buf));
	if (r)
		return r;
	s = strrchr(buf, ')');
	if (!s || s[1] != ' ')
		return -EINVAL;
	s += 2;
	*state = *s;
	for (field = 3; field < 22; field++) {
		s = strchr(s, ' ');
		if (!s)
			return -EINVAL;
		s++;
	}
	errno = 0;
	*start = strtoull(s, &end, 10);
	if (end == s || errno)
		return -EINVAL;
	return 0;
}

/* P1 without the cache: Tgid from /proc/TID/status, then the Tgid's
 * start time (tid_start when the thread is the process itself). */
static int identify_slow(struct proc *p, uint32_t tid, uint64_t tid_start, struct proc_id *out)
{
	char buf[4096], state;
	uint32_t tgid;
	int r = read_status(p, tid, buf, sizeof(buf));

	if (!r)
		r = status_field(buf, "Tgid", &tgid);
	if (r)
		return r;
	out->pid = tgid;
	if (tgid == tid && tid_start)
		out->start = tid_start;
	else if ((r = read_stat(p, tgid, &out->start, &state)))
		return r;
	return 0;
}

/* A pidfd that is not readable: its process has not exited. */
static bool pidfd_running(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	return poll(&pfd, 1, 0) == 0;
}

/* The cache's answer for tid without reading /proc (its pidfd says the
 * process is still running), or false. */
static bool cache_pidfd_hit(struct proc *p, uint32_t tid, struct proc_id *out)
{
	struct proc_cached *c = &p->cache[tid % PROC_CACHE];
	bool hit = false;

	pthread_mutex_lock(&p->cache_lock);
	if (c->tid == tid && c->pidfd >= 0) {
		hit = pidfd_running(c->pidfd);
		if (hit) {
			out->pid = c->tgid;
			out->start = c->tgid_start;
		} else {
			close(c->pidfd);
			c->pidfd = -1;
		}
	}
	pthread_mutex_unlock(&p->cache_lock);
	return hit;
}

/* P1; *own_state: the state of the process read on the way when tid is
 * the process itself (then also the liveness check), else 0. */
static int identify(struct proc *p, uint32_t tid, struct proc_id *out, char *own_state)
{
	uint64_t tid_start = 0;
	char state;
	int r, pidfd = -1;

	*own_state = 0;
	if (tid == 0)
		return -ESRCH;
	memset(out, 0, sizeof(*out));
	memcpy(out->boot, p->boot, PROC_BOOT_LEN);
	if (p->real && cache_pidfd_hit(p, tid, out)) {
		p->hits++;
		if (out->pid == tid)
			*own_state = 'S'; /* running: neither a zombie nor dead */
		return 0;
	}
	/* opened before the read it vouches for (pidfd_open fails for a
	 * thread that is not its process's main thread: no pidfd then) */
	if (p->real)
		pidfd = (int)syscall(SYS_pidfd_open, (pid_t)tid, 0);
	/* a (faked) /proc may have a thread's status without its stat: then
	 * no cache, as before it */
	r = read_stat(p, tid, &tid_start, &state);
	if (r == -EINVAL || r) {
		if (pidfd >= 0)
			close(pidfd);
		return r == -EINVAL ? r : identify_slow(p, tid, 0, out);
	}
	struct proc_cached *c = &p->cache[tid % PROC_CACHE];
	pthread_mutex_lock(&p->cache_lock);
	bool hit = c->tid == tid && c->tid_start == tid_start;
	if (hit) {
		out->pid = c->tgid;
		out->start = c->tgid_start;
		if (c->pidfd < 0 && pidfd >= 0 && out->pid == tid) {
			c->pidfd = pidfd;
			pidfd = -1;
		}
	}
	pthread_mutex_unlock(&p->cache_lock);
	if (hit) {
		p->hits++;
	} else {
		p->misses++;
		if ((r = identify_slow(p, tid, tid_start, out))) {
			if (pidfd >= 0)
				close(pidfd);
			return r;
		}
		pthread_mutex_lock(&p->cache_lock);
		if (c->pidfd >= 0)
			close(c->pidfd);
		*c = (struct proc_cached){.tid = tid, .tgid = out->pid, .tid_start = tid_start,
					  .tgid_start = out->start, .pidfd = -1};
		if (pidfd >= 0 && out->pid == tid) {
			c->pidfd = pidfd;
			pidfd = -1;
		}
		pthread_mutex_unlock(&p->cache_lock);
	}
	if (pidfd >= 0)
		close(pidfd);
	if (out->pid == tid)
		*own_state = state;
	return 0;
}

int proc_identify(struct proc *p, uint32_t tid, struct proc_id *out)
{
	char state;
	return identify(p, tid, out, &state);
}

bool proc_alive(struct proc *p, const struct proc_id *id)
{
	uint64_t start;
	char state;

	if (memcmp(id->boot, p->boot, PROC_BOOT_LEN))
		return false;
	if (read_stat(p, id->pid, &start, &state))
		return false;
	/* A zombie has exited: only its parent's wait is missing. */
	return start == id->start && state != 'Z' && state != 'X';
}

int proc_owner(struct proc *p, uint32_t pid, uint32_t *uid, uint32_t *ppid)
{
	char buf[4096];
	int r = read_status(p, pid, buf, sizeof(buf));

	if (!r && uid)
		r = status_field(buf, "Uid", uid);
	if (!r && ppid)
		r = status_field(buf, "PPid", ppid);
	return r;
}

bool proc_descends(struct proc *p, uint32_t pid, uint32_t anc)
{
	int hops;

	/* Bounded: a garbled (or faked) PPid chain must not loop forever. */
	for (hops = 0; hops < 4096 && pid > 0; hops++) {
		uint32_t ppid;

		if (pid == anc)
			return true;
		if (proc_owner(p, pid, NULL, &ppid))
			return false;
		pid = ppid;
	}
	return false;
}

int proc_may_act_for(struct proc *p, uint32_t caller_uid, uint32_t target,
		     struct proc_id *id)
{
	char buf[4096], state;
	uint32_t uid;
	int r = identify(p, target, id, &state);

	if (r)
		return r == -EINVAL ? -ESRCH : r;
	if (id->pid != target)
		return -ESRCH; /* P3: a thread's id, not a process's */
	/* P2: a zombie has exited; a thread's process is checked on its own */
	if (state ? state == 'Z' || state == 'X' : !proc_alive(p, id))
		return -ESRCH;
	/* the real uid now (never cached: credentials change) */
	r = read_status(p, id->pid, buf, sizeof(buf));
	if (!r)
		r = status_field(buf, "Uid", &uid);
	if (r)
		return -ESRCH;
	return caller_uid == 0 || caller_uid == uid ? 0 : -EPERM;
}

bool proc_same(const struct proc_id *a, const struct proc_id *b)
{
	return a->pid == b->pid && a->start == b->start &&
	       !memcmp(a->boot, b->boot, PROC_BOOT_LEN);
}

int proc_key(const struct proc_id *id, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%" PRIu32 ":%" PRIu64, id->pid, id->start);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* ---- the death watcher ------------------------------------------------- */

/* An entry whose count falls to zero lingers (idle, up to WATCH_IDLE_MAX of
 * them): its death is no longer reported (an idle entry that dies is
 * dropped silently), and a new watch of the same process takes it back
 * without a pidfd_open, a /proc read or a wake-up of the thread — a process
 * that grabs and releases in a loop costs the watcher nothing per round. */
#define WATCH_IDLE_MAX 64

struct watch_ent {
	struct proc_id id;
	int fd;            /* pidfd, or -1: already dead, report at once */
	unsigned refs;     /* 0: idle */
	uint64_t seq;      /* identifies the entry across a poll round */
};

struct proc_watch {
	struct proc *p;
	proc_death_fn fn;
	void *arg;
	int efd;                   /* eventfd: wakes the thread */
	pthread_t thread;
	pthread_mutex_t lock;      /* protects everything below */
	struct watch_ent *ents;
	size_t n, cap, idle;
	uint64_t next_seq;
	uint64_t opened;           /* pidfds opened (proc_watch_opened) */
	bool stop;
};

static void wake(struct proc_watch *w)
{
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the thread is awake anyway. */
	}
}

static ssize_t find_ent(struct proc_watch *w, const struct proc_id *id)
{
	for (size_t i = 0; i < w->n; i++)
		if (proc_same(&w->ents[i].id, id))
			return (ssize_t)i;
	return -1;
}

static void drop_ent(struct proc_watch *w, size_t i)
{
	if (w->ents[i].fd >= 0)
		close(w->ents[i].fd);
	if (w->ents[i].refs == 0)
		w->idle--;
	w->ents[i] = w->ents[--w->n];
}

/* Takes out one entry that is due (fd -1 or in ready[]) and copies its id;
 * false when none is. Called with w->lock held. */
static bool take_dead(struct proc_watch *w, const uint64_t *ready, size_t nready,
		      struct proc_id *id)
{
	for (size_t i = 0; i < w->n;) {
		bool due = w->ents[i].fd < 0;

		for (size_t k = 0; !due && k < nready; k++)
			due = ready[k] == w->ents[i].seq;
		if (due && w->ents[i].refs == 0) {
			drop_ent(w, i); /* idle: not watched, not reported */
			continue;
		}
		if (due) {
			*id = w->ents[i].id;
			drop_ent(w, i);
			return true;
		}
		i++;
	}
	return false;
}

static void *watch_main(void *arg)
{
	struct proc_watch *w = arg;
	struct pollfd *pfd = NULL;
	uint64_t *seqs = NULL, *ready = NULL;
	size_t cap = 0;

	for (;;) {
		size_t n, nready = 0;
		struct proc_id id;
		uint64_t cnt;

		pthread_mutex_lock(&w->lock);
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		if (w->n + 1 > cap) {
			size_t nc = w->n + 16;
			struct pollfd *np = realloc(pfd, nc * sizeof(*np));
			uint64_t *ns = np ? realloc(seqs, nc * sizeof(*ns)) : NULL;
			uint64_t *nr = ns ? realloc(ready, nc * sizeof(*nr)) : NULL;

			if (np)
				pfd = np;
			if (ns)
				seqs = ns;
			if (nr) {
				ready = nr;
				cap = nc;
			}
		}
		pfd[0] = (struct pollfd){ .fd = w->efd, .events = POLLIN };
		n = 1;
		for (size_t i = 0; i < w->n && n < cap; i++) {
			if (w->ents[i].fd < 0)
				continue;
			pfd[n] = (struct pollfd){ .fd = w->ents[i].fd, .events = POLLIN };
			seqs[n++] = w->ents[i].seq;
		}
		/* Entries already dead are reported before sleeping. */
		bool pending = false;
		for (size_t i = 0; i < w->n; i++)
			pending |= w->ents[i].fd < 0;
		pthread_mutex_unlock(&w->lock);

		if (poll(pfd, n, pending ? 0 : 1000) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN)
			(void)!read(w->efd, &cnt, sizeof(cnt));
		for (size_t i = 1; i < n; i++)
			if (pfd[i].revents)
				ready[nready++] = seqs[i];
		for (;;) {
			bool got;

			pthread_mutex_lock(&w->lock);
			got = !w->stop && take_dead(w, ready, nready, &id);
			pthread_mutex_unlock(&w->lock);
			if (!got)
				break;
			w->fn(w->arg, &id);
		}
	}
	free(pfd);
	free(seqs);
	free(ready);
	return NULL;
}

int proc_watch_open(struct proc *p, proc_death_fn fn, void *arg, struct proc_watch **out)
{
	struct proc_watch *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->p = p;
	w->fn = fn;
	w->arg = arg;
	w->next_seq = 1;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto out_free;
	}
	pthread_mutex_init(&w->lock, NULL);
	r = -pthread_create(&w->thread, NULL, watch_main, w);
	if (r)
		goto out_close;
	*out = w;
	return 0;
out_close:
	pthread_mutex_destroy(&w->lock);
	close(w->efd);
out_free:
	free(w);
	return r;
}

int proc_watch_add(struct proc_watch *w, const struct proc_id *id)
{
	struct watch_ent e = { .id = *id, .fd = -1, .refs = 1 };
	ssize_t i;
	int r = 0;

	pthread_mutex_lock(&w->lock);
	i = find_ent(w, id);
	if (i >= 0) {
		if (w->ents[i].refs++ == 0)
			w->idle--; /* idle: already in the thread's poll set */
		goto out_unlock;
	}
	if (w->n == w->cap) {
		size_t nc = w->cap ? 2 * w->cap : 16;
		struct watch_ent *ne = realloc(w->ents, nc * sizeof(*ne));

		if (!ne) {
			r = -ENOMEM;
			goto out_unlock;
		}
		w->ents = ne;
		w->cap = nc;
	}
	/* Open the pidfd first, then check the start time: a pid reused
	 * before the open fails the check, a death after it wakes the fd. */
	e.fd = (int)syscall(SYS_pidfd_open, (pid_t)id->pid, 0);
	if (e.fd < 0 && errno != ESRCH) {
		r = -errno;
		goto out_unlock;
	}
	w->opened += e.fd >= 0;
	if (e.fd >= 0 && !proc_alive(w->p, id)) {
		close(e.fd);
		e.fd = -1;
	}
	e.seq = w->next_seq++;
	w->ents[w->n++] = e;
	wake(w);
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return r;
}

void proc_watch_del(struct proc_watch *w, const struct proc_id *id)
{
	ssize_t i;

	pthread_mutex_lock(&w->lock);
	i = find_ent(w, id);
	if (i >= 0 && w->ents[i].refs && --w->ents[i].refs == 0) {
		if (w->idle < WATCH_IDLE_MAX && w->ents[i].fd >= 0) {
			w->idle++; /* lingers (see WATCH_IDLE_MAX) */
		} else {
			w->idle++; /* counted as idle for drop_ent */
			drop_ent(w, (size_t)i);
			wake(w);
		}
	}
	pthread_mutex_unlock(&w->lock);
}

uint64_t proc_watch_opened(struct proc_watch *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t n = w->opened;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void proc_watch_close(struct proc_watch *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	wake(w);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	while (w->n)
		drop_ent(w, 0);
	free(w->ents);
	close(w->efd);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
