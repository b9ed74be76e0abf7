/*
 * cmd_status.c — `mountctl status MNT` and `mountctl check MNT`.
 *
 * Both read MNT/.txdir/status.json, which the server renders from struct
 * txd_status (txdir.h) with the field names in snake_case:
 *   store, durability ("fsync" | "full" | "none"), commits, last_commit_id,
 *   lsn, durable_lsn, wal_bytes, wal_syncs, wal_synced_records,
 *   versions_retained, open_handles, inodes, nodes, oldest_snapshot_age_s,
 *   checksum_errors, conflicts, failed (bool), disk_full (bool) and
 *   disk_full_reason, reserve_bytes, reserve_held; optionally pid.
 * Health: degraded with "store failed: read-only until remounted" when
 * failed, "disk full: REASON" while a full disk refuses changes (the store
 * stays writable for what fits), "checksum errors seen"; else ok.
 * A missing field prints as "-"; status --json prints the document as is.
 * status --watch [--interval S] prints the table again every S seconds
 * (cmd_top.c's mc_watch_*: the screen redrawn on a tty, plain frames
 * separated by a blank line otherwise) until SIGINT/SIGTERM; --json with
 * --watch prints one document per interval.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

enum health {
	HEALTH_OK = 0,
	HEALTH_DEGRADED = 1,
	HEALTH_DOWN = 2,
};

/* Reads and parses status.json. On failure returns NULL and sets *why to a
 * static reason and *down to whether the mount is down (vs. degraded). */
static cJSON *load_status(const char *mnt, char **raw, const char **why, bool *down)
{
	char *path;
	ssize_t n;
	cJSON *doc;
	int st;

	*raw = NULL;
	st = mc_mnt_state(mnt);
	if (st != MC_MNT_OURS) {
		*why = mc_mnt_state_name(st);
		*down = true;
		return NULL;
	}
	path = mc_join(mnt, ".txdir/status.json");
	n = mc_read_file(path, MC_PROBE_MS, raw);
	free(path);
	if (n < 0) {
		*down = n == -ETIMEDOUT || n == -ENOTCONN;
		*why = n == -ETIMEDOUT ? "not answering" : "cannot read .txdir/status.json";
		return NULL;
	}
	doc = json_parse_str(*raw);
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		*why = ".txdir/status.json is not a JSON object";
		*down = false;
		return NULL;
	}
	return doc;
}

static bool get_num(const cJSON *doc, const char *name, double *v)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, name);

	if (!cJSON_IsNumber(it))
		return false;
	*v = it->valuedouble;
	return true;
}

static void print_row(const char *label, const char *value)
{
	printf("%-20s %s\n", label, value);
}

static void print_num(const cJSON *doc, const char *label, const char *name)
{
	char buf[64] = "-";
	double v;

	if (get_num(doc, name, &v))
		snprintf(buf, sizeof(buf), "%.0f", v);
	print_row(label, buf);
}

static void fmt_bytes(char *buf, size_t n, double b)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static const char *str_field(const cJSON *doc, const char *name, char *buf, size_t n)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, name);

	if (cJSON_IsString(it))
		return it->valuestring;
	if (cJSON_IsNumber(it)) {
		snprintf(buf, n, "%.0f", it->valuedouble);
		return buf;
	}
	return "-";
}

/* Degraded when the store failed, the disk is full or checksum errors were
 * seen. */
static enum health judge(const cJSON *doc, const char **why)
{
	const cJSON *failed = cJSON_GetObjectItemCaseSensitive(doc, "failed");
	const cJSON *full = cJSON_GetObjectItemCaseSensitive(doc, "disk_full");
	const cJSON *reason = cJSON_GetObjectItemCaseSensitive(doc, "disk_full_reason");
	static char buf[192];
	double errs;

	if (cJSON_IsTrue(failed)) {
		*why = "store failed: read-only until remounted";
		return HEALTH_DEGRADED;
	}
	if (cJSON_IsTrue(full)) {
		snprintf(buf, sizeof(buf), "disk full: %s",
			 cJSON_IsString(reason) && *reason->valuestring ? reason->valuestring
								 : "no space left on device");
		*why = buf;
		return HEALTH_DEGRADED;
	}
	if (get_num(doc, "checksum_errors", &errs) && errs > 0) {
		*why = "checksum errors seen";
		return HEALTH_DEGRADED;
	}
	*why = "ok";
	return HEALTH_OK;
}

