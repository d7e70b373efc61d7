/* regstate: the lifecycle job's state file (JSON). */
#include "registry/regstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl/fmt.h"
#include "lib/clock.h"
#include "registry/regscan.h"

#define STATE_VERSION 1

static void entry_clear(struct regstate_entry *e)
{
	size_t i;

	free(e->digest);
	for (i = 0; i < e->ntags; i++)
		free(e->tags[i]);
	free(e->tags);
	for (i = 0; i < e->nchildren; i++)
		free(e->children[i]);
	free(e->children);
	memset(e, 0, sizeof(*e));
}

void regstate_clear(struct regstate *st)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		entry_clear(&st->entries[i]);
	free(st->entries);
	free(st->registry);
	free(st->repository);
	memset(st, 0, sizeof(*st));
}

struct regstate_entry *regstate_find(struct regstate *st, const char *digest)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		if (strcmp(st->entries[i].digest, digest) == 0)
			return &st->entries[i];
	return NULL;
}

struct regstate_entry *regstate_add(struct regstate *st, const char *digest)
{
	struct regstate_entry *grown = realloc(st->entries, (st->n + 1) * sizeof(*grown));
	struct regstate_entry *e;

	if (!grown)
		return NULL;
	st->entries = grown;
	e = &st->entries[st->n];
	memset(e, 0, sizeof(*e));
	e->created_ms = -1;
	e->digest = strdup(digest);
	if (!e->digest)
		return NULL;
	st->n++;
	return e;
}

void regstate_remove(struct regstate *st, const char *digest)
{
	struct regstate_entry *e = regstate_find(st, digest);
	size_t i;

	if (!e)
		return;
	i = (size_t)(e - st->entries);
	entry_clear(e);
	memmove(&st->entries[i], &st->entries[i + 1], (st->n - i - 1) * sizeof(*e));
	st->n--;
}

/* *list (of *n strings) replaced by a copy of from[0..n_from). */
static int strings_replace(char ***list, size_t *n, char *const *from, size_t n_from)
{
	char **copy = n_from ? calloc(n_from, sizeof(char *)) : NULL;
	size_t i;

	if (n_from && !copy)
		return -1;
	for (i = 0; i < n_from; i++) {
		copy[i] = strdup(from[i]);
		if (!copy[i]) {
			while (i > 0)
				free(copy[--i]);
			free(copy);
			return -1;
		}
	}
	for (i = 0; i < *n; i++)
		free((*list)[i]);
	free(*list);
	*list = copy;
	*n = n_from;
	return 0;
}

int regstate_set_tags(struct regstate_entry *e, char *const *tags, size_t n)
{
	return strings_replace(&e->tags, &e->ntags, tags, n);
}

int regstate_set_children(struct regstate_entry *e, char *const *digests, size_t n)
{
	return strings_replace(&e->children, &e->nchildren, digests, n);
}

/* A time before 1970 is refused: it would be written back as null (the
 * unknown time), which a later run could not read. */
static int read_time(const json_t *obj, const char *key, int nullable, int64_t *out)
{
	const json_t *v = json_object_get(obj, key);

	if (nullable && (!v || json_is_null(v))) {
		*out = -1;
		return 0;
	}
	if (!json_is_string(v) || ctl_fmt_parse_time(json_string_value(v), out) < 0 || *out < 0)
		return -1;
	return 0;
}

