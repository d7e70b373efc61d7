/* metric: the prometheus and web providers of an analysis, each one request
 * on a curl multi handle of its own (lib/curlev.h). */
#include "stages/metric.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/curlev.h"
#include "lib/curlreq.h"

#define MAX_KEY	      256
#define MAX_SHOWN_URL 256

enum provider_kind { PROVIDER_PROMETHEUS, PROVIDER_WEB };

struct metric {
	enum provider_kind kind;
	struct curlev *multi;
	CURL *easy;
	struct curl_slist *headers;
	struct event *done_ev;
	char *url;
	char *body;		       /* of a POST */
	char *json_path;	       /* web */
	struct curlreq_answer answer;  /* the response body so far */
	char shown_url[MAX_SHOWN_URL]; /* without query or user information */
	char errbuf[CURL_ERROR_SIZE];
	double values[METRIC_MAX_VALUES];
	struct metric_sample sample;
	metric_done_cb cb;
	void *arg;
};

/* --- JSON paths --------------------------------------------------------- */

struct segment {
	int is_index;
	long index;
	char key[MAX_KEY];
};

static int path_fail(char *err, size_t errlen, size_t col, const char *what)
{
	snprintf(err, errlen, "column %zu: %s", col + 1, what);
	return -1;
}

/* The segment of path at *i: 1 with seg filled, 0 at the end, -1 with err. */
static int path_next(const char *path, size_t *i, struct segment *seg, char *err, size_t errlen)
{
	size_t p = *i, k = 0;

	if (path[p] == '\0')
		return 0;
	if (path[p] == '[') {
		p++;
		if (path[p] == '"' || path[p] == '\'') {
			char quote = path[p++];
			while (path[p] && path[p] != quote) {
				if (k + 1 >= MAX_KEY)
					return path_fail(err, errlen, p, "key too long");
				seg->key[k++] = path[p++];
			}
			if (path[p] != quote)
				return path_fail(err, errlen, p, "unterminated quoted key");
			p++;
			seg->is_index = 0;
			seg->key[k] = '\0';
		} else {
			long index = 0;
			size_t start = p;
			if (path[p] < '0' || path[p] > '9')
				return path_fail(err, errlen, p,
						 "expected an index or a quoted key");
			for (; path[p] >= '0' && path[p] <= '9'; p++) {
				if (index > 1000000)
					return path_fail(err, errlen, start, "index too large");
				index = index * 10 + (path[p] - '0');
			}
			seg->is_index = 1;
			seg->index = index;
		}
		if (path[p] != ']')
			return path_fail(err, errlen, p, "expected ]");
		*i = p + 1;
		return 1;
	}
	if (path[p] == '.')
		p++;
	else if (p != 0)
		return path_fail(err, errlen, p, "expected . or [");
	while (path[p] && path[p] != '.' && path[p] != '[') {
		if (path[p] == ']' || path[p] == '"' || path[p] == '\'' || path[p] == '{' ||
		    path[p] == '}' || (unsigned char)path[p] < 0x20)
			return path_fail(err, errlen, p, "unexpected character in a key");
		if (k + 1 >= MAX_KEY)
			return path_fail(err, errlen, p, "key too long");
		seg->key[k++] = path[p++];
	}
	if (k == 0)
		return path_fail(err, errlen, p, "expected a key");
	seg->is_index = 0;
	seg->key[k] = '\0';
	*i = p;
	return 1;
}

/* Where the path proper starts: after "$", which stands for the root. */
static size_t path_start(const char *path)
{
	return path[0] == '$' ? 1 : 0;
}

int metric_path_check(const char *path, char *err, size_t errlen)
{
	struct segment seg;
	size_t i = path_start(path);
	int rc;

	if (path[0] == '\0')
		return path_fail(err, errlen, 0, "empty path");
	/* Argo Rollouts' form, {$.data.ratio}: "{$" would be read as a key
	 * that no answer has, every measurement no data. */
	if (path[0] == '{')
		return path_fail(err, errlen, 0, "write the path without braces, as $.data.ratio");
	/* A path that starts after "$" must start with . or [; a bare key is
	 * only allowed without the "$". */
	if (i == 1 && path[1] != '\0' && path[1] != '.' && path[1] != '[')
		return path_fail(err, errlen, 1, "expected . or [");
	while ((rc = path_next(path, &i, &seg, err, errlen)) == 1)
		;
	return rc;
}

