/* Tests for the exec provider (stages/provider_exec.c) and the common
 * provider interface: real commands on a real libevent loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/clock.h"
#include "stages/command.h"
#include "stages/process.h"
#include "stages/provider.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/provider_test.h"

static int group_setup(void **state)
{
	(void)state;
	base = event_base_new();
	return base && process_init(base) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	process_shutdown();
	event_base_free(base);
	return 0;
}

static struct provider *make(const char *json)
{
	return provider_test_make(json_loads(json, 0, NULL));
}

/* Runs one action to its end; the callback must not come from within start. */
static void run(struct provider *p, const struct provider_action *a, struct outcome *o)
{
	provider_test_run(p, a, o, 10);
}

static void test_action_variables_reach_the_command_environment(void **state)
{
	struct provider *p = make("{\"type\": \"exec\", \"actions\": {\"set_weight\": {\"sh\": "
				  "\"echo $SLUICE_ACTION w=$SLUICE_WEIGHT c=$SLUICE_COLOR "
				  "i=$SLUICE_IMAGE t=$TARGET\"}}}");
	json_t *env = json_pack("{s:s}", "TARGET", "prod");
	struct provider_action a = {.verb = PROVIDER_SET_WEIGHT,
				    .image = "reg/app:1.2",
				    .weight = 20,
				    .color = "green",
				    .env = env};
	struct outcome o;
	(void)state;

	run(p, &a, &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "set_weight done: set_weight w=20 c=green i=reg/app:1.2 t=prod");
	json_decref(env);
	provider_free(p);
}

/* Of the worker's own environment, a provider's command sees what a hook
 * does (PATH, HOME, LANG): not the credentials or sockets it runs with. */
static void test_a_command_sees_only_path_home_and_lang_of_the_worker(void **state)
{
	struct provider *p = make("{\"type\": \"exec\", \"actions\": {\"verify\": {\"sh\": "
				  "\"echo ${AWS_SECRET_ACCESS_KEY-none} ${NOTIFY_SOCKET-none} "
				  "${HOME:+home} ${PATH:+path} $SLUICE_ACTION\"}}}");
	struct provider_action a = {.verb = PROVIDER_VERIFY, .image = "img", .weight = -1};
	struct outcome o;
	(void)state;

	setenv("AWS_SECRET_ACCESS_KEY", "xyz", 1);
	setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
	if (!getenv("HOME"))
		setenv("HOME", "/root", 1);
	run(p, &a, &o);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("NOTIFY_SOCKET");
	assert_true(o.ok);
	assert_string_equal(o.msg, "verify done: none none home path verify");
	provider_free(p);
}

/* A RollingUpdate's apply has its bounds, in the environment and in run:
 * arguments; any other action has no such variable at all. */
static void test_a_rolling_apply_has_its_bounds_as_variables(void **state)
{
	struct provider *p =
	    make("{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"sh\", \"-c\", "
		 "\"echo $0 surge=$SLUICE_MAX_SURGE unavailable=$SLUICE_MAX_UNAVAILABLE\", "
		 "\"${SLUICE_MAX_SURGE}/${SLUICE_MAX_UNAVAILABLE}\"]}, \"verify\": {\"sh\": "
		 "\"echo ${SLUICE_MAX_SURGE-unset} ${SLUICE_MAX_UNAVAILABLE-unset}\"}}}");
	struct provider_action a = {.verb = PROVIDER_APPLY,
				    .image = "img",
				    .weight = -1,
				    .max_surge = "1",
				    .max_unavailable = "25%"};
	struct outcome o;
	(void)state;

	run(p, &a, &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "apply done: 1/25% surge=1 unavailable=25%");
	a.verb = PROVIDER_VERIFY;
	a.max_surge = a.max_unavailable = NULL;
	run(p, &a, &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "verify done: unset unset");
	provider_free(p);
}

static void test_run_arguments_expand_action_variables(void **state)
{
	struct provider *p =
	    make("{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"printf\", "
		 "\"%s|%s\\\\n\", \"${SLUICE_IMAGE}\", \"a b;c\"]}}}");
	struct provider_action a = {.verb = PROVIDER_APPLY, .image = "reg/app:$(id)", .weight = -1};
	struct outcome o;
	(void)state;

	run(p, &a, &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "apply done: reg/app:$(id)|a b;c");
	provider_free(p);
}

