/* Tests for queue/outbox: a real redis-server on a free port and an
 * in-process librdkafka mock cluster; entries written to the outbox stream
 * reach Kafka and leave the stream, and entries a dead dispatcher left
 * pending are claimed and produced; the events stream is published in
 * order by one dispatcher at a time, the holder of its lease. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "queue/outbox.h"
#include "tests/unit/logcapture.h"
#include "tests/unit/redisd.h"

#define TOPIC "sluice.events"

static struct redisd srv;

static struct {
	rd_kafka_t *rk; /* owns the mock cluster */
	rd_kafka_mock_cluster_t *mc;
	const char *bootstraps;
} kc;

static struct event_base *base;
static redisContext *sync_redis;    /* the test's own view of Redis */
static struct kafka_producer *prod; /* shared: its start-up takes a while */
static rd_kafka_t *reader;	    /* reads TOPIC from the start */

static void silent_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	(void)fac;
	(void)buf;
}

static int group_setup(void **state)
{
	char errstr[256];
	(void)state;
	if (redisd_setup(&srv, "outbox") < 0)
		return -1;
	sync_redis = redisd_connect(&srv);
	if (!sync_redis)
		return -1;

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr, sizeof(errstr)) !=
	    RD_KAFKA_CONF_OK)
		return -1;
	rd_kafka_conf_set_log_cb(conf, silent_log);
	kc.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!kc.rk)
		return -1;
	kc.mc = rd_kafka_handle_mock_cluster(kc.rk);
	if (!kc.mc || rd_kafka_mock_topic_create(kc.mc, TOPIC, 1, 1) != 0)
		return -1;
	kc.bootstraps = rd_kafka_mock_cluster_bootstraps(kc.mc);
	base = event_base_new();
	if (!base)
		return -1;
	prod = kafka_producer_new(base, kc.bootstraps, errstr, sizeof(errstr));
	if (!prod)
		return -1;

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", kc.bootstraps, errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "group.id", "outbox-test", errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK)
		return -1;
	rd_kafka_conf_set_log_cb(conf, silent_log);
	reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!reader)
		return -1;
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	int rc = rd_kafka_assign(reader, parts) ? -1 : 0;
	rd_kafka_topic_partition_list_destroy(parts);
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	redisFree(sync_redis);
	redisd_teardown(&srv);
	rd_kafka_consumer_close(reader);
	rd_kafka_destroy(reader);
	kafka_producer_free(prod, 1000);
	rd_kafka_destroy(kc.rk);
	event_base_free(base);
	return 0;
}

static long long sync_int(const char *fmt, const char *arg)
{
	redisReply *rep = redisCommand(sync_redis, fmt, arg);
	assert_non_null(rep);
	long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
	freeReplyObject(rep);
	return v;
}

static void sync_ok(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *rep = redisvCommand(sync_redis, fmt, ap);
	va_end(ap);
	assert_non_null(rep);
	assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
	freeReplyObject(rep);
}

