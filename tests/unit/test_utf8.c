/* Tests for lib/utf8: what counts as UTF-8, and text repaired to be it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lib/utf8.h"

#define FFFD "\xef\xbf\xbd"

/* What utf8_repair makes of in (len bytes): the text to use. utf8_valid
 * says whether it is left as it is. */
static char *repaired(const char *in, size_t len, int want_rc)
{
	char *out = NULL;
	size_t outlen = 0;
	assert_int_equal(utf8_valid(in, len), want_rc == 0);
	assert_int_equal(utf8_repair(in, len, &out, &outlen), want_rc);
	if (want_rc == 0) {
		assert_null(out);
		assert_int_equal(outlen, len);
		return strndup(in, len);
	}
	assert_non_null(out);
	assert_int_equal(strlen(out), outlen);
	return out;
}

static void test_utf8_text_is_left_as_it_is(void **state)
{
	(void)state;
	const char *ok[] = {"",
			    "plain ascii",
			    "caf\xc3\xa9",
			    "\xe2\x82\xac 5",
			    "\xf0\x9f\x9a\x80",
			    "\x1b[31mred\x1b[0m\ttab"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *out = repaired(ok[i], strlen(ok[i]), 0);
		assert_string_equal(out, ok[i]);
		free(out);
	}
}

static void test_each_bad_byte_becomes_a_replacement_character(void **state)
{
	(void)state;
	const struct {
		const char *in, *want;
	} cases[] = {
	    {"latin1 caf\xe9", "latin1 caf" FFFD},
	    {"\xff\xfe", FFFD FFFD},
	    {"overlong \xc0\xaf", "overlong " FFFD FFFD},
	    {"surrogate \xed\xa0\x80", "surrogate " FFFD FFFD FFFD},
	    {"beyond \xf4\x90\x80\x80", "beyond " FFFD FFFD FFFD FFFD},
	    {"cut at the end \xe2\x82", "cut at the end " FFFD FFFD},
	    {"lone continuation \x80 byte", "lone continuation " FFFD " byte"},
	    {"\xe2\x82\xac then \xe9", "\xe2\x82\xac then " FFFD},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = repaired(cases[i].in, strlen(cases[i].in), 1);
		assert_string_equal(out, cases[i].want);
		free(out);
	}
}

static void test_a_nul_byte_becomes_a_replacement_character_and_the_rest_stays(void **state)
{
	(void)state;
	static const char in[] = "nul \0 byte";
	char *out = repaired(in, sizeof(in) - 1, 1);
	assert_string_equal(out, "nul " FFFD " byte");
	free(out);
}

static void expect_code_point(const char *text, uint32_t want)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t n = p[0] < 0x80 ? 1 : utf8_length(p, p + strlen(text));
	assert_int_equal(n, strlen(text));
	assert_int_equal(utf8_code_point(p, n), want);
}

static void test_a_copy_is_repaired_and_cut_at_a_character(void **state)
{
	char out[8];
	(void)state;
	utf8_copy(out, sizeof(out), "ok\xff", 3);
	assert_string_equal(out, "ok" FFFD);
	/* Seven bytes fit: the third euro sign, cut after its first, goes. */
	utf8_copy(out, sizeof(out), "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9);
	assert_string_equal(out, "\xe2\x82\xac\xe2\x82\xac");
	/* So does a replacement that would not fit whole. */
	utf8_copy(out, sizeof(out), "abcde\xff", 6);
	assert_string_equal(out, "abcde");
}

static void test_the_code_point_of_each_length_of_sequence(void **state)
{
	(void)state;
	expect_code_point("A", 0x41);
	expect_code_point("\xc3\xa9", 0xe9);		/* é */
	expect_code_point("\xe2\x82\xac", 0x20ac);	/* € */
	expect_code_point("\xe2\x80\xae", 0x202e);	/* RIGHT-TO-LEFT OVERRIDE */
	expect_code_point("\xf0\x9d\x84\x9e", 0x1d11e); /* 𝄞 */
	expect_code_point("\xf4\x8f\xbf\xbf", 0x10ffff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8_text_is_left_as_it_is),
	    cmocka_unit_test(test_each_bad_byte_becomes_a_replacement_character),
	    cmocka_unit_test(test_a_nul_byte_becomes_a_replacement_character_and_the_rest_stays),
	    cmocka_unit_test(test_a_copy_is_repaired_and_cut_at_a_character),
	    cmocka_unit_test(test_the_code_point_of_each_length_of_sequence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
