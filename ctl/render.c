/* render: tables and header lines built from API responses. */
#include "ctl/render.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/fmt.h"

#define COLUMN_GAP 2

/* Rows of owned, sanitized cells; row 0 is the header. */
struct table {
	size_t ncols;
	size_t nrows;
	size_t cap;
	char **cells;
};

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}

/* Takes ownership of the ncols cells, freeing them on failure too. */
static int table_add(struct table *t, char **row)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **cells = realloc(t->cells, cap * t->ncols * sizeof(*cells));
		if (!cells)
			goto fail;
		t->cells = cells;
		t->cap = cap;
	}
	for (size_t c = 0; c < t->ncols; c++) {
		if (!row[c])
			goto fail;
	}
	memcpy(t->cells + t->nrows * t->ncols, row, t->ncols * sizeof(*row));
	t->nrows++;
	return 0;
fail:
	for (size_t c = 0; c < t->ncols; c++)
		free(row[c]);
	return -1;
}

static int table_print(FILE *out, const struct table *t)
{
	size_t *width = calloc(t->ncols, sizeof(*width));

	if (!width)
		return -1;
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = ctl_fmt_width(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			fputs(cell, out);
			if (c + 1 < t->ncols)
				fprintf(out, "%*s",
					(int)(width[c] - ctl_fmt_width(cell) + COLUMN_GAP), "");
		}
		fputc('\n', out);
	}
	free(width);
	return ferror(out) ? -1 : 0;
}

static char *cell_list(const json_t *obj, const char *key, const char *sep);

static char *dash(void)
{
	return strdup("-");
}

static const char *get_string(const json_t *obj, const char *key, size_t *len)
{
	const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (!json_is_string(v) || json_string_length(v) == 0)
		return NULL;
	*len = json_string_length(v);
	return json_string_value(v);
}

static char *cell_text(const json_t *obj, const char *key)
{
	size_t len;
	const char *s = get_string(obj, key, &len);

	return s ? ctl_fmt_sanitize(s, len) : dash();
}

/* Branches are what people name runs by; other refs (tags, pull requests)
 * are shown whole so they cannot be mistaken for a branch. */
static char *cell_ref(const json_t *obj, const char *key)
{
	static const char heads[] = "refs/heads/";
	size_t len;
	const char *s = get_string(obj, key, &len);

	if (!s)
		return dash();
	if (len > sizeof(heads) - 1 && memcmp(s, heads, sizeof(heads) - 1) == 0)
		return ctl_fmt_sanitize(s + sizeof(heads) - 1, len - (sizeof(heads) - 1));
	return ctl_fmt_sanitize(s, len);
}

static char *cell_sha(const json_t *obj, const char *key)
{
	size_t len;
	const char *s = get_string(obj, key, &len);

	if (!s)
		return dash();
	return ctl_fmt_sanitize(s, len < 7 ? len : 7);
}

static char *cell_int(const json_t *obj, const char *key)
{
	const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	char buf[CTL_FMT_MAX];

	if (!json_is_integer(v))
		return dash();
	snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
	return strdup(buf);
}

static int get_time(const json_t *obj, const char *key, int64_t *ms)
{
	const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (!json_is_string(v))
		return -1;
	return ctl_fmt_parse_time(json_string_value(v), ms);
}

static char *cell_time(const json_t *obj, const char *key)
{
	int64_t ms;
	char buf[CTL_FMT_MAX];

	if (get_time(obj, key, &ms) < 0)
		return dash();
	ctl_fmt_time(ms, buf, sizeof(buf));
	return strdup(buf);
}

static char *cell_duration(const json_t *obj, const char *from, const char *to)
{
	int64_t start, end;
	char buf[CTL_FMT_MAX];

	if (get_time(obj, from, &start) < 0 || get_time(obj, to, &end) < 0)
		return dash();
	ctl_fmt_duration(end - start, buf, sizeof(buf));
	return strdup(buf);
}

static int add_header(struct table *t, const char *const *names)
{
	char *row[8];

	for (size_t c = 0; c < t->ncols; c++)
		row[c] = strdup(names[c]);
	return table_add(t, row);
}

/* "LABEL ID" for the run id a runs page gives as its cursor key, when it
 * gives one. */
static int print_cursor(FILE *out, const json_t *body, const char *key, const char *label)
{
	size_t len;
	const char *id = get_string(body, key, &len);
	char *clean;
	int rc;

	if (!id)
		return 0;
	clean = ctl_fmt_sanitize(id, len);
	rc = clean && fprintf(out, "%s %s\n", label, clean) >= 0 ? 0 : -1;
	free(clean);
	return rc;
}

