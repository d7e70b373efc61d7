/* regpolicy: the lifecycle rules applied to one snapshot of a repository. */
#include "registry/regpolicy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/fmt.h"
#include "lib/glob.h"

#define DAY_MS (24LL * 3600 * 1000)

struct work {
	const struct regpolicy *p;
	const struct regscan *s;
	const struct regstate *st;
	struct regpolicy_plan *plan;
	long *live_by;	/* per image: a kept tag that reaches it, or -1 */
	long *image_op; /* per image: the op that deletes it, or -1 */
};

struct ranked {
	size_t tag;
	int64_t created_ms;
	const char *name;
};

const char *regpolicy_action_name(enum regpolicy_action a)
{
	switch (a) {
	case REGPOLICY_KEEP:
		return "keep";
	case REGPOLICY_DELETE:
		return "delete";
	case REGPOLICY_UNTAG:
		return "untag";
	case REGPOLICY_FORGET:
		return "forget";
	}
	return "?";
}

const char *regpolicy_status_name(enum regpolicy_status s)
{
	switch (s) {
	case REGPOLICY_PLANNED:
		return "planned";
	case REGPOLICY_DONE:
		return "deleted";
	case REGPOLICY_GONE:
		return "gone";
	case REGPOLICY_UNSUPPORTED:
		return "unsupported";
	case REGPOLICY_FAILED:
		return "failed";
	}
	return "?";
}

static struct regpolicy_row *add_row(struct work *w, const char *tag, const char *digest,
				     int64_t created_ms, enum regpolicy_action action,
				     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static struct regpolicy_row *add_row(struct work *w, const char *tag, const char *digest,
				     int64_t created_ms, enum regpolicy_action action,
				     const char *fmt, ...)
{
	struct regpolicy_plan *plan = w->plan;
	struct regpolicy_row *grown = realloc(plan->rows, (plan->nrows + 1) * sizeof(*grown));
	struct regpolicy_row *r;
	va_list ap;

	if (!grown)
		return NULL;
	plan->rows = grown;
	r = &plan->rows[plan->nrows];
	/* Copies: the state's entries may be removed while the plan lives. */
	*r = (struct regpolicy_row){.tag = tag ? strdup(tag) : NULL,
				    .digest = strdup(digest),
				    .created_ms = created_ms,
				    .action = action,
				    .op = -1};
	if (!r->digest || (tag && !r->tag)) {
		free(r->tag);
		free(r->digest);
		return NULL;
	}
	plan->nrows++;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
	return r;
}

static long add_op(struct work *w, const char *reference, const char *digest, int by_tag)
{
	struct regpolicy_plan *plan = w->plan;
	struct regpolicy_op *grown = realloc(plan->ops, (plan->nops + 1) * sizeof(*grown));

	if (!grown)
		return -1;
	plan->ops = grown;
	plan->ops[plan->nops] = (struct regpolicy_op){.reference = strdup(reference),
						      .digest = strdup(digest),
						      .by_tag = by_tag,
						      .status = REGPOLICY_PLANNED};
	if (!plan->ops[plan->nops].reference || !plan->ops[plan->nops].digest) {
		free(plan->ops[plan->nops].reference);
		free(plan->ops[plan->nops].digest);
		return -1;
	}
	return (long)plan->nops++;
}

static const char *matching(const char *const *globs, size_t n, const char *tag)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (glob_match(globs[i], tag))
			return globs[i];
	return NULL;
}

static int by_created_desc(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	/* Unknown times (-1) sort after every known one. */
	if (x->created_ms != y->created_ms)
		return x->created_ms > y->created_ms ? -1 : 1;
	return strcmp(y->name, x->name);
}

/* Marks image i and every manifest it lists as reached by tag. */
static void mark_live(struct work *w, size_t i, long tag)
{
	const struct regscan_image *im = &w->s->images[i];
	size_t k;

	if (w->live_by[i] >= 0)
		return;
	w->live_by[i] = tag;
	for (k = 0; k < im->nchildren; k++)
		mark_live(w, im->children[k], tag);
}

