/*
 * cmd_scrub.c — `mountctl scrub MNT [--rate MiB/s] [--json] [-n]`: the
 * verification of fsck, online, by the running server (engine/scrub.h).
 *
 * Through the file interface only (SPEC §2): writes "start rate=BYTES" to
 * MNT/.txdir/scrub, then reads that file (JSON: state, records and bytes
 * checked of their totals, problems) four times a second, drawing the
 * progress bar on a terminal, until the scrub ends. SIGINT/SIGTERM cancel
 * the scrub ("cancel") and wait for it to stop. Exit codes as fsck's:
 *   0  clean            4  problems found
 *   8  operational error (not a txdir mount, EPERM: only root or the
 *      mount's owner may scrub, EBUSY: one runs already, cancelled, failed)
 *   16 usage error
 * -n is accepted for symmetry with fsck: a scrub never changes anything.
 * One line per problem ("ERROR KIND WHERE: WHAT; affects: file PATH, ..."),
 * then a summary; --json prints the server's final object instead, with
 * "mount", "status" and "exit" added.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"
#include "progress.h"

enum {
	SCRUB_EXIT_CLEAN = 0,
	SCRUB_EXIT_FOUND = 4,
	SCRUB_EXIT_OPER = 8,
	SCRUB_EXIT_USAGE = 16,
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static double num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : "";
}

/* The scrub file parsed, or NULL (its error printed). */
static cJSON *read_state(const char *path)
{
	char *text = NULL;
	ssize_t n = mc_read_file(path, MC_PROBE_MS, &text);
	if (n < 0) {
		mc_err("scrub", "%s: %s", path, strerror((int)-n));
		return NULL;
	}
	cJSON *j = json_parse_str(text);
	if (!j)
		mc_err("scrub", "%s: not JSON", path);
	free(text);
	return j;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void print_text(const char *mnt, const cJSON *j, const char *status)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "problems"))
	{
		const char *path = str(p, "path");
		printf("ERROR %s %s: %s; affects: %s%s%s%s\n", str(p, "kind"), str(p, "where"),
		       str(p, "what"), *path ? "file " : "", path, *path ? ", " : "",
		       str(p, "affects"));
	}
	double secs = num(j, "elapsed_s"), bytes = num(j, "bytes_checked");
	printf("%s: %s: %.0f records, %.0f files, %.0f chunks, %.0f bytes checked in %.2f s "
	       "(%.1f MiB/s); %.0f errors\n",
	       mnt, status, num(j, "records_checked"), num(j, "files_checked"),
	       num(j, "chunks_checked"), bytes, secs, secs > 0 ? bytes / secs / 1048576 : 0,
	       num(j, "errors"));
	if (!strcmp(str(j, "state"), "failed"))
		printf("%s: the scrub failed: %s\n", mnt, str(j, "error"));
}

/* Start the scrub: 0, or the exit code (error printed). */
static int start(const char *mnt, const char *path, uint64_t rate)
{
	char word[48];
	snprintf(word, sizeof(word), "start rate=%" PRIu64 "\n", rate);
	int err = mc_write_whole(path, 0, word, strlen(word));
	if (!err)
		return 0;
	if (err == -EPERM || err == -EACCES)
		mc_err("scrub", "%s: only root or the mount's owner may start a scrub (%s)", mnt,
		       strerror(-err));
	else if (err == -EBUSY)
		mc_err("scrub", "%s: a scrub is already running (%s): see %s", mnt, strerror(-err),
		       path);
	else
		mc_err("scrub", "%s: %s", path, strerror(-err));
	return SCRUB_EXIT_OPER;
}

int cmd_scrub(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{"rate", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool json = false;
	long mib = 64;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "nh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!mc_parse_long(optarg, 0, 1L << 20, &mib)) {
				mc_usage(cmd, "--rate takes MiB/s, 0 (no limit) to 1048576");
				return SCRUB_EXIT_USAGE;
			}
			break;
		case 'n':
			break; /* a scrub changes nothing anyway */
		case 'j':
			json = true;
			break;
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		default:
			mc_usage(cmd, "unknown option");
			return SCRUB_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		mc_usage(cmd, optind >= argc ? "missing MNT" : "too many arguments");
		return SCRUB_EXIT_USAGE;
	}
	char *mnt = mc_abspath(argv[optind]);
	if (!mnt) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(errno));
		if (json)
			mc_json_error("mount", argv[optind], SCRUB_EXIT_OPER);
		return SCRUB_EXIT_OPER;
	}
	int rc = SCRUB_EXIT_OPER, st = mc_mnt_state(mnt);
	char *path = mc_join(mnt, ".txdir/scrub");
	cJSON *j = NULL;
	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd->name, mnt, st);
		goto out;
	}
	if (!(j = read_state(path)))
		goto out;
	double before = num(j, "id");
	cJSON_Delete(j);
	j = NULL;
	/* before the start: a signal once the scrub runs must cancel it */
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if ((rc = start(mnt, path, (uint64_t)mib << 20)))
		goto out;
	rc = SCRUB_EXIT_OPER;
	struct mc_progress bar;
	mc_progress_init(&bar, "scrub");
	bool cancelled = false;
	for (;;) {
		if (!(j = read_state(path)))
			break;
		if (num(j, "id") > before && strcmp(str(j, "state"), "running") != 0)
			break;
		mc_progress_update(&bar, (uint64_t)num(j, "records_checked"),
				   (uint64_t)num(j, "records_total"), (uint64_t)num(j, "bytes_checked"),
				   (uint64_t)num(j, "bytes_total"));
		cJSON_Delete(j);
		j = NULL;
		if (interrupted && !cancelled) {
			cancelled = true;
			mc_write_whole(path, 0, "cancel\n", 7);
		}
		sleep_ms(250);
	}
	mc_progress_end(&bar);
	if (!j)
		goto out;
	const char *state = str(j, "state");
	bool found = num(j, "errors") > 0;
	const char *status = found ? "errors" : !strcmp(state, "done") ? "clean" : state;
	rc = found ? SCRUB_EXIT_FOUND : !strcmp(state, "done") ? SCRUB_EXIT_CLEAN : SCRUB_EXIT_OPER;
	if (json) {
		cJSON_AddStringToObject(j, "mount", mnt);
		cJSON_AddStringToObject(j, "status", status);
		cJSON_AddNumberToObject(j, "exit", rc);
		char *t = json_print(j, true);
		printf("%s\n", t);
		free(t);
	} else {
		print_text(mnt, j, status);
	}
out:
	if (json && rc == SCRUB_EXIT_OPER && !j) /* failed before the server's object */
		mc_json_error("mount", mnt, rc);
	cJSON_Delete(j);
	free(path);
	free(mnt);
	return rc;
}
