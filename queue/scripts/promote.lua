-- promote: a gate of a waiting promotion may have changed; the router runs
-- this for a dev.sluice.promotion.ready message, which lib/promotion.lua
-- left in the delayed set for the instant the gate changes.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] environment, ARGV[4] gate:
-- "window" (the deny windows should be open now: the gates are checked
-- again) or "approval" (the approval expires: unless decided by now it is
-- rejected with reason "expired", the promotion is expired and the run
-- rejected), ARGV[5] now (ms), ARGV[6] JSON {"<env>": ms} of the
-- environments closed now (see lib/promotion.lua).
-- Returns {outcome, run status}: outcome the promotion's status after the
-- check, "expired", or "unchanged" when the message came too late or too
-- early to matter (a duplicate, a decided approval, a cancelled run).
local P, run, env, gate = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(ARGV[5])
local opens = cjson.decode(ARGV[6])
local rkey = P .. 'run:' .. run
local r = redis.call('HMGET', rkey, 'status', 'def')
if not r[1] then
  return {'gone', ''}
end
local e = redis.call('HMGET', promo_key(P, run, env), 'status', 'expires_at')
if (r[1] ~= 'running' and r[1] ~= 'waiting') or not promo_waits[e[1]] then
  return {'unchanged', r[1]}
end
local def = cjson.decode(r[2])
if gate == 'approval' then
  if e[1] ~= 'waiting_approval' or not e[2] then
    return {'unchanged', r[1]}
  end
  if tonumber(e[2]) > now then
    -- Released early (the releasing agent's clock ahead of this one's):
    -- looked at again when it is due here.
    promo_later(P, run, env, 'approval', tonumber(e[2]))
    return {'unchanged', r[1]}
  end
  promo_expire(P, run, env, def, now)
  return {'expired', 'rejected'}
end
if e[1] ~= 'waiting_window' then
  return {'unchanged', r[1]}
end
local status = promo_gates(P, run, env, def, now, opens)
return {status, redis.call('HGET', rkey, 'status')}