static void test_nonzero_exit_fails_with_last_line(void **state)
{
	struct provider *p = make("{\"type\": \"exec\", \"actions\": {\"verify\": {\"sh\": "
				  "\"echo checking; echo 'pods not ready' >&2; exit 3\"}}}");
	struct provider_action a = {.verb = PROVIDER_VERIFY, .weight = -1};
	struct outcome o;
	(void)state;

	run(p, &a, &o);
	assert_false(o.ok);
	assert_string_equal(o.msg, "verify failed with exit code 3: pods not ready");
	provider_free(p);
}

/* The message goes into JSON (the step's, the stage's error): it is UTF-8
 * whatever the command wrote, and a long line is cut between characters. */
static void test_last_line_of_any_bytes_is_kept_as_utf8(void **state)
{
	struct provider *p =
	    make("{\"type\": \"exec\", \"actions\": {\"verify\": {\"sh\": \"printf 'bad \\\\377 "
		 "byte\\\\n'; exit 3\"}, \"promote\": {\"sh\": \"printf '\\u00e9%.0s' $(seq 300); "
		 "exit 1\"}}}");
	struct provider_action a = {.verb = PROVIDER_VERIFY, .weight = -1};
	struct outcome o;
	json_t *text;
	(void)state;

	run(p, &a, &o);
	assert_string_equal(o.msg, "verify failed with exit code 3: bad \xef\xbf\xbd byte");
	a.verb = PROVIDER_PROMOTE;
	run(p, &a, &o);
	text = json_string(o.msg);
	assert_non_null(text);
	json_decref(text);
	assert_int_equal(strlen(o.msg), strlen("promote failed with exit code 1: ") +
					    (COMMAND_LAST_LINE_MAX - 1) / 2 * 2);
	provider_free(p);
}

static void test_command_past_its_timeout_fails(void **state)
{
	struct provider *p = make("{\"type\": \"exec\", \"timeout_ms\": 200, \"actions\": "
				  "{\"verify\": {\"run\": [\"sleep\", \"5\"]}}}");
	struct provider_action a = {.verb = PROVIDER_VERIFY, .weight = -1};
	struct outcome o;
	int64_t t0 = clock_mono_ms();
	(void)state;

	run(p, &a, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "verify timed out after"));
	assert_true(clock_mono_ms() - t0 < 3000);
	provider_free(p);
}

static void test_missing_program_fails(void **state)
{
	struct provider *p = make("{\"type\": \"exec\", \"actions\": {\"abort\": {\"run\": "
				  "[\"/nonexistent/rollback\"]}}}");
	struct provider_action a = {.verb = PROVIDER_ABORT, .weight = 0};
	struct outcome o;
	(void)state;

	run(p, &a, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "abort"));
	provider_free(p);
}

static void test_only_configured_actions_are_supported(void **state)
{
	struct provider *p =
	    make("{\"type\": \"exec\", \"actions\": {\"apply\": {\"sh\": \"true\"}}}");
	struct provider_action a = {.verb = PROVIDER_SWITCH, .weight = -1, .color = "blue"};
	struct outcome o = {0};
	char err[256];
	(void)state;

	assert_true(provider_supports(p, PROVIDER_APPLY));
	assert_false(provider_supports(p, PROVIDER_SWITCH));
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "the exec provider cannot switch");
	provider_free(p);
}

static void test_second_action_while_busy_is_refused_and_cancel_is_silent(void **state)
{
	struct provider *p =
	    make("{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"sleep\", \"5\"]}}}");
	struct provider_action a = {.verb = PROVIDER_APPLY, .image = "img", .weight = -1};
	struct outcome o = {0};
	char err[256];
	struct timeval wait = {0, 300000};
	(void)state;

	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), 0);
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "the exec provider is still busy with another action");
	provider_cancel(p);
	/* The child is stopped and reaped without a callback. */
	for (int i = 0; i < 20 && process_running() > 0; i++) {
		event_base_loopexit(base, &wait);
		event_base_dispatch(base);
	}
	assert_int_equal(process_running(), 0);
	assert_int_equal(o.calls, 0);
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), 0);
	provider_free(p);
	for (int i = 0; i < 20 && process_running() > 0; i++) {
		event_base_loopexit(base, &wait);
		event_base_dispatch(base);
	}
	assert_int_equal(process_running(), 0);
	assert_int_equal(o.calls, 0);
}

