/* api: GET /healthz and the routing of /api/v1 (which endpoint, which
 * method, which role); the runs list with its paging, a run, a stage's log
 * and POST /api/v1/runs/{id}/cancel are answered here.
 *
 * Every answer is built from Redis; a request that needs several replies
 * keeps one call record and answers when the last reply is in.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/auth.h"
#include "agent/control.h"
#include "agent/http.h"
#include "agent/logstream.h"
#include "agent/promotion.h"
#include "agent/strategy.h"
#include "agent/validate.h"
#include "agent/web.h"
#include "lib/clock.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "lib/utf8.h"

#define RUNS_DEFAULT_LIMIT 50
#define RUNS_MAX_LIMIT	   500
#define RUNS_SCAN_MAX	   2000
/* Runs of one millisecond on the near side of a removed run that a page
 * past it reads over, at most. */
#define RUNS_SAME_MS_MAX  256
#define LOG_DEFAULT_LIMIT 1000
#define LOG_MAX_LIMIT	  10000

struct api_call {
	struct agent *agent;
	struct http_pending *pending;
	json_t *body;	 /* what is being assembled */
	json_t *items;	 /* runs list, or the run's stages object */
	int outstanding; /* replies still expected */
	int failed;
	int run_open; /* the run may still be offered to an environment */
	int code;     /* of a successful answer; 0 means 200 */
	char status_filter[32];
	char ref_filter[256];
	size_t limit;
	size_t want; /* run ids asked for: a page and one more, or a scan for filters */
	int paged;   /* runs list: a page past a run, before= or after= */
	int after;   /* the page newer than that run, scanned oldest first */
	/* That run, removed from the index since, and its creation time: the
	 * runs of its millisecond on its far side are left out. */
	char gone[40];
	long long gone_ms;
};

static struct api_call *call_new(struct agent *a, struct evhttp_request *req)
{
	struct api_call *c = calloc(1, sizeof(*c));
	if (!c) {
		http_reply_error(req, 500, "internal", "out of memory");
		return NULL;
	}
	c->agent = a;
	c->pending = http_pending_new(a, req);
	return c;
}

static void call_fail(struct api_call *c, const char *err)
{
	log_warn("api request failed", LOG_S("error", err));
	http_pending_error(c->pending, 503, "unavailable", "state store unavailable");
	json_decref(c->body);
	free(c);
}

static json_t *time_or_null(const char *ms)
{
	if (!ms || !*ms)
		return json_null();
	char buf[64];
	clock_format_rfc3339(strtoll(ms, NULL, 10), buf, sizeof(buf));
	return json_string(buf);
}

static json_t *int_or_null(const char *v)
{
	return v && *v ? json_integer(strtoll(v, NULL, 10)) : json_null();
}

/* A hash reply as name → value (strings borrowed from the reply). */
static const char *hash_get(const redisReply *h, const char *name)
{
	if (!h || h->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < h->elements; i += 2) {
		if (strcmp(h->element[i]->str, name) == 0)
			return h->element[i + 1]->str;
	}
	return NULL;
}

static json_t *run_summary(const char *id, const redisReply *h)
{
	static const char *plain[] = {"pipeline", "repository", "event", "ref", "sha", "status"};
	json_t *run = json_pack("{s:s}", "id", id);
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		const char *v = hash_get(h, plain[i]);
		json_object_set_new(run, plain[i], v ? json_string(v) : json_null());
	}
	json_object_set_new(run, "created", time_or_null(hash_get(h, "created")));
	json_object_set_new(run, "started", time_or_null(hash_get(h, "started")));
	json_object_set_new(run, "finished", time_or_null(hash_get(h, "finished")));
	return run;
}

/* The attempts that ended, oldest first, as finish.lua and reap.lua record
 * them (times in ms). */
static json_t *attempts_view(const char *text)
{
	json_t *list = text ? json_loads(text, 0, NULL) : NULL;
	json_t *out = json_array();
	size_t i;
	json_t *a;
	json_array_foreach(list, i, a)
	{
		static const char *const times[] = {"started", "finished"};
		json_t *view = json_object();
		json_t *status = json_object_get(a, "status"),
		       *worker = json_object_get(a, "worker");
		json_t *code = json_object_get(a, "exit_code"),
		       *signal = json_object_get(a, "signal");
		json_object_set_new(
		    view, "attempt",
		    json_integer((json_int_t)json_number_value(json_object_get(a, "attempt"))));
		json_object_set_new(view, "status",
				    json_is_string(status) ? json_copy(status) : json_null());
		json_object_set_new(view, "worker",
				    json_is_string(worker) ? json_copy(worker) : json_null());
		for (size_t t = 0; t < 2; t++) {
			json_t *ms = json_object_get(a, times[t]);
			char text_ms[32] = "";
			if (json_is_number(ms))
				snprintf(text_ms, sizeof(text_ms), "%.0f", json_number_value(ms));
			json_object_set_new(view, times[t], time_or_null(text_ms));
		}
		json_object_set_new(view, "exit_code",
				    json_is_number(code)
					? json_integer((json_int_t)json_number_value(code))
					: json_null());
		if (json_is_string(signal))
			json_object_set_new(view, "signal", json_copy(signal));
		json_array_append_new(out, view);
	}
	json_decref(list);
	return out;
}

