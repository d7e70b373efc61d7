/* outbox: reads the outbox stream through the consumer group "dispatch",
 * produces each entry's messages to Kafka and deletes the entry once they
 * are all delivered. The events stream is read in order instead, by the
 * holder of its lease alone (outbox.h).
 *
 * Every entry this process has handed to Kafka (and not yet deleted) is a
 * struct flight, found by id so that a claim never produces a second copy of
 * what is already in flight here. A flight is freed by whichever callback it
 * is waiting for (the delivery report, then the XACK reply); outbox_free only
 * detaches flights, because the producer and the Redis client may outlive the
 * outbox. Redis replies for reads and claims go through an anchor with a
 * reference count for the same reason.
 *
 * Delivery is at least once: an entry whose delete fails, one of whose
 * messages fails, or which is claimed while another process still produces
 * it, is produced again (all its messages); consumers recognise the copy by
 * its CloudEvents id. An entry one of whose messages Kafka refused for good
 * (kafka.h), and none failed otherwise, is moved to the dead-letter stream
 * instead (outbox_dead.lua).
 */
#include "queue/outbox.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "queue/lua.h"

/* Messages produced and not yet reported; an entry read is produced whole,
 * so a read may go beyond this by its entries' messages. */
#define MAX_IN_FLIGHT	   4096
#define GROUP		   "dispatch"
#define BATCH		   256
#define TICK_MS		   100
#define CLAIM_EVERY_MS	   5000
#define DEFAULT_CLAIM_IDLE 30000
_Static_assert(KAFKA_MESSAGE_TIMEOUT_MS + 5000 <= DEFAULT_CLAIM_IDLE,
	       "an entry's produce must have failed before it can be claimed again");
#define BUCKETS 1024
/* The events stream is read this often, and not at each kick: events are
 * off the path of a run's progress, and a read every few milliseconds
 * takes many scripts' events at once, where a read per kick would put a
 * round trip and its replies into the agent's loop for every routing. */
#define EVENTS_TICK_MS 10
/* Delivered entries deleted and acknowledged by one XDEL and one XACK. */
#define ACK_BATCH 512
/* The events stream's lease: held this long after each renewal, renewed
 * this often; a dispatcher that stops renewing it (a process gone) is
 * replaced within LEASE_MS + LEASE_RENEW_MS. */
#define LEASE_MS       5000
#define LEASE_RENEW_MS 1000

/* What Redis callbacks hold instead of the outbox itself. */
struct anchor {
	struct outbox *o; /* NULL once the outbox is freed */
	int refs;
};

struct flight {
	struct flight *prev, *next; /* every flight of the outbox */
	struct flight *hnext;	    /* bucket chain */
	struct outbox *o;	    /* NULL once the outbox is freed */
	int pending;		    /* its messages not yet reported */
	int failed;		    /* one of them was not delivered, and may be */
	int refused;		    /* one of them never will be (kafka.h) */
	int acking;		    /* delivered (or dead); its delete under way */
	char *why;		    /* what Kafka said of the first refused */
	char id[];
};

/* The flights one XDEL + XACK pair deletes and acknowledges. */
struct ack_batch {
	int n;
	struct flight *f[];
};

struct outbox {
	struct redis *r; /* NULL once it reported shutting down */
	struct kafka_producer *p;
	char *stream;
	char *dead_stream; /* <prefix>outbox:dead, of both streams */
	char *consumer;
	char *topic_prefix;
	int claim_idle_ms;
	struct anchor *anchor;
	struct event *tick;
	struct event *claim_timer;

	unsigned long group_connect; /* redis_connect_count when the group was ensured */
	int reading;
	int read_count; /* COUNT of the read in flight: a full batch means read on */
	int read_again;
	int claiming;

	struct flight *flights;
	struct flight *buckets[BUCKETS];
	int n_flights;
	int n_producing;
	int n_messages; /* produced and not yet reported */

	/* Delivered since the event loop last came round: acknowledged
	 * together once the delivery reports at hand are all seen. */
	struct flight *delivered[ACK_BATCH];
	int n_delivered;
	struct event *ack_ev;

