/* Tests of the analysis conditions: verdicts over a table of expressions
 * and results, precedence, evaluation errors and parse errors by column. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/condition.h"

struct row {
	const char *text;
	double values[3];
	size_t n;
	int want; /* 1, 0, or -1 for an evaluation error */
};

static void verdicts_follow_the_table_of_expressions_and_results(void **state)
{
	static const struct row rows[] = {
	    {"result < 0.01", {0.005}, 1, 1},
	    {"result < 0.01", {0.01}, 1, 0},
	    {"result <= 0.01", {0.01}, 1, 1},
	    {"result[0] >= 0.95", {0.95}, 1, 1},
	    {"result[0] >= 0.95", {0.94}, 1, 0},
	    {"result > 1 and result < 5", {3}, 1, 1},
	    {"result > 1 and result < 5", {5}, 1, 0},
	    {"result == 0 or result[1] != 2", {0, 0}, 2, 1},
	    {"result == 0 or result[1] != 2", {1, 2}, 2, 0},
	    {"result == 0 or result[1] != 2", {1, 3}, 2, 1},
	    {"result < 10", {1, 2, 11}, 3, 0},
	    {"result < 10", {1, 2, 9}, 3, 1},
	    {"5 > result", {4}, 1, 1},
	    {"result[1] > result[0]", {1, 2}, 2, 1},
	    {"not result > 1", {0.5}, 1, 1},
	    {"!(result > 1)", {2}, 1, 0},
	    {"result > -1.5e-3", {-0.001}, 1, 1},
	    {"result >= .5", {0.5}, 1, 1},
	    {"result < 1 && result > 0 || result == 7", {7}, 1, 1},
	    {"result == 1", {NAN}, 1, 0},
	    {"result != 1", {NAN}, 1, 1},
	    {"result[2] > 0", {1, 2}, 2, -1},
	    {"result > 0", {0}, 0, -1},
	};
	char err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct condition *c = condition_parse(rows[i].text, err, sizeof(err));
		if (!c)
			fail_msg("%s: %s", rows[i].text, err);
		int got = condition_eval(c, rows[i].values, rows[i].n, err, sizeof(err));
		if (got != rows[i].want)
			fail_msg("%s with %zu values: got %d, want %d", rows[i].text, rows[i].n,
				 got, rows[i].want);
		assert_string_equal(condition_text(c), rows[i].text);
		condition_free(c);
	}
}

static int eval1(const char *text, double v)
{
	char err[256];
	struct condition *c = condition_parse(text, err, sizeof(err));
	assert_non_null(c);
	int r = condition_eval(c, &v, 1, err, sizeof(err));
	condition_free(c);
	return r;
}

static void and_binds_tighter_than_or_and_not_tighter_than_and(void **state)
{
	(void)state;
	/* true or (false and false) */
	assert_int_equal(eval1("result == 1 or result == 2 and result == 3", 1), 1);
	/* (true or false) and false */
	assert_int_equal(eval1("(result == 1 or result == 2) and result == 3", 1), 0);
	/* (not false) and true */
	assert_int_equal(eval1("not result == 2 and result == 1", 1), 1);
	/* not (false and true) */
	assert_int_equal(eval1("not (result == 2 and result == 1)", 1), 1);
	assert_int_equal(eval1("not not result == 1", 1), 1);
}

static void index_beyond_the_values_names_what_there_is(void **state)
{
	char err[256];
	double v[2] = {1, 2};
	struct condition *c = condition_parse("result[3] < 1", err, sizeof(err));
	(void)state;

	assert_int_equal(condition_eval(c, v, 2, err, sizeof(err)), -1);
	assert_string_equal(err, "result[3]: only 2 values");
	condition_free(c);
}

static void or_does_not_evaluate_its_right_side_once_the_left_holds(void **state)
{
	char err[256];
	double v = 0;
	struct condition *c = condition_parse("result == 0 or result[5] > 1", err, sizeof(err));
	(void)state;

	assert_int_equal(condition_eval(c, &v, 1, err, sizeof(err)), 1);
	condition_free(c);
}

static void parse_errors_name_the_column(void **state)
{
	static const struct {
		const char *text, *err;
	} rows[] = {
	    {"", "column 1: empty condition"},
	    {"result <", "column 9: expected a number or result"},
	    {"result < 0.01 and", "column 18: expected a number or result"},
	    {"result 0.01", "column 8: expected a comparison (< <= > >= == !=)"},
	    {"result = 1", "column 8: use == to compare"},
	    {"result < 1 & result > 0", "column 12: use && or and"},
	    {"value < 1", "column 1: unknown name \"value\" (only result, and, or, not)"},
	    {"(result < 1", "column 12: expected ) to close the ( at column 1"},
	    {"result < 1)", "column 11: expected and, or or the end"},
	    {"result[x] < 1", "column 8: unknown name \"x\" (only result, and, or, not)"},
	    {"result[-1] < 1", "column 8: expected an index from 0"},
	    {"result[1.5] < 1", "column 8: expected an index from 0 to 1000000"},
	    {"result[0 < 1", "column 10: expected ]"},
	    {"result < 1e", "column 11: expected digits after the exponent"},
	    {"result < 1x", "column 11: unexpected 'x' in a number"},
	    {"result < 1e999", "column 10: number out of range"},
	    {"result < result", "column 1: compare result with a number or result[i], not with "
				"result"},
	    {"result < 1 $", "column 12: unexpected '$'"},
	    {"result < \x01", "column 10: unexpected byte 0x01"},
	};
	char err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct condition *c = condition_parse(rows[i].text, err, sizeof(err));
		if (c)
			fail_msg("%s: parsed", rows[i].text);
		if (strcmp(err, rows[i].err) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", rows[i].text, err, rows[i].err);
	}
}

static void hostile_input_is_bounded(void **state)
{
	char err[256];
	char *text = malloc(CONDITION_MAX_LEN + 2);
	(void)state;

	/* deep nesting */
	memset(text, '(', 200);
	strcpy(text + 200, "result < 1");
	assert_null(condition_parse(text, err, sizeof(err)));
	assert_string_equal(err, "column 33: nested deeper than 32");
	/* too long */
	memset(text, ' ', CONDITION_MAX_LEN + 1);
	text[CONDITION_MAX_LEN + 1] = '\0';
	assert_null(condition_parse(text, err, sizeof(err)));
	assert_string_equal(err, "longer than 1024 characters");
	/* too many terms */
	text[0] = '\0';
	while (strlen(text) + 20 < CONDITION_MAX_LEN)
		strcat(text, "1<2 or ");
	strcat(text, "1<2");
	assert_null(condition_parse(text, err, sizeof(err)));
	assert_non_null(strstr(err, "more than 256 terms"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(verdicts_follow_the_table_of_expressions_and_results),
	    cmocka_unit_test(and_binds_tighter_than_or_and_not_tighter_than_and),
	    cmocka_unit_test(index_beyond_the_values_names_what_there_is),
	    cmocka_unit_test(or_does_not_evaluate_its_right_side_once_the_left_holds),
	    cmocka_unit_test(parse_errors_name_the_column),
	    cmocka_unit_test(hostile_input_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
