/* checklist: hooks and checks, one item at a time on the loop: commands
 * through stages/command.h, HTTP requests through lib/curlev.h, TLS
 * handshakes on a bufferevent_openssl; and the check of their lists in a
 * pipeline file. */
#include "stages/checklist.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config/file.h"
#include "lib/clock.h"
#include "lib/curlev.h"
#include "lib/curlreq.h"
#include "stages/command.h"
#include "stages/expand.h"
#include "stages/request.h"

#define MESSAGE_MAX   1024
#define SHOWN_URL_MAX 256
#define MAX_MIN_DAYS  3650

enum kind { KIND_COMMAND, KIND_HTTP, KIND_TLS };

static const char *const kind_names[] = {"command", "http", "tls"};

struct http_run {
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *want_body;
	struct curlreq_answer answer;
	char shown_url[SHOWN_URL_MAX];
	char errbuf[CURL_ERROR_SIZE];
};

struct tls_run {
	SSL_CTX *ctx;
	struct evdns_getaddrinfo_request *resolving;
	int resolve_pending;
	struct evutil_addrinfo *addrs;
	struct evutil_addrinfo *next_addr;
	evutil_socket_t fd;	  /* connecting, before the handshake */
	struct event *connect_ev; /* fd writable: connected or refused */
	struct bufferevent *bev;  /* the handshake, owning the socket */
	char connect_error[256];
	char label[320]; /* host:port, for messages */
};

struct checklist {
	struct event_base *base;
	json_t *items;
	enum checklist_mode mode;
	json_t *vars;
	char *cwd;
	checklist_line_cb line;
	checklist_item_cb item;
	checklist_done_cb done;
	void *arg;
	struct event *step_ev; /* reports the item that ended, starts the next */
	struct event *timer;   /* the timeout of a TLS item */
	struct curlev *multi;
	struct evdns_base *dns;
	json_t *results;
	int ok;
	size_t next;
	/* The item in flight. */
	const json_t *cur;
	enum kind kind;
	int timeout_ms;
	int64_t started_mono, started_wall, ended_mono;
	int ended, passed;
	char message[MESSAGE_MAX];
	struct command_run *cmd;
	struct http_run http;
	struct tls_run tls;
	/* A cancel from within a callback is carried out once it returns. */
	int in_callback, cancelled;
};

static const char *str(const json_t *item, const char *key)
{
	return json_string_value(json_object_get(item, key));
}