static long snapshot_image(const struct regscan *s, const char *digest)
{
	size_t i;

	for (i = 0; i < s->nimages; i++)
		if (strcmp(s->images[i].digest, digest) == 0)
			return (long)i;
	return -1;
}

static void fmt_time(int64_t ms, char *out, size_t len)
{
	if (ms < 0)
		snprintf(out, len, "unknown");
	else
		ctl_fmt_time(ms, out, len);
}

/* "7d", "36h", "90m" or "45s": the age as the operator wrote it, roughly. */
static void fmt_age(int64_t ms, char *out, size_t len)
{
	if (ms % DAY_MS == 0)
		snprintf(out, len, "%lldd", (long long)(ms / DAY_MS));
	else if (ms % 3600000 == 0)
		snprintf(out, len, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0)
		snprintf(out, len, "%lldm", (long long)(ms / 60000));
	else
		snprintf(out, len, "%llds", (long long)(ms / 1000));
}

/* Keep or delete each tag; production tags by rank. */
static int plan_tags(struct work *w, enum regpolicy_action *fate, long *rank, size_t *nprod)
{
	const struct regpolicy *p = w->p;
	const struct regscan *s = w->s;
	struct ranked *prod = s->ntags ? calloc(s->ntags, sizeof(*prod)) : NULL;
	size_t i, n = 0;

	if (s->ntags && !prod)
		return -1;
	for (i = 0; i < s->ntags; i++) {
		const struct regscan_image *im = &s->images[s->tags[i].image];

		fate[i] = REGPOLICY_KEEP;
		rank[i] = 0;
		if (matching(p->keep, p->nkeep, s->tags[i].name) || p->keep_last <= 0 ||
		    !matching(p->patterns, p->npatterns, s->tags[i].name) || !im->understood)
			continue;
		prod[n++] = (struct ranked){
		    .tag = i, .created_ms = im->created_ms, .name = s->tags[i].name};
	}
	if (n > 0)
		qsort(prod, n, sizeof(*prod), by_created_desc);
	for (i = 0; i < n; i++) {
		rank[prod[i].tag] = (long)i + 1;
		if ((long)i >= p->keep_last)
			fate[prod[i].tag] = REGPOLICY_DELETE;
	}
	*nprod = n;
	free(prod);
	return 0;
}

static const char *kept_reason(struct work *w, size_t i, char *buf, size_t len)
{
	const struct regpolicy *p = w->p;
	const char *name = w->s->tags[i].name;
	const struct regscan_image *im = &w->s->images[w->s->tags[i].image];
	const char *k = matching(p->keep, p->nkeep, name);

	if (k)
		snprintf(buf, len, "kept by --keep %s", k);
	else if (p->keep_last <= 0)
		snprintf(buf, len, "tags are not limited (no --keep-last)");
	else if (!matching(p->patterns, p->npatterns, name))
		snprintf(buf, len, "not a production tag (matches no --tag-pattern)");
	else
		snprintf(buf, len, "a production tag, but its manifest is not understood: %s",
			 im->note ? im->note : "unknown media type");
	return buf;
}

/* Whether kept tag i keeps what it reaches whatever the production tags
 * decide: with --whole-images a tag matching no pattern does not. */
static int keeps_anyway(const struct work *w, size_t i)
{
	const struct regpolicy *p = w->p;
	const char *name = w->s->tags[i].name;

	return !p->whole_images || matching(p->keep, p->nkeep, name) ||
	       matching(p->patterns, p->npatterns, name);
}

/* With --whole-images, a tag matching no pattern keeps what it reaches
 * unless a deleted production tag takes its manifest: then it goes with
 * it. Which manifests are taken is decided before any such tag is marked,
 * so that the tags' order does not matter; one such a tag reaches through
 * an index that stays is kept (the index must not lose it). */
static int mark_untaken(struct work *w, const enum regpolicy_action *fate)
{
	const struct regscan *s = w->s;
	char *taken = s->nimages ? calloc(s->nimages, 1) : NULL;
	size_t i;

	if (s->nimages && !taken)
		return -1;
	for (i = 0; i < s->ntags; i++)
		if (fate[i] == REGPOLICY_DELETE && w->live_by[s->tags[i].image] < 0)
			taken[s->tags[i].image] = 1;
	for (i = 0; i < s->ntags; i++)
		if (fate[i] == REGPOLICY_KEEP && !keeps_anyway(w, i) && !taken[s->tags[i].image])
			mark_live(w, s->tags[i].image, (long)i);
	free(taken);
	return 0;
}

