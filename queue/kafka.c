/* kafka: librdkafka producer and consumer on the libevent loop.
 *
 * librdkafka's own threads do the network work; everything that reaches
 * sluice's code (delivery reports, messages, rebalances, logs, errors) is
 * served from the loop thread. Each handle's reply queue signals a pipe when
 * it becomes non-empty, a read event on the pipe serves the queue until it is
 * empty, and a slow timer serves it too in case a wake-up was coalesced away.
 */
#include "queue/kafka.h"

#include "lib/clock.h"
#include "lib/log.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* linger.ms: a message waits this long for others to share its request, so
 * that a burst of jobs costs a few requests; a job still reaches its worker
 * within a few milliseconds (1 ms rather than 2: each hop of a run pays it,
 * for about 2% of intake's throughput). */
#define PRODUCER_LINGER_MS "1"
/* fetch.wait.max.ms, unless kafka_consumer_opts gives one: how long a fetch
 * that finds no message waits at the broker. A Kafka broker answers it as
 * soon as a message arrives; sluice-devbroker (librdkafka's mock) only once
 * the wait is over. */
#define CONSUMER_FETCH_WAIT_MS 10
/* How long a closing consumer waits for its group coordinator. */
#define CONSUMER_CLOSE_MS 5000
/* A consumer killed outright loses its partitions after this long. */
#define CONSUMER_SESSION_TIMEOUT_MS 6000
#define CONSUMER_HEARTBEAT_MS	    1000
/* Done offsets reach the broker within this long, bounding redelivery after a crash. */
#define CONSUMER_COMMIT_INTERVAL_MS "1000"
#define SAFETY_POLL_MS		    200
#define CONTENT_TYPE		    "application/cloudevents+json"

/* partition.assignment.strategy: an eager assignor. librdkafka 2.0's
 * cooperative-sticky assignor aborts the process when a consumer is closed
 * between joining its group and its first assignment
 * (rd_kafka_sticky_assignor_state_destroy on a NULL state, librdkafka issue
 * #4312, fixed in later releases), which happens whenever a worker stops while
 * its group keeps rebalancing. The eager assignors keep no such state.
 * roundrobin rather than range: a worker subscribes to one jobs topic per kind
 * it runs, and range would hand the same member the odd partition of every
 * topic. */
#define CONSUMER_ASSIGNOR "roundrobin"

/* statistics.interval.ms of consumers: how fresh kafka_consumer_lag is. */
#define CONSUMER_STATS_INTERVAL_MS "5000"

/* The wake-up machinery shared by producer and consumer. */
struct kafka_wake {
	int fds[2];
	struct event *io;
	struct event *timer;
};

struct kafka_producer {
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;
	struct kafka_wake wake;
	int outstanding;
	rd_kafka_topic_t **warm; /* handles that keep known topics' metadata fresh */
	size_t nwarm;
	int fatal; /* librdkafka raised a fatal error: nothing more is delivered */
};

/* One per produced message, the opaque of its delivery report. */
struct delivery {
	kafka_delivery_cb cb;
	void *arg;
};

struct ticket_list {
	struct kafka_ticket *head;
	struct kafka_ticket *tail;
};

/* An assigned partition and its in-flight messages in offset order. */
struct part {
	struct part *next;
	char *topic;
	int32_t partition;
	struct ticket_list tickets;
};

struct kafka_ticket {
	struct part *part; /* NULL once the partition was revoked */
	struct kafka_ticket *prev;
	struct kafka_ticket *next;
	int64_t offset;
	int done;
};

struct kafka_consumer {
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;
	struct kafka_wake wake;
	kafka_message_cb cb;
	void *arg;
	int paused;
	int assigned;
	struct part *parts;
	/* Tickets of revoked partitions, kept until done or freed. */
	struct ticket_list orphans;
	json_t *stats_topics; /* "topics" of the last statistics report */
};

/* --- shared ---------------------------------------------------------------- */

/* librdkafka logs a refused connection at LOG_ERR; it retries, and error_cb
 * reports the same event, so syslog 3 is only a warning here. */
static enum log_level syslog_to_level(int level)
{
	if (level <= 2)
		return LOG_LEVEL_ERROR;
	if (level <= 4)
		return LOG_LEVEL_WARN;
	if (level <= 6)
		return LOG_LEVEL_INFO;
	return LOG_LEVEL_DEBUG;
}

/* Called from the loop thread only: log.queue routes librdkafka's logs
 * through the handle's queue. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	log_at(syslog_to_level(level), "kafka", LOG_S("client", rd_kafka_name(rk)),
	       LOG_S("facility", fac), LOG_S("detail", buf));
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[512];
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		/* The idempotent producer cannot go on: every later message
		 * fails. What the outbox holds waits there for another process,
		 * and this one stops for its supervisor to start it again. */
		struct kafka_producer *p = rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? opaque : NULL;
		log_error("kafka fatal error", LOG_S("client", rd_kafka_name(rk)),
			  LOG_S("error", fatal),
			  LOG_S("then", p ? "stopping, to be restarted" : "none"));
		if (p && !p->fatal) {
			p->fatal = 1;
			raise(SIGTERM);
		}
		return;
	}
	log_warn("kafka error", LOG_S("client", rd_kafka_name(rk)),
		 LOG_S("error", rd_kafka_err2str((rd_kafka_resp_err_t)err)),
		 LOG_S("reason", reason));
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
		    size_t errlen)
{
	char errstr[256];
	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka config %s: %s", name, errstr);
		return -1;
	}
	return 0;
}

