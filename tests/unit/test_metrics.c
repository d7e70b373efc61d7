/* The metrics registry and its Prometheus text rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/metrics.h"

static char *render(const struct metrics *m)
{
	size_t len = 0;
	char *text = metrics_render(m, &len);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	return text;
}

static void counter_renders_help_type_and_labelled_samples(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metric *c = metrics_counter(m, "sluice_webhooks_total", "Webhooks received.",
					   METRICS_LABELS("event", "code"));
	assert_non_null(c);
	metrics_add(c, METRICS_LABELS("push", "202"), 1);
	metrics_add(c, METRICS_LABELS("push", "202"), 2);
	metrics_add(c, METRICS_LABELS("ping", "200"), 1);
	metrics_add(c, METRICS_LABELS("ping", "200"), -5); /* a counter never goes down */
	char *text = render(m);
	assert_non_null(strstr(text, "# HELP sluice_webhooks_total Webhooks received.\n"
				     "# TYPE sluice_webhooks_total counter\n"
				     "sluice_webhooks_total{event=\"push\",code=\"202\"} 3\n"
				     "sluice_webhooks_total{event=\"ping\",code=\"200\"} 1\n"));
	assert_true(metrics_value(c, METRICS_LABELS("push", "202")) == 3);
	assert_true(metrics_value(c, METRICS_LABELS("push", "500")) == 0);
	free(text);
	metrics_free(m);
}

static void family_without_labels_is_exposed_as_zero_from_the_start(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	assert_non_null(metrics_gauge(m, "sluice_outbox_depth", "Entries waiting.", NULL));
	assert_non_null(metrics_counter(m, "sluice_lease_renewal_errors_total", "Errors.", NULL));
	char *text = render(m);
	assert_non_null(strstr(text, "\nsluice_outbox_depth 0\n"));
	assert_non_null(strstr(text, "\nsluice_lease_renewal_errors_total 0\n"));
	/* A labelled family says nothing until it has a series. */
	struct metric *lag = metrics_gauge(m, "sluice_lag", "Lag.", METRICS_LABELS("topic"));
	free(text);
	text = render(m);
	assert_null(strstr(text, "sluice_lag"));
	metrics_set(lag, METRICS_LABELS("a"), 7);
	metrics_set(lag, METRICS_LABELS("a"), 4);
	free(text);
	text = render(m);
	assert_non_null(strstr(text, "sluice_lag{topic=\"a\"} 4\n"));
	metrics_reset(lag);
	free(text);
	text = render(m);
	assert_null(strstr(text, "sluice_lag"));
	free(text);
	metrics_free(m);
}

