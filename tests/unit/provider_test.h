/* provider_test: what the provider tests share: the test's loop, a
 * provider made from a definition that must be valid, and one action run
 * to its end. Header-only: each test binary is built from its one source
 * file, which sets base up in its group setup.
 */
#ifndef SLUICE_TESTS_PROVIDER_TEST_H
#define SLUICE_TESTS_PROVIDER_TEST_H

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "stages/provider.h"

static struct event_base *base;

/* How an action ended: done was called calls times, last with ok and msg. */
struct outcome {
	int calls;
	int ok;
	char msg[1024];
};

static inline void on_done(int ok, const char *message, void *arg)
{
	struct outcome *o = arg;

	o->calls++;
	o->ok = ok;
	snprintf(o->msg, sizeof(o->msg), "%s", message);
	event_base_loopbreak(base);
}

/* def is taken; a definition the provider refuses fails the test. */
static inline struct provider *provider_test_make(json_t *def)
{
	char err[256] = "";
	struct provider *p;

	assert_non_null(def);
	p = provider_new(base, def, err, sizeof(err));
	json_decref(def);
	if (!p)
		fail_msg("provider_new: %s", err);
	return p;
}

/* Runs one action to its end, within seconds; the callback must not come
 * from within start, and exactly once. */
static inline void provider_test_run(struct provider *p, const struct provider_action *a,
				     struct outcome *o, int seconds)
{
	char err[256] = "";
	struct timeval limit = {seconds, 0};

	memset(o, 0, sizeof(*o));
	if (provider_start(p, a, on_done, o, err, sizeof(err)) < 0)
		fail_msg("provider_start: %s", err);
	assert_int_equal(o->calls, 0);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	assert_int_equal(o->calls, 1);
}

#endif
