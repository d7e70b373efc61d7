/* watchdog: systemd's WATCHDOG=1 ping, sent only while the process is healthy.
 *
 * When the service manager asked for a watchdog (WatchdogSec=, seen through
 * sdnotify_watchdog_usec), a timer on the event loop fires at half the interval
 * and pings only if the caller's health check passed within the last
 * interval. A stuck loop sends nothing because the timer cannot fire; a
 * dependency that stays down longer than the interval stops the pings too, so
 * systemd restarts the process. Without a watchdog nothing is started.
 */
#ifndef SLUICE_WATCHDOG_H
#define SLUICE_WATCHDOG_H

#include <event2/event.h>

struct watchdog;

/* healthy returns non-zero while the dependency it checks is up. NULL with
 * no error when no watchdog is configured; NULL also when out of memory. */
struct watchdog *watchdog_start(struct event_base *base, int (*healthy)(void *arg), void *arg);
void watchdog_free(struct watchdog *wd);

#endif
