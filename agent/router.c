/* router: consumes sluice.results and advances each run.
 *
 * For a finished stage it prepares jobs for the stages that need it and
 * lets route.lua decide, atomically, which of them start, which are skipped
 * and whether the run is finished. A failed attempt that the stage's retry
 * policy covers goes to retry.lua instead, which schedules the next attempt
 * after a back-off; one that exhausted its retries is routed as failed and
 * its job sent to the dead-letter topic. A dev.sluice.promotion.ready message
 * (a deny window opened, an approval expired: see promotion.h) goes to
 * promote.lua, which checks the promotion's gates again. Every script gets
 * the environments whose deny windows are closed now, so that a promotion
 * can be held until they open. The Kafka offset is stored only after
 * that script succeeded; while Redis cannot be reached the message is
 * retried with back-off, so a result is never lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/promotion.h"
#include "config/retry.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "queue/defcache.h"
#include "queue/envelope.h"
#include "queue/jobs.h"

/* Runs whose definitions are held: as many as are likely to have stages
 * finishing at once. */
#define ROUTED_RUNS 32

struct route_call {
	struct route_call *next, **prevp; /* in agent->routing, to end them at shutdown */
	struct agent *agent;
	struct kafka_ticket *ticket;
	struct event *retry;
	int retry_ms;
	char run[128];
	char stage[128];
	int attempt;
	char status[32]; /* as the result reports it */
	int exit_code;	 /* -1: none */
	char gate[16];	 /* of a promotion.ready message, whose stage is the environment */
	/* The run's definition as routing holds it (see route_begin), and the
	 * definition in it; both NULL until read. */
	json_t *held;
	const json_t *def;
};

static void route_begin(struct route_call *c);

static void route_free(struct route_call *c)
{
	*c->prevp = c->next;
	if (c->next)
		c->next->prevp = c->prevp;
	if (c->retry)
		event_free(c->retry);
	json_decref(c->held);
	free(c);
}

static void route_end(struct route_call *c)
{
	kafka_consumer_done(c->agent->results, c->ticket);
	route_free(c);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	route_begin(arg);
}

static void route_later(struct route_call *c, const char *why)
{
	if (c->agent->stopping) {
		route_free(c);
		return;
	}
	log_warn("routing delayed", LOG_S("run", c->run), LOG_S("stage", c->stage),
		 LOG_S("error", why), LOG_I("retry_ms", c->retry_ms));
	if (!c->retry)
		c->retry = evtimer_new(c->agent->base, on_retry, c);
	struct timeval tv = redis_retry_wait(&c->retry_ms);
	evtimer_add(c->retry, &tv);
}

static void on_routed(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct route_call *c = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
		route_later(c, err ? err : "unexpected reply from route script");
		return;
	}
	const char *outcome = reply->element[0]->str;
	if (strcmp(outcome, "routed") == 0) {
		for (size_t i = 2; i < reply->elements; i++)
			log_info("stage queued", LOG_S("run", c->run),
				 LOG_S("stage", reply->element[i]->str));
		const char *status = reply->element[1]->str;
		if (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0)
			log_info("run finished", LOG_S("run", c->run), LOG_S("status", status));
		outbox_kick(c->agent->outbox);
	} else {
		log_debug("result not routed", LOG_S("run", c->run), LOG_S("stage", c->stage),
			  LOG_S("outcome", outcome));
	}
	route_end(c);
}

/* Jobs for every stage that needs the finished one; route.lua starts those
 * whose needs have all succeeded. */
static json_t *prepare_dependants(struct route_call *c)
{
	json_t *jobs = json_object();
	const char *name;
	json_t *stage;
	json_object_foreach(json_object_get(c->def, "stages"), name, stage)
	{
		size_t i;
		json_t *need;
		json_array_foreach(json_object_get(stage, "needs"), i, need)
		{
			if (strcmp(json_string_value(need), c->stage) != 0)
				continue;
			const char *kind = json_string_value(json_object_get(stage, "kind"));
			json_t *job = jobs_prepare(&c->agent->settings, c->run, name, kind, 1);
			if (job)
				json_object_set_new(jobs, name, job);
		}
	}
	return jobs;
}

