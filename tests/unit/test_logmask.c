/* Tests for stages/logmask: secrets never reach a stored line, whatever
 * shape they arrive in, and the cap counts what it drops. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "stages/logmask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIECE 64

struct stored {
	enum logmask_stream s[256];
	char *lines[256];
	size_t n;
};

static void on_emit(enum logmask_stream s, const char *line, size_t len, void *arg)
{
	struct stored *st = arg;
	assert_true(st->n < 256);
	st->s[st->n] = s;
	st->lines[st->n] = strndup(line, len);
	st->n++;
}

static void stored_clear(struct stored *st)
{
	for (size_t i = 0; i < st->n; i++)
		free(st->lines[i]);
	st->n = 0;
}

/* The concatenation of every stored line of stream s. */
static char *joined(const struct stored *st, enum logmask_stream s)
{
	size_t len = 1;
	for (size_t i = 0; i < st->n; i++)
		len += strlen(st->lines[i]);
	char *out = calloc(1, len);
	assert_non_null(out);
	for (size_t i = 0; i < st->n; i++)
		if (st->s[i] == s)
			strcat(out, st->lines[i]);
	return out;
}

/* text with every secret replaced by "[masked]", into out. */
static void replace_all(const char *text, const char *secret, char *out, size_t outlen)
{
	const char *p = text, *at;
	out[0] = '\0';
	while ((at = strstr(p, secret)) != NULL) {
		strncat(out, p, (size_t)(at - p));
		strcat(out, "[masked]");
		p = at + strlen(secret);
	}
	strcat(out, p);
	assert_true(strlen(out) < outlen);
}

static void add(struct logmask *m, const char *secret)
{
	assert_int_equal(logmask_add_secret(m, secret, strlen(secret)), 0);
}

static void line(struct logmask *m, const char *text)
{
	logmask_line(m, LOGMASK_STDOUT, text, strlen(text));
}

static void test_secret_in_a_line_is_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	add(m, "hunter22");
	line(m, "password is hunter22, again hunter22!");
	line(m, "nothing here");
	assert_int_equal(st.n, 2);
	assert_string_equal(st.lines[0], "password is [masked], again [masked]!");
	assert_string_equal(st.lines[1], "nothing here");
	stored_clear(&st);
	logmask_free(m);
}

static void test_base64_forms_are_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	/* "s3cr3t-t0ken!" alone is "czNjcjN0LXQwa2VuIQ==". */
	add(m, "s3cr3t-t0ken!");
	line(m, "czNjcjN0LXQwa2VuIQ==");
	/* "x" + secret + "yz", "xy" + secret + "z", secret + "xyz": the secret
	 * inside a longer base64 stream at each alignment. */
	line(m, "eHMzY3IzdC10MGtlbiF5eg==");
	line(m, "eHlzM2NyM3QtdDBrZW4heg==");
	line(m, "czNjcjN0LXQwa2VuIXh5eg==");
	assert_int_equal(st.n, 4);
	assert_string_equal(st.lines[0], "[masked]");
	/* Only the characters that also depend on a neighbouring byte are left. */
	assert_string_equal(st.lines[1], "eH[masked]F5eg==");
	assert_string_equal(st.lines[2], "eHl[masked]eg==");
	assert_string_equal(st.lines[3], "[masked]Xh5eg==");
	stored_clear(&st);
	logmask_free(m);
}

/* An http: stage's URL carries a secret percent-encoded (stages/expand.h),
 * and the stage's log and error show that URL. */
static void test_percent_encoded_form_is_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	add(m, "s3cr/et+val=ue");
	line(m, "POST http://h/hooks/s3cr%2Fet%2Bval%3Due (attempt 1 of 1)");
	assert_string_equal(st.lines[0], "POST http://h/hooks/[masked] (attempt 1 of 1)");
	char *out = logmask_text(m, "HTTP 404 from http://h/hooks/s3cr%2Fet%2Bval%3Due");
	assert_string_equal(out, "HTTP 404 from http://h/hooks/[masked]");
	free(out);
	stored_clear(&st);
	logmask_free(m);
}

/* A JSON body carries a secret escaped, and a server may echo the body in
 * the response the log shows. */
static void test_json_escaped_form_is_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	add(m, "pa\"ss\\word-1234");
	line(m, "bad request: {\"password\": \"pa\\\"ss\\\\word-1234\"}");
	assert_string_equal(st.lines[0], "bad request: {\"password\": \"[masked]\"}");
	stored_clear(&st);
	logmask_free(m);
}

