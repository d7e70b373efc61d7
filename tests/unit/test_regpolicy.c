/* sluice-registry's lifecycle rules on snapshots made by hand: ranking by
 * created time, --keep, shared manifests, indexes, untagged expiry,
 * --whole-images.
 *
 * The registry/ objects are not linked into unit tests (sluice-registry is
 * a program of its own), so the sources under test are included here. */
#include "ctl/fmt.c"
#include "registry/regclient.c"
#include "registry/regscan.c"
#include "registry/regstate.c"
#include "registry/regpolicy.c"
#include "registry/regreport.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tmpdir.h"

#define NOW  (1800000000000LL)
#define DAYS (24LL * 3600 * 1000)

/* Digest number n: "sha256:" and 64 hex digits. */
static const char *dg(int n)
{
	static char buf[16][72];
	static int next;
	char *b = buf[next++ % 16];

	snprintf(b, 72, "sha256:%064d", n);
	return b;
}

struct fixture {
	struct regscan s;
	struct regstate st;
	struct regpolicy_plan plan;
	int exists[16];
	int whole_images;
};

static size_t image(struct fixture *f, int n, int64_t created_ms)
{
	struct regscan *s = &f->s;

	s->images = realloc(s->images, (s->nimages + 1) * sizeof(*s->images));
	assert_non_null(s->images);
	memset(&s->images[s->nimages], 0, sizeof(*s->images));
	s->images[s->nimages].digest = strdup(dg(n));
	s->images[s->nimages].media_type = strdup("application/vnd.oci.image.manifest.v1+json");
	s->images[s->nimages].created_ms = created_ms;
	s->images[s->nimages].understood = 1;
	return s->nimages++;
}

static void child(struct fixture *f, size_t index, size_t c)
{
	struct regscan_image *im = &f->s.images[index];

	im->children = realloc(im->children, (im->nchildren + 1) * sizeof(size_t));
	assert_non_null(im->children);
	im->children[im->nchildren++] = c;
}

static void tag(struct fixture *f, const char *name, size_t im)
{
	struct regscan *s = &f->s;

	s->tags = realloc(s->tags, (s->ntags + 1) * sizeof(*s->tags));
	assert_non_null(s->tags);
	s->tags[s->ntags].name = strdup(name);
	s->tags[s->ntags++].image = im;
}

static void seen(struct fixture *f, int n, int64_t first_seen, int64_t created, int exists)
{
	struct regstate_entry *e = regstate_add(&f->st, dg(n));

	assert_non_null(e);
	e->first_seen_ms = first_seen;
	e->last_tagged_ms = first_seen;
	e->created_ms = created;
	f->exists[f->st.n - 1] = exists;
}

static void plan(struct fixture *f, long keep_last, const char *pattern, const char *keep,
		 int64_t expire_ms)
{
	const char *patterns[] = {pattern}, *keeps[] = {keep};
	struct regpolicy p = {.keep_last = keep_last,
			      .patterns = patterns,
			      .npatterns = pattern ? 1 : 0,
			      .keep = keeps,
			      .nkeep = keep ? 1 : 0,
			      .expire_ms = expire_ms,
			      .whole_images = f->whole_images,
			      .now_ms = NOW};

	assert_int_equal(regpolicy_plan(&p, &f->s, &f->st, f->exists, &f->plan), 0);
}

static const struct regpolicy_row *row(const struct fixture *f, const char *tag_or_digest)
{
	size_t i;

	for (i = 0; i < f->plan.nrows; i++) {
		const struct regpolicy_row *r = &f->plan.rows[i];
		if ((r->tag && strcmp(r->tag, tag_or_digest) == 0) ||
		    (!r->tag && strcmp(r->digest, tag_or_digest) == 0))
			return r;
	}
	fail_msg("no row for %s", tag_or_digest);
	return NULL;
}

/* The plan deletes index, then child, sent only once the index is. */
static void assert_deletes_index_then_child(const struct fixture *f, const char *index,
					    const char *child)
{
	assert_int_equal(f->plan.nops, 2);
	assert_string_equal(f->plan.ops[0].reference, index);
	assert_string_equal(f->plan.ops[1].reference, child);
	assert_int_equal(f->plan.ops[1].nneeds, 1);
	assert_int_equal(f->plan.ops[1].needs[0], 0);
}

