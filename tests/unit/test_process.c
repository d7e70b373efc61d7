/* Tests for stages/process: real children on a real libevent loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/clock.h"
#include "lib/fdlimit.h"
#include "logcapture.h"
#include "stages/env_cookie.h"
#include "stages/process.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct line {
	enum process_stream stream;
	char *text;
	size_t len;
};

struct run {
	struct line lines[64];
	size_t nlines;
	struct process_result res;
	int exits;
	int64_t elapsed_ms;
};

static struct event_base *base;
static const char *const default_env[] = {"PATH=/usr/bin:/bin", NULL};

/* One loop for the file (libevent lets one base at a time own a signal),
 * but for the test that replaces it. */
static int group_setup(void **state)
{
	(void)state;
	base = event_base_new();
	if (base == NULL || process_init(base) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	process_shutdown();
	event_base_free(base);
	base = NULL;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(process_running(), 0);
	return 0;
}

static void on_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct run *r = arg;
	if (r->nlines == sizeof(r->lines) / sizeof(r->lines[0]))
		return;
	struct line *l = &r->lines[r->nlines++];
	l->stream = s;
	l->len = len;
	l->text = malloc(len + 1);
	assert_non_null(l->text);
	memcpy(l->text, line, len);
	l->text[len] = '\0';
}

static void on_exit_break(const struct process_result *res, void *arg)
{
	struct run *r = arg;
	r->res = *res;
	r->exits++;
	event_base_loopbreak(base);
}

static void free_run(struct run *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[i].text);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fail_msg("event loop did not finish in time");
}

/* Runs the loop until the exit callback breaks it, with a watchdog. */
static void loop_until_exit(struct run *r, int64_t started)
{
	struct event *dog = evtimer_new(base, on_watchdog, NULL);
	struct timeval tv = {10, 0};
	evtimer_add(dog, &tv);
	while (r->exits == 0)
		event_base_dispatch(base);
	event_free(dog);
	r->elapsed_ms = clock_mono_ms() - started;
}

static void run_spec(const struct process_spec *spec, struct run *r)
{
	memset(r, 0, sizeof(*r));
	int64_t started = clock_mono_ms();
	struct process *p = process_spawn(spec, on_line, on_exit_break, r);
	assert_non_null(p);
	loop_until_exit(r, started);
	assert_int_equal(r->exits, 1);
}

static void run_argv(const char *const *argv, struct run *r)
{
	struct process_spec spec = {.argv = argv, .envp = default_env, .kill_grace_ms = 1000};
	run_spec(&spec, r);
}

static void run_sh(const char *script, struct run *r)
{
	const char *argv[] = {"sh", "-c", script, NULL};
	run_argv(argv, r);
}

static void assert_line(const struct run *r, size_t i, enum process_stream s, const char *text)
{
	assert_true(i < r->nlines);
	assert_int_equal(r->lines[i].stream, s);
	assert_string_equal(r->lines[i].text, text);
}

/* process_init twice is refused; after process_shutdown the module takes
 * a new loop (and the old one may be freed) and runs children on it. */
static void test_a_new_loop_after_shutdown_runs_children(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"/bin/echo", "again", NULL};

	assert_int_equal(process_init(base), -1);
	process_shutdown();
	event_base_free(base);
	base = event_base_new();
	assert_non_null(base);
	assert_int_equal(process_init(base), 0);
	assert_ptr_equal(process_base(), base);
	run_argv(argv, &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.res.exit_code, 0);
	assert_line(&r, 0, PROCESS_STDOUT, "again");
	free_run(&r);
}

static void test_echo_line_and_exit_zero(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"/bin/echo", "hello world", NULL};
	run_argv(argv, &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.res.exit_code, 0);
	assert_int_equal(r.nlines, 1);
	assert_line(&r, 0, PROCESS_STDOUT, "hello world");
	free_run(&r);
}

static void test_stdout_and_stderr_lines_keep_order_and_stream(void **state)
{
	(void)state;
	struct run r;
	run_sh("echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2; sleep 0.05;"
	       "echo err2 >&2",
	       &r);
	assert_int_equal(r.nlines, 4);
	assert_line(&r, 0, PROCESS_STDOUT, "out1");
	assert_line(&r, 1, PROCESS_STDERR, "err1");
	assert_line(&r, 2, PROCESS_STDOUT, "out2");
	assert_line(&r, 3, PROCESS_STDERR, "err2");
	free_run(&r);
}

