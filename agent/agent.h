/* agent: the context of one sluice-agent process.
 *
 * The agent holds no state of its own beyond this struct: runs live in Redis,
 * messages travel through Kafka, so several agents may run side by side.
 * Intake, router and API each take this context and own nothing else.
 */
#ifndef SLUICE_AGENT_H
#define SLUICE_AGENT_H

#include <event2/event.h>
#include <event2/http.h>

#include "config/config.h"
#include "queue/kafka.h"
#include "queue/outbox.h"
#include "queue/redis.h"

struct agent_metrics;
struct listener_backoff;
struct log_stream;
struct recorder;
struct tokens;
struct route_call;
struct scheduler;
struct statuses;
struct trigger_call;
struct http_pending;

struct agent_scripts {
	int intake;
	int route;
	int retry;
	int cancel;
	int retry_run;
	int reap;
	int requeue;
	int release;
	int promote;
	int decide;
	int api_call;
	int rollout_command;
	int rollout_retry;
	int rollback;
	int read_hashes;
	int prune;
};

struct signature_keys;

struct agent {
	struct event_base *base;
	struct settings settings;
	struct pipeline_set pipelines;
	struct signature_keys *signature_keys; /* the pipelines' secrets (signature.h) */
	struct redis *redis;
	struct agent_scripts scripts;
	struct recorder *recorder; /* deliveries into Redis (record.h) */
	struct kafka_producer *producer;
	struct kafka_consumer *results;
	struct outbox *outbox;
	struct evhttp *http;
	/* Pauses http's listener while accept() fails (listener_backoff.h). */
	struct listener_backoff *accept_backoff;
	struct connections *connections; /* open ones, counted (connection.h) */
	char consumer_name[128];	 /* agent:host:pid:random, unique among agents */
	int stopping;			 /* shutting down: start nothing new */
	struct route_call *routing;	 /* results being routed (router.c) */
	struct defcache *defs;		 /* definitions of the runs routed lately (router.c) */
	struct scheduler *scheduler;
	struct statuses *statuses;	/* NULL unless github.token_file is set (statuses.c) */
	struct trigger_call *resolving; /* triggers waiting for git ls-remote (control.c) */
	struct agent_metrics *metrics;	/* NULL when not set up (agent_metrics.h) */
	struct tokens *tokens;		/* NULL: the API is open (auth.h) */
	struct log_stream *streams;	/* log streams being sent (logstream.h) */
	struct ssl_ctx_st *tls;		/* NULL unless agent.tls_cert is set (tls.h) */
};

/* POST /hooks/github */
void intake_handle(struct evhttp_request *req, struct agent *a);
/* A new run id into out (at least 32 bytes), holding now_ms: the run's
 * score in the runs indexes, so that a page can go on from a run removed
 * from them (api.c). */
void intake_new_run_id(char *out, size_t len, long long now_ms);
/* GET /healthz and /api/v1/... */
void api_handle(struct evhttp_request *req, struct agent *a);
/* The API endpoint path is one of, whatever the method, as its pattern (a
 * '*' for each id: "/api/v1/runs/" then '*' for "/api/v1/runs/r_1"); NULL
 * when it is none. */
const char *api_route_pattern(const char *path);
/* Answers code with run id as GET /api/v1/runs/{id} shows it. */
void api_reply_run(struct agent *a, struct http_pending *pending, const char *id, int code);
/* Consumes sluice.results and advances runs. */
int router_start(struct agent *a);
void router_stop(struct agent *a);
/* The timer of scheduler.c: reaps expired leases, publishes again jobs left
 * unclaimed for requeue_after, releases due entries of the delayed set. */
int scheduler_start(struct agent *a);
/* Stops the timer; call once Redis is freed (its callbacks have run). */
void scheduler_free(struct agent *a);

#endif