static long long num(const json_t *item, const char *key, long long dflt)
{
	const json_t *v = json_object_get(item, key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

static int has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

static int is_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* "30" or "0.2": a timeout in seconds, for messages. */
static void format_seconds(int ms, char *out, size_t outlen)
{
	snprintf(out, outlen, "%g", ms / 1000.0);
}

/* --- ending an item ----------------------------------------------------- */

static void end_item(struct checklist *c, int passed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The item's outcome; the report follows from the loop, where the item's
 * resources can be freed outside of their own callbacks. */
static void end_item(struct checklist *c, int passed, const char *fmt, ...)
{
	va_list ap;

	if (c->ended)
		return;
	c->ended = 1;
	c->passed = passed;
	c->ended_mono = clock_mono_ms();
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
	evtimer_del(c->timer);
	event_active(c->step_ev, EV_TIMEOUT, 0);
}

static void end_timed_out(struct checklist *c)
{
	char secs[32];

	format_seconds(c->timeout_ms, secs, sizeof(secs));
	end_item(c, 0, "timed out after %s s", secs);
}

/* --- commands ----------------------------------------------------------- */

static void on_cmd_line(const char *line, size_t len, void *arg)
{
	struct checklist *c = arg;

	if (c->line)
		c->line(1, line, len, c->arg);
}

static void on_cmd_exit(const struct process_result *res, const char *last, void *arg)
{
	struct checklist *c = arg;
	const char *sep = last[0] ? ": " : "";

	c->cmd = NULL;
	switch (res->outcome) {
	case PROCESS_EXITED:
		end_item(c, res->exit_code == 0, "exit code %d%s%s", res->exit_code, sep, last);
		break;
	case PROCESS_SIGNALLED:
		end_item(c, 0, "killed by signal %d (%s)%s%s", res->term_signal,
			 strsignal(res->term_signal), sep, last);
		break;
	case PROCESS_TIMED_OUT:
		end_timed_out(c);
		break;
	case PROCESS_CANCELLED:
		end_item(c, 0, "cancelled");
		break;
	case PROCESS_SPAWN_FAILED:
		end_item(c, 0, "%s", res->error);
		break;
	}
}

static int cmd_start(struct checklist *c, char *msg, size_t msglen)
{
	const struct command_spec spec = {.vars = c->vars,
					  .inherit = command_inherited_env,
					  .cwd = c->cwd,
					  .timeout_ms = c->timeout_ms,
					  .line = on_cmd_line,
					  .done = on_cmd_exit,
					  .arg = c};
	char **argv = command_argv(c->cur, c->vars, msg, msglen);

	if (!argv)
		return -1;
	c->cmd = command_start(argv, &spec, msg, msglen);
	return c->cmd ? 0 : -1;
}

static void cmd_stop(struct checklist *c)
{
	command_cancel(c->cmd);
	c->cmd = NULL;
}

/* --- HTTP --------------------------------------------------------------- */

static void on_http_done(CURL *easy, CURLcode rc, void *arg)
{
	struct checklist *c = arg;
	struct http_run *h = &c->http;
	long status = 0, want = (long)num(c->cur, "status", 200);
	/* Messages show the body as written, not expanded: it may hold a
	 * secret's value otherwise. */
	const char *shown_body = str(c->cur, "body");
	int found;

	if (rc == CURLE_OPERATION_TIMEDOUT) {
		end_timed_out(c);
		return;
	}
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && h->answer.too_big)) {
		end_item(c, 0, "%s: %s", h->shown_url,
			 h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
		return;
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != want) {
		end_item(c, 0, "HTTP %ld from %s (expected %ld)", status, h->shown_url, want);
		return;
	}
	if (!h->want_body) {
		end_item(c, 1, "HTTP %ld from %s", status, h->shown_url);
		return;
	}
	found = h->answer.data &&
		memmem(h->answer.data, h->answer.len, h->want_body, strlen(h->want_body)) != NULL;
	if (!found && h->answer.too_big)
		end_item(c, 0, "body does not contain \"%s\" in its first %d bytes", shown_body,
			 CHECKLIST_MAX_BODY);
	else if (!found)
		end_item(c, 0, "body does not contain \"%s\"", shown_body);
	else
		end_item(c, 1, "HTTP %ld from %s, body contains \"%s\"", status, h->shown_url,
			 shown_body);
}

static int http_start(struct checklist *c, char *msg, size_t msglen)
{
	struct http_run *h = &c->http;
	const char *method = str(c->cur, "method");
	const char *body = str(c->cur, "body");
	char why[256];

	if (!method)
		method = "GET";
	if (request_url(str(c->cur, "url"), c->vars, &h->url, h->shown_url, sizeof(h->shown_url),
			msg, msglen) < 0)
		return -1;
	if (body && expand_text(body, c->vars, EXPAND_PLAIN, &h->want_body, why, sizeof(why)) < 0) {
		snprintf(msg, msglen, "body: %s", why);
		return -1;
	}
	if (request_headers(json_object_get(c->cur, "headers"), c->vars, &h->headers, NULL, msg,
			    msglen) < 0)
		return -1;
	if (!c->multi)
		c->multi = curlev_new(c->base);
	h->easy = curl_easy_init();
	if (!c->multi || !h->easy) {
		snprintf(msg, msglen, CURLEV_NO_CLIENT);
		return -1;
	}
	CURL *e = h->easy;
	curlreq_setup(e, h->url, c->timeout_ms, h->headers, "sluice-check", h->errbuf);
	h->answer.max = CHECKLIST_MAX_BODY;
	curlreq_collect(e, &h->answer);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	if (curlev_add(c->multi, e, on_http_done, c) < 0) {
		snprintf(msg, msglen, "cannot start the request to %s", h->shown_url);
		return -1;
	}
	return 0;
}

static void http_stop(struct checklist *c)
{
	struct http_run *h = &c->http;

	if (h->easy) {
		curlev_remove(c->multi, h->easy);
		curl_easy_cleanup(h->easy);
	}
	curl_slist_free_all(h->headers);
	free(h->url);
	free(h->want_body);
	curlreq_answer_clear(&h->answer);
	memset(h, 0, sizeof(*h));
}

/* --- TLS ---------------------------------------------------------------- */

/* "2026-11-29T08:00:00Z", or "?" when the time cannot be read. */
static void format_asn1_time(const ASN1_TIME *t, char *out, size_t outlen)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, outlen, "?");
}

/* The peer certificate, after the handshake: dates first (they hold with
 * or without verification), then trust and the host name, then the days
 * left. */
static void tls_judge(struct checklist *c)
{
	struct tls_run *t = &c->tls;
	SSL *ssl = bufferevent_openssl_get_ssl(t->bev);
	X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	const char *name = str(c->cur, "server_name");
	int min_days = (int)num(c->cur, "min_days", CHECKLIST_DEFAULT_MIN_DAYS);
	int days, secs;
	char until[40], from[40];

	if (!name)
		name = str(c->cur, "host");
	if (!cert) {
		end_item(c, 0, "%s sent no certificate", t->label);
		return;
	}
	format_asn1_time(X509_get0_notAfter(cert), until, sizeof(until));
	format_asn1_time(X509_get0_notBefore(cert), from, sizeof(from));
	if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert))) {
		end_item(c, 0, "cannot read the expiry date of the certificate of %s", t->label);
		return;
	}
	if (days < 0 || secs < 0 || (days == 0 && secs == 0)) {
		end_item(c, 0, "certificate of %s has expired (%s)", t->label, until);
		return;
	}
	int bdays, bsecs;
	if (ASN1_TIME_diff(&bdays, &bsecs, NULL, X509_get0_notBefore(cert)) &&
	    (bdays > 0 || bsecs > 0)) {
		end_item(c, 0, "certificate of %s is not valid before %s", t->label, from);
		return;
	}
	if (json_is_true(json_object_get(c->cur, "verify"))) {
		long vr = SSL_get_verify_result(ssl);
		if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
			end_item(c, 0, "certificate of %s is not valid for %s", t->label, name);
			return;
		}
		if (vr != X509_V_OK) {
			end_item(c, 0, "certificate of %s is not trusted: %s", t->label,
				 X509_verify_cert_error_string(vr));
			return;
		}
	}
	if (days < min_days) {
		end_item(c, 0, "certificate of %s expires in %d day%s (%s); at least %d required",
			 t->label, days, days == 1 ? "" : "s", until, min_days);
		return;
	}
	end_item(c, 1, "certificate of %s expires in %d day%s (%s)", t->label, days,
		 days == 1 ? "" : "s", until);
}

