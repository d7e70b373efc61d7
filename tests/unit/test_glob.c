/* Branch and tag globs as GitHub Actions writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "lib/glob.h"

static void literal_matches_only_itself(void **state)
{
	(void)state;
	assert_true(glob_match("main", "main"));
	assert_false(glob_match("main", "main2"));
	assert_false(glob_match("main", "mai"));
	assert_false(glob_match("main", ""));
}

static void star_stops_at_slash(void **state)
{
	(void)state;
	assert_true(glob_match("release/*", "release/1.0"));
	assert_false(glob_match("release/*", "release/1.0/hotfix"));
	assert_true(glob_match("*", "feature"));
	assert_false(glob_match("*", "feature/x"));
	assert_true(glob_match("v*", "v1.2.3"));
	assert_true(glob_match("*-rc", "1.0-rc"));
}

static void double_star_crosses_slashes(void **state)
{
	(void)state;
	assert_true(glob_match("**", "a/b/c"));
	assert_true(glob_match("**", ""));
	assert_true(glob_match("release/**", "release/1.0/hotfix"));
	assert_true(glob_match("**/fix", "a/b/fix"));
	assert_false(glob_match("**/fix", "a/b/fixed"));
	assert_true(glob_match("a/**/z", "a/b/c/z"));
}

static void question_mark_is_one_character(void **state)
{
	(void)state;
	assert_true(glob_match("v?", "v1"));
	assert_false(glob_match("v?", "v12"));
	assert_false(glob_match("a?b", "a/b"));
}

static void shell_metacharacters_are_plain_text(void **state)
{
	(void)state;
	assert_true(glob_match("$(touch pwned)", "$(touch pwned)"));
	assert_true(glob_match("**", "$(touch pwned)"));
	assert_false(glob_match("$(touch pwned)", "$(touch pwned2)"));
}

static void many_stars_stay_fast(void **state)
{
	(void)state;
	char text[4096];
	memset(text, 'a', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	assert_false(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*b", text));
	assert_false(glob_match("**a**a**a**a**a**a**a**a**b", text));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(literal_matches_only_itself),
	    cmocka_unit_test(star_stops_at_slash),
	    cmocka_unit_test(double_star_crosses_slashes),
	    cmocka_unit_test(question_mark_is_one_character),
	    cmocka_unit_test(shell_metacharacters_are_plain_text),
	    cmocka_unit_test(many_stars_stay_fast),
	};
	return cmocka_run_group_tests_name("glob", tests, NULL, NULL);
}
