/* sdnotify: systemd's service notification protocol (see sdnotify.h). */
#include "lib/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The socket's address from $NOTIFY_SOCKET; its length, or -1 (errno set). */
static int notify_address(const char *name, struct sockaddr_un *sa)
{
	size_t len = strlen(name);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((name[0] != '/' && name[0] != '@') || len < 2 || len >= sizeof(sa->sun_path)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(sa->sun_path, name, len);
	if (name[0] == '@')
		sa->sun_path[0] = '\0'; /* the abstract namespace: no NUL at the end */
	return (int)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/'));
}

int sdnotify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	if (!name || !*name)
		return 0;
	int salen = notify_address(name, &sa);
	if (salen < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			   (socklen_t)salen);
	int saved = errno;
	close(fd);
	if (n < 0) {
		errno = saved;
		return -1;
	}
	return 1;
}

/* A decimal number of at most 19 digits, nothing else. */
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9' || strlen(s) > 19)
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int sdnotify_watchdog_usec(uint64_t *usec)
{
	const char *text = getenv("WATCHDOG_USEC");
	const char *pid_text = getenv("WATCHDOG_PID");
	uint64_t v, pid;
	if (!text)
		return 0;
	if (parse_u64(text, &v) < 0 || v == 0) {
		errno = EINVAL;
		return -1;
	}
	if (pid_text) {
		if (parse_u64(pid_text, &pid) < 0) {
			errno = EINVAL;
			return -1;
		}
		if (pid != (uint64_t)getpid())
			return 0; /* meant for another process, such as our parent */
	}
	*usec = v;
	return 1;
}
