/* statuses: commit statuses on GitHub for every stage and promotion.
 *
 * With github.token_file set, the agent consumes sluice.events in a group of
 * its own (<prefix>statuses) and posts each stage and promotion transition
 * as POST /repos/{owner}/{repo}/statuses/{sha}, context
 * sluice/<pipeline>/<stage> or sluice/<pipeline>/deploy/<env>. One run's
 * statuses are posted one at a time, in event order. Failures are retried
 * with back-off (Retry-After and rate-limit resets honoured); a status not
 * posted within github.give_up_after is dropped with a warning, so GitHub
 * never holds up a run. An event's offset is stored once its status is
 * posted or given up: a restarted agent posts again rather than loses.
 */
#ifndef SLUICE_STATUSES_H
#define SLUICE_STATUSES_H

#include <jansson.h>

#include "agent/agent.h"

/* GitHub's limit on a status description. */
#define STATUSES_DESCRIPTION_MAX 140

struct statuses_post {
	const char *state; /* pending, success, failure, error */
	char context[256];
	char description[STATUSES_DESCRIPTION_MAX + 1];
};

/* What the event (type without "dev.sluice.", its data) posts: 1 with out
 * filled, 0 when it posts nothing (run events, skipped stages, deploy@
 * stages, whose promotion events speak for them; events lacking pipeline
 * or stage/env). */
int statuses_describe(const char *type, const json_t *data, struct statuses_post *out);

/* Reads the token and starts consuming when github.token_file is set; 0
 * also when it is not. -1 when the token cannot be read. */
int statuses_start(struct agent *a);
/* SIGHUP, after the settings were swapped: reads the token again, starts
 * or stops posting as github.token_file appeared or went. -1 (the old
 * token kept) when the file cannot be read. */
int statuses_reload(struct agent *a);
/* Abandons requests in flight (their events are consumed again later). */
void statuses_stop(struct agent *a);

#endif
