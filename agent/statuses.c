/* statuses: sluice.events → commit statuses, one queue per run. */
#include "agent/statuses.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/github_api.h"
#include "config/file.h"
#include "config/retry.h"
#include "lib/clock.h"
#include "lib/curlev.h"
#include "lib/log.h"
#include "queue/envelope.h"
#include "queue/kafka.h"

/* A run's statuses beyond this drop a waiting one that a later one of its
 * context replaces: a run that produced so many while GitHub was away needs
 * only the latest of each. */
#define MAX_PER_RUN 64
/* Consuming pauses while this many statuses wait, and resumes below the
 * second bound, so an outage does not grow memory without end. */
#define MAX_QUEUED    4096
#define RESUME_QUEUED 1024
/* A run's queue outlives its last status by this long, remembering the
 * newest event it saw for each context. Events are published in order, but
 * one that Kafka refused once is published again after those that followed
 * it, and a copy may come again; neither must turn a posted "success" back
 * into "pending". */
#define SEEN_KEEP_MS 30000
/* GitHub asks clients not to send many requests at once. */
#define MAX_IN_FLIGHT	   4
#define REQUEST_TIMEOUT_MS 30000
#define MAX_TOKEN_BYTES	   4096
#define EVENT_PREFIX	   "dev.sluice."
#define RUN_MAX		   128
/* A secondary rate limit without Retry-After: GitHub asks to wait this
 * long at least before any request. */
#define SECONDARY_LIMIT_WAIT_MS 60000

struct status {
	struct status *next;
	struct kafka_ticket *ticket;
	char *path;
	char *body;
	char context[256];
	const char *state;
	int tries;
	int64_t queued_ms; /* monotonic; the give-up bound counts from here */
};

/* The newest event seen for one context of a run. */
struct seen {
	struct seen *next;
	uint64_t seq;
	char context[];
};

struct run_queue {
	struct run_queue *next, **prevp;
	struct statuses *s;
	char run[RUN_MAX];
	struct status *head, *tail;
	int n;
	struct github_api_call *call; /* posting head */
	struct event *timer;	      /* a back-off before head is tried again */
	struct event *keep;	      /* frees the queue SEEN_KEEP_MS after it emptied */
	struct seen *seen;
	int n_seen;
	int backoff_ms;
};

struct statuses {
	struct agent *agent;
	struct kafka_consumer *consumer;
	struct curlev *multi;
	char *token;
	struct run_queue *runs;
	int queued;
	int in_flight;
	int paused;
	int64_t limited_until_ms; /* monotonic: the rate limit resets then */
	struct event *wake;	  /* fires at limited_until_ms */
};

static void pump(struct statuses *s);

/* --- what an event posts ------------------------------------------------- */

static const char *text(const json_t *data, const char *key)
{
	return json_string_value(json_object_get(data, key));
}

