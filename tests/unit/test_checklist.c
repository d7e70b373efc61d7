/* Tests for stages/checklist: hooks and checks run on a real libevent loop
 * against real servers: commands, an HTTP server on the test's own loop
 * (apistub.h), a Python TLS server presenting certificates made here with
 * the openssl CLI (a test CA; leaves valid for 365 days, for 3 days, and
 * one that expired in 2020), a port that accepts connections and never
 * answers, and a closed port. Then the lists' check in a pipeline file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "apistub.h"
#include "config/check.h"
#include "config/doc.h"
#include "lib/clock.h"
#include "stages/checklist.h"
#include "stages/process.h"
#include "tmpdir.h"

#include <event2/event.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* One listener per "cert:key" argument, each on its own port; a connection
 * gets the handshake, then is held until the client closes it. */
static const char tls_server_py[] =
    "import os, socket, ssl, sys, threading\n"
    "def hold(conn, ctx):\n"
    "    try:\n"
    "        s = ctx.wrap_socket(conn, server_side=True)\n"
    "        s.recv(1)\n"
    "    except Exception:\n"
    "        pass\n"
    "    finally:\n"
    "        conn.close()\n"
    "def serve(ls, ctx):\n"
    "    while True:\n"
    "        conn, _ = ls.accept()\n"
    "        threading.Thread(target=hold, args=(conn, ctx), daemon=True).start()\n"
    "ports = []\n"
    "for pair in sys.argv[2:]:\n"
    "    cert, key = pair.split(':')\n"
    "    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "    ctx.load_cert_chain(cert, key)\n"
    "    ls = socket.socket()\n"
    "    ls.bind(('127.0.0.1', 0))\n"
    "    ls.listen(16)\n"
    "    ports.append(ls.getsockname()[1])\n"
    "    threading.Thread(target=serve, args=(ls, ctx), daemon=True).start()\n"
    "open(sys.argv[1] + '.tmp', 'w').write(' '.join(map(str, ports)))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "threading.Event().wait()\n";

/* A test CA and the leaves it signs (openssl ca sets any validity period,
 * past ones included). */
static const char ca_cnf[] = "[req]\n"
			     "distinguished_name = dn\n"
			     "x509_extensions = v3_ca\n"
			     "prompt = no\n"
			     "[dn]\n"
			     "CN = sluice test CA\n"
			     "[v3_ca]\n"
			     "basicConstraints = critical,CA:TRUE\n"
			     "keyUsage = critical,keyCertSign,cRLSign\n"
			     "subjectKeyIdentifier = hash\n"
			     "[ca]\n"
			     "default_ca = test\n"
			     "[test]\n"
			     "database = index.txt\n"
			     "new_certs_dir = .\n"
			     "serial = serial\n"
			     "default_md = sha256\n"
			     "policy = any\n"
			     "unique_subject = no\n"
			     "[any]\n"
			     "commonName = supplied\n"
			     "[leaf]\n"
			     "basicConstraints = CA:FALSE\n"
			     "subjectAltName = IP:127.0.0.1,DNS:localhost\n";

enum { TLS_VALID, TLS_SHORT, TLS_EXPIRED, TLS_N };

static struct {
	char dir[64];
	struct event_base *base;
	struct apistub http;
	struct process *tls; /* the TLS server, a child like any other */
	int tls_port[TLS_N];
	int silent_fd; /* listens, never accepts */
	int silent_port;
	int closed_port;
} fx;

struct outcome {
	int done_calls;
	int ok;
	json_t *results;
	int items; /* item callbacks */
	char log[16384];
	size_t loglen;
};

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int make_certs(void)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/ca.cnf", fx.dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(ca_cnf, f);
	fclose(f);
	const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
	const char *sign = "openssl ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key "
			   "-extensions leaf -in leaf.csr";
	return sh("(cd %s && : > index.txt && echo 01 > serial && "
		  "openssl req -x509 -config ca.cnf %s -days 3650 -keyout ca.key -out ca.pem && "
		  "openssl req -new -config ca.cnf %s -subj /CN=localhost -keyout leaf.key "
		  "-out leaf.csr && "
		  "%s -days 365 -out valid.pem && %s -days 3 -out short.pem && "
		  "%s -startdate 20200101000000Z -enddate 20200102000000Z -out expired.pem) "
		  ">/dev/null 2>&1",
		  fx.dir, key, key, sign, sign, sign) == 0
		   ? 0
		   : -1;
}

static void on_server_exit(const struct process_result *r, void *arg)
{
	(void)r;
	(void)arg;
	fx.tls = NULL;
	event_base_loopbreak(fx.base);
}

