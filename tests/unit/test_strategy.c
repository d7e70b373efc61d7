/* What an environment of GET /api/v1/runs/{id} shows of its rollout and
 * which commands it offers (agent/strategy.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/strategy.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	if (!v)
		fail_msg("%s: %s", text, e.text);
	return v;
}

/* A stage definition with a Canary rollout and one pre check. */
static json_t *sdef(void)
{
	return parse("{\"kind\": \"deploy\", \"env\": \"prod\", \"rollout\": {"
		     "\"strategy\": {\"type\": \"Canary\", \"steps\": [{\"set_weight\": 20}, "
		     "{\"pause\": \"manual\"}, {\"set_weight\": 100}]},"
		     "\"checks\": {\"pre\": [{\"name\": \"healthy\", \"kind\": \"http\"}], "
		     "\"post\": [{\"name\": \"tls\", \"kind\": \"tls\"}]}}}");
}

/* A stage hash holding the rollout state text. */
static json_t *stage(const char *status, const char *rollout)
{
	json_t *s = json_pack("{s:s}", "status", status);
	if (rollout)
		json_object_set_new(s, "rollout", json_string(rollout));
	return s;
}

static void assert_json(const json_t *got, const char *want)
{
	json_t *w = parse(want);
	int same = json_equal(got, w);
	json_decref(w);
	if (!same) {
		char *text = json_dumps(got, JSON_SORT_KEYS);
		print_error("got %s\nwant %s\n", text ? text : "(null)", want);
		free(text);
		fail();
	}
}

static void view_without_strategy_is_null(void **state)
{
	json_t *plain = parse("{\"kind\": \"deploy\", \"env\": \"prod\"}");
	json_t *st = stage("running", "{\"phase\": \"Paused\"}");
	(void)state;
	assert_null(strategy_view(plain, st));
	assert_null(strategy_view(NULL, st));
	json_decref(plain);
	json_decref(st);
}

static void view_before_the_worker_saved_comes_from_the_definition(void **state)
{
	json_t *d = sdef(), *st = stage("queued", NULL);
	json_t *v = strategy_view(d, st);
	(void)state;
	assert_non_null(v);
	assert_json(v, "{\"name\": \"Canary\", \"step\": null, \"steps\": 3, \"status\": null,"
		       " \"paused_until\": null, \"pause\": null, \"weights\": null,"
		       " \"analysis\": [], \"checklist\": ["
		       "  {\"item\": \"healthy\", \"phase\": \"pre\", \"done\": false,"
		       "   \"status\": \"pending\", \"message\": null},"
		       "  {\"item\": \"tls\", \"phase\": \"post\", \"done\": false,"
		       "   \"status\": \"pending\", \"message\": null}],"
		       " \"command\": null, \"mode\": null, \"rollout\": null}");
	json_decref(v);
	json_decref(d);
	json_decref(st);
}

static void view_reads_the_saved_state(void **state)
{
	json_t *d = sdef();
	json_t *st = stage(
	    "paused",
	    "{\"strategy\": \"Canary\", \"phase\": \"Paused\", \"step\": 1, \"pause\": \"manual\","
	    " \"steps\": [{\"name\": \"setWeight 20\", \"status\": \"done\"},"
	    "  {\"name\": \"pause\", \"status\": \"active\"}],"
	    " \"paused_until\": 1795000000000, \"weights\": {\"stable\": 80, \"canary\": 20},"
	    " \"analyses\": [{\"name\": \"background\", \"verdict\": \"Failed\","
	    "  \"message\": \"error rate\", \"failure_condition\": \"result[0] > 0.05\","
	    "  \"measurements\": [{\"values\": [\"NaN\"]}, {\"values\": [0.07],"
	    "   \"condition\": \"result[0] > 0.05\"}]},"
	    "  {\"name\": \"step 2\", \"verdict\": \"Inconclusive\", \"measurements\": []}],"
	    " \"checks\": {\"pre\": [{\"name\": \"healthy\", \"status\": \"passed\","
	    "  \"message\": \"200\"}]}}");
	json_object_set_new(st, "command", json_string("promote"));
	json_t *v = strategy_view(d, st);
	(void)state;
	assert_non_null(v);
	/* Two steps saved: the count is the plan's the worker made. */
	assert_int_equal(json_integer_value(json_object_get(v, "step")), 2);
	assert_int_equal(json_integer_value(json_object_get(v, "steps")), 2);
	assert_string_equal(json_string_value(json_object_get(v, "status")), "Paused");
	assert_string_equal(json_string_value(json_object_get(v, "paused_until")),
			    "2026-11-18T11:06:40.000Z");
	assert_string_equal(json_string_value(json_object_get(v, "command")), "promote");
	assert_json(json_object_get(v, "weights"), "{\"stable\": 80, \"canary\": 20}");
	assert_json(json_object_get(v, "analysis"),
		    "[{\"metric\": \"background\", \"value\": 0.07,"
		    "  \"threshold\": \"result[0] > 0.05\", \"status\": \"failed\","
		    "  \"verdict\": \"Failed\", \"pass\": false, \"message\": \"error rate\"},"
		    " {\"metric\": \"step 2\", \"value\": null, \"threshold\": null,"
		    "  \"status\": \"inconclusive\", \"verdict\": \"Inconclusive\", \"pass\": null,"
		    "  \"message\": null}]");
	assert_json(json_array_get(json_object_get(v, "checklist"), 0),
		    "{\"item\": \"healthy\", \"phase\": \"pre\", \"done\": true,"
		    " \"status\": \"passed\", \"message\": \"200\"}");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(v, "rollout"), "pause")), "manual");
	json_decref(v);
	json_decref(d);
	json_decref(st);
}

