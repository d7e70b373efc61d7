-- rollout_save: a worker records the state of the rollout it runs
-- (stages/rollout.h), with the deployment event the change makes, and takes
-- an operator's command off the stage once it has acted on it.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] the state (JSON), ARGV[7] event type
-- ("deploy.step", ...) or "", ARGV[8] its data (JSON object) or "",
-- ARGV[9] the command acted on or "": removed only if it is still the one
-- waiting, so that a newer command is not lost. ARGV[10] names the run of
-- the attempt that saves (the worker's own number for it: an attempt parked
-- at a pause runs again after it, under the same number), ARGV[11] the
-- save's number in that run (1, 2, ...): the worker sends a save again when
-- Redis did not answer it, and one that was made already changes nothing.
-- Returns "saved" (now or before), or "fenced" when the attempt is no
-- longer this worker's.
local P, run, stage, attempt, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local skey = P .. 'run:' .. run .. ':stage:' .. stage
local st = redis.call('HMGET', skey, 'status', 'attempt', 'worker', 'command', 'rollout_saved')
if st[1] ~= 'running' or st[2] ~= attempt or st[3] ~= token then
  return 'fenced'
end
local saver, seq = token .. '/' .. ARGV[10], tonumber(ARGV[11])
local by, done = string.match(st[5] or '', '^(.*):(%d+)$')
if by == saver and tonumber(done) >= seq then
  return 'saved'
end
redis.call('HSET', skey, 'rollout', ARGV[6], 'rollout_saved', saver .. ':' .. seq)
if ARGV[9] ~= '' and st[4] == ARGV[9] then
  redis.call('HDEL', skey, 'command', 'command_by', 'command_at')
end
if ARGV[7] ~= '' then
  local data = cjson.decode(ARGV[8])
  data.env = string.sub(stage, 8)
  emit_stage(P, ARGV[7], run, stage, attempt, data)
end
return 'saved'
