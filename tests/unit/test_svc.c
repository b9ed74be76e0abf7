/*
 * test_svc.c — the services host in a store (svc.h), driven through the
 * public API the way the mount drives it (.txdir/leases/active/PID/NAME):
 *   V1/L7  grants replay across a reopen, with their tokens;
 *   V2     the checkpoint carries the leases (replay starts after its LSN);
 *   L2     tokens never repeat across crashes, also with durability=none
 *          and a power cut;
 *   L3/L4  a crash at every I/O step of grant and release (process death and
 *          power cut): after recovery the grant is fully there with the
 *          token its grantee was told, or absent; a release that returned is
 *          never undone; the next token is above every token handed out;
 *   V3     a format-1 store opens, stays format 1 until its first lease,
 *          then says format 2 and writes version-2 checkpoints.
 * The holder is this test process (alive throughout: lease L8 keeps it).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "faultos.h"
#include "txdtest.h"

static struct txd_cred me;
static char active[64]; /* ".txdir/leases/active/PID" */

static void init_me(void)
{
	me = (struct txd_cred){.uid = 0, .gid = 0, .pid = getpid(), .umask = 022};
	snprintf(active, sizeof(active), ".txdir/leases/active/%d", (int)getpid());
}

static int grab(struct txd_fs *fs, const char *name)
{
	uint64_t dir;
	struct txd_entry e;
	int err = tt_resolve(fs, active, NULL, NULL, &dir);
	if (!err)
		err = txd_mkdir(fs, &me, dir, name, 0755, &e);
	if (!err)
		txd_forget(fs, e.node, 1);
	return err;
}

static int drop(struct txd_fs *fs, const char *name)
{
	uint64_t dir;
	int err = tt_resolve(fs, active, NULL, NULL, &dir);
	return err ? err : txd_rmdir(fs, &me, dir, name);
}

/* touch active/PID/name: a renew (SPEC §5). */
static int renew(struct txd_fs *fs, const char *name)
{
	char path[128];
	uint64_t node;
	struct txd_setattr sa = {.valid = TXD_SET_MTIME_NOW};
	snprintf(path, sizeof(path), "%s/%s", active, name);
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	return err ? err : txd_setattr(fs, &me, node, &sa, 0, NULL);
}

/* The token of name held by this process; 0 if not held. */
static uint64_t token_of(struct txd_fs *fs, const char *name)
{
	char path[128], *buf = NULL;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s/token", active, name);
	if (tt_get(fs, path, &buf, &len))
		return 0;
	uint64_t t = strtoull(buf, NULL, 10);
	free(buf);
	return t;
}

/* Does completed/TOKEN exist (the grant ended by a logged release)? */
static bool completed(struct txd_fs *fs, uint64_t token)
{
	char path[96];
	uint64_t node;
	snprintf(path, sizeof(path), ".txdir/leases/completed/%" PRIu64, token);
	return tt_resolve(fs, path, NULL, NULL, &node) == 0;
}

static const struct txd_opts dur_fsync = {.durability = TXD_DUR_FSYNC,
					  .commit_interval_ms = 3600 * 1000};
static const struct txd_opts dur_none = {.durability = TXD_DUR_NONE};

TestSuite(svc, .init = init_me, .timeout = 600);

/* V1 / L7: a grant is in the WAL and comes back at the next open. */
Test(svc, V1_grant_replays_across_reopen)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(grab(fs, "a"), 0);
	cr_assert_eq(grab(fs, "a"), -EEXIST, "L1: a second grab of a held name");
	uint64_t t = token_of(fs, "a");
	cr_assert_gt(t, 0);
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(token_of(fs, "a"), t, "the grant and its token survive a reopen");
	cr_assert_eq(grab(fs, "b"), 0);
	cr_assert_gt(token_of(fs, "b"), t, "L2: tokens keep increasing after a reopen");
	cr_assert_eq(drop(fs, "a"), 0);
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(token_of(fs, "a"), 0, "a release survives a reopen");
	cr_assert_gt(token_of(fs, "b"), t);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* V2: with replay starting after the checkpoint's LSN, only the checkpoint's
 * section can bring the grant back. */
