-- rollout_command: an operator's command to the rollout of a deployment
-- with a strategy (POST /api/v1/runs/{id}/environments/{env}/promote and
-- /abort): "promote" ends the current pause, "promote_full" skips the
-- remaining steps and analyses, "abort" stops the rollout and sends the
-- traffic back to stable.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] environment, ARGV[4] command
-- ("promote", "promote_full" or "abort"), ARGV[5] who, ARGV[6] why (may be
-- ""), ARGV[7] now (ms).
--
-- The command waits in the stage's fields command, command_by and
-- command_at until the worker running the rollout takes it. A rollout
-- parked at a pause (stage "paused", no worker) is put back in the queue
-- with the same attempt, its timed resumption (resume_entry) dropped, so
-- that a worker claims it and carries the command out. A pending abort is
-- never replaced by another command. A blue/green rollout waiting its
-- scale-down delay has nothing left to promote: the delay lets requests to
-- the old colour finish, and a promote would cut it short.
-- Returns {"sent", promotion status, stage status, attempt} (the stage was
-- being worked on or waited for a worker), {"resumed", ...} (it was parked
-- and is queued again), or a refusal: {"gone"}, {"unknown-env"},
-- {"no-strategy"}, {"not-deploying", stage status, run status},
-- {"not-paused", phase of a running rollout or stage status} (promote
-- only), {"scale-down-delay"} (promote and promote_full), {"aborting"}.
local P, run, env, command, by, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = tonumber(ARGV[7])

local d, why = strat_deployment(P, run, env, true)
if not d then
  return {why}
end
local rkey, run_status, stage, skey = d.rkey, d.run_status, d.stage, d.skey
local st = redis.call('HMGET', skey, 'status', 'attempt', 'rollout', 'resume_entry', 'command',
                      'mode')
local deploying = {queued = true, running = true, paused = true}
if not deploying[st[1]] or (run_status ~= 'queued' and run_status ~= 'running') then
  return {'not-deploying', st[1] or 'pending', run_status}
end
if st[6] == 'rollback' then
  return {'not-deploying', 'rolling_back', run_status}
end
if st[5] == 'abort' and command ~= 'abort' then
  return {'aborting'}
end
local state = strat_state(st[3])
local phase = state and state.phase
local step = state and type(state.steps) == 'table' and type(state.step) == 'number' and
               state.steps[state.step + 1]
if command ~= 'abort' and type(step) == 'table' and step.kind == 'pause' and step.auto == true then
  return {'scale-down-delay'}
end
-- A pause with a background analysis measuring through it keeps its worker.
local paused = st[1] == 'paused' or (st[1] == 'running' and phase == 'Paused')
if command == 'promote' and not paused then
  return {'not-paused', st[1] == 'running' and type(phase) == 'string' and phase or st[1]}
end

local attempt = tonumber(st[2]) or 1
redis.call('HSET', skey, 'command', command, 'command_by', by, 'command_at', now)
strat_emit_command(P, run, env, stage, attempt, command, by, reason)
local promotion = redis.call('HGET', promo_key(P, run, env), 'status') or 'deploying'
if st[1] ~= 'paused' then
  return {'sent', promotion, st[1], attempt}
end
if st[4] then
  redis.call('ZREM', P .. 'delayed', st[4])
  redis.call('SREM', rkey .. ':delayed', st[4])
  redis.call('HDEL', skey, 'resume_entry')
end
strat_queue(P, run, stage, skey, attempt, now)
emit_stage(P, 'stage.queued', run, stage, attempt, {env = env, command = command})
return {'resumed', promotion, 'queued', attempt}
