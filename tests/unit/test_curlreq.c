/* Tests for lib/curlreq: header lines and the answer collected up to its
 * limit, fed as curl feeds a write function. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/curlreq.h"

static void header_lines_are_appended_in_order(void **state)
{
	(void)state;
	struct curl_slist *list = NULL;
	assert_int_equal(curlreq_header(&list, "Accept: %s", "application/json"), 0);
	assert_int_equal(curlreq_header(&list, "%s: %s", "Authorization", "Bearer t0k3n"), 0);
	assert_non_null(list);
	assert_string_equal(list->data, "Accept: application/json");
	assert_non_null(list->next);
	assert_string_equal(list->next->data, "Authorization: Bearer t0k3n");
	assert_null(list->next->next);
	curl_slist_free_all(list);
}

static void answer_is_kept_whole_and_terminated(void **state)
{
	(void)state;
	struct curlreq_answer a = {.max = 16};
	char part1[] = "{\"a\": ", part2[] = "1}";
	assert_int_equal(curlreq_write(part1, 1, strlen(part1), &a), strlen(part1));
	assert_int_equal(curlreq_write(part2, 1, strlen(part2), &a), strlen(part2));
	assert_int_equal(a.len, 8);
	assert_string_equal(a.data, "{\"a\": 1}");
	assert_false(a.too_big);
	curlreq_answer_clear(&a);
	assert_null(a.data);
	assert_int_equal(a.len, 0);
	assert_int_equal(a.max, 16);
}

static void answer_past_the_limit_stops_the_transfer(void **state)
{
	(void)state;
	struct curlreq_answer a = {.max = 10};
	char part1[] = "0123456789", part2[] = "x";
	assert_int_equal(curlreq_write(part1, 1, 10, &a), 10);
	/* Fewer bytes than given: curl ends the transfer with a write error. */
	assert_int_equal(curlreq_write(part2, 1, 1, &a), 0);
	assert_true(a.too_big);
	assert_int_equal(a.len, 10);
	assert_string_equal(a.data, "0123456789");
	curlreq_answer_clear(&a);
	assert_false(a.too_big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(header_lines_are_appended_in_order),
	    cmocka_unit_test(answer_is_kept_whole_and_terminated),
	    cmocka_unit_test(answer_past_the_limit_stops_the_transfer),
	};
	return cmocka_run_group_tests_name("curlreq", tests, NULL, NULL);
}
