/* X-Hub-Signature-256 verification against GitHub's documented test vector. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent/signature.h"
#include "config/config.h"

static const char secret[] = "It's a Secret to Everybody";
static const char body[] = "Hello, World!";
static const char good[] =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
/* The same body under "another secret", and under the empty secret; the
 * empty body under secret. */
static const char other[] =
    "sha256=53749069b1b9c62fdd8c727a283be703d0350383d9cc75ba8f887aff9a448f40";
static const char unkeyed[] =
    "sha256=2bbcfa9524f3218c7a34b30e6936f8b1a4516cb097f1a85a1c7d98b5977ec769";
static const char empty_body[] =
    "sha256=66a0c074deaa0f489ead6537e0d32f9a344b90bbeda705b6ed45ecd3b413fb40";

/* Whether header signs body under sec, through keys made for one pipeline. */
static int signature_verify(const char *sec, const char *b, size_t len, const char *header)
{
	struct pipeline p = {.secret = (char *)sec};
	struct pipeline_set set = {&p, 1};
	struct signature_keys *k = signature_keys_new(&set);
	char verified = 9;
	assert_non_null(k);
	size_t n = signature_keys_verify(k, b, len, header, &verified);
	signature_keys_free(k);
	assert_int_equal(n, (size_t)verified);
	return verified;
}

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
	/* The empty body is not special: it verifies under its own HMAC only. */
	assert_int_equal(signature_verify(secret, "", 0, good), 0);
	assert_int_equal(signature_verify(secret, "", 0, empty_body), 1);
}

/* Pipelines sharing a secret are verified together, each other secret on
 * its own; the same keys serve body after body (each MAC starts over). */
static void each_pipeline_is_judged_by_its_own_secret(void **state)
{
	(void)state;
	struct pipeline p[] = {{.secret = (char *)secret},
			       {.secret = (char *)"another secret"},
			       {.secret = (char *)secret},
			       {.secret = (char *)""}};
	struct pipeline_set set = {p, 4};
	struct signature_keys *k = signature_keys_new(&set);
	char v[4];
	assert_non_null(k);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(signature_keys_verify(k, body, strlen(body), good, v), 2);
		assert_memory_equal(v, ((char[]){1, 0, 1, 0}), 4);
		assert_int_equal(signature_keys_verify(k, body, strlen(body), other, v), 1);
		assert_memory_equal(v, ((char[]){0, 1, 0, 0}), 4);
		assert_int_equal(signature_keys_verify(k, body, strlen(body), unkeyed, v), 1);
		assert_memory_equal(v, ((char[]){0, 0, 0, 1}), 4);
		/* A bad header clears what an earlier body left. */
		assert_int_equal(signature_keys_verify(k, body, strlen(body), "sha256=00", v), 0);
		assert_memory_equal(v, ((char[]){0, 0, 0, 0}), 4);
	}
	signature_keys_free(k);
}

static void no_pipelines_verify_nothing(void **state)
{
	(void)state;
	struct pipeline_set set = {NULL, 0};
	struct signature_keys *k = signature_keys_new(&set);
	char v = 7;
	assert_non_null(k);
	assert_int_equal(signature_keys_verify(k, body, strlen(body), good, &v), 0);
	signature_keys_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accepts_githubs_test_vector),
	    cmocka_unit_test(accepts_uppercase_hex),
	    cmocka_unit_test(rejects_other_secret_or_body),
	    cmocka_unit_test(rejects_malformed_headers),
	    cmocka_unit_test(empty_body_has_its_own_signature),
	    cmocka_unit_test(each_pipeline_is_judged_by_its_own_secret),
	    cmocka_unit_test(no_pipelines_verify_nothing),
	};
	return cmocka_run_group_tests_name("signature", tests, NULL, NULL);
}
