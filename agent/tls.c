/* tls: OpenSSL server context and a bufferevent per accepted connection. */
#include "agent/tls.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "agent/agent.h"
#include "lib/log.h"

static void log_ssl_error(const char *msg, const char *file)
{
	char why[256] = "unknown error";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	log_error(msg, LOG_S("file", file), LOG_S("error", why));
}

static struct bufferevent *on_connection(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new(arg);
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	/* Clients that close without close_notify are common (curl does);
	 * the HTTP layer already knows where each message ends. */
	if (bev)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

int tls_start(struct agent *a)
{
	if (!a->settings.tls_cert)
		return 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		log_ssl_error("cannot create the TLS context", a->settings.tls_cert);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, a->settings.tls_cert) != 1) {
		log_ssl_error("cannot load the TLS certificate", a->settings.tls_cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, a->settings.tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		log_ssl_error("cannot load the TLS key, or it does not match the certificate",
			      a->settings.tls_key);
		goto fail;
	}
	a->tls = ctx;
	evhttp_set_bevcb(a->http, on_connection, ctx);
	log_info("TLS on", LOG_S("cert", a->settings.tls_cert));
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

void tls_stop(struct agent *a)
{
	if (a->tls) {
		SSL_CTX_free(a->tls);
		a->tls = NULL;
	}
}
