/* api: blocking HTTP requests against the agent's API, with JSON bodies.
 *
 * One client keeps one libcurl handle so that paging (logs) reuses the
 * connection. On failure the message in err is ready to print after
 * "sluicectl: ": the API's own error message when it sent one, otherwise
 * what went wrong on the way ("cannot reach URL: Connection refused").
 * Call curl_global_init before ctl_api_new.
 */
#ifndef SLUICE_CTL_API_H
#define SLUICE_CTL_API_H

#include <stddef.h>

#include <jansson.h>

#include "ctl/sse.h"

struct ctl_api;

/* base_url: "http://host:port", a trailing slash is ignored. NULL when out
 * of memory. */
struct ctl_api *ctl_api_new(const char *base_url);
void ctl_api_free(struct ctl_api *api);
/* Verifies an https agent against the CA certificates of file (PEM)
 * instead of the system's. */
void ctl_api_set_ca_file(struct ctl_api *api, const char *file);
/* Sends "Authorization: Bearer token" with every request from now on. */
int ctl_api_set_token(struct ctl_api *api, const char *token);
/* A malloc'd copy of s percent-encoded for a path segment or query value. */
char *ctl_api_escape(struct ctl_api *api, const char *s);
/* GETs base_url + path (path starts with '/', already escaped); on a 2xx
 * answer with a JSON body stores it in *body (caller decrefs). */
int ctl_api_get(struct ctl_api *api, const char *path, json_t **body, char *err, size_t errlen);
/* As ctl_api_get, with an empty POST. */
int ctl_api_post(struct ctl_api *api, const char *path, json_t **body, char *err, size_t errlen);
/* As ctl_api_post, with payload as the JSON body. */
int ctl_api_post_json(struct ctl_api *api, const char *path, const json_t *payload, json_t **body,
		      char *err, size_t errlen);

/* GETs base_url + path as an event stream (Accept: text/event-stream) and
 * hands each event to cb until cb returns 1 (the end). A connection that
 * drops is made again after a second, with Last-Event-ID, so nothing is
 * lost or repeated; after 30 failed attempts in a row it gives up. An
 * answer other than 200 fails with the API's message. */
int ctl_api_follow(struct ctl_api *api, const char *path, ctl_sse_cb cb, void *arg, char *err,
		   size_t errlen);

#endif
