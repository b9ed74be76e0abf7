/*
 * cmd_top.c — `mountctl top MNT [--once] [--interval S] [--json]`: a live
 * view of a mount from two samples of MNT/.txdir/stats (and status.json for the
 * heading), one frame per interval (default 1 s).
 *
 * Rates are the difference of two samples over the time between them:
 * commits/s (txdir_commits_total), bytes/s (txdir_wal_appended_bytes_total:
 * what the WAL took, records and headers), fsyncs/s (txdir_wal_syncs_total),
 * the group-commit batch over the interval (records made durable per fsync,
 * from txdir_group_commit_batch_size's sum and count), conflicts/s, and the
 * FUSE requests/s by op (txdir_fuse_requests_total{op}). Gauges are shown as
 * sampled: open and prepared transactions, leases held and waiters, open
 * proposals, oldest snapshot age, open handles. A figure the server does
 * not export prints as "-".
 *
 * On a terminal each frame clears the screen first (ESC [H ESC [2J); on
 * anything else (a pipe, a file, watch(1)) frames are plain text separated
 * by a blank line, with no escape codes. --once prints one frame, after one
 * interval, and exits. --json prints each frame as one JSON object on one
 * line (the same figures, null where "-"; as status --watch --json does).
 *
 * Exit: 0 (--once printed its frame, or SIGINT/SIGTERM ended the view);
 * 1 MNT is not a txdir mount or its stats cannot be read; 2 usage.
 *
 * The helpers mc_watch_* are shared with `status --watch` (cmd_status.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

/* ---- watching: shared with status --watch ---------------------------------- */
static volatile sig_atomic_t watch_stop;

static void on_stop(int sig)
{
	(void)sig;
	watch_stop = 1;
}

void mc_watch_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop; /* no SA_RESTART: the sleep ends at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

bool mc_watch_sleep(double secs)
{
	struct timespec ts = {.tv_sec = (time_t)secs,
			      .tv_nsec = (long)((secs - floor(secs)) * 1e9)};

	while (!watch_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return !watch_stop;
}

bool mc_watch_stopped(void)
{
	return watch_stop;
}

void mc_watch_frame(bool tty)
{
	if (tty)
		fputs("\033[H\033[2J", stdout);
}

void mc_watch_frame_end(bool tty)
{
	if (!tty)
		putchar('\n');
	fflush(stdout);
}

bool mc_parse_interval(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.1 && v <= 3600))
		return false;
	*out = v;
	return true;
}

/* ---- one sample of .txdir/stats -------------------------------------------- */
struct sample_op {
	char name[32];
	double n;
};

