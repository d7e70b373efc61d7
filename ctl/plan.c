/* plan: the stage graph and environment chain of a pipeline file. */
#include "ctl/plan.h"

#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include "config/config.h"
#include "ctl/fmt.h"
#include "ctl/validate.h"

#define ERR_MAX 1024

/* The step of each CI stage (0-based) into a new object name → step;
 * the loader has already refused cycles and unknown needs. */
static json_t *steps_of(const json_t *stages)
{
	json_t *step = json_object();
	const char *name;
	json_t *st;
	int changed = 1;

	for (size_t round = 0; step && changed && round <= json_object_size(stages); round++) {
		changed = 0;
		json_object_foreach((json_t *)stages, name, st)
		{
			if (json_object_get(st, "env") || json_object_get(step, name))
				continue;
			json_int_t at = 0;
			int ready = 1;
			size_t i;
			json_t *need;
			json_array_foreach(json_object_get(st, "needs"), i, need)
			{
				json_t *s = json_object_get(step, json_string_value(need));
				if (!s) {
					ready = 0;
					break;
				}
				if (json_integer_value(s) + 1 > at)
					at = json_integer_value(s) + 1;
			}
			if (ready) {
				json_object_set_new(step, name, json_integer(at));
				changed = 1;
			}
		}
	}
	return step;
}

/* A duration as a pipeline file writes it: "24h", "90m", "30s", "500ms". */
static const char *format_ms(json_int_t ms, char *out, size_t len)
{
	if (ms % 1000 != 0)
		snprintf(out, len, "%lldms", (long long)ms);
	else if (ms % 3600000 == 0)
		snprintf(out, len, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0)
		snprintf(out, len, "%lldm", (long long)(ms / 60000));
	else
		snprintf(out, len, "%llds", (long long)(ms / 1000));
	return out;
}

static json_t *gates_of(const json_t *env)
{
	json_t *gates = json_array();
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(env, "windows"), i, w)
	{
		const char *spec = json_string_value(json_object_get(w, "spec"));
		char text[160];
		snprintf(text, sizeof(text), "deny %s", spec ? spec : "?");
		json_array_append_new(gates, json_string(text));
	}
	const json_t *approval = json_object_get(env, "approval");
	if (json_is_true(json_object_get(approval, "required"))) {
		json_int_t expires = json_integer_value(json_object_get(approval, "expires_s"));
		char text[64] = "approval";
		if (expires > 0) {
			char d[32];
			snprintf(text, sizeof(text), "approval (expires %s)",
				 format_ms(expires * 1000, d, sizeof(d)));
		}
		json_array_append_new(gates, json_string(text));
	}
	return gates;
}

static const char *executor_of(const json_t *stage)
{
	static const char *const kinds[] = {"run", "sh", "http"};
	for (size_t i = 0; i < 3; i++) {
		if (json_object_get(stage, kinds[i]))
			return kinds[i];
	}
	return "-";
}

/* Appends to buf, cutting what does not fit. */
static void appendf(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (w > 0)
		*used = *used + (size_t)w < len ? *used + (size_t)w : len - 1;
}

/* "Canary (setWeight 20, pause 600s, analysis, pause, setWeight 100) via exec,
 * traffic haproxy": a deployment strategy in one line. */
static json_t *strategy_of(const json_t *rollout)
{
	const json_t *st = json_object_get(rollout, "strategy"), *step;
	const char *type = json_string_value(json_object_get(st, "type"));
	char text[1024], d[32];
	size_t used = 0, i;

	appendf(text, sizeof(text), &used, "%s", type ? type : "?");
	if (json_array_size(json_object_get(st, "steps"))) {
		appendf(text, sizeof(text), &used, " (");
		json_array_foreach(json_object_get(st, "steps"), i, step)
		{
			appendf(text, sizeof(text), &used, "%s", i ? ", " : "");
			if (json_object_get(step, "set_weight"))
				appendf(text, sizeof(text), &used, "setWeight %lld",
					(long long)json_integer_value(
					    json_object_get(step, "set_weight")));
			else if (json_object_get(step, "pause_ms"))
				appendf(
				    text, sizeof(text), &used, "pause %s",
				    format_ms(json_integer_value(json_object_get(step, "pause_ms")),
					      d, sizeof(d)));
			else if (json_object_get(step, "pause"))
				appendf(text, sizeof(text), &used, "pause until promoted");
			else
				appendf(text, sizeof(text), &used, "analysis");
		}
		appendf(text, sizeof(text), &used, ")");
	}
	if (json_object_get(st, "background"))
		appendf(text, sizeof(text), &used, ", background analysis");
	if (!strcmp(type ? type : "", "BlueGreen")) {
		json_int_t after = json_integer_value(json_object_get(st, "auto_promote_after_ms"));
		/* autoPromoteAfter: the switch waits that long, then goes on alone. */
		if (json_is_true(json_object_get(st, "auto_promote")))
			appendf(text, sizeof(text), &used, " (promotes itself)");
		else if (after > 0)
			appendf(text, sizeof(text), &used, " (promotes itself after %s)",
				format_ms(after, d, sizeof(d)));
		else
			appendf(text, sizeof(text), &used, " (waits for promote)");
	}
	appendf(text, sizeof(text), &used, " via %s",
		json_string_value(json_object_get(json_object_get(rollout, "provider"), "type")));
	if (json_object_get(rollout, "traffic"))
		appendf(text, sizeof(text), &used, ", traffic %s",
			json_string_value(
			    json_object_get(json_object_get(rollout, "traffic"), "type")));
	return json_string(text);
}

