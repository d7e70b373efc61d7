/* version: the sluicectl release, shown by --version and sent as the
 * User-Agent so the agent's logs can tell client versions apart.
 */
#ifndef SLUICE_CTL_VERSION_H
#define SLUICE_CTL_VERSION_H

#define CTL_VERSION "0.1.0"

#endif
