/* lifecycle: one run of the registry lifecycle policy.
 *
 * Reads the state file and the repository, plans with regpolicy, sends the
 * DELETE requests (none in a dry run), writes the state file back (not in a
 * dry run) and reports. The return value is the exit status: 0 when every
 * delete the plan named was done (or found done already), 1 otherwise.
 */
#ifndef SLUICE_LIFECYCLE_H
#define SLUICE_LIFECYCLE_H

#include <stdio.h>

#include "registry/regargs.h"

int lifecycle_run(const struct regargs *a, FILE *out, FILE *err);

#endif
