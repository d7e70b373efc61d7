/* tlsctx: a server context of a certificate chain and its key (tlsctx.h). */
#include "lib/tlsctx.h"

#include <openssl/err.h>
#include <stdio.h>

/* "what: OpenSSL's reason", clearing OpenSSL's error queue. */
static void ssl_error(const char *what, char *err, size_t errlen)
{
	char why[256] = "unknown error";
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, why);
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

SSL_CTX *tlsctx_server(const char *cert, const char *key, const char **bad, char *err,
		       size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int asked = 0, loaded;

	*bad = cert;
	if (!ctx) {
		ssl_error("cannot create the TLS context", err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_default_passwd_cb(ctx, no_pass_phrase);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_error("cannot load the TLS certificate", err, errlen);
		goto fail;
	}
	*bad = key;
	loaded = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	if (!loaded && asked) {
		ERR_clear_error();
		snprintf(err, errlen,
			 "the TLS key is encrypted: sluice needs it without a pass phrase");
		goto fail;
	}
	if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
		ssl_error("cannot load the TLS key, or it does not match the certificate", err,
			  errlen);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
