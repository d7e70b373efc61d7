-- intake: record webhook deliveries' runs and their first jobs, each
-- delivery once. The agent records the deliveries that arrive while an
-- earlier call is under way together, in one call (agent/record.c).
--
-- ARGV[1] key prefix, then for each delivery: its id ("<hook-id>:<guid>"),
-- dedup TTL in seconds, now (ms), repository, event, ref, sha, the number
-- of runs, and for each run: id, pipeline, checkout URL, definition (JSON
-- text, stored as it is), its run.created event, the number of stages, and
-- for each stage: name, "queued", "pending" or "skipped", then for a queued
-- stage the topic and value of its job and its stage.queued event, for a
-- skipped one (by its `when`) the reason, "" and its stage.skipped event,
-- otherwise "" "" "".
-- Everything arrives as flat strings so that nothing needs decoding here;
-- the events are written but for their id and time (emit_prepared).
-- Returns two strings per delivery, in order: "created" and the JSON array
-- of its run ids, or "duplicate" and the array recorded for the first
-- delivery when the delivery was seen before.
-- What many runs of a call write to the same keys is written once at the
-- end: the sorted sets' entries in one ZADD per key, the jobs and events in
-- the outbox as entries of many messages (events.lua).
local P = ARGV[1]
local out = {}
-- Sorted-set entries (score, member, ...) by key, added at the end.
local zadds = {}

local function zadd_later(key, score, member)
  local t = zadds[key]
  if not t then
    t = {}
    zadds[key] = t
  end
  t[#t + 1], t[#t + 2] = score, member
end

-- The arguments of a stage, and where a run's stages begin.
local PER_STAGE, STAGES_AT = 5, 6

-- One run of the delivery whose fields d holds, from ARGV[i].
local function record_run(d, i)
  local id, pipeline = ARGV[i], ARGV[i + 1]
  local rkey = P .. 'run:' .. id
  redis.call('HSET', rkey, 'id', id, 'status', 'queued', 'created', d.now,
             'pipeline', pipeline, 'repository', d.repository, 'event', d.event, 'ref', d.ref,
             'sha', d.sha, 'checkout_url', ARGV[i + 2], 'delivery', d.id, 'def', ARGV[i + 3])
  emit_prepared(P, id, ARGV[i + 4])
  local first = i + STAGES_AT
  for s = first, first + PER_STAGE * (tonumber(ARGV[i + 5]) - 1), PER_STAGE do
    local name = ARGV[s]
    if ARGV[s + 1] == 'queued' then
      redis.call('HSET', rkey .. ':stage:' .. name, 'status', 'queued', 'attempt', 1,
                 'queued_at', d.now)
      zadd_later(P .. 'queued', d.now, id .. '/' .. name)
      outbox_add(P, ARGV[s + 2], id, ARGV[s + 3])
      emit_prepared(P, id, ARGV[s + 4])
    elseif ARGV[s + 1] == 'skipped' then
      -- Left out by its `when`: satisfied for its dependants (route.lua).
      redis.call('HSET', rkey .. ':stage:' .. name, 'status', 'skipped', 'attempt', 1,
                 'skipped_by', 'when', 'skip_reason', ARGV[s + 2], 'finished', d.now)
      emit_prepared(P, id, ARGV[s + 4])
    else
      redis.call('HSET', rkey .. ':stage:' .. name, 'status', 'pending', 'attempt', 1)
    end
  end
  zadd_later(P .. 'runs', d.now, id)
  zadd_later(P .. 'pipeline:' .. pipeline .. ':runs', d.now, id)
end

outbox_hold()
local i = 2
while i <= #ARGV do
  local d = {id = ARGV[i], ttl = ARGV[i + 1], now = ARGV[i + 2], repository = ARGV[i + 3],
             event = ARGV[i + 4], ref = ARGV[i + 5], sha = ARGV[i + 6]}
  local nruns = tonumber(ARGV[i + 7])
  i = i + 8
  -- The run ids are known before anything is written: the delivery is
  -- remembered with them, and whether it was seen before is learnt, at once.
  local ids, starts = {}, {}
  for r = 1, nruns do
    ids[r], starts[r] = ARGV[i], i
    i = i + STAGES_AT + PER_STAGE * tonumber(ARGV[i + 5])
  end
  local list = '["' .. table.concat(ids, '","') .. '"]'
  local seen = redis.call('SET', P .. 'delivery:' .. d.id, list, 'NX', 'GET', 'EX', d.ttl)
  if seen then
    -- Its runs' arguments are skipped unread.
    out[#out + 1] = 'duplicate'
    out[#out + 1] = seen
  else
    for r = 1, nruns do
      record_run(d, starts[r])
    end
    out[#out + 1] = 'created'
    out[#out + 1] = list
  end
end
outbox_flush(P)
-- unpack() is bounded by Lua's stack: at most ZADD_CHUNK entries a call.
local ZADD_CHUNK = 1000
for key, t in pairs(zadds) do
  for k = 1, #t, 2 * ZADD_CHUNK do
    redis.call('ZADD', key, unpack(t, k, math.min(k + 2 * ZADD_CHUNK - 1, #t)))
  end
end
return out
