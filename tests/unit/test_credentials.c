/* Tests of "${CREDENTIALS_DIRECTORY}/" paths (config/file, workers/stage_env):
 * kept as written when a pipeline loads, resolved from the environment of
 * the process that reads the file, and a clear error when that process has
 * no credentials directory. Each test works in its own temporary directory,
 * which stands in for the one systemd makes for LoadCredential=. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/file.h"
#include "workers/stage_env.h"

struct fx {
	char creds[64]; /* the credentials directory */
	char pipes[64]; /* the pipelines directory */
	char err[512];
};

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->creds, "/tmp/sluice-creds-XXXXXX");
	strcpy(f->pipes, "/tmp/sluice-pipes-XXXXXX");
	if (!mkdtemp(f->creds) || !mkdtemp(f->pipes)) {
		free(f);
		return -1;
	}
	setenv("CREDENTIALS_DIRECTORY", f->creds, 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	unsetenv("CREDENTIALS_DIRECTORY");
	remove_file(f->creds, "github-webhook");
	remove_file(f->creds, "registry-token");
	remove_file(f->creds, "ten");
	remove_file(f->creds, "empty");
	remove_file(f->pipes, "app.yaml");
	rmdir(f->creds);
	rmdir(f->pipes);
	free(f);
	return 0;
}

static void resolve_keeps_a_credential_path_as_written(void **state)
{
	char *p;

	(void)state;
	p = config_file_resolve("/etc/sluice/pipelines", "${CREDENTIALS_DIRECTORY}/token");
	assert_string_equal(p, "${CREDENTIALS_DIRECTORY}/token");
	free(p);
	p = config_file_resolve("/etc/sluice/pipelines", "secrets/token");
	assert_string_equal(p, "/etc/sluice/pipelines/secrets/token");
	free(p);
	/* Only the whole prefix names a credential. */
	p = config_file_resolve("/etc/sluice", "${CREDENTIALS_DIRECTORY}token");
	assert_string_equal(p, "/etc/sluice/${CREDENTIALS_DIRECTORY}token");
	free(p);
}

static void expand_uses_this_process_credentials_directory(void **state)
{
	struct fx *f = *state;
	char want[128];
	char *p;

	p = config_file_expand("${CREDENTIALS_DIRECTORY}/github-webhook");
	snprintf(want, sizeof(want), "%s/github-webhook", f->creds);
	assert_string_equal(p, want);
	free(p);
	p = config_file_expand("/etc/sluice/secrets/token");
	assert_string_equal(p, "/etc/sluice/secrets/token");
	free(p);
}

static void expand_without_credentials_directory_fails_with_a_reason(void **state)
{
	(void)state;
	unsetenv("CREDENTIALS_DIRECTORY");
	errno = 0;
	assert_null(config_file_expand("${CREDENTIALS_DIRECTORY}/github-webhook"));
	assert_int_equal(errno, ENOENT);
	assert_string_equal(config_file_expand_error(errno), "CREDENTIALS_DIRECTORY is not set");
	setenv("CREDENTIALS_DIRECTORY", "", 1);
	assert_null(config_file_expand("${CREDENTIALS_DIRECTORY}/github-webhook"));
	/* Not a credential: nothing to look up. */
	char *p = config_file_expand("relative/path");
	assert_string_equal(p, "relative/path");
	free(p);
}

static void read_finds_the_credential_and_check_leaves_it_to_the_reader(void **state)
{
	struct fx *f = *state;
	char *buf = NULL;
	size_t len = 0;

	write_file(f->creds, "github-webhook", "hook-secret\n");
	assert_int_equal(
	    config_file_read("${CREDENTIALS_DIRECTORY}/github-webhook", 64, &buf, &len), 0);
	assert_int_equal(len, 12);
	assert_string_equal(buf, "hook-secret\n");
	free(buf);
	assert_int_equal(config_file_read("${CREDENTIALS_DIRECTORY}/missing", 64, &buf, &len), -1);
	assert_int_equal(errno, ENOENT);
	/* The agent checks stage secrets that only a worker's unit holds. */
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(config_file_check_readable("${CREDENTIALS_DIRECTORY}/missing"), 0);
	assert_int_equal(config_file_check_readable("/nonexistent/sluice-secret"), -1);
}

/* Reads path with max, expecting its length; or -1 with errno EFBIG when
 * want_len is -1. */
