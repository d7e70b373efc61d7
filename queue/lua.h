/* lua: the Lua scripts of queue/scripts/, compiled into the binaries.
 *
 * Each state change in Redis is one of these scripts; each checks the
 * current state before it writes (compare-and-set), so a message delivered
 * twice changes nothing the second time. See the header of each script for
 * its KEYS and ARGV.
 */
#ifndef SLUICE_LUA_H
#define SLUICE_LUA_H

extern const char lua_intake[];
extern const char lua_route[];
extern const char lua_claim[];
extern const char lua_finish[];
extern const char lua_lease_renew[];
extern const char lua_handback[];
extern const char lua_reap[];
extern const char lua_requeue[];
extern const char lua_release[];
extern const char lua_retry[];
extern const char lua_cancel[];
extern const char lua_promote[];
extern const char lua_decide[];
extern const char lua_retry_run[];
extern const char lua_api_call[];
extern const char lua_rollout_command[];
extern const char lua_rollout_retry[];
extern const char lua_rollback[];
extern const char lua_rollout_save[];
extern const char lua_park[];
extern const char lua_outbox_lease[];
extern const char lua_outbox_leave[];

#endif
