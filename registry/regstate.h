/* regstate: the manifests the lifecycle job has seen, kept between runs.
 *
 * The Registry API v2 lists tags but not manifests, so an image that loses
 * its last tag vanishes from view. The state file remembers every digest a
 * run reached through a tag (directly or as a manifest of a tagged index):
 * when it was first seen, the image's created time, when a tag last
 * reached it and which tags did, and for an index the manifests it lists
 * (which stay while it does, tagged or not). A JSON file, one per registry and
 * repository, written whole to a temporary file and renamed into place.
 */
#ifndef SLUICE_REGSTATE_H
#define SLUICE_REGSTATE_H

#include <stddef.h>
#include <stdint.h>

struct regstate_entry {
	char *digest;
	int64_t first_seen_ms;
	int64_t last_tagged_ms;
	int64_t created_ms; /* -1 when unknown */
	char **tags;	    /* when last tagged; for messages */
	size_t ntags;
	char **children; /* an index's manifests (digests), when a tag last reached it */
	size_t nchildren;
};

struct regstate {
	char *registry;
	char *repository;
	struct regstate_entry *entries;
	size_t n;
};

/* Reads path into st (registry and repository as the file says them). A
 * missing file is an empty state with *found 0. Errors name the file and,
 * for JSON syntax, line and column. */
int regstate_load(const char *path, struct regstate *st, int *found, char *err, size_t errlen);
/* Writes st to path atomically. */
int regstate_save(const char *path, const struct regstate *st, char *err, size_t errlen);
void regstate_clear(struct regstate *st);

struct regstate_entry *regstate_find(struct regstate *st, const char *digest);
/* A new entry for digest (not yet present), times unset (0, created -1). */
struct regstate_entry *regstate_add(struct regstate *st, const char *digest);
void regstate_remove(struct regstate *st, const char *digest);
/* Replaces the entry's tags with a copy of tags[0..n). 0, or -1. */
int regstate_set_tags(struct regstate_entry *e, char *const *tags, size_t n);
/* Replaces the entry's children with a copy of digests[0..n). 0, or -1. */
int regstate_set_children(struct regstate_entry *e, char *const *digests, size_t n);

/* The default file of a registry (its host[:port]) and repository: in
 * $STATE_DIRECTORY (its first path) when set, else the current directory,
 * named "sluice-registry-HOST_3aPORT_2fREPO.json" with each byte other than
 * [A-Za-z0-9.-] written as '_' and two hex digits. Malloc'd, or NULL. */
char *regstate_default_path(const char *registry, const char *repository);

#endif
