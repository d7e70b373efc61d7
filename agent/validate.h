/* validate: POST /api/v1/pipelines/validate, the agent's own validator over
 * a pipeline file sent as the request body.
 *
 * The file is checked as if it were in pipelines_dir (relative paths such as
 * secret_file start there) and nothing is loaded: 200 {"valid": true,
 * "pipeline": {...}} or 422 with the error and its position.
 */
#ifndef SLUICE_VALIDATE_H
#define SLUICE_VALIDATE_H

#include <event2/http.h>
#include <jansson.h>

struct agent;

/* name: what the file is called in messages (?name=, default
 * "pipeline.yaml"). */
void validate_post(struct agent *a, struct evhttp_request *req, const char *name);

/* "file:line:col: key.path: message" as {"file", "line", "column", "path",
 * "message"} (path "" when the message has none); for tests. */
json_t *validate_error_object(const char *text);

#endif
