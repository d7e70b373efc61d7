/* control: retry RUN [STAGE], trigger PIPELINE --ref REF [--sha SHA],
 * pipelines. */
#include "ctl/control.h"

#include <stdlib.h>

#include "ctl/render.h"

static int print(FILE *out, const struct ctl_args *a, const json_t *body,
		 int (*render)(FILE *, const json_t *), char *err, size_t errlen)
{
	int rc = a->json ? ctl_render_json(out, body, 0) : render(out, body);

	if (rc < 0)
		snprintf(err, errlen,
			 "cannot print the answer: unexpected response or write error");
	return rc;
}

static int retry(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err, size_t errlen)
{
	char *run = ctl_api_escape(api, a->run);
	char *stage = a->stage ? ctl_api_escape(api, a->stage) : NULL;
	char *path = NULL;
	json_t *body = NULL;
	int rc = -1;

	if (!run || (a->stage && !stage) ||
	    (stage ? asprintf(&path, "/api/v1/runs/%s/stages/%s/retry", run, stage)
		   : asprintf(&path, "/api/v1/runs/%s/retry", run)) < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (ctl_api_post(api, path, &body, err, errlen) < 0)
		goto fail;
	rc = print(out, a, body, ctl_render_run, err, errlen);
fail:
	json_decref(body);
	free(path);
	free(stage);
	free(run);
	return rc;
}

static int trigger(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		   size_t errlen)
{
	char *name = ctl_api_escape(api, a->pipeline);
	char *path = NULL;
	json_t *req = json_pack("{s:s}", "ref", a->ref), *body = NULL;
	int rc = -1;

	if (!name || !req || (a->sha && json_object_set_new(req, "sha", json_string(a->sha)) < 0) ||
	    asprintf(&path, "/api/v1/pipelines/%s/trigger", name) < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (ctl_api_post_json(api, path, req, &body, err, errlen) < 0)
		goto fail;
	rc = print(out, a, body, ctl_render_run, err, errlen);
fail:
	json_decref(body);
	json_decref(req);
	free(path);
	free(name);
	return rc;
}

int ctl_control_run(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		    size_t errlen)
{
	json_t *body = NULL;
	int rc;

	switch (a->cmd) {
	case CTL_CMD_RETRY:
		return retry(api, a, out, err, errlen);
	case CTL_CMD_TRIGGER:
		return trigger(api, a, out, err, errlen);
	case CTL_CMD_PIPELINES:
		if (ctl_api_get(api, "/api/v1/pipelines", &body, err, errlen) < 0)
			return -1;
		rc = print(out, a, body, ctl_render_pipelines, err, errlen);
		json_decref(body);
		return rc;
	default:
		snprintf(err, errlen, "not a run control command");
		return -1;
	}
}
