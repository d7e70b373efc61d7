-- intake: record a webhook delivery's runs and their first jobs, once.
--
-- ARGV[1] key prefix, ARGV[2] delivery id ("<hook-id>:<guid>"),
-- ARGV[3] dedup TTL in seconds, ARGV[4] now (ms),
-- ARGV[5..8] the delivery's repository, event, ref and sha, then for each
-- run: id, pipeline, checkout URL, definition (JSON text, stored as it is),
-- the number of stages, and for each stage: name, "queued", "pending" or
-- "skipped", then for a queued stage the topic and value of its job, for a
-- skipped one (by its `when`) the reason and "", otherwise "" "".
-- Everything arrives as flat strings so that nothing needs decoding here.
-- Returns {"created", <JSON array of run ids>}, or {"duplicate", <the same
-- array recorded for the first delivery>} when the delivery was seen before.
local P = ARGV[1]
local dkey = P .. 'delivery:' .. ARGV[2]
local seen = redis.call('GET', dkey)
if seen then
  return {'duplicate', seen}
end

local now = ARGV[4]
local ids = {}
local i = 9
while i <= #ARGV do
  local id, pipeline = ARGV[i], ARGV[i + 1]
  local rkey = P .. 'run:' .. id
  redis.call('HSET', rkey, 'id', id, 'status', 'queued', 'created', now,
             'pipeline', pipeline, 'repository', ARGV[5], 'event', ARGV[6], 'ref', ARGV[7],
             'sha', ARGV[8], 'checkout_url', ARGV[i + 2], 'delivery', ARGV[2],
             'def', ARGV[i + 3])
  emit(P, 'run.created', id, 'runs/' .. id, {status = 'queued', event = ARGV[6]})
  local last = i + 4 + 4 * tonumber(ARGV[i + 4])
  for s = i + 5, last, 4 do
    local name = ARGV[s]
    if ARGV[s + 1] == 'queued' then
      redis.call('HSET', rkey .. ':stage:' .. name, 'status', 'queued', 'attempt', 1,
                 'queued_at', now)
      redis.call('ZADD', P .. 'queued', now, id .. '/' .. name)
      redis.call('XADD', P .. 'outbox', '*', 'topic', ARGV[s + 2], 'key', id,
                 'value', ARGV[s + 3])
      emit_stage(P, 'stage.queued', id, name, 1, {})
    elseif ARGV[s + 1] == 'skipped' then
      -- Left out by its `when`: satisfied for its dependants (route.lua).
      redis.call('HSET', rkey .. ':stage:' .. name, 'status', 'skipped', 'attempt', 1,
                 'skipped_by', 'when', 'skip_reason', ARGV[s + 2], 'finished', now)
      emit_stage(P, 'stage.skipped', id, name, 1, {reason = ARGV[s + 2]})
    else
      redis.call('HSET', rkey .. ':stage:' .. name, 'status', 'pending', 'attempt', 1)
    end
  end
  redis.call('ZADD', P .. 'runs', now, id)
  redis.call('ZADD', P .. 'pipeline:' .. pipeline .. ':runs', now, id)
  ids[#ids + 1] = id
  i = last + 1
end

local list = '["' .. table.concat(ids, '","') .. '"]'
redis.call('SET', dkey, list, 'EX', ARGV[3])
return {'created', list}
