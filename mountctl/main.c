/*
 * main.c — mountctl's command table, help and dispatch. Each command lives
 * in its own file (cmd_*.c); this file only finds it and prints help.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mountctl.h"

#define MC_VERSION "0.1"

static const struct mc_cmd cmds[] = {
	{"init", cmd_init, "init STORE",
	 "Create an empty store in STORE (created if missing). Refuses a directory\n"
	 "that is not empty and not a store, and a directory that already is one."},
	{"mount", cmd_mount, "mount STORE MNT [-o OPT[,OPT...]]... [--timeout SECS] [--log FILE]",
	 "Start txdirfs serving STORE at MNT and return once the mount answers.\n"
	 "Options after -o are passed to txdirfs (see txdirfs(8)). txdirfs is taken\n"
	 "from $TXDIRFS, else next to mountctl, else from PATH. Its output is\n"
	 "appended to FILE (default /run/txdir/MNT.log for root, else\n"
	 "$XDG_RUNTIME_DIR/txdir/MNT.log or /tmp/txdir-UID/MNT.log, with the\n"
	 "mount point's slashes as dashes). A stale mount point left by a dead\n"
	 "server is cleaned first (fusermount3 -uz), with a message. --timeout:\n"
	 "how long to wait for the mount to answer (default 10)."},
	{"umount", cmd_umount, "umount MNT [--lazy]",
	 "Unmount MNT and wait for its server to finish. Refuses while the mount is\n"
	 "busy (open files, working directories); --lazy detaches it at once and\n"
	 "the server finishes when the last user is gone."},
	{"status", cmd_status, "status MNT [--json] [--watch [--interval S]]",
	 "Show the store's status, read from MNT/.txdir/status.json. --watch: show\n"
	 "it again every S seconds (default 1; --interval S) until interrupted:\n"
	 "on a terminal the screen is redrawn, otherwise each table follows the\n"
	 "last after a blank line, with no escape codes."},
	{"check", cmd_check, "check MNT [--json]",
	 "Health probe. Exit 0 ok; 1 degraded (the store failed and is read-only,\n"
	 "checksum errors were seen, or status is unreadable); 2 down (not mounted\n"
	 "or not answering)."},
	{"sync", cmd_sync, "sync MNT",
	 "Make every commit made so far on MNT durable (fsync of the mount point)."},
	{"stats", cmd_stats, "stats MNT [--json]",
	 "Print the metrics of MNT/.txdir/stats (Prometheus text format)."},
	{"top", cmd_top, "top MNT [--once] [--interval S] [--json]",
	 "A live view of MNT from MNT/.txdir/stats, refreshed every S seconds\n"
	 "(default 1): commits/s, WAL bytes/s, fsyncs/s, the group-commit batch,\n"
	 "conflicts/s, open and prepared transactions, leases held and waiters,\n"
	 "open proposals, open handles, the oldest snapshot's age, and FUSE\n"
	 "requests/s by operation. Rates are the difference of two samples. On a\n"
	 "terminal the screen is redrawn; otherwise (a pipe, watch(1)) one plain\n"
	 "frame per interval, separated by a blank line, with no escape codes.\n"
	 "--json: each frame as one JSON object on one line (null for a figure\n"
	 "the server does not export).\n"
	 "--once: one frame after one interval, then exit. Exit 0 (--once, or\n"
	 "ended by SIGINT/SIGTERM); 1 MNT is not a txdir mount or its stats are\n"
	 "unreadable; 2 usage."},
	{"run", cmd_run,
	 "run MNT [--read-only] [--name N] [--retry N] [--conflict-exit-code C] "
	 "[--prepare P --as NAME] -- CMD ...",
	 "Run CMD in one transaction: CMD and its descendants see the transaction's\n"
	 "view at MNT (a private mount namespace), and it commits once CMD exited 0\n"
	 "and every descendant has exited. Exit: 0 committed; CMD's code if it\n"
	 "failed (aborted); 128+n if it was killed by signal n; 75 (or\n"
	 "--conflict-exit-code C) when the commit lost to a concurrent change,\n"
	 "after --retry N fresh runs of CMD; 126/127 CMD cannot run / not found;\n"
	 "125 mountctl's own error. --read-only: one consistent snapshot, writes\n"
	 "fail EROFS, nothing is committed, exit is CMD's. --name: the\n"
	 "transaction's name (default run-PID-RANDOM). SIGINT/SIGTERM/SIGHUP/SIGQUIT\n"
	 "sent to mountctl go to CMD. Cooperative isolation, not a sandbox: see\n"
	 "mountctl(1).\n"
	 "--prepare P --as NAME: instead of committing, the transaction joins\n"
	 "two-phase commit proposal P as participant NAME (\"prepare P as NAME\":\n"
	 "its changes are locked and it votes yes), and run waits for P's\n"
	 "decision: exit 0 committed, 76 P was aborted (a no, or the timeout),\n"
	 "75 the prepare lost a conflict (it voted no). If CMD fails, run votes\n"
	 "no as NAME. Killing mountctl meanwhile leaves the transaction prepared:\n"
	 "it commits or aborts with P all the same."},
	{"lease", cmd_lease,
	 "lease MNT NAME [-n | -w SECS] [-E CODE] [--ttl S] -- CMD ... | lease list MNT [NAME] [--json] | "
	 "lease break MNT NAME",
	 "Run CMD holding lease NAME of MNT/.txdir/leases, as flock(1) does with a\n"
	 "lock: the lease is held for CMD's process (killing mountctl does not\n"
	 "free it while CMD runs; CMD's death does), and CMD gets its fencing token\n"
	 "in $TXDIR_LEASE_TOKEN. By default mountctl waits in the lease's queue\n"
	 "(first come, first served) for as long as it takes; -w SECS waits at\n"
	 "most SECS; -n does not wait. --ttl S gives the lease a TTL of S seconds,\n"
	 "renewed every S/3 while CMD runs. Exit: CMD's code (128+n if killed by\n"
	 "signal n); 1 (or -E CODE) busy with -n or timed out with -w; 122 the\n"
	 "lease was lost while CMD ran (broken, expired, released by another; CMD\n"
	 "got SIGTERM); 123 waiting would deadlock (EDEADLK); 126/127 CMD cannot\n"
	 "run / not found; 125 mountctl's own error. SIGINT/SIGTERM/SIGHUP sent to\n"
	 "mountctl while CMD runs go to CMD.\n"
	 "list: the held leases (name, token, pid, TTL, expiry, owner); --json: their\n"
	 "info.json documents. break: end NAME's current grant now (its uid or\n"
	 "root; the break and who made it are in .txdir/events); exit 0 broken, 1\n"
	 "not held / not allowed, 2 usage."},
	{"propose", cmd_propose,
	 "propose MNT P --participants a,b,c [--payload FILE] [--timeout S]",
	 "Create two-phase commit proposal P on MNT/.txdir/consensus and open its\n"
	 "vote among the participants (names separated by commas). --payload FILE\n"
	 "(- for standard input, at most 1 MiB): what is voted on. --timeout S:\n"
	 "seconds until a missing vote aborts P (default: the server's, 30).\n"
	 "If a step after creating P fails, P is removed again (said on stderr).\n"
	 "Exit: 0 open; 1 refused (P exists, quota, bad names); 125 mountctl's\n"
	 "own error (usage, not a txdir mount, unreadable payload)."},
	{"vote", cmd_vote, "vote MNT P NAME yes|no",
	 "Vote yes or no on proposal P as participant NAME. Voting the same again\n"
	 "succeeds. Exit: 0 counted; 1 refused (NAME already voted differently,\n"
	 "no such P or NAME, P already decided: one line says which); 125\n"
	 "mountctl's own error (usage, not a txdir mount)."},
	{"decision", cmd_decision, "decision MNT P [--wait[=S]] [--json]",
	 "Print proposal P's decision: \"committed\" or \"aborted REASON\". --wait:\n"
	 "block until P is decided (at most S seconds with --wait=S). --json: one\n"
	 "object with proposal, outcome (committed, aborted, open), reason and the\n"
	 "proposal's info.json. Exit: 0 committed; 1 aborted; 2 not decided yet\n"
	 "(or the wait timed out); 125 mountctl's own error (usage, not a txdir\n"
	 "mount, no such proposal)."},
	{"txn", cmd_txn, "txn list MNT [--json] | txn abort MNT NAME",
	 "list: the transactions of MNT/.txdir/txn with their status (--json: the\n"
	 "info.json of each, plus \"status\"). abort: abort the active transaction\n"
	 "NAME; its record stays (status \"aborted request\") for its creator."},
	{"state", cmd_state,
	 "state get MNT [--json] | state set MNT [--if-version N] [FILE|-]",
	 "get: print the global state document (MNT/.txdir/state/global_state.json);\n"
	 "--json: {\"version\": N, \"document\": ...}. set: replace it whole with FILE\n"
	 "(standard input without FILE, or -), checked to be JSON first; prints\n"
	 "the new version. Without --if-version the last writer wins (a temp file\n"
	 "renamed over the document); with --if-version N only if the version is\n"
	 "still N (compare-and-swap through .txdir/state/update). Exit: 0 done;\n"
	 "1 failed (not a txdir mount, invalid JSON, refused by the server); 2\n"
	 "usage; 75 stale (the version is no longer N) or another state proposal\n"
	 "is in progress: read again and retry."},
	{"fsck", cmd_fsck, "fsck STORE [-n] [--repair] [--json]",
	 "Verify an unmounted store: every WAL record (checksum, sequence; a torn\n"
	 "tail told from damage in the middle), every checkpoint, every chunk of\n"
	 "every live file, the commits log, and that others cannot read or write\n"
	 "it. One line per problem (where, what, what it affects), then a summary.\n"
	 "-n (the default) changes nothing; --repair does only what recovery does\n"
	 "anyway (ends a torn tail, drops an invalid newer checkpoint, rebuilds the\n"
	 "commits log) and never drops a commit that checks out. Refused while a\n"
	 "server holds the store. Exit (as e2fsck): 0 clean, 1 corrected, 4 errors\n"
	 "left, 8 operational error, 16 usage."},
	{"scrub", cmd_scrub, "scrub MNT [--rate MiB/s] [--json] [-n]",
	 "Verify a mounted store online, through the running server, without\n"
	 "stopping it: every WAL record still in the log and every chunk of every\n"
	 "live file are read and their checksums compared, on a background thread\n"
	 "throttled to --rate MiB/s (default 64; 0: no limit). Progress on a\n"
	 "terminal; then one line per problem (where, what, which file) and a\n"
	 "summary, or --json. Only root or the mount's owner may start one; one\n"
	 "at a time. Ctrl-C cancels it. Exit: 0 clean, 4 errors found, 8\n"
	 "operational error (not a txdir mount, not allowed, one runs, cancelled),\n"
	 "16 usage."},
	{"inspect", cmd_inspect,
	 "inspect STORE [summary|commits [--since ID] [--path P]|txn|leases|proposals|events|"
	 "file PATH [--history]] [--json]",
	 "Describe an unmounted store, read-only: summary (format, size, commits,\n"
	 "log position, checkpoints, packs, live files and bytes), the commits log,\n"
	 "transaction, lease and proposal events, the event log, or one live file\n"
	 "(--history: the commits that named it). Human tables, --json for\n"
	 "scripts. Refused (exit 1) on a mounted store, naming the server's pid."},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct mc_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++) {
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	}
	return NULL;
}

static void print_overview(FILE *f)
{
	fprintf(f, "usage: mountctl COMMAND [ARGS...]\n"
		   "       mountctl help COMMAND | COMMAND --help\n\ncommands:\n");
	for (size_t i = 0; i < NCMDS; i++) {
		bool later = cmds[i].run == cmd_not_implemented;
		fprintf(f, "  %s%s\n", cmds[i].synopsis, later ? "   (not implemented yet)" : "");
	}
	fprintf(f, "\nSee mountctl(1), txdirfs(8) and txdir(7).\n");
}

void mc_help(const struct mc_cmd *cmd)
{
	printf("usage: mountctl %s\n\n%s\n", cmd->synopsis, cmd->help);
}

int mc_usage(const struct mc_cmd *cmd, const char *why)
{
	if (why) {
		fprintf(stderr, "mountctl: %s: %s\n", cmd->name, why);
		mc_err_keep(why);
	}
	fprintf(stderr, "usage: mountctl %s\n", cmd->synopsis);
	return MC_EXIT_USAGE;
}

int mc_parse_read_opts(const struct mc_cmd *cmd, int argc, char **argv, bool *json, int *optind_out)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*json = false;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	*optind_out = optind;
	return -1;
}

/* ---- --json: stdout is JSON, also when a command fails ------------------- */
static unsigned long long out_bytes;