static json_t *stage_view(const redisReply *h)
{
	const char *error = hash_get(h, "error");
	const char *signal = hash_get(h, "signal");
	json_t *s = json_pack("{s:s?,s:o,s:o,s:o,s:o}", "status", hash_get(h, "status"), "attempt",
			      int_or_null(hash_get(h, "attempt")), "exit_code",
			      int_or_null(hash_get(h, "exit_code")), "started",
			      time_or_null(hash_get(h, "started")), "finished",
			      time_or_null(hash_get(h, "finished")));
	if (signal)
		json_object_set_new(s, "signal", json_string(signal));
	if (error)
		json_object_set_new(s, "error", json_string(error));
	if (hash_get(h, "skip_reason"))
		json_object_set_new(s, "skip_reason", json_string(hash_get(h, "skip_reason")));
	if (hash_get(h, "retry_at"))
		json_object_set_new(s, "retry_at", time_or_null(hash_get(h, "retry_at")));
	json_object_set_new(s, "attempts", attempts_view(hash_get(h, "attempts")));
	/* What the stage wrote to $SLUICE_OUTPUT, and a deployment's rollout
	 * (stages/rollout.h), as the worker recorded them. */
	static const char *const recorded[] = {"outputs", "rollout"};
	for (size_t i = 0; i < sizeof(recorded) / sizeof(recorded[0]); i++) {
		json_t *v =
		    hash_get(h, recorded[i]) ? json_loads(hash_get(h, recorded[i]), 0, NULL) : NULL;
		if (v)
			json_object_set_new(s, recorded[i], v);
	}
	return s;
}

/* --- GET /api/v1/runs ---------------------------------------------------- */

struct run_item {
	struct api_call *call;
	size_t index;
	char id[128];
};

static int ref_matches(const char *want, const char *ref)
{
	if (!want[0])
		return 1;
	if (!ref)
		return 0;
	if (strcmp(ref, want) == 0)
		return 1;
	/* A bare name matches the branch or the tag of that name. */
	if (strncmp(want, "refs/", 5) == 0)
		return 0;
	return (strncmp(ref, "refs/heads/", 11) == 0 && strcmp(ref + 11, want) == 0) ||
	       (strncmp(ref, "refs/tags/", 10) == 0 && strcmp(ref + 10, want) == 0);
}

/* c->body holds the ids scanned from the cursor on (newest first; oldest
 * first for after=), c->items their runs (null for a run gone meanwhile).
 * The page further on starts past the last run listed, or past the last one
 * scanned when the filters kept fewer runs than the page holds and the scan
 * may have stopped short: that is next, or prev for after=. The page on the
 * cursor's side starts past the first run scanned, the one nearest it. */
static void list_maybe_done(struct api_call *c)
{
	if (--c->outstanding > 0)
		return;
	if (c->failed) {
		json_decref(c->items);
		call_fail(c, "a run could not be read");
		return;
	}
	json_t *runs = json_array();
	const char *last_listed = NULL, *last_scanned = NULL, *further = NULL;
	const char *nearest = c->paged ? json_string_value(json_array_get(c->body, 0)) : NULL;
	size_t n = json_array_size(c->items);
	for (size_t i = 0; i < n; i++) {
		const char *id = json_string_value(json_array_get(c->body, i));
		if (json_array_size(runs) == c->limit) {
			further = last_listed;
			break;
		}
		last_scanned = id;
		json_t *run = json_array_get(c->items, i);
		if (!json_is_object(run))
			continue;
		const char *status = json_string_value(json_object_get(run, "status"));
		const char *ref = json_string_value(json_object_get(run, "ref"));
		if (c->status_filter[0] && (!status || strcmp(status, c->status_filter) != 0))
			continue;
		if (!ref_matches(c->ref_filter, ref))
			continue;
		if (c->after)
			json_array_insert(runs, 0, run);
		else
			json_array_append(runs, run);
		last_listed = id;
	}
	if (!further && n == c->want)
		further = json_array_size(runs) == c->limit ? last_listed : last_scanned;
	const char *next = c->after ? nearest : further, *prev = c->after ? further : nearest;
	json_t *body = json_pack("{s:o,s:s?,s:s?}", "runs", runs, "next", next, "prev", prev);
	json_decref(c->items);
	json_decref(c->body);
	http_pending_reply(c->pending, 200, body);
	free(c);
}

static void on_list_item(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct run_item *it = arg;
	struct api_call *c = it->call;
	(void)r;
	(void)err;
	if (!reply)
		c->failed = 1;
	else if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0)
		json_array_set_new(c->items, it->index, run_summary(it->id, reply));
	free(it);
	list_maybe_done(c);
}

static long long run_id_ms(const char *id);

/* Whether a run id the index gave is on the near side of a run removed from
 * it: created in the same millisecond (its score) and ordered before it
 * there, as a sorted set orders members of one score. */
static int before_gone(const struct api_call *c, const char *id)
{
	if (!c->gone[0] || run_id_ms(id) != c->gone_ms)
		return 0;
	return c->after ? strcmp(id, c->gone) <= 0 : strcmp(id, c->gone) >= 0;
}

