/* Tests for config/window: deploy window syntax, and whether a window holds
 * an instant at its boundaries, across midnight and across the week's end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config/window.h"

#define MIN  (60LL * 1000)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)
/* Monday 2024-01-01 00:00:00 UTC. */
#define MONDAY 1704067200000LL

static struct window parse_ok(const char *text)
{
	struct window w;
	size_t pos = 0;
	char why[160] = "";
	if (window_parse(text, &w, &pos, why, sizeof(why)) < 0)
		fail_msg("\"%s\" rejected at %zu: %s", text, pos, why);
	return w;
}

static void expect_parse_error(const char *text, size_t want_pos, const char *want)
{
	struct window w;
	size_t pos = 99;
	char why[160] = "";
	assert_int_equal(window_parse(text, &w, &pos, why, sizeof(why)), -1);
	assert_int_equal(pos, want_pos);
	assert_string_equal(why, want);
}

static void test_days_and_times_are_parsed(void **state)
{
	(void)state;
	struct window w = parse_ok("Sun 03:00-04:00 UTC");
	assert_int_equal(w.days, 1u << 6);
	assert_int_equal(w.start_min, 180);
	assert_int_equal(w.end_min, 240);
	w = parse_ok("daily 02:00-03:00 UTC");
	assert_int_equal(w.days, 0x7f);
	w = parse_ok("Mon-Fri 18:00-08:00 UTC");
	assert_int_equal(w.days, 0x1f);
	assert_int_equal(w.start_min, 18 * 60);
	assert_int_equal(w.end_min, 8 * 60);
	w = parse_ok("Fri-Mon 22:00-24:00 UTC");
	assert_int_equal(w.days, (1u << 4) | (1u << 5) | (1u << 6) | 1u);
	assert_int_equal(w.end_min, 1440);
	w = parse_ok("sat,Sun  00:30-01:00 UTC");
	assert_int_equal(w.days, (1u << 5) | (1u << 6));
}

static void test_malformed_windows_name_the_position(void **state)
{
	(void)state;
	expect_parse_error("Sun 03:00-04:00 CET", 16, "only UTC is supported as the time zone");
	expect_parse_error("Sun 03:00-04:00 UTC+2", 19,
			   "unexpected text after UTC (offsets are not supported)");
	expect_parse_error("Sun 03:00-04:00", 15, "expected a space and the time zone UTC");
	expect_parse_error("Sunday 03:00-04:00 UTC", 3, "expected a space and a time range");
	expect_parse_error("Hol 03:00-04:00 UTC", 0,
			   "expected a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun) or \"daily\"");
	expect_parse_error("Mon-Xyz 03:00-04:00 UTC", 4,
			   "expected the last day of the range (Mon..Sun)");
	expect_parse_error("Sun 3:00-04:00 UTC", 4, "expected a start time like 03:00");
	expect_parse_error("Sun 03:60-04:00 UTC", 4, "expected a start time like 03:00");
	expect_parse_error("Sun 03:00 04:00 UTC", 9, "expected '-' and an end time");
	expect_parse_error("Sun 03:00-25:00 UTC", 10, "expected an end time like 04:00");
	expect_parse_error("Sun 03:00-03:00 UTC", 4, "the window is empty: it ends when it starts");
}

static void test_start_is_inside_and_end_is_not(void **state)
{
	(void)state;
	struct window w = parse_ok("Sun 03:00-04:00 UTC");
	long long sunday = MONDAY + 6 * DAY;
	assert_int_equal(window_closed_until(&w, 1, sunday + 3 * HOUR - 1), 0);
	assert_int_equal(window_closed_until(&w, 1, sunday + 3 * HOUR), sunday + 4 * HOUR);
	assert_int_equal(window_closed_until(&w, 1, sunday + 4 * HOUR - 1), sunday + 4 * HOUR);
	assert_int_equal(window_closed_until(&w, 1, sunday + 4 * HOUR), 0);
	/* The same hour on another day is open. */
	assert_int_equal(window_closed_until(&w, 1, MONDAY + 3 * HOUR + 30 * MIN), 0);
}

static void test_a_range_past_midnight_ends_the_next_day(void **state)
{
	(void)state;
	struct window w = parse_ok("Mon-Fri 18:00-08:00 UTC");
	long long friday = MONDAY + 4 * DAY;
	assert_int_equal(window_closed_until(&w, 1, friday + 23 * HOUR), friday + DAY + 8 * HOUR);
	/* Saturday morning still belongs to Friday's window ... */
	assert_int_equal(window_closed_until(&w, 1, friday + DAY + 7 * HOUR),
			 friday + DAY + 8 * HOUR);
	/* ... but Saturday evening starts none, and Monday 07:00 none either. */
	assert_int_equal(window_closed_until(&w, 1, friday + DAY + 19 * HOUR), 0);
	assert_int_equal(window_closed_until(&w, 1, MONDAY + 7 * HOUR), 0);
	assert_int_equal(window_closed_until(&w, 1, MONDAY + 18 * HOUR), MONDAY + DAY + 8 * HOUR);
}

