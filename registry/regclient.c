/* regclient: blocking requests to a registry, with its token flow. */
#include "registry/regclient.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ctl/fmt.h"
#include "lib/curlev.h"
#include "lib/curlreq.h"

#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 120L
#define MAX_REDIRECTS	  5L
#define MAX_TOKEN_BODY	  (1024 * 1024)
#define SECRET_MAX	  4096
#define USER_AGENT	  "sluice-registry/0.1.0"

struct regclient {
	CURL *curl;
	char *base;   /* as given, without trailing '/' */
	char *origin; /* scheme://host[:port] of base */
	char *show;   /* base for messages */
	char *ca_file;
	char *bearer;	  /* the token sent, from the file or the realm */
	int bearer_fixed; /* from --token-file: never exchanged */
	char *userpwd;	  /* USER:PASSWORD, for Basic and the realm */
};

struct capture {
	struct regclient_response *r;
	struct curlreq_answer body; /* r's body until the transfer ends */
	char *link;		    /* the raw Link header that has rel="next" */
	char *www_auth;		    /* the raw WWW-Authenticate header */
};

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* The first line of path without its line end, trailing blanks removed;
 * malloc'd, or NULL with err. */
static char *read_secret(const char *path, const char *what, char *err, size_t errlen)
{
	char line[SECRET_MAX];
	FILE *f = fopen(path, "re");
	size_t len;

	if (!f) {
		snprintf(err, errlen, "cannot read the %s file %s: %s", what, path,
			 strerror(errno));
		return NULL;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	len = strlen(line);
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	if (len == 0) {
		snprintf(err, errlen, "the %s file %s holds nothing on its first line", what, path);
		return NULL;
	}
	char *s = strdup(line);
	explicit_bzero(line, sizeof(line));
	if (!s)
		snprintf(err, errlen, "out of memory");
	return s;
}

/* scheme://host[:port] of url, malloc'd, or NULL. */
static char *origin_of(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;

	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto done;
	/* CURLU_DEFAULT_PORT: "https://h" and "https://h:443" are one origin. */
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto done;
	if (asprintf(&out, "%s://%s:%s", scheme, host, port) < 0)
		out = NULL;
done:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

struct regclient *regclient_new(const struct regclient_options *o, char *err, size_t errlen)
{
	struct regclient *c = calloc(1, sizeof(*c));
	char show[512];
	size_t len;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (curlev_show_url(o->base_url, show, sizeof(show), err, errlen) < 0)
		goto fail;
	/* "http://h:5000/" reads better without its last '/' in messages. */
	if (show[0] && show[strlen(show) - 1] == '/')
		show[strlen(show) - 1] = '\0';
	len = strlen(o->base_url);
	while (len > 0 && o->base_url[len - 1] == '/')
		len--;
	c->base = strndup(o->base_url, len);
	c->show = strdup(show);
	c->origin = c->base ? origin_of(c->base) : NULL;
	c->curl = curl_easy_init();
	if (!c->base || !c->show || !c->curl) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!c->origin) {
		snprintf(err, errlen, "not a valid URL");
		goto fail;
	}
	if (o->ca_file && !(c->ca_file = strdup(o->ca_file))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (o->token_file) {
		c->bearer = read_secret(o->token_file, "token", err, errlen);
		if (!c->bearer)
			goto fail;
		c->bearer_fixed = 1;
	}
	if (o->user_file) {
		c->userpwd = read_secret(o->user_file, "user", err, errlen);
		if (!c->userpwd)
			goto fail;
		if (!strchr(c->userpwd, ':')) {
			snprintf(err, errlen, "the user file %s must hold USER:PASSWORD",
				 o->user_file);
			goto fail;
		}
	}
	return c;
fail:
	regclient_free(c);
	return NULL;
}

void regclient_free(struct regclient *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->base);
	free(c->origin);
	free(c->show);
	free(c->ca_file);
	wipe_free(c->bearer);
	wipe_free(c->userpwd);
	free(c);
}

const char *regclient_base(const struct regclient *c)
{
	return c->show;
}

char *regclient_escape(struct regclient *c, const char *s)
{
	char *e = curl_easy_escape(c->curl, s, 0);
	char *copy = e ? strdup(e) : NULL;

	curl_free(e);
	return copy;
}

void regclient_response_clear(struct regclient_response *r)
{
	free(r->body);
	free(r->content_type);
	free(r->digest);
	free(r->next);
	memset(r, 0, sizeof(*r));
}

void regclient_status_error(const struct regclient *c, const struct regclient_response *r,
			    const char *method, const char *what, char *err, size_t errlen)
{
	char why[320];

	if (r->error[0])
		snprintf(why, sizeof(why), " (%s)", r->error);
	else
		why[0] = '\0';
	if (r->status == 401 && (c->bearer_fixed || c->userpwd))
		snprintf(err, errlen,
			 "cannot %s: the registry %s refused the credentials (HTTP 401)%s", what,
			 c->show, why);
	else if (r->status == 401)
		snprintf(err, errlen,
			 "cannot %s: the registry %s needs credentials (HTTP 401)%s: give "
			 "--user-file or --token-file",
			 what, c->show, why);
	else if (r->status == 403)
		snprintf(err, errlen, "cannot %s: the registry %s forbids it (HTTP 403)%s", what,
			 c->show, why);
	else if (r->status == 405 && strcmp(method, "DELETE") == 0)
		snprintf(err, errlen,
			 "cannot %s: the registry refuses deletes: enable storage.delete "
			 "(HTTP 405 from %s)%s",
			 what, c->show, why);
	else
		snprintf(err, errlen, "cannot %s: HTTP %ld from the registry %s%s", what, r->status,
			 c->show, why);
}

/* The value of header line "Name: value\r\n" when its name is name, trimmed
 * and malloc'd; NULL otherwise. */
static char *header_value(const char *line, size_t n, const char *name)
{
	size_t nl = strlen(name), end;

	if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return NULL;
	line += nl + 1;
	n -= nl + 1;
	while (n > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		n--;
	}
	end = n;
	while (end > 0 && isspace((unsigned char)line[end - 1]))
		end--;
	return strndup(line, end);
}

static void replace(char **slot, char *value)
{
	free(*slot);
	*slot = value;
}

/* Whether s[0..len) gives the relation "next", as registries write it. */
static int says_next(const char *s, size_t len)
{
	return memmem(s, len, "rel=\"next\"", 10) || memmem(s, len, "rel=next", 8);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct capture *cap = userdata;
	struct regclient_response *r = cap->r;
	size_t n = size * nmemb;
	char *v;

	/* Each response of a redirect chain starts again with a status line. */
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		replace(&r->content_type, NULL);
		replace(&r->digest, NULL);
		replace(&cap->link, NULL);
		replace(&cap->www_auth, NULL);
		return n;
	}
	if ((v = header_value(ptr, n, "Content-Type"))) {
		v[strcspn(v, "; ")] = '\0';
		replace(&r->content_type, v);
	} else if ((v = header_value(ptr, n, "Docker-Content-Digest"))) {
		replace(&r->digest, v);
	} else if ((v = header_value(ptr, n, "Link"))) {
		if (says_next(v, strlen(v)))
			replace(&cap->link, v);
		else
			free(v);
	} else if ((v = header_value(ptr, n, "WWW-Authenticate"))) {
		replace(&cap->www_auth, v);
	}
	return n;
}