static void on_list_ids(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	c->items = json_array();
	c->body = json_array();
	c->outstanding = 1;
	for (size_t i = 0; i < reply->elements && json_array_size(c->items) < c->want; i++) {
		if (before_gone(c, reply->element[i]->str))
			continue;
		struct run_item *it = calloc(1, sizeof(*it));
		if (!it || strlen(reply->element[i]->str) >= sizeof(it->id)) {
			free(it);
			continue;
		}
		it->call = c;
		it->index = json_array_size(c->items);
		snprintf(it->id, sizeof(it->id), "%s", reply->element[i]->str);
		json_array_append_new(c->items, json_null());
		json_array_append_new(c->body, json_string(it->id));
		c->outstanding++;
		if (redis_command(r, on_list_item, it, "HGETALL %srun:%s",
				  c->agent->settings.key_prefix, it->id) < 0) {
			c->failed = 1;
			c->outstanding--;
			free(it);
		}
	}
	list_maybe_done(c);
}

/* The creation time (ms) a run id holds (intake_new_run_id: "r_", 12 hex
 * digits of it, 12 of randomness), or -1 when id is not of that form. */
static long long run_id_ms(const char *id)
{
	unsigned char b[12];
	/* Lowercase, as intake_new_run_id writes it. */
	if (strncmp(id, "r_", 2) != 0 || hex_decode(id + 2, b, sizeof(b)) < 0 ||
	    strpbrk(id + 2, "ABCDEF"))
		return -1;
	long long ms = 0;
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | b[i];
	return ms;
}

static void cursor_refused(struct api_call *c)
{
	http_pending_error(c->pending, 400, "bad_request",
			   c->after ? "after: no such run in this listing"
				    : "before: no such run in this listing");
	json_decref(c->body);
	free(c);
}

/* The cursor run is in no index of the listing (reply: its score in the
 * index of all runs, or NULL when that is the listing's). Still in that
 * one, it is another pipeline's: refused. Gone from both (agent.run_retention
 * removed it), the page goes on from its creation time, which its id holds. */
static void list_past_gone(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	const char *index = json_string_value(json_array_get(c->body, 0));
	const char *cursor = json_string_value(json_array_get(c->body, 1));
	if (reply && reply->type != REDIS_REPLY_NIL && reply->type != REDIS_REPLY_STRING) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	if (!reply && err) {
		call_fail(c, err);
		return;
	}
	long long ms = run_id_ms(cursor);
	if (ms < 0 || (reply && reply->type == REDIS_REPLY_STRING)) {
		cursor_refused(c);
		return;
	}
	snprintf(c->gone, sizeof(c->gone), "%s", cursor);
	c->gone_ms = ms;
	int rc = redis_command(r, on_list_ids, c, "Z%sRANGEBYSCORE %s %lld %s LIMIT 0 %lld",
			       c->after ? "" : "REV", index, ms, c->after ? "+inf" : "-inf",
			       (long long)(c->want + RUNS_SAME_MS_MAX));
	json_decref(c->body);
	c->body = NULL;
	if (rc < 0)
		call_fail(c, "command not sent");
}

/* The page past the run named by before= (older) or after= (newer): its
 * rank in the index first. c->body is [index, run]. */
static void on_list_rank(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	const char *index = json_string_value(json_array_get(c->body, 0));
	const char *cursor = json_string_value(json_array_get(c->body, 1));
	const char *rev = c->after ? "" : "REV";
	if (!reply || (reply->type != REDIS_REPLY_INTEGER && reply->type != REDIS_REPLY_NIL)) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	int rc;
	if (reply->type == REDIS_REPLY_NIL) {
		/* Not in this listing: a run of another pipeline is no cursor of
		 * it, one removed by agent.run_retention is (list_past_gone). */
		char all[128];
		snprintf(all, sizeof(all), "%sruns", c->agent->settings.key_prefix);
		if (strcmp(index, all) == 0) {
			list_past_gone(r, NULL, NULL, c);
			return;
		}
		if (redis_command(r, list_past_gone, c, "ZSCORE %s %s", all, cursor) < 0)
			call_fail(c, "command not sent");
		return;
	}
	long long from = reply->integer + 1;
	rc = redis_command(r, on_list_ids, c, "Z%sRANGE %s %lld %lld", rev, index, from,
			   from + (long long)c->want - 1);
	json_decref(c->body);
	c->body = NULL;
	if (rc < 0)
		call_fail(c, "command not sent");
}

/* The value of the query parameter name, NULL without one or with an empty
 * one: "pipeline=" filters nothing, as a form's field left blank sends it. */
static const char *query_value(const struct evkeyvalq *q, const char *name)
{
	const char *v = evhttp_find_header(q, name);
	return v && *v ? v : NULL;
}

/* The page size limit= asks for into *limit: def without one, max for a
 * larger one. Anything but a whole number from 1 is answered 400 (-1). */
static int query_limit(struct evhttp_request *req, struct evkeyvalq *q, size_t def, size_t max,
		       size_t *limit)
{
	const char *v = query_value(q, "limit");
	*limit = def;
	if (!v)
		return 0;
	/* Digits only, so that strtoull neither skips blanks nor takes a sign;
	 * one too large for it saturates, which is above max too. */
	unsigned long long n = strspn(v, "0123456789") == strlen(v) ? strtoull(v, NULL, 10) : 0;
	if (n == 0) {
		http_reply_error(req, 400, "bad_request", "limit must be a whole number from 1");
		return -1;
	}
	*limit = n > max ? max : (size_t)n;
	return 0;
}