/* A deleted production tag of image i, which is deleted by digest: there
 * is one, as only those tags' manifests are. */
static const char *taker(const struct work *w, const enum regpolicy_action *fate, size_t i)
{
	size_t t;

	for (t = 0; fate[t] != REGPOLICY_DELETE || w->s->tags[t].image != i; t++)
		;
	return w->s->tags[t].name;
}

/* The rows of the tags, and the DELETE of each manifest that only deleted
 * tags reach, or of the tag alone when a kept tag still reaches it. */
static int rows_for_tags(struct work *w, const enum regpolicy_action *fate, const long *rank,
			 size_t nprod)
{
	const struct regscan *s = w->s;
	long want;
	size_t i;

	for (i = 0; i < s->ntags; i++)
		if (fate[i] == REGPOLICY_KEEP && keeps_anyway(w, i))
			mark_live(w, s->tags[i].image, (long)i);
	if (w->p->whole_images && mark_untaken(w, fate) < 0)
		return -1;
	/* Production tags first, by rank, then the others in the registry's order. */
	for (want = 1; want <= (long)nprod; want++) {
		for (i = 0; i < s->ntags && rank[i] != want; i++)
			;
		const struct regscan_image *im = &s->images[s->tags[i].image];
		const char *note = im->created_ms < 0 && im->note ? im->note : NULL;
		char why[256];
		struct regpolicy_row *r;

		snprintf(why, sizeof(why), "production tag %ld of %zu by created time%s%s%s", want,
			 nprod, note ? " (" : "", note ? note : "", note ? ")" : "");
		if (fate[i] == REGPOLICY_KEEP) {
			r = add_row(w, s->tags[i].name, im->digest, im->created_ms, REGPOLICY_KEEP,
				    "%s: within the newest %ld", why, w->p->keep_last);
			if (!r)
				return -1;
			continue;
		}
		long holder = w->live_by[s->tags[i].image];
		if (holder >= 0) {
			r = add_row(w, s->tags[i].name, im->digest, im->created_ms, REGPOLICY_UNTAG,
				    "%s: beyond the newest %ld; its manifest stays for tag %s, so "
				    "only the tag is deleted",
				    why, w->p->keep_last, s->tags[holder].name);
			if (!r || (r->op = add_op(w, s->tags[i].name, im->digest, 1)) < 0)
				return -1;
			continue;
		}
		r = add_row(w, s->tags[i].name, im->digest, im->created_ms, REGPOLICY_DELETE,
			    "%s: beyond the newest %ld", why, w->p->keep_last);
		if (!r)
			return -1;
		if (w->image_op[s->tags[i].image] < 0 &&
		    (w->image_op[s->tags[i].image] = add_op(w, im->digest, im->digest, 0)) < 0)
			return -1;
		r->op = w->image_op[s->tags[i].image];
	}
	for (i = 0; i < s->ntags; i++) {
		const struct regscan_image *im = &s->images[s->tags[i].image];
		long op = w->image_op[s->tags[i].image];
		struct regpolicy_row *r;
		char why[512];

		if (rank[i] > 0)
			continue;
		if (op >= 0) {
			/* Only a tag --whole-images does not let keep its manifest. */
			r = add_row(w, s->tags[i].name, im->digest, im->created_ms,
				    REGPOLICY_DELETE,
				    "not a production tag, but its manifest goes with production "
				    "tag %s (--whole-images)",
				    taker(w, fate, s->tags[i].image));
			if (!r)
				return -1;
			r->op = op;
			continue;
		}
		if (!add_row(w, s->tags[i].name, im->digest, im->created_ms, REGPOLICY_KEEP, "%s",
			     kept_reason(w, i, why, sizeof(why))))
			return -1;
	}
	return 0;
}

/* Whether an untagged manifest, first seen and created so, is past
 * --expire-untagged. */
