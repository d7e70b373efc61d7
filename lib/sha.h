/* sha: SHA-1 and SHA-256 digests (FIPS 180-4) of a buffer in memory, for
 * names, not for secrets: the digest Redis gives a Lua script, and the name
 * of a repository's mirror.
 *
 * OpenSSL 3 answers the same through its provider machinery, whose first
 * use costs a process about 2 MiB of resident memory; a worker needs nothing
 * else of it while idle.
 */
#ifndef SLUICE_SHA_H
#define SLUICE_SHA_H

#include <stddef.h>

#define SHA1_LEN   20
#define SHA256_LEN 32

void sha1_digest(const void *data, size_t n, unsigned char out[SHA1_LEN]);
void sha256_digest(const void *data, size_t n, unsigned char out[SHA256_LEN]);

#endif