struct sample {
	double t; /* monotonic seconds */
	double commits, conflicts, bytes, syncs, batch_sum, batch_count;
	double txns, prepared, held, waiters, proposals, snap_age, handles, failed;
	struct sample_op ops[64];
	int nops;
	char store[256], durability[16];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value of a sample line "NAME VALUE" or "NAME{...} VALUE" if line is
 * metric name (labels ignored); *labels points at its '{' or NULL. */
static bool line_value(const char *line, const char *name, const char **labels, double *v)
{
	size_t n = strlen(name);
	const char *p;
	char *end;

	if (strncmp(line, name, n) != 0 || (line[n] != ' ' && line[n] != '{'))
		return false;
	p = line + n;
	*labels = *p == '{' ? p : NULL;
	if (*p == '{') {
		p = strchr(p, '}');
		if (!p)
			return false;
		p++;
	}
	*v = strtod(p, &end);
	return end != p;
}

static void add_op(struct sample *s, const char *labels, double v)
{
	const char *p = labels ? strstr(labels, "op=\"") : NULL;
	size_t n;

	if (!p || s->nops >= (int)(sizeof(s->ops) / sizeof(s->ops[0])))
		return;
	p += 4;
	n = strcspn(p, "\"");
	if (n >= sizeof(s->ops[0].name))
		n = sizeof(s->ops[0].name) - 1;
	memcpy(s->ops[s->nops].name, p, n);
	s->ops[s->nops].name[n] = '\0';
	s->ops[s->nops].n = v;
	s->nops++;
}

static const struct {
	const char *name;
	size_t off;
} figures[] = {
#define F(n, f) {n, offsetof(struct sample, f)}
	F("txdir_commits_total", commits),
	F("txdir_commit_conflicts_total", conflicts),
	F("txdir_wal_appended_bytes_total", bytes),
	F("txdir_wal_syncs_total", syncs),
	F("txdir_group_commit_batch_size_sum", batch_sum),
	F("txdir_group_commit_batch_size_count", batch_count),
	F("txdir_transactions_open", txns),
	F("txdir_transactions_prepared", prepared),
	F("txdir_leases_held", held),
	F("txdir_lease_waiters", waiters),
	F("txdir_proposals_open", proposals),
	F("txdir_oldest_snapshot_age_seconds", snap_age),
	F("txdir_open_handles", handles),
	F("txdir_failed", failed),
#undef F
};
#define NFIGURES (sizeof(figures) / sizeof(figures[0]))

static void parse_stats(struct sample *s, char *text)
{
	char *save = NULL, *line;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *labels;
		double v;

		if (*line == '#')
			continue;
		if (line_value(line, "txdir_fuse_requests_total", &labels, &v)) {
			add_op(s, labels, v);
			continue;
		}
		for (size_t i = 0; i < NFIGURES; i++) {
			if (line_value(line, figures[i].name, &labels, &v)) {
				*(double *)((char *)s + figures[i].off) = v;
				break;
			}
		}
	}
}

static void copy_str(const cJSON *doc, const char *name, char *buf, size_t n)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, name);

	snprintf(buf, n, "%s", cJSON_IsString(it) ? it->valuestring : "-");
}

/* 0, or -errno of the stats read (status.json is optional: its heading
 * fields stay "-"). */
static int take_sample(const char *mnt, struct sample *s)
{
	char *path, *text = NULL;
	ssize_t n;
	cJSON *doc;

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < NFIGURES; i++)
		*(double *)((char *)s + figures[i].off) = NAN; /* "-" until seen */
	path = mc_join(mnt, ".txdir/stats");
	n = mc_read_file(path, MC_PROBE_MS, &text);
	free(path);
	if (n < 0)
		return (int)n;
	s->t = now_s();
	parse_stats(s, text);
	free(text);
	text = NULL;
	path = mc_join(mnt, ".txdir/status.json");
	n = mc_read_file(path, MC_PROBE_MS, &text);
	free(path);
	doc = n >= 0 ? json_parse_str(text) : NULL;
	copy_str(doc, "store", s->store, sizeof(s->store));
	copy_str(doc, "durability", s->durability, sizeof(s->durability));
	cJSON_Delete(doc);
	free(text);
	return 0;
}

/* ---- one frame ------------------------------------------------------------- */
static void fmt_count(char *buf, size_t n, double v)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.0f", v);
}

static void fmt_rate(char *buf, size_t n, double a, double b, double dt)
{
	if (isnan(a) || isnan(b) || dt <= 0)
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.1f", b >= a ? (b - a) / dt : 0.0);
}

static void fmt_bytes_rate(char *buf, size_t n, double a, double b, double dt)
{
	static const char *units[] = {"B/s", "KiB/s", "MiB/s", "GiB/s"};
	double v;
	int u = 0;

	if (isnan(a) || isnan(b) || dt <= 0) {
		snprintf(buf, n, "-");
		return;
	}
	v = b >= a ? (b - a) / dt : 0;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static double op_count(const struct sample *s, const char *name)
{
	for (int i = 0; i < s->nops; i++)
		if (strcmp(s->ops[i].name, name) == 0)
			return s->ops[i].n;
	return 0;
}

static int cmp_rate(const void *a, const void *b)
{
	const struct sample_op *x = a, *y = b;

	return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->name, y->name);
}

