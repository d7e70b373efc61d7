/* Tests for lib/watchdog: WATCHDOG=1 reaches the notify socket at half the
 * interval while healthy, stops once unhealthy for longer than the
 * interval, and nothing starts without a watchdog. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/watchdog.h"

struct fx {
	int fd;
	char path[108];
	struct event_base *base;
	int healthy;
};

static int check(void *arg)
{
	return ((struct fx *)arg)->healthy;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(f->path, sizeof(f->path), "/tmp/sluice-wd-%d.sock", (int)getpid());
	unlink(f->path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	f->base = event_base_new();
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("NOTIFY_SOCKET", f->path, 1);
	setenv("WATCHDOG_PID", pid, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	close(f->fd);
	unlink(f->path);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* Runs the loop for ms and counts the WATCHDOG=1 messages received. */
static int pings_during(struct fx *f, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	char buf[256];
	ssize_t n;
	int count = 0;
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
	while ((n = recv(f->fd, buf, sizeof(buf) - 1, 0)) > 0) {
		buf[n] = '\0';
		count += strstr(buf, "WATCHDOG=1") != NULL;
	}
	return count;
}

static void test_pings_while_healthy_and_stops_after_a_long_outage(void **state)
{
	struct fx *f = *state;
	f->healthy = 1;
	struct watchdog *wd = watchdog_start(f->base, check, f);
	assert_non_null(wd);
	/* One at start, then one every 100 ms. */
	assert_true(pings_during(f, 450) >= 3);

	/* A short outage is ridden out for one interval, then pings stop. */
	f->healthy = 0;
	pings_during(f, 350);
	assert_int_equal(pings_during(f, 300), 0);

	f->healthy = 1;
	assert_true(pings_during(f, 250) >= 1);
	watchdog_free(wd);
}

static void test_nothing_starts_without_a_watchdog(void **state)
{
	struct fx *f = *state;
	unsetenv("WATCHDOG_USEC");
	f->healthy = 1;
	assert_null(watchdog_start(f->base, check, f));
	assert_int_equal(pings_during(f, 50), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_pings_while_healthy_and_stops_after_a_long_outage,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nothing_starts_without_a_watchdog, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
