/* sluice-devbroker: librdkafka's mock cluster as a standalone Kafka broker.
 *
 * For local runs and tests: it speaks enough of the Kafka protocol for
 * idempotent producers and consumer groups, keeps everything in memory, and
 * listens on ephemeral loopback ports. The bootstrap address is printed on
 * stdout and, with --bootstrap-file, written to a file once the topics exist.
 */
#include "config/file.h"
#include "lib/log.h"
#include "queue/kafka.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BROKERS	16
#define MAX_PARTITIONS	1000
#define LOG_POLL_MS	100
#define DEFAULT_PREFIX	"sluice."
#define DEFAULT_PARTS	4
#define MAX_REPLICATION 3
#define TOPIC_RULE	"1 to %d letters, digits, '.', '_' or '-', not . or .."

struct topic {
	char *name;
	int partitions;
};

struct broker {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mcluster; /* owned by rk */
	int nbrokers;
	struct event_base *base;
};

static const char *const default_topics[] = {
    "jobs.build", "jobs.test", "jobs.scan", "jobs.push", "jobs.deploy", "results", "events", "dlq",
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice-devbroker [options]\n"
		"\n"
		"A single-process Kafka-protocol broker (librdkafka's mock cluster) for\n"
		"local runs and tests. Nothing is kept on disk. Prints the bootstrap\n"
		"address on stdout once the topics exist.\n"
		"\n"
		"  --bootstrap-file FILE  also write the bootstrap address to FILE\n"
		"                         (atomically; removed again on exit,\n"
		"                         unless another devbroker wrote it since)\n"
		"  --topic NAME[:N]       create topic NAME with N partitions (default\n"
		"                         --partitions); repeatable. NAME is 1 to %d\n"
		"                         letters, digits, '.', '_' or '-', not . or ..\n"
		"                         Given --topic, the default topic set is\n"
		"                         created only with --default-topics\n"
		"  --default-topics       create the default topic set as well\n"
		"  --prefix P             prefix of the default topic set (default \"%s\"):\n"
		"                         P+jobs.build, jobs.test, jobs.scan, jobs.push,\n"
		"                         jobs.deploy, results, events, dlq\n"
		"  --partitions N         partitions per topic (default %d)\n"
		"  --brokers N            brokers in the cluster (default 1, at most %d)\n"
		"  --log-level LEVEL      debug, info, warn or error (default info)\n"
		"  --help                 this text\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop; SIGUSR1 takes every broker down (connections\n"
		"refused), SIGUSR2 brings them up again.\n",
		KAFKA_TOPIC_MAX, DEFAULT_PREFIX, DEFAULT_PARTS, MAX_BROKERS);
}

static int parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	enum log_level lvl = level <= 2	  ? LOG_LEVEL_ERROR
			     : level <= 4 ? LOG_LEVEL_WARN
			     : level <= 6 ? LOG_LEVEL_INFO
					  : LOG_LEVEL_DEBUG;
	log_at(lvl, "mock cluster", LOG_S("facility", fac), LOG_S("detail", buf));
}

/* The mock cluster logs through its handle's queue, served here so that all
 * logging happens on this thread. */
static void on_log_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct broker *b = arg;
	while (rd_kafka_poll(b->rk, 0) > 0)
		;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct broker *b = arg;
	if (sig == SIGUSR1 || sig == SIGUSR2) {
		for (int id = 1; id <= b->nbrokers; id++) {
			rd_kafka_resp_err_t e = sig == SIGUSR1
						    ? rd_kafka_mock_broker_set_down(b->mcluster, id)
						    : rd_kafka_mock_broker_set_up(b->mcluster, id);
			if (e)
				log_warn("broker state change failed", LOG_I("broker", id),
					 LOG_S("error", rd_kafka_err2str(e)));
		}
		log_info(sig == SIGUSR1 ? "brokers down" : "brokers up",
			 LOG_I("brokers", b->nbrokers));
		return;
	}
	log_info("stopping", LOG_S("signal", strsignal((int)sig)));
	event_base_loopbreak(b->base);
}

/* The file appears complete or not at all, so a reader polling for it never
 * sees half an address. */
static int write_bootstrap(const char *path, const char *bootstraps)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		log_error("bootstrap file path too long", LOG_S("path", path));
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (!f) {
		log_error("cannot write bootstrap file", LOG_S("path", tmp),
			  LOG_S("error", strerror(errno)));
		return -1;
	}
	int bad = fprintf(f, "%s\n", bootstraps) < 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) < 0) {
		log_error("cannot write bootstrap file", LOG_S("path", path),
			  LOG_S("error", strerror(errno)));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int topic_known(const struct topic *topics, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(topics[i].name, name) == 0)
			return 1;
	return 0;
}

