-- route: advance a run after one of its stages finished.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] now (ms), ARGV[6] JSON object of prepared jobs for the stages
-- that need the finished one: {"<stage>": {"topic": ..., "value": ...}}.
-- Stages of the run are those of the run's recorded definition ("def").
-- ARGV[7] and ARGV[8], when given and not "": a dead-letter topic and
-- message, sent once with the routing (a stage that exhausted its retries).
-- ARGV[9], when given: the JSON object {"<env>": ms} of the environments
-- whose deny windows are closed now, with when they open (lib/promotion.lua).
-- ARGV[10], when given: what routing reads of the run's definition, from an
-- agent that holds it: {"stages": {"<stage>": {"needs": [...], "env": ...}},
-- "environments": ...}; otherwise the recorded definition is decoded.
--
-- Deployments (stages "deploy@<env>", def "env") are no part of the CI
-- graph: when every CI stage succeeded, the run is offered to its first
-- environment instead of finishing, and a finished deployment moves the
-- promotion on (lib/promotion.lua).
--
-- A failed stage skips every stage that depends on it, directly or not; a
-- stage whose needs have all succeeded is queued with its prepared job; when
-- no stage is left to run, the run is finished: succeeded when every stage
-- succeeded, failed otherwise. The stage is marked routed, so a result
-- delivered twice changes nothing the second time.
-- Returns {outcome, run status, started stage names...} with outcome one of
-- "routed", "duplicate", "stale", "not-finished", "gone".
local P, run, stage, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(ARGV[5])
local jobs = cjson.decode(ARGV[6])
local opens = ARGV[9] and cjson.decode(ARGV[9]) or {}
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage

local r = ARGV[10] and {redis.call('HGET', rkey, 'status')} or
            redis.call('HMGET', rkey, 'status', 'def')
local st = redis.call('HMGET', skey, 'status', 'attempt', 'routed')
if not r[1] or not st[1] then
  return {'gone', ''}
end
if st[2] ~= attempt then
  return {'stale', r[1]}
end
local terminal = {succeeded = true, failed = true, timed_out = true, cancelled = true,
                  skipped = true, lost = true, aborted = true, rolled_back = true}
if not terminal[st[1]] then
  return {'not-finished', r[1]}
end
if st[3] == '1' then
  return {'duplicate', r[1]}
end
redis.call('HSET', skey, 'routed', '1')
if ARGV[8] and ARGV[8] ~= '' then
  outbox_add(P, ARGV[7], run, ARGV[8])
end
local def = cjson.decode(ARGV[10] or r[2])
local deploy_env = def.stages[stage] and def.stages[stage].env
if r[1] ~= 'queued' and r[1] ~= 'running' then
  -- A deployment stopped by the run's cancellation frees its environment,
  -- which keeps what it left live (one that succeeded before it saw the
  -- cancellation is the current release); so does a rollback, which gives
  -- the run back the status it had.
  local e = deploy_env and redis.call('HGET', promo_key(P, run, deploy_env), 'status')
  if e == 'deploying' then
    promo_record_live(P, run, deploy_env, st[1], now)
    promo_close(P, run, deploy_env, 'cancelled', now)
    promo_release(P, run, deploy_env, now, opens)
  elseif e == 'rolling_back' then
    return {'routed', promo_rolled_back(P, run, deploy_env, st[1], now, opens)}
  end
  return {'routed', r[1]}
end
if deploy_env then
  return {'routed', promo_deployed(P, run, deploy_env, def, st[1], now, opens)}
end

local names = {}
for name, sdef in pairs(def.stages) do
  if not sdef.env then
    names[#names + 1] = name
  end
end
table.sort(names)

-- A stage's status, read when first wanted: a routing reads the finished
-- stage's dependants and their needs, and the run's other stages only as
-- far as it takes to tell whether the run is over (all of them when a stage
-- did not succeed, or the run ends). A stage left out by its `when` is as
-- good as succeeded to the others. Another stage that failed but whose
-- result is not routed yet is "finishing": its own routing decides whether
-- it is retried (retry.lua) or failed for good, so until then it neither
-- skips its dependants nor lets the run end (results of two stages may
-- arrive in either order).
local unrouted_failure = {failed = true, timed_out = true, lost = true}
local status = setmetatable({}, {__index = function(t, name)
  local h = redis.call('HMGET', rkey .. ':stage:' .. name, 'status', 'skipped_by', 'routed')
  local s = h[1]
  if s == 'skipped' and h[2] == 'when' then
    s = 'succeeded'
  elseif unrouted_failure[s] and h[3] ~= '1' and name ~= stage then
    s = 'finishing'
  end
  rawset(t, name, s)
  return s
end})

local function set_status(name, value)
  status[name] = value
  redis.call('HSET', rkey .. ':stage:' .. name, 'status', value)
end

-- Skips spread until nothing changes: a pending stage is skipped as soon as
-- one of its needs can no longer succeed. Only a stage that did not succeed
-- starts them (earlier ones spread when those stages were routed).
local changed = status[stage] ~= 'succeeded'
while changed do
  changed = false
  for _, name in ipairs(names) do
    if status[name] == 'pending' then
      for _, need in ipairs(def.stages[name].needs) do
        local s = status[need]
        if terminal[s] and s ~= 'succeeded' then
          set_status(name, 'skipped')
          redis.call('HSET', rkey .. ':stage:' .. name, 'finished', now)
          emit_stage(P, 'stage.skipped', run, name,
                     redis.call('HGET', rkey .. ':stage:' .. name, 'attempt') or 1,
                     {need = need, need_status = s})
          changed = true
          break
        end
      end
    end
  end
end

local started = {}
for _, name in ipairs(names) do
  local job = jobs[name]
  if job and status[name] == 'pending' then
    local ready = true
    for _, need in ipairs(def.stages[name].needs) do
      if status[need] ~= 'succeeded' then
        ready = false
      end
    end
    if ready then
      set_status(name, 'queued')
      redis.call('HSET', rkey .. ':stage:' .. name, 'queued_at', now)
      redis.call('ZADD', P .. 'queued', now, run .. '/' .. name)
      outbox_add(P, job.topic, run, job.value)
      emit_stage(P, 'stage.queued', run, name,
                 redis.call('HGET', rkey .. ':stage:' .. name, 'attempt') or 1, {})
      started[#started + 1] = name
    end
  end
end

-- Open while a stage is left to run: one just queued is, or else the first
-- found, looked for from the stage after the finished one (by name), where
-- stages that have not run yet likelier stand.
local open, failed = #started > 0, false
local from = 0
for i, name in ipairs(names) do
  if name == stage then
    from = i
  end
end
for k = 1, open and 0 or #names do
  local s = status[names[(from + k - 1) % #names + 1]]
  if not terminal[s] then
    open = true
    break
  elseif s ~= 'succeeded' then
    failed = true
  end
end
local run_status = r[1]
local first = not open and not failed and promo_first(def)
if first then
  run_status = promo_offer(P, run, first, def, now, opens)
elseif not open then
  run_status = failed and 'failed' or 'succeeded'
  promo_end_run(P, run, def, run_status, now)
end
return {'routed', run_status, unpack(started)}
