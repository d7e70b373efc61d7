/* log: logfmt lines on stderr, with journald priority prefixes under systemd. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/hex.h"

static enum log_level min_level = LOG_LEVEL_INFO;

int log_set_level(const char *name)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			min_level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* A line is built in a buffer and written whole; what does not fit is cut,
 * and the line still ends with a newline. */
struct line {
	char buf[4096];
	size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - 1 - l->len; /* one byte kept for the newline */
	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_str(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

/* v in decimal, zero-padded to at least digits digits. */
static void put_num(struct line *l, unsigned long long v, int digits)
{
	char text[24];
	int n = 0;
	do {
		text[sizeof(text) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v || n < digits);
	put(l, text + sizeof(text) - n, (size_t)n);
}

static void put_int(struct line *l, long long v)
{
	if (v < 0)
		put(l, "-", 1);
	put_num(l, v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v, 1);
}

/* A value is quoted when it is empty or holds anything but plain characters;
 * quotes, backslashes and control characters are escaped so that one event
 * is always one line. */
static void put_value(struct line *l, const char *v)
{
	int plain = *v != '\0';
	for (const char *p = v; *p && plain; p++)
		plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != '\\';
	if (plain) {
		put_str(l, v);
		return;
	}
	put(l, "\"", 1);
	const unsigned char *run = (const unsigned char *)v;
	for (const unsigned char *p = run;; p++) {
		int quote = *p == '"' || *p == '\\';
		if (*p && !quote && *p >= ' ' && *p != 0x7f)
			continue;
		put(l, (const char *)run, (size_t)(p - run));
		run = p + 1;
		if (!*p)
			break;
		if (quote) {
			char esc[2] = {'\\', (char)*p};
			put(l, esc, 2);
		} else if (*p == '\n') {
			put(l, "\\n", 2);
		} else {
			char esc[5] = {'\\', 'x'};
			hex_encode(p, 1, esc + 2);
			put(l, esc, 4);
		}
	}
	put(l, "\"", 1);
}

/* systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream it
 * connected; stderr is the journal only while it is still that stream (not,
 * say, a file a wrapper redirected it to). The journal stamps each line, so
 * the line then carries the priority prefix instead of a timestamp. */
static int stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* The journal's priority of each level (sd-daemon's prefixes). */
static const char *const prio[] = {"<7>", "<6>", "<4>", "<3>"};

void log_emit(enum log_level lvl, const char *msg, const struct log_field *fields, size_t n)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (lvl < min_level)
		return;
	struct line l;
	l.len = 0;
	if (stderr_is_journal()) {
		put_str(&l, prio[lvl]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		put(&l, "ts=", 3);
		put_num(&l, (unsigned long long)tm.tm_year + 1900, 4);
		put(&l, "-", 1);
		put_num(&l, (unsigned long long)tm.tm_mon + 1, 2);
		put(&l, "-", 1);
		put_num(&l, (unsigned long long)tm.tm_mday, 2);
		put(&l, "T", 1);
		put_num(&l, (unsigned long long)tm.tm_hour, 2);
		put(&l, ":", 1);
		put_num(&l, (unsigned long long)tm.tm_min, 2);
		put(&l, ":", 1);
		put_num(&l, (unsigned long long)tm.tm_sec, 2);
		put(&l, ".", 1);
		put_num(&l, (unsigned long long)ts.tv_nsec / 1000000, 3);
		put(&l, "Z ", 2);
	}
	put(&l, "level=", 6);
	put_str(&l, names[lvl]);
	put(&l, " msg=", 5);
	put_value(&l, msg);
	for (size_t i = 0; i < n; i++) {
		put(&l, " ", 1);
		put_str(&l, fields[i].key);
		put(&l, "=", 1);
		if (fields[i].is_int)
			put_int(&l, fields[i].i);
		else
			put_value(&l, fields[i].s ? fields[i].s : "");
	}
	l.buf[l.len++] = '\n';
	fwrite(l.buf, 1, l.len, stderr);
}

void log_failure(const char *fmt, ...)
{
	va_list ap;

	if (stderr_is_journal())
		fputs(prio[LOG_LEVEL_ERROR], stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