/* The statuses a run can have (sluicectl runs --help): a filter on any other
 * would answer an empty list, as if no run matched. */
static int run_status_known(const char *status)
{
	static const char *const known[] = {"queued",	 "running",    "waiting",
					    "succeeded", "failed",     "cancelled",
					    "rejected",	 "superseded", "aborted"};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(status, known[i]) == 0)
			return 1;
	return 0;
}

static void list_runs(struct agent *a, struct evhttp_request *req, struct evkeyvalq *q)
{
	const char *pipeline = query_value(q, "pipeline");
	const char *status = query_value(q, "status");
	const char *ref = query_value(q, "ref");
	const char *before = query_value(q, "before");
	const char *after = query_value(q, "after");
	const char *cursor = before ? before : after;
	char index[512];
	size_t limit;
	if (query_limit(req, q, RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT, &limit) < 0)
		return;
	if ((pipeline && strlen(pipeline) > 200) || (status && strlen(status) > 31) ||
	    (ref && strlen(ref) > 255)) {
		http_reply_error(req, 400, "bad_request", "filter value too long");
		return;
	}
	if (before && after) {
		http_reply_error(req, 400, "bad_request",
				 "before and after: give one or the other");
		return;
	}
	if (cursor && !http_segment_ok(cursor, strlen(cursor))) {
		http_reply_error(req, 400, "bad_request",
				 before ? "before: expected a run id" : "after: expected a run id");
		return;
	}
	if (status && !run_status_known(status)) {
		http_reply_error(req, 400, "bad_request",
				 "status: expected queued, running, waiting, succeeded, failed, "
				 "cancelled, rejected, superseded or aborted");
		return;
	}
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->limit = limit;
	if (status)
		snprintf(c->status_filter, sizeof(c->status_filter), "%s", status);
	if (ref)
		snprintf(c->ref_filter, sizeof(c->ref_filter), "%s", ref);
	/* Filters are applied to the newest runs as they are read. */
	c->want = status || ref ? RUNS_SCAN_MAX : c->limit + 1;
	if (pipeline)
		snprintf(index, sizeof(index), "%spipeline:%s:runs", a->settings.key_prefix,
			 pipeline);
	else
		snprintf(index, sizeof(index), "%sruns", a->settings.key_prefix);
	int rc;
	if (cursor) {
		c->paged = 1;
		c->after = after != NULL;
		c->body = json_pack("[s,s]", index, cursor);
		rc = c->body ? redis_command(a->redis, on_list_rank, c, "Z%sRANK %s %s",
					     c->after ? "" : "REV", index, cursor)
			     : -1;
	} else {
		rc = redis_command(a->redis, on_list_ids, c, "ZREVRANGE %s 0 %d", index,
				   (int)c->want - 1);
	}
	if (rc < 0)
		call_fail(c, "command not sent");
}

/* --- GET /api/v1/runs/{id} ----------------------------------------------- */

struct stage_item {
	struct api_call *call;
	char name[128];
	json_t *def; /* the stage's definition: its kind, needs and env go in the view */
};

static void run_maybe_done(struct api_call *c)
{
	if (--c->outstanding > 0)
		return;
	if (c->failed) {
		call_fail(c, "a stage could not be read");
		return;
	}
	http_pending_reply(c->pending, c->code ? c->code : 200, c->body);
	free(c);
}

static void on_stage(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct stage_item *it = arg;
	struct api_call *c = it->call;
	(void)r;
	(void)err;
	if (!reply) {
		c->failed = 1;
	} else {
		json_t *view = stage_view(reply);
		static const char *const from_def[] = {"kind", "needs", "env"};
		for (size_t i = 0; i < sizeof(from_def) / sizeof(from_def[0]); i++) {
			json_t *v = json_object_get(it->def, from_def[i]);
			if (v)
				json_object_set(view, from_def[i], v);
		}
		json_object_set_new(c->items, it->name, view);
	}
	json_decref(it->def);
	free(it);
	run_maybe_done(c);
}

static int status_open(const char *status)
{
	return status && (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0 ||
			  strcmp(status, "waiting") == 0);
}

/* The run read again, together with its stages and
 * environments: the summary of that moment replaces the first one. */
static void on_run_again(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	(void)r;
	(void)err;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		c->failed = 1;
	} else if (reply->elements > 0) {
		json_t *run = run_summary(json_string_value(json_object_get(c->body, "id")), reply);
		json_object_update(c->body, run);
		json_decref(run);
		c->run_open = status_open(hash_get(reply, "status"));
	}
	run_maybe_done(c);
}

static void on_environments(json_t *environments, void *arg)
{
	struct api_call *c = arg;
	if (!environments)
		c->failed = 1;
	else
		json_object_set_new(c->body, "environments", environments);
	run_maybe_done(c);
}

