/* Tests for rollout_mute (stages/rollout.h): a rollout on its way (an exec
 * provider, a timed pause) calls back while it runs; once muted, nothing
 * it still has in flight calls back, and it can be freed later. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <string.h>

#include "stages/process.h"
#include "stages/rollout.h"
#include "tests/unit/run_for.h"

static int calls;

static void on_line(int output, const char *line, size_t len, void *arg)
{
	(void)output;
	(void)line;
	(void)len;
	(void)arg;
	calls++;
}

static void on_save(const json_t *state, const json_t *event, void *arg)
{
	(void)state;
	(void)event;
	(void)arg;
	calls++;
}

static void on_park(const json_t *state, int64_t until_ms, void *arg)
{
	(void)state;
	(void)until_ms;
	(void)arg;
	calls++;
}

static void on_done(const char *status, const char *message, const json_t *state, void *arg)
{
	(void)status;
	(void)message;
	(void)state;
	(void)arg;
	calls++;
}

static const struct rollout_callbacks cb = {on_line, on_save, on_park, on_done};

/* The provider's commands take a while, so that one is in flight when the
 * rollout is muted. */
static const char SPEC[] =
    "{\"strategy\": {\"type\": \"Canary\", \"steps\": [{\"set_weight\": 20}, "
    "{\"pause_ms\": 50}, {\"set_weight\": 100}]},"
    " \"image\": \"x\","
    " \"provider\": {\"type\": \"exec\", \"actions\": {"
    "   \"apply\": {\"run\": [\"sleep\", \"0.1\"]},"
    "   \"set_weight\": {\"run\": [\"sleep\", \"0.1\"]},"
    "   \"verify\": {\"run\": [\"true\"]},"
    "   \"promote\": {\"run\": [\"sleep\", \"0.1\"]}}},"
    " \"hooks\": {\"pre\": [], \"post\": []}, \"checks\": {\"pre\": [], \"post\": []}}";

static void a_muted_rollout_calls_nothing_back(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	assert_int_equal(process_init(base), 0);
	json_error_t jerr;
	json_t *spec = json_loads(SPEC, 0, &jerr);
	assert_non_null(spec);
	json_t *vars = json_object();
	struct rollout_params p = {.spec = spec, .vars = vars, .cwd = "/tmp", .image = "x"};
	char err[256] = "";

	/* Unmuted, it calls back as it goes. */
	calls = 0;
	struct rollout *r = rollout_start(base, &p, &cb, NULL, err, sizeof(err));
	assert_non_null(r);
	run_for(base, 150);
	assert_true(calls > 0);
	rollout_free(r);

	/* Muted at once: its first command runs on, but says nothing. */
	calls = 0;
	r = rollout_start(base, &p, &cb, NULL, err, sizeof(err));
	assert_non_null(r);
	run_for(base, 20);
	int before = calls;
	rollout_mute(r);
	run_for(base, 600);
	assert_int_equal(calls, before);
	rollout_free(r);

	/* What the frees stopped is reaped before the loop goes. */
	for (int i = 0; i < 100 && process_running() > 0; i++)
		run_for(base, 20);
	assert_int_equal(process_running(), 0);
	json_decref(vars);
	json_decref(spec);
	process_shutdown();
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_muted_rollout_calls_nothing_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
