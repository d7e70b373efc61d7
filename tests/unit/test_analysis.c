/* Tests of the analysis engine's verdicts with a scripted stand-in provider,
 * and of the check of an analysis in a pipeline file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/check.h"
#include "config/doc.h"
#include "lib/clock.h"
#include "stages/analysis.h"
#include "stages/metric.h"
#include "tests/unit/apistub.h"
#include "tests/unit/run_for.h"

/* One scripted sample: 'v' values, 'e' an error, 'n' no data. */
struct script {
	const char *kinds;
	double values[8];
	size_t next;
	int cancelled;
	int64_t started[8]; /* when each measurement began (monotonic ms) */
	size_t starts;
};

struct fake {
	struct event *ev;
	struct script *s;
	metric_done_cb done;
	void *arg;
};

static struct script *current;

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	struct metric_sample smp = {0};
	size_t i = f->s->next++;
	char kind = f->s->kinds[i];
	(void)fd;
	(void)what;

	smp.values = &f->s->values[i];
	if (kind == 'e') {
		smp.failed = 1;
		snprintf(smp.message, sizeof(smp.message), "connection refused");
	} else if (kind == 'n') {
		snprintf(smp.message, sizeof(smp.message), "the query returned no series");
	} else {
		smp.n = 1;
	}
	event_free(f->ev);
	f->done(&smp, f->arg);
	free(f);
}

static void *fake_start(struct event_base *base, const json_t *provider, metric_done_cb done,
			void *arg, char *err, size_t errlen)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct timeval tv = {0, 1000};
	(void)provider;
	(void)err;
	(void)errlen;

	f->s = current;
	if (current->starts < sizeof(current->started) / sizeof(current->started[0]))
		current->started[current->starts++] = clock_mono_ms();
	f->done = done;
	f->arg = arg;
	f->ev = evtimer_new(base, fake_fire, f);
	evtimer_add(f->ev, &tv);
	return f;
}

static void fake_cancel(void *m)
{
	struct fake *f = m;
	f->s->cancelled++;
	event_free(f->ev);
	free(f);
}

static const struct analysis_provider fake = {.start = fake_start, .cancel = fake_cancel};

struct outcome {
	int done;
	enum analysis_verdict verdict;
	json_t *json;
};

static void on_done(const struct analysis_result *r, void *arg)
{
	struct outcome *o = arg;
	o->done++;
	o->verdict = r->verdict;
	o->json = json_incref(r->json);
}

/* Runs an analysis of spec_text (count = number of samples, interval 1 ms
 * unless it says) over script, carried on from from unless it is NULL. */
static struct outcome run_from(const char *spec_text, const json_t *from, struct script *s)
{
	char err[256];
	struct outcome o = {0};
	struct event_base *base = event_base_new();
	json_t *spec = json_loads(spec_text, 0, NULL);

	assert_non_null(spec);
	json_object_set_new(spec, "provider", json_pack("{s:s}", "type", "prometheus"));
	/* Measurements that could not be taken are not counted. */
	size_t taken = 0;
	for (const char *k = s->kinds; *k; k++)
		taken += *k != 'e';
	if (!json_object_get(spec, "count"))
		json_object_set_new(spec, "count", json_integer(taken ? (json_int_t)taken : 1));
	if (!json_object_get(spec, "interval_ms"))
		json_object_set_new(spec, "interval_ms", json_integer(1));
	current = s;
	struct analysis *a =
	    analysis_resume(base, spec, from, &fake, on_done, &o, err, sizeof(err));
	if (!a)
		fail_msg("%s", err);
	assert_int_equal(o.done, 0); /* never from within analysis_resume */
	event_base_dispatch(base);
	assert_int_equal(o.done, 1);
	json_decref(spec);
	event_base_free(base);
	return o;
}

static struct outcome run(const char *spec_text, struct script *s)
{
	return run_from(spec_text, NULL, s);
}

static const char *measurement(const struct outcome *o, size_t i, const char *key)
{
	json_t *m = json_array_get(json_object_get(o->json, "measurements"), i);
	return json_string_value(json_object_get(m, key));
}

