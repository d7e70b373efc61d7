/* env_cookie: marking children by their environment, and killing the marked
 * (env_cookie.h). */
#include "stages/env_cookie.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/hex.h"
#include "lib/random.h"

#define COOKIE_BYTES 16
/* Walks of /proc at most, and the pause after one that killed some: those
 * then die (and read as empty) rather than be found again at once. */
#define KILL_PASSES   50
#define KILL_PAUSE_MS 10

static char entry_text[sizeof(ENV_COOKIE_NAME "=") + 2 * COOKIE_BYTES];
static int drawn;

const char *env_cookie_entry(void)
{
	unsigned char bytes[COOKIE_BYTES];

	if (!drawn) {
		drawn = 1;
		if (random_bytes(bytes, sizeof(bytes)) == 0) {
			memcpy(entry_text, ENV_COOKIE_NAME "=", sizeof(ENV_COOKIE_NAME));
			hex_encode(bytes, sizeof(bytes), entry_text + sizeof(ENV_COOKIE_NAME));
		}
	}
	return entry_text;
}

int env_cookie_is_set_by(const char *entry)
{
	return strncmp(entry, ENV_COOKIE_NAME "=", sizeof(ENV_COOKIE_NAME)) == 0;
}

/* --- in a process forked from one with threads: only async-signal-safe
 * calls from here on, and nothing but the stack. */

/* Looks in the environment read from fd (NUL-separated entries, of any
 * length) for entry, len bytes, alone or followed by "-" and a child's
 * serial (env_cookie_child_entry): 1 when found, with *serial the number
 * (ENV_COOKIE_NO_SERIAL when there is none), else 0. */
static int environ_find(int fd, const char *entry, size_t len, unsigned long *serial)
{
	char buf[4096];
	/* Bytes of the current entry that match entry so far; len + 1 once
	 * the "-" after it is read, SIZE_MAX once it cannot match. */
	size_t at = 0;
	unsigned long n_serial = ENV_COOKIE_NO_SERIAL;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c == '\0') {
				if (at == len ||
				    (at == len + 1 && n_serial != ENV_COOKIE_NO_SERIAL))
					goto found;
				at = 0;
				n_serial = ENV_COOKIE_NO_SERIAL;
			} else if (at < len && c == entry[at]) {
				at++;
			} else if (at == len && c == '-') {
				at = len + 1;
			} else if (at == len + 1 && c >= '0' && c <= '9') {
				unsigned long d = (unsigned long)(c - '0');
				unsigned long sofar =
				    n_serial == ENV_COOKIE_NO_SERIAL ? 0 : n_serial;
				/* Never ENV_COOKIE_NO_SERIAL itself. */
				if (sofar > (ULONG_MAX - 1 - d) / 10)
					at = SIZE_MAX;
				else
					n_serial = sofar * 10 + d;
			} else {
				at = SIZE_MAX;
			}
		}
	}
	/* The last entry may lack its NUL (a process that wrote over it). */
	if (at == len || (at == len + 1 && n_serial != ENV_COOKIE_NO_SERIAL))
		goto found;
	return 0;
found:
	if (serial != NULL)
		*serial = at == len ? ENV_COOKIE_NO_SERIAL : n_serial;
	return 1;
}

/* The pid a /proc entry's name is, or 0 (not a process). */
static pid_t pid_of(const char *name)
{
	long pid = 0;

	if (*name == '\0')
		return 0;
	for (; *name != '\0'; name++) {
		if (*name < '0' || *name > '9' || pid > INT32_MAX / 10)
			return 0;
		pid = pid * 10 + (*name - '0');
	}
	return (pid_t)pid;
}

/* Kills pid when it is of uid and holds entry: 1 when it was killed. The
 * pidfd, taken before the environment is read, is what is signalled: a
 * process that ended meanwhile may have handed its pid on. Without pidfds
 * (a kernel or a seccomp filter that refuses them) the pid is. */
static int kill_if_marked(int proc, const char *name, pid_t pid, uid_t uid, const char *entry,
			  size_t len)
{
	char path[32];
	size_t nlen = strlen(name);
	struct stat st;
	int killed = 0;

	if (nlen + sizeof("/environ") > sizeof(path))
		return 0;
	memcpy(path, name, nlen);
	memcpy(path + nlen, "/environ", sizeof("/environ"));
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0 && errno == ESRCH)
		return 0;
	int fd = openat(proc, path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (fstat(fd, &st) == 0 && st.st_uid == uid && environ_find(fd, entry, len, NULL))
			killed =
			    (pidfd >= 0 ? syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0)
					: kill(pid, SIGKILL)) == 0;
		close(fd);
	}
	if (pidfd >= 0)
		close(pidfd);
	return killed;
}

/* One walk of /proc: the number killed. */
static int kill_pass(const char *entry, size_t len, pid_t self, uid_t uid)
{
	/* getdents64's records, as opendir would allocate. */
	_Alignas(struct dirent64) char buf[8192];
	int killed = 0;
	long n;

	int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc < 0)
		return 0;
	while ((n = syscall(SYS_getdents64, proc, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			const struct dirent64 *d = (const struct dirent64 *)(buf + off);
			pid_t pid = pid_of(d->d_name);
			if (pid > 0 && pid != self)
				killed += kill_if_marked(proc, d->d_name, pid, uid, entry, len);
			off += d->d_reclen;
		}
	}
	close(proc);
	return killed;
}

int env_cookie_kill(const char *entry)
{
	size_t len = strlen(entry);
	pid_t self = getpid();
	uid_t uid = geteuid();
	int total = 0;

	if (len == 0)
		return 0;
	for (int pass = 0; pass < KILL_PASSES; pass++) {
		int killed = kill_pass(entry, len, self, uid);
		if (killed <= 0)
			break;
		total += killed;
		poll(NULL, 0, KILL_PAUSE_MS);
	}
	return total;
}

/* --- back in a process of one thread. */

const char *env_cookie_child_entry(char *buf, size_t size, unsigned long serial)
{
	const char *entry = env_cookie_entry();
	if (*entry == '\0' || snprintf(buf, size, "%s-%lu", entry, serial) >= (int)size)
		return "";
	return buf;
}

int env_cookie_serial_of(pid_t pid, unsigned long *serial)
{
	const char *entry = env_cookie_entry();
	char path[64];

	if (*entry == '\0')
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	/* A process its user may not read (non-dumpable) fails the open:
	 * EACCES. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int found = environ_find(fd, entry, strlen(entry), serial);
	close(fd);
	if (found && *serial == ENV_COOKIE_NO_SERIAL)
		found = 0;
	return found;
}
