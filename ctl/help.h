/* help: sluicectl's usage text, general and per command.
 *
 * The full texts are for --help and help COMMAND (stdout); the brief one
 * follows a usage error (stderr). The caller picks the stream.
 */
#ifndef SLUICE_CTL_HELP_H
#define SLUICE_CTL_HELP_H

#include <stdio.h>

#include "ctl/args.h"

void ctl_help_usage(FILE *out);
/* Two lines for after a usage error: the synopsis and where to read more. */
void ctl_help_brief(FILE *out);
/* Help for one command; -1 for CTL_CMD_NONE. */
int ctl_help_command(FILE *out, enum ctl_command cmd);

#endif
