/* redis: an asynchronous Redis client on the libevent loop (hiredis).
 *
 * One connection, reconnected with exponential back-off (100 ms doubling to
 * 5 s) whenever it drops. Every command has a timeout; a command that cannot
 * complete (not connected, timed out, connection lost, error reply) reaches
 * its callback with reply == NULL and err set. Callbacks never run inside the
 * call that queued them. Lua scripts added with redis_script_add are run by
 * EVALSHA; on every connect those the server lacks (SCRIPT EXISTS) are
 * loaded, and a NOSCRIPT reply loads the script again and retries once. A server older than Redis
 * REDIS_MIN_MAJOR.0 (its INFO's redis_version) is not used.
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

/* url: "redis://host:port", "host:port" or "unix:/path/to.sock". */
struct redis *redis_new(struct event_base *base, const char *url, int timeout_ms);
/* Fails every pending command with err "shutting down", then frees. Those
 * callbacks run inside this call; commands they send are refused (-1). */
void redis_free(struct redis *r);
int redis_connected(const struct redis *r);
/* Successful connects so far (0 before the first): a change means a new
 * connection, for state a module sets up once per connection. */
unsigned long redis_connect_count(const struct redis *r);
/* Called after each successful (re)connect, once the scripts are loaded. */
void redis_on_connect(struct redis *r, void (*cb)(struct redis *r, void *arg), void *arg);

/* printf-style command (hiredis format: %s, %b with pointer and size_t, %d...). */
int redis_command(struct redis *r, redis_cb cb, void *arg, const char *fmt, ...);
int redis_command_argv(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
		       const size_t *lens);

/* A transaction: the commands given to redis_txn_command run together at
 * redis_txn_exec (MULTI ... EXEC), none of another client's between them,
 * so their replies are one moment's state. Each callback then gets its own
 * command's reply or error; when the transaction fails as a whole, every
 * callback gets the error. Between begin and exec nothing else may be sent
 * on r. NULL, or -1 from redis_txn_command: not queued (out of memory, or r
 * is being freed); redis_txn_exec calls back later, or at once (with every
 * callback's error) when even EXEC cannot be queued. */
struct redis_txn;
struct redis_txn *redis_txn_begin(struct redis *r);
int redis_txn_command(struct redis_txn *t, redis_cb cb, void *arg, const char *fmt, ...);
void redis_txn_exec(struct redis_txn *t);

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
