/* web: the dashboard, served by the agent from assets compiled into it
 * (tools/embed-web.sh turns agent/web/ into the table web_assets).
 *
 * "/" and "/runs/{id}" answer the page, "/assets/{name}" the files it loads;
 * every answer carries a strong ETag (a matching If-None-Match gets 304), a
 * Content-Type by file extension and a Content-Security-Policy that allows
 * scripts, styles and requests from the agent's own origin only.
 */
#ifndef SLUICE_WEB_H
#define SLUICE_WEB_H

#include <event2/http.h>
#include <stddef.h>

struct web_asset {
	const char *name; /* file name, no directory */
	const char *etag; /* quoted, as sent */
	const unsigned char *data;
	size_t len;
};

/* Generated; the entry after the last has name NULL. */
extern const struct web_asset web_assets[];

/* The asset called name, or NULL. */
const struct web_asset *web_find(const char *name);
/* The Content-Type for a file name, by its extension. */
const char *web_content_type(const char *name);
/* Whether path is one of the dashboard's: the page's, an asset's or the
 * favicon's (an asset that does not exist included). */
int web_path(const char *path);
/* Answers a GET of path when it is one of the dashboard's; returns 1 when it
 * answered, 0 when path is not the dashboard's. */
int web_get(struct evhttp_request *req, const char *path);

#endif
