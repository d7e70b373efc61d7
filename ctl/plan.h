/* plan: sluicectl plan FILE, offline: what a pipeline file will do.
 *
 * The file is loaded with the agent's own loader (as validate does). The
 * plan lists the CI stages in dependency order, grouped in steps whose
 * stages may run in parallel (a stage's step is one more than the latest
 * step among its needs), then the environments in promotion order with the
 * gates each deployment passes (deny windows, approval) and how it deploys.
 */
#ifndef SLUICE_CTL_PLAN_H
#define SLUICE_CTL_PLAN_H

#include <stdio.h>

#include <jansson.h>

/* The plan of a normalized definition (config.h's def):
 *   {"pipeline": NAME, "steps": [[{"stage", "kind", "needs": [...],
 *     "when": {...}|null}, ...], ...], "environments": [{"name", "after",
 *     "gates": ["deny Sun 03:00-04:00 UTC", "approval (expires 24h)"],
 *     "deploy": "run"|"sh"|"http"}, ...]}
 * NULL when out of memory. */
json_t *ctl_plan_build(const json_t *def);
/* The plan as two tables. -1 on a malformed plan or a write error. */
int ctl_plan_render(FILE *out, const json_t *plan);
/* Loads file and prints its plan (JSON with json); 0, or 1 with the
 * loader's error on err. */
int ctl_plan(const char *file, int json, FILE *out, FILE *err);

#endif
