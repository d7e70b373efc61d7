-- finish: record the outcome of a stage attempt and its result message,
-- then release the lease (compare-and-delete).
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] status, ARGV[7] exit code or "",
-- ARGV[8] signal name or "", ARGV[9] error text or "", ARGV[10] now (ms),
-- ARGV[11] result topic, ARGV[12] result envelope, ARGV[13] (may be
-- absent or "") the stage's outputs as a JSON object, ARGV[14] (may be
-- absent) the stage's "retry" and "max_attempts" from the run's definition,
-- as a JSON object, from a worker that has the definition decoded already.
-- ARGV[15] (may be absent or "") a rollout's state as it ended
-- (stages/rollout.h), recorded with the outcome: the saves the worker made
-- on the way (rollout_save.lua) may have been lost while Redis was away,
-- and the router reads what the rollout left live from this state.
-- Returns "recorded", or "fenced" when this attempt is no longer the
-- current one or no longer this worker's (its result is dropped). A worker
-- that sends again an outcome recorded already (the reply was lost) is
-- answered "recorded" again, and nothing changes.
local P, run, stage, attempt, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local skey = P .. 'run:' .. run .. ':stage:' .. stage
local st = redis.call('HMGET', skey, 'status', 'attempt', 'worker', 'started', 'attempts')
if st[1] ~= 'running' or st[2] ~= attempt or st[3] ~= token then
  for _, a in ipairs(st[5] and cjson.decode(st[5]) or {}) do
    if a.attempt == tonumber(attempt) and a.worker == token and a.status == ARGV[6] then
      return 'recorded'
    end
  end
  return 'fenced'
end

redis.call('HSET', skey, 'status', ARGV[6], 'finished', ARGV[10])
if ARGV[7] ~= '' then
  redis.call('HSET', skey, 'exit_code', ARGV[7])
end
if ARGV[8] ~= '' then
  redis.call('HSET', skey, 'signal', ARGV[8])
end
if ARGV[9] ~= '' then
  redis.call('HSET', skey, 'error', ARGV[9])
end
if ARGV[13] and ARGV[13] ~= '' then
  redis.call('HSET', skey, 'outputs', ARGV[13])
end
if ARGV[15] and ARGV[15] ~= '' then
  redis.call('HSET', skey, 'rollout', ARGV[15])
end
-- Every attempt that ended stays in the stage's history, retried or not.
local history = st[5] and cjson.decode(st[5]) or {}
history[#history + 1] = {attempt = tonumber(attempt), status = ARGV[6], worker = token,
                         started = tonumber(st[4]), finished = tonumber(ARGV[10]),
                         exit_code = tonumber(ARGV[7]), signal = ARGV[8] ~= '' and ARGV[8] or nil}
redis.call('HSET', skey, 'attempts', cjson.encode(history))
outbox_add(P, ARGV[11], run, ARGV[12])
-- The stage's retry policy travels with the event, so that a consumer can
-- tell a failure that will be retried from a final one (config/retry.h).
local sdef
if ARGV[14] then
  sdef = cjson.decode(ARGV[14])
else
  local def = cjson.decode(redis.call('HGET', P .. 'run:' .. run, 'def') or '{}')
  sdef = def.stages and def.stages[stage] or {}
end
local started = tonumber(st[4])
emit_stage(P, 'stage.finished', run, stage, attempt,
           {status = ARGV[6], exit_code = tonumber(ARGV[7]),
            signal = ARGV[8] ~= '' and ARGV[8] or nil, error = ARGV[9] ~= '' and ARGV[9] or nil,
            duration_ms = started and tonumber(ARGV[10]) - started or nil,
            retry = sdef.retry, max_attempts = sdef.max_attempts})

local lkey = P .. 'lease:' .. run .. ':' .. stage
if redis.call('GET', lkey) == token .. '/' .. attempt then
  redis.call('DEL', lkey)
end
redis.call('ZREM', P .. 'leases', run .. '/' .. stage)
return 'recorded'