	/* The events stream's dispatcher, in order, when this process runs
	 * one: a second struct outbox, ordered. */
	struct outbox *events;
	int ordered;
	char *lease_key;
	int lease_script;
	int leave_script;    /* outbox_leave.lua, for the group's dispatcher */
	int forget_script;   /* outbox_forget.lua, likewise */
	int64_t forget_at;   /* monotonic ms when to forget gone consumers next */
	int dead_script;     /* outbox_dead.lua */
	int leaving;	     /* a call of outbox_leave.lua is under way */
	int left;	     /* that call was sent: nothing more is read or claimed */
	int leasing;	     /* a call of outbox_lease.lua is under way */
	int64_t lease_until; /* monotonic ms until which the lease is ours; 0: not */
	char cursor[64];     /* the last id read; "" reads from the start */
	int rewound;	     /* the cursor went back while a read was under way */
	int64_t rewind_at;   /* monotonic ms when to read from the start again; 0: not */
	int64_t lease_asked; /* when the call under way was sent */
	int released;	     /* given up for good: the process is stopping */
	int giving_up;	     /* the call that gives the lease up is sent */
	int caught_up;	     /* a read since the release found the stream's end */
	void (*on_released)(void *arg);
	void *released_arg;
	struct event *lease_timer;
};

static struct anchor *anchor_ref(struct outbox *o)
{
	o->anchor->refs++;
	return o->anchor;
}

/* Drops the reference a callback held; returns the outbox, or NULL if gone. */
static struct outbox *anchor_release(struct anchor *a)
{
	struct outbox *o = a->o;
	if (--a->refs == 0)
		free(a);
	return o;
}

/* --- flights ---------------------------------------------------------------- */

static unsigned bucket_of(const char *id)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % BUCKETS;
}

static struct flight *flight_find(struct outbox *o, const char *id)
{
	for (struct flight *f = o->buckets[bucket_of(id)]; f; f = f->hnext)
		if (strcmp(f->id, id) == 0)
			return f;
	return NULL;
}

static struct flight *flight_add(struct outbox *o, const char *id)
{
	size_t len = strlen(id);
	struct flight *f = calloc(1, sizeof(*f) + len + 1);
	if (!f)
		return NULL;
	memcpy(f->id, id, len + 1);
	f->o = o;
	f->next = o->flights;
	if (o->flights)
		o->flights->prev = f;
	o->flights = f;
	unsigned b = bucket_of(id);
	f->hnext = o->buckets[b];
	o->buckets[b] = f;
	o->n_flights++;
	o->n_producing++;
	return f;
}

static void flight_free(struct flight *f)
{
	free(f->why);
	free(f);
}

static void flight_remove(struct outbox *o, struct flight *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		o->flights = f->next;
	if (f->next)
		f->next->prev = f->prev;
	for (struct flight **pp = &o->buckets[bucket_of(f->id)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == f) {
			*pp = f->hnext;
			break;
		}
	}
	o->n_flights--;
	if (!f->acking)
		o->n_producing--;
}

/* --- after delivery ----------------------------------------------------------- */

/* A failed Redis command. Lost connections are logged by the client and
 * retried at the next tick; "shutting down" means it is going away. */
static void note_redis_error(struct outbox *o, const char *what, const char *err)
{
	if (strcmp(err, "shutting down") == 0) {
		o->r = NULL;
		return;
	}
	if (strncmp(err, "NOGROUP", 7) == 0) {
		o->group_connect = 0;
		return;
	}
	if (strcmp(err, "not connected") == 0 || strcmp(err, "timeout") == 0 ||
	    strcmp(err, "connection lost") == 0)
		return;
	log_warn(what, LOG_S("stream", o->stream), LOG_S("error", err));
}

/* An ordered outbox reads again from the start of what is left: entries
 * not deleted are produced again, after what it produced since (that is
 * the one way its order can break: a message whose delivery failed, or a
 * delete that failed). */
static void rewind_cursor(struct outbox *o)
{
	o->cursor[0] = '\0';
	o->rewound = 1;
	o->rewind_at = 0;
}

/* After a failure: once claim_idle_ms have passed, as the group's entries
 * are claimed again, so that a message Kafka keeps refusing is not tried
 * again at every tick. */
static void rewind_later(struct outbox *o)
{
	if (!o->rewind_at)
		o->rewind_at = clock_mono_ms() + o->claim_idle_ms;
}

