/* agent_metrics: what sluice-agent exposes on GET /metrics.
 *
 * Webhooks by event and status code, runs created and finished by pipeline,
 * HTTP request durations by route template and code, the depths of the
 * outbox and of the delayed set (read from Redis every few seconds) and the
 * results consumer's lag. Label values that come from outside are bounded:
 * an event name GitHub does not document and a pipeline that is not loaded
 * count as "other". Every function accepts an agent without metrics.
 */
#ifndef SLUICE_AGENT_METRICS_H
#define SLUICE_AGENT_METRICS_H

#include <event2/http.h>
#include <stddef.h>

struct agent;

/* Sets a->metrics; call once Redis and the results consumer exist. */
int agent_metrics_start(struct agent *a);
/* After the HTTP server and Redis are freed: their callbacks may still count. */
void agent_metrics_stop(struct agent *a);

/* At a request's arrival: times it until its answer is sent, and counts it
 * as a webhook when it is one. */
void agent_metrics_request(struct agent *a, struct evhttp_request *req);
/* GET /metrics */
void agent_metrics_serve(struct agent *a, struct evhttp_request *req);

void agent_metrics_run_created(struct agent *a, const char *pipeline);
/* Each time the HTTP listener pauses accepting (listener_backoff.h); arg is
 * the agent. */
void agent_metrics_accept_paused(void *arg);
/* The connections open now (connection.h). */
void agent_metrics_connections(struct agent *a, long open);
/* Each time agent.max_connections is reached. */
void agent_metrics_connection_limit(struct agent *a);
/* Each connection closed at the limit to make room (connection.c). */
void agent_metrics_connection_evicted(struct agent *a);
/* Each connection closed at agent.max_request_memory (connection.c). */
void agent_metrics_connection_shed(struct agent *a);
/* Runs removed by agent.run_retention (scheduler.c). */
void agent_metrics_runs_removed(struct agent *a, long long n);

/* The route label of a request path: ids become "{id}" ("/api/v1/runs/{id}"),
 * a path outside the agent's endpoints is "other". */
void agent_metrics_route(const char *path, char *out, size_t len);

#endif
