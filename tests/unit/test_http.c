/* Tests for stages/http: real requests on a real libevent loop against a
 * small Python HTTP server (plain and TLS) started on a free loopback port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/clock.h"
#include "stages/http.h"
#include "tmpdir.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Paths: /flaky/<key> answers 503 twice, then 200; /busy/<key> 503 with
 * Retry-After: 1 once, then 200; /missing 404; /slow answers after 3 s;
 * /echo answers 200 with the request's body and its X-Token and
 * Content-Type headers; /hits/<key> the number of requests <key> had. */
static const char server_py[] =
    "import http.server, socketserver, ssl, sys, time, collections\n"
    "hits = collections.Counter()\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def answer(self, code, body=b'', extra=()):\n"
    "        self.send_response(code)\n"
    "        for k, v in extra: self.send_header(k, v)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def do_any(self):\n"
    "        n = int(self.headers.get('Content-Length') or 0)\n"
    "        body = self.rfile.read(n)\n"
    "        p = self.path.split('?')[0]\n"
    "        if p.startswith('/hits/'): return self.answer(200, str(hits[p[6:]]).encode())\n"
    "        hits[p] += 1\n"
    "        if p.startswith('/flaky/'):\n"
    "            return self.answer(503 if hits[p] <= 2 else 200, b'try again\\n')\n"
    "        if p.startswith('/busy/'):\n"
    "            if hits[p] == 1: return self.answer(503, b'', [('Retry-After', '1')])\n"
    "            return self.answer(200, b'done')\n"
    "        if p == '/missing': return self.answer(404, b'no such thing\\n')\n"
    "        if p == '/slow':\n"
    "            time.sleep(3)\n"
    "            return self.answer(200)\n"
    "        if p.startswith('/echo'):\n"
    "            head = ('%s %s|%s|%s\\n' % (self.command, p, self.headers.get('X-Token'),\n"
    "                    self.headers.get('Content-Type'))).encode()\n"
    "            return self.answer(200, head + body)\n"
    "        self.answer(500)\n"
    "    do_GET = do_POST = do_PUT = do_any\n"
    "class S(socketserver.ThreadingMixIn, http.server.HTTPServer):\n"
    "    daemon_threads = True\n"
    "s = S(('127.0.0.1', 0), H)\n"
    "if len(sys.argv) > 3:\n"
    "    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "    ctx.load_cert_chain(sys.argv[2], sys.argv[3])\n"
    "    s.socket = ctx.wrap_socket(s.socket, server_side=True)\n"
    "open(sys.argv[1] + '.tmp', 'w').write(str(s.server_address[1]))\n"
    "import os; os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "s.serve_forever()\n";

struct server {
	pid_t pid;
	int port;
};

static struct {
	char dir[64];
	char cert[128];
	char key[128];
	struct server plain;
	struct server tls;
	struct event_base *base;
} fx;

struct outcome {
	struct http_result res;
	int exits;
	char lines[64][512];
	int is_body[64];
	int nlines;
};

static void start_server(struct server *s, const char *name, int tls)
{
	char script[128], portfile[128];
	snprintf(script, sizeof(script), "%s/server.py", fx.dir);
	snprintf(portfile, sizeof(portfile), "%s/%s.port", fx.dir, name);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		if (tls)
			execlp("python3", "python3", script, portfile, fx.cert, fx.key,
			       (char *)NULL);
		else
			execlp("python3", "python3", script, portfile, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(portfile, "r");
		if (f) {
			int ok = fscanf(f, "%d", &s->port) == 1;
			fclose(f);
			if (ok)
				return;
		}
		usleep(25000);
	}
	fail_msg("the test server did not start");
}

