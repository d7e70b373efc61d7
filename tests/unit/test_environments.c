/* Tests for config/environments: the environments: section of a pipeline
 * file, its deploy@ stages and chain, and its errors with file:line:col. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "pipeline_file.h"

#define HEAD                                                                                       \
	"trigger:\n  github:\n    repository: acme/app\n    secret_file: webhook\n"                \
	"vars: {DOMAIN: example.com, LEVEL: info}\n"                                               \
	"secrets: {TOKEN: webhook}\n"                                                              \
	"stages:\n  build:\n    run: [make]\n"

/* Beside the pipeline file: the secret file dev-db of the environment dev. */
static int setup(void **state)
{
	struct pipeline_file *f = pipeline_file_new("sluice-test-env", HEAD);
	char devdb[128];

	if (!f)
		return -1;
	snprintf(devdb, sizeof(devdb), "%s/dev-db", f->dir);
	if (tmpdir_write(devdb, "postgres://dev\n") < 0) {
		pipeline_file_free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	pipeline_file_free(*state);
	return 0;
}

static void test_environments_become_deploy_stages_and_a_chain(void **state)
{
	struct pipeline_file *f = *state;
	int rc = pipeline_file_load(
	    f, "environments:\n"
	       "  production:\n"
	       "    after: staging\n"
	       "    deploy: {sh: ./deploy.sh prod}\n"
	       "  development:\n"
	       "    vars: {DOMAIN: dev.example.com}\n"
	       "    secrets: {DB_URL: dev-db}\n"
	       "    deploy: {run: [./deploy.sh, dev], timeout: 10m}\n"
	       "  staging:\n"
	       "    after: development\n"
	       "    approval: {required: true, expires: 24h}\n"
	       "    windows: {deny: [\"Sun 03:00-04:00 UTC\", \"daily 02:00-03:00 UTC\"]}\n"
	       "    deploy: {sh: ./deploy.sh staging, retry: {max: 1}}\n");
	if (rc < 0)
		fail_msg("%s", f->err);
	const json_t *envs = json_object_get(f->p.def, "environments");
	const char *order[] = {"development", "staging", "production"};
	const char *name;
	json_t *env;
	size_t i = 0;
	json_object_foreach((json_t *)envs, name, env)
	{
		assert_true(i < 3);
		assert_string_equal(name, order[i++]);
	}
	assert_int_equal(i, 3);
	assert_true(json_is_null(json_object_get(json_object_get(envs, "development"), "after")));
	const json_t *staging = json_object_get(envs, "staging");
	json_t *want = json_pack("{s:b, s:i}", "required", 1, "expires_s", 86400);
	assert_true(json_equal(json_object_get(staging, "approval"), want));
	json_decref(want);
	assert_int_equal(json_array_size(json_object_get(staging, "windows")), 2);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(staging, "windows"), 0), "spec")),
			    "Sun 03:00-04:00 UTC");
	assert_false(json_is_true(json_object_get(
	    json_object_get(json_object_get(envs, "production"), "approval"), "required")));

	const json_t *stages = json_object_get(f->p.def, "stages");
	const json_t *dev = json_object_get(stages, "deploy@development");
	assert_non_null(dev);
	assert_string_equal(json_string_value(json_object_get(dev, "kind")), "deploy");
	assert_string_equal(json_string_value(json_object_get(dev, "env")), "development");
	assert_int_equal(json_array_size(json_object_get(dev, "needs")), 0);
	assert_int_equal(json_integer_value(json_object_get(dev, "timeout")), 600);
	/* The environment's vars and secrets override the pipeline's. */
	const json_t *vars = json_object_get(dev, "vars");
	assert_string_equal(json_string_value(json_object_get(vars, "DOMAIN")), "dev.example.com");
	assert_string_equal(json_string_value(json_object_get(vars, "LEVEL")), "info");
	const json_t *secrets = json_object_get(dev, "secrets");
	char devdb[160], webhook[160];
	snprintf(devdb, sizeof(devdb), "%s/dev-db", f->dir);
	snprintf(webhook, sizeof(webhook), "%s/webhook", f->dir);
	assert_string_equal(json_string_value(json_object_get(secrets, "DB_URL")), devdb);
	assert_string_equal(json_string_value(json_object_get(secrets, "TOKEN")), webhook);
	const json_t *prod = json_object_get(stages, "deploy@production");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(prod, "vars"), "DOMAIN")),
	    "example.com");
	assert_non_null(json_object_get(json_object_get(stages, "deploy@staging"), "retry"));
	/* The pipeline's own vars are untouched. */
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(f->p.def, "vars"), "DOMAIN")),
	    "example.com");
}

