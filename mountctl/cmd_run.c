/*
 * cmd_run.c — `mountctl run MNT [--read-only] [--name N] [--retry N]
 * [--conflict-exit-code C] -- CMD ...`: CMD and every descendant in one
 * transaction (SPEC §2, §4).
 *
 * One attempt:
 *   1. mkdir MNT/.txdir/txn/NAME (NAME: --name, else run-PID-RANDOM);
 *      --read-only writes "readonly" to its ctl.
 *   2. fork; the child enters a private mount namespace with the view
 *      bind-mounted over MNT (ns.c) and execs CMD.
 *   3. mountctl is a child subreaper: it waits for CMD, then for every
 *      descendant still running (they are re-parented to it), until
 *      waitpid says ECHILD. Only then is nothing left that could write.
 *   4. CMD exited 0 (and not read-only): write "commit" to ctl. The write
 *      returns once the commit is durable, or fails: EBUSY = lost to an
 *      earlier committer (or a file still open for writing); the reason is
 *      in status. Otherwise write "abort".
 *   5. rmdir the record; the outcome is the exit code and, when the
 *      transaction did not commit, one line on stderr saying why (SPEC §2):
 *      "aborted: CMD exited N", "aborted: conflict on PATH with commit ID",
 *      "aborted: busy: ..." (a commit refused while the transaction stays
 *      active is retried for RUN_BUSY_MS first). A request that fails with
 *      ENOTCONN/ECONNABORTED means the server died: "server gone: nothing
 *      committed", or, when the commit write had been made, "outcome
 *      unknown: see MNT/.txdir/dtc/transactions/ID after remount".
 *
 * --prepare P --as NAME (SPEC §4 "prepare"): step 4 writes "prepare P as
 * NAME" instead of "commit" — the server locks the write set and votes
 * yes as NAME in one durable record — then run blocks in
 * .txdir/consensus/proposals/P/wait until P is decided, and waits for the
 * transaction's status to leave "prepared" (the server resolves it by
 * itself). A prepare that loses a conflict votes no (status "aborted
 * conflict ..."): exit 75. CMD failing makes run vote no as NAME itself
 * (votes/P/NAME), so P aborts now rather than at its timeout. P must exist
 * before CMD runs. Killing mountctl while it waits leaves the prepared
 * transaction to its decision; so does a server crash (one line says so).
 *
 * Exit: 0 committed (read-only: CMD's code); CMD's code if it failed;
 * 128+n if it was killed by signal n; 75 (--conflict-exit-code) when the
 * commit lost, after --retry fresh attempts; 126/127 when CMD cannot be
 * executed / is not found (as env(1)); 76 (--prepare) P's decision aborted
 * the transaction; 125 mountctl's own error, including a commit or prepare
 * that failed for a reason other than a conflict.
 *
 * Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT stay blocked in mountctl and
 * are taken with sigwaitinfo(), together with SIGCHLD, so no wait can miss
 * one. SIGUSR1 and SIGUSR2 are passed on to CMD (or, once it exited, to
 * its descendants) and do not end the run.
 * One sent with kill(2) is forwarded to CMD; one from the terminal is not
 * (CMD is in the same foreground process group and got it already). CMD's
 * status then decides. One that arrives after CMD has exited, while
 * descendants still run, is forwarded to mountctl's children and the run
 * aborts: a descendant stopped mid-way must not be committed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

#define RUN_NAME_MAX 64
#define RUN_RETRY -1 /* run_attempt: the commit lost; try again */
#define RUN_GONE -2  /* commit_txn: the server died (and it said so) */
#define RUN_BUSY_MS 5000 /* retrying a commit that meets a busy path */
#define RUN_RESOLVE_MS 30000 /* a decided, prepared transaction resolving */

struct run_opts {
	char *mnt;         /* absolute mount point */
	char *cwd;         /* re-entered in the namespace; NULL if unknown */
	const char *name;  /* --name, or NULL for run-PID-RANDOM */
	bool read_only;    /* --read-only */
	int retries;       /* --retry */
	int conflict_code; /* --conflict-exit-code */
	const char *prepare; /* --prepare P: join proposal P instead of committing */
	const char *as;      /* --as NAME: P's participant the transaction votes as */
	char **argv;       /* CMD */
};