static int group_setup(void **state)
{
	char cmd[512];
	(void)state;
	if (tmpdir_make(fx.dir, sizeof(fx.dir), "sluice-http") < 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "%s/server.py", fx.dir);
	FILE *f = fopen(cmd, "w");
	if (!f)
		return -1;
	fputs(server_py, f);
	fclose(f);
	snprintf(fx.cert, sizeof(fx.cert), "%s/cert.pem", fx.dir);
	snprintf(fx.key, sizeof(fx.key), "%s/key.pem", fx.dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
		 "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s 2>/dev/null",
		 fx.key, fx.cert);
	if (system(cmd) != 0)
		return -1;
	start_server(&fx.plain, "plain", 0);
	start_server(&fx.tls, "tls", 1);
	fx.base = event_base_new();
	return fx.base ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	struct server *all[] = {&fx.plain, &fx.tls};
	for (size_t i = 0; i < 2; i++) {
		if (all[i]->pid > 0) {
			kill(all[i]->pid, SIGTERM);
			waitpid(all[i]->pid, NULL, 0);
		}
	}
	event_base_free(fx.base);
	tmpdir_remove(fx.dir);
	return 0;
}

static void on_line(enum http_line_kind k, const char *line, size_t len, void *arg)
{
	struct outcome *o = arg;
	if (o->nlines < 64) {
		snprintf(o->lines[o->nlines], sizeof(o->lines[0]), "%.*s", (int)len, line);
		o->is_body[o->nlines] = k == HTTP_LINE_BODY;
		o->nlines++;
	}
}

static void on_exit_cb(const struct http_result *r, void *arg)
{
	struct outcome *o = arg;
	o->res = *r;
	o->exits++;
	event_base_loopbreak(fx.base);
}

/* Runs one request to its end; def is JSON text. */
static void run(const char *def_text, const json_t *vars, int timeout_ms, struct outcome *o)
{
	char err[256] = "";
	json_t *def = json_loads(def_text, 0, NULL);
	assert_non_null(def);
	memset(o, 0, sizeof(*o));
	struct http *h =
	    http_start(fx.base, def, vars, timeout_ms, on_line, on_exit_cb, o, err, sizeof(err));
	json_decref(def);
	if (!h)
		fail_msg("http_start: %s", err);
	event_base_dispatch(fx.base);
	assert_int_equal(o->exits, 1);
}

static char *url(const struct server *s, const char *scheme, const char *path)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "%s://127.0.0.1:%d%s", scheme, s->port, path);
	return buf;
}

static int hits(const char *key)
{
	struct outcome o;
	char def[512];
	snprintf(def, sizeof(def), "{\"url\": \"http://127.0.0.1:%d/hits/%s\", \"retries\": 0}",
		 fx.plain.port, key);
	run(def, NULL, 0, &o);
	for (int i = 0; i < o.nlines; i++)
		if (o.is_body[i])
			return atoi(o.lines[i]);
	return -1;
}

static int has_line(const struct outcome *o, const char *text)
{
	for (int i = 0; i < o->nlines; i++)
		if (strstr(o->lines[i], text))
			return 1;
	return 0;
}

static void test_503_is_retried_until_it_succeeds(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 3, \"backoff_ms\": 20}",
		 url(&fx.plain, "http", "/flaky/a"));
	run(def, NULL, 0, &o);
	assert_int_equal(o.res.outcome, HTTP_SUCCEEDED);
	assert_int_equal(o.res.status, 200);
	assert_int_equal(o.res.attempts, 3);
	assert_true(has_line(&o, "HTTP 503 from http://127.0.0.1"));
	assert_true(has_line(&o, "retrying in 20 ms"));
	assert_true(has_line(&o, "retrying in 40 ms"));
	assert_true(has_line(&o, "try again"));
	assert_int_equal(hits("/flaky/a"), 3);
}

static void test_503_fails_when_retries_run_out(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 1, \"backoff_ms\": 10}",
		 url(&fx.plain, "http", "/flaky/b"));
	run(def, NULL, 0, &o);
	assert_int_equal(o.res.outcome, HTTP_FAILED);
	snprintf(def, sizeof(def), "HTTP 503 from http://127.0.0.1:%d/flaky/b (after 2 attempts)",
		 fx.plain.port);
	assert_string_equal(o.res.error, def);
}

