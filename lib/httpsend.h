/* httpsend: an evhttp answer sent with its length, and to a HEAD without
 * its body.
 *
 * libevent 2.1 writes the body given to evhttp_send_reply() after the
 * headers of an answer to HEAD too, where the client takes it for the start
 * of the next answer on the connection; and it leaves Content-Length out of
 * the answer to a HEAD and to a CONNECT (the start of a tunnel, whose end
 * the client then cannot find). Here the length of the body is always
 * given, and a HEAD gets GET's headers alone (RFC 9110, 9.3.2).
 */
#ifndef SLUICE_HTTPSEND_H
#define SLUICE_HTTPSEND_H

#include <event2/buffer.h>
#include <event2/http.h>

/* Sends code and reason with body (NULL: none, as for a 304). body stays
 * the caller's. */
void httpsend_reply(struct evhttp_request *req, int code, const char *reason,
		    struct evbuffer *body);

#endif
