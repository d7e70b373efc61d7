/* httpsend: see httpsend.h. */
#include "lib/httpsend.h"

#include <event2/keyvalq_struct.h>
#include <stdio.h>

void httpsend_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
	if (body) {
		struct evkeyvalq *h = evhttp_request_get_output_headers(req);
		char length[24];
		snprintf(length, sizeof(length), "%zu", evbuffer_get_length(body));
		evhttp_remove_header(h, "Content-Length");
		evhttp_add_header(h, "Content-Length", length);
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		body = NULL;
	evhttp_send_reply(req, code, reason, body);
}
