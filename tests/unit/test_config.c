/* Tests of config/: settings, pipeline files, the loader's limits and the
 * exact text of each kind of error. Every test writes its files into its own
 * temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "tmpdir.h"

struct fx {
	char dir[64];
	char err[1024];
	char path[512];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(tmpdir_make(f->dir, sizeof(f->dir), "sluice-config"), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	tmpdir_remove(f->dir);
	free(f);
	return 0;
}

/* Writes len bytes of data to dir/name (creating its subdirectories)
 * and returns the full path in f->path. */
static const char *write_bytes(struct fx *f, const char *name, const char *data, size_t len)
{
	const char *slash;
	FILE *fp;

	for (slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
		char sub[PATH_MAX];

		snprintf(sub, sizeof(sub), "%s/%.*s", f->dir, (int)(slash - name), name);
		mkdir(sub, 0755);
	}
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
	fp = fopen(f->path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	return f->path;
}

static const char *write_file(struct fx *f, const char *name, const char *text)
{
	return write_bytes(f, name, text, strlen(text));
}

/* Checks that loading pipeline text fails with "<its path>:<want>". */
static void expect_pipeline_error(struct fx *f, const char *text, const char *want)
{
	struct pipeline p;
	char full[2048];

	write_file(f, "secrets/webhook", "s3cret\n");
	write_file(f, "app.yaml", text);
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), -1);
	snprintf(full, sizeof(full), "%s:%s", f->path, want);
	assert_string_equal(f->err, full);
	assert_null(p.def);
	assert_null(p.name);
}

static void expect_settings_error(struct fx *f, const char *text, const char *want)
{
	struct settings s;
	char full[2048];

	write_file(f, "sluice.yaml", text);
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), -1);
	snprintf(full, sizeof(full), "%s:%s", f->path, want);
	assert_string_equal(f->err, full);
	assert_null(s.brokers);
}

/* 64 bytes, the longest stage name. */
#define LONG_NAME "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl"

#define TRIGGER                                                                                    \
	"trigger:\n"                                                                               \
	"  github:\n"                                                                              \
	"    repository: acme/app\n"                                                               \
	"    secret_file: secrets/webhook\n"

/* --- durations ------------------------------------------------------------ */

static void test_duration_parses_units_and_combinations(void **state)
{
	(void)state;
	assert_int_equal(config_parse_duration_ms("90"), 90000);
	assert_int_equal(config_parse_duration_ms("90s"), 90000);
	assert_int_equal(config_parse_duration_ms("10m"), 600000);
	assert_int_equal(config_parse_duration_ms("1h30m"), 5400000);
	assert_int_equal(config_parse_duration_ms("250ms"), 250);
	assert_int_equal(config_parse_duration_ms("2d"), 172800000);
	assert_int_equal(config_parse_duration_ms("1m30s500ms"), 90500);
	assert_int_equal(config_parse_duration_ms("0"), 0);
}

static void test_duration_rejects_garbage_and_overflow(void **state)
{
	(void)state;
	assert_int_equal(config_parse_duration_ms(""), -1);
	assert_int_equal(config_parse_duration_ms(NULL), -1);
	assert_int_equal(config_parse_duration_ms("10x"), -1);
	assert_int_equal(config_parse_duration_ms("m"), -1);
	assert_int_equal(config_parse_duration_ms("-5s"), -1);
	assert_int_equal(config_parse_duration_ms(" 5s"), -1);
	assert_int_equal(config_parse_duration_ms("1h30"), -1);
	assert_int_equal(config_parse_duration_ms("1.5h"), -1);
	assert_int_equal(config_parse_duration_ms("99999999999999999999"), -1);
	assert_int_equal(config_parse_duration_ms("9223372036854775807d"), -1);
}

/* --- settings ------------------------------------------------------------- */

