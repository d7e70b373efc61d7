/* web: the dashboard's page and assets, from the table embed-web.sh makes. */
#include "agent/web.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <string.h>

#include "lib/httpsend.h"

/* No inline script or style anywhere: the page loads one script and one
 * style sheet from the agent, and talks to the agent's API only. */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
			  "img-src 'self'; connect-src 'self'; base-uri 'none'; "
			  "form-action 'none'; frame-ancestors 'none'";

static const struct {
	const char *ext;
	const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".json", "application/json"},
    {".png", "image/png"},
};

const struct web_asset *web_find(const char *name)
{
	for (const struct web_asset *w = web_assets; w->name; w++) {
		if (strcmp(w->name, name) == 0)
			return w;
	}
	return NULL;
}

const char *web_content_type(const char *name)
{
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}

/* If-None-Match lists entity tags separated by commas, or is "*". It
 * compares them weakly (RFC 9110, 13.1.2): W/"x" matches "x", and a proxy
 * that compresses the answer (nginx's gzip) hands the tag on so. */
static int etag_matches(const char *header, const char *etag)
{
	size_t n = strlen(etag);
	if (!header)
		return 0;
	if (strcmp(header, "*") == 0)
		return 1;
	for (const char *p = header + strspn(header, " \t,"); *p; p += strspn(p, " \t,")) {
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		size_t len = strcspn(p, " \t,");
		if (len == n && strncmp(p, etag, n) == 0)
			return 1;
		p += len;
	}
	return 0;
}

static void send_asset(struct evhttp_request *req, const struct web_asset *w)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "ETag", w->etag);
	/* Names carry no version: browsers revalidate each time, and an
	 * unchanged file costs a 304. */
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "Content-Security-Policy", csp);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	const char *inm =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
	if (etag_matches(inm, w->etag)) {
		evhttp_send_reply(req, 304, "Not Modified", NULL);
		return;
	}
	struct evbuffer *buf = evbuffer_new();
	if (!buf || evbuffer_add_reference(buf, w->data, w->len, NULL, NULL) < 0) {
		if (buf)
			evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_add_header(h, "Content-Type", web_content_type(w->name));
	httpsend_reply(req, 200, "OK", buf);
	evbuffer_free(buf);
}

static void send_not_found(struct evhttp_request *req)
{
	static const char text[] = "not found\n";
	struct evbuffer *buf = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Content-Security-Policy", csp);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	if (buf)
		evbuffer_add(buf, text, sizeof(text) - 1);
	httpsend_reply(req, 404, "Not Found", buf);
	if (buf)
		evbuffer_free(buf);
}

/* A run id as intake makes them, and as the API accepts in its paths. */
static int run_id_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n < 128 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

static const char runs_prefix[] = "/runs/", assets_prefix[] = "/assets/";

static int page_path(const char *path)
{
	return strcmp(path, "/") == 0 ||
	       (strncmp(path, runs_prefix, sizeof(runs_prefix) - 1) == 0 &&
		run_id_ok(path + sizeof(runs_prefix) - 1));
}

int web_path(const char *path)
{
	return page_path(path) || strncmp(path, assets_prefix, sizeof(assets_prefix) - 1) == 0 ||
	       strcmp(path, "/favicon.ico") == 0;
}

int web_get(struct evhttp_request *req, const char *path)
{
	const struct web_asset *w = NULL;
	if (!web_path(path))
		return 0;
	if (page_path(path)) {
		w = web_find("index.html");
	} else if (strcmp(path, "/favicon.ico") == 0) {
		w = web_find("favicon.svg");
	} else {
		const char *name = path + sizeof(assets_prefix) - 1;
		/* The page is served at its own paths only. */
		if (strcmp(name, "index.html") != 0)
			w = web_find(name);
	}
	if (!w) {
		send_not_found(req);
		return 1;
	}
	send_asset(req, w);
	return 1;
}
