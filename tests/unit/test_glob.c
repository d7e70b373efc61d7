/* Branch and tag globs as GitHub Actions writes them, alone and in lists. */
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

static void in_a_list_the_last_pattern_that_matches_decides(void **state)
{
	(void)state;
	/* As GitHub Actions reads branches: and tags:; the lists as JSON. */
	static const struct {
		const char *globs, *text;
		int match;
	} cases[] = {
	    {"[\"**\", \"!dependabot/**\"]", "main", 1},
	    {"[\"**\", \"!dependabot/**\"]", "dependabot/npm/x", 0},
	    {"[\"v*\", \"!v*-rc*\"]", "v1.0", 1},
	    {"[\"v*\", \"!v*-rc*\"]", "v1.0-rc1", 0},
	    {"[\"release/**\", \"!release/**-alpha\", \"release/1-alpha\"]", "release/1-alpha", 1},
	    {"[\"!dependabot/**\", \"main\"]", "dev", 0},
	    {"[]", "main", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *list = json_loads(cases[i].globs, 0, NULL);
		assert_non_null(list);
		if (glob_list_match(list, cases[i].text) != cases[i].match)
			fail_msg("%s and %s: not %d", cases[i].globs, cases[i].text,
				 cases[i].match);
		json_decref(list);
	}
}

static void a_list_of_exclusions_only_includes_nothing(void **state)
{
	(void)state;
	json_t *only_not = json_loads("[\"!main\", \"!dev\"]", 0, NULL);
	json_t *mixed = json_loads("[\"!main\", \"**\"]", 0, NULL);
	assert_false(glob_list_includes(only_not));
	assert_true(glob_list_includes(mixed));
	assert_false(glob_list_match(only_not, "feature"));
	json_decref(only_not);
	json_decref(mixed);
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
	    cmocka_unit_test(in_a_list_the_last_pattern_that_matches_decides),
	    cmocka_unit_test(a_list_of_exclusions_only_includes_nothing),
	};
	return cmocka_run_group_tests_name("glob", tests, NULL, NULL);
}