static void done(struct fixture *f)
{
	regpolicy_plan_clear(&f->plan);
	regscan_clear(&f->s);
	regstate_clear(&f->st);
}

static void newest_by_created_time_are_kept_whatever_their_names(void **state)
{
	struct fixture f = {0};
	(void)state;

	tag(&f, "prod-1", image(&f, 1, NOW - 10 * DAYS));
	tag(&f, "prod-2", image(&f, 2, NOW - 1 * DAYS));
	tag(&f, "prod-3", image(&f, 3, NOW - 5 * DAYS));
	tag(&f, "dev", image(&f, 4, NOW - 90 * DAYS));
	plan(&f, 2, "prod-*", NULL, 0);
	assert_int_equal(row(&f, "prod-2")->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, "prod-3")->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_DELETE);
	assert_int_equal(row(&f, "dev")->action, REGPOLICY_KEEP);
	assert_int_equal(f.plan.nops, 1);
	assert_string_equal(f.plan.ops[0].reference, dg(1));
	assert_false(f.plan.ops[0].by_tag);
	/* Production tags come first, newest first. */
	assert_string_equal(f.plan.rows[0].tag, "prod-2");
	assert_string_equal(row(&f, "prod-1")->reason,
			    "production tag 3 of 3 by created time: beyond the newest 2");
	done(&f);
}

static void unknown_times_rank_last_and_ties_by_name_descending(void **state)
{
	struct fixture f = {0};
	(void)state;

	tag(&f, "v1", image(&f, 1, -1));
	tag(&f, "v2", image(&f, 2, NOW - DAYS));
	tag(&f, "v3", image(&f, 3, NOW - DAYS));
	plan(&f, 2, "*", NULL, 0);
	assert_int_equal(row(&f, "v3")->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, "v2")->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, "v1")->action, REGPOLICY_DELETE);
	done(&f);
}

/* An old image tagged other and prod-1, and a new one tagged prod-2. */
static void old_release(struct fixture *f, const char *other)
{
	size_t old = image(f, 1, NOW - 30 * DAYS);

	tag(f, other, old);
	tag(f, "prod-1", old);
	tag(f, "prod-2", image(f, 2, NOW - DAYS));
}

static void a_kept_tag_on_the_same_image_leaves_only_the_tag_to_delete(void **state)
{
	struct fixture f = {0};
	(void)state;

	old_release(&f, "latest");
	plan(&f, 1, "prod-*", "latest", 0);
	assert_int_equal(row(&f, "latest")->action, REGPOLICY_KEEP);
	assert_string_equal(row(&f, "latest")->reason, "kept by --keep latest");
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_UNTAG);
	assert_non_null(strstr(row(&f, "prod-1")->reason, "stays for tag latest"));
	assert_int_equal(f.plan.nops, 1);
	assert_true(f.plan.ops[0].by_tag);
	assert_string_equal(f.plan.ops[0].reference, "prod-1");
	done(&f);
}

static void two_deleted_tags_of_one_image_make_one_delete(void **state)
{
	struct fixture f = {0};
	size_t old;
	(void)state;

	old = image(&f, 1, NOW - 30 * DAYS);
	tag(&f, "prod-1", old);
	tag(&f, "prod-1b", old);
	tag(&f, "prod-2", image(&f, 2, NOW - DAYS));
	plan(&f, 1, "prod-*", NULL, 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(row(&f, "prod-1")->op, 0);
	assert_int_equal(row(&f, "prod-1b")->op, 0);
	done(&f);
}

/* A release tagged 1 and prod-1: by default the tag of no pattern keeps
 * the image, so only prod-1 can go; with --whole-images the image goes
 * with both tags, in one delete by digest. */
static void whole_images_takes_the_tags_of_no_pattern_with_the_image(void **state)
{
	struct fixture f = {0};
	(void)state;

	old_release(&f, "1");
	tag(&f, "2", f.s.tags[2].image);
	plan(&f, 1, "prod-*", NULL, 0);
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_UNTAG);
	assert_int_equal(row(&f, "1")->action, REGPOLICY_KEEP);
	regpolicy_plan_clear(&f.plan);

	f.whole_images = 1;
	plan(&f, 1, "prod-*", NULL, 0);
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_DELETE);
	assert_int_equal(row(&f, "1")->action, REGPOLICY_DELETE);
	assert_string_equal(row(&f, "1")->reason,
			    "not a production tag, but its manifest goes with production tag "
			    "prod-1 (--whole-images)");
	assert_int_equal(row(&f, "2")->action, REGPOLICY_KEEP);
	assert_int_equal(f.plan.nops, 1);
	assert_false(f.plan.ops[0].by_tag);
	assert_string_equal(f.plan.ops[0].reference, dg(1));
	assert_int_equal(row(&f, "1")->op, 0);
	assert_int_equal(row(&f, "prod-1")->op, 0);
	done(&f);
}

