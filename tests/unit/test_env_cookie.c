/* Tests for stages/env_cookie: the cookie is this process's own, a
 * child's entry carries its serial, which env_cookie_serial_of reads back,
 * and env_cookie_kill kills the processes whose environment holds the
 * entry exactly or with a child's serial, wherever in it, and no other, nor
 * its caller.
 *
 * The marked processes are sleepers started here with the environment a
 * test gives them; this process is a subreaper, and reaps them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pidgone.h"
#include "stages/env_cookie.h"

/* The argument that makes this program, run again, call env_cookie_kill
 * with the entry in its own environment. */
#define KILL_AS_MARKED "--kill-as-marked"
/* A variable whose value puts the entry after it across the first 4 KiB
 * of the environment. */
#define FILLER_LEN 4090

static pid_t sleeper(char *const envp[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execve("/bin/sleep", (char *const[]){"sleep", "300", NULL}, envp);
		_exit(127);
	}
	assert_true(pid > 0);
	return pid;
}

/* A started sleeper's /proc/PID/environ is its own only once it has
 * exec'd. */
static void wait_exec(pid_t pid)
{
	char path[64], exe[64];
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	for (int i = 0; i < 300; i++) {
		ssize_t n = readlink(path, exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			if (strstr(exe, "sleep") != NULL)
				return;
		}
		usleep(10000);
	}
	fail_msg("sleeper %d did not exec", (int)pid);
}

/* env_cookie_kill(entry) once the sleepers have exec'd: its result. */
static int kill_over(const char *entry, const pid_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		wait_exec(pids[i]);
	return env_cookie_kill(entry);
}

/* How many of the sleepers are gone: each waited for, or looked at once. */
static size_t count_gone(const pid_t *pids, size_t n, int wait)
{
	size_t gone = 0;
	for (size_t i = 0; i < n; i++)
		gone += (size_t)(wait ? pid_wait_gone(pids[i]) : pid_gone(pids[i]));
	return gone;
}

static int setup(void **state)
{
	(void)state;
	return prctl(PR_SET_CHILD_SUBREAPER, 1);
}

static void test_the_cookie_is_drawn_once_per_process(void **state)
{
	(void)state;
	const char *entry = env_cookie_entry();
	assert_true(env_cookie_is_set_by(entry));
	assert_int_equal(strlen(entry), strlen(ENV_COOKIE_NAME "=") + 32);
	assert_true(strspn(entry + strlen(ENV_COOKIE_NAME "="), "0123456789abcdef") == 32);
	assert_string_equal(env_cookie_entry(), entry);
	assert_true(env_cookie_is_set_by(ENV_COOKIE_NAME "="));
	assert_false(env_cookie_is_set_by(ENV_COOKIE_NAME));
	assert_false(env_cookie_is_set_by("X" ENV_COOKIE_NAME "=1"));
	assert_false(env_cookie_is_set_by(ENV_COOKIE_NAME "_2=1"));
}

static void test_every_process_holding_the_entry_is_killed(void **state)
{
	(void)state;
	char *entry = strdup(env_cookie_entry());
	char *filler = malloc(FILLER_LEN + 1);
	assert_non_null(entry);
	assert_non_null(filler);
	memset(filler, 'x', FILLER_LEN);
	memcpy(filler, "FILL=", 5);
	filler[FILLER_LEN] = '\0';
	char child[ENV_COOKIE_CHILD_MAX], child_max[ENV_COOKIE_CHILD_MAX];
	env_cookie_child_entry(child, sizeof(child), 0);
	env_cookie_child_entry(child_max, sizeof(child_max), ENV_COOKIE_NO_SERIAL - 1);
	pid_t pids[] = {
	    sleeper((char *[]){entry, NULL}),
	    sleeper((char *[]){"A=1", entry, "B=2", NULL}),
	    /* Across the first read of the environment. */
	    sleeper((char *[]){filler, entry, NULL}),
	    /* A child's, with its serial. */
	    sleeper((char *[]){"A=1", child, NULL}),
	    sleeper((char *[]){child_max, NULL}),
	};
	size_t n = sizeof(pids) / sizeof(pids[0]);
	int killed = kill_over(entry, pids, n);
	size_t gone = count_gone(pids, n, 1);
	pid_kill_left(pids, n);
	free(filler);
	free(entry);
	assert_int_equal(gone, n);
	assert_true(killed >= (int)n);
}

