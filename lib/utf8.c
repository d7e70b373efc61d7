/* utf8: what RFC 3629 allows as UTF-8 (utf8.h). */
#include "lib/utf8.h"

size_t utf8_length(const unsigned char *p, const unsigned char *end)
{
	unsigned char lo = 0x80, hi = 0xbf; /* what the second byte may be */
	size_t n;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
	} else if (p[0] == 0xe0) {
		n = 3;
		lo = 0xa0;
	} else if (p[0] == 0xed) {
		n = 3;
		hi = 0x9f;
	} else if (p[0] >= 0xe1 && p[0] <= 0xef) {
		n = 3;
	} else if (p[0] == 0xf0) {
		n = 4;
		lo = 0x90;
	} else if (p[0] >= 0xf1 && p[0] <= 0xf3) {
		n = 4;
	} else if (p[0] == 0xf4) {
		n = 4;
		hi = 0x8f;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}