/* What one run of CMD and its descendants came to. */
struct run_result {
	int code;        /* CMD's exit code, or 128+signal */
	int signal;      /* the signal that killed CMD (0: it exited, code is its own) */
	int interrupted; /* signal that must stop the run (0: none) */
};

static sigset_t saved_mask; /* the caller's mask, restored for CMD */

static void forwarded_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGQUIT); /* Ctrl-\ must not orphan CMD either */
}

/* SIGUSR1, SIGUSR2: meant for CMD (`dd` reports its progress on USR1),
 * passed on and never the end of the run; by default they would kill
 * mountctl alone and leave CMD writing into a transaction nobody commits. */
static bool passed_on(int sig)
{
	return sig == SIGUSR1 || sig == SIGUSR2;
}

/* ---- options ------------------------------------------------------------- */

/* argv[0..dd) are mountctl's (options and MNT), argv(dd..] is CMD. */
static int parse_opts(const struct mc_cmd *cmd, int argc, char **argv, struct run_opts *o)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"read-only", no_argument, NULL, 'r'},
		{"name", required_argument, NULL, 'n'},
		{"retry", required_argument, NULL, 'R'},
		{"conflict-exit-code", required_argument, NULL, 'C'},
		{"prepare", required_argument, NULL, 'P'},
		{"as", required_argument, NULL, 'A'},
		{NULL, 0, NULL, 0},
	};
	int c, dd = 1;
	long v;

	while (dd < argc && strcmp(argv[dd], "--") != 0)
		dd++;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(dd, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		case 'r':
			o->read_only = true;
			break;
		case 'n':
			if (!mc_txn_name_ok(optarg))
				return mc_usage(cmd, "--name: 1 to 255 bytes, no '/', not . or ..");
			o->name = optarg;
			break;
		case 'R':
			if (!mc_parse_long(optarg, 0, 1000, &v))
				return mc_usage(cmd, "--retry: a number from 0 to 1000");
			o->retries = (int)v;
			break;
		case 'C':
			if (!mc_parse_long(optarg, 0, 255, &v))
				return mc_usage(cmd, "--conflict-exit-code: a number from 0 to 255");
			o->conflict_code = (int)v;
			break;
		case 'P':
		case 'A':
			if (!mc_coord_name_ok(optarg))
				return mc_usage(cmd, c == 'P' ? "--prepare: 1 to 255 bytes, no '/', "
							"whitespace or control characters"
							      : "--as: 1 to 255 bytes, no '/', "
								"whitespace or control characters");
			*(c == 'P' ? &o->prepare : &o->as) = optarg;
			break;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	if (!o->prepare != !o->as)
		return mc_usage(cmd, "--prepare P and --as NAME go together");
	if (o->prepare && o->read_only)
		return mc_usage(cmd, "--prepare and --read-only exclude each other");
	if (o->prepare && o->retries)
		return mc_usage(cmd, "--prepare votes once: no --retry");
	if (dd - optind < 1)
		return mc_usage(cmd, "missing MNT");
	if (dd == argc)
		return mc_usage(cmd, "missing -- before CMD");
	if (dd - optind > 1)
		return mc_usage(cmd, "too many arguments before --");
	if (dd == argc - 1)
		return mc_usage(cmd, "missing CMD after --");
	o->mnt = mc_abspath(argv[optind]);
	if (!o->mnt) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(errno));
		return MC_EXIT_OWN;
	}
	o->argv = argv + dd + 1;
	return -1;
}

/* ---- the transaction -------------------------------------------------------- */

static void random_name(char *buf, size_t len)
{
	uint32_t rnd;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)time(NULL) ^ (uint32_t)clock();
	snprintf(buf, len, "run-%d-%08x", (int)getpid(), rnd);
}

