/* glob: branch and tag patterns as GitHub Actions writes them.
 *
 * "*" matches any run of characters except "/", "**" matches any run
 * including "/", "?" one character except "/"; everything else matches
 * itself. Matching is linear-time in practice and never recurses deeply.
 */
#ifndef SLUICE_GLOB_H
#define SLUICE_GLOB_H

int glob_match(const char *pattern, const char *text);

#endif
