/* statuses: commit statuses on GitHub for every stage and promotion.
 *
 * With github.token_file set, the agent consumes sluice.events in a group of
 * its own (<prefix>statuses) and posts each stage and promotion transition
 * as POST /repos/{owner}/{repo}/statuses/{sha}, context
 * sluice/<pipeline>/<stage> or sluice/<pipeline>/deploy/<env>. One run's
 * statuses are posted one at a time, in event order. Failures are retried
 * with back-off (Retry-After, rate-limit resets and secondary rate limits
 * honoured); a status not posted within github.give_up_after is dropped
 * with a warning, so GitHub never holds up a run. An event's offset is
 * stored once its status is posted or given up: a restarted agent posts
 * again rather than loses.
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
/* The token github.token_file at path holds (malloc'd), or NULL with the
 * reason in why. */
char *statuses_read_token(const char *path, char *why, size_t whylen);
/* Wipes and frees a token statuses_read_token gave; NULL is no token. */
void statuses_token_free(char *token);
/* What posting needs that can fail, made before a reload applies anything
 * so that it is refused whole: the consumer of <prefix>events in the group
 * <prefix>statuses, not taking events until statuses_reload installs it.
 * NULL with err when the consumer cannot be made (out of descriptors or
 * threads, say). */
struct statuses *statuses_new(struct agent *a, char *err, size_t errlen);
/* SIGHUP, after the settings were swapped: posts with token (from
 * statuses_read_token, now owned here) from now on, starting with fresh
 * (from statuses_new) if it was not posting; a NULL token
 * (github.token_file gone) stops posting. */
void statuses_reload(struct agent *a, char *token, struct statuses *fresh);
/* Abandons requests in flight (their events are consumed again later). */
void statuses_stop(struct agent *a);

#endif