static int topic_add(struct topic **topics, size_t *n, const char *name, int partitions)
{
	struct topic *grown = realloc(*topics, (*n + 1) * sizeof(**topics));
	if (!grown)
		return -1;
	*topics = grown;
	grown[*n].name = strdup(name);
	if (!grown[*n].name)
		return -1;
	grown[*n].partitions = partitions;
	(*n)++;
	return 0;
}

/* "NAME" or "NAME:N"; partitions -1 means "use --partitions". The mock
 * cluster takes any name, so one a Kafka broker would refuse is refused
 * here: "x:3:4" is a mistake, not topic "x:3" with 4 partitions. */
static int topic_parse(const char *arg, struct topic **topics, size_t *n)
{
	char name[KAFKA_TOPIC_MAX + 1];
	int partitions = -1;
	const char *colon = strrchr(arg, ':');
	size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
	if (len >= sizeof(name))
		return -1;
	if (colon && parse_int(colon + 1, 1, MAX_PARTITIONS, &partitions) < 0)
		return -1;
	memcpy(name, arg, len);
	name[len] = '\0';
	if (!kafka_topic_name_ok(name) || topic_known(*topics, *n, name))
		return -1;
	return topic_add(topics, n, name, partitions);
}

static int create_topics(rd_kafka_mock_cluster_t *mcluster, const struct topic *topics, size_t n,
			 int default_partitions, int replication)
{
	for (size_t i = 0; i < n; i++) {
		int parts = topics[i].partitions > 0 ? topics[i].partitions : default_partitions;
		rd_kafka_resp_err_t e =
		    rd_kafka_mock_topic_create(mcluster, topics[i].name, parts, replication);
		if (e) {
			log_error("cannot create topic", LOG_S("topic", topics[i].name),
				  LOG_S("error", rd_kafka_err2str(e)));
			return -1;
		}
		log_info("topic created", LOG_S("topic", topics[i].name),
			 LOG_I("partitions", parts));
	}
	return 0;
}

/* Removes the bootstrap file unless it no longer holds this broker's
 * address: a devbroker started before this one stopped (a restart that did
 * not wait) has written its own there, for its clients to find. No two
 * live brokers share an address, so the text tells whose the file is. */
static void remove_bootstrap(const char *path, const char *bootstraps)
{
	size_t len = 0, ours = strlen(bootstraps);
	char *text = NULL;
	int rc = config_file_read(path, ours + 1, &text, &len);
	int why = errno;
	int mine = rc == 0 && len == ours + 1 && strncmp(text, bootstraps, ours) == 0;

	free(text);
	if (rc < 0 && why != EFBIG) {
		log_warn("cannot remove bootstrap file", LOG_S("path", path),
			 LOG_S("error", strerror(why)));
		return;
	}
	if (!mine) {
		log_info("bootstrap file left: another devbroker wrote it", LOG_S("path", path));
		return;
	}
	if (unlink(path) < 0)
		log_warn("cannot remove bootstrap file", LOG_S("path", path),
			 LOG_S("error", strerror(errno)));
}

