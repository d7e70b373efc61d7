/* expand: ${NAME} substitution; values are copied as text (or encoded for
 * where they land) and never re-expanded, split or globbed. */
#include "stages/expand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

static int buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (d == NULL)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static int is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static int put_encoded(struct buf *b, const char *s, size_t n, enum expand_mode mode)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[8];

	if (mode == EXPAND_PLAIN)
		return buf_put(b, s, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t len = 0;
		if (mode == EXPAND_URL) {
			if (is_unreserved(c)) {
				esc[len++] = (char)c;
			} else {
				esc[len++] = '%';
				esc[len++] = hex[c >> 4];
				esc[len++] = hex[c & 15];
			}
		} else if (c == '"' || c == '\\') {
			esc[len++] = '\\';
			esc[len++] = (char)c;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			esc[len++] = '\\';
			esc[len++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
		} else if (c < 0x20) {
			len = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else {
			esc[len++] = (char)c;
		}
		if (buf_put(b, esc, len) < 0)
			return -1;
	}
	return 0;
}

/* Scalars other than strings are written the way they read in a
 * configuration file, so that `replicas: 3` expands to "3". */
static int put_value(struct buf *b, const char *name, const json_t *v, enum expand_mode mode,
		     char *err, size_t errlen)
{
	char num[64];
	const char *s = num;
	size_t n;

	switch (json_typeof(v)) {
	case JSON_STRING:
		s = json_string_value(v);
		n = json_string_length(v);
		/* argv strings end at the first NUL: a value holding one would be
		 * cut short silently. */
		if (memchr(s, '\0', n) != NULL) {
			snprintf(err, errlen, "variable \"%s\" contains a NUL byte", name);
			return -1;
		}
		break;
	case JSON_INTEGER:
		n = (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
				     json_integer_value(v));
		break;
	case JSON_REAL:
		n = (size_t)snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
		s = "true";
		n = 4;
		break;
	case JSON_FALSE:
		s = "false";
		n = 5;
		break;
	default:
		snprintf(err, errlen, "variable \"%s\" is not a string", name);
		return -1;
	}
	if (put_encoded(b, s, n, mode) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Where EXPAND_URL starts to encode: the first '/', '?' or '#' of the
 * template's own text, after a literal "scheme://" that comes before any
 * variable. Variable names cannot hold those bytes, so a plain search finds
 * literal text only. */
static const char *url_encoding_starts(const char *tmpl)
{
	const char *from = tmpl;
	const char *sep = strstr(tmpl, "://");
	const char *var = strstr(tmpl, "${");

	if (sep != NULL && (var == NULL || sep < var))
		from = sep + 3;
	return from + strcspn(from, "/?#");
}

char *expand_encode(const char *s, size_t n, enum expand_mode mode)
{
	struct buf b = {0};

	if (buf_put(&b, "", 0) < 0 || put_encoded(&b, s, n, mode) < 0) {
		free(b.data);
		return NULL;
	}
	return b.data;
}

int expand_arg(const char *tmpl, const json_t *vars, char **out, char *err, size_t errlen)
{
	return expand_text(tmpl, vars, EXPAND_PLAIN, out, err, errlen);
}

enum piece { PIECE_END, PIECE_TEXT, PIECE_NAME, PIECE_ERROR };

/* The piece of the template at *p, which moves past it: literal text, or
 * the name of a ${NAME} (not NUL-terminated), as *s and *n; PIECE_ERROR
 * with err set when a "${" has no "}" or holds no name. */
static enum piece next_piece(const char *tmpl, const char **p, const char **s, size_t *n, char *err,
			     size_t errlen)
{
	const char *dollar = strchr(*p, '$');

	*s = *p;
	if (**p == '\0')
		return PIECE_END;
	if (dollar == NULL || dollar > *p) {
		*n = dollar ? (size_t)(dollar - *p) : strlen(*p);
		*p += *n;
		return PIECE_TEXT;
	}
	if (dollar[1] == '$' && dollar[2] == '{') {
		*s = dollar + 1;
		*n = 2;
		*p = dollar + 3;
		return PIECE_TEXT;
	}
	if (dollar[1] != '{') {
		*n = 1;
		*p = dollar + 1;
		return PIECE_TEXT;
	}
	const char *start = dollar + 2;
	const char *close = strchr(start, '}');
	if (close == NULL) {
		snprintf(err, errlen, "unterminated \"${\"");
		return PIECE_ERROR;
	}
	for (const char *c = start; c <= close; c++) {
		int ok = c == start ? is_name_start(*c) : (c == close || is_name_char(*c));
		if (!ok) {
			snprintf(err, errlen, "bad variable name at offset %zu",
				 (size_t)(c - tmpl));
			return PIECE_ERROR;
		}
	}
	*s = start;
	*n = (size_t)(close - start);
	*p = close + 1;
	return PIECE_NAME;
}

int expand_text(const char *tmpl, const json_t *vars, enum expand_mode mode, char **out, char *err,
		size_t errlen)
{
	struct buf b = {0};
	const char *p = tmpl, *s;
	const char *encode_from = mode == EXPAND_URL ? url_encoding_starts(tmpl) : tmpl;
	enum piece kind;
	size_t n;

	*out = NULL;
	if (buf_put(&b, "", 0) < 0)
		goto nomem;
	while ((kind = next_piece(tmpl, &p, &s, &n, err, errlen)) != PIECE_END) {
		if (kind == PIECE_ERROR)
			goto fail;
		if (kind == PIECE_TEXT) {
			if (buf_put(&b, s, n) < 0)
				goto nomem;
			continue;
		}
		char *name = strndup(s, n);
		if (name == NULL)
			goto nomem;
		const json_t *v = json_is_object(vars) ? json_object_get(vars, name) : NULL;
		int rc = -1;
		/* A name whose "${" (at s - 2) comes before encode_from is part
		 * of the base URL, inserted as it is. */
		if (v == NULL)
			snprintf(err, errlen, "undefined variable \"%s\"", name);
		else
			rc = put_value(&b, name, v,
				       mode == EXPAND_URL && s - 2 < encode_from ? EXPAND_PLAIN
										 : mode,
				       err, errlen);
		free(name);
		if (rc < 0)
			goto fail;
	}
	*out = b.data;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	free(b.data);
	return -1;
}

int expand_check(const char *tmpl, int (*defined)(const char *name, void *arg), void *arg,
		 char *err, size_t errlen)
{
	const char *p = tmpl, *s;
	enum piece kind;
	size_t n;

	while ((kind = next_piece(tmpl, &p, &s, &n, err, errlen)) != PIECE_END) {
		if (kind == PIECE_ERROR)
			return -1;
		if (kind != PIECE_NAME)
			continue;
		char *name = strndup(s, n);
		int ok = name && defined(name, arg);
		if (name == NULL)
			snprintf(err, errlen, "out of memory");
		else if (!ok)
			snprintf(err, errlen, "undefined variable \"%s\"", name);
		free(name);
		if (!ok)
			return -1;
	}
	return 0;
}
