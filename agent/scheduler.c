/* scheduler: the work that falls due at a time rather than on a message.
 *
 * Every agent.scheduler_interval the agent
 *   - reaps the stages whose lease expired (their worker died): reap.lua
 *     records the attempt as lost and queues attempt + 1, or fails the stage
 *     once it had max_attempts;
 *   - publishes again the jobs of stages still queued and unclaimed after
 *     agent.requeue_after, with the same attempt (requeue.lua);
 *   - releases the due entries of the delayed set (release.lua);
 *   - while a pruning pass is under way, removes a batch of the runs that
 *     ended more than agent.run_retention ago (prune.lua). A pass starts
 *     every PRUNE_EVERY_MS, or every tenth of the retention when that is
 *     shorter, and goes on, a batch a tick, until it has looked at every
 *     run created before the cutoff.
 * Several agents may do this at once: each script checks the state it
 * changes, so an attempt is reaped, a job re-published, an entry released
 * and a run removed only once. A pass starts only when the previous one is
 * over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "config/retry.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "queue/envelope.h"
#include "queue/jobs.h"

#define BATCH	       100
#define BATCH_TEXT     "100"
#define NAME_MAX_SIZE  128
#define PRUNE_EVERY_MS 60000
/* A batch of a pruning pass: about 130 µs of Redis's time a run (a
 * definition of 4 KiB decoded, a dozen keys unlinked), so a few ms a tick
 * rather than a stall webhooks would feel. */
#define PRUNE_BATCH	 20
#define PRUNE_BATCH_TEXT "20"

struct scheduler {
	struct agent *agent;
	struct event *timer;
	int outstanding; /* replies still expected in this pass */
	/* Pruning: whether a pass is under way, the runs it kept so far (the
	 * oldest ones, passed over by the next batch), the runs it removed,
	 * and when the next pass starts (monotonic). */
	int pruning;
	long long prune_kept, prune_removed;
	int64_t next_prune_ms;
};

enum item_kind { ITEM_REAP, ITEM_REQUEUE };

/* One member of the leases or queued set, "<run>/<stage>". */
struct item {
	struct scheduler *s;
	enum item_kind kind;
	char run[NAME_MAX_SIZE];
	char stage[NAME_MAX_SIZE];
	int attempt; /* 0: the stage has none */
};

static const char *set_name(enum item_kind kind)
{
	return kind == ITEM_REAP ? "leases" : "queued";
}

static void pass_step_done(struct scheduler *s)
{
	s->outstanding--;
}

static void item_done(struct item *it)
{
	pass_step_done(it->s);
	free(it);
}

static void on_script(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct item *it = arg;
	struct agent *a = it->s->agent;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_STRING) {
		log_warn("scheduler script failed", LOG_S("run", it->run),
			 LOG_S("stage", it->stage), LOG_S("error", err ? err : "unexpected reply"));
		item_done(it);
		return;
	}
	const char *outcome = reply->str;
	if (strcmp(outcome, "requeued") == 0 && it->kind == ITEM_REAP) {
		log_warn("stage lost: queued again", LOG_S("run", it->run),
			 LOG_S("stage", it->stage), LOG_I("lost_attempt", it->attempt));
	} else if (strcmp(outcome, "failed") == 0) {
		log_warn("stage lost too often: failed", LOG_S("run", it->run),
			 LOG_S("stage", it->stage), LOG_I("attempt", it->attempt));
	} else if (strcmp(outcome, "requeued") == 0) {
		log_info("unclaimed job published again", LOG_S("run", it->run),
			 LOG_S("stage", it->stage), LOG_I("attempt", it->attempt));
	} else {
		log_debug("scheduler: nothing to do", LOG_S("run", it->run),
			  LOG_S("stage", it->stage), LOG_S("set", set_name(it->kind)),
			  LOG_S("outcome", outcome));
	}
	/* A cancelled deployment's result frees its environment (reap.lua). */
	if (strcmp(outcome, "requeued") == 0 || strcmp(outcome, "failed") == 0 ||
	    strcmp(outcome, "cancelled") == 0)
		outbox_kick(a->outbox);
	item_done(it);
}

static char *stage_result(const struct item *it)
{
	char subject[512];
	snprintf(subject, sizeof(subject), "runs/%s/stages/%s/attempts/%d", it->run, it->stage,
		 it->attempt);
	json_t *data = json_pack("{s:s,s:s,s:i,s:s}", "run", it->run, "stage", it->stage, "attempt",
				 it->attempt, "status", "lost");
	char *value =
	    data ? envelope_encode("sluice-agent", "dev.sluice.stage.finished", subject, data)
		 : NULL;
	json_decref(data);
	return value;
}

