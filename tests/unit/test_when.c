/* Tests for config/when: a stage's `when:` from pipeline file to the status
 * each stage of a new run starts in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/when.h"
#include "lib/utf8.h"
#include "pipeline_file.h"

#define TRIGGER "trigger:\n  github:\n    repository: acme/app\n    secret_file: webhook\n"

static int setup(void **state)
{
	*state = pipeline_file_new("sluice-test-when", TRIGGER "stages:\n");
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	pipeline_file_free(*state);
	return 0;
}

static const char *planned(const json_t *plan, const char *stage, const char *field)
{
	return json_string_value(json_object_get(json_object_get(plan, stage), field));
}

static void test_when_is_normalized_into_the_stage_definition(void **state)
{
	struct pipeline_file *f = *state;
	assert_int_equal(
	    pipeline_file_load(f, "  build:\n    run: [make]\n    when: {events: push, branches: "
				  "[main, \"release/**\"]}\n"),
	    0);
	json_t *want = json_loads(
	    "{\"events\": [\"push\"], \"branches\": [\"main\", \"release/**\"]}", 0, NULL);
	const json_t *build = json_object_get(json_object_get(f->p.def, "stages"), "build");
	assert_true(json_equal(json_object_get(build, "when"), want));
	json_decref(want);
}

static void test_bad_when_is_reported_where_it_is_written(void **state)
{
	struct pipeline_file *f = *state;
	pipeline_file_expect_error(
	    f, "  build:\n    run: [make]\n    when: {events: [push, tag]}\n",
	    "8:27: stages.build.when.events[1]: unknown event \"tag\" (known: push, "
	    "pull_request, manual)");
	/* GitHub sends it, but no run has it: the stage would never run. */
	pipeline_file_expect_error(
	    f, "  build:\n    run: [make]\n    when: {events: [push, release]}\n",
	    "8:27: stages.build.when.events[1]: no run has the event \"release\": a run's event "
	    "is push, pull_request or manual");
	pipeline_file_expect_error(f, "  build:\n    run: [make]\n    when: {branch: [main]}\n",
				   "8:12: stages.build.when.branch: unknown key");
	pipeline_file_expect_error(
	    f, "  build:\n    run: [make]\n    when: {}\n",
	    "8:11: stages.build.when: must list at least one of events, branches and "
	    "tags");
	pipeline_file_expect_error(f, "  build:\n    run: [make]\n    when: {tags: []}\n",
				   "8:18: stages.build.when.tags: must not be empty");
	pipeline_file_expect_error(
	    f, "  build:\n    run: [make]\n    when: {tags: [\"!v*-rc*\"]}\n",
	    "8:18: stages.build.when.tags: only \"!\" globs, which exclude: no ref would "
	    "match; list the refs to include before them (\"**\")");
	pipeline_file_expect_error(f, "  build:\n    run: [make]\n    when: main\n",
				   "8:11: stages.build.when: expected a mapping");
}

static void test_match_follows_events_branches_and_tags(void **state)
{
	char why[256];
	json_t *when = json_loads("{\"events\": [\"push\", \"manual\"], \"branches\": [\"main\", "
				  "\"release/**\"], \"tags\": [\"v*\"]}",
				  0, NULL);
	(void)state;
	assert_int_equal(when_match(when, "push", "main", NULL, why, sizeof(why)), 1);
	assert_int_equal(when_match(when, "manual", "release/1/2", NULL, why, sizeof(why)), 1);
	assert_int_equal(when_match(when, "push", NULL, "v1.0", why, sizeof(why)), 1);
	assert_int_equal(when_match(when, "pull_request", "main", NULL, why, sizeof(why)), 0);
	assert_string_equal(why, "when: event pull_request is not in when.events");
	assert_int_equal(when_match(when, "push", "dev", NULL, why, sizeof(why)), 0);
	assert_string_equal(why, "when: branch dev matches no glob of when.branches");
	assert_int_equal(when_match(when, "push", NULL, "1.0", why, sizeof(why)), 0);
	assert_string_equal(why, "when: tag 1.0 matches no glob of when.tags");
	assert_int_equal(when_match(NULL, "push", NULL, "1.0", why, sizeof(why)), 1);
	json_object_del(when, "tags");
	assert_int_equal(when_match(when, "push", NULL, "v1.0", why, sizeof(why)), 0);
	assert_string_equal(why, "when: tag v1.0: when lists branches only");
	json_decref(when);
	/* A "!" glob excludes what the globs before it let in. */
	when = json_loads("{\"branches\": [\"**\", \"!dependabot/**\"]}", 0, NULL);
	assert_int_equal(when_match(when, "push", "feature/x", NULL, why, sizeof(why)), 1);
	assert_int_equal(when_match(when, "push", "dependabot/npm/x", NULL, why, sizeof(why)), 0);
	json_decref(when);
}

