/* logstream: Server-Sent Events of a stage's log, polled from Redis. */
#include "agent/logstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/connection.h"
#include "agent/http.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/utf8.h"

#define POLL_MS	     100
#define KEEPALIVE_MS 15000 /* or half of agent.http_timeout, when that is shorter */
#define BATCH	     500
/* A client this far behind is not sent more until it catches up. */
#define BACKLOG_MAX (1024 * 1024)

struct log_stream {
	struct agent *agent;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;
	struct log_stream *next;
	char run_key[256];   /* run:<run> */
	char stage_key[512]; /* run:<run>:stage:<stage> */
	char log_key[512];
	char last[64]; /* id of the last entry sent; "" before the first */
	char stage_status[32];
	char run_status[32];
	int started;   /* headers sent */
	int in_flight; /* replies still expected for this poll */
	int gone;      /* the client left, or the agent stops: free when idle */
	int failed;    /* a reply of this poll failed */
	long long quiet_since;
};

static void poll_now(struct log_stream *s);

static void unlink_stream(struct log_stream *s)
{
	for (struct log_stream **p = &s->agent->streams; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			return;
		}
	}
}

static void stream_free(struct log_stream *s)
{
	unlink_stream(s);
	if (s->timer)
		event_free(s->timer);
	if (s->conn)
		connection_watch(s->agent, s->conn, NULL, NULL);
	free(s);
}

/* Ends the answer (when the client is still there) and frees s, or marks it
 * to be freed once the replies it waits for are in. The close callback goes
 * first: ending an answer may free the connection at once. */
static void stream_end(struct log_stream *s)
{
	struct evhttp_request *req = s->req;
	if (s->conn) {
		connection_watch(s->agent, s->conn, NULL, NULL);
		s->conn = NULL;
	}
	s->req = NULL;
	s->gone = 1;
	if (s->timer)
		event_del(s->timer);
	if (req && s->started)
		evhttp_send_reply_end(req);
	if (!s->in_flight)
		stream_free(s);
}

/* Answers a stream that never started with a JSON error, and ends it. */
static void stream_fail(struct log_stream *s, int status, const char *code, const char *message)
{
	struct evhttp_request *req = s->req;
	if (s->conn) {
		connection_watch(s->agent, s->conn, NULL, NULL);
		s->conn = NULL;
	}
	s->req = NULL;
	if (req)
		http_reply_error(req, status, code, message);
	stream_end(s);
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct log_stream *s = arg;
	struct evhttp_request *req = s->req;
	(void)conn;
	s->conn = NULL;
	s->req = NULL;
	/* A request whose connection failed before its answer ended is ours
	 * to free; one still attached goes with its connection. */
	if (req && !evhttp_request_get_connection(req))
		evhttp_request_free(req);
	stream_end(s);
}

static const char *field(const redisReply *h, const char *name)
{
	if (!h || h->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < h->elements; i += 2) {
		if (h->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(h->element[i]->str, name) == 0)
			return h->element[i + 1]->str;
	}
	return NULL;
}

json_t *logstream_line(const char *id, const char *time_ms, const char *stream, const char *line)
{
	char when[64], *repaired = NULL;
	size_t len;
	json_t *time = json_null();
	if (time_ms && *time_ms) {
		clock_format_rfc3339(strtoll(time_ms, NULL, 10), when, sizeof(when));
		time = json_string(when);
	}
	line = line ? line : "";
	if (utf8_repair(line, strlen(line), &repaired, &len) < 0) {
		json_decref(time);
		return NULL;
	}
	json_t *o = json_pack("{s:s,s:o,s:s,s:s}", "id", id, "time", time, "stream",
			      stream ? stream : "stdout", "line", repaired ? repaired : line);
	free(repaired);
	return o;
}

int logstream_add_line(struct evbuffer *out, const char *id, const char *time_ms,
		       const char *stream, const char *line)
{
	json_t *o = logstream_line(id, time_ms, stream, line);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return -1;
	/* JSON text holds no raw line break, so one data: line carries it. */
	int rc = evbuffer_add_printf(out, "id: %s\ndata: %s\n\n", id, text) < 0 ? -1 : 0;
	free(text);
	return rc;
}

/* As route.lua's: a deployment also ends lost, aborted or rolled back. */
static int is_terminal_stage(const char *st)
{
	static const char *const done[] = {"succeeded", "failed", "timed_out", "cancelled",
					   "skipped",	"lost",	  "aborted",   "rolled_back"};
	for (size_t i = 0; i < sizeof(done) / sizeof(done[0]); i++) {
		if (strcmp(st, done[i]) == 0)
			return 1;
	}
	return 0;
}

