/* jobs: the messages that ask a worker to run one stage attempt.
 *
 * A job names its run, stage, attempt and kind; everything else a worker
 * needs (commands, repository, sha, variables) it reads from the run in
 * Redis when it claims the job, so a job never carries stale settings.
 */
#ifndef SLUICE_JOBS_H
#define SLUICE_JOBS_H

#include <jansson.h>

#include "config/config.h"

/* {"topic": "<prefix>jobs.<kind>", "value": "<envelope>"}, or NULL. */
json_t *jobs_prepare(const struct settings *s, const char *run, const char *stage, const char *kind,
		     int attempt);

#endif
