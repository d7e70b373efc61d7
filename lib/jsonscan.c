/* jsonscan: recursive descent over RFC 8259 that records the values at given paths.
 *
 * The text is read once, in place. Keys are compared with the paths only
 * inside objects that lie on a path, so the rest of the text costs no more
 * than checking it.
 */
#include "lib/jsonscan.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hex.h"
#include "lib/utf8.h"

struct scan {
	const unsigned char *text, *p, *end;
	struct jsonscan_field *fields;
	/* For each field, how many bytes of its path the objects entered so
	 * far have matched: meeting the same key again cannot go further. */
	size_t reached[JSONSCAN_MAX_FIELDS];
	char *err;
	size_t errlen;
};

/* A value just scanned; for a string, the bytes between its quotes. */
struct token {
	enum jsonscan_type type;
	const unsigned char *at;
	size_t len;
};

static int scan_value(struct scan *s, int depth, uint64_t mask, size_t plen, struct token *t);

static int fail(struct scan *s, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct scan *s, const unsigned char *at, const char *fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(s->err, s->errlen, "%s at byte %zu", what, (size_t)(at - s->text));
	return -1;
}

static int end_of_input(struct scan *s)
{
	return fail(s, s->end, "unexpected end of input");
}

/* The byte at s->p is not what the grammar allows there. */
static int unexpected(struct scan *s, const char *expected)
{
	if (s->p >= s->end)
		return end_of_input(s);
	unsigned char c = *s->p;
	if (c == 0)
		return fail(s, s->p, "NUL byte");
	if (c > 0x20 && c < 0x7f)
		return fail(s, s->p, "%s, found '%c'", expected, c);
	return fail(s, s->p, "%s, found byte 0x%02x", expected, c);
}

static int is_digit(const struct scan *s, const unsigned char *p)
{
	return p < s->end && *p >= '0' && *p <= '9';
}

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether none of the 8 bytes at p ends a plain run of a string: no quote,
 * backslash, control character or non-ASCII byte. Each test is exact for
 * "any byte", which is all that is asked. */
