/* analysis: the measurement schedule and the verdicts of an analysis, and
 * its specification's check. */
#include "stages/analysis.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "stages/condition.h"

#define MAX_INTERVAL_MS	 (24LL * 3600 * 1000)
#define MAX_TIMEOUT_MS	 (5LL * 60 * 1000)
#define MAX_COUNT	 100000
#define MAX_LIMIT	 100000
#define SHOWN_IN_MESSAGE 8

enum mverdict { M_SUCCESSFUL, M_FAILED, M_INCONCLUSIVE, M_ERROR };

static const char *const mverdict_names[] = {"Successful", "Failed", "Inconclusive", "Error"};

struct analysis {
	struct event_base *base;
	const struct analysis_provider *provider;
	json_t *spec;
	struct condition *success, *failure;
	long long count, interval_ms, initial_delay_ms;
	long long failure_limit, inconclusive_limit, error_limit;
	enum mverdict no_data;
	struct event *timer;
	struct event *done_ev;
	void *measuring;
	int64_t measure_mono; /* when the measurement in flight (or the last) started */
	int64_t measure_wall;
	long long taken, successful, failed, inconclusive, errors, errors_in_row;
	long long dropped;
	int64_t started; /* wall clock, ms: when it began, its first start's when resumed */
	json_t *json;	 /* the result so far */
	int decided;
	struct analysis_result result;
	analysis_done_cb done;
	void (*measured)(void *arg);
	void *arg;
};

static void *real_start(struct event_base *base, const json_t *provider, metric_done_cb done,
			void *arg, char *err, size_t errlen)
{
	return metric_start(base, provider, done, arg, err, errlen);
}

static void real_cancel(void *measurement)
{
	metric_cancel(measurement);
}

static const struct analysis_provider metric_provider = {.start = real_start,
							 .cancel = real_cancel};

const char *analysis_verdict_name(enum analysis_verdict v)
{
	switch (v) {
	case ANALYSIS_SUCCESSFUL:
		return "Successful";
	case ANALYSIS_FAILED:
		return "Failed";
	case ANALYSIS_INCONCLUSIVE:
		return "Inconclusive";
	}
	return "Failed";
}

/* --- the record --------------------------------------------------------- */

static json_t *value_json(double v)
{
	if (isnan(v))
		return json_string("NaN");
	if (isinf(v))
		return json_string(v > 0 ? "+Inf" : "-Inf");
	return json_real(v);
}

/* A value in a message, with the words value_json records ("NaN", "+Inf")
 * where printf would say "nan" or "inf". */
static int format_value(char *out, size_t outlen, const char *prefix, double v)
{
	if (isnan(v))
		return snprintf(out, outlen, "%sNaN", prefix);
	if (isinf(v))
		return snprintf(out, outlen, "%s%s", prefix, v > 0 ? "+Inf" : "-Inf");
	return snprintf(out, outlen, "%s%g", prefix, v);
}

/* "0.12" or "[0.12, 0.3, ...]", for messages. */
static void format_values(const double *values, size_t n, char *out, size_t outlen)
{
	size_t used = 0;

	if (n == 1) {
		format_value(out, outlen, "", values[0]);
		return;
	}
	used += (size_t)snprintf(out, outlen, "[");
	for (size_t i = 0; i < n && i < SHOWN_IN_MESSAGE && used < outlen; i++)
		used += (size_t)format_value(out + used, outlen - used, i ? ", " : "", values[i]);
	if (used < outlen)
		snprintf(out + used, outlen - used, "%s]", n > SHOWN_IN_MESSAGE ? ", ..." : "");
}

