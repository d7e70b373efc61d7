/* Tests for stages/expand: substitution is text in, text out. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "stages/expand.h"

#include <stdlib.h>
#include <string.h>

static json_t *vars;

static int setup(void **state)
{
	(void)state;
	vars = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:n, s:[]}",
			 "SLUICE_REF", "main", "push.image", "registry/app@sha256:ab", "subst",
			 "$(touch pwned)", "semi", "; rm -rf /", "star", "*", "nested",
			 "${SLUICE_REF}", "spaces", "a b  c", "newline", "line1\nline2", "quotes",
			 "'\"`\\", "replicas", (json_int_t)3, "flag", 1, "nothing", "list");
	return vars == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	json_decref(vars);
	return 0;
}

static void assert_expands(const char *tmpl, const char *want)
{
	char err[256] = "";
	char *out = NULL;
	assert_int_equal(expand_arg(tmpl, vars, &out, err, sizeof(err)), 0);
	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
}

static void assert_fails(const char *tmpl, const char *want_err)
{
	char err[256] = "";
	char *out = (char *)"untouched";
	assert_int_equal(expand_arg(tmpl, vars, &out, err, sizeof(err)), -1);
	assert_null(out);
	assert_string_equal(err, want_err);
}

static void test_plain_text_is_unchanged(void **state)
{
	(void)state;
	assert_expands("", "");
	assert_expands("make test", "make test");
}

static void test_variable_is_substituted_in_place(void **state)
{
	(void)state;
	assert_expands("${SLUICE_REF}", "main");
	assert_expands("refs/heads/${SLUICE_REF}.tar", "refs/heads/main.tar");
	assert_expands("${SLUICE_REF}-${SLUICE_REF}", "main-main");
	assert_expands("${push.image}", "registry/app@sha256:ab");
}

static void test_dollar_without_brace_is_literal(void **state)
{
	(void)state;
	assert_expands("$HOME $ $$ x$", "$HOME $ $$ x$");
	assert_expands("cost: 5$", "cost: 5$");
}

static void test_double_dollar_brace_writes_literal(void **state)
{
	(void)state;
	assert_expands("$${SLUICE_REF}", "${SLUICE_REF}");
	assert_expands("$${", "${");
	assert_expands("a$${b}${SLUICE_REF}", "a${b}main");
}

static void test_hostile_values_come_out_as_exact_text(void **state)
{
	(void)state;
	assert_expands("${subst}", "$(touch pwned)");
	assert_expands("${semi}", "; rm -rf /");
	assert_expands("${star}", "*");
	assert_expands("${spaces}", "a b  c");
	assert_expands("${newline}", "line1\nline2");
	assert_expands("${quotes}", "'\"`\\");
	assert_expands("x=${semi}&${star}", "x=; rm -rf /&*");
}

static void test_value_is_not_expanded_again(void **state)
{
	(void)state;
	assert_expands("${nested}", "${SLUICE_REF}");
}

static void test_megabyte_value_is_copied_whole(void **state)
{
	(void)state;
	size_t n = 1024 * 1024;
	char *big = malloc(n + 1);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = "ab ${}$\n"[i % 8];
	big[n] = '\0';
	assert_int_equal(json_object_set_new(vars, "big", json_string(big)), 0);

	char err[256];
	char *out = NULL;
	assert_int_equal(expand_arg("<${big}>", vars, &out, err, sizeof(err)), 0);
	assert_int_equal(strlen(out), n + 2);
	assert_int_equal(out[0], '<');
	assert_memory_equal(out + 1, big, n);
	assert_int_equal(out[n + 1], '>');
	free(out);
	free(big);
}

static void test_scalars_expand_as_written(void **state)
{
	(void)state;
	assert_expands("--replicas=${replicas}", "--replicas=3");
	assert_expands("${flag}", "true");
}

static void test_undefined_variable_is_named(void **state)
{
	(void)state;
	assert_fails("${NOPE}", "undefined variable \"NOPE\"");
	assert_fails("ok ${SLUICE_REF} ${MISSING.x}", "undefined variable \"MISSING.x\"");
}

static void test_unterminated_reference_is_an_error(void **state)
{
	(void)state;
	assert_fails("${SLUICE_REF", "unterminated \"${\"");
	assert_fails("abc ${", "unterminated \"${\"");
}

static void test_bad_name_reports_offset(void **state)
{
	(void)state;
	assert_fails("${}", "bad variable name at offset 2");
	assert_fails("ab${1x}", "bad variable name at offset 4");
	assert_fails("${a b}", "bad variable name at offset 3");
	assert_fails("${$(id)}", "bad variable name at offset 2");
}

static void test_non_scalar_and_nul_values_are_refused(void **state)
{
	(void)state;
	assert_fails("${nothing}", "variable \"nothing\" is not a string");
	assert_fails("${list}", "variable \"list\" is not a string");
	assert_int_equal(json_object_set_new(vars, "nul", json_stringn("a\0b", 3)), 0);
	assert_fails("${nul}", "variable \"nul\" contains a NUL byte");
}

static void test_missing_vars_object_means_nothing_defined(void **state)
{
	(void)state;
	char err[256];
	char *out = NULL;
	assert_int_equal(expand_arg("plain", NULL, &out, err, sizeof(err)), 0);
	assert_string_equal(out, "plain");
	free(out);
	assert_int_equal(expand_arg("${X}", NULL, &out, err, sizeof(err)), -1);
	assert_string_equal(err, "undefined variable \"X\"");
}

static void assert_expands_as(enum expand_mode mode, const char *tmpl, const char *want)
{
	char err[256] = "";
	char *out = NULL;
	assert_int_equal(expand_text(tmpl, vars, mode, &out, err, sizeof(err)), 0);
	assert_string_equal(out, want);
	free(out);
}

static void test_json_mode_escapes_values_as_string_content(void **state)
{
	(void)state;
	assert_expands_as(EXPAND_JSON, "{\"q\": \"${quotes}\", \"n\": \"${newline}\"}",
			  "{\"q\": \"'\\\"`\\\\\", \"n\": \"line1\\nline2\"}");
	/* The template's own text is not touched, only the values. */
	assert_expands_as(EXPAND_JSON, "{\"r\": ${replicas}}", "{\"r\": 3}");
}

