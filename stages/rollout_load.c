/* rollout_load: an environment's strategy, providers, hooks and checks as
 * written in a pipeline file → the normalized "rollout" of its deployment.
 *
 *   {"strategy": {"type": "RollingUpdate", "progress_deadline_ms": N,
 *                 "max_surge": "1", "max_unavailable": "0"}
 *              | {"type": "BlueGreen", "active": "blue", "preview": "green",
 *                 "auto_promote": bool, "auto_promote_after_ms": N,
 *                 "scale_down_delay_ms": N, "pre_analysis"?: {...},
 *                 "post_analysis"?: {...}, "progress_deadline_ms": N}
 *              | {"type": "Canary", "steps": [{"set_weight": N} |
 *                 {"pause_ms": N} | {"pause": "manual"} | {"analysis": {...}}],
 *                 "background"?: {..., "starting_step": N},
 *                 "progress_deadline_ms": N},
 *    "image": "${push.image}", "provider": {...}, "traffic"?: {...},
 *    "hooks": {"pre": [...], "post": [...]}, "checks": {"pre": [...], "post": [...]}}
 */
#include "stages/rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/analysis.h"
#include "stages/checklist.h"
#include "stages/provider.h"
#include "stages/request.h"

#define MAX_STEPS	      64
#define MAX_DEADLINE_MS	      (24LL * 3600 * 1000)
#define MAX_PAUSE_MS	      (7LL * 24 * 3600 * 1000)
#define DEFAULT_DEADLINE_MS   (10LL * 60 * 1000)
#define DEFAULT_SCALE_DOWN_MS 30000

static const char *const rolling_keys[] = {
    "type", "maxSurge", "maxUnavailable", "progressDeadline", "rollingUpdate", NULL};
static const char *const rolling_nested_keys[] = {"maxSurge", "maxUnavailable", NULL};
static const char *const bluegreen_keys[] = {"type",
					     "activeService",
					     "previewService",
					     "autoPromote",
					     "autoPromoteAfter",
					     "scaleDownDelay",
					     "prePromotionAnalysis",
					     "postPromotionAnalysis",
					     "progressDeadline",
					     NULL};
static const char *const canary_keys[] = {"type", "steps", "analysis", "progressDeadline", NULL};
static const char *const pause_keys[] = {"duration", NULL};
static const char *const phase_keys[] = {"pre", "post", NULL};

/* What a rollout's templates see beside the run's variables: the image
 * nothing more, hooks and checks the image (rollout.c), a provider's
 * action its own (provider_action_vars), a RollingUpdate's apply its
 * bounds too. */
#define ACTION_NAMES "SLUICE_ACTION", "SLUICE_WEIGHT", "SLUICE_COLOR", "SLUICE_IMAGE"
static const char *const image_names[] = {NULL};
static const char *const checklist_names[] = {"SLUICE_IMAGE", NULL};
static const char *const action_names[] = {ACTION_NAMES, NULL};
static const char *const rolling_apply_names[] = {ACTION_NAMES, "SLUICE_MAX_SURGE",
						  "SLUICE_MAX_UNAVAILABLE", NULL};

static int nomem(const struct config_check *ck, const struct config_doc_node *n)
{
	return config_check_fail(ck, n, "out of memory");
}

static int duration(const struct config_check *ck, const struct config_doc_node *map,
		    const char *key, long long max, long long dflt, const char *name, json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	long long ms = dflt;

	if (n && config_check_duration_ms(ck, n, max, &ms) < 0)
		return -1;
	return config_check_set(ck, map, out, name, json_integer(ms));
}

/* maxSurge / maxUnavailable: a count or a percentage, kept as written. */
static int surge(const struct config_check *ck, const struct config_doc_node *map, const char *key,
		 const char *dflt, const char *name, json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	const char *v = dflt;
	long long count;
	char *end;

	if (n && config_check_text(ck, n, &v) < 0)
		return -1;
	count = strtoll(v, &end, 10);
	if (end == v || count < 0 || (*end && strcmp(end, "%") != 0) ||
	    (*end == '%' && count > 100))
		return config_check_fail(ck, n, "expected a count or a percentage like 25%%");
	return config_check_set(ck, map, out, name, json_string(v));
}

