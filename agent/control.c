/* control: POST .../retry, POST /api/v1/pipelines/{name}/trigger and
 * GET /api/v1/pipelines[/{name}]. */
#include "agent/control.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_metrics.h"
#include "agent/http.h"
#include "agent/record.h"
#include "config/when.h"
#include "lib/clock.h"
#include "lib/gitref.h"
#include "lib/log.h"
#include "queue/jobs.h"
#include "stages/checkout.h"
#include "stages/gitreason.h"
#include "stages/process.h"

#define MAX_TRIGGER_BODY  (64 * 1024)
#define LS_REMOTE_TIMEOUT 30000
#define LS_REMOTE_GRACE	  1000
#define SHA_MAX		  65
/* A plan that changes under a retry (another retry, a late result) is made
 * again; this many times at most. */
#define RETRY_PLANS 5
/* A manual run's delivery key only has to outlive the script that checks it. */
#define MANUAL_DELIVERY_TTL_S 3600
/* The most of the names of the stages a retry queued that its log line
 * carries. */
#define RETRIED_LOGGED 256

static const struct pipeline *find_pipeline(const struct agent *a, const char *name)
{
	for (size_t i = 0; i < a->pipelines.n; i++) {
		if (strcmp(a->pipelines.items[i].name, name) == 0)
			return &a->pipelines.items[i];
	}
	return NULL;
}

/* --- GET /api/v1/pipelines[/{name}] -------------------------------------- */

static json_t *copy_or_null(const json_t *v)
{
	return v ? json_deep_copy(v) : json_null();
}

/* The CI stages of def, in file order: deployments are listed as
 * environments. */
static json_t *pipeline_summary(const struct pipeline *p)
{
	json_t *stages = json_array(), *envs = json_array();
	const char *name;
	json_t *stage;
	json_object_foreach(json_object_get(p->def, "stages"), name, stage)
	{
		if (!json_object_get(stage, "env"))
			json_array_append_new(stages, json_string(name));
	}
	json_object_foreach(json_object_get(p->def, "environments"), name, stage)
	{
		json_array_append_new(envs, json_string(name));
	}
	return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o}", "name", p->name, "file", p->file,
			 "repository", p->repository, "events", copy_or_null(p->events), "branches",
			 copy_or_null(p->branches), "tags", copy_or_null(p->tags), "stages", stages,
			 "environments", envs);
}

static void list_pipelines(struct agent *a, struct evhttp_request *req)
{
	json_t *list = json_array();
	for (size_t i = 0; i < a->pipelines.n; i++)
		json_array_append_new(list, pipeline_summary(&a->pipelines.items[i]));
	http_reply_json(req, 200, json_pack("{s:o}", "pipelines", list));
}

static void show_pipeline(struct agent *a, struct evhttp_request *req, const char *name)
{
	const struct pipeline *p = find_pipeline(a, name);
	if (!p) {
		http_reply_error(req, 404, "not_found", "no such pipeline");
		return;
	}
	json_t *body = pipeline_summary(p);
	json_t *def = json_deep_copy(p->def);
	json_t *checkout = json_object_get(def, "checkout");
	const char *url = json_string_value(json_object_get(checkout, "url"));
	if (url) {
		/* A token in it is for git alone, not for every reader of the API. */
		char shown[1024];
		checkout_url_shown(url, shown, sizeof(shown));
		json_object_set_new(checkout, "url", json_string(shown));
	}
	json_object_set_new(body, "definition", def);
	http_reply_json(req, 200, body);
}

int control_get(struct agent *a, struct evhttp_request *req, const char *path)
{
	static const char list[] = "/api/v1/pipelines";
	char name[128];
	if (strncmp(path, list, sizeof(list) - 1) != 0)
		return 0;
	const char *at = path + sizeof(list) - 1;
	if (*at == '\0') {
		list_pipelines(a, req);
		return 1;
	}
	if (*at != '/')
		return 0;
	at++;
	if (http_take_segment(&at, name, sizeof(name)) < 0 || *at != '\0') {
		http_reply_error(req, 404, "not_found", "no such pipeline");
		return 1;
	}
	show_pipeline(a, req, name);
	return 1;
}

/* --- POST /api/v1/runs/{id}/retry, .../stages/{stage}/retry --------------- */

struct retry_call {
	struct agent *agent;
	struct http_pending *pending;
	char run[128];
	char stage[128]; /* "" for the whole run */
	int plans;
};

static void retry_send(struct retry_call *c, const char *jobs);

