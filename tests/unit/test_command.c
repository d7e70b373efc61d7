/* The argv and environment of run: and sh: commands, and string vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
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
	json_t *none = json_object();
	assert_null(command_argv(cmd, none, err, sizeof(err)));
	json_decref(none);
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

/* The value of NAME in env, or NULL. */
static const char *env_get(char **env, const char *name)
{
	size_t n = strlen(name);
	for (; *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

static void env_takes_only_the_inherited_names_with_vars_over_them(void **state)
{
	(void)state;
	static const char *const inherit[] = {"PATH", "HOME", NULL};
	json_t *vars =
	    json_pack("{s:s,s:s,s:i}", "HOME", "/srv/app", "SLUICE_WEIGHT", "20", "N", 1);
	setenv("PATH", "/usr/bin:/bin", 1);
	setenv("SLUICE_TEST_OTHER", "leaks", 1);
	char **env = command_env(vars, inherit);
	assert_non_null(env);
	assert_string_equal(env_get(env, "PATH"), "/usr/bin:/bin");
	assert_string_equal(env_get(env, "HOME"), "/srv/app");
	assert_string_equal(env_get(env, "SLUICE_WEIGHT"), "20");
	assert_null(env_get(env, "SLUICE_TEST_OTHER"));
	assert_null(env_get(env, "N"));
	size_t count = 0;
	for (char **e = env; *e; e++)
		count += strncmp(*e, "HOME=", 5) == 0;
	assert_int_equal(count, 1);
	strv_free(env);
	json_decref(vars);
	unsetenv("SLUICE_TEST_OTHER");
}

static void env_without_a_list_takes_the_whole_environment(void **state)
{
	(void)state;
	json_t *vars = json_pack("{s:s}", "SLUICE_TEST_OTHER", "set by vars");
	setenv("SLUICE_TEST_OTHER", "from the worker", 1);
	setenv("SLUICE_TEST_KEPT", "kept", 1);
	char **env = command_env(vars, NULL);
	assert_non_null(env);
	assert_string_equal(env_get(env, "SLUICE_TEST_KEPT"), "kept");
	assert_string_equal(env_get(env, "SLUICE_TEST_OTHER"), "set by vars");
	size_t count = 0;
	for (char **e = env; *e; e++)
		count += strncmp(*e, "SLUICE_TEST_OTHER=", 18) == 0;
	assert_int_equal(count, 1);
	strv_free(env);
	json_decref(vars);
	unsetenv("SLUICE_TEST_OTHER");
	unsetenv("SLUICE_TEST_KEPT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(run_list_expands_each_argument_without_splitting),
	    cmocka_unit_test(sh_script_runs_under_sh_e_as_written),
	    cmocka_unit_test(undefined_variable_names_the_argument),
	    cmocka_unit_test(no_command_gives_an_empty_argv),
	    cmocka_unit_test(strv_keeps_the_array_terminated_and_pairs_names),
	    cmocka_unit_test(env_takes_only_the_inherited_names_with_vars_over_them),
	    cmocka_unit_test(env_without_a_list_takes_the_whole_environment),
	};
	return cmocka_run_group_tests_name("command", tests, NULL, NULL);
}
