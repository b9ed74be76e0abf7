/*
 * fuzz_ckpt.c — checkpoint files from damaged or hostile bytes (ckpt.c).
 *
 * Input: 1 control byte, then the checkpoint file's bytes. Control byte:
 *   bit 0  recompute the header checksum
 *   bit 1  recompute each block's checksum and the trailer's (walking blocks
 *          whose magic and length fit), so the fuzzer reaches ns_apply
 *   bit 2  also set the trailer's block count to the blocks walked
 * The file is named ckpt-<lsn of its header> in a scratch checkpoint
 * directory and loaded with ckpt_load into an empty namespace (the entry
 * txd_fs_open uses; only fs->store.ckpt_dir and fs->ns are involved).
 * Properties: no crash, sanitizer report or leak; the result is loaded (0,
 * with the header's LSN), not valid (0, LSN 0 and the empty namespace: K1,
 * K4), or refused as another format (K5) — nothing else.
 */
#include <errno.h>
#include <inttypes.h>
#include <xxhash.h>

#include "ckpt.h"
#include "core.h"
#include "fuzz.h"

#define BLK_MAGIC 0x4c424b43u /* "CKBL" */
#define END_MAGIC 0x4e454b43u /* "CKEN" */

static void fix_sums(uint8_t *b, size_t n, uint8_t ctl)
{
	if (n < 64)
		return;
	if (ctl & 1)
		fuzz_put64(b + 56, XXH64(b, 56, 0));
	if (!(ctl & 2))
		return;
	size_t off = 64;
	uint64_t nblocks = 0;
	while (n - off >= 16) {
		uint32_t m = fuzz_get32(b + off), len = fuzz_get32(b + off + 4);
		if (m == END_MAGIC) {
			if (n - off < 24)
				break;
			if (ctl & 4)
				fuzz_put64(b + off + 8, nblocks);
			fuzz_put64(b + off + 16, XXH64(b + off, 16, 0));
			break;
		}
		if (m != BLK_MAGIC || len > n - off - 16)
			break;
		fuzz_put64(b + off + 8, XXH64(b + off + 16, len, 0));
		off += 16 + (size_t)len;
		nblocks++;
	}
}

static int count_inode(void *arg, struct inode *in)
{
	(void)in;
	(*(unsigned *)arg)++;
	return 0;
}

static unsigned inode_count(struct ns *ns)
{
	unsigned n = 0;
	ns_walk(ns, count_inode, &n);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	uint8_t ctl = data[0];
	size--;
	uint8_t *b = malloc(size ? size : 1);
	FUZZ_CHECK(b);
	memcpy(b, data + 1, size);
	fix_sums(b, size, ctl);
	uint64_t hlsn = size >= 24 ? fuzz_get64(b + 16) : 1;

	char dir[PATH_MAX], path[PATH_MAX + 32];
	FUZZ_CHECK(snprintf(dir, sizeof(dir), "%s/ckpt", fuzz_tmpdir()) < (int)sizeof(dir));
	fuzz_clear(dir, 1);
	FUZZ_CHECK(mkdir(dir, 0700) == 0);
	FUZZ_CHECK(snprintf(path, sizeof(path), "%s/ckpt-%016" PRIx64, dir, hlsn) <
		   (int)sizeof(path));
	fuzz_write_file(path, b, size);
	free(b);

	struct txd_fs *fs = calloc(1, sizeof(*fs));
	FUZZ_CHECK(fs);
	fs->store.ckpt_dir = dir;
	if (ns_init(&fs->ns)) {
		free(fs);
		return 0;
	}
	uint64_t lsn = 0;
	unsigned empty = inode_count(&fs->ns);
	int err = ckpt_load(fs, &lsn);
	FUZZ_CHECK(err == 0 || err == -TXD_ECORRUPT || err == -TXD_EFORMAT || err == -ENOMEM);
	/* K4: none valid is the empty namespace at LSN 0 */
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "ckpt_load: %d, lsn %" PRIu64 ", %u inodes\n", err, lsn,
			inode_count(&fs->ns));
	if (err == 0)
		FUZZ_CHECK(lsn == hlsn || (lsn == 0 && inode_count(&fs->ns) == empty));
	ns_drop_unlinked(&fs->ns);
	ns_destroy(&fs->ns);
	free(fs);
	return 0;
}