/* Runs the loop until cond(arg) holds or ms pass; returns cond(arg). */
static int run_until(int (*cond)(void *), void *arg, int ms)
{
	int64_t end = clock_mono_ms() + ms;
	while (!cond(arg) && clock_mono_ms() < end) {
		struct timeval tv = {0, 10000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return cond(arg);
}

struct fixture {
	struct redis *r;
	struct outbox *o;
	const char *stream;
};

static int is_connected(void *arg)
{
	return redis_connected(arg);
}

/* A dispatcher of its own Redis client; with events, it also publishes
 * the events stream when it holds the lease, as consumer. */
static void dispatcher_start_on(struct fixture *fx, struct kafka_producer *p, const char *prefix,
				const char *stream, const char *consumer, int events)
{
	fx->stream = stream;
	fx->r = redis_new(base, srv.url, NULL, NULL, 1000);
	assert_non_null(fx->r);
	assert_true(run_until(is_connected, fx->r, 3000));
	fx->o = outbox_new(base, fx->r, p, prefix, "sluice.", consumer, events);
	assert_non_null(fx->o);
}

static void dispatcher_start(struct fixture *fx, const char *prefix, const char *stream,
			     const char *consumer, int events)
{
	dispatcher_start_on(fx, prod, prefix, stream, consumer, events);
}

static void fixture_start(struct fixture *fx, const char *prefix, const char *stream)
{
	dispatcher_start(fx, prefix, stream, "test-host:1", 0);
}

static void fixture_stop(struct fixture *fx)
{
	outbox_free(fx->o);
	redis_free(fx->r);
}

static long long pending_count(const char *stream)
{
	redisReply *rep = redisCommand(sync_redis, "XPENDING %s dispatch", stream);
	long long n = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0
			  ? rep->element[0]->integer
			  : -1;
	freeReplyObject(rep);
	return n;
}

/* The outbox is drained: nothing in the stream, pending or in flight. */
static int drained(void *arg)
{
	struct fixture *fx = arg;
	if (outbox_in_flight(fx->o) != 0)
		return 0;
	redisReply *rep = redisCommand(sync_redis, "XLEN %s", fx->stream);
	long long len = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
	freeReplyObject(rep);
	if (len != 0)
		return 0;
	return pending_count(fx->stream) == 0;
}

struct got {
	int n;
	char key[16][32];
	char value[16][128];
};

/* Reads what reached TOPIC since the last call, for up to ms. */
static void consume(struct got *g, int want, int ms)
{
	memset(g, 0, sizeof(*g));
	int64_t end = clock_mono_ms() + ms;
	while (g->n < want && clock_mono_ms() < end) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(reader, 50);
		if (!m)
			continue;
		if (!m->err && g->n < 16) {
			snprintf(g->key[g->n], sizeof(g->key[0]), "%.*s", (int)m->key_len,
				 (const char *)m->key);
			snprintf(g->value[g->n], sizeof(g->value[0]), "%.*s", (int)m->len,
				 (const char *)m->payload);
			g->n++;
		}
		rd_kafka_message_destroy(m);
	}
}

static void entries_are_produced_in_order_and_deleted(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t1:", "t1:outbox");
	for (int i = 0; i < 3; i++) {
		char value[64];
		snprintf(value, sizeof(value), "{\"n\":%d}", i);
		sync_ok("XADD t1:outbox * topic %s key %s value %s", TOPIC, "run-1", value);
	}
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 5000));

	struct got g;
	consume(&g, 3, 5000);
	assert_int_equal(g.n, 3);
	for (int i = 0; i < 3; i++) {
		char value[64];
		snprintf(value, sizeof(value), "{\"n\":%d}", i);
		assert_string_equal(g.key[i], "run-1");
		assert_string_equal(g.value[i], value);
	}
	fixture_stop(&fx);
}

/* A script that writes many messages at once writes them as one entry:
 * topic, key, value repeated. They are produced in order, a message without
 * a key with none, and the entry is deleted once all are delivered. */
static void an_entry_of_several_messages_is_produced_whole_in_order(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t9:", "t9:outbox");
	sync_ok(
	    "XADD t9:outbox * topic %s key %s value %s topic %s key %s value %s topic %s value %s",
	    TOPIC, "run-9", "{\"m\":1}", TOPIC, "run-9", "{\"m\":2}", TOPIC, "{\"m\":3}");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 5000));

	struct got g;
	consume(&g, 3, 5000);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.value[0], "{\"m\":1}");
	assert_string_equal(g.value[1], "{\"m\":2}");
	assert_string_equal(g.value[2], "{\"m\":3}");
	assert_string_equal(g.key[0], "run-9");
	assert_string_equal(g.key[1], "run-9");
	assert_string_equal(g.key[2], "");
	fixture_stop(&fx);
}

static void the_tick_finds_entries_without_a_kick(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t2:", "t2:outbox");
	/* Let the group be created first, then write as a script would. */
	struct timeval tv = {0, 300000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(sync_int("EXISTS %s", "t2:outbox"), 1);
	sync_ok("XADD t2:outbox * topic %s key %s value %s", TOPIC, "run-2", "{\"tick\":true}");
	assert_true(run_until(drained, &fx, 3000));

	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.key[0], "run-2");
	assert_string_equal(g.value[0], "{\"tick\":true}");
	fixture_stop(&fx);
}

static int never(void *arg)
{
	(void)arg;
	return 0;
}

