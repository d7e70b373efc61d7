/* stage_env: the variables and environment a stage runs with.
 *
 * Variables are the run's (SLUICE_RUN_ID, SLUICE_PIPELINE, SLUICE_REPO,
 * SLUICE_REF, SLUICE_SHA, SLUICE_SHA_SHORT, SLUICE_STAGE, SLUICE_ATTEMPT,
 * SLUICE_EVENT) and the pipeline's vars; they expand ${NAME} in arguments and
 * are exported. The environment adds the pipeline's secrets, read from their
 * files, and from the worker's own environment only PATH, HOME and LANG.
 */
#ifndef SLUICE_STAGE_ENV_H
#define SLUICE_STAGE_ENV_H

#include <jansson.h>
#include <stddef.h>

/* run: the run hash as a JSON object (with "def" decoded separately). */
json_t *stage_env_vars(const json_t *run, const json_t *def, const char *stage, int attempt);
/* NULL-terminated "NAME=value" strings, malloc'd; free with stage_env_free. */
char **stage_env_build(const json_t *vars, const json_t *def, char *err, size_t errlen);
/* argv of the stage with ${NAME} expanded; NULL-terminated, malloc'd. */
char **stage_env_argv(const json_t *run_list, const json_t *vars, char *err, size_t errlen);
void stage_env_free(char **list);

#endif
