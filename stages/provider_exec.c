/* provider_exec: each action runs the command configured for it through
 * stages/command.h, with the action's variables in its environment; exit 0
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

#include "stages/command.h"

#define DEFAULT_TIMEOUT_MS (10 * 60 * 1000)

struct exec {
	json_t *actions;
	char *cwd;
	int timeout_ms;
	/* The action in flight. */
	struct command_run *job;
	enum provider_verb verb;
	provider_done_cb done;
	void *arg;
};

/* An action is run or sh alone: a misspelt key (tiemout: 5) would
 * otherwise be ignored and the command run without it. */
static int check_command(const char *verb, const json_t *cmd, char *err, size_t errlen)
{
	const json_t *run = json_object_get(cmd, "run");
	const json_t *sh = json_object_get(cmd, "sh");
	const char *name;
	size_t i;
	json_t *arg;

	json_object_foreach((json_t *)cmd, name, arg)
	{
		if (strcmp(name, "run") != 0 && strcmp(name, "sh") != 0) {
			snprintf(err, errlen, "provider.actions.%s.%s: unknown key (run, sh)", verb,
				 name);
			return -1;
		}
	}
	/* An empty script does nothing and exits 0: the action would pass
	 * without being carried out. */
	if (json_is_string(sh) && json_string_length(sh) == 0) {
		snprintf(err, errlen, "provider.actions.%s.sh: must not be empty", verb);
		return -1;
	}
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
		/* No program is named "": the action would always fail. */
		if (!json_string_length(json_array_get(run, 0))) {
			snprintf(err, errlen, "provider.actions.%s.run[0]: must not be empty",
				 verb);
			return -1;
		}
		return 0;
	}
	snprintf(err, errlen, "provider.actions.%s: needs one of run (a list) or sh (a script)",
		 verb);
	return -1;
}

static const char *const exec_keys[] = {"type", "actions", "timeout", "cwd", NULL};

static void *exec_create(struct event_base *base, const json_t *def, char *err, size_t errlen)
{
	const json_t *actions = json_object_get(def, "actions");
	const json_t *cwd = json_object_get(def, "cwd");
	struct exec *x;
	int timeout_ms;
	(void)base;

	if (provider_def_actions(def, "a command", check_command, err, errlen) < 0 ||
	    provider_def_ms(def, "timeout_ms", DEFAULT_TIMEOUT_MS, 86400000, &timeout_ms, err,
			    errlen) < 0)
		return NULL;
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
	x->timeout_ms = timeout_ms;
	return x;
}

static int exec_supports(void *state, enum provider_verb verb)
{
	struct exec *x = state;

	return json_object_get(x->actions, provider_verb_name(verb)) != NULL;
}

static void on_command_exit(const struct process_result *r, const char *last, void *arg)
{
	struct exec *x = arg;
	char msg[COMMAND_LAST_LINE_MAX + 300];
	const char *verb = provider_verb_name(x->verb);
	const char *sep = last[0] ? ": " : "";
	int ok = 0;

	x->job = NULL;
	switch (r->outcome) {
	case PROCESS_EXITED:
		ok = r->exit_code == 0;
		if (ok)
			snprintf(msg, sizeof(msg), "%s done%s%s", verb, sep, last);
		else
			snprintf(msg, sizeof(msg), "%s failed with exit code %d%s%s", verb,
				 r->exit_code, sep, last);
		break;
	case PROCESS_SIGNALLED:
		snprintf(msg, sizeof(msg), "%s killed by signal %d%s%s", verb, r->term_signal, sep,
			 last);
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
	x->done(ok, msg, x->arg);
}

static int exec_start(void *state, const struct provider_action *a, provider_done_cb done,
		      void *arg, char *err, size_t errlen)
{
	struct exec *x = state;
	const char *verb = provider_verb_name(a->verb);
	json_t *vars = provider_action_vars(a);
	char **argv, why[300];

	if (!vars) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	argv = command_argv(json_object_get(x->actions, verb), vars, why, sizeof(why));
	if (!argv) {
		snprintf(err, errlen, "provider.actions.%s.%s", verb, why);
		json_decref(vars);
		return -1;
	}
	/* The worker's own environment holds what it runs with (a systemd
	 * CREDENTIALS_DIRECTORY, NOTIFY_SOCKET, cloud credentials): a provider's
	 * command sees of it only what a hook does. */
	const struct command_spec spec = {.vars = vars,
					  .inherit = command_inherited_env,
					  .cwd = x->cwd,
					  .timeout_ms = x->timeout_ms,
					  .done = on_command_exit,
					  .arg = x};
	x->verb = a->verb;
	x->done = done;
	x->arg = arg;
	x->job = command_start(argv, &spec, err, errlen);
	json_decref(vars);
	return x->job ? 0 : -1;
}

/* The child may take a while to go; it is reaped without calling back. */
static void exec_cancel(void *state)
{
	struct exec *x = state;

	command_cancel(x->job);
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
    .keys = exec_keys,
    .create = exec_create,
    .supports = exec_supports,
    .start = exec_start,
    .cancel = exec_cancel,
    .destroy = exec_destroy,
};
