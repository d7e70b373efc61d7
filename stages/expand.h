/* expand: ${NAME} substitution inside one argument, never splitting or
 * globbing, so that a payload value reaches a command only as text.
 *
 * NAME is [A-Za-z_][A-Za-z0-9_.-]*. "$${" writes a literal "${"; a "$" not
 * followed by "{" is literal. An undefined name or an unterminated "${" is an
 * error that names it. expand_text adds modes that encode a value for where
 * it lands, so that it stays one piece of data there (a JSON string, a URL
 * path or query component).
 */
#ifndef SLUICE_EXPAND_H
#define SLUICE_EXPAND_H

#include <jansson.h>
#include <stddef.h>

/* vars: a JSON object of name → string. *out is malloc'd on success. */
int expand_arg(const char *tmpl, const json_t *vars, char **out, char *err, size_t errlen);

enum expand_mode {
	EXPAND_PLAIN, /* values as they are: expand_arg */
	EXPAND_JSON,  /* values escaped as JSON string content (quotes, \\, control bytes) */
	/* A URL: values that land after the first literal '/', '?' or '#' of
	 * the template (not counting a literal "scheme://") are percent-encoded
	 * but for A-Z a-z 0-9 - . _ ~, so they cannot add a path segment or a
	 * query parameter; values before it (a base URL, a host) are as they are. */
	EXPAND_URL
};

int expand_text(const char *tmpl, const json_t *vars, enum expand_mode mode, char **out, char *err,
		size_t errlen);
/* Checks a template before it is expanded: defined(name, arg) answers
 * whether each ${NAME} in it will be. 0, or -1 with err set as expand_text
 * would set it (a bad "${", an undefined variable). */
int expand_check(const char *tmpl, int (*defined)(const char *name, void *arg), void *arg,
		 char *err, size_t errlen);
/* s[0, n) as mode writes a value (EXPAND_URL: percent-encoded), malloc'd
 * and NUL-terminated; NULL when out of memory. */
char *expand_encode(const char *s, size_t n, enum expand_mode mode);

#endif
