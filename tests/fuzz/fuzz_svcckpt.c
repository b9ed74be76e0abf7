/*
 * fuzz_svcckpt.c — the services' checkpoint section from hostile bytes
 * (svc.h V8: svc_ckpt_load): the "TXSV" container of tagged sub-sections
 * (LEAS, VOTE, STAT) and a bare lease snapshot ("TXLS", written before
 * votes), each sub-section handed to its service's decoder.
 *
 * Input: the section's bytes. A fresh services host per input, over one
 * WAL in the scratch directory (opened and replayed once; nothing is
 * appended: loading a checkpoint logs nothing).
 * Properties:
 *  - no crash, sanitizer report or leak; svc_ckpt_load returns 0 or -errno;
 *  - what loaded can be saved, and the saved section loads into a fresh
 *    host (a checkpoint never becomes unreadable), and saves to as many
 *    bytes again (nothing lost or invented on the second trip; the order
 *    of records may differ: the services list in hash order).
 */
#include <errno.h>

#include "fuzz.h"
#include "svc.h"
#include "txdir.h"
#include "wal.h"

static struct wal *wal;

static int no_record(void *arg, const struct wal_pos *pos, uint16_t type, const void *payload,
		     uint32_t len)
{
	(void)arg;
	(void)pos;
	(void)type;
	(void)payload;
	(void)len;
	return 0;
}

static void wal_done(void)
{
	if (wal)
		wal_close(wal);
	wal = NULL;
}

static struct svc *fresh(void)
{
	struct svc_opts o = {.sync_grants = false};
	struct svc *s;
	if (!wal) {
		char dir[PATH_MAX];
		FUZZ_FMT(dir, "%s/wal", fuzz_tmpdir());
		FUZZ_CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
		FUZZ_CHECK(wal_open(dir, NULL, &wal) == 0);
		FUZZ_CHECK(wal_replay(wal, 0, no_record, NULL) == 0);
		atexit(wal_done);
	}
	FUZZ_CHECK(svc_open(wal, &o, &s) == 0);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	struct svc *s = fresh();
	int r = svc_ckpt_load(s, data, size);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "svc_ckpt_load: %d\n", r);
	FUZZ_CHECK(r == 0 || (r < 0 && r > -(TXD_EBASE + 100)));

	void *s1, *s2;
	size_t l1, l2;
	FUZZ_CHECK(svc_ckpt_save(s, &s1, &l1) == 0);
	struct svc *t = fresh();
	r = svc_ckpt_load(t, s1, l1);
	if (r)
		fprintf(stderr, "load of a saved section: %d\n", r);
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(svc_ckpt_save(t, &s2, &l2) == 0);
	FUZZ_CHECK(l1 == l2); /* the services list in hash order: same size */
	free(s1);
	free(s2);
	svc_close(t);
	svc_close(s);
	return 0;
}