static void all_measurements_passing_is_successful_and_keeps_each_value(void **state)
{
	struct script s = {.kinds = "vvv", .values = {0.001, 0.002, 0.003}};
	struct outcome o = run("{\"success_condition\": \"result < 0.01\"}", &s);
	(void)state;

	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	json_t *list = json_object_get(o.json, "measurements");
	assert_int_equal(json_array_size(list), 3);
	assert_true(fabs(json_real_value(json_array_get(
			     json_object_get(json_array_get(list, 2), "values"), 0)) -
			 0.003) < 1e-12);
	assert_string_equal(measurement(&o, 2, "condition"), "result < 0.01");
	assert_string_equal(measurement(&o, 2, "verdict"), "Successful");
	assert_string_equal(measurement(&o, 2, "message"), "result < 0.01 holds for 0.003");
	assert_string_equal(json_string_value(json_object_get(o.json, "verdict")), "Successful");
	json_decref(o.json);
}

static void one_failure_fails_at_once_with_the_default_failure_limit(void **state)
{
	struct script s = {.kinds = "vvv", .values = {0.001, 0.5, 0.001}};
	struct outcome o = run("{\"success_condition\": \"result < 0.01\"}", &s);
	(void)state;

	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_int_equal(s.next, 2); /* the third was never taken */
	assert_string_equal(measurement(&o, 1, "verdict"), "Failed");
	assert_string_equal(json_string_value(json_object_get(o.json, "message")),
			    "1 of 2 measurements failed (failureLimit 0): result < 0.01 does not "
			    "hold for 0.5");
	json_decref(o.json);
}

static void failures_within_the_failure_limit_still_succeed(void **state)
{
	struct script s = {.kinds = "vvvv", .values = {0.5, 0.001, 0.5, 0.001}};
	struct outcome o =
	    run("{\"success_condition\": \"result < 0.01\", \"failure_limit\": 2}", &s);
	struct script s2 = {.kinds = "vvvv", .values = {0.5, 0.5, 0.5, 0.001}};
	(void)state;

	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	json_decref(o.json);
	o = run("{\"success_condition\": \"result < 0.01\", \"failure_limit\": 2}", &s2);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	json_decref(o.json);
}

static void neither_condition_met_is_inconclusive(void **state)
{
	struct script s = {.kinds = "vv", .values = {0.02, 0.001}};
	struct outcome o = run("{\"success_condition\": \"result < 0.01\", "
			       "\"failure_condition\": \"result >= 0.05\"}",
			       &s);
	(void)state;

	assert_int_equal(o.verdict, ANALYSIS_INCONCLUSIVE);
	assert_int_equal(s.next, 1);
	assert_string_equal(measurement(&o, 0, "verdict"), "Inconclusive");
	json_decref(o.json);

	struct script s2 = {.kinds = "vvv", .values = {0.02, 0.001, 0.06}};
	o = run("{\"success_condition\": \"result < 0.01\", \"failure_condition\": \"result >= "
		"0.05\", \"inconclusive_limit\": 1}",
		&s2);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_string_equal(measurement(&o, 2, "condition"), "result >= 0.05");
	assert_string_equal(measurement(&o, 2, "message"), "result >= 0.05 holds for 0.06");
	json_decref(o.json);
}

static void no_data_follows_the_no_data_setting(void **state)
{
	struct script s1 = {.kinds = "nv", .values = {0, 0.001}};
	struct script s2 = {.kinds = "nv", .values = {0, 0.001}};
	struct script s3 = {.kinds = "nv", .values = {0, 0.001}};
	struct script s4 = {.kinds = "vv", .values = {NAN, 0.001}};
	(void)state;

	struct outcome o = run("{\"success_condition\": \"result < 0.01\"}", &s1);
	assert_int_equal(o.verdict, ANALYSIS_INCONCLUSIVE); /* the default */
	assert_string_equal(measurement(&o, 0, "message"),
			    "no data (the query returned no series): noData is inconclusive");
	json_decref(o.json);
	o = run("{\"success_condition\": \"result < 0.01\", \"no_data\": \"fail\"}", &s2);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	json_decref(o.json);
	o = run("{\"success_condition\": \"result < 0.01\", \"no_data\": \"pass\"}", &s3);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_string_equal(measurement(&o, 0, "verdict"), "Successful");
	json_decref(o.json);
	/* Prometheus' 0/0 for a canary that served nothing */
	o = run("{\"success_condition\": \"result < 0.01\", \"no_data\": \"fail\"}", &s4);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_string_equal(
	    json_string_value(json_array_get(
		json_object_get(json_array_get(json_object_get(o.json, "measurements"), 0),
				"values"),
		0)),
	    "NaN");
	json_decref(o.json);
}

