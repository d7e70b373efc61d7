/* connection: bufferevents and the count of accepted connections
 * (connection.h).
 *
 * evhttp asks for a connection's bufferevent (evhttp_set_bevcb) before it
 * makes the evhttp_connection around it, so the count goes up there, and
 * the connection is adopted (its close callback set) by an event made
 * active there too: it runs later in the same turn of the loop, once evhttp
 * has set the bufferevent's callbacks, whose argument is the connection,
 * and before anything can be read. A reference to the bufferevent keeps it
 * until then: if evhttp already gave the connection up, its callbacks are
 * gone and it is counted out.
 */
#include "agent/connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "lib/clock.h"
#include "lib/listener_backoff.h"
#include "lib/log.h"

struct connections;

/* One accepted connection whose bufferevent is ours. */
struct conn {
	struct connections *cs;
	struct bufferevent *bev; /* held until adopted */
	struct evhttp_connection *evcon;
	void (*watch)(struct evhttp_connection *, void *);
	void *watch_arg;
	struct evbuffer_cb_entry *input_cb;
	struct event *plain; /* TLS: the wait for its first byte, then for a
			      * plain HTTP client to close (answer_plain) */
	int64_t active_ms;   /* monotonic: accepted, or its last request began or ended */
	size_t receiving;    /* bytes read since its last request arrived whole */
	struct conn *next;   /* in the fresh list, then in its bucket */
};

struct connections {
	struct agent *a;
	struct event *adopt;
	struct event *calm;  /* ends an episode at the limit */
	struct event *evict; /* makes room at the limit */
	struct event *shed;  /* bounds the bytes being received */
	struct conn *fresh;  /* accepted, not yet adopted */
	struct conn **buckets;
	unsigned bits;
	long open;
	size_t receiving; /* the sum of the connections' */
	int held;	  /* the listener, at the limit */
	int over_limit;	  /* between the limit's warning and its notice */
};

/* Runs as bytes are added to the connection's input, before its read
 * callback (libevent's HTTP parser) sees them: counts them, and marks the
 * NUL bytes among them. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	if (info->n_added == 0)
		return;
	struct connections *cs = c->cs;
	c->receiving += info->n_added;
	cs->receiving += info->n_added;
	if (cs->receiving > cs->a->settings.max_request_memory)
		event_active(cs->shed, EV_TIMEOUT, 0);
	struct evbuffer_ptr at;
	if (evbuffer_ptr_set(in, &at, evbuffer_get_length(in) - info->n_added, EVBUFFER_PTR_SET) <
	    0)
		return;
	for (;;) {
		at = evbuffer_search(in, "", 1, &at);
		struct evbuffer_iovec byte;
		if (at.pos == -1 || evbuffer_peek(in, 1, &at, &byte, 1) < 1)
			return;
		*(char *)byte.iov_base = CONNECTION_NUL;
	}
}

static struct conn **bucket(struct connections *cs, const struct evhttp_connection *evcon)
{
	uint64_t h = ((uint64_t)(uintptr_t)evcon >> 4) * 0x9E3779B97F4A7C15ULL;
	return &cs->buckets[h >> (64 - cs->bits)];
}

static struct conn **find(struct connections *cs, const struct evhttp_connection *evcon)
{
	struct conn **p = bucket(cs, evcon);
	while (*p && (*p)->evcon != evcon)
		p = &(*p)->next;
	return p;
}

/* An episode at the limit ends once the count stayed below it this long. */
#define CALM_MS 1000

/* The count changed: hold or release the listener. Under a flood the count
 * touches the limit at every close and accept: the warning comes once, when
 * it is first reached, and the notice once it stayed below for CALM_MS. */
static void counted(struct connections *cs)
{
	struct agent *a = cs->a;
	int hold = cs->open >= a->settings.max_connections;
	agent_metrics_connections(a, cs->open);
	if (hold == cs->held)
		return;
	cs->held = hold;
	if (a->accept_backoff)
		listener_backoff_hold(a->accept_backoff, hold);
	if (!hold) {
		struct timeval tv = {CALM_MS / 1000, (CALM_MS % 1000) * 1000};
		evtimer_add(cs->calm, &tv);
		return;
	}
	evtimer_del(cs->calm);
	event_active(cs->evict, EV_TIMEOUT, 0);
	if (cs->over_limit)
		return;
	cs->over_limit = 1;
	agent_metrics_connection_limit(a);
	log_warn("connection limit reached: new connections wait until others close",
		 LOG_I("max_connections", a->settings.max_connections));
}

