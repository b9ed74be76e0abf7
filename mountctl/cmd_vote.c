/*
 * cmd_vote.c — two-phase commit from the command line (SPEC §2, §5
 * "Two-phase commit"):
 *
 *   mountctl propose MNT P --participants a,b,c [--payload FILE] [--timeout S]
 *   mountctl vote MNT P NAME yes|no
 *   mountctl decision MNT P [--wait[=S]] [--json]
 *
 * Everything goes through the file interface of MNT/.txdir/consensus:
 *   proposals/P/             mkdir creates P (EEXIST: it exists)
 *     payload                the document voted on (<= 1 MiB), acted on at close
 *     timeout                seconds (default 30)
 *     participants           "a,b,c": write-once, opens the vote
 *     wait                   a read blocks until P is decided, prints the
 *                            decision; poll(2) says when it would not block
 *     info.json              everything about P
 *   votes/P/NAME             write "yes" or "no": EEXIST a different vote was
 *                            cast, ENOENT unknown P or NAME, EINVAL malformed,
 *                            EROFS already decided
 *   decisions/P              appears once decided, never changes:
 *                            "committed" or "aborted REASON"
 *
 * propose writes participants last because that write opens the vote: the
 * payload and timeout must be in place before anyone can vote. When a
 * step after the mkdir fails, propose removes P again (rmdir) and says
 * whether that worked: a P left behind is created but not open, and the
 * server drops it after its timeout.
 *
 * Exit codes (the decision's are SPEC §2's; 2 is taken by "not decided",
 * so usage errors are 125 in all three, as in run and lease):
 *   propose   0 opened; 1 refused by the server (P exists, bad names,
 *             payload too large, quota); 125 mountctl's own error
 *   vote      0 counted (the same vote again too); 1 refused (another
 *             vote, unknown P or NAME, already decided); 125 own error
 *   decision  0 committed; 1 aborted; 2 not decided yet / --wait timed
 *             out; 125 own error (usage, not a txdir mount, no such P)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

#define CONSENSUS ".txdir/consensus"
#define PAYLOAD_MAX (1024 * 1024) /* SPEC §5 */
#define TIMEOUT_MAX 31536000      /* a year, in seconds */
#define DECISION_MAX 4096

enum { DEC_COMMITTED = 0, DEC_ABORTED = 1, DEC_OPEN = 2 };

/* MNT/.txdir/consensus/ + printf-formatted rest. Caller frees. */
static char *cpath(const char *mnt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *cpath(const char *mnt, const char *fmt, ...)
{
	char *rest, *out;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rest, fmt, ap) < 0)
		rest = NULL;
	va_end(ap);
	if (!rest || asprintf(&out, "%s/" CONSENSUS "/%s", mnt, rest) < 0) {
		fputs("mountctl: out of memory\n", stderr);
		abort();
	}
	free(rest);
	return out;
}

static bool server_gone(int err)
{
	return err == -ENOTCONN || err == -ECONNABORTED;
}

static bool is_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

/* Usage error of a command whose 2 means something else: 125. */
static int usage125(const struct mc_cmd *cmd, const char *why)
{
	mc_usage(cmd, why);
	return MC_EXIT_OWN;
}

/* The mount operand made absolute, and the consensus tree checked. */
static int open_mnt(const struct mc_cmd *cmd, const char *arg, char **mnt)
{
	*mnt = mc_abspath(arg);
	if (!*mnt) {
		mc_err(cmd->name, "%s: %s", arg, strerror(errno));
		return MC_EXIT_OWN;
	}
	return mc_check_tree(cmd->name, *mnt, CONSENSUS "/proposals", "two-phase commit",
			     MC_EXIT_OWN);
}

/* decisions/P into buf: 0, -ENOENT while undecided, or -errno. */
static int read_decision(const char *mnt, const char *p, char *buf, size_t len)
{
	char *path = cpath(mnt, "decisions/%s", p);
	ssize_t n = mc_read_small(path, buf, len);

	free(path);
	return n < 0 ? (int)n : 0;
}

static bool proposal_exists(const char *mnt, const char *p)
{
	char *path = cpath(mnt, "proposals/%s", p);
	struct stat st;
	bool yes = stat(path, &st) == 0;

	free(path);
	return yes;
}

/* ---- propose ---------------------------------------------------------------- */

