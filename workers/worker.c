/* worker: job slots, the backlog and pausing the consumer while it is full. */
#include "workers/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "lib/log.h"

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
	sd_notify(0, status);
}

/* Jobs the worker holds fetched beyond its slots. Pausing drops what the
 * client had prefetched, and a resumed partition may wait up to a second for
 * its next fetch (librdkafka's fetcher sleeps while every partition is
 * paused), so the backlog is deep enough to keep the slots busy across that
 * gap. The partitions are this worker's alone, so holding their next jobs
 * takes nothing from other members. */
#define BACKLOG_MIN 16

static int backlog_limit(const struct worker *w)
{
	return w->concurrency * 2 > BACKLOG_MIN ? w->concurrency * 2 : BACKLOG_MIN;
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
		job_start(w, b->run, b->stage, b->attempt, b->ticket);
		free(b);
	}
	/* Draining, the consumer was paused for good (and may be gone). */
	if (!w->draining && w->backlog_len < backlog_limit(w))
		kafka_consumer_resume(w->consumer);
	else if (!w->draining)
		kafka_consumer_pause(w->consumer);
	notify_status(w);
}

void worker_offer(struct worker *w, const char *run, const char *stage, int attempt,
		  struct kafka_ticket *t)
{
	if (w->running < w->concurrency && !w->backlog) {
		job_start(w, run, stage, attempt, t);
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
	if (++w->backlog_len >= backlog_limit(w))
		kafka_consumer_pause(w->consumer);
}

void worker_slot_freed(struct worker *w)
{
	fill_slots(w);
	if (w->draining && w->running == 0)
		event_base_loopexit(w->base, NULL);
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
