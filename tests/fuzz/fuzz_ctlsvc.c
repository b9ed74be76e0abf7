/*
 * fuzz_ctlsvc.c — the control-file writes of the services added in
 * session 6, through the public API from hostile bytes: proposals
 * (.txdir/consensus/: participants, timeout, payload, votes yes/no; ctl_vote.h),
 * the global state (.txdir/state/update and global_state.json; ctl_state.h),
 * and the transaction ctl words "prepare P as NAME" and
 * "commit if-lease NAME TOKEN" (txn.h, dtc.h).
 *
 * Input: steps separated by '\n\n'; in a step, the first line is the
 * target's name and the rest its bytes (a step with no newline: all name).
 *   P NAME          mkdir .txdir/consensus/proposals/NAME
 *   D NAME          rmdir it
 *   T P\nBYTES      write BYTES to proposals/P/timeout   (one write)
 *   A P\nBYTES      ... to proposals/P/participants      (one write)
 *   L P\nBYTES      ... to proposals/P/payload           (write, flush)
 *   V P\nPART\nB    write B to votes/P/PART             (one write)
 *   R P             read proposals/P/info.json, participants, payload,
 *                   decisions/P, .txdir/events
 *   U BYTES         write BYTES to .txdir/state/update   (write, flush)
 *   G BYTES         write BYTES as .txdir/state/global_state.json (flush)
 *   C T\nWORDS      write WORDS to .txdir/txn/T/ctl (T begun first; a
 *                   file root/f is written in it so a prepare has changes)
 *   other           ignored
 * A fresh store per input (durability none, in the scratch directory), so
 * an input reproduces alone (FUZZ_STORE_REUSE: one store for many,
 * fuzz.h); every transaction is ended (rmdir) after.
 * Properties: no crash, sanitizer report or leak; every write returns its
 * size or a negative errno, and every flush 0 or a negative errno; the
 * global state document reads back as JSON after each step; a decision
 * file reads "committed" or "aborted ..." and, once there, never changes.
 */
#include <cjson/cJSON.h>
#include <errno.h>

#include "fuzz.h"
#include "txdir.h"
#include "txdtest.h"

static struct txd_fs *fs;
static char store[PATH_MAX];

static void store_close(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	if (store[0])
		fuzz_clear(store, 1);
}

static int store_get(void)
{
	static bool registered;
	if (fs && !fuzz_store_due())
		return 0; /* FUZZ_STORE_REUSE (fuzz.h) */
	if (!registered)
		atexit(store_close);
	registered = true;
	store_close();
	FUZZ_FMT(store, "%s/store", fuzz_tmpdir());
	FUZZ_CHECK(txd_store_init(store) == 0);
	struct txd_opts o = {.durability = TXD_DUR_NONE, .show_ctl = true};
	return txd_fs_open(store, &o, &fs, NULL);
}

static bool verbose(void)
{
	static int v = -1;
	if (v < 0)
		v = getenv("FUZZ_VERBOSE") != NULL;
	return v;
}

/* One write of data to path (no create), then flush when asked. */
static void write_to(const char *path, const char *data, size_t n, bool flush)
{
	uint64_t node;
	struct txd_open_out oo;
	if (tt_resolve(fs, path, NULL, NULL, &node) ||
	    txd_open(fs, &tt_cred, node, O_WRONLY, &oo))
		return;
	ssize_t r = txd_write(fs, &tt_cred, oo.fh, data, n, 0);
	if (verbose())
		fprintf(stderr, "write %s [%.*s]: %zd\n", path, (int)(n < 80 ? n : 80), data, r);
	FUZZ_CHECK(r == (ssize_t)n || (r < 0 && r > -4096));
	if (flush) {
		int f = txd_flush(fs, oo.fh, &tt_cred, NULL);
		if (verbose())
			fprintf(stderr, "flush %s: %d\n", path, f);
		FUZZ_CHECK(f <= 0 && f > -(TXD_EBASE + 100));
	}
	txd_release(fs, oo.fh);
}

static void read_quiet(const char *path)
{
	char *data;
	size_t len;
	if (tt_get(fs, path, &data, &len) == 0)
		free(data);
}

/* Decisions seen so far: name -> text, to check they never change. */
#define SEEN_MAX 16
static struct {
	char name[256];
	char text[128];
} seen[SEEN_MAX];
static int nseen;

static void check_decision(const char *p)
{
	char path[PATH_MAX], *data;
	size_t len;
	FUZZ_FMT(path, ".txdir/consensus/decisions/%s", p);
	if (tt_get(fs, path, &data, &len))
		return;
	FUZZ_CHECK(strncmp(data, "committed", 9) == 0 || strncmp(data, "aborted", 7) == 0);
	for (int i = 0; i < nseen; i++)
		if (strcmp(seen[i].name, p) == 0)
			FUZZ_CHECK(strncmp(seen[i].text, data, sizeof(seen[i].text) - 1) == 0);
	if (nseen < SEEN_MAX) {
		snprintf(seen[nseen].name, sizeof(seen[nseen].name), "%s", p);
		snprintf(seen[nseen].text, sizeof(seen[nseen].text), "%.*s", (int)len, data);
		nseen++;
	}
	free(data);
}