Test(svc, V2_checkpoint_carries_leases)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(grab(fs, "c"), 0);
	uint64_t t = token_of(fs, "c");
	cr_assert_eq(tt_put(fs, "f", "x", 1), 0); /* a commit after the grant */
	cr_assert_eq(txd_checkpoint(fs), 0);
	struct txd_status st;
	txd_get_status(fs, &st);
	cr_assert_geq(st.checkpoint_lsn, st.lsn, "the checkpoint covers the grant's record");
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(token_of(fs, "c"), t, "V2: the checkpoint carried the grant");
	cr_assert_eq(grab(fs, "d"), 0);
	cr_assert_gt(token_of(fs, "d"), t, "V2/L2: the checkpoint carried the token counter");
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* L2: a crash (process death, or a power cut in durability=none) never
 * lets a token be handed out twice. */
static void tokens_across_crash(const struct txd_opts *o, bool power)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	uint64_t high = 0;
	for (int round = 0; round < 4; round++) {
		faultos_install();
		cr_assert_eq(txd_fs_open(store, o, &fs, NULL), 0, "round %d", round);
		char name[16];
		snprintf(name, sizeof(name), "t%d", round);
		cr_assert_eq(grab(fs, name), 0);
		uint64_t t = token_of(fs, name);
		cr_assert_gt(t, high, "L2: token %" PRIu64 " after %" PRIu64 " (round %d)", t, high,
			     round);
		high = t;
		cr_assert_eq(drop(fs, name), 0);
		faultos_crash();
		txd_fs_close(fs);
		if (power)
			faultos_power_cut(1234 + (uint64_t)round);
		faultos_revive();
		faultos_uninstall();
	}
	tt_rmtree(store);
	free(store);
}

Test(svc, L2_tokens_never_repeat_after_process_death)
{
	tokens_across_crash(&dur_fsync, false);
}

Test(svc, L2_tokens_never_repeat_after_power_cut_durability_none)
{
	tokens_across_crash(&dur_none, true);
}

/* ---- a crash at every I/O step of grant and release ----------------------- */
struct run {
	int grant_err, release_err, regrant_err;
	uint64_t token, retoken;
};

/* grant g, release g, grant g again. */
static void workload(struct txd_fs *fs, struct run *r)
{
	r->grant_err = grab(fs, "g");
	r->token = r->grant_err ? 0 : token_of(fs, "g");
	r->release_err = r->grant_err ? -1 : drop(fs, "g");
	r->regrant_err = r->release_err ? -1 : grab(fs, "g");
	r->retoken = r->regrant_err ? 0 : token_of(fs, "g");
}

static uint64_t ref_count[FOS_NCALLS], base_count[FOS_NCALLS];

static void reference(void)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct run r;
	faultos_install();
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	for (int c = 0; c < FOS_NCALLS; c++)
		base_count[c] = faultos_count(c);
	workload(fs, &r);
	cr_assert_eq(r.grant_err | r.release_err | r.regrant_err, 0);
	for (int c = 0; c < FOS_NCALLS; c++)
		ref_count[c] = faultos_count(c) - base_count[c];
	txd_fs_close(fs);
	faultos_uninstall();
	tt_rmtree(store);
	free(store);
}

