/* hex: hexadecimal digits and fixed-length hex strings, as in digests and
 * signatures. Both cases of a-f are accepted.
 */
#ifndef SLUICE_HEX_H
#define SLUICE_HEX_H

#include <stddef.h>

/* The value of one hex digit, or -1. */
int hex_digit(int c);
/* Writes the n bytes at in as 2 * n lowercase hex digits and a NUL at out. */
void hex_encode(const void *in, size_t n, char *out);
/* Decodes exactly 2 * n hex digits (the whole string) into n bytes; 0, or -1
 * when the string is shorter, longer or not hex. */
int hex_decode(const char *hex, unsigned char *out, size_t n);

#endif
