/* sluice-agent: webhook intake, router and HTTP API in one event loop. */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/auth.h"
#include "agent/connection.h"
#include "agent/control.h"
#include "agent/http.h"
#include "agent/logstream.h"
#include "agent/record.h"
#include "agent/reload.h"
#include "agent/signature.h"
#include "agent/statuses.h"
#include "agent/tls.h"
#include "lib/clock.h"
#include "lib/fdlimit.h"
#include "lib/listener_backoff.h"
#include "lib/log.h"
#include "lib/random.h"
#include "lib/sdnotify.h"
#include "lib/watchdog.h"
#include "queue/lua.h"
#include "stages/process.h"

#define MAX_HEADERS_SIZE  (64 * 1024)
#define SHUTDOWN_FLUSH_MS 5000
/* At most this long for the outbox's last deliveries and deletes. */
#define DRAIN_MS 1000

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice-agent [--config FILE] [--listen HOST:PORT] "
		   "[--log-level debug|info|warn|error]\n"
		   "\n"
		   "Receives GitHub webhooks on POST /hooks/github, routes pipeline runs\n"
		   "through Kafka and serves the HTTP API on /api/v1, /metrics and /healthz.\n");
}

static void on_hook(struct evhttp_request *req, void *arg)
{
	agent_metrics_request(arg, req);
	connection_request(arg, req);
	if (!http_refuse_controls(req) && !http_refuse_ambiguous_length(req))
		intake_handle(req, arg);
}

static void on_other(struct evhttp_request *req, void *arg)
{
	agent_metrics_request(arg, req);
	connection_request(arg, req);
	if (!http_refuse_controls(req) && !http_refuse_ambiguous_length(req))
		api_handle(req, arg);
}