/* Through stages/process.h, as every child of a process that uses it. */
static int start_tls_server(void)
{
	char script[128], portfile[128], pairs[TLS_N][160];
	static const char *const names[TLS_N] = {"valid", "short", "expired"};
	extern char **environ;

	snprintf(script, sizeof(script), "%s/tls_server.py", fx.dir);
	snprintf(portfile, sizeof(portfile), "%s/tls.ports", fx.dir);
	FILE *f = fopen(script, "w");
	if (!f)
		return -1;
	fputs(tls_server_py, f);
	fclose(f);
	for (int i = 0; i < TLS_N; i++)
		snprintf(pairs[i], sizeof(pairs[i]), "%s/%s.pem:%s/leaf.key", fx.dir, names[i],
			 fx.dir);
	const char *argv[] = {"python3", script, portfile, pairs[0], pairs[1], pairs[2], NULL};
	struct process_spec spec = {
	    .argv = argv, .envp = (const char *const *)environ, .kill_grace_ms = 2000};
	fx.tls = process_spawn(&spec, NULL, on_server_exit, NULL);
	if (!fx.tls)
		return -1;
	for (int i = 0; i < 400; i++) {
		f = fopen(portfile, "r");
		if (f) {
			int n = fscanf(f, "%d %d %d", &fx.tls_port[0], &fx.tls_port[1],
				       &fx.tls_port[2]);
			fclose(f);
			if (n == TLS_N)
				return 0;
		}
		usleep(25000);
	}
	return -1;
}

