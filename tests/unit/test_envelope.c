/* Tests for queue/envelope: CloudEvents encode/decode and every rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

static void encode_then_decode_keeps_every_attribute(void **state)
{
	(void)state;
	json_t *data =
	    json_pack("{s:s, s:i, s:{s:b}}", "run", "r_1", "attempt", 2, "nested", "ok", 1);
	char *text = envelope_encode("/sluice/agent", "dev.sluice.job.requested",
				     "runs/r_1/stages/build/attempts/2", data);
	assert_non_null(text);

	struct envelope e;
	char err[256] = "";
	assert_int_equal(envelope_decode(text, strlen(text), &e, err, sizeof(err)), 0);
	assert_string_equal(e.source, "/sluice/agent");
	assert_string_equal(e.type, "dev.sluice.job.requested");
	assert_string_equal(e.subject, "runs/r_1/stages/build/attempts/2");
	assert_int_equal(strlen(e.id), 32);
	assert_int_equal(strspn(e.id, "0123456789abcdef"), 32);
	assert_non_null(e.time);
	assert_int_equal(strlen(e.time), strlen("2024-01-02T03:04:05.678Z"));
	assert_int_equal(e.time[strlen(e.time) - 1], 'Z');
	assert_true(json_equal(e.data, data));

	json_t *raw = json_loads(text, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(raw, "specversion")), "1.0");
	assert_string_equal(json_string_value(json_object_get(raw, "datacontenttype")),
			    "application/json");
	assert_string_equal(json_string_value(json_object_get(raw, "id")), e.id);
	assert_string_equal(json_string_value(json_object_get(raw, "time")), e.time);
	json_decref(raw);

	envelope_clear(&e);
	assert_null(e.id);
	free(text);
	json_decref(data);
}

static void encode_omits_a_null_subject_and_makes_fresh_ids(void **state)
{
	(void)state;
	json_t *data = json_object();
	char *a = envelope_encode("/s", "t", NULL, data);
	char *b = envelope_encode("/s", "t", NULL, data);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(strstr(a, "\"subject\""));

	struct envelope ea, eb;
	assert_int_equal(envelope_decode(a, strlen(a), &ea, NULL, 0), 0);
	assert_int_equal(envelope_decode(b, strlen(b), &eb, NULL, 0), 0);
	assert_null(ea.subject);
	assert_string_not_equal(ea.id, eb.id);
	envelope_clear(&ea);
	envelope_clear(&eb);
	free(a);
	free(b);
	json_decref(data);
}

static void encode_refuses_data_that_is_not_an_object(void **state)
{
	(void)state;
	json_t *arr = json_array();
	assert_null(envelope_encode("/s", "t", NULL, arr));
	assert_null(envelope_encode("/s", "t", NULL, NULL));
	json_decref(arr);
	json_t *obj = json_object();
	assert_null(envelope_encode(NULL, "t", NULL, obj));
	assert_null(envelope_encode("/s", "", NULL, obj));
	/* Attributes that are not UTF-8 cannot be JSON strings. */
	assert_null(envelope_encode("/s", "t", "runs/r_1/stages/b\xff", obj));
	assert_null(envelope_encode("/s\xc0\xaf", "t", NULL, obj));
	json_decref(obj);
}

/* Attributes with characters JSON escapes come back as they were. */
static void encode_escapes_attributes(void **state)
{
	(void)state;
	json_t *data = json_pack("{s:s}", "note", "tab\there \"quoted\"");
	char *text = envelope_encode("/s \"x\"\\", "t\n", "runs/ü/\x01", data);
	assert_non_null(text);
	struct envelope e;
	assert_int_equal(envelope_decode(text, strlen(text), &e, NULL, 0), 0);
	assert_string_equal(e.source, "/s \"x\"\\");
	assert_string_equal(e.type, "t\n");
	assert_string_equal(e.subject, "runs/ü/\x01");
	assert_true(json_equal(e.data, data));
	envelope_clear(&e);
	free(text);
	json_decref(data);
}

