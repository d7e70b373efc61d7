/* provider_exec: each action runs the command configured for it through
 * stages/process.h, with the action's variables in its environment; exit 0
 * is done, anything else failed with the last line the command printed.
 *
 * def: {"type": "exec", "actions": {"<verb>": {"run": [argv...]} | {"sh":
 * "script"}}, "timeout_ms": N (default 10 minutes), "cwd": "dir"}. run
 * arguments may hold ${NAME} of the action's variables (expand_arg).
 */
#include "stages/provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strv.h"
#include "stages/command.h"
#include "stages/process.h"

#define DEFAULT_TIMEOUT_MS (10 * 60 * 1000)
#define KILL_GRACE_MS	   5000
#define LAST_LINE_MAX	   400

extern char **environ;

struct exec_job;

struct exec {
	json_t *actions;
	char *cwd;
	int timeout_ms;
	struct exec_job *job;
};

struct exec_job {
	struct exec *owner; /* NULL once cancelled: the child is still being stopped */
	struct process *proc;
	char **argv;
	char **envp;
	enum provider_verb verb;
	char last[LAST_LINE_MAX];
	provider_done_cb done;
	void *arg;
};

static void job_free(struct exec_job *j)
{
	strv_free(j->argv);
	strv_free(j->envp);
	free(j);
}

static int check_command(const char *verb, const json_t *cmd, char *err, size_t errlen)
{
	const json_t *run = json_object_get(cmd, "run");
	const json_t *sh = json_object_get(cmd, "sh");
	size_t i;
	json_t *arg;

	if (json_is_string(sh) && !run)
		return 0;
	if (json_is_array(run) && json_array_size(run) > 0 && !sh) {
		json_array_foreach(run, i, arg)
		{
			if (!json_is_string(arg)) {
				snprintf(err, errlen, "provider.actions.%s.run[%zu]: not a string",
					 verb, i);
				return -1;
			}
		}
		return 0;
	}
	snprintf(err, errlen, "provider.actions.%s: needs one of run (a list) or sh (a script)",
		 verb);
	return -1;
}

static void *exec_create(struct event_base *base, const json_t *def, char *err, size_t errlen)
{
	const json_t *actions = json_object_get(def, "actions");
	const json_t *timeout = json_object_get(def, "timeout_ms");
	const json_t *cwd = json_object_get(def, "cwd");
	const char *verb;
	json_t *cmd;
	struct exec *x;
	(void)base;

	if (!json_is_object(actions) || json_object_size(actions) == 0) {
		snprintf(err, errlen, "provider.actions: required, a command per action");
		return NULL;
	}
	json_object_foreach((json_t *)actions, verb, cmd)
	{
		if (provider_verb_parse(verb) < 0) {
			snprintf(err, errlen,
				 "provider.actions.%s: not an action (apply, verify, "
				 "set_weight, switch, promote, abort, scale_down)",
				 verb);
			return NULL;
		}
		if (check_command(verb, cmd, err, errlen) < 0)
			return NULL;
	}
	if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) <= 0 ||
			json_integer_value(timeout) > 86400000)) {
		snprintf(err, errlen, "provider.timeout_ms: a positive number of milliseconds");
		return NULL;
	}
	if (cwd && !json_is_string(cwd)) {
		snprintf(err, errlen, "provider.cwd: not a string");
		return NULL;
	}
	x = calloc(1, sizeof(*x));
	if (!x || (cwd && !(x->cwd = strdup(json_string_value(cwd))))) {
		free(x);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	x->actions = json_incref((json_t *)actions);
	x->timeout_ms = timeout ? (int)json_integer_value(timeout) : DEFAULT_TIMEOUT_MS;
	return x;
}

static int exec_supports(void *state, enum provider_verb verb)
{
	struct exec *x = state;

	return json_object_get(x->actions, provider_verb_name(verb)) != NULL;
}

/* The worker's own environment (PATH, HOME...) with the action's variables
 * over it. */