static int load_rolling(const struct config_check *ck, const struct config_doc_node *s, json_t *out)
{
	const struct config_doc_node *nested = config_doc_get(s, "rollingUpdate");
	const struct config_doc_node *from = s;

	if (config_check_keys(ck, s, rolling_keys) < 0)
		return -1;
	if (nested) {
		if (!json_is_object(nested->value))
			return config_check_fail(ck, nested,
						 "expected {maxSurge: 1, maxUnavailable: 0}");
		if (config_check_keys(ck, nested, rolling_nested_keys) < 0)
			return -1;
		if (config_doc_get(s, "maxSurge") || config_doc_get(s, "maxUnavailable"))
			return config_check_fail_key(ck, nested,
						     "give maxSurge and maxUnavailable here or "
						     "beside type, not both");
		from = nested;
	}
	if (surge(ck, from, "maxSurge", "25%", "max_surge", out) < 0 ||
	    surge(ck, from, "maxUnavailable", "25%", "max_unavailable", out) < 0)
		return -1;
	/* No instance could be added nor taken away: the update could not
	 * begin (the Kubernetes API refuses such a Deployment). Both 0 are
	 * written, as the default is 25%. */
	if (strtoll(json_string_value(json_object_get(out, "max_surge")), NULL, 10) == 0 &&
	    strtoll(json_string_value(json_object_get(out, "max_unavailable")), NULL, 10) == 0)
		return config_check_fail(ck, config_doc_get(from, "maxUnavailable"),
					 "may not be 0 when maxSurge is 0: nothing could be "
					 "replaced");
	return 0;
}

static int color_name(const struct config_check *ck, const struct config_doc_node *map,
		      const char *key, const char *dflt, const char *name, json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	const char *v = dflt;

	if (n && config_check_string(ck, n, 0, &v) < 0)
		return -1;
	if (!config_check_word(v, "_-", 0))
		return config_check_fail(ck, n, "a colour is letters, digits, '_' and '-'");
	return config_check_set(ck, map, out, name, json_string(v));
}

static int optional_analysis(const struct config_check *ck, const struct config_doc_node *map,
			     const char *key, const char *name, json_t *out)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	json_t *a;

	if (!n)
		return 0;
	if (analysis_load(ck, n, &a) < 0)
		return -1;
	return config_check_set(ck, map, out, name, a);
}

static int load_bluegreen(const struct config_check *ck, const struct config_doc_node *s,
			  json_t *out)
{
	const struct config_doc_node *n;
	int auto_promote = 0;

	if (config_check_keys(ck, s, bluegreen_keys) < 0 ||
	    color_name(ck, s, "activeService", "blue", "active", out) < 0 ||
	    color_name(ck, s, "previewService", "green", "preview", out) < 0)
		return -1;
	if (!strcmp(json_string_value(json_object_get(out, "active")),
		    json_string_value(json_object_get(out, "preview"))))
		return config_check_fail(ck, config_doc_get(s, "previewService"),
					 "the preview colour must differ from the active one");
	n = config_doc_get(s, "autoPromote");
	if (n && !json_is_boolean(n->value))
		return config_check_fail(ck, n, "expected true or false");
	auto_promote = n && json_is_true(n->value);
	if (config_doc_get(s, "autoPromoteAfter") && auto_promote)
		return config_check_fail_key(ck, config_doc_get(s, "autoPromoteAfter"),
					     "autoPromote already promotes at once");
	return config_check_set(ck, s, out, "auto_promote", json_boolean(auto_promote)) < 0 ||
		       duration(ck, s, "autoPromoteAfter", MAX_PAUSE_MS, 0, "auto_promote_after_ms",
				out) < 0 ||
		       duration(ck, s, "scaleDownDelay", MAX_PAUSE_MS, DEFAULT_SCALE_DOWN_MS,
				"scale_down_delay_ms", out) < 0 ||
		       optional_analysis(ck, s, "prePromotionAnalysis", "pre_analysis", out) < 0 ||
		       optional_analysis(ck, s, "postPromotionAnalysis", "post_analysis", out) < 0
		   ? -1
		   : 0;
}