static void record(struct analysis *a, const double *values, size_t n, enum mverdict v,
		   const struct condition *judge, const char *message)
{
	json_t *list = json_object_get(a->json, "measurements");
	json_t *m = json_object();
	json_t *vals = json_array();

	if (!m || !vals) {
		json_decref(m);
		json_decref(vals);
		return;
	}
	for (size_t i = 0; i < n && i < ANALYSIS_MAX_SHOWN_VALUES; i++)
		json_array_append_new(vals, value_json(values[i]));
	json_object_set_new(m, "n", json_integer(a->taken));
	json_object_set_new(m, "at", json_integer(a->measure_wall));
	json_object_set_new(m, "ms", json_integer(clock_mono_ms() - a->measure_mono));
	json_object_set_new(m, "values", vals);
	if (n > ANALYSIS_MAX_SHOWN_VALUES)
		json_object_set_new(m, "values_total", json_integer((json_int_t)n));
	json_object_set_new(m, "verdict", json_string(mverdict_names[v]));
	if (judge)
		json_object_set_new(m, "condition", json_string(condition_text(judge)));
	json_object_set_new(m, "message", json_string(message));
	if (json_array_size(list) >= ANALYSIS_MAX_KEPT) {
		json_array_remove(list, 0);
		a->dropped++;
		json_object_set_new(a->json, "dropped", json_integer(a->dropped));
	}
	json_array_append_new(list, m);
	json_object_set_new(a->json, "successful", json_integer(a->successful));
	json_object_set_new(a->json, "failed", json_integer(a->failed));
	json_object_set_new(a->json, "inconclusive", json_integer(a->inconclusive));
	json_object_set_new(a->json, "errors", json_integer(a->errors));
	json_object_set_new(a->json, "consecutive_errors", json_integer(a->errors_in_row));
}

/* --- ending ------------------------------------------------------------- */

static void stop_sources(struct analysis *a)
{
	if (a->measuring) {
		a->provider->cancel(a->measuring);
		a->measuring = NULL;
	}
	if (a->timer)
		evtimer_del(a->timer);
}