static void on_calm(evutil_socket_t fd, short what, void *arg)
{
	struct connections *cs = arg;
	(void)fd;
	(void)what;
	cs->over_limit = 0;
	log_info("connections below their limit again", LOG_I("open", cs->open),
		 LOG_I("max_connections", cs->a->settings.max_connections));
}

/* c ends: counted out, its input no longer watched. */
static void forget(struct conn *c, struct bufferevent *bev)
{
	struct connections *cs = c->cs;
	if (c->plain)
		event_free(c->plain);
	evbuffer_remove_cb_entry(bufferevent_get_input(bev), c->input_cb);
	cs->receiving -= c->receiving;
	free(c);
	cs->open--;
	counted(cs);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;
	if (c->watch)
		c->watch(evcon, c->watch_arg);
	struct conn **p = find(c->cs, evcon);
	if (*p == c)
		*p = c->next;
	forget(c, evhttp_connection_get_bufferevent(evcon));
}

/* At the limit, while a connection waits in the backlog, the connection
 * that has made no progress the longest: none of its requests under way (a
 * waiting one or a log stream is watched), none begun or ended for
 * EVICT_AFTER_MS. Closed, it makes room for the one that waits; so
 * connections that send nothing, or a byte now and then (slowloris),
 * cannot keep webhooks out by filling the limit. */
#define EVICT_AFTER_MS 1000

static void on_evict(evutil_socket_t fd, short what, void *arg)
{
	struct connections *cs = arg;
	struct timeval tv = {0, EVICT_AFTER_MS * 1000 / 4};
	(void)fd;
	(void)what;
	if (!cs->held || !cs->a->accept_backoff)
		return;
	/* Only for a connection that waits: checked again meanwhile. */
	if (!listener_backoff_waiting(cs->a->accept_backoff)) {
		evtimer_add(cs->evict, &tv);
		return;
	}
	int64_t now = clock_mono_ms();
	struct conn *oldest = NULL;
	for (size_t i = 0; i < (size_t)1 << cs->bits; i++)
		for (struct conn *c = cs->buckets[i]; c; c = c->next)
			if (!c->watch && now - c->active_ms >= EVICT_AFTER_MS &&
			    (!oldest || c->active_ms < oldest->active_ms))
				oldest = c;
	if (!oldest) {
		/* Every one busy or young: try again when the youngest idle one
		 * may be old enough, while the limit holds. */
		evtimer_add(cs->evict, &tv);
		return;
	}
	char *peer = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(oldest->evcon, &peer, &port);
	log_info("connection closed to make room: no request from it for a while",
		 LOG_S("peer", peer ? peer : "?"), LOG_I("port", port),
		 LOG_I("idle_ms", now - oldest->active_ms),
		 LOG_I("max_connections", cs->a->settings.max_connections));
	agent_metrics_connection_evicted(cs->a);
	/* Its close callback counts it out, and releases the listener. */
	evhttp_connection_free(oldest->evcon);
}

/* Plain HTTP sent to the TLS port (an http:// URL for an https:// agent).
 * OpenSSL would fail the handshake and the connection close without a word,
 * which clients report as an empty reply; so, as nginx does, each
 * connection's first byte is looked at before OpenSSL reads it: a TLS
 * record begins with 0x16, a request with its method's capital letter, and
 * a request is answered with this and closed. */
#define PLAIN_ANSWER_BODY "This port speaks TLS: use https:// to reach it.\n"
/* Closed with bytes it has not read, a connection is reset, and the client
 * may lose the answer: what it still sends is read and dropped until it
 * closes, for this long at most (nginx's lingering close). */
#define LINGER_MS 2000

static void drain(evutil_socket_t fd)
{
	char buf[4096];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char buf[4096];
	ssize_t n = what & EV_TIMEOUT ? 0 : recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	/* Its close callback frees this event. */
	evhttp_connection_free(c->evcon);
}