/* A number, or a string holding one as Prometheus writes them: decimal
 * ("0.25", "1e-3"), "NaN", "+Inf", "-Inf". strtod alone would also take
 * hexadecimal ("0x10"), "infinity" and leading blanks, which no provider
 * means as a measurement. */
static int number_of(const json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		int special = strcasecmp(s, "NaN") == 0 || strcasecmp(s, "Inf") == 0 ||
			      strcasecmp(s, "+Inf") == 0 || strcasecmp(s, "-Inf") == 0;
		if (*s == '\0' || (!special && s[strspn(s, "0123456789+-.eE")] != '\0'))
			return -1;
		errno = 0;
		*out = strtod(s, &end);
		return *end == '\0' ? 0 : -1;
	}
	return -1;
}

int metric_path_values(const json_t *root, const char *path, double *values, size_t max, size_t *n,
		       char *message, size_t msglen)
{
	struct segment seg;
	const json_t *v = root;
	size_t i = path_start(path);
	int rc;

	*n = 0;
	if (i == 1 && path[1] != '\0' && path[1] != '.' && path[1] != '[')
		return path_fail(message, msglen, 1, "expected . or [");
	while ((rc = path_next(path, &i, &seg, message, msglen)) == 1) {
		const json_t *next = seg.is_index ? json_array_get(v, (size_t)seg.index)
						  : json_object_get(v, seg.key);
		if (!next) {
			snprintf(message, msglen, "nothing at %.*s in the answer", (int)i, path);
			return 0;
		}
		v = next;
	}
	if (rc < 0)
		return -1;
	if (json_is_null(v)) {
		snprintf(message, msglen, "%s is null", path);
		return 0;
	}
	if (!json_is_array(v)) {
		if (number_of(v, &values[0]) < 0) {
			snprintf(message, msglen, "%s is not a number", path);
			return -1;
		}
		*n = 1;
		return 0;
	}
	size_t k;
	const json_t *item;
	json_array_foreach(v, k, item)
	{
		if (k >= max) {
			snprintf(message, msglen, "%s holds more than %zu values", path, max);
			return -1;
		}
		if (number_of(item, &values[k]) < 0) {
			snprintf(message, msglen, "%s[%zu] is not a number", path, k);
			return -1;
		}
	}
	*n = json_array_size(v);
	if (*n == 0)
		snprintf(message, msglen, "%s is an empty list", path);
	return 0;
}

/* --- answers ------------------------------------------------------------ */

