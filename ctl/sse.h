/* sse: a Server-Sent Events parser for sluicectl logs -f.
 *
 * Bytes go in as they arrive, in pieces of any size; each complete event
 * (a blank line ends it) comes out through the callback with its event type
 * ("message" when the server gave none), id and data (several data: lines
 * joined by '\n'). Comments (":...") and unknown fields are skipped. The id
 * of the last event seen is kept for a reconnection's Last-Event-ID.
 */
#ifndef SLUICE_CTL_SSE_H
#define SLUICE_CTL_SSE_H

#include <stddef.h>

/* Returns 0 to go on, 1 to stop (the end of the stream), -1 on error. */
typedef int (*ctl_sse_cb)(const char *event, const char *id, const char *data, void *arg);

struct ctl_sse {
	char *line; /* the incomplete line so far */
	size_t len, cap;
	char *data; /* the event's data so far */
	size_t data_len, data_cap;
	int has_data;
	int last_cr; /* the last byte fed was '\r': a '\n' next is part of it */
	char event[64];
	char id[128];
	char last_id[128];
};

/* Feeds len bytes; returns what the callback last returned (0 when no event
 * ended), -1 when out of memory or a line, or an event's data, is longer
 * than 16 MiB. */
int ctl_sse_feed(struct ctl_sse *p, const char *buf, size_t len, ctl_sse_cb cb, void *arg);
/* Forgets a partial event (a new connection), keeps last_id. */
void ctl_sse_reset(struct ctl_sse *p);
void ctl_sse_free(struct ctl_sse *p);

#endif
