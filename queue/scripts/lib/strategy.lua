-- strategy: prepended by tools/embed-lua.sh, after promotion, to every
-- script that calls it. What the operator commands of deployment strategies
-- share (rollout_command.lua, rollout_retry.lua, rollback.lua), and the
-- abort of a cancelled run's rollout (cancel.lua, reap.lua, handback.lua).
--
-- The deployment of a run to env is the stage "deploy@<env>"; its
-- definition carries "rollout" when the environment has a strategy. While a
-- rollout is parked at a pause the stage is "paused" and holds no worker;
-- "resume_entry" is then the member of the delayed set that resumes a timed
-- pause.

-- The run and its deployment to env: {rkey, run_status, def, stage, sdef
-- (the stage's definition), skey}; or nil and a reason ("gone": no such
-- run; "unknown-env": not an environment of the run; "no-strategy": with
-- strategy_only, the environment deploys without a strategy).
local function strat_deployment(P, run, env, strategy_only)
  local rkey = P .. 'run:' .. run
  local r = redis.call('HMGET', rkey, 'status', 'def')
  if not r[1] then
    return nil, 'gone'
  end
  local def = cjson.decode(r[2])
  local stage = 'deploy@' .. env
  local sdef = def.stages and def.stages[stage]
  if not sdef or not def.environments or not def.environments[env] then
    return nil, 'unknown-env'
  end
  if strategy_only and type(sdef.rollout) ~= 'table' then
    return nil, 'no-strategy'
  end
  return {rkey = rkey, run_status = r[1], def = def, stage = stage, sdef = sdef,
          skey = rkey .. ':stage:' .. stage}
end

-- The rollout state the worker saved, or nil.
local function strat_state(text)
  if not text then
    return nil
  end
  local ok, state = pcall(cjson.decode, text)
  if ok and type(state) == 'table' then
    return state
  end
  return nil
end

-- The stage's fields of one attempt, cleared for the next one; its history
-- ("attempts") stays.
local function strat_clear_attempt(skey)
  redis.call('HDEL', skey, 'worker', 'started', 'finished', 'exit_code', 'signal', 'error',
             'routed', 'retry_at', 'queued_at', 'skipped_by', 'skip_reason', 'rollout',
             'command', 'command_by', 'command_at', 'resume_entry', 'mode', 'rollback_run',
             'rollback_image', 'rollback_run_status')
end

-- Queues attempt of the stage: its job goes to the outbox with it.
local function strat_queue(P, run, stage, skey, attempt, now)
  redis.call('HSET', skey, 'status', 'queued', 'attempt', attempt, 'queued_at', now)
  redis.call('ZADD', P .. 'queued', now, run .. '/' .. stage)
  promo_job(P, run, stage, attempt)
end

-- A cancelled run's deployment with a strategy is aborted rather than
-- dropped, so that no traffic stays on a release nobody deploys any more:
-- while its promotion is open (deploying, or rolling_back), a worker takes
-- the stage back with the command abort, which claim.lua lets in for a
-- cancelled run. sdef: the stage's definition.
local function strat_aborts_when_cancelled(P, run, sdef)
  if type(sdef.rollout) ~= 'table' or not sdef.env then
    return false
  end
  local e = redis.call('HGET', promo_key(P, run, sdef.env), 'status')
  return e == 'deploying' or e == 'rolling_back'
end

-- A cancelled run's stage whose attempt started (at started, ms) and that
-- nothing runs again ends cancelled: stage.finished, as when its worker
-- stops it (stage.cancelled is for a stage that never started); a
-- deployment's result (topic, envelope: status "cancelled") goes to the
-- router, which frees the environment it held.
local function strat_end_cancelled(P, run, stage, attempt, sdef, started, now, topic, result)
  redis.call('HSET', P .. 'run:' .. run .. ':stage:' .. stage, 'status', 'cancelled',
             'finished', now)
  emit_stage(P, 'stage.finished', run, stage, attempt,
             {status = 'cancelled', duration_ms = started and now - tonumber(started) or nil,
              retry = sdef.retry, max_attempts = sdef.max_attempts})
  if sdef.env then
    outbox_add(P, topic, run, result)
  end
end

-- The abort of a cancelled run's rollout, for the worker that takes the
-- stage next.
local function strat_abort_cancelled(skey, now)
  redis.call('HSET', skey, 'command', 'abort', 'command_by', 'cancel', 'command_at', now)
end

-- An operator's command on sluice.events: who, what and why.
local function strat_emit_command(P, run, env, stage, attempt, command, by, reason, extra)
  local data = extra or {}
  data.env = env
  data.command = command
  data.by = by
  if reason ~= '' then
    data.reason = reason
  end
  emit_stage(P, 'deploy.command', run, stage, attempt, data)
end
