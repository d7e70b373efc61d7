/* curlev: a libcurl multi handle driven by a libevent loop.
 *
 * curl's sockets and its timer become events on the loop, so transfers
 * progress without ever blocking it. Each easy handle added carries a
 * callback that runs once, from the loop, when its transfer ends; the
 * handle is already out of the multi then and may be added again (a retry).
 * Callbacks may add and remove handles, but must not free the curlev.
 */
#ifndef SLUICE_CURLEV_H
#define SLUICE_CURLEV_H

#include <curl/curl.h>
#include <event2/event.h>

struct curlev;

/* What a caller reports when curl_easy_init or curlev_new gives NULL: out of
 * memory, or, in the worker, libcurl not loadable (workers/curlload.h). */
#define CURLEV_NO_CLIENT "cannot create an HTTP client (out of memory, or libcurl not loaded)"

typedef void (*curlev_done_cb)(CURL *easy, CURLcode rc, void *arg);

struct curlev *curlev_new(struct event_base *base);
/* Starts the transfer of easy; 0, or -1 when curl refuses it (cb not called). */
int curlev_add(struct curlev *m, CURL *easy, curlev_done_cb cb, void *arg);
/* Stops the transfer of easy, if any, without calling its callback. */
void curlev_remove(struct curlev *m, CURL *easy);
/* Removes every handle still added (no callbacks), then frees. NULL is fine. */
void curlev_free(struct curlev *m);

/* scheme://host[:port]/path of an http or https url: what messages may show,
 * without the query (which may carry credentials) or user information; a
 * path too long for out ends with "/..." in place of its last segments.
 * 0, or -1 with err "not a valid URL" / "only http and https are allowed". */
int curlev_show_url(const char *url, char *out, size_t outlen, char *err, size_t errlen);

#endif
