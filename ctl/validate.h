/* validate: sluicectl validate FILE..., offline.
 *
 * Each file is loaded with the agent's own loader and validator (config/),
 * so a file that passes here loads in the agent. A file with `stages:` or
 * `trigger:` at its top is a pipeline; any other is a sluice.yaml, checked
 * together with the pipelines of its pipelines_dir, as the agent would load
 * them. One line per file on out ("FILE: ok (...)"), each error on err.
 */
#ifndef SLUICE_CTL_VALIDATE_H
#define SLUICE_CTL_VALIDATE_H

#include <stdio.h>

/* 0 when every file is valid, 1 otherwise. */
int ctl_validate(const char *const *files, int nfiles, FILE *out, FILE *err);
/* A pipeline file is told from settings by the keys only pipelines have:
 * 1 for a pipeline, 0 for a sluice.yaml, -1 (err set) when the file cannot
 * be read as YAML. */
int ctl_validate_is_pipeline(const char *path, char *err, size_t errlen);

#endif