static int untagged_expires(const struct work *w, const struct regstate_entry *e,
			    int64_t created_ms)
{
	int64_t since = created_ms > e->first_seen_ms ? created_ms : e->first_seen_ms;
	return w->p->expire_ms > 0 && w->p->now_ms - since >= w->p->expire_ms;
}

static int untagged_row(struct work *w, const struct regstate_entry *e, int64_t created_ms)
{
	const struct regpolicy *p = w->p;
	char first[CTL_FMT_MAX], created[CTL_FMT_MAX], tagged[CTL_FMT_MAX], age[32];
	char was[256] = "", when[CTL_FMT_MAX];
	int64_t since = e->first_seen_ms;
	struct regpolicy_row *r;
	size_t k, o = 0;

	fmt_time(e->first_seen_ms, first, sizeof(first));
	fmt_time(created_ms, created, sizeof(created));
	fmt_time(e->last_tagged_ms, tagged, sizeof(tagged));
	for (k = 0; k < e->ntags && o < sizeof(was); k++)
		o += (size_t)snprintf(was + o, sizeof(was) - o, "%s%s", k ? ", " : " as ",
				      e->tags[k]);
	if (p->expire_ms <= 0)
		return add_row(w, NULL, e->digest, created_ms, REGPOLICY_KEEP,
			       "untagged (last tagged %s%s); no --expire-untagged", tagged, was)
			   ? 0
			   : -1;
	if (created_ms > since)
		since = created_ms;
	fmt_age(p->expire_ms, age, sizeof(age));
	if (untagged_expires(w, e, created_ms)) {
		r = add_row(w, NULL, e->digest, created_ms, REGPOLICY_DELETE,
			    "untagged (last tagged %s%s), first seen %s, created %s: older than %s",
			    tagged, was, first, created, age);
		if (!r || (r->op = add_op(w, e->digest, e->digest, 0)) < 0)
			return -1;
		return 0;
	}
	fmt_time(since + p->expire_ms, when, sizeof(when));
	return add_row(w, NULL, e->digest, created_ms, REGPOLICY_KEEP,
		       "untagged (last tagged %s%s), first seen %s, created %s: expires after %s",
		       tagged, was, first, created, when)
		   ? 0
		   : -1;
}

/* An index of the snapshot that lists image i and is not deleted in this
 * run, or -1 when each one that lists it is. */
static long staying_index(const struct work *w, size_t i)
{
	size_t j, k;

	for (j = 0; j < w->s->nimages; j++)
		for (k = 0; k < w->s->images[j].nchildren; k++)
			if (w->s->images[j].children[k] == i && w->image_op[j] < 0)
				return (long)j;
	return -1;
}

/* The deletes of the indexes that list image i, which op waits for. */
static int wait_for_indexes(struct work *w, long op, size_t i)
{
	struct regpolicy_op *o = &w->plan->ops[op];
	size_t j, k;

	for (j = 0; j < w->s->nimages; j++)
		for (k = 0; k < w->s->images[j].nchildren; k++) {
			if (w->s->images[j].children[k] != i)
				continue;
			long *grown = realloc(o->needs, (o->nneeds + 1) * sizeof(long));
			if (!grown)
				return -1;
			o->needs = grown;
			o->needs[o->nneeds++] = w->image_op[j];
			break;
		}
	return 0;
}

/* Indexes first (the manifests they list wait for their deletes), then by
 * digest. */
static int cmp_digest(const void *a, const void *b)
{
	const struct regstate_entry *const *x = a, *const *y = b;

	if (!(*x)->nchildren != !(*y)->nchildren)
		return (*x)->nchildren ? -1 : 1;
	return strcmp((*x)->digest, (*y)->digest);
}

static int lists(const struct regstate_entry *index, const char *digest)
{
	for (size_t k = 0; k < index->nchildren; k++)
		if (strcmp(index->children[k], digest) == 0)
			return 1;
	return 0;
}

/* Whether the index of the state st->entries[k] is in the registry after
 * this run: a kept tag reaches it, or, untagged, it is there and not past
 * --expire-untagged (a tagged index deleted now, or one gone, is not). */
