/* agent_metrics: the agent's series, and timing of its HTTP requests.
 *
 * libevent gives a request no place for our data, and frees a request whose
 * client went away without calling its completion callback. So a request's
 * start is kept in a fixed ring of slots owned here: the completion callback
 * finds its slot by the request pointer it was given, and a slot whose
 * request vanished is simply taken over later. Nothing is allocated per
 * request and nothing can dangle.
 */
#include "agent/agent_metrics.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/connection.h"
#include "agent/http.h"
#include "agent/web.h"
#include "config/check.h"
#include "lib/httpsend.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define REQUEST_SLOTS 256
#define REFRESH_MS    5000

struct request_slot {
	struct agent_metrics *am;
	const struct evhttp_request *req; /* NULL: free */
	struct timespec start;
	char route[96];
};

struct agent_metrics {
	struct agent *agent;
	struct metrics *registry;
	struct metric *webhooks, *runs_created, *runs_finished, *http_duration;
	struct metric *outbox_depth, *events_depth, *dead_letters, *delayed_depth, *consumer_lag,
	    *refresh_errors, *accept_pauses, *connections, *connection_limits, *runs_removed,
	    *connections_evicted, *connections_shed, *request_bytes;
	struct event *refresh;
	struct request_slot slots[REQUEST_SLOTS];
	size_t next_slot;
};

/* Events GitHub documents for webhooks; anything else is "other". */
static const char *const github_events[] = {
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "installation",
    "installation_repositories",
    "issue_comment",
    "issues",
    "label",
    "member",
    "merge_group",
    "meta",
    "milestone",
    "package",
    "page_build",
    "ping",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_dispatch",
    "secret_scanning_alert",
    "security_advisory",
    "star",
    "status",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
    NULL,
};

static int listed(const char *const *list, const char *s, size_t len)
{
	for (; *list; list++) {
		if (strlen(*list) == len && strncmp(*list, s, len) == 0)
			return 1;
	}
	return 0;
}

/* The endpoints as labels: each API endpoint's pattern with "{id}" for its
 * '*' segments, the dashboard's paths, and these; any other path is
 * "other", so that no client can add series of its own. */
static const char *const fixed_routes[] = {"/",	       "/hooks/github", "/metrics",
					   "/healthz", "/favicon.ico",	NULL};

void agent_metrics_route(const char *path, char *out, size_t len)
{
	static const char runs[] = "/runs/", assets[] = "/assets/";
	if (!path)
		goto other;
	for (const char *const *f = fixed_routes; *f; f++) {
		if (strcmp(path, *f) == 0) {
			snprintf(out, len, "%s", *f);
			return;
		}
	}
	const char *pattern = api_route_pattern(path);
	if (pattern) {
		size_t n = 0;
		for (const char *p = pattern; *p && n + 1 < len; p++) {
			int w = *p == '*' ? snprintf(out + n, len - n, "{id}")
					  : snprintf(out + n, len - n, "%c", *p);
			if (w < 0 || (size_t)w >= len - n)
				goto other;
			n += (size_t)w;
		}
		return;
	}
	if (web_path(path) && strncmp(path, runs, sizeof(runs) - 1) == 0) {
		snprintf(out, len, "/runs/{id}");
		return;
	}
	if (web_path(path) && strncmp(path, assets, sizeof(assets) - 1) == 0) {
		snprintf(out, len, "/assets/{id}");
		return;
	}
other:
	snprintf(out, len, "other");
}

/* --- requests --------------------------------------------------------------- */

static double seconds_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void count_webhook(struct agent_metrics *am, struct evhttp_request *req, const char *code)
{
	const char *event =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "X-GitHub-Event");
	if (!event || !listed(github_events, event, strlen(event)))
		event = "other";
	metrics_add(am->webhooks, METRICS_LABELS(event, code), 1);
}

static void on_complete(struct evhttp_request *req, void *arg)
{
	struct request_slot *slot = arg;
	/* The slot was taken over: this request's start is gone. */
	if (slot->req != req)
		return;
	slot->req = NULL;
	char code[16];
	snprintf(code, sizeof(code), "%d", evhttp_request_get_response_code(req));
	metrics_observe(slot->am->http_duration, METRICS_LABELS(slot->route, code),
			seconds_since(&slot->start));
	if (strcmp(slot->route, "/hooks/github") == 0)
		count_webhook(slot->am, req, code);
}