static int run_reap(struct item *it, const char *kind, int max_attempts, const char *now)
{
	struct agent *a = it->s->agent;
	char attempt[16], max[16], dlq[256], results[256];
	snprintf(attempt, sizeof(attempt), "%d", it->attempt);
	snprintf(max, sizeof(max), "%d", max_attempts);
	snprintf(dlq, sizeof(dlq), "%sdlq", a->settings.topic_prefix);
	snprintf(results, sizeof(results), "%sresults", a->settings.topic_prefix);
	json_t *next = jobs_prepare(&a->settings, it->run, it->stage, kind, it->attempt + 1);
	json_t *this = jobs_prepare(&a->settings, it->run, it->stage, kind, it->attempt);
	char *result = stage_result(it);
	int rc = -1;
	if (next && this && result) {
		const char *argv[] = {a->settings.key_prefix,
				      it->run,
				      it->stage,
				      attempt,
				      now,
				      max,
				      json_string_value(json_object_get(next, "topic")),
				      json_string_value(json_object_get(next, "value")),
				      dlq,
				      json_string_value(json_object_get(this, "value")),
				      results,
				      result};
		rc = redis_script_run(a->redis, a->scripts.reap, on_script, it, 0, 12, argv, NULL);
	}
	json_decref(next);
	json_decref(this);
	free(result);
	return rc;
}

static int run_requeue(struct item *it, const char *kind, const char *now)
{
	struct agent *a = it->s->agent;
	char attempt[16], after[16];
	snprintf(attempt, sizeof(attempt), "%d", it->attempt);
	snprintf(after, sizeof(after), "%d", a->settings.requeue_after_ms);
	json_t *job = jobs_prepare(&a->settings, it->run, it->stage, kind, it->attempt);
	if (!job)
		return -1;
	const char *argv[] = {a->settings.key_prefix,
			      it->run,
			      it->stage,
			      attempt,
			      now,
			      after,
			      json_string_value(json_object_get(job, "topic")),
			      json_string_value(json_object_get(job, "value"))};
	int rc = redis_script_run(a->redis, a->scripts.requeue, on_script, it, 0, 8, argv, NULL);
	json_decref(job);
	return rc;
}

/* A member whose run or stage no longer exists: nothing will ever clear it. */
static void drop_member(struct item *it)
{
	struct agent *a = it->s->agent;
	log_info("scheduler: dropping a member of a vanished run", LOG_S("run", it->run),
		 LOG_S("stage", it->stage), LOG_S("set", set_name(it->kind)));
	redis_command(a->redis, NULL, NULL, "ZREM %s%s %s/%s", a->settings.key_prefix,
		      set_name(it->kind), it->run, it->stage);
}

static void on_definition(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct item *it = arg;
	(void)r;
	if (!reply) {
		log_warn("scheduler cannot read a run", LOG_S("run", it->run),
			 LOG_S("error", err ? err : "?"));
		item_done(it);
		return;
	}
	json_t *def = reply->type == REDIS_REPLY_STRING ? json_loads(reply->str, 0, NULL) : NULL;
	const json_t *stage = json_object_get(json_object_get(def, "stages"), it->stage);
	const char *kind = json_string_value(json_object_get(stage, "kind"));
	if (!kind || it->attempt <= 0) {
		drop_member(it);
		json_decref(def);
		item_done(it);
		return;
	}
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	int rc = it->kind == ITEM_REAP ? run_reap(it, kind, retry_max_attempts(stage), now)
				       : run_requeue(it, kind, now);
	json_decref(def);
	if (rc < 0) {
		log_warn("scheduler script not sent", LOG_S("run", it->run),
			 LOG_S("stage", it->stage));
		item_done(it);
	}
}

static void on_attempt(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct item *it = arg;
	struct agent *a = it->s->agent;
	if (!reply) {
		on_definition(r, NULL, err, it);
		return;
	}
	if (reply->type == REDIS_REPLY_STRING)
		it->attempt = atoi(reply->str);
	if (redis_command(r, on_definition, it, "HGET %srun:%s def", a->settings.key_prefix,
			  it->run) < 0)
		on_definition(r, NULL, "command not sent", it);
}

static void start_item(struct scheduler *s, enum item_kind kind, const char *member)
{
	struct agent *a = s->agent;
	const char *slash = strchr(member, '/');
	size_t run_len = slash ? (size_t)(slash - member) : 0;
	if (!slash || run_len == 0 || run_len >= NAME_MAX_SIZE || !slash[1] ||
	    strlen(slash + 1) >= NAME_MAX_SIZE) {
		log_warn("scheduler: malformed member", LOG_S("set", set_name(kind)),
			 LOG_S("member", member));
		redis_command(a->redis, NULL, NULL, "ZREM %s%s %s", a->settings.key_prefix,
			      set_name(kind), member);
		return;
	}
	struct item *it = calloc(1, sizeof(*it));
	if (!it)
		return;
	it->s = s;
	it->kind = kind;
	memcpy(it->run, member, run_len);
	snprintf(it->stage, sizeof(it->stage), "%s", slash + 1);
	if (redis_command(a->redis, on_attempt, it, "HGET %srun:%s:stage:%s attempt",
			  a->settings.key_prefix, it->run, it->stage) < 0) {
		free(it);
		return;
	}
	s->outstanding++;
}