/* With --whole-images the image stays for a --keep tag, a kept production
 * tag, or a tag of no pattern on an index that stays and lists it; then
 * only the production tag is deleted. */
static void whole_images_spares_what_kept_tags_and_staying_indexes_reach(void **state)
{
	struct fixture f = {0};
	size_t kept, twice, listed, idx;
	(void)state;

	kept = image(&f, 1, NOW - 30 * DAYS);
	tag(&f, "latest", kept);
	tag(&f, "prod-1", kept);
	twice = image(&f, 2, NOW - DAYS);
	tag(&f, "prod-2", twice);
	tag(&f, "prod-0", twice);
	listed = image(&f, 3, NOW - 29 * DAYS);
	tag(&f, "prod-3", listed);
	idx = image(&f, 4, NOW - 29 * DAYS);
	child(&f, idx, listed);
	tag(&f, "multi", idx);
	f.whole_images = 1;
	plan(&f, 1, "prod-*", "latest", 0);
	assert_int_equal(row(&f, "prod-2")->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, "prod-0")->action, REGPOLICY_UNTAG);
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_UNTAG);
	assert_non_null(strstr(row(&f, "prod-1")->reason, "stays for tag latest"));
	assert_int_equal(row(&f, "prod-3")->action, REGPOLICY_UNTAG);
	assert_non_null(strstr(row(&f, "prod-3")->reason, "stays for tag multi"));
	assert_int_equal(row(&f, "multi")->action, REGPOLICY_KEEP);
	assert_int_equal(f.plan.nops, 3);
	assert_true(f.plan.ops[0].by_tag && f.plan.ops[1].by_tag && f.plan.ops[2].by_tag);
	done(&f);
}

static void untagged_images_expire_when_seen_and_created_long_enough_ago(void **state)
{
	struct fixture f = {0};
	(void)state;

	tag(&f, "app", image(&f, 9, NOW));
	seen(&f, 1, NOW - 8 * DAYS, NOW - 30 * DAYS, 1); /* both old: deleted */
	seen(&f, 2, NOW - 1 * DAYS, NOW - 30 * DAYS, 1); /* seen lately: kept */
	seen(&f, 3, NOW - 8 * DAYS, NOW - 1 * DAYS, 1);	 /* created lately: kept */
	seen(&f, 4, NOW - 8 * DAYS, -1, 1);		 /* no time: by sighting */
	seen(&f, 5, NOW - 8 * DAYS, NOW - 30 * DAYS, 0); /* gone: forgotten */
	plan(&f, 0, NULL, NULL, 7 * DAYS);
	assert_int_equal(row(&f, dg(1))->action, REGPOLICY_DELETE);
	assert_non_null(strstr(row(&f, dg(1))->reason, "older than 7d"));
	assert_int_equal(row(&f, dg(2))->action, REGPOLICY_KEEP);
	assert_non_null(strstr(row(&f, dg(2))->reason, "expires after"));
	assert_int_equal(row(&f, dg(3))->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, dg(4))->action, REGPOLICY_DELETE);
	assert_int_equal(row(&f, dg(5))->action, REGPOLICY_FORGET);
	assert_int_equal(row(&f, "app")->action, REGPOLICY_KEEP);
	assert_int_equal(f.plan.nops, 2);
	done(&f);
}