static void on_tls_event(struct bufferevent *bev, short events, void *arg)
{
	struct checklist *c = arg;
	unsigned long e, first = 0;
	char why[256];

	if (events & BEV_EVENT_CONNECTED) {
		tls_judge(c);
		return;
	}
	if (!(events & (BEV_EVENT_ERROR | BEV_EVENT_EOF)))
		return;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (!first)
			first = e;
	if (first && ERR_reason_error_string(first))
		snprintf(why, sizeof(why), "%s", ERR_reason_error_string(first));
	else if (events & BEV_EVENT_EOF || errno == 0)
		snprintf(why, sizeof(why), "the server closed the connection");
	else
		snprintf(why, sizeof(why), "%s", strerror(errno));
	end_item(c, 0, "TLS handshake with %s failed: %s", c->tls.label, why);
}

/* The SSL object of one connection: SNI (never an address) and, when
 * verifying, the name the certificate must be valid for. */
static SSL *tls_new_ssl(struct checklist *c)
{
	SSL *ssl = SSL_new(c->tls.ctx);
	const char *name = str(c->cur, "server_name");
	int ok;

	if (!ssl)
		return NULL;
	if (!name)
		name = str(c->cur, "host");
	ok = is_ip(name) || SSL_set_tlsext_host_name(ssl, name) == 1;
	if (ok && json_is_true(json_object_get(c->cur, "verify"))) {
		if (is_ip(name))
			ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
		else
			ok = SSL_set1_host(ssl, name) == 1;
	}
	if (!ok) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static void tls_connect_next(struct checklist *c);

static void tls_handshake(struct checklist *c)
{
	struct tls_run *t = &c->tls;
	SSL *ssl = tls_new_ssl(c);

	if (ssl)
		t->bev = bufferevent_openssl_socket_new(
		    c->base, t->fd, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!t->bev) {
		SSL_free(ssl);
		evutil_closesocket(t->fd);
		t->fd = -1;
		end_item(c, 0, "cannot set up TLS for %s", t->label);
		return;
	}
	t->fd = -1; /* the bufferevent's now */
	bufferevent_setcb(t->bev, NULL, NULL, on_tls_event, c);
	bufferevent_enable(t->bev, EV_READ | EV_WRITE);
}

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct checklist *c = arg;
	struct tls_run *t = &c->tls;
	int err = 0;
	socklen_t len = sizeof(err);
	(void)what;

	event_free(t->connect_ev);
	t->connect_ev = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		tls_handshake(c);
		return;
	}
	snprintf(t->connect_error, sizeof(t->connect_error), "%s", strerror(err));
	evutil_closesocket(t->fd);
	t->fd = -1;
	tls_connect_next(c);
}

/* Tries the addresses of the host in turn until one accepts the
 * connection; the handshake follows on that one. */
static void tls_connect_next(struct checklist *c)
{
	struct tls_run *t = &c->tls;

	while (t->next_addr) {
		struct evutil_addrinfo *ai = t->next_addr;
		t->next_addr = ai->ai_next;
		t->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (t->fd < 0) {
			snprintf(t->connect_error, sizeof(t->connect_error), "%s", strerror(errno));
			continue;
		}
		if (connect(t->fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) == 0) {
			tls_handshake(c);
			return;
		}
		if (errno == EINPROGRESS) {
			t->connect_ev = event_new(c->base, t->fd, EV_WRITE, on_connect, c);
			if (t->connect_ev && event_add(t->connect_ev, NULL) == 0)
				return;
			snprintf(t->connect_error, sizeof(t->connect_error), "out of memory");
		} else {
			snprintf(t->connect_error, sizeof(t->connect_error), "%s", strerror(errno));
		}
		if (t->connect_ev)
			event_free(t->connect_ev);
		t->connect_ev = NULL;
		evutil_closesocket(t->fd);
		t->fd = -1;
	}
	end_item(c, 0, "cannot connect to %s: %s", t->label,
		 t->connect_error[0] ? t->connect_error : "no address");
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct checklist *c = arg;
	struct tls_run *t = &c->tls;

	if (result == EVUTIL_EAI_CANCEL)
		return;
	t->resolve_pending = 0;
	t->resolving = NULL;
	if (result != 0) {
		end_item(c, 0, "cannot resolve %s: %s", str(c->cur, "host"),
			 evutil_gai_strerror(result));
		return;
	}
	t->addrs = t->next_addr = res;
	tls_connect_next(c);
}

/* Addresses are taken as they are; names are resolved by evdns, which
 * reads /etc/hosts too, so that nothing waits on the loop. */
static int tls_resolve(struct checklist *c, char *msg, size_t msglen)
{
	struct tls_run *t = &c->tls;
	struct evutil_addrinfo hints = {0};
	char port[16];

	snprintf(port, sizeof(port), "%lld", num(c->cur, "port", 443));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	if (is_ip(str(c->cur, "host"))) {
		hints.ai_flags = EVUTIL_AI_NUMERICHOST;
		int rc = evutil_getaddrinfo(str(c->cur, "host"), port, &hints, &t->addrs);
		if (rc != 0) {
			snprintf(msg, msglen, "cannot use the address %s: %s", str(c->cur, "host"),
				 evutil_gai_strerror(rc));
			return -1;
		}
		t->next_addr = t->addrs;
		tls_connect_next(c);
		return 0;
	}
	if (!c->dns)
		c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!c->dns) {
		snprintf(msg, msglen, "cannot set up name resolution");
		return -1;
	}
	/* The answer may come at once (/etc/hosts), from within the call. */
	t->resolve_pending = 1;
	struct evdns_getaddrinfo_request *req =
	    evdns_getaddrinfo(c->dns, str(c->cur, "host"), port, &hints, on_resolved, c);
	if (t->resolve_pending)
		t->resolving = req;
	return 0;
}