static void decode_accepts_extensions_offsets_and_absent_time(void **state)
{
	(void)state;
	const char *text = "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\","
			   "\"time\":\"2024-02-29T23:59:60.5+05:30\",\"traceparent\":\"00-ab\","
			   "\"data\":{}}";
	struct envelope e;
	char err[256] = "";
	assert_int_equal(envelope_decode(text, strlen(text), &e, err, sizeof(err)), 0);
	assert_string_equal(e.time, "2024-02-29T23:59:60.5+05:30");
	envelope_clear(&e);

	text =
	    "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\",\"data\":{}}";
	assert_int_equal(envelope_decode(text, strlen(text), &e, err, sizeof(err)), 0);
	assert_null(e.time);
	assert_null(e.subject);
	envelope_clear(&e);

	/* A datacontenttype that says JSON, as CloudEvents producers write it. */
	static const char *const json_types[] = {
	    "application/json", "Application/JSON; charset=utf-8", "application/cloudevents+json",
	    "application/json ;charset=utf-8"};
	for (size_t i = 0; i < sizeof(json_types) / sizeof(json_types[0]); i++) {
		char with[256];
		snprintf(with, sizeof(with),
			 "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\","
			 "\"datacontenttype\":\"%s\",\"data\":{}}",
			 json_types[i]);
		if (envelope_decode(with, strlen(with), &e, err, sizeof(err)) != 0)
			fail_msg("%s: %s", json_types[i], err);
		envelope_clear(&e);
	}
}

static void expect_rejection(const char *text, const char *want)
{
	struct envelope e;
	char err[256] = "";
	assert_int_equal(envelope_decode(text, strlen(text), &e, err, sizeof(err)), -1);
	assert_string_equal(err, want);
	assert_null(e.id);
	assert_null(e.data);
}

#define BASE "\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\""

static void decode_rejects_each_bad_envelope_with_a_precise_error(void **state)
{
	(void)state;
	expect_rejection("{\"id\":", "envelope: not JSON: unexpected token near end of file at "
				     "line 1 column 6");
	expect_rejection("[1,2]", "envelope: not a JSON object");
	expect_rejection("{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"t\",\"data\":{}}",
			 "envelope: missing attribute \"id\"");
	expect_rejection("{\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"t\",\"data\":{}}",
			 "envelope: missing attribute \"source\"");
	expect_rejection("{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"data\":{}}",
			 "envelope: missing attribute \"type\"");
	expect_rejection("{\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\",\"data\":{}}",
			 "envelope: missing attribute \"specversion\"");
	expect_rejection("{\"specversion\":\"0.3\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\","
			 "\"data\":{}}",
			 "envelope: specversion must be \"1.0\"");
	expect_rejection("{\"specversion\":1.0,\"id\":\"x\",\"source\":\"/s\",\"type\":\"t\","
			 "\"data\":{}}",
			 "envelope: specversion must be \"1.0\"");
	expect_rejection("{\"specversion\":\"1.0\",\"id\":7,\"source\":\"/s\",\"type\":\"t\","
			 "\"data\":{}}",
			 "envelope: attribute \"id\" must be a string");
	expect_rejection("{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\",\"type\":\"\","
			 "\"data\":{}}",
			 "envelope: attribute \"type\" must not be empty");
	expect_rejection("{" BASE ",\"subject\":3,\"data\":{}}",
			 "envelope: attribute \"subject\" must be a string");
	expect_rejection("{" BASE ",\"data\":[1]}", "envelope: data must be a JSON object");
	expect_rejection("{" BASE ",\"data\":\"text\"}", "envelope: data must be a JSON object");
	expect_rejection("{" BASE "}", "envelope: missing attribute \"data\"");
	/* data is read as JSON: an event saying it is anything else is not ours. */
	expect_rejection("{" BASE ",\"datacontenttype\":\"text/plain\",\"data\":{}}",
			 "envelope: datacontenttype must be application/json (or a +json type)");
	expect_rejection("{" BASE ",\"datacontenttype\":\"application/jsonx\",\"data\":{}}",
			 "envelope: datacontenttype must be application/json (or a +json type)");
	expect_rejection("{" BASE ",\"datacontenttype\":\"+json\",\"data\":{}}",
			 "envelope: datacontenttype must be application/json (or a +json type)");
	expect_rejection("{" BASE ",\"datacontenttype\":7,\"data\":{}}",
			 "envelope: attribute \"datacontenttype\" must be a string");
	expect_rejection("{" BASE ",\"id\":\"y\",\"data\":{}}",
			 "envelope: not JSON: duplicate object key near '\"id\"' at line 1 "
			 "column 59");
}