struct propose_opts {
	const char *participants; /* as given */
	const char *payload_file; /* --payload, or NULL */
	const char *timeout;      /* --timeout as given (checked); NULL: default */
};

/* "a,b,c" -> "a,b,c\n": commas between names (spaces around them are
 * dropped), each name valid, none empty, none listed twice. NULL with the reason in why. Caller frees. */
static char *participants_line(const char *list, char *why, size_t len)
{
	char *copy = mc_strdup(list), *save = copy, *out = NULL;
	char **seen = NULL;
	size_t n = 0, size = 2;

	for (char *s; (s = strsep(&save, ",")) != NULL;) {
		while (*s == ' ')
			s++;
		for (size_t e = strlen(s); e > 0 && s[e - 1] == ' '; e--)
			s[e - 1] = '\0';
		if (!*s) {
			snprintf(why, len, "--participants: an empty name (a,,b or a trailing comma)");
			goto out_free;
		}
		if (!mc_coord_name_ok(s)) {
			snprintf(why, len, "--participants: '%s' is not a name (1 to 255 bytes, no "
				 "'/', whitespace or control characters)", s);
			goto out_free;
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(seen[i], s) == 0) {
				snprintf(why, len, "--participants: %s is listed twice", s);
				goto out_free;
			}
		}
		seen = realloc(seen, (n + 1) * sizeof(*seen));
		if (!seen)
			abort();
		seen[n++] = s;
		size += strlen(s) + 1;
	}
	if (n == 0) {
		snprintf(why, len, "--participants: at least one name");
		goto out_free;
	}
	out = calloc(1, size);
	if (!out)
		abort();
	for (size_t i = 0; i < n; i++) {
		strcat(out, seen[i]);
		strcat(out, i + 1 < n ? "," : "\n");
	}
out_free:
	free(seen);
	free(copy);
	return out;
}

/* A --timeout: plain decimal seconds ("30", "0.5": what the timeout file
 * takes), at least a millisecond, at most TIMEOUT_MAX. */
static bool timeout_ok(const char *s)
{
	char *end;
	double v;

	if (strlen(s) > 20 || strspn(s, "0123456789.") != strlen(s))
		return false;
	errno = 0;
	v = strtod(s, &end);
	return !errno && end != s && !*end && v >= 0.001 && v <= TIMEOUT_MAX;
}

/* Removes P after a failed step; one line says what P is left as. */
static void undo_propose(const char *mnt, const char *p)
{
	char *path = cpath(mnt, "proposals/%s", p);
	int r = rmdir(path) < 0 ? -errno : 0;

	if (r == 0 || r == -ENOENT)
		mc_err("propose", "%s was removed: nothing was proposed", p);
	else
		mc_err("propose", "%s is left created but not open (no participants; rmdir: %s): "
		       "nobody can vote on it, and it goes after its timeout", p, strerror(-r));
	free(path);
}

static int propose_run(const char *mnt, const char *p, const struct propose_opts *o,
		       const char *line, const char *payload, size_t payload_len)
{
	char *path = cpath(mnt, "proposals/%s", p), num[32];
	int r = mkdir(path, 0755) < 0 ? -errno : 0;

	free(path);
	if (r == -EEXIST) {
		mc_err("propose", "proposal %s already exists on %s", p, mnt);
		return MC_EXIT_FAIL;
	}
	if (r < 0) {
		mc_err("propose", "cannot create proposal %s on %s: %s%s", p, mnt, strerror(-r),
		       r == -EDQUOT ? " (too many proposals for this uid)" : "");
		return server_gone(r) ? MC_EXIT_OWN : MC_EXIT_FAIL;
	}
	if (payload) {
		path = cpath(mnt, "proposals/%s/payload", p);
		r = mc_write_whole(path, O_TRUNC, payload, payload_len);
		free(path);
		if (r < 0) {
			mc_err("propose", "cannot write the payload of %s: %s", p, strerror(-r));
			goto out_undo;
		}
	}
	if (o->timeout) {
		snprintf(num, sizeof(num), "%s\n", o->timeout);
		path = cpath(mnt, "proposals/%s/timeout", p);
		r = mc_write_whole(path, 0, num, strlen(num));
		free(path);
		if (r < 0) {
			mc_err("propose", "cannot set the timeout of %s: %s", p, strerror(-r));
			goto out_undo;
		}
	}
	path = cpath(mnt, "proposals/%s/participants", p);
	r = mc_write_whole(path, 0, line, strlen(line));
	free(path);
	if (r < 0 && server_gone(r)) {
		mc_err("propose", "server gone while opening %s: whether it opened is unknown; see "
		       "%s/" CONSENSUS "/proposals/%s after remount", p, mnt, p);
		return MC_EXIT_OWN;
	}
	if (r < 0) {
		mc_err("propose", "cannot open the vote on %s (participants): %s", p, strerror(-r));
		goto out_undo;
	}
	return MC_EXIT_OK;
out_undo:
	if (server_gone(r)) {
		mc_err("propose", "server gone: %s is left created but not open", p);
		return MC_EXIT_OWN;
	}
	undo_propose(mnt, p);
	return MC_EXIT_FAIL;
}

