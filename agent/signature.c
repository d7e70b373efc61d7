/* signature: X-Hub-Signature-256 (HMAC-SHA256 over the raw body). */
#include "agent/signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int signature_verify(const char *secret, const void *body, size_t len, const char *header)
{
	static const char prefix[] = "sha256=";
	unsigned char given[32], mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (!header || strncmp(header, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	const char *hex = header + sizeof(prefix) - 1;
	if (strlen(hex) != 2 * sizeof(given))
		return 0;
	for (size_t i = 0; i < sizeof(given); i++) {
		int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return 0;
		given[i] = (unsigned char)(hi << 4 | lo);
	}
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &mac_len) ||
	    mac_len != sizeof(given))
		return 0;
	return CRYPTO_memcmp(mac, given, sizeof(given)) == 0;
}
