/* http: one http: stage on a curl multi handle of its own (lib/curlev.h),
 * whose sockets and timer are libevent events on the worker's loop. */
#include "stages/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/file.h"
#include "lib/clock.h"
#include "lib/curlev.h"
#include "lib/curlreq.h"
#include "lib/lines.h"
#include "stages/expand.h"
#include "stages/request.h"

#define DEFAULT_ATTEMPT_MS 30000
#define DEFAULT_BACKOFF_MS 1000
#define DEFAULT_RETRIES	   3
#define RETRY_AFTER_CAP_MS 60000
#define BACKOFF_CAP_MS	   (10 * 60 * 1000)
#define MAX_SHOWN_URL	   256
#define JSON_CONTENT_TYPE  "Content-Type: application/json"
#define STATUS_LINE_MAXLEN 600

struct http {
	struct event_base *base;
	struct curlev *multi;
	CURL *easy;
	int easy_added;
	struct curl_slist *headers;
	char *url;
	char *body;
	char shown_url[MAX_SHOWN_URL]; /* scheme://host[:port]/path, for messages */
	char method[16];
	long *expect;
	size_t nexpect;
	/* As loaded: up to 30 days, more than an int holds. */
	long long attempt_ms;
	long long backoff_ms;
	int retries;
	struct event *stage_timer;
	struct event *retry_timer;
	struct event *done_ev;
	/* the attempt in flight */
	char errbuf[CURL_ERROR_SIZE];
	char body_head[HTTP_BODY_LOGGED];
	size_t body_len;
	unsigned long long body_total;
	long retry_after_ms; /* -1: no Retry-After header */
	int64_t attempt_started_ms;
	int64_t started_ms;
	int decided;
	struct http_result result;
	http_line_cb on_line;
	http_exit_cb on_exit;
	void *arg;
};

static void emit(struct http *h, enum http_line_kind k, const char *text)
{
	if (h->on_line)
		h->on_line(k, text, strlen(text), h->arg);
}

static int emit_body_line(const char *line, size_t len, void *arg)
{
	struct http *h = arg;

	h->on_line(HTTP_LINE_BODY, line, len, h->arg);
	return 0;
}

static void emit_body(struct http *h)
{
	char note[128];

	if (h->on_line)
		lines_each(h->body_head, h->body_len, emit_body_line, h);
	if (h->body_total > h->body_len) {
		snprintf(note, sizeof(note), "[response body: first %zu of %llu bytes shown]",
			 h->body_len, h->body_total);
		emit(h, HTTP_LINE_SYSTEM, note);
	}
}

/* --- ending ------------------------------------------------------------- */

static void detach_easy(struct http *h)
{
	if (h->easy_added) {
		curlev_remove(h->multi, h->easy);
		h->easy_added = 0;
	}
}

/* The outcome is known: stop every source of further callbacks and let the
 * loop deliver it, so that on_exit never runs inside a curl callback or
 * inside the caller's own http_cancel. */
static void decide(struct http *h, enum http_outcome outcome, const char *error)
{
	if (h->decided)
		return;
	h->decided = 1;
	h->result.outcome = outcome;
	h->result.duration_ms = clock_mono_ms() - h->started_ms;
	if (error)
		snprintf(h->result.error, sizeof(h->result.error), "%s", error);
	detach_easy(h);
	evtimer_del(h->stage_timer);
	evtimer_del(h->retry_timer);
	event_active(h->done_ev, EV_TIMEOUT, 0);
}

static void http_free(struct http *h)
{
	detach_easy(h);
	if (h->easy)
		curl_easy_cleanup(h->easy);
	curlev_free(h->multi);
	if (h->stage_timer)
		event_free(h->stage_timer);
	if (h->retry_timer)
		event_free(h->retry_timer);
	if (h->done_ev)
		event_free(h->done_ev);
	curl_slist_free_all(h->headers);
	free(h->url);
	free(h->body);
	free(h->expect);
	free(h);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	(void)fd;
	(void)what;
	h->on_exit(&h->result, h->arg);
	http_free(h);
}

/* --- attempts ----------------------------------------------------------- */

static int expected(const struct http *h, long status)
{
	if (h->nexpect == 0)
		return status >= 200 && status < 300;
	for (size_t i = 0; i < h->nexpect; i++)
		if (h->expect[i] == status)
			return 1;
	return 0;
}

static void on_attempt_done(CURL *easy, CURLcode rc, void *arg);

static void start_attempt(struct http *h)
{
	char text[STATUS_LINE_MAXLEN];

	h->result.attempts++;
	h->body_len = 0;
	h->body_total = 0;
	h->retry_after_ms = -1;
	h->errbuf[0] = '\0';
	h->attempt_started_ms = clock_mono_ms();
	snprintf(text, sizeof(text), "%s %s (attempt %d of %d)", h->method, h->shown_url,
		 h->result.attempts, h->retries + 1);
	emit(h, HTTP_LINE_SYSTEM, text);
	if (curlev_add(h->multi, h->easy, on_attempt_done, h) < 0) {
		decide(h, HTTP_FAILED, "cannot start the request");
		return;
	}
	h->easy_added = 1;
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_attempt(arg);
}

