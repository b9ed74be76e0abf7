/*
 * mkstore.c — `mkstore STORE`: create an empty store with txd_store_init.
 * Not a test: lib.sh uses it when $MOUNTCTL is not built (run.sh skips it).
 */
#include <stdio.h>

#include "txdir.h"

int main(int argc, char **argv)
{
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s STORE\n", argv[0]);
		return 2;
	}
	rc = txd_store_init(argv[1]);
	if (rc < 0) {
		fprintf(stderr, "mkstore: %s: %s\n", argv[1], txd_strerror(rc));
		return 1;
	}
	return 0;
}
