/* http: JSON replies for the agent's endpoints, and requests that wait for
 * Redis before they can be answered.
 *
 * A client may hang up while its request waits; http_pending notices (via
 * the connection's close callback) so that a late reply is dropped instead
 * of touching a request libevent has already freed.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <event2/http.h>
#include <jansson.h>

struct http_pending;

/* body is stolen. */
void http_reply_json(struct evhttp_request *req, int code, json_t *body);
/* {"error": {"code": code, "message": message}} */
void http_reply_error(struct evhttp_request *req, int status, const char *code,
		      const char *message);

struct http_pending *http_pending_new(struct evhttp_request *req);
/* The request, or NULL when the client is gone. */
struct evhttp_request *http_pending_request(const struct http_pending *p);
/* Replies (when the client is still there) and frees p. body is stolen. */
void http_pending_reply(struct http_pending *p, int code, json_t *body);
void http_pending_error(struct http_pending *p, int status, const char *code, const char *message);

#endif