int ctl_render_runs(FILE *out, const json_t *body)
{
	static const char *const header[] = {"RUN",    "PIPELINE", "REF",     "SHA",
					     "STATUS", "CREATED",  "DURATION"};
	struct table t = {.ncols = 7};
	const json_t *runs = json_is_object(body) ? json_object_get(body, "runs") : NULL;
	const json_t *run;
	size_t i;
	int rc = -1;

	if (!json_is_array(runs))
		return -1;
	if (add_header(&t, header) < 0)
		goto fail;
	json_array_foreach(runs, i, run)
	{
		char *row[] = {cell_text(run, "id"),
			       cell_text(run, "pipeline"),
			       cell_ref(run, "ref"),
			       cell_sha(run, "sha"),
			       cell_text(run, "status"),
			       cell_time(run, "created"),
			       cell_duration(run, "created", "finished")};
		if (table_add(&t, row) < 0)
			goto fail;
	}
	rc = table_print(out, &t);
	if (rc == 0)
		rc = print_cursor(out, body, "prev", "newer: --after");
	if (rc == 0)
		rc = print_cursor(out, body, "next", "more: --before");
fail:
	table_free(&t);
	return rc;
}

static int print_field(FILE *out, const char *label, char *value)
{
	if (!value)
		return -1;
	fprintf(out, "%-12s%s\n", label, value);
	free(value);
	return 0;
}

/* A stage shows its history once it has had more than one attempt: its
 * current attempt comes after an ended one, or several have ended. */
static int several_attempts(const json_t *stage, const json_t *attempts)
{
	const json_t *current = json_object_get(stage, "attempt");
	size_t n = json_array_size(attempts);

	return n > 1 || (n == 1 && json_is_integer(current) && json_integer_value(current) > 1);
}

static int add_attempts(struct table *t, const char *name, const json_t *stage)
{
	const json_t *attempts = json_object_get(stage, "attempts");
	const json_t *a;
	size_t i;

	if (!several_attempts(stage, attempts))
		return 0;
	json_array_foreach(attempts, i, a)
	{
		char *row[] = {ctl_fmt_sanitize(name, strlen(name)),
			       cell_int(a, "attempt"),
			       cell_text(a, "status"),
			       cell_int(a, "exit_code"),
			       cell_time(a, "started"),
			       cell_duration(a, "started", "finished"),
			       cell_text(a, "worker")};
		if (table_add(t, row) < 0)
			return -1;
	}
	return 0;
}

/* The table of stages and, after a blank line, the table of the ended
 * attempts of each stage that had several (none when no stage had). */
static int render_stages(FILE *out, const json_t *stages)
{
	static const char *const stage_header[] = {"STAGE", "STATUS",  "ATTEMPT",
						   "EXIT",  "STARTED", "DURATION"};
	static const char *const attempt_header[] = {"STAGE",	"ATTEMPT",  "STATUS", "EXIT",
						     "STARTED", "DURATION", "WORKER"};
	struct table st = {.ncols = 6}, at = {.ncols = 7};
	const char *name;
	const json_t *stage;
	int rc = -1;

	if (add_header(&st, stage_header) < 0 || add_header(&at, attempt_header) < 0)
		goto fail;
	json_object_foreach((json_t *)stages, name, stage)
	{
		char *row[] = {ctl_fmt_sanitize(name, strlen(name)),
			       cell_text(stage, "status"),
			       cell_int(stage, "attempt"),
			       cell_int(stage, "exit_code"),
			       cell_time(stage, "started"),
			       cell_duration(stage, "started", "finished")};
		if (table_add(&st, row) < 0 || add_attempts(&at, name, stage) < 0)
			goto fail;
	}
	rc = table_print(out, &st);
	if (rc == 0 && at.nrows > 1) {
		fputc('\n', out);
		rc = table_print(out, &at);
	}
fail:
	table_free(&st);
	table_free(&at);
	return rc;
}

/* An environment's approval: the decision with who and why, "required"
 * while none was taken, "-" when the environment needs none. */
static char *cell_approval(const json_t *env)
{
	const json_t *ap = json_object_get(env, "approval");
	char *decision, *by, *reason, *cell;
	size_t len;

	if (!get_string(ap, "decision", &len))
		return strdup(json_is_true(json_object_get(ap, "required")) ? "required" : "-");
	decision = cell_text(ap, "decision");
	by = cell_text(ap, "by");
	reason = cell_text(ap, "reason");
	if (!decision || !by || !reason ||
	    asprintf(&cell, "%s by %s: %s", decision, by, reason) < 0)
		cell = NULL;
	free(decision);
	free(by);
	free(reason);
	return cell;
}

