-- claim: a worker takes one stage attempt: lease it and mark it running.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] lease (ms), ARGV[7] now (ms), then
-- (optional) ARGV[8] "have-def" and the names of the stages whose outputs
-- the run's definition can use (workers/stage_env.h), from a worker that
-- holds the definition already (it never changes once recorded): the reply
-- leaves the definition out, and nothing decodes it. Without them, every
-- stage's outputs are read.
-- Returns {"claimed", <JSON object of the run hash>, <ms the lease has
-- left>}, or {reason} when the
-- job is not to be run: "gone" (no such run or stage), "run-finished",
-- "stale" (another attempt is current), "not-queued" (already running or
-- finished: a duplicate delivery), "leased" (someone holds the lease).
-- A claim this worker made already, whose reply it never got (a timeout,
-- a dropped connection), is answered "claimed" again, changing nothing: the
-- stage runs under this worker's lease, with this attempt.
local P, run, stage = ARGV[1], ARGV[2], ARGV[3]
local attempt, token = ARGV[4], ARGV[5]
local lease_ms, now = tonumber(ARGV[6]), tonumber(ARGV[7])
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage

local rstatus = redis.call('HGET', rkey, 'status')
local st = redis.call('HMGET', skey, 'status', 'attempt', 'command')
if not rstatus or not st[1] then
  return {'gone'}
end
-- A rollout of a cancelled run is still taken to be aborted (cancel.lua).
if rstatus ~= 'queued' and rstatus ~= 'running' and
   not (rstatus == 'cancelled' and st[3] == 'abort') then
  return {'run-finished'}
end
if st[2] ~= attempt then
  return {'stale'}
end
local lkey = P .. 'lease:' .. run .. ':' .. stage
local mine = token .. '/' .. attempt
local left = lease_ms
if st[1] == 'running' and redis.call('GET', lkey) == mine then
  -- Claimed before by this worker: its reply was lost. The lease runs from
  -- that claim.
  left = redis.call('PTTL', lkey)
elseif st[1] ~= 'queued' then
  return {'not-queued'}
elseif not redis.call('SET', lkey, mine, 'NX', 'PX', lease_ms) then
  return {'leased'}
else
  redis.call('ZADD', P .. 'leases', now + lease_ms, run .. '/' .. stage)
  redis.call('HSET', skey, 'status', 'running', 'worker', token, 'started', now)
  redis.call('HDEL', skey, 'finished', 'exit_code', 'signal', 'error')
  if rstatus == 'queued' then
    redis.call('HSET', rkey, 'status', 'running', 'started', now)
    emit(P, 'run.started', run, 'runs/' .. run, {status = 'running'})
  end
  emit_stage(P, 'stage.started', run, stage, attempt, {worker = token})
end

local flat = redis.call('HGETALL', rkey)
local obj = {}
for i = 1, #flat, 2 do
  obj[flat[i]] = flat[i + 1]
end
-- The outputs of the run's stages ($SLUICE_OUTPUT), for ${<stage>.<KEY>}:
-- of those named, or of every stage.
local names = {}
if ARGV[8] == 'have-def' then
  for i = 9, #ARGV do
    names[#names + 1] = ARGV[i]
  end
  obj.def = nil
else
  for name, _ in pairs(cjson.decode(obj.def or '{}').stages or {}) do
    names[#names + 1] = name
  end
end
local outputs = {}
local any = false
for _, name in ipairs(names) do
  local o = redis.call('HGET', rkey .. ':stage:' .. name, 'outputs')
  if o then
    outputs[name] = cjson.decode(o)
    any = true
  end
end
if any then
  obj.outputs = outputs
end
return {'claimed', cjson.encode(obj), left}