void agent_metrics_request(struct agent *a, struct evhttp_request *req)
{
	struct agent_metrics *am = a->metrics;
	if (!am)
		return;
	/* A free slot if there is one; else the oldest, whose request is most
	 * likely one that ended without completing. */
	struct request_slot *slot = &am->slots[am->next_slot];
	for (size_t i = 0; i < REQUEST_SLOTS; i++) {
		struct request_slot *s = &am->slots[(am->next_slot + i) % REQUEST_SLOTS];
		if (!s->req) {
			slot = s;
			break;
		}
	}
	am->next_slot = ((size_t)(slot - am->slots) + 1) % REQUEST_SLOTS;
	slot->am = am;
	slot->req = req;
	clock_gettime(CLOCK_MONOTONIC, &slot->start);
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	agent_metrics_route(path, slot->route, sizeof(slot->route));
	evhttp_request_set_on_complete_cb(req, on_complete, slot);
}

/* --- runs ------------------------------------------------------------------- */

/* A pipeline name is a label only while that pipeline is loaded. */
static const char *pipeline_label(const struct agent *a, const char *name)
{
	for (size_t i = 0; name && i < a->pipelines.n; i++) {
		if (strcmp(a->pipelines.items[i].name, name) == 0)
			return name;
	}
	return "other";
}

void agent_metrics_run_created(struct agent *a, const char *pipeline)
{
	if (a->metrics)
		metrics_add(a->metrics->runs_created, METRICS_LABELS(pipeline_label(a, pipeline)),
			    1);
}

void agent_metrics_accept_paused(void *arg)
{
	struct agent *a = arg;
	if (a->metrics)
		metrics_add(a->metrics->accept_pauses, NULL, 1);
}

void agent_metrics_connections(struct agent *a, long open)
{
	if (a->metrics)
		metrics_set(a->metrics->connections, NULL, (double)open);
}

void agent_metrics_connection_limit(struct agent *a)
{
	if (a->metrics)
		metrics_add(a->metrics->connection_limits, NULL, 1);
}

void agent_metrics_connection_evicted(struct agent *a)
{
	if (a->metrics)
		metrics_add(a->metrics->connections_evicted, NULL, 1);
}

void agent_metrics_connection_shed(struct agent *a)
{
	if (a->metrics)
		metrics_add(a->metrics->connections_shed, NULL, 1);
}

void agent_metrics_runs_removed(struct agent *a, long long n)
{
	if (a->metrics)
		metrics_add(a->metrics->runs_removed, NULL, (double)n);
}

/* --- depths and lag ------------------------------------------------------- */

static void on_depth(struct redis *r, redisReply *reply, const char *err, void *arg,
		     struct metric *gauge)
{
	struct agent_metrics *am = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_INTEGER) {
		log_debug("metrics: depth not read",
			  LOG_S("error", err ? err : "unexpected reply"));
		metrics_add(am->refresh_errors, NULL, 1);
		return;
	}
	metrics_set(gauge, NULL, (double)reply->integer);
}

static void on_outbox_depth(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	on_depth(r, reply, err, arg, ((struct agent_metrics *)arg)->outbox_depth);
}

static void on_events_depth(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	on_depth(r, reply, err, arg, ((struct agent_metrics *)arg)->events_depth);
}

static void on_dead_letters(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	on_depth(r, reply, err, arg, ((struct agent_metrics *)arg)->dead_letters);
}

static void on_delayed_depth(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	on_depth(r, reply, err, arg, ((struct agent_metrics *)arg)->delayed_depth);
}

/* The longest pipeline name a finished-runs series is labelled with. */
#define PIPELINE_NAME_LABEL_MAX 128

/* The runs:finished hash, "<pipeline>/<status>" -> count, kept by the
 * scripts that end runs (events.lua), whichever process runs them: the
 * counter is the same on every agent, for every pipeline that ever ended a
 * run, configured here or not. Statuses not known are counted as "other". */
