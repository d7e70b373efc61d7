/* stage_outputs: what a stage wrote to $SLUICE_OUTPUT, as a JSON object.
 *
 * The file holds, as GitHub Actions' $GITHUB_OUTPUT, KEY=VALUE lines and
 * multi-line values written KEY<<DELIMITER, the value's lines, then a line
 * DELIMITER (whichever of '=' and "<<" comes first in a line says which): a
 * key is letters, digits, '_' and '-', not starting with a digit or '-', at
 * most 128 bytes; a value is UTF-8. Other lines, lines holding a NUL byte,
 * a KEY<<DELIMITER without its closing line (and all after it), and keys,
 * values or KEY=VALUE lines holding a secret are reported and left out,
 * and so is what follows the first STAGE_OUTPUTS_MAX bytes. Only a regular file is read, never
 * through a symbolic link: the stage may have put anything in its place (a FIFO, a link to
 * /dev/zero), and reading it must not block the worker's loop.
 */
#ifndef SLUICE_STAGE_OUTPUTS_H
#define SLUICE_STAGE_OUTPUTS_H

#include <stddef.h>

#include "stages/logmask.h"

#define STAGE_OUTPUTS_MAX (64 * 1024)

/* Receives each report of what was left out; one of a line that is not
 * KEY=VALUE holds the whole line, which may hold secrets to mask. */
typedef void (*stage_outputs_note_cb)(const char *text, void *arg);

/* *json: the outputs of the file at path as compact JSON (malloc'd), NULL
 * when it holds none or is gone. mask: the stage's secrets (NULL: none); a
 * value it would mask in a log is left out, as the API shows outputs.
 * Returns 0, or -1 with err saying why when it is there but not a regular
 * file, or cannot be read. */
int stage_outputs_read(const char *path, const struct logmask *mask, char **json,
		       stage_outputs_note_cb note, void *arg, char *err, size_t errlen);

#endif
