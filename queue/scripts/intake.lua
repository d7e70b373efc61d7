-- intake: record a webhook delivery's runs and their first jobs, once.
--
-- ARGV[1] key prefix, ARGV[2] delivery id ("<hook-id>:<guid>"),
-- ARGV[3] dedup TTL in seconds, ARGV[4] now (ms),
-- ARGV[5] JSON array of runs:
--   [{"id": "r_...", "fields": {"pipeline": ..., ...},
--     "stages": [{"name": ..., "status": "queued"|"pending"}],
--     "jobs": [{"topic": ..., "value": <envelope text>}]}]
-- Returns {"created", <JSON array of run ids>}, or {"duplicate", <the same
-- array recorded for the first delivery>} when the delivery was seen before.
local P = ARGV[1]
local dkey = P .. 'delivery:' .. ARGV[2]
local seen = redis.call('GET', dkey)
if seen then
  return {'duplicate', seen}
end

local now = tonumber(ARGV[4])
local runs = cjson.decode(ARGV[5])
local ids = {}
for _, run in ipairs(runs) do
  local rkey = P .. 'run:' .. run.id
  local fields = {}
  for k, v in pairs(run.fields) do
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  redis.call('HSET', rkey, 'id', run.id, 'status', 'queued', 'created', now, unpack(fields))
  for _, st in ipairs(run.stages) do
    redis.call('HSET', rkey .. ':stage:' .. st.name, 'status', st.status, 'attempt', 1)
    if st.status == 'queued' then
      redis.call('HSET', rkey .. ':stage:' .. st.name, 'queued_at', now)
      redis.call('ZADD', P .. 'queued', now, run.id .. '/' .. st.name)
    end
  end
  redis.call('ZADD', P .. 'runs', now, run.id)
  redis.call('ZADD', P .. 'pipeline:' .. run.fields.pipeline .. ':runs', now, run.id)
  for _, job in ipairs(run.jobs) do
    redis.call('XADD', P .. 'outbox', '*', 'topic', job.topic, 'key', run.id, 'value', job.value)
  end
  ids[#ids + 1] = run.id
end

local list = '["' .. table.concat(ids, '","') .. '"]'
redis.call('SET', dkey, list, 'EX', tonumber(ARGV[3]))
return {'created', list}
