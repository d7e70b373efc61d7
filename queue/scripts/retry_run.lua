-- retry_run: run again the stages of a run that failed, timed out, were
-- cancelled or lost, on the same sha; succeeded stages, their outputs and
-- their workspaces stay as they are, so nothing is rebuilt.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage ("" for every such stage
-- of a finished run), ARGV[4] now (ms), ARGV[5] "" to plan only, else a
-- JSON object of the jobs the plan asked for:
-- {"<stage>": {"attempt": n, "topic": ..., "value": ...}}.
--
-- The stages retried and the stages skipped because of them (directly or
-- not; not those left out by `when`, nor those another need of which
-- failed and is not retried) are reset: a stage whose needs are all
-- satisfied is queued, with attempt + 1 when its last attempt had started
-- (the history of attempts is kept), any other waits as pending; the run is
-- running again. Deployment stages (def "env") belong to promotion and are
-- never retried here.
-- Returns {"plan", <JSON {"<stage>": {"attempt": n, "kind": k}} of the
-- stages to queue>} when planning; {"retried", <JSON array of the stages
-- queued>}; {"changed"} when the jobs given are no longer what the plan asks
-- (the caller plans again); {"conflict", message}; {"gone"} (no such run) or
-- {"unknown-stage"}.
local P, run, only, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rkey = P .. 'run:' .. run
local r = redis.call('HMGET', rkey, 'status', 'def')
if not r[1] then
  return {'gone'}
end
local def = cjson.decode(r[2])
if only ~= '' and not def.stages[only] then
  return {'unknown-stage'}
end

local retryable = {failed = true, timed_out = true, cancelled = true, lost = true}
local names, st = {}, {}
for name, spec in pairs(def.stages) do
  if not spec.env then
    names[#names + 1] = name
    local h = redis.call('HMGET', rkey .. ':stage:' .. name, 'status', 'attempt', 'started',
                         'skipped_by')
    st[name] = {status = h[1], attempt = tonumber(h[2]) or 1, started = h[3] ~= false,
                when = h[1] == 'skipped' and h[4] == 'when', needs = spec.needs,
                kind = spec.kind}
  end
end
table.sort(names)

local reset = {}
if only == '' then
  if r[1] ~= 'failed' and r[1] ~= 'cancelled' then
    if r[1] == 'succeeded' then
      return {'conflict', 'nothing to retry: the run succeeded'}
    end
    if r[1] == 'queued' or r[1] == 'running' or r[1] == 'waiting' then
      return {'conflict', 'the run has not finished (' .. r[1] .. '); retry one stage instead'}
    end
    -- Rejected, superseded or aborted: ended in its promotion, once every
    -- stage here had succeeded.
    return {'conflict', 'nothing to retry: the run is ' .. r[1] ..
            ' and none of its stages failed (a deployment is retried through its environment)'}
  end
  for _, name in ipairs(names) do
    if st[name].status == 'running' then
      return {'conflict', 'stage ' .. name .. ' is still stopping; retry once it has'}
    end
    if retryable[st[name].status] then
      reset[name] = true
    end
  end
  if next(reset) == nil then
    return {'conflict', 'no stage of the run failed'}
  end
else
  if def.stages[only].env then
    return {'conflict', 'stage ' .. only .. ' is a deployment: retry its environment ' ..
            def.stages[only].env .. ' instead'}
  end
  local s = st[only].status
  if not retryable[s] then
    local state = s == 'succeeded' and 'succeeded' or 'is ' .. tostring(s)
    return {'conflict', 'stage ' .. only .. ' ' .. state ..
            ': only a failed, timed out, cancelled or lost stage is retried'}
  end
  local open = {queued = true, running = true, failed = true, cancelled = true}
  if not open[r[1]] then
    return {'conflict', 'the run is ' .. r[1]}
  end
  reset[only] = true
end

-- Dependants skipped because of a reset stage wait again, unless another
-- of their needs can no longer succeed: one that failed or was skipped and
-- is not reset. Nothing would skip them anew (route.lua spreads skips from
-- a stage that ends, and such a need does not end again), so the run would
-- never finish. Until nothing changes: a need reset later may let them wait.
local function lost_for_good(need)
  local n = st[need]
  return not reset[need] and n ~= nil and
           (retryable[n.status] or (n.status == 'skipped' and not n.when))
end
local changed = true
while changed do
  changed = false
  for _, name in ipairs(names) do
    local s = st[name]
    if not reset[name] and s.status == 'skipped' and not s.when then
      local because, blocked = false, false
      for _, need in ipairs(s.needs) do
        because = because or reset[need] == true
        blocked = blocked or lost_for_good(need)
      end
      if because and not blocked then
        reset[name] = true
        changed = true
      end
    end
  end
end

local plan, count = {}, 0
for _, name in ipairs(names) do
  if reset[name] then
    local ready = true
    for _, need in ipairs(st[name].needs) do
      local n = st[need]
      if reset[need] or not (n.status == 'succeeded' or n.when) then
        ready = false
      end
    end
    if ready then
      local s = st[name]
      plan[name] = {attempt = s.started and s.attempt + 1 or s.attempt, kind = s.kind}
      count = count + 1
    end
  end
end

if count == 0 then
  return {'conflict', 'no stage to retry can start: the stages it needs have not succeeded'}
end
if ARGV[5] == '' then
  return {'plan', cjson.encode(plan)}
end
local jobs = cjson.decode(ARGV[5])
local given = 0
for name, job in pairs(jobs) do
  if not plan[name] or plan[name].attempt ~= tonumber(job.attempt) then
    return {'changed'}
  end
  given = given + 1
end
if given ~= count then
  return {'changed'}
end

local queued = {}
for _, name in ipairs(names) do
  if reset[name] then
    local skey = rkey .. ':stage:' .. name
    redis.call('HDEL', skey, 'worker', 'started', 'finished', 'exit_code', 'signal', 'error',
               'routed', 'retry_at', 'skipped_by', 'skip_reason', 'queued_at')
    local job = jobs[name]
    if job then
      redis.call('HSET', skey, 'status', 'queued', 'attempt', plan[name].attempt,
                 'queued_at', now)
      redis.call('ZADD', P .. 'queued', now, run .. '/' .. name)
      outbox_add(P, job.topic, run, job.value)
      emit_stage(P, 'stage.queued', run, name, plan[name].attempt, {retry = true})
      queued[#queued + 1] = name
    else
      redis.call('HSET', skey, 'status', 'pending')
    end
  end
end
redis.call('HSET', rkey, 'status', 'running')
redis.call('HDEL', rkey, 'finished')
return {'retried', cjson.encode(queued)}
