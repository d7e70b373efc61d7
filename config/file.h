/* file: paths and small files named by a configuration file.
 *
 * Relative paths in a configuration file are relative to that file's
 * directory, never to the process's working directory, so a service and a
 * test see the same files. Directories returned here are absolute. A path
 * that starts with "${CREDENTIALS_DIRECTORY}/" names a credential (systemd
 * LoadCredential=) of the process that reads the file, found through that
 * process's own environment when it opens it.
 */
#ifndef SLUICE_CONFIG_FILE_H
#define SLUICE_CONFIG_FILE_H

#include <stddef.h>

/* The absolute directory of file (the working directory when file is NULL);
 * NULL when out of memory or the working directory is unknown. */
char *config_file_dir(const char *file);
#define CONFIG_FILE_CREDENTIALS "${CREDENTIALS_DIRECTORY}/"

/* path itself when absolute or a credential, else dir/path; NULL when out
 * of memory. */
char *config_file_resolve(const char *dir, const char *path);
/* The path to open: a credential's in this process's $CREDENTIALS_DIRECTORY,
 * any other path as it is (malloc'd). NULL with errno ENOENT when the
 * variable is not set (no LoadCredential= in the unit), ENOMEM. */
char *config_file_expand(const char *path);
/* The reason config_file_expand failed with errnum, for a message. */
const char *config_file_expand_error(int errnum);
/* Reads a regular file of at most max bytes into a buffer with a NUL after
 * its outlen bytes. -1 with errno set: EFBIG when larger, EISDIR or EINVAL
 * when not a regular file, as config_file_expand. */
int config_file_read(const char *path, size_t max, char **out, size_t *outlen);
/* The token a file of at most max bytes holds on its one line, less the
 * blanks around it (github.token_file); NULL with errno set as
 * config_file_read, or EBADMSG when the file holds no token or more than
 * one line. */
char *config_file_read_token(const char *path, size_t max);
/* The reason config_file_read_token failed with errnum, for a message. */
const char *config_file_token_error(int errnum);
/* 0 when path is a regular file this process may open for reading. A
 * credential is not checked (0): it belongs to the process that reads it,
 * which need not be this one (the agent checks stage secrets that workers
 * read). */
int config_file_check_readable(const char *path);

#endif
