/* lifecycle: read, plan, delete, remember, report. */
#include "registry/lifecycle.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "registry/regclient.h"
#include "registry/regpolicy.h"
#include "registry/regreport.h"
#include "registry/regscan.h"
#include "registry/regstate.h"

#define MESSAGE_MAX 1024

/* The signal that asked the deletes to stop (systemd's stop or its
 * TimeoutStartSec=, ^C), or 0; set by on_stop only. */
static volatile sig_atomic_t stop_signal;

struct run {
	const struct regargs *a;
	struct regclient *c;
	struct regscan snap;
	struct regstate st;
	struct regpolicy_plan plan;
	char *state_path;
	int *exists;
	FILE *err;
};

/* GET /v2/: the server speaks the API and takes the credentials. */
static int check_api(struct run *r, char *err, size_t errlen)
{
	struct regclient_response resp;
	int rc = -1;

	if (regclient_request(r->c, "GET", "/v2/", "application/json", 64 * 1024, &resp, err,
			      errlen) < 0)
		return -1;
	if (resp.status == 200)
		rc = 0;
	else if (resp.status == 404)
		snprintf(err, errlen, "%s does not serve the Registry HTTP API v2 (GET /v2/: 404)",
			 regclient_base(r->c));
	else
		regclient_status_error(r->c, &resp, "GET", "use the registry's API", err, errlen);
	regclient_response_clear(&resp);
	return rc;
}

static int load_state(struct run *r, char *err, size_t errlen)
{
	const char *base = regclient_base(r->c);
	int found;

	if (regstate_load(r->state_path, &r->st, &found, err, errlen) < 0)
		return -1;
	if (found) {
		if (strcmp(r->st.registry, base) != 0 ||
		    strcmp(r->st.repository, r->a->repository) != 0) {
			snprintf(err, errlen,
				 "the state file %s is about %s at %s, not %s at %s: give each "
				 "repository its own --state",
				 r->state_path, r->st.repository, r->st.registry, r->a->repository,
				 base);
			return -1;
		}
		return 0;
	}
	r->st.registry = strdup(base);
	r->st.repository = strdup(r->a->repository);
	if (!r->st.registry || !r->st.repository) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Which manifests of the state, not reached by a tag now, are still there. */
static int look_up_untagged(struct run *r, char *err, size_t errlen)
{
	size_t i, k;

	r->exists = r->st.n ? calloc(r->st.n, sizeof(int)) : NULL;
	if (r->st.n && !r->exists) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < r->st.n; i++) {
		for (k = 0; k < r->snap.nimages; k++)
			if (strcmp(r->snap.images[k].digest, r->st.entries[i].digest) == 0)
				break;
		if (k < r->snap.nimages) {
			r->exists[i] = 1;
			continue;
		}
		r->exists[i] =
		    regscan_exists(r->c, r->a->repository, r->st.entries[i].digest, err, errlen);
		if (r->exists[i] < 0)
			return -1;
	}
	return 0;
}

/* Sends one DELETE; 1 when no other may follow (deletes refused, registry
 * gone), else 0. */
static int send_delete(struct run *r, struct regpolicy_op *op)
{
	struct regclient_response resp;
	char path[512], what[640];
	int stop = 0;

	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", r->a->repository, op->reference);
	if (op->by_tag)
		snprintf(what, sizeof(what), "delete the tag %s:%s", r->a->repository,
			 op->reference);
	else
		snprintf(what, sizeof(what), "delete the manifest %s of %s", op->reference,
			 r->a->repository);
	if (regclient_request(r->c, "DELETE", path, NULL, 64 * 1024, &resp, op->message,
			      sizeof(op->message)) < 0) {
		op->status = REGPOLICY_FAILED;
		return 1;
	}
	if (resp.status == 202 || resp.status == 200 || resp.status == 204) {
		op->status = REGPOLICY_DONE;
	} else if (resp.status == 404) {
		op->status = REGPOLICY_GONE;
		snprintf(op->message, sizeof(op->message), "already gone");
	} else if (op->by_tag && (resp.status == 400 || resp.status == 405 || resp.status == 501)) {
		/* Before the distribution spec 1.1 a reference to delete had to
		 * be a digest (400 DIGEST_INVALID); since, a registry that does not
		 * delete tags answers 400 or 405. Either way it cannot drop a tag
		 * and keep its manifest for the other tags, and a 405 here says
		 * nothing of deletes by digest. */
		op->status = REGPOLICY_UNSUPPORTED;
		snprintf(op->message, sizeof(op->message),
			 "the registry cannot delete a tag alone (HTTP %ld%s%s); the tag stays",
			 resp.status, resp.error[0] ? ": " : "", resp.error);
	} else {
		op->status = REGPOLICY_FAILED;
		regclient_status_error(r->c, &resp, "DELETE", what, op->message,
				       sizeof(op->message));
		stop = resp.status == 405;
	}
	regclient_response_clear(&resp);
	return stop;
}

