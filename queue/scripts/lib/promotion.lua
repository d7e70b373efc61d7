-- promotion: prepended by tools/embed-lua.sh, after events, to every script
-- that calls it.
--
-- A run whose CI stages all succeeded is offered to the environments of its
-- definition one after another (def.environments, a chain through "after").
-- Each environment deploys with the stage "deploy@<env>". Keys:
--   run:<id>:env:<env>   status pending -> waiting_window | waiting_approval
--                        | queued (for the lock) -> deploying -> deployed |
--                        failed | rejected | expired | superseded | cancelled;
--                        offered, started, finished, window_until (the last
--                        instant a deny window held it until), expires_at
--   approval:<id>:<env>  decision (approved | rejected), by, at, reason
--   env:<pipeline>:<env> current, previous (run ids), lock (the run deploying)
--   env:<pipeline>:<env>:waiting  runs offered and not started yet, scored by
--                        their creation time: only the newest one may wait,
--                        an older one is superseded.
-- opens: {<env>: ms} for each environment whose deny windows hold now, with
-- the instant they open again (the agent computes it, config/window.c).

local promo_waits = {pending = true, waiting_window = true, waiting_approval = true,
                     queued = true}

local function promo_subject(run, env)
  return 'runs/' .. run .. '/environments/' .. env
end

local function promo_pipeline(P, run)
  return redis.call('HGET', P .. 'run:' .. run, 'pipeline') or ''
end

local function promo_key(P, run, env)
  return P .. 'run:' .. run .. ':env:' .. env
end

local function promo_env_key(P, pipeline, env)
  return P .. 'env:' .. pipeline .. ':' .. env
end

-- A run ends: its deployments not started are skipped.
local function promo_end_run(P, run, def, status, now)
  local rkey = P .. 'run:' .. run
  redis.call('HSET', rkey, 'status', status, 'finished', now)
  for name, stage in pairs(def.stages) do
    local skey = rkey .. ':stage:' .. name
    if stage.env and redis.call('HGET', skey, 'status') == 'pending' then
      redis.call('HSET', skey, 'status', 'skipped', 'finished', now)
      emit_stage(P, 'stage.skipped', run, name, redis.call('HGET', skey, 'attempt') or 1,
                 {env = stage.env})
    end
  end
  emit(P, 'run.finished', run, 'runs/' .. run, {status = status})
end

-- The promotion of run to env is over without (or after) deploying.
local function promo_close(P, run, env, status, now)
  redis.call('HSET', promo_key(P, run, env), 'status', status, 'finished', now)
  redis.call('ZREM', promo_env_key(P, promo_pipeline(P, run), env) .. ':waiting', run)
  emit(P, 'promotion.finished', run, promo_subject(run, env), {env = env, status = status})
end

-- The approval of run to env was not given by its expires_at: sluice
-- rejects it ("expired"), the promotion ends expired and the run rejected.
local function promo_expire(P, run, env, def, now)
  redis.call('HSET', P .. 'approval:' .. run .. ':' .. env, 'decision', 'rejected', 'by', 'sluice',
             'at', now, 'reason', 'expired')
  emit(P, 'approval.decided', run, promo_subject(run, env),
       {env = env, decision = 'rejected', by = 'sluice', reason = 'expired'})
  promo_close(P, run, env, 'expired', now)
  promo_end_run(P, run, def, 'rejected', now)
end

-- The job of a deployment, as the agent's jobs_prepare writes it
-- (queue/jobs.c): a worker cannot tell them apart.
-- attempt may come as Redis gives it, a string: the job carries a number,
-- which is all a worker takes.
local function promo_job(P, run, stage, attempt)
  attempt = tonumber(attempt)
  local id, _, time = sluice_event_id(P)
  local value = cjson.encode({
    specversion = '1.0',
    id = id,
    source = 'sluice-agent',
    type = 'dev.sluice.job.requested',
    subject = 'runs/' .. run .. '/stages/' .. stage .. '/attempts/' .. attempt,
    time = time,
    datacontenttype = 'application/json',
    data = {run = run, stage = stage, attempt = attempt, kind = 'deploy'},
  })
  outbox_add(P, '@jobs.deploy', run, value)
end

-- Takes the environment's lock and queues the deployment.
local function promo_start(P, run, env, now)
  local pkey = promo_env_key(P, promo_pipeline(P, run), env)
  local stage = 'deploy@' .. env
  local skey = P .. 'run:' .. run .. ':stage:' .. stage
  local attempt = tonumber(redis.call('HGET', skey, 'attempt') or '1')
  redis.call('HSET', pkey, 'lock', run)
  redis.call('ZREM', pkey .. ':waiting', run)
  redis.call('HSET', skey, 'status', 'queued', 'attempt', attempt, 'queued_at', now)
  redis.call('ZADD', P .. 'queued', now, run .. '/' .. stage)
  promo_job(P, run, stage, attempt)
  redis.call('HSET', promo_key(P, run, env), 'status', 'deploying', 'started', now)
  redis.call('HSET', P .. 'run:' .. run, 'status', 'running')
  emit(P, 'promotion.started', run, promo_subject(run, env), {env = env})
  emit_stage(P, 'stage.queued', run, stage, attempt, {env = env})
