-- park: a rollout reached a pause (stages/rollout.h). Its worker lets the
-- stage go: status "paused", the lease released, the state kept. A timed
-- pause puts the stage's job in the delayed set, due when the pause ends
-- (release.lua queues it again then); an open pause waits for an
-- operator's promote or abort (rollout_command.lua queues it). A command
-- that arrived while the worker was parking queues it at once, so that it
-- is not left waiting; so does the run's cancellation, which the worker
-- watches for only now and then: the rollout is queued to be aborted, as
-- cancel.lua queues a parked one, for it holds traffic and its
-- environment.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] the state (JSON), ARGV[7] due (ms; "0":
-- until a command), ARGV[8] now (ms), ARGV[9] jobs topic, ARGV[10] the
-- stage's job (same attempt).
-- Returns "parked", "resumed" (a command was waiting) or "fenced".
local P, run, stage, attempt, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local due, now = tonumber(ARGV[7]), tonumber(ARGV[8])
local skey = P .. 'run:' .. run .. ':stage:' .. stage
local st = redis.call('HMGET', skey, 'status', 'attempt', 'worker', 'command')
if st[1] ~= 'running' or st[2] ~= attempt or st[3] ~= token then
  return 'fenced'
end
local lkey = P .. 'lease:' .. run .. ':' .. stage
if redis.call('GET', lkey) == token .. '/' .. attempt then
  redis.call('DEL', lkey)
end
redis.call('ZREM', P .. 'leases', run .. '/' .. stage)
redis.call('HSET', skey, 'rollout', ARGV[6])
redis.call('HDEL', skey, 'worker', 'resume_entry')
local env = string.sub(stage, 8)
local command = st[4]
local rstatus = redis.call('HGET', P .. 'run:' .. run, 'status')
if not command and rstatus ~= 'queued' and rstatus ~= 'running' and rstatus ~= 'waiting' then
  strat_abort_cancelled(skey, now)
  command = 'abort'
end
if command then
  redis.call('HSET', skey, 'status', 'queued', 'queued_at', now)
  redis.call('ZADD', P .. 'queued', now, run .. '/' .. stage)
  outbox_add(P, ARGV[9], run, ARGV[10])
  emit_stage(P, 'stage.queued', run, stage, attempt, {env = env, command = command})
  return 'resumed'
end
redis.call('HSET', skey, 'status', 'paused', 'paused_at', now)
if due > 0 then
  local entry = cjson.encode({topic = ARGV[9], value = ARGV[10], run = run, stage = stage,
                              attempt = tonumber(attempt)})
  redis.call('ZADD', P .. 'delayed', due, entry)
  redis.call('SADD', P .. 'run:' .. run .. ':delayed', entry)
  redis.call('HSET', skey, 'resume_entry', entry)
end
emit_stage(P, 'deploy.paused', run, stage, attempt,
           {env = env, until_ms = due > 0 and due or nil, manual = due == 0})
return 'parked'
