/* validate: a pipeline file from the request body through config/'s loader. */
#include "agent/validate.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/http.h"
#include "config/config.h"

#define ERR_MAX 1024

json_t *validate_error_object(const char *text)
{
	char *copy = strdup(text);
	json_t *o = json_pack("{s:s,s:n,s:n,s:s,s:s}", "file", "", "line", "column", "path", "",
			      "message", text);
	if (!copy || !o)
		goto done;
	/* file:line:col: — a file name never holds ':' here (the caller's
	 * name is a path segment). */
	char *c1 = strchr(copy, ':');
	char *end = NULL;
	long line = c1 ? strtol(c1 + 1, &end, 10) : 0;
	if (!c1 || !end || *end != ':')
		goto done;
	*c1 = '\0';
	json_object_set_new(o, "file", json_string(copy));
	long col = strtol(end + 1, &end, 10);
	if (*end != ':')
		goto done;
	json_object_set_new(o, "line", json_integer(line));
	json_object_set_new(o, "column", json_integer(col));
	const char *rest = end + 1;
	while (*rest == ' ')
		rest++;
	/* A key path has no space before its ": "; a bare message may. */
	const char *colon = strstr(rest, ": ");
	if (colon && !memchr(rest, ' ', (size_t)(colon - rest))) {
		json_object_set_new(o, "path", json_stringn(rest, (size_t)(colon - rest)));
		rest = colon + 2;
	}
	json_object_set_new(o, "message", json_string(rest));
done:
	free(copy);
	return o;
}

static json_t *summary(const struct pipeline *p)
{
	json_t *stages = json_array(), *envs = json_array();
	const char *name;
	json_t *v;
	json_object_foreach(json_object_get(p->def, "stages"), name, v)
	{
		if (!json_object_get(v, "env"))
			json_array_append_new(stages, json_string(name));
	}
	json_object_foreach(json_object_get(p->def, "environments"), name, v)
	{
		json_array_append_new(envs, json_string(name));
	}
	return json_pack("{s:s,s:s?,s:o,s:o}", "name", p->name, "repository", p->repository,
			 "stages", stages, "environments", envs);
}

void validate_post(struct agent *a, struct evhttp_request *req, const char *name)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char err[ERR_MAX] = "";
	struct pipeline p;

	if (len == 0) {
		http_reply_error(req, 400, "bad_request",
				 "send the pipeline file (YAML or JSON) as the request body");
		return;
	}
	const char *text = (const char *)evbuffer_pullup(in, -1);
	if (!text) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (pipeline_check_text(name, a->settings.pipelines_dir, text, len, &p, err, sizeof(err)) <
	    0) {
		json_t *body =
		    json_pack("{s:b,s:{s:s,s:s},s:[o]}", "valid", 0, "error", "code", "invalid",
			      "message", err, "errors", validate_error_object(err));
		http_reply_json(req, 422, body);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:b,s:o}", "valid", 1, "pipeline", summary(&p)));
	pipeline_clear(&p);
}
