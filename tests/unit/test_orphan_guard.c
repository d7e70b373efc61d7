/* Tests for stages/orphan_guard: when the process that started children
 * dies by SIGKILL, the guard kills their process groups, grandchildren
 * included, and only those it was told of; and a descendant that left its
 * group, found by its process's cookie, and only by that one.
 *
 * Each test forks a stand-in for the worker, which starts its children
 * through process_spawn (as the worker does) or by hand, sends their pids
 * here and waits to be killed. This process is a subreaper, so that it
 * reaps every process the stand-in leaves, and can tell a dead one from a
 * live one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pidgone.h"
#include "stages/orphan_guard.h"
#include "stages/process.h"

#define MAX_PIDS 8

static const char *const env[] = {"PATH=/usr/bin:/bin", NULL};
/* A group of two: the leader and a grandchild of the stand-in, both
 * sleeping, their pids on stdout. */
static const char *const group_argv[] = {"sh", "-c", "sleep 300 & echo $$ $!; wait", NULL};
/* A leader and a descendant in a session of its own (a daemon), there
 * before their pids are on stdout. */
static const char *const escape_argv[] = {
    "sh", "-c",
    "setsid sleep 300 </dev/null >/dev/null 2>&1 & d=$!; "
    "while [ \"$(cut -d' ' -f6 /proc/$d/stat)\" != \"$d\" ]; do sleep 0.01; done; "
    "echo $$ $d; wait",
    NULL};

/* Set by a test before it starts its stand-in: the stand-in refuses
 * itself close_range(2), as a kernel before 5.9 or a container's seccomp
 * profile does. */
static int refuse_close_range;

/* A seccomp filter: close_range fails with ENOSYS, every other call is
 * let through. */
static void deny_close_range(void)
{
	struct sock_filter filter[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_close_range, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0 ||
	    syscall(__NR_close_range, 1000, 1000, 0) != -1 || errno != ENOSYS)
		_exit(7);
}

static void on_exit_ignored(const struct process_result *r, void *arg)
{
	(void)r;
	(void)arg;
}

struct reported {
	int fd;
	int lines;
};

static void on_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct reported *rep = arg;
	(void)s;
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%.*s\n", (int)len, line);
	if (write(rep->fd, buf, (size_t)n) != n)
		_exit(3);
	rep->lines++;
}

/* A group of its own, sleeping; pid sent to fd. */
static pid_t sleeper(int fd)
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		execle("/bin/sleep", "sleep", "300", (char *)NULL, env);
		_exit(127);
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d 0\n", (int)pid);
	if (pid < 0 || write(fd, buf, (size_t)n) != n)
		_exit(3);
	return pid;
}

/* In the stand-in: spawns `groups` groups of argv through process_spawn,
 * their pids to fd, then, when kill_guard, kills the guard and spawns one
 * more (which makes process.c start a new guard and tell it every group);
 * then "ready" and its guard's pid, and waits to be killed. */
static void stand_in(int fd, const char *const *argv, int groups, int kill_guard, int unguarded)
{
	struct event_base *base = event_base_new();
	struct reported rep = {fd, 0};
	struct process_spec spec = {.argv = argv, .envp = env, .kill_grace_ms = 100};
	if (refuse_close_range)
		deny_close_range();
	if (!base || process_init(base) < 0)
		_exit(2);
	for (int i = 0; i < groups; i++) {
		if (i == groups - 1 && kill_guard) {
			pid_t old = orphan_guard_pid();
			if (old <= 0 || kill(old, SIGKILL) < 0)
				_exit(4);
			/* Its end of the pair closes as it dies. */
			usleep(200000);
		}
		if (!process_spawn(&spec, on_line, on_exit_ignored, &rep))
			_exit(5);
		while (rep.lines <= i)
			event_base_loop(base, EVLOOP_ONCE);
	}
	if (unguarded == 1) {
		/* A group of its own the guard is never told of. */
		sleeper(fd);
	} else if (unguarded == 2) {
		/* One it is told of, and then that it ended. */
		pid_t pid = sleeper(fd);
		if (orphan_guard_add(pid) < 0)
			_exit(6);
		orphan_guard_remove(pid);
	}
	char ready[32];
	int n = snprintf(ready, sizeof(ready), "ready %d\n", (int)orphan_guard_pid());
	if (write(fd, ready, (size_t)n) != n)
		_exit(3);
	for (;;)
		pause();
}

struct started {
	pid_t stand_in;
	pid_t guard;
	pid_t pids[MAX_PIDS];
	int n;
};

