/* strategy: the operator's side of deployment strategies: promote, abort,
 * retry and roll back a run's deployment to an environment, and what an
 * environment of GET /api/v1/runs/{id} shows of its rollout.
 *
 * Each command is one Lua script (rollout_command.lua, rollout_retry.lua,
 * rollback.lua) that checks the deployment's state before it changes
 * anything; the worker running the rollout carries the command out. The
 * view is built from Redis hashes the caller has read, so it costs no
 * request of its own.
 */
#ifndef SLUICE_STRATEGY_H
#define SLUICE_STRATEGY_H

#include <event2/http.h>
#include <jansson.h>

struct agent;

/* POST /api/v1/runs/{id}/environments/{env}/promote, /abort, /retry and
 * /rollback: returns 1 when path is one of them (the request is answered),
 * 0 otherwise. The body is optional: {"reason": "...", "by": "...",
 * "full": true (promote only: skip the remaining steps)}. caller, the name
 * of the API token used (NULL when the API is open), replaces "by". 202
 * with {"run", "env", "command", "status" (the promotion's), "stage":
 * {"name", "status", "attempt"}, "by", "reason"}; 400 for a malformed body,
 * 404 for an unknown run or environment, 409 {"error": {"code": "not_paused"
 * | "not_deploying" | "no_strategy" | "aborting" | "not_failed" | "locked" |
 * "superseded" | "not_current" | "no_previous" | "busy" | "run_active"}}
 * when the command does not apply now, 503 without Redis. */
int strategy_post(struct agent *a, struct evhttp_request *req, const char *path,
		  const char *caller);

/* The strategy of the deployment whose stage definition is sdef, as the
 * dashboard reads it: {"name", "step" (1-based), "steps" (how many),
 * "status" (the rollout's phase), "paused_until", "pause", "weights",
 * "analysis": [{"metric", "value" (the last measured), "threshold" (the
 * condition), "status" (passed | failed | inconclusive | running),
 * "verdict", "pass"}], "checklist": [{"item", "phase" (pre | post), "done",
 * "status" (passed | failed | pending), "message"}], "command" (one waiting
 * for the worker), "mode", "rollout" (the worker's whole state)}; values
 * not known yet are null. stage holds the stage hash's fields (name → string
 * value). NULL when the deployment has no strategy. */
json_t *strategy_view(const json_t *sdef, const json_t *stage);

/* The verbs that apply now to the promotion of run to an environment, in
 * this order: approve and reject (waiting for approval), promote (the
 * rollout is paused, not waiting its scale-down delay), abort (a rollout in
 * progress), retry (the deployment failed or was aborted and the
 * environment is not locked by another run), rollback (run is the
 * environment's current release and there is a previous one to go back
 * to, with a strategy, the run having finished). promotion, stage and env
 * hold the fields of the promotion's, the stage's and the environment's
 * (env:<pipeline>:<env>) hashes; run_open: the run is queued, running or
 * waiting. */
json_t *strategy_actions(const char *run, const json_t *sdef, const json_t *promotion,
			 const json_t *stage, const json_t *env, int run_open);

#endif
