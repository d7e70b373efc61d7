/* Tests for queue/defcache: a definition put is got back by its run, as
 * the same object; the entry used least recently makes room; references are
 * counted, not copied; a cleared cache forgets every run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "queue/defcache.h"

static void test_put_then_get_returns_the_same_definition(void **state)
{
	(void)state;
	struct defcache *c = defcache_new(DEFCACHE_RUNS);
	json_t *def = json_pack("{s:{s:{s:s}}}", "stages", "build", "kind", "build");
	assert_non_null(c);
	assert_null(defcache_get(c, "r_1"));
	defcache_put(c, "r_1", def);
	json_t *got = defcache_get(c, "r_1");
	assert_ptr_equal(got, def);
	/* The caller's, the cache's and the one just got. */
	assert_int_equal(def->refcount, 3);
	json_decref(got);
	assert_null(defcache_get(c, "r_2"));
	/* Putting a run again replaces its entry rather than adding one. */
	json_t *other = json_object();
	defcache_put(c, "r_1", other);
	assert_int_equal(def->refcount, 1);
	got = defcache_get(c, "r_1");
	assert_ptr_equal(got, other);
	json_decref(got);
	json_decref(other);
	json_decref(def);
	defcache_free(c);
}

static void test_least_recently_used_run_makes_room(void **state)
{
	(void)state;
	struct defcache *c = defcache_new(DEFCACHE_RUNS);
	json_t *defs[DEFCACHE_RUNS + 1];
	char run[32];
	assert_non_null(c);
	for (int i = 0; i < DEFCACHE_RUNS; i++) {
		defs[i] = json_integer(i);
		snprintf(run, sizeof(run), "r_%d", i);
		defcache_put(c, run, defs[i]);
	}
	/* r_0 is used again, so r_1 is now the one used least recently. */
	json_decref(defcache_get(c, "r_0"));
	defs[DEFCACHE_RUNS] = json_integer(DEFCACHE_RUNS);
	defcache_put(c, "r_new", defs[DEFCACHE_RUNS]);
	assert_null(defcache_get(c, "r_1"));
	assert_int_equal(defs[1]->refcount, 1);
	for (int i = 0; i < DEFCACHE_RUNS; i++) {
		if (i == 1)
			continue;
		snprintf(run, sizeof(run), "r_%d", i);
		json_t *got = defcache_get(c, run);
		assert_ptr_equal(got, defs[i]);
		json_decref(got);
	}
	json_t *got = defcache_get(c, "r_new");
	assert_ptr_equal(got, defs[DEFCACHE_RUNS]);
	json_decref(got);
	defcache_free(c);
	/* Freeing the cache drops its references only. */
	for (int i = 0; i <= DEFCACHE_RUNS; i++) {
		assert_int_equal(defs[i]->refcount, 1);
		json_decref(defs[i]);
	}
}

static void test_run_id_too_long_is_not_kept(void **state)
{
	(void)state;
	struct defcache *c = defcache_new(DEFCACHE_RUNS);
	char run[200];
	json_t *def = json_object();
	memset(run, 'r', sizeof(run) - 1);
	run[sizeof(run) - 1] = '\0';
	defcache_put(c, run, def);
	assert_null(defcache_get(c, run));
	assert_int_equal(def->refcount, 1);
	json_decref(def);
	defcache_free(c);
}

/* Cleared, the cache forgets every run and drops its references only:
 * a definition someone else holds stays valid; it is filled again after. */
static void test_clear_forgets_every_run(void **state)
{
	(void)state;
	struct defcache *c = defcache_new(DEFCACHE_RUNS);
	json_t *kept = json_pack("{s:i}", "n", 1);
	json_t *other = json_pack("{s:i}", "n", 2);
	defcache_put(c, "r_1", kept);
	defcache_put(c, "r_2", other);
	json_decref(other);
	assert_int_equal(kept->refcount, 2);
	defcache_clear(c);
	assert_null(defcache_get(c, "r_1"));
	assert_null(defcache_get(c, "r_2"));
	assert_int_equal(kept->refcount, 1);
	assert_int_equal(json_integer_value(json_object_get(kept, "n")), 1);
	defcache_put(c, "r_1", kept);
	json_t *got = defcache_get(c, "r_1");
	assert_ptr_equal(got, kept);
	json_decref(got);
	defcache_clear(NULL);
	defcache_free(c);
	json_decref(kept);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_then_get_returns_the_same_definition),
	    cmocka_unit_test(test_least_recently_used_run_makes_room),
	    cmocka_unit_test(test_run_id_too_long_is_not_kept),
	    cmocka_unit_test(test_clear_forgets_every_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
