/* pidgone: whether a process a test left behind has ended, for a test that
 * is a child subreaper and so reaps it (and whatever else it was left).
 * Header-only, like tmpdir.h.
 */
#ifndef SLUICE_TESTS_PIDGONE_H
#define SLUICE_TESTS_PIDGONE_H

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

/* Whether pid is gone: reaped here (a subreaper's orphan) or never ours. */
static inline int pid_gone(pid_t pid)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* Whether pid is gone within about 3 s. */
static inline int pid_wait_gone(pid_t pid)
{
	for (int i = 0; i < 300; i++) {
		if (pid_gone(pid))
			return 1;
		usleep(10000);
	}
	return 0;
}

/* SIGKILLs those of pids still there: a test that failed must not leave
 * them behind. */
static inline void pid_kill_left(const pid_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!pid_gone(pids[i]))
			kill(pids[i], SIGKILL);
}

#endif