/* A librdkafka built with Cyrus SASL (Debian's is) has it load every SASL
 * plugin installed when it first initialises: Berkeley DB and nine plugins,
 * about 0.6 MiB in every process. sluice configures no SASL, and librdkafka
 * would use Cyrus only for GSSAPI, so Cyrus is told first to look for them
 * nowhere (sasl_set_path, looked up at run time: a librdkafka without Cyrus
 * has none). Not when SASL_PATH is set: where Cyrus looks is then the
 * environment's to say, as Cyrus documents. */
static void no_sasl_plugins(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	if (getenv("SASL_PATH"))
		return;
	int (*set_path)(int type, char *path);
	*(void **)&set_path = dlsym(RTLD_DEFAULT, "sasl_set_path");
	if (set_path)
		set_path(0 /* SASL_PATH_TYPE_PLUGIN */, (char *)"");
}

/* Settings common to both clients; brokers already resolved. */
static rd_kafka_conf_t *conf_common(const char *brokers, char *err, size_t errlen)
{
	no_sasl_plugins();
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (!conf) {
		snprintf(err, errlen, "kafka config: out of memory");
		return NULL;
	}
	if (conf_set(conf, "bootstrap.servers", brokers, err, errlen) < 0 ||
	    conf_set(conf, "client.id", "sluice", err, errlen) < 0 ||
	    conf_set(conf, "socket.nagle.disable", "true", err, errlen) < 0 ||
	    /* Reconnect soon after an outage rather than backing off to 10 s. */
	    conf_set(conf, "reconnect.backoff.max.ms", "1000", err, errlen) < 0 ||
	    conf_set(conf, "log.queue", "true", err, errlen) < 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_error_cb(conf, on_error);
	return conf;
}

static void wake_drain(int fd)
{
	char buf[64];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static int wake_init(struct kafka_wake *w, struct event_base *base, rd_kafka_queue_t *queue,
		     event_callback_fn on_io, event_callback_fn on_timer, void *arg, char *err,
		     size_t errlen)
{
	w->fds[0] = w->fds[1] = -1;
	if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(err, errlen, "kafka wake pipe: %s", strerror(errno));
		return -1;
	}
	w->io = event_new(base, w->fds[0], EV_READ | EV_PERSIST, on_io, arg);
	w->timer = event_new(base, -1, EV_PERSIST, on_timer, arg);
	struct timeval tv = {0, SAFETY_POLL_MS * 1000};
	if (!w->io || !w->timer || event_add(w->io, NULL) < 0 || event_add(w->timer, &tv) < 0) {
		snprintf(err, errlen, "kafka wake events: cannot register");
		return -1;
	}
	rd_kafka_queue_io_event_enable(queue, w->fds[1], "1", 1);
	return 0;
}

/* Safe on a partly initialised wake (fds -1, events NULL). */
static void wake_free(struct kafka_wake *w, rd_kafka_queue_t *queue)
{
	if (queue && w->fds[1] >= 0)
		rd_kafka_queue_io_event_enable(queue, -1, NULL, 0);
	if (w->io)
		event_free(w->io);
	if (w->timer)
		event_free(w->timer);
	w->io = w->timer = NULL;
	for (int i = 0; i < 2; i++) {
		if (w->fds[i] >= 0)
			close(w->fds[i]);
		w->fds[i] = -1;
	}
}

char *kafka_brokers_resolve(const char *brokers, char *err, size_t errlen)
{
	if (!brokers || !*brokers) {
		snprintf(err, errlen, "kafka brokers: none configured");
		return NULL;
	}
	if (brokers[0] != '@') {
		char *copy = strdup(brokers);
		if (!copy)
			snprintf(err, errlen, "kafka brokers: out of memory");
		return copy;
	}

	const char *path = brokers + 1;
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "kafka brokers file %s: %s", path, strerror(errno));
		return NULL;
	}
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	if (n < 0) {
		snprintf(err, errlen, "kafka brokers file %s: empty", path);
		free(line);
		return NULL;
	}
	char *start = line;
	while (*start && isspace((unsigned char)*start))
		start++;
	char *end = start + strlen(start);
	while (end > start && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (!*start) {
		snprintf(err, errlen, "kafka brokers file %s: first line is empty", path);
		free(line);
		return NULL;
	}
	memmove(line, start, (size_t)(end - start) + 1);
	return line;
}

