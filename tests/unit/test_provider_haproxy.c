/* Tests for the haproxy provider (stages/provider_haproxy.c) against a real
 * haproxy: a generated configuration on free loopback ports, its runtime
 * API on a unix socket and on TCP, and small HTTP servers of the test's own
 * behind it, so that the traffic split is measured with real requests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "stages/provider.h"
#include "tests/unit/redisd.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <sys/un.h>
#include "tests/unit/provider_test.h"

#define REQUESTS 20

enum { SRV_STABLE, SRV_CANARY, SRV_BLUE, SRV_GREEN, NSERVERS };
static const char *const server_names[NSERVERS] = {"stable", "canary", "blue", "green"};

static char dir[64];
static char sock[100];
static int api_port, app_port, web_port, pair_port;
/* Where nothing listens: the "dark" backend's green server, which haproxy
 * health-checks, is down. */
static int dead_port;
static pid_t haproxy_pid;
static pid_t server_pids[NSERVERS];
/* Stand-ins for the runtime API, each on a unix socket of its own: one
 * that closes each connection unanswered, one that answers a byte at a
 * time and never ends, one that answers bytes that are not UTF-8. */
enum stand_in { STAND_IN_MUTE, STAND_IN_TRICKLE, STAND_IN_GARBLED, NSTAND_INS };
static char stand_in_socks[NSTAND_INS][100];
static pid_t stand_in_pids[NSTAND_INS];

/* --- the test's servers ------------------------------------------------- */

/* A child that answers every request with its name, one connection at a time. */
static pid_t start_backend(const char *name, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	pid_t pid;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 64), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid > 0) {
		close(fd);
		return pid;
	}
	for (;;) {
		char buf[4096], reply[256];
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		/* The request ends with its blank line; haproxy sends no body. */
		size_t got = 0;
		ssize_t n;
		while (got < sizeof(buf) - 1 &&
		       (n = read(c, buf + got, sizeof(buf) - 1 - got)) > 0) {
			got += (size_t)n;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		int len = snprintf(reply, sizeof(reply),
				   "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: "
				   "close\r\n\r\n%s",
				   strlen(name), name);
		if (write(c, reply, (size_t)len) < 0)
			_exit(1);
		close(c);
	}
}

/* The stand-in of that kind on the unix socket path: it reads each
 * command, then answers as its kind does. */
static pid_t start_stand_in(const char *path, enum stand_in kind)
{
	static const char garbled[] = "\xff\xfe what is this\n\n";

	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	pid_t pid;

	snprintf(un.sun_path, sizeof(un.sun_path), "%.*s", (int)sizeof(un.sun_path) - 1, path);
	if (fd < 0)
		return -1;
	pid =
	    bind(fd, (struct sockaddr *)&un, sizeof(un)) == 0 && listen(fd, 16) == 0 ? fork() : -1;
	if (pid != 0) {
		close(fd);
		return pid;
	}
	for (;;) {
		char buf[512];
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		if (read(c, buf, sizeof(buf)) < 0)
			_exit(1);
		while (kind == STAND_IN_TRICKLE && send(c, "x", 1, MSG_NOSIGNAL) == 1)
			usleep(100000);
		if (kind == STAND_IN_GARBLED && write(c, garbled, sizeof(garbled) - 1) < 0)
			_exit(1);
		close(c);
	}
}

static int api_connect(void)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(un.sun_path, sizeof(un.sun_path), "%s", sock);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* One runtime API command from the test itself; the reply in out. */
static void api(const char *cmd, char *out, size_t outlen)
{
	int fd = api_connect();
	size_t got = 0;
	ssize_t n;

	assert_true(fd >= 0);
	assert_true(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd));
	assert_true(write(fd, "\n", 1) == 1);
	while (got < outlen - 1 && (n = read(fd, out + got, outlen - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fd);
}

/* "<weight> <admin state>" of a server, from "show servers state". */
static void server_state(const char *backend, const char *server, int *weight, int *admin)
{
	char cmd[128], out[8192], *line, *save = NULL;

	snprintf(cmd, sizeof(cmd), "show servers state %s", backend);
	api(cmd, out, sizeof(out));
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char be[64], srv[64];
		int be_id, srv_id, op;
		char addr[64];
		if (sscanf(line, "%d %63s %d %63s %63s %d %d %d", &be_id, be, &srv_id, srv, addr,
			   &op, admin, weight) == 8 &&
		    strcmp(srv, server) == 0)
			return;
	}
	fail_msg("%s/%s not in the state dump", backend, server);
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
	char *out = arg;
	size_t len = size * n, used = strlen(out);

	if (used + len < 64) {
		memcpy(out + used, data, len);
		out[used + len] = '\0';
	}
	return len;
}

