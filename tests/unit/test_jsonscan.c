/* The one-pass JSON checker and the values it picks out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonscan.h"

static const char *const github_paths[] = {
    "repository.full_name",
    "repository.clone_url",
    "ref",
    "after",
    "deleted",
    "action",
    "number",
    "pull_request",
    "pull_request.head.sha",
    "pull_request.base.ref",
    "repository.owner.id",
};
#define NPATHS (sizeof(github_paths) / sizeof(github_paths[0]))

/* Scans a heap copy of exactly len bytes, so that AddressSanitizer sees any
 * read past the end. */
static int scan_fields(const char *text, size_t len, struct jsonscan_field *f, size_t n,
		       char **store, char *err)
{
	char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, text, len);
	err[0] = '\0';
	int rc = jsonscan_parse(copy, len, f, n, store, err, 256);
	free(copy);
	return rc;
}

static int scan(const char *text, size_t len, char *err)
{
	char *store = NULL;
	int rc = scan_fields(text, len, NULL, 0, &store, err);
	assert_null(store);
	return rc;
}

static void assert_rejected(const char *text, size_t len, const char *message)
{
	char err[256];
	if (scan(text, len, err) != -1)
		fail_msg("accepted: %.*s", (int)len, text);
	if (strcmp(err, message) != 0)
		fail_msg("%.*s: got \"%s\", expected \"%s\"", (int)len, text, err, message);
}

#define REJECTS(text, message) assert_rejected(text, sizeof(text) - 1, message)

static void assert_accepted(const char *text, size_t len, int type)
{
	char err[256];
	int rc = scan(text, len, err);
	if (rc != type)
		fail_msg("%.*s: got %d (%s), expected type %d", (int)len, text, rc, err, type);
}

#define ACCEPTS(text, type) assert_accepted(text, sizeof(text) - 1, type)

static char *fixture_dir(void)
{
	const char *env = getenv("SLUICE_FIXTURES");
	return strdup(env ? env : "../shared/fixtures/github");
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	char *buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* The fixture files, each read whole; the list ends with a NULL text. */
struct fixture {
	char *name;
	char *text;
	size_t len;
};

static struct fixture *fixtures(void)
{
	char *dir = fixture_dir();
	DIR *d = opendir(dir);
	if (!d)
		fail_msg("no fixture directory %s (set SLUICE_FIXTURES)", dir);
	struct fixture *list = calloc(64, sizeof(*list));
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 63) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 5, ".json") != 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		list[n].name = strdup(e->d_name);
		list[n].text = read_file(path, &list[n].len);
		n++;
	}
	closedir(d);
	free(dir);
	assert_true(n >= 5);
	return list;
}

static void fixtures_free(struct fixture *list)
{
	for (struct fixture *f = list; f->text; f++) {
		free(f->name);
		free(f->text);
	}
	free(list);
}

static const json_t *jansson_at(const json_t *root, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	const json_t *v = root;
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
		v = json_is_object(v) ? json_object_get(v, k) : NULL;
	return v;
}