int cmd_propose(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"participants", required_argument, NULL, 'p'},
		{"payload", required_argument, NULL, 'P'},
		{"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	struct propose_opts o = {0};
	char why[320], *line = NULL, *payload = NULL, *mnt = NULL;
	size_t payload_len = 0;
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		case 'p':
			o.participants = optarg;
			break;
		case 'P':
			o.payload_file = optarg;
			break;
		case 't':
			if (!timeout_ok(optarg))
				return usage125(cmd, "--timeout: seconds, more than 0 and at most "
						     "31536000 (decimals allowed)");
			o.timeout = optarg;
			break;
		default:
			return usage125(cmd, "unknown option");
		}
	}
	if (argc - optind != 2)
		return usage125(cmd, argc - optind < 2 ? "missing MNT or P" : "too many arguments");
	if (!mc_coord_name_ok(argv[optind + 1]))
		return usage125(cmd, "P: 1 to 255 bytes, no '/', whitespace or control characters, "
				     "not . or ..");
	if (!o.participants)
		return usage125(cmd, "missing --participants");
	line = participants_line(o.participants, why, sizeof(why));
	if (!line)
		return usage125(cmd, why);
	if (o.payload_file) {
		r = mc_read_input(o.payload_file, PAYLOAD_MAX, &payload, &payload_len);
		if (r < 0) {
			mc_err(cmd->name, "--payload %s: %s", o.payload_file,
			       r == -EFBIG ? "larger than 1 MiB (the limit)" : strerror(-r));
			free(line);
			return MC_EXIT_OWN;
		}
	}
	r = open_mnt(cmd, argv[optind], &mnt);
	if (r == 0)
		r = propose_run(mnt, argv[optind + 1], &o, line, payload, payload_len);
	free(mnt);
	free(payload);
	free(line);
	return r;
}

/* ---- vote ---------------------------------------------------------------------- */

/* One line for a refused vote (SPEC §5's errnos). */
static void vote_refused(const char *mnt, const char *p, const char *name, int err)
{
	char buf[DECISION_MAX], *path;

	switch (err) {
	case -EEXIST:
		path = cpath(mnt, "votes/%s/%s", p, name);
		if (mc_read_small(path, buf, sizeof(buf)) > 0)
			mc_err("vote", "%s already voted differently on %s (its vote: %s)", name, p,
			       buf);
		else
			mc_err("vote", "%s already voted differently on %s", name, p);
		free(path);
		break;
	case -EROFS:
		if (read_decision(mnt, p, buf, sizeof(buf)) == 0)
			mc_err("vote", "%s is already decided: %s", p, buf);
		else
			mc_err("vote", "%s is already decided", p);
		break;
	case -ENOENT:
		if (!proposal_exists(mnt, p))
			mc_err("vote", "no proposal %s on %s", p, mnt);
		else
			mc_err("vote", "%s is not a participant of %s (or %s is not open yet)", name,
			       p, p);
		break;
	case -EINVAL:
		mc_err("vote", "the server refused the vote as malformed (EINVAL)");
		break;
	case -EPERM:
	case -EACCES:
		mc_err("vote", "not allowed to vote as %s on %s: %s", name, p, strerror(-err));
		break;
	default:
		mc_err("vote", "vote of %s on %s failed: %s", name, p, strerror(-err));
	}
}