end

-- A delayed entry (release.lua) that brings the run back to the router when
-- a gate may have changed: "window" (the window opens) or "approval" (the
-- approval expires). Its id and time are fixed so that the same gate at the
-- same instant is one entry.
local function promo_later(P, run, env, gate, due)
  local value = cjson.encode({
    specversion = '1.0',
    id = string.format('%s-%s-%s-%d', run, env, gate, due),
    source = 'sluice-agent',
    type = 'dev.sluice.promotion.ready',
    subject = promo_subject(run, env),
    time = sluice_rfc3339(due),
    datacontenttype = 'application/json',
    data = {run = run, env = env, gate = gate},
  })
  local entry = cjson.encode({topic = '@results', value = value, run = run})
  redis.call('ZADD', P .. 'delayed', due, entry)
  redis.call('SADD', P .. 'run:' .. run .. ':delayed', entry)
end

-- The gates of an open promotion, in order: deny windows, approval, lock.
-- Returns the promotion's status after them.
local function promo_gates(P, run, env, def, now, opens)
  local ekey = promo_key(P, run, env)
  local e = redis.call('HMGET', ekey, 'status', 'window_until', 'expires_at')
  local conf = def.environments[env]
  local rkey = P .. 'run:' .. run
  local closed = tonumber(opens[env] or 0)
  if closed > now then
    if e[1] ~= 'waiting_window' or tonumber(e[2]) ~= closed then
      redis.call('HSET', ekey, 'status', 'waiting_window', 'window_until', closed)
      emit(P, 'promotion.waiting', run, promo_subject(run, env),
           {env = env, gate = 'window', ['until'] = sluice_rfc3339(closed)})
    end
    -- Again when unchanged: the entry that brought the run here may have
    -- been released early (another agent's clock ahead of this one's), and
    -- with it gone nothing would look at the gate again. The same entry
    -- at the same time is one entry.
    promo_later(P, run, env, 'window', closed)
    redis.call('HSET', rkey, 'status', 'waiting')
    return 'waiting_window'
  end
  if conf.approval.required and
     redis.call('HGET', P .. 'approval:' .. run .. ':' .. env, 'decision') ~= 'approved' then
    if e[1] ~= 'waiting_approval' then
      redis.call('HSET', ekey, 'status', 'waiting_approval', 'approval_requested', now)
      local data = {env = env, gate = 'approval'}
      if conf.approval.expires_s > 0 and not e[3] then
        local due = now + conf.approval.expires_s * 1000
        redis.call('HSET', ekey, 'expires_at', due)
        promo_later(P, run, env, 'approval', due)
        data.expires_at = sluice_rfc3339(due)
      end
      emit(P, 'promotion.waiting', run, promo_subject(run, env), data)
    end
    redis.call('HSET', rkey, 'status', 'waiting')
    return 'waiting_approval'
  end
  local lock = redis.call('HGET', promo_env_key(P, promo_pipeline(P, run), env), 'lock')
  if not lock then
    promo_start(P, run, env, now)
    return 'deploying'
  end
  if e[1] ~= 'queued' then
    redis.call('HSET', ekey, 'status', 'queued')
    emit(P, 'promotion.waiting', run, promo_subject(run, env),
         {env = env, gate = 'lock', holder = lock})
  end
  redis.call('HSET', rkey, 'status', 'running')
  return 'queued'
end

-- The deny windows of env in def, as text to compare.
local function promo_windows(def, env)
  local conf = def.environments and def.environments[env]
  return cjson.encode(conf and conf.windows or cjson.null)
end

-- Frees the environment if run holds it and passes the newest run waiting
-- for the lock on to its gates again: a deny window may have closed while it
-- waited, and then holds it until it opens. opens: as for promo_gates, read
-- from run's definition. The waiting run's own definition may have other
-- windows (the pipeline file changed between the two runs): its gates are
-- then checked by promote.lua at once, with opens read from its own.
local function promo_release(P, run, env, now, opens)
  local pkey = promo_env_key(P, promo_pipeline(P, run), env)
  if redis.call('HGET', pkey, 'lock') == run then
    redis.call('HDEL', pkey, 'lock')
  end
  if redis.call('HEXISTS', pkey, 'lock') == 1 then
    return
  end
  for _, other in ipairs(redis.call('ZREVRANGE', pkey .. ':waiting', 0, -1)) do
    local okey = promo_key(P, other, env)
    if redis.call('HGET', okey, 'status') == 'queued' then
      local odef = cjson.decode(redis.call('HGET', P .. 'run:' .. other, 'def'))
      local def = cjson.decode(redis.call('HGET', P .. 'run:' .. run, 'def') or '{}')
      if promo_windows(def, env) == promo_windows(odef, env) then
        promo_gates(P, other, env, odef, now, opens)
      else
        redis.call('HSET', okey, 'status', 'waiting_window', 'window_until', now)
        promo_later(P, other, env, 'window', now)
      end
      return
    end
  end
