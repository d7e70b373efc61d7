/* provider: what carries out a deployment's actions (apply, verify,
 * set_weight, switch, promote, abort, scale_down) on a target: your commands
 * (exec), HTTP requests (http), HAProxy's runtime API (haproxy) or the
 * Kubernetes API (kubernetes). Every action runs on the libevent loop, one
 * at a time per provider, and ends in exactly one callback, from the loop and
 * never from within provider_start, saying done or failed and why.
 */
#ifndef SLUICE_PROVIDER_H
#define SLUICE_PROVIDER_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>

enum provider_verb {
	PROVIDER_APPLY,
	PROVIDER_VERIFY,
	PROVIDER_SET_WEIGHT,
	PROVIDER_SWITCH,
	PROVIDER_PROMOTE,
	PROVIDER_ABORT,
	PROVIDER_SCALE_DOWN,
	PROVIDER_NVERBS
};

/* One action. Strings may be NULL and weight -1 when the action has none;
 * env (name → string, may be NULL) reaches commands as their environment
 * and templates as ${NAME}, beside SLUICE_ACTION, SLUICE_WEIGHT,
 * SLUICE_COLOR and SLUICE_IMAGE, and for a RollingUpdate's apply
 * SLUICE_MAX_SURGE and SLUICE_MAX_UNAVAILABLE. */
struct provider_action {
	enum provider_verb verb;
	const char *image;
	int weight; /* 0..100: the share of traffic the new version gets */
	const char *color;
	/* A verify of a colour that takes traffic only once switched to (a
	 * blue/green preview): ready without taking traffic yet. */
	int preview;
	const json_t *env;
	/* A RollingUpdate's apply: its bounds as rollout_load keeps them, a
	 * count ("1") or a percentage ("25%"); NULL for any other action. */
	const char *max_surge;
	const char *max_unavailable;
};

/* ok is 1 for done, 0 for failed; message says what happened either way. */
typedef void (*provider_done_cb)(int ok, const char *message, void *arg);

struct provider;

/* What one kind of provider implements; state is its own. keys are those
 * its mapping in a pipeline file may have, with timeout and poll as the
 * durations rollout_load turns into timeout_ms and poll_ms. check, when
 * there, says what create would of def but for what only the machine
 * the provider runs on has (create reads it); without it, creating is
 * the check. start returns 0, or -1 with err set when the action cannot
 * begin (then done is not called); cancel stops the action in flight
 * without calling done. */
struct provider_ops {
	const char *type;
	const char *const *keys; /* NULL-terminated */
	int (*check)(const json_t *def, char *err, size_t errlen);
	void *(*create)(struct event_base *base, const json_t *def, char *err, size_t errlen);
	int (*supports)(void *state, enum provider_verb verb);
	int (*start)(void *state, const struct provider_action *a, provider_done_cb done, void *arg,
		     char *err, size_t errlen);
	void (*cancel)(void *state);
	void (*destroy)(void *state);
};

extern const struct provider_ops provider_exec_ops;
extern const struct provider_ops provider_http_ops;
extern const struct provider_ops provider_haproxy_ops;
extern const struct provider_ops provider_kubernetes_ops;

/* def: {"type": "exec"|"http"|"haproxy"|"kubernetes", ...the type's keys}.
 * NULL with err naming the key when def is not usable, or not here: a
 * kubernetes provider without a server outside a cluster. */
struct provider *provider_new(struct event_base *base, const json_t *def, char *err, size_t errlen);
/* Whether def is usable, wherever the provider will run: 0, or -1 with
 * err as provider_new's. What only the machine that runs the deployment
 * has (a kubernetes provider's in-cluster settings) is left to
 * provider_new there. */
int provider_check(const json_t *def, char *err, size_t errlen);
/* The keys of a pipeline file's provider mapping of this type (see
 * provider_ops), or NULL for a type that is none of them. */
const char *const *provider_keys(const char *type);
/* Whether this provider can carry out verb (an exec provider only the
 * actions it has commands for, haproxy no apply). */
int provider_supports(const struct provider *p, enum provider_verb verb);
/* Whether its actions are the pipeline's own commands or requests (exec,
 * http): its abort is then cleanup the pipeline wrote, where a haproxy or
 * kubernetes provider's abort only moves traffic back. */
int provider_runs_own_actions(const struct provider *p);
/* 0, or -1 with err set: an unsupported verb, an action already in flight,
 * a template that does not expand. */
int provider_start(struct provider *p, const struct provider_action *a, provider_done_cb done,
		   void *arg, char *err, size_t errlen);
/* Stops the action in flight, if any; its callback is not called. */
void provider_cancel(struct provider *p);
/* Cancels what is in flight, then frees. NULL is fine. */
void provider_free(struct provider *p);

const char *provider_verb_name(enum provider_verb verb);
/* -1 for an unknown name. */
int provider_verb_parse(const char *name);

/* For the providers: def's key (a number of milliseconds, 1..max) into
 * *out, dflt when absent; -1 with err "provider.<key>: ..." naming max
 * otherwise, which may be less than a pipeline file's durations allow. */
int provider_def_ms(const json_t *def, const char *key, int dflt, int max, int *out, char *err,
		    size_t errlen);
/* For the providers with "actions": {verb: spec}: at least one, each key a
 * verb and each spec one that check accepts; what names a spec in the
 * error ("a command"). */
int provider_def_actions(const json_t *def, const char *what,
			 int (*check)(const char *verb, const json_t *spec, char *err,
				      size_t errlen),
			 char *err, size_t errlen);

/* For the providers: the variables of an action (its env, then SLUICE_ACTION,
 * SLUICE_WEIGHT, SLUICE_COLOR, SLUICE_IMAGE over them, absent ones empty;
 * SLUICE_MAX_SURGE and SLUICE_MAX_UNAVAILABLE only when the action has
 * them). A new object, or NULL when out of memory. */
json_t *provider_action_vars(const struct provider_action *a);

#endif