static void test_settings_defaults_without_file(void **state)
{
	struct fx *f = *state;
	struct settings s;
	char cwd[PATH_MAX], want[PATH_MAX + 32];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(settings_load(NULL, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.brokers, "127.0.0.1:9092");
	assert_string_equal(s.topic_prefix, "sluice.");
	assert_string_equal(s.redis_url, "redis://127.0.0.1:6379");
	assert_string_equal(s.key_prefix, "sluice:");
	assert_int_equal(s.redis_timeout_ms, 5000);
	assert_string_equal(s.listen, "127.0.0.1:8080");
	assert_string_equal(s.public_url, "http://127.0.0.1:8080");
	assert_int_equal(s.max_body, 25 * 1024 * 1024);
	assert_int_equal(s.max_request_memory, 256 * 1024 * 1024);
	assert_int_equal(s.max_connections, 1024);
	assert_true(s.run_retention_ms == 90LL * 24 * 3600 * 1000);
	snprintf(want, sizeof(want), "%s/pipelines.d", cwd);
	assert_string_equal(s.pipelines_dir, want);
	assert_string_equal(s.state_dir, "/var/lib/sluice");
	assert_int_equal(s.concurrency, 1);
	assert_int_equal(s.kill_grace_ms, 10000);
	assert_int_equal(s.checkout_timeout_ms, 600000);
	assert_int_equal(s.lease_ms, 30000);
	assert_int_equal(s.requeue_after_ms, 60000);
	settings_clear(&s);
}

static void test_settings_empty_file_gives_defaults(void **state)
{
	struct fx *f = *state;
	struct settings s;
	char want[PATH_MAX];

	write_file(f, "sluice.yaml", "# nothing set\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	snprintf(want, sizeof(want), "%s/pipelines.d", f->dir);
	assert_string_equal(s.pipelines_dir, want);
	assert_int_equal(s.concurrency, 1);
	assert_int_equal(s.fetch_wait_ms, 10);
	settings_clear(&s);
	/* A document of nothing is an empty file too. */
	write_file(f, "sluice.yaml", "---\n# nothing set\n");
	if (settings_load(f->path, &s, f->err, sizeof(f->err)) != 0)
		fail_msg("%s", f->err);
	assert_int_equal(s.concurrency, 1);
	settings_clear(&s);
}

static void test_settings_full_file(void **state)
{
	struct fx *f = *state;
	struct settings s;
	char want[PATH_MAX];

	write_file(f, "etc/sluice.yaml",
		   "kafka:\n"
		   "  brokers: k1:9092,k2:9092\n"
		   "  topic_prefix: ci.\n"
		   "  fetch_wait: 3ms\n"
		   "redis:\n"
		   "  url: redis://10.0.0.5:6380\n"
		   "  key_prefix: ''\n"
		   "  timeout: 2s\n"
		   "agent:\n"
		   "  listen: 0.0.0.0:9000\n"
		   "  public_url: https://ci.example.com\n"
		   "  max_body: 512KiB\n"
		   "  max_request_memory: 64MiB\n"
		   "  max_connections: 200\n"
		   "  run_retention: 30d\n"
		   "  requeue_after: 2m\n"
		   "pipelines_dir: pipes\n"
		   "worker:\n"
		   "  state_dir: /srv/sluice\n"
		   "  concurrency: 4\n"
		   "  kill_grace: 3\n"
		   "  checkout_timeout: 45m\n"
		   "  lease: 1m30s\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.brokers, "k1:9092,k2:9092");
	assert_string_equal(s.topic_prefix, "ci.");
	assert_int_equal(s.fetch_wait_ms, 3);
	assert_string_equal(s.redis_url, "redis://10.0.0.5:6380");
	assert_string_equal(s.key_prefix, "");
	assert_int_equal(s.redis_timeout_ms, 2000);
	assert_string_equal(s.listen, "0.0.0.0:9000");
	assert_string_equal(s.public_url, "https://ci.example.com");
	assert_int_equal(s.max_body, 512 * 1024);
	assert_int_equal(s.max_request_memory, 64 * 1024 * 1024);
	assert_int_equal(s.max_connections, 200);
	assert_true(s.run_retention_ms == 30LL * 24 * 3600 * 1000);
	assert_int_equal(s.requeue_after_ms, 120000);
	snprintf(want, sizeof(want), "%s/etc/pipes", f->dir);
	assert_string_equal(s.pipelines_dir, want);
	assert_string_equal(s.state_dir, "/srv/sluice");
	assert_int_equal(s.concurrency, 4);
	assert_int_equal(s.kill_grace_ms, 3000);
	assert_int_equal(s.checkout_timeout_ms, 45 * 60000);
	assert_int_equal(s.lease_ms, 90000);
	settings_clear(&s);
}

static void test_settings_public_url_follows_listen(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "sluice.yaml", "agent: {listen: '127.0.0.1:7000', max_body: 1000}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.public_url, "http://127.0.0.1:7000");
	assert_int_equal(s.max_body, 1000);
	settings_clear(&s);
	write_file(f, "sluice.yaml", "agent: {listen: '[::1]:7000'}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.public_url, "http://[::1]:7000");
	settings_clear(&s);
}

/* A listener that speaks TLS is reached over https, by default and when
 * --listen moves it. */
static void test_settings_public_url_is_https_with_tls(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "sluice.yaml",
		   "agent: {listen: '127.0.0.1:7000', tls_cert: c.pem, tls_key: k.pem}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.public_url, "https://127.0.0.1:7000");
	assert_int_equal(settings_listen_on(&s, "127.0.0.1:7001"), 0);
	assert_string_equal(s.listen, "127.0.0.1:7001");
	assert_string_equal(s.public_url, "https://127.0.0.1:7001");
	settings_clear(&s);
}

/* --listen moves the default public URL along, never one the file sets:
 * links would otherwise name the listener behind the proxy. */
static void test_settings_listen_on_keeps_a_public_url_set(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "sluice.yaml", "agent: {public_url: 'https://ci.example.com'}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_int_equal(settings_listen_on(&s, "127.0.0.1:7001"), 0);
	assert_string_equal(s.listen, "127.0.0.1:7001");
	assert_string_equal(s.public_url, "https://ci.example.com");
	settings_clear(&s);
}

/* Unless given, room for one body of the largest size at least. */
static void test_settings_max_request_memory_follows_a_larger_max_body(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "sluice.yaml", "agent: {max_body: 512MiB}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_true(s.max_request_memory == 512u * 1024 * 1024);
	settings_clear(&s);
}

static void test_settings_run_retention_forever_keeps_every_run(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "sluice.yaml", "agent: {run_retention: forever}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_true(s.run_retention_ms == 0);
	settings_clear(&s);
}

static void test_settings_brokers_from_file(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "creds/brokers", "  k1:9092,k2:9092 \nignored second line\n");
	write_file(f, "sluice.yaml", "kafka:\n  brokers: '@creds/brokers'\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.brokers, "k1:9092,k2:9092");
	settings_clear(&s);
}

static void test_settings_brokers_file_missing_or_empty(void **state)
{
	struct fx *f = *state;
	char want[2048];

	snprintf(want, sizeof(want),
		 "2:12: kafka.brokers: cannot read \"%s/nope\": No such file or directory", f->dir);
	expect_settings_error(f, "kafka:\n  brokers: '@nope'\n", want);
	write_file(f, "empty", "\n \n");
	snprintf(want, sizeof(want), "2:12: kafka.brokers: file \"%s/empty\" is empty", f->dir);
	expect_settings_error(f, "kafka:\n  brokers: '@empty'\n", want);
}

static void test_settings_errors_name_position_and_key(void **state)
{
	struct fx *f = *state;

	expect_settings_error(f, "kafka:\n  bokers: x\n", "2:3: kafka.bokers: unknown key");
	expect_settings_error(f, "colour: blue\n", "1:1: colour: unknown key");
	expect_settings_error(f, "redis:\n  url: 6379\n", "2:8: redis.url: expected a string");
	expect_settings_error(f, "redis:\n  timeout: 10 minutes\n",
			      "2:12: redis.timeout: expected a duration like \"10m\"");
	expect_settings_error(f, "worker: {lease: 0}\n",
			      "1:17: worker.lease: must be longer than 0");
	expect_settings_error(f, "worker: {kill_grace: 30d}\n",
			      "1:22: worker.kill_grace: is too long (at most 24 days)");
	/* Seconds whose milliseconds pass LLONG_MAX, for a key with no other bound. */
	expect_settings_error(f, "agent: {run_retention: 9300000000000000}\n",
			      "1:24: agent.run_retention: is too long (at most 106751991167 days)");
	/* A state_dir leaving no room for a stage's paths below it. */
	char text[700] = "worker: {state_dir: /", *at = text + strlen(text);
	memset(at, 'd', 512);
	strcpy(at + 512, "}\n");
	expect_settings_error(f, text, " worker.state_dir: at most 512 bytes once resolved");
	/* Bounds of their own, named as they would be written. */
	expect_settings_error(f, "kafka: {session_timeout: 2h}\n",
			      "1:26: kafka.session_timeout: must be from 1s to 1h");
	expect_settings_error(f, "kafka: {session_timeout: 500ms}\n",
			      "1:26: kafka.session_timeout: must be from 1s to 1h");
	expect_settings_error(f, "worker: {lease: 1ms}\n",
			      "1:17: worker.lease: must be 1s at least");
	expect_settings_error(f, "kafka: {fetch_wait: 6m}\n", "1:21: kafka.fetch_wait: at most 5m");
	expect_settings_error(f, "worker: {checkout_timeout: soon}\n",
			      "1:28: worker.checkout_timeout: expected a duration like \"10m\"");
	expect_settings_error(f, "worker:\n  concurrency: 0\n",
			      "2:16: worker.concurrency: must be between 1 and 1024");
	expect_settings_error(f, "worker:\n  concurrency: '4'\n",
			      "2:16: worker.concurrency: expected an integer");
	expect_settings_error(f, "agent:\n  max_body: 25 MB\n",
			      "2:13: agent.max_body: expected a size like \"25MiB\"");
	expect_settings_error(f, "kafka: [a, b]\n", "1:8: kafka: expected a mapping");
	expect_settings_error(f, "- a\n", "1:1: expected a mapping");
	expect_settings_error(f, "agent:\n  listen: 8080\n",
			      "2:11: agent.listen: expected a string");
	expect_settings_error(f, "agent:\n  listen: ':8080'\n",
			      "2:11: agent.listen: expected HOST:PORT, such as 127.0.0.1:8080");
	expect_settings_error(f, "agent:\n  listen: localhost:80800\n",
			      "2:11: agent.listen: expected HOST:PORT, such as 127.0.0.1:8080");
	/* Without a port the listener would take any free one, where no
	 * scraper looks. */
	expect_settings_error(
	    f, "worker:\n  metrics_listen: 127.0.0.1\n",
	    "2:19: worker.metrics_listen: expected IP:PORT, such as 127.0.0.1:9101");
	expect_settings_error(
	    f, "worker:\n  metrics_listen: '::1'\n",
	    "2:19: worker.metrics_listen: expected IP:PORT, such as 127.0.0.1:9101");
	expect_settings_error(f, "redis:\n  url: redis://127.0.0.1:6379/0\n",
			      "2:8: redis.url: expected redis://HOST:PORT or unix:/PATH");
	expect_settings_error(f, "redis:\n  url: unix:redis.sock\n",
			      "2:8: redis.url: expected redis://HOST:PORT or unix:/PATH");
}

static void test_settings_github(void **state)
{
	struct fx *f = *state;
	struct settings s;
	char want[PATH_MAX];

	assert_int_equal(settings_load(NULL, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.github_api_url, "https://api.github.com");
	assert_null(s.github_token_file); /* no commit statuses unless configured */
	assert_int_equal(s.github_backoff_ms, 1000);
	assert_int_equal(s.github_backoff_max_ms, 300000);
	assert_int_equal(s.github_give_up_ms, 3600000);
	settings_clear(&s);

	write_file(f, "etc/sluice.yaml",
		   "github:\n"
		   "  api_url: https://ghe.example.com/api/v3/\n"
		   "  token_file: creds/github-token\n"
		   "  backoff: 250ms\n"
		   "  backoff_max: 1m\n"
		   "  give_up_after: 2h\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_string_equal(s.github_api_url, "https://ghe.example.com/api/v3");
	snprintf(want, sizeof(want), "%s/etc/creds/github-token", f->dir);
	assert_string_equal(s.github_token_file, want);
	assert_int_equal(s.github_backoff_ms, 250);
	assert_int_equal(s.github_backoff_max_ms, 60000);
	assert_int_equal(s.github_give_up_ms, 7200000);
	settings_clear(&s);

	expect_settings_error(f, "github:\n  token: abc\n", "2:3: github.token: unknown key");
	expect_settings_error(f, "github: {api_url: '/'}\n",
			      "1:19: github.api_url: expected a URL");
}

/* The password is read from its file as the settings load, relative to the
 * settings' directory; it is never written in sluice.yaml itself. */
static void test_settings_redis_password(void **state)
{
	struct fx *f = *state;
	struct settings s;
	char want[PATH_MAX + 128];

	assert_int_equal(settings_load(NULL, &s, f->err, sizeof(f->err)), 0);
	assert_null(s.redis_password_file); /* no AUTH unless configured */
	assert_null(s.redis_password);
	assert_null(s.redis_user);
	settings_clear(&s);

	write_file(f, "etc/creds/redis", "  pass word \n");
	write_file(f, "etc/sluice.yaml", "redis:\n  user: sluice\n  password_file: creds/redis\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	snprintf(want, sizeof(want), "%s/etc/creds/redis", f->dir);
	assert_string_equal(s.redis_password_file, want);
	assert_string_equal(s.redis_password, "pass word");
	assert_string_equal(s.redis_user, "sluice");
	settings_clear(&s);

	expect_settings_error(f, "redis:\n  url: redis://:s3cret@127.0.0.1:6379\n",
			      "2:8: redis.url: no user or password here, where logs would show "
			      "them: give them as redis.user and redis.password_file");
	expect_settings_error(f, "redis:\n  url: redis://sluice:s3cret@127.0.0.1:6379\n",
			      "2:8: redis.url: no user or password here, where logs would show "
			      "them: give them as redis.user and redis.password_file");
	expect_settings_error(f, "redis:\n  user: sluice\n",
			      "2:9: redis.user: needs redis.password_file, the user's password");
	snprintf(want, sizeof(want),
		 "2:18: redis.password_file: \"%s/absent\": No such file or directory", f->dir);
	expect_settings_error(f, "redis:\n  password_file: absent\n", want);
	write_file(f, "empty", " \n");
	snprintf(want, sizeof(want),
		 "2:18: redis.password_file: \"%s/empty\": must hold the password on one line",
		 f->dir);
	expect_settings_error(f, "redis:\n  password_file: empty\n", want);
	unsetenv("CREDENTIALS_DIRECTORY");
	expect_settings_error(f, "redis:\n  password_file: ${CREDENTIALS_DIRECTORY}/redis\n",
			      "2:18: redis.password_file: \"${CREDENTIALS_DIRECTORY}/redis\": "
			      "CREDENTIALS_DIRECTORY is not set");
}

static void test_settings_missing_file(void **state)
{
	struct fx *f = *state;
	struct settings s;
	char path[PATH_MAX], want[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/absent.yaml", f->dir);
	assert_int_equal(settings_load(path, &s, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	assert_string_equal(f->err, want);
	assert_int_equal(settings_load(f->dir, &s, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", f->dir);
	assert_string_equal(f->err, want);
}

/* --- pipelines ------------------------------------------------------------ */

static const char full_pipeline_yaml[] = "name: app\n"
					 "trigger:\n"
					 "  github:\n"
					 "    repository: acme/app\n"
					 "    events: [push, pull_request]\n"
					 "    branches: [\"main\", \"release/**\"]\n"
					 "    tags: [\"v*\"]\n"
					 "    secret_file: secrets/webhook\n"
					 "checkout:\n"
					 "  url: file:///srv/git/app\n"
					 "vars: {GREETING: hello, COUNT: 007, ON: true}\n"
					 "secrets: {TOKEN: secrets/token}\n"
					 "stages:\n"
					 "  build:\n"
					 "    run: [make, \"${SLUICE_SHA}\", 2]\n"
					 "    timeout: 10m\n"
					 "  unit:\n"
					 "    kind: test\n"
					 "    run: [make, test]\n"
					 "    needs: build\n"
					 "    timeout: 90\n"
					 "  scan:\n"
					 "    run: [trivy, fs, .]\n"
					 "    needs: [build]\n"
					 "  deploy:\n"
					 "    run: [./deploy.sh]\n"
					 "    needs: [unit, scan]\n"
					 "    timeout: 250ms\n";

static const char full_pipeline_json[] =
    "{\n"
    "\t\"name\": \"app\",\n"
    "\t\"trigger\": {\"github\": {\"repository\": \"acme/app\",\n"
    "\t\t\"events\": [\"push\", \"pull_request\"],\n"
    "\t\t\"branches\": [\"main\", \"release/**\"], \"tags\": [\"v*\"],\n"
    "\t\t\"secret_file\": \"secrets/webhook\"}},\n"
    "\t\"checkout\": {\"url\": \"file:///srv/git/app\"},\n"
    "\t\"vars\": {\"GREETING\": \"hello\", \"COUNT\": \"007\", \"ON\": true},\n"
    "\t\"secrets\": {\"TOKEN\": \"secrets/token\"},\n"
    "\t\"stages\": {\n"
    "\t\t\"build\": {\"run\": [\"make\", \"${SLUICE_SHA}\", 2], \"timeout\": \"10m\"},\n"
    "\t\t\"unit\": {\"kind\": \"test\", \"run\": [\"make\", \"test\"], \"needs\": \"build\",\n"
    "\t\t\t\"timeout\": 90},\n"
    "\t\t\"scan\": {\"run\": [\"trivy\", \"fs\", \".\"], \"needs\": [\"build\"]},\n"
    "\t\t\"deploy\": {\"run\": [\"./deploy.sh\"], \"needs\": [\"unit\", \"scan\"],\n"
    "\t\t\t\"timeout\": \"250ms\"}}}\n";

static void check_full_pipeline(struct fx *f, const char *name, const char *text)
{
	static const char *const order[] = {"build", "unit", "scan", "deploy"};
	struct pipeline p;
	json_t *want, *stages;
	char *want_text, *dump;
	const char *key;
	json_t *v;
	size_t i = 0;

	write_file(f, "secrets/webhook", "s3cret\r\n");
	write_file(f, "secrets/token", "t0k3n-value\n");
	write_file(f, name, text);
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	assert_string_equal(p.name, "app");
	assert_string_equal(p.file, f->path);
	assert_string_equal(p.repository, "acme/app");
	assert_string_equal(p.secret, "s3cret");
	assert_int_equal(json_array_size(p.events), 2);
	assert_string_equal(json_string_value(json_array_get(p.events, 0)), "push");
	assert_string_equal(json_string_value(json_array_get(p.events, 1)), "pull_request");
	assert_int_equal(json_array_size(p.branches), 2);
	assert_string_equal(json_string_value(json_array_get(p.branches, 1)), "release/**");
	assert_int_equal(json_array_size(p.tags), 1);
	assert_string_equal(json_string_value(json_array_get(p.tags, 0)), "v*");

	assert_true(
	    asprintf(&want_text,
		     "{\"name\": \"app\","
		     " \"vars\": {\"GREETING\": \"hello\", \"COUNT\": \"007\", \"ON\": \"true\"},"
		     " \"secrets\": {\"TOKEN\": \"%s/secrets/token\"},"
		     " \"checkout\": {\"url\": \"file:///srv/git/app\"},"
		     " \"stages\": {"
		     "  \"build\": {\"kind\": \"build\", \"run\": [\"make\", \"${SLUICE_SHA}\","
		     " \"2\"], \"needs\": [], \"timeout\": 600},"
		     "  \"unit\": {\"kind\": \"test\", \"run\": [\"make\", \"test\"],"
		     " \"needs\": [\"build\"], \"timeout\": 90},"
		     "  \"scan\": {\"kind\": \"scan\", \"run\": [\"trivy\", \"fs\", \".\"],"
		     " \"needs\": [\"build\"], \"timeout\": 3600},"
		     "  \"deploy\": {\"kind\": \"deploy\", \"run\": [\"./deploy.sh\"],"
		     " \"needs\": [\"unit\", \"scan\"], \"timeout\": 1}}}",
		     f->dir) > 0);
	want = json_loads(want_text, 0, NULL);
	assert_non_null(want);
	assert_true(json_equal(p.def, want));
	stages = json_object_get(p.def, "stages");
	json_object_foreach(stages, key, v)
	{
		assert_true(json_is_object(v));
		assert_string_equal(key, order[i++]);
	}
	assert_int_equal(i, 4);
	/* The secret's content stays out of the definition a run records. */
	dump = json_dumps(p.def, 0);
	assert_non_null(dump);
	assert_null(strstr(dump, "t0k3n"));
	free(dump);
	json_decref(want);
	free(want_text);
	pipeline_clear(&p);
}

static void test_pipeline_full_yaml_file(void **state)
{
	check_full_pipeline(*state, "app.yaml", full_pipeline_yaml);
}

static void test_pipeline_json_file_loads_the_same(void **state)
{
	check_full_pipeline(*state, "app.json", full_pipeline_json);
}

/* A name is a var or a secret: both, ${NAME} in run: arguments would be the
 * var and the stage's environment the secret. An environment's var or
 * secret replaces the pipeline's of the same name, of either kind. */
static void test_a_name_is_a_var_or_a_secret(void **state)
{
	struct fx *f = *state;
	struct pipeline p;

	write_file(f, "secrets/webhook", "s3cret");
	expect_pipeline_error(f,
			      TRIGGER "vars: {TOKEN: plain}\nsecrets: {TOKEN: secrets/webhook}\n"
				      "stages:\n  build: {run: [x]}\n",
			      "6:11: secrets.TOKEN: TOKEN is a var of the pipeline too: a name is "
			      "a var or a secret");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build: {run: [x]}\nenvironments:\n  prod:\n"
				      "    vars: {X: a}\n    secrets: {X: secrets/webhook}\n"
				      "    deploy: {run: [d]}\n",
			      "10:15: environments.prod.secrets.X: X is a var of the environment "
			      "too: a name is a var or a secret");
	write_file(f, "app.yaml",
		   TRIGGER "vars: {A: a}\nsecrets: {DB: secrets/webhook}\n"
			   "stages:\n  build: {run: [x]}\nenvironments:\n  staging:\n"
			   "    vars: {DB: dev}\n    secrets: {A: secrets/webhook}\n"
			   "    deploy: {run: [d]}\n");
	if (pipeline_load_file(f->path, &p, f->err, sizeof(f->err)) != 0)
		fail_msg("%s", f->err);
	const json_t *stage = json_object_get(json_object_get(p.def, "stages"), "deploy@staging");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(stage, "vars"), "DB")), "dev");
	assert_null(json_object_get(json_object_get(stage, "secrets"), "DB"));
	assert_non_null(json_object_get(json_object_get(stage, "secrets"), "A"));
	assert_null(json_object_get(json_object_get(stage, "vars"), "A"));
	pipeline_clear(&p);
}

/* A local path in checkout.url is the pipeline file's, as its other paths
 * are; URLs and scp-like host:path are left as written. */
static void test_a_relative_checkout_path_is_the_file_s(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *url;
		int relative;
	} cases[] = {
	    {"../repos/app", 1},
	    {"repos/app.git", 1},
	    {"/srv/git/app", 0},
	    {"file:///srv/git/app", 0},
	    {"git@github.com:acme/app.git", 0},
	    {"https://github.com/acme/app.git", 0},
	    {"./a:b/app", 1},
	};
	char text[512], want[1024];
	struct pipeline p;

	write_file(f, "secrets/webhook", "s3cret");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text),
			 TRIGGER "checkout: {url: \"%s\"}\nstages:\n  build: {run: [x]}\n",
			 cases[i].url);
		write_file(f, "app.yaml", text);
		if (pipeline_load_file(f->path, &p, f->err, sizeof(f->err)) != 0)
			fail_msg("%s: %s", cases[i].url, f->err);
		snprintf(want, sizeof(want), "%s%s%s", cases[i].relative ? f->dir : "",
			 cases[i].relative ? "/" : "", cases[i].url);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(p.def, "checkout"), "url")),
		    want);
		pipeline_clear(&p);
	}
}

static void test_pipeline_defaults(void **state)
{
	struct fx *f = *state;
	struct pipeline p;

	write_file(f, "secrets/webhook", "s3cret");
	write_file(f, "my-app.yml", TRIGGER "stages:\n  test:\n    run: [make, check]\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	assert_string_equal(p.name, "my-app");
	assert_string_equal(p.secret, "s3cret");
	assert_int_equal(json_array_size(p.events), 1);
	assert_string_equal(json_string_value(json_array_get(p.events, 0)), "push");
	assert_null(p.branches);
	assert_null(p.tags);
	assert_null(json_object_get(p.def, "checkout"));
	assert_int_equal(json_object_size(json_object_get(p.def, "vars")), 0);
	assert_int_equal(json_object_size(json_object_get(p.def, "secrets")), 0);
	assert_int_equal(json_integer_value(json_object_get(
			     json_object_get(json_object_get(p.def, "stages"), "test"), "timeout")),
			 3600);
	pipeline_clear(&p);
}

static void test_pipeline_schema_errors(void **state)
{
	struct fx *f = *state;

	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [make]\n    tmeout: 5m\n",
			      "8:5: stages.build.tmeout: unknown key");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: make\n",
			      "7:10: stages.build.run: expected a list of strings");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [make, [x]]\n",
			      "7:17: stages.build.run[1]: expected a string");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: []\n",
			      "7:10: stages.build.run: must not be empty");
	/* No program has an empty name: every run of it would fail. */
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [\"\", x]\n",
			      "7:11: stages.build.run[0]: must not be empty");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [make]\n    timeout: soon\n",
			      "8:14: stages.build.timeout: expected a duration like \"10m\"");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    kind: build\n",
			      "7:5: stages.build.run: missing required key (or sh: a script, or "
			      "http: a request)");
	expect_pipeline_error(f,
			      "trigger:\n  github:\n    repository: acme/app\n"
			      "stages:\n  build:\n    run: [make]\n",
			      "3:5: trigger.github.secret_file: missing required key");
	expect_pipeline_error(f, TRIGGER, "1:1: stages: missing required key");
	expect_pipeline_error(f, "stages: {build: {run: [make]}}\n",
			      "1:1: trigger: missing required key");
	expect_pipeline_error(f, TRIGGER "stages: {}\n", "5:9: stages: must not be empty");
	expect_pipeline_error(f, TRIGGER "stages:\n  lint:\n    run: [make, lint]\n",
			      "7:5: stages.lint.kind: missing required key (the stage name is not "
			      "one of build, test, scan, push, deploy)");
	expect_pipeline_error(f, TRIGGER "stages:\n  lint:\n    kind: check\n    run: [x]\n",
			      "7:11: stages.lint.kind: unknown kind \"check\" (known: build, test, "
			      "scan, push, deploy)");
	expect_pipeline_error(f, TRIGGER "stages:\n  bad name:\n    kind: test\n    run: [x]\n",
			      "6:3: stages.bad name: invalid stage name (use at most 64 letters, "
			      "digits, '_' and '-')");
	/* A worker drops a job whose stage name is that long: the run would
	 * wait for it for ever. */
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  " LONG_NAME "x:\n    kind: test\n    run: [x]\n",
			      "6:3: stages." LONG_NAME "x: invalid stage name (use at most 64 "
			      "letters, digits, '_' and '-')");
	expect_pipeline_error(f, "name: 'a b'\n" TRIGGER "stages: {test: {run: [x]}}\n",
			      "1:7: name: invalid pipeline name (use letters, digits, '_', '.' and "
			      "'-', not \".\" or \"..\")");
	expect_pipeline_error(f, "name: '..'\n" TRIGGER "stages: {test: {run: [x]}}\n",
			      "1:7: name: invalid pipeline name (use letters, digits, '_', '.' and "
			      "'-', not \".\" or \"..\")");
	expect_pipeline_error(f, TRIGGER "vars: {1X: y}\nstages: {test: {run: [x]}}\n",
			      "5:8: vars.1X: invalid name (use letters, digits and '_', not "
			      "starting with a digit)");
	/* A run variable would win over the var, and a secret would win over
	 * the run variable ($SLUICE_OUTPUT sent elsewhere): either is a name
	 * the pipeline cannot have. */
	expect_pipeline_error(f, TRIGGER "vars: {SLUICE_REF: y}\nstages: {test: {run: [x]}}\n",
			      "5:8: vars.SLUICE_REF: the SLUICE_ prefix is reserved for the "
			      "variables sluice sets");
	expect_pipeline_error(f,
			      TRIGGER "secrets: {SLUICE_OUTPUT: secrets/webhook}\n"
				      "stages: {test: {run: [x]}}\n",
			      "5:11: secrets.SLUICE_OUTPUT: the SLUICE_ prefix is reserved for the "
			      "variables sluice sets");
	expect_pipeline_error(f, TRIGGER "vars: {X: [y]}\nstages: {test: {run: [x]}}\n",
			      "5:11: vars.X: expected a string");
	expect_pipeline_error(f,
			      "trigger:\n  github:\n    repository: acme\n"
			      "    secret_file: secrets/webhook\nstages: {test: {run: [x]}}\n",
			      "3:17: trigger.github.repository: expected \"owner/name\"");
	expect_pipeline_error(
	    f,
	    "trigger:\n  github:\n    repository: acme/app\n    events: [push, "
	    "pussh]\n    secret_file: secrets/webhook\nstages: {test: {run: [x]}}\n",
	    "4:20: trigger.github.events[1]: unknown event \"pussh\" (known: push, "
	    "pull_request)");
	/* Events GitHub sends but that start no run: listening for them would
	 * wait in vain. */
	const char *inert[] = {"create", "delete", "release", "workflow_dispatch", "ping"};
	for (size_t i = 0; i < sizeof(inert) / sizeof(inert[0]); i++) {
		char text[512], want[512];
		snprintf(text, sizeof(text),
			 "trigger:\n  github:\n    repository: acme/app\n    events: [push, %s]\n"
			 "    secret_file: secrets/webhook\nstages: {test: {run: [x]}}\n",
			 inert[i]);
		snprintf(want, sizeof(want),
			 "4:20: trigger.github.events[1]: \"%s\" starts no run: runs start from "
			 "push and pull_request events (a tag's push: tags)",
			 inert[i]);
		expect_pipeline_error(f, text, want);
	}
	/* "!" globs only exclude: a list of nothing else would let no ref pass. */
	expect_pipeline_error(f,
			      "trigger:\n  github:\n    repository: acme/app\n    branches: "
			      "[\"!dependabot/**\"]\n    secret_file: secrets/webhook\n"
			      "stages: {test: {run: [x]}}\n",
			      "4:15: trigger.github.branches: only \"!\" globs, which exclude: no "
			      "ref would match; list the refs to include before them (\"**\")");
}

