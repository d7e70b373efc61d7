/* kafka: a librdkafka producer and consumer driven from the libevent loop.
 *
 * Both use rd_kafka_queue_io_event_enable so that the loop wakes when
 * librdkafka has something (delivery reports, messages, rebalances) and never
 * blocks on it. The producer is idempotent with acks=all; each message's
 * delivery report reaches its own callback. The consumer joins a group with
 * the eager roundrobin assignor and stores an offset only once the caller
 * says the work the message stands for is recorded (kafka_consumer_done),
 * in partition order: a message that is never done is consumed again by
 * whoever owns its partition next.
 */
#ifndef SLUICE_KAFKA_H
#define SLUICE_KAFKA_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

struct kafka_producer;
struct kafka_consumer;
struct kafka_ticket;

/* err is NULL on success. refused: Kafka will never take this message (too
 * large, or invalid), where another error may pass if it is tried again. */
typedef void (*kafka_delivery_cb)(const char *err, int refused, void *arg);

/* How long a message may wait for its delivery before its callback gets an
 * error (message.timeout.ms). The outbox lets an entry in flight be claimed
 * by another process after its claim_idle_ms, so this stays below that:
 * an entry is in one producer's queue at a time, and a longer outage ends
 * in a failed delivery that is claimed and produced again. */
#define KAFKA_MESSAGE_TIMEOUT_MS 20000

/* brokers: a comma-separated list, or "@FILE" to read the list from FILE. */
struct kafka_producer *kafka_producer_new(struct event_base *base, const char *brokers, char *err,
					  size_t errlen);
/* Copies topic, key and value; the message carries the header
 * content-type: application/cloudevents+json. 0 queued; otherwise cb is
 * not called and err says why: -1 not queued now, KAFKA_REFUSED never to be
 * (larger than message.max.bytes, say). */
#define KAFKA_REFUSED (-2)
int kafka_produce(struct kafka_producer *p, const char *topic, const char *key, const char *value,
		  size_t len, kafka_delivery_cb cb, void *arg, char *err, size_t errlen);
/* Looks up the topics' partitions and leaders now, so that the first message
 * to each is not held up by that lookup (about a second on a quiet client). */
int kafka_producer_warm(struct kafka_producer *p, const char *const *topics, size_t n);
/* Messages queued or in flight. */
int kafka_producer_outstanding(const struct kafka_producer *p);
/* Whether librdkafka raised a fatal error on the producer (an idempotence
 * guarantee it can no longer keep). It then raises SIGTERM, once: the
 * process stops as when asked to, and exits 1 for its supervisor to start
 * it again with a new producer; the outbox keeps what was not delivered. */
int kafka_producer_failed(const struct kafka_producer *p);
/* librdkafka's handle, for tests that make it fail. */
struct rd_kafka_s *kafka_producer_handle(struct kafka_producer *p);
/* Waits up to timeout_ms for outstanding deliveries, then frees; callbacks
 * still owed are called first, with a purge error. */
void kafka_producer_free(struct kafka_producer *p, int timeout_ms);

struct kafka_message {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const char *key;
	size_t key_len;
	const char *value;
	size_t len;
};

/* The message and its memory are valid only during the callback; the ticket
 * stays valid until passed to kafka_consumer_done, which must happen exactly
 * once (also for messages the caller drops). */
typedef void (*kafka_message_cb)(const struct kafka_message *m, struct kafka_ticket *t, void *arg);

struct kafka_consumer *kafka_consumer_new(struct event_base *base, const char *brokers,
					  const char *group, const char *const *topics,
					  size_t ntopics, kafka_message_cb cb, void *arg, char *err,
					  size_t errlen);
/* Consumer tuning for kafka_consumer_new_opts; a zero field keeps the default. */
struct kafka_consumer_opts {
	/* How long a member that stopped heartbeating keeps its partitions;
	 * default 6000, the smallest a Kafka broker accepts unless configured. */
	int session_timeout_ms;
	/* fetch.wait.max.ms: how long a fetch that finds no message waits at
	 * the broker; default 10. */
	int fetch_wait_ms;
};
/* kafka_consumer_new with tuning; opts may be NULL. */
struct kafka_consumer *kafka_consumer_new_opts(struct event_base *base, const char *brokers,
					       const char *group, const char *const *topics,
					       size_t ntopics, kafka_message_cb cb, void *arg,
					       const struct kafka_consumer_opts *opts, char *err,
					       size_t errlen);
void kafka_consumer_done(struct kafka_consumer *c, struct kafka_ticket *t);
/* Whether t's partition was taken from this consumer (a rebalance) since its
 * message arrived: the partition's new owner consumes the message again,
 * from the last commit, so acting on it here as well would act twice.
 * kafka_consumer_done is still due. */
int kafka_ticket_revoked(const struct kafka_ticket *t);
/* Tickets of revoked partitions not done yet. */
size_t kafka_consumer_orphans(const struct kafka_consumer *c);
/* Partitions currently assigned to this member (0 until the group has formed). */
int kafka_consumer_assigned(const struct kafka_consumer *c);
/* Consumer lag of each partition assigned to this member, from librdkafka's
 * statistics (refreshed every 5 s): messages beyond the committed offset.
 * Partitions whose lag is not known yet are left out. */
typedef void (*kafka_lag_cb)(const char *topic, int32_t partition, int64_t lag, void *arg);
void kafka_consumer_lag(const struct kafka_consumer *c, kafka_lag_cb cb, void *arg);
/* Pause or resume fetching on every assigned partition (and those assigned later). */
void kafka_consumer_pause(struct kafka_consumer *c);
void kafka_consumer_resume(struct kafka_consumer *c);
/* Leaves the group now (a process that drains): its partitions, revoked
 * (their offsets stored so far committed), go to the other members at once,
 * which consume them from there; the tickets it holds become revoked ones. */
void kafka_consumer_leave(struct kafka_consumer *c);
/* Commits stored offsets, leaves the group, frees. Tickets not done are dropped. */
void kafka_consumer_free(struct kafka_consumer *c);

/* Reads "@FILE" or returns a copy of the list; NULL with err on failure. */
char *kafka_brokers_resolve(const char *brokers, char *err, size_t errlen);

/* The characters of a Kafka topic name; a broker refuses any other. */
#define KAFKA_TOPIC_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
#define KAFKA_TOPIC_MAX	  249
/* 1 if a broker takes name as a topic's: 1 to KAFKA_TOPIC_MAX of
 * KAFKA_TOPIC_CHARS, neither "." nor "..". */
int kafka_topic_name_ok(const char *name);

#endif