static void assert_read(const char *path, size_t max, long want_len)
{
	char *buf = NULL;
	size_t len = 0;
	errno = 0;
	int rc = config_file_read(path, max, &buf, &len);
	if (want_len < 0) {
		assert_int_equal(rc, -1);
		assert_int_equal(errno, EFBIG);
		return;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(len, (size_t)want_len);
	assert_int_equal(buf[len], '\0');
	free(buf);
}

/* A file is read whole up to max bytes and refused past it; and so is one
 * whose size fstat does not know (/proc's files say 0), which is read in
 * growing pieces. */
static void read_takes_a_file_up_to_max_bytes(void **state)
{
	struct fx *f = *state;
	char path[128];

	write_file(f->creds, "ten", "0123456789");
	snprintf(path, sizeof(path), "%s/ten", f->creds);
	assert_read(path, 10, 10);
	assert_read(path, 1000, 10);
	assert_read(path, 9, -1);
	write_file(f->creds, "empty", "");
	snprintf(path, sizeof(path), "%s/empty", f->creds);
	assert_read(path, 0, 0);

	/* The same text through config_file_read and stdio. */
	char want[16384];
	FILE *in = fopen("/proc/self/limits", "r");
	assert_non_null(in);
	size_t n = fread(want, 1, sizeof(want), in);
	fclose(in);
	assert_true(n > 1000 && n < sizeof(want));
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(config_file_read("/proc/self/limits", 1 << 20, &buf, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(buf, want, n);
	free(buf);
	assert_read("/proc/self/limits", 100, -1);
}

static void pipeline_reads_secret_file_and_records_secret_paths_as_written(void **state)
{
	struct fx *f = *state;
	struct pipeline p = {0};
	char path[128];

	write_file(f->creds, "github-webhook", "hook-secret\n");
	write_file(f->pipes, "app.yaml",
		   "trigger:\n"
		   "  github:\n"
		   "    repository: octo/app\n"
		   "    secret_file: ${CREDENTIALS_DIRECTORY}/github-webhook\n"
		   "secrets: {TOKEN: \"${CREDENTIALS_DIRECTORY}/registry-token\"}\n"
		   "stages: {build: {run: [\"true\"]}}\n");
	snprintf(path, sizeof(path), "%s/app.yaml", f->pipes);
	assert_int_equal(pipeline_load_file(path, &p, f->err, sizeof(f->err)), 0);
	assert_string_equal(p.secret, "hook-secret");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(p.def, "secrets"), "TOKEN")),
	    "${CREDENTIALS_DIRECTORY}/registry-token");
	pipeline_clear(&p);

	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(pipeline_load_file(path, &p, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "secret_file: cannot read \"${CREDENTIALS_DIRECTORY}/"
				       "github-webhook\""));
	pipeline_clear(&p);
}

static void worker_reads_a_secret_from_its_own_credentials(void **state)
{
	struct fx *f = *state;
	json_t *def =
	    json_pack("{s:{s:s}}", "secrets", "TOKEN", "${CREDENTIALS_DIRECTORY}/registry-token");
	json_t *secrets;

	write_file(f->creds, "registry-token", "t0k3n\n");
	secrets = stage_env_secrets(def, f->err, sizeof(f->err));
	assert_non_null(secrets);
	assert_string_equal(json_string_value(json_object_get(secrets, "TOKEN")), "t0k3n");
	stage_env_secrets_free(secrets);

	unsetenv("CREDENTIALS_DIRECTORY");
	assert_null(stage_env_secrets(def, f->err, sizeof(f->err)));
	assert_string_equal(f->err, "secret file ${CREDENTIALS_DIRECTORY}/registry-token: "
				    "CREDENTIALS_DIRECTORY is not set");
	json_decref(def);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(resolve_keeps_a_credential_path_as_written, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(expand_uses_this_process_credentials_directory, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		expand_without_credentials_directory_fails_with_a_reason, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		read_finds_the_credential_and_check_leaves_it_to_the_reader, setup, teardown),
	    cmocka_unit_test_setup_teardown(read_takes_a_file_up_to_max_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		pipeline_reads_secret_file_and_records_secret_paths_as_written, setup, teardown),
	    cmocka_unit_test_setup_teardown(worker_reads_a_secret_from_its_own_credentials, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
