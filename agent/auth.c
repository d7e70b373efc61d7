/* auth: bearer tokens on the API and api.call events for mutating calls. */
#include "agent/auth.h"

#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/agent.h"
#include "agent/http.h"
#include "lib/log.h"

#define TOKEN_HEADER_MAX 512

struct audit {
	struct agent *agent;
	/* The request's completion callback before ours (the metrics' one):
	 * libevent keeps one, so ours calls it on. */
	void (*next_cb)(struct evhttp_request *, void *);
	void *next_arg;
	char caller[TOKENS_NAME_MAX];
	char method[16];
	char run[128];
	char key[128];
	char *path;
};

static int loopback_listen(const char *listen)
{
	return strncmp(listen, "127.", 4) == 0 || strncmp(listen, "[::1]:", 6) == 0 ||
	       strncmp(listen, "localhost:", 10) == 0;
}

struct tokens *auth_read_tokens(const char *path, char *err, size_t errlen)
{
	struct tokens *t = calloc(1, sizeof(*t));

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (tokens_load(path, t, err, errlen) < 0) {
		free(t);
		return NULL;
	}
	return t;
}

/* At start and at each reload: a file of no token is worth a warning. */
static void log_loaded(const struct agent *a)
{
	if (a->tokens->n == 0)
		log_warn("the tokens file holds no token: every API call is refused",
			 LOG_S("file", a->settings.tokens_file));
	log_info("API tokens loaded", LOG_S("file", a->settings.tokens_file),
		 LOG_I("tokens", a->tokens->n), LOG_I("public_reads", a->settings.public_reads));
}

int auth_start(struct agent *a)
{
	if (!a->settings.tokens_file) {
		if (!loopback_listen(a->settings.listen))
			log_warn("the API is open to anyone who can reach it: set api.tokens_file",
				 LOG_S("listen", a->settings.listen));
		return 0;
	}
	char err[512];
	a->tokens = auth_read_tokens(a->settings.tokens_file, err, sizeof(err));
	if (!a->tokens) {
		log_error("cannot load the API tokens", LOG_S("error", err));
		return -1;
	}
	log_loaded(a);
	return 0;
}

void auth_reload(struct agent *a, struct tokens *t)
{
	if (!t) {
		if (a->tokens)
			log_warn("api.tokens_file removed: the API is open now");
		auth_stop(a);
		return;
	}
	auth_stop(a);
	a->tokens = t;
	log_loaded(a);
}

void auth_tokens_free(struct tokens *t)
{
	if (t) {
		tokens_clear(t);
		free(t);
	}
}

void auth_stop(struct agent *a)
{
	auth_tokens_free(a->tokens);
	a->tokens = NULL;
}

static void refuse(struct evhttp_request *req, int status, const char *code, const char *message,
		   const char *challenge)
{
	if (challenge)
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  challenge);
	http_reply_error(req, status, code, message);
}

/* Whether origin ("scheme://host[:port]") is the origin of url. */
static int origin_of(const char *origin, const char *url)
{
	const char *authority = url ? strstr(url, "://") : NULL;
	if (!authority)
		return 0;
	size_t len = (size_t)(authority + 3 - url) + strcspn(authority + 3, "/?#");
	return strlen(origin) == len && strncasecmp(origin, url, len) == 0;
}

int auth_cross_site(const struct agent *a, struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *site = evhttp_find_header(h, "Sec-Fetch-Site");
	if (site)
		return strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0;
	const char *origin = evhttp_find_header(h, "Origin");
	if (!origin)
		return 0; /* not a browser's, or a browser's own navigation */
	const char *host = evhttp_find_header(h, "Host");
	const char *authority = strstr(origin, "://");
	if (host && authority && strcasecmp(authority + 3, host) == 0)
		return 0;
	return !origin_of(origin, a->settings.public_url);
}