static void crash_at(enum faultos_call call, uint64_t n, bool power)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct run r = {0};
	faultos_install();
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	faultos_crash_at(call, n);
	workload(fs, &r);
	txd_fs_close(fs);
	if (power)
		faultos_power_cut(n * 31 + (uint64_t)call);
	faultos_revive();
	faultos_uninstall();

	int err = txd_fs_open(store, &dur_fsync, &fs, NULL);
	cr_assert_eq(err, 0, "reopen after a crash at call %d #%" PRIu64 ": %s", call, n,
		     txd_strerror(err));
	uint64_t t = token_of(fs, "g");
	const char *at = power ? "power cut" : "process death";
	/* granted, release failed: held with its token, or released by a
	 * release record that reached the log (L10) — then completed/ has it.
	 * (r.token 0: the crash came before the grantee could read its token,
	 * which is I/O too: /proc.) */
	if (!r.grant_err && r.release_err) {
		cr_assert(t == r.token || !r.token || (t == 0 && completed(fs, r.token)),
			  "%s at call %d #%" PRIu64 ": granted %" PRIu64 ", after recovery %" PRIu64,
			  at, call, n, r.token, t);
		cr_assert(t || !r.token || completed(fs, r.token),
			  "%s at call %d #%" PRIu64 ": an acknowledged grant vanished", at, call, n);
	}
	/* released: stays released — the failed regrant may be in the log
	 * (lease.h L10), but never the first grant again. After a power cut
	 * it may (L11: a release alone is not synced): a real power cut is a
	 * reboot and start-up releases the old boot's grants (L8), but this
	 * one keeps the boot id and the holder (this process) alive. */
	if (!r.release_err && r.regrant_err && !(power && t == r.token))
		cr_assert(t == 0 || t > r.token, "%s at call %d #%" PRIu64
			  ": a returned release came back (token %" PRIu64 ")", at, call, n, t);
	if (!r.regrant_err)
		cr_assert(t && (t == r.retoken || !r.retoken),
			  "%s at call %d #%" PRIu64 ": the second grant", at, call, n);
	/* whatever is there is one whole grant: a token the grantee may have
	 * been told, never a torn or third one */
	cr_assert(t == 0 || t == r.token || t == r.retoken || !r.token || !r.retoken,
		  "%s at call %d #%" PRIu64 ": token %" PRIu64, at, call, n, t);
	if (t)
		cr_assert_eq(drop(fs, "g"), 0);
	cr_assert_eq(grab(fs, "h"), 0);
	uint64_t next = token_of(fs, "h");
	cr_assert_gt(next, r.token > r.retoken ? r.token : r.retoken,
		     "%s at call %d #%" PRIu64 ": L2: token %" PRIu64 " reused", at, call, n, next);
	cr_assert_gt(next, t);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

static void every_io_step(bool power)
{
	static const enum faultos_call calls[] = {FOS_PWRITE, FOS_FSYNC, FOS_FDATASYNC,
						  FOS_FTRUNCATE, FOS_RENAME, FOS_OPEN};
	size_t points = 0;
	reference();
	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
		for (uint64_t n = 1; n <= ref_count[calls[c]]; n++, points++)
			crash_at(calls[c], n, power);
	cr_assert_geq(points, 4, "grant and release must do I/O worth crashing in");
	cr_log_info("crashed at %zu I/O steps (power cut: %d)", points, power);
}

Test(svc, L3_L4_process_death_at_every_io_step_of_grant_and_release)
{
	every_io_step(false);
}

Test(svc, L3_L4_power_cut_at_every_io_step_of_grant_and_release)
{
	every_io_step(true);
}

/* ---- V3: a format-1 store ---------------------------------------------------- */
static char *slurp(const char *dir, const char *name)
{
	char path[512], *buf = calloc(1, 64);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (f) {
		if (!fgets(buf, 64, f))
			buf[0] = 0;
		fclose(f);
	}
	return buf;
}