/* A message names NaN and the infinities as the recorded values do. */
static void a_message_names_nan_and_infinities_as_recorded(void **state)
{
	struct script s1 = {.kinds = "v", .values = {INFINITY}};
	struct script s2 = {.kinds = "v", .values = {-INFINITY}};
	(void)state;

	struct outcome o = run("{\"success_condition\": \"result < 0.01\"}", &s1);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_string_equal(measurement(&o, 0, "message"), "result < 0.01 does not hold for +Inf");
	json_decref(o.json);
	o = run("{\"success_condition\": \"result < 0.01\"}", &s2);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_string_equal(measurement(&o, 0, "message"), "result < 0.01 holds for -Inf");
	json_decref(o.json);
}

/* Numbers as providers write them, and strings strtod would also read. */
static void a_value_is_a_decimal_number_nan_or_an_infinity(void **state)
{
	static const struct {
		const char *json;
		int rc;
		double value;
	} cases[] = {
	    {"{\"v\": 0.25}", 0, 0.25},
	    {"{\"v\": \"0.25\"}", 0, 0.25},
	    {"{\"v\": \"-1e-3\"}", 0, -0.001},
	    {"{\"v\": \"+Inf\"}", 0, INFINITY},
	    {"{\"v\": \"-Inf\"}", 0, -INFINITY},
	    {"{\"v\": \"NaN\"}", 0, NAN},
	    {"{\"v\": \"0x10\"}", -1, 0},
	    {"{\"v\": \"infinity\"}", -1, 0},
	    {"{\"v\": \" 1\"}", -1, 0},
	    {"{\"v\": \"\\t1\"}", -1, 0},
	    {"{\"v\": \"1 \"}", -1, 0},
	    {"{\"v\": \"\"}", -1, 0},
	    {"{\"v\": true}", -1, 0},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *root = json_loads(cases[i].json, 0, NULL);
		double value = 0;
		size_t n = 0;
		char message[256] = "";

		assert_non_null(root);
		int rc = metric_path_values(root, "$.v", &value, 1, &n, message, sizeof(message));
		if (rc != cases[i].rc)
			fail_msg("%s: %d (%s)", cases[i].json, rc, message);
		if (rc == 0 && isnan(cases[i].value))
			assert_true(isnan(value));
		else if (rc == 0)
			assert_true(value == cases[i].value);
		else
			assert_string_equal(message, "$.v is not a number");
		json_decref(root);
	}
}

static void errors_in_a_row_past_the_limit_fail_and_errors_alone_never_pass(void **state)
{
	struct script s1 = {.kinds = "eevev", .values = {0, 0, 0.001, 0, 0.002}};
	struct script s2 = {.kinds = "eee", .values = {0}};
	struct script s3 = {.kinds = "eeeee", .values = {0}};
	(void)state;

	struct outcome o = run("{\"success_condition\": \"result < 0.01\", "
			       "\"consecutive_error_limit\": 2}",
			       &s1);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_int_equal(s1.next, 5);
	assert_string_equal(measurement(&o, 0, "verdict"), "Error");
	assert_string_equal(measurement(&o, 0, "message"), "connection refused");
	json_decref(o.json);
	o = run("{\"success_condition\": \"result < 0.01\", \"consecutive_error_limit\": 2}", &s2);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	json_decref(o.json);
	/* With the default limit, 4: the fifth error in a row fails it. */
	o = run("{\"success_condition\": \"result < 0.01\"}", &s3);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_int_equal(s3.next, 5);
	json_decref(o.json);
}

static long long result_count(const struct outcome *o, const char *key);

/* As in Argo Rollouts, count is of the measurements judged: one that could
 * not be taken (a monitoring blip) neither uses up a count of 1, failing the
 * analysis, nor lets fewer data points than count decide it. */
