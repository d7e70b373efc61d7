/* regreport: table and JSON output of a lifecycle run. */
#include "registry/regreport.h"

#include <string.h>

#include <jansson.h>

#include "ctl/fmt.h"
#include "lib/clock.h"
#include "lib/utf8.h"

enum column { COL_ACTION, COL_TAG, COL_DIGEST, COL_CREATED, COL_RESULT, COL_REASON, NCOLS };

static const char *const headings[NCOLS] = {"ACTION",  "TAG",	 "DIGEST",
					    "CREATED", "RESULT", "REASON"};

struct counts {
	size_t manifests; /* deletes by digest: planned, or done in a run */
	size_t tags;	  /* tags deleted alone: planned, or done */
	size_t gone;
	size_t unsupported;
	size_t failed;
};

static const char *result_of(const struct regreport *r, const struct regpolicy_row *row)
{
	if (row->action == REGPOLICY_FORGET)
		return r->args->dry_run ? "-" : "forgotten";
	if (row->op < 0)
		return "-";
	return regpolicy_status_name(r->plan->ops[row->op].status);
}

static void cells(const struct regreport *r, const struct regpolicy_row *row,
		  const char *cell[NCOLS], char *created, size_t len)
{
	if (row->created_ms < 0)
		snprintf(created, len, "-");
	else
		ctl_fmt_time(row->created_ms, created, len);
	cell[COL_ACTION] = regpolicy_action_name(row->action);
	cell[COL_TAG] = row->tag ? row->tag : "-";
	cell[COL_DIGEST] = row->digest;
	cell[COL_CREATED] = created;
	cell[COL_RESULT] = result_of(r, row);
	cell[COL_REASON] = row->reason;
}

static void count(const struct regpolicy_plan *plan, struct counts *c)
{
	size_t i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < plan->nops; i++) {
		const struct regpolicy_op *op = &plan->ops[i];

		switch (op->status) {
		case REGPOLICY_PLANNED:
		case REGPOLICY_DONE:
			if (op->by_tag)
				c->tags++;
			else
				c->manifests++;
			break;
		case REGPOLICY_GONE:
			c->gone++;
			break;
		case REGPOLICY_UNSUPPORTED:
			c->unsupported++;
			break;
		case REGPOLICY_FAILED:
			c->failed++;
			break;
		}
	}
}

static void print_cell(FILE *out, const char *text, size_t width, int last)
{
	if (last)
		fprintf(out, "%s\n", text);
	else
		fprintf(out, "%-*s  ", (int)width, text);
}