static void print_table(const char *mnt, const cJSON *doc)
{
	char buf[128], a[64], b[64];
	const char *why;
	double v, w;

	print_row("mount point", mnt);
	print_row("store", str_field(doc, "store", a, sizeof(a)));
	judge(doc, &why);
	print_row("health", why);
	print_row("durability", str_field(doc, "durability", a, sizeof(a)));
	if (get_num(doc, "commits", &v)) {
		snprintf(buf, sizeof(buf), "%.0f (last id %s)", v,
			 str_field(doc, "last_commit_id", a, sizeof(a)));
		print_row("commits", buf);
	} else {
		print_row("commits", "-");
	}
	snprintf(buf, sizeof(buf), "%s (durable %s)", str_field(doc, "lsn", a, sizeof(a)),
		 str_field(doc, "durable_lsn", b, sizeof(b)));
	print_row("log position", buf);
	if (get_num(doc, "wal_bytes", &v)) {
		fmt_bytes(a, sizeof(a), v);
		if (get_num(doc, "wal_syncs", &w))
			snprintf(buf, sizeof(buf), "%s (%.0f syncs)", a, w);
		else
			snprintf(buf, sizeof(buf), "%s", a);
		print_row("WAL size", buf);
	} else {
		print_row("WAL size", "-");
	}
	print_num(doc, "versions retained", "versions_retained");
	if (get_num(doc, "oldest_snapshot_age_s", &v))
		snprintf(buf, sizeof(buf), "%.1f s", v);
	else
		snprintf(buf, sizeof(buf), "-");
	print_row("oldest snapshot age", buf);
	print_num(doc, "open handles", "open_handles");
	print_num(doc, "inodes", "inodes");
	print_num(doc, "node ids", "nodes");
	print_num(doc, "checksum errors", "checksum_errors");
	print_num(doc, "conflicts", "conflicts");
	if (get_num(doc, "pid", &v)) {
		snprintf(buf, sizeof(buf), "%.0f", v);
		print_row("server pid", buf);
	}
}

/* One status (table or JSON) of mnt: MC_EXIT_OK or MC_EXIT_FAIL. */
static int show_status(const struct mc_cmd *cmd, const char *mnt, bool json)
{
	char *raw = NULL;
	const char *why;
	bool down;
	int r;
	cJSON *doc;

	doc = load_status(mnt, &raw, &why, &down);
	if (!doc) {
		mc_err(cmd->name, "%s: %s", mnt, why);
		r = MC_EXIT_FAIL;
		if (json)
			mc_json_error("mount_point", mnt, r);
		goto out_free;
	}
	if (json) {
		size_t n = strlen(raw);

		fputs(raw, stdout);
		if (n == 0 || raw[n - 1] != '\n')
			putchar('\n');
	} else {
		print_table(mnt, doc);
	}
	cJSON_Delete(doc);
	r = MC_EXIT_OK;
out_free:
	free(raw);
	return r;
}

int cmd_status(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"watch", no_argument, NULL, 'w'},
		{"interval", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool json = false, watch = false, tty = isatty(STDOUT_FILENO), interval_set = false;
	double interval = 1;
	char *mnt = NULL;
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hw", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'w':
			watch = true;
			break;
		case 'i':
			if (!mc_parse_interval(optarg, &interval))
				return mc_usage(cmd, "--interval: seconds from 0.1 to 3600");
			interval_set = true;
			break;
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	if (interval_set && !watch)
		return mc_usage(cmd, "--interval needs --watch");
	r = mc_mnt_arg(cmd, argc, argv, optind, &mnt);
	if (r >= 0)
		return r;
	if (!watch) {
		r = show_status(cmd, mnt, json);
		free(mnt);
		return r;
	}
	mc_watch_init();
	do {
		mc_watch_frame(tty && !json);
		r = show_status(cmd, mnt, json);
		mc_watch_frame_end(tty || json);
	} while (r == MC_EXIT_OK && mc_watch_sleep(interval));
	if (r != MC_EXIT_OK && mc_watch_stopped())
		r = MC_EXIT_OK;
	free(mnt);
	return r;
}

int cmd_check(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const char *names[] = {"ok", "degraded", "down"};
	char *mnt = NULL, *raw = NULL;
	enum health h;
	const char *why;
	bool json, down;
	int r;
	cJSON *doc;

	r = mc_read_mnt_args(cmd, argc, argv, &json, &mnt);
	if (r >= 0)
		return r;
	doc = load_status(mnt, &raw, &why, &down);
	if (doc)
		h = judge(doc, &why);
	else
		h = down ? HEALTH_DOWN : HEALTH_DEGRADED;
	if (json) {
		cJSON *o = cJSON_CreateObject();
		char *s;

		cJSON_AddStringToObject(o, "mount_point", mnt);
		cJSON_AddStringToObject(o, "health", names[h]);
		cJSON_AddStringToObject(o, "reason", why);
		cJSON_AddNumberToObject(o, "exit_code", h);
		s = json_print(o, false);
		if (s)
			puts(s);
		free(s);
		cJSON_Delete(o);
	} else if (h == HEALTH_OK) {
		printf("ok: %s\n", mnt);
	} else {
		printf("%s: %s: %s\n", names[h], mnt, why);
	}
	cJSON_Delete(doc);
	free(raw);
	free(mnt);
	return h;
}
