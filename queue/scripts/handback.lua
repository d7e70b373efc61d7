-- handback: a worker that stops gives a stage attempt it will not finish
-- back to the queue, so another worker runs it without waiting for the
-- lease to expire. The attempt is recorded as handed_back and the stage
-- queued again with attempt + 1, so that a late result of the handed-back
-- attempt is fenced off like that of a lost one.
--
-- In a cancelled run only the abort of a rollout is handed back
-- (lib/strategy.lua), with the command abort; any other stage is
-- cancelled, and a deployment's result (status "cancelled") goes to the
-- router, which frees the environment. Such a stage keeps its start, as
-- one its worker stopped does, so that a retry of the run gives it the
-- next attempt (retry_run.lua).
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] now (ms), ARGV[7] job topic,
-- ARGV[8] job envelope for attempt + 1, ARGV[9] result topic,
-- ARGV[10] result envelope of this attempt, status "cancelled".
-- Returns "handed-back", "cancelled" (the run was cancelled meanwhile:
-- nothing runs again), or "fenced" when the attempt is no longer this
-- worker's.
local P, run, stage, attempt, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(ARGV[6])
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage
local member = run .. '/' .. stage
local st = redis.call('HMGET', skey, 'status', 'attempt', 'worker', 'started', 'attempts')
if st[1] ~= 'running' or st[2] ~= attempt or st[3] ~= token then
  return 'fenced'
end

local history = st[5] and cjson.decode(st[5]) or {}
history[#history + 1] = {attempt = tonumber(attempt), status = 'handed_back', worker = token,
                         started = tonumber(st[4]), finished = now}
redis.call('HSET', skey, 'attempts', cjson.encode(history))
redis.call('HDEL', skey, 'worker', 'exit_code', 'signal', 'error', 'routed')
local lkey = P .. 'lease:' .. run .. ':' .. stage
if redis.call('GET', lkey) == token .. '/' .. attempt then
  redis.call('DEL', lkey)
end
redis.call('ZREM', P .. 'leases', member)
emit_stage(P, 'stage.handed_back', run, stage, attempt, {worker = token})

local rstatus = redis.call('HGET', rkey, 'status')
if rstatus ~= 'queued' and rstatus ~= 'running' then
  local def = cjson.decode(redis.call('HGET', rkey, 'def') or '{}')
  local sdef = def.stages and def.stages[stage] or {}
  if not strat_aborts_when_cancelled(P, run, sdef) then
    strat_end_cancelled(P, run, stage, attempt, sdef, st[4], now, ARGV[9], ARGV[10])
    return 'cancelled'
  end
  strat_abort_cancelled(skey, now)
end
redis.call('HSET', skey, 'status', 'queued', 'attempt', tonumber(attempt) + 1, 'queued_at', now)
redis.call('HDEL', skey, 'started', 'finished')
redis.call('ZADD', P .. 'queued', now, member)
outbox_add(P, ARGV[7], run, ARGV[8])
emit_stage(P, 'stage.queued', run, stage, tonumber(attempt) + 1, {})
return 'handed-back'