static void test_overlapping_and_repeated_secrets_become_one_mask(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	add(m, "abcdef");
	add(m, "defghi");
	add(m, "aaaa");
	line(m, "<abcdefghi> <abcdefabcdef> <aaaaaaa> <abcde>");
	assert_string_equal(st.lines[0], "<[masked]> <[masked]> <[masked]> <abcde>");
	stored_clear(&st);
	logmask_free(m);
}

/* A secret shorter than "[masked]", many times on one line, makes the
 * masked line longer than the line: every length up to a few KiB, against
 * whatever the masker's buffers had grown to before. */
static void test_a_line_growing_with_its_masks_is_stored_whole(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 24, 0, on_emit, &st);
	(void)state;

	add(m, "abcd");
	static char text[4096], want[4096 * 2];
	for (size_t n = 1; n < 800; n++) {
		text[0] = '\0';
		for (size_t i = 0; i < n; i++)
			strcat(text, i % 2 ? "," : "abcd");
		replace_all(text, "abcd", want, sizeof(want));
		line(m, text);
		assert_int_equal(st.n, 1);
		assert_string_equal(st.lines[0], want);
		char *masked = logmask_text(m, text);
		assert_string_equal(masked, want);
		free(masked);
		stored_clear(&st);
	}
	logmask_free(m);
}

static void test_short_secret_is_not_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	assert_int_equal(logmask_add_secret(m, "abc", 3), 1);
	line(m, "abc abc");
	assert_string_equal(st.lines[0], "abc abc");
	stored_clear(&st);
	logmask_free(m);
}

static void test_each_line_of_a_multiline_secret_is_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	add(m, "-----BEGIN KEY-----\nQUJDREVGR0hJSktM\n-----END KEY-----");
	line(m, "QUJDREVGR0hJSktM");
	line(m, "-----END KEY-----");
	assert_string_equal(st.lines[0], "[masked]");
	assert_string_equal(st.lines[1], "[masked]");
	stored_clear(&st);
	logmask_free(m);
}

/* A key file has a pattern per line, and secrets often share their first
 * bytes (a token's prefix): however many patterns there are, every
 * occurrence of each is masked, and a line of the key shorter than
 * LOGMASK_MIN_SECRET is not. */
static void test_every_line_of_a_large_key_and_of_many_secrets_is_masked(void **state)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	enum { KEY_LINES = 900, WIDTH = 64, TOKENS = 300 };
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 30, 0, on_emit, &st);
	char *key = malloc(KEY_LINES * (WIDTH + 1) + 64), text[256], want[256];
	unsigned seed = 1;
	size_t o = 0;
	(void)state;

	assert_non_null(key);
	o += (size_t)sprintf(key, "-----BEGIN PRIVATE KEY-----\n");
	for (int i = 0; i < KEY_LINES; i++) {
		for (int c = 0; c < WIDTH; c++) {
			seed = seed * 1103515245u + 12345u;
			key[o++] = b64[(seed >> 16) % 64];
		}
		key[o++] = '\n';
	}
	o += (size_t)sprintf(key + o, "ab\n-----END PRIVATE KEY-----");
	add(m, key);
	for (int i = 0; i < TOKENS; i++) {
		snprintf(text, sizeof(text), "tok_%04d", i);
		add(m, text);
	}
	const char *at = strchr(key, '\n') + 1;
	for (int i = 0; i < KEY_LINES; i++, at += WIDTH + 1) {
		snprintf(text, sizeof(text), "x %.*s y %.*s%.*s", WIDTH, at, WIDTH, at, WIDTH, at);
		line(m, text);
		assert_string_equal(st.lines[0], "x [masked] y [masked]");
		stored_clear(&st);
	}
	line(m, "-----END PRIVATE KEY----- ab");
	assert_string_equal(st.lines[0], "[masked] ab");
	stored_clear(&st);
	for (int i = 0; i < TOKENS; i++) {
		snprintf(text, sizeof(text), "tok_%04d tok_ tok_%04dtok_%04d", i, i,
			 (i + 1) % TOKENS);
		line(m, text);
		snprintf(want, sizeof(want), "[masked] tok_ [masked]");
		assert_string_equal(st.lines[0], want);
		stored_clear(&st);
	}
	free(key);
	logmask_free(m);
}

/* A line longer than the reader's piece arrives in pieces; a secret that
 * straddles two of them is masked, and no byte is lost or repeated. */
