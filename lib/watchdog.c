/* watchdog: WATCHDOG=1 at half the systemd watchdog interval while healthy. */
#include "lib/watchdog.h"

#include <stdint.h>
#include <stdlib.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/sdnotify.h"

struct watchdog {
	struct event *timer;
	int (*healthy)(void *arg);
	void *arg;
	int64_t interval_ms;
	int64_t last_healthy_ms;
	int silent; /* "watchdog held back" already logged for this outage */
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct watchdog *wd = arg;
	int64_t now = clock_mono_ms();
	(void)fd;
	(void)what;
	if (wd->healthy(wd->arg)) {
		wd->last_healthy_ms = now;
		if (wd->silent)
			log_info("watchdog pings resumed");
		wd->silent = 0;
	}
	/* A short outage is ridden out: Redis reconnects with back-off, and a
	 * restart would not bring it back any sooner. */
	if (now - wd->last_healthy_ms <= wd->interval_ms) {
		sdnotify("WATCHDOG=1");
		return;
	}
	if (!wd->silent)
		log_error("watchdog pings held back: unhealthy for longer than the interval",
			  LOG_I("interval_ms", wd->interval_ms));
	wd->silent = 1;
}

struct watchdog *watchdog_start(struct event_base *base, int (*healthy)(void *arg), void *arg)
{
	uint64_t usec = 0;
	int enabled = sdnotify_watchdog_usec(&usec);
	if (enabled < 0)
		log_error("no watchdog: WATCHDOG_USEC or WATCHDOG_PID is not a number");
	if (enabled <= 0)
		return NULL;
	struct watchdog *wd = calloc(1, sizeof(*wd));
	if (!wd)
		goto fail;
	wd->healthy = healthy;
	wd->arg = arg;
	wd->interval_ms = (int64_t)(usec / 1000);
	wd->last_healthy_ms = clock_mono_ms();
	wd->timer = event_new(base, -1, EV_PERSIST, on_tick, wd);
	int64_t half_us = (int64_t)(usec / 2);
	struct timeval tv = {(time_t)(half_us / 1000000), (suseconds_t)(half_us % 1000000)};
	if (!wd->timer || evtimer_add(wd->timer, &tv) < 0)
		goto fail;
	sdnotify("WATCHDOG=1");
	log_info("watchdog enabled", LOG_I("interval_ms", wd->interval_ms));
	return wd;
fail:
	log_error("cannot start the watchdog timer");
	watchdog_free(wd);
	return NULL;
}

void watchdog_free(struct watchdog *wd)
{
	if (!wd)
		return;
	if (wd->timer)
		event_free(wd->timer);
	free(wd);
}
