/* promotion: deny windows for the scripts, approvals, environments' view. */
#include "agent/promotion.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/http.h"
#include "agent/strategy.h"
#include "config/window.h"
#include "lib/clock.h"
#include "lib/log.h"

#define BODY_MAX   (64 * 1024)
#define REASON_MAX 1000
#define BY_MAX	   200

char *promotion_openings(const json_t *def, long long now_ms)
{
	json_t *opens = json_object();
	const char *name;
	json_t *env;
	if (!opens)
		return NULL;
	json_object_foreach(json_object_get(def, "environments"), name, env)
	{
		long long until = window_list_closed_until(json_object_get(env, "windows"), now_ms);
		if (until > 0)
			json_object_set_new(opens, name, json_integer(until));
	}
	char *text = json_dumps(opens, JSON_COMPACT);
	json_decref(opens);
	return text;
}

char *promotion_openings_text(const char *def_text, long long now_ms)
{
	json_t *def = def_text ? json_loads(def_text, 0, NULL) : NULL;
	char *opens = def ? promotion_openings(def, now_ms) : NULL;
	json_decref(def);
	return opens;
}

static json_t *time_or_null(const char *ms)
{
	char buf[64];
	if (!ms || !*ms)
		return json_null();
	clock_format_rfc3339(strtoll(ms, NULL, 10), buf, sizeof(buf));
	return json_string(buf);
}

static json_t *string_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* --- GET /api/v1/runs/{id}: environments ---------------------------------- */

struct view {
	promotion_view_cb done;
	void *arg;
	json_t *def;
	json_t *envs;
	int outstanding;
	int failed;
	const int *run_open;
	char run[128];
};

/* The hashes of one environment: its promotion, its approval, the stage
 * that deploys it and the environment's own (current release, lock). */
enum view_hash { VIEW_PROMOTION, VIEW_APPROVAL, VIEW_STAGE, VIEW_ENV, VIEW_HASHES };

struct view_item {
	struct view *v;
	char env[128];
	json_t *fields[VIEW_HASHES]; /* hash fields → values */
	int pending;		     /* replies still expected */
};

static void view_maybe_done(struct view *v)
{
	if (--v->outstanding > 0)
		return;
	json_t *envs = v->envs;
	if (v->failed) {
		json_decref(envs);
		envs = NULL;
	}
	v->done(envs, v->arg);
	json_decref(v->def);
	free(v);
}

static json_t *hash_object(const redisReply *h)
{
	json_t *o = json_object();
	if (!h || h->type != REDIS_REPLY_ARRAY)
		return o;
	for (size_t i = 0; i + 1 < h->elements; i += 2)
		json_object_set_new(o, h->element[i]->str, json_string(h->element[i + 1]->str));
	return o;
}

static const char *field(const json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

/* Both hashes are in: the environment's entry of the view. */
static void item_finish(struct view_item *it)
{
	struct view *v = it->v;
	const json_t *e = it->fields[VIEW_PROMOTION], *ap = it->fields[VIEW_APPROVAL];
	const json_t *conf = json_object_get(json_object_get(v->def, "environments"), it->env);
	const char *status = field(e, "status");
	char stage[160];
	json_t *deny = json_array();
	size_t i;
	json_t *w;

	snprintf(stage, sizeof(stage), "deploy@%s", it->env);
	const json_t *sdef = json_object_get(json_object_get(v->def, "stages"), stage);
	json_t *strategy = strategy_view(sdef, it->fields[VIEW_STAGE]);
	json_t *actions = strategy_actions(v->run, sdef, e, it->fields[VIEW_STAGE],
					   it->fields[VIEW_ENV], *v->run_open);

	json_array_foreach(json_object_get(conf, "windows"), i, w)
	{
		json_array_append(deny, json_object_get(w, "spec"));
	}
	json_t *approval = json_pack(
	    "{s:b, s:o, s:o, s:o, s:o, s:o}", "required",
	    json_is_true(json_object_get(json_object_get(conf, "approval"), "required")),
	    "expires_at", time_or_null(field(e, "expires_at")), "decision",
	    string_or_null(field(ap, "decision")), "by", string_or_null(field(ap, "by")), "at",
	    time_or_null(field(ap, "at")), "reason", string_or_null(field(ap, "reason")));
	json_t *window = json_pack("{s:o, s:o}", "deny", deny, "held_until",
				   time_or_null(field(e, "window_until")));
	json_t *view = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "status",
				 status		? status
				 : *v->run_open ? "pending"
						: "skipped",
				 "offered", time_or_null(field(e, "offered")), "started",
				 time_or_null(field(e, "started")), "finished",
				 time_or_null(field(e, "finished")), "approval", approval, "window",
				 window, "actions", actions ? actions : json_array());
	if (view && strategy)
		json_object_set_new(view, "strategy", strategy);
	else
		json_decref(strategy);
	json_object_set_new(v->envs, it->env, view);
}

