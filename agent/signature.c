/* signature: X-Hub-Signature-256 (HMAC-SHA256 over the raw body). */
#include "agent/signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "lib/hex.h"

int signature_verify(const char *secret, const void *body, size_t len, const char *header)
{
	static const char prefix[] = "sha256=";
	unsigned char given[32], mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (!header || strncmp(header, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	if (hex_decode(header + sizeof(prefix) - 1, given, sizeof(given)) < 0)
		return 0;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &mac_len) ||
	    mac_len != sizeof(given))
		return 0;
	return CRYPTO_memcmp(mac, given, sizeof(given)) == 0;
}
