/* logcapture: the lines lib/log writes during a unit test, read back.
 * stderr points at a temporary file from logcapture_start until
 * logcapture_text, which gives it back so that a failed assertion shows.
 * Header-only: each test binary is built from its one source file.
 */
#ifndef SLUICE_TESTS_LOGCAPTURE_H
#define SLUICE_TESTS_LOGCAPTURE_H

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

struct logcapture {
	int saved;
	FILE *file;
	char text[8192];
};

/* 0, or -1 with stderr as it was. */
static inline int logcapture_start(struct logcapture *c)
{
	fflush(stderr);
	c->file = tmpfile();
	c->saved = c->file ? dup(STDERR_FILENO) : -1;
	if (c->saved < 0 || dup2(fileno(c->file), STDERR_FILENO) < 0) {
		if (c->saved >= 0)
			close(c->saved);
		if (c->file)
			fclose(c->file);
		c->file = NULL;
		return -1;
	}
	return 0;
}

/* What was logged since logcapture_start (its first bytes). */
static inline const char *logcapture_text(struct logcapture *c)
{
	struct stat st;
	fflush(stderr);
	size_t n = fstat(STDERR_FILENO, &st) == 0 ? (size_t)st.st_size : 0;
	if (n >= sizeof(c->text))
		n = sizeof(c->text) - 1;
	ssize_t got = pread(STDERR_FILENO, c->text, n, 0);
	c->text[got > 0 ? got : 0] = '\0';
	dup2(c->saved, STDERR_FILENO);
	return c->text;
}

static inline void logcapture_stop(struct logcapture *c)
{
	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	fclose(c->file);
}

#endif
