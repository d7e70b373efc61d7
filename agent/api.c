/* api: GET /healthz, the read side of /api/v1 (runs, a run, a stage log)
 * and POST /api/v1/runs/{id}/cancel.
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
#include "agent/control.h"
#include "agent/http.h"
#include "agent/promotion.h"
#include "lib/clock.h"
#include "lib/log.h"

#define RUNS_DEFAULT_LIMIT 50
#define RUNS_MAX_LIMIT	   500
#define RUNS_SCAN_MAX	   2000
#define LOG_DEFAULT_LIMIT  1000
#define LOG_MAX_LIMIT	   10000

struct api_call {
	struct agent *agent;
	struct http_pending *pending;
	json_t *body;	 /* what is being assembled */
	json_t *items;	 /* runs list, or the run's stages object */
	int outstanding; /* replies still expected */
	int failed;
	int code; /* of a successful answer; 0 means 200 */
	char status_filter[32];
	size_t limit;
};

static struct api_call *call_new(struct agent *a, struct evhttp_request *req)
{
	struct api_call *c = calloc(1, sizeof(*c));
	if (!c) {
		http_reply_error(req, 500, "internal", "out of memory");
		return NULL;
	}
	c->agent = a;
	c->pending = http_pending_new(req);
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
	return s;
}

/* --- GET /api/v1/runs ---------------------------------------------------- */

struct run_item {
	struct api_call *call;
	size_t index;
	char id[128];
};