static void test_last_line_without_newline_is_delivered(void **state)
{
	(void)state;
	struct run r;
	run_sh("printf 'a\\nb'; printf 'partial' >&2", &r);
	assert_int_equal(r.nlines, 3);
	assert_line(&r, 0, PROCESS_STDOUT, "a");
	/* The two streams end in either order. */
	int b_first = r.lines[1].stream == PROCESS_STDOUT;
	assert_line(&r, b_first ? 1 : 2, PROCESS_STDOUT, "b");
	assert_line(&r, b_first ? 2 : 1, PROCESS_STDERR, "partial");
	free_run(&r);
}

static void test_long_line_is_split_in_64k_pieces(void **state)
{
	(void)state;
	struct run r;
	run_sh("head -c 102400 /dev/zero | tr '\\0' x; echo; echo next", &r);
	assert_int_equal(r.nlines, 3);
	assert_int_equal(r.lines[0].len, 65536);
	assert_int_equal(r.lines[1].len, 102400 - 65536);
	for (size_t i = 0; i < 2; i++) {
		for (size_t j = 0; j < r.lines[i].len; j++)
			assert_int_equal(r.lines[i].text[j], 'x');
	}
	assert_line(&r, 2, PROCESS_STDOUT, "next");
	free_run(&r);
}

/* Output that ends with a whole piece, no newline after it: an empty
 * delivery ends its line, so that nothing waits for a continuation (a log
 * would join it to the next process's first line). */
static void test_output_ending_with_a_piece_ends_its_line(void **state)
{
	(void)state;
	struct run r;
	run_sh("head -c 65536 /dev/zero | tr '\\0' x", &r);
	assert_int_equal(r.nlines, 2);
	assert_int_equal(r.lines[0].len, 65536);
	assert_int_equal(r.lines[1].len, 0);
	free_run(&r);
}

static void test_exit_code_is_reported(void **state)
{
	(void)state;
	struct run r;
	run_sh("exit 3", &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.res.exit_code, 3);
	free_run(&r);
}

static void test_missing_command_is_spawn_failed(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"no-such-command-sluice", "x", NULL};
	run_argv(argv, &r);
	assert_int_equal(r.res.outcome, PROCESS_SPAWN_FAILED);
	assert_int_equal(r.res.exit_code, 127);
	assert_string_equal(r.res.error, "exec no-such-command-sluice: No such file or directory");
	assert_int_equal(r.nlines, 0);
	free_run(&r);
}

/* Exactly envp, but that the cookie is this process's, whatever envp set
 * it to. */
static void test_env_is_envp_with_this_process_s_cookie(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"env", NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", ENV_COOKIE_NAME "=inherited", "FOO=bar baz",
			      NULL};
	struct process_spec spec = {.argv = argv, .envp = envp};
	run_spec(&spec, &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.nlines, 3);
	assert_line(&r, 0, PROCESS_STDOUT, "PATH=/usr/bin:/bin");
	assert_line(&r, 1, PROCESS_STDOUT, "FOO=bar baz");
	/* The cookie, then "-" and the child's serial. */
	const char *cookie = env_cookie_entry();
	size_t len = strlen(cookie);
	assert_int_equal(len, strlen(ENV_COOKIE_NAME "=") + 32);
	assert_memory_equal(r.lines[2].text, cookie, len);
	assert_int_equal(r.lines[2].text[len], '-');
	assert_true(r.lines[2].text[len + 1] != '\0');
	assert_int_equal(strspn(r.lines[2].text + len + 1, "0123456789"),
			 strlen(r.lines[2].text + len + 1));
	free_run(&r);
}

/* Each child's cookie carries a serial of its own. */
static void test_each_child_s_cookie_has_a_serial_of_its_own(void **state)
{
	(void)state;
	struct run a, b;
	run_sh("printenv " ENV_COOKIE_NAME, &a);
	run_sh("printenv " ENV_COOKIE_NAME, &b);
	assert_int_equal(a.nlines, 1);
	assert_int_equal(b.nlines, 1);
	assert_string_not_equal(a.lines[0].text, b.lines[0].text);
	free_run(&a);
	free_run(&b);
}

