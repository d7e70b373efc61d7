/* utf8: what RFC 3629 allows as UTF-8, and text made so. */
#ifndef SLUICE_UTF8_H
#define SLUICE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the UTF-8 sequence at p (lead byte >= 0x80) before end, or 0
 * when it is not one RFC 3629 allows: no overlong forms, no surrogates,
 * nothing past U+10FFFF, no sequence cut short. */
size_t utf8_length(const unsigned char *p, const unsigned char *end);

/* The code point of the n bytes at p: an ASCII byte (n 1) or a sequence
 * utf8_length found valid (n its length). */
uint32_t utf8_code_point(const unsigned char *p, size_t n);

/* Whether s[0..len) is UTF-8 without a NUL byte: fit for a JSON string and
 * a C one as it is. */
int utf8_valid(const char *s, size_t len);

/* s[0..len) made fit for a JSON string and a C one: returns 0 (*out NULL)
 * when it is UTF-8 without a NUL byte already; 1 with *out a malloc'd,
 * NUL-terminated copy in which each NUL byte and each byte that starts no
 * valid sequence is U+FFFD, as a terminal shows it; -1 when out of memory.
 * *outlen is the length of what to use. */
int utf8_repair(const char *s, size_t len, char **out, size_t *outlen);

/* s[0..len) as utf8_repair makes it, cut at a character's boundary to fit
 * out (outlen > 0 bytes, its NUL included): for text that goes into JSON
 * from somewhere that need not write UTF-8. Empty when out of memory. */
void utf8_copy(char *out, size_t outlen, const char *s, size_t len);

#endif
