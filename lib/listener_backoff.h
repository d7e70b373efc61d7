/* listener_backoff: a listening socket that pauses, rather than spins, when
 * accept() fails for want of a resource.
 *
 * libevent's listener tries again on the next turn of the loop after a
 * failed accept(). Out of file descriptors (EMFILE, ENFILE) or of kernel
 * memory (ENOBUFS, ENOMEM), that accept fails again at once: without an
 * error callback the process spins at full CPU and libevent writes a
 * warning to stderr on every turn. Here the listener is disabled instead and
 * enabled again after a pause of 100 ms, doubling up to 1 s while the
 * failures go on; the connections meanwhile wait in the kernel's backlog.
 * One warning is logged when the failures begin, one notice when accepting
 * works again. Failures of one connection (ECONNRESET, EPROTO, ...) only
 * lose that connection, as accept(2) advises.
 *
 * The owner may also hold the listener (a limit of open connections): it
 * accepts while neither held nor paused.
 */
#ifndef SLUICE_LISTENER_BACKOFF_H
#define SLUICE_LISTENER_BACKOFF_H

#include <event2/listener.h>

#define LISTENER_BACKOFF_FIRST_MS 100
#define LISTENER_BACKOFF_MAX_MS	  1000

struct listener_backoff;

/* Guards l (already bound, its accept callback set: evhttp's, say). name
 * says in the logs which listener it is. on_pause, when not NULL, is called
 * each time accepting is paused (for a metric). NULL when out of memory. */
struct listener_backoff *listener_backoff_new(struct evconnlistener *l, const char *name,
					      void (*on_pause)(void *arg), void *arg);

/* held 1 stops accepting until held 0; a pause still runs its course. */
void listener_backoff_hold(struct listener_backoff *b, int held);
/* Whether a connection waits in the listener's backlog, to be accepted. */
int listener_backoff_waiting(const struct listener_backoff *b);

/* Before the listener is freed. NULL is fine. */
void listener_backoff_free(struct listener_backoff *b);

#endif
