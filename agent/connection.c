/* connection: bufferevents of accepted connections (connection.h). */
#include "agent/connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "agent/agent.h"

/* Runs as bytes are added to the connection's input, before its read
 * callback (libevent's HTTP parser) sees them. */
static void mark_nuls(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	(void)arg;
	if (info->n_added == 0)
		return;
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

static struct bufferevent *on_connection(struct event_base *base, void *arg)
{
	struct agent *a = arg;
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
	if (bev && !evbuffer_add_cb(bufferevent_get_input(bev), mark_nuls, NULL)) {
		bufferevent_free(bev);
		return NULL;
	}
	return bev;
}

void connection_start(struct agent *a)
{
	evhttp_set_bevcb(a->http, on_connection, a);
}
