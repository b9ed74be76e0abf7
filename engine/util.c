/*
 * util.c — see util.h.
 */
#include <errno.h>
#include <stdlib.h>

#include "util.h"

int array_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint32_t ncap = *cap ? *cap * 2 : 8;
	while (ncap < need)
		ncap *= 2;
	void *p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

bool dec_parse(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (!n || (s[0] == '0' && n > 1))
		return false;
	for (size_t k = 0; k < n; k++) {
		unsigned d = (unsigned)(s[k] - '0');
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}
