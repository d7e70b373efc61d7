/* metrics: counters, gauges and histograms, rendered in the Prometheus text
 * exposition format (version 0.0.4) for GET /metrics.
 *
 * One registry per process, owned by its context. A family has fixed label
 * names; each distinct tuple of label values is a series, and a family holds
 * at most METRICS_MAX_SERIES of them: a new tuple beyond that is dropped and
 * counted in sluice_metrics_series_dropped_total, so no input can grow the
 * registry without bound. Values are escaped (and invalid UTF-8 replaced)
 * on output. Histograms have the fixed buckets given at registration. Event
 * loop only: not thread-safe.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>

#define METRICS_MAX_SERIES   1000
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Label names or values as one array literal: METRICS_LABELS("event", "code"). */
#define METRICS_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

struct metrics;
struct metric;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Registers a family; labels is a NULL-terminated list of names (or NULL for
 * none). NULL when a name is not a valid Prometheus name, is taken, or a
 * counter's name does not end in "_total". Histogram bounds must increase;
 * the +Inf bucket is implicit. */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
			       const char *const *labels);
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
			     const char *const *labels);
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
				 const char *const *labels, const double *bounds, size_t nbounds);

/* values: one per label name, in order (NULL for a family without labels).
 * A counter only grows: a negative delta is ignored. f may be NULL. */
void metrics_add(struct metric *f, const char *const *values, double delta);
void metrics_set(struct metric *f, const char *const *values, double value);
void metrics_observe(struct metric *f, const char *const *values, double value);
/* Forgets every series of f: for gauges rebuilt from a snapshot each time. */
void metrics_reset(struct metric *f);
/* The value of a counter or gauge series (a histogram's count); 0 when absent. */
double metrics_value(const struct metric *f, const char *const *values);

/* The whole registry in the text format; malloc'd, NUL-terminated, *len
 * set; NULL when out of memory. */
char *metrics_render(const struct metrics *m, size_t *len);

#endif
