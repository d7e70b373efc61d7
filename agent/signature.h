/* signature: GitHub's X-Hub-Signature-256 check.
 *
 * The header is "sha256=" followed by the hex HMAC-SHA256 of the raw body
 * under the webhook secret. The comparison is constant-time so that the
 * time taken says nothing about how much of a forged signature was right.
 *
 * The pipelines' secrets are prepared once per configuration: each distinct
 * secret once (many pipelines often share one), its HMAC key schedule
 * computed ahead, so that a webhook costs one hash of its body per distinct
 * secret and nothing more.
 */
#ifndef SLUICE_SIGNATURE_H
#define SLUICE_SIGNATURE_H

#include <stddef.h>

struct pipeline_set;
struct signature_keys;

/* The keys of set's pipelines, or NULL when out of memory. The set is not
 * kept: each key is prepared from its secret here. */
struct signature_keys *signature_keys_new(const struct pipeline_set *set);
void signature_keys_free(struct signature_keys *k);

/* For each pipeline i of the set the keys were made from, verified[i] is 1
 * when header is a valid signature of body under its secret, 0 otherwise
 * (including a missing or malformed header). Returns how many verified. */
size_t signature_keys_verify(struct signature_keys *k, const void *body, size_t len,
			     const char *header, char *verified);

#endif
