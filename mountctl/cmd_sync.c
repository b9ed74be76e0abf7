/*
 * cmd_sync.c — `mountctl sync MNT`: make every commit so far durable.
 *
 * Uses only the file interface: fsync of the mount point's root directory
 * is, per SPEC §3, a flush that makes every earlier commit durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mountctl.h"

int cmd_sync(const struct mc_cmd *cmd, int argc, char **argv)
{
	char *mnt = NULL;
	int r, first, fd, st, ret = MC_EXIT_FAIL;
	bool json;

	r = mc_parse_read_opts(cmd, argc, argv, &json, &first);
	if (r >= 0)
		return r;
	if (json)
		return mc_usage(cmd, "--json is not an option of sync");
	r = mc_mnt_arg(cmd, argc, argv, first, &mnt);
	if (r >= 0)
		return r;
	/* fsync of a plain directory would "succeed" and sync nothing we own. */
	st = mc_mnt_state(mnt);
	if (st != MC_MNT_OURS) {
		mc_err_not_ours(cmd->name, mnt, st);
		goto out_free;
	}
	fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		mc_err(cmd->name, "%s: %s", mnt, strerror(errno));
		goto out_free;
	}
	if (fsync(fd) < 0) {
		mc_err(cmd->name, "%s: fsync: %s", mnt, strerror(errno));
		close(fd);
		goto out_free;
	}
	close(fd);
	ret = MC_EXIT_OK;
out_free:
	free(mnt);
	return ret;
}