static void on_hash(struct view_item *it, int which, const redisReply *reply)
{
	struct view *v = it->v;
	if (!reply || reply->type != REDIS_REPLY_ARRAY)
		v->failed = 1;
	else
		it->fields[which] = hash_object(reply);
	if (--it->pending > 0)
		return;
	if (!v->failed)
		item_finish(it);
	for (int h = 0; h < VIEW_HASHES; h++)
		json_decref(it->fields[h]);
	free(it);
	view_maybe_done(v);
}

static void on_promotion_hash(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)r;
	(void)err;
	on_hash(arg, VIEW_PROMOTION, reply);
}

static void on_approval_hash(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)r;
	(void)err;
	on_hash(arg, VIEW_APPROVAL, reply);
}

static void on_stage_hash(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)r;
	(void)err;
	on_hash(arg, VIEW_STAGE, reply);
}

static void on_env_hash(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)r;
	(void)err;
	on_hash(arg, VIEW_ENV, reply);
}

void promotion_view(struct agent *a, struct redis_hashes *t, const char *run, const json_t *def,
		    const int *run_open, promotion_view_cb done, void *arg)
{
	struct view *v = calloc(1, sizeof(*v));
	const char *P = a->settings.key_prefix;
	const char *pipeline = json_string_value(json_object_get(def, "name"));
	const char *name;
	json_t *conf;

	if (!v) {
		done(NULL, arg);
		return;
	}
	if (!pipeline)
		pipeline = "";
	snprintf(v->run, sizeof(v->run), "%s", run);
	v->done = done;
	v->arg = arg;
	v->def = json_incref((json_t *)def);
	v->envs = json_object();
	v->run_open = run_open;
	v->outstanding = 1;
	json_object_foreach(json_object_get(def, "environments"), name, conf)
	{
		struct view_item *it = calloc(1, sizeof(*it));
		if (!it || strlen(name) >= sizeof(it->env)) {
			free(it);
			v->failed = 1;
			continue;
		}
		it->v = v;
		snprintf(it->env, sizeof(it->env), "%s", name);
		/* Keeps the chain's order whatever order the replies come in. */
		json_object_set_new(v->envs, name, json_null());
		it->pending = VIEW_HASHES;
		v->outstanding++;
		if (redis_hashes_add(t, on_promotion_hash, it, "%srun:%s:env:%s", P, run, name) < 0)
			on_hash(it, VIEW_PROMOTION, NULL);
		if (redis_hashes_add(t, on_approval_hash, it, "%sapproval:%s:%s", P, run, name) < 0)
			on_hash(it, VIEW_APPROVAL, NULL);
		if (redis_hashes_add(t, on_stage_hash, it, "%srun:%s:stage:deploy@%s", P, run,
				     name) < 0)
			on_hash(it, VIEW_STAGE, NULL);
		if (redis_hashes_add(t, on_env_hash, it, "%senv:%s:%s", P, pipeline, name) < 0)
			on_hash(it, VIEW_ENV, NULL);
	}
	view_maybe_done(v);
}

/* --- POST /api/v1/runs/{id}/environments/{env}/approve|reject ------------- */

struct decision {
	struct agent *agent;
	struct http_pending *pending;
	char run[128];
	char env[128];
	int approve;
	char *by;
	char *reason;
};

static void decision_free(struct decision *d)
{
	free(d->by);
	free(d->reason);
	free(d);
}

static void decision_unavailable(struct decision *d, const char *err)
{
	log_warn("approval not recorded", LOG_S("run", d->run), LOG_S("env", d->env),
		 LOG_S("error", err));
	http_pending_error(d->pending, 503, "unavailable", "state store unavailable");
	decision_free(d);
}

static void on_decided(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct decision *d = arg;
	char msg[512];
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		decision_unavailable(d, err ? err : "unexpected reply from the decide script");
		return;
	}
	const char *outcome = reply->element[0]->str;
	if (strcmp(outcome, "decided") == 0 && reply->elements >= 3) {
		const char *run_status = reply->element[1]->str, *status = reply->element[2]->str;
		log_info(d->approve ? "promotion approved" : "promotion rejected",
			 LOG_S("run", d->run), LOG_S("env", d->env), LOG_S("by", d->by),
			 LOG_S("status", status));
		outbox_kick(d->agent->outbox);
		http_pending_reply(d->pending, 200,
				   json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "run",
					     d->run, "environment", d->env, "status", status,
					     "run_status", run_status, "approval", "decision",
					     d->approve ? "approved" : "rejected", "by", d->by,
					     "reason", d->reason));
	} else if (strcmp(outcome, "not-waiting") == 0 && reply->elements >= 2) {
		/* A promotion found expired was ended by the script, with events. */
		if (strcmp(reply->element[1]->str, "expired") == 0)
			outbox_kick(d->agent->outbox);
		snprintf(msg, sizeof(msg),
			 "the promotion of run %s to %s is not waiting for approval (it is %s)",
			 d->run, d->env, reply->element[1]->str);
		http_pending_error(d->pending, 409, "conflict", msg);
	} else if (strcmp(outcome, "unknown-env") == 0) {
		snprintf(msg, sizeof(msg), "run %s has no environment %s", d->run, d->env);
		http_pending_error(d->pending, 404, "not_found", msg);
	} else {
		http_pending_error(d->pending, 404, "not_found", "no such run");
	}
	decision_free(d);
}

