/* Tests for the idle worker giving memory back (workers/worker.c): the
 * definitions it holds are forgotten and what jobs freed, kept by malloc,
 * goes back to the system (malloc_trim) WORKER_IDLE_TRIM_MS after the last
 * job, unless a job is running by then.
 *
 * This program's malloc_trim stands in for the C library's, which the
 * worker's object calls: it counts the calls, whatever allocator the build
 * uses (the sanitizers bring their own). What glibc's gives back is
 * measured by bench/stages.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <string.h>

#include "lib/clock.h"
#include "queue/defcache.h"
#include "workers/worker.h"

static int trims;

int malloc_trim(size_t pad)
{
	assert_int_equal(pad, 0);
	trims++;
	return 1;
}

static void worker_init(struct worker *w)
{
	memset(w, 0, sizeof(*w));
	w->base = event_base_new();
	assert_non_null(w->base);
	w->idle_trim = evtimer_new(w->base, worker_on_idle, w);
	assert_non_null(w->idle_trim);
	w->defs = defcache_new(DEFCACHE_RUNS);
	w->sources = defcache_new(DEFCACHE_RUNS);
	json_t *def = json_object();
	defcache_put(w->defs, "r_1", def);
	defcache_put(w->sources, "r_1", def);
	json_decref(def);
	trims = 0;
}

/* Whether the worker still holds run r_1's definition. */
static int holds_definitions(struct worker *w)
{
	json_t *def = defcache_get(w->defs, "r_1"), *src = defcache_get(w->sources, "r_1");
	int held = def && src;
	json_decref(def);
	json_decref(src);
	return held;
}

static void worker_clear(struct worker *w)
{
	defcache_free(w->defs);
	defcache_free(w->sources);
	event_free(w->idle_trim);
	event_base_free(w->base);
}

/* Runs the worker's loop until its idle timer has fired; the time it took. */
static int64_t wait_for_timer(struct worker *w)
{
	int64_t start = clock_mono_ms();
	while (evtimer_pending(w->idle_trim, NULL))
		event_base_loop(w->base, EVLOOP_ONCE);
	return clock_mono_ms() - start;
}

static void a_worker_without_jobs_gives_memory_back_a_while_later(void **state)
{
	(void)state;
	struct worker w;
	worker_init(&w);
	worker_idle(&w);
	assert_true(evtimer_pending(w.idle_trim, NULL));
	assert_int_equal(trims, 0);
	assert_true(holds_definitions(&w));
	assert_true(wait_for_timer(&w) >= WORKER_IDLE_TRIM_MS - 10);
	assert_int_equal(trims, 1);
	assert_null(defcache_get(w.defs, "r_1"));
	assert_null(defcache_get(w.sources, "r_1"));
	worker_clear(&w);
}

static void a_worker_with_a_job_running_by_then_keeps_it(void **state)
{
	(void)state;
	struct worker w;
	worker_init(&w);
	worker_idle(&w);
	w.running = 1;
	wait_for_timer(&w);
	assert_int_equal(trims, 0);
	assert_true(holds_definitions(&w));
	worker_clear(&w);
}

/* Idle again before the timer: one trim, a full while after the last. */
static void idle_again_moves_the_trim_later(void **state)
{
	(void)state;
	struct worker w;
	worker_init(&w);
	worker_idle(&w);
	worker_idle(&w);
	wait_for_timer(&w);
	assert_int_equal(trims, 1);
	worker_clear(&w);
}

static void a_worker_without_its_timer_does_nothing(void **state)
{
	(void)state;
	struct worker w;
	memset(&w, 0, sizeof(w));
	trims = 0;
	worker_idle(&w);
	assert_int_equal(trims, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_worker_without_jobs_gives_memory_back_a_while_later),
	    cmocka_unit_test(a_worker_with_a_job_running_by_then_keeps_it),
	    cmocka_unit_test(idle_again_moves_the_trim_later),
	    cmocka_unit_test(a_worker_without_its_timer_does_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