static void set_failed(struct metric *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_failed(struct metric *m, const char *fmt, ...)
{
	va_list ap;

	m->sample.failed = 1;
	va_start(ap, fmt);
	vsnprintf(m->sample.message, sizeof(m->sample.message), fmt, ap);
	va_end(ap);
}

/* One value of a Prometheus sample, [<time>, "<number>"]. */
static int prometheus_value(struct metric *m, const json_t *pair)
{
	double v;

	if (!json_is_array(pair) || json_array_size(pair) != 2 ||
	    !json_is_string(json_array_get(pair, 1)) ||
	    number_of(json_array_get(pair, 1), &v) < 0) {
		set_failed(m, "prometheus: unexpected sample in the answer from %s", m->shown_url);
		return -1;
	}
	if (m->sample.n >= METRIC_MAX_VALUES) {
		set_failed(m, "prometheus: the query returns more than %d series",
			   METRIC_MAX_VALUES);
		return -1;
	}
	m->values[m->sample.n++] = v;
	return 0;
}

static void prometheus_answer(struct metric *m, long status, const json_t *root)
{
	const char *st = json_string_value(json_object_get(root, "status"));
	const json_t *data = json_object_get(root, "data");
	const char *type = json_string_value(json_object_get(data, "resultType"));
	const json_t *result = json_object_get(data, "result");

	if (st && strcmp(st, "error") == 0) {
		const char *e = json_string_value(json_object_get(root, "error"));
		const char *etype = json_string_value(json_object_get(root, "errorType"));
		set_failed(m, "prometheus: %s: %s", etype ? etype : "error", e ? e : "no message");
		return;
	}
	if (status != 200 || !st || strcmp(st, "success") != 0 || !type) {
		set_failed(m, "prometheus: HTTP %ld from %s without a query result", status,
			   m->shown_url);
		return;
	}
	if (strcmp(type, "scalar") == 0) {
		prometheus_value(m, result);
		return;
	}
	if (strcmp(type, "vector") != 0) {
		set_failed(
		    m, "prometheus: the query gives a %s; an instant vector or scalar is needed",
		    type);
		return;
	}
	/* Not "no data": noData must not judge an answer that is not one. */
	if (!json_is_array(result)) {
		set_failed(m, "prometheus: a vector without a list of series in the answer from %s",
			   m->shown_url);
		return;
	}
	size_t i;
	const json_t *series;
	json_array_foreach(result, i, series)
	{
		if (prometheus_value(m, json_object_get(series, "value")) < 0)
			return;
	}
	if (m->sample.n == 0)
		snprintf(m->sample.message, sizeof(m->sample.message),
			 "the query returned no series");
}

static void web_answer(struct metric *m, long status, const json_t *root)
{
	size_t n;

	if (status < 200 || status > 299) {
		set_failed(m, "HTTP %ld from %s", status, m->shown_url);
		return;
	}
	if (!root) {
		set_failed(m, "the answer from %s is not JSON", m->shown_url);
		return;
	}
	if (metric_path_values(root, m->json_path, m->values, METRIC_MAX_VALUES, &n,
			       m->sample.message, sizeof(m->sample.message)) < 0) {
		m->sample.failed = 1;
		return;
	}
	m->sample.n = n;
}

static void on_transfer_done(CURL *easy, CURLcode rc, void *arg)
{
	struct metric *m = arg;
	long status = 0;
	json_t *root = NULL;
	(void)easy;

	m->sample.values = m->values;
	if (m->answer.too_big) {
		set_failed(m, "the answer from %s is longer than %d bytes", m->shown_url,
			   METRIC_MAX_BODY);
	} else if (rc != CURLE_OK) {
		set_failed(m, "%s: %s", m->shown_url,
			   m->errbuf[0] ? m->errbuf : curl_easy_strerror(rc));
	} else {
		curl_easy_getinfo(m->easy, CURLINFO_RESPONSE_CODE, &status);
		root = json_loadb(m->answer.data ? m->answer.data : "", m->answer.len, 0, NULL);
		if (m->kind == PROVIDER_PROMETHEUS)
			prometheus_answer(m, status, root);
		else
			web_answer(m, status, root);
		json_decref(root);
	}
	/* curlev must not be freed from within its own callback: report from
	 * the loop instead. */
	event_active(m->done_ev, EV_TIMEOUT, 0);
}

/* --- the request -------------------------------------------------------- */

static void metric_free(struct metric *m)
{
	if (m->easy) {
		curlev_remove(m->multi, m->easy);
		curl_easy_cleanup(m->easy);
	}
	curlev_free(m->multi);
	if (m->done_ev)
		event_free(m->done_ev);
	curl_slist_free_all(m->headers);
	free(m->url);
	free(m->body);
	free(m->json_path);
	curlreq_answer_clear(&m->answer);
	free(m);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct metric *m = arg;
	(void)fd;
	(void)what;

	m->cb(&m->sample, m->arg);
	metric_free(m);
}

static int show_url(struct metric *m, char *err, size_t errlen)
{
	return curlev_show_url(m->url, m->shown_url, sizeof(m->shown_url), err, errlen);
}

static int add_header(struct metric *m, const char *name, const char *value, char *err,
		      size_t errlen)
{
	if (strpbrk(value, "\r\n")) {
		snprintf(err, errlen, "header %s: line break in the value", name);
		return -1;
	}
	if (curlreq_header(&m->headers, "%s: %s", name, value) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int build_url(struct metric *m, const json_t *provider, char *err, size_t errlen)
{
	const char *address = json_string_value(json_object_get(provider, "address"));
	const char *query = json_string_value(json_object_get(provider, "query"));

	if (m->kind == PROVIDER_WEB) {
		const char *url = json_string_value(json_object_get(provider, "url"));
		const char *path = json_string_value(json_object_get(provider, "json_path"));
		if (!url || !path || metric_path_check(path, err, errlen) < 0) {
			if (url && path)
				return -1;
			snprintf(err, errlen, "web: url and json_path are required");
			return -1;
		}
		m->url = strdup(url);
		m->json_path = strdup(path);
		return m->url && m->json_path ? 0 : -1;
	}
	if (!address || !query) {
		snprintf(err, errlen, "prometheus: address and query are required");
		return -1;
	}
	char *escaped = curl_easy_escape(NULL, query, 0);
	size_t alen = strlen(address);
	while (alen > 0 && address[alen - 1] == '/')
		alen--;
	int rc = escaped
		     ? asprintf(&m->url, "%.*s/api/v1/query?query=%s", (int)alen, address, escaped)
		     : -1;
	curl_free(escaped);
	if (rc < 0) {
		m->url = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int setup(struct metric *m, const json_t *provider, char *err, size_t errlen)
{
	const char *method = json_string_value(json_object_get(provider, "method"));
	const char *body = json_string_value(json_object_get(provider, "body"));
	json_int_t timeout = json_integer_value(json_object_get(provider, "timeout_ms"));
	const char *name;
	json_t *value;
	int has_type = 0;

	if (build_url(m, provider, err, errlen) < 0 || show_url(m, err, errlen) < 0)
		return -1;
	json_object_foreach((json_t *)json_object_get(provider, "headers"), name, value)
	{
		if (!json_is_string(value) ||
		    add_header(m, name, json_string_value(value), err, errlen) < 0)
			return -1;
		if (strcasecmp(name, "content-type") == 0)
			has_type = 1;
	}
	if (body && !has_type && add_header(m, "Content-Type", "application/json", err, errlen) < 0)
		return -1;
	m->easy = curl_easy_init();
	if (!m->easy) {
		snprintf(err, errlen, CURLEV_NO_CLIENT);
		return -1;
	}
	CURL *e = m->easy;
	curlreq_setup(e, m->url, (long)(timeout > 0 ? timeout : METRIC_DEFAULT_TIMEOUT_MS),
		      m->headers, "sluice-analysis", m->errbuf);
	m->answer.max = METRIC_MAX_BODY;
	curlreq_collect(e, &m->answer);
	if (method && strcmp(method, "POST") == 0) {
		m->body = strdup(body ? body : "");
		if (!m->body)
			return -1;
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(m->body));
	}
	return 0;
}

struct metric *metric_start(struct event_base *base, const json_t *provider, metric_done_cb cb,
			    void *arg, char *err, size_t errlen)
{
	const char *type = json_string_value(json_object_get(provider, "type"));
	struct metric *m = calloc(1, sizeof(*m));

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(err, errlen, "out of memory");
	m->cb = cb;
	m->arg = arg;
	if (type && strcmp(type, "prometheus") == 0) {
		m->kind = PROVIDER_PROMETHEUS;
	} else if (type && strcmp(type, "web") == 0) {
		m->kind = PROVIDER_WEB;
	} else {
		snprintf(err, errlen, "unknown provider \"%s\"", type ? type : "");
		goto fail;
	}
	m->multi = curlev_new(base);
	m->done_ev = event_new(base, -1, 0, on_done, m);
	if (!m->multi) {
		snprintf(err, errlen, CURLEV_NO_CLIENT);
		goto fail;
	}
	if (!m->done_ev) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (setup(m, provider, err, errlen) < 0)
		goto fail;
	if (curlev_add(m->multi, m->easy, on_transfer_done, m) < 0) {
		snprintf(err, errlen, "cannot start the request to %s", m->shown_url);
		goto fail;
	}
	return m;
fail:
	metric_free(m);
	return NULL;
}

void metric_cancel(struct metric *m)
{
	if (m)
		metric_free(m);
}
