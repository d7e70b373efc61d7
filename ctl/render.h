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

/* The body of GET /api/v1/runs: {"runs": [run, ...]} as an aligned table. */
int ctl_render_runs(FILE *out, const json_t *body);
/* The body of GET /api/v1/runs/{id}: header lines, then a table of stages. */
int ctl_render_run(FILE *out, const json_t *run);
/* One element of a log page's "lines": its text and a newline. */
int ctl_render_log_line(FILE *out, const json_t *line);
/* Any value as JSON: indented by two spaces, or one line when compact. */
int ctl_render_json(FILE *out, const json_t *value, int compact);

#endif
