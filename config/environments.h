/* environments: the environments: section of a pipeline file.
 *
 *   environments:
 *     development: {deploy: {sh: ./deploy.sh dev}, vars: {DOMAIN: dev.example.com}}
 *     staging:
 *       after: development
 *       approval: {required: true, expires: 24h}      (or: approval: required)
 *       windows: {deny: ["Sun 03:00-04:00 UTC", "Mon-Fri 18:00-08:00 UTC"]}
 *       deploy: {run: [./deploy.sh, staging], timeout: 10m}
 *     production:
 *       after: staging
 *       strategy: {type: Canary, steps: [...]}   (stages/rollout.h: instead of deploy,
 *       provider: {...}                            with image, traffic, hooks, checks)
 *
 * The environments form one chain through after: (exactly one comes first,
 * no two come after the same one, no cycles). Each deployment becomes the
 * stage "deploy@<env>" of def.stages (kind deploy, "env", no needs, the
 * pipeline's vars and secrets overridden by the environment's), started only
 * by promotion; with a strategy, the stage has no command but "rollout"
 * (rollout_load) and no timeout; def.environments lists the chain in order:
 *   {"<env>": {"after": "<env>"|null, "approval": {"required": bool,
 *              "expires_s": n (0: never)}, "windows": [window_to_json...]}}
 */
#ifndef SLUICE_CONFIG_ENVIRONMENTS_H
#define SLUICE_CONFIG_ENVIRONMENTS_H

#include <jansson.h>

#include "config/check.h"
#include "config/doc.h"

/* The stage name of an environment's deployment is this prefix + the name. */
#define ENVIRONMENTS_STAGE_PREFIX "deploy@"

/* What the loader of the pipeline file lends to this section: its stage and
 * vars/secrets loaders, so that a deployment is checked as any stage is. */
struct environments_loader {
	const struct config_check *ck;
	const char *dir; /* of the pipeline file, absolute: relative paths are in it */
	json_t *def;	 /* with "vars", "secrets" and "stages" loaded */
	/* The stage spec at node (its key is "deploy") → *out, kind deploy. */
	int (*stage)(void *arg, const struct config_doc_node *spec, json_t **out);
	/* A vars: (secrets == 0) or secrets: mapping → NAME: value into out. */
	int (*names)(void *arg, const struct config_doc_node *m, int secrets, json_t *out);
	void *arg;
};

/* Absent section: nothing is added. */
int environments_load(const struct environments_loader *l, const struct config_doc_node *top);

#endif
