/*
 * fuzz_events.c — the event log read back from disk (events.h).
 *
 * Input: 1 control byte, then the bytes of STORE/coordination/events.log.
 * Control byte: bit 0 the reader is uid 1000 (else root), bit 1 its path
 * filter refuses every path (else accepts), bits 2-7 x 2^58 the oldest_ns
 * of the render. The harness opens the log (ev_open), renders it, appends
 * an event, trims it and renders again. Properties:
 *  - no crash, sanitizer report or leak; ev_open refuses nothing readable;
 *  - E4: after ev_open the file holds whole lines only (a torn tail is cut);
 *  - E5: in every rendered line that is a JSON object, the "path" it shows
 *    is "(hidden)" when the filter refuses it, and "private" is "(hidden)"
 *    for a reader other than root and the line's "uid";
 *  - ev_last_commit only grows when a commit event is appended.
 * Known gap, not checked here (see the report in the commit): ev_render
 * shows a line that merely looks like "<digits> {...}" and holds no raw
 * control byte without parsing it, so a garbage line such as "1 {x}" is
 * shown although E1/E4 say it is not (a line with a NUL, as a torn page of
 * zeros leaves, is skipped: corpus regress-nul-in-key).
 */
#include <cjson/cJSON.h>
#include <errno.h>

#include "events.h"
#include "fuzz.h"
#include "json.h"

static bool deny(void *arg, const char *path)
{
	(void)arg;
	(void)path;
	return false;
}

static void check_render(const char *out, size_t len, bool denied, uint32_t uid)
{
	FUZZ_CHECK(out[len] == 0); /* (a garbage line may hold NUL bytes: see above) */
	for (const char *line = out, *nl; line < out + len; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(out + len - line));
		FUZZ_CHECK(nl); /* every shown line ends with a newline */
		cJSON *o = json_parse(line, (size_t)(nl - line)); /* json.h escapes */
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			continue;
		}
		cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "path");
		if (denied && cJSON_IsString(p))
			FUZZ_CHECK(strcmp(p->valuestring, "(hidden)") == 0);
		cJSON *priv = cJSON_GetObjectItemCaseSensitive(o, "private");
		cJSON *owner = cJSON_GetObjectItemCaseSensitive(o, "uid");
		if (uid && priv && !(cJSON_IsNumber(owner) && owner->valuedouble == (double)uid))
			FUZZ_CHECK(cJSON_IsString(priv) &&
				   strcmp(priv->valuestring, "(hidden)") == 0);
		cJSON_Delete(o);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (256u << 10))
		return 0;
	uint8_t ctl = data[0];
	uint32_t uid = ctl & 1 ? 1000 : 0;
	bool denied = ctl & 2;
	uint64_t oldest = (uint64_t)(ctl >> 2) << 58;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	FUZZ_CHECK(snprintf(dir, sizeof(dir), "%s/ev", fuzz_tmpdir()) < (int)sizeof(dir));
	fuzz_clear(dir, 1);
	FUZZ_CHECK(mkdir(dir, 0700) == 0);
	FUZZ_CHECK(snprintf(path, sizeof(path), "%s/events.log", dir) < (int)sizeof(path));
	fuzz_write_file(path, data + 1, size - 1);

	struct evlog *ev;
	int err = ev_open(dir, &ev);
	FUZZ_CHECK(err == 0 || err == -ENOMEM);
	if (err)
		return 0;
	struct stat st;
	FUZZ_CHECK(stat(path, &st) == 0);
	if (st.st_size) {
		/* E4: whole lines only */
		char last;
		int fd = open(path, O_RDONLY);
		FUZZ_CHECK(fd >= 0 && pread(fd, &last, 1, st.st_size - 1) == 1);
		close(fd);
		FUZZ_CHECK(last == '\n');
	}
	char *out;
	size_t len;
	if (ev_render(ev, oldest, denied ? deny : NULL, NULL, uid, &out, &len) == 0) {
		check_render(out, len, denied, uid);
		free(out);
	}
	uint64_t before = ev_last_commit(ev);
	if (before + 1 < (1ull << 53)) { /* commit ids are below 2^53 (events.c) */
		ev_commit_replayed(ev, 1ull << 62, 5, before + 1);
		FUZZ_CHECK(ev_last_commit(ev) == before + 1);
	}
	if (ev_trim(ev, oldest) == 0 &&
	    ev_render(ev, 0, denied ? deny : NULL, NULL, uid, &out, &len) == 0) {
		check_render(out, len, denied, uid);
		if (oldest <= (1ull << 62))
			FUZZ_CHECK(len > 0); /* the event appended is no older */
		free(out);
	}
	ev_close(ev);
	return 0;
}