static void test_pipeline_needs_errors(void **state)
{
	struct fx *f = *state;

	expect_pipeline_error(f, TRIGGER "stages:\n  test:\n    run: [x]\n    needs: [buld]\n",
			      "8:13: stages.test.needs[0]: unknown stage \"buld\"");
	expect_pipeline_error(f, TRIGGER "stages:\n  test:\n    run: [x]\n    needs: test\n",
			      "8:12: stages.test.needs: a stage cannot need itself");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n"
				      "  build: {run: [x], needs: [deploy]}\n"
				      "  test: {run: [x], needs: [build]}\n"
				      "  deploy: {run: [x], needs: [scan, test]}\n"
				      "  scan: {run: [x]}\n",
			      "7:28: stages.test.needs[0]: dependency cycle: build -> deploy -> "
			      "test -> build");
}

/* TRIGGER and n stages, then tail; the caller frees it. */
static char *stages_text(size_t n, const char *tail)
{
	size_t cap = sizeof(TRIGGER "stages:\n") + n * 32 + strlen(tail);
	char *text = malloc(cap);
	size_t len;

	assert_non_null(text);
	len = (size_t)snprintf(text, cap, TRIGGER "stages:\n");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "  s%zu: {kind: build, sh: x}\n", i);
	snprintf(text + len, cap - len, "%s", tail);
	return text;
}

