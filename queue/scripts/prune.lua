-- prune: remove the runs that ended before the retention cutoff
-- (agent.run_retention), with everything recorded of them: the run, its
-- stages and their logs, its promotions and approvals, its delayed entries
-- and its places in the runs indexes. Kept whatever their age:
--   - a run still going (queued, running, waiting) or with a stage that is
--     (queued, running, paused: a worker holds it or is about to);
--   - a run that ended after the cutoff (a long wait for approval);
--   - a release an environment still refers to (its current or previous
--     one, what a rollback puts back, the run holding its lock or waiting
--     for it).
-- Big log streams are freed by UNLINK, off Redis's main thread.
--
-- ARGV[1] key prefix, ARGV[2] cutoff (ms), ARGV[3] how many of the oldest
-- runs before the cutoff to pass over (those kept earlier in this pass),
-- ARGV[4] how many to look at.
-- Returns {pruned, kept, looked at}: fewer looked at than asked for means
-- the pass is over.
local P, cutoff = ARGV[1], tonumber(ARGV[2])
local skip, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
local active = {queued = true, running = true, waiting = true}
local busy_stage = {queued = true, running = true, paused = true}

-- Whether an environment of the run's pipeline refers to the run.
local function referred(run, pipeline, def)
  for env, _ in pairs(def.environments or {}) do
    local ekey = P .. 'env:' .. pipeline .. ':' .. env
    local e = redis.call('HMGET', ekey, 'current', 'previous', 'lock')
    if e[1] == run or e[2] == run or e[3] == run or
        redis.call('ZSCORE', ekey .. ':waiting', run) then
      return true
    end
  end
  return false
end

-- The run's keys, or nil when it is to be kept.
local function prunable(run)
  local rkey = P .. 'run:' .. run
  local r = redis.call('HMGET', rkey, 'status', 'finished', 'created', 'pipeline', 'def')
  if not r[1] then
    -- Its hash is gone already: only its index entries are left.
    return {}, r[4]
  end
  if active[r[1]] or tonumber(r[2] or r[3] or 0) > cutoff then
    return nil
  end
  local ok, def = pcall(cjson.decode, r[5] or '')
  if not ok or type(def) ~= 'table' then
    def = {}
  end
  local keys = {rkey, rkey .. ':delayed'}
  for name, _ in pairs(def.stages or {}) do
    local skey = rkey .. ':stage:' .. name
    if busy_stage[redis.call('HGET', skey, 'status')] then
      return nil
    end
    keys[#keys + 1] = skey
    keys[#keys + 1] = P .. 'log:' .. run .. ':' .. name
  end
  if r[4] and referred(run, r[4], def) then
    return nil
  end
  for env, _ in pairs(def.environments or {}) do
    keys[#keys + 1] = rkey .. ':env:' .. env
    keys[#keys + 1] = P .. 'approval:' .. run .. ':' .. env
  end
  return keys, r[4]
end

-- Calls the command args with list's items after them, CHUNK items a call:
-- unpack() is bounded by Lua's stack (some 8000 values), and a run of
-- thousands of stages has more keys than that.
local CHUNK = 1000
local function call_chunked(args, list)
  for k = 1, #list, CHUNK do
    local a = {unpack(args)}
    for i = k, math.min(k + CHUNK - 1, #list) do
      a[#a + 1] = list[i]
    end
    redis.call(unpack(a))
  end
end

local ids = redis.call('ZRANGEBYSCORE', P .. 'runs', '-inf', cutoff, 'LIMIT', skip, batch)
local pruned, kept = 0, 0
for _, run in ipairs(ids) do
  local keys, pipeline = prunable(run)
  if keys then
    call_chunked({'ZREM', P .. 'delayed'}, redis.call('SMEMBERS', P .. 'run:' .. run .. ':delayed'))
    call_chunked({'UNLINK'}, keys)
    redis.call('ZREM', P .. 'runs', run)
    if pipeline then
      redis.call('ZREM', P .. 'pipeline:' .. pipeline .. ':runs', run)
    end
    pruned = pruned + 1
  else
    kept = kept + 1
  end
end
return {pruned, kept, #ids}
