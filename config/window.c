/* window: parse deploy windows and tell whether one holds an instant. */
#include "config/window.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DAY_MS	  (86400LL * 1000)
#define MINUTE_MS (60LL * 1000)
#define ALL_DAYS  0x7fu

static const char *const day_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

static int fail(const char *text, const char *at, size_t *pos, char *why, size_t whylen,
		const char *msg)
{
	*pos = (size_t)(at - text);
	snprintf(why, whylen, "%s", msg);
	return -1;
}

static int day_at(const char *p)
{
	for (int d = 0; d < 7; d++)
		if (strncasecmp(p, day_names[d], 3) == 0)
			return d;
	return -1;
}

static int digit2(const char *p)
{
	if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
		return -1;
	return (p[0] - '0') * 10 + (p[1] - '0');
}

/* "HH:MM" → minutes of the day. As an end, "24:00" and "00:00" are both the
 * midnight that ends the day: 1440. */
static int time_at(const char *p, int allow_end)
{
	/* Each byte is looked at only once those before it are known not to
	 * end the text. */
	int h = digit2(p), m = h >= 0 && p[2] == ':' ? digit2(p + 3) : -1;
	if (h < 0 || m < 0 || m > 59)
		return -1;
	if ((h == 24 || h == 0) && m == 0 && allow_end)
		return 1440;
	return h > 23 ? -1 : h * 60 + m;
}

static const char *skip_spaces(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static int parse_days(const char *text, const char **pp, unsigned *days, size_t *pos, char *why,
		      size_t whylen)
{
	const char *p = *pp;
	if (strncasecmp(p, "daily", 5) == 0) {
		*days = ALL_DAYS;
		*pp = p + 5;
		return 0;
	}
	*days = 0;
	for (;;) {
		int first = day_at(p), last;
		if (first < 0)
			return fail(
			    text, p, pos, why, whylen,
			    "expected a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun) or \"daily\"");
		p += 3;
		last = first;
		if (*p == '-') {
			last = day_at(++p);
			if (last < 0)
				return fail(text, p, pos, why, whylen,
					    "expected the last day of the range (Mon..Sun)");
			p += 3;
		}
		/* "Fri-Mon" runs over the end of the week. */
		for (int d = first;; d = (d + 1) % 7) {
			*days |= 1u << d;
			if (d == last)
				break;
		}
		if (*p != ',')
			break;
		p++;
	}
	*pp = p;
	return 0;
}

int window_parse(const char *text, struct window *w, size_t *pos, char *why, size_t whylen)
{
	const char *p = text;
	if (parse_days(text, &p, &w->days, pos, why, whylen) < 0)
		return -1;
	if (*p != ' ' && *p != '\t')
		return fail(text, p, pos, why, whylen, "expected a space and a time range");
	p = skip_spaces(p);
	w->start_min = time_at(p, 0);
	if (w->start_min < 0)
		return fail(text, p, pos, why, whylen, "expected a start time like 03:00");
	const char *start = p;
	p += 5;
	if (*p != '-')
		return fail(text, p, pos, why, whylen, "expected '-' and an end time");
	w->end_min = time_at(++p, 1);
	if (w->end_min < 0)
		return fail(text, p, pos, why, whylen, "expected an end time like 04:00");
	if (w->end_min == w->start_min)
		return fail(text, start, pos, why, whylen,
			    "the window is empty: it ends when it starts");
	p += 5;
	if (*p != ' ' && *p != '\t')
		return fail(text, p, pos, why, whylen, "expected a space and the time zone UTC");
	p = skip_spaces(p);
	if (strncmp(p, "UTC", 3) != 0)
		return fail(text, p, pos, why, whylen, "only UTC is supported as the time zone");
	if (p[3] != '\0')
		return fail(text, p + 3, pos, why, whylen,
			    "unexpected text after UTC (offsets are not supported)");
	return 0;
}

json_t *window_to_json(const struct window *w, const char *spec)
{
	json_t *days = json_array();
	for (int d = 0; days && d < 7; d++)
		if (w->days & (1u << d))
			json_array_append_new(days, json_string(day_names[d]));
	return json_pack("{s:s, s:o*, s:i, s:i}", "spec", spec, "days", days, "start", w->start_min,
			 "end", w->end_min);
}

int window_from_json(const json_t *j, struct window *w)
{
	const json_t *start = json_object_get(j, "start"), *end = json_object_get(j, "end");
	size_t i;
	const json_t *day;
	if (!json_is_integer(start) || !json_is_integer(end))
		return -1;
	w->start_min = (int)json_integer_value(start);
	w->end_min = (int)json_integer_value(end);
	/* Kept by earlier versions for an end written "00:00". */
	if (w->end_min == 0)
		w->end_min = 1440;
	w->days = 0;
	json_array_foreach(json_object_get(j, "days"), i, day)
	{
		int d = json_is_string(day) ? day_at(json_string_value(day)) : -1;
		if (d >= 0)
			w->days |= 1u << d;
	}
	if (w->start_min < 0 || w->start_min > 1439 || w->end_min < 1 || w->end_min > 1440 ||
	    !w->days)
		return -1;
	return 0;
}

static long long floor_div(long long a, long long b)
{
	long long q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The end of the occurrence of w that holds t, or 0. An occurrence starts on
 * one of w's days and may run into the next, so the day before t counts too. */
static long long holding_end(const struct window *w, long long t)
{
	long long today = floor_div(t, DAY_MS);
	int minutes = w->end_min > w->start_min ? w->end_min - w->start_min
						: w->end_min + 1440 - w->start_min;
	for (long long day = today - 1; day <= today; day++) {
		/* 1970-01-01 was a Thursday: day 3 counting from Monday. */
		int weekday = (int)(((day % 7) + 7 + 3) % 7);
		if (!(w->days & (1u << weekday)))
			continue;
		long long start = day * DAY_MS + w->start_min * MINUTE_MS;
		long long end = start + minutes * MINUTE_MS;
		if (start <= t && t < end)
			return end;
	}
	return 0;
}

long long window_closed_until(const struct window *ws, size_t n, long long now_ms)
{
	long long t = now_ms;
	/* Each step moves past at least one occurrence; more than eight days
	 * of them without a gap means there is none. */
	for (;;) {
		long long next = 0;
		for (size_t i = 0; i < n; i++) {
			long long end = holding_end(&ws[i], t);
			if (end > next)
				next = end;
		}
		if (!next)
			return t == now_ms ? 0 : t;
		if (next - now_ms > 8 * DAY_MS)
			return -1;
		t = next;
	}
}

long long window_list_closed_until(const json_t *list, long long now_ms)
{
	struct window ws[WINDOW_MAX];
	size_t n = 0, i;
	const json_t *item;
	json_array_foreach(list, i, item)
	{
		if (n < sizeof(ws) / sizeof(ws[0]) && window_from_json(item, &ws[n]) == 0)
			n++;
	}
	return window_closed_until(ws, n, now_ms);
}
