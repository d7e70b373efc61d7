/* regscan: what a repository holds, as its tags show it.
 *
 * Every tag (tags/list, page by page along the Link header) is resolved to
 * its manifest digest with an Accept header for Docker v2 schema 2 and OCI
 * manifests and indexes; each digest is read once. An image's time is its
 * config's `created`; an index's is the newest of the manifests it lists,
 * which are images of the snapshot too; a tag the registry lists twice is
 * taken once, as first listed. The digest is the registry's
 * Docker-Content-Digest, checked against the content when it is sha256.
 */
#ifndef SLUICE_REGSCAN_H
#define SLUICE_REGSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "registry/regclient.h"

/* What the Accept header of a manifest request lists. */
#define REGSCAN_ACCEPT                                                                             \
	"application/vnd.oci.image.index.v1+json, "                                                \
	"application/vnd.oci.image.manifest.v1+json, "                                             \
	"application/vnd.docker.distribution.manifest.list.v2+json, "                              \
	"application/vnd.docker.distribution.manifest.v2+json"

/* How deep indexes may nest: legal but rare, this bounds a hostile
 * registry. */
#define REGSCAN_MAX_DEPTH 4

struct regscan_image {
	char *digest;
	char *media_type;
	int64_t created_ms; /* -1 when unknown */
	char *note;	    /* why created is unknown or the type is not understood */
	int understood;	    /* one of the four media types */
	size_t *children;   /* an index's manifests: indexes into the snapshot's images */
	size_t nchildren;
};

struct regscan_tag {
	char *name;
	size_t image; /* index into images */
};

struct regscan {
	struct regscan_image *images;
	size_t nimages;
	struct regscan_tag *tags; /* in the registry's order */
	size_t ntags;
};

/* Reads the tags of repo and the images they reach, page_size tags a
 * request. 0, or -1 with err; a tag deleted while this runs is left out. */
int regscan_repository(struct regclient *c, const char *repo, long page_size, struct regscan *s,
		       char *err, size_t errlen);
/* Whether the manifest digest still exists (HEAD): 1, 0, or -1 with err. */
int regscan_exists(struct regclient *c, const char *repo, const char *digest, char *err,
		   size_t errlen);
void regscan_clear(struct regscan *s);

/* "sha256:<64 hex>" and the grammar's other algorithms: safe in a URL path. */
int regscan_digest_ok(const char *s);
/* A tag by the distribution grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
int regscan_tag_ok(const char *s);
/* A repository name by the distribution grammar (lower-case components
 * separated by '/'), at most 255 characters. */
int regscan_repository_ok(const char *s);

#endif