/* --- producer -------------------------------------------------------------- */

static void producer_serve(struct kafka_producer *p)
{
	while (rd_kafka_poll(p->rk, 0) > 0)
		;
}

static void producer_on_io(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	wake_drain(fd);
	producer_serve(arg);
}

static void producer_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	producer_serve(arg);
}

/* Errors about the message itself, which no retry, later or elsewhere, can
 * mend. The others (a broker down, a topic not created yet, a timeout, no
 * authorisation) may pass. */
static int refused_for_good(rd_kafka_resp_err_t e)
{
	switch (e) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_MSG:
	case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		return 1;
	default:
		return 0;
	}
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct kafka_producer *p = opaque;
	struct delivery *d = m->_private;
	p->outstanding--;
	if (!d)
		return;
	if (d->cb)
		d->cb(m->err ? rd_kafka_err2str(m->err) : NULL, refused_for_good(m->err), d->arg);
	free(d);
}

int kafka_topic_name_ok(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len <= KAFKA_TOPIC_MAX && strspn(name, KAFKA_TOPIC_CHARS) == len &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

struct kafka_producer *kafka_producer_new(struct event_base *base, const char *brokers, char *err,
					  size_t errlen)
{
	char errstr[512];
	rd_kafka_conf_t *conf = NULL;
	char *list = NULL;
	struct kafka_producer *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "kafka producer: out of memory");
		return NULL;
	}
	p->wake.fds[0] = p->wake.fds[1] = -1;
	list = kafka_brokers_resolve(brokers, err, errlen);
	if (!list)
		goto fail;
	conf = conf_common(list, err, errlen);
	if (!conf)
		goto fail;
	char timeout[16];
	snprintf(timeout, sizeof(timeout), "%d", KAFKA_MESSAGE_TIMEOUT_MS);
	if (conf_set(conf, "enable.idempotence", "true", err, errlen) < 0 ||
	    conf_set(conf, "acks", "all", err, errlen) < 0 ||
	    conf_set(conf, "linger.ms", PRODUCER_LINGER_MS, err, errlen) < 0 ||
	    conf_set(conf, "message.timeout.ms", timeout, err, errlen) < 0)
		goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, p);

	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!p->rk) {
		snprintf(err, errlen, "kafka producer: %s", errstr);
		goto fail;
	}
	conf = NULL; /* owned by the handle now */
	p->queue = rd_kafka_queue_get_main(p->rk);
	rd_kafka_set_log_queue(p->rk, NULL);
	if (wake_init(&p->wake, base, p->queue, producer_on_io, producer_on_timer, p, err, errlen) <
	    0)
		goto fail;
	free(list);
	return p;

fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	wake_free(&p->wake, p->queue);
	if (p->queue)
		rd_kafka_queue_destroy(p->queue);
	if (p->rk)
		rd_kafka_destroy(p->rk);
	free(p);
	free(list);
	return NULL;
}

int kafka_produce(struct kafka_producer *p, const char *topic, const char *key, const char *value,
		  size_t len, kafka_delivery_cb cb, void *arg, char *err, size_t errlen)
{
	struct delivery *d = malloc(sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		log_error("kafka produce: out of memory", LOG_S("topic", topic));
		return -1;
	}
	d->cb = cb;
	d->arg = arg;
	rd_kafka_resp_err_t e = rd_kafka_producev(
	    p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
	    RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_HEADER("content-type", CONTENT_TYPE, -1), RD_KAFKA_V_OPAQUE(d),
	    RD_KAFKA_V_END);
	if (e) {
		snprintf(err, errlen, "%s", rd_kafka_err2str(e));
		log_warn("kafka produce failed", LOG_S("topic", topic), LOG_S("error", err));
		free(d);
		return refused_for_good(e) ? KAFKA_REFUSED : -1;
	}
	p->outstanding++;
	return 0;
}

int kafka_producer_failed(const struct kafka_producer *p)
{
	return p->fatal;
}

rd_kafka_t *kafka_producer_handle(struct kafka_producer *p)
{
	return p->rk;
}

int kafka_producer_outstanding(const struct kafka_producer *p)
{
	return p->outstanding;
}

/* Every callback still owed is called before this returns: with the delivery
 * outcome if it arrived within timeout_ms, else with a purge error, so that
 * no caller waits forever on (or leaks the argument of) a lost report. */
void kafka_producer_free(struct kafka_producer *p, int timeout_ms)
{
	if (!p)
		return;
	wake_free(&p->wake, p->queue);
	if (p->outstanding > 0)
		rd_kafka_flush(p->rk, timeout_ms);
	if (p->outstanding > 0) {
		log_warn("kafka producer: undelivered messages purged",
			 LOG_I("count", p->outstanding));
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		/* Purge reports are enqueued at once; bounded in case one is not. */
		for (int i = 0; i < 50 && p->outstanding > 0; i++)
			rd_kafka_poll(p->rk, 20);
	}
	for (size_t i = 0; i < p->nwarm; i++)
		rd_kafka_topic_destroy(p->warm[i]);
	free(p->warm);
	rd_kafka_queue_destroy(p->queue);
	rd_kafka_destroy(p->rk);
	free(p);
}

int kafka_producer_warm(struct kafka_producer *p, const char *const *topics, size_t n)
{
	rd_kafka_topic_t **grown = realloc(p->warm, (p->nwarm + n) * sizeof(*grown));
	if (!grown)
		return -1;
	p->warm = grown;
	for (size_t i = 0; i < n; i++) {
		/* A new handle asks the brokers for the topic's leaders at once. */
		rd_kafka_topic_t *t = rd_kafka_topic_new(p->rk, topics[i], NULL);
		if (!t) {
			log_warn("kafka: cannot look up topic", LOG_S("topic", topics[i]),
				 LOG_S("error", rd_kafka_err2str(rd_kafka_last_error())));
			continue;
		}
		p->warm[p->nwarm++] = t;
	}
	return 0;
}

/* --- consumer tickets ------------------------------------------------------ */

static void tickets_append(struct ticket_list *l, struct kafka_ticket *t)
{
	t->next = NULL;
	t->prev = l->tail;
	if (l->tail)
		l->tail->next = t;
	else
		l->head = t;
	l->tail = t;
}