static void list_maybe_done(struct api_call *c)
{
	if (--c->outstanding > 0)
		return;
	if (c->failed) {
		call_fail(c, "a run could not be read");
		return;
	}
	json_t *runs = json_array();
	size_t i;
	json_t *run;
	json_array_foreach(c->items, i, run)
	{
		if (!json_is_object(run))
			continue;
		const char *status = json_string_value(json_object_get(run, "status"));
		if (c->status_filter[0] && (!status || strcmp(status, c->status_filter) != 0))
			continue;
		if (json_array_size(runs) < c->limit)
			json_array_append(runs, run);
	}
	json_decref(c->items);
	http_pending_reply(c->pending, 200, json_pack("{s:o}", "runs", runs));
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

static void on_list_ids(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct api_call *c = arg;
	if (!reply || reply->type != REDIS_REPLY_ARRAY) {
		call_fail(c, err ? err : "unexpected reply");
		return;
	}
	c->items = json_array();
	c->outstanding = 1;
	for (size_t i = 0; i < reply->elements; i++) {
		struct run_item *it = calloc(1, sizeof(*it));
		if (!it || strlen(reply->element[i]->str) >= sizeof(it->id)) {
			free(it);
			continue;
		}
		it->call = c;
		it->index = json_array_size(c->items);
		snprintf(it->id, sizeof(it->id), "%s", reply->element[i]->str);
		json_array_append_new(c->items, json_null());
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

static size_t query_limit(struct evkeyvalq *q, size_t def, size_t max)
{
	const char *v = evhttp_find_header(q, "limit");
	if (!v)
		return def;
	long long n = strtoll(v, NULL, 10);
	if (n <= 0)
		return def;
	return (size_t)n > max ? max : (size_t)n;
}

static void list_runs(struct agent *a, struct evhttp_request *req, struct evkeyvalq *q)
{
	const char *pipeline = evhttp_find_header(q, "pipeline");
	const char *status = evhttp_find_header(q, "status");
	if ((pipeline && strlen(pipeline) > 200) || (status && strlen(status) > 31)) {
		http_reply_error(req, 400, "bad_request", "filter value too long");
		return;
	}
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->limit = query_limit(q, RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT);
	if (status)
		snprintf(c->status_filter, sizeof(c->status_filter), "%s", status);
	/* A status filter is applied to the newest runs as they are read. */
	size_t scan = status ? RUNS_SCAN_MAX : c->limit;
	int rc;
	if (pipeline)
		rc = redis_command(a->redis, on_list_ids, c, "ZREVRANGE %spipeline:%s:runs 0 %d",
				   a->settings.key_prefix, pipeline, (int)scan - 1);
	else
		rc = redis_command(a->redis, on_list_ids, c, "ZREVRANGE %sruns 0 %d",
				   a->settings.key_prefix, (int)scan - 1);
	if (rc < 0)
		call_fail(c, "command not sent");
}

/* --- GET /api/v1/runs/{id} ----------------------------------------------- */

struct stage_item {
	struct api_call *call;
	char name[128];
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
	if (!reply)
		c->failed = 1;
	else
		json_object_set_new(c->items, it->name, stage_view(reply));
	free(it);
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
	json_object_foreach(json_object_get(def, "stages"), name, stage)
	{
		struct stage_item *it = calloc(1, sizeof(*it));
		if (!it || strlen(name) >= sizeof(it->name)) {
			free(it);
			continue;
		}
		it->call = c;
		snprintf(it->name, sizeof(it->name), "%s", name);
		/* Keeps the definition's order whatever order the replies come in. */
		json_object_set_new(c->items, name, json_null());
		c->outstanding++;
		if (redis_command(r, on_stage, it, "HGETALL %srun:%s:stage:%s",
				  c->agent->settings.key_prefix, id, name) < 0) {
			c->failed = 1;
			c->outstanding--;
			free(it);
		}
	}
	if (json_object_size(json_object_get(def, "environments"))) {
		const char *status = hash_get(reply, "status");
		int open =
		    status && (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0 ||
			       strcmp(status, "waiting") == 0);
		c->outstanding++;
		promotion_view(c->agent, id, def, open, on_environments, c);
	}
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

static void cancel_run(struct agent *a, struct evhttp_request *req, const char *id)
{
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->body = json_pack("{s:s}", "id", id);
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *argv[] = {a->settings.key_prefix, id, now};
	if (redis_script_run(a->redis, a->scripts.cancel, on_cancelled, c, 0, 3, argv, NULL) < 0)
		call_fail(c, "script not sent");
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
		const char *t = hash_get(f, "t"), *st = hash_get(f, "s"), *l = hash_get(f, "l");
		json_t *time = time_or_null(t);
		json_array_append_new(lines,
				      json_pack("{s:s,s:o,s:s,s:s}", "id", id, "time", time,
						"stream", st ? st : "stdout", "line", l ? l : ""));
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

static int valid_stream_id(const char *s)
{
	return strlen(s) < 64 && strspn(s, "0123456789-") == strlen(s);
}

static void show_log(struct agent *a, struct evhttp_request *req, const char *id, const char *stage,
		     struct evkeyvalq *q)
{
	const char *after = evhttp_find_header(q, "after");
	if (after && *after && !valid_stream_id(after)) {
		http_reply_error(req, 400, "bad_request", "after must be a log line id");
		return;
	}
	struct api_call *c = call_new(a, req);
	if (!c)
		return;
	c->limit = query_limit(q, LOG_DEFAULT_LIMIT, LOG_MAX_LIMIT);
	char key[512];
	snprintf(key, sizeof(key), "%slog:%s:%s", a->settings.key_prefix, id, stage);
	c->body = json_pack("{s:s,s:s}", "key", key, "next", after ? after : "");
	if (redis_command(a->redis, on_log_stage, c, "EXISTS %srun:%s:stage:%s",
			  a->settings.key_prefix, id, stage) < 0)
		call_fail(c, "command not sent");
}

/* --- routing ------------------------------------------------------------- */

/* Path segments of ids and stage names: what config and intake allow ('@'
 * in the stage of an environment's deployment, "deploy@staging"). */
static int valid_segment(const char *s, size_t len)
{
	if (len == 0 || len >= 128)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' || ch == '@'))
			return 0;
	}
	return 1;
}

void api_handle(struct evhttp_request *req, struct agent *a)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *raw_path = evhttp_uri_get_path(uri);
	const char *query = evhttp_uri_get_query(uri);
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		http_reply_error(req, 400, "bad_request", "malformed query string");
		return;
	}
	/* Clients escape '@' ("deploy%40staging"); segments are checked after. */
	char *decoded = evhttp_uridecode(raw_path ? raw_path : "/", 0, NULL);
	const char *path = decoded ? decoded : "/";

	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		if (control_post(a, req, path) || promotion_post(a, req, path))
			goto done;
		static const char runs[] = "/api/v1/runs/", cancel[] = "/cancel";
		int under_runs = strncmp(path, runs, sizeof(runs) - 1) == 0;
		const char *id = under_runs ? path + sizeof(runs) - 1 : path;
		size_t id_len = under_runs ? strcspn(id, "/") : 0;
		char id_buf[128];
		if (id_len && valid_segment(id, id_len) && strcmp(id + id_len, cancel) == 0) {
			snprintf(id_buf, sizeof(id_buf), "%.*s", (int)id_len, id);
			cancel_run(a, req, id_buf);
		} else {
			http_reply_error(req, 405, "method_not_allowed",
					 "POST is served on /api/v1/runs/{id}/cancel only");
		}
		goto done;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
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
	if (strcmp(path, "/api/v1/runs") == 0) {
		list_runs(a, req, &q);
		goto done;
	}
	if (control_get(a, req, path))
		goto done;
	static const char prefix[] = "/api/v1/runs/";
	if (strncmp(path, prefix, sizeof(prefix) - 1) == 0) {
		const char *id = path + sizeof(prefix) - 1;
		size_t id_len = strcspn(id, "/");
		char id_buf[128], stage_buf[128];
		if (!valid_segment(id, id_len)) {
			http_reply_error(req, 404, "not_found", "no such run");
			goto done;
		}
		snprintf(id_buf, sizeof(id_buf), "%.*s", (int)id_len, id);
		const char *rest = id + id_len;
		if (*rest == '\0') {
			show_run(a, req, id_buf);
			goto done;
		}
		static const char stages[] = "/stages/";
		if (strncmp(rest, stages, sizeof(stages) - 1) == 0) {
			const char *stage = rest + sizeof(stages) - 1;
			size_t stage_len = strcspn(stage, "/");
			if (valid_segment(stage, stage_len) &&
			    strcmp(stage + stage_len, "/log") == 0) {
				snprintf(stage_buf, sizeof(stage_buf), "%.*s", (int)stage_len,
					 stage);
				show_log(a, req, id_buf, stage_buf, &q);
				goto done;
			}
		}
	}
	http_reply_error(req, 404, "not_found", "no such endpoint");
done:
	free(decoded);
	evhttp_clear_headers(&q);
}
