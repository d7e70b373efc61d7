/* github_api: one request to GitHub's REST API on the event loop.
 *
 * A POST of a JSON body with the headers GitHub asks of clients (Bearer
 * token, Accept: application/vnd.github+json, X-GitHub-Api-Version,
 * User-Agent). The reply callback runs exactly once, from the loop, with
 * the status and what the response says about when to try again
 * (Retry-After, x-ratelimit-remaining / x-ratelimit-reset). The token is
 * copied into the request's headers only; nothing here logs it.
 */
#ifndef SLUICE_GITHUB_API_H
#define SLUICE_GITHUB_API_H

#include "lib/curlev.h"

#define GITHUB_API_VERSION "2022-11-28"

struct github_api_reply {
	long status;		       /* 0 when no response came */
	char error[256];	       /* why no response came */
	long long retry_after_ms;      /* Retry-After, -1 when absent */
	long long ratelimit_remaining; /* -1 when absent */
	long long ratelimit_reset_s;   /* epoch seconds, -1 when absent */
	char body[256];		       /* the start of the response body, for messages */
};

/* The call is freed once this returns. */
typedef void (*github_api_cb)(const struct github_api_reply *r, void *arg);

struct github_api_call;

/* POSTs json to api_url + path (path starts with "/"). NULL when the
 * request cannot be made (out of memory); cb is then never called. */
struct github_api_call *github_api_post(struct curlev *m, const char *api_url, const char *path,
					const char *token, const char *json, int timeout_ms,
					github_api_cb cb, void *arg);
/* Abandons a request whose callback has not run yet: it never will. */
void github_api_cancel(struct github_api_call *c);

#endif
