#!lua flags=no-writes
-- read_hashes: HGETALL of every key in KEYS, in one script so that the
-- replies are one moment's state (queue/redis.h, redis_hashes). Flagged
-- no-writes, so that Redis runs it when it is out of memory (maxmemory), as
-- it runs any read, where it refuses the commands queued in a MULTI.
-- Returns one array per key: its fields and values, empty when it is absent.
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGETALL', key)
end
return out