/* Sends REQUESTS requests through haproxy's frontend on port; counts how
 * many each server answered. */
static void traffic(int port, int counts[NSERVERS])
{
	char url[64];

	memset(counts, 0, NSERVERS * sizeof(int));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	for (int i = 0; i < REQUESTS; i++) {
		char body[64] = "";
		CURL *e = curl_easy_init();
		assert_non_null(e);
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
		assert_int_equal(curl_easy_perform(e), CURLE_OK);
		curl_easy_cleanup(e);
		for (int s = 0; s < NSERVERS; s++)
			if (strcmp(body, server_names[s]) == 0)
				counts[s]++;
	}
}

static int write_config(int ports[NSERVERS])
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f,
		"global\n"
		"  stats socket %s level admin\n"
		"  stats socket ipv4@127.0.0.1:%d level admin\n"
		"defaults\n"
		"  mode http\n"
		"  timeout connect 2s\n"
		"  timeout client 5s\n"
		"  timeout server 5s\n"
		"frontend app_in\n"
		"  bind 127.0.0.1:%d\n"
		"  default_backend app\n"
		"frontend web_in\n"
		"  bind 127.0.0.1:%d\n"
		"  default_backend web\n"
		"frontend pair_in\n"
		"  bind 127.0.0.1:%d\n"
		"  default_backend pair\n"
		"backend app\n"
		"  balance roundrobin\n"
		"  server stable 127.0.0.1:%d weight 100\n"
		"  server canary 127.0.0.1:%d weight 0\n"
		"backend web\n"
		"  balance roundrobin\n"
		"  server blue 127.0.0.1:%d weight 100\n"
		"  server green 127.0.0.1:%d weight 100\n"
		"backend pair\n" /* two stable servers, one canary */
		"  balance roundrobin\n"
		"  server stable 127.0.0.1:%d weight 100\n"
		"  server stable-b 127.0.0.1:%d weight 100\n"
		"  server canary 127.0.0.1:%d weight 0\n"
		"backend dark\n"
		"  balance roundrobin\n"
		"  server blue 127.0.0.1:%d weight 100\n"
		"  server green 127.0.0.1:%d weight 100 check inter 100ms fall 1 rise 1\n",
		sock, api_port, app_port, web_port, pair_port, ports[SRV_STABLE], ports[SRV_CANARY],
		ports[SRV_BLUE], ports[SRV_GREEN], ports[SRV_STABLE], ports[SRV_STABLE],
		ports[SRV_CANARY], ports[SRV_BLUE], dead_port);
	return fclose(f);
}

/* Prints haproxy's own output, for a start that failed. */
static void print_haproxy_log(const char *log)
{
	char line[512];
	FILE *f = fopen(log, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "haproxy: %s", line);
	fclose(f);
}

/* Starts haproxy on the configuration and waits up to 30 s for its runtime
 * API; 0 once it answers, -1 (with haproxy's output printed) when it exited
 * or never answered. */