static void without_an_age_untagged_images_are_kept(void **state)
{
	struct fixture f = {0};
	(void)state;

	tag(&f, "prod-1", image(&f, 9, NOW));
	seen(&f, 1, NOW - 800 * DAYS, NOW - 800 * DAYS, 1);
	plan(&f, 5, "*", NULL, 0);
	assert_int_equal(row(&f, dg(1))->action, REGPOLICY_KEEP);
	assert_int_equal(f.plan.nops, 0);
	done(&f);
}

static void images_of_a_kept_index_never_expire(void **state)
{
	struct fixture f = {0};
	size_t idx, a, b;
	(void)state;

	idx = image(&f, 1, NOW - 30 * DAYS);
	a = image(&f, 2, NOW - 30 * DAYS);
	b = image(&f, 3, NOW - 30 * DAYS);
	child(&f, idx, a);
	child(&f, idx, b);
	tag(&f, "prod-1", idx);
	seen(&f, 2, NOW - 30 * DAYS, NOW - 30 * DAYS, 1);
	seen(&f, 3, NOW - 30 * DAYS, NOW - 30 * DAYS, 1);
	plan(&f, 5, "*", NULL, 7 * DAYS);
	assert_int_equal(f.plan.nops, 0);
	assert_int_equal(f.plan.nrows, 1);
	done(&f);
}

/* The state's index n lists the digests children[0..n). */
static void lists_children(struct fixture *f, int n, const int *children, size_t nchildren)
{
	struct regstate_entry *e = regstate_find(&f->st, dg(n));
	char *digests[8];
	assert_non_null(e);
	for (size_t k = 0; k < nchildren; k++)
		digests[k] = strdup(dg(children[k]));
	assert_int_equal(regstate_set_children(e, digests, nchildren), 0);
	for (size_t k = 0; k < nchildren; k++)
		free(digests[k]);
}

/* A multi-arch release rolled away from (its index untagged, still within
 * --expire-untagged, maybe still deployed by digest) keeps the manifests it
 * lists, however long ago they were first seen: the state remembers what
 * each index listed. An expiring index goes before what only it listed. */
static void images_of_an_untagged_index_that_stays_are_kept(void **state)
{
	struct fixture f = {0};
	(void)state;

	/* Day 0: tag t -> index 1 {2, 3}; day 5: t -> index 4 {2, 5}; day 6:
	 * t -> index 6 {7, 8}. Now day 8, expiry 7 days. */
	size_t idx = image(&f, 6, NOW - 2 * DAYS), y = image(&f, 7, NOW - 2 * DAYS),
	       x3 = image(&f, 8, NOW - 2 * DAYS);
	child(&f, idx, y);
	child(&f, idx, x3);
	tag(&f, "t", idx);
	seen(&f, 1, NOW - 8 * DAYS, NOW - 8 * DAYS, 1);
	seen(&f, 2, NOW - 8 * DAYS, NOW - 8 * DAYS, 1);
	seen(&f, 3, NOW - 8 * DAYS, NOW - 8 * DAYS, 1);
	seen(&f, 4, NOW - 3 * DAYS, NOW - 3 * DAYS, 1);
	seen(&f, 5, NOW - 3 * DAYS, NOW - 3 * DAYS, 1);
	lists_children(&f, 1, (const int[]){2, 3}, 2);
	lists_children(&f, 4, (const int[]){2, 5}, 2);
	plan(&f, 5, "*", NULL, 7 * DAYS);
	assert_int_equal(row(&f, dg(4))->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, dg(2))->action, REGPOLICY_KEEP);
	assert_non_null(strstr(row(&f, dg(2))->reason, dg(4)));
	assert_int_equal(row(&f, dg(5))->action, REGPOLICY_KEEP);
	/* Index 1 expired, and 3, which only it listed, after it. */
	assert_int_equal(row(&f, dg(1))->action, REGPOLICY_DELETE);
	assert_int_equal(row(&f, dg(3))->action, REGPOLICY_DELETE);
	assert_deletes_index_then_child(&f, dg(1), dg(3));
	done(&f);
}

/* The state file keeps an index's children across runs, and refuses a
 * child that is no digest. */