static void decode_rejects_times_that_are_not_rfc3339(void **state)
{
	(void)state;
	static const char *bad[] = {
	    "yesterday",
	    "2024-01-02 03:04:05Z",
	    "2024-13-02T03:04:05Z",
	    "2023-02-29T03:04:05Z",
	    "2024-01-02T24:00:00Z",
	    "2024-01-02T03:04:05",
	    "2024-01-02T03:04:05.Z",
	    "2024-01-02T03:04:05+0100",
	    "2024-01-02T03:04:05Zjunk",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "{" BASE ",\"time\":\"%s\",\"data\":{}}", bad[i]);
		expect_rejection(text, "envelope: attribute \"time\" is not an RFC 3339 timestamp");
	}
	expect_rejection("{" BASE ",\"time\":12,\"data\":{}}",
			 "envelope: attribute \"time\" must be a string");
}

static void decode_rejects_oversized_and_non_utf8_bodies(void **state)
{
	(void)state;
	size_t len = 1024 * 1024 + 1;
	char *big = malloc(len + 1);
	assert_non_null(big);
	memset(big, ' ', len);
	big[len] = '\0';
	expect_rejection(big, "envelope: 1048577 bytes is over the limit of 1048576");
	free(big);

	expect_rejection("{" BASE ",\"subject\":\"\xff\xfe\",\"data\":{}}",
			 "envelope: not JSON: unable to decode byte 0xff near '\"' at line 1 "
			 "column 66");
}

/* A job's or a result's attempt is a whole number from 1 to INT_MAX: one
 * past it would be cast to another attempt (2^32 + 1 to 1). */
static void an_attempt_is_a_whole_number_from_1_to_int_max(void **state)
{
	(void)state;
	static const struct {
		const char *data;
		int want;
	} cases[] = {
	    {"{\"attempt\": 1}", 1},	       {"{\"attempt\": 2147483647}", 2147483647},
	    {"{\"attempt\": 4294967297}", -1}, {"{\"attempt\": 0}", -1},
	    {"{\"attempt\": -3}", -1},	       {"{\"attempt\": \"2\"}", -1},
	    {"{\"attempt\": 2.0}", -1},	       {"{}", -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *data = json_loads(cases[i].data, 0, NULL);
		assert_non_null(data);
		if (envelope_attempt(data) != cases[i].want)
			fail_msg("%s: %d", cases[i].data, envelope_attempt(data));
		json_decref(data);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(an_attempt_is_a_whole_number_from_1_to_int_max),
	    cmocka_unit_test(encode_then_decode_keeps_every_attribute),
	    cmocka_unit_test(encode_omits_a_null_subject_and_makes_fresh_ids),
	    cmocka_unit_test(encode_refuses_data_that_is_not_an_object),
	    cmocka_unit_test(encode_escapes_attributes),
	    cmocka_unit_test(decode_accepts_extensions_offsets_and_absent_time),
	    cmocka_unit_test(decode_rejects_each_bad_envelope_with_a_precise_error),
	    cmocka_unit_test(decode_rejects_times_that_are_not_rfc3339),
	    cmocka_unit_test(decode_rejects_oversized_and_non_utf8_bodies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