static void answer_plain(struct conn *c, evutil_socket_t fd)
{
	struct timeval tv = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
	char answer[256];
	char *peer = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(c->evcon, &peer, &port);
	log_info("plain HTTP request on the TLS port: answered 400",
		 LOG_S("peer", peer ? peer : "?"), LOG_I("port", port));
	int len = snprintf(answer, sizeof(answer),
			   "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
			   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			   strlen(PLAIN_ANSWER_BODY), PLAIN_ANSWER_BODY);
	drain(fd);
	/* A new connection's send buffer takes these few bytes at once; if it
	 * did not, the client sees the connection closed, as it would anyway. */
	(void)send(fd, answer, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
	event_free(c->plain);
	c->plain = event_new(c->cs->a->base, fd, EV_READ | EV_PERSIST, on_linger, c);
	if (!c->plain || event_add(c->plain, &tv) < 0)
		evhttp_connection_free(c->evcon);
}

static void on_first_byte(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	unsigned char byte;
	if (what & EV_TIMEOUT) {
		/* Silent for agent.http_timeout: dropped, as evhttp drops them. */
		evhttp_connection_free(c->evcon);
		return;
	}
	ssize_t n = recv(fd, &byte, 1, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 1 && byte >= 'A' && byte <= 'Z') {
		answer_plain(c, fd);
		return;
	}
	/* A TLS record, or an end or an error that OpenSSL reports. */
	event_free(c->plain);
	c->plain = NULL;
	bufferevent_enable(evhttp_connection_get_bufferevent(c->evcon), EV_READ);
}

/* Holds a TLS connection's reading until its first byte is there. Without
 * the event, the connection goes to OpenSSL unlooked at. */
static void wait_first_byte(struct conn *c)
{
	struct agent *a = c->cs->a;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
	struct timeval tv = {a->settings.http_timeout_ms / 1000,
			     (a->settings.http_timeout_ms % 1000) * 1000};
	c->plain =
	    event_new(a->base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, on_first_byte, c);
	if (!c->plain)
		return;
	if (event_add(c->plain, &tv) < 0) {
		event_free(c->plain);
		c->plain = NULL;
		return;
	}
	bufferevent_disable(bev, EV_READ);
}

/* Sets the close callbacks of the connections accepted lately. */
static void adopt_fresh(struct connections *cs)
{
	while (cs->fresh) {
		struct conn *c = cs->fresh;
		cs->fresh = c->next;
		bufferevent_data_cb readcb;
		void *evcon;
		bufferevent_getcb(c->bev, &readcb, NULL, NULL, &evcon);
		if (readcb && evcon && evhttp_connection_get_bufferevent(evcon) == c->bev) {
			c->evcon = evcon;
			struct conn **b = bucket(cs, evcon);
			c->next = *b;
			*b = c;
			evhttp_connection_set_closecb(evcon, on_close, c);
			bufferevent_decref(c->bev);
			c->bev = NULL;
			if (cs->a->tls)
				wait_first_byte(c);
			continue;
		}
		/* evhttp gave it up at once (bufferevent_free clears the
		 * callbacks); the last reference closes it. */
		struct bufferevent *bev = c->bev;
		forget(c, bev);
		bufferevent_decref(bev);
	}
}

static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	adopt_fresh(arg);
}

/* Over agent.max_request_memory, the bytes of the requests being received
 * on all connections: the connection with the most is closed, until the
 * sum is within it again. Requests already whole are not counted, nor
 * are they ever closed for it: their handlers answer them. */
static void on_shed(evutil_socket_t fd, short what, void *arg)
{
	struct connections *cs = arg;
	size_t max = cs->a->settings.max_request_memory;
	(void)fd;
	(void)what;
	adopt_fresh(cs);
	while (cs->receiving > max) {
		struct conn *largest = NULL;
		for (size_t i = 0; i < (size_t)1 << cs->bits; i++)
			for (struct conn *c = cs->buckets[i]; c; c = c->next)
				if (c->receiving && (!largest || c->receiving > largest->receiving))
					largest = c;
		if (!largest)
			return;
		char *peer = NULL;
		ev_uint16_t port = 0;
		evhttp_connection_get_peer(largest->evcon, &peer, &port);
		log_warn("connection closed: the requests being received hold more than "
			 "agent.max_request_memory",
			 LOG_S("peer", peer ? peer : "?"), LOG_I("port", port),
			 LOG_I("bytes", (long long)largest->receiving),
			 LOG_I("receiving", (long long)cs->receiving),
			 LOG_I("max_request_memory", (long long)max));
		agent_metrics_connection_shed(cs->a);
		/* Its close callback counts its bytes out. */
		evhttp_connection_free(largest->evcon);
	}
}

