/*
 * progress.h — the progress bar of fsck and scrub: records and bytes done
 * (of their totals when known), the rate and the time left, on one line of
 * stderr redrawn at most 4 times a second, and only when stderr is a
 * terminal (a pipe or a file gets nothing, so scripts and logs stay clean).
 */
#ifndef MC_PROGRESS_H
#define MC_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct mc_progress {
	bool on;            /* stderr is a tty */
	bool drawn;         /* a line is on the screen */
	const char *label;
	uint64_t t0_ns, last_ns;
};

/* on when stderr is a terminal (isatty), off otherwise. */
void mc_progress_init(struct mc_progress *p, const char *label);
/* Redraw, unless the last redraw was less than 250 ms ago. A total of 0
 * is unknown (no percentage from it). */
void mc_progress_update(struct mc_progress *p, uint64_t records, uint64_t records_total,
			uint64_t bytes, uint64_t bytes_total);
/* Erase the line (before the report is printed). */
void mc_progress_end(struct mc_progress *p);

#endif
