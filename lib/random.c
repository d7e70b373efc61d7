/* random: ids' bytes from a pool refilled by getrandom (random.h). */
#include "lib/random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define POOL 256

static unsigned char pool[POOL];
static size_t left; /* unused bytes, at the pool's end */

static int refill(void)
{
	size_t got = 0;
	while (got < POOL) {
		ssize_t n = getrandom(pool + got, POOL - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	left = POOL;
	return 0;
}

int random_bytes(void *out, size_t n)
{
	if (n > POOL)
		return -1;
	if (left < n && refill() < 0)
		return -1;
	unsigned char *from = pool + POOL - left;
	memcpy(out, from, n);
	/* Used once: nothing of it stays in the pool. */
	memset(from, 0, n);
	left -= n;
	return 0;
}