static void test_approval_required_is_a_shorthand(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(pipeline_file_load(f, "environments:\n  staging:\n    approval: required\n"
					       "    deploy: {sh: 'true'}\n"),
			 0);
	json_t *want = json_pack("{s:b, s:i}", "required", 1, "expires_s", 0);
	assert_true(json_equal(
	    json_object_get(json_object_get(json_object_get(f->p.def, "environments"), "staging"),
			    "approval"),
	    want));
	json_decref(want);
}

static void test_after_must_name_an_environment(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    deploy: {sh: 'true'}\n"
	    "  prod:\n    after: staging\n    deploy: {sh: 'true'}\n",
	    "14:12: environments.prod.after: unknown environment \"staging\"");
}

static void test_after_must_not_form_a_cycle(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    deploy: {sh: 'true'}\n"
	    "  staging:\n    after: prod\n    deploy: {sh: 'true'}\n"
	    "  prod:\n    after: staging\n    deploy: {sh: 'true'}\n",
	    "14:12: environments.staging.after: environments form a cycle through after: "
	    "staging -> prod -> staging");
	pipeline_file_expect_error(
	    *state, "environments:\n  dev:\n    after: dev\n    deploy: {sh: 'true'}\n",
	    "12:12: environments.dev.after: an environment cannot come after itself");
}

static void test_two_environments_cannot_come_after_the_same(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    deploy: {sh: 'true'}\n"
	    "  staging:\n    after: dev\n    deploy: {sh: 'true'}\n"
	    "  qa:\n    after: dev\n    deploy: {sh: 'true'}\n",
	    "17:12: environments.qa.after: \"staging\" already comes after \"dev\": "
	    "environments form one chain");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    deploy: {sh: 'true'}\n"
	    "  qa:\n    deploy: {sh: 'true'}\n",
	    "13:3: environments.qa: only one environment may come first (without after:); "
	    "\"dev\" already does");
}

static void test_bad_window_syntax_is_reported_with_its_position(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    windows: {deny: [\"Sun 03:00-04:00 CET\"]}\n"
	    "    deploy: {sh: 'true'}\n",
	    "12:22: environments.dev.windows.deny[0]: bad window \"Sun 03:00-04:00 CET\" at "
	    "character 17: only UTC is supported as the time zone");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    windows: {deny: Sun 25:00-04:00 UTC}\n"
	    "    deploy: {sh: 'true'}\n",
	    "12:21: environments.dev.windows.deny: bad window \"Sun 25:00-04:00 UTC\" at "
	    "character 5: expected a start time like 03:00");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    windows: {deny: [\"daily 00:00-24:00 UTC\"]}\n"
	    "    deploy: {sh: 'true'}\n",
	    "12:21: environments.dev.windows.deny: these windows cover the whole week: the "
	    "environment would never open");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    windows: {allow: [\"daily 00:00-01:00 UTC\"]}\n"
	    "    deploy: {sh: 'true'}\n",
	    "12:15: environments.dev.windows.allow: unknown key");
}

static void test_deployment_is_required_and_has_no_kind_needs_or_when(void **state)
{
	pipeline_file_expect_error(
	    *state, "environments:\n  dev:\n    vars: {A: b}\n",
	    "12:5: environments.dev.deploy: missing required key (the stage that "
	    "deploys: run, sh or http; or a strategy: with its provider:)");
	pipeline_file_expect_error(
	    *state, "environments:\n  dev:\n    deploy: {sh: 'true', needs: [build]}\n",
	    "12:26: environments.dev.deploy.needs: a deployment starts when the run is "
	    "promoted; use after: to order environments");
	pipeline_file_expect_error(
	    *state, "environments:\n  dev:\n    deploy: {sh: 'true', kind: build}\n",
	    "12:26: environments.dev.deploy.kind: a deployment is always of kind deploy");
	pipeline_file_expect_error(
	    *state, "environments:\n  dev:\n    deploy: {sh: 'true', when: {branches: [main]}}\n",
	    "12:26: environments.dev.deploy.when: every run promoted to the environment "
	    "deploys: a deployment has no when:");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n  dev:\n    approval: {required: false, expires: 1h}\n"
	    "    deploy: {sh: 'true'}\n",
	    "12:33: environments.dev.approval.expires: expires applies to a required "
	    "approval");
	pipeline_file_expect_error(
	    *state, "environments:\n  dev@x:\n    deploy: {sh: 'true'}\n",
	    "11:3: environments.dev@x: invalid environment name (use at most 64 letters, "
	    "digits, '_' and '-')");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_environments_become_deploy_stages_and_a_chain,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_approval_required_is_a_shorthand, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_after_must_name_an_environment, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_after_must_not_form_a_cycle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_environments_cannot_come_after_the_same, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_window_syntax_is_reported_with_its_position,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_deployment_is_required_and_has_no_kind_needs_or_when, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