/* What route.lua reads of the run's definition: each stage's needs and
 * env, and the environments; a fraction of the whole for Redis to decode. */
static char *route_skeleton(const json_t *def)
{
	json_t *stages = json_object();
	json_t *out = json_pack("{s:o}", "stages", stages);
	const char *name;
	json_t *stage;
	json_object_foreach(json_object_get(def, "stages"), name, stage)
	{
		json_t *s = json_object();
		json_t *needs = json_object_get(stage, "needs");
		json_t *env = json_object_get(stage, "env");
		if (!s || json_object_set_new(stages, name, s) < 0 ||
		    (needs && json_object_set(s, "needs", needs) < 0) ||
		    (env && json_object_set(s, "env", env) < 0)) {
			json_decref(out);
			return NULL;
		}
	}
	json_t *environments = json_object_get(def, "environments");
	char *text = NULL;
	if (out && (!environments || json_object_set(out, "environments", environments) == 0))
		text = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	return text;
}

/* route.lua; with dead_letter, the attempt's job goes to the dead-letter
 * topic in the same script. */
static void route_now(struct route_call *c, int dead_letter)
{
	struct agent *a = c->agent;
	json_t *jobs = prepare_dependants(c);
	char *jobs_text = json_dumps(jobs, JSON_COMPACT);
	json_decref(jobs);
	json_t *dlq_job = NULL;
	char attempt[16], now[32], dlq[256];
	long long now_ms = (long long)clock_now_ms();
	char *opens = promotion_openings(c->def, now_ms);
	const char *skeleton = json_string_value(json_object_get(c->held, "route"));
	snprintf(attempt, sizeof(attempt), "%d", c->attempt);
	snprintf(now, sizeof(now), "%lld", now_ms);
	snprintf(dlq, sizeof(dlq), "%sdlq", a->settings.topic_prefix);
	if (dead_letter) {
		const json_t *stage = json_object_get(json_object_get(c->def, "stages"), c->stage);
		const char *kind = json_string_value(json_object_get(stage, "kind"));
		dlq_job =
		    jobs_prepare(&a->settings, c->run, c->stage, kind ? kind : "build", c->attempt);
	}
	const char *dlq_value = json_string_value(json_object_get(dlq_job, "value"));
	const char *argv[] = {a->settings.key_prefix,
			      c->run,
			      c->stage,
			      attempt,
			      now,
			      jobs_text ? jobs_text : "{}",
			      dlq_value ? dlq : "",
			      dlq_value ? dlq_value : "",
			      opens ? opens : "{}",
			      skeleton};
	/* Without the skeleton, route.lua decodes the recorded definition. */
	if (redis_script_run(a->redis, a->scripts.route, on_routed, c, 0, skeleton ? 10 : 9, argv,
			     NULL) < 0)
		route_later(c, "route script not sent");
	json_decref(dlq_job);
	free(jobs_text);
	free(opens);
}

static void on_retry_scheduled(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct route_call *c = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_STRING) {
		route_later(c, err ? err : "unexpected reply from retry script");
		return;
	}
	if (strcmp(reply->str, "route") == 0) {
		route_now(c, 0);
		return;
	}
	if (strcmp(reply->str, "retrying") == 0)
		log_info("stage will be retried", LOG_S("run", c->run), LOG_S("stage", c->stage),
			 LOG_I("failed_attempt", c->attempt), LOG_S("status", c->status));
	else
		log_debug("result not routed", LOG_S("run", c->run), LOG_S("stage", c->stage),
			  LOG_S("outcome", reply->str));
	route_end(c);
}

