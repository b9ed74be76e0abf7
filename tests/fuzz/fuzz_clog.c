/*
 * fuzz_clog.c — the commit log read back from disk (clog.h).
 *
 * Input: 1 control byte, then the bytes of STORE/coordination/commits/log.
 * Control byte: bit 0 recompute each record's checksum (walking records
 * whose magic and length fit) so the fuzzer gets to the bodies; bits 1-7
 * x 2^57 the oldest_ns of a trim. The harness opens the log, renders every
 * retained commit with a path filter that refuses paths starting "/s",
 * trims, and renders again. Properties:
 *  - no crash, sanitizer report or leak; clog_open refuses nothing readable;
 *  - C3: after clog_open the file is a prefix of the input (a bad tail cut);
 *  - C1: clog_nth_newest gives strictly decreasing ids;
 *  - C5: each rendering is one JSON object; a path or "from" it shows passes
 *    the filter, and a hidden change shows no checksum.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <xxhash.h>

#include "clog.h"
#include "fuzz.h"
#include "json.h"

#define CLOG_MAGIC_ 0x32474c43u /* "CLG2" */

static int ok_path(void *arg, const char *path, uint64_t sum)
{
	(void)arg;
	return strncmp(path, "/s", 2) == 0 ? 0 : sum & 1 ? 1 : 2;
}

static void fix_sums(uint8_t *b, size_t n)
{
	size_t at = 0;
	while (n - at >= 16 && fuzz_get32(b + at) == CLOG_MAGIC_) {
		uint32_t blen = fuzz_get32(b + at + 4);
		if (blen > n - at - 16)
			break;
		fuzz_put64(b + at + 8, XXH64(b + at + 16, blen, 0));
		at += 16 + (size_t)blen;
	}
}

static void check_render(const char *out, size_t len)
{
	FUZZ_CHECK(len > 0 && out[len - 1] == '\n' && strlen(out) == len);
	cJSON *o = json_parse(out, len - 1); /* names of any bytes: json.h */
	FUZZ_CHECK(cJSON_IsObject(o));
	cJSON *chg = cJSON_GetObjectItemCaseSensitive(o, "changes");
	FUZZ_CHECK(cJSON_IsArray(chg));
	cJSON *c;
	cJSON_ArrayForEach(c, chg) {
		cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "path");
		cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "from");
		FUZZ_CHECK(cJSON_IsString(p));
		bool hidden = strcmp(p->valuestring, "(hidden)") == 0;
		cJSON *sum = cJSON_GetObjectItemCaseSensitive(c, "checksum");
		if (!hidden) {
			FUZZ_CHECK(ok_path(NULL, p->valuestring, 0));
			FUZZ_CHECK(!f || ok_path(NULL, f->valuestring, 0));
			unsigned long long v = 0;
			/* a checksum only where the filter allows it (level 2) */
			FUZZ_CHECK(!sum || (cJSON_IsString(sum) &&
					    sscanf(sum->valuestring, "xxh64:%llx", &v) == 1 &&
					    ok_path(NULL, p->valuestring, v) == 2));
		} else {
			FUZZ_CHECK(!cJSON_GetObjectItemCaseSensitive(c, "checksum"));
			FUZZ_CHECK(!f || strcmp(f->valuestring, "(hidden)") == 0);
		}
	}
	cJSON_Delete(o);
}

static void render_all(struct clog *cl)
{
	uint64_t id, prev = 0;
	for (uint64_t k = 0; k < 4096 && clog_nth_newest(cl, 0, k, &id); k++) {
		FUZZ_CHECK(k == 0 || id < prev); /* C1 */
		prev = id;
		char *out;
		size_t len;
		int err = clog_render(cl, id, 0, ok_path, NULL, &out, &len);
		FUZZ_CHECK(err == 0 || err == -ENOMEM);
		if (err == 0) {
			check_render(out, len);
			free(out);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (256u << 10))
		return 0;
	uint8_t ctl = data[0];
	uint64_t oldest = (uint64_t)(ctl >> 1) << 57;
	size--;
	uint8_t *b = malloc(size ? size : 1);
	FUZZ_CHECK(b);
	memcpy(b, data + 1, size);
	if (ctl & 1)
		fix_sums(b, size);
	char dir[PATH_MAX], path[PATH_MAX + 32];
	FUZZ_CHECK(snprintf(dir, sizeof(dir), "%s/clog", fuzz_tmpdir()) < (int)sizeof(dir));
	fuzz_clear(dir, 1);
	FUZZ_CHECK(mkdir(dir, 0700) == 0);
	FUZZ_CHECK(snprintf(path, sizeof(path), "%s/log", dir) < (int)sizeof(path));
	fuzz_write_file(path, b, size);

	struct clog *cl;
	int err = clog_open(dir, &cl);
	FUZZ_CHECK(err == 0 || err == -ENOMEM);
	if (err == 0) {
		/* C3: what is left is a prefix of what was there */
		struct stat st;
		FUZZ_CHECK(stat(path, &st) == 0 && (size_t)st.st_size <= size);
		char *now = malloc((size_t)st.st_size + 1);
		int fd = open(path, O_RDONLY);
		FUZZ_CHECK(now && fd >= 0);
		FUZZ_CHECK(pread(fd, now, (size_t)st.st_size, 0) == st.st_size);
		close(fd);
		FUZZ_CHECK(memcmp(now, b, (size_t)st.st_size) == 0);
		free(now);
		render_all(cl);
		if (clog_trim(cl, oldest) == 0)
			render_all(cl);
		clog_close(cl);
	}
	free(b);
	return 0;
}
