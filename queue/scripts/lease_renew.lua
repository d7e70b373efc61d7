-- lease_renew: extend a stage's lease if this worker still holds it.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] lease (ms), ARGV[7] now (ms).
-- Returns 1 when renewed, 0 when the lease is no longer ours.
local P, run, stage = ARGV[1], ARGV[2], ARGV[3]
local lkey = P .. 'lease:' .. run .. ':' .. stage
if redis.call('GET', lkey) ~= ARGV[5] .. '/' .. ARGV[4] then
  return 0
end
local lease_ms = tonumber(ARGV[6])
redis.call('PEXPIRE', lkey, lease_ms)
redis.call('ZADD', P .. 'leases', tonumber(ARGV[7]) + lease_ms, run .. '/' .. stage)
return 1
