/* outbox: publishes to Kafka what Lua scripts recorded in the outbox stream.
 *
 * A state change and the messages it causes are written by one script: the
 * messages as entries of the stream <prefix>outbox with fields topic, key,
 * value. The dispatcher reads them through the consumer group "dispatch",
 * produces each (idempotent, acks=all) and deletes it (XACK + XDEL) only after
 * its delivery report. Entries left pending by a dispatcher that died or
 * failed are claimed again (XAUTOCLAIM) after claim_idle_ms, and the names
 * of dispatchers gone without leaving the group are dropped from it once
 * nothing is pending under them (outbox_forget.lua). Nothing is
 * published that was not recorded, and nothing recorded stays unpublished.
 * A topic written as "@name" is published to <topic_prefix>name, so that
 * scripts need not know the configured prefix. An entry one of whose
 * messages Kafka will never take (kafka.h) is moved to the dead-letter
 * stream <prefix>outbox:dead (outbox_dead.lua), its other messages
 * delivered, rather than produced again forever.
 *
 * Events (topic "@events") are written to a stream of their own,
 * <prefix>outbox:events, and published differently: by one process at a
 * time, the holder of the lease <prefix>outbox:events:lease (taken and
 * renewed by outbox_lease.lua; another process takes over within seconds
 * of the holder going away), which reads the stream in order (XRANGE) and
 * deletes what was delivered. One producer in stream order keeps a run's
 * events in the order its scripts recorded them, whichever process ran
 * those: with several dispatchers, one could publish a newer event before
 * another published an older one. The holder reads every 10 ms rather
 * than at each kick: events are off the path of a run's progress. The
 * order breaks only where a message is produced again (Kafka failed it,
 * its delete failed, or its holder went away before deleting it, when the
 * next holder produces it again): then it follows what was produced after
 * it. A holder that stops gives the lease up only once what it read is
 * produced and deleted (outbox_release_events).
 */
#ifndef SLUICE_OUTBOX_H
#define SLUICE_OUTBOX_H

#include <event2/event.h>

#include "queue/kafka.h"
#include "queue/redis.h"

struct outbox;

/* consumer: a name unique to this process (host:pid), for the consumer
 * group and the events lease. events: whether this process also publishes
 * the events stream (the agent does). */
struct outbox *outbox_new(struct event_base *base, struct redis *r, struct kafka_producer *p,
			  const char *key_prefix, const char *topic_prefix, const char *consumer,
			  int events);
/* The process is stopping: no event is read any more, and the events
 * lease, if this outbox publishes the events, is given up once what was
 * read is produced and deleted, so that another agent takes over at once
 * after them. done(arg) is called once, when Redis has answered (or could
 * not be asked), perhaps before this returns. */
void outbox_release_events(struct outbox *o, void (*done)(void *arg), void *arg);
/* A script just wrote to the outbox: read and produce its jobs and results
 * now rather than at the next tick (events go at the events' tick). */
void outbox_kick(struct outbox *o);
/* Entries produced and awaiting their delivery report. */
int outbox_in_flight(const struct outbox *o);
/* Whether anything is under way: a read or claim not answered yet (whose
 * entries are this process's once Redis ran it), entries in flight, or
 * deletes not answered. A stopping process runs its loop until this is 0,
 * or what it read would wait for a claim by another. */
int outbox_busy(const struct outbox *o);
/* For a process that stops, its other work done: runs base's loop until the
 * outbox is idle (outbox_busy), then until this process has left the
 * stream's consumer group (unless entries are still pending under its
 * name: another process claims them later), at most max_ms in all. */
void outbox_drain(struct outbox *o, struct event_base *base, int max_ms);
/* How long an entry stays pending before it is claimed again (default
 * 30000 ms); claims are looked for every min(5 s, claim_idle_ms). The
 * events stream's dispatcher waits as long after a failure before it
 * produces again what is left. */
void outbox_set_claim_idle_ms(struct outbox *o, int ms);
void outbox_free(struct outbox *o);

#endif
