/* regclient: the Registry HTTP API v2 as sluice-registry uses it, through
 * libcurl's easy interface (a one-shot job does one request at a time).
 *
 * Requests go to paths under the registry's base URL. Credentials are a
 * fixed bearer token, or a user and password sent as Basic and, when the
 * registry answers 401 with a Bearer challenge, exchanged at the challenge's
 * realm for a token (the Docker token flow); anonymous tokens work the same
 * way. A response is any HTTP status; -1 means no response at all.
 */
#ifndef SLUICE_REGCLIENT_H
#define SLUICE_REGCLIENT_H

#include <stddef.h>

struct regclient;

struct regclient_options {
	const char *base_url;	/* "https://registry.example:5000" */
	const char *token_file; /* first line: a bearer token */
	const char *user_file;	/* first line: USER:PASSWORD */
	const char *ca_file;	/* CA bundle for https, or NULL for the system's */
};

struct regclient_response {
	long status;
	char *body; /* NUL-terminated, len bytes (NULL when empty) */
	size_t len;
	char *content_type; /* media type without parameters, or NULL */
	char *digest;	    /* Docker-Content-Digest, or NULL */
	char *next;	    /* absolute URL of the Link rel="next" page, or NULL */
	char error[256];    /* the registry's first error, "CODE: message", or "" */
};

/* A client, or NULL with err (unreadable credential file, bad URL). */
struct regclient *regclient_new(const struct regclient_options *o, char *err, size_t errlen);
void regclient_free(struct regclient *c);

/* The base URL as messages show it (no credentials, no query). */
const char *regclient_base(const struct regclient *c);

/* method "GET", "HEAD" or "DELETE" on target: a path ("/v2/...") or an
 * absolute URL of the registry's own origin (a Link's next page). accept is
 * the Accept header's value or NULL; max bounds the body. 0 with *r filled,
 * or -1 with err when no response came (unreachable, TLS, too large). */
int regclient_request(struct regclient *c, const char *method, const char *target,
		      const char *accept, size_t max, struct regclient_response *r, char *err,
		      size_t errlen);
void regclient_response_clear(struct regclient_response *r);

/* err for a response that is not what was asked for: what ("list the tags
 * of mint/app") and why, in words for an operator (401 says how to give
 * credentials, 405 on a DELETE that deletes are disabled). */
void regclient_status_error(const struct regclient *c, const struct regclient_response *r,
			    const char *method, const char *what, char *err, size_t errlen);

/* s escaped for a query value; malloc'd, or NULL. */
char *regclient_escape(struct regclient *c, const char *s);

#endif