/* The registry's first {"errors": [{"code", "message"}]} into r->error. */
static void take_error(struct regclient_response *r)
{
	json_t *root = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	json_t *first = json_array_get(json_object_get(root, "errors"), 0);
	const char *code = json_string_value(json_object_get(first, "code"));
	const char *msg = json_string_value(json_object_get(first, "message"));
	char *clean;

	r->error[0] = '\0';
	if (code || msg) {
		snprintf(r->error, sizeof(r->error), "%s%s%s", code ? code : "",
			 code && msg ? ": " : "", msg ? msg : "");
		clean = ctl_fmt_sanitize(r->error, strlen(r->error));
		if (clean)
			snprintf(r->error, sizeof(r->error), "%s", clean);
		free(clean);
	}
	json_decref(root);
}

static void transport_error(struct regclient *c, CURLcode rc, const char *errbuf, int too_big,
			    size_t max, char *err, size_t errlen)
{
	long os_errno = 0;
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);

	if (too_big) {
		snprintf(err, errlen, "a response from %s is larger than %zu bytes", c->show, max);
		return;
	}
	curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
	if (rc == CURLE_COULDNT_CONNECT && os_errno != 0)
		why = strerror((int)os_errno);
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
	    rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(err, errlen, "cannot reach the registry %s: %s", c->show, why);
	else
		snprintf(err, errlen, "request to the registry %s failed: %s", c->show, why);
}

enum auth_mode { AUTH_REGISTRY, AUTH_REALM };