static void expect_error(const char *json, const char *want)
{
	char err[256] = "";
	json_t *def = json_loads(json, 0, NULL);

	assert_non_null(def);
	assert_null(provider_new(base, def, err, sizeof(err)));
	assert_string_equal(err, want);
	json_decref(def);
}

static void test_bad_definitions_are_refused_with_the_key(void **state)
{
	(void)state;
	expect_error("{}", "provider.type: required (exec, http, haproxy or kubernetes)");
	expect_error("{\"type\": \"ssh\"}",
		     "provider.type: unknown provider \"ssh\" (exec, http, haproxy or kubernetes)");
	expect_error("{\"type\": \"exec\"}", "provider.actions: required, a command per action");
	expect_error("{\"type\": \"exec\", \"actions\": {\"deploy\": {\"sh\": \"x\"}}}",
		     "provider.actions.deploy: not an action (apply, verify, set_weight, switch, "
		     "promote, abort, scale_down)");
	expect_error("{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"a\", 1]}}}",
		     "provider.actions.apply.run[1]: not a string");
	expect_error("{\"type\": \"exec\", \"actions\": {\"apply\": {}}}",
		     "provider.actions.apply: needs one of run (a list) or sh (a script)");
	/* It would do nothing, and the action pass. */
	expect_error("{\"type\": \"exec\", \"actions\": {\"apply\": {\"sh\": \"\"}}}",
		     "provider.actions.apply.sh: must not be empty");
	/* No program has an empty name: the action would always fail. */
	expect_error("{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"\", \"a\"]}}}",
		     "provider.actions.apply.run[0]: must not be empty");
	/* A misspelt key would otherwise be ignored, the action run without it. */
	expect_error("{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"a\"], "
		     "\"tiemout\": 5}}}",
		     "provider.actions.apply.tiemout: unknown key (run, sh)");
	expect_error("{\"type\": \"exec\", \"timeout_ms\": -1, \"actions\": {\"apply\": {\"sh\": "
		     "\"x\"}}}",
		     "provider.timeout_ms: a positive number of milliseconds, at most 86400000");
}

static void test_undefined_variable_in_arguments_is_an_error(void **state)
{
	struct provider *p = make(
	    "{\"type\": \"exec\", \"actions\": {\"apply\": {\"run\": [\"echo\", \"${NOPE}\"]}}}");
	struct provider_action a = {.verb = PROVIDER_APPLY, .image = "img", .weight = -1};
	struct outcome o = {0};
	char err[256] = "";
	(void)state;

	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "provider.actions.apply.run[1]:"));
	assert_non_null(strstr(err, "NOPE"));
	provider_free(p);
}

static void test_verb_names_round_trip(void **state)
{
	(void)state;
	for (int v = 0; v < PROVIDER_NVERBS; v++)
		assert_int_equal(provider_verb_parse(provider_verb_name(v)), v);
	assert_int_equal(provider_verb_parse("deploy"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_action_variables_reach_the_command_environment),
	    cmocka_unit_test(test_a_command_sees_only_path_home_and_lang_of_the_worker),
	    cmocka_unit_test(test_a_rolling_apply_has_its_bounds_as_variables),
	    cmocka_unit_test(test_run_arguments_expand_action_variables),
	    cmocka_unit_test(test_nonzero_exit_fails_with_last_line),
	    cmocka_unit_test(test_last_line_of_any_bytes_is_kept_as_utf8),
	    cmocka_unit_test(test_command_past_its_timeout_fails),
	    cmocka_unit_test(test_missing_program_fails),
	    cmocka_unit_test(test_only_configured_actions_are_supported),
	    cmocka_unit_test(test_second_action_while_busy_is_refused_and_cancel_is_silent),
	    cmocka_unit_test(test_bad_definitions_are_refused_with_the_key),
	    cmocka_unit_test(test_undefined_variable_in_arguments_is_an_error),
	    cmocka_unit_test(test_verb_names_round_trip),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