static int index_stays(const struct work *w, const int *exists, size_t k)
{
	const struct regstate_entry *e = &w->st->entries[k];
	long si = snapshot_image(w->s, e->digest);

	if (si >= 0)
		return w->live_by[si] >= 0 ||
		       (w->image_op[si] < 0 &&
			!untagged_expires(w, e, w->s->images[si].created_ms));
	return exists[k] && !untagged_expires(w, e, e->created_ms);
}

/* An index the state remembers listing digest that stays (index_stays),
 * or NULL: what no tag reaches any more, such an index still does. */
static const struct regstate_entry *staying_state_index(const struct work *w, const int *exists,
							const char *digest)
{
	for (size_t k = 0; k < w->st->n; k++)
		if (lists(&w->st->entries[k], digest) && index_stays(w, exists, k))
			return &w->st->entries[k];
	return NULL;
}

/* The untagged deletes of the indexes the state remembers listing digest,
 * which op waits for: an index is deleted before what it lists. */
static int wait_for_state_indexes(struct work *w, long op, const char *digest)
{
	struct regpolicy_plan *plan = w->plan;
	for (size_t k = 0; k < w->st->n; k++) {
		if (!lists(&w->st->entries[k], digest))
			continue;
		for (size_t o = 0; o < plan->nops; o++) {
			if (plan->ops[o].by_tag || (long)o == op ||
			    strcmp(plan->ops[o].digest, w->st->entries[k].digest) != 0)
				continue;
			struct regpolicy_op *x = &plan->ops[op];
			long *grown = realloc(x->needs, (x->nneeds + 1) * sizeof(long));
			if (!grown)
				return -1;
			x->needs = grown;
			x->needs[x->nneeds++] = (long)o;
		}
	}
	return 0;
}

/* An untagged manifest: kept while an index that lists it stays, else by
 * age (its delete after those of the indexes that list it). */
static int untagged_or_listed_row(struct work *w, const int *exists, const struct regstate_entry *e,
				  int64_t created_ms)
{
	const struct regstate_entry *by = staying_state_index(w, exists, e->digest);
	if (by)
		return add_row(w, NULL, e->digest, created_ms, REGPOLICY_KEEP,
			       "no tag reaches it, but the untagged index %s that lists it stays",
			       by->digest)
			   ? 0
			   : -1;
	if (untagged_row(w, e, created_ms) < 0)
		return -1;
	long op = w->plan->rows[w->plan->nrows - 1].op;
	return op >= 0 ? wait_for_state_indexes(w, op, e->digest) : 0;
}

/* Manifests no kept tag reaches: those of the state by age; those first
 * met in this run (the manifests of an index deleted now) are kept. */
static int rows_for_untagged(struct work *w, const int *exists)
{
	const struct regstate *st = w->st;
	const struct regscan *s = w->s;
	const struct regstate_entry **order = st->n ? calloc(st->n, sizeof(*order)) : NULL;
	size_t i;
	int rc = -1;

	if (st->n && !order)
		return -1;
	for (i = 0; i < st->n; i++)
		order[i] = &st->entries[i];
	if (st->n > 0)
		qsort(order, st->n, sizeof(*order), cmp_digest);
	for (i = 0; i < st->n; i++) {
		const struct regstate_entry *e = order[i];
		long si = snapshot_image(s, e->digest);
		size_t k = (size_t)(e - st->entries);

		if (si >= 0 && (w->live_by[si] >= 0 || w->image_op[si] >= 0))
			continue;
		if (si < 0 && !exists[k]) {
			if (!add_row(w, NULL, e->digest, e->created_ms, REGPOLICY_FORGET,
				     "no longer in the registry"))
				goto done;
			continue;
		}
		if (si < 0) {
			if (untagged_or_listed_row(w, exists, e, e->created_ms) < 0)
				goto done;
			continue;
		}
		/* Reached now only through indexes: they go first. */
		long stays = staying_index(w, (size_t)si);
		if (stays >= 0) {
			if (!add_row(w, NULL, e->digest, s->images[si].created_ms, REGPOLICY_KEEP,
				     "no kept tag reaches it, but the index %s that lists it stays",
				     s->images[stays].digest))
				goto done;
			continue;
		}
		if (untagged_or_listed_row(w, exists, e, s->images[si].created_ms) < 0)
			goto done;
		long op = w->plan->rows[w->plan->nrows - 1].op;
		if (op >= 0 && wait_for_indexes(w, op, (size_t)si) < 0)
			goto done;
	}
	for (i = 0; i < s->nimages; i++) {
		const struct regscan_image *im = &s->images[i];

		if (w->live_by[i] >= 0 || w->image_op[i] >= 0 ||
		    regstate_find((struct regstate *)st, im->digest))
			continue;
		if (!add_row(w, NULL, im->digest, im->created_ms, REGPOLICY_KEEP,
			     "untagged from this run on (the index that listed it is deleted); "
			     "first seen now"))
			goto done;
	}
	rc = 0;
done:
	free(order);
	return rc;
}

