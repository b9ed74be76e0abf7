/*
 * s1_state — the global state document's compare-and-swap through the mount
 * (issue 11, benchmarks): 8 writer processes each increment one counter in
 * .txdir/state/global_state.json for a fixed time — read user.txdir.version,
 * read the document, write {"if_version": V, "document": {"count": N+1}} to
 * .txdir/state/update (EBUSY: another writer won, read again) — and the
 * successful swaps per second are counted.
 *
 * Baseline, same run, same file system (BENCH_DIR/native): sqlite3 with
 * journal_mode=WAL and synchronous=FULL (a durable commit each), 8
 * processes doing SELECT version, count then UPDATE … SET count = N+1,
 * version = V+1 WHERE version = V (0 rows changed: lost the race). libsqlite3
 * is loaded with dlopen, so the benchmark builds without its headers; without
 * the library the baseline row says so. Goal: >= 1.0x sqlite's swaps/s.
 *
 * Mounts its own store (durability fsync: each replace is on disk before
 * its write returns), unmounted at the end. QUICK: 2 s windows, else 10 s.
 */
#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/xattr.h>

#include "bench.h"
#include "bench_mount.h"

#define NPROC 8

static char NAT[1024], STATE[1200];

/* ---- 8 writers, one counter ------------------------------------------------------- */
struct shared {
	long swaps[NPROC], busy[NPROC];
	int failed;
};

/* Runs fn(i, until, sh) in NPROC processes; the total of sh->swaps. */
static long run_writers(void (*fn)(int i, double until, struct shared *sh), double secs,
			long *busy)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[NPROC];
	double until = now_s() + secs;
	long total = 0;

	if (sh == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	memset(sh, 0, sizeof(*sh));
	for (int i = 0; i < NPROC; i++) {
		if ((pids[i] = fork()) == 0) {
			fn(i, until, sh);
			_exit(0);
		}
	}
	for (int i = 0; i < NPROC; i++)
		waitpid(pids[i], NULL, 0);
	if (sh->failed)
		bench_die("a writer failed");
	*busy = 0;
	for (int i = 0; i < NPROC; i++) {
		total += sh->swaps[i];
		*busy += sh->busy[i];
	}
	munmap(sh, sizeof(*sh));
	return total;
}

static long read_count(const char *path)
{
	char buf[256];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	const char *p;

	if (fd >= 0)
		close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	p = strstr(buf, "\"count\"");
	return p ? strtol(strchr(p, ':') + 1, NULL, 10) : -1;
}

static void txdir_writer(int i, double until, struct shared *sh)
{
	char doc[1300], upd[1300], v[32], body[128];

	snprintf(doc, sizeof(doc), "%s/global_state.json", STATE);
	snprintf(upd, sizeof(upd), "%s/update", STATE);
	while (now_s() < until) {
		ssize_t vl = getxattr(doc, "user.txdir.version", v, sizeof(v) - 1);
		long c = read_count(doc);
		if (vl <= 0 || c < 0) {
			sh->failed = 1;
			return;
		}
		v[vl] = 0;
		int len = snprintf(body, sizeof(body), "{\"if_version\": %s, \"document\": {\"count\": %ld}}",
				   v, c + 1);
		int fd = open(upd, O_WRONLY);
		ssize_t w = fd < 0 ? -1 : write(fd, body, (size_t)len);
		int e = w < 0 ? errno : 0;
		if (fd >= 0 && close(fd) < 0 && !e)
			e = errno;
		if (!e)
			sh->swaps[i]++;
		else if (e == EBUSY)
			sh->busy[i]++;
		else {
			fprintf(stderr, "s1_state: update: %s\n", strerror(e));
			sh->failed = 1;
			return;
		}
	}
}

/* ---- sqlite3, through dlopen --------------------------------------------------------- */
struct sql {
	void *h;
	int (*open)(const char *, void **);
	int (*close)(void *);
	int (*exec)(void *, const char *, void *, void *, char **);
	int (*prepare)(void *, const char *, int, void **, const char **);
	int (*step)(void *);
	int (*reset)(void *);
	int (*finalize)(void *);
	int (*bind)(void *, int, long long);
	long long (*column)(void *, int);
	int (*changes)(void *);
	int (*busy_timeout)(void *, int);
};

static struct sql S;

static bool sql_load(void)
{
	S.h = dlopen("libsqlite3.so.0", RTLD_NOW);
	if (!S.h)
		return false;
#define SYM(f, n) (*(void **)&S.f = dlsym(S.h, n))
	return SYM(open, "sqlite3_open") && SYM(close, "sqlite3_close") &&
	       SYM(exec, "sqlite3_exec") && SYM(prepare, "sqlite3_prepare_v2") &&
	       SYM(step, "sqlite3_step") && SYM(reset, "sqlite3_reset") &&
	       SYM(finalize, "sqlite3_finalize") && SYM(bind, "sqlite3_bind_int64") &&
	       SYM(column, "sqlite3_column_int64") && SYM(changes, "sqlite3_changes") &&
	       SYM(busy_timeout, "sqlite3_busy_timeout");
#undef SYM
}

