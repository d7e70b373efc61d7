/* doc: YAML/JSON file → jansson tree with positions, via libyaml's event API.
 *
 * JSON needs no parser of its own: a JSON text is YAML flow style, and going
 * through libyaml gives JSON files the same positions and the same checks.
 */
#include "config/doc.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/file.h"

#define STR_TAG "tag:yaml.org,2002:str"

struct pending_key {
	char *key;
	int line, col;
};

struct loader {
	const char *path;
	char *err;
	size_t errlen;
	struct config_doc *doc;
	struct config_doc_node *cur; /* innermost open mapping or sequence */
	int depth;
	long nodes;
	int documents;
	/* The key read last in each open mapping, waiting for its value. */
	struct pending_key pending[CONFIG_DOC_MAX_DEPTH + 1];
};

static void node_free(struct config_doc_node *n)
{
	while (n) {
		struct config_doc_node *next = n->next;
		node_free(n->first);
		free(n->text);
		free(n->key);
		free(n);
		n = next;
	}
}

static int fail_at(struct loader *ld, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(struct loader *ld, int line, int col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ld->err, ld->errlen, "%s:%d:%d: %s", ld->path, line, col, msg);
	return -1;
}

static int mark_line(const yaml_mark_t *m)
{
	return m->line >= (size_t)INT_MAX ? INT_MAX : (int)m->line + 1;
}

static int mark_col(const yaml_mark_t *m)
{
	return m->column >= (size_t)INT_MAX ? INT_MAX : (int)m->column + 1;
}

/* "stages.build" + "." + key, for errors about a key not yet in the tree. */
static void key_path(const struct config_doc_node *map, const char *key, char *out, size_t outlen)
{
	char base[256];

	config_doc_path(map, base, sizeof(base));
	if (base[0])
		snprintf(out, outlen, "%s.%s", base, key);
	else
		snprintf(out, outlen, "%s", key);
}

static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	if (config_file_read(path, CONFIG_DOC_MAX_BYTES, out, outlen) == 0)
		return 0;
	if (errno == EFBIG)
		snprintf(err, errlen, "%s: file is larger than %d MiB", path,
			 CONFIG_DOC_MAX_BYTES / (1024 * 1024));
	else if (errno == EINVAL)
		snprintf(err, errlen, "%s: not a regular file", path);
	else
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
	return -1;
}

