/* sluicectl: formatting, table rendering, argument parsing, and the whole
 * command line against a canned HTTP server on loopback.
 *
 * The ctl/ objects are not linked into unit tests (sluicectl is not part of
 * the agent or worker), so the sources under test are included here. */
#include "ctl/fmt.c"
#include "ctl/render.c"
#include "ctl/args.c"
#include "ctl/help.c"
#include "ctl/api.c"
#include "ctl/commands.c"
#include "ctl/control.c"
#include "ctl/validate.c"
#include "ctl/decide.c"
#include "ctl/deploy.c"
#include "ctl/sse.c"
#include "ctl/plan.c"
#include "ctl/cli.c"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tmpdir.h"

/* --- helpers ------------------------------------------------------------- */

struct capture {
	FILE *f;
	char *buf;
	size_t len;
};

static void capture_open(struct capture *c)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
}

/* Closes the stream; the text stays in c->buf until capture_free. */
static void capture_close(struct capture *c)
{
	fclose(c->f);
	c->f = NULL;
}

static void capture_free(struct capture *c)
{
	free(c->buf);
	c->buf = NULL;
}

static json_t *parse(const char *text)
{
	json_error_t err;
	json_t *v = json_loads(text, 0, &err);

	if (!v)
		fail_msg("bad test JSON: %s", err.text);
	return v;
}

/* --- fmt ----------------------------------------------------------------- */

static void duration_uses_compact_units(void **state)
{
	static const struct {
		int64_t ms;
		const char *want;
	} cases[] = {
	    {0, "0ms"},	      {834, "834ms"},	  {4000, "4s"},		 {59999, "59s"},
	    {64500, "1m04s"}, {600000, "10m00s"}, {3600000, "1h00m00s"}, {7389000, "2h03m09s"},
	    {-1, "-"},
	};
	char buf[CTL_FMT_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ctl_fmt_duration(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].want);
	}
}

static void time_parses_rfc3339_and_prints_utc(void **state)
{
	int64_t ms;
	char buf[CTL_FMT_MAX];

	(void)state;
	assert_int_equal(ctl_fmt_parse_time("2026-11-26T03:41:07.123Z", &ms), 0);
	assert_int_equal(ms, 1795664467123LL);
	ctl_fmt_time(ms, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-26 03:41:07");

	assert_int_equal(ctl_fmt_parse_time("2026-11-26T05:41:07+02:00", &ms), 0);
	assert_int_equal(ms, 1795664467000LL);
	assert_int_equal(ctl_fmt_parse_time("2026-11-25T23:11:07.5-04:30", &ms), 0);
	assert_int_equal(ms, 1795664467500LL);
	ctl_fmt_time(ms, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-26 03:41:07");
}

static void time_rejects_what_is_not_rfc3339(void **state)
{
	static const char *const bad[] = {
	    "",
	    "2026-11-26",
	    "2026-11-26T03:41:07",
	    "2026-13-01T00:00:00Z",
	    "2026-11-26T24:00:00Z",
	    "2026-11-26T03:41:07.Z",
	    "2026-11-26T03:41:07Zjunk",
	    "2026-11-26T03:41:07+0200",
	    "yesterday",
	};
	int64_t ms = 42;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ctl_fmt_parse_time(bad[i], &ms), -1);
		assert_int_equal(ms, 42);
	}
}

static void sanitize_strips_controls_but_keeps_utf8_and_spaces_a_tab(void **state)
{
	/* ESC, CR, LF, BEL, DEL, a UTF-8 C1 CSI, a right-to-left override, a
	 * stray continuation byte and an overlong '/'. */
	static const char in[] = "a\x1b[31mb\r\nc\a\x7f\td\xc2\x9b"
				 "e\xe2\x80\xae"
				 "f\x80g\xc0\xafh-\xc3\xbc";
	char *out = ctl_fmt_sanitize(in, sizeof(in) - 1);

	(void)state;
	assert_non_null(out);
	assert_string_equal(out, "a[31mbc de"
				 "f?g??h-\xc3\xbc");
	assert_int_equal(ctl_fmt_width("h-\xc3\xbc"), 3);
	free(out);

	out = ctl_fmt_sanitize("x\0y", 3);
	assert_string_equal(out, "xy");
	free(out);
}

/* A stage's output may colour its log, not act on the reader's terminal. */
static void log_text_keeps_colours_and_drops_other_sequences(void **state)
{
	(void)state;
	const struct {
		const char *in, *want;
	} cases[] = {
	    /* SGR colours and styles, ':' sub-parameters included. */
	    {"\x1b[1;31mred\x1b[0m \x1b[38:5:208mo\x1b[m",
	     "\x1b[1;31mred\x1b[0m \x1b[38:5:208mo\x1b[m"},
	    /* A style a line sets ends with it: concealed or black on black,
	     * it would hide the lines after it and the shell's prompt. */
	    {"\x1b[8mhidden", "\x1b[8mhidden\x1b[0m"},
	    {"\x1b[30;40mdark", "\x1b[30;40mdark\x1b[0m"},
	    {"\x1b[0mplain \x1b[1mbold", "\x1b[0mplain \x1b[1mbold\x1b[0m"},
	    /* Cursor moves and erases would rewrite what is on screen. */
	    {"a\x1b[2Jb\x1b[1;1Hc\x1b[Kd\x1b[?25le", "abcde"},
	    /* Private or intermediate bytes make it no SGR. */
	    {"x\x1b[>4;2my\x1b[1 mz", "xyz"},
	    /* OSC 52 writes the clipboard, OSC 0 the title; BEL or ST ends them. */
	    {"p\x1b]52;c;cm0gLXJmIH4=\aq\x1b]0;owned\x1b\\r", "pqr"},
	    /* DCS and a two-byte escape (RIS resets the terminal). */
	    {"s\x1bPq#0;2;0;0;0\x1b\\t\x1b"
	     "cu",
	     "stu"},
	    /* C1 CSI (U+009B), CR, BEL, DEL and a bidi override; tab and UTF-8 stay. */
	    {"1\xc2\x9b"
	     "2J\r2\a3\x7f\t4\xe2\x80\xae"
	     "5 \xc3\xbc",
	     "12J23\t45 \xc3\xbc"},
	    /* A sequence cut by the end of the line goes whole. */
	    {"end\x1b[31", "end"},
	    {"end\x1b]0;title", "end"},
	    {"end\x1b", "end"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = ctl_fmt_log_text(cases[i].in, strlen(cases[i].in));
		assert_non_null(out);
		assert_string_equal(out, cases[i].want);
		free(out);
	}
}

/* --- render -------------------------------------------------------------- */

static const char runs_body[] =
    "{\"runs\": ["
    "{\"id\": \"r_1\", \"pipeline\": \"app\", \"ref\": \"refs/heads/main\","
    " \"sha\": \"0123456789abcdef0123456789abcdef01234567\", \"status\": \"succeeded\","
    " \"created\": \"2026-11-26T03:41:07.000Z\", \"finished\": \"2026-11-26T03:42:11.500Z\"},"
    "{\"id\": \"r_2\", \"pipeline\": \"app\", \"ref\": \"refs/heads/evil\\u001b[2J\\r\\nr_9  "
    "fake\","
    " \"sha\": \"abc\", \"status\": \"running\","
    " \"created\": \"2026-11-26T04:00:00+01:00\", \"finished\": null},"
    "{\"id\": 42, \"ref\": \"refs/tags/v1.0\", \"sha\": null, \"status\": \"queued\","
    " \"created\": \"soon\"},"
    "7"
    "]}";

static const char runs_table[] =
    "RUN  PIPELINE  REF               SHA      STATUS     CREATED              DURATION\n"
    "r_1  app       main              0123456  succeeded  2026-11-26 03:41:07  1m04s\n"
    "r_2  app       evil[2Jr_9  fake  abc      running    2026-11-26 03:00:00  -\n"
    "-    -         refs/tags/v1.0    -        queued     -                    -\n"
    "-    -         -                 -        -          -                    -\n";

static void runs_table_matches_golden_output(void **state)
{
	json_t *body = parse(runs_body);
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_runs(out.f, body), 0);
	capture_close(&out);
	assert_string_equal(out.buf, runs_table);
	capture_free(&out);
	json_decref(body);
}