static void on_acked(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct ack_batch *b = arg;
	(void)r;
	(void)reply;
	for (int i = 0; i < b->n; i++) {
		struct flight *f = b->f[i];
		if (f->o) {
			if (err && i == 0) {
				note_redis_error(f->o,
						 f->o->ordered
						     ? "outbox: XDEL failed; the entries will be "
						       "produced again"
						     : "outbox: XACK failed; the entries will be "
						       "claimed again",
						 err);
				if (f->o->ordered)
					rewind_later(f->o);
			}
			flight_remove(f->o, f);
		}
		flight_free(f);
	}
	free(b);
}

/* One XDEL and one XACK for every entry delivered since the last time.
 * XDEL first: if the XACK is lost, XAUTOCLAIM drops the deleted ids from the
 * pending list, whereas an acked entry never deleted would stay. An ordered
 * outbox reads without a group: XDEL alone. */
static void ack_delivered(struct outbox *o)
{
	int n = o->n_delivered;
	if (n == 0)
		return;
	o->n_delivered = 0;
	struct ack_batch *b = malloc(sizeof(*b) + sizeof(b->f[0]) * (size_t)n);
	/* [_, XDEL, stream, ids...] is sent from its second element, then the
	 * same ids as [XACK, stream, group, ids...]. */
	const char **argv = malloc(sizeof(*argv) * (size_t)(n + 3));
	int sent = 0;
	if (b && argv) {
		b->n = n;
		memcpy(b->f, o->delivered, sizeof(b->f[0]) * (size_t)n);
		for (int i = 0; i < n; i++)
			argv[i + 3] = b->f[i]->id;
		argv[1] = "XDEL";
		argv[2] = o->stream;
		if (o->r && o->ordered)
			sent = redis_command_argv(o->r, on_acked, b, n + 2, argv + 1, NULL) == 0;
		else if (o->r && redis_command_argv(o->r, NULL, NULL, n + 2, argv + 1, NULL) == 0) {
			argv[0] = "XACK";
			argv[1] = o->stream;
			argv[2] = GROUP;
			sent = redis_command_argv(o->r, on_acked, b, n + 3, argv, NULL) == 0;
		}
	}
	free(argv);
	if (sent)
		return;
	/* Left pending: a claim produces them again after claim_idle_ms (an
	 * ordered outbox, when it reads them again). */
	if (o->ordered)
		rewind_later(o);
	for (int i = 0; i < n; i++) {
		struct flight *f = b ? b->f[i] : o->delivered[i];
		flight_remove(o, f);
		flight_free(f);
	}
	free(b);
}

static void on_ack_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ack_delivered(arg);
}

static void on_dead(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct flight *f = arg;
	(void)r;
	(void)reply;
	struct outbox *o = f->o;
	if (o) {
		if (err) {
			note_redis_error(
			    o,
			    "outbox: the refused entry was not moved aside; it will be "
			    "produced again",
			    err);
			if (o->ordered)
				rewind_later(o);
		}
		flight_remove(o, f);
	}
	flight_free(f);
}

/* Kafka took every message of f but those it never will: the entry goes to
 * the dead-letter stream rather than being produced again and again. */
static void dead_letter(struct outbox *o, struct flight *f)
{
	char now[24];
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *why = f->why ? f->why : "refused";
	const char *argv[] = {o->stream, o->dead_stream, f->id, o->ordered ? "" : GROUP, why, now};
	log_error("outbox: Kafka refused a message for good; its entry is moved to the "
		  "dead-letter stream",
		  LOG_S("stream", o->stream), LOG_S("id", f->id),
		  LOG_S("dead_letter", o->dead_stream), LOG_S("error", why));
	o->n_producing--;
	f->acking = 1;
	if (!o->r || redis_script_run(o->r, o->dead_script, on_dead, f, 0, 6, argv, NULL) < 0)
		on_dead(NULL, NULL, "not sent", f);
}