/* Whether no more lines can come: the stage ended, or its run ended without
 * it ever starting (a deployment a rejected run never reached). */
static int finished(const struct log_stream *s)
{
	if (is_terminal_stage(s->stage_status))
		return 1;
	int run_over = s->run_status[0] && strcmp(s->run_status, "queued") != 0 &&
		       strcmp(s->run_status, "running") != 0 &&
		       strcmp(s->run_status, "waiting") != 0;
	return run_over && (!s->stage_status[0] || strcmp(s->stage_status, "pending") == 0 ||
			    strcmp(s->stage_status, "queued") == 0);
}

/* How long a stream may be quiet before a keep-alive comment: the
 * connection is closed after agent.http_timeout without a write. */
static long long keepalive_ms(const struct log_stream *s)
{
	long long half = s->agent->settings.http_timeout_ms / 2;
	return half > 0 && half < KEEPALIVE_MS ? half : KEEPALIVE_MS;
}

static void send_buffer(struct log_stream *s, struct evbuffer *buf)
{
	if (evbuffer_get_length(buf) == 0)
		return;
	evhttp_send_reply_chunk(s->req, buf);
	s->quiet_since = (long long)clock_mono_ms();
}

/* One reply of a poll came in: nothing more to do unless it was the last. */
static int reply_done(struct log_stream *s, const redisReply *reply)
{
	s->in_flight--;
	if (!reply)
		s->failed = 1;
	if (s->gone) {
		if (!s->in_flight)
			stream_free(s);
		return 1;
	}
	return 0;
}

static void on_status(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct log_stream *s = arg;
	(void)r;
	(void)err;
	if (reply_done(s, reply))
		return;
	const char *st = field(reply, "status");
	snprintf(s->stage_status, sizeof(s->stage_status), "%s", st ? st : "");
}

static void on_run_status(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct log_stream *s = arg;
	(void)r;
	(void)err;
	if (reply_done(s, reply))
		return;
	/* No reply when the connection to Redis was lost (reply_done marked
	 * the poll failed): on_range then sends nothing, and the next poll
	 * reads the status again. */
	snprintf(s->run_status, sizeof(s->run_status), "%s",
		 reply && reply->type == REDIS_REPLY_STRING ? reply->str : "");
}

static void on_range(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct log_stream *s = arg;
	(void)r;
	if (reply_done(s, reply))
		return;
	if (s->failed || reply->type != REDIS_REPLY_ARRAY) {
		/* The next poll tries again; the client keeps its place. */
		log_debug("log stream poll failed", LOG_S("key", s->log_key),
			  LOG_S("error", err ? err : "unexpected reply"));
		s->failed = 0;
		return;
	}
	struct evbuffer *buf = evbuffer_new();
	if (!buf)
		return;
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *e = reply->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    strlen(e->element[0]->str) >= sizeof(s->last))
			continue;
		const redisReply *f = e->element[1];
		if (logstream_add_line(buf, e->element[0]->str, field(f, "t"), field(f, "s"),
				       field(f, "l")) < 0)
			break;
		snprintf(s->last, sizeof(s->last), "%s", e->element[0]->str);
	}
	/* The status was read before the range in the same pipeline: once it
	 * says finished, this range holds every line there will be. */
	int end = reply->elements < BATCH && finished(s);
	if (end) {
		json_t *o =
		    json_pack("{s:s}", "status", s->stage_status[0] ? s->stage_status : "pending");
		char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		evbuffer_add_printf(buf, "event: end\ndata: %s\n\n", text ? text : "{}");
		free(text);
		json_decref(o);
	} else if (evbuffer_get_length(buf) == 0 &&
		   (long long)clock_mono_ms() - s->quiet_since >= keepalive_ms(s)) {
		evbuffer_add_printf(buf, ": keep-alive\n\n");
	}
	send_buffer(s, buf);
	evbuffer_free(buf);
	if (end)
		stream_end(s);
	else if (reply->elements == BATCH)
		poll_now(s);
}

static int backlogged(const struct log_stream *s)
{
	struct bufferevent *bev = s->conn ? evhttp_connection_get_bufferevent(s->conn) : NULL;
	return bev && evbuffer_get_length(bufferevent_get_output(bev)) > BACKLOG_MAX;
}

