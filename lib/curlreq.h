/* curlreq: what sluice's HTTP requests have in common, whichever way they
 * are sent (lib/curlev.h on the loop, or a blocking client).
 *
 * The options every request of a stage, check, provider or notification
 * sets: http and https only, no redirects, the peer's certificate and name
 * verified, no signals, a whole-transfer timeout. Header lines that may
 * carry a credential. The answer collected in memory up to a limit: a
 * longer one stops the transfer (CURLE_WRITE_ERROR) and says so in
 * too_big.
 */
#ifndef SLUICE_CURLREQ_H
#define SLUICE_CURLREQ_H

#include <curl/curl.h>
#include <stddef.h>

struct curlreq_answer {
	char *data; /* NUL-terminated; NULL until something arrived */
	size_t len;
	size_t max;
	int too_big;
};

/* Sets url, the protocols, no redirects, TLS verification, no signals,
 * timeout_ms, headers (may be NULL), user_agent and errbuf
 * (CURL_ERROR_SIZE bytes; may be NULL). curl copies url and user_agent;
 * headers and errbuf must outlive the transfer. */
void curlreq_setup(CURL *easy, const char *url, long timeout_ms, struct curl_slist *headers,
		   const char *user_agent, char *errbuf);

/* Appends the header line fmt makes ("Accept: %s") to *list (unchanged on
 * failure). The line is wiped once curl has its copy: it may carry a
 * credential. 0, or -1 when out of memory. */
int curlreq_header(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Collects the answer into a (as CURLOPT_WRITEDATA) up to a->max bytes. */
void curlreq_collect(CURL *easy, struct curlreq_answer *a);
/* The write function curlreq_collect sets, for one that hands on to it. */
size_t curlreq_write(char *data, size_t size, size_t n, void *answer);
/* Frees what was collected; max stays. */
void curlreq_answer_clear(struct curlreq_answer *a);

#endif
