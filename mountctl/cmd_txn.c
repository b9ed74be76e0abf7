/*
 * cmd_txn.c — `mountctl txn list MNT [--json]` and `mountctl txn abort MNT
 * NAME`: the transactions of MNT/.txdir/txn, through the file interface.
 *
 * list reads each NAME/info.json and NAME/status; --json prints
 * {"transactions":[info.json, ...]} sorted by name, each document as the
 * server rendered it (re-printing would turn 64-bit nanosecond times into
 * doubles), or, when it lacks "name" or "status", rebuilt with them. abort writes
 * "abort" to NAME/ctl and leaves the record (status "aborted request"),
 * so that its creator learns why; rmdir NAME drops it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

static bool has_string(const cJSON *doc, const char *key)
{
	return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, key));
}

/* NAME's info.json with "name" and "status" (from the status file) filled
 * in; never NULL. *raw: the server's text when it already had both (caller
 * frees), else NULL. */
/* A transaction's row from its info.json (text, n: as mc_read_files gives
 * them; taken) and its status line (status: the file's text or NULL). */
static cJSON *txn_doc(const char *name, char *text, ssize_t n, const char *status, char **raw)
{
	cJSON *doc = n >= 0 ? json_parse_str(text) : NULL;

	*raw = NULL;
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		doc = cJSON_CreateObject();
	} else if (has_string(doc, "name") && has_string(doc, "status")) {
		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
			text[--n] = '\0';
		*raw = text;
		text = NULL;
	}
	free(text);
	if (!has_string(doc, "name"))
		cJSON_AddStringToObject(doc, "name", name);
	cJSON_DeleteItemFromObjectCaseSensitive(doc, "status");
	cJSON_AddStringToObject(doc, "status", status ? status : "unknown");
	return doc;
}

/* A field as text for the table: numbers without decimals, else "-". */
static const char *field(const cJSON *doc, const char *key, char *buf, size_t n)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, key);

	if (cJSON_IsString(it))
		return it->valuestring;
	if (cJSON_IsNumber(it))
		snprintf(buf, n, "%.0f", it->valuedouble);
	else
		snprintf(buf, n, "-");
	return buf;
}

/* When it began, RFC 3339 UTC: "began", else "began_ns" formatted. */
static const char *began(const cJSON *doc, char *buf, size_t n)
{
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(doc, "began_ns");
	struct tm tm;
	time_t t;

	if (cJSON_GetObjectItemCaseSensitive(doc, "began") || !cJSON_IsNumber(ns))
		return field(doc, "began", buf, n);
	t = (time_t)(ns->valuedouble / 1e9);
	if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, n, "-");
	return buf;
}

/* Text for one table cell: newline, tab and backslash escaped as \n, \t,
 * \\, other control bytes as \xHH, so a name can neither break a row nor
 * hide its characters (malloc'd). */
static char *cell(const char *text)
{
	size_t n = 0;
	char *out = malloc(strlen(text) * 4 + 1);

	if (!out)
		abort();
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p == '\n' || *p == '\t' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = *p == '\n' ? 'n' : *p == '\t' ? 't' : '\\';
		} else if (*p < 0x20 || *p == 0x7f) {
			n += (size_t)sprintf(out + n, "\\x%02x", *p);
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = '\0';
	return out;
}

enum { COL_NAME, COL_TXID, COL_PID, COL_BEGAN, COL_CHANGED, COL_STATUS, NCOL };

/* The row's cells (malloc'd each). */
static void row_cells(const cJSON *t, char *cells[NCOL])
{
	char buf[64];

	cells[COL_NAME] = cell(field(t, "name", buf, sizeof(buf)));
	cells[COL_TXID] = cell(field(t, "txid", buf, sizeof(buf)));
	cells[COL_PID] = cell(field(t, "creator_pid", buf, sizeof(buf)));
	cells[COL_BEGAN] = cell(began(t, buf, sizeof(buf)));
	cells[COL_CHANGED] = cell(field(t, "files_changed", buf, sizeof(buf)));
	cells[COL_STATUS] = cell(cJSON_GetObjectItemCaseSensitive(t, "status")->valuestring);
}

/* Columns as wide as their widest cell; names and status left-aligned,
 * numbers right-aligned; the last column unpadded. */
static void print_table(cJSON *list)
{
	static const char *const head[NCOL] = {"NAME", "TXID", "PID", "BEGAN", "CHANGED", "STATUS"};
	static const bool right[NCOL] = {false, true, true, false, true, false};
	int n = cJSON_GetArraySize(list), w[NCOL];
	char *(*rows)[NCOL] = calloc((size_t)n + 1, sizeof(*rows));
	cJSON *t;
	int r = 0;

	if (!rows)
		abort();
	for (int c = 0; c < NCOL; c++)
		w[c] = (int)strlen(head[c]);
	cJSON_ArrayForEach(t, list) {
		row_cells(t, rows[r]);
		for (int c = 0; c < NCOL; c++)
			if ((int)strlen(rows[r][c]) > w[c])
				w[c] = (int)strlen(rows[r][c]);
		r++;
	}
	for (int k = -1; k < n; k++) {
		for (int c = 0; c < NCOL; c++) {
			const char *text = k < 0 ? head[c] : rows[k][c];

			if (c == NCOL - 1)
				printf("%s\n", text);
			else
				printf(right[c] ? "%*s  " : "%-*s  ", w[c], text);
		}
	}
	for (int k = 0; k < n; k++)
		for (int c = 0; c < NCOL; c++)
			free(rows[k][c]);
	free(rows);
}

