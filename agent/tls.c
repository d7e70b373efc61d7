/* tls: the OpenSSL server context of the agent's listener (tls.h). */
#include "agent/tls.h"

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

/* OpenSSL's own answer to an encrypted key is to prompt on the terminal:
 * a daemon started from one would wait there, and under systemd the load
 * fails with an error that names no pass phrase. None is given; asked, when
 * set, records that one was wanted. */
static int no_pass_phrase(char *buf, int size, int rwflag, void *asked)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	if (asked)
		*(int *)asked = 1;
	return 0;
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
	int asked = 0;
	SSL_CTX_set_default_passwd_cb(ctx, no_pass_phrase);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
	if (SSL_CTX_use_certificate_chain_file(ctx, a->settings.tls_cert) != 1) {
		log_ssl_error("cannot load the TLS certificate", a->settings.tls_cert);
		goto fail;
	}
	int loaded = SSL_CTX_use_PrivateKey_file(ctx, a->settings.tls_key, SSL_FILETYPE_PEM) == 1;
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	if (!loaded && asked) {
		ERR_clear_error();
		log_error("the TLS key is encrypted: sluice needs it without a pass phrase",
			  LOG_S("file", a->settings.tls_key));
		goto fail;
	}
	if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
		log_ssl_error("cannot load the TLS key, or it does not match the certificate",
			      a->settings.tls_key);
		goto fail;
	}
	a->tls = ctx;
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
