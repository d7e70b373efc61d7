/* glob: GitHub-style branch/tag patterns (*, **, ?; "!" in a list). */
#include "lib/glob.h"

#include <stddef.h>

/* Iterative matcher with one backtrack point per star kind, as in the
 * classic wildcard algorithm: on a mismatch, resume from the most recent
 * star with one more character consumed. A "**" backtrack point outlives
 * "*" ones because it may also cross "/". */
int glob_match(const char *pattern, const char *text)
{
	const char *p = pattern, *t = text;
	const char *star_p = NULL, *star_t = NULL;   /* last "*" */
	const char *dstar_p = NULL, *dstar_t = NULL; /* last "**" */

	while (*t) {
		if (p[0] == '*' && p[1] == '*') {
			while (*p == '*')
				p++;
			dstar_p = p;
			dstar_t = t;
			star_p = NULL;
			continue;
		}
		if (*p == '*') {
			p++;
			star_p = p;
			star_t = t;
			continue;
		}
		if (*p && (*p == *t || (*p == '?' && *t != '/'))) {
			p++;
			t++;
			continue;
		}
		if (star_p && *star_t != '/') {
			p = star_p;
			t = ++star_t;
			continue;
		}
		if (dstar_p) {
			p = dstar_p;
			t = ++dstar_t;
			star_p = NULL;
			continue;
		}
		return 0;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

int glob_list_match(const json_t *globs, const char *text)
{
	int match = 0;
	size_t i;
	json_t *g;

	json_array_foreach(globs, i, g)
	{
		const char *pattern = json_string_value(g);
		int negated = pattern[0] == '!';
		/* Only a pattern that would change the outcome is tried. */
		if (match == negated && glob_match(pattern + negated, text))
			match = !negated;
	}
	return match;
}

int glob_list_includes(const json_t *globs)
{
	size_t i;
	json_t *g;

	json_array_foreach(globs, i, g)
	{
		if (json_string_value(g)[0] != '!')
			return 1;
	}
	return 0;
}