static void on_decision_def(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct decision *d = arg;
	if (!reply) {
		decision_unavailable(d, err ? err : "no reply");
		return;
	}
	if (reply->type != REDIS_REPLY_STRING) {
		http_pending_error(d->pending, 404, "not_found", "no such run");
		decision_free(d);
		return;
	}
	long long now = (long long)clock_now_ms();
	char *opens = promotion_openings_text(reply->str, now);
	char now_text[32];
	snprintf(now_text, sizeof(now_text), "%lld", now);
	const char *argv[] = {d->agent->settings.key_prefix,
			      d->run,
			      d->env,
			      d->approve ? "approved" : "rejected",
			      d->by,
			      d->reason,
			      now_text,
			      opens ? opens : "{}"};
	int rc = redis_script_run(r, d->agent->scripts.decide, on_decided, d, 0, 8, argv, NULL);
	free(opens);
	if (rc < 0)
		decision_unavailable(d, "script not sent");
}

/* The request's JSON body: reason (required), by (optional, and ignored
 * when the caller is known by a token). On error writes the message for a
 * 400 into why. */
static int read_body(struct evhttp_request *req, struct decision *d, const char *caller, char *why,
		     size_t whylen)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *body;
	const char *reason, *by;

	if (len > BODY_MAX) {
		snprintf(why, whylen, "the body is larger than %d bytes", BODY_MAX);
		return -1;
	}
	body = len ? json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr) : NULL;
	if (!json_is_object(body)) {
		snprintf(why, whylen,
			 "expected a JSON object {\"reason\": \"...\", \"by\": \"...\"}");
		json_decref(body);
		return -1;
	}
	reason = json_string_value(json_object_get(body, "reason"));
	by = json_string_value(json_object_get(body, "by"));
	if (!reason || !*reason || strlen(reason) > REASON_MAX) {
		snprintf(why, whylen, "reason: a non-empty string of at most %d bytes is required",
			 REASON_MAX);
	} else if (!caller && json_object_get(body, "by") && (!by || !*by || strlen(by) > BY_MAX)) {
		snprintf(why, whylen, "by: expected a non-empty string of at most %d bytes",
			 BY_MAX);
	} else {
		/* With tokens the decision is the token's; an open API takes the
		 * caller's word, "anonymous" unless they say otherwise. */
		d->reason = strdup(reason);
		d->by = strdup(caller ? caller : by ? by : "anonymous");
	}
	json_decref(body);
	if (!why[0] && (!d->reason || !d->by))
		snprintf(why, whylen, "out of memory");
	return why[0] ? -1 : 0;
}

static void decide(struct evhttp_request *req, struct agent *a, const char *run, const char *env,
		   int approve, const char *caller)
{
	struct decision *d = calloc(1, sizeof(*d));
	char why[256] = "";

	if (!d) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	d->agent = a;
	d->approve = approve;
	snprintf(d->run, sizeof(d->run), "%s", run);
	snprintf(d->env, sizeof(d->env), "%s", env);
	if (read_body(req, d, caller, why, sizeof(why)) < 0) {
		http_reply_error(req, 400, "bad_request", why);
		decision_free(d);
		return;
	}
	d->pending = http_pending_new(a, req);
	if (!d->pending) {
		http_reply_error(req, 500, "internal", "out of memory");
		decision_free(d);
		return;
	}
	if (redis_command(a->redis, on_decision_def, d, "HGET %srun:%s def", a->settings.key_prefix,
			  run) < 0)
		decision_unavailable(d, "command not sent");
}

int promotion_post(struct agent *a, struct evhttp_request *req, const char *path,
		   const char *caller)
{
	char run[128], env[128];
	const char *p;

	if (http_run_env_path(path, run, sizeof(run), env, sizeof(env), &p) < 0)
		return 0;
	if (strcmp(p, "/approve") == 0)
		decide(req, a, run, env, 1, caller);
	else if (strcmp(p, "/reject") == 0)
		decide(req, a, run, env, 0, caller);
	else
		return 0;
	return 1;
}