static void on_runs_finished(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	static const char *const statuses[] = {"succeeded",  "failed",	"cancelled", "rejected",
					       "superseded", "aborted", NULL};
	struct agent_metrics *am = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
		log_debug("metrics: finished runs not read",
			  LOG_S("error", err ? err : "unexpected reply"));
		metrics_add(am->refresh_errors, NULL, 1);
		return;
	}
	metrics_reset(am->runs_finished);
	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		const redisReply *k = reply->element[i], *v = reply->element[i + 1];
		const char *slash = k->type == REDIS_REPLY_STRING ? strrchr(k->str, '/') : NULL;
		if (!slash || v->type != REDIS_REPLY_STRING)
			continue;
		char pipeline[256];
		snprintf(pipeline, sizeof(pipeline), "%.*s", (int)(slash - k->str), k->str);
		const char *status = slash + 1;
		if (!listed(statuses, status, strlen(status)))
			status = "other";
		/* By the name the run had, loaded here or not: a counter that
		 * moved between a pipeline's series and "other" as pipelines are
		 * added or removed would go backwards. Names are those pipeline
		 * files allow, but for a hash Redis holds odd fields in. */
		metrics_add(am->runs_finished,
			    METRICS_LABELS(strlen(pipeline) <= PIPELINE_NAME_LABEL_MAX &&
						   config_check_word(pipeline, "_.-", 0)
					       ? pipeline
					       : "other",
					   status),
			    strtod(v->str, NULL));
	}
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct agent_metrics *am = arg;
	struct agent *a = am->agent;
	(void)fd;
	(void)what;
	if (redis_command(a->redis, on_outbox_depth, am, "XLEN %soutbox", a->settings.key_prefix) <
		0 ||
	    redis_command(a->redis, on_events_depth, am, "XLEN %soutbox:events",
			  a->settings.key_prefix) < 0 ||
	    redis_command(a->redis, on_dead_letters, am, "XLEN %soutbox:dead",
			  a->settings.key_prefix) < 0 ||
	    redis_command(a->redis, on_delayed_depth, am, "ZCARD %sdelayed",
			  a->settings.key_prefix) < 0 ||
	    redis_command(a->redis, on_runs_finished, am, "HGETALL %sruns:finished",
			  a->settings.key_prefix) < 0)
		metrics_add(am->refresh_errors, NULL, 1);
}

static void on_lag(const char *topic, int32_t partition, int64_t lag, void *arg)
{
	char part[16];
	snprintf(part, sizeof(part), "%d", (int)partition);
	metrics_set(arg, METRICS_LABELS(topic, part), (double)lag);
}

