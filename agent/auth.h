/* auth: who may call the agent's HTTP API, and the record of what callers
 * changed.
 *
 * With api.tokens_file set, every /api/ request needs "Authorization: Bearer
 * TOKEN" of a role high enough for it (GETs need none with api.public_reads);
 * without it the API is open, as on a loopback-only development agent. The
 * webhook (its own HMAC), /healthz, /metrics and the dashboard's assets are
 * never behind a token. Tokens are never logged: only their names are.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <event2/http.h>

#include "lib/tokens.h"

struct agent;

/* Loads api.tokens_file (when set) into a->tokens; warns when the API is
 * open on an address other than loopback. -1 with the error logged. */
int auth_start(struct agent *a);
/* The tokens of the file at path, or NULL with the reason in err. */
struct tokens *auth_read_tokens(const char *path, char *err, size_t errlen);
/* Frees tokens from auth_read_tokens; NULL is none. */
void auth_tokens_free(struct tokens *t);
/* SIGHUP, after the settings were swapped: t (from auth_read_tokens, now
 * owned here) replaces the tokens in use; NULL (api.tokens_file gone) opens
 * the API. */
void auth_reload(struct agent *a, struct tokens *t);
void auth_stop(struct agent *a);

/* 0 when req may be served with role need (TOKENS_NONE: open to all);
 * *caller is then the token's name, or NULL when no token was needed or the
 * API is open. -1 when refused: req has been answered 401 (no or unknown
 * token) or 403 (role too low). */
int auth_request(struct agent *a, struct evhttp_request *req, enum tokens_role need,
		 const char **caller);

/* Publishes a dev.sluice.api.call event (caller, method, path, answer's
 * status) once req's answer has been sent. path is the decoded path. */
void auth_audit(struct agent *a, struct evhttp_request *req, const char *caller, const char *path);
/* Whether req is a browser's, sent by a page of another site (its
 * Sec-Fetch-Site, or else its Origin against Host and agent.public_url):
 * such a page must not change anything, tokens or not, since an open API
 * would otherwise do what any page a user visits asks. */
int auth_cross_site(const struct agent *a, struct evhttp_request *req);

#endif