int cmd_vote(const struct mc_cmd *cmd, int argc, char **argv)
{
	const char *p, *name, *v;
	char *mnt = NULL, *path, line[8];
	int r;

	if (is_help(argc, argv)) {
		mc_help(cmd);
		return MC_EXIT_OK;
	}
	if (argc != 5)
		return usage125(cmd, argc < 5 ? "missing MNT, P, NAME or the vote"
					      : "too many arguments");
	p = argv[2];
	name = argv[3];
	v = argv[4];
	if (!mc_coord_name_ok(p) || !mc_coord_name_ok(name))
		return usage125(cmd, "P and NAME: 1 to 255 bytes, no '/', whitespace or control "
				     "characters, not . or ..");
	if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
		return usage125(cmd, "the vote is yes or no");
	r = open_mnt(cmd, argv[1], &mnt);
	if (r)
		goto out_free;
	snprintf(line, sizeof(line), "%s\n", v);
	path = cpath(mnt, "votes/%s/%s", p, name);
	/* One-word control files act on each write(2) (SPEC §3): no O_TRUNC
	 * needed. The file may not exist before the vote: then create it, as
	 * `echo yes > votes/P/NAME` would. */
	r = mc_write_whole(path, 0, line, strlen(line));
	if (r == -ENOENT)
		r = mc_write_whole(path, O_CREAT, line, strlen(line));
	free(path);
	if (r < 0) {
		vote_refused(mnt, p, name, r);
		r = server_gone(r) ? MC_EXIT_OWN : MC_EXIT_FAIL;
	}
out_free:
	free(mnt);
	return r;
}

/* ---- decision ------------------------------------------------------------------- */

static volatile sig_atomic_t alarm_fired;

static void on_alarm(int sig)
{
	(void)sig;
	alarm_fired = 1;
}

/* SIGALRM after ms, then every 50 ms, without SA_RESTART: it interrupts a
 * blocked read (FUSE sends INTERRUPT) even if it lands just before it. */
static void arm_alarm(int64_t ms)
{
	struct sigaction sa = {.sa_handler = on_alarm};
	struct itimerval it = {{0, 50000}, {0, 0}};

	sigaction(SIGALRM, &sa, NULL);
	alarm_fired = 0;
	if (ms < 1)
		ms = 1;
	it.it_value.tv_sec = ms / 1000;
	it.it_value.tv_usec = (ms % 1000) * 1000;
	setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm_alarm(void)
{
	struct itimerval it = {{0, 0}, {0, 0}};

	setitimer(ITIMER_REAL, &it, NULL);
	signal(SIGALRM, SIG_DFL);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads proposals/P/wait: blocks until decided (wait_ms < 0: as long as
 * it takes), the decision into buf. 0, -ETIMEDOUT, or -errno. poll(2)
 * first, so the deadline holds without a read in flight; the read then has
 * an alarm too, for a server whose wait file does not support poll. */
static int wait_decision(const char *mnt, const char *p, int64_t wait_ms, char *buf, size_t len)
{
	int64_t deadline = wait_ms < 0 ? -1 : now_ms() + wait_ms;
	char *path = cpath(mnt, "proposals/%s/wait", p);
	struct pollfd pfd = {.events = POLLIN};
	ssize_t n;
	int r;

	pfd.fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (pfd.fd < 0)
		return -errno;
	for (;;) {
		int left = deadline < 0 ? -1 : (int)(deadline - now_ms());

		if (deadline >= 0 && left <= 0) {
			r = -ETIMEDOUT;
			goto out_close;
		}
		r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			goto out_close;
		}
		if (r > 0)
			break;
	}
	if (deadline >= 0)
		arm_alarm(deadline - now_ms());
	for (;;) {
		n = read(pfd.fd, buf, len - 1);
		if (n >= 0 || errno != EINTR || (deadline >= 0 && alarm_fired))
			break;
	}
	if (deadline >= 0)
		disarm_alarm();
	if (n < 0) {
		r = errno == EINTR ? -ETIMEDOUT : -errno;
		goto out_close;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	r = n > 0 ? 0 : -EIO;
out_close:
	close(pfd.fd);
	return r;
}

/* 0 committed, 1 aborted (the reason after "aborted "), -EINVAL unknown. */
static int classify(const char *decision, const char **reason)
{
	*reason = "";
	if (strcmp(decision, "committed") == 0)
		return DEC_COMMITTED;
	if (strncmp(decision, "aborted", 7) == 0 && (!decision[7] || decision[7] == ' ')) {
		*reason = decision[7] ? decision + 8 : "";
		return DEC_ABORTED;
	}
	return -EINVAL;
}

static void print_json(const char *mnt, const char *p, int outcome, const char *decision,
		       const char *reason)
{
	static const char *const names[] = {"committed", "aborted", "open"};
	char *path = cpath(mnt, "proposals/%s/info.json", p), *text = NULL, *out;
	cJSON *doc = cJSON_CreateObject(), *info = NULL;

	cJSON_AddStringToObject(doc, "proposal", p);
	cJSON_AddStringToObject(doc, "outcome", names[outcome]);
	cJSON_AddBoolToObject(doc, "decided", outcome != DEC_OPEN);
	if (decision)
		cJSON_AddStringToObject(doc, "decision", decision);
	if (outcome == DEC_ABORTED)
		cJSON_AddStringToObject(doc, "reason", reason);
	if (mc_read_file(path, MC_PROBE_MS, &text) >= 0)
		info = json_parse_str(text);
	if (info)
		cJSON_AddItemToObject(doc, "info", info);
	out = json_print(doc, true);
	printf("%s\n", out);
	free(out);
	free(text);
	free(path);
	cJSON_Delete(doc);
}

/* argv: decision MNT P [--wait[=S]] [--json]. -1 to go on, else an exit. */
static int decision_opts(const struct mc_cmd *cmd, int argc, char **argv, int64_t *wait_ms,
			 bool *json)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"wait", optional_argument, NULL, 'w'},
		{"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	char *end;
	double s;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		case 'w':
			*wait_ms = -1;
			if (!optarg)
				break;
			errno = 0;
			s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(s >= 0 && s <= 1e9))
				return usage125(cmd, "--wait=S: a number of seconds");
			*wait_ms = (int64_t)(s * 1000 + 0.5);
			break;
		case 'j':
			*json = true;
			break;
		default:
			return usage125(cmd, "unknown option");
		}
	}
	if (argc - optind != 2)
		return usage125(cmd, argc - optind < 2 ? "missing MNT or P" : "too many arguments");
	if (!mc_coord_name_ok(argv[optind + 1]))
		return usage125(cmd, "P: 1 to 255 bytes, no '/', whitespace or control characters, "
				     "not . or ..");
	return -1;
}