static void on_due(struct redis *r, redisReply *reply, const char *err, void *arg,
		   enum item_kind kind)
{
	struct scheduler *s = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		log_warn("scheduler cannot read a set", LOG_S("set", set_name(kind)),
			 LOG_S("error", err ? err : "unexpected reply"));
	} else {
		for (size_t i = 0; i < reply->elements; i++)
			if (reply->element[i]->type == REDIS_REPLY_STRING)
				start_item(s, kind, reply->element[i]->str);
	}
	pass_step_done(s);
}

static void on_expired_leases(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	on_due(r, reply, err, arg, ITEM_REAP);
}

static void on_unclaimed(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	on_due(r, reply, err, arg, ITEM_REQUEUE);
}

static void on_released(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct scheduler *s = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_INTEGER)
		log_warn("delayed entries not released", LOG_S("error", err ? err : "?"));
	else if (reply->integer > 0) {
		log_info("delayed entries released", LOG_I("count", reply->integer));
		outbox_kick(s->agent->outbox);
	}
	pass_step_done(s);
}

static void on_pruned(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct scheduler *s = arg;
	(void)r;
	long long counts[3];
	int ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3;
	for (size_t i = 0; ok && i < 3; i++) {
		ok = reply->element[i]->type == REDIS_REPLY_INTEGER;
		counts[i] = ok ? reply->element[i]->integer : 0;
	}
	if (!ok) {
		/* The pass starts again next time. */
		log_warn("old runs not removed", LOG_S("error", err ? err : "unexpected reply"));
		s->pruning = 0;
	} else {
		s->prune_removed += counts[0];
		agent_metrics_runs_removed(s->agent, counts[0]);
		s->prune_kept += counts[1];
		if (counts[2] < PRUNE_BATCH) {
			if (s->prune_removed > 0)
				log_info(
				    "old runs removed", LOG_I("count", s->prune_removed),
				    LOG_I("kept", s->prune_kept),
				    LOG_I("retention_ms", s->agent->settings.run_retention_ms));
			s->pruning = 0;
		}
	}
	pass_step_done(s);
}

/* A batch of the current pruning pass, starting one when it is time. */
static void prune(struct scheduler *s, long long now)
{
	struct agent *a = s->agent;
	long long retention = a->settings.run_retention_ms;
	int64_t mono = clock_mono_ms();
	if (retention <= 0 || (!s->pruning && mono < s->next_prune_ms))
		return;
	if (!s->pruning) {
		s->pruning = 1;
		s->prune_kept = s->prune_removed = 0;
		s->next_prune_ms =
		    mono + (retention / 10 < PRUNE_EVERY_MS ? retention / 10 : PRUNE_EVERY_MS);
	}
	char cutoff[32], skip[32];
	snprintf(cutoff, sizeof(cutoff), "%lld", now - retention);
	snprintf(skip, sizeof(skip), "%lld", s->prune_kept);
	const char *argv[] = {a->settings.key_prefix, cutoff, skip, PRUNE_BATCH_TEXT};
	if (redis_script_run(a->redis, a->scripts.prune, on_pruned, s, 0, 4, argv, NULL) == 0)
		s->outstanding++;
	else
		s->pruning = 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	struct agent *a = s->agent;
	(void)fd;
	(void)what;
	if (s->outstanding > 0 || a->stopping || !redis_connected(a->redis))
		return;
	const char *P = a->settings.key_prefix;
	long long now = (long long)clock_now_ms();
	char now_text[32];
	snprintf(now_text, sizeof(now_text), "%lld", now);
	if (redis_command(a->redis, on_expired_leases, s,
			  "ZRANGEBYSCORE %sleases -inf %lld LIMIT 0 %d", P, now, BATCH) == 0)
		s->outstanding++;
	if (redis_command(a->redis, on_unclaimed, s, "ZRANGEBYSCORE %squeued -inf %lld LIMIT 0 %d",
			  P, now - a->settings.requeue_after_ms, BATCH) == 0)
		s->outstanding++;
	const char *argv[] = {P, now_text, BATCH_TEXT};
	if (redis_script_run(a->redis, a->scripts.release, on_released, s, 0, 3, argv, NULL) == 0)
		s->outstanding++;
	prune(s, now);
}

int scheduler_start(struct agent *a)
{
	struct scheduler *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->agent = a;
	s->timer = event_new(a->base, -1, EV_PERSIST, on_tick, s);
	int ms = a->settings.scheduler_ms > 0 ? a->settings.scheduler_ms : 1;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (!s->timer || evtimer_add(s->timer, &tv) < 0) {
		if (s->timer)
			event_free(s->timer);
		free(s);
		return -1;
	}
	a->scheduler = s;
	return 0;
}

void scheduler_free(struct agent *a)
{
	struct scheduler *s = a->scheduler;
	if (!s)
		return;
	event_free(s->timer);
	free(s);
	a->scheduler = NULL;
}