/* A cancel or a retry of a run goes through all its stages while Redis
 * waits: a pipeline may have as many as that stays quick with. */
static void test_pipeline_stage_count_is_bounded(void **state)
{
	struct fx *f = *state;
	struct pipeline p;
	char *text = stages_text(PIPELINE_STAGES_MAX, "");

	write_file(f, "secrets/webhook", "s3cret\n");
	write_file(f, "app.yaml", text);
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	assert_int_equal(json_object_size(json_object_get(p.def, "stages")), PIPELINE_STAGES_MAX);
	pipeline_clear(&p);
	free(text);

	text = stages_text(PIPELINE_STAGES_MAX + 1, "");
	expect_pipeline_error(f, text,
			      "6:3: stages: 4097 stages, each environment counting as one: "
			      "at most 4096");
	free(text);
	/* An environment's deployment is a stage of the run too. */
	text = stages_text(PIPELINE_STAGES_MAX - 1,
			   "environments:\n  staging: {deploy: {sh: d}}\n"
			   "  production: {after: staging, deploy: {sh: d}}\n");
	expect_pipeline_error(f, text,
			      "4102:3: environments: 4097 stages, each environment "
			      "counting as one: at most 4096");
	free(text);
}

static void test_pipeline_secret_files(void **state)
{
	struct fx *f = *state;
	char want[2048];

	snprintf(want, sizeof(want),
		 "6:10: secrets.TOKEN: cannot read \"%s/secrets/none\": No such file or directory",
		 f->dir);
	expect_pipeline_error(f,
			      TRIGGER "secrets:\n  TOKEN: secrets/none\n"
				      "stages: {test: {run: [x]}}\n",
			      want);
	snprintf(want, sizeof(want),
		 "4:18: trigger.github.secret_file: cannot read \"%s/missing\": No such file or "
		 "directory",
		 f->dir);
	expect_pipeline_error(f,
			      "trigger:\n  github:\n    repository: acme/app\n"
			      "    secret_file: missing\nstages: {test: {run: [x]}}\n",
			      want);
	write_file(f, "blank", "\n");
	snprintf(want, sizeof(want), "4:18: trigger.github.secret_file: file \"%s/blank\" is empty",
		 f->dir);
	expect_pipeline_error(f,
			      "trigger:\n  github:\n    repository: acme/app\n"
			      "    secret_file: blank\nstages: {test: {run: [x]}}\n",
			      want);
}

