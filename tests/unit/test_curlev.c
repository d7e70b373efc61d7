/* Tests for curlev_show_url (lib/curlev): what a message shows of a URL is
 * its scheme, host, port and path, never its query or user information,
 * and never part of a path segment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/curlev.h"

static void shows(const char *url, size_t outlen, const char *want)
{
	char out[512], err[128] = "";

	assert_true(outlen <= sizeof(out));
	assert_int_equal(curlev_show_url(url, out, outlen, err, sizeof(err)), 0);
	assert_string_equal(out, want);
}

static void test_query_and_user_are_left_out(void **state)
{
	(void)state;
	shows("https://u:pw@h.example:8443/hooks/a?token=x#f", 256,
	      "https://h.example:8443/hooks/a");
	shows("http://h.example", 256, "http://h.example/");
}

/* A secret expanded into the path is one segment (percent-encoded); cut in
 * part, its start would be shown where a log can no longer mask it. */
static void test_a_long_path_is_cut_between_segments(void **state)
{
	(void)state;
	/* "http://h/" + 20 a's is 29 bytes; the secret's segment would end
	 * past the 40 of out. */
	shows("http://h/aaaaaaaaaaaaaaaaaaaa/tok-Zx9qW3rT7yL2vB", 40,
	      "http://h/aaaaaaaaaaaaaaaaaaaa/...");
	shows("http://h/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40, "http://h/...");
	shows("http://h/aaaaaaaaaaaaaaaaaaaa/b", 40, "http://h/aaaaaaaaaaaaaaaaaaaa/b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_query_and_user_are_left_out),
	    cmocka_unit_test(test_a_long_path_is_cut_between_segments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
