/* connection: the bufferevent of every connection the agent accepts, plain
 * or TLS (tls.h), with NUL bytes made visible to the handlers.
 *
 * libevent 2.1 copies a header's value as a C string, so a NUL byte inside
 * one would end the value unseen ("X-GitHub-Event: pu\0sh" read as "pu").
 * No request the agent serves may hold a NUL: header fields and the request
 * target may not (RFC 9110 §5.5, RFC 9112 §3), and bodies are JSON, which
 * allows no control character unescaped. So each NUL byte is replaced, as
 * it arrives and before libevent parses anything, by CONNECTION_NUL,
 * another control character, which the handlers refuse with a 400
 * wherever it stands (http_refuse_controls; intake for bodies).
 */
#ifndef SLUICE_CONNECTION_H
#define SLUICE_CONNECTION_H

#define CONNECTION_NUL '\x01'

struct agent;

/* Hooks the connections' bufferevents into a->http (already created, with
 * a->tls set when TLS is on). */
void connection_start(struct agent *a);

#endif
