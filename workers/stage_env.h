/* stage_env: the variables, command and environment a stage runs with.
 *
 * Variables are the run's (SLUICE_RUN_ID, SLUICE_PIPELINE, SLUICE_REPO,
 * SLUICE_REF, SLUICE_SHA, SLUICE_SHA_SHORT, SLUICE_STAGE, SLUICE_ATTEMPT,
 * SLUICE_EVENT; SLUICE_ENV for an environment's deployment) and the
 * pipeline's vars, or the deployment's own; they expand ${NAME} in run: arguments
 * and are exported. The environment adds the pipeline's secrets, read from
 * their files, and from the worker's own environment only PATH, HOME, LANG
 * and the names the stage lists in inherit_env; nothing else leaks in
 * (process_spawn adds the worker's cookie, stages/env_cookie.h).
 */
#ifndef SLUICE_STAGE_ENV_H
#define SLUICE_STAGE_ENV_H

#include <jansson.h>
#include <stddef.h>

/* run: the run hash as a JSON object (with "def" decoded separately), and
 * "outputs": {"<stage>": {"KEY": "value"}} of the stages that wrote some,
 * which become the variables "<stage>.<KEY>" (expanded in arguments and
 * templates, not exported). */
json_t *stage_env_vars(const json_t *run, const json_t *def, const char *stage, int attempt);
/* The stages of def whose outputs a stage of its run can use: those that a
 * ${<stage>.<KEY>} anywhere in def names (a template, an argument; outputs
 * are used in no other way), as a JSON object whose keys are their names;
 * NULL when out of memory. A claim reads only these stages' outputs. */
json_t *stage_env_output_sources(const json_t *def);
/* NAME → value of every secret of def (or of a stage definition that has
 * its own "secrets", as an environment's deployment does), read from its
 * file (a trailing newline dropped; a "${CREDENTIALS_DIRECTORY}/" path is
 * this worker's credential, see config/file.h). The error names the file, never a value.
 * Free with stage_env_secrets_free, which wipes the values. */
json_t *stage_env_secrets(const json_t *def, char *err, size_t errlen);
void stage_env_secrets_free(json_t *secrets);
/* NULL-terminated "NAME=value" strings, malloc'd; free with strv_free (lib/strv.h).
 * Later sources win over earlier ones: inherited, vars, secrets. stage: the
 * stage's definition (for inherit_env). */
char **stage_env_build(const json_t *vars, const json_t *secrets, const json_t *stage, char *err,
		       size_t errlen);
/* The command of a run: or sh: stage: the run: list with ${NAME} expanded,
 * or /bin/sh -e -c SCRIPT with the script as written (the shell expands its
 * variables from the environment). NULL-terminated, malloc'd. */
char **stage_env_argv(const json_t *stage, const json_t *vars, char *err, size_t errlen);

#endif
