/* Tests of config/ against hostile values: huge numbers, negative durations,
 * megabyte strings, control characters in names and keys, and secret files
 * that point anywhere. Each is refused with "file:line:col: key.path: why";
 * the one thing let be is a secret_file outside the pipelines directory
 * (systemd credentials, /etc/sluice/...): that is where secrets belong,
 * and only the operator who writes the file chooses it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "tmpdir.h"

#define MIB (1024 * 1024)

struct fx {
	char dir[64];
	char path[128];
	char err[1024];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(tmpdir_make(f->dir, sizeof(f->dir), "sluice-hostile"), 0);
	snprintf(f->path, sizeof(f->path), "%s/secret", f->dir);
	assert_int_equal(tmpdir_write(f->path, "s3cret\n"), 0);
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

/* A pipeline whose name, secret file and further lines are given. */
static char *pipeline_text(const char *name, const char *secret_file, const char *rest)
{
	char *text = NULL;
	assert_true(asprintf(&text,
			     "name: %s\n"
			     "trigger:\n"
			     "  github:\n"
			     "    repository: acme/app\n"
			     "    secret_file: %s\n"
			     "%s",
			     name, secret_file, rest) > 0);
	return text;
}

static int load_pipeline(struct fx *f, const char *text, struct pipeline *p)
{
	f->err[0] = '\0';
	return pipeline_load_text("p.yaml", f->dir, text, strlen(text), p, f->err, sizeof(f->err));
}

static void pipeline_fails(struct fx *f, const char *text, const char *want)
{
	struct pipeline p;
	assert_int_equal(load_pipeline(f, text, &p), -1);
	assert_string_equal(f->err, want);
}

/* settings_load of text written to dir/sluice.yaml must fail with
 * "<that path>:<want>". */
static void settings_fail(struct fx *f, const char *text, size_t len, const char *want)
{
	char path[128], full[1200];
	struct settings s;
	snprintf(path, sizeof(path), "%s/sluice.yaml", f->dir);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(settings_load(path, &s, f->err, sizeof(f->err)), -1);
	snprintf(full, sizeof(full), "%s:%s", path, want);
	assert_string_equal(f->err, full);
}

static void settings_fails(struct fx *f, const char *text, const char *want)
{
	settings_fail(f, text, strlen(text), want);
}

static const char *const build = "stages:\n  build: {run: [make]}\n";

static void test_huge_numbers_are_refused_where_they_stand(void **state)
{
	struct fx *f = *state;
	/* A plain integer beyond 64 bits is a number too large, not text. */
	settings_fails(f, "worker: {concurrency: 99999999999999999999}\n",
		       "1:23: worker.concurrency: is too large (at most 1024)");
	settings_fails(f, "worker: {concurrency: -99999999999999999999}\n",
		       "1:23: worker.concurrency: is too small (at least 1)");
	settings_fails(f, "worker: {lease: 99999999999999999999}\n",
		       "1:17: worker.lease: is too long (at most 24 days)");
	settings_fails(f, "worker: {log_cap: 99999999999999999999}\n",
		       "1:19: worker.log_cap: is too large (at most 1073741824 bytes)");
	settings_fails(f, "agent: {run_retention: 99999999999999999999}\n",
		       "1:24: agent.run_retention: is too long (at most 106751991167 days)");
	/* Quoted, it is text, as any quoted number. */
	settings_fails(f, "worker: {concurrency: '99999999999999999999'}\n",
		       "1:23: worker.concurrency: expected an integer");
	settings_fails(f, "worker: {concurrency: 1025}\n",
		       "1:23: worker.concurrency: must be between 1 and 1024");
	settings_fails(f, "agent: {max_connections: 0}\n",
		       "1:26: agent.max_connections: must be between 1 and 1000000");
	settings_fails(f, "agent: {max_connections: unlimited}\n",
		       "1:26: agent.max_connections: expected an integer");
	settings_fails(f, "agent: {run_retention: never}\n",
		       "1:24: agent.run_retention: expected a duration like \"90d\", or forever");
	settings_fails(f, "agent: {run_retention: 0}\n",
		       "1:24: agent.run_retention: must be longer than 0");
	settings_fails(f, "agent: {max_body: 1e30}\n",
		       "1:19: agent.max_body: expected a size like \"25MiB\"");
	settings_fails(f, "agent: {max_request_memory: 2048GiB}\n",
		       "1:29: agent.max_request_memory: must be between 1 and 1099511627776 bytes");
	settings_fails(
	    f, "agent: {max_body: 2MiB, max_request_memory: 1MiB}\n",
	    "1:45: agent.max_request_memory: at least agent.max_body, or no body of that "
	    "size gets in");
	settings_fails(
	    f, "agent: {max_request_memory: 1MiB}\n",
	    "1:29: agent.max_request_memory: at least agent.max_body, or no body of that "
	    "size gets in");
	settings_fails(f, "worker: {lease: 9999999999d}\n",
		       "1:17: worker.lease: is too long (at most 24 days)");
	settings_fails(f, "worker: {lease: 99999999999999999999999999h}\n",
		       "1:17: worker.lease: expected a duration like \"10m\"");
	char *text =
	    pipeline_text("app", "secret", "stages:\n  build: {run: [make], timeout: 1e300}\n");
	pipeline_fails(f, text,
		       "p.yaml:7:33: stages.build.timeout: expected a duration like \"10m\"");
	free(text);
	text = pipeline_text(
	    "app", "secret",
	    "stages:\n  n: {kind: test, http: {url: \"http://x/\", retries: 99999999999}}\n");
	pipeline_fails(f, text, "p.yaml:7:53: stages.n.http.retries: must be between 0 and 100");
	free(text);
}

