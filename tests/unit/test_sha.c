/* Tests for lib/sha: the examples of FIPS 180-4 (as NIST publishes them),
 * the lengths where padding takes a second block, and agreement with
 * OpenSSL's digests for every length up to three blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hex.h"
#include "lib/sha.h"

typedef void digest_fn(const void *data, size_t n, unsigned char *out);

static void assert_digest(digest_fn *fn, size_t len, const void *data, size_t n, const char *want)
{
	unsigned char md[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	fn(data, n, md);
	hex_encode(md, len, hex);
	assert_string_equal(hex, want);
}

static const char TWO_BLOCKS[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

/* The empty message, "abc", 56 bytes (the length no longer fits the first
 * block) and a million times "a", each with its digest. */
static void known_answers(digest_fn *fn, size_t len, const char *const want[4])
{
	assert_digest(fn, len, "", 0, want[0]);
	assert_digest(fn, len, "abc", 3, want[1]);
	assert_digest(fn, len, TWO_BLOCKS, strlen(TWO_BLOCKS), want[2]);
	size_t n = 1000000;
	char *a = malloc(n);
	assert_non_null(a);
	memset(a, 'a', n);
	assert_digest(fn, len, a, n, want[3]);
	free(a);
}

static void sha1_known_answers(void **state)
{
	(void)state;
	static const char *const want[4] = {
	    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
	    "a9993e364706816aba3e25717850c26c9cd0d89d",
	    "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
	    "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
	};
	known_answers(sha1_digest, SHA1_LEN, want);
}

static void sha256_known_answers(void **state)
{
	(void)state;
	static const char *const want[4] = {
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
	};
	known_answers(sha256_digest, SHA256_LEN, want);
}

/* Every length from 0 to 192 bytes, so each place the padding can fall in a
 * block (55, 56, 63, 64 bytes ...) is met, against OpenSSL. */
static void every_length_agrees_with_openssl(void **state)
{
	(void)state;
	unsigned char buf[192];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	for (size_t n = 0; n <= sizeof(buf); n++) {
		unsigned char ours[SHA256_LEN], theirs[EVP_MAX_MD_SIZE];
		unsigned int len = 0;
		sha1_digest(buf, n, ours);
		assert_true(EVP_Digest(buf, n, theirs, &len, EVP_sha1(), NULL));
		assert_int_equal(len, SHA1_LEN);
		assert_memory_equal(ours, theirs, SHA1_LEN);
		sha256_digest(buf, n, ours);
		assert_true(EVP_Digest(buf, n, theirs, &len, EVP_sha256(), NULL));
		assert_int_equal(len, SHA256_LEN);
		assert_memory_equal(ours, theirs, SHA256_LEN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sha1_known_answers),
	    cmocka_unit_test(sha256_known_answers),
	    cmocka_unit_test(every_length_agrees_with_openssl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
