/* file: paths and small files named by a configuration file.
 *
 * Relative paths in a configuration file are relative to that file's
 * directory, never to the process's working directory, so a service and a
 * test see the same files. Directories returned here are absolute.
 */
#ifndef SLUICE_CONFIG_FILE_H
#define SLUICE_CONFIG_FILE_H

#include <stddef.h>

/* The absolute directory of file (the working directory when file is NULL);
 * NULL when out of memory or the working directory is unknown. */
char *config_file_dir(const char *file);
/* path itself when absolute, else dir/path; NULL when out of memory. */
char *config_file_resolve(const char *dir, const char *path);
/* Reads a regular file of at most max bytes into a buffer with a NUL after
 * its outlen bytes. -1 with errno set: EFBIG when larger, EISDIR or EINVAL
 * when not a regular file. */
int config_file_read(const char *path, size_t max, char **out, size_t *outlen);
/* 0 when path is a regular file this process may open for reading. */
int config_file_check_readable(const char *path);

#endif
