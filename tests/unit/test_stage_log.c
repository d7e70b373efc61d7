/* Tests for a stage's log lines on their way to Redis (workers/stage_log.c),
 * against a real redis-server (redisd.h): lines Redis did not answer while
 * it was away are written once it is back, in order and once each; a line
 * Redis refuses is dropped; the children's output is held while too much
 * waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/clock.h"
#include "queue/redis.h"
#include "tests/unit/redisd.h"
#include "workers/stage_log.h"
#include "workers/worker.h"

#define KEY "sluice:log:r_1:build"

static struct redisd srv;

static int group_setup(void **state)
{
	(void)state;
	return redisd_setup(&srv, "stage-log");
}

static int group_teardown(void **state)
{
	(void)state;
	redisd_teardown(&srv);
	return 0;
}

static int connected(struct worker *w)
{
	return redis_connected(w->redis);
}

static int all_answered(struct worker *w)
{
	return w->log_in_flight == 0;
}

/* Runs the worker's loop until cond holds, ms at most; whether it holds. */
static int run_until(struct worker *w, int (*cond)(struct worker *), int ms)
{
	int64_t end = clock_mono_ms() + ms;
	while (!cond(w) && clock_mono_ms() < end) {
		struct timeval tv = {0, 10000};
		event_base_loopexit(w->base, &tv);
		event_base_dispatch(w->base);
	}
	return cond(w);
}

static void run_for(struct worker *w, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(w->base, &tv);
	event_base_dispatch(w->base);
}

static void worker_init_timeout(struct worker *w, int timeout_ms)
{
	static char prefix[] = "sluice:";

	memset(w, 0, sizeof(*w));
	w->base = event_base_new();
	assert_non_null(w->base);
	w->settings.key_prefix = prefix;
	w->redis = redis_new(w->base, srv.url, NULL, NULL, timeout_ms);
	assert_non_null(w->redis);
	assert_true(run_until(w, connected, 3000));
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	freeReplyObject(redisCommand(c, "DEL %s", KEY));
	redisFree(c);
}

static void worker_init(struct worker *w)
{
	worker_init_timeout(w, 1000);
}

static void worker_clear(struct worker *w)
{
	redis_free(w->redis);
	stage_log_free(w);
	event_base_free(w->base);
}

static int waiting(const struct worker *w)
{
	return stage_log_waiting(w, "r_1", "build");
}

static void write_line(struct worker *w, const char *text)
{
	stage_log_write(w, "r_1", "build", LOGMASK_STDOUT, text, strlen(text));
}

/* The lines of the stream, "l" of each entry in order, joined by '|'. */
static void stored_lines(char *out, size_t len)
{
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	redisReply *rep = redisCommand(c, "XRANGE %s - +", KEY);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
	out[0] = '\0';
	for (size_t i = 0; i < rep->elements; i++) {
		redisReply *fields = rep->element[i]->element[1];
		for (size_t f = 0; f + 1 < fields->elements; f += 2) {
			if (strcmp(fields->element[f]->str, "l") == 0) {
				size_t used = strlen(out);
				snprintf(out + used, len - used, "%s%s", used ? "|" : "",
					 fields->element[f + 1]->str);
			}
		}
	}
	freeReplyObject(rep);
	redisFree(c);
}

static void lines_redis_answers_are_stored_in_order(void **state)
{
	(void)state;
	struct worker w;
	char got[256];
	worker_init(&w);
	write_line(&w, "one");
	write_line(&w, "two");
	write_line(&w, "three");
	assert_true(run_until(&w, all_answered, 3000));
	assert_false(waiting(&w));
	stored_lines(got, sizeof(got));
	assert_string_equal(got, "one|two|three");
	worker_clear(&w);
}

static void lines_written_while_redis_is_away_are_stored_once_it_is_back(void **state)
{
	(void)state;
	struct worker w;
	char got[256];
	worker_init(&w);
	redisd_kill(&srv, SIGKILL);
	/* Some written before the client knows the connection is gone,
	 * some after it has failed them. */
	write_line(&w, "a");
	write_line(&w, "b");
	run_for(&w, 300);
	assert_true(waiting(&w));
	write_line(&w, "c");
	run_for(&w, 300);
	write_line(&w, "d");
	assert_true(waiting(&w));
	assert_true(w.log_in_flight > 0);

	assert_int_equal(redisd_start(&srv), 0);
	assert_true(run_until(&w, all_answered, 10000));
	assert_false(waiting(&w));
	stored_lines(got, sizeof(got));
	assert_string_equal(got, "a|b|c|d");
	/* Lines after the outage go straight through. */
	write_line(&w, "e");
	assert_false(waiting(&w));
	assert_true(run_until(&w, all_answered, 3000));
	stored_lines(got, sizeof(got));
	assert_string_equal(got, "a|b|c|d|e");
	worker_clear(&w);
}