static int listen_loopback(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

static int group_setup(void **state)
{
	(void)state;
	if (tmpdir_make(fx.dir, sizeof(fx.dir), "sluice-checklist") < 0 || make_certs() < 0)
		return -1;
	fx.base = event_base_new();
	if (!fx.base || process_init(fx.base) < 0 || start_tls_server() < 0 ||
	    apistub_start(&fx.http, fx.base) < 0)
		return -1;
	fx.silent_fd = listen_loopback(&fx.silent_port);
	int closed = listen_loopback(&fx.closed_port);
	if (fx.silent_fd < 0 || closed < 0)
		return -1;
	close(closed);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (fx.tls) {
		struct timeval limit = {10, 0};
		process_cancel(fx.tls);
		event_base_loopexit(fx.base, &limit);
		event_base_dispatch(fx.base);
	}
	apistub_stop(&fx.http);
	close(fx.silent_fd);
	process_shutdown();
	event_base_free(fx.base);
	tmpdir_remove(fx.dir);
	return 0;
}

/* --- running lists -------------------------------------------------------- */

/* A command's output shows as "> line". */
static void on_line(int output, const char *line, size_t len, void *arg)
{
	struct outcome *o = arg;
	int n = snprintf(o->log + o->loglen, sizeof(o->log) - o->loglen, "%s%.*s\n",
			 output ? "> " : "", (int)len, line);
	if (n > 0 && o->loglen + (size_t)n < sizeof(o->log))
		o->loglen += (size_t)n;
}

static void on_item(const json_t *result, void *arg)
{
	struct outcome *o = arg;
	const char *name = json_string_value(json_object_get(result, "name"));

	/* Items are reported as they end, in order, each once. */
	assert_non_null(name);
	o->items++;
}

static void on_done(int ok, const json_t *results, void *arg)
{
	struct outcome *o = arg;

	o->done_calls++;
	o->ok = ok;
	o->results = json_deep_copy(results);
	event_base_loopbreak(fx.base);
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad JSON in the test (%s): %s", e.text, text);
	return j;
}

static void run_list(const json_t *items, enum checklist_mode mode, const char *vars_text,
		     const char *cwd, struct outcome *o)
{
	char err[256] = "";
	json_t *vars = vars_text ? parse(vars_text) : NULL;
	struct timeval limit = {20, 0};
	struct checklist *c;

	memset(o, 0, sizeof(*o));
	c = checklist_start(fx.base, items, mode, vars, cwd, on_line, on_item, on_done, o, err,
			    sizeof(err));
	json_decref(vars);
	if (!c)
		fail_msg("checklist_start: %s", err);
	assert_int_equal(o->done_calls, 0);
	event_base_loopexit(fx.base, &limit);
	event_base_dispatch(fx.base);
	assert_int_equal(o->done_calls, 1);
	assert_int_equal(o->items, (int)json_array_size(o->results));
}

static void run_text(const char *items_text, enum checklist_mode mode, const char *vars_text,
		     const char *cwd, struct outcome *o)
{
	json_t *items = parse(items_text);
	run_list(items, mode, vars_text, cwd, o);
	json_decref(items);
}

static const char *field(const struct outcome *o, size_t i, const char *key)
{
	const char *v = json_string_value(json_object_get(json_array_get(o->results, i), key));
	if (!v)
		fail_msg("result %zu has no %s", i, key);
	return v;
}

static void expect_result(const struct outcome *o, size_t i, const char *status,
			  const char *message_prefix)
{
	const char *msg = field(o, i, "message");

	if (strcmp(field(o, i, "status"), status) != 0 ||
	    strncmp(msg, message_prefix, strlen(message_prefix)) != 0)
		fail_msg("result %zu (%s): got %s \"%s\", want %s \"%s...\"", i,
			 field(o, i, "name"), field(o, i, "status"), msg, status, message_prefix);
}

/* A certificate issued for `issued` days at the group's setup: it expires in
 * issued - 1 whole days once a second has passed since its signing, in
 * issued days when the check runs within that same second. */
static void expect_expiry(const struct outcome *o, size_t i, const char *status, const char *label,
			  int port, int issued)
{
	char want[256];
	const char *msg = field(o, i, "message");
	int days = issued - 1;
	snprintf(want, sizeof(want), "certificate of %s:%d expires in %d days (", label, port,
		 issued);
	if (strncmp(msg, want, strlen(want)) == 0)
		days = issued;
	snprintf(want, sizeof(want), "certificate of %s:%d expires in %d days (", label, port,
		 days);
	expect_result(o, i, status, want);
}

/* Until only the TLS server is left. */
static void wait_for_children(void)
{
	struct timeval wait = {0, 100000};

	for (int i = 0; i < 100 && process_running() > 1; i++) {
		event_base_loopexit(fx.base, &wait);
		event_base_dispatch(fx.base);
	}
	assert_int_equal(process_running(), 1);
}

/* --- commands ------------------------------------------------------------- */

static void checks_run_every_item_and_report_each_with_its_outcome(void **state)
{
	struct outcome o;
	int64_t before = clock_now_ms();
	(void)state;

	run_text("[{\"name\": \"greets\", \"kind\": \"command\", \"sh\": \"echo hello\"},"
		 " {\"name\": \"quotas\", \"kind\": \"command\", \"sh\": \"echo checking; echo "
		 "'quota exceeded' >&2; exit 2\"},"
		 " {\"name\": \"true\", \"kind\": \"command\", \"run\": [\"true\"]}]",
		 CHECKLIST_ALL, NULL, NULL, &o);
	assert_false(o.ok);
	assert_int_equal(json_array_size(o.results), 3);
	expect_result(&o, 0, "passed", "exit code 0: hello");
	expect_result(&o, 1, "failed", "exit code 2: quota exceeded");
	expect_result(&o, 2, "passed", "exit code 0");
	assert_string_equal(field(&o, 1, "kind"), "command");
	json_t *r = json_array_get(o.results, 1);
	assert_true(json_integer_value(json_object_get(r, "at")) >= before);
	assert_true(json_integer_value(json_object_get(r, "ms")) >= 0);
	/* The stage log gets each item's start, its output (told apart, as
	 * the stage's log cap counts it) and its end. */
	assert_non_null(strstr(o.log, "--- greets (command)\n> hello\n--- greets: passed: exit "
				      "code 0: hello\n"));
	assert_non_null(strstr(o.log, "> quota exceeded\n--- quotas: failed: exit code 2"));
	json_decref(o.results);
}

static void a_command_past_its_timeout_fails_and_is_killed(void **state)
{
	struct outcome o;
	int64_t t0 = clock_mono_ms();
	(void)state;

	run_text("[{\"name\": \"slow\", \"kind\": \"command\", \"run\": [\"sleep\", \"5\"], "
		 "\"timeout_ms\": 200}]",
		 CHECKLIST_ALL, NULL, NULL, &o);
	assert_false(o.ok);
	expect_result(&o, 0, "failed", "timed out after 0.2 s");
	assert_string_equal(field(&o, 0, "message"), "timed out after 0.2 s");
	assert_true(clock_mono_ms() - t0 < 4000);
	assert_int_equal(process_running(), 1);
	json_decref(o.results);
}

static void commands_get_vars_and_only_path_home_lang_of_the_worker(void **state)
{
	struct outcome o;
	char real[PATH_MAX], want[PATH_MAX + 32];
	(void)state;

	setenv("SLUICE_TEST_WORKER_SECRET", "leak", 1);
	run_text("[{\"name\": \"env\", \"kind\": \"command\", \"sh\": \"env | sort\"},"
		 " {\"name\": \"args\", \"kind\": \"command\", \"run\": [\"printf\", "
		 "\"[%s]\\\\n\", \"${TARGET} $(id)\"]},"
		 " {\"name\": \"where\", \"kind\": \"command\", \"sh\": \"pwd -P\"},"
		 " {\"name\": \"undefined\", \"kind\": \"command\", \"run\": [\"echo\", "
		 "\"${NOPE}\"]}]",
		 CHECKLIST_ALL, "{\"TARGET\": \"prod\"}", fx.dir, &o);
	unsetenv("SLUICE_TEST_WORKER_SECRET");
	expect_result(&o, 0, "passed", "exit code 0");
	assert_non_null(strstr(o.log, "\n> TARGET=prod\n"));
	assert_non_null(strstr(o.log, "\n> PATH="));
	assert_null(strstr(o.log, "SLUICE_TEST_WORKER_SECRET"));
	expect_result(&o, 1, "passed", "exit code 0: [prod $(id)]");
	assert_non_null(realpath(fx.dir, real));
	snprintf(want, sizeof(want), "exit code 0: %s", real);
	assert_string_equal(field(&o, 2, "message"), want);
	expect_result(&o, 3, "failed", "run[1]: undefined variable");
	assert_non_null(strstr(field(&o, 3, "message"), "NOPE"));
	json_decref(o.results);
}

static void hooks_stop_at_the_first_failure(void **state)
{
	struct outcome o;
	char path[128];
	(void)state;

	run_text("[{\"name\": \"first\", \"kind\": \"command\", \"sh\": \"touch first\"},"
		 " {\"name\": \"breaks\", \"kind\": \"command\", \"sh\": \"echo no; exit 1\"},"
		 " {\"name\": \"never\", \"kind\": \"command\", \"sh\": \"touch never\"}]",
		 CHECKLIST_UNTIL_FAILURE, NULL, fx.dir, &o);
	assert_false(o.ok);
	assert_int_equal(json_array_size(o.results), 2);
	expect_result(&o, 0, "passed", "exit code 0");
	expect_result(&o, 1, "failed", "exit code 1: no");
	snprintf(path, sizeof(path), "%s/first", fx.dir);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/never", fx.dir);
	assert_int_equal(access(path, F_OK), -1);
	json_decref(o.results);

	run_text("[{\"name\": \"a\", \"kind\": \"command\", \"sh\": \"true\"},"
		 " {\"name\": \"b\", \"kind\": \"command\", \"sh\": \"true\"}]",
		 CHECKLIST_UNTIL_FAILURE, NULL, NULL, &o);
	assert_true(o.ok);
	assert_int_equal(json_array_size(o.results), 2);
	json_decref(o.results);
}

static void cancel_kills_the_command_and_calls_nothing(void **state)
{
	struct outcome o = {0};
	char err[256];
	json_t *items = parse("[{\"name\": \"long\", \"kind\": \"command\", \"run\": [\"sleep\", "
			      "\"30\"]}, {\"name\": \"next\", \"kind\": \"command\", \"sh\": "
			      "\"true\"}]");
	struct timeval wait = {0, 200000};
	(void)state;

	struct checklist *c = checklist_start(fx.base, items, CHECKLIST_ALL, NULL, NULL, on_line,
					      on_item, on_done, &o, err, sizeof(err));
	json_decref(items);
	assert_non_null(c);
	event_base_loopexit(fx.base, &wait);
	event_base_dispatch(fx.base);
	assert_int_equal(process_running(), 2);
	checklist_cancel(c);
	wait_for_children();
	assert_int_equal(o.done_calls, 0);
	assert_int_equal(o.items, 0);
}

static void an_empty_list_is_done_from_the_loop_with_ok(void **state)
{
	struct outcome o;
	(void)state;

	run_text("[]", CHECKLIST_UNTIL_FAILURE, NULL, NULL, &o);
	assert_true(o.ok);
	assert_int_equal(json_array_size(o.results), 0);
	json_decref(o.results);
}

static void items_that_cannot_run_are_refused_at_start(void **state)
{
	static const struct {
		const char *items, *err;
	} rows[] = {
	    {"{}", "items: expected a list"},
	    {"[{\"kind\": \"command\", \"sh\": \"true\"}]", "items[0]: name: required"},
	    {"[{\"name\": \"a\", \"kind\": \"command\", \"sh\": \"true\"}, {\"name\": \"b\", "
	     "\"kind\": \"ftp\"}]",
	     "items[1]: kind: one of command, http, tls"},
	    {"[{\"name\": \"a\", \"kind\": \"command\", \"sh\": \"x\", \"run\": [\"y\"]}]",
	     "items[0]: needs one of run (a list) or sh (a script)"},
	    {"[{\"name\": \"a\", \"kind\": \"tls\", \"host\": \"h\", \"port\": 0}]",
	     "items[0]: port: between 1 and 65535"},
	    {"[{\"name\": \"a\", \"kind\": \"http\"}]", "items[0]: url: required"},
	};
	char err[256];
	struct outcome o = {0};
	(void)state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		json_t *items = parse(rows[i].items);
		err[0] = '\0';
		assert_null(checklist_start(fx.base, items, CHECKLIST_ALL, NULL, NULL, NULL, NULL,
					    on_done, &o, err, sizeof(err)));
		json_decref(items);
		if (strcmp(err, rows[i].err) != 0)
			fail_msg("row %zu: got \"%s\", want \"%s\"", i, err, rows[i].err);
	}
}

