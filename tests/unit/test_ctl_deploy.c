/* sluicectl's promote, abort, retry RUN ENV and rollback: their arguments,
 * the line each prints, and the rollouts of a run in show.
 *
 * The ctl/ objects are not linked into unit tests (sluicectl is not part of
 * the agent or worker), so the sources under test are included here. */
#include "ctl/fmt.c"
#include "ctl/render.c"
#include "ctl/args.c"
#include "ctl/sse.c"
#include "ctl/api.c"
#include "ctl/control.c"
#include "ctl/deploy.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define PARSE(a, err, ...)                                                                         \
	parse_args(a, err, sizeof(err), (const char *[]){"sluicectl", __VA_ARGS__, NULL})

static int parse_args(struct ctl_args *a, char *err, size_t errlen, const char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	return ctl_args_parse(a, argc, (char **)argv, err, errlen);
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	if (!v)
		fail_msg("%s: %s", text, e.text);
	return v;
}

/* What render writes for the JSON text body, into buf. */
static void rendered(int (*render)(FILE *, const json_t *), const char *body, char *buf, size_t len)
{
	json_t *b = parse(body);
	FILE *f = fmemopen(buf, len, "w");
	assert_non_null(f);
	assert_int_equal(render(f, b), 0);
	fclose(f);
	json_decref(b);
}

static void args_of_the_deployment_commands(void **state)
{
	struct ctl_args a;
	char err[256] = "";

	(void)state;
	assert_int_equal(PARSE(&a, err, "promote", "r_1", "production", "--full", "--reason",
			       "all good", "--by", "alice"),
			 0);
	assert_int_equal(a.cmd, CTL_CMD_PROMOTE);
	assert_string_equal(a.run, "r_1");
	assert_string_equal(a.env, "production");
	assert_true(a.full);
	assert_string_equal(a.reason, "all good");
	assert_string_equal(a.by, "alice");
	assert_int_equal(PARSE(&a, err, "abort", "r_1", "production"), 0);
	assert_int_equal(a.cmd, CTL_CMD_ABORT);
	assert_null(a.reason);
	assert_int_equal(PARSE(&a, err, "rollback", "--json", "r_1", "staging"), 0);
	assert_int_equal(a.cmd, CTL_CMD_ROLLBACK);
	assert_true(a.json);
	/* retry keeps its two forms; the second name is resolved later. */
	assert_int_equal(PARSE(&a, err, "retry", "r_1"), 0);
	assert_null(a.stage);
	assert_int_equal(PARSE(&a, err, "retry", "r_1", "production", "--reason", "again"), 0);
	assert_string_equal(a.stage, "production");
	assert_string_equal(a.reason, "again");
}

