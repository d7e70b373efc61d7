/* api: libcurl easy-interface client of the agent's HTTP API. The CLI does
 * one thing at a time, so blocking calls are what it wants. */
#include "ctl/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ctl/args.h"
#include "ctl/fmt.h"
#include "ctl/version.h"
#include "lib/curlreq.h"

/* A log page or a run list is far smaller; this only bounds a broken or
 * hostile server. */
#define MAX_RESPONSE	  (64L * 1024 * 1024)
#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 120L
/* The agent sends a comment every 15 s; a stream silent for this long is
 * dead and is made again. */
#define STREAM_SILENCE_S 45L
#define FOLLOW_ATTEMPTS	 30
/* Of a plain-text error answer, shown in the error. */
#define MAX_TEXT_MESSAGE 200

struct ctl_api {
	CURL *curl;
	char *base;
	const char *ca_file; /* NULL: the system's CA certificates */
	struct curl_slist *headers;
};

struct ctl_api *ctl_api_new(const char *base_url)
{
	struct ctl_api *api = calloc(1, sizeof(*api));
	size_t len;
	struct curl_slist *h;

	if (!api)
		return NULL;
	base_url += strspn(base_url, CTL_BLANK);
	len = strlen(base_url);
	while (len > 0 && (base_url[len - 1] == '/' || strchr(CTL_BLANK, base_url[len - 1])))
		len--;
	api->base = strndup(base_url, len);
	api->curl = curl_easy_init();
	if (!api->base || !api->curl)
		goto fail;
	/* A RUN or ENV of "." or ".." is a path segment like any other: taken
	 * as a dot segment, retry RUN deploy@.. became the whole run's retry. */
	curl_easy_setopt(api->curl, CURLOPT_PATH_AS_IS, 1L);
	h = curl_slist_append(NULL, "Accept: application/json");
	if (!h)
		goto fail;
	api->headers = h;
	/* Every body sluicectl sends is JSON. */
	h = curl_slist_append(api->headers, "Content-Type: application/json");
	if (!h)
		goto fail;
	api->headers = h;
	return api;
fail:
	ctl_api_free(api);
	return NULL;
}

void ctl_api_set_ca_file(struct ctl_api *api, const char *file)
{
	api->ca_file = file;
}

int ctl_api_set_token(struct ctl_api *api, const char *token)
{
	char *header = NULL;
	struct curl_slist *h;

	if (asprintf(&header, "Authorization: Bearer %s", token) < 0)
		return -1;
	h = curl_slist_append(api->headers, header);
	/* libcurl copied it; the token is not left behind in our heap. */
	explicit_bzero(header, strlen(header));
	free(header);
	if (!h)
		return -1;
	api->headers = h;
	return 0;
}

void ctl_api_free(struct ctl_api *api)
{
	if (!api)
		return;
	curl_slist_free_all(api->headers);
	if (api->curl)
		curl_easy_cleanup(api->curl);
	free(api->base);
	free(api);
}

char *ctl_api_escape(struct ctl_api *api, const char *s)
{
	char *escaped = curl_easy_escape(api->curl, s, 0);
	char *copy;

	if (!escaped)
		return NULL;
	copy = strdup(escaped);
	curl_free(escaped);
	return copy;
}

/* The API's {"error": {"message": ...}}, sanitized, or NULL. */
static char *error_message(const struct curlreq_answer *b)
{
	json_t *root = b->data ? json_loadb(b->data, b->len, 0, NULL) : NULL;
	const json_t *msg = json_object_get(json_object_get(root, "error"), "message");
	char *s = NULL;

	if (json_is_string(msg) && json_string_length(msg) > 0)
		s = ctl_fmt_sanitize(json_string_value(msg), json_string_length(msg));
	json_decref(root);
	return s;
}

/* The first line of a plain-text answer (the agent's own to a plain HTTP
 * request on its TLS port, a proxy's), sanitized, or NULL. */
static char *text_message(struct ctl_api *api, const struct curlreq_answer *b)
{
	const char *type = NULL;

	curl_easy_getinfo(api->curl, CURLINFO_CONTENT_TYPE, &type);
	if (!type || strncasecmp(type, "text/plain", 10) != 0 || !b->data)
		return NULL;
	size_t len = strcspn(b->data, "\r\n");
	if (len == 0)
		return NULL;
	return ctl_fmt_sanitize(b->data, len > MAX_TEXT_MESSAGE ? MAX_TEXT_MESSAGE : len);
}

/* An answer other than 2xx: the API's message, else the status and a
 * plain-text answer's first line or, for a redirect, where to (not
 * followed: the token would go along). */