/* The tags' deletes by digest before the tags deleted alone, so that a
 * registry that cannot delete a tag alone still gets every delete it can
 * do; the untagged manifests' deletes are added after both. The images'
 * ops (image_op) are renumbered with them. */
static int order_ops(struct work *w)
{
	struct regpolicy_plan *plan = w->plan;
	struct regpolicy_op *sorted = plan->nops ? calloc(plan->nops, sizeof(*sorted)) : NULL;
	long *moved = plan->nops ? calloc(plan->nops, sizeof(long)) : NULL;
	size_t i, o = 0, pass;

	if (plan->nops && (!sorted || !moved)) {
		free(sorted);
		free(moved);
		return -1;
	}
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < plan->nops; i++)
			if (plan->ops[i].by_tag == (int)pass) {
				moved[i] = (long)o;
				sorted[o++] = plan->ops[i];
			}
	for (i = 0; i < plan->nrows; i++)
		if (plan->rows[i].op >= 0)
			plan->rows[i].op = moved[plan->rows[i].op];
	for (i = 0; i < w->s->nimages; i++)
		if (w->image_op[i] >= 0)
			w->image_op[i] = moved[w->image_op[i]];
	free(plan->ops);
	plan->ops = sorted;
	free(moved);
	return 0;
}

int regpolicy_plan(const struct regpolicy *p, const struct regscan *s, const struct regstate *st,
		   const int *exists, struct regpolicy_plan *plan)
{
	struct work w = {.p = p, .s = s, .st = st, .plan = plan};
	enum regpolicy_action *fate = s->ntags ? calloc(s->ntags, sizeof(*fate)) : NULL;
	long *rank = s->ntags ? calloc(s->ntags, sizeof(*rank)) : NULL;
	size_t i, nprod = 0;
	int rc = -1;

	memset(plan, 0, sizeof(*plan));
	w.live_by = s->nimages ? calloc(s->nimages, sizeof(long)) : NULL;
	w.image_op = s->nimages ? calloc(s->nimages, sizeof(long)) : NULL;
	if ((s->ntags && (!fate || !rank)) || (s->nimages && (!w.live_by || !w.image_op)))
		goto done;
	for (i = 0; i < s->nimages; i++)
		w.live_by[i] = w.image_op[i] = -1;
	if (plan_tags(&w, fate, rank, &nprod) < 0 || rows_for_tags(&w, fate, rank, nprod) < 0)
		goto done;
	if (order_ops(&w) < 0 || rows_for_untagged(&w, exists) < 0)
		goto done;
	rc = 0;
done:
	if (rc < 0)
		regpolicy_plan_clear(plan);
	free(fate);
	free(rank);
	free(w.live_by);
	free(w.image_op);
	return rc;
}

void regpolicy_plan_clear(struct regpolicy_plan *plan)
{
	size_t i;

	for (i = 0; i < plan->nrows; i++) {
		free(plan->rows[i].tag);
		free(plan->rows[i].digest);
	}
	for (i = 0; i < plan->nops; i++) {
		free(plan->ops[i].reference);
		free(plan->ops[i].digest);
		free(plan->ops[i].needs);
	}
	free(plan->rows);
	free(plan->ops);
	memset(plan, 0, sizeof(*plan));
}
