/*
 * fuzz_ctlwrite.c — the transaction control file and the control tree
 * through the public API (SPEC §4-5, txn.h, ctl.c), from hostile bytes.
 *
 * Input: steps separated by '\n\n' (so single newlines stay inside a
 * write). The first step is the transaction's name (mkdir
 * .txdir/txn/NAME; a refused name falls back to a plain one). Each later
 * step starts with a letter:
 *   w...  write the rest (up to 100 bytes: the limit is 64) to the txn's ctl
 *   f...  write the rest as file root/<a-d> of the view
 *   m...  write the rest as file <a-d> of the main tree (a conflict)
 *   r...  read a control file: the txn's status or info.json,
 *         .txdir/status.json, .txdir/events, the newest .txdir/commits/ID
 *   c     write a checkpoint (txd_checkpoint)
 *   other the whole step is one write to ctl
 * then rmdir .txdir/txn/NAME. A fresh store per input (durability none, in
 * the scratch directory), so an input reproduces alone (FUZZ_STORE_REUSE:
 * one store for many, fuzz.h). Properties: no crash, sanitizer report or
 * leak; a ctl write returns its size or a negative errno; after a write of
 * "commit" succeeded, "abort" is refused (-EINVAL: too late).
 */
#include <errno.h>

#include "fuzz.h"
#include "txdir.h"
#include "txdtest.h"

static struct txd_fs *fs;
static char store[PATH_MAX];
static unsigned serial;

static void store_close(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	if (store[0])
		fuzz_clear(store, 1);
}

/* A fresh store per input (or per FUZZ_STORE_REUSE inputs: fuzz.h). */
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

static void put_file(const char *dir, const char *data, size_t n)
{
	char path[PATH_MAX];
	char leaf = n ? (char)('a' + (unsigned char)data[0] % 4) : 'a';
	FUZZ_FMT(path, "%s%c", dir, leaf);
	(void)tt_put(fs, path, data, n);
}

static void read_ctl(const char *txn, unsigned char which)
{
	char path[PATH_MAX];
	switch (which % 5) {
	case 0:
		FUZZ_FMT(path, ".txdir/txn/%s/status", txn);
		break;
	case 1:
		FUZZ_FMT(path, ".txdir/txn/%s/info.json", txn);
		break;
	case 2:
		FUZZ_FMT(path, ".txdir/status.json");
		break;
	case 3:
		FUZZ_FMT(path, ".txdir/events");
		break;
	default:
		FUZZ_FMT(path, ".txdir/commits/1");
		break;
	}
	char *data;
	size_t len;
	if (tt_get(fs, path, &data, &len) == 0)
		free(data);
}

static bool is_word(const char *p, size_t n, const char *w)
{
	while (n && (p[n - 1] == '\n' || p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	while (n && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	return n == strlen(w) && memcmp(p, w, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096 || store_get())
		return 0;
	char *in = malloc(size + 1);
	FUZZ_CHECK(in);
	memcpy(in, data, size);
	in[size] = 0;
	char *end = in + size, *step = in, *next;
	next = memmem(step, (size_t)(end - step), "\n\n", 2);
	size_t nlen = (size_t)((next ? next : end) - step);

	/* the transaction: its name from the input when the engine takes it */
	uint64_t txns;
	FUZZ_CHECK(tt_resolve(fs, ".txdir/txn", NULL, NULL, &txns) == 0);
	char name[300];
	struct txd_entry e;
	FUZZ_FMT(name, "%.*s", (int)(nlen < 299 ? nlen : 299), step);
	int err = strlen(name) == nlen && !strchr(name, '/') && name[0] != '.'
			  ? txd_mkdir(fs, &tt_cred, txns, name, 0755, &e)
			  : -EINVAL;
	if (err) {
		FUZZ_FMT(name, "t%u", serial++);
		if (txd_mkdir(fs, &tt_cred, txns, name, 0755, &e)) {
			free(in);
			return 0;
		}
	}
	txd_forget(fs, e.node, 1);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "txn %s: mkdir %d\n", name, err);
	char root[PATH_MAX], ctl[PATH_MAX];
	FUZZ_FMT(root, ".txdir/txn/%s/root/", name);
	FUZZ_FMT(ctl, ".txdir/txn/%s/ctl", name);

	bool committed = false;
	for (step = next ? next + 2 : end; step < end; step = next ? next + 2 : end) {
		next = memmem(step, (size_t)(end - step), "\n\n", 2);
		size_t n = (size_t)((next ? next : end) - step);
		const char *w = step;
		size_t wn = n;
		switch (step[0]) {
		case 'f':
			put_file(root, step + 1, n - 1);
			continue;
		case 'm':
			put_file("", step + 1, n - 1);
			continue;
		case 'r':
			read_ctl(name, n > 1 ? (unsigned char)step[1] : 0);
			continue;
		case 'c':
			if (n == 1) {
				txd_checkpoint(fs);
				continue;
			}
			break;
		case 'w':
			w = step + 1;
			wn = n - 1 > 100 ? 100 : n - 1;
			break;
		}
		uint64_t node;
		struct txd_open_out oo;
		if (tt_resolve(fs, ctl, NULL, NULL, &node) || txd_open(fs, NULL, node, O_WRONLY, &oo))
			continue;
		ssize_t r = txd_write(fs, NULL, oo.fh, w, wn, 0);
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "%s: write %.*s: %zd\n", name, (int)wn, w, r);
		FUZZ_CHECK(r == (ssize_t)wn || (r < 0 && r > -4096));
		if (r >= 0 && is_word(w, wn, "commit"))
			committed = true;
		else if (committed && wn <= 64 && is_word(w, wn, "abort"))
			FUZZ_CHECK(r == -EINVAL);
		txd_release(fs, oo.fh);
	}
	txd_rmdir(fs, NULL, txns, name);
	free(in);
	return 0;
}
