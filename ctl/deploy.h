/* deploy: sluicectl's commands on a run's deployment to an environment.
 *
 *   sluicectl promote RUN ENV [--full] [--reason TEXT] [--by NAME]
 *   sluicectl abort RUN ENV [--reason TEXT] [--by NAME]
 *   sluicectl retry RUN ENV [--reason TEXT] [--by NAME]
 *   sluicectl rollback RUN ENV [--reason TEXT] [--by NAME]
 *
 * retry RUN NAME names a stage or an environment: the run's stages are
 * asked for first, so that a stage keeps meaning the stage (retry RUN
 * deploy@ENV always means the deployment). Each prints one line saying what
 * was sent and where the deployment stands (or the API's JSON with --json);
 * on failure -1 with a message for the user in err, such as the agent's
 * "not paused".
 */
#ifndef SLUICE_CTL_DEPLOY_H
#define SLUICE_CTL_DEPLOY_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "ctl/api.h"
#include "ctl/args.h"

int ctl_deploy_run(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		   size_t errlen);

/* Prints one answer of the API. */
typedef int (*ctl_deploy_render_fn)(FILE *out, const json_t *body);

/* POSTs a command on a run's environment (.../environments/{env}/{verb},
 * the run a->run) with a's --reason, --by and --full, and prints the
 * answer with render, or as JSON with --json. On failure -1 with err set;
 * what names the answer when it cannot be printed ("decision"). */
int ctl_deploy_post(struct ctl_api *api, const struct ctl_args *a, const char *env,
		    const char *verb, ctl_deploy_render_fn render, const char *what, FILE *out,
		    char *err, size_t errlen);

/* The answer of POST .../environments/{env}/{promote,abort,retry,rollback}
 * as one line: "run R: promote sent to production by alice; ...". -1 on a
 * refused shape or a write error. */
int ctl_deploy_render(FILE *out, const json_t *body);

#endif
