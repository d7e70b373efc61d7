/* tlsctx: an OpenSSL server context made from a PEM certificate chain and
 * its private key, as the agent's listener loads agent.tls_cert and
 * agent.tls_key (and sluicectl validate checks them).
 */
#ifndef SLUICE_TLSCTX_H
#define SLUICE_TLSCTX_H

#include <stddef.h>
#include <openssl/ssl.h>

/* A context that speaks TLS 1.2 or later with cert and key. NULL with err
 * saying why and *bad the file at fault (cert or key). */
SSL_CTX *tlsctx_server(const char *cert, const char *key, const char **bad, char *err,
		       size_t errlen);

#endif
