/* sse: the event stream format of the WHATWG HTML standard, as a client. */
#include "ctl/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A line, and an event's data (its data: lines joined), at most. */
#define LINE_MAX_BYTES (16u * 1024 * 1024)

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		while (c < *len + n + 1)
			c *= 2;
		char *b = realloc(*buf, c);
		if (!b)
			return -1;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static void event_clear(struct ctl_sse *p)
{
	p->data_len = 0;
	if (p->data)
		p->data[0] = '\0';
	p->has_data = 0;
	p->event[0] = '\0';
	p->id[0] = '\0';
}

static int dispatch(struct ctl_sse *p, ctl_sse_cb cb, void *arg)
{
	int rc = 0;
	if (p->id[0])
		snprintf(p->last_id, sizeof(p->last_id), "%s", p->id);
	if (p->has_data || p->event[0])
		rc = cb(p->event[0] ? p->event : "message", p->id, p->data ? p->data : "", arg);
	event_clear(p);
	return rc;
}

static int field(struct ctl_sse *p, char *line, size_t len, ctl_sse_cb cb, void *arg)
{
	if (len == 0)
		return dispatch(p, cb, arg);
	if (line[0] == ':')
		return 0;
	char *colon = memchr(line, ':', len);
	const char *value = "";
	size_t vlen = 0;
	if (colon) {
		*colon = '\0';
		value = colon + 1;
		vlen = len - (size_t)(colon + 1 - line);
		if (vlen && *value == ' ') {
			value++;
			vlen--;
		}
	}
	if (strcmp(line, "data") == 0) {
		if (p->data_len + 1 + vlen > LINE_MAX_BYTES ||
		    (p->has_data && append(&p->data, &p->data_len, &p->data_cap, "\n", 1) < 0) ||
		    append(&p->data, &p->data_len, &p->data_cap, value, vlen) < 0)
			return -1;
		p->has_data = 1;
	} else if (strcmp(line, "event") == 0) {
		snprintf(p->event, sizeof(p->event), "%.*s", (int)vlen, value);
	} else if (strcmp(line, "id") == 0 && !memchr(value, '\0', vlen)) {
		snprintf(p->id, sizeof(p->id), "%.*s", (int)vlen, value);
	}
	return 0;
}

int ctl_sse_feed(struct ctl_sse *p, const char *buf, size_t len, ctl_sse_cb cb, void *arg)
{
	int rc = 0;
	size_t i = 0;
	while (i < len && rc == 0) {
		char c = buf[i];
		if (c == '\n' || c == '\r') {
			int continues_crlf = c == '\n' && p->last_cr;
			p->last_cr = c == '\r';
			i++;
			if (continues_crlf)
				continue;
			rc = field(p, p->line ? p->line : (char *)"", p->len, cb, arg);
			p->len = 0;
			continue;
		}
		size_t run = 0;
		while (i + run < len && buf[i + run] != '\n' && buf[i + run] != '\r')
			run++;
		p->last_cr = 0;
		if (p->len + run > LINE_MAX_BYTES ||
		    append(&p->line, &p->len, &p->cap, buf + i, run) < 0)
			return -1;
		i += run;
	}
	return rc;
}

void ctl_sse_reset(struct ctl_sse *p)
{
	p->len = 0;
	p->last_cr = 0;
	event_clear(p);
}

void ctl_sse_free(struct ctl_sse *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->len = p->cap = p->data_len = p->data_cap = 0;
}
