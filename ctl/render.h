/* render: sluicectl's human-readable output of API responses.
 *
 * Each function takes the jansson value the API returned and writes to a
 * FILE*. Missing or wrongly typed fields print as "-" and every string is
 * sanitized (see fmt.h); only a response whose top level is not the expected
 * shape is refused. Functions return 0, or -1 on a refused response, out of
 * memory or a write error.
 */
#ifndef SLUICE_CTL_RENDER_H
#define SLUICE_CTL_RENDER_H

#include <stdio.h>

#include <jansson.h>

/* The body of GET /api/v1/runs: {"runs": [run, ...], "next": ID, "prev":
 * ID} as an aligned table, then "newer: --after ID" when there is a newer
 * page and "more: --before ID" when there is an older one. */
int ctl_render_runs(FILE *out, const json_t *body);
/* The body of GET /api/v1/runs/{id}: header lines, a table of stages, a
 * table of the ended attempts of each stage that had more than one, and one
 * of the run's environments when it has any (status, times, approval, how
 * long a deny window held it). */
int ctl_render_run(FILE *out, const json_t *run);
/* One element of a log page's "lines": its text and a newline. */
int ctl_render_log_line(FILE *out, const json_t *line);
/* GET /api/v1/pipelines as PIPELINE, REPOSITORY, EVENTS, STAGES and
 * ENVIRONMENTS (the promotion chain). */
int ctl_render_pipelines(FILE *out, const json_t *body);
/* The string key of obj sanitized, or "-" when it is not a string: a word
 * of a one-line answer. malloc'd; NULL when out of memory. */
char *ctl_render_field(const json_t *obj, const char *key);
/* Any value as JSON: indented by two spaces, or one line when compact. */
int ctl_render_json(FILE *out, const json_t *value, int compact);

#endif