/* The reference of an op that op needs and that was neither done nor
 * found gone, or NULL. */
static const char *unmet_need(const struct run *r, const struct regpolicy_op *op)
{
	size_t k;

	for (k = 0; k < op->nneeds; k++) {
		const struct regpolicy_op *n = &r->plan.ops[op->needs[k]];

		if (n->status != REGPOLICY_DONE && n->status != REGPOLICY_GONE)
			return n->reference;
	}
	return NULL;
}

static void on_stop(int sig)
{
	stop_signal = sig;
}

/* Marks the ops from i on as not sent, after why. */
static void not_sent(struct run *r, size_t i, const char *why)
{
	for (; i < r->plan.nops; i++) {
		r->plan.ops[i].status = REGPOLICY_FAILED;
		snprintf(r->plan.ops[i].message, sizeof(r->plan.ops[i].message),
			 "not sent after: %.400s", why);
	}
}

/* The deletes in order. A SIGTERM or SIGINT while they are sent lets the
 * one in flight finish and sends no other, so that what was deleted is
 * still remembered and reported; before and after, the default stands. */
static void carry_out(struct run *r)
{
	struct sigaction sa = {.sa_handler = on_stop}, old_term, old_int;
	char why[64];
	size_t i;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGINT, &sa, &old_int);
	for (i = 0; i < r->plan.nops; i++) {
		struct regpolicy_op *op = &r->plan.ops[i];
		const char *index = unmet_need(r, op);

		if (stop_signal) {
			snprintf(why, sizeof(why), "stopped by %s",
				 stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
			fprintf(r->err, "sluice-registry: %s: %zu deletes not sent\n", why,
				r->plan.nops - i);
			not_sent(r, i, why);
			break;
		}
		if (index) {
			op->status = REGPOLICY_FAILED;
			snprintf(op->message, sizeof(op->message),
				 "not sent: the index %s that lists it was not deleted", index);
			fprintf(r->err, "sluice-registry: %s %s\n", op->reference, op->message);
			continue;
		}
		if (send_delete(r, op)) {
			fprintf(r->err, "sluice-registry: %s\n", op->message);
			not_sent(r, i + 1, op->message);
			break;
		}
		if (op->status == REGPOLICY_FAILED)
			fprintf(r->err, "sluice-registry: %s\n", op->message);
	}
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGINT, &old_int, NULL);
}

/* Whether image target is image from or one it lists, at most depth
 * indexes down: the scan's own bound, which also ends a cycle of digests
 * a registry could fake where it does not check them. */
static int reaches(const struct regscan *s, size_t from, size_t target, int depth)
{
	size_t k;

	if (from == target)
		return 1;
	for (k = 0; depth > 0 && k < s->images[from].nchildren; k++)
		if (reaches(s, s->images[from].children[k], target, depth - 1))
			return 1;
	return 0;
}

/* Appends to names the tags that reach image i (itself or an index that
 * lists it). */
static int tags_of(const struct regscan *s, size_t i, char ***names, size_t *n)
{
	size_t t;

	for (t = 0; t < s->ntags; t++) {
		if (!reaches(s, s->tags[t].image, i, REGSCAN_MAX_DEPTH))
			continue;
		char **grown = realloc(*names, (*n + 1) * sizeof(char *));
		if (!grown)
			return -1;
		*names = grown;
		(*names)[(*n)++] = s->tags[t].name;
	}
	return 0;
}

/* The state after the run: every manifest a tag reached is remembered
 * (first seen now when new), those deleted or gone are dropped. */
