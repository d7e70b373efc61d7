-- cancel: stop a run. The run and every stage that has not started are
-- marked cancelled and its delayed entries dropped, so nothing more starts
-- (claim.lua and route.lua refuse a finished run); stages already running
-- are stopped by their workers, which watch the run's status and record
-- them as cancelled. Open promotions are cancelled too; a deployment that
-- has not started frees its environment at once, a running one (or one
-- that ended, its result not routed yet) when its result is routed, so
-- that what went live is recorded. A rollout parked at a pause, or waiting for a worker
-- to carry on from where an earlier attempt left it, is queued with the
-- command abort instead (lib/strategy.lua), so that a worker sends its
-- traffic back to stable. A rollback (rollback.lua) is stopped the same
-- way: one not started at once, a running one when its result is routed;
-- either ends the promotion rollback_cancelled, frees the environment and
-- gives the run back the status it had before the rollback
-- (rollback_run_status).
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] now (ms), ARGV[4] (when given)
-- JSON {"<env>": ms} of the environments whose deny windows are closed now
-- (lib/promotion.lua): the run an environment freed here passes on to is
-- held by them.
-- Returns {"cancelled", <stages still running>}, {"finished", <status>} when
-- the run had already ended, or {"gone"}.
local P, run, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local opens = ARGV[4] and cjson.decode(ARGV[4]) or {}
local rkey = P .. 'run:' .. run
local r = redis.call('HMGET', rkey, 'status', 'def')
if not r[1] then
  return {'gone'}
end
if r[1] ~= 'queued' and r[1] ~= 'running' and r[1] ~= 'waiting' then
  return {'finished', r[1]}
end
redis.call('HSET', rkey, 'status', 'cancelled', 'finished', now)
emit(P, 'run.cancelled', run, 'runs/' .. run, {status = 'cancelled'})

local waiting = {pending = true, queued = true, retrying = true}
local running = 0
local cancelled_here = {}
local def = cjson.decode(r[2])
for name, sdef in pairs(def.stages) do
  local skey = rkey .. ':stage:' .. name
  local st = redis.call('HMGET', skey, 'status', 'attempt', 'rollout')
  local s = st[1]
  -- A rollout parked at a pause, or waiting for a worker to go on from
  -- where an earlier attempt left it, may hold traffic: a worker takes it
  -- back to abort it.
  if (s == 'paused' or (waiting[s] and st[3])) and strat_aborts_when_cancelled(P, run, sdef) then
    strat_abort_cancelled(skey, now)
    redis.call('HSET', skey, 'status', 'queued', 'queued_at', now)
    redis.call('HDEL', skey, 'resume_entry', 'retry_at')
    redis.call('ZADD', P .. 'queued', now, run .. '/' .. name)
    promo_job(P, run, name, st[2] or 1)
    emit_stage(P, 'stage.queued', run, name, st[2] or 1, {command = 'abort'})
    running = running + 1
  elseif waiting[s] then
    cancelled_here[name] = true
    redis.call('HSET', skey, 'status', 'cancelled', 'finished', now)
    redis.call('HDEL', skey, 'retry_at')
    redis.call('ZREM', P .. 'queued', run .. '/' .. name)
    emit_stage(P, 'stage.cancelled', run, name, st[2] or 1, {})
  elseif s == 'running' then
    running = running + 1
  end
end
-- A deployment that ended before this cancellation but whose result is
-- not routed yet has its promotion ended by the router too (route.lua),
-- which records what went live first.
local ended = {succeeded = true, failed = true, timed_out = true, cancelled = true, lost = true,
               aborted = true, rolled_back = true}
for env, _ in pairs(def.environments or {}) do
  local e = redis.call('HGET', promo_key(P, run, env), 'status')
  local d = redis.call('HMGET', rkey .. ':stage:deploy@' .. env, 'status', 'command', 'routed')
  local ds = d[1]
  local deploying = ds == 'running' or (ds == 'queued' and d[2] == 'abort') or
                      (ended[ds] and d[3] ~= '1' and not cancelled_here['deploy@' .. env])
  if promo_waits[e] or (e == 'deploying' and not deploying) then
    promo_close(P, run, env, 'cancelled', now)
    promo_release(P, run, env, now, opens)
  elseif e == 'rolling_back' and not deploying then
    promo_rolled_back(P, run, env, 'cancelled', now, opens)
  end
end
for _, entry in ipairs(redis.call('SMEMBERS', rkey .. ':delayed')) do
  redis.call('ZREM', P .. 'delayed', entry)
end
redis.call('DEL', rkey .. ':delayed')
return {'cancelled', tostring(running)}