static void on_run(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	if (reply->elements == 0) {
		http_pending_error(c->pending, 404, "not_found", "no such run");
		json_decref(c->body);
		free(c);
		return;
	}
	char id[128];
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(c->body, "id")));
	json_t *run = run_summary(id, reply);
	json_decref(c->body);
	c->body = run;
	c->items = json_object();
	json_object_set_new(run, "stages", c->items);

	json_t *def = json_loads(hash_get(reply, "def") ? hash_get(reply, "def") : "{}", 0, NULL);
	const char *name;
	json_t *stage;
	c->outstanding = 1;
	c->run_open = status_open(hash_get(reply, "status"));
	/* The definition says which hashes make the run's view; they are read
	 * together with the run again, all of one moment. */
	struct redis_hashes *t = redis_hashes_begin(r, c->agent->scripts.read_hashes);
	if (!t) {
		json_decref(def);
		call_fail(c, "command not sent");
		return;
	}
	c->outstanding++;
	if (redis_hashes_add(t, on_run_again, c, "%srun:%s", c->agent->settings.key_prefix, id) <
	    0) {
		c->failed = 1;
		c->outstanding--;
	}
	json_object_foreach(json_object_get(def, "stages"), name, stage)
	{
		struct stage_item *it = calloc(1, sizeof(*it));
		if (!it || strlen(name) >= sizeof(it->name)) {
			free(it);
			continue;
		}
		it->call = c;
		it->def = json_incref(stage);
		snprintf(it->name, sizeof(it->name), "%s", name);
		/* Keeps the definition's order whatever order the replies come in. */
		json_object_set_new(c->items, name, json_null());
		c->outstanding++;
		if (redis_hashes_add(t, on_stage, it, "%srun:%s:stage:%s",
				     c->agent->settings.key_prefix, id, name) < 0) {
			c->failed = 1;
			c->outstanding--;
			json_decref(it->def);
			free(it);
		}
	}
	if (json_object_size(json_object_get(def, "environments"))) {
		c->outstanding++;
		promotion_view(c->agent, t, id, def, &c->run_open, on_environments, c);
	}
	redis_hashes_read(t);
	json_decref(def);
	run_maybe_done(c);
}

static void show_run(struct agent *a, struct evhttp_request *req, const char *id)
{
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->body = json_pack("{s:s}", "id", id);
	if (redis_command(a->redis, on_run, c, "HGETALL %srun:%s", a->settings.key_prefix, id) < 0)
		call_fail(c, "command not sent");
}

void api_reply_run(struct agent *a, struct http_pending *pending, const char *id, int code)
{
	struct api_call *c = calloc(1, sizeof(*c));
	if (!c) {
		http_pending_error(pending, 500, "internal", "out of memory");
		return;
	}
	c->agent = a;
	c->pending = pending;
	c->code = code;
	c->body = json_pack("{s:s}", "id", id);
	if (redis_command(a->redis, on_run, c, "HGETALL %srun:%s", a->settings.key_prefix, id) < 0)
		call_fail(c, "command not sent");
}

/* --- POST /api/v1/runs/{id}/cancel --------------------------------------- */

static void on_cancelled(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	const char *id = json_string_value(json_object_get(c->body, "id"));
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		call_fail(c, err ? err : "unexpected reply from the cancel script");
		return;
	}
	const char *outcome = reply->element[0]->str;
	if (strcmp(outcome, "cancelled") == 0) {
		log_info("run cancelled", LOG_S("run", id),
			 LOG_S("running", reply->elements > 1 ? reply->element[1]->str : "?"));
		/* The abort of a parked rollout and the job of a run the freed
		 * environment passes to go out now, not at the next tick. */
		outbox_kick(c->agent->outbox);
		/* Answer with the run as it is now, as GET would. */
		c->code = 202;
		if (redis_command(r, on_run, c, "HGETALL %srun:%s", c->agent->settings.key_prefix,
				  id) < 0)
			call_fail(c, "command not sent");
		return;
	}
	if (strcmp(outcome, "finished") == 0 && reply->elements > 1) {
		char msg[128];
		snprintf(msg, sizeof(msg), "the run has already finished (%s)",
			 reply->element[1]->str);
		http_pending_error(c->pending, 409, "conflict", msg);
	} else {
		http_pending_error(c->pending, 404, "not_found", "no such run");
	}
	json_decref(c->body);
	free(c);
}

/* An environment the cancel frees passes on to the run waiting for it, which
 * a deny window closed now holds, as when a deployment ends: the windows of
 * the cancelled run's definition, which the script uses when the waiting
 * run's definition has the same (lib/promotion.lua, promo_release). */
static void on_cancel_def(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	struct agent *a = c->agent;
	if (!reply) {
		call_fail(c, err ? err : "no reply");
		return;
	}
	long long now_ms = (long long)clock_now_ms();
	char *opens =
	    promotion_openings_text(reply->type == REDIS_REPLY_STRING ? reply->str : NULL, now_ms);
	char now[32];
	snprintf(now, sizeof(now), "%lld", now_ms);
	const char *argv[] = {a->settings.key_prefix,
			      json_string_value(json_object_get(c->body, "id")), now,
			      opens ? opens : "{}"};
	int rc = redis_script_run(r, a->scripts.cancel, on_cancelled, c, 0, 4, argv, NULL);
	free(opens);
	if (rc < 0)
		call_fail(c, "script not sent");
}

static void cancel_run(struct agent *a, struct evhttp_request *req, const char *id)
{
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->body = json_pack("{s:s}", "id", id);
	if (redis_command(a->redis, on_cancel_def, c, "HGET %srun:%s def", a->settings.key_prefix,
			  id) < 0)
		call_fail(c, "command not sent");
}

/* --- GET /api/v1/runs/{id}/stages/{stage}/log ---------------------------- */

