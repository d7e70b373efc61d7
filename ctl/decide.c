/* decide: POST .../environments/{env}/approve or /reject, one line out. */
#include "ctl/decide.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/fmt.h"
#include "ctl/render.h"

static char *text(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? ctl_fmt_sanitize(s, strlen(s)) : strdup("-");
}

/* "run R: staging approved by alice; staging is deploying, the run is running" */
static int print_decision(FILE *out, const json_t *body)
{
	const json_t *ap = json_object_get(body, "approval");
	char *run = text(body, "run"), *env = text(body, "environment");
	char *decision = text(ap, "decision"), *by = text(ap, "by");
	char *status = text(body, "status"), *run_status = text(body, "run_status");
	int rc = -1;

	if (run && env && decision && by && status && run_status &&
	    fprintf(out, "run %s: %s %s by %s; %s is %s, the run is %s\n", run, env, decision, by,
		    env, status, run_status) > 0)
		rc = ferror(out) ? -1 : 0;
	free(run);
	free(env);
	free(decision);
	free(by);
	free(status);
	free(run_status);
	return rc;
}

int ctl_decide_run(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		   size_t errlen)
{
	char *run = ctl_api_escape(api, a->run), *env = ctl_api_escape(api, a->env);
	char *path = NULL;
	json_t *payload = json_pack("{s:s}", "reason", a->reason);
	json_t *body = NULL;
	int rc = -1;

	if (!run || !env || !payload ||
	    (a->by && json_object_set_new(payload, "by", json_string(a->by)) < 0) ||
	    asprintf(&path, "/api/v1/runs/%s/environments/%s/%s", run, env,
		     a->cmd == CTL_CMD_APPROVE ? "approve" : "reject") < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (ctl_api_post_json(api, path, payload, &body, err, errlen) < 0)
		goto fail;
	rc = a->json ? ctl_render_json(out, body, 0) : print_decision(out, body);
	if (rc < 0)
		snprintf(err, errlen,
			 "cannot print the decision: unexpected response or write error");
fail:
	json_decref(body);
	json_decref(payload);
	free(path);
	free(env);
	free(run);
	return rc;
}
