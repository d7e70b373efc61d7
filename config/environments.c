/* environments: load and check the environments: section, build its def. */
#include "config/environments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/retry.h"
#include "config/window.h"
#include "stages/rollout.h"

#define MAX_EXPIRES_MS (30LL * 86400 * 1000)

static const char *const env_keys[] = {"after",	  "approval", "windows",  "deploy",  "vars",
				       "secrets", "image",    "provider", "traffic", "strategy",
				       "hooks",	  "checks",   NULL};
static const char *const approval_keys[] = {"required", "expires", NULL};
static const char *const windows_keys[] = {"deny", NULL};

struct env_ref {
	const struct config_doc_node *node;
	const struct config_doc_node *after; /* the after: value, NULL when first */
	long prev;			     /* index of the environment it comes after, -1 */
	long next;			     /* index of the one that comes after it, -1 */
	json_t *conf;			     /* its def.environments entry */
	json_t *stage;			     /* its deploy@ stage */
};

struct env_loading {
	const struct environments_loader *l;
	const struct config_check *ck;
	struct env_ref *envs;
	size_t n;
};

static int nomem(const struct env_loading *el, const struct config_doc_node *n)
{
	return config_check_fail(el->ck, n, "out of memory");
}

/* approval: required | true | false | {required: bool, expires: duration}. */
static int load_approval(struct env_loading *el, const struct config_doc_node *n, json_t *conf)
{
	const struct config_doc_node *c;
	int required = 0;
	long long expires_ms = 0;

	if (!n) {
		/* The default: deploy without asking. */
	} else if (json_is_boolean(n->value)) {
		required = json_is_true(n->value);
	} else if (json_is_string(n->value)) {
		if (strcmp(json_string_value(n->value), "required") != 0)
			return config_check_fail(el->ck, n,
						 "expected \"required\", true, false or "
						 "{required: true, expires: 24h}");
		required = 1;
	} else if (json_is_object(n->value)) {
		if (config_check_keys(el->ck, n, approval_keys) < 0)
			return -1;
		required = 1;
		c = config_doc_get(n, "required");
		if (c && !json_is_boolean(c->value))
			return config_check_fail(el->ck, c, "expected true or false");
		if (c)
			required = json_is_true(c->value);
		c = config_doc_get(n, "expires");
		if (c && config_check_duration_ms(el->ck, c, MAX_EXPIRES_MS, &expires_ms) < 0)
			return -1;
		if (c && !required)
			return config_check_fail_key(el->ck, c,
						     "expires applies to a required approval");
	} else {
		return config_check_fail(el->ck, n,
					 "expected \"required\", true, false or "
					 "{required: true, expires: 24h}");
	}
	if (json_object_set_new(conf, "approval",
				json_pack("{s:b, s:I}", "required", required, "expires_s",
					  (json_int_t)((expires_ms + 999) / 1000))) < 0)
		return nomem(el, n);
	return 0;
}

static const struct config_doc_node *nth(const struct config_doc_node *list, size_t i)
{
	const struct config_doc_node *item = list->first;
	if (!json_is_array(list->value))
		return list;
	while (item && i--)
		item = item->next;
	return item;
}