static void on_delivered(const char *err, int refused, void *arg)
{
	struct flight *f = arg;
	struct outbox *o = f->o;
	f->pending--;
	if (o)
		o->n_messages--;
	if (err && refused && !f->refused) {
		f->refused = 1;
		f->why = strdup(err);
	} else if (err && !refused && !f->failed) {
		f->failed = 1;
		if (o)
			log_warn("outbox: delivery failed", LOG_S("stream", o->stream),
				 LOG_S("id", f->id), LOG_S("error", err));
	}
	if (f->pending > 0)
		return;
	if (!o) {
		flight_free(f);
		return;
	}
	if (f->failed) {
		/* Left pending: a claim produces it again after claim_idle_ms (an
		 * ordered outbox, when it reads it again). */
		if (o->ordered)
			rewind_later(o);
		flight_remove(o, f);
		flight_free(f);
		return;
	}
	if (f->refused) {
		dead_letter(o, f);
		return;
	}
	o->n_producing--;
	f->acking = 1;
	if (o->n_delivered == ACK_BATCH)
		ack_delivered(o);
	o->delivered[o->n_delivered++] = f;
	/* Runs once the delivery reports at hand have all been seen. */
	if (o->n_delivered == 1)
		event_active(o->ack_ev, EV_TIMEOUT, 0);
}

/* --- producing entries --------------------------------------------------------- */

/* Whether an entry's fields name messages, at least one, in order: topic,
 * key (optional), value, and so on. */
static int reads_as_messages(const redisReply *fields)
{
	if (!fields || fields->type != REDIS_REPLY_ARRAY || fields->elements % 2)
		return 0;
	int n = 0, topic = 0;
	for (size_t i = 0; i < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			return 0;
		if (strcmp(k->str, "topic") == 0 && !topic && v->len > 0)
			topic = 1;
		else if (strcmp(k->str, "key") == 0 && topic)
			continue;
		else if (strcmp(k->str, "value") == 0 && topic)
			topic = 0, n++;
		else
			return 0;
	}
	return !topic && n > 0;
}

static void drop_entry(struct outbox *o, const char *id)
{
	/* It can never be produced; keeping it would only repeat this. */
	log_error("outbox: dropping malformed entry", LOG_S("stream", o->stream), LOG_S("id", id));
	if (o->r) {
		redis_command(o->r, NULL, NULL, "XDEL %s %s", o->stream, id);
		if (!o->ordered)
			redis_command(o->r, NULL, NULL, "XACK %s " GROUP " %s", o->stream, id);
	}
}

/* One stream entry: [id, [field, value, ...]]. */
static void produce_entry(struct outbox *o, const redisReply *entry)
{
	if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
	    entry->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *id = entry->element[0]->str;
	if (flight_find(o, id))
		return;
	const redisReply *fields = entry->element[1];
	if (!reads_as_messages(fields)) {
		drop_entry(o, id);
		return;
	}
	struct flight *f = flight_add(o, id);
	if (!f)
		return;
	/* Reported as one more until every message is handed over, so that
	 * no report can finish the flight meanwhile. */
	f->pending = 1;
	o->n_messages++;
	const char *key = NULL;
	const redisReply *topic = NULL;
	for (size_t i = 0; i < fields->elements; i += 2) {
		const char *name = fields->element[i]->str;
		const redisReply *v = fields->element[i + 1];
		if (name[0] == 't') {
			topic = v;
			key = NULL;
			continue;
		}
		if (name[0] == 'k') {
			/* Redis strings are NUL-terminated: keys pass as C strings. */
			key = v->str;
			continue;
		}
		char full[512];
		if (topic->str[0] == '@')
			snprintf(full, sizeof(full), "%s%s", o->topic_prefix, topic->str + 1);
		else
			snprintf(full, sizeof(full), "%s", topic->str);
		char why[128];
		int rc = kafka_produce(o->p, full, key, v->str, v->len, on_delivered, f, why,
				       sizeof(why));
		if (rc < 0) {
			/* Reported as the delivery report would: the rest of the
			 * entry is still produced when this message never will be. */
			f->pending++;
			o->n_messages++;
			on_delivered(why, rc == KAFKA_REFUSED, f);
			if (rc != KAFKA_REFUSED)
				break;
			continue;
		}
		f->pending++;
		o->n_messages++;
	}
	on_delivered(NULL, 0, f);
}

/* Entries read are produced whole (they are this consumer's now); claimed
 * ones only while there is room (the rest are claimed again later). */
static void produce_entries(struct outbox *o, const redisReply *entries, int claimed)
{
	if (!entries || entries->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < entries->elements && (!claimed || o->n_messages < MAX_IN_FLIGHT);
	     i++)
		produce_entry(o, entries->element[i]);
}

/* --- reading new entries --------------------------------------------------------- */

static void read_batch(struct outbox *o);