/* A relative CA file is in the working directory of the run. */
static char *ca_path(const struct checklist *c, const char *ca)
{
	char *path = config_file_expand(ca), *joined = NULL;

	if (!path || path[0] == '/' || !c->cwd)
		return path;
	if (asprintf(&joined, "%s/%s", c->cwd, path) < 0)
		joined = NULL;
	free(path);
	return joined;
}

static int tls_start(struct checklist *c, char *msg, size_t msglen)
{
	struct tls_run *t = &c->tls;
	const char *host = str(c->cur, "host");
	const char *ca = str(c->cur, "ca");
	long long port = num(c->cur, "port", 443);

	t->fd = -1;
	snprintf(t->label, sizeof(t->label), strchr(host, ':') ? "[%s]:%lld" : "%s:%lld", host,
		 port);
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (!t->ctx) {
		snprintf(msg, msglen, "cannot set up TLS");
		return -1;
	}
	/* The handshake always completes, so that the certificate's dates are
	 * read even when it is not trusted; the verification's result is
	 * judged after. */
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	if (json_is_true(json_object_get(c->cur, "verify"))) {
		if (ca) {
			char *path = ca_path(c, ca);
			const char *why = NULL;
			if (!path)
				why = config_file_expand_error(errno);
			else if (access(path, R_OK) < 0)
				why = strerror(errno);
			else if (SSL_CTX_load_verify_locations(t->ctx, path, NULL) != 1)
				why = "no PEM certificates in it";
			if (why)
				snprintf(msg, msglen, "cannot load the CA file %s: %s",
					 path ? path : ca, why);
			free(path);
			ERR_clear_error();
			if (why)
				return -1;
		} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
			ERR_clear_error();
			snprintf(msg, msglen, "cannot load the system's trusted certificates");
			return -1;
		}
	}
	struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
	return tls_resolve(c, msg, msglen);
}

static void tls_stop(struct checklist *c)
{
	struct tls_run *t = &c->tls;

	if (t->resolving) {
		struct evdns_getaddrinfo_request *req = t->resolving;
		t->resolving = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (t->connect_ev)
		event_free(t->connect_ev);
	if (t->fd >= 0)
		evutil_closesocket(t->fd);
	if (t->bev)
		bufferevent_free(t->bev);
	if (t->addrs)
		evutil_freeaddrinfo(t->addrs);
	SSL_CTX_free(t->ctx);
	ERR_clear_error();
	memset(t, 0, sizeof(*t));
	t->fd = -1;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	end_timed_out(arg);
}

/* --- the list ----------------------------------------------------------- */

static void stop_item(struct checklist *c)
{
	evtimer_del(c->timer);
	cmd_stop(c);
	http_stop(c);
	tls_stop(c);
}

static void checklist_free(struct checklist *c)
{
	stop_item(c);
	curlev_free(c->multi);
	if (c->dns)
		evdns_base_free(c->dns, 0);
	if (c->step_ev)
		event_free(c->step_ev);
	if (c->timer)
		event_free(c->timer);
	json_decref(c->items);
	json_decref(c->vars);
	json_decref(c->results);
	free(c->cwd);
	free(c);
}

/* Calls the line callback with text; 1 when it cancelled the checklist. */
static int say(struct checklist *c, const char *text)
{
	if (!c->line)
		return 0;
	c->in_callback = 1;
	c->line(0, text, strlen(text), c->arg);
	c->in_callback = 0;
	return c->cancelled;
}

static int enum_kind(const char *name)
{
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (name && strcmp(name, kind_names[i]) == 0)
			return (int)i;
	return -1;
}

/* 0, or 1 when a callback cancelled the checklist. */
static int start_item(struct checklist *c, const json_t *item)
{
	char msg[MESSAGE_MAX], text[CHECKLIST_MAX_NAME + 64];
	int rc = 0;

	c->cur = item;
	c->kind = (enum kind)enum_kind(str(item, "kind"));
	c->timeout_ms = (int)num(item, "timeout_ms", CHECKLIST_CHECK_TIMEOUT_MS);
	c->ended = 0;
	c->passed = 0;
	c->message[0] = '\0';
	c->started_mono = clock_mono_ms();
	c->started_wall = clock_now_ms();
	snprintf(text, sizeof(text), "--- %s (%s)", str(item, "name"), kind_names[c->kind]);
	if (say(c, text))
		return 1;
	switch (c->kind) {
	case KIND_COMMAND:
		rc = cmd_start(c, msg, sizeof(msg));
		break;
	case KIND_HTTP:
		rc = http_start(c, msg, sizeof(msg));
		break;
	case KIND_TLS:
		rc = tls_start(c, msg, sizeof(msg));
		break;
	}
	if (rc < 0)
		end_item(c, 0, "%s", msg);
	return 0;
}

static json_t *result_of(const struct checklist *c)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "name", str(c->cur, "name"), "kind",
			 kind_names[c->kind], "status", c->passed ? "passed" : "failed", "message",
			 c->message, "ms", (json_int_t)(c->ended_mono - c->started_mono), "at",
			 (json_int_t)c->started_wall);
}