static void args_of_the_deployment_commands_refused(void **state)
{
	static const struct {
		const char *argv[6];
		const char *err;
	} cases[] = {
	    {{"promote", "r_1"}, "promote: missing ENV"},
	    {{"abort"}, "abort: missing RUN"},
	    {{"rollback", "r_1", "staging", "x"}, "rollback: unexpected argument 'x'"},
	    {{"abort", "r_1", "staging", "--full"}, "--full applies to promote only"},
	    {{"show", "r_1", "--full"}, "--full applies to promote only"},
	    {{"promote", "r_1", "staging", "--ref", "main"},
	     "promote takes --reason and --by only (and --full)"},
	    {{"retry", "r_1", "--by", "bob"},
	     "retry: --reason and --by apply to retry RUN ENV only"},
	    {{"promote", "", "staging"}, "promote: arguments must not be empty"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ctl_args a;
		char err[256] = "";
		const char *argv[8] = {"sluicectl"};
		int argc = 1;
		for (; cases[i].argv[argc - 1]; argc++)
			argv[argc] = cases[i].argv[argc - 1];
		assert_int_equal(ctl_args_parse(&a, argc, (char **)argv, err, sizeof(err)), -1);
		assert_string_equal(err, cases[i].err);
	}
}

static void each_command_prints_one_line(void **state)
{
	char buf[512];

	(void)state;
	rendered(
	    ctl_deploy_render,
	    "{\"run\": \"r_1\", \"env\": \"prod\", \"command\": \"promote_full\","
	    " \"status\": \"deploying\", \"by\": \"alice\", \"resumed\": false,"
	    " \"stage\": {\"name\": \"deploy@prod\", \"status\": \"running\", \"attempt\": 2}}",
	    buf, sizeof(buf));
	assert_string_equal(
	    buf,
	    "run r_1: promote --full sent to prod by alice; deploy@prod is running (attempt 2)\n");
	rendered(ctl_deploy_render,
		 "{\"run\": \"r_1\", \"env\": \"prod\", \"command\": \"abort\","
		 " \"status\": \"deploying\", \"by\": \"ops\", \"resumed\": true,"
		 " \"stage\": {\"name\": \"deploy@prod\", \"status\": \"queued\", \"attempt\": 4}}",
		 buf, sizeof(buf));
	assert_string_equal(buf, "run r_1: abort sent to prod by ops; the paused rollout is queued "
				 "again (attempt 4)\n");
	rendered(ctl_deploy_render,
		 "{\"run\": \"r_1\", \"env\": \"prod\", \"command\": \"rollback\","
		 " \"status\": \"rolling_back\", \"by\": \"ops\","
		 " \"rollback\": {\"run\": \"r_0\", \"image\": \"reg/app@sha256:1\\u001b[2J\"},"
		 " \"stage\": {\"name\": \"deploy@prod\", \"status\": \"queued\", \"attempt\": 3}}",
		 buf, sizeof(buf));
	/* Values from the network are printed without their control characters. */
	assert_string_equal(buf,
			    "run r_1: rollback of prod to run r_0 (reg/app@sha256:1[2J) by ops; "
			    "prod is rolling_back, deploy@prod is queued (attempt 3)\n");
}

static void a_body_that_is_no_object_is_refused(void **state)
{
	json_t *b = parse("[1]");
	char buf[64];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	(void)state;
	assert_int_equal(ctl_deploy_render(f, b), -1);
	fclose(f);
	json_decref(b);
}

static void show_lists_rollouts_and_their_analyses(void **state)
{
	char buf[4096];

	(void)state;
	rendered(
	    ctl_render_run,
	    "{\"id\": \"r_1\", \"status\": \"running\", \"environments\": {"
	    "\"staging\": {\"status\": \"deployed\", \"actions\": []},"
	    "\"production\": {\"status\": \"deploying\", \"actions\": [\"promote\", \"abort\"],"
	    " \"strategy\": {\"name\": \"Canary\", \"step\": 2, \"steps\": 5,"
	    "  \"status\": \"Paused\", \"command\": \"promote\","
	    "  \"paused_until\": \"2026-11-26T04:10:00.000Z\","
	    "  \"weights\": {\"stable\": 80, \"canary\": 20},"
	    "  \"checklist\": [{\"item\": \"a\", \"done\": true}, {\"item\": \"b\", \"done\": "
	    "false}],"
	    "  \"analysis\": [{\"metric\": \"background\", \"value\": 0.004,"
	    "   \"threshold\": \"result[0] < 0.01\", \"status\": \"passed\"}]}}}}",
	    buf, sizeof(buf));
	/* staging has no strategy: the table lists production alone. */
	assert_non_null(strstr(buf,
			       "\n\nENVIRONMENT  STRATEGY  STEP  PHASE                  "
			       "WEIGHTS                 PAUSED UNTIL         CHECKS      ACTIONS\n"
			       "production   Canary    2/5   Paused (promote sent)  "
			       "stable 80%, canary 20%  2026-11-26 04:10:00  1/2 passed  "
			       "promote, abort\n"
			       "\nENVIRONMENT  ANALYSIS    MEASURED  CONDITION         RESULT\n"
			       "production   background  0.004     result[0] < 0.01  passed\n"));
}

static void show_without_strategies_has_no_rollout_table(void **state)
{
	char buf[2048];

	(void)state;
	rendered(ctl_render_run,
		 "{\"id\": \"r_1\", \"environments\": {\"staging\": {\"status\": \"deployed\"}}}",
		 buf, sizeof(buf));
	assert_null(strstr(buf, "STRATEGY"));
	assert_null(strstr(buf, "ANALYSIS"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(args_of_the_deployment_commands),
	    cmocka_unit_test(args_of_the_deployment_commands_refused),
	    cmocka_unit_test(each_command_prints_one_line),
	    cmocka_unit_test(a_body_that_is_no_object_is_refused),
	    cmocka_unit_test(show_lists_rollouts_and_their_analyses),
	    cmocka_unit_test(show_without_strategies_has_no_rollout_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