/* Columns are as wide as a terminal shows their cells: a CJK character
 * takes two, a combining accent none, and a tab is a space. */
static void runs_table_aligns_wide_characters_and_tabs(void **state)
{
	json_t *body =
	    parse("{\"runs\": ["
		  "{\"id\": \"r_1\", \"pipeline\": \"\u65e5\u672c\", \"ref\": "
		  "\"refs/heads/e\u0301t\u00e9\", \"sha\": \"abc\", \"status\": \"queued\"},"
		  "{\"id\": \"r_2\", \"pipeline\": \"app\", \"ref\": \"refs/heads/a\\tb\","
		  " \"sha\": \"abc\", \"status\": \"queued\"}]}");
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_runs(out.f, body), 0);
	capture_close(&out);
	assert_string_equal(
	    out.buf,
	    "RUN  PIPELINE  REF  SHA  STATUS  CREATED  DURATION\n"
	    "r_1  \xe6\x97\xa5\xe6\x9c\xac      e\xcc\x81t\xc3\xa9  abc  queued  -        -\n"
	    "r_2  app       a b  abc  queued  -        -\n");
	assert_int_equal(ctl_fmt_width("\xe6\x97\xa5\xe6\x9c\xac"), 4);
	assert_int_equal(ctl_fmt_width("e\xcc\x81t\xc3\xa9"), 3);
	assert_int_equal(ctl_fmt_width("\xf0\x9f\x98\x80!"), 3);
	capture_free(&out);
	json_decref(body);
}

static void runs_table_of_no_runs_is_the_header(void **state)
{
	json_t *body = parse("{\"runs\": []}");
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_runs(out.f, body), 0);
	capture_close(&out);
	assert_string_equal(out.buf, "RUN  PIPELINE  REF  SHA  STATUS  CREATED  DURATION\n");
	capture_free(&out);
	json_decref(body);
}

static void runs_render_refuses_a_body_without_a_runs_array(void **state)
{
	static const char *const bodies[] = {"{\"runs\": 3}", "{}", "[]", "\"runs\""};
	struct capture out;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		json_t *body = json_loads(bodies[i], JSON_DECODE_ANY, NULL);
		capture_open(&out);
		assert_int_equal(ctl_render_runs(out.f, body), -1);
		capture_close(&out);
		assert_int_equal(out.len, 0);
		capture_free(&out);
		json_decref(body);
	}
}

static const char run_body[] =
    "{\"id\": \"r_1\", \"pipeline\": \"app\", \"repository\": \"Codertocat/Hello-World\","
    " \"ref\": \"refs/heads/main\", \"sha\": \"0123456789abcdef0123456789abcdef01234567\","
    " \"status\": \"failed\", \"created\": \"2026-11-26T03:41:07Z\","
    " \"finished\": \"2026-11-26T04:45:00Z\", \"stages\": {"
    "\"build\": {\"status\": \"succeeded\", \"attempt\": 1, \"exit_code\": 0,"
    " \"started\": \"2026-11-26T03:41:08Z\", \"finished\": \"2026-11-26T03:41:12.250Z\","
    " \"attempts\": [{\"attempt\": 1, \"status\": \"succeeded\","
    " \"worker\": \"ci-1:4242:0a1b2c3d\", \"started\": \"2026-11-26T03:41:08Z\","
    " \"finished\": \"2026-11-26T03:41:12.250Z\", \"exit_code\": 0}]},"
    "\"test\": {\"status\": \"timed_out\", \"attempt\": 2, \"exit_code\": null,"
    " \"started\": \"2026-11-26T03:41:13Z\", \"finished\": \"2026-11-26T04:43:22Z\","
    " \"attempts\": [{\"attempt\": 1, \"status\": \"handed_back\","
    " \"worker\": \"ci-1:4242:0a1b2c3d\", \"started\": \"2026-11-26T03:41:12.500Z\","
    " \"finished\": \"2026-11-26T03:41:12.900Z\", \"exit_code\": null},"
    " {\"attempt\": 2, \"status\": \"timed_out\", \"worker\": \"ci-2:77:ffee0011\","
    " \"started\": \"2026-11-26T03:41:13Z\", \"finished\": \"2026-11-26T04:43:22Z\","
    " \"exit_code\": null, \"signal\": \"SIGTERM\"}]},"
    "\"scan\": {\"status\": \"running\", \"attempt\": 2, \"started\": \"2026-11-26T03:41:30Z\","
    " \"attempts\": [{\"attempt\": 1, \"status\": \"lost\", \"worker\": \"ci-3:9:00000000\","
    " \"started\": \"2026-11-26T03:41:13Z\", \"finished\": \"2026-11-26T03:41:25Z\"}]},"
    "\"deploy\\u0007\": {\"status\": \"pending\", \"attempt\": \"1\"},"
    "\"push\": null}}";

static const char run_text[] =
    "Run:        r_1\n"
    "Pipeline:   app\n"
    "Repository: Codertocat/Hello-World\n"
    "Event:      -\n"
    "Ref:        refs/heads/main\n"
    "Sha:        0123456789abcdef0123456789abcdef01234567\n"
    "Status:     failed\n"
    "Created:    2026-11-26 03:41:07\n"
    "Finished:   2026-11-26 04:45:00\n"
    "Duration:   1h03m53s\n"
    "\n"
    "STAGE   STATUS     ATTEMPT  EXIT  STARTED              DURATION\n"
    "build   succeeded  1        0     2026-11-26 03:41:08  4s\n"
    "test    timed_out  2        -     2026-11-26 03:41:13  1h02m09s\n"
    "scan    running    2        -     2026-11-26 03:41:30  -\n"
    "deploy  pending    -        -     -                    -\n"
    "push    -          -        -     -                    -\n"
    "\n"
    "STAGE  ATTEMPT  STATUS       EXIT  STARTED              DURATION  WORKER\n"
    "test   1        handed_back  -     2026-11-26 03:41:12  400ms     "
    "ci-1:4242:0a1b2c3d\n"
    "test   2        timed_out    -     2026-11-26 03:41:13  1h02m09s  "
    "ci-2:77:ffee0011\n"
    "scan   1        lost         -     2026-11-26 03:41:13  12s       "
    "ci-3:9:00000000\n";

static void run_with_stages_matches_golden_output(void **state)
{
	json_t *run = parse(run_body);
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_run(out.f, run), 0);
	capture_close(&out);
	assert_string_equal(out.buf, run_text);
	capture_free(&out);
	json_decref(run);
}