static void test_404_fails_at_once(void **state)
{
	struct outcome o;
	char def[512], want[128];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 3, \"backoff_ms\": 10}",
		 url(&fx.plain, "http", "/missing?token=abc"));
	run(def, NULL, 0, &o);
	assert_int_equal(o.res.outcome, HTTP_FAILED);
	assert_int_equal(o.res.attempts, 1);
	assert_int_equal(o.res.status, 404);
	/* The query is not shown: it may carry credentials. */
	snprintf(want, sizeof(want), "HTTP 404 from http://127.0.0.1:%d/missing", fx.plain.port);
	assert_string_equal(o.res.error, want);
	assert_true(has_line(&o, "no such thing"));
	assert_int_equal(hits("/missing"), 1);
}

static void test_retry_after_is_honoured(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 2, \"backoff_ms\": 10}",
		 url(&fx.plain, "http", "/busy/a"));
	int64_t t0 = clock_mono_ms();
	run(def, NULL, 0, &o);
	int64_t took = clock_mono_ms() - t0;
	assert_int_equal(o.res.outcome, HTTP_SUCCEEDED);
	assert_int_equal(o.res.attempts, 2);
	assert_true(has_line(&o, "retrying in 1000 ms"));
	assert_true(took >= 1000);
}

/* A back-off of 25 days, which a stage may have (up to 30), is more than
 * an int holds: it is capped, never a negative delay that retries at once. */
static void test_a_back_off_of_days_waits_its_cap(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def),
		 "{\"url\": \"%s\", \"retries\": 3, \"backoff_ms\": 2160000000, "
		 "\"timeout_ms\": 2160000000}",
		 url(&fx.plain, "http", "/flaky/days"));
	run(def, NULL, 300, &o);
	assert_int_equal(o.res.outcome, HTTP_TIMED_OUT);
	assert_int_equal(o.res.attempts, 1);
	assert_true(has_line(&o, "retrying in 600000 ms"));
}

static void test_attempt_timeout_fails_with_the_time(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 0, \"timeout_ms\": 300}",
		 url(&fx.plain, "http", "/slow"));
	run(def, NULL, 0, &o);
	assert_int_equal(o.res.outcome, HTTP_FAILED);
	assert_string_equal(o.res.error, "timeout after 300 ms");
}

static void test_stage_timeout_ends_as_timed_out(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 0}",
		 url(&fx.plain, "http", "/slow"));
	int64_t t0 = clock_mono_ms();
	run(def, NULL, 200, &o);
	assert_int_equal(o.res.outcome, HTTP_TIMED_OUT);
	assert_true(clock_mono_ms() - t0 < 2000);
}

static void on_cancel_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	http_cancel(arg);
}

static void test_cancel_ends_as_cancelled(void **state)
{
	struct outcome o;
	char def[512], err[256];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\"}", url(&fx.plain, "http", "/slow"));
	json_t *d = json_loads(def, 0, NULL);
	memset(&o, 0, sizeof(o));
	struct http *h = http_start(fx.base, d, NULL, 0, on_line, on_exit_cb, &o, err, sizeof(err));
	json_decref(d);
	assert_non_null(h);
	struct event *t = evtimer_new(fx.base, on_cancel_timer, h);
	struct timeval tv = {0, 100000};
	evtimer_add(t, &tv);
	event_base_dispatch(fx.base);
	event_free(t);
	assert_int_equal(o.exits, 1);
	assert_int_equal(o.res.outcome, HTTP_CANCELLED);
}

