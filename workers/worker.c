/* worker: job slots, the backlog and pausing the consumer while it is full. */
#include "workers/worker.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/sdnotify.h"
#include "queue/defcache.h"

struct backlog_item {
	struct backlog_item *next;
	struct kafka_ticket *ticket;
	char run[128];
	char stage[128];
	int attempt;
};

static void notify_status(const struct worker *w)
{
	char status[64];
	snprintf(status, sizeof(status), "STATUS=%d job(s) running", w->running);
	sdnotify(status);
}

/* Jobs the worker holds fetched beyond its slots. Pausing drops what the
 * client had prefetched, and librdkafka's fetcher, asleep once every
 * partition is paused and no fetch is in flight, notices a resume only when
 * it next wakes: up to a second later. The backlog is deep enough to keep the
 * slots busy across that gap: about two seconds of jobs at the rate they were
 * started lately, at least BACKLOG_MIN and twice the slots, at most
 * BACKLOG_MAX (which bounds the memory held). BACKLOG_MIN is for the rate not
 * known yet, as when a burst arrives at an idle worker: a few hundred no-op
 * stages take about a second. The consumer resumes as soon as there is
 * room: a pause shorter than kafka.fetch_wait finds a fetch still in flight,
 * which wakes the fetcher, where a longer one leaves it asleep. The
 * partitions are this worker's alone, so holding their next jobs takes
 * nothing from other members. */
#define BACKLOG_MIN 256
#define BACKLOG_MAX 4096

/* Counts a job started, by second of the monotonic clock. */
static void count_start(struct worker *w)
{
	int64_t sec = clock_mono_ms() / 1000;
	if (sec != w->started_sec) {
		w->started_before = sec == w->started_sec + 1 ? w->started_now : 0;
		w->started_now = 0;
		w->started_sec = sec;
	}
	w->started_now++;
}

int worker_backlog_limit(const struct worker *w)
{
	int64_t sec = clock_mono_ms() / 1000;
	int rate = 0;
	if (sec == w->started_sec)
		rate = w->started_now > w->started_before ? w->started_now : w->started_before;
	else if (sec == w->started_sec + 1)
		rate = w->started_now;
	int limit = 2 * rate;
	if (limit < 2 * w->concurrency)
		limit = 2 * w->concurrency;
	if (limit < BACKLOG_MIN)
		limit = BACKLOG_MIN;
	return limit > BACKLOG_MAX ? BACKLOG_MAX : limit;
}

static void start(struct worker *w, const char *run, const char *stage, int attempt,
		  struct kafka_ticket *t)
{
	count_start(w);
	job_start(w, run, stage, attempt, t);
}

/* Starts waiting jobs while slots are free, then pauses fetching while the
 * backlog is full and resumes it as soon as there is room. */
static void fill_slots(struct worker *w)
{
	while (!w->draining && w->backlog && w->running < w->concurrency) {
		struct backlog_item *b = w->backlog;
		w->backlog = b->next;
		if (!w->backlog)
			w->backlog_tail = &w->backlog;
		w->backlog_len--;
		start(w, b->run, b->stage, b->attempt, b->ticket);
		free(b);
	}
	/* Draining, the consumer was paused for good (and may be gone). */
	if (!w->draining && w->backlog_len < worker_backlog_limit(w))
		kafka_consumer_resume(w->consumer);
	else if (!w->draining)
		kafka_consumer_pause(w->consumer);
	notify_status(w);
}

void worker_offer(struct worker *w, const char *run, const char *stage, int attempt,
		  struct kafka_ticket *t)
{
	if (w->running < w->concurrency && !w->backlog) {
		start(w, run, stage, attempt, t);
		notify_status(w);
		return;
	}
	struct backlog_item *b = calloc(1, sizeof(*b));
	if (!b) {
		/* Not done: its offset stays unstored and it is consumed again. */
		log_error("backlog allocation failed", LOG_S("run", run));
		return;
	}
	b->ticket = t;
	b->attempt = attempt;
	snprintf(b->run, sizeof(b->run), "%s", run);
	snprintf(b->stage, sizeof(b->stage), "%s", stage);
	*w->backlog_tail = b;
	w->backlog_tail = &b->next;
	/* Messages fetched before a pause took effect still arrive here. */
	if (++w->backlog_len >= worker_backlog_limit(w))
		kafka_consumer_pause(w->consumer);
}

void worker_slot_freed(struct worker *w)
{
	fill_slots(w);
	if (w->draining && w->running == 0)
		event_base_loopexit(w->base, NULL);
	else if (w->running == 0)
		worker_idle(w);
}

/* malloc keeps what jobs freed, in free blocks between those still in use
 * and in the arenas of librdkafka's threads, for the next allocations: a
 * worker with no job gives it back to the system (malloc_trim). It forgets
 * the definitions of the runs it worked on first, so that an idle worker's
 * memory does not depend on how large those pipelines were: the next stage
 * of such a run reads its definition again. Not at once, as stages that
 * follow each other closely would pay for it every time. */
void worker_idle(struct worker *w)
{
	struct timeval tv = {WORKER_IDLE_TRIM_MS / 1000, (WORKER_IDLE_TRIM_MS % 1000) * 1000};
	if (w->idle_trim)
		evtimer_add(w->idle_trim, &tv);
}

void worker_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	(void)fd;
	(void)what;
	if (w->running == 0) {
		defcache_clear(w->defs);
		defcache_clear(w->sources);
		malloc_trim(0);
	}
}

void worker_set_concurrency(struct worker *w, int concurrency)
{
	w->concurrency = concurrency;
	fill_slots(w);
}

void worker_backlog_clear(struct worker *w)
{
	while (w->backlog) {
		struct backlog_item *b = w->backlog;
		w->backlog = b->next;
		free(b);
	}
	w->backlog_tail = &w->backlog;
	w->backlog_len = 0;
}