static void view_of_a_state_that_is_not_json_keeps_the_plan(void **state)
{
	json_t *d = sdef(), *st = stage("running", "{not json");
	json_t *v = strategy_view(d, st);
	(void)state;
	assert_non_null(v);
	assert_true(json_is_null(json_object_get(v, "rollout")));
	assert_int_equal(json_integer_value(json_object_get(v, "steps")), 3);
	json_decref(v);
	json_decref(d);
	json_decref(st);
}

/* The verbs for one combination of hashes, as a JSON text. */
static void expect_actions(const json_t *def, const char *promotion, const char *stage_fields,
			   const char *env, int run_open, const char *want)
{
	json_t *p = parse(promotion), *s = parse(stage_fields), *e = parse(env);
	json_t *got = strategy_actions("r_1", def, p, s, e, run_open);
	assert_non_null(got);
	assert_json(got, want);
	json_decref(got);
	json_decref(p);
	json_decref(s);
	json_decref(e);
}

static void actions_follow_the_deployment_state(void **state)
{
	json_t *d = sdef(), *plain = parse("{\"kind\": \"deploy\"}");
	(void)state;
	expect_actions(d, "{\"status\": \"waiting_approval\"}", "{\"status\": \"pending\"}", "{}",
		       1, "[\"approve\", \"reject\"]");
	expect_actions(d, "{\"status\": \"deploying\"}", "{\"status\": \"paused\"}", "{}", 1,
		       "[\"promote\", \"abort\"]");
	expect_actions(
	    d, "{\"status\": \"deploying\"}",
	    "{\"status\": \"running\", \"rollout\": \"{\\\"phase\\\": \\\"Paused\\\"}\"}", "{}", 1,
	    "[\"promote\", \"abort\"]");
	expect_actions(d, "{\"status\": \"deploying\"}",
		       "{\"status\": \"running\", \"rollout\": \"{\\\"phase\\\": "
		       "\\\"Progressing\\\"}\"}",
		       "{}", 1, "[\"abort\"]");
	/* The scale-down delay of a blue/green rollout waits for nobody. */
	expect_actions(d, "{\"status\": \"deploying\"}",
		       "{\"status\": \"paused\", \"rollout\": \"{\\\"step\\\": 1, "
		       "\\\"steps\\\": [{}, {\\\"kind\\\": \\\"pause\\\", "
		       "\\\"auto\\\": true}]}\"}",
		       "{}", 1, "[\"abort\"]");
	/* An abort on its way leaves nothing to do; so does a rollback. */
	expect_actions(d, "{\"status\": \"deploying\"}",
		       "{\"status\": \"paused\", \"command\": \"abort\"}", "{}", 1, "[]");
	expect_actions(d, "{\"status\": \"rolling_back\"}",
		       "{\"status\": \"queued\", \"mode\": \"rollback\"}", "{\"lock\": \"r_1\"}", 1,
		       "[]");
	/* Without a strategy there is nothing to promote or abort. */
	expect_actions(plain, "{\"status\": \"deploying\"}", "{\"status\": \"running\"}", "{}", 1,
		       "[]");
	json_decref(plain);
	json_decref(d);
}

static void actions_retry_and_rollback(void **state)
{
	json_t *d = sdef(), *plain = parse("{\"kind\": \"deploy\"}");
	(void)state;
	expect_actions(d, "{\"status\": \"aborted\"}", "{\"status\": \"aborted\"}", "{}", 0,
		       "[\"retry\"]");
	/* Any deployment that failed is retried, with a strategy or not. */
	expect_actions(plain, "{\"status\": \"failed\"}", "{\"status\": \"failed\"}", "{}", 0,
		       "[\"retry\"]");
	expect_actions(d, "{\"status\": \"failed\"}", "{\"status\": \"failed\"}",
		       "{\"lock\": \"r_2\"}", 0, "[]");
	/* A failed rollback is rolled back again, not retried. */
	expect_actions(d, "{\"status\": \"rollback_failed\"}",
		       "{\"status\": \"failed\", \"mode\": \"rollback\"}",
		       "{\"current\": \"r_1\", \"previous\": \"r_0\", \"previous_image\": \"i:0\"}",
		       0, "[\"rollback\"]");
	expect_actions(d, "{\"status\": \"deployed\"}", "{\"status\": \"succeeded\"}",
		       "{\"current\": \"r_1\", \"previous\": \"r_0\", \"previous_image\": \"i:0\"}",
		       0, "[\"rollback\"]");
	/* Not while the run goes on, nor without a previous image, nor
	 * for a run that is not the current release. */
	expect_actions(d, "{\"status\": \"deployed\"}", "{\"status\": \"succeeded\"}",
		       "{\"current\": \"r_1\", \"previous\": \"r_0\", \"previous_image\": \"i:0\"}",
		       1, "[]");
	expect_actions(d, "{\"status\": \"deployed\"}", "{\"status\": \"succeeded\"}",
		       "{\"current\": \"r_1\", \"previous\": \"r_0\"}", 0, "[]");
	expect_actions(d, "{\"status\": \"deployed\"}", "{\"status\": \"succeeded\"}",
		       "{\"current\": \"r_9\", \"previous\": \"r_1\", \"previous_image\": \"i:0\"}",
		       0, "[]");
	json_decref(plain);
	json_decref(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(view_without_strategy_is_null),
	    cmocka_unit_test(view_before_the_worker_saved_comes_from_the_definition),
	    cmocka_unit_test(view_reads_the_saved_state),
	    cmocka_unit_test(view_of_a_state_that_is_not_json_keeps_the_plan),
	    cmocka_unit_test(actions_follow_the_deployment_state),
	    cmocka_unit_test(actions_retry_and_rollback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
