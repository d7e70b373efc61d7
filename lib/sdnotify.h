/* sdnotify: systemd's service notification protocol, spoken directly.
 *
 * A notification is one datagram of "KEY=VALUE" lines (READY=1, STATUS=...,
 * WATCHDOG=1, STOPPING=1) sent to the AF_UNIX socket that $NOTIFY_SOCKET
 * names: a path, or "@name" in the abstract namespace (sd_notify(3)). The
 * watchdog interval comes from $WATCHDOG_USEC, meant for this process only
 * when $WATCHDOG_PID is unset or names it. This is the whole of what the
 * daemons need from libsystemd, without linking it and what it pulls in.
 */
#ifndef SLUICE_SDNOTIFY_H
#define SLUICE_SDNOTIFY_H

#include <stdint.h>

/* Sends state to the service manager: 1 sent, 0 when not run by one (no
 * $NOTIFY_SOCKET), -1 when the socket is unusable (errno set). */
int sdnotify(const char *state);

/* 1 and *usec set when the service manager expects WATCHDOG=1 at least
 * every *usec microseconds, 0 when it does not, -1 when $WATCHDOG_USEC or
 * $WATCHDOG_PID cannot be read. */
int sdnotify_watchdog_usec(uint64_t *usec);

#endif