static void run_environments_table_shows_approvals_and_windows(void **state)
{
	json_t *run = parse(
	    "{\"id\": \"r_1\", \"status\": \"waiting\", \"environments\": {"
	    "\"development\": {\"status\": \"deployed\", \"started\": "
	    "\"2026-11-26T03:00:00.000Z\", \"finished\": \"2026-11-26T03:00:02.500Z\", "
	    "\"approval\": {\"required\": false}, \"window\": {\"held_until\": null}},"
	    "\"staging\": {\"status\": \"deploying\", \"started\": "
	    "\"2026-11-26T04:00:01.000Z\", \"approval\": {\"required\": true, "
	    "\"decision\": \"approved\", \"by\": \"alice\", \"reason\": \"QA \\u001b[31mok\"},"
	    " \"window\": {\"held_until\": \"2026-11-26T04:00:00.000Z\"}},"
	    "\"production\": {\"status\": \"pending\", \"approval\": {\"required\": true}}}}");
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_run(out.f, run), 0);
	capture_close(&out);
	/* The reason's escape character is dropped, as in every cell. */
	assert_non_null(strstr(out.buf,
			       "\n\nENVIRONMENT  STATUS     STARTED              DURATION  "
			       "APPROVAL                      HELD UNTIL\n"
			       "development  deployed   2026-11-26 03:00:00  2s        "
			       "-                             -\n"
			       "staging      deploying  2026-11-26 04:00:01  -         "
			       "approved by alice: QA [31mok  2026-11-26 04:00:00\n"
			       "production   pending    -                    -         "
			       "required                      -\n"));
	capture_free(&out);
	json_decref(run);
}

static void run_without_fields_prints_dashes_and_no_stage_table(void **state)
{
	json_t *run = parse("{\"stages\": []}");
	json_t *not_run = parse("[1]");
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_run(out.f, run), 0);
	assert_int_equal(ctl_render_run(out.f, not_run), -1);
	capture_close(&out);
	assert_string_equal(out.buf, "Run:        -\n"
				     "Pipeline:   -\n"
				     "Repository: -\n"
				     "Event:      -\n"
				     "Ref:        -\n"
				     "Sha:        -\n"
				     "Status:     -\n"
				     "Created:    -\n"
				     "Finished:   -\n"
				     "Duration:   -\n");
	capture_free(&out);
	json_decref(run);
	json_decref(not_run);
}

static void log_line_prints_text_and_json_one_line_each(void **state)
{
	json_t *line = parse("{\"id\": \"1-0\", \"stream\": \"stderr\", \"line\": \"oops\\tbad\"}");
	json_t *empty = parse("{\"id\": \"2-0\"}");
	struct capture out;

	(void)state;
	capture_open(&out);
	assert_int_equal(ctl_render_log_line(out.f, line), 0);
	assert_int_equal(ctl_render_log_line(out.f, empty), 0);
	assert_int_equal(ctl_render_json(out.f, line, 1), 0);
	capture_close(&out);
	assert_string_equal(out.buf,
			    "oops\tbad\n\n"
			    "{\"id\":\"1-0\",\"stream\":\"stderr\",\"line\":\"oops\\tbad\"}\n");
	capture_free(&out);
	json_decref(line);
	json_decref(empty);
}

/* --- args ---------------------------------------------------------------- */

#define ARGV(...) ((char *[]){"sluicectl", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof(ARGV(__VA_ARGS__)) / sizeof(char *)) - 1)
#define PARSE(a, err, ...)                                                                         \
	ctl_args_parse((a), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), err, sizeof(err))

static void args_accept_options_before_and_after_the_command(void **state)
{
	struct ctl_args a;
	char err[256] = "";

	(void)state;
	assert_int_equal(PARSE(&a, err, "--url", "http://h:1", "runs", "--limit", "5",
			       "--pipeline=app", "--status", "failed", "--json"),
			 0);
	assert_int_equal(a.cmd, CTL_CMD_RUNS);
	assert_string_equal(a.url, "http://h:1");
	assert_int_equal(a.limit, 5);
	assert_string_equal(a.pipeline, "app");
	assert_string_equal(a.status, "failed");
	assert_true(a.json);

	assert_int_equal(PARSE(&a, err, "runs", "--after", "r_1"), 0);
	assert_string_equal(a.after, "r_1");
	assert_null(a.before);

	assert_int_equal(PARSE(&a, err, "logs", "--json", "r_1", "--url=http://x", "build"), 0);
	assert_int_equal(a.cmd, CTL_CMD_LOGS);
	assert_string_equal(a.run, "r_1");
	assert_string_equal(a.stage, "build");
	assert_string_equal(a.url, "http://x");

	assert_int_equal(PARSE(&a, err, "show", "--", "--weird-id"), 0);
	assert_string_equal(a.run, "--weird-id");

	assert_int_equal(PARSE(&a, err, "help", "logs"), 0);
	assert_int_equal(a.cmd, CTL_CMD_HELP);
	assert_string_equal(a.topic, "logs");

	assert_int_equal(PARSE(&a, err, "show", "--help"), 0);
	assert_true(a.help);
	assert_int_equal(a.cmd, CTL_CMD_SHOW);
}

static void args_report_usage_errors(void **state)
{
	static const struct {
		char *argv[7];
		const char *message;
	} cases[] = {
	    {{"sluicectl", NULL}, "missing command"},
	    {{"sluicectl", "status", NULL}, "unknown command 'status'"},
	    {{"sluicectl", "runs", "--verbose", NULL}, "unknown option '--verbose'"},
	    {{"sluicectl", "show", NULL}, "show: missing RUN"},
	    {{"sluicectl", "logs", "r_1", NULL}, "logs: missing STAGE"},
	    {{"sluicectl", "runs", "r_1", NULL}, "runs: unexpected argument 'r_1'"},
	    {{"sluicectl", "show", "", NULL}, "RUN must not be empty"},
	    {{"sluicectl", "runs", "--limit", "0", NULL},
	     "--limit wants a positive number, not '0'"},
	    {{"sluicectl", "runs", "--limit", "5x", NULL},
	     "--limit wants a positive number, not '5x'"},
	    {{"sluicectl", "runs", "--limit", NULL}, "option --limit needs a value"},
	    {{"sluicectl", "runs", "--url=", NULL}, "option --url needs a non-empty value"},
	    {{"sluicectl", "runs", "--json=yes", NULL}, "option --json takes no value"},
	    {{"sluicectl", "show", "r_1", "--status", "failed", NULL},
	     "--limit, --pipeline, --status, --before and --after apply to runs only"},
	    {{"sluicectl", "show", "r_1", "--after", "r_2", NULL},
	     "--limit, --pipeline, --status, --before and --after apply to runs only"},
	    {{"sluicectl", "runs", "--before", "r_1", "--after", "r_2", NULL},
	     "runs: --before or --after, not both"},
	    {{"sluicectl", "validate", "app.yaml", "--json", NULL},
	     "validate has no --json output"},
	    {{"sluicectl", "--json", "token", "hash", "ci", "read", NULL},
	     "token has no --json output"},
	    {{"sluicectl", "help", "runs", "show", NULL}, "help: unexpected argument 'show'"},
	    /* Latin-1, which no JSON body can carry. */
	    {{"sluicectl", "approve", "r_1", "staging", "--reason=caf\xe9", NULL},
	     "option --reason: the value is not UTF-8 text"},
	    {{"sluicectl", "promote", "r_1", "staging", "--by=j\xf6rg", NULL},
	     "option --by: the value is not UTF-8 text"},
	    {{"sluicectl", "trigger", "app", "--ref", "f\xfcr", NULL},
	     "option --ref: the value is not UTF-8 text"},
	};
	struct ctl_args a;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int argc = 0;
		while (cases[i].argv[argc])
			argc++;
		err[0] = '\0';
		assert_int_equal(ctl_args_parse(&a, argc, (char **)cases[i].argv, err, sizeof(err)),
				 -1);
		assert_string_equal(err, cases[i].message);
	}
}

