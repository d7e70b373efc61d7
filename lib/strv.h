/* strv: NULL-terminated arrays of malloc'd strings, as argv and envp are
 * built for a child process.
 */
#ifndef SLUICE_STRV_H
#define SLUICE_STRV_H

#include <stddef.h>

/* Appends s (taken over; freed on failure, and NULL is a failure) to the n
 * strings of *v, keeping the array NULL-terminated. 0, or -1. */
int strv_append(char ***v, size_t *n, char *s);
/* "NAME=value", malloc'd, or NULL. */
char *strv_pair(const char *name, const char *value);
/* Frees the strings and the array; NULL is fine. */
void strv_free(char **v);

#endif