static void a_measurement_that_could_not_be_taken_is_not_counted(void **state)
{
	struct script s1 = {.kinds = "ev", .values = {0, 0.001}};
	struct script s2 = {.kinds = "eeev", .values = {0, 0, 0, 0.5}};
	(void)state;

	struct outcome o = run("{\"success_condition\": \"result < 0.01\", \"count\": 1}", &s1);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_int_equal(s1.next, 2);
	assert_int_equal(result_count(&o, "errors"), 1);
	assert_int_equal(result_count(&o, "successful"), 1);
	json_decref(o.json);
	o = run("{\"success_condition\": \"result < 0.01\", \"count\": 1}", &s2);
	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_int_equal(s2.next, 4);
	json_decref(o.json);
}

/* Without an interval, a measurement that could not be taken is taken again
 * ANALYSIS_ERROR_RETRY_MS (10 s) after it began: not at once, as an
 * interval of 0 would have it. */
static void without_an_interval_an_error_is_not_taken_again_at_once(void **state)
{
	char err[256];
	struct outcome o = {0};
	struct script s = {.kinds = "ev", .values = {0, 0.001}};
	struct event_base *base = event_base_new();
	json_t *spec = json_pack("{s:s, s:i, s:i, s:{s:s}}", "success_condition", "result < 0.01",
				 "count", 1, "interval_ms", 0, "provider", "type", "prometheus");
	(void)state;

	current = &s;
	struct analysis *a = analysis_start(base, spec, &fake, on_done, &o, err, sizeof(err));
	assert_non_null(a);
	struct timeval quick = {0, 200 * 1000};
	event_base_loopexit(base, &quick);
	event_base_dispatch(base);
	assert_int_equal(o.done, 0);
	assert_int_equal(s.starts, 1);
	analysis_stop(a);
	event_base_dispatch(base);
	assert_int_equal(o.done, 1);
	json_decref(o.json);
	json_decref(spec);
	event_base_free(base);
}

static void stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	analysis_stop(arg);
}

static void a_background_analysis_runs_until_stopped(void **state)
{
	char err[256];
	struct outcome o = {0};
	struct event_base *base = event_base_new();
	struct script s = {.kinds =
			       "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"};
	json_t *spec = json_pack("{s:s,s:i,s:i,s:{s:s}}", "success_condition", "result < 1",
				 "count", 0, "interval_ms", 5, "provider", "type", "web");
	struct timeval tv = {0, 30000};
	(void)state;

	current = &s;
	struct analysis *a = analysis_start(base, spec, &fake, on_done, &o, err, sizeof(err));
	assert_non_null(a);
	event_base_once(base, -1, EV_TIMEOUT, stop, a, &tv);
	event_base_dispatch(base);
	assert_int_equal(o.done, 1);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_true(s.next >= 2);
	assert_non_null(strstr(json_string_value(json_object_get(o.json, "message")), "stopped"));
	json_decref(o.json);
	json_decref(spec);
	event_base_free(base);
}

/* The Prometheus provider on answers of each form, from a stub: what is
 * data, what is no data (noData pass judges it), what is an error. */
