-- outbox_lease: take, keep or give up the right to publish the events
-- stream (outbox:events). One dispatcher at a time holds it and publishes
-- the events in the order the scripts recorded them (queue/outbox.c).
--
-- ARGV[1] the lease's key, ARGV[2] the dispatcher's token (host:pid),
-- ARGV[3] how long it holds from now (ms), or 0 to give it up.
-- Returns 1 when the token holds the lease afterwards, else 0.
local key, token, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local holder = redis.call('GET', key)
if holder and holder ~= token then
  return 0
end
if ms == 0 then
  if holder then
    redis.call('DEL', key)
  end
  return 0
end
redis.call('SET', key, token, 'PX', ms)
return 1