static void poll_now(struct log_stream *s)
{
	struct agent *a = s->agent;
	const char *P = a->settings.key_prefix;
	char start[80];

	if (s->in_flight || s->gone || backlogged(s))
		return;
	s->failed = 0;
	snprintf(start, sizeof(start), "%s%s", s->last[0] ? "(" : "", s->last[0] ? s->last : "-");
	/* Sent in this order on one connection, so answered in this order. */
	s->in_flight = 3;
	if (redis_command(a->redis, on_status, s, "HGETALL %s%s", P, s->stage_key) < 0)
		s->in_flight--;
	if (redis_command(a->redis, on_run_status, s, "HGET %s%s status", P, s->run_key) < 0)
		s->in_flight--;
	if (redis_command(a->redis, on_range, s, "XRANGE %s%s %s + COUNT %d", P, s->log_key, start,
			  BATCH) < 0)
		s->in_flight--;
	if (s->in_flight < 3)
		s->failed = 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	poll_now(arg);
}

static void begin(struct log_stream *s)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(s->req);
	struct timeval tv = {0, POLL_MS * 1000};

	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-store");
	/* nginx would otherwise hold the events back. */
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	/* HTTP/1.0 has no chunks: the stream ends with the connection, which
	 * a keep-alive client must be told. libevent answers a keep-alive
	 * one with "Content-Length: 0" (the events would follow as if another
	 * answer) unless the request no longer asks for it. */
	if (s->req->major == 1 && s->req->minor == 0) {
		evhttp_remove_header(evhttp_request_get_input_headers(s->req), "Connection");
		evhttp_add_header(h, "Connection", "close");
	}
	evhttp_send_reply_start(s->req, 200, "OK");
	s->started = 1;
	/* A HEAD is answered by the headers alone: kept open, it would hold its
	 * connection, and the requests after it there, until the stage ends. */
	if (evhttp_request_get_command(s->req) == EVHTTP_REQ_HEAD) {
		stream_end(s);
		return;
	}
	struct evbuffer *buf = evbuffer_new();
	if (buf) {
		evbuffer_add_printf(buf, ": log of %s\nretry: 1000\n\n", s->log_key);
		send_buffer(s, buf);
		evbuffer_free(buf);
	}
	s->timer = event_new(s->agent->base, -1, EV_PERSIST, on_tick, s);
	if (!s->timer || event_add(s->timer, &tv) < 0) {
		stream_end(s);
		return;
	}
	poll_now(s);
}

static void on_exists(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct log_stream *s = arg;
	(void)r;
	s->in_flight--;
	if (s->gone) {
		stream_free(s);
		return;
	}
	if (!reply || reply->type != REDIS_REPLY_INTEGER) {
		log_warn("api request failed", LOG_S("error", err ? err : "unexpected reply"));
		stream_fail(s, 503, "unavailable", "state store unavailable");
		return;
	}
	if (reply->integer == 0) {
		stream_fail(s, 404, "not_found", "no such run or stage");
		return;
	}
	begin(s);
}

void logstream_start(struct agent *a, struct evhttp_request *req, const char *run,
		     const char *stage, const char *after)
{
	struct log_stream *s = calloc(1, sizeof(*s));
	if (!s) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	s->agent = a;
	s->req = req;
	s->conn = evhttp_request_get_connection(req);
	snprintf(s->run_key, sizeof(s->run_key), "run:%s", run);
	snprintf(s->stage_key, sizeof(s->stage_key), "run:%s:stage:%s", run, stage);
	snprintf(s->log_key, sizeof(s->log_key), "log:%s:%s", run, stage);
	snprintf(s->last, sizeof(s->last), "%s", after ? after : "");
	s->quiet_since = (long long)clock_mono_ms();
	s->next = a->streams;
	a->streams = s;
	if (s->conn)
		connection_watch(a, s->conn, on_close, s);
	s->in_flight = 1;
	if (redis_command(a->redis, on_exists, s, "EXISTS %s%s", a->settings.key_prefix,
			  s->stage_key) < 0) {
		s->in_flight = 0;
		stream_fail(s, 503, "unavailable", "state store unavailable");
	}
}

void logstream_stop_all(struct agent *a)
{
	struct log_stream *s = a->streams;
	while (s) {
		struct log_stream *next = s->next;
		if (!s->gone)
			stream_end(s);
		s = next;
	}
}