static int start_haproxy(const char *cfg, const char *log)
{
	haproxy_pid = fork();
	if (haproxy_pid < 0)
		return -1;
	if (haproxy_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("haproxy", "haproxy", "-db", "-f", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 600; i++) {
		int fd = api_connect(), status;
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(haproxy_pid, &status, WNOHANG) == haproxy_pid) {
			fprintf(stderr, "haproxy %s %d before its runtime API answered\n",
				WIFEXITED(status) ? "exited with status" : "was killed by signal",
				WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			haproxy_pid = 0;
			print_haproxy_log(log);
			return -1;
		}
		usleep(50000);
	}
	fprintf(stderr, "haproxy's runtime API did not answer within 30 s\n");
	print_haproxy_log(log);
	return -1;
}

static int group_setup(void **state)
{
	int ports[NSERVERS];
	char cfg[128], log[128];
	(void)state;

	snprintf(dir, sizeof(dir), "/tmp/sluice-haproxy-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
	for (int i = 0; i < NSTAND_INS; i++) {
		snprintf(stand_in_socks[i], sizeof(stand_in_socks[i]), "%s/stand-in-%d.sock", dir,
			 i);
		stand_in_pids[i] = start_stand_in(stand_in_socks[i], (enum stand_in)i);
		if (stand_in_pids[i] < 0)
			return -1;
	}
	snprintf(cfg, sizeof(cfg), "%s/haproxy.cfg", dir);
	snprintf(log, sizeof(log), "%s/haproxy.log", dir);
	/* The backends hold their ports from the start; haproxy's own three
	 * were free when chosen but may be taken before it binds them, so a
	 * start that fails is tried again on fresh ones. When this fails,
	 * cmocka still runs group_teardown, which stops what was started. */
	for (int s = 0; s < NSERVERS; s++) {
		ports[s] = redisd_free_port();
		server_pids[s] = start_backend(server_names[s], ports[s]);
	}
	for (int attempt = 0;; attempt++) {
		api_port = redisd_free_port();
		app_port = redisd_free_port();
		web_port = redisd_free_port();
		pair_port = redisd_free_port();
		dead_port = redisd_free_port();
		if (write_config(ports) < 0)
			return -1;
		if (start_haproxy(cfg, log) == 0)
			break;
		if (haproxy_pid > 0) {
			kill(haproxy_pid, SIGKILL);
			waitpid(haproxy_pid, NULL, 0);
			haproxy_pid = 0;
		}
		if (attempt == 2)
			return -1;
	}
	base = event_base_new();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return base ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[200];
	(void)state;

	if (haproxy_pid > 0) {
		kill(haproxy_pid, SIGTERM);
		waitpid(haproxy_pid, NULL, 0);
		haproxy_pid = 0;
	}
	for (int i = 0; i < NSTAND_INS; i++) {
		if (stand_in_pids[i] > 0) {
			kill(stand_in_pids[i], SIGKILL);
			waitpid(stand_in_pids[i], NULL, 0);
			stand_in_pids[i] = 0;
		}
	}
	for (int s = 0; s < NSERVERS; s++) {
		if (server_pids[s] > 0) {
			kill(server_pids[s], SIGKILL);
			waitpid(server_pids[s], NULL, 0);
			server_pids[s] = 0;
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return -1;
	if (base) {
		event_base_free(base);
		base = NULL;
		curl_global_cleanup();
	}
	return 0;
}

/* Each test starts from the configuration's state. */
static int setup(void **state)
{
	char out[256];
	(void)state;

	api("set server app/stable weight 100", out, sizeof(out));
	api("set server app/canary weight 0", out, sizeof(out));
	api("set server web/blue state ready", out, sizeof(out));
	api("set server web/green state ready", out, sizeof(out));
	return 0;
}

/* --- the provider ------------------------------------------------------- */

static struct provider *make(const char *socket_addr)
{
	return provider_test_make(json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "haproxy",
					    "socket", socket_addr, "backend", "app", "stable",
					    "stable", "canary", "canary"));
}

static struct provider *make_web(void)
{
	return provider_test_make(json_pack("{s:s, s:s, s:s, s:{s:s, s:[s]}}", "type", "haproxy",
					    "socket", sock, "backend", "web", "colors", "blue",
					    "blue", "green", "green"));
}

static void run(struct provider *p, enum provider_verb verb, int weight, const char *color,
		struct outcome *o)
{
	struct provider_action a = {.verb = verb, .weight = weight, .color = color};
	provider_test_run(p, &a, o, 5);
}

static void test_weight_zero_sends_no_request_to_canary(void **state)
{
	struct provider *p = make(sock);
	struct outcome o;
	int counts[NSERVERS], weight, admin;
	(void)state;

	run(p, PROVIDER_SET_WEIGHT, 20, NULL, &o);
	run(p, PROVIDER_SET_WEIGHT, 0, NULL, &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "set_weight done: app/canary weight 0, app/stable weight 100");
	server_state("app", "canary", &weight, &admin);
	assert_int_equal(weight, 0);
	server_state("app", "stable", &weight, &admin);
	assert_int_equal(weight, 100);
	traffic(app_port, counts);
	assert_int_equal(counts[SRV_CANARY], 0);
	assert_int_equal(counts[SRV_STABLE], REQUESTS);
	run(p, PROVIDER_VERIFY, 0, NULL, &o);
	assert_true(o.ok);
	provider_free(p);
}

/* set_weight 20 through p puts backend's canary and stable servers at
 * these weights, sends one request in five through port to the canary and
 * verifies. */
static void weight_twenty(struct provider *p, const char *backend, int port, int canary, int stable)
{
	struct outcome o;
	int counts[NSERVERS], weight, admin;

	run(p, PROVIDER_SET_WEIGHT, 20, NULL, &o);
	assert_true(o.ok);
	server_state(backend, "canary", &weight, &admin);
	assert_int_equal(weight, canary);
	server_state(backend, "stable", &weight, &admin);
	assert_int_equal(weight, stable);
	traffic(port, counts);
	/* Weighted round robin: one request in five, give or take the cycle's
	 * starting point. */
	assert_in_range(counts[SRV_CANARY], REQUESTS / 5 - 1, REQUESTS / 5 + 1);
	assert_int_equal(counts[SRV_CANARY] + counts[SRV_STABLE], REQUESTS);
	run(p, PROVIDER_VERIFY, 20, NULL, &o);
	assert_true(o.ok);
}

static void test_weight_twenty_splits_traffic_one_in_five(void **state)
{
	struct provider *p = make(sock);
	struct outcome o;
	(void)state;

	weight_twenty(p, "app", app_port, 20, 80);
	run(p, PROVIDER_VERIFY, 20, NULL, &o);
	assert_non_null(strstr(o.msg, "canary weight 20 up"));
	assert_non_null(strstr(o.msg, "stable weight 80 up"));
	provider_free(p);
}

/* Two stable servers at 80 and a canary at 20 would give it 20 of 180. */
static void test_weight_twenty_is_a_fifth_of_the_traffic_whatever_the_servers(void **state)
{
	struct provider *p = provider_test_make(
	    json_pack("{s:s, s:s, s:s, s:[s, s], s:s}", "type", "haproxy", "socket", sock,
		      "backend", "pair", "stable", "stable", "stable-b", "canary", "canary"));
	struct outcome o;
	int weight, admin;
	(void)state;

	weight_twenty(p, "pair", pair_port, 40, 80);
	run(p, PROVIDER_ABORT, -1, NULL, &o);
	assert_true(o.ok);
	server_state("pair", "canary", &weight, &admin);
	assert_int_equal(weight, 0);
	provider_free(p);
}

static void test_weight_hundred_sends_everything_to_canary_and_abort_takes_it_back(void **state)
{
	struct provider *p = make(sock);
	struct outcome o;
	int counts[NSERVERS];
	(void)state;

	run(p, PROVIDER_SET_WEIGHT, 100, NULL, &o);
	assert_true(o.ok);
	traffic(app_port, counts);
	assert_int_equal(counts[SRV_CANARY], REQUESTS);
	run(p, PROVIDER_ABORT, -1, NULL, &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "abort done: app/canary weight 0, app/stable weight 100");
	traffic(app_port, counts);
	assert_int_equal(counts[SRV_STABLE], REQUESTS);
	run(p, PROVIDER_PROMOTE, -1, NULL, &o);
	assert_true(o.ok);
	traffic(app_port, counts);
	assert_int_equal(counts[SRV_CANARY], REQUESTS);
	provider_free(p);
}

static void test_verify_fails_when_weights_differ(void **state)
{
	struct provider *p = make(sock);
	struct outcome o;
	char out[256];
	(void)state;

	api("set server app/canary weight 7", out, sizeof(out));
	run(p, PROVIDER_VERIFY, 20, NULL, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "verify failed: canary has weight 7, not 20"));
	provider_free(p);
}

static void test_tcp_runtime_api_sets_weights(void **state)
{
	char addr[64];
	struct provider *p;
	struct outcome o;
	int weight, admin;
	(void)state;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", api_port);
	p = make(addr);
	run(p, PROVIDER_SET_WEIGHT, 50, NULL, &o);
	assert_true(o.ok);
	server_state("app", "canary", &weight, &admin);
	assert_int_equal(weight, 50);
	provider_free(p);
}

static void test_switch_moves_all_traffic_to_the_colour(void **state)
{
	struct provider *p = make_web();
	struct outcome o;
	int counts[NSERVERS], weight, admin;
	(void)state;

	run(p, PROVIDER_SWITCH, -1, "green", &o);
	assert_true(o.ok);
	assert_string_equal(o.msg, "switch done: web/blue state drain, web/green state ready");
	server_state("web", "blue", &weight, &admin);
	assert_int_equal(admin & 0x08, 0x08);
	traffic(web_port, counts);
	assert_int_equal(counts[SRV_GREEN], REQUESTS);
	run(p, PROVIDER_VERIFY, -1, "green", &o);
	assert_true(o.ok);
	run(p, PROVIDER_VERIFY, -1, "blue", &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "blue is drain"));

	run(p, PROVIDER_SCALE_DOWN, -1, "blue", &o);
	assert_true(o.ok);
	server_state("web", "blue", &weight, &admin);
	assert_int_equal(admin & 0x01, 0x01);

	run(p, PROVIDER_SWITCH, -1, "blue", &o);
	assert_true(o.ok);
	traffic(web_port, counts);
	assert_int_equal(counts[SRV_BLUE], REQUESTS);
	provider_free(p);
}

static void run_preview_verify(struct provider *p, const char *color, struct outcome *o)
{
	struct provider_action a = {
	    .verb = PROVIDER_VERIFY, .weight = -1, .color = color, .preview = 1};
	provider_test_run(p, &a, o, 5);
}

/* Blue/green after a scale_down by haproxy: the next release's preview
 * colour is in maintenance, unchecked; its verify drains it, which HAProxy
 * checks and sends no new traffic, and passes. */
static void test_a_preview_verify_drains_a_colour_in_maintenance_and_passes(void **state)
{
	struct provider *p = make_web();
	struct outcome o;
	int counts[NSERVERS], weight, admin;
	(void)state;

	run(p, PROVIDER_SWITCH, -1, "blue", &o);
	assert_true(o.ok);
	run(p, PROVIDER_SCALE_DOWN, -1, "green", &o);
	assert_true(o.ok);
	run(p, PROVIDER_VERIFY, -1, "green", &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "green is maint"));

	run_preview_verify(p, "green", &o);
	assert_true(o.ok);
	assert_non_null(strstr(o.msg, "verify done: web:"));
	server_state("web", "green", &weight, &admin);
	assert_int_equal(admin & 0x01, 0);
	assert_int_equal(admin & 0x08, 0x08);
	traffic(web_port, counts);
	assert_int_equal(counts[SRV_BLUE], REQUESTS);
	/* Drained is ready for a preview only. */
	run(p, PROVIDER_VERIFY, -1, "green", &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "green is drain"));

	run(p, PROVIDER_SWITCH, -1, "green", &o);
	assert_true(o.ok);
	run(p, PROVIDER_VERIFY, -1, "green", &o);
	assert_true(o.ok);
	provider_free(p);
}

