/* envelope: CloudEvents 1.0 structured JSON, encoded and strictly decoded. */
#include "queue/envelope.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/hex.h"
#include "lib/jsontext.h"
#include "lib/random.h"

/* A message bigger than this is not one sluice wrote; refuse it before parsing. */
#define ENVELOPE_MAX_BYTES (1024 * 1024)

static int make_id(char out[33])
{
	unsigned char raw[16];
	if (random_bytes(raw, sizeof(raw)) < 0)
		return -1;
	hex_encode(raw, sizeof(raw), out);
	return 0;
}

void envelope_write_rest(struct jsontext *t, const char *source, const char *type,
			 const char *subject)
{
	jsontext_raw(t, "\"source\":");
	jsontext_string(t, source);
	jsontext_raw(t, ",\"type\":");
	jsontext_string(t, type);
	if (subject) {
		jsontext_raw(t, ",\"subject\":");
		jsontext_string(t, subject);
	}
	jsontext_raw(t, ",\"datacontenttype\":\"application/json\",\"data\":");
}

char *envelope_encode(const char *source, const char *type, const char *subject, const json_t *data)
{
	char id[33];
	char now[32];
	struct jsontext t = {0};

	if (!source || !*source || !type || !*type || !json_is_object(data))
		return NULL;
	if (make_id(id) < 0)
		return NULL;
	clock_format_rfc3339(clock_now_ms(), now, sizeof(now));

	/* Written in place: the envelope's shape is fixed, only data is a tree. */
	jsontext_raw(&t, "{\"specversion\":\"1.0\",\"id\":\"");
	jsontext_raw(&t, id);
	jsontext_raw(&t, "\",\"time\":\"");
	jsontext_raw(&t, now);
	jsontext_raw(&t, "\",");
	envelope_write_rest(&t, source, type, subject);
	jsontext_value(&t, data);
	jsontext_raw(&t, "}");
	return jsontext_take(&t);
}

static int fail_with(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_with(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int two_digits(const char *s, int *v)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

static int leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* RFC 3339 date-time: YYYY-MM-DD"T"HH:MM:SS[.frac](Z|+HH:MM|-HH:MM), where
 * T and Z may be lower case; fields are range-checked (a leap second allowed). */
static int valid_rfc3339(const char *s)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int c, y2, mon, day, h, min, sec;

	if (strlen(s) < 20 || two_digits(s, &c) || two_digits(s + 2, &y2) || s[4] != '-' ||
	    two_digits(s + 5, &mon) || s[7] != '-' || two_digits(s + 8, &day) ||
	    (s[10] != 'T' && s[10] != 't') || two_digits(s + 11, &h) || s[13] != ':' ||
	    two_digits(s + 14, &min) || s[16] != ':' || two_digits(s + 17, &sec))
		return 0;
	int year = c * 100 + y2;
	if (mon < 1 || mon > 12 || day < 1 || h > 23 || min > 59 || sec > 60)
		return 0;
	int dim = mdays[mon - 1] + (mon == 2 && leap_year(year));
	if (day > dim)
		return 0;

	const char *p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return 1;
	int oh, om;
	if ((*p != '+' && *p != '-') || two_digits(p + 1, &oh) || p[3] != ':' ||
	    two_digits(p + 4, &om) || p[6] != '\0')
		return 0;
	return oh <= 23 && om <= 59;
}

/* A required attribute: a non-empty string. */
static int required_string(json_t *ev, const char *name, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(ev, name);
	if (!v)
		return fail_with(err, errlen, "envelope: missing attribute \"%s\"", name);
	if (!json_is_string(v))
		return fail_with(err, errlen, "envelope: attribute \"%s\" must be a string", name);
	if (json_string_length(v) == 0)
		return fail_with(err, errlen, "envelope: attribute \"%s\" must not be empty", name);
	*out = json_string_value(v);
	return 0;
}

/* An optional attribute: absent or null, or a string. */
static int optional_string(json_t *ev, const char *name, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(ev, name);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail_with(err, errlen, "envelope: attribute \"%s\" must be a string", name);
	*out = json_string_value(v);
	return 0;
}

/* A datacontenttype that says data is JSON: application/json or a type
 * with the +json suffix (RFC 6839), in any case, parameters after ';'. */
static int json_media_type(const char *v)
{
	size_t n = strcspn(v, ";");

	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n == strlen("application/json") && !strncasecmp(v, "application/json", n))
		return 1;
	return n > 5 && !strncasecmp(v + n - 5, "+json", 5) && memchr(v, '/', n) != NULL;
}