static void put_format(const char *dir, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/FORMAT", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* Version field of the newest checkpoint's header (0: none). */
static uint32_t ckpt_version(const char *store)
{
	char cmd[600], line[300] = "";
	snprintf(cmd, sizeof(cmd), "ls %s/coordination/dtc/checkpoints | sort | tail -n 1", store);
	FILE *p = popen(cmd, "r");
	if (!p || !fgets(line, sizeof(line), p)) {
		if (p)
			pclose(p);
		return 0;
	}
	pclose(p);
	line[strcspn(line, "\n")] = 0;
	char path[700];
	snprintf(path, sizeof(path), "%s/coordination/dtc/checkpoints/%s", store, line);
	int fd = open(path, O_RDONLY);
	uint32_t ver = 0;
	if (fd >= 0) {
		if (pread(fd, &ver, 4, 8) != 4)
			ver = 0;
		close(fd);
	}
	return ver;
}

Test(svc, V3_format_1_store_opens_and_upgrades_at_its_first_lease)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	put_format(store, "txdir-store 1\n"); /* what the previous binary wrote */
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(tt_put(fs, "f", "one", 3), 0);
	txd_fs_close(fs);
	char *fmt = slurp(store, "FORMAT");
	cr_assert_str_eq(fmt, "txdir-store 1\n", "V3: no lease, no upgrade");
	free(fmt);
	cr_assert_eq(ckpt_version(store), 1, "a format-1 store gets version-1 checkpoints");

	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(grab(fs, "up"), 0);
	uint64_t t = token_of(fs, "up");
	fmt = slurp(store, "FORMAT");
	cr_assert_str_eq(fmt, "txdir-store 3\n", "V3: the first lease upgrades the store");
	free(fmt);
	txd_fs_close(fs);
	cr_assert_eq(ckpt_version(store), 2);
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(token_of(fs, "up"), t);
	char *data;
	size_t len;
	cr_assert_eq(tt_get(fs, "f", &data, &len), 0);
	cr_assert_eq(len, 3);
	free(data);
	txd_fs_close(fs);

	put_format(store, "txdir-store 4\n");
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), -TXD_EFORMAT,
		     "a newer format is refused");
	tt_rmtree(store);
	free(store);
}


/* ---- waits: released (deferred reads, cancel, O_NONBLOCK, poll) ----------- */
struct waited {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int calls, err;
};

