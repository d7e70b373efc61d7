/* tls: the OpenSSL server context of the agent's listener (tls.h). */
#include "agent/tls.h"

#include "agent/agent.h"
#include "lib/log.h"
#include "lib/tlsctx.h"

int tls_start(struct agent *a)
{
	const char *bad;
	char err[512];

	if (!a->settings.tls_cert)
		return 0;
	a->tls = tlsctx_server(a->settings.tls_cert, a->settings.tls_key, &bad, err, sizeof(err));
	if (!a->tls) {
		log_error("cannot start TLS", LOG_S("file", bad), LOG_S("error", err));
		return -1;
	}
	log_info("TLS on", LOG_S("cert", a->settings.tls_cert));
	return 0;
}

void tls_stop(struct agent *a)
{
	if (a->tls) {
		SSL_CTX_free(a->tls);
		a->tls = NULL;
	}
}