/* Begins the attempt's transaction; its name in name. 0 or an exit code. */
static int begin_txn(const struct run_opts *o, char name[RUN_NAME_MAX])
{
	int r, tries = 0;

	do {
		if (o->name)
			snprintf(name, RUN_NAME_MAX, "%s", o->name);
		else
			random_name(name, RUN_NAME_MAX);
		r = mc_txn_begin(o->mnt, name);
	} while (r == -EEXIST && !o->name && ++tries < 8);
	if (r == 0)
		return 0;
	if (r == -EEXIST)
		mc_err("run", "a transaction named %s already exists on %s", name, o->mnt);
	else if (r == -ENOENT)
		mc_err("run", "%s: this txdirfs has no .txdir/txn (no transaction support)", o->mnt);
	else
		mc_err("run", "cannot begin a transaction on %s: %s", o->mnt, strerror(-r));
	return MC_EXIT_OWN;
}

/* Whether a request failed because the server is gone: ENOTCONN for one
 * made after it died, ECONNABORTED for one it never answered. */
static bool server_gone(int err)
{
	return err == -ENOTCONN || err == -ECONNABORTED;
}

/* The transaction's id (info.json "txid") in id, or "?" if unreadable:
 * after a server death, its record is .txdir/dtc/transactions/ID. */
static void txn_id(const struct run_opts *o, const char *name, char *id, size_t len)
{
	char *path = mc_txn_path(o->mnt, name, "info.json"), *text = NULL;
	cJSON *doc = NULL, *txid;

	snprintf(id, len, "?");
	if (mc_read_file(path, MC_PROBE_MS, &text) >= 0 && (doc = json_parse_str(text))) {
		txid = cJSON_GetObjectItemCaseSensitive(doc, "txid");
		if (cJSON_IsNumber(txid))
			snprintf(id, len, "%.0f", txid->valuedouble);
	}
	cJSON_Delete(doc);
	free(text);
	free(path);
}

/* Aborts (if still active) and removes the record; false if the server
 * turned out to be gone. */
static bool end_txn(const struct run_opts *o, const char *name, const char *abort_word)
{
	int r = 0;

	if (abort_word)
		r = mc_txn_ctl(o->mnt, name, abort_word);
	if (server_gone(r))
		return false;
	r = mc_txn_remove(o->mnt, name);
	if (server_gone(r))
		return false;
	if (r < 0 && r != -ENOENT)
		mc_err("run", "cannot remove the record of transaction %s: %s", name,
		       strerror(-r));
	return true;
}

/* Where the next " key=" starts after v, or NULL. */
static const char *next_key(const char *v)
{
	for (const char *p = strchr(v, ' '); p; p = strchr(p + 1, ' ')) {
		const char *k = p + 1;

		while ((*k >= 'a' && *k <= 'z') || *k == '_')
			k++;
		if (k > p + 1 && *k == '=')
			return p;
	}
	return NULL;
}

/* The value of " KEY=" in a status line (SPEC §4: `aborted conflict
 * winner=12 path=/a b`): up to the next " key=", except that a path runs to
 * the end (it comes last, escaped) unless an older txdirfs put keys after
 * it. Caller frees; NULL if absent. */
static char *status_value(const char *status, const char *key)
{
	char pat[32];
	const char *v, *end;
	int kl = snprintf(pat, sizeof(pat), " %s=", key);

	v = strstr(status, pat);
	if (!v)
		return NULL;
	v += kl;
	if (strcmp(key, "path") == 0) {
		end = strstr(v, " winner=");
		if (!end)
			end = strstr(v, " reason=");
	} else {
		end = next_key(v);
	}
	if (!end)
		end = v + strlen(v);
	return strndup(v, (size_t)(end - v));
}

/* One line for a transaction that did not commit, from its status line
 * ("aborted conflict winner=12 path=/a"): "conflict on /a with commit 12",
 * "busy: /a (main-tree writer)", or the status's own words. Caller frees. */
