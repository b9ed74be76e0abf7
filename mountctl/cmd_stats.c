/*
 * cmd_stats.c — `mountctl stats MNT [--json]`: the metrics in
 * MNT/.txdir/stats (Prometheus text exposition format).
 *
 * Plain output is the file as is. --json turns each sample line
 *   name{label="value",...} number [timestamp]
 * into {"name": ..., "labels": {...}, "value": number}, in a
 * {"metrics": [...]} object; comment lines (# HELP, # TYPE) are dropped.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

/* Parses one label value starting after the opening quote; unescapes in
 * place. Returns the position after the closing quote, or NULL. */
static char *parse_quoted(char *p, char **value)
{
	char *w = p;

	*value = p;
	while (*p && *p != '"') {
		if (*p == '\\' && p[1]) {
			p++;
			*w++ = *p == 'n' ? '\n' : *p;
			p++;
		} else {
			*w++ = *p++;
		}
	}
	if (*p != '"')
		return NULL;
	*w = '\0';
	return p + 1;
}

/* Parses one sample line into a JSON object; NULL if malformed. */
static cJSON *parse_sample(char *line)
{
	cJSON *m, *labels;
	char *p = line, *name, *end;
	double v;

	while (*p == ' ' || *p == '\t')
		p++;
	name = p;
	while (*p && *p != '{' && *p != ' ' && *p != '\t')
		p++;
	if (p == name)
		return NULL;
	m = cJSON_CreateObject();
	labels = cJSON_CreateObject();
	if (*p == '{') {
		*p++ = '\0';
		while (*p && *p != '}') {
			char *key = p, *val;

			while (*p && *p != '=')
				p++;
			if (*p != '=' || p[1] != '"')
				goto out_bad;
			*p = '\0';
			p = parse_quoted(p + 2, &val);
			if (!p)
				goto out_bad;
			while (*key == ' ' || *key == ',')
				key++;
			cJSON_AddStringToObject(labels, key, val);
			while (*p == ',' || *p == ' ')
				p++;
		}
		if (*p != '}')
			goto out_bad;
		p++;
	} else if (*p) {
		*p++ = '\0';
	}
	v = strtod(p, &end);
	if (end == p)
		goto out_bad;
	cJSON_AddStringToObject(m, "name", name);
	cJSON_AddItemToObject(m, "labels", labels);
	if (isfinite(v))
		cJSON_AddNumberToObject(m, "value", v);
	else
		cJSON_AddStringToObject(m, "value", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
	return m;
out_bad:
	cJSON_Delete(labels);
	cJSON_Delete(m);
	return NULL;
}

static int print_json(const struct mc_cmd *cmd, char *text)
{
	cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "metrics");
	char *save = NULL, *line, *s;
	int ret = MC_EXIT_OK;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *m;

		if (*line == '#' || *line == '\0')
			continue;
		m = parse_sample(line);
		if (!m) {
			mc_err(cmd->name, "skipping malformed line: %s", line);
			continue;
		}
		cJSON_AddItemToArray(arr, m);
	}
	s = json_print(doc, true);
	if (s)
		puts(s);
	else
		ret = MC_EXIT_FAIL;
	free(s);
	cJSON_Delete(doc);
	return ret;
}

int cmd_stats(const struct mc_cmd *cmd, int argc, char **argv)
{
	char *mnt = NULL, *path = NULL, *text = NULL;
	int r, st, ret = MC_EXIT_FAIL;
	bool json;
	ssize_t n;

	r = mc_read_mnt_args(cmd, argc, argv, &json, &mnt);
	if (r >= 0)
		return r;
	st = mc_mnt_state(mnt);
	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd->name, mnt, st);
		goto out_free;
	}
	path = mc_join(mnt, ".txdir/stats");
	n = mc_read_file(path, MC_PROBE_MS, &text);
	if (n < 0) {
		mc_err(cmd->name, "%s: %s", path, strerror((int)-n));
		goto out_free;
	}
	if (json) {
		ret = print_json(cmd, text);
	} else {
		fwrite(text, 1, (size_t)n, stdout);
		ret = MC_EXIT_OK;
	}
out_free:
	free(text);
	free(path);
	free(mnt);
	return ret;
}
