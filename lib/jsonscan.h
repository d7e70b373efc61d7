/* jsonscan: one pass over a JSON text that checks it and picks out a few values.
 *
 * The whole text must be exactly one JSON value as RFC 8259 defines it (UTF-8
 * without overlong forms or encoded surrogates, escapes and numbers by the
 * grammar, nesting at most JSONSCAN_MAX_DEPTH deep). Nothing is allocated per
 * value: only the values at the caller's paths are recorded, and their strings
 * unescaped into one block. Errors name what is wrong and its 0-based byte offset.
 */
#ifndef SLUICE_JSONSCAN_H
#define SLUICE_JSONSCAN_H

#include <stddef.h>

#define JSONSCAN_MAX_DEPTH  64
#define JSONSCAN_MAX_FIELDS 64

enum jsonscan_type {
	JSONSCAN_ABSENT = 0,
	JSONSCAN_NULL,
	JSONSCAN_FALSE,
	JSONSCAN_TRUE,
	JSONSCAN_NUMBER,
	JSONSCAN_STRING,
	JSONSCAN_ARRAY,
	JSONSCAN_OBJECT,
};

/* A value the caller wants. path names object keys from the top-level
 * object down, joined by '.' ("pull_request.head.sha"); arrays are not
 * entered. A key on the way to a path that occurs twice in its object makes
 * the text ambiguous and is an error; duplicates elsewhere are let be, as
 * RFC 8259 allows. */
struct jsonscan_field {
	const char *path;	 /* set by the caller */
	enum jsonscan_type type; /* JSONSCAN_ABSENT when nothing is at path */
	size_t offset;		 /* where the value starts in the text */
	const char *string;	 /* JSONSCAN_STRING: unescaped, NUL-terminated */
	size_t length;		 /* of string, in bytes */
	int is_integer;		 /* JSONSCAN_NUMBER without fraction or exponent that fits */
	long long integer;	 /* its value */
};

/* The type of the top-level value, with each field filled, or -1 with err.
 * Strings found are unescaped into *store, one block the caller frees (NULL
 * when there are none). A string to be returned must not hold \u0000, which
 * would cut it short. */
int jsonscan_parse(const char *text, size_t len, struct jsonscan_field *fields, size_t nfields,
		   char **store, char *err, size_t errlen);

#endif
