/* analysis: measures a release against its thresholds and says whether it
 * is Successful, Failed or Inconclusive, keeping every measurement's values,
 * the condition that judged it and its verdict beside the result.
 *
 * An analysis takes `count` measurements `interval` apart after
 * `initialDelay` (or runs until stopped, for a background analysis) from a
 * provider (stages/metric.h), on the caller's libevent loop; nothing blocks.
 * It ends as soon as a limit is passed. The done callback runs exactly once,
 * from the loop, never from within analysis_start or analysis_stop.
 */
#ifndef SLUICE_ANALYSIS_H
#define SLUICE_ANALYSIS_H

#include <event2/event.h>
#include <jansson.h>

#include "config/check.h"
#include "config/doc.h"
#include "stages/metric.h"

#define ANALYSIS_DEFAULT_ERROR_LIMIT 4
/* A measurement that could not be taken is taken again this long after it
 * began when the analysis has no interval (Argo Rollouts' 10 s). */
#define ANALYSIS_ERROR_RETRY_MS	  10000
#define ANALYSIS_MAX_KEPT	  1000 /* measurements kept; older ones are counted only */
#define ANALYSIS_MAX_SHOWN_VALUES 64   /* values kept per measurement */

/* In a pipeline file (keys as in Argo Rollouts' AnalysisTemplate metrics):
 *   analysis:
 *     interval: 30s            # between the starts of two measurements
 *     count: 5                 # absent: 1; required with interval, but in a
 *                              #   background analysis, which then runs until stopped
 *     initialDelay: 1m
 *     successCondition: result[0] < 0.01
 *     failureCondition: result[0] >= 0.05
 *     failureLimit: 0          # failed measurements tolerated
 *     inconclusiveLimit: 0     # inconclusive ones tolerated
 *     consecutiveErrorLimit: 4 # measurements that could not be taken, in a row
 *     noData: inconclusive     # fail | inconclusive | pass
 *     provider:
 *       prometheus: {address: http://prom:9090, query: "...", headers: {}, timeout: 10s}
 *       # or
 *       web: {url: https://..., method: GET, headers: {}, body: "...",
 *             jsonPath: $.data.ratio, timeout: 10s}
 * analysis_load checks one such mapping (n) and sets *out to its normalized
 * form, which analysis_start takes:
 *   {"count": N (0: until stopped), "interval_ms": N, "initial_delay_ms": N,
 *    "success_condition"?: "...", "failure_condition"?: "...",
 *    "failure_limit": N, "inconclusive_limit": N, "consecutive_error_limit": N,
 *    "no_data": "fail"|"inconclusive"|"pass",
 *    "provider": the normalized provider of stages/metric.h}
 * At least one condition is required. Errors are "file:line:col: key.path: message". */
int analysis_load(const struct config_check *ck, const struct config_doc_node *n, json_t **out);
/* A canary's background analysis: the same keys and startingStep (the
 * 0-based step from which it runs, at most max_step), as "starting_step". */
int analysis_load_background(const struct config_check *ck, const struct config_doc_node *n,
			     long long max_step, json_t **out);

/* A measurement is judged so: not taken (an error of the provider or of the
 * condition) is an Error; no data (no values, or only NaN, which Prometheus
 * answers for 0/0 when nothing was served) follows no_data; a failure
 * condition that holds is Failed; a success condition that holds is
 * Successful and one that does not is Failed, or Inconclusive when a failure
 * condition is given too; a failure condition alone that does not hold is
 * Successful.
 * The analysis is Failed once failed measurements exceed failure_limit or
 * errors in a row exceed consecutive_error_limit, Inconclusive once
 * inconclusive ones exceed inconclusive_limit, and otherwise Successful
 * after count measurements judged (errors are not counted: such a
 * measurement is taken again, interval or ANALYSIS_ERROR_RETRY_MS after it
 * began) or when stopped (Failed when every measurement taken was an error). */
enum analysis_verdict { ANALYSIS_SUCCESSFUL, ANALYSIS_FAILED, ANALYSIS_INCONCLUSIVE };

const char *analysis_verdict_name(enum analysis_verdict v);

/* json: {"verdict": "Successful"|"Failed"|"Inconclusive", "message": "...",
 *  "successful": N, "failed": N, "inconclusive": N, "errors": N,
 *  "consecutive_errors": N (errors in a row, to the last measurement),
 *  "started": ms since the epoch,
 *  "success_condition"?, "failure_condition"?, "failure_limit", "inconclusive_limit",
 *  "no_data", "dropped"?: N (measurements no longer kept),
 *  "measurements": [{"n": 1, "at": ms since the epoch, "ms": duration,
 *     "values": [0.012] (non-finite values as "NaN", "+Inf", "-Inf"),
 *     "values_total"?: N (when more than were kept), "verdict":
 *     "Successful"|"Failed"|"Inconclusive"|"Error", "condition"?: the one
 *     that judged it, "message": "result[0] < 0.01 holds for 0.004"}]} */
struct analysis_result {
	enum analysis_verdict verdict;
	const char *message;
	json_t *json; /* borrowed: json_incref to keep it */
};

typedef void (*analysis_done_cb)(const struct analysis_result *r, void *arg);

/* Where measurements come from: metric_start/metric_cancel, or a stand-in
 * in tests. start must not call done from within itself. */
struct analysis_provider {
	void *(*start)(struct event_base *base, const json_t *provider, metric_done_cb done,
		       void *arg, char *err, size_t errlen);
	void (*cancel)(void *measurement);
};

struct analysis;

/* spec: the normalized form above; provider NULL means the real providers.
 * NULL with err when spec is not valid. The analysis is freed right after
 * done returns. */
struct analysis *analysis_start(struct event_base *base, const json_t *spec,
				const struct analysis_provider *provider, analysis_done_cb done,
				void *arg, char *err, size_t errlen);
/* Carries on an analysis of spec that was stopped while it measured (its
 * worker died): from is its progress as last saved (analysis_progress).
 * Its counts and measurements are taken up, so that its limits and its
 * count hold across both starts, and its next measurement is taken
 * interval after the last one began (at once if that is past; initial_delay
 * after it began when it had taken none). A progress that passed a limit or
 * took its count is decided again, from the loop. from NULL: as
 * analysis_start. */
struct analysis *analysis_resume(struct event_base *base, const json_t *spec, const json_t *from,
				 const struct analysis_provider *provider, analysis_done_cb done,
				 void *arg, char *err, size_t errlen);
/* measured(arg), arg the one of done, after each measurement is recorded
 * in its progress and before the analysis goes on with it (it may decide
 * then): the progress to save, so that a next start carries on from it. */
void analysis_on_measured(struct analysis *a, void (*measured)(void *arg));
/* Ends it now with the verdict of the measurements taken so far (a
 * measurement in flight is dropped); done follows from the loop. */
void analysis_stop(struct analysis *a);
/* Ends it without calling done; only before done has run. */
void analysis_free(struct analysis *a);
/* The result so far, in the form of analysis_result.json without "verdict"
 * until it is decided; borrowed. */
const json_t *analysis_progress(const struct analysis *a);

#endif