static void test_templates_escape_for_json_and_url(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	json_t *vars = json_pack("{s:s, s:s}", "REF", "feature/a b?x=1", "TOKEN", "t0k\"en");
	snprintf(def, sizeof(def),
		 "{\"method\": \"POST\", \"url\": \"http://127.0.0.1:%d/echo/${REF}\","
		 " \"headers\": {\"X-Token\": \"${TOKEN}\"},"
		 " \"body\": \"{\\\"ref\\\": \\\"${REF}\\\", \\\"t\\\": \\\"${TOKEN}\\\"}\"}",
		 fx.plain.port);
	run(def, vars, 0, &o);
	json_decref(vars);
	assert_int_equal(o.res.outcome, HTTP_SUCCEEDED);
	assert_true(has_line(&o, "POST /echo/feature%2Fa%20b%3Fx%3D1|t0k\"en|application/json"));
	assert_true(has_line(&o, "{\"ref\": \"feature/a b?x=1\", \"t\": \"t0k\\\"en\"}"));
}

static void test_bad_requests_are_refused_before_sending(void **state)
{
	char err[256];
	struct outcome o;
	(void)state;
	json_t *vars = json_pack("{s:s}", "V", "a\r\nX-Evil: 1");
	json_t *d = json_loads("{\"url\": \"http://127.0.0.1:1/\", \"headers\": {\"X\": \"${V}\"}}",
			       0, NULL);
	assert_null(http_start(fx.base, d, vars, 0, on_line, on_exit_cb, &o, err, sizeof(err)));
	assert_string_equal(err, "headers.X: the value holds a line break");
	json_decref(d);
	d = json_loads("{\"url\": \"ftp://127.0.0.1/x\"}", 0, NULL);
	assert_null(http_start(fx.base, d, vars, 0, on_line, on_exit_cb, &o, err, sizeof(err)));
	assert_string_equal(err, "url: only http and https are allowed");
	json_decref(d);
	d = json_loads("{\"url\": \"http://127.0.0.1/${NOPE}\"}", 0, NULL);
	assert_null(http_start(fx.base, d, vars, 0, on_line, on_exit_cb, &o, err, sizeof(err)));
	assert_string_equal(err, "url: undefined variable \"NOPE\"");
	json_decref(d);
	json_decref(vars);
}

static void test_self_signed_tls_is_refused_without_its_ca(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"retries\": 2, \"backoff_ms\": 10}",
		 url(&fx.tls, "https", "/echo"));
	run(def, NULL, 0, &o);
	assert_int_equal(o.res.outcome, HTTP_FAILED);
	/* A certificate problem is not retried. */
	assert_int_equal(o.res.attempts, 1);
	assert_true(strncmp(o.res.error, "TLS: certificate verify failed", 30) == 0);
}

static void test_self_signed_tls_is_accepted_with_its_ca_file(void **state)
{
	struct outcome o;
	char def[512];
	(void)state;
	snprintf(def, sizeof(def), "{\"url\": \"%s\", \"ca_file\": \"%s\"}",
		 url(&fx.tls, "https", "/echo"), fx.cert);
	run(def, NULL, 0, &o);
	assert_int_equal(o.res.outcome, HTTP_SUCCEEDED);
	assert_true(has_line(&o, "GET /echo"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_503_is_retried_until_it_succeeds),
	    cmocka_unit_test(test_503_fails_when_retries_run_out),
	    cmocka_unit_test(test_404_fails_at_once),
	    cmocka_unit_test(test_retry_after_is_honoured),
	    cmocka_unit_test(test_a_back_off_of_days_waits_its_cap),
	    cmocka_unit_test(test_attempt_timeout_fails_with_the_time),
	    cmocka_unit_test(test_stage_timeout_ends_as_timed_out),
	    cmocka_unit_test(test_cancel_ends_as_cancelled),
	    cmocka_unit_test(test_templates_escape_for_json_and_url),
	    cmocka_unit_test(test_bad_requests_are_refused_before_sending),
	    cmocka_unit_test(test_self_signed_tls_is_refused_without_its_ca),
	    cmocka_unit_test(test_self_signed_tls_is_accepted_with_its_ca_file),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
