/* stage_outputs: $SLUICE_OUTPUT's KEY=VALUE lines read into a JSON object. */
#include "workers/stage_outputs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MAX 128

/* Letters, digits, '_' and '-', not starting with a digit or '-'. */
static int output_key(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			 (i > 0 && ((c >= '0' && c <= '9') || c == '-'));
		if (!ok)
			return 0;
	}
	return n > 0 && n <= KEY_MAX;
}

static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "a device";
	return "not a regular file";
}

/* At most STAGE_OUTPUTS_MAX + 1 bytes of the file into buf: the bytes
 * read, or -1 with err set. */
static ssize_t read_file(const char *path, char *buf, char *err, size_t errlen)
{
	struct stat st;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 && errno == ELOOP) {
		snprintf(err, errlen, "$SLUICE_OUTPUT is a symbolic link, not a regular file");
		return -1;
	}
	if (fd < 0 || fstat(fd, &st) < 0)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "$SLUICE_OUTPUT is %s, not a regular file",
			 file_kind(st.st_mode));
		close(fd);
		return -1;
	}
	while (len <= STAGE_OUTPUTS_MAX) {
		ssize_t n = read(fd, buf + len, STAGE_OUTPUTS_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	return (ssize_t)len;
fail:
	snprintf(err, errlen, "cannot read $SLUICE_OUTPUT: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Whether mask would hide part of text. */
static int holds_secret(const struct logmask *mask, const char *text)
{
	char *masked = mask ? logmask_text(mask, text) : NULL;
	int differs = masked && strcmp(masked, text) != 0;

	free(masked);
	return differs;
}

/* One line (without its newline) into out, or a note of why it is left out. */
static void take_line(json_t *out, const struct logmask *mask, const char *line, size_t len,
		      stage_outputs_note_cb note, void *arg)
{
	char text[300];
	const char *eq;

	/* A CRLF file (written on Windows) ends its lines so; a CR within a
	 * value is part of it. */
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0)
		return;
	if (memchr(line, '\0', len)) {
		note("$SLUICE_OUTPUT: a line holds a NUL byte, left out", arg);
		return;
	}
	eq = memchr(line, '=', len);
	if (!eq || !output_key(line, (size_t)(eq - line))) {
		/* Whole: the caller masks the secrets in it, and one that a cut
		 * went through would be left partly shown. */
		char *whole = NULL;
		if (asprintf(&whole, "$SLUICE_OUTPUT: not KEY=VALUE, left out: %.*s", (int)len,
			     line) < 0)
			return;
		note(whole, arg);
		free(whole);
		return;
	}
	char key[KEY_MAX + 1];
	memcpy(key, line, (size_t)(eq - line));
	key[eq - line] = '\0';
	json_t *value = json_stringn(eq + 1, len - (size_t)(eq + 1 - line));
	if (!value) {
		snprintf(text, sizeof(text),
			 "$SLUICE_OUTPUT: the value of %s is not UTF-8, left out", key);
		note(text, arg);
		return;
	}
	if (holds_secret(mask, json_string_value(value))) {
		json_decref(value);
		snprintf(text, sizeof(text),
			 "$SLUICE_OUTPUT: the value of %s holds a secret, left out", key);
		note(text, arg);
		return;
	}
	json_object_set_new(out, key, value);
}

int stage_outputs_read(const char *path, const struct logmask *mask, char **json,
		       stage_outputs_note_cb note, void *arg, char *err, size_t errlen)
{
	char *buf = malloc(STAGE_OUTPUTS_MAX + 1);
	json_t *out = json_object();
	ssize_t got;
	size_t len;

	*json = NULL;
	if (!buf || !out) {
		snprintf(err, errlen, "out of memory reading $SLUICE_OUTPUT");
		goto fail;
	}
	got = read_file(path, buf, err, errlen);
	if (got < 0)
		goto fail;
	len = (size_t)got;
	if (len > STAGE_OUTPUTS_MAX) {
		note("$SLUICE_OUTPUT is larger than 64 KiB: the rest is left out", arg);
		/* The line the limit cuts goes with the rest. */
		const char *nl = memrchr(buf, '\n', STAGE_OUTPUTS_MAX);
		len = nl ? (size_t)(nl - buf) + 1 : 0;
	}
	for (size_t start = 0; start < len;) {
		const char *nl = memchr(buf + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - buf) : len;
		take_line(out, mask, buf + start, end - start, note, arg);
		start = end + 1;
	}
	if (json_object_size(out) > 0 && !(*json = json_dumps(out, JSON_COMPACT))) {
		snprintf(err, errlen, "out of memory reading $SLUICE_OUTPUT");
		goto fail;
	}
	free(buf);
	json_decref(out);
	return 0;
fail:
	free(buf);
	json_decref(out);
	return -1;
}