static void status_error(struct ctl_api *api, const char *url, long status,
			 const struct curlreq_answer *b, char *err, size_t errlen)
{
	char *msg = error_message(b);
	char *to = NULL;

	/* The agent knows no such path: a --url naming a path of the API, or
	 * a proxy's prefix left out, not a run or stage it does not know. */
	if (msg && status == 404 && strcmp(msg, "no such endpoint") == 0) {
		free(msg);
		msg = ctl_fmt_sanitize(url, strlen(url));
		snprintf(err, errlen,
			 "%s: no such endpoint (is --url or $SLUICE_URL the address the agent "
			 "serves its API under, as in %s?)",
			 msg ? msg : api->base, CTL_DEFAULT_URL);
		free(msg);
		return;
	}
	if (msg) {
		snprintf(err, errlen, "%s", msg);
		free(msg);
		return;
	}
	msg = text_message(api, b);
	if (msg) {
		snprintf(err, errlen, "%s answered HTTP %ld: %s", api->base, status, msg);
		free(msg);
		return;
	}
	if (status >= 300 && status < 400)
		curl_easy_getinfo(api->curl, CURLINFO_REDIRECT_URL, &to);
	msg = to ? ctl_fmt_sanitize(to, strlen(to)) : NULL;
	if (msg)
		snprintf(err, errlen,
			 "%s answered HTTP %ld, a redirect to %s (not followed: give --url or "
			 "$SLUICE_URL the agent's own address)",
			 api->base, status, msg);
	else
		snprintf(err, errlen, "%s answered HTTP %ld", api->base, status);
	free(msg);
}

static void transport_error(struct ctl_api *api, CURLcode rc, const char *errbuf, char *err,
			    size_t errlen)
{
	long os_errno = 0;
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);

	curl_easy_getinfo(api->curl, CURLINFO_OS_ERRNO, &os_errno);
	if (rc == CURLE_COULDNT_CONNECT && os_errno != 0)
		why = strerror((int)os_errno);
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
	    rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_URL_MALFORMAT ||
	    rc == CURLE_UNSUPPORTED_PROTOCOL)
		snprintf(err, errlen, "cannot reach %s: %s", api->base, why);
	else
		snprintf(err, errlen, "request to %s failed: %s", api->base, why);
}