static void test_secret_across_a_piece_boundary_is_masked(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, PIECE, on_emit, &st);
	const char *secret = "TOPSECRET-0123456789";
	char text[3 * PIECE + 1], want[3 * PIECE + 1];
	(void)state;

	add(m, secret);
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	/* Straddles the first boundary, and a second copy the second one. */
	memcpy(text + PIECE - 7, secret, strlen(secret));
	memcpy(text + 2 * PIECE - 3, secret, strlen(secret));
	logmask_line(m, LOGMASK_STDOUT, text, PIECE);
	logmask_line(m, LOGMASK_STDOUT, text + PIECE, PIECE);
	logmask_line(m, LOGMASK_STDOUT, text + 2 * PIECE, 30);
	logmask_line(m, LOGMASK_STDOUT, "next line", 9);
	logmask_finish(m);

	/* Everything up to "next line" is one logical line. */
	text[2 * PIECE + 30] = '\0';
	replace_all(text, secret, want, sizeof(want));
	size_t i;
	char *all = calloc(1, 4 * PIECE);
	assert_non_null(all);
	for (i = 0; i < st.n && strcmp(st.lines[i], "next line") != 0; i++)
		strcat(all, st.lines[i]);
	assert_true(i < st.n);
	assert_string_equal(all, want);
	assert_null(strstr(all, "TOPSECRET"));
	free(all);
	stored_clear(&st);
	logmask_free(m);
}

/* A character cut by the end of a piece is stored whole with the next one,
 * rather than as two halves that each show as U+FFFD. */
static void test_a_character_across_a_piece_boundary_is_stored_whole(void **state)
{
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e"};
	(void)state;
	for (size_t c = 0; c < 3; c++) {
		for (size_t before = 1; before < strlen(chars[c]); before++) {
			struct stored st = {0};
			struct logmask *m = logmask_new(1 << 20, PIECE, on_emit, &st);
			char text[PIECE + 8];
			size_t at = PIECE - before;
			memset(text, 'a', at);
			strcpy(text + at, chars[c]);
			strcat(text, "bb");
			logmask_line(m, LOGMASK_STDOUT, text, PIECE);
			logmask_line(m, LOGMASK_STDOUT, text + PIECE, strlen(text) - PIECE);
			logmask_finish(m);
			assert_int_equal(st.n, 2);
			assert_int_equal(strlen(st.lines[0]), at);
			assert_string_equal(st.lines[1], text + at);
			stored_clear(&st);
			logmask_free(m);
		}
	}
}

/* Bytes that start no character are cut where they fall. */
static void test_bytes_that_are_no_character_are_cut_at_the_piece(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, PIECE, on_emit, &st);
	char text[PIECE + 2];
	(void)state;
	memset(text, 0x80, sizeof(text));
	logmask_line(m, LOGMASK_STDOUT, text, PIECE);
	logmask_line(m, LOGMASK_STDOUT, text + PIECE, 2);
	logmask_finish(m);
	assert_int_equal(st.n, 2);
	assert_int_equal(strlen(st.lines[0]), PIECE);
	stored_clear(&st);
	logmask_free(m);
}

/* A piece held back at the end of the output is stored by logmask_finish. */
static void test_finish_stores_a_held_piece(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, PIECE, on_emit, &st);
	char text[PIECE];
	(void)state;

	add(m, "0123456789");
	memset(text, 'y', sizeof(text));
	logmask_line(m, LOGMASK_STDERR, text, PIECE);
	logmask_finish(m);
	char *all = joined(&st, LOGMASK_STDERR);
	assert_int_equal(strlen(all), PIECE);
	free(all);
	stored_clear(&st);
	logmask_free(m);
}

static void test_cap_counts_dropped_lines(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(2 * (10 + LOGMASK_LINE_COST) + 5, 0, on_emit, &st);
	(void)state;

	line(m, "0123456789"); /* 10 + LOGMASK_LINE_COST */
	line(m, "abcdefghij"); /* twice that, 5 bytes short of the cap: kept */
	line(m, "dropped");    /* 7 */
	line(m, "x");	       /* 1: short enough, but the cap was reached */
	logmask_line(m, LOGMASK_SYSTEM, "system lines are kept", 21);
	logmask_finish(m);
	logmask_finish(m);
	assert_int_equal(st.n, 4);
	assert_string_equal(st.lines[0], "0123456789");
	assert_string_equal(st.lines[1], "abcdefghij");
	assert_string_equal(st.lines[2], "system lines are kept");
	assert_int_equal(st.s[3], LOGMASK_SYSTEM);
	assert_string_equal(st.lines[3],
			    "[2 lines (8 bytes) dropped: log cap of 89 bytes reached]");
	stored_clear(&st);
	logmask_free(m);
}