static void on_done(void *arg, int err)
{
	struct waited *w = arg;
	pthread_mutex_lock(&w->lock);
	w->calls++;
	w->err = err;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

static void on_wake(void *arg)
{
	on_done(arg, 0);
}

static int open_released(struct txd_fs *fs, const char *name, int flags, uint64_t *fh)
{
	char path[128];
	uint64_t node;
	struct txd_open_out oo;
	snprintf(path, sizeof(path), "%s/%s/released", active, name);
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	if (!err)
		err = txd_open(fs, NULL, node, flags, &oo);
	*fh = oo.fh;
	return err;
}

Test(svc, released_is_a_deferred_read_answered_at_the_release)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct waited w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct waited p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct waited c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	char buf[64];
	uint64_t fh, nb, fh2;
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(grab(fs, "r"), 0);
	cr_assert_eq(open_released(fs, "r", O_RDONLY, &fh), 0);
	cr_assert_eq(open_released(fs, "r", O_RDONLY | O_NONBLOCK, &nb), 0);
	cr_assert_eq(open_released(fs, "r", O_RDONLY, &fh2), 0);
	cr_assert(txd_read_may_wait(fs, fh));
	cr_assert_eq(txd_read(fs, nb, buf, sizeof(buf), 0), -EAGAIN, "O_NONBLOCK: EAGAIN");
	cr_assert_eq(txd_read_async(fs, fh, buf, sizeof(buf), 0, on_done, &w), -EINPROGRESS);
	cr_assert_eq(txd_read_async(fs, fh2, buf, sizeof(buf), 0, on_done, &c), -EINPROGRESS);
	cr_assert_eq(txd_read_cancel(fs, &c), 0, "an interrupted wait is withdrawn");
	cr_assert_eq(txd_poll(fs, nb, on_wake, &p), 0, "poll: not ready");
	cr_assert_eq(w.calls + p.calls, 0);
	cr_assert_eq(drop(fs, "r"), 0);
	/* the release's event answers before rmdir returns (on its thread) */
	cr_assert_eq(w.calls, 1, "the deferred read is answered at the release");
	cr_assert_eq(w.err, 0);
	cr_assert_eq(p.calls, 1, "poll: woken at the release");
	cr_assert_eq(c.calls, 0, "a withdrawn wait is never answered");
	ssize_t n = txd_read(fs, fh, buf, sizeof(buf), 0);
	cr_assert_eq(n, 8);
	cr_assert(memcmp(buf, "release\n", 8) == 0);
	cr_assert_eq(txd_poll(fs, nb, NULL, NULL), 1, "poll: ready after the release");
	cr_assert_eq(txd_read_cancel(fs, &w), -ENOENT, "nothing left to withdraw");
	txd_release(fs, fh);
	txd_release(fs, nb);
	txd_release(fs, fh2);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* V5: a power cut may keep a durable lease record and lose its event (the
 * event log is fsynced at checkpoints): start-up derives it from the WAL,
 * once. Modelled by a process death, then the event log cut back to empty. */
static int count_in(const char *store, const char *needle)
{
	char path[512], line[4096];
	int n = 0;
	snprintf(path, sizeof(path), "%s/coordination/events.log", store);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

Test(svc, V5_events_of_replayed_grants_renews_and_releases_are_derived_once)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	char path[512];
	faultos_install(); /* only while no store is open (os.h) */
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(grab(fs, "e1"), 0);
	cr_assert_eq(grab(fs, "e2"), 0);
	cr_assert_eq(renew(fs, "e1"), 0);
	cr_assert_eq(renew(fs, "e2"), 0);
	cr_assert_eq(renew(fs, "e2"), 0);
	cr_assert_eq(drop(fs, "e1"), 0);
	cr_assert_eq(count_in(store, "\"type\":\"lease_renew\""), 3);
	faultos_crash(); /* no checkpoint at close: replay has the records */
	txd_fs_close(fs);
	faultos_revive();
	faultos_uninstall();
	snprintf(path, sizeof(path), "%s/coordination/events.log", store);
	cr_assert_eq(truncate(path, 0), 0); /* what a power cut may do to it */
	for (int round = 0; round < 2; round++) {
		faultos_install();
		cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
		cr_assert_eq(count_in(store, "\"type\":\"lease_grant\",\"name\":\"e1\""), 1,
			     "round %d: the grant's event, once", round);
		cr_assert_eq(count_in(store, "\"type\":\"lease_grant\",\"name\":\"e2\""), 1);
		cr_assert_eq(count_in(store, "\"type\":\"lease_release\",\"name\":\"e1\""), 1,
			     "round %d: the release's event, once", round);
		cr_assert_eq(count_in(store, "\"type\":\"lease_renew\",\"name\":\"e1\""), 1,
			     "round %d: the renew of a grant replay saw end, once", round);
		cr_assert_eq(count_in(store, "\"type\":\"lease_renew\",\"name\":\"e2\""), 2,
			     "round %d: each renew's event, once", round);
		cr_assert_eq(count_in(store, "\"derived\":true"), 6);
		faultos_crash();
		txd_fs_close(fs);
		faultos_revive();
		faultos_uninstall();
	}
	tt_rmtree(store);
	free(store);
}

/* SPEC §5: `cat waiting/PID/NAME/granted` prints the token "and the waiting
 * entry then goes away". Here: once granted and its `granted` read in full
 * (a reader opening it after the grant still learns the token; so does
 * active/PID/NAME/token). The holder ahead is this test's parent (root may
 * act for it). */
static int wait_grab(struct txd_fs *fs, const char *dir, const char *name)
{
	uint64_t node;
	struct txd_entry e;
	int err = tt_resolve(fs, dir, NULL, NULL, &node);
	if (!err)
		err = txd_mkdir(fs, &me, node, name, 0755, &e);
	if (!err)
		txd_forget(fs, e.node, 1);
	return err;
}

static int open_path(struct txd_fs *fs, const char *path, uint64_t *fh)
{
	uint64_t node;
	struct txd_open_out oo = {0};
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	if (!err)
		err = txd_open(fs, NULL, node, O_RDONLY, &oo);
	*fh = oo.fh;
	return err;
}

Test(svc, waiting_entry_goes_once_granted_is_read)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct waited w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	char pa[96], wd[96], entry[128], granted[160], buf[64];
	uint64_t fh, late, node;
	snprintf(pa, sizeof(pa), ".txdir/leases/active/%d", (int)getppid());
	snprintf(wd, sizeof(wd), ".txdir/leases/waiting/%d", (int)getpid());
	snprintf(entry, sizeof(entry), "%s/g", wd);
	snprintf(granted, sizeof(granted), "%s/granted", entry);
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(wait_grab(fs, pa, "g"), 0, "the parent holds g");
	cr_assert_eq(wait_grab(fs, wd, "g"), 0, "queued behind it");
	cr_assert_eq(open_path(fs, granted, &fh), 0);
	cr_assert_eq(txd_read_async(fs, fh, buf, sizeof(buf), 0, on_done, &w), -EINPROGRESS);
	uint64_t dir;
	cr_assert_eq(tt_resolve(fs, pa, NULL, NULL, &dir), 0);
	cr_assert_eq(txd_rmdir(fs, &me, dir, "g"), 0);
	cr_assert_eq(w.calls, 1, "granted at the release");
	uint64_t tok = token_of(fs, "g");
	cr_assert_gt(tok, 0, "the waiter holds g");
	/* granted, not read yet: the entry stays; a late reader learns it */
	cr_assert_eq(tt_resolve(fs, entry, NULL, NULL, &node), 0, "unread: still there");
	cr_assert_eq(open_path(fs, granted, &late), 0, "opened after the grant");
	ssize_t n = txd_read(fs, fh, buf, sizeof(buf), 0);
	cr_assert_gt(n, 0);
	buf[n] = 0;
	cr_assert_eq(strtoull(buf, NULL, 10), tok, "granted prints the token");
	cr_assert_eq(tt_resolve(fs, entry, NULL, NULL, &node), -ENOENT,
		     "read: the waiting entry goes away");
	n = txd_read(fs, late, buf, sizeof(buf), 0);
	cr_assert_gt(n, 0, "an open granted still reads");
	buf[n] = 0;
	cr_assert_eq(strtoull(buf, NULL, 10), tok);
	cr_assert_eq(token_of(fs, "g"), tok, "the lease stays: active/PID/g/token");
	txd_release(fs, fh);
	txd_release(fs, late);
	/* the next grant of g to this process has an entry again */
	cr_assert_eq(drop(fs, "g"), 0);
	cr_assert_eq(wait_grab(fs, wd, "g"), 0, "free: granted at once");
	cr_assert_eq(tt_resolve(fs, entry, NULL, NULL, &node), 0, "a new grant: a new entry");
	cr_assert_eq(drop(fs, "g"), 0);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* SPEC §5 "reclaim in progress shows in leases/cleanup_queue/" (svc.h V10):
 * a holder killed while the WAL's fdatasync is held shut (a gate in the os
 * table) is listed there, with the lease it held, until its release record
 * is durable; then the entry goes. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool closed, entered;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