static void on_group(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)reply;
	if (!o)
		return;
	if (err && strncmp(err, "BUSYGROUP", 9) != 0) {
		note_redis_error(o, "outbox: XGROUP CREATE failed", err);
		return;
	}
	o->group_connect = redis_connect_count(r);
}

static void on_read(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)r;
	if (!o)
		return;
	o->reading = 0;
	if (err) {
		note_redis_error(o, "outbox: XREADGROUP failed", err);
		return;
	}
	/* XREADGROUP: [[stream, [entry, ...]]], or nil when nothing is new;
	 * XRANGE (ordered): [entry, ...]. */
	const redisReply *entries = NULL;
	if (o->ordered)
		entries = reply;
	else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
		 reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
		entries = reply->element[0]->element[1];
	size_t got = 0;
	if (entries && entries->type == REDIS_REPLY_ARRAY) {
		produce_entries(o, entries, 0);
		got = entries->elements;
	}
	if (o->ordered && got > 0 && !o->rewound) {
		const redisReply *last = entries->element[got - 1];
		if (last->type == REDIS_REPLY_ARRAY && last->elements == 2 &&
		    last->element[0]->type == REDIS_REPLY_STRING &&
		    last->element[0]->len < sizeof(o->cursor))
			memcpy(o->cursor, last->element[0]->str, last->element[0]->len + 1);
	}
	if (o->ordered && got < (size_t)o->read_count)
		o->caught_up = 1;
	if (got == (size_t)o->read_count || o->read_again) {
		o->read_again = 0;
		read_batch(o);
	}
}

static int lease_held(const struct outbox *o)
{
	return o->lease_until > clock_mono_ms();
}

/* The entries after the cursor, in stream order. */
static int read_ordered(struct outbox *o, int count)
{
	char start[sizeof(o->cursor) + 1], n[16];
	snprintf(start, sizeof(start), o->cursor[0] ? "(%s" : "-", o->cursor);
	snprintf(n, sizeof(n), "%d", count);
	const char *argv[] = {"XRANGE", o->stream, start, "+", "COUNT", n};
	o->rewound = 0;
	return redis_command_argv(o->r, on_read, anchor_ref(o), 6, argv, NULL);
}

/* Never BLOCK: the connection is shared with every other module. */
/* Whether this dispatcher takes no more entries: its producer failed for
 * good (its process stops, kafka.h) and publishes nothing more, or it left
 * the group (outbox_drain). An entry it read or claimed then would only
 * wait, pending under its name, for another's claim. */
static int taking_none(const struct outbox *o)
{
	return o->left || kafka_producer_failed(o->p);
}

static void read_batch(struct outbox *o)
{
	if (o->reading) {
		o->read_again = 1;
		return;
	}
	if (!o->r || !redis_connected(o->r) || taking_none(o))
		return;
	int room = MAX_IN_FLIGHT - o->n_messages;
	if (room <= 0 || (o->ordered && !lease_held(o)))
		return;
	int count = room < BATCH ? room : BATCH;
	if (o->ordered) {
		if (o->rewind_at && clock_mono_ms() >= o->rewind_at)
			rewind_cursor(o);
		if (read_ordered(o, count) < 0) {
			anchor_release(o->anchor);
			return;
		}
		o->reading = 1;
		o->read_count = count;
		return;
	}
	if (o->group_connect != redis_connect_count(o->r) &&
	    redis_command(o->r, on_group, anchor_ref(o), "XGROUP CREATE %s " GROUP " 0 MKSTREAM",
			  o->stream) < 0) {
		anchor_release(o->anchor);
		return;
	}
	if (redis_command(o->r, on_read, anchor_ref(o),
			  "XREADGROUP GROUP " GROUP " %s COUNT %d STREAMS %s >", o->consumer, count,
			  o->stream) < 0) {
		anchor_release(o->anchor);
		return;
	}
	o->reading = 1;
	o->read_count = count;
}

/* --- claiming what others left pending ------------------------------------------- */

static void claim_from(struct outbox *o, const char *cursor);

static void on_forgot(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)r;
	if (!o)
		return;
	if (err)
		note_redis_error(o, "outbox: gone consumers were not forgotten", err);
	else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
		log_debug("outbox: consumers with nothing pending and idle are forgotten",
			  LOG_S("stream", o->stream), LOG_I("count", reply->integer));
}