/* An entry (keyed key) written to the outbox of prefix is neither read nor
 * claimed by fx's dispatcher, which is then stopped; a healthy dispatcher
 * publishes it. */
static void assert_entry_left_for_another(struct fixture *fx, const char *prefix, const char *key)
{
	sync_ok("XADD %s * topic %s key %s value %s", fx->stream, TOPIC, key, "{}");
	outbox_kick(fx->o);
	run_until(never, NULL, 500);
	assert_int_equal(sync_int("XLEN %s", fx->stream), 1);
	assert_true(pending_count(fx->stream) <= 0);
	const char *stream = fx->stream;
	fixture_stop(fx);

	struct fixture ok;
	fixture_start(&ok, prefix, stream);
	assert_true(run_until(drained, &ok, 5000));
	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.key[0], key);
	fixture_stop(&ok);
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(*(int *)arg)++;
}

/* A dispatcher whose producer failed for good (its process stops) reads
 * and claims nothing more: an entry written then is left for another
 * dispatcher, not kept pending under its name. */
static void a_dispatcher_whose_producer_failed_reads_nothing(void **state)
{
	(void)state;
	char errstr[256];
	int sigterms = 0;
	struct event *sig = evsignal_new(base, SIGTERM, on_sigterm, &sigterms);
	assert_non_null(sig);
	assert_int_equal(event_add(sig, NULL), 0);
	struct kafka_producer *failed = kafka_producer_new(base, kc.bootstraps, errstr, 256);
	assert_non_null(failed);
	assert_int_equal(rd_kafka_test_fatal_error(kafka_producer_handle(failed),
						   RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
						   "made to fail by a test"),
			 RD_KAFKA_RESP_ERR_NO_ERROR);
	run_until(never, NULL, 500);
	assert_true(kafka_producer_failed(failed));
	assert_int_equal(sigterms, 1);

	struct fixture fx;
	dispatcher_start_on(&fx, failed, "t-failed:", "t-failed:outbox", "failed-host:1", 0);
	run_until(never, NULL, 300);
	assert_entry_left_for_another(&fx, "t-failed:", "run-f");
	kafka_producer_free(failed, 100);
	event_free(sig);
}

/* A dispatcher that drained (its process stops) has left the group and
 * reads nothing more, though its loop still turns: an entry written then
 * is left for another dispatcher, not taken under a name that is gone. */
static void a_dispatcher_that_drained_reads_nothing_more(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t-drain:", "t-drain:outbox");
	run_until(never, NULL, 300);
	outbox_drain(fx.o, base, 2000);
	assert_entry_left_for_another(&fx, "t-drain:", "run-d");
}

/* Scripts name topics without the configured prefix: "@events" is
 * published to "sluice.events". */
static void an_at_topic_gets_the_topic_prefix(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t8:", "t8:outbox");
	sync_ok("XADD t8:outbox * topic %s key %s value %s", "@events", "run-8", "{\"at\":1}");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 3000));

	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.key[0], "run-8");
	assert_string_equal(g.value[0], "{\"at\":1}");
	fixture_stop(&fx);
}

static void an_entry_left_by_a_dead_dispatcher_is_claimed_and_produced(void **state)
{
	(void)state;
	sync_ok("XGROUP CREATE t3:outbox dispatch 0 MKSTREAM");
	sync_ok("XADD t3:outbox * topic %s key %s value %s", TOPIC, "run-3", "{\"orphan\":1}");
	/* Read by a dispatcher that then died: pending, owned by "dead". */
	redisReply *rep =
	    redisCommand(sync_redis, "XREADGROUP GROUP dispatch dead COUNT 10 STREAMS t3:outbox >");
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
	freeReplyObject(rep);

	struct fixture fx;
	fixture_start(&fx, "t3:", "t3:outbox");
	outbox_set_claim_idle_ms(fx.o, 200);
	assert_true(run_until(drained, &fx, 4000));

	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.key[0], "run-3");
	assert_string_equal(g.value[0], "{\"orphan\":1}");
	fixture_stop(&fx);
}

