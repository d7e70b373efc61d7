/* Tests for config/retry: the retry policy of a pipeline stage, from file to
 * verdict and back-off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/retry.h"
#include "pipeline_file.h"

#define TRIGGER "trigger:\n  github:\n    repository: acme/app\n    secret_file: webhook\n"

static int setup(void **state)
{
	*state = pipeline_file_new("sluice-test-retry", TRIGGER);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	pipeline_file_free(*state);
	return 0;
}

/* Loads "<TRIGGER><top>stages:\n  build:\n<stage>" (stage lines indented by 4). */
static int load(struct pipeline_file *f, const char *top, const char *stage)
{
	char text[4096];
	snprintf(text, sizeof(text), "%sstages:\n  build:\n    run: [make]\n%s", top, stage);
	return pipeline_file_load(f, text);
}

static const json_t *build_def(const struct pipeline_file *f)
{
	return json_object_get(json_object_get(f->p.def, "stages"), "build");
}

static void expect_error(struct pipeline_file *f, const char *stage, const char *want)
{
	assert_int_equal(load(f, "", stage), -1);
	if (!strstr(f->err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", f->err, want);
}

static void test_policy_is_normalized_into_the_stage_definition(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "",
			      "    retry: {max: 2, on_exit: [75, 3], on: [timeout, timeout], "
			      "backoff: 2s}\n"),
			 0);
	json_t *want = json_loads("{\"max\": 2, \"on_exit\": [75, 3], \"on\": [\"timeout\"],"
				  " \"backoff_ms\": 2000}",
				  0, NULL);
	assert_true(json_equal(json_object_get(build_def(f), "retry"), want));
	json_decref(want);
	assert_int_equal(retry_max_attempts(build_def(f)), RETRY_DEFAULT_MAX_ATTEMPTS);
}

static void test_policy_without_reasons_retries_every_failure(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "", "    retry: {max: 1}\n"), 0);
	const json_t *on = json_object_get(json_object_get(build_def(f), "retry"), "on");
	assert_int_equal(json_array_size(on), 2);
	assert_string_equal(json_string_value(json_array_get(on, 0)), "failed");
	assert_string_equal(json_string_value(json_array_get(on, 1)), "timeout");
	assert_int_equal(retry_decide(build_def(f), "failed", 1, 1), RETRY_AGAIN);
	assert_int_equal(retry_decide(build_def(f), "failed", -1, 1), RETRY_AGAIN);
	assert_int_equal(retry_decide(build_def(f), "timed_out", -1, 1), RETRY_AGAIN);
	assert_int_equal(json_integer_value(
			     json_object_get(json_object_get(build_def(f), "retry"), "backoff_ms")),
			 RETRY_DEFAULT_BACKOFF_MS);
}

static void test_only_listed_exit_codes_are_retried(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "", "    retry: {max: 2, on_exit: [75]}\n"), 0);
	assert_int_equal(retry_decide(build_def(f), "failed", 75, 1), RETRY_AGAIN);
	assert_int_equal(retry_decide(build_def(f), "failed", 1, 1), RETRY_NONE);
	assert_int_equal(retry_decide(build_def(f), "failed", -1, 1), RETRY_NONE);
	assert_int_equal(retry_decide(build_def(f), "timed_out", -1, 1), RETRY_NONE);
	assert_int_equal(retry_decide(build_def(f), "succeeded", 0, 1), RETRY_NONE);
	assert_int_equal(retry_decide(build_def(f), "cancelled", -1, 1), RETRY_NONE);
	assert_int_equal(retry_decide(build_def(f), "lost", -1, 1), RETRY_NONE);
}

static void test_retries_are_exhausted_after_max_plus_one_attempts(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "", "    retry: {max: 2, on: [timeout]}\n"), 0);
	assert_int_equal(retry_decide(build_def(f), "timed_out", -1, 1), RETRY_AGAIN);
	assert_int_equal(retry_decide(build_def(f), "timed_out", -1, 2), RETRY_AGAIN);
	assert_int_equal(retry_decide(build_def(f), "timed_out", -1, 3), RETRY_EXHAUSTED);
	assert_int_equal(retry_decide(build_def(f), "failed", 1, 3), RETRY_NONE);
}

static void test_stage_without_policy_is_never_retried(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "", ""), 0);
	assert_null(json_object_get(build_def(f), "retry"));
	assert_null(json_object_get(build_def(f), "max_attempts"));
	assert_int_equal(retry_decide(build_def(f), "failed", 1, 1), RETRY_NONE);
	assert_int_equal(retry_max_attempts(build_def(f)), 3);
}

static void test_backoff_doubles_per_attempt_up_to_five_minutes(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "", "    retry: {max: 20, backoff: 1s}\n"), 0);
	assert_int_equal(retry_backoff_ms(build_def(f), 1), 1000);
	assert_int_equal(retry_backoff_ms(build_def(f), 2), 2000);
	assert_int_equal(retry_backoff_ms(build_def(f), 3), 4000);
	assert_int_equal(retry_backoff_ms(build_def(f), 9), 256000);
	assert_int_equal(retry_backoff_ms(build_def(f), 10), RETRY_MAX_BACKOFF_MS);
	assert_int_equal(retry_backoff_ms(build_def(f), 100), RETRY_MAX_BACKOFF_MS);
	assert_int_equal(retry_backoff_ms(build_def(f), 2147483647), RETRY_MAX_BACKOFF_MS);
	/* Without a policy (a lost stage), the default base applies. */
	assert_int_equal(retry_backoff_ms(NULL, 2), 2 * RETRY_DEFAULT_BACKOFF_MS);
}