static void prometheus_answers_are_data_no_data_or_errors(void **state)
{
	static const struct {
		int status;
		const char *body, *verdict, *message;
	} rows[] = {
	    {200,
	     "{\"status\": \"success\", \"data\": {\"resultType\": \"vector\", \"result\": "
	     "[{\"metric\": {}, \"value\": [1, \"0.5\"]}]}}",
	     "Failed", "result[0] < 0.1 does not hold for 0.5"},
	    {200,
	     "{\"status\": \"success\", \"data\": {\"resultType\": \"scalar\", \"result\": [1, "
	     "\"0.01\"]}}",
	     "Successful", "result[0] < 0.1 holds for 0.01"},
	    {200,
	     "{\"status\": \"success\", \"data\": {\"resultType\": \"vector\", \"result\": []}}",
	     "Successful", "no data (the query returned no series): noData is pass"},
	    {200,
	     "{\"status\": \"success\", \"data\": {\"resultType\": \"vector\", \"result\": "
	     "null}}",
	     "Error", "prometheus: a vector without a list of series in the answer from "},
	    {200, "{\"status\": \"success\", \"data\": {\"resultType\": \"vector\"}}", "Error",
	     "prometheus: a vector without a list of series in the answer from "},
	    {200,
	     "{\"status\": \"success\", \"data\": {\"resultType\": \"string\", \"result\": [1, "
	     "\"x\"]}}",
	     "Error",
	     "prometheus: the query gives a string; an instant vector or scalar is needed"},
	    {400,
	     "{\"status\": \"error\", \"errorType\": \"bad_data\", \"error\": \"parse error\"}",
	     "Error", "prometheus: bad_data: parse error"},
	    {503, "<html>busy</html>", "Error", "prometheus: HTTP 503 from "},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct event_base *base = event_base_new();
		struct outcome o = {0};
		struct apistub prom;
		char err[256], address[64];
		json_t *spec;

		assert_int_equal(apistub_start(&prom, base), 0);
		apistub_reply(&prom, rows[i].status, rows[i].body);
		snprintf(address, sizeof(address), "http://127.0.0.1:%d", prom.port);
		/* No error tolerated: an error ends it at once, as data does. */
		spec =
		    json_pack("{s:s, s:s, s:i, s:{s:s, s:s, s:s}}", "success_condition",
			      "result[0] < 0.1", "no_data", "pass", "consecutive_error_limit", 0,
			      "provider", "type", "prometheus", "address", address, "query", "up");
		struct analysis *a =
		    analysis_start(base, spec, NULL, on_done, &o, err, sizeof(err));
		if (!a)
			fail_msg("%s", err);
		/* The stub's listener keeps the loop going: until done. */
		for (int k = 0; k < 100 && !o.done; k++)
			run_for(base, 50);
		assert_int_equal(o.done, 1);
		if (strcmp(measurement(&o, 0, "verdict"), rows[i].verdict) != 0 ||
		    strncmp(measurement(&o, 0, "message"), rows[i].message,
			    strlen(rows[i].message)) != 0)
			fail_msg("row %zu: %s \"%s\"", i, measurement(&o, 0, "verdict"),
				 measurement(&o, 0, "message"));
		json_decref(o.json);
		json_decref(spec);
		apistub_stop(&prom);
		event_base_free(base);
	}
}

/* --- carried on after its worker died ----------------------------------- */

/* The progress of an analysis begun ago_ms ago whose measurements, one
 * every 1 s from then, were judged as verdicts says ('F'ailed,
 * 'S'uccessful, 'E'rror), as analysis_progress gives it. */
static json_t *progress(const char *verdicts, long long ago_ms)
{
	static const char *const names[] = {"Failed", "Successful", "Error"};
	int64_t began = clock_now_ms() - ago_ms;
	json_t *list = json_array();
	long long count[3] = {0};

	for (size_t i = 0; verdicts[i]; i++) {
		int k = verdicts[i] == 'F' ? 0 : verdicts[i] == 'S' ? 1 : 2;
		count[k]++;
		json_array_append_new(list, json_pack("{s:I, s:I, s:i, s:[f], s:s, s:s}", "n",
						      (json_int_t)i + 1, "at",
						      (json_int_t)(began + 1000 * (int64_t)i), "ms",
						      3, "values", k == 1 ? 0.001 : 0.5, "verdict",
						      names[k], "message", names[k]));
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:i, s:I, s:o}", "successful", (json_int_t)count[1],
			 "failed", (json_int_t)count[0], "inconclusive", (json_int_t)0, "errors",
			 (json_int_t)count[2], "consecutive_errors", 0, "started",
			 (json_int_t)began, "measurements", list);
}

static long long result_count(const struct outcome *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o->json, key));
}

/* A failure recorded before its worker died counts after: the next failure
 * passes failureLimit 1 (begun afresh, it would be tolerated and the two
 * passing measurements after it would make the analysis Successful). The
 * measurement before is kept as it was. */
