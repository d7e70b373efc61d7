/* record: deliveries written to Redis by intake.lua, gathered into batches
 * while a call is under way (record.h).
 */
#include "agent/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsontext.h"
#include "lib/log.h"
#include "queue/envelope.h"
#include "queue/jobs.h"

/* Deliveries per call at most: bounds how long one script runs (each
 * delivery costs some tens of microseconds there). */
#define BATCH_DELIVERIES 64
/* Room kept for a delivery's number of runs, written at its commit. */
#define COUNT_ROOM 24
/* Calls under way at once: while Redis runs one, the next waits in its
 * socket, so that Redis never idles between them; deliveries arriving
 * meanwhile gather for the call after. */
#define CALLS_IN_FLIGHT 2

struct waiter {
	record_cb cb;
	void *arg;
};

/* The arguments of one call, kept by offset (the bytes move as they grow),
 * each followed by a NUL that is not sent, and who waits for each of its
 * deliveries. */
struct batch {
	struct recorder *rec;
	char *bytes;
	size_t used, room;
	size_t *off, *len;
	int n, args_room;
	struct waiter *waiters;
	int nwait, waiters_room;
};

struct recorder {
	struct event_base *base;
	struct redis *r;
	int script;
	const struct settings *settings;
	struct batch *open; /* being gathered; NULL until a delivery begins */
	int in_flight;	    /* calls sent and not answered yet */
	/* The delivery begun: where it starts, to drop it; its count of runs. */
	int begin_n;
	size_t begin_used;
	int count_arg;
	int nruns;
	struct jsontext event; /* an event's text being written */
};

/* The delivery's arguments after its id, ttl and time (record_begin). */
enum { ARG_REPOSITORY = 3, ARG_EVENT, ARG_REF, ARG_SHA };

static void batch_free(struct batch *b)
{
	if (!b)
		return;
	free(b->bytes);
	free(b->off);
	free(b->len);
	free(b->waiters);
	free(b);
}

/* Every delivery of b fails with err; then b is freed. */
static void batch_fail(struct batch *b, const char *err)
{
	for (int i = 0; i < b->nwait; i++)
		b->waiters[i].cb(NULL, NULL, err, b->waiters[i].arg);
	batch_free(b);
}

static int push_len(struct batch *b, const char *s, size_t len)
{
	if (b->n == b->args_room) {
		int room = b->args_room ? b->args_room * 2 : 64;
		size_t *off = realloc(b->off, sizeof(*off) * (size_t)room);
		if (!off)
			return -1;
		b->off = off;
		size_t *l = realloc(b->len, sizeof(*l) * (size_t)room);
		if (!l)
			return -1;
		b->len = l;
		b->args_room = room;
	}
	if (b->used + len + 1 > b->room) {
		size_t room = b->room ? b->room : 4096;
		while (room < b->used + len + 1)
			room *= 2;
		char *bytes = realloc(b->bytes, room);
		if (!bytes)
			return -1;
		b->bytes = bytes;
		b->room = room;
	}
	if (len)
		memcpy(b->bytes + b->used, s, len);
	b->bytes[b->used + len] = '\0';
	b->off[b->n] = b->used;
	b->len[b->n++] = len;
	b->used += len + 1;
	return 0;
}

/* The argument of the delivery begun at place (ARG_*), until the next push. */
static const char *delivery_arg(const struct recorder *rec, int place)
{
	const struct batch *b = rec->open;
	return b->bytes + b->off[rec->begin_n + place];
}

static int push(struct batch *b, const char *s)
{
	return push_len(b, s, strlen(s));
}

static int push_num(struct batch *b, long long v)
{
	char text[32];
	snprintf(text, sizeof(text), "%lld", v);
	return push(b, text);
}

/* --- sending ------------------------------------------------------------------ */

static void send_open(struct recorder *rec, int from_commit);

static int reply_fits(const redisReply *reply, int nwait)
{
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)nwait * 2)
		return 0;
	for (size_t i = 0; i < reply->elements; i++)
		if (reply->element[i]->type != REDIS_REPLY_STRING)
			return 0;
	return 1;
}

