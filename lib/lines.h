/* lines: a buffer of text taken line by line.
 *
 * A line ends at '\n' or at the end of the buffer, and a '\r' before its end
 * is not part of it, so text from HTTP bodies and files written on any
 * system splits the same way. A '\n' at the very end adds no empty line.
 */
#ifndef SLUICE_LINES_H
#define SLUICE_LINES_H

#include <stddef.h>

/* Returns 0 to go on, -1 to stop. line is not NUL-terminated. */
typedef int (*lines_cb)(const char *line, size_t len, void *arg);

/* Calls fn for each line of text[0..len) in order; -1 as soon as fn does. */
int lines_each(const char *text, size_t len, lines_cb fn, void *arg);

#endif