static void args_approve_and_reject_need_a_run_an_environment_and_a_reason(void **state)
{
	struct ctl_args a;
	char err[256] = "";

	(void)state;
	assert_int_equal(
	    PARSE(&a, err, "approve", "r_1", "staging", "--reason", "QA ok", "--by", "alice"), 0);
	assert_int_equal(a.cmd, CTL_CMD_APPROVE);
	assert_string_equal(a.run, "r_1");
	assert_string_equal(a.env, "staging");
	assert_string_equal(a.reason, "QA ok");
	assert_string_equal(a.by, "alice");
	assert_int_equal(PARSE(&a, err, "reject", "--reason=freeze", "r_2", "production"), 0);
	assert_int_equal(a.cmd, CTL_CMD_REJECT);
	assert_null(a.by);

	assert_int_equal(PARSE(&a, err, "approve", "r_1", "staging"), -1);
	assert_string_equal(err,
			    "approve: missing --reason TEXT (it is recorded with the decision)");
	assert_int_equal(PARSE(&a, err, "reject", "r_1", "--reason", "x"), -1);
	assert_string_equal(err, "reject: missing ENV");
	assert_int_equal(PARSE(&a, err, "show", "r_1", "--reason", "x"), -1);
	assert_string_equal(err, "--reason and --by apply to approve, reject, promote, abort, "
				 "retry and rollback only");
}

static void args_url_prefers_option_then_environment(void **state)
{
	struct ctl_args a;
	char err[64];

	(void)state;
	unsetenv("SLUICE_URL");
	assert_int_equal(PARSE(&a, err, "runs"), 0);
	assert_string_equal(ctl_args_url(&a), CTL_DEFAULT_URL);
	setenv("SLUICE_URL", "", 1);
	assert_string_equal(ctl_args_url(&a), CTL_DEFAULT_URL);
	setenv("SLUICE_URL", "http://env:9", 1);
	assert_string_equal(ctl_args_url(&a), "http://env:9");
	assert_int_equal(PARSE(&a, err, "runs", "--url", "http://opt:1"), 0);
	assert_string_equal(ctl_args_url(&a), "http://opt:1");
	unsetenv("SLUICE_URL");
}

static void args_token_file_that_is_a_directory_says_so(void **state)
{
	struct ctl_args a;
	char err[256] = "", token[64];

	(void)state;
	assert_int_equal(PARSE(&a, err, "runs", "--token-file", "/"), 0);
	assert_int_equal(ctl_args_token(&a, token, sizeof(token), err, sizeof(err)), -1);
	assert_string_equal(err, "cannot read the token file /: Is a directory");
	assert_string_equal(token, "");
}

/* A token copied with a blank before it, or kept with the newline of the
 * file or secret it came from, is the token; words apart are none. */
static void args_token_is_the_word_between_blanks_and_line_breaks(void **state)
{
	static const char *const around[] = {"slc_1",	"  slc_1",   "\tslc_1 ",
					     "slc_1\n", "slc_1\r\n", " slc_1\t\r\n"};
	struct ctl_args a;
	char dir[64], path[96], err[256] = "", token[64];

	(void)state;
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "sluice-test-token"), 0);
	snprintf(path, sizeof(path), "%s/token", dir);
	for (size_t i = 0; i < sizeof(around) / sizeof(around[0]); i++) {
		assert_int_equal(PARSE(&a, err, "runs"), 0);
		setenv("SLUICE_TOKEN", around[i], 1);
		assert_int_equal(ctl_args_token(&a, token, sizeof(token), err, sizeof(err)), 0);
		assert_string_equal(token, "slc_1");
		assert_int_equal(tmpdir_write(path, around[i]), 0);
		assert_int_equal(PARSE(&a, err, "runs", "--token-file", path), 0);
		assert_int_equal(ctl_args_token(&a, token, sizeof(token), err, sizeof(err)), 0);
		assert_string_equal(token, "slc_1");
	}
	assert_int_equal(PARSE(&a, err, "runs"), 0);
	setenv("SLUICE_TOKEN", "slc_1\nX-Other: 1", 1);
	assert_int_equal(ctl_args_token(&a, token, sizeof(token), err, sizeof(err)), -1);
	assert_string_equal(
	    err, "SLUICE_TOKEN is not a token: blank, or with a space or line break inside");
	setenv("SLUICE_TOKEN", " \n", 1);
	assert_int_equal(ctl_args_token(&a, token, sizeof(token), err, sizeof(err)), -1);
	unsetenv("SLUICE_TOKEN");
	assert_int_equal(tmpdir_write(path, "slc_1 slc_2\n"), 0);
	assert_int_equal(PARSE(&a, err, "runs", "--token-file", path), 0);
	assert_int_equal(ctl_args_token(&a, token, sizeof(token), err, sizeof(err)), -1);
	assert_string_equal(token, "");
	tmpdir_remove(dir);
}

/* --- the command line against a canned server ---------------------------- */

struct route {
	const char *target;
	int status;
	const char *body; /* of a redirect (3xx): its Location, with no body */
};

static const char log_page1[] = "{\"lines\": ["
				"{\"id\": \"1-0\", \"time\": \"2026-11-26T03:41:08Z\", \"stream\": "
				"\"stdout\", \"line\": \"building abc\"},"
				"{\"id\": \"2-0\", \"time\": \"2026-11-26T03:41:09Z\", \"stream\": "
				"\"stderr\", \"line\": \"warning: x\"}], \"next\": \"2-0\"}";
static const char log_page2[] = "{\"lines\": [{\"id\": \"3-0\", \"time\": "
				"\"2026-11-26T03:41:10Z\", \"stream\": \"system\", \"line\": "
				"\"exit 0\"}], \"next\": \"3-0\"}";

static const struct route routes[] = {
    {"/api/v1/runs", 200, runs_body},
    {"/api/v1/runs?limit=5&pipeline=my%20app&status=failed", 200, "{\"runs\": []}"},
    {"/api/v1/runs/r_1", 200, run_body},
    {"/api/v1/runs/r_x", 404,
     "{\"error\": {\"code\": \"not_found\", \"message\": \"run r_x not found\"}}"},
    {"/api/v1/runs/r_evil", 404, "{\"error\": {\"message\": \"run r_\\u001b[2Jevil not found\"}}"},
    {"/api/v1/runs/r_500", 500, "<html>oops</html>"},
    {"/api/v1/runs/r_text", 200, "not json"},
    {"/api/v1/runs/r_moved", 301, "https://ci.example.com/api/v1/runs/r_moved"},
    {"/api/v1/runs/r_1/stages/build/log", 200, log_page1},
    {"/api/v1/runs/r_1/stages/build/log?after=2-0", 200, log_page2},
    {"/api/v1/runs/r_1/stages/build/log?after=3-0", 200, "{\"lines\": [], \"next\": \"3-0\"}"},
    {"/api/v1/runs/r_1/stages/stuck/log", 200, log_page1},
    {"/api/v1/runs/r_1/stages/stuck/log?after=2-0", 200, log_page1},
};