int regreport_table(const struct regreport *r, FILE *out)
{
	const struct regpolicy_plan *plan = r->plan;
	size_t width[NCOLS], i, k;
	const char *cell[NCOLS];
	char created[CTL_FMT_MAX];
	struct counts c;

	for (k = 0; k < NCOLS; k++)
		width[k] = strlen(headings[k]);
	for (i = 0; i < plan->nrows; i++) {
		cells(r, &plan->rows[i], cell, created, sizeof(created));
		for (k = 0; k < NCOLS; k++)
			if (strlen(cell[k]) > width[k])
				width[k] = strlen(cell[k]);
	}
	fprintf(out, "registry %s, repository %s%s\n", r->registry, r->args->repository,
		r->args->dry_run ? " (dry run: nothing is deleted)" : "");
	for (k = 0; k < NCOLS; k++)
		print_cell(out, headings[k], width[k], k + 1 == NCOLS);
	for (i = 0; i < plan->nrows; i++) {
		cells(r, &plan->rows[i], cell, created, sizeof(created));
		for (k = 0; k < NCOLS; k++)
			print_cell(out, cell[k], width[k], k + 1 == NCOLS);
	}
	/* What the registry said about each delete that was not plainly done. */
	for (i = 0; i < plan->nops; i++)
		if (plan->ops[i].message[0])
			fprintf(out, "%s %s: %s: %s\n", plan->ops[i].by_tag ? "tag" : "manifest",
				plan->ops[i].reference, regpolicy_status_name(plan->ops[i].status),
				plan->ops[i].message);
	count(plan, &c);
	if (r->args->dry_run)
		fprintf(out,
			"dry run: would delete %zu manifests and %zu tags alone; nothing was "
			"deleted\n",
			c.manifests, c.tags);
	else
		fprintf(out,
			"deleted %zu manifests and %zu tags alone; %zu already gone, %zu tags the "
			"registry cannot delete alone, %zu failed\n",
			c.manifests, c.tags, c.gone, c.unsupported, c.failed);
	return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

static json_t *time_or_null(int64_t ms)
{
	char text[64];

	if (ms < 0)
		return json_null();
	clock_format_rfc3339(ms, text, sizeof(text));
	return json_string(text);
}

static json_t *strings(const char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* Text the job wrote into a fixed buffer, from what the registry said:
 * cut there, it may end inside a character, which no JSON string takes. */
static json_t *text_json(const char *text)
{
	char out[1024];
	utf8_copy(out, sizeof(out), text, strlen(text));
	return json_string(out);
}

static json_t *rows_json(const struct regreport *r)
{
	const struct regpolicy_plan *plan = r->plan;
	json_t *rows = json_array();
	size_t i;

	for (i = 0; rows && i < plan->nrows; i++) {
		const struct regpolicy_row *row = &plan->rows[i];

		json_array_append_new(
		    rows, json_pack("{s:o, s:s, s:o, s:s, s:s, s:o}", "tag",
				    row->tag ? json_string(row->tag) : json_null(), "digest",
				    row->digest, "created", time_or_null(row->created_ms), "action",
				    regpolicy_action_name(row->action), "result", result_of(r, row),
				    "reason", text_json(row->reason)));
	}
	return rows;
}

static json_t *deletes_json(const struct regreport *r)
{
	const struct regpolicy_plan *plan = r->plan;
	json_t *deletes = json_array();
	size_t i, k;

	for (i = 0; deletes && i < plan->nops; i++) {
		const struct regpolicy_op *op = &plan->ops[i];
		json_t *tags = json_array();
		json_t *d;

		/* The tags the request removes: those of its rows. */
		for (k = 0; tags && k < plan->nrows; k++)
			if (plan->rows[k].op == (long)i && plan->rows[k].tag)
				json_array_append_new(tags, json_string(plan->rows[k].tag));
		d = json_pack("{s:s, s:s, s:b, s:o, s:s}", "reference", op->reference, "digest",
			      op->digest, "by_tag", op->by_tag, "tags", tags, "status",
			      regpolicy_status_name(op->status));
		if (d && op->message[0])
			json_object_set_new(d, "message", text_json(op->message));
		json_array_append_new(deletes, d);
	}
	return deletes;
}

int regreport_json(const struct regreport *r, FILE *out)
{
	const struct regargs *a = r->args;
	struct counts c;
	json_t *root;
	int rc;

	count(r->plan, &c);
	root = json_pack("{s:s, s:s, s:b, s:s, s:b, s:{s:I, s:o, s:b, s:o, s:I}, s:o, s:o, "
			 "s:{s:I, s:I, s:I, s:I, s:I}}",
			 "registry", r->registry, "repository", a->repository, "dry_run",
			 a->dry_run, "state_file", r->state_file, "state_saved", r->state_saved,
			 "policy", "keep_last", (json_int_t)a->keep_last, "tag_patterns",
			 strings(a->patterns, a->npatterns), "whole_images", a->whole_images,
			 "keep", strings(a->keep, a->nkeep), "expire_untagged_s",
			 (json_int_t)(a->expire_ms / 1000), "rows", rows_json(r), "deletes",
			 deletes_json(r), "summary", "manifests", (json_int_t)c.manifests, "tags",
			 (json_int_t)c.tags, "gone", (json_int_t)c.gone, "unsupported",
			 (json_int_t)c.unsupported, "failed", (json_int_t)c.failed);
	if (!root)
		return -1;
	rc = json_dumpf(root, out, JSON_INDENT(2)) < 0 || fputc('\n', out) == EOF ? -1 : 0;
	json_decref(root);
	if (fflush(out) != 0 || ferror(out))
		rc = -1;
	return rc;
}
