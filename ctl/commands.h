/* commands: what sluicectl's runs, show, logs and cancel do against the API.
 *
 * ctl_commands_run performs the command in a (already parsed and checked)
 * and writes its output to out; on failure it returns -1 with a message for
 * the user in err and the caller exits with status 1.
 */
#ifndef SLUICE_CTL_COMMANDS_H
#define SLUICE_CTL_COMMANDS_H

#include <stddef.h>
#include <stdio.h>

#include "ctl/args.h"

int ctl_commands_run(const struct ctl_args *a, FILE *out, char *err, size_t errlen);

#endif