static void label_values_and_help_are_escaped(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metric *g =
	    metrics_gauge(m, "sluice_x", "Back\\slash and\nnewline \"kept\".", METRICS_LABELS("v"));
	metrics_set(g, METRICS_LABELS("a\"b\\c\nd"), 1);
	metrics_set(g, METRICS_LABELS("bad\xff utf8 \xc3\xa9"), 2);
	char *text = render(m);
	assert_non_null(strstr(text, "# HELP sluice_x Back\\\\slash and\\nnewline \"kept\".\n"));
	assert_non_null(strstr(text, "sluice_x{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
	assert_non_null(strstr(text, "sluice_x{v=\"bad\xef\xbf\xbd utf8 \xc3\xa9\"} 2\n"));
	free(text);
	metrics_free(m);
}

static void histogram_buckets_are_cumulative_with_sum_and_count(void **state)
{
	(void)state;
	static const double bounds[] = {0.1, 1, 10};
	struct metrics *m = metrics_new();
	struct metric *h = metrics_histogram(m, "sluice_stage_duration_seconds", "Stage time.",
					     METRICS_LABELS("kind"), bounds, 3);
	assert_non_null(h);
	metrics_observe(h, METRICS_LABELS("build"), 0.05);
	metrics_observe(h, METRICS_LABELS("build"), 1); /* a bound is inclusive */
	metrics_observe(h, METRICS_LABELS("build"), 2.5);
	metrics_observe(h, METRICS_LABELS("build"), 60);
	char *text = render(m);
	assert_non_null(
	    strstr(text, "# TYPE sluice_stage_duration_seconds histogram\n"
			 "sluice_stage_duration_seconds_bucket{kind=\"build\",le=\"0.1\"} 1\n"
			 "sluice_stage_duration_seconds_bucket{kind=\"build\",le=\"1\"} 2\n"
			 "sluice_stage_duration_seconds_bucket{kind=\"build\",le=\"10\"} 3\n"
			 "sluice_stage_duration_seconds_bucket{kind=\"build\",le=\"+Inf\"} 4\n"
			 "sluice_stage_duration_seconds_sum{kind=\"build\"} 63.55\n"
			 "sluice_stage_duration_seconds_count{kind=\"build\"} 4\n"));
	assert_true(metrics_value(h, METRICS_LABELS("build")) == 4);
	free(text);
	metrics_free(m);
}

static void bad_names_and_bounds_are_refused(void **state)
{
	(void)state;
	static const double up[] = {1, 2}, down[] = {2, 1};
	struct metrics *m = metrics_new();
	assert_null(metrics_counter(m, "sluice_webhooks", "no _total suffix", NULL));
	assert_null(metrics_gauge(m, "9lives", "starts with a digit", NULL));
	assert_null(metrics_gauge(m, "sluice-x", "a dash", NULL));
	assert_null(metrics_gauge(m, "sluice_x", "bad label", METRICS_LABELS("a:b")));
	assert_null(metrics_gauge(m, "sluice_x", "reserved label", METRICS_LABELS("__x")));
	assert_null(metrics_gauge(m, "sluice_x", "label twice", METRICS_LABELS("a", "a")));
	assert_null(metrics_histogram(m, "sluice_h", "le is taken", METRICS_LABELS("le"), up, 2));
	assert_null(metrics_histogram(m, "sluice_h", "bounds must increase", NULL, down, 2));
	assert_null(metrics_histogram(m, "sluice_h", "no bounds", NULL, up, 0));
	assert_non_null(metrics_gauge(m, "sluice_x", "fine", NULL));
	assert_null(metrics_gauge(m, "sluice_x", "taken", NULL));
	metrics_free(m);
}

static void series_beyond_the_cap_are_dropped_and_counted(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metric *c =
	    metrics_counter(m, "sluice_things_total", "Things.", METRICS_LABELS("name"));
	char name[32];
	for (int i = 0; i < METRICS_MAX_SERIES + 5; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		metrics_add(c, METRICS_LABELS(name), 1);
	}
	/* An existing series still counts. */
	metrics_add(c, METRICS_LABELS("n0"), 1);
	assert_true(metrics_value(c, METRICS_LABELS("n0")) == 2);
	snprintf(name, sizeof(name), "n%d", METRICS_MAX_SERIES);
	assert_true(metrics_value(c, METRICS_LABELS(name)) == 0);
	char *text = render(m);
	assert_non_null(strstr(text, "\nsluice_metrics_series_dropped_total 5\n"));
	free(text);
	metrics_free(m);
}

static void numbers_read_back_exactly(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metric *g = metrics_gauge(m, "sluice_n", "Numbers.", METRICS_LABELS("k"));
	metrics_set(g, METRICS_LABELS("third"), 1.0 / 3);
	metrics_set(g, METRICS_LABELS("big"), 12345678901234.0);
	metrics_set(g, METRICS_LABELS("neg"), -2.5);
	char *text = render(m);
	assert_non_null(strstr(text, "sluice_n{k=\"third\"} 0.33333333333333331\n"));
	assert_non_null(strstr(text, "sluice_n{k=\"big\"} 12345678901234\n"));
	assert_non_null(strstr(text, "sluice_n{k=\"neg\"} -2.5\n"));
	free(text);
	metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(counter_renders_help_type_and_labelled_samples),
	    cmocka_unit_test(family_without_labels_is_exposed_as_zero_from_the_start),
	    cmocka_unit_test(label_values_and_help_are_escaped),
	    cmocka_unit_test(histogram_buckets_are_cumulative_with_sum_and_count),
	    cmocka_unit_test(bad_names_and_bounds_are_refused),
	    cmocka_unit_test(series_beyond_the_cap_are_dropped_and_counted),
	    cmocka_unit_test(numbers_read_back_exactly),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