static int load_entry(struct regstate *st, const char *digest, const json_t *v, const char *path,
		      char *err, size_t errlen)
{
	struct regstate_entry *e;
	const json_t *tags = json_object_get(v, "tags"), *t;
	const char *bad = NULL;
	size_t k;

	if (!regscan_digest_ok(digest)) {
		snprintf(err, errlen, "%s: digests: \"%.80s\" is not a digest", path, digest);
		return -1;
	}
	if (!json_is_object(v)) {
		snprintf(err, errlen, "%s: digests.%s: expected an object", path, digest);
		return -1;
	}
	if (regstate_find(st, digest)) {
		snprintf(err, errlen, "%s: digests.%s: given twice", path, digest);
		return -1;
	}
	e = regstate_add(st, digest);
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (read_time(v, "first_seen", 0, &e->first_seen_ms) < 0)
		bad = "first_seen";
	else if (read_time(v, "last_tagged", 0, &e->last_tagged_ms) < 0)
		bad = "last_tagged";
	else if (read_time(v, "created", 1, &e->created_ms) < 0)
		bad = "created";
	if (bad) {
		snprintf(err, errlen, "%s: digests.%s.%s: expected an RFC 3339 time from 1970 on%s",
			 path, digest, bad, strcmp(bad, "created") == 0 ? " or null" : "");
		return -1;
	}
	if (tags && !json_is_array(tags)) {
		snprintf(err, errlen, "%s: digests.%s.tags: expected a list of tags", path, digest);
		return -1;
	}
	e->tags = json_array_size(tags) ? calloc(json_array_size(tags), sizeof(char *)) : NULL;
	json_array_foreach(tags, k, t)
	{
		if (!json_is_string(t) || !regscan_tag_ok(json_string_value(t))) {
			snprintf(err, errlen, "%s: digests.%s.tags[%zu]: expected a tag", path,
				 digest, k);
			return -1;
		}
		if (!e->tags || !(e->tags[e->ntags] = strdup(json_string_value(t)))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		e->ntags++;
	}
	/* Absent from files written before children were kept. */
	const json_t *children = json_object_get(v, "children");
	if (children && !json_is_array(children)) {
		snprintf(err, errlen, "%s: digests.%s.children: expected a list of digests", path,
			 digest);
		return -1;
	}
	e->children =
	    json_array_size(children) ? calloc(json_array_size(children), sizeof(char *)) : NULL;
	json_array_foreach(children, k, t)
	{
		if (!json_is_string(t) || !regscan_digest_ok(json_string_value(t))) {
			snprintf(err, errlen, "%s: digests.%s.children[%zu]: expected a digest",
				 path, digest, k);
			return -1;
		}
		if (!e->children || !(e->children[e->nchildren] = strdup(json_string_value(t)))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		e->nchildren++;
	}
	return 0;
}

int regstate_load(const char *path, struct regstate *st, int *found, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *digests, *v;
	const char *key, *reg, *repo;

	memset(st, 0, sizeof(*st));
	*found = 0;
	if (access(path, F_OK) < 0 && errno == ENOENT)
		return 0;
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (jerr.line > 0)
			snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column,
				 jerr.text);
		else
			snprintf(err, errlen, "cannot read the state file %s: %s", path, jerr.text);
		return -1;
	}
	*found = 1;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "%s: expected a JSON object", path);
		goto fail;
	}
	if (json_integer_value(json_object_get(root, "version")) != STATE_VERSION) {
		snprintf(err, errlen, "%s: version: expected %d", path, STATE_VERSION);
		goto fail;
	}
	reg = json_string_value(json_object_get(root, "registry"));
	repo = json_string_value(json_object_get(root, "repository"));
	if (!reg || !repo) {
		snprintf(err, errlen, "%s: %s: expected a string", path,
			 reg ? "repository" : "registry");
		goto fail;
	}
	st->registry = strdup(reg);
	st->repository = strdup(repo);
	if (!st->registry || !st->repository) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	digests = json_object_get(root, "digests");
	if (!json_is_object(digests)) {
		snprintf(err, errlen, "%s: digests: expected an object", path);
		goto fail;
	}
	json_object_foreach(digests, key, v)
	{
		if (load_entry(st, key, v, path, err, errlen) < 0)
			goto fail;
	}
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	regstate_clear(st);
	return -1;
}

static json_t *time_json(int64_t ms)
{
	char text[64];

	if (ms < 0)
		return json_null();
	clock_format_rfc3339(ms, text, sizeof(text));
	return json_string(text);
}