/* A line longer than a piece arrives, and is dropped, in pieces: it is
 * still one line dropped, whether it ends in a short piece, in an empty
 * one (a line of exactly a piece) or with the output. */
static void test_a_line_in_pieces_is_one_line_dropped(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(10 + LOGMASK_LINE_COST, PIECE, on_emit, &st);
	char text[PIECE];
	(void)state;

	memset(text, 'p', sizeof(text));
	line(m, "0123456789");
	logmask_line(m, LOGMASK_STDOUT, text, PIECE);
	logmask_line(m, LOGMASK_STDOUT, text, PIECE);
	logmask_line(m, LOGMASK_STDOUT, text, 10);
	logmask_line(m, LOGMASK_STDOUT, text, PIECE);
	logmask_line(m, LOGMASK_STDOUT, text, 0);
	logmask_line(m, LOGMASK_STDERR, text, PIECE);
	logmask_finish(m);
	assert_int_equal(st.n, 2);
	assert_string_equal(st.lines[1],
			    "[3 lines (266 bytes) dropped: log cap of 42 bytes reached]");
	stored_clear(&st);
	logmask_free(m);
}

static void test_empty_lines_count_toward_the_cap(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(10 * LOGMASK_LINE_COST, 0, on_emit, &st);
	(void)state;

	for (int i = 0; i < 100000; i++)
		logmask_line(m, LOGMASK_STDOUT, "", 0);
	logmask_finish(m);
	assert_int_equal(st.n, 11);
	assert_string_equal(st.lines[9], "");
	assert_int_equal(st.s[10], LOGMASK_SYSTEM);
	assert_string_equal(st.lines[10],
			    "[99990 lines (0 bytes) dropped: log cap of 320 bytes reached]");
	stored_clear(&st);
	logmask_free(m);
}

static void test_cap_message_names_the_size_in_mib(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(4u << 20, 0, on_emit, &st);
	char *big = malloc((4u << 20) + 1);
	(void)state;

	assert_non_null(big);
	memset(big, 'z', 4u << 20);
	logmask_line(m, LOGMASK_STDOUT, big, (4u << 20) - LOGMASK_LINE_COST - 1);
	logmask_line(m, LOGMASK_STDOUT, big, 2);
	logmask_finish(m);
	assert_int_equal(st.n, 2);
	assert_string_equal(st.lines[1], "[1 lines (2 bytes) dropped: log cap of 4 MiB reached]");
	free(big);
	stored_clear(&st);
	logmask_free(m);
}

static void test_text_is_masked_for_error_messages(void **state)
{
	struct stored st = {0};
	struct logmask *m = logmask_new(1 << 20, 0, on_emit, &st);
	(void)state;

	add(m, "tok-12345");
	char *out = logmask_text(m, "HTTP 401 from https://h/?t=tok-12345");
	assert_string_equal(out, "HTTP 401 from https://h/?t=[masked]");
	free(out);
	assert_int_equal(st.n, 0);
	logmask_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_secret_in_a_line_is_masked),
	    cmocka_unit_test(test_base64_forms_are_masked),
	    cmocka_unit_test(test_percent_encoded_form_is_masked),
	    cmocka_unit_test(test_json_escaped_form_is_masked),
	    cmocka_unit_test(test_overlapping_and_repeated_secrets_become_one_mask),
	    cmocka_unit_test(test_a_line_growing_with_its_masks_is_stored_whole),
	    cmocka_unit_test(test_short_secret_is_not_masked),
	    cmocka_unit_test(test_each_line_of_a_multiline_secret_is_masked),
	    cmocka_unit_test(test_every_line_of_a_large_key_and_of_many_secrets_is_masked),
	    cmocka_unit_test(test_secret_across_a_piece_boundary_is_masked),
	    cmocka_unit_test(test_finish_stores_a_held_piece),
	    cmocka_unit_test(test_a_character_across_a_piece_boundary_is_stored_whole),
	    cmocka_unit_test(test_bytes_that_are_no_character_are_cut_at_the_piece),
	    cmocka_unit_test(test_cap_counts_dropped_lines),
	    cmocka_unit_test(test_a_line_in_pieces_is_one_line_dropped),
	    cmocka_unit_test(test_empty_lines_count_toward_the_cap),
	    cmocka_unit_test(test_cap_message_names_the_size_in_mib),
	    cmocka_unit_test(test_text_is_masked_for_error_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