static char **build_env(const json_t *vars)
{
	char **env = calloc(1, sizeof(char *));
	size_t n = 0;
	const char *name;
	json_t *value;

	if (!env)
		return NULL;
	for (char **e = environ; *e; e++) {
		size_t len = strcspn(*e, "=");
		char key[256];
		if (len >= sizeof(key))
			continue;
		memcpy(key, *e, len);
		key[len] = '\0';
		if (json_object_get(vars, key))
			continue;
		if (strv_append(&env, &n, strdup(*e)) < 0)
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

static void on_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct exec_job *j = arg;
	(void)s;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	if (len >= sizeof(j->last))
		len = sizeof(j->last) - 1;
	memcpy(j->last, line, len);
	j->last[len] = '\0';
}

static void on_proc_exit(const struct process_result *r, void *arg)
{
	struct exec_job *j = arg;
	char msg[LAST_LINE_MAX + 300];
	const char *verb = provider_verb_name(j->verb);
	const char *sep = j->last[0] ? ": " : "";
	int ok = 0;

	if (!j->owner) {
		job_free(j);
		return;
	}
	j->owner->job = NULL;
	switch (r->outcome) {
	case PROCESS_EXITED:
		ok = r->exit_code == 0;
		if (ok)
			snprintf(msg, sizeof(msg), "%s done%s%s", verb, sep, j->last);
		else
			snprintf(msg, sizeof(msg), "%s failed with exit code %d%s%s", verb,
				 r->exit_code, sep, j->last);
		break;
	case PROCESS_SIGNALLED:
		snprintf(msg, sizeof(msg), "%s killed by signal %d%s%s", verb, r->term_signal, sep,
			 j->last);
		break;
	case PROCESS_TIMED_OUT:
		snprintf(msg, sizeof(msg), "%s timed out after %lld ms", verb, r->duration_ms);
		break;
	case PROCESS_CANCELLED:
		snprintf(msg, sizeof(msg), "%s cancelled", verb);
		break;
	case PROCESS_SPAWN_FAILED:
		snprintf(msg, sizeof(msg), "%s: %s", verb, r->error);
		break;
	}
	j->done(ok, msg, j->arg);
	job_free(j);
}

static int exec_start(void *state, const struct provider_action *a, provider_done_cb done,
		      void *arg, char *err, size_t errlen)
{
	struct exec *x = state;
	const char *verb = provider_verb_name(a->verb);
	json_t *vars = provider_action_vars(a);
	struct exec_job *j = calloc(1, sizeof(*j));
	struct process_spec spec = {0};

	if (!vars || !j) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	j->verb = a->verb;
	j->done = done;
	j->arg = arg;
	char why[300];
	j->argv = command_argv(json_object_get(x->actions, verb), vars, why, sizeof(why));
	if (!j->argv) {
		snprintf(err, errlen, "provider.actions.%s.%s", verb, why);
		goto fail;
	}
	j->envp = build_env(vars);
	if (!j->envp) {
		snprintf(err, errlen, "out of memory building the environment");
		goto fail;
	}
	spec.argv = (const char *const *)j->argv;
	spec.envp = (const char *const *)j->envp;
	spec.cwd = x->cwd;
	spec.timeout_ms = x->timeout_ms;
	spec.kill_grace_ms = KILL_GRACE_MS;
	j->proc = process_spawn(&spec, on_line, on_proc_exit, j);
	if (!j->proc) {
		snprintf(err, errlen, "cannot start the command of %s", verb);
		goto fail;
	}
	j->owner = x;
	x->job = j;
	json_decref(vars);
	return 0;
fail:
	if (j)
		job_free(j);
	json_decref(vars);
	return -1;
}

/* The child may take a while to go; its job stays until it is reaped. */
static void exec_cancel(void *state)
{
	struct exec *x = state;

	if (!x->job)
		return;
	x->job->owner = NULL;
	process_cancel(x->job->proc);
	x->job = NULL;
}

static void exec_destroy(void *state)
{
	struct exec *x = state;

	exec_cancel(x);
	json_decref(x->actions);
	free(x->cwd);
	free(x);
}

const struct provider_ops provider_exec_ops = {
    .type = "exec",
    .create = exec_create,
    .supports = exec_supports,
    .start = exec_start,
    .cancel = exec_cancel,
    .destroy = exec_destroy,
};