static json_t *state_json(const struct regstate *st)
{
	json_t *root = json_object(), *digests = json_object();
	size_t i, k;

	if (!root || !digests)
		goto fail;
	if (json_object_set_new(root, "version", json_integer(STATE_VERSION)) < 0 ||
	    json_object_set_new(root, "registry", json_string(st->registry)) < 0 ||
	    json_object_set_new(root, "repository", json_string(st->repository)) < 0)
		goto fail;
	for (i = 0; i < st->n; i++) {
		const struct regstate_entry *e = &st->entries[i];
		json_t *o = json_object(), *tags = json_array();

		if (!o || !tags || json_object_set_new(digests, e->digest, o) < 0) {
			json_decref(o);
			json_decref(tags);
			goto fail;
		}
		for (k = 0; k < e->ntags; k++)
			if (json_array_append_new(tags, json_string(e->tags[k])) < 0) {
				json_decref(tags);
				goto fail;
			}
		if (e->nchildren) {
			json_t *children = json_array();
			if (!children || json_object_set_new(o, "children", children) < 0)
				goto fail;
			for (k = 0; k < e->nchildren; k++)
				if (json_array_append_new(children, json_string(e->children[k])) <
				    0)
					goto fail;
		}
		if (json_object_set_new(o, "first_seen", time_json(e->first_seen_ms)) < 0 ||
		    json_object_set_new(o, "last_tagged", time_json(e->last_tagged_ms)) < 0 ||
		    json_object_set_new(o, "created", time_json(e->created_ms)) < 0 ||
		    json_object_set_new(o, "tags", tags) < 0)
			goto fail;
	}
	if (json_object_set_new(root, "digests", digests) < 0) {
		digests = NULL;
		goto fail;
	}
	return root;
fail:
	json_decref(digests);
	json_decref(root);
	return NULL;
}

int regstate_save(const char *path, const struct regstate *st, char *err, size_t errlen)
{
	json_t *root = state_json(st);
	char *tmp = NULL;
	FILE *f = NULL;
	int fd = -1, rc = -1;

	if (!root || asprintf(&tmp, "%s.XXXXXX", path) < 0) {
		tmp = NULL;
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	fd = mkstemp(tmp);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		snprintf(err, errlen, "cannot write the state file %s: %s", path, strerror(errno));
		goto done;
	}
	fd = -1;
	if (json_dumpf(root, f, JSON_INDENT(2) | JSON_SORT_KEYS) < 0 || fputc('\n', f) == EOF ||
	    fflush(f) != 0 || fsync(fileno(f)) != 0) {
		snprintf(err, errlen, "cannot write the state file %s: %s", path, strerror(errno));
		goto done;
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(err, errlen, "cannot write the state file %s: %s", path, strerror(errno));
		goto done;
	}
	f = NULL;
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot write the state file %s: %s", path, strerror(errno));
		goto done;
	}
	free(tmp);
	tmp = NULL;
	rc = 0;
done:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	json_decref(root);
	return rc;
}

char *regstate_default_path(const char *registry, const char *repository)
{
	const char *dir = getenv("STATE_DIRECTORY");
	const char *host = strstr(registry, "://");
	char *name = NULL, *path = NULL, *key = NULL;
	size_t dirlen, i, o = 0;

	host = host ? host + 3 : registry;
	if (asprintf(&key, "%s/%s", host, repository) < 0)
		return NULL;
	name = malloc(strlen(key) * 3 + 1);
	if (!name)
		goto done;
	for (i = 0; key[i]; i++) {
		unsigned char ch = (unsigned char)key[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-')
			name[o++] = (char)ch;
		else
			o += (size_t)sprintf(name + o, "_%02x", ch);
	}
	name[o] = '\0';
	if (!dir || !*dir)
		dir = ".";
	/* systemd lists several directories separated by ':'; the first is ours. */
	dirlen = strcspn(dir, ":");
	if (asprintf(&path, "%.*s/sluice-registry-%s.json", (int)dirlen, dir, name) < 0)
		path = NULL;
done:
	free(key);
	free(name);
	return path;
}
