/* tls: the agent's listener over HTTPS, when agent.tls_cert and
 * agent.tls_key are set.
 *
 * Every connection then gets an OpenSSL bufferevent (connection.h), so the
 * webhook, the API and the dashboard all speak TLS on the one port. Behind a reverse proxy
 * that terminates TLS, leave both unset.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

struct agent;

/* Loads the certificate chain and key into a->tls. 0 when TLS is off or
 * ready, -1 with the error logged. */
int tls_start(struct agent *a);
void tls_stop(struct agent *a);

#endif
