/* provider: picks the implementation by "type" and keeps to one action in
 * flight, so that each implementation only has to run one at a time. */
#include "stages/provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct provider {
	const struct provider_ops *ops;
	void *state;
	int busy;
	provider_done_cb done;
	void *arg;
};

static const char *const verb_names[PROVIDER_NVERBS] = {
    [PROVIDER_APPLY] = "apply",		  [PROVIDER_VERIFY] = "verify",
    [PROVIDER_SET_WEIGHT] = "set_weight", [PROVIDER_SWITCH] = "switch",
    [PROVIDER_PROMOTE] = "promote",	  [PROVIDER_ABORT] = "abort",
    [PROVIDER_SCALE_DOWN] = "scale_down",
};

static const struct provider_ops *const kinds[] = {
    &provider_exec_ops,
    &provider_http_ops,
    &provider_haproxy_ops,
    &provider_kubernetes_ops,
};

const char *provider_verb_name(enum provider_verb verb)
{
	return verb >= 0 && verb < PROVIDER_NVERBS ? verb_names[verb] : "unknown";
}

int provider_verb_parse(const char *name)
{
	for (int i = 0; name && i < PROVIDER_NVERBS; i++)
		if (strcmp(name, verb_names[i]) == 0)
			return i;
	return -1;
}

const char *const *provider_keys(const char *type)
{
	for (size_t i = 0; type && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i]->type, type) == 0)
			return kinds[i]->keys;
	return NULL;
}

int provider_def_ms(const json_t *def, const char *key, int dflt, int max, int *out, char *err,
		    size_t errlen)
{
	const json_t *v = json_object_get(def, key);

	*out = dflt;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > max) {
		snprintf(err, errlen, "provider.%s: a positive number of milliseconds, at most %d",
			 key, max);
		return -1;
	}
	*out = (int)json_integer_value(v);
	return 0;
}

int provider_def_actions(const json_t *def, const char *what,
			 int (*check)(const char *verb, const json_t *spec, char *err,
				      size_t errlen),
			 char *err, size_t errlen)
{
	const json_t *actions = json_object_get(def, "actions");
	const char *verb;
	json_t *spec;

	if (!json_is_object(actions) || json_object_size(actions) == 0) {
		snprintf(err, errlen, "provider.actions: required, %s per action", what);
		return -1;
	}
	json_object_foreach((json_t *)actions, verb, spec)
	{
		if (provider_verb_parse(verb) < 0) {
			snprintf(err, errlen,
				 "provider.actions.%s: not an action (apply, verify, "
				 "set_weight, switch, promote, abort, scale_down)",
				 verb);
			return -1;
		}
		if (check(verb, spec, err, errlen) < 0)
			return -1;
	}
	return 0;
}

json_t *provider_action_vars(const struct provider_action *a)
{
	json_t *vars = a->env ? json_deep_copy(a->env) : json_object();
	char weight[16] = "";

	if (!vars)
		return NULL;
	if (a->weight >= 0)
		snprintf(weight, sizeof(weight), "%d", a->weight);
	if (json_object_set_new(vars, "SLUICE_ACTION", json_string(provider_verb_name(a->verb))) <
		0 ||
	    json_object_set_new(vars, "SLUICE_WEIGHT", json_string(weight)) < 0 ||
	    json_object_set_new(vars, "SLUICE_COLOR", json_string(a->color ? a->color : "")) < 0 ||
	    json_object_set_new(vars, "SLUICE_IMAGE", json_string(a->image ? a->image : "")) < 0)
		goto fail;
	/* Not set at all elsewhere: pipeline loading refuses a template that
	 * names them where no action would have them. */
	if ((a->max_surge &&
	     json_object_set_new(vars, "SLUICE_MAX_SURGE", json_string(a->max_surge)) < 0) ||
	    (a->max_unavailable && json_object_set_new(vars, "SLUICE_MAX_UNAVAILABLE",
						       json_string(a->max_unavailable)) < 0))
		goto fail;
	return vars;
fail:
	json_decref(vars);
	return NULL;
}

/* The kind def's type names, or NULL with err saying why. */
static const struct provider_ops *kind_of(const json_t *def, char *err, size_t errlen)
{
	const char *type = json_string_value(json_object_get(def, "type"));

	if (!type) {
		snprintf(err, errlen,
			 "provider.type: required (exec, http, haproxy or kubernetes)");
		return NULL;
	}
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i]->type, type) == 0)
			return kinds[i];
	snprintf(err, errlen,
		 "provider.type: unknown provider \"%s\" (exec, http, haproxy or kubernetes)",
		 type);
	return NULL;
}

struct provider *provider_new(struct event_base *base, const json_t *def, char *err, size_t errlen)
{
	const struct provider_ops *ops = kind_of(def, err, errlen);
	struct provider *p;

	if (!ops)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->ops = ops;
	p->state = ops->create(base, def, err, errlen);
	if (!p->state) {
		free(p);
		return NULL;
	}
	return p;
}

int provider_check(const json_t *def, char *err, size_t errlen)
{
	const struct provider_ops *ops = kind_of(def, err, errlen);
	struct event_base *base;
	struct provider *p;

	if (!ops)
		return -1;
	if (ops->check)
		return ops->check(def, err, errlen);
	base = event_base_new();
	if (!base) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p = provider_new(base, def, err, errlen);
	provider_free(p);
	event_base_free(base);
	return p ? 0 : -1;
}

int provider_runs_own_actions(const struct provider *p)
{
	return !strcmp(p->ops->type, "exec") || !strcmp(p->ops->type, "http");
}

int provider_supports(const struct provider *p, enum provider_verb verb)
{
	return verb >= 0 && verb < PROVIDER_NVERBS && p->ops->supports(p->state, verb);
}

static void on_done(int ok, const char *message, void *arg)
{
	struct provider *p = arg;

	p->busy = 0;
	p->done(ok, message, p->arg);
}

int provider_start(struct provider *p, const struct provider_action *a, provider_done_cb done,
		   void *arg, char *err, size_t errlen)
{
	if (!provider_supports(p, a->verb)) {
		snprintf(err, errlen, "the %s provider cannot %s", p->ops->type,
			 provider_verb_name(a->verb));
		return -1;
	}
	if (a->weight > 100) {
		snprintf(err, errlen, "weight %d: not within 0..100", a->weight);
		return -1;
	}
	if (p->busy) {
		snprintf(err, errlen, "the %s provider is still busy with another action",
			 p->ops->type);
		return -1;
	}
	p->done = done;
	p->arg = arg;
	if (p->ops->start(p->state, a, on_done, p, err, errlen) < 0)
		return -1;
	p->busy = 1;
	return 0;
}

void provider_cancel(struct provider *p)
{
	if (p && p->busy) {
		p->ops->cancel(p->state);
		p->busy = 0;
	}
}

void provider_free(struct provider *p)
{
	if (!p)
		return;
	provider_cancel(p);
	p->ops->destroy(p->state);
	free(p);
}