static void decide(struct analysis *a, enum analysis_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void decide(struct analysis *a, enum analysis_verdict v, const char *fmt, ...)
{
	char message[1024];
	va_list ap;

	if (a->decided)
		return;
	a->decided = 1;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	stop_sources(a);
	json_object_set_new(a->json, "verdict", json_string(analysis_verdict_name(v)));
	json_object_set_new(a->json, "message", json_string(message));
	a->result.verdict = v;
	a->result.message = json_string_value(json_object_get(a->json, "message"));
	a->result.json = a->json;
	event_active(a->done_ev, EV_TIMEOUT, 0);
}

/* The measurements that were taken and judged: those count is about. */
static long long judged(const struct analysis *a)
{
	return a->successful + a->failed + a->inconclusive;
}

/* The verdict when no limit was passed: after count measurements, or when
 * stopped. */
static void decide_at_end(struct analysis *a, const char *why)
{
	if (a->taken > 0 && judged(a) == 0) {
		decide(a, ANALYSIS_FAILED, "%s, and none of the %lld measurements could be taken",
		       why, a->taken);
		return;
	}
	decide(a, ANALYSIS_SUCCESSFUL,
	       "%s: %lld successful, %lld failed (failureLimit %lld), %lld inconclusive "
	       "(inconclusiveLimit %lld), %lld errors",
	       why, a->successful, a->failed, a->failure_limit, a->inconclusive,
	       a->inconclusive_limit, a->errors);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct analysis *a = arg;
	(void)fd;
	(void)what;

	a->done(&a->result, a->arg);
	analysis_free(a);
}

/* --- measuring ---------------------------------------------------------- */

static void on_measured(const struct metric_sample *s, void *arg);

static void take_measurement(struct analysis *a)
{
	char err[512];

	a->taken++;
	a->measure_mono = clock_mono_ms();
	a->measure_wall = clock_now_ms();
	a->measuring = a->provider->start(a->base, json_object_get(a->spec, "provider"),
					  on_measured, a, err, sizeof(err));
	if (!a->measuring) {
		struct metric_sample s = {.failed = 1};
		snprintf(s.message, sizeof(s.message), "%s", err);
		on_measured(&s, a);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	take_measurement(arg);
}

static void schedule(struct analysis *a, long long delay_ms)
{
	struct timeval tv;

	if (delay_ms < 0)
		delay_ms = 0;
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
	/* From now, not from the time libevent cached for this turn of the
	 * loop: the delay was reckoned from the clock read just now. */
	event_base_update_cache_time(a->base);
	evtimer_add(a->timer, &tv);
}

static int only_nan(const double *values, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isnan(values[i]))
			return 0;
	return 1;
}

/* Judges one sample: the verdict, the condition that decided it and why. */
static enum mverdict judge(const struct analysis *a, const struct metric_sample *s,
			   const struct condition **by, char *why, size_t whylen)
{
	char shown[256], err[256];
	int met;

	*by = NULL;
	if (s->failed) {
		snprintf(why, whylen, "%s", s->message);
		return M_ERROR;
	}
	if (s->n == 0 || only_nan(s->values, s->n)) {
		snprintf(why, whylen, "no data (%s): noData is %s",
			 s->n == 0 ? s->message : "only NaN",
			 json_string_value(json_object_get(a->spec, "no_data")));
		return a->no_data;
	}
	format_values(s->values, s->n, shown, sizeof(shown));
	if (a->failure) {
		*by = a->failure;
		met = condition_eval(a->failure, s->values, s->n, err, sizeof(err));
		if (met < 0)
			goto eval_error;
		if (met) {
			snprintf(why, whylen, "%s holds for %s", condition_text(a->failure), shown);
			return M_FAILED;
		}
	}
	if (!a->success) {
		snprintf(why, whylen, "%s does not hold for %s", condition_text(a->failure), shown);
		return M_SUCCESSFUL;
	}
	*by = a->success;
	met = condition_eval(a->success, s->values, s->n, err, sizeof(err));
	if (met < 0)
		goto eval_error;
	snprintf(why, whylen, "%s %s for %s", condition_text(a->success),
		 met ? "holds" : "does not hold", shown);
	if (met)
		return M_SUCCESSFUL;
	return a->failure ? M_INCONCLUSIVE : M_FAILED;
eval_error:
	snprintf(why, whylen, "%s: %s (values %s)", condition_text(*by), err, shown);
	return M_ERROR;
}

/* After a measurement (why: its message): a limit passed, the count taken,
 * or the next measurement an interval after this one began (one that could
 * not be taken is taken again, ANALYSIS_ERROR_RETRY_MS after it began when
 * there is no interval). */
static void carry_on(struct analysis *a, const char *why)
{
	if (a->failed > a->failure_limit)
		decide(a, ANALYSIS_FAILED,
		       "%lld of %lld measurements failed (failureLimit %lld): %s", a->failed,
		       judged(a), a->failure_limit, why);
	else if (a->errors_in_row > a->error_limit)
		decide(a, ANALYSIS_FAILED,
		       "%lld measurements in a row could not be taken "
		       "(consecutiveErrorLimit %lld): %s",
		       a->errors_in_row, a->error_limit, why);
	else if (a->inconclusive > a->inconclusive_limit)
		decide(a, ANALYSIS_INCONCLUSIVE,
		       "%lld of %lld measurements inconclusive (inconclusiveLimit %lld): %s",
		       a->inconclusive, judged(a), a->inconclusive_limit, why);
	else if (a->count > 0 && judged(a) >= a->count)
		decide_at_end(a, "all measurements taken");
	else
		schedule(a,
			 a->measure_mono +
			     (a->errors_in_row > 0 && a->interval_ms == 0 ? ANALYSIS_ERROR_RETRY_MS
									  : a->interval_ms) -
			     clock_mono_ms());
}

static void on_measured(const struct metric_sample *s, void *arg)
{
	struct analysis *a = arg;
	const struct condition *by;
	char why[768];
	enum mverdict v;

	a->measuring = NULL;
	v = judge(a, s, &by, why, sizeof(why));
	switch (v) {
	case M_SUCCESSFUL:
		a->successful++;
		a->errors_in_row = 0;
		break;
	case M_FAILED:
		a->failed++;
		a->errors_in_row = 0;
		break;
	case M_INCONCLUSIVE:
		a->inconclusive++;
		a->errors_in_row = 0;
		break;
	case M_ERROR:
		a->errors++;
		a->errors_in_row++;
		break;
	}
	record(a, s->failed ? NULL : s->values, s->failed ? 0 : s->n, v, by, why);
	if (a->measured)
		a->measured(a->arg);
	carry_on(a, why);
}

void analysis_on_measured(struct analysis *a, void (*measured)(void *arg))
{
	a->measured = measured;
}

/* --- starting ----------------------------------------------------------- */

static long long spec_int(const json_t *spec, const char *key, long long dflt)
{
	const json_t *v = json_object_get(spec, key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

static int spec_condition(const json_t *spec, const char *key, struct condition **out, char *err,
			  size_t errlen)
{
	const json_t *v = json_object_get(spec, key);
	char why[256];

	*out = NULL;
	if (!v)
		return 0;
	if (json_is_string(v))
		*out = condition_parse(json_string_value(v), why, sizeof(why));
	else
		snprintf(why, sizeof(why), "not a string");
	if (!*out) {
		snprintf(err, errlen, "%s: %s", key, why);
		return -1;
	}
	return 0;
}

static int read_spec(struct analysis *a, char *err, size_t errlen)
{
	const char *no_data = json_string_value(json_object_get(a->spec, "no_data"));

	if (spec_condition(a->spec, "success_condition", &a->success, err, errlen) < 0 ||
	    spec_condition(a->spec, "failure_condition", &a->failure, err, errlen) < 0)
		return -1;
	if (!a->success && !a->failure) {
		snprintf(err, errlen, "a success_condition or a failure_condition is required");
		return -1;
	}
	if (!json_is_object(json_object_get(a->spec, "provider"))) {
		snprintf(err, errlen, "provider: required");
		return -1;
	}
	a->count = spec_int(a->spec, "count", 1);
	a->interval_ms = spec_int(a->spec, "interval_ms", 0);
	a->initial_delay_ms = spec_int(a->spec, "initial_delay_ms", 0);
	a->failure_limit = spec_int(a->spec, "failure_limit", 0);
	a->inconclusive_limit = spec_int(a->spec, "inconclusive_limit", 0);
	a->error_limit = spec_int(a->spec, "consecutive_error_limit", ANALYSIS_DEFAULT_ERROR_LIMIT);
	if (a->count < 0 || a->interval_ms < 0 || a->initial_delay_ms < 0 || a->failure_limit < 0 ||
	    a->inconclusive_limit < 0 || a->error_limit < 0) {
		snprintf(err, errlen, "negative count, duration or limit");
		return -1;
	}
	if (!no_data || strcmp(no_data, "inconclusive") == 0) {
		a->no_data = M_INCONCLUSIVE;
		no_data = "inconclusive";
	} else if (strcmp(no_data, "fail") == 0) {
		a->no_data = M_FAILED;
	} else if (strcmp(no_data, "pass") == 0) {
		a->no_data = M_SUCCESSFUL;
	} else {
		snprintf(err, errlen, "no_data: expected fail, inconclusive or pass");
		return -1;
	}
	json_object_set_new(a->spec, "no_data", json_string(no_data));
	return 0;
}

static int init_json(struct analysis *a)
{
	json_t *j = json_object();

	a->json = j;
	if (!j)
		return -1;
	if (a->success)
		json_object_set_new(j, "success_condition",
				    json_string(condition_text(a->success)));
	if (a->failure)
		json_object_set_new(j, "failure_condition",
				    json_string(condition_text(a->failure)));
	json_object_set_new(j, "failure_limit", json_integer(a->failure_limit));
	json_object_set_new(j, "inconclusive_limit", json_integer(a->inconclusive_limit));
	json_object_set_new(j, "no_data", json_incref(json_object_get(a->spec, "no_data")));
	json_object_set_new(j, "successful", json_integer(0));
	json_object_set_new(j, "failed", json_integer(0));
	json_object_set_new(j, "inconclusive", json_integer(0));
	json_object_set_new(j, "errors", json_integer(0));
	json_object_set_new(j, "consecutive_errors", json_integer(0));
	json_object_set_new(j, "started", json_integer(a->started));
	return json_object_set_new(j, "measurements", json_array());
}

/* A count of from's, never negative. */
static long long saved_count(const json_t *from, const char *key, long long dflt)
{
	long long n = spec_int(from, key, dflt);
	return n > 0 ? n : 0;
}

/* The Errors at the end of list: the errors in a row of progress saved
 * without its count of them. */
static long long trailing_errors(const json_t *list)
{
	size_t i = json_array_size(list);
	long long n = 0;

	for (; i > 0; i--, n++) {
		const char *v =
		    json_string_value(json_object_get(json_array_get(list, i - 1), "verdict"));
		if (!v || strcmp(v, mverdict_names[M_ERROR]) != 0)
			break;
	}
	return n;
}

/* Takes up what the analysis measured before it was stopped (from, its
 * progress as analysis_progress gave it): its counts, the measurements kept
 * and when it began, so that its limits, its count and its schedule run on
 * across the two. -1 when out of memory. */
static int take_up(struct analysis *a, const json_t *from)
{
	const json_t *list = json_object_get(from, "measurements");
	json_t *kept = json_is_array(list) ? json_deep_copy(list) : json_array();

	if (!kept)
		return -1;
	a->successful = saved_count(from, "successful", 0);
	a->failed = saved_count(from, "failed", 0);
	a->inconclusive = saved_count(from, "inconclusive", 0);
	a->errors = saved_count(from, "errors", 0);
	a->errors_in_row = saved_count(from, "consecutive_errors", trailing_errors(kept));
	a->dropped = saved_count(from, "dropped", 0);
	a->taken = a->successful + a->failed + a->inconclusive + a->errors;
	if (json_is_integer(json_object_get(from, "started")))
		a->started = json_integer_value(json_object_get(from, "started"));
	json_object_set_new(a->json, "measurements", kept);
	json_object_set_new(a->json, "successful", json_integer(a->successful));
	json_object_set_new(a->json, "failed", json_integer(a->failed));
	json_object_set_new(a->json, "inconclusive", json_integer(a->inconclusive));
	json_object_set_new(a->json, "errors", json_integer(a->errors));
	json_object_set_new(a->json, "consecutive_errors", json_integer(a->errors_in_row));
	json_object_set_new(a->json, "started", json_integer(a->started));
	if (a->dropped)
		json_object_set_new(a->json, "dropped", json_integer(a->dropped));
	return 0;
}

/* The first measurement after initial_delay; taken up, the next one
 * interval after the last one began (at once when that is past), or the
 * verdict its measurements call for already. */
static void begin(struct analysis *a)
{
	const json_t *list = json_object_get(a->json, "measurements");
	const json_t *last = json_array_get(list, json_array_size(list) - 1);
	int64_t now = clock_now_ms();
	const char *why;

	if (a->taken == 0) {
		schedule(a, a->initial_delay_ms - (now > a->started ? now - a->started : 0));
		return;
	}
	a->measure_wall = json_integer_value(json_object_get(last, "at"));
	a->measure_mono = clock_mono_ms() - (now > a->measure_wall ? now - a->measure_wall : 0);
	why = json_string_value(json_object_get(last, "message"));
	carry_on(a, why ? why : "");
}

struct analysis *analysis_start(struct event_base *base, const json_t *spec,
				const struct analysis_provider *provider, analysis_done_cb done,
				void *arg, char *err, size_t errlen)
{
	return analysis_resume(base, spec, NULL, provider, done, arg, err, errlen);
}

struct analysis *analysis_resume(struct event_base *base, const json_t *spec, const json_t *from,
				 const struct analysis_provider *provider, analysis_done_cb done,
				 void *arg, char *err, size_t errlen)
{
	struct analysis *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->base = base;
	a->provider = provider ? provider : &metric_provider;
	a->done = done;
	a->arg = arg;
	a->spec = json_deep_copy(spec);
	if (!json_is_object(a->spec)) {
		snprintf(err, errlen, "expected an object");
		goto fail;
	}
	if (read_spec(a, err, errlen) < 0)
		goto fail;
	a->started = clock_now_ms();
	a->timer = evtimer_new(base, on_timer, a);
	a->done_ev = event_new(base, -1, 0, on_done, a);
	if (!a->timer || !a->done_ev || init_json(a) < 0 || (from && take_up(a, from) < 0)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	begin(a);
	return a;
fail:
	analysis_free(a);
	return NULL;
}

void analysis_stop(struct analysis *a)
{
	if (a->decided)
		return;
	if (a->measuring)
		a->taken--; /* dropped, so not counted */
	decide_at_end(a, "stopped");
}

void analysis_free(struct analysis *a)
{
	if (!a)
		return;
	stop_sources(a);
	if (a->timer)
		event_free(a->timer);
	if (a->done_ev)
		event_free(a->done_ev);
	condition_free(a->success);
	condition_free(a->failure);
	json_decref(a->spec);
	json_decref(a->json);
	free(a);
}

const json_t *analysis_progress(const struct analysis *a)
{
	return a->json;
}

/* --- the specification in a pipeline file ------------------------------- */

static const char *const analysis_keys[] = {"interval",
					    "count",
					    "initialDelay",
					    "successCondition",
					    "failureCondition",
					    "failureLimit",
					    "inconclusiveLimit",
					    "consecutiveErrorLimit",
					    "noData",
					    "provider",
					    NULL};
/* A canary's background analysis: the same, and the step it starts from. */
static const char *const background_keys[] = {
    "interval",		"count",	"initialDelay",	     "successCondition",
    "failureCondition", "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit",
    "noData",		"provider",	"startingStep",	     NULL};
static const char *const provider_keys[] = {"prometheus", "web", NULL};
static const char *const prometheus_keys[] = {"address", "query", "headers", "timeout", NULL};
static const char *const web_keys[] = {"url",	   "method",  "headers", "body",
				       "jsonPath", "timeout", NULL};

static int load_url(const struct config_check *ck, const struct config_doc_node *map,
		    const char *key, json_t *out)
{
	const struct config_doc_node *n;
	const char *url;

	if (config_check_require(ck, map, key, &n) < 0 || config_check_string(ck, n, 0, &url) < 0)
		return -1;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return config_check_fail(ck, n, "expected an http:// or https:// URL");
	for (const char *s = url; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return config_check_fail(ck, n,
						 "a URL holds no spaces or control characters");
	return config_check_set(ck, n, out, key, json_string(url));
}

static int load_headers(const struct config_check *ck, const struct config_doc_node *map,
			json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, "headers");
	json_t *headers;

	if (!n)
		return 0;
	if (config_check_headers(ck, n, &headers) < 0)
		return -1;
	return config_check_set(ck, n, out, "headers", headers);
}

static int load_timeout(const struct config_check *ck, const struct config_doc_node *map,
			json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, "timeout");
	long long ms;

	if (!n)
		return 0;
	if (config_check_duration_ms(ck, n, MAX_TIMEOUT_MS, &ms) < 0)
		return -1;
	return config_check_set(ck, n, out, "timeout_ms", json_integer(ms));
}

/* The server's own address: sluice adds /api/v1/query and the query, so a
 * query string or that path in it would fail every measurement. */
static int check_prometheus_address(const struct config_check *ck, const struct config_doc_node *p,
				    const char *address)
{
	static const char api[] = "/api/v1/query";
	size_t len = strlen(address);

	while (len > 0 && address[len - 1] == '/')
		len--;
	if (strpbrk(address, "?#") ||
	    (len >= sizeof(api) - 1 &&
	     strncmp(address + len - (sizeof(api) - 1), api, sizeof(api) - 1) == 0))
		return config_check_fail(ck, config_doc_get(p, "address"),
					 "expected the server's address, as "
					 "http://prometheus:9090 (/api/v1/query and the query "
					 "are added)");
	return 0;
}

static int load_prometheus(const struct config_check *ck, const struct config_doc_node *p,
			   json_t *out)
{
	const struct config_doc_node *n;
	const char *query;

	if (!json_is_object(p->value))
		return config_check_fail(ck, p,
					 "expected a mapping like {address: ..., query: ...}");
	if (config_check_keys(ck, p, prometheus_keys) < 0 ||
	    config_check_set(ck, p, out, "type", json_string("prometheus")) < 0 ||
	    load_url(ck, p, "address", out) < 0 ||
	    check_prometheus_address(ck, p, json_string_value(json_object_get(out, "address"))) <
		0 ||
	    config_check_require(ck, p, "query", &n) < 0 ||
	    config_check_string(ck, n, 0, &query) < 0 ||
	    config_check_set(ck, n, out, "query", json_string(query)) < 0)
		return -1;
	return load_headers(ck, p, out) < 0 ? -1 : load_timeout(ck, p, out);
}

static int load_web(const struct config_check *ck, const struct config_doc_node *w, json_t *out)
{
	const struct config_doc_node *n;
	const char *method = "GET", *path;
	char err[256];

	if (!json_is_object(w->value))
		return config_check_fail(ck, w,
					 "expected a mapping like {url: ..., jsonPath: ...}");
	if (config_check_keys(ck, w, web_keys) < 0 ||
	    config_check_set(ck, w, out, "type", json_string("web")) < 0 ||
	    load_url(ck, w, "url", out) < 0)
		return -1;
	n = config_doc_get(w, "method");
	if (n && config_check_string(ck, n, 0, &method) < 0)
		return -1;
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		return config_check_fail(ck, n, "expected GET or POST");
	if (config_check_set(ck, w, out, "method", json_string(method)) < 0)
		return -1;
	n = config_doc_get(w, "body");
	if (n) {
		if (strcmp(method, "POST") != 0)
			return config_check_fail_key(ck, n, "a body needs method: POST");
		if (!json_is_string(n->value) && !json_is_object(n->value) &&
		    !json_is_array(n->value))
			return config_check_fail(ck, n, "expected a string or a JSON mapping");
		char *text = json_is_string(n->value) ? strdup(json_string_value(n->value))
						      : json_dumps(n->value, JSON_COMPACT);
		json_t *body = text ? json_string(text) : NULL;
		free(text);
		if (config_check_set(ck, n, out, "body", body) < 0)
			return -1;
	}
	if (config_check_require(ck, w, "jsonPath", &n) < 0 ||
	    config_check_string(ck, n, 0, &path) < 0)
		return -1;
	if (metric_path_check(path, err, sizeof(err)) < 0)
		return config_check_fail(ck, n, "%s", err);
	if (config_check_set(ck, n, out, "json_path", json_string(path)) < 0)
		return -1;
	return load_headers(ck, w, out) < 0 ? -1 : load_timeout(ck, w, out);
}

static int load_provider(const struct config_check *ck, const struct config_doc_node *map,
			 json_t *out)
{
	const struct config_doc_node *p;
	json_t *provider = json_object();

	if (config_check_set(ck, map, out, "provider", provider) < 0 ||
	    config_check_require(ck, map, "provider", &p) < 0)
		return -1;
	if (!json_is_object(p->value) || !p->first)
		return config_check_fail(ck, p, "expected {prometheus: {...}} or {web: {...}}");
	if (config_check_keys(ck, p, provider_keys) < 0)
		return -1;
	if (p->first != p->last)
		return config_check_fail(ck, p, "name one provider: prometheus or web");
	if (strcmp(p->first->key, "prometheus") == 0)
		return load_prometheus(ck, p->first, provider);
	return load_web(ck, p->first, provider);
}

static int load_condition(const struct config_check *ck, const struct config_doc_node *map,
			  const char *key, const char *name, json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	struct condition *c;
	const char *text;
	char err[256];

	if (!n)
		return 0;
	if (config_check_string(ck, n, 0, &text) < 0)
		return -1;
	c = condition_parse(text, err, sizeof(err));
	if (!c)
		return config_check_fail(ck, n, "%s", err);
	condition_free(c);
	return config_check_set(ck, n, out, name, json_string(text));
}

static int load_int(const struct config_check *ck, const struct config_doc_node *map,
		    const char *key, long long min, long long max, long long dflt, const char *name,
		    json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	long long v = dflt;

	if (n && config_check_int(ck, n, min, max, &v) < 0)
		return -1;
	return config_check_set(ck, map, out, name, json_integer(v));
}

static int load_duration(const struct config_check *ck, const struct config_doc_node *map,
			 const char *key, const char *name, json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	long long ms = 0;

	if (n && config_check_duration_ms(ck, n, MAX_INTERVAL_MS, &ms) < 0)
		return -1;
	return config_check_set(ck, map, out, name, json_integer(ms));
}

static int load_no_data(const struct config_check *ck, const struct config_doc_node *map,
			json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, "noData");
	const char *v = "inconclusive";

	if (n && config_check_string(ck, n, 0, &v) < 0)
		return -1;
	if (strcmp(v, "fail") != 0 && strcmp(v, "inconclusive") != 0 && strcmp(v, "pass") != 0)
		return config_check_fail(ck, n, "expected fail, inconclusive or pass");
	return config_check_set(ck, map, out, "no_data", json_string(v));
}

/* background: a canary's background analysis, the one analysis that is
 * stopped from outside (when the steps are over), so the only one that may
 * measure until stopped. */
static int load_spec(const struct config_check *ck, const struct config_doc_node *n, int background,
		     json_t **out)
{
	const struct config_doc_node *count = config_doc_get(n, "count");
	const struct config_doc_node *interval = config_doc_get(n, "interval");
	json_t *spec = json_object();
	long long c;

	*out = NULL;
	if (!spec)
		return config_check_fail(ck, n, "out of memory");
	if (!json_is_object(n->value)) {
		config_check_fail(ck, n,
				  "expected a mapping like {successCondition: ..., "
				  "provider: {...}}");
		goto fail;
	}
	if (config_check_keys(ck, n, background ? background_keys : analysis_keys) < 0 ||
	    load_condition(ck, n, "successCondition", "success_condition", spec) < 0 ||
	    load_condition(ck, n, "failureCondition", "failure_condition", spec) < 0 ||
	    load_duration(ck, n, "interval", "interval_ms", spec) < 0 ||
	    load_duration(ck, n, "initialDelay", "initial_delay_ms", spec) < 0 ||
	    load_int(ck, n, "count", 1, MAX_COUNT, interval ? 0 : 1, "count", spec) < 0 ||
	    load_int(ck, n, "failureLimit", 0, MAX_LIMIT, 0, "failure_limit", spec) < 0 ||
	    load_int(ck, n, "inconclusiveLimit", 0, MAX_LIMIT, 0, "inconclusive_limit", spec) < 0 ||
	    load_int(ck, n, "consecutiveErrorLimit", 0, MAX_LIMIT, ANALYSIS_DEFAULT_ERROR_LIMIT,
		     "consecutive_error_limit", spec) < 0 ||
	    load_no_data(ck, n, spec) < 0)
		goto fail;
	if (!json_object_get(spec, "success_condition") &&
	    !json_object_get(spec, "failure_condition")) {
		config_check_missing(ck, n, "successCondition",
				     "or failureCondition, such as \"result[0] < 0.01\"");
		goto fail;
	}
	c = json_integer_value(json_object_get(spec, "count"));
	if (c == 0 && !background) {
		/* Nothing would ever stop it: its step would never end. */
		config_check_missing(ck, n, "count",
				     "with an interval; only a canary's background analysis "
				     "measures until stopped");
		goto fail;
	}
	if (c > 1 && !interval) {
		config_check_fail(ck, count, "more than one measurement needs an interval");
		goto fail;
	}
	if (load_provider(ck, n, spec) < 0)
		goto fail;
	*out = spec;
	return 0;
fail:
	json_decref(spec);
	return -1;
}

int analysis_load(const struct config_check *ck, const struct config_doc_node *n, json_t **out)
{
	return load_spec(ck, n, 0, out);
}

int analysis_load_background(const struct config_check *ck, const struct config_doc_node *n,
			     long long max_step, json_t **out)
{
	if (load_spec(ck, n, 1, out) < 0)
		return -1;
	if (load_int(ck, n, "startingStep", 0, max_step, 0, "starting_step", *out) < 0) {
		json_decref(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}