/* post: NULL for a GET, else the body to POST ("" for none). */
static int request(struct ctl_api *api, const char *post, const char *path, json_t **body,
		   char *err, size_t errlen)
{
	struct curlreq_answer b = {.max = MAX_RESPONSE};
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;
	json_error_t jerr;
	long status = 0;
	CURLcode rc;

	*body = NULL;
	if (asprintf(&url, "%s%s", api->base, path) < 0) {
		url = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	curl_easy_setopt(api->curl, CURLOPT_URL, url);
	if (post) {
		curl_easy_setopt(api->curl, CURLOPT_POSTFIELDS, post);
		curl_easy_setopt(api->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(post));
	} else {
		curl_easy_setopt(api->curl, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, api->headers);
	curl_easy_setopt(api->curl, CURLOPT_USERAGENT, "sluicectl/" CTL_VERSION);
	curl_easy_setopt(api->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (api->ca_file)
		curl_easy_setopt(api->curl, CURLOPT_CAINFO, api->ca_file);
	curl_easy_setopt(api->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(api->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(api->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
	curl_easy_setopt(api->curl, CURLOPT_ACCEPT_ENCODING, "");
	curlreq_collect(api->curl, &b);
	curl_easy_setopt(api->curl, CURLOPT_ERRORBUFFER, errbuf);
	rc = curl_easy_perform(api->curl);
	curl_easy_setopt(api->curl, CURLOPT_ERRORBUFFER, NULL);
	if (rc != CURLE_OK) {
		if (b.too_big)
			snprintf(err, errlen, "response from %s is larger than %ld bytes",
				 api->base, MAX_RESPONSE);
		else
			transport_error(api, rc, errbuf, err, errlen);
		goto fail;
	}
	curl_easy_getinfo(api->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		status_error(api, url, status, &b, err, errlen);
		goto fail;
	}
	*body = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
	if (!*body) {
		snprintf(err, errlen, "%s sent a response that is not JSON: %s", api->base,
			 jerr.text);
		goto fail;
	}
	free(url);
	curlreq_answer_clear(&b);
	return 0;
fail:
	free(url);
	curlreq_answer_clear(&b);
	return -1;
}

int ctl_api_get(struct ctl_api *api, const char *path, json_t **body, char *err, size_t errlen)
{
	return request(api, NULL, path, body, err, errlen);
}

int ctl_api_post(struct ctl_api *api, const char *path, json_t **body, char *err, size_t errlen)
{
	return request(api, "", path, body, err, errlen);
}

int ctl_api_post_json(struct ctl_api *api, const char *path, const json_t *payload, json_t **body,
		      char *err, size_t errlen)
{
	char *text = json_dumps(payload, JSON_COMPACT);
	int rc;

	*body = NULL;
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = request(api, text, path, body, err, errlen);
	free(text);
	return rc;
}

struct follow {
	struct ctl_api *api;
	struct ctl_sse sse;
	ctl_sse_cb cb;
	void *arg;
	int done;		       /* cb said the stream ended */
	int failed;		       /* cb failed, or the parser did */
	long status;		       /* of this attempt, once known */
	struct curlreq_answer errbody; /* the body of an answer other than 200 */
	int progress;		       /* events came in this attempt */
};

static int on_event(const char *event, const char *id, const char *data, void *arg)
{
	struct follow *f = arg;
	f->progress = 1;
	return f->cb(event, id, data, f->arg);
}

static size_t on_stream(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct follow *f = userdata;
	size_t n = size * nmemb;

	if (!f->status)
		curl_easy_getinfo(f->api->curl, CURLINFO_RESPONSE_CODE, &f->status);
	if (f->status != 200)
		return curlreq_write(ptr, size, nmemb, &f->errbody);
	int rc = ctl_sse_feed(&f->sse, ptr, n, on_event, f);
	if (rc == 1)
		f->done = 1;
	else if (rc < 0)
		f->failed = 1;
	/* Returning less than n ends the transfer. */
	return rc == 0 ? n : 0;
}

int ctl_api_follow(struct ctl_api *api, const char *path, ctl_sse_cb cb, void *arg, char *err,
		   size_t errlen)
{
	struct follow f = {.api = api, .cb = cb, .arg = arg, .errbody = {.max = MAX_RESPONSE}};
	char *url = NULL;
	int rc = -1, failures = 0;

	if (asprintf(&url, "%s%s", api->base, path) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (!f.done && !f.failed) {
		char errbuf[CURL_ERROR_SIZE] = "";
		char *last = NULL;
		struct curl_slist *headers = NULL;
		/* The request's own headers: the client's, then where to resume. */
		for (struct curl_slist *h = api->headers; h; h = h->next) {
			const char *line = strncmp(h->data, "Accept:", 7) == 0
					       ? "Accept: text/event-stream"
					       : h->data;
			struct curl_slist *next = curl_slist_append(headers, line);
			if (!next)
				goto oom;
			headers = next;
		}
		if (f.sse.last_id[0]) {
			struct curl_slist *next;
			if (asprintf(&last, "Last-Event-ID: %s", f.sse.last_id) < 0 ||
			    !(next = curl_slist_append(headers, last))) {
				free(last);
				curl_slist_free_all(headers);
				goto oom;
			}
			headers = next;
			free(last);
		}
		ctl_sse_reset(&f.sse);
		curlreq_answer_clear(&f.errbody);
		f.status = 0;
		f.progress = 0;
		curl_easy_setopt(api->curl, CURLOPT_URL, url);
		curl_easy_setopt(api->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(api->curl, CURLOPT_USERAGENT, "sluicectl/" CTL_VERSION);
		curl_easy_setopt(api->curl, CURLOPT_PROTOCOLS_STR, "http,https");
		if (api->ca_file)
			curl_easy_setopt(api->curl, CURLOPT_CAINFO, api->ca_file);
		curl_easy_setopt(api->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(api->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
		curl_easy_setopt(api->curl, CURLOPT_TIMEOUT, 0L);
		curl_easy_setopt(api->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(api->curl, CURLOPT_LOW_SPEED_TIME, STREAM_SILENCE_S);
		curl_easy_setopt(api->curl, CURLOPT_ACCEPT_ENCODING, NULL);
		curl_easy_setopt(api->curl, CURLOPT_WRITEFUNCTION, on_stream);
		curl_easy_setopt(api->curl, CURLOPT_WRITEDATA, &f);
		curl_easy_setopt(api->curl, CURLOPT_ERRORBUFFER, errbuf);
		CURLcode res = curl_easy_perform(api->curl);
		curl_easy_setopt(api->curl, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, api->headers);
		curl_easy_setopt(api->curl, CURLOPT_LOW_SPEED_TIME, 0L);
		curl_slist_free_all(headers);
		if (f.done || f.failed)
			break;
		if (!f.status)
			curl_easy_getinfo(api->curl, CURLINFO_RESPONSE_CODE, &f.status);
		/* 503: the agent is up but its Redis is not (either restarting),
		 * which passes as a dropped connection does. */
		if (res == CURLE_OK && f.status != 200 && f.status != 0 && f.status != 503) {
			status_error(api, url, f.status, &f.errbody, err, errlen);
			goto done;
		}
		failures = f.progress ? 1 : failures + 1;
		if (failures >= FOLLOW_ATTEMPTS) {
			if (res != CURLE_OK)
				transport_error(api, res, errbuf, err, errlen);
			else if (f.status == 503)
				status_error(api, url, f.status, &f.errbody, err, errlen);
			else
				snprintf(err, errlen, "%s ended the stream before its end",
					 api->base);
			goto done;
		}
		sleep(1);
	}
	if (f.failed) {
		snprintf(err, errlen,
			 "cannot read the event stream (a line or event over 16 MiB, out of "
			 "memory or a write error)");
		goto done;
	}
	rc = 0;
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
done:
	curlreq_answer_clear(&f.errbody);
	ctl_sse_free(&f.sse);
	free(url);
	return rc;
}