static int consumer_in_group(const char *stream, const char *name)
{
	redisReply *rep = redisCommand(sync_redis, "XINFO CONSUMERS %s dispatch", stream);
	assert_non_null(rep);
	int found = 0;
	for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
		const redisReply *c = rep->element[i];
		for (size_t j = 0; j + 1 < c->elements; j += 2)
			if (strcmp(c->element[j]->str, "name") == 0 &&
			    strcmp(c->element[j + 1]->str, name) == 0)
				found = 1;
	}
	freeReplyObject(rep);
	return found;
}

static int dead_forgotten(void *arg)
{
	(void)arg;
	return !consumer_in_group("t3b:outbox", "dead") && !consumer_in_group("t3b:outbox", "idle");
}

/* Processes killed, or stopped with entries pending, never left the group:
 * once nothing is pending under their names, the group forgets them rather
 * than keep a consumer for every process that ever ran. */
static void a_dead_dispatcher_is_forgotten_once_its_entries_are_claimed(void **state)
{
	(void)state;
	sync_ok("XGROUP CREATE t3b:outbox dispatch 0 MKSTREAM");
	sync_ok("XADD t3b:outbox * topic %s key %s value %s", TOPIC, "run-3b", "{\"orphan\":2}");
	redisReply *rep = redisCommand(
	    sync_redis, "XREADGROUP GROUP dispatch dead COUNT 10 STREAMS t3b:outbox >");
	assert_non_null(rep);
	freeReplyObject(rep);
	sync_ok("XGROUP CREATECONSUMER t3b:outbox dispatch idle");
	assert_true(consumer_in_group("t3b:outbox", "dead"));

	struct fixture fx;
	fixture_start(&fx, "t3b:", "t3b:outbox");
	outbox_set_claim_idle_ms(fx.o, 200);
	assert_true(run_until(drained, &fx, 4000));
	assert_true(run_until(dead_forgotten, NULL, 4000));

	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.value[0], "{\"orphan\":2}");
	fixture_stop(&fx);
}

/* Entries whose fields do not read as messages (no topic, a topic without
 * a value, an empty topic, an unknown field) are dropped whole: none of
 * their messages is produced, and none is retried. */
static void a_malformed_entry_is_dropped_not_retried_forever(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t4:", "t4:outbox");
	sync_ok("XADD t4:outbox * key %s value %s", "run-4", "{}");
	sync_ok("XADD t4:outbox * topic %s key %s value %s topic %s key %s", TOPIC, "run-4",
		"{\"bad\":1}", TOPIC, "run-4");
	sync_ok("XADD t4:outbox * topic %s key %s value %s", "", "run-4", "{\"bad\":2}");
	sync_ok("XADD t4:outbox * topic %s key %s value %s color %s", TOPIC, "run-4", "{\"bad\":3}",
		"red");
	sync_ok("XADD t4:outbox * topic %s key %s value %s", TOPIC, "run-4", "{\"good\":1}");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 3000));

	struct got g;
	consume(&g, 2, 2000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.value[0], "{\"good\":1}");
	fixture_stop(&fx);
}

static int nothing_outstanding(void *arg)
{
	(void)arg;
	return kafka_producer_outstanding(prod) == 0;
}

static long long stream_len(const char *stream)
{
	return sync_int("XLEN %s", stream);
}

/* Writes to stream an entry whose last message is larger than the broker
 * takes (2 MiB); with first, a small message with that value before it. */
static void add_too_large(const char *stream, const char *first)
{
	size_t len = 2 * 1024 * 1024;
	char *big = malloc(len);
	assert_non_null(big);
	memset(big, 'x', len);
	redisReply *rep =
	    first ? redisCommand(sync_redis,
				 "XADD %s * topic %s key %s value %s topic %s key %s value %b",
				 stream, TOPIC, "run", first, TOPIC, "run", big, len)
		  : redisCommand(sync_redis, "XADD %s * topic %s key %s value %b", stream, TOPIC,
				 "run", big, len);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STRING);
	freeReplyObject(rep);
	free(big);
}

/* A field of the dead-letter stream's only entry, in out (size 256). */
static void dead_letter_field(const char *dead, const char *field, char *out)
{
	redisReply *rep = redisCommand(sync_redis, "XRANGE %s - +", dead);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
	assert_int_equal(rep->elements, 1);
	const redisReply *fields = rep->element[0]->element[1];
	out[0] = '\0';
	for (size_t i = 0; i + 1 < fields->elements; i += 2)
		if (strcmp(fields->element[i]->str, field) == 0)
			snprintf(out, 256, "%s", fields->element[i + 1]->str);
	freeReplyObject(rep);
}

