/* Tests for workers/stage_outputs: $SLUICE_OUTPUT's KEY=VALUE lines become
 * the stage's outputs; what is not such a line is reported and left out;
 * whatever the stage put in the file's place, reading it ends at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "stages/logmask.h"
#include "tmpdir.h"
#include "workers/stage_outputs.h"

struct read {
	const struct logmask *mask;
	char dir[64];
	char path[128];
	char *json;
	char notes[8][256];
	int nnotes;
	char err[256];
	int rc;
	int64_t ms;
};

static void on_note(const char *text, void *arg)
{
	struct read *r = arg;
	if (r->nnotes < 8)
		snprintf(r->notes[r->nnotes++], sizeof(r->notes[0]), "%s", text);
}

static int setup(void **state)
{
	struct read *r = calloc(1, sizeof(*r));
	if (!r || tmpdir_make(r->dir, sizeof(r->dir), "sluice-outputs") < 0)
		return -1;
	snprintf(r->path, sizeof(r->path), "%s/build", r->dir);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct read *r = *state;
	tmpdir_remove(r->dir);
	free(r->json);
	free(r);
	return 0;
}

static void read_outputs(struct read *r)
{
	int64_t t0 = clock_mono_ms();
	r->rc = stage_outputs_read(r->path, r->mask, &r->json, on_note, r, r->err, sizeof(r->err));
	r->ms = clock_mono_ms() - t0;
}

/* Writes len bytes of text to the output file. */
static void write_file(const struct read *r, const char *text, size_t len)
{
	FILE *f = fopen(r->path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void test_pairs_are_read_and_other_lines_reported(void **state)
{
	struct read *r = *state;
	/* A line's CRLF ending is no part of its value; a CR within is. */
	const char text[] = "image=reg.example/app@sha256:abc\r\n"
			    "\n"
			    "not a pair\n"
			    "1st=no\n"
			    "progress=50%\rdone\r\n"
			    "tag=v1=final";
	write_file(r, text, sizeof(text) - 1);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"image\":\"reg.example/app@sha256:abc\","
				     "\"progress\":\"50%\\rdone\",\"tag\":\"v1=final\"}");
	assert_int_equal(r->nnotes, 2);
	assert_string_equal(r->notes[0], "$SLUICE_OUTPUT: not KEY=VALUE or KEY<<DELIMITER, "
					 "left out: not a pair");
	assert_string_equal(r->notes[1], "$SLUICE_OUTPUT: not KEY=VALUE or KEY<<DELIMITER, "
					 "left out: 1st=no");
}

/* GitHub Actions' multi-line form: the lines between KEY<<DELIMITER and
 * DELIMITER are the value, joined by newlines, and none of them is read as
 * an output of its own; whichever of '=' and "<<" comes first decides. */
static void test_a_multi_line_value_is_read_between_its_delimiters(void **state)
{
	struct read *r = *state;
	const char text[] = "notes<<EOF\r\n"
			    "release=v2\r\n"
			    "image=evil\n"
			    "\n"
			    "EOF\n"
			    "empty<<END\n"
			    "END\n"
			    "cmp=a<<b\n"
			    "image=good\n";
	write_file(r, text, sizeof(text) - 1);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"notes\":\"release=v2\\nimage=evil\\n\","
				     "\"empty\":\"\",\"cmp\":\"a<<b\",\"image\":\"good\"}");
	assert_int_equal(r->nnotes, 0);
}

/* A value whose closing line never comes is left out, and so is all after
 * it, which was its value; a "<<" with no delimiter is no output. */
static void test_a_multi_line_value_without_its_end_is_left_out(void **state)
{
	struct read *r = *state;
	const char text[] = "a=1\n"
			    "b<<\n"
			    "notes<<EOF\n"
			    "image=evil\n"
			    "EOF \n";
	write_file(r, text, sizeof(text) - 1);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"a\":\"1\"}");
	assert_int_equal(r->nnotes, 2);
	assert_string_equal(r->notes[0],
			    "$SLUICE_OUTPUT: KEY<<DELIMITER without a delimiter, left out: b<<");
	assert_string_equal(r->notes[1], "$SLUICE_OUTPUT: the value of notes has no line ending "
					 "it, left out with all after it");
}

static void on_emit(enum logmask_stream s, const char *line, size_t len, void *arg)
{
	(void)s;
	(void)line;
	(void)len;
	(void)arg;
}

/* Outputs are shown by the API and expanded into later stages' commands,
 * which may print them: a value that would be masked in a log is not an
 * output, as GitHub Actions skips such an output. */
