/* Tests for lib/sdnotify: a state reaches the socket $NOTIFY_SOCKET names,
 * a path or an abstract name, as one datagram; no socket named is no error;
 * a name that is neither, or a socket nobody listens on, is one. The
 * watchdog interval is read from $WATCHDOG_USEC, for this process only, and
 * a value that is not a positive number is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/sdnotify.h"

/* A datagram socket bound to name ("@..." abstract); its fd. */
static int listen_at(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	memcpy(sa.sun_path, name, len);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	else
		salen++;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, salen), 0);
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void test_state_reaches_a_path_socket(void **state)
{
	(void)state;
	char path[108];
	snprintf(path, sizeof(path), "/tmp/sluice-sdnotify-%d.sock", (int)getpid());
	unlink(path);
	int fd = listen_at(path);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(sdnotify("READY=1\nSTATUS=accepting webhooks"), 1);
	expect_datagram(fd, "READY=1\nSTATUS=accepting webhooks");
	assert_int_equal(sdnotify("STOPPING=1"), 1);
	expect_datagram(fd, "STOPPING=1");
	close(fd);
	unlink(path);
	/* Nobody listens there any more. */
	errno = 0;
	assert_int_equal(sdnotify("WATCHDOG=1"), -1);
	assert_int_not_equal(errno, 0);
	unsetenv("NOTIFY_SOCKET");
}

static void test_state_reaches_an_abstract_socket(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "@sluice-sdnotify-%d", (int)getpid());
	int fd = listen_at(name);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(sdnotify("WATCHDOG=1"), 1);
	expect_datagram(fd, "WATCHDOG=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void test_without_a_service_manager_nothing_is_sent(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sdnotify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(sdnotify("READY=1"), 0);
	unsetenv("NOTIFY_SOCKET");
}

static void test_a_name_that_is_no_socket_address_is_refused(void **state)
{
	(void)state;
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	const char *bad[] = {"relative/path", "@", "/", longname, "vsock:2:1234"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("NOTIFY_SOCKET", bad[i], 1);
		errno = 0;
		assert_int_equal(sdnotify("READY=1"), -1);
		assert_int_equal(errno, EINVAL);
	}
	unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_interval_for_this_process(void **state)
{
	(void)state;
	uint64_t usec = 0;
	char pid[32];
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	assert_int_equal(sdnotify_watchdog_usec(&usec), 0);
	setenv("WATCHDOG_USEC", "200000", 1);
	assert_int_equal(sdnotify_watchdog_usec(&usec), 1);
	assert_int_equal(usec, 200000);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	usec = 0;
	assert_int_equal(sdnotify_watchdog_usec(&usec), 1);
	assert_int_equal(usec, 200000);
	/* Inherited from a parent the service manager watches: not ours. */
	snprintf(pid, sizeof(pid), "%d", (int)getppid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_watchdog_usec(&usec), 0);
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
}

static void test_watchdog_values_that_are_no_interval_are_refused(void **state)
{
	(void)state;
	uint64_t usec = 7;
	const char *bad[] = {"0", "", "-5", "12s", " 5", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("WATCHDOG_USEC", bad[i], 1);
		assert_int_equal(sdnotify_watchdog_usec(&usec), -1);
	}
	setenv("WATCHDOG_USEC", "1000", 1);
	setenv("WATCHDOG_PID", "me", 1);
	assert_int_equal(sdnotify_watchdog_usec(&usec), -1);
	assert_int_equal(usec, 7);
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_state_reaches_a_path_socket),
	    cmocka_unit_test(test_state_reaches_an_abstract_socket),
	    cmocka_unit_test(test_without_a_service_manager_nothing_is_sent),
	    cmocka_unit_test(test_a_name_that_is_no_socket_address_is_refused),
	    cmocka_unit_test(test_watchdog_interval_for_this_process),
	    cmocka_unit_test(test_watchdog_values_that_are_no_interval_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
