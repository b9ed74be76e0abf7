/*
 * mountctl.h — shared pieces of mountctl, the command-line front end.
 *
 * Layering rule: mountctl includes only the engine's public header
 * (txdir.h), and it uses the mounted file interface for everything a
 * mounted store can do (status.json, stats, fsync of the mount point).
 * It opens a store directly only offline (init; fsck and inspect, which
 * read it through engine/fsck.h from the static library).
 *
 * Every probe of a mount point runs in a child process with a deadline, so
 * a hung server never hangs mountctl: FUSE requests are killable, so the
 * child can always be reaped.
 *
 * Exit codes (documented in mountctl(1)):
 *   0    success
 *   1    the operation failed (not mounted, busy, server error...)
 *   2    usage error (unknown command or option, missing argument)
 *   125  not implemented yet / mountctl's own error (the code `run` uses)
 * `check` has its own: 0 ok, 1 degraded, 2 down. `run` passes CMD's code
 * through and has its own (cmd_run.c): 75 conflict, 76 (--prepare) the
 * proposal's decision aborted it, 125 its own error (usage errors
 * included), 126/127 CMD cannot run / not found. `lease` (cmd_lease.c),
 * `propose`, `vote`, `decision` (cmd_vote.c: 0 committed, 1 aborted, 2 not
 * decided) and `state` (cmd_state.c: 75 stale) say theirs at their top.
 */
#ifndef MOUNTCTL_H
#define MOUNTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	MC_EXIT_OK = 0,
	MC_EXIT_FAIL = 1,
	MC_EXIT_USAGE = 2,
	MC_EXIT_TEMPFAIL = 75, /* EX_TEMPFAIL: run's commit lost a conflict */
	MC_EXIT_PREP_ABORTED = 76, /* run --prepare: the proposal's decision aborted it */
	MC_EXIT_UNIMPL = 125,
	MC_EXIT_OWN = 125, /* run: mountctl's own error, not CMD's */
};

/* Deadline for one probe (stat, read) of a mount, in milliseconds. */
#define MC_PROBE_MS 5000

struct mc_cmd {
	const char *name;
	int (*run)(const struct mc_cmd *cmd, int argc, char **argv);
	const char *synopsis; /* one line, after "mountctl " */
	const char *help;     /* paragraph(s) for "mountctl help CMD" */
};

/* ---- main.c ---------------------------------------------------------------- */
/* Prints the command's help to stdout. */
void mc_help(const struct mc_cmd *cmd);
/* "mountctl: CMD: usage: ..." on stderr; returns MC_EXIT_USAGE. */
int mc_usage(const struct mc_cmd *cmd, const char *why);
/* A whole decimal number in [lo, hi] (option values); false otherwise. */
bool mc_parse_long(const char *s, long lo, long hi, long *out);
/* Parses the options every read command shares: --json, --help. Returns -1
 * to continue (positional arguments start at *optind_out), or an exit code. */
int mc_parse_read_opts(const struct mc_cmd *cmd, int argc, char **argv, bool *json,
		       int *optind_out);

/* ---- util.c ---------------------------------------------------------------- */
/* "mountctl: CMD: MESSAGE\n" on stderr; MESSAGE is also kept for
 * mc_json_error. */
void mc_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For --json when a command fails before it has its document: one object
 * {KEY: target, "status": "error", "exit": code, "error": the last
 * mc_err MESSAGE} on stdout, so a script reading stdout always gets JSON. */
void mc_json_error(const char *key, const char *target, int code);
/* Whether mc_err said something (main.c: a --json command that failed
 * without printing anything gets mc_json_error's object). */
bool mc_err_said(void);
/* Keep msg as the last error (for mc_json_error) without printing it. */
void mc_err_keep(const char *msg);

/* A name or path for a line of text output, escaped as the status line
 * escapes a path (SPEC §4, §6: \n and \\), and every other control byte
 * (C0, DEL, C1), and every byte that is not part of valid UTF-8, as \xNN:
 * the line always parses and nothing reaches the terminal raw. Caller
 * frees; never NULL (aborts). */
char *mc_esc_line(const char *s);
/* JSON text (json_print's) made terminal-safe without changing its value:
 * DEL and C1 controls, which JSON may hold raw, become \u00NN. Caller
 * frees; never NULL. */