int cmd_decision(const struct mc_cmd *cmd, int argc, char **argv)
{
	int64_t wait_ms = -2; /* -2: no --wait; -1: as long as it takes */
	char buf[DECISION_MAX], *mnt = NULL;
	const char *p, *reason;
	bool json = false;
	int r, outcome;

	r = decision_opts(cmd, argc, argv, &wait_ms, &json);
	if (r >= 0)
		return r;
	p = argv[optind + 1];
	r = open_mnt(cmd, argv[optind], &mnt);
	if (r)
		goto out_free;
	r = read_decision(mnt, p, buf, sizeof(buf));
	if (r == -ENOENT && wait_ms != -2)
		r = wait_decision(mnt, p, wait_ms, buf, sizeof(buf));
	if (r == -ENOENT && !proposal_exists(mnt, p)) {
		mc_err(cmd->name, "no proposal %s on %s", p, mnt);
		r = MC_EXIT_OWN;
		goto out_free;
	}
	if (r == -ENOENT || r == -ETIMEDOUT) {
		if (json)
			print_json(mnt, p, DEC_OPEN, NULL, NULL);
		else
			printf("%s: not decided yet%s\n", p, r == -ETIMEDOUT ? " (wait timed out)" : "");
		r = DEC_OPEN;
		goto out_free;
	}
	if (r < 0) {
		mc_err(cmd->name, "cannot read the decision of %s: %s", p, strerror(-r));
		r = MC_EXIT_OWN;
		goto out_free;
	}
	outcome = classify(buf, &reason);
	if (outcome < 0) {
		mc_err(cmd->name, "%s: unknown decision '%s'", p, buf);
		r = MC_EXIT_OWN;
		goto out_free;
	}
	if (json)
		print_json(mnt, p, outcome, buf, reason);
	else
		printf("%s\n", buf);
	r = outcome;
out_free:
	free(mnt);
	return r;
}
