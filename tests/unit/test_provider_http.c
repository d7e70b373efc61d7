/* Tests for the http provider (stages/provider_http.c): the request each
 * action sends to a local HTTP server of the test's own (tests/unit/
 * apistub.h), with the action's variables filled into its template. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "stages/provider.h"
#include "tests/unit/apistub.h"

#include <curl/curl.h>
#include <event2/event.h>
#include "tests/unit/provider_test.h"

static struct apistub stub;

static int group_setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	base = event_base_new();
	return base && apistub_start(&stub, base) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	apistub_stop(&stub);
	event_base_free(base);
	curl_global_cleanup();
	return 0;
}

static int setup(void **state)
{
	(void)state;
	apistub_reset(&stub);
	return 0;
}

/* fmt: the JSON of the "actions" map, with %d for the stand-in's port. */
static struct provider *make(const char *fmt, ...)
{
	char json[2048], act[1536];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(act, sizeof(act), fmt, ap);
	va_end(ap);
	snprintf(json, sizeof(json), "{\"type\": \"http\", \"actions\": %s}", act);
	return provider_test_make(json_loads(json, 0, NULL));
}

static void run(struct provider *p, const struct provider_action *a, struct outcome *o)
{
	provider_test_run(p, a, o, 5);
}

static void test_template_gets_the_action_variables(void **state)
{
	struct provider *p = make(
	    "{\"set_weight\": {\"method\": \"PUT\", \"url\": "
	    "\"http://127.0.0.1:%d/lb/${SERVICE}/weights?color=${SLUICE_COLOR}\", \"headers\": "
	    "{\"Authorization\": \"Bearer ${LB_TOKEN}\"}, \"body\": \"{\\\"canary\\\": "
	    "${SLUICE_WEIGHT}, \\\"image\\\": \\\"${SLUICE_IMAGE}\\\", \\\"action\\\": "
	    "\\\"${SLUICE_ACTION}\\\"}\"}}",
	    stub.port);
	json_t *env = json_pack("{s:s, s:s}", "SERVICE", "api/v2", "LB_TOKEN", "s3cret");
	struct provider_action a = {.verb = PROVIDER_SET_WEIGHT,
				    .image = "reg/app:\"1\"",
				    .weight = 30,
				    .color = "green",
				    .env = env};
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{\"ok\": true}");
	run(p, &a, &o);
	assert_true(o.ok);
	assert_int_equal(stub.nreq, 1);
	assert_string_equal(stub.req[0].method, "PUT");
	/* A value cannot add a path segment. */
	assert_string_equal(stub.req[0].uri, "/lb/api%2Fv2/weights?color=green");
	assert_string_equal(stub.req[0].authorization, "Bearer s3cret");
	assert_string_equal(stub.req[0].content_type, "application/json");
	assert_string_equal(stub.req[0].body, "{\"canary\": 30, \"image\": \"reg/app:\\\"1\\\"\", "
					      "\"action\": \"set_weight\"}");
	assert_non_null(strstr(o.msg, "set_weight done: HTTP 200 from http://127.0.0.1:"));
	json_decref(env);
	provider_free(p);
}

/* A RollingUpdate's apply has its bounds for its templates. */
static void test_a_rolling_apply_template_gets_its_bounds(void **state)
{
	struct provider *p =
	    make("{\"apply\": {\"method\": \"POST\", \"url\": "
		 "\"http://127.0.0.1:%d/deploy?surge=${SLUICE_MAX_SURGE}\", \"body\": "
		 "\"{\\\"maxSurge\\\": \\\"${SLUICE_MAX_SURGE}\\\", \\\"maxUnavailable\\\": "
		 "\\\"${SLUICE_MAX_UNAVAILABLE}\\\"}\"}}",
		 stub.port);
	struct provider_action a = {.verb = PROVIDER_APPLY,
				    .image = "img",
				    .weight = -1,
				    .max_surge = "2",
				    .max_unavailable = "0"};
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{}");
	run(p, &a, &o);
	assert_true(o.ok);
	assert_int_equal(stub.nreq, 1);
	assert_string_equal(stub.req[0].uri, "/deploy?surge=2");
	assert_string_equal(stub.req[0].body, "{\"maxSurge\": \"2\", \"maxUnavailable\": \"0\"}");
	provider_free(p);
}

static void test_unexpected_status_fails_with_it(void **state)
{
	struct provider *p =
	    make("{\"verify\": {\"url\": \"http://127.0.0.1:%d/health\", \"expect\": [204]}}",
		 stub.port);
	struct provider_action a = {.verb = PROVIDER_VERIFY, .weight = -1};
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{}");
	run(p, &a, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "verify failed: HTTP 200 from http://127.0.0.1:"));
	assert_string_equal(stub.req[0].method, "GET");
	provider_free(p);
}

static void test_server_errors_are_retried(void **state)
{
	struct provider *p = make("{\"abort\": {\"method\": \"POST\", \"url\": "
				  "\"http://127.0.0.1:%d/abort\", \"retries\": 2, \"backoff_ms\": "
				  "10}}",
				  stub.port);
	struct provider_action a = {.verb = PROVIDER_ABORT, .weight = 0};
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 503, "{}");
	apistub_reply(&stub, 502, "{}");
	apistub_reply(&stub, 200, "{}");
	run(p, &a, &o);
	assert_true(o.ok);
	assert_int_equal(stub.nreq, 3);
	provider_free(p);
}