static void test_pipeline_forks_setting(void **state)
{
	struct fx *f = *state;
	const struct {
		const char *line;
		enum pipeline_forks want;
	} cases[] = {{"", PIPELINE_FORKS_NO_SECRETS},
		     {"    forks: no-secrets\n", PIPELINE_FORKS_NO_SECRETS},
		     {"    forks: skip\n", PIPELINE_FORKS_SKIP},
		     {"    forks: with-secrets\n", PIPELINE_FORKS_SECRETS}};
	char text[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pipeline p;
		snprintf(text, sizeof(text), TRIGGER "%sstages: {test: {run: [x]}}\n",
			 cases[i].line);
		write_file(f, "secrets/webhook", "s3cret");
		write_file(f, "app.yaml", text);
		assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
		assert_int_equal(p.forks, cases[i].want);
		pipeline_clear(&p);
	}
	expect_pipeline_error(f, TRIGGER "    forks: yes\nstages: {test: {run: [x]}}\n",
			      "5:12: trigger.github.forks: expected one of no-secrets, skip, "
			      "with-secrets");
}

/* A pull request's run: no environments nor deployment stages; from a fork
 * (forks: no-secrets), no secrets at all, and the run says why. */
static void test_pipeline_pull_request_definitions(void **state)
{
	struct fx *f = *state;
	struct pipeline p;
	write_file(f, "secrets/webhook", "s3cret");
	write_file(f, "secrets/token", "t0ken");
	write_file(f, "secrets/db", "db-url");
	write_file(f, "app.yaml",
		   TRIGGER
		   "secrets: {TOKEN: secrets/token}\n"
		   "stages:\n  build: {run: [make]}\n  test: {run: [make, check], needs: build}\n"
		   "environments:\n  development:\n    secrets: {DB: secrets/db}\n"
		   "    deploy: {run: [./deploy.sh]}\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	assert_non_null(json_object_get(json_object_get(p.def, "stages"), "deploy@development"));
	/* A push's run records the pipeline's own definition. */
	for (int fork = 0; fork <= 1; fork++) {
		struct pipeline_def own = pipeline_run_def(&p, 0, fork);
		assert_ptr_equal(own.def, p.def);
		assert_ptr_equal(own.text, p.def_text);
	}

	struct pipeline_def pull = pipeline_run_def(&p, 1, 0);
	assert_ptr_equal(pull.def, p.pull.def);
	assert_ptr_equal(pull.text, p.pull.text);
	assert_null(json_object_get(pull.def, "environments"));
	assert_null(json_object_get(pull.def, "secrets_withheld"));
	const json_t *stages = json_object_get(pull.def, "stages");
	assert_int_equal(json_object_size(stages), 2);
	assert_non_null(json_object_get(stages, "build"));
	assert_non_null(json_object_get(stages, "test"));
	assert_non_null(json_object_get(json_object_get(pull.def, "secrets"), "TOKEN"));
	json_t *text = json_loads(pull.text, 0, NULL);
	assert_true(json_equal(text, pull.def));
	json_decref(text);

	struct pipeline_def fork = pipeline_run_def(&p, 1, 1);
	assert_ptr_equal(fork.def, p.fork.def);
	assert_ptr_equal(fork.text, p.fork.text);
	assert_null(json_object_get(fork.def, "secrets"));
	assert_null(json_object_get(fork.def, "environments"));
	assert_int_equal(json_object_size(json_object_get(fork.def, "stages")), 2);
	assert_string_equal(json_string_value(json_object_get(fork.def, "secrets_withheld")),
			    "a pull request from a fork");
	assert_null(strstr(fork.text, "secrets/token"));
	assert_null(strstr(fork.text, "secrets/db"));

	/* with-secrets: a fork's pull request runs as a branch's would. */
	p.forks = PIPELINE_FORKS_SECRETS;
	assert_ptr_equal(pipeline_run_def(&p, 1, 1).def, p.pull.def);
	pipeline_clear(&p);
}

/* --- the loader ----------------------------------------------------------- */

static void test_loader_duplicate_key(void **state)
{
	expect_pipeline_error(*state,
			      TRIGGER "stages:\n  test:\n    run: [x]\n  test:\n    run: [y]\n",
			      "8:3: stages.test: duplicate key (first defined at line 6)");
}

static void test_loader_syntax_error(void **state)
{
	expect_pipeline_error(*state, TRIGGER "stages: [a,\n",
			      "6:1: did not find expected node content (while parsing a flow "
			      "node at line 6)");
	expect_pipeline_error(*state, "trigger:\n  github: x\n bad: 1\n",
			      "3:2: did not find expected key (while parsing a block mapping at "
			      "line 1)");
}

static void test_loader_rejects_aliases(void **state)
{
	expect_pipeline_error(*state, "base: &b {run: [x]}\nstages: {test: *b}\n",
			      "1:7: anchors and aliases are not supported");
	expect_pipeline_error(*state,
			      "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
			      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
			      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
			      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
			      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
			      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
			      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
			      "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
			      "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
			      "1:4: anchors and aliases are not supported");
	expect_pipeline_error(*state, "stages: *undefined\n",
			      "1:9: anchors and aliases are not supported");
}

static void test_loader_limits_nesting(void **state)
{
	char text[256];
	int i, n = 0;

	n += snprintf(text + n, sizeof(text) - (size_t)n, "a: ");
	for (i = 0; i < 100; i++)
		text[n++] = '[';
	for (i = 0; i < 100; i++)
		text[n++] = ']';
	text[n++] = '\n';
	text[n] = '\0';
	expect_pipeline_error(*state, text, "1:67: nesting deeper than 64 levels");
}

static void test_loader_limits_size(void **state)
{
	struct fx *f = *state;
	struct pipeline p;
	size_t len = 4 * 1024 * 1024 + 1;
	char *big = malloc(len), want[PATH_MAX + 64];

	assert_non_null(big);
	memset(big, '\n', len);
	write_bytes(f, "big.yaml", big, len);
	free(big);
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s: file is larger than 4 MiB", f->path);
	assert_string_equal(f->err, want);
}

static void test_loader_rejects_bad_bytes(void **state)
{
	struct fx *f = *state;
	struct pipeline p;
	char want[PATH_MAX + 128];

	write_bytes(f, "nul.yaml", "name: app\nx: a\0b\n", 17);
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s:2:5: control characters are not allowed", f->path);
	assert_string_equal(f->err, want);

	write_file(f, "utf8.yaml", "name: app\nx: caf\xe9\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s:2:7: incomplete UTF-8 octet sequence", f->path);
	assert_string_equal(f->err, want);

	expect_pipeline_error(f, "x: \"a\\0b\"\n", "1:4: NUL characters are not allowed");
}

static void test_loader_rejects_other_shapes(void **state)
{
	expect_pipeline_error(*state, "name: a\n---\nname: b\n",
			      "2:1: only one document is allowed in a file");
	expect_pipeline_error(*state, "1: x\n", "1:1: mapping keys must be strings");
	expect_pipeline_error(*state, "? [a]\n: x\n", "1:3: mapping keys must be strings");
	expect_pipeline_error(*state, "name: !!int 5\n",
			      "1:7: unsupported tag \"tag:yaml.org,2002:int\"");
}

static void test_loader_scalar_types(void **state)
{
	struct fx *f = *state;
	struct pipeline p;
	json_t *vars;

	write_file(f, "secrets/webhook", "s");
	write_file(f, "app.yaml",
		   TRIGGER "vars:\n  A: yes\n  B: '5'\n  C: 1.50\n  D: !!str 5\n"
			   "  E: FALSE\n  F: 99999999999999999999\n"
			   "stages: {test: {run: [x, 10, true]}}\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	vars = json_object_get(p.def, "vars");
	assert_string_equal(json_string_value(json_object_get(vars, "A")), "yes");
	assert_string_equal(json_string_value(json_object_get(vars, "B")), "5");
	assert_string_equal(json_string_value(json_object_get(vars, "C")), "1.50");
	assert_string_equal(json_string_value(json_object_get(vars, "D")), "5");
	assert_string_equal(json_string_value(json_object_get(vars, "E")), "FALSE");
	assert_string_equal(json_string_value(json_object_get(vars, "F")), "99999999999999999999");
	pipeline_clear(&p);
	/* A quoted number is a string, not an integer. */
	expect_settings_error(f, "worker: {concurrency: \"2\"}\n",
			      "1:23: worker.concurrency: expected an integer");
	expect_pipeline_error(f, TRIGGER "stages: {test: {run: [x, null]}}\n",
			      "5:26: stages.test.run[1]: expected a string");
}

/* --- directories ---------------------------------------------------------- */

static void test_dir_loads_in_name_order(void **state)
{
	struct fx *f = *state;
	struct pipeline_set set;
	char dir[PATH_MAX];

	write_file(f, "pipes/secret", "s\n");
	write_file(f, "pipes/b.yml",
		   "trigger: {github: {repository: o/b, secret_file: secret}}\n"
		   "stages: {test: {run: [x]}}\n");
	write_file(f, "pipes/a.json",
		   "{\"trigger\": {\"github\": {\"repository\": \"o/a\", \"secret_file\": "
		   "\"secret\"}}, \"stages\": {\"test\": {\"run\": [\"x\"]}}}\n");
	write_file(f, "pipes/notes.txt", "not a pipeline");
	write_file(f, "pipes/.swap.yaml", "garbage: [");
	snprintf(dir, sizeof(dir), "%s/pipes", f->dir);
	assert_int_equal(pipelines_load_dir(dir, &set, f->err, sizeof(f->err)), 0);
	assert_int_equal(set.n, 2);
	assert_string_equal(set.items[0].name, "a");
	assert_string_equal(set.items[0].repository, "o/a");
	assert_string_equal(set.items[1].name, "b");
	pipelines_clear(&set);
}

static void test_dir_duplicate_names_and_empty_dir(void **state)
{
	struct fx *f = *state;
	struct pipeline_set set;
	char dir[PATH_MAX], want[3 * PATH_MAX];

	mkdir(strcat(strcpy(dir, f->dir), "/empty"), 0755);
	assert_int_equal(pipelines_load_dir(dir, &set, f->err, sizeof(f->err)), 0);
	assert_int_equal(set.n, 0);
	pipelines_clear(&set);

	write_file(f, "pipes/secret", "s\n");
	write_file(f, "pipes/one.yaml", "name: app\n" TRIGGER "stages: {test: {run: [x]}}\n");
	write_file(f, "pipes/two.yaml",
		   "# the same name\nname:   app\n" TRIGGER "stages: {test: {run: [x]}}\n");
	write_file(f, "pipes/secrets/webhook", "s\n");
	snprintf(dir, sizeof(dir), "%s/pipes", f->dir);
	assert_int_equal(pipelines_load_dir(dir, &set, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want),
		 "%s/two.yaml:2:9: name: \"app\" is already used by %s/one.yaml", dir, dir);
	assert_string_equal(f->err, want);
	assert_int_equal(set.n, 0);

	/* A name taken from the file's own name has no key to point at. */
	write_file(f, "named/secrets/webhook", "s\n");
	write_file(f, "named/a.yaml", "name: app\n" TRIGGER "stages: {test: {run: [x]}}\n");
	write_file(f, "named/app.yaml", TRIGGER "stages: {test: {run: [x]}}\n");
	snprintf(dir, sizeof(dir), "%s/named", f->dir);
	assert_int_equal(pipelines_load_dir(dir, &set, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want),
		 "%s/app.yaml:1:1: pipeline name \"app\" (the file's name) is already used by "
		 "%s/a.yaml; set \"name:\"",
		 dir, dir);
	assert_string_equal(f->err, want);
	assert_int_equal(set.n, 0);

	snprintf(dir, sizeof(dir), "%s/absent", f->dir);
	assert_int_equal(pipelines_load_dir(dir, &set, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open directory: No such file or directory", dir);
	assert_string_equal(f->err, want);
}

/* A reload names the settings it cannot apply: it compares them by name. */
static void test_settings_differ_compares_the_kafka_settings(void **state)
{
	struct fx *f = *state;
	struct settings a, b;

	write_file(f, "a.yaml", "kafka: {session_timeout: 6s, fetch_wait: 10ms}\n");
	write_file(f, "b.yaml", "kafka: {session_timeout: 6s, fetch_wait: 2ms}\n");
	char pa[PATH_MAX], pb[PATH_MAX];
	snprintf(pa, sizeof(pa), "%s/a.yaml", f->dir);
	snprintf(pb, sizeof(pb), "%s/b.yaml", f->dir);
	assert_int_equal(settings_load(pa, &a, f->err, sizeof(f->err)), 0);
	assert_int_equal(settings_load(pb, &b, f->err, sizeof(f->err)), 0);
	assert_int_equal(settings_differ(&a, &b, "kafka.fetch_wait"), 1);
	assert_int_equal(settings_differ(&a, &b, "kafka.session_timeout"), 0);
	assert_int_equal(settings_differ(&a, &b, "kafka.no_such_key"), -1);
	static const char *const connection_keys[] = {SETTINGS_CONNECTION_KEYS};
	for (size_t i = 0; i < sizeof(connection_keys) / sizeof(connection_keys[0]); i++)
		assert_int_not_equal(settings_differ(&a, &b, connection_keys[i]), -1);
	settings_clear(&a);
	settings_clear(&b);
}

/* A new password in the same file needs a restart as much as a new file. */
static void test_settings_differ_compares_the_redis_password(void **state)
{
	struct fx *f = *state;
	struct settings a, b;
	char pa[PATH_MAX];

	write_file(f, "password", "old\n");
	snprintf(pa, sizeof(pa), "%s",
		 write_file(f, "a.yaml", "redis: {password_file: password}\n"));
	assert_int_equal(settings_load(pa, &a, f->err, sizeof(f->err)), 0);
	assert_int_equal(settings_load(pa, &b, f->err, sizeof(f->err)), 0);
	assert_int_equal(settings_differ(&a, &b, "redis.password_file"), 0);
	settings_clear(&b);
	write_file(f, "password", "new\n");
	assert_int_equal(settings_load(pa, &b, f->err, sizeof(f->err)), 0);
	assert_int_equal(settings_differ(&a, &b, "redis.password_file"), 1);
	assert_int_equal(settings_differ(&a, &b, "redis.user"), 0);
	settings_clear(&a);
	settings_clear(&b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static void test_pipeline_sh_and_http_stages(void **state)
{
	struct fx *f = *state;
	struct pipeline p;
	char *want_text = NULL;

	write_file(f, "secrets/webhook", "s3cret");
	write_file(f, "ca.pem", "not checked here, only readable\n");
	write_file(f, "app.yaml",
		   TRIGGER "secrets: {TOKEN: secrets/webhook}\n"
			   "stages:\n"
			   "  build:\n"
			   "    sh: make | tee log\n"
			   "    inherit_env: [SSH_AUTH_SOCK, GOPATH]\n"
			   "    log_cap: 1MiB\n"
			   "  deploy:\n"
			   "    http:\n"
			   "      method: post\n"
			   "      url: https://deploy.example/hooks/${SLUICE_SHA}\n"
			   "      headers: {Authorization: 'Bearer ${TOKEN}'}\n"
			   "      body: '{\"sha\": \"${SLUICE_SHA}\"}'\n"
			   "      expect: [200, 201]\n"
			   "      timeout: 5s\n"
			   "      retries: 2\n"
			   "      backoff: 250ms\n"
			   "      ca_file: ca.pem\n"
			   "    needs: build\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	assert_true(
	    asprintf(&want_text,
		     "{\"build\": {\"kind\": \"build\", \"sh\": \"make | tee log\","
		     " \"needs\": [], \"timeout\": 3600,"
		     " \"inherit_env\": [\"SSH_AUTH_SOCK\", \"GOPATH\"], \"log_cap\": 1048576},"
		     " \"deploy\": {\"kind\": \"deploy\", \"needs\": [\"build\"],"
		     " \"timeout\": 3600, \"http\": {\"method\": \"POST\","
		     " \"url\": \"https://deploy.example/hooks/${SLUICE_SHA}\","
		     " \"headers\": {\"Authorization\": \"Bearer ${TOKEN}\"},"
		     " \"body\": \"{\\\"sha\\\": \\\"${SLUICE_SHA}\\\"}\","
		     " \"expect\": [200, 201], \"timeout_ms\": 5000, \"retries\": 2,"
		     " \"backoff_ms\": 250, \"ca_file\": \"%s/ca.pem\"}}}",
		     f->dir) > 0);
	json_t *want = json_loads(want_text, 0, NULL);
	assert_non_null(want);
	json_t *stages = json_object_get(p.def, "stages");
	/* Other keys (a retry policy) may be added by their own loaders. */
	const char *name;
	json_t *st;
	json_object_foreach(want, name, st)
	{
		const char *key;
		json_t *v;
		json_object_foreach(st, key, v)
		{
			assert_true(
			    json_equal(json_object_get(json_object_get(stages, name), key), v));
		}
	}
	json_decref(want);
	free(want_text);
	pipeline_clear(&p);
}

static void test_pipeline_executor_errors(void **state)
{
	struct fx *f = *state;

	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [make]\n    sh: make\n",
			      "8:5: stages.build.sh: only one of run, sh and http may be given "
			      "(this stage already has run)");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    sh: [make]\n",
			      "7:9: stages.build.sh: expected a string");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    http: {url: ftp://x/}\n",
			      "7:17: stages.build.http.url: expected an http:// or https:// URL");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    http: {url: 'http://x/', insecure: "
				      "true}\n",
			      "7:30: stages.build.http.insecure: TLS verification cannot be "
			      "turned off; set ca_file to trust a private CA");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    http: {url: 'http://x/', method: "
				      "FETCH}\n",
			      "7:38: stages.build.http.method: unknown method \"FETCH\" (known: "
			      "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    http: {url: 'http://x/', expect: "
				      "[200, 999]}\n",
			      "7:44: stages.build.http.expect[1]: must be between 100 and 599");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    http: {url: 'http://x/', body: x}\n",
			      "7:30: stages.build.http.body: a GET request has no body");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    sh: make\n    inherit_env: "
				      "[PATH, 1BAD]\n",
			      "8:25: stages.build.inherit_env[1]: invalid variable name (use "
			      "letters, digits and '_', not starting with a digit)");
	/* The value sluice sets would win over the worker's, unseen. */
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    sh: make\n    inherit_env: "
				      "[SSH_AUTH_SOCK, SLUICE_REF]\n",
			      "8:34: stages.build.inherit_env[1]: SLUICE_REF is a variable sluice "
			      "sets: a stage cannot inherit it");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    sh: make\n    inherit_env: "
				      "SLUICE_OUTPUT\n",
			      "8:18: stages.build.inherit_env: SLUICE_OUTPUT is a variable sluice "
			      "sets: a stage cannot inherit it");
	expect_pipeline_error(
	    f,
	    TRIGGER "stages:\n  build:\n    sh: make\n    inherit_env: "
		    "[SLUICE_WORKER_COOKIE]\n",
	    "8:19: stages.build.inherit_env[0]: SLUICE_WORKER_COOKIE is a variable "
	    "sluice sets: a stage cannot inherit it");
	expect_pipeline_error(f,
			      TRIGGER "environments:\n  prod:\n    deploy: {sh: d, inherit_env: "
				      "[SLUICE_ENV]}\n"
				      "stages: {build: {sh: make}}\n",
			      "7:35: environments.prod.deploy.inherit_env[0]: SLUICE_ENV is a "
			      "variable sluice sets: a stage cannot inherit it");
	/* A var or secret of the same name would win over the worker's. */
	expect_pipeline_error(f,
			      TRIGGER "vars: {GOPATH: /go}\nstages:\n  build:\n    sh: make\n"
				      "    inherit_env: [SSH_AUTH_SOCK, GOPATH]\n",
			      "9:34: stages.build.inherit_env[1]: GOPATH is a var of the pipeline: "
			      "a stage cannot inherit it");
	expect_pipeline_error(f,
			      TRIGGER "secrets: {NPM_TOKEN: secrets/webhook}\nstages:\n  build:\n"
				      "    sh: make\n    inherit_env: NPM_TOKEN\n",
			      "9:18: stages.build.inherit_env: NPM_TOKEN is a secret of the "
			      "pipeline: a stage cannot inherit it");
	expect_pipeline_error(f,
			      TRIGGER "environments:\n  prod:\n    vars: {KUBECONFIG: /k}\n"
				      "    deploy: {sh: d, inherit_env: [KUBECONFIG]}\n"
				      "stages: {build: {sh: make}}\n",
			      "8:35: environments.prod.deploy.inherit_env[0]: KUBECONFIG is a var "
			      "of the pipeline: a stage cannot inherit it");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    sh: make\n    checkout: no\n",
			      "8:15: stages.build.checkout: expected true or false");
}