/* Kafka will never take the message: its entry is moved to the dead-letter
 * stream, with what Kafka said, rather than produced again and again. */
static void an_entry_kafka_refuses_goes_to_the_dead_letter_stream(void **state)
{
	(void)state;
	struct fixture fx;
	char field[256];
	fixture_start(&fx, "t7:", "t7:outbox");
	add_too_large("t7:outbox", NULL);
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 3000));
	assert_int_equal(stream_len("t7:outbox:dead"), 1);
	dead_letter_field("t7:outbox:dead", "stream", field);
	assert_string_equal(field, "t7:outbox");
	dead_letter_field("t7:outbox:dead", "error", field);
	assert_non_null(strstr(field, "too large"));
	/* The entry's fields as they were, its 2 MiB value cut short here. */
	const char *fields = "[\"topic\",\"" TOPIC "\",\"key\",\"run\",\"value\",\"";
	dead_letter_field("t7:outbox:dead", "entry", field);
	assert_memory_equal(field, fields, strlen(fields));
	assert_int_equal(field[strlen(fields)], 'x');
	fixture_stop(&fx);
}

/* One message of an entry refused for good: the others are delivered, once,
 * and the entry goes to the dead-letter stream whole. */
static void the_rest_of_an_entry_with_a_refused_message_is_delivered_once(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t10:", "t10:outbox");
	add_too_large("t10:outbox", "{\"first\":1}");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 3000));
	assert_true(run_until(nothing_outstanding, NULL, 5000));
	assert_int_equal(stream_len("t10:outbox:dead"), 1);
	struct got g;
	consume(&g, 2, 2000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.value[0], "{\"first\":1}");
	fixture_stop(&fx);
}

/* The broker refuses a message it was sent (its answer to the produce
 * request, not librdkafka's own check): the same. */
static void a_message_the_broker_refuses_goes_to_the_dead_letter_stream(void **state)
{
	(void)state;
	struct fixture fx;
	char field[256];
	fixture_start(&fx, "t11:", "t11:outbox");
	/* The next Produce request (API key 0) is answered "too large". */
	rd_kafka_mock_push_request_errors(kc.mc, 0, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	sync_ok("XADD %s * topic %s key %s value %s", "t11:outbox", TOPIC, "run", "{\"n\":1}");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 5000));
	assert_int_equal(stream_len("t11:outbox:dead"), 1);
	dead_letter_field("t11:outbox:dead", "error", field);
	assert_non_null(strstr(field, "too large"));
	struct got g;
	consume(&g, 1, 500);
	assert_int_equal(g.n, 0);
	fixture_stop(&fx);
}

static int one_pending(void *arg)
{
	return pending_count(arg) == 1;
}

/* A failure that may pass (here the broker's "not authorised", mended by
 * an ACL) is not a refusal: the entry stays, to be produced again, and the
 * warning names its stream, since the events' stream has ids of its own.
 * On a topic of its own: the producer remembers a topic it may not write
 * to. */
