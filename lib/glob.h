/* glob: branch and tag patterns as GitHub Actions writes them.
 *
 * "*" matches any run of characters except "/", "**" matches any run
 * including "/", "?" one character except "/"; everything else matches
 * itself. Matching is linear-time in practice and never recurses deeply.
 * In a list, a pattern written "!pattern" excludes what it matches.
 */
#ifndef SLUICE_GLOB_H
#define SLUICE_GLOB_H

#include <jansson.h>

int glob_match(const char *pattern, const char *text);
/* The filter of a list of patterns (strings), as GitHub Actions reads
 * branches: and tags: — the last pattern that matches text decides: it
 * passes when that one is not "!"-negated, and fails when none matches. */
int glob_list_match(const json_t *globs, const char *text);
/* Whether the list has a pattern that is not negated: one of only "!"
 * patterns lets nothing pass. */
int glob_list_includes(const json_t *globs);

#endif