static void test_negative_and_zero_durations_and_sizes_are_refused(void **state)
{
	struct fx *f = *state;
	settings_fails(f, "worker: {lease: -5s}\n",
		       "1:17: worker.lease: expected a duration like \"10m\"");
	settings_fails(f, "worker: {kill_grace: -1}\n",
		       "1:22: worker.kill_grace: expected a duration like \"10m\"");
	settings_fails(f, "worker: {lease: 0}\n", "1:17: worker.lease: must be longer than 0");
	settings_fails(f, "agent: {http_timeout: 0s}\n",
		       "1:23: agent.http_timeout: must be longer than 0");
	settings_fails(f, "agent: {http_timeout: 999ms}\n",
		       "1:23: agent.http_timeout: at least 1s");
	settings_fails(f, "kafka: {fetch_wait: 0ms}\n",
		       "1:21: kafka.fetch_wait: must be longer than 0");
	settings_fails(f, "kafka: {fetch_wait: 5m1ms}\n", "1:21: kafka.fetch_wait: at most 5m");
	settings_fails(f, "agent: {max_body: -1}\n",
		       "1:19: agent.max_body: expected a size like \"25MiB\"");
	settings_fails(f, "worker: {log_cap: -4MiB}\n",
		       "1:19: worker.log_cap: expected a size like \"25MiB\"");
	settings_fails(f, "worker: {min_free: \"-5%\"}\n",
		       "1:20: worker.min_free: expected a percentage from 0% to 99%");
	char *text =
	    pipeline_text("app", "secret", "stages:\n  build: {run: [make], timeout: -10m}\n");
	pipeline_fails(f, text,
		       "p.yaml:7:33: stages.build.timeout: expected a duration like \"10m\"");
	free(text);
}

static void test_megabyte_strings_are_refused(void **state)
{
	struct fx *f = *state;
	size_t n = MIB + 64;
	char *text = malloc(n);
	assert_non_null(text);
	int head = snprintf(text, n, "redis: {key_prefix: \"");
	memset(text + head, 'a', MIB);
	strcpy(text + head + MIB, "\"}\n");
	settings_fail(f, text, strlen(text), "1:21: redis.key_prefix: longer than 4096 bytes");

	head = snprintf(text, n, "pipelines_dir: \"");
	memset(text + head, 'a', 8192);
	strcpy(text + head + 8192, "\"\n");
	settings_fail(f, text, strlen(text), "1:16: pipelines_dir: longer than 4096 bytes");

	settings_fails(
	    f,
	    "redis: {key_prefix: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaa:\"}\n",
	    "1:21: redis.key_prefix: longer than 64 bytes");
	free(text);

	/* A whole file over the loader's limit never reaches the schema. */
	struct pipeline p;
	char *big = malloc(5 * MIB);
	assert_non_null(big);
	memset(big, '#', 5 * MIB);
	assert_int_equal(
	    pipeline_load_text("p.yaml", f->dir, big, 5 * MIB, &p, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "p.yaml: "));
	assert_non_null(strstr(f->err, "MiB"));
	free(big);
}