int main(int argc, char **argv)
{
	enum {
		OPT_BOOTSTRAP = 256,
		OPT_TOPIC,
		OPT_DEFAULT,
		OPT_PREFIX,
		OPT_PARTS,
		OPT_BROKERS,
		OPT_LOGLEVEL,
		OPT_HELP
	};
	static const struct option opts[] = {
	    {"bootstrap-file", required_argument, NULL, OPT_BOOTSTRAP},
	    {"topic", required_argument, NULL, OPT_TOPIC},
	    {"default-topics", no_argument, NULL, OPT_DEFAULT},
	    {"prefix", required_argument, NULL, OPT_PREFIX},
	    {"partitions", required_argument, NULL, OPT_PARTS},
	    {"brokers", required_argument, NULL, OPT_BROKERS},
	    {"log-level", required_argument, NULL, OPT_LOGLEVEL},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	const char *bootstrap_file = NULL;
	const char *prefix = DEFAULT_PREFIX;
	int partitions = DEFAULT_PARTS;
	int with_defaults = 0;
	struct topic *topics = NULL;
	size_t ntopics = 0;
	int status = 2;
	int wrote_file = 0;
	struct broker b = {.nbrokers = 1};
	struct event *sigs[4] = {NULL};
	static const int signums[4] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
	struct event *log_timer = NULL;
	char errstr[512];

	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_BOOTSTRAP:
			bootstrap_file = optarg;
			break;
		case OPT_TOPIC:
			if (topic_parse(optarg, &topics, &ntopics) < 0) {
				fprintf(
				    stderr,
				    "sluice-devbroker: bad --topic '%s' (NAME[:N]: NAME " TOPIC_RULE
				    "; N 1 to %d; each NAME once)\n",
				    optarg, KAFKA_TOPIC_MAX, MAX_PARTITIONS);
				goto usage;
			}
			break;
		case OPT_DEFAULT:
			with_defaults = 1;
			break;
		case OPT_PREFIX:
			prefix = optarg;
			break;
		case OPT_PARTS:
			if (parse_int(optarg, 1, MAX_PARTITIONS, &partitions) < 0) {
				fprintf(stderr, "sluice-devbroker: bad --partitions '%s'\n",
					optarg);
				goto usage;
			}
			break;
		case OPT_BROKERS:
			if (parse_int(optarg, 1, MAX_BROKERS, &b.nbrokers) < 0) {
				fprintf(stderr, "sluice-devbroker: bad --brokers '%s'\n", optarg);
				goto usage;
			}
			break;
		case OPT_LOGLEVEL:
			if (log_set_level(optarg) < 0) {
				fprintf(stderr, "sluice-devbroker: bad --log-level '%s'\n", optarg);
				goto usage;
			}
			break;
		case OPT_HELP:
			usage(stdout);
			status = 0;
			goto out;
		default:
			goto usage;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluice-devbroker: unexpected argument '%s'\n", argv[optind]);
		goto usage;
	}
	if (ntopics == 0 || with_defaults) {
		for (size_t i = 0; i < sizeof(default_topics) / sizeof(default_topics[0]); i++) {
			char name[KAFKA_TOPIC_MAX + 1];
			if (snprintf(name, sizeof(name), "%s%s", prefix, default_topics[i]) >=
				(int)sizeof(name) ||
			    !kafka_topic_name_ok(name)) {
				fprintf(stderr,
					"sluice-devbroker: bad --prefix '%s': the topic names it "
					"starts must be " TOPIC_RULE "\n",
					prefix, KAFKA_TOPIC_MAX);
				goto usage;
			}
			/* A topic given with --topic keeps its partitions. */
			if (!topic_known(topics, ntopics, name) &&
			    topic_add(&topics, &ntopics, name, -1) < 0) {
				log_error("out of memory");
				status = 1;
				goto out;
			}
		}
	}

	status = 1;
	signal(SIGPIPE, SIG_IGN);
	b.base = event_base_new();
	if (!b.base) {
		log_error("cannot create event loop");
		goto out;
	}
	/* test.mock.num.brokers makes the handle create the cluster and point
	 * its own bootstrap.servers at it. */
	char nbrokers[16];
	snprintf(nbrokers, sizeof(nbrokers), "%d", b.nbrokers);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "test.mock.num.brokers", nbrokers, errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK) {
		log_error("mock cluster config", LOG_S("error", errstr));
		rd_kafka_conf_destroy(conf);
		goto out;
	}
	rd_kafka_conf_set_log_cb(conf, on_log);
	b.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!b.rk) {
		log_error("cannot create mock cluster", LOG_S("error", errstr));
		rd_kafka_conf_destroy(conf);
		goto out;
	}
	rd_kafka_set_log_queue(b.rk, NULL);
	b.mcluster = rd_kafka_handle_mock_cluster(b.rk);
	if (!b.mcluster) {
		log_error("cannot create mock cluster");
		goto out;
	}
	int replication = b.nbrokers < MAX_REPLICATION ? b.nbrokers : MAX_REPLICATION;
	if (create_topics(b.mcluster, topics, ntopics, partitions, replication) < 0)
		goto out;

	for (int i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(b.base, signums[i], on_signal, &b);
		if (!sigs[i] || evsignal_add(sigs[i], NULL) < 0) {
			log_error("cannot install signal handler");
			goto out;
		}
	}
	log_timer = event_new(b.base, -1, EV_PERSIST, on_log_timer, &b);
	struct timeval tv = {0, LOG_POLL_MS * 1000};
	if (!log_timer || event_add(log_timer, &tv) < 0) {
		log_error("cannot start log timer");
		goto out;
	}

	const char *bootstraps = rd_kafka_mock_cluster_bootstraps(b.mcluster);
	if (bootstrap_file) {
		if (write_bootstrap(bootstrap_file, bootstraps) < 0)
			goto out;
		wrote_file = 1;
	}
	printf("%s\n", bootstraps);
	fflush(stdout);
	log_info("devbroker ready", LOG_S("bootstrap", bootstraps), LOG_I("brokers", b.nbrokers),
		 LOG_I("topics", (long long)ntopics));

	if (event_base_dispatch(b.base) < 0) {
		log_error("event loop failed");
		goto out;
	}
	status = 0;
	goto out;

usage:
	usage(stderr);
	status = 2;
out:
	if (wrote_file)
		remove_bootstrap(bootstrap_file, rd_kafka_mock_cluster_bootstraps(b.mcluster));
	if (log_timer)
		event_free(log_timer);
	for (int i = 0; i < 4; i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (b.rk)
		rd_kafka_destroy(b.rk);
	if (b.base)
		event_base_free(b.base);
	for (size_t i = 0; i < ntopics; i++)
		free(topics[i].name);
	free(topics);
	return status;
}
