/* commands: runs, show, logs and cancel, each one or more requests and a
 * rendering. */
#include "ctl/commands.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/api.h"
#include "ctl/control.h"
#include "ctl/decide.h"
#include "ctl/deploy.h"
#include "ctl/render.h"

/* Appends "&name=escaped(value)" (or "?" first) to *query. */
static int add_param(struct ctl_api *api, char **query, const char *name, const char *value)
{
	char *escaped = ctl_api_escape(api, value);
	char *q = NULL;
	int rc;

	if (!escaped)
		return -1;
	rc = asprintf(&q, "%s%c%s=%s", *query, strchr(*query, '?') ? '&' : '?', name, escaped);
	free(escaped);
	if (rc < 0)
		return -1;
	free(*query);
	*query = q;
	return 0;
}

static int cmd_runs(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		    size_t errlen)
{
	char *path = strdup("/api/v1/runs");
	char limit[24];
	json_t *body = NULL;
	int rc = -1;

	snprintf(limit, sizeof(limit), "%ld", a->limit);
	if (!path || (a->limit && add_param(api, &path, "limit", limit) < 0) ||
	    (a->pipeline && add_param(api, &path, "pipeline", a->pipeline) < 0) ||
	    (a->status && add_param(api, &path, "status", a->status) < 0) ||
	    (a->ref && add_param(api, &path, "ref", a->ref) < 0) ||
	    (a->before && add_param(api, &path, "before", a->before) < 0) ||
	    (a->after && add_param(api, &path, "after", a->after) < 0)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (ctl_api_get(api, path, &body, err, errlen) < 0)
		goto fail;
	if (a->json)
		rc = ctl_render_json(out, body, 0);
	else
		rc = ctl_render_runs(out, body);
	if (rc < 0)
		snprintf(err, errlen, "cannot print the runs: unexpected response or write error");
fail:
	json_decref(body);
	free(path);
	return rc;
}

/* show and cancel: one request about the run (GET, or POST to the path
 * with suffix) and the run as the agent answers. */
static int run_request(struct ctl_api *api, const struct ctl_args *a, const char *suffix, int post,
		       FILE *out, char *err, size_t errlen)
{
	char *id = ctl_api_escape(api, a->run);
	char *path = NULL;
	json_t *body = NULL;
	int rc = -1;

	if (!id || asprintf(&path, "/api/v1/runs/%s%s", id, suffix) < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((post ? ctl_api_post : ctl_api_get)(api, path, &body, err, errlen) < 0)
		goto fail;
	if (a->json)
		rc = ctl_render_json(out, body, 0);
	else
		rc = ctl_render_run(out, body);
	if (rc < 0)
		snprintf(err, errlen, "cannot print run %s: unexpected response or write error",
			 id);
fail:
	json_decref(body);
	free(path);
	free(id);
	return rc;
}

/* The cursor for the page after this one: the page's "next", else the id of
 * its last line. NULL when the server gave neither. */
static const char *next_cursor(const json_t *body, const json_t *lines)
{
	const json_t *next = json_object_get(body, "next");
	const json_t *last = json_array_get(lines, json_array_size(lines) - 1);

	if (json_is_string(next))
		return json_string_value(next);
	next = json_object_get(last, "id");
	return json_is_string(next) ? json_string_value(next) : NULL;
}

static int on_log_event(const char *event, const char *id, const char *data, void *arg)
{
	const struct ctl_args *a = ((void **)arg)[0];
	FILE *out = ((void **)arg)[1];
	(void)id;
	if (strcmp(event, "end") == 0)
		return 1;
	if (strcmp(event, "message") != 0)
		return 0;
	json_t *line = json_loads(data, 0, NULL);
	int rc =
	    line ? (a->json ? ctl_render_json(out, line, 1) : ctl_render_log_line(out, line)) : 0;
	json_decref(line);
	/* Lines show as they come, not when a buffer fills. */
	if (rc == 0 && fflush(out) != 0)
		rc = -1;
	return rc < 0 ? -1 : 0;
}

/* logs -f: the stage's event stream until its end event. */
static int cmd_follow(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		      size_t errlen)
{
	char *run = ctl_api_escape(api, a->run);
	char *stage = ctl_api_escape(api, a->stage);
	char *path = NULL;
	void *ctx[] = {(void *)a, out};
	int rc = -1;

	if (!run || !stage || asprintf(&path, "/api/v1/runs/%s/stages/%s/log", run, stage) < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
	} else {
		rc = ctl_api_follow(api, path, on_log_event, ctx, err, errlen);
	}
	free(path);
	free(stage);
	free(run);
	return rc;
}

/* Pages with ?after= until a page comes back empty. A server that does not
 * move its cursor forward ends the loop rather than repeating a page. */
static int cmd_logs(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		    size_t errlen)
{
	char *run = ctl_api_escape(api, a->run);
	char *stage = ctl_api_escape(api, a->stage);
	char *base = NULL;
	char *after = NULL;
	int rc = -1;

	if (!run || !stage || asprintf(&base, "/api/v1/runs/%s/stages/%s/log", run, stage) < 0) {
		base = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (;;) {
		char *path = strdup(base);
		json_t *body = NULL;
		const json_t *lines;
		const json_t *line;
		const char *cursor;
		size_t i;

		if (!path || (after && add_param(api, &path, "after", after) < 0)) {
			free(path);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (ctl_api_get(api, path, &body, err, errlen) < 0) {
			free(path);
			goto fail;
		}
		free(path);
		lines = json_object_get(body, "lines");
		if (!json_is_array(lines)) {
			json_decref(body);
			snprintf(err, errlen, "unexpected log response: no \"lines\" array");
			goto fail;
		}
		json_array_foreach(lines, i, line)
		{
			int wrc = a->json ? ctl_render_json(out, line, 1)
					  : ctl_render_log_line(out, line);
			if (wrc < 0) {
				json_decref(body);
				snprintf(err, errlen, "write error");
				goto fail;
			}
		}
		cursor = json_array_size(lines) ? next_cursor(body, lines) : NULL;
		if (!cursor || (after && strcmp(cursor, after) == 0)) {
			json_decref(body);
			break;
		}
		free(after);
		after = strdup(cursor);
		json_decref(body);
		if (!after) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	rc = 0;
fail:
	free(after);
	free(base);
	free(stage);
	free(run);
	return rc;
}

int ctl_commands_run(const struct ctl_args *a, FILE *out, char *err, size_t errlen)
{
	struct ctl_api *api;
	char token[512];
	int rc = -1;

	/* --url is checked with the other options; $SLUICE_URL here. */
	if (!ctl_url_scheme_ok(ctl_args_url(a))) {
		snprintf(err, errlen, "SLUICE_URL: not an http:// or https:// URL");
		return -1;
	}
	api = ctl_api_new(ctl_args_url(a));
	if (!api) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (ctl_args_token(a, token, sizeof(token), err, errlen) < 0) {
		ctl_api_free(api);
		return -1;
	}
	if (token[0] && ctl_api_set_token(api, token) < 0) {
		explicit_bzero(token, sizeof(token));
		snprintf(err, errlen, "out of memory");
		ctl_api_free(api);
		return -1;
	}
	explicit_bzero(token, sizeof(token));
	ctl_api_set_ca_file(api, ctl_args_ca_file(a));
	switch (a->cmd) {
	case CTL_CMD_RUNS:
		rc = cmd_runs(api, a, out, err, errlen);
		break;
	case CTL_CMD_SHOW:
		rc = run_request(api, a, "", 0, out, err, errlen);
		break;
	case CTL_CMD_LOGS:
		rc = a->follow ? cmd_follow(api, a, out, err, errlen)
			       : cmd_logs(api, a, out, err, errlen);
		break;
	case CTL_CMD_CANCEL:
		rc = run_request(api, a, "/cancel", 1, out, err, errlen);
		break;
	case CTL_CMD_RETRY:
		/* retry RUN NAME: NAME may be an environment. */
		rc = a->stage ? ctl_deploy_run(api, a, out, err, errlen)
			      : ctl_control_run(api, a, out, err, errlen);
		break;
	case CTL_CMD_PROMOTE:
	case CTL_CMD_ABORT:
	case CTL_CMD_ROLLBACK:
		rc = ctl_deploy_run(api, a, out, err, errlen);
		break;
	case CTL_CMD_TRIGGER:
	case CTL_CMD_PIPELINES:
		rc = ctl_control_run(api, a, out, err, errlen);
		break;
	case CTL_CMD_APPROVE:
	case CTL_CMD_REJECT:
		rc = ctl_decide_run(api, a, out, err, errlen);
		break;
	case CTL_CMD_VALIDATE:
	case CTL_CMD_PLAN:
	case CTL_CMD_TOKEN:
	case CTL_CMD_HELP:
	case CTL_CMD_NONE:
		snprintf(err, errlen, "no command to run");
		break;
	}
	ctl_api_free(api);
	return rc;
}