json_t *ctl_plan_build(const json_t *def)
{
	const json_t *stages = json_object_get(def, "stages");
	json_t *step = steps_of(stages);
	json_t *steps = json_array(), *envs = json_array();
	const char *name;
	json_t *st, *v;

	if (!step || !steps || !envs)
		goto fail;
	json_object_foreach(step, name, v)
	{
		size_t at = (size_t)json_integer_value(v);
		while (json_array_size(steps) <= at)
			json_array_append_new(steps, json_array());
	}
	/* File order within a step. */
	json_object_foreach((json_t *)stages, name, st)
	{
		json_t *at = json_object_get(step, name);
		if (!at)
			continue;
		json_t *when = json_object_get(st, "when");
		json_array_append_new(json_array_get(steps, (size_t)json_integer_value(at)),
				      json_pack("{s:s,s:s?,s:O*,s:O?}", "stage", name, "kind",
						json_string_value(json_object_get(st, "kind")),
						"needs", json_object_get(st, "needs"), "when",
						when ? when : json_null()));
	}
	json_object_foreach(json_object_get(def, "environments"), name, v)
	{
		char stage_name[256];
		snprintf(stage_name, sizeof(stage_name), "deploy@%s", name);
		json_t *after = json_object_get(v, "after");
		const json_t *rollout =
		    json_object_get(json_object_get(stages, stage_name), "rollout");
		json_array_append_new(
		    envs, json_pack("{s:s,s:O?,s:o,s:s,s:o*}", "name", name, "after",
				    json_is_string(after) ? after : json_null(), "gates",
				    gates_of(v), "deploy",
				    rollout ? "strategy"
					    : executor_of(json_object_get(stages, stage_name)),
				    "strategy", rollout ? strategy_of(rollout) : NULL));
	}
	json_decref(step);
	return json_pack("{s:s?,s:o,s:o}", "pipeline",
			 json_string_value(json_object_get(def, "name")), "steps", steps,
			 "environments", envs);
fail:
	json_decref(step);
	json_decref(steps);
	json_decref(envs);
	return NULL;
}

/* s joined with sep into a sanitized string; "-" for none. */
static char *joined(const json_t *list, const char *sep)
{
	size_t len = 1, i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		len += json_string_length(v) + strlen(sep);
	}
	if (!json_array_size(list))
		return strdup("-");
	char *text = calloc(1, len);
	if (!text)
		return NULL;
	json_array_foreach(list, i, v)
	{
		if (i)
			strcat(text, sep);
		if (json_is_string(v))
			strcat(text, json_string_value(v));
	}
	char *clean = ctl_fmt_sanitize(text, strlen(text));
	free(text);
	return clean;
}

/* "events push; branches main, release/x" from a when: object. */
static char *when_text(const json_t *when)
{
	static const char *const keys[] = {"events", "branches", "tags"};
	char *out = strdup("");
	if (!json_is_object(when) || !out)
		return out ? (free(out), strdup("-")) : NULL;
	for (size_t k = 0; k < 3; k++) {
		const json_t *list = json_object_get(when, keys[k]);
		if (!json_is_array(list))
			continue;
		char *items = joined(list, ", ");
		char *next = NULL;
		if (!items ||
		    asprintf(&next, "%s%s%s %s", out, *out ? "; " : "", keys[k], items) < 0)
			next = NULL;
		free(items);
		free(out);
		out = next;
		if (!out)
			return NULL;
	}
	if (!*out) {
		free(out);
		return strdup("-");
	}
	return out;
}

static size_t width_of(const char *s)
{
	return ctl_fmt_width(s);
}

/* Prints rows of n columns aligned; cells are owned and freed. */
static int print_rows(FILE *out, char **cells, size_t rows, size_t n)
{
	size_t width[8] = {0};
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < n; c++)
			if (cells[r * n + c] && width_of(cells[r * n + c]) > width[c])
				width[c] = width_of(cells[r * n + c]);
	int rc = 0;
	for (size_t r = 0; r < rows; r++) {
		for (size_t c = 0; c < n; c++) {
			const char *cell = cells[r * n + c];
			if (!cell) {
				rc = -1;
				continue;
			}
			fputs(cell, out);
			if (c + 1 < n)
				fprintf(out, "%*s", (int)(width[c] - width_of(cell) + 2), "");
		}
		fputc('\n', out);
	}
	for (size_t i = 0; i < rows * n; i++)
		free(cells[i]);
	return rc < 0 || ferror(out) ? -1 : 0;
}

