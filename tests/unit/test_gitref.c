/* Tests for lib/gitref: the branch and tag names git check-ref-format
 * allows, and those it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/gitref.h"

static void test_names_git_makes_are_taken(void **state)
{
	(void)state;
	static const char *const ok[] = {"main", "release/1.x", "feature/a-b_c", "v1.0.0",
					 "é",	 "a.b",		"x@y",		 "a/b.locked"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!gitref_name_ok(ok[i]))
			fail_msg("\"%s\" refused", ok[i]);
}

static void test_names_git_refuses_are_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {"",	  "a..b", "a b", "a\nb", "a\x7f",  "a~1",   "a^",
					  "a:b",  "a?",	  "a*",	 "a[b",	 "a\\b",   "/a",    "a/",
					  "a//b", "@",	  ".a",	 "a/.b", "x.lock", "a@{1}", "end."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gitref_name_ok(bad[i]))
			fail_msg("\"%s\" taken", bad[i]);
}

static void test_a_component_or_a_name_too_long_for_a_file_is_refused(void **state)
{
	char name[GITREF_NAME_MAX + 2];
	(void)state;
	memset(name, 'a', GITREF_COMPONENT_MAX);
	name[GITREF_COMPONENT_MAX] = '\0';
	assert_true(gitref_name_ok(name));
	strcpy(name + GITREF_COMPONENT_MAX, "a");
	assert_false(gitref_name_ok(name));
	/* Components of 3 bytes and a '/': 1024 of them is 4095 bytes. */
	for (size_t i = 0; i < GITREF_NAME_MAX + 1; i++)
		name[i] = i % 4 == 3 ? '/' : 'a';
	name[GITREF_NAME_MAX - 1] = '\0';
	assert_true(gitref_name_ok(name));
	name[GITREF_NAME_MAX - 1] = 'a';
	name[GITREF_NAME_MAX] = 'a';
	name[GITREF_NAME_MAX + 1] = '\0';
	assert_false(gitref_name_ok(name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names_git_makes_are_taken),
	    cmocka_unit_test(test_names_git_refuses_are_refused),
	    cmocka_unit_test(test_a_component_or_a_name_too_long_for_a_file_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