static void test_a_value_holding_a_secret_is_left_out(void **state)
{
	struct read *r = *state;
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, NULL);
	assert_non_null(m);
	assert_int_equal(logmask_add_secret(m, "hunter22", 8), 0);
	r->mask = m;
	const char text[] = "user=alice\n"
			    "url=https://alice:hunter22@db.example\n"
			    "encoded=aHVudGVyMjI=\n";
	write_file(r, text, sizeof(text) - 1);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"user\":\"alice\"}");
	assert_int_equal(r->nnotes, 2);
	assert_string_equal(r->notes[0],
			    "$SLUICE_OUTPUT: the value of url holds a secret, left out");
	assert_string_equal(r->notes[1],
			    "$SLUICE_OUTPUT: the value of encoded holds a secret, left out");
	logmask_free(m);
}

/* The name of an output is shown as it is: one holding a secret is left
 * out without naming it, and so is a secret written across the '='. */
static void test_a_name_or_a_line_holding_a_secret_is_left_out(void **state)
{
	struct read *r = *state;
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, NULL);
	assert_non_null(m);
	assert_int_equal(logmask_add_secret(m, "ghp_abc123", 10), 0);
	assert_int_equal(logmask_add_secret(m, "left=right", 10), 0);
	r->mask = m;
	const char text[] = "ghp_abc123=1\n"
			    "left=right\n"
			    "ok=yes\n"
			    "ghp_abc123<<EOF\n"
			    "x\n"
			    "EOF\n";
	write_file(r, text, sizeof(text) - 1);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"ok\":\"yes\"}");
	assert_int_equal(r->nnotes, 3);
	assert_string_equal(r->notes[0],
			    "$SLUICE_OUTPUT: an output's name holds a secret, left out");
	assert_string_equal(r->notes[1],
			    "$SLUICE_OUTPUT: the line of left holds a secret, left out");
	assert_string_equal(r->notes[2],
			    "$SLUICE_OUTPUT: an output's name holds a secret, left out");
	logmask_free(m);
}

static void test_a_file_that_is_gone_holds_no_outputs(void **state)
{
	struct read *r = *state;
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_null(r->json);
	assert_int_equal(r->nnotes, 0);
}

static void test_a_line_with_a_nul_byte_is_left_out(void **state)
{
	struct read *r = *state;
	const char text[] = "a=1\nb=\0hidden\nc=3\n";
	write_file(r, text, sizeof(text) - 1);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"a\":\"1\",\"c\":\"3\"}");
	assert_int_equal(r->nnotes, 1);
	assert_string_equal(r->notes[0], "$SLUICE_OUTPUT: a line holds a NUL byte, left out");
}

/* NUL bytes count toward the limit as any others do. */
static void test_nul_bytes_past_the_limit_are_left_out(void **state)
{
	struct read *r = *state;
	size_t len = 4 * STAGE_OUTPUTS_MAX;
	char *text = calloc(1, len);
	assert_non_null(text);
	memcpy(text, "first=kept\n", 11);
	write_file(r, text, len);
	free(text);
	read_outputs(r);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->json, "{\"first\":\"kept\"}");
	assert_int_equal(r->nnotes, 1);
	assert_string_equal(r->notes[0],
			    "$SLUICE_OUTPUT is larger than 64 KiB: the rest is left out");
}

static void test_a_link_to_dev_zero_is_refused_at_once(void **state)
{
	struct read *r = *state;
	assert_int_equal(symlink("/dev/zero", r->path), 0);
	read_outputs(r);
	assert_int_equal(r->rc, -1);
	assert_null(r->json);
	assert_string_equal(r->err, "$SLUICE_OUTPUT is a symbolic link, not a regular file");
	assert_true(r->ms < 1000);
}

static void test_a_fifo_is_refused_at_once(void **state)
{
	struct read *r = *state;
	assert_int_equal(mkfifo(r->path, 0600), 0);
	read_outputs(r);
	assert_int_equal(r->rc, -1);
	assert_null(r->json);
	assert_string_equal(r->err, "$SLUICE_OUTPUT is a FIFO, not a regular file");
	assert_true(r->ms < 1000);
}

static void test_a_directory_is_refused(void **state)
{
	struct read *r = *state;
	assert_int_equal(mkdir(r->path, 0700), 0);
	read_outputs(r);
	assert_int_equal(r->rc, -1);
	assert_string_equal(r->err, "$SLUICE_OUTPUT is a directory, not a regular file");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_pairs_are_read_and_other_lines_reported, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_multi_line_value_is_read_between_its_delimiters,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_multi_line_value_without_its_end_is_left_out,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_name_or_a_line_holding_a_secret_is_left_out,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_value_holding_a_secret_is_left_out, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_file_that_is_gone_holds_no_outputs, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_line_with_a_nul_byte_is_left_out, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_nul_bytes_past_the_limit_are_left_out, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_link_to_dev_zero_is_refused_at_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_fifo_is_refused_at_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_directory_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