static char *why_not_committed(const char *status)
{
	char *path, *winner, *reason, *out;
	const char *words = status;

	if (!status)
		return mc_strdup("the transaction's status is unreadable");
	if (strncmp(words, "aborted ", 8) == 0)
		words += 8;
	path = status_value(status, "path");
	winner = status_value(status, "winner");
	reason = status_value(status, "reason");
	if (strncmp(words, "conflict", 8) == 0 && path && winner) {
		if (asprintf(&out, "conflict on %s with commit %s", path, winner) < 0)
			out = NULL;
	} else if (strncmp(words, "busy", 4) == 0 && path) {
		if (asprintf(&out, "busy: %s%s%s%s", path, reason ? " (" : "", reason ? reason : "",
			     reason ? ")" : "") < 0)
			out = NULL;
	} else {
		out = strdup(words);
	}
	free(path);
	free(winner);
	free(reason);
	return out ? out : mc_strdup("out of memory");
}

/* info.json's last_error (a commit that failed but left the transaction
 * active), or NULL. Caller frees. */
static char *last_error(const struct run_opts *o, const char *name)
{
	char *path = mc_txn_path(o->mnt, name, "info.json"), *text = NULL, *out = NULL;
	cJSON *doc = NULL, *e;

	if (mc_read_file(path, MC_PROBE_MS, &text) >= 0 && (doc = json_parse_str(text))) {
		e = cJSON_GetObjectItemCaseSensitive(doc, "last_error");
		if (cJSON_IsString(e) && *e->valuestring)
			out = mc_strdup(e->valuestring);
	}
	cJSON_Delete(doc);
	free(text);
	free(path);
	return out;
}

static char *consensus_path(const struct run_opts *o, const char *rel, const char *leaf);

/* P's decision line (decisions/P, trailing blanks cut), or NULL. Caller
 * frees. */
static char *decision_of(const struct run_opts *o)
{
	char *path = consensus_path(o, "decisions", NULL), *d = NULL;
	ssize_t n = mc_read_file(path, MC_PROBE_MS, &d);

	free(path);
	while (n > 0 && (d[n - 1] == '\n' || d[n - 1] == ' '))
		d[--n] = '\0';
	return d;
}

/* One line for a prepare the server refused (not a conflict), and the exit
 * code: MC_EXIT_PREP_ABORTED when P was decided aborted before the
 * prepare (SPEC §2: 76 when P's decision aborted it), else mountctl's own
 * error. */
static int prepare_refused(const struct run_opts *o, const char *name, int err,
			   const char *status)
{
	const char *p = o->prepare, *as = o->as;

	switch (err) {
	case -ENOENT:
		mc_err("run", "cannot prepare %s: no open proposal %s with participant %s", name, p,
		       as);
		break;
	case -EROFS: {
		char *d = decision_of(o);
		size_t n = d ? strlen(d) : 0;

		if (n > 0 && strncmp(d, "aborted", 7) == 0) {
			mc_err("run", "aborted: %s was aborted: %s", p, d + (d[7] == ' ' ? 8 : 7));
			free(d);
			return MC_EXIT_PREP_ABORTED;
		}
		mc_err("run", "cannot prepare %s: %s is already decided%s%s%s", name, p,
		       n > 0 ? " (" : "", n > 0 ? d : "", n > 0 ? ", without this run)" : "");
		free(d);
		break;
	}
	case -EEXIST:
		mc_err("run", "cannot prepare %s: %s has voted already on %s (a participant's vote "
			      "stands for one transaction)", name, as, p);
		break;
	default:
		mc_err("run", "prepare of %s as %s on %s failed: %s%s%s", name, as, p,
		       strerror(-err), status ? ": " : "", status ? status : "");
	}
	return MC_EXIT_OWN;
}

/* Commits (or, with --prepare, prepares: word is the ctl command). 0,
 * RUN_RETRY (lost: the reason in *why, caller frees), RUN_GONE (the
 * server died: said which way), or an exit code after printing why. A
 * commit refused while the transaction stays active (a busy path: SPEC
 * §4) is tried again for RUN_BUSY_MS, then aborted. */
