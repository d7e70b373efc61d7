/* metric: one measurement of an analysis, taken from its provider: a
 * Prometheus instant query or a number picked out of any HTTP endpoint's
 * JSON answer by a path.
 *
 * A measurement runs on libcurl's multi interface driven by the caller's
 * libevent loop and reports exactly once, from the loop, never from within
 * metric_start. "No data" (an empty vector, nothing or null at the path) is
 * reported apart from errors, so an analysis can apply its noData rule.
 */
#ifndef SLUICE_METRIC_H
#define SLUICE_METRIC_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>

#define METRIC_DEFAULT_TIMEOUT_MS 10000
#define METRIC_MAX_BODY		  (1024 * 1024)
#define METRIC_MAX_VALUES	  4096

struct metric_sample {
	int failed;	      /* the measurement could not be taken: message says why */
	const double *values; /* n == 0 without failed: no data, message says what was empty */
	size_t n;
	char message[512];
};

/* The sample is the callee's only during the call; the measurement is freed
 * right after it returns. */
typedef void (*metric_done_cb)(const struct metric_sample *s, void *arg);

struct metric;

/* provider is the normalized provider of an analysis (stages/analysis.h):
 *   {"type": "prometheus", "address": "http://prom:9090", "query": "...",
 *    "headers"?: {"Name": "value"}, "timeout_ms"?: N}
 *   {"type": "web", "url": "https://...", "method": "GET"|"POST", "body"?: "...",
 *    "headers"?: {...}, "json_path": "$.data.ratio", "timeout_ms"?: N}
 * NULL with err when the request cannot be made (not http(s), bad header). */
struct metric *metric_start(struct event_base *base, const json_t *provider, metric_done_cb cb,
			    void *arg, char *err, size_t errlen);
/* Stops a measurement whose callback has not run; it never will. */
void metric_cancel(struct metric *m);

/* Checks a JSON path: an optional "$", then keys (".key", or "key" first)
 * and indexes ("[0]", also ["key"] for keys with dots or braces); no braces
 * around it. -1 with err naming the 1-based column otherwise. */
int metric_path_check(const char *path, char *err, size_t errlen);

/* The numbers at path in root, into values (at most max): a number, a
 * string holding one in decimal ("0.25", "1e-3") or "NaN", "+Inf", "-Inf",
 * or an array of them. 0 with *n == 0
 * when nothing or null or an empty array is there (no data, message says
 * which key was missing); -1 with message when the value is not numeric. */
int metric_path_values(const json_t *root, const char *path, double *values, size_t max, size_t *n,
		       char *message, size_t msglen);

#endif