/* Schedules attempt + 1 through the delayed set (release.lua starts it). */
static void retry_later(struct route_call *c, const json_t *stage)
{
	struct agent *a = c->agent;
	const char *kind = json_string_value(json_object_get(stage, "kind"));
	json_t *job =
	    jobs_prepare(&a->settings, c->run, c->stage, kind ? kind : "build", c->attempt + 1);
	long long due = (long long)clock_now_ms() + retry_backoff_ms(stage, c->attempt);
	if (!job) {
		route_later(c, "out of memory");
		return;
	}
	json_object_set_new(job, "run", json_string(c->run));
	json_object_set_new(job, "stage", json_string(c->stage));
	json_object_set_new(job, "attempt", json_integer(c->attempt + 1));
	char *entry = json_dumps(job, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(job);
	char attempt[16], due_text[32];
	snprintf(attempt, sizeof(attempt), "%d", c->attempt);
	snprintf(due_text, sizeof(due_text), "%lld", due);
	const char *argv[] = {
	    a->settings.key_prefix, c->run, c->stage, attempt, c->status, due_text, entry};
	if (!entry || redis_script_run(a->redis, a->scripts.retry, on_retry_scheduled, c, 0, 7,
				       argv, NULL) < 0)
		route_later(c, "retry script not sent");
	free(entry);
}

static void on_promoted(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct route_call *c = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
		route_later(c, err ? err : "unexpected reply from promote script");
		return;
	}
	log_info("promotion checked", LOG_S("run", c->run), LOG_S("env", c->stage),
		 LOG_S("gate", c->gate), LOG_S("outcome", reply->element[0]->str),
		 LOG_S("run_status", reply->element[1]->str));
	outbox_kick(c->agent->outbox);
	route_end(c);
}

/* A gate of the promotion to environment c->stage may have changed. */
static void promote_now(struct route_call *c)
{
	struct agent *a = c->agent;
	long long now_ms = (long long)clock_now_ms();
	char *opens = promotion_openings(c->def, now_ms);
	char now[32];
	snprintf(now, sizeof(now), "%lld", now_ms);
	const char *argv[] = {a->settings.key_prefix, c->run, c->stage, c->gate, now,
			      opens ? opens : "{}"};
	if (!opens ||
	    redis_script_run(a->redis, a->scripts.promote, on_promoted, c, 0, 6, argv, NULL) < 0)
		route_later(c, "promote script not sent");
	free(opens);
}

/* With c->def, the run's definition (NULL when it has none). */
static void route_with_definition(struct route_call *c)
{
	if (c->gate[0]) {
		promote_now(c);
		return;
	}
	const json_t *stage = json_object_get(json_object_get(c->def, "stages"), c->stage);
	switch (retry_decide(stage, c->status, c->exit_code, c->attempt)) {
	case RETRY_AGAIN:
		retry_later(c, stage);
		return;
	case RETRY_EXHAUSTED:
		route_now(c, 1);
		return;
	case RETRY_NONE:
		route_now(c, 0);
		return;
	}
}

/* What routing holds of a run: {"def": the definition, "route": the
 * skeleton route.lua is given (absent when it could not be written)}. */
static json_t *held_of(json_t *def)
{
	char *skeleton = route_skeleton(def);
	json_t *held = json_pack("{s:o,s:s*}", "def", def, "route", skeleton);
	free(skeleton);
	return held;
}

static void on_definition(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct route_call *c = arg;
	(void)r;
	if (!reply) {
		route_later(c, err);
		return;
	}
	json_t *def = reply->type == REDIS_REPLY_STRING ? json_loads(reply->str, 0, NULL) : NULL;
	json_decref(c->held);
	c->held = def ? held_of(def) : NULL;
	c->def = json_object_get(c->held, "def");
	defcache_put(c->agent->defs, c->run, c->held);
	route_with_definition(c);
}

/* The run's definition never changes once recorded: read and decoded, and
 * its skeleton written, once for the results of its stages that follow. */
static void route_begin(struct route_call *c)
{
	struct agent *a = c->agent;
	json_decref(c->held);
	c->held = defcache_get(a->defs, c->run);
	c->def = json_object_get(c->held, "def");
	if (c->held) {
		route_with_definition(c);
		return;
	}
	if (redis_command(a->redis, on_definition, c, "HGET %srun:%s def", a->settings.key_prefix,
			  c->run) < 0)
		route_later(c, "command not sent");
}

