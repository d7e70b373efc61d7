/* http: an http: stage, one HTTP request (and its retries) on the libcurl
 * multi interface driven by the libevent loop; nothing here blocks.
 *
 * TLS verification is always on; the stage may name a CA file to trust.
 * Connection errors, attempt timeouts, 5xx and 429 are retried with
 * exponential back-off (Retry-After seconds honoured, capped at a minute);
 * any other unexpected status fails at once. The exit callback runs exactly
 * once, from the loop, never from within http_start or http_cancel.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* What of the response is logged: its status and this much of its body. */
#define HTTP_BODY_LOGGED 4096

enum http_outcome { HTTP_SUCCEEDED, HTTP_FAILED, HTTP_TIMED_OUT, HTTP_CANCELLED };

struct http_result {
	enum http_outcome outcome;
	long status; /* the last response's status; 0 when none came */
	int attempts;
	long long duration_ms;
	char error[512]; /* why, unless succeeded: "HTTP 404 from https://host/path" */
};

enum http_line_kind { HTTP_LINE_SYSTEM, HTTP_LINE_BODY };

typedef void (*http_line_cb)(enum http_line_kind k, const char *line, size_t len, void *arg);
/* The request object is freed right after this returns. */
typedef void (*http_exit_cb)(const struct http_result *r, void *arg);

struct http;

/* def: the stage's normalized "http" object (config.h); vars: the values
 * of ${NAME} in its url, headers and body. timeout_ms bounds the whole stage,
 * retries included (0: none). NULL with err set when the request cannot be
 * built (an undefined variable, a line break in a header, not http(s)). */
struct http *http_start(struct event_base *base, const json_t *def, const json_t *vars,
			int64_t timeout_ms, http_line_cb on_line, http_exit_cb on_exit, void *arg,
			char *err, size_t errlen);
/* Stops the request; the outcome becomes HTTP_CANCELLED unless it was
 * already decided. */
void http_cancel(struct http *h);

#endif
