/* sluice-worker: consumes sluice.jobs.<kind> and runs stages.
 *
 * SIGTERM drains: no new jobs, running ones finish (up to
 * worker.drain_timeout), then the rest are cancelled and handed back for
 * another worker; a second SIGTERM hands them back at once. Jobs fetched but
 * not started keep their offsets unstored, so the partitions' next owner runs
 * them. SIGHUP reloads sluice.yaml.
 */
#include <event2/event.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/random.h"
#include "lib/sdnotify.h"
#include "lib/watchdog.h"
#include "queue/envelope.h"
#include "queue/lua.h"
#include "stages/process.h"
#include "queue/defcache.h"
#include "workers/stage_log.h"
#include "workers/worker.h"
#include "workers/worker_metrics.h"
#include "workers/workspace.h"

#define MAX_KINDS	  8
#define SHUTDOWN_FLUSH_MS 5000
/* At most this long for the outbox's last deliveries and deletes. */
#define DRAIN_MS 1000

struct worker_main {
	struct worker w;
	struct event *sigterm, *sigint, *sighup, *drain_timer;
	struct workspace *workspace;
	struct watchdog *watchdog;
	const char *config;
	int concurrency_fixed; /* --concurrency given: a reload keeps it */
	int log_level_fixed;   /* --log-level given: a reload keeps it */
	int metrics_fixed;     /* --metrics-listen given: the file's is not used */
	int signals;
};

/* Settings that only a restart applies: the connections and the directory
 * the worker has set up with them. */
static const char *const restart_keys[] = {SETTINGS_CONNECTION_KEYS, "worker.state_dir",
					   "worker.artifacts_dir", NULL};

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice-worker [--config FILE] --kind KIND[,KIND...] [--concurrency N]\n"
		   "                     [--metrics-listen IP:PORT]\n"
		   "                     [--log-level debug|info|warn|error]\n"
		   "\n"
		   "Runs the stages of the given kinds (build, test, scan, push, deploy)\n"
		   "from sluice.jobs.<kind>. SIGTERM drains, SIGHUP reloads the config.\n"
		   "--metrics-listen (worker.metrics_listen) serves /metrics and /healthz.\n");
}

static void on_job(const struct kafka_message *m, struct kafka_ticket *t, void *arg)
{
	struct worker *w = arg;
	struct envelope env;
	char err[256];

	if (w->draining)
		return; /* not done: whoever owns the partition next runs it */
	if (envelope_decode(m->value, m->len, &env, err, sizeof(err)) < 0) {
		log_warn("job dropped", LOG_S("topic", m->topic), LOG_I("offset", m->offset),
			 LOG_S("error", err));
		kafka_consumer_done(w->consumer, t);
		return;
	}
	const char *run = json_string_value(json_object_get(env.data, "run"));
	const char *stage = json_string_value(json_object_get(env.data, "stage"));
	int attempt = envelope_attempt(env.data);
	if (strcmp(env.type, "dev.sluice.job.requested") != 0 || !run || !stage || attempt < 0 ||
	    strlen(run) >= 128 || strlen(stage) >= 128) {
		log_warn("job dropped", LOG_S("id", env.id), LOG_S("type", env.type),
			 LOG_S("error", "not a job with run, stage and attempt"));
		kafka_consumer_done(w->consumer, t);
	} else {
		worker_offer(w, run, stage, attempt, t);
	}
	envelope_clear(&env);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	(void)fd;
	(void)what;
	log_warn("drain timeout: handing running stages back", LOG_I("running", w->running));
	job_hand_back_all(w);
}

