/* Tests for lib/hex: encoding bytes as lowercase digits, and decoding them back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/hex.h"

static void encodes_lowercase_and_ends_with_a_nul(void **state)
{
	(void)state;
	const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
	char out[2 * sizeof(in) + 2];
	memset(out, 'x', sizeof(out));
	hex_encode(in, sizeof(in), out);
	assert_string_equal(out, "000fa5ff");
	assert_int_equal(out[2 * sizeof(in) + 1], 'x'); /* nothing past the NUL */
	hex_encode(in, 0, out);
	assert_string_equal(out, "");
}

static void every_byte_comes_back(void **state)
{
	(void)state;
	unsigned char in[256], back[256];
	char text[2 * 256 + 1];
	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)i;
	hex_encode(in, sizeof(in), text);
	assert_int_equal(strlen(text), 512);
	assert_int_equal(hex_decode(text, back, sizeof(back)), 0);
	assert_memory_equal(in, back, sizeof(in));
	/* Upper case decodes too; a short or non-hex string does not. */
	assert_int_equal(hex_decode("A5ff", back, 2), 0);
	assert_int_equal(back[0], 0xa5);
	assert_int_equal(hex_decode("a5f", back, 2), -1);
	assert_int_equal(hex_decode("a5fg", back, 2), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(encodes_lowercase_and_ends_with_a_nul),
	    cmocka_unit_test(every_byte_comes_back),
	};
	return cmocka_run_group_tests_name("hex", tests, NULL, NULL);
}