static int update_state(struct run *r, char *err, size_t errlen)
{
	int64_t now = clock_now_ms();
	size_t i;

	for (i = 0; i < r->snap.nimages; i++) {
		const struct regscan_image *im = &r->snap.images[i];
		struct regstate_entry *e = regstate_find(&r->st, im->digest);
		char **names = NULL;
		size_t n = 0;

		if (!e) {
			e = regstate_add(&r->st, im->digest);
			if (!e)
				goto oom;
			e->first_seen_ms = now;
		}
		e->last_tagged_ms = now;
		if (im->created_ms >= 0)
			e->created_ms = im->created_ms;
		if (tags_of(&r->snap, i, &names, &n) < 0 || regstate_set_tags(e, names, n) < 0) {
			free(names);
			goto oom;
		}
		free(names);
		/* An index's manifests, for the runs after its tag is gone. */
		char **children = im->nchildren ? calloc(im->nchildren, sizeof(char *)) : NULL;
		if (im->nchildren && !children)
			goto oom;
		for (size_t k = 0; k < im->nchildren; k++)
			children[k] = r->snap.images[im->children[k]].digest;
		int rc = regstate_set_children(e, children, im->nchildren);
		free(children);
		if (rc < 0)
			goto oom;
	}
	for (i = 0; i < r->plan.nops; i++) {
		const struct regpolicy_op *op = &r->plan.ops[i];

		if (!op->by_tag && (op->status == REGPOLICY_DONE || op->status == REGPOLICY_GONE))
			regstate_remove(&r->st, op->digest);
	}
	for (i = 0; i < r->plan.nrows; i++)
		if (r->plan.rows[i].action == REGPOLICY_FORGET)
			regstate_remove(&r->st, r->plan.rows[i].digest);
	return regstate_save(r->state_path, &r->st, err, errlen);
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static int failed_ops(const struct regpolicy_plan *plan)
{
	size_t i;

	for (i = 0; i < plan->nops; i++)
		if (plan->ops[i].status == REGPOLICY_FAILED)
			return 1;
	return 0;
}

int lifecycle_run(const struct regargs *a, FILE *out, FILE *errf)
{
	struct regclient_options o = {.base_url = a->registry,
				      .token_file = a->token_file,
				      .user_file = a->user_file,
				      .ca_file = a->ca_file};
	struct run r = {.a = a, .err = errf};
	struct regpolicy p = {.keep_last = a->keep_last,
			      .patterns = a->patterns,
			      .npatterns = a->npatterns,
			      .keep = a->keep,
			      .nkeep = a->nkeep,
			      .expire_ms = a->expire_ms,
			      .whole_images = a->whole_images};
	struct regreport rep = {.args = a};
	char err[MESSAGE_MAX] = "";
	int status = 1, printed;

	r.c = regclient_new(&o, err, sizeof(err));
	if (!r.c)
		goto fail;
	r.state_path =
	    a->state ? strdup(a->state) : regstate_default_path(regclient_base(r.c), a->repository);
	if (!r.state_path) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (load_state(&r, err, sizeof(err)) < 0 || check_api(&r, err, sizeof(err)) < 0 ||
	    regscan_repository(r.c, a->repository, a->page_size, &r.snap, err, sizeof(err)) < 0 ||
	    look_up_untagged(&r, err, sizeof(err)) < 0)
		goto fail;
	p.now_ms = clock_now_ms();
	if (regpolicy_plan(&p, &r.snap, &r.st, r.exists, &r.plan) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (!a->dry_run) {
		carry_out(&r);
		/* Even after a failed delete: what was seen must be remembered,
		 * or an image untagged now could never expire. */
		if (update_state(&r, err, sizeof(err)) < 0)
			fprintf(errf, "sluice-registry: %s\n", err);
		else
			rep.state_saved = 1;
	}
	rep.registry = regclient_base(r.c);
	rep.state_file = r.state_path;
	rep.plan = &r.plan;
	printed = a->json ? regreport_json(&rep, out) : regreport_table(&rep, out);
	if (printed < 0)
		fprintf(errf, "sluice-registry: cannot write the report\n");
	status = printed < 0 || failed_ops(&r.plan) || (!a->dry_run && !rep.state_saved) ? 1 : 0;
	goto done;
fail:
	fprintf(errf, "sluice-registry: %s\n", err);
done:
	regpolicy_plan_clear(&r.plan);
	regscan_clear(&r.snap);
	regstate_clear(&r.st);
	free(r.exists);
	free(r.state_path);
	regclient_free(r.c);
	return status;
}
