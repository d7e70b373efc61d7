/* lua: the Lua scripts of queue/scripts/, compiled into the binaries.
 *
 * Each state change in Redis is one of these scripts; each checks the
 * current state before it writes (compare-and-set), so a message delivered
 * twice changes nothing the second time. See the header of each script for
 * its KEYS and ARGV.
 */
#ifndef SLUICE_LUA_H
#define SLUICE_LUA_H

#include <stddef.h>

struct lua_script {
	const char *sha1;   /* hex, of source: computed when embedded; NULL to compute */
	const char *source; /* outlives every struct redis it is added to */
};

extern const struct lua_script lua_intake;
extern const struct lua_script lua_route;
extern const struct lua_script lua_claim;
extern const struct lua_script lua_finish;
extern const struct lua_script lua_lease_renew;
extern const struct lua_script lua_handback;
extern const struct lua_script lua_reap;
extern const struct lua_script lua_requeue;
extern const struct lua_script lua_release;
extern const struct lua_script lua_retry;
extern const struct lua_script lua_cancel;
extern const struct lua_script lua_promote;
extern const struct lua_script lua_decide;
extern const struct lua_script lua_retry_run;
extern const struct lua_script lua_api_call;
extern const struct lua_script lua_rollout_command;
extern const struct lua_script lua_rollout_retry;
extern const struct lua_script lua_rollback;
extern const struct lua_script lua_rollout_save;
extern const struct lua_script lua_park;
extern const struct lua_script lua_outbox_lease;
extern const struct lua_script lua_outbox_leave;
extern const struct lua_script lua_outbox_forget;
extern const struct lua_script lua_outbox_dead;
extern const struct lua_script lua_read_hashes;
extern const struct lua_script lua_prune;

/* Every script above, then NULL. */
extern const struct lua_script *const lua_all[];

#endif