static void test_max_attempts_from_stage_file_or_lost_policy(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(load(f, "max_attempts: 5\n", ""), 0);
	assert_int_equal(retry_max_attempts(build_def(f)), 5);
	assert_int_equal(load(f, "max_attempts: 5\n", "    max_attempts: 2\n"), 0);
	assert_int_equal(retry_max_attempts(build_def(f)), 2);
	/* Listing lost raises the budget to max + 1 when that is more. */
	assert_int_equal(load(f, "", "    retry: {max: 6, on: [lost]}\n"), 0);
	assert_int_equal(retry_max_attempts(build_def(f)), 7);
	assert_int_equal(load(f, "", "    max_attempts: 9\n    retry: {max: 1, on: [lost]}\n"), 0);
	assert_int_equal(retry_max_attempts(build_def(f)), 9);
}

/* A deployment is a stage too: the file's max_attempts is its default, and
 * an environment that happens to be named max_attempts is no such value. */
static void test_max_attempts_of_the_file_reaches_deployments(void **state)
{
	struct pipeline_file *f = *state;
	const char *envs = "environments:\n  dev:\n    deploy: {run: [d]}\n"
			   "  max_attempts:\n    after: dev\n    deploy: {run: [d]}\n";
	const json_t *stages;

	assert_int_equal(load(f, "max_attempts: 5\n", envs), 0);
	stages = json_object_get(f->p.def, "stages");
	assert_int_equal(retry_max_attempts(json_object_get(stages, "deploy@dev")), 5);
	assert_int_equal(retry_max_attempts(json_object_get(stages, "deploy@max_attempts")), 5);
	assert_int_equal(load(f, "", envs), 0);
	stages = json_object_get(f->p.def, "stages");
	assert_int_equal(retry_max_attempts(json_object_get(stages, "deploy@dev")),
			 RETRY_DEFAULT_MAX_ATTEMPTS);
}

/* A deployment with a strategy, which has no deploy: of its own, is one as
 * well: its worker lost, it is queued again up to the file's max_attempts. */
static void test_max_attempts_of_the_file_reaches_strategy_deployments(void **state)
{
	struct pipeline_file *f = *state;
	const char *envs = "environments:\n  production:\n    image: registry.local/app:v2\n"
			   "    provider: {type: exec, actions: {apply: {run: [d]}}}\n"
			   "    strategy: {type: RollingUpdate}\n";
	const json_t *stages;

	assert_int_equal(load(f, "max_attempts: 5\n", envs), 0);
	stages = json_object_get(f->p.def, "stages");
	assert_int_equal(retry_max_attempts(json_object_get(stages, "deploy@production")), 5);
	assert_int_equal(load(f, "max_attempts: 1\n", envs), 0);
	stages = json_object_get(f->p.def, "stages");
	assert_int_equal(retry_max_attempts(json_object_get(stages, "deploy@production")), 1);
	assert_int_equal(load(f, "", envs), 0);
	stages = json_object_get(f->p.def, "stages");
	assert_int_equal(retry_max_attempts(json_object_get(stages, "deploy@production")),
			 RETRY_DEFAULT_MAX_ATTEMPTS);
}

static void test_bad_policies_name_the_position_and_key(void **state)
{
	struct pipeline_file *f = *state;
	expect_error(f, "    retry: 3\n", ":8:12: stages.build.retry: expected a mapping");
	expect_error(f, "    retry: {on_exit: [1]}\n",
		     "stages.build.retry.max: missing required key");
	expect_error(f, "    retry: {max: 0}\n", ":8:18: stages.build.retry.max:");
	expect_error(f, "    retry: {max: 1, on_exit: [0]}\n", "stages.build.retry.on_exit[0]:");
	expect_error(f, "    retry: {max: 1, on_exit: 75}\n",
		     "stages.build.retry.on_exit: expected a list of exit codes");
	expect_error(f, "    retry: {max: 1, on: [timeout, crash]}\n",
		     "stages.build.retry.on[1]: unknown reason \"crash\" (known: failed, "
		     "timeout, lost)");
	expect_error(f, "    retry: {max: 1, backoff: 10m}\n",
		     "stages.build.retry.backoff: is too long (at most 5m)");
	expect_error(f, "    retry: {max: 1, tries: 2}\n", "stages.build.retry.tries");
	expect_error(f, "    max_attempts: 0\n", "stages.build.max_attempts:");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_policy_is_normalized_into_the_stage_definition,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_policy_without_reasons_retries_every_failure,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_only_listed_exit_codes_are_retried, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_retries_are_exhausted_after_max_plus_one_attempts,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stage_without_policy_is_never_retried, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backoff_doubles_per_attempt_up_to_five_minutes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts_from_stage_file_or_lost_policy, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts_of_the_file_reaches_deployments,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_max_attempts_of_the_file_reaches_strategy_deployments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_policies_name_the_position_and_key, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
