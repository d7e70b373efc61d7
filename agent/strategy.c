/* strategy: promote, abort, retry and rollback of deployments; the view of
 * a rollout for GET /api/v1/runs/{id}. */
#include "agent/strategy.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/http.h"
#include "agent/promotion.h"
#include "lib/clock.h"
#include "lib/log.h"

#define BODY_MAX   (64 * 1024)
#define REASON_MAX 1000
#define BY_MAX	   200

enum verb { VERB_PROMOTE, VERB_ABORT, VERB_RETRY, VERB_ROLLBACK };

static const char *field(const json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

static int field_is(const json_t *o, const char *name, const char *value)
{
	const char *v = field(o, name);
	return v && strcmp(v, value) == 0;
}

static json_t *time_or_null(long long ms)
{
	char buf[64];
	if (ms <= 0)
		return json_null();
	clock_format_rfc3339(ms, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *copy_or_null(const json_t *v)
{
	return v ? json_deep_copy(v) : json_null();
}

/* --- the view -------------------------------------------------------------- */

/* The words the dashboard shows as a result. */
static const char *verdict_status(const char *verdict)
{
	if (!verdict)
		return "running";
	if (strcmp(verdict, "Successful") == 0)
		return "passed";
	if (strcmp(verdict, "Failed") == 0)
		return "failed";
	return "inconclusive";
}

/* One analysis of the rollout (stages/analysis.h's result, named): the
 * last value measured beside the condition that judged it. */
static json_t *analysis_row(const json_t *an)
{
	const json_t *ms = json_object_get(an, "measurements");
	const json_t *last = json_array_get(ms, json_array_size(ms) - 1);
	const json_t *values = json_object_get(last, "values");
	const char *verdict = field(an, "verdict");
	const char *condition = field(last, "condition");

	if (!condition)
		condition = field(an, "success_condition");
	if (!condition)
		condition = field(an, "failure_condition");
	return json_pack("{s:s?, s:o, s:s?, s:s, s:s?, s:o, s:s?}", "metric", field(an, "name"),
			 "value", copy_or_null(json_array_get(values, 0)), "threshold", condition,
			 "status", verdict_status(verdict), "verdict", verdict, "pass",
			 !verdict			      ? json_null()
			 : strcmp(verdict, "Successful") == 0 ? json_true()
			 : strcmp(verdict, "Failed") == 0     ? json_false()
							      : json_null(),
			 "message", field(an, "message"));
}

/* The result of the check named name among results, or NULL. */
static const json_t *check_result(const json_t *results, const char *name)
{
	size_t i;
	const json_t *r;
	json_array_foreach(results, i, r)
	{
		if (field_is(r, "name", name))
			return r;
	}
	return NULL;
}

/* The checks of the spec before and after the deployment, each with its
 * result once it has one. */
static int add_checklist(json_t *list, const json_t *spec, const json_t *state)
{
	static const char *const phases[] = {"pre", "post"};
	for (size_t p = 0; p < 2; p++) {
		const json_t *items = json_object_get(json_object_get(spec, "checks"), phases[p]);
		const json_t *results =
		    json_object_get(json_object_get(state, "checks"), phases[p]);
		size_t i;
		const json_t *item;
		json_array_foreach(items, i, item)
		{
			const char *name = field(item, "name");
			const json_t *r = name ? check_result(results, name) : NULL;
			const char *status =
			    r && field(r, "status") ? field(r, "status") : "pending";
			json_t *row =
			    json_pack("{s:s?, s:s, s:b, s:s, s:s?}", "item", name, "phase",
				      phases[p], "done", strcmp(status, "passed") == 0, "status",
				      status, "message", field(r, "message"));
			if (!row || json_array_append_new(list, row) < 0)
				return -1;
		}
	}
	return 0;
}

json_t *strategy_view(const json_t *sdef, const json_t *stage)
{
	const json_t *spec = json_object_get(sdef, "rollout");
	const json_t *strategy = json_object_get(spec, "strategy");
	const char *text = field(stage, "rollout");
	json_t *state = text ? json_loads(text, 0, NULL) : NULL;
	json_t *view = NULL, *analysis = json_array(), *checklist = json_array();
	const json_t *an, *step, *steps;
	size_t i;

	if (!json_is_object(spec))
		goto done;
	if (!json_is_object(state)) {
		json_decref(state);
		state = NULL;
	}
	json_array_foreach(json_object_get(state, "analyses"), i, an)
	{
		json_t *row = analysis_row(an);
		if (!row || json_array_append_new(analysis, row) < 0)
			goto done;
	}
	if (!analysis || !checklist || add_checklist(checklist, spec, state) < 0)
		goto done;
	step = json_object_get(state, "step");
	steps = json_object_get(state, "steps");
	if (!json_is_array(steps))
		steps = json_object_get(strategy, "steps");
	/* 1-based; a finished rollout stands on its last step. */
	json_int_t at = json_integer_value(step) + 1;
	if (json_is_array(steps) && at > (json_int_t)json_array_size(steps))
		at = (json_int_t)json_array_size(steps);
	view = json_pack(
	    "{s:s?, s:o, s:o, s:s?, s:o, s:s?, s:o, s:o, s:o, s:s?, s:s?, s:o}", "name",
	    field(state, "strategy") ? field(state, "strategy") : field(strategy, "type"), "step",
	    json_is_integer(step) ? json_integer(at) : json_null(), "steps",
	    json_is_array(steps) ? json_integer((json_int_t)json_array_size(steps)) : json_null(),
	    "status", field(state, "phase"), "paused_until",
	    time_or_null((long long)json_number_value(json_object_get(state, "paused_until"))),
	    "pause", field(state, "pause"), "weights",
	    copy_or_null(json_object_get(state, "weights")), "analysis", analysis, "checklist",
	    checklist, "command", field(stage, "command"), "mode", field(stage, "mode"), "rollout",
	    state ? json_incref(state) : json_null());
	analysis = checklist = NULL;
done:
	json_decref(analysis);
	json_decref(checklist);
	json_decref(state);
	return view;
}

/* The promotion has ended (failed, aborted, deployed...): it neither
 * deploys nor waits at a gate. */
static int promotion_over(const json_t *promotion)
{
	static const char *const open[] = {"pending", "waiting_window", "waiting_approval",
					   "queued",  "deploying",	"rolling_back"};
	const char *status = field(promotion, "status");
	if (!status)
		return 0;
	for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++) {
		if (strcmp(status, open[i]) == 0)
			return 0;
	}
	return 1;
}

json_t *strategy_actions(const char *run, const json_t *sdef, const json_t *promotion,
			 const json_t *stage, const json_t *env, int run_open)
{
	json_t *verbs = json_array();
	const char *status = field(stage, "status");
	const char *lock = field(env, "lock");
	int rollout = json_is_object(json_object_get(sdef, "rollout"));
	int rollback = field_is(stage, "mode", "rollback");
	int deploying = status && (strcmp(status, "queued") == 0 ||
				   strcmp(status, "running") == 0 || strcmp(status, "paused") == 0);
	int ended = status && (strcmp(status, "failed") == 0 || strcmp(status, "aborted") == 0 ||
			       strcmp(status, "timed_out") == 0 || strcmp(status, "lost") == 0);
	int aborting = field_is(stage, "command", "abort");
	int paused = status && strcmp(status, "paused") == 0;

	if (!verbs)
		return NULL;
	if (deploying && field(stage, "rollout")) {
		json_t *state = json_loads(field(stage, "rollout"), 0, NULL);
		const json_t *step =
		    json_array_get(json_object_get(state, "steps"),
				   (size_t)json_integer_value(json_object_get(state, "step")));
		if (strcmp(status, "running") == 0)
			paused = field_is(state, "phase", "Paused");
		/* The scale-down delay waits for nobody: nothing is left to promote. */
		if (json_is_true(json_object_get(step, "auto")))
			paused = 0;
		json_decref(state);
	}
	if (field_is(promotion, "status", "waiting_approval")) {
		json_array_append_new(verbs, json_string("approve"));
		json_array_append_new(verbs, json_string("reject"));
	}
	if (rollout && deploying && run_open && !rollback && !aborting) {
		if (paused)
			json_array_append_new(verbs, json_string("promote"));
		json_array_append_new(verbs, json_string("abort"));
	}
	if (ended && !rollback && promotion_over(promotion) && (!lock || strcmp(lock, run) == 0))
		json_array_append_new(verbs, json_string("retry"));
	if (rollout && !run_open && field_is(env, "current", run) && field(env, "previous") &&
	    field(env, "previous_image") && *field(env, "previous_image") && !lock && !deploying)
		json_array_append_new(verbs, json_string("rollback"));
	return verbs;
}

/* --- the commands ---------------------------------------------------------- */

struct command_call {
	struct agent *agent;
	struct http_pending *pending;
	enum verb verb;
	int full;
	char run[128];
	char env[128];
	char *by;
	char *reason;
};

static void call_free(struct command_call *c)
{
	free(c->by);
	free(c->reason);
	free(c);
}

static const char *command_name(const struct command_call *c)
{
	switch (c->verb) {
	case VERB_PROMOTE:
		return c->full ? "promote_full" : "promote";
	case VERB_ABORT:
		return "abort";
	case VERB_RETRY:
		return "retry";
	case VERB_ROLLBACK:
		break;
	}
	return "rollback";
}

static void call_end(struct command_call *c, int status, const char *code, const char *message)
{
	http_pending_error(c->pending, status, code, message);
	call_free(c);
}

static const char *element(const redisReply *reply, size_t i)
{
	if (i >= reply->elements || reply->element[i]->type != REDIS_REPLY_STRING)
		return "";
	return reply->element[i]->str;
}

static long long element_int(const redisReply *reply, size_t i)
{
	if (i >= reply->elements)
		return 0;
	if (reply->element[i]->type == REDIS_REPLY_INTEGER)
		return reply->element[i]->integer;
	return strtoll(element(reply, i), NULL, 10);
}

/* The command was taken: 202 with where the deployment is now. */
static void accepted(struct command_call *c, const redisReply *reply)
{
	const char *outcome = element(reply, 0);
	char stage[160];
	json_t *body;

	snprintf(stage, sizeof(stage), "deploy@%s", c->env);
	body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:I}, s:s, s:s?}", "run", c->run, "env",
			 c->env, "command", command_name(c), "status", element(reply, 1), "stage",
			 "name", stage, "status", element(reply, 2), "attempt",
			 (json_int_t)element_int(reply, 3), "by", c->by, "reason",
			 *c->reason ? c->reason : NULL);
	if (c->verb == VERB_PROMOTE || c->verb == VERB_ABORT)
		json_object_set_new(body, "resumed", json_boolean(strcmp(outcome, "resumed") == 0));
	if (c->verb == VERB_ROLLBACK)
		json_object_set_new(
		    body, "rollback",
		    json_pack("{s:s, s:s}", "run", element(reply, 4), "image", element(reply, 5)));
	log_info("deployment command accepted", LOG_S("run", c->run), LOG_S("env", c->env),
		 LOG_S("command", command_name(c)), LOG_S("by", c->by), LOG_S("outcome", outcome));
	outbox_kick(c->agent->outbox);
	http_pending_reply(c->pending, 202, body);
	call_free(c);
}