static void test_command_is_looked_up_in_envp_path(void **state)
{
	(void)state;
	char dir[] = "/tmp/sluice-proc-XXXXXX";
	char tool[PATH_MAX];
	char env_path[PATH_MAX + 8];
	assert_non_null(mkdtemp(dir));
	snprintf(tool, sizeof(tool), "%s/sluice-only-here", dir);
	FILE *f = fopen(tool, "w");
	assert_non_null(f);
	fputs("#!/bin/sh\necho found in envp path\n", f);
	fclose(f);
	assert_int_equal(chmod(tool, 0755), 0);
	snprintf(env_path, sizeof(env_path), "PATH=%s:/usr/bin:/bin", dir);

	struct run r;
	const char *argv[] = {"sluice-only-here", NULL};
	const char *envp[] = {env_path, NULL};
	struct process_spec spec = {.argv = argv, .envp = envp};
	run_spec(&spec, &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.nlines, 1);
	assert_line(&r, 0, PROCESS_STDOUT, "found in envp path");
	free_run(&r);
	unlink(tool);
	rmdir(dir);
}

static void test_cwd_is_honoured(void **state)
{
	(void)state;
	char dir[] = "/tmp/sluice-proc-XXXXXX";
	char real[PATH_MAX];
	assert_non_null(mkdtemp(dir));
	assert_non_null(realpath(dir, real));

	struct run r;
	const char *argv[] = {"pwd", NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct process_spec spec = {.argv = argv, .envp = envp, .cwd = real};
	run_spec(&spec, &r);
	assert_int_equal(r.nlines, 1);
	assert_line(&r, 0, PROCESS_STDOUT, real);
	free_run(&r);
	rmdir(dir);
}

static void test_missing_cwd_is_spawn_failed(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"pwd", NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env, .cwd = "/nonexistent/dir"};
	run_spec(&spec, &r);
	assert_int_equal(r.res.outcome, PROCESS_SPAWN_FAILED);
	assert_string_equal(r.res.error, "chdir /nonexistent/dir: No such file or directory");
	free_run(&r);
}

static void test_stdin_is_dev_null(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"cat", NULL};
	run_argv(argv, &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.res.exit_code, 0);
	assert_int_equal(r.nlines, 0);
	assert_true(r.elapsed_ms < 1000);
	free_run(&r);
}

static void test_timeout_sends_sigterm(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"sleep", "30", NULL};
	struct process_spec spec = {
	    .argv = argv, .envp = default_env, .timeout_ms = 200, .kill_grace_ms = 5000};
	run_spec(&spec, &r);
	assert_int_equal(r.res.outcome, PROCESS_TIMED_OUT);
	assert_int_equal(r.res.term_signal, SIGTERM);
	assert_true(r.elapsed_ms >= 190);
	assert_true(r.elapsed_ms < 1000);
	free_run(&r);
}

/* The child ignored SIGTERM and was killed after at least min_ms. */
static void assert_killed_after(const struct run *r, enum process_outcome outcome, int min_ms)
{
	assert_int_equal(r->res.outcome, outcome);
	assert_int_equal(r->res.term_signal, SIGKILL);
	assert_true(r->elapsed_ms >= min_ms);
}

static void test_child_ignoring_sigterm_is_killed_after_grace(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"sh", "-c", "trap '' TERM; sleep 30", NULL};
	struct process_spec spec = {
	    .argv = argv, .envp = default_env, .timeout_ms = 200, .kill_grace_ms = 300};
	run_spec(&spec, &r);
	assert_killed_after(&r, PROCESS_TIMED_OUT, 490);
	assert_true(r.elapsed_ms < 2000);
	free_run(&r);
}

static void on_cancel_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	process_cancel(arg);
}