/* One request to url. For AUTH_REALM only the user's credentials go along;
 * otherwise the bearer token if there is one, else those credentials. */
static int perform(struct regclient *c, const char *method, const char *url, const char *accept,
		   size_t max, enum auth_mode mode, struct regclient_response *r,
		   struct capture *cap, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = NULL;
	CURLcode rc;
	int ok = -1;

	memset(r, 0, sizeof(*r));
	*cap = (struct capture){.r = r, .body = {.max = max}};
	curl_easy_reset(c->curl);
	if (accept && curlreq_header(&headers, "Accept: %s", accept) < 0)
		goto oom;
	if (mode == AUTH_REGISTRY && c->bearer) {
		if (curlreq_header(&headers, "Authorization: Bearer %s", c->bearer) < 0)
			goto oom;
	} else if (c->userpwd) {
		curl_easy_setopt(c->curl, CURLOPT_USERPWD, c->userpwd);
		curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	}
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "DELETE") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		/* Blobs may be served from elsewhere (storage redirects); curl
		 * sends neither our Authorization header nor Basic credentials
		 * to another host. */
		curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c->curl, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
	if (c->ca_file)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
	curlreq_collect(c->curl, &cap->body);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, cap);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	rc = curl_easy_perform(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
	/* The handle keeps no pointer to the credentials after this. */
	curl_easy_setopt(c->curl, CURLOPT_USERPWD, NULL);
	r->body = cap->body.data;
	r->len = cap->body.len;
	cap->body.data = NULL;
	if (rc != CURLE_OK) {
		transport_error(c, rc, errbuf, cap->body.too_big, max, err, errlen);
		regclient_response_clear(r);
		goto done;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status < 200 || r->status > 299)
		take_error(r);
	ok = 0;
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
done:
	curl_slist_free_all(headers);
	return ok;
}

static void capture_clear(struct capture *cap)
{
	free(cap->link);
	free(cap->www_auth);
	cap->link = NULL;
	cap->www_auth = NULL;
}

/* One parameter of a challenge ('realm="x", service="y"'), malloc'd, or NULL. */
static char *challenge_param(const char *ch, const char *name)
{
	size_t nl = strlen(name);
	const char *p = ch;

	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *key = p;
		while (*p && *p != '=' && *p != ',' && *p != ' ')
			p++;
		size_t kl = (size_t)(p - key);
		if (*p != '=')
			continue;
		p++;
		const char *v = p, *end;
		if (*p == '"') {
			v = ++p;
			while (*p && *p != '"')
				p++;
			end = p;
			if (*p)
				p++;
		} else {
			while (*p && *p != ',')
				p++;
			end = p;
		}
		if (kl == nl && strncasecmp(key, name, nl) == 0)
			return strndup(v, (size_t)(end - v));
	}
	return NULL;
}

/* The Docker token flow: asks the challenge's realm for a token for its
 * service and scope (with the user's credentials when there are some) and
 * keeps it as c->bearer. */
static int fetch_token(struct regclient *c, const char *challenge, char *err, size_t errlen)
{
	char *realm = challenge_param(challenge, "realm");
	char *service = challenge_param(challenge, "service");
	char *scope = challenge_param(challenge, "scope");
	char *url = NULL, *es = NULL, *esc = NULL;
	struct regclient_response r;
	struct capture cap;
	json_t *root = NULL;
	const char *token;
	int rc = -1;

	if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0)) {
		snprintf(err, errlen, "the registry %s asks for a token without a usable realm",
			 c->show);
		goto done;
	}
	es = service ? regclient_escape(c, service) : NULL;
	esc = scope ? regclient_escape(c, scope) : NULL;
	if (asprintf(&url, "%s%c%s%s%s%s%s", realm, strchr(realm, '?') ? '&' : '?',
		     es ? "service=" : "", es ? es : "", es && esc ? "&" : "", esc ? "scope=" : "",
		     esc ? esc : "") < 0) {
		url = NULL;
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (perform(c, "GET", url, "application/json", MAX_TOKEN_BODY, AUTH_REALM, &r, &cap, err,
		    errlen) < 0) {
		capture_clear(&cap);
		goto done;
	}
	capture_clear(&cap);
	if (r.status != 200) {
		snprintf(err, errlen, "the token service of %s refused %s (HTTP %ld)", c->show,
			 c->userpwd ? "the user file's credentials" : "an anonymous token",
			 r.status);
		regclient_response_clear(&r);
		goto done;
	}
	root = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	token = json_string_value(json_object_get(root, "token"));
	if (!token)
		token = json_string_value(json_object_get(root, "access_token"));
	if (!token || !*token || strpbrk(token, "\r\n")) {
		snprintf(err, errlen, "the token service of %s sent no token", c->show);
	} else {
		wipe_free(c->bearer);
		c->bearer = strdup(token);
		rc = c->bearer ? 0 : -1;
		if (rc < 0)
			snprintf(err, errlen, "out of memory");
	}
	json_decref(root);
	if (r.body)
		explicit_bzero(r.body, r.len);
	regclient_response_clear(&r);
done:
	free(realm);
	free(service);
	free(scope);
	free(url);
	free(es);
	free(esc);
	return rc;
}