int ctl_plan_render(FILE *out, const json_t *plan)
{
	const json_t *steps = json_object_get(plan, "steps");
	const json_t *envs = json_object_get(plan, "environments");
	size_t nstages = 0, i, j;
	json_t *group, *s;

	if (!json_is_array(steps) || !json_is_array(envs))
		return -1;
	json_array_foreach(steps, i, group)
	{
		nstages += json_array_size(group);
	}
	const char *name = json_string_value(json_object_get(plan, "pipeline"));
	char *clean = ctl_fmt_sanitize(name ? name : "-", strlen(name ? name : "-"));
	fprintf(out, "pipeline %s: %zu stage%s in %zu step%s, %zu environment%s\n\n",
		clean ? clean : "-", nstages, nstages == 1 ? "" : "s", json_array_size(steps),
		json_array_size(steps) == 1 ? "" : "s", json_array_size(envs),
		json_array_size(envs) == 1 ? "" : "s");
	free(clean);

	char **cells = calloc((nstages + 1) * 5, sizeof(*cells));
	if (!cells)
		return -1;
	static const char *const sh[] = {"STEP", "STAGE", "KIND", "NEEDS", "WHEN"};
	for (size_t c = 0; c < 5; c++)
		cells[c] = strdup(sh[c]);
	size_t row = 1;
	json_array_foreach(steps, i, group)
	{
		json_array_foreach(group, j, s)
		{
			char step[24];
			const char *kind = json_string_value(json_object_get(s, "kind"));
			const char *stage = json_string_value(json_object_get(s, "stage"));
			snprintf(step, sizeof(step), "%zu", i + 1);
			cells[row * 5] = strdup(j == 0 ? step : "");
			cells[row * 5 + 1] =
			    ctl_fmt_sanitize(stage ? stage : "-", strlen(stage ? stage : "-"));
			cells[row * 5 + 2] = strdup(kind ? kind : "-");
			cells[row * 5 + 3] = joined(json_object_get(s, "needs"), ", ");
			cells[row * 5 + 4] = when_text(json_object_get(s, "when"));
			row++;
		}
	}
	int rc = print_rows(out, cells, row, 5);
	free(cells);
	if (rc < 0 || json_array_size(envs) == 0)
		return rc;

	fputc('\n', out);
	cells = calloc((json_array_size(envs) + 1) * 4, sizeof(*cells));
	if (!cells)
		return -1;
	static const char *const eh[] = {"ENVIRONMENT", "AFTER", "GATES", "DEPLOY"};
	for (size_t c = 0; c < 4; c++)
		cells[c] = strdup(eh[c]);
	json_array_foreach(envs, i, s)
	{
		const char *env = json_string_value(json_object_get(s, "name"));
		const char *after = json_string_value(json_object_get(s, "after"));
		const char *deploy = json_string_value(json_object_get(s, "strategy"));
		if (!deploy)
			deploy = json_string_value(json_object_get(s, "deploy"));
		cells[(i + 1) * 4] = ctl_fmt_sanitize(env ? env : "-", strlen(env ? env : "-"));
		cells[(i + 1) * 4 + 1] =
		    ctl_fmt_sanitize(after ? after : "-", strlen(after ? after : "-"));
		cells[(i + 1) * 4 + 2] = joined(json_object_get(s, "gates"), "; ");
		cells[(i + 1) * 4 + 3] = strdup(deploy ? deploy : "-");
	}
	rc = print_rows(out, cells, json_array_size(envs) + 1, 4);
	free(cells);
	return rc;
}

int ctl_plan(const char *file, int json, FILE *out, FILE *err)
{
	struct pipeline p;
	char msg[ERR_MAX];
	int kind = ctl_validate_is_pipeline(file, msg, sizeof(msg));

	/* A sluice.yaml would fail at its first key, as unknown to a pipeline. */
	if (kind == 0) {
		fprintf(err,
			"%s: not a pipeline file (no stages: or trigger:): plan shows a pipeline; "
			"sluicectl validate checks settings\n",
			file);
		return 1;
	}
	if (kind < 0 || pipeline_load_file(file, &p, msg, sizeof(msg)) < 0) {
		fprintf(err, "%s\n", msg);
		return 1;
	}
	json_t *plan = ctl_plan_build(p.def);
	pipeline_clear(&p);
	if (!plan) {
		fprintf(err, "sluicectl: out of memory\n");
		return 1;
	}
	int rc = json ? (json_dumpf(plan, out, JSON_INDENT(2)) < 0 ? -1 : (fputc('\n', out), 0))
		      : ctl_plan_render(out, plan);
	json_decref(plan);
	if (rc < 0 || fflush(out) != 0) {
		fprintf(err, "sluicectl: write error\n");
		return 1;
	}
	return 0;
}
