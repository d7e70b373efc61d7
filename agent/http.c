/* http: JSON replies, pending requests and paths of the agent's endpoints. */
#include "agent/http.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/connection.h"
#include "lib/httpsend.h"
#include "lib/log.h"

struct http_pending {
	struct agent *a;
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

void http_reply_text(struct evhttp_request *req, int code, const char *json, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (!buf || evbuffer_add(buf, json, len) < 0 || evbuffer_add(buf, "\n", 1) < 0) {
		if (buf)
			evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	httpsend_reply(req, code, reason_phrase(code), buf);
	evbuffer_free(buf);
}

void http_reply_json(struct evhttp_request *req, int code, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	http_reply_text(req, code, text, strlen(text));
	free(text);
}

void http_reply_error(struct evhttp_request *req, int status, const char *code, const char *message)
{
	http_reply_json(req, status,
			json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

static int is_control(char c)
{
	unsigned char ch = (unsigned char)c;
	return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

static int has_control(const char *s)
{
	while (*s && !is_control(*s))
		s++;
	return *s != '\0';
}

int http_refuse_controls(struct evhttp_request *req)
{
	char message[160];
	if (has_control(evhttp_request_get_uri(req))) {
		http_reply_error(req, 400, "bad_request",
				 "the request target holds a control character");
		return 1;
	}
	const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	for (const struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
		if (!has_control(kv->key) && !has_control(kv->value))
			continue;
		/* The name as far as it is printable. */
		int len = 0;
		while (len < 64 && kv->key[len] && !is_control(kv->key[len]))
			len++;
		snprintf(message, sizeof(message), "header %.*s%s holds a control character", len,
			 kv->key, kv->key[len] ? "..." : "");
		http_reply_error(req, 400, "bad_request", message);
		return 1;
	}
	return 0;
}

int http_refuse_ambiguous_length(struct evhttp_request *req)
{
	const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	int seen = 0;
	for (const struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next)
		seen += strcasecmp(kv->key, "Content-Length") == 0;
	if (seen < 2)
		return 0;
	/* The bytes after the body libevent read may be anything: no further
	 * request is read from this connection. */
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	http_reply_error(req, 400, "bad_request", "header Content-Length is given twice");
	return 1;
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct http_pending *p = arg;
	(void)conn;
	p->req = NULL;
	p->conn = NULL;
}

struct http_pending *http_pending_new(struct agent *a, struct evhttp_request *req)
{
	struct http_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->a = a;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	if (p->conn)
		connection_watch(a, p->conn, on_close, p);
	return p;
}

struct evhttp_request *http_pending_request(const struct http_pending *p)
{
	return p->req;
}

/* The request, if its client is still there; p is freed. */
static struct evhttp_request *pending_end(struct http_pending *p)
{
	struct evhttp_request *req = p->req;
	/* Detach first: sending may end the connection, and its close callback
	 * must not find p afterwards. */
	if (p->conn)
		connection_watch(p->a, p->conn, NULL, NULL);
	free(p);
	return req;
}

void http_pending_reply(struct http_pending *p, int code, json_t *body)
{
	struct evhttp_request *req = pending_end(p);
	if (req)
		http_reply_json(req, code, body);
	else
		json_decref(body);
}

void http_pending_reply_text(struct http_pending *p, int code, const char *json, size_t len)
{
	struct evhttp_request *req = pending_end(p);
	if (req)
		http_reply_text(req, code, json, len);
}

void http_pending_error(struct http_pending *p, int status, const char *code, const char *message)
{
	http_pending_reply(p, status,
			   json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

int http_segment_ok(const char *s, size_t len)
{
	if (len == 0 || len >= HTTP_SEGMENT_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' || ch == '@'))
			return 0;
	}
	return 1;
}

int http_take_segment(const char **p, char *out, size_t outlen)
{
	size_t len = strcspn(*p, "/");
	if (!http_segment_ok(*p, len) || len >= outlen)
		return -1;
	memcpy(out, *p, len);
	out[len] = '\0';
	*p += len;
	return 0;
}

int http_run_env_path(const char *path, char *run, size_t runlen, char *env, size_t envlen,
		      const char **rest)
{
	static const char runs[] = "/api/v1/runs/", envs[] = "/environments/";
	const char *p = path;

	if (strncmp(p, runs, sizeof(runs) - 1) != 0)
		return -1;
	p += sizeof(runs) - 1;
	if (http_take_segment(&p, run, runlen) < 0 || strncmp(p, envs, sizeof(envs) - 1) != 0)
		return -1;
	p += sizeof(envs) - 1;
	if (http_take_segment(&p, env, envlen) < 0)
		return -1;
	*rest = p;
	return 0;
}
