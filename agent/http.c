/* http: JSON replies and pending requests for the agent's endpoints. */
#include "agent/http.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

struct http_pending {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
};

static const char *reason_phrase(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "";
	}
}

void http_reply_json(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!buf || !text) {
		free(text);
		if (buf)
			evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(buf, text, strlen(text));
	evbuffer_add(buf, "\n", 1);
	free(text);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason_phrase(code), buf);
	evbuffer_free(buf);
}

void http_reply_error(struct evhttp_request *req, int status, const char *code, const char *message)
{
	http_reply_json(req, status,
			json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct http_pending *p = arg;
	(void)conn;
	p->req = NULL;
	p->conn = NULL;
}

struct http_pending *http_pending_new(struct evhttp_request *req)
{
	struct http_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, on_close, p);
	return p;
}

struct evhttp_request *http_pending_request(const struct http_pending *p)
{
	return p->req;
}

void http_pending_reply(struct http_pending *p, int code, json_t *body)
{
	struct evhttp_request *req = p->req;
	/* Detach first: sending may end the connection, and its close callback
	 * must not find p afterwards. */
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
	free(p);
	if (req)
		http_reply_json(req, code, body);
	else
		json_decref(body);
}

void http_pending_error(struct http_pending *p, int status, const char *code, const char *message)
{
	http_pending_reply(p, status,
			   json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}