/* A refusal of a script, as the error the API answers. */
static void refused(struct command_call *c, const redisReply *reply)
{
	const char *why = element(reply, 0), *detail = element(reply, 1);
	const char *code = "conflict";
	char msg[512];
	int status = 409;

	if (strcmp(why, "gone") == 0) {
		call_end(c, 404, "not_found", "no such run");
		return;
	}
	if (strcmp(why, "unknown-env") == 0) {
		snprintf(msg, sizeof(msg), "run %s has no environment %s", c->run, c->env);
		call_end(c, 404, "not_found", msg);
		return;
	}
	if (strcmp(why, "no-strategy") == 0) {
		code = "no_strategy";
		snprintf(msg, sizeof(msg),
			 "environment %s deploys without a strategy: %s needs one (canary, "
			 "blue/green, rolling update)",
			 c->env, command_name(c));
	} else if (strcmp(why, "not-deploying") == 0) {
		const char *run_status = element(reply, 2);
		code = "not_deploying";
		/* A waiting run waits at a gate: of this environment, which it has
		 * not deployed to yet, or of a later one. */
		if (strcmp(run_status, "queued") != 0 && strcmp(run_status, "running") != 0 &&
		    strcmp(run_status, "waiting") != 0)
			snprintf(msg, sizeof(msg), "run %s is %s: its deployment to %s is over",
				 c->run, run_status, c->env);
		else
			snprintf(msg, sizeof(msg),
				 "the deployment of run %s to %s is not in progress (it is %s)",
				 c->run, c->env, detail);
	} else if (strcmp(why, "not-paused") == 0) {
		code = "not_paused";
		snprintf(msg, sizeof(msg),
			 "the rollout of run %s in %s is not paused (it is %s); promote with "
			 "\"full\" skips the remaining steps",
			 c->run, c->env, detail);
	} else if (strcmp(why, "scale-down-delay") == 0) {
		code = "not_paused";
		snprintf(msg, sizeof(msg),
			 "the rollout of run %s in %s has switched and waits its scale-down "
			 "delay before scaling the old colour down: there is nothing to promote",
			 c->run, c->env);
	} else if (strcmp(why, "aborting") == 0) {
		code = "aborting";
		snprintf(msg, sizeof(msg), "the rollout of run %s in %s is being aborted", c->run,
			 c->env);
	} else if (strcmp(why, "not-failed") == 0) {
		code = "not_failed";
		snprintf(msg, sizeof(msg),
			 "the deployment of run %s to %s cannot be retried (%s): only a failed "
			 "or aborted deployment is",
			 c->run, c->env, detail);
	} else if (strcmp(why, "window") == 0) {
		code = "deny_window";
		snprintf(msg, sizeof(msg),
			 "environment %s is in a deny window until %s: retry once it has ended",
			 c->env, detail);
	} else if (strcmp(why, "locked") == 0) {
		code = "locked";
		snprintf(msg, sizeof(msg),
			 "environment %s is locked by run %s, which deploys there", c->env, detail);
	} else if (strcmp(why, "superseded") == 0) {
		code = "superseded";
		snprintf(msg, sizeof(msg),
			 "run %s, newer, has been deployed to %s since: deploying run %s again "
			 "would replace it",
			 detail, c->env, c->run);
	} else if (strcmp(why, "not-current") == 0) {
		code = "not_current";
		if (*detail)
			snprintf(msg, sizeof(msg),
				 "run %s is not the current release of %s (run %s is)", c->run,
				 c->env, detail);
		else
			snprintf(msg, sizeof(msg), "%s has no current release", c->env);
	} else if (strcmp(why, "no-previous") == 0) {
		code = "no_previous";
		snprintf(msg, sizeof(msg), "%s has no previous release to roll back to", c->env);
	} else if (strcmp(why, "busy") == 0) {
		code = "busy";
		snprintf(msg, sizeof(msg),
			 "the deployment of run %s to %s has not ended (it is %s)", c->run, c->env,
			 detail);
	} else if (strcmp(why, "run-active") == 0) {
		code = "run_active";
		snprintf(msg, sizeof(msg),
			 "run %s is still %s: cancel it or let it finish before rolling back",
			 c->run, detail);
	} else {
		status = 503;
		code = "unavailable";
		snprintf(msg, sizeof(msg), "unexpected answer from the state store: %s", why);
	}
	log_info("deployment command refused", LOG_S("run", c->run), LOG_S("env", c->env),
		 LOG_S("command", command_name(c)), LOG_S("reason", why));
	call_end(c, status, code, msg);
}

