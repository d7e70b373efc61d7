/* provider_http: each action sends the request configured for it, through
 * stages/http.h (libcurl multi on the loop, retries on 5xx and connection
 * errors, TLS always verified); the expected status is done.
 *
 * def: {"type": "http", "actions": {"<verb>": {"url", "method", "headers",
 * "body", "expect", "timeout_ms", "retries", "backoff_ms", "ca_file"}},
 * "timeout_ms": N (the whole action, retries included; default 10 minutes)}.
 * url, headers and body may hold ${NAME} of the action's variables; a
 * pipeline file's ca_file reaches here resolved (rollout_load).
 */
#include "stages/provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/check.h"
#include "stages/http.h"
#include "stages/request.h"

#define DEFAULT_TIMEOUT_MS (10 * 60 * 1000)
#define MAX_MS		   86400000
#define MAX_RETRIES	   100

struct webhook_job;

struct webhook {
	struct event_base *base;
	json_t *actions;
	int timeout_ms;
	struct webhook_job *job;
};

struct webhook_job {
	struct webhook *owner; /* NULL once cancelled */
	struct http *req;
	enum provider_verb verb;
	char last[HTTP_BODY_LOGGED < 512 ? HTTP_BODY_LOGGED : 512];
	provider_done_cb done;
	void *arg;
};

static const char *const request_keys[] = {"url",     "method",	    "headers", "body",
					   "expect",  "timeout_ms", "retries", "backoff_ms",
					   "ca_file", NULL};

static int known_key(const char *key)
{
	for (const char *const *k = request_keys; *k; k++)
		if (strcmp(key, *k) == 0)
			return 1;
	return 0;
}

/* A whole number from min to max, when present. */
static int check_number(const char *verb, const json_t *req, const char *key, long long min,
			long long max, char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, key);

	if (!v ||
	    (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max))
		return 0;
	snprintf(err, errlen, "provider.actions.%s.%s: a whole number from %lld to %lld", verb, key,
		 min, max);
	return -1;
}

/* The request as stages/http.h reads it, checked where it is written as an
 * http: stage is: a misspelt key or a stage's own (timeout: 30s) would
 * otherwise be ignored, and a method sent as it is written. */
static int check_request(const char *verb, const json_t *req, char *err, size_t errlen)
{
	const json_t *headers = json_object_get(req, "headers");
	const json_t *expect = json_object_get(req, "expect");
	const char *name, *method;
	json_t *v;
	size_t i;

	if (!json_is_object(req) || !json_is_string(json_object_get(req, "url"))) {
		snprintf(err, errlen, "provider.actions.%s.url: required", verb);
		return -1;
	}
	json_object_foreach((json_t *)req, name, v)
	{
		if (!known_key(name)) {
			snprintf(err, errlen,
				 "provider.actions.%s.%s: unknown key (url, method, headers, body, "
				 "expect, timeout_ms, retries, backoff_ms, ca_file)",
				 verb, name);
			return -1;
		}
	}
	if (!request_url_form(json_string_value(json_object_get(req, "url")))) {
		snprintf(err, errlen,
			 "provider.actions.%s.url: expected an http:// or https:// URL", verb);
		return -1;
	}
	v = json_object_get(req, "method");
	if (v && !json_is_string(v)) {
		snprintf(err, errlen, "provider.actions.%s.method: not a string", verb);
		return -1;
	}
	method = v ? json_string_value(v) : "GET";
	if (!request_method_known(method)) {
		snprintf(
		    err, errlen,
		    "provider.actions.%s.method: unknown method \"%s\" (known: " REQUEST_METHODS
		    ")",
		    verb, method);
		return -1;
	}
	v = json_object_get(req, "body");
	if (v && !json_is_string(v)) {
		snprintf(err, errlen, "provider.actions.%s.body: not a string", verb);
		return -1;
	}
	if (v && (strcasecmp(method, "GET") == 0 || strcasecmp(method, "HEAD") == 0)) {
		snprintf(err, errlen, "provider.actions.%s.body: a %s request has no body", verb,
			 method);
		return -1;
	}
	if (headers && !json_is_object(headers)) {
		snprintf(err, errlen, "provider.actions.%s.headers: not a map", verb);
		return -1;
	}
	json_object_foreach((json_t *)headers, name, v)
	{
		/* The name goes into the request as it is: a line break in it
		 * would add a header of its own. */
		if (!config_check_word(name, "-_.", 0)) {
			snprintf(err, errlen,
				 "provider.actions.%s.headers: \"%s\" is not a header name (use "
				 "letters, digits, '-', '_' and '.')",
				 verb, name);
			return -1;
		}
		if (!json_is_string(v)) {
			snprintf(err, errlen, "provider.actions.%s.headers.%s: not a string", verb,
				 name);
			return -1;
		}
	}
	if (expect && !json_is_array(expect)) {
		snprintf(err, errlen, "provider.actions.%s.expect: not a list of statuses", verb);
		return -1;
	}
	json_array_foreach(expect, i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 100 ||
		    json_integer_value(v) > 599) {
			snprintf(err, errlen, "provider.actions.%s.expect[%zu]: not an HTTP status",
				 verb, i);
			return -1;
		}
	}
	v = json_object_get(req, "ca_file");
	if (v && !json_is_string(v)) {
		snprintf(err, errlen, "provider.actions.%s.ca_file: not a string", verb);
		return -1;
	}
	return check_number(verb, req, "timeout_ms", 1, MAX_MS, err, errlen) < 0 ||
		       check_number(verb, req, "backoff_ms", 1, MAX_MS, err, errlen) < 0 ||
		       check_number(verb, req, "retries", 0, MAX_RETRIES, err, errlen) < 0
		   ? -1
		   : 0;
}

