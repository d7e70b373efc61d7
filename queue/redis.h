/* redis: an asynchronous Redis client on the libevent loop (hiredis).
 *
 * One connection, reconnected with exponential back-off (100 ms doubling to
 * 5 s) whenever it drops. Every command has a timeout; a command that cannot
 * complete (not connected, timed out, connection lost, error reply) reaches
 * its callback with reply == NULL and err set. Callbacks never run inside the
 * call that queued them. Lua scripts added with redis_script_add are run by
 * EVALSHA; on every connect those the server lacks (SCRIPT EXISTS) are
 * loaded, and a NOSCRIPT reply loads the script again and retries once. A server older than Redis
 * REDIS_MIN_MAJOR.0 (its INFO's redis_version) is not used. With a password,
 * AUTH is the first command of every connection; a connection whose AUTH is
 * refused counts as failed (logged once per outage, retried with back-off).
 */
#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>

#include "queue/lua.h"

/* The scripts use SET with both NX and GET. */
#define REDIS_MIN_MAJOR 7

struct redis;

/* reply is valid only during the callback; on failure it is NULL and err says why. */
typedef void (*redis_cb)(struct redis *r, redisReply *reply, const char *err, void *arg);

/* url: "redis://host:port", "host:port" or "unix:/path/to.sock", never with
 * a user or password, since the url is logged. password: sent with AUTH (as
 * user's when user is not NULL) on every connect; NULL: no AUTH. Both are
 * copied, and never logged. */
struct redis *redis_new(struct event_base *base, const char *url, const char *user,
			const char *password, int timeout_ms);
/* What is wrong with a url that redis_new would not take. */
enum redis_url_fault {
	REDIS_URL_MALFORMED = -1,   /* (or memory ran out) */
	REDIS_URL_CREDENTIALS = -2, /* it holds user:password@ */
};
/* 0 when redis_new would take url, else its fault: for the settings
 * loader, which knows where url was written. */
int redis_url_check(const char *url);
/* Fails every pending command with err "shutting down", then frees. Those
 * callbacks run inside this call; commands they send are refused (-1). */
void redis_free(struct redis *r);
int redis_connected(const struct redis *r);
/* Whether a command that failed with a callback's err may succeed if sent
 * again later: the client's own failures (not connected, connection lost,
 * timeout, out of memory) and the server's passing refusals (OOM, LOADING,
 * BUSY, TRYAGAIN, MASTERDOWN). Not "shutting down", nor another error
 * reply (WRONGTYPE, NOPERM, a script's error), which the same command
 * would get again. */
int redis_err_passing(const char *err);
/* Successful connects so far (0 before the first): a change means a new
 * connection, for state a module sets up once per connection. */
unsigned long redis_connect_count(const struct redis *r);
/* Called after each successful (re)connect, once the scripts are loaded. */
void redis_on_connect(struct redis *r, void (*cb)(struct redis *r, void *arg), void *arg);

/* A command Redis did not answer is sent again after REDIS_RETRY_FIRST_MS,
 * then twice as long each time up to REDIS_RETRY_MAX_MS, as the client
 * connects again: redis_retry_wait returns the wait of *ms and doubles it. */
#define REDIS_RETRY_FIRST_MS 100
#define REDIS_RETRY_MAX_MS   5000
struct timeval redis_retry_wait(int *ms);

/* printf-style command (hiredis format: %s, %b with pointer and size_t, %d...). */
int redis_command(struct redis *r, redis_cb cb, void *arg, const char *fmt, ...);
int redis_command_argv(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
		       const size_t *lens);

/* Hashes read together: HGETALL of each key given to redis_hashes_add, all
 * in one read-only script (queue/scripts/read_hashes.lua, whose handle from
 * redis_script_add is script) at redis_hashes_read. The replies are one
 * moment's state, none of another client's writes between them, and Redis
 * answers even when out of memory (maxmemory), where it would refuse the
 * commands of a MULTI. Each callback then gets its hash (an array of fields
 * and values, empty when the key is absent); when the read fails as a
 * whole, every callback gets the error. NULL from begin, or -1 from add:
 * not taken (out of memory); redis_hashes_read calls back later, or at once
 * (with every callback's error) when the script cannot be sent. */
struct redis_hashes;
struct redis_hashes *redis_hashes_begin(struct redis *r, int script);
int redis_hashes_add(struct redis_hashes *h, redis_cb cb, void *arg, const char *key_fmt, ...)
    __attribute__((format(printf, 4, 5)));
void redis_hashes_read(struct redis_hashes *h);

/* Registers a script; returns its handle (>= 0) or -1. Call before the loop
 * runs. Its source is kept, not copied, and read only when the server lacks
 * the script. A script added again keeps its first handle. */
int redis_script_add(struct redis *r, const struct lua_script *script);
/* EVALSHA handle nkeys keys... args...: argv holds the keys first, then the args. */
int redis_script_run(struct redis *r, int script, redis_cb cb, void *arg, int nkeys, int argc,
		     const char **argv, const size_t *lens);

/* From the text of INFO: 1 when its redis_version is REDIS_MIN_MAJOR.0 or
 * later, 0 when older, -1 when it names none; found gets the version. */
int redis_version_ok(const char *info, char *found, size_t len);

#endif
