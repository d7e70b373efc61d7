/* outbox: publishes to Kafka what Lua scripts recorded in the outbox stream.
 *
 * A state change and the messages it causes are written by one script: the
 * messages as entries of the stream <prefix>outbox with fields topic, key,
 * value. The dispatcher reads them through the consumer group "dispatch",
 * produces each (idempotent, acks=all) and deletes it (XACK + XDEL) only after
 * its delivery report. Entries left pending by a dispatcher that died or
 * failed are claimed again (XAUTOCLAIM) after claim_idle_ms. Nothing is
 * published that was not recorded, and nothing recorded stays unpublished.
 * A topic written as "@name" is published to <topic_prefix>name, so that
 * scripts need not know the configured prefix.
 */
#ifndef SLUICE_OUTBOX_H
#define SLUICE_OUTBOX_H

#include <event2/event.h>

#include "queue/kafka.h"
#include "queue/redis.h"

struct outbox;

/* consumer: a name unique to this process (host:pid), for the consumer group. */
struct outbox *outbox_new(struct event_base *base, struct redis *r, struct kafka_producer *p,
			  const char *key_prefix, const char *topic_prefix, const char *consumer);
/* A script just wrote to the outbox: read and produce now rather than at the next tick. */
void outbox_kick(struct outbox *o);
/* Entries produced and awaiting their delivery report. */
int outbox_in_flight(const struct outbox *o);
/* How long an entry stays pending before it is claimed again (default
 * 30000 ms); claims are looked for every min(5 s, claim_idle_ms). */
void outbox_set_claim_idle_ms(struct outbox *o, int ms);
void outbox_free(struct outbox *o);

#endif
