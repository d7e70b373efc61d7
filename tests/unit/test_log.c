/* logfmt lines on stderr: escaping, levels, and journald priority prefixes. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/log.h"
#include "tests/unit/logcapture.h"

/* Points stderr at a temporary file for the test's lines. */
static int setup(void **state)
{
	static struct logcapture c;
	if (logcapture_start(&c) < 0)
		return -1;
	unsetenv("JOURNAL_STREAM");
	log_set_level("debug");
	*state = &c;
	return 0;
}

static int teardown(void **state)
{
	logcapture_stop(*state);
	unsetenv("JOURNAL_STREAM");
	log_set_level("info");
	return 0;
}

/* JOURNAL_STREAM naming the stream stderr is connected to now. */
static void connect_journal(const char *value)
{
	char buf[64];
	struct stat st;
	if (!value) {
		assert_int_equal(fstat(STDERR_FILENO, &st), 0);
		snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
		value = buf;
	}
	setenv("JOURNAL_STREAM", value, 1);
}

static void plain_line_has_timestamp_level_and_quoted_fields(void **state)
{
	struct logcapture *c = *state;
	log_info("stage finished", LOG_S("run", "r_1"), LOG_S("stage", "my build"),
		 LOG_I("exit", 0), LOG_S("empty", ""));
	const char *text = logcapture_text(c);
	assert_int_equal(strncmp(text, "ts=", 3), 0);
	assert_non_null(strstr(text, "Z level=info msg=\"stage finished\" run=r_1 "
				     "stage=\"my build\" exit=0 empty=\"\"\n"));
}

static void values_cannot_forge_lines_or_fields(void **state)
{
	struct logcapture *c = *state;
	log_warn("x", LOG_S("branch", "main\nlevel=error msg=forged"), LOG_S("q", "a\"b\\c"),
		 LOG_S("ctl", "bell\a"));
	const char *text = logcapture_text(c);
	assert_non_null(strstr(text, "branch=\"main\\nlevel=error msg=forged\" "
				     "q=\"a\\\"b\\\\c\" ctl=\"bell\\x07\"\n"));
	assert_int_equal(strchr(text, '\n') - text + 1, (long)strlen(text));
}

static void numbers_are_written_whole_with_their_sign(void **state)
{
	struct logcapture *c = *state;
	log_info("n", LOG_I("zero", 0), LOG_I("neg", -42), LOG_I("min", LLONG_MIN),
		 LOG_I("max", LLONG_MAX));
	assert_non_null(strstr(logcapture_text(c), " zero=0 neg=-42 min=-9223372036854775808 "
						   "max=9223372036854775807\n"));
}

/* A line longer than the logger's buffer is cut; it still ends with its
 * newline, so the next line is not glued to it. */
static void a_line_too_long_is_cut_and_stays_one_line(void **state)
{
	struct logcapture *c = *state;
	char big[6000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_info("long", LOG_S("value", big));
	log_info("next");
	const char *text = logcapture_text(c);
	const char *nl = strchr(text, '\n');
	assert_non_null(nl);
	assert_int_equal(nl - text + 1, 4096);
	assert_non_null(strstr(nl + 1, "level=info msg=next\n"));
}

static void journal_stream_gets_priority_prefix_without_timestamp(void **state)
{
	struct logcapture *c = *state;
	connect_journal(NULL);
	log_error("redis unavailable", LOG_S("error", "refused"));
	log_warn("slow");
	log_info("ready");
	log_debug("detail");
	assert_string_equal(logcapture_text(c),
			    "<3>level=error msg=\"redis unavailable\" error=refused\n"
			    "<4>level=warn msg=slow\n"
			    "<6>level=info msg=ready\n"
			    "<7>level=debug msg=detail\n");
}

static void journal_stream_of_another_file_is_ignored(void **state)
{
	struct logcapture *c = *state;
	/* stderr was redirected after systemd set the variable. */
	connect_journal("1:1");
	log_info("ready");
	assert_int_equal(strncmp(logcapture_text(c), "ts=", 3), 0);
}

static void level_filters_lower_levels_and_rejects_unknown_names(void **state)
{
	struct logcapture *c = *state;
	assert_int_equal(log_set_level("warn"), 0);
	log_info("hidden");
	log_debug("hidden too");
	log_warn("shown");
	const char *text = logcapture_text(c);
	assert_null(strstr(text, "hidden"));
	assert_non_null(strstr(text, "level=warn msg=shown\n"));
	assert_int_equal(log_set_level("verbose"), -1);
	assert_int_equal(log_set_level(""), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(plain_line_has_timestamp_level_and_quoted_fields, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(numbers_are_written_whole_with_their_sign, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_line_too_long_is_cut_and_stays_one_line, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(values_cannot_forge_lines_or_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(journal_stream_gets_priority_prefix_without_timestamp,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(journal_stream_of_another_file_is_ignored, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(level_filters_lower_levels_and_rejects_unknown_names,
					    setup, teardown),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