/* --- HTTP ----------------------------------------------------------------- */

static void http_checks_judge_status_and_body(void **state)
{
	struct outcome o;
	char items[2048], url[128];
	(void)state;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", fx.http.port);
	snprintf(items, sizeof(items),
		 "[{\"name\": \"healthy\", \"kind\": \"http\", \"url\": \"%s/${ENV}/healthz?t=1\", "
		 "\"status\": 200, \"body\": \"ok\", \"method\": \"GET\", \"headers\": "
		 "{\"Authorization\": \"Bearer ${TOKEN}\"}, \"timeout_ms\": 5000},"
		 " {\"name\": \"unavailable\", \"kind\": \"http\", \"url\": \"%s/healthz\"},"
		 " {\"name\": \"wrong body\", \"kind\": \"http\", \"url\": \"%s/healthz\", "
		 "\"body\": \"ok\"},"
		 " {\"name\": \"expects 503\", \"kind\": \"http\", \"url\": \"%s/down\", "
		 "\"status\": 503},"
		 " {\"name\": \"refused\", \"kind\": \"http\", \"url\": "
		 "\"http://127.0.0.1:%d/healthz\"},"
		 " {\"name\": \"silent\", \"kind\": \"http\", \"url\": "
		 "\"http://127.0.0.1:%d/healthz\", \"timeout_ms\": 300}]",
		 url, url, url, url, fx.closed_port, fx.silent_port);
	apistub_reset(&fx.http);
	apistub_reply(&fx.http, 200, "{\"status\": \"ok\"}");
	apistub_reply(&fx.http, 503, "down for maintenance");
	apistub_reply(&fx.http, 200, "{\"status\": \"degraded\"}");
	apistub_reply(&fx.http, 503, "");
	run_text(items, CHECKLIST_ALL, "{\"ENV\": \"prod/x\", \"TOKEN\": \"s3cret\"}", NULL, &o);
	assert_false(o.ok);
	assert_int_equal(json_array_size(o.results), 6);

	char want[512];
	snprintf(want, sizeof(want), "HTTP 200 from %s/prod%%2Fx/healthz, body contains \"ok\"",
		 url);
	expect_result(&o, 0, "passed", want);
	assert_string_equal(field(&o, 0, "kind"), "http");
	/* The variables reached the request: encoded in the path, as they are
	 * in a header. */
	assert_string_equal(fx.http.req[0].uri, "/prod%2Fx/healthz?t=1");
	assert_string_equal(fx.http.req[0].authorization, "Bearer s3cret");
	snprintf(want, sizeof(want), "HTTP 503 from %s/healthz (expected 200)", url);
	assert_string_equal(field(&o, 1, "message"), want);
	expect_result(&o, 1, "failed", want);
	expect_result(&o, 2, "failed", "body does not contain \"ok\"");
	expect_result(&o, 3, "passed", "HTTP 503 from");
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/healthz: ", fx.closed_port);
	expect_result(&o, 4, "failed", want);
	expect_result(&o, 5, "failed", "timed out after 0.3 s");
	assert_int_equal(fx.http.nreq, 4);
	json_decref(o.results);
}