/* One canary step: exactly one of setWeight, pause, analysis. */
static int load_step(const struct config_check *ck, const struct config_doc_node *st, json_t *steps)
{
	const struct config_doc_node *k = st->first, *n;
	json_t *step = json_object(), *a;
	long long w, ms;

	if (!step || json_array_append_new(steps, step) < 0)
		return nomem(ck, st);
	if (!json_is_object(st->value) || !k || k != st->last)
		return config_check_fail(ck, st,
					 "a step is one of {setWeight: 20}, {pause: {duration: "
					 "10m}}, {pause: {}} or {analysis: {...}}");
	if (!strcmp(k->key, "setWeight")) {
		if (config_check_int(ck, k, 0, 100, &w) < 0)
			return -1;
		return config_check_set(ck, k, step, "set_weight", json_integer(w));
	}
	if (!strcmp(k->key, "pause")) {
		if (json_is_null(k->value))
			return config_check_set(ck, k, step, "pause", json_string("manual"));
		if (!json_is_object(k->value))
			return config_check_fail(ck, k, "expected {duration: 10m} or {} (manual)");
		if (config_check_keys(ck, k, pause_keys) < 0)
			return -1;
		n = config_doc_get(k, "duration");
		if (!n)
			return config_check_set(ck, k, step, "pause", json_string("manual"));
		if (config_check_duration_ms(ck, n, MAX_PAUSE_MS, &ms) < 0)
			return -1;
		return config_check_set(ck, k, step, "pause_ms", json_integer(ms));
	}
	if (!strcmp(k->key, "analysis")) {
		if (analysis_load(ck, k, &a) < 0)
			return -1;
		return config_check_set(ck, k, step, "analysis", a);
	}
	return config_check_fail_key(ck, k, "unknown step (setWeight, pause or analysis)");
}

static int load_canary(const struct config_check *ck, const struct config_doc_node *s, json_t *out)
{
	const struct config_doc_node *list, *st, *bg;
	json_t *steps = json_array(), *a;

	if (config_check_set(ck, s, out, "steps", steps) < 0)
		return -1;
	if (config_check_keys(ck, s, canary_keys) < 0 ||
	    config_check_require(ck, s, "steps", &list) < 0)
		return -1;
	if (!json_is_array(list->value) || !list->first)
		return config_check_fail(ck, list, "expected a list of steps");
	for (st = list->first; st; st = st->next) {
		if (json_array_size(steps) >= MAX_STEPS)
			return config_check_fail(ck, st, "at most %d steps", MAX_STEPS);
		if (load_step(ck, st, steps) < 0)
			return -1;
	}
	bg = config_doc_get(s, "analysis");
	if (!bg)
		return 0;
	if (analysis_load_background(ck, bg, (long long)json_array_size(steps) - 1, &a) < 0)
		return -1;
	return config_check_set(ck, bg, out, "background", a);
}

static int load_strategy(const struct config_check *ck, const struct config_doc_node *s,
			 json_t *rollout)
{
	const struct config_doc_node *t;
	const char *type;
	json_t *out = json_object();

	if (config_check_set(ck, s, rollout, "strategy", out) < 0)
		return -1;
	if (!json_is_object(s->value))
		return config_check_fail(ck, s,
					 "expected a mapping with type: RollingUpdate, "
					 "BlueGreen or Canary");
	if (config_check_require(ck, s, "type", &t) < 0 || config_check_string(ck, t, 0, &type) < 0)
		return -1;
	if (!strcmp(type, "Blue/Green") || !strcmp(type, "BlueGreen"))
		type = "BlueGreen";
	else if (strcmp(type, "RollingUpdate") != 0 && strcmp(type, "Canary") != 0)
		return config_check_fail(ck, t,
					 "unknown strategy \"%s\" (RollingUpdate, BlueGreen or "
					 "Canary)",
					 type);
	if (config_check_set(ck, s, out, "type", json_string(type)) < 0 ||
	    duration(ck, s, "progressDeadline", MAX_DEADLINE_MS, DEFAULT_DEADLINE_MS,
		     "progress_deadline_ms", out) < 0)
		return -1;
	if (!strcmp(type, "RollingUpdate"))
		return load_rolling(ck, s, out);
	if (!strcmp(type, "BlueGreen"))
		return load_bluegreen(ck, s, out);
	return load_canary(ck, s, out);
}