static void test_plan_queues_roots_and_stages_whose_needs_are_all_left_out(void **state)
{
	struct pipeline_file *f = *state;
	size_t queued;
	assert_int_equal(
	    pipeline_file_load(f,
			       "  build:\n    run: [make]\n"
			       "  docs:\n    kind: build\n    run: [make, docs]\n"
			       "    when: {tags: [\"v*\"]}\n"
			       "  publish:\n    kind: push\n    run: [publish]\n    needs: [docs]\n"
			       "  test:\n    run: [make, test]\n    needs: [build, docs]\n"),
	    0);
	json_t *plan = when_plan(f->p.def, "push", "main", NULL, &queued);
	assert_non_null(plan);
	assert_int_equal(queued, 2);
	assert_string_equal(planned(plan, "build", "status"), "queued");
	assert_string_equal(planned(plan, "docs", "status"), "skipped");
	assert_string_equal(planned(plan, "docs", "reason"), "when: branch main: when lists tags "
							     "only");
	assert_string_equal(planned(plan, "publish", "status"), "queued");
	assert_string_equal(planned(plan, "test", "status"), "pending");
	json_decref(plan);

	plan = when_plan(f->p.def, "push", NULL, "v2", &queued);
	assert_int_equal(queued, 2);
	assert_string_equal(planned(plan, "docs", "status"), "queued");
	assert_string_equal(planned(plan, "publish", "status"), "pending");
	json_decref(plan);
}

static void test_plan_leaves_deployments_to_promotion(void **state)
{
	size_t queued;
	json_t *def = json_loads("{\"stages\": {\"build\": {\"needs\": []}, \"deploy@dev\": "
				 "{\"needs\": [], \"env\": \"dev\"}}}",
				 0, NULL);
	(void)state;
	json_t *plan = when_plan(def, "push", "main", NULL, &queued);
	assert_int_equal(queued, 1);
	assert_string_equal(planned(plan, "deploy@dev", "status"), "pending");
	json_decref(plan);
	json_decref(def);
}

static void test_plan_of_a_long_branch_cuts_its_reason_between_characters(void **state)
{
	/* A git ref of two 254-byte components of "é": the reason quoting it
	 * is cut where its buffer ends, and must stay UTF-8 for the plan's
	 * JSON (the plan failed, and the webhook with it, as out of memory). */
	char branch[512] = "";
	for (int i = 0; i < 2 * 127; i++)
		strcat(branch, i == 127 ? "/\xc3\xa9" : "\xc3\xa9");
	size_t queued;
	json_t *def = json_loads("{\"stages\": {\"build\": {\"needs\": []}, \"docs\": "
				 "{\"needs\": [], \"when\": {\"tags\": [\"v*\"]}}}}",
				 0, NULL);
	(void)state;
	json_t *plan = when_plan(def, "push", branch, NULL, &queued);
	assert_non_null(plan);
	assert_int_equal(queued, 1);
	const char *reason = planned(plan, "docs", "reason");
	assert_non_null(reason);
	assert_true(utf8_valid(reason, strlen(reason)));
	assert_int_equal(strncmp(reason, "when: branch \xc3\xa9\xc3\xa9", 17), 0);
	assert_true(strlen(reason) > 400);
	json_decref(plan);
	json_decref(def);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_when_is_normalized_into_the_stage_definition,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_when_is_reported_where_it_is_written, setup,
					    teardown),
	    cmocka_unit_test(test_match_follows_events_branches_and_tags),
	    cmocka_unit_test_setup_teardown(
		test_plan_queues_roots_and_stages_whose_needs_are_all_left_out, setup, teardown),
	    cmocka_unit_test(test_plan_leaves_deployments_to_promotion),
	    cmocka_unit_test(test_plan_of_a_long_branch_cuts_its_reason_between_characters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