#define MAX_REQUESTS 16

struct server {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	char *requests[MAX_REQUESTS];
	int nrequests;
};

static const struct route *find_route(const char *target)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(routes[i].target, target) == 0)
			return &routes[i];
	}
	return NULL;
}

static void serve_one(struct server *s, int c)
{
	char req[4096];
	size_t len = 0;
	char target[1024] = "";
	const struct route *r;
	char *resp = NULL;
	int n;

	while (len < sizeof(req) - 1) {
		ssize_t got = read(c, req + len, sizeof(req) - 1 - len);
		if (got <= 0)
			return;
		len += (size_t)got;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (sscanf(req, "GET %1023s HTTP/1.1", target) != 1)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->nrequests < MAX_REQUESTS)
		s->requests[s->nrequests++] = strdup(target);
	pthread_mutex_unlock(&s->lock);
	r = find_route(target);
	if (r && r->status / 100 == 3)
		n = asprintf(&resp,
			     "HTTP/1.1 %d X\r\nLocation: %s\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n",
			     r->status, r->body);
	else
		n = asprintf(&resp,
			     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			     r ? r->status : 404,
			     strlen(r ? r->body : "{\"error\": {\"message\": \"no route\"}}"),
			     r ? r->body : "{\"error\": {\"message\": \"no route\"}}");
	if (n > 0 && write(c, resp, (size_t)n) != n)
		fprintf(stderr, "short write to client\n");
	free(resp);
}

static void *serve(void *arg)
{
	struct server *s = arg;

	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		serve_one(s, c);
		close(c);
	}
}

/* A socket bound to a free loopback port; listening only if asked. */
static int loopback_socket(int listening, int *port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	if (listening)
		assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
	*port = ntohs(addr.sin_port);
	return fd;
}

static int server_setup(void **state)
{
	struct server *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	/* Requests must reach the loopback server, never a proxy. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	s->fd = loopback_socket(1, &s->port);
	pthread_mutex_init(&s->lock, NULL);
	if (pthread_create(&s->thread, NULL, serve, s) != 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	*state = s;
	return 0;
}

static int server_teardown(void **state)
{
	struct server *s = *state;

	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
	for (int i = 0; i < s->nrequests; i++)
		free(s->requests[i]);
	pthread_mutex_destroy(&s->lock);
	free(s);
	curl_global_cleanup();
	return 0;
}

static void server_forget(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->nrequests; i++)
		free(s->requests[i]);
	s->nrequests = 0;
	pthread_mutex_unlock(&s->lock);
}

/* Runs sluicectl with --url pointing at the server (when port > 0) and the
 * NULL-terminated args; returns its exit status. */
static int run_cli(int port, struct capture *out, struct capture *err, char **args)
{
	char url[64];
	char *argv[16] = {"sluicectl"};
	int argc = 1;
	int rc;

	snprintf(url, sizeof(url), "--url=http://127.0.0.1:%d", port);
	if (port > 0)
		argv[argc++] = url;
	for (; *args; args++)
		argv[argc++] = *args;
	capture_open(out);
	capture_open(err);
	rc = ctl_cli_main(argc, argv, out->f, err->f);
	capture_close(out);
	capture_close(err);
	return rc;
}

#define RUN_CLI(port, out, err, ...) run_cli((port), (out), (err), (char *[]){__VA_ARGS__, NULL})

static void cli_runs_prints_the_table(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	assert_int_equal(RUN_CLI(s->port, &out, &err, "runs"), 0);
	assert_string_equal(out.buf, runs_table);
	assert_string_equal(err.buf, "");
	capture_free(&out);
	capture_free(&err);
}

static void cli_runs_sends_filters_escaped(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	server_forget(s);
	assert_int_equal(RUN_CLI(s->port, &out, &err, "--status", "failed", "runs", "--limit", "5",
				 "--pipeline", "my app"),
			 0);
	assert_int_equal(s->nrequests, 1);
	assert_string_equal(s->requests[0], "/api/v1/runs?limit=5&pipeline=my%20app&status=failed");
	capture_free(&out);
	capture_free(&err);
}

static void cli_show_json_is_the_response_indented(void **state)
{
	struct server *s = *state;
	struct capture out, err;
	json_t *want = parse(run_body);
	char *text = json_dumps(want, JSON_INDENT(2));

	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_1", "--json"), 0);
	assert_non_null(strstr(out.buf, "\n  \"id\": \"r_1\",\n"));
	assert_int_equal(strlen(out.buf), strlen(text) + 1);
	assert_memory_equal(out.buf, text, strlen(text));
	free(text);
	json_decref(want);
	capture_free(&out);
	capture_free(&err);
}

static void cli_show_prints_the_run(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_1"), 0);
	assert_string_equal(out.buf, run_text);
	capture_free(&out);
	capture_free(&err);
}

static void cli_unknown_run_fails_with_the_api_message(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_x"), 1);
	assert_string_equal(out.buf, "");
	assert_string_equal(err.buf, "sluicectl: run r_x not found\n");
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_evil"), 1);
	assert_string_equal(err.buf, "sluicectl: run r_[2Jevil not found\n");
	capture_free(&out);
	capture_free(&err);
}

static void cli_error_without_json_names_the_status(void **state)
{
	struct server *s = *state;
	struct capture out, err;
	char want[256];

	snprintf(want, sizeof(want), "sluicectl: http://127.0.0.1:%d answered HTTP 500\n", s->port);
	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_500"), 1);
	assert_string_equal(err.buf, want);
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_text"), 1);
	assert_non_null(strstr(err.buf, "sent a response that is not JSON"));
	capture_free(&out);
	capture_free(&err);

	/* A redirect names where to, not followed. */
	snprintf(want, sizeof(want),
		 "sluicectl: http://127.0.0.1:%d answered HTTP 301, a redirect to "
		 "https://ci.example.com/api/v1/runs/r_moved (not followed: give --url or "
		 "$SLUICE_URL the agent's own address)\n",
		 s->port);
	assert_int_equal(RUN_CLI(s->port, &out, &err, "show", "r_moved"), 1);
	assert_string_equal(err.buf, want);
	capture_free(&out);
	capture_free(&err);
}

static void cli_logs_pages_until_an_empty_page(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	server_forget(s);
	assert_int_equal(RUN_CLI(s->port, &out, &err, "logs", "r_1", "build"), 0);
	assert_string_equal(out.buf, "building abc\nwarning: x\nexit 0\n");
	assert_int_equal(s->nrequests, 3);
	assert_string_equal(s->requests[0], "/api/v1/runs/r_1/stages/build/log");
	assert_string_equal(s->requests[1], "/api/v1/runs/r_1/stages/build/log?after=2-0");
	assert_string_equal(s->requests[2], "/api/v1/runs/r_1/stages/build/log?after=3-0");
	capture_free(&out);
	capture_free(&err);
}

static void cli_logs_json_prints_json_lines(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	assert_int_equal(RUN_CLI(s->port, &out, &err, "--json", "logs", "r_1", "build"), 0);
	assert_string_equal(
	    out.buf, "{\"id\":\"1-0\",\"time\":\"2026-11-26T03:41:08Z\",\"stream\":\"stdout\","
		     "\"line\":\"building abc\"}\n"
		     "{\"id\":\"2-0\",\"time\":\"2026-11-26T03:41:09Z\",\"stream\":\"stderr\","
		     "\"line\":\"warning: x\"}\n"
		     "{\"id\":\"3-0\",\"time\":\"2026-11-26T03:41:10Z\",\"stream\":\"system\","
		     "\"line\":\"exit 0\"}\n");
	capture_free(&out);
	capture_free(&err);
}

static void cli_logs_stop_when_the_cursor_does_not_move(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	server_forget(s);
	assert_int_equal(RUN_CLI(s->port, &out, &err, "logs", "r_1", "stuck"), 0);
	assert_int_equal(s->nrequests, 2);
	assert_string_equal(out.buf, "building abc\nwarning: x\nbuilding abc\nwarning: x\n");
	capture_free(&out);
	capture_free(&err);
}

static void cli_logs_of_unknown_stage_fail(void **state)
{
	struct server *s = *state;
	struct capture out, err;

	assert_int_equal(RUN_CLI(s->port, &out, &err, "logs", "r_1", "nope"), 1);
	assert_string_equal(err.buf, "sluicectl: no route\n");
	capture_free(&out);
	capture_free(&err);
}

static void cli_refused_connection_names_the_url(void **state)
{
	struct capture out, err;
	char want[128];
	int port;
	int fd = loopback_socket(0, &port);

	(void)state;
	snprintf(want, sizeof(want),
		 "sluicectl: cannot reach http://127.0.0.1:%d: Connection refused\n", port);
	assert_int_equal(RUN_CLI(port, &out, &err, "runs"), 1);
	assert_string_equal(out.buf, "");
	assert_string_equal(err.buf, want);
	close(fd);
	capture_free(&out);
	capture_free(&err);
}

static void cli_usage_errors_exit_2_with_usage_on_stderr(void **state)
{
	struct capture out, err;

	(void)state;
	assert_int_equal(RUN_CLI(0, &out, &err, "frobnicate"), 2);
	assert_string_equal(out.buf, "");
	assert_non_null(strstr(err.buf, "sluicectl: unknown command 'frobnicate'\nusage: "));
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(0, &out, &err, "help", "frobnicate"), 2);
	assert_non_null(strstr(err.buf, "usage: "));
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(0, &out, &err, "logs", "r_1"), 2);
	assert_non_null(strstr(err.buf, "sluicectl: logs: missing STAGE\n"));
	capture_free(&out);
	capture_free(&err);
}