static struct txd_os_ops gated;

static int gated_fdatasync(int fd)
{
	pthread_mutex_lock(&gate.lock);
	if (gate.closed) {
		gate.entered = true;
		pthread_cond_broadcast(&gate.cv);
		while (gate.closed)
			pthread_cond_wait(&gate.cv, &gate.lock);
	}
	pthread_mutex_unlock(&gate.lock);
	return txd_os_real.fdatasync(fd);
}

static void gate_set(bool closed)
{
	pthread_mutex_lock(&gate.lock);
	gate.closed = closed;
	gate.entered = false;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.lock);
}

static bool cq_lists(struct txd_fs *fs, const char *pid)
{
	uint64_t node;
	char path[96];
	snprintf(path, sizeof(path), ".txdir/leases/cleanup_queue/%s", pid);
	return tt_resolve(fs, path, NULL, NULL, &node) == 0;
}

Test(svc, V10_cleanup_queue_shows_a_reclaim_until_its_release_is_durable)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	char dir[96], pidtxt[16], path[128], *buf = NULL;
	size_t len;
	gated = txd_os_real;
	gated.fdatasync = gated_fdatasync;
	txd_os_set(&gated); /* only while no store is open (os.h) */
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	pid_t kid = fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	snprintf(pidtxt, sizeof(pidtxt), "%d", (int)kid);
	snprintf(dir, sizeof(dir), ".txdir/leases/active/%d", (int)kid);
	cr_assert_eq(wait_grab(fs, dir, "cq"), 0, "the child holds cq");
	snprintf(path, sizeof(path), "%s/cq/token", dir);
	cr_assert_eq(tt_get(fs, path, &buf, &len), 0);
	uint64_t tok = strtoull(buf, NULL, 10);
	free(buf);
	cr_assert_not(cq_lists(fs, pidtxt), "nothing to reclaim yet");
	gate_set(true);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	/* the death watcher detects it and blocks in the release's sync */
	pthread_mutex_lock(&gate.lock);
	while (!gate.entered)
		pthread_cond_wait(&gate.cv, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
	cr_assert(cq_lists(fs, pidtxt), "reclaim in progress: cleanup_queue/%s", pidtxt);
	snprintf(path, sizeof(path), ".txdir/leases/cleanup_queue/%s", pidtxt);
	cr_assert_eq(tt_get(fs, path, &buf, &len), 0);
	cJSON *o = cJSON_Parse(buf);
	cr_assert_not_null(o, "JSON: %s", buf);
	cr_assert_eq(cJSON_GetObjectItem(o, "pid")->valuedouble, (double)kid);
	cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "leases"), 0)->valuestring, "cq");
	cr_assert(cJSON_IsString(cJSON_GetObjectItem(o, "detected")));
	cJSON_Delete(o);
	free(buf);
	gate_set(false);
	/* gone once the release is durable: bounded, the watcher's thread */
	bool listed = true;
	for (int i = 0; i < 5000 && (listed = cq_lists(fs, pidtxt)); i++)
		usleep(1000);
	cr_assert_not(listed, "the entry goes once the release is durable");
	cr_assert(completed(fs, tok), "released by its death");
	txd_fs_close(fs);
	txd_os_set(NULL);
	tt_rmtree(store);
	free(store);
}

