-- rollback: put an environment's previous release back (POST
-- /api/v1/runs/{id}/environments/{env}/rollback), for the run that is the
-- environment's current release and deployed with a strategy.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] environment, ARGV[4] who,
-- ARGV[5] why (may be ""), ARGV[6] now (ms).
--
-- The stage deploy@<env> of the run is queued with attempt + 1 and mode
-- "rollback": the worker restores rollback_image (the environment's
-- previous_image, released by the run rollback_run) through the provider,
-- without steps or analysis, and ends the stage rolled_back. The run must
-- have finished (a run still being promoted is cancelled first); it is
-- running while the rollback runs, and rollback_run_status keeps the status
-- it had, for the router to give back. The environment's lock is the run's
-- until the stage ends; the promotion is rolling_back.
-- Returns {"rolling-back", promotion status, stage status, attempt, previous
-- run, previous image}, or a refusal: {"gone"}, {"unknown-env"},
-- {"no-strategy"}, {"not-current", current run or ""}, {"no-previous"},
-- {"locked", run holding the environment}, {"busy", stage status} (the
-- stage has not ended), {"run-active", run status}.
local P, run, env, by, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(ARGV[6])

local d, why = strat_deployment(P, run, env, true)
if not d then
  return {why}
end
local rkey, run_status, stage, skey = d.rkey, d.run_status, d.stage, d.skey
local pkey = promo_env_key(P, promo_pipeline(P, run), env)
local e = redis.call('HMGET', pkey, 'current', 'previous', 'previous_image', 'lock')
if e[1] ~= run then
  return {'not-current', e[1] or ''}
end
if not e[2] or not e[3] or e[3] == '' then
  return {'no-previous'}
end
if e[4] and e[4] ~= run then
  return {'locked', e[4]}
end
local st = redis.call('HMGET', skey, 'status', 'attempt')
local busy = {pending = true, queued = true, running = true, paused = true, retrying = true}
if busy[st[1]] or e[4] == run then
  return {'busy', st[1] or 'pending'}
end
if run_status == 'queued' or run_status == 'running' or run_status == 'waiting' then
  return {'run-active', run_status}
end

local attempt = (tonumber(st[2]) or 1) + 1
strat_clear_attempt(skey)
redis.call('HSET', skey, 'mode', 'rollback', 'rollback_run', e[2], 'rollback_image', e[3],
           'rollback_run_status', run_status)
strat_queue(P, run, stage, skey, attempt, now)
redis.call('HSET', pkey, 'lock', run)
local ekey = promo_key(P, run, env)
redis.call('HSET', ekey, 'status', 'rolling_back', 'started', now)
redis.call('HDEL', ekey, 'finished')
redis.call('HSET', rkey, 'status', 'running')
strat_emit_command(P, run, env, stage, attempt, 'rollback', by, reason,
                   {to_run = e[2], image = e[3]})
emit_stage(P, 'stage.queued', run, stage, attempt, {env = env, mode = 'rollback'})
return {'rolling-back', 'rolling_back', 'queued', attempt, e[2], e[3]}