/* A provider's error names the key at fault as "provider.<key>[.<key>]:
 * why", the last key perhaps with an item "[N]" (stages/provider.h):
 * reported at that key or item in the file, as far as the file has it,
 * rather than at the provider with its own path repeated. "timeout_ms" and
 * "poll_ms" are the file's "timeout" and "poll". */
static int provider_fail(const struct config_check *ck, const struct config_doc_node *n,
			 const char *err)
{
	const char *colon = strstr(err, ": ");
	const char *p = err + strlen("provider");
	const struct config_doc_node *at = n, *child;
	char key[64];

	if (strncmp(err, "provider", strlen("provider")) != 0 || !colon ||
	    (*p != '.' && p != colon))
		return config_check_fail(ck, n, "%s", err);
	while (*p == '.' && p < colon) {
		size_t len = strcspn(p + 1, ".:[");

		if (len == 0 || len >= sizeof(key))
			break;
		memcpy(key, p + 1, len);
		key[len] = '\0';
		child = config_doc_get(at, key);
		if (!child && len > 3 && !strcmp(key + len - 3, "_ms")) {
			key[len - 3] = '\0';
			child = config_doc_get(at, key);
		}
		if (!child)
			break;
		at = child;
		p += 1 + len;
	}
	if (*p == '[' && json_is_array(at->value)) {
		char *end;
		unsigned long i = strtoul(p + 1, &end, 10);

		for (child = at->first; child && i; child = child->next)
			i--;
		if (end[0] == ']' && end + 1 == colon && child) {
			at = child;
			p = colon;
		}
	}
	if (p == colon)
		return config_check_fail(ck, at, "%s", colon + 2);
	return config_check_fail(ck, at, "%s", *p == '.' ? p + 1 : p);
}

/* n's key, when there, relative to the pipeline file and checked readable
 * into obj. */
static int provider_path(const struct config_check *ck, const struct config_doc_node *n,
			 const char *dir, json_t *obj, const char *key)
{
	const struct config_doc_node *c = config_doc_get(n, key);

	return c ? config_check_path(ck, c, dir, obj, key) : 0;
}

/* A kubernetes provider's token_file and ca_file and the ca_file of each
 * action of an http provider (checked by creating it), as an http: stage's:
 * relative to the pipeline file, not to where the worker runs, and
 * readable now rather than when the action runs. */
static int provider_paths(const struct config_check *ck, const struct config_doc_node *n,
			  const char *dir, json_t *def)
{
	const struct config_doc_node *a;
	const char *type = json_string_value(json_object_get(def, "type"));

	if (strcmp(type, "kubernetes") == 0) {
		if (provider_path(ck, n, dir, def, "token_file") < 0 ||
		    provider_path(ck, n, dir, def, "ca_file") < 0)
			return -1;
		return 0;
	}
	if (strcmp(type, "http") != 0)
		return 0;
	for (a = config_doc_get(n, "actions")->first; a; a = a->next)
		if (provider_path(ck, a, dir,
				  json_object_get(json_object_get(def, "actions"), a->key),
				  "ca_file") < 0)
			return -1;
	return 0;
}

/* A provider mapping → its def: keys as written, durations ("timeout: 30s",
 * "poll: 2s") as milliseconds, paths resolved; checked by provider_check,
 * which needs nothing of the machine the deployment will run on. A key
 * its type does not read is refused where it is written, as anywhere else
 * in the file: a misspelt one would otherwise leave its default in
 * force. */