static void a_resumed_analysis_keeps_its_failures_against_its_limit(void **state)
{
	struct script s = {.kinds = "vvv", .values = {0.5, 0.001, 0.001}};
	json_t *from = progress("F", 5000);
	struct outcome o = run_from("{\"success_condition\": \"result < 0.01\", \"failure_limit\": "
				    "1, \"count\": 3, \"interval_ms\": 1000}",
				    from, &s);
	json_t *list = json_object_get(o.json, "measurements");
	(void)state;

	assert_int_equal(o.verdict, ANALYSIS_FAILED);
	assert_int_equal(s.next, 1);
	assert_int_equal(result_count(&o, "failed"), 2);
	assert_int_equal(json_array_size(list), 2);
	assert_true(json_equal(json_array_get(list, 0),
			       json_array_get(json_object_get(from, "measurements"), 0)));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 1), "n")), 2);
	assert_string_equal(json_string_value(json_object_get(o.json, "message")),
			    "2 of 2 measurements failed (failureLimit 1): result < 0.01 does not "
			    "hold for 0.5");
	assert_int_equal(json_integer_value(json_object_get(o.json, "started")),
			 json_integer_value(json_object_get(from, "started")));
	json_decref(from);
	json_decref(o.json);
}

/* Its count holds across both: two taken before, one after. One that had
 * taken them all is decided without measuring again. */
static void a_resumed_analysis_takes_no_more_than_its_count(void **state)
{
	struct script s1 = {.kinds = "vvv", .values = {0.001, 0.001, 0.001}};
	struct script s2 = {.kinds = "v", .values = {0.001}};
	json_t *two = progress("SS", 5000), *three = progress("SSS", 5000);
	const char *spec = "{\"success_condition\": \"result < 0.01\", \"count\": 3, "
			   "\"interval_ms\": 1000}";
	(void)state;

	struct outcome o = run_from(spec, two, &s1);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_int_equal(s1.next, 1);
	assert_int_equal(result_count(&o, "successful"), 3);
	assert_int_equal(json_array_size(json_object_get(o.json, "measurements")), 3);
	json_decref(o.json);
	o = run_from(spec, three, &s2);
	assert_int_equal(o.verdict, ANALYSIS_SUCCESSFUL);
	assert_int_equal(s2.next, 0);
	json_decref(o.json);
	json_decref(two);
	json_decref(three);
}

/* The next measurement comes an interval after the last one began: the
 * rest of it when it has not passed, at once when it has. */
static void a_resumed_analysis_measures_an_interval_after_its_last_measurement(void **state)
{
	struct script s1 = {.kinds = "v", .values = {0.001}};
	struct script s2 = {.kinds = "v", .values = {0.001}};
	json_t *recent = progress("S", 500), *old = progress("S", 5000);
	const char *spec = "{\"success_condition\": \"result < 0.01\", \"count\": 2, "
			   "\"interval_ms\": 1000}";
	int64_t t0 = clock_mono_ms();
	(void)state;

	struct outcome o = run_from(spec, recent, &s1);
	assert_int_equal(s1.starts, 1);
	assert_in_range(s1.started[0] - t0, 400, 900);
	json_decref(o.json);
	t0 = clock_mono_ms();
	o = run_from(spec, old, &s2);
	assert_int_equal(s2.starts, 1);
	assert_in_range(s2.started[0] - t0, 0, 300);
	json_decref(o.json);
	json_decref(recent);
	json_decref(old);
}

/* Errors in a row run on across both, whether the progress counts them or
 * only its measurements show them. */
static void a_resumed_analysis_keeps_its_errors_in_a_row(void **state)
{
	const char *spec = "{\"success_condition\": \"result < 0.01\", \"count\": 5, "
			   "\"interval_ms\": 1, \"consecutive_error_limit\": 2}";
	json_t *counted = progress("SEE", 5000), *shown = progress("SEE", 5000);
	(void)state;

	json_object_set_new(counted, "consecutive_errors", json_integer(2));
	json_object_del(shown, "consecutive_errors");
	for (int i = 0; i < 2; i++) {
		struct script s = {.kinds = "evv", .values = {0, 0.001, 0.001}};
		struct outcome o = run_from(spec, i ? shown : counted, &s);
		assert_int_equal(o.verdict, ANALYSIS_FAILED);
		assert_int_equal(s.next, 1);
		assert_int_equal(result_count(&o, "consecutive_errors"), 3);
		json_decref(o.json);
	}
	json_decref(counted);
	json_decref(shown);
}