static long long integer(const json_t *data, const char *key, long long dflt)
{
	const json_t *v = json_object_get(data, key);
	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* "350ms", "12s", "4m05s", "2h10m". */
static void format_duration(long long ms, char *out, size_t len)
{
	long long s = (ms + 500) / 1000;

	if (ms < 1000)
		snprintf(out, len, "%lldms", ms < 0 ? 0 : ms);
	else if (s < 60)
		snprintf(out, len, "%llds", s);
	else if (s < 3600)
		snprintf(out, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
}

/* snprintf into the description, cut at GitHub's limit without splitting
 * a UTF-8 sequence. */
__attribute__((format(printf, 2, 3))) static void describe(struct statuses_post *out,
							   const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t n = strlen(buf);
	if (n > STATUSES_DESCRIPTION_MAX) {
		n = STATUSES_DESCRIPTION_MAX;
		while (n > 0 && ((unsigned char)buf[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out->description, buf, n);
	out->description[n] = '\0';
}

/* Why an attempt failed, in a few words. */
static void failure_reason(const json_t *data, const char *status, char *out, size_t len)
{
	char took[32];
	long long code = integer(data, "exit_code", -1);
	const char *signal = text(data, "signal");
	const char *error = text(data, "error");

	format_duration(integer(data, "duration_ms", 0), took, sizeof(took));
	if (strcmp(status, "timed_out") == 0)
		snprintf(out, len, "timed out after %s", took);
	else if (strcmp(status, "lost") == 0)
		snprintf(out, len, "lost its worker");
	else if (signal)
		snprintf(out, len, "killed by %s", signal);
	else if (code >= 0)
		snprintf(out, len, "exit %lld", code);
	else if (error)
		snprintf(out, len, "%s", error);
	else
		snprintf(out, len, "%s", status);
}

static int describe_stage(const char *what, const json_t *data, struct statuses_post *out)
{
	const char *status = text(data, "status");
	long long attempt = integer(data, "attempt", 1);
	char reason[256], took[32];

	if (strcmp(what, "queued") == 0 || strcmp(what, "started") == 0) {
		out->state = "pending";
		const char *word = what[0] == 'q' ? "queued" : "running";
		if (attempt > 1)
			describe(out, "%s (attempt %lld)", word, attempt);
		else
			describe(out, "%s", word);
		return 1;
	}
	if (strcmp(what, "cancelled") == 0) {
		out->state = "error";
		describe(out, "cancelled");
		return 1;
	}
	if (strcmp(what, "finished") != 0 || !status)
		return 0;
	if (strcmp(status, "succeeded") == 0) {
		format_duration(integer(data, "duration_ms", 0), took, sizeof(took));
		out->state = "success";
		describe(out, "succeeded in %s", took);
		return 1;
	}
	if (strcmp(status, "cancelled") == 0) {
		out->state = "error";
		describe(out, "cancelled");
		return 1;
	}
	failure_reason(data, status, reason, sizeof(reason));
	/* The event carries the stage's retry policy: a failure the router
	 * will retry is not the stage's outcome yet. */
	if (retry_decide(data, status, (int)integer(data, "exit_code", -1), (int)attempt) ==
	    RETRY_AGAIN) {
		out->state = "pending";
		describe(out, "%s; retrying", reason);
		return 1;
	}
	out->state = "failure";
	describe(out, "%s", reason);
	return 1;
}

static int describe_promotion(const char *what, const json_t *data, struct statuses_post *out)
{
	const char *status = text(data, "status");
	const char *gate = text(data, "gate");

	out->state = "pending";
	if (strcmp(what, "offered") == 0) {
		describe(out, "offered");
	} else if (strcmp(what, "waiting") == 0) {
		if (gate && strcmp(gate, "approval") == 0)
			describe(out, "waiting for approval");
		else if (gate && strcmp(gate, "window") == 0)
			describe(out, "waiting for the deploy window to open");
		else if (gate && strcmp(gate, "lock") == 0)
			describe(out, "waiting for the deployment before it");
		else
			describe(out, "waiting");
	} else if (strcmp(what, "started") == 0) {
		describe(out, "deploying");
	} else if (strcmp(what, "finished") == 0 && status) {
		static const struct {
			const char *status, *state, *description;
		} outcomes[] = {
		    {"deployed", "success", "deployed"},
		    {"failed", "failure", "deployment failed"},
		    {"rejected", "failure", "rejected"},
		    {"expired", "failure", "approval expired"},
		    {"superseded", "error", "superseded by a newer run"},
		    {"cancelled", "error", "cancelled"},
		    {"aborted", "failure", "rollout aborted: traffic back on the stable release"},
		    {"rolled_back", "error", "rolled back to the previous release"},
		    {"rollback_failed", "failure", "rollback failed"},
		    {"rollback_cancelled", "error", "rollback cancelled"},
		};
		for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++) {
			if (strcmp(status, outcomes[i].status) == 0) {
				out->state = outcomes[i].state;
				describe(out, "%s", outcomes[i].description);
				return 1;
			}
		}
		out->state = "failure";
		describe(out, "%s", status);
	} else {
		return 0;
	}
	return 1;
}

int statuses_describe(const char *type, const json_t *data, struct statuses_post *out)
{
	const char *pipeline = text(data, "pipeline");
	const char *stage = text(data, "stage");
	const char *env = text(data, "env");
	int n;

	memset(out, 0, sizeof(*out));
	if (!pipeline)
		return 0;
	if (strncmp(type, "stage.", 6) == 0) {
		/* deploy@<env> is reported by its promotion's events. */
		if (!stage || strncmp(stage, "deploy@", 7) == 0)
			return 0;
		n = snprintf(out->context, sizeof(out->context), "sluice/%s/%s", pipeline, stage);
		return n < (int)sizeof(out->context) && describe_stage(type + 6, data, out);
	}
	if (strncmp(type, "promotion.", 10) == 0) {
		if (!env)
			return 0;
		n = snprintf(out->context, sizeof(out->context), "sluice/%s/deploy/%s", pipeline,
			     env);
		return n < (int)sizeof(out->context) && describe_promotion(type + 10, data, out);
	}
	return 0;
}

/* --- queues ---------------------------------------------------------------- */

static void status_free(struct status *st)
{
	free(st->path);
	free(st->body);
	free(st);
}

static void queue_free(struct run_queue *q)
{
	*q->prevp = q->next;
	if (q->next)
		q->next->prevp = q->prevp;
	github_api_cancel(q->call);
	while (q->head) {
		struct status *st = q->head;
		q->head = st->next;
		status_free(st);
	}
	if (q->timer)
		event_free(q->timer);
	if (q->keep)
		event_free(q->keep);
	while (q->seen) {
		struct seen *e = q->seen;
		q->seen = e->next;
		free(e);
	}
	free(q);
}

static void on_keep_over(evutil_socket_t fd, short what, void *arg)
{
	struct run_queue *q = arg;
	(void)fd;
	(void)what;
	if (!q->head)
		queue_free(q);
}

/* An emptied queue stays SEEN_KEEP_MS for what it has seen. */
static void queue_emptied(struct run_queue *q)
{
	struct timeval tv = {SEEN_KEEP_MS / 1000, (SEEN_KEEP_MS % 1000) * 1000};
	if (evtimer_add(q->keep, &tv) < 0)
		queue_free(q);
}

/* The head was posted or given up: its event is done. */
static void queue_pop(struct run_queue *q)
{
	struct statuses *s = q->s;
	struct status *st = q->head;

	q->head = st->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	s->queued--;
	kafka_consumer_done(s->consumer, st->ticket);
	status_free(st);
	if (!q->head)
		queue_emptied(q);
	if (s->paused && s->queued <= RESUME_QUEUED) {
		s->paused = 0;
		kafka_consumer_resume(s->consumer);
	}
}

static void on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
	struct run_queue *q = arg;
	(void)fd;
	(void)what;
	pump(q->s);
}

static struct run_queue *queue_get(struct statuses *s, const char *run)
{
	struct run_queue *q;

	for (q = s->runs; q; q = q->next)
		if (strcmp(q->run, run) == 0)
			return q;
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->timer = evtimer_new(s->agent->base, on_queue_timer, q);
	q->keep = evtimer_new(s->agent->base, on_keep_over, q);
	if (!q->timer || !q->keep) {
		if (q->timer)
			event_free(q->timer);
		if (q->keep)
			event_free(q->keep);
		free(q);
		return NULL;
	}
	q->s = s;
	snprintf(q->run, sizeof(q->run), "%s", run);
	q->backoff_ms = s->agent->settings.github_backoff_ms;
	q->next = s->runs;
	q->prevp = &s->runs;
	if (s->runs)
		s->runs->prevp = &q->next;
	s->runs = q;
	return q;
}

static void give_up(struct run_queue *q, const char *why)
{
	struct status *st = q->head;

	log_warn("commit status dropped", LOG_S("run", q->run), LOG_S("context", st->context),
		 LOG_S("state", st->state), LOG_I("tries", st->tries), LOG_S("error", why));
	queue_pop(q);
}

/* Tries the head again after wait_ms, unless that is past the give-up bound. */
static void retry_later(struct run_queue *q, long long wait_ms, const char *why)
{
	struct statuses *s = q->s;
	struct status *st = q->head;

	if (clock_mono_ms() + wait_ms - st->queued_ms > s->agent->settings.github_give_up_ms) {
		give_up(q, why);
		return;
	}
	log_info("commit status not posted; will retry", LOG_S("run", q->run),
		 LOG_S("context", st->context), LOG_S("error", why), LOG_I("retry_ms", wait_ms));
	struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
	evtimer_add(q->timer, &tv);
}

/* A wait GitHub asked for (its rate limit's reset, Retry-After), never
 * shorter than github.backoff: a reset already past by this clock, or
 * "Retry-After: 0", would otherwise post again at once, and again. */
static long long github_wait(const struct statuses *s, long long wait_ms)
{
	return wait_ms < s->agent->settings.github_backoff_ms ? s->agent->settings.github_backoff_ms
							      : wait_ms;
}

static long long backoff_next(struct run_queue *q)
{
	long long wait = q->backoff_ms;
	long long doubled = 2LL * q->backoff_ms;
	int max = q->s->agent->settings.github_backoff_max_ms;

	q->backoff_ms = (int)(doubled > max ? max : doubled);
	return wait;
}

/* A 403 that is a secondary rate limit, not a refusal: GitHub says so in
 * its message ("abuse detection" on older GitHub Enterprise servers). */
static int secondary_limit(const char *body)
{
	return strcasestr(body, "secondary rate limit") || strcasestr(body, "abuse detection");
}

static void on_reply(const struct github_api_reply *r, void *arg)
{
	struct run_queue *q = arg;
	struct statuses *s = q->s;
	struct status *st = q->head;
	char why[400];

	q->call = NULL;
	s->in_flight--;
	if (r->status >= 200 && r->status < 300) {
		log_debug("commit status posted", LOG_S("run", q->run),
			  LOG_S("context", st->context), LOG_S("state", st->state),
			  LOG_I("tries", st->tries));
		q->backoff_ms = s->agent->settings.github_backoff_ms;
		queue_pop(q);
	} else if (r->status == 0) {
		snprintf(why, sizeof(why), "%s", r->error);
		retry_later(q, backoff_next(q), why);
	} else {
		snprintf(why, sizeof(why), "HTTP %ld: %.256s", r->status, r->body);
		int limited = r->status == 403 || r->status == 429;
		if (limited && r->ratelimit_remaining == 0 && r->ratelimit_reset_s >= 0) {
			/* The limit belongs to the token: every run waits. */
			long long wait =
			    github_wait(s, r->ratelimit_reset_s * 1000 - clock_now_ms());
			s->limited_until_ms = clock_mono_ms() + wait;
			log_warn("GitHub rate limit reached; statuses wait for its reset",
				 LOG_I("reset", r->ratelimit_reset_s), LOG_I("wait_ms", wait));
			retry_later(q, wait, why);
		} else if ((limited || r->status >= 500) && r->retry_after_ms >= 0) {
			long long wait = github_wait(s, r->retry_after_ms);
			if (limited)
				s->limited_until_ms = clock_mono_ms() + wait;
			retry_later(q, wait, why);
		} else if (r->status == 429 || (limited && secondary_limit(r->body))) {
			/* A minute at least, as GitHub asks; the back-off once it
			 * has grown longer. Every run waits, as for the reset. */
			long long wait = backoff_next(q);
			if (wait < SECONDARY_LIMIT_WAIT_MS)
				wait = SECONDARY_LIMIT_WAIT_MS;
			s->limited_until_ms = clock_mono_ms() + wait;
			log_warn("GitHub secondary rate limit reached; statuses wait",
				 LOG_I("wait_ms", wait));
			retry_later(q, wait, why);
		} else if (r->status >= 500) {
			retry_later(q, backoff_next(q), why);
		} else {
			/* 401, 404, 422...: trying again would get the same answer. */
			give_up(q, why);
		}
	}
	pump(s);
}

/* Posts the head, waiting for GitHub no longer than the give-up bound
 * leaves it; statuses at the head already past it are given up unposted
 * (and q with them, when they were its last). */
static void post(struct run_queue *q)
{
	struct statuses *s = q->s;
	struct status *st;
	long long left;
	int last;

	for (;;) {
		st = q->head;
		last = !st->next;
		if (kafka_ticket_revoked(st->ticket)) {
			/* Its partition went to another agent, which posts it
			 * from the last commit with what followed it there:
			 * posted here too, late, it could undo a newer one. */
			log_info("commit status left to the partition's new owner",
				 LOG_S("run", q->run), LOG_S("context", st->context),
				 LOG_S("state", st->state));
			queue_pop(q);
		} else {
			left = s->agent->settings.github_give_up_ms -
			       (clock_mono_ms() - st->queued_ms);
			if (left > 0)
				break;
			give_up(q, "not posted within github.give_up_after");
		}
		if (last)
			return; /* q, emptied, may be freed */
	}
	st->tries++;
	q->call = github_api_post(
	    s->multi, s->agent->settings.github_api_url, st->path, s->token, st->body,
	    left < REQUEST_TIMEOUT_MS ? (int)left : REQUEST_TIMEOUT_MS, on_reply, q);
	if (!q->call) {
		retry_later(q, backoff_next(q), "out of memory");
		return;
	}
	s->in_flight++;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

/* Starts posting the head of every run that waits for nothing, as far as
 * the bound on requests in flight allows. */
static void pump(struct statuses *s)
{
	int64_t now = clock_mono_ms();

	if (now < s->limited_until_ms) {
		long long wait = s->limited_until_ms - now;
		struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
		evtimer_add(s->wake, &tv);
		return;
	}
	struct run_queue *next;
	for (struct run_queue *q = s->runs; q && s->in_flight < MAX_IN_FLIGHT; q = next) {
		next = q->next; /* post may give the head up and free an emptied queue */
		if (q->head && !q->call && !evtimer_pending(q->timer, NULL))
			post(q);
	}
}

/* --- events -------------------------------------------------------------- */

/* GitHub's owner and repository names: letters, digits, '-', '_', '.'. */
static int name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 100)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return 0;
	return 1;
}

static int sha_ok(const char *sha)
{
	size_t n = strlen(sha);
	if (n != 40 && n != 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)sha[i]))
			return 0;
	return 1;
}