static void an_entry_that_failed_for_now_stays_pending(void **state)
{
	(void)state;
	struct fixture fx;
	struct logcapture log;
	assert_int_equal(logcapture_start(&log), 0);
	fixture_start(&fx, "t12:", "t12:outbox");
	rd_kafka_mock_push_request_errors(kc.mc, 0, 1,
					  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	sync_ok("XADD %s * topic %s key %s value %s", "t12:outbox", "sluice.unauthorised", "run",
		"{\"n\":2}");
	outbox_kick(fx.o);
	assert_true(run_until(one_pending, "t12:outbox", 3000));
	assert_true(run_until(nothing_outstanding, NULL, 5000));
	assert_int_equal(outbox_in_flight(fx.o), 0);
	assert_int_equal(stream_len("t12:outbox"), 1);
	assert_int_equal(stream_len("t12:outbox:dead"), 0);
	fixture_stop(&fx);
	const char *text = logcapture_text(&log);
	if (!strstr(text, "msg=\"outbox: delivery failed\" stream=t12:outbox id="))
		fail_msg("no delivery failure with its stream in:\n%s", text);
	logcapture_stop(&log);
}

static int reconnected(void *arg)
{
	struct redis *r = arg;
	return redis_connected(r) && redis_connect_count(r) >= 2;
}

static void the_group_is_created_again_after_redis_lost_everything(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t6:", "t6:outbox");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 3000));

	/* A restart without persistence: the stream and its group are gone. */
	redisFree(sync_redis);
	sync_redis = NULL;
	redisd_kill(&srv, SIGKILL);
	assert_int_equal(redisd_start(&srv), 0);
	sync_redis = redisd_connect(&srv);
	assert_non_null(sync_redis);
	assert_true(run_until(reconnected, fx.r, 5000));

	sync_ok("XADD t6:outbox * topic %s key %s value %s", TOPIC, "run-6", "{\"again\":1}");
	outbox_kick(fx.o);
	assert_true(run_until(drained, &fx, 3000));
	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.value[0], "{\"again\":1}");
	fixture_stop(&fx);
}

static int has_in_flight(void *arg)
{
	return outbox_in_flight(arg) > 0;
}

static void freeing_with_deliveries_in_flight_is_safe(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t5:", "t5:outbox");
	/* A slow broker keeps the delivery report away for a while. */
	assert_int_equal(rd_kafka_mock_broker_set_rtt(kc.mc, 1, 400), 0);
	sync_ok("XADD t5:outbox * topic %s key %s value %s", TOPIC, "run-5", "{\"late\":1}");
	outbox_kick(fx.o);
	assert_true(run_until(has_in_flight, fx.o, 3000));
	/* The producer outlives the outbox; its report must not touch it. */
	outbox_free(fx.o);
	assert_true(run_until(nothing_outstanding, NULL, 5000));
	assert_int_equal(rd_kafka_mock_broker_set_rtt(kc.mc, 1, 0), 0);
	redis_free(fx.r);
	/* Produced but never deleted: still in the stream for the next dispatcher. */
	assert_int_equal(sync_int("XLEN %s", "t5:outbox"), 1);
	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.value[0], "{\"late\":1}");
}

static int idle(void *arg)
{
	return !outbox_busy(arg);
}

/* From the kick on, the outbox is busy until what it read is delivered and
 * deleted: a stopping worker waits for that, or the entries its read took
 * would wait for another process's claim. */
static void the_outbox_is_busy_from_its_read_to_the_delete(void **state)
{
	(void)state;
	struct fixture fx;
	fixture_start(&fx, "t11:", "t11:outbox");
	assert_false(outbox_busy(fx.o));
	sync_ok("XADD t11:outbox * topic %s key %s value %s", TOPIC, "run-11", "{\"busy\":1}");
	outbox_kick(fx.o);
	assert_true(outbox_busy(fx.o));
	assert_int_equal(outbox_in_flight(fx.o), 0);
	assert_true(run_until(idle, fx.o, 5000));
	assert_int_equal(sync_int("XLEN %s", "t11:outbox"), 0);
	assert_int_equal(pending_count("t11:outbox"), 0);
	struct got g;
	consume(&g, 1, 5000);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.value[0], "{\"busy\":1}");
	fixture_stop(&fx);
}

/* --- the events stream ---------------------------------------------------------- */

