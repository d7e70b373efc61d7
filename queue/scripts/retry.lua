-- retry: instead of routing a failed stage attempt, schedule the next
-- attempt after a back-off: the stage waits as "retrying" with attempt + 1
-- and the job for that attempt sits in the delayed set until it is due
-- (release.lua). The run stays open meanwhile.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt that
-- finished, ARGV[5] its status as the result reports it, ARGV[6] due time
-- (ms), ARGV[7] the delayed entry (see release.lua) for attempt + 1.
-- Returns "retrying", "route" (the run no longer runs, or the stage's state
-- is not the one reported: route.lua decides), "stale" (another attempt is
-- current), "duplicate" (this result was routed already) or "gone".
local P, run, stage, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage

local rstatus = redis.call('HGET', rkey, 'status')
local st = redis.call('HMGET', skey, 'status', 'attempt', 'routed')
if not rstatus or not st[1] then
  return 'gone'
end
if st[2] ~= attempt then
  return 'stale'
end
if st[3] == '1' then
  return 'duplicate'
end
if (rstatus ~= 'queued' and rstatus ~= 'running') or st[1] ~= ARGV[5] then
  return 'route'
end
redis.call('HSET', skey, 'status', 'retrying', 'attempt', tonumber(attempt) + 1, 'retry_at',
           ARGV[6])
redis.call('HDEL', skey, 'worker', 'started', 'finished', 'exit_code', 'signal', 'error')
redis.call('ZADD', P .. 'delayed', ARGV[6], ARGV[7])
redis.call('SADD', rkey .. ':delayed', ARGV[7])
emit_stage(P, 'stage.retrying', run, stage, tonumber(attempt) + 1,
           {failed_attempt = tonumber(attempt), status = ARGV[5], retry_at = tonumber(ARGV[6])})
return 'retrying'