/* A status for the event, or NULL (with *why) when it posts none. */
static struct status *status_new(struct statuses *s, const char *type, const json_t *data,
				 const char **why)
{
	const char *repo = text(data, "repository"), *sha = text(data, "sha");
	const char *run = text(data, "run");
	struct statuses_post p;
	struct status *st = NULL;

	*why = NULL;
	if (!statuses_describe(type, data, &p))
		return NULL;
	const char *slash = repo ? strchr(repo, '/') : NULL;
	if (!run || !slash || !name_ok(repo, (size_t)(slash - repo)) ||
	    !name_ok(slash + 1, strlen(slash + 1)) || !sha || !sha_ok(sha)) {
		*why = "no repository, sha or run a status can name";
		return NULL;
	}
	const char *base = s->agent->settings.public_url;
	size_t blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	char target[1024];
	snprintf(target, sizeof(target), "%.*s/runs/%s", (int)blen, base, run);
	json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "state", p.state, "target_url", target,
				 "description", p.description, "context", p.context);
	st = calloc(1, sizeof(*st));
	size_t plen = strlen("/repos//statuses/") + strlen(repo) + strlen(sha) + 1;
	if (!body || !st || !(st->path = malloc(plen)) ||
	    !(st->body = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS))) {
		json_decref(body);
		if (st)
			status_free(st);
		*why = "out of memory";
		return NULL;
	}
	json_decref(body);
	snprintf(st->path, plen, "/repos/%s/statuses/%s", repo, sha);
	snprintf(st->context, sizeof(st->context), "%s", p.context);
	st->state = p.state;
	st->queued_ms = clock_mono_ms();
	return st;
}