static int load_provider(const struct config_check *ck, const struct config_doc_node *n,
			 const char *name, const char *dir, json_t *rollout)
{
	const struct config_doc_node *c;
	const char *const *keys;
	json_t *def;
	char err[512];

	if (!json_is_object(n->value))
		return config_check_fail(ck, n,
					 "expected a mapping with type: exec, http, "
					 "haproxy or kubernetes");
	/* An unknown type is named by provider_new below. */
	keys = provider_keys(json_string_value(json_object_get(n->value, "type")));
	if (keys && config_check_keys(ck, n, keys) < 0)
		return -1;
	def = json_deep_copy(n->value);
	if (config_check_set(ck, n, rollout, name, def) < 0)
		return -1;
	for (c = n->first; c; c = c->next) {
		long long ms;
		char key[64];

		if (strcmp(c->key, "timeout") != 0 && strcmp(c->key, "poll") != 0)
			continue;
		if (config_check_duration_ms(ck, c, MAX_DEADLINE_MS, &ms) < 0)
			return -1;
		snprintf(key, sizeof(key), "%s_ms", c->key);
		json_object_del(def, c->key);
		if (config_check_set(ck, c, def, key, json_integer(ms)) < 0)
			return -1;
	}
	if (provider_check(def, err, sizeof(err)) < 0)
		return provider_fail(ck, n, err);
	return provider_paths(ck, n, dir, def);
}

/* A Canary's or BlueGreen's two versions run side by side, each in a
 * Deployment of its own: a kubernetes provider's deployment names them by
 * ${SLUICE_COLOR}. One Deployment would take the new version before any
 * check or traffic, and scaling the canary or the old colour down would
 * leave nothing running. */
static int deployment_per_colour(const struct config_check *ck, const struct config_doc_node *n,
				 const json_t *rollout)
{
	const char *type =
	    json_string_value(json_object_get(json_object_get(rollout, "strategy"), "type"));
	const struct config_doc_node *d = config_doc_get(n, "deployment");
	const char *name = d ? json_string_value(d->value) : NULL;

	if (!name || !type || !strcmp(type, "RollingUpdate") ||
	    strcmp(json_string_value(json_object_get(n->value, "type")), "kubernetes") != 0 ||
	    strstr(name, "${SLUICE_COLOR}"))
		return 0;
	return config_check_fail(ck, d,
				 "a %s runs two versions side by side, each in a Deployment of "
				 "its own: name them with ${SLUICE_COLOR} (app-${SLUICE_COLOR})",
				 type);
}

static int load_phases(const struct config_check *ck, const struct config_doc_node *map,
		       const char *key, json_t *rollout)
{
	const struct config_doc_node *n = config_doc_get(map, key), *pre, *post;
	json_t *out = json_object(), *list;
	int hooks = !strcmp(key, "hooks");

	if (config_check_set(ck, map, rollout, key, out) < 0)
		return -1;
	if (!n)
		return 0;
	if (!json_is_object(n->value))
		return config_check_fail(ck, n, "expected {pre: [...], post: [...]}");
	if (config_check_keys(ck, n, phase_keys) < 0)
		return -1;
	pre = config_doc_get(n, "pre");
	post = config_doc_get(n, "post");
	if (pre) {
		if ((hooks ? checklist_load_hooks(ck, pre, 1, &list)
			   : checklist_load_checks(ck, pre, &list)) < 0 ||
		    config_check_set(ck, pre, out, "pre", list) < 0)
			return -1;
	}
	if (post) {
		if ((hooks ? checklist_load_hooks(ck, post, 0, &list)
			   : checklist_load_checks(ck, post, &list)) < 0 ||
		    config_check_set(ck, post, out, "post", list) < 0)
			return -1;
	}
	return 0;
}

