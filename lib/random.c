/* random: ids' bytes from a pool refilled by getrandom (random.h). */
#include "lib/random.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/hex.h"

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

void random_process_name(char *out, size_t len, const char *prefix)
{
	char host[64] = "localhost";
	unsigned char rnd[4] = {0};
	char hex[2 * sizeof(rnd) + 1];
	gethostname(host, sizeof(host) - 1);
	/* Without the kernel's bytes the pid and zeros still tell processes of
	 * one host apart. */
	random_bytes(rnd, sizeof(rnd));
	hex_encode(rnd, sizeof(rnd), hex);
	snprintf(out, len, "%s%s:%d:%s", prefix, host, (int)getpid(), hex);
}
