/* rollout: carries out an environment's deployment strategy (RollingUpdate,
 * BlueGreen, Canary) as a plan of steps on the caller's libevent loop:
 * checks and hooks (stages/checklist.h), provider actions
 * (stages/provider.h), analyses (stages/analysis.h) and pauses.
 *
 * The plan and the outcome of every step live in one JSON state that the
 * caller persists on each change (the save callback), so that a rollout
 * stopped anywhere resumes at its current step on another worker: a step is
 * carried out again from its start, and every step is idempotent (a weight
 * is set, not added), but for an analysis, which carries on from the
 * progress saved after each measurement (analysis_resume). A pause
 * holds no worker: unless a background analysis is measuring through it,
 * the rollout asks its caller to park it (the park callback) and ends; the
 * caller starts it again with the saved state when the pause is over or an
 * operator command arrives.
 *
 * When a step fails (an analysis verdict Failed, an action or check that
 * fails, a verify past its deadline) or an operator aborts, the abort
 * procedure runs: traffic back to stable (weight 0, or the old colour),
 * the provider's abort, the new version scaled down, and the rollback
 * commands of the pre hooks that ran, newest first. Past the point of no
 * return (the new version is the stable one) nothing is aborted: the final
 * steps carry on, and the first that fails fails the deployment.
 */
#ifndef SLUICE_ROLLOUT_H
#define SLUICE_ROLLOUT_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

#include "config/check.h"
#include "config/doc.h"

/* Reads an environment's image, provider, traffic, strategy, hooks and
 * checks keys (see docs/configuration.md) into *out, the normalized
 * "rollout" of its deployment stage; *out stays NULL when the environment
 * has no strategy. The files it names are relative to dir (the pipeline
 * file's) and checked readable. Errors are "file:line:col: key.path:
 * message". */
int rollout_load(const struct config_check *ck, const struct config_doc_node *env, const char *dir,
		 json_t **out);
/* For each string of an environment's rollout in which ${NAME} expands, as
 * written (after rollout_load accepted it): f(node, own, arg), own the
 * names that sluice sets for it beside the run's variables (NULL
 * terminated). -1 as soon as f returns -1; 0. */
int rollout_load_templates(const struct config_doc_node *env,
			   int (*f)(const struct config_doc_node *n, const char *const *own,
				    void *arg),
			   void *arg);

struct rollout_callbacks {
	/* A line for the deployment's log: output 1 for one a check's or a
	 * hook's command printed, 0 for the rollout's own. */
	void (*line)(int output, const char *line, size_t len, void *arg);
	/* The state changed; event (may be NULL) is {"type": "deploy.step" |
	 * "deploy.analysis" | ..., "data": {...}} for sluice.events. */
	void (*save)(const json_t *state, const json_t *event, void *arg);
	/* At a pause: persist state and park the stage until until_ms (0: until
	 * an operator's promote). The rollout is finished with: free it. */
	void (*park)(const json_t *state, int64_t until_ms, void *arg);
	/* Ended: status succeeded, failed, aborted, rolled_back or cancelled.
	 * The rollout is finished with: free it. */
	void (*done)(const char *status, const char *message, const json_t *state, void *arg);
};

struct rollout_params {
	const json_t *spec;   /* the stage's "rollout" */
	const json_t *state;  /* as saved, or NULL to begin */
	const json_t *vars;   /* the run's variables (and secrets) for commands and templates */
	const char *cwd;      /* where commands run */
	const char *image;    /* the release, expanded */
	const char *active;   /* BlueGreen: the colour live now, or NULL */
	const char *rollback; /* NULL, or the image to roll back to */
};

/* NULL with err when the spec cannot be carried out (a provider that
 * cannot be created). Callbacks run from the loop, never from within
 * rollout_start. */
struct rollout *rollout_start(struct event_base *base, const struct rollout_params *p,
			      const struct rollout_callbacks *cb, void *arg, char *err,
			      size_t errlen);
/* An operator's command: "promote" (end the pause), "promote_full" (skip
 * the remaining pauses, analyses and canary weights: a canary gets all the
 * traffic once it is applied and verified), "abort"; by names who sent it.
 * 0, or -1 when it does not apply now (a promote with no pause, an abort
 * past the point of no return); the reason is in the log. */
int rollout_command(struct rollout *r, const char *command, const char *by);
/* The state as it is now; borrowed. */
const json_t *rollout_state(const struct rollout *r);
/* The run was cancelled: abort, then done with "cancelled"; past the point
 * of no return, the final steps carry on and done says how they ended. */
void rollout_cancel(struct rollout *r);
/* Frees at once: what is in flight is stopped (no callback follows). The
 * saved state lets another worker carry on. */
void rollout_free(struct rollout *r);
/* No callback follows from now on, whatever is still in flight: for a
 * caller done with the rollout that cannot free it yet (from within one of
 * its callbacks) and may be gone before it does. */
void rollout_mute(struct rollout *r);

#endif
