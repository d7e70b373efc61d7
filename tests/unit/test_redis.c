/* Tests for queue/redis against a real redis-server started on a free port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/hex.h"
#include "lib/sha.h"
#include "queue/lua.h"
#include "queue/redis.h"
#include "tests/unit/redisd.h"

static struct redisd srv;
static struct event_base *base;

static int group_setup(void **state)
{
	(void)state;
	if (redisd_setup(&srv, "redis") < 0)
		return -1;
	base = event_base_new();
	return base ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	redisd_teardown(&srv);
	event_base_free(base);
	return 0;
}

/* Runs the loop until *flag becomes non-zero or ms pass; returns *flag. */
static int run_until(const int *flag, int ms)
{
	int64_t end = clock_mono_ms() + ms;
	while (!*flag && clock_mono_ms() < end) {
		struct timeval tv = {0, 5000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return *flag;
}

static void run_for(int ms)
{
	int never = 0;
	run_until(&never, ms);
}

/* What a callback saw. */
struct result {
	int called;
	int type;
	long long integer;
	char str[256];
	char err[256];
};

static void record(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct result *res = arg;
	(void)r;
	res->called++;
	if (err) {
		assert_null(reply);
		snprintf(res->err, sizeof(res->err), "%s", err);
		return;
	}
	res->type = reply->type;
	res->integer = reply->integer;
	if (reply->str && reply->len < sizeof(res->str))
		memcpy(res->str, reply->str, reply->len);
}

static void count_connect(struct redis *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
}

static struct redis *connect_client(const char *url, int timeout_ms, int *connects)
{
	struct redis *r = redis_new(base, url, NULL, NULL, timeout_ms);
	assert_non_null(r);
	redis_on_connect(r, count_connect, connects);
	return r;
}

static char url_tcp[64];

static void set_get_round_trip_through_callbacks(void **state)
{
	(void)state;
	int connects = 0;
	snprintf(url_tcp, sizeof(url_tcp), "redis://127.0.0.1:%d", srv.port);
	struct redis *r = connect_client(url_tcp, 1000, &connects);
	assert_true(run_until(&connects, 3000));
	assert_true(redis_connected(r));

	struct result set = {0}, get = {0};
	assert_int_equal(redis_command(r, record, &set, "SET %s %b", "k1", "v\0x", (size_t)3), 0);
	const char *argv[] = {"GET", "k1"};
	assert_int_equal(redis_command_argv(r, record, &get, 2, argv, NULL), 0);
	assert_int_equal(set.called, 0);
	assert_true(run_until(&get.called, 2000));
	assert_int_equal(set.called, 1);
	assert_int_equal(set.type, REDIS_REPLY_STATUS);
	assert_string_equal(set.str, "OK");
	assert_int_equal(get.type, REDIS_REPLY_STRING);
	assert_memory_equal(get.str, "v\0x", 3);
	redis_free(r);
}

static void error_reply_reaches_callback_as_err(void **state)
{
	(void)state;
	int connects = 0;
	char url[64];
	snprintf(url, sizeof(url), "127.0.0.1:%d", srv.port);
	struct redis *r = connect_client(url, 1000, &connects);
	assert_true(run_until(&connects, 3000));

	struct result set = {0}, incr = {0};
	redis_command(r, record, &set, "SET k2 notanumber");
	redis_command(r, record, &incr, "INCR k2");
	assert_true(run_until(&incr.called, 2000));
	assert_string_equal(incr.err, "ERR value is not an integer or out of range");
	redis_free(r);
}

static void unix_socket_url_connects(void **state)
{
	(void)state;
	int connects = 0;
	char url[192];
	snprintf(url, sizeof(url), "unix:%s", srv.sock);
	struct redis *r = connect_client(url, 1000, &connects);
	assert_true(run_until(&connects, 3000));
	struct result ping = {0};
	redis_command(r, record, &ping, "PING");
	assert_true(run_until(&ping.called, 2000));
	assert_string_equal(ping.str, "PONG");
	redis_free(r);
}

static void bad_urls_are_refused(void **state)
{
	(void)state;
	assert_null(redis_new(base, "redis://", NULL, NULL, 1000));
	assert_null(redis_new(base, "127.0.0.1:0", NULL, NULL, 1000));
	assert_null(redis_new(base, "127.0.0.1:70000", NULL, NULL, 1000));
	assert_null(redis_new(base, "127.0.0.1:12x", NULL, NULL, 1000));
	assert_null(redis_new(base, "[::1", NULL, NULL, 1000));
	assert_null(redis_new(base, "unix:relative.sock", NULL, NULL, 1000));
	assert_null(redis_new(base, "redis://:s3cret@127.0.0.1:6379", NULL, NULL, 1000));
	assert_int_equal(redis_url_check("redis://sluice:s3cret@127.0.0.1:6379"),
			 REDIS_URL_CREDENTIALS);
	assert_int_equal(redis_url_check("unix:/run/redis@main/redis.sock"), 0);
}

static void scripts_run_by_evalsha_and_survive_script_flush(void **state)
{
	(void)state;
	int connects = 0;
	struct redis *r = connect_client(url_tcp, 1000, &connects);
	static const struct lua_script concat_script = {
	    NULL, "return KEYS[1] .. ':' .. ARGV[1] .. ':' .. ARGV[2]"};
	static const struct lua_script fails_script = {
	    NULL, "return redis.error_reply('stage is not running')"};
	int concat = redis_script_add(r, &concat_script);
	int fails = redis_script_add(r, &fails_script);
	assert_true(concat >= 0);
	assert_true(fails > concat);
	assert_true(run_until(&connects, 3000));

	const char *argv[] = {"key", "a", "b\0c"};
	const size_t lens[] = {3, 1, 3};
	struct result first = {0};
	assert_int_equal(redis_script_run(r, concat, record, &first, 1, 3, argv, lens), 0);
	assert_true(run_until(&first.called, 2000));
	assert_string_equal(first.err, "");
	assert_memory_equal(first.str, "key:a:b\0c", 9);

	struct result own_error = {0};
	redis_script_run(r, fails, record, &own_error, 0, 0, NULL, NULL);
	assert_true(run_until(&own_error.called, 2000));
	assert_string_equal(own_error.err, "stage is not running");

	struct result flush = {0}, again = {0};
	redis_command(r, record, &flush, "SCRIPT FLUSH");
	redis_script_run(r, concat, record, &again, 1, 3, argv, lens);
	assert_true(run_until(&again.called, 2000));
	assert_string_equal(flush.str, "OK");
	assert_string_equal(again.err, "");
	assert_memory_equal(again.str, "key:a:b\0c", 9);

	assert_int_equal(redis_script_run(r, 99, record, &again, 0, 0, NULL, NULL), -1);
	assert_int_equal(redis_script_run(r, concat, record, &again, 2, 1, argv, NULL), -1);
	redis_free(r);
}

/* One command on a connection of its own, its reply dropped. */
static void server_command(const char *cmd)
{
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	freeReplyObject(redisCommand(c, cmd));
	redisFree(c);
}

/* The SHA-1 Redis knows source by, in hex. */
static void script_digest(const char *source, char hex[41])
{
	unsigned char md[SHA1_LEN];
	sha1_digest(source, strlen(source), md);
	hex_encode(md, SHA1_LEN, hex);
}

/* The number after field ("total_connections_received:") in a section of
 * INFO, read on connection c; -1 when it is not there. */
static long long info_number_on(redisContext *c, const char *section, const char *field)
{
	redisReply *info = redisCommand(c, "INFO %s", section);
	assert_non_null(info);
	const char *at = strstr(info->str, field);
	long long v = at ? atoll(at + strlen(field)) : -1;
	freeReplyObject(info);
	return v;
}

/* As info_number_on, on a connection of its own. */
static long long info_number(const char *section, const char *field)
{
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	long long v = info_number_on(c, section, field);
	redisFree(c);
	return v;
}

/* Calls of a command so far, from INFO commandstats ("script|load"). */
static long long command_calls(const char *name)
{
	char field[64];
	snprintf(field, sizeof(field), "cmdstat_%s:calls=", name);
	long long calls = info_number("commandstats", field);
	return calls < 0 ? 0 : calls;
}

static int script_exists(const char *sha1)
{
	redisContext *c = redisd_connect(&srv);
	assert_non_null(c);
	redisReply *has = redisCommand(c, "SCRIPT EXISTS %s", sha1);
	assert_non_null(has);
	assert_int_equal(has->type, REDIS_REPLY_ARRAY);
	int exists = (int)has->element[0]->integer;
	freeReplyObject(has);
	redisFree(c);
	return exists;
}

/* A script Redis has is not loaded again, so that its text is not read;
 * one it lacks (a new server, SCRIPT FLUSH) is loaded as a client connects,
 * before any EVALSHA needs it. */
static void scripts_loaded_on_connect_only_when_missing(void **state)
{
	(void)state;
	static const struct lua_script script = {NULL, "return 'loaded once: ' .. ARGV[1]"};
	server_command("SCRIPT FLUSH");

	int connects = 0;
	long long loads = command_calls("script|load");
	struct redis *first = connect_client(url_tcp, 1000, &connects);
	int handle = redis_script_add(first, &script);
	static const struct lua_script other = {NULL, "return 2"};
	assert_int_equal(redis_script_add(first, &other), handle + 1);
	assert_int_equal(redis_script_add(first, &script), handle);
	assert_true(run_until(&connects, 3000));
	assert_int_equal(command_calls("script|load"), loads + 2);

	int second_connects = 0;
	struct redis *second = connect_client(url_tcp, 1000, &second_connects);
	assert_int_equal(redis_script_add(second, &script), handle);
	assert_true(run_until(&second_connects, 3000));
	assert_int_equal(command_calls("script|load"), loads + 2);

	/* Flushed, then the connection dropped: the reconnect loads it. */
	redis_free(first);
	server_command("SCRIPT FLUSH");
	server_command("CLIENT KILL TYPE normal SKIPME yes");
	int64_t end = clock_mono_ms() + 4000;
	while (second_connects < 2 && clock_mono_ms() < end)
		run_for(20);
	assert_int_equal(second_connects, 2);
	assert_int_equal(command_calls("script|load"), loads + 3);

	char sha1[41];
	script_digest(script.source, sha1);
	assert_int_equal(script_exists(sha1), 1);
	const char *argv[] = {"x"};
	struct result ran = {0};
	assert_int_equal(redis_script_run(second, handle, record, &ran, 0, 1, argv, NULL), 0);
	assert_true(run_until(&ran.called, 2000));
	assert_string_equal(ran.str, "loaded once: x");
	redis_free(second);
}

/* A script added while the connect sequence's SCRIPT EXISTS is under way
 * (Redis paused meanwhile) is not in its reply: the connection stays, and
 * the script is loaded by the NOSCRIPT reply to its first run. */
static void a_script_added_while_connecting_keeps_the_connection(void **state)
{
	(void)state;
	static const struct lua_script first = {NULL, "return 'first'"};
	static const struct lua_script later = {NULL, "return 'added later'"};
	server_command("SCRIPT FLUSH");
	/* Connections accepted from here: the one that pauses Redis, the
	 * client's (one: never dropped), the one that reads INFO again. */
	long long before = info_number("stats", "total_connections_received:");
	server_command("CLIENT PAUSE 400 ALL");

	int connects = 0;
	struct redis *r = connect_client(url_tcp, 2000, &connects);
	redis_script_add(r, &first);
	run_for(150);
	int handle = redis_script_add(r, &later);
	assert_true(run_until(&connects, 3000));
	assert_int_equal(info_number("stats", "total_connections_received:"), before + 3);

	struct result ran = {0};
	assert_int_equal(redis_script_run(r, handle, record, &ran, 0, 0, NULL, NULL), 0);
	assert_true(run_until(&ran.called, 2000));
	assert_string_equal(ran.str, "added later");
	redis_free(r);
}

/* Each compiled-in script carries the SHA-1 of its own text (embed-lua.sh). */
static void embedded_scripts_carry_their_digest(void **state)
{
	(void)state;
	int n = 0, claim = 0;
	for (const struct lua_script *const *s = lua_all; *s; s++, n++) {
		claim |= *s == &lua_claim;
		char hex[41];
		script_digest((*s)->source, hex);
		assert_string_equal((*s)->sha1, hex);
	}
	assert_true(claim);
	assert_true(n >= 20);
}

static void slow_command_times_out_and_client_reconnects(void **state)
{
	(void)state;
	int connects = 0;
	struct redis *r = connect_client(url_tcp, 200, &connects);
	assert_true(run_until(&connects, 3000));

	server_command("CLIENT PAUSE 600");

	struct result slow = {0};
	int64_t start = clock_mono_ms();
	redis_command(r, record, &slow, "GET k1");
	assert_true(run_until(&slow.called, 2000));
	int64_t took = clock_mono_ms() - start;
	assert_string_equal(slow.err, "timeout");
	assert_true(took >= 190 && took < 500);

	int64_t end = clock_mono_ms() + 4000;
	while (connects < 2 && clock_mono_ms() < end)
		run_for(20);
	assert_int_equal(connects, 2);
	struct result ok = {0};
	redis_command(r, record, &ok, "PING");
	assert_true(run_until(&ok.called, 2000));
	assert_string_equal(ok.str, "PONG");
	/* The late reply of the timed-out GET never reached its callback. */
	assert_int_equal(slow.called, 1);
	redis_free(r);
}

static void commands_fail_while_down_and_work_after_restart(void **state)
{
	(void)state;
	int connects = 0;
	struct redis *r = connect_client(url_tcp, 500, &connects);
	assert_true(run_until(&connects, 3000));
	assert_int_equal(redis_connect_count(r), 1);

	/* A command the server never answers before it dies. */
	server_command("CLIENT PAUSE 2000");
	struct result cut = {0};
	redis_command(r, record, &cut, "GET k1");
	run_for(20);
	redisd_kill(&srv, SIGKILL);
	assert_true(run_until(&cut.called, 1000));
	assert_string_equal(cut.err, "connection lost");

	int64_t end = clock_mono_ms() + 3000;
	while (redis_connected(r) && clock_mono_ms() < end)
		run_for(10);
	assert_false(redis_connected(r));

	struct result down = {0};
	assert_int_equal(redis_command(r, record, &down, "PING"), 0);
	assert_int_equal(down.called, 0);
	assert_true(run_until(&down.called, 1000));
	assert_string_equal(down.err, "not connected");

	run_for(300);
	assert_int_equal(redisd_start(&srv), 0);
	end = clock_mono_ms() + 4000;
	while (connects < 2 && clock_mono_ms() < end)
		run_for(20);
	assert_int_equal(connects, 2);
	assert_true(redis_connected(r));
	assert_int_equal(redis_connect_count(r), 2);

	struct result set = {0}, get = {0};
	redis_command(r, record, &set, "SET k3 back");
	redis_command(r, record, &get, "GET k3");
	assert_true(run_until(&get.called, 2000));
	assert_string_equal(get.str, "back");
	redis_free(r);
}

/* A hash read by redis_hashes: its fields and values, or the error. */
struct hash_result {
	int called;
	size_t fields;
	char first[64]; /* "field=value" of the first field */
	char err[256];
};

static void record_hash(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct hash_result *h = arg;
	(void)r;
	h->called++;
	if (err) {
		assert_null(reply);
		snprintf(h->err, sizeof(h->err), "%s", err);
		return;
	}
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	h->fields = reply->elements / 2;
	if (reply->elements >= 2)
		snprintf(h->first, sizeof(h->first), "%s=%s", reply->element[0]->str,
			 reply->element[1]->str);
}

static struct redis *hashes_client(int *script)
{
	int connects = 0;
	struct redis *r = connect_client(url_tcp, 1000, &connects);
	*script = redis_script_add(r, &lua_read_hashes);
	assert_true(*script >= 0);
	assert_true(run_until(&connects, 3000));
	return r;
}

/* Each hash reaches its own callback, in order; an absent key is an empty
 * hash. */
static void hashes_read_together_answer_each_key_on_its_own(void **state)
{
	(void)state;
	int script;
	struct redis *r = hashes_client(&script);
	struct result set = {0};
	redis_command(r, record, &set, "HSET hx:1 status queued");
	redis_command(r, record, &set, "HSET hx:2 status running attempt 2");
	assert_true(run_until(&set.called, 2000));

	struct hash_result one = {0}, two = {0}, none = {0};
	struct redis_hashes *h = redis_hashes_begin(r, script);
	assert_non_null(h);
	assert_int_equal(redis_hashes_add(h, record_hash, &one, "hx:%d", 1), 0);
	assert_int_equal(redis_hashes_add(h, record_hash, &two, "hx:%s", "2"), 0);
	assert_int_equal(redis_hashes_add(h, record_hash, &none, "hx:none"), 0);
	redis_hashes_read(h);
	assert_int_equal(one.called, 0);
	assert_true(run_until(&none.called, 2000));
	assert_string_equal(one.first, "status=queued");
	assert_int_equal(two.fields, 2);
	assert_string_equal(two.first, "status=running");
	assert_int_equal(none.fields, 0);
	assert_string_equal(none.err, "");
	redis_free(r);
}

/* Redis out of memory (maxmemory reached) refuses what a MULTI queues, but
 * still runs the read-only script. */
static void hashes_are_read_when_redis_is_out_of_memory(void **state)
{
	(void)state;
	int script;
	struct redis *r = hashes_client(&script);
	struct result set = {0}, oom = {0}, multi = {0}, queued = {0}, back = {0};
	redis_command(r, record, &set, "HSET hx:3 status succeeded");
	redis_command(r, record, &oom, "CONFIG SET maxmemory 1");
	assert_true(run_until(&oom.called, 2000));
	assert_string_equal(oom.str, "OK");
	redis_command(r, record, &multi, "MULTI");
	redis_command(r, record, &queued, "HGETALL hx:3");
	redis_command(r, record, &multi, "DISCARD");
	assert_true(run_until(&queued.called, 2000));
	assert_non_null(strstr(queued.err, "OOM"));

	struct hash_result got = {0};
	struct redis_hashes *h = redis_hashes_begin(r, script);
	redis_hashes_add(h, record_hash, &got, "hx:3");
	redis_hashes_read(h);
	assert_true(run_until(&got.called, 2000));
	assert_string_equal(got.err, "");
	assert_string_equal(got.first, "status=succeeded");
	redis_command(r, record, &back, "CONFIG SET maxmemory 0");
	assert_true(run_until(&back.called, 2000));
	redis_free(r);
}

/* A key that holds no hash fails the read as a whole. */
static void a_key_that_is_no_hash_fails_every_callback(void **state)
{
	(void)state;
	int script;
	struct redis *r = hashes_client(&script);
	struct result set = {0};
	redis_command(r, record, &set, "SET hx:plain text");
	assert_true(run_until(&set.called, 2000));
	struct hash_result a = {0}, b = {0};
	struct redis_hashes *h = redis_hashes_begin(r, script);
	redis_hashes_add(h, record_hash, &a, "hx:1");
	redis_hashes_add(h, record_hash, &b, "hx:plain");
	redis_hashes_read(h);
	assert_true(run_until(&b.called, 2000));
	assert_int_equal(a.called, 1);
	assert_non_null(strstr(a.err, "WRONGTYPE"));
	assert_non_null(strstr(b.err, "WRONGTYPE"));
	redis_free(r);
}

/* Without a connection every callback gets the error, from the loop. */
static void hashes_without_a_connection_fail_every_callback(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redisd_free_port());
	struct redis *r = redis_new(base, url, NULL, NULL, 500);
	assert_non_null(r);
	int script = redis_script_add(r, &lua_read_hashes);
	struct hash_result a = {0}, b = {0};
	struct redis_hashes *h = redis_hashes_begin(r, script);
	assert_non_null(h);
	redis_hashes_add(h, record_hash, &a, "hx:4");
	redis_hashes_add(h, record_hash, &b, "hx:5");
	redis_hashes_read(h);
	assert_int_equal(a.called + b.called, 0);
	assert_true(run_until(&b.called, 2000));
	assert_string_equal(a.err, "not connected");
	assert_string_equal(b.err, "not connected");
	redis_free(r);
}

struct reissue {
	int called;
	int reissued;
	char err[64];
};

/* A command sent from a callback run by redis_free is refused at once. */
static void reissue(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct reissue *ri = arg;
	(void)reply;
	ri->called++;
	snprintf(ri->err, sizeof(ri->err), "%s", err ? err : "");
	ri->reissued = redis_command(r, reissue, ri, "PING");
}

static void free_fails_pending_commands_with_shutting_down(void **state)
{
	(void)state;
	int connects = 0;
	struct redis *r = connect_client(url_tcp, 1000, &connects);

	/* Queued before the first connect: waiting to be failed from the loop. */
	struct result early = {0};
	redis_command(r, record, &early, "PING");
	assert_int_equal(early.called, 0);
	run_until(&early.called, 1000);
	assert_string_equal(early.err, "not connected");
	assert_true(run_until(&connects, 3000));

	struct result a = {0};
	struct reissue b = {0};
	redis_command(r, record, &a, "PING");
	redis_command(r, reissue, &b, "PING");
	redis_free(r);
	assert_int_equal(a.called, 1);
	assert_string_equal(a.err, "shutting down");
	assert_int_equal(b.called, 1);
	assert_string_equal(b.err, "shutting down");
	assert_int_equal(b.reissued, -1);
	run_for(50);
	assert_int_equal(a.called, 1);
}

struct self_free {
	struct redis *r;
	int called;
};

static void free_from_callback(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct self_free *sf = arg;
	(void)reply;
	(void)err;
	sf->called++;
	redis_free(r);
}

static void free_inside_a_callback_is_safe(void **state)
{
	(void)state;
	int connects = 0;
	struct self_free sf = {0};
	sf.r = connect_client(url_tcp, 1000, &connects);
	assert_true(run_until(&connects, 3000));

	struct result later = {0};
	redis_command(sf.r, free_from_callback, &sf, "PING");
	redis_command(sf.r, record, &later, "PING");
	assert_true(run_until(&sf.called, 2000));
	assert_int_equal(later.called, 1);
	assert_string_equal(later.err, "shutting down");
	run_for(50);
}

static void the_version_is_read_from_info(void **state)
{
	char found[32];
	(void)state;
	assert_int_equal(
	    redis_version_ok("# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n", found,
			     sizeof(found)),
	    0);
	assert_string_equal(found, "6.2.14");
	assert_int_equal(
	    redis_version_ok("# Server\r\nredis_version:7.0.15\r\n", found, sizeof(found)), 1);
	assert_string_equal(found, "7.0.15");
	assert_int_equal(redis_version_ok("redis_version:10.0.0\r\n", found, sizeof(found)), 1);
	assert_int_equal(redis_version_ok("# Server\r\nos:Linux\r\n", found, sizeof(found)), -1);
	assert_int_equal(redis_version_ok(NULL, found, sizeof(found)), -1);
}

/* A stand-in for a Redis 6.2 server (none can be had here): it answers
 * INFO with that version and anything else with +PONG, on every connection,
 * until killed. Returns its pid; *port is where it listens. */
static pid_t old_server(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0) {
		close(fd);
		return pid;
	}
	static const char info[] = "# Server\r\nredis_version:6.2.14\r\n";
	char reply[128];
	int rlen = snprintf(reply, sizeof(reply), "$%zu\r\n%s\r\n", strlen(info), info);
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			_exit(1);
		char buf[4096];
		ssize_t n;
		while ((n = read(c, buf, sizeof(buf) - 1)) > 0) {
			buf[n] = '\0';
			/* One answer per command ("*<n>\r\n" starts each). */
			for (char *p = buf; (p = strchr(p, '*')) != NULL; p++) {
				if (strncmp(p + 1, "2\r\n$4\r\nINFO\r\n", 13) == 0)
					(void)!write(c, reply, (size_t)rlen);
				else
					(void)!write(c, "+PONG\r\n", 7);
			}
		}
		close(c);
	}
}