/* A preview colour HAProxy's health check finds down is not ready. */
static void test_a_preview_verify_fails_while_haproxy_finds_the_colour_down(void **state)
{
	struct provider *p = provider_test_make(
	    json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "type", "haproxy", "socket", sock, "backend",
		      "dark", "colors", "blue", "blue", "green", "green"));
	struct outcome o;
	(void)state;

	/* Its first check may not have run yet when the test starts. */
	for (int i = 0; i < 50; i++) {
		run_preview_verify(p, "green", &o);
		if (!o.ok)
			break;
		usleep(100000);
	}
	assert_false(o.ok);
	if (!strstr(o.msg, "verify failed: green is drain and down"))
		fail_msg("%s", o.msg);
	run_preview_verify(p, "blue", &o);
	assert_true(o.ok);
	provider_free(p);
}

/* A canary's verify names the colour "canary" (and the final one
 * "stable"), also where the provider has colours beside them. */
static void test_canary_and_stable_verify_beside_colours(void **state)
{
	struct provider *p = provider_test_make(
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "type", "haproxy", "socket", sock,
		      "backend", "app", "stable", "stable", "canary", "canary", "colors", "blue",
		      "stable", "green", "canary"));
	struct outcome o;
	(void)state;

	run(p, PROVIDER_VERIFY, -1, "canary", &o);
	assert_true(o.ok);
	run(p, PROVIDER_VERIFY, -1, "stable", &o);
	assert_true(o.ok);
	struct provider_action a = {.verb = PROVIDER_VERIFY, .weight = -1, .color = "purple"};
	char err[256] = "";
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "verify: no servers for the colour \"purple\"");
	provider_free(p);
}