/* windows: {deny: [spec, ...]} (or one spec) → normalized windows. */
static int load_windows(struct env_loading *el, const struct config_doc_node *n, json_t *conf)
{
	const struct config_doc_node *deny;
	json_t *specs = NULL, *out = json_array();
	struct window ws[WINDOW_MAX];
	size_t i;

	if (!out || json_object_set_new(conf, "windows", out) < 0)
		return nomem(el, n);
	if (!n)
		return 0;
	if (config_check_keys(el->ck, n, windows_keys) < 0 ||
	    config_check_require(el->ck, n, "deny", &deny) < 0 ||
	    config_check_text_list(el->ck, deny, 1, &specs) < 0)
		return -1;
	if (json_array_size(specs) > WINDOW_MAX) {
		json_decref(specs);
		return config_check_fail(el->ck, deny, "at most %d windows", WINDOW_MAX);
	}
	for (i = 0; i < json_array_size(specs); i++) {
		const char *spec = json_string_value(json_array_get(specs, i));
		char why[160];
		size_t pos = 0;

		if (window_parse(spec, &ws[i], &pos, why, sizeof(why)) < 0) {
			config_check_fail(el->ck, nth(deny, i),
					  "bad window \"%s\" at character %zu: %s", spec, pos + 1,
					  why);
			json_decref(specs);
			return -1;
		}
		if (json_array_append_new(out, window_to_json(&ws[i], spec)) < 0) {
			json_decref(specs);
			return nomem(el, deny);
		}
	}
	json_decref(specs);
	/* A gap exists somewhere in the week iff a walk from any instant ends. */
	if (window_closed_until(ws, i, 0) < 0)
		return config_check_fail(el->ck, deny,
					 "these windows cover the whole week: the environment "
					 "would never open");
	return 0;
}

/* vars or secrets of the environment over the pipeline's; *own: the
 * environment's own, for the caller to free. */
static int load_layer(struct env_loading *el, const struct config_doc_node *env, const char *key,
		      json_t *stage, json_t **own_out)
{
	const struct config_doc_node *n = config_doc_get(env, key);
	json_t *merged = json_deep_copy(json_object_get(el->l->def, key));
	json_t *own = json_object();

	if (!merged)
		merged = json_object();
	if (!merged || !own || json_object_set_new(stage, key, merged) < 0) {
		json_decref(own);
		return nomem(el, env);
	}
	if (n && el->l->names(el->l->arg, n, !strcmp(key, "secrets"), own) < 0) {
		json_decref(own);
		return -1;
	}
	json_object_update(merged, own);
	*own_out = own;
	return 0;
}

/* A name the environment gives a value is its own whichever kind the
 * pipeline made it: a var of the environment replaces a secret of the
 * pipeline, and a secret a var (the stage's environment would otherwise
 * take the secret over the var, unseen). One name both a var and a secret of
 * the environment is an error. */
static int layer_names_once(struct env_loading *el, const struct config_doc_node *env,
			    json_t *stage, const json_t *vars, const json_t *secrets)
{
	const char *name;
	const json_t *v;
	json_object_foreach((json_t *)vars, name, v)
	{
		if (json_object_get(secrets, name))
			return config_check_fail_key(
			    el->ck, config_doc_get(config_doc_get(env, "secrets"), name),
			    "%s is a var of the environment too: a name is a var or a secret",
			    name);
		json_object_del(json_object_get(stage, "secrets"), name);
	}
	json_object_foreach((json_t *)secrets, name, v)
	{
		json_object_del(json_object_get(stage, "vars"), name);
	}
	return 0;
}

