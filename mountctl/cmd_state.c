/*
 * cmd_state.c — `mountctl state get MNT [--json]` and `mountctl state set
 * MNT [--if-version N] [FILE|-]`: the global state document (SPEC §2, §5
 * "Global state"), through MNT/.txdir/state:
 *
 *   global_state.json        the document; user.txdir.version its version
 *   update                   write {"if_version": N, "document": ...}: the
 *                            close(2) returns the outcome (EBUSY: stale)
 *   TEMP + rename            a file written in .txdir/state/ and renamed
 *                            over global_state.json replaces it whole
 *   participants             when it names participants, every replace is
 *                            a 2PC proposal among them
 *
 * get prints the document as the server has it; --json prints
 * {"version": N, "document": ...} with the document's own text (not
 * re-rendered, so its numbers keep every digit) and its version, both
 * read through one open file (a node id per version: always a real pair).
 *
 * set checks FILE (standard input without one, or "-") is one JSON value
 * locally first, saying where it is not. Without --if-version it is last
 * writer wins: a temp file in .txdir/state/ renamed over the document (as
 * `jq ... > tmp && mv tmp global_state.json`); with it, compare-and-swap
 * through update. It prints the new version ("version N"); with
 * participants, a rename only opens the proposal, and set says so, naming
 * it ("proposal state-V opened: ..."; state.h: the proposal's name), while
 * --if-version waits for the outcome (update's close).
 *
 * Exit codes (as SPEC §2's read commands; 75 as run's conflict):
 *   0   printed / replaced
 *   1   failed: not a txdir mount, no state support, the server refused
 *       the document (EINVAL, EFBIG, EDQUOT...), invalid JSON in FILE, or
 *       (participants mode, --if-version) the proposal was aborted
 *       (ECANCELED: a "no" or the vote's timeout)
 *   2   usage
 *   75  --if-version N is stale (the version moved on: "stale: version is
 *       now M"), or another state proposal is in progress (EBUSY): read
 *       again and retry
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

#define STATE_DIR ".txdir/state"
#define DOC_NAME "global_state.json"
#define INPUT_MAX (64L * 1024 * 1024) /* the server has its own, smaller limit */
#define VERSION_TRIES 8
#define STATE_EXIT_STALE MC_EXIT_TEMPFAIL

static char *spath(const char *mnt, const char *leaf)
{
	char *dir = mc_join(mnt, STATE_DIR), *out = leaf ? mc_join(dir, leaf) : dir;

	if (leaf)
		free(dir);
	return out;
}

/* The document's version: user.txdir.version, else info.json's "version".
 * 0 with *out set, or -errno. */
static int read_version(const char *mnt, unsigned long long *out)
{
	char *path = spath(mnt, DOC_NAME), buf[32], *text = NULL, *end;
	ssize_t n = getxattr(path, "user.txdir.version", buf, sizeof(buf) - 1);
	cJSON *doc, *v;
	int r = -ENODATA;

	free(path);
	if (n > 0) {
		buf[n] = '\0';
		errno = 0;
		*out = strtoull(buf, &end, 10);
		return errno || end == buf ? -EIO : 0;
	}
	path = spath(mnt, "info.json");
	if (mc_read_file(path, MC_PROBE_MS, &text) >= 0 && (doc = json_parse_str(text))) {
		v = cJSON_GetObjectItemCaseSensitive(doc, "version");
		if (cJSON_IsNumber(v) && v->valuedouble >= 0) {
			*out = (unsigned long long)v->valuedouble;
			r = 0;
		}
		cJSON_Delete(doc);
	}
	free(text);
	free(path);
	return r;
}

static bool participants_mode(const char *mnt)
{
	char *path = spath(mnt, "participants"), buf[256];
	bool on = mc_read_small(path, buf, sizeof(buf)) > 0;

	free(path);
	return on;
}

/* The open state proposal's name from info.json's "proposal" (state-V):
 * 0, else -1 (none open: decided already, or plain mode). */
static int pending_proposal(const char *mnt, char *out, size_t size)
{
	char *path = spath(mnt, "info.json"), buf[4096], *p, *e;
	ssize_t n = mc_read_small(path, buf, sizeof(buf));

	free(path);
	if (n <= 0 || !(p = strstr(buf, "\"proposal\":")))
		return -1;
	p += strlen("\"proposal\":");
	p += strspn(p, " \t");
	if (*p != '"' || !(e = strchr(p + 1, '"')) || (size_t)(e - p - 1) >= size)
		return -1;
	snprintf(out, size, "%.*s", (int)(e - p - 1), p + 1);
	return 0;
}

/* ---- get -------------------------------------------------------------------- */

/* Reads the document and its version through ONE open file: each
 * version is a node id of its own (engine/state.h S12), so the open file's
 * user.txdir.version and bytes are always a real pair, however many
 * writers replace the document meanwhile. *text (NUL-terminated, caller
 * frees) and its length, or -errno; *vr: 0 with *version set, or -errno
 * (without the xattr, an older server: info.json's version, best effort). */
