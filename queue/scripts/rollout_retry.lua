-- rollout_retry: deploy a run to an environment again from the start, after
-- its deployment failed or was aborted (POST
-- /api/v1/runs/{id}/environments/{env}/retry). With or without a strategy.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] environment, ARGV[4] who,
-- ARGV[5] why (may be ""), ARGV[6] now (ms), ARGV[7] the environments whose
-- deny windows hold now, with when they end ({<env>: ms}, lib/promotion.lua).
--
-- The stage deploy@<env> is queued with attempt + 1 and nothing of the
-- last attempt but its history (the rollout's state, a command, a
-- rollback's mode are cleared); the promotion is deploying again, the run
-- running, and the environment's lock is the run's. An approval given
-- before is not asked again; a deny window that holds now refuses the retry
-- (a retry deploys). The deployments of later
-- environments, skipped when this one failed, wait again.
-- Returns {"retried", promotion status, stage status, attempt}, or a
-- refusal: {"gone"}, {"unknown-env"}, {"not-failed", stage status}
-- (only a failed, timed out, lost or aborted deployment is retried, not a
-- rollback), {"window", when it ends (RFC 3339)}, {"locked", run holding the
-- environment}, {"superseded", newer run deployed there since}.
local P, run, env, by, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(ARGV[6])

local d, why = strat_deployment(P, run, env)
if not d then
  return {why}
end
local rkey, def, stage, skey = d.rkey, d.def, d.stage, d.skey
local st = redis.call('HMGET', skey, 'status', 'attempt', 'mode')
local ended = {failed = true, timed_out = true, lost = true, aborted = true}
local promotion = redis.call('HGET', promo_key(P, run, env), 'status')
-- A rollback that failed is rolled back again, not deployed.
if not ended[st[1]] or st[3] == 'rollback' or promotion == 'deploying' or
   promotion == 'rolling_back' or promo_waits[promotion] then
  if st[3] == 'rollback' then
    return {'not-failed', 'rollback ' .. (st[1] or 'pending')}
  end
  return {'not-failed', st[1] or 'pending'}
end
local closed = tonumber((ARGV[7] and cjson.decode(ARGV[7]) or {})[env] or 0)
if closed > now then
  return {'window', sluice_rfc3339(closed)}
end
local pkey = promo_env_key(P, promo_pipeline(P, run), env)
local e = redis.call('HMGET', pkey, 'lock', 'current')
if e[1] and e[1] ~= run then
  return {'locked', e[1]}
end
-- Deploying it again would replace a newer release.
if e[2] and e[2] ~= run then
  local created = redis.call('HMGET', rkey, 'created')[1]
  local current = redis.call('HGET', P .. 'run:' .. e[2], 'created')
  if current and created and tonumber(current) > tonumber(created) then
    return {'superseded', e[2]}
  end
end

local attempt = (tonumber(st[2]) or 1) + 1
strat_clear_attempt(skey)
redis.call('HSET', skey, 'attempt', attempt)
redis.call('HDEL', promo_key(P, run, env), 'finished')
redis.call('HDEL', rkey, 'finished')
for name, _ in pairs(def.environments) do
  local other = rkey .. ':stage:deploy@' .. name
  if name ~= env and redis.call('EXISTS', promo_key(P, run, name)) == 0 and
     redis.call('HGET', other, 'status') == 'skipped' then
    redis.call('HSET', other, 'status', 'pending')
    redis.call('HDEL', other, 'finished')
  end
end
strat_emit_command(P, run, env, stage, attempt, 'retry', by, reason)
promo_start(P, run, env, now)
return {'retried', 'deploying', 'queued', attempt}