static int plain8(const unsigned char *p)
{
	uint64_t x, q, b;
	memcpy(&x, p, sizeof(x));
	q = x ^ (ONES * '"');
	b = x ^ (ONES * '\\');
	return !((x | ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS);
}

static void skip_space(struct scan *s)
{
	/* Indentation comes in runs of spaces. */
	while (s->end - s->p >= 8 && memcmp(s->p, "        ", 8) == 0)
		s->p += 8;
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/* The code unit of "\uXXXX" at p, or -1 when it is not four hex digits. */
static long code_unit(const struct scan *s, const unsigned char *p)
{
	long cu = 0;
	if (s->end - p < 6)
		return -1;
	for (int i = 2; i < 6; i++) {
		int h = hex_digit(p[i]);
		if (h < 0)
			return -1;
		cu = cu * 16 + h;
	}
	return cu;
}

/* *pp at a backslash; moves past the escape. */
static int scan_escape(struct scan *s, const unsigned char **pp)
{
	const unsigned char *p = *pp;
	if (s->end - p < 2)
		return end_of_input(s);
	switch (p[1]) {
	case '"':
	case '\\':
	case '/':
	case 'b':
	case 'f':
	case 'n':
	case 'r':
	case 't':
		*pp = p + 2;
		return 0;
	case 'u':
		break;
	default:
		if (p[1] > 0x20 && p[1] < 0x7f)
			return fail(s, p, "invalid escape '\\%c'", p[1]);
		return fail(s, p, "invalid escape, backslash before byte 0x%02x", p[1]);
	}
	long cu = code_unit(s, p);
	if (cu < 0) {
		const unsigned char *q = p + 2;
		while (q < s->end && q < p + 6 && hex_digit(*q) >= 0)
			q++;
		if (q == s->end)
			return end_of_input(s);
		return fail(s, p, "invalid \\u escape, four hex digits expected");
	}
	if (cu >= 0xdc00 && cu <= 0xdfff)
		return fail(s, p, "lone surrogate \\u%04lx", cu);
	if (cu >= 0xd800 && cu <= 0xdbff) {
		long low =
		    s->end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? code_unit(s, p + 6) : -1;
		if (low < 0xdc00 || low > 0xdfff)
			return fail(s, p, "lone surrogate \\u%04lx", cu);
		*pp = p + 12;
		return 0;
	}
	*pp = p + 6;
	return 0;
}

/* s->p at the opening quote. */
static int scan_string(struct scan *s, struct token *t)
{
	const unsigned char *p = s->p + 1, *end = s->end;
	t->type = JSONSCAN_STRING;
	t->at = p;
	for (;;) {
		while (end - p >= 8 && plain8(p))
			p += 8;
		while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= end)
			return end_of_input(s);
		if (*p == '"')
			break;
		if (*p == '\\') {
			if (scan_escape(s, &p) < 0)
				return -1;
		} else if (*p == 0) {
			return fail(s, p, "NUL byte");
		} else if (*p < 0x20) {
			return fail(s, p, "control character 0x%02x not escaped in a string", *p);
		} else {
			size_t n = utf8_length(p, end);
			if (!n)
				return fail(s, p, "invalid UTF-8");
			p += n;
		}
	}
	t->len = (size_t)(p - t->at);
	s->p = p + 1;
	return 0;
}

static int scan_number(struct scan *s, struct token *t)
{
	t->type = JSONSCAN_NUMBER;
	t->at = s->p;
	if (*s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0') {
		s->p++;
		if (is_digit(s, s->p))
			return fail(s, s->p - 1, "leading zero in a number");
	} else if (is_digit(s, s->p)) {
		while (is_digit(s, s->p))
			s->p++;
	} else {
		return unexpected(s, "digit expected in a number");
	}
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!is_digit(s, s->p))
			return unexpected(s, "digit expected after a decimal point");
		while (is_digit(s, s->p))
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!is_digit(s, s->p))
			return unexpected(s, "digit expected in an exponent");
		while (is_digit(s, s->p))
			s->p++;
	}
	t->len = (size_t)(s->p - t->at);
	return 0;
}

static int scan_literal(struct scan *s, const char *word, enum jsonscan_type type, struct token *t)
{
	size_t n = strlen(word), avail = (size_t)(s->end - s->p);
	if (avail < n && memcmp(s->p, word, avail) == 0)
		return end_of_input(s);
	if (avail < n || memcmp(s->p, word, n) != 0)
		return fail(s, s->p, "invalid literal, %s expected", word);
	t->type = type;
	t->at = s->p;
	t->len = n;
	s->p += n;
	return 0;
}

/* Decodes one character of a checked string's text into out (up to 4
 * bytes); returns how many it wrote. */
static size_t decode_char(const unsigned char **pp, unsigned char *out)
{
	const unsigned char *p = *pp;
	unsigned long cp;
	if (*p != '\\') {
		*out = *p;
		*pp = p + 1;
		return 1;
	}
	*pp = p + 2;
	switch (p[1]) {
	case 'b':
		*out = '\b';
		return 1;
	case 'f':
		*out = '\f';
		return 1;
	case 'n':
		*out = '\n';
		return 1;
	case 'r':
		*out = '\r';
		return 1;
	case 't':
		*out = '\t';
		return 1;
	case 'u':
		break;
	default:
		*out = p[1];
		return 1;
	}
	cp = 0;
	for (int i = 2; i < 6; i++)
		cp = cp * 16 + (unsigned long)hex_digit(p[i]);
	*pp = p + 6;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		unsigned long low = 0;
		for (int i = 8; i < 12; i++)
			low = low * 16 + (unsigned long)hex_digit(p[i]);
		cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
		*pp = p + 12;
	}
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Whether the checked text of a key with escapes equals the path segment seg. */
static int escaped_key_equals(const struct token *key, const char *seg, size_t seglen)
{
	const unsigned char *p = key->at, *end = key->at + key->len;
	size_t i = 0;
	while (p < end) {
		unsigned char c[4];
		size_t n = decode_char(&p, c);
		if (n > seglen - i || memcmp(c, seg + i, n) != 0)
			return 0;
		i += n;
	}
	return i == seglen;
}