static void on_events_released(void *arg)
{
	struct agent *a = arg;
	event_base_loopexit(a->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;
	struct timeval most = {1, 0};
	(void)what;
	log_info("stopping", LOG_I("signal", sig));
	int again = a->stopping;
	a->stopping = 1;
	sdnotify("STOPPING=1");
	if (again) {
		event_base_loopexit(a->base, NULL);
		return;
	}
	/* The events lease goes first, so that another agent publishes the
	 * events at once: a Redis round trip, at most a second. */
	event_base_loopexit(a->base, &most);
	outbox_release_events(a->outbox, on_events_released, a);
}

static int redis_healthy(void *arg)
{
	return redis_connected(arg);
}

static int start_http(struct agent *a)
{
	char host[SETTINGS_HOST_MAX];
	unsigned short port;
	if (settings_split_listen(a->settings.listen, host, sizeof(host), &port) < 0) {
		log_error("bad listen address", LOG_S("listen", a->settings.listen));
		return -1;
	}
	a->http = evhttp_new(a->base);
	if (!a->http)
		return -1;
	evhttp_set_max_body_size(a->http, (ev_ssize_t)a->settings.max_body);
	evhttp_set_max_headers_size(a->http, MAX_HEADERS_SIZE);
	/* Reading headers and body alike: a client silent for this long is
	 * dropped (half-open connections); slow ones never hold up others,
	 * since nothing here blocks on a client. */
	struct timeval tv = {a->settings.http_timeout_ms / 1000,
			     (a->settings.http_timeout_ms % 1000) * 1000};
	evhttp_set_timeout_tv(a->http, &tv);
	/* Every method, those libevent does not know included: left to it, one
	 * outside this set would get its HTML 501 instead of the JSON 405 (with
	 * Allow) that any method a path does not take gets. */
	evhttp_set_allowed_methods(a->http, 0xffff);
	if (tls_start(a) < 0)
		return -1;
	if (connection_start(a) < 0)
		return -1;
	evhttp_set_cb(a->http, "/hooks/github", on_hook, a);
	evhttp_set_gencb(a->http, on_other, a);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(a->http, host, port);
	if (!bound) {
		log_error("cannot listen", LOG_S("listen", a->settings.listen),
			  LOG_S("error", strerror(errno)));
		return -1;
	}
	a->accept_backoff = listener_backoff_new(evhttp_bound_socket_get_listener(bound), "http",
						 agent_metrics_accept_paused, a);
	if (!a->accept_backoff)
		return -1;
	log_info("listening", LOG_S("url", a->settings.public_url),
		 LOG_I("pipelines", a->pipelines.n));
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"listen", required_argument, NULL, 'l'},
					     {"log-level", required_argument, NULL, 'v'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *config = NULL, *listen = NULL, *log_level = NULL;
	struct agent a;
	struct agent_reload reload = {.agent = &a};
	char err[1024];
	int status = 1, opt;

	memset(&a, 0, sizeof(a));
	while ((opt = getopt_long(argc, argv, "c:l:v:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 'v':
			if (log_set_level(optarg) < 0) {
				log_failure("sluice-agent: unknown log level %s", optarg);
				return 2;
			}
			log_level = optarg;
			reload.log_level_fixed = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	char host[256];
	unsigned short port;
	if (listen && settings_split_listen(listen, host, sizeof(host), &port) < 0) {
		log_failure("sluice-agent: bad --listen %s: expected HOST:PORT", listen);
		return 2;
	}
	/* For tests of what depends on the time of day (deploy windows): moves
	 * the agent's wall clock, never its timers. See README, "The two commands". */
	const char *shift = getenv("SLUICE_CLOCK_OFFSET_MS");
	if (shift && *shift) {
		char *end;
		long long offset = strtoll(shift, &end, 10);
		if (*end) {
			log_failure("sluice-agent: SLUICE_CLOCK_OFFSET_MS is not a number");
			return 2;
		}
		clock_set_offset_ms(offset);
		log_warn("wall clock shifted for testing", LOG_I("offset_ms", offset));
	}

	signal(SIGPIPE, SIG_IGN);
	fdlimit_raise();
	/* Before librdkafka starts its threads: commit statuses use libcurl. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_failure("sluice-agent: cannot initialise libcurl");
		return 1;
	}
	if (settings_load(config, &a.settings, err, sizeof(err)) < 0) {
		log_failure("sluice-agent: %s", err);
		return 1;
	}
	reload.config = config;
	reload.listen_fixed = listen != NULL;
	if (!reload.log_level_fixed)
		log_set_level(a.settings.log_level);
	if ((listen && settings_listen_on(&a.settings, listen) < 0) ||
	    (log_level && settings_log_level_on(&a.settings, log_level) < 0)) {
		log_failure("sluice-agent: out of memory");
		settings_clear(&a.settings);
		return 1;
	}
	if (pipelines_load_dir(a.settings.pipelines_dir, &a.pipelines, err, sizeof(err)) < 0) {
		log_failure("sluice-agent: %s", err);
		settings_clear(&a.settings);
		return 1;
	}
	a.signature_keys = signature_keys_new(&a.pipelines);
	if (!a.signature_keys) {
		log_failure("sluice-agent: cannot prepare the webhook secrets");
		pipelines_clear(&a.pipelines);
		settings_clear(&a.settings);
		return 1;
	}
	random_process_name(a.consumer_name, sizeof(a.consumer_name), "agent:");

	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
	struct watchdog *watchdog = NULL;
	/* Batched epoll changes: evhttp turns each connection's read and write
	 * interest on and off for every request, and the changelist folds those
	 * into one epoll_ctl per descriptor and loop turn. */
	struct event_config *evcfg = event_config_new();
	if (evcfg)
		event_config_set_flag(evcfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	a.base = evcfg ? event_base_new_with_config(evcfg) : NULL;
	if (evcfg)
		event_config_free(evcfg);
	/* Children: git ls-remote for manual triggers (control.c). */
	if (!a.base || process_init(a.base) < 0)
		goto fail;
	a.redis = redis_new(a.base, a.settings.redis_url, a.settings.redis_user,
			    a.settings.redis_password, a.settings.redis_timeout_ms);
	if (!a.redis)
		goto fail;
	a.scripts.intake = redis_script_add(a.redis, &lua_intake);
	a.scripts.route = redis_script_add(a.redis, &lua_route);
	a.scripts.retry = redis_script_add(a.redis, &lua_retry);
	a.scripts.cancel = redis_script_add(a.redis, &lua_cancel);
	a.scripts.retry_run = redis_script_add(a.redis, &lua_retry_run);
	a.scripts.reap = redis_script_add(a.redis, &lua_reap);
	a.scripts.prune = redis_script_add(a.redis, &lua_prune);
	a.scripts.requeue = redis_script_add(a.redis, &lua_requeue);
	a.scripts.release = redis_script_add(a.redis, &lua_release);
	a.scripts.promote = redis_script_add(a.redis, &lua_promote);
	a.scripts.decide = redis_script_add(a.redis, &lua_decide);
	a.scripts.api_call = redis_script_add(a.redis, &lua_api_call);
	a.scripts.rollout_command = redis_script_add(a.redis, &lua_rollout_command);
	a.scripts.rollout_retry = redis_script_add(a.redis, &lua_rollout_retry);
	a.scripts.rollback = redis_script_add(a.redis, &lua_rollback);
	a.scripts.read_hashes = redis_script_add(a.redis, &lua_read_hashes);
	/* The workers' scripts too: loaded as the agent connects, each worker
	 * that starts later finds them in Redis and never reads their text. */
	for (const struct lua_script *const *s = lua_all; *s; s++)
		redis_script_add(a.redis, *s);
	a.recorder = recorder_new(a.base, a.redis, a.scripts.intake, &a.settings);
	if (!a.recorder)
		goto fail;
	a.producer = kafka_producer_new(a.base, a.settings.brokers, err, sizeof(err));
	if (!a.producer) {
		log_error("cannot start the Kafka producer", LOG_S("error", err));
		goto fail;
	}
	/* The agent publishes the events stream too (one agent at a time). */
	a.outbox = outbox_new(a.base, a.redis, a.producer, a.settings.key_prefix,
			      a.settings.topic_prefix, a.consumer_name, 1);
	if (!a.outbox || router_start(&a) < 0 || scheduler_start(&a) < 0 ||
	    statuses_start(&a) < 0 || agent_metrics_start(&a) < 0 || auth_start(&a) < 0 ||
	    start_http(&a) < 0)
		goto fail;

	sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
	sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
	sighup = evsignal_new(a.base, SIGHUP, agent_reload_on_signal, &reload);
	if (!sigterm || !sigint || !sighup || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0 || evsignal_add(sighup, NULL) < 0)
		goto fail;
	watchdog = watchdog_start(a.base, redis_healthy, a.redis);

	sdnotify("READY=1\nSTATUS=accepting webhooks");
	event_base_dispatch(a.base);
	/* 1 after a fatal producer error: to be started again (kafka.h). */
	status = kafka_producer_failed(a.producer);
	/* Let the outbox publish what it read and delete what was delivered,
	 * or another agent would publish it again once it is claimed. */
	outbox_drain(a.outbox, a.base, DRAIN_MS);
fail:
	a.stopping = 1;
	watchdog_free(watchdog);
	control_stop(&a);
	logstream_stop_all(&a);
	listener_backoff_free(a.accept_backoff);
	a.accept_backoff = NULL;
	if (a.http)
		evhttp_free(a.http);
	connection_stop(&a);
	tls_stop(&a);
	auth_stop(&a);
	/* The outbox goes before the Redis client and producer it uses; Redis
	 * before the router, so that routing calls still waiting for a reply
	 * are ended by their callbacks ("shutting down") rather than freed
	 * under them. */
	if (a.outbox)
		outbox_free(a.outbox);
	if (a.redis)
		redis_free(a.redis);
	recorder_free(a.recorder);
	/* After Redis and the HTTP server: their last callbacks still count. */
	agent_metrics_stop(&a);
	scheduler_free(&a);
	router_stop(&a);
	statuses_stop(&a);
	if (a.producer)
		kafka_producer_free(a.producer, SHUTDOWN_FLUSH_MS);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	if (a.base)
		event_base_free(a.base);
	signature_keys_free(a.signature_keys);
	pipelines_clear(&a.pipelines);
	settings_clear(&a.settings);
	curl_global_cleanup();
	return status;
}