/* The fixed directories of .txdir/leases may be cached by the kernel (a
 * path walk to active/PID/NAME costs no lookup round trip for them); what
 * comes and goes (active/PID, a lease) may not. */
Test(svc, fixed_and_pid_lease_directories_are_cacheable_leases_not)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	struct txd_entry e;
	uint64_t leases, node;
	char pid[16];
	cr_assert_eq(txd_fs_open(store, &dur_fsync, &fs, NULL), 0);
	cr_assert_eq(tt_resolve(fs, ".txdir", NULL, NULL, &node), 0);
	cr_assert_eq(txd_lookup(fs, node, "leases", &e), 0);
	cr_assert(e.cacheable, "leases/");
	leases = e.node;
	const char *fixed[] = {"active", "by-name", "cleanup_queue", "completed", "waiting"};
	for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
		cr_assert_eq(txd_lookup(fs, leases, fixed[k], &e), 0);
		cr_assert(e.cacheable, "%s/", fixed[k]);
		txd_forget(fs, e.node, 1);
	}
	cr_assert_eq(txd_lookup(fs, leases, "active", &e), 0);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	uint64_t active = e.node;
	cr_assert_eq(txd_lookup(fs, active, pid, &e), 0);
	cr_assert(e.cacheable, "active/PID: cached (a dead PID's grab is ENOENT all the same)");
	uint64_t apid = e.node;
	cr_assert_eq(grab(fs, "c"), 0);
	cr_assert_eq(txd_lookup(fs, apid, "c", &e), 0);
	cr_assert_not(e.cacheable, "a lease comes and goes");
	txd_forget(fs, e.node, 1);
	cr_assert_eq(drop(fs, "c"), 0);
	txd_forget(fs, apid, 1);
	txd_forget(fs, active, 1);
	txd_forget(fs, leases, 1);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}