/* --- TLS ------------------------------------------------------------------ */

/* extra may repeat a key: the later one wins (json_loads keeps the last). */
static void tls_item(char *out, size_t outlen, const char *name, const char *host, int port,
		     const char *extra)
{
	snprintf(out, outlen,
		 "{\"name\": \"%s\", \"kind\": \"tls\", \"host\": \"%s\", \"port\": %d, "
		 "\"min_days\": 14, \"verify\": true, \"timeout_ms\": 5000%s%s}",
		 name, host, port, extra[0] ? ", " : "", extra);
}

static void tls_checks_judge_expiry_trust_and_host(void **state)
{
	char it[13][512], items[8192], ca[128], want[256];
	struct outcome o;
	int v = fx.tls_port[TLS_VALID];
	(void)state;

	snprintf(ca, sizeof(ca), "\"ca\": \"%s/ca.pem\"", fx.dir);
	tls_item(it[0], sizeof(it[0]), "valid", "127.0.0.1", v, ca);
	tls_item(it[1], sizeof(it[1]), "by name", "localhost", v, "\"ca\": \"ca.pem\"");
	tls_item(it[2], sizeof(it[2]), "short", "127.0.0.1", fx.tls_port[TLS_SHORT], ca);
	tls_item(it[3], sizeof(it[3]), "expired", "127.0.0.1", fx.tls_port[TLS_EXPIRED], ca);
	char other[256];
	snprintf(other, sizeof(other), "%s, \"server_name\": \"other.example\"", ca);
	tls_item(it[4], sizeof(it[4]), "wrong host", "127.0.0.1", v, other);
	tls_item(it[5], sizeof(it[5]), "untrusted", "127.0.0.1", v, "");
	tls_item(it[6], sizeof(it[6]), "unverified", "127.0.0.1", fx.tls_port[TLS_SHORT],
		 "\"verify\": false, \"min_days\": 1");
	tls_item(it[7], sizeof(it[7]), "refused", "127.0.0.1", fx.closed_port, ca);
	tls_item(it[8], sizeof(it[8]), "silent", "127.0.0.1", fx.silent_port,
		 "\"timeout_ms\": 300");
	tls_item(it[9], sizeof(it[9]), "not tls", "127.0.0.1", fx.http.port, ca);
	tls_item(it[10], sizeof(it[10]), "no ca file", "127.0.0.1", v, "\"ca\": \"missing.pem\"");
	tls_item(it[11], sizeof(it[11]), "no such host", "no-such-host.invalid", v, ca);
	tls_item(it[12], sizeof(it[12]), "not a CA file", "127.0.0.1", v, "\"ca\": \"ca.cnf\"");
	snprintf(items, sizeof(items), "[%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s]",
		 it[0], it[1], it[2], it[3], it[4], it[5], it[6], it[7], it[8], it[9], it[10],
		 it[11], it[12]);
	apistub_reset(&fx.http);
	apistub_reply(&fx.http, 400, "");
	run_text(items, CHECKLIST_ALL, NULL, fx.dir, &o);
	assert_false(o.ok);
	assert_int_equal(json_array_size(o.results), 13);

	expect_expiry(&o, 0, "passed", "127.0.0.1", v, 365);
	assert_string_equal(field(&o, 0, "kind"), "tls");
	expect_expiry(&o, 1, "passed", "localhost", v, 365);
	expect_expiry(&o, 2, "failed", "127.0.0.1", fx.tls_port[TLS_SHORT], 3);
	assert_non_null(strstr(field(&o, 2, "message"), "Z); at least 14 required"));
	snprintf(want, sizeof(want),
		 "certificate of 127.0.0.1:%d has expired (2020-01-02T00:00:00Z)",
		 fx.tls_port[TLS_EXPIRED]);
	assert_string_equal(field(&o, 3, "message"), want);
	expect_result(&o, 3, "failed", want);
	snprintf(want, sizeof(want), "certificate of 127.0.0.1:%d is not valid for other.example",
		 v);
	expect_result(&o, 4, "failed", want);
	snprintf(want, sizeof(want),
		 "certificate of 127.0.0.1:%d is not trusted: unable to get local issuer "
		 "certificate",
		 v);
	expect_result(&o, 5, "failed", want);
	expect_result(&o, 6, "passed", "certificate of 127.0.0.1:");
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%d: Connection refused",
		 fx.closed_port);
	expect_result(&o, 7, "failed", want);
	expect_result(&o, 8, "failed", "timed out after 0.3 s");
	snprintf(want, sizeof(want), "TLS handshake with 127.0.0.1:%d failed: ", fx.http.port);
	expect_result(&o, 9, "failed", want);
	snprintf(want, sizeof(want),
		 "cannot load the CA file %s/missing.pem: No such file or directory", fx.dir);
	expect_result(&o, 10, "failed", want);
	expect_result(&o, 11, "failed", "cannot resolve no-such-host.invalid: ");
	snprintf(want, sizeof(want), "cannot load the CA file %s/ca.cnf: no PEM certificates in it",
		 fx.dir);
	expect_result(&o, 12, "failed", want);
	json_decref(o.results);
}