static char *dup_or_null(const char *s, int *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = 1;
	return d;
}

int envelope_decode(const char *buf, size_t len, struct envelope *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *ev = NULL;
	const char *id, *source, *type, *subject, *time, *content_type;
	int oom = 0;

	memset(out, 0, sizeof(*out));
	if (len > ENVELOPE_MAX_BYTES)
		return fail_with(err, errlen, "envelope: %zu bytes is over the limit of %d", len,
				 ENVELOPE_MAX_BYTES);
	/* Duplicate keys would let two readers see two different events. */
	ev = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!ev)
		return fail_with(err, errlen, "envelope: not JSON: %s at line %d column %d",
				 jerr.text, jerr.line, jerr.column);
	if (!json_is_object(ev)) {
		fail_with(err, errlen, "envelope: not a JSON object");
		goto fail;
	}

	json_t *sv = json_object_get(ev, "specversion");
	if (!sv) {
		fail_with(err, errlen, "envelope: missing attribute \"specversion\"");
		goto fail;
	}
	if (!json_is_string(sv) || strcmp(json_string_value(sv), "1.0") != 0) {
		fail_with(err, errlen, "envelope: specversion must be \"1.0\"");
		goto fail;
	}
	if (required_string(ev, "id", &id, err, errlen) < 0 ||
	    required_string(ev, "source", &source, err, errlen) < 0 ||
	    required_string(ev, "type", &type, err, errlen) < 0 ||
	    optional_string(ev, "subject", &subject, err, errlen) < 0 ||
	    optional_string(ev, "time", &time, err, errlen) < 0)
		goto fail;
	if (time && !valid_rfc3339(time)) {
		fail_with(err, errlen, "envelope: attribute \"time\" is not an RFC 3339 timestamp");
		goto fail;
	}
	if (optional_string(ev, "datacontenttype", &content_type, err, errlen) < 0)
		goto fail;
	if (content_type && !json_media_type(content_type)) {
		fail_with(err, errlen,
			  "envelope: datacontenttype must be application/json (or a +json type)");
		goto fail;
	}
	json_t *data = json_object_get(ev, "data");
	if (!data) {
		fail_with(err, errlen, "envelope: missing attribute \"data\"");
		goto fail;
	}
	if (!json_is_object(data)) {
		fail_with(err, errlen, "envelope: data must be a JSON object");
		goto fail;
	}

	out->id = dup_or_null(id, &oom);
	out->source = dup_or_null(source, &oom);
	out->type = dup_or_null(type, &oom);
	out->subject = dup_or_null(subject, &oom);
	out->time = dup_or_null(time, &oom);
	if (oom) {
		envelope_clear(out);
		fail_with(err, errlen, "envelope: out of memory");
		goto fail;
	}
	out->data = json_incref(data);
	json_decref(ev);
	return 0;
fail:
	json_decref(ev);
	return -1;
}

void envelope_clear(struct envelope *e)
{
	free(e->id);
	free(e->source);
	free(e->type);
	free(e->subject);
	free(e->time);
	json_decref(e->data);
	memset(e, 0, sizeof(*e));
}

int envelope_attempt(const json_t *data)
{
	const json_t *a = json_object_get(data, "attempt");
	json_int_t n = json_is_integer(a) ? json_integer_value(a) : 0;
	return n >= 1 && n <= INT_MAX ? (int)n : -1;
}
