/* github_api: a POST to GitHub's REST API through curlev. */
#include "agent/github_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/curlreq.h"

struct github_api_call {
	struct curlev *multi;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *json;
	char errbuf[CURL_ERROR_SIZE];
	size_t body_len;
	struct github_api_reply reply;
	github_api_cb cb;
	void *arg;
};

static void call_free(struct github_api_call *c)
{
	if (c->easy)
		curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->headers);
	free(c->url);
	free(c->json);
	free(c);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct github_api_call *c = arg;
	size_t len = size * n;
	size_t room = sizeof(c->reply.body) - 1 - c->body_len;
	size_t keep = len < room ? len : room;

	memcpy(c->reply.body + c->body_len, data, keep);
	c->body_len += keep;
	c->reply.body[c->body_len] = '\0';
	return len;
}

/* The integer value of header line "name: value", or -1 when the line is
 * another header or the value is not a plain non-negative integer. */
static long long header_int(const char *line, size_t len, const char *name)
{
	size_t nlen = strlen(name);
	char value[32];

	if (len <= nlen + 1 || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return -1;
	size_t vlen = len - nlen - 1;
	if (vlen >= sizeof(value))
		return -1;
	memcpy(value, line + nlen + 1, vlen);
	value[vlen] = '\0';
	char *p = value + strspn(value, " \t"), *end;
	long long v = strtoll(p, &end, 10);
	end += strspn(end, " \t\r\n");
	return end == p || *end || v < 0 ? -1 : v;
}

/* Retry-After in seconds: GitHub sends no HTTP-date form. A status line
 * starts a response afresh (after a redirect or 100 Continue). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct github_api_call *c = arg;
	size_t len = size * n;
	long long v;

	if (len > 5 && strncmp(data, "HTTP/", 5) == 0) {
		c->reply.retry_after_ms = -1;
		c->reply.ratelimit_remaining = -1;
		c->reply.ratelimit_reset_s = -1;
	} else if ((v = header_int(data, len, "retry-after")) >= 0) {
		c->reply.retry_after_ms = v * 1000;
	} else if ((v = header_int(data, len, "x-ratelimit-remaining")) >= 0) {
		c->reply.ratelimit_remaining = v;
	} else if ((v = header_int(data, len, "x-ratelimit-reset")) >= 0) {
		c->reply.ratelimit_reset_s = v;
	}
	return len;
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct github_api_call *c = arg;

	if (rc == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &c->reply.status);
	else
		snprintf(c->reply.error, sizeof(c->reply.error), "%s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	c->cb(&c->reply, c->arg);
	call_free(c);
}

static int add_header(struct github_api_call *c, const char *line)
{
	struct curl_slist *l = curl_slist_append(c->headers, line);

	if (!l)
		return -1;
	c->headers = l;
	return 0;
}

struct github_api_call *github_api_post(struct curlev *m, const char *api_url, const char *path,
					const char *token, const char *json, int timeout_ms,
					github_api_cb cb, void *arg)
{
	struct github_api_call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->multi = m;
	c->cb = cb;
	c->arg = arg;
	c->reply.retry_after_ms = -1;
	c->reply.ratelimit_remaining = -1;
	c->reply.ratelimit_reset_s = -1;
	c->easy = curl_easy_init();
	c->json = strdup(json);
	size_t n = strlen(api_url) + strlen(path) + 1;
	c->url = malloc(n);
	if (!c->easy || !c->json || !c->url)
		goto fail;
	snprintf(c->url, n, "%s%s", api_url, path);
	/* The header list holds the only other copy of the token. */
	if (curlreq_header(&c->headers, "Authorization: Bearer %s", token) < 0 ||
	    add_header(c, "Accept: application/vnd.github+json") < 0 ||
	    add_header(c, "X-GitHub-Api-Version: " GITHUB_API_VERSION) < 0 ||
	    add_header(c, "Content-Type: application/json") < 0 || add_header(c, "Expect:") < 0)
		goto fail;

	CURL *e = c->easy;
	curlreq_setup(e, c->url, timeout_ms, c->headers, "sluice", c->errbuf);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->json);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(c->json));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	if (curlev_add(m, e, on_done, c) < 0)
		goto fail;
	return c;
fail:
	call_free(c);
	return NULL;
}

void github_api_cancel(struct github_api_call *c)
{
	if (!c)
		return;
	curlev_remove(c->multi, c->easy);
	call_free(c);
}
