/* run_for: runs a test's event loop for a while. Header-only: each test
 * binary is built from its one source file.
 */
#ifndef SLUICE_TESTS_RUN_FOR_H
#define SLUICE_TESTS_RUN_FOR_H

#include <event2/event.h>

static inline void run_for_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Dispatches base's events for ms milliseconds. */
static inline void run_for(struct event_base *base, int ms)
{
	struct event *t = evtimer_new(base, run_for_stop, base);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(t, &tv);
	event_base_dispatch(base);
	event_free(t);
}

#endif