/* The sequence number of an event a script recorded (lib/events.lua writes
 * ids "<ms>-<seq>" in hex, seq growing with every script), 0 for an id of
 * any other form. */
static uint64_t event_seq(const char *id)
{
	const char *dash = strchr(id, '-');
	char *end;
	if (!dash || dash == id || strspn(id, "0123456789abcdef") != (size_t)(dash - id) ||
	    !dash[1] || strspn(dash + 1, "0123456789abcdef") != strlen(dash + 1) ||
	    strlen(dash + 1) > 16)
		return 0;
	errno = 0;
	unsigned long long v = strtoull(dash + 1, &end, 16);
	return errno || *end ? 0 : v;
}

/* 1 when an event newer than seq was seen for context (its status is then
 * out of date); otherwise remembers seq as the newest, and 0. */
static int seen_newer(struct run_queue *q, const char *context, uint64_t seq)
{
	struct seen *e;
	if (!seq)
		return 0;
	for (e = q->seen; e; e = e->next)
		if (strcmp(e->context, context) == 0)
			break;
	if (e) {
		if (e->seq > seq)
			return 1;
		e->seq = seq;
		return 0;
	}
	/* Past MAX_PER_RUN contexts a run is not tracked any further. */
	if (q->n_seen >= MAX_PER_RUN || !(e = malloc(sizeof(*e) + strlen(context) + 1)))
		return 0;
	e->seq = seq;
	strcpy(e->context, context);
	e->next = q->seen;
	q->seen = e;
	q->n_seen++;
	return 0;
}
/* Which waiting status of a full queue goes to make room for st (its
 * predecessor in *prev, NULL for the head): not the one being posted, and
 * the oldest that a later one of its context, st included, replaces; only
 * when every context waits once, the oldest. */
