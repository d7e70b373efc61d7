/* Tests for lib/random: ids' bytes come from a pool, each byte used once,
 * across refills, and a request larger than the pool is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/random.h"

/* Draws that add up to many pools: no two 16-byte ids alike, and the bytes
 * are spread (every value of a byte turns up). */
static void ids_differ_across_refills(void **state)
{
	(void)state;
	enum { IDS = 1000 };
	static unsigned char ids[IDS][16];
	int seen[256] = {0};
	for (int i = 0; i < IDS; i++) {
		assert_int_equal(random_bytes(ids[i], sizeof(ids[i])), 0);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(ids[i], ids[j], sizeof(ids[i]));
		for (size_t k = 0; k < sizeof(ids[i]); k++)
			seen[ids[i][k]] = 1;
	}
	int values = 0;
	for (int v = 0; v < 256; v++)
		values += seen[v];
	/* 16000 bytes leave one of the 256 values out with probability
	 * 256 e^-62.5, about 1e-25 (3200 left one out about once in 1000). */
	assert_int_equal(values, 256);
}

/* Sizes that do not divide the pool: a draw never straddles old and new. */
static void odd_sizes_and_the_whole_pool(void **state)
{
	(void)state;
	unsigned char a[256], b[256], six[6];
	for (int i = 0; i < 100; i++)
		assert_int_equal(random_bytes(six, sizeof(six)), 0);
	assert_int_equal(random_bytes(a, sizeof(a)), 0);
	assert_int_equal(random_bytes(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(random_bytes(six, 0), 0);
}

static void more_than_the_pool_is_refused(void **state)
{
	(void)state;
	unsigned char big[257];
	memset(big, 0xaa, sizeof(big));
	assert_int_equal(random_bytes(big, sizeof(big)), -1);
	for (size_t i = 0; i < sizeof(big); i++)
		assert_int_equal(big[i], 0xaa);
}

/* "<prefix><host>:<pid>:<8 hex>", and no two alike within one process. */
static void process_names_carry_host_pid_and_random_digits(void **state)
{
	(void)state;
	char host[64] = "localhost", want[128], a[160], b[160];
	gethostname(host, sizeof(host) - 1);
	snprintf(want, sizeof(want), "agent:%s:%d:", host, (int)getpid());
	random_process_name(a, sizeof(a), "agent:");
	random_process_name(b, sizeof(b), "agent:");
	assert_int_equal(strncmp(a, want, strlen(want)), 0);
	const char *hex = a + strlen(want);
	assert_int_equal(strlen(hex), 8);
	assert_int_equal(strspn(hex, "0123456789abcdef"), 8);
	assert_string_not_equal(a, b);
	/* Cut to the buffer, NUL-terminated. */
	char small[8];
	random_process_name(small, sizeof(small), "agent:");
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ids_differ_across_refills),
	    cmocka_unit_test(odd_sizes_and_the_whole_pool),
	    cmocka_unit_test(more_than_the_pool_is_refused),
	    cmocka_unit_test(process_names_carry_host_pid_and_random_digits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