enum { SQL_OK = 0, SQL_ROW = 100, SQL_DONE = 101 };

static void *sql_db(void)
{
	char path[1200];
	void *db;

	snprintf(path, sizeof(path), "%s/state.db", NAT);
	if (S.open(path, &db) != SQL_OK)
		bench_die("sqlite3_open %s", path);
	S.busy_timeout(db, 10000);
	S.exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	return db;
}

static void sql_writer(int i, double until, struct shared *sh)
{
	void *db = sql_db(), *sel, *upd;

	if (S.prepare(db, "SELECT version, count FROM state WHERE id = 1", -1, &sel, NULL) ||
	    S.prepare(db, "UPDATE state SET count = ?1, version = ?2 + 1 WHERE id = 1 AND version = ?2",
		      -1, &upd, NULL)) {
		sh->failed = 1;
		return;
	}
	while (now_s() < until) {
		long long v, c;
		int rc = S.step(sel);
		if (rc != SQL_ROW) {
			S.reset(sel);
			sh->busy[i]++;
			continue;
		}
		v = S.column(sel, 0);
		c = S.column(sel, 1);
		S.reset(sel);
		S.bind(upd, 1, c + 1);
		S.bind(upd, 2, v);
		rc = S.step(upd);
		S.reset(upd);
		if (rc == SQL_DONE && S.changes(db) == 1)
			sh->swaps[i]++;
		else
			sh->busy[i]++;
	}
	S.finalize(sel);
	S.finalize(upd);
	S.close(db);
}

static long sql_count(void)
{
	void *db = sql_db(), *sel;
	long long c = -1;

	if (!S.prepare(db, "SELECT count FROM state WHERE id = 1", -1, &sel, NULL)) {
		if (S.step(sel) == SQL_ROW)
			c = S.column(sel, 0);
		S.finalize(sel);
	}
	S.close(db);
	return (long)c;
}

int main(void)
{
	double secs = bench_quick() ? 2 : 10;
	long busy, swaps, sswaps = 0, sbusy = 0, count;
	char doc[1300];
	bool have_sql;

	snprintf(STORE, sizeof(STORE), "%s/store", bench_dir());
	snprintf(MNT, sizeof(MNT), "%s/mnt", bench_dir());
	snprintf(NAT, sizeof(NAT), "%s/native", bench_dir());
	snprintf(STATE, sizeof(STATE), "%s/.txdir/state", MNT);
	CKS(mkdir(MNT, 0755));
	CKS(mkdir(NAT, 0755));
	atexit(on_exit_cleanup);
	mount_store();
	start_janitor();
	snprintf(doc, sizeof(doc), "%s/global_state.json", STATE);
	int fd = open(doc, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, "{\"count\": 0}", 12) != 12 || close(fd) < 0) {
		fprintf(stderr, "s1_state: this txdirfs has no state document (%s: %s)\n", doc,
			strerror(errno));
		exit(1);
	}
	swaps = run_writers(txdir_writer, secs, &busy);
	count = read_count(doc);
	umount_store();
	if (count != swaps)
		bench_die("lost updates: count %ld after %ld successful swaps", count, swaps);
	printf("BENCH state_cas_swaps_8w %.1f swaps/s %ld swaps, %ld EBUSY in %.0f s\n",
	       (double)swaps / secs, swaps, busy, secs);

	have_sql = sql_load();
	if (have_sql) {
		void *db = sql_db();
		S.exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (S.exec(db,
			   "CREATE TABLE state (id INTEGER PRIMARY KEY, version INTEGER, count INTEGER);"
			   "INSERT INTO state VALUES (1, 0, 0)",
			   NULL, NULL, NULL) != SQL_OK)
			bench_die("sqlite3: create table");
		S.close(db);
		sswaps = run_writers(sql_writer, secs, &sbusy);
		if (sql_count() != sswaps)
			bench_die("sqlite3 lost updates: count %ld after %ld swaps", sql_count(), sswaps);
		printf("BENCH sqlite_cas_swaps_8w %.1f swaps/s %ld swaps, %ld lost races in %.0f s "
		       "(WAL, synchronous=FULL)\n",
		       (double)sswaps / secs, sswaps, sbusy, secs);
	}
	char t[64], b[64];
	snprintf(t, sizeof(t), "%.0f swaps/s", (double)swaps / secs);
	snprintf(b, sizeof(b), have_sql ? "%.0f swaps/s" : "no libsqlite3", (double)sswaps / secs);
	double ratio = sswaps ? (double)swaps / (double)sswaps : 0;
	target_row("state CAS, 8 writers vs sqlite3 UPDATE WHERE version (FULL)", t, b, ratio,
		   ">= 1.0x", have_sql ? verdict(ratio, 1.0, true) : "MISS");
	return 0;
}