static int render_environments(FILE *out, const json_t *envs)
{
	static const char *const header[] = {"ENVIRONMENT", "STATUS",	"STARTED",
					     "DURATION",    "APPROVAL", "HELD UNTIL"};
	struct table t = {.ncols = 6};
	const char *name;
	const json_t *env;
	int rc = -1;

	if (add_header(&t, header) < 0)
		goto fail;
	json_object_foreach((json_t *)envs, name, env)
	{
		char *row[] = {ctl_fmt_sanitize(name, strlen(name)),
			       cell_text(env, "status"),
			       cell_time(env, "started"),
			       cell_duration(env, "started", "finished"),
			       cell_approval(env),
			       cell_time(json_object_get(env, "window"), "held_until")};
		if (table_add(&t, row) < 0)
			goto fail;
	}
	rc = table_print(out, &t);
fail:
	table_free(&t);
	return rc;
}

/* "stable 80%, canary 20%" */
static char *cell_weights(const json_t *weights)
{
	const char *name;
	const json_t *w;
	char *cell = strdup(""), *next, *clean;

	json_object_foreach((json_t *)weights, name, w)
	{
		if (!cell || !json_is_number(w))
			continue;
		if (asprintf(&next, "%s%s%s %g%%", cell, *cell ? ", " : "", name,
			     json_number_value(w)) < 0)
			next = NULL;
		free(cell);
		cell = next;
	}
	if (!cell)
		return NULL;
	if (!*cell) {
		free(cell);
		return dash();
	}
	clean = ctl_fmt_sanitize(cell, strlen(cell));
	free(cell);
	return clean;
}

/* "2/5": the step (1-based) of how many. */
static char *cell_step(const json_t *st)
{
	const json_t *step = json_object_get(st, "step"), *steps = json_object_get(st, "steps");
	char buf[64];

	if (!json_is_integer(step))
		return dash();
	if (json_is_integer(steps))
		snprintf(buf, sizeof(buf), "%lld/%lld", (long long)json_integer_value(step),
			 (long long)json_integer_value(steps));
	else
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(step));
	return strdup(buf);
}

/* The rollout's phase, a rollback, and a command on its way to the worker. */
static char *cell_phase(const json_t *st)
{
	const char *phase = json_string_value(json_object_get(st, "status"));
	const char *mode = json_string_value(json_object_get(st, "mode"));
	const char *command = json_string_value(json_object_get(st, "command"));
	char *cell, *clean;
	int n;

	if (!phase)
		phase = "-";
	if (mode && strcmp(mode, "rollback") == 0)
		n = asprintf(&cell, "rollback %s", phase);
	else if (command)
		n = asprintf(&cell, "%s (%s sent)", phase, command);
	else
		n = asprintf(&cell, "%s", phase);
	if (n < 0)
		return NULL;
	clean = ctl_fmt_sanitize(cell, strlen(cell));
	free(cell);
	return clean;
}

/* "2/3 passed" of the checklist, "-" without one. */
static char *cell_checks(const json_t *st)
{
	const json_t *list = json_object_get(st, "checklist"), *item;
	size_t i, passed = 0;
	char buf[64];

	if (!json_array_size(list))
		return dash();
	json_array_foreach(list, i, item)
	{
		if (json_is_true(json_object_get(item, "done")))
			passed++;
	}
	snprintf(buf, sizeof(buf), "%zu/%zu passed", passed, json_array_size(list));
	return strdup(buf);
}

static char *cell_value(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	char buf[64];

	if (json_is_number(v)) {
		snprintf(buf, sizeof(buf), "%g", json_number_value(v));
		return strdup(buf);
	}
	return cell_text(obj, key);
}

/* Deployments with a strategy: where each rollout stands and what may be
 * done with it, then the measurements of their analyses. Nothing when no
 * environment has a strategy. */
static int render_rollouts(FILE *out, const json_t *envs)
{
	static const char *const header[] = {"ENVIRONMENT", "STRATEGY",	    "STEP",   "PHASE",
					     "WEIGHTS",	    "PAUSED UNTIL", "CHECKS", "ACTIONS"};
	static const char *const an_header[] = {"ENVIRONMENT", "ANALYSIS", "MEASURED", "CONDITION",
						"RESULT"};
	struct table t = {.ncols = 8}, at = {.ncols = 5};
	const char *name;
	const json_t *env, *an;
	size_t i;
	int rc = -1;

	if (add_header(&t, header) < 0 || add_header(&at, an_header) < 0)
		goto fail;
	json_object_foreach((json_t *)envs, name, env)
	{
		const json_t *st = json_object_get(env, "strategy");
		if (!json_is_object(st))
			continue;
		char *row[] = {ctl_fmt_sanitize(name, strlen(name)),
			       cell_text(st, "name"),
			       cell_step(st),
			       cell_phase(st),
			       cell_weights(json_object_get(st, "weights")),
			       cell_time(st, "paused_until"),
			       cell_checks(st),
			       cell_list(env, "actions", ", ")};
		if (table_add(&t, row) < 0)
			goto fail;
		json_array_foreach(json_object_get(st, "analysis"), i, an)
		{
			char *arow[] = {ctl_fmt_sanitize(name, strlen(name)),
					cell_text(an, "metric"), cell_value(an, "value"),
					cell_text(an, "threshold"), cell_text(an, "status")};
			if (table_add(&at, arow) < 0)
				goto fail;
		}
	}
	rc = 0;
	if (t.nrows > 1) {
		fputc('\n', out);
		rc = table_print(out, &t);
	}
	if (rc == 0 && at.nrows > 1) {
		fputc('\n', out);
		rc = table_print(out, &at);
	}
fail:
	table_free(&t);
	table_free(&at);
	return rc;
}

