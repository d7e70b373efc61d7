/* Tests for stages/gitreason: the line that says why git failed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "stages/gitreason.h"

static void feed(struct gitreason *g, const char *const *lines)
{
	gitreason_reset(g);
	for (; *lines; lines++)
		gitreason_line(g, *lines, strlen(*lines));
}

static void test_the_first_fatal_line_is_kept_over_what_follows(void **state)
{
	(void)state;
	const char *const lines[] = {"fatal: '/x' does not appear to be a git repository",
				     "fatal: Could not read from remote repository.",
				     "",
				     "Please make sure you have the correct access rights",
				     "and the repository exists.",
				     NULL};
	struct gitreason g;
	feed(&g, lines);
	assert_string_equal(g.text, "fatal: '/x' does not appear to be a git repository");
}

static void test_an_error_line_counts_and_warnings_before_it_do_not(void **state)
{
	(void)state;
	const char *const lines[] = {"warning: redirecting to https://example/x.git/",
				     "error: unable to write file big.txt", "fatal: later", NULL};
	struct gitreason g;
	feed(&g, lines);
	assert_string_equal(g.text, "error: unable to write file big.txt");
}

static void test_without_a_reason_the_last_line_is_kept(void **state)
{
	(void)state;
	const char *const lines[] = {"first", "second", "", NULL};
	struct gitreason g;
	feed(&g, lines);
	assert_string_equal(g.text, "second");
}

static void test_a_reset_forgets_and_a_long_line_is_cut(void **state)
{
	(void)state;
	struct gitreason g;
	const char *const first[] = {"fatal: one", NULL};
	feed(&g, first);
	char long_line[1000];
	memset(long_line, 'x', sizeof(long_line));
	memcpy(long_line, "fatal: ", 7);
	gitreason_reset(&g);
	assert_string_equal(g.text, "");
	gitreason_line(&g, long_line, sizeof(long_line));
	assert_int_equal(strlen(g.text), sizeof(g.text) - 1);
	assert_memory_equal(g.text, long_line, sizeof(g.text) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_first_fatal_line_is_kept_over_what_follows),
	    cmocka_unit_test(test_an_error_line_counts_and_warnings_before_it_do_not),
	    cmocka_unit_test(test_without_a_reason_the_last_line_is_kept),
	    cmocka_unit_test(test_a_reset_forgets_and_a_long_line_is_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