static void every_fixture_yields_the_values_jansson_sees(void **state)
{
	(void)state;
	struct fixture *list = fixtures();
	for (struct fixture *fx = list; fx->text; fx++) {
		struct jsonscan_field f[NPATHS];
		char err[256], *store = NULL;
		for (size_t i = 0; i < NPATHS; i++)
			f[i].path = github_paths[i];
		int type = scan_fields(fx->text, fx->len, f, NPATHS, &store, err);
		if (type != JSONSCAN_OBJECT)
			fail_msg("%s: %s", fx->name, err);
		json_error_t jerr;
		json_t *root = json_loadb(fx->text, fx->len, 0, &jerr);
		assert_non_null(root);
		int found = 0;
		for (size_t i = 0; i < NPATHS; i++) {
			const json_t *v = jansson_at(root, f[i].path);
			switch (f[i].type) {
			case JSONSCAN_ABSENT:
				assert_null(v);
				break;
			case JSONSCAN_STRING:
				assert_true(json_is_string(v));
				assert_string_equal(f[i].string, json_string_value(v));
				assert_int_equal(f[i].length, json_string_length(v));
				break;
			case JSONSCAN_NUMBER:
				assert_true(json_is_number(v));
				assert_int_equal(f[i].is_integer, json_is_integer(v));
				if (f[i].is_integer)
					assert_int_equal(f[i].integer, json_integer_value(v));
				break;
			case JSONSCAN_TRUE:
				assert_true(json_is_true(v));
				break;
			case JSONSCAN_FALSE:
				assert_true(json_is_false(v));
				break;
			case JSONSCAN_NULL:
				assert_true(json_is_null(v));
				break;
			case JSONSCAN_OBJECT:
				assert_true(json_is_object(v));
				break;
			case JSONSCAN_ARRAY:
				assert_true(json_is_array(v));
				break;
			}
			found += f[i].type != JSONSCAN_ABSENT;
		}
		/* Each fixture names its repository. */
		assert_int_equal(f[0].type, JSONSCAN_STRING);
		assert_true(found >= 3);
		json_decref(root);
		free(store);
	}
	fixtures_free(list);
}

static void push_fixture_gives_ref_after_and_deleted(void **state)
{
	(void)state;
	char *dir = fixture_dir(), path[1024], err[256], *store = NULL;
	snprintf(path, sizeof(path), "%s/push-payload.json", dir);
	free(dir);
	size_t len;
	char *text = read_file(path, &len);
	struct jsonscan_field f[4] = {
	    {.path = "ref"}, {.path = "after"}, {.path = "deleted"}, {.path = "commits"}};
	assert_int_equal(scan_fields(text, len, f, 4, &store, err), JSONSCAN_OBJECT);
	assert_int_equal(f[0].type, JSONSCAN_STRING);
	assert_int_equal(strncmp(f[0].string, "refs/", 5), 0);
	assert_int_equal(f[1].length, 40);
	assert_int_equal(f[2].type, JSONSCAN_TRUE); /* the fixture deletes its ref */
	assert_int_equal(f[3].type, JSONSCAN_ARRAY);
	assert_int_equal(text[f[3].offset], '[');
	free(store);
	free(text);
}

/* Cut anywhere before its closing brace, a payload is not JSON; only the
 * trailing white space may go. */
static void every_truncation_of_every_fixture_is_rejected(void **state)
{
	(void)state;
	struct fixture *list = fixtures();
	for (struct fixture *fx = list; fx->text; fx++) {
		size_t last = fx->len;
		while (last > 0 && strchr(" \t\r\n", fx->text[last - 1]))
			last--;
		for (size_t cut = 0; cut < last; cut++) {
			struct jsonscan_field f[NPATHS];
			char err[256], *store = NULL;
			for (size_t i = 0; i < NPATHS; i++)
				f[i].path = github_paths[i];
			if (scan_fields(fx->text, cut, f, NPATHS, &store, err) != -1)
				fail_msg("%s cut at %zu accepted", fx->name, cut);
			assert_null(store);
			if (cut == 0)
				assert_string_equal(err, "empty input");
			else if (!strstr(err, " at byte "))
				fail_msg("%s cut at %zu: %s", fx->name, cut, err);
		}
		for (size_t cut = last; cut <= fx->len; cut++) {
			char err[256];
			assert_int_equal(scan(fx->text, cut, err), JSONSCAN_OBJECT);
		}
	}
	fixtures_free(list);
}

static void an_empty_body_is_rejected(void **state)
{
	(void)state;
	REJECTS("", "empty input");
	REJECTS("  \n\t", "unexpected end of input at byte 4");
}