/* --by is the caller's word on an open API only: each command's help
 * says so. */
static void cli_help_of_each_command_with_by_names_the_token(void **state)
{
	static const char *const commands[] = {"approve", "reject", "promote",
					       "abort",	  "retry",  "rollback"};
	struct capture out, err;

	(void)state;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		assert_int_equal(RUN_CLI(0, &out, &err, "help", (char *)commands[i]), 0);
		assert_non_null(strstr(out.buf, "--by NAME"));
		assert_non_null(strstr(out.buf, "the token's name"));
		capture_free(&out);
		capture_free(&err);
	}
}

static void cli_help_and_version_go_to_stdout(void **state)
{
	struct capture out, err;

	(void)state;
	assert_int_equal(RUN_CLI(0, &out, &err, "--version"), 0);
	assert_string_equal(out.buf, "sluicectl " CTL_VERSION "\n");
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(0, &out, &err, "--help"), 0);
	assert_non_null(strstr(out.buf, "Commands:"));
	assert_string_equal(err.buf, "");
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(0, &out, &err, "runs", "--help"), 0);
	assert_non_null(strstr(out.buf, "usage: sluicectl runs "));
	/* Runs waiting for an approval are found by their status too. */
	assert_non_null(strstr(out.buf, "queued, running, waiting,"));
	assert_non_null(strstr(out.buf, "rejected, superseded,"));
	capture_free(&out);
	capture_free(&err);

	assert_int_equal(RUN_CLI(0, &out, &err, "help", "show"), 0);
	assert_non_null(strstr(out.buf, "usage: sluicectl show RUN"));
	capture_free(&out);
	capture_free(&err);
}

/* --- runs paging, plan, event streams, tokens ------------------------------ */

/* A page's cursors follow its table, newer first: "prev" is what --after
 * takes, "next" what --before takes. */
static void runs_table_ends_with_the_newer_and_older_pages_there_are(void **state)
{
	json_t *body = parse("{\"runs\": [{\"id\": \"r_2\", \"pipeline\": \"app\", "
			     "\"ref\": \"refs/heads/main\", \"sha\": \"0123456789abcdef\", "
			     "\"status\": \"running\", \"created\": \"2026-11-26T03:41:07Z\", "
			     "\"finished\": null}], \"next\": \"r_2\"}");
	json_t *middle = parse("{\"runs\": [], \"next\": \"r_1\", \"prev\": \"r_3\"}");
	json_t *newest = parse("{\"runs\": [], \"next\": null, \"prev\": null}");
	struct capture out;
	(void)state;

	capture_open(&out);
	assert_int_equal(ctl_render_runs(out.f, body), 0);
	assert_int_equal(ctl_render_runs(out.f, middle), 0);
	assert_int_equal(ctl_render_runs(out.f, newest), 0);
	capture_close(&out);
	assert_string_equal(out.buf,
			    "RUN  PIPELINE  REF   SHA      STATUS   CREATED              DURATION\n"
			    "r_2  app       main  0123456  running  2026-11-26 03:41:07  -\n"
			    "more: --before r_2\n"
			    "RUN  PIPELINE  REF  SHA  STATUS  CREATED  DURATION\n"
			    "newer: --after r_3\n"
			    "more: --before r_1\n"
			    "RUN  PIPELINE  REF  SHA  STATUS  CREATED  DURATION\n");
	capture_free(&out);
	json_decref(newest);
	json_decref(middle);
	json_decref(body);
}

static const char plan_def[] =
    "{\"name\": \"app\", \"stages\": {"
    "\"build\": {\"kind\": \"build\", \"run\": [\"make\"], \"needs\": []},"
    "\"unit\": {\"kind\": \"test\", \"run\": [\"t\"], \"needs\": [\"build\"]},"
    "\"docs\": {\"kind\": \"build\", \"sh\": \"d\", \"needs\": [\"build\"],"
    " \"when\": {\"branches\": [\"main\"], \"events\": [\"push\"]}},"
    "\"push\": {\"kind\": \"push\", \"run\": [\"p\"], \"needs\": [\"unit\", \"docs\"]},"
    "\"deploy@dev\": {\"kind\": \"deploy\", \"sh\": \"x\", \"needs\": [], \"env\": \"dev\"},"
    "\"deploy@prod\": {\"kind\": \"deploy\", \"http\": {}, \"needs\": [], \"env\": \"prod\"}},"
    "\"environments\": {\"dev\": {\"after\": null, \"approval\": {\"required\": false}},"
    "\"prod\": {\"after\": \"dev\", \"approval\": {\"required\": true, \"expires_s\": 86400},"
    " \"windows\": [{\"spec\": \"Sun 03:00-04:00 UTC\"}]}}}";