end

-- Offers run to env, once. The newest run waiting for an environment wins:
-- older ones that have not started are superseded, and so is run when a
-- newer one already waits. Returns the run's status afterwards.
local function promo_offer(P, run, env, def, now, opens)
  local ekey = promo_key(P, run, env)
  local rkey = P .. 'run:' .. run
  if redis.call('EXISTS', ekey) == 1 then
    return redis.call('HGET', rkey, 'status')
  end
  local created = tonumber(redis.call('HGET', rkey, 'created') or now)
  redis.call('HSET', ekey, 'status', 'pending', 'offered', now)
  emit(P, 'promotion.offered', run, promo_subject(run, env), {env = env})
  local pkey = promo_env_key(P, promo_pipeline(P, run), env)
  local wkey = pkey .. ':waiting'
  local others = redis.call('ZRANGE', wkey, 0, -1, 'WITHSCORES')
  -- A newer run waiting there, deploying there or current there: this
  -- older one never replaces it (a rollback puts an older release back, on
  -- purpose; a run triggered by hand is a new one).
  local e = redis.call('HMGET', pkey, 'lock', 'current')
  for i = 1, 2 do
    if e[i] and e[i] ~= run then
      others[#others + 1] = e[i]
      others[#others + 1] = redis.call('HGET', P .. 'run:' .. e[i], 'created') or 0
    end
  end
  for i = 1, #others, 2 do
    local other, score = others[i], tonumber(others[i + 1]) or 0
    if score > created or (score == created and other > run) then
      promo_close(P, run, env, 'superseded', now)
      promo_end_run(P, run, def, 'superseded', now)
      return 'superseded'
    end
  end
  others = redis.call('ZRANGE', wkey, 0, -1)
  for _, other in ipairs(others) do
    local odef = cjson.decode(redis.call('HGET', P .. 'run:' .. other, 'def') or '{}')
    promo_close(P, other, env, 'superseded', now)
    if odef.stages then
      promo_end_run(P, other, odef, 'superseded', now)
    end
  end
  redis.call('ZADD', wkey, created, run)
  promo_gates(P, run, env, def, now, opens)
  return redis.call('HGET', rkey, 'status')
end

-- The environment that comes after env in def's chain, or nil.
local function promo_next(def, env)
  for name, conf in pairs(def.environments or {}) do
    if conf.after == env then
      return name
    end
  end
  return nil
end

-- The first environment of def's chain, or nil when it has none.
local function promo_first(def)
  for name, conf in pairs(def.environments or {}) do
    if conf.after == cjson.null or conf.after == nil then
      return name
    end
  end
  return nil
end

-- The rollout's state the worker saved with the deployment of run to env,
-- or nil (a deployment without a strategy).
local function promo_rollout(P, run, env)
  local ok, state = pcall(cjson.decode,
                          redis.call('HGET', P .. 'run:' .. run .. ':stage:deploy@' .. env,
                                     'rollout') or '')
  if ok and type(state) == 'table' then
    return state
  end
  return nil
end

-- The blue/green colour a rollout's state leaves live when it ends: the
-- new one once traffic was switched to it and not switched back (the
-- weights follow every switch that went through, an abort's switch back
-- too); nil when the colour live before still is.
local function promo_live_color(state)
  if not state or not state.color or state.switched ~= true or
     type(state.weights) ~= 'table' then
    return nil
  end
  if tonumber(state.weights[state.color]) == 100 then
    return state.color
  end
  return nil
end

-- Whether a rollout that did not succeed failed past its point of no return
-- (stages/rollout.c: a step marked final failed, the new release being the
-- stable one already), which fails it without an abort.
local function promo_past_no_return(state)
  local step = state and type(state.steps) == 'table' and
                 state.steps[(tonumber(state.step) or -1) + 1]
  return type(step) == 'table' and step.final == true and step.status == 'failed'
end

-- run's release is env's current one now, the one before it the previous.
-- With a strategy the environment keeps the image released and the colour
-- live, for a rollback and the next blue/green deployment.
local function promo_make_current(P, run, env, state, now)
  local pkey = promo_env_key(P, promo_pipeline(P, run), env)
  local current = redis.call('HGET', pkey, 'current')
  if current and current ~= run then
    redis.call('HSET', pkey, 'previous', current, 'previous_at',
               redis.call('HGET', pkey, 'current_at') or now)
    local image = redis.call('HGET', pkey, 'current_image')
    if image then
      redis.call('HSET', pkey, 'previous_image', image)
    else
      redis.call('HDEL', pkey, 'previous_image')
    end
  end
  redis.call('HSET', pkey, 'current', run, 'current_at', now)
  -- A release deployed without an image has none: the one before's is not
  -- its own, for a rollback to put back.
  if state and type(state.image) == 'string' and state.image ~= '' then
    redis.call('HSET', pkey, 'current_image', state.image)
  else
    redis.call('HDEL', pkey, 'current_image')
  end
  if state and state.color then
    redis.call('HSET', pkey, 'active_color', state.color)
  end
end

-- A rollback of env (rollback.lua) ended with stage status st: the
-- environment's current release is the previous one again, or stays as it
-- was when the rollback failed or was stopped by the run's cancellation
-- (st cancelled, or aborted by the worker that took it over: the promotion
-- is rollback_cancelled). The run gets back the status it had.
-- opens: as for promo_gates.
local function promo_rolled_back(P, run, env, st, now, opens)
  local ekey = promo_key(P, run, env)
  local skey = P .. 'run:' .. run .. ':stage:deploy@' .. env
  local f = redis.call('HMGET', skey, 'rollback_run', 'rollback_image', 'rollback_run_status')
  local state = promo_rollout(P, run, env)
  local back = f[3] or 'succeeded'
  local status = 'rollback_failed'
  if st == 'rolled_back' then
    status = 'rolled_back'
  elseif st == 'cancelled' or st == 'aborted' then
    status = 'rollback_cancelled'
  end
  local pkey = promo_env_key(P, promo_pipeline(P, run), env)
  if st == 'rolled_back' then
    redis.call('HSET', pkey, 'current', f[1], 'current_at', now, 'current_image', f[2])
    redis.call('HDEL', pkey, 'previous', 'previous_at', 'previous_image')
    if state and state.color then
      redis.call('HSET', pkey, 'active_color', state.color)
    end
  elseif promo_live_color(state) then
    redis.call('HSET', pkey, 'active_color', state.color)
  end
  redis.call('HSET', ekey, 'status', status, 'finished', now)
  -- release: the run whose release is back, only when one is.
  emit(P, 'promotion.finished', run, promo_subject(run, env),
       {env = env, status = status, release = status == 'rolled_back' and f[1] or nil})
  promo_release(P, run, env, now, opens)
  redis.call('HSET', P .. 'run:' .. run, 'status', back, 'finished', now)
  emit(P, 'run.finished', run, 'runs/' .. run, {status = back})
  return back
end

-- What the deployment of run to env, ended with stage status st, left
-- live, recorded with the environment: its release once it succeeded or
-- failed past its point of no return, else the blue/green colour it
-- switched to and could not switch back. Whether the run goes on or was
-- cancelled meanwhile, the next deployment and a rollback start from it.
local function promo_record_live(P, run, env, st, now)
  local state = promo_rollout(P, run, env)
  if st == 'succeeded' or promo_past_no_return(state) then
    promo_make_current(P, run, env, state, now)
  elseif promo_live_color(state) then
    redis.call('HSET', promo_env_key(P, promo_pipeline(P, run), env), 'active_color',
               state.color)
  end
end

-- The deployment of run to env ended with stage status st (the run still
-- open). Returns the run's status afterwards. A rollout that aborted ends
-- the run aborted. A deployment that did not succeed may still have left
-- its release live: past its point of no return it is the environment's
-- current one, as after a success; short of it, a blue/green switch not
-- switched back leaves the new colour live.
local function promo_deployed(P, run, env, def, st, now, opens)
  local ekey = promo_key(P, run, env)
  local estatus = redis.call('HGET', ekey, 'status')
  if estatus == 'rolling_back' then
    return promo_rolled_back(P, run, env, st, now, opens)
  end
  if estatus ~= 'deploying' then
    return redis.call('HGET', P .. 'run:' .. run, 'status')
  end
  promo_record_live(P, run, env, st, now)
  if st ~= 'succeeded' then
    local outcome = st == 'aborted' and 'aborted' or 'failed'
    promo_close(P, run, env, outcome, now)
    promo_release(P, run, env, now, opens)
    promo_end_run(P, run, def, outcome, now)
    return outcome
  end
  promo_close(P, run, env, 'deployed', now)
  promo_release(P, run, env, now, opens)
  local nxt = promo_next(def, env)
  if nxt then
    return promo_offer(P, run, nxt, def, now, opens)
  end
  promo_end_run(P, run, def, 'succeeded', now)
  return 'succeeded'
end