/* After a claim pass, once per claim_idle_ms: a process killed, or one
 * that stopped with entries pending, never left the group (outbox_drain);
 * its entries are claimed by now, and its name is dropped (and that of an
 * idle live one, which its next read puts back). */
static void forget_gone(struct outbox *o)
{
	int64_t now = clock_mono_ms();
	if (now < o->forget_at || !o->r || !redis_connected(o->r))
		return;
	o->forget_at = now + o->claim_idle_ms;
	char idle[16];
	snprintf(idle, sizeof(idle), "%d", o->claim_idle_ms);
	const char *argv[] = {o->stream, GROUP, idle};
	if (redis_script_run(o->r, o->forget_script, on_forgot, anchor_ref(o), 0, 3, argv, NULL) <
	    0)
		anchor_release(o->anchor);
}

static void on_claimed(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)r;
	if (!o)
		return;
	o->claiming = 0;
	if (err) {
		note_redis_error(o, "outbox: XAUTOCLAIM failed", err);
		return;
	}
	/* [next cursor, [entry, ...], [deleted id, ...]] */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	produce_entries(o, reply->element[1], 1);
	if (strcmp(reply->element[0]->str, "0-0") != 0)
		claim_from(o, reply->element[0]->str);
	else
		forget_gone(o);
}

static void claim_from(struct outbox *o, const char *cursor)
{
	if (o->claiming || !o->r || !redis_connected(o->r) || o->n_messages >= MAX_IN_FLIGHT ||
	    taking_none(o))
		return;
	if (redis_command(o->r, on_claimed, anchor_ref(o),
			  "XAUTOCLAIM %s " GROUP " %s %d %s COUNT %d", o->stream, o->consumer,
			  o->claim_idle_ms, cursor, BATCH) < 0) {
		anchor_release(o->anchor);
		return;
	}
	o->claiming = 1;
}

/* --- timers and public ------------------------------------------------------------- */

static void give_up_when_idle(struct outbox *o);

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct outbox *o = arg;
	/* Stopping, with the stream read to its end (or no lease left to read
	 * it under): no more reads. */
	if (o->released && (o->caught_up || !lease_held(o)))
		give_up_when_idle(o);
	else
		read_batch(o);
}

static void on_claim_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	claim_from(arg, "0-0");
}

static int arm_claim_timer(struct outbox *o)
{
	int ms = o->claim_idle_ms < CLAIM_EVERY_MS ? o->claim_idle_ms : CLAIM_EVERY_MS;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return evtimer_add(o->claim_timer, &tv);
}

/* Any process's dispatcher may publish any entry, so each looks up every
 * topic sluice writes up front rather than on its first message. */
static void warm_topics(struct outbox *o)
{
	static const char *const names[] = {"jobs.build",  "jobs.test", "jobs.scan", "jobs.push",
					    "jobs.deploy", "results",	"events",    "dlq"};
	char buf[sizeof(names) / sizeof(names[0])][256];
	const char *topics[sizeof(names) / sizeof(names[0])];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(buf[i], sizeof(buf[i]), "%s%s", o->topic_prefix, names[i]);
		topics[i] = buf[i];
	}
	kafka_producer_warm(o->p, topics, sizeof(names) / sizeof(names[0]));
}

/* --- the events stream's lease ------------------------------------------------------ */

static void released(struct outbox *o)
{
	void (*done)(void *) = o->on_released;
	o->on_released = NULL;
	if (done)
		done(o->released_arg);
}

static void on_given_up(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)r;
	(void)reply;
	if (!o)
		return;
	o->leasing = 0;
	if (err)
		note_redis_error(o, "outbox: the events lease was not given up", err);
	else
		log_info("outbox: the events lease is given up", LOG_S("stream", o->stream));
	released(o);
}

/* Takes the lease, or keeps it (ms > 0); gives it up (ms 0). 0 when the
 * call was sent: cb is called. */
static int lease_call(struct outbox *o, int ms, redis_cb cb)
{
	if (!o->r || !redis_connected(o->r))
		return -1;
	char text[16];
	snprintf(text, sizeof(text), "%d", ms);
	const char *argv[] = {o->lease_key, o->consumer, text};
	o->lease_asked = clock_mono_ms();
	if (redis_script_run(o->r, o->lease_script, cb, anchor_ref(o), 0, 3, argv, NULL) < 0) {
		anchor_release(o->anchor);
		return -1;
	}
	o->leasing = 1;
	return 0;
}

