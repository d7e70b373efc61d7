/* request: the url and headers of an HTTP request written as templates
 * (an http: stage, an http check), expanded with the run's variables.
 *
 * Expansion may not change the request's shape: the url stays one http or
 * https URL without spaces or control characters, and a header value gains
 * no line break (which would let it add a header of its own). Messages
 * show the url as curlev_show_url does, without its query.
 */
#ifndef SLUICE_REQUEST_H
#define SLUICE_REQUEST_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

struct config_doc_node;

/* The methods a request may use, for messages. */
#define REQUEST_METHODS "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

/* Whether method is one of REQUEST_METHODS, in any case. */
int request_method_known(const char *method);
/* Whether a url template is of the form a request takes before it is
 * expanded: http://, https:// or a ${NAME} that holds the start. */
int request_url_form(const char *tmpl);

/* tmpl expanded as a URL (EXPAND_URL) into *url (malloc'd, the caller's to
 * free even on failure) and what messages may show of it into shown. 0, or
 * -1 with err "url: ...". */
int request_url(const char *tmpl, const json_t *vars, char **url, char *shown, size_t shownlen,
		char *err, size_t errlen);

/* Appends each header of headers (name -> template; may be NULL), its
 * value expanded as text, to *list. 0, with *content_type (when not NULL)
 * the expanded value of the last Content-Type header in any case, malloc'd,
 * or NULL when there is none; or -1 with err "headers.NAME: ..." or "out of
 * memory". */
int request_headers(const json_t *headers, const json_t *vars, struct curl_slist **list,
		    char **content_type, char *err, size_t errlen);

/* For each template of the request written at req (may be NULL), as
 * written: its url, each header value, its body, those that are strings:
 * f(node, arg). -1 as soon as f returns -1; 0. */
int request_templates(const struct config_doc_node *req,
		      int (*f)(const struct config_doc_node *n, void *arg), void *arg);

#endif
