/* Tests for lib/jsontext: strings escaped as RFC 8259 asks, values dumped
 * compact, invalid UTF-8 and growth past the first allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lib/jsontext.h"

/* s written as a JSON string, the text taken. */
static char *string_text(const char *s)
{
	struct jsontext t = {0};
	jsontext_string(&t, s);
	return jsontext_take(&t);
}

static void written_as(const char *s, const char *want)
{
	char *got = string_text(s);
	assert_non_null(got);
	assert_string_equal(got, want);
	/* And jansson reads back what was written. */
	json_t *v = json_loads(got, JSON_DECODE_ANY, NULL);
	assert_non_null(v);
	assert_string_equal(json_string_value(v), s);
	json_decref(v);
	free(got);
}

static void escapes_what_json_requires_and_nothing_else(void **state)
{
	(void)state;
	written_as("", "\"\"");
	written_as("runs/r_1/stages/build", "\"runs/r_1/stages/build\"");
	written_as("say \"hi\"", "\"say \\\"hi\\\"\"");
	written_as("C:\\dir", "\"C:\\\\dir\"");
	written_as("a\bb\fc\nd\re\tf", "\"a\\bb\\fc\\nd\\re\\tf\"");
	written_as("\x01\x1f", "\"\\u0001\\u001f\"");
	/* DEL and non-ASCII text are valid inside a JSON string as they are. */
	written_as("\x7f", "\"\x7f\"");
	written_as("grüße 日本 😀", "\"grüße 日本 😀\"");
}

static void invalid_utf8_fails_the_whole_text(void **state)
{
	(void)state;
	/* A lone continuation byte, an overlong '/', a surrogate, a cut sequence. */
	const char *bad[] = {"a\x80z", "\xc0\xaf", "\xed\xa0\x80", "ok \xe6\x97"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct jsontext t = {0};
		jsontext_raw(&t, "{\"k\":");
		jsontext_string(&t, bad[i]);
		jsontext_raw(&t, "}");
		assert_null(jsontext_take(&t));
		assert_null(t.s);
	}
}

static void values_are_dumped_compact_and_the_text_grows(void **state)
{
	(void)state;
	json_t *big = json_array();
	for (int i = 0; i < 2000; i++)
		json_array_append_new(big, json_integer(i));
	json_t *obj = json_pack("{s:s,s:i,s:o}", "a", "x", "b", 2, "big", big);
	struct jsontext t = {0};
	jsontext_raw(&t, "{\"head\":");
	jsontext_string(&t, "h");
	jsontext_raw(&t, ",\"data\":");
	jsontext_value(&t, obj);
	jsontext_raw(&t, "}");
	char *text = jsontext_take(&t);
	assert_non_null(text);
	assert_non_null(
	    strstr(text, "{\"head\":\"h\",\"data\":{\"a\":\"x\",\"b\":2,\"big\":[0,1,2,"));
	json_t *back = json_loads(text, 0, NULL);
	assert_non_null(back);
	assert_true(json_equal(json_object_get(back, "data"), obj));
	json_decref(back);
	free(text);
	json_decref(obj);
}

static void a_value_that_cannot_be_dumped_fails(void **state)
{
	(void)state;
	struct jsontext t = {0};
	jsontext_raw(&t, "[");
	jsontext_value(&t, NULL);
	jsontext_raw(&t, "]");
	assert_null(jsontext_take(&t));
}

static void reset_keeps_the_room_and_forgets_a_failure(void **state)
{
	(void)state;
	struct jsontext t = {0};
	jsontext_string(&t, "\xff");
	assert_true(t.failed);
	jsontext_reset(&t);
	jsontext_raw(&t, "{\"a\":");
	jsontext_string(&t, "b");
	char *room = t.s;
	jsontext_reset(&t);
	assert_int_equal(t.len, 0);
	jsontext_raw(&t, "[1]");
	assert_ptr_equal(t.s, room);
	char *text = jsontext_take(&t);
	assert_string_equal(text, "[1]");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(escapes_what_json_requires_and_nothing_else),
	    cmocka_unit_test(invalid_utf8_fails_the_whole_text),
	    cmocka_unit_test(values_are_dumped_compact_and_the_text_grows),
	    cmocka_unit_test(a_value_that_cannot_be_dumped_fails),
	    cmocka_unit_test(reset_keeps_the_room_and_forgets_a_failure),
	};
	return cmocka_run_group_tests_name("jsontext", tests, NULL, NULL);
}
