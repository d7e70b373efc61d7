/* command: argv, environment and the run of run: and sh: commands. */
#include "stages/command.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "lib/strv.h"
#include "lib/utf8.h"
#include "stages/expand.h"

#define KILL_GRACE_MS 5000

extern char **environ;

/* The strings are the child's until it is reaped: the run outlives a
 * cancel. */
struct command_run {
	struct process *proc;
	char **argv;
	char **envp;
	command_line_cb line;
	command_exit_cb done;
	void *arg;
	int cancelled;
	char last[COMMAND_LAST_LINE_MAX];
};

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

/* "NAME=value" of the worker's environment, unless vars sets NAME. */
static int add_environ(char ***env, size_t *n, const json_t *vars)
{
	for (char **e = environ; *e; e++) {
		size_t len = strcspn(*e, "=");
		char key[256];
		if (len >= sizeof(key))
			continue;
		memcpy(key, *e, len);
		key[len] = '\0';
		if (json_object_get(vars, key))
			continue;
		if (strv_append(env, n, strdup(*e)) < 0)
			return -1;
	}
	return 0;
}

const char *const command_inherited_env[] = {"PATH", "HOME", "LANG", NULL};

char **command_env(const json_t *vars, const char *const *inherit)
{
	char **env = calloc(1, sizeof(char *));
	size_t n = 0;
	const char *name;
	json_t *value;

	if (!env)
		return NULL;
	if (!inherit && add_environ(&env, &n, vars) < 0)
		goto fail;
	for (const char *const *k = inherit; k && *k; k++) {
		const char *v = getenv(*k);
		if (v && !json_object_get(vars, *k) && strv_append(&env, &n, strv_pair(*k, v)) < 0)
			goto fail;
	}
	json_object_foreach((json_t *)vars, name, value)
	{
		if (!json_is_string(value))
			continue;
		if (strv_append(&env, &n, strv_pair(name, json_string_value(value))) < 0)
			goto fail;
	}
	return env;
fail:
	strv_free(env);
	return NULL;
}

static void run_free(struct command_run *r)
{
	strv_free(r->argv);
	strv_free(r->envp);
	free(r);
}

static void on_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct command_run *r = arg;
	size_t keep = len;
	(void)s;

	while (keep > 0 && (line[keep - 1] == '\r' || line[keep - 1] == ' '))
		keep--;
	/* It is quoted in JSON (a step's or a check's message, a stage's
	 * error), whatever bytes the command wrote. */
	if (keep > 0)
		utf8_copy(r->last, sizeof(r->last), line, keep);
	/* Last: the callback may cancel the run. */
	if (!r->cancelled && r->line)
		r->line(line, len, r->arg);
}

static void on_proc_exit(const struct process_result *res, void *arg)
{
	struct command_run *r = arg;

	if (!r->cancelled)
		r->done(res, r->last, r->arg);
	run_free(r);
}

struct command_run *command_start(char **argv, const struct command_spec *spec, char *err,
				  size_t errlen)
{
	struct command_run *r = calloc(1, sizeof(*r));
	struct process_spec ps = {0};

	if (!r) {
		strv_free(argv);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->argv = argv;
	r->line = spec->line;
	r->done = spec->done;
	r->arg = spec->arg;
	r->envp = command_env(spec->vars, spec->inherit);
	if (!r->envp) {
		snprintf(err, errlen, "out of memory building the environment");
		goto fail;
	}
	ps.argv = (const char *const *)r->argv;
	ps.envp = (const char *const *)r->envp;
	ps.cwd = spec->cwd;
	ps.timeout_ms = spec->timeout_ms;
	ps.kill_grace_ms = KILL_GRACE_MS;
	r->proc = process_spawn(&ps, on_line, on_proc_exit, r);
	if (!r->proc) {
		snprintf(err, errlen, "cannot start the command: %s", strerror(errno));
		goto fail;
	}
	return r;
fail:
	run_free(r);
	return NULL;
}

void command_cancel(struct command_run *r)
{
	if (!r)
		return;
	r->cancelled = 1;
	process_cancel(r->proc);
}
