/* deploy: promote, abort, retry and rollback of a run's deployment. */
#include "ctl/deploy.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/control.h"
#include "ctl/render.h"

int ctl_deploy_render(FILE *out, const json_t *body)
{
	const json_t *stage = json_object_get(body, "stage");
	const json_t *back = json_object_get(body, "rollback");
	const json_t *attempt = json_object_get(stage, "attempt");
	char *run = ctl_render_field(body, "run"), *env = ctl_render_field(body, "env"),
	     *by = ctl_render_field(body, "by");
	char *command = ctl_render_field(body, "command"),
	     *status = ctl_render_field(body, "status");
	char *sname = ctl_render_field(stage, "name"), *sstatus = ctl_render_field(stage, "status");
	char *to = ctl_render_field(back, "run"), *image = ctl_render_field(back, "image");
	long long n = json_is_integer(attempt) ? (long long)json_integer_value(attempt) : 0;
	int rc = -1;

	if (!json_is_object(body) || !run || !env || !by || !command || !status || !sname ||
	    !sstatus || !to || !image)
		goto done;
	if (strcmp(command, "retry") == 0)
		rc = fprintf(out, "run %s: retry of %s by %s; %s is %s, %s is %s (attempt %lld)\n",
			     run, env, by, env, status, sname, sstatus, n);
	else if (strcmp(command, "rollback") == 0)
		rc = fprintf(out,
			     "run %s: rollback of %s to run %s (%s) by %s; %s is %s, %s is %s "
			     "(attempt %lld)\n",
			     run, env, to, image, by, env, status, sname, sstatus, n);
	else if (json_is_true(json_object_get(body, "resumed")))
		rc = fprintf(out,
			     "run %s: %s sent to %s by %s; the paused rollout is queued again "
			     "(attempt %lld)\n",
			     run, strcmp(command, "promote_full") == 0 ? "promote --full" : command,
			     env, by, n);
	else
		rc = fprintf(out, "run %s: %s sent to %s by %s; %s is %s (attempt %lld)\n", run,
			     strcmp(command, "promote_full") == 0 ? "promote --full" : command, env,
			     by, sname, sstatus, n);
	rc = rc < 0 || ferror(out) ? -1 : 0;
done:
	free(run);
	free(env);
	free(by);
	free(command);
	free(status);
	free(sname);
	free(sstatus);
	free(to);
	free(image);
	return rc;
}

/* retry RUN NAME: 1 when NAME is an environment of the run, 0 when it is a
 * stage, -1 (err set) when it is neither or the run cannot be read. */
static int names_environment(struct ctl_api *api, const struct ctl_args *a, char *err,
			     size_t errlen)
{
	char *run = ctl_api_escape(api, a->run), *path = NULL;
	json_t *body = NULL;
	int rc = -1;

	if (strncmp(a->stage, "deploy@", 7) == 0)
		rc = 1;
	else if (!run || asprintf(&path, "/api/v1/runs/%s", run) < 0)
		snprintf(err, errlen, "out of memory");
	else if (ctl_api_get(api, path, &body, err, errlen) < 0)
		rc = -1;
	else if (json_object_get(json_object_get(body, "stages"), a->stage))
		rc = 0;
	else if (json_object_get(json_object_get(body, "environments"), a->stage))
		rc = 1;
	else
		snprintf(err, errlen, "run %s has no stage or environment named %s", a->run,
			 a->stage);
	json_decref(body);
	free(path);
	free(run);
	return rc;
}

int ctl_deploy_post(struct ctl_api *api, const struct ctl_args *a, const char *env,
		    const char *verb, ctl_deploy_render_fn render, const char *what, FILE *out,
		    char *err, size_t errlen)
{
	char *erun = ctl_api_escape(api, a->run), *eenv = ctl_api_escape(api, env), *path = NULL;
	json_t *payload = json_object(), *body = NULL;
	int rc = -1;

	if (!erun || !eenv || !payload ||
	    (a->reason && json_object_set_new(payload, "reason", json_string(a->reason)) < 0) ||
	    (a->by && json_object_set_new(payload, "by", json_string(a->by)) < 0) ||
	    (a->full && json_object_set_new(payload, "full", json_true()) < 0) ||
	    asprintf(&path, "/api/v1/runs/%s/environments/%s/%s", erun, eenv, verb) < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (ctl_api_post_json(api, path, payload, &body, err, errlen) < 0)
		goto fail;
	rc = a->json ? ctl_render_json(out, body, 0) : render(out, body);
	if (rc < 0)
		snprintf(err, errlen, "cannot print the %s: unexpected response or write error",
			 what);
fail:
	json_decref(body);
	json_decref(payload);
	free(path);
	free(eenv);
	free(erun);
	return rc;
}

static int post_command(struct ctl_api *api, const struct ctl_args *a, const char *env,
			const char *verb, FILE *out, char *err, size_t errlen)
{
	return ctl_deploy_post(api, a, env, verb, ctl_deploy_render, "answer", out, err, errlen);
}

int ctl_deploy_run(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		   size_t errlen)
{
	int env;

	switch (a->cmd) {
	case CTL_CMD_PROMOTE:
		return post_command(api, a, a->env, "promote", out, err, errlen);
	case CTL_CMD_ABORT:
		return post_command(api, a, a->env, "abort", out, err, errlen);
	case CTL_CMD_ROLLBACK:
		return post_command(api, a, a->env, "rollback", out, err, errlen);
	case CTL_CMD_RETRY:
		env = names_environment(api, a, err, errlen);
		if (env < 0)
			return -1;
		if (env)
			return post_command(
			    api, a, strncmp(a->stage, "deploy@", 7) == 0 ? a->stage + 7 : a->stage,
			    "retry", out, err, errlen);
		if (a->reason || a->by) {
			snprintf(err, errlen,
				 "retry: %s is a stage: --reason and --by apply to a deployment's "
				 "retry only",
				 a->stage);
			return -1;
		}
		return ctl_control_run(api, a, out, err, errlen);
	default:
		snprintf(err, errlen, "not a deployment command");
		return -1;
	}
}