static void retry_end(struct retry_call *c, int status, const char *code, const char *message)
{
	http_pending_error(c->pending, status, code, message);
	free(c);
}

/* The jobs the plan asks for, as retry_run.lua wants them back. */
static char *plan_jobs(struct retry_call *c, const char *plan_text)
{
	json_t *plan = json_loads(plan_text, 0, NULL), *jobs = json_object();
	const char *name;
	json_t *entry;
	char *text = NULL;
	if (!json_is_object(plan) || !jobs)
		goto done;
	json_object_foreach(plan, name, entry)
	{
		const char *kind = json_string_value(json_object_get(entry, "kind"));
		int attempt = (int)json_number_value(json_object_get(entry, "attempt"));
		json_t *job =
		    jobs_prepare(&c->agent->settings, c->run, name, kind ? kind : "build", attempt);
		if (!job || json_object_set_new(job, "attempt", json_integer(attempt)) < 0 ||
		    json_object_set_new(jobs, name, job) < 0)
			goto done;
	}
	text = json_dumps(jobs, JSON_COMPACT);
done:
	json_decref(plan);
	json_decref(jobs);
	return text;
}

/* The stages queued again, named while they fit a line of the log and
 * counted: a run of thousands of stages queues thousands. */
static void log_retried(const struct retry_call *c, const char *queued)
{
	json_t *names = json_loads(queued, 0, NULL);
	char list[RETRIED_LOGGED + sizeof(", ...")];
	size_t len = 0, i;

	list[0] = '\0';
	for (i = 0; i < json_array_size(names); i++) {
		const char *name = json_string_value(json_array_get(names, i));
		size_t n = name ? strlen(name) : 0;
		if (!name || len + n + 2 > RETRIED_LOGGED)
			break;
		len +=
		    (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "", name);
	}
	if (i < json_array_size(names))
		snprintf(list + len, sizeof(list) - len, "%s...", len ? ", " : "");
	log_info("run retried", LOG_S("run", c->run), LOG_S("stage", c->stage),
		 LOG_I("queued", json_array_size(names)), LOG_S("stages", list));
	json_decref(names);
}

static void on_retry_reply(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct retry_call *c = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		log_warn("retry failed", LOG_S("run", c->run),
			 LOG_S("error", err ? err : "unexpected reply from retry_run"));
		retry_end(c, 503, "unavailable", "state store unavailable");
		return;
	}
	const char *outcome = reply->element[0]->str;
	const char *detail = reply->elements > 1 && reply->element[1]->type == REDIS_REPLY_STRING
				 ? reply->element[1]->str
				 : "";
	if (strcmp(outcome, "plan") == 0) {
		char *jobs = plan_jobs(c, detail);
		if (!jobs) {
			retry_end(c, 500, "internal", "out of memory");
			return;
		}
		retry_send(c, jobs);
		free(jobs);
	} else if (strcmp(outcome, "retried") == 0) {
		log_retried(c, detail);
		outbox_kick(c->agent->outbox);
		api_reply_run(c->agent, c->pending, c->run, 202);
		free(c);
	} else if (strcmp(outcome, "changed") == 0 && c->plans < RETRY_PLANS) {
		retry_send(c, "");
	} else if (strcmp(outcome, "changed") == 0) {
		retry_end(c, 409, "conflict", "the run kept changing; retry again");
	} else if (strcmp(outcome, "conflict") == 0) {
		retry_end(c, 409, "conflict", detail);
	} else if (strcmp(outcome, "unknown-stage") == 0) {
		retry_end(c, 404, "not_found", "no such stage");
	} else {
		retry_end(c, 404, "not_found", "no such run");
	}
}

/* jobs "": plan; otherwise apply the plan those jobs carry out. */
static void retry_send(struct retry_call *c, const char *jobs)
{
	struct agent *a = c->agent;
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	if (!*jobs)
		c->plans++;
	const char *argv[] = {a->settings.key_prefix, c->run, c->stage, now, jobs};
	if (redis_script_run(a->redis, a->scripts.retry_run, on_retry_reply, c, 0, 5, argv, NULL) <
	    0)
		retry_end(c, 503, "unavailable", "state store unavailable");
}