static void test_a_method_in_lower_case_is_sent_as_the_method(void **state)
{
	struct provider *p =
	    make("{\"promote\": {\"method\": \"post\", \"url\": \"http://127.0.0.1:%d/promote\"}}",
		 stub.port);
	struct provider_action a = {.verb = PROVIDER_PROMOTE, .weight = -1};
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{}");
	run(p, &a, &o);
	assert_true(o.ok);
	assert_string_equal(stub.req[0].method, "POST");
	provider_free(p);
}

static void test_each_action_has_its_own_request(void **state)
{
	struct provider *p =
	    make("{\"switch\": {\"method\": \"POST\", \"url\": "
		 "\"http://127.0.0.1:%d/switch/${SLUICE_COLOR}\"}, \"promote\": "
		 "{\"method\": \"POST\", \"url\": \"http://127.0.0.1:%d/promote\"}}",
		 stub.port, stub.port);
	struct provider_action a = {.verb = PROVIDER_SWITCH, .weight = -1, .color = "blue"};
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{}");
	run(p, &a, &o);
	a.verb = PROVIDER_PROMOTE;
	run(p, &a, &o);
	assert_int_equal(stub.nreq, 2);
	assert_string_equal(stub.req[0].uri, "/switch/blue");
	assert_string_equal(stub.req[1].uri, "/promote");
	assert_false(provider_supports(p, PROVIDER_APPLY));
	provider_free(p);
}

static void test_undefined_variable_is_refused_at_start(void **state)
{
	struct provider *p =
	    make("{\"apply\": {\"url\": \"http://127.0.0.1:%d/deploy?to=${TARGET}\"}}", stub.port);
	struct provider_action a = {.verb = PROVIDER_APPLY, .image = "img", .weight = -1};
	struct outcome o = {0};
	char err[256] = "";
	(void)state;

	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "provider.actions.apply.url:"));
	assert_non_null(strstr(err, "TARGET"));
	provider_free(p);
}

static void test_cancel_is_silent(void **state)
{
	struct provider *p =
	    make("{\"apply\": {\"url\": \"http://127.0.0.1:%d/deploy\"}}", stub.port);
	struct provider_action a = {.verb = PROVIDER_APPLY, .image = "img", .weight = -1};
	struct outcome o = {0};
	char err[256] = "";
	struct timeval wait = {0, 200000};
	(void)state;

	apistub_reply(&stub, 200, "{}");
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), 0);
	provider_cancel(p);
	event_base_loopexit(base, &wait);
	event_base_dispatch(base);
	assert_int_equal(o.calls, 0);
	provider_free(p);
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
	expect_error("{\"type\": \"http\"}", "provider.actions: required, a request per action");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {}}}",
		     "provider.actions.apply.url: required");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"headers\": {\"A\": 1}}}}",
		     "provider.actions.apply.headers.A: not a string");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"expect\": [42]}}}",
		     "provider.actions.apply.expect[0]: not an HTTP status");
	/* What an http: stage refuses where it is written is refused here too,
	 * rather than ignored or sent as it is. */
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"timeout\": \"5s\"}}}",
		     "provider.actions.apply.timeout: unknown key (url, method, headers, body, "
		     "expect, timeout_ms, retries, backoff_ms, ca_file)");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"method\": \"FETCH\"}}}",
		     "provider.actions.apply.method: unknown method \"FETCH\" (known: GET, HEAD, "
		     "POST, PUT, PATCH, DELETE, OPTIONS)");
	expect_error("{\"type\": \"http\", \"actions\": {\"verify\": {\"url\": \"http://x\", "
		     "\"body\": \"{}\"}}}",
		     "provider.actions.verify.body: a GET request has no body");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": "
		     "\"ftp://x/\"}}}",
		     "provider.actions.apply.url: expected an http:// or https:// URL");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"headers\": {\"X-A: 1\\r\\nX-B\": \"2\"}}}}",
		     "provider.actions.apply.headers: \"X-A: 1\r\nX-B\" is not a header name (use "
		     "letters, digits, '-', '_' and '.')");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"retries\": -1}}}",
		     "provider.actions.apply.retries: a whole number from 0 to 100");
	expect_error("{\"type\": \"http\", \"actions\": {\"apply\": {\"url\": \"http://x\", "
		     "\"timeout_ms\": \"30s\"}}}",
		     "provider.actions.apply.timeout_ms: a whole number from 1 to 86400000");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_template_gets_the_action_variables, setup),
	    cmocka_unit_test_setup(test_a_rolling_apply_template_gets_its_bounds, setup),
	    cmocka_unit_test_setup(test_unexpected_status_fails_with_it, setup),
	    cmocka_unit_test_setup(test_server_errors_are_retried, setup),
	    cmocka_unit_test_setup(test_a_method_in_lower_case_is_sent_as_the_method, setup),
	    cmocka_unit_test_setup(test_each_action_has_its_own_request, setup),
	    cmocka_unit_test_setup(test_undefined_variable_is_refused_at_start, setup),
	    cmocka_unit_test_setup(test_cancel_is_silent, setup),
	    cmocka_unit_test_setup(test_bad_definitions_are_refused_with_the_key, setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