static void tickets_remove(struct ticket_list *l, struct kafka_ticket *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		l->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		l->tail = t->prev;
	t->prev = t->next = NULL;
}

static void tickets_free(struct ticket_list *l)
{
	struct kafka_ticket *t = l->head;
	while (t) {
		struct kafka_ticket *next = t->next;
		free(t);
		t = next;
	}
	l->head = l->tail = NULL;
}

static struct part *part_find(struct kafka_consumer *c, const char *topic, int32_t partition)
{
	for (struct part *pt = c->parts; pt; pt = pt->next)
		if (pt->partition == partition && strcmp(pt->topic, topic) == 0)
			return pt;
	return NULL;
}

static struct part *part_get(struct kafka_consumer *c, const char *topic, int32_t partition)
{
	struct part *pt = part_find(c, topic, partition);
	if (pt)
		return pt;
	pt = calloc(1, sizeof(*pt));
	if (!pt)
		return NULL;
	pt->topic = strdup(topic);
	if (!pt->topic) {
		free(pt);
		return NULL;
	}
	pt->partition = partition;
	pt->next = c->parts;
	c->parts = pt;
	return pt;
}

/* The partition is no longer ours: its in-flight tickets become orphans whose
 * done stores nothing, since the new owner consumes from the last commit.
 * Those done already (behind one still in flight) are nobody's: freed. */
static void part_revoke(struct kafka_consumer *c, const char *topic, int32_t partition)
{
	for (struct part **pp = &c->parts; *pp; pp = &(*pp)->next) {
		struct part *pt = *pp;
		if (pt->partition != partition || strcmp(pt->topic, topic) != 0)
			continue;
		struct kafka_ticket *t;
		while ((t = pt->tickets.head)) {
			tickets_remove(&pt->tickets, t);
			if (t->done) {
				free(t);
				continue;
			}
			t->part = NULL;
			tickets_append(&c->orphans, t);
		}
		*pp = pt->next;
		free(pt->topic);
		free(pt);
		return;
	}
}

static void offset_store(struct kafka_consumer *c, const struct part *pt, int64_t next)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	if (!l) {
		log_error("kafka offset store: out of memory", LOG_S("topic", pt->topic));
		return;
	}
	rd_kafka_topic_partition_list_add(l, pt->topic, pt->partition)->offset = next;
	rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
	if (!e)
		e = l->elems[0].err;
	if (e)
		log_warn("kafka offset store failed", LOG_S("topic", pt->topic),
			 LOG_I("partition", pt->partition), LOG_I("offset", next),
			 LOG_S("error", rd_kafka_err2str(e)));
	rd_kafka_topic_partition_list_destroy(l);
}

int kafka_ticket_revoked(const struct kafka_ticket *t)
{
	return t != NULL && t->part == NULL;
}

size_t kafka_consumer_orphans(const struct kafka_consumer *c)
{
	size_t n = 0;
	for (const struct kafka_ticket *t = c->orphans.head; t; t = t->next)
		n++;
	return n;
}

void kafka_consumer_done(struct kafka_consumer *c, struct kafka_ticket *t)
{
	if (!t)
		return;
	struct part *pt = t->part;
	if (!pt) {
		tickets_remove(&c->orphans, t);
		free(t);
		return;
	}
	t->done = 1;
	int64_t next = -1;
	struct kafka_ticket *h;
	while ((h = pt->tickets.head) && h->done) {
		next = h->offset + 1;
		tickets_remove(&pt->tickets, h);
		free(h);
	}
	if (next >= 0)
		offset_store(c, pt, next);
}

/* --- consumer -------------------------------------------------------------- */

static void log_partitions(const char *msg, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++)
		log_info(msg, LOG_S("topic", parts->elems[i].topic),
			 LOG_I("partition", parts->elems[i].partition));
}

