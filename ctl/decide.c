/* decide: POST .../environments/{env}/approve or /reject, one line out. */
#include "ctl/decide.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/deploy.h"
#include "ctl/render.h"

/* "run R: staging approved by alice; staging is deploying, the run is running" */
static int print_decision(FILE *out, const json_t *body)
{
	const json_t *ap = json_object_get(body, "approval");
	char *run = ctl_render_field(body, "run"), *env = ctl_render_field(body, "environment");
	char *decision = ctl_render_field(ap, "decision"), *by = ctl_render_field(ap, "by");
	char *status = ctl_render_field(body, "status");
	char *run_status = ctl_render_field(body, "run_status");
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
	return ctl_deploy_post(api, a, a->env, a->cmd == CTL_CMD_APPROVE ? "approve" : "reject",
			       print_decision, "decision", out, err, errlen);
}