static ssize_t out_write(void *cookie, const char *buf, size_t n)
{
	size_t done = 0;

	(void)cookie;
	while (done < n) {
		ssize_t w = write(STDOUT_FILENO, buf + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return done ? (ssize_t)done : -1;
		done += (size_t)w;
	}
	out_bytes += n;
	return (ssize_t)n;
}

/* --json among the command's own arguments (not CMD's, after "--"). */
static bool wants_json(int argc, char **argv)
{
	for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

/* Every read command takes --json (SPEC §2): one that fails before it
 * printed anything (a message on stderr only) still prints a JSON object,
 * {"command": NAME, "status": "error", "exit": CODE, "error": MESSAGE},
 * as status --json does, so `mountctl X --json | jq` always reads JSON.
 * stdout is counted through a cookie stream for that. */
static int run_json(const struct mc_cmd *cmd, int argc, char **argv)
{
	cookie_io_functions_t io = {.write = out_write};
	FILE *f = fopencookie(NULL, "w", io);
	int rc;

	if (f) {
		if (isatty(STDOUT_FILENO)) /* as glibc buffers a terminal's stdout */
			setvbuf(f, NULL, _IOLBF, 0);
		stdout = f;
	}
	rc = cmd->run(cmd, argc - 1, argv + 1);
	if (rc != MC_EXIT_OK && out_bytes == 0 && mc_err_said()) {
		fflush(stdout);
		if (out_bytes == 0)
			mc_json_error("command", cmd->name, rc);
	}
	fflush(stdout);
	return rc;
}

int main(int argc, char **argv)
{
	const struct mc_cmd *cmd;

	if (argc < 2) {
		print_overview(stderr);
		return MC_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		print_overview(stdout);
		return MC_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("mountctl %s\n", MC_VERSION);
		return MC_EXIT_OK;
	}
	if (strcmp(argv[1], "help") == 0) {
		if (argc < 3) {
			print_overview(stdout);
			return MC_EXIT_OK;
		}
		cmd = find_cmd(argv[2]);
		if (!cmd) {
			fprintf(stderr, "mountctl: unknown command '%s'\n", argv[2]);
			print_overview(stderr);
			return MC_EXIT_USAGE;
		}
		mc_help(cmd);
		return MC_EXIT_OK;
	}
	cmd = find_cmd(argv[1]);
	if (!cmd) {
		fprintf(stderr, "mountctl: unknown command '%s'\n", argv[1]);
		print_overview(stderr);
		return MC_EXIT_USAGE;
	}
	if (wants_json(argc, argv))
		return run_json(cmd, argc, argv);
	return cmd->run(cmd, argc - 1, argv + 1);
}
