/* window: deploy windows of an environment, "Sun 03:00-04:00 UTC".
 *
 * A window names its days ("Sun", "Mon-Fri", "Sat,Sun", "daily") and a time
 * range in UTC; a range whose end is not after its start ("Mon-Fri
 * 18:00-08:00 UTC") runs past midnight into the next day. The start is in
 * the window, the end is not. window_closed_until is a pure function of the
 * time it is given, so callers pass clock_now_ms() and tests any instant.
 */
#ifndef SLUICE_CONFIG_WINDOW_H
#define SLUICE_CONFIG_WINDOW_H

#include <jansson.h>
#include <stddef.h>

/* Most windows an environment may list. */
#define WINDOW_MAX 64

struct window {
	unsigned days; /* bit d: the window starts on day d, 0 = Monday .. 6 = Sunday */
	int start_min; /* minute of the day it starts, 0..1439 */
	int end_min;   /* minute of the day it ends, 1..1440; <= start_min: the next day */
};

/* On error returns -1 with *pos the 0-based offset of the offending
 * character in text and why a message such as "expected a time like 03:00". */
int window_parse(const char *text, struct window *w, size_t *pos, char *why, size_t whylen);

/* The normalized form kept in a pipeline's def:
 *   {"spec": "Sun 03:00-04:00 UTC", "days": ["Sun"], "start": 180, "end": 240}
 * (start and end in minutes of the day, UTC). */
json_t *window_to_json(const struct window *w, const char *spec);
int window_from_json(const json_t *j, struct window *w);

/* 0 when now_ms is outside every window of ws; otherwise the first instant
 * (ms) from which it is outside all of them (windows that overlap or touch
 * are crossed together). -1 when they never open: together they cover the
 * whole week. */
long long window_closed_until(const struct window *ws, size_t n, long long now_ms);

/* As window_closed_until for the normalized list of a def ("windows" of an
 * environment: an array of window_to_json objects); malformed items count as
 * no window. */
long long window_list_closed_until(const json_t *list, long long now_ms);

#endif