static pid_t old_pid;

static int stop_old_server(void **state)
{
	(void)state;
	if (old_pid > 0) {
		kill(old_pid, SIGKILL);
		waitpid(old_pid, NULL, 0);
	}
	old_pid = 0;
	return 0;
}

static void a_server_older_than_7_is_not_used(void **state)
{
	int port, connects = 0;
	char url[64];
	(void)state;
	old_pid = old_server(&port);
	snprintf(url, sizeof(url), "127.0.0.1:%d", port);
	struct redis *r = connect_client(url, 1000, &connects);
	run_for(1000);
	assert_int_equal(connects, 0);
	assert_false(redis_connected(r));
	struct result res = {0};
	assert_int_equal(redis_command(r, record, &res, "PING"), 0);
	assert_true(run_until(&res.called, 2000));
	assert_string_equal(res.err, "not connected");
	redis_free(r);
}

/* A connection of the test's own, opened before the server wants a
 * password and so authenticated as the default user throughout. */
static redisContext *admin;

static void admin_command(const char *cmd)
{
	redisReply *reply = redisCommand(admin, cmd);
	assert_non_null(reply);
	assert_int_not_equal(reply->type, REDIS_REPLY_ERROR);
	freeReplyObject(reply);
}

/* The default user's password is "default-pw"; user sluice's "sluice-pw". */
static int require_passwords(void **state)
{
	(void)state;
	admin = redisd_connect(&srv);
	if (!admin)
		return -1;
	admin_command("ACL SETUSER sluice on >sluice-pw ~* &* +@all");
	admin_command("CONFIG SET requirepass default-pw");
	return 0;
}