static void the_state_file_keeps_what_an_index_lists(void **state)
{
	char dir[64], path[128], err[256];
	struct regstate st = {0}, back;
	int found;
	(void)state;

	assert_int_equal(tmpdir_make(dir, sizeof(dir), "sluice-test-regstate"), 0);
	snprintf(path, sizeof(path), "%s/state.json", dir);
	st.registry = strdup("r.example");
	st.repository = strdup("app");
	struct regstate_entry *e = regstate_add(&st, dg(1));
	e->first_seen_ms = e->last_tagged_ms = NOW;
	char *kids[] = {(char *)dg(2), (char *)dg(3)};
	assert_int_equal(regstate_set_children(e, kids, 2), 0);
	assert_non_null(regstate_add(&st, dg(2)));
	st.entries[1].first_seen_ms = st.entries[1].last_tagged_ms = NOW;
	assert_int_equal(regstate_save(path, &st, err, sizeof(err)), 0);
	assert_int_equal(regstate_load(path, &back, &found, err, sizeof(err)), 0);
	const struct regstate_entry *b = regstate_find(&back, dg(1));
	assert_non_null(b);
	assert_int_equal(b->nchildren, 2);
	assert_string_equal(b->children[1], dg(3));
	assert_int_equal(regstate_find(&back, dg(2))->nchildren, 0);
	regstate_clear(&back);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp,
		"{\"version\": 1, \"registry\": \"r\", \"repository\": \"a\", \"digests\": "
		"{\"%s\": {\"first_seen\": \"2026-01-01T00:00:00Z\", \"last_tagged\": "
		"\"2026-01-01T00:00:00Z\", \"created\": null, \"children\": [\"x\"]}}}\n",
		dg(1));
	fclose(fp);
	assert_int_equal(regstate_load(path, &back, &found, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ".children[0]: expected a digest"));
	regstate_clear(&st);
	unlink(path);
	rmdir(dir);
}

/* A reason or a message cut at its buffer inside a character (the text
 * comes from what the registry says) still makes its row and its delete in
 * --json, where it used to drop them without a word. */
static void json_keeps_a_row_whose_reason_was_cut_inside_a_character(void **state)
{
	struct fixture f = {0};
	struct regargs a = {.repository = "app"};
	char *text = NULL;
	size_t len = 0;
	(void)state;

	tag(&f, "prod-1", image(&f, 1, NOW));
	plan(&f, 5, "*", NULL, 0);
	assert_int_equal(f.plan.nrows, 1);
	memset(f.plan.rows[0].reason, 'x', sizeof(f.plan.rows[0].reason));
	f.plan.rows[0].reason[sizeof(f.plan.rows[0].reason) - 2] = (char)0xc3;
	f.plan.rows[0].reason[sizeof(f.plan.rows[0].reason) - 1] = '\0';
	struct regreport r = {.args = &a, .registry = "r", .state_file = "s", .plan = &f.plan};
	FILE *out = open_memstream(&text, &len);
	assert_non_null(out);
	assert_int_equal(regreport_json(&r, out), 0);
	fclose(out);
	json_t *root = json_loads(text, 0, NULL);
	assert_non_null(root);
	json_t *rows = json_object_get(root, "rows");
	assert_int_equal(json_array_size(rows), 1);
	assert_non_null(json_string_value(json_object_get(json_array_get(rows, 0), "reason")));
	json_decref(root);
	free(text);
	done(&f);
}

static void images_of_a_deleted_index_expire_after_it(void **state)
{
	struct fixture f = {0};
	size_t idx, a, b;
	(void)state;

	idx = image(&f, 1, NOW - 30 * DAYS);
	a = image(&f, 2, NOW - 30 * DAYS);
	b = image(&f, 3, NOW - 30 * DAYS);
	child(&f, idx, a);
	child(&f, idx, b);
	tag(&f, "prod-1", idx);
	tag(&f, "prod-2", image(&f, 4, NOW));
	seen(&f, 2, NOW - 30 * DAYS, NOW - 30 * DAYS, 1); /* seen before: expires now */
	plan(&f, 1, "*", NULL, 7 * DAYS);
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_DELETE);
	assert_int_equal(row(&f, dg(2))->action, REGPOLICY_DELETE);
	/* Never seen before this run: first seen now, so kept. */
	assert_int_equal(row(&f, dg(3))->action, REGPOLICY_KEEP);
	/* The image is sent only once the index that lists it is deleted. */
	assert_deletes_index_then_child(&f, dg(1), dg(2));
	done(&f);
}

