/* signature: GitHub's X-Hub-Signature-256 check.
 *
 * The header is "sha256=" followed by the hex HMAC-SHA256 of the raw body
 * under the webhook secret. The comparison is constant-time so that the
 * time taken says nothing about how much of a forged signature was right.
 */
#ifndef SLUICE_SIGNATURE_H
#define SLUICE_SIGNATURE_H

#include <stddef.h>

/* 1 when header is a valid signature of body under secret, 0 otherwise
 * (including a missing or malformed header). */
int signature_verify(const char *secret, const void *body, size_t len, const char *header);

#endif
