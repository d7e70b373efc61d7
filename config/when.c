/* when: a stage's run conditions, from pipeline file to a new run's plan. */
#include "config/when.h"

#include <stdio.h>
#include <string.h>

#include "lib/glob.h"
#include "lib/utf8.h"

static const char *const when_keys[] = {"events", "branches", "tags", NULL};
static const char *const when_events[] = {"push", "pull_request", "manual", NULL};
static const char *const inert_events[] = {"create", "delete", "release", "workflow_dispatch",
					   "ping",   NULL};

static int in(const char *const *list, const char *e)
{
	for (const char *const *k = list; *k; k++)
		if (strcmp(e, *k) == 0)
			return 1;
	return 0;
}

int when_event_inert(const char *e)
{
	return in(inert_events, e);
}

/* A non-empty list of texts (or one text) into when_def[key]. */
static int load_list(const struct config_check *ck, const struct config_doc_node *when,
		     const char *key, json_t *when_def)
{
	const struct config_doc_node *n = config_doc_get(when, key);
	json_t *list = NULL;

	if (!n)
		return 0;
	int events = strcmp(key, "events") == 0;
	if ((events ? config_check_text_list(ck, n, 1, &list)
		    : config_check_glob_list(ck, n, &list)) < 0)
		return -1;
	if (json_object_set_new(when_def, key, list) < 0)
		return config_check_fail(ck, n, "out of memory");
	if (!json_array_size(list))
		return config_check_fail(ck, n, "must not be empty");
	if (!events)
		return 0;
	for (const struct config_doc_node *c = json_is_array(n->value) ? n->first : n; c;
	     c = json_is_array(n->value) ? c->next : NULL) {
		const char *e = c->text;

		if (when_event_inert(e))
			return config_check_fail(ck, c,
						 "no run has the event \"%s\": a run's event is "
						 "push, pull_request or manual",
						 e);
		if (!in(when_events, e))
			return config_check_fail(ck, c,
						 "unknown event \"%s\" (known: push, pull_request, "
						 "manual)",
						 e);
	}
	return 0;
}

int when_load(const struct config_check *ck, const struct config_doc_node *stage, json_t *stage_def)
{
	const struct config_doc_node *n = config_doc_get(stage, "when");
	json_t *when;

	if (!n)
		return 0;
	if (config_check_keys(ck, n, when_keys) < 0)
		return -1;
	if (!n->first)
		return config_check_fail(ck, n,
					 "must list at least one of events, branches and tags");
	when = json_object();
	if (!when || json_object_set_new(stage_def, "when", when) < 0)
		return config_check_fail(ck, n, "out of memory");
	if (load_list(ck, n, "events", when) < 0 || load_list(ck, n, "branches", when) < 0 ||
	    load_list(ck, n, "tags", when) < 0)
		return -1;
	return 0;
}

static int in_list(const json_t *list, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
	{
		const char *item = json_string_value(v);

		if (item && strcmp(item, s) == 0)
			return 1;
	}
	return 0;
}

int when_match(const json_t *when, const char *event, const char *branch, const char *tag,
	       char *reason, size_t reasonlen)
{
	const json_t *events = json_object_get(when, "events");
	const json_t *branches = json_object_get(when, "branches");
	const json_t *tags = json_object_get(when, "tags");

	if (!when)
		return 1;
	if (events && !in_list(events, event)) {
		snprintf(reason, reasonlen, "when: event %s is not in when.events", event);
		return 0;
	}
	if (!branches && !tags)
		return 1;
	if (branch) {
		if (branches && glob_list_match(branches, branch))
			return 1;
		if (branches)
			snprintf(reason, reasonlen,
				 "when: branch %s matches no glob of when.branches", branch);
		else
			snprintf(reason, reasonlen, "when: branch %s: when lists tags only",
				 branch);
		return 0;
	}
	if (tag) {
		if (tags && glob_list_match(tags, tag))
			return 1;
		if (tags)
			snprintf(reason, reasonlen, "when: tag %s matches no glob of when.tags",
				 tag);
		else
			snprintf(reason, reasonlen, "when: tag %s: when lists branches only", tag);
		return 0;
	}
	snprintf(reason, reasonlen, "when: the run's ref is neither a branch nor a tag");
	return 0;
}

static int all_needs_skipped(const json_t *stage, const json_t *plan)
{
	size_t i;
	json_t *need;

	json_array_foreach(json_object_get(stage, "needs"), i, need)
	{
		const json_t *p = json_object_get(plan, json_string_value(need));
		const char *status = json_string_value(json_object_get(p, "status"));

		if (!status || strcmp(status, "skipped") != 0)
			return 0;
	}
	return 1;
}

json_t *when_plan(const json_t *def, const char *event, const char *branch, const char *tag,
		  size_t *queued)
{
	json_t *plan = json_object();
	const char *name;
	json_t *stage;
	char why[512], reason[512];

	*queued = 0;
	if (!plan)
		return NULL;
	/* Skips first: whether a stage is queued depends on its needs' skips. */
	json_object_foreach((json_t *)json_object_get(def, "stages"), name, stage)
	{
		json_t *entry;

		if (!json_object_get(stage, "env") &&
		    !when_match(json_object_get(stage, "when"), event, branch, tag, why,
				sizeof(why))) {
			/* why is cut where its buffer ends, which may be inside a
			 * character of a long branch or tag; JSON takes UTF-8 only. */
			utf8_copy(reason, sizeof(reason), why, strlen(why));
			entry = json_pack("{s:s,s:s}", "status", "skipped", "reason", reason);
		} else {
			entry = json_pack("{s:s}", "status", "pending");
		}
		if (!entry || json_object_set_new(plan, name, entry) < 0)
			goto nomem;
	}
	json_object_foreach((json_t *)json_object_get(def, "stages"), name, stage)
	{
		json_t *entry = json_object_get(plan, name);
		const char *status = json_string_value(json_object_get(entry, "status"));

		if (strcmp(status, "pending") != 0 || json_object_get(stage, "env") ||
		    !all_needs_skipped(stage, plan))
			continue;
		if (json_object_set_new(entry, "status", json_string("queued")) < 0)
			goto nomem;
		(*queued)++;
	}
	return plan;
nomem:
	json_decref(plan);
	return NULL;
}