static void invalid_utf8_is_rejected_where_it_starts(void **state)
{
	(void)state;
	REJECTS("[\"ab\xc3\"]", "invalid UTF-8 at byte 4");	      /* cut short */
	REJECTS("[\"\x80\"]", "invalid UTF-8 at byte 2");	      /* lone continuation */
	REJECTS("[\"\xc0\xaf\"]", "invalid UTF-8 at byte 2");	      /* overlong '/' */
	REJECTS("[\"\xc1\xbf\"]", "invalid UTF-8 at byte 2");	      /* overlong */
	REJECTS("[\"\xe0\x80\xaf\"]", "invalid UTF-8 at byte 2");     /* overlong, 3 bytes */
	REJECTS("[\"\xf0\x80\x80\xaf\"]", "invalid UTF-8 at byte 2"); /* overlong, 4 bytes */
	REJECTS("[\"\xed\xa0\x80\"]", "invalid UTF-8 at byte 2");     /* U+D800 encoded */
	REJECTS("[\"\xed\xbf\xbf\"]", "invalid UTF-8 at byte 2");     /* U+DFFF encoded */
	REJECTS("[\"\xf4\x90\x80\x80\"]", "invalid UTF-8 at byte 2"); /* past U+10FFFF */
	REJECTS("[\"\xf5\x80\x80\x80\"]", "invalid UTF-8 at byte 2");
	REJECTS("[\"\xff\"]", "invalid UTF-8 at byte 2");
	REJECTS("[\"\xe2\x82\"]", "invalid UTF-8 at byte 2");
	REJECTS("[\"\xe2\x28\xa1\"]", "invalid UTF-8 at byte 2");
	REJECTS("[\""
		"abcdefghijklmnop\xc3\x28"
		"\"]",
		"invalid UTF-8 at byte 18");
	REJECTS("[\xc3\xa9]", "value expected, found byte 0xc3 at byte 1");
	ACCEPTS("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]", JSONSCAN_ARRAY);
	ACCEPTS("[\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\"]",
		JSONSCAN_ARRAY);
	ACCEPTS("[\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"]", JSONSCAN_ARRAY);
}

static void lone_surrogates_are_rejected(void **state)
{
	(void)state;
	REJECTS("[\"\\ud800\"]", "lone surrogate \\ud800 at byte 2");
	REJECTS("[\"\\uDBFF\"]", "lone surrogate \\udbff at byte 2");
	REJECTS("[\"\\udc00\"]", "lone surrogate \\udc00 at byte 2");
	REJECTS("[\"x\\ud83d\\u0041\"]", "lone surrogate \\ud83d at byte 3");
	REJECTS("[\"\\ud83d\\ud83d\"]", "lone surrogate \\ud83d at byte 2");
	REJECTS("[\"\\ud83dx\"]", "lone surrogate \\ud83d at byte 2");
	REJECTS("[\"\\ude00\\ud83d\"]", "lone surrogate \\ude00 at byte 2");
	ACCEPTS("[\"\\ud83d\\ude00\"]", JSONSCAN_ARRAY);
	ACCEPTS("[\"\\uDBFF\\uDFFF\"]", JSONSCAN_ARRAY);
}

static void bad_escapes_and_raw_control_characters_are_rejected(void **state)
{
	(void)state;
	REJECTS("[\"\\x41\"]", "invalid escape '\\x' at byte 2");
	REJECTS("[\"\\'\"]", "invalid escape '\\'' at byte 2");
	REJECTS("[\"\\U0041\"]", "invalid escape '\\U' at byte 2");
	REJECTS("[\"\\u12G4\"]", "invalid \\u escape, four hex digits expected at byte 2");
	REJECTS("[\"\\u12\"]", "invalid \\u escape, four hex digits expected at byte 2");
	REJECTS("[\"\\u12", "unexpected end of input at byte 6");
	REJECTS("[\"a\tb\"]", "control character 0x09 not escaped in a string at byte 3");
	REJECTS("[\"a\nb\"]", "control character 0x0a not escaped in a string at byte 3");
	REJECTS("[\"\x1f\"]", "control character 0x1f not escaped in a string at byte 2");
	ACCEPTS("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u0000\x7f\"]", JSONSCAN_ARRAY);
}

