/*
 * test_json.c — json.h: JSON text for names of any bytes (J1, J2).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* Is s valid UTF-8 (RFC 3629)? Written apart from json.c's own check. */
static bool valid_utf8(const unsigned char *s)
{
	while (*s) {
		int n = *s < 0x80 ? 0 : (*s & 0xe0) == 0xc0 ? 1 : (*s & 0xf0) == 0xe0 ? 2
					: (*s & 0xf8) == 0xf0 ? 3 : -1;
		uint32_t cp = n == 0 ? *s : n == 1 ? *s & 0x1f : n == 2 ? *s & 0x0f : *s & 0x07;
		if (n < 0 || (n == 1 && *s < 0xc2))
			return false;
		s++;
		for (int k = 0; k < n; k++, s++) {
			if ((*s & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*s & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

TestSuite(json, .timeout = 30);

static char *round_trip(const char *name, char **text)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, name, name); /* as key and as value */
	*text = json_print(o, false);
	cJSON_Delete(o);
	cr_assert_not_null(*text);
	cJSON *back = json_parse_str(*text);
	cr_assert_not_null(back, "not JSON: %s", *text);
	cr_assert_str_eq(back->child->string, name, "the key's bytes");
	char *v = strdup(cJSON_GetStringValue(back->child));
	cJSON_Delete(back);
	return v;
}

Test(json, J1_J2_any_bytes_print_as_valid_utf8_and_read_back)
{
	static const char *const names[] = {
		"plain",	   "caf\xc3\xa9",	"a\xff",	"\x80\x81\xfe",
		"\xc3",		   "\xe2\x82",		"\xed\xa0\x80" /* a surrogate in UTF-8 */,
		"\xc0\xaf" /* overlong */, "q\"x\\y",	 "\xf0\x9f\x90\x80 rat",
		"\xf4\x90\x80\x80" /* above U+10FFFF */};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *text, *v = round_trip(names[i], &text);
		cr_expect(valid_utf8((const unsigned char *)text), "%zu: %s", i, text);
		cr_expect_str_eq(v, names[i], "%zu", i);
		free(v);
		free(text);
	}
}

Test(json, valid_utf8_is_printed_as_cjson_does)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "k", "caf\xc3\xa9 \xf0\x9f\x90\x80");
	char *a = json_print(o, true), *b = cJSON_Print(o);
	cr_assert_str_eq(a, b);
	free(a);
	free(b);
	cJSON_Delete(o);
}

Test(json, the_escape_of_a_byte_is_pythons_surrogateescape)
{
	cJSON *o = cJSON_CreateString("a\xff");
	char *t = json_print(o, false);
	cr_assert_str_eq(t, "\"a\\udcff\"");
	free(t);
	cJSON_Delete(o);
}

Test(json, parse_keeps_other_escapes_and_surrogate_pairs)
{
	const char *in = "{\"s\": \"\\ud83d\\udc00 \\\\udcff \\u00e9 \\n\"}";
	cJSON *o = json_parse_str(in);
	cr_assert_not_null(o);
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(o, "s")),
			 "\xf0\x9f\x90\x80 \\udcff \xc3\xa9 \n");
	cJSON_Delete(o);
	cr_assert_null(json_parse_str("{\"s\": \"\\ud800\"}"), "a lone high surrogate");
	cr_assert_null(json_parse_str("{"));
	cr_assert_null(json_parse_str(NULL));
}

Test(json, J3_big_whole_numbers_print_as_digits)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "txid", 1796678783963480.0);
	cJSON_AddNumberToObject(o, "neg", -1234567890123456.0);
	cJSON_AddNumberToObject(o, "small", 42);
	cJSON_AddNumberToObject(o, "frac", 1.5e15 + 0.5);
	cJSON *a = cJSON_AddArrayToObject(o, "in");
	cJSON_AddItemToArray(a, cJSON_CreateNumber(9007199254740992.0));
	char *t = json_print(o, false);
	cr_assert_str_eq(t, "{\"txid\":1796678783963480,\"neg\":-1234567890123456,\"small\":42,"
			    "\"frac\":1500000000000000.5,\"in\":[9007199254740992]}");
	cJSON *back = json_parse_str(t);
	cr_assert_eq(cJSON_GetObjectItem(back, "txid")->valuedouble, 1796678783963480.0);
	cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(o, "txid")), "the caller's tree is unchanged");
	cJSON_Delete(back);
	free(t);
	cJSON_Delete(o);
}
