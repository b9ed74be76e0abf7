/*
 * fuzz_vote.c — the vote service's records and snapshots from hostile bytes
 * (vote.h: vote_replay, vote_snapshot_decode), and its ballot and timeout
 * parsers (vote_parse_ballot, vote_parse_timeout: the `yes`/`no` and
 * `timeout` control-file writes).
 *
 * Input: 1 control byte, then the body.
 *   bit 0 clear: the body is records, each a u16 little-endian length and
 *                that many bytes (the last one cut to what is left),
 *                replayed in order into a fresh service (the WAL's replay);
 *   bit 0 set:   the body is one snapshot (vote_snapshot_decode);
 *   bit 1:       then vote_start (decides what is complete or overdue,
 *                logs to an in-memory backend, applies retention).
 * Then every proposal is read (vote_list, vote_get, vote_outcome,
 * vote_list_participants, vote_payload), and the service is encoded,
 * decoded into a fresh service and encoded again.
 * Properties:
 *  - no crash, sanitizer report or leak; every call returns 0 or -errno;
 *  - an encoded snapshot always decodes (what was accepted can be saved
 *    and loaded: a checkpoint never becomes unreadable), and encoding the
 *    decoded service gives the same header and the same records, in any
 *    order (V8: nothing lost or invented);
 *  - the body as a ballot: accepted only as "yes" or "no" with at most one
 *    newline after; as a timeout: accepted only within (0, 365 days].
 */
#include <errno.h>

#include "fuzz.h"
#include "txdir.h"
#include "vote.h"

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

static const struct vote_backend be = {.append = mem_append, .sync = mem_sync};

static bool is_err(int r)
{
	return r == 0 || (r < 0 && r > -(TXD_EBASE + 100));
}

static struct vote_svc *fresh(void)
{
	struct vote_opts o = {.sync = true};
	struct vote_svc *v;
	FUZZ_CHECK(vote_open(&o, &be, NULL, &v) == 0);
	return v;
}

static int count_part(void *arg, const char *participant, int vote)
{
	FUZZ_CHECK(vote_name_check(participant) == 0);
	FUZZ_CHECK(vote >= -1 && vote <= 1);
	(*(unsigned *)arg)++;
	return 0;
}

/* vote_list calls back under the service's lock: collect, then read. */
struct names {
	char name[64][VOTE_NAME_MAX + 1];
	uint64_t id[64];
	unsigned participants[64];
	size_t payload_len[64];
	int n;
};

static int collect(void *arg, const struct vote_info *vi)
{
	struct names *ns = arg;

	FUZZ_CHECK(vote_name_check(vi->name) == 0);
	if (ns->n < 64) {
		memcpy(ns->name[ns->n], vi->name, sizeof(vi->name));
		ns->id[ns->n] = vi->id;
		ns->participants[ns->n] = vi->participants;
		ns->payload_len[ns->n] = vi->payload_len;
		ns->n++;
	}
	return 0;
}

static void read_all(struct vote_svc *v)
{
	static struct names ns;
	struct vote_info again;
	enum vote_outcome out;
	char reason[VOTE_REASON_MAX + 64], payload[64];
	size_t len;

	ns.n = 0;
	FUZZ_CHECK(vote_list(v, collect, &ns) == 0);
	for (int i = 0; i < ns.n; i++) {
		const char *name = ns.name[i];
		unsigned n = 0;

		FUZZ_CHECK(vote_get(v, name, &again) == 0 && again.id == ns.id[i]);
		FUZZ_CHECK(is_err(vote_outcome(v, name, &out, reason, sizeof(reason))));
		int r = vote_list_participants(v, name, count_part, &n);
		FUZZ_CHECK(r == 0 || r == -ENOENT);
		FUZZ_CHECK(r != 0 || n == ns.participants[i]);
		r = vote_payload(v, name, payload, sizeof(payload), &len);
		FUZZ_CHECK(is_err(r));
		FUZZ_CHECK(r != 0 || len == ns.payload_len[i]);
	}
}

static void check_parsers(const char *b, size_t n)
{
	bool yes;
	uint64_t ns;

	if (vote_parse_ballot(b, n, &yes) == 0) {
		size_t k = n && b[n - 1] == '\n' ? n - 1 : n;
		FUZZ_CHECK(k == (yes ? 3u : 2u) && memcmp(b, yes ? "yes" : "no", k) == 0);
	}
	if (vote_parse_timeout(b, n, &ns) == 0)
		FUZZ_CHECK(ns > 0 && ns <= VOTE_TIMEOUT_MAX_NS);
}

/* Snapshots list proposals in hash-bucket order, which a decode may
 * reverse within a bucket: the same header and the same records, as a
 * multiset (u32 len, record). */
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
	uint32_t count = fuzz_get32(b + 16);
	struct entry *e = calloc(count ? count : 1, sizeof(*e));
	const uint8_t *p = b + 20;
	FUZZ_CHECK(e);
	for (uint32_t k = 0; k < count; k++) {
		FUZZ_CHECK(p + 4 <= b + len);
		e[k].p = p;
		e[k].n = 4 + (size_t)fuzz_get32(p);
		p += e[k].n;
		FUZZ_CHECK(p <= b + len);
	}
	FUZZ_CHECK(p == b + len);
	qsort(e, count, sizeof(*e), cmp_entry);
	*out = e;
	return count;
}

static bool same_snapshot(const void *a, size_t la, const void *b, size_t lb)
{
	if (la != lb || la < 20 || memcmp(a, b, 20))
		return false;
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
	if (size < 1 || size > (1u << 20))
		return 0;
	uint8_t ctl = data[0];
	const uint8_t *b = data + 1;
	size_t n = size - 1;

	check_parsers((const char *)b, n);
	struct vote_svc *v = fresh();
	if (ctl & 1) {
		int r = vote_snapshot_decode(v, b, n);
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "vote_snapshot_decode: %d\n", r);
		FUZZ_CHECK(is_err(r));
	} else {
		size_t at = 0;
		while (n - at >= 2) {
			size_t len = (size_t)b[at] | (size_t)b[at + 1] << 8;
			at += 2;
			if (len > n - at)
				len = n - at;
			int r = vote_replay(v, b + at, len);
			if (getenv("FUZZ_VERBOSE"))
				fprintf(stderr, "vote_replay: %d\n", r);
			FUZZ_CHECK(is_err(r));
			at += len;
		}
	}
	if (ctl & 2)
		FUZZ_CHECK(is_err(vote_start(v)));
	read_all(v);

	void *s1, *s2;
	size_t l1, l2;
	FUZZ_CHECK(vote_snapshot_encode(v, &s1, &l1) == 0);
	struct vote_svc *w = fresh();
	int r = vote_snapshot_decode(w, s1, l1);
	if (r)
		fprintf(stderr, "decode of an encoded snapshot: %d\n", r);
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(vote_snapshot_encode(w, &s2, &l2) == 0);
	FUZZ_CHECK(same_snapshot(s1, l1, s2, l2));
	free(s1);
	free(s2);
	vote_close(w);
	vote_close(v);
	return 0;
}