static void on_script(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct command_call *c = arg;
	static const char *const taken[] = {"sent", "resumed", "retried", "rolling-back"};
	(void)r;

	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		log_warn("deployment command not recorded", LOG_S("run", c->run),
			 LOG_S("env", c->env), LOG_S("error", err ? err : "unexpected reply"));
		call_end(c, 503, "unavailable", "state store unavailable");
		return;
	}
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		if (strcmp(reply->element[0]->str, taken[i]) == 0) {
			accepted(c, reply);
			return;
		}
	}
	refused(c, reply);
}

/* A retry deploys again, so the environment's deny windows (those of the
 * run's own definition, as for its first deployment) hold it too. */
static void on_retry_def(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct command_call *c = arg;
	struct agent *a = c->agent;
	if (!reply) {
		call_end(c, 503, "unavailable", "state store unavailable");
		return;
	}
	(void)err;
	long long now = (long long)clock_now_ms();
	char *opens =
	    promotion_openings_text(reply->type == REDIS_REPLY_STRING ? reply->str : NULL, now);
	char now_text[32];
	snprintf(now_text, sizeof(now_text), "%lld", now);
	const char *argv[] = {a->settings.key_prefix, c->run, c->env, c->by, c->reason, now_text,
			      opens ? opens : "{}"};
	int rc = redis_script_run(r, a->scripts.rollout_retry, on_script, c, 0, 7, argv, NULL);
	free(opens);
	if (rc < 0)
		call_end(c, 503, "unavailable", "state store unavailable");
}

