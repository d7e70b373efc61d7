/* unprivileged: a test of what file permissions forbid runs as "nobody"
 * when started as root, for whom they forbid nothing; sluice's services run
 * as a user of their own. Header-only, like tmpdir.h.
 */
#ifndef SLUICE_TESTS_UNPRIVILEGED_H
#define SLUICE_TESTS_UNPRIVILEGED_H

#include <grp.h>
#include <stdlib.h>
#include <unistd.h>

#define UNPRIVILEGED_ID 65534

/* Drops root for the rest of the process (HOME becomes /tmp, for git): 0,
 * or -1. A process that is not root is left as it is. */
static inline int unprivileged(void)
{
	if (geteuid() != 0)
		return 0;
	if (setenv("HOME", "/tmp", 1) < 0 || setgroups(0, NULL) < 0 ||
	    setgid(UNPRIVILEGED_ID) < 0 || setuid(UNPRIVILEGED_ID) < 0)
		return -1;
	return 0;
}

#endif