static void numbers_follow_the_grammar(void **state)
{
	(void)state;
	REJECTS("[01]", "leading zero in a number at byte 1");
	REJECTS("[-01]", "leading zero in a number at byte 2");
	REJECTS("[00]", "leading zero in a number at byte 1");
	REJECTS("[1.]", "digit expected after a decimal point, found ']' at byte 3");
	REJECTS("[.5]", "value expected, found '.' at byte 1");
	REJECTS("[+1]", "value expected, found '+' at byte 1");
	REJECTS("[-]", "digit expected in a number, found ']' at byte 2");
	REJECTS("[1e]", "digit expected in an exponent, found ']' at byte 3");
	REJECTS("[1e+]", "digit expected in an exponent, found ']' at byte 4");
	REJECTS("[0x10]", "',' or ']' expected in an array, found 'x' at byte 2");
	REJECTS("[1 2]", "',' or ']' expected in an array, found '2' at byte 3");
	ACCEPTS("[0, -0, 1.5e-3, 1E+2, 123, -7.25, 0.0e0]", JSONSCAN_ARRAY);
	ACCEPTS("-12.5e3", JSONSCAN_NUMBER);
}

static void integers_are_read_when_they_fit(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int is_integer;
		long long value;
	} cases[] = {
	    {"{\"n\": 42}", 1, 42},
	    {"{\"n\": -0}", 1, 0},
	    {"{\"n\": 9223372036854775807}", 1, INT64_MAX},
	    {"{\"n\": -9223372036854775808}", 1, INT64_MIN},
	    {"{\"n\": 9223372036854775808}", 0, 0},
	    {"{\"n\": 1.0}", 0, 0},
	    {"{\"n\": 1e2}", 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct jsonscan_field f = {.path = "n"};
		char err[256], *store = NULL;
		assert_int_equal(
		    scan_fields(cases[i].text, strlen(cases[i].text), &f, 1, &store, err),
		    JSONSCAN_OBJECT);
		assert_int_equal(f.type, JSONSCAN_NUMBER);
		assert_int_equal(f.is_integer, cases[i].is_integer);
		if (f.is_integer)
			assert_int_equal(f.integer, cases[i].value);
		assert_null(store);
	}
}

static void literals_and_structure_follow_the_grammar(void **state)
{
	(void)state;
	REJECTS("[tru]", "invalid literal, true expected at byte 1");
	REJECTS("[True]", "value expected, found 'T' at byte 1");
	REJECTS("[nul", "unexpected end of input at byte 4");
	REJECTS("{\"a\" 1}", "':' expected after an object key, found '1' at byte 5");
	REJECTS("{\"a\":1,}", "string key expected, found '}' at byte 7");
	REJECTS("{'a':1}", "string key expected, found ''' at byte 1");
	REJECTS("{a:1}", "string key expected, found 'a' at byte 1");
	REJECTS("{,}", "string key expected, found ',' at byte 1");
	REJECTS("[1,]", "value expected, found ']' at byte 3");
	REJECTS("{\"a\":1 \"b\":2}", "',' or '}' expected in an object, found '\"' at byte 7");
	REJECTS("[\"a\"", "unexpected end of input at byte 4");
	REJECTS("{\"a\":", "unexpected end of input at byte 5");
	REJECTS("[\"abc", "unexpected end of input at byte 5");
	ACCEPTS(" {\"a\": [true, false, null, {}, [], \"\"]} \r\n", JSONSCAN_OBJECT);
	ACCEPTS("\"top\"", JSONSCAN_STRING);
	ACCEPTS("null", JSONSCAN_NULL);
}