/* --- rollback ------------------------------------------------------------- */

static int load_text(const char *yaml, const char *key, int hooks, int allow_rollback, json_t **out,
		     char *err, size_t errlen)
{
	struct config_doc doc;
	struct config_check ck = {.file = "p.yaml", .err = err, .errlen = errlen};
	int rc;

	*out = NULL;
	if (config_doc_load_text(&doc, "p.yaml", yaml, strlen(yaml), err, errlen) < 0)
		return -1;
	const struct config_doc_node *n = config_doc_get(doc.top, key);
	if (!n)
		fail_msg("no %s in the test's YAML", key);
	rc = hooks ? checklist_load_hooks(&ck, n, allow_rollback, out)
		   : checklist_load_checks(&ck, n, out);
	config_doc_clear(&doc);
	return rc;
}

static void rollback_items_undo_the_hooks_that_ran_newest_first(void **state)
{
	static const char yaml[] =
	    "pre:\n"
	    "  - name: a\n"
	    "    sh: echo a\n"
	    "    rollback: {sh: echo undo-a >> undone}\n"
	    "  - name: b\n"
	    "    sh: echo b\n"
	    "  - name: c\n"
	    "    run: [\"false\"]\n"
	    "    rollback: {run: [sh, -c, echo undo-c >> undone], timeout: 5s}\n"
	    "  - name: d\n"
	    "    sh: echo d\n"
	    "    rollback: {sh: echo undo-d >> undone}\n";
	char err[512], path[128], text[64] = "";
	json_t *hooks, *rb;
	struct outcome o;
	(void)state;

	assert_int_equal(load_text(yaml, "pre", 1, 1, &hooks, err, sizeof(err)), 0);
	/* The pre hooks run until c fails; d never starts. */
	run_list(hooks, CHECKLIST_UNTIL_FAILURE, NULL, fx.dir, &o);
	assert_int_equal(json_array_size(o.results), 3);
	rb = checklist_rollback_items(hooks, o.results);
	json_decref(o.results);
	assert_int_equal(json_array_size(rb), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rb, 0), "name")),
			    "c (rollback)");
	assert_string_equal(json_string_value(json_object_get(json_array_get(rb, 1), "name")),
			    "a (rollback)");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rb, 0), "timeout_ms")),
			 5000);
	run_list(rb, CHECKLIST_ALL, NULL, fx.dir, &o);
	assert_true(o.ok);
	json_decref(o.results);
	json_decref(rb);
	snprintf(path, sizeof(path), "%s/undone", fx.dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	assert_string_equal(text, "undo-c\nundo-a\n");

	/* Results that are not of a started hook, or of no hook, undo nothing. */
	json_t *ran = parse("[{\"name\": \"b\", \"status\": \"passed\"}, {\"name\": \"x\", "
			    "\"status\": \"passed\"}, {\"name\": \"d\", \"status\": \"skipped\"}]");
	rb = checklist_rollback_items(hooks, ran);
	assert_int_equal(json_array_size(rb), 0);
	json_decref(rb);
	json_decref(ran);
	json_decref(hooks);
}

/* --- the pipeline file ---------------------------------------------------- */