/* What the lease's key holds, in holder (size 32); "" when nobody holds it. */
static void lease_holder(const char *key, char *holder)
{
	redisReply *rep = redisCommand(sync_redis, "GET %s", key);
	assert_non_null(rep);
	snprintf(holder, 32, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
	freeReplyObject(rep);
}

struct pair {
	struct fixture *a, *b; /* b may be NULL */
};

/* The events stream is empty and neither dispatcher has anything in flight. */
static int events_drained(void *arg)
{
	struct pair *p = arg;
	return outbox_in_flight(p->a->o) == 0 && (!p->b || outbox_in_flight(p->b->o) == 0) &&
	       stream_len(p->a->stream) == 0;
}

static int lease_taken(void *arg)
{
	char holder[32];
	lease_holder(arg, holder);
	return holder[0] != '\0';
}

static void add_events(const char *stream, int from, int to)
{
	for (int i = from; i < to; i++) {
		char value[64];
		snprintf(value, sizeof(value), "{\"e\":%d}", i);
		sync_ok("XADD %s * topic %s key %s value %s", stream, "@events", "run-e", value);
	}
}

static void expect_events(int from, int to)
{
	struct got g;
	/* More than expected are asked for: a copy would show. */
	consume(&g, to - from + 1, 1500);
	assert_int_equal(g.n, to - from);
	for (int i = from; i < to; i++) {
		char value[64];
		snprintf(value, sizeof(value), "{\"e\":%d}", i);
		assert_string_equal(g.key[i - from], "run-e");
		assert_string_equal(g.value[i - from], value);
	}
}

/* Two agents: the events reach Kafka once each, in stream order, published
 * by whichever holds the lease (two readers of the stream without it would
 * publish every event twice). */
static void the_events_are_published_once_in_order_by_the_lease_holder(void **state)
{
	(void)state;
	struct fixture a, b;
	dispatcher_start(&a, "e1:", "e1:outbox:events", "host-a:1", 1);
	dispatcher_start(&b, "e1:", "e1:outbox:events", "host-b:2", 1);
	assert_true(run_until(lease_taken, "e1:outbox:events:lease", 3000));
	add_events("e1:outbox:events", 0, 8);
	outbox_kick(a.o);
	outbox_kick(b.o);
	struct pair p = {&a, &b};
	assert_true(run_until(events_drained, &p, 5000));
	expect_events(0, 8);
	char holder[32];
	lease_holder("e1:outbox:events:lease", holder);
	assert_true(strcmp(holder, "host-a:1") == 0 || strcmp(holder, "host-b:2") == 0);
	fixture_stop(&a);
	fixture_stop(&b);
}

static void note_done(void *arg)
{
	*(int *)arg = 1;
}

static int is_set(void *arg)
{
	return *(int *)arg;
}

/* The holder stops (it gives the lease up first): the other dispatcher
 * takes over at its next attempt, without waiting for the lease to run
 * out, and publishes what follows; the first publishes nothing more. */
static void the_lease_passes_on_when_its_holder_goes(void **state)
{
	(void)state;
	struct fixture a, b;
	dispatcher_start(&a, "e2:", "e2:outbox:events", "host-a:1", 1);
	assert_true(run_until(lease_taken, "e2:outbox:events:lease", 3000));
	dispatcher_start(&b, "e2:", "e2:outbox:events", "host-b:2", 1);
	add_events("e2:outbox:events", 0, 2);
	outbox_kick(a.o);
	struct pair both = {&a, &b};
	assert_true(run_until(events_drained, &both, 5000));
	expect_events(0, 2);

	int given_up = 0;
	outbox_release_events(a.o, note_done, &given_up);
	assert_true(run_until(is_set, &given_up, 2000));
	add_events("e2:outbox:events", 2, 5);
	outbox_kick(a.o);
	struct pair p = {&b, NULL};
	/* Under LEASE_MS (5 s): a lease given up, not one run out. */
	assert_true(run_until(events_drained, &p, 2500));
	expect_events(2, 5);
	char holder[32];
	lease_holder("e2:outbox:events:lease", holder);
	assert_string_equal(holder, "host-b:2");
	fixture_stop(&a);
	fixture_stop(&b);
}

/* A dispatcher without the events calls back at once. */
static void releasing_without_events_calls_back_at_once(void **state)
{
	(void)state;
	struct fixture w;
	fixture_start(&w, "e6:", "e6:outbox");
	int done = 0;
	outbox_release_events(w.o, note_done, &done);
	assert_int_equal(done, 1);
	fixture_stop(&w);
}

static int lease_held_by_a(void *arg)
{
	(void)arg;
	char holder[32];
	lease_holder("e3:outbox:events:lease", holder);
	return strcmp(holder, "host-a:1") == 0;
}

/* A holder that died holding the lease: nothing is published until its
 * lease has run out; then the next dispatcher publishes what waited. */
static void a_dead_holders_lease_is_waited_out(void **state)
{
	(void)state;
	sync_ok("SET e3:outbox:events:lease dead:1 PX 1500");
	add_events("e3:outbox:events", 0, 3);
	struct fixture a;
	dispatcher_start(&a, "e3:", "e3:outbox:events", "host-a:1", 1);
	outbox_kick(a.o);
	struct timeval tv = {0, 700000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(stream_len("e3:outbox:events"), 3);
	expect_events(0, 0);

	assert_true(run_until(lease_held_by_a, NULL, 4000));
	struct pair p = {&a, NULL};
	assert_true(run_until(events_drained, &p, 3000));
	expect_events(0, 3);
	fixture_stop(&a);
}

/* A worker's dispatcher (no events) leaves the events stream alone. */
static void a_dispatcher_without_events_leaves_them_to_the_agent(void **state)
{
	(void)state;
	struct fixture w;
	dispatcher_start(&w, "e4:", "e4:outbox", "worker:1", 0);
	add_events("e4:outbox:events", 0, 2);
	outbox_kick(w.o);
	struct timeval tv = {0, 500000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(stream_len("e4:outbox:events"), 2);
	assert_false(lease_taken("e4:outbox:events:lease"));
	expect_events(0, 0);
	fixture_stop(&w);
}

static int events_gone(void *arg)
{
	struct fixture *fx = arg;
	return outbox_in_flight(fx->o) == 0 && stream_len(fx->stream) == 0;
}

/* An event Kafka refuses for good goes to the dead-letter stream; the
 * events after it are published, once each. */
static void an_event_kafka_refuses_goes_aside_and_the_rest_go_on(void **state)
{
	(void)state;
	struct fixture a;
	char field[256];
	dispatcher_start(&a, "e5:", "e5:outbox:events", "host-a:1", 1);
	assert_true(run_until(lease_taken, "e5:outbox:events:lease", 3000));
	add_too_large("e5:outbox:events", NULL);
	add_events("e5:outbox:events", 0, 2);
	outbox_kick(a.o);
	assert_true(run_until(events_gone, &a, 5000));
	expect_events(0, 2);
	assert_int_equal(stream_len("e5:outbox:dead"), 1);
	dead_letter_field("e5:outbox:dead", "stream", field);
	assert_string_equal(field, "e5:outbox:events");
	fixture_stop(&a);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(entries_are_produced_in_order_and_deleted),
	    cmocka_unit_test(an_entry_of_several_messages_is_produced_whole_in_order),
	    cmocka_unit_test(the_tick_finds_entries_without_a_kick),
	    cmocka_unit_test(a_dispatcher_whose_producer_failed_reads_nothing),
	    cmocka_unit_test(a_dispatcher_that_drained_reads_nothing_more),
	    cmocka_unit_test(an_at_topic_gets_the_topic_prefix),
	    cmocka_unit_test(an_entry_left_by_a_dead_dispatcher_is_claimed_and_produced),
	    cmocka_unit_test(a_dead_dispatcher_is_forgotten_once_its_entries_are_claimed),
	    cmocka_unit_test(a_malformed_entry_is_dropped_not_retried_forever),
	    cmocka_unit_test(an_entry_kafka_refuses_goes_to_the_dead_letter_stream),
	    cmocka_unit_test(the_rest_of_an_entry_with_a_refused_message_is_delivered_once),
	    cmocka_unit_test(a_message_the_broker_refuses_goes_to_the_dead_letter_stream),
	    cmocka_unit_test(an_entry_that_failed_for_now_stays_pending),
	    cmocka_unit_test(the_group_is_created_again_after_redis_lost_everything),
	    cmocka_unit_test(freeing_with_deliveries_in_flight_is_safe),
	    cmocka_unit_test(the_outbox_is_busy_from_its_read_to_the_delete),
	    cmocka_unit_test(the_events_are_published_once_in_order_by_the_lease_holder),
	    cmocka_unit_test(the_lease_passes_on_when_its_holder_goes),
	    cmocka_unit_test(a_dead_holders_lease_is_waited_out),
	    cmocka_unit_test(a_dispatcher_without_events_leaves_them_to_the_agent),
	    cmocka_unit_test(an_event_kafka_refuses_goes_aside_and_the_rest_go_on),
	    cmocka_unit_test(releasing_without_events_calls_back_at_once),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
