/* command: argv of run: and sh: commands. */
#include "stages/command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strv.h"
#include "stages/expand.h"

char **command_argv(const json_t *cmd, const json_t *vars, char *err, size_t errlen)
{
	static const char *const shell[] = {"/bin/sh", "-e", "-c"};
	const char *script = json_string_value(json_object_get(cmd, "sh"));
	char **argv = calloc(1, sizeof(char *));
	size_t n = 0, i;
	json_t *arg;

	if (!argv)
		goto nomem;
	if (script) {
		for (i = 0; i < sizeof(shell) / sizeof(shell[0]); i++)
			if (strv_append(&argv, &n, strdup(shell[i])) < 0)
				goto nomem;
		if (strv_append(&argv, &n, strdup(script)) < 0)
			goto nomem;
		return argv;
	}
	json_array_foreach(json_object_get(cmd, "run"), i, arg)
	{
		char *out = NULL, why[256];
		if (expand_arg(json_string_value(arg), vars, &out, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "run[%zu]: %s", i, why);
			strv_free(argv);
			return NULL;
		}
		if (strv_append(&argv, &n, out) < 0)
			goto nomem;
	}
	return argv;
nomem:
	strv_free(argv);
	snprintf(err, errlen, "out of memory building the command");
	return NULL;
}
