/* Fuzz target: analysis conditions ("result < 0.01 and result[1] >= 2").
 *
 * Input: the condition text. Each one that parses is evaluated against no
 * value, one value, and several values including NaN and infinities, as
 * measurements from a metrics provider may be.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stages/condition.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const double values[] = {0.5, 0.0, -1e300, NAN, INFINITY, 2.0};
	char *text = strndup((const char *)data, size);
	char err[256];

	if (!text)
		return 0;
	struct condition *c = condition_parse(text, err, sizeof(err));
	if (c) {
		for (size_t n = 0; n <= sizeof(values) / sizeof(values[0]); n++)
			condition_eval(c, values, n, err, sizeof(err));
		condition_free(c);
	}
	free(text);
	return 0;
}