static void test_url_mode_encodes_values_in_path_and_query(void **state)
{
	(void)state;
	assert_expands_as(EXPAND_URL, "https://h/deploy/${semi}?ref=${spaces}",
			  "https://h/deploy/%3B%20rm%20-rf%20%2F?ref=a%20b%20%20c");
	/* Before the first '/' of the template (after "scheme://") a value is
	 * a base URL or a host, and stays as it is. */
	assert_expands_as(EXPAND_URL, "${push.image}/v1/${SLUICE_REF}",
			  "registry/app@sha256:ab/v1/main");
	assert_expands_as(EXPAND_URL, "https://${SLUICE_REF}.example/${push.image}",
			  "https://main.example/registry%2Fapp%40sha256%3Aab");
}

/* Defines every name starting with "OK", and lists every name asked for. */
static int ok_names(const char *name, void *arg)
{
	char *asked = arg;
	strcat(asked, name);
	strcat(asked, ",");
	return strncmp(name, "OK", 2) == 0;
}

static void test_check_finds_what_expanding_would(void **state)
{
	(void)state;
	char err[256] = "", asked[256] = "";
	assert_int_equal(
	    expand_check("a ${OK1} $${NOT} $X ${OK.2}", ok_names, asked, err, sizeof(err)), 0);
	assert_string_equal(asked, "OK1,OK.2,");
	asked[0] = '\0';
	assert_int_equal(expand_check("${OK} ${NO} ${OK3}", ok_names, asked, err, sizeof(err)), -1);
	assert_string_equal(err, "undefined variable \"NO\"");
	assert_string_equal(asked, "OK,NO,");
	assert_int_equal(expand_check("x ${OK", ok_names, asked, err, sizeof(err)), -1);
	assert_string_equal(err, "unterminated \"${\"");
	assert_int_equal(expand_check("${${OK}}", ok_names, asked, err, sizeof(err)), -1);
	assert_string_equal(err, "bad variable name at offset 2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_text_is_unchanged),
	    cmocka_unit_test(test_variable_is_substituted_in_place),
	    cmocka_unit_test(test_dollar_without_brace_is_literal),
	    cmocka_unit_test(test_double_dollar_brace_writes_literal),
	    cmocka_unit_test(test_hostile_values_come_out_as_exact_text),
	    cmocka_unit_test(test_value_is_not_expanded_again),
	    cmocka_unit_test(test_megabyte_value_is_copied_whole),
	    cmocka_unit_test(test_scalars_expand_as_written),
	    cmocka_unit_test(test_undefined_variable_is_named),
	    cmocka_unit_test(test_unterminated_reference_is_an_error),
	    cmocka_unit_test(test_bad_name_reports_offset),
	    cmocka_unit_test(test_non_scalar_and_nul_values_are_refused),
	    cmocka_unit_test(test_missing_vars_object_means_nothing_defined),
	    cmocka_unit_test(test_json_mode_escapes_values_as_string_content),
	    cmocka_unit_test(test_url_mode_encodes_values_in_path_and_query),
	    cmocka_unit_test(test_check_finds_what_expanding_would),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
