/* utf8: what RFC 3629 allows as UTF-8 (utf8.h). */
#include "lib/utf8.h"

#include <stdlib.h>
#include <string.h>

size_t utf8_length(const unsigned char *p, const unsigned char *end)
{
	unsigned char lo = 0x80, hi = 0xbf; /* what the second byte may be */
	size_t n;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
	} else if (p[0] == 0xe0) {
		n = 3;
		lo = 0xa0;
	} else if (p[0] == 0xed) {
		n = 3;
		hi = 0x9f;
	} else if (p[0] >= 0xe1 && p[0] <= 0xef) {
		n = 3;
	} else if (p[0] == 0xf0) {
		n = 4;
		lo = 0x90;
	} else if (p[0] >= 0xf1 && p[0] <= 0xf3) {
		n = 4;
	} else if (p[0] == 0xf4) {
		n = 4;
		hi = 0x8f;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

uint32_t utf8_code_point(const unsigned char *p, size_t n)
{
	if (n == 1)
		return p[0];
	/* The lead byte's payload: 5, 4 or 3 bits after n ones and a zero. */
	uint32_t c = p[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++)
		c = (c << 6) | (p[i] & 0x3fu);
	return c;
}

/* U+FFFD REPLACEMENT CHARACTER */
static const char replacement[] = "\xef\xbf\xbd";

/* Length of the character at p that utf8_repair keeps, 0 for a byte it
 * replaces (a NUL, or one that starts no valid sequence). */
static size_t kept_length(const unsigned char *p, const unsigned char *end)
{
	return *p == 0 ? 0 : *p < 0x80 ? 1 : utf8_length(p, end);
}

int utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		size_t n = kept_length(p, end);
		if (n == 0)
			return 0;
		p += n;
	}
	return 1;
}

int utf8_repair(const char *s, size_t len, char **out, size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	size_t bad = 0;
	for (const unsigned char *q = p; q < end;) {
		size_t n = kept_length(q, end);
		bad += n == 0;
		q += n ? n : 1;
	}
	*out = NULL;
	*outlen = len;
	if (bad == 0)
		return 0;
	/* Each bad byte (one) becomes three. */
	char *copy = malloc(len + 2 * bad + 1), *o = copy;
	if (!copy)
		return -1;
	for (const unsigned char *q = p; q < end;) {
		size_t n = kept_length(q, end);
		if (n == 0) {
			memcpy(o, replacement, 3);
			o += 3;
			q++;
		} else {
			memcpy(o, q, n);
			o += n;
			q += n;
		}
	}
	*o = '\0';
	*out = copy;
	*outlen = (size_t)(o - copy);
	return 1;
}

void utf8_copy(char *out, size_t outlen, const char *s, size_t len)
{
	char *fixed;
	size_t n;

	if (utf8_repair(s, len, &fixed, &n) < 0) {
		out[0] = '\0';
		return;
	}
	if (fixed)
		s = fixed;
	if (n >= outlen) {
		/* Back to the first byte of the character the cut falls in. */
		n = outlen - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	free(fixed);
}
