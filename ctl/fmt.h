/* fmt: the text sluicectl prints for values that come from the network.
 *
 * Every string shown in a table goes through ctl_fmt_sanitize first, so a
 * hostile branch name cannot move the cursor or forge lines. Times are read
 * from RFC 3339 and shown in UTC without the 'T' and fraction; durations are
 * compact ("834ms", "4s", "1m04s", "2h03m09s"). Nothing here allocates
 * except ctl_fmt_sanitize.
 */
#ifndef SLUICE_CTL_FMT_H
#define SLUICE_CTL_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Large enough for ctl_fmt_time and ctl_fmt_duration output. */
#define CTL_FMT_MAX 32

/* Returns a malloc'd copy of s[0..len) without control characters (C0, DEL,
 * C1, bidirectional overrides), a tab made a space; bytes that are not valid
 * UTF-8 become '?'. NULL only when out of memory. */
char *ctl_fmt_sanitize(const char *s, size_t len);
/* A log line for the terminal: as ctl_fmt_sanitize, but colour and style
 * sequences (SGR: ESC [ digits ; m) are kept, and every other escape
 * sequence is left out whole (cursor moves, screen erases, window titles,
 * clipboard writes), so a stage's output can colour its lines but not
 * rewrite or act on the reader's terminal. NULL only when out of memory. */
char *ctl_fmt_log_text(const char *s, size_t len);
/* The columns a sanitized string takes on a terminal: two for a wide
 * character (CJK, most emoji), none for a combining mark. */
size_t ctl_fmt_width(const char *s);
/* Parses RFC 3339 ("2026-11-26T03:41:07.123Z", "...+02:00") into ms since
 * the epoch; -1 when s is not such a time. */
int ctl_fmt_parse_time(const char *s, int64_t *ms);
/* "2026-11-26 03:41:07" in UTC. */
void ctl_fmt_time(int64_t ms, char *out, size_t len);
/* "-" for a negative duration. */
void ctl_fmt_duration(int64_t ms, char *out, size_t len);

#endif