static void start_argv(struct started *s, const char *const *argv, int groups, int kill_guard,
		       int unguarded)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	memset(s, 0, sizeof(*s));
	s->stand_in = fork();
	assert_true(s->stand_in >= 0);
	if (s->stand_in == 0) {
		close(p[0]);
		stand_in(p[1], argv, groups, kill_guard, unguarded);
	}
	close(p[1]);
	FILE *f = fdopen(p[0], "r");
	assert_non_null(f);
	char line[128];
	while (fgets(line, sizeof(line), f) && sscanf(line, "ready %d", &s->guard) != 1) {
		int a, b;
		assert_int_equal(sscanf(line, "%d %d", &a, &b), 2);
		assert_true(s->n + 2 <= MAX_PIDS);
		s->pids[s->n++] = a;
		if (b > 0)
			s->pids[s->n++] = b;
	}
	fclose(f);
	assert_true(s->guard > 0);
}

static void start(struct started *s, int groups, int kill_guard, int unguarded)
{
	start_argv(s, group_argv, groups, kill_guard, unguarded);
}

static void kill_stand_in(struct started *s)
{
	assert_int_equal(kill(s->stand_in, SIGKILL), 0);
	assert_int_equal(waitpid(s->stand_in, NULL, 0), s->stand_in);
	s->stand_in = 0;
}

static int setup(void **state)
{
	(void)state;
	return prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* Kills what a test left running: a failed assertion must leave neither
 * a stand-in nor sleepers behind. */
static void kill_all(struct started *s)
{
	if (s->stand_in > 0 && kill(s->stand_in, SIGKILL) == 0)
		waitpid(s->stand_in, NULL, 0);
	s->stand_in = 0;
	pid_kill_left(s->pids, (size_t)s->n);
}

/* Unguarded groups outlive the stand-in and its guard, which is gone once
 * it has killed all it kills. */
static void assert_outlives(struct started *s, int at)
{
	kill_stand_in(s);
	assert_true(pid_wait_gone(s->pids[0]));
	assert_true(pid_wait_gone(s->pids[1]));
	assert_true(pid_wait_gone(s->guard));
	int outlived = !pid_gone(s->pids[at]);
	kill_all(s);
	assert_true(outlived);
	assert_true(pid_wait_gone(s->pids[at]));
}

static void test_a_dead_process_s_groups_are_killed_grandchildren_included(void **state)
{
	struct started s;
	(void)state;
	start(&s, 2, 0, 0);
	assert_int_equal(s.n, 4);
	for (int i = 0; i < s.n; i++)
		assert_false(pid_gone(s.pids[i]));
	kill_stand_in(&s);
	for (int i = 0; i < s.n; i++)
		assert_true(pid_wait_gone(s.pids[i]));
}

/* The descriptors pid holds, from /proc/PID/fd, as a bit set of those
 * below 63, and -1 when any is 63 or above. */
static long long fd_set_of(pid_t pid)
{
	char path[64];
	unsigned long long set = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd < 0 || fd >= 63) {
			closedir(d);
			return -1;
		}
		set |= 1ULL << fd;
	}
	closedir(d);
	return (long long)set;
}

/* Where close_range is refused, the guard closes what it must not hold one
 * by one: it starts, holds its socket and /dev/null only, and kills the
 * groups of the dead process. */
static void test_the_guard_starts_where_close_range_is_refused(void **state)
{
	struct started s;
	(void)state;
	refuse_close_range = 1;
	start(&s, 2, 0, 0);
	refuse_close_range = 0;
	assert_int_equal(s.n, 4);
	long long fds = fd_set_of(s.guard);
	kill_stand_in(&s);
	int killed = 1;
	for (int i = 0; i < s.n; i++)
		killed = killed && pid_wait_gone(s.pids[i]);
	kill_all(&s);
	assert_int_equal(fds, 0xf);
	assert_true(killed);
}

/* Writes text to a file of /proc/self: 0, or -1. */
static int write_proc(const char *name, const char *text)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/%s", name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* New PID and mount namespaces for the children of this process: as root,
 * or else in a user namespace of its own. 0, or -1. */
static int new_pid_namespace(void)
{
	char map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWPID | CLONE_NEWNS) == 0)
		return 0;
	if (unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS) < 0)
		return -1;
	snprintf(map, sizeof(map), "0 %d 1\n", (int)uid);
	if (write_proc("setgroups", "deny") < 0 || write_proc("uid_map", map) < 0)
		return -1;
	snprintf(map, sizeof(map), "0 %d 1\n", (int)gid);
	return write_proc("gid_map", map);
}

/* PID 1 of its namespace, with a /proc of its own: starts the guard (which
 * it inherits, as an init inherits every orphan), runs a stage, and exits 0
 * when the guard has outlived the search for leftovers after it. */