static void test_unknown_server_fails_with_haproxys_answer(void **state)
{
	char err[256] = "";
	json_t *def = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "haproxy", "socket", sock,
				"backend", "app", "stable", "stable", "canary", "nope");
	struct provider *p = provider_new(base, def, err, sizeof(err));
	struct outcome o;
	(void)state;

	assert_non_null(p);
	run(p, PROVIDER_SET_WEIGHT, 10, NULL, &o);
	assert_false(o.ok);
	assert_string_equal(
	    o.msg, "set_weight failed: \"set server app/nope weight 10\": No such server.");
	run(p, PROVIDER_VERIFY, -1, NULL, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "app/nope: no such server"));
	json_decref(def);
	provider_free(p);
}

static void test_unreachable_runtime_api_fails(void **state)
{
	char path[160];
	struct provider *p;
	struct outcome o;
	(void)state;

	snprintf(path, sizeof(path), "%s/missing.sock", dir);
	p = make(path);
	run(p, PROVIDER_SET_WEIGHT, 10, NULL, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "set_weight failed:"));
	provider_free(p);
}

/* set_weight 10 through the stand-in of that kind fails with want; the
 * provider, for more. */
static struct provider *set_weight_fails(enum stand_in kind, const char *want)
{
	struct provider *p = provider_test_make(json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:i}", "type", "haproxy", "socket", stand_in_socks[kind],
	    "backend", "app", "stable", "stable", "canary", "canary", "timeout_ms", 500));
	struct outcome o;

	run(p, PROVIDER_SET_WEIGHT, 10, NULL, &o);
	assert_false(o.ok);
	assert_string_equal(o.msg, want);
	return p;
}

