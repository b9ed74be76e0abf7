/*
 * fuzz_state.c — the state service's records and snapshots from hostile
 * bytes (state.h: state_replay, state_snapshot_decode), and the document
 * check a state `update` write goes through (state_check, state_replace).
 *
 * Input: 1 control byte, then the body.
 *   bit 0 clear: the body is records, each a u16 little-endian length and
 *                that many bytes (the last one cut to what is left),
 *                replayed in order into a fresh service;
 *   bit 0 set:   the body is one snapshot (state_snapshot_decode);
 *   bit 1:       then the body is offered as a new document
 *                (state_replace, if_version the current version).
 * Then the document is read, and the service is encoded, decoded into a
 * fresh one and encoded again.
 * Properties:
 *  - no crash, sanitizer report or leak; every call returns 0 or -errno;
 *  - after a replace the visible document is what state_check accepts
 *    (S4: nothing invalid is ever shown), with no NUL byte; version 0 is
 *    "{}\n";
 *  - a replace succeeds exactly when state_check accepts the body, and
 *    bumps the version by one (S2);
 *  - an encoded snapshot decodes, to the same version and document, and
 *    encodes to the same bytes.
 */
#include <errno.h>

#include "fuzz.h"
#include "state.h"
#include "txdir.h"

static uint64_t mem_lsn;

static int mem_append(void *arg, const void *rec, size_t len, uint64_t *lsn)
{
	(void)arg;
	(void)rec;
	(void)len;
	*lsn = ++mem_lsn;
	return 0;
}

static int mem_sync(void *arg, uint64_t lsn)
{
	(void)arg;
	(void)lsn;
	return 0;
}

static const struct state_backend be = {.append = mem_append, .sync = mem_sync};

static bool is_err(int r)
{
	return r == 0 || (r < 0 && r > -(TXD_EBASE + 100));
}

static struct state_svc *fresh(void)
{
	struct state_opts o = {.sync = true};
	struct state_svc *s;
	FUZZ_CHECK(state_open(&o, &be, &s) == 0);
	return s;
}

/* The visible document, and "{}\n" at version 0. strict: it came from a
 * replace, so state_check accepted it (replay trusts the log's records:
 * the WAL checksums them, and only checked documents are logged). */
static void check_doc(struct state_svc *s, uint64_t *version, bool strict)
{
	char *doc;
	size_t len;
	FUZZ_CHECK(state_get(s, &doc, &len, version) == 0);
	FUZZ_CHECK(!strict || strlen(doc) == len);
	FUZZ_CHECK(!strict || state_check(doc, len) == 0);
	FUZZ_CHECK(*version != 0 || strcmp(doc, "{}\n") == 0);
	FUZZ_CHECK(*version == state_version(s));
	free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	uint8_t ctl = data[0];
	const char *b = (const char *)data + 1;
	size_t n = size - 1;
	uint64_t ver, ver2;

	struct state_svc *s = fresh();
	if (ctl & 1) {
		int r = state_snapshot_decode(s, b, n);
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "state_snapshot_decode: %d\n", r);
		FUZZ_CHECK(is_err(r));
	} else {
		size_t at = 0;
		while (n - at >= 2) {
			size_t len = (size_t)(uint8_t)b[at] | (size_t)(uint8_t)b[at + 1] << 8;
			at += 2;
			if (len > n - at)
				len = n - at;
			int r = state_replay(s, b + at, len);
			if (getenv("FUZZ_VERBOSE"))
				fprintf(stderr, "state_replay: %d\n", r);
			FUZZ_CHECK(is_err(r));
			at += len;
		}
	}
	check_doc(s, &ver, false);
	bool replaced = false;
	if (ctl & 2) {
		struct state_who by = {.pid = 1, .uid = 0};
		int ok = state_check(b, n);
		int r = state_replace(s, b, n, ver, &by, &ver2);
		FUZZ_CHECK(is_err(ok) && is_err(r));
		FUZZ_CHECK((ok == 0) == (r == 0));
		FUZZ_CHECK(r != 0 || ver2 == ver + 1);
		replaced = r == 0;
		check_doc(s, &ver, replaced);
	}

	void *s1, *s2;
	size_t l1, l2;
	FUZZ_CHECK(state_snapshot_encode(s, &s1, &l1) == 0);
	struct state_svc *t = fresh();
	int r = state_snapshot_decode(t, s1, l1);
	if (r)
		fprintf(stderr, "decode of an encoded snapshot: %d\n", r);
	FUZZ_CHECK(r == 0);
	check_doc(t, &ver2, replaced);
	FUZZ_CHECK(ver2 == ver);
	FUZZ_CHECK(state_snapshot_encode(t, &s2, &l2) == 0);
	FUZZ_CHECK(l1 == l2 && memcmp(s1, s2, l1) == 0);
	free(s1);
	free(s2);
	state_close(t);
	state_close(s);
	return 0;
}
