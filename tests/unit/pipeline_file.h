/* pipeline_file: a pipeline file in a temporary directory of its own,
 * beside the webhook secret a trigger names with "secret_file: webhook",
 * loaded as the agent loads it. Header-only, like tmpdir.h; include it
 * after cmocka.h.
 */
#ifndef SLUICE_TESTS_PIPELINE_FILE_H
#define SLUICE_TESTS_PIPELINE_FILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "tmpdir.h"

struct pipeline_file {
	char dir[64];
	char path[128];	  /* dir/app.yaml */
	const char *head; /* what every load writes first */
	char err[512];	  /* of the last load */
	struct pipeline p;
};

/* The directory "/tmp/<prefix>-XXXXXX" with its secret file; head (kept,
 * not copied) starts every file loaded. NULL when it cannot be made. */
static inline struct pipeline_file *pipeline_file_new(const char *prefix, const char *head)
{
	struct pipeline_file *f = calloc(1, sizeof(*f));
	char secret[128];

	if (!f)
		return NULL;
	if (tmpdir_make(f->dir, sizeof(f->dir), prefix) < 0) {
		free(f);
		return NULL;
	}
	f->head = head;
	snprintf(f->path, sizeof(f->path), "%s/app.yaml", f->dir);
	snprintf(secret, sizeof(secret), "%s/webhook", f->dir);
	if (tmpdir_write(secret, "s3cret\n") < 0) {
		tmpdir_remove(f->dir);
		free(f);
		return NULL;
	}
	return f;
}

static inline void pipeline_file_free(struct pipeline_file *f)
{
	pipeline_clear(&f->p);
	tmpdir_remove(f->dir);
	free(f);
}

/* Writes the head and text as the file and loads it into f->p:
 * pipeline_load_file's result, with its message in f->err. */
static inline int pipeline_file_load(struct pipeline_file *f, const char *text)
{
	char all[8192];

	pipeline_clear(&f->p);
	if (snprintf(all, sizeof(all), "%s%s", f->head, text) >= (int)sizeof(all) ||
	    tmpdir_write(f->path, all) < 0) {
		snprintf(f->err, sizeof(f->err), "cannot write %s", f->path);
		return -1;
	}
	return pipeline_load_file(f->path, &f->p, f->err, sizeof(f->err));
}

/* Loading text fails with want after the file's name and a colon:
 * "line:col: key.path: message". */
static inline void pipeline_file_expect_error(struct pipeline_file *f, const char *text,
					      const char *want)
{
	char full[1024];

	assert_int_equal(pipeline_file_load(f, text), -1);
	snprintf(full, sizeof(full), "%s:%s", f->path, want);
	assert_string_equal(f->err, full);
}

#endif
