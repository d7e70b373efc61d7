/* doc: a YAML or JSON configuration file read into a jansson tree, with the
 * line:column (1-based) of every value and mapping key kept beside it.
 *
 * Scalars resolve as in YAML 1.2's core schema, narrowed: plain true/false are
 * booleans, plain decimal integers are integers, plain null/~/empty is null,
 * everything else (and every quoted scalar) is a string. Anchors, aliases,
 * tags other than !!str, non-string keys, duplicate keys, several documents,
 * files over CONFIG_DOC_MAX_BYTES and nesting deeper than CONFIG_DOC_MAX_DEPTH
 * are errors of the form "file:line:col: message".
 */
#ifndef SLUICE_CONFIG_DOC_H
#define SLUICE_CONFIG_DOC_H

#include <jansson.h>
#include <stddef.h>

#define CONFIG_DOC_MAX_BYTES (4 * 1024 * 1024)
#define CONFIG_DOC_MAX_DEPTH 64
#define CONFIG_DOC_MAX_NODES 100000

/* One value of the file. Children of a mapping or sequence are linked in file
 * order; a child of a mapping carries its key, a child of a sequence its
 * index, so that the key path of any node can be rebuilt for messages. */
struct config_doc_node {
	json_t *value; /* borrowed from config_doc.root */
	char *text;    /* the scalar as written (e.g. "007", "1.50"); NULL for collections */
	char *key;     /* when the node is the value of a mapping entry */
	long index;    /* when the node is a sequence item; -1 otherwise */
	int line, col;
	int key_line, key_col;
	/* A plain integer json_int_t cannot hold, kept as its text: 1 when too
	 * large, -1 when too small, else 0. */
	int overflow;
	struct config_doc_node *parent;
	struct config_doc_node *first, *last; /* children */
	struct config_doc_node *next;
};

struct config_doc {
	json_t *root; /* an empty object when the file holds no document */
	struct config_doc_node *top;
};

/* Reads and parses path. On error fills err with "path[:line:col]: message"
 * and leaves doc empty. */
int config_doc_load(struct config_doc *doc, const char *path, char *err, size_t errlen);
/* As config_doc_load for len bytes of text that name stands for in messages
 * (a file received over the network). */
int config_doc_load_text(struct config_doc *doc, const char *name, const char *text, size_t len,
			 char *err, size_t errlen);
void config_doc_clear(struct config_doc *doc);

/* The value of key in a mapping node, or NULL. */
const struct config_doc_node *config_doc_get(const struct config_doc_node *map, const char *key);

/* text into out as snprintf would, with control bytes written as \xNN so
 * that a message never carries a hostile file's to a log or terminal. */
int config_doc_escape(char *out, size_t outlen, const char *text);
/* Writes the key path of n ("stages.build.run[1]"; "" for the top). */
void config_doc_path(const struct config_doc_node *n, char *out, size_t outlen);

#endif
