/* stage_outputs: $SLUICE_OUTPUT's outputs read into a JSON object. */
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

/* Drops a CR that ends a line: a CRLF file (written on Windows) ends its
 * lines so; a CR within a value is part of it. */
static size_t without_cr(const char *line, size_t len)
{
	return len > 0 && line[len - 1] == '\r' ? len - 1 : len;
}

/* Whether mask would hide part of text[0, len). */
static int span_holds_secret(const struct logmask *mask, const char *text, size_t len)
{
	char *copy = mask ? strndup(text, len) : NULL;
	int held = copy && holds_secret(mask, copy);
	free(copy);
	return held;
}

/* A line left out whole, with why: the caller masks the secrets in it, and
 * one that a cut went through would be left partly shown. */
static void note_line(const char *why, const char *line, size_t len, stage_outputs_note_cb note,
		      void *arg)
{
	char *whole = NULL;
	if (asprintf(&whole, "$SLUICE_OUTPUT: %s, left out: %.*s", why, (int)len, line) < 0)
		return;
	note(whole, arg);
	free(whole);
}

/* The output key = value[0, vlen) into out, or a note of why it is left
 * out. whole[0, wlen) is what the file said, for a secret written across
 * the key and the value. */
static void take_output(json_t *out, const struct logmask *mask, const char *key, const char *value,
			size_t vlen, const char *whole, size_t wlen, stage_outputs_note_cb note,
			void *arg)
{
	char text[300];

	if (memchr(value, '\0', vlen)) {
		snprintf(text, sizeof(text),
			 "$SLUICE_OUTPUT: the value of %s holds a NUL byte, left out", key);
		note(text, arg);
		return;
	}
	json_t *v = json_stringn(value, vlen);
	if (!v) {
		snprintf(text, sizeof(text),
			 "$SLUICE_OUTPUT: the value of %s is not UTF-8, left out", key);
		note(text, arg);
		return;
	}
	if (holds_secret(mask, json_string_value(v))) {
		json_decref(v);
		snprintf(text, sizeof(text),
			 "$SLUICE_OUTPUT: the value of %s holds a secret, left out", key);
		note(text, arg);
		return;
	}
	/* A secret written across the '=': neither part holds it whole. */
	if (whole && span_holds_secret(mask, whole, wlen)) {
		json_decref(v);
		snprintf(text, sizeof(text),
			 "$SLUICE_OUTPUT: the line of %s holds a secret, left out", key);
		note(text, arg);
		return;
	}
	json_object_set_new(out, key, v);
}

/* A line's output name, key[0, n), checked: the name is shown, so one
 * holding a secret is left out without it. */
static int name_ok(const struct logmask *mask, const char *line, size_t len, const char *key,
		   size_t n, stage_outputs_note_cb note, void *arg)
{
	if (!output_key(key, n)) {
		note_line("not KEY=VALUE or KEY<<DELIMITER", line, len, note, arg);
		return 0;
	}
	if (span_holds_secret(mask, key, n)) {
		note("$SLUICE_OUTPUT: an output's name holds a secret, left out", arg);
		return 0;
	}
	return 1;
}

/* The outputs of buf[0, len), line by line, into out. As $GITHUB_OUTPUT:
 * KEY=VALUE, or KEY<<DELIMITER, the lines of the value, and DELIMITER alone
 * on its line (whichever of '=' and "<<" comes first says which). */
static void take_lines(json_t *out, const struct logmask *mask, const char *buf, size_t len,
		       stage_outputs_note_cb note, void *arg)
{
	for (size_t start = 0; start < len;) {
		const char *line = buf + start, *nl = memchr(line, '\n', len - start);
		size_t end = nl ? (size_t)(nl - buf) : len, n = without_cr(line, end - start);
		start = end + 1;
		if (n == 0)
			continue;
		if (memchr(line, '\0', n)) {
			note("$SLUICE_OUTPUT: a line holds a NUL byte, left out", arg);
			continue;
		}
		const char *eq = memchr(line, '=', n), *hd = memmem(line, n, "<<", 2);
		char key[KEY_MAX + 1];
		if (hd && (!eq || hd < eq)) {
			const char *delim = hd + 2;
			size_t dlen = n - (size_t)(delim - line), klen = (size_t)(hd - line);
			if (dlen == 0) {
				note_line("KEY<<DELIMITER without a delimiter", line, n, note, arg);
				continue;
			}
			/* The value: the lines up to the delimiter's, each without
			 * its CRLF ending, joined by '\n'. */
			/* The lines after this one, at most: start is past len when
			 * this line ends the file. */
			char *value = malloc((start < len ? len - start : 0) + 1);
			size_t vlen = 0, at = start, lines = 0;
			int closed = 0;
			if (!value) {
				note("$SLUICE_OUTPUT: out of memory, the rest is left out", arg);
				return;
			}
			while (at < len && !closed) {
				const char *l = buf + at, *lnl = memchr(l, '\n', len - at);
				size_t lend = lnl ? (size_t)(lnl - buf) : len,
				       ln = without_cr(l, lend - at);
				at = lend + 1;
				if (ln == dlen && memcmp(l, delim, dlen) == 0) {
					closed = 1;
					break;
				}
				if (lines++ > 0)
					value[vlen++] = '\n';
				memcpy(value + vlen, l, ln);
				vlen += ln;
			}
			if (!closed) {
				free(value);
				if (output_key(line, klen) &&
				    !span_holds_secret(mask, line, klen)) {
					char text[300];
					snprintf(
					    text, sizeof(text),
					    "$SLUICE_OUTPUT: the value of %.*s has no line ending "
					    "it, left out with all after it",
					    (int)klen, line);
					note(text, arg);
				} else {
					note("$SLUICE_OUTPUT: a KEY<<DELIMITER line has no line "
					     "ending "
					     "it, left out with all after it",
					     arg);
				}
				return;
			}
			start = at;
			if (name_ok(mask, line, n, line, klen, note, arg)) {
				memcpy(key, line, klen);
				key[klen] = '\0';
				take_output(out, mask, key, value, vlen, NULL, 0, note, arg);
			}
			free(value);
			continue;
		}
		if (!eq) {
			note_line("not KEY=VALUE or KEY<<DELIMITER", line, n, note, arg);
			continue;
		}
		if (!name_ok(mask, line, n, line, (size_t)(eq - line), note, arg))
			continue;
		memcpy(key, line, (size_t)(eq - line));
		key[eq - line] = '\0';
		take_output(out, mask, key, eq + 1, n - (size_t)(eq + 1 - line), line, n, note,
			    arg);
	}
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
	take_lines(out, mask, buf, len, note, arg);
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
