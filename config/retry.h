/* retry: a stage's retry policy and attempt budget, from the pipeline file
 * to the decision taken when an attempt ends.
 *
 *   retry: {max: 2, on_exit: [75], on: [failed, timeout, lost], backoff: 2s}
 *   max_attempts: 5        (per stage, or at the top of the file for all)
 *
 * retry_load checks these keys of one stage and stores the policy in the
 * stage's def, where the router and the scheduler read it back, so a run
 * follows the policy recorded when it was created.
 */
#ifndef SLUICE_CONFIG_RETRY_H
#define SLUICE_CONFIG_RETRY_H

#include <jansson.h>

#include "config/check.h"
#include "config/doc.h"

#define RETRY_DEFAULT_MAX_ATTEMPTS 3
#define RETRY_DEFAULT_BACKOFF_MS   1000
#define RETRY_MAX_BACKOFF_MS	   (5 * 60 * 1000)

/* Adds to stage_def "max_attempts" (when not the default) and "retry" (when
 * the stage has a policy): {"max": N, "on_exit": [codes], "on": ["failed"|"timeout"|"lost"],
 * "backoff_ms": ms}. A policy that lists neither on_exit nor on retries every
 * failure: on = [failed, timeout]. A stage whose worker dies is retried up to
 * max_attempts (default 3) in any case; listing "lost" raises that to
 * max + 1 when it is more. */
int retry_load(const struct config_check *ck, const struct config_doc_node *stage,
	       json_t *stage_def);

enum retry_verdict {
	RETRY_NONE,	 /* no policy covers this outcome: route it */
	RETRY_AGAIN,	 /* run attempt + 1 after retry_backoff_ms */
	RETRY_EXHAUSTED, /* covered, but no attempt is left: fail, dead-letter the job */
};

/* status is the attempt's outcome ("failed", "timed_out", ...); exit_code is
 * -1 when the attempt has none. */
enum retry_verdict retry_decide(const json_t *stage_def, const char *status, int exit_code,
				int attempt);
/* The wait before the attempt after `attempt`: backoff doubled per attempt
 * already made, at most RETRY_MAX_BACKOFF_MS. */
long long retry_backoff_ms(const json_t *stage_def, int attempt);
/* How many attempts a stage gets when its workers die. */
int retry_max_attempts(const json_t *stage_def);

#endif
