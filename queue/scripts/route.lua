-- route: advance a run after one of its stages finished.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] now (ms), ARGV[6] JSON object of prepared jobs for the stages
-- that need the finished one: {"<stage>": {"topic": ..., "value": ...}}.
-- Stages of the run are those of the run's recorded definition ("def").
-- ARGV[7] and ARGV[8], when given: a dead-letter topic and message, sent
-- once with the routing (a stage that exhausted its retries).
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
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage

local r = redis.call('HMGET', rkey, 'status', 'def')
local st = redis.call('HMGET', skey, 'status', 'attempt', 'routed')
if not r[1] or not st[1] then
  return {'gone', ''}
end
if st[2] ~= attempt then
  return {'stale', r[1]}
end
local terminal = {succeeded = true, failed = true, timed_out = true, cancelled = true,
                  skipped = true, lost = true}
if not terminal[st[1]] then
  return {'not-finished', r[1]}
end
if st[3] == '1' then
  return {'duplicate', r[1]}
end
redis.call('HSET', skey, 'routed', '1')
if ARGV[8] then
  redis.call('XADD', P .. 'outbox', '*', 'topic', ARGV[7], 'key', run, 'value', ARGV[8])
end
if r[1] ~= 'queued' and r[1] ~= 'running' then
  return {'routed', r[1]}
end

local def = cjson.decode(r[2])
local names, status = {}, {}
for name, _ in pairs(def.stages) do
  names[#names + 1] = name
  status[name] = redis.call('HGET', rkey .. ':stage:' .. name, 'status')
end
table.sort(names)

local function set_status(name, value)
  status[name] = value
  redis.call('HSET', rkey .. ':stage:' .. name, 'status', value)
end

-- Skips spread until nothing changes: a pending stage is skipped as soon as
-- one of its needs can no longer succeed.
local changed = true
while changed do
  changed = false
  for _, name in ipairs(names) do
    if status[name] == 'pending' then
      for _, need in ipairs(def.stages[name].needs) do
        local s = status[need]
        if terminal[s] and s ~= 'succeeded' then
          set_status(name, 'skipped')
          redis.call('HSET', rkey .. ':stage:' .. name, 'finished', now)
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
  if status[name] == 'pending' and job then
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
      redis.call('XADD', P .. 'outbox', '*', 'topic', job.topic, 'key', run, 'value', job.value)
      started[#started + 1] = name
    end
  end
end

local open, failed = false, false
for _, name in ipairs(names) do
  local s = status[name]
  if not terminal[s] then
    open = true
  elseif s ~= 'succeeded' then
    failed = true
  end
end
local run_status = r[1]
if not open then
  run_status = failed and 'failed' or 'succeeded'
  redis.call('HSET', rkey, 'status', run_status, 'finished', now)
end
return {'routed', run_status, unpack(started)}