static void send_command(struct command_call *c)
{
	struct agent *a = c->agent;
	char now[32];
	int rc;

	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	if (c->verb == VERB_PROMOTE || c->verb == VERB_ABORT) {
		const char *argv[] = {
		    a->settings.key_prefix, c->run, c->env, command_name(c), c->by, c->reason, now};
		rc = redis_script_run(a->redis, a->scripts.rollout_command, on_script, c, 0, 7,
				      argv, NULL);
	} else if (c->verb == VERB_RETRY) {
		rc = redis_command(a->redis, on_retry_def, c, "HGET %srun:%s def",
				   a->settings.key_prefix, c->run);
	} else {
		const char *argv[] = {
		    a->settings.key_prefix, c->run, c->env, c->by, c->reason, now};
		rc =
		    redis_script_run(a->redis, a->scripts.rollback, on_script, c, 0, 6, argv, NULL);
	}
	if (rc < 0)
		call_end(c, 503, "unavailable", "state store unavailable");
}

/* The optional JSON body: reason, by (ignored when the caller is known by a
 * token), full (promote only). On error writes the message for a 400 into
 * why. */
static int read_body(struct evhttp_request *req, struct command_call *c, const char *caller,
		     char *why, size_t whylen)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *body = NULL;
	const json_t *reason, *by, *full;

	if (len > BODY_MAX) {
		snprintf(why, whylen, "the body is larger than %d bytes", BODY_MAX);
		return -1;
	}
	if (len) {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
		if (!json_is_object(body)) {
			snprintf(why, whylen, "expected a JSON object {\"reason\": \"...\"%s}",
				 c->verb == VERB_PROMOTE ? ", \"full\": true" : "");
			goto done;
		}
	}
	reason = json_object_get(body, "reason");
	by = json_object_get(body, "by");
	full = json_object_get(body, "full");
	if (reason && (!json_is_string(reason) || json_string_length(reason) > REASON_MAX)) {
		snprintf(why, whylen, "reason: expected a string of at most %d bytes", REASON_MAX);
	} else if (!caller && by &&
		   (!json_is_string(by) || !json_string_length(by) ||
		    json_string_length(by) > BY_MAX)) {
		snprintf(why, whylen, "by: expected a non-empty string of at most %d bytes",
			 BY_MAX);
	} else if (full && c->verb != VERB_PROMOTE) {
		snprintf(why, whylen, "full: only promote takes it");
	} else if (full && !json_is_boolean(full)) {
		snprintf(why, whylen, "full: expected true or false");
	} else {
		c->full = json_is_true(full);
		c->reason = strdup(reason ? json_string_value(reason) : "");
		/* With tokens the command is the token's; an open API takes the
		 * caller's word, "anonymous" unless they say otherwise. */
		c->by = strdup(caller ? caller : by ? json_string_value(by) : "anonymous");
		if (!c->reason || !c->by)
			snprintf(why, whylen, "out of memory");
	}
