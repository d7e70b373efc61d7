/* cli: sluicectl from argv to exit status, with its streams as parameters
 * so that tests can drive it like a user would.
 *
 * Returns 0 on success, 1 on failure (message on err), 2 on a usage error
 * (message and usage on err). curl_global_init must have been called.
 */
#ifndef SLUICE_CTL_CLI_H
#define SLUICE_CTL_CLI_H

#include <stdio.h>

int ctl_cli_main(int argc, char **argv, FILE *out, FILE *err);

#endif
