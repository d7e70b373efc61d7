-- decide: record the approval or rejection of a promotion that waits for
-- one (POST /api/v1/runs/{id}/environments/{env}/approve and /reject).
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] environment, ARGV[4] decision
-- "approved" or "rejected", ARGV[5] who, ARGV[6] why, ARGV[7] now (ms),
-- ARGV[8] JSON {"<env>": ms} of the environments closed now (see
-- lib/promotion.lua).
-- The decision is kept in approval:<run>:<env>. An approval passes the
-- promotion on to its next gates (a deny window, the environment's lock); a
-- rejection ends the promotion and the run as "rejected". A decision that
-- comes after the promotion's expires_at is none: the promotion expires.
-- Returns {"decided", run status, promotion status}, {"not-waiting",
-- promotion status} (nothing changed, or "expired" when it expired now),
-- {"unknown-env"} or {"gone"}.
local P, run, env, decision = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(ARGV[7])
local opens = cjson.decode(ARGV[8])
local rkey = P .. 'run:' .. run
local r = redis.call('HMGET', rkey, 'status', 'def')
if not r[1] then
  return {'gone'}
end
local def = cjson.decode(r[2])
if not def.environments or not def.environments[env] then
  return {'unknown-env'}
end
local ekey = promo_key(P, run, env)
local e = redis.call('HMGET', ekey, 'status', 'expires_at')
if e[1] ~= 'waiting_approval' or r[1] ~= 'waiting' then
  return {'not-waiting', e[1] or 'pending'}
end
-- The expiry comes through the delayed set and the router, a moment (or,
-- with the broker down, much) later: a decision after expires_at is too
-- late all the same, and expires the promotion here.
if e[2] and tonumber(e[2]) <= now then
  promo_expire(P, run, env, def, now)
  return {'not-waiting', 'expired'}
end
redis.call('HSET', P .. 'approval:' .. run .. ':' .. env, 'decision', decision, 'by', ARGV[5],
           'at', now, 'reason', ARGV[6])
emit(P, 'approval.decided', run, promo_subject(run, env),
     {env = env, decision = decision, by = ARGV[5], reason = ARGV[6]})
if decision ~= 'approved' then
  promo_close(P, run, env, 'rejected', now)
  promo_end_run(P, run, def, 'rejected', now)
  return {'decided', 'rejected', 'rejected'}
end
local status = promo_gates(P, run, env, def, now, opens)
return {'decided', redis.call('HGET', rkey, 'status'), status}