static void top_frame(const char *mnt, const struct sample *a, const struct sample *b)
{
	double dt = b->t - a->t;
	char c1[32], c2[32], c3[32], c4[32];
	struct sample_op rates[64];
	double total = 0;
	int nrates = 0;

	printf("txdir top  %s  (store %s, durability %s, interval %.1f s)%s\n", mnt, b->store,
	       b->durability, dt, b->failed > 0 ? "  FAILED: read-only until remounted" : "");
	printf("\n");
	fmt_rate(c1, sizeof(c1), a->commits, b->commits, dt);
	fmt_bytes_rate(c2, sizeof(c2), a->bytes, b->bytes, dt);
	fmt_rate(c3, sizeof(c3), a->syncs, b->syncs, dt);
	fmt_rate(c4, sizeof(c4), a->conflicts, b->conflicts, dt);
	printf("%-18s %12s    %-18s %12s\n", "commits/s", c1, "WAL bytes/s", c2);
	printf("%-18s %12s    %-18s %12s\n", "fsyncs/s", c3, "conflicts/s", c4);
	if (!isnan(a->batch_sum) && !isnan(b->batch_sum) && b->batch_count > a->batch_count)
		snprintf(c1, sizeof(c1), "%.1f",
			 (b->batch_sum - a->batch_sum) / (b->batch_count - a->batch_count));
	else
		snprintf(c1, sizeof(c1), "-");
	fmt_count(c2, sizeof(c2), b->commits);
	printf("%-18s %12s    %-18s %12s\n", "group-commit batch", c1, "commits total", c2);
	printf("\n");
	fmt_count(c1, sizeof(c1), b->txns);
	fmt_count(c2, sizeof(c2), b->prepared);
	printf("%-18s %12s    %-18s %12s\n", "open transactions", c1, "prepared", c2);
	fmt_count(c1, sizeof(c1), b->held);
	fmt_count(c2, sizeof(c2), b->waiters);
	printf("%-18s %12s    %-18s %12s\n", "leases held", c1, "lease waiters", c2);
	fmt_count(c1, sizeof(c1), b->proposals);
	fmt_count(c2, sizeof(c2), b->handles);
	printf("%-18s %12s    %-18s %12s\n", "open proposals", c1, "open handles", c2);
	if (isnan(b->snap_age))
		snprintf(c1, sizeof(c1), "-");
	else
		snprintf(c1, sizeof(c1), "%.1f s", b->snap_age);
	printf("%-18s %12s\n", "oldest snapshot", c1);
	printf("\n");
	for (int i = 0; i < b->nops; i++) {
		double d = b->ops[i].n - op_count(a, b->ops[i].name);

		if (d <= 0 || dt <= 0)
			continue;
		rates[nrates] = b->ops[i];
		rates[nrates].n = d / dt;
		total += d / dt;
		nrates++;
	}
	qsort(rates, (size_t)nrates, sizeof(rates[0]), cmp_rate);
	if (b->nops == 0) {
		printf("FUSE requests/s    -\n");
		return;
	}
	printf("FUSE requests/s    %.1f\n", total);
	for (int i = 0; i < nrates; i++)
		printf("  %-16s %12.1f\n", rates[i].name, rates[i].n);
}

/* A figure, or null when the server does not export it ("-"). */
static void add_num(cJSON *o, const char *name, double v)
{
	if (isnan(v))
		cJSON_AddNullToObject(o, name);
	else
		cJSON_AddNumberToObject(o, name, v);
}

static double rate(double a, double b, double dt)
{
	if (isnan(a) || isnan(b) || dt <= 0)
		return NAN;
	return b >= a ? (b - a) / dt : 0.0;
}

/* --json: the frame as one JSON object on one line (the same figures;
 * null for "-"). */