/* "22:00-00:00" ends at the midnight after its start: two hours, as written
 * and as kept in a def (an end of 0 from an older def included). */
static void test_an_end_at_00_00_is_the_midnight_that_ends_the_day(void **state)
{
	(void)state;
	struct window w = parse_ok("Thu 22:00-00:00 UTC");
	assert_int_equal(w.end_min, 1440);
	long long thursday = MONDAY + 3 * DAY;
	assert_int_equal(window_closed_until(&w, 1, thursday + 23 * HOUR), thursday + DAY);
	assert_int_equal(window_closed_until(&w, 1, thursday + DAY), 0);
	json_t *list = json_pack("[o]", window_to_json(&w, "Thu 22:00-00:00 UTC"));
	assert_int_equal(window_list_closed_until(list, thursday + 23 * HOUR), thursday + DAY);
	json_object_set_new(json_array_get(list, 0), "end", json_integer(0));
	assert_int_equal(window_list_closed_until(list, thursday + 23 * HOUR), thursday + DAY);
	json_decref(list);
	/* A whole day, not an empty window. */
	w = parse_ok("Sun 00:00-00:00 UTC");
	long long sunday = MONDAY + 6 * DAY;
	assert_int_equal(window_closed_until(&w, 1, sunday + 12 * HOUR), sunday + DAY);
}

static void test_the_week_wraps_from_sunday_to_monday(void **state)
{
	(void)state;
	struct window w = parse_ok("Sun 23:00-01:00 UTC");
	long long next_monday = MONDAY + 7 * DAY;
	assert_int_equal(window_closed_until(&w, 1, next_monday - 30 * MIN), next_monday + HOUR);
	assert_int_equal(window_closed_until(&w, 1, next_monday + 30 * MIN), next_monday + HOUR);
	assert_int_equal(window_closed_until(&w, 1, MONDAY + 30 * MIN), MONDAY + HOUR);
	assert_int_equal(window_closed_until(&w, 1, MONDAY + HOUR), 0);
}

static void test_touching_windows_are_crossed_together(void **state)
{
	(void)state;
	struct window ws[] = {parse_ok("daily 02:00-03:00 UTC"), parse_ok("Sun 03:00-04:00 UTC")};
	long long sunday = MONDAY + 6 * DAY;
	assert_int_equal(window_closed_until(ws, 2, sunday + 2 * HOUR + 30 * MIN),
			 sunday + 4 * HOUR);
	assert_int_equal(window_closed_until(ws, 2, MONDAY + 2 * HOUR + 30 * MIN),
			 MONDAY + 3 * HOUR);
	assert_int_equal(window_closed_until(ws, 2, MONDAY + 12 * HOUR), 0);
}

static void test_windows_covering_the_whole_week_never_open(void **state)
{
	(void)state;
	struct window ws[] = {parse_ok("daily 00:00-12:00 UTC"), parse_ok("daily 12:00-24:00 UTC")};
	assert_int_equal(window_closed_until(ws, 2, MONDAY + HOUR), -1);
	assert_int_equal(window_closed_until(ws, 0, MONDAY + HOUR), 0);
}

static void test_the_normalized_form_round_trips(void **state)
{
	(void)state;
	struct window w = parse_ok("Sat,Sun 22:00-06:00 UTC"), back;
	json_t *j = window_to_json(&w, "Sat,Sun 22:00-06:00 UTC");
	json_t *want = json_pack("{s:s, s:[s,s], s:i, s:i}", "spec", "Sat,Sun 22:00-06:00 UTC",
				 "days", "Sat", "Sun", "start", 1320, "end", 360);
	assert_true(json_equal(j, want));
	assert_int_equal(window_from_json(j, &back), 0);
	assert_memory_equal(&w, &back, sizeof(w));
	json_t *list = json_pack("[o]", j);
	long long sunday = MONDAY + 6 * DAY;
	assert_int_equal(window_list_closed_until(list, sunday + 23 * HOUR),
			 sunday + DAY + 6 * HOUR);
	json_decref(list);
	json_decref(want);
	json_t *empty = json_object();
	assert_int_equal(window_from_json(empty, &back), -1);
	json_decref(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_days_and_times_are_parsed),
	    cmocka_unit_test(test_malformed_windows_name_the_position),
	    cmocka_unit_test(test_start_is_inside_and_end_is_not),
	    cmocka_unit_test(test_a_range_past_midnight_ends_the_next_day),
	    cmocka_unit_test(test_an_end_at_00_00_is_the_midnight_that_ends_the_day),
	    cmocka_unit_test(test_the_week_wraps_from_sunday_to_monday),
	    cmocka_unit_test(test_touching_windows_are_crossed_together),
	    cmocka_unit_test(test_windows_covering_the_whole_week_never_open),
	    cmocka_unit_test(test_the_normalized_form_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