static int commit_txn(const struct run_opts *o, const char *name, const char *id,
		      const char *word, char **why)
{
	int64_t waited_ms = 0, pause_ms = 10;
	char *status = NULL;
	bool sent;
	int r;

	for (;;) {
		r = mc_txn_ctl_sent(o->mnt, name, word, &sent);
		if (r == 0)
			return 0;
		if (server_gone(r)) {
			if (sent && o->prepare)
				mc_err("run", "outcome unknown: %s may be prepared on %s; see "
				       "%s/.txdir/dtc/transactions/%s after remount", name, o->prepare,
				       o->mnt, id);
			else if (sent)
				mc_err("run", "outcome unknown: see %s/.txdir/dtc/transactions/%s after "
				       "remount", o->mnt, id);
			else
				mc_err("run", "server gone: nothing committed");
			return RUN_GONE;
		}
		free(status);
		status = mc_txn_status(o->mnt, name);
		if (r != -EBUSY || !mc_txn_status_active(status) || waited_ms >= RUN_BUSY_MS)
			break;
		usleep((useconds_t)pause_ms * 1000);
		waited_ms += pause_ms;
		pause_ms = pause_ms < 200 ? pause_ms * 2 : 200;
	}
	if (r == -EBUSY && mc_txn_status_active(status)) {
		char *err = last_error(o, name);

		*why = NULL;
		if (asprintf(why, "busy: %s", err ? err : "a path of the transaction is in use") < 0)
			*why = NULL;
		free(err);
		free(status);
		if (!*why)
			*why = mc_strdup("busy");
		return RUN_RETRY;
	}
	if (r == -EBUSY && !(o->prepare && status && strncmp(status, "prepared", 8) == 0)) {
		*why = why_not_committed(status);
		free(status);
		return RUN_RETRY;
	}
	if (o->prepare) {
		r = prepare_refused(o, name, r, status);
		free(status);
		return r;
	}
	if (r == -ENOENT && !status)
		/* the transaction is gone: the server restarted meanwhile and
		 * ended it (dtc/transactions/ID: aborted restart) */
		mc_err("run", "server gone: nothing committed (it restarted while %s ran; "
		       "%s/.txdir/dtc/transactions/%s says aborted restart)", o->argv[0], o->mnt, id);
	else
		mc_err("run", "commit of %s failed: %s%s%s", name, strerror(-r), status ? ": " : "",
		       status ? status : "");
	free(status);
	return MC_EXIT_OWN;
}

/* ---- --prepare: the transaction joins a proposal ------------------------------ */

/* MNT/.txdir/consensus/REL/P[/LEAF]. Caller frees. */
static char *consensus_path(const struct run_opts *o, const char *rel, const char *leaf)
{
	char *out;

	if (asprintf(&out, "%s/.txdir/consensus/%s/%s%s%s", o->mnt, rel, o->prepare,
		     leaf ? "/" : "", leaf ? leaf : "") < 0)
		abort();
	return out;
}

/* CMD failed: vote no as NAME so P aborts now, not at its timeout.
 * Appends what happened to what. */
static void vote_no(const struct run_opts *o, char *what, size_t len)
{
	char *path = consensus_path(o, "votes", o->as);
	size_t used = strlen(what);
	int r = mc_write_whole(path, 0, "no\n", 3);

	if (r == -ENOENT)
		r = mc_write_whole(path, O_CREAT, "no\n", 3);
	free(path);
	if (r == -EROFS) { /* decided already: say how, not "at its timeout" */
		char *d = decision_of(o);

		snprintf(what + used, len - used, "; %s is already decided: %s", o->prepare,
			 d && *d ? d : "decided");
		free(d);
	} else if (r == 0) {
		snprintf(what + used, len - used, "; voted no as %s on %s", o->as, o->prepare);
	} else {
		snprintf(what + used, len - used, "; could not vote no as %s on %s (%s): it "
			 "aborts at its timeout", o->as, o->prepare, strerror(-r));
	}
}

/* Blocks in proposals/P/wait until P is decided (SIGINT, SIGTERM, SIGHUP
 * and SIGQUIT end mountctl meanwhile: the prepared transaction does not need
 * it). 0 with the decision in buf, or -errno. */