static void a_spec_without_conditions_is_refused(void **state)
{
	char err[256];
	json_t *spec = json_pack("{s:{s:s}}", "provider", "type", "web");
	(void)state;

	assert_null(analysis_start(NULL, spec, &fake, on_done, NULL, err, sizeof(err)));
	assert_string_equal(err, "a success_condition or a failure_condition is required");
	json_decref(spec);
}

/* --- the pipeline file ---------------------------------------------------- */

/* The analysis of yaml, as a step's or (background) as a canary's
 * background analysis. */
static int load(const char *yaml, int background, json_t **out, char *err, size_t errlen)
{
	struct config_doc doc;
	struct config_check ck = {.file = "p.yaml", .err = err, .errlen = errlen};
	const struct config_doc_node *n;

	if (config_doc_load_text(&doc, "p.yaml", yaml, strlen(yaml), err, errlen) < 0)
		return -1;
	n = config_doc_get(doc.top, "analysis");
	int rc = background ? analysis_load_background(&ck, n, 0, out) : analysis_load(&ck, n, out);
	config_doc_clear(&doc);
	return rc;
}

static void a_file_analysis_loads_into_the_normalized_form(void **state)
{
	char err[256];
	json_t *spec;
	(void)state;

	assert_int_equal(load("analysis:\n"
			      "  interval: 30s\n"
			      "  count: 5\n"
			      "  successCondition: result[0] < 0.01\n"
			      "  failureLimit: 1\n"
			      "  noData: fail\n"
			      "  provider:\n"
			      "    prometheus: {address: 'http://prom:9090', query: 'up', "
			      "timeout: 2s}\n",
			      0, &spec, err, sizeof(err)),
			 0);
	char *text = json_dumps(spec, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(text,
			    "{\"consecutive_error_limit\":4,\"count\":5,\"failure_limit\":1,"
			    "\"inconclusive_limit\":0,\"initial_delay_ms\":0,\"interval_ms\":30000,"
			    "\"no_data\":\"fail\",\"provider\":{\"address\":\"http://prom:9090\","
			    "\"query\":\"up\",\"timeout_ms\":2000,\"type\":\"prometheus\"},"
			    "\"success_condition\":\"result[0] < 0.01\"}");
	free(text);
	json_decref(spec);

	/* In the background, an interval without a count: until stopped. */
	assert_int_equal(load("analysis:\n"
			      "  interval: 10s\n"
			      "  failureCondition: result > 5\n"
			      "  provider:\n"
			      "    web: {url: 'http://h/x', method: POST, body: {a: 1}, "
			      "jsonPath: '$.data.items[0].value', headers: {X-Token: abc}}\n",
			      1, &spec, err, sizeof(err)),
			 0);
	assert_int_equal(json_integer_value(json_object_get(spec, "count")), 0);
	json_t *p = json_object_get(spec, "provider");
	assert_string_equal(json_string_value(json_object_get(p, "body")), "{\"a\":1}");
	assert_string_equal(json_string_value(json_object_get(p, "json_path")),
			    "$.data.items[0].value");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(p, "headers"), "X-Token")), "abc");
	json_decref(spec);
}