static void print_json(cJSON *list, char **raw)
{
	size_t i = 0;
	cJSON *t;

	printf("{\"transactions\":[");
	cJSON_ArrayForEach(t, list) {
		char *s = raw[i] ? NULL : json_print(t, false);

		printf("%s\n%s", i ? "," : "", raw[i] ? raw[i] : s);
		free(s);
		i++;
	}
	printf("]}\n");
}

static int txn_list(const char *name, const char *mnt, bool json)
{
	cJSON *list;
	char **names, **raw;
	size_t n;
	int r;

	r = mc_txn_names(mnt, &names, &n);
	if (r < 0) {
		mc_err(name, "%s: %s", mnt,
		       r == -ENOENT ? "this txdirfs has no .txdir/txn (no transaction support)"
				    : strerror(-r));
		return MC_EXIT_FAIL;
	}
	list = cJSON_CreateArray();
	raw = calloc(n + 1, sizeof(*raw));
	/* every info.json and status in one reader process (mc_read_files) */
	char **paths = calloc(2 * n + 1, sizeof(*paths)), **texts = calloc(2 * n + 1, sizeof(*texts));
	ssize_t *lens = calloc(2 * n + 1, sizeof(*lens));
	if (!list || !raw || !paths || !texts || !lens)
		abort();
	for (size_t i = 0; i < n; i++) {
		paths[2 * i] = mc_txn_path(mnt, names[i], "info.json");
		paths[2 * i + 1] = mc_txn_path(mnt, names[i], "status");
	}
	mc_read_files(paths, 2 * n, MC_PROBE_MS + (int)(n < 10000 ? n : 10000) * 10, texts, lens);
	for (size_t i = 0; i < n; i++) {
		char *st = texts[2 * i + 1];
		ssize_t sn = lens[2 * i + 1];

		while (st && sn > 0 && (st[sn - 1] == '\n' || st[sn - 1] == ' '))
			st[--sn] = '\0';
		cJSON_AddItemToArray(list, txn_doc(names[i], texts[2 * i], lens[2 * i], st, &raw[i]));
		free(st);
		free(paths[2 * i]);
		free(paths[2 * i + 1]);
	}
	free(paths);
	free(texts);
	free(lens);
	if (json)
		print_json(list, raw);
	else
		print_table(list);
	mc_txn_names_free(raw, n);
	mc_txn_names_free(names, n);
	cJSON_Delete(list);
	return MC_EXIT_OK;
}

static int txn_abort(const char *name, const char *mnt, const char *txn)
{
	char *status;
	int r;

	if (!mc_txn_name_ok(txn)) {
		mc_err(name, "%s: not a transaction name", txn);
		return MC_EXIT_FAIL;
	}
	r = mc_txn_ctl(mnt, txn, "abort");
	if (r == 0)
		return MC_EXIT_OK;
	if (r == -ENOENT) {
		mc_err(name, "%s: no transaction %s", mnt, txn);
		return MC_EXIT_FAIL;
	}
	status = mc_txn_status(mnt, txn);
	if (status && strncmp(status, "prepared ", 9) == 0)
		mc_err(name, "%s is %s: only that proposal's decision ends it (SPEC §4)", txn,
		       status);
	else if (status && !mc_txn_status_active(status))
		mc_err(name, "%s is not active: %s", txn, status);
	else
		mc_err(name, "cannot abort %s: %s", txn, strerror(-r));
	free(status);
	return MC_EXIT_FAIL;
}

int cmd_txn(const struct mc_cmd *cmd, int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : "";
	char *mnt;
	int r, first, st, nargs;
	bool json, list = strcmp(verb, "list") == 0;

	if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
		mc_help(cmd);
		return MC_EXIT_OK;
	}
	if (!list && strcmp(verb, "abort") != 0)
		return mc_usage(cmd, argc > 1 ? "unknown subcommand (list or abort)"
					      : "missing list or abort");
	r = mc_parse_read_opts(cmd, argc - 1, argv + 1, &json, &first);
	if (r >= 0)
		return r;
	nargs = argc - 1 - first;
	if (!list && json)
		return mc_usage(cmd, "--json is an option of txn list only");
	if (nargs < 1 || nargs != (list ? 1 : 2))
		return mc_usage(cmd, nargs < 1 ? "missing MNT"
					       : nargs < 2 && !list ? "missing NAME"
								    : "too many arguments");
	mnt = mc_abspath(argv[1 + first]);
	if (!mnt) {
		mc_err(cmd->name, "%s: %s", argv[1 + first], strerror(errno));
		return MC_EXIT_FAIL;
	}
	st = mc_mnt_state(mnt);
	if (st != MC_MNT_OURS)
		mc_err(cmd->name, "%s: %s", mnt, mc_mnt_state_name(st));
	else if (list)
		r = txn_list(cmd->name, mnt, json);
	else
		r = txn_abort(cmd->name, mnt, argv[2 + first]);
	free(mnt);
	return st != MC_MNT_OURS ? MC_EXIT_FAIL : r;
}