static void retry(struct agent *a, struct evhttp_request *req, const char *run, const char *stage)
{
	struct retry_call *c = calloc(1, sizeof(*c));
	if (!c) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	c->agent = a;
	snprintf(c->run, sizeof(c->run), "%s", run);
	snprintf(c->stage, sizeof(c->stage), "%s", stage);
	c->pending = http_pending_new(a, req);
	if (!c->pending) {
		free(c);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	retry_send(c, "");
}

/* --- POST /api/v1/pipelines/{name}/trigger -------------------------------- */

struct trigger_call {
	struct trigger_call *next, **prevp; /* in agent->resolving while git runs */
	struct agent *agent;
	struct http_pending *pending;
	struct process *git;
	char pipeline[128];
	char *repository;
	char *url;
	char *def_text;
	json_t *def; /* a reference: a reload may replace the pipeline meanwhile */
	json_t *plan;
	char ref[300];
	char sha[SHA_MAX];
	char peeled[SHA_MAX];
	struct gitreason git_error; /* why git ls-remote failed */
	char run[48];
};

static void trigger_free(struct trigger_call *c)
{
	free(c->repository);
	free(c->url);
	free(c->def_text);
	json_decref(c->def);
	json_decref(c->plan);
	free(c);
}

static void trigger_end(struct trigger_call *c, int status, const char *code, const char *message)
{
	http_pending_error(c->pending, status, code, message);
	trigger_free(c);
}

int control_ref_normalize(const char *ref, char *out, size_t outlen, char *why, size_t whylen)
{
	static const char heads[] = "refs/heads/", tags[] = "refs/tags/";
	const char *name = ref;
	const char *prefix = heads;
	if (strncmp(ref, "refs/", 5) == 0) {
		if (strncmp(ref, heads, sizeof(heads) - 1) == 0) {
			name = ref + sizeof(heads) - 1;
		} else if (strncmp(ref, tags, sizeof(tags) - 1) == 0) {
			name = ref + sizeof(tags) - 1;
			prefix = tags;
		} else {
			snprintf(why, whylen,
				 "ref must be a branch (refs/heads/...) or a tag "
				 "(refs/tags/...)");
			return -1;
		}
	}
	size_t len = strlen(name);
	if (len == 0 || len > 255) {
		snprintf(why, whylen, "ref must name a branch or tag of 1 to 255 bytes");
		return -1;
	}
	if (!gitref_name_ok(name)) {
		snprintf(why, whylen, "ref %s is not a valid git ref name", ref);
		return -1;
	}
	if ((size_t)snprintf(out, outlen, "%s%s", prefix, name) >= outlen) {
		snprintf(why, whylen, "ref is too long");
		return -1;
	}
	return 0;
}

static int is_sha(const char *s, size_t len)
{
	if (len != 40 && len != 64)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

void control_ls_remote_line(const char *line, size_t len, const char *ref, char *sha, char *peeled,
			    size_t shalen)
{
	const char *tab = memchr(line, '\t', len);
	if (!tab || !is_sha(line, (size_t)(tab - line)) || (size_t)(tab - line) >= shalen)
		return;
	size_t sha_len = (size_t)(tab - line);
	const char *name = tab + 1;
	size_t name_len = len - sha_len - 1, ref_len = strlen(ref);
	char *into = NULL;
	if (name_len == ref_len && memcmp(name, ref, ref_len) == 0)
		into = sha;
	else if (name_len == ref_len + 3 && memcmp(name, ref, ref_len) == 0 &&
		 memcmp(name + ref_len, "^{}", 3) == 0)
		into = peeled;
	if (!into)
		return;
	for (size_t i = 0; i < sha_len; i++)
		into[i] = (char)tolower((unsigned char)line[i]);
	into[sha_len] = '\0';
}

static void on_created(const char *status, const char *runs, const char *err, void *arg)
{
	struct trigger_call *c = arg;
	(void)runs;
	if (!status || strcmp(status, "created") != 0) {
		log_error("manual run not recorded", LOG_S("pipeline", c->pipeline),
			  LOG_S("error", err ? err : "unexpected reply"));
		trigger_end(c, 503, "unavailable", "the run could not be recorded");
		return;
	}
	log_info("manual run created", LOG_S("run", c->run), LOG_S("pipeline", c->pipeline),
		 LOG_S("ref", c->ref), LOG_S("sha", c->sha));
	agent_metrics_run_created(c->agent, c->pipeline);
	outbox_kick(c->agent->outbox);
	api_reply_run(c->agent, c->pending, c->run, 202);
	c->pending = NULL;
	trigger_free(c);
}

/* Recorded as a webhook delivery of one run: the delivery id is the run's
 * own, so it is never a duplicate. */
static void create_run(struct trigger_call *c)
{
	struct agent *a = c->agent;
	char delivery[64];
	long long now = clock_now_ms();
	intake_new_run_id(c->run, sizeof(c->run), now);
	snprintf(delivery, sizeof(delivery), "manual:%s", c->run);
	if (record_begin(a->recorder, delivery, MANUAL_DELIVERY_TTL_S, now, c->repository, "manual",
			 c->ref, c->sha) < 0) {
		trigger_end(c, 503, "unavailable", "the run could not be recorded");
		return;
	}
	if (record_run(a->recorder, c->run, c->pipeline, c->url, c->def_text, c->def, c->plan) <
	    0) {
		record_cancel(a->recorder);
		trigger_end(c, 503, "unavailable", "the run could not be recorded");
		return;
	}
	record_commit(a->recorder, on_created, c);
}

static void on_git_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct trigger_call *c = arg;
	if (s == PROCESS_STDOUT)
		control_ls_remote_line(line, len, c->ref, c->sha, c->peeled, sizeof(c->sha));
	else if (len)
		gitreason_line(&c->git_error, line, len);
}

static void unlink_resolving(struct trigger_call *c)
{
	*c->prevp = c->next;
	if (c->next)
		c->next->prevp = c->prevp;
	c->git = NULL;
}

static void on_git_exit(const struct process_result *r, void *arg)
{
	struct trigger_call *c = arg;
	char msg[2048], url[1024];
	unlink_resolving(c);
	/* A token in the URL is shown to nobody (git's own messages omit it). */
	checkout_url_shown(c->url, url, sizeof(url));
	if (r->outcome != PROCESS_EXITED || r->exit_code != 0) {
		log_warn("git ls-remote failed", LOG_S("url", url), LOG_S("ref", c->ref),
			 LOG_S("error", c->git_error.text[0] ? c->git_error.text : r->error));
		snprintf(msg, sizeof(msg), "cannot list the refs of %s: %s", url,
			 r->outcome == PROCESS_TIMED_OUT ? "timed out"
			 : c->git_error.text[0]		 ? c->git_error.text
							 : r->error);
		trigger_end(c, 502, "bad_gateway", msg);
		return;
	}
	/* An annotated tag names a tag object; the run builds its commit. */
	if (c->peeled[0])
		memcpy(c->sha, c->peeled, sizeof(c->sha));
	if (!c->sha[0]) {
		snprintf(msg, sizeof(msg), "ref %s not found in %s", c->ref, url);
		trigger_end(c, 422, "unprocessable", msg);
		return;
	}
	/* Nobody would learn the run's id: create none. */
	if (!http_pending_request(c->pending)) {
		trigger_end(c, 503, "unavailable", "the client went away");
		return;
	}
	create_run(c);
}

static void resolve(struct trigger_call *c)
{
	struct agent *a = c->agent;
	const char *path = getenv("PATH"), *home = getenv("HOME");
	char env_path[4096], env_home[1024];
	snprintf(env_path, sizeof(env_path), "PATH=%s", path ? path : "/usr/bin:/bin");
	snprintf(env_home, sizeof(env_home), "HOME=%s", home ? home : "/");
	const char *envp[] = {env_path, env_home, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", NULL};
	/* ls-remote shows a tag's peeled line only when asked for by name. */
	char peeled[sizeof(c->ref) + 4];
	snprintf(peeled, sizeof(peeled), "%s^{}", c->ref);
	const char *argv[] = {"git", "ls-remote", "--", c->url, c->ref, peeled, NULL};
	struct process_spec spec = {.argv = argv,
				    .envp = envp,
				    .timeout_ms = LS_REMOTE_TIMEOUT,
				    .kill_grace_ms = LS_REMOTE_GRACE};
	c->git = process_spawn(&spec, on_git_line, on_git_exit, c);
	if (!c->git) {
		trigger_end(c, 500, "internal", "cannot start git ls-remote");
		return;
	}
	c->next = a->resolving;
	c->prevp = &a->resolving;
	if (a->resolving)
		a->resolving->prevp = &c->next;
	a->resolving = c;
}

/* The request's JSON object: {"ref": "...", "sha"?: "..."}. */
static int read_trigger(struct evhttp_request *req, struct trigger_call *c, char *why,
			size_t whylen)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	int rc = -1;
	if (len > MAX_TRIGGER_BODY) {
		snprintf(why, whylen, "the body is larger than %d bytes", MAX_TRIGGER_BODY);
		return -1;
	}
	json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
	const json_t *ref = json_object_get(body, "ref"), *sha = json_object_get(body, "sha");
	if (!json_is_object(body)) {
		snprintf(why, whylen, "the body must be a JSON object like {\"ref\": \"main\"}");
		goto done;
	}
	if (!json_is_string(ref)) {
		snprintf(why, whylen, "ref: a string is required (\"main\", \"refs/tags/v1\")");
		goto done;
	}
	/* All zeros is git's name for no commit (a deleted ref's). */
	if (sha && !json_is_null(sha) &&
	    (!json_is_string(sha) || !is_sha(json_string_value(sha), json_string_length(sha)) ||
	     strspn(json_string_value(sha), "0") == json_string_length(sha))) {
		snprintf(why, whylen,
			 "sha must be a commit id of 40 (or 64) hexadecimal digits, not all zeros");
		goto done;
	}
	if (control_ref_normalize(json_string_value(ref), c->ref, sizeof(c->ref), why, whylen) < 0)
		goto done;
	if (json_is_string(sha)) {
		for (size_t i = 0; i <= json_string_length(sha); i++)
			c->sha[i] = (char)tolower((unsigned char)json_string_value(sha)[i]);
	}
	rc = 0;
done:
	json_decref(body);
	return rc;
}

static void trigger(struct agent *a, struct evhttp_request *req, const char *name)
{
	const struct pipeline *p = find_pipeline(a, name);
	char why[512];
	if (!p) {
		http_reply_error(req, 404, "not_found", "no such pipeline");
		return;
	}
	struct trigger_call *c = calloc(1, sizeof(*c));
	if (!c) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	c->agent = a;
	snprintf(c->pipeline, sizeof(c->pipeline), "%s", p->name);
	if (read_trigger(req, c, why, sizeof(why)) < 0) {
		trigger_free(c);
		http_reply_error(req, 400, "bad_request", why);
		return;
	}
	int tag = strncmp(c->ref, "refs/tags/", 10) == 0;
	const char *short_ref = c->ref + (tag ? 10 : 11);
	size_t queued = 0;
	const char *url =
	    json_string_value(json_object_get(json_object_get(p->def, "checkout"), "url"));
	c->def = json_incref(p->def);
	c->def_text = strdup(p->def_text);
	c->repository = strdup(p->repository);
	c->plan =
	    when_plan(p->def, "manual", tag ? NULL : short_ref, tag ? short_ref : NULL, &queued);
	if (url)
		c->url = strdup(url);
	else if (asprintf(&c->url, "https://github.com/%s.git", p->repository) < 0)
		c->url = NULL;
	if (!c->def_text || !c->repository || !c->plan || !c->url) {
		trigger_free(c);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (!queued) {
		snprintf(why, sizeof(why),
			 "every stage of %s is skipped by its when for a manual run "
			 "of %s",
			 p->name, c->ref);
		trigger_free(c);
		http_reply_error(req, 422, "unprocessable", why);
		return;
	}
	c->pending = http_pending_new(a, req);
	if (!c->pending) {
		trigger_free(c);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (c->sha[0])
		create_run(c);
	else
		resolve(c);
}

int control_post(struct agent *a, struct evhttp_request *req, const char *path)
{
	static const char pipelines[] = "/api/v1/pipelines/", runs[] = "/api/v1/runs/";
	char first[128], stage[128];
	const char *at;
	if (strncmp(path, pipelines, sizeof(pipelines) - 1) == 0) {
		at = path + sizeof(pipelines) - 1;
		if (http_take_segment(&at, first, sizeof(first)) < 0 || strcmp(at, "/trigger") != 0)
			return 0;
		trigger(a, req, first);
		return 1;
	}
	if (strncmp(path, runs, sizeof(runs) - 1) != 0)
		return 0;
	at = path + sizeof(runs) - 1;
	if (http_take_segment(&at, first, sizeof(first)) < 0)
		return 0;
	if (strcmp(at, "/retry") == 0) {
		retry(a, req, first, "");
		return 1;
	}
	static const char stages[] = "/stages/";
	if (strncmp(at, stages, sizeof(stages) - 1) != 0)
		return 0;
	at += sizeof(stages) - 1;
	if (http_take_segment(&at, stage, sizeof(stage)) < 0 || strcmp(at, "/retry") != 0)
		return 0;
	retry(a, req, first, stage);
	return 1;
}

void control_stop(struct agent *a)
{
	while (a->resolving) {
		struct trigger_call *c = a->resolving;
		/* The loop no longer runs: kill the group now rather than through
		 * process_cancel's grace timer. */
		kill(-process_pid(c->git), SIGKILL);
		unlink_resolving(c);
		trigger_end(c, 503, "unavailable", "the agent is stopping");
	}
}
