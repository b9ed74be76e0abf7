/*
 * cmd_later.c — commands of SPEC §2 that are not implemented yet:
 * none at present (fsck and inspect are cmd_fsck.c, cmd_inspect.c). They say so
 * and exit 125, the code `run` reserves for mountctl's own errors.
 */
#include <stdio.h>
#include <string.h>

#include "mountctl.h"

int cmd_not_implemented(const struct mc_cmd *cmd, int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			mc_help(cmd);
			return MC_EXIT_OK;
		}
	}
	fprintf(stderr, "mountctl: %s: not implemented yet\n", cmd->name);
	return MC_EXIT_UNIMPL;
}
