/* jsontext: JSON text written piece by piece (jsontext.h). */
#include "lib/jsontext.h"

#include <stdlib.h>
#include <string.h>

#include "lib/hex.h"
#include "lib/utf8.h"

/* Room for n more bytes and the final NUL. */
static int reserve(struct jsontext *t, size_t n)
{
	if (t->failed)
		return -1;
	if (t->len + n + 1 <= t->room)
		return 0;
	size_t room = t->room ? t->room : 256;
	while (room < t->len + n + 1)
		room *= 2;
	char *s = realloc(t->s, room);
	if (!s) {
		t->failed = 1;
		return -1;
	}
	t->s = s;
	t->room = room;
	return 0;
}

static void put(struct jsontext *t, const char *s, size_t n)
{
	if (reserve(t, n) < 0)
		return;
	memcpy(t->s + t->len, s, n);
	t->len += n;
}

void jsontext_raw(struct jsontext *t, const char *s)
{
	put(t, s, strlen(s));
}

void jsontext_string(struct jsontext *t, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);

	put(t, "\"", 1);
	while (p < end && !t->failed) {
		const unsigned char *run = p;
		while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		put(t, (const char *)run, (size_t)(p - run));
		if (p == end)
			break;
		if (*p >= 0x80) {
			size_t n = utf8_length(p, end);
			if (!n) {
				t->failed = 1;
				break;
			}
			put(t, (const char *)p, n);
			p += n;
			continue;
		}
		char esc[7] = {'\\', (char)*p, 0, 0, 0, 0, 0};
		size_t n = 2;
		switch (*p) {
		case '"':
		case '\\':
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default: /* another control character: \u00XX */
			memcpy(esc + 1, "u00", 3);
			hex_encode(p, 1, esc + 4);
			n = 6;
		}
		put(t, esc, n);
		p++;
	}
	put(t, "\"", 1);
}

void jsontext_value(struct jsontext *t, const json_t *value)
{
	size_t free_room = t->room > t->len ? t->room - t->len - 1 : 0;
	size_t n =
	    t->failed ? 0 : json_dumpb(value, t->s ? t->s + t->len : NULL, free_room, JSON_COMPACT);
	if (!n) {
		t->failed = 1;
		return;
	}
	if (n > free_room) {
		if (reserve(t, n) < 0 || json_dumpb(value, t->s + t->len, n, JSON_COMPACT) != n) {
			t->failed = 1;
			return;
		}
	}
	t->len += n;
}

void jsontext_reset(struct jsontext *t)
{
	t->len = 0;
	t->failed = 0;
}

char *jsontext_take(struct jsontext *t)
{
	char *s = NULL;
	if (!t->failed && reserve(t, 0) == 0) {
		t->s[t->len] = '\0';
		s = t->s;
	} else {
		free(t->s);
	}
	*t = (struct jsontext){0};
	return s;
}