/* The group rebalances eagerly (see CONSUMER_ASSIGNOR): every rebalance
 * revokes the whole assignment and then assigns a whole new one, so each
 * call replaces what this consumer owns. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct kafka_consumer *c = opaque;
	rd_kafka_resp_err_t e;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_partitions("kafka partition assigned", parts);
		e = rd_kafka_assign(rk, parts);
		if (!e) {
			c->assigned = parts->cnt;
			if (c->paused)
				e = rd_kafka_pause_partitions(rk, parts);
		}
	} else {
		if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			log_partitions(rd_kafka_assignment_lost(rk) ? "kafka partition lost"
								    : "kafka partition revoked",
				       parts);
		else
			log_error("kafka rebalance failed", LOG_S("error", rd_kafka_err2str(err)));
		for (int i = 0; i < parts->cnt; i++)
			part_revoke(c, parts->elems[i].topic, parts->elems[i].partition);
		e = rd_kafka_assign(rk, NULL);
		c->assigned = 0;
	}
	if (e)
		log_error("kafka assignment failed", LOG_S("error", rd_kafka_err2str(e)));
}

/* Without a ticket the message could be lost from the contiguity order, so
 * it is fetched again instead of being handed over. */
static void message_refetch(struct kafka_consumer *c, const rd_kafka_message_t *m)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	if (!l)
		return;
	rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset =
	    m->offset;
	rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, l, 0);
	if (error)
		rd_kafka_error_destroy(error);
	rd_kafka_topic_partition_list_destroy(l);
}

static void message_deliver(struct kafka_consumer *c, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	struct part *pt = part_get(c, topic, m->partition);
	struct kafka_ticket *t = pt ? calloc(1, sizeof(*t)) : NULL;
	if (!t) {
		log_error("kafka consume: out of memory", LOG_S("topic", topic));
		message_refetch(c, m);
		return;
	}
	t->part = pt;
	t->offset = m->offset;
	tickets_append(&pt->tickets, t);

	struct kafka_message km = {
	    .topic = topic,
	    .partition = m->partition,
	    .offset = m->offset,
	    .key = m->key,
	    .key_len = m->key ? m->key_len : 0,
	    .value = m->payload,
	    .len = m->payload ? m->len : 0,
	};
	c->cb(&km, t, c->arg);
}

/* Served from the loop thread like every other callback; 0 lets librdkafka
 * free the text. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct kafka_consumer *c = opaque;
	(void)rk;
	json_t *stats = json_loadb(json, len, 0, NULL);
	json_t *topics = json_object_get(stats, "topics");
	if (json_is_object(topics)) {
		json_decref(c->stats_topics);
		c->stats_topics = json_incref(topics);
	}
	json_decref(stats);
	return 0;
}

void kafka_consumer_lag(const struct kafka_consumer *c, kafka_lag_cb cb, void *arg)
{
	const char *topic, *key;
	json_t *t, *p;
	json_object_foreach(c->stats_topics, topic, t)
	{
		json_object_foreach(json_object_get(t, "partitions"), key, p)
		{
			json_int_t partition = json_integer_value(json_object_get(p, "partition"));
			json_t *lag = json_object_get(p, "consumer_lag");
			/* Partition -1 is librdkafka's own; a partition not assigned
			 * here is not "desired" and its lag is -1. */
			if (partition < 0 || !json_is_true(json_object_get(p, "desired")) ||
			    !json_is_integer(lag) || json_integer_value(lag) < 0)
				continue;
			cb(topic, (int32_t)partition, (int64_t)json_integer_value(lag), arg);
		}
	}
}

