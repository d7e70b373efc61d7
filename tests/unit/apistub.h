/* apistub: an HTTP server on the test's own libevent loop (evhttp) that
 * records every request it gets and answers with the responses the test
 * queued, in order (the last one again once the queue runs out).
 *
 * For the provider tests that check the exact requests a client sends.
 * Header-only: each test binary is built from its one source file.
 */
#ifndef SLUICE_TESTS_APISTUB_H
#define SLUICE_TESTS_APISTUB_H

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define APISTUB_MAX 32

struct apistub_request {
	char method[16];
	char uri[512];
	char content_type[128];
	char authorization[256];
	char body[4096];
};

struct apistub_response {
	int status;
	char body[4096];
	size_t pad; /* blanks sent after body, for a long answer */
};

struct apistub {
	struct evhttp *http;
	int port;
	struct apistub_request req[APISTUB_MAX];
	int nreq;
	struct apistub_response resp[APISTUB_MAX];
	int nresp;
};

static inline const char *apistub_method(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "OTHER";
	}
}

static inline void apistub_handle(struct evhttp_request *r, void *arg)
{
	struct apistub *s = arg;
	struct evkeyvalq *h = evhttp_request_get_input_headers(r);
	struct evbuffer *in = evhttp_request_get_input_buffer(r);
	struct evbuffer *out = evbuffer_new();
	const char *v;
	int i = s->nreq < s->nresp ? s->nreq : s->nresp - 1;

	if (s->nreq < APISTUB_MAX) {
		struct apistub_request *q = &s->req[s->nreq];
		size_t len = evbuffer_get_length(in);
		memset(q, 0, sizeof(*q));
		snprintf(q->method, sizeof(q->method), "%s",
			 apistub_method(evhttp_request_get_command(r)));
		snprintf(q->uri, sizeof(q->uri), "%s", evhttp_request_get_uri(r));
		v = evhttp_find_header(h, "Content-Type");
		snprintf(q->content_type, sizeof(q->content_type), "%s", v ? v : "");
		v = evhttp_find_header(h, "Authorization");
		snprintf(q->authorization, sizeof(q->authorization), "%s", v ? v : "");
		if (len >= sizeof(q->body))
			len = sizeof(q->body) - 1;
		evbuffer_remove(in, q->body, len);
		s->nreq++;
	}
	if (i < 0) {
		evhttp_send_reply(r, 500, "no response queued", NULL);
		evbuffer_free(out);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
	evbuffer_add(out, s->resp[i].body, strlen(s->resp[i].body));
	for (size_t n = 0; n < s->resp[i].pad; n++)
		evbuffer_add(out, " ", 1);
	evhttp_send_reply(r, s->resp[i].status, "stub", out);
	evbuffer_free(out);
}

/* Listens on a free loopback port; 0 or -1. */
static inline int apistub_start(struct apistub *s, struct event_base *base)
{
	struct evhttp_bound_socket *b;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(s, 0, sizeof(*s));
	s->http = evhttp_new(base);
	if (!s->http)
		return -1;
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
	evhttp_set_gencb(s->http, apistub_handle, s);
	b = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
	if (!b || getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &len) < 0)
		return -1;
	s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

static inline void apistub_reply(struct apistub *s, int status, const char *body)
{
	if (s->nresp < APISTUB_MAX) {
		s->resp[s->nresp].status = status;
		snprintf(s->resp[s->nresp].body, sizeof(s->resp[s->nresp].body), "%s", body);
		s->resp[s->nresp].pad = 0;
		s->nresp++;
	}
}

static inline void apistub_reset(struct apistub *s)
{
	s->nreq = 0;
	s->nresp = 0;
}

static inline void apistub_stop(struct apistub *s)
{
	if (s->http)
		evhttp_free(s->http);
	s->http = NULL;
}

#endif