static void reload(struct worker_main *m)
{
	struct worker *w = &m->w;
	struct settings next;
	char err[1024];

	if (settings_load(m->config, &next, err, sizeof(err)) < 0) {
		log_error("reload refused: the running configuration is kept", LOG_S("error", err));
		return;
	}
	for (size_t i = 0; restart_keys[i]; i++) {
		if (settings_differ(&w->settings, &next, restart_keys[i]) == 1)
			log_warn("setting changed but needs a restart; old value kept",
				 LOG_S("key", restart_keys[i]));
	}
	if (!m->metrics_fixed && settings_differ(&w->settings, &next, "worker.metrics_listen") == 1)
		log_warn("setting changed but needs a restart; old value kept",
			 LOG_S("key", "worker.metrics_listen"));
	if (!m->log_level_fixed && log_set_level(next.log_level) == 0) {
		char *old = w->settings.log_level;
		w->settings.log_level = next.log_level;
		next.log_level = old;
	}
	/* Later jobs use these; running ones keep what they started with. */
	w->settings.kill_grace_ms = next.kill_grace_ms;
	w->settings.checkout_timeout_ms = next.checkout_timeout_ms;
	w->settings.lease_ms = next.lease_ms;
	w->settings.drain_timeout_ms = next.drain_timeout_ms;
	w->settings.workspace_ttl_ms = next.workspace_ttl_ms;
	w->settings.min_free_percent = next.min_free_percent;
	w->settings.min_free_bytes = next.min_free_bytes;
	w->settings.log_cap = next.log_cap;
	w->settings.concurrency = next.concurrency;
	settings_clear(&next);
	if (!m->concurrency_fixed && w->concurrency != w->settings.concurrency)
		worker_set_concurrency(w, w->settings.concurrency);
	log_info("configuration reloaded", LOG_I("concurrency", w->concurrency),
		 LOG_I("lease_ms", w->settings.lease_ms),
		 LOG_I("kill_grace_ms", w->settings.kill_grace_ms),
		 LOG_I("checkout_timeout_ms", w->settings.checkout_timeout_ms),
		 LOG_I("drain_timeout_ms", w->settings.drain_timeout_ms),
		 LOG_I("workspace_ttl_ms", w->settings.workspace_ttl_ms),
		 LOG_I("log_cap", w->settings.log_cap), LOG_S("log_level", w->settings.log_level));
	if (m->workspace)
		workspace_sweep(m->workspace);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	reload(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct worker_main *m = arg;
	struct worker *w = &m->w;
	(void)what;
	if (m->signals++ > 0) {
		log_info("second signal: handing running stages back", LOG_I("signal", sig));
		job_hand_back_all(w);
		return;
	}
	log_info("draining", LOG_I("signal", sig), LOG_I("running", w->running));
	sdnotify("STOPPING=1");
	w->draining = 1;
	/* Its partitions go to the other workers now, not once it exits: jobs
	 * published meanwhile (new runs, a hand-back's next attempt) run at
	 * once. A job it runs, consumed again there, is skipped by its claim. */
	kafka_consumer_pause(w->consumer);
	kafka_consumer_leave(w->consumer);
	if (w->running == 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	int ms = w->settings.drain_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	m->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
	if (m->drain_timer)
		evtimer_add(m->drain_timer, &tv);
}

static int redis_healthy(void *arg)
{
	return redis_connected(arg);
}

/* --kind: kinds a stage may have, at most MAX_KINDS. One no pipeline can
 * give would leave the worker waiting on a topic no job ever reaches. */
static int kinds_valid(const char *kinds)
{
	char buf[256];
	size_t n = 0;

	if (snprintf(buf, sizeof(buf), "%s", kinds) >= (int)sizeof(buf))
		return 0;
	for (char *save = NULL, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
		if (n++ == MAX_KINDS || !pipeline_is_kind(k))
			return 0;
	}
	return n > 0;
}

static int subscribe(struct worker *w, const char *kinds)
{
	char buf[256], err[512];
	char topics_buf[MAX_KINDS][128];
	const char *topics[MAX_KINDS];
	size_t n = 0;
	snprintf(buf, sizeof(buf), "%s", kinds);
	for (char *save = NULL, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
		snprintf(topics_buf[n], sizeof(topics_buf[n]), "%sjobs.%s",
			 w->settings.topic_prefix, k);
		topics[n] = topics_buf[n];
		n++;
	}
	snprintf(buf, sizeof(buf), "%sworkers", w->settings.topic_prefix);
	struct kafka_consumer_opts opts = {.session_timeout_ms = w->settings.session_timeout_ms,
					   .fetch_wait_ms = w->settings.fetch_wait_ms};
	w->consumer = kafka_consumer_new_opts(w->base, w->settings.brokers, buf, topics, n, on_job,
					      w, &opts, err, sizeof(err));
	if (!w->consumer) {
		log_error("cannot consume jobs", LOG_S("error", err));
		return -1;
	}
	log_info("consuming", LOG_S("kinds", kinds), LOG_I("concurrency", w->concurrency));
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"kind", required_argument, NULL, 'k'},
					     {"concurrency", required_argument, NULL, 'n'},
					     {"log-level", required_argument, NULL, 'v'},
					     {"metrics-listen", required_argument, NULL, 'm'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *config = NULL, *kinds = NULL, *metrics_listen = NULL, *log_level = NULL;
	long concurrency = 0;
	int opt, status = 1;
	char *end;
	struct worker_main m;
	struct worker *w = &m.w;
	char err[1024];

	memset(&m, 0, sizeof(m));
	while ((opt = getopt_long(argc, argv, "c:k:n:v:m:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			kinds = optarg;
			break;
		case 'm':
			metrics_listen = optarg;
			m.metrics_fixed = 1;
			break;
		case 'n':
			m.concurrency_fixed = 1;
			errno = 0;
			concurrency = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || concurrency < 1 ||
			    concurrency > 1024) {
				log_failure("sluice-worker: --concurrency takes 1..1024");
				return 2;
			}
			break;
		case 'v':
			if (log_set_level(optarg) < 0) {
				log_failure("sluice-worker: unknown log level %s", optarg);
				return 2;
			}
			log_level = optarg;
			m.log_level_fixed = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !kinds) {
		usage(stderr);
		return 2;
	}
	if (!kinds_valid(kinds)) {
		log_failure("sluice-worker: bad --kind %s: the kinds are build, test, scan, push "
			    "and deploy, separated by commas",
			    kinds);
		return 2;
	}
	struct sockaddr_storage metrics_addr;
	int metrics_addrlen = (int)sizeof(metrics_addr);
	if (metrics_listen &&
	    settings_parse_ip_port(metrics_listen, (struct sockaddr *)&metrics_addr,
				   &metrics_addrlen) < 0) {
		log_failure("sluice-worker: bad --metrics-listen %s: expected IP:PORT",
			    metrics_listen);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (settings_load(config, &w->settings, err, sizeof(err)) < 0) {
		log_failure("sluice-worker: %s", err);
		return 1;
	}
	m.config = config;
	if (!m.log_level_fixed)
		log_set_level(w->settings.log_level);
	else if (settings_log_level_on(&w->settings, log_level) < 0) {
		log_failure("sluice-worker: out of memory");
		settings_clear(&w->settings);
		return 1;
	}
	w->concurrency = concurrency ? (int)concurrency : w->settings.concurrency;
	w->backlog_tail = &w->backlog;

	random_process_name(w->token, sizeof(w->token), "");

	w->base = event_base_new();
	w->defs = defcache_new(DEFCACHE_RUNS);
	w->sources = defcache_new(DEFCACHE_RUNS);
	if (!w->base || !w->defs || !w->sources || process_init(w->base) < 0)
		goto fail;
	w->redis = redis_new(w->base, w->settings.redis_url, w->settings.redis_user,
			     w->settings.redis_password, w->settings.redis_timeout_ms);
	if (!w->redis)
		goto fail;
	w->scripts.claim = redis_script_add(w->redis, &lua_claim);
	w->scripts.finish = redis_script_add(w->redis, &lua_finish);
	w->scripts.lease_renew = redis_script_add(w->redis, &lua_lease_renew);
	w->scripts.handback = redis_script_add(w->redis, &lua_handback);
	w->scripts.rollout_save = redis_script_add(w->redis, &lua_rollout_save);
	w->scripts.park = redis_script_add(w->redis, &lua_park);
	w->producer = kafka_producer_new(w->base, w->settings.brokers, err, sizeof(err));
	if (!w->producer) {
		log_error("cannot start the Kafka producer", LOG_S("error", err));
		goto fail;
	}
	/* Jobs and results; the events the worker's scripts record are the
	 * agent's to publish. */
	w->outbox = outbox_new(w->base, w->redis, w->producer, w->settings.key_prefix,
			       w->settings.topic_prefix, w->token, 0);
	if (!w->outbox || subscribe(w, kinds) < 0 ||
	    worker_metrics_start(w, metrics_listen ? metrics_listen : w->settings.metrics_listen) <
		0)
		goto fail;

	m.sigterm = evsignal_new(w->base, SIGTERM, on_signal, &m);
	m.sigint = evsignal_new(w->base, SIGINT, on_signal, &m);
	m.sighup = evsignal_new(w->base, SIGHUP, on_sighup, &m);
	if (!m.sigterm || !m.sigint || !m.sighup || evsignal_add(m.sigterm, NULL) < 0 ||
	    evsignal_add(m.sigint, NULL) < 0 || evsignal_add(m.sighup, NULL) < 0)
		goto fail;
	m.workspace = workspace_start(w->base, &w->settings);
	if (!m.workspace)
		goto fail;
	m.watchdog = watchdog_start(w->base, redis_healthy, w->redis);
	/* What starting up freed (the configuration's text, its parse) goes
	 * back too, unless a job comes first. */
	w->idle_trim = evtimer_new(w->base, worker_on_idle, w);
	worker_idle(w);

	sdnotify("READY=1\nSTATUS=0 job(s) running");
	event_base_dispatch(w->base);
	/* Children still stopping: a handed-back rollout's hook or provider
	 * command in its grace, the workspace removal. Once this process is
	 * gone its guard would SIGKILL them, cutting their grace short. */
	workspace_free(m.workspace);
	m.workspace = NULL;
	if (process_running() > 0)
		log_info("waiting for commands to stop", LOG_I("running", process_running()));
	while (process_running() > 0 && event_base_loop(w->base, EVLOOP_ONCE) == 0)
		;
	/* 1 after a fatal producer error: to be started again (kafka.h). */
	status = kafka_producer_failed(w->producer);
	/* Let the outbox publish the last results before leaving. */
	outbox_drain(w->outbox, w->base, DRAIN_MS);
fail:
	w->draining = 1;
	watchdog_free(m.watchdog);
	workspace_free(m.workspace);
	if (w->consumer)
		kafka_consumer_free(w->consumer);
	worker_backlog_clear(w);
	/* The outbox goes before the Redis client and producer it uses. */
	if (w->outbox)
		outbox_free(w->outbox);
	if (w->redis)
		redis_free(w->redis);
	stage_log_free(w);
	worker_metrics_stop(w);
	defcache_free(w->defs);
	defcache_free(w->sources);
	if (w->producer)
		kafka_producer_free(w->producer, SHUTDOWN_FLUSH_MS);
	if (m.sigterm)
		event_free(m.sigterm);
	if (m.sigint)
		event_free(m.sigint);
	if (m.sighup)
		event_free(m.sighup);
	if (m.drain_timer)
		event_free(m.drain_timer);
	if (w->idle_trim)
		event_free(w->idle_trim);
	process_shutdown();
	if (w->base)
		event_base_free(w->base);
	settings_clear(&w->settings);
	return status;
}