static ssize_t read_pair(const char *mnt, const char *path, char **text,
			 unsigned long long *version, int *vr)
{
	size_t len = 0, cap = 4096;
	char vbuf[32], *end, *buf;
	ssize_t n;
	int fd;

	*text = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = fgetxattr(fd, "user.txdir.version", vbuf, sizeof(vbuf) - 1);
	if (n > 0) {
		vbuf[n] = '\0';
		errno = 0;
		*version = strtoull(vbuf, &end, 10);
		*vr = errno || end == vbuf ? -EIO : 0;
	} else {
		*vr = read_version(mnt, version);
	}
	buf = malloc(cap);
	n = buf ? 0 : -ENOMEM;
	while (buf) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				n = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			n = n < 0 ? -errno : 0;
			break;
		}
		len += (size_t)n;
	}
	if (n < 0) {
		close(fd);
		free(buf);
		return n;
	}
	close(fd);
	buf[len] = '\0';
	*text = buf;
	return (ssize_t)len;
}

static int state_get(const char *mnt, bool json)
{
	char *path = spath(mnt, DOC_NAME), *text = NULL;
	unsigned long long v1 = 0;
	cJSON *check;
	ssize_t n;
	int r = MC_EXIT_FAIL, vr = 0;

	/* -ESTALE: STATE_PAST newer versions came between the open and the
	 * read (S12); a fresh open gets the current one. */
	n = read_pair(mnt, path, &text, &v1, &vr);
	for (int i = 1; i < VERSION_TRIES && n == -ESTALE; i++)
		n = read_pair(mnt, path, &text, &v1, &vr);
	if (n < 0) {
		mc_err("state get", "cannot read %s: %s", path, strerror((int)-n));
		goto out_free;
	}
	if (!json) {
		fwrite(text, 1, (size_t)n, stdout);
		if (n > 0 && text[n - 1] != '\n')
			putchar('\n');
		r = MC_EXIT_OK;
		goto out_free;
	}
	if (vr < 0) {
		mc_err("state get", "cannot read the version of %s: %s", path, strerror(-vr));
		goto out_free;
	}
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\t'))
		text[--n] = '\0';
	check = cJSON_Parse(text);
	if (!check) {
		mc_err("state get", "%s is not valid JSON (server bug?)", path);
		goto out_free;
	}
	cJSON_Delete(check);
	printf("{\"version\": %llu, \"document\": %s}\n", v1, n ? text : "null");
	r = MC_EXIT_OK;
out_free:
	free(text);
	free(path);
	return r;
}

/* ---- set -------------------------------------------------------------------- */

/* Whether text (len bytes) is exactly one JSON value; if not, one line in
 * why saying where (line and column). */
