/*
 * cmd_umount.c — `mountctl umount MNT [--lazy]`.
 *
 * A plain unmount refuses while the mount is busy (the kernel's EBUSY,
 * reported by fusermount3) and then waits for the server to exit, so that a
 * `mountctl mount` right after it finds the store unlocked. The server's
 * pid comes from status.json ("pid") or, failing that, from the flock on
 * STORE/LOCK in /proc/locks.
 *
 * It also refuses while a transaction is active (MNT/.txdir/txn/NAME/status
 * says "active"): a `mountctl run` holds the mount in its own mount
 * namespace, where the kernel's EBUSY check does not see it, and would
 * lose its commit. --lazy skips that check.
 *
 * Only the user who mounted it (user_id= in mountinfo) or root may unmount
 * a FUSE mount: another user is told whose mount it is.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mountctl.h"
#include "json.h"

#define SERVER_EXIT_WAIT_S 30

/* The server's pid, from status.json or the store's lock; 0 if unknown. */
static pid_t server_pid(const char *mnt)
{
	char *path = mc_join(mnt, ".txdir/status.json"), *text = NULL;
	pid_t pid = 0;
	cJSON *doc;

	if (mc_read_file(path, MC_PROBE_MS, &text) < 0)
		goto out_free;
	doc = json_parse_str(text);
	if (doc) {
		cJSON *p = cJSON_GetObjectItemCaseSensitive(doc, "pid");
		cJSON *s = cJSON_GetObjectItemCaseSensitive(doc, "store");

		if (cJSON_IsNumber(p))
			pid = (pid_t)p->valuedouble;
		else if (cJSON_IsString(s))
			pid = mc_store_lock_holder(s->valuestring);
		cJSON_Delete(doc);
	}
out_free:
	free(text);
	free(path);
	return pid;
}

/* True (after one line saying why) while MNT has active transactions. */
static bool refuse_active_txns(const char *name, const char *mnt)
{
	char *first = NULL;
	int n = mc_txn_count_active(mnt, &first);

	if (n > 0)
		mc_err(name,
		       "%s has %d active transaction%s (%s%s); let them finish, abort them "
		       "(mountctl txn abort) or use --lazy",
		       mnt, n, n == 1 ? "" : "s", first, n > 1 ? ", ..." : "");
	free(first);
	return n > 0;
}

/* True (after one line saying whose mount it is) when MNT is a FUSE mount
 * of another user: fusermount3 would only say that it finds no entry for it
 * in /etc/mtab. Checked before probing the mount, which another user's
 * mount without allow_other does not let us do. */
static bool refuse_not_owner(const char *name, const char *mnt)
{
	long owner = mc_mount_owner(mnt);
	struct passwd *pw;
	char who[64];

	if (owner < 0 || getuid() == 0 || (long)getuid() == owner)
		return false;
	pw = getpwuid((uid_t)owner);
	snprintf(who, sizeof(who), "%s", pw ? pw->pw_name : "another user");
	mc_err(name, "%s is mounted by %s (uid %ld): only %s%s can unmount it", mnt, who, owner,
	       owner == 0 ? "root" : pw ? pw->pw_name : "that user",
	       owner == 0 ? "" : " or root");
	return true;
}

int cmd_umount(const struct mc_cmd *cmd, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"lazy", no_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	bool lazy = false;
	char *mnt = NULL, *out = NULL;
	int c, st, r, ret = MC_EXIT_FAIL;
	pid_t pid = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hlz", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		case 'l':
		case 'z':
			lazy = true;
			break;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	if (argc - optind != 1)
		return mc_usage(cmd, argc - optind < 1 ? "missing MNT" : "too many arguments");
	mnt = mc_abspath(argv[optind]);
	if (!mnt) {
		mc_err(cmd->name, "%s: %s", argv[optind], strerror(errno));
		return MC_EXIT_FAIL;
	}
	if (refuse_not_owner(cmd->name, mnt))
		goto out_free;
	st = mc_mnt_state(mnt);
	switch (st) {
	case MC_MNT_OURS:
		if (!lazy && refuse_active_txns(cmd->name, mnt))
			goto out_free;
		pid = server_pid(mnt);
		break;
	case MC_MNT_STALE:
		break;
	case MC_MNT_HUNG:
		if (!lazy) {
			mc_err(cmd->name, "%s does not answer; use --lazy to detach it", mnt);
			goto out_free;
		}
		break;
	case MC_MNT_NONE:
		mc_err(cmd->name, "%s is not mounted", mnt);
		goto out_free;
	case MC_MNT_OTHER:
		mc_err(cmd->name, "%s is not a txdir mount; refusing", mnt);
		goto out_free;
	default:
		mc_err(cmd->name, "%s: %s", mnt, strerror(-st));
		goto out_free;
	}

	r = mc_fusermount_u(mnt, lazy, &out);
	if (r != 0) {
		if (out && strstr(out, "busy"))
			mc_err(cmd->name,
			       "%s is busy (open files or working directories inside); close them "
			       "or use --lazy",
			       mnt);
		else if (out && *out)
			mc_err(cmd->name, "%s: %s", mnt, out);
		else
			mc_err(cmd->name, "%s: fusermount3 failed: %s", mnt,
			       r < 0 ? strerror(-r) : "no message");
		goto out_free;
	}
	if (st == MC_MNT_STALE)
		fprintf(stderr, "mountctl: %s: %s was a stale mount of a dead server; cleaned it\n",
			cmd->name, mnt);
	/* Lazy: the server exits when the last user is gone; do not wait. */
	if (!lazy && pid > 0) {
		for (int i = 0; i < SERVER_EXIT_WAIT_S * 50 && mc_pid_alive(pid); i++)
			usleep(20000);
		if (mc_pid_alive(pid))
			fprintf(stderr,
				"mountctl: %s: unmounted; txdirfs pid %d is still finishing\n",
				cmd->name, (int)pid);
	}
	ret = MC_EXIT_OK;
out_free:
	free(out);
	free(mnt);
	return ret;
}
