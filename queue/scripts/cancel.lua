-- cancel: stop a run. The run and every stage that has not started are
-- marked cancelled and its delayed entries dropped, so nothing more starts
-- (claim.lua and route.lua refuse a finished run); stages already running
-- are stopped by their workers, which watch the run's status and record
-- them as cancelled.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] now (ms).
-- Returns {"cancelled", <stages still running>}, {"finished", <status>} when
-- the run had already ended, or {"gone"}.
local P, run, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rkey = P .. 'run:' .. run
local r = redis.call('HMGET', rkey, 'status', 'def')
if not r[1] then
  return {'gone'}
end
if r[1] ~= 'queued' and r[1] ~= 'running' then
  return {'finished', r[1]}
end
redis.call('HSET', rkey, 'status', 'cancelled', 'finished', now)

local waiting = {pending = true, queued = true, retrying = true}
local running = 0
local def = cjson.decode(r[2])
for name, _ in pairs(def.stages) do
  local skey = rkey .. ':stage:' .. name
  local s = redis.call('HGET', skey, 'status')
  if waiting[s] then
    redis.call('HSET', skey, 'status', 'cancelled', 'finished', now)
    redis.call('HDEL', skey, 'retry_at')
    redis.call('ZREM', P .. 'queued', run .. '/' .. name)
  elseif s == 'running' then
    running = running + 1
  end
end
for _, entry in ipairs(redis.call('SMEMBERS', rkey .. ':delayed')) do
  redis.call('ZREM', P .. 'delayed', entry)
end
redis.call('DEL', rkey .. ':delayed')
return {'cancelled', tostring(running)}