static void on_recorded(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct batch *b = arg;
	struct recorder *rec = b->rec;
	(void)r;
	rec->in_flight--;
	if (!err && !reply_fits(reply, b->nwait))
		err = "unexpected reply";
	/* What gathered meanwhile goes first, so that Redis records it while
	 * these deliveries are answered; not when Redis is going away. */
	if (rec->in_flight < CALLS_IN_FLIGHT && (!err || strcmp(err, "shutting down") != 0))
		send_open(rec, 0);
	if (err) {
		batch_fail(b, err);
	} else {
		for (int i = 0; i < b->nwait; i++)
			b->waiters[i].cb(reply->element[2 * i]->str, reply->element[2 * i + 1]->str,
					 NULL, b->waiters[i].arg);
		batch_free(b);
	}
}

static void on_unsent(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	batch_fail(arg, "not sent");
}

/* Sends the batch gathered, if any. A failure is reported to its deliveries
 * at once, or from the event loop when a commit is still on the stack. */
static void send_open(struct recorder *rec, int from_commit)
{
	struct batch *b = rec->open;
	if (!b || b->nwait == 0)
		return;
	rec->open = NULL;
	const char **v = malloc(sizeof(*v) * (size_t)b->n);
	int rc = -1;
	if (v) {
		for (int i = 0; i < b->n; i++)
			v[i] = b->bytes + b->off[i];
		rc = redis_script_run(rec->r, rec->script, on_recorded, b, 0, b->n, v, b->len);
		free(v);
	}
	if (rc == 0) {
		rec->in_flight++;
		return;
	}
	log_error("deliveries not sent to Redis", LOG_I("deliveries", b->nwait));
	struct timeval now = {0, 0};
	if (!from_commit || event_base_once(rec->base, -1, EV_TIMEOUT, on_unsent, b, &now) < 0)
		batch_fail(b, "not sent");
}

/* --- public ------------------------------------------------------------------- */

struct recorder *recorder_new(struct event_base *base, struct redis *r, int script,
			      const struct settings *settings)
{
	struct recorder *rec = calloc(1, sizeof(*rec));
	if (!rec)
		return NULL;
	rec->base = base;
	rec->r = r;
	rec->script = script;
	rec->settings = settings;
	return rec;
}

void recorder_free(struct recorder *rec)
{
	if (!rec)
		return;
	if (rec->open)
		batch_fail(rec->open, "shutting down");
	free(jsontext_take(&rec->event));
	free(rec);
}

int record_begin(struct recorder *rec, const char *delivery, int ttl_s, long long now_ms,
		 const char *repository, const char *event, const char *ref, const char *sha)
{
	struct batch *b = rec->open;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b || push(b, rec->settings->key_prefix) < 0) {
			batch_free(b);
			return -1;
		}
		b->rec = rec;
		rec->open = b;
	}
	/* Room for its waiter now, so that the commit cannot fail. */
	if (b->nwait == b->waiters_room) {
		int room = b->waiters_room ? b->waiters_room * 2 : 8;
		struct waiter *w = realloc(b->waiters, sizeof(*w) * (size_t)room);
		if (!w)
			return -1;
		b->waiters = w;
		b->waiters_room = room;
	}
	rec->begin_n = b->n;
	rec->begin_used = b->used;
	rec->nruns = 0;
	if (push(b, delivery) < 0 || push_num(b, ttl_s) < 0 || push_num(b, now_ms) < 0 ||
	    push(b, repository) < 0 || push(b, event) < 0 || push(b, ref) < 0 || push(b, sha) < 0 ||
	    push_len(b, "000000000000000000000000", COUNT_ROOM) < 0) {
		record_cancel(rec);
		return -1;
	}
	rec->count_arg = b->n - 1;
	return 0;
}

/* Starts an event of the run: its text but for the head that intake.lua
 * writes (specversion, id and time: emit_prepared in lib/events.lua), up to
 * the data's fields that every event of the run holds; the caller adds its
 * own fields and pushes it with push_event. */
static void event_begin(struct recorder *rec, const char *type, const char *subject,
			const char *run, const char *pipeline)
{
	struct jsontext *t = &rec->event;
	jsontext_reset(t);
	envelope_write_rest(t, "sluice", type, subject);
	jsontext_raw(t, "{\"run\":");
	jsontext_string(t, run);
	jsontext_raw(t, ",\"pipeline\":");
	jsontext_string(t, pipeline);
	jsontext_raw(t, ",\"repository\":");
	jsontext_string(t, delivery_arg(rec, ARG_REPOSITORY));
	jsontext_raw(t, ",\"sha\":");
	jsontext_string(t, delivery_arg(rec, ARG_SHA));
	jsontext_raw(t, ",\"ref\":");
	jsontext_string(t, delivery_arg(rec, ARG_REF));
}

