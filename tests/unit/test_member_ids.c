/* Tests for queue/devbroker/member_ids: the devbroker's snprintf and
 * __snprintf_chk write a format of exactly "%p" as the address, "-" and a
 * serial that never repeats, as the mock cluster's member ids; every other
 * format as glibc does. The binary links member_ids.o, so every snprintf
 * below is the devbroker's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* glibc's fortified entry point, as Debian's librdkafka calls it. */
int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *format, ...);

/* The mock's buffer for a member id. */
#define ID_LEN	   32
#define THREADS	   4
#define PER_THREAD 2000

/* What glibc writes for fmt, through vsnprintf. */
static int reference(char *s, size_t maxlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s, maxlen, fmt, ap);
	va_end(ap);
	return n;
}

static unsigned long long serial_of(const char *id, const void *p)
{
	char address[ID_LEN];
	reference(address, sizeof(address), "%p", p);
	size_t len = strlen(address);
	assert_memory_equal(id, address, len);
	assert_int_equal(id[len], '-');
	char *end;
	unsigned long long serial = strtoull(id + len + 1, &end, 10);
	assert_int_equal(*end, '\0');
	return serial;
}

static void test_the_same_address_twice_gives_two_ids(void **state)
{
	(void)state;
	int member;
	char first[ID_LEN], second[ID_LEN];
	int n = snprintf(first, sizeof(first), "%p", (void *)&member);
	assert_int_equal(n, (int)strlen(first));
	n = __snprintf_chk(second, sizeof(second), 1, sizeof(second), "%p", (void *)&member);
	assert_int_equal(n, (int)strlen(second));
	assert_string_not_equal(first, second);
	assert_true(serial_of(second, &member) > serial_of(first, &member));
}

static void test_other_formats_are_glibcs(void **state)
{
	(void)state;
	static const char *const formats[] = {"%d-%s", "x%p", "%p ", "%pp", "%%p", ""};
	int member;
	for (size_t i = 0; i < sizeof(formats) / sizeof(*formats); i++) {
		char got[64], want[64];
		int n = snprintf(got, sizeof(got), formats[i], 42, "mock", (void *)&member);
		int m = reference(want, sizeof(want), formats[i], 42, "mock", (void *)&member);
		assert_int_equal(n, m);
		assert_string_equal(got, want);
		n = __snprintf_chk(got, sizeof(got), 1, sizeof(got), formats[i], 42, "mock",
				   (void *)&member);
		assert_int_equal(n, m);
		assert_string_equal(got, want);
	}
}

static void test_a_short_buffer_is_cut_and_the_length_told(void **state)
{
	(void)state;
	int member;
	char small[6], whole[ID_LEN];
	int n = snprintf(small, sizeof(small), "%p", (void *)&member);
	snprintf(whole, sizeof(whole), "%p", (void *)&member);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_memory_equal(small, whole, sizeof(small) - 1);
	/* As long as the id would be (the serials have as many digits here). */
	assert_int_equal(n, (int)strlen(whole));
}

static char ids[THREADS][PER_THREAD][ID_LEN];

static void *write_ids(void *arg)
{
	char(*mine)[ID_LEN] = arg;
	static int member;
	for (int i = 0; i < PER_THREAD; i++)
		snprintf(mine[i], ID_LEN, "%p", (void *)&member);
	return NULL;
}

static int by_text(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_ids_from_threads_at_once_are_distinct(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, write_ids, ids[i]), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	qsort(ids, THREADS * PER_THREAD, ID_LEN, by_text);
	char(*all)[ID_LEN] = &ids[0][0];
	for (int i = 1; i < THREADS * PER_THREAD; i++)
		assert_string_not_equal(all[i - 1], all[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_same_address_twice_gives_two_ids),
	    cmocka_unit_test(test_other_formats_are_glibcs),
	    cmocka_unit_test(test_a_short_buffer_is_cut_and_the_length_told),
	    cmocka_unit_test(test_ids_from_threads_at_once_are_distinct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
