/* Tests for workers/stage_env: the stages whose outputs a run's definition
 * can use are those a ${<stage>.<KEY>} names, wherever in the definition it
 * stands, each once, and nothing else is; a secret is read whole or not at
 * all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tests/unit/tmpdir.h"
#include "workers/stage_env.h"

/* The sources of the definition def_text, as their names joined by ',' in
 * sorted order. */
static char *sources_of(const char *def_text)
{
	json_error_t jerr;
	json_t *def = json_loads(def_text, 0, &jerr);
	assert_non_null(def);
	json_t *sources = stage_env_output_sources(def);
	assert_non_null(sources);
	char *text = json_dumps(sources, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(sources);
	json_decref(def);
	return text;
}

static void names_every_referenced_stage_once(void **state)
{
	(void)state;
	char *got = sources_of(
	    "{\"stages\": {"
	    " \"build\": {\"run\": [\"make\"]},"
	    " \"push\": {\"run\": [\"push\", \"${build.image}\", \"x${build.tag}y\"]},"
	    " \"lint\": {\"run\": [\"lint\"]},"
	    " \"deploy@prod\": {\"env\": \"prod\", \"rollout\": {\"image\": \"${push.image}\","
	    "   \"hooks\": {\"pre\": [{\"run\": [\"echo\", \"${push.digest}\"]}]}}}},"
	    " \"vars\": {\"NOTE\": \"${lint.result}\"}}");
	assert_string_equal(got, "{\"build\":true,\"lint\":true,\"push\":true}");
	free(got);
}

static void other_names_are_no_sources(void **state)
{
	(void)state;
	/* A variable, a name without a key, an unknown stage, a bare "$",
	 * an unterminated "${": none names a stage's output. */
	char *got = sources_of("{\"stages\": {"
			       " \"build\": {\"run\": [\"echo\", \"${SLUICE_SHA}\", \"${build}\","
			       "  \"${ghost.image}\", \"$build.image\", \"${\", \"${build\"]},"
			       " \"test\": {\"run\": [\"true\"], \"needs\": [\"build\"]}}}");
	assert_string_equal(got, "{}");
	free(got);
}

/* "$${build.image}" writes a literal "${build.image}": reading build's
 * outputs for it costs a read and changes nothing. */
static void an_escaped_reference_still_counts(void **state)
{
	(void)state;
	char *got = sources_of("{\"stages\": {\"build\": {\"run\": [\"true\"]},"
			       " \"test\": {\"run\": [\"echo\", \"$${build.image}\"]}}}");
	assert_string_equal(got, "{\"build\":true}");
	free(got);
}

/* The environment ends a value at its first NUL: a secret holding one would
 * reach the stage cut short, and unmasked past the cut. */
static void a_secret_with_a_nul_byte_is_an_error(void **state)
{
	(void)state;
	char dir[64], path[128], def_text[256], err[256] = "";
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "stage-env"), 0);
	snprintf(path, sizeof(path), "%s/key", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fwrite("head\0tail\n", 1, 10, f);
	assert_int_equal(fclose(f), 0);
	snprintf(def_text, sizeof(def_text), "{\"secrets\": {\"KEY\": \"%s\"}}", path);
	json_t *def = json_loads(def_text, 0, NULL);
	assert_non_null(def);

	json_t *secrets = stage_env_secrets(def, err, sizeof(err));
	assert_null(secrets);
	char want[256];
	snprintf(want, sizeof(want), "secret file %s holds a NUL byte", path);
	assert_string_equal(err, want);

	json_decref(def);
	tmpdir_remove(dir);
}

/* A secret that cannot be read is an error, not an empty value: the stage
 * would run without it, and nothing would mask a short one. */
static void a_secret_that_cannot_be_read_is_an_error(void **state)
{
	(void)state;
	char dir[64], def_text[256], err[256] = "", want[256];
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "stage-env"), 0);
	snprintf(def_text, sizeof(def_text), "{\"secrets\": {\"KEY\": \"%s\"}}", dir);
	json_t *def = json_loads(def_text, 0, NULL);
	assert_non_null(def);

	assert_null(stage_env_secrets(def, err, sizeof(err)));
	snprintf(want, sizeof(want), "secret file %s: Is a directory", dir);
	assert_string_equal(err, want);

	json_decref(def);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(names_every_referenced_stage_once),
	    cmocka_unit_test(other_names_are_no_sources),
	    cmocka_unit_test(an_escaped_reference_still_counts),
	    cmocka_unit_test(a_secret_with_a_nul_byte_is_an_error),
	    cmocka_unit_test(a_secret_that_cannot_be_read_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
