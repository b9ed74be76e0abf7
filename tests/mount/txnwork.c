/*
 * txnwork.c — workloads and checkers for the transaction crash tests
 * (txncrash.sh). Not a test program: run.sh skips it (like crashwork).
 * Transactions are driven through the file interface only:
 * mkdir MNT/.txdir/txn/NAME, NAME/root/..., write(2) of "commit" or
 * "readonly" to NAME/ctl, rmdir NAME.
 *
 *   txnwork hash DIR
 *       Prints a 16-hex-digit XXH64 of the tree under DIR: every entry's
 *       relative path and type in byte order, and every file's content.
 *
 *   txnwork snapreader MNT SUBDIR STOP OUT
 *       Loops until the file STOP exists (at most 60 s): begins a
 *       transaction, makes it read-only, hashes root/SUBDIR as `hash` does,
 *       removes the transaction and appends the hash to OUT (one line).
 *
 *   txnwork snaphold MNT SUBDIR READY GO
 *       Begins a read-only transaction, hashes root/SUBDIR, creates READY,
 *       waits (bounded poll, 60 s) for the file GO, hashes root/SUBDIR again
 *       in the same transaction and prints both hashes on one line: a
 *       snapshot held across a commit.
 *
 *   txnwork round MNT DIR K N MODE SPID SEED
 *       One transaction that rewrites MNT/DIR/f000..f(N-1) with version K
 *       (each file an image of (name, K), see image()), then, by MODE:
 *         commit    commits; no kill (prints "acked" or fails);
 *         before    writes a random number of the N files, SIGKILLs the
 *                   server SPID, never commits ("before R");
 *         inflight  commits from a second thread; once that thread is
 *                   blocked in the write(2) (/proc/.../syscall), waits a
 *                   random 0-4000 us and SIGKILLs SPID ("acked D" if the
 *                   write returned success, else "unacked D ERRNO");
 *         after     commits, prints "acked" once the write returned
 *                   success, then SIGKILLs SPID.
 *       The result line is printed (and flushed) after the write returned,
 *       before the kill where there is one.
 *
 *   txnwork version MNT DIR N
 *       After a remount: every MNT/DIR/fNNN is one complete image of the
 *       same version and there is nothing else in DIR; prints the version,
 *       or "#" lines naming the mixture and exits 1.
 *
 *   txnwork setup4 MNT NPROC
 *       Creates (on the main tree) MNT/pP/f0..f4 at sequence 0 for each
 *       process P and MNT/shared/counter "COUNT 0 -1 0", unless present.
 *
 *   txnwork proc MNT P LOG READY
 *       Worker P loops until an operation fails (the server was killed):
 *       one transaction per sequence number seq (continuing after the seq
 *       found in MNT/pP/f0) rewrites pP/f0..f4 with image (pP/fJ, seq),
 *       creates pP/m.SEQ, removes pP/m.(SEQ-1), and rewrites
 *       shared/counter from "COUNT c P' s'" to "COUNT c+1 P seq". Before
 *       the commit write it appends "C P seq" to LOG, after the write
 *       returned success "W P seq". A commit that fails EBUSY (first
 *       committer wins on the counter) is removed and retried with the same
 *       seq in a new transaction. Creates READY after its first commit.
 *
 *   txnwork check4 MNT NPROC LOG
 *       After a remount: for every P, f0..f4 are complete images of one
 *       seq S_P, pP holds exactly the marker m.S_P (none for 0); S_P is at
 *       least the last acknowledged seq and at most the last attempted one;
 *       the counter equals sum(S_P) and names (P, S_P) of its last writer.
 *       Prints "#" findings and a summary; exit 0 if clean.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "mix64.h"

#define MAX_IMAGE 8192
#define NPROC_MAX 64
#define NFILES4	  5

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* File image of (name, ver): "TXNW name ver len\n" + len filler bytes. */
static size_t image(char *buf, const char *name, uint64_t ver)
{
	uint64_t r = mix64(XXH64(name, strlen(name), 0) ^ mix64(ver + 7));
	size_t len = (size_t)(r % 3000);
	int h = snprintf(buf, 128, "TXNW %s %" PRIu64 " %zu\n", name, ver, len);

	for (size_t i = 0; i < len; i++) {
		r = mix64(r + i);
		buf[h + i] = (char)('a' + r % 26);
	}
	return (size_t)h + len;
}

