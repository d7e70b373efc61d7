/* regpolicy: which tags and manifests a lifecycle run deletes, and why.
 *
 * Pure: from a snapshot of the repository (regscan), the state of earlier
 * runs (regstate) and the policy, a plan of rows (one a tag, one a
 * manifest without tag) and the DELETE requests that carry it out. The
 * rules, in order:
 *  - a tag matching a --keep pattern is kept;
 *  - production tags (matching a --tag-pattern) are ranked by their
 *    image's created time, newest first (unknown times last, ties by name
 *    descending); the first keep_last are kept, the others deleted;
 *  - a deleted tag's manifest is deleted by digest only when no kept tag
 *    reaches it (directly or through an index); otherwise only the tag is.
 *    With whole_images a tag matching no pattern does not keep the
 *    manifest it names: it goes with the manifest (still, it keeps what it
 *    reaches through an index that stays);
 *  - a manifest of the state that no kept tag reaches any more is deleted
 *    once both its first sighting and its image's created time are at
 *    least expire_ms old; one that an index deleted now lists waits for
 *    that delete (needs), and one that an index kept untagged lists stays.
 * Anything else is kept.
 */
#ifndef SLUICE_REGPOLICY_H
#define SLUICE_REGPOLICY_H

#include <stddef.h>
#include <stdint.h>

#include "registry/regscan.h"
#include "registry/regstate.h"

struct regpolicy {
	long keep_last; /* 0: tags are not limited */
	const char *const *patterns;
	size_t npatterns;
	const char *const *keep;
	size_t nkeep;
	int64_t expire_ms; /* 0: untagged manifests are not expired */
	int whole_images;  /* a deleted production tag takes every tag of its image */
	int64_t now_ms;
};

enum regpolicy_action {
	REGPOLICY_KEEP,
	REGPOLICY_DELETE, /* the manifest, by digest */
	REGPOLICY_UNTAG,  /* the tag alone; its manifest stays */
	REGPOLICY_FORGET, /* gone from the registry: dropped from the state */
};

enum regpolicy_status {
	REGPOLICY_PLANNED,
	REGPOLICY_DONE,
	REGPOLICY_GONE,	       /* already deleted by someone else */
	REGPOLICY_UNSUPPORTED, /* the registry cannot delete a tag alone */
	REGPOLICY_FAILED,
};

struct regpolicy_op {
	char *reference; /* what DELETE names: a digest, or the tag for UNTAG */
	char *digest;
	int by_tag;
	/* Earlier ops (indexes that list this manifest) that must be done or
	 * gone before this one is sent: an index that stays must not lose the
	 * manifests it lists. */
	long *needs;
	size_t nneeds;
	enum regpolicy_status status;
	char message[512];
};

struct regpolicy_row {
	char *tag; /* NULL for a manifest without tag */
	char *digest;
	int64_t created_ms; /* -1 when unknown */
	enum regpolicy_action action;
	long op; /* DELETE and UNTAG: index into ops; else -1 */
	char reason[512];
};

struct regpolicy_plan {
	struct regpolicy_row *rows;
	size_t nrows;
	struct regpolicy_op *ops; /* in the order they are to be sent */
	size_t nops;
};

/* exists[i] says whether the state's entry i is still in the registry (the
 * caller looked up those the snapshot does not hold). The plan holds copies
 * of the names it needs. 0, or -1 when out of memory. */
int regpolicy_plan(const struct regpolicy *p, const struct regscan *s, const struct regstate *st,
		   const int *exists, struct regpolicy_plan *plan);
void regpolicy_plan_clear(struct regpolicy_plan *plan);

const char *regpolicy_action_name(enum regpolicy_action a);
const char *regpolicy_status_name(enum regpolicy_status s);

#endif