static struct status *pick_dropped(struct run_queue *q, const struct status *st,
				   struct status **prev)
{
	struct status *first_prev = q->call ? q->head : NULL;
	struct status *first = first_prev ? first_prev->next : q->head;

	for (struct status *p = first_prev, *x = first; x; p = x, x = x->next) {
		int replaced = strcmp(x->context, st->context) == 0;
		for (const struct status *y = x->next; y && !replaced; y = y->next)
			replaced = strcmp(x->context, y->context) == 0;
		if (replaced) {
			*prev = p;
			return x;
		}
	}
	*prev = first_prev;
	return first;
}

static void enqueue(struct statuses *s, const char *run, struct status *st, uint64_t seq)
{
	struct run_queue *q = queue_get(s, run);

	if (!q) {
		log_warn("commit status dropped", LOG_S("run", run), LOG_S("context", st->context),
			 LOG_S("error", "out of memory"));
		kafka_consumer_done(s->consumer, st->ticket);
		status_free(st);
		return;
	}
	if (seen_newer(q, st->context, seq)) {
		log_info("commit status skipped", LOG_S("run", run), LOG_S("context", st->context),
			 LOG_S("state", st->state),
			 LOG_S("reason", "a newer event for this context came first"));
		/* The queue saw the newer event, so it holds a status or is
		 * already waiting out SEEN_KEEP_MS. */
		kafka_consumer_done(s->consumer, st->ticket);
		status_free(st);
		return;
	}
	if (q->n >= MAX_PER_RUN) {
		struct status *prev = NULL, *old = pick_dropped(q, st, &prev);
		log_warn("commit status dropped", LOG_S("run", run), LOG_S("context", old->context),
			 LOG_S("state", old->state),
			 LOG_S("error", "too many waiting for this run"));
		if (prev)
			prev->next = old->next;
		else
			q->head = old->next;
		if (q->tail == old)
			q->tail = prev;
		q->n--;
		s->queued--;
		kafka_consumer_done(s->consumer, old->ticket);
		status_free(old);
	}
	if (q->tail)
		q->tail->next = st;
	else
		q->head = st;
	q->tail = st;
	q->n++;
	s->queued++;
	if (!s->paused && s->queued >= MAX_QUEUED) {
		s->paused = 1;
		kafka_consumer_pause(s->consumer);
		log_warn("commit statuses backed up; consuming paused",
			 LOG_I("waiting", s->queued));
	}
	pump(s);
}

