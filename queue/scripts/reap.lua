-- reap: a stage whose lease expired lost its worker. The attempt is recorded
-- as lost, and the stage either runs again with attempt + 1 or, once it has
-- had max_attempts, fails: its job goes to the dead-letter topic and a result
-- goes to the router, which skips the dependants and may finish the run as
-- for any failed stage.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt (as the
-- caller read it), ARGV[5] now (ms), ARGV[6] max attempts,
-- ARGV[7] job topic, ARGV[8] job envelope for attempt + 1,
-- ARGV[9] dead-letter topic, ARGV[10] job envelope of this attempt,
-- ARGV[11] result topic, ARGV[12] result envelope (status "lost").
--
-- In a cancelled run only the abort of a rollout runs again
-- (lib/strategy.lua): the stage is queued with attempt + 1 and the command
-- abort, or fails once it had max_attempts, as above. Any other stage is
-- cancelled; a deployment's result still goes to the router, which frees
-- the environment.
-- Returns "requeued", "failed", "cancelled" (the run was cancelled: nothing
-- runs again), or, with nothing changed: "leased" (the lease is still held;
-- its expiry in the leases set is brought up to date), "stale" (the stage
-- moved on, e.g. another agent reaped it first) or "gone".
local P, run, stage, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, max = tonumber(ARGV[5]), tonumber(ARGV[6])
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage
local member = run .. '/' .. stage

local ttl = redis.call('PTTL', P .. 'lease:' .. run .. ':' .. stage)
if ttl ~= -2 then
  if ttl > 0 then
    redis.call('ZADD', P .. 'leases', now + ttl, member)
  end
  return 'leased'
end
local rstatus = redis.call('HGET', rkey, 'status')
local st = redis.call('HMGET', skey, 'status', 'attempt', 'worker', 'started', 'attempts')
if not rstatus or not st[1] then
  redis.call('ZREM', P .. 'leases', member)
  return 'gone'
end
if st[1] ~= 'running' then
  redis.call('ZREM', P .. 'leases', member)
  return 'stale'
end
if st[2] ~= attempt then
  -- A later attempt runs; its own lease decides its fate.
  return 'stale'
end

local history = st[5] and cjson.decode(st[5]) or {}
history[#history + 1] = {attempt = tonumber(attempt), status = 'lost', worker = st[3],
                         started = tonumber(st[4]), finished = now}
local lost = 0
for _, a in ipairs(history) do
  if a.status == 'lost' then
    lost = lost + 1
  end
end
redis.call('HSET', skey, 'attempts', cjson.encode(history))
redis.call('HDEL', skey, 'worker', 'exit_code', 'signal', 'routed')
redis.call('ZREM', P .. 'leases', member)
local n = tonumber(attempt)
local open = rstatus == 'queued' or rstatus == 'running'
local sdef, abort = {}, false
if not open then
  local def = cjson.decode(redis.call('HGET', rkey, 'def') or '{}')
  sdef = def.stages and def.stages[stage] or {}
  abort = strat_aborts_when_cancelled(P, run, sdef)
end
emit_stage(P, 'stage.lost', run, stage, attempt,
           {worker = st[3], lost = lost, final = (open or abort) and n >= max})

if not open and not abort then
  strat_end_cancelled(P, run, stage, attempt, sdef, st[4], now, ARGV[11], ARGV[12])
  return 'cancelled'
end
if n < max then
  if abort then
    strat_abort_cancelled(skey, now)
  end
  redis.call('HSET', skey, 'status', 'queued', 'attempt', n + 1, 'queued_at', now)
  redis.call('HDEL', skey, 'started', 'finished', 'error')
  redis.call('ZADD', P .. 'queued', now, member)
  outbox_add(P, ARGV[7], run, ARGV[8])
  emit_stage(P, 'stage.queued', run, stage, n + 1, {})
  return 'requeued'
end
redis.call('HSET', skey, 'status', 'failed', 'finished', now, 'error', 'lost ' .. lost .. ' times')
emit_stage(P, 'stage.finished', run, stage, attempt,
           {status = 'failed', error = 'lost ' .. lost .. ' times',
            duration_ms = st[4] and now - tonumber(st[4]) or nil})
outbox_add(P, ARGV[9], run, ARGV[10])
outbox_add(P, ARGV[11], run, ARGV[12])
return 'failed'