static int load_env(struct env_loading *el, struct env_ref *e)
{
	const struct config_doc_node *env = e->node, *n;
	const char *after;
	json_t *rollout;

	if (!config_check_word(env->key, "_-", 0) || strlen(env->key) > PIPELINE_STAGE_NAME_MAX)
		return config_check_fail_key(el->ck, env,
					     "invalid environment name (use at most %d letters, "
					     "digits, '_' and '-')",
					     PIPELINE_STAGE_NAME_MAX);
	if (!json_is_object(env->value))
		return config_check_fail(el->ck, env, "expected a mapping");
	if (config_check_keys(el->ck, env, env_keys) < 0)
		return -1;
	e->conf = json_object();
	if (!e->conf)
		return nomem(el, env);
	e->after = config_doc_get(env, "after");
	if (e->after && config_check_string(el->ck, e->after, 0, &after) < 0)
		return -1;
	if (json_object_set_new(e->conf, "after", e->after ? json_string(after) : json_null()) < 0)
		return nomem(el, env);
	if (load_approval(el, config_doc_get(env, "approval"), e->conf) < 0 ||
	    load_windows(el, config_doc_get(env, "windows"), e->conf) < 0)
		return -1;
	if (rollout_load(el->ck, env, el->l->dir, &rollout) < 0)
		return -1;
	n = config_doc_get(env, "deploy");
	if (rollout) {
		/* The strategy deploys, through its providers. */
		if (n) {
			json_decref(rollout);
			return config_check_fail_key(
			    el->ck, n,
			    "an environment with a strategy deploys through "
			    "its provider: remove deploy:");
		}
		e->stage = json_pack("{s:s, s:o, s:I}", "kind", "deploy", "rollout", rollout,
				     "timeout", (json_int_t)0);
		if (!e->stage)
			return nomem(el, env);
		/* Its worker lost, it is queued again up to the file's
		 * max_attempts, as a deploy: is: the environment itself may
		 * hold neither max_attempts nor retry (env_keys). */
		if (retry_load(el->ck, env, e->stage) < 0)
			return -1;
	} else if (!n) {
		return config_check_missing(el->ck, env, "deploy",
					    "the stage that deploys: run, sh or http; or a "
					    "strategy: with its provider:");
	} else {
		if (!json_is_object(n->value))
			return config_check_fail(el->ck, n,
						 "expected a stage: {run: [...]}, {sh: ...} or "
						 "{http: {...}}");
		if (config_doc_get(n, "kind"))
			return config_check_fail_key(el->ck, config_doc_get(n, "kind"),
						     "a deployment is always of kind deploy");
		if (config_doc_get(n, "needs"))
			return config_check_fail_key(el->ck, config_doc_get(n, "needs"),
						     "a deployment starts when the run is "
						     "promoted; use after: to order environments");
		/* when_plan leaves deployments out: one would be ignored. */
		if (config_doc_get(n, "when"))
			return config_check_fail_key(
			    el->ck, config_doc_get(n, "when"),
			    "every run promoted to the environment deploys: "
			    "a deployment has no when:");
		if (el->l->stage(el->l->arg, n, &e->stage) < 0)
			return -1;
	}
	if (json_object_set_new(e->stage, "env", json_string(env->key)) < 0 ||
	    json_object_set_new(e->stage, "needs", json_array()) < 0)
		return nomem(el, env);
	json_t *vars = NULL, *secrets = NULL;
	int rc = load_layer(el, env, "vars", e->stage, &vars) < 0 ||
			 load_layer(el, env, "secrets", e->stage, &secrets) < 0 ||
			 layer_names_once(el, env, e->stage, vars, secrets) < 0
		     ? -1
		     : 0;
	json_decref(vars);
	json_decref(secrets);
	return rc;
}

static long find_env(const struct env_loading *el, const char *name)
{
	for (size_t i = 0; i < el->n; i++)
		if (!strcmp(el->envs[i].node->key, name))
			return (long)i;
	return -1;
}

/* "a -> b -> a" (each comes after the one before it): the cycle that the
 * after: of start leads into. */
static int cycle_error(struct env_loading *el, size_t start)
{
	char names[400] = "";
	size_t used = 0, steps = 0;
	long at = (long)start, from;

	/* Walking back el->n steps lands on the cycle whatever start is. */
	for (size_t i = 0; i < el->n; i++)
		at = el->envs[at].prev;
	/* Named from the first of the cycle in the file. */
	from = at;
	for (long on = el->envs[at].next; on != at; on = el->envs[on].next)
		if (on < from)
			from = on;
	at = from;
	do {
		int w = snprintf(names + used, sizeof(names) - used, "%s%s", steps ? " -> " : "",
				 el->envs[at].node->key);
		if (w < 0 || (size_t)w >= sizeof(names) - used)
			break;
		used += (size_t)w;
		at = el->envs[at].next;
		steps++;
	} while (at != from);
	snprintf(names + used, sizeof(names) - used, " -> %s", el->envs[from].node->key);
	return config_check_fail(el->ck, el->envs[from].after,
				 "environments form a cycle through after: %s", names);
}

