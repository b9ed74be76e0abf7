/*
 * json.c — JSON text for names of any bytes (json.h).
 */
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f; /* U+D800-DFFF are not characters */
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t k = 2; k < len; k++)
		if (s[k] < 0x80 || s[k] > 0xbf)
			return 0;
	return len;
}

/* A whole number cJSON would print in exponent form (1.79667878396348e+15
 * for an id read back from our own JSON): |v| >= 1e15 and exact in a
 * double. */
static bool big_int(const cJSON *n)
{
	double v = n->valuedouble;
	return cJSON_IsNumber(n) && (v >= 1e15 || v <= -1e15) && v <= 9007199254740992.0 &&
	       v >= -9007199254740992.0 && v == (double)(long long)v;
}

/* Whether o itself, or anything inside it, is a big int: not o's
 * siblings (o may be one element of a long array: records R11). */
static bool has_big_int(const cJSON *o)
{
	if (big_int(o))
		return true;
	for (const cJSON *c = o->child; c; c = c->next)
		if (has_big_int(c))
			return true;
	return false;
}

/* Big whole numbers as raw digits (J3). */
static void ints_raw(cJSON *o)
{
	for (cJSON *c = o; c; c = c->next) {
		if (c->child)
			ints_raw(c->child);
		if (!big_int(c))
			continue;
		char buf[32];
		snprintf(buf, sizeof(buf), "%lld", (long long)c->valuedouble);
		char *d = strdup(buf);
		if (!d)
			continue;
		c->type = cJSON_Raw | (c->type & cJSON_StringIsConst);
		c->valuestring = d;
	}
}

bool json_utf8_valid(const char *s, size_t n)
{
	for (size_t k = 0; k < n;) {
		size_t l = utf8_len((const unsigned char *)s + k, n - k);
		if (!l)
			return false;
		k += l;
	}
	return true;
}

char *json_print(const cJSON *o, bool formatted)
{
	cJSON *dup = o && has_big_int(o) ? cJSON_Duplicate(o, true) : NULL;
	if (dup) {
		ints_raw(dup);
		o = dup;
	}
	char *t = formatted ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
	cJSON_Delete(dup);
	size_t bad = 0, n;

	if (!t)
		return NULL;
	n = strlen(t);
	for (size_t k = 0; k < n;) {
		size_t l = utf8_len((const unsigned char *)t + k, n - k);
		bad += !l;
		k += l ? l : 1;
	}
	if (!bad)
		return t;
	char *out = malloc(n + 5 * bad + 1), *w = out;
	if (!out) {
		free(t);
		return NULL;
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t k = 0; k < n;) {
		const unsigned char *s = (const unsigned char *)t + k;
		size_t l = utf8_len(s, n - k);
		if (l) {
			memcpy(w, s, l);
			w += l;
			k += l;
			continue;
		}
		memcpy(w, "\\udc", 4);
		w[4] = hex[*s >> 4];
		w[5] = hex[*s & 15];
		w += 6;
		k++;
	}
	*w = '\0';
	free(t);
	return out;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

cJSON *json_parse(const char *text, size_t len)
{
	/* only strings hold backslashes; outside them a backslash is not
	 * JSON anyway, and cJSON refuses it either way */
	if (!text || !memchr(text, '\\', len))
		return text ? cJSON_ParseWithLength(text, len) : NULL;
	char *b = malloc(len ? len : 1);
	size_t w = 0;
	if (!b)
		return NULL;
	for (size_t k = 0; k < len;) {
		if (text[k] != '\\' || k + 1 >= len) {
			b[w++] = text[k++];
			continue;
		}
		int h1, h2;
		if (text[k + 1] == 'u' && k + 11 < len && (text[k + 2] | 32) == 'd' &&
		    (h1 = hexval(text[k + 3])) >= 8 && h1 <= 11 && text[k + 6] == '\\' &&
		    text[k + 7] == 'u') {
			/* a high surrogate and what follows it: a pair, as written */
			memcpy(b + w, text + k, 12);
			w += 12;
			k += 12;
			continue;
		}
		if (text[k + 1] == 'u' && k + 5 < len && (text[k + 2] | 32) == 'd' &&
		    (text[k + 3] | 32) == 'c' && (h1 = hexval(text[k + 4])) >= 8 &&
		    (h2 = hexval(text[k + 5])) >= 0) {
			b[w++] = (char)(h1 << 4 | h2); /* J2: the byte again */
			k += 6;
			continue;
		}
		b[w++] = text[k++]; /* another escape: both characters as they are */
		b[w++] = text[k++];
	}
	cJSON *o = cJSON_ParseWithLength(b, w);
	free(b);
	return o;
}

cJSON *json_parse_str(const char *text)
{
	return text ? json_parse(text, strlen(text)) : NULL;
}
