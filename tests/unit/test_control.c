/* Tests for agent/control: the ref of a manual trigger and the reading of
 * `git ls-remote` output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "agent/control.h"

#define SHA_A "0123456789abcdef0123456789abcdef01234567"
#define SHA_B "89abcdef0123456789abcdef0123456789abcdef"

static void expect_ref(const char *in, const char *want)
{
	char out[300], why[256] = "";
	if (control_ref_normalize(in, out, sizeof(out), why, sizeof(why)) < 0)
		fail_msg("ref \"%s\" refused: %s", in, why);
	assert_string_equal(out, want);
}

static void expect_bad_ref(const char *in, const char *want)
{
	char out[300], why[256];
	assert_int_equal(control_ref_normalize(in, out, sizeof(out), why, sizeof(why)), -1);
	assert_string_equal(why, want);
}

static void test_bare_names_are_branches_and_full_refs_stay(void **state)
{
	(void)state;
	expect_ref("main", "refs/heads/main");
	expect_ref("release/1.x", "refs/heads/release/1.x");
	expect_ref("refs/heads/feature/a-b_c", "refs/heads/feature/a-b_c");
	expect_ref("refs/tags/v1.0", "refs/tags/v1.0");
}

static void test_invalid_ref_names_are_refused(void **state)
{
	(void)state;
	expect_bad_ref("a..b", "ref a..b is not a valid git ref name");
	expect_bad_ref("a b", "ref a b is not a valid git ref name");
	expect_bad_ref("$(touch x)", "ref $(touch x) is not a valid git ref name");
	expect_bad_ref("x.lock", "ref x.lock is not a valid git ref name");
	expect_bad_ref("a//b", "ref a//b is not a valid git ref name");
	expect_bad_ref("a/", "ref a/ is not a valid git ref name");
	expect_bad_ref("/a", "ref /a is not a valid git ref name");
	expect_bad_ref(".hidden", "ref .hidden is not a valid git ref name");
	expect_bad_ref("a@{1}", "ref a@{1} is not a valid git ref name");
	expect_bad_ref("end.", "ref end. is not a valid git ref name");
	expect_bad_ref("@", "ref @ is not a valid git ref name");
	expect_bad_ref("", "ref must name a branch or tag of 1 to 255 bytes");
	expect_bad_ref("refs/heads/", "ref must name a branch or tag of 1 to 255 bytes");
	expect_bad_ref("refs/pull/1/head",
		       "ref must be a branch (refs/heads/...) or a tag (refs/tags/...)");
}

static void feed(const char *line, const char *ref, char *sha, char *peeled)
{
	control_ls_remote_line(line, strlen(line), ref, sha, peeled, 65);
}

static void test_ls_remote_lines_name_the_exact_ref_and_its_peeled_commit(void **state)
{
	char sha[65] = "", peeled[65] = "";
	(void)state;
	feed(SHA_B "\trefs/heads/main-old", "refs/heads/main", sha, peeled);
	feed(SHA_B "\trefs/remotes/origin/refs/heads/main", "refs/heads/main", sha, peeled);
	assert_string_equal(sha, "");
	feed(SHA_A "\trefs/heads/main", "refs/heads/main", sha, peeled);
	assert_string_equal(sha, SHA_A);
	assert_string_equal(peeled, "");
	feed(SHA_B "\trefs/tags/v1^{}", "refs/tags/v1", sha, peeled);
	assert_string_equal(peeled, SHA_B);
	feed("not a sha\trefs/heads/main", "refs/heads/main", sha, peeled);
	feed("warning: something", "refs/heads/main", sha, peeled);
	assert_string_equal(sha, SHA_A);
}

static void test_upper_case_shas_are_stored_in_lower_case(void **state)
{
	char sha[65] = "", peeled[65] = "";
	(void)state;
	feed("0123456789ABCDEF0123456789ABCDEF01234567\trefs/heads/x", "refs/heads/x", sha, peeled);
	assert_string_equal(sha, SHA_A);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bare_names_are_branches_and_full_refs_stay),
	    cmocka_unit_test(test_invalid_ref_names_are_refused),
	    cmocka_unit_test(test_ls_remote_lines_name_the_exact_ref_and_its_peeled_commit),
	    cmocka_unit_test(test_upper_case_shas_are_stored_in_lower_case),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