static void plan_groups_stages_in_steps_and_lists_the_chain_with_gates(void **state)
{
	json_t *def = parse(plan_def);
	json_t *plan = ctl_plan_build(def);
	struct capture out;
	(void)state;

	assert_non_null(plan);
	capture_open(&out);
	assert_int_equal(ctl_plan_render(out.f, plan), 0);
	capture_close(&out);
	assert_string_equal(
	    out.buf,
	    "pipeline app: 4 stages in 3 steps, 2 environments\n"
	    "\n"
	    "STEP  STAGE  KIND   NEEDS       WHEN\n"
	    "1     build  build  -           -\n"
	    "2     unit   test   build       -\n"
	    "      docs   build  build       events push; branches main\n"
	    "3     push   push   unit, docs  -\n"
	    "\n"
	    "ENVIRONMENT  AFTER  GATES                                             DEPLOY\n"
	    "dev          -      -                                                 sh\n"
	    "prod         dev    deny Sun 03:00-04:00 UTC; approval (expires 24h)  http\n");
	capture_free(&out);
	assert_int_equal(json_array_size(json_object_get(plan, "steps")), 3);
	json_t *second = json_array_get(json_object_get(plan, "steps"), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(second, 1), "stage")),
			    "docs");
	json_decref(plan);
	json_decref(def);
}

/* The DEPLOY column of each environment of a pipeline whose deploy@ENV
 * stages have the rollouts given, in that order. */
static void plan_strategies(const char *const *rollouts, size_t n, const char *const *expected)
{
	json_t *def = parse("{\"name\": \"app\", \"stages\": {}, \"environments\": {}}");
	char env[24];
	for (size_t i = 0; i < n; i++) {
		snprintf(env, sizeof(env), "e%zu", i);
		json_object_set_new(json_object_get(def, "environments"), env,
				    json_pack("{s:n}", "after"));
		json_t *stage = json_pack("{s:s, s:o}", "env", env, "rollout", parse(rollouts[i]));
		char name[32];
		snprintf(name, sizeof(name), "deploy@%s", env);
		json_object_set_new(json_object_get(def, "stages"), name, stage);
	}
	json_t *plan = ctl_plan_build(def);
	assert_non_null(plan);
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(json_object_get(plan, "environments"), i);
		assert_string_equal(json_string_value(json_object_get(e, "strategy")), expected[i]);
	}
	json_decref(plan);
	json_decref(def);
}

static void plan_says_when_a_blue_green_deployment_promotes_itself(void **state)
{
	static const char *const rollouts[] = {
	    "{\"strategy\": {\"type\": \"BlueGreen\", \"auto_promote\": false,"
	    " \"auto_promote_after_ms\": 0}, \"provider\": {\"type\": \"exec\"}}",
	    "{\"strategy\": {\"type\": \"BlueGreen\", \"auto_promote\": true,"
	    " \"auto_promote_after_ms\": 0}, \"provider\": {\"type\": \"exec\"}}",
	    "{\"strategy\": {\"type\": \"BlueGreen\", \"auto_promote\": false,"
	    " \"auto_promote_after_ms\": 300000}, \"provider\": {\"type\": \"exec\"}}"};
	static const char *const expected[] = {"BlueGreen (waits for promote) via exec",
					       "BlueGreen (promotes itself) via exec",
					       "BlueGreen (promotes itself after 5m) via exec"};
	(void)state;
	plan_strategies(rollouts, 3, expected);
}

static void plan_shows_a_canary_pause_as_long_as_it_is(void **state)
{
	static const char *const rollouts[] = {
	    "{\"strategy\": {\"type\": \"Canary\", \"steps\": [{\"set_weight\": 20},"
	    " {\"pause_ms\": 500}, {\"pause_ms\": 1500}, {\"pause_ms\": 5400000},"
	    " {\"pause\": \"manual\"}]}, \"provider\": {\"type\": \"exec\"}}"};
	static const char *const expected[] = {
	    "Canary (setWeight 20, pause 500ms, pause 1500ms, pause 90m, pause until promoted) "
	    "via exec"};
	(void)state;
	plan_strategies(rollouts, 1, expected);
}

struct seen {
	char text[1024];
	int stop_on_end;
};

static int collect(const char *event, const char *id, const char *data, void *arg)
{
	struct seen *s = arg;
	size_t n = strlen(s->text);
	snprintf(s->text + n, sizeof(s->text) - n, "[%s|%s|%s]", event, id, data);
	return s->stop_on_end && strcmp(event, "end") == 0 ? 1 : 0;
}

static void sse_parses_events_split_anywhere(void **state)
{
	static const char stream[] = ": hello\nretry: 1000\n\nid: 1-0\ndata: {\"line\": \"a\"}\n\n"
				     "id: 1-1\r\ndata: x\r\ndata: y\r\n\r\n"
				     "event: end\ndata: {}\n\nid: 9-9\ndata: after\n\n";
	(void)state;
	/* Every split point gives the same events. */
	for (size_t cut = 0; cut < sizeof(stream) - 1; cut++) {
		struct ctl_sse p = {0};
		struct seen s = {.stop_on_end = 1};
		int rc = ctl_sse_feed(&p, stream, cut, collect, &s);
		if (rc == 0)
			rc = ctl_sse_feed(&p, stream + cut, sizeof(stream) - 1 - cut, collect, &s);
		assert_int_equal(rc, 1);
		assert_string_equal(s.text, "[message|1-0|{\"line\": \"a\"}][message|1-1|x\ny]"
					    "[end||{}]");
		assert_string_equal(p.last_id, "1-1");
		ctl_sse_free(&p);
	}
}

/* A server that sends data: lines without ever ending the event is not
 * followed into memory without end. */
static void sse_refuses_an_event_over_16_mib(void **state)
{
	struct ctl_sse p = {0};
	struct seen s = {0};
	char *line = malloc(1024 * 1024);
	(void)state;
	assert_non_null(line);
	memcpy(line, "data: ", 6);
	memset(line + 6, 'x', 1024 * 1024 - 7);
	line[1024 * 1024 - 1] = '\n';
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < 64u * 1024 * 1024) {
		rc = ctl_sse_feed(&p, line, 1024 * 1024, collect, &s);
		fed += 1024 * 1024;
	}
	assert_int_equal(rc, -1);
	assert_true(fed <= 17u * 1024 * 1024);
	assert_true(p.data_len <= 16u * 1024 * 1024);
	assert_string_equal(s.text, "");
	ctl_sse_free(&p);
	free(line);
}

/* Output that cannot be written (a full disk: /dev/full) fails whatever
 * command printed it, with the reason on stderr. */
static void cli_output_cut_short_fails(void **state)
{
	char dir[64], pipeline[128], secret[128];
	char *const cases[][4] = {{"sluicectl", "--version"},
				  {"sluicectl", "help"},
				  {"sluicectl", "help", "runs"},
				  {"sluicectl", "validate", pipeline}};
	(void)state;

	assert_int_equal(tmpdir_make(dir, sizeof(dir), "sluice-test-ctl"), 0);
	snprintf(secret, sizeof(secret), "%s/webhook", dir);
	snprintf(pipeline, sizeof(pipeline), "%s/app.yaml", dir);
	assert_int_equal(tmpdir_write(secret, "s3cret\n"), 0);
	assert_int_equal(tmpdir_write(pipeline, "trigger:\n  github: {repository: acme/app, "
						"secret_file: webhook}\n"
						"stages:\n  build: {run: [make]}\n"),
			 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *full = fopen("/dev/full", "we");
		struct capture err;
		int argc = 0;

		assert_non_null(full);
		while (argc < 4 && cases[i][argc])
			argc++;
		capture_open(&err);
		assert_int_equal(ctl_cli_main(argc, (char **)cases[i], full, err.f), 1);
		capture_close(&err);
		fclose(full);
		assert_non_null(strstr(err.buf, "sluicectl: write error\n"));
		capture_free(&err);
	}
	tmpdir_remove(dir);
}

