/*
 * json.h — JSON text for names that may hold any bytes (SPEC §5: "every
 * JSON file is valid JSON whatever bytes names and paths hold").
 *
 * File names, lease and proposal names, process names and paths are bytes,
 * not text: they need not be UTF-8. cJSON prints a string's bytes as they
 * are, so a name holding 0xff made invalid JSON. The convention here is
 * Python's "surrogateescape" (PEP 383): each byte of a string that is not
 * part of a valid UTF-8 sequence is written as the escape \udcXX (XX its
 * value, 80-ff), a lone low surrogate. The text is then pure JSON (ASCII
 * escapes; valid UTF-8 is kept as it is), Python's json module reads the
 * name back exactly (os.fsencode(name) gives the bytes), and jq shows the
 * byte as U+FFFD. A valid UTF-8 name is unchanged: nothing else is
 * escaped.
 *
 * Invariants.
 *  J1 json_print's output is valid UTF-8 whatever bytes the strings of o
 *     hold (bytes >= 0x80 appear only inside strings in cJSON's output, so
 *     rewriting them there cannot touch the syntax).
 *  J3 A whole number of 15 or more digits (up to 2^53: exact in a double)
 *     prints as its digits, never in exponent form (an id read back and
 *     printed again must still grep as itself).
 *  J2 json_parse(json_print(o)) holds the same bytes as o: \udcXX escapes
 *     (XX >= 80) become the byte again before cJSON reads the text (cJSON
 *     itself refuses a lone surrogate).
 */
#ifndef TXD_JSON_H
#define TXD_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* n bytes of s are valid UTF-8 (RFC 3629; JSON texts are, RFC 8259). */
bool json_utf8_valid(const char *s, size_t n);
/* cJSON_Print (formatted) or cJSON_PrintUnformatted, then J1. malloc'd
 * (free()), NULL on ENOMEM. */
char *json_print(const cJSON *o, bool formatted);
/* J2: cJSON_ParseWithLength of text after the escapes became bytes again.
 * NULL if not JSON (or ENOMEM). */
cJSON *json_parse(const char *text, size_t len);
/* The same for a NUL-terminated text. */
cJSON *json_parse_str(const char *text);

#endif
