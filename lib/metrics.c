/* metrics: a registry of metric families rendered in the Prometheus text format. */
#include "lib/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 8

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct series {
	struct series *next;
	char **values;
	double value;		  /* counter or gauge */
	double *buckets;	  /* histogram: observations per bucket, not cumulative */
	double sum;		  /* histogram */
	unsigned long long count; /* histogram */
};

struct metric {
	struct metric *next;
	struct metrics *registry;
	enum metric_type type;
	char *name;
	char *help;
	char **labels;
	size_t nlabels;
	double *bounds;
	size_t nbounds;
	struct series *series, **tail;
	size_t nseries;
};

struct metrics {
	struct metric *families, **tail;
	struct metric *dropped;
};

static int name_ok(const char *s, int colon)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return 0;
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (colon && *s == ':')))
			return 0;
	}
	return 1;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void series_free(struct series *s, size_t nlabels)
{
	for (size_t i = 0; i < nlabels; i++)
		free(s->values[i]);
	free(s->values);
	free(s->buckets);
	free(s);
}

static void family_free(struct metric *f)
{
	metrics_reset(f);
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->labels);
	free(f->bounds);
	free(f->name);
	free(f->help);
	free(f);
}

static struct metric *find(const struct metrics *m, const char *name)
{
	for (struct metric *f = m->families; f; f = f->next) {
		if (strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

static struct metric *family_new(struct metrics *m, enum metric_type type, const char *name,
				 const char *help, const char *const *labels)
{
	size_t n = 0;
	while (labels && labels[n])
		n++;
	if (!m || !name_ok(name, 1) || !help || n > MAX_LABELS || find(m, name))
		return NULL;
	if (type == METRIC_COUNTER && !ends_with(name, "_total"))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		/* "le" is the histogram's own; names starting "__" are reserved. */
		if (!name_ok(labels[i], 0) || strncmp(labels[i], "__", 2) == 0 ||
		    (type == METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0))
			return NULL;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(labels[i], labels[j]) == 0)
				return NULL;
		}
	}
	struct metric *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->registry = m;
	f->type = type;
	f->tail = &f->series;
	f->name = strdup(name);
	f->help = strdup(help);
	f->labels = calloc(n + 1, sizeof(*f->labels));
	if (!f->name || !f->help || !f->labels)
		goto fail;
	for (f->nlabels = 0; f->nlabels < n; f->nlabels++) {
		f->labels[f->nlabels] = strdup(labels[f->nlabels]);
		if (!f->labels[f->nlabels])
			goto fail;
	}
	return f;
fail:
	family_free(f);
	return NULL;
}

static void family_link(struct metrics *m, struct metric *f)
{
	*m->tail = f;
	m->tail = &f->next;
}

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->tail = &m->families;
	m->dropped =
	    metrics_counter(m, "sluice_metrics_series_dropped_total",
			    "Label sets not recorded because their family was full.", NULL);
	if (!m->dropped) {
		free(m);
		return NULL;
	}
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	while (m->families) {
		struct metric *f = m->families;
		m->families = f->next;
		family_free(f);
	}
	free(m);
}

static struct series *series_find(const struct metric *f, const char *const *values)
{
	for (struct series *s = f->series; s; s = s->next) {
		size_t i = 0;
		while (i < f->nlabels && strcmp(s->values[i], values[i] ? values[i] : "") == 0)
			i++;
		if (i == f->nlabels)
			return s;
	}
	return NULL;
}

/* A family without labels has its one series from the start, so that it is
 * exposed (as 0) before anything happened. */
