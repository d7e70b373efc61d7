/* connection: the bufferevent of every connection the agent accepts, plain
 * or TLS (tls.h), with NUL bytes made visible to the handlers, and the
 * count of the connections open, bounded by agent.max_connections. On the
 * TLS port, a plain HTTP request is answered 400 with a line that says to
 * use https://, not dropped by a failed handshake.
 *
 * libevent 2.1 copies a header's value as a C string, so a NUL byte inside
 * one would end the value unseen ("X-GitHub-Event: pu\0sh" read as "pu").
 * No request the agent serves may hold a NUL: header fields and the request
 * target may not (RFC 9110 §5.5, RFC 9112 §3), and bodies are JSON, which
 * allows no control character unescaped. So each NUL byte is replaced, as
 * it arrives and before libevent parses anything, by CONNECTION_NUL,
 * another control character, which the handlers refuse with a 400
 * wherever it stands (http_refuse_controls; intake for bodies).
 *
 * Each connection may hold a request of up to agent.max_body until it is
 * answered, so the limit on open connections is what bounds the memory
 * clients can make the agent use. At the limit the listener is held
 * (listener_backoff_hold): new connections wait in the kernel's backlog
 * until one closes, as nginx's worker_connections and HAProxy's maxconn do,
 * and the connection idle the longest (no request under way, none for a
 * second) is closed to make room, so that clients that hold connections
 * and send nothing, or a byte now and then, cannot keep others out.
 *
 * Those connections' requests together could still hold max_connections
 * times max_body. So the bytes read and not yet a request whole are
 * counted on every connection, and when their sum passes
 * agent.max_request_memory the connection holding the most is closed, as
 * Envoy's overload manager resets the streams that use the most memory.
 * libevent 2.1 has no hook for a connection's end but its close callback,
 * which therefore belongs to this module: others watch a connection's
 * close through connection_watch.
 */
#ifndef SLUICE_CONNECTION_H
#define SLUICE_CONNECTION_H

#include <event2/http.h>
#include <stddef.h>

#define CONNECTION_NUL '\x01'

struct agent;

/* Hooks the connections' bufferevents into a->http (already created, with
 * a->tls set when TLS is on). -1 when out of memory. */
int connection_start(struct agent *a);
/* After a->http is freed. */
void connection_stop(struct agent *a);

/* A request arrived whole on its connection (before its handler runs). */
void connection_request(struct agent *a, struct evhttp_request *req);

/* Bytes of the requests being received, on all connections: read, and not
 * yet a request whole (at most agent.max_request_memory, for a moment). */
size_t connection_receiving(const struct agent *a);

/* Calls cb(conn, arg) when conn closes, in place of any earlier watcher;
 * cb NULL stops watching. A connection watched is busy: it is never closed
 * to make room (connection.c). */
void connection_watch(struct agent *a, struct evhttp_connection *conn,
		      void (*cb)(struct evhttp_connection *, void *), void *arg);

#endif