static void consumer_serve(struct kafka_consumer *c)
{
	rd_kafka_message_t *m;
	while ((m = rd_kafka_consumer_poll(c->rk, 0))) {
		if (!m->err)
			message_deliver(c, m);
		else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn("kafka consume error", LOG_S("error", rd_kafka_message_errstr(m)),
				 LOG_S("topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""));
		rd_kafka_message_destroy(m);
	}
}

static void consumer_on_io(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	wake_drain(fd);
	consumer_serve(arg);
}

static void consumer_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	consumer_serve(arg);
}

struct kafka_consumer *kafka_consumer_new(struct event_base *base, const char *brokers,
					  const char *group, const char *const *topics,
					  size_t ntopics, kafka_message_cb cb, void *arg, char *err,
					  size_t errlen)
{
	return kafka_consumer_new_opts(base, brokers, group, topics, ntopics, cb, arg, NULL, err,
				       errlen);
}

struct kafka_consumer *kafka_consumer_new_opts(struct event_base *base, const char *brokers,
					       const char *group, const char *const *topics,
					       size_t ntopics, kafka_message_cb cb, void *arg,
					       const struct kafka_consumer_opts *opts, char *err,
					       size_t errlen)
{
	char errstr[512];
	char session[16], heartbeat[16], fetch_wait[16];
	int session_ms = opts && opts->session_timeout_ms > 0 ? opts->session_timeout_ms
							      : CONSUMER_SESSION_TIMEOUT_MS;
	/* Three heartbeats per session, as Kafka recommends, but at least one a second. */
	int heartbeat_ms =
	    session_ms / 3 < CONSUMER_HEARTBEAT_MS ? session_ms / 3 : CONSUMER_HEARTBEAT_MS;
	snprintf(session, sizeof(session), "%d", session_ms);
	snprintf(heartbeat, sizeof(heartbeat), "%d", heartbeat_ms > 0 ? heartbeat_ms : 1);
	snprintf(fetch_wait, sizeof(fetch_wait), "%d",
		 opts && opts->fetch_wait_ms > 0 ? opts->fetch_wait_ms : CONSUMER_FETCH_WAIT_MS);
	rd_kafka_conf_t *conf = NULL;
	rd_kafka_topic_partition_list_t *subs = NULL;
	char *list = NULL;
	struct kafka_consumer *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "kafka consumer: out of memory");
		return NULL;
	}
	c->wake.fds[0] = c->wake.fds[1] = -1;
	list = kafka_brokers_resolve(brokers, err, errlen);
	if (!list)
		goto fail;
	c->cb = cb;
	c->arg = arg;
	if (!group || !*group || ntopics == 0 || !cb) {
		snprintf(err, errlen, "kafka consumer: a group, a callback and topics are needed");
		goto fail;
	}
	conf = conf_common(list, err, errlen);
	if (!conf)
		goto fail;
	if (conf_set(conf, "group.id", group, err, errlen) < 0 ||
	    conf_set(conf, "partition.assignment.strategy", CONSUMER_ASSIGNOR, err, errlen) < 0 ||
	    conf_set(conf, "enable.auto.commit", "true", err, errlen) < 0 ||
	    conf_set(conf, "auto.commit.interval.ms", CONSUMER_COMMIT_INTERVAL_MS, err, errlen) <
		0 ||
	    conf_set(conf, "enable.auto.offset.store", "false", err, errlen) < 0 ||
	    conf_set(conf, "auto.offset.reset", "earliest", err, errlen) < 0 ||
	    conf_set(conf, "fetch.wait.max.ms", fetch_wait, err, errlen) < 0 ||
	    conf_set(conf, "session.timeout.ms", session, err, errlen) < 0 ||
	    conf_set(conf, "heartbeat.interval.ms", heartbeat, err, errlen) < 0 ||
	    conf_set(conf, "statistics.interval.ms", CONSUMER_STATS_INTERVAL_MS, err, errlen) < 0)
		goto fail;
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	rd_kafka_conf_set_opaque(conf, c);

	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!c->rk) {
		snprintf(err, errlen, "kafka consumer: %s", errstr);
		goto fail;
	}
	conf = NULL; /* owned by the handle now */
	rd_kafka_set_log_queue(c->rk, NULL);
	rd_kafka_poll_set_consumer(c->rk);
	c->queue = rd_kafka_queue_get_consumer(c->rk);
	if (wake_init(&c->wake, base, c->queue, consumer_on_io, consumer_on_timer, c, err, errlen) <
	    0)
		goto fail;

	subs = rd_kafka_topic_partition_list_new((int)ntopics);
	if (!subs) {
		snprintf(err, errlen, "kafka consumer: out of memory");
		goto fail;
	}
	for (size_t i = 0; i < ntopics; i++)
		rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
	if (e) {
		snprintf(err, errlen, "kafka subscribe: %s", rd_kafka_err2str(e));
		goto fail;
	}
	rd_kafka_topic_partition_list_destroy(subs);
	free(list);
	return c;