static void test_control_characters_in_names_are_refused_and_escaped(void **state)
{
	struct fx *f = *state;
	char *text = pipeline_text("\"ap\\x01p\"", "secret", build);
	pipeline_fails(f, text,
		       "p.yaml:1:7: name: invalid pipeline name (use letters, digits, '_', '.' and "
		       "'-', not \".\" or \"..\")");
	free(text);
	/* The key is shown with \xNN: a message never carries an escape
	 * sequence or a line break to a terminal or a log. */
	text = pipeline_text("app", "secret", "stages:\n  \"b\\e[2Jx\\ny\": {run: [make]}\n");
	pipeline_fails(f, text,
		       "p.yaml:7:3: stages.b\\x1b[2Jx\\x0ay: invalid stage name (use at most 64 "
		       "letters, digits, '_' and '-')");
	free(text);
	text =
	    pipeline_text("app", "secret", "vars: {\"A\\rB\": x}\nstages:\n  b: {run: [make]}\n");
	pipeline_fails(f, text,
		       "p.yaml:6:8: vars.A\\x0dB: invalid name (use letters, digits and '_', not "
		       "starting with a digit)");
	free(text);
	text =
	    pipeline_text("app", "secret", "vars: {A: \"x\\0y\"}\nstages:\n  b: {run: [make]}\n");
	pipeline_fails(f, text, "p.yaml:6:11: NUL characters are not allowed");
	free(text);

	text = strdup("name: app\ntrigger:\n  github:\n    repository: \"acme/a\\npp\"\n"
		      "    secret_file: secret\nstages:\n  b: {run: [make]}\n");
	pipeline_fails(f, text,
		       "p.yaml:4:17: trigger.github.repository: expected \"owner/name\" of "
		       "letters, digits, '.', '_' and '-', at most 200 bytes");
	free(text);

	settings_fails(f, "redis: {key_prefix: \"a\\nb:\"}\n",
		       "1:21: redis.key_prefix: control character at byte 1");
	settings_fails(f, "agent: {listen: \"127.0.0.1:80\\e\"}\n",
		       "1:17: agent.listen: control character at byte 12");
	settings_fails(
	    f, "kafka: {topic_prefix: \"sluice/\"}\n",
	    "1:23: kafka.topic_prefix: use at most 64 letters, digits, '.', '_' and '-'");
	settings_fails(f, "kafka: {session_timeout: 6s, \"brok\\x7fers\": x}\n",
		       "1:30: kafka.brok\\x7fers: unknown key");
	/* A message quoting a value escapes it as the path is escaped. */
	text =
	    pipeline_text("app", "secret",
			  "stages:\n  build: {run: [make], needs: [\"\\e]0;pwned\\a\\e[2J\"]}\n");
	pipeline_fails(
	    f, text,
	    "p.yaml:7:32: stages.build.needs[0]: unknown stage \"\\x1b]0;pwned\\x07\\x1b[2J\"");
	free(text);
}

static void test_secret_file_outside_the_directory_is_allowed_when_readable(void **state)
{
	struct fx *f = *state;
	struct pipeline p;

	/* ../ leaves the pipelines directory: legitimate, as an absolute path is. */
	char sub[128], rel[160];
	snprintf(sub, sizeof(sub), "%s/pipelines.d", f->dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	char *text = pipeline_text("app", "../secret", build);
	assert_int_equal(
	    pipeline_load_text("p.yaml", sub, text, strlen(text), &p, f->err, sizeof(f->err)), 0);
	assert_string_equal(p.secret, "s3cret");
	pipeline_clear(&p);
	free(text);

	/* What is not a regular, readable, non-empty file of at most 64 KiB
	 * is refused, with the path it resolved to. */
	snprintf(rel, sizeof(rel), "../../../../../../../../..%s/nothing-here", f->dir);
	text = pipeline_text("app", rel, build);
	char want[512];
	snprintf(want, sizeof(want),
		 "p.yaml:5:18: trigger.github.secret_file: cannot read \"%s/%s\": No such file "
		 "or directory",
		 f->dir, rel);
	pipeline_fails(f, text, want);
	free(text);

	text = pipeline_text("app", "/dev/zero", build);
	pipeline_fails(
	    f, text,
	    "p.yaml:5:18: trigger.github.secret_file: cannot read \"/dev/zero\": Invalid "
	    "argument");
	free(text);
	text = pipeline_text("app", "/", build);
	pipeline_fails(
	    f, text, "p.yaml:5:18: trigger.github.secret_file: cannot read \"/\": Is a directory");
	free(text);
	text = pipeline_text("app", "\"secret\\0../../etc/shadow\"", build);
	pipeline_fails(f, text, "p.yaml:5:18: NUL characters are not allowed");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_huge_numbers_are_refused_where_they_stand, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_negative_and_zero_durations_and_sizes_are_refused,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_megabyte_strings_are_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_control_characters_in_names_are_refused_and_escaped, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_secret_file_outside_the_directory_is_allowed_when_readable, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