static void on_lease(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)r;
	if (!o)
		return;
	o->leasing = 0;
	if (o->released) {
		/* Asked for before it was given up: give it up once idle. */
		give_up_when_idle(o);
		return;
	}
	int held = lease_held(o);
	if (err || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
		if (err)
			note_redis_error(o, "outbox: the events lease was not renewed", err);
		if (held)
			log_info("outbox: this process no longer publishes the events",
				 LOG_S("stream", o->stream));
		o->lease_until = 0;
		return;
	}
	/* Counted from when it was asked for: Redis's lease ends later. */
	o->lease_until = o->lease_asked + LEASE_MS;
	if (!held && lease_held(o)) {
		log_info("outbox: this process publishes the events, in order",
			 LOG_S("stream", o->stream));
		rewind_cursor(o);
		read_batch(o);
	}
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
	struct outbox *o = arg;
	(void)fd;
	(void)what;
	if (!o->leasing && !o->released)
		lease_call(o, LEASE_MS, on_lease);
}

/* --- public ------------------------------------------------------------------------- */

static void dispatcher_free(struct outbox *o)
{
	if (!o)
		return;
	/* What was delivered and not yet deleted is queued for deletion; it
	 * reaches Redis only if the loop runs again (outbox_busy says so). */
	ack_delivered(o);
	if (o->tick)
		event_free(o->tick);
	if (o->claim_timer)
		event_free(o->claim_timer);
	if (o->ack_ev)
		event_free(o->ack_ev);
	if (o->lease_timer)
		event_free(o->lease_timer);
	for (struct flight *f = o->flights; f; f = f->next)
		f->o = NULL;
	if (o->anchor) {
		o->anchor->o = NULL;
		anchor_release(o->anchor);
	}
	free(o->stream);
	free(o->dead_stream);
	free(o->consumer);
	free(o->topic_prefix);
	free(o->lease_key);
	free(o);
}

static char *key_of(const char *prefix, const char *name)
{
	size_t plen = strlen(prefix), nlen = strlen(name);
	char *key = malloc(plen + nlen + 1);
	if (key) {
		memcpy(key, prefix, plen);
		memcpy(key + plen, name, nlen + 1);
	}
	return key;
}

/* The dispatcher of one stream: "outbox" through the consumer group, or
 * (ordered) "outbox:events" under the lease. */
static struct outbox *dispatcher_new(struct event_base *base, struct redis *r,
				     struct kafka_producer *p, const char *key_prefix,
				     const char *topic_prefix, const char *consumer, int ordered)
{
	struct outbox *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->r = r;
	o->p = p;
	o->ordered = ordered;
	o->claim_idle_ms = DEFAULT_CLAIM_IDLE;
	o->stream = key_of(key_prefix, ordered ? "outbox:events" : "outbox");
	o->dead_stream = key_of(key_prefix, "outbox:dead");
	o->consumer = strdup(consumer);
	o->topic_prefix = strdup(topic_prefix);
	o->anchor = calloc(1, sizeof(*o->anchor));
	o->dead_script = redis_script_add(r, &lua_outbox_dead);
	if (!o->stream || !o->dead_stream || !o->consumer || !o->topic_prefix || !o->anchor ||
	    o->dead_script < 0)
		goto fail;
	o->anchor->o = o;
	o->anchor->refs = 1;

	o->tick = event_new(base, -1, EV_PERSIST, on_tick, o);
	o->ack_ev = event_new(base, -1, 0, on_ack_event, o);
	if (!o->tick || !o->ack_ev)
		goto fail;
	struct timeval tv = {.tv_sec = 0, .tv_usec = (ordered ? EVENTS_TICK_MS : TICK_MS) * 1000};
	if (evtimer_add(o->tick, &tv) < 0)
		goto fail;
	if (ordered) {
		struct timeval renew = {.tv_sec = LEASE_RENEW_MS / 1000,
					.tv_usec = (LEASE_RENEW_MS % 1000) * 1000};
		o->lease_key = key_of(key_prefix, "outbox:events:lease");
		o->lease_script = redis_script_add(r, &lua_outbox_lease);
		o->lease_timer = event_new(base, -1, EV_PERSIST, on_lease_timer, o);
		if (!o->lease_key || o->lease_script < 0 || !o->lease_timer ||
		    evtimer_add(o->lease_timer, &renew) < 0)
			goto fail;
		/* The first attempt as soon as the loop runs. */
		event_active(o->lease_timer, EV_TIMEOUT, 0);
		return o;
	}
	o->claim_timer = event_new(base, -1, EV_PERSIST, on_claim_timer, o);
	o->leave_script = redis_script_add(r, &lua_outbox_leave);
	o->forget_script = redis_script_add(r, &lua_outbox_forget);
	if (!o->claim_timer || o->leave_script < 0 || o->forget_script < 0 ||
	    arm_claim_timer(o) < 0)
		goto fail;
	warm_topics(o);
	return o;
fail:
	dispatcher_free(o);
	return NULL;
}

