/* X-Hub-Signature-256 verification against GitHub's documented test vector. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent/signature.h"

static const char secret[] = "It's a Secret to Everybody";
static const char body[] = "Hello, World!";
static const char good[] =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

static void accepts_githubs_test_vector(void **state)
{
	(void)state;
	assert_int_equal(signature_verify(secret, body, strlen(body), good), 1);
}

static void accepts_uppercase_hex(void **state)
{
	(void)state;
	assert_int_equal(
	    signature_verify(
		secret, body, strlen(body),
		"sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"),
	    1);
}

static void rejects_other_secret_or_body(void **state)
{
	(void)state;
	assert_int_equal(signature_verify("another secret", body, strlen(body), good), 0);
	assert_int_equal(signature_verify(secret, "Hello, World?", strlen(body), good), 0);
	/* The body is raw bytes: a trailing newline is a different body. */
	assert_int_equal(signature_verify(secret, "Hello, World!\n", strlen(body) + 1, good), 0);
}

static void rejects_malformed_headers(void **state)
{
	(void)state;
	assert_int_equal(signature_verify(secret, body, strlen(body), NULL), 0);
	assert_int_equal(signature_verify(secret, body, strlen(body), ""), 0);
	/* sha1 (X-Hub-Signature) is not accepted in place of sha256. */
	assert_int_equal(signature_verify(secret, body, strlen(body),
					  "sha1=757107ea0eb2509fc211221cce984b8a37570b6d"),
			 0);
	/* Truncated, too long, not hex. */
	assert_int_equal(signature_verify(secret, body, strlen(body),
					  "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c2"),
			 0);
	assert_int_equal(
	    signature_verify(secret, body, strlen(body),
			     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f"
			     "4379c8b043e1700"),
	    0);
	assert_int_equal(
	    signature_verify(secret, body, strlen(body),
			     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f"
			     "4379c8b043e1z"),
	    0);
	assert_int_equal(signature_verify(secret, body, strlen(body), good + 7), 0);
}

static void empty_body_has_its_own_signature(void **state)
{
	(void)state;
	/* HMAC-SHA256 of "" under the secret; the empty body is not special. */
	assert_int_equal(signature_verify(secret, "", 0, good), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accepts_githubs_test_vector),
	    cmocka_unit_test(accepts_uppercase_hex),
	    cmocka_unit_test(rejects_other_secret_or_body),
	    cmocka_unit_test(rejects_malformed_headers),
	    cmocka_unit_test(empty_body_has_its_own_signature),
	};
	return cmocka_run_group_tests_name("signature", tests, NULL, NULL);
}
