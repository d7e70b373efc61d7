/* worker: the context of one sluice-worker process and its job slots.
 *
 * The worker consumes sluice.jobs.<kind> for its kinds and runs up to
 * `concurrency` jobs at once; a job that arrives while every slot is busy
 * waits in the backlog (its offset not stored), and the partitions are paused
 * while the backlog is full (worker_backlog_limit).
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <event2/event.h>
#include <stdint.h>

#include "config/config.h"
#include "queue/kafka.h"
#include "queue/outbox.h"
#include "queue/redis.h"

struct job;
struct backlog_item;
struct worker_metrics;
struct defcache;
struct stage_log;

struct worker_scripts {
	int claim;
	int finish;
	int lease_renew;
	int handback;
	int rollout_save;
	int park;
};

struct worker {
	struct event_base *base;
	struct settings settings;
	struct redis *redis;
	struct worker_scripts scripts;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer;
	struct outbox *outbox;
	struct defcache *defs;	  /* the definitions of recent runs (defcache.h) */
	struct defcache *sources; /* their stages whose outputs claims read (job.c) */
	char token[160];	  /* host:pid:random — names this worker in leases */
	int concurrency;
	int running;
	int draining;	  /* no new jobs; running ones finish */
	int handing_back; /* second signal or drain timeout: stop every job now */
	struct job *jobs;
	struct backlog_item *backlog, **backlog_tail;
	int backlog_len;
	/* Jobs started in the second started_sec of the monotonic clock and in
	 * the one before: the rate worker_backlog_limit follows. */
	int64_t started_sec;
	int started_now, started_before;
	size_t log_in_flight;  /* bytes of log writes Redis has not answered (stage_log.h) */
	int log_held;	       /* the children's output is held meanwhile */
	struct stage_log *log; /* the lines waiting for Redis (stage_log.c) */
	struct worker_metrics *metrics; /* NULL when not set up (worker_metrics.h) */
	struct event *idle_trim;	/* runs worker_on_idle; NULL when not set up */
};

/* A job for this worker: start it now if a slot is free, else keep it in
 * the backlog (offset not stored) and pause the consumer. */
void worker_offer(struct worker *w, const char *run, const char *stage, int attempt,
		  struct kafka_ticket *t);
/* The backlog depth at which the consumer is paused: about two seconds of
 * jobs at the rate they were started lately, at least twice the slots and
 * 256, at most 4096 (worker.c says why). */
int worker_backlog_limit(const struct worker *w);
/* A new slot count (a reload): starts waiting jobs when it grew. */
void worker_set_concurrency(struct worker *w, int concurrency);
/* Drops the backlog; those jobs are consumed again by the partitions' next owner. */
void worker_backlog_clear(struct worker *w);
/* A job message for this worker: claim it and run it. The ticket is done
 * once the claim is recorded (or the job turned out not to be ours). An
 * attempt the worker holds already (a second delivery) is skipped. */
void job_start(struct worker *w, const char *run, const char *stage, int attempt,
	       struct kafka_ticket *ticket);
/* Stop every running job and hand the attempts back; a job whose outcome
 * was known already (its command had ended) records it instead. Jobs
 * still being claimed are handed back as soon as their claim is recorded. */
void job_hand_back_all(struct worker *w);
/* Called by job.c when a job is completely done and its slot free. */
void worker_slot_freed(struct worker *w);
/* With no job running: WORKER_IDLE_TRIM_MS later, if the worker has no job
 * then either, it forgets the definitions it holds (defs, sources) and
 * gives the memory freed back to the system. */
#define WORKER_IDLE_TRIM_MS 1000
void worker_idle(struct worker *w);
/* The callback of w->idle_trim (arg: w). */
void worker_on_idle(evutil_socket_t fd, short what, void *arg);

#endif