char *mc_json_tty(const char *json);

/* Absolute, normalized path of path without touching its last component (a
 * stale mount point cannot be stat'ed). Caller frees. NULL with errno set. */
char *mc_abspath(const char *path);
/* Joins dir and name with one "/". Caller frees; never NULL (aborts). */
char *mc_join(const char *dir, const char *name);
/* strdup that never returns NULL (aborts on out of memory). */
char *mc_strdup(const char *s);

/* stat(path), and if open_dir also open it as a directory (which reaches
 * the server even when the kernel has its attributes cached), in a child
 * with a deadline: 0, -errno, or -ETIMEDOUT. */
int mc_probe(const char *path, bool open_dir, int timeout_ms);
/* Reads a whole file in a child with a deadline. *out is NUL-terminated,
 * caller frees. Returns the length, -errno, or -ETIMEDOUT. */
ssize_t mc_read_file(const char *path, int timeout_ms, char **out);
/* mc_read_file for n paths in one child process (a list of hundreds costs
 * one fork, not hundreds): out[i] the text (malloc'd, NUL-terminated) and
 * lens[i] its length, or out[i] NULL and lens[i] -errno (-ETIMEDOUT for
 * what the deadline, timeout_ms for the whole batch, cut off). */
void mc_read_files(char *const *paths, size_t n, int timeout_ms, char **out, ssize_t *lens);

/* Looks abs_mnt up in /proc/self/mountinfo (last mount wins). 1 found (its
 * fstype in *fstype, caller frees, if fstype is not NULL), 0 not mounted. */
int mc_mountinfo_find(const char *abs_mnt, char **fstype);

enum mc_mnt_state {
	MC_MNT_NONE,  /* not a mount point */
	MC_MNT_OURS,  /* a FUSE mount that answers and has .txdir */
	MC_MNT_STALE, /* its server is gone: ENOTCONN */
	MC_MNT_HUNG,  /* it does not answer within the deadline */
	MC_MNT_OTHER, /* some other mount */
};
/* The one MNT operand of a command, made absolute into *mnt (malloc'd):
 * -1 to go on, else the exit code to return (usage or error printed). */
int mc_mnt_arg(const struct mc_cmd *cmd, int argc, char **argv, int first, char **mnt);
/* A read command's whole command line: [--json] [--help] MNT. Same returns. */
int mc_read_mnt_args(const struct mc_cmd *cmd, int argc, char **argv, bool *json, char **mnt);
/* Classifies mnt (absolute path). Returns the state, or -errno when mnt
 * itself cannot be looked at (e.g. -ENOENT, -ENOTDIR). */
int mc_mnt_state(const char *abs_mnt);
const char *mc_mnt_state_name(int state);
/* One line for a command that needs a txdir mount at mnt and found state
 * (not MC_MNT_OURS): "MNT is not a txdir mount", stale, not answering. */
void mc_err_not_ours(const char *cmd, const char *mnt, int state);
/* Who mounted the FUSE mount at abs_mnt (its user_id=), or -1. */
long mc_mount_owner(const char *abs_mnt);

/* Runs argv (PATH search) with stdin from /dev/null, capturing stdout and
 * stderr into *output (caller frees; trailing newlines removed). Returns
 * the exit status, 128+signal, or -errno if it could not run. */
int mc_run_capture(char *const argv[], int timeout_ms, char **output);

/* SPEC §6 names of leases, proposals, participants: 1-255 bytes, no '/',
 * whitespace or control characters, not . or .. */
bool mc_coord_name_ok(const char *name);
/* open(path, O_WRONLY|flags, 0644), all of data in 64 KiB writes, close:
 * 0, or the -errno of the first write or of close (where a control file
 * that buffers a document reports its outcome). */
int mc_write_whole(const char *path, int flags, const void *data, size_t len);
/* Reads up to len-1 bytes of path into buf, NUL-terminated, trailing
 * newlines and spaces removed. Blocking, no deadline: length or -errno. */
ssize_t mc_read_small(const char *path, char *buf, size_t len);
/* All of FILE ("-" or NULL: standard input), NUL-terminated, into *out
 * (caller frees). 0, -EFBIG past max bytes, or -errno. */