static void anything_after_the_value_is_rejected(void **state)
{
	(void)state;
	REJECTS("{} x", "end of input expected after the value, found 'x' at byte 3");
	REJECTS("{}{}", "end of input expected after the value, found '{' at byte 2");
	REJECTS("{},", "end of input expected after the value, found ',' at byte 2");
	REJECTS("1 2", "end of input expected after the value, found '2' at byte 2");
	ACCEPTS("{} \n", JSONSCAN_OBJECT);
}

static void nesting_past_the_limit_is_rejected(void **state)
{
	(void)state;
	char deep[2 * JSONSCAN_MAX_DEPTH + 3];
	memset(deep, '[', JSONSCAN_MAX_DEPTH);
	memset(deep + JSONSCAN_MAX_DEPTH, ']', JSONSCAN_MAX_DEPTH);
	assert_accepted(deep, 2 * JSONSCAN_MAX_DEPTH, JSONSCAN_ARRAY);

	memset(deep, '[', JSONSCAN_MAX_DEPTH + 1);
	memset(deep + JSONSCAN_MAX_DEPTH + 1, ']', JSONSCAN_MAX_DEPTH + 1);
	assert_rejected(deep, 2 * JSONSCAN_MAX_DEPTH + 2,
			"nesting deeper than 64 levels at byte 64");

	/* Objects count as much as arrays, and a very deep text does not
	 * recurse deeper than the limit. */
	size_t n = 100000, len = 0;
	char *objs = malloc(n * 5 + 1);
	for (size_t i = 0; i < n; i++) {
		memcpy(objs + len, "{\"a\":", 5);
		len += 5;
	}
	assert_rejected(objs, len, "nesting deeper than 64 levels at byte 320");
	free(objs);
}

static void nul_bytes_are_rejected(void **state)
{
	(void)state;
	REJECTS("{\"a\":\"x\0y\"}", "NUL byte at byte 7");
	REJECTS("{\"a\":1\0}", "NUL byte at byte 6");
	REJECTS("\0", "NUL byte at byte 0");
	REJECTS("{}\0", "NUL byte at byte 2");

	/* \u0000 is JSON, but would cut a returned string short. */
	struct jsonscan_field f = {.path = "ref"};
	char err[256], *store = NULL;
	const char *text = "{\"other\": \"a\\u0000\", \"ref\": \"main\\u0000evil\"}";
	assert_int_equal(scan_fields(text, strlen(text), &f, 1, &store, err), -1);
	assert_string_equal(err, "\\u0000 in the value of ref at byte 28");
	assert_null(store);
}

static void values_are_found_by_path_and_unescaped(void **state)
{
	(void)state;
	const char *text = "{\"list\": [{\"ref\": \"in an array\"}], \"repository\": {\"owner\": "
			   "{\"id\": 7}, \"full_name\": \"o/r\"}, \"ref\": \"a\\nb\\u00e9\\/"
			   "\\ud83d\\ude00\\\"\", \"r\\u0065po\": 1, \"after\": null}";
	struct jsonscan_field f[5] = {{.path = "ref"},
				      {.path = "repository.full_name"},
				      {.path = "repository.owner.id"},
				      {.path = "repository"},
				      {.path = "missing.key"}};
	char err[256], *store = NULL;
	assert_int_equal(scan_fields(text, strlen(text), f, 5, &store, err), JSONSCAN_OBJECT);
	assert_int_equal(f[0].type, JSONSCAN_STRING);
	assert_string_equal(f[0].string, "a\nb\xc3\xa9/\xf0\x9f\x98\x80\"");
	assert_int_equal(f[0].length, strlen("a\nb\xc3\xa9/\xf0\x9f\x98\x80\""));
	assert_string_equal(f[1].string, "o/r");
	assert_int_equal(f[2].type, JSONSCAN_NUMBER);
	assert_int_equal(f[2].integer, 7);
	assert_int_equal(f[3].type, JSONSCAN_OBJECT);
	assert_int_equal(text[f[3].offset], '{');
	assert_int_equal(f[4].type, JSONSCAN_ABSENT);
	free(store);

	/* A key written with escapes is the same key. */
	struct jsonscan_field g = {.path = "ref"};
	const char *escaped = "{\"r\\u0065\\u0066\": \"main\"}";
	assert_int_equal(scan_fields(escaped, strlen(escaped), &g, 1, &store, err),
			 JSONSCAN_OBJECT);
	assert_string_equal(g.string, "main");
	free(store);

	/* A key holding a dot is one key, not a path, written either way. */
	struct jsonscan_field d[2] = {{.path = "repository.full_name"},
				      {.path = "pull_request.head.sha"}};
	const char *dotted = "{\"repository.full_name\": \"x/y\", \"pull_request\": "
			     "{\"head.sha\": \"abc\", \"head\\u002esha\": \"def\"}}";
	assert_int_equal(scan_fields(dotted, strlen(dotted), d, 2, &store, err), JSONSCAN_OBJECT);
	assert_int_equal(d[0].type, JSONSCAN_ABSENT);
	assert_int_equal(d[1].type, JSONSCAN_ABSENT);
	free(store);
}

