/* api: libcurl easy-interface client of the agent's HTTP API. The CLI does
 * one thing at a time, so blocking calls are what it wants. */
#include "ctl/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl/fmt.h"
#include "ctl/version.h"

/* A log page or a run list is far smaller; this only bounds a broken or
 * hostile server. */
#define MAX_RESPONSE	  (64L * 1024 * 1024)
#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 120L

struct ctl_api {
	CURL *curl;
	char *base;
	struct curl_slist *headers;
};

struct buffer {
	char *data;
	size_t len;
	int too_big;
};

struct ctl_api *ctl_api_new(const char *base_url)
{
	struct ctl_api *api = calloc(1, sizeof(*api));
	size_t len = strlen(base_url);
	struct curl_slist *h;

	if (!api)
		return NULL;
	while (len > 0 && base_url[len - 1] == '/')
		len--;
	api->base = strndup(base_url, len);
	api->curl = curl_easy_init();
	if (!api->base || !api->curl)
		goto fail;
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

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *b = userdata;
	size_t n = size * nmemb;
	char *data;

	if (b->len + n > MAX_RESPONSE) {
		b->too_big = 1;
		return 0;
	}
	data = realloc(b->data, b->len + n + 1);
	if (!data)
		return 0;
	memcpy(data + b->len, ptr, n);
	b->data = data;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* The API's {"error": {"message": ...}}, sanitized, or NULL. */
static char *error_message(const struct buffer *b)
{
	json_t *root = b->data ? json_loadb(b->data, b->len, 0, NULL) : NULL;
	const json_t *msg = json_object_get(json_object_get(root, "error"), "message");
	char *s = NULL;

	if (json_is_string(msg) && json_string_length(msg) > 0)
		s = ctl_fmt_sanitize(json_string_value(msg), json_string_length(msg));
	json_decref(root);
	return s;
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
	struct buffer b = {0};
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
	curl_easy_setopt(api->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(api->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(api->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
	curl_easy_setopt(api->curl, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(api->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(api->curl, CURLOPT_WRITEDATA, &b);
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
		char *msg = error_message(&b);
		if (msg)
			snprintf(err, errlen, "%s", msg);
		else
			snprintf(err, errlen, "%s answered HTTP %ld", api->base, status);
		free(msg);
		goto fail;
	}
	*body = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
	if (!*body) {
		snprintf(err, errlen, "%s sent a response that is not JSON: %s", api->base,
			 jerr.text);
		goto fail;
	}
	free(url);
	free(b.data);
	return 0;
fail:
	free(url);
	free(b.data);
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