/* 1 when a callback cancelled the checklist. */
static int report_item(struct checklist *c)
{
	json_t *r = result_of(c);
	char text[CHECKLIST_MAX_NAME + MESSAGE_MAX + 64];

	stop_item(c);
	if (!c->passed)
		c->ok = 0;
	if (r)
		json_array_append(c->results, r);
	snprintf(text, sizeof(text), "--- %s: %s: %s", str(c->cur, "name"),
		 c->passed ? "passed" : "failed", c->message);
	if (say(c, text)) {
		json_decref(r);
		return 1;
	}
	if (c->item && r) {
		c->in_callback = 1;
		c->item(r, c->arg);
		c->in_callback = 0;
	}
	json_decref(r);
	c->cur = NULL;
	return c->cancelled;
}

static void on_step(evutil_socket_t fd, short what, void *arg)
{
	struct checklist *c = arg;
	(void)fd;
	(void)what;

	if (c->cur) {
		int stop = !c->passed && c->mode == CHECKLIST_UNTIL_FAILURE;
		if (report_item(c)) {
			checklist_free(c);
			return;
		}
		if (stop)
			c->next = json_array_size(c->items);
	}
	if (c->next < json_array_size(c->items)) {
		if (start_item(c, json_array_get(c->items, c->next++)))
			checklist_free(c);
		return;
	}
	c->in_callback = 1;
	c->done(c->ok, c->results, c->arg);
	checklist_free(c);
}

/* --- normalized items ---------------------------------------------------- */

static int strings_only(const json_t *v, int allow_empty)
{
	size_t i;
	json_t *s;

	if (json_is_array(v)) {
		if (!allow_empty && json_array_size(v) == 0)
			return 0;
		json_array_foreach(v, i, s)
		{
			if (!json_is_string(s))
				return 0;
		}
		return 1;
	}
	if (json_is_object(v)) {
		const char *k;
		json_object_foreach((json_t *)v, k, s)
		{
			if (!json_is_string(s))
				return 0;
		}
		return 1;
	}
	return 0;
}

static int optional(const json_t *item, const char *key, int (*is)(const json_t *))
{
	const json_t *v = json_object_get(item, key);
	return !v || is(v);
}

static int is_string(const json_t *v)
{
	return json_is_string(v);
}

static int is_integer(const json_t *v)
{
	return json_is_integer(v);
}

static int is_boolean(const json_t *v)
{
	return json_is_boolean(v);
}

/* What the runner relies on in an item; NULL, or what is wrong. */
static const char *item_problem(const json_t *item)
{
	const char *name = str(item, "name");
	long long port;

	if (!json_is_object(item))
		return "not an object";
	if (!name || !*name)
		return "name: required";
	if (!optional(item, "timeout_ms", is_integer) || num(item, "timeout_ms", 1) <= 0 ||
	    num(item, "timeout_ms", 1) > CHECKLIST_MAX_TIMEOUT_MS)
		return "timeout_ms: a positive number of milliseconds";
	switch (enum_kind(str(item, "kind"))) {
	case KIND_COMMAND:
		if (!json_object_get(item, "sh") == !json_object_get(item, "run"))
			return "needs one of run (a list) or sh (a script)";
		if (!optional(item, "sh", is_string) ||
		    (json_object_get(item, "run") &&
		     !strings_only(json_object_get(item, "run"), 0)))
			return "run: a list of strings; sh: a string";
		return NULL;
	case KIND_HTTP:
		if (!str(item, "url"))
			return "url: required";
		if (!optional(item, "status", is_integer) || !optional(item, "body", is_string) ||
		    !optional(item, "method", is_string))
			return "status: an integer; body, method: strings";
		if (json_object_get(item, "headers") &&
		    (!json_is_object(json_object_get(item, "headers")) ||
		     !strings_only(json_object_get(item, "headers"), 1)))
			return "headers: an object of strings";
		return NULL;
	case KIND_TLS:
		port = num(item, "port", 443);
		if (!str(item, "host") || !*str(item, "host"))
			return "host: required";
		if (port < 1 || port > 65535 || !optional(item, "port", is_integer))
			return "port: between 1 and 65535";
		if (!optional(item, "min_days", is_integer) ||
		    !optional(item, "verify", is_boolean) ||
		    !optional(item, "server_name", is_string) || !optional(item, "ca", is_string))
			return "min_days: an integer; verify: a boolean; server_name, ca: strings";
		return NULL;
	}
	return "kind: one of command, http, tls";
}