static void test_a_connection_closed_without_an_answer_fails(void **state)
{
	struct provider *p = set_weight_fails(
	    STAND_IN_MUTE, "set_weight failed: \"set server app/canary weight 10\": the runtime "
			   "API closed the connection without a complete answer");
	struct outcome o;
	(void)state;

	run(p, PROVIDER_ABORT, -1, NULL, &o);
	assert_false(o.ok);
	provider_free(p);
}

static void test_an_answer_that_never_ends_fails_in_the_commands_time(void **state)
{
	(void)state;
	provider_free(set_weight_fails(
	    STAND_IN_TRICKLE, "set_weight failed: the runtime API did not answer within 500 ms"));
}

/* The message goes into JSON (the step's, the stage's error). */
static void test_an_answer_that_is_not_utf8_is_quoted_as_utf8(void **state)
{
	(void)state;
	provider_free(set_weight_fails(STAND_IN_GARBLED,
				       "set_weight failed: \"set server app/canary weight 10\": "
				       "\xef\xbf\xbd\xef\xbf\xbd what is this"));
}

static void test_actions_it_cannot_do_are_refused(void **state)
{
	struct provider *p = make_web();
	struct provider_action a = {.verb = PROVIDER_APPLY, .image = "img", .weight = -1};
	struct outcome o = {0};
	char err[256] = "";
	(void)state;

	assert_false(provider_supports(p, PROVIDER_APPLY));
	assert_false(provider_supports(p, PROVIDER_SET_WEIGHT));
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "the haproxy provider cannot apply");
	a.verb = PROVIDER_SWITCH;
	a.color = "purple";
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "switch: no servers for the colour \"purple\"");
	a.color = NULL;
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "switch: needs a colour");
	provider_free(p);
}

static void expect_error(const char *json, const char *want)
{
	char err[256] = "";
	json_t *def = json_loads(json, 0, NULL);

	assert_non_null(def);
	assert_null(provider_new(base, def, err, sizeof(err)));
	assert_string_equal(err, want);
	json_decref(def);
}

static void test_bad_definitions_are_refused_with_the_key(void **state)
{
	(void)state;
	expect_error("{\"type\": \"haproxy\", \"backend\": \"app\"}",
		     "provider.socket: required, the runtime API's address");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"haproxy.local:9999\", \"backend\": "
		     "\"a\"}",
		     "provider.socket: \"haproxy.local:9999\" is neither a unix socket path nor "
		     "ip:port");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\"}",
		     "provider.backend: required, a backend name");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\"}",
		     "provider: needs stable and canary servers, or colors");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\", \"stable\": "
		     "\"s\", \"canary\": \"a/b\"}",
		     "provider.canary: a server name or a list of them");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\", \"colors\": "
		     "{\"blue\": \"b\"}}",
		     "provider.colors: a map of two or more colours to their servers");
	/* Less than a pipeline file's durations allow: the limit is named. */
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\", \"stable\": "
		     "\"s\", \"canary\": \"c\", \"timeout_ms\": 3600000}",
		     "provider.timeout_ms: a positive number of milliseconds, at most 600000");
}