static void on_log(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	json_t *lines = json_array();
	for (size_t i = 0; i < reply->elements; i++) {
		redisReply *entry = reply->element[i];
		if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
			continue;
		const char *id = entry->element[0]->str;
		redisReply *f = entry->element[1];
		json_array_append_new(lines, logstream_line(id, hash_get(f, "t"), hash_get(f, "s"),
							    hash_get(f, "l")));
		json_object_set_new(c->body, "next", json_string(id));
	}
	json_object_set_new(c->body, "lines", lines);
	http_pending_reply(c->pending, 200, c->body);
	free(c);
}

static void on_log_stage(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	if (!reply || reply->type != REDIS_REPLY_INTEGER) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	if (reply->integer == 0) {
		http_pending_error(c->pending, 404, "not_found", "no such run or stage");
		json_decref(c->body);
		free(c);
		return;
	}
	const char *key = json_string_value(json_object_get(c->body, "key"));
	const char *after = json_string_value(json_object_get(c->body, "next"));
	char start[160];
	if (after && *after)
		snprintf(start, sizeof(start), "(%s", after);
	else
		snprintf(start, sizeof(start), "-");
	int rc = redis_command(r, on_log, c, "XRANGE %s %s + COUNT %d", key, start, (int)c->limit);
	json_object_del(c->body, "key");
	if (rc < 0)
		call_fail(c, "command not sent");
}

/* One number of a stream id: 1 to 20 digits, below 2^64 - 1 (an id after
 * the last possible one is no id Redis takes). */
static int stream_id_number(const char *s, size_t n)
{
	static const char top[] = "18446744073709551615";
	if (n == 0 || n > sizeof(top) - 1 || strspn(s, "0123456789") < n)
		return 0;
	return n < sizeof(top) - 1 || strncmp(s, top, n) < 0;
}

/* A log line's id as Redis gives it: MS or MS-SEQ. */
static int valid_stream_id(const char *s)
{
	const char *dash = strchr(s, '-');
	if (!dash)
		return stream_id_number(s, strlen(s));
	return stream_id_number(s, (size_t)(dash - s)) &&
	       stream_id_number(dash + 1, strlen(dash + 1));
}

static void show_log(struct agent *a, struct evhttp_request *req, const char *id, const char *stage,
		     struct evkeyvalq *q)
{
	const char *after = query_value(q, "after");
	size_t limit;
	if (query_limit(req, q, LOG_DEFAULT_LIMIT, LOG_MAX_LIMIT, &limit) < 0)
		return;
	if (after && !valid_stream_id(after)) {
		http_reply_error(req, 400, "bad_request", "after must be a log line id");
		return;
	}
	const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
	if (accept && strstr(accept, "text/event-stream")) {
		/* A reconnecting EventSource says where it was. */
		const char *last =
		    evhttp_find_header(evhttp_request_get_input_headers(req), "Last-Event-ID");
		if (last && *last && !valid_stream_id(last)) {
			http_reply_error(req, 400, "bad_request",
					 "Last-Event-ID must be a log line id");
			return;
		}
		logstream_start(a, req, id, stage, last && *last ? last : after);
		return;
	}
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->limit = limit;
	char key[512];
	snprintf(key, sizeof(key), "%slog:%s:%s", a->settings.key_prefix, id, stage);
	c->body = json_pack("{s:s,s:s}", "key", key, "next", after ? after : "");
	if (redis_command(a->redis, on_log_stage, c, "EXISTS %srun:%s:stage:%s",
			  a->settings.key_prefix, id, stage) < 0)
		call_fail(c, "command not sent");
}

/* --- routing ------------------------------------------------------------- */

/* The API's endpoints: what each answers to and the role a POST needs
 * (GETs need "read", or nothing with api.public_reads). A '*' is one path
 * segment. */
enum { ROUTE_GET = 1, ROUTE_POST = 2 };
enum route_action {
	R_RUNS,
	R_RUN,
	R_LOG,
	R_CANCEL,
	R_CONTROL,
	R_DECIDE,
	R_STRATEGY,
	R_PIPELINES,
	R_VALIDATE,
};
static const struct api_route {
	const char *pattern;
	int method;
	enum tokens_role role;
	enum route_action action;
} api_routes[] = {
    {"/api/v1/runs", ROUTE_GET, TOKENS_READ, R_RUNS},
    {"/api/v1/runs/*", ROUTE_GET, TOKENS_READ, R_RUN},
    {"/api/v1/runs/*/stages/*/log", ROUTE_GET, TOKENS_READ, R_LOG},
    {"/api/v1/runs/*/cancel", ROUTE_POST, TOKENS_ADMIN, R_CANCEL},
    {"/api/v1/runs/*/retry", ROUTE_POST, TOKENS_ADMIN, R_CONTROL},
    {"/api/v1/runs/*/stages/*/retry", ROUTE_POST, TOKENS_ADMIN, R_CONTROL},
    {"/api/v1/runs/*/environments/*/approve", ROUTE_POST, TOKENS_APPROVE, R_DECIDE},
    {"/api/v1/runs/*/environments/*/reject", ROUTE_POST, TOKENS_APPROVE, R_DECIDE},
    {"/api/v1/runs/*/environments/*/promote", ROUTE_POST, TOKENS_ADMIN, R_STRATEGY},
    {"/api/v1/runs/*/environments/*/abort", ROUTE_POST, TOKENS_ADMIN, R_STRATEGY},
    {"/api/v1/runs/*/environments/*/retry", ROUTE_POST, TOKENS_ADMIN, R_STRATEGY},
    {"/api/v1/runs/*/environments/*/rollback", ROUTE_POST, TOKENS_ADMIN, R_STRATEGY},
    {"/api/v1/pipelines", ROUTE_GET, TOKENS_READ, R_PIPELINES},
    /* Changes nothing: a read, although it has a body. */
    {"/api/v1/pipelines/validate", ROUTE_POST, TOKENS_READ, R_VALIDATE},
    {"/api/v1/pipelines/*", ROUTE_GET, TOKENS_READ, R_PIPELINES},
    {"/api/v1/pipelines/*/trigger", ROUTE_POST, TOKENS_ADMIN, R_CONTROL},
};