/* A checkout.url no checkout may clone would fail every run of the
 * pipeline: it is refused where it is written. */
static void test_checkout_url_git_may_not_clone_is_refused(void **state)
{
	struct fx *f = *state;
	expect_pipeline_error(f,
			      TRIGGER "checkout: {url: \"ext::sh -c id\"}\nstages: {b: {sh: x}}\n",
			      "5:17: checkout.url: transport ext is not one checkouts use "
			      "(file:git:http:https:ssh)");
	expect_pipeline_error(
	    f, TRIGGER "checkout: {url: htps://example.com/a.git}\nstages: {b: {sh: x}}\n",
	    "5:17: checkout.url: transport htps is not one checkouts use "
	    "(file:git:http:https:ssh)");
	expect_pipeline_error(
	    f, TRIGGER "checkout: {url: -oProxyCommand=x}\nstages: {b: {sh: x}}\n",
	    "5:17: checkout.url: a repository URL, not an option: it starts with '-'");
}

/* A template that names what a run will not define would fail every run of
 * its stage: it is refused where it is written. */
static void test_pipeline_template_errors(void **state)
{
	struct fx *f = *state;

	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [echo, '${VERSON}']\n",
			      "7:17: stages.build.run[1]: undefined variable \"VERSON\"");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [echo, 'v${SLUICE_SHA']\n",
			      "7:17: stages.build.run[1]: unterminated \"${\"");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [echo, '${${X}}']\n",
			      "7:17: stages.build.run[1]: bad variable name at offset 2");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [echo, '${ghost.image}']\n",
			      "7:17: stages.build.run[1]: undefined variable \"ghost.image\"");
	/* Outputs of a stage the stage does not need, directly or through
	 * others, are not there when it runs: its own, a dependant's, a
	 * stage running beside it. */
	expect_pipeline_error(
	    f, TRIGGER "stages:\n  build:\n    run: [echo, '${build.v}']\n",
	    "7:17: stages.build.run[1]: undefined variable \"build.v\" (an output "
	    "of a stage that build does not need, directly or through others: "
	    "it is not there when build runs)");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    run: [echo, '${test.v}']\n"
				      "  test: {run: [t], needs: [build]}\n",
			      "7:17: stages.build.run[1]: undefined variable \"test.v\" (an output "
			      "of a stage that build does not need, directly or through others: "
			      "it is not there when build runs)");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  test: {run: [l]}\n  build:\n"
				      "    run: [echo, '${test.v}']\n",
			      "8:17: stages.build.run[1]: undefined variable \"test.v\" (an output "
			      "of a stage that build does not need, directly or through others: "
			      "it is not there when build runs)");
	/* SLUICE_ is sluice's prefix, but only what it sets is defined. */
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [echo, '${SLUICE_SHAA}']\n",
			      "7:17: stages.build.run[1]: undefined variable \"SLUICE_SHAA\"");
	expect_pipeline_error(f, TRIGGER "stages:\n  build:\n    run: [echo, '${SLUICE_ENV}']\n",
			      "7:17: stages.build.run[1]: undefined variable \"SLUICE_ENV\"");
	expect_pipeline_error(
	    f, TRIGGER "stages:\n  build:\n    http: {url: 'http://h/${SLUICE_OUTPUT}'}\n",
	    "7:17: stages.build.http.url: undefined variable \"SLUICE_OUTPUT\"");
	expect_pipeline_error(
	    f,
	    TRIGGER "secrets: {TOKEN: secrets/webhook}\n"
		    "stages:\n  build:\n    run: [echo, '${TOKEN}']\n",
	    "8:17: stages.build.run[1]: undefined variable \"TOKEN\" (a secret is "
	    "in the environment, not expanded in run: arguments)");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build:\n    http: {url: 'http://h/', "
				      "headers: {X-Key: '${KEY}'}}\n",
			      "7:47: stages.build.http.headers.X-Key: undefined variable \"KEY\"");
	expect_pipeline_error(f,
			      TRIGGER
			      "stages:\n  build:\n    http: {url: 'http://h/', method: POST, "
			      "body: '${BODY}'}\n",
			      "7:50: stages.build.http.body: undefined variable \"BODY\"");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build: {run: [make]}\n"
				      "environments:\n  production:\n"
				      "    deploy: {http: {url: 'https://h/${SLUICE_ENVV}'}}\n",
			      "9:26: environments.production.deploy.http.url: undefined variable "
			      "\"SLUICE_ENVV\"");
	expect_pipeline_error(f,
			      TRIGGER "stages:\n  build: {run: [make]}\n"
				      "environments:\n  production:\n    vars: {DOMAIN: a}\n"
				      "    deploy: {run: [echo, '${DOMIAN}']}\n",
			      "10:26: environments.production.deploy.run[1]: undefined variable "
			      "\"DOMIAN\"");
}