/* A server named twice would take two weights, the last one winning, or
 * be put in maintenance with the colour going out while another colour
 * serves through it. */
static void test_a_server_is_named_once(void **state)
{
	(void)state;
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\", \"stable\": "
		     "\"s\", \"canary\": [\"c\", \"s\"]}",
		     "provider.canary: \"s\" is in stable too");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\", \"stable\": "
		     "[\"s\", \"s\"], \"canary\": \"c\"}",
		     "provider.stable: \"s\" is named twice");
	expect_error("{\"type\": \"haproxy\", \"socket\": \"/s\", \"backend\": \"a\", \"colors\": "
		     "{\"blue\": [\"b\", \"both\"], \"green\": [\"both\", \"g\"]}}",
		     "provider.colors.green: \"both\" is in colors.blue too");
}

/* A definition with n stable servers and one canary. */
static json_t *stable_servers(int n)
{
	json_t *stable = json_array();

	for (int i = 0; i < n; i++)
		json_array_append_new(stable, json_sprintf("s%d", i));
	return json_pack("{s:s, s:s, s:s, s:o, s:s}", "type", "haproxy", "socket", "/s", "backend",
			 "a", "stable", stable, "canary", "c");
}

/* set_weight sets each stable and canary server, switch each colour's:
 * more than one action's commands would make it fail every time. */
static void test_no_more_servers_than_an_action_sets(void **state)
{
	struct provider_action a = {.verb = PROVIDER_SET_WEIGHT, .image = "img", .weight = 20};
	struct outcome o = {0};
	json_t *def = stable_servers(63);
	char err[256] = "";
	struct provider *p = provider_new(base, def, err, sizeof(err));
	(void)state;

	assert_non_null(p);
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), 0);
	provider_free(p);
	json_decref(def);
	def = stable_servers(64);
	assert_null(provider_new(base, def, err, sizeof(err)));
	assert_string_equal(err, "provider.canary: too many servers (an action sets at most 64)");
	json_decref(def);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_weight_zero_sends_no_request_to_canary, setup),
	    cmocka_unit_test_setup(test_weight_twenty_splits_traffic_one_in_five, setup),
	    cmocka_unit_test_setup(
		test_weight_twenty_is_a_fifth_of_the_traffic_whatever_the_servers, setup),
	    cmocka_unit_test_setup(
		test_weight_hundred_sends_everything_to_canary_and_abort_takes_it_back, setup),
	    cmocka_unit_test_setup(test_verify_fails_when_weights_differ, setup),
	    cmocka_unit_test_setup(test_tcp_runtime_api_sets_weights, setup),
	    cmocka_unit_test_setup(test_switch_moves_all_traffic_to_the_colour, setup),
	    cmocka_unit_test_setup(test_a_preview_verify_drains_a_colour_in_maintenance_and_passes,
				   setup),
	    cmocka_unit_test_setup(test_a_preview_verify_fails_while_haproxy_finds_the_colour_down,
				   setup),
	    cmocka_unit_test_setup(test_canary_and_stable_verify_beside_colours, setup),
	    cmocka_unit_test_setup(test_unknown_server_fails_with_haproxys_answer, setup),
	    cmocka_unit_test_setup(test_unreachable_runtime_api_fails, setup),
	    cmocka_unit_test_setup(test_a_connection_closed_without_an_answer_fails, setup),
	    cmocka_unit_test_setup(test_an_answer_that_never_ends_fails_in_the_commands_time,
				   setup),
	    cmocka_unit_test_setup(test_an_answer_that_is_not_utf8_is_quoted_as_utf8, setup),
	    cmocka_unit_test_setup(test_actions_it_cannot_do_are_refused, setup),
	    cmocka_unit_test_setup(test_bad_definitions_are_refused_with_the_key, setup),
	    cmocka_unit_test_setup(test_a_server_is_named_once, setup),
	    cmocka_unit_test_setup(test_no_more_servers_than_an_action_sets, setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
