/* Tests for queue/devbroker/quarantine: the devbroker's free() holds small
 * blocks back, so that a freed block's address is not handed out again at
 * once, frees larger blocks at once, and holds no more than its byte bound.
 * The binary links quarantine.o, so every free() below is the quarantine's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "queue/devbroker/quarantine.h"

/* librdkafka 2.0.2's rd_kafka_mock_cgrp_member_t: the block whose address
 * becomes a group member's id. */
#define MEMBER_SIZE 80
#define CYCLES	    1000
#define THREADS	    4

#if !QUARANTINE_ENABLED
#error "the quarantine is compiled out under this sanitizer, whose allocator replaces free()"
#endif

static void test_freed_small_block_is_not_handed_out_again(void **state)
{
	(void)state;
	static uintptr_t seen[CYCLES];
	for (int i = 0; i < CYCLES; i++) {
		void *p = malloc(MEMBER_SIZE);
		assert_non_null(p);
		seen[i] = (uintptr_t)p;
		free(p);
	}
	for (int i = 0; i < CYCLES; i++)
		for (int j = 0; j < i; j++)
			if (seen[i] == seen[j])
				fail_msg("cycle %d got the block freed in cycle %d", i, j);
}

static void expect_freed_at_once(size_t size)
{
	void *p = malloc(size);
	assert_non_null(p);
	assert_true(malloc_usable_size(p) > QUARANTINE_MAX_BLOCK);
	uintptr_t was = (uintptr_t)p;
	free(p);
	void *q = malloc(size);
	assert_non_null(q);
	assert_true((uintptr_t)q == was);
	free(q);
}

static void test_larger_block_is_freed_at_once(void **state)
{
	(void)state;
	/* just over the bound (glibc's per-thread cache) and well over it */
	expect_freed_at_once(QUARANTINE_MAX_BLOCK + 1);
	expect_freed_at_once(64 * 1024);
}

/* With QUARANTINE_MAX_BYTES held in blocks of one size, glibc has none of
 * them back; one more block pushes out the oldest, which the next malloc of
 * that size (from glibc's per-thread cache, last in first out) returns. */
static void test_blocks_over_the_byte_bound_are_freed_oldest_first(void **state)
{
	(void)state;
	const size_t size = 1000;
	void *probe = malloc(size);
	assert_non_null(probe);
	size_t usable = malloc_usable_size(probe);
	assert_true(usable <= QUARANTINE_MAX_BLOCK);
	size_t fit = QUARANTINE_MAX_BYTES / usable;
	assert_true(fit < QUARANTINE_SLOTS); /* the byte bound is the one reached */

	void **blocks = calloc(fit + 1, sizeof(*blocks));
	uintptr_t *addr = calloc(fit + 1, sizeof(*addr));
	assert_non_null(blocks);
	assert_non_null(addr);
	for (size_t i = 0; i <= fit; i++) {
		blocks[i] = malloc(size);
		assert_non_null(blocks[i]);
		addr[i] = (uintptr_t)blocks[i];
	}
	/* Whatever the process freed before is pushed out first. */
	for (size_t i = 0; i < fit; i++)
		free(blocks[i]);
	void *held_back = malloc(size);
	assert_non_null(held_back);
	for (size_t i = 0; i < fit; i++)
		if ((uintptr_t)held_back == addr[i])
			fail_msg("block %zu of %zu was freed within the byte bound", i, fit);

	free(blocks[fit]);
	void *pushed_out = malloc(size);
	assert_non_null(pushed_out);
	assert_true((uintptr_t)pushed_out == addr[0]);

	free(pushed_out);
	free(held_back);
	free(probe);
	free(blocks);
	free(addr);
}

static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *live[64] = {NULL};
	for (int i = 0; i < 200000; i++) {
		int k = (int)(rand_r(&seed) % 64);
		free(live[k]);
		live[k] = malloc(1 + rand_r(&seed) % (2 * QUARANTINE_MAX_BLOCK));
		if (!live[k])
			return arg;
		memset(live[k], k, 1);
	}
	for (int k = 0; k < 64; k++)
		free(live[k]);
	return NULL;
}

/* Threads freeing at once: a race in the ring would free one block twice or
 * lose one, and glibc aborts on the double free it then sees. */
static void test_threads_free_concurrently(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++) {
		void *ret = NULL;
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_freed_small_block_is_not_handed_out_again),
	    cmocka_unit_test(test_larger_block_is_freed_at_once),
	    cmocka_unit_test(test_blocks_over_the_byte_bound_are_freed_oldest_first),
	    cmocka_unit_test(test_threads_free_concurrently),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
