/* command: run: and sh: commands as stages, hooks, checks and exec
 * providers write them: their argument list, their environment, and one
 * running on the loop.
 *
 * `run: [...]` expands ${NAME} inside each argument (stages/expand.h), never
 * splitting; `sh: SCRIPT` becomes /bin/sh -e -c SCRIPT, whose variables the
 * shell reads from the environment. A running command goes through
 * stages/process.h and keeps the last line it printed, for the message that
 * says how it ended.
 */
#ifndef SLUICE_COMMAND_H
#define SLUICE_COMMAND_H

#include <jansson.h>
#include <stddef.h>

#include "stages/process.h"

/* cmd: an object with "run" (array of strings) or "sh" (string). A
 * NULL-terminated argv (free with strv_free; empty when cmd has neither), or
 * NULL with err like "run[1]: undefined variable \"X\"". */
char **command_argv(const json_t *cmd, const json_t *vars, char *err, size_t errlen);

/* The string values of vars over the worker's own environment: all of it
 * when inherit is NULL, else only the names inherit lists (NULL-terminated).
 * A NULL-terminated envp (free with strv_free), or NULL when out of memory. */
char **command_env(const json_t *vars, const char *const *inherit);
/* What of the worker's own environment a hook, a check or a provider's
 * command sees: PATH, HOME and LANG (NULL-terminated). */
extern const char *const command_inherited_env[];

/* The longest last line kept, with its terminating NUL. */
#define COMMAND_LAST_LINE_MAX 400

struct command_run;

/* Each line the command prints, on either stream. */
typedef void (*command_line_cb)(const char *line, size_t len, void *arg);
/* Once, after the child is reaped. last: the last line it printed that was
 * not blank, without trailing spaces ("" for none). The run is freed when
 * this returns. */
typedef void (*command_exit_cb)(const struct process_result *r, const char *last, void *arg);

struct command_spec {
	const json_t *vars;	    /* the environment, with inherit (command_env) */
	const char *const *inherit; /* NULL: the whole of the worker's environment */
	const char *cwd;	    /* NULL: the worker's */
	int timeout_ms;		    /* 0: none */
	command_line_cb line;	    /* may be NULL */
	command_exit_cb done;
	void *arg;
};

/* Starts argv (from command_argv; taken over, and freed on failure too).
 * NULL with err "out of memory building the environment" or "cannot start
 * the command"; then no callback follows. */
struct command_run *command_start(char **argv, const struct command_spec *spec, char *err,
				  size_t errlen);
/* Stops the command (its process group is sent SIGTERM, then SIGKILL) and
 * calls back no more. The run lives on until its child is reaped, then
 * frees itself. NULL is fine. */
void command_cancel(struct command_run *r);

#endif