static void lines_written_while_redis_hangs_are_stored_in_order(void **state)
{
	(void)state;
	struct worker w;
	char got[256];
	worker_init_timeout(&w, 300);
	kill(srv.pid, SIGSTOP);
	write_line(&w, "a");
	write_line(&w, "b");
	/* Their writes time out, the connection is dropped and opened again
	 * to a server that does not answer. */
	run_for(&w, 500);
	assert_true(waiting(&w));
	write_line(&w, "c");
	run_for(&w, 400);
	write_line(&w, "d");
	kill(srv.pid, SIGCONT);
	assert_true(run_until(&w, all_answered, 15000));
	assert_false(waiting(&w));
	stored_lines(got, sizeof(got));
	/* Redis may have stored a write whose answer timed out, before it saw
	 * the connection close: that line is stored twice. In the order they
	 * were written, each first time. */
	char firsts[16] = "";
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(got, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
		assert_int_equal(strlen(t), 1);
		assert_true(t[0] >= 'a' && t[0] <= 'd');
		if (!strchr(firsts, t[0]))
			firsts[strlen(firsts)] = t[0];
		n++;
	}
	assert_string_equal(firsts, "abcd");
	assert_true(n <= 8);
	worker_clear(&w);
}

static void a_stage_waits_only_for_its_own_lines(void **state)
{
	(void)state;
	struct worker w;
	worker_init(&w);
	redisd_kill(&srv, SIGKILL);
	stage_log_write(&w, "r_1", "test", LOGMASK_STDOUT, "other", 5);
	run_for(&w, 300);
	assert_true(stage_log_waiting(&w, "r_1", "test"));
	assert_false(waiting(&w));
	assert_int_equal(redisd_start(&srv), 0);
	assert_true(run_until(&w, all_answered, 10000));
	assert_false(stage_log_waiting(&w, "r_1", "test"));
	worker_clear(&w);
}

static void a_line_redis_refuses_is_dropped(void **state)
{
	(void)state;
	struct worker w;
	worker_init(&w);
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	freeReplyObject(redisCommand(c, "SET %s not-a-stream", KEY));
	write_line(&w, "refused");
	assert_true(run_until(&w, all_answered, 3000));
	assert_false(waiting(&w));
	redisReply *rep = redisCommand(c, "GET %s", KEY);
	assert_non_null(rep);
	assert_string_equal(rep->str, "not-a-stream");
	freeReplyObject(rep);
	redisFree(c);
	worker_clear(&w);
}

static void output_is_held_while_too_many_lines_wait(void **state)
{
	(void)state;
	struct worker w;
	static char line[4096];
	worker_init(&w);
	memset(line, 'x', sizeof(line) - 1);
	redisd_kill(&srv, SIGKILL);
	run_for(&w, 200);
	size_t n = STAGE_LOG_HOLD_BYTES / sizeof(line) + 1;
	for (size_t i = 0; i < n; i++)
		write_line(&w, line);
	assert_true(w.log_held);
	assert_int_equal(redisd_start(&srv), 0);
	assert_true(run_until(&w, all_answered, 20000));
	assert_false(w.log_held);
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	redisReply *rep = redisCommand(c, "XLEN %s", KEY);
	assert_non_null(rep);
	assert_int_equal(rep->integer, (long long)n);
	freeReplyObject(rep);
	redisFree(c);
	worker_clear(&w);
}

static void lines_still_waiting_when_the_worker_stops_are_dropped(void **state)
{
	(void)state;
	struct worker w;
	worker_init(&w);
	redisd_kill(&srv, SIGKILL);
	write_line(&w, "never");
	run_for(&w, 200);
	assert_true(waiting(&w));
	redis_free(w.redis);
	stage_log_free(&w);
	assert_null(w.log);
	assert_int_equal(w.log_in_flight, 0);
	event_base_free(w.base);
	assert_int_equal(redisd_start(&srv), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lines_redis_answers_are_stored_in_order),
	    cmocka_unit_test(lines_written_while_redis_is_away_are_stored_once_it_is_back),
	    cmocka_unit_test(lines_written_while_redis_hangs_are_stored_in_order),
	    cmocka_unit_test(a_stage_waits_only_for_its_own_lines),
	    cmocka_unit_test(a_line_redis_refuses_is_dropped),
	    cmocka_unit_test(output_is_held_while_too_many_lines_wait),
	    cmocka_unit_test(lines_still_waiting_when_the_worker_stops_are_dropped),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
