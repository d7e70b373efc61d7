/* orphan_guard: killing a dead process's children (orphan_guard.h). */
#include "stages/orphan_guard.h"

#include "lib/fdlimit.h"
#include "stages/env_cookie.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* At most this many groups are watched at once: worker.concurrency is at
 * most 1024, and a stage has one group. */
#define GUARD_GROUPS 4096
/* How long a new guard may take to say it runs. */
#define GUARD_START_S 5

/* This side of the pair, -1: no guard; and the guard's pid. */
static int guard_fd = -1;
static pid_t guard_pid;

/* In the guard: only async-signal-safe calls from here on. */
static void guard_main(int fd)
{
	static pid_t groups[GUARD_GROUPS];
	size_t n = 0;
	struct sigaction ign = {.sa_handler = SIG_IGN};
	int32_t msg;

	/* "sluice-guard" in ps and top, and no directory kept busy. */
	prctl(PR_SET_NAME, "sluice-guard");
	if (chdir("/") < 0)
		_exit(1);
	sigemptyset(&ign.sa_mask);
	sigaction(SIGINT, &ign, NULL);
	sigaction(SIGTERM, &ign, NULL);
	sigaction(SIGHUP, &ign, NULL);
	sigaction(SIGQUIT, &ign, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	msg = (int32_t)getpid();
	if (send(fd, &msg, sizeof(msg), MSG_NOSIGNAL) != sizeof(msg))
		_exit(1);
	for (;;) {
		ssize_t r = recv(fd, &msg, sizeof(msg), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (r != sizeof(msg))
			continue;
		if (msg > 1 && n < GUARD_GROUPS) {
			groups[n++] = msg;
		} else if (msg < 0) {
			for (size_t i = 0; i < n; i++) {
				if (groups[i] == -msg) {
					groups[i] = groups[--n];
					break;
				}
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		kill(-groups[i], SIGKILL);
	/* Then what left its group but kept its environment. */
	env_cookie_kill(env_cookie_entry());
	_exit(0);
}

/* In the guard's parent, forked from the process: the guard forked, it
 * exits at once, so that the guard is orphaned to whoever reaps above.
 * max_fd bounds the descriptors the guard closes one by one where
 * close_range is refused. */
static void guard_fork(int fd, int max_fd)
{
	pid_t pid = fork();
	if (pid == 0) {
		/* Only its end of the pair: the rest (the process's sockets, its
		 * children's pipes) must close when the process's do. */
		if (dup2(fd, 3) < 0)
			_exit(1);
		if (close_range(4, ~0U, 0) < 0)
			for (int i = 4; i < max_fd; i++)
				close(i);
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(devnull, 2);
			if (devnull > 3)
				close(devnull);
		}
		guard_main(3);
	}
	_exit(pid < 0 ? 1 : 0);
}

/* The guard's first message, its pid, which comes at once: a guard stopped
 * before it (SIGSTOP) must not stop this process, and a signal caught
 * meanwhile (a stage's SIGCHLD) must not fail the start, as a receive with
 * a timeout is not restarted after one. */
static ssize_t recv_started(int fd, int32_t *started)
{
	struct timespec end, now;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += GUARD_START_S;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long left_us = (long long)(end.tv_sec - now.tv_sec) * 1000000 +
				    (end.tv_nsec - now.tv_nsec) / 1000;
		if (left_us <= 0) {
			errno = EAGAIN;
			return -1;
		}
		struct timeval tv = {(time_t)(left_us / 1000000), (suseconds_t)(left_us % 1000000)};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t r = recv(fd, started, sizeof(*started), 0);
		if (r >= 0 || errno != EINTR)
			return r;
	}
}

int orphan_guard_start(void)
{
	int sv[2], reaper = 0, status = 0;

	if (guard_fd >= 0)
		return 0;
	/* Drawn here, so that the guard knows the one the children carry. */
	env_cookie_entry();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	/* A subreaper would get the orphaned guard back as its own child. */
	prctl(PR_GET_CHILD_SUBREAPER, &reaper);
	if (reaper)
		prctl(PR_SET_CHILD_SUBREAPER, 0);
	int max_fd = fdlimit_walk_max();
	pid_t pid = fork();
	if (pid == 0)
		guard_fork(sv[1], max_fd);
	int e = errno;
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	if (reaper)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	close(sv[1]);
	int32_t started = 0;
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    recv_started(sv[0], &started) != sizeof(started)) {
		close(sv[0]);
		errno = pid < 0 ? e : ECHILD;
		return -1;
	}
	guard_fd = sv[0];
	guard_pid = started;
	return 0;
}

int orphan_guard_restart(void)
{
	if (guard_fd >= 0) {
		close(guard_fd);
		guard_fd = -1;
	}
	return orphan_guard_start();
}

/* Tells the guard pgid started (msg pgid) or ended (msg -pgid). */
static int tell(pid_t pgid, int32_t msg)
{
	if (pgid <= 1) {
		/* kill(-1) would be every process there is. */
		errno = EINVAL;
		return -1;
	}
	if (guard_fd < 0) {
		errno = ENOTCONN;
		return -1;
	}
	return send(guard_fd, &msg, sizeof(msg), MSG_NOSIGNAL | MSG_DONTWAIT) == sizeof(msg) ? 0
											     : -1;
}

int orphan_guard_add(pid_t pgid)
{
	return tell(pgid, (int32_t)pgid);
}

pid_t orphan_guard_pid(void)
{
	return guard_fd >= 0 ? guard_pid : 0;
}

void orphan_guard_remove(pid_t pgid)
{
	tell(pgid, -(int32_t)pgid);
}