static void top_json(const char *mnt, const struct sample *a, const struct sample *b)
{
	cJSON *o = cJSON_CreateObject(), *ops = cJSON_CreateObject();
	double dt = b->t - a->t, total = 0;
	char *text;

	cJSON_AddStringToObject(o, "mount_point", mnt);
	cJSON_AddStringToObject(o, "store", b->store);
	cJSON_AddStringToObject(o, "durability", b->durability);
	cJSON_AddNumberToObject(o, "interval_s", dt);
	cJSON_AddBoolToObject(o, "failed", b->failed > 0);
	add_num(o, "commits_per_s", rate(a->commits, b->commits, dt));
	add_num(o, "wal_bytes_per_s", rate(a->bytes, b->bytes, dt));
	add_num(o, "fsyncs_per_s", rate(a->syncs, b->syncs, dt));
	add_num(o, "conflicts_per_s", rate(a->conflicts, b->conflicts, dt));
	add_num(o, "group_commit_batch",
		!isnan(a->batch_sum) && !isnan(b->batch_sum) && b->batch_count > a->batch_count
			? (b->batch_sum - a->batch_sum) / (b->batch_count - a->batch_count)
			: NAN);
	add_num(o, "commits_total", b->commits);
	add_num(o, "transactions_open", b->txns);
	add_num(o, "transactions_prepared", b->prepared);
	add_num(o, "leases_held", b->held);
	add_num(o, "lease_waiters", b->waiters);
	add_num(o, "proposals_open", b->proposals);
	add_num(o, "open_handles", b->handles);
	add_num(o, "oldest_snapshot_age_s", b->snap_age);
	for (int i = 0; i < b->nops; i++) {
		double d = b->ops[i].n - op_count(a, b->ops[i].name);

		if (d <= 0 || dt <= 0)
			continue;
		cJSON_AddNumberToObject(ops, b->ops[i].name, d / dt);
		total += d / dt;
	}
	add_num(o, "fuse_requests_per_s", b->nops ? total : NAN);
	cJSON_AddItemToObject(o, "fuse_requests_per_s_by_op", ops);
	text = json_print(o, false);
	if (text)
		puts(text);
	free(text);
	cJSON_Delete(o);
}

/* ---- the command ----------------------------------------------------------- */
int cmd_top(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{"once", no_argument, NULL, '1'},
		{"interval", required_argument, NULL, 'i'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct sample a, b;
	double interval = 1;
	bool once = false, json = false, tty = isatty(STDOUT_FILENO);
	char *mnt = NULL;
	int c, r, st;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hn:", opts, NULL)) != -1) {
		switch (c) {
		case '1':
			once = true;
			break;
		case 'j':
			json = true;
			break;
		case 'i':
		case 'n':
			if (!mc_parse_interval(optarg, &interval))
				return mc_usage(cmd, "--interval: seconds from 0.1 to 3600");
			break;
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	r = mc_mnt_arg(cmd, argc, argv, optind, &mnt);
	if (r >= 0)
		return r;
	st = mc_mnt_state(mnt);
	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd->name, mnt, st);
		free(mnt);
		return MC_EXIT_FAIL;
	}
	mc_watch_init();
	r = take_sample(mnt, &a);
	while (r == 0 && mc_watch_sleep(interval)) {
		r = take_sample(mnt, &b);
		if (r)
			break;
		if (json) {
			top_json(mnt, &a, &b);
			fflush(stdout);
		} else {
			mc_watch_frame(tty);
			top_frame(mnt, &a, &b);
			mc_watch_frame_end(tty);
		}
		if (once)
			break;
		a = b;
	}
	if (r && watch_stop) /* ^C on a tty also reaches the reading child */
		r = 0;
	if (r)
		mc_err(cmd->name, "%s/.txdir/stats: %s", mnt, strerror(-r));
	free(mnt);
	return r ? MC_EXIT_FAIL : MC_EXIT_OK;
}