static void a_duplicate_key_on_a_path_is_rejected(void **state)
{
	(void)state;
	struct jsonscan_field f[2] = {{.path = "ref"}, {.path = "repository.full_name"}};
	char err[256], *store = NULL;
	const char *twice = "{\"ref\": \"a\", \"ref\": \"b\"}";
	assert_int_equal(scan_fields(twice, strlen(twice), f, 2, &store, err), -1);
	assert_string_equal(err, "duplicate key \"ref\" at byte 13");

	const char *escaped = "{\"ref\": \"a\", \"r\\u0065f\": \"b\"}";
	assert_int_equal(scan_fields(escaped, strlen(escaped), f, 2, &store, err), -1);
	assert_string_equal(err, "duplicate key \"ref\" at byte 13");

	const char *parent = "{\"repository\": {\"full_name\": \"a/b\"}, \"repository\": {}}";
	assert_int_equal(scan_fields(parent, strlen(parent), f, 2, &store, err), -1);
	assert_string_equal(err, "duplicate key \"repository\" at byte 37");

	/* Elsewhere a repeated key decides nothing and is let be. */
	const char *elsewhere = "{\"x\": 1, \"x\": 2, \"repository\": {\"id\": 1, \"id\": 2, "
				"\"full_name\": \"a/b\"}, \"ref\": \"main\"}";
	assert_int_equal(scan_fields(elsewhere, strlen(elsewhere), f, 2, &store, err),
			 JSONSCAN_OBJECT);
	assert_string_equal(f[0].string, "main");
	assert_string_equal(f[1].string, "a/b");
	free(store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_fixture_yields_the_values_jansson_sees),
	    cmocka_unit_test(push_fixture_gives_ref_after_and_deleted),
	    cmocka_unit_test(every_truncation_of_every_fixture_is_rejected),
	    cmocka_unit_test(an_empty_body_is_rejected),
	    cmocka_unit_test(invalid_utf8_is_rejected_where_it_starts),
	    cmocka_unit_test(lone_surrogates_are_rejected),
	    cmocka_unit_test(bad_escapes_and_raw_control_characters_are_rejected),
	    cmocka_unit_test(numbers_follow_the_grammar),
	    cmocka_unit_test(integers_are_read_when_they_fit),
	    cmocka_unit_test(literals_and_structure_follow_the_grammar),
	    cmocka_unit_test(anything_after_the_value_is_rejected),
	    cmocka_unit_test(nesting_past_the_limit_is_rejected),
	    cmocka_unit_test(nul_bytes_are_rejected),
	    cmocka_unit_test(values_are_found_by_path_and_unescaped),
	    cmocka_unit_test(a_duplicate_key_on_a_path_is_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