static const char *const webhook_keys[] = {"type", "actions", "timeout", NULL};

static void *webhook_create(struct event_base *base, const json_t *def, char *err, size_t errlen)
{
	const json_t *actions = json_object_get(def, "actions");
	struct webhook *w;
	int timeout_ms;

	if (provider_def_actions(def, "a request", check_request, err, errlen) < 0 ||
	    provider_def_ms(def, "timeout_ms", DEFAULT_TIMEOUT_MS, MAX_MS, &timeout_ms, err,
			    errlen) < 0)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->base = base;
	w->actions = json_incref((json_t *)actions);
	w->timeout_ms = timeout_ms;
	return w;
}

static int webhook_supports(void *state, enum provider_verb verb)
{
	struct webhook *w = state;

	return json_object_get(w->actions, provider_verb_name(verb)) != NULL;
}

static void on_line(enum http_line_kind k, const char *line, size_t len, void *arg)
{
	struct webhook_job *j = arg;

	if (k != HTTP_LINE_SYSTEM)
		return;
	if (len >= sizeof(j->last))
		len = sizeof(j->last) - 1;
	memcpy(j->last, line, len);
	j->last[len] = '\0';
}

static void on_http_exit(const struct http_result *r, void *arg)
{
	struct webhook_job *j = arg;
	char msg[sizeof(j->last) + sizeof(r->error) + 64];
	const char *verb = provider_verb_name(j->verb);

	if (j->owner) {
		j->owner->job = NULL;
		if (r->outcome == HTTP_SUCCEEDED)
			snprintf(msg, sizeof(msg), "%s done: %s", verb, j->last);
		else
			snprintf(msg, sizeof(msg), "%s failed: %s", verb, r->error);
		j->done(r->outcome == HTTP_SUCCEEDED, msg, j->arg);
	}
	free(j);
}

static int webhook_start(void *state, const struct provider_action *a, provider_done_cb done,
			 void *arg, char *err, size_t errlen)
{
	struct webhook *w = state;
	const char *verb = provider_verb_name(a->verb);
	json_t *vars = provider_action_vars(a);
	struct webhook_job *j = calloc(1, sizeof(*j));
	char why[400];

	if (!vars || !j) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	j->verb = a->verb;
	j->done = done;
	j->arg = arg;
	j->req = http_start(w->base, json_object_get(w->actions, verb), vars, w->timeout_ms,
			    on_line, on_http_exit, j, why, sizeof(why));
	if (!j->req) {
		snprintf(err, errlen, "provider.actions.%s.%s", verb, why);
		goto fail;
	}
	j->owner = w;
	w->job = j;
	json_decref(vars);
	return 0;
fail:
	free(j);
	json_decref(vars);
	return -1;
}

/* http_cancel still calls on_http_exit, from the loop; the job is freed
 * there, with nobody to tell. */
static void webhook_cancel(void *state)
{
	struct webhook *w = state;

	if (!w->job)
		return;
	w->job->owner = NULL;
	http_cancel(w->job->req);
	w->job = NULL;
}

static void webhook_destroy(void *state)
{
	struct webhook *w = state;

	webhook_cancel(w);
	json_decref(w->actions);
	free(w);
}

const struct provider_ops provider_http_ops = {
    .type = "http",
    .keys = webhook_keys,
    .create = webhook_create,
    .supports = webhook_supports,
    .start = webhook_start,
    .cancel = webhook_cancel,
    .destroy = webhook_destroy,
};