/* Retries when attempts are left, else fails with why. */
static void retry_or_fail(struct http *h, const char *why)
{
	char text[STATUS_LINE_MAXLEN + 64];

	if (h->result.attempts > h->retries) {
		if (h->retries > 0) {
			snprintf(text, sizeof(text), "%s (after %d attempts)", why,
				 h->result.attempts);
			decide(h, HTTP_FAILED, text);
		} else {
			decide(h, HTTP_FAILED, why);
		}
		return;
	}
	long long delay = h->backoff_ms;
	for (int i = 1; i < h->result.attempts && delay < BACKOFF_CAP_MS; i++)
		delay *= 2;
	if (delay > BACKOFF_CAP_MS)
		delay = BACKOFF_CAP_MS;
	if (h->retry_after_ms >= 0)
		delay =
		    h->retry_after_ms < RETRY_AFTER_CAP_MS ? h->retry_after_ms : RETRY_AFTER_CAP_MS;
	snprintf(text, sizeof(text), "%s; retrying in %lld ms", why, delay);
	emit(h, HTTP_LINE_SYSTEM, text);
	struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
	evtimer_add(h->retry_timer, &tv);
}

static void tls_error(struct http *h, CURLcode rc, char *out, size_t outlen)
{
	const char *detail = h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc);
	if (rc == CURLE_PEER_FAILED_VERIFICATION)
		snprintf(out, outlen, "TLS: certificate verify failed (%s)", detail);
	else
		snprintf(out, outlen, "TLS: %s", detail);
}

static int is_tls_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return 1;
	default:
		return 0;
	}
}

/* Errors where another attempt may go better: the network, the peer
 * going away, the attempt's own timeout. */
static int is_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0;
	}
}

static void attempt_done(struct http *h, CURLcode rc)
{
	char why[STATUS_LINE_MAXLEN];
	long status = 0;
	long long ms = clock_mono_ms() - h->attempt_started_ms;

	detach_easy(h);
	if (rc != CURLE_OK) {
		if (rc == CURLE_OPERATION_TIMEDOUT && h->attempt_ms % 1000 == 0)
			snprintf(why, sizeof(why), "timeout after %lld s", h->attempt_ms / 1000);
		else if (rc == CURLE_OPERATION_TIMEDOUT)
			snprintf(why, sizeof(why), "timeout after %lld ms", h->attempt_ms);
		else if (is_tls_error(rc))
			tls_error(h, rc, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s: %s", h->shown_url,
				 h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
		if (is_transient(rc)) {
			retry_or_fail(h, why);
			return;
		}
		emit(h, HTTP_LINE_SYSTEM, why);
		decide(h, HTTP_FAILED, why);
		return;
	}
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	h->result.status = status;
	snprintf(why, sizeof(why), "HTTP %ld from %s in %lld ms", status, h->shown_url, ms);
	emit(h, HTTP_LINE_SYSTEM, why);
	emit_body(h);
	snprintf(why, sizeof(why), "HTTP %ld from %s", status, h->shown_url);
	if (expected(h, status))
		decide(h, HTTP_SUCCEEDED, NULL);
	else if (status >= 500 || status == 429)
		retry_or_fail(h, why);
	else
		decide(h, HTTP_FAILED, why);
}

/* The attempt's transfer ended; curlev took it out of the multi. */
static void on_attempt_done(CURL *easy, CURLcode rc, void *arg)
{
	struct http *h = arg;
	(void)easy;

	h->easy_added = 0;
	if (!h->decided)
		attempt_done(h, rc);
}

/* --- the loop ----------------------------------------------------------- */

static void on_stage_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	char text[64];
	(void)fd;
	(void)what;

	snprintf(text, sizeof(text), "timed out after %lld ms",
		 (long long)(clock_mono_ms() - h->started_ms));
	decide(h, HTTP_TIMED_OUT, text);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct http *h = arg;
	size_t len = size * n;
	size_t room = sizeof(h->body_head) - h->body_len;
	size_t keep = len < room ? len : room;

	memcpy(h->body_head + h->body_len, data, keep);
	h->body_len += keep;
	h->body_total += len;
	return len;
}

/* Retry-After in seconds; the HTTP-date form is not used by the services
 * stages talk to and is ignored (the back-off applies). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct http *h = arg;
	size_t len = size * n;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		char value[32];
		size_t vlen = len - (sizeof(name) - 1);
		if (vlen >= sizeof(value))
			vlen = sizeof(value) - 1;
		memcpy(value, data + sizeof(name) - 1, vlen);
		value[vlen] = '\0';
		char *end;
		long secs = strtol(value, &end, 10);
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		if (end != value && *end == '\0' && secs >= 0)
			h->retry_after_ms =
			    secs > RETRY_AFTER_CAP_MS / 1000 ? RETRY_AFTER_CAP_MS : secs * 1000;
	}
	return len;
}

/* --- building the request ----------------------------------------------- */