int auth_request(struct agent *a, struct evhttp_request *req, enum tokens_role need,
		 const char **caller)
{
	*caller = NULL;
	if (!a->tokens)
		return 0;
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (!h) {
		if (need == TOKENS_NONE)
			return 0;
		refuse(req, 401, "unauthorized",
		       "this call needs a token: send Authorization: Bearer TOKEN",
		       "Bearer realm=\"sluice\"");
		return -1;
	}
	while (*h == ' ')
		h++;
	const struct tokens_entry *e = NULL;
	if (strncasecmp(h, "Bearer ", 7) == 0 && strlen(h) < TOKEN_HEADER_MAX) {
		char token[TOKEN_HEADER_MAX];
		const char *t = h + 7;
		while (*t == ' ')
			t++;
		size_t len = strcspn(t, " \t");
		memcpy(token, t, len);
		token[len] = '\0';
		if (len > 0 && t[len + strspn(t + len, " \t")] == '\0')
			e = tokens_find(a->tokens, token);
		memset(token, 0, sizeof(token));
	}
	if (!e) {
		/* A wrong token is refused even where none is needed: the caller
		 * meant to be someone. */
		refuse(req, 401, "unauthorized", "unknown or malformed bearer token",
		       "Bearer realm=\"sluice\", error=\"invalid_token\"");
		return -1;
	}
	if (e->role < need) {
		char msg[256];
		snprintf(msg, sizeof(msg), "token %s has role %s; this call needs role %s", e->name,
			 tokens_role_name(e->role), tokens_role_name(need));
		refuse(req, 403, "forbidden", msg, NULL);
		return -1;
	}
	*caller = e->name;
	return 0;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "GET";
	}
}

static void on_audit_recorded(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct agent *a = arg;
	(void)r;
	if (!reply || reply->type == REDIS_REPLY_ERROR)
		log_warn("api call not recorded on the events topic",
			 LOG_S("error", err	? err
					: reply ? reply->str
						: "no reply"));
	else if (a->outbox)
		outbox_kick(a->outbox);
}

static void on_complete(struct evhttp_request *req, void *arg)
{
	struct audit *au = arg;
	struct agent *a = au->agent;
	char status[16];
	snprintf(status, sizeof(status), "%d", evhttp_request_get_response_code(req));
	const char *argv[] = {
	    a->settings.key_prefix, au->run, au->key, au->caller, au->method, au->path, status};
	if (!a->stopping && redis_script_run(a->redis, a->scripts.api_call, on_audit_recorded, a, 0,
					     7, argv, NULL) < 0)
		log_warn("api call not recorded on the events topic",
			 LOG_S("error", "script not sent"), LOG_S("path", au->path));
	if (au->next_cb)
		au->next_cb(req, au->next_arg);
	free(au->path);
	free(au);
}

/* The segment of path after prefix, into out ("" when path is elsewhere). */
static void segment_after(const char *path, const char *prefix, char *out, size_t outlen)
{
	size_t n = strlen(prefix);
	out[0] = '\0';
	if (strncmp(path, prefix, n) == 0)
		snprintf(out, outlen, "%.*s", (int)strcspn(path + n, "/"), path + n);
}

void auth_audit(struct agent *a, struct evhttp_request *req, const char *caller, const char *path)
{
	struct audit *au = calloc(1, sizeof(*au));
	if (!au || !(au->path = strdup(path))) {
		free(au);
		log_warn("api call not recorded on the events topic",
			 LOG_S("error", "out of memory"));
		return;
	}
	au->agent = a;
	au->next_cb = req->on_complete_cb;
	au->next_arg = req->on_complete_cb_arg;
	snprintf(au->caller, sizeof(au->caller), "%s", caller ? caller : "");
	snprintf(au->method, sizeof(au->method), "%s",
		 method_name(evhttp_request_get_command(req)));
	segment_after(path, "/api/v1/runs/", au->run, sizeof(au->run));
	/* Keyed like the run's own events, or by pipeline (trigger), so each
	 * lands in order with what it changed. */
	if (au->run[0])
		snprintf(au->key, sizeof(au->key), "%s", au->run);
	else
		segment_after(path, "/api/v1/pipelines/", au->key, sizeof(au->key));
	evhttp_request_set_on_complete_cb(req, on_complete, au);
}
