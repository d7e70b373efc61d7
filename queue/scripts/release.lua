-- release: hand the due entries of the delayed set to the outbox. Each entry
-- is removed in the same script that publishes it, so an entry that several
-- agents see due at once is released once.
--
-- An entry is a JSON object {"topic": ..., "value": ...}; one that starts a
-- stage attempt also names "run", "stage" and "attempt" and is published
-- only while the stage waits for exactly that attempt ("retrying", or
-- "paused" at a rollout's timed pause), which it then marks queued.
--
-- ARGV[1] key prefix, ARGV[2] now (ms), ARGV[3] most entries to release.
-- Returns the number of messages published.
local P, now = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0,
                       tonumber(ARGV[3]))
local published = 0
for _, entry in ipairs(due) do
  redis.call('ZREM', P .. 'delayed', entry)
  local ok, e = pcall(cjson.decode, entry)
  if ok and type(e) == 'table' and e.topic and e.value then
    local send = true
    if e.run then
      redis.call('SREM', P .. 'run:' .. e.run .. ':delayed', entry)
    end
    if e.stage then
      local rkey = P .. 'run:' .. e.run
      local skey = rkey .. ':stage:' .. e.stage
      local rstatus = redis.call('HGET', rkey, 'status')
      local st = redis.call('HMGET', skey, 'status', 'attempt')
      send = (rstatus == 'queued' or rstatus == 'running') and
             (st[1] == 'retrying' or st[1] == 'paused') and st[2] == tostring(e.attempt)
      if send then
        redis.call('HSET', skey, 'status', 'queued', 'queued_at', now)
        redis.call('HDEL', skey, 'retry_at', 'resume_entry')
        redis.call('ZADD', P .. 'queued', now, e.run .. '/' .. e.stage)
        emit_stage(P, 'stage.queued', e.run, e.stage, e.attempt, {})
      end
    end
    if send then
      outbox_add(P, e.topic, e.run or '', e.value)
      published = published + 1
    end
  end
end
return published