/* Runs spec, with stop called on its process after_ms. */
static void run_stopped(const struct process_spec *spec, event_callback_fn stop, int after_ms,
			struct run *r)
{
	memset(r, 0, sizeof(*r));
	int64_t started = clock_mono_ms();
	struct process *p = process_spawn(spec, on_line, on_exit_break, r);
	assert_non_null(p);
	assert_true(process_pid(p) > 0);
	assert_int_equal(process_running(), 1);
	struct event *t = evtimer_new(base, stop, p);
	struct timeval tv = {after_ms / 1000, (after_ms % 1000) * 1000};
	evtimer_add(t, &tv);
	loop_until_exit(r, started);
	event_free(t);
}

static void test_cancel_is_reported_as_cancelled(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"sleep", "30", NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env, .kill_grace_ms = 5000};
	run_stopped(&spec, on_cancel_timer, 100, &r);
	assert_int_equal(r.res.outcome, PROCESS_CANCELLED);
	assert_int_equal(r.res.term_signal, SIGTERM);
	assert_true(r.elapsed_ms < 1000);
	assert_int_equal(process_running(), 0);
	free_run(&r);
}

static void on_cancel_within_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	process_cancel_within(arg, 300);
}

/* A stop that must be over by a deadline (a lease about to end) kills a
 * child that ignores SIGTERM after the grace it is given, not after the
 * longer kill_grace of its spec (the watchdog fails the test at 10 s). */
static void test_cancel_within_kills_after_the_shorter_grace(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"sh", "-c", "trap '' TERM; sleep 30", NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env, .kill_grace_ms = 60000};
	run_stopped(&spec, on_cancel_within_timer, 200, &r);
	assert_killed_after(&r, PROCESS_CANCELLED, 490);
	assert_int_equal(process_running(), 0);
	free_run(&r);
}

/* A stop under way (a timeout in its grace) is brought forward by a stop
 * with a deadline: SIGKILL after the grace given, not the spec's minute;
 * the outcome stays the timeout's. */
static void test_cancel_within_shortens_a_stop_under_way(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {"sh", "-c", "trap '' TERM; sleep 30", NULL};
	struct process_spec spec = {
	    .argv = argv, .envp = default_env, .timeout_ms = 200, .kill_grace_ms = 60000};
	run_stopped(&spec, on_cancel_within_timer, 400, &r);
	assert_killed_after(&r, PROCESS_TIMED_OUT, 690);
	assert_int_equal(process_running(), 0);
	free_run(&r);
}

/* A cancel (a hand-back, a timeout) that comes after the child has exited,
 * before its end is handled, leaves its outcome alone: a stage that
 * succeeded must not be run again for it. */
static void test_cancel_after_the_child_exited_keeps_its_exit(void **state)
{
	(void)state;
	struct run r;
	siginfo_t si;
	memset(&r, 0, sizeof(r));
	const char *argv[] = {"true", NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env, .kill_grace_ms = 5000};
	int64_t started = clock_mono_ms();
	struct process *p = process_spawn(&spec, on_line, on_exit_break, &r);
	assert_non_null(p);
	/* Exited, and left to the loop to reap. */
	assert_int_equal(waitid(P_PID, (id_t)process_pid(p), &si, WEXITED | WNOWAIT), 0);
	process_cancel(p);
	loop_until_exit(&r, started);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.res.exit_code, 0);
	assert_int_equal(r.res.term_signal, 0);
	free_run(&r);
}

static void test_background_child_is_gone_after_exit(void **state)
{
	(void)state;
	struct run r;
	run_sh("sleep 300 & echo $!", &r);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.nlines, 1);
	pid_t bg = (pid_t)strtol(r.lines[0].text, NULL, 10);
	assert_true(bg > 0);
	assert_int_equal(kill(bg, 0), -1);
	assert_int_equal(errno, ESRCH);
	/* The group kill frees the pipe the background child held. */
	assert_true(r.elapsed_ms < 900);
	free_run(&r);
}