/* An image two deleted indexes list waits for both; one that an index
 * which stays lists (here an untagged one, listed by a deleted index in
 * turn) is kept: deleting it would break that index. */
static void an_image_an_index_lists_waits_for_every_such_index(void **state)
{
	struct fixture f = {0};
	size_t a, b, nested, shared, inner;
	(void)state;

	a = image(&f, 1, NOW - 30 * DAYS);
	b = image(&f, 2, NOW - 29 * DAYS);
	nested = image(&f, 3, NOW - 28 * DAYS);
	shared = image(&f, 4, NOW - 30 * DAYS);
	inner = image(&f, 5, NOW - 30 * DAYS);
	child(&f, a, shared);
	child(&f, b, shared);
	child(&f, b, nested);
	child(&f, nested, inner);
	tag(&f, "prod-1", a);
	tag(&f, "prod-2", b);
	tag(&f, "prod-3", image(&f, 6, NOW));
	seen(&f, 4, NOW - 30 * DAYS, NOW - 30 * DAYS, 1);
	seen(&f, 5, NOW - 30 * DAYS, NOW - 30 * DAYS, 1);
	plan(&f, 1, "*", NULL, 7 * DAYS);
	assert_int_equal(row(&f, dg(4))->action, REGPOLICY_DELETE);
	assert_int_equal(row(&f, dg(5))->action, REGPOLICY_KEEP);
	assert_non_null(strstr(row(&f, dg(5))->reason, dg(3)));
	assert_int_equal(f.plan.nops, 3);
	assert_string_equal(f.plan.ops[2].reference, dg(4));
	assert_int_equal(f.plan.ops[2].nneeds, 2);
	assert_string_equal(f.plan.ops[f.plan.ops[2].needs[0]].reference, dg(1));
	assert_string_equal(f.plan.ops[f.plan.ops[2].needs[1]].reference, dg(2));
	done(&f);
}

static void deletes_by_digest_go_before_tags_alone_and_untagged_last(void **state)
{
	struct fixture f = {0};
	size_t shared;
	(void)state;

	shared = image(&f, 1, NOW - 30 * DAYS);
	tag(&f, "latest", shared);
	tag(&f, "prod-1", shared);			  /* untag */
	tag(&f, "prod-2", image(&f, 2, NOW - 20 * DAYS)); /* delete */
	tag(&f, "prod-3", image(&f, 3, NOW));
	seen(&f, 7, NOW - 30 * DAYS, NOW - 30 * DAYS, 1);
	plan(&f, 1, "prod-*", "latest", 7 * DAYS);
	assert_int_equal(f.plan.nops, 3);
	assert_string_equal(f.plan.ops[0].reference, dg(2));
	assert_string_equal(f.plan.ops[1].reference, "prod-1");
	assert_string_equal(f.plan.ops[2].reference, dg(7));
	assert_int_equal(row(&f, "prod-2")->op, 0);
	assert_int_equal(row(&f, "prod-1")->op, 1);
	assert_int_equal(row(&f, dg(7))->op, 2);
	done(&f);
}

static void manifests_not_understood_are_kept_and_not_counted(void **state)
{
	struct fixture f = {0};
	size_t odd;
	(void)state;

	odd = image(&f, 1, -1);
	f.s.images[odd].understood = 0;
	tag(&f, "prod-0", odd);
	tag(&f, "prod-1", image(&f, 2, NOW - DAYS));
	plan(&f, 1, "prod-*", NULL, 0);
	assert_int_equal(row(&f, "prod-0")->action, REGPOLICY_KEEP);
	assert_int_equal(row(&f, "prod-1")->action, REGPOLICY_KEEP);
	assert_int_equal(f.plan.nops, 0);
	done(&f);
}

