/*
 * cmd_fsck.c — `mountctl fsck STORE [-n] [--repair] [--json]`: verify an
 * unmounted store (engine/fsck.h says what is checked).
 *
 * Offline only: a store a server holds is refused, naming the server's
 * pid. Like e2fsck, the exit code is a bit set (SPEC §2):
 *   0  clean            1  problems corrected (--repair)
 *   4  problems left    8  operational error (not a store, held, I/O)
 *   16 usage error
 * -n (the default) changes nothing; --repair does only what recovery does
 * anyway and never drops a record that checks out. One line per problem
 * ("SEVERITY KIND WHERE: WHAT; affects: ..."; SEVERITY ERROR, FIXED, or
 * NOTE for what is not damage: a transaction record a crash left active,
 * fsck.h F4; an invalid checkpoint recovery needs nothing of, F6), then
 * one summary line; --json prints one object instead.
 * On a terminal a progress bar goes to stderr while the store is read
 * (progress.h), erased before any line is printed.
 *
 * Layering: fsck reads the store itself, so this command (like init) uses
 * the engine below txdir.h: engine/fsck.h, from the static library.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fsck.h"
#include "json.h"
#include "mountctl.h"
#include "progress.h"
#include "txdir.h"

enum {
	FSCK_EXIT_CLEAN = 0,
	FSCK_EXIT_FIXED = 1,
	FSCK_EXIT_LEFT = 4,
	FSCK_EXIT_OPER = 8,
	FSCK_EXIT_USAGE = 16,
};

/* Unescapes the octal escapes of /proc/self/mounts (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = 0;
}

char *mc_store_mount_point(const char *store)
{
	char real[PATH_MAX], *line = NULL, *found = NULL;
	size_t cap = 0;
	if (!realpath(store, real))
		return NULL;
	FILE *f = fopen("/proc/self/mounts", "r");
	while (f && getline(&line, &cap, f) > 0) {
		char src[PATH_MAX], mnt[PATH_MAX], type[64];
		if (sscanf(line, "%4095s %4095s %63s", src, mnt, type) != 3 ||
		    strcmp(type, "fuse.txdirfs") != 0)
			continue;
		unescape(src);
		unescape(mnt);
		if (!strcmp(src, real)) {
			free(found);
			found = mc_strdup(mnt); /* the last mount wins */
		}
	}
	free(line);
	if (f)
		fclose(f);
	return found;
}

static const char *sev_name(enum fsck_sev s)
{
	return s == FSCK_FIXED ? "FIXED" : s == FSCK_NOTE ? "NOTE" : "ERROR";
}

struct out {
	bool json;
	cJSON *problems;
	struct mc_progress bar;
};

static void show_progress(void *arg, const struct fsck_progress *p)
{
	struct out *o = arg;
	mc_progress_update(&o->bar, p->records, 0, p->bytes, p->bytes_total);
}

static void report(void *arg, const struct fsck_problem *p)
{
	struct out *o = arg;
	mc_progress_end(&o->bar);
	if (!o->json) {
		printf("%s %s %s: %s; affects: %s\n", sev_name(p->sev), p->kind, p->where, p->what,
		       p->affects);
		return;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "severity", sev_name(p->sev));
	cJSON_AddStringToObject(j, "kind", p->kind);
	cJSON_AddStringToObject(j, "where", p->where);
	cJSON_AddStringToObject(j, "what", p->what);
	cJSON_AddStringToObject(j, "affects", p->affects);
	cJSON_AddItemToArray(o->problems, j);
}

/* The summary as JSON numbers (shared with inspect's). */
static void add_summary(cJSON *s, const struct fsck_result *r)
{
	cJSON_AddNumberToObject(s, "format", r->format);
	cJSON_AddNumberToObject(s, "store_bytes", (double)r->store_bytes);
	cJSON_AddNumberToObject(s, "segments", r->segments);
	cJSON_AddNumberToObject(s, "wal_bytes", (double)r->wal_bytes);
	cJSON_AddNumberToObject(s, "first_lsn", (double)r->first_lsn);
	cJSON_AddNumberToObject(s, "last_lsn", (double)r->last_lsn);
	cJSON_AddNumberToObject(s, "records", (double)r->records);
	cJSON_AddNumberToObject(s, "commits", (double)r->commits);
	cJSON_AddNumberToObject(s, "checkpoints", r->checkpoints);
	cJSON_AddNumberToObject(s, "checkpoint_lsn", (double)r->ckpt_lsn);
	cJSON_AddNumberToObject(s, "packs", r->packs);
	cJSON_AddNumberToObject(s, "pack_bytes", (double)r->pack_bytes);
	cJSON_AddNumberToObject(s, "pack_live_bytes", (double)r->pack_live_bytes);
	cJSON_AddNumberToObject(s, "chunks_verified", (double)r->chunks);
	cJSON_AddNumberToObject(s, "chunk_bytes_verified", (double)r->chunk_bytes);
	cJSON_AddNumberToObject(s, "files", (double)r->files);
	cJSON_AddNumberToObject(s, "directories", (double)r->dirs);
	cJSON_AddNumberToObject(s, "other_inodes", (double)r->others);
	cJSON_AddNumberToObject(s, "live_bytes", (double)r->live_bytes);
	cJSON_AddNumberToObject(s, "commit_log_records", (double)r->clog_records);
}