/* What a run defines: vars (an environment's over the pipeline's),
 * secrets in an http: request, the SLUICE_ variables set where it is
 * expanded (a run: command's $SLUICE_OUTPUT too), outputs of the
 * pipeline's stages; "$${" and a "$" without "{" are text. */
static void test_pipeline_templates_name_what_a_run_defines(void **state)
{
	struct fx *f = *state;
	struct pipeline p;

	write_file(f, "secrets/webhook", "s3cret");
	write_file(f, "app.yaml",
		   TRIGGER
		   "vars: {A: x}\n"
		   "secrets: {TOKEN: secrets/webhook}\n"
		   "stages:\n"
		   "  build: {run: [echo, '${A} ${SLUICE_SHA} ${SLUICE_OUTPUT} $${NONE} $NONE']}\n"
		   "  push:\n"
		   "    needs: build\n"
		   "    http: {url: 'http://h/${build.image}', method: POST,\n"
		   "           headers: {X-Key: '${TOKEN}'}, body: '${A}'}\n"
		   "environments:\n"
		   "  production:\n"
		   "    vars: {DOMAIN: a}\n"
		   "    deploy: {run: [echo, '${DOMAIN} ${A} ${SLUICE_ENV} ${push.url}']}\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	pipeline_clear(&p);
	/* Through a stage between them. */
	write_file(f, "app.yaml",
		   TRIGGER "stages:\n"
			   "  build: {run: [b]}\n"
			   "  test: {run: [t], needs: build}\n"
			   "  push: {run: [echo, '${build.image}'], needs: [test]}\n");
	if (pipeline_load_file(f->path, &p, f->err, sizeof(f->err)) != 0)
		fail_msg("%s", f->err);
	pipeline_clear(&p);
}

/* checkout: false is kept in the definition; true, the default, is not. */
static void test_pipeline_stage_without_checkout(void **state)
{
	struct fx *f = *state;
	struct pipeline p;

	write_file(f, "secrets/webhook", "s3cret");
	write_file(f, "app.yaml",
		   TRIGGER "stages:\n"
			   "  build: {sh: make, checkout: false}\n"
			   "  test: {sh: make test, checkout: true}\n");
	assert_int_equal(pipeline_load_file(f->path, &p, f->err, sizeof(f->err)), 0);
	json_t *stages = json_object_get(p.def, "stages");
	assert_true(json_is_false(json_object_get(json_object_get(stages, "build"), "checkout")));
	assert_null(json_object_get(json_object_get(stages, "test"), "checkout"));
	pipeline_clear(&p);
}

static void test_settings_log_cap(void **state)
{
	struct fx *f = *state;
	struct settings s;

	write_file(f, "sluice.yaml", "worker: {log_cap: 64KiB}\n");
	assert_int_equal(settings_load(f->path, &s, f->err, sizeof(f->err)), 0);
	assert_int_equal(s.log_cap, 65536);
	settings_clear(&s);
	assert_int_equal(settings_load(NULL, &s, f->err, sizeof(f->err)), 0);
	assert_int_equal(s.log_cap, 4 * 1024 * 1024);
	settings_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_duration_parses_units_and_combinations),
	    T(test_duration_rejects_garbage_and_overflow),
	    T(test_settings_defaults_without_file),
	    T(test_settings_empty_file_gives_defaults),
	    T(test_settings_full_file),
	    T(test_settings_differ_compares_the_kafka_settings),
	    T(test_settings_differ_compares_the_redis_password),
	    T(test_settings_public_url_follows_listen),
	    T(test_settings_public_url_is_https_with_tls),
	    T(test_settings_listen_on_keeps_a_public_url_set),
	    T(test_settings_max_request_memory_follows_a_larger_max_body),
	    T(test_settings_run_retention_forever_keeps_every_run),
	    T(test_settings_brokers_from_file),
	    T(test_settings_brokers_file_missing_or_empty),
	    T(test_settings_errors_name_position_and_key),
	    T(test_settings_github),
	    T(test_settings_redis_password),
	    T(test_settings_missing_file),
	    T(test_pipeline_full_yaml_file),
	    T(test_pipeline_json_file_loads_the_same),
	    T(test_a_relative_checkout_path_is_the_file_s),
	    T(test_a_name_is_a_var_or_a_secret),
	    T(test_pipeline_defaults),
	    T(test_pipeline_schema_errors),
	    T(test_pipeline_needs_errors),
	    T(test_pipeline_stage_count_is_bounded),
	    T(test_pipeline_sh_and_http_stages),
	    T(test_pipeline_executor_errors),
	    T(test_checkout_url_git_may_not_clone_is_refused),
	    T(test_pipeline_template_errors),
	    T(test_pipeline_templates_name_what_a_run_defines),
	    T(test_settings_log_cap),
	    T(test_pipeline_stage_without_checkout),
	    T(test_pipeline_secret_files),
	    T(test_pipeline_forks_setting),
	    T(test_pipeline_pull_request_definitions),
	    T(test_loader_duplicate_key),
	    T(test_loader_syntax_error),
	    T(test_loader_rejects_aliases),
	    T(test_loader_limits_nesting),
	    T(test_loader_limits_size),
	    T(test_loader_rejects_bad_bytes),
	    T(test_loader_rejects_other_shapes),
	    T(test_loader_scalar_types),
	    T(test_dir_loads_in_name_order),
	    T(test_dir_duplicate_names_and_empty_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
