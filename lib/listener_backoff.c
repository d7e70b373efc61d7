/* listener_backoff: pausing a listener that cannot accept (listener_backoff.h).
 *
 * libevent hands the error callback the accept callback's argument (evhttp's
 * own, once evhttp_bind_listener has set it), not one of ours: each guard is
 * found by its listener in this module's list. A process has one or two.
 */
#include "lib/listener_backoff.h"

#include <errno.h>
#include <poll.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"

enum backoff_state {
	BACKOFF_ACCEPTING, /* no failure lately */
	BACKOFF_PAUSED,	   /* disabled until the timer fires */
	BACKOFF_PROBING	   /* enabled again; the timer ends the episode */
};

struct listener_backoff {
	struct evconnlistener *listener;
	struct event *timer;
	char name[32];
	void (*on_pause)(void *arg);
	void *arg;
	enum backoff_state state;
	int held; /* by the owner (listener_backoff_hold) */
	int delay_ms;
	long long pauses; /* in the current episode */
	int64_t since_ms; /* when the episode began (monotonic) */
	struct listener_backoff *next;
};

static struct {
	struct listener_backoff *all;
} mod;

/* Errors that the next accept() would meet again at once. */
static int lacks_resource(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static void arm(struct listener_backoff *b)
{
	struct timeval tv = {b->delay_ms / 1000, (b->delay_ms % 1000) * 1000};
	evtimer_add(b->timer, &tv);
}

static void on_accept_error(struct evconnlistener *l, void *unused)
{
	int err = EVUTIL_SOCKET_ERROR();
	(void)unused;
	struct listener_backoff *b = mod.all;
	while (b && b->listener != l)
		b = b->next;
	if (!b)
		return;
	if (!lacks_resource(err)) {
		log_debug("accept failed: that connection is lost", LOG_S("listener", b->name),
			  LOG_S("error", strerror(err)));
		return;
	}
	if (b->state == BACKOFF_ACCEPTING) {
		b->delay_ms = LISTENER_BACKOFF_FIRST_MS;
		b->pauses = 0;
		b->since_ms = clock_mono_ms();
		log_warn("cannot accept connections: pausing until there is room",
			 LOG_S("listener", b->name), LOG_S("error", strerror(err)),
			 LOG_I("pause_ms", b->delay_ms));
	} else if (b->state == BACKOFF_PROBING) {
		b->delay_ms = b->delay_ms * 2 > LISTENER_BACKOFF_MAX_MS ? LISTENER_BACKOFF_MAX_MS
									: b->delay_ms * 2;
	}
	evconnlistener_disable(l);
	b->state = BACKOFF_PAUSED;
	b->pauses++;
	if (b->on_pause)
		b->on_pause(b->arg);
	arm(b);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct listener_backoff *b = arg;
	(void)fd;
	(void)what;
	if (b->state == BACKOFF_PAUSED) {
		if (!b->held)
			evconnlistener_enable(b->listener);
		b->state = BACKOFF_PROBING;
		arm(b);
		return;
	}
	/* A whole pause's length enabled without a failure. */
	b->state = BACKOFF_ACCEPTING;
	log_info("accepting connections again", LOG_S("listener", b->name),
		 LOG_I("pauses", b->pauses), LOG_I("ms", clock_mono_ms() - b->since_ms));
}

struct listener_backoff *listener_backoff_new(struct evconnlistener *l, const char *name,
					      void (*on_pause)(void *arg), void *arg)
{
	struct listener_backoff *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->timer = evtimer_new(evconnlistener_get_base(l), on_timer, b);
	if (!b->timer) {
		free(b);
		return NULL;
	}
	b->listener = l;
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->on_pause = on_pause;
	b->arg = arg;
	b->next = mod.all;
	mod.all = b;
	evconnlistener_set_error_cb(l, on_accept_error);
	return b;
}

void listener_backoff_hold(struct listener_backoff *b, int held)
{
	if (b->held == held)
		return;
	b->held = held;
	if (held)
		evconnlistener_disable(b->listener);
	else if (b->state != BACKOFF_PAUSED)
		evconnlistener_enable(b->listener);
}

int listener_backoff_waiting(const struct listener_backoff *b)
{
	struct pollfd p = {.fd = evconnlistener_get_fd(b->listener), .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

void listener_backoff_free(struct listener_backoff *b)
{
	if (!b)
		return;
	evconnlistener_set_error_cb(b->listener, NULL);
	struct listener_backoff **p = &mod.all;
	while (*p != b)
		p = &(*p)->next;
	*p = b->next;
	event_free(b->timer);
	free(b);
}