/* The chain: after: names known, each environment followed by at most one,
 * exactly one first, all reachable from it. */
static int resolve_chain(struct env_loading *el, long *first)
{
	size_t i, seen = 0;
	long at;

	*first = -1;
	for (i = 0; i < el->n; i++) {
		struct env_ref *e = &el->envs[i];
		const char *name;

		if (!e->after)
			continue;
		name = json_string_value(e->after->value);
		e->prev = find_env(el, name);
		if (e->prev < 0)
			return config_check_fail(el->ck, e->after, "unknown environment \"%s\"",
						 name);
		if (e->prev == (long)i)
			return config_check_fail(el->ck, e->after,
						 "an environment cannot come after itself");
		if (el->envs[e->prev].next >= 0)
			return config_check_fail(el->ck, e->after,
						 "\"%s\" already comes after \"%s\": environments "
						 "form one chain",
						 el->envs[el->envs[e->prev].next].node->key, name);
		el->envs[e->prev].next = (long)i;
	}
	for (i = 0; i < el->n; i++) {
		if (el->envs[i].after)
			continue;
		if (*first >= 0)
			return config_check_fail_key(el->ck, el->envs[i].node,
						     "only one environment may come first (without "
						     "after:); \"%s\" already does",
						     el->envs[*first].node->key);
		*first = (long)i;
	}
	for (at = *first; at >= 0; at = el->envs[at].next)
		seen++;
	for (i = 0; seen < el->n && i < el->n; i++) {
		for (at = *first; at >= 0 && at != (long)i; at = el->envs[at].next)
			;
		if (at < 0)
			return cycle_error(el, i);
	}
	return 0;
}

static int build_def(struct env_loading *el, long first, const struct config_doc_node *m)
{
	json_t *envs = json_object();
	json_t *stages = json_object_get(el->l->def, "stages");

	if (!envs || json_object_set_new(el->l->def, "environments", envs) < 0)
		return nomem(el, m);
	for (long at = first; at >= 0; at = el->envs[at].next) {
		struct env_ref *e = &el->envs[at];
		char name[sizeof(ENVIRONMENTS_STAGE_PREFIX) + PIPELINE_STAGE_NAME_MAX];

		snprintf(name, sizeof(name), ENVIRONMENTS_STAGE_PREFIX "%s", e->node->key);
		if (json_object_set(envs, e->node->key, e->conf) < 0 ||
		    json_object_set(stages, name, e->stage) < 0)
			return nomem(el, e->node);
	}
	return 0;
}

int environments_load(const struct environments_loader *l, const struct config_doc_node *top)
{
	const struct config_doc_node *m = config_doc_get(top, "environments"), *c;
	struct env_loading el = {.l = l, .ck = l->ck};
	long first;
	int rc = -1;

	if (!m)
		return 0;
	if (!json_is_object(m->value))
		return config_check_fail(l->ck, m, "expected a mapping of environments");
	if (!json_object_size(m->value))
		return config_check_fail(l->ck, m, "must not be empty");
	el.envs = calloc(json_object_size(m->value), sizeof(*el.envs));
	if (!el.envs)
		return nomem(&el, m);
	for (c = m->first; c; c = c->next) {
		struct env_ref *e = &el.envs[el.n++];

		e->node = c;
		e->prev = e->next = -1;
		if (load_env(&el, e) < 0)
			goto done;
	}
	if (resolve_chain(&el, &first) < 0 || build_def(&el, first, m) < 0)
		goto done;
	rc = 0;
done:
	for (size_t i = 0; i < el.n; i++) {
		json_decref(el.envs[i].conf);
		json_decref(el.envs[i].stage);
	}
	free(el.envs);
	return rc;
}