int mc_read_input(const char *file, size_t max, char **out, size_t *len);
/* mnt must be a txdir mount that has MNT/REL (a control subtree): 0, or
 * code after one line naming what is missing ("no WHAT support"). */
int mc_check_tree(const char *cmd, const char *mnt, const char *rel, const char *what,
		  int code);

/* fusermount3 -u [-z] abs_mnt. 0, or the fusermount3 exit status with its
 * message in *output. */
int mc_fusermount_u(const char *abs_mnt, bool lazy, char **output);

/* True while pid exists and is not a zombie. */
bool mc_pid_alive(pid_t pid);
/* Pid holding a flock on STORE/LOCK per /proc/locks, or 0. */
pid_t mc_store_lock_holder(const char *store);

/* ---- txn.c: transactions through MNT/.txdir/txn (see its top comment) ---- */
/* MNT/.txdir/txn[/NAME[/LEAF]] (name, leaf may be NULL). Caller frees. */
char *mc_txn_path(const char *mnt, const char *name, const char *leaf);
/* 1-255 bytes, no '/', not "." or "..". */
bool mc_txn_name_ok(const char *name);
/* mkdir: 0, -EEXIST, -ENOENT (no transaction support), ... */
int mc_txn_begin(const char *mnt, const char *name);
/* Writes "COMMAND\n" to the ctl file in one write(2); 0 or -errno (the
 * write's own result: commit fails -EBUSY when it lost). */
int mc_txn_ctl(const char *mnt, const char *name, const char *command);
/* The same; *sent says whether the write was made (the ctl file opened):
 * a failure after it may have reached the server. */
int mc_txn_ctl_sent(const char *mnt, const char *name, const char *command, bool *sent);
/* rmdir: aborts an active transaction, drops an ended one's record. */
int mc_txn_remove(const char *mnt, const char *name);
/* The status line without its newline (caller frees), or NULL. */
char *mc_txn_status(const char *mnt, const char *name);
bool mc_txn_status_active(const char *status);
/* The transactions' names, sorted. Free with mc_txn_names_free. */
int mc_txn_names(const char *mnt, char ***names, size_t *count);
void mc_txn_names_free(char **names, size_t count);
/* How many are active (or -errno); the first one's name in *first
 * (caller frees; NULL if none). */
int mc_txn_count_active(const char *mnt, char **first);

/* ---- ns.c: CMD's private mount namespace (see its top comment) ----------- */
/* In a child about to exec: unshare (user namespace if not root), make /
 * MS_SLAVE|MS_REC, bind view over mnt, chdir(cwd) if cwd. 0, or -errno
 * with one line in why. */
int mc_ns_enter_view(const char *view, const char *mnt, const char *cwd, char *why,
		     size_t whylen);

/* ---- cmd_top.c: refreshing views (top, status --watch) ------------------ */
/* SIGINT, SIGTERM, SIGHUP end the view (mc_watch_sleep returns false). */
void mc_watch_init(void);
/* Sleeps secs; false once a stop signal came. */
bool mc_watch_sleep(double secs);
/* Whether a stop signal came (a failure then is the signal's doing). */
bool mc_watch_stopped(void);
/* Before a frame: clears the screen on a tty, nothing otherwise. */
void mc_watch_frame(bool tty);
/* After a frame: a blank line when not a tty; flushes. */
void mc_watch_frame_end(bool tty);
/* An --interval value: seconds, 0.1 to 3600. */
bool mc_parse_interval(const char *s, double *out);

/* ---- commands ---------------------------------------------------------------- */
int cmd_init(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_mount(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_umount(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_status(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_check(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_sync(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_stats(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_top(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_run(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_txn(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_lease(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_propose(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_vote(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_decision(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_state(const struct mc_cmd *cmd, int argc, char **argv);
/* ---- cmd_fsck.c ----------------------------------------------------------- */
/* Where store is mounted (a fuse.txdirfs mount whose source is store's real
 * path; the last one), malloc'd, or NULL. */
char *mc_store_mount_point(const char *store);
int cmd_fsck(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_inspect(const struct mc_cmd *cmd, int argc, char **argv);
/* ---- cmd_scrub.c ---------------------------------------------------------- */
int cmd_scrub(const struct mc_cmd *cmd, int argc, char **argv);
int cmd_not_implemented(const struct mc_cmd *cmd, int argc, char **argv);

#endif
