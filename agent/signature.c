/* signature: X-Hub-Signature-256 (HMAC-SHA256 over the raw body). */
#include "agent/signature.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/hex.h"

#define MAC_LEN 32

struct signature_keys {
	/* One MAC context per distinct secret, keyed once: EVP_MAC_init
	 * without a key starts over with the key it has. */
	EVP_MAC_CTX **macs;
	size_t nmacs;
	/* of[i]: the index in macs of pipeline i's secret. */
	size_t *of;
	size_t npipelines;
	char *ok; /* scratch, one per mac */
};

void signature_keys_free(struct signature_keys *k)
{
	if (!k)
		return;
	for (size_t j = 0; j < k->nmacs; j++)
		EVP_MAC_CTX_free(k->macs[j]);
	free(k->macs);
	free(k->of);
	free(k->ok);
	free(k);
}

static EVP_MAC_CTX *keyed_mac(EVP_MAC *hmac, const char *secret)
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
			       OSSL_PARAM_construct_end()};
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac);
	if (ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1)
		return ctx;
	EVP_MAC_CTX_free(ctx);
	return NULL;
}

struct signature_keys *signature_keys_new(const struct pipeline_set *set)
{
	struct signature_keys *k = calloc(1, sizeof(*k));
	size_t n = set->n;
	EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!k || !hmac)
		goto fail;
	k->npipelines = n;
	k->macs = calloc(n ? n : 1, sizeof(*k->macs));
	k->of = calloc(n ? n : 1, sizeof(*k->of));
	k->ok = calloc(n ? n : 1, 1);
	if (!k->macs || !k->of || !k->ok)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const char *secret = set->items[i].secret;
		size_t j = 0;
		while (j < i && strcmp(set->items[j].secret, secret) != 0)
			j++;
		if (j < i) {
			k->of[i] = k->of[j];
			continue;
		}
		k->macs[k->nmacs] = keyed_mac(hmac, secret);
		if (!k->macs[k->nmacs])
			goto fail;
		k->of[i] = k->nmacs++;
	}
	EVP_MAC_free(hmac);
	return k;
fail:
	EVP_MAC_free(hmac);
	signature_keys_free(k);
	return NULL;
}

static int signs(EVP_MAC_CTX *mac, const void *body, size_t len, const unsigned char *given)
{
	unsigned char out[EVP_MAX_MD_SIZE];
	size_t out_len = 0;
	if (EVP_MAC_init(mac, NULL, 0, NULL) != 1 || EVP_MAC_update(mac, body, len) != 1 ||
	    EVP_MAC_final(mac, out, &out_len, sizeof(out)) != 1 || out_len != MAC_LEN)
		return 0;
	return CRYPTO_memcmp(out, given, MAC_LEN) == 0;
}

size_t signature_keys_verify(struct signature_keys *k, const void *body, size_t len,
			     const char *header, char *verified)
{
	static const char prefix[] = "sha256=";
	unsigned char given[MAC_LEN];
	size_t any = 0;

	memset(verified, 0, k->npipelines);
	if (!header || strncmp(header, prefix, sizeof(prefix) - 1) != 0 ||
	    hex_decode(header + sizeof(prefix) - 1, given, sizeof(given)) < 0)
		return 0;
	for (size_t j = 0; j < k->nmacs; j++)
		k->ok[j] = (char)signs(k->macs[j], body, len, given);
	for (size_t i = 0; i < k->npipelines; i++) {
		verified[i] = k->ok[k->of[i]];
		any += (size_t)verified[i];
	}
	return any;
}
