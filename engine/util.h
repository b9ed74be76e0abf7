/*
 * util.h — small helpers shared by engine modules.
 */
#ifndef TXD_UTIL_H
#define TXD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Make room for need elements of size elem in *arr (capacity *cap, grown by
 * doubling from 8). 0 or -ENOMEM; *arr and *cap are unchanged on failure. */
int array_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem);

/* The n bytes at s are a canonical decimal, as "%" PRIu64 prints one
 * (digits only: no sign, space or leading zero but "0" itself, no
 * overflow): true with *out. Numeric names of the control tree resolve only
 * so, as readdir lists them. */
bool dec_parse(const char *s, size_t n, uint64_t *out);

#endif