/* Of the fields in mask, whose paths have matched plen bytes so far: *here
 * gets those that end at key, *below those that go on into its value. */
static int match_key(struct scan *s, const struct token *key, uint64_t mask, size_t plen,
		     uint64_t *here, uint64_t *below, size_t *next)
{
	const char *k = (const char *)key->at;
	int escaped = memchr(k, '\\', key->len) != NULL;
	/* A path's segments hold no '.': a key that does is none of them
	 * ({"repository.full_name": …} is not at repository.full_name). */
	if (!escaped && memchr(k, '.', key->len))
		return 0;
	for (size_t i = 0; i < JSONSCAN_MAX_FIELDS && mask >> i; i++) {
		if (!(mask >> i & 1))
			continue;
		const char *seg = s->fields[i].path + plen;
		size_t seglen = key->len;
		if (escaped) {
			seglen = strcspn(seg, ".");
			if (!escaped_key_equals(key, seg, seglen))
				continue;
		} else if ((seglen && seg[0] != k[0]) || strncmp(seg, k, seglen) != 0 ||
			   (seg[seglen] != '.' && seg[seglen] != '\0')) {
			/* The key holds no NUL, so strncmp stops within seg. */
			continue;
		}
		size_t reach = plen + seglen + 1;
		if (s->reached[i] >= reach)
			return fail(s, key->at - 1, "duplicate key \"%.*s\"", (int)seglen, seg);
		s->reached[i] = reach;
		if (seg[seglen] == '.') {
			*below |= (uint64_t)1 << i;
			*next = reach;
		} else {
			*here |= (uint64_t)1 << i;
		}
	}
	return 0;
}

/* The value of an integer's text, when it has no fraction or exponent and
 * fits a long long. */