/* The link-value of a Link header that has rel="next", *lt and *gt around
 * its URL: a header may list several ('<a>; rel="prev", <b>; rel="next"'),
 * each up to the next ',' outside its <> and quotes. 0, or -1 when none. */
static int next_link_value(const char *link, const char **lt, const char **gt)
{
	const char *p = link;

	while ((*lt = strchr(p, '<')) && (*gt = strchr(*lt, '>'))) {
		int quoted = 0;

		for (p = *gt + 1; *p && (quoted || *p != ','); p++)
			if (*p == '"')
				quoted = !quoted;
		if (says_next(*gt + 1, (size_t)(p - *gt - 1)))
			return 0;
	}
	return -1;
}

/* The next page's absolute URL from a Link header ('<url>; rel="next"'),
 * resolved against the registry; only the registry's own origin is
 * followed, so that no token goes elsewhere. */
static int take_next(struct regclient *c, const char *link, char **next, char *err, size_t errlen)
{
	const char *lt, *gt;
	CURLU *u = curl_url();
	char *ref = NULL, *abs = NULL, *origin = NULL;
	int rc = -1;

	*next = NULL;
	if (!u || next_link_value(link, &lt, &gt) < 0 ||
	    !(ref = strndup(lt + 1, (size_t)(gt - lt - 1))) ||
	    curl_url_set(u, CURLUPART_URL, c->base, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_URL, ref, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &abs, 0) != CURLUE_OK) {
		snprintf(err, errlen, "the registry %s sent a Link header that is not a URL",
			 c->show);
		goto done;
	}
	origin = origin_of(abs);
	if (!origin || strcmp(origin, c->origin) != 0) {
		snprintf(err, errlen, "the registry %s links its next page to another server",
			 c->show);
		goto done;
	}
	*next = strdup(abs);
	rc = *next ? 0 : -1;
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
done:
	free(ref);
	free(origin);
	curl_free(abs);
	curl_url_cleanup(u);
	return rc;
}

int regclient_request(struct regclient *c, const char *method, const char *target,
		      const char *accept, size_t max, struct regclient_response *r, char *err,
		      size_t errlen)
{
	struct capture cap = {0};
	char *url = NULL, *origin = NULL;
	int rc = -1, tries;

	memset(r, 0, sizeof(*r));
	if (target[0] == '/') {
		if (asprintf(&url, "%s%s", c->base, target) < 0)
			url = NULL;
	} else {
		origin = origin_of(target);
		if (!origin || strcmp(origin, c->origin) != 0) {
			snprintf(err, errlen, "%s is not a URL of the registry %s", target,
				 c->show);
			goto done;
		}
		url = strdup(target);
	}
	if (!url) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	/* A 401 with a Bearer challenge gets one token exchange and one retry:
	 * the challenge names the scope this request needs (pull, delete). */
	for (tries = 0;; tries++) {
		if (perform(c, method, url, accept, max, AUTH_REGISTRY, r, &cap, err, errlen) < 0)
			goto done;
		if (r->status != 401 || tries > 0 || c->bearer_fixed || !cap.www_auth ||
		    strncasecmp(cap.www_auth, "Bearer ", 7) != 0)
			break;
		char *challenge = cap.www_auth;
		cap.www_auth = NULL;
		capture_clear(&cap);
		regclient_response_clear(r);
		int got = fetch_token(c, challenge + 7, err, errlen);
		free(challenge);
		if (got < 0)
			goto done;
	}
	if (cap.link && take_next(c, cap.link, &r->next, err, errlen) < 0) {
		regclient_response_clear(r);
		goto done;
	}
	rc = 0;
done:
	capture_clear(&cap);
	free(url);
	free(origin);
	return rc;
}
