/* file: resolving and reading files named in configuration. */
#include "config/file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *config_file_dir(const char *file)
{
	const char *slash = file ? strrchr(file, '/') : NULL;
	char *cwd, *out;
	size_t dlen;

	if (slash && file[0] == '/')
		return strndup(file, slash == file ? 1 : (size_t)(slash - file));
	cwd = getcwd(NULL, 0);
	if (!cwd || !slash)
		return cwd;
	dlen = (size_t)(slash - file);
	out = malloc(strlen(cwd) + 1 + dlen + 1);
	if (out)
		sprintf(out, "%s/%.*s", cwd, (int)dlen, file);
	free(cwd);
	return out;
}

static int is_credential(const char *path)
{
	return strncmp(path, CONFIG_FILE_CREDENTIALS, strlen(CONFIG_FILE_CREDENTIALS)) == 0;
}

char *config_file_resolve(const char *dir, const char *path)
{
	char *out;

	if (path[0] == '/' || is_credential(path))
		return strdup(path);
	out = malloc(strlen(dir) + 1 + strlen(path) + 1);
	if (out)
		sprintf(out, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", path);
	return out;
}

char *config_file_expand(const char *path)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char *out = NULL;

	if (!is_credential(path)) {
		out = strdup(path);
	} else if (!dir || !*dir) {
		errno = ENOENT;
		return NULL;
	} else if (asprintf(&out, "%s/%s", dir, path + strlen(CONFIG_FILE_CREDENTIALS)) < 0) {
		out = NULL;
	}
	if (!out)
		errno = ENOMEM;
	return out;
}

const char *config_file_expand_error(int errnum)
{
	return errnum == ENOENT ? "CREDENTIALS_DIRECTORY is not set" : strerror(errnum);
}

/* O_NONBLOCK so that a FIFO named by mistake cannot hang the load. */
static int open_regular(const char *configured, struct stat *st)
{
	char *path = config_file_expand(configured);
	int fd, e;

	if (!path)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	e = errno;
	free(path);
	if (fd < 0) {
		errno = e;
		return -1;
	}
	if (fstat(fd, st) < 0) {
		e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	return fd;
}

int config_file_read(const char *path, size_t max, char **out, size_t *outlen)
{
	struct stat st;
	size_t len = 0;
	char *buf;
	int fd = open_regular(path, &st);

	if (fd < 0)
		return -1;
	/* Room for the file as it stands and a byte to see it end; not max,
	 * which malloc would map and unmap, raising its threshold for keeping
	 * freed memory for the rest of the process's life. */
	size_t cap = ((uintmax_t)st.st_size < max ? (size_t)st.st_size : max) + 1;
	buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	for (;;) {
		if (len == cap) {
			/* Grown since fstat: more room, up to a byte past max. */
			size_t grown = cap > (max + 1) / 2 ? max + 1 : 2 * cap;
			char *more = realloc(buf, grown + 1);
			if (!more) {
				errno = ENOMEM;
				goto fail;
			}
			buf = more;
			cap = grown;
		}
		ssize_t r = read(fd, buf + len, cap - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > max) {
			errno = EFBIG;
			goto fail;
		}
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail : {
	int e = errno;

	free(buf);
	close(fd);
	errno = e;
	return -1;
}
}

char *config_file_read_token(const char *path, size_t max)
{
	char *buf = NULL;
	size_t len;

	if (config_file_read(path, max, &buf, &len) < 0)
		return NULL;
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	size_t skip = strspn(buf, " \t\r\n");
	if (skip == len || strpbrk(buf + skip, "\r\n")) {
		explicit_bzero(buf, len);
		free(buf);
		errno = EBADMSG;
		return NULL;
	}
	memmove(buf, buf + skip, len - skip + 1);
	return buf;
}

const char *config_file_token_error(int errnum)
{
	return errnum == EBADMSG ? "must hold one token on one line" : strerror(errnum);
}

int config_file_check_readable(const char *path)
{
	struct stat st;
	int fd;

	if (is_credential(path))
		return 0;
	fd = open_regular(path, &st);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}