static int is_plain_null(const char *s)
{
	return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static int is_plain_int(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* A plain scalar's type; anything unrecognised (floats, "yes") stays the
 * string it was written as. So does an integer too large for json_int_t,
 * flagged in *overflow: a text setting takes it as written, a number
 * setting says it is too large rather than not a number. */
static json_t *resolve_plain(const char *s, int *overflow)
{
	if (is_plain_null(s))
		return json_null();
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
		return json_true();
	if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		return json_false();
	if (is_plain_int(s)) {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno == 0 && *end == '\0')
			return json_integer(v);
		if (errno == ERANGE)
			*overflow = v < 0 ? -1 : 1;
	}
	return json_string(s);
}

static struct config_doc_node *node_new(struct loader *ld, const yaml_mark_t *m)
{
	struct config_doc_node *n;

	if (++ld->nodes > CONFIG_DOC_MAX_NODES) {
		fail_at(ld, mark_line(m), mark_col(m), "more than %d values in one file",
			CONFIG_DOC_MAX_NODES);
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		fail_at(ld, mark_line(m), mark_col(m), "out of memory");
		return NULL;
	}
	n->index = -1;
	n->line = mark_line(m);
	n->col = mark_col(m);
	return n;
}

static void link_child(struct config_doc_node *parent, struct config_doc_node *n)
{
	n->parent = parent;
	if (parent->last)
		parent->last->next = n;
	else
		parent->first = n;
	parent->last = n;
}

/* Places n (whose value it owns until now) in the tree: as the document's top,
 * a sequence item, or the value of the key pending in the open mapping. */
static int attach(struct loader *ld, struct config_doc_node *n)
{
	struct config_doc_node *cur = ld->cur;

	if (!cur) {
		ld->doc->top = n;
		ld->doc->root = n->value;
		return 0;
	}
	if (json_is_array(cur->value)) {
		n->index = (long)json_array_size(cur->value);
		if (json_array_append_new(cur->value, n->value) < 0)
			goto nomem;
		link_child(cur, n);
		return 0;
	}
	{
		struct pending_key *pk = &ld->pending[ld->depth];

		if (json_object_set_new(cur->value, pk->key, n->value) < 0)
			goto nomem;
		n->key = pk->key;
		n->key_line = pk->line;
		n->key_col = pk->col;
		pk->key = NULL;
		link_child(cur, n);
		return 0;
	}
nomem:
	fail_at(ld, n->line, n->col, "out of memory");
	node_free(n);
	return -1;
}

static int expecting_key(const struct loader *ld)
{
	return ld->cur && json_is_object(ld->cur->value) && !ld->pending[ld->depth].key;
}

static int take_key(struct loader *ld, const yaml_event_t *ev, json_t *v)
{
	const struct config_doc_node *first;
	const char *key = (const char *)ev->data.scalar.value;
	int line = mark_line(&ev->start_mark), col = mark_col(&ev->start_mark);
	char path[300];

	if (!json_is_string(v))
		return fail_at(ld, line, col, "mapping keys must be strings");
	key_path(ld->cur, key, path, sizeof(path));
	first = config_doc_get(ld->cur, key);
	if (first)
		return fail_at(ld, line, col, "%s: duplicate key (first defined at line %d)", path,
			       first->key_line);
	ld->pending[ld->depth].key = strdup(key);
	if (!ld->pending[ld->depth].key)
		return fail_at(ld, line, col, "out of memory");
	ld->pending[ld->depth].line = line;
	ld->pending[ld->depth].col = col;
	return 0;
}

static int on_scalar(struct loader *ld, const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;
	int line = mark_line(&ev->start_mark), col = mark_col(&ev->start_mark);
	struct config_doc_node *n;
	int overflow = 0;
	json_t *v;

	if (strlen(s) != ev->data.scalar.length)
		return fail_at(ld, line, col, "NUL characters are not allowed");
	if (tag && strcmp(tag, STR_TAG) && strcmp(tag, "!"))
		return fail_at(ld, line, col, "unsupported tag \"%s\"", tag);
	if (!tag && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		v = resolve_plain(s, &overflow);
	else
		v = json_string(s);
	if (!v)
		return fail_at(ld, line, col, "out of memory");
	if (expecting_key(ld)) {
		int rc = take_key(ld, ev, v);

		json_decref(v);
		return rc;
	}
	n = node_new(ld, &ev->start_mark);
	if (!n) {
		json_decref(v);
		return -1;
	}
	n->value = v;
	n->overflow = overflow;
	n->text = strdup(s);
	if (!n->text) {
		json_decref(v);
		free(n);
		return fail_at(ld, line, col, "out of memory");
	}
	return attach(ld, n);
}

static int on_collection_start(struct loader *ld, const yaml_event_t *ev, int is_map)
{
	const char *tag =
	    (const char *)(is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
	int line = mark_line(&ev->start_mark), col = mark_col(&ev->start_mark);
	struct config_doc_node *n;

	if (tag)
		return fail_at(ld, line, col, "unsupported tag \"%s\"", tag);
	if (expecting_key(ld))
		return fail_at(ld, line, col, "mapping keys must be strings");
	if (ld->depth >= CONFIG_DOC_MAX_DEPTH)
		return fail_at(ld, line, col, "nesting deeper than %d levels",
			       CONFIG_DOC_MAX_DEPTH);
	n = node_new(ld, &ev->start_mark);
	if (!n)
		return -1;
	n->value = is_map ? json_object() : json_array();
	if (!n->value) {
		free(n);
		return fail_at(ld, line, col, "out of memory");
	}
	if (attach(ld, n) < 0)
		return -1;
	ld->cur = n;
	ld->depth++;
	return 0;
}

static int has_anchor(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return ev->data.scalar.anchor != NULL;
	case YAML_SEQUENCE_START_EVENT:
		return ev->data.sequence_start.anchor != NULL;
	case YAML_MAPPING_START_EVENT:
		return ev->data.mapping_start.anchor != NULL;
	default:
		return 0;
	}
}

static int on_event(struct loader *ld, const yaml_event_t *ev)
{
	int line = mark_line(&ev->start_mark), col = mark_col(&ev->start_mark);

	/* Aliases are refused rather than expanded: expanding them is how a
	 * few hundred bytes become gigabytes ("billion laughs"). */
	if (ev->type == YAML_ALIAS_EVENT || has_anchor(ev))
		return fail_at(ld, line, col, "anchors and aliases are not supported");
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++ld->documents > 1)
			return fail_at(ld, line, col, "only one document is allowed in a file");
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(ld, ev);
	case YAML_SEQUENCE_START_EVENT:
		return on_collection_start(ld, ev, 0);
	case YAML_MAPPING_START_EVENT:
		return on_collection_start(ld, ev, 1);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		ld->depth--;
		ld->cur = ld->cur->parent;
		return 0;
	default:
		return 0;
	}
}

/* libyaml's reader reports a byte offset rather than a mark. */
static void offset_position(const char *buf, size_t off, int *line, int *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	for (i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
			(*col)++;
		}
	}
}

static int parser_error(struct loader *ld, const yaml_parser_t *p, const char *buf, size_t len)
{
	const char *problem = p->problem ? p->problem : "cannot parse";
	int line, col;

	if (p->error == YAML_MEMORY_ERROR)
		return fail_at(ld, 1, 1, "out of memory");
	if (p->error == YAML_READER_ERROR) {
		offset_position(buf, p->problem_offset < len ? p->problem_offset : len, &line,
				&col);
		return fail_at(ld, line, col, "%s", problem);
	}
	line = mark_line(&p->problem_mark);
	col = mark_col(&p->problem_mark);
	if (p->context)
		return fail_at(ld, line, col, "%s (%s at line %d)", problem, p->context,
			       mark_line(&p->context_mark));
	return fail_at(ld, line, col, "%s", problem);
}