static struct bufferevent *new_bufferevent(struct agent *a, struct event_base *base, struct conn *c)
{
	struct bufferevent *bev;
	if (a->tls) {
		SSL *ssl = SSL_new(a->tls);
		if (!ssl)
			return NULL;
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
						     BEV_OPT_CLOSE_ON_FREE);
		if (!bev) {
			SSL_free(ssl);
			return NULL;
		}
		/* Clients that close without close_notify are common (curl
		 * does); the HTTP layer already knows where each message ends. */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev && !(c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c))) {
		bufferevent_free(bev);
		return NULL;
	}
	return bev;
}

static struct bufferevent *on_connection(struct event_base *base, void *arg)
{
	struct connections *cs = arg;
	struct conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = c ? new_bufferevent(cs->a, base, c) : NULL;
	if (!bev) {
		/* evhttp then makes a plain bufferevent of its own, uncounted. */
		free(c);
		return NULL;
	}
	c->cs = cs;
	c->bev = bev;
	c->active_ms = clock_mono_ms();
	bufferevent_incref(bev);
	c->next = cs->fresh;
	cs->fresh = c;
	event_active(cs->adopt, EV_TIMEOUT, 0);
	cs->open++;
	counted(cs);
	return bev;
}

static void connection_free(struct connections *cs)
{
	struct event *events[] = {cs->adopt, cs->calm, cs->evict, cs->shed};
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		if (events[i])
			event_free(events[i]);
	free(cs->buckets);
	free(cs);
}

int connection_start(struct agent *a)
{
	struct connections *cs = calloc(1, sizeof(*cs));
	if (!cs)
		return -1;
	cs->a = a;
	/* A bucket a connection at the limit, up to 64 Ki buckets. */
	cs->bits = 4;
	while (cs->bits < 16 && (1L << cs->bits) < a->settings.max_connections)
		cs->bits++;
	cs->buckets = calloc((size_t)1 << cs->bits, sizeof(*cs->buckets));
	cs->adopt = event_new(a->base, -1, 0, on_adopt, cs);
	cs->calm = evtimer_new(a->base, on_calm, cs);
	cs->evict = evtimer_new(a->base, on_evict, cs);
	cs->shed = event_new(a->base, -1, 0, on_shed, cs);
	if (!cs->buckets || !cs->adopt || !cs->calm || !cs->evict || !cs->shed) {
		connection_free(cs);
		return -1;
	}
	a->connections = cs;
	evhttp_set_bevcb(a->http, on_connection, cs);
	return 0;
}

void connection_stop(struct agent *a)
{
	struct connections *cs = a->connections;
	if (!cs)
		return;
	/* evhttp_free closed every connection it had; what it never made
	 * into one is released here. */
	adopt_fresh(cs);
	connection_free(cs);
	a->connections = NULL;
}

/* The record of conn, NULL for one evhttp made itself (on_connection) or
 * when nothing is counted. */
static struct conn *tracked(struct agent *a, struct evhttp_connection *conn)
{
	struct connections *cs = a->connections;
	if (!cs || !conn)
		return NULL;
	adopt_fresh(cs);
	return *find(cs, conn);
}

void connection_watch(struct agent *a, struct evhttp_connection *conn,
		      void (*cb)(struct evhttp_connection *, void *), void *arg)
{
	struct conn *c = tracked(a, conn);
	if (!c) {
		/* One evhttp made itself (on_connection) is not counted. */
		evhttp_connection_set_closecb(conn, cb, arg);
		return;
	}
	c->watch = cb;
	c->watch_arg = arg;
	c->active_ms = clock_mono_ms();
}

void connection_request(struct agent *a, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct conn *c = tracked(a, evcon);
	if (!c)
		return;
	c->active_ms = clock_mono_ms();
	/* What is left in its input belongs to the requests after it. */
	size_t left =
	    evbuffer_get_length(bufferevent_get_input(evhttp_connection_get_bufferevent(evcon)));
	c->cs->receiving = c->cs->receiving - c->receiving + left;
	c->receiving = left;
}

size_t connection_receiving(const struct agent *a)
{
	return a->connections ? a->connections->receiving : 0;
}
