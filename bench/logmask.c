/* logmask: what masking costs a stage's log line, by the secrets masked.
 *
 * Prints, for sets of secrets from none to four 64 KiB key files (about 900
 * lines each, a pattern per line) and 200 tokens beside them, the time to
 * add them and the time per 80-byte line of ordinary output. Figures only:
 * nothing is a target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stages/logmask.h"

#define LINES	 20000
#define KEY_SIZE (64 * 1024)

static size_t stored;

static void on_emit(enum logmask_stream s, const char *line, size_t len, void *arg)
{
	(void)s;
	(void)line;
	(void)arg;
	stored += len;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* A PEM key of about KEY_SIZE bytes, 64 base64 characters a line. */
static char *key_file(unsigned seed)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *key = malloc(KEY_SIZE + 128);
	size_t o = 0;

	if (key == NULL)
		return NULL;
	o += (size_t)sprintf(key, "-----BEGIN PRIVATE KEY-----\n");
	while (o < KEY_SIZE) {
		for (int c = 0; c < 64; c++) {
			seed = seed * 1103515245u + 12345u;
			key[o++] = b64[(seed >> 16) % 64];
		}
		key[o++] = '\n';
	}
	sprintf(key + o, "-----END PRIVATE KEY-----\n");
	return key;
}

static int measure(const char *label, int keys, int tokens)
{
	struct logmask *m = logmask_new((size_t)1 << 40, 0, on_emit, NULL);
	char line[128];

	if (m == NULL)
		return -1;
	double t0 = now_ms();
	for (int k = 0; k < keys; k++) {
		char *key = key_file((unsigned)k + 1);
		if (key == NULL || logmask_add_secret(m, key, strlen(key)) < 0) {
			free(key);
			logmask_free(m);
			return -1;
		}
		free(key);
	}
	for (int k = 0; k < tokens; k++) {
		snprintf(line, sizeof(line), "tok_%08x%08x", (unsigned)k * 2654435761u,
			 (unsigned)k);
		if (logmask_add_secret(m, line, strlen(line)) < 0) {
			logmask_free(m);
			return -1;
		}
	}
	double t1 = now_ms();
	for (int i = 0; i < LINES; i++) {
		int len = snprintf(
		    line, sizeof(line),
		    "[%06d] compiling src/module_%02d.c -> build/module_%02d.o (ok) 12.3ms", i,
		    i % 97, i % 97);
		logmask_line(m, LOGMASK_STDOUT, line, (size_t)len);
	}
	double t2 = now_ms();
	logmask_free(m);
	printf("| %s | %.1f ms | %.2f µs |\n", label, t1 - t0, (t2 - t1) * 1e3 / LINES);
	return 0;
}

int main(void)
{
	printf("| secrets | adding them | masking an 80-byte line |\n|---|---|---|\n");
	if (measure("none", 0, 0) < 0 || measure("10 tokens", 0, 10) < 0 ||
	    measure("200 tokens", 0, 200) < 0 || measure("one 64 KiB key file", 1, 0) < 0 ||
	    measure("four 64 KiB key files", 4, 0) < 0 ||
	    measure("four key files and 200 tokens", 4, 200) < 0) {
		fprintf(stderr, "bench/logmask: out of memory\n");
		return 1;
	}
	return 0;
}
