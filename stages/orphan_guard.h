/* orphan_guard: a small process that kills the children's process groups
 * when the process that started them dies.
 *
 * Under systemd a dead worker's whole cgroup is killed; started by hand, in
 * a container without an init or by another supervisor, a worker killed
 * with SIGKILL (or crashing) would leave its stages running: a build that
 * goes on, or a deployment that runs a second time once the stage's lease
 * has expired and another worker took it. So process_init starts a guard
 * that holds one end of a socket pair and learns each child's process group
 * as it starts and ends; when the other end closes (the process is gone,
 * however it died) it sends SIGKILL to every group still listed, then to
 * every process that carries the process's cookie (env_cookie.h): one that
 * left its group with setsid() is in no group listed, and it would
 * otherwise outlive the process. Then it exits.
 *
 * The guard is no child of the process (it is forked twice, the process's
 * subreaper flag off meanwhile), so that it is never taken for a leftover
 * descendant and "no child at all" still means no stage left behind. It
 * ignores the signals a terminal or a supervisor sends, and does nothing
 * but read, walk /proc, kill and exit, with async-signal-safe calls on its
 * stack: it is forked from a process that may already have threads.
 */
#ifndef SLUICE_ORPHAN_GUARD_H
#define SLUICE_ORPHAN_GUARD_H

#include <sys/types.h>

/* Starts the guard unless it runs. -1 (errno set) when it cannot. */
int orphan_guard_start(void);
/* A guard that died replaced: the old one's end closed, another started. */
int orphan_guard_restart(void);
/* A child's process group started: 0 when the guard has it; else -1 with
 * errno EPIPE, ECONNRESET or ENOTCONN when the guard is gone (restart it,
 * and add every group), another when it cannot be told now. */
int orphan_guard_add(pid_t pgid);
/* The guard's pid (it sends it when it starts), 0 when none runs. */
pid_t orphan_guard_pid(void);
/* A group ended (its leader was reaped and the group killed). */
void orphan_guard_remove(pid_t pgid);

#endif