/* A field of the event's data, after those event_begin wrote. */
static void event_field(struct recorder *rec, const char *name, const char *value)
{
	jsontext_raw(&rec->event, ",\"");
	jsontext_raw(&rec->event, name);
	jsontext_raw(&rec->event, "\":");
	jsontext_string(&rec->event, value);
}

static int push_event(struct recorder *rec)
{
	struct jsontext *t = &rec->event;
	jsontext_raw(t, "}}");
	return t->failed ? -1 : push_len(rec->open, t->s, t->len);
}

/* A stage event: subject and fields as lib/events.lua's emit_stage gives them. */
static void stage_event_begin(struct recorder *rec, const char *type, const char *run,
			      const char *pipeline, const char *stage)
{
	char subject[512];
	snprintf(subject, sizeof(subject), "runs/%s/stages/%s/attempts/1", run, stage);
	event_begin(rec, type, subject, run, pipeline);
	event_field(rec, "stage", stage);
	jsontext_raw(&rec->event, ",\"attempt\":1");
}

int record_run(struct recorder *rec, const char *run, const char *pipeline, const char *url,
	       const char *def_text, const json_t *def, const json_t *plan)
{
	struct batch *b = rec->open;
	const json_t *stages = json_object_get(def, "stages");
	char subject[256];
	snprintf(subject, sizeof(subject), "runs/%s", run);
	event_begin(rec, "dev.sluice.run.created", subject, run, pipeline);
	event_field(rec, "status", "queued");
	event_field(rec, "event", delivery_arg(rec, ARG_EVENT));
	if (push(b, run) < 0 || push(b, pipeline) < 0 || push(b, url) < 0 ||
	    push(b, def_text) < 0 || push_event(rec) < 0 ||
	    push_num(b, (long long)json_object_size(stages)) < 0)
		return -1;
	const char *name;
	const json_t *stage;
	json_object_foreach((json_t *)stages, name, stage)
	{
		const json_t *entry = json_object_get(plan, name);
		const char *status = json_string_value(json_object_get(entry, "status"));
		if (!status || push(b, name) < 0 || push(b, status) < 0)
			return -1;
		if (strcmp(status, "skipped") == 0) {
			const char *reason = json_string_value(json_object_get(entry, "reason"));
			stage_event_begin(rec, "dev.sluice.stage.skipped", run, pipeline, name);
			event_field(rec, "reason", reason ? reason : "");
			if (push(b, reason ? reason : "") < 0 || push_len(b, "", 0) < 0 ||
			    push_event(rec) < 0)
				return -1;
			continue;
		}
		if (strcmp(status, "queued") != 0) {
			if (push_len(b, "", 0) < 0 || push_len(b, "", 0) < 0 ||
			    push_len(b, "", 0) < 0)
				return -1;
			continue;
		}
		const char *kind = json_string_value(json_object_get(stage, "kind"));
		json_t *job = jobs_prepare(rec->settings, run, name, kind, 1);
		int rc = job ? push(b, json_string_value(json_object_get(job, "topic"))) : -1;
		if (rc == 0)
			rc = push(b, json_string_value(json_object_get(job, "value")));
		json_decref(job);
		stage_event_begin(rec, "dev.sluice.stage.queued", run, pipeline, name);
		if (rc < 0 || push_event(rec) < 0)
			return -1;
	}
	rec->nruns++;
	return 0;
}

void record_commit(struct recorder *rec, record_cb cb, void *arg)
{
	struct batch *b = rec->open;
	/* The count of runs, known only now, goes into the room kept for it. */
	b->len[rec->count_arg] =
	    (size_t)snprintf(b->bytes + b->off[rec->count_arg], COUNT_ROOM, "%d", rec->nruns);
	b->waiters[b->nwait++] = (struct waiter){cb, arg};
	if (rec->in_flight < CALLS_IN_FLIGHT || b->nwait >= BATCH_DELIVERIES)
		send_open(rec, 1);
}

void record_cancel(struct recorder *rec)
{
	struct batch *b = rec->open;
	if (!b)
		return;
	b->n = rec->begin_n;
	b->used = rec->begin_used;
}
