/* utf8: what RFC 3629 allows as UTF-8. */
#ifndef SLUICE_UTF8_H
#define SLUICE_UTF8_H

#include <stddef.h>

/* Length of the UTF-8 sequence at p (lead byte >= 0x80) before end, or 0
 * when it is not one RFC 3629 allows: no overlong forms, no surrogates,
 * nothing past U+10FFFF, no sequence cut short. */
size_t utf8_length(const unsigned char *p, const unsigned char *end);

#endif