int ctl_render_run(FILE *out, const json_t *run)
{
	const json_t *stages;

	if (!json_is_object(run))
		return -1;
	if (print_field(out, "Run:", cell_text(run, "id")) < 0 ||
	    print_field(out, "Pipeline:", cell_text(run, "pipeline")) < 0 ||
	    print_field(out, "Repository:", cell_text(run, "repository")) < 0 ||
	    print_field(out, "Event:", cell_text(run, "event")) < 0 ||
	    print_field(out, "Ref:", cell_text(run, "ref")) < 0 ||
	    print_field(out, "Sha:", cell_text(run, "sha")) < 0 ||
	    print_field(out, "Status:", cell_text(run, "status")) < 0 ||
	    print_field(out, "Created:", cell_time(run, "created")) < 0 ||
	    print_field(out, "Finished:", cell_time(run, "finished")) < 0 ||
	    print_field(out, "Duration:", cell_duration(run, "created", "finished")) < 0)
		return -1;
	stages = json_object_get(run, "stages");
	if (json_is_object(stages)) {
		fputc('\n', out);
		if (render_stages(out, stages) < 0)
			return -1;
	}
	if (json_object_size(json_object_get(run, "environments"))) {
		fputc('\n', out);
		if (render_environments(out, json_object_get(run, "environments")) < 0 ||
		    render_rollouts(out, json_object_get(run, "environments")) < 0)
			return -1;
	}
	return ferror(out) ? -1 : 0;
}

/* Log text is printed as the command wrote it, colours included, the way
 * CI systems show logs; other control sequences are left out (fmt.h), and
 * --json gives the lines as stored. */
int ctl_render_log_line(FILE *out, const json_t *line)
{
	const json_t *text = json_is_object(line) ? json_object_get(line, "line") : NULL;

	if (json_is_string(text)) {
		char *shown = ctl_fmt_log_text(json_string_value(text), json_string_length(text));
		if (!shown)
			return -1;
		fputs(shown, out);
		free(shown);
	}
	fputc('\n', out);
	return ferror(out) ? -1 : 0;
}

char *ctl_render_field(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? ctl_fmt_sanitize(s, strlen(s)) : strdup("-");
}

int ctl_render_json(FILE *out, const json_t *value, int compact)
{
	if (json_dumpf(value, out, compact ? JSON_COMPACT : JSON_INDENT(2)) < 0)
		return -1;
	fputc('\n', out);
	return ferror(out) ? -1 : 0;
}

/* The strings of a list joined by sep ("-" for none); arrows for a chain. */
static char *cell_list(const json_t *obj, const char *key, const char *sep)
{
	const json_t *list = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	size_t len = 0, i;
	const json_t *v;
	char *joined, *clean;

	if (!json_array_size(list))
		return dash();
	json_array_foreach(list, i, v)
	{
		len += json_string_length(v) + strlen(sep);
	}
	joined = malloc(len + 1);
	if (!joined)
		return NULL;
	joined[0] = '\0';
	json_array_foreach(list, i, v)
	{
		if (i)
			strcat(joined, sep);
		if (json_is_string(v))
			strcat(joined, json_string_value(v));
	}
	clean = ctl_fmt_sanitize(joined, strlen(joined));
	free(joined);
	return clean;
}

int ctl_render_pipelines(FILE *out, const json_t *body)
{
	static const char *const header[] = {"PIPELINE", "REPOSITORY", "EVENTS", "STAGES",
					     "ENVIRONMENTS"};
	struct table t = {.ncols = 5};
	const json_t *list = json_is_object(body) ? json_object_get(body, "pipelines") : NULL;
	const json_t *p;
	size_t i;
	int rc = -1;

	if (!json_is_array(list))
		return -1;
	if (add_header(&t, header) < 0)
		goto fail;
	json_array_foreach(list, i, p)
	{
		char *row[] = {cell_text(p, "name"), cell_text(p, "repository"),
			       cell_list(p, "events", ","), cell_list(p, "stages", ","),
			       cell_list(p, "environments", " \u2192 ")};
		if (table_add(&t, row) < 0)
			goto fail;
	}
	rc = table_print(out, &t);
fail:
	table_free(&t);
	return rc;
}