static int route_matches(const char *pattern, const char *path)
{
	while (*pattern && *path) {
		if (*pattern == '*') {
			size_t seg = strcspn(path, "/");
			if (seg == 0)
				return 0;
			path += seg;
			pattern++;
		} else if (*pattern++ != *path++) {
			return 0;
		}
	}
	return *pattern == '\0' && *path == '\0';
}

const char *api_route_pattern(const char *path)
{
	for (size_t i = 0; i < sizeof(api_routes) / sizeof(api_routes[0]); i++) {
		if (route_matches(api_routes[i].pattern, path))
			return api_routes[i].pattern;
	}
	return NULL;
}

/* The n-th segment (0-based) of path into out. */
static void path_segment(const char *path, int n, char *out, size_t outlen)
{
	const char *p = path + 1;
	for (int i = 0; i < n && p; i++) {
		p = strchr(p, '/');
		if (p)
			p++;
	}
	snprintf(out, outlen, "%.*s", p ? (int)strcspn(p, "/") : 0, p ? p : "");
}

static void route_get(struct agent *a, struct evhttp_request *req, const char *path,
		      enum route_action action, struct evkeyvalq *q)
{
	char id[128], stage[128];
	path_segment(path, 3, id, sizeof(id));
	path_segment(path, 5, stage, sizeof(stage));
	switch (action) {
	case R_RUNS:
		list_runs(a, req, q);
		return;
	case R_PIPELINES:
		if (!control_get(a, req, path))
			http_reply_error(req, 404, "not_found", "no such pipeline");
		return;
	case R_RUN:
	case R_LOG:
		if (!http_segment_ok(id, strlen(id))) {
			http_reply_error(req, 404, "not_found", "no such run");
		} else if (action == R_RUN) {
			show_run(a, req, id);
		} else if (!http_segment_ok(stage, strlen(stage))) {
			http_reply_error(req, 404, "not_found", "no such run or stage");
		} else {
			show_log(a, req, id, stage, q);
		}
		return;
	default:
		http_reply_error(req, 404, "not_found", "no such endpoint");
		return;
	}
}

static void route_post(struct agent *a, struct evhttp_request *req, const char *path,
		       enum route_action action, const char *caller, struct evkeyvalq *q)
{
	char id[128];
	path_segment(path, 3, id, sizeof(id));
	switch (action) {
	case R_VALIDATE: {
		const char *name = evhttp_find_header(q, "name");
		if (name && (!http_segment_ok(name, strlen(name)) || name[0] == '.')) {
			http_reply_error(req, 400, "bad_request",
					 "name: expected a file name such as app.yaml");
			return;
		}
		validate_post(a, req, name ? name : "pipeline.yaml");
		return;
	}
	case R_CANCEL:
		if (http_segment_ok(id, strlen(id)))
			cancel_run(a, req, id);
		else
			http_reply_error(req, 404, "not_found", "no such run");
		return;
	case R_DECIDE:
		if (!promotion_post(a, req, path, caller))
			http_reply_error(req, 404, "not_found", "no such run or environment");
		return;
	case R_STRATEGY:
		if (!strategy_post(a, req, path, caller))
			http_reply_error(req, 404, "not_found", "no such run or environment");
		return;
	case R_CONTROL:
		if (!control_post(a, req, path))
			http_reply_error(req, 404, "not_found", "no such run, stage or pipeline");
		return;
	default:
		http_reply_error(req, 404, "not_found", "no such endpoint");
		return;
	}
}

/* Everything under /api/: 404 for a path that is no endpoint, 405 (with
 * Allow) for a method it does not serve, then the token, then the call. */
static void api_route(struct agent *a, struct evhttp_request *req, const char *path,
		      struct evkeyvalq *q)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int method = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD ? ROUTE_GET
		     : cmd == EVHTTP_REQ_POST			     ? ROUTE_POST
								     : 0;
	const struct api_route *found = NULL;
	int allowed = 0;
	for (size_t i = 0; i < sizeof(api_routes) / sizeof(api_routes[0]); i++) {
		if (!route_matches(api_routes[i].pattern, path))
			continue;
		allowed |= api_routes[i].method;
		if (api_routes[i].method == method && !found)
			found = &api_routes[i];
	}
	if (!allowed) {
		http_reply_error(req, 404, "not_found", "no such endpoint");
		return;
	}
	if (!found) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
				  allowed == ROUTE_GET	  ? "GET, HEAD"
				  : allowed == ROUTE_POST ? "POST"
							  : "GET, HEAD, POST");
		http_reply_error(req, 405, "method_not_allowed",
				 allowed == ROUTE_POST	? "this endpoint takes POST"
				 : allowed == ROUTE_GET ? "this endpoint takes GET"
							: "this endpoint takes GET or POST");
		return;
	}
	if (method == ROUTE_POST && auth_cross_site(a, req)) {
		http_reply_error(req, 403, "forbidden",
				 "a request sent by a page of another site is refused");
		return;
	}
	enum tokens_role need = found->role;
	if (method == ROUTE_GET && a->settings.public_reads)
		need = TOKENS_NONE;
	const char *caller;
	if (auth_request(a, req, need, &caller) < 0)
		return;
	if (method == ROUTE_GET) {
		route_get(a, req, path, found->action, q);
		return;
	}
	if (found->role >= TOKENS_APPROVE)
		auth_audit(a, req, caller, path);
	route_post(a, req, path, found->action, caller, q);
}