static int drop_passwords(void **state)
{
	(void)state;
	freeReplyObject(redisCommand(admin, "CONFIG SET requirepass %s", ""));
	freeReplyObject(redisCommand(admin, "ACL DELUSER sluice"));
	redisFree(admin);
	admin = NULL;
	return 0;
}

static struct redis *auth_client(const char *user, const char *password, int *connects)
{
	struct redis *r = redis_new(base, url_tcp, user, password, 1000);
	assert_non_null(r);
	redis_on_connect(r, count_connect, connects);
	return r;
}

static void whoami_is(struct redis *r, const char *user)
{
	struct result who = {0};
	redis_command(r, record, &who, "ACL WHOAMI");
	assert_true(run_until(&who.called, 2000));
	assert_string_equal(who.str, user);
}

/* AUTH goes first on every connection, as the default user or a named one.
 * A refused or missing password is a connection that failed: no command
 * goes out, and it is tried again with back-off, not in a tight loop. */
static void auth_goes_first_on_every_connect(void **state)
{
	int def = 0, user = 0, wrong = 0, wrong_user = 0, none = 0;
	(void)state;
	long long before = info_number_on(admin, "stats", "total_connections_received:");
	struct redis *d = auth_client(NULL, "default-pw", &def);
	struct redis *u = auth_client("sluice", "sluice-pw", &user);
	struct redis *w = auth_client(NULL, "wrong", &wrong);
	struct redis *wu = auth_client("sluice", "default-pw", &wrong_user);
	struct redis *n = auth_client(NULL, NULL, &none);
	run_for(1500);
	assert_int_equal(def, 1);
	assert_int_equal(user, 1);
	assert_int_equal(wrong + wrong_user + none, 0);
	whoami_is(d, "default");
	whoami_is(u, "sluice");
	struct result refused = {0};
	assert_int_equal(redis_command(w, record, &refused, "PING"), 0);
	assert_true(run_until(&refused.called, 2000));
	assert_string_equal(refused.err, "not connected");
	/* 100 ms doubling: a handful of attempts each in 1.5 s. */
	long long attempts =
	    info_number_on(admin, "stats", "total_connections_received:") - before - 2;
	assert_true(attempts >= 3 && attempts <= 3 * 6);

	admin_command("CLIENT KILL USER sluice");
	admin_command("CLIENT KILL USER default SKIPME yes");
	int64_t end = clock_mono_ms() + 3000;
	while ((def < 2 || user < 2) && clock_mono_ms() < end)
		run_for(20);
	assert_int_equal(def, 2);
	assert_int_equal(user, 2);
	whoami_is(u, "sluice");
	redis_free(d);
	redis_free(u);
	redis_free(w);
	redis_free(wu);
	redis_free(n);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(set_get_round_trip_through_callbacks),
	    cmocka_unit_test(error_reply_reaches_callback_as_err),
	    cmocka_unit_test(unix_socket_url_connects),
	    cmocka_unit_test(bad_urls_are_refused),
	    cmocka_unit_test(scripts_run_by_evalsha_and_survive_script_flush),
	    cmocka_unit_test(scripts_loaded_on_connect_only_when_missing),
	    cmocka_unit_test(a_script_added_while_connecting_keeps_the_connection),
	    cmocka_unit_test(embedded_scripts_carry_their_digest),
	    cmocka_unit_test(slow_command_times_out_and_client_reconnects),
	    cmocka_unit_test(commands_fail_while_down_and_work_after_restart),
	    cmocka_unit_test(hashes_read_together_answer_each_key_on_its_own),
	    cmocka_unit_test(hashes_are_read_when_redis_is_out_of_memory),
	    cmocka_unit_test(a_key_that_is_no_hash_fails_every_callback),
	    cmocka_unit_test(hashes_without_a_connection_fail_every_callback),
	    cmocka_unit_test(free_fails_pending_commands_with_shutting_down),
	    cmocka_unit_test(free_inside_a_callback_is_safe),
	    cmocka_unit_test(the_version_is_read_from_info),
	    cmocka_unit_test_teardown(a_server_older_than_7_is_not_used, stop_old_server),
	    cmocka_unit_test_setup_teardown(auth_goes_first_on_every_connect, require_passwords,
					    drop_passwords),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
