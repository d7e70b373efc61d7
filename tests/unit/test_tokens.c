/* tokens (lib/tokens.c): the tokens file, finding a token, making one; and
 * the small pure parts of the API around them (agent/validate.c's error
 * objects, agent/logstream.c's log lines and event format). */
#include <event2/buffer.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/logstream.h"
#include "agent/validate.h"
#include "lib/tokens.h"

static void hex_of(const char *token, char *out)
{
	unsigned char d[32];
	SHA256((const unsigned char *)token, strlen(token), d);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void file_with_comments_finds_each_token_and_its_role(void **state)
{
	char a[65], b[65], text[512], err[256];
	struct tokens t;
	(void)state;
	hex_of("alpha-token", a);
	hex_of("beta-token", b);
	snprintf(text, sizeof(text),
		 "# who role sha256\n\nci admin %s\n  dash\tread %s # comment\n", a, b);
	assert_int_equal(tokens_parse(text, strlen(text), "tokens", &t, err, sizeof(err)), 0);
	assert_int_equal(t.n, 2);
	const struct tokens_entry *e = tokens_find(&t, "alpha-token");
	assert_non_null(e);
	assert_string_equal(e->name, "ci");
	assert_int_equal(e->role, TOKENS_ADMIN);
	assert_int_equal(tokens_find(&t, "beta-token")->role, TOKENS_READ);
	assert_null(tokens_find(&t, "gamma-token"));
	assert_null(tokens_find(&t, ""));
	tokens_clear(&t);
}

static void bad_lines_name_file_and_line_and_never_echo_the_value(void **state)
{
	char a[65], text[512], err[256];
	struct tokens t;
	(void)state;
	hex_of("x", a);
	static const struct {
		const char *fmt;
		const char *want;
	} cases[] = {
	    {"ci admin\n", "tokens:1: expected \"NAME ROLE SHA256HEX\""},
	    {"ci root %s\n", "tokens:1: unknown role \"root\" (read, approve or admin)"},
	    {"\nci admin slc_secret_pasted_in_clear\n", "tokens:2: expected the SHA-256"},
	    {"c/i read %s\n", "tokens:1: the name must be"},
	    {"ci read %s\nci admin %s\n", "tokens:2: the name ci is used twice"},
	    {"ci read %s\nbot admin %s\n", "tokens:2: the same token as ci"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), cases[i].fmt, a, a);
		assert_int_equal(tokens_parse(text, strlen(text), "tokens", &t, err, sizeof(err)),
				 -1);
		assert_int_equal(strncmp(err, cases[i].want, strlen(cases[i].want)), 0);
		assert_null(strstr(err, "slc_secret"));
		assert_int_equal(t.n, 0);
	}
}

static void missing_file_is_an_error_naming_it(void **state)
{
	struct tokens t;
	char err[256];
	(void)state;
	assert_int_equal(tokens_load("/nonexistent/tokens", &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/tokens"));
}

static void generated_tokens_differ_and_their_line_parses_back(void **state)
{
	char t1[TOKENS_TOKEN_MAX], t2[TOKENS_TOKEN_MAX], line[200], err[256];
	struct tokens t;
	(void)state;
	assert_int_equal(tokens_generate(t1, sizeof(t1)), 0);
	assert_int_equal(tokens_generate(t2, sizeof(t2)), 0);
	assert_string_not_equal(t1, t2);
	assert_int_equal(strlen(t1), 68);
	assert_int_equal(tokens_line("deploy-bot", TOKENS_APPROVE, t1, line, sizeof(line)), 0);
	assert_null(strstr(line, t1 + 4));
	assert_int_equal(strncmp(line, "deploy-bot approve ", 19), 0);
	assert_int_equal(tokens_parse(line, strlen(line), "x", &t, err, sizeof(err)), 0);
	assert_non_null(tokens_find(&t, t1));
	assert_null(tokens_find(&t, t2));
	tokens_clear(&t);
	assert_int_equal(tokens_line("bad name", TOKENS_READ, t1, line, sizeof(line)), -1);
	assert_int_equal(tokens_line("ok", TOKENS_NONE, t1, line, sizeof(line)), -1);
	assert_int_equal(tokens_role_parse("approve"), TOKENS_APPROVE);
	assert_int_equal(tokens_role_parse("Admin"), TOKENS_NONE);
}

static void validator_messages_become_positioned_errors(void **state)
{
	(void)state;
	json_t *e = validate_error_object("app.yaml:12:14: stages.test.needs[0]: unknown stage "
					  "\"biuld\"");
	assert_string_equal(json_string_value(json_object_get(e, "file")), "app.yaml");
	assert_int_equal(json_integer_value(json_object_get(e, "line")), 12);
	assert_int_equal(json_integer_value(json_object_get(e, "column")), 14);
	assert_string_equal(json_string_value(json_object_get(e, "path")), "stages.test.needs[0]");
	assert_string_equal(json_string_value(json_object_get(e, "message")),
			    "unknown stage \"biuld\"");
	json_decref(e);
	e = validate_error_object("app.yaml:3:1: did not find expected key");
	assert_string_equal(json_string_value(json_object_get(e, "path")), "");
	assert_string_equal(json_string_value(json_object_get(e, "message")),
			    "did not find expected key");
	json_decref(e);
	e = validate_error_object("app.yaml: file is larger than 4 MiB");
	assert_true(json_is_null(json_object_get(e, "line")));
	json_decref(e);
}

static void log_events_carry_the_entry_id_and_one_json_data_line(void **state)
{
	struct evbuffer *b = evbuffer_new();
	(void)state;
	assert_int_equal(logstream_add_line(b, "1700000000000-3", "1700000000000", "stderr",
					    "two\nlines \"quoted\""),
			 0);
	size_t len = evbuffer_get_length(b);
	char *text = strndup((char *)evbuffer_pullup(b, -1), len);
	assert_string_equal(
	    text, "id: 1700000000000-3\n"
		  "data: {\"id\":\"1700000000000-3\",\"time\":\"2023-11-14T22:13:20.000Z\","
		  "\"stream\":\"stderr\",\"line\":\"two\\nlines \\\"quoted\\\"\"}\n\n");
	free(text);
	evbuffer_free(b);
}

/* A line stored before workers repaired them is shown, repaired. */
static void a_log_line_that_is_not_utf8_is_shown_repaired(void **state)
{
	(void)state;
	json_t *o = logstream_line("1-0", "", "stdout", "caf\xe9 \xff!");
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "line")),
			    "caf\xef\xbf\xbd \xef\xbf\xbd!");
	assert_true(json_is_null(json_object_get(o, "time")));
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(file_with_comments_finds_each_token_and_its_role),
	    cmocka_unit_test(bad_lines_name_file_and_line_and_never_echo_the_value),
	    cmocka_unit_test(missing_file_is_an_error_naming_it),
	    cmocka_unit_test(generated_tokens_differ_and_their_line_parses_back),
	    cmocka_unit_test(validator_messages_become_positioned_errors),
	    cmocka_unit_test(log_events_carry_the_entry_id_and_one_json_data_line),
	    cmocka_unit_test(a_log_line_that_is_not_utf8_is_shown_repaired),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
