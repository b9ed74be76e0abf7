/*
 * util.h — small helpers shared by engine modules.
 */
#ifndef TXD_UTIL_H
#define TXD_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Make room for need elements of size elem in *arr (capacity *cap, grown by
 * doubling from 8). 0 or -ENOMEM; *arr and *cap are unchanged on failure. */
int array_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem);

#endif
