/* rollout_saves: a deployment attempt's saves, in order, each until Redis
 * answers it (rollout_saves.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "workers/rollout_saves.h"
#include "workers/worker.h"

struct save {
	struct save *next;
	long long seq;
	char *state, *type, *data, *command;
};

/* The save on its way to Redis; detached (s NULL) when its saves are freed
 * first. */
struct sending {
	struct rollout_saves *s;
};

struct rollout_saves {
	struct worker *w;
	char run[128], stage[128], attempt[16];
	char saver[24]; /* this one's number in the process */
	struct save *head, **tail;
	long long seq;		 /* the last save's number */
	struct sending *sending; /* the head's send, while in flight */
	struct event *retry;	 /* sends the head again */
	int retry_ms;
	void (*then)(void *arg); /* once the queue is empty */
	void *then_arg;
	int then_offline; /* then waits through failures too */
};

static void save_free(struct save *v)
{
	free(v->state);
	free(v->type);
	free(v->data);
	free(v->command);
	free(v);
}

static void pop(struct rollout_saves *s)
{
	struct save *v = s->head;

	s->head = v->next;
	if (!s->head)
		s->tail = &s->head;
	save_free(v);
}

static void send_head(struct rollout_saves *s);

/* Nothing waits any more: the continuation runs, once. */
static void idle(struct rollout_saves *s)
{
	void (*then)(void *) = s->then;

	s->then = NULL;
	if (then)
		then(s->then_arg);
}

/* A save Redis did not answer (or that did not go out): sent again later,
 * unless what waits gives up then. */
static void not_saved(struct rollout_saves *s, const char *why)
{
	log_warn("rollout state not saved yet", LOG_S("run", s->run), LOG_S("stage", s->stage),
		 LOG_S("error", why), LOG_I("retry_ms", s->retry_ms));
	if (s->then && !s->then_offline) {
		while (s->head)
			pop(s);
		idle(s);
		return;
	}
	struct timeval tv = redis_retry_wait(&s->retry_ms);
	evtimer_add(s->retry, &tv);
}

static void on_saved(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct sending *sending = arg;
	struct rollout_saves *s = sending->s;
	(void)r;

	free(sending);
	if (!s)
		return;
	s->sending = NULL;
	if (!reply || reply->type != REDIS_REPLY_STRING) {
		not_saved(s, err ? err : "unexpected reply");
		return;
	}
	s->retry_ms = REDIS_RETRY_FIRST_MS;
	if (strcmp(reply->str, "saved") == 0) {
		pop(s);
		outbox_kick(s->w->outbox);
	} else {
		/* Not this worker's attempt any more: the rest would be fenced
		 * off too. */
		while (s->head)
			pop(s);
	}
	if (s->head)
		send_head(s);
	else
		idle(s);
}

static void send_head(struct rollout_saves *s)
{
	struct worker *w = s->w;
	struct save *v = s->head;
	char seq[24];

	snprintf(seq, sizeof(seq), "%lld", v->seq);
	const char *argv[] = {w->settings.key_prefix,
			      s->run,
			      s->stage,
			      s->attempt,
			      w->token,
			      v->state,
			      v->type ? v->type : "",
			      v->data ? v->data : "",
			      v->command,
			      s->saver,
			      seq};
	s->sending = calloc(1, sizeof(*s->sending));
	if (!s->sending || redis_script_run(w->redis, w->scripts.rollout_save, on_saved, s->sending,
					    0, 11, argv, NULL) < 0) {
		free(s->sending);
		s->sending = NULL;
		not_saved(s, "not sent");
		return;
	}
	s->sending->s = s;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct rollout_saves *s = arg;
	(void)fd;
	(void)what;

	if (s->head && !s->sending)
		send_head(s);
}

struct rollout_saves *rollout_saves_new(struct worker *w, const char *run, const char *stage,
					int attempt)
{
	static unsigned long long made;
	struct rollout_saves *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->retry = evtimer_new(w->base, on_retry, s);
	if (!s->retry) {
		free(s);
		return NULL;
	}
	s->w = w;
	snprintf(s->run, sizeof(s->run), "%s", run);
	snprintf(s->stage, sizeof(s->stage), "%s", stage);
	snprintf(s->attempt, sizeof(s->attempt), "%d", attempt);
	snprintf(s->saver, sizeof(s->saver), "%llu", ++made);
	s->tail = &s->head;
	s->retry_ms = REDIS_RETRY_FIRST_MS;
	return s;
}

static char *copy(const char *text)
{
	return text ? strdup(text) : NULL;
}

int rollout_saves_add(struct rollout_saves *s, const char *state, const char *type,
		      const char *data, const char *command)
{
	struct save *v = calloc(1, sizeof(*v));

	if (!v)
		return -1;
	v->state = copy(state);
	v->type = copy(type);
	v->data = copy(data);
	v->command = copy(command ? command : "");
	if (!v->state || (type && !v->type) || (data && !v->data) || !v->command) {
		save_free(v);
		return -1;
	}
	v->seq = ++s->seq;
	*s->tail = v;
	s->tail = &v->next;
	/* Behind one on its way or waiting to go again, it follows it. */
	if (s->head == v && !evtimer_pending(s->retry, NULL))
		send_head(s);
	return 0;
}

int rollout_saves_wait(struct rollout_saves *s, int even_offline, void (*then)(void *arg),
		       void *arg)
{
	if (!s->head)
		return 0;
	s->then = then;
	s->then_arg = arg;
	s->then_offline = even_offline;
	if (!s->sending) {
		/* Waiting to be sent again: now, from the loop. */
		struct timeval now = {0, 0};
		evtimer_add(s->retry, &now);
	}
	return 1;
}

void rollout_saves_free(struct rollout_saves *s)
{
	if (!s)
		return;
	if (s->sending)
		s->sending->s = NULL;
	while (s->head)
		pop(s);
	event_free(s->retry);
	free(s);
}