static int read_wait(const struct run_opts *o, char *buf, size_t len)
{
	char *path = consensus_path(o, "proposals", "wait");
	sigset_t set;
	ssize_t n;

	forwarded_signals(&set);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	n = mc_read_small(path, buf, len);
	while (n == -EINTR)
		n = mc_read_small(path, buf, len);
	sigprocmask(SIG_BLOCK, &set, NULL);
	free(path);
	return n < 0 ? (int)n : 0;
}

/* Waits for the prepared transaction to be resolved by P's decision: its
 * status leaves "prepared" once the server has applied the decision,
 * which may be a moment after the decision is readable. The status, or
 * NULL if unreadable (caller frees). */
static char *await_resolution(const struct run_opts *o, const char *name, bool bounded)
{
	int64_t waited_ms = 0, pause_ms = 5;
	char *status;

	for (;;) {
		status = mc_txn_status(o->mnt, name);
		if (!status || strncmp(status, "prepared", 8) != 0)
			return status;
		if (bounded && waited_ms >= RUN_RESOLVE_MS)
			return status;
		free(status);
		usleep((useconds_t)pause_ms * 1000);
		waited_ms += pause_ms;
		pause_ms = pause_ms < 200 ? pause_ms * 2 : 200;
	}
}

/* After a successful prepare: 0 committed, MC_EXIT_PREP_ABORTED, RUN_GONE,
 * or MC_EXIT_OWN; one line on stderr unless committed. */
static int await_decision(const struct run_opts *o, const char *name, const char *id)
{
	char decision[4096] = "", *status;
	int r = read_wait(o, decision, sizeof(decision));

	if (server_gone(r)) {
		mc_err("run", "server gone while %s was undecided: transaction %s stays prepared "
		       "and resolves with %s's decision; see %s/.txdir/dtc/transactions/%s after "
		       "remount", o->prepare, name, o->prepare, o->mnt, id);
		return RUN_GONE;
	}
	/* no wait file (P already removed, or none): the status says it all */
	status = await_resolution(o, name, r == 0);
	if (status && strncmp(status, "committed", 9) == 0)
		r = 0;
	else if (status && strncmp(status, "aborted", 7) == 0) {
		mc_err("run", "aborted: %s was aborted%s%s", o->prepare,
		       strncmp(decision, "aborted ", 8) == 0 && r == 0 ? ": " : "",
		       strncmp(decision, "aborted ", 8) == 0 && r == 0 ? decision + 8 : "");
		r = MC_EXIT_PREP_ABORTED;
	} else {
		mc_err("run", "%s: %s%s%s", name, status ? status : "status unreadable",
		       r == 0 ? "; decision of " : "", r == 0 ? o->prepare : "");
		if (r == 0)
			mc_err("run", "decision: %s", decision);
		r = MC_EXIT_OWN;
	}
	free(status);
	return r;
}

/* CMD succeeded: commit, or prepare and wait for the decision. */
static int finish_txn(const struct run_opts *o, const char *name, const char *id, char **why)
{
	char *word;
	int r;

	if (!o->prepare)
		return commit_txn(o, name, id, "commit", why);
	if (asprintf(&word, "prepare %s as %s", o->prepare, o->as) < 0)
		abort();
	r = commit_txn(o, name, id, word, why);
	free(word);
	if (r == RUN_RETRY) {
		/* a conflict: the server voted no and aborted the transaction.
		 * A busy path (another prepared transaction's lock, a main-tree
		 * writer) leaves it active and unvoted: vote no here, so P
		 * aborts now rather than at its timeout while the others'
		 * prepared locks block every writer of their paths. */
		char what[600] = "", *more;

		if (*why && !strncmp(*why, "busy", 4))
			vote_no(o, what, sizeof(what));
		else
			snprintf(what, sizeof(what), "; voted no as %s on %s", o->as, o->prepare);
		if (asprintf(&more, "%s (%s)", *why, what + 2) >= 0) {
			free(*why);
			*why = more;
		}
		return r;
	}
	return r == 0 ? await_decision(o, name, id) : r;
}

