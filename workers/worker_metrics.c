/* worker_metrics: the worker's series and its tiny HTTP listener. */
#include "workers/worker_metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/httpsend.h"
#include "lib/listener_backoff.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "workers/worker.h"

struct worker_metrics {
	struct worker *w;
	struct metrics *registry;
	struct metric *stage_duration, *jobs_running, *slots, *renewal_errors, *leases_lost;
	struct metric *consumer_lag;
	struct evhttp *http;
	struct listener_backoff *backoff;
};

static int listed(const char *const *list, const char *s)
{
	for (; s && *list; list++) {
		if (strcmp(*list, s) == 0)
			return 1;
	}
	return 0;
}

void worker_metrics_stage_finished(struct worker *w, const char *kind, const char *status,
				   double seconds)
{
	/* Those of a deployment with a strategy too (events.md's stage.finished). */
	static const char *const outcomes[] = {"succeeded", "failed",	   "timed_out", "cancelled",
					       "aborted",   "rolled_back", NULL};
	if (!w->metrics)
		return;
	metrics_observe(w->metrics->stage_duration,
			METRICS_LABELS(kind && pipeline_is_kind(kind) ? kind : "other",
				       listed(outcomes, status) ? status : "other"),
			seconds < 0 ? 0 : seconds);
}

void worker_metrics_lease_renewal_failed(struct worker *w, int lost)
{
	if (w->metrics)
		metrics_add(lost ? w->metrics->leases_lost : w->metrics->renewal_errors, NULL, 1);
}

/* --- GET /metrics and /healthz -------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *type,
		       const char *text, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (!buf || evbuffer_add(buf, text, len) < 0) {
		if (buf)
			evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	httpsend_reply(req, code, reason, buf);
	evbuffer_free(buf);
}

static void on_lag(const char *topic, int32_t partition, int64_t lag, void *arg)
{
	char part[16];
	snprintf(part, sizeof(part), "%d", (int)partition);
	metrics_set(arg, METRICS_LABELS(topic, part), (double)lag);
}

static void serve_metrics(struct worker_metrics *wm, struct evhttp_request *req)
{
	struct worker *w = wm->w;
	metrics_set(wm->jobs_running, NULL, w->running);
	metrics_set(wm->slots, NULL, w->concurrency);
	metrics_reset(wm->consumer_lag);
	if (w->consumer)
		kafka_consumer_lag(w->consumer, on_lag, wm->consumer_lag);
	size_t len = 0;
	char *text = metrics_render(wm->registry, &len);
	if (!text) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	reply_text(req, 200, "OK", METRICS_CONTENT_TYPE, text, len);
	free(text);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct worker_metrics *wm = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	static const char ok[] = "{\"status\":\"ok\",\"redis\":\"up\"}\n",
			  down[] = "{\"status\":\"degraded\",\"redis\":\"down\"}\n",
			  missing[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"GET "
				      "/metrics and /healthz are served here\"}}\n",
			  not_get[] = "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
				      "\"only GET is served here\"}}\n";
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		reply_text(req, 405, "Method Not Allowed", "application/json", not_get,
			   sizeof(not_get) - 1);
	} else if (path && strcmp(path, "/metrics") == 0) {
		serve_metrics(wm, req);
	} else if (path && strcmp(path, "/healthz") == 0) {
		int up = redis_connected(wm->w->redis);
		reply_text(req, up ? 200 : 503, up ? "OK" : "Service Unavailable",
			   "application/json", up ? ok : down,
			   up ? sizeof(ok) - 1 : sizeof(down) - 1);
	} else {
		reply_text(req, 404, "Not Found", "application/json", missing, sizeof(missing) - 1);
	}
}

/* What a request to the listener may hold: GET /metrics, GET /healthz. */
#define METRICS_MAX_BODY    4096
#define METRICS_MAX_HEADERS (16 * 1024)

