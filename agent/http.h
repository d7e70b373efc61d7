/* http: JSON replies for the agent's endpoints, requests that wait for
 * Redis before they can be answered, and the run and environment a path
 * names.
 *
 * A client may hang up while its request waits; http_pending notices (it
 * watches the connection's close, connection.h) so that a late reply is
 * dropped instead of touching a request libevent has already freed.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <event2/http.h>
#include <jansson.h>

struct agent;
struct http_pending;

/* body is stolen. */
void http_reply_json(struct evhttp_request *req, int code, json_t *body);
/* json: len bytes of JSON text, sent as they are (a newline follows). */
void http_reply_text(struct evhttp_request *req, int code, const char *json, size_t len);
/* {"error": {"code": code, "message": message}} */
void http_reply_error(struct evhttp_request *req, int status, const char *code,
		      const char *message);

/* A request target or header (name or value) holding a control character
 * other than a tab, as every NUL byte has become (connection.h), gets a 400
 * naming where it stands: 1 when so answered, else 0. */
int http_refuse_controls(struct evhttp_request *req);

/* A request whose length is ambiguous, Content-Length given more than once
 * (RFC 9112 §6.3: what a proxy in front may read differently, request
 * smuggling), gets a 400 and its connection is closed: 1 when so answered,
 * else 0. libevent itself refuses Content-Length with Transfer-Encoding. */
int http_refuse_ambiguous_length(struct evhttp_request *req);

struct http_pending *http_pending_new(struct agent *a, struct evhttp_request *req);
/* The request, or NULL when the client is gone. */
struct evhttp_request *http_pending_request(const struct http_pending *p);
/* Replies (when the client is still there) and frees p. body is stolen. */
void http_pending_reply(struct http_pending *p, int code, json_t *body);
void http_pending_reply_text(struct http_pending *p, int code, const char *json, size_t len);
void http_pending_error(struct http_pending *p, int status, const char *code, const char *message);

/* A path segment naming a run, stage, environment or pipeline: 1 to
 * HTTP_SEGMENT_MAX - 1 letters, digits, '_', '-', '.' and '@' (the stage of
 * an environment's deployment, "deploy@staging"), what config and intake
 * allow. */
#define HTTP_SEGMENT_MAX 128
int http_segment_ok(const char *s, size_t len);
/* The segment at *p, up to the next '/' or the end, into out (shorter than
 * outlen); *p moves past it. -1 when it is no such segment. */
int http_take_segment(const char **p, char *out, size_t outlen);

/* path "/api/v1/runs/{run}/environments/{env}..." (run and env segments as
 * above, shorter than their buffers): 0 with them copied out and *rest at
 * what follows env ("/approve"), or -1 when path is not of that form. */
int http_run_env_path(const char *path, char *run, size_t runlen, char *env, size_t envlen,
		      const char **rest);

#endif
