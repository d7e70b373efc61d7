/* worker_metrics: what sluice-worker exposes on GET /metrics.
 *
 * Stage durations by kind and outcome, jobs running, lease renewal errors
 * and lost leases, and the job consumer's lag. A worker has no HTTP server
 * of its own: with worker.metrics_listen (or --metrics-listen) set, a small
 * one serves GET /metrics and GET /healthz on that address only. Every
 * function accepts a worker without metrics.
 */
#ifndef SLUICE_WORKER_METRICS_H
#define SLUICE_WORKER_METRICS_H

struct worker;

/* Sets w->metrics; listen ("IP:PORT") may be NULL: the series are kept but
 * not served. */
int worker_metrics_start(struct worker *w, const char *listen);
/* After Redis is freed: the callbacks it ends may still count. */
void worker_metrics_stop(struct worker *w);

/* A stage attempt whose outcome was recorded, seconds after it was claimed. */
void worker_metrics_stage_finished(struct worker *w, const char *kind, const char *status,
				   double seconds);
/* A renewal Redis did not answer (lost == 0), or that found the lease gone. */
void worker_metrics_lease_renewal_failed(struct worker *w, int lost);

#endif