done:
	json_decref(body);
	return why[0] ? -1 : 0;
}

int strategy_post(struct agent *a, struct evhttp_request *req, const char *path, const char *caller)
{
	static const struct {
		const char *suffix;
		enum verb verb;
	} verbs[] = {{"/promote", VERB_PROMOTE},
		     {"/abort", VERB_ABORT},
		     {"/retry", VERB_RETRY},
		     {"/rollback", VERB_ROLLBACK}};
	struct command_call *c;
	char run[128], env[128], why[256] = "";
	const char *p;
	size_t v;

	if (http_run_env_path(path, run, sizeof(run), env, sizeof(env), &p) < 0)
		return 0;
	for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
		if (strcmp(p, verbs[v].suffix) == 0)
			break;
	}
	if (v == sizeof(verbs) / sizeof(verbs[0]))
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c) {
		http_reply_error(req, 500, "internal", "out of memory");
		return 1;
	}
	c->agent = a;
	c->verb = verbs[v].verb;
	snprintf(c->run, sizeof(c->run), "%s", run);
	snprintf(c->env, sizeof(c->env), "%s", env);
	if (read_body(req, c, caller, why, sizeof(why)) < 0) {
		http_reply_error(req, 400, "bad_request", why);
		call_free(c);
		return 1;
	}
	c->pending = http_pending_new(a, req);
	if (!c->pending) {
		http_reply_error(req, 500, "internal", "out of memory");
		call_free(c);
		return 1;
	}
	send_command(c);
	return 1;
}