/* A sluice.yaml given to plan is named for what it is, not failed at its
 * first key as a pipeline's unknown one. */
static void cli_plan_of_settings_says_it_is_no_pipeline(void **state)
{
	struct capture out, err;
	char dir[64], path[128];
	(void)state;

	assert_int_equal(tmpdir_make(dir, sizeof(dir), "sluice-plan"), 0);
	snprintf(path, sizeof(path), "%s/sluice.yaml", dir);
	assert_int_equal(tmpdir_write(path, "kafka: {brokers: \"127.0.0.1:9092\"}\n"), 0);
	assert_int_equal(RUN_CLI(0, &out, &err, "plan", path), 1);
	assert_non_null(strstr(err.buf, "sluice.yaml: not a pipeline file"));
	capture_free(&out);
	capture_free(&err);
	tmpdir_remove(dir);
}

static void cli_plan_and_token_exit_statuses(void **state)
{
	struct capture out, err;
	(void)state;

	assert_int_equal(RUN_CLI(0, &out, &err, "plan"), 2);
	assert_non_null(strstr(err.buf, "plan: missing FILE"));
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "plan", "/nonexistent/app.yaml"), 1);
	assert_non_null(strstr(err.buf, "/nonexistent/app.yaml"));
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "token", "hash", "ci"), 2);
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "token", "hash", "ci", "root"), 2);
	assert_non_null(strstr(err.buf, "read, approve or admin"));
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "logs", "r_1", "build", "-f", "--before", "x"), 2);
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "show", "r_1", "-f"), 2);
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "plan", "--help"), 0);
	assert_non_null(strstr(out.buf, "usage: sluicectl plan FILE"));
	capture_free(&out);
	capture_free(&err);
	assert_int_equal(RUN_CLI(0, &out, &err, "token", "--help"), 0);
	assert_non_null(strstr(out.buf, "usage: sluicectl token hash NAME ROLE"));
	capture_free(&out);
	capture_free(&err);
}

static void cli_token_hash_prints_the_line_and_the_token_apart(void **state)
{
	struct capture out, err;
	char token[128], name[64], role[16], hex[80];
	(void)state;

	assert_int_equal(RUN_CLI(0, &out, &err, "token", "hash", "ci-bot", "approve"), 0);
	assert_int_equal(sscanf(out.buf, "%63s %15s %79s", name, role, hex), 3);
	assert_string_equal(name, "ci-bot");
	assert_string_equal(role, "approve");
	const char *nl = strchr(err.buf, '\n');
	assert_non_null(nl);
	assert_int_equal(sscanf(nl + 1, "%127s", token), 1);
	assert_int_equal(strncmp(token, "slc_", 4), 0);
	assert_null(strstr(out.buf, token));
	struct tokens t;
	char msg[256];
	assert_int_equal(tokens_parse(out.buf, strlen(out.buf), "out", &t, msg, sizeof(msg)), 0);
	const struct tokens_entry *e = tokens_find(&t, token);
	assert_non_null(e);
	assert_int_equal(e->role, TOKENS_APPROVE);
	tokens_clear(&t);
	capture_free(&out);
	capture_free(&err);
}

int main(void)
{
	const struct CMUnitTest offline[] = {
	    cmocka_unit_test(duration_uses_compact_units),
	    cmocka_unit_test(runs_table_ends_with_the_newer_and_older_pages_there_are),
	    cmocka_unit_test(plan_groups_stages_in_steps_and_lists_the_chain_with_gates),
	    cmocka_unit_test(plan_says_when_a_blue_green_deployment_promotes_itself),
	    cmocka_unit_test(plan_shows_a_canary_pause_as_long_as_it_is),
	    cmocka_unit_test(sse_parses_events_split_anywhere),
	    cmocka_unit_test(sse_refuses_an_event_over_16_mib),
	    cmocka_unit_test(cli_plan_and_token_exit_statuses),
	    cmocka_unit_test(cli_plan_of_settings_says_it_is_no_pipeline),
	    cmocka_unit_test(cli_output_cut_short_fails),
	    cmocka_unit_test(cli_token_hash_prints_the_line_and_the_token_apart),
	    cmocka_unit_test(time_parses_rfc3339_and_prints_utc),
	    cmocka_unit_test(time_rejects_what_is_not_rfc3339),
	    cmocka_unit_test(sanitize_strips_controls_but_keeps_utf8_and_spaces_a_tab),
	    cmocka_unit_test(log_text_keeps_colours_and_drops_other_sequences),
	    cmocka_unit_test(runs_table_matches_golden_output),
	    cmocka_unit_test(runs_table_aligns_wide_characters_and_tabs),
	    cmocka_unit_test(runs_table_of_no_runs_is_the_header),
	    cmocka_unit_test(runs_render_refuses_a_body_without_a_runs_array),
	    cmocka_unit_test(run_with_stages_matches_golden_output),
	    cmocka_unit_test(run_environments_table_shows_approvals_and_windows),
	    cmocka_unit_test(args_approve_and_reject_need_a_run_an_environment_and_a_reason),
	    cmocka_unit_test(run_without_fields_prints_dashes_and_no_stage_table),
	    cmocka_unit_test(log_line_prints_text_and_json_one_line_each),
	    cmocka_unit_test(args_accept_options_before_and_after_the_command),
	    cmocka_unit_test(args_report_usage_errors),
	    cmocka_unit_test(args_url_prefers_option_then_environment),
	    cmocka_unit_test(args_token_file_that_is_a_directory_says_so),
	    cmocka_unit_test(args_token_is_the_word_between_blanks_and_line_breaks),
	    cmocka_unit_test(cli_usage_errors_exit_2_with_usage_on_stderr),
	    cmocka_unit_test(cli_help_and_version_go_to_stdout),
	    cmocka_unit_test(cli_help_of_each_command_with_by_names_the_token),
	};
	const struct CMUnitTest online[] = {
	    cmocka_unit_test(cli_runs_prints_the_table),
	    cmocka_unit_test(cli_runs_sends_filters_escaped),
	    cmocka_unit_test(cli_show_prints_the_run),
	    cmocka_unit_test(cli_show_json_is_the_response_indented),
	    cmocka_unit_test(cli_unknown_run_fails_with_the_api_message),
	    cmocka_unit_test(cli_error_without_json_names_the_status),
	    cmocka_unit_test(cli_logs_pages_until_an_empty_page),
	    cmocka_unit_test(cli_logs_json_prints_json_lines),
	    cmocka_unit_test(cli_logs_stop_when_the_cursor_does_not_move),
	    cmocka_unit_test(cli_logs_of_unknown_stage_fail),
	    cmocka_unit_test(cli_refused_connection_names_the_url),
	};
	int failed = cmocka_run_group_tests_name("ctl_offline", offline, NULL, NULL);

	failed += cmocka_run_group_tests_name("ctl_online", online, server_setup, server_teardown);
	return failed ? 1 : 0;
}