static void check_lists_load_into_the_normalized_form(void **state)
{
	static const char yaml[] =
	    "checks:\n"
	    "  - name: certificate valid for 14 days\n"
	    "    tls: {host: 127.0.0.1, port: 8443}\n"
	    "  - name: load balancer healthy\n"
	    "    http: {url: \"http://127.0.0.1:8080/healthz\", body: ok, method: head2}\n";
	static const char good[] =
	    "checks:\n"
	    "  - name: certificate valid for 14 days\n"
	    "    tls: {host: 127.0.0.1, port: 8443, minDays: 30, serverName: app.example.com, "
	    "ca: certs/ca.pem}\n"
	    "    timeout: 10s\n"
	    "  - name: load balancer healthy\n"
	    "    http: {url: \"http://127.0.0.1:8080/healthz\", status: 204, body: ok, "
	    "method: post, headers: {X-Token: \"${TOKEN}\"}, timeout: 2s}\n"
	    "  - name: quotas\n"
	    "    run: [./check-quotas.sh, --strict]\n"
	    "  - name: self-signed\n"
	    "    tls: {host: app.internal, verify: false}\n"
	    "  - name: script\n"
	    "    sh: test -f /etc/hosts\n"
	    "    timeout: 1m\n";
	char err[512];
	json_t *out;
	(void)state;

	assert_int_equal(load_text(yaml, "checks", 0, 0, &out, err, sizeof(err)), -1);
	assert_string_equal(err, "p.yaml:5:68: checks[1].http.method: expected GET, HEAD or POST");
	assert_int_equal(load_text(good, "checks", 0, 0, &out, err, sizeof(err)), 0);
	char *text = json_dumps(out, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(
	    text, "[{\"ca\":\"certs/ca.pem\",\"host\":\"127.0.0.1\",\"kind\":\"tls\","
		  "\"min_days\":30,\"name\":\"certificate valid for 14 days\",\"port\":8443,"
		  "\"server_name\":\"app.example.com\",\"timeout_ms\":10000,\"verify\":true},"
		  "{\"body\":\"ok\",\"headers\":{\"X-Token\":\"${TOKEN}\"},\"kind\":\"http\","
		  "\"method\":\"POST\",\"name\":\"load balancer healthy\",\"status\":204,"
		  "\"timeout_ms\":2000,\"url\":\"http://127.0.0.1:8080/healthz\"},"
		  "{\"kind\":\"command\",\"name\":\"quotas\",\"run\":[\"./check-quotas.sh\","
		  "\"--strict\"],\"timeout_ms\":30000},"
		  "{\"host\":\"app.internal\",\"kind\":\"tls\",\"min_days\":14,\"name\":"
		  "\"self-signed\",\"port\":443,\"timeout_ms\":30000,\"verify\":false},"
		  "{\"kind\":\"command\",\"name\":\"script\",\"sh\":\"test -f /etc/hosts\","
		  "\"timeout_ms\":60000}]");
	free(text);
	json_decref(out);
	/* The one host with a colon: an IPv6 address. */
	assert_int_equal(load_text("checks:\n  - name: v6\n    tls: {host: '::1'}\n", "checks", 0,
				   0, &out, err, sizeof(err)),
			 0);
	json_decref(out);
}

static void hook_lists_load_with_their_rollbacks(void **state)
{
	static const char yaml[] = "pre:\n"
				   "  - name: db-migrate\n"
				   "    run: [./db/migrate.sh]\n"
				   "    rollback: {run: [./db/rollback.sh], timeout: 20m}\n"
				   "post:\n"
				   "  - name: cache-flush\n"
				   "    sh: redis-cli FLUSHALL\n"
				   "    timeout: 30s\n";
	char err[512];
	json_t *out;
	(void)state;

	assert_int_equal(load_text(yaml, "pre", 1, 1, &out, err, sizeof(err)), 0);
	char *text = json_dumps(out, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(text, "[{\"kind\":\"command\",\"name\":\"db-migrate\",\"rollback\":"
				  "{\"kind\":\"command\",\"name\":\"db-migrate (rollback)\","
				  "\"run\":[\"./db/rollback.sh\"],\"timeout_ms\":1200000},"
				  "\"run\":[\"./db/migrate.sh\"],\"timeout_ms\":600000}]");
	free(text);
	json_decref(out);
	assert_int_equal(load_text(yaml, "post", 1, 0, &out, err, sizeof(err)), 0);
	text = json_dumps(out, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(text, "[{\"kind\":\"command\",\"name\":\"cache-flush\",\"sh\":"
				  "\"redis-cli FLUSHALL\",\"timeout_ms\":30000}]");
	free(text);
	json_decref(out);
}

static void file_errors_name_the_position_and_key_path(void **state)
{
	static const struct {
		const char *yaml;
		int hooks, allow_rollback;
		const char *err;
	} rows[] = {
	    {"l:\n  - name: a\n    run: [x]\n    retries: 3\n", 0, 0,
	     "p.yaml:4:5: l[0].retries: unknown key"},
	    {"l:\n  - run: [x]\n", 0, 0, "p.yaml:2:5: l[0].name: missing required key"},
	    {"l:\n  - name: a\n    run: [x]\n  - name: b\n    sh: y\n  - name: a\n    sh: z\n", 0,
	     0, "p.yaml:6:11: l[2].name: \"a\" is already the name of l[0] (line 2)"},
	    {"l:\n  - name: a\n    run: [x]\n    http: {url: 'http://h/'}\n", 0, 0,
	     "p.yaml:4:5: l[0].http: only one of run, sh, http or tls may be given (this check "
	     "already has run)"},
	    {"l:\n  - name: a\n", 0, 0,
	     "p.yaml:2:5: l[0].run: missing required key (or sh: a script, http: a request, tls: a "
	     "certificate)"},
	    {"l:\n  - name: cache-flush\n    sh: x\n    rollback: {sh: y}\n", 1, 0,
	     "p.yaml:4:5: l[0].rollback: only pre hooks have a rollback"},
	    {"l:\n  - name: a\n    tls: {host: h, port: 70000}\n", 0, 0,
	     "p.yaml:3:26: l[0].tls.port: must be between 1 and 65535"},
	    {"l:\n  - name: a\n    tls: {host: h, port: https}\n", 0, 0,
	     "p.yaml:3:26: l[0].tls.port: expected an integer"},
	    {"l:\n  - name: a\n    tls: {host: 'h.example:8443'}\n", 0, 0,
	     "p.yaml:3:17: l[0].tls.host: expected a host name or an address (the port goes in "
	     "port:)"},
	    {"l:\n  - name: a\n    http: {url: 'ftp://h/x'}\n", 0, 0,
	     "p.yaml:3:17: l[0].http.url: expected an http:// or https:// URL"},
	    {"l:\n  - name: a\n    http: {url: 'http://'}\n", 0, 0, "p.yaml:3:17: l[0].http.url: "},
	    {"l:\n  - name: a\n    http: {url: 'http://h/a b'}\n", 0, 0,
	     "p.yaml:3:17: l[0].http.url: a URL holds no spaces or control characters"},
	    {"l:\n  - name: a\n    http: {url: 'http://h/', timeout: 2s}\n    timeout: 3s\n", 0, 0,
	     "p.yaml:3:30: l[0].http.timeout: give the timeout once: here or on the check"},
	    {"l:\n  - name: a\n    tls: {host: h, verify: false, ca: c.pem}\n", 0, 0,
	     "p.yaml:3:35: l[0].tls.ca: a CA is only used with verify: true"},
	    {"l:\n  - name: a\n    tls: {port: 443}\n", 0, 0,
	     "p.yaml:3:10: l[0].tls.host: missing required key"},
	    {"l:\n  - name: a\n    http: {url: 'http://h/', status: 700}\n", 0, 0,
	     "p.yaml:3:38: l[0].http.status: must be between 100 and 599"},
	    {"l:\n  - name: a\n    run: []\n", 0, 0, "p.yaml:3:10: l[0].run: must not be empty"},
	    {"l:\n  - name: a\n    run: ['', x]\n", 1, 0,
	     "p.yaml:3:11: l[0].run[0]: must not be empty"},
	    {"l:\n  - name: a\n    run: [x]\n    rollback: {run: ['']}\n", 1, 1,
	     "p.yaml:4:22: l[0].rollback.run[0]: must not be empty"},
	    {"l:\n  - name: a\n    run: [x]\n    timeout: soon\n", 0, 0,
	     "p.yaml:4:14: l[0].timeout: expected a duration like \"10m\""},
	    {"l:\n  - name: a\n    run: [x]\n    rollback: {sh: y, http: {}}\n", 1, 1,
	     "p.yaml:4:23: l[0].rollback.http: unknown key"},
	    {"l:\n  - name: a\n    tls: {host: h}\n", 1, 1, "p.yaml:3:5: l[0].tls: unknown key"},
	    {"l: {name: a}\n", 0, 0, "p.yaml:1:4: l: expected a list of checks"},
	    {"l:\n  - name: a\n    run: [x]\n    sh: y\n", 1, 1,
	     "p.yaml:4:5: l[0].sh: only one of run or sh may be given (this hook already has run)"},
	    {"l:\n  - name: a\n    run: [x]\n    rollback: {timeout: 5s}\n", 1, 1,
	     "p.yaml:4:15: l[0].rollback.run: missing required key (or sh: a script)"},
	    {"l:\n  - name: \"\"\n    run: [x]\n", 1, 0,
	     "p.yaml:2:11: l[0].name: must not be empty"},
	};
	char err[512];
	json_t *out;
	(void)state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		err[0] = '\0';
		if (load_text(rows[i].yaml, "l", rows[i].hooks, rows[i].allow_rollback, &out, err,
			      sizeof(err)) == 0)
			fail_msg("row %zu loaded", i);
		assert_null(out);
		if (strncmp(err, rows[i].err, strlen(rows[i].err)) != 0)
			fail_msg("row %zu: got \"%s\", want \"%s\"", i, err, rows[i].err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(checks_run_every_item_and_report_each_with_its_outcome),
	    cmocka_unit_test(a_command_past_its_timeout_fails_and_is_killed),
	    cmocka_unit_test(commands_get_vars_and_only_path_home_lang_of_the_worker),
	    cmocka_unit_test(hooks_stop_at_the_first_failure),
	    cmocka_unit_test(cancel_kills_the_command_and_calls_nothing),
	    cmocka_unit_test(an_empty_list_is_done_from_the_loop_with_ok),
	    cmocka_unit_test(items_that_cannot_run_are_refused_at_start),
	    cmocka_unit_test(http_checks_judge_status_and_body),
	    cmocka_unit_test(tls_checks_judge_expiry_trust_and_host),
	    cmocka_unit_test(rollback_items_undo_the_hooks_that_ran_newest_first),
	    cmocka_unit_test(check_lists_load_into_the_normalized_form),
	    cmocka_unit_test(hook_lists_load_with_their_rollbacks),
	    cmocka_unit_test(file_errors_name_the_position_and_key_path),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
