/* control: sluicectl's retry, trigger and pipelines against the API.
 *
 * retry and trigger print the run as the agent answers (as show does);
 * pipelines prints a table of the pipelines the agent has loaded. On failure
 * -1 with a message for the user in err.
 */
#ifndef SLUICE_CTL_CONTROL_H
#define SLUICE_CTL_CONTROL_H

#include <stddef.h>
#include <stdio.h>

#include "ctl/api.h"
#include "ctl/args.h"

int ctl_control_run(struct ctl_api *api, const struct ctl_args *a, FILE *out, char *err,
		    size_t errlen);

#endif
