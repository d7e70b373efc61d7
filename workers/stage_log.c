/* stage_log: log lines to Redis, kept and written again in order while
 * Redis is away, and the children's output held while too many of them
 * are unanswered. */
#include "workers/stage_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/utf8.h"
#include "stages/process.h"
#include "workers/worker.h"

struct log_write {
	struct log_write *next;
	struct stage_log *log;
	unsigned long long seq; /* its place among the worker's lines */
	size_t cost;
	size_t key_len, len;
	enum logmask_stream s;
	char t[24];
	char data[]; /* the stream's key, a NUL, then the line */
};

/* The lines Redis did not take, in the order they were written: while any
 * waits, the lines written after it wait too; all are sent again at once
 * (in order on the one connection), after a back-off. */
struct stage_log {
	struct worker *w;
	unsigned long long seq;	       /* the last line's number */
	struct log_write *head, *last; /* waiting, by seq */
	struct log_write *last_back;   /* the last one put back */
	struct event *retry;
	int retry_ms;
	int behind; /* lines have waited since Redis last took one */
};

/* A line is done with: written, or given up. */
static void line_done(struct log_write *lw)
{
	struct worker *w = lw->log->w;

	w->log_in_flight -= lw->cost;
	free(lw);
	if (w->log_held && w->log_in_flight <= STAGE_LOG_RELEASE_BYTES) {
		w->log_held = 0;
		process_hold_output(0);
	}
}

static void append(struct stage_log *l, struct log_write *lw)
{
	lw->next = NULL;
	if (l->last)
		l->last->next = lw;
	else
		l->head = lw;
	l->last = lw;
}

/* A line Redis did not take goes back among the waiting ones in its place:
 * those in flight with it fail after it, in order, but lines written
 * meanwhile may wait already (a timeout fails its line before the
 * connection drops the rest). */
static void put_back(struct stage_log *l, struct log_write *lw)
{
	if (!l->behind) {
		l->behind = 1;
		log_warn("log lines not written yet: they wait for Redis", LOG_S("key", lw->data));
	}
	if (!l->last || lw->seq > l->last->seq) {
		append(l, lw);
	} else {
		struct log_write **p = &l->head;
		if (l->last_back && l->last_back->seq < lw->seq)
			p = &l->last_back->next;
		while (*p && (*p)->seq < lw->seq)
			p = &(*p)->next;
		lw->next = *p;
		*p = lw;
	}
	l->last_back = lw;
}

static void on_written(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct log_write *lw = arg;
	struct stage_log *l = lw->log;
	(void)r;

	if (!reply && redis_err_passing(err)) {
		put_back(l, lw);
		if (!evtimer_pending(l->retry, NULL)) {
			struct timeval tv = redis_retry_wait(&l->retry_ms);
			evtimer_add(l->retry, &tv);
		}
		return;
	}
	if (!reply)
		log_warn("log line not written", LOG_S("key", lw->data),
			 LOG_S("error", err ? err : "?"));
	else if (l->behind && !l->head) {
		l->behind = 0;
		l->retry_ms = REDIS_RETRY_FIRST_MS;
		log_info("log lines written: Redis took those that waited", LOG_S("key", lw->data));
	}
	line_done(lw);
}

static void send_line(struct log_write *lw)
{
	static const char *const names[] = {"stdout", "stderr", "system"};
	struct stage_log *l = lw->log;

	if (redis_command(l->w->redis, on_written, lw, "XADD %b * t %s s %s l %b", lw->data,
			  lw->key_len, lw->t, names[lw->s], lw->data + lw->key_len + 1,
			  lw->len) < 0)
		on_written(l->w->redis, NULL, "not connected", lw);
}

/* Every waiting line goes out again, in order; those Redis does not take
 * come back (put_back). */
static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct stage_log *l = arg;
	struct log_write *lw = l->head;
	(void)fd;
	(void)what;

	l->head = l->last = l->last_back = NULL;
	while (lw) {
		struct log_write *next = lw->next;
		send_line(lw);
		lw = next;
	}
}

static struct stage_log *stage_log_of(struct worker *w)
{
	struct stage_log *l = w->log;

	if (l)
		return l;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->retry = evtimer_new(w->base, on_retry, l);
	if (!l->retry) {
		free(l);
		return NULL;
	}
	l->w = w;
	l->retry_ms = REDIS_RETRY_FIRST_MS;
	w->log = l;
	return l;
}

void stage_log_write(struct worker *w, const char *run, const char *stage, enum logmask_stream s,
		     const char *line, size_t len)
{
	struct stage_log *l = stage_log_of(w);
	char key[512], *repaired = NULL;
	int key_len = snprintf(key, sizeof(key), "%slog:%s:%s", w->settings.key_prefix, run, stage);

	if (!l || key_len < 0 || (size_t)key_len >= sizeof(key) ||
	    utf8_repair(line, len, &repaired, &len) < 0)
		return;
	struct log_write *lw = malloc(sizeof(*lw) + (size_t)key_len + 1 + len);
	if (!lw) {
		free(repaired);
		return;
	}
	lw->log = l;
	lw->next = NULL;
	lw->seq = ++l->seq;
	lw->s = s;
	lw->key_len = (size_t)key_len;
	lw->len = len;
	lw->cost = len + STAGE_LOG_WRITE_COST;
	snprintf(lw->t, sizeof(lw->t), "%lld", (long long)clock_now_ms());
	memcpy(lw->data, key, (size_t)key_len + 1);
	memcpy(lw->data + key_len + 1, repaired ? repaired : line, len);
	free(repaired);
	w->log_in_flight += lw->cost;
	if (!w->log_held && w->log_in_flight > STAGE_LOG_HOLD_BYTES) {
		w->log_held = 1;
		process_hold_output(1);
	}
	/* Never trimmed: log_cap bounds each attempt's lines, and a trim would
	 * drop the first lines of a log within its cap, or an earlier
	 * attempt's. */
	if (l->head)
		append(l, lw);
	else
		send_line(lw);
}

int stage_log_waiting(const struct worker *w, const char *run, const char *stage)
{
	char key[512];

	if (!w->log || !w->log->head)
		return 0;
	snprintf(key, sizeof(key), "%slog:%s:%s", w->settings.key_prefix, run, stage);
	for (const struct log_write *lw = w->log->head; lw; lw = lw->next)
		if (strcmp(lw->data, key) == 0)
			return 1;
	return 0;
}

void stage_log_free(struct worker *w)
{
	struct stage_log *l = w->log;

	if (!l)
		return;
	size_t n = 0;
	/* The writes in flight were failed by redis_free. */
	while (l->head) {
		struct log_write *lw = l->head;
		l->head = lw->next;
		line_done(lw);
		n++;
	}
	if (n)
		log_warn("log lines not written: Redis did not take them before the worker stopped",
			 LOG_I("lines", n));
	event_free(l->retry);
	free(l);
	w->log = NULL;
}