static void on_settle(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void settle(int ms)
{
	struct event *t = evtimer_new(base, on_settle, base);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(t, &tv);
	event_base_dispatch(base);
	event_free(t);
}

/* Runs a stage whose script prints the pid of a process it leaves behind,
 * then checks that the process is gone once the loop had settle_ms to
 * reap it. */
static void assert_left_behind_is_killed_within(const char *script, int settle_ms)
{
	struct run r;
	run_sh(script, &r);
	assert_int_equal(r.nlines, 1);
	pid_t left = (pid_t)strtol(r.lines[0].text, NULL, 10);
	assert_true(left > 0);
	settle(settle_ms);
	assert_int_equal(kill(left, 0), -1);
	assert_int_equal(errno, ESRCH);
	free_run(&r);
}

/* A stage that leaves a daemon in a session of its own: the daemon is gone
 * once the loop had settle_ms to reap it. */
static void assert_escaped_daemon_is_killed_within(int settle_ms)
{
	/* The script waits until the daemon has its own session, so that the
	 * group kill cannot be what ends it. */
	assert_left_behind_is_killed_within(
	    "setsid sleep 300 >/dev/null 2>&1 </dev/null & d=$!;"
	    "while [ \"$(cut -d' ' -f6 /proc/$d/stat)\" != \"$d\" ]; do sleep 0.01; done;"
	    "echo $d",
	    settle_ms);
}

static void assert_escaped_daemon_is_killed(void)
{
	assert_escaped_daemon_is_killed_within(200);
}

static void test_escaped_daemon_is_killed_when_idle(void **state)
{
	(void)state;
	assert_escaped_daemon_is_killed();
}

static void on_exit_record(const struct process_result *res, void *arg)
{
	struct run *r = arg;
	r->res = *res;
	r->exits++;
}

/* A stage that runs meanwhile: sleep 30 into other, started past the
 * interval between searches for leftovers, whatever the tests before did. */
static struct process *start_other_stage(struct run *other)
{
	static const char *sleeper[] = {"sleep", "30", NULL};
	struct process_spec spec = {.argv = sleeper, .envp = default_env, .kill_grace_ms = 1000};
	memset(other, 0, sizeof(*other));
	struct process *p = process_spawn(&spec, on_line, on_exit_record, other);
	assert_non_null(p);
	settle(1100);
	return p;
}

/* Cancels the stage start_other_stage started, which has not ended. */
static void stop_other_stage(struct process *p, struct run *other)
{
	assert_int_equal(other->exits, 0);
	process_cancel(p);
	while (other->exits == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(other->res.outcome, PROCESS_CANCELLED);
	free_run(other);
}

/* Another stage still runs when the one that left a daemon ends: the
 * daemon is killed all the same, and the running stage is left alone. */
static void test_escaped_daemon_is_killed_while_another_stage_runs(void **state)
{
	(void)state;
	struct run other;
	struct process *p = start_other_stage(&other);

	assert_escaped_daemon_is_killed();
	assert_int_equal(process_running(), 1);
	stop_other_stage(p, &other);
}

/* Starts a stage that starts a daemon in a session of its own with
 * `setsid -f` (its parent gone at once: the daemon becomes ours), run by
 * prefix ("" or "env -i"), prints the daemon's pid once it is ours, then
 * sleeps; waits for that line, then checks that the daemon outlives another
 * stage that ends meanwhile. Returns the daemon's pid. */
static pid_t start_stage_with_daemon(struct run *r, struct process **p, const char *prefix)
{
	char script[512];
	snprintf(script, sizeof(script),
		 "f=$(mktemp); setsid -f %s /bin/sh -c 'echo $$ > '$f'; exec /bin/sleep 300' "
		 "</dev/null >/dev/null 2>&1;"
		 "while [ ! -s $f ]; do sleep 0.01; done; d=$(cat $f); rm -f $f;"
		 "while [ \"$(cut -d' ' -f4 /proc/$d/stat)\" != %d ]; do sleep 0.01; done;"
		 "echo $d; exec sleep 30",
		 prefix, (int)getpid());
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env, .kill_grace_ms = 1000};
	memset(r, 0, sizeof(*r));
	*p = process_spawn(&spec, on_line, on_exit_record, r);
	assert_non_null(*p);
	while (r->nlines == 0 && r->exits == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(r->nlines, 1);
	pid_t d = (pid_t)strtol(r->lines[0].text, NULL, 10);
	assert_true(d > 0);

	/* Another stage ends, and the search for leftovers after it is over:
	 * the daemon is still there. */
	struct run quick;
	run_sh("true", &quick);
	free_run(&quick);
	settle(1200);
	assert_int_equal(kill(d, 0), 0);
	return d;
}

/* A daemon a stage started serves that stage while it runs: other
 * processes ending (a stage, and a search for leftovers after it) leave
 * it alone; it is killed once its own stage has ended. */
static void test_a_running_stage_s_daemon_lives_until_its_stage_ends(void **state)
{
	(void)state;
	struct run stage;
	struct process *p;
	pid_t d = start_stage_with_daemon(&stage, &p, "");

	stop_other_stage(p, &stage);
	settle(200);
	assert_int_equal(kill(d, 0), -1);
	assert_int_equal(errno, ESRCH);
}

/* A daemon whose environment cannot tell which stage it came from
 * (cleared with env -i) is left alone while a stage that was running when
 * it started still runs, and killed once only stages started after it
 * run. */
static void test_a_daemon_with_a_cleared_environment_lives_while_an_older_stage_runs(void **state)
{
	(void)state;
	struct run stage, later;
	struct process *p;
	pid_t d = start_stage_with_daemon(&stage, &p, "env -i");

	struct process *l = start_other_stage(&later);
	stop_other_stage(p, &stage);
	settle(1200);
	assert_int_equal(kill(d, 0), -1);
	assert_int_equal(errno, ESRCH);
	stop_other_stage(l, &later);
}

/* Holds the output once the fifth line is in, as a caller whose lines go
 * somewhere slow would. */
static void on_line_hold_after_five(enum process_stream s, const char *line, size_t len, void *arg)
{
	on_line(s, line, len, arg);
	if (((struct run *)arg)->nlines == 5)
		process_hold_output(1);
}

/* The lines read with the fifth wait, in order, while the output is held,
 * and so does the end of a child long gone: past the time given to a
 * descendant holding its pipes, which must not cut them short. */
static void test_held_output_and_the_end_wait_for_the_release(void **state)
{
	(void)state;
	const char *seq[] = {"seq", "1", "20", NULL};
	struct process_spec spec = {.argv = seq, .envp = default_env, .kill_grace_ms = 1000};
	struct run r;
	char want[8];
	memset(&r, 0, sizeof(r));
	assert_non_null(process_spawn(&spec, on_line_hold_after_five, on_exit_record, &r));

	settle(1500);
	assert_int_equal(r.nlines, 5);
	assert_int_equal(r.exits, 0);
	assert_int_equal(process_running(), 1);

	process_hold_output(0);
	while (r.exits == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(r.res.outcome, PROCESS_EXITED);
	assert_int_equal(r.res.exit_code, 0);
	assert_int_equal(r.nlines, 20);
	for (size_t i = 0; i < 20; i++) {
		snprintf(want, sizeof(want), "%zu", i + 1);
		assert_line(&r, i, PROCESS_STDOUT, want);
	}
	free_run(&r);
}

/* Two stages leave a daemon each while a third runs, the second before the
 * interval between searches is over: its search is put off, not dropped. */
static void test_escaped_daemon_is_killed_after_a_search_put_off(void **state)
{
	(void)state;
	struct run other;
	struct process *p = start_other_stage(&other);

	assert_escaped_daemon_is_killed();
	assert_escaped_daemon_is_killed_within(1200);
	stop_other_stage(p, &other);
}

/* A daemon that left its stage with a child of its own, while another
 * stage runs: the child becomes ours only once the daemon is dead, after
 * the search that killed the daemon (which, holding 64 MiB, takes a while
 * to die). The child is killed all the same, within about a second. */
static void test_an_escaped_daemon_s_child_is_killed_while_another_stage_runs(void **state)
{
	(void)state;
	struct run other;
	struct process *p = start_other_stage(&other);

	assert_left_behind_is_killed_within(
	    "setsid awk 'BEGIN { s = \"x\"; for (i = 0; i < 26; i++) s = s s;"
	    " system(\"exec sleep 300\") }' >/dev/null 2>&1 </dev/null & d=$!;"
	    "c=/proc/$d/task/$d/children;"
	    "while [ -z \"$(cat $c 2>/dev/null)\" ]; do sleep 0.01; done; cat $c",
	    1500);
	stop_other_stage(p, &other);
}

/* A stage that ends with children still in its group, one of which takes
 * a while to die (it holds 256 MiB): the group kill ends them, and the
 * others are reaped while it still dies. None of them escaped the group,
 * so none is warned of as a leftover descendant, and none is left. */
static void test_group_children_dying_slowly_are_no_leftovers(void **state)
{
	(void)state;
	struct logcapture cap;
	struct run r;

	assert_int_equal(logcapture_start(&cap), 0);
	run_sh("awk 'BEGIN { s = \"x\"; for (i = 0; i < 28; i++) s = s s;"
	       " system(\"exec sleep 300\") }' >/dev/null 2>&1 </dev/null & d=$!;"
	       "c=/proc/$d/task/$d/children;"
	       "while [ -z \"$(cat $c 2>/dev/null)\" ]; do sleep 0.01; done;"
	       "sleep 300 & sleep 300 & echo $d",
	       &r);
	pid_t slow = (pid_t)strtol(r.lines[0].text, NULL, 10);
	settle(300);
	const char *text = logcapture_text(&cap);
	if (strstr(text, "leftover descendant") != NULL)
		fail_msg("group children were warned of as leftovers:\n%s", text);
	logcapture_stop(&cap);
	assert_int_equal(kill(slow, 0), -1);
	free_run(&r);
}

/* A command runs in a session of its own, as under systemd: with no
 * controlling terminal, what would ask a person (ssh for a passphrase, a
 * read of /dev/tty) fails at once instead of stopping the command until
 * its timeout when the worker runs in a terminal. */
static void test_a_command_leads_a_session_of_its_own(void **state)
{
	(void)state;
	struct run r;

	/* Fields 6 and 7 of /proc/self/stat: session and terminal. */
	run_sh("set -- $(sed 's/.*) //' /proc/$$/stat); echo \"$$ $4 $5\"", &r);
	assert_int_equal(r.nlines, 1);
	long pid = 0, sid = -1, tty = -1;
	assert_int_equal(sscanf(r.lines[0].text, "%ld %ld %ld", &pid, &sid, &tty), 3);
	assert_int_equal(sid, pid);
	assert_int_equal(tty, 0);
	free_run(&r);
}

static void test_self_inflicted_signal_is_signalled(void **state)
{
	(void)state;
	struct run r;
	run_sh("ulimit -c 0; kill -SEGV $$", &r);
	assert_int_equal(r.res.outcome, PROCESS_SIGNALLED);
	assert_int_equal(r.res.term_signal, SIGSEGV);
	free_run(&r);
	run_sh("kill -KILL $$", &r);
	assert_int_equal(r.res.outcome, PROCESS_SIGNALLED);
	assert_int_equal(r.res.term_signal, SIGKILL);
	free_run(&r);
}

struct chain {
	struct process *victim;
	struct run victim_run;
	struct run next_run;
	int first_exits;
	int running_in_callback;
};

static void on_first_exit(const struct process_result *res, void *arg)
{
	struct chain *c = arg;
	static const char *const argv[] = {"/bin/echo", "spawned from callback", NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env};
	(void)res;
	c->first_exits++;
	c->running_in_callback = process_running();
	process_cancel(c->victim);
	assert_non_null(process_spawn(&spec, on_line, on_exit_record, &c->next_run));
}

static void test_exit_callback_may_spawn_and_cancel(void **state)
{
	(void)state;
	struct chain c;
	memset(&c, 0, sizeof(c));
	const char *sleeper[] = {"sleep", "30", NULL};
	const char *quick[] = {"true", NULL};
	struct process_spec s1 = {.argv = sleeper, .envp = default_env, .kill_grace_ms = 5000};
	struct process_spec s2 = {.argv = quick, .envp = default_env};
	c.victim = process_spawn(&s1, on_line, on_exit_record, &c.victim_run);
	assert_non_null(c.victim);
	assert_non_null(process_spawn(&s2, NULL, on_first_exit, &c));
	assert_int_equal(process_running(), 2);

	struct event *dog = evtimer_new(base, on_watchdog, NULL);
	struct timeval tv = {10, 0};
	evtimer_add(dog, &tv);
	while (c.victim_run.exits == 0 || c.next_run.exits == 0)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(dog);

	assert_int_equal(c.first_exits, 1);
	assert_int_equal(c.running_in_callback, 1);
	assert_int_equal(c.victim_run.exits, 1);
	assert_int_equal(c.victim_run.res.outcome, PROCESS_CANCELLED);
	assert_int_equal(c.next_run.exits, 1);
	assert_int_equal(c.next_run.res.outcome, PROCESS_EXITED);
	assert_line(&c.next_run, 0, PROCESS_STDOUT, "spawned from callback");
	assert_int_equal(process_running(), 0);
	free_run(&c.victim_run);
	free_run(&c.next_run);
}

static void test_bad_spec_is_refused(void **state)
{
	(void)state;
	struct run r;
	const char *argv[] = {NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env};
	assert_null(process_spawn(&spec, on_line, on_exit_break, &r));
	assert_int_equal(process_running(), 0);
}

static void test_out_of_descriptors_spawn_fails_with_errno(void **state)
{
	(void)state;
	struct rlimit before;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
	int lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	/* Not one more descriptor: the pipes cannot be made. */
	struct rlimit none = {(rlim_t)lowest, before.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
	const char *argv[] = {"true", NULL};
	struct process_spec spec = {.argv = argv, .envp = default_env};
	struct run r;
	memset(&r, 0, sizeof(r));
	errno = 0;
	struct process *p = process_spawn(&spec, on_line, on_exit_break, &r);
	int err = errno;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &before), 0);
	assert_null(p);
	assert_int_equal(err, EMFILE);
	assert_int_equal(process_running(), 0);
}

/* Last: fdlimit_raise's effect lasts for the rest of the process. */
static void test_a_command_gets_the_open_files_limit_from_before_fdlimit_raise(void **state)
{
	(void)state;
	struct rlimit before, now;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
	assert_true(before.rlim_max > 256);
	struct rlimit low = {256, before.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(fdlimit_raise(), (long)before.rlim_max);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
	assert_int_equal(now.rlim_cur, before.rlim_max);
	struct run r;
	run_sh("ulimit -n; ulimit -H -n", &r);
	assert_int_equal(r.res.exit_code, 0);
	assert_int_equal(r.nlines, 2);
	assert_line(&r, 0, PROCESS_STDOUT, "256");
	char hard[32];
	snprintf(hard, sizeof(hard), "%llu", (unsigned long long)before.rlim_max);
	assert_line(&r, 1, PROCESS_STDOUT, hard);
	free_run(&r);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &before), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_echo_line_and_exit_zero, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_new_loop_after_shutdown_runs_children, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stdout_and_stderr_lines_keep_order_and_stream,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_last_line_without_newline_is_delivered, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_long_line_is_split_in_64k_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_output_ending_with_a_piece_ends_its_line, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_exit_code_is_reported, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_command_is_spawn_failed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_is_envp_with_this_process_s_cookie, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_each_child_s_cookie_has_a_serial_of_its_own, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_running_stage_s_daemon_lives_until_its_stage_ends, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_daemon_with_a_cleared_environment_lives_while_an_older_stage_runs, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_command_is_looked_up_in_envp_path, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cwd_is_honoured, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_cwd_is_spawn_failed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stdin_is_dev_null, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_sends_sigterm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_child_ignoring_sigterm_is_killed_after_grace,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_is_reported_as_cancelled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_within_kills_after_the_shorter_grace, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_within_shortens_a_stop_under_way, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_after_the_child_exited_keeps_its_exit,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_background_child_is_gone_after_exit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_escaped_daemon_is_killed_while_another_stage_runs,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_escaped_daemon_is_killed_when_idle, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_escaped_daemon_is_killed_after_a_search_put_off,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_held_output_and_the_end_wait_for_the_release,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_an_escaped_daemon_s_child_is_killed_while_another_stage_runs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_children_dying_slowly_are_no_leftovers,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_command_leads_a_session_of_its_own, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_self_inflicted_signal_is_signalled, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_exit_callback_may_spawn_and_cancel, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_spec_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_descriptors_spawn_fails_with_errno, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_command_gets_the_open_files_limit_from_before_fdlimit_raise, setup,
		teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