static int parse(struct loader *ld, const char *buf, size_t len)
{
	yaml_parser_t parser;
	int rc = -1;

	if (!yaml_parser_initialize(&parser))
		return fail_at(ld, 1, 1, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	for (;;) {
		yaml_event_t ev;
		int done, r;

		if (!yaml_parser_parse(&parser, &ev)) {
			parser_error(ld, &parser, buf, len);
			break;
		}
		r = on_event(ld, &ev);
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (r < 0)
			break;
		if (done) {
			rc = 0;
			break;
		}
	}
	yaml_parser_delete(&parser);
	return rc;
}

static int load_buffer(struct config_doc *doc, const char *name, char *buf, size_t len, char *err,
		       size_t errlen)
{
	struct loader ld = {.path = name, .err = err, .errlen = errlen, .doc = doc};
	int i;

	if (parse(&ld, buf, len) < 0)
		goto fail;
	/* A document of nothing ("---" alone, or comments): an empty file. */
	if (doc->top && json_is_null(doc->top->value)) {
		json_decref(doc->root);
		doc->top->value = doc->root = json_object();
		if (!doc->root)
			goto fail;
	}
	if (!doc->top) {
		yaml_mark_t start = {0, 0, 0};

		doc->top = node_new(&ld, &start);
		if (!doc->top)
			goto fail;
		doc->top->value = doc->root = json_object();
		if (!doc->root)
			goto fail;
	}
	return 0;
fail:
	for (i = 0; i <= CONFIG_DOC_MAX_DEPTH; i++)
		free(ld.pending[i].key);
	config_doc_clear(doc);
	return -1;
}

int config_doc_load(struct config_doc *doc, const char *path, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;

	memset(doc, 0, sizeof(*doc));
	if (read_file(path, &buf, &len, err, errlen) < 0)
		return -1;
	int rc = load_buffer(doc, path, buf, len, err, errlen);
	free(buf);
	return rc;
}

int config_doc_load_text(struct config_doc *doc, const char *name, const char *text, size_t len,
			 char *err, size_t errlen)
{
	memset(doc, 0, sizeof(*doc));
	if (len > CONFIG_DOC_MAX_BYTES) {
		snprintf(err, errlen, "%s: file is larger than %d MiB", name,
			 CONFIG_DOC_MAX_BYTES / (1024 * 1024));
		return -1;
	}
	char *buf = malloc(len + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -1;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	int rc = load_buffer(doc, name, buf, len, err, errlen);
	free(buf);
	return rc;
}

void config_doc_clear(struct config_doc *doc)
{
	node_free(doc->top);
	json_decref(doc->root);
	doc->top = NULL;
	doc->root = NULL;
}

const struct config_doc_node *config_doc_get(const struct config_doc_node *map, const char *key)
{
	const struct config_doc_node *c;

	if (!map || !json_is_object(map->value) || !json_object_get(map->value, key))
		return NULL;
	for (c = map->first; c; c = c->next)
		if (!strcmp(c->key, key))
			return c;
	return NULL;
}

int config_doc_escape(char *out, size_t outlen, const char *text)
{
	int w = 0;
	if (outlen)
		out[0] = '\0';
	for (const unsigned char *k = (const unsigned char *)text;
	     w >= 0 && (size_t)w < outlen && *k; k++) {
		size_t at = (size_t)w;
		int n = *k < 0x20 || *k == 0x7f ? snprintf(out + at, outlen - at, "\\x%02x", *k)
						: snprintf(out + at, outlen - at, "%c", *k);
		w = n < 0 ? n : w + n;
	}
	return w;
}

/* As snprintf of sep and key, the key escaped (config_doc_escape). */
static int path_key(char *out, size_t outlen, const char *sep, const char *key)
{
	int w = snprintf(out, outlen, "%s", sep);
	if (w < 0 || (size_t)w >= outlen)
		return w;
	int n = config_doc_escape(out + w, outlen - (size_t)w, key);
	return n < 0 ? n : w + n;
}

void config_doc_path(const struct config_doc_node *n, char *out, size_t outlen)
{
	const struct config_doc_node *chain[CONFIG_DOC_MAX_DEPTH + 2] = {NULL};
	size_t depth = 0, used = 0;

	for (; n && depth < sizeof(chain) / sizeof(chain[0]); n = n->parent)
		chain[depth++] = n;
	if (outlen)
		out[0] = '\0';
	while (depth-- > 0 && used < outlen) {
		const struct config_doc_node *c = chain[depth];
		int w = 0;

		if (c->key)
			w = path_key(out + used, outlen - used, used ? "." : "", c->key);
		else if (c->index >= 0)
			w = snprintf(out + used, outlen - used, "[%ld]", c->index);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}
