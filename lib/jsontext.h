/* jsontext: JSON text written piece by piece, for messages whose shape is
 * fixed, without building a tree of values first.
 *
 * Strings are quoted and escaped as RFC 8259 asks (quotation mark, reverse
 * solidus and control characters); one that is not UTF-8 fails the text. A
 * failure (that, or memory) is kept: jsontext_take then returns NULL.
 */
#ifndef SLUICE_JSONTEXT_H
#define SLUICE_JSONTEXT_H

#include <jansson.h>
#include <stddef.h>

struct jsontext {
	char *s;
	size_t len, room;
	int failed;
};

/* Bytes as they are: JSON punctuation, names, text known to need no escape. */
void jsontext_raw(struct jsontext *t, const char *s);
/* s as a JSON string. */
void jsontext_string(struct jsontext *t, const char *s);
/* value as compact JSON (json_dumpb). */
void jsontext_value(struct jsontext *t, const json_t *value);
/* Empties t for another text, keeping its room; a failure is forgotten. The
 * text so far is t->s, t->len bytes (not NUL-terminated), unless t->failed. */
void jsontext_reset(struct jsontext *t);

/* The text, NUL-terminated, for the caller to free; NULL when anything failed.
 * t is empty afterwards. */
char *jsontext_take(struct jsontext *t);

#endif