/* ---- CMD and its descendants ------------------------------------------------- */

static void __attribute__((noreturn)) child_exec(const struct run_opts *o, const char *view)
{
	char why[PATH_MAX + 128];

	sigprocmask(SIG_SETMASK, &saved_mask, NULL);
	if (mc_ns_enter_view(view, o->mnt, o->cwd, why, sizeof(why)) < 0) {
		mc_err("run", "%s", why);
		_exit(MC_EXIT_OWN);
	}
	execvp(o->argv[0], o->argv);
	mc_err("run", "%s: %s", o->argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

/* Sends sig to each child of mountctl (the descendants re-parented to it). */
static void signal_children(int sig)
{
	char path[64];
	FILE *f;
	int pid;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
	f = fopen(path, "re");
	if (!f)
		return;
	while (fscanf(f, "%d", &pid) == 1)
		kill(pid, sig);
	fclose(f);
}

static int status_code(int status)
{
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* Reaps what has exited; false once no child is left. */
static bool reap(pid_t cmd_pid, bool *cmd_done, struct run_result *res)
{
	int status;
	pid_t p;

	while ((p = waitpid(-1, &status, WNOHANG)) != 0) {
		if (p < 0)
			return errno != ECHILD;
		if (p == cmd_pid) {
			res->code = status_code(status);
			res->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
			*cmd_done = true;
		}
	}
	return true;
}

/* Waits for CMD, then for every descendant (see the top comment). */
static void wait_all(pid_t cmd_pid, struct run_result *res)
{
	bool cmd_done = false;
	siginfo_t si;
	sigset_t set;
	int sig;

	forwarded_signals(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	while (reap(cmd_pid, &cmd_done, res)) {
		sig = sigwaitinfo(&set, &si);
		if (sig < 0 || sig == SIGCHLD)
			continue;
		if (passed_on(sig)) {
			if (cmd_done)
				signal_children(sig);
			else
				kill(cmd_pid, sig);
			continue;
		}
		if (cmd_done) {
			res->interrupted = sig;
			signal_children(sig);
		} else if (si.si_code <= 0) {
			kill(cmd_pid, sig); /* sent with kill(2), not by the terminal */
		}
	}
}

/* Runs CMD in the view. 0 with *res filled, or an exit code. */
static int run_cmd(const struct run_opts *o, const char *view, struct run_result *res)
{
	pid_t pid;

	memset(res, 0, sizeof(*res));
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		mc_err("run", "fork: %s", strerror(errno));
		return MC_EXIT_OWN;
	}
	if (pid == 0)
		child_exec(o, view);
	wait_all(pid, res);
	return 0;
}

/* ---- one attempt ------------------------------------------------------------- */

/* "sh exited 3", "sh was killed by signal 9 (Killed)": from how CMD ended
 * (waitpid's status), not from the code, since a CMD may exit 137 itself. */
static void describe_exit(const struct run_opts *o, const struct run_result *res, char *buf,
			  size_t len)
{
	if (res->signal)
		snprintf(buf, len, "%s was killed by signal %d (%s)", o->argv[0], res->signal,
			 strsignal(res->signal));
	else
		snprintf(buf, len, "%s exited %d", o->argv[0], res->code);
}

static int run_attempt(const struct run_opts *o, char **why)
{
	char name[RUN_NAME_MAX], id[32], *view, what[PATH_MAX + 64] = "";
	struct run_result res;
	int r;

	r = begin_txn(o, name);
	if (r)
		return r;
	if (o->read_only) {
		r = mc_txn_ctl(o->mnt, name, "readonly");
		if (r < 0) {
			mc_err("run", "cannot make transaction %s read-only: %s", name, strerror(-r));
			end_txn(o, name, "abort");
			return MC_EXIT_OWN;
		}
	}
	txn_id(o, name, id, sizeof(id));
	view = mc_txn_path(o->mnt, name, "root");
	r = run_cmd(o, view, &res);
	free(view);
	if (r == 0 && res.interrupted) {
		r = res.code ? res.code : 128 + res.interrupted;
		snprintf(what, sizeof(what), "interrupted by signal %d (%s) after %s exited",
			 res.interrupted, strsignal(res.interrupted), o->argv[0]);
	} else if (r == 0 && (o->read_only || res.code != 0)) {
		r = res.code;
		if (!o->read_only)
			describe_exit(o, &res, what, sizeof(what));
	} else if (r == 0) {
		r = finish_txn(o, name, id, why);
	}
	if (o->prepare && *what)
		vote_no(o, what, sizeof(what));
	if (r == RUN_GONE)
		return MC_EXIT_OWN; /* commit_txn said what happened */
	/* gave up on a busy path: the record says "aborted busy" (SPEC §2) */
	const char *word = r == 0 ? NULL
			   : r == RUN_RETRY && *why && !strncmp(*why, "busy", 4) ? "abort busy"
										  : "abort";
	if (!end_txn(o, name, word) && r != 0) {
		if (*what)
			mc_err("run", "server gone: nothing committed (%s)", what);
		else
			mc_err("run", "server gone: nothing committed");
		return r == RUN_RETRY ? MC_EXIT_OWN : r;
	}
	if (*what)
		mc_err("run", "aborted: %s", what);
	return r;
}

static bool signal_pending(void)
{
	sigset_t pending, set;

	forwarded_signals(&set);
	if (sigpending(&pending) < 0)
		return false;
	for (int sig = 1; sig < NSIG; sig++) {
		if (sigismember(&set, sig) == 1 && sigismember(&pending, sig) == 1)
			return true;
	}
	return false;
}

/* Subreaper, SIGCHLD reported, the forwarded signals blocked. */
static int prepare_parent(void)
{
	sigset_t set;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		mc_err("run", "cannot become a child subreaper: %s", strerror(errno));
		return MC_EXIT_OWN;
	}
	/* Inherited SIG_IGN would reap CMD behind our back and lose its status. */
	signal(SIGCHLD, SIG_DFL);
	forwarded_signals(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1); /* passed on to CMD (wait_all), for the whole run */
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, &saved_mask);
	return 0;
}

static int run_all(const struct run_opts *o)
{
	char *why = NULL;
	int r;

	for (int attempt = 0;; attempt++) {
		free(why);
		why = NULL;
		r = run_attempt(o, &why);
		if (r != RUN_RETRY || attempt >= o->retries || signal_pending())
			break;
	}
	if (r == RUN_RETRY) {
		mc_err("run", "aborted: %s", why);
		r = o->conflict_code;
	}
	free(why);
	return r;
}

int cmd_run(const struct mc_cmd *cmd, int argc, char **argv)
{
	struct run_opts o = {.conflict_code = MC_EXIT_TEMPFAIL};
	int r, st;

	r = parse_opts(cmd, argc, argv, &o);
	if (r >= 0)
		return r == MC_EXIT_USAGE ? MC_EXIT_OWN : r;
	st = mc_mnt_state(o.mnt);
	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd->name, o.mnt, st);
		r = MC_EXIT_OWN;
		goto out_free;
	}
	if (o.prepare) {
		char *prop = consensus_path(&o, "proposals", NULL);

		/* before CMD runs: a prepare that cannot happen must not cost its work */
		r = mc_check_tree(cmd->name, o.mnt, ".txdir/consensus/proposals",
				  "two-phase commit", MC_EXIT_OWN);
		if (r == 0 && mc_probe(prop, false, MC_PROBE_MS) == -ENOENT) {
			mc_err(cmd->name, "no proposal %s on %s", o.prepare, o.mnt);
			r = MC_EXIT_OWN;
		}
		free(prop);
		if (r)
			goto out_free;
	}
	o.cwd = getcwd(NULL, 0);
	r = prepare_parent();
	if (r == 0)
		r = run_all(&o);
out_free:
	free(o.cwd);
	free(o.mnt);
	return r;
}