int cmd_fsck(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{"repair", no_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool repair = false, dry = false, json = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "nhy", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repair = true;
			break;
		case 'n':
			dry = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		default:
			mc_usage(cmd, "unknown option");
			return FSCK_EXIT_USAGE;
		}
	}
	if (dry && repair) {
		mc_usage(cmd, "-n and --repair exclude each other");
		return FSCK_EXIT_USAGE;
	}
	if (optind != argc - 1) {
		mc_usage(cmd, optind >= argc ? "missing STORE" : "too many arguments");
		return FSCK_EXIT_USAGE;
	}
	const char *store = argv[optind];
	struct out o = {.json = json, .problems = cJSON_CreateArray()};
	struct fsck_opts fo = {.repair = repair, .report = report, .progress = show_progress,
			       .arg = &o};
	struct fsck_result r;
	mc_progress_init(&o.bar, "fsck");
	int err = fsck_run(store, &fo, &r);
	mc_progress_end(&o.bar);
	if (err) {
		cJSON_Delete(o.problems);
		char *mnt = err == -TXD_ELOCKED ? mc_store_mount_point(store) : NULL;
		char why[512];
		if (err == -TXD_ELOCKED)
			snprintf(why, sizeof(why), "mounted by txdirfs pid %ld%s%s: unmount it first",
				 (long)r.holder, mnt ? " at " : "", mnt ? mnt : "");
		else if (err == -TXD_EFORMAT)
			txd_format_problem(store, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s", txd_strerror(err));
		mc_err(cmd->name, "%s: %s", store, why);
		if (json) /* --json: one object on stdout whatever happened */
			mc_json_error("store", store, FSCK_EXIT_OPER);
		free(mnt);
		fsck_result_free(&r);
		return FSCK_EXIT_OPER;
	}
	int rc = r.errors ? FSCK_EXIT_LEFT : r.fixed ? FSCK_EXIT_FIXED : FSCK_EXIT_CLEAN;
	const char *status = r.errors ? "errors" : r.fixed ? "corrected" : "clean";
	if (json) {
		cJSON *j = cJSON_CreateObject(), *s = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "store", store);
		cJSON_AddStringToObject(j, "status", status);
		cJSON_AddNumberToObject(j, "exit", rc);
		cJSON_AddNumberToObject(j, "errors", r.errors);
		cJSON_AddNumberToObject(j, "corrected", r.fixed);
		cJSON_AddNumberToObject(j, "notes", r.notes);
		cJSON_AddItemToObject(j, "problems", o.problems);
		add_summary(s, &r);
		cJSON_AddItemToObject(j, "summary", s);
		char *t = json_print(j, true);
		printf("%s\n", t);
		free(t);
		cJSON_Delete(j);
	} else {
		cJSON_Delete(o.problems);
		printf("%s: %s: format %u, %u segments, lsn %" PRIu64 "..%" PRIu64 " (%" PRIu64
		       " records, %" PRIu64 " commits), checkpoint %" PRIu64 " of %u, %" PRIu64
		       " files, %" PRIu64 " directories, %" PRIu64 " bytes, %" PRIu64
		       " chunks verified; %u errors, %u corrected, %u notes\n",
		       store, status, r.format, r.segments, r.first_lsn, r.last_lsn, r.records,
		       r.commits, r.ckpt_lsn, r.checkpoints, r.files, r.dirs, r.live_bytes, r.chunks,
		       r.errors, r.fixed, r.notes);
		if (r.notes)
			printf("%s: %u notes: not damage; the next mount settles them (as --repair "
			       "does now)\n", store, r.notes);
	}
	fsck_result_free(&r);
	return rc;
}