static struct series *series_get(struct metric *f, const char *const *values)
{
	struct series *s = series_find(f, values);
	if (s)
		return s;
	if (f->nseries >= METRICS_MAX_SERIES) {
		if (f != f->registry->dropped)
			metrics_add(f->registry->dropped, NULL, 1);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->values = calloc(f->nlabels + 1, sizeof(*s->values));
	if (f->type == METRIC_HISTOGRAM)
		s->buckets = calloc(f->nbounds + 1, sizeof(*s->buckets));
	if (!s->values || (f->type == METRIC_HISTOGRAM && !s->buckets))
		goto fail;
	for (size_t i = 0; i < f->nlabels; i++) {
		s->values[i] = strdup(values[i] ? values[i] : "");
		if (!s->values[i])
			goto fail;
	}
	*f->tail = s;
	f->tail = &s->next;
	f->nseries++;
	return s;
fail:
	series_free(s, f->nlabels);
	return NULL;
}

static struct metric *register_family(struct metrics *m, enum metric_type type, const char *name,
				      const char *help, const char *const *labels)
{
	struct metric *f = family_new(m, type, name, help, labels);
	if (!f)
		return NULL;
	if (f->nlabels == 0 && type != METRIC_HISTOGRAM && !series_get(f, NULL)) {
		family_free(f);
		return NULL;
	}
	family_link(m, f);
	return f;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
			       const char *const *labels)
{
	return register_family(m, METRIC_COUNTER, name, help, labels);
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
			     const char *const *labels)
{
	return register_family(m, METRIC_GAUGE, name, help, labels);
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
				 const char *const *labels, const double *bounds, size_t nbounds)
{
	if (!bounds || nbounds == 0)
		return NULL;
	for (size_t i = 0; i < nbounds; i++) {
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			return NULL;
	}
	struct metric *f = family_new(m, METRIC_HISTOGRAM, name, help, labels);
	if (!f)
		return NULL;
	f->bounds = malloc(nbounds * sizeof(*f->bounds));
	if (!f->bounds) {
		family_free(f);
		return NULL;
	}
	memcpy(f->bounds, bounds, nbounds * sizeof(*f->bounds));
	f->nbounds = nbounds;
	if (f->nlabels == 0 && !series_get(f, NULL)) {
		family_free(f);
		return NULL;
	}
	family_link(m, f);
	return f;
}

void metrics_add(struct metric *f, const char *const *values, double delta)
{
	if (!f || f->type == METRIC_HISTOGRAM || isnan(delta) ||
	    (f->type == METRIC_COUNTER && delta < 0))
		return;
	struct series *s = series_get(f, values);
	if (s)
		s->value += delta;
}

void metrics_set(struct metric *f, const char *const *values, double value)
{
	if (!f || f->type != METRIC_GAUGE)
		return;
	struct series *s = series_get(f, values);
	if (s)
		s->value = value;
}

void metrics_observe(struct metric *f, const char *const *values, double value)
{
	if (!f || f->type != METRIC_HISTOGRAM || isnan(value))
		return;
	struct series *s = series_get(f, values);
	if (!s)
		return;
	size_t b = 0;
	while (b < f->nbounds && value > f->bounds[b])
		b++;
	s->buckets[b] += 1;
	s->sum += value;
	s->count++;
}

void metrics_reset(struct metric *f)
{
	if (!f)
		return;
	while (f->series) {
		struct series *s = f->series;
		f->series = s->next;
		series_free(s, f->nlabels);
	}
	f->tail = &f->series;
	f->nseries = 0;
}

double metrics_value(const struct metric *f, const char *const *values)
{
	if (!f)
		return 0;
	const struct series *s = series_find(f, values);
	if (!s)
		return 0;
	return f->type == METRIC_HISTOGRAM ? (double)s->count : s->value;
}

/* --- rendering ------------------------------------------------------------ */

/* Shortest text that reads back as the same double; the format's own
 * spellings for infinities and NaN. */
static void put_number(FILE *out, double v)
{
	if (isnan(v)) {
		fputs("NaN", out);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", out);
		return;
	}
	char buf[40];
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, out);
}

/* Length of the valid UTF-8 sequence at p, 0 if there is none. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;
	unsigned int min, cp;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2, min = 0x80, cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3, min = 0x800, cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4, min = 0x10000, cp = p[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* The format's escapes: backslash and newline always, the double quote
 * inside label values; a byte that is not UTF-8 becomes U+FFFD. */
static void put_escaped(FILE *out, const char *text, int quote)
{
	const unsigned char *p = (const unsigned char *)text;
	while (*p) {
		size_t n = utf8_len(p);
		if (n == 0) {
			fputs("\xef\xbf\xbd", out);
			p++;
		} else if (*p == '\\') {
			fputs("\\\\", out);
			p++;
		} else if (*p == '\n') {
			fputs("\\n", out);
			p++;
		} else if (*p == '"' && quote) {
			fputs("\\\"", out);
			p++;
		} else {
			fwrite(p, 1, n, out);
			p += n;
		}
	}
}

/* name{a="x",b="y"[,le="..."]} value */
static void put_sample(FILE *out, const struct metric *f, const char *suffix,
		       const struct series *s, const double *le, double value)
{
	fputs(f->name, out);
	fputs(suffix, out);
	if (f->nlabels > 0 || le) {
		fputc('{', out);
		for (size_t i = 0; i < f->nlabels; i++) {
			fprintf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
			put_escaped(out, s->values[i], 1);
			fputc('"', out);
		}
		if (le) {
			fprintf(out, "%sle=\"", f->nlabels ? "," : "");
			put_number(out, *le);
			fputc('"', out);
		}
		fputc('}', out);
	}
	fputc(' ', out);
	put_number(out, value);
	fputc('\n', out);
}

static void put_family(FILE *out, const struct metric *f)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	if (!f->series)
		return;
	fprintf(out, "# HELP %s ", f->name);
	put_escaped(out, f->help, 0);
	fprintf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
	for (const struct series *s = f->series; s; s = s->next) {
		if (f->type != METRIC_HISTOGRAM) {
			put_sample(out, f, "", s, NULL, s->value);
			continue;
		}
		double cumulative = 0, inf = INFINITY;
		for (size_t b = 0; b < f->nbounds; b++) {
			cumulative += s->buckets[b];
			put_sample(out, f, "_bucket", s, &f->bounds[b], cumulative);
		}
		put_sample(out, f, "_bucket", s, &inf, (double)s->count);
		put_sample(out, f, "_sum", s, NULL, s->sum);
		put_sample(out, f, "_count", s, NULL, (double)s->count);
	}
}

char *metrics_render(const struct metrics *m, size_t *len)
{
	char *text = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&text, &n);
	if (!out)
		return NULL;
	for (const struct metric *f = m->families; f; f = f->next)
		put_family(out, f);
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	*len = n;
	return text;
}
