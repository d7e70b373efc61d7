/* lines: splitting text at newlines. */
#include "lib/lines.h"

#include <string.h>

int lines_each(const char *text, size_t len, lines_cb fn, void *arg)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl ? nl : end;
		size_t n = (size_t)(stop - p);

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (fn(p, n, arg) < 0)
			return -1;
		p = stop + 1;
	}
	return 0;
}