static void on_result(const struct kafka_message *m, struct kafka_ticket *t, void *arg)
{
	struct agent *a = arg;
	struct envelope env;
	char err[256];

	if (envelope_decode(m->value, m->len, &env, err, sizeof(err)) < 0) {
		log_warn("result dropped", LOG_S("topic", m->topic), LOG_I("offset", m->offset),
			 LOG_S("error", err));
		kafka_consumer_done(a->results, t);
		return;
	}
	const char *run = json_string_value(json_object_get(env.data, "run"));
	const char *stage = json_string_value(json_object_get(env.data, "stage"));
	int attempt = envelope_attempt(env.data);
	const char *gate = json_string_value(json_object_get(env.data, "gate"));
	int ready = strcmp(env.type, "dev.sluice.promotion.ready") == 0;
	if (ready) {
		/* A promotion's gate: the run and environment, no attempt. */
		stage = json_string_value(json_object_get(env.data, "env"));
		attempt = 0;
	}
	if ((!ready && strcmp(env.type, "dev.sluice.stage.finished") != 0) || !run || !stage ||
	    (!ready && attempt < 0) || (ready && (!gate || strlen(gate) >= 16)) ||
	    strlen(run) >= 128 || strlen(stage) >= 128) {
		log_warn("result dropped", LOG_S("id", env.id), LOG_S("type", env.type),
			 LOG_S("error", "not a stage result with run, stage and attempt"));
		envelope_clear(&env);
		kafka_consumer_done(a->results, t);
		return;
	}
	struct route_call *c = calloc(1, sizeof(*c));
	if (!c) {
		envelope_clear(&env);
		kafka_consumer_done(a->results, t);
		return;
	}
	c->agent = a;
	c->ticket = t;
	c->next = a->routing;
	c->prevp = &a->routing;
	if (a->routing)
		a->routing->prevp = &c->next;
	a->routing = c;
	c->retry_ms = REDIS_RETRY_FIRST_MS;
	snprintf(c->run, sizeof(c->run), "%s", run);
	snprintf(c->stage, sizeof(c->stage), "%s", stage);
	c->attempt = attempt;
	if (ready)
		snprintf(c->gate, sizeof(c->gate), "%s", gate);
	const char *status = json_string_value(json_object_get(env.data, "status"));
	json_t *exit_code = json_object_get(env.data, "exit_code");
	snprintf(c->status, sizeof(c->status), "%s", status ? status : "");
	c->exit_code = json_is_integer(exit_code) ? (int)json_integer_value(exit_code) : -1;
	envelope_clear(&env);
	route_begin(c);
}

int router_start(struct agent *a)
{
	char topic[256], group[256], err[512];
	snprintf(topic, sizeof(topic), "%sresults", a->settings.topic_prefix);
	snprintf(group, sizeof(group), "%srouter", a->settings.topic_prefix);
	const char *topics[] = {topic};
	struct kafka_consumer_opts opts = {.session_timeout_ms = a->settings.session_timeout_ms,
					   .fetch_wait_ms = a->settings.fetch_wait_ms};
	a->defs = defcache_new(ROUTED_RUNS);
	if (!a->defs)
		return -1;
	a->results = kafka_consumer_new_opts(a->base, a->settings.brokers, group, topics, 1,
					     on_result, a, &opts, err, sizeof(err));
	if (!a->results) {
		log_error("cannot consume results", LOG_S("topic", topic), LOG_S("error", err));
		return -1;
	}
	return 0;
}

void router_stop(struct agent *a)
{
	/* Unfinished results are consumed again by whoever owns the partition
	 * next: their offsets were never stored. */
	while (a->routing)
		route_free(a->routing);
	if (a->results)
		kafka_consumer_free(a->results);
	a->results = NULL;
	defcache_free(a->defs);
	a->defs = NULL;
}
