/* curlreq: common options, header lines and answers of HTTP requests. */
#include "lib/curlreq.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void curlreq_setup(CURL *easy, const char *url, long timeout_ms, struct curl_slist *headers,
		   const char *user_agent, char *errbuf)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
}

int curlreq_header(struct curl_slist **list, const char *fmt, ...)
{
	struct curl_slist *l = NULL;
	char *line;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	l = curl_slist_append(*list, line);
	explicit_bzero(line, (size_t)n);
	free(line);
	if (!l)
		return -1;
	*list = l;
	return 0;
}

size_t curlreq_write(char *data, size_t size, size_t n, void *answer)
{
	struct curlreq_answer *a = answer;
	size_t len = size * n;
	char *grown;

	if (a->len + len > a->max) {
		a->too_big = 1;
		return 0;
	}
	grown = realloc(a->data, a->len + len + 1);
	if (!grown)
		return 0;
	memcpy(grown + a->len, data, len);
	a->data = grown;
	a->len += len;
	a->data[a->len] = '\0';
	return len;
}

void curlreq_collect(CURL *easy, struct curlreq_answer *a)
{
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, curlreq_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, a);
}

void curlreq_answer_clear(struct curlreq_answer *a)
{
	free(a->data);
	a->data = NULL;
	a->len = 0;
	a->too_big = 0;
}