static void on_event(const struct kafka_message *m, struct kafka_ticket *t, void *arg)
{
	struct statuses *s = arg;
	struct envelope env;
	char err[256];
	const char *why;

	if (envelope_decode(m->value, m->len, &env, err, sizeof(err)) < 0) {
		log_warn("event skipped", LOG_S("topic", m->topic), LOG_I("offset", m->offset),
			 LOG_S("error", err));
		kafka_consumer_done(s->consumer, t);
		return;
	}
	const char *run = text(env.data, "run");
	struct status *st = NULL;
	if (strncmp(env.type, EVENT_PREFIX, strlen(EVENT_PREFIX)) == 0 && run &&
	    strlen(run) < RUN_MAX)
		st = status_new(s, env.type + strlen(EVENT_PREFIX), env.data, &why);
	else
		why = NULL;
	if (!st) {
		if (why)
			log_warn("event posts no commit status", LOG_S("id", env.id),
				 LOG_S("type", env.type), LOG_S("error", why));
		kafka_consumer_done(s->consumer, t);
	} else {
		st->ticket = t;
		enqueue(s, run, st, event_seq(env.id));
	}
	envelope_clear(&env);
}

/* --- lifecycle ----------------------------------------------------------- */

char *statuses_read_token(const char *path, char *why, size_t whylen)
{
	char *token = config_file_read_token(path, MAX_TOKEN_BYTES);

	if (!token)
		snprintf(why, whylen, "%s", config_file_token_error(errno));
	return token;
}