struct outbox *outbox_new(struct event_base *base, struct redis *r, struct kafka_producer *p,
			  const char *key_prefix, const char *topic_prefix, const char *consumer,
			  int events)
{
	struct outbox *o = dispatcher_new(base, r, p, key_prefix, topic_prefix, consumer, 0);
	if (o && events) {
		o->events = dispatcher_new(base, r, p, key_prefix, topic_prefix, consumer, 1);
		if (!o->events) {
			dispatcher_free(o);
			return NULL;
		}
	}
	return o;
}

static int dispatcher_busy(const struct outbox *o);

/* Once the events recorded before the release are read (or the lease ran
 * out), produced and deleted: the next holder starts after them rather than
 * producing them again. A renewal under way gives the lease up when it is
 * answered (on_lease). */
static void give_up_when_idle(struct outbox *o)
{
	if (!o->released || !o->on_released || o->leasing || o->giving_up || dispatcher_busy(o) ||
	    (!o->caught_up && lease_held(o)))
		return;
	o->giving_up = 1;
	if (lease_call(o, 0, on_given_up) < 0)
		released(o);
}

void outbox_release_events(struct outbox *o, void (*done)(void *arg), void *arg)
{
	struct outbox *e = o->events;
	if (!e || e->released) {
		done(arg);
		return;
	}
	/* No renewal from now on; the lease already held still lets the
	 * stream be read to its end. */
	e->released = 1;
	e->caught_up = 0;
	e->on_released = done;
	e->released_arg = arg;
	give_up_when_idle(e);
}

void outbox_kick(struct outbox *o)
{
	read_batch(o);
}

int outbox_in_flight(const struct outbox *o)
{
	return o->n_producing + (o->events ? o->events->n_producing : 0);
}

static int dispatcher_busy(const struct outbox *o)
{
	return o->reading || o->claiming || o->n_flights > 0 || o->n_delivered > 0;
}

int outbox_busy(const struct outbox *o)
{
	return dispatcher_busy(o) || (o->events && dispatcher_busy(o->events));
}

static void on_left(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct outbox *o = anchor_release(arg);
	(void)r;
	if (!o)
		return;
	o->leaving = 0;
	if (err)
		note_redis_error(o, "outbox: the consumer group was not left", err);
	else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
		log_info("outbox: entries still pending under this name; it stays in the group",
			 LOG_S("stream", o->stream), LOG_S("consumer", o->consumer));
}

static void on_drain_limit(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

void outbox_drain(struct outbox *o, struct event_base *base, int max_ms)
{
	int over = 0;
	struct event *limit = evtimer_new(base, on_drain_limit, &over);
	struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
	if (!limit || evtimer_add(limit, &tv) < 0) {
		if (limit)
			event_free(limit);
		return;
	}
	while (!over && outbox_busy(o))
		event_base_loop(base, EVLOOP_ONCE);
	const char *argv[] = {o->stream, GROUP, o->consumer};
	if (!over && o->r && redis_connected(o->r)) {
		if (redis_script_run(o->r, o->leave_script, on_left, anchor_ref(o), 0, 3, argv,
				     NULL) == 0)
			o->leaving = o->left = 1;
		else
			anchor_release(o->anchor);
	}
	while (!over && o->leaving)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(limit);
}

void outbox_set_claim_idle_ms(struct outbox *o, int ms)
{
	if (ms <= 0)
		return;
	o->claim_idle_ms = ms;
	arm_claim_timer(o);
	if (o->events)
		o->events->claim_idle_ms = ms;
}

void outbox_free(struct outbox *o)
{
	if (!o)
		return;
	dispatcher_free(o->events);
	dispatcher_free(o);
}
