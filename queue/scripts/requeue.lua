-- requeue: publish again the job of a stage still queued and unclaimed
-- requeue_after its job was published, with the same attempt: a broker that
-- lost the message delays the run but does not strand it, and a worker that
-- gets both copies claims the attempt once. The abort of a cancelled run's
-- rollout (lib/strategy.lua) is published again too.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt (as the
-- caller read it), ARGV[5] now (ms), ARGV[6] requeue_after (ms),
-- ARGV[7] job topic, ARGV[8] job envelope.
-- Returns "requeued", or with nothing published: "not-due" (published again
-- lately, e.g. by another agent), "done" (no longer queued: dropped from
-- the queued set), "stale" (another attempt is current).
local P, run, stage, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, after = tonumber(ARGV[5]), tonumber(ARGV[6])
local rkey = P .. 'run:' .. run
local skey = rkey .. ':stage:' .. stage
local member = run .. '/' .. stage

local since = redis.call('ZSCORE', P .. 'queued', member)
if not since or tonumber(since) > now - after then
  return 'not-due'
end
local rstatus = redis.call('HGET', rkey, 'status')
local st = redis.call('HMGET', skey, 'status', 'attempt', 'command')
-- A cancelled run's rollout still waits for its abort (claim.lua).
local open = rstatus == 'queued' or rstatus == 'running' or
             (rstatus == 'cancelled' and st[3] == 'abort')
if not open or st[1] ~= 'queued' then
  redis.call('ZREM', P .. 'queued', member)
  return 'done'
end
if st[2] ~= attempt then
  return 'stale'
end
redis.call('ZADD', P .. 'queued', now, member)
redis.call('HSET', skey, 'queued_at', now)
outbox_add(P, ARGV[7], run, ARGV[8])
return 'requeued'
