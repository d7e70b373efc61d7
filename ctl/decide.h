/* decide: sluicectl's approve and reject of a promotion waiting for an
 * approval.
 *
 *   sluicectl approve RUN ENV --reason TEXT [--by NAME]
 *
 * Prints one line with the decision and where the promotion stands after
 * it (or the API's JSON with --json). On failure -1 with a message for the
 * user in err, such as the agent's "not waiting for approval".
 */
#ifndef SLUICE_CTL_DECIDE_H
#define SLUICE_CTL_DECIDE_H

#include <stddef.h>
#include <stdio.h>

#include "ctl/api.h"
#include "ctl/args.h"

int ctl_decide_run(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		   size_t errlen);

#endif
