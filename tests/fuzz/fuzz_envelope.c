/* Fuzz target: envelope_decode on any Kafka message value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A message value is not NUL-terminated. */
	char *buf = malloc(size ? size : 1);
	struct envelope e;
	char err[256];

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (envelope_decode(buf, size, &e, err, sizeof(err)) == 0)
		envelope_clear(&e);
	free(buf);
	return 0;
}
