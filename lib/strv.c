/* strv: NULL-terminated string arrays for argv and envp. */
#include "lib/strv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int strv_append(char ***v, size_t *n, char *s)
{
	if (!s)
		return -1;
	char **grown = realloc(*v, (*n + 2) * sizeof(char *));
	if (!grown) {
		free(s);
		return -1;
	}
	*v = grown;
	grown[(*n)++] = s;
	grown[*n] = NULL;
	return 0;
}

char *strv_pair(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s=%s", name, value);
	return s;
}

void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}
