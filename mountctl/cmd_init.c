/*
 * cmd_init.c — `mountctl init STORE`: create an empty store (offline, so
 * this is the one command that calls the engine directly).
 */
#include <errno.h>
#include <stdio.h>

#include "mountctl.h"
#include "txdir.h"

int cmd_init(const struct mc_cmd *cmd, int argc, char **argv)
{
	const char *store;
	bool json;
	int r, first;

	/* init has no --json, but shares the --help handling. */
	r = mc_parse_read_opts(cmd, argc, argv, &json, &first);
	if (r >= 0)
		return r;
	if (json)
		return mc_usage(cmd, "--json is not an option of init");
	if (argc - first != 1)
		return mc_usage(cmd, argc - first < 1 ? "missing STORE" : "too many arguments");
	store = argv[first];
	r = txd_store_init(store);
	if (r == -EEXIST) {
		mc_err(cmd->name, "%s is already a txdir store", store);
		return MC_EXIT_FAIL;
	}
	if (r == -TXD_ENOTSTORE) {
		mc_err(cmd->name, "%s is not empty and not a txdir store; refusing to touch it",
		       store);
		return MC_EXIT_FAIL;
	}
	if (r < 0) {
		mc_err(cmd->name, "%s: %s", store, txd_strerror(r));
		return MC_EXIT_FAIL;
	}
	printf("initialized empty txdir store in %s\n", store);
	return MC_EXIT_OK;
}
