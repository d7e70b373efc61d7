/* fdlimit: as many open files as the system allows this process.
 *
 * Every connection the agent holds is a file descriptor, and the soft limit
 * is often 1024 where the hard limit is far higher (systemd: 524288). At
 * start the soft limit is raised to the hard one, as Go's runtime and nginx
 * do. Commands started from here get the limit they would have had
 * (fdlimit_child): programs built around select() fail above 1024.
 */
#ifndef SLUICE_FDLIMIT_H
#define SLUICE_FDLIMIT_H

#include <sys/resource.h>

/* Raises the soft limit of open files to the hard limit. Returns the limit
 * now in force, or -1 when it cannot be read (errno set). */
long fdlimit_raise(void);

/* 1 and *out set to the limit to restore in a new child when fdlimit_raise
 * changed it, 0 when it did not. */
int fdlimit_child(struct rlimit *out);

/* The descriptors a child walks one by one where close_range(2) is refused
 * (a kernel before 5.9, a seccomp filter): below the soft limit, and at
 * most 65536, which a loop of that many system calls still does at once. */
int fdlimit_walk_max(void);

#endif
