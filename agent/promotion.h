/* promotion: the agent's side of promoting runs through environments.
 *
 * The state changes are Lua scripts (queue/scripts/lib/promotion.lua,
 * promote.lua, decide.lua); this module gives them what only the agent
 * knows: which environments' deny windows are closed now and when they open
 * (config/window.c with the agent's clock). It also serves approvals
 * (POST /api/v1/runs/{id}/environments/{env}/approve and /reject) and the
 * environments of a run for GET /api/v1/runs/{id}.
 */
#ifndef SLUICE_PROMOTION_H
#define SLUICE_PROMOTION_H

#include <event2/http.h>
#include <jansson.h>

struct agent;

/* {"<env>": ms} as compact JSON text (malloc'd) for every environment of
 * def whose deny windows are closed at now_ms: the instant they open. "{}"
 * for a definition without environments; NULL when out of memory. */
char *promotion_openings(const json_t *def, long long now_ms);
/* The same of a definition as a run stores it (its "def", JSON text):
 * NULL when def_text is NULL or does not decode, as for no environment. */
char *promotion_openings_text(const char *def_text, long long now_ms);

/* POST /api/v1/runs/{id}/environments/{env}/approve and /reject: returns 1
 * when path is one of them (the request is answered: 200 with the
 * promotion after the decision, 400 for a malformed body, 404 for an
 * unknown run or environment, 409 when the promotion does not wait for
 * approval, 503 without Redis), 0 otherwise. The body is
 * {"reason": "..." (required), "by": "..." (default "anonymous")}; caller,
 * the name of the API token used (NULL when the API is open), replaces
 * "by". */
int promotion_post(struct agent *a, struct evhttp_request *req, const char *path,
		   const char *caller);

/* done receives {"<env>": {status, offered, started, finished, approval,
 * window, actions, strategy (with one; see strategy.h)}} in chain order
 * (stolen), or NULL when Redis failed; it is called
 * exactly once, possibly before promotion_view returns. The hashes are read
 * with t, the caller's (redis_hashes, redis.h), so that they and the rest of
 * the caller's view are of one moment. *run_open, read when the replies are
 * in: whether the run may still be offered (an environment never offered to
 * a finished run shows as "skipped", else "pending"). */
struct redis_hashes;
typedef void (*promotion_view_cb)(json_t *environments, void *arg);
void promotion_view(struct agent *a, struct redis_hashes *t, const char *run, const json_t *def,
		    const int *run_open, promotion_view_cb done, void *arg);

#endif
