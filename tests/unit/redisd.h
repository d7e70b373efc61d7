/* redisd: a throwaway redis-server for the unit tests that talk to one.
 *
 * It listens on a free loopback port and on a unix socket in its own
 * temporary directory and saves nothing, so a restart after a kill starts
 * empty. redisd_start returns once the server answers PING. Header-only:
 * each test binary is built from its one source file.
 */
#ifndef SLUICE_TESTS_REDISD_H
#define SLUICE_TESTS_REDISD_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"

struct redisd {
	pid_t pid;
	int port;
	char dir[64];
	char sock[128];
	char url[64]; /* "127.0.0.1:<port>" */
};

static inline int redisd_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* A connection of the test's own over TCP; NULL when the server is down. */
static inline redisContext *redisd_connect(const struct redisd *d)
{
	struct timeval tv = {1, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", d->port, tv);

	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Starts the server on the port and directory of redisd_setup, again after
 * redisd_kill too; waits up to 5 s for its PING. */
static inline int redisd_start(struct redisd *d)
{
	char port[16];

	snprintf(port, sizeof(port), "%d", d->port);
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (d->pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--dir", d->dir, "--unixsocket", d->sock,
		       "--loglevel", "warning", (char *)NULL);
		_exit(127);
	}
	int64_t end = clock_mono_ms() + 5000;
	while (clock_mono_ms() < end) {
		redisContext *c = redisd_connect(d);
		if (c) {
			redisReply *rep = redisCommand(c, "PING");
			int ok = rep && rep->type == REDIS_REPLY_STATUS;
			freeReplyObject(rep);
			redisFree(c);
			if (ok)
				return 0;
		}
		usleep(20000);
	}
	return -1;
}

/* A new directory /tmp/sluice-test-<name>-XXXXXX, a free port, and the
 * server started there. */
static inline int redisd_setup(struct redisd *d, const char *name)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/sluice-test-%s-XXXXXX", name);
	if (!mkdtemp(d->dir))
		return -1;
	snprintf(d->sock, sizeof(d->sock), "%s/redis.sock", d->dir);
	d->port = redisd_free_port();
	snprintf(d->url, sizeof(d->url), "127.0.0.1:%d", d->port);
	if (d->port < 0)
		return -1;
	return redisd_start(d);
}

static inline void redisd_kill(struct redisd *d, int sig)
{
	if (d->pid > 0) {
		kill(d->pid, sig);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
}

/* Stops the server and removes its directory. */
static inline void redisd_teardown(struct redisd *d)
{
	redisd_kill(d, SIGTERM);
	unlink(d->sock);
	rmdir(d->dir);
}

#endif
