/*
 * err.c — txd_strerror: one string for every code the engine returns.
 */
#include <string.h>

#include "txdir.h"

static const char *const msgs[TXD_ELAST - TXD_EBASE] = {
	[TXD_ECORRUPT - TXD_EBASE] = "store damaged: a checksummed record or chunk does not match",
	[TXD_EFORMAT - TXD_EBASE] = "unknown store format",
	[TXD_ELOCKED - TXD_EBASE] = "store is in use by another txdirfs",
	[TXD_ENOTSTORE - TXD_EBASE] = "not a txdir store (no FORMAT file; mountctl init makes one)",
	[TXD_EFAILED - TXD_EBASE] = "store failed earlier; remount to recover",
};

const char *txd_strerror(int err)
{
	if (err < 0)
		err = -err;
	if (err >= TXD_EBASE && err < TXD_ELAST)
		return msgs[err - TXD_EBASE];
	return strerror(err);
}

const char *txd_durability_name(enum txd_durability d)
{
	switch (d) {
	case TXD_DUR_FULL:
		return "full";
	case TXD_DUR_NONE:
		return "none";
	default:
		return "fsync";
	}
}