static int integer_value(const unsigned char *p, size_t n, long long *out)
{
	int neg = *p == '-';
	unsigned long long v = 0, limit = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
	for (size_t i = (size_t)neg; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		unsigned d = p[i] - '0';
		if (v > (limit - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	if (!neg)
		*out = (long long)v;
	else
		*out = v > (unsigned long long)LLONG_MAX ? LLONG_MIN : -(long long)v;
	return 1;
}

static void record(struct scan *s, uint64_t here, const unsigned char *start, const struct token *v)
{
	for (size_t i = 0; i < JSONSCAN_MAX_FIELDS && here >> i; i++) {
		if (!(here >> i & 1))
			continue;
		struct jsonscan_field *f = &s->fields[i];
		f->type = v->type;
		f->offset = (size_t)(start - s->text);
		if (v->type == JSONSCAN_STRING) {
			/* Points into the text until the scan succeeds. */
			f->string = (const char *)v->at;
			f->length = v->len;
		} else if (v->type == JSONSCAN_NUMBER) {
			f->is_integer = integer_value(v->at, v->len, &f->integer);
		}
	}
}

static int scan_object(struct scan *s, int depth, uint64_t mask, size_t plen, struct token *t)
{
	if (depth > JSONSCAN_MAX_DEPTH)
		return fail(s, s->p, "nesting deeper than %d levels", JSONSCAN_MAX_DEPTH);
	t->type = JSONSCAN_OBJECT;
	s->p++;
	skip_space(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		struct token key, value;
		if (s->p >= s->end || *s->p != '"')
			return unexpected(s, "string key expected");
		if (scan_string(s, &key) < 0)
			return -1;
		skip_space(s);
		if (s->p >= s->end || *s->p != ':')
			return unexpected(s, "':' expected after an object key");
		s->p++;
		skip_space(s);
		uint64_t here = 0, below = 0;
		size_t next = 0;
		if (mask && match_key(s, &key, mask, plen, &here, &below, &next) < 0)
			return -1;
		const unsigned char *start = s->p;
		if (scan_value(s, depth, below, next, &value) < 0)
			return -1;
		if (here)
			record(s, here, start, &value);
		skip_space(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			skip_space(s);
		} else if (s->p < s->end && *s->p == '}') {
			s->p++;
			return 0;
		} else {
			return unexpected(s, "',' or '}' expected in an object");
		}
	}
}

static int scan_array(struct scan *s, int depth, struct token *t)
{
	if (depth > JSONSCAN_MAX_DEPTH)
		return fail(s, s->p, "nesting deeper than %d levels", JSONSCAN_MAX_DEPTH);
	t->type = JSONSCAN_ARRAY;
	s->p++;
	skip_space(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		struct token item;
		if (scan_value(s, depth, 0, 0, &item) < 0)
			return -1;
		skip_space(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			skip_space(s);
		} else if (s->p < s->end && *s->p == ']') {
			s->p++;
			return 0;
		} else {
			return unexpected(s, "',' or ']' expected in an array");
		}
	}
}

/* s->p at the value's first byte; mask and plen are for an object. */
static int scan_value(struct scan *s, int depth, uint64_t mask, size_t plen, struct token *t)
{
	if (s->p >= s->end)
		return end_of_input(s);
	switch (*s->p) {
	case '{':
		return scan_object(s, depth + 1, mask, plen, t);
	case '[':
		return scan_array(s, depth + 1, t);
	case '"':
		return scan_string(s, t);
	case 't':
		return scan_literal(s, "true", JSONSCAN_TRUE, t);
	case 'f':
		return scan_literal(s, "false", JSONSCAN_FALSE, t);
	case 'n':
		return scan_literal(s, "null", JSONSCAN_NULL, t);
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return scan_number(s, t);
		return unexpected(s, "value expected");
	}
}

/* Unescapes the strings found into one block, once the text is known good. */
static int copy_strings(struct scan *s, size_t nfields, char **store)
{
	size_t total = 0;
	for (size_t i = 0; i < nfields; i++) {
		if (s->fields[i].type == JSONSCAN_STRING)
			total += s->fields[i].length + 1;
	}
	if (!total)
		return 0;
	char *w = *store = malloc(total);
	if (!w) {
		snprintf(s->err, s->errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < nfields; i++) {
		struct jsonscan_field *f = &s->fields[i];
		if (f->type != JSONSCAN_STRING)
			continue;
		const unsigned char *p = (const unsigned char *)f->string, *end = p + f->length;
		char *start = w;
		while (p < end) {
			size_t n = decode_char(&p, (unsigned char *)w);
			if (n == 1 && *w == '\0') {
				free(*store);
				*store = NULL;
				return fail(s, s->text + f->offset, "\\u0000 in the value of %s",
					    f->path);
			}
			w += n;
		}
		*w++ = '\0';
		f->string = start;
		f->length = (size_t)(w - start - 1);
	}
	return 0;
}

int jsonscan_parse(const char *text, size_t len, struct jsonscan_field *fields, size_t nfields,
		   char **store, char *err, size_t errlen)
{
	struct scan s = {.text = (const unsigned char *)text,
			 .p = (const unsigned char *)text,
			 .end = (const unsigned char *)text + len,
			 .fields = fields,
			 .err = err,
			 .errlen = errlen};
	struct token top;

	*store = NULL;
	if (nfields > JSONSCAN_MAX_FIELDS) {
		snprintf(err, errlen, "more than %d paths asked for", JSONSCAN_MAX_FIELDS);
		return -1;
	}
	for (size_t i = 0; i < nfields; i++) {
		const char *path = fields[i].path;
		memset(&fields[i], 0, sizeof(fields[i]));
		fields[i].path = path;
	}
	if (len == 0) {
		snprintf(err, errlen, "empty input");
		return -1;
	}
	skip_space(&s);
	uint64_t mask = nfields == JSONSCAN_MAX_FIELDS ? UINT64_MAX : ((uint64_t)1 << nfields) - 1;
	if (scan_value(&s, 0, mask, 0, &top) < 0)
		return -1;
	skip_space(&s);
	if (s.p < s.end)
		return unexpected(&s, "end of input expected after the value");
	if (copy_strings(&s, nfields, store) < 0)
		return -1;
	return (int)top.type;
}
