/* Tests for pausing a listener that cannot accept (lib/listener_backoff.c).
 *
 * Real descriptors run out: clients connect to a loopback listener, the
 * connections wait in its backlog, and this process's open-files limit is
 * lowered to the descriptors it already has, so that accept() fails with
 * EMFILE; raised again, the waiting connections are accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/listener_backoff.h"

#define CLIENTS 3

struct fixture {
	struct event_base *base;
	struct evconnlistener *listener;
	struct listener_backoff *backoff;
	int clients[CLIENTS];
	int accepted, pauses;
	struct rlimit limit;
};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct fixture *f = arg;
	(void)l;
	(void)sa;
	(void)salen;
	close(fd);
	f->accepted++;
}

static void on_pause(void *arg)
{
	struct fixture *f = arg;
	f->pauses++;
}

/* The descriptor the next open would get: the lowest one free. */
static int lowest_free_fd(void)
{
	int fd = dup(0);
	assert_true(fd >= 0);
	close(fd);
	return fd;
}

static void run_for(struct fixture *f, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &f.limit), 0);
	f.base = event_base_new();
	assert_non_null(f.base);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	f.listener = evconnlistener_new_bind(f.base, on_accept, &f, LEV_OPT_CLOSE_ON_FREE, 16,
					     (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(f.listener);
	f.backoff = listener_backoff_new(f.listener, "test", on_pause, &f);
	assert_non_null(f.backoff);
	struct sockaddr_in bound;
	socklen_t len = sizeof(bound);
	assert_int_equal(
	    getsockname(evconnlistener_get_fd(f.listener), (struct sockaddr *)&bound, &len), 0);
	for (int i = 0; i < CLIENTS; i++) {
		f.clients[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(f.clients[i] >= 0);
		assert_int_equal(connect(f.clients[i], (struct sockaddr *)&bound, len), 0);
	}
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	setrlimit(RLIMIT_NOFILE, &f->limit);
	for (int i = 0; i < CLIENTS; i++)
		close(f->clients[i]);
	listener_backoff_free(f->backoff);
	evconnlistener_free(f->listener);
	event_base_free(f->base);
	return 0;
}

/* No descriptor can be opened: the limit at the lowest free one. */
static void exhaust(struct fixture *f)
{
	struct rlimit low = {(rlim_t)lowest_free_fd(), f->limit.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
}

static void restore(struct fixture *f)
{
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &f->limit), 0);
}

static void test_out_of_descriptors_the_listener_pauses_instead_of_spinning(void **state)
{
	struct fixture *f = *state;
	exhaust(f);
	/* Spinning, the loop would try accept() thousands of times in this
	 * while; paused, it tries once, then once a pause. */
	run_for(f, LISTENER_BACKOFF_FIRST_MS / 2);
	assert_int_equal(f->pauses, 1);
	assert_int_equal(f->accepted, 0);
	run_for(f, LISTENER_BACKOFF_FIRST_MS * 4);
	/* 100 ms, then 200 ms: no more than a try a pause. */
	assert_in_range(f->pauses, 2, 4);
	assert_int_equal(f->accepted, 0);
	restore(f);
}

static void test_the_waiting_connections_are_accepted_once_there_is_room(void **state)
{
	struct fixture *f = *state;
	exhaust(f);
	run_for(f, LISTENER_BACKOFF_FIRST_MS / 2);
	assert_int_equal(f->pauses, 1);
	restore(f);
	run_for(f, LISTENER_BACKOFF_MAX_MS + LISTENER_BACKOFF_FIRST_MS);
	assert_int_equal(f->accepted, CLIENTS);
	assert_int_equal(f->pauses, 1);
}

static void test_the_pause_doubles_while_failures_go_on_up_to_the_most(void **state)
{
	struct fixture *f = *state;
	exhaust(f);
	/* Tries at 0, 100, 300, 700, 1500, 2500 ms (pauses of 100, 200, 400,
	 * 800, 1000): 5 within 2 s, where a fixed first pause would make 20. */
	run_for(f, 2000);
	assert_in_range(f->pauses, 5, 6);
	restore(f);
	run_for(f, LISTENER_BACKOFF_MAX_MS + LISTENER_BACKOFF_FIRST_MS);
	assert_int_equal(f->accepted, CLIENTS);
}

static void test_a_held_listener_accepts_nothing_until_released(void **state)
{
	struct fixture *f = *state;
	listener_backoff_hold(f->backoff, 1);
	run_for(f, 200);
	assert_int_equal(f->accepted, 0);
	listener_backoff_hold(f->backoff, 0);
	run_for(f, 100);
	assert_int_equal(f->accepted, CLIENTS);
	assert_int_equal(f->pauses, 0);
}

static void test_connections_waiting_in_the_backlog_are_seen(void **state)
{
	struct fixture *f = *state;
	listener_backoff_hold(f->backoff, 1);
	assert_true(listener_backoff_waiting(f->backoff));
	listener_backoff_hold(f->backoff, 0);
	run_for(f, 100);
	assert_int_equal(f->accepted, CLIENTS);
	assert_false(listener_backoff_waiting(f->backoff));
}

static void test_the_end_of_a_pause_does_not_release_a_hold(void **state)
{
	struct fixture *f = *state;
	exhaust(f);
	run_for(f, LISTENER_BACKOFF_FIRST_MS / 2);
	assert_int_equal(f->pauses, 1);
	listener_backoff_hold(f->backoff, 1);
	restore(f);
	/* The pause ends within this while; the hold keeps the listener off. */
	run_for(f, LISTENER_BACKOFF_MAX_MS + LISTENER_BACKOFF_FIRST_MS);
	assert_int_equal(f->accepted, 0);
	listener_backoff_hold(f->backoff, 0);
	run_for(f, 100);
	assert_int_equal(f->accepted, CLIENTS);
}

static void test_releasing_a_hold_during_a_pause_waits_for_the_pause(void **state)
{
	struct fixture *f = *state;
	listener_backoff_hold(f->backoff, 1);
	exhaust(f);
	/* Held, nothing is tried: no failure, no pause. */
	run_for(f, LISTENER_BACKOFF_FIRST_MS);
	assert_int_equal(f->pauses, 0);
	listener_backoff_hold(f->backoff, 0);
	run_for(f, LISTENER_BACKOFF_FIRST_MS / 2);
	assert_int_equal(f->pauses, 1);
	/* Released while paused: the listener stays off until the pause ends. */
	listener_backoff_hold(f->backoff, 1);
	listener_backoff_hold(f->backoff, 0);
	restore(f);
	run_for(f, LISTENER_BACKOFF_FIRST_MS / 4);
	assert_int_equal(f->accepted, 0);
	run_for(f, LISTENER_BACKOFF_FIRST_MS * 2);
	assert_int_equal(f->accepted, CLIENTS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_out_of_descriptors_the_listener_pauses_instead_of_spinning, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_the_waiting_connections_are_accepted_once_there_is_room, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_the_pause_doubles_while_failures_go_on_up_to_the_most, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_held_listener_accepts_nothing_until_released,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_the_end_of_a_pause_does_not_release_a_hold, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_connections_waiting_in_the_backlog_are_seen, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_releasing_a_hold_during_a_pause_waits_for_the_pause, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
