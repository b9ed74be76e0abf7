/*
 * fuzz_wal.c — WAL segments from damaged or hostile bytes (wal.h).
 *
 * Input: 3 control bytes, then segment bytes. Control byte 0:
 *   bit 0  recompute the segment header checksum (so the fuzzer gets past
 *          the header to the records)
 *   bit 1  recompute every record checksum reachable by walking records
 *          whose magic and length fit (so it gets to the lsn and payload
 *          rules and to wal_replay's delivery)
 *   bit 2  two segments: the first 64 + 8 x u16(bytes 1..2) bytes, and the
 *          rest (W3: a bad record in a segment that is not the last)
 * A segment file is named by the number in its header (bytes 12..15; 1 if
 * shorter), the second one the next number.
 * The bytes are written as segment files in a scratch WAL directory; then
 * wal_open + wal_replay(after 0) + wal_close. Properties:
 *  - no crash, no sanitizer report, no leak;
 *  - every record delivered lies inside its segment file, its header has the
 *    record magic, its length and lsn, and its checksum verifies with the
 *    segment's salt (no record whose checksum fails is delivered);
 *  - LSNs delivered are 1, 2, 3... (W1), and after a successful replay
 *    wal_last_lsn is the last one delivered (a torn tail ends the log and
 *    hides nothing behind it).
 */
#include <errno.h>
#include <xxhash.h>

#include "fuzz.h"
#include "rec.h"
#include "txdir.h"
#include "wal.h"

#define REC_MAGIC 0x52575854u /* "TXWR" */

struct seg {
	uint8_t *b;
	size_t n;
};
static struct seg segs[3]; /* first and second, at 1 and 2 */
static uint32_t segno[3];  /* their segment numbers */
static uint64_t last_lsn;

static uint64_t rec_sum(const uint8_t *h, const uint8_t *payload, uint32_t len, uint64_t salt)
{
	XXH64_state_t *st = XXH64_createState();
	FUZZ_CHECK(st);
	XXH64_reset(st, salt);
	XXH64_update(st, h, 24);
	XXH64_update(st, payload, len);
	uint64_t v = XXH64_digest(st);
	XXH64_freeState(st);
	return v;
}

static void fix_sums(struct seg *s, int hdr, int recs)
{
	if (s->n < WAL_SEG_HDR_SIZE)
		return;
	if (hdr)
		fuzz_put64(s->b + 56, XXH64(s->b, 56, 0));
	if (!recs)
		return;
	uint64_t salt = fuzz_get64(s->b + 32);
	size_t off = WAL_SEG_HDR_SIZE;
	while (s->n - off >= WAL_REC_HDR_SIZE && fuzz_get32(s->b + off) == REC_MAGIC) {
		uint32_t len = fuzz_get32(s->b + off + 4);
		if (len > s->n - off - WAL_REC_HDR_SIZE)
			break;
		fuzz_put64(s->b + off + 24, rec_sum(s->b + off, s->b + off + 32, len, salt));
		size_t step = WAL_REC_HDR_SIZE + (((size_t)len + 7) & ~(size_t)7);
		if (step > s->n - off)
			break;
		off += step;
	}
}

static int on_record(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		     uint32_t len)
{
	(void)arg;
	FUZZ_CHECK(pos->lsn == last_lsn + 1);
	last_lsn = pos->lsn;
	FUZZ_CHECK(pos->seg == segno[1] || (segs[2].b && pos->seg == segno[2]));
	const struct seg *s = &segs[pos->seg == segno[1] ? 1 : 2];
	FUZZ_CHECK(s->b && pos->payload_off >= WAL_SEG_HDR_SIZE + WAL_REC_HDR_SIZE);
	FUZZ_CHECK(pos->payload_off <= s->n && len <= s->n - pos->payload_off);
	const uint8_t *h = s->b + pos->payload_off - WAL_REC_HDR_SIZE;
	FUZZ_CHECK(fuzz_get32(h) == REC_MAGIC);
	FUZZ_CHECK(fuzz_get32(h + 4) == len);
	FUZZ_CHECK(fuzz_get64(h + 8) == pos->lsn);
	FUZZ_CHECK(memcmp(&type, h + 16, 2) == 0);
	FUZZ_CHECK(memcmp(payload, h + WAL_REC_HDR_SIZE, len) == 0);
	FUZZ_CHECK(rec_sum(h, h + WAL_REC_HDR_SIZE, len, fuzz_get64(s->b + 32)) ==
		   fuzz_get64(h + 24));
	if (type == WAL_REC_COMMIT) {
		struct rec_hdr rh;
		(void)rec_validate(payload, len, &rh);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size > (1u << 20))
		return 0;
	uint8_t ctl = data[0];
	size_t split = WAL_SEG_HDR_SIZE + 8 * (size_t)(data[1] | data[2] << 8);
	data += 3;
	size -= 3;
	memset(segs, 0, sizeof(segs));
	if ((ctl & 4) && split < size) {
		segs[1].n = split;
		segs[2].n = size - split;
	} else {
		segs[1].n = size;
	}
	size_t at = 0;
	for (int k = 1; k <= 2; k++) {
		if (k == 2 && !segs[2].n)
			break;
		segs[k].b = malloc(segs[k].n ? segs[k].n : 1);
		FUZZ_CHECK(segs[k].b);
		memcpy(segs[k].b, data + at, segs[k].n);
		at += segs[k].n;
		fix_sums(&segs[k], ctl & 1, ctl & 2);
	}

	char dir[PATH_MAX], path[PATH_MAX + 32];
	FUZZ_CHECK(snprintf(dir, sizeof(dir), "%s/wal", fuzz_tmpdir()) < (int)sizeof(dir));
	fuzz_clear(dir, 1);
	FUZZ_CHECK(mkdir(dir, 0700) == 0);
	/* named as its header says (1 if it has none); the second follows */
	segno[1] = segs[1].n >= 16 ? fuzz_get32(segs[1].b + 12) : 1;
	segno[2] = segno[1] + 1;
	for (int k = 1; k <= 2 && segs[k].b; k++) {
		FUZZ_CHECK(snprintf(path, sizeof(path), "%s/seg-%08u", dir, segno[k]) <
			   (int)sizeof(path));
		fuzz_write_file(path, segs[k].b, segs[k].n);
	}

	struct wal_opts o = {0};
	struct wal *w;
	last_lsn = 0;
	int err = wal_open(dir, &o, &w);
	if (err == 0) {
		err = wal_replay(w, 0, on_record, NULL);
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "wal_replay: %d, %llu records\n", err,
				(unsigned long long)last_lsn);
		if (err == 0)
			FUZZ_CHECK(wal_last_lsn(w) == last_lsn);
		wal_close(w);
	}
	for (int k = 1; k <= 2; k++)
		free(segs[k].b);
	memset(segs, 0, sizeof(segs));
	return 0;
}
