/* Which commit status each event posts (agent/statuses.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/statuses.h"

/* An event's data as the Lua scripts write it: run fields plus extra. */
static json_t *data(const char *extra)
{
	json_error_t e;
	json_t *d = json_loads(extra, 0, &e);
	assert_non_null(d);
	json_t *base = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s}", "run", "r_1", "pipeline", "app", "repository", "octo/app",
	    "sha", "6dcb09b5b57875f334f61aebed695e2e4193db5e", "ref", "refs/heads/main");
	json_object_update_missing(d, base);
	json_decref(base);
	return d;
}

static int post(const char *type, const char *extra, struct statuses_post *out)
{
	json_t *d = data(extra);
	int rc = statuses_describe(type, d, out);
	json_decref(d);
	return rc;
}

static void expect_post(const char *type, const char *extra, const char *state, const char *context,
			const char *description)
{
	struct statuses_post p;
	assert_int_equal(post(type, extra, &p), 1);
	assert_string_equal(p.state, state);
	assert_string_equal(p.context, context);
	assert_string_equal(p.description, description);
}

static void expect_nothing(const char *type, const char *extra)
{
	struct statuses_post p;
	assert_int_equal(post(type, extra, &p), 0);
}

static void test_stage_goes_pending_then_success_with_its_duration(void **state)
{
	(void)state;
	expect_post("stage.queued", "{\"stage\": \"build\", \"attempt\": 1}", "pending",
		    "sluice/app/build", "queued");
	expect_post("stage.started", "{\"stage\": \"build\", \"attempt\": 1}", "pending",
		    "sluice/app/build", "running");
	expect_post("stage.finished",
		    "{\"stage\": \"build\", \"attempt\": 1, \"status\": \"succeeded\", "
		    "\"exit_code\": 0, \"duration_ms\": 12400}",
		    "success", "sluice/app/build", "succeeded in 12s");
	expect_post("stage.finished",
		    "{\"stage\": \"build\", \"attempt\": 1, \"status\": \"succeeded\", "
		    "\"duration_ms\": 245000}",
		    "success", "sluice/app/build", "succeeded in 4m05s");
	expect_post("stage.queued", "{\"stage\": \"build\", \"attempt\": 2}", "pending",
		    "sluice/app/build", "queued (attempt 2)");
}

static void test_failures_say_why_in_a_few_words(void **state)
{
	(void)state;
	expect_post(
	    "stage.finished",
	    "{\"stage\": \"test\", \"attempt\": 1, \"status\": \"failed\", \"exit_code\": 3}",
	    "failure", "sluice/app/test", "exit 3");
	expect_post("stage.finished",
		    "{\"stage\": \"test\", \"attempt\": 1, \"status\": \"failed\", "
		    "\"signal\": \"SIGKILL\"}",
		    "failure", "sluice/app/test", "killed by SIGKILL");
	expect_post("stage.finished",
		    "{\"stage\": \"test\", \"attempt\": 1, \"status\": \"timed_out\", "
		    "\"duration_ms\": 60000}",
		    "failure", "sluice/app/test", "timed out after 1m00s");
	expect_post("stage.finished",
		    "{\"stage\": \"test\", \"attempt\": 3, \"status\": \"failed\", "
		    "\"error\": \"lost 3 times\"}",
		    "failure", "sluice/app/test", "lost 3 times");
	expect_post("stage.finished",
		    "{\"stage\": \"test\", \"attempt\": 1, \"status\": \"cancelled\"}", "error",
		    "sluice/app/test", "cancelled");
	expect_post("stage.cancelled", "{\"stage\": \"test\", \"attempt\": 1}", "error",
		    "sluice/app/test", "cancelled");
}