void agent_metrics_serve(struct agent *a, struct evhttp_request *req)
{
	struct agent_metrics *am = a->metrics;
	if (!am) {
		http_reply_error(req, 404, "not_found", "metrics are not enabled");
		return;
	}
	metrics_set(am->request_bytes, NULL, (double)connection_receiving(a));
	metrics_reset(am->consumer_lag);
	if (a->results)
		kafka_consumer_lag(a->results, on_lag, am->consumer_lag);
	size_t len = 0;
	char *text = metrics_render(am->registry, &len);
	struct evbuffer *buf = evbuffer_new();
	if (!text || !buf || evbuffer_add(buf, text, len) < 0) {
		free(text);
		if (buf)
			evbuffer_free(buf);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	free(text);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_add_header(h, "Cache-Control", "no-store");
	httpsend_reply(req, 200, "OK", buf);
	evbuffer_free(buf);
}

/* --- lifetime --------------------------------------------------------------- */

int agent_metrics_start(struct agent *a)
{
	static const double http_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
					     0.25,  0.5,   1,	 2.5,	5,    10};
	struct agent_metrics *am = calloc(1, sizeof(*am));
	if (!am)
		return -1;
	am->agent = a;
	struct metrics *m = am->registry = metrics_new();
	am->webhooks =
	    metrics_counter(m, "sluice_webhooks_total",
			    "Webhook deliveries answered, by GitHub event and HTTP status "
			    "code.",
			    METRICS_LABELS("event", "code"));
	am->runs_created =
	    metrics_counter(m, "sluice_runs_created_total", "Runs created, by pipeline.",
			    METRICS_LABELS("pipeline"));
	am->runs_finished =
	    metrics_counter(m, "sluice_runs_finished_total",
			    "Runs that reached a final status, by pipeline and status, counted in "
			    "Redis for every agent together.",
			    METRICS_LABELS("pipeline", "status"));
	am->http_duration = metrics_histogram(
	    m, "sluice_http_request_duration_seconds",
	    "Time from a request's arrival to its answer being sent, by route and status code.",
	    METRICS_LABELS("route", "code"), http_bounds,
	    sizeof(http_bounds) / sizeof(http_bounds[0]));
	am->outbox_depth = metrics_gauge(
	    m, "sluice_outbox_depth",
	    "Outbox stream entries not yet published (each of one or more messages).", NULL);
	am->events_depth = metrics_gauge(
	    m, "sluice_events_outbox_depth",
	    "Events stream entries not yet published to the events topic (by the agent holding "
	    "its lease, in order).",
	    NULL);
	am->dead_letters = metrics_gauge(
	    m, "sluice_outbox_dead_letters",
	    "Outbox entries moved to the dead-letter stream because Kafka refused one of their "
	    "messages for good (docs/operations.md).",
	    NULL);
	am->delayed_depth =
	    metrics_gauge(m, "sluice_delayed_depth",
			  "Entries of the delayed set (pauses, back-offs, window openings).", NULL);
	am->refresh_errors = metrics_counter(m, "sluice_metrics_refresh_errors_total",
					     "Readings from Redis that it did not answer.", NULL);
	am->accept_pauses = metrics_counter(
	    m, "sluice_http_accept_pauses_total",
	    "Times the HTTP listener stopped accepting for a while because accept() lacked file "
	    "descriptors or memory (docs/operations.md).",
	    NULL);
	am->connections =
	    metrics_gauge(m, "sluice_http_connections",
			  "HTTP connections open (at most agent.max_connections).", NULL);
	am->connection_limits = metrics_counter(
	    m, "sluice_http_connection_limit_reached_total",
	    "Times the open HTTP connections reached agent.max_connections, so that new ones "
	    "waited (docs/operations.md).",
	    NULL);
	am->connections_evicted = metrics_counter(
	    m, "sluice_http_connections_evicted_total",
	    "Connections closed at agent.max_connections to make room: no request from them "
	    "for a second or more.",
	    NULL);
	am->connections_shed =
	    metrics_counter(m, "sluice_http_connections_shed_total",
			    "Connections closed because the requests being received held more than "
			    "agent.max_request_memory: the one holding the most each time.",
			    NULL);
	am->request_bytes = metrics_gauge(
	    m, "sluice_http_request_bytes",
	    "Bytes of the requests being received (at most agent.max_request_memory).", NULL);
	am->runs_removed = metrics_counter(
	    m, "sluice_runs_removed_total",
	    "Runs this agent removed because they ended more than agent.run_retention ago.", NULL);
	am->consumer_lag =
	    metrics_gauge(m, "sluice_kafka_consumer_lag",
			  "Messages of an assigned partition beyond the committed offset.",
			  METRICS_LABELS("topic", "partition"));
	am->refresh = event_new(a->base, -1, EV_PERSIST, on_refresh, am);
	struct timeval tv = {REFRESH_MS / 1000, (REFRESH_MS % 1000) * 1000};
	if (!m || !am->webhooks || !am->runs_created || !am->runs_finished || !am->http_duration ||
	    !am->outbox_depth || !am->events_depth || !am->dead_letters || !am->delayed_depth ||
	    !am->refresh_errors || !am->accept_pauses || !am->connections ||
	    !am->connection_limits || !am->runs_removed || !am->connections_evicted ||
	    !am->connections_shed || !am->request_bytes || !am->consumer_lag || !am->refresh ||
	    event_add(am->refresh, &tv) < 0) {
		log_error("cannot set up metrics");
		a->metrics = am;
		agent_metrics_stop(a);
		return -1;
	}
	a->metrics = am;
	return 0;
}

void agent_metrics_stop(struct agent *a)
{
	struct agent_metrics *am = a->metrics;
	if (!am)
		return;
	if (am->refresh)
		event_free(am->refresh);
	metrics_free(am->registry);
	free(am);
	a->metrics = NULL;
}
