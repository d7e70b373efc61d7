/* The argv of run: and sh: commands, and string vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/strv.h"
#include "stages/command.h"

static void run_list_expands_each_argument_without_splitting(void **state)
{
	(void)state;
	json_t *cmd = json_pack("{s:[s,s,s]}", "run", "echo", "${REF}", "x-${REF}-y");
	json_t *vars = json_pack("{s:s}", "REF", "$(touch pwned) a b");
	char err[256] = "";
	char **argv = command_argv(cmd, vars, err, sizeof(err));
	assert_non_null(argv);
	assert_string_equal(argv[0], "echo");
	assert_string_equal(argv[1], "$(touch pwned) a b");
	assert_string_equal(argv[2], "x-$(touch pwned) a b-y");
	assert_null(argv[3]);
	strv_free(argv);
	json_decref(cmd);
	json_decref(vars);
}

static void sh_script_runs_under_sh_e_as_written(void **state)
{
	(void)state;
	json_t *cmd = json_pack("{s:s}", "sh", "echo \"$REF\" | tr a-z A-Z");
	char err[256] = "";
	char **argv = command_argv(cmd, NULL, err, sizeof(err));
	assert_non_null(argv);
	assert_string_equal(argv[0], "/bin/sh");
	assert_string_equal(argv[1], "-e");
	assert_string_equal(argv[2], "-c");
	assert_string_equal(argv[3], "echo \"$REF\" | tr a-z A-Z");
	assert_null(argv[4]);
	strv_free(argv);
	json_decref(cmd);
}

static void undefined_variable_names_the_argument(void **state)
{
	(void)state;
	json_t *cmd = json_pack("{s:[s,s]}", "run", "make", "${NOPE}");
	char err[256] = "";
	assert_null(command_argv(cmd, json_object(), err, sizeof(err)));
	assert_string_equal(err, "run[1]: undefined variable \"NOPE\"");
	json_decref(cmd);
}

static void no_command_gives_an_empty_argv(void **state)
{
	(void)state;
	json_t *cmd = json_object();
	char err[256] = "";
	char **argv = command_argv(cmd, NULL, err, sizeof(err));
	assert_non_null(argv);
	assert_null(argv[0]);
	strv_free(argv);
	json_decref(cmd);
}

static void strv_keeps_the_array_terminated_and_pairs_names(void **state)
{
	(void)state;
	char **v = NULL;
	size_t n = 0;
	assert_int_equal(strv_append(&v, &n, strv_pair("PATH", "/bin")), 0);
	assert_int_equal(strv_append(&v, &n, strv_pair("EMPTY", "")), 0);
	assert_int_equal(strv_append(&v, &n, NULL), -1);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], "PATH=/bin");
	assert_string_equal(v[1], "EMPTY=");
	assert_null(v[2]);
	strv_free(v);
	strv_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(run_list_expands_each_argument_without_splitting),
	    cmocka_unit_test(sh_script_runs_under_sh_e_as_written),
	    cmocka_unit_test(undefined_variable_names_the_argument),
	    cmocka_unit_test(no_command_gives_an_empty_argv),
	    cmocka_unit_test(strv_keeps_the_array_terminated_and_pairs_names),
	};
	return cmocka_run_group_tests_name("command", tests, NULL, NULL);
}