struct checklist *checklist_start(struct event_base *base, const json_t *items,
				  enum checklist_mode mode, const json_t *vars, const char *cwd,
				  checklist_line_cb line, checklist_item_cb item,
				  checklist_done_cb done, void *arg, char *err, size_t errlen)
{
	struct checklist *c;
	size_t i;
	json_t *it;

	if (!done) {
		snprintf(err, errlen, "a done callback is required");
		return NULL;
	}
	if (!json_is_array(items)) {
		snprintf(err, errlen, "items: expected a list");
		return NULL;
	}
	json_array_foreach(items, i, it)
	{
		const char *why = item_problem(it);
		if (why) {
			snprintf(err, errlen, "items[%zu]: %s", i, why);
			return NULL;
		}
	}
	if (vars && !json_is_object(vars)) {
		snprintf(err, errlen, "vars: expected an object");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->base = base;
	c->mode = mode;
	c->line = line;
	c->item = item;
	c->done = done;
	c->arg = arg;
	c->ok = 1;
	c->tls.fd = -1;
	c->items = json_deep_copy(items);
	c->vars = vars ? json_deep_copy(vars) : json_object();
	c->results = json_array();
	c->step_ev = event_new(base, -1, 0, on_step, c);
	c->timer = evtimer_new(base, on_timer, c);
	if (!c->items || !c->vars || !c->results || !c->step_ev || !c->timer ||
	    (cwd && !(c->cwd = strdup(cwd)))) {
		snprintf(err, errlen, "out of memory");
		checklist_free(c);
		return NULL;
	}
	event_active(c->step_ev, EV_TIMEOUT, 0);
	return c;
}

void checklist_cancel(struct checklist *c)
{
	if (!c)
		return;
	if (c->in_callback) {
		c->cancelled = 1;
		return;
	}
	checklist_free(c);
}

json_t *checklist_rollback_items(const json_t *hooks, const json_t *ran)
{
	json_t *out = json_array();
	size_t i, k;
	json_t *hook;

	if (!out)
		return NULL;
	for (i = json_array_size(ran); i-- > 0;) {
		const json_t *r = json_array_get(ran, i);
		const char *name = str(r, "name");
		const char *status = str(r, "status");
		if (!name || !status || (strcmp(status, "passed") && strcmp(status, "failed")))
			continue;
		json_array_foreach(hooks, k, hook)
		{
			const json_t *rb = json_object_get(hook, "rollback");
			const char *hname = str(hook, "name");
			if (!hname || strcmp(hname, name) != 0 || !json_is_object(rb))
				continue;
			if (json_array_append_new(out, json_deep_copy(rb)) < 0) {
				json_decref(out);
				return NULL;
			}
			break;
		}
	}
	return out;
}

/* --- the lists in a pipeline file --------------------------------------- */

static const char *const check_keys[] = {"name", "http", "tls", "run", "sh", "timeout", NULL};
static const char *const check_kinds[] = {"run", "sh", "http", "tls", NULL};
static const char *const hook_keys[] = {"name", "run", "sh", "timeout", "rollback", NULL};
static const char *const command_kinds[] = {"run", "sh", NULL};
static const char *const rollback_keys[] = {"run", "sh", "timeout", NULL};
static const char *const http_keys[] = {"url",	   "status",  "body", "method",
					"headers", "timeout", NULL};
static const char *const tls_keys[] = {"host", "port",	 "minDays", "serverName",
				       "ca",   "verify", NULL};
static const char *const http_methods[] = {"GET", "HEAD", "POST", NULL};

static int in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

/* A name unique in its list, shown in logs and on the dashboard. */
static int load_name(const struct config_check *ck, const struct config_doc_node *list,
		     const struct config_doc_node *item, json_t *out)
{
	const struct config_doc_node *n;
	const char *name;

	if (config_check_require(ck, item, "name", &n) < 0 ||
	    config_check_string(ck, n, 0, &name) < 0)
		return -1;
	if (strlen(name) > CHECKLIST_MAX_NAME)
		return config_check_fail(ck, n, "longer than %d bytes", CHECKLIST_MAX_NAME);
	if (has_control(name))
		return config_check_fail(ck, n, "holds a control character");
	for (const struct config_doc_node *p = list->first; p && p != item; p = p->next) {
		const struct config_doc_node *other = config_doc_get(p, "name");
		char where[256];
		if (!other || !json_is_string(other->value) ||
		    strcmp(json_string_value(other->value), name) != 0)
			continue;
		config_doc_path(p, where, sizeof(where));
		return config_check_fail(ck, n, "\"%s\" is already the name of %s (line %d)", name,
					 where, p->line);
	}
	return config_check_set(ck, n, out, "name", json_string(name));
}

/* The one key of kinds that map has; NULL after an error when it has none
 * (hint says what else than kinds[0] would do) or several. */
static const struct config_doc_node *load_kind(const struct config_check *ck,
					       const struct config_doc_node *map,
					       const char *const *kinds, const char *names,
					       const char *hint, const char *what)
{
	const struct config_doc_node *found = NULL;

	for (const struct config_doc_node *c = map->first; c; c = c->next) {
		if (!in_list(c->key, kinds))
			continue;
		if (found) {
			config_check_fail_key(
			    ck, c, "only one of %s may be given (this %s already has %s)", names,
			    what, found->key);
			return NULL;
		}
		found = c;
	}
	if (!found)
		config_check_missing(ck, map, kinds[0], hint);
	return found;
}

static int load_command(const struct config_check *ck, const struct config_doc_node *n, json_t *out)
{
	const char *script;
	json_t *argv;

	if (config_check_set(ck, n, out, "kind", json_string("command")) < 0)
		return -1;
	if (strcmp(n->key, "sh") == 0) {
		if (config_check_string(ck, n, 0, &script) < 0)
			return -1;
		return config_check_set(ck, n, out, "sh", json_string(script));
	}
	if (config_check_argv(ck, n, &argv) < 0)
		return -1;
	return config_check_set(ck, n, out, "run", argv);
}

static int load_timeout(const struct config_check *ck, const struct config_doc_node *n,
			long long dflt, json_t *out, const struct config_doc_node *at)
{
	long long ms = dflt;

	if (n && config_check_duration_ms(ck, n, CHECKLIST_MAX_TIMEOUT_MS, &ms) < 0)
		return -1;
	return config_check_set(ck, at, out, "timeout_ms", json_integer(ms));
}

static int load_url(const struct config_check *ck, const struct config_doc_node *h, json_t *out)
{
	const struct config_doc_node *n;
	const char *url;
	char shown[SHOWN_URL_MAX], why[128];

	if (config_check_require(ck, h, "url", &n) < 0 || config_check_string(ck, n, 0, &url) < 0)
		return -1;
	if (has_control(url) || strchr(url, ' '))
		return config_check_fail(ck, n, "a URL holds no spaces or control characters");
	/* A URL that starts with a variable is checked once expanded. */
	if (strncmp(url, "${", 2) != 0) {
		if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
			return config_check_fail(ck, n, "expected an http:// or https:// URL");
		if (curlev_show_url(url, shown, sizeof(shown), why, sizeof(why)) < 0)
			return config_check_fail(ck, n, "%s", why);
	}
	return config_check_set(ck, n, out, "url", json_string(url));
}

/* headers: always there, empty when the check sets none. */
static int load_headers(const struct config_check *ck, const struct config_doc_node *http,
			const struct config_doc_node *n, json_t *out)
{
	json_t *headers = NULL;

	if (n && config_check_headers(ck, n, &headers) < 0)
		return -1;
	return config_check_set(ck, n ? n : http, out, "headers", n ? headers : json_object());
}

/* http: {url, status, body, method, headers, timeout}; a timeout here or
 * on the check, not both. */
static int load_http(const struct config_check *ck, const struct config_doc_node *item,
		     const struct config_doc_node *h, json_t *out)
{
	const struct config_doc_node *n;
	const char *method = "GET", *body;
	long long status = 200;
	char upper[8];
	size_t i;

	if (!json_is_object(h->value))
		return config_check_fail(ck, h, "expected a mapping like {url: ..., status: 200}");
	if (config_check_keys(ck, h, http_keys) < 0 ||
	    config_check_set(ck, h, out, "kind", json_string("http")) < 0 ||
	    load_url(ck, h, out) < 0)
		return -1;
	n = config_doc_get(h, "status");
	if (n && config_check_int(ck, n, 100, 599, &status) < 0)
		return -1;
	if (config_check_set(ck, h, out, "status", json_integer(status)) < 0)
		return -1;
	n = config_doc_get(h, "method");
	if (n) {
		if (config_check_string(ck, n, 0, &method) < 0)
			return -1;
		for (i = 0; i + 1 < sizeof(upper) && method[i]; i++)
			upper[i] = (char)toupper((unsigned char)method[i]);
		upper[i] = '\0';
		if (method[i] || !in_list(upper, http_methods))
			return config_check_fail(ck, n, "expected GET, HEAD or POST");
		method = upper;
	}
	if (config_check_set(ck, h, out, "method", json_string(method)) < 0)
		return -1;
	n = config_doc_get(h, "body");
	if (n) {
		if (config_check_text(ck, n, &body) < 0)
			return -1;
		if (!*body)
			return config_check_fail(ck, n, "must not be empty");
		if (strcmp(method, "HEAD") == 0)
			return config_check_fail_key(ck, n,
						     "the answer to a HEAD request has no body");
		if (config_check_set(ck, n, out, "body", json_string(body)) < 0)
			return -1;
	}
	if (load_headers(ck, h, config_doc_get(h, "headers"), out) < 0)
		return -1;
	n = config_doc_get(h, "timeout");
	if (n && config_doc_get(item, "timeout"))
		return config_check_fail_key(ck, n, "give the timeout once: here or on the check");
	return n ? load_timeout(ck, n, 0, out, n) : 0;
}

/* tls: {host, port, minDays, serverName, ca, verify}. */
static int load_tls(const struct config_check *ck, const struct config_doc_node *t, json_t *out)
{
	const struct config_doc_node *n, *ca, *verify;
	const char *host, *s;
	long long port = 443, days = CHECKLIST_DEFAULT_MIN_DAYS;

	if (!json_is_object(t->value))
		return config_check_fail(ck, t, "expected a mapping like {host: ..., port: 443}");
	if (config_check_keys(ck, t, tls_keys) < 0 ||
	    config_check_set(ck, t, out, "kind", json_string("tls")) < 0 ||
	    config_check_require(ck, t, "host", &n) < 0 || config_check_string(ck, n, 0, &host) < 0)
		return -1;
	if (strpbrk(host, " /?#@") || has_control(host))
		return config_check_fail(ck, n, "expected a host name or an address");
	/* Only an IPv6 address holds a colon: "host:8443" would be looked up
	 * as a name when the check runs, and fail the deployment there. */
	if (strchr(host, ':') && !is_ip(host))
		return config_check_fail(ck, n,
					 "expected a host name or an address (the port goes in "
					 "port:)");
	if (config_check_set(ck, n, out, "host", json_string(host)) < 0)
		return -1;
	n = config_doc_get(t, "port");
	if (n && config_check_int(ck, n, 1, 65535, &port) < 0)
		return -1;
	n = config_doc_get(t, "minDays");
	if (n && config_check_int(ck, n, 0, MAX_MIN_DAYS, &days) < 0)
		return -1;
	if (config_check_set(ck, t, out, "port", json_integer(port)) < 0 ||
	    config_check_set(ck, t, out, "min_days", json_integer(days)) < 0)
		return -1;
	n = config_doc_get(t, "serverName");
	if (n) {
		if (config_check_string(ck, n, 0, &s) < 0)
			return -1;
		if (strpbrk(s, " /?#@:") || has_control(s))
			return config_check_fail(ck, n, "expected a host name or an address");
		if (config_check_set(ck, n, out, "server_name", json_string(s)) < 0)
			return -1;
	}
	verify = config_doc_get(t, "verify");
	if (verify && !json_is_boolean(verify->value))
		return config_check_fail(ck, verify, "expected true or false");
	if (config_check_set(ck, t, out, "verify",
			     json_boolean(!verify || json_is_true(verify->value))) < 0)
		return -1;
	ca = config_doc_get(t, "ca");
	if (ca) {
		if (config_check_string(ck, ca, 0, &s) < 0)
			return -1;
		if (verify && !json_is_true(verify->value))
			return config_check_fail_key(ck, ca, "a CA is only used with verify: true");
		if (config_check_set(ck, ca, out, "ca", json_string(s)) < 0)
			return -1;
	}
	return 0;
}

static int load_check(const struct config_check *ck, const struct config_doc_node *list,
		      const struct config_doc_node *item, json_t *out)
{
	const struct config_doc_node *kind;

	if (!json_is_object(item->value))
		return config_check_fail(ck, item,
					 "expected a mapping like {name: ..., http: {...}}");
	if (config_check_keys(ck, item, check_keys) < 0 || load_name(ck, list, item, out) < 0)
		return -1;
	kind = load_kind(ck, item, check_kinds, "run, sh, http or tls",
			 "or sh: a script, http: a request, tls: a certificate", "check");
	if (!kind)
		return -1;
	if (strcmp(kind->key, "http") == 0) {
		if (load_http(ck, item, kind, out) < 0)
			return -1;
	} else if (strcmp(kind->key, "tls") == 0) {
		if (load_tls(ck, kind, out) < 0)
			return -1;
	} else if (load_command(ck, kind, out) < 0) {
		return -1;
	}
	if (json_object_get(out, "timeout_ms"))
		return 0;
	return load_timeout(ck, config_doc_get(item, "timeout"), CHECKLIST_CHECK_TIMEOUT_MS, out,
			    item);
}

static int load_rollback(const struct config_check *ck, const struct config_doc_node *r,
			 const char *name, json_t *hook)
{
	const struct config_doc_node *kind;
	json_t *out = json_object();
	char *rname = NULL;

	if (config_check_set(ck, r, hook, "rollback", out) < 0)
		return -1;
	if (!json_is_object(r->value))
		return config_check_fail(ck, r, "expected a mapping like {run: [...]}");
	if (config_check_keys(ck, r, rollback_keys) < 0)
		return -1;
	if (asprintf(&rname, "%s%s", name, CHECKLIST_ROLLBACK_NAME_SUFFIX) < 0)
		return config_check_fail(ck, r, "out of memory");
	int rc = config_check_set(ck, r, out, "name", json_string(rname));
	free(rname);
	if (rc < 0)
		return -1;
	kind = load_kind(ck, r, command_kinds, "run or sh", "or sh: a script", "rollback");
	if (!kind || load_command(ck, kind, out) < 0)
		return -1;
	return load_timeout(ck, config_doc_get(r, "timeout"), CHECKLIST_HOOK_TIMEOUT_MS, out, r);
}

static int load_hook(const struct config_check *ck, const struct config_doc_node *list,
		     const struct config_doc_node *item, int allow_rollback, json_t *out)
{
	const struct config_doc_node *kind, *rollback;

	if (!json_is_object(item->value))
		return config_check_fail(ck, item,
					 "expected a mapping like {name: ..., run: [...]}");
	rollback = config_doc_get(item, "rollback");
	if (rollback && !allow_rollback)
		return config_check_fail_key(ck, rollback,
					     "only pre hooks have a rollback (it undoes them when "
					     "the deployment aborts)");
	if (config_check_keys(ck, item, hook_keys) < 0 || load_name(ck, list, item, out) < 0)
		return -1;
	kind = load_kind(ck, item, command_kinds, "run or sh", "or sh: a script", "hook");
	if (!kind || load_command(ck, kind, out) < 0 ||
	    load_timeout(ck, config_doc_get(item, "timeout"), CHECKLIST_HOOK_TIMEOUT_MS, out,
			 item) < 0)
		return -1;
	if (rollback)
		return load_rollback(ck, rollback, str(out, "name"), out);
	return 0;
}

static int load_list(const struct config_check *ck, const struct config_doc_node *n, int hooks,
		     int allow_rollback, json_t **out)
{
	json_t *list;

	*out = NULL;
	if (!json_is_array(n->value))
		return config_check_fail(ck, n, "expected a list of %s",
					 hooks ? "hooks" : "checks");
	if (json_array_size(n->value) > CHECKLIST_MAX_ITEMS)
		return config_check_fail(ck, n, "more than %d %s", CHECKLIST_MAX_ITEMS,
					 hooks ? "hooks" : "checks");
	list = json_array();
	if (!list)
		return config_check_fail(ck, n, "out of memory");
	for (const struct config_doc_node *item = n->first; item; item = item->next) {
		json_t *o = json_object();
		int rc = o ? 0 : config_check_fail(ck, item, "out of memory");
		if (rc == 0)
			rc = hooks ? load_hook(ck, n, item, allow_rollback, o)
				   : load_check(ck, n, item, o);
		if (rc == 0 && json_array_append(list, o) < 0)
			rc = config_check_fail(ck, item, "out of memory");
		json_decref(o);
		if (rc < 0) {
			json_decref(list);
			return -1;
		}
	}
	*out = list;
	return 0;
}

int checklist_load_checks(const struct config_check *ck, const struct config_doc_node *n,
			  json_t **out)
{
	return load_list(ck, n, 0, 0, out);
}

int checklist_load_hooks(const struct config_check *ck, const struct config_doc_node *n,
			 int allow_rollback, json_t **out)
{
	return load_list(ck, n, 1, allow_rollback, out);
}
