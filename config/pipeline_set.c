/* pipeline_set: every pipeline file of a directory, loaded all or nothing.
 *
 * Files are taken in name order so that errors and the order of matches do
 * not depend on the file system. Dot files are skipped: editors leave them.
 */
#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/check.h"
#include "config/doc.h"

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && !strcmp(s + n - m, suffix);
}

static int is_pipeline_name(const char *name)
{
	return name[0] != '.' &&
	       (has_suffix(name, ".yaml") || has_suffix(name, ".yml") || has_suffix(name, ".json"));
}

/* "file:line:col: name: ..." at p's name, or at the top of its file when
 * the name is the file's own. */
static void name_taken(const struct pipeline *p, const struct pipeline *first, char *err,
		       size_t errlen)
{
	struct config_check ck = {.file = p->file, .err = err, .errlen = errlen};
	struct config_doc doc;
	const struct config_doc_node *n;

	/* Only when the file changed since it was loaded. */
	if (config_doc_load(&doc, p->file, err, errlen) < 0) {
		snprintf(err, errlen, "%s: pipeline name \"%s\" is already used by %s", p->file,
			 p->name, first->file);
		return;
	}
	n = config_doc_get(doc.top, "name");
	if (n)
		config_check_fail(&ck, n, "\"%s\" is already used by %s", p->name, first->file);
	else
		config_check_fail(&ck, doc.top,
				  "pipeline name \"%s\" (the file's name) is already used by %s; "
				  "set \"name:\"",
				  p->name, first->file);
	config_doc_clear(&doc);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names of the candidate files of dir. */
static int list_dir(const char *dir, char ***out, size_t *count, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		snprintf(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
		return -1;
	}
	for (;;) {
		errno = 0;
		e = readdir(d);
		if (!e)
			break;
		if (!is_pipeline_name(e->d_name))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **grown = realloc(names, ncap * sizeof(*names));

			if (!grown)
				goto nomem;
			names = grown;
			cap = ncap;
		}
		names[n] = strdup(e->d_name);
		if (!names[n])
			goto nomem;
		n++;
	}
	if (errno) {
		snprintf(err, errlen, "%s: cannot read directory: %s", dir, strerror(errno));
		goto fail;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), by_name);
	*out = names;
	*count = n;
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory", dir);
fail:
	while (n)
		free(names[--n]);
	free(names);
	closedir(d);
	return -1;
}

static char *join(const char *dir, const char *name)
{
	size_t dlen = strlen(dir);
	char *out = malloc(dlen + 1 + strlen(name) + 1);

	if (out)
		sprintf(out, "%s%s%s", dir, dlen && dir[dlen - 1] == '/' ? "" : "/", name);
	return out;
}

/* Directories and sockets that happen to be named *.yaml are not files to
 * load; a dangling symlink is, and fails there with a clear message. */
static int is_regular_or_broken(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 || S_ISREG(st.st_mode);
}

int pipelines_load_dir(const char *dir, struct pipeline_set *set, char *err, size_t errlen)
{
	char **names = NULL;
	size_t n = 0, i, j;
	int rc = -1;

	memset(set, 0, sizeof(*set));
	if (list_dir(dir, &names, &n, err, errlen) < 0)
		return -1;
	if (n) {
		set->items = calloc(n, sizeof(*set->items));
		if (!set->items) {
			snprintf(err, errlen, "%s: out of memory", dir);
			goto done;
		}
	}
	for (i = 0; i < n; i++) {
		char *path = join(dir, names[i]);
		struct pipeline *p = &set->items[set->n];

		if (!path) {
			snprintf(err, errlen, "%s: out of memory", dir);
			goto done;
		}
		if (!is_regular_or_broken(path)) {
			free(path);
			continue;
		}
		if (pipeline_load_file(path, p, err, errlen) < 0) {
			free(path);
			goto done;
		}
		free(path);
		set->n++;
		for (j = 0; j + 1 < set->n; j++) {
			if (strcmp(set->items[j].name, p->name) == 0) {
				name_taken(p, &set->items[j], err, errlen);
				goto done;
			}
		}
	}
	rc = 0;
done:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc < 0)
		pipelines_clear(set);
	return rc;
}

void pipelines_clear(struct pipeline_set *set)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		pipeline_clear(&set->items[i]);
	free(set->items);
	set->items = NULL;
	set->n = 0;
}