static int listen_on(struct worker_metrics *wm, const char *listen)
{
	struct sockaddr_storage ss;
	int sslen = (int)sizeof(ss);
	if (settings_parse_ip_port(listen, (struct sockaddr *)&ss, &sslen) < 0) {
		log_error("bad metrics address: expected IP:PORT", LOG_S("listen", listen));
		return -1;
	}
	wm->http = evhttp_new(wm->w->base);
	if (!wm->http)
		return -1;
	/* Every method reaches on_request, which answers 405 as the agent
	 * does: libevent would answer one outside the set 501 in HTML. */
	evhttp_set_allowed_methods(wm->http, 0xffff);
	evhttp_set_timeout(wm->http, 10);
	/* Only GETs are served: libevent's default would read a body or
	 * headers of any size into the memory the worker's stages share. */
	evhttp_set_max_body_size(wm->http, METRICS_MAX_BODY);
	evhttp_set_max_headers_size(wm->http, METRICS_MAX_HEADERS);
	evhttp_set_gencb(wm->http, on_request, wm);
	/* Close-on-exec: stage commands must not inherit the socket. */
	struct evconnlistener *l = evconnlistener_new_bind(
	    wm->w->base, NULL, NULL,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
	    (struct sockaddr *)&ss, sslen);
	if (!l || !evhttp_bind_listener(wm->http, l)) {
		log_error("cannot listen for metrics", LOG_S("listen", listen),
			  LOG_S("error", strerror(errno)));
		if (l)
			evconnlistener_free(l);
		return -1;
	}
	wm->backoff = listener_backoff_new(l, "metrics", NULL, NULL);
	if (!wm->backoff)
		return -1;
	log_info("serving metrics", LOG_S("listen", listen));
	return 0;
}

int worker_metrics_start(struct worker *w, const char *listen)
{
	static const double bounds[] = {0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600};
	struct worker_metrics *wm = calloc(1, sizeof(*wm));
	if (!wm)
		return -1;
	wm->w = w;
	w->metrics = wm;
	struct metrics *m = wm->registry = metrics_new();
	wm->stage_duration = metrics_histogram(
	    m, "sluice_stage_duration_seconds",
	    "Time from claiming a stage attempt to recording its outcome, by kind and outcome.",
	    METRICS_LABELS("kind", "status"), bounds, sizeof(bounds) / sizeof(bounds[0]));
	wm->jobs_running = metrics_gauge(m, "sluice_jobs_running",
					 "Stage attempts this worker holds a slot for.", NULL);
	wm->slots = metrics_gauge(m, "sluice_worker_slots",
				  "Stage attempts this worker runs at once at most.", NULL);
	wm->renewal_errors = metrics_counter(m, "sluice_lease_renewal_errors_total",
					     "Lease renewals that Redis did not answer.", NULL);
	wm->leases_lost =
	    metrics_counter(m, "sluice_leases_lost_total",
			    "Leases found taken over at renewal, or not renewed before they could "
			    "end; the stage was stopped.",
			    NULL);
	wm->consumer_lag =
	    metrics_gauge(m, "sluice_kafka_consumer_lag",
			  "Messages of an assigned partition beyond the committed offset.",
			  METRICS_LABELS("topic", "partition"));
	if (!m || !wm->stage_duration || !wm->jobs_running || !wm->slots || !wm->renewal_errors ||
	    !wm->leases_lost || !wm->consumer_lag || (listen && listen_on(wm, listen) < 0)) {
		worker_metrics_stop(w);
		return -1;
	}
	return 0;
}

void worker_metrics_stop(struct worker *w)
{
	struct worker_metrics *wm = w->metrics;
	if (!wm)
		return;
	/* Before the listener it guards, which evhttp_free frees. */
	listener_backoff_free(wm->backoff);
	if (wm->http)
		evhttp_free(wm->http);
	metrics_free(wm->registry);
	free(wm);
	w->metrics = NULL;
}