static bool valid_json(const char *text, size_t len, char *why, size_t wlen)
{
	const char *end = NULL;
	cJSON *doc;
	int line = 1, col = 1;

	if (strlen(text) != len) {
		snprintf(why, wlen, "it holds a NUL byte");
		return false;
	}
	doc = cJSON_ParseWithOpts(text, &end, true);
	if (doc) {
		cJSON_Delete(doc);
		return true;
	}
	if (!end)
		end = cJSON_GetErrorPtr();
	for (const char *p = text; end && p < end && *p; p++) {
		if (*p == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	snprintf(why, wlen, "%s at line %d, column %d", len ? "invalid JSON" : "empty", line, col);
	return false;
}

/* Prints "version N" after a replace (or nothing if it cannot be read). */
static void print_version(const char *mnt)
{
	unsigned long long v;

	if (read_version(mnt, &v) == 0)
		printf("version %llu\n", v);
}

/* One line and the exit code for a refused replace. */
static int set_refused(const char *mnt, int err, bool cas, unsigned long long want)
{
	unsigned long long now;

	switch (err) {
	case -EBUSY:
		if (cas && read_version(mnt, &now) == 0 && now != want)
			mc_err("state set", "stale: version is now %llu (not %llu)", now, want);
		else
			mc_err("state set", "busy: another state proposal is in progress");
		return STATE_EXIT_STALE;
	case -EINVAL:
		mc_err("state set", "the server refused the document (EINVAL); the old one stays");
		return MC_EXIT_FAIL;
	case -EFBIG:
		mc_err("state set", "the document is larger than the server's limit (EFBIG)");
		return MC_EXIT_FAIL;
	case -ECANCELED:
		mc_err("state set", "aborted: the participants in .txdir/state/participants voted "
		       "it down or timed out (.txdir/consensus/decisions/state-*); the old "
		       "document stays");
		return MC_EXIT_FAIL;
	case -EDQUOT:
		mc_err("state set", "too many temp files in %s/" STATE_DIR " for this uid (EDQUOT)",
		       mnt);
		return MC_EXIT_FAIL;
	default:
		mc_err("state set", "replace failed: %s%s", strerror(-err),
		       participants_mode(mnt) ? " (the participants may have voted it down: see "
						".txdir/events)" : "");
		return MC_EXIT_FAIL;
	}
}

/* Last writer wins: temp file in .txdir/state/, renamed over the document. */
static int set_rename(const char *mnt, const char *text, size_t len)
{
	char name[64], *tmp, *doc = spath(mnt, DOC_NAME);
	uint32_t rnd = 0;
	int r;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)time(NULL);
	snprintf(name, sizeof(name), "mountctl-%d-%08x.tmp", (int)getpid(), rnd);
	tmp = spath(mnt, name);
	r = mc_write_whole(tmp, O_CREAT | O_EXCL | O_TRUNC, text, len);
	if (r == 0)
		r = rename(tmp, doc) < 0 ? -errno : 0;
	if (r < 0) {
		unlink(tmp);
		r = set_refused(mnt, r, false, 0);
	} else if (participants_mode(mnt)) {
		char pn[256];
		if (pending_proposal(mnt, pn, sizeof(pn)) == 0)
			printf("proposal %s opened: the participants in .txdir/state/participants "
			       "decide; mountctl decision %s %s --wait gives the outcome\n", pn, mnt,
			       pn);
		else
			printf("proposed: the participants in .txdir/state/participants decide; "
			       "cat .txdir/state/changed to see it replaced\n");
	} else {
		print_version(mnt);
	}
	free(tmp);
	free(doc);
	return r;
}

/* Compare-and-swap through update: close(2) gives the outcome. */
static int set_cas(const char *mnt, unsigned long long want, const char *text, size_t len)
{
	char *path = spath(mnt, "update"), *body;
	size_t n = len;
	int r;

	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\t'))
		n--;
	/* the document's own text, not re-rendered: numbers keep every digit */
	if (asprintf(&body, "{\"if_version\": %llu, \"document\": %.*s}\n", want, (int)n, text) < 0)
		abort();
	r = mc_write_whole(path, O_TRUNC, body, strlen(body));
	if (r == -ENOENT) {
		mc_err("state set", "%s: no .txdir/state/update (no compare-and-swap support)", mnt);
		r = MC_EXIT_FAIL;
	} else if (r < 0) {
		r = set_refused(mnt, r, true, want);
	} else {
		print_version(mnt);
	}
	free(body);
	free(path);
	return r;
}

static int state_set(const char *mnt, const char *file, bool cas, unsigned long long want)
{
	char why[128], *text = NULL;
	size_t len;
	int r = mc_read_input(file, INPUT_MAX, &text, &len);

	if (r < 0) {
		mc_err("state set", "%s: %s", file ? file : "standard input", strerror(-r));
		return MC_EXIT_FAIL;
	}
	if (!valid_json(text, len, why, sizeof(why))) {
		mc_err("state set", "%s: %s; nothing was sent", file ? file : "standard input", why);
		free(text);
		return MC_EXIT_FAIL;
	}
	r = mc_check_tree("state set", mnt, STATE_DIR "/" DOC_NAME, "global state",
			  MC_EXIT_FAIL);
	if (r == 0)
		r = cas ? set_cas(mnt, want, text, len) : set_rename(mnt, text, len);
	free(text);
	return r;
}

/* ---- dispatch -------------------------------------------------------------- */

int cmd_state(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"json", no_argument, NULL, 'j'},
		{"if-version", required_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	const char *verb = argc > 1 ? argv[1] : "";
	bool get = strcmp(verb, "get") == 0, json = false, cas = false;
	unsigned long long want = 0;
	char *mnt, *end;
	int c, r, nargs;

	if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
		mc_help(cmd);
		return MC_EXIT_OK;
	}
	if (!get && strcmp(verb, "set") != 0)
		return mc_usage(cmd, argc > 1 ? "unknown subcommand (get or set)"
					      : "missing get or set");
	argc--;
	argv++;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		case 'j':
			json = true;
			break;
		case 'v':
			errno = 0;
			want = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || *optarg == '-')
				return mc_usage(cmd, "--if-version: a version number");
			cas = true;
			break;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	nargs = argc - optind;
	if (get && cas)
		return mc_usage(cmd, "--if-version is an option of state set");
	if (!get && json)
		return mc_usage(cmd, "--json is an option of state get");
	if (nargs < 1 || nargs > (get ? 1 : 2))
		return mc_usage(cmd, nargs < 1 ? "missing MNT" : "too many arguments");
	mnt = mc_abspath(argv[optind]);
	if (!mnt) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(errno));
		return MC_EXIT_FAIL;
	}
	if (get) {
		r = mc_check_tree("state get", mnt, STATE_DIR "/" DOC_NAME, "global state",
				  MC_EXIT_FAIL);
		if (r == 0)
			r = state_get(mnt, json);
	} else {
		r = state_set(mnt, nargs == 2 ? argv[optind + 1] : NULL, cas, want);
	}
	free(mnt);
	return r;
}