int rollout_load(const struct config_check *ck, const struct config_doc_node *env, const char *dir,
		 json_t **out)
{
	const struct config_doc_node *s = config_doc_get(env, "strategy");
	const struct config_doc_node *n;
	const char *image = "";
	json_t *r;

	*out = NULL;
	if (!s) {
		static const char *const needs_strategy[] = {"image", "provider", "traffic",
							     "hooks", "checks",	  NULL};
		for (int i = 0; needs_strategy[i]; i++)
			if ((n = config_doc_get(env, needs_strategy[i])))
				return config_check_fail_key(
				    ck, n, "%s belongs to a deployment strategy: add strategy:",
				    needs_strategy[i]);
		return 0;
	}
	r = json_object();
	if (!r)
		return nomem(ck, s);
	if (load_strategy(ck, s, r) < 0)
		goto fail;
	n = config_doc_get(env, "image");
	if (n && config_check_string(ck, n, 0, &image) < 0)
		goto fail;
	if (config_check_set(ck, env, r, "image", json_string(image)) < 0)
		goto fail;
	n = config_doc_get(env, "provider");
	if (!n) {
		config_check_missing(ck, env, "provider",
				     "what carries the deployment out: exec, http, haproxy or "
				     "kubernetes");
		goto fail;
	}
	if (load_provider(ck, n, "provider", dir, r) < 0 || deployment_per_colour(ck, n, r) < 0)
		goto fail;
	n = config_doc_get(env, "traffic");
	if (n &&
	    (load_provider(ck, n, "traffic", dir, r) < 0 || deployment_per_colour(ck, n, r) < 0))
		goto fail;
	if (load_phases(ck, env, "hooks", r) < 0 || load_phases(ck, env, "checks", r) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	json_decref(r);
	return -1;
}

struct templates {
	int (*f)(const struct config_doc_node *n, const char *const *own, void *arg);
	void *arg;
	const char *const *own;
};

static int template_at(struct templates *t, const struct config_doc_node *n)
{
	return n && json_is_string(n->value) ? t->f(n, t->own, t->arg) : 0;
}

/* The run: arguments of a command (a hook, a rollback, a check, an exec
 * action); sh: is expanded by the shell. */
static int command_templates(struct templates *t, const struct config_doc_node *cmd)
{
	const struct config_doc_node *run = config_doc_get(cmd, "run"), *c;

	for (c = run ? run->first : NULL; c; c = c->next)
		if (template_at(t, c) < 0)
			return -1;
	return 0;
}

/* A template of a request (an http check, an http action). */
static int request_template_at(const struct config_doc_node *n, void *arg)
{
	struct templates *t = arg;

	return t->f(n, t->own, t->arg);
}

/* rolling: the strategy is a RollingUpdate, whose apply has its bounds
 * (whichever provider carries it out); a kubernetes deployment name is
 * expanded for every action. */
static int provider_templates(struct templates *t, const struct config_doc_node *p, int rolling)
{
	const struct config_doc_node *type = config_doc_get(p, "type");
	const struct config_doc_node *actions = config_doc_get(p, "actions"), *a;
	const char *kind = type ? json_string_value(type->value) : NULL;

	t->own = action_names;
	if (!kind)
		return 0;
	if (!strcmp(kind, "kubernetes"))
		return template_at(t, config_doc_get(p, "deployment"));
	for (a = actions ? actions->first : NULL; a; a = a->next) {
		t->own = rolling && !strcmp(a->key, "apply") ? rolling_apply_names : action_names;
		if ((!strcmp(kind, "exec") && command_templates(t, a) < 0) ||
		    (!strcmp(kind, "http") && request_templates(a, request_template_at, t) < 0))
			return -1;
	}
	return 0;
}

/* The hooks or checks of both phases. */
static int phase_templates(struct templates *t, const struct config_doc_node *phases)
{
	for (const char *const *key = phase_keys; *key; key++) {
		const struct config_doc_node *list = config_doc_get(phases, *key), *item;

		for (item = list ? list->first : NULL; item; item = item->next)
			if (command_templates(t, item) < 0 ||
			    command_templates(t, config_doc_get(item, "rollback")) < 0 ||
			    request_templates(config_doc_get(item, "http"), request_template_at,
					      t) < 0)
				return -1;
	}
	return 0;
}

int rollout_load_templates(const struct config_doc_node *env,
			   int (*f)(const struct config_doc_node *n, const char *const *own,
				    void *arg),
			   void *arg)
{
	struct templates t = {.f = f, .arg = arg, .own = image_names};
	const struct config_doc_node *type =
	    config_doc_get(config_doc_get(env, "strategy"), "type");
	int rolling = type && !strcmp(json_string_value(type->value), "RollingUpdate");

	if (template_at(&t, config_doc_get(env, "image")) < 0)
		return -1;
	if (provider_templates(&t, config_doc_get(env, "provider"), rolling) < 0 ||
	    provider_templates(&t, config_doc_get(env, "traffic"), rolling) < 0)
		return -1;
	t.own = checklist_names;
	return phase_templates(&t, config_doc_get(env, "hooks")) < 0 ||
		       phase_templates(&t, config_doc_get(env, "checks")) < 0
		   ? -1
		   : 0;
}