/* A query parameter given twice ("limit=5&limit=x": which one counts?), an
 * escaped NUL, which would cut a value short ("pipeline=a%00b" is not
 * pipeline a), or a value that is not UTF-8 is answered 400 (1). */
static int query_refused(struct evhttp_request *req, const char *query, const struct evkeyvalq *q)
{
	const struct evkeyval *kv, *seen;
	char msg[160];

	if (strstr(query, "%00")) {
		http_reply_error(req, 400, "bad_request", "the query holds an escaped NUL byte");
		return 1;
	}
	TAILQ_FOREACH(kv, q, next)
	{
		if (!utf8_valid(kv->key, strlen(kv->key)) ||
		    !utf8_valid(kv->value, strlen(kv->value))) {
			http_reply_error(req, 400, "bad_request", "the query is not UTF-8");
			return 1;
		}
		for (seen = TAILQ_FIRST(q); seen != kv; seen = TAILQ_NEXT(seen, next)) {
			if (strcmp(seen->key, kv->key) == 0) {
				snprintf(msg, sizeof(msg), "%.100s: given more than once", kv->key);
				http_reply_error(req, 400, "bad_request", msg);
				return 1;
			}
		}
	}
	return 0;
}

void api_handle(struct evhttp_request *req, struct agent *a)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evhttp_uri *connect_uri = NULL;
	/* libevent reads a CONNECT's target as a host and port, with no path
	 * (and so matched it to no path's callback): it is read as a path here,
	 * for the answer any method a path does not take gets. */
	if (cmd == EVHTTP_REQ_CONNECT) {
		connect_uri = evhttp_uri_parse_with_flags(evhttp_request_get_uri(req),
							  EVHTTP_URI_NONCONFORMANT);
		uri = connect_uri;
	}
	const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	char *decoded = NULL;
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		http_reply_error(req, 400, "bad_request", "malformed query string");
		goto done;
	}
	if (query && query_refused(req, query, &q))
		goto done;
	/* Clients escape '@' ("deploy%40staging"); segments are checked after. */
	size_t len = 0;
	decoded = evhttp_uridecode(raw_path ? raw_path : "/", 0, &len);
	const char *path = decoded ? decoded : "/";

	/* Clients escape each segment: an escaped '/' in one would become a
	 * separator here, and another endpoint would be answered
	 * ("r_1%2Fstages%2Fbuild/retry" is no run's retry). */
	if (raw_path && strcasestr(raw_path, "%2f")) {
		http_reply_error(req, 400, "bad_request", "the path holds an escaped '/' (%2F)");
		goto done;
	}
	/* An escaped NUL would end the path there: a shorter path, another run
	 * or endpoint, would be answered. A byte that is not UTF-8 would make
	 * the api.call event that quotes the path no JSON. */
	if (decoded && strlen(decoded) != len) {
		http_reply_error(req, 400, "bad_request", "the path holds an escaped NUL byte");
		goto done;
	}
	if (decoded && !utf8_valid(decoded, len)) {
		http_reply_error(req, 400, "bad_request", "the path is not UTF-8");
		goto done;
	}
	if (strncmp(path, "/api/", 5) == 0) {
		api_route(a, req, path, &q);
		goto done;
	}
	/* The webhook's own callback never sees a CONNECT (above). */
	if (cmd == EVHTTP_REQ_CONNECT && strcmp(path, "/hooks/github") == 0) {
		intake_handle(req, a);
		goto done;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		if (strcmp(path, "/metrics") != 0 && strcmp(path, "/healthz") != 0 &&
		    !web_path(path)) {
			http_reply_error(req, 404, "not_found", "no such endpoint");
			goto done;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		http_reply_error(req, 405, "method_not_allowed", "only GET is served here");
		goto done;
	}
	if (strcmp(path, "/metrics") == 0) {
		agent_metrics_serve(a, req);
		goto done;
	}
	if (strcmp(path, "/healthz") == 0) {
		int up = redis_connected(a->redis);
		http_reply_json(req, up ? 200 : 503,
				json_pack("{s:s,s:s}", "status", up ? "ok" : "degraded", "redis",
					  up ? "up" : "down"));
		goto done;
	}
	if (web_get(req, path))
		goto done;
	http_reply_error(req, 404, "not_found", "no such endpoint");
done:
	free(decoded);
	evhttp_clear_headers(&q);
	if (connect_uri)
		evhttp_uri_free(connect_uri);
}