static int as_pid_1(void)
{
	struct event_base *base = event_base_new();
	const char *const argv[] = {"true", NULL};
	struct process_spec spec = {.argv = argv, .envp = env, .kill_grace_ms = 100};
	struct reported rep = {-1, 0};
	if (getpid() != 1 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("proc", "/proc", "proc", 0, NULL) < 0)
		return 10;
	if (!base || process_init(base) < 0 || orphan_guard_pid() <= 0)
		return 11;
	pid_t guard = orphan_guard_pid();
	if (!process_spawn(&spec, NULL, on_exit_ignored, &rep))
		return 12;
	for (int i = 0; i < 50 && process_running() > 0; i++)
		event_base_loop(base, EVLOOP_ONCE);
	usleep(200000);
	event_base_loop(base, EVLOOP_NONBLOCK);
	char path[64], stat[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)guard);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, stat, sizeof(stat) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 13;
	stat[n] = '\0';
	const char *rp = strrchr(stat, ')');
	return rp != NULL && rp[2] != 'Z' ? 0 : 14;
}

/* A worker that is PID 1 (a container run without an init) inherits its
 * own guard, orphaned on purpose: the search for leftovers after a stage
 * leaves it alone. */
static void test_a_worker_that_is_pid_1_keeps_its_guard(void **state)
{
	(void)state;
	pid_t outer = fork();
	assert_true(outer >= 0);
	if (outer == 0) {
		if (new_pid_namespace() < 0)
			_exit(20);
		pid_t init = fork();
		if (init == 0)
			_exit(as_pid_1());
		int st = 0;
		if (init < 0 || waitpid(init, &st, 0) != init)
			_exit(21);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 22);
	}
	int status = 0;
	assert_int_equal(waitpid(outer, &status, 0), outer);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_a_group_the_guard_was_not_told_of_is_left_alone(void **state)
{
	struct started s;
	(void)state;
	start(&s, 1, 0, 1);
	assert_int_equal(s.n, 3);
	assert_outlives(&s, 2);
}

static void test_a_guard_that_died_is_replaced_and_told_of_every_group(void **state)
{
	struct started s;
	(void)state;
	/* The first group was told to the guard that was then killed. */
	start(&s, 2, 1, 0);
	assert_int_equal(s.n, 4);
	kill_stand_in(&s);
	for (int i = 0; i < s.n; i++)
		assert_true(pid_wait_gone(s.pids[i]));
}

static void test_a_group_that_ended_is_forgotten(void **state)
{
	struct started s;
	(void)state;
	start(&s, 1, 0, 2);
	assert_int_equal(s.n, 3);
	assert_outlives(&s, 2);
}

static void test_a_dead_process_s_escaped_descendant_is_killed(void **state)
{
	struct started s;
	(void)state;
	start_argv(&s, escape_argv, 1, 0, 0);
	assert_int_equal(s.n, 2);
	assert_false(pid_gone(s.pids[0]));
	assert_false(pid_gone(s.pids[1]));
	kill_stand_in(&s);
	int killed = pid_wait_gone(s.pids[0]) && pid_wait_gone(s.pids[1]);
	kill_all(&s);
	assert_true(killed);
}

/* Two stand-ins, each with a guard and a cookie of its own: one dies, and
 * its guard kills its own escaped descendant, not the other's. */
static void test_another_process_s_escaped_descendant_is_left_alone(void **state)
{
	struct started dying, living;
	(void)state;
	start_argv(&dying, escape_argv, 1, 0, 0);
	start_argv(&living, escape_argv, 1, 0, 0);
	assert_int_equal(dying.n, 2);
	assert_int_equal(living.n, 2);
	kill_stand_in(&dying);
	int killed = pid_wait_gone(dying.pids[1]) && pid_wait_gone(dying.guard);
	int left = !pid_gone(living.pids[0]) && !pid_gone(living.pids[1]);
	kill_all(&dying);
	if (!left || !killed)
		kill_all(&living);
	assert_true(killed);
	assert_true(left);
	kill_stand_in(&living);
	killed = pid_wait_gone(living.pids[0]) && pid_wait_gone(living.pids[1]);
	kill_all(&living);
	assert_true(killed);
}

static void test_no_group_of_pid_1_or_below_is_taken(void **state)
{
	(void)state;
	assert_int_equal(orphan_guard_add(1), -1);
	assert_int_equal(orphan_guard_add(0), -1);
	assert_int_equal(orphan_guard_add(-5), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_dead_process_s_groups_are_killed_grandchildren_included),
	    cmocka_unit_test(test_the_guard_starts_where_close_range_is_refused),
	    cmocka_unit_test(test_a_worker_that_is_pid_1_keeps_its_guard),
	    cmocka_unit_test(test_a_group_the_guard_was_not_told_of_is_left_alone),
	    cmocka_unit_test(test_a_guard_that_died_is_replaced_and_told_of_every_group),
	    cmocka_unit_test(test_a_group_that_ended_is_forgotten),
	    cmocka_unit_test(test_a_dead_process_s_escaped_descendant_is_killed),
	    cmocka_unit_test(test_another_process_s_escaped_descendant_is_left_alone),
	    cmocka_unit_test(test_no_group_of_pid_1_or_below_is_taken),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
