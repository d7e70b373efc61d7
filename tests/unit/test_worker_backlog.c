/* Tests for the worker's backlog depth (workers/worker.c): about two seconds
 * of jobs at the rate they were started lately, so that the slots stay busy
 * across the fetcher's wake-up after a resume; at least 256 and twice the
 * slots, at most 4096. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/clock.h"
#include "workers/worker.h"

/* The limit with `now` jobs started this second and `before` in the one
 * before (or in an older second when gap > 1), read within one second of
 * the clock. */
static int limit_with(int concurrency, int gap, int now, int before)
{
	struct worker w;
	int64_t sec;
	int limit;

	do {
		sec = clock_mono_ms() / 1000;
		memset(&w, 0, sizeof(w));
		w.concurrency = concurrency;
		w.started_sec = sec - gap;
		w.started_now = now;
		w.started_before = before;
		limit = worker_backlog_limit(&w);
	} while (clock_mono_ms() / 1000 != sec);
	return limit;
}

static void test_idle_worker_holds_256_or_twice_its_slots(void **state)
{
	(void)state;
	assert_int_equal(limit_with(1, 0, 0, 0), 256);
	assert_int_equal(limit_with(4, 0, 0, 0), 256);
	assert_int_equal(limit_with(200, 0, 0, 0), 400);
	/* Jobs started two seconds ago or more say nothing of the rate now. */
	assert_int_equal(limit_with(1, 2, 500, 500), 256);
}

static void test_limit_follows_the_jobs_started_lately(void **state)
{
	(void)state;
	assert_int_equal(limit_with(1, 0, 300, 0), 600);
	/* The busier of this second and the one before. */
	assert_int_equal(limit_with(1, 0, 100, 500), 1000);
	assert_int_equal(limit_with(1, 0, 500, 100), 1000);
	/* Nothing started yet this second: the last second's count. */
	assert_int_equal(limit_with(1, 1, 200, 900), 400);
	assert_int_equal(limit_with(4, 0, 5, 3), 256);
}

static void test_limit_is_capped(void **state)
{
	(void)state;
	assert_int_equal(limit_with(1, 0, 100000, 0), 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_worker_holds_256_or_twice_its_slots),
	    cmocka_unit_test(test_limit_follows_the_jobs_started_lately),
	    cmocka_unit_test(test_limit_is_capped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
