/* check: the one validator of settings and pipeline files.
 *
 * Each helper checks one node of a loaded config_doc against what the schema
 * expects there and, when it does not fit, writes exactly one message
 * "file:line:col: key.path: message" and returns -1. Unknown keys are
 * reported at the key, everything else at the value.
 */
#ifndef SLUICE_CONFIG_CHECK_H
#define SLUICE_CONFIG_CHECK_H

#include <jansson.h>
#include <stddef.h>

#include "config/doc.h"

struct config_check {
	const char *file; /* as it appears in messages */
	char *err;
	size_t errlen;
	/* Paths are resolved but not opened: a file sent to the API's
	 * validate, whose sender must not learn which files the agent can
	 * read. */
	int unopened;
};

int config_check_fail(const struct config_check *ck, const struct config_doc_node *n,
		      const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* As config_check_fail, positioned at n's key instead of its value. */
int config_check_fail_key(const struct config_check *ck, const struct config_doc_node *n,
			  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* n is a mapping whose keys are all in allowed (NULL-terminated). */
int config_check_keys(const struct config_check *ck, const struct config_doc_node *n,
		      const char *const *allowed);
/* "map.key: missing required key (hint)", at map; hint may be NULL. */
int config_check_missing(const struct config_check *ck, const struct config_doc_node *map,
			 const char *key, const char *hint);
/* *out = the value of key in map; "missing required key" when absent. */
int config_check_require(const struct config_check *ck, const struct config_doc_node *map,
			 const char *key, const struct config_doc_node **out);

/* A string proper (quoted or plain, not a number or boolean). */
int config_check_string(const struct config_check *ck, const struct config_doc_node *n,
			int allow_empty, const char **out);
/* Any scalar but null, as written in the file: 007 gives "007", true "true". */
int config_check_text(const struct config_check *ck, const struct config_doc_node *n,
		      const char **out);
/* A sequence of texts, or with allow_single one text, as a new array. */
int config_check_text_list(const struct config_check *ck, const struct config_doc_node *n,
			   int allow_single, json_t **out);
/* A command's run: a non-empty sequence of texts, the argv, whose first,
 * the program, is not empty, as a new array. */
int config_check_argv(const struct config_check *ck, const struct config_doc_node *n, json_t **out);
/* A text list of branch or tag globs (lib/glob.h). One of only "!" globs
 * is an error: it would let no ref pass. */
int config_check_glob_list(const struct config_check *ck, const struct config_doc_node *n,
			   json_t **out);
int config_check_int(const struct config_check *ck, const struct config_doc_node *n, long long min,
		     long long max, long long *out);
/* A positive duration: an integer of seconds or "1h30m"; at most max_ms. */
int config_check_duration_ms(const struct config_check *ck, const struct config_doc_node *n,
			     long long max_ms, long long *out);
/* A positive byte count: an integer or "512KiB", "25MiB", "1GiB"; at most max. */
int config_check_size(const struct config_check *ck, const struct config_doc_node *n, long long max,
		      long long *out);

/* A mapping of HTTP header names (ASCII letters, digits, '-' and '_') to
 * values without line breaks, as a new object of strings. */
int config_check_headers(const struct config_check *ck, const struct config_doc_node *n,
			 json_t **out);

/* Sets key of obj to v, a new reference (NULL when it could not be made):
 * 0, or -1 with "out of memory" at n. */
int config_check_set(const struct config_check *ck, const struct config_doc_node *n, json_t *obj,
		     const char *key, json_t *v);
/* Sets key of obj to the file n names, relative to dir (the directory of
 * the file being checked) unless absolute or a credential, once checked
 * readable as config_file_check_readable does. */
int config_check_path(const struct config_check *ck, const struct config_doc_node *n,
		      const char *dir, json_t *obj, const char *key);

/* s is non-empty and made of ASCII letters, digits and the bytes of extra;
 * with ident it must also not start with a digit. */
int config_check_word(const char *s, const char *extra, int ident);

#endif
