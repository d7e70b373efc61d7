/* log: one logfmt line per event on stderr.
 *
 * Keys are literals; values are quoted and escaped by the logger, so any
 * string (a branch name from a webhook, say) can be logged without risk of
 * forging lines. When stderr is the journal (JOURNAL_STREAM names it) each
 * line carries the sd-daemon priority prefix "<N>" instead of a timestamp.
 * Not thread-safe: one event loop a process.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

struct log_field {
	const char *key;
	const char *s;
	long long i;
	int is_int;
};

#define LOG_S(k, v) ((struct log_field){.key = (k), .s = (v)})
#define LOG_I(k, v) ((struct log_field){.key = (k), .i = (long long)(v), .is_int = 1})

/* The first array element is a dummy so that a call with no fields is valid. */
#define LOG_FIELDS_(...)  ((const struct log_field[]){{0}, __VA_ARGS__})
#define LOG_NFIELDS_(...) (sizeof(LOG_FIELDS_(__VA_ARGS__)) / sizeof(struct log_field))
#define log_at(lvl, msg, ...)                                                                      \
	log_emit((lvl), (msg), LOG_FIELDS_(__VA_ARGS__) + 1, LOG_NFIELDS_(__VA_ARGS__) - 1)
#define log_debug(msg, ...) log_at(LOG_LEVEL_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_at(LOG_LEVEL_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_at(LOG_LEVEL_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_at(LOG_LEVEL_ERROR, msg, __VA_ARGS__)

/* Sets the minimum level written; "debug", "info", "warn", "error". */
int log_set_level(const char *name);
void log_emit(enum log_level lvl, const char *msg, const struct log_field *fields, size_t n);
/* One line of text on stderr, whatever the level set, for an error that
 * stops the process before it runs ("sluice-agent: FILE:LINE:COLUMN: ..."):
 * as written, with the error priority in front when stderr is the journal,
 * so that `journalctl -p warning` shows why a unit did not start. */
void log_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