static void test_a_process_without_the_entry_exactly_is_left_alone(void **state)
{
	(void)state;
	const char *entry = env_cookie_entry();
	const char *value = entry + strlen(ENV_COOKIE_NAME "=");
	char other[128], longer[128], shorter[128], prefixed[128], as_value[128];
	char no_serial[128], bad_serial[128], too_big[128];
	snprintf(other, sizeof(other), "%s=%.31s%c", ENV_COOKIE_NAME, value,
		 value[31] == '0' ? '1' : '0');
	snprintf(longer, sizeof(longer), "%s0", entry);
	snprintf(shorter, sizeof(shorter), "%.*s", (int)strlen(entry) - 1, entry);
	snprintf(prefixed, sizeof(prefixed), "X%s", entry);
	snprintf(as_value, sizeof(as_value), "A=%s", entry);
	snprintf(no_serial, sizeof(no_serial), "%s-", entry);
	snprintf(bad_serial, sizeof(bad_serial), "%s-1x", entry);
	snprintf(too_big, sizeof(too_big), "%s-%lu0", entry, ENV_COOKIE_NO_SERIAL);
	pid_t pids[] = {
	    /* Not a child's serial after it. */
	    sleeper((char *[]){no_serial, NULL}),
	    sleeper((char *[]){bad_serial, NULL}),
	    sleeper((char *[]){too_big, NULL}),
	    /* Another process's cookie. */
	    sleeper((char *[]){other, NULL}),
	    sleeper((char *[]){longer, NULL}),
	    sleeper((char *[]){shorter, NULL}),
	    sleeper((char *[]){prefixed, NULL}),
	    sleeper((char *[]){as_value, NULL}),
	    /* One that cleared its environment (env -i). */
	    sleeper((char *[]){NULL}),
	};
	size_t n = sizeof(pids) / sizeof(pids[0]);
	int killed = kill_over(entry, pids, n);
	size_t gone = count_gone(pids, n, 0);
	pid_kill_left(pids, n);
	assert_int_equal(killed, 0);
	assert_int_equal(gone, 0);
}

/* This program again, its environment holding the entry: it kills a marked
 * sleeper and lives on to exit 0. */
static void test_the_caller_is_not_killed_though_it_holds_the_entry(void **state)
{
	(void)state;
	char *entry = strdup(env_cookie_entry());
	assert_non_null(entry);
	pid_t marked = sleeper((char *[]){entry, NULL});
	wait_exec(marked);
	pid_t caller = fork();
	if (caller == 0) {
		execve("/proc/self/exe", (char *const[]){"test_env_cookie", KILL_AS_MARKED, NULL},
		       (char *const[]){entry, NULL});
		_exit(127);
	}
	assert_true(caller > 0);
	int status = 0;
	assert_int_equal(waitpid(caller, &status, 0), caller);
	int killed = pid_wait_gone(marked);
	pid_kill_left(&marked, 1);
	free(entry);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(killed);
}

/* The serial of the child a process came from, read from its environment
 * when it holds this process's cookie with one. */
static void test_the_serial_of_a_marked_process_is_read_from_its_environment(void **state)
{
	(void)state;
	const char *entry = env_cookie_entry();
	char child[ENV_COOKIE_CHILD_MAX], no_serial[128];
	unsigned long serial = 0;
	assert_string_equal(env_cookie_child_entry(child, 8, 42), "");
	env_cookie_child_entry(child, sizeof(child), 42);
	snprintf(no_serial, sizeof(no_serial), "%s-", entry);
	pid_t pids[] = {
	    sleeper((char *[]){"A=1", child, "B=2", NULL}),
	    sleeper((char *[]){(char *)entry, NULL}),
	    sleeper((char *[]){no_serial, NULL}),
	    sleeper((char *[]){"A=1", NULL}),
	};
	size_t n = sizeof(pids) / sizeof(pids[0]);
	for (size_t i = 0; i < n; i++)
		wait_exec(pids[i]);
	assert_int_equal(env_cookie_serial_of(pids[0], &serial), 1);
	assert_int_equal(serial, 42);
	assert_int_equal(env_cookie_serial_of(pids[1], &serial), 0);
	assert_int_equal(env_cookie_serial_of(pids[2], &serial), 0);
	assert_int_equal(env_cookie_serial_of(pids[3], &serial), 0);
	pid_kill_left(pids, n);
	for (size_t i = 0; i < n; i++)
		pid_wait_gone(pids[i]);
	/* Gone: nothing to read. */
	assert_int_equal(env_cookie_serial_of(pids[0], &serial), -1);
}

static void test_no_entry_kills_nothing(void **state)
{
	(void)state;
	assert_int_equal(env_cookie_kill(""), 0);
}

/* Run as KILL_AS_MARKED: kills what holds the entry this process holds. */
static int kill_as_marked(void)
{
	const char *value = getenv(ENV_COOKIE_NAME);
	char entry[128];
	if (value == NULL)
		return 2;
	snprintf(entry, sizeof(entry), "%s=%s", ENV_COOKIE_NAME, value);
	return env_cookie_kill(entry) >= 1 ? 0 : 3;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_cookie_is_drawn_once_per_process),
	    cmocka_unit_test(test_the_serial_of_a_marked_process_is_read_from_its_environment),
	    cmocka_unit_test(test_every_process_holding_the_entry_is_killed),
	    cmocka_unit_test(test_a_process_without_the_entry_exactly_is_left_alone),
	    cmocka_unit_test(test_the_caller_is_not_killed_though_it_holds_the_entry),
	    cmocka_unit_test(test_no_entry_kills_nothing),
	};
	if (argc == 2 && strcmp(argv[1], KILL_AS_MARKED) == 0)
		return kill_as_marked();
	return cmocka_run_group_tests(tests, setup, NULL);
}
