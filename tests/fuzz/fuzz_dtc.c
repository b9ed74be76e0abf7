/*
 * fuzz_dtc.c — prepared-transaction records from hostile bytes (dtc.h D5,
 * D6): the PREPARE and RESOLVE payloads replay reads (dtc_replay_prepare,
 * dtc_replay_resolve) and the checkpoint's section of prepared
 * transactions (dtc_load).
 *
 * Input: steps, each 1 type byte, a u16 little-endian length and that many
 * bytes (the last cut to what is left):
 *   type % 3 == 0   a PREPARE payload (dtc_replay_prepare, lsn = step + 1)
 *   type % 3 == 1   a RESOLVE payload (dtc_replay_resolve)
 *   type % 3 == 2   a checkpoint section (dtc_load)
 * applied under fs->lock to a freshly opened empty store (durability none,
 * in the scratch directory), as start-up replay does. Then status.json and
 * .txdir/txn are read, the prepared transactions are saved (dtc_save),
 * loaded into another fresh store and saved again.
 * Properties: no crash, sanitizer report or leak; every call returns 0 or
 * -errno; what was accepted saves, the saved section loads (a checkpoint
 * never becomes unreadable) and saves to the same bytes.
 *
 * FUZZ_DTC_SEED=FILE (not a fuzzing mode): prepares a real transaction
 * through the control files and writes its checkpoint section, as a type-2
 * step, to FILE: how corpus/fuzz_dtc/seed-prepared-section was made
 * (seed-prepare-resolve is its payload as a PREPARE step and a RESOLVE).
 */
#include <errno.h>

#include "core.h"
#include "dtc.h"
#include "fuzz.h"
#include "txdir.h"
#include "txdtest.h"

static struct txd_fs *fs;
static int nstore;

static void scratch_close(void)
{
	char dir[PATH_MAX];
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	FUZZ_FMT(dir, "%s/store%d", fuzz_tmpdir(), nstore);
	fuzz_clear(dir, 1);
}

/* A fresh empty store (store0 / store1 alternately). */
static void scratch_new(void)
{
	static bool registered;
	char dir[PATH_MAX];
	if (!registered)
		atexit(scratch_close);
	registered = true;
	scratch_close();
	nstore ^= 1;
	FUZZ_FMT(dir, "%s/store%d", fuzz_tmpdir(), nstore);
	FUZZ_CHECK(txd_store_init(dir) == 0);
	struct txd_opts o = {.durability = TXD_DUR_NONE, .show_ctl = true};
	FUZZ_CHECK(txd_fs_open(dir, &o, &fs, NULL) == 0);
}

static bool is_err(int r)
{
	return r == 0 || (r < 0 && r > -(TXD_EBASE + 100));
}

static void save(void **buf, size_t *len)
{
	pthread_mutex_lock(&fs->lock);
	FUZZ_CHECK(dtc_save(fs, buf, len) == 0);
	pthread_mutex_unlock(&fs->lock);
}

static void read_some(void)
{
	char *data;
	size_t len;
	if (tt_get(fs, ".txdir/status.json", &data, &len) == 0)
		free(data);
	uint64_t dir, dh;
	if (tt_resolve(fs, ".txdir/txn", NULL, NULL, &dir) == 0 && txd_opendir(fs, dir, &dh) == 0)
		txd_releasedir(fs, dh);
}

static void write_seed(const char *file)
{
	scratch_new();
	FUZZ_CHECK(tt_mkdir(fs, ".txdir/consensus/proposals/p") == 0);
	FUZZ_CHECK(tt_put(fs, ".txdir/consensus/proposals/p/participants", "me,other", 8) == 0);
	FUZZ_CHECK(tt_txn_begin(fs, "t") == 0);
	FUZZ_CHECK(tt_mkdir(fs, ".txdir/txn/t/root/d") == 0);
	FUZZ_CHECK(tt_put(fs, ".txdir/txn/t/root/d/f", "hello", 5) == 0);
	FUZZ_CHECK(tt_txn_cmd(fs, "t", "prepare p as me") == 0);
	void *b;
	size_t n;
	save(&b, &n);
	FUZZ_CHECK(b && n < 65536);
	FILE *f = fopen(file, "wb");
	FUZZ_CHECK(f);
	uint8_t hdr[3] = {2, (uint8_t)n, (uint8_t)(n >> 8)};
	FUZZ_CHECK(fwrite(hdr, 1, 3, f) == 3 && fwrite(b, 1, n, f) == n && fclose(f) == 0);
	free(b);
	scratch_close();
}

/* dtc_save lists the newest prepared first: compare as sets of entries
 * (u32 len, u64 lsn, payload). */
struct entry {
	const uint8_t *p;
	size_t n;
};

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return memcmp(x->p, y->p, x->n);
}

static size_t entries(const uint8_t *b, size_t len, struct entry **out)
{
	uint32_t count = fuzz_get32(b);
	struct entry *e = calloc(count ? count : 1, sizeof(*e));
	const uint8_t *p = b + 4;
	FUZZ_CHECK(e && len >= 4);
	for (uint32_t k = 0; k < count; k++) {
		e[k].p = p;
		e[k].n = 12 + (size_t)fuzz_get32(p);
		p += e[k].n;
		FUZZ_CHECK(p <= b + len);
	}
	qsort(e, count, sizeof(*e), cmp_entry);
	*out = e;
	return count;
}

static bool same_section(const void *a, size_t la, const void *b, size_t lb)
{
	if (la != lb)
		return false;
	if (!la)
		return true;
	struct entry *x, *y;
	size_t n = entries(a, la, &x), m = entries(b, lb, &y);
	bool same = n == m;
	for (size_t k = 0; same && k < n; k++)
		same = cmp_entry(&x[k], &y[k]) == 0;
	free(x);
	free(y);
	return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool seeded;
	if (!seeded && getenv("FUZZ_DTC_SEED")) {
		seeded = true;
		write_seed(getenv("FUZZ_DTC_SEED"));
	}
	if (size > 65536)
		return 0;
	scratch_new();
	size_t at = 0;
	uint64_t step = 0;
	pthread_mutex_lock(&fs->lock);
	while (size - at >= 3) {
		uint8_t type = data[at];
		size_t len = (size_t)data[at + 1] | (size_t)data[at + 2] << 8;
		at += 3;
		if (len > size - at)
			len = size - at;
		/* an exact-size copy: ASan sees any read past this payload */
		uint8_t *p = malloc(len ? len : 1);
		FUZZ_CHECK(p);
		memcpy(p, data + at, len);
		int r = type % 3 == 0   ? dtc_replay_prepare(fs, p, len, ++step)
			: type % 3 == 1 ? dtc_replay_resolve(fs, p, len)
					: dtc_load(fs, p, len);
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "step %u (%zu bytes): %d\n", type % 3, len, r);
		FUZZ_CHECK(is_err(r));
		free(p);
		at += len;
	}
	pthread_mutex_unlock(&fs->lock);
	read_some();

	void *s1, *s2;
	size_t l1, l2;
	save(&s1, &l1);
	scratch_new();
	if (s1) {
		pthread_mutex_lock(&fs->lock);
		int r = dtc_load(fs, s1, l1);
		pthread_mutex_unlock(&fs->lock);
		if (r)
			fprintf(stderr, "load of a saved section: %d\n", r);
		FUZZ_CHECK(r == 0);
	}
	read_some();
	save(&s2, &l2);
	FUZZ_CHECK(same_section(s1, l1, s2, l2));
	free(s1);
	free(s2);
	scratch_close();
	return 0;
}