static void registry_names_follow_the_distribution_grammar(void **state)
{
	(void)state;
	assert_true(regscan_repository_ok("mint/app"));
	assert_true(regscan_repository_ok("a__b/c-d.e/f--g"));
	assert_false(regscan_repository_ok("Mint/app"));
	assert_false(regscan_repository_ok("mint//app"));
	assert_false(regscan_repository_ok("mint/app/"));
	assert_false(regscan_repository_ok("a___b"));
	assert_false(regscan_repository_ok("../x"));
	assert_true(regscan_tag_ok("prod-1.2_x"));
	assert_false(regscan_tag_ok(".hidden"));
	assert_false(regscan_tag_ok("a/b"));
	assert_true(regscan_digest_ok(dg(1)));
	assert_false(regscan_digest_ok("sha256:abc"));
	assert_false(regscan_digest_ok("sha256:../../etc"));
	assert_false(regscan_digest_ok("prod-1"));
}

static void default_state_file_escapes_registry_and_repository(void **state)
{
	char *path;
	(void)state;

	setenv("STATE_DIRECTORY", "/var/lib/sluice/registry:/other", 1);
	path = regstate_default_path("http://127.0.0.1:5000", "mint/app");
	assert_string_equal(
	    path, "/var/lib/sluice/registry/sluice-registry-127.0.0.1_3a5000_2fmint_2fapp.json");
	free(path);
	unsetenv("STATE_DIRECTORY");
	path = regstate_default_path("https://r.example", "a_b");
	assert_string_equal(path, "./sluice-registry-r.example_2fa_5fb.json");
	free(path);
}

/* A time before 1970 would be written back as null, which no later run
 * could read: the file is refused when it is read instead. */
static void state_times_before_1970_are_refused(void **state)
{
	char dir[64], path[128], text[512], err[512];
	struct regstate st;
	int found;
	(void)state;

	assert_int_equal(tmpdir_make(dir, sizeof(dir), "regstate"), 0);
	snprintf(path, sizeof(path), "%s/state.json", dir);
	snprintf(text, sizeof(text),
		 "{\"version\": 1, \"registry\": \"http://r\", \"repository\": \"a\", "
		 "\"digests\": {\"%s\": {\"first_seen\": \"1969-06-01T00:00:00Z\", "
		 "\"last_tagged\": \"2026-01-01T00:00:00Z\", \"created\": null}}}",
		 dg(1));
	assert_int_equal(tmpdir_write(path, text), 0);
	assert_int_equal(regstate_load(path, &st, &found, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ".first_seen: expected an RFC 3339 time from 1970 on"));
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(newest_by_created_time_are_kept_whatever_their_names),
	    cmocka_unit_test(unknown_times_rank_last_and_ties_by_name_descending),
	    cmocka_unit_test(a_kept_tag_on_the_same_image_leaves_only_the_tag_to_delete),
	    cmocka_unit_test(two_deleted_tags_of_one_image_make_one_delete),
	    cmocka_unit_test(whole_images_takes_the_tags_of_no_pattern_with_the_image),
	    cmocka_unit_test(whole_images_spares_what_kept_tags_and_staying_indexes_reach),
	    cmocka_unit_test(untagged_images_expire_when_seen_and_created_long_enough_ago),
	    cmocka_unit_test(without_an_age_untagged_images_are_kept),
	    cmocka_unit_test(images_of_a_kept_index_never_expire),
	    cmocka_unit_test(images_of_an_untagged_index_that_stays_are_kept),
	    cmocka_unit_test(the_state_file_keeps_what_an_index_lists),
	    cmocka_unit_test(json_keeps_a_row_whose_reason_was_cut_inside_a_character),
	    cmocka_unit_test(images_of_a_deleted_index_expire_after_it),
	    cmocka_unit_test(an_image_an_index_lists_waits_for_every_such_index),
	    cmocka_unit_test(deletes_by_digest_go_before_tags_alone_and_untagged_last),
	    cmocka_unit_test(manifests_not_understood_are_kept_and_not_counted),
	    cmocka_unit_test(registry_names_follow_the_distribution_grammar),
	    cmocka_unit_test(default_state_file_escapes_registry_and_repository),
	    cmocka_unit_test(state_times_before_1970_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