static int is_json_type(const char *value)
{
	while (*value == ' ')
		value++;
	size_t n = strcspn(value, "; ");
	if (n == 16 && strncasecmp(value, "application/json", 16) == 0)
		return 1;
	return n >= 5 && strncasecmp(value + n - 5, "+json", 5) == 0;
}

static int build_request(struct http *h, const json_t *def, const json_t *vars, char *err,
			 size_t errlen)
{
	char why[256], *content_type = NULL;
	int json_body, typed;
	const char *method = json_string_value(json_object_get(def, "method"));
	const char *body = json_string_value(json_object_get(def, "body"));
	const char *ca_file = json_string_value(json_object_get(def, "ca_file"));
	json_t *v;
	size_t i;

	/* A provider's action may write the method in lower case. */
	snprintf(h->method, sizeof(h->method), "%s", method ? method : "GET");
	for (char *c = h->method; *c; c++)
		*c = (char)toupper((unsigned char)*c);
	if (request_url(json_string_value(json_object_get(def, "url")), vars, &h->url, h->shown_url,
			sizeof(h->shown_url), err, errlen) < 0 ||
	    request_headers(json_object_get(def, "headers"), vars, &h->headers, &content_type, err,
			    errlen) < 0)
		return -1;
	typed = content_type != NULL;
	json_body = typed && is_json_type(content_type);
	free(content_type);
	if (body) {
		/* A body without a Content-Type is sent as JSON, and its values
		 * are escaped as JSON string content wherever they land. */
		if (!typed) {
			struct curl_slist *l = curl_slist_append(h->headers, JSON_CONTENT_TYPE);
			if (!l) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			h->headers = l;
			json_body = 1;
		}
		if (expand_text(body, vars, json_body ? EXPAND_JSON : EXPAND_PLAIN, &h->body, why,
				sizeof(why)) < 0) {
			snprintf(err, errlen, "body: %s", why);
			return -1;
		}
	}
	/* curl would wait a second for "100 Continue" before sending a body. */
	struct curl_slist *l = curl_slist_append(h->headers, "Expect:");
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	h->headers = l;

	h->nexpect = json_array_size(json_object_get(def, "expect"));
	if (h->nexpect) {
		h->expect = calloc(h->nexpect, sizeof(*h->expect));
		if (!h->expect) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		json_array_foreach(json_object_get(def, "expect"), i, v)
		{
			h->expect[i] = (long)json_integer_value(v);
		}
	}
	v = json_object_get(def, "timeout_ms");
	h->attempt_ms = json_is_integer(v) ? json_integer_value(v) : DEFAULT_ATTEMPT_MS;
	v = json_object_get(def, "backoff_ms");
	h->backoff_ms = json_is_integer(v) ? json_integer_value(v) : DEFAULT_BACKOFF_MS;
	v = json_object_get(def, "retries");
	h->retries = json_is_integer(v) ? (int)json_integer_value(v) : DEFAULT_RETRIES;

	CURL *e = h->easy;
	curlreq_setup(e, h->url, h->attempt_ms, h->headers, "sluice-worker", h->errbuf);
	if (ca_file) {
		char *path = config_file_expand(ca_file);
		if (!path) {
			snprintf(err, errlen, "ca_file %s: %s", ca_file,
				 config_file_expand_error(errno));
			return -1;
		}
		curl_easy_setopt(e, CURLOPT_CAINFO, path); /* curl keeps a copy */
		free(path);
	}
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
	if (strcmp(h->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		if (h->body) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, h->body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)strlen(h->body));
		}
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, h->method);
	}
	return 0;
}

struct http *http_start(struct event_base *base, const json_t *def, const json_t *vars,
			int64_t timeout_ms, http_line_cb on_line, http_exit_cb on_exit, void *arg,
			char *err, size_t errlen)
{
	struct http *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->base = base;
	h->on_line = on_line;
	h->on_exit = on_exit;
	h->arg = arg;
	h->started_ms = clock_mono_ms();
	h->multi = curlev_new(base);
	h->easy = curl_easy_init();
	h->stage_timer = evtimer_new(base, on_stage_timer, h);
	h->retry_timer = evtimer_new(base, on_retry_timer, h);
	h->done_ev = event_new(base, -1, 0, on_done, h);
	if (!h->multi || !h->easy) {
		snprintf(err, errlen, CURLEV_NO_CLIENT);
		goto fail;
	}
	if (!h->stage_timer || !h->retry_timer || !h->done_ev) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (build_request(h, def, vars, err, errlen) < 0)
		goto fail;
	if (timeout_ms > 0) {
		struct timeval tv = {(time_t)(timeout_ms / 1000),
				     (suseconds_t)(timeout_ms % 1000) * 1000};
		evtimer_add(h->stage_timer, &tv);
	}
	start_attempt(h);
	return h;
fail:
	http_free(h);
	return NULL;
}

void http_cancel(struct http *h)
{
	if (h)
		decide(h, HTTP_CANCELLED, "cancelled");
}