/* Reads a whole (small) file; its length, or -1 with errno. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	size_t off = 0;

	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t n = read(fd, buf + off, cap - off);

		if (n < 0) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		off += (size_t)n;
		if (off == cap)
			break;
	}
	close(fd);
	return (ssize_t)off;
}

static int put(const char *path, const char *buf, size_t len, int flags)
{
	int fd = open(path, O_WRONLY | flags, 0644);

	if (fd < 0)
		return -1;
	if (write(fd, buf, len) != (ssize_t)len) {
		int e = errno ? errno : EIO;

		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* Writes a control word to CTL; 0 or -1 with errno. */
static int ctl_write(const char *ctl, const char *word)
{
	int fd = open(ctl, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, word, strlen(word));
	if (n != (ssize_t)strlen(word)) {
		int e = n < 0 ? errno : EIO;

		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/*
 * Checks that buf[0..len) is the image of name; its version, or -1 (with a
 * reason in why).
 */
static int64_t parse_image(const char *name, const char *buf, ssize_t len, char *why, size_t wl)
{
	static char want[MAX_IMAGE];
	char hname[256];
	uint64_t ver;
	size_t hlen, wlen;

	if (len <= 0) {
		snprintf(why, wl, "empty");
		return -1;
	}
	if (sscanf(buf, "TXNW %255s %" SCNu64 " %zu", hname, &ver, &hlen) != 3) {
		snprintf(why, wl, "%zd bytes, header does not parse (torn?)", len);
		return -1;
	}
	if (strcmp(hname, name)) {
		snprintf(why, wl, "header names %.64s", hname);
		return -1;
	}
	wlen = image(want, name, ver);
	if ((size_t)len != wlen || memcmp(buf, want, wlen)) {
		snprintf(why, wl, "version %" PRIu64 ": %zd bytes, want %zu (torn or mixed)", ver,
			 len, wlen);
		return -1;
	}
	return (int64_t)ver;
}

/* ---- tree hash -------------------------------------------------------- */

static int cmp_names(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int hash_dir(XXH64_state_t *st, const char *abs, const char *rel)
{
	struct dirent **ents;
	int n = scandir(abs, &ents, NULL, cmp_names), rc = 0;

	if (n < 0) {
		fprintf(stderr, "txnwork: scandir %s: %s\n", abs, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char a[4096], r[4096];
		struct stat sb;

		if (!strcmp(ents[i]->d_name, ".") || !strcmp(ents[i]->d_name, "..") || rc) {
			free(ents[i]);
			continue;
		}
		snprintf(a, sizeof(a), "%s/%s", abs, ents[i]->d_name);
		snprintf(r, sizeof(r), "%s/%s", rel, ents[i]->d_name);
		free(ents[i]);
		if (lstat(a, &sb)) {
			fprintf(stderr, "txnwork: lstat %s: %s\n", a, strerror(errno));
			rc = -1;
			continue;
		}
		XXH64_update(st, r, strlen(r) + 1);
		if (S_ISDIR(sb.st_mode)) {
			XXH64_update(st, "D", 1);
			rc = hash_dir(st, a, r);
		} else if (S_ISREG(sb.st_mode)) {
			static char buf[1 << 16];
			int fd = open(a, O_RDONLY);
			ssize_t k;

			XXH64_update(st, "F", 1);
			if (fd < 0) {
				fprintf(stderr, "txnwork: open %s: %s\n", a, strerror(errno));
				rc = -1;
				continue;
			}
			while ((k = read(fd, buf, sizeof(buf))) > 0)
				XXH64_update(st, buf, (size_t)k);
			if (k < 0) {
				fprintf(stderr, "txnwork: read %s: %s\n", a, strerror(errno));
				rc = -1;
			}
			close(fd);
		} else {
			XXH64_update(st, "O", 1);
		}
	}
	free(ents);
	return rc;
}

static int tree_hash(const char *dir, uint64_t *out)
{
	XXH64_state_t *st = XXH64_createState();
	int rc;

	XXH64_reset(st, 0);
	rc = hash_dir(st, dir, "");
	*out = XXH64_digest(st);
	XXH64_freeState(st);
	return rc;
}

static int cmd_hash(const char *dir)
{
	uint64_t h;

	if (tree_hash(dir, &h))
		return 1;
	printf("%016" PRIx64 "\n", h);
	return 0;
}

static int cmd_snapreader(const char *mnt, const char *sub, const char *stop, const char *out)
{
	double t0 = now();
	FILE *o = fopen(out, "a");
	long i;

	if (!o) {
		perror(out);
		return 2;
	}
	setvbuf(o, NULL, _IOLBF, 0);
	for (i = 0; now() - t0 < 60; i++) {
		char txn[4096], path[4200];
		uint64_t h;
		int rc;

		snprintf(txn, sizeof(txn), "%s/.txdir/txn/snap-%d-%ld", mnt, (int)getpid(), i);
		if (mkdir(txn, 0755)) {
			fprintf(stderr, "txnwork: mkdir %s: %s\n", txn, strerror(errno));
			return 1;
		}
		snprintf(path, sizeof(path), "%s/ctl", txn);
		if (ctl_write(path, "readonly")) {
			fprintf(stderr, "txnwork: readonly > %s: %s\n", path, strerror(errno));
			rmdir(txn);
			return 1;
		}
		snprintf(path, sizeof(path), "%s/root/%s", txn, sub);
		rc = tree_hash(path, &h);
		if (rmdir(txn)) {
			fprintf(stderr, "txnwork: rmdir %s: %s\n", txn, strerror(errno));
			return 1;
		}
		if (rc)
			return 1;
		fprintf(o, "%016" PRIx64 "\n", h);
		if (access(stop, F_OK) == 0)
			break;
	}
	fclose(o);
	return 0;
}

static int cmd_snaphold(const char *mnt, const char *sub, const char *ready, const char *go)
{
	char txn[4096], path[4200];
	uint64_t h1, h2;
	double t0;
	int fd;

	snprintf(txn, sizeof(txn), "%s/.txdir/txn/hold-%d", mnt, (int)getpid());
	if (mkdir(txn, 0755)) {
		fprintf(stderr, "txnwork: mkdir %s: %s\n", txn, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/ctl", txn);
	if (ctl_write(path, "readonly")) {
		fprintf(stderr, "txnwork: readonly > %s: %s\n", path, strerror(errno));
		rmdir(txn);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/root/%s", txn, sub);
	if (tree_hash(path, &h1)) {
		rmdir(txn);
		return 1;
	}
	fd = open(ready, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	for (t0 = now(); access(go, F_OK) && now() - t0 < 60;)
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	if (tree_hash(path, &h2)) {
		rmdir(txn);
		return 1;
	}
	if (rmdir(txn)) {
		fprintf(stderr, "txnwork: rmdir %s: %s\n", txn, strerror(errno));
		return 1;
	}
	printf("%016" PRIx64 " %016" PRIx64 "\n", h1, h2);
	return 0;
}

/* ---- one transaction around a server kill ------------------------------- */

struct committer {
	const char *ctl;
	int fd;
	_Atomic pid_t tid;
	_Atomic bool done;
	int rc, err;
};

static void *commit_thread(void *arg)
{
	struct committer *c = arg;
	ssize_t n;

	atomic_store(&c->tid, (pid_t)syscall(SYS_gettid));
	n = write(c->fd, "commit", 6);
	c->err = n < 0 ? errno : 0;
	c->rc = n == 6 ? 0 : -1;
	atomic_store(&c->done, true);
	return NULL;
}

/* Whether thread tid is blocked in write(2). */
static bool in_write(pid_t tid)
{
	char path[64], buf[128];
	ssize_t n;
	long nr;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	n = slurp(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return sscanf(buf, "%ld", &nr) == 1 && nr == SYS_write;
}

static void spin_us(long us)
{
	double end = now() + us / 1e6;

	while (now() < end)
		;
}

static int cmd_round(const char *mnt, const char *dir, uint64_t k, int n, const char *mode,
		     pid_t spid, uint64_t seed)
{
	static char buf[MAX_IMAGE];
	char txn[4096], ctl[4200], path[4400], name[256];
	uint64_t rnd = mix64(seed ^ (k << 20));
	int upto = n;

	snprintf(txn, sizeof(txn), "%s/.txdir/txn/round-%" PRIu64 "-%d", mnt, k, (int)getpid());
	snprintf(ctl, sizeof(ctl), "%s/ctl", txn);
	if (mkdir(txn, 0755)) {
		fprintf(stderr, "txnwork: mkdir %s: %s\n", txn, strerror(errno));
		return 1;
	}
	if (!strcmp(mode, "before"))
		upto = (int)(rnd % (uint64_t)(n + 1));
	for (int i = 0; i < upto; i++) {
		size_t len;

		snprintf(name, sizeof(name), "%s/f%03d", dir, i);
		snprintf(path, sizeof(path), "%s/root/%s", txn, name);
		len = image(buf, name, k);
		if (put(path, buf, len, O_TRUNC | O_CREAT)) {
			fprintf(stderr, "txnwork: write %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	if (!strcmp(mode, "before")) {
		printf("before %d\n", upto);
		fflush(stdout);
		kill(spid, SIGKILL);
		return 0;
	}
	if (!strcmp(mode, "commit") || !strcmp(mode, "after")) {
		if (ctl_write(ctl, "commit")) {
			char st[256] = "";

			snprintf(path, sizeof(path), "%s/status", txn);
			if (slurp(path, st, sizeof(st) - 1) > 0)
				st[strcspn(st, "\n")] = 0;
			printf("unacked 0 %s (status: %s)\n", strerror(errno), st);
			fflush(stdout);
			if (!strcmp(mode, "after"))
				kill(spid, SIGKILL);
			return 1;
		}
		printf("acked\n");
		fflush(stdout);
		if (!strcmp(mode, "after"))
			kill(spid, SIGKILL);
		else
			rmdir(txn);
		return 0;
	}
	if (!strcmp(mode, "inflight")) {
		struct committer c = {.ctl = ctl};
		pthread_t th;
		long delay = (long)((rnd >> 16) % 4001);
		double t0;
		bool seen = false;

		c.fd = open(ctl, O_WRONLY);
		if (c.fd < 0) {
			fprintf(stderr, "txnwork: open %s: %s\n", ctl, strerror(errno));
			return 1;
		}
		pthread_create(&th, NULL, commit_thread, &c);
		t0 = now();
		/* Barrier: the committer is blocked in write(2) (or already done). */
		while (!atomic_load(&c.done) && now() - t0 < 10) {
			pid_t tid = atomic_load(&c.tid);

			if (tid && in_write(tid)) {
				seen = true;
				break;
			}
		}
		spin_us(delay);
		kill(spid, SIGKILL);
		pthread_join(th, NULL);
		close(c.fd);
		if (c.rc == 0)
			printf("acked %ld%s\n", delay, seen ? "" : " (done before seen)");
		else
			printf("unacked %ld %s\n", delay, strerror(c.err));
		fflush(stdout);
		return 0;
	}
	fprintf(stderr, "txnwork: unknown mode %s\n", mode);
	return 2;
}

static int cmd_version(const char *mnt, const char *dir, int n)
{
	static char buf[MAX_IMAGE + 1];
	char path[4400], name[256], why[256];
	int64_t first = -2;
	int problems = 0, counts = 0;
	struct dirent *e;
	DIR *d;

	for (int i = 0; i < n; i++) {
		ssize_t len;
		int64_t v;

		snprintf(name, sizeof(name), "%s/f%03d", dir, i);
		snprintf(path, sizeof(path), "%s/%s", mnt, name);
		len = slurp(path, buf, sizeof(buf));
		if (len < 0) {
			if (++problems <= 10)
				printf("#   %s: %s\n", name, strerror(errno));
			continue;
		}
		v = parse_image(name, buf, len, why, sizeof(why));
		if (v < 0) {
			if (++problems <= 10)
				printf("#   %s: %s\n", name, why);
			continue;
		}
		if (first == -2)
			first = v;
		else if (v != first && ++problems <= 10)
			printf("#   %s: version %" PRId64 ", but f000 has %" PRId64 " (mixed)\n", name,
			       v, first);
	}
	snprintf(path, sizeof(path), "%s/%s", mnt, dir);
	d = opendir(path);
	if (!d) {
		printf("#   %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		counts++;
	}
	closedir(d);
	if (counts != n && ++problems)
		printf("#   %s holds %d entries, want %d\n", dir, counts, n);
	if (problems) {
		printf("#   %d problems\n", problems);
		return 1;
	}
	printf("%" PRId64 "\n", first);
	return 0;
}

/* ---- concurrent workers ---------------------------------------------------- */

static int log_fd;

static void log_line(char kind, int p, uint64_t seq)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%c %d %" PRIu64 "\n", kind, p, seq);

	if (write(log_fd, line, (size_t)n) != n) {
		perror("txnwork: log write");
		exit(3);
	}
}

static int cmd_setup4(const char *mnt, int nproc)
{
	static char buf[MAX_IMAGE];
	char path[4400], name[256];

	snprintf(path, sizeof(path), "%s/shared", mnt);
	if (mkdir(path, 0755) && errno != EEXIST)
		goto fail;
	snprintf(path, sizeof(path), "%s/shared/counter", mnt);
	if (access(path, F_OK) && put(path, "COUNT 0 -1 0\n", 13, O_CREAT | O_EXCL))
		goto fail;
	for (int p = 0; p < nproc; p++) {
		snprintf(path, sizeof(path), "%s/p%d", mnt, p);
		if (mkdir(path, 0755) && errno != EEXIST)
			goto fail;
		for (int j = 0; j < NFILES4; j++) {
			snprintf(name, sizeof(name), "p%d/f%d", p, j);
			snprintf(path, sizeof(path), "%s/%s", mnt, name);
			if (access(path, F_OK) == 0)
				continue;
			if (put(path, buf, image(buf, name, 0), O_CREAT | O_EXCL))
				goto fail;
		}
	}
	return 0;
fail:
	fprintf(stderr, "txnwork: setup4 %s: %s\n", path, strerror(errno));
	return 1;
}

static void die_op(int p, const char *what, const char *path)
{
	/* Expected once the server is killed: report and stop. */
	fprintf(stderr, "txnwork %d: %s %s: %s\n", p, what, path, strerror(errno));
	exit(1);
}

static int cmd_proc(const char *mnt, int p, const char *log, const char *ready)
{
	static char buf[MAX_IMAGE + 1];
	char txn[4096], path[4400], name[256], why[256];
	uint64_t seq;
	bool announced = false;
	long attempt = 0;
	int64_t v;
	ssize_t len;

	log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (log_fd < 0) {
		perror(log);
		return 3;
	}
	snprintf(name, sizeof(name), "p%d/f0", p);
	snprintf(path, sizeof(path), "%s/%s", mnt, name);
	len = slurp(path, buf, sizeof(buf));
	if (len < 0)
		die_op(p, "read", path);
	v = parse_image(name, buf, len, why, sizeof(why));
	if (v < 0) {
		fprintf(stderr, "txnwork %d: %s: %s\n", p, path, why);
		return 1;
	}
	seq = (uint64_t)v + 1;
	for (;; attempt++) {
		char cbuf[128];
		long c;
		int cp;
		uint64_t cs;

		snprintf(txn, sizeof(txn), "%s/.txdir/txn/w%d-%d-%ld", mnt, p, (int)getpid(),
			 attempt);
		if (mkdir(txn, 0755))
			die_op(p, "mkdir", txn);
		for (int j = 0; j < NFILES4; j++) {
			snprintf(name, sizeof(name), "p%d/f%d", p, j);
			snprintf(path, sizeof(path), "%s/root/%s", txn, name);
			if (put(path, buf, image(buf, name, seq), O_TRUNC))
				die_op(p, "write", path);
		}
		snprintf(path, sizeof(path), "%s/root/p%d/m.%" PRIu64, txn, p, seq);
		if (put(path, "m\n", 2, O_CREAT | O_EXCL))
			die_op(p, "create", path);
		if (seq > 1) {
			snprintf(path, sizeof(path), "%s/root/p%d/m.%" PRIu64, txn, p, seq - 1);
			if (unlink(path) && errno != ENOENT)
				die_op(p, "unlink", path);
		}
		snprintf(path, sizeof(path), "%s/root/shared/counter", txn);
		len = slurp(path, cbuf, sizeof(cbuf) - 1);
		if (len < 0)
			die_op(p, "read", path);
		cbuf[len] = 0;
		if (sscanf(cbuf, "COUNT %ld %d %" SCNu64, &c, &cp, &cs) != 3) {
			fprintf(stderr, "txnwork %d: counter unparsable in the view: %s\n", p, cbuf);
			return 1;
		}
		len = snprintf(cbuf, sizeof(cbuf), "COUNT %ld %d %" PRIu64 "\n", c + 1, p, seq);
		if (put(path, cbuf, (size_t)len, O_TRUNC))
			die_op(p, "write", path);
		snprintf(path, sizeof(path), "%s/ctl", txn);
		log_line('C', p, seq);
		if (ctl_write(path, "commit") == 0) {
			log_line('W', p, seq);
			seq++;
			if (!announced) {
				int r = open(ready, O_WRONLY | O_CREAT, 0644);

				if (r >= 0)
					close(r);
				announced = true;
			}
		} else if (errno != EBUSY) {
			die_op(p, "commit", path);
		}
		if (rmdir(txn))
			die_op(p, "rmdir", txn);
	}
}

static int problems;

#define PROBLEM(...)                         \
	do {                                 \
		if (++problems <= 40) {      \
			printf("#   ");      \
			printf(__VA_ARGS__); \
			printf("\n");        \
		}                            \
	} while (0)

static int cmd_check4(const char *mnt, int nproc, const char *log)
{
	static char buf[MAX_IMAGE + 1];
	int64_t last_c[NPROC_MAX], last_w[NPROC_MAX], s[NPROC_MAX];
	char path[4400], name[256], why[256], line[128];
	long sum = 0, c, commits = 0, acks = 0;
	int cp;
	uint64_t cs;
	FILE *f;
	ssize_t len;

	if (nproc > NPROC_MAX)
		return 2;
	for (int p = 0; p < nproc; p++)
		last_c[p] = last_w[p] = 0, s[p] = -1;
	f = fopen(log, "r");
	if (!f) {
		perror(log);
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		char kind;
		int p;
		uint64_t seq;

		if (sscanf(line, "%c %d %" SCNu64, &kind, &p, &seq) != 3 || p < 0 || p >= nproc) {
			PROBLEM("log line unparsable: %s", line);
			continue;
		}
		if (kind == 'C' && (int64_t)seq > last_c[p])
			last_c[p] = (int64_t)seq;
		if (kind == 'W') {
			acks++;
			if ((int64_t)seq > last_w[p])
				last_w[p] = (int64_t)seq;
		}
	}
	fclose(f);
	for (int p = 0; p < nproc; p++) {
		struct dirent *e;
		DIR *d;
		int markers = 0;

		for (int j = 0; j < NFILES4; j++) {
			int64_t v;

			snprintf(name, sizeof(name), "p%d/f%d", p, j);
			snprintf(path, sizeof(path), "%s/%s", mnt, name);
			len = slurp(path, buf, sizeof(buf));
			if (len < 0) {
				PROBLEM("%s: %s", name, strerror(errno));
				continue;
			}
			v = parse_image(name, buf, len, why, sizeof(why));
			if (v < 0)
				PROBLEM("%s: %s", name, why);
			else if (s[p] < 0)
				s[p] = v;
			else if (v != s[p])
				PROBLEM("%s: seq %" PRId64 ", but p%d/f0 has %" PRId64
					" (transaction partly applied)",
					name, v, p, s[p]);
		}
		if (s[p] < 0)
			continue;
		snprintf(path, sizeof(path), "%s/p%d", mnt, p);
		d = opendir(path);
		if (!d) {
			PROBLEM("%s: %s", path, strerror(errno));
			continue;
		}
		while ((e = readdir(d))) {
			if (strncmp(e->d_name, "m.", 2))
				continue;
			markers++;
			if (strtoll(e->d_name + 2, NULL, 10) != s[p])
				PROBLEM("p%d/%s: marker of another seq than the files' %" PRId64, p,
					e->d_name, s[p]);
		}
		closedir(d);
		if (s[p] > 0 && markers == 0)
			PROBLEM("p%d: no marker m.%" PRId64 " (its files hold seq %" PRId64 ")", p,
				s[p], s[p]);
		if (s[p] < last_w[p])
			PROBLEM("p%d: files hold seq %" PRId64 ", but seq %" PRId64
				" was acknowledged (lost commit)",
				p, s[p], last_w[p]);
		if (s[p] > last_c[p])
			PROBLEM("p%d: files hold seq %" PRId64 " > last attempted %" PRId64, p, s[p],
				last_c[p]);
		if (s[p] > last_w[p] + 1)
			PROBLEM("p%d: files hold seq %" PRId64 ", more than one past the last "
				"acknowledged %" PRId64,
				p, s[p], last_w[p]);
		sum += s[p];
		commits += s[p];
	}
	snprintf(path, sizeof(path), "%s/shared/counter", mnt);
	len = slurp(path, line, sizeof(line) - 1);
	if (len < 0) {
		PROBLEM("shared/counter: %s", strerror(errno));
	} else {
		line[len] = 0;
		if (sscanf(line, "COUNT %ld %d %" SCNu64, &c, &cp, &cs) != 3)
			PROBLEM("shared/counter unparsable: %s", line);
		else {
			if (c != sum)
				PROBLEM("shared/counter is %ld, but the processes' files show %ld "
					"commits in all",
					c, sum);
			if (cp >= 0 && (cp >= nproc || s[cp] != (int64_t)cs))
				PROBLEM("shared/counter names p%d seq %" PRIu64
					" as its last writer, but p%d's files hold seq %" PRId64,
					cp, cs, cp, cp < nproc ? s[cp] : -1);
		}
	}
	printf("# checked %d processes: %ld commits on disk, %ld acknowledged in the log\n", nproc,
	       commits, acks);
	if (problems > 40)
		printf("#   ... %d problems in all\n", problems);
	printf("# %s: %d problems\n", problems ? "FAIL" : "clean", problems);
	return problems ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "hash"))
		return cmd_hash(argv[2]);
	if (argc == 6 && !strcmp(argv[1], "snapreader"))
		return cmd_snapreader(argv[2], argv[3], argv[4], argv[5]);
	if (argc == 6 && !strcmp(argv[1], "snaphold"))
		return cmd_snaphold(argv[2], argv[3], argv[4], argv[5]);
	if (argc == 9 && !strcmp(argv[1], "round"))
		return cmd_round(argv[2], argv[3], strtoull(argv[4], NULL, 10), atoi(argv[5]),
				 argv[6], (pid_t)atoi(argv[7]), strtoull(argv[8], NULL, 10));
	if (argc == 5 && !strcmp(argv[1], "version"))
		return cmd_version(argv[2], argv[3], atoi(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "setup4"))
		return cmd_setup4(argv[2], atoi(argv[3]));
	if (argc == 6 && !strcmp(argv[1], "proc"))
		return cmd_proc(argv[2], atoi(argv[3]), argv[4], argv[5]);
	if (argc == 5 && !strcmp(argv[1], "check4"))
		return cmd_check4(argv[2], atoi(argv[3]), argv[4]);
	fprintf(stderr,
		"usage: %s hash DIR\n"
		"       %s snapreader MNT SUBDIR STOP OUT\n"
		"       %s snaphold MNT SUBDIR READY GO\n"
		"       %s round MNT DIR K N commit|before|inflight|after SPID SEED\n"
		"       %s version MNT DIR N\n"
		"       %s setup4 MNT NPROC\n"
		"       %s proc MNT P LOG READY\n"
		"       %s check4 MNT NPROC LOG\n",
		argv[0], argv[0], argv[0], argv[0], argv[0], argv[0], argv[0], argv[0]);
	return 2;
}
