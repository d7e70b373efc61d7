/* log: logfmt lines on stderr, with journald priority prefixes under systemd. */
#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* A value is quoted when it is empty or holds anything but plain characters;
 * quotes, backslashes and control characters are escaped so that one event
 * is always one line. */
static void put_value(FILE *f, const char *v)
{
	int plain = *v != '\0';
	for (const char *p = v; *p && plain; p++)
		plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != '\\';
	if (plain) {
		fputs(v, f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < ' ' || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
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

void log_emit(enum log_level lvl, const char *msg, const struct log_field *fields, size_t n)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	static const int prio[] = {7, 6, 4, 3};
	if (lvl < min_level)
		return;

	char buf[4096];
	FILE *f = fmemopen(buf, sizeof(buf), "w");
	if (!f)
		return;
	if (stderr_is_journal()) {
		fprintf(f, "<%d>", prio[lvl]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		fprintf(f, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			ts.tv_nsec / 1000000);
	}
	fprintf(f, "level=%s msg=", names[lvl]);
	put_value(f, msg);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, " %s=", fields[i].key);
		if (fields[i].is_int)
			fprintf(f, "%lld", fields[i].i);
		else
			put_value(f, fields[i].s ? fields[i].s : "");
	}
	fputc('\n', f);
	long len = ftell(f);
	fclose(f);
	if (len <= 0 || (size_t)len >= sizeof(buf)) {
		len = (long)strlen(buf);
		if (len > 0 && buf[len - 1] != '\n' && (size_t)len < sizeof(buf) - 1)
			buf[len++] = '\n';
	}
	fwrite(buf, 1, (size_t)len, stderr);
}