static void check_state(void)
{
	char *data;
	size_t len;
	FUZZ_CHECK(tt_get(fs, ".txdir/state/global_state.json", &data, &len) == 0);
	cJSON *j = cJSON_ParseWithLength(data, len);
	FUZZ_CHECK(j);
	cJSON_Delete(j);
	free(data);
}

/* A name from a line: at most 255 bytes, copied NUL-terminated. */
static void take_name(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void txn_words(const char *t, const char *w, size_t n)
{
	char path[PATH_MAX];
	int err = tt_txn_begin(fs, t);
	if (err && err != -EEXIST)
		return;
	FUZZ_FMT(path, ".txdir/txn/%s/root/f", t);
	(void)tt_put(fs, path, "x", 1);
	FUZZ_FMT(path, ".txdir/txn/%s/ctl", t);
	write_to(path, w, n, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192 || store_get())
		return 0;
	char *in = malloc(size + 1);
	FUZZ_CHECK(in);
	memcpy(in, data, size);
	in[size] = 0;
	nseen = 0;
	char txns[8][256];
	int ntxns = 0;
	char *end = in + size, *step, *next;
	for (step = in; step < end; step = next ? next + 2 : end) {
		next = memmem(step, (size_t)(end - step), "\n\n", 2);
		size_t n = (size_t)((next ? next : end) - step);
		if (n == 0)
			continue;
		char op = step[0], name[256], part[256], path[PATH_MAX];
		const char *body = step + 1, *nl = memchr(body, '\n', n - 1);
		size_t nlen = nl ? (size_t)(nl - body) : n - 1;
		const char *rest = nl ? nl + 1 : step + n;
		size_t rlen = (size_t)(step + n - rest);
		take_name(name, sizeof(name), body, nlen);
		if (strlen(name) != nlen || strchr(name, '/') || !strcmp(name, ".") ||
		    !strcmp(name, "..") || (!name[0] && op != 'U' && op != 'G'))
			continue;
		switch (op) {
		case 'P':
			FUZZ_FMT(path, ".txdir/consensus/proposals/%s", name);
			(void)tt_mkdir(fs, path);
			break;
		case 'D': {
			uint64_t parent;
			if (tt_resolve(fs, ".txdir/consensus/proposals", NULL, NULL, &parent) == 0)
				(void)txd_rmdir(fs, &tt_cred, parent, name);
			break;
		}
		case 'T':
		case 'A':
		case 'L':
			FUZZ_FMT(path, ".txdir/consensus/proposals/%s/%s", name,
				 op == 'T' ? "timeout" : op == 'A' ? "participants" : "payload");
			write_to(path, rest, rlen, op == 'L');
			break;
		case 'V': {
			const char *nl2 = memchr(rest, '\n', rlen);
			size_t plen = nl2 ? (size_t)(nl2 - rest) : rlen;
			take_name(part, sizeof(part), rest, plen);
			if (strlen(part) != plen || !part[0] || strchr(part, '/') ||
			    !strcmp(part, ".") || !strcmp(part, ".."))
				break;
			const char *ballot = nl2 ? nl2 + 1 : rest + rlen;
			FUZZ_FMT(path, ".txdir/consensus/votes/%s/%s", name, part);
			write_to(path, ballot, (size_t)(rest + rlen - ballot), false);
			break;
		}
		case 'R':
			FUZZ_FMT(path, ".txdir/consensus/proposals/%s/info.json", name);
			read_quiet(path);
			FUZZ_FMT(path, ".txdir/consensus/proposals/%s/participants", name);
			read_quiet(path);
			FUZZ_FMT(path, ".txdir/consensus/proposals/%s/payload", name);
			read_quiet(path);
			read_quiet(".txdir/events");
			read_quiet(".txdir/state/info.json");
			break;
		case 'U':
			write_to(".txdir/state/update", step + 1, n - 1, true);
			break;
		case 'G':
			(void)tt_put(fs, ".txdir/state/global_state.json", step + 1, n - 1);
			break;
		case 'C':
			if (ntxns < 8) {
				bool known = false;
				for (int i = 0; i < ntxns; i++)
					known |= strcmp(txns[i], name) == 0;
				if (!known)
					memcpy(txns[ntxns++], name, sizeof(name));
			}
			txn_words(name, rest, rlen);
			break;
		default:
			break;
		}
		if (op == 'P' || op == 'V' || op == 'A' || op == 'T' || op == 'R' || op == 'C')
			check_decision(name);
		check_state();
	}
	for (int i = 0; i < ntxns; i++)
		(void)tt_txn_end(fs, txns[i]);
	free(in);
	return 0;
}
