/* expand: ${NAME} substitution inside one argument, never splitting or
 * globbing, so that a payload value reaches a command only as text.
 *
 * NAME is [A-Za-z_][A-Za-z0-9_.-]*. "$${" writes a literal "${"; a "$" not
 * followed by "{" is literal. An undefined name or an unterminated "${" is an
 * error that names it.
 */
#ifndef SLUICE_EXPAND_H
#define SLUICE_EXPAND_H

#include <jansson.h>
#include <stddef.h>

/* vars: a JSON object of name → string. *out is malloc'd on success. */
int expand_arg(const char *tmpl, const json_t *vars, char **out, char *err, size_t errlen);

#endif