static void file_errors_name_the_key_path(void **state)
{
	static const struct {
		const char *yaml, *err;
	} rows[] = {
	    {"analysis:\n  successCondition: result <\n  provider: {web: {url: 'http://h', "
	     "jsonPath: a}}\n",
	     "p.yaml:2:21: analysis.successCondition: column 9: expected a number or result"},
	    {"analysis:\n  provider: {web: {url: 'http://h', jsonPath: a}}\n",
	     "p.yaml:2:3: analysis.successCondition: missing required key (or failureCondition"},
	    {"analysis:\n  successCondition: result < 1\n  noData: maybe\n  provider: {web: {url: "
	     "'http://h', jsonPath: a}}\n",
	     "p.yaml:3:11: analysis.noData: expected fail, inconclusive or pass"},
	    {"analysis:\n  successCondition: result < 1\n  count: 3\n  provider: {web: {url: "
	     "'http://h', jsonPath: a}}\n",
	     "p.yaml:3:10: analysis.count: more than one measurement needs an interval"},
	    {"analysis:\n  successCondition: result < 1\n  interval: 1m\n  provider: {web: {url: "
	     "'http://h', jsonPath: a}}\n",
	     "p.yaml:2:3: analysis.count: missing required key (with an interval; only a canary's "
	     "background analysis measures until stopped)"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {web: {url: 'ftp://h', "
	     "jsonPath: a}}\n",
	     "p.yaml:3:25: analysis.provider.web.url: expected an http:// or https:// URL"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {web: {url: 'http://h', "
	     "jsonPath: 'a[x]'}}\n",
	     "p.yaml:3:47: analysis.provider.web.jsonPath: column 3: expected an index or a "
	     "quoted key"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {web: {url: 'http://h', "
	     "jsonPath: '{$.data.ratio}'}}\n",
	     "p.yaml:3:47: analysis.provider.web.jsonPath: column 1: write the path without "
	     "braces, "
	     "as $.data.ratio"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {web: {url: 'http://h', "
	     "jsonPath: '$.data.{ratio}'}}\n",
	     "p.yaml:3:47: analysis.provider.web.jsonPath: column 8: unexpected character in a "
	     "key"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {prometheus: {address: "
	     "'http://h'}}\n",
	     "p.yaml:3:26: analysis.provider.prometheus.query: missing required key"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {prometheus: {address: "
	     "'http://h:9090/api/v1/query/', query: up}}\n",
	     "p.yaml:3:36: analysis.provider.prometheus.address: expected the server's address, "
	     "as http://prometheus:9090 (/api/v1/query and the query are added)"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {prometheus: {address: "
	     "'http://h:9090/?query=up', query: up}}\n",
	     "p.yaml:3:36: analysis.provider.prometheus.address: expected the server's address, "
	     "as http://prometheus:9090 (/api/v1/query and the query are added)"},
	    {"analysis:\n  successCondition: result < 1\n  provider: {datadog: {}}\n",
	     "p.yaml:3:14: analysis.provider.datadog: unknown key"},
	    {"analysis:\n  successCondition: result < 1\n  failureLimit: -1\n  provider: {web: "
	     "{url: 'http://h', jsonPath: a}}\n",
	     "p.yaml:3:17: analysis.failureLimit: "},
	};
	char err[512];
	json_t *spec;
	(void)state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (load(rows[i].yaml, 0, &spec, err, sizeof(err)) == 0)
			fail_msg("row %zu loaded", i);
		assert_null(spec);
		if (strncmp(err, rows[i].err, strlen(rows[i].err)) != 0)
			fail_msg("row %zu: got \"%s\", want \"%s\"", i, err, rows[i].err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(all_measurements_passing_is_successful_and_keeps_each_value),
	    cmocka_unit_test(one_failure_fails_at_once_with_the_default_failure_limit),
	    cmocka_unit_test(failures_within_the_failure_limit_still_succeed),
	    cmocka_unit_test(neither_condition_met_is_inconclusive),
	    cmocka_unit_test(no_data_follows_the_no_data_setting),
	    cmocka_unit_test(a_message_names_nan_and_infinities_as_recorded),
	    cmocka_unit_test(a_value_is_a_decimal_number_nan_or_an_infinity),
	    cmocka_unit_test(errors_in_a_row_past_the_limit_fail_and_errors_alone_never_pass),
	    cmocka_unit_test(a_measurement_that_could_not_be_taken_is_not_counted),
	    cmocka_unit_test(without_an_interval_an_error_is_not_taken_again_at_once),
	    cmocka_unit_test(a_background_analysis_runs_until_stopped),
	    cmocka_unit_test(prometheus_answers_are_data_no_data_or_errors),
	    cmocka_unit_test(a_resumed_analysis_keeps_its_failures_against_its_limit),
	    cmocka_unit_test(a_resumed_analysis_takes_no_more_than_its_count),
	    cmocka_unit_test(a_resumed_analysis_measures_an_interval_after_its_last_measurement),
	    cmocka_unit_test(a_resumed_analysis_keeps_its_errors_in_a_row),
	    cmocka_unit_test(a_spec_without_conditions_is_refused),
	    cmocka_unit_test(a_file_analysis_loads_into_the_normalized_form),
	    cmocka_unit_test(file_errors_name_the_key_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
