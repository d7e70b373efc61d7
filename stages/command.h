/* command: the argument list of a `run:` or `sh:` command, as stages and
 * exec providers write them.
 *
 * `run: [...]` expands ${NAME} inside each argument (stages/expand.h), never
 * splitting; `sh: SCRIPT` becomes /bin/sh -e -c SCRIPT, whose variables the
 * shell reads from the environment.
 */
#ifndef SLUICE_COMMAND_H
#define SLUICE_COMMAND_H

#include <jansson.h>
#include <stddef.h>

/* cmd: an object with "run" (array of strings) or "sh" (string). A
 * NULL-terminated argv (free with strv_free; empty when cmd has neither), or
 * NULL with err like "run[1]: undefined variable \"X\"". */
char **command_argv(const json_t *cmd, const json_t *vars, char *err, size_t errlen);

#endif
