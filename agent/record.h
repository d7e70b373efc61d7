/* record: webhook deliveries and manual triggers written to Redis, with
 * their runs and first jobs, by queue/scripts/intake.lua.
 *
 * Group commit: a delivery is sent at once unless two calls of the script
 * are under way; those that arrive meanwhile gather and go together in one
 * call when a reply comes (or as soon as BATCH_DELIVERIES have gathered).
 * One delivery alone waits for nothing; under load one call records many,
 * and the cost of a call (a round trip, a script run) is shared, while the
 * second call keeps Redis busy as the first one's deliveries are answered.
 * A call is one script run, which nothing else in Redis interleaves with;
 * but Redis does not undo what a script wrote before an error. The script
 * decodes nothing and every argument is a plain string, so an error midway
 * means a key of the wrong type in Redis (a damaged or foreign keyspace):
 * the runs written before it stay, without their jobs, and every delivery
 * of the call is answered 503.
 *
 * A delivery is built in the batch being gathered: record_begin, then
 * record_run for each run, then record_commit (or record_cancel), all
 * within one callback of the event loop.
 */
#ifndef SLUICE_RECORD_H
#define SLUICE_RECORD_H

#include <event2/event.h>
#include <jansson.h>

#include "config/config.h"
#include "queue/redis.h"

struct recorder;

/* status "created" or "duplicate" and runs, the JSON array of the run ids
 * (those of the first delivery for a duplicate); or status NULL and err
 * when nothing was recorded. */
typedef void (*record_cb)(const char *status, const char *runs, const char *err, void *arg);

/* settings gives the key prefix and the jobs' topics; it and r must outlive
 * the recorder, which is freed after r (its last replies still count). */
struct recorder *recorder_new(struct event_base *base, struct redis *r, int script,
			      const struct settings *settings);
void recorder_free(struct recorder *rec);

/* A delivery: its id (unique per hook), how long its id is remembered, its
 * time (ms) and what it is about. 0, or -1 (out of memory; nothing begun). */
int record_begin(struct recorder *rec, const char *delivery, int ttl_s, long long now_ms,
		 const char *repository, const char *event, const char *ref, const char *sha);
/* A run of the delivery begun: its id and pipeline, the checkout URL, the
 * pipeline's definition (as text, and parsed for its stages) and plan, the
 * status each stage starts in (config/when.h); a queued stage's job is
 * prepared here. 0, or -1 (out of memory, or a plan without a stage's
 * status, or a text the events cannot carry). */
int record_run(struct recorder *rec, const char *run, const char *pipeline, const char *url,
	       const char *def_text, const json_t *def, const json_t *plan);
/* Ends the delivery begun; cb(arg) is called once, later; only when memory
 * runs out even for the event that defers it, from within this call. */
void record_commit(struct recorder *rec, record_cb cb, void *arg);
/* Drops the delivery begun. */
void record_cancel(struct recorder *rec);

#endif