fail:
	if (subs)
		rd_kafka_topic_partition_list_destroy(subs);
	if (conf)
		rd_kafka_conf_destroy(conf);
	wake_free(&c->wake, c->queue);
	if (c->queue)
		rd_kafka_queue_destroy(c->queue);
	if (c->rk)
		rd_kafka_destroy(c->rk);
	free(c);
	free(list);
	return NULL;
}

int kafka_consumer_assigned(const struct kafka_consumer *c)
{
	return c->assigned;
}

static void consumer_pause_resume(struct kafka_consumer *c, int pause)
{
	/* Resuming a partition that is not paused restarts its fetcher from
	 * the last consumed position: messages would come again. */
	if (c->paused == pause)
		return;
	c->paused = pause;
	rd_kafka_topic_partition_list_t *assigned = NULL;
	rd_kafka_resp_err_t e = rd_kafka_assignment(c->rk, &assigned);
	if (!e)
		e = pause ? rd_kafka_pause_partitions(c->rk, assigned)
			  : rd_kafka_resume_partitions(c->rk, assigned);
	if (e)
		log_warn(pause ? "kafka pause failed" : "kafka resume failed",
			 LOG_S("error", rd_kafka_err2str(e)));
	if (assigned)
		rd_kafka_topic_partition_list_destroy(assigned);
}

void kafka_consumer_pause(struct kafka_consumer *c)
{
	consumer_pause_resume(c, 1);
}

void kafka_consumer_resume(struct kafka_consumer *c)
{
	consumer_pause_resume(c, 0);
}

void kafka_consumer_leave(struct kafka_consumer *c)
{
	rd_kafka_resp_err_t e = rd_kafka_unsubscribe(c->rk);
	if (e)
		log_error("kafka: cannot leave the group", LOG_S("error", rd_kafka_err2str(e)));
}

/* Closing commits what kafka_consumer_done stored and leaves the group, so the
 * partitions move to another member at once rather than after the session
 * timeout. It blocks the loop at shutdown, for CONSUMER_CLOSE_MS at most:
 * librdkafka's own close waits for the group coordinator without end, and
 * a process told to stop while its broker is away must stop all the same
 * (its partitions then move after the session timeout, and what it had not
 * committed is consumed again). Tickets still outstanding are freed here;
 * the caller must not pass them to kafka_consumer_done afterwards. */
void kafka_consumer_free(struct kafka_consumer *c)
{
	if (!c)
		return;
	wake_free(&c->wake, c->queue);
	rd_kafka_error_t *error = rd_kafka_consumer_close_queue(c->rk, c->queue);
	if (error) {
		log_warn("kafka consumer close", LOG_S("error", rd_kafka_error_string(error)));
		rd_kafka_error_destroy(error);
	}
	/* The rebalance callback runs from the poll as ever; a message that
	 * still arrives is not taken (its offset is not stored). */
	long long deadline = clock_now_ms() + CONSUMER_CLOSE_MS;
	while (!error && !rd_kafka_consumer_closed(c->rk) && clock_now_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 50);
		if (m)
			rd_kafka_message_destroy(m);
	}
	int closed = rd_kafka_consumer_closed(c->rk);
	if (!closed)
		log_warn("kafka consumer not closed in time: leaving without the broker",
			 LOG_I("waited_ms", CONSUMER_CLOSE_MS));
	rd_kafka_queue_destroy(c->queue);
	rd_kafka_destroy_flags(c->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	while (c->parts) {
		struct part *pt = c->parts;
		c->parts = pt->next;
		tickets_free(&pt->tickets);
		free(pt->topic);
		free(pt);
	}
	tickets_free(&c->orphans);
	json_decref(c->stats_topics);
	free(c);
}
