/*
 * progress.c — one line on stderr while fsck or scrub reads (progress.h):
 *   fsck [########............]  41%  12034 records  1.6/4.0 GiB  412 MiB/s  ETA 0:06
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define REDRAW_NS 250000000ull /* at most 4 redraws a second */
#define BAR 20

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void mc_progress_init(struct mc_progress *p, const char *label)
{
	memset(p, 0, sizeof(*p));
	p->on = isatty(STDERR_FILENO) == 1;
	p->label = label;
	p->t0_ns = now_ns();
}

/* "1.6 GiB", "312 MiB", "12 KiB" */
static void human(uint64_t b, char *buf, size_t cap)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, v < 10 && u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

void mc_progress_update(struct mc_progress *p, uint64_t records, uint64_t records_total,
			uint64_t bytes, uint64_t bytes_total)
{
	if (!p->on)
		return;
	uint64_t now = now_ns();
	if (p->drawn && now - p->last_ns < REDRAW_NS)
		return;
	p->last_ns = now;
	p->drawn = true;
	double secs = (double)(now - p->t0_ns) / 1e9;
	/* the first batch comes at once: a rate from it would mislead */
	double rate = secs >= 0.5 ? (double)bytes / secs : 0;
	double frac = bytes_total ? (double)bytes / (double)bytes_total : 0;
	if (frac > 1)
		frac = 1;
	char bar[BAR + 1], done[16], total[16], rt[16], eta[24] = "";
	int fill = (int)(frac * BAR);
	for (int k = 0; k < BAR; k++)
		bar[k] = k < fill ? '#' : '.';
	bar[BAR] = 0;
	human(bytes, done, sizeof(done));
	human(bytes_total, total, sizeof(total));
	human((uint64_t)rate, rt, sizeof(rt));
	if (bytes_total && rate > 0 && bytes <= bytes_total) {
		unsigned left = (unsigned)((double)(bytes_total - bytes) / rate);
		snprintf(eta, sizeof(eta), "  ETA %u:%02u", left / 60, left % 60);
	}
	char recs[48];
	if (records_total)
		snprintf(recs, sizeof(recs), "%llu/%llu records", (unsigned long long)records,
			 (unsigned long long)records_total);
	else
		snprintf(recs, sizeof(recs), "%llu records", (unsigned long long)records);
	fprintf(stderr, "\r%s [%s] %3d%%  %s  %s/%s  %s/s%s\033[K", p->label, bar,
		(int)(frac * 100), recs, done, total, rate > 0 ? rt : "-", eta);
	fflush(stderr);
}

void mc_progress_end(struct mc_progress *p)
{
	if (!p->on || !p->drawn)
		return;
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
	p->drawn = false;
}