void statuses_token_free(char *token)
{
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
}

static void token_set(struct statuses *s, char *token)
{
	statuses_token_free(s->token);
	s->token = token;
}

/* The consumer group of the agents posting statuses. */
static void group_name(const struct agent *a, char *out, size_t len)
{
	snprintf(out, len, "%sstatuses", a->settings.topic_prefix);
}

struct statuses *statuses_new(struct agent *a, char *err, size_t errlen)
{
	char topic[256], group[256], why[512];
	struct statuses *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "commit statuses: out of memory");
		return NULL;
	}
	s->agent = a;
	s->multi = curlev_new(a->base);
	s->wake = evtimer_new(a->base, on_wake, s);
	if (!s->multi || !s->wake) {
		snprintf(err, errlen, "commit statuses: out of memory");
		goto fail;
	}
	snprintf(topic, sizeof(topic), "%sevents", a->settings.topic_prefix);
	group_name(a, group, sizeof(group));
	const char *topics[] = {topic};
	struct kafka_consumer_opts opts = {.session_timeout_ms = a->settings.session_timeout_ms,
					   .fetch_wait_ms = a->settings.fetch_wait_ms};
	s->consumer = kafka_consumer_new_opts(a->base, a->settings.brokers, group, topics, 1,
					      on_event, s, &opts, why, sizeof(why));
	if (!s->consumer) {
		snprintf(err, errlen, "commit statuses: cannot consume %s: %s", topic, why);
		goto fail;
	}
	return s;
fail:
	curlev_free(s->multi);
	if (s->wake)
		event_free(s->wake);
	free(s);
	return NULL;
}

/* s posts with token (owned from now on) as a->statuses. */
static void install(struct agent *a, struct statuses *s, char *token)
{
	char group[256];

	group_name(a, group, sizeof(group));
	token_set(s, token);
	a->statuses = s;
	log_info("posting commit statuses", LOG_S("api", a->settings.github_api_url),
		 LOG_S("group", group));
}

int statuses_start(struct agent *a)
{
	struct statuses *s;
	char why[512];

	if (!a->settings.github_token_file)
		return 0;
	char *token = statuses_read_token(a->settings.github_token_file, why, sizeof(why));
	if (!token) {
		log_error("cannot read github.token_file",
			  LOG_S("file", a->settings.github_token_file), LOG_S("error", why));
		return -1;
	}
	s = statuses_new(a, why, sizeof(why));
	if (!s) {
		log_error("cannot post commit statuses", LOG_S("error", why));
		statuses_token_free(token);
		return -1;
	}
	install(a, s, token);
	return 0;
}

void statuses_reload(struct agent *a, char *token, struct statuses *fresh)
{
	if (!token) {
		if (a->statuses) {
			statuses_stop(a);
			log_info("commit statuses off: github.token_file is not set",
				 LOG_S("api", a->settings.github_api_url));
		}
		return;
	}
	if (fresh)
		install(a, fresh, token);
	else
		token_set(a->statuses, token);
}

void statuses_stop(struct agent *a)
{
	struct statuses *s = a->statuses;

	if (!s)
		return;
	while (s->runs)
		queue_free(s->runs);
	/* Statuses not posted leave their offsets unstored: whoever consumes
	 * the partition next posts them. */
	kafka_consumer_free(s->consumer);
	curlev_free(s->multi);
	event_free(s->wake);
	token_set(s, NULL);
	free(s);
	a->statuses = NULL;
}
