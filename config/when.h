/* when: which stages a run leaves out, from the stage's `when:` to the
 * status each stage of a new run starts in.
 *
 *   when: {events: [push, manual], branches: ["main"], tags: ["v*"]}
 *
 * A stage whose `when` does not match the run's event and ref starts
 * `skipped` with a reason, and counts as satisfied for the stages that need
 * it (as a succeeded one would), so leaving out a step never fails a run.
 */
#ifndef SLUICE_CONFIG_WHEN_H
#define SLUICE_CONFIG_WHEN_H

#include <jansson.h>
#include <stddef.h>

#include "config/check.h"
#include "config/doc.h"

/* Checks the stage's `when:` (when given) and stores it in stage_def as
 * {"events"?: [...], "branches"?: [globs], "tags"?: [globs]}. events are
 * those a run can have: push, pull_request and "manual" (a run started
 * through the API). */
int when_load(const struct config_check *ck, const struct config_doc_node *stage,
	      json_t *stage_def);

/* 1 for a GitHub event the agent answers without starting a run (create,
 * delete, release, workflow_dispatch, ping): a pipeline naming one would
 * wait for it in vain. */
int when_event_inert(const char *e);

/* 1 when the stage's when (NULL: none) lets a run of event on branch or tag
 * (at most one of them non-NULL) run it; 0 with why in reason otherwise.
 * With branches or tags listed, a branch run needs a matching branch glob,
 * a tag run a matching tag glob; with neither listed any ref runs it. */
int when_match(const json_t *when, const char *event, const char *branch, const char *tag,
	       char *reason, size_t reasonlen);

/* The status each stage of def starts in for a new run, as
 * {"<stage>": {"status": "queued"|"pending"|"skipped", "reason"?: "..."}}:
 * skipped when its when does not match; queued when every stage it needs is
 * skipped that way (a stage with no needs included); pending otherwise.
 * A deployment stage (one with "env", started only by promotion) is always
 * pending. *queued counts the queued stages. NULL when out of memory. */
json_t *when_plan(const json_t *def, const char *event, const char *branch, const char *tag,
		  size_t *queued);

#endif