static void test_a_failure_the_policy_retries_stays_pending(void **state)
{
	(void)state;
	const char *policy = "\"retry\": {\"max\": 1, \"on_exit\": [], \"on\": [\"failed\"], "
			     "\"backoff_ms\": 100}";
	char buf[512];
	snprintf(buf, sizeof(buf),
		 "{\"stage\": \"b\", \"attempt\": 1, \"status\": \"failed\", \"exit_code\": 3, %s}",
		 policy);
	expect_post("stage.finished", buf, "pending", "sluice/app/b", "exit 3; retrying");
	snprintf(buf, sizeof(buf),
		 "{\"stage\": \"b\", \"attempt\": 2, \"status\": \"failed\", \"exit_code\": 3, %s}",
		 policy);
	expect_post("stage.finished", buf, "failure", "sluice/app/b", "exit 3");
}

static void test_promotions_use_the_deploy_context(void **state)
{
	(void)state;
	expect_post("promotion.waiting", "{\"env\": \"staging\", \"gate\": \"approval\"}",
		    "pending", "sluice/app/deploy/staging", "waiting for approval");
	expect_post("promotion.started", "{\"env\": \"staging\"}", "pending",
		    "sluice/app/deploy/staging", "deploying");
	expect_post("promotion.finished", "{\"env\": \"production\", \"status\": \"deployed\"}",
		    "success", "sluice/app/deploy/production", "deployed");
	expect_post("promotion.finished", "{\"env\": \"staging\", \"status\": \"rejected\"}",
		    "failure", "sluice/app/deploy/staging", "rejected");
	expect_post("promotion.finished", "{\"env\": \"staging\", \"status\": \"superseded\"}",
		    "error", "sluice/app/deploy/staging", "superseded by a newer run");
	expect_post("promotion.finished", "{\"env\": \"production\", \"status\": \"aborted\"}",
		    "failure", "sluice/app/deploy/production",
		    "rollout aborted: traffic back on the stable release");
	expect_post("promotion.finished", "{\"env\": \"production\", \"status\": \"rolled_back\"}",
		    "error", "sluice/app/deploy/production", "rolled back to the previous release");
}

static void test_events_without_a_status_post_nothing(void **state)
{
	(void)state;
	expect_nothing("run.created", "{\"status\": \"queued\"}");
	expect_nothing("run.finished", "{\"status\": \"failed\"}");
	expect_nothing("stage.skipped", "{\"stage\": \"scan\", \"attempt\": 1}");
	expect_nothing("stage.retrying", "{\"stage\": \"scan\", \"attempt\": 2}");
	/* A deployment stage is reported by its promotion's events. */
	expect_nothing("stage.started", "{\"stage\": \"deploy@staging\", \"attempt\": 1}");
	expect_nothing("promotion.started", "{}");

	struct statuses_post p;
	json_t *d = json_pack("{s:s, s:i}", "stage", "build", "attempt", 1);
	assert_int_equal(statuses_describe("stage.queued", d, &p), 0); /* no pipeline */
	json_decref(d);
}

static void test_a_long_description_is_cut_between_characters(void **state)
{
	(void)state;
	char error[400], buf[600];
	/* "é" is two bytes: 139 ASCII bytes then "é" would cross the limit. */
	memset(error, 'x', 139);
	strcpy(error + 139, "\xc3\xa9 and more");
	snprintf(buf, sizeof(buf),
		 "{\"stage\": \"b\", \"attempt\": 1, \"status\": \"failed\", \"error\": \"%s\"}",
		 error);
	struct statuses_post p;
	assert_int_equal(post("stage.finished", buf, &p), 1);
	assert_int_equal(strlen(p.description), 139);
	assert_int_equal(strspn(p.description, "x"), 139);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stage_goes_pending_then_success_with_its_duration),
	    cmocka_unit_test(test_failures_say_why_in_a_few_words),
	    cmocka_unit_test(test_a_failure_the_policy_retries_stays_pending),
	    cmocka_unit_test(test_promotions_use_the_deploy_context),
	    cmocka_unit_test(test_events_without_a_status_post_nothing),
	    cmocka_unit_test(test_a_long_description_is_cut_between_characters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
