/* quarantine: sluice-devbroker's free(), which delays the reuse of small
 * blocks.
 *
 * librdkafka 2.0.2's mock cluster gives a consumer-group member that joins
 * without an id the id "%p" of its freshly calloc'ed member record. A member
 * evicted by the mock's session sweep has its record freed but rejoins under
 * its old id. glibc keeps freed blocks in last-in-first-out lists, so the
 * next member to join without an id can be given the evicted record, and
 * with its address the id still in use: two members under one id make the
 * mock abort ("rd_kafka_mock_cgrp_member_add" or "_sync_set: Assertion
 * `!member->resp' failed"). Held back in a FIFO, a freed record's address
 * stays out of use until tens of thousands of other small blocks were freed
 * after it.
 *
 * Only free is defined: every block still comes from glibc's allocator and
 * goes back through glibc's __libc_free, so malloc, calloc, realloc and the
 * aligned allocators need no counterpart, and a block glibc frees itself (in
 * realloc, say) is simply not held. glibc's cfree is a compatibility symbol
 * that nothing linked today binds to. Under valgrind, memcheck's free
 * replaces this one, as its malloc does glibc's. The ring and its counters
 * are process-wide because free has nowhere else to keep them; the mock
 * cluster frees from several threads, hence the lock.
 */
#include "queue/devbroker/quarantine.h"

#if QUARANTINE_ENABLED

#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

/* glibc's own free, exported for allocators that wrap it; no header
 * declares it. */
extern void __libc_free(void *ptr);

static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ring[QUARANTINE_SLOTS];
static size_t oldest;	  /* index of the block held longest */
static size_t held;	  /* blocks in ring */
static size_t held_bytes; /* their usable sizes, summed */

void free(void *ptr)
{
	if (!ptr)
		return;
	size_t size = malloc_usable_size(ptr);
	if (size > QUARANTINE_MAX_BLOCK) {
		__libc_free(ptr);
		return;
	}
	pthread_mutex_lock(&quarantine_lock);
	while (held == QUARANTINE_SLOTS || held_bytes + size > QUARANTINE_MAX_BYTES) {
		void *out = ring[oldest];
		oldest = (oldest + 1) % QUARANTINE_SLOTS;
		held--;
		held_bytes -= malloc_usable_size(out);
		__libc_free(out);
	}
	ring[(oldest + held) % QUARANTINE_SLOTS] = ptr;
	held++;
	held_bytes += size;
	pthread_mutex_unlock(&quarantine_lock);
}

#endif
